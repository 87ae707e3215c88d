/*
 * test_btree.c -- the ordered index (src/core/btree.c) against a model.
 *
 * The model is a plain array of items kept sorted by memcmp order. Every test drives the
 * tree and the model with the same operations and then compares them: point reads, full
 * walks in both directions, seeks at, before, between and after keys, the key count, and
 * btree_check() (which verifies every structural invariant of the tree). Keys are made to
 * stress the 8-byte prefix scheme: keys equal in their first 8 bytes, keys that are
 * prefixes of each other, keys that end in zero bytes (zero padding must not make "a" equal
 * "a\0"), the empty key and 64 KiB keys. The sizes are chosen so that the tree reaches 3+
 * levels (leaf splits, inner splits and a new root) and then is emptied again (merges,
 * rebalancing, the root shrinking to nothing). All loops are bounded and nothing is timed.
 *
 * Nodes skip the leading bytes all their keys (or separators) share and keep them as a
 * head; the shared-prefix tests below build trees whose keys share 0 to 100 bytes, keys
 * that are prefixes of others, and then insert keys that break a node's head (below, above
 * and between the others, into the first, last and middle leaves, with and without
 * injected allocation failures), which forces the skips down; btree_check verifies that
 * every key starts with its node's head and that every prefix is the key's bytes after it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/btree.h"

/* ---- items: the values stored in the tree, each holding its own key ------------------ */

struct item {
    uint32_t length;
    uint32_t version; /* distinguishes two items with the same key */
    uint8_t key[];
};

static const void *item_key(const void *value, uint32_t *len)
{
    const struct item *item = value;
    *len = item->length;
    return item->key;
}

static struct item *item_new(const void *key, uint32_t length, uint32_t version)
{
    struct item *item = malloc(sizeof(*item) + length + 1);
    assert_non_null(item);
    item->length = length;
    item->version = version;
    if (length > 0)
        memcpy(item->key, key, length);
    return item;
}

static int key_compare(const void *a, uint32_t a_length, const void *b, uint32_t b_length)
{
    uint32_t shorter = a_length < b_length ? a_length : b_length;
    int c = shorter > 0 ? memcmp(a, b, shorter) : 0;
    if (c != 0)
        return c;
    return (a_length > b_length) - (a_length < b_length);
}

/* ---- the model: a sorted array ---------------------------------------------------- */

struct model {
    struct item **items;
    size_t count;
    size_t capacity;
};

/* First index whose key is >= key. */
static size_t model_lower_bound(const struct model *model, const void *key, uint32_t length)
{
    size_t low = 0, high = model->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        const struct item *item = model->items[middle];
        if (key_compare(item->key, item->length, key, length) < 0)
            low = middle + 1;
        else
            high = middle;
    }
    return low;
}

static struct item *model_get(const struct model *model, const void *key, uint32_t length)
{
    size_t i = model_lower_bound(model, key, length);
    if (i < model->count &&
        key_compare(model->items[i]->key, model->items[i]->length, key, length) == 0)
        return model->items[i];
    return NULL;
}

static void model_insert_at(struct model *model, size_t i, struct item *item)
{
    if (model->count == model->capacity) {
        model->capacity = model->capacity ? model->capacity * 2 : 1024;
        model->items = realloc(model->items, model->capacity * sizeof(*model->items));
        assert_non_null(model->items);
    }
    memmove(&model->items[i + 1], &model->items[i], (model->count - i) * sizeof(*model->items));
    model->items[i] = item;
    model->count++;
}

static void model_erase_at(struct model *model, size_t i)
{
    memmove(&model->items[i], &model->items[i + 1], (model->count - i - 1) * sizeof(*model->items));
    model->count--;
}

static void model_free(struct model *model)
{
    for (size_t i = 0; i < model->count; i++)
        free(model->items[i]);
    free(model->items);
    memset(model, 0, sizeof(*model));
}

/* ---- operations on tree and model together ---------------------------------------- */

static uint32_t next_version = 1;

/* Upserts key in both. A new key gets a fresh item; an existing key gets a newer item in
 * the same slot (as the engine stores a newer version). Returns whether it was created. */
static bool both_upsert(struct btree *tree, struct model *model, const void *key, uint32_t length)
{
    void **slot = NULL;
    bool created = false;
    assert_int_equal(btree_upsert(tree, key, length, &slot, &created), 0);
    assert_non_null(slot);
    size_t i = model_lower_bound(model, key, length);
    bool present = i < model->count &&
                   key_compare(model->items[i]->key, model->items[i]->length, key, length) == 0;
    assert_int_equal(created, !present);
    struct item *item = item_new(key, length, next_version++);
    if (created) {
        assert_null(*slot);
        model_insert_at(model, i, item);
    } else {
        assert_ptr_equal(*slot, model->items[i]);
        free(model->items[i]);
        model->items[i] = item;
    }
    *slot = item;
    return created;
}

static bool both_remove(struct btree *tree, struct model *model, const void *key, uint32_t length)
{
    struct item *removed = btree_remove(tree, key, length);
    size_t i = model_lower_bound(model, key, length);
    if (i < model->count &&
        key_compare(model->items[i]->key, model->items[i]->length, key, length) == 0) {
        assert_ptr_equal(removed, model->items[i]);
        free(removed);
        model_erase_at(model, i);
        return true;
    }
    assert_null(removed);
    return false;
}

/* Walks the tree a leaf at a time (btree_cursor_leaf_values, btree_cursor_next_leaf), as
 * scans do, from the seek position `at` in the given direction, and checks every value
 * against the model; stops at the end of the leaf where `limit` values are reached and
 * returns how many it saw. */
