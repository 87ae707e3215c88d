/*
 * internal.h -- the engine's internal structures: database, shards, namespaces, tenants,
 * versions, snapshot slots and per-thread state.
 *
 * Layering. This header is shared by the core's files (db.c, kv.c, batch.c, iter.c,
 * snapshot.c, stats.c). It looks down only: at the object table, the segment allocator and
 * the ordered index. Durability reaches the core through log.h, never the other way.
 *
 * Locking order (a thread holding a lock only takes locks later in this list):
 *   0. db->compact_lock   (one shoal_compact at a time, compact.c)
 *   0. db->catalog_change (one writer of the MANIFEST at a time: C1; never taken with
 *                          compact_lock held)
 *   1. db->catalog_lock   (namespaces, tenants)
 *   2. shard locks, in shard index order (a batch takes all of its shards' locks)
 *   3. leaf locks inside modules (object table part lock, log stream buffer lock)
 *
 * Catalog changes (C1). Creating or dropping a namespace rewrites the MANIFEST, a write and
 * two fsyncs. The change holds db->catalog_change across them and the catalog lock only
 * to edit the tables and to encode the new MANIFEST, so readers of the catalog
 * (shoal_stats, shoal_ns_list, the checkpointer's first step, lookups of namespaces that
 * exist) do not wait for the disk. Meanwhile a namespace being created sits in its slot
 * with `creating` and `dropped` both set: every reader skips it as dropped, and the
 * MANIFEST lists it (catalog_lists). A namespace being dropped is marked dropped first,
 * as before. A tenant being created sits past tenant_count (tenant_creating): uncounted,
 * so invisible, and listed by the MANIFEST. shoal_persist takes catalog_change too, so
 * its first MANIFEST and the changes of other threads come one after the other.
 *
 * Invariants (numbers follow ARCHITECTURE.md where they restate it):
 *   I1. db->seq is incremented only while the writer holds the write locks of every shard
 *       it writes; the new version is linked before those locks are released. So a reader
 *       that loaded S and then takes a shard's read lock sees every write with seq <= S.
 *   I2. A key's version chain is ordered newest first by strictly decreasing seq, except
 *       that several versions of one batch share its seq (the later one is newer).
 *   I3. Each version that is no longer the newest of its key is either freed or queued
 *       exactly once in its shard's retire list (object table) with the seq from which no
 *       snapshot can see it; a tombstone is queued at its own seq when it is written.
 *   I4. A version is freed only when no open snapshot can reach it: immediately when no
 *       snapshot is open at the moment of the write (checked after drawing seq), else when
 *       the reclaim horizon has passed its retire epoch.
 *   I5. Writers on different shards write no common cache line but db->seq's: shards, their
 *       segment allocators, namespace parts (a line per shard), thread states and each
 *       tenant's usage start lines of their own, allocated line-aligned; nothing else
 *       shares seq's line (tests/unit/test_cache_lines.c). A tenant other than 0 with
 *       namespaces on several shards is the exception by design: its usage is one exact
 *       counter (ARCHITECTURE.md invariant 7). seq is the price of O(1) snapshots (I1):
 *       with two writers on two shards its line moves between the cores on every commit,
 *       measured at 4 to 70 ns of CPU per put out of 550 to 720 (shoal-bench's disjoint
 *       workload with the increment replaced by a thread-local one, for the measurement
 *       only, on a loaded 2-core machine; docs/BENCHMARKS.md).
 */
#ifndef SHOAL_CORE_INTERNAL_H
#define SHOAL_CORE_INTERNAL_H

#include "shoal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/btree.h"
#include "core/hist.h"
#include "core/object_table.h"
#include "core/segment.h"

#define CACHE_LINE 64
#define MAX_NAMESPACES 65536 /* namespace slots per database */
#define MAX_THREAD_STATES 1024

/* A counter that one thread writes (with plain loads and stores, no locked instruction)
 * and any thread reads. If two threads ever share one, an increment may be lost; the
 * statistics say so ("approximate while threads run"). */
static inline void counter_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline uint64_t counter_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

/* ---- versions ------------------------------------------------------------------------ */

