/*
 * bench_kv.c -- shoal-bench: the key-value benchmarks of the engine core, each one measured
 * on Shoal and on its anchors (LMDB, RocksDB, LevelDB, Redis) in the same run.
 *
 * Output format. Every result is one line on stdout:
 *
 *     BENCH <name> shoal=<value> <anchor>=<value> ratio=<r> unit=<unit>
 *
 * one line per (benchmark, anchor). Each value is the median of --runs runs (default 3).
 * ratio > 1 means Shoal is better: shoal/anchor for throughputs, anchor/shoal for times and
 * sizes. The disjoint-scaling line compares Shoal with itself (anchor "single": the same
 * work done by one thread). Everything else goes to stderr or to lines starting with '#'.
 *
 * The benchmarks (docs/BENCHMARKS.md says more):
 *   fill              N random 16-byte keys with 100-byte values, in atomic batches of
 *                     1000, into an empty database; keys/s.
 *   get_1t, get_2t    every key read once in a random order, by one thread, and by two
 *                     threads each with its own random order over all keys; keys/s (for
 *                     two threads: 2N keys over the wall time).
 *   scan              one ordered pass over every key with an iterator; keys/s.
 *   snapshot          a snapshot taken and released, ns per pair.
 *   memory            growth of the resident set per key after the fill (Shoal in a forked
 *                     child, Redis in its own server process); bytes per key.
 *   disjoint_scaling  two threads doing single puts into two pinned namespaces on different
 *                     shards, against one thread doing the same total work; ops/s.
 *
 * The dataset is generated once, up front, from a fixed seed (bench_dataset_make in
 * bench_util.c). Keys are distinct by construction: the first 8 bytes are a bijective mix
 * of the key's index (distinct indexes give distinct keys), the last 8 are random. Key i
 * and the first byte of value i are functions of (seed, i), so the get loops make them
 * instead of loading them from the dataset at a random index (a cache miss each that is
 * no engine's work); the fill and scan loops read the stored dataset.
 *
 * Invariants:
 *   1. Shoal and every anchor do the same work on the same data in the same run; the
 *      engines are driven through one interface (bench.h), and the driver alone holds the
 *      clock.
 *   2. A result is printed only if every read of its pass found the right value; a wrong
 *      or missing value makes the program exit 1 after printing what it could.
 *   3. The work is bounded: --keys and --runs have upper limits, and a watchdog stops the
 *      program (and any server it started) after --time-limit seconds.
 *
 * How it is tested: `shoal-bench --selftest` (a ctest test) runs every engine on a small
 * dataset and checks the results exactly, including that a missing key is reported as
 * missing; `shoal-bench --quick` is the smoke run.
 */
#include "bench.h"

#include "shoal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BENCH_SEED 0x5EED5EED2024ull
#define BENCH_BATCH 1000
#define BENCH_MAX_KEYS 20000000u
#define BENCH_MIN_KEYS 1000u
#define BENCH_MAX_RUNS 15
#define BENCH_SNAPSHOT_PAIRS 1000000u
#define BENCH_QUICK_KEYS 100000u
#define BENCH_SELFTEST_KEYS 20011u /* not a multiple of the batch: the last batch is short */

/* ---- benchmarks and engines ----------------------------------------------------------- */

enum bench_id {
    BENCH_FILL,
    BENCH_GET_1T,
    BENCH_GET_2T,
    BENCH_SCAN,
    BENCH_SNAPSHOT,
    BENCH_MEMORY,
    BENCH_DISJOINT,
    BENCH_COUNT
};

typedef struct bench_info {
    const char *name;
    const char *unit;
    bool higher_is_better; /* throughputs; times and sizes are better lower */
    const char *format;    /* how its values print */
} bench_info;

