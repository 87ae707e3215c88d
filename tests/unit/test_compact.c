/*
 * test_compact.c -- shoal_compact: contents, layout, readers across a compaction, the
 * release of the old memory, concurrency, the memory limit, out of memory, durable mode.
 *
 * What is checked and how:
 *   - Contents: every namespace is dumped (an iterator's keys, values and seqs, and a point
 *     read of every key of the key space) at the latest state and at each open snapshot,
 *     before and after; the dumps must be byte for byte equal. The data mixes pinned and
 *     spread namespaces, overwrites and deletes under snapshots (chains and tombstones),
 *     values above 32 KiB (the large path) and empty shards.
 *   - Layout (compact.c K4): after a compaction every version reachable on a shard belongs
 *     to the shard's current allocator (segment_owner), and walking the indexes in key
 *     order meets small versions one right after the other in memory; after deletes the
 *     mapped segment bytes shrink to what the live versions need.
 *   - Readers: an iterator opened before the compaction and a snapshot read exactly their
 *     state afterwards; a key and value pointer the iterator handed out before still read
 *     the same bytes (K3). The old memory is given back only once they are gone (K5), by the
 *     shard's next write or the next compaction; a second compaction meanwhile skips the
 *     shard.
 *   - Concurrency: writers (with snapshots they check later), readers and iterators on
 *     other threads while the main thread compacts again and again; every thread checks
 *     what it reads against what it knows (stable keys, its own model, self-describing
 *     values), and the final state against the writers' models. Run under TSan too.
 *   - Memory limit (K6): a database near its limit skips shards (SHOAL_EMEMLIMIT) and never
 *     passes the limit; out of memory (injected with compact_fail_copies_after) stops a
 *     compaction cleanly with valid contents, and the next call finishes it (K7).
 *   - Durable mode: compactions and checkpoints at the same time, then close and reopen:
 *     the same contents.
 *   - The allocator's side: segment_owner and segment_adopt_large.
 * Loops are bounded by counts; time never decides an assertion.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "test_util.h"
#include "durability_testing.h"

/* ---- dumps: a namespace's whole visible state as bytes ---------------------------------- */

struct dump {
    uint8_t *data;
    size_t len, cap;
};

static void dump_add(struct dump *d, const void *p, size_t n)
{
    if (d->cap - d->len < n) {
        size_t cap = d->cap ? d->cap : 4096;
        while (cap - d->len < n)
            cap *= 2;
        d->data = realloc(d->data, cap);
        assert_non_null(d->data);
        d->cap = cap;
    }
    if (n)
        memcpy(d->data + d->len, p, n);
    d->len += n;
}

static void dump_u64(struct dump *d, uint64_t v)
{
    dump_add(d, &v, sizeof v);
}

static void key_name(char *out, size_t cap, unsigned k)
{
    snprintf(out, cap, "key-%06u", k);
}

/* Appends ns's state at snap: what an iterator sees (keys, values and, when with_seqs, each
 * key's seq), then a point read of each of the first `keys` names of key_name. */
static void dump_ns(struct dump *d, shoal_ns *ns, const shoal_snapshot *snap, unsigned keys,
                    bool with_seqs)
{
    shoal_iter_options o = {.snap = snap};
    shoal_iter *it;
    assert_ok(shoal_iter_new(ns, &o, &it));
    int r;
    uint64_t count = 0;
    while ((r = shoal_iter_next(it)) == 1) {
        size_t klen, vlen;
        const void *key = shoal_iter_key(it, &klen);
        const void *value = shoal_iter_value(it, &vlen);
        dump_u64(d, klen);
        dump_add(d, key, klen);
        dump_u64(d, vlen);
        dump_add(d, value, vlen);
        if (with_seqs) {
            uint64_t seq;
            assert_ok(shoal_key_seq(ns, snap, key, klen, &seq));
            dump_u64(d, seq);
        }
        count++;
    }
    assert_int_equal(r, 0);
    shoal_iter_free(it);
    dump_u64(d, count);
    for (unsigned k = 0; k < keys; k++) {
        char name[32];
        key_name(name, sizeof name, k);
        void *value = NULL;
        size_t vlen = 0;
        int err = shoal_get(ns, snap, name, strlen(name), &value, &vlen);
        if (err == SHOAL_ENOTFOUND) {
            dump_u64(d, UINT64_MAX);
            continue;
        }
        assert_ok(err);
        dump_u64(d, vlen);
        dump_add(d, value, vlen);
        shoal_free(value);
    }
}

static struct dump dump_all(shoal_ns **ns, unsigned count, const shoal_snapshot *snap,
                            unsigned keys, bool with_seqs)
{
    struct dump d = {0};
    for (unsigned i = 0; i < count; i++)
        dump_ns(&d, ns[i], snap, keys, with_seqs);
    return d;
}

static void dump_expect_equal(const struct dump *a, const struct dump *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len);
}

static void dump_free(struct dump *d)
{
    free(d->data);
    memset(d, 0, sizeof *d);
}

/* ---- the layout, read from the engine's structures (the database must be quiet) ---------- */

struct layout {
    uint64_t versions;       /* reachable versions */
    uint64_t foreign;        /* of which not owned by their shard's current allocator */
    uint64_t pairs;          /* consecutive small versions in walk order, per shard */
    uint64_t adjacent;       /* of which the second starts where the first's slot ends */
    unsigned old_allocators; /* shards still holding a compaction's old allocator */
};

static struct layout layout_read(shoal_db *db)
{
    struct layout l = {0};
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load(&db->shards[i]);
        if (!s)
            continue;
        l.old_allocators += s->old_segments != NULL;
        const char *previous_end = NULL;
        for (uint32_t slot = 0; slot < db->ns_high; slot++) {
            struct namespace *ns = db->namespaces[slot];
            struct btree *tree = ns ? ns->parts[i].tree : NULL;
            if (!tree)
                continue;
            struct btree_cursor c;
            for (btree_seek_ge(tree, &c, NULL, 0); btree_cursor_valid(&c); btree_next(&c)) {
                for (const struct version *v = btree_cursor_value(&c); v; v = v->older) {
                    size_t size = version_size(v->klen, v->vlen);
                    l.versions++;
                    l.foreign += segment_owner(v, size) != s->segments;
                    if (size > SEGMENT_MAX_SMALL)
                        continue;
                    if (previous_end) {
                        l.pairs++;
                        l.adjacent += (const char *)v == previous_end;
                    }
                    previous_end = (const char *)v + segment_class_size(size);
                }
            }
        }
    }
    return l;
}

