/*
 * hist.h -- latency histograms with log-linear buckets (as HdrHistogram does, in small).
 *
 * A value v in nanoseconds falls in bucket v for v < 16; above, each power of two is split
 * into 16 sub-buckets, so a reported percentile is within 1/16 (6.25%) of the true value.
 * Values beyond 2^HIST_MAX_BITS ns (about 18 minutes) land in the last bucket.
 *
 * Each thread records into its own histogram with plain loads and stores (see
 * counter_add); a reader merges them. Tested in tests/unit/test_hist.c.
 */
#ifndef SHOAL_CORE_HIST_H
#define SHOAL_CORE_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_SUB_BITS 4
#define HIST_MAX_BITS 40
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) << HIST_SUB_BITS)

struct histogram {
    _Atomic uint64_t counts[HIST_BUCKETS];
    _Atomic uint64_t max;
};

/* A merged, plain copy for reading. */
struct histogram_sum {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total, max;
};

unsigned hist_bucket(uint64_t ns);
/* The largest value that falls in bucket b. */
uint64_t hist_bucket_high(unsigned b);
/* Records one value; only the owning thread calls it. */
void hist_record(struct histogram *h, uint64_t ns);
void hist_sum_clear(struct histogram_sum *s);
void hist_sum_add(struct histogram_sum *s, const struct histogram *h);
/* The value at quantile q (0..1] of the merged histogram: the upper edge of its bucket,
 * capped at the maximum seen. 0 when empty. */
uint64_t hist_quantile(const struct histogram_sum *s, double q);

#endif
