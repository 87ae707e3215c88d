/*
 * monitor.c -- MONITOR (monitor.h).
 *
 * Each loop keeps the list of its own monitors (only it reads or changes the list) and a
 * count that other loops read to know whether to post there. monitor_total is their sum,
 * the only thing a command reads when nobody monitors.
 *
 * Lines are posted as copies, one per loop with monitors, so that no memory is shared
 * between loops after the post. A line posted to a loop whose monitors all left meanwhile
 * is dropped by its drain.
 *
 * An argument longer than MONITOR_ARGUMENT_MAX is shown cut, followed by
 * ` ... (N more bytes)` outside its quotes (Redis shows it whole): a 512 MiB SET must not
 * cost a monitor's loop several copies of 2 GiB of escaped text.
 */
#include "monitor.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "mailbox.h"
#include "resp.h"

#define MONITOR_ARGUMENT_MAX 65536

atomic_int monitor_total;

typedef struct monitor_line {
    mailbox_link link;
    size_t length;
    char text[]; /* "+...\r\n", ready to send */
} monitor_line;

struct monitor_queue {
    mailbox posted;    /* lines from any loop, not yet taken */
    atomic_int count;  /* monitors on this loop (read by other loops) */
    client **monitors; /* this loop's monitors (its thread only) */
    size_t monitor_count, monitor_capacity;
};

int monitor_loop_init(event_loop *loop)
{
    monitor_queue *q = calloc(1, sizeof(*q));
    if (q == NULL || mailbox_init(&q->posted) != 0) {
        free(q);
        return -1;
    }
    loop->monitor = q;
    return 0;
}

int monitor_loop_fd(const event_loop *loop)
{
    return loop->monitor->posted.event_fd;
}

void monitor_loop_free(event_loop *loop)
{
    monitor_queue *q = loop->monitor;
    if (q == NULL)
        return;
    for (mailbox_link *link = mailbox_take(&q->posted); link != NULL;) {
        mailbox_link *next = link->next;
        free(mailbox_item(link, monitor_line, link));
        link = next;
    }
    mailbox_destroy(&q->posted);
    free(q->monitors);
    free(q);
    loop->monitor = NULL;
}

void monitor_add(client *c)
{
    monitor_queue *q = c->loop->monitor;
    if (c->monitor)
        return;
    if (q->monitor_count == q->monitor_capacity) {
        size_t capacity = q->monitor_capacity ? q->monitor_capacity * 2 : 4;
        client **monitors = realloc(q->monitors, capacity * sizeof(*monitors));
        if (monitors == NULL)
            return; /* stays a plain client; MONITOR still answered OK, as Redis would */
        q->monitors = monitors;
        q->monitor_capacity = capacity;
    }
    q->monitors[q->monitor_count++] = c;
    c->monitor = true;
    atomic_fetch_add(&q->count, 1);
    atomic_fetch_add(&monitor_total, 1);
}

void monitor_remove(client *c)
{
    if (!c->monitor)
        return;
    monitor_queue *q = c->loop->monitor;
    for (size_t i = 0; i < q->monitor_count; i++) {
        if (q->monitors[i] == c) {
            q->monitors[i] = q->monitors[--q->monitor_count];
            break;
        }
    }
    c->monitor = false;
    atomic_fetch_sub(&q->count, 1);
    atomic_fetch_sub(&monitor_total, 1);
}

/* Appends text to a growing line; false when out of memory. */
static bool line_append(char **line, size_t *length, size_t *capacity, const char *text, size_t n)
{
    if (*length + n + 1 > *capacity) {
        size_t wanted = (*capacity ? *capacity : 256);
        while (wanted < *length + n + 1)
            wanted *= 2;
        char *grown = realloc(*line, wanted);
        if (grown == NULL)
            return false;
        *line = grown;
        *capacity = wanted;
    }
    memcpy(*line + *length, text, n);
    *length += n;
    return true;
}

/* An argument in quotes with Redis's escapes (its sdscatrepr). */
static bool line_append_quoted(char **line, size_t *length, size_t *capacity, const char *data,
                               size_t n)
{
    size_t shown = n > MONITOR_ARGUMENT_MAX ? MONITOR_ARGUMENT_MAX : n;
    bool ok = line_append(line, length, capacity, "\"", 1);
    /* Each escaped byte and the letter that follows its backslash. */
    static const char escaped_from[] = "\\\"\n\r\t\a\b", escaped_to[] = "\\\"nrtab";
    for (size_t i = 0; ok && i < shown; i++) {
        unsigned char ch = (unsigned char)data[i];
        const char *special = ch != '\0' ? strchr(escaped_from, ch) : NULL;
        char text[8];
        int written;
        if (special != NULL)
            written = snprintf(text, sizeof(text), "\\%c", escaped_to[special - escaped_from]);
        else if (isprint(ch))
            written = snprintf(text, sizeof(text), "%c", ch);
        else
            written = snprintf(text, sizeof(text), "\\x%02x", ch);
        ok = line_append(line, length, capacity, text, (size_t)written);
    }
    ok = ok && line_append(line, length, capacity, "\"", 1);
    if (ok && shown < n) {
        char more[64];
        int m = snprintf(more, sizeof(more), " ... (%zu more bytes)", n - shown);
        ok = line_append(line, length, capacity, more, (size_t)m);
    }
    return ok;
}

void monitor_feed(client *c, redaction r)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    char *line = NULL;
    size_t length = 0, capacity = 0;
    char head[160];
    int n = snprintf(head, sizeof(head), "+%ld.%06ld [%d %s]", (long)now.tv_sec, (long)now.tv_usec,
                     c->db, c->address);
    bool ok = line_append(&line, &length, &capacity, head, (size_t)n);
    for (size_t i = 0; ok && i < c->argc; i++) {
        ok = line_append(&line, &length, &capacity, " ", 1);
        if (redaction_hides(r, i))
            ok = ok && line_append(&line, &length, &capacity, "\"(redacted)\"", 12);
        else
            ok = ok && line_append_quoted(&line, &length, &capacity, c->argv[i], c->lengths[i]);
    }
    ok = ok && line_append(&line, &length, &capacity, "\r\n", 2);
    for (size_t l = 0; ok && l < server.loop_count; l++) {
        monitor_queue *q = server.loops[l].monitor;
        if (atomic_load_explicit(&q->count, memory_order_relaxed) == 0)
            continue;
        monitor_line *copy = malloc(sizeof(*copy) + length);
        if (copy == NULL)
            break;
        copy->length = length;
        memcpy(copy->text, line, length);
        mailbox_post(&q->posted, &copy->link);
    }
    free(line);
}

void monitor_drain(event_loop *loop)
{
    monitor_queue *q = loop->monitor;
    bool any = false;
    for (mailbox_link *link = mailbox_take(&q->posted); link != NULL;) {
        monitor_line *line = mailbox_item(link, monitor_line, link);
        link = link->next;
        for (size_t i = 0; i < q->monitor_count; i++)
            resp_add_raw(&q->monitors[i]->out, line->text, line->length);
        any = any || q->monitor_count > 0;
        free(line);
    }
    if (!any)
        return;
    /* Writing may disconnect a monitor (network_client_free removes it from the list):
     * from the end, so that the swap-remove never skips one. */
    for (size_t i = q->monitor_count; i > 0; i--)
        network_client_write(q->monitors[i - 1]);
}
