/*
 * monitor.h -- MONITOR: every command the server runs, shown to the clients that asked.
 *
 * A command that ran (not one refused before it ran, nor an admin command, as in Redis) is
 * formatted once, on the loop that ran it, in Redis's line format:
 *     +<unix seconds>.<microseconds> [<db> <ip:port>] "<arg>" "<arg>" ...
 * and a copy is posted to the mailbox (mailbox.h) of every loop that has monitors; each loop
 * appends the lines to its own monitors' output, which the output-buffer limits bound like
 * any other (a monitor that does not read is disconnected). With no monitor anywhere, a
 * command pays one relaxed atomic load.
 *
 * Thread-safety: monitor_feed from any loop; the rest from the loop that owns the client or
 * the queue. A monitor sees every tenant's commands: MONITOR needs the admin right.
 */
#ifndef SHOAL_SERVER_MONITOR_H
#define SHOAL_SERVER_MONITOR_H

#include <stdatomic.h>
#include <stdbool.h>

#include "server.h"
#include "slowlog.h"

/* Monitors connected, over all loops. */
extern atomic_int monitor_total;

static inline bool monitor_active(void)
{
    return atomic_load_explicit(&monitor_total, memory_order_relaxed) > 0;
}

/* The loop's queue of lines from other loops; its eventfd joins the loop's epoll set.
 * Returns 0 or -1. monitor_loop_free after the loop thread has stopped. */
int monitor_loop_init(event_loop *loop);
int monitor_loop_fd(const event_loop *loop);
void monitor_loop_free(event_loop *loop);

/* MONITOR: c (on its loop) receives every later command's line. */
void monitor_add(client *c);
/* Stops c receiving lines (RESET, disconnect); nothing if it is not a monitor. */
void monitor_remove(client *c);
/* Shows c's current request (argv) to every monitor, the arguments r hides as
 * "(redacted)". */
void monitor_feed(client *c, redaction r);
/* Appends the lines posted to this loop to its monitors' output and writes it. */
void monitor_drain(event_loop *loop);

#endif /* SHOAL_SERVER_MONITOR_H */
