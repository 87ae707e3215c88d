/*
 * pending.c -- replies that wait for the disk.
 *
 * Purpose
 * -------
 * In durable mode a write's reply may leave the server only once the engine reports its
 * log record durable (sync always and batch) or handed to the operating system (sync
 * periodic), yet an event loop serves many clients and must never block on fsync. So
 * every commit passes shoal_write_options.on_durable: the engine applies the write at once
 * (readers see it), returns SHOAL_PENDING, and later calls pending_on_durable on a thread
 * of the log. That callback only appends the write to its loop's completion queue and,
 * when the queue was empty, writes the queue's eventfd; the loop drains the queue on its
 * own thread (pending_drain). Under sync none, and in memory mode, nothing here runs.
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
 *   free list --pending_begin--> prepared --pending_end(SHOAL_PENDING)--> in flight (in its
 *   client's FIFO) --pending_on_durable, log thread--> queued --pending_drain--> done
 *   --reaches the front of the FIFO--> free list.
 *   prepared --pending_end(any other result)--> free list (the engine never calls back).
 *
 * Invariants
 * ----------
 * 1. No byte of a client's output at or after the reply start of its oldest in-flight
 *    write is sent (pending_sendable; network_flush sends nothing beyond it).
 * 2. The log thread touches only the completion queue (under its mutex), the eventfd, and
 *    the error field of the write it queues; never a client. A client that goes away with
 *    writes in flight is kept as a zombie (socket closed, buffers freed) until its last
 *    write has come back through the queue, so no callback ever meets freed memory.
 *    The callback may even run before the commit has returned SHOAL_PENDING to the loop:
 *    it only queues the write, and the loop, busy in that very commit, drains the queue
 *    later, by which time pending_end has linked the write to its client.
 * 3. A loop's queue and eventfd outlive shoal_close, which delivers every outstanding
 *    callback (pending_loop_free runs after it).
 * 4. c->pending_count is the number of writes in the client's FIFO; server.pending_writes
 *    is the sum over all clients.
 *
 * Testing
 * -------
 * tests/integration/test_durable.py: pipelined writes under sync=always get every reply
 * in order (with reads between them), EXEC, clients that disconnect with writes in
 * flight, kill -9 under load keeps every acknowledged key, and a failed sync (DEBUG
 * FAULT FSYNC) answers MISCONF and leaves the server read-only for writes. The suite runs
 * under the ASan+UBSan and TSan builds too.
 */
#include "pending.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

/* Spare pending writes a loop keeps for reuse; more are freed. */
#define PENDING_FREE_KEEP 4096u

struct pending_write {
    pending_queue *queue; /* the owner's loop's: all the log thread needs */
    client *owner;
    uint64_t reply_start, reply_end; /* absolute output positions of its reply */
    int error;                       /* the engine's verdict; written by the log thread */
    bool done;
    pending_write *next_in_client; /* the owner's FIFO, in the order the writes ran */
    pending_write *next_in_queue;  /* the completion queue, or the free list */
};

struct pending_queue {
    pthread_mutex_t lock;       /* guards head and tail only */
    pending_write *head, *tail; /* completed by the log, not yet seen by the loop */
    int event_fd;
    /* Loop thread only. */
    pending_write *free_list;
    size_t free_count;
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
    q->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->event_fd < 0) {
        free(q);
        return -1;
    }
    pthread_mutex_init(&q->lock, NULL);
    loop->pending = q;
    return 0;
}

int pending_loop_fd(const event_loop *loop)
{
    return loop->pending != NULL ? loop->pending->event_fd : -1;
}

/* ---------------------------------------------------------------------------------------
 * The log's side
 * ------------------------------------------------------------------------------------- */

/* on_durable: runs on a thread of the log (invariant 2). It must return quickly. */
static void pending_on_durable(void *context, int error)
{
    pending_write *w = context;
    pending_queue *q = w->queue;
    w->error = error;
    w->next_in_queue = NULL;
    pthread_mutex_lock(&q->lock);
    bool was_empty = q->head == NULL;
    if (was_empty)
        q->head = w;
    else
        q->tail->next_in_queue = w;
    q->tail = w;
    pthread_mutex_unlock(&q->lock);
    if (was_empty) {
        /* The loop reads the eventfd before it takes the queue, so a completion queued
         * after its read finds the queue non-empty only if the loop has yet to take it. */
        uint64_t one = 1;
        ssize_t ignored = write(q->event_fd, &one, sizeof(one));
        (void)ignored;
    }
}

/* ---------------------------------------------------------------------------------------
 * The loop's side
 * ------------------------------------------------------------------------------------- */

pending_write *pending_begin(client *c, shoal_write_options *wo, uint64_t reply_start)
{
    if (!pending_waits)
        return NULL;
    pending_queue *q = c->loop->pending;
    pending_write *w = q->free_list;
    if (w != NULL) {
        q->free_list = w->next_in_queue;
        q->free_count--;
    } else {
        w = malloc(sizeof(*w));
        if (w == NULL)
            return NULL; /* the commit waits the blocking way: slower, still correct */
    }
    memset(w, 0, sizeof(*w));
    /* owner is set before the commit: the callback may run before the commit returns. */
    w->queue = q;
    w->owner = c;
    w->reply_start = reply_start;
    memset(wo, 0, sizeof(*wo));
    wo->on_durable = pending_on_durable;
    wo->ctx = w;
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
    w->reply_end = resp_buffer_mark(&c->out);
    if (c->pending_tail != NULL)
        c->pending_tail->next_in_client = w;
    else
        c->pending_head = w;
    c->pending_tail = w;
    c->pending_count++;
    atomic_fetch_add_explicit(&server.pending_writes, 1, memory_order_relaxed);
    return 0;
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

/* Takes everything the log queued so far. */
static pending_write *pending_take(pending_queue *q)
{
    uint64_t value;
    ssize_t ignored = read(q->event_fd, &value, sizeof(value));
    (void)ignored;
    pthread_mutex_lock(&q->lock);
    pending_write *taken = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return taken;
}

void pending_drain(event_loop *loop)
{
    pending_queue *q = loop->pending;
    pending_write *w = pending_take(q);
    while (w != NULL) {
        pending_write *next = w->next_in_queue;
        w->done = true;
        client *owner = w->owner;
        w = next; /* w may be recycled from here on */
        if (!pending_touch(q, owner))
            pending_settle(q, owner); /* out of memory for the list: settle it now */
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
    for (pending_write *w = pending_take(q); w != NULL; w = w->next_in_queue)
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
    close(q->event_fd);
    pthread_mutex_destroy(&q->lock);
    free(q);
    loop->pending = NULL;
}
