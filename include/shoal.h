/*
 * shoal.h -- the public interface of libshoal, the Shoal storage engine.
 *
 * This header is the manual. Every function says what it returns, who owns what it hands
 * back and until when, and which threads may call it.
 *
 * The model
 * ---------
 * A database (shoal_db) holds namespaces (shoal_ns): named, independent ordered keyspaces.
 * A namespace belongs to a tenant, which carries quotas. Keys are byte strings of 1 to
 * SHOAL_MAX_KEY bytes ordered by memcmp; values are byte strings of 0 to SHOAL_MAX_VALUE
 * bytes. Every committed write or batch gets one sequence number (seq) from one global
 * counter; a snapshot taken at seq S sees exactly the writes with seq <= S, and a batch is
 * seen whole or not at all.
 *
 * The database is split into shards (a power of two, 1..64), each with its own lock and
 * memory. A "pinned" namespace lives on one shard; a "spread" namespace hashes its keys
 * over all shards. Writers in namespaces on different shards never wait on the same lock.
 *
 * Errors
 * ------
 * Functions that can fail return an int: 0 for success, or a negative SHOAL_E* code from
 * the list below; shoal_strerror() names it. A function that fails changes nothing.
 *
 * Threads
 * -------
 * A shoal_db and its shoal_ns handles may be used from any number of threads at once
 * unless a function says otherwise. A shoal_batch, a shoal_iter and a shoal_options belong
 * to one thread at a time. A shoal_snapshot may be read from any thread, and released once.
 *
 * Modes
 * -----
 * shoal_open(NULL, ...) opens a memory database: no files at all. A directory opens a
 * durable database: every commit is logged (log streams with group commit), checkpoints
 * are taken in the background from snapshots, and opening the directory again recovers
 * every write its sync policy made durable. shoal_persist turns a memory database into a
 * durable one.
 */
#ifndef SHOAL_H
#define SHOAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHOAL_BUILDING)
#define SHOAL_API __attribute__((visibility("default")))
#else
#define SHOAL_API
#endif

#define SHOAL_VERSION_MAJOR 0
#define SHOAL_VERSION_MINOR 1

/* ---------------------------------------------------------------------------------------
 * Errors. One list produces the codes, their names and their messages.
 * ------------------------------------------------------------------------------------- */

#define SHOAL_ERRORS(X)                                                                    \
    X(EINVAL, -1, "invalid argument")                                                      \
    X(ENOMEM, -2, "out of memory")                                                         \
    X(ENOTFOUND, -3, "not found")                                                          \
    X(EEXIST, -4, "already exists")                                                        \
    X(ENOTSUP, -5, "not supported")                                                        \
    X(ETOOBIG, -6, "key or value too large")                                               \
    X(EQUOTA, -7, "tenant quota exceeded")                                                 \
    X(ERATE, -8, "tenant operation rate exceeded")                                         \
    X(EDROPPED, -9, "namespace was dropped")                                               \
    X(ENOSLOT, -10, "no free snapshot slot")                                               \
    X(ECONFLICT, -11, "a required key version changed")                                    \
    X(ERANGE, -12, "buffer too small")                                                     \
    X(EMEMLIMIT, -13, "database memory limit reached")                                     \
    X(EBUSY, -14, "database is in use by another process or handle")                       \
    X(EIO, -15, "input/output error")                                                      \
    X(EFSYNC, -16, "fsync failed; the database is read-only")                              \
    X(ECORRUPT, -17, "data is corrupt")                                                    \
    X(EREADONLY, -18, "database is read-only")                                             \
    X(ENOSPC, -19, "no space left on device")                                              \
    X(ECLOSED, -20, "database is closing")

enum shoal_error {
    SHOAL_OK = 0,
#define SHOAL_ERROR_ENUM(name, code, message) SHOAL_##name = code,
    SHOAL_ERRORS(SHOAL_ERROR_ENUM)
#undef SHOAL_ERROR_ENUM
};

/* Returns a static message for a result code (0 or SHOAL_E*); never NULL.
 * Thread-safety: any thread. */
SHOAL_API const char *shoal_strerror(int err);
/* Returns the code's name without prefix ("EQUOTA"), "OK" for 0, "UNKNOWN" otherwise. */
SHOAL_API const char *shoal_error_name(int err);

/* ---------------------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------------------- */

#define SHOAL_MAX_KEY (64u * 1024u)            /* bytes; keys are 1..SHOAL_MAX_KEY */
#define SHOAL_MAX_VALUE (512u * 1024u * 1024u) /* bytes; values are 0..SHOAL_MAX_VALUE */
#define SHOAL_MAX_SHARDS 64
#define SHOAL_MAX_LOG_STREAMS 64
#define SHOAL_MAX_NAME 255 /* bytes in a namespace or tenant name */

/* ---------------------------------------------------------------------------------------
 * Options. Create, set, pass to shoal_open (which copies them), free.
 * ------------------------------------------------------------------------------------- */

typedef struct shoal_options shoal_options;

