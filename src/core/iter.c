/*
 * iter.c -- ordered iterators over a namespace, at a snapshot, in short steps.
 *
 * An iterator reads each of its shards through a cursor that holds no lock between
 * steps: a refill takes the shard's read lock, seeks to just past the last key it visited,
 * collects up to ITER_CHUNK_KEYS versions visible at the iterator's seq, remembers the last
 * key it visited and lets the lock go. Writers therefore wait at most one chunk for a
 * scan, however long it is. Because every read is at the iterator's snapshot seq, the
 * chunks join into one consistent view.
 *
 * Nothing is copied: the iterator hands out pointers into the versions themselves. That is
 * safe without the lock because a version visible at seq S is freed only once no snapshot
 * at or before S is open (internal.h I4), and the iterator always holds one (T2); and a
 * dropped namespace's versions are freed only when its last iterator goes (T3).
 *
 * A spread namespace has one cursor per shard; a tournament tree of losers ordered by each
 * cursor's current key merges them (the smallest first, or the largest when reverse). Each
 * step replays one path from a leaf to the root: log2(cursors) comparisons, each of one
 * stored loser with the path's current winner, chosen without a branch. A binary heap did
 * up to two comparisons per level, each a branch that random keys mispredict half the time:
 * with 8 shards it was 17% of a full scan's time, and the loser tree scans 1M keys 10-25%
 * faster (alternating runs). Refills read a leaf's values in place
 * (btree_cursor_leaf_values) instead of calling the cursor's functions per entry, and
 * start loading the next leaf while they read this one: together 12.4M -> 19.7M keys/s in
 * shoal-bench's scan.
 *
 * Bounds: the scan covers [lower, upper) where lower = max(start, prefix) and upper =
 * min(end, the first key after every key with the prefix).
 *
 * Invariants:
 *   T1. A cursor's resume key is the last key its shard's index showed it, visible or
 *       not, so a refill never returns a key twice and never skips one.
 *   T2. The iterator holds a snapshot slot of its own from creation to free (a new one, or
 *       one pinned at the caller's snapshot's seq), so the versions it reads are never
 *       reclaimed under it, even if the caller releases its snapshot first.
 *   T3. ns->iterators counts the namespace's open iterators; shoal_ns_drop frees the
 *       namespace's data only when it is zero, else the last iterator to go frees it.
 *
 * Tested by tests/unit/test_iter.c (bounds, prefixes, reverse, spread merge, chunks
 * interleaved with writes) and the model test.
 */
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>

#define ITER_CHUNK_KEYS 256
#define ITER_PREFETCH 16
#define ITER_READ_AHEAD 8

/* The merge's leaves, a power of two >= the cursors, then never exceed SHOAL_MAX_SHARDS. */
_Static_assert((SHOAL_MAX_SHARDS & (SHOAL_MAX_SHARDS - 1)) == 0, "shard limit a power of two");

struct buffer {
    uint8_t *data;
    size_t len, cap;
};