/* One version of one key: the unit the object table addresses. Key bytes, then value
 * bytes, follow the header. A tombstone (a delete seen by an open snapshot) has no value.
 * The two lengths and the namespace slot share one word: a 32-byte header instead of 48
 * saves 16 bytes per key (a 16-byte key and a 100-byte value fit a 152-byte size class
 * rather than 168), and a version spans one cache line less as often. */
struct version {
    node_id id;             /* its object-table handle */
    uint64_t seq;           /* birth epoch: the seq of the write that made it */
    struct version *older;  /* the previous version of the same key, or NULL */
    uint64_t klen : 17;     /* 1..SHOAL_MAX_KEY */
    uint64_t vlen : 30;     /* 0..SHOAL_MAX_VALUE, or VERSION_TOMBSTONE for a delete */
    uint64_t ns_slot : 17;  /* which namespace's index holds the key */
    uint8_t data[];
};
#define VERSION_TOMBSTONE ((1u << 30) - 1u)
_Static_assert(SHOAL_MAX_KEY < (1u << 17), "a key length fits version.klen");
_Static_assert(SHOAL_MAX_VALUE < VERSION_TOMBSTONE, "a value length fits version.vlen");
_Static_assert(MAX_NAMESPACES <= (1u << 17), "a namespace slot fits version.ns_slot");
_Static_assert(sizeof(struct version) == 32, "the version header is four words");

static inline bool version_is_tombstone(const struct version *v)
{
    return v->vlen == VERSION_TOMBSTONE;
}
static inline const uint8_t *version_key(const struct version *v)
{
    return v->data;
}
static inline const uint8_t *version_value(const struct version *v)
{
    return v->data + v->klen;
}
static inline size_t version_size(uint32_t klen, uint32_t vlen)
{
    return sizeof(struct version) + klen + (vlen == VERSION_TOMBSTONE ? 0 : vlen);
}
/* The key of a version, for the index (btree_key_fn). */
static inline const void *version_key_of(const void *value, uint32_t *len)
{
    const struct version *v = value;
    *len = v->klen;
    return v->data;
}
/* The newest version visible at snapshot seq snap (UINT64_MAX: the latest). */
static inline const struct version *version_visible(const struct version *v, uint64_t snap)
{
    while (v && v->seq > snap)
        v = v->older;
    return v;
}

/* ---- shards ---------------------------------------------------------------------------- */

struct shard {
    /* The shard's lock, a "big reader" lock: writers serialize on write_mutex, raise
     * `writer` and wait until no thread's reading flag for this shard is set; readers set
     * their own flag (a line no other thread writes) and back off if a writer is up.
     * Readers on different cores therefore never bounce a cache line between them. */
    pthread_mutex_t write_mutex;
    _Atomic int writer;
    unsigned index;
    struct shoal_db *db;
    struct segment_allocator *segments;
    struct ot_part *objects;
    /* Written under the write lock, read by statistics without it. */
    _Atomic uint64_t puts, deletes, commits;
    _Atomic uint64_t lock_waits, lock_wait_ns;
    _Atomic uint64_t indexes, pinned_namespaces;
    _Atomic uint64_t retired, reclaimed;
    _Atomic uint64_t memory; /* segment bytes in use (both allocators), refreshed after
                                each write */
    size_t reclaim_threshold; /* retire-list length that triggers the next reclaim */
    uint64_t reclaim_generation; /* db->reclaim_generation at the last reclaim */
    /* Compaction (compact.c), under the write lock. While a compaction moves the shard's
     * versions into key order, `segments` is the new allocator (every allocation goes
     * there) and old_segments the one being emptied; a version belongs to either, and is
     * freed into its owner (segment_owner). Once every version has left it (emptied), the
     * old allocator is destroyed whole as soon as no reader can hold a pointer into it:
     * no snapshot open, or the horizon past old_segments_seq, db->seq when the move ended. */
    struct segment_allocator *old_segments;
    uint64_t old_segments_seq;
    bool old_segments_emptied;
    uint32_t old_segments_checks; /* shard_reclaim calls since the horizon was last read */
    _Atomic uint64_t compact_versions, compact_bytes, compact_released;
} __attribute__((aligned(CACHE_LINE)));

/* ---- tenants --------------------------------------------------------------------------- */

