/*
 * btree.c -- the ordered index: a B+tree from byte-string keys to value pointers.
 *
 * Purpose
 * -------
 * Each (namespace, shard) pair keeps one tree that maps every key to its newest version
 * object. Point reads, the write path (btree_upsert), removal and ordered scans in both
 * directions go through it. The caller holds the shard's lock; the tree has no locking.
 *
 * Layout
 * ------
 * Leaves hold no key bytes but the few all their keys share. Every leaf keeps `skip`, the
 * number of leading bytes all its keys have in common (as far as the leaf knows: at most
 * BTREE_HEAD_BYTES = 32), and those bytes, the "head". A leaf slot is the key's bytes
 * [skip, skip + 8) read as a big-endian integer (zero padded when the key is shorter: the
 * "prefix") plus the value pointer; the full key comes from the value through the tree's
 * key_of callback. The prefixes of a leaf are one contiguous array, the values another, so
 * a search reads the head, the prefix array's cache lines, then one value pointer, then
 * (to confirm the match) the value's key. Among keys that share the head, two that differ
 * in their next 8 bytes are ordered by their prefixes alone; on equal prefixes the bytes
 * after skip + 8 decide, then the lengths (see btree_compare_rest). A search key that does
 * not share the head is below or above every key of the leaf, by the head's order.
 *
 *     leaf:  count | skip | prefix[LEAF_SLOTS] | head[32] | value[LEAF_SLOTS] | prev | next
 *     inner: count | skip | prefix[INNER_SLOTS] | head[32] | length[INNER_SLOTS-1]
 *            | tail[INNER_SLOTS-1] | child[INNER_SLOTS]
 *
 * The count comes first so that it shares a cache line with the first prefixes; the head
 * follows the prefixes, in the line of the last prefix that every search reads. An inner
 * node has one prefix slot more than it has separators, always a sentinel (invariant 9).
 *
 * Inner nodes own copies of their separators, stored the same way: a skip and head of the
 * bytes all separators of the node share, the prefix of bytes [skip, skip + 8) in a
 * contiguous array, the length, and a heap copy of the bytes after the 8th ("tail"; NULL
 * when the separator has 8 bytes or fewer; it does not depend on the skip, so a separator
 * moves between nodes without copying bytes). Separators are suffix-truncated: between the
 * last key A of a left node and the first key B of its right neighbour the separator is
 * the shortest prefix of B that is greater than A. For random keys that is one to three
 * bytes, so it lives in the prefix alone and costs no allocation; long separators appear
 * only where neighbouring keys share more than 8 bytes.
 *
 * Child i of an inner node holds the keys k with separator[i-1] <= k < separator[i].
 *
 * Insert policy
 * -------------
 * A full leaf first shares its entries with a neighbour under the same parent that has
 * room (the one with more room; the pair is balanced evenly), and splits only when both
 * neighbours are full. That lifts the average leaf fill for random inserts from about 69%
 * (plain halving splits) to about 87%: for 1M random 16-byte keys, 19.6 bytes/key instead
 * of 24.4, which would miss the 24-byte budget. Ascending or descending inserts end with
 * nearly full leaves, because every leaf behind the insertion point is topped up before a
 * new one is made. Inner nodes split in halves: they are few. Removal merges a leaf or
 * inner node that falls below a third full with a neighbour when both fit in one node,
 * else evens the pair out.
 *
 * Shared prefixes
 * ---------------
 * Redis-style keys share long prefixes: redis-benchmark's are "key:000000123456", so with
 * 8-byte prefixes taken from the start of the key every slot of every leaf held
 * "key:0000", each step of a leaf's search read a value's key (a DRAM miss) and memcmp'ed
 * it, and each step of an inner node's search read a separator's heap tail. Keys like
 * "user:1234:profile" or "session:2026-11-22:..." are the same case. So every node skips
 * the bytes all its keys share ("prefix truncation"), keeping them in its head:
 *
 *   - Search (btree_leaf_search_core, btree_inner_search): a node that skips nothing is
 *     searched exactly as before, its skip looked at only after the rank, and the descent
 *     looks at no inner skip until some inner node has raised one (tree->inner_skipping).
 *     Otherwise the key is held against head[0, skip): below
 *     gives position 0, above gives the count (not found either way; a key that is a proper
 *     prefix of the head, the empty key included, is below); equal ranks the key's bytes
 *     [skip, skip + 8), and equal prefixes compare the bytes from skip + 8 on, then lengths.
 *   - Lowering a skip reads no key: the bytes it brings into the prefixes are the head's
 *     (btree_prefix_lower). An insert whose key does not share a leaf's head lowers it to
 *     what they share; a merge drops to what the two heads share; redistributed entries
 *     keep their own leaf's skip when they stay among their own (a split never changes a
 *     skip) and drop to the two heads' common bytes when a leaf gets entries of both. The
 *     root leaf starts with its first key as head, so inserts keep its skip exact.
 *   - Raising a skip reads every key of the leaf (btree_leaf_raise), so it happens only
 *     where it pays: when an upsert's search meets equal prefixes, and only when the first
 *     and last keys share a byte past the head. Computing lcp(first, last) at every split
 *     would raise random keys' leaves by a byte each time (64 key reads per split) and
 *     help no search. An inner node raises from its separators' tails, no key read, when
 *     one of its separators gets an equal-prefixed neighbour or the node is filled anew.
 *   - A skip may be lower than what the keys share (correct, only slower), never higher
 *     (invariant 2); every change happens after the allocations an upsert needs, so a
 *     failed upsert leaves every skip and prefix as it was (invariant 8).
 *
 * Measured on the machine described under "Node sizes", the old tree against this one:
 *
 *   - bench/btree_vs_art.c, 1M keys, three alternating runs (best of 3 inside each), thread
 *     CPU ns per key; single runs of random keys vary by a third, hence the next figures:
 *
 *                                  insert ns             lookup ns             bytes/key
 *                                  before     after      before     after      before after
 *       redis-style (--redis)      1164-1519  591-757    1337-1548  627-704    20.4   20.5
 *       random 16-byte keys        278-347    285-356    289-524    306-519    20.3   20.3
 *
 *   - Both trees in one process, measured alternately, each in both positions so that
 *     placement and huge-page luck cancel (two identical trees differ by up to 6% this
 *     way): redis-style keys insert 2.0-2.1x and look up 2.1-2.2x faster, walks are equal;
 *     random keys insert 4% slower (median of six; the redistribution's bookkeeping of two
 *     sources and the separator fitting: 2.8% more instructions), look up 1% slower (1.7%
 *     more instructions) and walk 3% faster. Testing the skip before the rank instead of
 *     after it had cost random lookups 12%; raising every split leaf's skip to lcp(first,
 *     last), as random keys' leaves would be at each split, cost random inserts 9% and
 *     lookups 15%.
 *   - shoal-bench --only fill,get,scan --anchors lmdb, three alternating runs, medians:
 *     fill 1.82M -> 1.90M keys/s, get_1t 1.15M -> 1.19M, get_2t 2.17M -> 2.28M, scan 7.39M
 *     -> 7.57M: all within the run-to-run noise (single fills ranged 1.70-1.92M).
 *   - shoal-server in memory mode under redis-benchmark -r 1000000 -n 3000000 -P 16 (SET
 *     then GET), four alternating runs, medians: SET 395K -> 498K requests/s, GET 514K ->
 *     592K, GET p50 1.2-1.7 ms -> 1.06-1.2 ms.
 *
 * Node sizes
 * ----------
 * Chosen by measurement with bench/btree_vs_art.c: 1M random 16-byte keys inserted in
 * random order and looked up in another; each value a separately allocated object holding
 * its key. The machine is a shared 2-core 2 GHz Xeon VM whose effective cache is the 4 MiB
 * L2: a dependent load over 64 MiB takes ~145 ns. Times are thread CPU time per key, the
 * best and the median of 4 runs (the median of the per-run ratios for the last column):
 *
 *     leaf/inner  bytes/key  insert ns  lookup ns  walk ns/key  lookup / ART lookup
 *       32/64         21.1    277/364    309/348      9.1             2.35
 *       48/64         19.9    304/330    302/326      8.1             2.23
 *       64/64         19.6    290/320    313/350      6.5             2.36
 *       64/32         19.7    295/350    478/516      6.2             3.08
 *       96/64         19.0    266/352    290/496      5.5             2.43
 *      128/64         18.8    327/350    396/427      6.1             2.56
 *       64/128        19.6    309/334    523/594      8.2             3.32
 *
 * 64/64 is the choice: the least memory among the sizes that look up fastest, and a walk
 * within 20% of the fastest. A leaf is 1048 bytes and an inner node 1792 (before the heads
 * were added; 1080 and 1824 now); the inner levels of 1M keys are ~0.8 MiB and stay in
 * cache. Leaf size barely moves lookups because the
 * descent prefetches the whole leaf (prefixes and values) the moment it knows it, so a
 * leaf costs about one memory latency whatever its size. A lookup is then two dependent
 * misses, the leaf and the value whose key confirms the match (the second is the one the
 * caller pays anyway to read the version): ~290 ns of latency here. A loop of independent
 * lookups beats that only where the processor overlaps consecutive lookups. Leaf fill is
 * ~87% (the figures predate the node pool, see "Node memory"). The goal of "well under
 * 300 ns" per lookup is not met: the best runs give ~300-315 ns, 500-700 ns while other
 * work loads the machine.
 *
 * Against an adaptive radix tree built the same way (no key copies: its leaves are the
 * values) the same runs gave the ART ~140-155 ns lookups: 2.2-2.4x faster, up to 3x on a
 * loaded machine. It makes the same two misses, but its last node (a node16) is 3 cache
 * lines to this tree's 17 per leaf and its lookup runs far fewer instructions, so more of
 * consecutive lookups overlap. It also inserts ~1.9x faster, walks ~3x slower and holds
 * 22.8 bytes/key (16% more). This tree is kept for its walks in both directions (scans,
 * prefix scans, checkpoints), its memory, and cursors that step either way in O(1); an ART
 * would serve namespaces that do almost only point reads better.
 *
 * Node memory
 * -----------
 * Nodes come from the tree's own pool, not from malloc: chunks carved front to back (the
 * first 64 KiB, each next one twice the last, up to 2 MiB), and a free list per node kind.
 * Once a tree holds 16 MiB of chunks, its next chunks are aligned huge pages (pages.h): a
 * lookup's leaf miss then costs no page walk, which made random gets ~1.1x faster again on
 * top of huge-page segments. Not before: a huge page is resident whole from its first
 * touch, and the half-used last chunk of each of 8 trees of 2.5 MiB (1M keys) cost 12 MB of
 * resident memory, which put the engine above Redis's memory per key. A tree of a few keys
 * still costs one 64 KiB chunk of which it touches one page. Freed
 * nodes stay in the tree's pool until btree_free (like a file's free pages in LMDB). Node
 * slots are rounded up to whole cache lines: a leaf takes 1088 bytes, an inner node 1856.
 * A leaf's 32-byte head lives in what that rounding left over (a static assertion keeps a
 * 64-slot leaf at 1088 bytes); the inner node's head made its slot one line longer.
 * Separator tails are rare and stay on the C heap.
 *
 * Invariants (btree_check verifies each one)
 * ------------------------------------------
 *   1. Keys strictly ascend across each leaf and from each leaf to the next; every key k
 *      under separator bounds [low, high) satisfies low <= k < high.
 *   2. Every key of a leaf starts with the leaf's head[0, skip), skip <= BTREE_HEAD_BYTES,
 *      and each slot's prefix is its key's bytes [skip, skip + 8), big-endian, zero padded.
 *      Likewise every separator of an inner node starts with that node's head, and its
 *      stored prefix is its bytes [skip, skip + 8); an inner node skips only when
 *      tree->inner_skipping is set. A skip may be smaller than what the keys share
 *      (correct, only slower), never larger. No value is NULL outside the window between a
 *      creating btree_upsert and the caller's store.
 *   3. All leaves are at depth height-1. The root is a leaf with 1..LEAF_SLOTS keys or an
 *      inner node with 2..INNER_SLOTS children; an empty tree has no root (height 0).
 *   4. Every other leaf holds LEAF_MIN..LEAF_SLOTS keys and every other inner node
 *      INNER_MIN..INNER_SLOTS children, where MIN is a third of the capacity. Exception:
 *      after btree_remove failed to allocate a separator for a rebalance, leaves may stay
 *      below LEAF_MIN (never empty) and tree->fill_relaxed records it for good.
 *   5. Separators strictly ascend inside a node and lie strictly inside their bounds; a
 *      separator has length >= 1, prefix bytes past its length are zero, and it has a tail
 *      exactly when it is longer than 8 bytes.
 *   6. The leaves form a doubly linked list in key order; the first has no prev, the last
 *      no next.
 *   7. tree->count, tree->leaves, tree->inners and tree->separator_bytes equal what the
 *      nodes hold, so btree_memory() is exact.
 *   8. A failed btree_upsert changes nothing: every node and separator a split may need is
 *      allocated before the first node is touched. Redistributed entries are gathered in a
 *      copy, so a skip that must drop does so only in the nodes written after that point.
 *   9. Unused prefix slots (leaf slots past count, separator slots past count - 1, and
 *      the last separator slot always) hold UINT64_MAX whatever the node skips (lowering
 *      or raising a skip rewrites the used slots only), so searches run over whole arrays
 *      with a fixed number of steps. A used slot may hold UINT64_MAX too (eight 0xff
 *      bytes); no search prefix exceeds it, so the rank stops at or before the count.
 *
 * Testing
 * -------
 * tests/unit/test_btree.c runs the tree against a sorted-array model: random inserts,
 * upserts of existing keys and removes down to an empty root, keys sharing long prefixes,
 * the empty key, 64 KiB keys, seeks at, before, between and after keys, full walks in both
 * directions, injected allocation failures, with btree_check after each phase and enough
 * keys for 3+ levels. Prefix skipping has its own model tests: keys sharing stems of 0, 3,
 * 8, 13, 31, 32, 40 and 100 bytes (one stem per tree, then all of them mixed in one tree
 * so that neighbouring heads differ), keys that are prefixes of others, keys that break the
 * heads of the first, last and middle leaves, also while allocations fail. It runs under
 * ASan+UBSan too. bench/btree_vs_art.c measures the tree against an adaptive radix tree,
 * with random keys or (--redis) redis-benchmark's.
 */
