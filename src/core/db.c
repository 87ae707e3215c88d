/*
 * db.c -- opening and closing a database, its options, shards, per-thread state, tenants
 * and the catalog of namespaces.
 *
 * A database is created empty in memory mode: no shard exists until a namespace first
 * writes to it (shards are created lazily, each with its lock, segment allocator and
 * object-table part). The catalog (namespaces and tenants) is protected by one mutex that
 * only catalog changes and lookups by name take; the data path never touches it.
 *
 * Invariants:
 *   D1. A namespace slot is reused only after the namespace's every version was freed under
 *       its shards' write locks (shoal_ns_drop), so a stale reference to the slot can only
 *       come from a retire-list entry, whose handle no longer validates.
 *   D2. Tenant 0 ("default") always exists and has no limits; its usage is never kept in
 *       a shared counter (its writers on different shards share no cache line).
 *   D3. Pinned placement (a departure from "least loaded active shard", see
 *       docs/DESIGN.md): a new pinned namespace goes to the shard with the fewest pinned
 *       namespaces, the lowest index first, so that pinned namespaces get shards of their
 *       own while shards remain (invariant 6: writers in namespaces on different shards
 *       never wait on the same lock).
 *   D4. Namespaces and tenants are allocated cache-line aligned (internal.h I5): each
 *       shard's part of a namespace, written on every write of that shard, fills a line of
 *       its own, and no part or tenant usage shares a line with a neighbour on the heap.
 *       A namespace costs 64 bytes per shard instead of 24 (832 bytes at 8 shards, about
 *       4.4 KiB at 64).
 *
 * Tested by tests/unit/test_kv.c and test_bad_input.c (catalog, options, errors),
 * test_tenant.c (tenants), test_cache_lines.c (D4) and the model test.
 */
#include "core/durable.h"
#include "core/pages.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- options --------------------------------------------------------------------------- */

unsigned online_cores(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (unsigned)cores : 1;
}

static uint64_t default_shards(void)
{
    uint64_t want = (uint64_t)online_cores() * 4, n = 1;
    while (n < want && n < SHOAL_MAX_SHARDS)
        n <<= 1;
    return n;
}

static void config_defaults(struct db_config *c)
{
    unsigned cores = online_cores();
    c->shards = default_shards();
    c->activation_step = 1024;
    c->sync = SHOAL_SYNC_PERIODIC;
    c->log_streams = cores > 1 ? cores / 2 : 1; /* docs/DESIGN.md, departure 8 */
    c->snapshot_slots = 1024;
    c->memory_limit = 0;
    c->sync_period_ms = 1000;
    c->sync_window_us = 2000;
    c->checkpoint_log_bytes = 64ull << 20;
    c->log_segment_bytes = 64ull << 20;
    c->salvage = 0;
    c->recovery_threads = cores;
}

SHOAL_API int shoal_options_new(shoal_options **out)
{
    if (!out)
        return SHOAL_EINVAL;
    *out = calloc(1, sizeof **out);
    if (!*out)
        return SHOAL_ENOMEM;
    config_defaults(&(*out)->config);
    return 0;
}

SHOAL_API void shoal_options_free(shoal_options *opts)
{
    free(opts);
}

/* Returns the field of an option, or NULL for an unknown one. */
static uint64_t *option_field(struct db_config *c, shoal_option option)
{
    switch (option) {
    case SHOAL_OPT_SHARDS: return &c->shards;
    case SHOAL_OPT_ACTIVATION_STEP: return &c->activation_step;
    case SHOAL_OPT_SYNC: return &c->sync;
    case SHOAL_OPT_LOG_STREAMS: return &c->log_streams;
    case SHOAL_OPT_SNAPSHOT_SLOTS: return &c->snapshot_slots;
    case SHOAL_OPT_MEMORY_LIMIT: return &c->memory_limit;
    case SHOAL_OPT_SYNC_PERIOD_MS: return &c->sync_period_ms;
    case SHOAL_OPT_SYNC_WINDOW_US: return &c->sync_window_us;
    case SHOAL_OPT_CHECKPOINT_LOG_BYTES: return &c->checkpoint_log_bytes;
    case SHOAL_OPT_LOG_SEGMENT_BYTES: return &c->log_segment_bytes;
    case SHOAL_OPT_SALVAGE: return &c->salvage;
    case SHOAL_OPT_RECOVERY_THREADS: return &c->recovery_threads;
    }
    return NULL;
}

