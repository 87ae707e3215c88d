/*
 * btree_vs_art.c -- the ordered index (src/core/btree.c) against an adaptive radix tree.
 *
 * Why this exists. The kv namespaces need an ordered map per (namespace, shard). The two
 * usual candidates are a B+tree and an adaptive radix tree (ART: Leis, Kemper, Neumann,
 * "The Adaptive Radix Tree", ICDE 2013). This program builds both over the same 1M random
 * 16-byte keys and prints, for each: insert ns/key (random order), lookup ns/key (another
 * random order), a full ordered walk in ns/key, and bytes/key held by the structure. The
 * figures decide which one the engine uses.
 *
 * The ART here is minimal but complete for what is measured: node types 4, 16, 48 and 256
 * that grow as children arrive; lazy expansion (a leaf sits as high as its key is unique,
 * and it is the tagged value pointer itself, so neither structure copies keys: both read a
 * key through its value, as the engine's versions hold their keys); path compression with
 * up to 8 prefix bytes kept in the node (longer prefixes are checked against a leaf, the
 * "hybrid" scheme of the paper); insert, lookup and an in-order walk. It has no delete, and
 * it assumes no key is a proper prefix of another (true of the fixed-length keys used
 * here), which a real one would handle with a terminator byte or a leaf slot per node.
 *
 * Both structures see identical work: the same value objects (each allocated separately,
 * holding its key), the same insertion order, the same lookup order, keys to look up
 * stored contiguously so the loop itself does not miss the cache. Every timed phase runs
 * three times and the best is printed. Time is the thread's CPU time, not the wall clock:
 * on a shared machine that leaves out the time the program waits to be scheduled (it still
 * includes every stall on memory, which is what is being compared).
 *
 * Build and run from the repository root (not part of any build target):
 *
 *     gcc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Isrc -Iinclude \
 *         bench/btree_vs_art.c src/core/btree.c -o /tmp/btree_vs_art && /tmp/btree_vs_art
 *
 * An optional argument sets the number of keys (default 1000000). With --redis the keys are
 * those redis-benchmark uses, "key:%012d" over the numbers 0..N-1 in a random order: 16
 * bytes like the random keys, but every key shares its first 10 bytes with every other,
 * which is the case the leaves' prefix skipping (see "Shared prefixes" in btree.c) is for.
 */
#include <emmintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/btree.h"

#define KEY_LENGTH 16
#define RUNS 3

/* ---- value objects ------------------------------------------------------------------ */

struct bench_item {
    uint32_t length;
    uint8_t key[KEY_LENGTH];
};

static const void *bench_item_key(const void *value, uint32_t *len)
{
    const struct bench_item *item = value;
    *len = item->length;
    return item->key;
}

/* ---- the adaptive radix tree -------------------------------------------------------- */

enum art_type { ART_NODE4 = 1, ART_NODE16, ART_NODE48, ART_NODE256 };

#define ART_MAX_PREFIX 8

struct art_node {
    uint8_t type;
    uint8_t unused;
    uint16_t children;
    uint32_t prefix_length; /* may exceed ART_MAX_PREFIX; only that many bytes are kept */
    uint8_t prefix[ART_MAX_PREFIX];
};

struct art_node4 {
    struct art_node header;
    uint8_t keys[4];
    void *child[4];
};

struct art_node16 {
    struct art_node header;
    uint8_t keys[16];
    void *child[16];
};

struct art_node48 {
    struct art_node header;
    uint8_t index[256]; /* slot + 1, 0 when absent */
    void *child[48];
};

struct art_node256 {
    struct art_node header;
    void *child[256];
};

struct art {
    void *root;
    size_t bytes;
};

/* A leaf is the value pointer with its low bit set (values are at least 2-byte aligned). */
static inline bool art_is_leaf(const void *node)
{
    return ((uintptr_t)node & 1) != 0;
}

static inline void *art_leaf_make(const void *value)
{
    return (void *)((uintptr_t)value | 1);
}

static inline const struct bench_item *art_leaf_value(const void *node)
{
    return (const struct bench_item *)((uintptr_t)node & ~(uintptr_t)1);
}

static size_t art_node_size(uint8_t type)
{
    switch (type) {
    case ART_NODE4:
        return sizeof(struct art_node4);
    case ART_NODE16:
        return sizeof(struct art_node16);
    case ART_NODE48:
        return sizeof(struct art_node48);
    default:
        return sizeof(struct art_node256);
    }
}