#include "core/btree.h"

#include "core/pages.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define BTREE_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define BTREE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define BTREE_POISON(p, n) ((void)(p), (void)(n))
#define BTREE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Slots per leaf and children per inner node. Overridable at compile time only so that the
 * node-size measurement can be repeated; the defaults are the measured choice. */
#ifndef BTREE_LEAF_SLOTS
#define BTREE_LEAF_SLOTS 64
#endif
#ifndef BTREE_INNER_SLOTS
#define BTREE_INNER_SLOTS 64
#endif
#define BTREE_LEAF_MIN (BTREE_LEAF_SLOTS / 3)
#define BTREE_INNER_MIN (BTREE_INNER_SLOTS / 3)

/* The deepest tree a path can describe. Every non-root inner node has at least INNER_MIN
 * (>= 2) children and every non-root leaf at least LEAF_MIN keys, so a tree of height 40
 * would hold more than 2^38 keys. btree_upsert refuses to grow past it. */
#define BTREE_MAX_HEIGHT 40

#define BTREE_CACHE_LINE 64

/* The few places where inlining decides the speed of the read path or of redistribution
 * (measured; see btree_leaf_search_core). */
#define BTREE_ALWAYS_INLINE inline __attribute__((always_inline))
#define BTREE_NOINLINE __attribute__((noinline))

_Static_assert(BTREE_LEAF_SLOTS >= 8 && BTREE_LEAF_SLOTS <= 1024 && BTREE_LEAF_SLOTS % 8 == 0,
               "leaf slots: a multiple of 8 (btree_rank's blocks) from 8 to 1024");
_Static_assert(BTREE_INNER_SLOTS >= 8 && BTREE_INNER_SLOTS <= 1024 && BTREE_INNER_SLOTS % 8 == 0,
               "inner slots: a multiple of 8 (btree_rank's blocks) from 8 to 1024");

/* The most leading bytes a leaf can skip: its head's capacity. 32 bytes fill what the leaf's
 * slot had left over from rounding to whole cache lines, so skipping costs no memory. */
#define BTREE_HEAD_BYTES 32

struct btree_leaf {
    uint32_t count; /* first, so it shares the prefixes' first cache line */
    uint32_t skip;  /* leading bytes every key of the leaf shares: head[0, skip) */
    uint64_t prefix[BTREE_LEAF_SLOTS]; /* key bytes [skip, skip + 8) */
    /* Right after the prefixes: in the cache line of the last prefix, which every search
     * reads anyway. */
    uint8_t head[BTREE_HEAD_BYTES];
    void *value[BTREE_LEAF_SLOTS];
    struct btree_leaf *prev;
    struct btree_leaf *next;
};

struct btree_inner {
    uint32_t count; /* children; separators are count - 1 */
    uint32_t skip;  /* leading bytes every separator of the node shares: head[0, skip) */
    /* Separator bytes [skip, skip + 8). The last prefix slot is never used: it stays a
     * sentinel so that btree_rank always sees whole blocks of 8. */
    uint64_t prefix[BTREE_INNER_SLOTS];
    uint8_t head[BTREE_HEAD_BYTES]; /* within the lines a search prefetches */
    /* The children right after: a descent prefetches them with the prefixes, so reading
     * the chosen child does not wait for a second memory latency. */
    void *child[BTREE_INNER_SLOTS];
    uint32_t length[BTREE_INNER_SLOTS - 1];
    uint8_t *tail[BTREE_INNER_SLOTS - 1]; /* bytes 8.. of the separator, or NULL */
};

/* Where the tree's nodes come from (see "Node memory" above): chunks carved front to back,
 * and one free list per node kind (the first word of a free node links the next). */
struct btree_chunk {
    struct btree_chunk *next;
    size_t bytes;
};
struct btree_node_pool {
    struct btree_chunk *chunks;
    char *bump, *bump_end;
    void *free_leaves, *free_inners;
    size_t next_chunk_bytes;
    size_t mapped; /* bytes of all chunks */
};

struct btree {
    btree_key_fn key_of;
    void *root;               /* a leaf when height == 1, NULL when height == 0 */
    uint32_t height;          /* levels, leaves included */
    bool fill_relaxed;        /* invariant 4's exception has happened */
    bool inner_skipping;      /* some inner node may skip (see btree_descend) */
    size_t count;             /* keys */
    size_t leaves;            /* leaf nodes allocated */
    size_t inners;            /* inner nodes allocated */
    size_t separator_bytes;   /* bytes of separator tails allocated */
    long allocations_allowed; /* test hook: < 0 means unlimited */
    struct btree_node_pool pool;
};

/* A search key, with its prefix computed once. */
struct btree_key {
    const uint8_t *bytes;
    uint32_t length;
    uint64_t prefix;
};

/* A separator in transit between nodes. Ownership of the tail moves with the struct. */
struct btree_separator {
    uint64_t prefix;
    uint32_t length;
    uint8_t *tail;
};

/* The inner nodes passed on the way down, and the child taken at each. */
struct btree_path {
    struct btree_inner *node[BTREE_MAX_HEIGHT];
    uint32_t index[BTREE_MAX_HEIGHT];
};

/* Where a key falls in a leaf, as the write path needs it (btree_leaf_place). */
struct btree_leaf_place {
    uint32_t pos;    /* the first slot whose key is >= the key */
    bool found;      /* the key is at pos */
    uint32_t common; /* head bytes the key shares: the leaf's skip when it shares them all */
    uint32_t equal;  /* slots whose prefix equals the key's: more than one, or one that is
                      * not the key's own, means the leaf holds equal prefixes */
};

/* Leaf entries gathered from one or two leaves (the "sources") plus maybe one new entry, to
 * be redistributed. Each entry's prefix stays relative to its own source's skip, so that a
 * leaf refilled from one source alone keeps that skip and no prefix has to be recomputed;
 * a leaf that receives entries of both sources drops to what their heads share. */
struct btree_leaf_entries {
    uint32_t count;
    uint32_t sources;
    uint32_t source_end[2]; /* source s gave entries [source_end[s - 1] or 0, source_end[s]) */
    uint32_t source_skip[2];
    uint8_t source_head[2][BTREE_HEAD_BYTES];
    uint64_t prefix[2 * BTREE_LEAF_SLOTS + 1];
    void *value[2 * BTREE_LEAF_SLOTS + 1];
};

/* Children and separators gathered from up to two inner nodes plus the separator between
 * them (or one new child), to be redistributed. separators == children - 1 when complete. */
struct btree_inner_entries {
    uint32_t children;
    uint32_t separators;
    struct btree_separator separator[2 * BTREE_INNER_SLOTS];
    void *child[2 * BTREE_INNER_SLOTS + 1];
};

/* ---- memory ------------------------------------------------------------------------- */

static void *btree_allocate(struct btree *tree, size_t size)
{
    if (tree->allocations_allowed == 0)
        return NULL;
    if (tree->allocations_allowed > 0)
        tree->allocations_allowed--;
    return malloc(size);
}

/* Sets prefix slots [from, to) to the sentinel that invariant 9 requires of unused slots. */
static inline void btree_fill_sentinels(uint64_t *prefix, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++)
        prefix[i] = UINT64_MAX;
}

/* Node slots are rounded to cache lines so that a node never shares a line with its
 * neighbour and the descent's prefetch of a leaf covers whole lines. */
#define BTREE_LEAF_BYTES                                                                           \
    ((sizeof(struct btree_leaf) + BTREE_CACHE_LINE - 1) & ~(size_t)(BTREE_CACHE_LINE - 1))
#define BTREE_INNER_BYTES                                                                          \
    ((sizeof(struct btree_inner) + BTREE_CACHE_LINE - 1) & ~(size_t)(BTREE_CACHE_LINE - 1))
#define BTREE_HUGE_AFTER_BYTES ((size_t)16 << 20)
#define BTREE_FIRST_CHUNK_BYTES ((size_t)64 << 10)

/* The head fits in what rounding a leaf to cache lines used to waste (see "Node memory"). */
_Static_assert(BTREE_LEAF_SLOTS != 64 || BTREE_LEAF_BYTES == 1088,
               "a 64-slot leaf keeps its 1088-byte slot");

/* Takes a node from the pool: its free list first, then the current chunk, then a new
 * chunk twice the size of the last, up to a huge page. */
static void *btree_node_allocate(struct btree *tree, void **free_list, size_t bytes)
{
    if (tree->allocations_allowed == 0)
        return NULL;
    struct btree_node_pool *pool = &tree->pool;
    void *node = *free_list;
    if (node != NULL) {
        BTREE_UNPOISON(node, bytes);
        *free_list = *(void **)node;
    } else {
        if (pool->bump == NULL || (size_t)(pool->bump_end - pool->bump) < bytes) {
            size_t chunk_bytes =
                pool->next_chunk_bytes ? pool->next_chunk_bytes : BTREE_FIRST_CHUNK_BYTES;
            bool huge = chunk_bytes >= PAGES_HUGE_BYTES && pool->mapped >= BTREE_HUGE_AFTER_BYTES;
            struct btree_chunk *chunk = pages_map(chunk_bytes, huge);
            if (chunk == NULL)
                return NULL;
            /* The old chunk's tail (less than one node) is left unused. */
            chunk->next = pool->chunks;
            chunk->bytes = chunk_bytes;
            pool->chunks = chunk;
            pool->bump = (char *)chunk + BTREE_CACHE_LINE;
            pool->bump_end = (char *)chunk + chunk_bytes;
            BTREE_POISON(pool->bump, (size_t)(pool->bump_end - pool->bump));
            pool->mapped += chunk_bytes;
            if (chunk_bytes < PAGES_HUGE_BYTES)
                pool->next_chunk_bytes = chunk_bytes * 2;
        }
        node = pool->bump;
        pool->bump += bytes;
        BTREE_UNPOISON(node, bytes);
    }
    if (tree->allocations_allowed > 0)
        tree->allocations_allowed--;
    return node;
}

