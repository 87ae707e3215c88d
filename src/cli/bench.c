/*
 * bench.c -- `shoal bench`: a short, self-explaining tour of the engine's speed on a memory
 * database. It opens a database with no files, fills it with random keys in atomic batches,
 * reads every key back in a random order, scans them in key order, shows what a snapshot
 * is (and what one costs), and prints the database's own statistics, latency percentiles
 * included. `make run` runs it with --quick.
 *
 * This is a demonstration for a person at a terminal, not the benchmark of record: the
 * figures compared with other engines come from bench/shoal-bench, which measures Shoal and
 * its anchors in the same run (docs/BENCHMARKS.md).
 *
 * Invariants:
 *   1. Every read is checked: a key not found, or found with the wrong value, is a failure
 *      (exit 1), so a fast figure can never hide a wrong answer.
 *   2. The work is bounded by --keys (at most 10,000,000) and the snapshot loop by a fixed
 *      count; nothing waits on time.
 *   3. Every handle opened is closed before the subcommand returns, on every path.
 *
 * How it is tested: ctest runs `shoal bench --keys 5000` and expects exit 0
 * (bench/CMakeLists.txt); the checks of invariant 1 make that a correctness test too.
 */
#include "cli.h"

#include "shoal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLI_BENCH_KEY_SIZE 16
#define CLI_BENCH_DEFAULT_KEYS 1000000u
#define CLI_BENCH_QUICK_KEYS 100000u
#define CLI_BENCH_MAX_KEYS 10000000u
#define CLI_BENCH_MAX_VALUE 4096u
#define CLI_BENCH_SNAPSHOT_PAIRS 1000000u

typedef struct cli_bench_settings {
    size_t keys;
    size_t value_size;
    size_t batch;
} cli_bench_settings;

/* The keys and values of a run: key i at keys + i * 16, value i at values + i * value_size. */
typedef struct cli_bench_data {
    size_t count, value_size;
    uint8_t *keys;
    uint8_t *values;
} cli_bench_data;

static uint64_t cli_bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: a small, fast generator; the finalizer alone is a bijection on 64 bits. */
static uint64_t cli_bench_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t cli_bench_random(uint64_t *state)
{
    *state += 0x9E3779B97F4A7C15ull;
    return cli_bench_mix(*state);
}

/* Keys are distinct by construction: their first 8 bytes are a bijection of the index. */
static int cli_bench_data_make(cli_bench_data *d, size_t count, size_t value_size)
{
    d->count = count;
    d->value_size = value_size;
    d->keys = malloc(count * CLI_BENCH_KEY_SIZE);
    d->values = malloc(count * value_size + 1);
    if (!d->keys || !d->values) {
        free(d->keys);
        free(d->values);
        return -1;
    }
    uint64_t state = 42;
    for (size_t i = 0; i < count; i++) {
        uint8_t *key = d->keys + i * CLI_BENCH_KEY_SIZE;
        uint64_t high = cli_bench_mix((uint64_t)i), low = cli_bench_random(&state);
        for (int b = 7; b >= 0; b--, high >>= 8, low >>= 8) {
            key[b] = (uint8_t)high;
            key[8 + b] = (uint8_t)low;
        }
        uint8_t *value = d->values + i * value_size;
        for (size_t j = 0; j < value_size; j++)
            value[j] = (uint8_t)(cli_bench_random(&state) >> 56);
    }
    return 0;
}

static void cli_bench_data_free(cli_bench_data *d)
{
    free(d->keys);
    free(d->values);
}

static const uint8_t *cli_bench_key(const cli_bench_data *d, size_t i)
{
    return d->keys + i * CLI_BENCH_KEY_SIZE;
}

static const uint8_t *cli_bench_value(const cli_bench_data *d, size_t i)
{
    return d->values + i * d->value_size;
}

static int cli_bench_fail(const char *what, int rc)
{
    fprintf(stderr, "shoal bench: %s: %s\n", what, shoal_strerror(rc));
    return -1;
}

/* Prints one result line: what was done, how long it took, and the rate. */
static void cli_bench_report(const char *step, const char *what, size_t count, uint64_t ns,
                             const char *note)
{
    double seconds = (double)ns / 1e9;
    double rate = seconds > 0 ? (double)count / seconds : 0;
    printf("  %-8s %-42s %8.3f s  %7.2f M/s%s%s\n", step, what, seconds, rate / 1e6,
           note ? "  " : "", note ? note : "");
}

