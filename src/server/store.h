/*
 * store.h -- the server's view of the engine: logical databases as tenant namespaces, key
 * encoding, reads with lazy expiry, optimistic transactions, active expiry and SCAN
 * cursors. See store.c for the layout and the invariants.
 */
#ifndef SHOAL_SERVER_STORE_H
#define SHOAL_SERVER_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "shoal.h"
#include "value.h"

/* Every user key is stored behind this one-byte prefix (room for other key spaces). */
#define STORE_KEY_PREFIX 'k'
#define STORE_MAX_KEY (SHOAL_MAX_KEY - 1)

/* Keys deleted because they expired (lazily or actively), for INFO. */
extern atomic_ullong store_expired_keys;

/* ---------------------------------------------------------------------------------------
 * Namespaces: database n of tenant t is the spread namespace "<tenant name>/<n>".
 * ------------------------------------------------------------------------------------- */

/* Prepares the namespace table. Thread-safety: once, before any other call. */
int store_init(shoal_db *db);
/* Durable mode, at startup: opens every namespace a previous run created ("<tenant>/<n>"
 * of a known tenant, n below databases), so DBSIZE, FLUSHALL, INFO keyspace and active
 * expiry know them before any client touches them. Returns how many were opened. */
size_t store_open_existing(int databases);
/* Closes every namespace handle. Thread-safety: once, after every other call. */
void store_shutdown(void);
/* Looks the handle of database db of a tenant up in the table, without calling the
 * engine: 0 and *out, or SHOAL_ENOTFOUND (*out NULL) when the namespace was not created
 * in this process yet, is being flushed, or a flush could not create it again. The handle
 * stays valid until store_shutdown, even after a flush dropped its namespace; callers that
 * meet SHOAL_EDROPPED look again. Cost: a scan of the table under its mutex, which is never
 * held across disk I/O. Thread-safety: any thread; this is what event loops call. */
int store_namespace_lookup(uint32_t tenant, int db, shoal_ns **out);
/* Returns (opening or creating it on first use) the handle of database db of a tenant.
 * Creating writes the engine's MANIFEST in durable mode: it blocks on the disk, so event
 * loops never call it (catalog.c does, on its worker thread). Errors: SHOAL_E*.
 * Thread-safety: any thread; catalog changes are serialized by an internal mutex. */
int store_namespace(uint32_t tenant, const char *tenant_name, int db, shoal_ns **out);
/* Empties database db of a tenant: drops its namespace and creates a new one (two MANIFEST
 * writes; a database not used in this process is only dropped by name). Blocks on the
 * disk like store_namespace: the catalog worker's job. */
int store_flush(uint32_t tenant, const char *tenant_name, int db);
/* Number of live keys (engine count, which includes expired keys not yet removed); 0 for a
 * database that has no namespace yet or is being flushed. Never creates one. */
int store_count(uint32_t tenant, int db, uint64_t *keys);
/* True if database db of the tenant has ever been opened in this process. */
bool store_namespace_known(uint32_t tenant, int db);

/* ---------------------------------------------------------------------------------------
 * Values as read
 * ------------------------------------------------------------------------------------- */

/* The longest value the server stores: the engine's largest less the server's header. */
#define STORE_MAX_PAYLOAD ((size_t)SHOAL_MAX_VALUE - VALUE_HEADER_MAX)

typedef struct store_value {
    bool found;          /* a live (not expired) value exists */
    bool foreign;        /* the bytes were not written by this server (no valid header) */
    int type;
    int64_t expire_ms;   /* VALUE_NO_EXPIRY or absolute ms */
    const char *data;    /* payload, length bytes (NULL if header_only) */
    size_t length;       /* payload length */
    uint64_t seq;        /* key's seq at the read (transactions only) */
    void *raw;           /* owned engine copy to shoal_free, or NULL */
} store_value;

/* Releases what a read handed out. */
void store_value_release(store_value *v);

/* Milliseconds since the Unix epoch. */
int64_t store_now_ms(void);
/* Nanoseconds of the monotonic clock (durations, deadlines). Inline: commands time
 * themselves with it. */
static inline uint64_t store_monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* Reads a key outside any transaction at snap (NULL: latest). header_only avoids copying
 * the payload (TTL, TYPE, EXISTS, STRLEN). An expired key reads as absent and is deleted
 * (only if it is still that expired version). Returns 0 or SHOAL_E*. */
int store_read(shoal_ns *ns, const shoal_snapshot *snap, const char *key, size_t key_length,
               bool header_only, int64_t now_ms, store_value *out);

/* ---------------------------------------------------------------------------------------
 * Optimistic transactions: reads at one snapshot record each key's seq; writes collect in
 * a batch; the commit requires every read key to be unchanged. A conflict means: run the
 * command again.
 * ------------------------------------------------------------------------------------- */

typedef struct store_overlay_entry store_overlay_entry;

typedef struct store_txn {
    shoal_db *db;
    shoal_batch *batch;
    shoal_snapshot *snapshot;  /* taken on the first read of an attempt */
    int64_t now_ms;            /* one clock reading for the whole attempt, as Redis */
    bool multi;                /* later reads must see earlier writes (EXEC) */
    bool active;
    size_t requires, writes;
    int failure;               /* first engine error that makes the attempt void */
    /* A single put with no reads commits through shoal_put (the SET fast path). */
    shoal_ns *single_ns;
    char *single_key, *single_value;
    size_t single_key_length, single_value_length;
    bool holds_catalog;        /* store_txn_hold_catalog: released when the attempt ends */
    /* Writes of a multi transaction, newest last, so reads see them. */
    store_overlay_entry *overlay;
    size_t overlay_count, overlay_capacity;
} store_txn;

