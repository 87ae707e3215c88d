/*
 * store.c -- the server's view of the engine.
 *
 * Purpose
 * -------
 * Commands speak of users, logical databases, keys with types and expiries; the engine
 * speaks of tenants, namespaces and bytes. This module is the translation, and the one
 * place where the server's optimistic concurrency lives.
 *
 * Layout in the engine
 * --------------------
 *   namespace   "<tenant name>/<n>" for logical database n of a tenant, kind kv,
 *               placement spread (keys hashed over all shards), owned by the tenant, so
 *               the engine's quotas and per-tenant statistics apply as they are.
 *   key         STORE_KEY_PREFIX ('k') followed by the user's key bytes. The prefix
 *               leaves room for other key spaces in the same namespace later.
 *   value       value.h's header (type, expiry) followed by the payload.
 *
 * Concurrency
 * -----------
 * Every event loop runs commands directly on the engine; there is no server-wide lock.
 * A command that reads before it writes (INCR, SETNX, APPEND, RENAME, EXEC...) runs as an
 * attempt of a store_txn: its reads happen at one snapshot and record each key's seq, its
 * writes collect in a batch, and the commit requires every read key to still have the
 * seq it had (shoal_batch_require). If another client wrote one of them meanwhile, the
 * commit fails with SHOAL_ECONFLICT, nothing changed, and the caller runs the command
 * again. Since an attempt's reads all come from one snapshot and its commit checks they
 * are still current, the attempt is equivalent to running the command alone at its
 * commit's seq: commands are serializable, as on a single-threaded Redis.
 *
 * Durability
 * ----------
 * store_txn_commit takes the caller's write options: in durable mode the dispatcher
 * passes a log mark to fill (pending.c), the commit returns SHOAL_PENDING, and the
 * reply waits for the log while the loop goes on. Deletes of expired keys are written
 * with SHOAL_SYNC_NONE: a lost one leaves a key that is still expired after recovery.
 * store_open_existing reopens, at startup, the namespaces a previous run created, so
 * counts and FLUSHALL see every database before a client touches it.
 *
 * Catalog changes
 * ---------------
 * Creating a namespace and flushing one (drop, then create anew) rewrite the engine's
 * MANIFEST, an fsync or more. Event loops therefore only look namespaces up
 * (store_namespace_lookup: the table, under its lock, nothing else); a loop whose client
 * needs a namespace that does not exist yet, or one being flushed, suspends the client
 * and the catalog worker calls store_namespace or store_flush (catalog.c). While a flush
 * runs its entry is marked flushing: lookups report it as not there, so clients wait for
 * the worker (which runs the flush first, then their creation requests, in order)
 * instead of spinning on the dropped handle.
 *
 * Invariants
 * ----------
 * 1. A committed attempt's reads were all current at its commit seq (the require of each
 *    read key is in its batch).
 * 2. An expired value is never returned; it is deleted only if it is still the version
 *    that was seen expired (the deletion carries a require on its seq), so a concurrent
 *    SET of the same key is never lost to expiry.
 * 3. Namespace handles are never closed before store_shutdown: a flush drops the
 *    namespace and installs a new handle, and older handles only answer SHOAL_EDROPPED,
 *    so a client holding one never touches freed memory.
 * 4. A SCAN cursor is only honoured for the tenant and database that created it.
 * 5. The table's lock is never held across an engine call that can write the MANIFEST
 *    (shoal_ns_open creating, shoal_ns_drop): those run under change_lock, which only
 *    the catalog worker (catalog.c) and startup take, so an event loop's lookup waits
 *    at most for another lookup or an install, never for the disk.
 *
 * Testing
 * -------
 * The integration suite (tests/integration) runs concurrent INCRs and WATCH/MULTI/EXEC
 * from several connections and checks nothing is lost, SCAN completeness under concurrent
 * writes, lazy and active expiry, and tenant isolation of every key-reading command.
 */
#include "store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

atomic_ullong store_expired_keys;

/* Deletes of expired keys never wait for the log: a lost one leaves a key that is still
 * expired after recovery, and is deleted again. So neither the loop that found it on a
 * read nor the expiry cycle blocks on the disk. */
static const shoal_write_options store_expiry_write = {.sync = SHOAL_SYNC_NONE};

/* ---------------------------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------------------------- */

typedef struct store_key {
    char *bytes;
    size_t length;
    char small[256];
} store_key;

static int store_key_make(store_key *k, const char *key, size_t key_length)
{
    if (key_length > STORE_MAX_KEY)
        return SHOAL_ETOOBIG;
    k->length = key_length + 1;
    k->bytes = k->length <= sizeof(k->small) ? k->small : malloc(k->length);
    if (k->bytes == NULL)
        return SHOAL_ENOMEM;
    k->bytes[0] = STORE_KEY_PREFIX;
    if (key_length > 0)
        memcpy(k->bytes + 1, key, key_length);
    return 0;
}

static void store_key_release(store_key *k)
{
    if (k->bytes != k->small)
        free(k->bytes);
    k->bytes = NULL;
}

int64_t store_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------------------
 * Namespace table
 * ------------------------------------------------------------------------------------- */

typedef struct store_namespace_entry {
    uint32_t tenant;
    int db;
    /* NULL when a flush dropped the namespace and could not create the new one: the next
     * use creates it again. Written under the table lock. */
    shoal_ns *handle;
    /* A flush is dropping and recreating the namespace: handle is the old one, which
     * answers SHOAL_EDROPPED, and lookups report the namespace as not ready. */
    bool flushing;
    /* Active expiry resumes here (user key bytes), owned by the background thread. */
    char *expire_cursor;
    size_t expire_cursor_length;
    bool expire_cursor_set;
    /* Whether the last chunk that held keys with a TTL found many of them expired: a chunk
     * with none keeps this verdict instead of ending the sweep (store_expire_namespace). */
    bool expire_stale;
    /* Keys with a time to live that active expiry found alive: in the pass under way
     * (count and sum of their remaining times), and in the last full pass, if one ended
     * since the namespace was created or flushed. Under the table lock. */
    uint64_t pass_ttl_keys, pass_ttl_sum_ms;
    uint64_t counted_ttl_keys, counted_avg_ttl_ms;
    bool counted;
} store_namespace_entry;

/* A flushed or new namespace: active expiry starts its pass again, with nothing counted. */
static void store_entry_forget_expiry(store_namespace_entry *entry)
{
    entry->expire_cursor_set = false;
    entry->pass_ttl_keys = entry->pass_ttl_sum_ms = 0;
    entry->counted_ttl_keys = entry->counted_avg_ttl_ms = 0;
    entry->counted = false;
}

/* Two locks (invariant 5): lock guards the table and is held only for lookups and
 * installs, never across an engine call that may write the MANIFEST; change_lock makes
 * catalog changes (create, flush) one at a time and is held across those engine calls.
 * Lock order: change_lock before lock. Entries are never freed before store_shutdown
 * (active expiry keeps pointers to them outside the lock). */
