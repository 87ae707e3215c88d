/*
 * pending.c -- replies that wait for the disk.
 *
 * Purpose
 * -------
 * In durable mode a write's reply may leave the server only once the engine reports its
 * log record durable (sync always and batch) or handed to the operating system (sync
 * periodic), yet an event loop serves many clients and must never block on fsync. So
 * every commit passes shoal_write_options.mark: the engine applies the write at once
 * (readers see it), returns SHOAL_PENDING and says where its log record lies. The loop
 * goes on with its round of events; when the round is over (pending_round_end) it asks
 * the engine for one notification per log stream the round wrote to, for the round's
 * last record there (shoal_notify_durable). The round's writes form one group; the
 * callback (pending_group_on_durable, on a thread of the log) counts the group's streams
 * down and, at the last one, posts the group to the loop's completion mailbox
 * (mailbox.h: a list and an eventfd); the loop drains it on its own thread
 * (pending_drain). Under sync none, and in memory mode, nothing here runs.
 *
 * Why a round and not a write: a write that registered its own wait woke the log's
 * stream thread at the round's first commit, so the sync started while the loop was
 * still running the round's other commands, covered the first few of them, and the rest
 * waited for a second sync; every write also paid a registration under the stream's
 * mutex and a callback. Waiting once per round makes the round's writes one group commit,
 * as Redis's appendfsync always does with the writes of one event-loop iteration (it
 * syncs in the loop; here the log's thread does). Measured in docs/BENCHMARKS.md
 * ("Durable replies: one wait per round").
 *
 * A group synced on the loop
 * ---------------------------
 * Unpipelined (redis-benchmark -P 1, 50 clients), that hand-off costs more than the sync:
 * each group needs two wake-ups, loop to log thread and back, on a machine whose cores
 * the clients keep busy, while every client of the group waits and the loop has nothing
 * else to do. So a small group (at most PENDING_HERE_MAX_WRITES writes, none under sync
 * batch, while the disk's syncs have averaged under loop-sync-max-us, 1 ms) is first
 * kept open while events are ready at once (epoll_wait with no timeout; their writes join
 * it), while it is younger than an average sync (a round that took longer had enough to
 * do that its sync should overlap the next; a first round of one write, one unpipelined
 * client, is never too old); when none is ready, the loop, idle otherwise, syncs
 * the group's streams itself (shoal_wait_durable) and answers it, as Redis's loop does
 * with appendfsync always. A larger or older group goes to the log's thread as above, so
 * that under a pipelined load its sync overlaps the loop's next round. The loop thus
 * blocks on the disk only when nothing was waiting for it, and for about one sync of a
 * fast disk; a request that arrives meanwhile waits that long. Measured in
 * docs/BENCHMARKS.md ("Small groups synced on the loop").
 *
 * Order of replies
 * ----------------
 * A client's replies are produced in request order into its output buffer, exactly as in
 * memory mode. What changes is how much of the buffer may be sent: each pending write
 * remembers where its reply begins (a resp_buffer mark), and the client's sendable
 * position is the reply start of its oldest write still in flight, or everything when
 * none is. A later reply, even a read's, is therefore never sent before an earlier
 * write's. Nothing is serialized: a pipeline of 16 SETs runs all 16 commits, the log syncs
 * them together (one group commit), and the 16 replies leave in one writev once the last
 * is confirmed. EXEC is one commit, hence one pending write.
 *
 * A write whose sync failed
 * -------------------------
 * The engine calls back with an error (SHOAL_EFSYNC, SHOAL_EIO...): the write was applied
 * in memory, its fate on disk is unknown, and the engine refuses writes from then on
 * (architecture invariant 8). The write's held reply is replaced by "-MISCONF ..." (Redis's
 * answer when it cannot write its append-only file). If replies of later commands
 * followed it, they are dropped too, the error is sent and the connection closed: which of
 * those later commands reached the disk cannot be told, and closing says so.
 *
 * Life of a pending write
 * -----------------------
 *   free list --pending_begin--> prepared --pending_end(SHOAL_PENDING)--> in the round (in
 *   its client's FIFO and the loop's round group) --pending_round_end--> in flight
 *   --the group's last stream is durable, log thread--> queued --pending_drain--> done
 *   --reaches the front of the FIFO--> free list.
 *   prepared --pending_end(any other result)--> free list (nothing waits for it).
 * A group is led by its first write, which holds the group's count and verdict; the others
 * follow it through next_in_queue. A group needs no allocation of its own.
 *
 * Invariants
 * ----------
 * 1. No byte of a client's output at or after the reply start of its oldest in-flight
 *    write is sent (pending_sendable; network_flush sends nothing beyond it).
 * 2. The log thread touches only the completion mailbox, and the count and verdict of the
 *    group leader it is called for; never a client. A client that goes away with writes
 *    in flight is kept as a zombie (socket closed, buffers freed) until its last write has
 *    come back through the mailbox, so no callback ever meets freed memory.
 *    The callback may even run before the commit has returned SHOAL_PENDING to the loop:
 *    it only queues the write, and the loop, busy in that very commit, drains the queue
 *    later, by which time pending_end has linked the write to its client.
 * 3. A loop's queue and eventfd outlive shoal_close, which delivers every outstanding
 *    callback (pending_loop_free runs after it).
 * 4. c->pending_count is the number of writes in the client's FIFO; server.pending_writes
 *    is the sum over all clients.
 * 5. Every write that pending_end kept is in exactly one group, and every group is synced
 *    or handed to the log before the loop blocks for events (pending_round_end ends each round
 *    of network_loop_events, or a later one that the loop runs without blocking), so no
 *    write waits for a notification nobody asked for.
 *
 * A barrier (WAITAOF)
 * -------------------
 * pending_barrier holds a reply like a write's, with the end of every log stream as its
 * marks (shoal_log_end) at sync always, merged into the round like any write's, so its
 * reply leaves once everything logged before it is on disk. It works under every policy,
 * none included (the queue and its eventfd exist in every durable server; only
 * pending_begin looks at pending_waits).
 *
 * Testing
 * -------
 * tests/integration/test_durable.py: pipelined writes under sync=always get every reply
 * in order (with reads between them), EXEC, clients that disconnect with writes in
 * flight, kill -9 under load keeps every acknowledged key, and a failed sync (DEBUG
 * FAULT FSYNC) answers MISCONF and leaves the server read-only for writes; WAITAOF syncs
 * under sync none and periodic (test_waitaof_syncs_the_log). The suite runs
 * under the ASan+UBSan and TSan builds too.
 */
