/*
 * durable.c -- durable mode: recovery at open, the commit log, checkpoints, the catalog in
 * the MANIFEST, and turning a memory database durable.
 *
 * On disk (formats byte by byte in docs/FORMAT.md):
 *
 *     DIR/LOCK                        flock: one open per directory
 *     DIR/MANIFEST                    catalog body below, replaced atomically
 *     DIR/log/<stream>/<seq>.wal      log segments; shard i logs to stream i % L
 *     DIR/ckpt/<seq>/shard-<i>.ckpt   one checkpoint: every namespace's part on shard i at seq
 *
 * MANIFEST body, version 1 (integers little-endian):
 *     u32 version (1) | u64 checkpoint seq (0: none) | u64 checkpoint shard mask |
 *     u32 shards | u32 next namespace id |
 *     u32 tenants, each: u32 id, u16 name length, name, u64 max keys, u64 max bytes,
 *                        u64 max ops per second |
 *     u32 namespaces, each: u32 id, u32 tenant, u8 kind, u8 placement, u32 shard,
 *                           u16 name length, name
 * Checkpoint file contents (the raw bytes inside its blocks): entries of
 *     u32 namespace id | u32 key length | u32 value length | key | value
 *
 * The catalog (namespaces, tenants, quotas) lives in the MANIFEST alone: every change to it
 * rewrites the MANIFEST before it takes effect, as RocksDB keeps column families in its
 * MANIFEST. The log carries only data records (log.h), so replaying streams in parallel
 * never meets a namespace that another stream has yet to create.
 *
 * Invariants:
 *   R1. A commit's record is appended to its stream while its shard locks are held and
 *       before it is acknowledged; a failed append undoes the commit (nothing changed).
 *   R2. Recovery keeps, for each key, the version with the largest seq from the checkpoint
 *       and every stream (streams are replayed in parallel, so their records interleave in
 *       any order); of versions with the same seq (one batch) the later in the log wins, so
 *       a shard's operations from one stream are applied in log order by one thread.
 *       Deletes are tombstones until every stream is replayed, then swept.
 *   R3. A checkpoint at S holds every write with seq <= S (it reads at a snapshot S); the
 *       MANIFEST names it only after every file is durable; log segments are deleted only
 *       after that, and only those whose records all have seq <= S.
 *   R4. After a failed log write or fsync every write fails with the log's sticky error;
 *       no checkpoint is taken (architecture invariant 8).
 *
 * Tested by tests/unit/test_durable.c (reopen equals the model, catalog changes, fault
 * injection through the I/O table, persist), tests/unit/test_corruption.c (bit flips,
 * truncations and lost files of every kind) and the crash tests (tests/unit/test_crash.c: kill -9 of a writing child, checked against what it was
 * told was acknowledged).
 */
#include "core/durable.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "durability/ckpt_file.h"
#include "durability/encoding.h"
#include "durability/io.h"
#include "durability/manifest.h"
#include "durability/wal.h"

#define CATALOG_VERSION 1u
#define CHECKPOINT_CHUNK_KEYS 32 /* keys a checkpoint reads per hold of a shard's lock */

struct durable {
    char dir[4096];
    const struct shoal_io *io;
    int lock_fd;
    struct wal *wal;
    unsigned streams;
    uint64_t checkpoint_seq;      /* under the catalog lock */
    uint64_t checkpoint_shards;   /* shard mask of the current checkpoint's files */
    pthread_mutex_t checkpoint_lock;
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;
    bool stopping, checkpointer_started;
    pthread_t checkpointer;
    _Atomic uint64_t checkpoints;
    /* Entry bytes of the current checkpoint (the one loaded at open, then each new one):
     * the background checkpointer waits for at least as many bytes of log. */
    _Atomic uint64_t checkpoint_bytes;
    _Atomic int64_t checkpoint_unix;
    _Atomic int last_checkpoint_error;
    /* A failed fsync outside the log (MANIFEST, checkpoint directory) is as fatal as one
     * inside it (R4): the database stops accepting writes with this error. */
    _Atomic int failed;
    uint64_t recovered_records, recovered_keys, torn_bytes, salvaged_bytes;
    uint32_t torn_streams;
};

static __thread char error_detail[4200];

void durable_set_detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_detail, sizeof error_detail, fmt, ap);
    va_end(ap);
}

SHOAL_API const char *shoal_error_detail(void)
{
    return error_detail;
}

static struct durable *durable_of(struct shoal_db *db)
{
    return atomic_load_explicit(&db->durable, memory_order_acquire);
}

/* ---- byte encoding ---------------------------------------------------------------------- */

struct writer {
    uint8_t *data;
    size_t len, cap;
    bool failed;
};

static void put_bytes(struct writer *w, const void *p, size_t n)
{
    if (w->failed)
        return;
    if (w->cap - w->len < n) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap - w->len < n)
            cap *= 2;
        uint8_t *data = realloc(w->data, cap);
        if (!data) {
            w->failed = true;
            return;
        }
        w->data = data;
        w->cap = cap;
    }
    memcpy(w->data + w->len, p, n);
    w->len += n;
}

static void put_u8(struct writer *w, uint8_t v)
{
    put_bytes(w, &v, 1);
}

static void put_u16(struct writer *w, uint16_t v)
{
    uint8_t b[2];
    encoding_put_u16(b, v);
    put_bytes(w, b, 2);
}

static void put_u32(struct writer *w, uint32_t v)
{
    uint8_t b[4];
    encoding_put_u32(b, v);
    put_bytes(w, b, 4);
}

static void put_u64(struct writer *w, uint64_t v)
{
    uint8_t b[8];
    encoding_put_u64(b, v);
    put_bytes(w, b, 8);
}

struct reader {
    const uint8_t *p, *end;
    bool failed;
};