static struct {
    pthread_mutex_t lock;
    pthread_mutex_t change_lock;
    /* Taken for writing, by the catalog worker only, where a namespace becomes usable (a
     * database's first one, or the empty one a flush leaves); for reading by an EXEC that
     * flushes, from its FLUSHDB or FLUSHALL to its commit (store_txn_hold_catalog), so that
     * no database can gain a key between the flush's lookups and its commit. */
    pthread_rwlock_t publish;
    shoal_db *db;
    store_namespace_entry **entries;
    size_t count, capacity;
    shoal_ns **retired; /* invariant 3 */
    size_t retired_count, retired_capacity;
} store_table = {.lock = PTHREAD_MUTEX_INITIALIZER,
               .change_lock = PTHREAD_MUTEX_INITIALIZER,
               .publish = PTHREAD_RWLOCK_INITIALIZER};

int store_init(shoal_db *db)
{
    store_table.db = db;
    return 0;
}

void store_shutdown(void)
{
    pthread_mutex_lock(&store_table.change_lock);
    pthread_mutex_lock(&store_table.lock);
    for (size_t i = 0; i < store_table.count; i++) {
        shoal_ns_close(store_table.entries[i]->handle);
        free(store_table.entries[i]->expire_cursor);
        free(store_table.entries[i]);
    }
    for (size_t i = 0; i < store_table.retired_count; i++)
        shoal_ns_close(store_table.retired[i]);
    free(store_table.entries);
    free(store_table.retired);
    store_table.entries = NULL;
    store_table.retired = NULL;
    store_table.count = store_table.capacity = 0;
    store_table.retired_count = store_table.retired_capacity = 0;
    pthread_mutex_unlock(&store_table.lock);
    pthread_mutex_unlock(&store_table.change_lock);
}

static void store_namespace_name(char *out, size_t size, const char *tenant_name, int db)
{
    snprintf(out, size, "%s/%d", tenant_name, db);
}

static int store_open_handle(uint32_t tenant, const char *tenant_name, int db, shoal_ns **out)
{
    char name[SHOAL_MAX_NAME + 16];
    store_namespace_name(name, sizeof(name), tenant_name, db);
    if (strlen(name) > SHOAL_MAX_NAME)
        return SHOAL_EINVAL;
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD,
                           .tenant = tenant};
    return shoal_ns_open(store_table.db, name, &cfg, out);
}

/* Finds the entry; the table lock is held. */
static store_namespace_entry *store_find_locked(uint32_t tenant, int db)
{
    for (size_t i = 0; i < store_table.count; i++)
        if (store_table.entries[i]->tenant == tenant && store_table.entries[i]->db == db)
            return store_table.entries[i];
    return NULL;
}

int store_namespace_lookup(uint32_t tenant, int db, shoal_ns **out)
{
    pthread_mutex_lock(&store_table.lock);
    store_namespace_entry *entry = store_find_locked(tenant, db);
    shoal_ns *handle = entry != NULL && !entry->flushing ? entry->handle : NULL;
    pthread_mutex_unlock(&store_table.lock);
    *out = handle;
    return handle != NULL ? 0 : SHOAL_ENOTFOUND;
}

/* Room for one more retired handle, so that installing a new handle cannot fail after
 * the engine has already changed. The table lock is held. */
static int store_reserve_retired_locked(void)
{
    if (store_table.retired_count < store_table.retired_capacity)
        return 0;
    size_t capacity = store_table.retired_capacity ? store_table.retired_capacity * 2 : 16;
    shoal_ns **grown = realloc(store_table.retired, capacity * sizeof(*grown));
    if (grown == NULL)
        return SHOAL_ENOMEM;
    store_table.retired = grown;
    store_table.retired_capacity = capacity;
    return 0;
}

/* The change lock is held: only this thread adds entries or replaces handles. */
static int store_namespace_create_changing(uint32_t tenant, const char *tenant_name, int db,
                                           shoal_ns **out)
{
    pthread_mutex_lock(&store_table.lock);
    store_namespace_entry *entry = store_find_locked(tenant, db);
    int result = 0;
    if (entry == NULL && store_table.count == store_table.capacity) {
        size_t capacity = store_table.capacity ? store_table.capacity * 2 : 16;
        store_namespace_entry **grown = realloc(store_table.entries, capacity * sizeof(*grown));
        if (grown == NULL)
            result = SHOAL_ENOMEM;
        else {
            store_table.entries = grown;
            store_table.capacity = capacity;
        }
    }
    shoal_ns *existing = entry != NULL ? entry->handle : NULL;
    pthread_mutex_unlock(&store_table.lock);
    if (result != 0)
        return result;
    if (existing != NULL) {
        *out = existing; /* flushing is never set here: flushes hold the change lock too */
        return 0;
    }
    store_namespace_entry *fresh_entry = NULL;
    if (entry == NULL) {
        fresh_entry = calloc(1, sizeof(*fresh_entry));
        if (fresh_entry == NULL)
            return SHOAL_ENOMEM;
        fresh_entry->tenant = tenant;
        fresh_entry->db = db;
    }
    /* The engine call that may write the MANIFEST, outside the table lock. */
    shoal_ns *handle;
    result = store_open_handle(tenant, tenant_name, db, &handle);
    if (result != 0) {
        free(fresh_entry);
        return result;
    }
    pthread_rwlock_wrlock(&store_table.publish);
    pthread_mutex_lock(&store_table.lock);
    if (fresh_entry != NULL) {
        fresh_entry->handle = handle;
        store_table.entries[store_table.count++] = fresh_entry; /* room reserved above */
    } else {
        entry->handle = handle;
        store_entry_forget_expiry(entry);
    }
    pthread_mutex_unlock(&store_table.lock);
    pthread_rwlock_unlock(&store_table.publish);
    *out = handle;
    return 0;
}

int store_namespace(uint32_t tenant, const char *tenant_name, int db, shoal_ns **out)
{
    if (store_namespace_lookup(tenant, db, out) == 0)
        return 0;
    pthread_mutex_lock(&store_table.change_lock);
    int result = store_namespace_create_changing(tenant, tenant_name, db, out);
    pthread_mutex_unlock(&store_table.change_lock);
    return result;
}

bool store_namespace_known(uint32_t tenant, int db)
{
    pthread_mutex_lock(&store_table.lock);
    bool known = store_find_locked(tenant, db) != NULL;
    pthread_mutex_unlock(&store_table.lock);
    return known;
}

