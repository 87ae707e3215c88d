/*
 * kv.c -- the write and read paths: puts, deletes, batches, point reads, and the
 * reclaiming of versions no snapshot can see.
 *
 * Every write, single or batched, is a list of operations committed by commit_ops():
 *
 *   1. lock every shard the operations touch, in shard index order;
 *   2. check that no namespace was dropped and every condition (require) holds; replace
 *      each delete of a whole namespace (shoal_batch_delete_all, whose shards are all
 *      locked) by a delete of each key it holds (ops_expand_clears);
 *   3. allocate each new version (put, or tombstone for a delete) in its shard's segment
 *      allocator and object table -- all before anything changes, so that running out of
 *      memory changes nothing;
 *   4. draw seq = ++db.seq (under the locks: internal.h I1);
 *   5. link each new version as the newest of its key, in operation order, keeping an
 *      undo record; a failure or a quota refusal at this point undoes every link;
 *   6. reserve the tenants' quota and check the memory limit, undoing on refusal;
 *   7. retire or free what the new versions replaced (I3, I4), update the counts, emit
 *      the log record (log.h), release the locks.
 *
 * What two writers on different shards share: only step 4's increment of db->seq writes a
 * line both write (internal.h I5). Everything else a put writes -- the shard's lock and
 * counters, its allocator and object-table part, the namespace's part for the shard, the
 * thread's counters and histograms -- is the shard's or the thread's alone, on lines of its
 * own; tenant 0's writers read their tenant and write nothing there (db.c D2).
 *
 * Reads take the shard's read lock, find the newest version with seq <= their snapshot
 * and copy it out. A read of the latest state needs no snapshot: the lock orders it.
 *
 * Tested by tests/unit/test_kv.c, test_batch.c, the model test (test_model.c) and the
 * snapshot-isolation test.
 */
#include "core/internal.h"
#include "core/durable.h"

#include <stdlib.h>
#include <string.h>

#define LATENCY_SAMPLE_MASK 7 /* time one operation in 8 */

/* ---- versions and reclaiming ------------------------------------------------------------ */

/* While a compaction empties the shard's old allocator (compact.c), a version may belong
 * to either allocator: it goes back to the one that owns it. */
static void version_release_memory(struct shard *s, struct version *v)
{
    size_t size = version_size(v->klen, v->vlen);
    segment_free(s->old_segments ? segment_owner(v, size) : s->segments, v, size);
}

void version_free_chain(struct shard *s, struct version *v)
{
    while (v) {
        struct version *older = v->older;
        ot_free(s->objects, v->id);
        version_release_memory(s, v);
        v = older;
    }
}

/* Called by the object table (without its lock) for each retired version the horizon
 * has passed: unlink it from its key's chain (or remove the key, for a tombstone that is
 * still the newest) and release its memory; the table then frees its handle. */
static void reclaim_version(void *ctx, node_id id, void *addr)
{
    struct shard *s = ctx;
    struct version *v = addr;
    struct namespace *ns = s->db->namespaces[v->ns_slot];
    struct btree *tree = ns ? ns->parts[s->index].tree : NULL;
    if (tree) {
        struct version *newest = btree_get(tree, version_key(v), v->klen);
        if (newest == v) {
            btree_remove(tree, version_key(v), v->klen);
        } else {
            struct version *p = newest;
            while (p && p->older != v)
                p = p->older;
            if (p)
                p->older = NULL;
        }
    }
    /* Older versions were retired earlier and so reclaimed first; anything still hanging
     * here (freed with its newer version) goes now. */
    version_free_chain(s, v->older);
    v->older = NULL;
    version_release_memory(s, v);
}