static uint64_t memory_of(shoal_db *db)
{
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    return st.memory;
}

/* Segment bytes in use over every shard: what the memory limit compares with. */
static uint64_t segment_bytes_of(shoal_db *db)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i <= db->shard_mask; i++) {
        shoal_shard_stats st;
        assert_ok(shoal_stats_shard(db, i, &st));
        total += st.bytes;
    }
    return total;
}

/* ---- random contents ------------------------------------------------------------------- */

#define LARGE_VALUE 40000u /* its version is above SEGMENT_MAX_SMALL (32 KiB) */

/* ops random puts (values 0..300 bytes, one in 50 of LARGE_VALUE) and deletes (one in 4)
 * over keys [0, keys) of the given namespaces. */
static void random_ops(struct test_rng *r, shoal_ns **ns, unsigned count, unsigned keys,
                       unsigned ops)
{
    static uint8_t value[LARGE_VALUE];
    for (unsigned i = 0; i < ops; i++) {
        shoal_ns *target = ns[test_rng_below(r, count)];
        char name[32];
        key_name(name, sizeof name, (unsigned)test_rng_below(r, keys));
        if (test_rng_percent(r, 25)) {
            int err = shoal_delete(target, name, strlen(name), NULL);
            assert_true(err == 0 || err == SHOAL_ENOTFOUND);
            continue;
        }
        size_t vlen = test_rng_percent(r, 2) ? LARGE_VALUE : test_rng_below(r, 301);
        test_fill_pattern(value, vlen, test_rng_next(r));
        assert_ok(shoal_put(target, name, strlen(name), value, vlen, NULL));
    }
}

/* ---- the allocator's side ------------------------------------------------------------- */

static void test_segment_owner_and_adoption(void **state)
{
    (void)state;
    struct segment_allocator *a = segment_new(), *b = segment_new();
    assert_non_null(a);
    assert_non_null(b);
    /* Enough 1 KiB objects for three segments: each names its allocator, and none sits in
     * a segment's header. */
    enum { SMALL = 6000 };
    static void *small[SMALL];
    for (unsigned i = 0; i < SMALL; i++) {
        small[i] = segment_alloc(i % 2 ? b : a, 1000);
        assert_non_null(small[i]);
        assert_ptr_equal(segment_owner(small[i], 1000), i % 2 ? b : a);
        assert_true(((uintptr_t)small[i] & (SEGMENT_BYTES - 1)) >= 16);
    }
    void *large = segment_alloc(a, LARGE_VALUE);
    assert_non_null(large);
    memset(large, 0x5a, LARGE_VALUE);
    assert_ptr_equal(segment_owner(large, LARGE_VALUE), a);
    struct segment_stats sa, sb;
    segment_stats(a, &sa);
    segment_stats(b, &sb);
    assert_int_equal(sa.large_objects, 1);
    assert_int_equal(sb.large_objects, 0);
    size_t a_in_use = sa.bytes_in_use, b_in_use = sb.bytes_in_use;

    /* Adoption moves the object's ownership and accounting, not the object. */
    segment_adopt_large(b, large, LARGE_VALUE);
    assert_ptr_equal(segment_owner(large, LARGE_VALUE), b);
    segment_stats(a, &sa);
    segment_stats(b, &sb);
    assert_int_equal(sa.large_objects, 0);
    assert_int_equal(sb.large_objects, 1);
    assert_int_equal(sa.bytes_in_use, a_in_use - LARGE_VALUE);
    assert_int_equal(sb.bytes_in_use, b_in_use + LARGE_VALUE);
    assert_int_equal(((uint8_t *)large)[LARGE_VALUE - 1], 0x5a);

    /* Freed by its owner; the others outlive a's destruction. */
    for (unsigned i = 0; i < SMALL; i += 2)
        segment_free(segment_owner(small[i], 1000), small[i], 1000);
    segment_destroy(a);
    assert_ptr_equal(segment_owner(large, LARGE_VALUE), b);
    for (unsigned i = 1; i < SMALL; i += 2)
        assert_ptr_equal(segment_owner(small[i], 1000), b);
    segment_free(b, large, LARGE_VALUE);
    segment_stats(b, &sb);
    assert_int_equal(sb.large_objects, 0);
    segment_destroy(b);
}

/* ---- contents and layout ---------------------------------------------------------------- */

#define CONTENT_KEYS 2000u

static void test_contents_identical(void **state)
{
    (void)state;
    shoal_db *db = test_open(8, 0);
    shoal_ns *ns[4] = {
        test_ns(db, "pinned-a", SHOAL_PLACE_PINNED, 0),
        test_ns(db, "pinned-b", SHOAL_PLACE_PINNED, 0),
        test_ns(db, "spread", SHOAL_PLACE_SPREAD, 0),
        test_ns(db, "untouched", SHOAL_PLACE_PINNED, 0), /* a namespace without an index */
    };
    struct test_rng r;
    test_rng_init(&r, test_seed(11));
    random_ops(&r, ns, 3, CONTENT_KEYS, SHOAL_TEST_SCALE(12000, 4000));
    shoal_snapshot *first, *second;
    assert_ok(shoal_snapshot_take(db, &first));
    random_ops(&r, ns, 3, CONTENT_KEYS, SHOAL_TEST_SCALE(6000, 2000));
    assert_ok(shoal_snapshot_take(db, &second));
    random_ops(&r, ns, 3, CONTENT_KEYS, SHOAL_TEST_SCALE(6000, 2000));
    /* One namespace emptied: its shard keeps only tombstones the snapshots need. */
    for (unsigned k = 0; k < CONTENT_KEYS; k++) {
        char name[32];
        key_name(name, sizeof name, k);
        int err = shoal_delete(ns[1], name, strlen(name), NULL);
        assert_true(err == 0 || err == SHOAL_ENOTFOUND);
    }
    struct dump latest = dump_all(ns, 4, NULL, CONTENT_KEYS, true);
    struct dump at_first = dump_all(ns, 4, first, CONTENT_KEYS, true);
    struct dump at_second = dump_all(ns, 4, second, CONTENT_KEYS, true);
    struct layout before = layout_read(db);
    assert_int_equal(before.foreign, 0);

    shoal_compact_result result;
    assert_ok(shoal_compact(db, &result));
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(result.shards_compacted, st.active_shards);
    assert_int_equal(result.shards_skipped, 0);
    assert_int_equal(result.versions_moved + 0, st.compact_versions_moved);
    assert_true(result.versions_moved > 0 && result.versions_moved <= before.versions);
    assert_true(result.bytes_moved >= result.versions_moved * sizeof(struct version));
    assert_int_equal(result.bytes_released, 0); /* the snapshots hold the old memory */
    assert_int_equal(st.compactions, 1);

    struct dump again = dump_all(ns, 4, NULL, CONTENT_KEYS, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);
    again = dump_all(ns, 4, first, CONTENT_KEYS, true);
    dump_expect_equal(&at_first, &again);
    dump_free(&again);
    again = dump_all(ns, 4, second, CONTENT_KEYS, true);
    dump_expect_equal(&at_second, &again);
    dump_free(&again);

    /* K4 and the point of it all: everything in the new memory, in key order. */
    struct layout after = layout_read(db);
    assert_int_equal(after.versions, before.versions);
    assert_int_equal(after.foreign, 0);
    assert_true(after.adjacent * 100 >= after.pairs * 95);
    assert_true(before.adjacent * 100 < before.pairs * 50);

    /* Released together with the snapshots: the next compaction gives the memory back. */
    uint64_t held = memory_of(db);
    shoal_snapshot_release(first);
    shoal_snapshot_release(second);
    assert_ok(shoal_compact(db, &result));
    assert_true(result.bytes_released > 0);
    assert_int_equal(result.shards_waiting, 0);
    assert_true(memory_of(db) < held);
    after = layout_read(db);
    assert_int_equal(after.old_allocators, 0);
    assert_int_equal(after.foreign, 0);
    again = dump_all(ns, 4, NULL, CONTENT_KEYS, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);

    dump_free(&latest);
    dump_free(&at_first);
    dump_free(&at_second);
    for (unsigned i = 0; i < 4; i++)
        shoal_ns_close(ns[i]);
    assert_ok(shoal_close(db));
}

