/*
 * test_iter.c -- ordered iterators (shoal_iter_*): bounds, prefixes, reverse order, the
 * merge of a spread namespace's shards, chunked refills, and reading at a snapshot while
 * the namespace changes between steps.
 *
 * Every scan is compared with an expected list computed here from a plain sorted array of
 * the keys written, with the bounds applied literally (start <= key < end, key begins
 * with prefix), so that the engine's own bound arithmetic (the prefix successor, the
 * combination of a prefix with a range) is checked against an independent statement of
 * it. The key set is chosen for the edges: keys that are prefixes of each other, keys
 * with 0x00 and 0xff bytes, keys that agree on their first 8 bytes (the merge compares
 * 8-byte prefixes first), and runs long enough that a scan needs several refills of
 * ITER_CHUNK_KEYS (256) keys or ITER_CHUNK_BYTES (256 KiB) of values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "test_util.h"

/* ---- the expected side: a sorted set of keys and values -------------------------------- */

struct entry {
    uint8_t *key;
    size_t klen;
    uint8_t *value;
    size_t vlen;
};

struct kvset {
    struct entry *entries;
    size_t count, cap;
};

static int entry_compare(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    return test_key_compare(x->key, x->klen, y->key, y->klen);
}

static void kvset_add(struct kvset *s, const void *key, size_t klen, const void *value,
                      size_t vlen)
{
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->entries = realloc(s->entries, s->cap * sizeof *s->entries);
        assert_non_null(s->entries);
    }
    struct entry *e = &s->entries[s->count++];
    e->key = malloc(klen);
    e->value = malloc(vlen ? vlen : 1);
    assert_non_null(e->key);
    assert_non_null(e->value);
    memcpy(e->key, key, klen);
    if (vlen)
        memcpy(e->value, value, vlen);
    e->klen = klen;
    e->vlen = vlen;
}

static void kvset_sort(struct kvset *s)
{
    qsort(s->entries, s->count, sizeof *s->entries, entry_compare);
}

static void kvset_free(struct kvset *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free(s->entries[i].key);
        free(s->entries[i].value);
    }
    free(s->entries);
    memset(s, 0, sizeof *s);
}

/* Does the entry fall within the options' bounds, stated literally? */
static bool in_bounds(const struct entry *e, const shoal_iter_options *o)
{
    if (o->start && o->start_len && test_key_compare(e->key, e->klen, o->start, o->start_len) < 0)
        return false;
    if (o->end && o->end_len && test_key_compare(e->key, e->klen, o->end, o->end_len) >= 0)
        return false;
    if (o->prefix && o->prefix_len &&
        (e->klen < o->prefix_len || memcmp(e->key, o->prefix, o->prefix_len) != 0))
        return false;
    return true;
}

static void describe(const char *what, const void *bytes, size_t len)
{
    print_error("%s (%zu bytes):", what, len);
    const uint8_t *p = bytes;
    for (size_t i = 0; i < len && i < 24; i++)
        print_error(" %02x", p[i]);
    print_error("\n");
}

/* Runs a scan with options o and compares it, entry by entry, with the set. Returns the
 * number of entries seen. */
static size_t expect_scan(shoal_ns *ns, const shoal_iter_options *o, struct kvset *set)
{
    shoal_iter *it = NULL;
    assert_ok(shoal_iter_new(ns, o, &it));
    assert_null(shoal_iter_key(it, NULL)); /* not positioned before the first next */
    size_t seen = 0;
    size_t n = set->count;
    for (size_t k = 0; k < n; k++) {
        const struct entry *e = &set->entries[o->reverse ? n - 1 - k : k];
        if (!in_bounds(e, o))
            continue;
        int r = shoal_iter_next(it);
        if (r != 1) {
            print_error("scan ended (%d) before entry %zu\n", r, seen);
            describe("expected key", e->key, e->klen);
            fail();
        }
        size_t klen = 0, vlen = 0;
        const void *key = shoal_iter_key(it, &klen);
        const void *value = shoal_iter_value(it, &vlen);
        if (klen != e->klen || memcmp(key, e->key, klen) != 0) {
            print_error("entry %zu differs\n", seen);
            describe("expected key", e->key, e->klen);
            describe("got key", key, klen);
            fail();
        }
        assert_int_equal(vlen, e->vlen);
        if (vlen)
            assert_memory_equal(value, e->value, vlen);
        seen++;
    }
    int r = shoal_iter_next(it);
    if (r != 0) {
        size_t klen = 0;
        const void *key = shoal_iter_key(it, &klen);
        print_error("scan went on (%d) after %zu entries\n", r, seen);
        if (r == 1)
            describe("extra key", key, klen);
        fail();
    }
    assert_int_equal(shoal_iter_next(it), 0); /* the end stays the end */
    assert_null(shoal_iter_key(it, NULL));
    shoal_iter_free(it);
    return seen;
}