static int buffer_reserve(struct buffer *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (!data)
        return SHOAL_ENOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buffer_set(struct buffer *b, const void *data, size_t len)
{
    b->len = 0;
    if (buffer_reserve(b, len ? len : 1))
        return SHOAL_ENOMEM;
    if (len)
        memcpy(b->data, data, len);
    b->len = len;
    return 0;
}

struct chunk_entry {
    uint64_t prefix; /* the first 8 key bytes, big-endian: most merge comparisons end here */
    const struct version *version;
};

static uint64_t key_prefix(const uint8_t *key, uint32_t klen)
{
    uint8_t bytes[8] = {0};
    memcpy(bytes, key, klen < 8 ? klen : 8);
    uint64_t v;
    memcpy(&v, bytes, 8);
    return __builtin_bswap64(v);
}

struct cursor {
    unsigned shard;
    struct chunk_entry *entries;
    size_t count, pos;
    struct buffer resume;      /* T1 */
    bool started, exhausted;
};

struct shoal_iter {
    struct namespace *ns;
    struct shoal_db *db;
    shoal_snapshot *own_snapshot; /* T2: taken when the caller gave none */
    uint64_t at;
    struct buffer lower, upper;
    bool has_lower, has_upper, reverse;
    struct cursor *cursors;
    unsigned cursor_count;
    /* The merge (see the top). order[i] is cursor i's current 8-byte prefix, inverted when
     * reverse so that the smallest always comes first, and UINT64_MAX once the cursor is
     * out of entries; most comparisons read only this dense array. Cursors number `leaves`
     * (a power of two); those from cursor_count on are padding and always out. loser[n]
     * for n in [1, leaves) is the loser of the match at tree node n, whose children are
     * nodes 2n and 2n + 1, cursor i being node leaves + i. */
    uint64_t *order;
    unsigned *loser;
    unsigned leaves;
    unsigned winner;   /* the cursor whose entry is current, when has_current */
    bool has_current;
    unsigned chunk_keys; /* entries a refill collects, at most ITER_CHUNK_KEYS */
    uint64_t refills;    /* times a cursor took its shard's lock (iter_refills) */
    bool begun;
    int error;
};

static int key_compare(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static const uint8_t *cursor_key(const struct cursor *c, uint32_t *klen)
{
    const struct version *v = c->entries[c->pos].version;
    *klen = v->klen;
    return version_key(v);
}

/* Starts loading a version the refill will read soon: its header and key, and the value
 * the caller will read after it. A version is not aligned to cache lines, so a 16-byte key
 * and a 100-byte value after the 48-byte header reach into a fourth line about half the
 * time; four lines cover versions up to ~200 bytes, longer values are read sequentially
 * and the hardware prefetcher follows them. */
static inline void iter_prefetch_version(const char *p)
{
    __builtin_prefetch(p);
    __builtin_prefetch(p + 64);
    __builtin_prefetch(p + 128);
    __builtin_prefetch(p + 192);
}

/* Copies the next chunk of visible entries of the cursor's shard. */
static int cursor_refill(struct shoal_iter *it, struct cursor *c)
{
    c->count = c->pos = 0;
    if (c->exhausted)
        return 0;
    struct namespace *ns = it->ns;
    struct shard *s = atomic_load_explicit(&it->db->shards[c->shard], memory_order_acquire);
    if (!s) {
        c->exhausted = true;
        return 0;
    }
    struct thread_state *t = db_thread(it->db);
    it->refills++;
    shard_read_lock(s, t);
    if (atomic_load_explicit(&ns->dropped, memory_order_acquire)) {
        shard_read_unlock(s, t);
        return SHOAL_EDROPPED;
    }
    struct btree *tree = ns->parts[c->shard].tree;
    if (!tree) {
        shard_read_unlock(s, t);
        c->exhausted = true;
        return 0;
    }
    struct btree_cursor bc;
    const void *from = c->started ? c->resume.data : NULL;
    size_t from_len = c->started ? c->resume.len : 0;
    if (!it->reverse) {
        if (!c->started && it->has_lower) {
            from = it->lower.data;
            from_len = it->lower.len;
        }
        btree_seek_ge(tree, &bc, from, (uint32_t)from_len);
        /* Resuming: the resume key itself was visited already. */
        if (c->started && btree_cursor_valid(&bc)) {
            const struct version *v = btree_cursor_value(&bc);
            if (key_compare(v->data, v->klen, c->resume.data, c->resume.len) == 0)
                btree_next(&bc);
        }
    } else {
        if (!c->started && it->has_upper) {
            from = it->upper.data;
            from_len = it->upper.len;
        }
        btree_seek_lt(tree, &bc, from, (uint32_t)from_len);
    }
    c->started = true;

    /* The entries are read a leaf at a time, in place (btree_cursor_leaf_values). Versions
     * live wherever they were allocated, so each can be a cache miss: the loop prefetches
     * ITER_PREFETCH entries ahead, and each leaf starts loading the next one. */
    const struct version *last = NULL;
    bool bound = false, gave_way = false;
    size_t visited = 0;
    const size_t visit_limit = 4 * (size_t)it->chunk_keys;
    /* A chunk ends at a count of entries or of keys visited, so that invisible keys cannot
     * keep the lock either. */
    while (btree_cursor_valid(&bc) && c->count < it->chunk_keys && visited < visit_limit) {
        uint32_t n;
        void *const *values = btree_cursor_leaf_values(&bc, &n);
        btree_cursor_prefetch_neighbor(&bc, it->reverse);
        const int step = it->reverse ? -1 : 1;
        const uint32_t left = it->reverse ? (uint32_t)bc.pos + 1 : n - (uint32_t)bc.pos;
        void *const *at = values + bc.pos; /* at[i * step] is the i-th entry from here */
        for (uint32_t i = 0; i < ITER_PREFETCH && i < left; i++)
            iter_prefetch_version(at[(int)i * step]);
        uint32_t i = 0;
        for (; i < left && c->count < it->chunk_keys && visited < visit_limit; i++) {
            /* A writer waiting for this shard ends the chunk: it waits for one entry, not
             * for a whole chunk (the next refill resumes after the last key visited). */
            if (visited > 0 && atomic_load_explicit(&s->writer, memory_order_relaxed)) {
                gave_way = true;
                break;
            }
            const struct version *v = at[(int)i * step];
            if ((!it->reverse && it->has_upper &&
                 key_compare(v->data, v->klen, it->upper.data, it->upper.len) >= 0) ||
                (it->reverse && it->has_lower &&
                 key_compare(v->data, v->klen, it->lower.data, it->lower.len) < 0)) {
                bound = true;
                break;
            }
            if (i + ITER_PREFETCH < left)
                iter_prefetch_version(at[(int)(i + ITER_PREFETCH) * step]);
            last = v;
            visited++;
            const struct version *seen = version_visible(v, it->at);
            if (seen && !version_is_tombstone(seen)) {
                struct chunk_entry *e = &c->entries[c->count++];
                e->prefix = key_prefix(seen->data, seen->klen);
                e->version = seen;
            }
        }
        if (bound || gave_way)
            break;
        if (i == left)
            btree_cursor_next_leaf(&bc, it->reverse);
        else
            bc.pos += (int)i * step;
    }
    bool more = gave_way || (!bound && btree_cursor_valid(&bc));
    int err = 0;
    if (last)
        err = buffer_set(&c->resume, last->data, last->klen);
    shard_read_unlock(s, t);
    if (err)
        return err;
    if (!more)
        c->exhausted = true;
    return 0;
}

/* Refills until the cursor has an entry or is exhausted. */
static int cursor_fill(struct shoal_iter *it, struct cursor *c)
{
    while (c->pos >= c->count && !c->exhausted) {
        int err = cursor_refill(it, c);
        if (err)
            return err;
    }
    return 0;
}

static bool cursor_has(const struct cursor *c)
{
    return c->pos < c->count;
}

static uint64_t cursor_order(const struct shoal_iter *it, const struct cursor *c)
{
    uint64_t prefix = c->entries[c->pos].prefix;
    return it->reverse ? ~prefix : prefix;
}

/* Whether cursor a's entry comes before cursor b's when their orders are equal: rare on
 * random keys, so kept out of line. A cursor that is out comes after every live one. */
static __attribute__((noinline)) bool merge_before_tied(const struct shoal_iter *it,
                                                        unsigned a, unsigned b)
{
    bool a_live = a < it->cursor_count && cursor_has(&it->cursors[a]);
    bool b_live = b < it->cursor_count && cursor_has(&it->cursors[b]);
    if (!a_live || !b_live)
        return a_live;
    uint32_t alen, blen;
    const uint8_t *ak = cursor_key(&it->cursors[a], &alen);
    const uint8_t *bk = cursor_key(&it->cursors[b], &blen);
    int c = key_compare(ak, alen, bk, blen);
    return it->reverse ? c > 0 : c < 0;
}

/* Whether cursor a's current entry should come before cursor b's. */
static inline bool merge_before(const struct shoal_iter *it, unsigned a, unsigned b)
{
    uint64_t oa = it->order[a], ob = it->order[b];
    if (__builtin_expect(oa != ob, 1))
        return oa < ob;
    return merge_before_tied(it, a, b);
}

static void merge_set_order(struct shoal_iter *it, unsigned i)
{
    const struct cursor *c = &it->cursors[i];
    it->order[i] = cursor_has(c) ? cursor_order(it, c) : UINT64_MAX;
}

/* Plays cursor i's new entry up the tree: at each node the stored loser and the path's
 * winner so far meet, and the node keeps the one that loses. */
static void merge_replay(struct shoal_iter *it, unsigned i)
{
    unsigned candidate = i;
    for (unsigned node = (it->leaves + i) >> 1; node >= 1; node >>= 1) {
        /* Select with a mask: as a conditional, the compiler makes it a branch. */
        unsigned both = it->loser[node] ^ candidate;
        unsigned stored_wins = 0u - (unsigned)merge_before(it, it->loser[node], candidate);
        candidate ^= both & stored_wins;
        it->loser[node] = candidate ^ both;
    }
    it->winner = candidate;
    it->has_current =
        candidate < it->cursor_count && cursor_has(&it->cursors[candidate]);
}

/* Plays every match from the leaves up. winners[n] is the winner below node n. */
static void merge_build(struct shoal_iter *it)
{
    unsigned leaves = it->leaves;
    unsigned winners[2 * SHOAL_MAX_SHARDS]; /* leaves <= SHOAL_MAX_SHARDS, a power of two */
    for (unsigned i = 0; i < leaves; i++) {
        if (i < it->cursor_count)
            merge_set_order(it, i);
        else
            it->order[i] = UINT64_MAX;
        winners[leaves + i] = i;
    }
    for (unsigned node = leaves - 1; node >= 1; node--) {
        unsigned a = winners[2 * node], b = winners[2 * node + 1];
        bool a_wins = merge_before(it, a, b);
        winners[node] = a_wins ? a : b;
        it->loser[node] = a_wins ? b : a;
    }
    it->winner = winners[1]; /* with one leaf, node 1 is that leaf */
    it->has_current = it->winner < it->cursor_count && cursor_has(&it->cursors[it->winner]);
}

/* The first key after every key that starts with prefix; false if there is none (the
 * prefix is all 0xff). */
static bool prefix_successor(const uint8_t *prefix, size_t len, struct buffer *out, int *err)
{
    while (len > 0 && prefix[len - 1] == 0xff)
        len--;
    if (len == 0)
        return false;
    if ((*err = buffer_set(out, prefix, len)) != 0)
        return false;
    out->data[len - 1]++;
    return true;
}

static int iter_bounds(struct shoal_iter *it, const shoal_iter_options *o)
{
    int err = 0;
    if (o->start && o->start_len) {
        if ((err = buffer_set(&it->lower, o->start, o->start_len)))
            return err;
        it->has_lower = true;
    }
    if (o->end && o->end_len) {
        if ((err = buffer_set(&it->upper, o->end, o->end_len)))
            return err;
        it->has_upper = true;
    }
    if (o->prefix && o->prefix_len) {
        if (!it->has_lower || key_compare(o->prefix, o->prefix_len, it->lower.data,
                                          it->lower.len) > 0) {
            if ((err = buffer_set(&it->lower, o->prefix, o->prefix_len)))
                return err;
            it->has_lower = true;
        }
        struct buffer next = {0};
        if (prefix_successor(o->prefix, o->prefix_len, &next, &err) &&
            (!it->has_upper ||
             key_compare(next.data, next.len, it->upper.data, it->upper.len) < 0)) {
            free(it->upper.data);
            it->upper = next;
            it->has_upper = true;
        } else {
            free(next.data);
        }
    }
    return err;
}

int iter_create(struct shoal_db *db, struct namespace *ns, int only_shard,
                const shoal_iter_options *opts, shoal_iter **out)
{
    *out = NULL;
    shoal_iter_options none = {0};
    const shoal_iter_options *o = opts ? opts : &none;
    if ((o->start_len && !o->start) || (o->end_len && !o->end) ||
        (o->prefix_len && !o->prefix) || (o->snap && o->snap->db != db))
        return SHOAL_EINVAL;
    if (atomic_load(&ns->dropped))
        return SHOAL_EDROPPED;
    struct shoal_iter *it = calloc(1, sizeof *it);
    if (!it)
        return SHOAL_ENOMEM;
    it->ns = ns;
    it->chunk_keys = ITER_CHUNK_KEYS;
    atomic_fetch_add(&ns->refs, 1); /* the namespace outlives a closed handle (shoal_iter_free) */
    it->db = db;
    /* T3: counted before the dropped flag is checked again, as shoal_ns_drop sets the
     * flag before it reads the count. */
    atomic_fetch_add(&ns->iterators, 1);
    if (atomic_load(&ns->dropped)) {
        shoal_iter_free(it);
        return SHOAL_EDROPPED;
    }
    it->reverse = o->reverse;
    int err = iter_bounds(it, o);
    if (!err)
        err = o->snap ? snapshot_pin(db, shoal_snapshot_seq(o->snap), &it->own_snapshot)
                      : shoal_snapshot_take(db, &it->own_snapshot);
    if (err) {
        shoal_iter_free(it);
        return err;
    }
    it->at = shoal_snapshot_seq(it->own_snapshot);
    unsigned count = ns->placement == SHOAL_PLACE_PINNED || only_shard >= 0
                         ? 1 : ns->shard_mask + 1;
    it->cursors = calloc(count, sizeof *it->cursors);
    unsigned leaves = 1;
    while (leaves < count)
        leaves *= 2;
    it->leaves = leaves;
    it->order = calloc(leaves, sizeof *it->order);
    it->loser = calloc(leaves, sizeof *it->loser);
    if (!it->cursors || !it->order || !it->loser) {
        shoal_iter_free(it);
        return SHOAL_ENOMEM;
    }
    it->cursor_count = count;
    for (unsigned i = 0; i < count; i++) {
        if (only_shard >= 0)
            it->cursors[i].shard = (unsigned)only_shard;
        else
            it->cursors[i].shard = ns->placement == SHOAL_PLACE_PINNED ? ns->shard : i;
        it->cursors[i].entries = malloc(ITER_CHUNK_KEYS * sizeof(struct chunk_entry));
        if (!it->cursors[i].entries) {
            shoal_iter_free(it);
            return SHOAL_ENOMEM;
        }
    }
    *out = it;
    return 0;
}

uint64_t iter_refills(const shoal_iter *it)
{
    return it->refills;
}

void iter_set_chunk_keys(shoal_iter *it, unsigned keys)
{
    it->chunk_keys = keys >= 1 && keys <= ITER_CHUNK_KEYS ? keys : ITER_CHUNK_KEYS;
}

SHOAL_API int shoal_iter_new(shoal_ns *h, const shoal_iter_options *opts, shoal_iter **out)
{
    if (!h || !out)
        return SHOAL_EINVAL;
    int err = iter_create(h->db, h->ns, -1, opts, out);
    if (!err)
        counter_add(&db_thread(h->db)->scans, 1);
    return err;
}

SHOAL_API int shoal_iter_next(shoal_iter *it)
{
    if (!it)
        return SHOAL_EINVAL;
    if (it->error)
        return it->error;
    int err = 0;
    if (!it->begun) {
        it->begun = true;
        if (it->has_lower && it->has_upper &&
            key_compare(it->lower.data, it->lower.len, it->upper.data, it->upper.len) >= 0) {
            it->has_current = false;
            return 0;
        }
        for (unsigned i = 0; i < it->cursor_count && !err; i++)
            err = cursor_fill(it, &it->cursors[i]);
        if (!err)
            merge_build(it);
    } else if (it->has_current) {
        unsigned w = it->winner;
        struct cursor *c = &it->cursors[w];
        c->pos++;
        /* The caller is about to read the values in version memory: ask for this cursor's
         * coming ones now (it advances about once per cursor_count steps). */
        if (c->pos + ITER_READ_AHEAD < c->count) {
            const char *p = (const char *)c->entries[c->pos + ITER_READ_AHEAD].version;
            __builtin_prefetch(p);
            __builtin_prefetch(p + 64);
            __builtin_prefetch(p + 128);
        }
        err = cursor_fill(it, c);
        if (!err) {
            merge_set_order(it, w);
            merge_replay(it, w);
        }
    }
    if (err) {
        it->error = err;
        it->has_current = false;
        return err;
    }
    return it->has_current ? 1 : 0;
}

SHOAL_API const void *shoal_iter_key(const shoal_iter *it, size_t *klen)
{
    if (!it || !it->has_current)
        return NULL;
    uint32_t len;
    const uint8_t *key = cursor_key(&it->cursors[it->winner], &len);
    if (klen)
        *klen = len;
    return key;
}

SHOAL_API const void *shoal_iter_value(const shoal_iter *it, size_t *vlen)
{
    if (!it || !it->has_current)
        return NULL;
    const struct cursor *c = &it->cursors[it->winner];
    const struct version *v = c->entries[c->pos].version;
    if (vlen)
        *vlen = v->vlen;
    return version_value(v);
}

SHOAL_API void shoal_iter_free(shoal_iter *it)
{
    if (!it)
        return;
    for (unsigned i = 0; it->cursors && i < it->cursor_count; i++) {
        free(it->cursors[i].entries);
        free(it->cursors[i].resume.data);
    }
    free(it->cursors);
    free(it->order);
    free(it->loser);
    free(it->lower.data);
    free(it->upper.data);
    shoal_snapshot_release(it->own_snapshot);
    if (atomic_fetch_sub(&it->ns->iterators, 1) == 1 && atomic_load(&it->ns->dropped))
        namespace_drop_finish(it->db, it->ns);
    namespace_release(it->ns);
    free(it);
}