static bool option_valid(shoal_option option, uint64_t v)
{
    switch (option) {
    case SHOAL_OPT_SHARDS: return v >= 1 && v <= SHOAL_MAX_SHARDS && (v & (v - 1)) == 0;
    case SHOAL_OPT_ACTIVATION_STEP: return v >= 1 && v <= (1u << 30);
    case SHOAL_OPT_SYNC: return v >= SHOAL_SYNC_NONE && v <= SHOAL_SYNC_ALWAYS;
    case SHOAL_OPT_LOG_STREAMS: return v >= 1 && v <= SHOAL_MAX_SHARDS;
    case SHOAL_OPT_SNAPSHOT_SLOTS: return v >= 1 && v <= (1u << 20);
    case SHOAL_OPT_MEMORY_LIMIT: return true;
    case SHOAL_OPT_SYNC_PERIOD_MS: return v >= 1 && v <= 3600000;
    case SHOAL_OPT_SYNC_WINDOW_US: return v <= 10000000;
    case SHOAL_OPT_CHECKPOINT_LOG_BYTES: return v >= (1u << 20);
    case SHOAL_OPT_LOG_SEGMENT_BYTES: return v >= (64u << 10) && v <= (1ull << 40);
    case SHOAL_OPT_SALVAGE: return v <= 1;
    case SHOAL_OPT_RECOVERY_THREADS: return v >= 1 && v <= SHOAL_MAX_SHARDS;
    }
    return false;
}

SHOAL_API int shoal_options_set(shoal_options *opts, shoal_option option, uint64_t value)
{
    if (!opts)
        return SHOAL_EINVAL;
    uint64_t *field = option_field(&opts->config, option);
    if (!field || !option_valid(option, value))
        return SHOAL_EINVAL;
    *field = value;
    return 0;
}

SHOAL_API int shoal_options_get(const shoal_options *opts, shoal_option option, uint64_t *value)
{
    if (!opts || !value)
        return SHOAL_EINVAL;
    uint64_t *field = option_field((struct db_config *)&opts->config, option);
    if (!field)
        return SHOAL_EINVAL;
    *value = *field;
    return 0;
}

/* ---- per-thread state ------------------------------------------------------------------- */

static void thread_state_release(void *p)
{
    struct thread_state *t = p;
    atomic_store(&t->in_use, false);
}

struct thread_state *db_thread_at(struct shoal_db *db, unsigned i)
{
    return atomic_load_explicit(&db->threads[i], memory_order_acquire);
}

static struct thread_state *thread_state_new(struct shoal_db *db, unsigned i)
{
    struct thread_state *t = aligned_alloc(CACHE_LINE, sizeof *t);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->db = db;
    t->index = i;
    t->shared = i == MAX_THREAD_STATES;
    atomic_init(&t->in_use, true);
    return t;
}

_Thread_local struct db_thread_cache db_thread_cached __attribute__((tls_model("initial-exec")));

/* Counts databases opened; the count is each one's instance id. */
static _Atomic uint64_t db_instances;

static struct thread_state *db_thread_cache_fill(struct shoal_db *db, struct thread_state *t)
{
    db_thread_cached = (struct db_thread_cache){.instance = db->instance, .state = t};
    return t;
}

/* db_thread's slow path: a thread's first use of db, or of db after another database. */
struct thread_state *db_thread_lookup(struct shoal_db *db)
{
    struct thread_state *t = pthread_getspecific(db->thread_key);
    if (__builtin_expect(t != NULL, 1))
        return db_thread_cache_fill(db, t);
    /* First call of this thread on this database: take a free state (one a finished
     * thread left keeps its counters, which are cumulative), or make one (states are
     * allocated as threads come: each holds histograms of about 15 KB). Past the limit,
     * or out of memory, threads share the overflow state and its counters become
     * approximate. A writer scanning the states skips one not yet published: its thread
     * is not reading yet, and will see the writer when it starts (shard lock). */
    unsigned n = atomic_load(&db->thread_count);
    if (n > MAX_THREAD_STATES)
        n = MAX_THREAD_STATES;
    for (unsigned i = 0; i < n && !t; i++) {
        struct thread_state *candidate = db_thread_at(db, i);
        bool expected = false;
        if (candidate && atomic_compare_exchange_strong(&candidate->in_use, &expected, true))
            t = candidate;
    }
    if (!t) {
        unsigned i = atomic_fetch_add(&db->thread_count, 1);
        if (i < MAX_THREAD_STATES && (t = thread_state_new(db, i)) != NULL) {
            atomic_store_explicit(&db->threads[i], t, memory_order_release);
        } else {
            if (i >= MAX_THREAD_STATES)
                atomic_store(&db->thread_count, MAX_THREAD_STATES);
            t = db_thread_at(db, MAX_THREAD_STATES); /* the shared overflow state */
        }
    }
    pthread_setspecific(db->thread_key, t);
    db_thread_cache_fill(db, t);
    return t;
}

/* ---- shards ---------------------------------------------------------------------------- */

static struct shard *shard_new(struct shoal_db *db, unsigned i)
{
    struct shard *s;
    if (posix_memalign((void **)&s, CACHE_LINE, sizeof *s) != 0)
        return NULL;
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->write_mutex, NULL);
    s->index = i;
    s->db = db;
    s->reclaim_threshold = 64;
    s->segments = segment_new();
    s->objects = ot_part(db->objects, i);
    if (!s->segments || !s->objects) {
        segment_destroy(s->segments);
        pthread_mutex_destroy(&s->write_mutex);
        free(s);
        return NULL;
    }
    return s;
}