static const bench_info bench_infos[BENCH_COUNT] = {
    [BENCH_FILL] = {"fill", "keys/s", true, "%.0f"},
    [BENCH_GET_1T] = {"get_1t", "keys/s", true, "%.0f"},
    [BENCH_GET_2T] = {"get_2t", "keys/s", true, "%.0f"},
    [BENCH_SCAN] = {"scan", "keys/s", true, "%.0f"},
    [BENCH_SNAPSHOT] = {"snapshot", "ns/pair", false, "%.1f"},
    [BENCH_MEMORY] = {"memory", "bytes_per_key", false, "%.1f"},
    [BENCH_DISJOINT] = {"disjoint_scaling", "ops/s", true, "%.0f"},
};

/* Columns of the result table: the engines, then Redis (memory only), then "single" (the
 * one-thread side of disjoint scaling). */
enum bench_column {
    COLUMN_SHOAL,
    COLUMN_LMDB,
    COLUMN_ROCKSDB,
    COLUMN_LEVELDB,
    COLUMN_REDIS,
    COLUMN_SINGLE,
    COLUMN_COUNT
};

static const char *const bench_column_names[COLUMN_COUNT] = {
    "shoal", "lmdb", "rocksdb", "leveldb", "redis", "single",
};

/* The key-value engines, indexed by column. */
static const bench_engine *const bench_engines[COLUMN_REDIS] = {
    &engine_shoal,
    &anchor_lmdb,
    &anchor_rocksdb,
    &anchor_leveldb,
};

/* ---- settings and results ------------------------------------------------------------- */

typedef struct bench_settings {
    size_t keys;
    int runs;
    bool quick;
    bool selftest;
    bool selected[BENCH_COUNT];
    bool column_enabled[COLUMN_COUNT]; /* anchors asked for (shoal and single: always) */
    unsigned time_limit;
} bench_settings;

typedef struct bench_results {
    double figures[BENCH_COUNT][COLUMN_COUNT][BENCH_MAX_RUNS];
    int count[BENCH_COUNT][COLUMN_COUNT];
    bool failed[BENCH_COUNT][COLUMN_COUNT];
} bench_results;

static int bench_errors; /* verification failures and engine errors: exit status 1 */

static void bench_record(bench_results *r, enum bench_id b, enum bench_column c, double value)
{
    if (r->count[b][c] < BENCH_MAX_RUNS)
        r->figures[b][c][r->count[b][c]++] = value;
}

static void bench_fail(bench_results *r, enum bench_id b, enum bench_column c)
{
    r->failed[b][c] = true;
    bench_errors++;
}

static int bench_compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the recorded runs; false when there are none or the engine failed. */
static bool bench_median(const bench_results *r, enum bench_id b, enum bench_column c, double *out)
{
    int n = r->count[b][c];
    if (n == 0 || r->failed[b][c])
        return false;
    double sorted[BENCH_MAX_RUNS];
    memcpy(sorted, r->figures[b][c], (size_t)n * sizeof sorted[0]);
    qsort(sorted, (size_t)n, sizeof sorted[0], bench_compare_doubles);
    *out = (n % 2) ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    return true;
}

/* ---- the dataset ------------------------------------------------------------------------ */

/* ---- running an engine ------------------------------------------------------------------ */

typedef struct bench_db {
    const bench_engine *engine;
    void *handle;
    char dir[64];
} bench_db;

static int bench_db_open(bench_db *db, const bench_engine *engine, size_t keys)
{
    db->engine = engine;
    db->handle = NULL;
    db->dir[0] = '\0';
    if (engine->needs_dir && bench_temp_dir(db->dir, sizeof db->dir) != 0)
        return -1;
    if (engine->open(engine->needs_dir ? db->dir : NULL, keys, &db->handle) != 0) {
        if (db->dir[0])
            bench_remove_tree(db->dir);
        return -1;
    }
    return 0;
}

static void bench_db_close(bench_db *db)
{
    db->engine->close(db->handle);
    if (db->dir[0])
        bench_remove_tree(db->dir);
}

typedef struct bench_reader {
    const bench_db *db;
    const bench_dataset *d;
    const uint32_t *order;
    size_t count;
    pthread_barrier_t *start;
    bench_reads reads;
    int rc;
} bench_reader;

