/*
 * catalog.c -- catalog changes off the event loops.
 *
 * Purpose
 * -------
 * An event loop must never block on fsync, yet three commands change the engine's
 * catalog, which the engine makes durable by rewriting its MANIFEST (temp file, fsync,
 * rename, directory fsync) before it returns: the first use of a logical database by a
 * tenant (shoal_ns_open creating "<tenant>/<n>"), FLUSHDB and FLUSHALL outside MULTI
 * (shoal_ns_drop, then shoal_ns_open again), and ACL SETUSER binding a tenant or quota
 * (shoal_tenant_create, shoal_tenant_set_quota). Those run here, on one worker thread,
 * while the client that asked is suspended, as Redis suspends a blocked client: its loop
 * runs nothing more of that client's input but goes on serving every other client.
 *
 * Life of a request that needs a catalog change
 * ---------------------------------------------
 * 1. The handler finds it needs one: client_namespace (command.c) sees that
 *    store_namespace_lookup has no ready namespace, or cmd_flushdb, cmd_flushall or ACL
 *    SETUSER has no outcome yet (catalog_result). It calls catalog_request, which
 *    allocates a job with copies of what the worker needs (c->catalog_asked), and
 *    returns without a reply.
 * 2. The dispatcher (command.c) discards the attempt (its transaction and any reply) and
 *    calls catalog_submit: the job joins the worker's queue, c->catalog_job is set, and
 *    network_process stops in front of the request, which stays parsed at the front of
 *    the query buffer (c->request_held). Later input is still read, within
 *    client-query-buffer-limit, so a disconnect is noticed; none of it is run.
 * 3. The worker (catalog_main) runs the job: store_namespace, store_flush, or
 *    acl_setuser; blocking on the disk is its purpose. It stores the outcome in the job
 *    and appends the job to its loop's completion queue, writing the queue's eventfd if
 *    the queue was empty (as pending.c does for the log).
 * 4. The loop, on its own thread, takes the queue (catalog_drain), moves the job to
 *    c->catalog_done and calls network_client_progress: the held request runs again
 *    from the start. This time the namespace exists (or catalog_namespace_failure gives
 *    the error its creation met, answered as before with reply_engine_error), or the
 *    handler finds its outcome with catalog_result and writes the reply. The request
 *    completes (its finished jobs are freed, catalog_forget) and the rest of the buffer
 *    runs. A request may suspend more than once (EXEC touching two new databases); each
 *    outcome stays until the request completes, so each change is asked for once.
 *
 *   catalog_request -> asked --catalog_submit--> queued --worker--> running --> done, in
 *   the loop's queue --catalog_drain--> finished, in c->catalog_done --the request
 *   completes--> freed. Any state with the client gone --> freed by catalog_drain.
 *
 * Running the whole request again, rather than resuming it, keeps every handler a plain
 * function of the state it reads: the attempt that asked wrote nothing (replies are
 * truncated, a transaction is aborted before its commit), and latency and statistics are
 * counted once, for the run that completes, from the time of the first run.
 *
 * MULTI/EXEC
 * ----------
 * A queued command that needs a new namespace makes EXEC give up its attempt before its
 * commit (the batch is discarded, the replies truncated, the queue and the watched keys
 * kept); the client is suspended and EXEC runs again from the start once the namespace
 * exists. The transaction stays one atomic commit, and WATCH is checked again by the new
 * attempt. FLUSHDB and FLUSHALL inside EXEC come nowhere near this module: dropping a
 * namespace could join neither the transaction's batch nor its order, so there they are
 * a write of the batch instead (store_txn_flush, shoal_batch_delete_all: every key
 * deleted under the commit's locks), and from the flush to the commit the worker cannot
 * make a namespace usable (store_txn_hold_catalog: a read-write lock the loop holds for
 * no longer than that EXEC). ACL SETUSER inside MULTI answers an error in its place in
 * EXEC's reply, since it cannot join the batch either.
 *
 * Memory mode
 * -----------
 * The same path, worker included, although creating a namespace there does no I/O: one
 * path to test instead of two, and flushing a large database (freeing every version)
 * leaves the loops too. The cost is a thread hop at the first use of each database.
 *
 * Invariants
 * ----------
 * 1. The worker never touches a client: a job carries copies (tenant id and name,
 *    database, ACL SETUSER's arguments) and its outcome. job->owner is read and written
 *    only by the thread of the job's loop.
 * 2. Nothing of a suspended client's input after its held request runs before the held
 *    request has completed (network_process stops at it; order is kept).
 * 3. Every job submitted ends in its loop's completion queue, done or abandoned at
 *    shutdown (SHOAL_ECLOSED), and leaves it once: catalog_drain gives it to its client
 *    or frees it when the client went away (network_client_free detached it through
 *    catalog_client_free), or catalog_loop_free frees it after the worker stopped. A
 *    client is therefore never freed while a job refers to it, and no job is leaked.
 * 4. Catalog changes run one at a time in the order they were submitted (one worker, a
 *    FIFO): a creation asked while a flush of the same database runs is made after it.
 * 5. No lock that an event loop takes is held across a MANIFEST write: the worker holds
 *    store.c's and acl.c's change locks there, which loops never take. The engine holds
 *    its own catalog lock only to edit and encode, not across the write (src/core/
 *    internal.h, C1), so INFO and LASTSAVE do not wait either. store.c's publish lock is
 *    taken by the worker for writing only to install a finished namespace (no I/O), and
 *    by a loop for reading only from a FLUSHDB or FLUSHALL inside EXEC to its commit.
 *
 * Testing
 * -------
 * tests/integration/test_catalog.py, under DEBUG FAULT FSYNC-DELAY (every fsync sleeps
 * first) with one event loop: while FLUSHDB, the first SET into a new database, or ACL
 * SETUSER of a new tenant waits for the disk, another client on the same loop gets its
 * PING and GET answered first; then the suspended reply is right and its effect is there.
 * Also a pipelined SELECT, SET, GET in a new database answered in order, EXEC in a new
 * database, FLUSHDB inside MULTI deleting what was queued before it, and clients that
 * disconnect while suspended (the server keeps serving, the database is still created).
 * test_server.py and test_tenants.py cover the replies (quota errors, ACL errors) that
 * did not change. The suites run under the ASan+UBSan and TSan builds too.
 */