struct shard *db_shard(struct shoal_db *db, unsigned i)
{
    struct shard *s = atomic_load_explicit(&db->shards[i], memory_order_acquire);
    if (__builtin_expect(s != NULL, 1))
        return s;
    pthread_mutex_lock(&db->shard_create_lock);
    s = atomic_load_explicit(&db->shards[i], memory_order_acquire);
    if (!s) {
        s = shard_new(db, i);
        if (s)
            atomic_store_explicit(&db->shards[i], s, memory_order_release);
    }
    pthread_mutex_unlock(&db->shard_create_lock);
    return s;
}

static void lock_waited(struct shard *s, uint64_t start)
{
    atomic_fetch_add_explicit(&s->lock_waits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->lock_wait_ns, clock_ns() - start, memory_order_relaxed);
}

/* The shard lock (internal.h, struct shard). Readers and writers meet as in Dekker's
 * algorithm: a reader stores its flag, then loads `writer`; a writer stores `writer`, then
 * loads every flag; both sequentially consistent, so at least one sees the other. A reader
 * that sees a writer clears its flag and sets it again while holding write_mutex, which no
 * writer holds then, so readers cannot starve. Threads that share the overflow state have
 * no flag of their own and take write_mutex to read. The clock is read only on contention.
 */
void shard_read_lock(struct shard *s, struct thread_state *t)
{
    if (!t->shared) {
        atomic_store(&t->reading[s->index], 1);
        if (__builtin_expect(!atomic_load(&s->writer), 1))
            return;
        atomic_store_explicit(&t->reading[s->index], 0, memory_order_release);
    }
    uint64_t start = clock_ns();
    pthread_mutex_lock(&s->write_mutex);
    lock_waited(s, start);
    if (t->shared)
        return; /* reads holding the mutex */
    atomic_store(&t->reading[s->index], 1);
    pthread_mutex_unlock(&s->write_mutex);
}

void shard_read_unlock(struct shard *s, struct thread_state *t)
{
    if (t->shared)
        pthread_mutex_unlock(&s->write_mutex);
    else
        atomic_store_explicit(&t->reading[s->index], 0, memory_order_release);
}

void shard_write_lock(struct shard *s)
{
    if (pthread_mutex_trylock(&s->write_mutex) != 0) {
        uint64_t start = clock_ns();
        pthread_mutex_lock(&s->write_mutex);
        lock_waited(s, start);
    }
    atomic_store(&s->writer, 1);
    struct shoal_db *db = s->db;
    unsigned threads = atomic_load(&db->thread_count);
    if (threads > MAX_THREAD_STATES)
        threads = MAX_THREAD_STATES;
    uint64_t start = 0;
    for (unsigned i = 0; i < threads; i++) {
        struct thread_state *t = db_thread_at(db, i);
        for (unsigned spins = 0; t && atomic_load(&t->reading[s->index]); spins++) {
            if (!start)
                start = clock_ns();
            if (spins > 64)
                sched_yield();
        }
    }
    if (start)
        lock_waited(s, start);
}

void shard_write_unlock(struct shard *s)
{
    atomic_store_explicit(&s->writer, 0, memory_order_release);
    pthread_mutex_unlock(&s->write_mutex);
}

unsigned ns_route(const struct namespace *ns, const void *key, size_t klen)
{
    if (ns->placement == SHOAL_PLACE_PINNED)
        return ns->shard;
    return (unsigned)XXH3_64bits(key, klen) & ns->shard_mask;
}

/* ---- open and close -------------------------------------------------------------------- */

void db_config_from(const shoal_options *opts, struct db_config *out)
{
    if (opts)
        *out = opts->config;
    else
        config_defaults(out);
}

