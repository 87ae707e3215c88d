/*
 * slowlog.h -- Redis's slow log: the latest commands that ran longer than
 * slowlog-log-slower-than microseconds, for SLOWLOG GET, LEN and RESET. See slowlog.c.
 * Thread-safety: every function may be called from any event loop.
 */
#ifndef SHOAL_SERVER_SLOWLOG_H
#define SHOAL_SERVER_SLOWLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp.h"

/* The arguments the slow log and monitors show as "(redacted)": count of them from index
 * from (from 0: none). command.c decides which (command_redaction). */
typedef struct redaction {
    size_t from, count;
} redaction;

static inline bool redaction_hides(redaction r, size_t i)
{
    return r.from > 0 && i >= r.from && i - r.from < r.count;
}

/* Logs the command (argv[0..argc)) that took duration_us, if the threshold says so: at
 * most slowlog-max-len entries are kept, the oldest dropped first; the arguments r hides
 * are shown as "(redacted)". */
void slowlog_consider(char *const *argv, const size_t *lengths, size_t argc, redaction r,
                      uint64_t duration_us, const char *address, const char *name);
/* SLOWLOG GET: the count newest entries (all if count < 0), newest first, each
 * [id, unix time, microseconds, [arguments], address, client name]. */
void slowlog_reply_get(resp_buffer *out, long long count);
size_t slowlog_length(void);
/* Frees every entry (SLOWLOG RESET, and at shutdown). */
void slowlog_reset(void);

#endif /* SHOAL_SERVER_SLOWLOG_H */