static void btree_node_release(void **free_list, void *node, size_t bytes)
{
    *(void **)node = *free_list;
    *free_list = node;
    BTREE_POISON(node, bytes);
}

static void btree_pool_destroy(struct btree_node_pool *pool)
{
    struct btree_chunk *chunk = pool->chunks;
    while (chunk != NULL) {
        struct btree_chunk *next = chunk->next;
        BTREE_UNPOISON(chunk, chunk->bytes);
        pages_unmap(chunk, chunk->bytes);
        chunk = next;
    }
    memset(pool, 0, sizeof(*pool));
}

static struct btree_leaf *btree_leaf_new(struct btree *tree)
{
    struct btree_leaf *leaf = btree_node_allocate(tree, &tree->pool.free_leaves, BTREE_LEAF_BYTES);
    if (leaf == NULL)
        return NULL;
    btree_fill_sentinels(leaf->prefix, 0, BTREE_LEAF_SLOTS);
    leaf->prev = NULL;
    leaf->next = NULL;
    leaf->count = 0;
    leaf->skip = 0;
    tree->leaves++;
    return leaf;
}

static void btree_leaf_release(struct btree *tree, struct btree_leaf *leaf)
{
    tree->leaves--;
    btree_node_release(&tree->pool.free_leaves, leaf, BTREE_LEAF_BYTES);
}

static struct btree_inner *btree_inner_new(struct btree *tree)
{
    struct btree_inner *inner =
        btree_node_allocate(tree, &tree->pool.free_inners, BTREE_INNER_BYTES);
    if (inner == NULL)
        return NULL;
    btree_fill_sentinels(inner->prefix, 0, BTREE_INNER_SLOTS);
    inner->count = 0;
    inner->skip = 0;
    tree->inners++;
    return inner;
}

static void btree_inner_release(struct btree *tree, struct btree_inner *inner)
{
    tree->inners--;
    btree_node_release(&tree->pool.free_inners, inner, BTREE_INNER_BYTES);
}

static void btree_separator_release(struct btree *tree, struct btree_separator *separator)
{
    if (separator->tail != NULL) {
        tree->separator_bytes -= separator->length - 8;
        free(separator->tail);
        separator->tail = NULL;
    }
}

/* ---- keys and comparison ------------------------------------------------------------ */

/* The first 8 bytes of a key as a big-endian integer, zero padded, so that integer order
 * is memcmp order on those bytes. */
static inline uint64_t btree_prefix_of(const uint8_t *bytes, uint32_t length)
{
    uint64_t word = 0;
    if (length >= 8)
        memcpy(&word, bytes, 8);
    else if (length > 0)
        memcpy(&word, bytes, length);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    word = __builtin_bswap64(word);
#endif
    return word;
}

/* A key's bytes [skip, skip + 8) as a slot prefix (big-endian, zero padded): what a leaf that
 * skips `skip` bytes stores. */
static inline uint64_t btree_prefix_at(const uint8_t *bytes, uint32_t length, uint32_t skip)
{
    return length > skip ? btree_prefix_of(bytes + skip, length - skip) : 0;
}

/* A slot prefix taken `drop` bytes lower: from bytes [skip, skip + 8) to bytes
 * [skip - drop, skip + 8 - drop), where `shared` points at the bytes [skip - drop, skip)
 * every key of the leaf shares (its head). No key is read: the new first bytes come from the
 * head, the rest are the old prefix's first bytes (padding zeros stay padding zeros). */
static inline uint64_t btree_prefix_lower(uint64_t prefix, const uint8_t *shared, uint32_t drop)
{
    if (drop == 0)
        return prefix;
    if (drop >= 8)
        return btree_prefix_of(shared, 8);
    return btree_prefix_of(shared, drop) | (prefix >> (8 * drop));
}

static inline void btree_key_init(struct btree_key *key, const void *bytes, uint32_t length)
{
    key->bytes = bytes;
    key->length = length;
    key->prefix = btree_prefix_of(bytes, length);
}

/* The bytes from `start` on, or NULL when there are none (computing bytes + start past the
 * end of a short key would be undefined). */
static inline const uint8_t *btree_rest_of(const uint8_t *bytes, uint32_t length, uint32_t start)
{
    return length > start ? bytes + start : NULL;
}

/* Orders two keys that agree on their bytes [0, start - 8) and whose prefixes of bytes
 * [start - 8, start) are equal: a_rest and b_rest are their bytes from `start` on. When the
 * shorter key ends before `start`, equal prefixes mean it is a prefix of the other (the
 * padding is zeros on both sides), so the lengths decide. start is 8 for separators and
 * skip + 8 in a leaf. */
static inline int btree_compare_rest(const uint8_t *a_rest, uint32_t a_length,
                                     const uint8_t *b_rest, uint32_t b_length, uint32_t start)
{
    uint32_t shorter = a_length < b_length ? a_length : b_length;
    if (shorter > start) {
        int c = memcmp(a_rest, b_rest, shorter - start);
        if (c != 0)
            return c;
    }
    return (a_length > b_length) - (a_length < b_length);
}

/* Orders two complete keys given with their prefixes. */
static int btree_compare_keys(uint64_t a_prefix, const uint8_t *a_rest, uint32_t a_length,
                              uint64_t b_prefix, const uint8_t *b_rest, uint32_t b_length)
{
    if (a_prefix != b_prefix)
        return a_prefix < b_prefix ? -1 : 1;
    return btree_compare_rest(a_rest, a_length, b_rest, b_length, 8);
}

static uint32_t btree_common_prefix(const uint8_t *a, const uint8_t *b, uint32_t limit)
{
    uint32_t i = 0;
    while (i + 8 <= limit) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            break;
        i += 8;
    }
    while (i < limit && a[i] == b[i])
        i++;
    return i;
}

/* Makes the shortest separator s with left < s <= right: right cut one byte past the point
 * where it departs from left. Requires left < right. Returns 0 or -ENOMEM. */
static int btree_separator_make(struct btree *tree, const uint8_t *left, uint32_t left_length,
                                const uint8_t *right, uint32_t right_length,
                                struct btree_separator *out)
{
    uint32_t limit = left_length < right_length ? left_length : right_length;
    uint32_t length = btree_common_prefix(left, right, limit) + 1;
    assert(length <= right_length); /* else right would be a prefix of left */
    out->prefix = btree_prefix_of(right, length);
    out->length = length;
    out->tail = NULL;
    if (length > 8) {
        out->tail = btree_allocate(tree, length - 8);
        if (out->tail == NULL)
            return -ENOMEM;
        memcpy(out->tail, right + 8, length - 8);
        tree->separator_bytes += length - 8;
    }
    return 0;
}

/* ---- searching ---------------------------------------------------------------------- */

/* How many entries of a node's sorted prefix array are < x, that is the first index whose
 * prefix is >= x. The array has `slots` entries, a multiple of 8; unused slots hold
 * UINT64_MAX (invariant 9), which no x exceeds, so the answer never passes the count and
 * the count need not be read first.
 *
 * The search is two-level, not binary. Eight prefixes fill one cache line (a block): the
 * first level compares x with the last prefix of every block, the second with the eight
 * prefixes of the one block where x falls. The compares of a level are independent of
 * each other, so a node costs two dependent steps where a binary search costs log2(slots)
 * + 1 (7 for 64 slots); the change cut cache-resident lookups from ~70 to ~55 ns at 10K
 * keys and from ~170 to ~120 ns at 100K. Compare results are summed, never branched on: on
 * random keys a branch here mispredicts half the time. slots is a constant at every call,
 * so both loops unroll. */
#define BTREE_BLOCK 8

static inline uint32_t btree_rank(const uint64_t *array, uint32_t slots, uint64_t x)
{
    const uint32_t blocks = slots / BTREE_BLOCK;
    uint32_t block = 0;
#pragma GCC unroll 32
    for (uint32_t j = 0; j < blocks; j++)
        block += array[j * BTREE_BLOCK + BTREE_BLOCK - 1] < x;
    /* When x exceeds every prefix, the last block ranks it at slots all the same. */
    block -= block == blocks;
    const uint64_t *line = array + block * BTREE_BLOCK;
    uint32_t i = block * BTREE_BLOCK;
#pragma GCC unroll 8
    for (uint32_t k = 0; k < BTREE_BLOCK; k++)
        i += line[k] < x;
    return i;
}

/* First i in [0, n) with array[i] > x, or n. */
static inline uint32_t btree_upper_bound(const uint64_t *array, uint32_t n, uint64_t x)
{
    if (n == 0)
        return 0;
    const uint64_t *base = array;
    while (n > 1) {
        uint32_t half = n / 2;
        base = base[half] <= x ? base + half : base;
        n -= half;
    }
    return (uint32_t)(base - array) + (*base <= x);
}

/* Starts loading every cache line of [start, start + bytes) at once, so that a search
 * waits for one memory latency instead of one per binary-search step. bytes is a
 * constant at every call, so the loop unrolls into plain prefetch instructions. */
static inline void btree_prefetch(const void *start, size_t bytes)
{
    const char *p = start;
#pragma GCC unroll 32
    for (size_t offset = 0; offset < bytes; offset += BTREE_CACHE_LINE)
        __builtin_prefetch(p + offset);
    __builtin_prefetch(p + bytes - 1);
}

/* An inner node's count, skip, prefixes, head and children: what its search reads. */
static inline void btree_prefetch_inner(const struct btree_inner *inner)
{
    btree_prefetch(inner, offsetof(struct btree_inner, length));
}

/* A whole leaf but its links: the prefixes and head for the search and the values for its
 * result, so that reading the found value pointer does not wait for a second memory
 * latency. */
static inline void btree_prefetch_leaf(const struct btree_leaf *leaf)
{
    btree_prefetch(leaf, offsetof(struct btree_leaf, prev));
}

/* The child of a skipping inner node to follow for key (see btree_inner_search), kept out
 * of line. As in a leaf, a key that does not share the node's head is below or above every
 * separator; otherwise the search runs on the key's bytes [skip, skip + 8), and on equal
 * prefixes on the separators' bytes from skip + 8 on (tail + skip: a tail holds the bytes
 * from the 9th on). */
static BTREE_NOINLINE uint32_t btree_inner_search_skipping(const struct btree_inner *inner,
                                                           const struct btree_key *key)
{
    uint32_t n = inner->count - 1;
    uint32_t skip = inner->skip;
    uint32_t limit = key->length < skip ? key->length : skip;
    int c = limit > 0 ? memcmp(key->bytes, inner->head, limit) : 0;
    if (c != 0 || limit < skip)
        return c > 0 ? n : 0;
    uint64_t prefix = btree_prefix_at(key->bytes, key->length, skip);
    uint32_t low = btree_rank(inner->prefix, BTREE_INNER_SLOTS, prefix);
    if (low >= n || inner->prefix[low] != prefix)
        return low < n ? low : n;
    uint32_t high = low + btree_upper_bound(inner->prefix + low, n - low, prefix);
    uint32_t start = skip + 8;
    const uint8_t *rest = btree_rest_of(key->bytes, key->length, start);
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        uint32_t length = inner->length[middle];
        const uint8_t *tail = length > start ? inner->tail[middle] + skip : NULL;
        if (btree_compare_rest(rest, key->length, tail, length, start) >= 0)
            low = middle + 1;
        else
            high = middle;
    }
    return low;
}

/* The child of inner to follow for key: the number of separators <= key. As in the leaf
 * search (btree_leaf_search_core, which says why), a node that skips nothing is searched
 * as before skipping existed, and the skip is looked at only after the rank; when no inner
 * node of the tree skips (`skipping` false, see btree_descend) it is not looked at. */
