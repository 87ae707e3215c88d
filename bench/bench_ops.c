/*
 * bench_ops.c -- single Shoal operations timed in-process, for comparing two builds.
 *
 * shoal-bench puts Shoal next to its anchors; this program measures Shoal alone, with
 * nothing around each call but the loop, so that two builds of the library can be
 * alternated and compared on a shared machine (the way docs/BENCHMARKS.md's "Gets against
 * LMDB" figures were taken). It fills a spread namespace with N random keys of
 * shoal-bench's dataset (16-byte keys, 100-byte values, batches of 1000), compacts, and
 * then runs R rounds, each of them:
 *
 *   get   every key read once with shoal_get_into, in a random order;
 *   put   every key overwritten once with shoal_put, in another random order (the
 *         replaced versions are freed at once: no snapshot is open).
 *
 * Each round prints one line per operation, `# get <ns> ns/op` and `# put <ns> ns/op`,
 * wall time over N calls. With --dir the database is durable (sync none, so the log is
 * written but no call waits for a disk); without it, in memory. Nothing here is a BENCH
 * line: there is no anchor, and a figure means something only against the same program
 * built from another tree, run right before or after it.
 *
 * Usage: bench-ops [--keys N] [--rounds R] [--dir DIR]   (defaults 1000000, 5, memory)
 *   Two builds: `cmake -S OLD -B /tmp/old && cmake --build /tmp/old --target bench-ops`,
 *   the same for NEW, then alternate /tmp/old/bench/bench-ops and /tmp/new/bench/bench-ops.
 */
#include "bench.h"

#include "shoal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPS_BATCH 1000
#define OPS_SEED 0x0B5EED5ull

static int ops_fail(const char *what, int rc)
{
    fprintf(stderr, "bench-ops: %s: %s (%s)\n", what, shoal_strerror(rc), shoal_error_name(rc));
    return 1;
}

static int ops_fill(shoal_db *db, shoal_ns *ns, const bench_dataset *d)
{
    shoal_batch *b;
    int rc = shoal_batch_new(db, &b);
    if (rc != 0)
        return ops_fail("batch_new", rc);
    for (size_t i = 0; i < d->count && rc == 0; i++) {
        rc = shoal_batch_put(b, ns, bench_key(d, i), BENCH_KEY_SIZE, bench_value(d, i),
                             BENCH_VALUE_SIZE);
        if (rc == 0 && (i % OPS_BATCH == OPS_BATCH - 1 || i + 1 == d->count)) {
            rc = shoal_batch_commit(b, NULL, NULL);
            shoal_batch_clear(b);
        }
    }
    shoal_batch_free(b);
    return rc == 0 ? 0 : ops_fail("fill", rc);
}

int main(int argc, char **argv)
{
    size_t keys = 1000000;
    int rounds = 5;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc)
            keys = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: bench-ops [--keys N] [--rounds R] [--dir DIR]\n");
            return 2;
        }
    }
    if (keys < 1000 || keys > 20000000 || rounds < 1 || rounds > 100) {
        fprintf(stderr, "bench-ops: --keys 1000..20000000, --rounds 1..100\n");
        return 2;
    }
    bench_watchdog(600);
    bench_dataset d;
    if (bench_dataset_make(&d, keys, OPS_SEED) != 0)
        return 1;
    uint32_t *get_order = bench_order_make(keys, OPS_SEED ^ 1);
    uint32_t *put_order = bench_order_make(keys, OPS_SEED ^ 2);
    if (!get_order || !put_order)
        return 1;

    shoal_db *db = NULL;
    shoal_options *opts = NULL;
    int rc = 0;
    if (dir) {
        if ((rc = shoal_options_new(&opts)) != 0 ||
            (rc = shoal_options_set(opts, SHOAL_OPT_SYNC, SHOAL_SYNC_NONE)) != 0)
            return ops_fail("options", rc);
    }
    if ((rc = shoal_open(dir, opts, &db)) != 0)
        return ops_fail("open", rc);
    shoal_ns_config config = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    shoal_ns *ns = NULL;
    if ((rc = shoal_ns_open(db, "ops", &config, &ns)) != 0)
        return ops_fail("ns_open", rc);
    if (ops_fill(db, ns, &d) != 0)
        return 1;
    if ((rc = shoal_compact(db, NULL)) != 0)
        return ops_fail("compact", rc);
    printf("# bench-ops: %zu keys, %s\n", keys, dir ? "durable (sync none)" : "memory");

    uint64_t checksum = 0;
    for (int round = 0; round < rounds; round++) {
        uint8_t key[BENCH_KEY_SIZE], value[BENCH_VALUE_SIZE];
        uint64_t start = bench_now_ns();
        for (size_t i = 0; i < keys; i++) {
            size_t index = get_order[i], vlen = 0;
            bench_key_make(d.seed, index, key);
            rc = shoal_get_into(ns, NULL, key, BENCH_KEY_SIZE, value, sizeof value, &vlen);
            if (rc != 0 || vlen != BENCH_VALUE_SIZE || value[0] != bench_value_first(d.seed, index))
                return ops_fail("get (or a wrong value)", rc ? rc : SHOAL_ECORRUPT);
            checksum += value[BENCH_VALUE_SIZE - 1];
        }
        printf("# get %.0f ns/op\n", (double)(bench_now_ns() - start) / (double)keys);
        start = bench_now_ns();
        for (size_t i = 0; i < keys; i++) {
            size_t index = put_order[i];
            bench_key_make(d.seed, index, key);
            /* Each key keeps its own value, so the gets of the next round still check. */
            rc = shoal_put(ns, key, BENCH_KEY_SIZE, bench_value(&d, index), BENCH_VALUE_SIZE,
                           NULL);
            if (rc != 0)
                return ops_fail("put", rc);
        }
        printf("# put %.0f ns/op\n", (double)(bench_now_ns() - start) / (double)keys);
        fflush(stdout);
    }
    fprintf(stderr, "# checksum %llu\n", (unsigned long long)checksum);
    shoal_ns_close(ns);
    if ((rc = shoal_close(db)) != 0)
        return ops_fail("close", rc);
    shoal_options_free(opts);
    free(get_order);
    free(put_order);
    bench_dataset_free(&d);
    return 0;
}