static int cli_bench_fill(shoal_db *db, shoal_ns *ns, const cli_bench_data *d, size_t batch)
{
    shoal_batch *b;
    int rc = shoal_batch_new(db, &b);
    if (rc != 0)
        return cli_bench_fail("batch_new", rc);
    uint64_t begin = cli_bench_now_ns();
    for (size_t i = 0; i < d->count && rc == 0;) {
        size_t stop = (d->count - i > batch) ? i + batch : d->count;
        for (; i < stop && rc == 0; i++)
            rc = shoal_batch_put(b, ns, cli_bench_key(d, i), CLI_BENCH_KEY_SIZE,
                                 cli_bench_value(d, i), d->value_size);
        if (rc == 0)
            rc = shoal_batch_commit(b, NULL, NULL);
        shoal_batch_clear(b);
    }
    uint64_t end = cli_bench_now_ns();
    shoal_batch_free(b);
    if (rc != 0)
        return cli_bench_fail("fill", rc);
    char what[64];
    snprintf(what, sizeof what, "%zu keys in atomic batches of %zu", d->count, batch);
    cli_bench_report("fill", what, d->count, end - begin, NULL);
    return 0;
}

static int cli_bench_gets(shoal_ns *ns, const cli_bench_data *d)
{
    uint32_t *order = malloc(d->count * sizeof *order);
    uint8_t *buffer = malloc(d->value_size + 1);
    if (!order || !buffer) {
        free(order);
        free(buffer);
        return cli_bench_fail("gets", SHOAL_ENOMEM);
    }
    uint64_t state = 7;
    for (size_t i = 0; i < d->count; i++)
        order[i] = (uint32_t)i;
    for (size_t i = d->count - 1; i > 0; i--) {
        size_t j = (size_t)(((cli_bench_random(&state) >> 32) * (uint64_t)(i + 1)) >> 32);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    size_t wrong = 0;
    int rc = 0;
    uint64_t begin = cli_bench_now_ns();
    for (size_t i = 0; i < d->count; i++) {
        size_t index = order[i], vlen = 0;
        rc = shoal_get_into(ns, NULL, cli_bench_key(d, index), CLI_BENCH_KEY_SIZE, buffer,
                            d->value_size + 1, &vlen);
        if (rc == SHOAL_ENOTFOUND ||
            (rc == 0 &&
             (vlen != d->value_size || memcmp(buffer, cli_bench_value(d, index), vlen) != 0))) {
            wrong++;
            rc = 0;
        } else if (rc != 0) {
            break;
        }
    }
    uint64_t end = cli_bench_now_ns();
    free(order);
    free(buffer);
    if (rc != 0)
        return cli_bench_fail("get", rc);
    if (wrong) {
        fprintf(stderr, "shoal bench: %zu of %zu keys missing or wrong\n", wrong, d->count);
        return -1;
    }
    char what[64];
    snprintf(what, sizeof what, "%zu keys in random order, one thread", d->count);
    cli_bench_report("get", what, d->count, end - begin, "(every value checked)");
    return 0;
}

static int cli_bench_scan(shoal_ns *ns, const cli_bench_data *d)
{
    shoal_iter *it;
    int rc = shoal_iter_new(ns, NULL, &it);
    if (rc != 0)
        return cli_bench_fail("iter_new", rc);
    size_t seen = 0, out_of_order = 0;
    uint8_t previous[CLI_BENCH_KEY_SIZE];
    uint64_t begin = cli_bench_now_ns();
    while ((rc = shoal_iter_next(it)) == 1) {
        size_t klen, vlen;
        const void *key = shoal_iter_key(it, &klen);
        (void)shoal_iter_value(it, &vlen);
        if (klen != CLI_BENCH_KEY_SIZE || vlen != d->value_size ||
            (seen > 0 && memcmp(previous, key, CLI_BENCH_KEY_SIZE) >= 0))
            out_of_order++;
        else
            memcpy(previous, key, CLI_BENCH_KEY_SIZE);
        seen++;
    }
    uint64_t end = cli_bench_now_ns();
    shoal_iter_free(it);
    if (rc < 0)
        return cli_bench_fail("iter_next", rc);
    if (seen != d->count || out_of_order) {
        fprintf(stderr, "shoal bench: the scan saw %zu keys (%zu wrong), expected %zu\n", seen,
                out_of_order, d->count);
        return -1;
    }
    char what[64];
    snprintf(what, sizeof what, "%zu keys in key order, one iterator", seen);
    cli_bench_report("scan", what, seen, end - begin, "(order checked)");
    return 0;
}

/* Reads key as seen by snap (NULL: latest) into buffer as a string. */
static int cli_bench_read_text(shoal_ns *ns, const shoal_snapshot *snap, const char *key,
                               char *buffer, size_t cap)
{
    size_t vlen = 0;
    int rc = shoal_get_into(ns, snap, key, strlen(key), buffer, cap - 1, &vlen);
    if (rc == 0)
        buffer[vlen] = '\0';
    return rc;
}

static int cli_bench_snapshots(shoal_db *db, shoal_ns *ns)
{
    /* What a snapshot is: a consistent view that later writes do not change. */
    static const char key[] = "demo:greeting";
    int rc = shoal_put(ns, key, strlen(key), "before", 6, NULL);
    if (rc != 0)
        return cli_bench_fail("put", rc);
    shoal_snapshot *snap;
    rc = shoal_snapshot_take(db, &snap);
    if (rc != 0)
        return cli_bench_fail("snapshot_take", rc);
    rc = shoal_put(ns, key, strlen(key), "after", 5, NULL);
    char old_text[16] = "", new_text[16] = "";
    if (rc == 0)
        rc = cli_bench_read_text(ns, snap, key, old_text, sizeof old_text);
    if (rc == 0)
        rc = cli_bench_read_text(ns, NULL, key, new_text, sizeof new_text);
    uint64_t snap_seq = shoal_snapshot_seq(snap);
    shoal_snapshot_release(snap);
    if (rc == 0)
        rc = shoal_delete(ns, key, strlen(key), NULL);
    if (rc != 0)
        return cli_bench_fail("snapshot demo", rc);
    printf("  snapshot taken at seq %llu, then \"%s\" overwritten: the snapshot reads \"%s\", "
           "the latest state \"%s\"\n",
           (unsigned long long)snap_seq, key, old_text, new_text);
    if (strcmp(old_text, "before") != 0 || strcmp(new_text, "after") != 0) {
        fprintf(stderr, "shoal bench: the snapshot did not keep its view\n");
        return -1;
    }

    /* What one costs: take and release in a loop. */
    uint64_t begin = cli_bench_now_ns();
    for (size_t i = 0; i < CLI_BENCH_SNAPSHOT_PAIRS; i++) {
        rc = shoal_snapshot_take(db, &snap);
        if (rc != 0)
            return cli_bench_fail("snapshot_take", rc);
        shoal_snapshot_release(snap);
    }
    uint64_t end = cli_bench_now_ns();
    printf("  %-8s %-42s %8.1f ns per pair\n", "snapshot", "take + release, 1,000,000 times",
           (double)(end - begin) / CLI_BENCH_SNAPSHOT_PAIRS);
    return 0;
}

static void cli_bench_latency_row(const char *name, const shoal_latency *l)
{
    printf("  %-8s %10llu %9.2f %9.2f %9.2f %9.2f\n", name, (unsigned long long)l->count,
           l->p50_ns / 1e3, l->p99_ns / 1e3, l->p999_ns / 1e3, l->max_ns / 1e3);
}

static int cli_bench_print_stats(shoal_db *db)
{
    shoal_db_stats stats;
    int rc = shoal_stats(db, &stats);
    if (rc != 0)
        return cli_bench_fail("stats", rc);
    printf("\ndatabase statistics\n");
    printf("  seq %llu, %u shards (%u active), %llu namespace(s)\n", (unsigned long long)stats.seq,
           stats.shards, stats.active_shards, (unsigned long long)stats.namespaces);
    printf("  %llu live keys, %.1f MB of keys and values, %.1f MB held by the engine\n",
           (unsigned long long)stats.keys, stats.bytes / 1e6, stats.memory / 1e6);
    printf("  %llu gets, %llu puts, %llu deletes, %llu batch commits, %llu scans\n",
           (unsigned long long)stats.gets, (unsigned long long)stats.puts,
           (unsigned long long)stats.deletes, (unsigned long long)stats.commits,
           (unsigned long long)stats.scans);
    printf("  versions retired %llu, reclaimed %llu; snapshots open %llu\n",
           (unsigned long long)stats.versions_retired, (unsigned long long)stats.versions_reclaimed,
           (unsigned long long)stats.snapshots_open);
    printf("\n  latency  %10s %9s %9s %9s %9s   (microseconds, as the engine samples them)\n",
           "count", "p50", "p99", "p99.9", "max");
    cli_bench_latency_row("get", &stats.get);
    cli_bench_latency_row("put", &stats.put);
    cli_bench_latency_row("commit", &stats.commit);
    return 0;
}

static void cli_bench_usage(FILE *out)
{
    fprintf(out,
            "usage: shoal bench [--quick] [--keys N] [--value-size N] [--batch N]\n"
            "  Fills a memory database with random 16-byte keys in atomic batches, reads every\n"
            "  key back in random order, scans in key order, demonstrates a snapshot, and\n"
            "  prints the database's statistics.\n"
            "  --quick          %u keys (default %u)\n"
            "  --keys N         keys to write, 1..%u\n"
            "  --value-size N   bytes per value, 0..%u (default 100)\n"
            "  --batch N        keys per atomic batch, 1..100000 (default 1000)\n",
            CLI_BENCH_QUICK_KEYS, CLI_BENCH_DEFAULT_KEYS, CLI_BENCH_MAX_KEYS, CLI_BENCH_MAX_VALUE);
}

static bool cli_bench_number(const char *text, unsigned long min, unsigned long max, size_t *out)
{
    if (!text || text[0] == '-')
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int cli_bench_parse(int argc, char **argv, cli_bench_settings *s)
{
    s->keys = CLI_BENCH_DEFAULT_KEYS;
    s->value_size = 100;
    s->batch = 1000;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cli_bench_usage(stdout);
            return 1;
        } else if (strcmp(argv[i], "--quick") == 0) {
            s->keys = CLI_BENCH_QUICK_KEYS;
        } else if (strcmp(argv[i], "--keys") == 0 &&
                   cli_bench_number(next, 1, CLI_BENCH_MAX_KEYS, &s->keys)) {
            i++;
        } else if (strcmp(argv[i], "--value-size") == 0 &&
                   cli_bench_number(next, 0, CLI_BENCH_MAX_VALUE, &s->value_size)) {
            i++;
        } else if (strcmp(argv[i], "--batch") == 0 &&
                   cli_bench_number(next, 1, 100000, &s->batch)) {
            i++;
        } else {
            fprintf(stderr, "shoal bench: bad argument '%s'\n", argv[i]);
            cli_bench_usage(stderr);
            return -1;
        }
    }
    return 0;
}