static void test_empty_and_repeated(void **state)
{
    (void)state;
    shoal_compact_result result;
    assert_code(shoal_compact(NULL, &result), SHOAL_EINVAL);
    shoal_db *db = test_open(4, 0);
    memset(&result, 0xff, sizeof result);
    assert_ok(shoal_compact(db, &result)); /* no shard at all */
    assert_int_equal(result.versions_moved, 0);
    assert_int_equal(result.shards_compacted, 0);
    assert_int_equal(result.shards_skipped, 0);
    shoal_ns *empty = test_ns(db, "empty", SHOAL_PLACE_PINNED, 0);
    shoal_ns *full = test_ns(db, "full", SHOAL_PLACE_PINNED, 0);
    assert_ok(shoal_compact(db, NULL)); /* shards without data */
    for (unsigned k = 0; k < 500; k++) {
        char name[32];
        key_name(name, sizeof name, k);
        test_put(full, name, name);
    }
    shoal_ns *all[2] = {empty, full};
    struct dump latest = dump_all(all, 2, NULL, 500, true);
    /* Without snapshots, each compaction gives its old memory back at once, and a repeated
     * one leaves the same memory in use. */
    uint64_t memory = 0;
    for (int round = 0; round < 3; round++) {
        assert_ok(shoal_compact(db, &result));
        assert_int_equal(result.shards_compacted, 1);
        assert_int_equal(result.versions_moved, 500);
        assert_true(result.bytes_released >= SEGMENT_BYTES);
        struct layout l = layout_read(db);
        assert_int_equal(l.old_allocators, 0);
        assert_int_equal(l.adjacent, l.pairs);
        if (round > 0)
            assert_int_equal(memory_of(db), memory);
        memory = memory_of(db);
        struct dump again = dump_all(all, 2, NULL, 500, true);
        dump_expect_equal(&latest, &again);
        dump_free(&again);
    }
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.compactions, 5);
    assert_int_equal(st.compact_versions_moved, 1500);
    assert_true(st.compact_bytes_released >= 3 * SEGMENT_BYTES);
    dump_free(&latest);
    shoal_ns_close(empty);
    shoal_ns_close(full);
    assert_ok(shoal_close(db));
}

/* Segment bytes mapped over every shard, both allocators (what the process holds). */
static uint64_t reserved_of(shoal_db *db)
{
    uint64_t total = 0;
    for (unsigned i = 0; i <= db->shard_mask; i++) {
        struct shard *s = atomic_load(&db->shards[i]);
        struct segment_stats st;
        if (!s)
            continue;
        segment_stats(s->segments, &st);
        total += st.bytes_reserved;
        if (s->old_segments) {
            segment_stats(s->old_segments, &st);
            total += st.bytes_reserved;
        }
    }
    return total;
}

/* Deletes leave free slots all over the segments; a compaction gives them back. */
static void test_fragmentation_given_back(void **state)
{
    (void)state;
    shoal_db *db = test_open(2, 0);
    shoal_ns *ns = test_ns(db, "kv", SHOAL_PLACE_SPREAD, 0);
    static uint8_t value[300];
    const unsigned keys = 40000;
    for (unsigned k = 0; k < keys; k++) {
        char name[32];
        key_name(name, sizeof name, k);
        test_fill_pattern(value, sizeof value, k);
        assert_ok(shoal_put(ns, name, strlen(name), value, sizeof value, NULL));
    }
    for (unsigned k = 0; k < keys; k++) {
        if (k % 4 == 0)
            continue;
        char name[32];
        key_name(name, sizeof name, k);
        assert_ok(shoal_delete(ns, name, strlen(name), NULL));
    }
    uint64_t reserved = reserved_of(db), in_use = segment_bytes_of(db);
    assert_true(in_use * 3 < reserved); /* three quarters of the slots are holes */
    struct dump latest = dump_all(&ns, 1, NULL, keys, true);
    shoal_compact_result result;
    assert_ok(shoal_compact(db, &result));
    assert_int_equal(result.versions_moved, keys / 4);
    assert_true(result.bytes_released >= reserved - SEGMENT_BYTES);
    assert_int_equal(segment_bytes_of(db), in_use);
    assert_true(reserved_of(db) * 2 < reserved);
    assert_true(reserved_of(db) <= in_use + 2 * SEGMENT_BYTES); /* one partial segment each */
    struct dump again = dump_all(&ns, 1, NULL, keys, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);
    dump_free(&latest);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
}

/* ---- readers across a compaction ------------------------------------------------------------ */

#define READER_KEYS 3000u