void shard_reclaim(struct shard *s, bool force)
{
    uint64_t generation =
        atomic_load_explicit(&s->db->reclaim_generation, memory_order_relaxed);
    if (generation != s->reclaim_generation) {
        s->reclaim_generation = generation;
        force = true;
    }
    if (atomic_load_explicit(&s->db->snapshots_open, memory_order_relaxed) == 0)
        force = true; /* everything queued is garbage now */
    if (s->old_segments)
        compact_release(s, force); /* a compaction's emptied allocator, once unreachable */
    size_t queued = ot_retired_count(s->objects);
    if (queued == 0 || (!force && queued < s->reclaim_threshold))
        return;
    ot_reclaim_before_epoch(s->objects, snapshot_horizon(s->db), reclaim_version, s);
    /* Every entry that left the queue is counted, whether its version went through
     * reclaim_version or had already been freed with a newer one (a chain freed at once
     * when no snapshot was open): so once nothing is queued, reclaimed equals retired. */
    size_t left = ot_retired_count(s->objects);
    if (left < queued) /* reclaim_version retires nothing, so the queue only shrank */
        atomic_fetch_add_explicit(&s->reclaimed, queued - left, memory_order_relaxed);
    /* A long-lived snapshot keeps versions queued: wait for the queue to double before
     * scanning the slots again, so each write pays O(1) amortized. */
    s->reclaim_threshold = left * 2 > 64 ? left * 2 : 64;
}

int shoal_reclaim(shoal_db *db)
{
    if (db == NULL)
        return SHOAL_EINVAL;
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load_explicit(&db->shards[i], memory_order_acquire);
        if (s == NULL)
            continue;
        shard_write_lock(s);
        /* Not forced: shard_reclaim forces itself when a snapshot was released since its
         * last pass or none is open, the two cases a quiet shard waits for. */
        shard_reclaim(s, false);
        shard_refresh_memory(s);
        shard_write_unlock(s);
    }
    return 0;
}

void shard_refresh_memory(struct shard *s)
{
    struct segment_stats st;
    segment_stats(s->segments, &st);
    uint64_t bytes = st.bytes_in_use;
    if (s->old_segments) {
        /* A compaction's old allocator holds its memory until it is destroyed. */
        segment_stats(s->old_segments, &st);
        bytes += st.bytes_in_use;
    }
    atomic_store_explicit(&s->memory, bytes, memory_order_relaxed);
}

/* ---- argument checks --------------------------------------------------------------------- */

static int check_key(const void *key, size_t klen)
{
    if (!key || klen == 0)
        return SHOAL_EINVAL;
    if (klen > SHOAL_MAX_KEY)
        return SHOAL_ETOOBIG;
    return 0;
}

static int check_value(const void *value, size_t vlen)
{
    if (!value && vlen)
        return SHOAL_EINVAL;
    if (vlen > SHOAL_MAX_VALUE)
        return SHOAL_ETOOBIG;
    return 0;
}

/* ---- the commit ---------------------------------------------------------------------------- */

/* The shards a namespace may hold keys on. */
static uint64_t ns_shard_set(const struct namespace *ns)
{
    if (ns->placement == SHOAL_PLACE_PINNED)
        return 1ull << ns->shard;
    return ns->shard_mask >= 63 ? UINT64_MAX : (1ull << (ns->shard_mask + 1)) - 1;
}

static uint64_t ops_shard_mask(const struct write_op *ops, size_t n)
{
    uint64_t mask = 0;
    for (size_t i = 0; i < n; i++)
        mask |= ops[i].type == WRITE_CLEAR ? ns_shard_set(ops[i].ns) : 1ull << ops[i].shard;
    return mask;
}

static void lock_shards(struct shoal_db *db, uint64_t mask)
{
    for (uint64_t m = mask; m; m &= m - 1)
        shard_write_lock(atomic_load_explicit(&db->shards[__builtin_ctzll(m)],
                                              memory_order_relaxed));
}

static void unlock_shards(struct shoal_db *db, uint64_t mask)
{
    for (uint64_t m = mask; m; m &= m - 1)
        shard_write_unlock(atomic_load_explicit(&db->shards[__builtin_ctzll(m)],
                                          memory_order_relaxed));
}

static struct shard *op_shard(struct shoal_db *db, const struct write_op *op)
{
    return atomic_load_explicit(&db->shards[op->shard], memory_order_relaxed);
}

/* Step 2: namespaces alive, indexes present, conditions hold. */
static int ops_check(struct shoal_db *db, struct write_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct write_op *op = &ops[i];
        if (atomic_load_explicit(&op->ns->dropped, memory_order_acquire))
            return SHOAL_EDROPPED;
        if (op->type == WRITE_CLEAR)
            continue;
        struct ns_part *part = &op->ns->parts[op->shard];
        if (!part->tree) {
            part->tree = btree_new(version_key_of);
            if (!part->tree)
                return SHOAL_ENOMEM;
            atomic_fetch_add_explicit(&op_shard(db, op)->indexes, 1, memory_order_relaxed);
        }
        if (op->type == WRITE_REQUIRE) {
            const struct version *v = btree_get(part->tree, op->key, op->klen);
            if ((v ? v->seq : 0) != op->required_seq)
                return SHOAL_ECONFLICT;
        }
    }
    return 0;
}