int db_create(const struct db_config *config, struct shoal_db **out)
{
    *out = NULL;
    struct shoal_db *db;
    if (posix_memalign((void **)&db, CACHE_LINE, sizeof *db) != 0)
        return SHOAL_ENOMEM;
    memset(db, 0, sizeof *db);
    db->instance = atomic_fetch_add(&db_instances, 1) + 1;
    db->config = *config;
    atomic_init(&db->memory_limit, config->memory_limit);
    db->shard_mask = (unsigned)db->config.shards - 1;
    pthread_mutex_init(&db->shard_create_lock, NULL);
    pthread_mutex_init(&db->catalog_change, NULL);
    pthread_mutex_init(&db->catalog_lock, NULL);
    pthread_mutex_init(&db->compact_lock, NULL);

    int err = SHOAL_ENOMEM;
    db->objects = ot_new((unsigned)db->config.shards, (unsigned)db->config.activation_step);
    db->namespaces = calloc(MAX_NAMESPACES, sizeof *db->namespaces);
    db->threads = calloc(MAX_THREAD_STATES + 1, sizeof *db->threads);
    db->slots = aligned_alloc(CACHE_LINE, db->config.snapshot_slots * sizeof *db->slots);
    if (!db->objects || !db->namespaces || !db->threads || !db->slots)
        goto fail;
    struct thread_state *overflow = thread_state_new(db, MAX_THREAD_STATES);
    if (!overflow)
        goto fail;
    atomic_init(&db->threads[MAX_THREAD_STATES], overflow);
    for (uint64_t i = 0; i < db->config.snapshot_slots; i++) {
        atomic_init(&db->slots[i].value, 0);
        db->slots[i].db = db;
    }
    if (pthread_key_create(&db->thread_key, thread_state_release) != 0)
        goto fail;
    if ((err = db_tenant_add(db, "default", NULL)) != 0) {
        pthread_key_delete(db->thread_key);
        goto fail;
    }
    pages_reserve_join();
    *out = db;
    return 0;

fail:
    ot_destroy(db->objects);
    free(db->namespaces);
    if (db->threads)
        free(db_thread_at(db, MAX_THREAD_STATES));
    free(db->threads);
    free(db->slots);
    free(db);
    return err;
}

SHOAL_API int shoal_open(const char *dir, const shoal_options *opts, shoal_db **out)
{
    if (!out)
        return SHOAL_EINVAL;
    *out = NULL;
    if (dir)
        return *dir ? durable_open(dir, opts, NULL, out) : SHOAL_EINVAL;
    struct db_config config;
    db_config_from(opts, &config);
    return db_create(&config, out);
}

static void namespace_free_data(struct shoal_db *db, struct namespace *ns);

void db_destroy(struct shoal_db *db)
{
    for (uint32_t slot = 0; slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (!ns)
            continue;
        namespace_free_data(db, ns);
        free(ns);
    }
    for (unsigned i = 0; i < SHOAL_MAX_SHARDS; i++) {
        struct shard *s = atomic_load(&db->shards[i]);
        if (!s)
            continue;
        segment_destroy(s->segments);
        segment_destroy(s->old_segments); /* a compaction's, if no reader let it go yet */
        pthread_mutex_destroy(&s->write_mutex);
        free(s);
    }
    for (uint32_t i = 0; i < db->tenant_count; i++)
        free(db->tenants[i]);
    free(db->tenants);
    pthread_key_delete(db->thread_key);
    ot_destroy(db->objects);
    pthread_mutex_destroy(&db->shard_create_lock);
    pthread_mutex_destroy(&db->catalog_change);
    pthread_mutex_destroy(&db->catalog_lock);
    pthread_mutex_destroy(&db->compact_lock);
    free(db->namespaces);
    for (unsigned i = 0; i <= MAX_THREAD_STATES; i++)
        free(db_thread_at(db, i));
    free(db->threads);
    free(db->slots);
    free(db);
    pages_reserve_leave();
}

SHOAL_API int shoal_close(shoal_db *db)
{
    if (!db)
        return 0;
    int err = durable_close(db);
    db_destroy(db);
    return err;
}

/* ---- tenants --------------------------------------------------------------------------- */

SHOAL_API void shoal_quota_unlimited(shoal_quota *q)
{
    if (q)
        q->max_keys = q->max_bytes = q->max_ops_per_second = SHOAL_UNLIMITED;
}

static bool name_valid(const char *name)
{
    if (!name)
        return false;
    size_t len = strnlen(name, SHOAL_MAX_NAME + 1);
    return len >= 1 && len <= SHOAL_MAX_NAME;
}

static struct tenant *tenant_by_id(struct shoal_db *db, uint32_t id)
{
    return id < db->tenant_count ? db->tenants[id] : NULL;
}

static void tenant_set_quota(struct tenant *t, const shoal_quota *q)
{
    shoal_quota unlimited;
    if (!q) {
        shoal_quota_unlimited(&unlimited);
        q = &unlimited;
    }
    atomic_store(&t->max_keys, q->max_keys);
    atomic_store(&t->max_bytes, q->max_bytes);
    atomic_store(&t->max_ops, q->max_ops_per_second);
    if (q->max_ops_per_second != SHOAL_UNLIMITED) {
        atomic_store(&t->bucket, (int64_t)(q->max_ops_per_second * 1000000000ull));
        atomic_store(&t->bucket_time_ns, clock_ns());
    }
}

/* Adds a tenant; its id is the previous tenant count. Called with the catalog lock held,
 * or before the database is shared. */