/* Settings, numbered for a stable binary interface. Each value is a uint64_t. */
typedef enum shoal_option {
    /* Shards: a power of two, 1..64. Default: 4 x online cores, at most 64. */
    SHOAL_OPT_SHARDS = 1,
    /* Allocations a thread makes between checks of progressive activation. Default 1024. */
    SHOAL_OPT_ACTIVATION_STEP = 2,
    /* Default sync policy (enum shoal_sync). Durable mode only. Default SHOAL_SYNC_PERIODIC. */
    SHOAL_OPT_SYNC = 3,
    /* Log streams for a durable database, 1..SHOAL_MAX_LOG_STREAMS. Default: one per two cores (at
     * least one): each stream's fdatasync is a flush of the same disk, so fewer streams make larger
     * group commits (docs/BENCHMARKS.md, "One log stream or two"). */
    SHOAL_OPT_LOG_STREAMS = 4,
    /* Snapshot slots: how many snapshots (including iterators) may be open at once.
     * Default 1024, at least 1. */
    SHOAL_OPT_SNAPSHOT_SLOTS = 5,
    /* Memory limit in bytes for stored data; 0 = none (default). Writes beyond it fail with
     * SHOAL_EMEMLIMIT; deletes always work. shoal_set_memory_limit changes it while open. */
    SHOAL_OPT_MEMORY_LIMIT = 6,
    /* Periodic sync interval in milliseconds (durable, SHOAL_SYNC_PERIODIC). Default 1000. */
    SHOAL_OPT_SYNC_PERIOD_MS = 7,
    /* Longest wait of a SHOAL_SYNC_BATCH write, in microseconds. Default 2000. */
    SHOAL_OPT_SYNC_WINDOW_US = 8,
    /* Log size in bytes that triggers a background checkpoint (durable), or the size of the
     * current checkpoint's entries when that is larger (so a large dataset is not rewritten
     * for every few MiB written). Default 64 MiB. */
    SHOAL_OPT_CHECKPOINT_LOG_BYTES = 9,
    /* Log segment size in bytes (durable). Default 64 MiB. */
    SHOAL_OPT_LOG_SEGMENT_BYTES = 10,
    /* Open a damaged durable database anyway, keeping the longest valid prefix of each log
     * stream (0 or 1). Default 0. */
    SHOAL_OPT_SALVAGE = 11,
    /* Threads that load the checkpoint and replay the log when a durable database opens,
     * 1..64. Default: one per core. With fewer log streams than threads, one thread reads
     * each stream and the others apply its records, each to its own shards. */
    SHOAL_OPT_RECOVERY_THREADS = 12,
} shoal_option;

typedef enum shoal_sync {
    SHOAL_SYNC_DEFAULT = 0,  /* per write: use the database's policy */
    SHOAL_SYNC_NONE = 1,     /* the OS decides when log bytes reach the disk */
    SHOAL_SYNC_PERIODIC = 2, /* a background sync every SHOAL_OPT_SYNC_PERIOD_MS */
    SHOAL_SYNC_BATCH = 3,    /* acknowledged after a sync, waiting at most the window */
    SHOAL_SYNC_ALWAYS = 4,   /* acknowledged only after its log record is fdatasync'ed */
} shoal_sync;

/* Returns 0 and a new options object with every default, or SHOAL_ENOMEM. */
SHOAL_API int shoal_options_new(shoal_options **out);
/* Sets one option. Returns SHOAL_EINVAL for an unknown option or a value out of range (and
 * changes nothing). Thread-safety: one thread at a time per options object. */
SHOAL_API int shoal_options_set(shoal_options *opts, shoal_option option, uint64_t value);
/* Reads one option's current value into *value. Returns 0 or SHOAL_EINVAL. */
SHOAL_API int shoal_options_get(const shoal_options *opts, shoal_option option, uint64_t *value);
/* Frees the options. NULL is a no-op. */
SHOAL_API void shoal_options_free(shoal_options *opts);

/* ---------------------------------------------------------------------------------------
 * Database
 * ------------------------------------------------------------------------------------- */

typedef struct shoal_db shoal_db;

/* Opens a database. dir NULL opens a memory database. A directory opens (creating it and
 * its files if needed) a durable database: DIR/LOCK is locked, the MANIFEST, the latest
 * checkpoint and the log streams are loaded in parallel, a torn tail at the end of a log
 * stream is cut off (and counted in the statistics), and logging resumes. The shard count
 * of an existing durable database is the one it was created with. opts may be NULL for
 * every default; it is copied and may be freed after the call. On success *out is the
 * database; on failure *out is NULL and nothing was changed on disk except a cut torn tail.
 * Errors: SHOAL_EINVAL, SHOAL_ENOMEM, SHOAL_EBUSY (another process or handle has the
 * directory open), SHOAL_ECORRUPT (damage other than a torn tail: shoal_error_detail()
 * names the file and offset; SHOAL_OPT_SALVAGE opens anyway, keeping the longest valid
 * prefix of each stream), SHOAL_ENOTSUP (files of a newer format), SHOAL_EIO, SHOAL_ENOSPC.
 * Thread-safety: any thread. */
SHOAL_API int shoal_open(const char *dir, const shoal_options *opts, shoal_db **out);