/* Deletes of every key a WRITE_CLEAR's namespace holds: those stored (with the locks
 * of all its shards held, ops_check done) and those the batch put there before it. */
static size_t clear_deletes(const struct write_op *ops, size_t at, struct write_op *out)
{
    struct namespace *ns = ops[at].ns;
    size_t count = 0;
    for (uint64_t m = ns_shard_set(ns); m; m &= m - 1) {
        unsigned shard = (unsigned)__builtin_ctzll(m);
        struct btree *tree = ns->parts[shard].tree;
        if (!tree)
            continue;
        struct btree_cursor c;
        for (btree_seek_ge(tree, &c, NULL, 0); btree_cursor_valid(&c); btree_next(&c)) {
            const struct version *v = btree_cursor_value(&c);
            if (version_is_tombstone(v))
                continue;
            if (out)
                out[count] = (struct write_op){.type = WRITE_DELETE, .ns = ns, .key = v->data,
                                               .klen = v->klen, .shard = shard};
            count++;
        }
    }
    for (size_t i = 0; i < at; i++) {
        if (ops[i].ns != ns || ops[i].type != WRITE_PUT)
            continue;
        if (out)
            out[count] = (struct write_op){.type = WRITE_DELETE, .ns = ns, .key = ops[i].key,
                                           .klen = ops[i].klen, .shard = ops[i].shard};
        count++;
    }
    return count;
}

/* Step 2b: each WRITE_CLEAR replaced, in its place, by its deletes (clear_deletes); a key
 * both stored and put earlier gets two, of which ops_link skips the second, as it skips
 * deletes of absent keys. *out (malloc'd) holds the *count operations to commit. */
static int ops_expand_clears(const struct write_op *ops, size_t n, struct write_op **out,
                             size_t *count)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ops[i].type == WRITE_CLEAR ? clear_deletes(ops, i, NULL) : 1;
    struct write_op *all = malloc((total ? total : 1) * sizeof *all);
    if (!all)
        return SHOAL_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == WRITE_CLEAR)
            k += clear_deletes(ops, i, all + k);
        else
            all[k++] = ops[i];
    }
    *out = all;
    *count = k;
    return 0;
}

static void ops_free_fresh(struct shoal_db *db, struct write_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ops[i].fresh) {
            version_free_chain(op_shard(db, &ops[i]), ops[i].fresh);
            ops[i].fresh = NULL;
        }
    }
}

/* Step 3: every new version, allocated before anything changes. */
static int ops_allocate(struct shoal_db *db, struct write_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct write_op *op = &ops[i];
        op->fresh = NULL;
        if (op->type == WRITE_REQUIRE)
            continue;
        struct shard *s = op_shard(db, op);
        uint32_t vlen = op->type == WRITE_PUT ? op->vlen : VERSION_TOMBSTONE;
        struct version *v = segment_alloc(s->segments, version_size(op->klen, vlen));
        if (!v || ot_alloc(s->objects, v, &v->id) != 0) {
            /* Its header is not written yet: free it by the size it was given. */
            if (v)
                segment_free(s->segments, v, version_size(op->klen, vlen));
            ops_free_fresh(db, ops, i);
            return SHOAL_ENOMEM;
        }
        v->older = NULL;
        v->klen = op->klen;
        v->vlen = vlen;
        v->ns_slot = op->ns->slot;
        memcpy(v->data, op->key, op->klen);
        if (op->type == WRITE_PUT && op->vlen)
            memcpy(v->data + op->klen, op->value, op->vlen);
        if (op->type == WRITE_DELETE)
            op->key = v->data; /* the tombstone's copy: a clear's deletes name keys in
                                  versions that an earlier put of the batch may free */
        op->fresh = v;
    }
    return 0;
}

