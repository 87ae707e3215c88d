/*
 * test_isolation.c -- snapshot isolation under concurrent cross-shard batches
 * (ARCHITECTURE.md invariant 2: a batch that spans shards is seen whole or not at all).
 *
 * Writer threads commit batches that each keep an invariant over keys on many shards of
 * a spread namespace (and one key of a pinned namespace on yet another shard):
 *
 *   counters   every batch sets all COUNTERS keys (and the pinned mirror key) to one
 *              value of its own, so at any snapshot they must all be equal;
 *   transfers  every batch moves an amount between two of ACCOUNTS accounts, read
 *              optimistically and guarded by shoal_batch_require, and appends an audit
 *              record; the sum of the balances never changes;
 *   token      exactly one of TOKENS keys exists: every batch deletes the holder and
 *              creates the next one, so tombstones and new keys meet in one batch.
 *
 * Reader threads take snapshots and check every invariant at each, through point reads
 * of every key AND through an iterator; they also check invariants inside iterators that
 * hold their own implicit snapshot, and re-read a held snapshot later to find the same
 * answers. Every check must pass at every snapshot: a half-applied batch breaks one of
 * them. Loops are bounded by counts and a deadline that only shortens them; failures in
 * threads are counted and asserted by the main thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "test_util.h"

#define COUNTERS 16
#define ACCOUNTS 32
#define TOKENS 16
#define INITIAL_BALANCE 1000

struct world {
    shoal_db *db;
    shoal_ns *spread, *mirror, *audit;
    uint64_t deadline;
    int writer_rounds;
    _Atomic int writers_running;
    _Atomic uint64_t commits, conflicts, snapshots_checked, iterators_checked;
    _Atomic uint64_t transfers_committed;
    _Atomic int failures;
};

static void report(struct world *w, const char *what)
{
    if (atomic_fetch_add(&w->failures, 1) < 10)
        fprintf(stderr, "isolation failure: %s\n", what);
}

static void counter_key(char *out, size_t cap, int i)
{
    snprintf(out, cap, "counter%02d", i);
}

static void account_key(char *out, size_t cap, int i)
{
    snprintf(out, cap, "account%02d", i);
}

static void token_key(char *out, size_t cap, int i)
{
    snprintf(out, cap, "token%02d", i);
}

/* Reads a decimal value; -1 when absent, -2 on error. With seq, also the key's seq, read
 * FIRST: at the latest state the two reads are not atomic, and a write landing between
 * them must make a condition on *seq fail, never pass with a value older than it. */
static long read_number(shoal_ns *ns, const shoal_snapshot *snap, const char *key,
                        uint64_t *seq)
{
    if (seq && shoal_key_seq(ns, snap, key, strlen(key), seq) != 0)
        return -2;
    char buf[32];
    size_t vlen = 0;
    int r = shoal_get_into(ns, snap, key, strlen(key), buf, sizeof buf - 1, &vlen);
    if (r == SHOAL_ENOTFOUND)
        return -1;
    if (r != 0)
        return -2;
    buf[vlen] = 0;
    return strtol(buf, NULL, 10);
}

/* ---- writers --------------------------------------------------------------------------- */

/* Sets every counter and the mirror to one value unique to this writer and round. */
static int write_counters(struct world *w, shoal_batch *b, long value)
{
    char key[32], text[32];
    snprintf(text, sizeof text, "%ld", value);
    shoal_batch_clear(b);
    for (int i = 0; i < COUNTERS; i++) {
        counter_key(key, sizeof key, i);
        if (shoal_batch_put(b, w->spread, key, strlen(key), text, strlen(text)) != 0)
            return -1;
    }
    if (shoal_batch_put(b, w->mirror, "mirror", 6, text, strlen(text)) != 0)
        return -1;
    return shoal_batch_commit(b, NULL, NULL);
}

/* Moves an amount between two accounts read optimistically (at the latest state, or at a
 * snapshot); a condition on each guards against concurrent transfers. */
