/*
 * pending.h -- replies that wait for the disk: writes whose log record is not durable yet
 * hold back their client's output, and the log hands their completions to the client's
 * event loop. See pending.c for the design, the invariants and the tests.
 */
#ifndef SHOAL_SERVER_PENDING_H
#define SHOAL_SERVER_PENDING_H

#include <stdbool.h>
#include <stdint.h>

#include "server.h"

/* Most writes one client may have waiting for the log; past it, its input is not read
 * until some complete (the memory of a deep pipeline stays bounded). */
#define PENDING_CLIENT_MAX 65536u

/* Decides once, at startup, whether writes wait for the log: durable mode with a sync
 * policy other than none. In memory mode every call below is a no-op. */
void pending_configure(bool wait_for_log);

/* Creates the loop's completion queue and its eventfd (registered by the caller). Returns
 * 0 or -1. Thread-safety: at startup. */
int pending_loop_init(event_loop *loop);
/* The eventfd the loop watches for completions, or -1. */
int pending_loop_fd(const event_loop *loop);
/* Frees the queue, every write still in it and every disconnected client that was waiting.
 * Only after shoal_close returned: no callback can arrive any more. */
void pending_loop_free(event_loop *loop);

/* Before a commit whose reply starts at output position reply_start: fills *wo and returns
 * a pending write to pass to pending_end, or returns NULL and leaves *wo for a commit that
 * does not wait (memory mode, sync none). Never fails: a pending write that cannot be
 * allocated makes the commit wait the blocking way (wo without a callback). Loop thread. */
pending_write *pending_begin(client *c, shoal_write_options *wo, uint64_t reply_start);
/* After the commit: result SHOAL_PENDING makes w the client's newest pending write (its
 * reply, up to the current end of the output, is held until the log confirms) and returns
 * 0; any other result recycles w and is returned unchanged. w NULL: returns result. */
int pending_end(client *c, pending_write *w, int result);

/* WAITAOF: holds the client's output from reply_start (its reply is written already)
 * until every log record appended so far, on every stream, is on disk (shoal_log_end),
 * whatever the sync policy, none included. Works in durable mode only. Returns 0 (held,
 * or nothing to wait for), SHOAL_EINVAL in memory mode, or SHOAL_ENOMEM. Loop thread. */
int pending_barrier(client *c, uint64_t reply_start);

/* True when the writes pending_end kept since the last pending_round_end form a group the
 * loop may sync on its own thread (pending.c, "A group synced on the loop"): it holds few
 * writes, none under sync batch, the disk has been fast, and it is younger than an average
 * sync, so the loop should first run the events already waiting. Loop thread. */
bool pending_round_gathers(event_loop *loop);
/* Ends the group (nothing if it is empty): here, the loop syncs each log stream the group
 * wrote to itself (shoal_wait_durable) and then answers the group; otherwise it asks the
 * engine to notify the loop once the writes are durable, one notification per stream. Call
 * it before blocking in epoll_wait (pending.c, invariant 5). Loop thread. */
void pending_round_end(event_loop *loop, bool here);

/* True when the log has posted completions the loop has not drained yet (a load, no
 * system call; may miss the newest, which the eventfd then reports). Loop thread. */
bool pending_ready(event_loop *loop);

/* Absolute output position (resp_buffer marks) up to which replies may be sent now. */
uint64_t pending_sendable(const client *c);

/* Runs on the loop thread when the queue's eventfd fired, or between two events of a
 * round when pending_ready says so: marks the completed writes,
 * advances each client's held output past every completed write at its front (answering
 * a failed one with an error), then calls network_client_progress once per client. */
void pending_drain(event_loop *loop);

/* Keeps a client that disconnected (or is closed at shutdown) while writes of it were in
 * flight: network.c has already closed its socket and freed its buffers; the client
 * struct stays on the loop's list of zombies until its last write completes, then
 * network_client_progress frees it. Callbacks of the log never touch the client, only
 * its pending writes, so a late completion is harmless. Loop thread. */
void pending_adopt(client *c);

#endif /* SHOAL_SERVER_PENDING_H */