static size_t walk_leaf_runs(struct btree_cursor *c, const struct model *model, size_t at,
                             bool reverse, size_t limit)
{
    size_t seen = 0;
    while (btree_cursor_valid(c) && seen < limit) {
        btree_cursor_prefetch_neighbor(c, reverse);
        uint32_t count;
        void *const *values = btree_cursor_leaf_values(c, &count);
        assert_true(c->pos >= 0 && (uint32_t)c->pos < count);
        for (int pos = c->pos; pos >= 0 && (uint32_t)pos < count; pos += reverse ? -1 : 1) {
            size_t i = reverse ? at - seen : at + seen;
            assert_true(i < model->count);
            assert_ptr_equal(values[pos], model->items[i]);
            seen++;
        }
        btree_cursor_next_leaf(c, reverse);
    }
    return seen;
}

/* Compares everything observable: check, count, every point read, full walks. */
static void verify_all(const struct btree *tree, const struct model *model)
{
    assert_int_equal(btree_check(tree), 0);
    assert_int_equal(btree_count(tree), model->count);
    struct btree_cursor c;
    size_t i = 0;
    for (btree_seek_ge(tree, &c, NULL, 0); btree_cursor_valid(&c); btree_next(&c)) {
        assert_true(i < model->count);
        assert_ptr_equal(btree_cursor_value(&c), model->items[i]);
        uint32_t length;
        const void *key = btree_cursor_key(&c, &length);
        assert_ptr_equal(key, model->items[i]->key);
        i++;
    }
    assert_int_equal(i, model->count);
    for (btree_seek_lt(tree, &c, NULL, 0); btree_cursor_valid(&c); btree_prev(&c)) {
        assert_true(i > 0);
        i--;
        assert_ptr_equal(btree_cursor_value(&c), model->items[i]);
    }
    assert_int_equal(i, 0);
    btree_seek_ge(tree, &c, NULL, 0);
    assert_int_equal(walk_leaf_runs(&c, model, 0, false, SIZE_MAX), model->count);
    btree_seek_lt(tree, &c, NULL, 0);
    assert_int_equal(walk_leaf_runs(&c, model, model->count - 1, true, SIZE_MAX),
                     model->count);
    for (size_t k = 0; k < model->count; k++) {
        const struct item *item = model->items[k];
        assert_ptr_equal(btree_get(tree, item->key, item->length), item);
    }
}

/* Seeks at a probe key in both directions and walks a few steps from there. */
static void verify_seek(const struct btree *tree, const struct model *model, const void *key,
                        uint32_t length)
{
    size_t at = model_lower_bound(model, key, length);
    struct btree_cursor c;

    /* Leaf runs from here, across at least one leaf boundary when the tree has one. */
    const size_t limit = 100;
    btree_seek_ge(tree, &c, key, length);
    size_t n = walk_leaf_runs(&c, model, at, false, limit);
    assert_true(n == model->count - at || (n >= limit && n < model->count - at));
    btree_seek_lt(tree, &c, key, length);
    n = walk_leaf_runs(&c, model, at - 1, true, limit);
    assert_true(n == at || (n >= limit && n < at));

    btree_seek_ge(tree, &c, key, length);
    for (size_t i = at; i < at + 3; i++) {
        if (i >= model->count) {
            assert_false(btree_cursor_valid(&c));
            break;
        }
        assert_true(btree_cursor_valid(&c));
        assert_ptr_equal(btree_cursor_value(&c), model->items[i]);
        btree_next(&c);
    }
    btree_seek_ge(tree, &c, key, length);
    if (at < model->count) {
        btree_prev(&c);
        if (at == 0)
            assert_false(btree_cursor_valid(&c));
        else
            assert_ptr_equal(btree_cursor_value(&c), model->items[at - 1]);
    }

    btree_seek_lt(tree, &c, key, length);
    for (size_t i = at; i > 0 && i + 3 > at; i--) {
        assert_true(btree_cursor_valid(&c));
        assert_ptr_equal(btree_cursor_value(&c), model->items[i - 1]);
        btree_prev(&c);
    }
    if (at < 3)
        assert_false(btree_cursor_valid(&c));
    btree_seek_lt(tree, &c, key, length);
    if (at > 0) {
        btree_next(&c);
        if (at == model->count)
            assert_false(btree_cursor_valid(&c));
        else
            assert_ptr_equal(btree_cursor_value(&c), model->items[at]);
    }
}

/* ---- keys ------------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint32_t rng_below(uint32_t bound)
{
    return (uint32_t)(rng_next() % bound);
}

/* A random key of one of several shapes, written to buf (which holds 64 bytes). */
static uint32_t random_key(uint8_t *buf)
{
    static const uint8_t alphabet[] = {0x00, 0x01, 'a', 'b', 0xff};
    uint32_t length;
    switch (rng_below(4)) {
    case 0: /* 16 random bytes */
        length = 16;
        for (uint32_t i = 0; i < length; i++)
            buf[i] = (uint8_t)rng_next();
        break;
    case 1: /* short keys over a tiny alphabet: prefixes of each other, trailing zeros */
        length = rng_below(11);
        for (uint32_t i = 0; i < length; i++)
            buf[i] = alphabet[rng_below(sizeof(alphabet))];
        break;
    case 2: /* a shared 12-byte stem, then a tail over the tiny alphabet */
        memcpy(buf, "tenant/01234", 12);
        length = 12 + rng_below(8);
        for (uint32_t i = 12; i < length; i++)
            buf[i] = alphabet[rng_below(sizeof(alphabet))];
        break;
    default: /* the same first 8 bytes, a decimal number after them */
        length = (uint32_t)snprintf((char *)buf, 64, "prefix00%u", rng_below(100000));
        break;
    }
    return length;
}