int store_flush(uint32_t tenant, const char *tenant_name, int db)
{
    char name[SHOAL_MAX_NAME + 16];
    store_namespace_name(name, sizeof(name), tenant_name, db);
    if (strlen(name) > SHOAL_MAX_NAME)
        return SHOAL_EINVAL;
    pthread_mutex_lock(&store_table.change_lock);
    pthread_mutex_lock(&store_table.lock);
    store_namespace_entry *entry = store_find_locked(tenant, db);
    int result = entry != NULL ? store_reserve_retired_locked() : 0;
    if (entry != NULL && result == 0)
        entry->flushing = true; /* lookups wait from here: the handle is about to be dropped */
    pthread_mutex_unlock(&store_table.lock);
    if (result != 0) {
        pthread_mutex_unlock(&store_table.change_lock);
        return result;
    }
    /* A database never used in this process has no entry: dropping the name (if the
     * engine has it at all) is the whole flush; its first use creates it empty. */
    result = shoal_ns_drop(store_table.db, name);
    if (result == SHOAL_ENOTFOUND)
        result = 0;
    if (entry == NULL) {
        pthread_mutex_unlock(&store_table.change_lock);
        return result;
    }
    if (result != 0) {
        pthread_mutex_lock(&store_table.lock);
        entry->flushing = false; /* the drop did not happen: the old handle still works */
        pthread_mutex_unlock(&store_table.lock);
        pthread_mutex_unlock(&store_table.change_lock);
        return result;
    }
    shoal_ns *fresh = NULL;
    result = store_open_handle(tenant, tenant_name, db, &fresh);
    pthread_rwlock_wrlock(&store_table.publish);
    pthread_mutex_lock(&store_table.lock);
    /* Invariant 3: the old handle is retired, never closed; without a new one the entry
     * is empty and the next use creates the namespace again. */
    if (entry->handle != NULL)
        store_table.retired[store_table.retired_count++] = entry->handle;
    entry->handle = fresh;
    store_entry_forget_expiry(entry);
    entry->flushing = false;
    pthread_mutex_unlock(&store_table.lock);
    pthread_rwlock_unlock(&store_table.publish);
    pthread_mutex_unlock(&store_table.change_lock);
    return result;
}

size_t store_open_existing(int databases)
{
    size_t count = 0, capacity = 64;
    shoal_ns_info *infos = NULL;
    /* The list may grow between the two calls only if someone else creates namespaces;
     * at startup nobody does, but a bounded retry costs nothing. */
    for (int attempt = 0; attempt < 4; attempt++) {
        shoal_ns_info *grown = realloc(infos, capacity * sizeof(*infos));
        if (grown == NULL)
            break;
        infos = grown;
        if (shoal_ns_list(store_table.db, UINT32_MAX, infos, capacity, &count) != 0) {
            count = 0;
            break;
        }
        if (count <= capacity)
            break;
        capacity = count;
        count = 0;
    }
    size_t opened = 0;
    for (size_t i = 0; i < count && i < capacity; i++) {
        const char *slash = strrchr(infos[i].name, '/');
        if (slash == NULL || slash[1] == '\0')
            continue;
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end != '\0' || db < 0 || db >= databases)
            continue;
        shoal_tenant_stats tenant;
        if (shoal_stats_tenant(store_table.db, infos[i].tenant, &tenant) != 0)
            continue;
        size_t prefix = (size_t)(slash - infos[i].name);
        if (strlen(tenant.name) != prefix || memcmp(tenant.name, infos[i].name, prefix) != 0)
            continue; /* not a name this server gives its namespaces */
        shoal_ns *handle;
        if (store_namespace(infos[i].tenant, tenant.name, (int)db, &handle) == 0)
            opened++;
    }
    free(infos);
    return opened;
}

int store_count(uint32_t tenant, int db, uint64_t *keys)
{
    *keys = 0;
    /* Never creates the namespace: one not created yet, or being flushed, has no keys. */
    shoal_ns *handle;
    if (store_namespace_lookup(tenant, db, &handle) != 0)
        return 0;
    shoal_ns_info info;
    int result = shoal_ns_info_get(handle, &info);
    if (result == SHOAL_EDROPPED)
        return 0; /* a flush dropped it after the lookup */
    if (result == 0)
        *keys = info.keys;
    return result;
}

/* ---------------------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------------------- */

void store_value_release(store_value *v)
{
    shoal_free(v->raw);
    v->raw = NULL;
    v->data = NULL;
}

/* Header-only reads copy at most the header and remember the full length. */
typedef struct store_header_copy {
    unsigned char header[VALUE_HEADER_MAX];
    size_t length;
} store_header_copy;

static int store_copy_header(void *context, const void *value, size_t length)
{
    store_header_copy *copy = context;
    copy->length = length;
    memcpy(copy->header, value, length < VALUE_HEADER_MAX ? length : VALUE_HEADER_MAX);
    return 0;
}

/* Reads the engine bytes of an encoded key and fills out (found reflects presence only,
 * expiry is judged by the caller). */
static int store_fetch(shoal_ns *ns, const shoal_snapshot *snap, const store_key *k,
                       bool header_only, store_value *out)
{
    memset(out, 0, sizeof(*out));
    out->expire_ms = VALUE_NO_EXPIRY;
    value_meta meta;
    if (header_only) {
        store_header_copy copy;
        int result = shoal_get_with(ns, snap, k->bytes, k->length, store_copy_header, &copy);
        if (result == SHOAL_ENOTFOUND)
            return 0;
        if (result != 0)
            return result;
        out->found = true;
        if (!value_decode(copy.header, copy.length, &meta)) {
            out->foreign = true;
            out->length = copy.length;
            return 0;
        }
        out->type = meta.type;
        out->expire_ms = meta.expire_ms;
        out->length = copy.length - meta.header_length;
        return 0;
    }
    void *raw;
    size_t raw_length;
    int result = shoal_get(ns, snap, k->bytes, k->length, &raw, &raw_length);
    if (result == SHOAL_ENOTFOUND)
        return 0;
    if (result != 0)
        return result;
    out->found = true;
    out->raw = raw;
    if (!value_decode(raw, raw_length, &meta)) {
        out->foreign = true;
        out->data = raw;
        out->length = raw_length;
        return 0;
    }
    out->type = meta.type;
    out->expire_ms = meta.expire_ms;
    out->data = (const char *)raw + meta.header_length;
    out->length = raw_length - meta.header_length;
    return 0;
}

/* Deletes an encoded key if it is still expired at now_ms (invariant 2). */
static void store_delete_if_expired(shoal_ns *ns, const store_key *k, int64_t now_ms)
{
    shoal_snapshot *snap;
    if (shoal_snapshot_take(store_table.db, &snap) != 0)
        return;
    uint64_t seq;
    store_value v;
    if (shoal_key_seq(ns, snap, k->bytes, k->length, &seq) == 0 &&
        store_fetch(ns, snap, k, true, &v) == 0 && v.found && !v.foreign &&
        value_expired(v.expire_ms, now_ms)) {
        shoal_batch *batch;
        if (shoal_batch_new(store_table.db, &batch) == 0) {
            if (shoal_batch_require(batch, ns, k->bytes, k->length, seq) == 0 &&
                shoal_batch_delete(batch, ns, k->bytes, k->length) == 0 &&
                shoal_batch_commit(batch, &store_expiry_write, NULL) == 0)
                atomic_fetch_add_explicit(&store_expired_keys, 1, memory_order_relaxed);
            shoal_batch_free(batch);
        }
    }
    shoal_snapshot_release(snap);
}