/* Step 5, undone: restores each key's previous newest version, last operation first. */
static void ops_unlink(struct write_op *ops, size_t applied)
{
    while (applied-- > 0) {
        struct write_op *op = &ops[applied];
        if (op->type == WRITE_REQUIRE || op->skipped)
            continue;
        struct btree *tree = op->ns->parts[op->shard].tree;
        if (op->created) {
            btree_remove(tree, op->key, op->klen);
        } else {
            void **slot;
            bool created;
            /* The key is present, so this finds its slot without allocating. */
            btree_upsert(tree, op->key, op->klen, &slot, &created);
            *slot = op->prev;
        }
        op->fresh->older = NULL;
    }
}

static uint64_t version_bytes(const struct version *v)
{
    return v && !version_is_tombstone(v) ? (uint64_t)v->klen + v->vlen : 0;
}

/* Step 5: link the new versions; records what each replaced and the usage change. The
 * versions get their seq afterwards (ops_stamp): nobody can see them before the locks go. */
static int ops_link(struct shoal_db *db, struct write_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct write_op *op = &ops[i];
        op->skipped = false;
        op->created = false;
        op->prev = NULL;
        op->delta_keys = 0;
        op->delta_bytes = 0;
        if (op->type == WRITE_REQUIRE)
            continue;
        struct btree *tree = op->ns->parts[op->shard].tree;
        struct version *fresh = op->fresh;
        if (op->type == WRITE_DELETE) {
            struct version *prev = btree_get(tree, op->key, op->klen);
            if (!prev || version_is_tombstone(prev)) {
                op->skipped = true; /* nothing to delete */
                continue;
            }
            void **slot;
            bool created;
            btree_upsert(tree, op->key, op->klen, &slot, &created); /* present: no alloc */
            op->prev = prev;
            fresh->older = prev;
            *slot = fresh;
            op->delta_keys = -1;
            op->delta_bytes = -(int64_t)version_bytes(prev);
            continue;
        }
        void **slot;
        if (btree_upsert(tree, op->key, op->klen, &slot, &op->created) != 0) {
            ops_unlink(ops, i);
            return SHOAL_ENOMEM;
        }
        struct version *prev = op->created ? NULL : *slot;
        if (prev) /* its handle is freed or retired at the end (ops_finish): a miss there */
            ot_prefetch(op_shard(db, op)->objects, prev->id);
        op->prev = prev;
        fresh->older = prev;
        *slot = fresh;
        op->delta_keys = prev && !version_is_tombstone(prev) ? 0 : 1;
        op->delta_bytes = (int64_t)version_bytes(fresh) - (int64_t)version_bytes(prev);
    }
    return 0;
}

/* Adds delta to an atomic usage counter if the result stays within max (or the delta
 * does not grow it). Returns false, changing nothing, if it would pass max. */
static bool usage_reserve(_Atomic int64_t *usage, int64_t delta, uint64_t max)
{
    if (delta <= 0) {
        atomic_fetch_add(usage, delta);
        return true;
    }
    int64_t cur = atomic_load(usage);
    do {
        if (max != SHOAL_UNLIMITED && (uint64_t)(cur + delta) > max)
            return false;
    } while (!atomic_compare_exchange_weak(usage, &cur, cur + delta));
    return true;
}

/* Step 6: tenants' quotas. Tenant 0 keeps no central usage (db.c D2). The deltas of one
 * tenant are summed first, so a batch that frees as much as it adds passes. */
static bool first_of_tenant(const struct write_op *ops, size_t i)
{
    const struct tenant *t = ops[i].ns->tenant;
    if (t->id == 0)
        return false;
    for (size_t j = 0; j < i; j++)
        if (ops[j].ns->tenant == t)
            return false;
    return true;
}

static void tenant_delta(const struct write_op *ops, size_t n, size_t first, int64_t *keys,
                         int64_t *bytes)
{
    const struct tenant *t = ops[first].ns->tenant;
    *keys = *bytes = 0;
    for (size_t i = first; i < n; i++) {
        if (ops[i].ns->tenant == t) {
            *keys += ops[i].delta_keys;
            *bytes += ops[i].delta_bytes;
        }
    }
}

static void tenant_unreserve(const struct write_op *ops, size_t n, size_t upto)
{
    for (size_t i = 0; i < upto; i++) {
        if (!first_of_tenant(ops, i))
            continue;
        int64_t keys, bytes;
        tenant_delta(ops, n, i, &keys, &bytes);
        atomic_fetch_sub(&ops[i].ns->tenant->keys, keys);
        atomic_fetch_sub(&ops[i].ns->tenant->bytes, bytes);
    }
}