/* ---- keys sharing long prefixes ----------------------------------------------------- */

/* The lengths of shared stems the prefix-skipping tests use: none, shorter than a slot
 * prefix, exactly one, between, around the 32-byte head capacity, and far past it. */
static const uint32_t stem_lengths[] = {0, 3, 8, 13, 31, 32, 40, 100};
#define STEM_MAX 100
#define STEM_KEY_MAX (STEM_MAX + 16)

/* One 100-byte text; every stem is a prefix of it, so the stems are prefixes of each other
 * as well. */
static uint8_t stem_text[STEM_MAX];

static void stem_text_init(void)
{
    static const char pattern[] = "session:2026-11-22:user:1234:profile/";
    for (uint32_t i = 0; i < STEM_MAX; i++)
        stem_text[i] = (uint8_t)pattern[i % (sizeof(pattern) - 1)];
}

/* A key: the stem of `stem` bytes, then 0..9 bytes over a tiny alphabet (so keys are often
 * prefixes of each other and end in zero bytes) or 8 random bytes. Returns its length. */
static uint32_t stem_key(uint8_t *buf, uint32_t stem)
{
    static const uint8_t alphabet[] = {0x00, 0x01, 'a', 'b', 0xff};
    memcpy(buf, stem_text, stem);
    uint32_t length = stem;
    if (rng_below(4) == 0) {
        for (uint32_t i = 0; i < 8; i++)
            buf[length++] = (uint8_t)rng_next();
    } else {
        uint32_t tail = rng_below(10);
        for (uint32_t i = 0; i < tail; i++)
            buf[length++] = alphabet[rng_below(sizeof(alphabet))];
    }
    return length;
}

/* A key that does not share the whole stem: the stem cut short, or with one of its bytes
 * lowered or raised (so it sorts below or above every key of the stem), then a short tail. */
static uint32_t stem_breaking_key(uint8_t *buf, uint32_t stem)
{
    uint32_t length;
    if (stem == 0) {
        length = rng_below(3);
        memset(buf, rng_below(2) ? 0x00 : 0xff, length);
        return length;
    }
    uint32_t at = rng_below(stem);
    memcpy(buf, stem_text, stem);
    switch (rng_below(3)) {
    case 0: /* a proper prefix of the stem: below every key of the stem */
        return at;
    case 1:
        buf[at] = (uint8_t)(buf[at] - 1);
        break;
    default:
        buf[at] = (uint8_t)(buf[at] + 1);
        break;
    }
    length = at + 1 + rng_below(4);
    for (uint32_t i = at + 1; i < length; i++)
        buf[i] = (uint8_t)rng_next();
    return length;
}

/* Seeks at every tenth key and at probes just before, just after and between keys, at
 * every proper prefix of the stem, and past both ends. */