static void test_readers_across_compaction(void **state)
{
    (void)state;
    shoal_db *db = test_open(1, 0);
    shoal_ns *ns = test_ns(db, "kv", SHOAL_PLACE_PINNED, 0);
    char value[64];
    for (unsigned k = 0; k < READER_KEYS; k++) {
        char name[32];
        key_name(name, sizeof name, k);
        snprintf(value, sizeof value, "first value of %u", k);
        test_put(ns, name, value);
    }
    shoal_snapshot *snap;
    assert_ok(shoal_snapshot_take(db, &snap));
    struct dump at_snap = dump_all(&ns, 1, snap, READER_KEYS, true);
    /* An iterator part way through, holding pointers into the versions. */
    shoal_iter *it;
    assert_ok(shoal_iter_new(ns, NULL, &it));
    for (unsigned k = 0; k < READER_KEYS / 2; k++)
        assert_int_equal(shoal_iter_next(it), 1);
    size_t held_klen, held_vlen;
    const char *held_key = shoal_iter_key(it, &held_klen);
    const char *held_value = shoal_iter_value(it, &held_vlen);
    char key_copy[32], value_copy[64];
    memcpy(key_copy, held_key, held_klen);
    memcpy(value_copy, held_value, held_vlen);
    /* Everything changes after both were opened. */
    for (unsigned k = 0; k < READER_KEYS; k++) {
        char name[32];
        key_name(name, sizeof name, k);
        if (k % 3 == 0) {
            assert_ok(shoal_delete(ns, name, strlen(name), NULL));
        } else {
            snprintf(value, sizeof value, "second value of %u", k);
            test_put(ns, name, value);
        }
    }
    struct dump latest = dump_all(&ns, 1, NULL, READER_KEYS, true);

    shoal_compact_result result;
    assert_ok(shoal_compact(db, &result));
    assert_int_equal(result.shards_compacted, 1);
    assert_int_equal(result.bytes_released, 0);
    assert_int_equal(layout_read(db).old_allocators, 1);

    /* K3: the pointers handed out before still read the same bytes. */
    assert_memory_equal(held_key, key_copy, held_klen);
    assert_memory_equal(held_value, value_copy, held_vlen);
    /* The iterator goes on in its own state: the first values, no key missing. */
    unsigned seen = READER_KEYS / 2;
    int more;
    while ((more = shoal_iter_next(it)) == 1) {
        size_t klen, vlen;
        const char *key = shoal_iter_key(it, &klen);
        const char *got = shoal_iter_value(it, &vlen);
        char expected[64];
        snprintf(expected, sizeof expected, "first value of %u", seen);
        char name[32];
        key_name(name, sizeof name, seen);
        assert_int_equal(klen, strlen(name));
        assert_memory_equal(key, name, klen);
        assert_int_equal(vlen, strlen(expected));
        assert_memory_equal(got, expected, vlen);
        seen++;
    }
    assert_int_equal(more, 0);
    assert_int_equal(seen, READER_KEYS);
    struct dump again = dump_all(&ns, 1, snap, READER_KEYS, true);
    dump_expect_equal(&at_snap, &again);
    dump_free(&again);
    again = dump_all(&ns, 1, NULL, READER_KEYS, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);

    /* A second compaction while they are open skips the shard. */
    assert_ok(shoal_compact(db, &result));
    assert_int_equal(result.shards_compacted, 0);
    assert_int_equal(result.shards_skipped, 1);
    assert_int_equal(result.shards_waiting, 1);
    assert_int_equal(result.versions_moved, 0);
    assert_int_equal(result.bytes_released, 0);

    /* Once both are gone, the shard's next write gives the old memory back. */
    uint64_t held = memory_of(db);
    shoal_iter_free(it);
    assert_int_equal(layout_read(db).old_allocators, 1);
    shoal_snapshot_release(snap);
    assert_int_equal(layout_read(db).old_allocators, 1);
    test_put(ns, "after", "release");
    assert_int_equal(layout_read(db).old_allocators, 0);
    uint64_t released = memory_of(db);
    assert_true(released < held);
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_true(st.compact_bytes_released >= SEGMENT_BYTES);
    assert_ok(shoal_delete(ns, "after", 5, NULL));
    again = dump_all(&ns, 1, NULL, READER_KEYS, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);

    dump_free(&at_snap);
    dump_free(&latest);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
}

/* A snapshot taken after a compaction ended does not hold its old memory (K5), one older
 * than the compaction does until it is released. */
static void test_release_by_horizon(void **state)
{
    (void)state;
    shoal_db *db = test_open(2, 0);
    shoal_ns *a = test_ns(db, "a", SHOAL_PLACE_PINNED, 0);
    shoal_ns *b = test_ns(db, "b", SHOAL_PLACE_PINNED, 0);
    for (unsigned k = 0; k < 300; k++) {
        char name[32];
        key_name(name, sizeof name, k);
        test_put(a, name, "a");
        test_put(b, name, "b");
    }
    shoal_snapshot *before;
    assert_ok(shoal_snapshot_take(db, &before));
    assert_ok(shoal_compact(db, NULL));
    test_put(a, "later", "write"); /* seq passes the compaction's end */
    shoal_snapshot *after;
    assert_ok(shoal_snapshot_take(db, &after));
    assert_int_equal(layout_read(db).old_allocators, 2);
    shoal_snapshot_release(before);
    /* `after` stays open; the horizon is now above the end of the move on both shards. */
    test_put(a, "later", "again");
    test_put(b, "later", "again");
    assert_int_equal(layout_read(db).old_allocators, 0);
    test_expect_str(a, after, "later", "write");
    test_expect_str(b, after, "key-000007", "b");
    shoal_snapshot_release(after);
    shoal_ns_close(a);
    shoal_ns_close(b);
    assert_ok(shoal_close(db));
}

/* A dropped namespace whose data waits for its last iterator is moved too, and freed into
 * the right allocator when the iterator goes. */
static void test_dropped_namespace_under_iterator(void **state)
{
    (void)state;
    shoal_db *db = test_open(1, 0);
    shoal_ns *gone = test_ns(db, "gone", SHOAL_PLACE_PINNED, 0);
    shoal_ns *kept = test_ns(db, "kept", SHOAL_PLACE_PINNED, 0);
    for (unsigned k = 0; k < 1000; k++) {
        char name[32];
        key_name(name, sizeof name, k);
        test_put(gone, name, "gone");
        test_put(kept, name, "kept");
    }
    shoal_iter *it;
    assert_ok(shoal_iter_new(gone, NULL, &it));
    assert_int_equal(shoal_iter_next(it), 1);
    assert_ok(shoal_ns_drop(db, "gone"));
    shoal_compact_result result;
    assert_ok(shoal_compact(db, &result));
    assert_int_equal(result.versions_moved, 2000);
    assert_int_equal(layout_read(db).foreign, 0);
    shoal_iter_free(it); /* frees the dropped namespace's versions */
    shoal_ns_close(gone);
    assert_ok(shoal_compact(db, &result));
    assert_int_equal(result.versions_moved, 1000);
    assert_int_equal(layout_read(db).old_allocators, 0);
    test_expect_str(kept, NULL, "key-000999", "kept");
    shoal_ns_close(kept);
    assert_ok(shoal_close(db));
}

