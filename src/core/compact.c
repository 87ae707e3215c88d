/*
 * compact.c -- shoal_compact: rewrites each shard's versions contiguously in key order and
 * gives back the memory that deletes and overwrites left in holes.
 *
 * Why
 * ---
 * A version lives wherever the segment allocator had room when it was written, which after
 * a random fill is random with respect to key order. An ordered scan then pays a few cache
 * misses per key however well it prefetches, and deletes and overwrites leave free slots
 * scattered over every segment, which only same-sized writes can fill again. Copying every
 * version of a shard, in key order, into a fresh allocator makes scans read memory
 * sequentially and lets the old allocator go back to the system whole.
 *
 * How
 * ---
 * Per shard, under its write lock, the shard's allocator is swapped for a new, empty one
 * (s->segments); writers allocate there from then on, and the old one becomes
 * s->old_segments. Then every namespace that has an index on the shard is walked in key
 * order, COMPACT_CHUNK_KEYS keys per hold of the write lock, resuming after the last key
 * of the previous chunk, so that readers and writers get in between. For each key, every
 * version of its chain (the index holds the newest; `older` links the rest) that the old
 * allocator still owns is copied into the new one: allocate, memcpy, ot_set_address, and
 * relink the one pointer that leads to it (the index slot, found again with btree_upsert
 * on the existing key, which allocates nothing; or the newer version's `older`). Versions
 * above SEGMENT_MAX_SMALL are malloc'd, not carved from segments: they are not copied,
 * only handed to the new allocator's list (segment_adopt_large). When the last chunk of
 * the last namespace is done, the old allocator is "emptied" and old_segments_seq (C) is
 * db->seq at that moment.
 *
 * Nothing is freed object by object: the old allocator is destroyed whole when no reader
 * can still hold a pointer into it (compact_release): when no snapshot is open, or the
 * snapshot horizon has passed C. It is checked at the end of each shard's compaction, by
 * shard_reclaim on the shard's writes, and at the next shoal_compact. Until then a second
 * compaction skips the shard. Frees that happen meanwhile (writers replacing versions that
 * were not moved yet, reclaim, namespace drops) go to the allocator that owns the version
 * (segment_owner); freeing into the old one is harmless, it dies whole later.
 *
 * Invariants
 * ----------
 *   K1. After the swap, nothing is allocated from the old allocator: it only receives
 *       frees, and is read by the copies.
 *   K2. A version is copied, its object-table entry moved and its one referrer relinked
 *       within one hold of the shard's write lock, so a reader (who holds the read lock)
 *       sees each chain whole, in either copy. A version's bytes do not change when it
 *       moves (only the `older` of its new copy may be relinked later, as any version's).
 *   K3. The old copy of a moved version is never freed or written: it stays readable, byte
 *       for byte, until the old allocator is destroyed. So pointers that readers took
 *       before the move (an iterator's chunk, a checkpoint's current entry) stay valid.
 *   K4. When a shard is marked emptied, no version reachable from any index, retire list
 *       or writer lives in the old allocator: every namespace that existed at the swap was
 *       walked to its end (later ones allocate only in the new allocator, K1), a key
 *       written behind the walk was written into the new allocator (K1), and versions are
 *       reachable only through index heads and `older` links (internal.h I3: retired
 *       versions stay linked until reclaim unlinks and frees them).
 *   K5. The old allocator is destroyed only when emptied and, under the write lock (no
 *       point read in progress), either no snapshot is open or snapshot_horizon() > C.
 *       Every reader that may hold a pointer into it across a lock release is an iterator
 *       (checkpoints read through iterators), which holds a snapshot slot from before its
 *       first read until it is freed (iter.c T2). Such an iterator read the old copy before
 *       the chunk that moved it, so its seq is at most C; and a snapshot whose seq is above
 *       C read db->seq after C was read, i.e. after the move ended, and sees only copies.
 *       The comparison is strict because several snapshots may share seq C on both sides of
 *       the move's end (the object table's retire epochs are "free when horizon >= epoch";
 *       here the epoch is C + 1).
 *   K6. Compaction never takes the segment memory of the database past
 *       SHOAL_OPT_MEMORY_LIMIT: a shard whose live small bytes would not fit next to the
 *       current total is skipped before the swap, and each copy checks the room left (as
 *       last published, less what the chunk copied) and stops the shard cleanly first.
 *   K7. A shard stopped part way (memory limit, out of memory) stays correct: every chain
 *       is whole with some versions in each allocator (K2); it is not emptied, so nothing
 *       is destroyed, and the next shoal_compact resumes it with the same old allocator.
 *       Calls run one at a time (db->compact_lock, outside every other lock).
 *
 * Durable mode: compaction changes no key, value or seq, so it writes no log record; a
 * checkpoint running meanwhile reads through iterators at its snapshot (K3, K5).
 *
 * Tested by tests/unit/test_compact.c: contents identical before and after (namespaces
 * pinned and spread, tombstones, chains that snapshots hold, large values, empty shards),
 * key order in memory, snapshots and open iterators across a compaction, release when they
 * close, the skip of a waiting shard, writers, readers and iterators on other threads
 * against a model (also under ThreadSanitizer), the memory limit, out of memory and
 * resumption, and a durable database compacted, checkpointed and reopened.
 */