struct tenant {
    uint32_t id;
    char name[SHOAL_MAX_NAME + 1];
    /* Quota fields are atomics so that shoal_tenant_set_quota races with nobody. */
    _Atomic uint64_t max_keys, max_bytes, max_ops;
    /* Usage, kept centrally only for tenants other than 0 (tenant 0 has no limits and
     * its usage is the sum of its namespaces, so its writers share no counter). It starts
     * a cache line of its own: the writers of the tenant write it, every writer of the
     * tenant reads the limits above, and those reads should not miss because of the
     * writes. The struct is allocated line-aligned (db_tenant_add). */
    _Alignas(CACHE_LINE) _Atomic int64_t keys, bytes;
    _Atomic uint64_t ops, refusals;
    /* Token bucket for max_ops: tokens scaled by 1e9 (nanotokens), refilled lazily. */
    _Atomic int64_t bucket;
    _Atomic uint64_t bucket_time_ns;
};

/* ---- namespaces ------------------------------------------------------------------------ */

/* One shard's part of a namespace: its ordered index and its live counts. The writers of
 * that shard update the counts on every write, so each part has a cache line of its own:
 * the writers of a spread namespace on different shards, and the writers of two
 * namespaces allocated side by side, never write one line (invariant 6's "never wait"
 * holds for the memory system too). */
struct ns_part {
    struct btree *tree; /* NULL until the first write on this shard */
    _Atomic uint64_t keys, bytes;
} __attribute__((aligned(CACHE_LINE)));

struct namespace {
    uint32_t id;    /* unique for the database's lifetime */
    uint32_t slot;  /* index in db->ns_by_slot, reused after a drop */
    char name[SHOAL_MAX_NAME + 1];
    shoal_ns_kind kind;
    shoal_placement placement;
    struct tenant *tenant;
    unsigned shard; /* pinned: its shard */
    unsigned shard_mask; /* spread: shards - 1 */
    _Atomic bool dropped;
    _Atomic int refs; /* the catalog's reference plus one per open handle */
    _Atomic int iterators; /* open iterators (iter.c T3) */
    bool free_pending;     /* dropped while iterators were open (catalog lock) */
    bool creating;         /* C1: in the MANIFEST being written, not yet usable */
    struct ns_part parts[];
};

/* Whether the MANIFEST lists ns: it is not dropped, or it is being created (C1). Catalog
 * lock held. */
static inline bool catalog_lists(const struct namespace *ns)
{
    return ns && (ns->creating || !atomic_load(&ns->dropped));
}

/* An open namespace handle (shoal_ns). */
struct shoal_ns {
    struct shoal_db *db;
    struct namespace *ns;
};

/* ---- snapshots ------------------------------------------------------------------------- */

/* A snapshot slot. 0 = free, SLOT_PENDING = being taken, otherwise seq + 1. The public
 * shoal_snapshot is the slot itself: taking one allocates nothing. */
struct shoal_snapshot {
    _Atomic uint64_t value;
    struct shoal_db *db;
} __attribute__((aligned(CACHE_LINE)));
#define SLOT_PENDING UINT64_MAX

/* ---- per-thread state ------------------------------------------------------------------- */

/* Statistics and hints one thread keeps for one database. Found through a pthread key of
 * that database, so two databases in one process never see each other's state. */
struct thread_state {
    /* One flag per shard, set while this thread reads it (shard lock, db.c). Alone on its
     * cache line: only this thread writes it, writers of the shard read it. */
    _Alignas(CACHE_LINE) _Atomic uint8_t reading[SHOAL_MAX_SHARDS];
    _Alignas(CACHE_LINE) struct shoal_db *db;
    unsigned index;
    bool shared; /* the overflow state of threads past MAX_THREAD_STATES: no flags */
    _Atomic bool in_use;
    uint32_t sample_tick;
    _Atomic uint64_t gets, puts, deletes, commits, scans;
    struct histogram get_latency, put_latency, commit_latency;
    _Atomic uint64_t shard_gets[SHOAL_MAX_SHARDS];
} __attribute__((aligned(CACHE_LINE)));

/* ---- the database --------------------------------------------------------------------- */