int db_tenant_add(struct shoal_db *db, const char *name, const shoal_quota *q)
{
    for (uint32_t i = 0; i < db->tenant_count; i++)
        if (strcmp(db->tenants[i]->name, name) == 0)
            return SHOAL_EEXIST;
    if (db->tenant_count == db->tenant_cap) {
        uint32_t cap = db->tenant_cap ? db->tenant_cap * 2 : 8;
        struct tenant **grown = realloc(db->tenants, cap * sizeof *grown);
        if (!grown)
            return SHOAL_ENOMEM;
        db->tenants = grown;
        db->tenant_cap = cap;
    }
    struct tenant *t = aligned_alloc(CACHE_LINE, sizeof *t); /* internal.h, struct tenant */
    if (!t)
        return SHOAL_ENOMEM;
    memset(t, 0, sizeof *t);
    t->id = db->tenant_count;
    strcpy(t->name, name);
    tenant_set_quota(t, q);
    db->tenants[db->tenant_count++] = t;
    return 0;
}

static bool quota_valid(const shoal_quota *q)
{
    return !q || (q->max_ops_per_second == SHOAL_UNLIMITED ||
                  q->max_ops_per_second <= (UINT64_MAX / 2000000000ull));
}

/* Ends a catalog change begun under both catalog locks (C1): writes the MANIFEST image
 * without the catalog lock, and returns with the catalog lock held again and
 * catalog_change released. */
static int catalog_change_store(struct shoal_db *db, struct catalog_image *image, int err)
{
    pthread_mutex_unlock(&db->catalog_lock);
    if (!err)
        err = durable_catalog_store(db, image);
    pthread_mutex_lock(&db->catalog_lock);
    pthread_mutex_unlock(&db->catalog_change);
    return err;
}

SHOAL_API int shoal_tenant_create(shoal_db *db, const char *name, const shoal_quota *q,
                                  uint32_t *id)
{
    if (!db || !name_valid(name) || !id || !quota_valid(q))
        return SHOAL_EINVAL;
    pthread_mutex_lock(&db->catalog_change);
    pthread_mutex_lock(&db->catalog_lock);
    int err = db_tenant_add(db, name, q);
    if (err) {
        pthread_mutex_unlock(&db->catalog_lock);
        pthread_mutex_unlock(&db->catalog_change);
        return err;
    }
    /* C1: not counted, so invisible, until its MANIFEST is durable; the MANIFEST lists it. */
    db->tenant_count--;
    db->tenant_creating = true;
    struct catalog_image image;
    err = catalog_change_store(db, &image, durable_catalog_encode(db, &image));
    db->tenant_creating = false;
    if (err)
        free(db->tenants[db->tenant_count]); /* not durable: not created */
    else
        *id = db->tenant_count++;
    pthread_mutex_unlock(&db->catalog_lock);
    return err;
}

SHOAL_API int shoal_tenant_find(shoal_db *db, const char *name, uint32_t *id)
{
    if (!db || !name || !id)
        return SHOAL_EINVAL;
    int err = SHOAL_ENOTFOUND;
    pthread_mutex_lock(&db->catalog_lock);
    for (uint32_t i = 0; i < db->tenant_count; i++) {
        if (strcmp(db->tenants[i]->name, name) == 0) {
            *id = i;
            err = 0;
            break;
        }
    }
    pthread_mutex_unlock(&db->catalog_lock);
    return err;
}

SHOAL_API int shoal_tenant_set_quota(shoal_db *db, uint32_t id, const shoal_quota *q)
{
    if (!db || !q || !quota_valid(q))
        return SHOAL_EINVAL;
    if (id == 0)
        return SHOAL_EINVAL; /* D2: the default tenant has no limits */
    pthread_mutex_lock(&db->catalog_change);
    pthread_mutex_lock(&db->catalog_lock);
    struct tenant *t = tenant_by_id(db, id);
    if (!t) {
        pthread_mutex_unlock(&db->catalog_lock);
        pthread_mutex_unlock(&db->catalog_change);
        return SHOAL_ENOTFOUND;
    }
    shoal_quota old = {atomic_load(&t->max_keys), atomic_load(&t->max_bytes),
                       atomic_load(&t->max_ops)};
    tenant_set_quota(t, q);
    struct catalog_image image;
    int err = catalog_change_store(db, &image, durable_catalog_encode(db, &image));
    if (err)
        tenant_set_quota(t, &old); /* not durable: not changed */
    pthread_mutex_unlock(&db->catalog_lock);
    return err;
}

SHOAL_API int shoal_tenant_get_quota(shoal_db *db, uint32_t id, shoal_quota *q)
{
    if (!db || !q)
        return SHOAL_EINVAL;
    pthread_mutex_lock(&db->catalog_lock);
    struct tenant *t = tenant_by_id(db, id);
    if (t) {
        q->max_keys = atomic_load(&t->max_keys);
        q->max_bytes = atomic_load(&t->max_bytes);
        q->max_ops_per_second = atomic_load(&t->max_ops);
    }
    pthread_mutex_unlock(&db->catalog_lock);
    return t ? 0 : SHOAL_ENOTFOUND;
}