/* ---- the fixture --------------------------------------------------------------------------- */

/* Keys chosen for the edges of ordering, prefixes and the 8-byte merge shortcut. */
static const struct {
    const char *bytes;
    size_t len;
} edge_keys[] = {
    {"\x00", 1}, {"\x00\x00", 2}, {"\x00\xff", 2}, {"\x01", 1},
    {"a", 1}, {"a\x00", 2}, {"aa", 2}, {"ab", 2}, {"abc", 3}, {"abc\x00", 4},
    {"abc\x00\x00\x00\x00\x00", 8}, {"abc\x00\x00\x00\x00\x00\x00", 9}, {"abd", 3},
    {"a\xfe", 2}, {"a\xff", 2}, {"a\xff\x00", 3}, {"a\xff\xff", 3}, {"a\xff\xff\xff", 4},
    {"b", 1},
    {"abcdefgh", 8}, {"abcdefg", 7}, {"abcdefgh\x00", 9}, {"abcdefgh\xff", 9},
    {"abcdefghi", 9}, {"abcdefgi", 8}, {"abcdefgh\x01\x02", 10},
    {"\xfe\xff", 2}, {"\xff", 1}, {"\xff\x00", 2}, {"\xff\xfe", 2}, {"\xff\xff", 2},
    {"\xff\xff\xff", 3}, {"\xff\xff\xff\xff\xff\xff\xff\xff", 8},
    {"\xff\xff\xff\xff\xff\xff\xff\xff\xff", 9},
};
#define EDGE_KEYS (sizeof edge_keys / sizeof edge_keys[0])

/* Keys that share their first 8 bytes ("samepref"), so that a spread merge must look
 * past the 8-byte prefixes it compares first. */
#define SAME_PREFIX_KEYS 200

/* Writes the edge keys, SAME_PREFIX_KEYS keys "sameprefix000".., and count numbered keys
 * ("key0000".."key<count-1>"), each with a value derived from its position, to ns and to
 * the set. */
static void fill(shoal_ns *ns, struct kvset *set, size_t count)
{
    uint8_t value[64];
    for (size_t i = 0; i < EDGE_KEYS + SAME_PREFIX_KEYS + count; i++) {
        char numbered[32];
        const void *key;
        size_t klen;
        if (i < EDGE_KEYS) {
            key = edge_keys[i].bytes;
            klen = edge_keys[i].len;
        } else if (i < EDGE_KEYS + SAME_PREFIX_KEYS) {
            /* Lengths differ too: "sameprefix7" < "sameprefix70" < "sameprefix8". */
            snprintf(numbered, sizeof numbered, "sameprefix%zu", i - EDGE_KEYS);
            key = numbered;
            klen = strlen(numbered);
        } else {
            snprintf(numbered, sizeof numbered, "key%04zu",
                     i - EDGE_KEYS - SAME_PREFIX_KEYS);
            key = numbered;
            klen = strlen(numbered);
        }
        size_t vlen = i % 17;
        test_fill_pattern(value, vlen, i);
        assert_ok(shoal_put(ns, key, klen, value, vlen, NULL));
        kvset_add(set, key, klen, value, vlen);
    }
    kvset_sort(set);
}

static shoal_iter_options options(const void *start, size_t start_len, const void *end,
                                  size_t end_len, const void *prefix, size_t prefix_len,
                                  bool reverse)
{
    return (shoal_iter_options){.start = start, .start_len = start_len, .end = end,
                                .end_len = end_len, .prefix = prefix,
                                .prefix_len = prefix_len, .reverse = reverse};
}