#include "catalog.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mailbox.h"

struct catalog_job {
    catalog_job *next;  /* in the worker's queue, or c->catalog_done */
    mailbox_link done;  /* in its loop's mailbox, once the worker finished it */
    catalog_kind kind;
    event_loop *loop;   /* whose completion queue gets the job back */
    client *owner;      /* the suspended client; NULL once it went away. Loop thread only. */
    /* What to do: copies, taken when the handler asked (invariant 1). */
    uint32_t tenant;
    char tenant_name[SHOAL_MAX_NAME + 1];
    int db;
    size_t argc;        /* ACL SETUSER: the user name, then the rules; DELUSER: names */
    char **argv;
    size_t *lengths;
    /* The outcome, written by the worker before it posts the job (DELUSER: the number of
     * users removed, or -1). */
    int result;
    char error[512];
};

struct catalog_queue {
    mailbox finished; /* jobs finished by the worker, not yet taken by the loop */
};

static struct {
    pthread_mutex_t lock;       /* guards everything below */
    pthread_cond_t wake;
    catalog_job *head, *tail;   /* submitted, not started */
    bool stopping;
    bool started;
    pthread_t thread;
} catalog_worker = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void catalog_job_free(catalog_job *job)
{
    if (job == NULL)
        return;
    free(job->argv); /* one block: pointers, lengths and bytes */
    free(job);
}

/* ---------------------------------------------------------------------------------------
 * The worker
 * ------------------------------------------------------------------------------------- */

static void catalog_run(catalog_job *job)
{
    job->result = 0;
    job->error[0] = '\0';
    switch (job->kind) {
    case CATALOG_NAMESPACE: {
        shoal_ns *ns;
        job->result = store_namespace(job->tenant, job->tenant_name, job->db, &ns);
        break;
    }
    case CATALOG_FLUSHDB:
        job->result = store_flush(job->tenant, job->tenant_name, job->db);
        break;
    case CATALOG_FLUSHALL: {
        /* Every database of the tenant that was used, and only those; the first failure
         * stops it, as before. */
        long long databases = atomic_load(&server.config.databases);
        for (int db = 0; db < databases && job->result == 0; db++)
            if (store_namespace_known(job->tenant, db))
                job->result = store_flush(job->tenant, job->tenant_name, db);
        break;
    }
    case CATALOG_SETUSER:
        job->result = acl_setuser(job->argv[0], job->lengths[0],
                                  (const char *const *)job->argv + 1, job->lengths + 1,
                                  job->argc - 1, job->error, sizeof(job->error));
        break;
    case CATALOG_DELUSER: {
        size_t deleted = 0;
        job->result = acl_deluser((const char *const *)job->argv, job->lengths, job->argc,
                                  &deleted, job->error, sizeof(job->error)) == 0
                          ? (int)deleted
                          : -1;
        break;
    }
    }
}