/* A token bucket holding at most one second of operations, refilled lazily by whoever
 * charges it. Tokens are kept in nanotokens so that refills need no division. */
int tenant_charge_op(struct tenant *t)
{
    uint64_t max = atomic_load_explicit(&t->max_ops, memory_order_relaxed);
    if (max == SHOAL_UNLIMITED)
        return 0;
    const int64_t cost = 1000000000;
    uint64_t now = clock_ns();
    uint64_t last = atomic_load_explicit(&t->bucket_time_ns, memory_order_relaxed);
    if (now > last &&
        atomic_compare_exchange_strong(&t->bucket_time_ns, &last, now)) {
        /* Saturating: a second of idleness (or more) refills the bucket, and the sum never
         * passes the capacity (quota_valid keeps the capacity within int64). */
        int64_t cap = (int64_t)(max * 1000000000ull);
        uint64_t idle = now - last;
        int64_t add = idle >= 1000000000ull ? cap : (int64_t)(idle * max);
        int64_t cur = atomic_load(&t->bucket);
        int64_t next;
        do {
            next = add >= cap - cur ? cap : cur + add;
        } while (!atomic_compare_exchange_weak(&t->bucket, &cur, next));
    }
    if (atomic_fetch_sub(&t->bucket, cost) < cost) {
        atomic_fetch_add(&t->bucket, cost);
        atomic_fetch_add_explicit(&t->refusals, 1, memory_order_relaxed);
        return SHOAL_ERATE;
    }
    return 0;
}

/* ---- namespaces ------------------------------------------------------------------------- */

static struct namespace *namespace_find(struct shoal_db *db, const char *name)
{
    for (uint32_t slot = 0; slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (ns && !atomic_load(&ns->dropped) && strcmp(ns->name, name) == 0)
            return ns;
    }
    return NULL;
}

/* D3: the shard with the fewest pinned namespaces, lowest index first. */
static unsigned pinned_placement(struct shoal_db *db)
{
    unsigned best = 0;
    uint64_t best_load = UINT64_MAX;
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load(&db->shards[i]);
        uint64_t load = s ? atomic_load(&s->pinned_namespaces) : 0;
        if (load < best_load) {
            best = i;
            best_load = load;
        }
    }
    return best;
}

/* Creates a namespace in the catalog (catalog lock held, or before the database is
 * shared). id 0 draws a new id; shard is used for a pinned namespace when id is given. */
static int namespace_add(struct shoal_db *db, const char *name, const shoal_ns_config *cfg,
                         uint32_t id, unsigned shard, struct namespace **out)
{
    uint32_t slot = 0;
    while (slot < MAX_NAMESPACES && db->namespaces[slot])
        slot++;
    if (slot == MAX_NAMESPACES)
        return SHOAL_ENOMEM;
    /* Line-aligned (internal.h, struct ns_part): each shard's part on a line of its own,
     * and none shared with whatever the heap puts next to the namespace. */
    size_t size = sizeof(struct namespace) + db->config.shards * sizeof(struct ns_part);
    struct namespace *ns = aligned_alloc(CACHE_LINE, size);
    if (!ns)
        return SHOAL_ENOMEM;
    memset(ns, 0, size);
    ns->id = id ? id : ++db->next_ns_id;
    if (ns->id > db->next_ns_id)
        db->next_ns_id = ns->id;
    ns->slot = slot;
    strcpy(ns->name, name);
    ns->kind = cfg->kind;
    ns->placement = cfg->placement ? cfg->placement : SHOAL_PLACE_PINNED;
    ns->tenant = db->tenants[cfg->tenant];
    ns->shard_mask = db->shard_mask;
    if (ns->placement == SHOAL_PLACE_PINNED) {
        ns->shard = id ? shard : pinned_placement(db);
        struct shard *s = db_shard(db, ns->shard);
        if (!s) {
            free(ns);
            return SHOAL_ENOMEM;
        }
        atomic_fetch_add(&s->pinned_namespaces, 1);
    }
    atomic_init(&ns->refs, 1);
    if (id == 0) {
        /* A live creation: invisible until its MANIFEST is durable (C1). */
        ns->creating = true;
        atomic_init(&ns->dropped, true);
    }
    db->namespaces[slot] = ns;
    if (slot >= db->ns_high)
        db->ns_high = slot + 1;
    *out = ns;
    return 0;
}

int db_namespace_restore(struct shoal_db *db, const char *name, const shoal_ns_config *cfg,
                         uint32_t id, unsigned shard)
{
    struct namespace *ns;
    if (id == 0 || namespace_find(db, name))
        return SHOAL_ECORRUPT;
    return namespace_add(db, name, cfg, id, shard, &ns);
}

/* Removes a namespace that was just added and holds no data (its creation failed). It
 * drops the catalog's reference rather than freeing: while its MANIFEST was written without
 * the catalog lock (C1), shoal_compact may have taken one too. */
