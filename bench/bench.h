/*
 * bench.h -- what the parts of shoal-bench share: the dataset, the clock, process and
 * directory helpers, and the table of engines (Shoal and its anchors) that bench_kv.c
 * drives through one interface.
 *
 * Why one interface. Every figure shoal-bench prints is a ratio between Shoal and an anchor
 * measured in the same run, so both sides must do exactly the same work: the same keys in
 * the same order, the same batch size, the same thread count, the same way of consuming a
 * value. Putting each engine behind the same handful of calls makes that true by
 * construction; the driver owns the timing, and an engine only does the work.
 *
 * Invariants:
 *   1. An engine's calls never time themselves and never print to stdout; diagnostics go
 *      to stderr, prefixed with '#', so stdout carries only BENCH lines.
 *   2. A read call checks every value it reads (length and first byte) and counts what is
 *      missing or wrong, so a broken engine shows up as an error, never as a fast figure.
 *   3. A read call consumes each value in the engine's cheapest way (a pointer when the
 *      engine hands one out, its own copy when that is all its API offers); what it does
 *      with the value is the same small checksum everywhere.
 *   4. Every call returns 0 or -1; -1 has already said why on stderr.
 *
 * How it is tested: `shoal-bench --selftest` runs every engine on a small dataset and checks
 * the results exactly (each key found with its value, the scan in key order and complete);
 * it is a ctest test (bench/CMakeLists.txt).
 */
#ifndef SHOAL_BENCH_H
#define SHOAL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_KEY_SIZE 16
#define BENCH_VALUE_SIZE 100

/* The keys and values every engine stores: key i is keys[i * BENCH_KEY_SIZE ...], its value
 * values[i * BENCH_VALUE_SIZE ...]. Both are functions of (seed, i) (bench_key_make,
 * bench_value_make), so keys are distinct by construction and a read loop can make key i
 * and the expected first byte of its value without loading either from the dataset. */
typedef struct bench_dataset {
    size_t count;
    uint64_t seed;
    uint8_t *keys;
    uint8_t *values;
} bench_dataset;

/* Makes count keys and values from seed (bench_key_make, bench_value_make). Returns 0, or
 * -1 (said on stderr) when out of memory. */
int bench_dataset_make(bench_dataset *d, size_t count, uint64_t seed);
void bench_dataset_free(bench_dataset *d);
/* A random permutation of 0 .. count-1 drawn from seed's stream (Fisher-Yates), or NULL
 * (said on stderr) when out of memory. The caller frees it. */
uint32_t *bench_order_make(size_t count, uint64_t seed);

/* The splitmix64 finalizer: a bijection on 64-bit integers. */
static inline uint64_t bench_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Word w of the random stream of seed: splitmix64's w-th output. Key i takes word 14i and
 * its value the 13 words after it (BENCH_VALUE_SIZE bytes, the last one cut short). */
#define BENCH_WORDS_PER_KEY 14u
static inline uint64_t bench_word(uint64_t seed, uint64_t w)
{
    return bench_mix(seed + (w + 1) * 0x9E3779B97F4A7C15ull);
}

/* Key i of the dataset made from seed: a bijective mix of i (big-endian, so the keys of
 * different i differ in their first 8 bytes), then a random word. */
static inline void bench_key_make(uint64_t seed, size_t i, uint8_t out[BENCH_KEY_SIZE])
{
    uint64_t words[2] = {bench_mix(seed ^ (uint64_t)i),
                         bench_word(seed, (uint64_t)i * BENCH_WORDS_PER_KEY)};
    for (int w = 0; w < 2; w++)
        for (int b = 0; b < 8; b++)
            out[w * 8 + b] = (uint8_t)(words[w] >> (56 - 8 * b));
}

/* Value i of the dataset made from seed: the 13 words after key i's, little-endian. */
static inline void bench_value_make(uint64_t seed, size_t i, uint8_t out[BENCH_VALUE_SIZE])
{
    uint64_t word = 0;
    for (size_t j = 0; j < BENCH_VALUE_SIZE; j++) {
        if (j % 8 == 0)
            word = bench_word(seed, (uint64_t)i * BENCH_WORDS_PER_KEY + 1 + j / 8);
        out[j] = (uint8_t)(word >> (8 * (j % 8)));
    }
}

/* The first byte of value i (bench_value_make), made without reading the value. */
static inline uint8_t bench_value_first(uint64_t seed, size_t i)
{
    return (uint8_t)bench_word(seed, (uint64_t)i * BENCH_WORDS_PER_KEY + 1);
}

static inline const uint8_t *bench_key(const bench_dataset *d, size_t i)
{
    return d->keys + i * BENCH_KEY_SIZE;
}

