/*
 * test_hist.c -- the latency histogram (src/core/hist.c): bucket boundaries and the
 * accuracy of quantiles.
 *
 * The layout promises that values below 16 have a bucket each, that every bucket above
 * covers 1/16 of its power of two, and that a reported quantile is the upper edge of the
 * bucket holding it, capped at the largest value seen, so within 1/16 of the true value.
 * The tests walk every bucket edge, then record known distributions (uniform, geometric,
 * constant, two-valued) and compare each reported quantile with the exact one computed
 * from the recorded values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/hist.h"
#include "test_util.h"

/* The histograms are large (about 5 KiB each); keep them out of the test stack. */
static struct histogram hist_a, hist_b;
static struct histogram_sum hist_sum;

static void hist_reset(struct histogram *h)
{
    memset(h, 0, sizeof *h);
}

/* Values below 16 map to themselves, and a bucket's high edge is the value itself. */
static void test_small_values_exact(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 16; v++) {
        assert_int_equal(hist_bucket(v), v);
        assert_int_equal(hist_bucket_high((unsigned)v), v);
    }
    assert_int_equal(hist_bucket(16), 16);
    assert_int_equal(hist_bucket(31), 31);
    assert_int_equal(hist_bucket(32), 32);
    assert_int_equal(hist_bucket(33), 32); /* 32..33 share a bucket: width 2 from 32 */
    assert_int_equal(hist_bucket(34), 33);
}

/* Every bucket's high edge maps back to the bucket, the next value to the next bucket,
 * buckets are contiguous, and no bucket is wider than 1/16 of its low edge. */
static void test_bucket_edges(void **state)
{
    (void)state;
    uint64_t previous_high = 0;
    for (unsigned b = 0; b < HIST_BUCKETS - 1; b++) {
        uint64_t high = hist_bucket_high(b);
        assert_int_equal(hist_bucket(high), b);
        assert_int_equal(hist_bucket(high + 1), b + 1);
        uint64_t low = b == 0 ? 0 : previous_high + 1;
        assert_int_equal(hist_bucket(low), b);
        if (b > 0)
            assert_true(high >= low);
        if (low >= 16)
            assert_true((high - low + 1) * 16 <= low);
        previous_high = high;
    }
    /* The last bucket ends at 2^40 - 1; everything above lands in it. */
    assert_int_equal(hist_bucket_high(HIST_BUCKETS - 1), (1ull << HIST_MAX_BITS) - 1);
    assert_int_equal(hist_bucket((1ull << HIST_MAX_BITS) - 1), HIST_BUCKETS - 1);
    assert_int_equal(hist_bucket(1ull << HIST_MAX_BITS), HIST_BUCKETS - 1);
    assert_int_equal(hist_bucket(UINT64_MAX), HIST_BUCKETS - 1);
}

/* Bucket numbers never decrease as values grow, over a sweep of every power of two and
 * its neighbours. */