static int ops_reserve_quota(const struct write_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!first_of_tenant(ops, i))
            continue;
        struct tenant *t = ops[i].ns->tenant;
        int64_t keys, bytes;
        tenant_delta(ops, n, i, &keys, &bytes);
        if (!usage_reserve(&t->keys, keys, atomic_load(&t->max_keys))) {
            tenant_unreserve(ops, n, i);
            atomic_fetch_add(&t->refusals, 1);
            return SHOAL_EQUOTA;
        }
        if (!usage_reserve(&t->bytes, bytes, atomic_load(&t->max_bytes))) {
            atomic_fetch_sub(&t->keys, keys);
            tenant_unreserve(ops, n, i);
            atomic_fetch_add(&t->refusals, 1);
            return SHOAL_EQUOTA;
        }
    }
    return 0;
}

uint64_t db_memory_in_use(struct shoal_db *db)
{
    uint64_t total = 0;
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load_explicit(&db->shards[i], memory_order_relaxed);
        if (s)
            total += atomic_load_explicit(&s->memory, memory_order_relaxed);
    }
    return total;
}

/* The memory limit refuses writes that would grow the data past it; a batch that only
 * deletes always passes. */
static int ops_check_memory(struct shoal_db *db, const struct write_op *ops, size_t n)
{
    uint64_t limit = atomic_load_explicit(&db->memory_limit, memory_order_relaxed);
    if (limit == 0)
        return 0;
    uint64_t adding = 0;
    for (size_t i = 0; i < n; i++)
        if (ops[i].type == WRITE_PUT)
            adding += version_size(ops[i].klen, ops[i].vlen);
    if (adding && db_memory_in_use(db) + adding > limit)
        return SHOAL_EMEMLIMIT;
    return 0;
}

int shoal_set_memory_limit(shoal_db *db, uint64_t bytes)
{
    if (db == NULL)
        return SHOAL_EINVAL;
    atomic_store_explicit(&db->memory_limit, bytes, memory_order_relaxed);
    return 0;
}

/* Step 7: what the new versions replaced is freed now or queued for reclaim. */
static void ops_finish(struct shoal_db *db, struct write_op *ops, size_t n, uint64_t seq)
{
    bool snapshots = atomic_load(&db->snapshots_open) != 0; /* after seq was drawn: I4 */
    for (size_t i = 0; i < n; i++) {
        struct write_op *op = &ops[i];
        if (op->type == WRITE_REQUIRE)
            continue;
        struct shard *s = op_shard(db, op);
        struct ns_part *part = &op->ns->parts[op->shard];
        if (op->skipped) {
            version_free_chain(s, op->fresh);
            op->fresh = NULL;
            continue;
        }
        counter_add(&part->keys, (uint64_t)op->delta_keys);
        counter_add(&part->bytes, (uint64_t)op->delta_bytes);
        if (op->type == WRITE_PUT)
            counter_add(&s->puts, 1);
        else
            counter_add(&s->deletes, 1);
        if (!snapshots) {
            if (op->type == WRITE_PUT) {
                op->fresh->older = NULL;
                version_free_chain(s, op->prev);
            } else if (btree_get(part->tree, op->key, op->klen) == op->fresh) {
                btree_remove(part->tree, op->key, op->klen);
                version_free_chain(s, op->fresh);
            }
            /* else a later operation of the batch replaced the tombstone and frees it. */
            continue;
        }
        if (op->prev && !version_is_tombstone(op->prev)) {
            if (ot_retire(s->objects, op->prev->id, seq) == 0)
                counter_add(&s->retired, 1);
        }
        if (op->type == WRITE_DELETE && ot_retire(s->objects, op->fresh->id, seq) == 0)
            counter_add(&s->retired, 1);
    }
}

/* Charges every operation to its tenant's rate limit before anything is locked. */
static int ops_charge(struct write_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct tenant *t = ops[i].ns->tenant;
        if (t->id == 0)
            continue;
        atomic_fetch_add_explicit(&t->ops, 1, memory_order_relaxed);
        int err = tenant_charge_op(t);
        if (err)
            return err;
    }
    return 0;
}

/* Steps 3 to 7, with the locks of mask held, which it releases. *stream and *lsn say
 * which log record to wait for (lsn 0: none). */