/* Closes the database and frees everything it holds. A durable database first takes a
 * checkpoint (unless it is read-only after a failure), then syncs and closes its log.
 * Every namespace handle, snapshot, batch and iterator of the database must be closed or
 * freed first; the caller guarantees no other thread uses the database during and after
 * the call. NULL is a no-op. Returns 0 or the first error met while closing (the database
 * is freed either way; what was acknowledged under its sync policy is on disk). */
SHOAL_API int shoal_close(shoal_db *db);

/* Takes a checkpoint of a durable database now: a snapshot at seq S is written, all shards
 * in parallel, without stopping writers; then the MANIFEST names it and the log segments
 * and checkpoints it replaces are deleted. Blocks until done. Errors: SHOAL_ENOTSUP (memory
 * mode), SHOAL_EREADONLY, SHOAL_EIO, SHOAL_ENOSPC, SHOAL_EFSYNC, SHOAL_ENOSLOT.
 * Thread-safety: any thread; checkpoints run one at a time. */
SHOAL_API int shoal_checkpoint(shoal_db *db);

/* Makes a memory database durable in dir (created if missing; it must hold no database
 * yet): logging starts, then a checkpoint is written, and from then on the database
 * behaves as if opened on dir. Errors: SHOAL_EINVAL (already durable), SHOAL_EEXIST (dir
 * holds a database), SHOAL_EBUSY, SHOAL_EIO, SHOAL_ENOSPC, SHOAL_EFSYNC.
 * Thread-safety: any thread, while others keep reading and writing. */
SHOAL_API int shoal_persist(shoal_db *db, const char *dir);

/* Describes the last error of shoal_open, shoal_checkpoint or shoal_persist on the calling
 * thread (for SHOAL_ECORRUPT: the file and offset of the damage), or "" if none. The text
 * stays valid until the thread's next such call. */
SHOAL_API const char *shoal_error_detail(void);

/* What one shoal_compact call did. */
typedef struct shoal_compact_result {
    uint64_t versions_moved;    /* versions copied into key order (values above 32 KiB are
                                   not copied: they stay where they are) */
    uint64_t bytes_moved;       /* bytes those copies occupy */
    uint64_t bytes_released;    /* memory given back to the system during the call: what
                                   this call's (or an earlier call's) compactions emptied */
    uint32_t shards_compacted;  /* shards whose compaction this call completed (it moved
                                   every version, or the rest of a stopped one's) */
    uint32_t shards_skipped;    /* shards holding data that the call left as they were or
                                   moved only in part: for one of the two reasons below,
                                   or the shard where SHOAL_ENOMEM stopped the call */
    uint32_t shards_waiting;    /* ...an earlier compaction's memory is still held for a
                                   snapshot or iterator opened before it ended */
    uint32_t shards_over_limit; /* ...copying would have passed SHOAL_OPT_MEMORY_LIMIT */
} shoal_compact_result;

/* Rewrites the database's memory in key order and gives back what fragmentation wastes.
 * Shard by shard, every stored version (each key's value, the tombstones and older versions
 * that open snapshots still need) is copied into fresh memory, namespace by namespace in
 * key order, so that an ordered scan then reads memory sequentially. The memory the copies
 * leave, with every hole that deletes and overwrites made in it, is given back whole once no
 * snapshot or iterator opened before the copy ended can read it: within the call when none
 * is open, else when the last such is released (at the shard's next write, or the next
 * call). Keys, values, seqs and snapshots are unchanged; nothing is logged in durable mode,
 * and a read-only database (after a failed write or fsync) may be compacted too.
 *
 * The calling thread does the work, one shard at a time and 256 keys per hold of the
 * shard's write lock, so readers, writers, iterators, snapshots and checkpoints on other
 * threads carry on and wait at most one such step. Copying a shard needs memory for a copy
 * of its versions until the old memory is given back: a shard whose copy would pass
 * SHOAL_OPT_MEMORY_LIMIT is skipped (or, if writers filled the room meanwhile, stopped where
 * it stands) and counted in out->shards_over_limit; a shard whose earlier compaction still
 * waits for a snapshot is skipped (out->shards_waiting). A shard stopped part way stays
 * correct and holds both memories until a later call finishes it.
 *
 * out may be NULL; otherwise it is filled in on every return except SHOAL_EINVAL.
 * Returns 0 (including when shards were only waiting), SHOAL_EMEMLIMIT (the memory limit
 * held at least one shard back; the other shards were compacted), SHOAL_ENOMEM (memory ran
 * out: the call stopped cleanly, everything it moved is in place and valid, and a later
 * call finishes the work), SHOAL_EINVAL (db NULL).
 * Cost: one copy and one index lookup per version, a few memory misses each (about 0.3 s
 * for a million small versions on a 2 GHz Xeon); extra memory at most one shard's
 * versions at a time while no snapshot is open. Statistics: shoal_stats counts the calls
 * and what they moved and released; a shard's bytes count both memories while the old one
 * waits. Thread-safety: any thread; calls run one at a time (a second call waits for the
 * first). */
