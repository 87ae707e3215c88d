/*
 * test_pages.c -- the page mappings and the reserve of huge pages faulted in ahead
 * (src/core/pages.c): what a caller gets from the reserve is exactly what a fresh mapping
 * would be (aligned, zeroed, writable), the reserve serves only while a database is open,
 * keeps at most PAGES_RESERVE_SPARES, drops them when idle, and gives everything back when
 * the last database closes.
 *
 * The reserve's thread fills it in the background, so the tests wait for it with a bounded
 * poll (a count and a deadline); the deadline only ends the wait, and the assertion after
 * it says what was expected.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/pages.h"
#include "test_util.h"

static struct pages_reserve_stats test_stats(void)
{
    struct pages_reserve_stats s;
    pages_reserve_stats(&s);
    return s;
}

/* Waits until the reserve holds `spares` (bounded by a count and 20 s). */
static void test_wait_spares(unsigned spares)
{
    uint64_t deadline = test_deadline(20);
    for (int i = 0; i < 20000 && test_before(deadline) && test_stats().spares != spares; i++)
        test_sleep_ms(1);
    assert_int_equal(test_stats().spares, spares);
}

/* Takes a huge page once the reserve holds a spare, and returns it; asserts that it came
 * from the reserve. A spare can be dropped as idle between the wait and the take on a
 * machine that stalls this thread for PAGES_RESERVE_IDLE_MS; then the take only misses,
 * and it is tried again (a bounded count). */
static char *test_take_from_reserve(void)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        test_wait_spares(PAGES_RESERVE_SPARES);
        unsigned long long taken = test_stats().taken;
        char *p = pages_map(PAGES_HUGE_BYTES, true);
        assert_non_null(p);
        if (test_stats().taken == taken + 1)
            return p;
        pages_unmap(p, PAGES_HUGE_BYTES);
    }
    fail_msg("no huge page came from the reserve in 50 attempts");
    return NULL;
}

/* A huge page as the callers use it: aligned, all zero, and ours to write. */
static void test_check_fresh(char *p)
{
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % PAGES_HUGE_BYTES, 0);
    static const char zeros[4096];
    for (size_t off = 0; off < PAGES_HUGE_BYTES; off += sizeof zeros)
        assert_memory_equal(p + off, zeros, sizeof zeros);
    memset(p, 0xa5, PAGES_HUGE_BYTES);
    assert_int_equal((unsigned char)p[PAGES_HUGE_BYTES - 1], 0xa5);
}

static void test_no_database_no_reserve(void **state)
{
    (void)state;
    struct pages_reserve_stats before = test_stats();
    char *p = pages_map_aligned(PAGES_HUGE_BYTES, true);
    test_check_fresh(p);
    pages_unmap(p, PAGES_HUGE_BYTES);
    struct pages_reserve_stats after = test_stats();
    /* Nobody joined: the request mapped its own page and started nothing. */
    assert_int_equal(after.taken, before.taken);
    assert_int_equal(after.missed, before.missed);
    assert_int_equal(after.prefaulted, before.prefaulted);
    assert_int_equal(after.spares, 0);
}

static void test_reserve_serves_huge_pages(void **state)
{
    (void)state;
    pages_reserve_join();
    /* The first request finds the reserve empty and starts its thread. */
    struct pages_reserve_stats s0 = test_stats();
    char *first = pages_map(PAGES_HUGE_BYTES, true);
    test_check_fresh(first);
    assert_int_equal(test_stats().missed, s0.missed + 1);
    test_wait_spares(PAGES_RESERVE_SPARES);

    /* Now a request is served from the reserve, and the thread replaces what it gave. */
    struct pages_reserve_stats s1 = test_stats();
    char *taken = test_take_from_reserve();
    test_check_fresh(taken);
    test_wait_spares(PAGES_RESERVE_SPARES);
    assert_true(test_stats().prefaulted >= s1.prefaulted + 1);

    /* Other requests never touch it: small pages, several huge pages at once. */
    struct pages_reserve_stats s2 = test_stats();
    char *small = pages_map_aligned(PAGES_HUGE_BYTES, false);
    char *two = pages_map(2 * PAGES_HUGE_BYTES, true);
    assert_non_null(small);
    assert_non_null(two);
    assert_int_equal((uintptr_t)two % PAGES_HUGE_BYTES, 0);
    struct pages_reserve_stats s3 = test_stats();
    assert_int_equal(s3.taken, s2.taken);
    assert_int_equal(s3.missed, s2.missed);

    /* More takes than spares: every caller still gets a fresh page. */
    char *many[PAGES_RESERVE_SPARES + 3];
    for (size_t i = 0; i < sizeof many / sizeof many[0]; i++) {
        many[i] = pages_map(PAGES_HUGE_BYTES, true);
        test_check_fresh(many[i]);
    }
    for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
        pages_unmap(many[i], PAGES_HUGE_BYTES);
    assert_true(test_stats().spares <= PAGES_RESERVE_SPARES);

    pages_unmap(first, PAGES_HUGE_BYTES);
    pages_unmap(taken, PAGES_HUGE_BYTES);
    pages_unmap(small, PAGES_HUGE_BYTES);
    pages_unmap(two, 2 * PAGES_HUGE_BYTES);
    pages_reserve_leave();
    /* The last database gone, the reserve holds nothing and serves nothing. */
    assert_int_equal(test_stats().spares, 0);
    struct pages_reserve_stats s4 = test_stats();
    char *after = pages_map(PAGES_HUGE_BYTES, true);
    test_check_fresh(after);
    pages_unmap(after, PAGES_HUGE_BYTES);
    assert_int_equal(test_stats().taken, s4.taken);
    assert_int_equal(test_stats().spares, 0);
}