#include "core/internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Keys moved per hold of the shard's write lock: as many as an iterator's refill reads. */
#define COMPACT_CHUNK_KEYS 256
/* Versions ahead of the one being copied whose first lines are prefetched. */
#define COMPACT_PREFETCH 4

enum compact_outcome {
    COMPACT_OK = 0,
    COMPACT_OVER_LIMIT, /* K6 */
    COMPACT_OUT_OF_MEMORY,
};

/* Test support (compact_fail_copies_after): copies left before failures start; < 0: off. */
static _Atomic long compact_copies_before_failure = -1;

void compact_fail_copies_after(long after)
{
    atomic_store(&compact_copies_before_failure, after);
}

static bool compact_injected_failure(void)
{
    long left = atomic_load(&compact_copies_before_failure);
    if (left < 0)
        return false;
    if (left == 0)
        return true;
    atomic_store(&compact_copies_before_failure, left - 1);
    return false;
}

/* One call's state. */
struct compact_run {
    struct shoal_db *db;
    shoal_compact_result result;
    uint8_t *resume; /* the last key of the previous chunk, SHOAL_MAX_KEY bytes */
    uint32_t resume_len;
    struct version *heads[COMPACT_CHUNK_KEYS];
    uint64_t room; /* bytes the chunk may still copy (K6); UINT64_MAX without a limit */
    uint64_t shard_versions, shard_bytes; /* this call's copies on the current shard */
};

uint64_t compact_release(struct shard *s, bool force)
{
    if (!s->old_segments || !s->old_segments_emptied)
        return 0;
    struct shoal_db *db = s->db;
    if (atomic_load(&db->snapshots_open) != 0) {
        /* K5. Reading the horizon scans the snapshot slots: writers do it now and then. */
        if (!force && (++s->old_segments_checks & 63u) != 0)
            return 0;
        s->old_segments_checks = 0;
        if (snapshot_horizon(db) <= s->old_segments_seq)
            return 0;
    }
    struct segment_stats st;
    segment_stats(s->old_segments, &st);
    segment_destroy(s->old_segments);
    s->old_segments = NULL;
    s->old_segments_emptied = false;
    counter_add(&s->compact_released, st.bytes_reserved);
    shard_refresh_memory(s);
    return st.bytes_reserved;
}

static inline void compact_prefetch(const struct version *v)
{
    __builtin_prefetch(v);
    __builtin_prefetch((const char *)v + 64);
    __builtin_prefetch((const char *)v + 128);
}

/* Moves what the old allocator still owns of the chain that starts at head (the value of
 * head's key in tree), newest first (K2). On a stop the chain stays whole: the versions
 * before the stop are copies, the rest still old ones (K7). */
static enum compact_outcome compact_move_chain(struct compact_run *run, struct shard *s,
                                               struct btree *tree, struct version *head)
{
    struct segment_allocator *old = s->old_segments;
    struct version *newer = NULL; /* the version whose `older` leads to v; NULL: the index */
    for (struct version *v = head; v; newer = v, v = v->older) {
        size_t size = version_size(v->klen, v->vlen);
        if (segment_owner(v, size) != old)
            continue;
        if (size > SEGMENT_MAX_SMALL) {
            segment_adopt_large(s->segments, v, size); /* it stays where it is */
            continue;
        }
        size_t occupied = segment_class_size(size);
        if (occupied > run->room)
            return COMPACT_OVER_LIMIT;
        struct version *copy = compact_injected_failure() ? NULL : segment_alloc(s->segments, size);
        if (!copy)
            return COMPACT_OUT_OF_MEMORY;
        if (run->room != UINT64_MAX)
            run->room -= occupied;
        memcpy(copy, v, size);
        ot_set_address(s->objects, v->id, copy);
        if (newer) {
            newer->older = copy;
        } else {
            void **slot;
            bool created;
            /* The key is present, so this finds its slot without allocating. */
            int err = btree_upsert(tree, version_key(v), v->klen, &slot, &created);
            (void)err;
            assert(err == 0 && !created && *slot == v);
            *slot = copy;
        }
        v = copy; /* K3: the old copy is left as it is; the walk goes on from the new one */
        run->shard_versions++;
        run->shard_bytes += occupied;
    }
    return COMPACT_OK;
}