SHOAL_API int shoal_compact(shoal_db *db, shoal_compact_result *out);

/* Gives back now what a released snapshot kept: versions replaced or deleted while it was
 * open, which no open snapshot can read any more. Writers do this as they go (a shard's
 * next write reclaims its own), so only a database whose shards have gone quiet since
 * their last snapshot was released needs it: there an overwritten or deleted value, how
 * ever large, keeps its memory (and its place in shoal_stats' memory) until the next write
 * of its shard. A server calls it a few times a second from a housekeeping thread.
 * Cost: per shard, one hold of its write lock (waiting for readers like a write), and
 * O(versions reclaimed); a shard with nothing to give back costs a lock and a load.
 * Returns 0 or SHOAL_EINVAL (db NULL). Thread-safety: any thread. */
SHOAL_API int shoal_reclaim(shoal_db *db);

/* Changes SHOAL_OPT_MEMORY_LIMIT of an open database (0 = none). Writes that begin after
 * the call see the new limit; a limit below what is stored already frees nothing, it
 * refuses writes that add data (SHOAL_EMEMLIMIT) until deletes make room. Not logged: a
 * durable database opens again with the limit of its options. Returns 0 or SHOAL_EINVAL
 * (db NULL). Thread-safety: any thread. */
SHOAL_API int shoal_set_memory_limit(shoal_db *db, uint64_t bytes);

/* ---------------------------------------------------------------------------------------
 * Tenants. Tenant 0, "default", always exists and has no limits.
 * ------------------------------------------------------------------------------------- */

#define SHOAL_UNLIMITED UINT64_MAX

typedef struct shoal_quota {
    uint64_t max_keys;           /* live keys over all the tenant's namespaces */
    uint64_t max_bytes;          /* live key + value bytes over all its namespaces */
    uint64_t max_ops_per_second; /* reads and writes, as a token bucket of one second */
} shoal_quota;

/* Fills *q with SHOAL_UNLIMITED everywhere. */
SHOAL_API void shoal_quota_unlimited(shoal_quota *q);

/* Creates a tenant named name (1..SHOAL_MAX_NAME bytes, NUL-terminated) with quota q (NULL:
 * unlimited) and stores its id in *id. Errors: SHOAL_EINVAL, SHOAL_EEXIST, SHOAL_ENOMEM.
 * Thread-safety: any thread. */
SHOAL_API int shoal_tenant_create(shoal_db *db, const char *name, const shoal_quota *q,
                                  uint32_t *id);
/* Looks a tenant up by name. Errors: SHOAL_ENOTFOUND. */
SHOAL_API int shoal_tenant_find(shoal_db *db, const char *name, uint32_t *id);
/* Replaces a tenant's quota. Usage above a lowered quota is kept; new writes that would
 * grow it are refused. Errors: SHOAL_ENOTFOUND, SHOAL_EINVAL. */
SHOAL_API int shoal_tenant_set_quota(shoal_db *db, uint32_t id, const shoal_quota *q);
/* Reads a tenant's quota. Errors: SHOAL_ENOTFOUND. */
SHOAL_API int shoal_tenant_get_quota(shoal_db *db, uint32_t id, shoal_quota *q);

/* ---------------------------------------------------------------------------------------
 * Namespaces
 * ------------------------------------------------------------------------------------- */

typedef struct shoal_ns shoal_ns;

typedef enum shoal_ns_kind {
    SHOAL_KIND_KV = 1,
    SHOAL_KIND_VECTOR = 2,     /* reserved */
    SHOAL_KIND_TIMESERIES = 3, /* reserved */
} shoal_ns_kind;

typedef enum shoal_placement {
    SHOAL_PLACE_PINNED = 1, /* the whole namespace on one shard */
    SHOAL_PLACE_SPREAD = 2, /* keys hashed over all shards */
} shoal_placement;

typedef struct shoal_ns_config {
    shoal_ns_kind kind;          /* SHOAL_KIND_KV */
    shoal_placement placement;   /* default (0): SHOAL_PLACE_PINNED */
    uint32_t tenant;             /* owner; 0 = the default tenant */
} shoal_ns_config;

/* Opens the namespace named name (1..SHOAL_MAX_NAME bytes, NUL-terminated). When cfg is
 * NULL the namespace must exist (else SHOAL_ENOTFOUND). When cfg is given the namespace
 * is created if absent; if it exists, its kind and tenant must match cfg (else
 * SHOAL_EEXIST). A new pinned namespace goes to the least loaded active shard.
 * Errors: SHOAL_EINVAL, SHOAL_ENOTFOUND, SHOAL_EEXIST, SHOAL_ENOTSUP (vector and
 * timeseries kinds), SHOAL_ENOMEM. The handle stays valid until shoal_ns_close, even if
 * the namespace is dropped meanwhile (its calls then fail with SHOAL_EDROPPED).
 * Thread-safety: any thread; the handle may be shared between threads. */
SHOAL_API int shoal_ns_open(shoal_db *db, const char *name, const shoal_ns_config *cfg,
                            shoal_ns **out);