static void namespace_unadd(struct shoal_db *db, struct namespace *ns)
{
    if (ns->placement == SHOAL_PLACE_PINNED)
        atomic_fetch_sub(&atomic_load(&db->shards[ns->shard])->pinned_namespaces, 1);
    db->namespaces[ns->slot] = NULL;
    namespace_release(ns);
}

/* Creates the namespace `name` (C1), or finds it if another thread created it meanwhile.
 * Called and returns with the catalog lock held; drops it while the MANIFEST is written. */
static int namespace_create(struct shoal_db *db, const char *name, const shoal_ns_config *cfg,
                            struct namespace **out)
{
    pthread_mutex_unlock(&db->catalog_lock);
    pthread_mutex_lock(&db->catalog_change);
    pthread_mutex_lock(&db->catalog_lock);
    struct namespace *ns = namespace_find(db, name); /* created while this thread waited? */
    int err = ns ? 0 : cfg->tenant < db->tenant_count ? namespace_add(db, name, cfg, 0, 0, &ns)
                                                      : SHOAL_ENOTFOUND;
    if (err || !ns->creating) {
        pthread_mutex_unlock(&db->catalog_change);
        *out = ns;
        return err;
    }
    struct catalog_image image;
    err = catalog_change_store(db, &image, durable_catalog_encode(db, &image));
    if (err) {
        namespace_unadd(db, ns); /* not durable: not created */
        return err;
    }
    ns->creating = false;
    atomic_store(&ns->dropped, false);
    *out = ns;
    return 0;
}

SHOAL_API int shoal_ns_open(shoal_db *db, const char *name, const shoal_ns_config *cfg,
                            shoal_ns **out)
{
    if (out)
        *out = NULL;
    if (!db || !name_valid(name) || !out)
        return SHOAL_EINVAL;
    if (cfg) {
        if (cfg->kind == SHOAL_KIND_VECTOR || cfg->kind == SHOAL_KIND_TIMESERIES)
            return SHOAL_ENOTSUP;
        if (cfg->kind != SHOAL_KIND_KV)
            return SHOAL_EINVAL;
        if (cfg->placement != 0 && cfg->placement != SHOAL_PLACE_PINNED &&
            cfg->placement != SHOAL_PLACE_SPREAD)
            return SHOAL_EINVAL;
    }
    struct shoal_ns *handle = malloc(sizeof *handle);
    if (!handle)
        return SHOAL_ENOMEM;
    int err = 0;
    pthread_mutex_lock(&db->catalog_lock);
    struct namespace *ns = namespace_find(db, name);
    if (!ns && !cfg)
        err = SHOAL_ENOTFOUND;
    else if (!ns && cfg->tenant >= db->tenant_count)
        err = SHOAL_ENOTFOUND;
    else if (!ns)
        err = namespace_create(db, name, cfg, &ns);
    if (!err && cfg && (cfg->kind != ns->kind || cfg->tenant != ns->tenant->id))
        err = SHOAL_EEXIST;
    if (!err)
        atomic_fetch_add(&ns->refs, 1);
    pthread_mutex_unlock(&db->catalog_lock);
    if (err) {
        free(handle);
        return err;
    }
    handle->db = db;
    handle->ns = ns;
    *out = handle;
    return 0;
}

void namespace_release(struct namespace *ns)
{
    if (atomic_fetch_sub(&ns->refs, 1) == 1)
        free(ns);
}

SHOAL_API void shoal_ns_close(shoal_ns *handle)
{
    if (!handle)
        return;
    namespace_release(handle->ns);
    free(handle);
}

/* Frees every version and index of a namespace, shard by shard under each write lock. */
static void namespace_free_data(struct shoal_db *db, struct namespace *ns)
{
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load(&db->shards[i]);
        if (!s)
            continue;
        shard_write_lock(s);
        struct btree *tree = ns->parts[i].tree; /* read under the lock: a writer may be
                                                    creating it right now */
        if (!tree) {
            shard_write_unlock(s);
            continue;
        }
        struct btree_cursor c;
        for (btree_seek_ge(tree, &c, NULL, 0); btree_cursor_valid(&c); btree_next(&c))
            version_free_chain(s, btree_cursor_value(&c));
        btree_free(tree);
        ns->parts[i].tree = NULL;
        atomic_fetch_sub(&s->indexes, 1);
        if (ns->tenant->id != 0) {
            atomic_fetch_sub(&ns->tenant->keys, (int64_t)atomic_load(&ns->parts[i].keys));
            atomic_fetch_sub(&ns->tenant->bytes, (int64_t)atomic_load(&ns->parts[i].bytes));
        }
        atomic_store(&ns->parts[i].keys, 0);
        atomic_store(&ns->parts[i].bytes, 0);
        shard_refresh_memory(s);
        shard_write_unlock(s);
    }
}