void store_txn_init(store_txn *txn, shoal_db *db);
void store_txn_free(store_txn *txn);
/* Starts an attempt. multi: keep an overlay so later reads see earlier writes. */
void store_txn_begin(store_txn *txn, bool multi, int64_t now_ms);
/* Reads a key in the transaction (see store_read for header_only). Records a condition on
 * the key's seq. An expired key reads as absent and its deletion joins the batch. */
int store_txn_read(store_txn *txn, shoal_ns *ns, const char *key, size_t key_length,
                   bool header_only, store_value *out);
/* Adds a put of value (type, expiry, payload). The payload is copied. */
int store_txn_put(store_txn *txn, shoal_ns *ns, const char *key, size_t key_length, int type,
                  int64_t expire_ms, const void *payload, size_t payload_length);
/* Adds a delete. */
int store_txn_delete(store_txn *txn, shoal_ns *ns, const char *key, size_t key_length);
/* Adds a delete of every key of ns at the commit (FLUSHDB inside EXEC): the writes queued
 * before it are deleted too, later ones apply after it, and later reads and scans of the
 * transaction see it. */
int store_txn_flush(store_txn *txn, shoal_ns *ns);
/* Keeps every database of the catalog as it is (none becomes usable) until the attempt
 * ends, committed or not: a flush inside EXEC takes it before it looks its databases up,
 * so a database first used meanwhile by another connection, and written, cannot escape
 * it. Blocks only while the catalog worker installs a namespace (no I/O). Loop thread. */
void store_txn_hold_catalog(store_txn *txn);
/* Adds a bare condition: the key's seq must still be seq at commit (WATCH). */
int store_txn_require(store_txn *txn, shoal_ns *ns, const char *key, size_t key_length,
                      uint64_t seq);
/* Commits the attempt (nothing to do if it wrote nothing) and ends it, with the write
 * options wo (NULL: the database's policy, waiting for the log if it says so). Returns 0,
 * SHOAL_PENDING (applied; wo->on_durable reports durability later), SHOAL_ECONFLICT (run
 * again), or another SHOAL_E* (nothing changed). */
int store_txn_commit(store_txn *txn, const shoal_write_options *wo);
/* Ends an attempt without committing. */
void store_txn_abort(store_txn *txn);
/* The key's current seq (0 if the database has no record of it), for WATCH. */
int store_key_seq(shoal_ns *ns, const char *key, size_t key_length, uint64_t *seq);
/* The bytes the engine holds for the key as committed (shoal_key_memory), for MEMORY
 * USAGE. SHOAL_ENOTFOUND if it holds no live value. */
int store_key_memory(shoal_ns *ns, const char *key, size_t key_length, uint64_t *bytes);

/* ---------------------------------------------------------------------------------------
 * Iteration: SCAN, KEYS, RANDOMKEY, active expiry
 * ------------------------------------------------------------------------------------- */

/* Called for each live key; return false to stop early. */
typedef bool (*store_scan_fn)(void *context, const char *key, size_t key_length,
                              const value_meta *meta, size_t payload_length);

/* Visits keys in order, starting after (after, after_length) when has_after, examining at
 * most limit keys (expired ones are examined but not visited). On return *finished tells
 * whether the end was reached; if not, *last_key (malloc'd, caller frees) is the last key
 * examined, from which a later call resumes. Returns 0 or SHOAL_E*. */
int store_scan(shoal_ns *ns, const char *after, size_t after_length, bool has_after,
               size_t limit, int64_t now_ms, store_scan_fn fn, void *context, bool *finished,
               char **last_key, size_t *last_key_length);

/* Remembers where a SCAN stopped; returns a non-zero cursor. */
uint64_t store_cursor_save(uint32_t tenant, int db, const char *key, size_t key_length);
/* Finds a saved cursor of this tenant and database. Returns false if unknown or evicted;
 * otherwise *key is a malloc'd copy the caller frees. */
bool store_cursor_load(uint64_t cursor, uint32_t tenant, int db, char **key,
                       size_t *key_length);

/* store_scan inside a multi transaction (EXEC): the keys as its queued writes leave them,
 * committed keys and written ones merged in key order, the newest write of a key winning
 * (a put shows, a delete hides). Resumable like store_scan: a call shows the written keys
 * up to the last committed key it examined, and every written key after `after` once the
 * committed keys end. When fn stops early, written keys before the last one examined may
 * be left unseen (fine for RANDOMKEY, the only caller that stops). */
int store_txn_scan(store_txn *txn, shoal_ns *ns, const char *after, size_t after_length,
                   bool has_after, size_t limit, store_scan_fn fn, void *context,
                   bool *finished, char **last_key, size_t *last_key_length);
/* How much a multi transaction's queued writes change the key count of ns once committed:
 * keys they create minus keys they delete. */
int store_txn_count_delta(store_txn *txn, shoal_ns *ns, int64_t *delta);

/* One cycle of active expiry, run every period_ns: in every open namespace, examines keys
 * from where the last cycle stopped, keys_per_chunk at a time, deleting the expired ones,
 * and goes on to another chunk while more than (11 - effort)% of the chunk's keys with a
 * time to live had expired, until (23 + 2 * effort)% of period_ns is spent (effort 1..10,
 * Redis's active-expire-effort). Returns how many keys were deleted. Thread-safety: one
 * background thread. */
uint64_t store_active_expire(size_t keys_per_chunk, int effort, uint64_t period_ns);
/* For INFO keyspace: the keys with a time to live that active expiry found alive in its
 * last full pass over the database, and their average remaining time in ms (while the
 * first pass runs, what it has counted so far; 0 and 0 for a database never opened). */
int store_expiry_counts(uint32_t tenant, int db, uint64_t *keys_with_ttl,
                        uint64_t *avg_ttl_ms);

#endif /* SHOAL_SERVER_STORE_H */