static int compact_key_compare(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Sets the room the next chunk may copy into (K6). */
static void compact_measure_room(struct compact_run *run)
{
    uint64_t limit = atomic_load_explicit(&run->db->memory_limit, memory_order_relaxed);
    if (limit == 0) {
        run->room = UINT64_MAX;
        return;
    }
    uint64_t used = db_memory_in_use(run->db);
    run->room = used < limit ? limit - used : 0;
}

/* Moves the next chunk of ns's index on shard s, from just past run->resume (from the
 * first key when !*started). Sets *finished when the index has no key left after it. */
static enum compact_outcome compact_chunk(struct compact_run *run, struct shard *s,
                                          struct namespace *ns, bool *started, bool *finished)
{
    shard_write_lock(s);
    /* Read under the lock: a writer may be creating the index, or a drop freeing it. */
    struct btree *tree = ns->parts[s->index].tree;
    if (!tree) {
        shard_write_unlock(s);
        *finished = true;
        return COMPACT_OK;
    }
    struct btree_cursor cursor;
    if (*started) {
        btree_seek_ge(tree, &cursor, run->resume, run->resume_len);
        if (btree_cursor_valid(&cursor)) {
            const struct version *v = btree_cursor_value(&cursor);
            if (compact_key_compare(version_key(v), v->klen, run->resume, run->resume_len) == 0)
                btree_next(&cursor);
        }
    } else {
        btree_seek_ge(tree, &cursor, NULL, 0);
    }
    /* The heads first, then the moves: relinking a head goes through btree_upsert, after
     * which a cursor is no longer promised to be valid. */
    size_t count = 0;
    for (; btree_cursor_valid(&cursor) && count < COMPACT_CHUNK_KEYS; btree_next(&cursor))
        run->heads[count++] = btree_cursor_value(&cursor);
    *finished = !btree_cursor_valid(&cursor);
    if (count > 0) {
        const struct version *last = run->heads[count - 1];
        memcpy(run->resume, version_key(last), last->klen);
        run->resume_len = last->klen;
        *started = true;
    }
    compact_measure_room(run);
    enum compact_outcome outcome = COMPACT_OK;
    for (size_t i = 0; i < count && outcome == COMPACT_OK; i++) {
        if (i + COMPACT_PREFETCH < count)
            compact_prefetch(run->heads[i + COMPACT_PREFETCH]);
        outcome = compact_move_chain(run, s, tree, run->heads[i]);
    }
    shard_refresh_memory(s);
    shard_write_unlock(s);
    return outcome;
}

/* Takes a reference to every namespace in the catalog (dropped ones too: one whose data
 * waits for its last iterator still has an index here). *out is NULL when there is none. */
static int compact_namespaces(struct shoal_db *db, struct namespace ***out, uint32_t *count)
{
    *out = NULL;
    *count = 0;
    pthread_mutex_lock(&db->catalog_lock);
    struct namespace **list = db->ns_high ? malloc(db->ns_high * sizeof *list) : NULL;
    if (db->ns_high && !list) {
        pthread_mutex_unlock(&db->catalog_lock);
        return SHOAL_ENOMEM;
    }
    for (uint32_t slot = 0; slot < db->ns_high; slot++) {
        struct namespace *ns = db->namespaces[slot];
        if (ns) {
            atomic_fetch_add(&ns->refs, 1);
            list[(*count)++] = ns;
        }
    }
    pthread_mutex_unlock(&db->catalog_lock);
    *out = list;
    return 0;
}

/* Starts (or resumes, K7) the compaction of one shard under its write lock. Returns
 * COMPACT_OK with *go set when there is work to do. */
static enum compact_outcome compact_begin(struct compact_run *run, struct shard *s, bool *go)
{
    *go = false;
    shard_write_lock(s);
    run->result.bytes_released += compact_release(s, true);
    if (s->old_segments && s->old_segments_emptied) {
        shard_write_unlock(s);
        run->result.shards_skipped++;
        run->result.shards_waiting++;
        return COMPACT_OK;
    }
    if (!s->old_segments) {
        struct segment_stats st;
        segment_stats(s->segments, &st);
        if (st.objects == 0) {
            shard_write_unlock(s); /* nothing stored: nothing to do */
            return COMPACT_OK;
        }
        uint64_t limit = atomic_load_explicit(&run->db->memory_limit, memory_order_relaxed);
        uint64_t copies = st.bytes_in_use - st.large_bytes; /* at most this is copied */
        if (limit != 0 && db_memory_in_use(run->db) + copies > limit) {
            shard_write_unlock(s);
            return COMPACT_OVER_LIMIT; /* K6: skipped before anything changed */
        }
        struct segment_allocator *fresh = segment_new();
        if (!fresh) {
            shard_write_unlock(s);
            return COMPACT_OUT_OF_MEMORY;
        }
        s->old_segments = s->segments; /* K1 */
        s->segments = fresh;
        s->old_segments_emptied = false;
        s->old_segments_checks = 0;
    }
    shard_write_unlock(s);
    *go = true;
    return COMPACT_OK;
}

/* Compacts shard s: swap (or resume), move every namespace's versions, mark emptied and
 * release if no reader holds the old allocator. */
static enum compact_outcome compact_shard(struct compact_run *run, struct shard *s)
{
    bool go;
    enum compact_outcome outcome = compact_begin(run, s, &go);
    if (outcome != COMPACT_OK || !go)
        return outcome;
    /* After the swap: a namespace created later allocates only in the new allocator. */
    struct namespace **namespaces;
    uint32_t count;
    if (compact_namespaces(run->db, &namespaces, &count) != 0)
        return COMPACT_OUT_OF_MEMORY;
    run->shard_versions = run->shard_bytes = 0;
    for (uint32_t k = 0; k < count && outcome == COMPACT_OK; k++) {
        bool started = false, finished = false;
        while (!finished && outcome == COMPACT_OK)
            outcome = compact_chunk(run, s, namespaces[k], &started, &finished);
    }
    for (uint32_t k = 0; k < count; k++)
        namespace_release(namespaces[k]);
    free(namespaces);

    shard_write_lock(s);
    counter_add(&s->compact_versions, run->shard_versions);
    counter_add(&s->compact_bytes, run->shard_bytes);
    run->result.versions_moved += run->shard_versions;
    run->result.bytes_moved += run->shard_bytes;
    if (outcome == COMPACT_OK) {
        s->old_segments_emptied = true; /* K4 */
        s->old_segments_seq = atomic_load(&run->db->seq);
        run->result.bytes_released += compact_release(s, true);
        run->result.shards_compacted++;
    }
    shard_refresh_memory(s);
    shard_write_unlock(s);
    return outcome;
}

SHOAL_API int shoal_compact(shoal_db *db, shoal_compact_result *out)
{
    if (!db)
        return SHOAL_EINVAL;
    struct compact_run *run = calloc(1, sizeof *run);
    uint8_t *resume = malloc(SHOAL_MAX_KEY);
    if (!run || !resume) {
        free(run);
        free(resume);
        if (out)
            memset(out, 0, sizeof *out);
        return SHOAL_ENOMEM;
    }
    run->db = db;
    run->resume = resume;
    int err = 0;
    pthread_mutex_lock(&db->compact_lock);
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load_explicit(&db->shards[i], memory_order_acquire);
        if (!s)
            continue; /* never written: nothing to do */
        enum compact_outcome outcome = compact_shard(run, s);
        if (outcome == COMPACT_OK)
            continue;
        run->result.shards_skipped++;
        if (outcome == COMPACT_OVER_LIMIT) {
            /* Another shard may still fit. */
            run->result.shards_over_limit++;
            err = SHOAL_EMEMLIMIT;
            continue;
        }
        err = SHOAL_ENOMEM; /* K7: stop cleanly; the shards not reached keep their layout */
        break;
    }
    if (err == 0)
        atomic_fetch_add(&db->compactions, 1);
    pthread_mutex_unlock(&db->compact_lock);
    if (out)
        *out = run->result;
    free(resume);
    free(run);
    return err;
}
