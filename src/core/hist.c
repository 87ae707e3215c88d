/*
 * hist.c -- log-linear latency histograms; see hist.h for the bucket layout.
 */
#include "core/hist.h"

#include <string.h>

#include "core/internal.h"

unsigned hist_bucket(uint64_t ns)
{
    if (ns < (1u << HIST_SUB_BITS))
        return (unsigned)ns;
    unsigned exponent = 63 - (unsigned)__builtin_clzll(ns); /* >= HIST_SUB_BITS */
    if (exponent >= HIST_MAX_BITS)
        return HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(ns >> (exponent - HIST_SUB_BITS)) & ((1u << HIST_SUB_BITS) - 1);
    return ((exponent - HIST_SUB_BITS + 1) << HIST_SUB_BITS) + sub;
}

uint64_t hist_bucket_high(unsigned b)
{
    if (b < (1u << HIST_SUB_BITS))
        return b;
    unsigned exponent = (b >> HIST_SUB_BITS) + HIST_SUB_BITS - 1;
    uint64_t sub = b & ((1u << HIST_SUB_BITS) - 1);
    uint64_t low = (1ull << exponent) + (sub << (exponent - HIST_SUB_BITS));
    return low + (1ull << (exponent - HIST_SUB_BITS)) - 1;
}

void hist_record(struct histogram *h, uint64_t ns)
{
    counter_add(&h->counts[hist_bucket(ns)], 1);
    if (ns > counter_get(&h->max))
        atomic_store_explicit(&h->max, ns, memory_order_relaxed);
}

void hist_sum_clear(struct histogram_sum *s)
{
    memset(s, 0, sizeof *s);
}

void hist_sum_add(struct histogram_sum *s, const struct histogram *h)
{
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        uint64_t c = counter_get(&h->counts[b]);
        s->counts[b] += c;
        s->total += c;
    }
    uint64_t m = counter_get(&h->max);
    if (m > s->max)
        s->max = m;
}

uint64_t hist_quantile(const struct histogram_sum *s, double q)
{
    if (s->total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)s->total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += s->counts[b];
        if (seen >= rank) {
            uint64_t high = hist_bucket_high(b);
            return high < s->max ? high : s->max;
        }
    }
    return s->max;
}