static int commit_locked(struct shoal_db *db, struct write_op *ops, size_t n, uint64_t mask,
                         uint64_t *seq_out, unsigned *stream, uint64_t *lsn)
{
    int err = ops_check_memory(db, ops, n);
    if (err == SHOAL_EMEMLIMIT) {
        /* Versions that released snapshots kept, or a compaction's emptied allocator that
         * they kept, may be all that stands in the way (shard_reclaim frees both). */
        for (uint64_t m = mask; m; m &= m - 1) {
            struct shard *s = atomic_load_explicit(&db->shards[__builtin_ctzll(m)],
                                                   memory_order_relaxed);
            shard_reclaim(s, true);
            shard_refresh_memory(s);
        }
        err = ops_check_memory(db, ops, n);
    }
    if (!err)
        err = ops_allocate(db, ops, n);
    if (err) {
        unlock_shards(db, mask);
        return err;
    }
    err = ops_link(db, ops, n);
    if (!err && (err = ops_reserve_quota(ops, n)) != 0) {
        ops_unlink(ops, n);
        atomic_fetch_add(&db->quota_refusals, 1);
    }
    size_t applied = 0;
    for (size_t i = 0; !err && i < n; i++)
        applied += ops[i].type != WRITE_REQUIRE && !ops[i].skipped;
    if (err || applied == 0) {
        /* A commit that changes nothing (deletes of absent keys) draws no seq. */
        ops_free_fresh(db, ops, n);
        unlock_shards(db, mask);
        if (!err && seq_out)
            *seq_out = atomic_load(&db->seq);
        return err;
    }
    uint64_t seq = atomic_fetch_add(&db->seq, 1) + 1;
    for (size_t i = 0; i < n; i++)
        if (ops[i].fresh)
            ops[i].fresh->seq = seq;
    if ((err = durable_append(db, ops, n, seq, stream, lsn)) != 0) {
        /* durable.c R1: not logged, so not applied. */
        ops_unlink(ops, n);
        tenant_unreserve(ops, n, n);
        ops_free_fresh(db, ops, n);
        unlock_shards(db, mask);
        return err;
    }
    ops_finish(db, ops, n, seq);
    for (uint64_t m = mask; m; m &= m - 1) {
        struct shard *s = atomic_load_explicit(&db->shards[__builtin_ctzll(m)],
                                               memory_order_relaxed);
        if (n > 1)
            counter_add(&s->commits, 1);
        shard_reclaim(s, false);
        shard_refresh_memory(s);
    }
    unlock_shards(db, mask);
    if (seq_out)
        *seq_out = seq;
    return 0;
}

int commit_ops(struct shoal_db *db, struct write_op *ops, size_t n,
               const shoal_write_options *wo, uint64_t *seq_out)
{
    int err = durable_writable(db); /* durable.c R4: sticky after a failed write or fsync */
    if (err)
        return err;
    err = ops_charge(ops, n);
    if (err) {
        atomic_fetch_add(&db->quota_refusals, 1);
        return err;
    }
    bool clears = false;
    for (size_t i = 0; i < n; i++) {
        if (!db_shard(db, ops[i].shard))
            return SHOAL_ENOMEM;
        if (ops[i].type != WRITE_CLEAR)
            continue;
        /* Every shard of the namespace, so that none can gain a key of it unlocked. */
        clears = true;
        for (uint64_t m = ns_shard_set(ops[i].ns); m; m &= m - 1)
            if (!db_shard(db, (unsigned)__builtin_ctzll(m)))
                return SHOAL_ENOMEM;
    }
    uint64_t mask = ops_shard_mask(ops, n);
    lock_shards(db, mask);
    struct write_op *all = ops;
    size_t count = n;
    err = ops_check(db, ops, n);
    if (!err && clears)
        err = ops_expand_clears(ops, n, &all, &count);
    if (err) {
        unlock_shards(db, mask);
        return err;
    }
    unsigned stream = 0;
    uint64_t lsn = 0;
    err = commit_locked(db, all, count, mask, seq_out, &stream, &lsn);
    if (all != ops)
        free(all);
    /* Waiting for the disk happens with no lock held. */
    return err ? err : durable_wait(db, stream, lsn, wo);
}

/* ---- single writes ----------------------------------------------------------------------- */