#include "pending.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mailbox.h"

/* Spare pending writes a loop keeps for reuse; more are freed. */
#define PENDING_FREE_KEEP 4096u
/* A group is synced on the loop's own thread (pending_round_gathers) only if it holds at
 * most this many writes, and only while the disk syncs within loop-sync-max-us on
 * average; it gathers rounds for at most an average sync (at least PENDING_GATHER_MIN_NS). */
#define PENDING_HERE_MAX_WRITES 64
#define PENDING_GATHER_MIN_NS 50000ull

struct pending_write {
    pending_queue *queue; /* the owner's loop's: all the log thread needs */
    client *owner;
    uint64_t reply_start, reply_end; /* absolute output positions of its reply */
    shoal_log_mark mark;             /* where the engine put its record */
    int error;                       /* the verdict, copied from its group's leader */
    bool done;
    pending_write *next_in_client; /* the owner's FIFO, in the order the writes ran */
    pending_write *next_in_queue;  /* the next write of its group, or the free list */
    /* Used in a group's leader only. */
    mailbox_link completed;     /* in the loop's completion mailbox */
    atomic_uint streams_left;   /* notifications still to come */
    atomic_int group_error;     /* the first failure any of them reported */
    uint64_t ended_ns;          /* when pending_round_end closed the group */
    bool synced_here;           /* synced on the loop's thread (timed there) */
};