static struct art_node *art_node_new(struct art *tree, uint8_t type)
{
    size_t size = art_node_size(type);
    struct art_node *node = calloc(1, size);
    if (node == NULL) {
        perror("calloc");
        exit(1);
    }
    node->type = type;
    tree->bytes += size;
    return node;
}

static void art_node_release(struct art *tree, struct art_node *node)
{
    tree->bytes -= art_node_size(node->type);
    free(node);
}

static void **art_find_child(struct art_node *node, uint8_t byte)
{
    switch (node->type) {
    case ART_NODE4: {
        struct art_node4 *n = (struct art_node4 *)node;
        for (int i = 0; i < node->children; i++)
            if (n->keys[i] == byte)
                return &n->child[i];
        return NULL;
    }
    case ART_NODE16: {
        struct art_node16 *n = (struct art_node16 *)node;
        __m128i equal =
            _mm_cmpeq_epi8(_mm_set1_epi8((char)byte), _mm_loadu_si128((const __m128i *)n->keys));
        unsigned mask = (unsigned)_mm_movemask_epi8(equal) & ((1u << node->children) - 1);
        return mask != 0 ? &n->child[__builtin_ctz(mask)] : NULL;
    }
    case ART_NODE48: {
        struct art_node48 *n = (struct art_node48 *)node;
        return n->index[byte] != 0 ? &n->child[n->index[byte] - 1] : NULL;
    }
    default: {
        struct art_node256 *n = (struct art_node256 *)node;
        return n->child[byte] != NULL ? &n->child[byte] : NULL;
    }
    }
}

/* The leftmost leaf under node: it carries the bytes of a prefix too long to keep inline. */
static const struct bench_item *art_minimum(const void *node)
{
    while (!art_is_leaf(node)) {
        const struct art_node *n = node;
        switch (n->type) {
        case ART_NODE4:
            node = ((const struct art_node4 *)n)->child[0];
            break;
        case ART_NODE16:
            node = ((const struct art_node16 *)n)->child[0];
            break;
        case ART_NODE48: {
            const struct art_node48 *n48 = (const struct art_node48 *)n;
            int b = 0;
            while (n48->index[b] == 0)
                b++;
            node = n48->child[n48->index[b] - 1];
            break;
        }
        default: {
            const struct art_node256 *n256 = (const struct art_node256 *)n;
            int b = 0;
            while (n256->child[b] == NULL)
                b++;
            node = n256->child[b];
            break;
        }
        }
    }
    return art_leaf_value(node);
}

static void art_copy_header(struct art_node *to, const struct art_node *from)
{
    to->children = from->children;
    to->prefix_length = from->prefix_length;
    memcpy(to->prefix, from->prefix, ART_MAX_PREFIX);
}