static void *bench_reader_thread(void *arg)
{
    bench_reader *reader = arg;
    pthread_barrier_wait(reader->start);
    reader->rc = reader->db->engine->get(reader->db->handle, reader->d, reader->order,
                                         reader->count, &reader->reads);
    return NULL;
}

/* Reads with threads threads (1 or 2), thread t in orders[t]; returns keys/s or -1 after a
 * failure (reported). Every key must be found with its value. */
static double bench_read_pass(const bench_db *db, const bench_dataset *d, uint32_t *const orders[2],
                              int threads)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    bench_reader readers[2];
    pthread_t ids[2];
    for (int t = 0; t < threads; t++) {
        readers[t] = (bench_reader){
            .db = db, .d = d, .order = orders[t], .count = d->count, .start = &start};
        if (pthread_create(&ids[t], NULL, bench_reader_thread, &readers[t]) != 0) {
            /* Threads already started wait at a barrier that cannot open. */
            fprintf(stderr, "# pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&start);
    uint64_t begin = bench_now_ns();
    for (int t = 0; t < threads; t++)
        pthread_join(ids[t], NULL);
    uint64_t end = bench_now_ns();
    pthread_barrier_destroy(&start);
    for (int t = 0; t < threads; t++) {
        if (readers[t].rc != 0 || readers[t].reads.good != d->count || readers[t].reads.bad) {
            fprintf(stderr, "# %s: get (%d threads): %llu of %zu keys read right, %llu wrong\n",
                    db->engine->name, threads, (unsigned long long)readers[t].reads.good, d->count,
                    (unsigned long long)readers[t].reads.bad);
            return -1;
        }
    }
    return (double)threads * (double)d->count / ((double)(end - begin) / 1e9);
}

static bool bench_wants_kv(const bench_settings *s)
{
    return s->selected[BENCH_FILL] || s->selected[BENCH_GET_1T] || s->selected[BENCH_GET_2T] ||
           s->selected[BENCH_SCAN];
}

static void bench_progress(int run, const char *engine, const char *what, double value,
                           const char *unit)
{
    fprintf(stderr, "# run %d: %-8s %-9s %14.1f %s\n", run + 1, engine, what, value, unit);
}

/* One run of fill, get and scan on one engine: a fresh database, filled, read, scanned. */
static void bench_kv_run(const bench_settings *s, bench_results *r, enum bench_column c,
                         const bench_dataset *d, uint32_t *const orders[2], int run)
{
    const bench_engine *engine = bench_engines[c];
    bench_db db;
    if (bench_db_open(&db, engine, d->count) != 0) {
        for (int b = BENCH_FILL; b <= BENCH_SCAN; b++)
            if (s->selected[b])
                bench_fail(r, (enum bench_id)b, c);
        return;
    }
    uint64_t begin = bench_now_ns();
    int rc = engine->fill(db.handle, d, 0, d->count, BENCH_BATCH);
    uint64_t end = bench_now_ns();
    if (rc != 0) {
        for (int b = BENCH_FILL; b <= BENCH_SCAN; b++)
            if (s->selected[b])
                bench_fail(r, (enum bench_id)b, c);
        bench_db_close(&db);
        return;
    }
    double fill = (double)d->count / ((double)(end - begin) / 1e9);
    bench_progress(run, engine->name, "fill", fill, "keys/s");
    if (s->selected[BENCH_FILL])
        bench_record(r, BENCH_FILL, c, fill);

    bool reads = s->selected[BENCH_GET_1T] || s->selected[BENCH_GET_2T] || s->selected[BENCH_SCAN];
    if (reads && engine->settle && engine->settle(db.handle) != 0) {
        for (int b = BENCH_GET_1T; b <= BENCH_SCAN; b++)
            if (s->selected[b])
                bench_fail(r, (enum bench_id)b, c);
        bench_db_close(&db);
        return;
    }
    for (int threads = 1; threads <= 2; threads++) {
        enum bench_id b = threads == 1 ? BENCH_GET_1T : BENCH_GET_2T;
        if (!s->selected[b])
            continue;
        double rate = bench_read_pass(&db, d, orders, threads);
        if (rate < 0) {
            bench_fail(r, b, c);
            continue;
        }
        bench_progress(run, engine->name, bench_infos[b].name, rate, "keys/s");
        bench_record(r, b, c, rate);
    }
    if (s->selected[BENCH_SCAN]) {
        bench_reads scan = {0};
        begin = bench_now_ns();
        rc = engine->scan(db.handle, false, &scan);
        end = bench_now_ns();
        if (rc != 0 || scan.good != d->count || scan.bad) {
            fprintf(stderr, "# %s: scan: %llu of %zu keys read right, %llu wrong\n", engine->name,
                    (unsigned long long)scan.good, d->count, (unsigned long long)scan.bad);
            bench_fail(r, BENCH_SCAN, c);
        } else {
            double rate = (double)d->count / ((double)(end - begin) / 1e9);
            bench_progress(run, engine->name, "scan", rate, "keys/s");
            bench_record(r, BENCH_SCAN, c, rate);
        }
    }
    bench_db_close(&db);
}

/* Snapshot take + release on one engine: a small database, then runs timings of pairs. */
static void bench_snapshot_engine(const bench_settings *s, bench_results *r, enum bench_column c,
                                  const bench_dataset *d, size_t pairs)
{
    const bench_engine *engine = bench_engines[c];
    bench_db db;
    if (bench_db_open(&db, engine, d->count) != 0) {
        bench_fail(r, BENCH_SNAPSHOT, c);
        return;
    }
    size_t keys = d->count < BENCH_BATCH ? d->count : BENCH_BATCH;
    if (engine->fill(db.handle, d, 0, keys, BENCH_BATCH) != 0 ||
        engine->snapshot_pairs(db.handle, pairs / 10) != 0) { /* warm-up */
        bench_fail(r, BENCH_SNAPSHOT, c);
        bench_db_close(&db);
        return;
    }
    for (int run = 0; run < s->runs; run++) {
        uint64_t begin = bench_now_ns();
        int rc = engine->snapshot_pairs(db.handle, pairs);
        uint64_t end = bench_now_ns();
        if (rc != 0) {
            bench_fail(r, BENCH_SNAPSHOT, c);
            break;
        }
        double ns = (double)(end - begin) / (double)pairs;
        bench_progress(run, engine->name, "snapshot", ns, "ns/pair");
        bench_record(r, BENCH_SNAPSHOT, c, ns);
    }
    bench_db_close(&db);
}

static void bench_memory_run(const bench_settings *s, bench_results *r, const bench_dataset *d,
                             int run)
{
    double bytes;
    if (engine_shoal_memory(d, BENCH_BATCH, &bytes) == 0) {
        bench_progress(run, "shoal", "memory", bytes, "bytes/key");
        bench_record(r, BENCH_MEMORY, COLUMN_SHOAL, bytes);
    } else {
        bench_fail(r, BENCH_MEMORY, COLUMN_SHOAL);
    }
    if (!s->column_enabled[COLUMN_REDIS])
        return;
    int rc = anchor_redis_memory(d, BENCH_BATCH, &bytes);
    if (rc == 0) {
        bench_progress(run, "redis", "memory", bytes, "bytes/key");
        bench_record(r, BENCH_MEMORY, COLUMN_REDIS, bytes);
    } else if (rc < 0) {
        bench_fail(r, BENCH_MEMORY, COLUMN_REDIS);
    }
}

static void bench_disjoint_run(bench_results *r, const bench_dataset *d, int run)
{
    size_t per_thread = d->count / 2;
    double one, two;
    if (engine_shoal_disjoint(d, 1, per_thread, &one) != 0) {
        bench_fail(r, BENCH_DISJOINT, COLUMN_SINGLE);
        return;
    }
    bench_progress(run, "single", "disjoint", one, "ops/s");
    bench_record(r, BENCH_DISJOINT, COLUMN_SINGLE, one);
    if (engine_shoal_disjoint(d, 2, per_thread, &two) != 0) {
        bench_fail(r, BENCH_DISJOINT, COLUMN_SHOAL);
        return;
    }
    bench_progress(run, "shoal", "disjoint", two, "ops/s");
    bench_record(r, BENCH_DISJOINT, COLUMN_SHOAL, two);
}

/* ---- output ------------------------------------------------------------------------------- */

static void bench_print_line(const bench_results *r, enum bench_id b, enum bench_column anchor)
{
    const bench_info *info = &bench_infos[b];
    double ours, theirs;
    if (!bench_median(r, b, COLUMN_SHOAL, &ours) || !bench_median(r, b, anchor, &theirs))
        return;
    double ratio = info->higher_is_better ? ours / theirs : theirs / ours;
    char ours_text[32], theirs_text[32];
    snprintf(ours_text, sizeof ours_text, info->format, ours);
    snprintf(theirs_text, sizeof theirs_text, info->format, theirs);
    printf("BENCH %s shoal=%s %s=%s ratio=%.2f unit=%s\n", info->name, ours_text,
           bench_column_names[anchor], theirs_text, ratio, info->unit);
}

/* Prints a Shoal figure that has no anchor in this run, as a comment. */
static void bench_print_alone(const bench_results *r, enum bench_id b)
{
    double ours;
    if (!bench_median(r, b, COLUMN_SHOAL, &ours))
        return;
    char text[32];
    snprintf(text, sizeof text, bench_infos[b].format, ours);
    printf("# %s shoal=%s unit=%s (no anchor in this run)\n", bench_infos[b].name, text,
           bench_infos[b].unit);
}

static void bench_print_results(const bench_settings *s, const bench_results *r)
{
    for (int b = 0; b < BENCH_COUNT; b++) {
        if (!s->selected[b])
            continue;
        bool any = false;
        for (int c = COLUMN_LMDB; c < COLUMN_COUNT; c++) {
            double unused;
            if (bench_median(r, (enum bench_id)b, (enum bench_column)c, &unused)) {
                bench_print_line(r, (enum bench_id)b, (enum bench_column)c);
                any = true;
            }
        }
        if (!any)
            bench_print_alone(r, (enum bench_id)b);
    }
}

/* The targets of the issue, as comments: met or not, against the best anchor measured. */
static void bench_print_targets(const bench_results *r)
{
    static const struct {
        enum bench_id bench;
        double factor;
        enum bench_column only; /* COLUMN_COUNT: the best of the key-value anchors */
        const char *text;
    } targets[] = {
        {BENCH_FILL, 2.0, COLUMN_COUNT, "fill >= 2x the best anchor"},
        {BENCH_GET_1T, 2.0, COLUMN_LMDB, "get_1t >= 2x lmdb"},
        {BENCH_SCAN, 1.0, COLUMN_LMDB, "scan >= lmdb"},
        {BENCH_DISJOINT, 1.8, COLUMN_SINGLE, "disjoint_scaling >= 1.8"},
    };
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        double ours, best = 0;
        const char *best_name = NULL;
        if (!bench_median(r, targets[i].bench, COLUMN_SHOAL, &ours))
            continue;
        for (int c = COLUMN_LMDB; c < COLUMN_COUNT; c++) {
            double theirs;
            bool eligible =
                targets[i].only == COLUMN_COUNT ? c <= COLUMN_LEVELDB : c == (int)targets[i].only;
            if (eligible && bench_median(r, targets[i].bench, (enum bench_column)c, &theirs) &&
                theirs > best) {
                best = theirs;
                best_name = bench_column_names[c];
            }
        }
        if (!best_name)
            continue;
        printf("# target %s: %.2fx %s -> %s\n", targets[i].text, ours / best, best_name,
               ours / best >= targets[i].factor ? "met" : "NOT met");
    }
}

/* ---- self-test ------------------------------------------------------------------------------ */

static int bench_selftest_failures;

static void bench_expect(bool ok, const char *engine, const char *what)
{
    if (!ok) {
        fprintf(stderr, "# selftest %s: FAILED: %s\n", engine, what);
        bench_selftest_failures++;
    }
}

/* Checks one engine exactly on a small dataset. */
static void bench_selftest_engine(const bench_engine *engine, const bench_dataset *d,
                                  const bench_dataset *absent, const uint32_t *absent_order,
                                  uint32_t *const orders[2])
{
    bench_db db;
    if (bench_db_open(&db, engine, d->count) != 0) {
        bench_expect(false, engine->name, "open");
        return;
    }
    bench_expect(engine->fill(db.handle, d, 0, d->count, BENCH_BATCH) == 0, engine->name, "fill");
    /* Writing the same keys again changes nothing: the scan below must still see each once. */
    bench_expect(engine->fill(db.handle, d, 0, d->count / 3, 7) == 0, engine->name, "refill");
    bench_expect(!engine->settle || engine->settle(db.handle) == 0, engine->name, "settle");

    bench_reads got = {0};
    bench_expect(engine->get(db.handle, d, orders[0], d->count, &got) == 0, engine->name, "get");
    bench_expect(got.good == d->count && got.bad == 0, engine->name, "every key read right");

    double rate = bench_read_pass(&db, d, orders, 2);
    bench_expect(rate > 0, engine->name, "two-thread read pass");

    bench_reads missing = {0};
    bench_expect(engine->get(db.handle, absent, absent_order, absent->count, &missing) == 0,
                 engine->name, "get of absent keys");
    bench_expect(missing.good == 0 && missing.bad == absent->count, engine->name,
                 "absent keys reported missing");

    bench_reads scan = {0};
    bench_expect(engine->scan(db.handle, true, &scan) == 0, engine->name, "scan");
    bench_expect(scan.good == d->count && scan.bad == 0, engine->name,
                 "scan sees every key once, in order");
    bench_expect(scan.checksum == got.checksum, engine->name, "scan and gets read the same values");

    if (engine->snapshot_pairs)
        bench_expect(engine->snapshot_pairs(db.handle, 1000) == 0, engine->name, "snapshots");
    bench_db_close(&db);
    fprintf(stderr, "# selftest %s: done\n", engine->name);
}

static int bench_selftest(const bench_settings *s)
{
    bench_dataset d, absent;
    if (bench_dataset_make(&d, s->keys, BENCH_SEED) != 0)
        return 1;
    if (bench_dataset_make(&absent, 100, ~BENCH_SEED) != 0) {
        bench_dataset_free(&d);
        return 1;
    }
    uint32_t *orders[2] = {bench_order_make(d.count, 1), bench_order_make(d.count, 2)};
    uint32_t *absent_order = bench_order_make(absent.count, 3);
    if (!orders[0] || !orders[1] || !absent_order) {
        free(orders[0]);
        free(orders[1]);
        free(absent_order);
        bench_dataset_free(&d);
        bench_dataset_free(&absent);
        return 1;
    }
    for (int c = COLUMN_SHOAL; c < COLUMN_REDIS; c++)
        if (s->column_enabled[c])
            bench_selftest_engine(bench_engines[c], &d, &absent, absent_order, orders);
    free(absent_order);

    double bytes;
    bench_expect(engine_shoal_memory(&d, BENCH_BATCH, &bytes) == 0 && bytes > 0, "shoal",
                 "memory per key");
    if (s->column_enabled[COLUMN_REDIS]) {
        int rc = anchor_redis_memory(&d, BENCH_BATCH, &bytes);
        bench_expect(rc >= 0 && (rc == 1 || bytes > 0), "redis", "memory per key");
    }
    double one, two;
    bench_expect(engine_shoal_disjoint(&d, 1, d.count / 2, &one) == 0 && one > 0, "shoal",
                 "disjoint writes, one thread");
    bench_expect(engine_shoal_disjoint(&d, 2, d.count / 2, &two) == 0 && two > 0, "shoal",
                 "disjoint writes, two threads");

    free(orders[0]);
    free(orders[1]);
    bench_dataset_free(&d);
    bench_dataset_free(&absent);
    fprintf(stderr, "# selftest: %s\n", bench_selftest_failures ? "FAILED" : "ok");
    return bench_selftest_failures ? 1 : 0;
}

/* ---- command line ---------------------------------------------------------------------------- */

static void bench_usage(FILE *out)
{
    fprintf(out,
            "usage: shoal-bench [options]\n"
            "  --quick            %u keys, 1 run, only the cheap anchor (lmdb)\n"
            "  --only LIST        comma-separated benchmarks: fill, get (get_1t, get_2t), scan,\n"
            "                     snapshot, memory, disjoint (disjoint_scaling)\n"
            "  --anchors LIST     comma-separated: lmdb, rocksdb, leveldb, redis; all; none\n"
            "  --runs N           runs per figure, the median is printed (default 3, 1..%d)\n"
            "  --keys N           keys in the dataset (default 1000000, %u..%u)\n"
            "  --time-limit S     stop after S seconds (default 1200)\n"
            "  --selftest         check every engine exactly on a small dataset\n"
            "  --help             this text\n",
            BENCH_QUICK_KEYS, BENCH_MAX_RUNS, BENCH_MIN_KEYS, BENCH_MAX_KEYS);
}

static bool bench_parse_number(const char *text, unsigned long min, unsigned long max,
                               unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max || text[0] == '-')
        return false;
    *out = v;
    return true;
}