static void test_reserve_outlives_all_but_the_last(void **state)
{
    (void)state;
    pages_reserve_join();
    pages_reserve_join();
    pages_unmap(pages_map(PAGES_HUGE_BYTES, true), PAGES_HUGE_BYTES);
    test_wait_spares(PAGES_RESERVE_SPARES);
    pages_reserve_leave();
    /* One user left: the thread still serves and refills. */
    struct pages_reserve_stats s = test_stats();
    char *p = test_take_from_reserve();
    test_check_fresh(p);
    pages_unmap(p, PAGES_HUGE_BYTES);
    test_wait_spares(PAGES_RESERVE_SPARES);
    assert_true(test_stats().prefaulted > s.prefaulted);
    pages_reserve_leave();
    assert_int_equal(test_stats().spares, 0);

    /* Joined again, it starts over. */
    pages_reserve_join();
    pages_unmap(pages_map(PAGES_HUGE_BYTES, true), PAGES_HUGE_BYTES);
    test_wait_spares(PAGES_RESERVE_SPARES);
    pages_reserve_leave();
    assert_int_equal(test_stats().spares, 0);
}

/* Spares nobody takes are unmapped after PAGES_RESERVE_IDLE_MS, and the next request
 * brings the reserve back. */
static void test_idle_spares_are_dropped(void **state)
{
    (void)state;
    pages_reserve_join();
    pages_unmap(pages_map(PAGES_HUGE_BYTES, true), PAGES_HUGE_BYTES);
    test_wait_spares(PAGES_RESERVE_SPARES);
    unsigned long long dropped = test_stats().dropped;
    uint64_t deadline = test_deadline(20);
    for (int i = 0; i < 20000 && test_before(deadline) && test_stats().dropped == dropped; i++)
        test_sleep_ms(1);
    assert_int_equal(test_stats().dropped, dropped + 1);
    assert_int_equal(test_stats().spares, 0);
    /* Idle, it stays empty; a request (a miss) starts it again. */
    unsigned long long missed = test_stats().missed;
    char *p = pages_map(PAGES_HUGE_BYTES, true);
    test_check_fresh(p);
    pages_unmap(p, PAGES_HUGE_BYTES);
    assert_int_equal(test_stats().missed, missed + 1);
    test_wait_spares(PAGES_RESERVE_SPARES);
    pages_reserve_leave();
    assert_int_equal(test_stats().spares, 0);
}

/* Through the engine: a database that grows over many segments stores and returns every
 * value, draws its huge pages from the reserve, and closing it empties the reserve. */
static void test_database_uses_the_reserve(void **state)
{
    (void)state;
    struct pages_reserve_stats before = test_stats();
    shoal_db *db = test_open(1, 0);
    shoal_ns *ns = test_ns(db, "grow", SHOAL_PLACE_PINNED, 0);
    enum { KEYS = SHOAL_TEST_SCALE(60000, 20000), VALUE = 1000 };
    char value[VALUE], key[32];
    for (unsigned i = 0; i < KEYS; i++) {
        test_fill_pattern(value, sizeof value, i);
        int klen = snprintf(key, sizeof key, "key%08u", i);
        assert_ok(shoal_put(ns, key, (size_t)klen, value, sizeof value, NULL));
        if (i % 1000 == 0)
            test_sleep_ms(1); /* give the reserve's thread a moment, as real load would */
    }
    for (unsigned i = 0; i < KEYS; i += 7) {
        test_fill_pattern(value, sizeof value, i);
        int klen = snprintf(key, sizeof key, "key%08u", i);
        test_expect(ns, NULL, key, (size_t)klen, value, sizeof value);
    }
    struct pages_reserve_stats during = test_stats();
    /* Tens of MiB of values: the shard mapped many huge pages, some from the reserve. */
    assert_true(during.taken + during.missed >= before.taken + before.missed + 8);
    assert_true(during.taken > before.taken);
    shoal_ns_close(ns);
    assert_ok(shoal_close(db));
    assert_int_equal(test_stats().spares, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_database_no_reserve),
        cmocka_unit_test(test_reserve_serves_huge_pages),
        cmocka_unit_test(test_reserve_outlives_all_but_the_last),
        cmocka_unit_test(test_idle_spares_are_dropped),
        cmocka_unit_test(test_database_uses_the_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