static inline const uint8_t *bench_value(const bench_dataset *d, size_t i)
{
    return d->values + i * BENCH_VALUE_SIZE;
}

/* What a read pass found: keys read with the expected value, keys missing or with a wrong
 * value, and a checksum of what was read (which keeps the compiler from dropping reads and
 * lets two passes be compared). */
typedef struct bench_reads {
    uint64_t good;
    uint64_t bad;
    uint64_t checksum;
} bench_reads;

/* Folds one value into a read pass (invariants 2 and 3). expected may be NULL (a scan does
 * not know which key comes next); then only the length is checked. */
/* Counts one value read; expected_first is the first byte it must have (bench_value_first),
 * or -1 when any value of the right length will do. */
static inline void bench_reads_add(bench_reads *r, const void *value, size_t vlen,
                                   int expected_first)
{
    const uint8_t *bytes = value;
    if (vlen != BENCH_VALUE_SIZE || (expected_first >= 0 && bytes[0] != expected_first)) {
        r->bad++;
        return;
    }
    r->good++;
    r->checksum += (uint64_t)bytes[0] + ((uint64_t)bytes[vlen - 1] << 8);
}

/* One engine. open creates an empty database (in dir when the engine needs one; dir is an
 * empty directory that the driver removes afterwards) sized for expected_keys. fill writes
 * keys [first, first + count) of the dataset in atomic batches of batch keys. settle runs
 * before the read benchmarks, untimed (an LSM compacts; others may leave it NULL). get reads
 * the keys named by order[0 .. count) and may be called from several threads at once, each
 * with its own order. scan visits every key in key order, calling bench_reads_add for each
 * and checking the order when check_order is set. snapshot_pairs takes and releases
 * pairs snapshots (NULL when the engine has none to compare). close frees everything. */
typedef struct bench_engine {
    const char *name;
    bool needs_dir;
    int (*open)(const char *dir, size_t expected_keys, void **handle);
    int (*fill)(void *handle, const bench_dataset *d, size_t first, size_t count, size_t batch);
    int (*settle)(void *handle);
    int (*get)(void *handle, const bench_dataset *d, const uint32_t *order, size_t count,
               bench_reads *r);
    int (*scan)(void *handle, bool check_order, bench_reads *r);
    int (*snapshot_pairs)(void *handle, size_t pairs);
    void (*close)(void *handle);
} bench_engine;

extern const bench_engine engine_shoal;
extern const bench_engine anchor_lmdb;
extern const bench_engine anchor_rocksdb;
extern const bench_engine anchor_leveldb;

/* Shoal-only measurements (engine_shoal.c).
 * engine_shoal_memory forks a child that opens a memory database, fills the whole dataset
 * in batches of batch keys and reports the growth of its resident set per key.
 * engine_shoal_disjoint writes per_thread keys with single shoal_put calls into each of two
 * pinned namespaces placed on different shards, with one thread per namespace (threads 2)
 * or one thread doing both in turn (threads 1), and reports operations per second. */
int engine_shoal_memory(const bench_dataset *d, size_t batch, double *bytes_per_key);
int engine_shoal_disjoint(const bench_dataset *d, int threads, size_t per_thread,
                          double *ops_per_second);

/* Redis (anchor_redis.c): starts redis-server on a free port of 127.0.0.1, fills it with the
 * dataset through pipelined SETs (batch commands in flight), reports the growth of its
 * resident set per key and stops it. Returns 1 (not an error) when redis-server is not
 * installed. */
int anchor_redis_memory(const bench_dataset *d, size_t batch, double *bytes_per_key);

/* Helpers (bench_util.c). */

/* Monotonic time in nanoseconds. */
uint64_t bench_now_ns(void);
/* Nanoseconds per dependent load over a random cycle through `bytes` of memory (on huge
 * pages where the kernel gives them): this machine's memory latency, the unit a random
 * read of any engine costs a few of. Negative when out of memory. */
double bench_memory_latency_ns(size_t bytes);
/* Resident set size of process pid (0: this process) in bytes from /proc/<pid>/statm, or 0
 * when it cannot be read. */
uint64_t bench_rss_bytes(pid_t pid);
/* Creates a fresh directory /tmp/shoal-bench-XXXXXX and writes its path into buf (at least
 * 64 bytes). Returns 0 or -1. */
int bench_temp_dir(char *buf, size_t cap);
/* Removes a directory tree made by bench_temp_dir. Returns 0 or -1. */
int bench_remove_tree(const char *dir);
/* The child process the watchdog must stop if the time limit strikes (a redis-server), or
 * 0. Set by anchor_redis.c around the server's life. */
void bench_set_child(pid_t pid);
/* Arms a watchdog: after seconds, the program stops its child, says so and exits 3. */
void bench_watchdog(unsigned seconds);

#endif /* SHOAL_BENCH_H */