/* Each test runs on a pinned namespace and on a spread one over 64 shards. */
struct layout {
    uint64_t shards;
    shoal_placement placement;
};
static const struct layout layouts[] = {
    {1, SHOAL_PLACE_PINNED}, {8, SHOAL_PLACE_PINNED}, {64, SHOAL_PLACE_SPREAD},
    {4, SHOAL_PLACE_SPREAD},
};
#define LAYOUTS (sizeof layouts / sizeof layouts[0])

/* ---- tests ------------------------------------------------------------------------------ */

static void test_full_scans(void **state)
{
    (void)state;
    for (size_t l = 0; l < LAYOUTS; l++) {
        shoal_db *db = test_open(layouts[l].shards, 0);
        shoal_ns *ns = test_ns(db, "scan", layouts[l].placement, 0);
        struct kvset set = {0};
        fill(ns, &set, 600);
        shoal_iter_options forward = {0}, reverse = {.reverse = true};
        assert_int_equal(expect_scan(ns, &forward, &set), set.count);
        assert_int_equal(expect_scan(ns, &reverse, &set), set.count);
        /* opts NULL: everything, forward. */
        shoal_iter *it = NULL;
        assert_ok(shoal_iter_new(ns, NULL, &it));
        size_t n = 0;
        while (shoal_iter_next(it) == 1)
            n++;
        assert_int_equal(n, set.count);
        shoal_iter_free(it);
        kvset_free(&set);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* Ranges: bounds taken from the keys themselves, from between them, and beyond them, in
 * every combination, forward and reverse; start >= end is empty. */
static void test_ranges(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } bounds[] = {
        {NULL, 0}, {"\x00", 1}, {"\x00\x00\x00", 3}, {"a", 1}, {"a\x00", 2}, {"ab", 2},
        {"abc\x00\x00\x00\x00\x00", 8}, {"abcdefgh", 8}, {"abcdefgh\x00", 9},
        {"key0100", 7}, {"key01005", 8}, {"key0299", 7}, {"key9", 4}, {"\xff", 1},
        {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10},
    };
    size_t nb = sizeof bounds / sizeof bounds[0];
    for (size_t l = 0; l < LAYOUTS; l++) {
        shoal_db *db = test_open(layouts[l].shards, 0);
        shoal_ns *ns = test_ns(db, "ranges", layouts[l].placement, 0);
        struct kvset set = {0};
        fill(ns, &set, 300);
        size_t nonempty = 0, empty = 0;
        for (size_t s = 0; s < nb; s++) {
            for (size_t e = 0; e < nb; e++) {
                for (int rev = 0; rev < 2; rev++) {
                    shoal_iter_options o = options(bounds[s].bytes, bounds[s].len,
                                                   bounds[e].bytes, bounds[e].len, NULL, 0,
                                                   rev);
                    size_t seen = expect_scan(ns, &o, &set);
                    if (bounds[s].bytes && bounds[e].bytes &&
                        test_key_compare(bounds[s].bytes, bounds[s].len, bounds[e].bytes,
                                         bounds[e].len) >= 0)
                        assert_int_equal(seen, 0);
                    seen ? nonempty++ : empty++;
                }
            }
        }
        assert_true(nonempty > 100 && empty > 100);
        /* A zero-length start or end is no bound (the empty key does not exist). */
        shoal_iter_options o = options("", 0, "", 0, NULL, 0, false);
        assert_int_equal(expect_scan(ns, &o, &set), set.count);
        kvset_free(&set);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* Prefixes, alone and with ranges: including prefixes made of 0xff bytes, whose
 * successor does not exist or carries. */
static void test_prefixes(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } prefixes[] = {
        {"a", 1}, {"ab", 2}, {"abc", 3}, {"abc\x00", 4}, {"abcdefgh", 8}, {"abcdefg", 7},
        {"a\xff", 2}, {"a\xff\xff", 3}, {"\xff", 1}, {"\xff\xff", 2}, {"\xff\xff\xff", 3},
        {"\xff\xff\xff\xff\xff\xff\xff\xff", 8}, {"\xff\xff\xff\xff", 4}, {"\x00", 1},
        {"key0", 4}, {"key01", 5}, {"key0123", 7}, {"key01234", 8}, {"zzz", 3},
        {"\xfe", 1},
    };
    static const struct {
        const char *bytes;
        size_t len;
    } bounds[] = {
        {NULL, 0}, {"a", 1}, {"abc", 3}, {"abcdefgh\x00", 9}, {"a\xff\x00", 3},
        {"key0150", 7}, {"\xff\x00", 2}, {"\xff\xff\xff\xff\xff\xff\xff\xff\xff", 9},
    };
    size_t np = sizeof prefixes / sizeof prefixes[0], nb = sizeof bounds / sizeof bounds[0];
    for (size_t l = 0; l < LAYOUTS; l++) {
        shoal_db *db = test_open(layouts[l].shards, 0);
        shoal_ns *ns = test_ns(db, "prefixes", layouts[l].placement, 0);
        struct kvset set = {0};
        fill(ns, &set, 300);
        for (size_t p = 0; p < np; p++) {
            for (int rev = 0; rev < 2; rev++) {
                shoal_iter_options o = options(NULL, 0, NULL, 0, prefixes[p].bytes,
                                               prefixes[p].len, rev);
                expect_scan(ns, &o, &set);
                for (size_t s = 0; s < nb; s++) {
                    for (size_t e = 0; e < nb; e++) {
                        o = options(bounds[s].bytes, bounds[s].len, bounds[e].bytes,
                                    bounds[e].len, prefixes[p].bytes, prefixes[p].len, rev);
                        expect_scan(ns, &o, &set);
                    }
                }
            }
        }
        /* Spot checks of counts the literal rule gives. */
        shoal_iter_options o = options(NULL, 0, NULL, 0, "\xff", 1, false);
        assert_int_equal(expect_scan(ns, &o, &set), 7);
        o = options(NULL, 0, NULL, 0, "\xff\xff", 2, true);
        assert_int_equal(expect_scan(ns, &o, &set), 4);
        o = options(NULL, 0, NULL, 0, "a\xff", 2, false);
        assert_int_equal(expect_scan(ns, &o, &set), 4);
        o = options(NULL, 0, NULL, 0, "key01", 5, false);
        assert_int_equal(expect_scan(ns, &o, &set), 100);
        o = options("key0150", 7, "key0160", 7, "key01", 5, true);
        assert_int_equal(expect_scan(ns, &o, &set), 10);
        o = options("key0200", 7, NULL, 0, "key01", 5, false); /* start past the prefix */
        assert_int_equal(expect_scan(ns, &o, &set), 0);
        o = options(NULL, 0, "key0", 4, "key01", 5, false); /* end before the prefix */
        assert_int_equal(expect_scan(ns, &o, &set), 0);
        o = options(NULL, 0, NULL, 0, "abcdefgh", 8, false);
        assert_int_equal(expect_scan(ns, &o, &set), 5);
        kvset_free(&set);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* An empty namespace, a namespace whose shards were never written, and one whose keys
 * are all deleted, give empty scans. */
static void test_empty_scans(void **state)
{
    (void)state;
    for (size_t l = 0; l < LAYOUTS; l++) {
        shoal_db *db = test_open(layouts[l].shards, 0);
        shoal_ns *ns = test_ns(db, "empty", layouts[l].placement, 0);
        struct kvset set = {0};
        shoal_iter_options forward = {0}, reverse = {.reverse = true};
        assert_int_equal(expect_scan(ns, &forward, &set), 0);
        assert_int_equal(expect_scan(ns, &reverse, &set), 0);
        test_put(ns, "x", "1");
        test_put(ns, "y", "2");
        assert_ok(shoal_delete(ns, "x", 1, NULL));
        assert_ok(shoal_delete(ns, "y", 1, NULL));
        assert_int_equal(expect_scan(ns, &forward, &set), 0);
        assert_int_equal(expect_scan(ns, &reverse, &set), 0);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* More than ITER_CHUNK_KEYS keys and more than ITER_CHUNK_BYTES of values: the scan is
 * assembled from several refills and must neither repeat nor skip a key at the seams. */
static void test_chunked_scans(void **state)
{
    (void)state;
    for (size_t l = 0; l < LAYOUTS; l++) {
        shoal_db *db = test_open(layouts[l].shards, 0);
        shoal_ns *ns = test_ns(db, "chunks", layouts[l].placement, 0);
        struct kvset set = {0};
        fill(ns, &set, 3000);
        shoal_iter_options forward = {0}, reverse = {.reverse = true};
        assert_int_equal(expect_scan(ns, &forward, &set), set.count);
        assert_int_equal(expect_scan(ns, &reverse, &set), set.count);
        shoal_iter_options o = options("key0100", 7, "key2900", 7, NULL, 0, false);
        assert_int_equal(expect_scan(ns, &o, &set), 2800);
        o.reverse = true;
        assert_int_equal(expect_scan(ns, &o, &set), 2800);
        kvset_free(&set);

        /* Big values: 100 KiB each, so a chunk holds only a few; one of 1 MiB, larger than
         * a whole chunk, which must still come through. */
        shoal_ns *big = test_ns(db, "big", layouts[l].placement, 0);
        size_t vlen = 100 << 10;
        uint8_t *value = malloc(1 << 20);
        assert_non_null(value);
        for (int i = 0; i < 24; i++) {
            char key[32];
            snprintf(key, sizeof key, "big%02d", i);
            size_t len = i == 11 ? (size_t)1 << 20 : vlen;
            test_fill_pattern(value, len, (uint64_t)i + 1000);
            assert_ok(shoal_put(big, key, strlen(key), value, len, NULL));
            kvset_add(&set, key, strlen(key), value, len);
        }
        free(value);
        kvset_sort(&set);
        assert_int_equal(expect_scan(big, &forward, &set), 24);
        assert_int_equal(expect_scan(big, &reverse, &set), 24);
        kvset_free(&set);
        shoal_ns_close(big);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* Long runs of keys the snapshot cannot see (written after it, or deleted before it):
 * a refill that finds nothing visible must go on to the next chunk, not end the scan. */
static void test_invisible_runs(void **state)
{
    (void)state;
    for (size_t l = 0; l < LAYOUTS; l++) {
        shoal_db *db = test_open(layouts[l].shards, 0);
        shoal_ns *ns = test_ns(db, "runs", layouts[l].placement, 0);
        test_put(ns, "key0000", "first");
        shoal_snapshot *early = NULL;
        assert_ok(shoal_snapshot_take(db, &early));
        char key[32];
        for (int i = 1; i < 3000; i++) {
            snprintf(key, sizeof key, "key%04d", i);
            test_put(ns, key, "later");
        }
        test_put(ns, "zzz", "last");
        shoal_snapshot *full = NULL;
        assert_ok(shoal_snapshot_take(db, &full));
        for (int i = 0; i < 3000; i++) {
            snprintf(key, sizeof key, "key%04d", i);
            assert_ok(shoal_delete(ns, key, strlen(key), NULL));
        }
        shoal_snapshot *late = NULL;
        assert_ok(shoal_snapshot_take(db, &late));
        test_put(ns, "aaa", "after all");

        struct kvset set = {0};
        kvset_add(&set, "key0000", 7, "first", 5);
        shoal_iter_options o = {.snap = early};
        assert_int_equal(expect_scan(ns, &o, &set), 1);
        o.reverse = true;
        assert_int_equal(expect_scan(ns, &o, &set), 1);
        kvset_free(&set);

        kvset_add(&set, "zzz", 3, "last", 4);
        o = (shoal_iter_options){.snap = late};
        assert_int_equal(expect_scan(ns, &o, &set), 1);
        o.reverse = true;
        assert_int_equal(expect_scan(ns, &o, &set), 1);
        kvset_add(&set, "aaa", 3, "after all", 9);
        kvset_sort(&set);
        o = (shoal_iter_options){0};
        assert_int_equal(expect_scan(ns, &o, &set), 2);
        o.reverse = true;
        assert_int_equal(expect_scan(ns, &o, &set), 2);
        kvset_free(&set);

        assert_int_equal(test_count_keys(ns, full), 3001);
        shoal_snapshot_release(early);
        shoal_snapshot_release(full);
        shoal_snapshot_release(late);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* The namespace changes between shoal_iter_next calls -- the next keys deleted, keys
 * ahead overwritten, new keys inserted just ahead and just behind -- and the scan still
 * shows exactly the state it started from: at a caller's snapshot and at the implicit
 * one an iterator without snapshot takes. */
static void scan_while_writing(shoal_ns *ns, struct kvset *set, const shoal_snapshot *snap,
                               bool reverse, uint64_t salt)
{
    shoal_iter_options o = {.snap = snap, .reverse = reverse};
    shoal_iter *it = NULL;
    assert_ok(shoal_iter_new(ns, &o, &it));
    size_t n = set->count;
    for (size_t k = 0; k < n; k++) {
        const struct entry *e = &set->entries[reverse ? n - 1 - k : k];
        assert_int_equal(shoal_iter_next(it), 1);
        size_t klen, vlen;
        const void *key = shoal_iter_key(it, &klen);
        const void *value = shoal_iter_value(it, &vlen);
        assert_int_equal(klen, e->klen);
        assert_memory_equal(key, e->key, klen);
        assert_int_equal(vlen, e->vlen);
        if (vlen)
            assert_memory_equal(value, e->value, vlen);
        /* Disturb the neighbourhood: the next key (in scan order) is deleted or
         * overwritten, a key ten ahead is overwritten, and new keys appear right after
         * and right before the current one. */
        size_t next = reverse ? n - 2 - k : k + 1;
        if (k + 1 < n) {
            const struct entry *ne = &set->entries[next];
            if ((k + salt) % 3 == 0)
                shoal_delete(ns, ne->key, ne->klen, NULL); /* may be gone already */
            else
                assert_ok(shoal_put(ns, ne->key, ne->klen, "changed", 7, NULL));
        }
        if (k + 10 < n) {
            const struct entry *far = &set->entries[reverse ? n - 11 - k : k + 10];
            assert_ok(shoal_put(ns, far->key, far->klen, "far change", 10, NULL));
        }
        uint8_t extra[80];
        memcpy(extra, e->key, e->klen);
        extra[e->klen] = 0x00; /* sorts right after the current key */
        assert_ok(shoal_put(ns, extra, e->klen + 1, "inserted", 8, NULL));
        if (e->klen > 1) /* a key right before: the current one shortened */
            assert_ok(shoal_put(ns, e->key, e->klen - 1, "shorter", 7, NULL));
    }
    assert_int_equal(shoal_iter_next(it), 0);
    shoal_iter_free(it);
}

static void test_scan_at_snapshot_while_writing(void **state)
{
    (void)state;
    for (size_t l = 0; l < LAYOUTS; l++) {
        for (int mode = 0; mode < 4; mode++) {
            bool explicit_snapshot = mode & 1, reverse = mode & 2;
            shoal_db *db = test_open(layouts[l].shards, 0);
            shoal_ns *ns = test_ns(db, "moving", layouts[l].placement, 0);
            struct kvset set = {0};
            fill(ns, &set, 700);
            shoal_snapshot *snap = NULL;
            if (explicit_snapshot)
                assert_ok(shoal_snapshot_take(db, &snap));
            scan_while_writing(ns, &set, snap, reverse, (uint64_t)mode);
            /* The snapshot still shows the original state after all those writes. */
            if (snap) {
                shoal_iter_options o = {.snap = snap};
                assert_int_equal(expect_scan(ns, &o, &set), set.count);
                shoal_snapshot_release(snap);
            }
            kvset_free(&set);
            shoal_ns_close(ns);
            shoal_close(db);
        }
    }
}

/* An iterator over a dropped namespace fails with SHOAL_EDROPPED: at creation, and during
 * a scan once it needs the namespace again -- never a silent, short end. */
static void test_dropped_namespace(void **state)
{
    (void)state;
    for (size_t l = 0; l < LAYOUTS; l++) {
        shoal_db *db = test_open(layouts[l].shards, 0);
        shoal_ns *ns = test_ns(db, "dropping", layouts[l].placement, 0);
        struct kvset set = {0};
        fill(ns, &set, 3000);
        shoal_iter *it = NULL;
        assert_ok(shoal_iter_new(ns, NULL, &it));
        assert_int_equal(shoal_iter_next(it), 1);
        shoal_snapshot *snap = NULL;
        assert_ok(shoal_snapshot_take(db, &snap));
        shoal_iter *at_snap = NULL;
        shoal_iter_options o = {.snap = snap, .reverse = true};
        assert_ok(shoal_iter_new(ns, &o, &at_snap));
        assert_int_equal(shoal_iter_next(at_snap), 1);

        assert_ok(shoal_ns_drop(db, "dropping"));
        shoal_iter *late = (shoal_iter *)1;
        assert_code(shoal_iter_new(ns, NULL, &late), SHOAL_EDROPPED);
        assert_null(late);
        shoal_iter *iters[2] = {it, at_snap};
        for (int i = 0; i < 2; i++) {
            int r = 1;
            size_t keys = 1; /* the one read before the drop */
            while (r == 1 && keys <= set.count) {
                r = shoal_iter_next(iters[i]);
                keys += r == 1;
            }
            /* Either the scan learns of the drop, or it had already copied every key it
             * would show (a namespace spread thin over many shards fits in the first
             * refills): a complete view at its snapshot, never a short one. */
            if (r == 0) {
                assert_int_equal(keys, set.count);
            } else {
                assert_code(r, SHOAL_EDROPPED);
                assert_true(keys < set.count);
                assert_code(shoal_iter_next(iters[i]), SHOAL_EDROPPED); /* it stays failed */
            }
            if (layouts[l].placement == SHOAL_PLACE_PINNED)
                assert_code(r, SHOAL_EDROPPED); /* 3000 keys take many refills */
            shoal_iter_free(iters[i]);
        }
        shoal_snapshot_release(snap);
        kvset_free(&set);
        shoal_ns_close(ns);
        shoal_close(db);
    }
}

/* Every iterator holds a snapshot slot of its own, also when it reads at a caller's
 * snapshot (it pins that seq), so it stays valid after the caller releases its snapshot. */
static void test_iterator_snapshot_slots(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 2);
    shoal_ns *ns = test_ns(db, "slots", SHOAL_PLACE_SPREAD, 0);
    test_put(ns, "k", "v");
    shoal_iter *a = NULL, *b = NULL, *c = (shoal_iter *)1;
    assert_ok(shoal_iter_new(ns, NULL, &a));
    assert_ok(shoal_iter_new(ns, NULL, &b));
    assert_code(shoal_iter_new(ns, NULL, &c), SHOAL_ENOSLOT);
    assert_null(c);
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.snapshots_open, 2);
    shoal_iter_free(a);
    shoal_iter_free(b);
    shoal_snapshot *snap = NULL;
    assert_ok(shoal_snapshot_take(db, &snap));
    shoal_iter_options o = {.snap = snap};
    shoal_iter *d = NULL, *e = (shoal_iter *)1;
    assert_ok(shoal_iter_new(ns, &o, &d));
    assert_code(shoal_iter_new(ns, &o, &e), SHOAL_ENOSLOT);
    assert_null(e);
    /* The caller's snapshot goes, the key is overwritten and deleted: the iterator still
     * sees the value of its seq. */
    shoal_snapshot_release(snap);
    test_put(ns, "k", "changed");
    assert_ok(shoal_delete(ns, "k", 1, NULL));
    assert_int_equal(shoal_iter_next(d), 1);
    size_t vlen;
    const void *value = shoal_iter_value(d, &vlen);
    assert_int_equal(vlen, 1);
    assert_memory_equal(value, "v", 1);
    assert_int_equal(shoal_iter_next(d), 0);
    shoal_iter_free(d);
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.snapshots_open, 0);
    shoal_ns_close(ns);
    shoal_close(db);
}

/* Dropping a namespace under an open iterator: what the iterator handed out stays
 * readable, its next step reports the drop, a namespace of the same name can be created
 * meanwhile, and the dropped data is freed when the iterator goes. */
static void test_drop_under_open_iterator(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_ns *ns = test_ns(db, "gone", SHOAL_PLACE_SPREAD, 0);
    char value[1000];
    memset(value, 'x', sizeof value);
    for (int i = 0; i < 2000; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "k%05d", i);
        assert_ok(shoal_put(ns, key, (size_t)n, value, sizeof value, NULL));
    }
    shoal_iter *it = NULL;
    assert_ok(shoal_iter_new(ns, NULL, &it));
    assert_int_equal(shoal_iter_next(it), 1);
    size_t klen, vlen;
    const char *key = shoal_iter_key(it, &klen);
    const char *val = shoal_iter_value(it, &vlen);
    shoal_ns_close(ns);
    assert_ok(shoal_ns_drop(db, "gone"));
    assert_int_equal(klen, 6);
    assert_memory_equal(key, "k00000", 6);
    assert_int_equal(vlen, sizeof value);
    assert_memory_equal(val, value, sizeof value);
    shoal_ns *again = test_ns(db, "gone", SHOAL_PLACE_SPREAD, 0);
    test_expect_absent_str(again, NULL, "k00000");
    shoal_db_stats before;
    assert_ok(shoal_stats(db, &before));
    int r;
    while ((r = shoal_iter_next(it)) == 1)
        ;
    assert_int_equal(r, SHOAL_EDROPPED);
    shoal_iter_free(it);
    shoal_db_stats after;
    assert_ok(shoal_stats(db, &after));
    assert_true(after.memory + 1000000 < before.memory);
    shoal_ns_close(again);
    shoal_close(db);
}

/* Raises (or lowers) every shard's writer flag, as a writer waiting for readers does. */
static void set_writers_waiting(shoal_db *db, int waiting)
{
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load(&db->shards[i]);
        if (s)
            atomic_store(&s->writer, waiting);
    }
}

/* Scans ns in the given direction, checking that it returns keys k00000..k(n-1) in order;
 * returns how many times the scan took a shard's lock. */
static uint64_t scan_counting_refills(shoal_ns *ns, int n, bool reverse)
{
    shoal_iter_options o = {.reverse = reverse};
    shoal_iter *it = NULL;
    assert_ok(shoal_iter_new(ns, &o, &it));
    int seen = 0, r;
    while ((r = shoal_iter_next(it)) == 1) {
        char want[16];
        int i = reverse ? n - 1 - seen : seen;
        int len = snprintf(want, sizeof want, "k%05d", i);
        size_t klen;
        const void *key = shoal_iter_key(it, &klen);
        assert_int_equal(klen, (size_t)len);
        assert_memory_equal(key, want, klen);
        seen++;
    }
    assert_int_equal(r, 0);
    assert_int_equal(seen, n);
    uint64_t refills = iter_refills(it);
    shoal_iter_free(it);
    return refills;
}

/* A scan gives way to a waiting writer: with every shard's writer flag up, each refill
 * ends after one entry (and the scan still returns every key once, in order); with the
 * flags down a chunk holds many. */
static void test_scan_gives_way_to_writers(void **state)
{
    (void)state;
    shoal_db *db = test_open(4, 0);
    shoal_ns *ns = test_ns(db, "yield", SHOAL_PLACE_SPREAD, 0);
    const int n = 300;
    for (int i = 0; i < n; i++) {
        char key[16];
        int len = snprintf(key, sizeof key, "k%05d", i);
        assert_ok(shoal_put(ns, key, (size_t)len, "v", 1, NULL));
    }
    for (int reverse = 0; reverse < 2; reverse++) {
        assert_true(scan_counting_refills(ns, n, reverse) <= 16);
        set_writers_waiting(db, 1);
        assert_true(scan_counting_refills(ns, n, reverse) >= (uint64_t)n);
        set_writers_waiting(db, 0);
    }
    shoal_ns_close(ns);
    shoal_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_scans),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_empty_scans),
        cmocka_unit_test(test_chunked_scans),
        cmocka_unit_test(test_invisible_runs),
        cmocka_unit_test(test_scan_at_snapshot_while_writing),
        cmocka_unit_test(test_dropped_namespace),
        cmocka_unit_test(test_iterator_snapshot_slots),
        cmocka_unit_test(test_drop_under_open_iterator),
        cmocka_unit_test(test_scan_gives_way_to_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