/* Hands a job back to its loop (invariant 3). */
static void catalog_post(catalog_job *job)
{
    mailbox_post(&job->loop->catalog->finished, &job->done);
}

static void *catalog_main(void *argument)
{
    (void)argument;
    pthread_setname_np(pthread_self(), "shoal-catalog");
    pthread_mutex_lock(&catalog_worker.lock);
    for (;;) {
        while (catalog_worker.head == NULL && !catalog_worker.stopping)
            pthread_cond_wait(&catalog_worker.wake, &catalog_worker.lock);
        if (catalog_worker.stopping)
            break;
        catalog_job *job = catalog_worker.head;
        catalog_worker.head = job->next;
        if (catalog_worker.head == NULL)
            catalog_worker.tail = NULL;
        pthread_mutex_unlock(&catalog_worker.lock);
        catalog_run(job); /* may block on the MANIFEST: the reason this thread exists */
        catalog_post(job);
        pthread_mutex_lock(&catalog_worker.lock);
    }
    /* Stopping: what was not started is abandoned, still through the loops' queues. */
    catalog_job *abandoned = catalog_worker.head;
    catalog_worker.head = catalog_worker.tail = NULL;
    pthread_mutex_unlock(&catalog_worker.lock);
    size_t count = 0;
    while (abandoned != NULL) {
        catalog_job *next = abandoned->next;
        abandoned->result = SHOAL_ECLOSED;
        snprintf(abandoned->error, sizeof(abandoned->error), "ERR %s",
                 shoal_strerror(SHOAL_ECLOSED));
        catalog_post(abandoned);
        abandoned = next;
        count++;
    }
    if (count > 0)
        log_message(LOG_NOTICE, "shutdown: %zu catalog changes were not started", count);
    return NULL;
}

int catalog_start(void)
{
    catalog_worker.stopping = false;
    if (pthread_create(&catalog_worker.thread, NULL, catalog_main, NULL) != 0)
        return -1;
    catalog_worker.started = true;
    return 0;
}

void catalog_stop(void)
{
    if (!catalog_worker.started)
        return;
    pthread_mutex_lock(&catalog_worker.lock);
    catalog_worker.stopping = true;
    pthread_cond_signal(&catalog_worker.wake);
    pthread_mutex_unlock(&catalog_worker.lock);
    pthread_join(catalog_worker.thread, NULL);
    catalog_worker.started = false;
}

/* ---------------------------------------------------------------------------------------
 * The loops' queues
 * ------------------------------------------------------------------------------------- */

int catalog_loop_init(event_loop *loop)
{
    catalog_queue *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -1;
    if (mailbox_init(&q->finished) != 0) {
        free(q);
        return -1;
    }
    loop->catalog = q;
    return 0;
}

int catalog_loop_fd(const event_loop *loop)
{
    return loop->catalog != NULL ? loop->catalog->finished.event_fd : -1;
}

/* The job of a link mailbox_take returned. */
static catalog_job *catalog_job_of(mailbox_link *link)
{
    return mailbox_item(link, catalog_job, done);
}

void catalog_loop_free(event_loop *loop)
{
    catalog_queue *q = loop->catalog;
    if (q == NULL)
        return;
    /* The worker has stopped and the loop's clients are gone: every job left is ownerless. */
    for (mailbox_link *link = mailbox_take(&q->finished); link != NULL;) {
        catalog_job *job = catalog_job_of(link);
        link = link->next;
        catalog_job_free(job);
    }
    mailbox_destroy(&q->finished);
    free(q);
    loop->catalog = NULL;
}