static BTREE_ALWAYS_INLINE uint32_t btree_inner_search(const struct btree_inner *inner,
                                                       const struct btree_key *key, bool skipping)
{
    uint32_t n = inner->count - 1;
    /* Over the whole array: the sentinels past n are >= any prefix, so low <= n. */
    uint32_t low = btree_rank(inner->prefix, BTREE_INNER_SLOTS, key->prefix);
    if (skipping && __builtin_expect(inner->skip != 0, 0))
        return btree_inner_search_skipping(inner, key);
    if (low >= n || inner->prefix[low] != key->prefix)
        return low < n ? low : n;
    /* Separators with the key's prefix: compare their tails. */
    uint32_t high = low + btree_upper_bound(inner->prefix + low, n - low, key->prefix);
    const uint8_t *rest = btree_rest_of(key->bytes, key->length, 8);
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        int c =
            btree_compare_rest(rest, key->length, inner->tail[middle], inner->length[middle], 8);
        if (c >= 0)
            low = middle + 1;
        else
            high = middle;
    }
    return low;
}

/* A value is the record that holds its key (key_of), and the caller of a search that
 * finds it usually reads the record's bytes next: loading its first BTREE_RECORD_PREFETCH
 * bytes together, rather than line by line as the key compare and then the caller reach
 * them, overlaps those misses (a Shoal version with a 16-byte key and a 100-byte value
 * spans three lines). */
#define BTREE_RECORD_PREFETCH 192

static inline void btree_prefetch_record(const void *value)
{
    btree_prefetch(value, BTREE_RECORD_PREFETCH);
}

/* Orders key against the key of a leaf slot whose prefix equals key's; both share the
 * leaf's head, so the bytes from start = skip + 8 on decide. */
static inline int btree_compare_slot(const struct btree *tree, const struct btree_key *key,
                                     const void *value, uint32_t start)
{
    uint32_t length;
    const uint8_t *bytes = tree->key_of(value, &length);
    return btree_compare_rest(btree_rest_of(key->bytes, key->length, start), key->length,
                              btree_rest_of(bytes, length, start), length, start);
}

/* Finishes a leaf search from low, the rank of the key's slot prefix: returns low when no
 * slot there holds that prefix, else resolves the run of slots that do by their full keys,
 * compared from byte `start` on (skip + 8). Usually the prefix is unique in the leaf; the
 * end of a run is looked for only when there is one. */
static BTREE_ALWAYS_INLINE uint32_t btree_leaf_resolve(const struct btree *tree,
                                                       const struct btree_leaf *leaf,
                                                       const struct btree_key *key,
                                                       uint64_t prefix, uint32_t low,
                                                       uint32_t start, bool *found,
                                                       uint32_t *equal)
{
    uint32_t n = leaf->count;
    if (low >= n || leaf->prefix[low] != prefix)
        return low < n ? low : n;
    uint32_t high = low + 1;
    if (high < n && leaf->prefix[high] == prefix)
        high = low + btree_upper_bound(leaf->prefix + low, n - low, prefix);
    else
        btree_prefetch_record(leaf->value[low]);
    *equal = high - low;
    while (low < high) {
        uint32_t middle = low + (high - low) / 2;
        int c = btree_compare_slot(tree, key, leaf->value[middle], start);
        if (c == 0) {
            *found = true;
            return middle;
        }
        if (c < 0)
            high = middle;
        else
            low = middle + 1;
    }
    return low;
}

/* The search of a leaf that skips bytes (see btree_leaf_search_core), kept out of line. The
 * key is held against the head first: a key that does not share it is below or above every
 * key of the leaf (a key that is a proper prefix of the head is below them). Otherwise the
 * search runs on the key's bytes [skip, skip + 8) and reads full keys only for slots whose
 * prefix equals the key's, comparing the bytes from skip + 8 on. */
static BTREE_NOINLINE uint32_t btree_leaf_search_skipping(const struct btree *tree,
                                                          const struct btree_leaf *leaf,
                                                          const struct btree_key *key, bool *found,
                                                          uint32_t *common, uint32_t *equal)
{
    uint32_t n = leaf->count;
    uint32_t skip = leaf->skip;
    uint32_t limit = key->length < skip ? key->length : skip;
    int c = limit > 0 ? memcmp(key->bytes, leaf->head, limit) : 0;
    if (c != 0 || limit < skip) {
        *common = btree_common_prefix(key->bytes, leaf->head, limit);
        return c > 0 ? n : 0;
    }
    *common = skip;
    uint64_t prefix = btree_prefix_at(key->bytes, key->length, skip);
    uint32_t low = btree_rank(leaf->prefix, BTREE_LEAF_SLOTS, prefix);
    return btree_leaf_resolve(tree, leaf, key, prefix, low, skip + 8, found, equal);
}

/* Finds where key falls in leaf: returns the first slot whose key is >= key, with *found
 * saying whether it equals key, *common how many head bytes the key shares and *equal how
 * many slots hold the key's prefix (see struct btree_leaf_place). Full keys are read only
 * for slots whose prefix equals the key's.
 *
 * A leaf that skips nothing (every leaf of random keys) is searched exactly as before
 * skipping existed: the rank runs on the key's first 8 bytes and only then is the skip
 * looked at, sending a skipping leaf to btree_leaf_search_skipping, which ranks again. The
 * order is measured, not taken for granted: testing the skip before the rank, one load and
 * one never-taken branch, made 1M random lookups ~12% slower (probably because that branch
 * waits on the leaf's first cache line while it is still arriving, where the rank's loads
 * would already be under way). Always inlined into its two callers, so the read path
 * carries no stores of what only the write path needs. */
static BTREE_ALWAYS_INLINE uint32_t btree_leaf_search_core(const struct btree *tree,
                                                           const struct btree_leaf *leaf,
                                                           const struct btree_key *key, bool *found,
                                                           uint32_t *common, uint32_t *equal)
{
    uint64_t prefix = key->prefix;
    *found = false;
    *equal = 0;
    *common = 0;
    /* Over the whole array: the sentinels past count are >= any prefix, so low <= count. */
    uint32_t low = btree_rank(leaf->prefix, BTREE_LEAF_SLOTS, prefix);
    if (__builtin_expect(leaf->skip != 0, 0))
        return btree_leaf_search_skipping(tree, leaf, key, found, common, equal);
    return btree_leaf_resolve(tree, leaf, key, prefix, low, 8, found, equal);
}

/* The read path's search: the first slot whose key is >= key; *found says whether it is
 * key. */
static uint32_t btree_leaf_search(const struct btree *tree, const struct btree_leaf *leaf,
                                  const struct btree_key *key, bool *found)
{
    uint32_t common, equal;
    return btree_leaf_search_core(tree, leaf, key, found, &common, &equal);
}

/* The write path's search: everything struct btree_leaf_place says. */
static void btree_leaf_place(const struct btree *tree, const struct btree_leaf *leaf,
                             const struct btree_key *key, struct btree_leaf_place *place)
{
    place->pos =
        btree_leaf_search_core(tree, leaf, key, &place->found, &place->common, &place->equal);
}

/* The descent, for a tree whose inner nodes may skip or for one whose inner nodes do not. */
static BTREE_ALWAYS_INLINE struct btree_leaf *btree_descend_with(const struct btree *tree,
                                                                 const struct btree_key *key,
                                                                 struct btree_path *path,
                                                                 bool skipping)
{
    void *node = tree->root;
    for (uint32_t level = 0; level + 1 < tree->height; level++) {
        struct btree_inner *inner = node;
        uint32_t index = btree_inner_search(inner, key, skipping);
        if (path != NULL) {
            path->node[level] = inner;
            path->index[level] = index;
        }
        node = inner->child[index];
        if (level + 2 < tree->height)
            btree_prefetch_inner(node);
        else
            btree_prefetch_leaf(node);
    }
    return node;
}

/* Walks from the root to the leaf whose range holds key, recording the path when given.
 * Requires a non-empty tree. Until some inner node of the tree has raised its skip
 * (tree->inner_skipping; never, for random keys) the descent does not look at skips at
 * all. Looking costs three instructions per level, which came to 1% of a random lookup's
 * instructions, and a loop of lookups overlaps only as many of them as fit in the
 * processor's window. */
static struct btree_leaf *btree_descend(const struct btree *tree, const struct btree_key *key,
                                        struct btree_path *path)
{
    if (tree->inner_skipping)
        return btree_descend_with(tree, key, path, true);
    return btree_descend_with(tree, key, path, false);
}

/* ---- node edits --------------------------------------------------------------------- */

static void btree_leaf_insert_at(struct btree_leaf *leaf, uint32_t pos, uint64_t prefix)
{
    uint32_t moved = leaf->count - pos;
    memmove(&leaf->prefix[pos + 1], &leaf->prefix[pos], moved * sizeof(leaf->prefix[0]));
    memmove(&leaf->value[pos + 1], &leaf->value[pos], moved * sizeof(leaf->value[0]));
    leaf->prefix[pos] = prefix;
    leaf->value[pos] = NULL;
    leaf->count++;
}

static void btree_leaf_erase_at(struct btree_leaf *leaf, uint32_t pos)
{
    uint32_t moved = leaf->count - pos - 1;
    memmove(&leaf->prefix[pos], &leaf->prefix[pos + 1], moved * sizeof(leaf->prefix[0]));
    memmove(&leaf->value[pos], &leaf->value[pos + 1], moved * sizeof(leaf->value[0]));
    leaf->count--;
    leaf->prefix[leaf->count] = UINT64_MAX;
}

/* Lowers a leaf's skip to `skip` (<= its skip) in place. Reads no key. */
static void btree_leaf_lower(struct btree_leaf *leaf, uint32_t skip)
{
    uint32_t drop = leaf->skip - skip;
    if (drop == 0)
        return;
    for (uint32_t i = 0; i < leaf->count; i++)
        leaf->prefix[i] = btree_prefix_lower(leaf->prefix[i], leaf->head + skip, drop);
    leaf->skip = skip;
}

/* The key of leaf slot i. The slot whose value is still NULL is the one a btree_upsert is
 * creating: its key is `key`. */
static const uint8_t *btree_leaf_slot_key(const struct btree *tree, const struct btree_leaf *leaf,
                                          uint32_t i, const struct btree_key *key, uint32_t *length)
{
    if (leaf->value[i] == NULL) {
        *length = key->length;
        return key->bytes;
    }
    return tree->key_of(leaf->value[i], length);
}

/* Raises a leaf's skip to what its first and last keys share (up to BTREE_HEAD_BYTES).
 * btree_upsert calls it only on a leaf where its search met equal prefixes, which searches
 * can tell apart only by reading keys: raising reads every key of the leaf (the bytes past
 * the old prefixes are needed), so leaves whose prefixes differ, as random keys' do, never
 * pay for it. When the first and last prefixes already differ in their first byte nothing
 * can be gained and no key is read; after a raise they do differ there, so a leaf is raised
 * once until a lower skip is forced on it again. `key` is the key of the slot being
 * created (value NULL), if any. Allocates nothing. */
static void btree_leaf_raise(const struct btree *tree, struct btree_leaf *leaf,
                             const struct btree_key *key)
{
    uint32_t n = leaf->count;
    uint32_t skip = leaf->skip;
    if (n < 2 || skip == BTREE_HEAD_BYTES)
        return;
    uint64_t differ = leaf->prefix[0] ^ leaf->prefix[n - 1];
    if (differ != 0 && (uint32_t)__builtin_clzll(differ) < 8)
        return; /* the first and last keys differ right after the head */
    uint32_t first_length, last_length;
    const uint8_t *first = btree_leaf_slot_key(tree, leaf, 0, key, &first_length);
    const uint8_t *last = btree_leaf_slot_key(tree, leaf, n - 1, key, &last_length);
    uint32_t limit = first_length < last_length ? first_length : last_length;
    if (limit > BTREE_HEAD_BYTES)
        limit = BTREE_HEAD_BYTES;
    /* Both keys start with the head, so the comparison starts after it. (The empty key's
     * bytes may be a null pointer, which takes no offset, not even zero.) */
    if (limit <= skip)
        return;
    uint32_t target = skip + btree_common_prefix(first + skip, last + skip, limit - skip);
    if (target <= skip)
        return;
    /* Every key is read below: start loading them all at once. */
    for (uint32_t i = 1; i + 1 < n; i++)
        if (leaf->value[i] != NULL)
            __builtin_prefetch(leaf->value[i]);
    memcpy(leaf->head + skip, first + skip, target - skip);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t length;
        const uint8_t *bytes = btree_leaf_slot_key(tree, leaf, i, key, &length);
        leaf->prefix[i] = btree_prefix_at(bytes, length, target);
    }
    leaf->skip = target;
}