/* Closes a handle. NULL is a no-op. */
SHOAL_API void shoal_ns_close(shoal_ns *ns);
/* Drops the namespace named name: its keys and memory are freed; open handles to it fail
 * with SHOAL_EDROPPED from then on; snapshots taken earlier no longer see it. A later
 * shoal_ns_open with a config creates a new, empty namespace. Errors: SHOAL_ENOTFOUND. */
SHOAL_API int shoal_ns_drop(shoal_db *db, const char *name);

typedef struct shoal_ns_info {
    char name[SHOAL_MAX_NAME + 1];
    uint32_t id;
    shoal_ns_kind kind;
    shoal_placement placement;
    uint32_t tenant;
    uint32_t shard;     /* pinned: its shard; spread: 0 */
    uint64_t keys;      /* live keys in the latest state */
    uint64_t bytes;     /* live key + value bytes in the latest state */
} shoal_ns_info;

/* Describes a namespace through an open handle. Errors: SHOAL_EDROPPED. */
SHOAL_API int shoal_ns_info_get(shoal_ns *ns, shoal_ns_info *info);
/* Lists namespaces: fills up to cap entries of out and stores the total number in *count
 * (which may exceed cap; call again with a larger array). tenant UINT32_MAX lists every
 * tenant's namespaces, otherwise only that tenant's. Sorted by name. */
SHOAL_API int shoal_ns_list(shoal_db *db, uint32_t tenant, shoal_ns_info *out, size_t cap,
                            size_t *count);

/* ---------------------------------------------------------------------------------------
 * Snapshots
 * ------------------------------------------------------------------------------------- */

typedef struct shoal_snapshot shoal_snapshot;

/* Takes a snapshot of the latest committed state. O(1), allocation-free and lock-free.
 * Errors: SHOAL_ENOSLOT when every snapshot slot is taken (SHOAL_OPT_SNAPSHOT_SLOTS).
 * The snapshot keeps the versions it sees alive: release it promptly.
 * Thread-safety: any thread; the snapshot may be used by any thread until released. */
SHOAL_API int shoal_snapshot_take(shoal_db *db, shoal_snapshot **out);
/* Releases a snapshot. NULL is a no-op. Releasing twice is undefined. */
SHOAL_API void shoal_snapshot_release(shoal_snapshot *snap);
/* Returns the seq the snapshot sees (every write with seq <= it, nothing after). */
SHOAL_API uint64_t shoal_snapshot_seq(const shoal_snapshot *snap);
/* Returns the seq of the latest committed write. */
SHOAL_API uint64_t shoal_last_seq(shoal_db *db);

/* ---------------------------------------------------------------------------------------
 * Key-value operations. snap NULL reads the latest state.
 * ------------------------------------------------------------------------------------- */

typedef struct shoal_write_options {
    shoal_sync sync; /* SHOAL_SYNC_DEFAULT: the database's policy */
    /* Optional, for event loops that must not block on the disk. When set, a write that
     * has to wait for its log record (durable mode, any policy but SHOAL_SYNC_NONE) returns
     * SHOAL_PENDING at once instead of waiting, and on_durable(ctx, err) runs exactly once
     * later, on a thread of the log, when the record is durable (err 0) or the log failed
     * (err SHOAL_EFSYNC, SHOAL_EIO...: the write's outcome is unknown). It must return
     * quickly and must not call shoal_close. When the call returns anything else (0 or an
     * error), on_durable is never called. */
    void (*on_durable)(void *ctx, int err);
    void *ctx;
    /* Optional, the other way not to block, for callers that commit many writes in a row
     * and want one notification for all of them (an event loop's round of requests). When
     * set and on_durable is NULL, a write that has to wait for its log record returns
     * SHOAL_PENDING at once and stores in *mark where its record lies; nothing waits for it
     * until the caller hands that mark, or a later one of the same stream, to
     * shoal_notify_durable. A write that needs no wait returns 0 and leaves *mark alone. */
    struct shoal_log_mark *mark;
} shoal_write_options;

/* Returned by writes given shoal_write_options.on_durable or .mark: applied (visible to
 * readers), durability pending; on_durable, or the notification the mark is handed to,
 * will report it. */
#define SHOAL_PENDING 1

/* Where a write's log record lies, and what durability it asked for. Records of one stream
 * become durable in lsn order, so the mark with the largest lsn of a stream stands for
 * every earlier one of that stream. */
typedef struct shoal_log_mark {
    uint32_t stream; /* 0..SHOAL_MAX_LOG_STREAMS-1 */
    shoal_sync sync; /* the write's policy: SHOAL_SYNC_PERIODIC, _BATCH or _ALWAYS */
    uint64_t lsn;    /* the record's position in its stream, from 1 */
} shoal_log_mark;

/* Asks for on_durable(ctx, err) once every record of mark->stream up to mark->lsn is as
 * durable as mark->sync asks (err 0), or the log failed (err SHOAL_EFSYNC, SHOAL_EIO...:
 * the outcome of those writes is unknown). It runs exactly once, on a thread of the log,
 * must return quickly and must not call shoal_close. A mark with a stronger sync makes
 * the same lsn wait longer: merge the marks of one stream by the largest lsn and the
 * strongest sync (the enum's order). Returns 0 (on_durable will run), or SHOAL_EINVAL (a
 * mark this database never gave), SHOAL_ECLOSED, or the log's sticky failure; after an
 * error on_durable is never called. Memory mode: SHOAL_EINVAL (no write gives a mark).
 * Thread-safety: any thread. */