void catalog_drain(event_loop *loop)
{
    for (mailbox_link *link = mailbox_take(&loop->catalog->finished); link != NULL;) {
        catalog_job *job = catalog_job_of(link);
        link = link->next; /* read before the job may be freed */
        client *c = job->owner;
        if (c == NULL) {
            catalog_job_free(job); /* its client went away meanwhile */
        } else {
            job->owner = NULL;
            c->catalog_job = NULL;
            atomic_fetch_sub_explicit(&server.suspended_clients, 1, memory_order_relaxed);
            job->next = c->catalog_done;
            c->catalog_done = job;
            /* Runs the held request again (it may free the client, and the job with it). */
            network_client_progress(c);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * The clients' side (loop thread)
 * ------------------------------------------------------------------------------------- */

/* Copies ACL SETUSER's name and rules, or ACL DELUSER's names (argv[2..]), into one block
 * owned by the job. */
static bool catalog_copy_arguments(catalog_job *job, const client *c)
{
    size_t first = 2, count = c->argc > first ? c->argc - first : 0;
    size_t bytes = count * (sizeof(char *) + sizeof(size_t));
    for (size_t i = 0; i < count; i++)
        bytes += c->lengths[first + i] + 1;
    char *block = malloc(bytes ? bytes : 1);
    if (block == NULL)
        return false;
    job->argv = (char **)block;
    job->lengths = (size_t *)(block + count * sizeof(char *));
    char *text = block + count * (sizeof(char *) + sizeof(size_t));
    for (size_t i = 0; i < count; i++) {
        job->argv[i] = text;
        job->lengths[i] = c->lengths[first + i];
        memcpy(text, c->argv[first + i], c->lengths[first + i]);
        text[c->lengths[first + i]] = '\0';
        text += c->lengths[first + i] + 1;
    }
    job->argc = count;
    return true;
}

bool catalog_request(client *c, catalog_kind kind)
{
    return catalog_request_db(c, kind, c->db);
}

bool catalog_request_db(client *c, catalog_kind kind, int db)
{
    if (c->catalog_asked != NULL)
        return true; /* one change per run: the first one asked */
    catalog_job *job = calloc(1, sizeof(*job));
    bool arguments = kind == CATALOG_SETUSER || kind == CATALOG_DELUSER;
    if (job == NULL || (arguments && !catalog_copy_arguments(job, c))) {
        catalog_job_free(job);
        resp_add_error(&c->out, "OOM command not allowed: the server is out of memory");
        return false;
    }
    job->kind = kind;
    job->loop = c->loop;
    job->tenant = c->identity.tenant;
    snprintf(job->tenant_name, sizeof(job->tenant_name), "%s", c->identity.tenant_name);
    job->db = db;
    c->catalog_asked = job;
    return true;
}

void catalog_submit(client *c)
{
    catalog_job *job = c->catalog_asked;
    c->catalog_asked = NULL;
    job->owner = c;
    job->next = NULL;
    c->catalog_job = job;
    atomic_fetch_add_explicit(&server.suspended_clients, 1, memory_order_relaxed);
    pthread_mutex_lock(&catalog_worker.lock);
    if (catalog_worker.tail != NULL)
        catalog_worker.tail->next = job;
    else
        catalog_worker.head = job;
    catalog_worker.tail = job;
    pthread_cond_signal(&catalog_worker.wake);
    pthread_mutex_unlock(&catalog_worker.lock);
}

bool catalog_result(const client *c, catalog_kind kind, int db, int *result,
                    const char **error_text)
{
    for (const catalog_job *job = c->catalog_done; job != NULL; job = job->next) {
        if (job->kind != kind || (kind == CATALOG_FLUSHDB && job->db != db))
            continue;
        *result = job->result;
        if (error_text != NULL)
            *error_text = job->error;
        return true;
    }
    return false;
}

int catalog_namespace_failure(const client *c, int db)
{
    for (const catalog_job *job = c->catalog_done; job != NULL; job = job->next)
        if (job->kind == CATALOG_NAMESPACE && job->db == db &&
            job->tenant == c->identity.tenant && job->result != 0)
            return job->result;
    return 0;
}

void catalog_forget(client *c)
{
    while (c->catalog_done != NULL) {
        catalog_job *next = c->catalog_done->next;
        catalog_job_free(c->catalog_done);
        c->catalog_done = next;
    }
}

void catalog_client_free(client *c)
{
    if (c->catalog_job != NULL) {
        c->catalog_job->owner = NULL; /* invariant 3: freed when it comes back */
        c->catalog_job = NULL;
        atomic_fetch_sub_explicit(&server.suspended_clients, 1, memory_order_relaxed);
    }
    catalog_job_free(c->catalog_asked);
    c->catalog_asked = NULL;
    catalog_forget(c);
    c->request_held = false;
}