/* ---- threads at work during compactions ----------------------------------------------------- */

#define STABLE_KEYS 400u
#define WRITER_KEYS 300u
#define WRITERS 2

struct concurrent {
    shoal_db *db;
    shoal_ns *spread, *pinned;
    _Atomic bool stop;
    _Atomic unsigned failures;
    _Atomic unsigned running;
    _Atomic uint64_t writes, reads, scans, snapshot_checks;
};

struct writer {
    struct concurrent *c;
    unsigned id;
    shoal_ns *ns;
    uint64_t model[WRITER_KEYS]; /* version of each key, 0: absent */
};

/* A value that says which key and version it is: 8 bytes of version, the key, then
 * version % 61 filler bytes derived from both. */
static size_t make_value(uint8_t *out, const char *key, uint64_t version)
{
    size_t klen = strlen(key), n = 8 + klen + version % 61;
    memcpy(out, &version, 8);
    memcpy(out + 8, key, klen);
    for (size_t i = 8 + klen; i < n; i++)
        out[i] = (uint8_t)(version * 31 + i);
    return n;
}

/* 0 when value is make_value(key, v) for some v (stored in *version), else -1. */
static int check_value(const void *value, size_t vlen, const void *key, size_t klen,
                       uint64_t *version)
{
    uint8_t expected[128];
    char name[64];
    if (vlen < 8 || klen >= sizeof name)
        return -1;
    memcpy(version, value, 8);
    memcpy(name, key, klen);
    name[klen] = '\0';
    size_t n = make_value(expected, name, *version);
    return n == vlen && memcmp(expected, value, n) == 0 ? 0 : -1;
}

static void fail_at(struct concurrent *c, const char *what, int code)
{
    fprintf(stderr, "concurrent check failed: %s (%s)\n", what, shoal_error_name(code));
    atomic_fetch_add(&c->failures, 1);
}

static void writer_name(char *out, size_t cap, unsigned writer, unsigned k)
{
    snprintf(out, cap, "w%u-%05u", writer, k);
}

/* Checks every key of the writer at snap against model. */
static void writer_check(struct writer *w, const shoal_snapshot *snap, const uint64_t *model)
{
    for (unsigned k = 0; k < WRITER_KEYS; k++) {
        char name[32];
        uint8_t got[128];
        size_t vlen = 0;
        writer_name(name, sizeof name, w->id, k);
        int err = shoal_get_into(w->ns, snap, name, strlen(name), got, sizeof got, &vlen);
        uint64_t version = 0;
        if (model[k] == 0 ? err != SHOAL_ENOTFOUND
                          : err != 0 || check_value(got, vlen, name, strlen(name), &version) ||
                                version != model[k])
            fail_at(w->c, "a writer's key", err);
    }
}

static void *writer_thread(void *arg)
{
    struct writer *w = arg;
    struct concurrent *c = w->c;
    struct test_rng r;
    test_rng_init(&r, test_seed(100 + w->id));
    uint64_t version = 0;
    static _Thread_local uint64_t snap_model[WRITER_KEYS];
    shoal_snapshot *snap = NULL;
    unsigned snap_age = 0;
    atomic_fetch_add(&c->running, 1);
    const unsigned max_ops = SHOAL_TEST_SCALE(200000, 20000);
    for (unsigned i = 0; i < max_ops && !atomic_load(&c->stop); i++) {
        unsigned k = (unsigned)test_rng_below(&r, WRITER_KEYS);
        char name[32];
        writer_name(name, sizeof name, w->id, k);
        if (test_rng_percent(&r, 20)) {
            int err = shoal_delete(w->ns, name, strlen(name), NULL);
            if (err != (w->model[k] ? 0 : SHOAL_ENOTFOUND))
                fail_at(c, "delete", err);
            w->model[k] = 0;
        } else {
            uint8_t value[128];
            size_t vlen = make_value(value, name, ++version);
            int err = shoal_put(w->ns, name, strlen(name), value, vlen, NULL);
            if (err)
                fail_at(c, "put", err);
            w->model[k] = version;
        }
        atomic_fetch_add_explicit(&c->writes, 1, memory_order_relaxed);
        /* A snapshot lives for a few hundred writes (across compactions), then is checked
         * whole against the model copied when it was taken. */
        if (!snap && i % 97 == 0) {
            int err = shoal_snapshot_take(c->db, &snap);
            if (err)
                fail_at(c, "snapshot", err);
            memcpy(snap_model, w->model, sizeof snap_model);
            snap_age = 0;
        } else if (snap && ++snap_age == 400) {
            writer_check(w, snap, snap_model);
            atomic_fetch_add(&c->snapshot_checks, 1);
            shoal_snapshot_release(snap);
            snap = NULL;
        }
    }
    if (snap) {
        writer_check(w, snap, snap_model);
        shoal_snapshot_release(snap);
    }
    return NULL;
}

static void stable_name(char *out, size_t cap, unsigned k)
{
    snprintf(out, cap, "stable-%05u", k);
}

static void *reader_thread(void *arg)
{
    struct concurrent *c = arg;
    struct test_rng r;
    test_rng_init(&r, test_seed(7));
    atomic_fetch_add(&c->running, 1);
    const unsigned max_reads = SHOAL_TEST_SCALE(400000, 40000);
    for (unsigned i = 0; i < max_reads && !atomic_load(&c->stop); i++) {
        char name[32];
        uint8_t got[128];
        size_t vlen = 0;
        uint64_t version;
        shoal_ns *ns = i % 2 ? c->spread : c->pinned;
        stable_name(name, sizeof name, (unsigned)test_rng_below(&r, STABLE_KEYS));
        int err = shoal_get_into(ns, NULL, name, strlen(name), got, sizeof got, &vlen);
        if (err || check_value(got, vlen, name, strlen(name), &version) || version != 1)
            fail_at(c, "a stable key", err);
        writer_name(name, sizeof name, i % WRITERS, (unsigned)test_rng_below(&r, WRITER_KEYS));
        ns = i % WRITERS ? c->pinned : c->spread;
        err = shoal_get_into(ns, NULL, name, strlen(name), got, sizeof got, &vlen);
        if (err == 0 ? check_value(got, vlen, name, strlen(name), &version) != 0
                     : err != SHOAL_ENOTFOUND)
            fail_at(c, "a writer's key, read by another thread", err);
        atomic_fetch_add_explicit(&c->reads, 1, memory_order_relaxed);
    }
    return NULL;
}