SHOAL_API int shoal_notify_durable(shoal_db *db, const shoal_log_mark *mark,
                                   void (*on_durable)(void *ctx, int err), void *ctx);
/* Blocks until every record of mark->stream up to mark->lsn is as durable as mark->sync
 * asks: 0, or the log's error (as shoal_notify_durable's err). If no sync of the stream is
 * running the calling thread writes and syncs the stream itself, at once. For a caller that
 * has gathered its group of writes already (an event loop at the end of a round).
 * Errors also: SHOAL_EINVAL as shoal_notify_durable. */
SHOAL_API int shoal_wait_durable(shoal_db *db, const shoal_log_mark *mark);

/* The end of each log stream now, for a durability barrier (WAITAOF): marks[0..*streams)
 * (marks holds SHOAL_MAX_LOG_STREAMS) get each stream's last record so far, with sync
 * SHOAL_SYNC_ALWAYS; a stream with no record since the open has lsn 0 (nothing to wait
 * for). Once shoal_notify_durable reports every mark of lsn > 0, every write that
 * returned before this call is on disk, whatever its own sync policy. Returns 0, or
 * SHOAL_EINVAL (memory mode, NULL arguments). Thread-safety: any thread. */
SHOAL_API int shoal_log_end(shoal_db *db, shoal_log_mark *marks, unsigned *streams);

/* Stores value under key, replacing any previous value. wo may be NULL.
 * Errors: SHOAL_EINVAL (NULL handle or key, empty key), SHOAL_ETOOBIG, SHOAL_EQUOTA,
 * SHOAL_ERATE, SHOAL_EMEMLIMIT, SHOAL_EDROPPED, SHOAL_ENOMEM, and in durable mode
 * SHOAL_EREADONLY, SHOAL_EFSYNC, SHOAL_EIO. On error nothing changed.
 * Thread-safety: any thread. */
SHOAL_API int shoal_put(shoal_ns *ns, const void *key, size_t klen, const void *value,
                        size_t vlen, const shoal_write_options *wo);

/* Reads key. On success *value is a copy the caller frees with shoal_free (a zero-length
 * value gives a non-NULL pointer) and *vlen its length. Errors: SHOAL_ENOTFOUND,
 * SHOAL_EINVAL, SHOAL_ETOOBIG (key), SHOAL_EDROPPED, SHOAL_ERATE, SHOAL_ENOMEM. */
SHOAL_API int shoal_get(shoal_ns *ns, const shoal_snapshot *snap, const void *key, size_t klen,
                        void **value, size_t *vlen);
/* Reads key into the caller's buffer. *vlen is set to the value's full length; if it
 * exceeds cap, nothing is copied and SHOAL_ERANGE is returned. Otherwise as shoal_get. */
SHOAL_API int shoal_get_into(shoal_ns *ns, const shoal_snapshot *snap, const void *key,
                             size_t klen, void *buf, size_t cap, size_t *vlen);
/* Reads key and hands its value to fn while the value is pinned; fn must not call into
 * the database. The value bytes are valid only during the call. Returns fn's result if it
 * is negative, else 0; errors as shoal_get. */
SHOAL_API int shoal_get_with(shoal_ns *ns, const shoal_snapshot *snap, const void *key,
                             size_t klen, int (*fn)(void *ctx, const void *value, size_t vlen),
                             void *ctx);
/* Deletes key. Returns 0 if it existed, SHOAL_ENOTFOUND if not (nothing changed), or an
 * error as shoal_put. */
SHOAL_API int shoal_delete(shoal_ns *ns, const void *key, size_t klen,
                           const shoal_write_options *wo);
/* Returns 1 if key exists, 0 if not, or a negative error as shoal_get. */
SHOAL_API int shoal_exists(shoal_ns *ns, const shoal_snapshot *snap, const void *key,
                           size_t klen);
/* Stores in *seq the seq of the latest write to key (a put or a delete) as seen by snap,
 * or 0 if the database has no record of the key. Used with shoal_batch_require for
 * optimistic read-modify-write: read the seq and the value at one snapshot (or the seq
 * first, then the value), never the value first, or a condition may pass with a value
 * older than its seq. A deleted key's seq may fall to 0 when its delete is reclaimed, which
 * can make such a condition fail spuriously (retry). Errors as shoal_get (never
 * SHOAL_ENOTFOUND). */
SHOAL_API int shoal_key_seq(shoal_ns *ns, const shoal_snapshot *snap, const void *key,
                            size_t klen, uint64_t *seq);

/* Stores in *bytes the memory the engine holds for key (Redis's MEMORY USAGE): each of its
 * versions still kept (for open snapshots), as the allocator's size class holds it, with
 * its object-table entry, plus the key's share of its index (the index's bytes over its
 * keys, or over a leaf's worth of keys in an index that holds fewer). Returns SHOAL_ENOTFOUND if the key has no live value, or errors as shoal_get. */