struct pending_queue {
    mailbox completed; /* group leaders completed by the log, not yet drained */
    /* Loop thread only. */
    pending_write *free_list;
    size_t free_count;
    /* The group of this round: its writes, and per stream the mark that covers them. */
    pending_write *round_head, *round_tail;
    uint64_t round_streams; /* bit s: the round wrote to stream s */
    uint64_t round_opened_ns; /* monotonic time of the group's first write */
    size_t round_writes;
    unsigned round_rounds; /* round ends it was looked at (pending_round_gathers) */
    /* Moving average of the time from a group's end to its sync's end (pending_note_sync). */
    uint64_t sync_average_ns;
    shoal_log_mark round_marks[SHOAL_MAX_LOG_STREAMS];
    client **touched; /* clients whose FIFO advanced in this drain */
    size_t touched_count, touched_capacity;
    client *zombies; /* disconnected clients with writes in flight */
};

static bool pending_waits;

void pending_configure(bool wait_for_log)
{
    pending_waits = wait_for_log;
}

int pending_loop_init(event_loop *loop)
{
    pending_queue *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -1;
    if (mailbox_init(&q->completed) != 0) {
        free(q);
        return -1;
    }
    loop->pending = q;
    return 0;
}

int pending_loop_fd(const event_loop *loop)
{
    return loop->pending != NULL ? loop->pending->completed.event_fd : -1;
}

/* ---------------------------------------------------------------------------------------
 * The log's side
 * ------------------------------------------------------------------------------------- */

/* on_durable of one stream of a group: runs on a thread of the log (invariant 2), or on
 * the loop when the engine refused the notification. It must return quickly. */
static void pending_group_on_durable(void *context, int error)
{
    pending_write *leader = context;
    if (error != 0) {
        int none = 0;
        atomic_compare_exchange_strong(&leader->group_error, &none, error);
    }
    if (atomic_fetch_sub_explicit(&leader->streams_left, 1, memory_order_acq_rel) != 1)
        return;
    mailbox_post(&leader->queue->completed, &leader->completed);
}

/* ---------------------------------------------------------------------------------------
 * The loop's side
 * ------------------------------------------------------------------------------------- */

/* Takes a write off the free list (or allocates one) for client c. */
static pending_write *pending_take(client *c, uint64_t reply_start)
{
    pending_queue *q = c->loop->pending;
    pending_write *w = q->free_list;
    if (w != NULL) {
        q->free_list = w->next_in_queue;
        q->free_count--;
    } else {
        w = malloc(sizeof(*w));
        if (w == NULL)
            return NULL;
    }
    memset(w, 0, sizeof(*w));
    w->queue = q;
    w->owner = c;
    w->reply_start = reply_start;
    return w;
}

/* Merges mark into the round's mark of its stream: the largest lsn, the strongest sync. */
static void pending_round_cover(pending_queue *q, const shoal_log_mark *mark)
{
    shoal_log_mark *round = &q->round_marks[mark->stream];
    if (!(q->round_streams & (1ull << mark->stream))) {
        q->round_streams |= 1ull << mark->stream;
        *round = *mark;
        return;
    }
    if (mark->lsn > round->lsn)
        round->lsn = mark->lsn;
    if (mark->sync > round->sync)
        round->sync = mark->sync;
}

