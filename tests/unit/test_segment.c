/*
 * test_segment.c -- the segment allocator: class table, reuse order, large path, exact
 * statistics and memory overhead.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/segment.h"

/* A deterministic generator, so a failure replays. */
static uint64_t test_random_state = 0x9e3779b97f4a7c15ull;

static uint64_t test_random(void)
{
    uint64_t x = test_random_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    test_random_state = x;
    return x;
}

static void test_class_table(void **state)
{
    (void)state;
    size_t previous_class_size = 0;
    unsigned previous_class = 0;
    unsigned classes_seen = 1;
    for (size_t size = 1; size <= 65536; size++) {
        size_t rounded = segment_class_size(size);
        unsigned class_number = segment_class_of(size);
        assert_true(rounded >= size);
        /* Classes never go down as requests grow. */
        assert_true(class_number >= previous_class);
        if (size > SEGMENT_MAX_SMALL) {
            assert_int_equal(class_number, SEGMENT_LARGE);
            assert_int_equal(rounded, size);
            continue;
        }
        assert_true(class_number < SEGMENT_CLASS_COUNT);
        assert_int_equal(rounded % 8, 0);
        if (class_number != previous_class) {
            /* A new class is strictly larger and starts right after the previous one. */
            assert_int_equal(class_number, previous_class + 1);
            assert_true(rounded > previous_class_size);
            assert_int_equal(size, previous_class_size + 1);
            classes_seen++;
        } else if (size > 1) {
            assert_int_equal(rounded, previous_class_size);
        }
        /* Overhead bounds: under 8 bytes up to 256, under 25% above. */
        if (size <= 256)
            assert_true(rounded - size < 8);
        else
            assert_true((rounded - size) * 4 < size);
        previous_class = class_number;
        previous_class_size = rounded;
    }
    assert_int_equal(classes_seen, SEGMENT_CLASS_COUNT);

    assert_int_equal(segment_class_size(0), 8);
    assert_int_equal(segment_class_size(1), 8);
    assert_int_equal(segment_class_size(9), 16);
    assert_int_equal(segment_class_size(148), 152);
    assert_int_equal(segment_class_size(256), 256);
    assert_int_equal(segment_class_size(257), 320);
    assert_int_equal(segment_class_size(1000), 1024);
    assert_int_equal(segment_class_size(1025), 1280);
    assert_int_equal(segment_class_size(32768), 32768);
    assert_int_equal(segment_class_of(32768), SEGMENT_CLASS_COUNT - 1);
    assert_int_equal(segment_class_of(32769), SEGMENT_LARGE);
    assert_int_equal(segment_class_size(1u << 20), 1u << 20);
}

static void test_alloc_free_reuse(void **state)
{
    (void)state;
    struct segment_allocator *sa = segment_new();
    assert_non_null(sa);
    enum { COUNT = 64 };
    unsigned char *objects[COUNT];
    for (int i = 0; i < COUNT; i++) {
        size_t size = 1 + (size_t)i * 37;
        objects[i] = segment_alloc(sa, size);
        assert_non_null(objects[i]);
        assert_int_equal((uintptr_t)objects[i] % 8, 0);
        memset(objects[i], i, size);
    }
    /* No object overlaps another: each still holds its own byte everywhere. */
    for (int i = 0; i < COUNT; i++) {
        size_t size = 1 + (size_t)i * 37;
        for (size_t b = 0; b < size; b++)
            assert_int_equal(objects[i][b], (unsigned char)i);
    }
    /* A freed slot is reused by the next request of its class, even of another size. */
    segment_free(sa, objects[10], 1 + 10 * 37);
    void *again = segment_alloc(sa, segment_class_size(1 + 10 * 37));
    assert_ptr_equal(again, objects[10]);
    /* Zero bytes is a real, distinct object. */
    void *empty = segment_alloc(sa, 0);
    assert_non_null(empty);
    segment_free(sa, empty, 0);
    segment_free(sa, NULL, 100);
    segment_destroy(sa);
    segment_destroy(NULL);
}