static int transfer(struct world *w, shoal_batch *b, struct test_rng *r, int writer,
                    uint64_t round)
{
    int a = (int)test_rng_below(r, ACCOUNTS);
    int c = (int)((a + 1 + test_rng_below(r, ACCOUNTS - 1)) % ACCOUNTS);
    char ka[32], kc[32];
    account_key(ka, sizeof ka, a);
    account_key(kc, sizeof kc, c);
    shoal_snapshot *snap = NULL;
    if (test_rng_percent(r, 30) && shoal_snapshot_take(w->db, &snap) != 0)
        return -1;
    uint64_t seq_a = 0, seq_c = 0;
    long bal_a = read_number(w->spread, snap, ka, &seq_a);
    long bal_c = read_number(w->spread, snap, kc, &seq_c);
    shoal_snapshot_release(snap);
    if (bal_a < 0 || bal_c < 0)
        return -1;
    long amount = bal_a == 0 ? 0 : (long)test_rng_below(r, (uint64_t)bal_a + 1);
    char text[32], audit[48];
    shoal_batch_clear(b);
    if (shoal_batch_require(b, w->spread, ka, strlen(ka), seq_a) != 0 ||
        shoal_batch_require(b, w->spread, kc, strlen(kc), seq_c) != 0)
        return -1;
    snprintf(text, sizeof text, "%ld", bal_a - amount);
    if (shoal_batch_put(b, w->spread, ka, strlen(ka), text, strlen(text)) != 0)
        return -1;
    snprintf(text, sizeof text, "%ld", bal_c + amount);
    if (shoal_batch_put(b, w->spread, kc, strlen(kc), text, strlen(text)) != 0)
        return -1;
    snprintf(audit, sizeof audit, "w%d-%08llu", writer, (unsigned long long)round);
    snprintf(text, sizeof text, "%ld", amount);
    if (shoal_batch_put(b, w->audit, audit, strlen(audit), text, strlen(text)) != 0)
        return -1;
    return shoal_batch_commit(b, NULL, NULL);
}

/* Passes the token: deletes whichever token key exists and creates another. The holder
 * is found by reading; a condition on the holder and on the new key makes it safe
 * against the other writers. */
static int pass_token(struct world *w, shoal_batch *b, struct test_rng *r)
{
    char key[32];
    int holder = -1;
    uint64_t holder_seq = 0;
    for (int i = 0; i < TOKENS && holder < 0; i++) {
        token_key(key, sizeof key, i);
        uint64_t seq = 0;
        long v = read_number(w->spread, NULL, key, &seq);
        if (v == -2)
            return -1;
        if (v >= 0) {
            holder = i;
            holder_seq = seq;
        }
    }
    if (holder < 0)
        return SHOAL_ECONFLICT; /* between two passes of another writer: try again */
    int next = (int)((holder + 1 + test_rng_below(r, TOKENS - 1)) % TOKENS);
    char next_key[32];
    token_key(key, sizeof key, holder);
    token_key(next_key, sizeof next_key, next);
    uint64_t next_seq = 0;
    if (shoal_key_seq(w->spread, NULL, next_key, strlen(next_key), &next_seq) != 0)
        return -1;
    shoal_batch_clear(b);
    if (shoal_batch_require(b, w->spread, key, strlen(key), holder_seq) != 0 ||
        shoal_batch_require(b, w->spread, next_key, strlen(next_key), next_seq) != 0 ||
        shoal_batch_delete(b, w->spread, key, strlen(key)) != 0 ||
        shoal_batch_put(b, w->spread, next_key, strlen(next_key), "1", 1) != 0)
        return -1;
    return shoal_batch_commit(b, NULL, NULL);
}

struct writer_arg {
    struct world *w;
    int index;
};