static void verify_stem_seeks(const struct btree *tree, const struct model *model, uint32_t stem)
{
    uint8_t probe[STEM_KEY_MAX + 2];
    for (size_t i = 0; i < model->count; i += 10) {
        const struct item *item = model->items[i];
        verify_seek(tree, model, item->key, item->length);
        memcpy(probe, item->key, item->length);
        probe[item->length] = 0;
        verify_seek(tree, model, probe, item->length + 1);
        if (item->length > 0) {
            verify_seek(tree, model, probe, item->length - 1);
            probe[item->length - 1] = (uint8_t)(probe[item->length - 1] + 1);
            verify_seek(tree, model, probe, item->length);
        }
    }
    for (uint32_t length = 0; length <= stem; length++)
        verify_seek(tree, model, stem_text, length);
    memset(probe, 0xff, sizeof(probe));
    verify_seek(tree, model, probe, sizeof(probe));
    verify_seek(tree, model, "", 0);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_empty_tree(void **state)
{
    (void)state;
    btree_free(NULL);
    struct btree *tree = btree_new(item_key);
    assert_non_null(tree);
    size_t empty_memory = btree_memory(tree);
    assert_true(empty_memory > 0);
    assert_int_equal(btree_count(tree), 0);
    assert_int_equal(btree_height(tree), 0);
    assert_int_equal(btree_check(tree), 0);
    assert_null(btree_get(tree, "a", 1));
    assert_null(btree_get(tree, NULL, 0));
    assert_null(btree_remove(tree, "a", 1));
    struct btree_cursor c;
    btree_seek_ge(tree, &c, NULL, 0);
    assert_false(btree_cursor_valid(&c));
    btree_seek_lt(tree, &c, NULL, 0);
    assert_false(btree_cursor_valid(&c));
    btree_seek_ge(tree, &c, "a", 1);
    assert_false(btree_cursor_valid(&c));

    /* One key, then none: the root comes and goes. */
    struct model model = {0};
    assert_true(both_upsert(tree, &model, "a", 1));
    assert_int_equal(btree_height(tree), 1);
    verify_all(tree, &model);
    assert_true(both_remove(tree, &model, "a", 1));
    assert_int_equal(btree_height(tree), 0);
    assert_int_equal(btree_memory(tree), empty_memory);
    verify_all(tree, &model);
    btree_free(tree);
    model_free(&model);
}

/* Random upserts, reads and removes against the model, growing to 3+ levels and then
 * removing everything. */
static void test_random_against_model(void **state)
{
    (void)state;
    rng_state = 0x9E3779B97F4A7C15ULL;
    struct btree *tree = btree_new(item_key);
    assert_non_null(tree);
    size_t empty_memory = btree_memory(tree);
    struct model model = {0};
    uint8_t key[64];
    unsigned max_height = 0;
    size_t created = 0, updated = 0, removed = 0;

    /* Phase 1: mostly inserts, some updates and removes. */
    for (int op = 0; op < 120000; op++) {
        uint32_t length = random_key(key);
        uint32_t dice = rng_below(10);
        if (dice < 7) {
            if (both_upsert(tree, &model, key, length))
                created++;
            else
                updated++;
        } else if (dice < 8) {
            if (both_remove(tree, &model, key, length))
                removed++;
        } else {
            assert_ptr_equal(btree_get(tree, key, length), model_get(&model, key, length));
        }
        if (btree_height(tree) > max_height)
            max_height = btree_height(tree);
        if (op % 10000 == 9999)
            verify_all(tree, &model);
    }
    verify_all(tree, &model);
    assert_true(max_height >= 3);
    assert_true(created > 0 && updated > 0 && removed > 0);

    /* Seeks at every key, and at probes that fall before, between and after them. */
    for (size_t i = 0; i < model.count; i += 7) {
        const struct item *item = model.items[i];
        verify_seek(tree, &model, item->key, item->length);
        uint8_t probe[64 + 1];
        memcpy(probe, item->key, item->length);
        probe[item->length] = 0; /* just after the key */
        verify_seek(tree, &model, probe, item->length + 1);
        if (item->length > 0) /* just before the key, when it is a proper extension */
            verify_seek(tree, &model, probe, item->length - 1);
    }
    for (int i = 0; i < 2000; i++) {
        uint32_t length = random_key(key);
        verify_seek(tree, &model, key, length);
    }
    verify_seek(tree, &model, "", 0);
    uint8_t top[70];
    memset(top, 0xff, sizeof(top));
    verify_seek(tree, &model, top, sizeof(top));

    /* Phase 2: remove everything in random order; the tree merges down to no root. */
    while (model.count > 0) {
        size_t i = rng_below((uint32_t)model.count);
        struct item *item = model.items[i];
        assert_ptr_equal(btree_remove(tree, item->key, item->length), item);
        assert_null(btree_get(tree, item->key, item->length));
        free(item);
        model_erase_at(&model, i);
        if (model.count % 2000 == 0)
            verify_all(tree, &model);
    }
    verify_all(tree, &model);
    assert_int_equal(btree_height(tree), 0);
    assert_int_equal(btree_memory(tree), empty_memory);
    btree_free(tree);
    model_free(&model);
}

/* Ascending and descending inserts, then removal from the front and the back: the paths
 * where one side of the tree does all the splitting and all the merging. */
static void test_sequential_insert_and_remove(void **state)
{
    (void)state;
    for (int direction = 0; direction < 2; direction++) {
        struct btree *tree = btree_new(item_key);
        assert_non_null(tree);
        /* The model is filled in place: item number i is at index i (the array stays
         * sorted), which keeps the model O(1) per step while the tree sees every key at its
         * front or back. */
        const int n = 60000;
        struct model model = {0};
        model.items = calloc((size_t)n, sizeof(*model.items));
        assert_non_null(model.items);
        model.capacity = (size_t)n;
        char key[32];
        for (int i = 0; i < n; i++) {
            int number = direction == 0 ? i : n - 1 - i;
            uint32_t length = (uint32_t)snprintf(key, sizeof(key), "seq%08d", number);
            struct item *item = item_new(key, length, next_version++);
            void **slot;
            bool created;
            assert_int_equal(btree_upsert(tree, key, length, &slot, &created), 0);
            assert_true(created);
            *slot = item;
            model.items[number] = item;
        }
        model.count = (size_t)n;
        verify_all(tree, &model);
        assert_true(btree_height(tree) >= 3);
        /* Nearly full leaves: 16 bytes per slot, little else. */
        assert_true(btree_memory(tree) < 20 * (size_t)n);
        for (int i = 0; i < n; i++) {
            int number = direction == 0 ? i : n - 1 - i;
            struct item *item = model.items[number];
            assert_ptr_equal(btree_remove(tree, item->key, item->length), item);
            free(item);
            if (i % 5000 == 0) {
                assert_int_equal(btree_check(tree), 0);
                assert_int_equal(btree_count(tree), (size_t)(n - 1 - i));
            }
        }
        model.count = 0;
        verify_all(tree, &model);
        assert_int_equal(btree_height(tree), 0);
        btree_free(tree);
        model_free(&model);
    }
}

/* For each stem length: a model test over keys that all share the stem (3+ levels), then
 * keys that break the heads of the first, last and middle leaves, seeks and walks, and
 * removal of everything in random order. */
static void test_stem_lengths_against_model(void **state)
{
    (void)state;
    stem_text_init();
    for (size_t s = 0; s < sizeof(stem_lengths) / sizeof(stem_lengths[0]); s++) {
        uint32_t stem = stem_lengths[s];
        rng_state = 0xC0FFEE + stem;
        struct btree *tree = btree_new(item_key);
        assert_non_null(tree);
        size_t empty_memory = btree_memory(tree);
        struct model model = {0};
        uint8_t key[STEM_KEY_MAX];

        /* Phase 1: the stem's keys, with some removes and updates. */
        for (int op = 0; op < 14000; op++) {
            uint32_t length = stem_key(key, stem);
            if (rng_below(8) == 0)
                both_remove(tree, &model, key, length);
            else
                both_upsert(tree, &model, key, length);
            if (op % 3500 == 3499)
                verify_all(tree, &model);
        }
        verify_all(tree, &model);
        assert_true(btree_height(tree) >= 3);
        verify_stem_seeks(tree, &model, stem);

        /* Phase 2: keys outside the stem land in the first and last leaves and lower their
         * skips; keys of the stem land everywhere and may break a middle leaf's head. */
        for (int op = 0; op < 400; op++) {
            uint32_t length = op % 2 ? stem_breaking_key(key, stem) : stem_key(key, stem);
            both_upsert(tree, &model, key, length);
        }
        assert_true(both_upsert(tree, &model, "", 0) || model_get(&model, "", 0) != NULL);
        verify_all(tree, &model);
        verify_stem_seeks(tree, &model, stem);

        /* Phase 3: every key removed in random order, the tree merging down to nothing. */
        while (model.count > 0) {
            size_t i = rng_below((uint32_t)model.count);
            struct item *item = model.items[i];
            assert_ptr_equal(btree_remove(tree, item->key, item->length), item);
            assert_null(btree_get(tree, item->key, item->length));
            free(item);
            model_erase_at(&model, i);
            if (model.count % 1500 == 0) {
                verify_all(tree, &model);
                if (model.count % 4500 == 0)
                    verify_stem_seeks(tree, &model, stem);
            }
        }
        verify_all(tree, &model);
        assert_int_equal(btree_height(tree), 0);
        assert_int_equal(btree_memory(tree), empty_memory);
        btree_free(tree);
        model_free(&model);
    }
}

/* All stem lengths in one tree, in random order: stems are prefixes of each other, so
 * neighbouring leaves have heads of different lengths and every redistribution, merge and
 * separator move joins nodes whose heads differ. */
static void test_mixed_stems_against_model(void **state)
{
    (void)state;
    stem_text_init();
    rng_state = 0xFEEDFACE;
    struct btree *tree = btree_new(item_key);
    assert_non_null(tree);
    struct model model = {0};
    uint8_t key[STEM_KEY_MAX];
    size_t stems = sizeof(stem_lengths) / sizeof(stem_lengths[0]);
    for (int op = 0; op < 60000; op++) {
        uint32_t stem = stem_lengths[rng_below((uint32_t)stems)];
        uint32_t length = rng_below(16) == 0 ? stem_breaking_key(key, stem) : stem_key(key, stem);
        uint32_t dice = rng_below(10);
        if (dice < 7)
            both_upsert(tree, &model, key, length);
        else if (dice < 9)
            both_remove(tree, &model, key, length);
        else
            assert_ptr_equal(btree_get(tree, key, length), model_get(&model, key, length));
        if (op % 10000 == 9999)
            verify_all(tree, &model);
    }
    verify_all(tree, &model);
    assert_true(btree_height(tree) >= 3);
    verify_stem_seeks(tree, &model, STEM_MAX);

    /* Remove whole stems' worth of keys from the middle of the key order, then the rest
     * from both ends alternately. */
    size_t third = model.count / 3;
    for (size_t i = 0; i < third; i++) {
        struct item *item = model.items[third];
        assert_true(both_remove(tree, &model, item->key, item->length));
    }
    verify_all(tree, &model);
    verify_stem_seeks(tree, &model, STEM_MAX);
    for (size_t i = 0; model.count > 0; i++) {
        struct item *item = model.items[i % 2 ? model.count - 1 : 0];
        assert_true(both_remove(tree, &model, item->key, item->length));
        if (model.count % 2000 == 0)
            verify_all(tree, &model);
    }
    verify_all(tree, &model);
    assert_int_equal(btree_height(tree), 0);
    btree_free(tree);
    model_free(&model);
}

/* Keys that break a full leaf's head while allocations fail: the upsert that would lower
 * the skip of a full first or last leaf (which then splits or shares entries with its
 * neighbour) fails and must leave the tree as it was; then the same keys go in. */
static void test_stem_breaking_allocation_failure(void **state)
{
    (void)state;
    stem_text_init();
    for (size_t s = 0; s < sizeof(stem_lengths) / sizeof(stem_lengths[0]); s++) {
        uint32_t stem = stem_lengths[s];
        rng_state = 0xBADC0DE + stem;
        struct btree *tree = btree_new(item_key);
        assert_non_null(tree);
        struct model model = {0};
        uint8_t key[STEM_KEY_MAX];
        /* Ascending inserts leave full leaves behind them, including the first one. */
        for (uint32_t i = 0; i < 6000; i++) {
            memcpy(key, stem_text, stem);
            uint32_t length = stem + (uint32_t)snprintf((char *)key + stem, 16, "%08u", i);
            both_upsert(tree, &model, key, length);
        }
        verify_all(tree, &model);
        int failed = 0;
        for (int i = 0; i < 600; i++) {
            uint32_t length = i % 3 ? stem_breaking_key(key, stem) : stem_key(key, stem);
            size_t memory = btree_memory(tree);
            bool present = model_get(&model, key, length) != NULL;
            btree_fail_allocations_after(tree, i % 4);
            void **slot = NULL;
            bool created = false;
            int rc = btree_upsert(tree, key, length, &slot, &created);
            btree_fail_allocations_after(tree, -1);
            if (rc == -ENOMEM) {
                failed++;
                assert_false(present);
                assert_int_equal(btree_count(tree), model.count);
                assert_int_equal(btree_memory(tree), memory);
                assert_null(btree_get(tree, key, length));
                if (i % 50 == 0)
                    verify_all(tree, &model);
                /* Without failures the same key goes in. */
                assert_true(both_upsert(tree, &model, key, length));
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(created, !present);
                struct item *item = item_new(key, length, next_version++);
                size_t at = model_lower_bound(&model, key, length);
                if (created) {
                    model_insert_at(&model, at, item);
                } else {
                    free(model.items[at]);
                    model.items[at] = item;
                }
                *slot = item;
            }
        }
        assert_true(failed > 0);
        verify_all(tree, &model);
        verify_stem_seeks(tree, &model, stem);
        /* Removal with no allocation allowed, down to empty. */
        btree_fail_allocations_after(tree, 0);
        while (model.count > 0) {
            struct item *item = model.items[rng_below((uint32_t)model.count)];
            assert_true(both_remove(tree, &model, item->key, item->length));
            if (model.count % 1000 == 0)
                verify_all(tree, &model);
        }
        btree_fail_allocations_after(tree, -1);
        verify_all(tree, &model);
        assert_int_equal(btree_height(tree), 0);
        btree_free(tree);
        model_free(&model);
    }
}

/* Keys that agree in their first 8 bytes and differ later, keys that are prefixes of each
 * other, and keys that differ only by trailing zero bytes (which the zero-padded prefix
 * cannot tell apart). */
static void test_shared_prefixes(void **state)
{
    (void)state;
    struct btree *tree = btree_new(item_key);
    assert_non_null(tree);
    struct model model = {0};
    uint8_t key[64];

    /* Trailing zeros: "abcdefg", "abcdefg\0", "abcdefg\0\0", ... all share one prefix. */
    memcpy(key, "abcdefg", 7);
    memset(key + 7, 0, 20);
    for (uint32_t length = 0; length <= 27; length++)
        assert_true(both_upsert(tree, &model, key, length));
    verify_all(tree, &model);
    assert_ptr_equal(btree_get(tree, "abcdefg\0", 8), model_get(&model, "abcdefg\0", 8));
    assert_null(btree_get(tree, "abcdefg\0\1", 9));

    /* Keys whose prefix is all ones: the value unused slots hold as a search sentinel. */
    memset(key, 0xff, 40);
    for (uint32_t length = 0; length <= 40; length++)
        both_upsert(tree, &model, key, length);
    for (int i = 0; i < 300; i++) {
        key[8] = (uint8_t)i;
        key[9] = (uint8_t)(i >> 8);
        both_upsert(tree, &model, key, 10);
    }
    verify_all(tree, &model);
    for (uint32_t length = 0; length <= 41; length++)
        verify_seek(tree, &model, key, length);
    memset(key, 0xff, 40);
    for (uint32_t length = 0; length <= 40; length++)
        verify_seek(tree, &model, key, length);

    /* 20000 keys with the same 8-byte prefix, differing from byte 9 on; whole leaves of equal
     * prefixes, and separators that need their tails. */
    rng_state = 12345;
    size_t memory_before = btree_memory(tree);
    for (int i = 0; i < 20000; i++) {
        memcpy(key, "SAMEPREF", 8);
        uint32_t length = 8 + 1 + rng_below(24);
        for (uint32_t b = 8; b < length; b++)
            key[b] = (uint8_t) "\0\1xyz"[rng_below(5)];
        both_upsert(tree, &model, key, length);
    }
    verify_all(tree, &model);
    assert_true(btree_height(tree) >= 3);
    assert_true(btree_memory(tree) > memory_before);
    for (size_t i = 0; i < model.count; i += 11)
        verify_seek(tree, &model, model.items[i]->key, model.items[i]->length);
    memcpy(key, "SAMEPREF", 8);
    verify_seek(tree, &model, key, 8);
    verify_seek(tree, &model, key, 7);
    key[8] = 0xff;
    verify_seek(tree, &model, key, 9);

    /* Remove every other key, then everything. */
    for (size_t i = 0; i < model.count; i++) {
        struct item *item = model.items[i];
        assert_ptr_equal(btree_remove(tree, item->key, item->length), item);
        free(item);
        model_erase_at(&model, i);
    }
    verify_all(tree, &model);
    while (model.count > 0) {
        struct item *item = model.items[model.count / 2];
        assert_true(both_remove(tree, &model, item->key, item->length));
    }
    verify_all(tree, &model);
    assert_int_equal(btree_height(tree), 0);
    btree_free(tree);
    model_free(&model);
}

static void test_empty_key(void **state)
{
    (void)state;
    struct btree *tree = btree_new(item_key);
    assert_non_null(tree);
    struct model model = {0};
    assert_true(both_upsert(tree, &model, "", 0));
    assert_false(both_upsert(tree, &model, NULL, 0)); /* NULL with length 0 is the empty key */
    for (int i = 0; i < 3000; i++) {
        char key[16];
        uint32_t length = (uint32_t)snprintf(key, sizeof(key), "%d", i);
        both_upsert(tree, &model, key, length);
    }
    assert_true(both_upsert(tree, &model, "\0", 1));
    verify_all(tree, &model);
    assert_ptr_equal(btree_get(tree, "", 0), model.items[0]);
    assert_int_equal(model.items[0]->length, 0);

    struct btree_cursor c;
    btree_seek_ge(tree, &c, "", 0);
    assert_true(btree_cursor_valid(&c));
    assert_ptr_equal(btree_cursor_value(&c), model.items[0]);
    btree_seek_lt(tree, &c, "", 0);
    assert_false(btree_cursor_valid(&c));
    btree_seek_lt(tree, &c, "\0", 1);
    assert_true(btree_cursor_valid(&c));
    assert_ptr_equal(btree_cursor_value(&c), model.items[0]);
    verify_seek(tree, &model, "", 0);

    assert_true(both_remove(tree, &model, "", 0));
    assert_false(both_remove(tree, &model, "", 0));
    assert_null(btree_get(tree, "", 0));
    verify_all(tree, &model);
    btree_free(tree);
    model_free(&model);

    /* The empty key given as a null pointer, created in a leaf that skips nothing where its
     * prefix equals its neighbours' (keys of zero bytes): the leaf then tries to raise its
     * skip from the new key's bytes. Keys of 0xff bytes move the skip around it. */
    tree = btree_new(item_key);
    assert_non_null(tree);
    memset(&model, 0, sizeof(model));
    static const uint8_t zeros[40];
    uint8_t ones[16];
    memset(ones, 0xff, sizeof(ones));
    assert_true(both_upsert(tree, &model, ones, 1));
    for (uint32_t length = 1; length <= 40; length++)
        assert_true(both_upsert(tree, &model, zeros, length));
    assert_true(both_remove(tree, &model, ones, 1));
    assert_true(both_upsert(tree, &model, NULL, 0));
    verify_all(tree, &model);
    for (uint32_t length = 1; length <= 16; length++)
        assert_true(both_upsert(tree, &model, ones, length));
    verify_all(tree, &model);
    for (uint32_t length = 0; length <= 41; length++) {
        verify_seek(tree, &model, zeros, length > 40 ? 40 : length);
        verify_seek(tree, &model, ones, length > 16 ? 16 : length);
    }
    assert_ptr_equal(btree_get(tree, NULL, 0), model.items[0]);
    btree_free(tree);
    model_free(&model);
}

/* 64 KiB keys: separators between keys that differ only near their end are long copies. */
static void test_huge_keys(void **state)
{
    (void)state;
    const uint32_t length = 65536;
    struct btree *tree = btree_new(item_key);
    assert_non_null(tree);
    struct model model = {0};
    uint8_t *key = malloc(length);
    assert_non_null(key);
    rng_state = 777;
    for (int i = 0; i < 300; i++) {
        memset(key, 'k', length);
        /* Differ at one of a few positions: early, in the middle or in the last bytes. */
        uint32_t where = (uint32_t[]){3, 9, 40000, length - 2, length - 1}[rng_below(5)];
        key[where] = (uint8_t)rng_next();
        uint32_t l = rng_below(4) == 0 ? length - rng_below(100) : length;
        both_upsert(tree, &model, key, l);
    }
    verify_all(tree, &model);
    assert_true(btree_height(tree) >= 2);
    /* Long separators are counted: more than one 64 KiB copy is held. */
    assert_true(btree_memory(tree) > 65536);
    for (size_t i = 0; i < model.count; i++)
        verify_seek(tree, &model, model.items[i]->key, model.items[i]->length);
    while (model.count > 0) {
        struct item *item = model.items[rng_below((uint32_t)model.count)];
        assert_true(both_remove(tree, &model, item->key, item->length));
        if (model.count % 50 == 0)
            verify_all(tree, &model);
    }
    assert_int_equal(btree_height(tree), 0);
    free(key);
    btree_free(tree);
    model_free(&model);
}

/* Seeks on a known key set: at a key, before the first, between two, after the last. */
static void test_seek_positions(void **state)
{
    (void)state;
    struct btree *tree = btree_new(item_key);
    assert_non_null(tree);
    struct model model = {0};
    char key[32];
    for (int i = 0; i < 20000; i += 2) {
        uint32_t length = (uint32_t)snprintf(key, sizeof(key), "key%06d", i);
        assert_true(both_upsert(tree, &model, key, length));
    }
    verify_all(tree, &model);

    struct btree_cursor c;
    const struct item *item;

    btree_seek_ge(tree, &c, "key000100", 9); /* at */
    item = btree_cursor_value(&c);
    assert_memory_equal(item->key, "key000100", 9);
    btree_seek_ge(tree, &c, "key000101", 9); /* between */
    item = btree_cursor_value(&c);
    assert_memory_equal(item->key, "key000102", 9);
    btree_seek_lt(tree, &c, "key000101", 9);
    item = btree_cursor_value(&c);
    assert_memory_equal(item->key, "key000100", 9);
    btree_seek_lt(tree, &c, "key000100", 9); /* at: strictly before */
    item = btree_cursor_value(&c);
    assert_memory_equal(item->key, "key000098", 9);
    btree_seek_ge(tree, &c, "a", 1); /* before the first */
    item = btree_cursor_value(&c);
    assert_memory_equal(item->key, "key000000", 9);
    btree_seek_lt(tree, &c, "a", 1);
    assert_false(btree_cursor_valid(&c));
    btree_seek_ge(tree, &c, "z", 1); /* after the last */
    assert_false(btree_cursor_valid(&c));
    btree_seek_lt(tree, &c, "z", 1);
    item = btree_cursor_value(&c);
    assert_memory_equal(item->key, "key019998", 9);
    btree_seek_ge(tree, &c, "key", 3); /* a proper prefix of every key */
    item = btree_cursor_value(&c);
    assert_memory_equal(item->key, "key000000", 9);
    btree_seek_ge(tree, &c, "key019998\0", 10); /* just past the last key */
    assert_false(btree_cursor_valid(&c));

    for (int i = -1; i < 20001; i++) {
        uint32_t length = (uint32_t)snprintf(key, sizeof(key), "key%06d", i < 0 ? 0 : i);
        verify_seek(tree, &model, key, i < 0 ? length - 1 : length);
    }
    btree_free(tree);
    model_free(&model);
}

/* The fill the memory target depends on: random 16-byte keys in random order. */
static void test_memory_per_key(void **state)
{
    (void)state;
    rng_state = 4242;
    struct btree *tree = btree_new(item_key);
    assert_non_null(tree);
    const int n = 200000;
    struct item **items = calloc((size_t)n, sizeof(*items));
    assert_non_null(items);
    uint8_t key[16];
    for (int i = 0; i < n; i++) {
        for (int b = 0; b < 16; b++)
            key[b] = (uint8_t)rng_next();
        items[i] = item_new(key, 16, next_version++);
        void **slot;
        bool created;
        assert_int_equal(btree_upsert(tree, key, 16, &slot, &created), 0);
        assert_true(created); /* 128 random bits never repeat here */
        *slot = items[i];
    }
    assert_int_equal(btree_check(tree), 0);
    assert_int_equal(btree_count(tree), (size_t)n);
    for (int i = 0; i < n; i++)
        assert_ptr_equal(btree_get(tree, items[i]->key, 16), items[i]);
    double per_key = (double)btree_memory(tree) / n;
    print_message("btree: %.1f bytes per key for %d random 16-byte keys\n", per_key, n);
    assert_true(per_key < 24.0);
    btree_free(tree);
    for (int i = 0; i < n; i++)
        free(items[i]);
    free(items);
}

/* Allocation failures: a failed upsert changes nothing; a remove that cannot allocate a
 * rebalancing separator still removes correctly. */
static void test_allocation_failure(void **state)
{
    (void)state;
    rng_state = 99;
    struct btree *tree = btree_new(item_key);
    assert_non_null(tree);
    struct model model = {0};
    uint8_t key[64];

    btree_fail_allocations_after(tree, 0);
    void **slot = NULL;
    bool created = false;
    assert_int_equal(btree_upsert(tree, "a", 1, &slot, &created), -ENOMEM);
    assert_int_equal(btree_count(tree), 0);
    assert_int_equal(btree_check(tree), 0);
    btree_fail_allocations_after(tree, -1);

    /* Keys with a shared 8-byte prefix, so separators need tails. */
    for (int i = 0; i < 30000; i++) {
        uint32_t length = (uint32_t)snprintf((char *)key, sizeof(key), "AAAAAAAA%u",
                                             (unsigned)rng_below(1000000));
        both_upsert(tree, &model, key, length);
    }
    verify_all(tree, &model);

    /* Inserts with 0..3 allocations allowed: each either succeeds whole or changes nothing. */
    int failed = 0, succeeded = 0;
    for (int i = 0; i < 4000; i++) {
        uint32_t length = (uint32_t)snprintf((char *)key, sizeof(key), "AAAAAAAA%u",
                                             (unsigned)rng_below(1000000));
        size_t memory = btree_memory(tree);
        btree_fail_allocations_after(tree, i % 4);
        int rc = btree_upsert(tree, key, length, &slot, &created);
        btree_fail_allocations_after(tree, -1);
        if (rc == -ENOMEM) {
            failed++;
            assert_int_equal(btree_count(tree), model.count);
            assert_int_equal(btree_memory(tree), memory);
            assert_null(model_get(&model, key, length));
            assert_null(btree_get(tree, key, length));
        } else {
            assert_int_equal(rc, 0);
            succeeded++;
            struct item *item = item_new(key, length, next_version++);
            if (created) {
                model_insert_at(&model, model_lower_bound(&model, key, length), item);
            } else {
                size_t at = model_lower_bound(&model, key, length);
                free(model.items[at]);
                model.items[at] = item;
            }
            *slot = item;
        }
        if (i % 500 == 0)
            verify_all(tree, &model);
    }
    verify_all(tree, &model);
    assert_true(failed > 0);
    assert_true(succeeded > 0);

    /* Removes with no allocation allowed: rebalancing that needs a long separator is
     * skipped, and the tree stays correct (check allows the underfull leaves). */
    btree_fail_allocations_after(tree, 0);
    for (int i = 0; i < 25000 && model.count > 0; i++) {
        struct item *item = model.items[rng_below((uint32_t)model.count)];
        assert_true(both_remove(tree, &model, item->key, item->length));
        if (i % 2500 == 0)
            verify_all(tree, &model);
    }
    btree_fail_allocations_after(tree, -1);
    verify_all(tree, &model);
    while (model.count > 0) {
        struct item *item = model.items[model.count - 1];
        assert_true(both_remove(tree, &model, item->key, item->length));
    }
    verify_all(tree, &model);
    assert_int_equal(btree_height(tree), 0);
    btree_free(tree);
    model_free(&model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_tree),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_sequential_insert_and_remove),
        cmocka_unit_test(test_shared_prefixes),
        cmocka_unit_test(test_stem_lengths_against_model),
        cmocka_unit_test(test_mixed_stems_against_model),
        cmocka_unit_test(test_stem_breaking_allocation_failure),
        cmocka_unit_test(test_empty_key),
        cmocka_unit_test(test_huge_keys),
        cmocka_unit_test(test_seek_positions),
        cmocka_unit_test(test_memory_per_key),
        cmocka_unit_test(test_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