int cli_bench(int argc, char **argv)
{
    cli_bench_settings s;
    int parsed = cli_bench_parse(argc, argv, &s);
    if (parsed != 0)
        return parsed < 0 ? 2 : 0;

    cli_bench_data d;
    if (cli_bench_data_make(&d, s.keys, s.value_size) != 0) {
        fprintf(stderr, "shoal bench: out of memory for %zu keys\n", s.keys);
        return 1;
    }
    shoal_db *db = NULL;
    shoal_ns *ns = NULL;
    int rc = shoal_open(NULL, NULL, &db);
    if (rc != 0) {
        cli_bench_fail("open", rc);
        cli_bench_data_free(&d);
        return 1;
    }
    shoal_ns_config config = {.kind = SHOAL_KIND_KV, .placement = SHOAL_PLACE_SPREAD};
    rc = shoal_ns_open(db, "bench", &config, &ns);
    int status = 1;
    if (rc != 0) {
        cli_bench_fail("ns_open", rc);
    } else {
        shoal_db_stats stats;
        uint32_t shards = shoal_stats(db, &stats) == 0 ? stats.shards : 0;
        printf("shoal bench: a memory database (no files), %u shards; namespace \"bench\" "
               "spread over all of them\n",
               shards);
        printf("  %zu random keys of %d bytes, values of %zu bytes\n\n", d.count,
               CLI_BENCH_KEY_SIZE, d.value_size);
        if (cli_bench_fill(db, ns, &d, s.batch) == 0 && cli_bench_gets(ns, &d) == 0 &&
            cli_bench_scan(ns, &d) == 0 && cli_bench_snapshots(db, ns) == 0 &&
            cli_bench_print_stats(db) == 0)
            status = 0;
    }
    shoal_ns_close(ns);
    rc = shoal_close(db);
    if (rc != 0) {
        cli_bench_fail("close", rc);
        status = 1;
    }
    cli_bench_data_free(&d);
    if (status == 0)
        printf("\nfor figures compared with LMDB, RocksDB, LevelDB and Redis: make bench\n");
    return status;
}