static void *writer_main(void *arg)
{
    struct writer_arg *wa = arg;
    struct world *w = wa->w;
    struct test_rng r;
    test_rng_init(&r, test_seed(0x150) + (uint64_t)wa->index * 7919);
    shoal_batch *b = NULL;
    if (shoal_batch_new(w->db, &b) != 0) {
        report(w, "batch_new");
        atomic_fetch_sub(&w->writers_running, 1);
        return NULL;
    }
    for (int round = 0; round < w->writer_rounds && test_before(w->deadline); round++) {
        int kind = (int)test_rng_below(&r, 3);
        int result;
        if (kind == 0)
            result = write_counters(w, b, (long)wa->index * 1000000 + round);
        else if (kind == 1)
            result = transfer(w, b, &r, wa->index, (uint64_t)round);
        else
            result = pass_token(w, b, &r);
        if (result == 0) {
            atomic_fetch_add(&w->commits, 1);
            if (kind == 1)
                atomic_fetch_add(&w->transfers_committed, 1);
        } else if (result == SHOAL_ECONFLICT) {
            atomic_fetch_add(&w->conflicts, 1);
        } else {
            report(w, "a writer's operation failed");
            break;
        }
    }
    shoal_batch_free(b);
    atomic_fetch_sub(&w->writers_running, 1);
    return NULL;
}

/* ---- readers ---------------------------------------------------------------------------- */

/* What one consistent view shows: the invariants' raw material. */
struct view {
    long counter[COUNTERS], mirror;
    long balance_sum;
    int accounts, tokens;
};

/* Point reads of every key at snap. Returns false on an engine error. */
static bool view_by_gets(struct world *w, const shoal_snapshot *snap, struct view *v)
{
    char key[32];
    memset(v, 0, sizeof *v);
    for (int i = 0; i < COUNTERS; i++) {
        counter_key(key, sizeof key, i);
        v->counter[i] = read_number(w->spread, snap, key, NULL);
        if (v->counter[i] == -2)
            return false;
    }
    v->mirror = read_number(w->mirror, snap, "mirror", NULL);
    for (int i = 0; i < ACCOUNTS; i++) {
        account_key(key, sizeof key, i);
        long bal = read_number(w->spread, snap, key, NULL);
        if (bal == -2)
            return false;
        if (bal >= 0) {
            v->accounts++;
            v->balance_sum += bal;
        }
    }
    for (int i = 0; i < TOKENS; i++) {
        token_key(key, sizeof key, i);
        int e = shoal_exists(w->spread, snap, key, strlen(key));
        if (e < 0)
            return false;
        v->tokens += e;
    }
    return true;
}

/* The same through one iterator over the spread namespace (at snap, or at its own
 * implicit snapshot when snap is NULL) and one point read of the mirror at snap. */
static bool view_by_scan(struct world *w, const shoal_snapshot *snap, bool reverse,
                         struct view *v)
{
    memset(v, 0, sizeof *v);
    for (int i = 0; i < COUNTERS; i++)
        v->counter[i] = -1;
    shoal_iter_options o = {.snap = snap, .reverse = reverse};
    shoal_iter *it = NULL;
    if (shoal_iter_new(w->spread, &o, &it) != 0)
        return false;
    int r;
    while ((r = shoal_iter_next(it)) == 1) {
        size_t klen, vlen;
        const char *key = shoal_iter_key(it, &klen);
        const char *value = shoal_iter_value(it, &vlen);
        char k[40], text[32];
        if (klen >= sizeof k || vlen >= sizeof text) {
            shoal_iter_free(it);
            return false;
        }
        memcpy(k, key, klen);
        k[klen] = 0;
        memcpy(text, value, vlen);
        text[vlen] = 0;
        long number = strtol(text, NULL, 10);
        if (strncmp(k, "counter", 7) == 0) {
            int i = atoi(k + 7);
            if (i >= 0 && i < COUNTERS)
                v->counter[i] = number;
        } else if (strncmp(k, "account", 7) == 0) {
            v->accounts++;
            v->balance_sum += number;
        } else if (strncmp(k, "token", 5) == 0) {
            v->tokens++;
        }
    }
    shoal_iter_free(it);
    if (r != 0)
        return false;
    v->mirror = snap ? read_number(w->mirror, snap, "mirror", NULL) : v->counter[0];
    return true;
}