/* Scans both namespaces: keys ascend, every value describes its key, every stable key is
 * there with its one version. */
static void *scanner_thread(void *arg)
{
    struct concurrent *c = arg;
    atomic_fetch_add(&c->running, 1);
    const unsigned max_scans = SHOAL_TEST_SCALE(2000, 200);
    for (unsigned i = 0; i < max_scans && !atomic_load(&c->stop); i++) {
        shoal_iter *it;
        int err = shoal_iter_new(i % 2 ? c->spread : c->pinned, NULL, &it);
        if (err) {
            fail_at(c, "iter_new", err);
            continue;
        }
        char previous[64];
        size_t previous_len = 0;
        unsigned stable = 0, entries = 0;
        int more;
        while ((more = shoal_iter_next(it)) == 1) {
            size_t klen, vlen;
            const char *key = shoal_iter_key(it, &klen);
            const void *value = shoal_iter_value(it, &vlen);
            uint64_t version;
            if (klen >= sizeof previous || check_value(value, vlen, key, klen, &version) ||
                (previous_len && test_key_compare(previous, previous_len, key, klen) >= 0)) {
                fail_at(c, "a scanned entry", 0);
                break;
            }
            if (klen > 7 && memcmp(key, "stable-", 7) == 0)
                stable += version == 1;
            memcpy(previous, key, klen);
            previous_len = klen;
            if (++entries % 128 == 0)
                sched_yield(); /* let a compaction step in between chunks */
        }
        if (more != 0 || stable != STABLE_KEYS)
            fail_at(c, "a scan's stable keys", more);
        shoal_iter_free(it);
        atomic_fetch_add_explicit(&c->scans, 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_concurrent_compactions(void **state)
{
    (void)state;
    struct concurrent c = {0};
    c.db = test_open(4, 0);
    c.spread = test_ns(c.db, "spread", SHOAL_PLACE_SPREAD, 0);
    c.pinned = test_ns(c.db, "pinned", SHOAL_PLACE_PINNED, 0);
    for (unsigned k = 0; k < STABLE_KEYS; k++) {
        char name[32];
        uint8_t value[128];
        stable_name(name, sizeof name, k);
        size_t vlen = make_value(value, name, 1);
        assert_ok(shoal_put(c.spread, name, strlen(name), value, vlen, NULL));
        assert_ok(shoal_put(c.pinned, name, strlen(name), value, vlen, NULL));
    }
    static struct writer writers[WRITERS];
    pthread_t threads[WRITERS + 2];
    for (unsigned w = 0; w < WRITERS; w++) {
        memset(&writers[w], 0, sizeof writers[w]);
        writers[w].c = &c;
        writers[w].id = w;
        writers[w].ns = w ? c.pinned : c.spread;
        assert_int_equal(pthread_create(&threads[w], NULL, writer_thread, &writers[w]), 0);
    }
    assert_int_equal(pthread_create(&threads[WRITERS], NULL, reader_thread, &c), 0);
    assert_int_equal(pthread_create(&threads[WRITERS + 1], NULL, scanner_thread, &c), 0);
    for (unsigned spins = 0; atomic_load(&c.running) < WRITERS + 2 && spins < 100000; spins++)
        sched_yield();
    /* At least min_rounds compactions, more (up to max_rounds, and a deadline that only
     * shortens the loop) until the other threads have done a fair share of work. */
    const unsigned min_rounds = SHOAL_TEST_SCALE(40, 12), max_rounds = 1000;
    const uint64_t target = SHOAL_TEST_SCALE(50000, 5000);
    uint64_t deadline = test_deadline(20);
    uint64_t moved = 0;
    unsigned compacted = 0, rounds = 0;
    for (unsigned round = 0; round < max_rounds; round++) {
        if (round >= min_rounds &&
            ((atomic_load(&c.writes) >= target && atomic_load(&c.reads) >= target &&
              atomic_load(&c.scans) >= 8) ||
             !test_before(deadline)))
            break;
        rounds++;
        shoal_compact_result result;
        assert_ok(shoal_compact(c.db, &result));
        moved += result.versions_moved;
        compacted += result.shards_compacted;
        test_sleep_ms(2);
    }
    atomic_store(&c.stop, true);
    for (unsigned t = 0; t < WRITERS + 2; t++)
        pthread_join(threads[t], NULL);
    assert_int_equal(atomic_load(&c.failures), 0);
    assert_true(moved > 0);
    assert_true(compacted > 0);
    print_message("concurrent: %u compactions moved %llu versions; %llu writes, %llu reads, "
                  "%llu scans, %llu snapshot checks on other threads\n",
                  rounds, (unsigned long long)moved, (unsigned long long)atomic_load(&c.writes),
                  (unsigned long long)atomic_load(&c.reads),
                  (unsigned long long)atomic_load(&c.scans),
                  (unsigned long long)atomic_load(&c.snapshot_checks));

    /* The end state is the writers' models, and a quiet compaction leaves no old memory. */
    for (unsigned w = 0; w < WRITERS; w++)
        writer_check(&writers[w], NULL, writers[w].model);
    shoal_compact_result result;
    assert_ok(shoal_compact(c.db, &result));
    assert_int_equal(result.shards_skipped, 0);
    struct layout l = layout_read(c.db);
    assert_int_equal(l.old_allocators, 0);
    assert_int_equal(l.foreign, 0);
    for (unsigned w = 0; w < WRITERS; w++)
        writer_check(&writers[w], NULL, writers[w].model);
    assert_int_equal(atomic_load(&c.failures), 0);
    shoal_ns_close(c.spread);
    shoal_ns_close(c.pinned);
    assert_ok(shoal_close(c.db));
}

/* ---- the memory limit and running out of memory --------------------------------------------- */

static void test_memory_limit(void **state)
{
    (void)state;
    const uint64_t limit = 24ull << 20;
    shoal_options *opts;
    assert_ok(shoal_options_new(&opts));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, 4));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_MEMORY_LIMIT, limit));
    shoal_db *db;
    assert_ok(shoal_open(NULL, opts, &db));
    shoal_options_free(opts);
    shoal_ns *ns = test_ns(db, "kv", SHOAL_PLACE_SPREAD, 0);
    /* About 60% of the limit: two shards' copies fit next to it, not four. */
    static uint8_t value[400];
    unsigned keys = 0;
    while (segment_bytes_of(db) < limit * 6 / 10 && keys < 200000) {
        char name[32];
        key_name(name, sizeof name, keys++);
        test_fill_pattern(value, sizeof value, keys);
        assert_ok(shoal_put(ns, name, strlen(name), value, sizeof value, NULL));
    }
    shoal_snapshot *snap; /* keeps each old allocator until it is released */
    assert_ok(shoal_snapshot_take(db, &snap));
    struct dump latest = dump_all(&ns, 1, NULL, keys, true);

    shoal_compact_result result;
    assert_code(shoal_compact(db, &result), SHOAL_EMEMLIMIT);
    assert_true(result.shards_compacted >= 1);
    assert_true(result.shards_over_limit >= 1);
    assert_int_equal(result.shards_compacted + result.shards_over_limit, 4);
    assert_int_equal(result.shards_skipped, result.shards_over_limit);
    assert_true(segment_bytes_of(db) <= limit);
    struct dump again = dump_all(&ns, 1, NULL, keys, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);

    /* With the snapshot gone the waiting memory goes first, and the rest fits. */
    shoal_snapshot_release(snap);
    assert_ok(shoal_compact(db, &result));
    assert_int_equal(result.shards_skipped, 0);
    assert_true(result.bytes_released > 0);
    assert_true(segment_bytes_of(db) <= limit);
    struct layout l = layout_read(db);
    assert_int_equal(l.old_allocators, 0);
    assert_int_equal(l.foreign, 0);
    again = dump_all(&ns, 1, NULL, keys, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);
    dump_free(&latest);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
}