/* Adds child under byte to the node in *ref, growing the node when it is full. */
static void art_add_child(struct art *tree, void **ref, struct art_node *node, uint8_t byte,
                          void *child)
{
    switch (node->type) {
    case ART_NODE4: {
        struct art_node4 *n = (struct art_node4 *)node;
        if (node->children < 4) {
            int i = 0;
            while (i < node->children && n->keys[i] < byte)
                i++;
            memmove(&n->keys[i + 1], &n->keys[i], (size_t)(node->children - i));
            memmove(&n->child[i + 1], &n->child[i], (size_t)(node->children - i) * sizeof(void *));
            n->keys[i] = byte;
            n->child[i] = child;
            node->children++;
            return;
        }
        struct art_node16 *grown = (struct art_node16 *)art_node_new(tree, ART_NODE16);
        art_copy_header(&grown->header, node);
        memcpy(grown->keys, n->keys, 4);
        memcpy(grown->child, n->child, 4 * sizeof(void *));
        *ref = grown;
        art_node_release(tree, node);
        art_add_child(tree, ref, &grown->header, byte, child);
        return;
    }
    case ART_NODE16: {
        struct art_node16 *n = (struct art_node16 *)node;
        if (node->children < 16) {
            int i = 0;
            while (i < node->children && n->keys[i] < byte)
                i++;
            memmove(&n->keys[i + 1], &n->keys[i], (size_t)(node->children - i));
            memmove(&n->child[i + 1], &n->child[i], (size_t)(node->children - i) * sizeof(void *));
            n->keys[i] = byte;
            n->child[i] = child;
            node->children++;
            return;
        }
        struct art_node48 *grown = (struct art_node48 *)art_node_new(tree, ART_NODE48);
        art_copy_header(&grown->header, node);
        for (int i = 0; i < 16; i++) {
            grown->child[i] = n->child[i];
            grown->index[n->keys[i]] = (uint8_t)(i + 1);
        }
        *ref = grown;
        art_node_release(tree, node);
        art_add_child(tree, ref, &grown->header, byte, child);
        return;
    }
    case ART_NODE48: {
        struct art_node48 *n = (struct art_node48 *)node;
        if (node->children < 48) {
            int slot = 0;
            while (n->child[slot] != NULL)
                slot++;
            n->child[slot] = child;
            n->index[byte] = (uint8_t)(slot + 1);
            node->children++;
            return;
        }
        struct art_node256 *grown = (struct art_node256 *)art_node_new(tree, ART_NODE256);
        art_copy_header(&grown->header, node);
        for (int b = 0; b < 256; b++)
            if (n->index[b] != 0)
                grown->child[b] = n->child[n->index[b] - 1];
        *ref = grown;
        art_node_release(tree, node);
        art_add_child(tree, ref, &grown->header, byte, child);
        return;
    }
    default: {
        struct art_node256 *n = (struct art_node256 *)node;
        n->child[byte] = child;
        node->children++;
        return;
    }
    }
}

/* How many bytes of node's compressed path match key from depth. */
static uint32_t art_prefix_mismatch(const struct art_node *node, const uint8_t *key,
                                    uint32_t length, uint32_t depth)
{
    uint32_t limit = node->prefix_length < ART_MAX_PREFIX ? node->prefix_length : ART_MAX_PREFIX;
    if (limit > length - depth)
        limit = length - depth;
    uint32_t i = 0;
    for (; i < limit; i++)
        if (node->prefix[i] != key[depth + i])
            return i;
    if (node->prefix_length > ART_MAX_PREFIX) {
        const struct bench_item *leaf = art_minimum(node);
        limit = (leaf->length < length ? leaf->length : length) - depth;
        if (limit > node->prefix_length)
            limit = node->prefix_length;
        for (; i < limit; i++)
            if (leaf->key[depth + i] != key[depth + i])
                return i;
    }
    return i;
}

static void art_insert(struct art *tree, const struct bench_item *value)
{
    const uint8_t *key = value->key;
    uint32_t length = value->length;
    void **ref = &tree->root;
    uint32_t depth = 0;
    for (;;) {
        void *node = *ref;
        if (node == NULL) {
            *ref = art_leaf_make(value);
            return;
        }
        if (art_is_leaf(node)) {
            const struct bench_item *other = art_leaf_value(node);
            if (other->length == length && memcmp(other->key, key, length) == 0) {
                *ref = art_leaf_make(value);
                return;
            }
            /* Lazy expansion ends here: a node4 holding both leaves, under their common
             * bytes. */
            uint32_t common = 0;
            while (depth + common < length && depth + common < other->length &&
                   key[depth + common] == other->key[depth + common])
                common++;
            struct art_node *split = art_node_new(tree, ART_NODE4);
            split->prefix_length = common;
            memcpy(split->prefix, key + depth, common < ART_MAX_PREFIX ? common : ART_MAX_PREFIX);
            *ref = split;
            art_add_child(tree, ref, split, other->key[depth + common], node);
            art_add_child(tree, ref, split, key[depth + common], art_leaf_make(value));
            return;
        }
        struct art_node *inner = node;
        if (inner->prefix_length > 0) {
            uint32_t matched = art_prefix_mismatch(inner, key, length, depth);
            if (matched < inner->prefix_length) {
                /* The key leaves the compressed path: split the path at the mismatch. */
                struct art_node *split = art_node_new(tree, ART_NODE4);
                split->prefix_length = matched;
                memcpy(split->prefix, inner->prefix,
                       matched < ART_MAX_PREFIX ? matched : ART_MAX_PREFIX);
                *ref = split;
                if (inner->prefix_length <= ART_MAX_PREFIX) {
                    uint8_t byte = inner->prefix[matched];
                    inner->prefix_length -= matched + 1;
                    memmove(inner->prefix, inner->prefix + matched + 1,
                            inner->prefix_length < ART_MAX_PREFIX ? inner->prefix_length
                                                                  : ART_MAX_PREFIX);
                    art_add_child(tree, ref, split, byte, inner);
                } else {
                    const struct bench_item *leaf = art_minimum(inner);
                    uint8_t byte = leaf->key[depth + matched];
                    inner->prefix_length -= matched + 1;
                    memcpy(inner->prefix, leaf->key + depth + matched + 1,
                           inner->prefix_length < ART_MAX_PREFIX ? inner->prefix_length
                                                                 : ART_MAX_PREFIX);
                    art_add_child(tree, ref, split, byte, inner);
                }
                art_add_child(tree, ref, split, key[depth + matched], art_leaf_make(value));
                return;
            }
            depth += inner->prefix_length;
        }
        void **child = art_find_child(inner, key[depth]);
        if (child == NULL) {
            art_add_child(tree, ref, inner, key[depth], art_leaf_make(value));
            return;
        }
        ref = child;
        depth++;
    }
}