static int handle_check(const shoal_ns *h)
{
    if (!h)
        return SHOAL_EINVAL;
    if (atomic_load_explicit(&h->ns->dropped, memory_order_relaxed))
        return SHOAL_EDROPPED;
    return 0;
}

static void record_latency(struct thread_state *t, struct histogram *h, uint64_t start)
{
    if (start)
        hist_record(h, clock_ns() - start);
}

static uint64_t sample_start(struct thread_state *t)
{
    return (++t->sample_tick & LATENCY_SAMPLE_MASK) == 0 ? clock_ns() : 0;
}

SHOAL_API int shoal_put(shoal_ns *h, const void *key, size_t klen, const void *value,
                        size_t vlen, const shoal_write_options *wo)
{
    int err;
    if ((err = handle_check(h)) || (err = check_key(key, klen)) ||
        (err = check_value(value, vlen)))
        return err;
    struct thread_state *t = db_thread(h->db);
    uint64_t start = sample_start(t);
    struct write_op op = {.type = WRITE_PUT, .ns = h->ns, .key = key, .klen = (uint32_t)klen,
                          .value = value, .vlen = (uint32_t)vlen,
                          .shard = ns_route(h->ns, key, klen)};
    err = commit_ops(h->db, &op, 1, wo, NULL);
    counter_add(&t->puts, 1);
    record_latency(t, &t->put_latency, start);
    return err;
}

SHOAL_API int shoal_delete(shoal_ns *h, const void *key, size_t klen,
                           const shoal_write_options *wo)
{
    int err;
    if ((err = handle_check(h)) || (err = check_key(key, klen)))
        return err;
    struct thread_state *t = db_thread(h->db);
    uint64_t start = sample_start(t);
    struct write_op op = {.type = WRITE_DELETE, .ns = h->ns, .key = key,
                          .klen = (uint32_t)klen, .shard = ns_route(h->ns, key, klen)};
    err = commit_ops(h->db, &op, 1, wo, NULL);
    if (!err && op.skipped)
        err = SHOAL_ENOTFOUND;
    counter_add(&t->deletes, 1);
    record_latency(t, &t->put_latency, start);
    return err;
}

/* ---- reads ---------------------------------------------------------------------------------- */

/* Finds the version of key visible at snap, with the shard's read lock held on success
 * (the caller unlocks *locked). Returns 0, SHOAL_ENOTFOUND or an error. */
static int read_begin(shoal_ns *h, struct thread_state *t, const shoal_snapshot *snap,
                      const void *key, size_t klen, struct shard **locked,
                      const struct version **found)
{
    int err;
    if ((err = handle_check(h)) || (err = check_key(key, klen)))
        return err;
    if (snap && snap->db != h->db)
        return SHOAL_EINVAL;
    struct namespace *ns = h->ns;
    if (ns->tenant->id != 0) {
        atomic_fetch_add_explicit(&ns->tenant->ops, 1, memory_order_relaxed);
        if ((err = tenant_charge_op(ns->tenant)) != 0)
            return err;
    }
    unsigned si = ns_route(ns, key, klen);
    struct shard *s = atomic_load_explicit(&h->db->shards[si], memory_order_acquire);
    if (!s)
        return SHOAL_ENOTFOUND; /* nothing was ever written there */
    uint64_t at = snap ? shoal_snapshot_seq(snap) : UINT64_MAX;
    shard_read_lock(s, t);
    if (atomic_load_explicit(&ns->dropped, memory_order_acquire)) {
        shard_read_unlock(s, t);
        return SHOAL_EDROPPED;
    }
    struct btree *tree = ns->parts[si].tree;
    const struct version *v = tree ? btree_get(tree, key, (uint32_t)klen) : NULL;
    *found = version_visible(v, at);
    *locked = s;
    return 0;
}

static int read_value(shoal_ns *h, const shoal_snapshot *snap, const void *key, size_t klen,
                      int (*fn)(void *ctx, const void *value, size_t vlen), void *ctx)
{
    struct thread_state *t = h ? db_thread(h->db) : NULL;
    uint64_t start = t ? sample_start(t) : 0;
    struct shard *s;
    const struct version *v;
    int err = read_begin(h, t, snap, key, klen, &s, &v);
    if (err)
        return err;
    if (!v || version_is_tombstone(v))
        err = SHOAL_ENOTFOUND;
    else
        err = fn(ctx, version_value(v), v->vlen);
    shard_read_unlock(s, t);
    counter_add(&t->gets, 1);
    counter_add(&t->shard_gets[s->index], 1);
    record_latency(t, &t->get_latency, start);
    return err < 0 ? err : 0;
}