/* Links w, whose mark is filled, at the end of its client's FIFO and into the round. */
static void pending_hold(client *c, pending_write *w)
{
    w->reply_end = resp_buffer_mark(&c->out);
    if (c->pending_tail != NULL)
        c->pending_tail->next_in_client = w;
    else
        c->pending_head = w;
    c->pending_tail = w;
    c->pending_count++;
    atomic_fetch_add_explicit(&server.pending_writes, 1, memory_order_relaxed);

    /* Into the round's group; the stream's mark grows to cover it. */
    pending_queue *q = c->loop->pending;
    w->next_in_queue = NULL;
    if (q->round_tail != NULL) {
        q->round_tail->next_in_queue = w;
    } else {
        q->round_head = w;
        q->round_opened_ns = store_monotonic_ns();
        q->round_writes = 0;
        q->round_rounds = 0;
    }
    q->round_tail = w;
    q->round_writes++;
    pending_round_cover(q, &w->mark);
}

pending_write *pending_begin(client *c, shoal_write_options *wo, uint64_t reply_start)
{
    if (!pending_waits)
        return NULL;
    /* owner is set before the commit: the callback may run before the commit returns. */
    pending_write *w = pending_take(c, reply_start);
    if (w == NULL)
        return NULL; /* the commit waits the blocking way: slower, still correct */
    memset(wo, 0, sizeof(*wo));
    wo->mark = &w->mark;
    return w;
}

static void pending_recycle(pending_queue *q, pending_write *w)
{
    if (q->free_count >= PENDING_FREE_KEEP) {
        free(w);
        return;
    }
    w->next_in_queue = q->free_list;
    q->free_list = w;
    q->free_count++;
}

int pending_end(client *c, pending_write *w, int result)
{
    if (w == NULL)
        return result;
    if (result != SHOAL_PENDING) {
        pending_recycle(c->loop->pending, w);
        return result;
    }
    pending_hold(c, w);
    return 0;
}

int pending_barrier(client *c, uint64_t reply_start)
{
    shoal_log_mark marks[SHOAL_MAX_LOG_STREAMS];
    unsigned streams;
    int result = shoal_log_end(server.db, marks, &streams);
    if (result != 0)
        return result;
    /* The write carries its first stream's mark; the round gets every stream's. */
    pending_write *w = NULL;
    for (unsigned i = 0; i < streams; i++) {
        if (marks[i].lsn == 0)
            continue; /* nothing logged there since the start */
        if (w != NULL) {
            pending_round_cover(c->loop->pending, &marks[i]);
        } else if ((w = pending_take(c, reply_start)) != NULL) {
            w->mark = marks[i];
        } else {
            return SHOAL_ENOMEM;
        }
    }
    if (w != NULL)
        pending_hold(c, w);
    return 0;
}

bool pending_round_gathers(event_loop *loop)
{
    pending_queue *q = loop->pending;
    uint64_t max_sync_ns =
        (uint64_t)atomic_load_explicit(&server.config.loop_sync_max_us, memory_order_relaxed) *
        1000;
    if (q == NULL || q->round_head == NULL || q->round_writes > PENDING_HERE_MAX_WRITES ||
        q->sync_average_ns > max_sync_ns)
        return false;
    for (uint64_t streams = q->round_streams; streams != 0; streams &= streams - 1)
        if (q->round_marks[__builtin_ctzll(streams)].sync == SHOAL_SYNC_BATCH)
            return false; /* its window is the log thread's to wait out */
    /* While it is younger than an average sync: a round that took longer had enough else to
     * do that its sync should overlap the next one, on the log's thread. A group of one
     * write in its first round (one client, unpipelined) may always. */
    uint64_t gather_ns =
        q->sync_average_ns < PENDING_GATHER_MIN_NS ? PENDING_GATHER_MIN_NS : q->sync_average_ns;
    bool single = q->round_rounds++ == 0 && q->round_writes == 1;
    return single || store_monotonic_ns() - q->round_opened_ns < gather_ns;
}

/* Folds one group's time from its end to its last stream's sync into the average. */
static void pending_note_sync(pending_queue *q, uint64_t ns)
{
    q->sync_average_ns = q->sync_average_ns == 0 ? ns : (q->sync_average_ns * 7 + ns) / 8;
}