static const struct bench_item *art_lookup(const struct art *tree, const uint8_t *key,
                                           uint32_t length)
{
    void *node = tree->root;
    uint32_t depth = 0;
    while (node != NULL) {
        if (art_is_leaf(node)) {
            const struct bench_item *item = art_leaf_value(node);
            if (item->length == length && memcmp(item->key, key, length) == 0)
                return item;
            return NULL;
        }
        struct art_node *inner = node;
        if (inner->prefix_length > 0) {
            /* Optimistic: bytes past the inline ones are checked at the leaf. */
            uint32_t kept =
                inner->prefix_length < ART_MAX_PREFIX ? inner->prefix_length : ART_MAX_PREFIX;
            if (depth + inner->prefix_length >= length)
                return NULL;
            if (memcmp(inner->prefix, key + depth, kept) != 0)
                return NULL;
            depth += inner->prefix_length;
        }
        void **child = art_find_child(inner, key[depth]);
        node = child != NULL ? *child : NULL;
        depth++;
    }
    return NULL;
}

struct art_walk_state {
    size_t count;
    uintptr_t sum;
};

/* In-order walk; the visit is inline so that the walk itself is what is timed. */
static void art_walk(const void *node, struct art_walk_state *state)
{
    if (art_is_leaf(node)) {
        state->count++;
        state->sum += (uintptr_t)art_leaf_value(node);
        return;
    }
    const struct art_node *n = node;
    switch (n->type) {
    case ART_NODE4:
        for (int i = 0; i < n->children; i++)
            art_walk(((const struct art_node4 *)n)->child[i], state);
        break;
    case ART_NODE16:
        for (int i = 0; i < n->children; i++)
            art_walk(((const struct art_node16 *)n)->child[i], state);
        break;
    case ART_NODE48: {
        const struct art_node48 *n48 = (const struct art_node48 *)n;
        for (int b = 0; b < 256; b++)
            if (n48->index[b] != 0)
                art_walk(n48->child[n48->index[b] - 1], state);
        break;
    }
    default: {
        const struct art_node256 *n256 = (const struct art_node256 *)n;
        for (int b = 0; b < 256; b++)
            if (n256->child[b] != NULL)
                art_walk(n256->child[b], state);
        break;
    }
    }
}

/* Collects the values in walk order (untimed: to check the order against the B+tree). */
static void art_collect(const void *node, const struct bench_item **out, size_t *count)
{
    if (art_is_leaf(node)) {
        out[(*count)++] = art_leaf_value(node);
        return;
    }
    const struct art_node *n = node;
    switch (n->type) {
    case ART_NODE4:
        for (int i = 0; i < n->children; i++)
            art_collect(((const struct art_node4 *)n)->child[i], out, count);
        break;
    case ART_NODE16:
        for (int i = 0; i < n->children; i++)
            art_collect(((const struct art_node16 *)n)->child[i], out, count);
        break;
    case ART_NODE48: {
        const struct art_node48 *n48 = (const struct art_node48 *)n;
        for (int b = 0; b < 256; b++)
            if (n48->index[b] != 0)
                art_collect(n48->child[n48->index[b] - 1], out, count);
        break;
    }
    default: {
        const struct art_node256 *n256 = (const struct art_node256 *)n;
        for (int b = 0; b < 256; b++)
            if (n256->child[b] != NULL)
                art_collect(n256->child[b], out, count);
        break;
    }
    }
}