static void test_lifo_reuse(void **state)
{
    (void)state;
    struct segment_allocator *sa = segment_new();
    void *a = segment_alloc(sa, 100);
    void *b = segment_alloc(sa, 100);
    void *c = segment_alloc(sa, 100);
    void *other = segment_alloc(sa, 300);
    segment_free(sa, a, 100);
    segment_free(sa, b, 100);
    segment_free(sa, other, 300);
    segment_free(sa, c, 100);
    /* Most recently freed first, and another class's list is not touched. */
    assert_ptr_equal(segment_alloc(sa, 97), c);
    assert_ptr_equal(segment_alloc(sa, 104), b);
    assert_ptr_equal(segment_alloc(sa, 100), a);
    assert_ptr_equal(segment_alloc(sa, 300), other);
    /* With the lists empty the bump pointer continues after the last carved object. */
    void *fresh = segment_alloc(sa, 100);
    assert_true(fresh != a && fresh != b && fresh != c);
    segment_destroy(sa);
}

static void test_large_path(void **state)
{
    (void)state;
    struct segment_allocator *sa = segment_new();
    struct segment_stats stats;
    unsigned char *big = segment_alloc(sa, 40000);
    unsigned char *huge = segment_alloc(sa, 3u << 20);
    unsigned char *small = segment_alloc(sa, 64);
    assert_non_null(big);
    assert_non_null(huge);
    assert_int_equal((uintptr_t)big % 16, 0);
    memset(big, 1, 40000);
    memset(huge, 2, 3u << 20);
    segment_stats(sa, &stats);
    assert_int_equal(stats.large_objects, 2);
    assert_int_equal(stats.large_bytes, 40000 + (3u << 20));
    assert_int_equal(stats.objects, 3);
    assert_int_equal(stats.bytes_in_use, 40000 + (3u << 20) + 64);
    assert_int_equal(stats.bytes_reserved, SEGMENT_BYTES + 40000 + (3u << 20));
    segment_free(sa, big, 40000);
    segment_stats(sa, &stats);
    assert_int_equal(stats.large_objects, 1);
    assert_int_equal(stats.large_bytes, 3u << 20);
    segment_free(sa, small, 64);
    /* huge is still live: destroy must release it (the sanitizer build checks for leaks). */
    segment_destroy(sa);
}

struct test_live_object {
    unsigned char *pointer;
    size_t size;
};

static size_t test_random_size(void)
{
    uint64_t r = test_random();
    switch (r % 8) {
    case 0:
        return 33000 + (size_t)(r >> 8) % 50000; /* large */
    case 1:
    case 2:
        return 257 + (size_t)(r >> 8) % 32000;
    default:
        return (size_t)(r >> 8) % 257;
    }
}

static void test_stats_after_mixed_operations(void **state)
{
    (void)state;
    struct segment_allocator *sa = segment_new();
    enum { SLOTS = 512, STEPS = 20000 };
    struct test_live_object live[SLOTS];
    memset(live, 0, sizeof(live));
    size_t model_in_use = 0, model_objects = 0, model_large = 0, model_large_bytes = 0;
    for (int step = 0; step < STEPS; step++) {
        struct test_live_object *slot = &live[test_random() % SLOTS];
        if (slot->pointer != NULL) {
            /* The object kept its fill: nobody else wrote into it. */
            assert_int_equal(slot->pointer[0], (unsigned char)slot->size);
            assert_int_equal(slot->pointer[slot->size - 1], (unsigned char)slot->size);
            segment_free(sa, slot->pointer, slot->size);
            model_in_use -= segment_class_size(slot->size);
            model_objects--;
            if (slot->size > SEGMENT_MAX_SMALL) {
                model_large--;
                model_large_bytes -= slot->size;
            }
            slot->pointer = NULL;
        } else {
            size_t size = test_random_size();
            if (size == 0)
                size = 1;
            slot->pointer = segment_alloc(sa, size);
            assert_non_null(slot->pointer);
            slot->size = size;
            memset(slot->pointer, (unsigned char)size, size);
            model_in_use += segment_class_size(size);
            model_objects++;
            if (size > SEGMENT_MAX_SMALL) {
                model_large++;
                model_large_bytes += size;
            }
        }
        if (step % 997 == 0 || step == STEPS - 1) {
            struct segment_stats stats;
            segment_stats(sa, &stats);
            assert_int_equal(stats.bytes_in_use, model_in_use);
            assert_int_equal(stats.objects, model_objects);
            assert_int_equal(stats.large_objects, model_large);
            assert_int_equal(stats.large_bytes, model_large_bytes);
            assert_true(stats.bytes_reserved >= stats.bytes_in_use);
            assert_int_equal((stats.bytes_reserved - stats.large_bytes) % SEGMENT_BYTES, 0);
        }
    }
    for (int i = 0; i < SLOTS; i++)
        segment_free(sa, live[i].pointer, live[i].size);
    struct segment_stats stats;
    segment_stats(sa, &stats);
    assert_int_equal(stats.bytes_in_use, 0);
    assert_int_equal(stats.objects, 0);
    assert_int_equal(stats.large_bytes, 0);
    segment_destroy(sa);
}

