/*
 * acllog.c -- ACL LOG (acllog.h).
 *
 * A list, newest first, under one mutex: entries are added only when something is refused,
 * so the lock is never on a path that succeeds.
 */
#include "acllog.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acl.h"

#define ACLLOG_GROUP_MS 60000 /* the same refusal within this counts on its entry */

typedef struct acllog_entry {
    struct acllog_entry *next;
    unsigned long long count;
    char reason[16], context[16];
    char object[64];
    char username[ACL_NAME_MAX];
    char *client_info;
    long long updated_ms;
} acllog_entry;

static pthread_mutex_t acllog_lock = PTHREAD_MUTEX_INITIALIZER;
static acllog_entry *acllog_head;
static size_t acllog_count;

static long long acllog_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void acllog_entry_free(acllog_entry *e)
{
    free(e->client_info);
    free(e);
}

/* Copies text into a fixed field, cut to fit. */
static void acllog_copy(char *field, size_t size, const char *text, size_t length)
{
    if (length >= size)
        length = size - 1;
    memcpy(field, text, length);
    field[length] = '\0';
}

void acllog_add(const client *c, const char *reason, const char *object, const char *username,
                size_t username_length)
{
    acllog_entry probe = {0};
    acllog_copy(probe.reason, sizeof(probe.reason), reason, strlen(reason));
    acllog_copy(probe.context, sizeof(probe.context), c->in_multi ? "multi" : "toplevel",
                c->in_multi ? 5 : 8);
    acllog_copy(probe.object, sizeof(probe.object), object, strlen(object));
    acllog_copy(probe.username, sizeof(probe.username), username, username_length);
    size_t info_length;
    char *info = network_client_list(c, &info_length); /* before our lock: it takes its own */
    if (info != NULL && info_length > 0 && info[info_length - 1] == '\n')
        info[info_length - 1] = '\0';
    long long now = acllog_now_ms();
    long long max_length =
        atomic_load_explicit(&server.config.acllog_max_len, memory_order_relaxed);

    pthread_mutex_lock(&acllog_lock);
    acllog_entry **link = &acllog_head, *found = NULL;
    for (; *link != NULL; link = &(*link)->next) {
        acllog_entry *e = *link;
        if (now - e->updated_ms < ACLLOG_GROUP_MS && strcmp(e->reason, probe.reason) == 0 &&
            strcmp(e->context, probe.context) == 0 && strcmp(e->object, probe.object) == 0 &&
            strcmp(e->username, probe.username) == 0) {
            found = e;
            *link = e->next; /* unlinked; goes back in front below */
            acllog_count--;
            break;
        }
    }
    bool added = found == NULL;
    if (found == NULL) {
        found = malloc(sizeof(*found));
        if (found != NULL) {
            *found = probe;
            found->count = 0;
            found->client_info = NULL;
        }
    }
    if (found != NULL) {
        found->count++;
        found->updated_ms = now;
        free(found->client_info);
        found->client_info = info;
        info = NULL;
        found->next = acllog_head;
        acllog_head = found;
        acllog_count++;
    }
    /* Past the limit (also after CONFIG SET lowered it), the oldest go: when an entry is
     * added, as in Redis. */
    size_t keep = max_length > 0 ? (size_t)max_length : 0;
    link = &acllog_head;
    for (size_t i = 0; *link != NULL && i < keep; i++)
        link = &(*link)->next;
    while (added && *link != NULL) {
        acllog_entry *gone = *link;
        *link = gone->next;
        acllog_entry_free(gone);
        acllog_count--;
    }
    pthread_mutex_unlock(&acllog_lock);
    free(info);
}

void acllog_reply(resp_buffer *out, long long count)
{
    long long now = acllog_now_ms();
    pthread_mutex_lock(&acllog_lock);
    long long shown = count < 0                         ? 0
                      : count < (long long)acllog_count ? count
                                                        : (long long)acllog_count;
    resp_add_array(out, shown);
    acllog_entry *e = acllog_head;
    for (long long i = 0; i < shown; i++, e = e->next) {
        resp_add_map(out, 7);
        resp_add_bulk_cstring(out, "count");
        resp_add_integer(out, (long long)e->count);
        resp_add_bulk_cstring(out, "reason");
        resp_add_bulk_cstring(out, e->reason);
        resp_add_bulk_cstring(out, "context");
        resp_add_bulk_cstring(out, e->context);
        resp_add_bulk_cstring(out, "object");
        resp_add_bulk_cstring(out, e->object);
        resp_add_bulk_cstring(out, "username");
        resp_add_bulk_cstring(out, e->username);
        resp_add_bulk_cstring(out, "age-seconds");
        resp_add_double(out, (double)(now - e->updated_ms) / 1000.0);
        resp_add_bulk_cstring(out, "client-info");
        resp_add_bulk_cstring(out, e->client_info != NULL ? e->client_info : "");
    }
    pthread_mutex_unlock(&acllog_lock);
}

void acllog_reset(void)
{
    pthread_mutex_lock(&acllog_lock);
    while (acllog_head != NULL) {
        acllog_entry *gone = acllog_head;
        acllog_head = gone->next;
        acllog_entry_free(gone);
    }
    acllog_count = 0;
    pthread_mutex_unlock(&acllog_lock);
}