static void art_free_node(struct art *tree, void *node)
{
    if (node == NULL || art_is_leaf(node))
        return;
    struct art_node *n = node;
    switch (n->type) {
    case ART_NODE4:
        for (int i = 0; i < n->children; i++)
            art_free_node(tree, ((struct art_node4 *)n)->child[i]);
        break;
    case ART_NODE16:
        for (int i = 0; i < n->children; i++)
            art_free_node(tree, ((struct art_node16 *)n)->child[i]);
        break;
    case ART_NODE48:
        for (int i = 0; i < 48; i++)
            art_free_node(tree, ((struct art_node48 *)n)->child[i]);
        break;
    default:
        for (int b = 0; b < 256; b++)
            art_free_node(tree, ((struct art_node256 *)n)->child[b]);
        break;
    }
    art_node_release(tree, n);
}

/* ---- the benchmark ------------------------------------------------------------------ */

static uint64_t bench_rng = 0x243F6A8885A308D3ULL;

static uint64_t bench_random(void)
{
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return bench_rng;
}

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void bench_fail(const char *what)
{
    fprintf(stderr, "btree_vs_art: %s\n", what);
    exit(1);
}

struct bench_figures {
    double insert_ns;
    double lookup_ns;
    double walk_ns;
    double bytes_per_key;
};

static void bench_keep_best(double *best, double start, double end, size_t n)
{
    double per_key = (end - start) / (double)n;
    if (per_key < *best)
        *best = per_key;
}