/* Every invariant on one view; the failure names which. */
static const char *view_broken(const struct view *v)
{
    for (int i = 1; i < COUNTERS; i++)
        if (v->counter[i] != v->counter[0])
            return "counters differ: half a batch is visible";
    if (v->mirror != v->counter[0])
        return "the pinned mirror differs from the spread counters";
    if (v->accounts != ACCOUNTS)
        return "an account is missing";
    if (v->balance_sum != (long)ACCOUNTS * INITIAL_BALANCE)
        return "balances do not add up: half a transfer is visible";
    if (v->tokens != 1)
        return "not exactly one token: half a pass is visible";
    return NULL;
}

static bool views_equal(const struct view *a, const struct view *b)
{
    return memcmp(a->counter, b->counter, sizeof a->counter) == 0 && a->mirror == b->mirror &&
           a->balance_sum == b->balance_sum && a->accounts == b->accounts &&
           a->tokens == b->tokens;
}

static void *reader_main(void *arg)
{
    struct world *w = arg;
    struct test_rng r;
    test_rng_init(&r, (uint64_t)(uintptr_t)&r);
    shoal_snapshot *held = NULL;
    struct view held_view;
    for (int round = 0; round < 1000000; round++) {
        bool last = atomic_load(&w->writers_running) == 0;
        if (!test_before(w->deadline))
            break;
        shoal_snapshot *snap = NULL;
        if (shoal_snapshot_take(w->db, &snap) != 0) {
            report(w, "snapshot_take");
            break;
        }
        struct view by_gets, by_scan;
        if (!view_by_gets(w, snap, &by_gets) || !view_by_scan(w, snap, round & 1, &by_scan)) {
            report(w, "a read failed");
            shoal_snapshot_release(snap);
            break;
        }
        const char *broken = view_broken(&by_gets);
        if (!broken)
            broken = view_broken(&by_scan);
        if (!broken && !views_equal(&by_gets, &by_scan))
            broken = "point reads and a scan at one snapshot disagree";
        if (broken) {
            report(w, broken);
            shoal_snapshot_release(snap);
            break;
        }
        atomic_fetch_add(&w->snapshots_checked, 1);

        /* An iterator with its own snapshot is a consistent view by itself. */
        struct view implicit;
        if (!view_by_scan(w, NULL, round & 2, &implicit)) {
            report(w, "an implicit scan failed");
            shoal_snapshot_release(snap);
            break;
        }
        for (int i = 1; i < COUNTERS && !broken; i++)
            if (implicit.counter[i] != implicit.counter[0])
                broken = "counters differ in an iterator's own snapshot";
        if (!broken && (implicit.balance_sum != (long)ACCOUNTS * INITIAL_BALANCE ||
                        implicit.tokens != 1 || implicit.accounts != ACCOUNTS))
            broken = "an invariant fails in an iterator's own snapshot";
        if (broken) {
            report(w, broken);
            shoal_snapshot_release(snap);
            break;
        }
        atomic_fetch_add(&w->iterators_checked, 1);

        /* Keep one snapshot for a while; reading it again later gives the same view. */
        if (!held || test_rng_percent(&r, 10)) {
            if (held) {
                struct view again;
                if (!view_by_gets(w, held, &again) || !views_equal(&again, &held_view)) {
                    report(w, "a held snapshot changed");
                    shoal_snapshot_release(snap);
                    break;
                }
                shoal_snapshot_release(held);
            }
            held = snap;
            held_view = by_gets;
        } else {
            shoal_snapshot_release(snap);
        }
        if (last)
            break; /* one full check after the writers finished */
    }
    shoal_snapshot_release(held);
    return NULL;
}

/* ---- the test ---------------------------------------------------------------------------- */

static void seed_world(struct world *w)
{
    char key[32], text[32];
    snprintf(text, sizeof text, "%d", INITIAL_BALANCE);
    shoal_batch *b = NULL;
    assert_ok(shoal_batch_new(w->db, &b));
    for (int i = 0; i < COUNTERS; i++) {
        counter_key(key, sizeof key, i);
        assert_ok(shoal_batch_put(b, w->spread, key, strlen(key), "0", 1));
    }
    assert_ok(shoal_batch_put(b, w->mirror, "mirror", 6, "0", 1));
    for (int i = 0; i < ACCOUNTS; i++) {
        account_key(key, sizeof key, i);
        assert_ok(shoal_batch_put(b, w->spread, key, strlen(key), text, strlen(text)));
    }
    assert_ok(shoal_batch_put(b, w->spread, "token00", 7, "1", 1));
    assert_ok(shoal_batch_commit(b, NULL, NULL));
    shoal_batch_free(b);
}