struct db_config {
    uint64_t shards, activation_step, sync, log_streams, snapshot_slots, memory_limit;
    uint64_t sync_period_ms, sync_window_us, checkpoint_log_bytes, log_segment_bytes, salvage;
    uint64_t recovery_threads;
};

struct shoal_options {
    struct db_config config;
};

struct shoal_db {
    struct db_config config;
    unsigned shard_mask;
    /* config.memory_limit as it is now: set at open, changed by shoal_set_memory_limit,
     * read by every write that adds data (kv.c) and by compactions. 0 = none. */
    _Atomic uint64_t memory_limit;

    _Atomic uint64_t seq __attribute__((aligned(CACHE_LINE)));
    _Atomic uint64_t snapshots_open __attribute__((aligned(CACHE_LINE)));
    _Atomic uint64_t horizon; /* the last reclaim horizon computed */
    _Atomic uint64_t reclaim_generation; /* bumped when a release may advance the horizon */
    _Atomic unsigned slots_high; /* slots [0, slots_high) have ever been used */
    struct shoal_snapshot *slots;

    struct object_table *objects;
    pthread_mutex_t shard_create_lock;
    _Atomic(struct shard *) shards[SHOAL_MAX_SHARDS];

    pthread_mutex_t catalog_change; /* C1: held across a MANIFEST write */
    pthread_mutex_t catalog_lock;
    struct namespace **namespaces; /* live namespaces, by slot; NULL = free slot */
    uint32_t ns_high;              /* slots [0, ns_high) have ever been used */
    uint32_t next_ns_id;
    struct tenant **tenants;
    uint32_t tenant_count, tenant_cap;
    bool tenant_creating; /* C1: tenants[tenant_count] exists, its MANIFEST being written */

    uint64_t instance; /* unique in the process (db_thread's cache), never 0 */
    pthread_key_t thread_key;
    _Atomic unsigned thread_count;
    /* MAX_THREAD_STATES + 1 slots, filled as threads arrive; the last is the shared
     * overflow state, made at open. */
    _Atomic(struct thread_state *) *threads;

    _Atomic uint64_t quota_refusals;
    _Atomic(struct durable *) durable; /* NULL in memory mode (durable.c) */

    pthread_mutex_t compact_lock; /* shoal_compact calls run one at a time */
    _Atomic uint64_t compactions; /* shoal_compact calls that finished every shard */
};

/* ---- writes -------------------------------------------------------------------------------- */

/* WRITE_CLEAR (shoal_batch_delete_all) names a namespace, no key: the commit replaces it,
 * under the locks, by a delete of each key the namespace holds (kv.c, ops_expand_clears),
 * so nothing after that step, the log included, ever sees one. */
enum write_type { WRITE_PUT = 1, WRITE_DELETE = 2, WRITE_REQUIRE = 3, WRITE_CLEAR = 4 };

/* One operation of a commit (a single put or delete is a commit of one). The first
 * fields are the request; the rest is filled while it is applied (kv.c). */
struct write_op {
    uint8_t type;
    struct namespace *ns;
    const uint8_t *key;
    uint32_t klen;
    const uint8_t *value;
    uint32_t vlen;
    uint64_t required_seq; /* WRITE_REQUIRE */
    unsigned shard;
    struct version *fresh; /* the new version (a tombstone for a delete) */
    struct version *prev;  /* the key's newest version before this operation */
    bool created, skipped;
    int64_t delta_keys, delta_bytes;
};

/* Creates an iterator over ns (iter.c); only_shard >= 0 restricts it to that shard's part
 * (checkpoints write one file per shard). */
int iter_create(struct shoal_db *db, struct namespace *ns, int only_shard,
                const shoal_iter_options *opts, shoal_iter **out);
/* Sets how many entries a refill collects under the shard's lock (1..256; default 256):
 * fewer keep writers' waits short where throughput matters less (checkpoints). Whatever
 * the size, a refill ends early once it has visited an entry and sees a writer waiting. */
void iter_set_chunk_keys(shoal_iter *it, unsigned keys);
/* How many times the iterator's cursors have taken their shards' locks (for tests). */
uint64_t iter_refills(const shoal_iter *it);

/* Commits ops atomically under one seq (kv.c); *seq_out gets it. */
int commit_ops(struct shoal_db *db, struct write_op *ops, size_t n,
               const shoal_write_options *wo, uint64_t *seq_out);