static void test_million_objects_overhead(void **state)
{
    (void)state;
    struct segment_allocator *sa = segment_new();
    enum { COUNT = 1000000, SIZE = 148 };
    void **objects = malloc(COUNT * sizeof(void *));
    assert_non_null(objects);
    for (int i = 0; i < COUNT; i++) {
        objects[i] = segment_alloc(sa, SIZE);
        assert_non_null(objects[i]);
    }
    struct segment_stats stats;
    segment_stats(sa, &stats);
    size_t rounded = (size_t)COUNT * segment_class_size(SIZE);
    assert_int_equal(stats.bytes_in_use, rounded);
    /* No per-object header: what is reserved beyond the rounded sizes is the unused part of
     * the last segment plus 16 bytes and a tail below one object per segment. */
    size_t segments = stats.bytes_reserved / SEGMENT_BYTES;
    assert_true(stats.bytes_reserved - rounded < SEGMENT_BYTES + segments * (16 + 152));
    assert_true(stats.bytes_reserved < rounded + rounded / 100);
    /* Freed slots are reused: a second round allocates no new segment. */
    for (int i = 0; i < COUNT; i += 2)
        segment_free(sa, objects[i], SIZE);
    for (int i = 0; i < COUNT; i += 2)
        objects[i] = segment_alloc(sa, SIZE);
    struct segment_stats after;
    segment_stats(sa, &after);
    assert_int_equal(after.bytes_reserved, stats.bytes_reserved);
    assert_int_equal(after.bytes_in_use, rounded);
    free(objects);
    segment_destroy(sa);
}

static void test_many_segments_and_tail_recycling(void **state)
{
    (void)state;
    struct segment_allocator *sa = segment_new();
    enum { SIZE = 20000, COUNT = 400 };
    size_t class_bytes = segment_class_size(SIZE); /* 20480 */
    assert_int_equal(class_bytes, 20480);
    size_t per_segment = (SEGMENT_BYTES - 16) / class_bytes; /* 102 */
    unsigned char *objects[COUNT];
    for (int i = 0; i < COUNT; i++) {
        objects[i] = segment_alloc(sa, SIZE);
        assert_non_null(objects[i]);
        memset(objects[i], i & 0xff, SIZE);
    }
    struct segment_stats stats;
    segment_stats(sa, &stats);
    size_t segments = (COUNT + per_segment - 1) / per_segment;
    assert_int_equal(stats.bytes_reserved, segments * SEGMENT_BYTES);
    for (int i = 0; i < COUNT; i++) {
        assert_int_equal(objects[i][0], i & 0xff);
        assert_int_equal(objects[i][SIZE - 1], i & 0xff);
    }
    /* The tail of a full 2 MiB segment (8176 bytes after 102 objects) was cut into a 7168,
     * an 896 and a 112 byte slot; such requests now come from there, without a new
     * segment. The last full segment's tail is the most recent, so it is handed out first. */
    assert_int_equal(SEGMENT_BYTES - 16 - per_segment * class_bytes, 7168 + 896 + 112);
    unsigned char *last_full_first = objects[(segments - 2) * per_segment];
    unsigned char *tail = segment_alloc(sa, 7168);
    assert_ptr_equal(tail, last_full_first + per_segment * class_bytes);
    assert_ptr_equal(segment_alloc(sa, 896), tail + 7168);
    assert_ptr_equal(segment_alloc(sa, 112), tail + 7168 + 896);
    struct segment_stats after;
    segment_stats(sa, &after);
    assert_int_equal(after.bytes_reserved, stats.bytes_reserved);
    segment_destroy(sa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_table),
        cmocka_unit_test(test_alloc_free_reuse),
        cmocka_unit_test(test_lifo_reuse),
        cmocka_unit_test(test_large_path),
        cmocka_unit_test(test_stats_after_mixed_operations),
        cmocka_unit_test(test_million_objects_overhead),
        cmocka_unit_test(test_many_segments_and_tail_recycling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