/* The invariants only mean something if their keys really are on different shards. */
static void check_spread(struct world *w)
{
    bool shard_used[SHOAL_MAX_SHARDS] = {false};
    unsigned used = 0;
    char key[32];
    for (int i = 0; i < COUNTERS; i++) {
        counter_key(key, sizeof key, i);
        unsigned s = ns_route(w->spread->ns, key, strlen(key));
        used += !shard_used[s];
        shard_used[s] = true;
    }
    assert_true(used >= 6);
    for (int i = 0; i < ACCOUNTS; i++) {
        account_key(key, sizeof key, i);
        unsigned s = ns_route(w->spread->ns, key, strlen(key));
        used += !shard_used[s];
        shard_used[s] = true;
    }
    assert_true(used >= 12);
}

static void run_isolation(int writers, int readers, int rounds)
{
    struct world w = {0};
    w.db = test_open(16, 0);
    w.spread = test_ns(w.db, "spread", SHOAL_PLACE_SPREAD, 0);
    w.mirror = test_ns(w.db, "mirror", SHOAL_PLACE_PINNED, 0);
    w.audit = test_ns(w.db, "audit", SHOAL_PLACE_SPREAD, 0);
    w.writer_rounds = rounds;
    w.deadline = test_deadline(SHOAL_TEST_SCALE(20.0, 150.0));
    seed_world(&w);
    check_spread(&w);
    atomic_store(&w.writers_running, writers);

    pthread_t ids[16];
    struct writer_arg args[8];
    for (int i = 0; i < writers; i++) {
        args[i] = (struct writer_arg){.w = &w, .index = i};
        assert_int_equal(pthread_create(&ids[i], NULL, writer_main, &args[i]), 0);
    }
    for (int i = 0; i < readers; i++)
        assert_int_equal(pthread_create(&ids[writers + i], NULL, reader_main, &w), 0);
    for (int i = 0; i < writers + readers; i++)
        pthread_join(ids[i], NULL);
    print_message("%d writers, %d readers: %llu commits, %llu conflicts, %llu snapshots and "
                  "%llu implicit scans checked\n", writers, readers,
                  (unsigned long long)atomic_load(&w.commits),
                  (unsigned long long)atomic_load(&w.conflicts),
                  (unsigned long long)atomic_load(&w.snapshots_checked),
                  (unsigned long long)atomic_load(&w.iterators_checked));
    assert_int_equal(atomic_load(&w.failures), 0);
    assert_true(atomic_load(&w.commits) > 0);
    assert_true(atomic_load(&w.snapshots_checked) > 0);

    /* Quiet: the invariants hold at the latest state, and the audit has one record per
     * committed transfer. */
    struct view v;
    assert_true(view_by_gets(&w, NULL, &v));
    assert_null(view_broken(&v));
    assert_int_equal(test_count_keys(w.audit, NULL), atomic_load(&w.transfers_committed));
    shoal_db_stats st;
    assert_ok(shoal_stats(w.db, &st));
    assert_int_equal(st.snapshots_open, 0);
    shoal_ns_close(w.spread);
    shoal_ns_close(w.mirror);
    shoal_ns_close(w.audit);
    shoal_close(w.db);
}

static void test_one_writer_two_readers(void **state)
{
    (void)state;
    run_isolation(1, 2, SHOAL_TEST_SCALE(20000, 10000));
}

static void test_three_writers_three_readers(void **state)
{
    (void)state;
    run_isolation(3, 3, SHOAL_TEST_SCALE(10000, 5000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_writer_two_readers),
        cmocka_unit_test(test_three_writers_three_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
