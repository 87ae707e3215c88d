/*
 * test_util.h -- helpers shared by the engine core's unit tests (test_kv.c, test_batch.c,
 * test_iter.c, test_snapshot.c, test_tenant.c, test_model.c, test_isolation.c,
 * test_bad_input.c, test_log_record.c, test_hist.c).
 *
 * What is here and why:
 *   - a deterministic random generator, so that every failure reproduces from its seed
 *     (SHOAL_TEST_SEED in the environment replaces the default seed of a test program);
 *   - SHOAL_TEST_SCALE, which shrinks iteration counts in sanitizer builds (they run ten
 *     to fifty times slower) so that every program stays within its time budget;
 *   - a deadline helper, so that loops that run threads are bounded by a count AND by
 *     time; time only ever shortens a loop, it never decides whether an assertion holds;
 *   - assert_code(), which prints the names of the codes (EQUOTA, not -7) when a call
 *     returns something other than what the test expected;
 *   - short ways to open a database and a namespace and to check a key's value;
 *   - test_in_child(), which runs a check in a child process, for the calls whose failure
 *     is undefined behaviour that the sanitizer build turns into an abort: the abort then
 *     fails one test instead of ending the program.
 *
 * Everything is static inline so that each test program carries its own copy and unused
 * helpers cost nothing. Include it after <cmocka.h>: the helpers assert through cmocka.
 */
#ifndef SHOAL_TESTS_TEST_UTIL_H
#define SHOAL_TESTS_TEST_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shoal.h"

/* Sanitizer builds define SHOAL_SANITIZED (CMakeLists.txt); counts shrink there. */
#ifdef SHOAL_SANITIZED
#define SHOAL_TEST_SCALE(normal, sanitized) (sanitized)
#else
#define SHOAL_TEST_SCALE(normal, sanitized) (normal)
#endif

/* Fails the test, naming both codes, when expr does not return expected. */
#define assert_code(expr, expected)                                                        \
    do {                                                                                   \
        int test_result_ = (int)(expr);                                                    \
        int test_expected_ = (int)(expected);                                              \
        if (test_result_ != test_expected_) {                                              \
            print_error("%s:%d: %s returned %d (%s), expected %d (%s)\n", __FILE__,        \
                        __LINE__, #expr, test_result_, shoal_error_name(test_result_),     \
                        test_expected_, shoal_error_name(test_expected_));                 \
            fail();                                                                        \
        }                                                                                  \
    } while (0)

#define assert_ok(expr) assert_code(expr, 0)

/* ---- deterministic random numbers (xorshift64*) ------------------------------------- */

struct test_rng {
    uint64_t state;
};

/* The seed a program uses: SHOAL_TEST_SEED if set, else the given default. */
static inline uint64_t test_seed(uint64_t fallback)
{
    const char *env = getenv("SHOAL_TEST_SEED");
    if (env && *env)
        return strtoull(env, NULL, 0);
    return fallback;
}

static inline void test_rng_init(struct test_rng *r, uint64_t seed)
{
    r->state = seed ? seed : 0x9E3779B97F4A7C15ull;
}

static inline uint64_t test_rng_next(struct test_rng *r)
{
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return r->state * 2685821657736338717ull;
}

/* A number in [0, n); n > 0. */
static inline uint64_t test_rng_below(struct test_rng *r, uint64_t n)
{
    return test_rng_next(r) % n;
}

/* True with probability percent / 100. */
static inline bool test_rng_percent(struct test_rng *r, unsigned percent)
{
    return test_rng_below(r, 100) < percent;
}

static inline void test_rng_fill(struct test_rng *r, void *buf, size_t len)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(test_rng_next(r) >> 56);
}

/* Fills buf with len bytes that depend only on seed: values can then be described by a
 * (seed, length) pair and regenerated to check them. */
static inline void test_fill_pattern(void *buf, size_t len, uint64_t seed)
{
    struct test_rng r;
    test_rng_init(&r, seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull);
    uint8_t *p = buf;
    size_t i = 0;
    while (i + 8 <= len) {
        uint64_t x = test_rng_next(&r);
        memcpy(p + i, &x, 8);
        i += 8;
    }
    if (i < len) {
        uint64_t x = test_rng_next(&r);
        memcpy(p + i, &x, len - i);
    }
}

/* ---- time, only to bound loops --------------------------------------------------------- */