void pending_round_end(event_loop *loop, bool here)
{
    pending_queue *q = loop->pending;
    if (q == NULL || q->round_head == NULL)
        return;
    pending_write *leader = q->round_head;
    uint64_t streams = q->round_streams;
    atomic_store_explicit(&leader->group_error, 0, memory_order_relaxed);
    atomic_store_explicit(&leader->streams_left, (unsigned)__builtin_popcountll(streams),
                          memory_order_relaxed);
    q->round_head = q->round_tail = NULL;
    q->round_streams = 0;
    uint64_t ended_ns = store_monotonic_ns();
    leader->ended_ns = ended_ns;
    leader->synced_here = here;
    /* The leader may be queued, drained and recycled by the time the last call returns:
     * nothing below reads it. */
    for (; streams != 0; streams &= streams - 1) {
        const shoal_log_mark *mark = &q->round_marks[__builtin_ctzll(streams)];
        if (here) {
            pending_group_on_durable(leader, shoal_wait_durable(server.db, mark));
            continue;
        }
        int result = shoal_notify_durable(server.db, mark, pending_group_on_durable, leader);
        if (result != 0)
            pending_group_on_durable(leader, result);
    }
    atomic_fetch_add_explicit(here ? &server.groups_synced_on_loop : &server.groups_handed_to_log,
                              1, memory_order_relaxed);
    if (here) {
        pending_note_sync(q, store_monotonic_ns() - ended_ns);
        pending_drain(loop);
    }
}

uint64_t pending_sendable(const client *c)
{
    if (c->pending_head == NULL || c->durability_failed)
        return UINT64_MAX;
    return c->pending_head->reply_start;
}

/* Replaces the held reply of the client's oldest write, whose sync failed, by an error
 * (invariant 1 guarantees none of it was sent). */
static void pending_answer_failure(client *c, pending_write *w)
{
    atomic_fetch_add_explicit(&server.durability_failures, 1, memory_order_relaxed);
    if (c->zombie || c->durability_failed)
        return;
    bool alone = w->next_in_client == NULL && w->reply_end == resp_buffer_mark(&c->out);
    resp_buffer_truncate(&c->out, w->reply_start);
    resp_add_errorf(&c->out,
                    "MISCONF Errors writing to the log: %s. The write is applied in "
                    "memory but may not be on disk; writes are refused from now on",
                    shoal_strerror(w->error));
    log_message(LOG_WARNING, "client id=%llu addr=%s: a write's log sync failed (%s)%s",
                (unsigned long long)c->id, c->address, shoal_error_name(w->error),
                alone ? "" : "; later replies dropped, closing the connection");
    if (!alone) {
        /* Later replies are gone with the truncation: send the error, then close. */
        c->durability_failed = true;
        c->close_after_reply = true;
    }
}

/* Lists c for the second half of the drain. Returns false if the list cannot grow. */
static bool pending_touch(pending_queue *q, client *c)
{
    if (c->pending_touched)
        return true;
    if (q->touched_count == q->touched_capacity) {
        size_t capacity = q->touched_capacity ? q->touched_capacity * 2 : 64;
        client **grown = realloc(q->touched, capacity * sizeof(*grown));
        if (grown == NULL)
            return false;
        q->touched = grown;
        q->touched_capacity = capacity;
    }
    c->pending_touched = true;
    q->touched[q->touched_count++] = c;
    return true;
}

/* Pops the completed writes at the front of the client's FIFO. */
static void pending_advance(pending_queue *q, client *c)
{
    while (c->pending_head != NULL && c->pending_head->done) {
        pending_write *w = c->pending_head;
        if (w->error != 0)
            pending_answer_failure(c, w);
        c->pending_head = w->next_in_client;
        if (c->pending_head == NULL)
            c->pending_tail = NULL;
        c->pending_count--;
        atomic_fetch_sub_explicit(&server.pending_writes, 1, memory_order_relaxed);
        pending_recycle(q, w);
    }
}