int main(int argc, char **argv)
{
    size_t n = 1000000;
    bool redis_keys = false;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--redis") == 0)
            redis_keys = true;
        else
            n = strtoul(argv[a], NULL, 10);
    }
    if (n < 2)
        bench_fail("need at least 2 keys");
    if (redis_keys && n > 1000000000000ull)
        bench_fail("--redis keys hold 12 decimal digits");

    struct bench_item **items = malloc(n * sizeof(*items));
    uint8_t(*probes)[KEY_LENGTH] = malloc(n * KEY_LENGTH);
    struct bench_item **expected = malloc(n * sizeof(*expected));
    const struct bench_item **order_btree = malloc(n * sizeof(*order_btree));
    const struct bench_item **order_art = malloc(n * sizeof(*order_art));
    if (!items || !probes || !expected || !order_btree || !order_art)
        bench_fail("out of memory");
    for (size_t i = 0; i < n; i++) {
        items[i] = malloc(sizeof(struct bench_item));
        if (items[i] == NULL)
            bench_fail("out of memory");
        items[i]->length = KEY_LENGTH;
        uint64_t a = bench_random(), b = bench_random();
        memcpy(items[i]->key, &a, 8);
        memcpy(items[i]->key + 8, &b, 8);
    }
    if (redis_keys) {
        /* Key i is number i; shuffling the items makes the insertion order random. */
        for (size_t i = 0; i < n; i++) {
            char text[32]; /* n <= 10^12 (checked above): exactly 16 characters */
            snprintf(text, sizeof(text), "key:%012zu", i);
            memcpy(items[i]->key, text, KEY_LENGTH);
        }
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = bench_random() % (i + 1);
            struct bench_item *swap = items[i];
            items[i] = items[j];
            items[j] = swap;
        }
    }
    /* The lookup order is a shuffle of the insertion order; the keys to look up are copied
     * into one sequential array. */
    for (size_t i = 0; i < n; i++)
        expected[i] = items[i];
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = bench_random() % (i + 1);
        struct bench_item *swap = expected[i];
        expected[i] = expected[j];
        expected[j] = swap;
    }
    for (size_t i = 0; i < n; i++)
        memcpy(probes[i], expected[i]->key, KEY_LENGTH);

    struct bench_figures btree_figures = {1e18, 1e18, 1e18, 0};
    struct bench_figures art_figures = {1e18, 1e18, 1e18, 0};
    size_t btree_keys = 0, art_keys = 0;

    for (int run = 0; run < RUNS; run++) {
        /* B+tree. */
        struct btree *tree = btree_new(bench_item_key);
        if (tree == NULL)
            bench_fail("out of memory");
        double start = bench_now();
        for (size_t i = 0; i < n; i++) {
            void **slot;
            bool created;
            if (btree_upsert(tree, items[i]->key, KEY_LENGTH, &slot, &created) != 0)
                bench_fail("btree_upsert failed");
            *slot = items[i];
        }
        bench_keep_best(&btree_figures.insert_ns, start, bench_now(), n);
        btree_keys = btree_count(tree);
        btree_figures.bytes_per_key = (double)btree_memory(tree) / (double)btree_keys;

        size_t hits = 0;
        start = bench_now();
        for (size_t i = 0; i < n; i++)
            hits += btree_get(tree, probes[i], KEY_LENGTH) == expected[i];
        bench_keep_best(&btree_figures.lookup_ns, start, bench_now(), n);
        if (hits != n)
            bench_fail("btree lookup missed a key");

        struct btree_cursor cursor;
        size_t walked = 0;
        uintptr_t btree_sum = 0;
        start = bench_now();
        for (btree_seek_ge(tree, &cursor, NULL, 0); btree_cursor_valid(&cursor);
             btree_next(&cursor)) {
            walked++;
            btree_sum += (uintptr_t)btree_cursor_value(&cursor);
        }
        bench_keep_best(&btree_figures.walk_ns, start, bench_now(), n);
        if (walked != btree_keys)
            bench_fail("btree walk count differs");
        if (run == 0) {
            size_t i = 0;
            for (btree_seek_ge(tree, &cursor, NULL, 0); btree_cursor_valid(&cursor);
                 btree_next(&cursor))
                order_btree[i++] = btree_cursor_value(&cursor);
        }
        btree_free(tree);

        /* ART. */
        struct art art = {NULL, sizeof(struct art)};
        start = bench_now();
        for (size_t i = 0; i < n; i++)
            art_insert(&art, items[i]);
        bench_keep_best(&art_figures.insert_ns, start, bench_now(), n);

        hits = 0;
        start = bench_now();
        for (size_t i = 0; i < n; i++)
            hits += art_lookup(&art, probes[i], KEY_LENGTH) == expected[i];
        bench_keep_best(&art_figures.lookup_ns, start, bench_now(), n);
        if (hits != n)
            bench_fail("art lookup missed a key");

        struct art_walk_state state = {0, 0};
        start = bench_now();
        art_walk(art.root, &state);
        bench_keep_best(&art_figures.walk_ns, start, bench_now(), n);
        art_keys = state.count;
        art_figures.bytes_per_key = (double)art.bytes / (double)art_keys;
        if (state.count != btree_keys || state.sum != btree_sum)
            bench_fail("the walks differ");
        if (run == 0) {
            size_t count = 0;
            art_collect(art.root, order_art, &count);
            if (count != btree_keys ||
                memcmp(order_art, order_btree, count * sizeof(*order_art)) != 0)
                bench_fail("the walks visit keys in different orders");
        }
        art_free_node(&art, art.root);
    }

    printf("%zu %s %d-byte keys, random insert and lookup orders, best of %d runs\n", btree_keys,
           redis_keys ? "redis-style (key:%012d)" : "random", KEY_LENGTH, RUNS);
    printf("%-8s %12s %12s %14s %10s\n", "", "insert ns", "lookup ns", "walk ns/key", "bytes/key");
    printf("%-8s %12.0f %12.0f %14.2f %10.1f\n", "btree", btree_figures.insert_ns,
           btree_figures.lookup_ns, btree_figures.walk_ns, btree_figures.bytes_per_key);
    printf("%-8s %12.0f %12.0f %14.2f %10.1f\n", "art", art_figures.insert_ns,
           art_figures.lookup_ns, art_figures.walk_ns, art_figures.bytes_per_key);
    printf("%-8s %12.2f %12.2f %14.2f %10.2f\n", "art/btree",
           art_figures.insert_ns / btree_figures.insert_ns,
           art_figures.lookup_ns / btree_figures.lookup_ns,
           art_figures.walk_ns / btree_figures.walk_ns,
           art_figures.bytes_per_key / btree_figures.bytes_per_key);

    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
    free(probes);
    free(expected);
    free(order_btree);
    free(order_art);
    return 0;
}