/* The limit reached during a copy (K6, K7): a shard that resumes with little room left
 * stops part way, stays correct and under the limit, and finishes once room is made. */
static void test_memory_limit_during_copy(void **state)
{
    (void)state;
    const uint64_t limit = 16ull << 20;
    shoal_options *opts;
    assert_ok(shoal_options_new(&opts));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, 1));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_MEMORY_LIMIT, limit));
    shoal_db *db;
    assert_ok(shoal_open(NULL, opts, &db));
    shoal_options_free(opts);
    shoal_ns *ns = test_ns(db, "kv", SHOAL_PLACE_PINNED, 0);
    static uint8_t value[400];
    unsigned keys = 0;
    while (segment_bytes_of(db) < limit * 4 / 10 && keys < 100000) {
        char name[32];
        key_name(name, sizeof name, keys++);
        test_fill_pattern(value, sizeof value, keys);
        assert_ok(shoal_put(ns, name, strlen(name), value, sizeof value, NULL));
    }
    shoal_snapshot *snap;
    assert_ok(shoal_snapshot_take(db, &snap));
    /* A first call that runs out of memory early leaves the shard part way... */
    compact_fail_copies_after(1000);
    assert_code(shoal_compact(db, NULL), SHOAL_ENOMEM);
    compact_fail_copies_after(-1);
    /* ...then writes take the database near its limit: the rest no longer fits. */
    unsigned first_keys = keys;
    while (segment_bytes_of(db) < limit * 85 / 100 && keys < 200000) {
        char name[32];
        key_name(name, sizeof name, keys++);
        test_fill_pattern(value, sizeof value, keys);
        assert_ok(shoal_put(ns, name, strlen(name), value, sizeof value, NULL));
    }
    struct dump latest = dump_all(&ns, 1, NULL, keys, true);
    struct dump at_snap = dump_all(&ns, 1, snap, keys, true);
    shoal_compact_result result;
    assert_code(shoal_compact(db, &result), SHOAL_EMEMLIMIT);
    assert_int_equal(result.shards_over_limit, 1);
    assert_int_equal(result.shards_skipped, 1);
    assert_int_equal(result.shards_compacted, 0);
    assert_true(result.versions_moved > 0);
    assert_true(result.versions_moved < first_keys - 1000);
    assert_true(segment_bytes_of(db) <= limit);
    struct layout l = layout_read(db);
    assert_int_equal(l.old_allocators, 1);
    assert_true(l.foreign > 0);
    struct dump again = dump_all(&ns, 1, NULL, keys, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);
    again = dump_all(&ns, 1, snap, keys, true);
    dump_expect_equal(&at_snap, &again);
    dump_free(&again);

    /* Room made (the snapshot gone, most keys deleted): the next call finishes. */
    shoal_snapshot_release(snap);
    for (unsigned k = 0; k < keys; k += 4) {
        for (unsigned j = k; j < k + 3 && j < keys; j++) {
            char name[32];
            key_name(name, sizeof name, j);
            assert_ok(shoal_delete(ns, name, strlen(name), NULL));
        }
    }
    dump_free(&latest);
    latest = dump_all(&ns, 1, NULL, keys, true);
    assert_ok(shoal_compact(db, &result));
    assert_int_equal(result.shards_compacted, 1);
    assert_true(result.bytes_released > 0);
    l = layout_read(db);
    assert_int_equal(l.old_allocators, 0);
    assert_int_equal(l.foreign, 0);
    again = dump_all(&ns, 1, NULL, keys, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);
    dump_free(&latest);
    dump_free(&at_snap);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
}