static inline uint64_t test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A deadline seconds from now (scaled up in sanitizer builds by the caller's choice). */
static inline uint64_t test_deadline(double seconds)
{
    return test_now_ns() + (uint64_t)(seconds * 1e9);
}

static inline bool test_before(uint64_t deadline)
{
    return test_now_ns() < deadline;
}

static inline void test_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ---- checks in a child process ------------------------------------------------------- */

/* Runs fn(ctx) in a forked child and returns what became of it: 0 when fn returned 0, a
 * positive exit status when it returned something else or a sanitizer stopped it, 128 +
 * the signal when it died of one, -1 when the child could not be run. fn must not use the
 * cmocka assertions (they would jump back into the child's copy of the test runner); it
 * returns non-zero instead. The child leaves with _exit, so nothing is flushed twice. */
static inline int test_in_child(int (*fn)(void *ctx), void *ctx)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(fn(ctx) == 0 ? 0 : 1);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* ---- databases, namespaces, values ------------------------------------------------------ */

/* Opens a memory database with the given shard count and snapshot slots (0: default). */
static inline shoal_db *test_open(uint64_t shards, uint64_t slots)
{
    shoal_options *opts = NULL;
    assert_ok(shoal_options_new(&opts));
    if (shards)
        assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, shards));
    if (slots)
        assert_ok(shoal_options_set(opts, SHOAL_OPT_SNAPSHOT_SLOTS, slots));
    shoal_db *db = NULL;
    assert_ok(shoal_open(NULL, opts, &db));
    assert_non_null(db);
    shoal_options_free(opts);
    return db;
}

/* Opens (creating) a kv namespace with the given placement and tenant. */
static inline shoal_ns *test_ns(shoal_db *db, const char *name, shoal_placement placement,
                                uint32_t tenant)
{
    shoal_ns_config cfg = {.kind = SHOAL_KIND_KV, .placement = placement, .tenant = tenant};
    shoal_ns *ns = NULL;
    assert_ok(shoal_ns_open(db, name, &cfg, &ns));
    assert_non_null(ns);
    return ns;
}

/* Puts a NUL-terminated key and value (the NUL not included). */
static inline void test_put(shoal_ns *ns, const char *key, const char *value)
{
    assert_ok(shoal_put(ns, key, strlen(key), value, strlen(value), NULL));
}

/* Asserts that key holds exactly value (len bytes) at snap (NULL: latest). */
static inline void test_expect(shoal_ns *ns, const shoal_snapshot *snap, const void *key,
                               size_t klen, const void *value, size_t vlen)
{
    void *got = NULL;
    size_t got_len = 0;
    assert_ok(shoal_get(ns, snap, key, klen, &got, &got_len));
    assert_non_null(got);
    assert_int_equal(got_len, vlen);
    if (vlen)
        assert_memory_equal(got, value, vlen);
    shoal_free(got);
}

static inline void test_expect_str(shoal_ns *ns, const shoal_snapshot *snap, const char *key,
                                   const char *value)
{
    test_expect(ns, snap, key, strlen(key), value, strlen(value));
}

/* Asserts that key is absent at snap (NULL: latest), through get and exists. */
static inline void test_expect_absent(shoal_ns *ns, const shoal_snapshot *snap,
                                      const void *key, size_t klen)
{
    void *got = (void *)1;
    size_t got_len = 12345;
    assert_code(shoal_get(ns, snap, key, klen, &got, &got_len), SHOAL_ENOTFOUND);
    assert_int_equal(shoal_exists(ns, snap, key, klen), 0);
}

static inline void test_expect_absent_str(shoal_ns *ns, const shoal_snapshot *snap,
                                          const char *key)
{
    test_expect_absent(ns, snap, key, strlen(key));
}

/* Live keys and bytes of a namespace, as shoal_ns_info_get reports them. */
static inline void test_ns_counts(shoal_ns *ns, uint64_t *keys, uint64_t *bytes)
{
    shoal_ns_info info;
    assert_ok(shoal_ns_info_get(ns, &info));
    *keys = info.keys;
    *bytes = info.bytes;
}

/* Counts the keys an iterator over the whole namespace sees at snap (NULL: latest). */
static inline size_t test_count_keys(shoal_ns *ns, const shoal_snapshot *snap)
{
    shoal_iter_options o = {.snap = snap};
    shoal_iter *it = NULL;
    assert_ok(shoal_iter_new(ns, &o, &it));
    size_t n = 0;
    int r;
    while ((r = shoal_iter_next(it)) == 1)
        n++;
    assert_int_equal(r, 0);
    shoal_iter_free(it);
    return n;
}

/* memcmp order with the shorter key first on a tie: the engine's key order. */
static inline int test_key_compare(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

#endif