/* Starts a new source: the entries appended next come from a leaf whose keys share
 * head[0, skip); skip may be below the leaf's own (a key being inserted does not share
 * all of its head). */
static BTREE_ALWAYS_INLINE void btree_leaf_entries_source(struct btree_leaf_entries *entries,
                                                          const struct btree_leaf *leaf,
                                                          uint32_t skip)
{
    uint32_t s = entries->sources++;
    entries->source_skip[s] = skip;
    if (skip > 0)
        memcpy(entries->source_head[s], leaf->head, skip);
    entries->source_end[s] = entries->count;
}

/* Appends slots [from, to) of the current source's leaf, at the source's skip. */
static BTREE_ALWAYS_INLINE void btree_leaf_entries_append(struct btree_leaf_entries *entries,
                                                          const struct btree_leaf *leaf,
                                                          uint32_t from, uint32_t to)
{
    uint32_t s = entries->sources - 1;
    uint32_t skip = entries->source_skip[s];
    uint32_t drop = leaf->skip - skip;
    uint32_t n = to - from;
    uint64_t *prefix = &entries->prefix[entries->count];
    /* Redistribution is on the path of most inserts into a well-filled tree: plain copies
     * when no prefix changes. */
    if (drop == 0) {
        memcpy(prefix, &leaf->prefix[from], n * sizeof(uint64_t));
    } else {
        for (uint32_t i = 0; i < n; i++)
            prefix[i] = btree_prefix_lower(leaf->prefix[from + i], leaf->head + skip, drop);
    }
    memcpy(&entries->value[entries->count], &leaf->value[from], n * sizeof(void *));
    entries->count += n;
    entries->source_end[s] = entries->count;
}

/* Appends the entry of the key being inserted (value NULL) to the current source. */
static BTREE_ALWAYS_INLINE void btree_leaf_entries_append_key(struct btree_leaf_entries *entries,
                                                              const struct btree_key *key)
{
    uint32_t s = entries->sources - 1;
    uint32_t skip = entries->source_skip[s];
    entries->prefix[entries->count] =
        skip == 0 ? key->prefix : btree_prefix_at(key->bytes, key->length, skip);
    entries->value[entries->count++] = NULL;
    entries->source_end[s] = entries->count;
}

/* Fills leaf with entries [from, to). When they come from one source the leaf takes that
 * source's skip and head as they are; when from both, the skip drops to what the two heads
 * share and each prefix is lowered to it. Reads no key. */
static BTREE_ALWAYS_INLINE void btree_leaf_entries_scatter(const struct btree_leaf_entries *entries,
                                                           uint32_t from, uint32_t to,
                                                           struct btree_leaf *leaf)
{
    uint32_t n = to - from;
    uint32_t first_source = entries->sources > 1 && from >= entries->source_end[0] ? 1 : 0;
    uint32_t last_source = entries->sources > 1 && to > entries->source_end[0] ? 1 : 0;
    uint32_t skip = entries->source_skip[first_source];
    if (skip == 0 && entries->source_skip[last_source] == 0) {
        /* Nothing skipped (random keys): plain copies, as on most inserts into a
         * well-filled tree. */
        memcpy(leaf->prefix, &entries->prefix[from], n * sizeof(uint64_t));
        memcpy(leaf->value, &entries->value[from], n * sizeof(void *));
        btree_fill_sentinels(leaf->prefix, n, BTREE_LEAF_SLOTS);
        leaf->skip = 0;
        leaf->count = n;
        return;
    }
    if (last_source != first_source) {
        uint32_t limit = entries->source_skip[0] < entries->source_skip[1]
                             ? entries->source_skip[0]
                             : entries->source_skip[1];
        skip = btree_common_prefix(entries->source_head[0], entries->source_head[1], limit);
    }
    for (uint32_t s = first_source; s <= last_source; s++) {
        /* With two sources the boundary between them is source_end[0]. */
        uint32_t begin = s == first_source ? from : entries->source_end[0];
        uint32_t end = s == last_source ? to : entries->source_end[0];
        uint32_t drop = entries->source_skip[s] - skip;
        if (drop == 0) {
            memcpy(&leaf->prefix[begin - from], &entries->prefix[begin],
                   (end - begin) * sizeof(uint64_t));
            continue;
        }
        for (uint32_t i = begin; i < end; i++)
            leaf->prefix[i - from] =
                btree_prefix_lower(entries->prefix[i], entries->source_head[s] + skip, drop);
    }
    memcpy(leaf->value, &entries->value[from], n * sizeof(void *));
    btree_fill_sentinels(leaf->prefix, n, BTREE_LEAF_SLOTS);
    if (skip > 0)
        memcpy(leaf->head, entries->source_head[first_source], skip);
    leaf->skip = skip;
    leaf->count = n;
}

/* The separator between gathered entries boundary-1 and boundary. The entry at new_index
 * (if any) is the one being inserted: its value is still NULL, so its key is `key`. */
static int btree_leaf_entries_separator(struct btree *tree,
                                        const struct btree_leaf_entries *entries, uint32_t boundary,
                                        uint32_t new_index, const struct btree_key *key,
                                        struct btree_separator *out)
{
    const uint8_t *bytes[2];
    uint32_t length[2];
    for (int side = 0; side < 2; side++) {
        uint32_t i = boundary - 1 + (uint32_t)side;
        if (i == new_index) {
            bytes[side] = key->bytes;
            length[side] = key->length;
        } else {
            bytes[side] = tree->key_of(entries->value[i], &length[side]);
        }
    }
    return btree_separator_make(tree, bytes[0], length[0], bytes[1], length[1], out);
}

/* Copies a separator's bytes [0, count) to out; count <= its length. */
static void btree_separator_copy_bytes(const struct btree_separator *separator, uint32_t count,
                                       uint8_t *out)
{
    for (uint32_t i = 0; i < count && i < 8; i++)
        out[i] = (uint8_t)(separator->prefix >> (56 - 8 * i));
    if (count > 8)
        memcpy(out + 8, separator->tail, count - 8);
}

/* A separator's bytes [skip, skip + 8), big-endian and zero padded: its prefix in a node
 * that skips `skip` bytes. Bytes below the 9th come from its prefix, the others from its
 * tail. */
static uint64_t btree_separator_prefix_at(const struct btree_separator *separator, uint32_t skip)
{
    if (skip == 0)
        return separator->prefix;
    uint32_t length = separator->length;
    if (skip >= 8)
        return length > skip ? btree_prefix_of(separator->tail + (skip - 8), length - skip) : 0;
    uint64_t low =
        length > 8 ? btree_prefix_of(separator->tail, length - 8) >> (8 * (8 - skip)) : 0;
    return (separator->prefix << (8 * skip)) | low;
}

/* Separator i of inner as it travels between nodes: with its first 8 bytes as prefix,
 * whatever the node skips. */
static struct btree_separator btree_inner_separator(const struct btree_inner *inner, uint32_t i)
{
    struct btree_separator separator = {
        .prefix = btree_prefix_lower(inner->prefix[i], inner->head, inner->skip),
        .length = inner->length[i],
        .tail = inner->tail[i]};
    return separator;
}

/* Lowers inner's skip to `skip` (<= its skip); slots [0, valid) hold separators. */
static void btree_inner_lower(struct btree_inner *inner, uint32_t skip, uint32_t valid)
{
    uint32_t drop = inner->skip - skip;
    if (drop == 0)
        return;
    for (uint32_t i = 0; i < valid; i++)
        inner->prefix[i] = btree_prefix_lower(inner->prefix[i], inner->head + skip, drop);
    inner->skip = skip;
}

/* Stores separator in slot i, first lowering the node's skip to what the separator shares
 * of its head when it does not share all of it; slots [0, valid) hold separators. */
static inline void btree_inner_set_separator(struct btree_inner *inner, uint32_t i,
                                             const struct btree_separator *separator,
                                             uint32_t valid)
{
    uint32_t skip = inner->skip;
    if (skip != 0) {
        uint8_t bytes[BTREE_HEAD_BYTES];
        uint32_t limit = separator->length < skip ? separator->length : skip;
        btree_separator_copy_bytes(separator, limit, bytes);
        btree_inner_lower(inner, btree_common_prefix(bytes, inner->head, limit), valid);
    }
    inner->prefix[i] = btree_separator_prefix_at(separator, inner->skip);
    inner->length[i] = separator->length;
    inner->tail[i] = separator->tail;
}

/* Raises inner's skip to what its first and last separators share (up to BTREE_HEAD_BYTES).
 * Called when two neighbouring separators have equal prefixes, the case where a search
 * would read their tails. Reads only the tree's own memory (tails, no key). */
static void btree_inner_raise(struct btree *tree, struct btree_inner *inner)
{
    uint32_t n = inner->count - 1;
    uint32_t skip = inner->skip;
    if (n < 2 || skip == BTREE_HEAD_BYTES)
        return;
    uint64_t differ = inner->prefix[0] ^ inner->prefix[n - 1];
    if (differ != 0 && (uint32_t)__builtin_clzll(differ) < 8)
        return;
    struct btree_separator first = btree_inner_separator(inner, 0);
    struct btree_separator last = btree_inner_separator(inner, n - 1);
    uint32_t limit = first.length < last.length ? first.length : last.length;
    if (limit > BTREE_HEAD_BYTES)
        limit = BTREE_HEAD_BYTES;
    uint8_t first_bytes[BTREE_HEAD_BYTES], last_bytes[BTREE_HEAD_BYTES];
    btree_separator_copy_bytes(&first, limit, first_bytes);
    btree_separator_copy_bytes(&last, limit, last_bytes);
    uint32_t target = btree_common_prefix(first_bytes, last_bytes, limit);
    if (target <= skip)
        return;
    /* Slot i is decoded with the old skip and head before it is re-encoded; the head
     * changes last. */
    for (uint32_t i = 0; i < n; i++) {
        struct btree_separator separator = btree_inner_separator(inner, i);
        inner->prefix[i] = btree_separator_prefix_at(&separator, target);
    }
    memcpy(inner->head, first_bytes, target);
    inner->skip = target;
    tree->inner_skipping = true;
}

/* Raises inner's skip when any two neighbouring separators have equal prefixes: after a
 * node is filled anew (split, rebalance, merge). */
static void btree_inner_raise_if_repeated(struct btree *tree, struct btree_inner *inner)
{
    uint32_t n = inner->count - 1;
    bool repeated = false;
    for (uint32_t i = 1; i < n; i++)
        repeated |= inner->prefix[i] == inner->prefix[i - 1];
    if (repeated)
        btree_inner_raise(tree, inner);
}

/* Puts separator at index i and child at index i + 1 (the right half of child i). */
static void btree_inner_insert_at(struct btree *tree, struct btree_inner *inner, uint32_t i,
                                  const struct btree_separator *separator, void *child)
{
    uint32_t moved = inner->count - 1 - i;
    memmove(&inner->prefix[i + 1], &inner->prefix[i], moved * sizeof(inner->prefix[0]));
    memmove(&inner->length[i + 1], &inner->length[i], moved * sizeof(inner->length[0]));
    memmove(&inner->tail[i + 1], &inner->tail[i], moved * sizeof(inner->tail[0]));
    memmove(&inner->child[i + 2], &inner->child[i + 1], moved * sizeof(inner->child[0]));
    /* Slot i still holds a copy of its old separator: lowering it does no harm. */
    uint32_t skip = inner->skip;
    btree_inner_set_separator(inner, i, separator, inner->count);
    inner->child[i + 1] = child;
    inner->count++;
    /* Unless the skip just dropped, equal prefixes elsewhere in the node were there before
     * and raised then if they could be; only the new separator's neighbours need a look (a
     * leaf split comes here about once per 30 random inserts: a whole-node scan showed in
     * the insert time). */
    if (inner->skip != skip) {
        btree_inner_raise_if_repeated(tree, inner);
        return;
    }
    uint64_t prefix = inner->prefix[i];
    if ((i > 0 && inner->prefix[i - 1] == prefix) ||
        (i + 2 < inner->count && inner->prefix[i + 1] == prefix))
        btree_inner_raise(tree, inner);
}