static const uint8_t *take(struct reader *r, size_t n)
{
    if (r->failed || (size_t)(r->end - r->p) < n) {
        r->failed = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

static uint64_t get_le(struct reader *r, size_t n)
{
    const uint8_t *p = take(r, n);
    uint64_t v = 0;
    for (size_t i = 0; p && i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- the catalog in the MANIFEST -------------------------------------------------------- */

/* Encodes the catalog as a MANIFEST body: every tenant and every namespace that is not
 * dropped, with the one being created (C1). Catalog lock held. */
static void catalog_encode(struct shoal_db *db, uint64_t checkpoint_seq,
                           uint64_t checkpoint_shards, struct writer *w)
{
    put_u32(w, CATALOG_VERSION);
    put_u64(w, checkpoint_seq);
    put_u64(w, checkpoint_shards);
    put_u32(w, (uint32_t)db->config.shards);
    put_u32(w, db->next_ns_id);
    uint32_t tenants = db->tenant_count + (db->tenant_creating ? 1 : 0); /* C1 */
    put_u32(w, tenants);
    for (uint32_t i = 0; i < tenants; i++) {
        struct tenant *t = db->tenants[i];
        uint16_t len = (uint16_t)strlen(t->name);
        put_u32(w, t->id);
        put_u16(w, len);
        put_bytes(w, t->name, len);
        put_u64(w, atomic_load(&t->max_keys));
        put_u64(w, atomic_load(&t->max_bytes));
        put_u64(w, atomic_load(&t->max_ops));
    }
    uint32_t count = 0;
    for (uint32_t slot = 0; slot < db->ns_high; slot++)
        count += catalog_lists(db->namespaces[slot]);
    put_u32(w, count);
    for (uint32_t slot = 0; slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (!catalog_lists(ns))
            continue;
        uint16_t len = (uint16_t)strlen(ns->name);
        put_u32(w, ns->id);
        put_u32(w, ns->tenant->id);
        put_u8(w, (uint8_t)ns->kind);
        put_u8(w, (uint8_t)ns->placement);
        put_u32(w, ns->shard);
        put_u16(w, len);
        put_bytes(w, ns->name, len);
    }
}

/* Writes an encoded body as the MANIFEST and frees it. A failed fsync is sticky. */
static int catalog_store(struct durable *d, struct writer *w)
{
    int err = w->failed ? SHOAL_ENOMEM : manifest_write(d->io, d->dir, w->data, w->len);
    free(w->data);
    *w = (struct writer){0};
    if (err == SHOAL_EFSYNC) {
        /* The new MANIFEST may or may not be the one a crash would find: stop here. */
        int none = 0;
        atomic_compare_exchange_strong(&d->failed, &none, err);
    }
    return err;
}

static int catalog_write(struct shoal_db *db, struct durable *d, uint64_t checkpoint_seq,
                         uint64_t checkpoint_shards)
{
    struct writer w = {0};
    catalog_encode(db, checkpoint_seq, checkpoint_shards, &w);
    return catalog_store(d, &w);
}

/* The sticky error of the log or of the MANIFEST, or 0. */
static int durable_error(struct durable *d)
{
    int err = wal_error(d->wal);
    return err ? err : atomic_load(&d->failed);
}

int durable_catalog_encode(struct shoal_db *db, struct catalog_image *image)
{
    struct durable *d = durable_of(db);
    *image = (struct catalog_image){0};
    if (!d)
        return 0;
    int err = durable_error(d);
    if (err)
        return err;
    struct writer w = {0};
    catalog_encode(db, d->checkpoint_seq, d->checkpoint_shards, &w);
    image->data = w.data;
    image->len = w.len;
    image->failed = w.failed;
    image->present = true;
    return 0;
}

int durable_catalog_store(struct shoal_db *db, struct catalog_image *image)
{
    struct durable *d = durable_of(db);
    if (!image->present || !d)
        return 0;
    struct writer w = {.data = image->data, .len = image->len, .failed = image->failed};
    *image = (struct catalog_image){0};
    return catalog_store(d, &w);
}

/* The header of a MANIFEST body: enough to size the database before it exists. */
struct catalog_head {
    uint64_t checkpoint_seq, checkpoint_shards;
    uint32_t shards, next_ns_id;
};

static int catalog_head(const void *body, size_t len, struct catalog_head *h)
{
    struct reader r = {body, (const uint8_t *)body + len, false};
    uint32_t version = (uint32_t)get_le(&r, 4);
    h->checkpoint_seq = get_le(&r, 8);
    h->checkpoint_shards = get_le(&r, 8);
    h->shards = (uint32_t)get_le(&r, 4);
    h->next_ns_id = (uint32_t)get_le(&r, 4);
    if (r.failed)
        return SHOAL_ECORRUPT;
    if (version > CATALOG_VERSION)
        return SHOAL_ENOTSUP;
    if (version != CATALOG_VERSION || h->shards == 0 || h->shards > SHOAL_MAX_SHARDS ||
        (h->shards & (h->shards - 1)))
        return SHOAL_ECORRUPT;
    return 0;
}

/* Rebuilds tenants and namespaces from a MANIFEST body into a new, empty database. */
static int catalog_restore(struct shoal_db *db, const void *body, size_t len)
{
    struct reader r = {body, (const uint8_t *)body + len, false};
    take(&r, 4 + 8 + 8 + 4 + 4);
    uint32_t tenants = (uint32_t)get_le(&r, 4);
    for (uint32_t i = 0; i < tenants && !r.failed; i++) {
        uint32_t id = (uint32_t)get_le(&r, 4);
        uint16_t name_len = (uint16_t)get_le(&r, 2);
        const uint8_t *name = take(&r, name_len);
        shoal_quota q = {get_le(&r, 8), get_le(&r, 8), get_le(&r, 8)};
        if (r.failed || id != i || name_len == 0 || name_len > SHOAL_MAX_NAME)
            return SHOAL_ECORRUPT;
        char text[SHOAL_MAX_NAME + 1];
        memcpy(text, name, name_len);
        text[name_len] = 0;
        int err = i == 0 ? 0 : db_tenant_add(db, text, &q);
        if (err)
            return err == SHOAL_ENOMEM ? err : SHOAL_ECORRUPT;
    }
    uint32_t namespaces = (uint32_t)get_le(&r, 4);
    for (uint32_t i = 0; i < namespaces && !r.failed; i++) {
        uint32_t id = (uint32_t)get_le(&r, 4);
        uint32_t tenant = (uint32_t)get_le(&r, 4);
        shoal_ns_config cfg = {.kind = (shoal_ns_kind)get_le(&r, 1),
                               .placement = (shoal_placement)get_le(&r, 1),
                               .tenant = tenant};
        uint32_t shard = (uint32_t)get_le(&r, 4);
        uint16_t name_len = (uint16_t)get_le(&r, 2);
        const uint8_t *name = take(&r, name_len);
        if (r.failed || name_len == 0 || name_len > SHOAL_MAX_NAME ||
            tenant >= db->tenant_count || shard > db->shard_mask ||
            cfg.kind != SHOAL_KIND_KV ||
            (cfg.placement != SHOAL_PLACE_PINNED && cfg.placement != SHOAL_PLACE_SPREAD))
            return SHOAL_ECORRUPT;
        char text[SHOAL_MAX_NAME + 1];
        memcpy(text, name, name_len);
        text[name_len] = 0;
        int err = db_namespace_restore(db, text, &cfg, id, shard);
        if (err)
            return err == SHOAL_ENOMEM ? err : SHOAL_ECORRUPT;
    }
    return r.failed || r.p != r.end ? SHOAL_ECORRUPT : 0;
}

/* ---- recovery ----------------------------------------------------------------------------- */

/* Returns the array items (count used of *cap elements of size bytes) with room for one
 * more, doubling it from first element; NULL when memory ran out (items is then still the
 * caller's, unchanged). */
static void *room_for_one(void *items, size_t *cap, size_t count, size_t size, size_t first)
{
    if (count < *cap)
        return items;
    size_t grown = *cap ? *cap * 2 : first;
    void *moved = realloc(items, grown * size);
    if (moved)
        *cap = grown;
    return moved;
}

/* Namespaces by id, for the loaders. */
struct id_map {
    struct namespace **by_id;
    uint32_t size;
};

static struct namespace *id_map_find(const struct id_map *m, uint32_t id)
{
    return id < m->size ? m->by_id[id] : NULL;
}

/* R2: installs key's version at seq unless a newer one is there; a tombstone when value is
 * NULL. Several loader threads run at once: the caller holds shard si's write lock.
 * Returns 0, 1 when it installed a tombstone, or a negative error. */
static int recover_apply_locked(struct shard *s, unsigned si, struct namespace *ns,
                                const uint8_t *key, uint32_t klen, const uint8_t *value,
                                uint32_t vlen, uint64_t seq)
{
    int err = 0;
    struct ns_part *part = &ns->parts[si];
    if (!part->tree) {
        part->tree = btree_new(version_key_of);
        if (!part->tree) {
            err = SHOAL_ENOMEM;
            goto out;
        }
        atomic_fetch_add(&s->indexes, 1);
    }
    void **slot;
    bool created;
    if ((err = btree_upsert(part->tree, key, klen, &slot, &created)) != 0)
        goto out;
    struct version *prev = created ? NULL : *slot;
    if (prev && prev->seq > seq)
        goto out;
    uint32_t stored_vlen = value ? vlen : VERSION_TOMBSTONE;
    struct version *v = segment_alloc(s->segments, version_size(klen, stored_vlen));
    if (!v || ot_alloc(s->objects, v, &v->id) != 0) {
        if (v)
            segment_free(s->segments, v, version_size(klen, stored_vlen));
        if (created)
            btree_remove(part->tree, key, klen);
        err = SHOAL_ENOMEM;
        goto out;
    }
    v->seq = seq;
    v->older = NULL;
    v->klen = klen;
    v->vlen = stored_vlen;
    v->ns_slot = ns->slot;
    memcpy(v->data, key, klen);
    if (value && vlen)
        memcpy(v->data + klen, value, vlen);
    *slot = v;
    bool was_live = prev && !version_is_tombstone(prev);
    uint64_t old_bytes = was_live ? (uint64_t)prev->klen + prev->vlen : 0;
    uint64_t new_bytes = value ? (uint64_t)klen + vlen : 0;
    counter_add(&part->keys, (uint64_t)((int64_t)(value != NULL) - (int64_t)was_live));
    counter_add(&part->bytes, new_bytes - old_bytes);
    version_free_chain(s, prev);
    if (!value)
        return 1; /* a tombstone now stands: the sweep has work */
out:
    return err;
}


/* After every stream is replayed: remove the tombstones (R2), if any was replayed, and
 * publish memory use. */
static int recover_sweep(struct shoal_db *db, bool tombstones)
{
    for (uint32_t slot = 0; tombstones && slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (!ns)
            continue;
        for (unsigned i = 0; i <= db->shard_mask; i++) {
            struct btree *tree = ns->parts[i].tree;
            struct shard *s = atomic_load(&db->shards[i]);
            if (!tree)
                continue;
            size_t count = 0, cap = 0;
            struct version **dead = NULL;
            struct btree_cursor c;
            for (btree_seek_ge(tree, &c, NULL, 0); btree_cursor_valid(&c); btree_next(&c)) {
                struct version *v = btree_cursor_value(&c);
                if (!version_is_tombstone(v))
                    continue;
                struct version **grown = room_for_one(dead, &cap, count, sizeof *dead, 64);
                if (!grown) {
                    free(dead);
                    return SHOAL_ENOMEM;
                }
                dead = grown;
                dead[count++] = v;
            }
            for (size_t k = 0; k < count; k++) {
                btree_remove(tree, version_key(dead[k]), dead[k]->klen);
                version_free_chain(s, dead[k]);
            }
            free(dead);
        }
    }
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load(&db->shards[i]);
        if (s)
            shard_refresh_memory(s);
    }
    /* Tenants other than 0 keep central usage (db.c D2): rebuild it. */
    for (uint32_t t = 1; t < db->tenant_count; t++) {
        int64_t keys = 0, bytes = 0;
        for (uint32_t slot = 0; slot < db->ns_high; slot++) {
            struct namespace *ns = db->namespaces[slot];
            if (!ns || ns->tenant != db->tenants[t])
                continue;
            for (unsigned i = 0; i <= db->shard_mask; i++) {
                keys += (int64_t)counter_get(&ns->parts[i].keys);
                bytes += (int64_t)counter_get(&ns->parts[i].bytes);
            }
        }
        atomic_store(&db->tenants[t]->keys, keys);
        atomic_store(&db->tenants[t]->bytes, bytes);
    }
    return 0;
}

/* Runs fn(ctx, i) for i in [0, count) on up to `threads` threads; returns the first
 * error. */
struct parallel {
    int (*fn)(void *ctx, unsigned i);
    void *ctx;
    unsigned count;
    _Atomic unsigned next;
    _Atomic int error;
};

static void *parallel_worker(void *arg)
{
    struct parallel *p = arg;
    pthread_setname_np(pthread_self(), "shoal-worker");
    for (;;) {
        unsigned i = atomic_fetch_add(&p->next, 1);
        if (i >= p->count || atomic_load(&p->error))
            break;
        int err = p->fn(p->ctx, i);
        int none = 0;
        if (err)
            atomic_compare_exchange_strong(&p->error, &none, err);
    }
    return NULL;
}

/* threads: SHOAL_OPT_RECOVERY_THREADS at open, when nothing else runs; half the cores for a
 * checkpoint, which leaves the other half to the writers it runs beside. */
static int parallel_run(unsigned count, unsigned threads, int (*fn)(void *ctx, unsigned i),
                        void *ctx)
{
    struct parallel p = {.fn = fn, .ctx = ctx, .count = count};
    if (threads == 0)
        threads = 1;
    if (threads > count)
        threads = count;
    if (threads > SHOAL_MAX_SHARDS)
        threads = SHOAL_MAX_SHARDS;
    pthread_t ids[SHOAL_MAX_SHARDS];
    unsigned started = 0;
    for (; started + 1 < threads; started++)
        if (pthread_create(&ids[started], NULL, parallel_worker, &p) != 0)
            break;
    parallel_worker(&p); /* the calling thread works too */
    for (unsigned i = 0; i < started; i++)
        pthread_join(ids[i], NULL);
    return atomic_load(&p.error);
}

struct loader {
    struct shoal_db *db;
    struct durable *d;
    struct id_map ids;
    uint64_t checkpoint_seq, checkpoint_shards;
    bool salvage;
    _Atomic bool tombstones; /* a delete was replayed: recover_sweep has work */
    _Atomic uint64_t records, keys, torn_bytes, salvaged_bytes, max_seq;
    _Atomic uint64_t checkpoint_bytes; /* entry bytes of the checkpoint loaded */
    _Atomic uint32_t torn_streams;
    pthread_mutex_t detail_lock;
    char detail[4200];
};

static void loader_detail(struct loader *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void loader_detail(struct loader *l, const char *fmt, ...)
{
    pthread_mutex_lock(&l->detail_lock);
    if (!l->detail[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->detail, sizeof l->detail, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&l->detail_lock);
}

/* Raises the largest seq seen to seq. */
static void loader_note_seq(struct loader *l, uint64_t seq)
{
    uint64_t max = atomic_load(&l->max_seq);
    while (seq > max && !atomic_compare_exchange_weak(&l->max_seq, &max, seq))
        ;
}

static long checkpoint_entries_locked(struct loader *l, struct shard *s, unsigned shard,
                                      const uint8_t *buf, size_t len);

/* Applies the entries in buf[0..len) of shard's file, under that shard's lock taken once
 * (every entry of the file belongs to it); returns the bytes consumed (a partial entry at
 * the end stays for the next block) or a negative error. */
static long checkpoint_entries(struct loader *l, unsigned shard, const uint8_t *buf, size_t len)
{
    struct shard *s = db_shard(l->db, shard);
    if (!s)
        return SHOAL_ENOMEM;
    shard_write_lock(s);
    long used = checkpoint_entries_locked(l, s, shard, buf, len);
    shard_write_unlock(s);
    return used;
}

static long checkpoint_entries_locked(struct loader *l, struct shard *s, unsigned shard,
                                      const uint8_t *buf, size_t len)
{
    size_t used = 0;
    while (len - used >= 12) {
        struct reader r = {buf + used, buf + len, false};
        uint32_t ns_id = (uint32_t)get_le(&r, 4);
        uint32_t klen = (uint32_t)get_le(&r, 4);
        uint32_t vlen = (uint32_t)get_le(&r, 4);
        if (klen == 0 || klen > SHOAL_MAX_KEY || vlen > SHOAL_MAX_VALUE)
            return SHOAL_ECORRUPT;
        if (len - used - 12 < (size_t)klen + vlen)
            break;
        const uint8_t *key = buf + used + 12;
        struct namespace *ns = id_map_find(&l->ids, ns_id);
        if (ns) {
            if (ns_route(ns, key, klen) != shard)
                return SHOAL_ECORRUPT; /* an entry in another shard's file */
            int err = recover_apply_locked(s, shard, ns, key, klen, key + klen, vlen,
                                           l->checkpoint_seq);
            if (err < 0)
                return err;
            atomic_fetch_add_explicit(&l->keys, 1, memory_order_relaxed);
        }
        used += 12 + (size_t)klen + vlen;
    }
    return (long)used;
}

static int load_checkpoint_file(void *ctx, unsigned shard)
{
    struct loader *l = ctx;
    if (!(l->checkpoint_shards & (1ull << shard)))
        return 0;
    char path[4200];
    ckpt_path(path, sizeof path, l->d->dir, l->checkpoint_seq, shard);
    struct ckpt_reader *r;
    uint64_t seq;
    int err = ckpt_reader_open(l->d->io, path, &r, NULL, &seq);
    if (err) {
        loader_detail(l, "%s: %s", path, shoal_strerror(err));
        return err == SHOAL_ENOTFOUND ? SHOAL_ECORRUPT : err;
    }
    if (seq != l->checkpoint_seq) {
        ckpt_reader_close(r);
        loader_detail(l, "%s: header names seq %llu", path, (unsigned long long)seq);
        return SHOAL_ECORRUPT;
    }
    struct writer carry = {0};
    const void *data;
    size_t len;
    while ((err = ckpt_reader_next(r, &data, &len)) == 1) {
        const uint8_t *buf = data;
        size_t buf_len = len;
        if (carry.len) {
            put_bytes(&carry, data, len);
            buf = carry.data;
            buf_len = carry.len;
        }
        long used = carry.failed ? SHOAL_ENOMEM : checkpoint_entries(l, shard, buf, buf_len);
        if (used > 0)
            atomic_fetch_add_explicit(&l->checkpoint_bytes, (uint64_t)used, memory_order_relaxed);
        if (used < 0) {
            err = (int)used;
            break;
        }
        size_t rest = buf_len - (size_t)used;
        if (carry.len) {
            memmove(carry.data, carry.data + used, rest);
            carry.len = rest;
        } else if (rest) {
            put_bytes(&carry, buf + used, rest);
        }
    }
    if (err == 0 && carry.len)
        err = SHOAL_ECORRUPT; /* a partial entry at the verified end */
    if (err == SHOAL_ECORRUPT)
        loader_detail(l, "%s: damaged at offset %llu", path,
                      (unsigned long long)ckpt_reader_offset(r));
    free(carry.data);
    ckpt_reader_close(r);
    return err < 0 ? err : 0;
}

/* A record's operations, gathered so that a batch takes each shard's lock once. */
struct replay_record {
    struct loader *l;
    struct replay_op {
        struct log_op op;
        struct namespace *ns;
        unsigned shard;
    } *ops;
    size_t count, cap;
    uint64_t shards; /* mask of the shards the operations touch */
};

static int replay_gather(void *ctx, const struct log_op *op)
{
    struct replay_record *rr = ctx;
    struct namespace *ns = id_map_find(&rr->l->ids, op->ns_id);
    if (!ns)
        return 0; /* a namespace dropped since */
    struct replay_op *ops = room_for_one(rr->ops, &rr->cap, rr->count, sizeof *ops, 64);
    if (!ops)
        return SHOAL_ENOMEM;
    rr->ops = ops;
    unsigned si = ns_route(ns, op->key, op->klen);
    rr->ops[rr->count++] = (struct replay_op){*op, ns, si};
    rr->shards |= 1ull << si;
    return 0;
}

static int replay_apply(struct replay_record *rr, uint64_t seq)
{
    for (uint64_t m = rr->shards; m; m &= m - 1) {
        unsigned si = (unsigned)__builtin_ctzll(m);
        struct shard *s = db_shard(rr->l->db, si);
        if (!s)
            return SHOAL_ENOMEM;
        shard_write_lock(s);
        int err = 0;
        for (size_t i = 0; i < rr->count && err >= 0; i++) {
            const struct replay_op *o = &rr->ops[i];
            if (o->shard != si)
                continue;
            err = recover_apply_locked(s, si, o->ns, o->op.key, o->op.klen,
                                       o->op.type == WRITE_PUT ? o->op.value : NULL,
                                       o->op.vlen, seq);
            if (err == 1)
                atomic_store_explicit(&rr->l->tombstones, true, memory_order_relaxed);
        }
        shard_write_unlock(s);
        if (err < 0)
            return err;
    }
    return 0;
}

static int replay_record(void *ctx, uint8_t type, uint64_t seq, const void *payload,
                         size_t len)
{
    struct replay_record *rr = ctx;
    struct loader *l = rr->l;
    if (type > LOG_BATCH)
        return SHOAL_ENOTSUP; /* a record type of a newer version */
    rr->count = 0;
    rr->shards = 0;
    int err = log_decode(type, payload, len, replay_gather, rr);
    if (!err)
        err = replay_apply(rr, seq);
    if (err)
        return err;
    atomic_fetch_add_explicit(&l->records, 1, memory_order_relaxed);
    loader_note_seq(l, seq);
    return 0;
}

/* Replays one stream into fn, and files what the log reported (torn tail, salvage, damage). */
static int replay_stream_into(struct loader *l, unsigned stream,
                              int (*fn)(void *ctx, uint8_t type, uint64_t seq, const void *payload,
                                        size_t len),
                              void *fn_ctx)
{
    struct wal_replay_report report;
    memset(&report, 0, sizeof report);
    /* The MANIFEST's checkpoint seq both filters the records (the checkpoint holds those
     * up to it) and lets the log tell a segment the checkpoint deleted from a lost one. */
    int err = wal_replay_from_checkpoint(l->d->dir, stream, l->checkpoint_seq, l->checkpoint_seq,
                                         l->d->io, l->salvage, false, fn, fn_ctx, &report);
    loader_note_seq(l, report.last_seq);
    if (report.torn_tail) {
        atomic_fetch_add(&l->torn_streams, 1);
        atomic_fetch_add(&l->torn_bytes, report.bytes_dropped);
    }
    if (report.salvaged)
        atomic_fetch_add(&l->salvaged_bytes, report.bytes_dropped);
    if (err == SHOAL_ECORRUPT && report.missing_base != 0)
        loader_detail(l,
                      "%s: damaged at offset %llu: log segment %020llu.wal of stream %u "
                      "is missing, and checkpoint %llu does not cover it",
                      report.file, (unsigned long long)report.offset,
                      (unsigned long long)report.missing_base, stream,
                      (unsigned long long)l->checkpoint_seq);
    else if (err == SHOAL_ECORRUPT)
        loader_detail(l, "%s: damaged at offset %llu", report.file,
                      (unsigned long long)report.offset);
    else if (err)
        loader_detail(l, "log stream %u: %s", stream, shoal_strerror(err));
    return err;
}

/* One thread per stream: each record is applied by the thread that read it. */
static int replay_stream(void *ctx, unsigned stream)
{
    struct replay_record rr = {.l = ctx};
    int err = replay_stream_into(ctx, stream, replay_record, &rr);
    free(rr.ops);
    return err;
}

/* ---- one stream on several cores ----------------------------------------------------------
 *
 * With fewer streams than cores, a thread per stream would leave cores idle while the log
 * is replayed. So each stream is replayed by a pipeline instead: the calling thread reads
 * the stream, copies each record's payload into a block (the log reader reuses its buffer),
 * decodes it there and files every operation under the applier that owns its shard
 * (shard % appliers); applier threads, one per core, apply their operations block after
 * block. The reader fills a block while the appliers work on earlier ones, up to
 * SPREAD_BLOCKS in flight.
 *
 * Why this is R2: each shard has one applier, which applies the shard's operations in log
 * order (blocks in order, operations in order within a block), so two versions of one key
 * meet recover_apply_locked in the order the single-threaded replay would give them.
 */

#define SPREAD_BLOCK_BYTES (4u << 20)
#define SPREAD_BLOCKS 4

struct spread_item {
    struct namespace *ns;
    const uint8_t *key, *value; /* into the block's copy; value NULL for a delete */
    uint32_t klen, vlen;
    uint64_t seq;
    unsigned shard;
};

/* One applier's operations in a block, in log order. */
struct spread_list {
    struct spread_item *items;
    size_t count, cap;
    uint64_t shards; /* mask of the shards the items touch */
};

struct spread_block {
    uint8_t *bytes;
    size_t used, cap;
    struct spread_list lists[SHOAL_MAX_SHARDS]; /* by applier */
};

struct spread {
    struct loader *l;
    unsigned appliers;
    struct spread_block blocks[SPREAD_BLOCKS];
    struct spread_block *current; /* the block the reader fills, or NULL */
    uint64_t current_seq;         /* the seq of the record being filed */
    pthread_mutex_t lock;
    pthread_cond_t filled, drained;
    uint64_t published;                 /* blocks handed to the appliers, under lock */
    uint64_t applied[SHOAL_MAX_SHARDS]; /* blocks each applier finished, under lock */
    bool closing;                       /* no block will follow: appliers leave when done */
    int error;                          /* the first error of an applier, under lock */
};

struct spread_applier {
    struct spread *sp;
    unsigned index;
    pthread_t thread;
};

/* Applies one applier's items of a block, holding the locks of the shards they touch
 * (ascending, as a batch takes them) for the whole block: nobody else writes during
 * recovery, so the locks are only the invariant recover_apply_locked states. */
static int spread_apply(struct loader *l, const struct spread_list *list)
{
    struct shard *shards[SHOAL_MAX_SHARDS];
    for (uint64_t m = list->shards; m; m &= m - 1) {
        unsigned si = (unsigned)__builtin_ctzll(m);
        if (!(shards[si] = db_shard(l->db, si))) {
            for (uint64_t held = list->shards & (((uint64_t)1 << si) - 1); held; held &= held - 1)
                shard_write_unlock(shards[__builtin_ctzll(held)]);
            return SHOAL_ENOMEM;
        }
        shard_write_lock(shards[si]);
    }
    int err = 0;
    for (size_t i = 0; i < list->count && err >= 0; i++) {
        const struct spread_item *it = &list->items[i];
        err = recover_apply_locked(shards[it->shard], it->shard, it->ns, it->key, it->klen,
                                   it->value, it->vlen, it->seq);
        if (err == 1)
            atomic_store_explicit(&l->tombstones, true, memory_order_relaxed);
    }
    for (uint64_t m = list->shards; m; m &= m - 1)
        shard_write_unlock(shards[__builtin_ctzll(m)]);
    return err < 0 ? err : 0;
}

static void *spread_applier_main(void *arg)
{
    struct spread_applier *a = arg;
    struct spread *sp = a->sp;
    pthread_setname_np(pthread_self(), "shoal-replay");
    for (uint64_t k = 0;; k++) {
        pthread_mutex_lock(&sp->lock);
        while (sp->published <= k && !sp->closing && !sp->error)
            pthread_cond_wait(&sp->filled, &sp->lock);
        bool stop = sp->published <= k || sp->error;
        pthread_mutex_unlock(&sp->lock);
        if (stop)
            break;
        int err = spread_apply(sp->l, &sp->blocks[k % SPREAD_BLOCKS].lists[a->index]);
        pthread_mutex_lock(&sp->lock);
        if (err && !sp->error)
            sp->error = err;
        sp->applied[a->index] = k + 1;
        pthread_cond_broadcast(&sp->drained);
        pthread_mutex_unlock(&sp->lock);
        if (err)
            break;
    }
    return NULL;
}

/* Hands the reader's block to the appliers. */
static void spread_publish(struct spread *sp)
{
    if (!sp->current)
        return;
    pthread_mutex_lock(&sp->lock);
    sp->published++;
    pthread_cond_broadcast(&sp->filled);
    pthread_mutex_unlock(&sp->lock);
    sp->current = NULL;
}

/* Gives the reader the next block of the ring, with room for need bytes, once every
 * applier is done with it. A record larger than a block (values go up to 512 MiB) waits
 * until every block is done and frees the other oversized ones, so that at most one copy
 * of such a record exists beside the log reader's. Returns 0 or the first applier's
 * error. */
static int spread_take(struct spread *sp, size_t need)
{
    bool huge = need > SPREAD_BLOCK_BYTES;
    pthread_mutex_lock(&sp->lock);
    uint64_t next = sp->published;
    for (;;) {
        uint64_t oldest = UINT64_MAX;
        for (unsigned a = 0; a < sp->appliers; a++)
            oldest = sp->applied[a] < oldest ? sp->applied[a] : oldest;
        uint64_t reuse = huge ? next : (next < SPREAD_BLOCKS ? 0 : next - SPREAD_BLOCKS + 1);
        if (sp->error || oldest >= reuse)
            break;
        pthread_cond_wait(&sp->drained, &sp->lock);
    }
    int err = sp->error;
    pthread_mutex_unlock(&sp->lock);
    if (err)
        return err;
    struct spread_block *b = &sp->blocks[next % SPREAD_BLOCKS];
    for (unsigned i = 0; huge && i < SPREAD_BLOCKS; i++) {
        struct spread_block *other = &sp->blocks[i];
        if (other != b && other->cap > SPREAD_BLOCK_BYTES) {
            free(other->bytes);
            other->bytes = NULL;
            other->cap = 0;
        }
    }
    size_t want = huge ? need : SPREAD_BLOCK_BYTES;
    if (b->cap < want || b->cap > want * 4) { /* a huge record's block shrinks back */
        free(b->bytes);
        b->cap = 0;
        if (!(b->bytes = malloc(want)))
            return SHOAL_ENOMEM;
        b->cap = want;
    }
    b->used = 0;
    for (unsigned a = 0; a < sp->appliers; a++) {
        b->lists[a].count = 0;
        b->lists[a].shards = 0;
    }
    sp->current = b;
    return 0;
}

static int spread_gather(void *ctx, const struct log_op *op)
{
    struct spread *sp = ctx;
    struct namespace *ns = id_map_find(&sp->l->ids, op->ns_id);
    if (!ns)
        return 0; /* a namespace dropped since */
    unsigned si = ns_route(ns, op->key, op->klen);
    struct spread_list *list = &sp->current->lists[si % sp->appliers];
    struct spread_item *items =
        room_for_one(list->items, &list->cap, list->count, sizeof *items, 1024);
    if (!items)
        return SHOAL_ENOMEM;
    list->items = items;
    list->items[list->count++] =
        (struct spread_item){.ns = ns,
                             .key = op->key,
                             .klen = op->klen,
                             .value = op->type == WRITE_PUT ? op->value : NULL,
                             .vlen = op->vlen,
                             .seq = sp->current_seq,
                             .shard = si};
    list->shards |= 1ull << si;
    return 0;
}

/* The reader's callback: copies the record into the current block and files its
 * operations. */
static int spread_record(void *ctx, uint8_t type, uint64_t seq, const void *payload, size_t len)
{
    struct spread *sp = ctx;
    if (type > LOG_BATCH)
        return SHOAL_ENOTSUP; /* a record type of a newer version */
    if (sp->current && sp->current->cap - sp->current->used < len)
        spread_publish(sp);
    int err = sp->current ? 0 : spread_take(sp, len);
    if (err)
        return err;
    struct spread_block *b = sp->current;
    uint8_t *copy = b->bytes + b->used;
    memcpy(copy, payload, len);
    b->used += len;
    sp->current_seq = seq;
    if ((err = log_decode(type, copy, len, spread_gather, sp)) != 0)
        return err;
    atomic_fetch_add_explicit(&sp->l->records, 1, memory_order_relaxed);
    loader_note_seq(sp->l, seq);
    return 0;
}

/* Replays every stream, one after another, each through the pipeline above, with
 * `appliers` applier threads. */
static int replay_spread(struct loader *l, unsigned streams, unsigned appliers)
{
    struct spread *sp = calloc(1, sizeof *sp);
    struct spread_applier *threads = calloc(appliers, sizeof *threads);
    if (!sp || !threads) {
        free(sp);
        free(threads);
        return SHOAL_ENOMEM;
    }
    sp->l = l;
    pthread_mutex_init(&sp->lock, NULL);
    pthread_cond_init(&sp->filled, NULL);
    pthread_cond_init(&sp->drained, NULL);
    unsigned started = 0;
    for (; started < appliers; started++) {
        threads[started] = (struct spread_applier){.sp = sp, .index = started};
        if (pthread_create(&threads[started].thread, NULL, spread_applier_main,
                           &threads[started]) != 0)
            break;
    }
    /* Filing goes by the appliers that run: one at the least. */
    sp->appliers = started;
    int err = started ? 0 : SHOAL_ENOMEM;
    for (unsigned stream = 0; !err && stream < streams; stream++) {
        err = replay_stream_into(l, stream, spread_record, sp);
        if (!err)
            spread_publish(sp);
    }
    pthread_mutex_lock(&sp->lock);
    sp->closing = true;
    pthread_cond_broadcast(&sp->filled);
    pthread_mutex_unlock(&sp->lock);
    for (unsigned a = 0; a < started; a++)
        pthread_join(threads[a].thread, NULL);
    if (!err)
        err = sp->error;
    for (unsigned b = 0; b < SPREAD_BLOCKS; b++) {
        free(sp->blocks[b].bytes);
        for (unsigned a = 0; a < SHOAL_MAX_SHARDS; a++)
            free(sp->blocks[b].lists[a].items);
    }
    pthread_cond_destroy(&sp->drained);
    pthread_cond_destroy(&sp->filled);
    pthread_mutex_destroy(&sp->lock);
    free(threads);
    free(sp);
    return err;
}

/* Streams replay a thread each when there are at least as many as recovery threads; fewer
 * streams go through the pipeline, so that every thread applies. */
static int replay_streams(struct loader *l, unsigned streams)
{
    unsigned threads = (unsigned)l->db->config.recovery_threads;
    unsigned shards = l->db->shard_mask + 1;
    unsigned appliers = threads < shards ? threads : shards;
    if (streams >= threads || appliers < 2)
        return parallel_run(streams, threads, replay_stream, l);
    return replay_spread(l, streams, appliers);
}

static int recover(struct shoal_db *db, struct durable *d, const struct catalog_head *head)
{
    struct loader l = {.db = db, .d = d, .checkpoint_seq = head->checkpoint_seq,
                       .checkpoint_shards = head->checkpoint_shards,
                       .salvage = db->config.salvage != 0};
    pthread_mutex_init(&l.detail_lock, NULL);
    l.ids.size = db->next_ns_id + 1;
    l.ids.by_id = calloc(l.ids.size, sizeof *l.ids.by_id);
    int err = l.ids.by_id ? 0 : SHOAL_ENOMEM;
    for (uint32_t slot = 0; !err && slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (ns && ns->id < l.ids.size)
            l.ids.by_id[ns->id] = ns;
    }
    if (!err && head->checkpoint_seq)
        err = parallel_run(db->shard_mask + 1, (unsigned)db->config.recovery_threads,
                           load_checkpoint_file, &l);

    unsigned streams = 0;
    if (!err)
        err = wal_list_streams(d->dir, d->io, &streams);
    if (!err && streams)
        err = replay_streams(&l, streams);
    if (!err)
        err = recover_sweep(db, atomic_load(&l.tombstones));
    if (l.detail[0])
        durable_set_detail("%s", l.detail);
    uint64_t seq = atomic_load(&l.max_seq);
    atomic_store(&db->seq, seq > head->checkpoint_seq ? seq : head->checkpoint_seq);
    d->checkpoint_seq = head->checkpoint_seq;
    d->checkpoint_shards = head->checkpoint_shards;
    atomic_store(&d->checkpoint_bytes, atomic_load(&l.checkpoint_bytes));
    d->recovered_records = atomic_load(&l.records);
    d->recovered_keys = atomic_load(&l.keys);
    d->torn_streams = atomic_load(&l.torn_streams);
    d->torn_bytes = atomic_load(&l.torn_bytes);
    d->salvaged_bytes = atomic_load(&l.salvaged_bytes);
    free(l.ids.by_id);
    pthread_mutex_destroy(&l.detail_lock);
    return err;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

struct checkpoint_job {
    struct shoal_db *db;
    struct durable *d;
    shoal_snapshot *snap;
    uint64_t seq;
    struct namespace **namespaces;
    uint32_t ns_count;
    _Atomic uint64_t shards_written;
    _Atomic uint64_t bytes_written; /* entry bytes, all shards */
};

static int checkpoint_shard(void *ctx, unsigned shard)
{
    struct checkpoint_job *job = ctx;
    struct shard *s = atomic_load(&job->db->shards[shard]);
    if (!s)
        return 0;
    /* Indexes are created under the shard lock: look for them under it. */
    struct thread_state *self = db_thread(job->db);
    bool any = false;
    shard_read_lock(s, self);
    for (uint32_t k = 0; k < job->ns_count && !any; k++)
        any = job->namespaces[k]->parts[shard].tree != NULL;
    shard_read_unlock(s, self);
    if (!any)
        return 0;
    char path[4200];
    ckpt_path(path, sizeof path, job->d->dir, job->seq, shard);
    struct ckpt_writer *w;
    int err = ckpt_writer_open(job->d->io, path, shard, job->seq, &w);
    if (err)
        return err;
    struct writer entry = {0};
    for (uint32_t k = 0; k < job->ns_count && !err; k++) {
        struct namespace *ns = job->namespaces[k];
        shoal_iter_options o = {.snap = job->snap};
        shoal_iter *it;
        if (iter_create(job->db, ns, (int)shard, &o, &it) != 0)
            continue; /* dropped meanwhile: the next MANIFEST does not name it */
        iter_set_chunk_keys(it, CHECKPOINT_CHUNK_KEYS);
        int more;
        while (!err && (more = shoal_iter_next(it)) == 1) {
            size_t klen, vlen;
            const void *key = shoal_iter_key(it, &klen);
            const void *value = shoal_iter_value(it, &vlen);
            entry.len = 0;
            put_u32(&entry, ns->id);
            put_u32(&entry, (uint32_t)klen);
            put_u32(&entry, (uint32_t)vlen);
            put_bytes(&entry, key, klen);
            put_bytes(&entry, value, vlen);
            err = entry.failed ? SHOAL_ENOMEM : ckpt_writer_append(w, entry.data, entry.len);
            if (!err)
                atomic_fetch_add_explicit(&job->bytes_written, entry.len, memory_order_relaxed);
        }
        shoal_iter_free(it);
    }
    free(entry.data);
    if (err) {
        ckpt_writer_abort(w);
        return err;
    }
    err = ckpt_writer_finish(w);
    if (!err)
        atomic_fetch_or(&job->shards_written, 1ull << shard);
    return err;
}

static int remove_old_checkpoints(struct durable *d, uint64_t keep)
{
    uint64_t *seqs;
    size_t count;
    int err = ckpt_list(d->io, d->dir, &seqs, &count);
    for (size_t i = 0; !err && i < count; i++)
        if (seqs[i] != keep)
            err = ckpt_remove(d->io, d->dir, seqs[i]);
    free(seqs);
    return err;
}

static int checkpoint_run(struct shoal_db *db, struct durable *d)
{
    int err = durable_error(d);
    if (err)
        return SHOAL_EREADONLY;
    struct checkpoint_job job = {.db = db, .d = d};
    if ((err = shoal_snapshot_take(db, &job.snap)) != 0)
        return err;
    job.seq = shoal_snapshot_seq(job.snap);
    pthread_mutex_lock(&db->catalog_lock);
    uint64_t current = d->checkpoint_seq;
    job.namespaces = malloc((db->ns_high + 1) * sizeof *job.namespaces);
    for (uint32_t slot = 0; job.namespaces && slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (ns && !atomic_load(&ns->dropped)) {
            atomic_fetch_add(&ns->refs, 1);
            job.namespaces[job.ns_count++] = ns;
        }
    }
    pthread_mutex_unlock(&db->catalog_lock);
    if (!job.namespaces) {
        shoal_snapshot_release(job.snap);
        return SHOAL_ENOMEM;
    }
    if (job.seq == current && current != 0)
        goto done; /* nothing new since the current checkpoint */
    /* Later records go to new segments, so the ones before can be deleted below (R3). */
    if ((err = wal_rotate(d->wal, job.seq + 1)) != 0 ||
        (err = ckpt_dir_create(d->io, d->dir, job.seq)) != 0)
        goto done;
    /* Half the cores, and short chunks under each shard lock: a checkpoint must not
     * double the writers' tail latency. */
    err = parallel_run(db->shard_mask + 1, online_cores() / 2, checkpoint_shard, &job);
    if (err) {
        ckpt_remove(d->io, d->dir, job.seq);
        goto done;
    }
    /* The new MANIFEST names the checkpoint; it is written outside the catalog lock
     * (internal.h C1), so INFO and the catalog's other readers do not wait for it. */
    pthread_mutex_lock(&db->catalog_change);
    pthread_mutex_lock(&db->catalog_lock);
    uint64_t shards = atomic_load(&job.shards_written);
    struct writer w = {0};
    catalog_encode(db, job.seq, shards, &w);
    pthread_mutex_unlock(&db->catalog_lock);
    err = catalog_store(d, &w);
    pthread_mutex_lock(&db->catalog_lock);
    if (!err) {
        d->checkpoint_seq = job.seq;
        d->checkpoint_shards = shards;
    }
    pthread_mutex_unlock(&db->catalog_lock);
    pthread_mutex_unlock(&db->catalog_change);
    if (err) {
        ckpt_remove(d->io, d->dir, job.seq);
        goto done;
    }
    /* The new checkpoint is named: what it replaces may go. Failures to delete are not
     * errors of this one: an old checkpoint file is deleted by the next checkpoint; a log
     * segment that could not be unlinked stays on disk until a later open lists it again,
     * and the gap before it is one that recovery accepts (wal.c invariant 8h;
     * test_durable's test_failed_segment_unlink). */
    wal_delete_before(d->wal, job.seq);
    remove_old_checkpoints(d, job.seq);
    atomic_fetch_add(&d->checkpoints, 1);
    atomic_store(&d->checkpoint_bytes, atomic_load(&job.bytes_written));
    atomic_store(&d->checkpoint_unix, (int64_t)time(NULL));
done:
    for (uint32_t k = 0; k < job.ns_count; k++)
        namespace_release(job.namespaces[k]);
    free(job.namespaces);
    shoal_snapshot_release(job.snap);
    atomic_store(&d->last_checkpoint_error, err);
    return err;
}

SHOAL_API int shoal_checkpoint(shoal_db *db)
{
    if (!db)
        return SHOAL_EINVAL;
    struct durable *d = durable_of(db);
    if (!d)
        return SHOAL_ENOTSUP;
    durable_set_detail("%s", "");
    pthread_mutex_lock(&d->checkpoint_lock);
    int err = checkpoint_run(db, d);
    pthread_mutex_unlock(&d->checkpoint_lock);
    return err;
}

/* The log bytes that start the next background checkpoint: checkpoint_log_bytes, or as
 * many as the current checkpoint holds when that is more. A checkpoint rewrites the whole
 * dataset, so with a fixed threshold a 10 GB dataset was rewritten for every 64 MiB of
 * writes (160 bytes to disk per byte written); waiting for a log as large as the last
 * checkpoint keeps that near 2, as Redis's auto-aof-rewrite-percentage 100 does, at the
 * price of replaying up to one dataset's worth of log at the next open. */
static uint64_t checkpoint_due_bytes(struct shoal_db *db, struct durable *d)
{
    uint64_t floor = db->config.checkpoint_log_bytes;
    uint64_t current = atomic_load_explicit(&d->checkpoint_bytes, memory_order_relaxed);
    return current > floor ? current : floor;
}

/* The background checkpointer: a checkpoint whenever the log passes checkpoint_due_bytes. */
static void *checkpointer_main(void *arg)
{
    struct shoal_db *db = arg;
    struct durable *d = durable_of(db);
    pthread_setname_np(pthread_self(), "shoal-ckpt");
    pthread_mutex_lock(&d->wake_lock);
    while (!d->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&d->wake, &d->wake_lock, &until);
        if (d->stopping || durable_error(d) || wal_bytes(d->wal) < checkpoint_due_bytes(db, d))
            continue;
        pthread_mutex_unlock(&d->wake_lock);
        shoal_checkpoint(db);
        pthread_mutex_lock(&d->wake_lock);
    }
    pthread_mutex_unlock(&d->wake_lock);
    return NULL;
}

static int checkpointer_start(struct durable *d, struct shoal_db *db)
{
    if (pthread_create(&d->checkpointer, NULL, checkpointer_main, db) != 0)
        return SHOAL_ENOMEM;
    d->checkpointer_started = true;
    return 0;
}

static void checkpointer_stop(struct durable *d)
{
    if (!d->checkpointer_started)
        return;
    pthread_mutex_lock(&d->wake_lock);
    d->stopping = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->wake_lock);
    pthread_join(d->checkpointer, NULL);
    d->checkpointer_started = false;
}

/* ---- open, close, persist ----------------------------------------------------------------- */

static struct durable *durable_new(const char *dir, const struct shoal_io *io)
{
    struct durable *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    d->io = io ? io : io_posix();
    d->lock_fd = -1;
    pthread_mutex_init(&d->checkpoint_lock, NULL);
    pthread_mutex_init(&d->wake_lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    return d;
}

static void durable_free(struct durable *d)
{
    if (!d)
        return;
    dir_unlock(d->io, d->lock_fd);
    pthread_mutex_destroy(&d->checkpoint_lock);
    pthread_mutex_destroy(&d->wake_lock);
    pthread_cond_destroy(&d->wake);
    free(d);
}

/* Creates dir if missing and locks it. */
static int durable_lock(struct durable *d)
{
    if (strlen(d->dir) + 64 >= sizeof d->dir)
        return SHOAL_EINVAL;
    int err = io_ensure_dir(d->io, d->dir);
    if (!err)
        err = dir_lock(d->io, d->dir, &d->lock_fd);
    return err;
}

static int note_wal_file(void *ctx, const char *name)
{
    size_t len = strlen(name);
    if (len > 4 && strcmp(name + len - 4, ".wal") == 0)
        *(bool *)ctx = true;
    return 0;
}

/* 1 if dir holds log segments or checkpoints, 0 if not, or a negative error. */
static int durable_has_files(struct durable *d)
{
    uint64_t *seqs = NULL;
    size_t count = 0;
    int err = ckpt_list(d->io, d->dir, &seqs, &count);
    free(seqs);
    if (err)
        return err;
    if (count)
        return 1;
    unsigned streams = 0;
    if ((err = wal_list_streams(d->dir, d->io, &streams)) != 0)
        return err;
    bool found = false;
    for (unsigned i = 0; i < streams && !found; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/log/%u", d->dir, i);
        d->io->list_dir(d->io, path, note_wal_file, &found);
    }
    return found;
}

static int wal_start(struct durable *d, struct shoal_db *db)
{
    d->streams = (unsigned)db->config.log_streams;
    struct wal_options o = {.dir = d->dir,
                            .streams = d->streams,
                            .segment_bytes = db->config.log_segment_bytes,
                            .sync = (int)db->config.sync,
                            .sync_period_ms = (uint32_t)db->config.sync_period_ms,
                            .sync_window_us = (uint32_t)db->config.sync_window_us,
                            .io = d->io,
                            .next_seq_hint = atomic_load(&db->seq) + 1};
    return wal_open(&o, &d->wal);
}

int durable_open(const char *dir, const shoal_options *opts, const struct shoal_io *io,
                 shoal_db **out)
{
    *out = NULL;
    durable_set_detail("%s", "");
    struct db_config config;
    db_config_from(opts, &config);
    struct durable *d = durable_new(dir, io);
    if (!d)
        return SHOAL_ENOMEM;
    int err = durable_lock(d);
    if (err) {
        durable_free(d);
        return err;
    }
    void *body = NULL;
    size_t len = 0;
    struct catalog_head head = {0};
    err = manifest_read(d->io, d->dir, &body, &len);
    bool fresh = err == SHOAL_ENOTFOUND;
    if (fresh && (err = durable_has_files(d)) == 0) {
        /* A new database. */
    } else if (fresh && err > 0) {
        durable_set_detail("%s/MANIFEST: missing, but log or checkpoint files are present",
                           d->dir);
        err = SHOAL_ECORRUPT;
    }
    else if (!err && (err = catalog_head(body, len, &head)) == 0)
        config.shards = head.shards;
    if (err == SHOAL_ECORRUPT)
        durable_set_detail("%s/MANIFEST: damaged", d->dir);
    struct shoal_db *db = NULL;
    if (!err)
        err = db_create(&config, &db);
    if (!err && !fresh) {
        if ((err = catalog_restore(db, body, len)) == SHOAL_ECORRUPT)
            durable_set_detail("%s/MANIFEST: the catalog is malformed", d->dir);
        db->next_ns_id = head.next_ns_id > db->next_ns_id ? head.next_ns_id : db->next_ns_id;
    }
    free(body);
    if (!err)
        err = recover(db, d, &head);
    /* A new database writes its MANIFEST before any log file exists, so that log files
     * without a MANIFEST always mean a lost MANIFEST (durable_has_files). */
    if (!err && fresh)
        err = catalog_write(db, d, 0, 0);
    if (!err)
        err = wal_start(d, db);
    if (!err)
        atomic_store_explicit(&db->durable, d, memory_order_release);
    if (!err)
        err = checkpointer_start(d, db);
    if (err) {
        if (db) {
            atomic_store(&db->durable, NULL);
            db_destroy(db);
        }
        wal_close(d->wal);
        durable_free(d);
        return err;
    }
    *out = db;
    return 0;
}

int durable_close(struct shoal_db *db)
{
    struct durable *d = durable_of(db);
    if (!d)
        return 0;
    checkpointer_stop(d);
    int err = 0;
    if (!durable_error(d))
        err = shoal_checkpoint(db);
    int closed = wal_close(d->wal);
    if (!err)
        err = closed;
    atomic_store(&db->durable, NULL);
    durable_free(d);
    return err;
}

SHOAL_API int shoal_persist(shoal_db *db, const char *dir)
{
    if (!db || !dir || !*dir)
        return SHOAL_EINVAL;
    durable_set_detail("%s", "");
    if (durable_of(db))
        return SHOAL_EINVAL;
    struct durable *d = durable_new(dir, NULL);
    if (!d)
        return SHOAL_ENOMEM;
    int err = durable_lock(d);
    void *body = NULL;
    size_t len;
    if (!err) {
        err = manifest_read(d->io, d->dir, &body, &len);
        free(body);
        if (err == 0)
            err = SHOAL_EEXIST;
        else if (err == SHOAL_ENOTFOUND)
            err = 0;
    }
    if (!err && durable_has_files(d) != 0)
        err = SHOAL_EEXIST; /* log or checkpoint files without a MANIFEST: not ours */
    if (!err)
        err = wal_start(d, db);
    if (err) {
        durable_free(d);
        return err;
    }
    /* From here on every commit is logged; the checkpoint below covers what came before.
     * Catalog changes of other threads wait for catalog_change or are in the image (C1). */
    pthread_mutex_lock(&db->catalog_change);
    pthread_mutex_lock(&db->catalog_lock);
    atomic_store_explicit(&db->durable, d, memory_order_release);
    struct catalog_image image;
    err = durable_catalog_encode(db, &image);
    pthread_mutex_unlock(&db->catalog_lock);
    if (!err)
        err = durable_catalog_store(db, &image);
    pthread_mutex_unlock(&db->catalog_change);
    if (!err)
        err = shoal_checkpoint(db);
    if (!err)
        err = checkpointer_start(d, db);
    return err;
}

/* ---- the commit log ------------------------------------------------------------------------ */

int durable_writable(struct shoal_db *db)
{
    struct durable *d = durable_of(db);
    return d ? durable_error(d) : 0;
}

int durable_append(struct shoal_db *db, const struct write_op *ops, size_t n, uint64_t seq,
                   unsigned *stream, uint64_t *lsn)
{
    struct durable *d = durable_of(db);
    *lsn = 0;
    if (!d)
        return 0;
    uint8_t type;
    size_t size = log_encoded_size(ops, n, &type);
    uint8_t small[4096];
    uint8_t *buf = size <= sizeof small ? small : malloc(size);
    if (!buf)
        return SHOAL_ENOMEM;
    log_encode(ops, n, buf);
    /* A batch is one record in one stream (that of its first shard): applied whole. */
    *stream = ops[0].shard % d->streams;
    int err = wal_append(d->wal, *stream, type, seq, buf, size, lsn);
    if (buf != small)
        free(buf);
    return err;
}

int durable_wait(struct shoal_db *db, unsigned stream, uint64_t lsn,
                 const shoal_write_options *wo)
{
    struct durable *d = durable_of(db);
    if (!d || lsn == 0)
        return 0;
    int sync = wo && wo->sync != SHOAL_SYNC_DEFAULT ? (int)wo->sync : (int)db->config.sync;
    if (sync == SHOAL_SYNC_NONE)
        return 0;
    if (wo && wo->on_durable) {
        int err = wal_wait_async(d->wal, stream, lsn, sync, wo->on_durable, wo->ctx);
        return err ? err : SHOAL_PENDING;
    }
    if (wo && wo->mark) {
        /* The caller waits later, for many writes at once (shoal_notify_durable). */
        *wo->mark = (shoal_log_mark){.stream = stream, .sync = (shoal_sync)sync, .lsn = lsn};
        return SHOAL_PENDING;
    }
    return wal_wait(d->wal, stream, lsn, sync);
}

SHOAL_API int shoal_log_end(shoal_db *db, shoal_log_mark *marks, unsigned *streams)
{
    struct durable *d = db ? durable_of(db) : NULL;
    if (!d || !marks || !streams)
        return SHOAL_EINVAL;
    *streams = d->streams;
    for (unsigned i = 0; i < d->streams; i++)
        marks[i] = (shoal_log_mark){.stream = i, .sync = SHOAL_SYNC_ALWAYS,
                                    .lsn = wal_appended(d->wal, i)};
    return 0;
}

SHOAL_API int shoal_wait_durable(shoal_db *db, const shoal_log_mark *mark)
{
    struct durable *d = db ? durable_of(db) : NULL;
    if (!d || !mark || mark->lsn == 0 || mark->stream >= d->streams ||
        mark->sync == SHOAL_SYNC_DEFAULT || mark->sync == SHOAL_SYNC_NONE)
        return SHOAL_EINVAL;
    return wal_wait_now(d->wal, mark->stream, mark->lsn, (int)mark->sync);
}

SHOAL_API int shoal_notify_durable(shoal_db *db, const shoal_log_mark *mark,
                                   void (*on_durable)(void *ctx, int err), void *ctx)
{
    struct durable *d = db ? durable_of(db) : NULL;
    if (!d || !mark || !on_durable || mark->lsn == 0 || mark->stream >= d->streams ||
        mark->sync == SHOAL_SYNC_DEFAULT || mark->sync == SHOAL_SYNC_NONE)
        return SHOAL_EINVAL;
    return wal_wait_async(d->wal, mark->stream, mark->lsn, (int)mark->sync, on_durable, ctx);
}

void durable_stats(struct shoal_db *db, shoal_db_stats *out)
{
    struct durable *d = durable_of(db);
    if (!d)
        return;
    struct wal_stats ws;
    wal_stats(d->wal, &ws);
    out->durable = true;
    out->log_streams = d->streams;
    out->log_bytes = wal_bytes(d->wal);
    out->log_syncs = ws.syncs;
    out->log_sync_ns = ws.sync_ns_total;
    out->group_commits = ws.group_commits;
    out->group_waiters = ws.waiters_woken;
    out->checkpoints = atomic_load(&d->checkpoints);
    pthread_mutex_lock(&db->catalog_lock);
    out->checkpoint_seq = d->checkpoint_seq;
    pthread_mutex_unlock(&db->catalog_lock);
    out->checkpoint_unix = atomic_load(&d->checkpoint_unix);
    out->last_checkpoint_error = atomic_load(&d->last_checkpoint_error);
    out->recovered_records = d->recovered_records;
    out->recovered_keys = d->recovered_keys;
    out->torn_streams = d->torn_streams;
    out->torn_bytes = d->torn_bytes;
    out->salvaged_bytes = d->salvaged_bytes;
    int err = durable_error(d);
    if (err) {
        out->read_only = true;
        out->read_only_cause = err;
    }
}