SHOAL_API int shoal_key_memory(shoal_ns *ns, const void *key, size_t klen, uint64_t *bytes);

/* Frees memory the library handed out (shoal_get values). NULL is a no-op. */
SHOAL_API void shoal_free(void *p);

/* ---------------------------------------------------------------------------------------
 * Atomic batches: puts and deletes across any namespaces and shards, committed with one
 * seq, all or nothing.
 * ------------------------------------------------------------------------------------- */

typedef struct shoal_batch shoal_batch;

/* Creates an empty batch. Errors: SHOAL_EINVAL, SHOAL_ENOMEM. */
SHOAL_API int shoal_batch_new(shoal_db *db, shoal_batch **out);
/* Adds a put; key and value are copied. Errors: SHOAL_EINVAL, SHOAL_ETOOBIG, SHOAL_ENOMEM
 * (the batch is unchanged). Later operations on the same key win. */
SHOAL_API int shoal_batch_put(shoal_batch *b, shoal_ns *ns, const void *key, size_t klen,
                              const void *value, size_t vlen);
/* Adds a delete (of a key that may not exist). */
SHOAL_API int shoal_batch_delete(shoal_batch *b, shoal_ns *ns, const void *key, size_t klen);
/* Adds a delete of every key ns holds when the batch commits, as the batch's earlier
 * operations leave it; its later operations apply after it (FLUSHDB inside a transaction).
 * Unlike shoal_ns_drop it is one more write of the batch, atomic with the others and seen
 * at its seq by snapshots, but it costs what deleting each key does: the commit holds the
 * write locks of every shard of ns while it writes a tombstone per key (and, in a durable
 * database, a log record naming every key). It counts as one operation for
 * shoal_batch_count and the tenant's rate limit. Errors as shoal_batch_delete. */
SHOAL_API int shoal_batch_delete_all(shoal_batch *b, shoal_ns *ns);
/* Adds a condition: the commit succeeds only if key's latest seq (shoal_key_seq) is still
 * seq; 0 means "the database has no record of the key". */
SHOAL_API int shoal_batch_require(shoal_batch *b, shoal_ns *ns, const void *key, size_t klen,
                                  uint64_t seq);
/* Number of puts and deletes in the batch. */
SHOAL_API size_t shoal_batch_count(const shoal_batch *b);
/* Commits the batch atomically: every shard it touches is locked, the conditions checked,
 * quotas checked, one seq drawn, every write applied, the locks released. On success
 * *seq (if not NULL) is the batch's seq; an empty batch commits nothing and gives the
 * latest seq. Errors: SHOAL_ECONFLICT, SHOAL_EQUOTA, SHOAL_ERATE, SHOAL_EMEMLIMIT,
 * SHOAL_EDROPPED, SHOAL_ENOMEM, and durable errors; on any error nothing changed. The
 * batch keeps its contents either way (clear it to reuse). */
SHOAL_API int shoal_batch_commit(shoal_batch *b, const shoal_write_options *wo, uint64_t *seq);
/* Empties the batch, keeping its memory. */
SHOAL_API void shoal_batch_clear(shoal_batch *b);
/* Frees the batch. NULL is a no-op. */
SHOAL_API void shoal_batch_free(shoal_batch *b);

/* ---------------------------------------------------------------------------------------
 * Iterators: ordered by key, over a prefix or a [start, end) range, forward or reverse, at
 * a snapshot or (snap NULL) at an implicit snapshot taken when the iterator is created.
 * An iterator holds a snapshot slot of its own (also when given a snapshot: it pins that
 * snapshot's seq, so the caller may release its snapshot first), not a lock: it reads its
 * shards in short steps, so a long scan never stops writers. A spread namespace merges its
 * shards' cursors. Keys and values are not copied: the iterator points into the stored
 * versions, which stay in place while it is open (a dropped namespace's memory is freed
 * when its last iterator is). The namespace handle may be closed before the iterator.
 * ------------------------------------------------------------------------------------- */

typedef struct shoal_iter shoal_iter;

typedef struct shoal_iter_options {
    const void *start; /* first key, inclusive (NULL: from the beginning) */
    size_t start_len;
    const void *end; /* bound, exclusive (NULL: to the end) */
    size_t end_len;
    const void *prefix; /* only keys with this prefix (NULL: all); combines with start/end */
    size_t prefix_len;
    bool reverse; /* from the largest key down */
    const shoal_snapshot *snap; /* NULL: an implicit snapshot held by the iterator */
} shoal_iter_options;

/* Creates an iterator positioned before its first key. opts may be NULL (everything, forward,
 * latest). Errors: SHOAL_EINVAL, SHOAL_EDROPPED, SHOAL_ENOSLOT, SHOAL_ENOMEM. */
SHOAL_API int shoal_iter_new(shoal_ns *ns, const shoal_iter_options *opts, shoal_iter **out);
/* Advances to the next key. Returns 1 when positioned on a key, 0 at the end, or a negative
 * error (SHOAL_EDROPPED if the namespace was dropped, SHOAL_ENOMEM). */