/* Removes separator i and child i + 1; returns the separator, whose tail the caller now
 * owns. */
static struct btree_separator btree_inner_take(struct btree_inner *inner, uint32_t i)
{
    struct btree_separator separator = btree_inner_separator(inner, i);
    uint32_t moved = inner->count - 2 - i;
    memmove(&inner->prefix[i], &inner->prefix[i + 1], moved * sizeof(inner->prefix[0]));
    memmove(&inner->length[i], &inner->length[i + 1], moved * sizeof(inner->length[0]));
    memmove(&inner->tail[i], &inner->tail[i + 1], moved * sizeof(inner->tail[0]));
    memmove(&inner->child[i + 1], &inner->child[i + 2], moved * sizeof(inner->child[0]));
    inner->count--;
    inner->prefix[inner->count - 1] = UINT64_MAX;
    return separator;
}

static void btree_inner_entries_push_child(struct btree_inner_entries *entries, void *child)
{
    entries->child[entries->children++] = child;
}

static void btree_inner_entries_push_separator(struct btree_inner_entries *entries,
                                               const struct btree_separator *separator)
{
    entries->separator[entries->separators++] = *separator;
}

static void btree_inner_entries_append(struct btree_inner_entries *entries,
                                       const struct btree_inner *inner)
{
    for (uint32_t i = 0; i < inner->count; i++) {
        if (i > 0) {
            struct btree_separator separator = btree_inner_separator(inner, i - 1);
            btree_inner_entries_push_separator(entries, &separator);
        }
        btree_inner_entries_push_child(entries, inner->child[i]);
    }
}

/* Fills inner with children [from, to) and the separators between them, then gives it the
 * skip its separators call for. */
static void btree_inner_entries_scatter(struct btree *tree,
                                        const struct btree_inner_entries *entries, uint32_t from,
                                        uint32_t to, struct btree_inner *inner)
{
    inner->count = to - from;
    inner->skip = 0;
    for (uint32_t i = from; i < to; i++) {
        inner->child[i - from] = entries->child[i];
        if (i + 1 < to)
            btree_inner_set_separator(inner, i - from, &entries->separator[i], 0);
    }
    btree_fill_sentinels(inner->prefix, inner->count - 1, BTREE_INNER_SLOTS - 1);
    btree_inner_raise_if_repeated(tree, inner);
}

/* ---- creation and queries ----------------------------------------------------------- */

struct btree *btree_new(btree_key_fn key_of)
{
    /* Whole cache lines of its own: trees of different shards are written by different
     * threads, and two 120-byte trees from one malloc arena would share a line. */
    size_t bytes =
        (sizeof(struct btree) + BTREE_CACHE_LINE - 1) / BTREE_CACHE_LINE * BTREE_CACHE_LINE;
    struct btree *tree = aligned_alloc(BTREE_CACHE_LINE, bytes);
    if (tree == NULL)
        return NULL;
    memset(tree, 0, sizeof(*tree));
    tree->key_of = key_of;
    tree->allocations_allowed = -1;
    return tree;
}

static void btree_free_node(struct btree *tree, void *node, uint32_t depth)
{
    if (depth + 1 == tree->height) {
        btree_leaf_release(tree, node);
        return;
    }
    struct btree_inner *inner = node;
    for (uint32_t i = 0; i < inner->count; i++) {
        if (i + 1 < inner->count) {
            struct btree_separator separator = btree_inner_separator(inner, i);
            btree_separator_release(tree, &separator);
        }
        btree_free_node(tree, inner->child[i], depth + 1);
    }
    btree_inner_release(tree, inner);
}

void btree_free(struct btree *tree)
{
    if (tree == NULL)
        return;
    if (tree->root != NULL)
        btree_free_node(tree, tree->root, 0);
    btree_pool_destroy(&tree->pool);
    free(tree);
}

void *btree_get(const struct btree *tree, const void *key, uint32_t klen)
{
    if (tree->root == NULL)
        return NULL;
    struct btree_key k;
    btree_key_init(&k, key, klen);
    const struct btree_leaf *leaf = btree_descend(tree, &k, NULL);
    bool found;
    uint32_t pos = btree_leaf_search(tree, leaf, &k, &found);
    return found ? leaf->value[pos] : NULL;
}

size_t btree_count(const struct btree *tree)
{
    return tree->count;
}

size_t btree_memory(const struct btree *tree)
{
    return sizeof(*tree) + tree->leaves * BTREE_LEAF_BYTES + tree->inners * BTREE_INNER_BYTES +
           tree->separator_bytes;
}

size_t btree_bytes_per_key(const struct btree *tree)
{
    size_t keys = tree->count > BTREE_LEAF_SLOTS ? tree->count : BTREE_LEAF_SLOTS;
    return btree_memory(tree) / keys;
}

unsigned btree_height(const struct btree *tree)
{
    return tree->height;
}

void btree_fail_allocations_after(struct btree *tree, long after)
{
    tree->allocations_allowed = after < 0 ? -1 : after;
}

/* ---- insertion ---------------------------------------------------------------------- */

/* Gathers the entries of leaf, with the key being inserted at pos, as one source whose skip
 * is what the key shares of the leaf's head (place->common). Returns the key's index. */
static BTREE_ALWAYS_INLINE uint32_t
btree_leaf_entries_gather_insert(struct btree_leaf_entries *entries, const struct btree_leaf *leaf,
                                 const struct btree_leaf_place *place, const struct btree_key *key)
{
    btree_leaf_entries_source(entries, leaf, place->common);
    btree_leaf_entries_append(entries, leaf, 0, place->pos);
    uint32_t new_index = entries->count;
    btree_leaf_entries_append_key(entries, key);
    btree_leaf_entries_append(entries, leaf, place->pos, leaf->count);
    return new_index;
}

/* Inserts key where `place` says in the full leaf `target` by balancing it with its
 * neighbour: a is the left node of the pair, b the right one, separator_index the parent's
 * separator between them, and target is a or b. Allocates at most the new separator's
 * tail, before any node changes. *leaf and *slot receive the new entry's leaf and slot. */
static int btree_leaf_pair_insert(struct btree *tree, struct btree_inner *parent,
                                  uint32_t separator_index, struct btree_leaf *a,
                                  struct btree_leaf *b, struct btree_leaf *target,
                                  const struct btree_leaf_place *place, const struct btree_key *key,
                                  struct btree_leaf **leaf, void ***slot)
{
    struct btree_leaf_entries entries;
    entries.count = 0;
    entries.sources = 0;
    uint32_t new_index;
    if (target == a) {
        new_index = btree_leaf_entries_gather_insert(&entries, a, place, key);
        btree_leaf_entries_source(&entries, b, b->skip);
        btree_leaf_entries_append(&entries, b, 0, b->count);
    } else {
        btree_leaf_entries_source(&entries, a, a->skip);
        btree_leaf_entries_append(&entries, a, 0, a->count);
        new_index = btree_leaf_entries_gather_insert(&entries, b, place, key);
    }
    uint32_t left_count = entries.count / 2;
    struct btree_separator separator;
    if (btree_leaf_entries_separator(tree, &entries, left_count, new_index, key, &separator) != 0)
        return -ENOMEM;
    btree_leaf_entries_scatter(&entries, 0, left_count, a);
    btree_leaf_entries_scatter(&entries, left_count, entries.count, b);
    struct btree_separator old = btree_inner_separator(parent, separator_index);
    btree_separator_release(tree, &old);
    btree_inner_set_separator(parent, separator_index, &separator, parent->count - 1);
    *leaf = new_index < left_count ? a : b;
    *slot = &(*leaf)->value[new_index < left_count ? new_index : new_index - left_count];
    return 0;
}

/* Splits inner, which is full, while inserting separator at index i and right_child after
 * child i. The right half goes to sibling (fresh, empty); *up receives the middle
 * separator, which moves to the parent. No allocation. */
static void btree_inner_split(struct btree *tree, struct btree_inner *inner, uint32_t i,
                              const struct btree_separator *separator, void *right_child,
                              struct btree_inner *sibling, struct btree_separator *up)
{
    struct btree_inner_entries entries;
    entries.children = 0;
    entries.separators = 0;
    for (uint32_t c = 0; c < inner->count; c++) {
        if (c > 0) {
            struct btree_separator existing = btree_inner_separator(inner, c - 1);
            btree_inner_entries_push_separator(&entries, &existing);
        }
        btree_inner_entries_push_child(&entries, inner->child[c]);
        if (c == i) {
            btree_inner_entries_push_separator(&entries, separator);
            btree_inner_entries_push_child(&entries, right_child);
        }
    }
    uint32_t left_children = entries.children / 2;
    btree_inner_entries_scatter(tree, &entries, 0, left_children, inner);
    *up = entries.separator[left_children - 1];
    btree_inner_entries_scatter(tree, &entries, left_children, entries.children, sibling);
}

/* Inserts key where `place` says in a full leaf by splitting it, and splits full ancestors
 * as needed. Everything that may be needed is allocated first, so failure changes nothing.
 * *new_leaf and *slot receive the new entry's leaf and slot. */
static int btree_split_leaf(struct btree *tree, struct btree_path *path, struct btree_leaf *leaf,
                            const struct btree_leaf_place *place, const struct btree_key *key,
                            struct btree_leaf **new_leaf, void ***slot)
{
    uint32_t levels = tree->height - 1;
    uint32_t full = 0;
    while (full < levels && path->node[levels - 1 - full]->count == BTREE_INNER_SLOTS)
        full++;
    bool new_root = full == levels;
    if (new_root && tree->height >= BTREE_MAX_HEIGHT)
        return -ENOMEM;
    uint32_t needed = full + (new_root ? 1 : 0);

    struct btree_inner *spare[BTREE_MAX_HEIGHT];
    uint32_t allocated = 0;
    struct btree_leaf *fresh = btree_leaf_new(tree);
    if (fresh == NULL)
        return -ENOMEM;
    for (; allocated < needed; allocated++) {
        spare[allocated] = btree_inner_new(tree);
        if (spare[allocated] == NULL)
            goto fail;
    }

    struct btree_leaf_entries entries;
    entries.count = 0;
    entries.sources = 0;
    uint32_t pos = btree_leaf_entries_gather_insert(&entries, leaf, place, key);
    uint32_t left_count = entries.count / 2;
    struct btree_separator up;
    if (btree_leaf_entries_separator(tree, &entries, left_count, pos, key, &up) != 0)
        goto fail;

    /* Nothing below fails. */
    btree_leaf_entries_scatter(&entries, 0, left_count, leaf);
    btree_leaf_entries_scatter(&entries, left_count, entries.count, fresh);
    fresh->prev = leaf;
    fresh->next = leaf->next;
    if (leaf->next != NULL)
        leaf->next->prev = fresh;
    leaf->next = fresh;
    *new_leaf = pos < left_count ? leaf : fresh;
    *slot = &(*new_leaf)->value[pos < left_count ? pos : pos - left_count];

    void *right = fresh;
    uint32_t used = 0;
    for (uint32_t level = levels; level-- > 0;) {
        struct btree_inner *node = path->node[level];
        uint32_t index = path->index[level];
        if (node->count < BTREE_INNER_SLOTS) {
            btree_inner_insert_at(tree, node, index, &up, right);
            return 0;
        }
        struct btree_inner *sibling = spare[used++];
        struct btree_separator carried = up;
        btree_inner_split(tree, node, index, &carried, right, sibling, &up);
        right = sibling;
    }
    struct btree_inner *root = spare[used++];
    assert(used == needed);
    root->count = 2;
    root->child[0] = tree->root;
    root->child[1] = right;
    btree_inner_set_separator(root, 0, &up, 0);
    tree->root = root;
    tree->height++;
    return 0;

fail:
    while (allocated > 0)
        btree_inner_release(tree, spare[--allocated]);
    btree_leaf_release(tree, fresh);
    return -ENOMEM;
}