static void test_bucket_monotonic(void **state)
{
    (void)state;
    unsigned last = 0;
    uint64_t last_value = 0;
    for (unsigned bit = 0; bit < 64; bit++) {
        uint64_t base = 1ull << bit;
        uint64_t candidates[3] = {base - 1, base, base + 1};
        for (int i = 0; i < 3; i++) {
            if (candidates[i] < last_value)
                continue; /* 1 and 2 come up twice among the small powers */
            last_value = candidates[i];
            unsigned b = hist_bucket(candidates[i]);
            assert_true(b >= last);
            assert_true(b < HIST_BUCKETS);
            last = b;
        }
    }
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Records values into a fresh histogram and checks a set of quantiles against the exact
 * ones: the reported value is at least the true one and at most 1/16 above it. */
static void check_quantiles(uint64_t *values, size_t n)
{
    hist_reset(&hist_a);
    for (size_t i = 0; i < n; i++)
        hist_record(&hist_a, values[i]);
    hist_sum_clear(&hist_sum);
    hist_sum_add(&hist_sum, &hist_a);
    assert_int_equal(hist_sum.total, n);
    qsort(values, n, sizeof *values, compare_u64);
    assert_int_equal(hist_sum.max, values[n - 1]);
    static const double quantiles[] = {0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0};
    for (size_t k = 0; k < sizeof quantiles / sizeof quantiles[0]; k++) {
        double q = quantiles[k];
        uint64_t rank = (uint64_t)(q * (double)n);
        if (rank == 0)
            rank = 1;
        uint64_t exact = values[rank - 1];
        uint64_t reported = hist_quantile(&hist_sum, q);
        if (reported < exact || (reported - exact) * 16 > exact) {
            print_error("quantile %.3f: exact %llu, reported %llu\n", q,
                        (unsigned long long)exact, (unsigned long long)reported);
            fail();
        }
    }
}

static void test_quantiles_uniform(void **state)
{
    (void)state;
    size_t n = 100000;
    uint64_t *values = malloc(n * sizeof *values);
    assert_non_null(values);
    for (size_t i = 0; i < n; i++)
        values[i] = i + 1; /* 1..n */
    check_quantiles(values, n);
    struct test_rng r;
    test_rng_init(&r, test_seed(17));
    for (size_t i = 0; i < n; i++)
        values[i] = 1000 + test_rng_below(&r, 10000000); /* 1 us .. 10 ms */
    check_quantiles(values, n);
    free(values);
}

static void test_quantiles_geometric(void **state)
{
    (void)state;
    /* Latency-like: most values small, a long tail over many powers of two. */
    size_t n = 50000;
    uint64_t *values = malloc(n * sizeof *values);
    assert_non_null(values);
    struct test_rng r;
    test_rng_init(&r, test_seed(23));
    for (size_t i = 0; i < n; i++) {
        unsigned shift = 0;
        while (shift < 30 && test_rng_percent(&r, 50))
            shift++;
        values[i] = (100ull << shift) + test_rng_below(&r, 100ull << shift);
    }
    check_quantiles(values, n);
    free(values);
}

/* A constant distribution reports the constant itself: the bucket edge is capped at the
 * maximum seen. A two-valued one switches exactly at the rank where the values do. */
static void test_quantiles_constant_and_split(void **state)
{
    (void)state;
    hist_reset(&hist_a);
    for (int i = 0; i < 1000; i++)
        hist_record(&hist_a, 1000);
    hist_sum_clear(&hist_sum);
    hist_sum_add(&hist_sum, &hist_a);
    assert_int_equal(hist_quantile(&hist_sum, 0.5), 1000);
    assert_int_equal(hist_quantile(&hist_sum, 1.0), 1000);

    hist_reset(&hist_a);
    for (int i = 0; i < 900; i++)
        hist_record(&hist_a, 10);
    for (int i = 0; i < 100; i++)
        hist_record(&hist_a, 1000000);
    hist_sum_clear(&hist_sum);
    hist_sum_add(&hist_sum, &hist_a);
    assert_int_equal(hist_quantile(&hist_sum, 0.5), 10);
    assert_int_equal(hist_quantile(&hist_sum, 0.9), 10);
    assert_int_equal(hist_quantile(&hist_sum, 0.95), 1000000);
    assert_int_equal(hist_quantile(&hist_sum, 0.99), 1000000);
    assert_int_equal(hist_sum.max, 1000000);
}

/* An empty histogram reports 0 everywhere; merging adds counts and keeps the largest
 * maximum. */
static void test_empty_and_merge(void **state)
{
    (void)state;
    hist_sum_clear(&hist_sum);
    assert_int_equal(hist_quantile(&hist_sum, 0.5), 0);
    assert_int_equal(hist_quantile(&hist_sum, 1.0), 0);

    hist_reset(&hist_a);
    hist_reset(&hist_b);
    for (uint64_t v = 1; v <= 500; v++)
        hist_record(&hist_a, v);
    for (uint64_t v = 501; v <= 1000; v++)
        hist_record(&hist_b, v);
    hist_sum_clear(&hist_sum);
    hist_sum_add(&hist_sum, &hist_a);
    assert_int_equal(hist_sum.total, 500);
    assert_int_equal(hist_sum.max, 500);
    hist_sum_add(&hist_sum, &hist_b);
    assert_int_equal(hist_sum.total, 1000);
    assert_int_equal(hist_sum.max, 1000);
    uint64_t median = hist_quantile(&hist_sum, 0.5);
    assert_true(median >= 500 && (median - 500) * 16 <= 500);
    /* Values past the last bucket are counted there and still set the maximum. */
    hist_reset(&hist_a);
    hist_record(&hist_a, 1ull << 50);
    assert_int_equal(hist_a.counts[HIST_BUCKETS - 1], 1);
    assert_int_equal(hist_a.max, 1ull << 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test(test_bucket_monotonic),
        cmocka_unit_test(test_quantiles_uniform),
        cmocka_unit_test(test_quantiles_geometric),
        cmocka_unit_test(test_quantiles_constant_and_split),
        cmocka_unit_test(test_empty_and_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