/* ---- shared helpers (db.c, snapshot.c, kv.c) ------------------------------------------- */

/* The calling thread's state for the database it used last, by instance id (not by
 * address: a database opened where a closed one was must not find its state). Saves the
 * pthread_getspecific call of every read and write. initial-exec: one %fs-relative load. */
struct db_thread_cache {
    uint64_t instance;
    struct thread_state *state;
};
extern _Thread_local struct db_thread_cache db_thread_cached
    __attribute__((tls_model("initial-exec")));
struct thread_state *db_thread_lookup(struct shoal_db *db);

/* Returns the calling thread's state for db (registering the thread on first use). */
static inline struct thread_state *db_thread(struct shoal_db *db)
{
    if (__builtin_expect(db_thread_cached.instance == db->instance, 1))
        return db_thread_cached.state;
    return db_thread_lookup(db);
}
/* Returns thread state i, or NULL if no thread has taken it yet. */
struct thread_state *db_thread_at(struct shoal_db *db, unsigned i);
/* Returns shard i, creating it on first use; NULL when out of memory. */
struct shard *db_shard(struct shoal_db *db, unsigned i);
/* Returns the shard that holds key of ns. */
unsigned ns_route(const struct namespace *ns, const void *key, size_t klen);
/* Locks a shard for reading (as thread t) or writing, counting waits. */
void shard_read_lock(struct shard *s, struct thread_state *t);
void shard_read_unlock(struct shard *s, struct thread_state *t);
void shard_write_lock(struct shard *s);
void shard_write_unlock(struct shard *s);
/* The oldest seq an open snapshot may read; versions retired at or before it are garbage. */
uint64_t snapshot_horizon(struct shoal_db *db);
/* Frees a version chain starting at v (memory and object-table handles). */
void version_free_chain(struct shard *s, struct version *v);
/* Reclaims what the horizon allows on a shard whose write lock is held. */
void shard_reclaim(struct shard *s, bool force);
/* Charges one operation to the tenant's rate limit; SHOAL_ERATE when over it. */
int tenant_charge_op(struct tenant *t);
/* Monotonic clock in nanoseconds. */
uint64_t clock_ns(void);
/* Online cores, at least 1. */
unsigned online_cores(void);
void namespace_release(struct namespace *ns);
/* Frees a dropped namespace's data once its last iterator is gone (iter.c T3). */
void namespace_drop_finish(struct shoal_db *db, struct namespace *ns);
/* Takes a snapshot slot at seq, which an open snapshot already holds (snapshot.c). */
int snapshot_pin(struct shoal_db *db, uint64_t seq, shoal_snapshot **out);
/* Database life cycle (db.c), shared by memory and durable opens. */
void db_config_from(const shoal_options *opts, struct db_config *out);
int db_create(const struct db_config *config, struct shoal_db **out);
void db_destroy(struct shoal_db *db);
/* Catalog restoration at recovery (db.c; no locking: the database is not shared yet). */
int db_tenant_add(struct shoal_db *db, const char *name, const shoal_quota *q);
int db_namespace_restore(struct shoal_db *db, const char *name, const shoal_ns_config *cfg,
                         uint32_t id, unsigned shard);
/* Publishes a shard's segment bytes in use for statistics and the memory limit. */
void shard_refresh_memory(struct shard *s);
/* The segment bytes in use of every shard, as last published: what the memory limit
 * (SHOAL_OPT_MEMORY_LIMIT) is compared with (kv.c). */
uint64_t db_memory_in_use(struct shoal_db *db);

/* ---- compaction (compact.c) --------------------------------------------------------------- */

/* Destroys the shard's emptied old allocator when no reader can still hold a pointer into
 * it, and returns the bytes that gave back (0 when there was none or it must wait). The
 * caller holds the shard's write lock. Without force, while snapshots are open, the
 * horizon is read only every 64th call (shard_reclaim calls this on every write). */
uint64_t compact_release(struct shard *s, bool force);
/* Test support: the next `after` version copies of shoal_compact succeed and every later
 * one fails as if memory had run out; after < 0 turns failures off (the default). */
void compact_fail_copies_after(long after);

#endif