/* Inserts key at pos of a full leaf: into a neighbour with room if there is one, else by
 * splitting. */
static int btree_insert_into_full_leaf(struct btree *tree, struct btree_path *path,
                                       struct btree_leaf *leaf,
                                       const struct btree_leaf_place *place,
                                       const struct btree_key *key, struct btree_leaf **new_leaf,
                                       void ***slot)
{
    uint32_t levels = tree->height - 1;
    if (levels > 0) {
        struct btree_inner *parent = path->node[levels - 1];
        uint32_t index = path->index[levels - 1];
        struct btree_leaf *left = index > 0 ? parent->child[index - 1] : NULL;
        struct btree_leaf *right = index + 1 < parent->count ? parent->child[index + 1] : NULL;
        uint32_t left_room = left != NULL ? BTREE_LEAF_SLOTS - left->count : 0;
        uint32_t right_room = right != NULL ? BTREE_LEAF_SLOTS - right->count : 0;
        if (left_room > 0 && left_room >= right_room)
            return btree_leaf_pair_insert(tree, parent, index - 1, left, leaf, leaf, place, key,
                                          new_leaf, slot);
        if (right_room > 0)
            return btree_leaf_pair_insert(tree, parent, index, leaf, right, leaf, place, key,
                                          new_leaf, slot);
    }
    return btree_split_leaf(tree, path, leaf, place, key, new_leaf, slot);
}

int btree_upsert(struct btree *tree, const void *key, uint32_t klen, void ***slot, bool *created)
{
    struct btree_key k;
    btree_key_init(&k, key, klen);
    if (tree->root == NULL) {
        struct btree_leaf *leaf = btree_leaf_new(tree);
        if (leaf == NULL)
            return -ENOMEM;
        /* The first key's own bytes are its leaf's head: the next keys lower the skip to what
         * they share with it, reading no key, so the root leaf's skip stays exact. */
        leaf->skip = klen < BTREE_HEAD_BYTES ? klen : BTREE_HEAD_BYTES;
        if (leaf->skip > 0)
            memcpy(leaf->head, key, leaf->skip);
        btree_leaf_insert_at(leaf, 0, btree_prefix_at(k.bytes, k.length, leaf->skip));
        tree->root = leaf;
        tree->height = 1;
        tree->count = 1;
        *slot = &leaf->value[0];
        *created = true;
        return 0;
    }
    struct btree_path path;
    struct btree_leaf *leaf = btree_descend(tree, &k, &path);
    struct btree_leaf_place place;
    btree_leaf_place(tree, leaf, &k, &place);
    /* The search met equal prefixes (or the new key will make a pair): the leaf's keys share
     * more than it skips, and raising the skip spares later searches their key reads. It
     * comes last, once nothing can fail, and moves no slot. */
    bool raise = place.equal > (place.found ? 1u : 0u);
    if (place.found) {
        if (raise)
            btree_leaf_raise(tree, leaf, NULL);
        *slot = &leaf->value[place.pos];
        *created = false;
        return 0;
    }
    if (leaf->count < BTREE_LEAF_SLOTS) {
        /* Nothing here can fail, so a key outside the head may lower the skip in place. */
        btree_leaf_lower(leaf, place.common);
        btree_leaf_insert_at(leaf, place.pos, btree_prefix_at(k.bytes, k.length, leaf->skip));
        *slot = &leaf->value[place.pos];
    } else {
        int rc = btree_insert_into_full_leaf(tree, &path, leaf, &place, &k, &leaf, slot);
        if (rc != 0)
            return rc;
    }
    if (raise)
        btree_leaf_raise(tree, leaf, &k);
    tree->count++;
    *created = true;
    return 0;
}

/* ---- removal ------------------------------------------------------------------------ */

/* Appends the entries of b to a and frees b; a and b are neighbours, a on the left. */
static void btree_leaf_merge(struct btree *tree, struct btree_leaf *a, struct btree_leaf *b)
{
    /* The merged leaf skips what both heads share; no key is read. */
    uint32_t limit = a->skip < b->skip ? a->skip : b->skip;
    uint32_t skip = btree_common_prefix(a->head, b->head, limit);
    btree_leaf_lower(a, skip);
    for (uint32_t i = 0; i < b->count; i++)
        a->prefix[a->count + i] = btree_prefix_lower(b->prefix[i], b->head + skip, b->skip - skip);
    memcpy(&a->value[a->count], b->value, b->count * sizeof(void *));
    a->count += b->count;
    a->next = b->next;
    if (b->next != NULL)
        b->next->prev = a;
    btree_leaf_release(tree, b);
}

/* Spreads the entries of neighbours a and b evenly and replaces the parent's separator
 * between them. Returns 0 or -ENOMEM (then nothing changed). */
static int btree_leaf_pair_balance(struct btree *tree, struct btree_inner *parent,
                                   uint32_t separator_index, struct btree_leaf *a,
                                   struct btree_leaf *b)
{
    struct btree_leaf_entries entries;
    entries.count = 0;
    entries.sources = 0;
    btree_leaf_entries_source(&entries, a, a->skip);
    btree_leaf_entries_append(&entries, a, 0, a->count);
    btree_leaf_entries_source(&entries, b, b->skip);
    btree_leaf_entries_append(&entries, b, 0, b->count);
    uint32_t left_count = entries.count / 2;
    struct btree_separator separator;
    if (btree_leaf_entries_separator(tree, &entries, left_count, UINT32_MAX, NULL, &separator) != 0)
        return -ENOMEM;
    btree_leaf_entries_scatter(&entries, 0, left_count, a);
    btree_leaf_entries_scatter(&entries, left_count, entries.count, b);
    struct btree_separator old = btree_inner_separator(parent, separator_index);
    btree_separator_release(tree, &old);
    btree_inner_set_separator(parent, separator_index, &separator, parent->count - 1);
    return 0;
}

/* Merges inner neighbours a and b (b right of a, parent separator separator_index between
 * them) into a: the parent's separator moves down between them. Frees b. */
static void btree_inner_merge(struct btree *tree, struct btree_inner *parent,
                              uint32_t separator_index, struct btree_inner *a,
                              struct btree_inner *b)
{
    struct btree_separator middle = btree_inner_take(parent, separator_index);
    /* Slots are filled in order, so slots [0, j) hold separators when slot j is set. */
    btree_inner_set_separator(a, a->count - 1, &middle, a->count - 1);
    for (uint32_t i = 0; i < b->count; i++) {
        a->child[a->count + i] = b->child[i];
        if (i + 1 < b->count) {
            struct btree_separator separator = btree_inner_separator(b, i);
            btree_inner_set_separator(a, a->count + i, &separator, a->count + i);
        }
    }
    a->count += b->count;
    btree_inner_raise_if_repeated(tree, a);
    btree_inner_release(tree, b);
}

/* Spreads the children of inner neighbours a and b evenly, rotating separators through the
 * parent. No allocation: every separator only moves. */
static void btree_inner_pair_balance(struct btree *tree, struct btree_inner *parent,
                                     uint32_t separator_index, struct btree_inner *a,
                                     struct btree_inner *b)
{
    struct btree_inner_entries entries;
    entries.children = 0;
    entries.separators = 0;
    btree_inner_entries_append(&entries, a);
    struct btree_separator middle = btree_inner_separator(parent, separator_index);
    btree_inner_entries_push_separator(&entries, &middle);
    btree_inner_entries_append(&entries, b);
    uint32_t left_children = entries.children / 2;
    btree_inner_entries_scatter(tree, &entries, 0, left_children, a);
    btree_inner_set_separator(parent, separator_index, &entries.separator[left_children - 1],
                              parent->count - 1);
    btree_inner_entries_scatter(tree, &entries, left_children, entries.children, b);
}

/* Restores invariant 4 for the inner nodes on the path from level upwards, after a child
 * of path->node[level] was merged away, and shrinks the root when it has one child left. */
static void btree_rebalance_inner(struct btree *tree, const struct btree_path *path, uint32_t level)
{
    for (;;) {
        struct btree_inner *node = path->node[level];
        if (level == 0) {
            if (node->count == 1) {
                tree->root = node->child[0];
                tree->height--;
                btree_inner_release(tree, node);
                if (tree->height == 1)
                    tree->inner_skipping = false; /* no inner node is left */
            }
            return;
        }
        if (node->count >= BTREE_INNER_MIN)
            return;
        struct btree_inner *parent = path->node[level - 1];
        uint32_t index = path->index[level - 1];
        struct btree_inner *left = index > 0 ? parent->child[index - 1] : NULL;
        struct btree_inner *right = index + 1 < parent->count ? parent->child[index + 1] : NULL;
        if (left != NULL && left->count + node->count <= BTREE_INNER_SLOTS) {
            btree_inner_merge(tree, parent, index - 1, left, node);
        } else if (right != NULL && node->count + right->count <= BTREE_INNER_SLOTS) {
            btree_inner_merge(tree, parent, index, node, right);
        } else {
            if (left != NULL && (right == NULL || left->count >= right->count))
                btree_inner_pair_balance(tree, parent, index - 1, left, node);
            else
                btree_inner_pair_balance(tree, parent, index, node, right);
            return;
        }
        level--;
    }
}

/* Restores invariant 4 for a leaf that fell below LEAF_MIN: merges it with a neighbour
 * when they fit in one leaf, else takes entries from the fuller neighbour. */
static void btree_rebalance_leaf(struct btree *tree, const struct btree_path *path,
                                 struct btree_leaf *leaf)
{
    uint32_t level = tree->height - 2;
    struct btree_inner *parent = path->node[level];
    uint32_t index = path->index[level];
    struct btree_leaf *left = index > 0 ? parent->child[index - 1] : NULL;
    struct btree_leaf *right = index + 1 < parent->count ? parent->child[index + 1] : NULL;
    struct btree_separator dropped;
    if (left != NULL && left->count + leaf->count <= BTREE_LEAF_SLOTS) {
        dropped = btree_inner_take(parent, index - 1);
        btree_leaf_merge(tree, left, leaf);
    } else if (right != NULL && leaf->count + right->count <= BTREE_LEAF_SLOTS) {
        dropped = btree_inner_take(parent, index);
        btree_leaf_merge(tree, leaf, right);
    } else {
        int rc;
        if (left != NULL && (right == NULL || left->count >= right->count))
            rc = btree_leaf_pair_balance(tree, parent, index - 1, left, leaf);
        else
            rc = btree_leaf_pair_balance(tree, parent, index, leaf, right);
        /* Without memory for the new separator the leaf stays underfull but correct; a
         * leaf that empties can always merge, so it never stays empty. */
        if (rc != 0)
            tree->fill_relaxed = true;
        return;
    }
    btree_separator_release(tree, &dropped);
    btree_rebalance_inner(tree, path, level);
}

void *btree_remove(struct btree *tree, const void *key, uint32_t klen)
{
    if (tree->root == NULL)
        return NULL;
    struct btree_key k;
    btree_key_init(&k, key, klen);
    struct btree_path path;
    struct btree_leaf *leaf = btree_descend(tree, &k, &path);
    bool found;
    uint32_t pos = btree_leaf_search(tree, leaf, &k, &found);
    if (!found)
        return NULL;
    void *value = leaf->value[pos];
    btree_leaf_erase_at(leaf, pos);
    tree->count--;
    if (tree->height == 1) {
        if (leaf->count == 0) {
            btree_leaf_release(tree, leaf);
            tree->root = NULL;
            tree->height = 0;
        }
    } else if (leaf->count < BTREE_LEAF_MIN) {
        btree_rebalance_leaf(tree, &path, leaf);
    }
    return value;
}

/* ---- cursors ------------------------------------------------------------------------ */