int store_read(shoal_ns *ns, const shoal_snapshot *snap, const char *key, size_t key_length,
               bool header_only, int64_t now_ms, store_value *out)
{
    store_key k;
    int result = store_key_make(&k, key, key_length);
    if (result != 0) {
        memset(out, 0, sizeof(*out));
        return result;
    }
    result = store_fetch(ns, snap, &k, header_only, out);
    if (result == 0 && out->found && !out->foreign && value_expired(out->expire_ms, now_ms)) {
        store_value_release(out);
        out->found = false;
        store_delete_if_expired(ns, &k, now_ms);
    }
    store_key_release(&k);
    return result;
}

int store_key_seq(shoal_ns *ns, const char *key, size_t key_length, uint64_t *seq)
{
    store_key k;
    int result = store_key_make(&k, key, key_length);
    if (result != 0)
        return result;
    result = shoal_key_seq(ns, NULL, k.bytes, k.length, seq);
    store_key_release(&k);
    return result;
}

int store_key_memory(shoal_ns *ns, const char *key, size_t key_length, uint64_t *bytes)
{
    store_key k;
    int result = store_key_make(&k, key, key_length);
    if (result != 0)
        return result;
    result = shoal_key_memory(ns, k.bytes, k.length, bytes);
    store_key_release(&k);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * Transactions
 * ------------------------------------------------------------------------------------- */

struct store_overlay_entry {
    shoal_ns *ns;
    char *key;           /* encoded; NULL: every key of ns deleted (FLUSHDB) */
    size_t key_length;
    char *value;         /* encoded (header + payload), NULL for a delete */
    size_t value_length;
};

void store_txn_init(store_txn *txn, shoal_db *db)
{
    memset(txn, 0, sizeof(*txn));
    txn->db = db;
}

void store_txn_hold_catalog(store_txn *txn)
{
    if (!txn->holds_catalog) {
        pthread_rwlock_rdlock(&store_table.publish);
        txn->holds_catalog = true;
    }
}

static void store_txn_clear(store_txn *txn)
{
    if (txn->holds_catalog) {
        pthread_rwlock_unlock(&store_table.publish);
        txn->holds_catalog = false;
    }
    if (txn->snapshot != NULL) {
        shoal_snapshot_release(txn->snapshot);
        txn->snapshot = NULL;
    }
    if (txn->batch != NULL)
        shoal_batch_clear(txn->batch);
    free(txn->single_key);
    free(txn->single_value);
    txn->single_key = txn->single_value = NULL;
    txn->single_ns = NULL;
    for (size_t i = 0; i < txn->overlay_count; i++) {
        free(txn->overlay[i].key);
        free(txn->overlay[i].value);
    }
    txn->overlay_count = 0;
    txn->requires = txn->writes = 0;
    txn->active = false;
}

void store_txn_free(store_txn *txn)
{
    store_txn_clear(txn);
    shoal_batch_free(txn->batch);
    free(txn->overlay);
    memset(txn, 0, sizeof(*txn));
}

void store_txn_begin(store_txn *txn, bool multi, int64_t now_ms)
{
    store_txn_clear(txn);
    txn->multi = multi;
    txn->active = true;
    txn->failure = 0;
    txn->now_ms = now_ms;
}

void store_txn_abort(store_txn *txn)
{
    store_txn_clear(txn);
}

static int store_txn_fail(store_txn *txn, int error)
{
    if (txn->failure == 0)
        txn->failure = error;
    return error;
}

static int store_txn_batch(store_txn *txn)
{
    if (txn->batch == NULL) {
        int result = shoal_batch_new(txn->db, &txn->batch);
        if (result != 0)
            return store_txn_fail(txn, result);
    }
    return 0;
}

/* Moves the pending single put into the batch, once a second operation shows the
 * attempt is not a lone blind write. */
static int store_txn_flush_single(store_txn *txn)
{
    if (txn->single_ns == NULL)
        return 0;
    int result = store_txn_batch(txn);
    if (result == 0)
        result = shoal_batch_put(txn->batch, txn->single_ns, txn->single_key,
                                 txn->single_key_length, txn->single_value,
                                 txn->single_value_length);
    free(txn->single_key);
    free(txn->single_value);
    txn->single_key = txn->single_value = NULL;
    txn->single_ns = NULL;
    return result == 0 ? 0 : store_txn_fail(txn, result);
}

/* The newest write of the key, or the newest flush of ns after it (a delete too). */
static store_overlay_entry *store_overlay_find(store_txn *txn, shoal_ns *ns, const store_key *k)
{
    for (size_t i = txn->overlay_count; i-- > 0;) {
        store_overlay_entry *e = &txn->overlay[i];
        if (e->ns == ns && (e->key == NULL || (e->key_length == k->length &&
                                               !memcmp(e->key, k->bytes, k->length))))
            return e;
    }
    return NULL;
}

/* Adds an overlay entry: a write of k (value NULL: a delete), or with k NULL a flush. */
static int store_overlay_add(store_txn *txn, shoal_ns *ns, const store_key *k,
                             const char *value, size_t value_length)
{
    if (txn->overlay_count == txn->overlay_capacity) {
        size_t capacity = txn->overlay_capacity ? txn->overlay_capacity * 2 : 8;
        store_overlay_entry *grown = realloc(txn->overlay, capacity * sizeof(*grown));
        if (grown == NULL)
            return SHOAL_ENOMEM;
        txn->overlay = grown;
        txn->overlay_capacity = capacity;
    }
    store_overlay_entry *e = &txn->overlay[txn->overlay_count];
    e->ns = ns;
    e->key = NULL;
    e->key_length = 0;
    e->value = NULL;
    e->value_length = value_length;
    if (k == NULL) {
        txn->overlay_count++;
        return 0;
    }
    e->key = malloc(k->length);
    if (e->key == NULL)
        return SHOAL_ENOMEM;
    memcpy(e->key, k->bytes, k->length);
    e->key_length = k->length;
    if (value != NULL) {
        e->value = malloc(value_length ? value_length : 1);
        if (e->value == NULL) {
            free(e->key);
            return SHOAL_ENOMEM;
        }
        memcpy(e->value, value, value_length);
    }
    txn->overlay_count++;
    return 0;
}

/* Adds a delete of k, or with k NULL of every key of ns (a flush). */
static int store_txn_delete_encoded(store_txn *txn, shoal_ns *ns, const store_key *k)
{
    int result = store_txn_flush_single(txn);
    if (result == 0)
        result = store_txn_batch(txn);
    if (result == 0)
        result = k != NULL ? shoal_batch_delete(txn->batch, ns, k->bytes, k->length)
                           : shoal_batch_delete_all(txn->batch, ns);
    if (result == 0 && txn->multi)
        result = store_overlay_add(txn, ns, k, NULL, 0);
    if (result != 0)
        return store_txn_fail(txn, result);
    txn->writes++;
    return 0;
}

int store_txn_read(store_txn *txn, shoal_ns *ns, const char *key, size_t key_length,
                   bool header_only, store_value *out)
{
    memset(out, 0, sizeof(*out));
    out->expire_ms = VALUE_NO_EXPIRY;
    store_key k;
    int result = store_key_make(&k, key, key_length);
    if (result != 0)
        return result;
    if (txn->multi) {
        store_overlay_entry *e = store_overlay_find(txn, ns, &k);
        if (e != NULL) {
            store_key_release(&k);
            if (e->value == NULL)
                return 0;
            value_meta meta;
            out->found = true;
            if (!value_decode(e->value, e->value_length, &meta)) {
                out->foreign = true;
                out->data = e->value;
                out->length = e->value_length;
                return 0;
            }
            out->type = meta.type;
            out->expire_ms = meta.expire_ms;
            out->data = header_only ? NULL : e->value + meta.header_length;
            out->length = e->value_length - meta.header_length;
            if (value_expired(meta.expire_ms, txn->now_ms))
                out->found = false;
            return 0;
        }
    }
    if (txn->snapshot == NULL) {
        result = shoal_snapshot_take(txn->db, &txn->snapshot);
        if (result != 0) {
            store_key_release(&k);
            return store_txn_fail(txn, result);
        }
    }
    uint64_t seq;
    result = shoal_key_seq(ns, txn->snapshot, k.bytes, k.length, &seq);
    if (result == 0)
        result = store_fetch(ns, txn->snapshot, &k, header_only, out);
    if (result == 0) {
        out->seq = seq;
        result = store_txn_flush_single(txn);
        if (result == 0)
            result = store_txn_batch(txn);
        if (result == 0)
            result = shoal_batch_require(txn->batch, ns, k.bytes, k.length, seq);
        if (result == 0)
            txn->requires++;
    }
    if (result == 0 && out->found && !out->foreign && value_expired(out->expire_ms, txn->now_ms)) {
        store_value_release(out);
        out->found = false;
        result = store_txn_delete_encoded(txn, ns, &k);
        if (result == 0)
            atomic_fetch_add_explicit(&store_expired_keys, 1, memory_order_relaxed);
    }
    store_key_release(&k);
    if (result != 0) {
        store_value_release(out);
        return store_txn_fail(txn, result);
    }
    return 0;
}

int store_txn_put(store_txn *txn, shoal_ns *ns, const char *key, size_t key_length, int type,
                  int64_t expire_ms, const void *payload, size_t payload_length)
{
    store_key k;
    int result = store_key_make(&k, key, key_length);
    if (result != 0)
        return store_txn_fail(txn, result);
    if (payload_length > STORE_MAX_PAYLOAD) {
        store_key_release(&k);
        return store_txn_fail(txn, SHOAL_ETOOBIG);
    }
    unsigned char header[VALUE_HEADER_MAX];
    size_t header_length = value_encode_header(header, type, expire_ms);
    size_t value_length = header_length + payload_length;
    char *value = malloc(value_length);
    if (value == NULL) {
        store_key_release(&k);
        return store_txn_fail(txn, SHOAL_ENOMEM);
    }
    memcpy(value, header, header_length);
    if (payload_length > 0)
        memcpy(value + header_length, payload, payload_length);

    if (!txn->multi && txn->requires == 0 && txn->writes == 0) {
        /* Possibly a lone blind write: keep it aside for shoal_put. */
        char *key_copy = malloc(k.length);
        if (key_copy == NULL) {
            free(value);
            store_key_release(&k);
            return store_txn_fail(txn, SHOAL_ENOMEM);
        }
        memcpy(key_copy, k.bytes, k.length);
        txn->single_ns = ns;
        txn->single_key = key_copy;
        txn->single_key_length = k.length;
        txn->single_value = value;
        txn->single_value_length = value_length;
        txn->writes++;
        store_key_release(&k);
        return 0;
    }
    result = store_txn_flush_single(txn);
    if (result == 0)
        result = store_txn_batch(txn);
    if (result == 0)
        result = shoal_batch_put(txn->batch, ns, k.bytes, k.length, value, value_length);
    if (result == 0 && txn->multi)
        result = store_overlay_add(txn, ns, &k, value, value_length);
    free(value);
    store_key_release(&k);
    if (result != 0)
        return store_txn_fail(txn, result);
    txn->writes++;
    return 0;
}

int store_txn_delete(store_txn *txn, shoal_ns *ns, const char *key, size_t key_length)
{
    store_key k;
    int result = store_key_make(&k, key, key_length);
    if (result != 0)
        return store_txn_fail(txn, result);
    result = store_txn_delete_encoded(txn, ns, &k);
    store_key_release(&k);
    return result;
}

int store_txn_flush(store_txn *txn, shoal_ns *ns)
{
    return store_txn_delete_encoded(txn, ns, NULL);
}

int store_txn_require(store_txn *txn, shoal_ns *ns, const char *key, size_t key_length,
                      uint64_t seq)
{
    store_key k;
    int result = store_key_make(&k, key, key_length);
    if (result != 0)
        return store_txn_fail(txn, result);
    result = store_txn_flush_single(txn);
    if (result == 0)
        result = store_txn_batch(txn);
    if (result == 0)
        result = shoal_batch_require(txn->batch, ns, k.bytes, k.length, seq);
    store_key_release(&k);
    if (result != 0)
        return store_txn_fail(txn, result);
    txn->requires++;
    return 0;
}

int store_txn_commit(store_txn *txn, const shoal_write_options *wo)
{
    int result = txn->failure;
    if (result == 0 && txn->writes > 0) {
        if (txn->single_ns != NULL && txn->requires == 0 && txn->writes == 1) {
            result = shoal_put(txn->single_ns, txn->single_key, txn->single_key_length,
                               txn->single_value, txn->single_value_length, wo);
        } else {
            result = store_txn_flush_single(txn);
            if (result == 0)
                result = shoal_batch_commit(txn->batch, wo, NULL);
        }
    }
    store_txn_clear(txn);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * Iteration
 * ------------------------------------------------------------------------------------- */

/* What a scan shows of a stored value: false if it is expired at now_ms; a value this
 * server did not write (no valid header) shows as live, untyped, all payload. */
static bool store_scan_meta(const char *value, size_t value_length, int64_t now_ms,
                            value_meta *meta)
{
    if (value_decode(value, value_length, meta))
        return !value_expired(meta->expire_ms, now_ms);
    meta->type = 0;
    meta->expire_ms = VALUE_NO_EXPIRY;
    meta->header_length = 0;
    return true;
}

int store_scan(shoal_ns *ns, const char *after, size_t after_length, bool has_after,
               size_t limit, int64_t now_ms, store_scan_fn fn, void *context, bool *finished,
               char **last_key, size_t *last_key_length)
{
    *finished = true;
    *last_key = NULL;
    *last_key_length = 0;
    /* Resume strictly after the last key: its immediate successor in memcmp order is the
     * same bytes followed by a zero byte. */
    char prefix = STORE_KEY_PREFIX;
    char *start = NULL;
    size_t start_length = 0;
    if (has_after) {
        if (after_length > STORE_MAX_KEY)
            return SHOAL_EINVAL;
        start_length = after_length + 2;
        start = malloc(start_length);
        if (start == NULL)
            return SHOAL_ENOMEM;
        start[0] = STORE_KEY_PREFIX;
        if (after_length > 0)
            memcpy(start + 1, after, after_length);
        start[after_length + 1] = '\0';
    }
    shoal_iter_options options = {.prefix = &prefix, .prefix_len = 1, .start = start,
                                  .start_len = start_length};
    shoal_iter *it;
    int result = shoal_iter_new(ns, &options, &it);
    free(start);
    if (result != 0)
        return result;
    size_t examined = 0;
    for (;;) {
        result = shoal_iter_next(it);
        if (result <= 0)
            break; /* the end (finished) or an error */
        result = 0;
        if (examined == limit) {
            *finished = false; /* at least one more key follows */
            break;
        }
        size_t key_length, value_length;
        const char *key = shoal_iter_key(it, &key_length);
        const void *value = shoal_iter_value(it, &value_length);
        examined++;
        bool remember = examined == limit;
        value_meta meta;
        bool go_on = true;
        if (store_scan_meta(value, value_length, now_ms, &meta))
            go_on = fn(context, key + 1, key_length - 1, &meta, value_length - meta.header_length);
        if (remember || !go_on) {
            free(*last_key);
            *last_key = malloc(key_length);
            if (*last_key == NULL) {
                result = SHOAL_ENOMEM;
                break;
            }
            memcpy(*last_key, key + 1, key_length - 1);
            *last_key_length = key_length - 1;
        }
        if (!go_on) {
            *finished = false;
            break;
        }
    }
    if (*finished || result != 0) {
        free(*last_key);
        *last_key = NULL;
        *last_key_length = 0;
        if (result != 0)
            *finished = true;
    }
    shoal_iter_free(it);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * Scans and counts that see a multi transaction's own writes (EXEC)
 *
 * The overlay lists every queued write, newest last, a key as often as it was written.
 * A scan inside EXEC walks the committed keys and the overlay's keys of its namespace
 * together in key order: where both hold a key, the overlay's newest write wins (a put
 * shows its value, a delete hides the key). Only the overlay's newest write per key
 * counts, so its entries are sorted by key, oldest first within a key, and the last of
 * each run is kept. A flush queued in the transaction (FLUSHDB) hides every committed key
 * and every write queued before it: only the writes after the newest flush count.
 * ------------------------------------------------------------------------------------- */

/* Engine order of user keys: bytewise, a prefix before its extensions. */
static int store_key_order(const char *a, size_t a_length, const char *b, size_t b_length)
{
    size_t common = a_length < b_length ? a_length : b_length;
    int order = common ? memcmp(a, b, common) : 0;
    if (order != 0)
        return order;
    return a_length < b_length ? -1 : a_length > b_length;
}

static int store_written_order(const void *a, const void *b)
{
    const store_overlay_entry *x = *(const store_overlay_entry *const *)a;
    const store_overlay_entry *y = *(const store_overlay_entry *const *)b;
    int order = store_key_order(x->key, x->key_length, y->key, y->key_length);
    if (order != 0)
        return order;
    return x < y ? -1 : x > y; /* the overlay is one array: address order is write order */
}

/* The newest write of each key of ns since its newest flush, in key order: *out (malloc'd,
 * caller frees) holds *count entries; *flushed tells whether the transaction flushed ns. */
static int store_written(const store_txn *txn, const shoal_ns *ns, store_overlay_entry ***out,
                         size_t *count, bool *flushed)
{
    *out = NULL;
    *count = 0;
    size_t first = 0, n = 0;
    for (size_t i = txn->overlay_count; i-- > 0 && first == 0;)
        if (txn->overlay[i].ns == ns && txn->overlay[i].key == NULL)
            first = i + 1;
    *flushed = first > 0;
    for (size_t i = first; i < txn->overlay_count; i++)
        n += txn->overlay[i].ns == ns;
    if (n == 0)
        return 0;
    store_overlay_entry **written = malloc(n * sizeof(*written));
    if (written == NULL)
        return SHOAL_ENOMEM;
    n = 0;
    for (size_t i = first; i < txn->overlay_count; i++)
        if (txn->overlay[i].ns == ns)
            written[n++] = &txn->overlay[i];
    qsort(written, n, sizeof(*written), store_written_order);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        bool newest = i + 1 == n || store_key_order(written[i]->key, written[i]->key_length,
                                                    written[i + 1]->key,
                                                    written[i + 1]->key_length) != 0;
        if (newest)
            written[kept++] = written[i];
    }
    *out = written;
    *count = kept;
    return 0;
}

int store_txn_count_delta(store_txn *txn, shoal_ns *ns, int64_t *delta)
{
    *delta = 0;
    store_overlay_entry **written;
    size_t count;
    bool flushed;
    int result = store_written(txn, ns, &written, &count, &flushed);
    if (result == 0 && flushed) {
        /* Every stored key goes; the puts since the flush are all new. */
        shoal_ns_info info;
        result = shoal_ns_info_get(ns, &info);
        if (result == 0)
            *delta = -(int64_t)info.keys;
    }
    for (size_t i = 0; result == 0 && i < count; i++) {
        /* The engine's count holds every stored key, expired or not: compare with that. */
        int stored = flushed ? 0 : shoal_exists(ns, NULL, written[i]->key,
                                                written[i]->key_length);
        if (stored < 0)
            result = stored;
        else
            *delta += (written[i]->value != NULL) - stored;
    }
    free(written);
    return result;
}

typedef struct store_merge {
    store_overlay_entry **written;
    size_t count, next;
    int64_t now_ms;
    store_scan_fn fn;
    void *context;
    bool stopped;        /* fn returned false */
} store_merge;

/* Shows written entry e to the caller's function if it is a live put. */
static bool store_merge_show(store_merge *m, const store_overlay_entry *e)
{
    if (e->value == NULL)
        return true;
    value_meta meta;
    if (!store_scan_meta(e->value, e->value_length, m->now_ms, &meta))
        return true;
    if (!m->fn(m->context, e->key + 1, e->key_length - 1, &meta,
               e->value_length - meta.header_length)) {
        m->stopped = true;
        return false;
    }
    return true;
}

/* Shows the written entries up to the key (all of them when key is NULL); true if the
 * key itself was written (its committed version is then hidden). */
static bool store_merge_until(store_merge *m, const char *key, size_t key_length)
{
    while (!m->stopped && m->next < m->count) {
        const store_overlay_entry *e = m->written[m->next];
        int order = key == NULL ? -1
                                : store_key_order(e->key + 1, e->key_length - 1, key,
                                                  key_length);
        if (order > 0)
            return false;
        m->next++;
        store_merge_show(m, e);
        if (order == 0)
            return true;
    }
    return false;
}

static bool store_merge_one(void *context, const char *key, size_t key_length,
                            const value_meta *meta, size_t payload_length)
{
    store_merge *m = context;
    if (store_merge_until(m, key, key_length) || m->stopped)
        return !m->stopped;
    if (!m->fn(m->context, key, key_length, meta, payload_length))
        m->stopped = true;
    return !m->stopped;
}

int store_txn_scan(store_txn *txn, shoal_ns *ns, const char *after, size_t after_length,
                   bool has_after, size_t limit, store_scan_fn fn, void *context,
                   bool *finished, char **last_key, size_t *last_key_length)
{
    store_merge m = {.now_ms = txn->now_ms, .fn = fn, .context = context};
    bool flushed;
    int result = store_written(txn, ns, &m.written, &m.count, &flushed);
    if (result != 0 || flushed) {
        *finished = true;
        *last_key = NULL;
        *last_key_length = 0;
    }
    if (result != 0)
        return result;
    while (has_after && m.next < m.count &&
           store_key_order(m.written[m.next]->key + 1, m.written[m.next]->key_length - 1,
                           after, after_length) <= 0)
        m.next++;
    if (flushed) {
        /* No committed key shows: the written ones are all there is. */
        store_merge_until(&m, NULL, 0);
        free(m.written);
        return 0;
    }
    result = store_scan(ns, after, after_length, has_after, limit, txn->now_ms,
                        store_merge_one, &m, finished, last_key, last_key_length);
    /* Written keys after the last one examined belong to a later call, unless the
     * committed keys ended: then they all follow here. */
    if (result == 0 && !m.stopped) {
        if (*finished)
            store_merge_until(&m, NULL, 0);
        else
            store_merge_until(&m, *last_key, *last_key_length);
    }
    free(m.written);
    return result;
}

/* ---------------------------------------------------------------------------------------
 * SCAN cursors
 * ------------------------------------------------------------------------------------- */

#define STORE_CURSOR_SLOTS 4096u

typedef struct store_cursor {
    uint64_t id;
    uint32_t tenant;
    int db;
    char *key;
    size_t key_length;
} store_cursor;

static struct {
    pthread_mutex_t lock;
    store_cursor slots[STORE_CURSOR_SLOTS];
    uint64_t counter;
} store_cursors = {.lock = PTHREAD_MUTEX_INITIALIZER};

uint64_t store_cursor_save(uint32_t tenant, int db, const char *key, size_t key_length)
{
    char *copy = malloc(key_length ? key_length : 1);
    if (copy == NULL)
        return 0;
    if (key_length > 0)
        memcpy(copy, key, key_length);
    pthread_mutex_lock(&store_cursors.lock);
    /* Slots are reused round-robin: the oldest cursor is forgotten first. */
    uint64_t counter = ++store_cursors.counter;
    size_t slot = (size_t)(counter % STORE_CURSOR_SLOTS);
    store_cursor *c = &store_cursors.slots[slot];
    free(c->key);
    c->id = ((counter & ((1ull << 50) - 1)) << 12) | slot;
    if (c->id == 0)
        c->id = STORE_CURSOR_SLOTS; /* never 0: that cursor means "finished" */
    c->tenant = tenant;
    c->db = db;
    c->key = copy;
    c->key_length = key_length;
    uint64_t id = c->id;
    pthread_mutex_unlock(&store_cursors.lock);
    return id;
}

bool store_cursor_load(uint64_t cursor, uint32_t tenant, int db, char **key,
                       size_t *key_length)
{
    bool found = false;
    pthread_mutex_lock(&store_cursors.lock);
    store_cursor *c = &store_cursors.slots[cursor % STORE_CURSOR_SLOTS];
    if (c->id == cursor && c->key != NULL && c->tenant == tenant && c->db == db) {
        *key = malloc(c->key_length ? c->key_length : 1);
        if (*key != NULL) {
            memcpy(*key, c->key, c->key_length);
            *key_length = c->key_length;
            found = true;
        }
    }
    pthread_mutex_unlock(&store_cursors.lock);
    return found;
}

/* ---------------------------------------------------------------------------------------
 * Active expiry
 *
 * Keys with a time to live are not indexed apart: a pass walks the database in key order
 * from where the last one stopped, a chunk of keys at a time, and deletes what has
 * expired. After each chunk it decides, as Redis's active expire cycle does from its
 * samples, whether to go on: while more than the acceptable share of the chunk's keys with
 * a time to live had expired, and the cycle's time budget lasts. A database with nothing
 * to expire costs one chunk per cycle; one filling up with expired keys is swept at up to
 * the budget's share of a core. Every full pass also counts the keys with a time to live
 * it found alive, for INFO keyspace.
 * ------------------------------------------------------------------------------------- */

typedef struct store_expire_cycle {
    int64_t now_ms;
    uint64_t deadline_ns;    /* monotonic; past it every namespace gets one chunk only */
    size_t chunk;            /* keys examined between two decisions */
    unsigned stale_percent;  /* go on while more of a chunk's TTL keys had expired */
} store_expire_cycle;

/* Deletes the expired key (still at the version the snapshot saw): one batch per key, so
 * that a conflict on one (it was just rewritten) does not keep the others alive. */
static bool store_expire_key(shoal_ns *ns, const shoal_snapshot *snap, shoal_batch **batch,
                             const char *key, size_t key_length)
{
    uint64_t seq;
    if (shoal_key_seq(ns, snap, key, key_length, &seq) != 0)
        return false;
    if (*batch == NULL && shoal_batch_new(store_table.db, batch) != 0)
        return false;
    shoal_batch_clear(*batch);
    return shoal_batch_require(*batch, ns, key, key_length, seq) == 0 &&
           shoal_batch_delete(*batch, ns, key, key_length) == 0 &&
           shoal_batch_commit(*batch, &store_expiry_write, NULL) == 0;
}

/* The part of a cycle spent on one namespace: resumes at its cursor, stops at a chunk's
 * end when the chunk had few expired keys or the time is up, and saves where it stopped
 * (or, at the end of the database, the pass's counts). Returns the keys deleted. */
static uint64_t store_expire_namespace(store_namespace_entry *entry,
                                       const store_expire_cycle *cycle)
{
    pthread_mutex_lock(&store_table.lock);
    shoal_ns *ns = entry->handle;
    if (ns == NULL || entry->flushing) {
        pthread_mutex_unlock(&store_table.lock);
        return 0; /* being flushed, or waiting to be created again */
    }
    bool has_start = entry->expire_cursor_set;
    char *start = entry->expire_cursor; /* ours to free, whether set or stale */
    size_t start_length = entry->expire_cursor_length;
    entry->expire_cursor = NULL;
    entry->expire_cursor_set = false;
    bool expiring = entry->expire_stale;
    pthread_mutex_unlock(&store_table.lock);

    shoal_snapshot *snap;
    if (shoal_snapshot_take(store_table.db, &snap) != 0) {
        free(start);
        return 0;
    }
    char prefix = STORE_KEY_PREFIX;
    shoal_iter_options options = {.prefix = &prefix, .prefix_len = 1,
                                  .start = has_start ? start : NULL,
                                  .start_len = has_start ? start_length : 0, .snap = snap};
    shoal_iter *it;
    int result = shoal_iter_new(ns, &options, &it);
    free(start);
    if (result != 0) {
        shoal_snapshot_release(snap);
        return 0;
    }
    uint64_t deleted = 0, alive_ttl = 0, ttl_sum_ms = 0;
    size_t examined = 0, chunk_ttl = 0, chunk_expired = 0;
    char *resume = NULL;
    size_t resume_length = 0;
    bool reached_end = false;
    shoal_batch *batch = NULL;
    for (;;) {
        int more = shoal_iter_next(it);
        if (more != 1) {
            reached_end = more == 0;
            break;
        }
        size_t key_length, value_length;
        const char *key = shoal_iter_key(it, &key_length);
        if (examined > 0 && examined % cycle->chunk == 0) {
            /* A chunk without TTL keys tells nothing about how many have expired (after a
             * mass expiry, the stragglers sit among keys without one): it keeps the last
             * verdict, so a database without TTL keys still costs one chunk a cycle. */
            if (chunk_ttl > 0)
                expiring = chunk_expired * 100 > (uint64_t)chunk_ttl * cycle->stale_percent;
            if (!expiring || store_monotonic_ns() >= cycle->deadline_ns) {
                resume = malloc(key_length); /* the next pass starts at this key */
                if (resume != NULL) {
                    memcpy(resume, key, key_length);
                    resume_length = key_length;
                }
                break;
            }
            chunk_ttl = chunk_expired = 0;
        }
        examined++;
        const void *value = shoal_iter_value(it, &value_length);
        value_meta meta;
        if (!value_decode(value, value_length, &meta) || meta.expire_ms == VALUE_NO_EXPIRY)
            continue;
        chunk_ttl++;
        if (!value_expired(meta.expire_ms, cycle->now_ms)) {
            alive_ttl++;
            ttl_sum_ms += (uint64_t)(meta.expire_ms - cycle->now_ms);
            continue;
        }
        chunk_expired++;
        if (store_expire_key(ns, snap, &batch, key, key_length)) {
            deleted++; /* counted at once, as DBSIZE sees the delete at once */
            atomic_fetch_add_explicit(&store_expired_keys, 1, memory_order_relaxed);
        }
    }
    shoal_batch_free(batch);
    shoal_iter_free(it);
    shoal_snapshot_release(snap);

    pthread_mutex_lock(&store_table.lock);
    if (entry->handle == ns) {
        /* No flush in between: a flush installs a new handle (old ones are never freed, so
         * never reused) and resets the cursor and the counts. */
        entry->pass_ttl_keys += alive_ttl;
        entry->pass_ttl_sum_ms += ttl_sum_ms;
        if (reached_end && chunk_ttl > 0) /* the last, partial chunk */
            expiring = chunk_expired * 100 > (uint64_t)chunk_ttl * cycle->stale_percent;
        entry->expire_stale = expiring;
        if (reached_end) {
            entry->counted_ttl_keys = entry->pass_ttl_keys;
            entry->counted_avg_ttl_ms =
                entry->pass_ttl_keys ? entry->pass_ttl_sum_ms / entry->pass_ttl_keys : 0;
            entry->counted = true;
            entry->pass_ttl_keys = entry->pass_ttl_sum_ms = 0;
        } else if (resume != NULL) {
            entry->expire_cursor = resume;
            entry->expire_cursor_length = resume_length;
            entry->expire_cursor_set = true;
            resume = NULL;
        }
    }
    pthread_mutex_unlock(&store_table.lock);
    free(resume);
    return deleted;
}

uint64_t store_active_expire(size_t keys_per_chunk, int effort, uint64_t period_ns)
{
    /* Redis's figures for its slow cycle: 25% of the cycle's time and 10% of stale keys at
     * effort 1, each effort step adding 2% of time and accepting 1% less. */
    effort = effort < 1 ? 1 : effort > 10 ? 10 : effort;
    uint64_t start_ns = store_monotonic_ns();
    store_expire_cycle cycle = {
        .now_ms = store_now_ms(),
        .deadline_ns = start_ns + period_ns * (uint64_t)(25 + 2 * (effort - 1)) / 100,
        .chunk = keys_per_chunk > 0 ? keys_per_chunk : 1,
        .stale_percent = (unsigned)(10 - (effort - 1)),
    };
    pthread_mutex_lock(&store_table.lock);
    size_t count = store_table.count;
    store_namespace_entry **entries = malloc((count ? count : 1) * sizeof(*entries));
    if (entries != NULL && count > 0) /* with no namespace yet the table is NULL */
        memcpy(entries, store_table.entries, count * sizeof(*entries));
    pthread_mutex_unlock(&store_table.lock);
    if (entries == NULL)
        return 0;
    /* Each cycle begins one namespace further, so that none always gets only the time the
     * others left. */
    static size_t first;
    uint64_t deleted = 0;
    for (size_t i = 0; i < count; i++)
        deleted += store_expire_namespace(entries[(first + i) % count], &cycle);
    first = count > 0 ? (first + 1) % count : 0;
    free(entries);
    return deleted;
}

int store_expiry_counts(uint32_t tenant, int db, uint64_t *keys_with_ttl, uint64_t *avg_ttl_ms)
{
    *keys_with_ttl = *avg_ttl_ms = 0;
    pthread_mutex_lock(&store_table.lock);
    for (size_t i = 0; i < store_table.count; i++) {
        store_namespace_entry *entry = store_table.entries[i];
        if (entry->tenant != tenant || entry->db != db || entry->flushing)
            continue;
        /* Before the first full pass ends, what it has counted so far. */
        *keys_with_ttl = entry->counted ? entry->counted_ttl_keys : entry->pass_ttl_keys;
        uint64_t sum = entry->pass_ttl_sum_ms, keys = entry->pass_ttl_keys;
        *avg_ttl_ms = entry->counted ? entry->counted_avg_ttl_ms : keys ? sum / keys : 0;
        break;
    }
    pthread_mutex_unlock(&store_table.lock);
    return 0;
}