/* Applies a comma-separated list of names to flags[], where names[i] names flags[i]. A token
 * matches a name exactly or as its prefix up to an underscore ("get" matches "get_1t"). */
static bool bench_parse_list(const char *list, const char *const *names, size_t count, bool *flags)
{
    char copy[256];
    if (strlen(list) >= sizeof copy)
        return false;
    strcpy(copy, list);
    char *save = NULL;
    for (char *token = strtok_r(copy, ",", &save); token; token = strtok_r(NULL, ",", &save)) {
        bool matched = false;
        size_t length = strlen(token);
        for (size_t i = 0; i < count; i++) {
            if (!names[i])
                continue;
            if (strcmp(names[i], token) == 0 ||
                (strncmp(names[i], token, length) == 0 && names[i][length] == '_')) {
                flags[i] = true;
                matched = true;
            }
        }
        if (!matched) {
            fprintf(stderr, "shoal-bench: unknown name '%s'\n", token);
            return false;
        }
    }
    return true;
}

static int bench_parse(int argc, char **argv, bench_settings *s)
{
    memset(s, 0, sizeof *s);
    s->keys = 1000000;
    s->runs = 3;
    s->time_limit = 1200;
    const char *only = NULL, *anchors = NULL;
    bool keys_given = false, runs_given = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long v;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            bench_usage(stdout);
            exit(0);
        } else if (strcmp(arg, "--quick") == 0) {
            s->quick = true;
        } else if (strcmp(arg, "--selftest") == 0) {
            s->selftest = true;
        } else if (strcmp(arg, "--only") == 0 && next) {
            only = next;
            i++;
        } else if (strcmp(arg, "--anchors") == 0 && next) {
            anchors = next;
            i++;
        } else if (strcmp(arg, "--runs") == 0 && next &&
                   bench_parse_number(next, 1, BENCH_MAX_RUNS, &v)) {
            s->runs = (int)v;
            runs_given = true;
            i++;
        } else if (strcmp(arg, "--keys") == 0 && next &&
                   bench_parse_number(next, BENCH_MIN_KEYS, BENCH_MAX_KEYS, &v)) {
            s->keys = v;
            keys_given = true;
            i++;
        } else if (strcmp(arg, "--time-limit") == 0 && next &&
                   bench_parse_number(next, 1, 86400, &v)) {
            s->time_limit = (unsigned)v;
            i++;
        } else {
            fprintf(stderr, "shoal-bench: bad argument '%s'\n", arg);
            bench_usage(stderr);
            return -1;
        }
    }
    if (s->quick) {
        if (!keys_given)
            s->keys = BENCH_QUICK_KEYS;
        if (!runs_given)
            s->runs = 1;
    }
    if (s->selftest && !keys_given)
        s->keys = BENCH_SELFTEST_KEYS;

    if (only) {
        const char *names[BENCH_COUNT];
        for (int b = 0; b < BENCH_COUNT; b++)
            names[b] = bench_infos[b].name;
        if (!bench_parse_list(only, names, BENCH_COUNT, s->selected))
            return -1;
    } else {
        for (int b = 0; b < BENCH_COUNT; b++)
            s->selected[b] = true;
    }

    s->column_enabled[COLUMN_SHOAL] = s->column_enabled[COLUMN_SINGLE] = true;
    if (!anchors)
        anchors = s->quick ? "lmdb" : "all";
    if (strcmp(anchors, "all") == 0) {
        for (int c = COLUMN_LMDB; c <= COLUMN_REDIS; c++)
            s->column_enabled[c] = true;
    } else if (strcmp(anchors, "none") != 0) {
        const char *names[COLUMN_COUNT] = {NULL, "lmdb", "rocksdb", "leveldb", "redis", NULL};
        if (!bench_parse_list(anchors, names, COLUMN_COUNT, s->column_enabled))
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bench_settings s;
    if (bench_parse(argc, argv, &s) != 0)
        return 2;
    bench_watchdog(s.time_limit);
    if (s.selftest)
        return bench_selftest(&s);

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("# shoal-bench: %zu keys of %d bytes, values of %d bytes, batches of %d, %d run%s "
           "(median), %ld cores\n",
           s.keys, BENCH_KEY_SIZE, BENCH_VALUE_SIZE, BENCH_BATCH, s.runs, s.runs > 1 ? "s" : "",
           cores);
    if (s.selected[BENCH_GET_1T] || s.selected[BENCH_GET_2T]) {
        /* The yardstick of the get figures: a Shoal get is two dependent misses (the leaf,
         * then the version), an LMDB get a few more (docs/BENCHMARKS.md, "Gets"). */
        double latency = bench_memory_latency_ns((size_t)256 << 20);
        if (latency > 0)
            printf("# memory latency: %.0f ns per dependent load over 256 MiB\n", latency);
    }
    fflush(stdout);

    uint64_t started = bench_now_ns();
    bench_dataset d;
    if (bench_dataset_make(&d, s.keys, BENCH_SEED) != 0)
        return 1;
    uint32_t *orders[2] = {bench_order_make(d.count, 1), bench_order_make(d.count, 2)};
    bench_results *r = calloc(1, sizeof *r);
    if (!orders[0] || !orders[1] || !r) {
        fprintf(stderr, "# out of memory\n");
        return 1;
    }

    /* Memory first, every run of it: each forked child then starts from a process whose
     * heap holds nothing freed by earlier benchmarks, memory that the child's allocations
     * could reuse without growing its resident set. */
    if (s.selected[BENCH_MEMORY])
        for (int run = 0; run < s.runs; run++)
            bench_memory_run(&s, r, &d, run);
    for (int run = 0; run < s.runs; run++) {
        if (bench_wants_kv(&s))
            for (int c = COLUMN_SHOAL; c < COLUMN_REDIS; c++)
                if (s.column_enabled[c])
                    bench_kv_run(&s, r, (enum bench_column)c, &d, orders, run);
        if (s.selected[BENCH_DISJOINT])
            bench_disjoint_run(r, &d, run);
    }
    if (s.selected[BENCH_SNAPSHOT]) {
        size_t pairs = s.quick ? BENCH_SNAPSHOT_PAIRS / 10 : BENCH_SNAPSHOT_PAIRS;
        for (int c = COLUMN_SHOAL; c < COLUMN_REDIS; c++)
            if (s.column_enabled[c] && bench_engines[c]->snapshot_pairs)
                bench_snapshot_engine(&s, r, (enum bench_column)c, &d, pairs);
    }

    bench_print_results(&s, r);
    bench_print_targets(r);
    printf("# %.1f s\n", (double)(bench_now_ns() - started) / 1e9);
    if (bench_errors)
        printf("# %d benchmark(s) failed; see stderr\n", bench_errors);
    free(orders[0]);
    free(orders[1]);
    free(r);
    bench_dataset_free(&d);
    return bench_errors ? 1 : 0;
}
