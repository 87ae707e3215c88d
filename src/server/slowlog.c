/*
 * slowlog.c -- the slow log, as Redis keeps it.
 *
 * Purpose
 * -------
 * An operator asks SLOWLOG GET which commands took long (KEYS over a large database, a
 * huge MGET, a FLUSHALL that waited for the catalog). After each command the dispatcher
 * (command.c) hands its duration here; one longer than slowlog-log-slower-than
 * microseconds (0: every command; -1: none) is copied into a list of at most
 * slowlog-max-len entries, newest first, the oldest dropped. The duration is the
 * command's own run, not the wait of a durable reply for its log sync (Redis likewise
 * times the command, not its fsync).
 *
 * An entry holds what Redis's holds: a unique id, the Unix time, the microseconds, the
 * arguments (at most SLOWLOG_MAX_ARGC, each cut to SLOWLOG_MAX_STRING bytes, with the
 * count of what was left out), the client's address and name. Arguments that may carry
 * secrets (command_redaction in command.c: AUTH, HELLO's AUTH pair, ACL, CONFIG) are
 * shown as "(redacted)".
 *
 * Invariants
 * ----------
 * 1. Only a slow command takes the log's mutex (the threshold is read first, relaxed), so
 *    the fast path of every command stays lock-free.
 * 2. An entry is built outside the mutex and linked in under it; the list never holds
 *    more than slowlog-max-len entries after a call returns.
 *
 * Testing
 * -------
 * tests/integration/test_server.py (test_slowlog): threshold 0 and -1, GET with counts,
 * LEN, RESET, cut arguments and redaction, max-len trimming.
 */
#include "slowlog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define SLOWLOG_MAX_ARGC 32
#define SLOWLOG_MAX_STRING 128

typedef struct slowlog_entry {
    struct slowlog_entry *next; /* older */
    uint64_t id;
    long long unix_time;
    uint64_t duration_us;
    size_t argc;
    char **argv; /* each NUL-terminated; lengths below */
    size_t *lengths;
    char address[64];
    char name[CLIENT_NAME_MAX];
} slowlog_entry;

static struct {
    pthread_mutex_t lock;
    slowlog_entry *newest;
    size_t length;
    uint64_t next_id;
} slowlog = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void slowlog_entry_free(slowlog_entry *e)
{
    for (size_t i = 0; i < e->argc; i++)
        free(e->argv[i]);
    free(e->argv);
    free(e->lengths);
    free(e);
}

/* Copies one argument as the entry shows it: whole, cut with "... (N more bytes)", or a
 * fixed text. */
static char *slowlog_copy(const char *data, size_t length, size_t *out_length)
{
    char note[48] = "";
    size_t kept = length;
    if (length > SLOWLOG_MAX_STRING) {
        kept = SLOWLOG_MAX_STRING;
        snprintf(note, sizeof(note), "... (%zu more bytes)", length - SLOWLOG_MAX_STRING);
    }
    size_t note_length = strlen(note);
    char *copy = malloc(kept + note_length + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, data, kept);
    memcpy(copy + kept, note, note_length + 1);
    *out_length = kept + note_length;
    return copy;
}

static slowlog_entry *slowlog_entry_new(char *const *argv, const size_t *lengths, size_t argc,
                                        redaction r)
{
    slowlog_entry *e = calloc(1, sizeof(*e));
    size_t shown = argc > SLOWLOG_MAX_ARGC ? SLOWLOG_MAX_ARGC : argc;
    if (e == NULL || (e->argv = calloc(shown, sizeof(char *))) == NULL ||
        (e->lengths = calloc(shown, sizeof(size_t))) == NULL) {
        if (e != NULL)
            slowlog_entry_free(e);
        return NULL;
    }
    for (size_t i = 0; i < shown; i++) {
        char more[64];
        const char *data = argv[i];
        size_t length = lengths[i];
        if (argc > SLOWLOG_MAX_ARGC && i == shown - 1) {
            snprintf(more, sizeof(more), "... (%zu more arguments)", argc - shown + 1);
            data = more;
            length = strlen(more);
        } else if (redaction_hides(r, i)) {
            data = "(redacted)";
            length = strlen(data);
        }
        if ((e->argv[i] = slowlog_copy(data, length, &e->lengths[i])) == NULL) {
            slowlog_entry_free(e);
            return NULL;
        }
        e->argc = i + 1;
    }
    return e;
}

void slowlog_consider(char *const *argv, const size_t *lengths, size_t argc, redaction r,
                      uint64_t duration_us, const char *address, const char *name)
{
    long long threshold =
        atomic_load_explicit(&server.config.slowlog_log_slower_than, memory_order_relaxed);
    if (threshold < 0 || duration_us < (uint64_t)threshold)
        return;
    long long max_length = atomic_load_explicit(&server.config.slowlog_max_len,
                                                memory_order_relaxed);
    if (max_length <= 0)
        return;
    slowlog_entry *e = slowlog_entry_new(argv, lengths, argc, r);
    if (e == NULL)
        return; /* out of memory: the entry is lost, the command is not affected */
    e->unix_time = (long long)time(NULL);
    e->duration_us = duration_us;
    snprintf(e->address, sizeof(e->address), "%s", address);
    snprintf(e->name, sizeof(e->name), "%s", name);

    slowlog_entry *dropped = NULL;
    pthread_mutex_lock(&slowlog.lock);
    e->id = slowlog.next_id++;
    e->next = slowlog.newest;
    slowlog.newest = e;
    slowlog.length++;
    if (slowlog.length > (size_t)max_length) {
        /* Cut the list after max_length entries; free the rest outside the lock. */
        slowlog_entry *keep = slowlog.newest;
        for (long long i = 1; i < max_length; i++)
            keep = keep->next;
        dropped = keep->next;
        keep->next = NULL;
        slowlog.length = (size_t)max_length;
    }
    pthread_mutex_unlock(&slowlog.lock);
    while (dropped != NULL) {
        slowlog_entry *next = dropped->next;
        slowlog_entry_free(dropped);
        dropped = next;
    }
}

void slowlog_reply_get(resp_buffer *out, long long count)
{
    pthread_mutex_lock(&slowlog.lock);
    size_t shown = count < 0 || (size_t)count > slowlog.length ? slowlog.length : (size_t)count;
    resp_add_array(out, (long long)shown);
    const slowlog_entry *e = slowlog.newest;
    for (size_t i = 0; i < shown; i++, e = e->next) {
        resp_add_array(out, 6);
        resp_add_integer(out, (long long)e->id);
        resp_add_integer(out, e->unix_time);
        resp_add_integer(out, (long long)e->duration_us);
        resp_add_array(out, (long long)e->argc);
        for (size_t a = 0; a < e->argc; a++)
            resp_add_bulk(out, e->argv[a], e->lengths[a]);
        resp_add_bulk_cstring(out, e->address);
        resp_add_bulk_cstring(out, e->name);
    }
    pthread_mutex_unlock(&slowlog.lock);
}

size_t slowlog_length(void)
{
    pthread_mutex_lock(&slowlog.lock);
    size_t length = slowlog.length;
    pthread_mutex_unlock(&slowlog.lock);
    return length;
}

void slowlog_reset(void)
{
    pthread_mutex_lock(&slowlog.lock);
    slowlog_entry *e = slowlog.newest;
    slowlog.newest = NULL;
    slowlog.length = 0;
    pthread_mutex_unlock(&slowlog.lock);
    while (e != NULL) {
        slowlog_entry *next = e->next;
        slowlog_entry_free(e);
        e = next;
    }
}