SHOAL_API int shoal_iter_next(shoal_iter *it);
/* The current key and value. The pointers stay valid until shoal_iter_free (and are
 * promised only until the next shoal_iter_next). Only valid after shoal_iter_next
 * returned 1. */
SHOAL_API const void *shoal_iter_key(const shoal_iter *it, size_t *klen);
SHOAL_API const void *shoal_iter_value(const shoal_iter *it, size_t *vlen);
/* Frees the iterator and its implicit snapshot. NULL is a no-op. */
SHOAL_API void shoal_iter_free(shoal_iter *it);

/* ---------------------------------------------------------------------------------------
 * Statistics
 * ------------------------------------------------------------------------------------- */

typedef struct shoal_latency {
    uint64_t count; /* operations sampled */
    uint64_t p50_ns, p90_ns, p99_ns, p999_ns, max_ns;
} shoal_latency;

typedef struct shoal_db_stats {
    uint64_t seq;               /* latest committed seq */
    uint32_t shards;            /* configured shards */
    uint32_t active_shards;     /* shards created so far */
    uint64_t namespaces, tenants;
    uint64_t keys, bytes;       /* live keys and key+value bytes, latest state */
    uint64_t memory;            /* bytes held by the engine (segments, tables, indexes) */
    uint64_t gets, puts, deletes, commits, scans;
    uint64_t snapshots_open;
    /* Old versions queued for reclaiming (kept while a snapshot may read them), and those
     * the queue has released since; their difference is what open snapshots hold. */
    uint64_t versions_retired, versions_reclaimed;
    uint64_t quota_refusals;
    uint64_t compactions;       /* shoal_compact calls that returned 0 */
    uint64_t compact_versions_moved, compact_bytes_moved; /* by every shoal_compact */
    uint64_t compact_bytes_released; /* memory compactions gave back to the system */
    shoal_latency get, put, commit; /* commit: batches */
    bool read_only;             /* after a failed write or fsync (durable mode) */
    int read_only_cause;        /* the SHOAL_E* that made it read-only, else 0 */
    /* Durable mode (all 0 in memory mode). */
    bool durable;
    uint32_t log_streams;
    uint64_t log_bytes;         /* bytes in live log segments */
    uint64_t log_syncs;         /* fdatasync calls on log segments */
    uint64_t log_sync_ns;       /* time spent in them: / log_syncs = the disk's sync latency */
    uint64_t group_commits;     /* syncs that made new records durable */
    uint64_t group_waiters;     /* waiters those syncs released: / group_commits = group size */
    uint64_t checkpoints;       /* completed since open */
    uint64_t checkpoint_seq;    /* seq of the current checkpoint (0: none) */
    int64_t checkpoint_unix;    /* wall-clock time it completed (seconds), 0 if none */
    int last_checkpoint_error;  /* 0 or the error of the last failed checkpoint */
    uint64_t recovered_records; /* log records replayed at open */
    uint64_t recovered_keys;    /* keys loaded from the checkpoint at open */
    uint32_t torn_streams;      /* streams whose torn tail was cut at open */
    uint64_t torn_bytes;        /* bytes cut */
    uint64_t salvaged_bytes;    /* bytes dropped by SHOAL_OPT_SALVAGE at open */
} shoal_db_stats;

typedef struct shoal_shard_stats {
    uint32_t shard;
    bool active;                /* created */
    uint64_t gets, puts, deletes, commits;
    uint64_t lock_waits;        /* acquisitions that had to wait */
    uint64_t lock_wait_ns;      /* total time spent waiting for the shard lock */
    uint64_t objects;           /* live objects (versions) in its object table */
    uint64_t bytes;             /* bytes in use in its segment allocator (both of them
                                   while a compaction's old one waits, shoal_compact) */
    uint64_t indexes;           /* namespace indexes on the shard */
} shoal_shard_stats;

typedef struct shoal_tenant_stats {
    uint32_t id;
    char name[SHOAL_MAX_NAME + 1];
    shoal_quota quota;
    uint64_t keys, bytes, namespaces;
    uint64_t ops;               /* operations charged to the tenant */
    uint64_t quota_refusals;    /* writes refused by a quota or the rate limit */
} shoal_tenant_stats;

/* Database-wide statistics. Counters are exact at quiescence and approximate while other
 * threads run. Thread-safety: any thread. */
SHOAL_API int shoal_stats(shoal_db *db, shoal_db_stats *out);
/* One shard's statistics. Errors: SHOAL_EINVAL (shard >= configured shards). */
SHOAL_API int shoal_stats_shard(shoal_db *db, uint32_t shard, shoal_shard_stats *out);
/* One tenant's statistics. Errors: SHOAL_ENOTFOUND. */
SHOAL_API int shoal_stats_tenant(shoal_db *db, uint32_t tenant, shoal_tenant_stats *out);
/* A namespace's statistics are in shoal_ns_info_get. */

#ifdef __cplusplus
}
#endif

#endif /* SHOAL_H */