SHOAL_API int shoal_ns_drop(shoal_db *db, const char *name)
{
    if (!db || !name_valid(name))
        return SHOAL_EINVAL;
    pthread_mutex_lock(&db->catalog_change);
    pthread_mutex_lock(&db->catalog_lock);
    struct namespace *ns = namespace_find(db, name);
    if (!ns) {
        pthread_mutex_unlock(&db->catalog_lock);
        pthread_mutex_unlock(&db->catalog_change);
        return SHOAL_ENOTFOUND;
    }
    /* Writers check the flag under their shard lock, so after each shard's data is freed
     * below no writer can recreate it. The MANIFEST forgets the namespace first: a drop
     * that is not durable does not happen. The catalog lock is not held while it is
     * written (C1): meanwhile readers already skip the namespace. */
    atomic_store(&ns->dropped, true);
    struct catalog_image image;
    int err = catalog_change_store(db, &image, durable_catalog_encode(db, &image));
    if (err) {
        atomic_store(&ns->dropped, false);
        pthread_mutex_unlock(&db->catalog_lock);
        return err;
    }
    if (ns->placement == SHOAL_PLACE_PINNED)
        atomic_fetch_sub(&atomic_load(&db->shards[ns->shard])->pinned_namespaces, 1);
    /* iter.c T3: open iterators point into the namespace's versions; the last of them
     * frees the data instead (the flag was set before the count is read). */
    if (atomic_load(&ns->iterators) != 0) {
        ns->free_pending = true;
        pthread_mutex_unlock(&db->catalog_lock);
        return 0;
    }
    namespace_free_data(db, ns);
    db->namespaces[ns->slot] = NULL; /* D1: its data is gone, the slot may be reused */
    pthread_mutex_unlock(&db->catalog_lock);
    namespace_release(ns);
    return 0;
}

void namespace_drop_finish(struct shoal_db *db, struct namespace *ns)
{
    pthread_mutex_lock(&db->catalog_lock);
    bool pending = ns->free_pending && atomic_load(&ns->iterators) == 0;
    if (pending) {
        ns->free_pending = false;
        namespace_free_data(db, ns);
        db->namespaces[ns->slot] = NULL; /* D1 */
    }
    pthread_mutex_unlock(&db->catalog_lock);
    if (pending)
        namespace_release(ns); /* the catalog's reference */
}

static void namespace_describe(const struct namespace *ns, shoal_ns_info *info)
{
    memset(info, 0, sizeof *info);
    strcpy(info->name, ns->name);
    info->id = ns->id;
    info->kind = ns->kind;
    info->placement = ns->placement;
    info->tenant = ns->tenant->id;
    info->shard = ns->placement == SHOAL_PLACE_PINNED ? ns->shard : 0;
    for (unsigned i = 0; i <= ns->shard_mask; i++) {
        info->keys += atomic_load_explicit(&ns->parts[i].keys, memory_order_relaxed);
        info->bytes += atomic_load_explicit(&ns->parts[i].bytes, memory_order_relaxed);
    }
}

SHOAL_API int shoal_ns_info_get(shoal_ns *handle, shoal_ns_info *info)
{
    if (!handle || !info)
        return SHOAL_EINVAL;
    if (atomic_load(&handle->ns->dropped))
        return SHOAL_EDROPPED;
    namespace_describe(handle->ns, info);
    return 0;
}

static int compare_info_names(const void *a, const void *b)
{
    return strcmp(((const shoal_ns_info *)a)->name, ((const shoal_ns_info *)b)->name);
}

SHOAL_API int shoal_ns_list(shoal_db *db, uint32_t tenant, shoal_ns_info *out, size_t cap,
                            size_t *count)
{
    if (!db || !count || (cap && !out))
        return SHOAL_EINVAL;
    /* Collect every match, sort by name, then copy the first cap entries out. */
    pthread_mutex_lock(&db->catalog_lock);
    size_t n = 0;
    for (uint32_t slot = 0; slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (ns && !atomic_load(&ns->dropped) &&
            (tenant == UINT32_MAX || ns->tenant->id == tenant))
            n++;
    }
    shoal_ns_info *all = n ? malloc(n * sizeof *all) : NULL;
    if (n && !all) {
        pthread_mutex_unlock(&db->catalog_lock);
        return SHOAL_ENOMEM;
    }
    size_t k = 0;
    for (uint32_t slot = 0; slot < db->ns_high && k < n; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (ns && !atomic_load(&ns->dropped) &&
            (tenant == UINT32_MAX || ns->tenant->id == tenant))
            namespace_describe(ns, &all[k++]);
    }
    pthread_mutex_unlock(&db->catalog_lock);
    if (n)
        qsort(all, n, sizeof *all, compare_info_names);
    if (n && cap)
        memcpy(out, all, (n < cap ? n : cap) * sizeof *all);
    free(all);
    *count = n;
    return 0;
}