static void test_out_of_memory_and_resume(void **state)
{
    (void)state;
    shoal_db *db = test_open(2, 0);
    shoal_ns *ns[2] = {test_ns(db, "spread", SHOAL_PLACE_SPREAD, 0),
                       test_ns(db, "pinned", SHOAL_PLACE_PINNED, 0)};
    struct test_rng r;
    test_rng_init(&r, test_seed(23));
    random_ops(&r, ns, 2, CONTENT_KEYS, 6000);
    shoal_snapshot *snap;
    assert_ok(shoal_snapshot_take(db, &snap));
    random_ops(&r, ns, 2, CONTENT_KEYS, 3000);
    struct dump latest = dump_all(ns, 2, NULL, CONTENT_KEYS, true);
    struct dump at_snap = dump_all(ns, 2, snap, CONTENT_KEYS, true);

    compact_fail_copies_after(700);
    shoal_compact_result result;
    assert_code(shoal_compact(db, &result), SHOAL_ENOMEM);
    compact_fail_copies_after(-1);
    assert_int_equal(result.versions_moved, 700);
    assert_int_equal(result.shards_compacted, 0);
    assert_int_equal(result.shards_skipped, 1);
    struct layout l = layout_read(db);
    assert_int_equal(l.old_allocators, 1); /* the first shard, part way */
    assert_true(l.foreign > 0);
    struct dump again = dump_all(ns, 2, NULL, CONTENT_KEYS, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);
    again = dump_all(ns, 2, snap, CONTENT_KEYS, true);
    dump_expect_equal(&at_snap, &again);
    dump_free(&again);
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.compactions, 0);

    /* Writes in between meet versions in both allocators (and free into either). */
    random_ops(&r, ns, 2, CONTENT_KEYS, 3000);
    dump_free(&latest);
    latest = dump_all(ns, 2, NULL, CONTENT_KEYS, true);

    /* The next call finishes the stopped shard and does the other. */
    assert_ok(shoal_compact(db, &result));
    assert_int_equal(result.shards_compacted, 2);
    assert_int_equal(result.shards_skipped, 0);
    l = layout_read(db);
    assert_int_equal(l.foreign, 0);
    assert_int_equal(l.old_allocators, 2); /* the snapshot holds both */
    again = dump_all(ns, 2, NULL, CONTENT_KEYS, true);
    dump_expect_equal(&latest, &again);
    dump_free(&again);
    again = dump_all(ns, 2, snap, CONTENT_KEYS, true);
    dump_expect_equal(&at_snap, &again);
    dump_free(&again);
    shoal_snapshot_release(snap);
    assert_ok(shoal_compact(db, &result));
    assert_int_equal(layout_read(db).old_allocators, 0);

    dump_free(&latest);
    dump_free(&at_snap);
    shoal_ns_close(ns[0]);
    shoal_ns_close(ns[1]);
    assert_ok(shoal_close(db));
}

/* ---- durable mode -----------------------------------------------------------------------------
 */

struct checkpointer {
    shoal_db *db;
    _Atomic bool stop;
    _Atomic unsigned done;
    int error;
};

static void *checkpoint_thread(void *arg)
{
    struct checkpointer *c = arg;
    for (unsigned i = 0; i < 20 && !atomic_load(&c->stop); i++) {
        int err = shoal_checkpoint(c->db);
        if (err && !c->error)
            c->error = err;
        c->done++;
    }
    return NULL;
}

static shoal_db *durable_open_dir(const char *dir)
{
    shoal_options *opts;
    assert_ok(shoal_options_new(&opts));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, 4));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SYNC, SHOAL_SYNC_NONE));
    shoal_db *db;
    assert_ok(shoal_open(dir, opts, &db));
    shoal_options_free(opts);
    return db;
}

static void test_durable_compact_checkpoint_reopen(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "compact"), 0);
    shoal_db *db = durable_open_dir(dir);
    shoal_ns *ns[2] = {test_ns(db, "spread", SHOAL_PLACE_SPREAD, 0),
                       test_ns(db, "pinned", SHOAL_PLACE_PINNED, 0)};
    struct test_rng r;
    test_rng_init(&r, test_seed(31));
    random_ops(&r, ns, 2, CONTENT_KEYS, SHOAL_TEST_SCALE(6000, 2000));
    shoal_snapshot *snap;
    assert_ok(shoal_snapshot_take(db, &snap));
    random_ops(&r, ns, 2, CONTENT_KEYS, SHOAL_TEST_SCALE(3000, 1000));
    struct dump at_snap = dump_all(ns, 2, snap, CONTENT_KEYS, true);

    /* Checkpoints on another thread while compactions and writes go on here. */
    struct checkpointer cp = {.db = db};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, checkpoint_thread, &cp), 0);
    /* Six rounds, and more (bounded) until a checkpoint has finished meanwhile: on a busy
     * machine the thread may not have started one before the sixth round ends. */
    for (unsigned round = 0; round < 6 || (atomic_load(&cp.done) == 0 && round < 2000); round++) {
        assert_ok(shoal_compact(db, NULL));
        random_ops(&r, ns, 2, CONTENT_KEYS, 300);
    }
    atomic_store(&cp.stop, true);
    pthread_join(thread, NULL);
    assert_ok(cp.error);
    assert_true(cp.done > 0);
    struct dump again = dump_all(ns, 2, snap, CONTENT_KEYS, true);
    dump_expect_equal(&at_snap, &again);
    dump_free(&again);
    shoal_snapshot_release(snap);
    assert_ok(shoal_compact(db, NULL));
    assert_ok(shoal_checkpoint(db));
    random_ops(&r, ns, 2, CONTENT_KEYS, 500); /* in the log after the checkpoint */
    assert_ok(shoal_compact(db, NULL));
    struct dump latest = dump_all(ns, 2, NULL, CONTENT_KEYS, false);
    shoal_ns_close(ns[0]);
    shoal_ns_close(ns[1]);
    assert_ok(shoal_close(db));

    db = durable_open_dir(dir);
    assert_ok(shoal_ns_open(db, "spread", NULL, &ns[0]));
    assert_ok(shoal_ns_open(db, "pinned", NULL, &ns[1]));
    again = dump_all(ns, 2, NULL, CONTENT_KEYS, false);
    dump_expect_equal(&latest, &again);
    dump_free(&again);
    /* And once more after a compaction of the recovered database. */
    assert_ok(shoal_compact(db, NULL));
    again = dump_all(ns, 2, NULL, CONTENT_KEYS, false);
    dump_expect_equal(&latest, &again);
    dump_free(&again);
    dump_free(&latest);
    dump_free(&at_snap);
    shoal_ns_close(ns[0]);
    shoal_ns_close(ns[1]);
    assert_ok(shoal_close(db));
    testing_remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segment_owner_and_adoption),
        cmocka_unit_test(test_contents_identical),
        cmocka_unit_test(test_empty_and_repeated),
        cmocka_unit_test(test_fragmentation_given_back),
        cmocka_unit_test(test_readers_across_compaction),
        cmocka_unit_test(test_release_by_horizon),
        cmocka_unit_test(test_dropped_namespace_under_iterator),
        cmocka_unit_test(test_concurrent_compactions),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_memory_limit_during_copy),
        cmocka_unit_test(test_out_of_memory_and_resume),
        cmocka_unit_test(test_durable_compact_checkpoint_reopen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
