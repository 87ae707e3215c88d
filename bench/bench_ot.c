/*
 * bench_ot.c -- what the sharded object table's fast path costs over a bare part.
 *
 * Progressive activation promises that a table whose callers give no shard, while it has
 * one active shard, costs less than 1% over an unsharded table. This program measures
 * allocate + free pairs on one thread: ot_alloc_auto + ot_table_free on a 64-shard table
 * (which stays at 1 active shard, a single thread never contending) against ot_alloc +
 * ot_free on a bare ot_part, in the same run.
 *
 * Method: five runs; each run makes `pairs` pairs of each kind (default 10M) on a fresh
 * table and a fresh part, in alternating blocks of 5000 pairs (about 0.15 ms each),
 * the order swapping every block. Interleaving matters on a shared machine: both kinds
 * see the same background load, frequency and cache state. A run's figure for a kind is
 * its median block cost (a block hit by preemption is an outlier, not a mean shift), and
 * the reported figure is the median of the five runs:
 *
 *   BENCH ot_alloc_free_overhead shoal=<ns per pair> unsharded=<ns per pair> ratio=<u/s> unit=ns
 *
 * ratio = unsharded / sharded, so 1.00 means no overhead and >= 0.99 meets the target.
 * Usage: bench-ot [pairs]   (default 10000000)
 */
#include "core/object_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_RUNS 5
#define BENCH_DEFAULT_PAIRS 10000000ull
#define BENCH_BLOCK_PAIRS 5000ull

/* The object every entry points to; its address is all the table stores. */
static _Alignas(16) unsigned char bench_object[16];

/* The sum of the NodeIDs handed out keeps every call observable. */
static uint64_t bench_checksum;

static double bench_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1e9 + (double)now.tv_nsec;
}

static void bench_fail(const char *what)
{
    fprintf(stderr, "bench-ot: %s failed\n", what);
    exit(1);
}

/* One block of pairs through the sharded table; returns its nanoseconds. */
static double bench_sharded_block(struct object_table *t, unsigned long long pairs)
{
    node_id id;
    double start = bench_now_ns();
    for (unsigned long long i = 0; i < pairs; i++) {
        if (ot_alloc_auto(t, bench_object, &id) != 0)
            bench_fail("ot_alloc_auto");
        bench_checksum += id;
        ot_table_free(t, id);
    }
    return bench_now_ns() - start;
}

/* One block of pairs through a bare part; returns its nanoseconds. */
static double bench_unsharded_block(struct ot_part *p, unsigned long long pairs)
{
    node_id id;
    double start = bench_now_ns();
    for (unsigned long long i = 0; i < pairs; i++) {
        if (ot_alloc(p, bench_object, &id) != 0)
            bench_fail("ot_alloc");
        bench_checksum += id;
        ot_free(p, id);
    }
    return bench_now_ns() - start;
}

static int bench_compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_median(double *values, size_t n)
{
    qsort(values, n, sizeof(double), bench_compare_doubles);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/* One run: pairs of each kind on a fresh table and a fresh part, in alternating blocks;
 * stores each kind's median block cost in ns per pair. */
static void bench_run(unsigned long long pairs, int run, double *sharded, double *unsharded)
{
    size_t blocks = (size_t)((pairs + BENCH_BLOCK_PAIRS - 1) / BENCH_BLOCK_PAIRS);
    double *sharded_blocks = malloc(blocks * sizeof(double));
    double *unsharded_blocks = malloc(blocks * sizeof(double));
    struct object_table *t = ot_new(64, 0);
    struct ot_part *p = ot_part_new(0);
    if (sharded_blocks == NULL || unsharded_blocks == NULL || t == NULL || p == NULL)
        bench_fail("setting up a run");
    for (size_t b = 0; b < blocks; b++) {
        unsigned long long n = pairs - b * BENCH_BLOCK_PAIRS;
        if (n > BENCH_BLOCK_PAIRS)
            n = BENCH_BLOCK_PAIRS;
        /* The order swaps every block so neither kind always runs second. */
        if ((b + (size_t)run) % 2 == 0) {
            sharded_blocks[b] = bench_sharded_block(t, n) / (double)n;
            unsharded_blocks[b] = bench_unsharded_block(p, n) / (double)n;
        } else {
            unsharded_blocks[b] = bench_unsharded_block(p, n) / (double)n;
            sharded_blocks[b] = bench_sharded_block(t, n) / (double)n;
        }
    }
    if (ot_active_shards(t) != 1)
        bench_fail("staying at one active shard");
    *sharded = bench_median(sharded_blocks, blocks);
    *unsharded = bench_median(unsharded_blocks, blocks);
    ot_destroy(t);
    ot_part_free(p);
    free(sharded_blocks);
    free(unsharded_blocks);
}

int main(int argc, char **argv)
{
    unsigned long long pairs = BENCH_DEFAULT_PAIRS;
    if (argc > 1)
        pairs = strtoull(argv[1], NULL, 10);
    if (pairs == 0)
        bench_fail("parsing the number of pairs");

    /* One short untimed run warms the code, the allocator and the clock. */
    double ignored_sharded, ignored_unsharded;
    bench_run(pairs / 20 + 1, 0, &ignored_sharded, &ignored_unsharded);

    double sharded[BENCH_RUNS], unsharded[BENCH_RUNS];
    for (int run = 0; run < BENCH_RUNS; run++)
        bench_run(pairs, run, &sharded[run], &unsharded[run]);
    double shoal = bench_median(sharded, BENCH_RUNS);
    double bare = bench_median(unsharded, BENCH_RUNS);
    if (bench_checksum == 0)
        fprintf(stderr, "bench-ot: unexpected checksum\n");
    printf("BENCH ot_alloc_free_overhead shoal=%.2f unsharded=%.2f ratio=%.3f unit=ns\n", shoal,
           bare, bare / shoal);
    return 0;
}