static struct btree_leaf *btree_edge_leaf(const struct btree *tree, bool last)
{
    void *node = tree->root;
    for (uint32_t level = 0; level + 1 < tree->height; level++) {
        struct btree_inner *inner = node;
        node = inner->child[last ? inner->count - 1 : 0];
    }
    return node;
}

void btree_seek_ge(const struct btree *tree, struct btree_cursor *c, const void *key, uint32_t klen)
{
    c->tree = tree;
    c->leaf = NULL;
    c->pos = 0;
    if (tree->root == NULL)
        return;
    if (key == NULL) {
        c->leaf = btree_edge_leaf(tree, false);
        return;
    }
    struct btree_key k;
    btree_key_init(&k, key, klen);
    struct btree_leaf *leaf = btree_descend(tree, &k, NULL);
    bool found;
    uint32_t pos = btree_leaf_search(tree, leaf, &k, &found);
    if (pos == leaf->count) {
        /* Every key of the next leaf is >= the separator above it, which is > key. */
        leaf = leaf->next;
        pos = 0;
    }
    c->leaf = leaf;
    c->pos = (int)pos;
}

void btree_seek_lt(const struct btree *tree, struct btree_cursor *c, const void *key, uint32_t klen)
{
    c->tree = tree;
    c->leaf = NULL;
    c->pos = 0;
    if (tree->root == NULL)
        return;
    struct btree_leaf *leaf;
    uint32_t pos;
    if (key == NULL) {
        leaf = btree_edge_leaf(tree, true);
        pos = leaf->count;
    } else {
        struct btree_key k;
        btree_key_init(&k, key, klen);
        leaf = btree_descend(tree, &k, NULL);
        bool found;
        pos = btree_leaf_search(tree, leaf, &k, &found);
    }
    if (pos == 0) {
        /* Every key of the previous leaf is < the separator above this one, which is <= key. */
        leaf = leaf->prev;
        if (leaf == NULL)
            return;
        pos = leaf->count;
    }
    c->leaf = leaf;
    c->pos = (int)pos - 1;
}

bool btree_cursor_valid(const struct btree_cursor *c)
{
    return c->leaf != NULL;
}

void *btree_cursor_value(const struct btree_cursor *c)
{
    const struct btree_leaf *leaf = c->leaf;
    return leaf->value[c->pos];
}

const void *btree_cursor_key(const struct btree_cursor *c, uint32_t *len)
{
    return c->tree->key_of(btree_cursor_value(c), len);
}

void btree_next(struct btree_cursor *c)
{
    struct btree_leaf *leaf = c->leaf;
    if (leaf == NULL)
        return;
    if ((uint32_t)++c->pos == leaf->count) {
        c->leaf = leaf->next;
        c->pos = 0;
    }
}

void btree_prev(struct btree_cursor *c)
{
    struct btree_leaf *leaf = c->leaf;
    if (leaf == NULL)
        return;
    if (c->pos-- == 0) {
        leaf = leaf->prev;
        c->leaf = leaf;
        c->pos = leaf != NULL ? (int)leaf->count - 1 : 0;
    }
}

void *const *btree_cursor_leaf_values(const struct btree_cursor *c, uint32_t *count)
{
    const struct btree_leaf *leaf = c->leaf;
    *count = leaf->count;
    return leaf->value;
}

void btree_cursor_next_leaf(struct btree_cursor *c, bool reverse)
{
    struct btree_leaf *leaf = c->leaf;
    if (leaf == NULL)
        return;
    leaf = reverse ? leaf->prev : leaf->next;
    c->leaf = leaf;
    c->pos = leaf == NULL ? 0 : reverse ? (int)leaf->count - 1 : 0;
}

void btree_cursor_prefetch_neighbor(const struct btree_cursor *c, bool reverse)
{
    const struct btree_leaf *leaf = c->leaf;
    const struct btree_leaf *neighbor = leaf == NULL ? NULL : reverse ? leaf->prev : leaf->next;
    if (neighbor == NULL)
        return;
    /* What a scan reads of it: the count, the values and the links (not the prefixes). */
    __builtin_prefetch(neighbor);
    btree_prefetch(neighbor->value, sizeof neighbor->value + sizeof neighbor->prev +
                                        sizeof neighbor->next);
}

/* ---- checking ----------------------------------------------------------------------- */

struct btree_check_state {
    const struct btree *tree;
    const struct btree_leaf *previous_leaf;
    const uint8_t *previous_bytes; /* the last key seen, in key order across leaves */
    uint32_t previous_length;
    size_t keys;
    size_t leaves;
    size_t inners;
    size_t separator_bytes;
};

static int btree_check_fail(const char *what)
{
    fprintf(stderr, "btree_check: %s\n", what);
    return -1;
}

/* memcmp order on whole keys, a proper prefix first. */
static int btree_check_compare_bytes(const uint8_t *a, uint32_t a_length, const uint8_t *b,
                                     uint32_t b_length)
{
    uint32_t shorter = a_length < b_length ? a_length : b_length;
    int c = shorter > 0 ? memcmp(a, b, shorter) : 0;
    if (c != 0)
        return c;
    return (a_length > b_length) - (a_length < b_length);
}

/* Orders a key against a separator; a NULL separator stands for minus infinity when
 * `high` is false and plus infinity when it is true. */
static int btree_check_compare(uint64_t prefix, const uint8_t *rest, uint32_t length,
                               const struct btree_separator *separator, bool high)
{
    if (separator == NULL)
        return high ? -1 : 1;
    return btree_compare_keys(prefix, rest, length, separator->prefix, separator->tail,
                              separator->length);
}

static int btree_check_node(struct btree_check_state *state, const void *node, uint32_t depth,
                            const struct btree_separator *low, const struct btree_separator *high)
{
    const struct btree *tree = state->tree;
    bool root = depth == 0;
    if (depth + 1 == tree->height) {
        const struct btree_leaf *leaf = node;
        uint32_t minimum = root || tree->fill_relaxed ? 1 : BTREE_LEAF_MIN;
        if (leaf->count < minimum || leaf->count > BTREE_LEAF_SLOTS)
            return btree_check_fail("leaf fill out of bounds");
        if (leaf->prev != state->previous_leaf)
            return btree_check_fail("leaf prev link");
        if (state->previous_leaf != NULL && state->previous_leaf->next != leaf)
            return btree_check_fail("leaf next link");
        for (uint32_t i = leaf->count; i < BTREE_LEAF_SLOTS; i++)
            if (leaf->prefix[i] != UINT64_MAX)
                return btree_check_fail("unused leaf slot without its sentinel");
        if (leaf->skip > BTREE_HEAD_BYTES)
            return btree_check_fail("leaf skip beyond its head's capacity");
        for (uint32_t i = 0; i < leaf->count; i++) {
            if (leaf->value[i] == NULL)
                return btree_check_fail("NULL value in a leaf");
            uint32_t length;
            const uint8_t *bytes = tree->key_of(leaf->value[i], &length);
            if (length < leaf->skip ||
                (leaf->skip > 0 && memcmp(bytes, leaf->head, leaf->skip) != 0))
                return btree_check_fail("leaf key does not start with the leaf's head");
            if (btree_prefix_at(bytes, length, leaf->skip) != leaf->prefix[i])
                return btree_check_fail("slot prefix differs from its key's bytes after the head");
            /* Order is checked on whole keys, independently of the prefixes. */
            if (state->previous_bytes != NULL &&
                btree_check_compare_bytes(state->previous_bytes, state->previous_length, bytes,
                                          length) >= 0)
                return btree_check_fail("leaf keys out of order");
            uint64_t prefix = btree_prefix_of(bytes, length);
            const uint8_t *rest = btree_rest_of(bytes, length, 8);
            if (btree_check_compare(prefix, rest, length, low, false) < 0 ||
                btree_check_compare(prefix, rest, length, high, true) >= 0)
                return btree_check_fail("leaf key outside its separators");
            state->previous_bytes = bytes;
            state->previous_length = length;
        }
        state->previous_leaf = leaf;
        state->leaves++;
        state->keys += leaf->count;
        return 0;
    }

    const struct btree_inner *inner = node;
    uint32_t minimum = root ? 2 : BTREE_INNER_MIN;
    if (inner->count < minimum || inner->count > BTREE_INNER_SLOTS)
        return btree_check_fail("inner fill out of bounds");
    for (uint32_t i = inner->count - 1; i < BTREE_INNER_SLOTS; i++)
        if (inner->prefix[i] != UINT64_MAX)
            return btree_check_fail("unused separator slot without its sentinel");
    if (inner->skip > BTREE_HEAD_BYTES)
        return btree_check_fail("inner skip beyond its head's capacity");
    if (inner->skip != 0 && !tree->inner_skipping)
        return btree_check_fail("inner node skips but the tree's descent would not look");
    state->inners++;
    for (uint32_t i = 0; i + 1 < inner->count; i++) {
        struct btree_separator separator = btree_inner_separator(inner, i);
        if (separator.length == 0)
            return btree_check_fail("empty separator");
        if ((separator.length > 8) != (separator.tail != NULL))
            return btree_check_fail("separator tail present iff longer than 8 bytes");
        /* The separator's bytes below the 9th are rebuilt from the head and its stored
         * prefix; those from the 9th on are its tail. Both must agree with the head and
         * the stored prefix. */
        if (separator.length < inner->skip)
            return btree_check_fail("separator shorter than its node's head");
        uint8_t bytes[BTREE_HEAD_BYTES];
        btree_separator_copy_bytes(&separator, inner->skip, bytes);
        if (inner->skip > 0 && memcmp(bytes, inner->head, inner->skip) != 0)
            return btree_check_fail("separator does not start with its node's head");
        if (btree_separator_prefix_at(&separator, inner->skip) != inner->prefix[i])
            return btree_check_fail("separator prefix differs from its bytes after the head");
        if (separator.length < 8 && (separator.prefix << (8 * separator.length)) != 0)
            return btree_check_fail("separator prefix has bytes past its length");
        if (separator.length > 8)
            state->separator_bytes += separator.length - 8;
        int above_low =
            btree_check_compare(separator.prefix, separator.tail, separator.length, low, false);
        int below_high =
            btree_check_compare(separator.prefix, separator.tail, separator.length, high, true);
        if (above_low <= 0 || below_high >= 0)
            return btree_check_fail("separator outside its bounds");
        if (i > 0) {
            struct btree_separator previous = btree_inner_separator(inner, i - 1);
            if (btree_compare_keys(previous.prefix, previous.tail, previous.length,
                                   separator.prefix, separator.tail, separator.length) >= 0)
                return btree_check_fail("separators out of order");
        }
    }
    for (uint32_t i = 0; i < inner->count; i++) {
        struct btree_separator child_low, child_high;
        if (i > 0)
            child_low = btree_inner_separator(inner, i - 1);
        if (i + 1 < inner->count)
            child_high = btree_inner_separator(inner, i);
        if (inner->child[i] == NULL)
            return btree_check_fail("NULL child");
        if (btree_check_node(state, inner->child[i], depth + 1, i > 0 ? &child_low : low,
                             i + 1 < inner->count ? &child_high : high) != 0)
            return -1;
    }
    return 0;
}

int btree_check(const struct btree *tree)
{
    if (tree->root == NULL) {
        if (tree->height != 0 || tree->count != 0 || tree->leaves != 0 || tree->inners != 0 ||
            tree->separator_bytes != 0)
            return btree_check_fail("empty tree with nonzero counters");
        return 0;
    }
    if (tree->height == 0 || tree->height > BTREE_MAX_HEIGHT)
        return btree_check_fail("height out of range");
    struct btree_check_state state = {.tree = tree};
    if (btree_check_node(&state, tree->root, 0, NULL, NULL) != 0)
        return -1;
    if (state.previous_leaf->next != NULL)
        return btree_check_fail("last leaf has a next link");
    if (state.keys != tree->count)
        return btree_check_fail("key count differs");
    if (state.leaves != tree->leaves || state.inners != tree->inners)
        return btree_check_fail("node count differs");
    if (state.separator_bytes != tree->separator_bytes)
        return btree_check_fail("separator byte count differs");
    return 0;
}