static void pending_zombie_unlink(pending_queue *q, client *c);

/* Advances the client's FIFO, then frees it or sends what became sendable. Safe while
 * later completions of the same drain are still unmarked: a client with a write in
 * flight is never freed, only kept as a zombie (invariant 2). */
static void pending_settle(pending_queue *q, client *c)
{
    c->pending_touched = false;
    pending_advance(q, c);
    if (c->zombie && c->pending_count == 0)
        pending_zombie_unlink(q, c);
    network_client_progress(c);
}

static void pending_zombie_unlink(pending_queue *q, client *c)
{
    if (c->zombie_previous != NULL)
        c->zombie_previous->zombie_next = c->zombie_next;
    else
        q->zombies = c->zombie_next;
    if (c->zombie_next != NULL)
        c->zombie_next->zombie_previous = c->zombie_previous;
    c->zombie_previous = c->zombie_next = NULL;
}

/* The group leader a link of the completion mailbox belongs to. */
static pending_write *pending_leader(mailbox_link *link)
{
    return mailbox_item(link, pending_write, completed);
}

bool pending_ready(event_loop *loop)
{
    return loop->pending != NULL && mailbox_ready(&loop->pending->completed);
}

void pending_drain(event_loop *loop)
{
    pending_queue *q = loop->pending;
    for (mailbox_link *link = mailbox_take(&q->completed); link != NULL;) {
        pending_write *leader = pending_leader(link);
        link = link->next; /* read before the leader may be recycled */
        int error = atomic_load_explicit(&leader->group_error, memory_order_relaxed);
        if (!leader->synced_here)
            pending_note_sync(q, store_monotonic_ns() - leader->ended_ns);
        pending_write *w = leader;
        while (w != NULL) {
            pending_write *next = w->next_in_queue;
            w->error = error;
            w->done = true;
            client *owner = w->owner;
            w = next; /* w may be recycled from here on */
            if (!pending_touch(q, owner))
                pending_settle(q, owner); /* out of memory for the list: settle it now */
        }
    }
    /* Each touched client once: advance its FIFO, then free it or send what it can. */
    for (size_t i = 0; i < q->touched_count; i++)
        pending_settle(q, q->touched[i]);
    q->touched_count = 0;
}

void pending_adopt(client *c)
{
    pending_queue *q = c->loop->pending;
    c->zombie = true;
    c->zombie_previous = NULL;
    c->zombie_next = q->zombies;
    if (q->zombies != NULL)
        q->zombies->zombie_previous = c;
    q->zombies = c;
}

void pending_loop_free(event_loop *loop)
{
    pending_queue *q = loop->pending;
    if (q == NULL)
        return;
    /* Invariant 3: every callback has run; mark what the queue still holds. */
    for (mailbox_link *link = mailbox_take(&q->completed); link != NULL; link = link->next)
        for (pending_write *w = pending_leader(link); w != NULL; w = w->next_in_queue)
            w->done = true;
    while (q->zombies != NULL) {
        client *c = q->zombies;
        pending_zombie_unlink(q, c);
        pending_write *w = c->pending_head;
        while (w != NULL) {
            pending_write *next = w->next_in_client;
            if (!w->done)
                log_message(LOG_WARNING,
                            "a pending write of client id=%llu was never "
                            "confirmed by the log",
                            (unsigned long long)c->id);
            free(w);
            w = next;
        }
        c->pending_head = c->pending_tail = NULL;
        c->pending_count = 0;
        network_client_progress(c);
    }
    while (q->free_list != NULL) {
        pending_write *next = q->free_list->next_in_queue;
        free(q->free_list);
        q->free_list = next;
    }
    free(q->touched);
    mailbox_destroy(&q->completed);
    free(q);
    loop->pending = NULL;
}