struct copy_out {
    void *buf;
    size_t cap, len;
    bool allocate;
};

static int copy_value(void *ctx, const void *value, size_t vlen)
{
    struct copy_out *c = ctx;
    c->len = vlen;
    if (c->allocate) {
        c->buf = malloc(vlen ? vlen : 1);
        if (!c->buf)
            return SHOAL_ENOMEM;
    } else if (vlen > c->cap) {
        return SHOAL_ERANGE;
    }
    if (vlen)
        memcpy(c->buf, value, vlen);
    return 0;
}

SHOAL_API int shoal_get(shoal_ns *h, const shoal_snapshot *snap, const void *key, size_t klen,
                        void **value, size_t *vlen)
{
    if (!value || !vlen)
        return SHOAL_EINVAL;
    struct copy_out c = {.allocate = true};
    int err = read_value(h, snap, key, klen, copy_value, &c);
    if (err)
        return err;
    *value = c.buf;
    *vlen = c.len;
    return 0;
}

SHOAL_API int shoal_get_into(shoal_ns *h, const shoal_snapshot *snap, const void *key,
                             size_t klen, void *buf, size_t cap, size_t *vlen)
{
    if (!vlen || (!buf && cap))
        return SHOAL_EINVAL;
    struct copy_out c = {.buf = buf, .cap = cap};
    int err = read_value(h, snap, key, klen, copy_value, &c);
    if (err == 0 || err == SHOAL_ERANGE)
        *vlen = c.len;
    return err;
}

SHOAL_API int shoal_get_with(shoal_ns *h, const shoal_snapshot *snap, const void *key,
                             size_t klen, int (*fn)(void *ctx, const void *value, size_t vlen),
                             void *ctx)
{
    if (!fn)
        return SHOAL_EINVAL;
    return read_value(h, snap, key, klen, fn, ctx);
}

SHOAL_API int shoal_exists(shoal_ns *h, const shoal_snapshot *snap, const void *key,
                           size_t klen)
{
    struct thread_state *t = h ? db_thread(h->db) : NULL;
    struct shard *s;
    const struct version *v;
    int err = read_begin(h, t, snap, key, klen, &s, &v);
    if (err)
        return err == SHOAL_ENOTFOUND ? 0 : err;
    int present = v && !version_is_tombstone(v);
    shard_read_unlock(s, t);
    return present;
}

SHOAL_API int shoal_key_seq(shoal_ns *h, const shoal_snapshot *snap, const void *key,
                            size_t klen, uint64_t *seq)
{
    if (!seq)
        return SHOAL_EINVAL;
    struct thread_state *t = h ? db_thread(h->db) : NULL;
    struct shard *s;
    const struct version *v;
    int err = read_begin(h, t, snap, key, klen, &s, &v);
    if (err == SHOAL_ENOTFOUND) {
        *seq = 0;
        return 0;
    }
    if (err)
        return err;
    *seq = v ? v->seq : 0;
    shard_read_unlock(s, t);
    return 0;
}

SHOAL_API int shoal_key_memory(shoal_ns *h, const void *key, size_t klen, uint64_t *bytes)
{
    if (!bytes)
        return SHOAL_EINVAL;
    *bytes = 0;
    struct thread_state *t = h ? db_thread(h->db) : NULL;
    struct shard *s;
    const struct version *newest;
    int err = read_begin(h, t, NULL, key, klen, &s, &newest);
    if (err)
        return err;
    if (!newest || version_is_tombstone(newest)) {
        shard_read_unlock(s, t);
        return SHOAL_ENOTFOUND;
    }
    for (const struct version *v = newest; v; v = v->older)
        *bytes += segment_class_size(version_size(v->klen, v->vlen)) + sizeof(uint64_t);
    const struct btree *tree = h->ns->parts[ns_route(h->ns, key, klen)].tree;
    *bytes += btree_bytes_per_key(tree);
    shard_read_unlock(s, t);
    return 0;
}

SHOAL_API void shoal_free(void *p)
{
    free(p);
}
