/*
 * test_model.c -- the engine against a plain model under long random sequences of
 * operations: puts, deletes, batches (with conditions and, single-threaded, deletes of a
 * whole namespace), snapshots, point reads by every read path, and scans with random
 * bounds and prefixes, forward and reverse.
 *
 * The model. Each namespace has a fixed universe of keys, sorted once, so that the model
 * is an array of slots, one per (namespace, key): present or not, the value (a seed and a
 * length from which its bytes are regenerated) and the seq of the key's latest write.
 * Taking a snapshot copies the array; a read at a snapshot is checked against its copy.
 * A scan's expected result is the universe walked in order with the bounds applied
 * literally. Values carry their seed in their first 8 bytes, so a value read anywhere can
 * be checked for integrity even when the reader does not know which write made it.
 *
 * Single-threaded, everything is exact: the latest seq moves by one per commit that
 * changes something (and not at all otherwise), a batch's seq is the one its keys report,
 * a snapshot's seq is the latest seq when it was taken.
 *
 * Multi-threaded (2, 4 and 8 threads), the namespaces are shared but each thread owns the
 * keys that begin with its own byte, so each thread's model stays exact for its keys while
 * the others write to the same shards and indexes. A thread's scans take its prefix (and
 * random bounds inside it) and must match its model exactly; it also scans whole
 * namespaces at a snapshot, checking strict key order, value integrity, and that a second
 * scan at the same snapshot after more writes sees exactly the same entries. At the end
 * every thread's model is checked against the engine.
 *
 * Thread loops are bounded by a count and by a deadline; the deadline only shortens a
 * run. Checks never use cmocka's assertions inside threads: a failed check records its
 * message and stops its thread, and the main thread asserts that none failed. Set
 * SHOAL_TEST_SEED to replay a run.
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

#include "test_util.h"

#define NS_COUNT 3
#define MAX_KLEN 24
#define MAX_SNAPS 6
#define MAX_BATCH 20
#define BIG_VALUE 40000 /* above the segment allocator's small limit: the large path */

/* ---- keys ---------------------------------------------------------------------------- */

struct universe {
    size_t count;
    uint8_t (*keys)[MAX_KLEN];
    size_t *klen;
};

static int universe_compare(const void *a, const void *b, void *ctx)
{
    const struct universe *u = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    return test_key_compare(u->keys[i], u->klen[i], u->keys[j], u->klen[j]);
}

/* Builds count distinct keys, sorted. Half are drawn from a tiny alphabet (0x00, 0x01,
 * 'a', 'b', 0xfe, 0xff) so that keys share prefixes and prefix scans and 0xff carries
 * matter; the rest are random bytes. With owner >= 0 every key starts with that byte. */
static void universe_build(struct universe *u, size_t count, int owner, struct test_rng *r)
{
    static const uint8_t alphabet[] = {0x00, 0x01, 'a', 'b', 0xfe, 0xff};
    uint8_t (*keys)[MAX_KLEN] = calloc(count * 2, MAX_KLEN);
    size_t *klen = calloc(count * 2, sizeof *klen);
    size_t *order = calloc(count * 2, sizeof *order);
    assert_non_null(keys);
    assert_non_null(klen);
    assert_non_null(order);
    size_t made = 0;
    size_t start = owner >= 0 ? 1 : 0;
    for (size_t attempt = 0; made < count && attempt < count * 100; attempt++) {
        uint8_t key[MAX_KLEN];
        size_t len;
        if (owner >= 0)
            key[0] = (uint8_t)owner;
        if (test_rng_percent(r, 50)) {
            len = start + 1 + test_rng_below(r, 6);
            for (size_t i = start; i < len; i++)
                key[i] = alphabet[test_rng_below(r, sizeof alphabet)];
        } else {
            len = start + 1 + test_rng_below(r, MAX_KLEN - start);
            test_rng_fill(r, key + start, len - start);
        }
        bool duplicate = false;
        for (size_t i = 0; i < made && !duplicate; i++)
            duplicate = klen[i] == len && memcmp(keys[i], key, len) == 0;
        if (duplicate)
            continue;
        memcpy(keys[made], key, len);
        klen[made] = len;
        order[made] = made;
        made++;
    }
    assert_int_equal(made, count);
    u->keys = keys;
    u->klen = klen;
    u->count = count;
    qsort_r(order, count, sizeof *order, universe_compare, u);
    u->keys = calloc(count, MAX_KLEN);
    u->klen = calloc(count, sizeof *u->klen);
    assert_non_null(u->keys);
    assert_non_null(u->klen);
    for (size_t i = 0; i < count; i++) {
        memcpy(u->keys[i], keys[order[i]], MAX_KLEN);
        u->klen[i] = klen[order[i]];
    }
    free(keys);
    free(klen);
    free(order);
}

static void universe_free(struct universe *u)
{
    free(u->keys);
    free(u->klen);
}

/* ---- values -------------------------------------------------------------------------- */

/* A value's first 8 bytes are its seed; the rest follows from the seed. */
static void make_value(uint8_t *buf, uint32_t vlen, uint64_t seed)
{
    memcpy(buf, &seed, vlen < 8 ? vlen : 8);
    if (vlen > 8)
        test_fill_pattern(buf + 8, vlen - 8, seed);
}

/* ---- the model ---------------------------------------------------------------------------- */

struct slot {
    uint64_t seq;  /* the latest write to the key (put, or delete that removed it); 0: none */
    uint64_t seed; /* value */
    uint32_t vlen;
    bool present;
};

struct snap {
    shoal_snapshot *handle;
    struct slot *model;
    uint64_t seq;
};

struct model_ctx {
    /* Set up by the caller. */
    shoal_db *db;
    shoal_ns **ns;
    struct universe u;
    bool exact_seq;  /* single-threaded: the latest seq is known exactly */
    int owner;       /* multi-threaded: this thread's first key byte, else -1 */
    uint64_t ops;    /* operations to run */
    uint64_t deadline;
    uint64_t seed;
    int thread;
    /* State. */
    struct test_rng r;
    struct slot *model; /* NS_COUNT * u.count */
    struct snap snaps[MAX_SNAPS];
    int snap_count;
    uint64_t seq; /* exact_seq: the latest seq */
    uint64_t next_seed;
    uint8_t *value, *scratch;
    uint64_t done;
    bool failed;
    /* What ran, for the log. */
    uint64_t puts, deletes, batches, clears, conflicts, spurious_conflicts, reads, scans,
        snapshots;
    uint64_t scanned;
};

#define CHECK(c, cond, ...)                                                                \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            model_fail(c, __LINE__, #cond);                                                \
            fprintf(stderr, "    " __VA_ARGS__);                                           \
            fprintf(stderr, "\n");                                                         \
            return;                                                                        \
        }                                                                                  \
    } while (0)

#define CHECK_FAILED(c)                                                                    \
    do {                                                                                   \
        if ((c)->failed)                                                                   \
            return;                                                                        \
    } while (0)

static void model_fail(struct model_ctx *c, int line, const char *what)
{
    if (!c->failed)
        fprintf(stderr, "model check failed: thread %d, operation %llu, seed %llu, line %d: "
                        "%s\n", c->thread, (unsigned long long)c->done,
                (unsigned long long)c->seed, line, what);
    c->failed = true;
}

static struct slot *slot_of(struct slot *model, const struct model_ctx *c, int ns, size_t k)
{
    return &model[(size_t)ns * c->u.count + k];
}

/* ---- point reads --------------------------------------------------------------------------- */

/* Checks one key through one of the five read paths against the model m (the latest
 * model or a snapshot's copy). */
static void check_point(struct model_ctx *c, int ns, size_t k, const struct slot *m,
                        const shoal_snapshot *snap, unsigned path)
{
    shoal_ns *h = c->ns[ns];
    const uint8_t *key = c->u.keys[k];
    size_t klen = c->u.klen[k];
    if (m->present)
        make_value(c->value, m->vlen, m->seed);
    c->reads++;
    switch (path % 5) {
    case 0: {
        void *got = NULL;
        size_t vlen = 0;
        int r = shoal_get(h, snap, key, klen, &got, &vlen);
        if (!m->present) {
            CHECK(c, r == SHOAL_ENOTFOUND, "get of an absent key: %s", shoal_error_name(r));
            return;
        }
        CHECK(c, r == 0, "get: %s", shoal_error_name(r));
        bool same = vlen == m->vlen && memcmp(got, c->value, vlen) == 0;
        shoal_free(got);
        CHECK(c, same, "get: value differs (length %zu, expected %u)", vlen, m->vlen);
        return;
    }
    case 1: {
        /* A capacity that is sometimes too small: SHOAL_ERANGE with the length. */
        size_t cap = test_rng_percent(&c->r, 20) ? test_rng_below(&c->r, 40) : BIG_VALUE;
        size_t vlen = 0;
        int r = shoal_get_into(h, snap, key, klen, c->scratch, cap, &vlen);
        if (!m->present) {
            CHECK(c, r == SHOAL_ENOTFOUND, "get_into of an absent key: %s",
                  shoal_error_name(r));
            return;
        }
        CHECK(c, vlen == m->vlen, "get_into: length %zu, expected %u", vlen, m->vlen);
        if (m->vlen > cap) {
            CHECK(c, r == SHOAL_ERANGE, "get_into, small buffer: %s", shoal_error_name(r));
            return;
        }
        CHECK(c, r == 0, "get_into: %s", shoal_error_name(r));
        CHECK(c, memcmp(c->scratch, c->value, vlen) == 0, "get_into: value differs");
        return;
    }
    case 2: {
        /* get_into with a buffer of exactly the value's length. */
        size_t cap = m->present ? m->vlen : 0;
        size_t vlen = 0;
        int r = shoal_get_into(h, snap, key, klen, c->scratch, cap, &vlen);
        if (!m->present) {
            CHECK(c, r == SHOAL_ENOTFOUND, "get_into: %s", shoal_error_name(r));
            return;
        }
        CHECK(c, r == 0 && vlen == m->vlen && memcmp(c->scratch, c->value, vlen) == 0,
              "get_into, exact buffer: %s", shoal_error_name(r));
        return;
    }
    case 3: {
        int r = shoal_exists(h, snap, key, klen);
        CHECK(c, r == (m->present ? 1 : 0), "exists: %d, expected %d", r, m->present);
        return;
    }
    default: {
        uint64_t seq = UINT64_MAX;
        int r = shoal_key_seq(h, snap, key, klen, &seq);
        CHECK(c, r == 0, "key_seq: %s", shoal_error_name(r));
        if (m->present)
            CHECK(c, seq == m->seq, "key_seq of a present key: %llu, expected %llu",
                  (unsigned long long)seq, (unsigned long long)m->seq);
        else /* a delete leaves a record while a snapshot may need it, then none */
            CHECK(c, seq == 0 || seq == m->seq, "key_seq of an absent key: %llu, expected "
                  "0 or %llu", (unsigned long long)seq, (unsigned long long)m->seq);
        return;
    }
    }
}

/* get_with: the callback compares in place, while the value is pinned. */
struct with_ctx {
    const uint8_t *expected;
    uint32_t vlen;
    int calls;
    bool same;
};

static int compare_in_place(void *ctx, const void *value, size_t vlen)
{
    struct with_ctx *w = ctx;
    w->calls++;
    w->same = vlen == w->vlen && memcmp(value, w->expected, vlen) == 0;
    return 0;
}

static void check_get_with(struct model_ctx *c, int ns, size_t k, const struct slot *m,
                           const shoal_snapshot *snap)
{
    if (m->present)
        make_value(c->value, m->vlen, m->seed);
    struct with_ctx w = {.expected = c->value, .vlen = m->vlen};
    int r = shoal_get_with(c->ns[ns], snap, c->u.keys[k], c->u.klen[k], compare_in_place, &w);
    if (!m->present) {
        CHECK(c, r == SHOAL_ENOTFOUND && w.calls == 0, "get_with of an absent key: %s",
              shoal_error_name(r));
        return;
    }
    CHECK(c, r == 0 && w.calls == 1 && w.same, "get_with: %s, %d calls, same %d",
          shoal_error_name(r), w.calls, w.same);
}

/* Picks the latest state (-1) or one of the open snapshots. */
static int pick_view(struct model_ctx *c)
{
    if (c->snap_count == 0 || test_rng_percent(&c->r, 50))
        return -1;
    return (int)test_rng_below(&c->r, (uint64_t)c->snap_count);
}

static void op_read(struct model_ctx *c)
{
    int ns = (int)test_rng_below(&c->r, NS_COUNT);
    size_t k = test_rng_below(&c->r, c->u.count);
    int view = pick_view(c);
    struct slot *model = view < 0 ? c->model : c->snaps[view].model;
    const shoal_snapshot *snap = view < 0 ? NULL : c->snaps[view].handle;
    unsigned path = (unsigned)test_rng_below(&c->r, 6);
    if (path == 5)
        check_get_with(c, ns, k, slot_of(model, c, ns, k), snap);
    else
        check_point(c, ns, k, slot_of(model, c, ns, k), snap, path);
}

/* ---- writes ------------------------------------------------------------------------------ */

static uint32_t random_vlen(struct model_ctx *c)
{
    uint64_t p = test_rng_below(&c->r, 1000);
    if (p < 30)
        return 0;
    if (p < 700)
        return (uint32_t)(1 + test_rng_below(&c->r, 32));
    if (p < 990)
        return (uint32_t)(33 + test_rng_below(&c->r, 1000));
    return (uint32_t)(1000 + test_rng_below(&c->r, BIG_VALUE - 1000));
}

/* The seq of a write this thread just made to one of its own keys. */
static uint64_t own_key_seq(struct model_ctx *c, int ns, size_t k)
{
    uint64_t seq = 0;
    int r = shoal_key_seq(c->ns[ns], NULL, c->u.keys[k], c->u.klen[k], &seq);
    if (r != 0) {
        model_fail(c, __LINE__, "key_seq after a write");
        fprintf(stderr, "    %s\n", shoal_error_name(r));
    }
    return seq;
}

static void op_put(struct model_ctx *c)
{
    int ns = (int)test_rng_below(&c->r, NS_COUNT);
    size_t k = test_rng_below(&c->r, c->u.count);
    uint32_t vlen = random_vlen(c);
    uint64_t seed = ++c->next_seed;
    make_value(c->value, vlen, seed);
    int r = shoal_put(c->ns[ns], c->u.keys[k], c->u.klen[k], c->value, vlen, NULL);
    CHECK(c, r == 0, "put: %s", shoal_error_name(r));
    struct slot *s = slot_of(c->model, c, ns, k);
    uint64_t seq;
    if (c->exact_seq) {
        seq = ++c->seq;
        CHECK(c, shoal_last_seq(c->db) == seq, "put: latest seq %llu, expected %llu",
              (unsigned long long)shoal_last_seq(c->db), (unsigned long long)seq);
    }
    seq = own_key_seq(c, ns, k);
    CHECK_FAILED(c);
    CHECK(c, seq > s->seq, "put: key seq %llu not after %llu", (unsigned long long)seq,
          (unsigned long long)s->seq);
    if (c->exact_seq)
        CHECK(c, seq == c->seq, "put: key seq %llu, expected %llu", (unsigned long long)seq,
              (unsigned long long)c->seq);
    *s = (struct slot){.seq = seq, .seed = seed, .vlen = vlen, .present = true};
    c->puts++;
}

static void op_delete(struct model_ctx *c)
{
    int ns = (int)test_rng_below(&c->r, NS_COUNT);
    size_t k = test_rng_below(&c->r, c->u.count);
    struct slot *s = slot_of(c->model, c, ns, k);
    int r = shoal_delete(c->ns[ns], c->u.keys[k], c->u.klen[k], NULL);
    c->deletes++;
    if (!s->present) {
        CHECK(c, r == SHOAL_ENOTFOUND, "delete of an absent key: %s", shoal_error_name(r));
        if (c->exact_seq)
            CHECK(c, shoal_last_seq(c->db) == c->seq, "a delete that changed nothing "
                  "moved the latest seq from %llu to %llu", (unsigned long long)c->seq,
                  (unsigned long long)shoal_last_seq(c->db));
        return;
    }
    CHECK(c, r == 0, "delete: %s", shoal_error_name(r));
    uint64_t seq = own_key_seq(c, ns, k);
    CHECK_FAILED(c);
    if (c->exact_seq) {
        c->seq++;
        CHECK(c, shoal_last_seq(c->db) == c->seq, "delete: latest seq");
        CHECK(c, seq == 0 || seq == c->seq, "delete: key seq %llu", (unsigned long long)seq);
        seq = c->seq;
    }
    /* Multi-threaded, a delete that left no record (no snapshot open anywhere) reports 0,
     * and only 0 can be reported for the key from now on: the model keeps that 0. */
    *s = (struct slot){.seq = seq, .present = false};
}

struct batch_op {
    int type; /* 0 put, 1 delete, 2 delete every key of ns (single thread only) */
    int ns;
    size_t k;
    uint64_t seed;
    uint32_t vlen;
};

static void op_batch(struct model_ctx *c, shoal_batch *b)
{
    shoal_batch_clear(b);
    struct batch_op ops[MAX_BATCH];
    size_t n = 1 + test_rng_below(&c->r, MAX_BATCH);
    /* Repeated keys are likely: draw keys from a small window of the universe. */
    size_t window = 1 + test_rng_below(&c->r, c->u.count);
    size_t base = test_rng_below(&c->r, c->u.count - window + 1);
    for (size_t i = 0; i < n; i++) {
        struct batch_op *op = &ops[i];
        op->type = test_rng_percent(&c->r, 30) ? 1 : 0;
        /* Rarely, or the namespaces would stay nearly empty; threads share them. */
        if (c->owner < 0 && test_rng_below(&c->r, 2000) == 0)
            op->type = 2;
        op->ns = (int)test_rng_below(&c->r, NS_COUNT);
        op->k = base + test_rng_below(&c->r, window);
        const uint8_t *key = c->u.keys[op->k];
        size_t klen = c->u.klen[op->k];
        int r;
        if (op->type == 0) {
            op->vlen = random_vlen(c);
            op->seed = ++c->next_seed;
            make_value(c->value, op->vlen, op->seed);
            r = shoal_batch_put(b, c->ns[op->ns], key, klen, c->value, op->vlen);
        } else if (op->type == 1) {
            r = shoal_batch_delete(b, c->ns[op->ns], key, klen);
        } else {
            r = shoal_batch_delete_all(b, c->ns[op->ns]);
        }
        CHECK(c, r == 0, "batch add: %s", shoal_error_name(r));
    }
    CHECK(c, shoal_batch_count(b) == n, "batch count %zu, expected %zu", shoal_batch_count(b), n);

    /* Conditions, sometimes: the seq key_seq reports (which must agree with the model),
     * or a stale one. */
    bool stale = false, absent_required = false;
    if (test_rng_percent(&c->r, 30)) {
        int requires = 1 + (int)test_rng_below(&c->r, 2);
        for (int i = 0; i < requires; i++) {
            int ns = (int)test_rng_below(&c->r, NS_COUNT);
            size_t k = test_rng_below(&c->r, c->u.count);
            struct slot *s = slot_of(c->model, c, ns, k);
            uint64_t seq = UINT64_MAX;
            int r = shoal_key_seq(c->ns[ns], NULL, c->u.keys[k], c->u.klen[k], &seq);
            CHECK(c, r == 0, "key_seq: %s", shoal_error_name(r));
            if (s->present)
                CHECK(c, seq == s->seq, "key_seq %llu, model %llu", (unsigned long long)seq,
                      (unsigned long long)s->seq);
            else
                CHECK(c, seq == 0 || seq == s->seq, "key_seq of absent %llu, model %llu",
                      (unsigned long long)seq, (unsigned long long)s->seq);
            if (test_rng_percent(&c->r, 20)) {
                seq += 1 + test_rng_below(&c->r, 3);
                stale = true;
            } else if (!s->present && seq != 0) {
                absent_required = true;
            }
            r = shoal_batch_require(b, c->ns[ns], c->u.keys[k], c->u.klen[k], seq);
            CHECK(c, r == 0, "batch require: %s", shoal_error_name(r));
        }
    }

    bool changed = false;
    uint64_t last_before = shoal_last_seq(c->db);
    uint64_t seq = 12345;
    int r = shoal_batch_commit(b, NULL, &seq);
    c->batches++;
    if (stale || (r == SHOAL_ECONFLICT && absent_required && !c->exact_seq)) {
        CHECK(c, r == SHOAL_ECONFLICT, "commit with a stale condition: %s",
              shoal_error_name(r));
        /* Not stale, yet refused: the condition named a deleted key by its delete's seq,
         * and another thread's write on that shard reclaimed the delete's record between
         * our key_seq and the commit, so the key's seq became 0. Nobody wrote the key; the
         * engine reports a conflict all the same. Counted and shown in the log. */
        if (!stale)
            c->spurious_conflicts++;
        c->conflicts++;
        if (c->exact_seq)
            CHECK(c, shoal_last_seq(c->db) == c->seq, "a refused batch moved the seq");
        return; /* the model is unchanged; reads later will show whether the engine is */
    }
    CHECK(c, r == 0, "commit: %s", shoal_error_name(r));
    for (size_t i = 0; i < n; i++) {
        if (ops[i].type == 2) {
            c->clears++;
            for (size_t k = 0; k < c->u.count; k++) {
                struct slot *s = slot_of(c->model, c, ops[i].ns, k);
                if (s->present) {
                    *s = (struct slot){.seq = UINT64_MAX, .present = false};
                    changed = true;
                }
            }
            continue;
        }
        struct slot *s = slot_of(c->model, c, ops[i].ns, ops[i].k);
        if (ops[i].type == 0) {
            *s = (struct slot){.seq = UINT64_MAX, .seed = ops[i].seed, .vlen = ops[i].vlen,
                               .present = true};
            changed = true;
        } else if (s->present) {
            *s = (struct slot){.seq = UINT64_MAX, .present = false};
            changed = true;
        }
    }
    if (c->exact_seq) {
        if (changed) {
            c->seq++;
            CHECK(c, seq == c->seq, "batch seq %llu, expected %llu", (unsigned long long)seq,
                  (unsigned long long)c->seq);
        } else {
            CHECK(c, seq == c->seq && shoal_last_seq(c->db) == c->seq,
                  "a batch that changed nothing: seq %llu, latest %llu, expected %llu",
                  (unsigned long long)seq, (unsigned long long)shoal_last_seq(c->db),
                  (unsigned long long)c->seq);
        }
    } else if (changed) {
        CHECK(c, seq > last_before, "batch seq %llu not after %llu", (unsigned long long)seq,
              (unsigned long long)last_before);
    }
    /* The slots written get the commit's seq (a whole-namespace delete: its keys'). */
    for (size_t i = 0; i < n; i++) {
        size_t first = ops[i].type == 2 ? 0 : ops[i].k;
        size_t end = ops[i].type == 2 ? c->u.count : ops[i].k + 1;
        for (size_t k = first; k < end; k++) {
            struct slot *s = slot_of(c->model, c, ops[i].ns, k);
            if (s->seq == UINT64_MAX)
                s->seq = seq;
        }
    }
}

/* ---- snapshots ------------------------------------------------------------------------- */

static void op_take(struct model_ctx *c)
{
    if (c->snap_count == MAX_SNAPS)
        return;
    struct snap *s = &c->snaps[c->snap_count];
    int r = shoal_snapshot_take(c->db, &s->handle);
    CHECK(c, r == 0, "snapshot_take: %s", shoal_error_name(r));
    s->seq = shoal_snapshot_seq(s->handle);
    if (c->exact_seq)
        CHECK(c, s->seq == c->seq, "snapshot seq %llu, expected %llu",
              (unsigned long long)s->seq, (unsigned long long)c->seq);
    size_t bytes = (size_t)NS_COUNT * c->u.count * sizeof(struct slot);
    s->model = malloc(bytes);
    CHECK(c, s->model != NULL, "out of memory");
    memcpy(s->model, c->model, bytes);
    c->snap_count++;
    c->snapshots++;
}

static void release_snapshot(struct model_ctx *c, int i)
{
    shoal_snapshot_release(c->snaps[i].handle);
    free(c->snaps[i].model);
    c->snaps[i] = c->snaps[--c->snap_count];
}

static void op_release(struct model_ctx *c)
{
    if (c->snap_count > 0)
        release_snapshot(c, (int)test_rng_below(&c->r, (uint64_t)c->snap_count));
}

/* ---- scans --------------------------------------------------------------------------- */

struct bounds {
    uint8_t start[MAX_KLEN + 2], end[MAX_KLEN + 2], prefix[MAX_KLEN + 2];
    size_t start_len, end_len, prefix_len;
    bool has_start, has_end, has_prefix;
};

/* A random bound: a key of the universe, a prefix of one, one with a byte appended, or
 * a few random bytes. In multi-threaded runs the bound begins with the owner's byte. */
static size_t random_bound(struct model_ctx *c, uint8_t *out)
{
    size_t k = test_rng_below(&c->r, c->u.count);
    size_t len = c->u.klen[k];
    memcpy(out, c->u.keys[k], len);
    size_t min = c->owner >= 0 ? 2 : 1;
    switch (test_rng_below(&c->r, 4)) {
    case 0:
        break;
    case 1:
        if (len > min)
            len = min + test_rng_below(&c->r, len - min + 1);
        break;
    case 2:
        out[len++] = (uint8_t)test_rng_below(&c->r, 256);
        break;
    default:
        len = c->owner >= 0 ? 1 : 0;
        for (size_t i = 0, n = 1 + test_rng_below(&c->r, 3); i < n; i++)
            out[len++] = (uint8_t)test_rng_below(&c->r, 256);
        break;
    }
    if (c->owner >= 0)
        out[0] = (uint8_t)c->owner;
    return len;
}

static bool in_bounds(const struct bounds *b, const uint8_t *key, size_t klen)
{
    if (b->has_start && test_key_compare(key, klen, b->start, b->start_len) < 0)
        return false;
    if (b->has_end && test_key_compare(key, klen, b->end, b->end_len) >= 0)
        return false;
    if (b->has_prefix &&
        (klen < b->prefix_len || memcmp(key, b->prefix, b->prefix_len) != 0))
        return false;
    return true;
}

static void op_scan(struct model_ctx *c)
{
    int ns = (int)test_rng_below(&c->r, NS_COUNT);
    int view = pick_view(c);
    struct slot *model = view < 0 ? c->model : c->snaps[view].model;
    struct bounds b = {0};
    unsigned mode = (unsigned)test_rng_below(&c->r, 7);
    b.has_start = mode == 1 || mode == 3 || mode == 5;
    b.has_end = mode == 2 || mode == 3 || mode == 6;
    b.has_prefix = mode >= 4 || c->owner >= 0;
    if (b.has_start)
        b.start_len = random_bound(c, b.start);
    if (b.has_end)
        b.end_len = random_bound(c, b.end);
    if (b.has_prefix) {
        if (mode >= 4) {
            b.prefix_len = random_bound(c, b.prefix);
        } else {
            b.prefix[0] = (uint8_t)c->owner;
            b.prefix_len = 1;
        }
    }
    bool reverse = test_rng_percent(&c->r, 50);
    shoal_iter_options o = {.start = b.has_start ? b.start : NULL,
                            .start_len = b.start_len,
                            .end = b.has_end ? b.end : NULL,
                            .end_len = b.end_len,
                            .prefix = b.has_prefix ? b.prefix : NULL,
                            .prefix_len = b.prefix_len,
                            .reverse = reverse,
                            .snap = view < 0 ? NULL : c->snaps[view].handle};
    shoal_iter *it = NULL;
    int r = shoal_iter_new(c->ns[ns], &o, &it);
    CHECK(c, r == 0, "iter_new: %s", shoal_error_name(r));
    c->scans++;
    size_t n = c->u.count;
    for (size_t step = 0; step < n; step++) {
        size_t k = reverse ? n - 1 - step : step;
        const struct slot *s = slot_of(model, c, ns, k);
        if (!s->present || !in_bounds(&b, c->u.keys[k], c->u.klen[k]))
            continue;
        r = shoal_iter_next(it);
        if (r != 1)
            shoal_iter_free(it);
        CHECK(c, r == 1, "scan ended early (%s) at key %zu, mode %u, reverse %d",
              shoal_error_name(r), k, mode, reverse);
        size_t klen = 0, vlen = 0;
        const uint8_t *key = shoal_iter_key(it, &klen);
        const uint8_t *value = shoal_iter_value(it, &vlen);
        make_value(c->value, s->vlen, s->seed);
        bool same_key = klen == c->u.klen[k] && memcmp(key, c->u.keys[k], klen) == 0;
        bool same_value = vlen == s->vlen && memcmp(value, c->value, vlen) == 0;
        if (!same_key || !same_value)
            shoal_iter_free(it);
        CHECK(c, same_key, "scan: key %zu missing or out of order (mode %u, reverse %d)", k,
              mode, reverse);
        CHECK(c, same_value, "scan: value of key %zu differs", k);
        c->scanned++;
    }
    r = shoal_iter_next(it);
    shoal_iter_free(it);
    CHECK(c, r == 0, "scan went on past the model (%d), mode %u, reverse %d", r, mode,
          reverse);
}

/* Every key of every namespace, at the latest state and at every open snapshot; the
 * namespaces' counts against the model (single-threaded: they are exact). */
static void verify_all(struct model_ctx *c)
{
    for (int view = -1; view < c->snap_count; view++) {
        struct slot *model = view < 0 ? c->model : c->snaps[view].model;
        const shoal_snapshot *snap = view < 0 ? NULL : c->snaps[view].handle;
        for (int ns = 0; ns < NS_COUNT; ns++) {
            for (size_t k = 0; k < c->u.count; k++) {
                check_point(c, ns, k, slot_of(model, c, ns, k), snap, k % 5);
                CHECK_FAILED(c);
            }
        }
    }
    if (c->owner < 0) {
        for (int ns = 0; ns < NS_COUNT; ns++) {
            uint64_t keys = 0, bytes = 0;
            for (size_t k = 0; k < c->u.count; k++) {
                const struct slot *s = slot_of(c->model, c, ns, k);
                if (s->present) {
                    keys++;
                    bytes += c->u.klen[k] + s->vlen;
                }
            }
            shoal_ns_info info;
            int r = shoal_ns_info_get(c->ns[ns], &info);
            CHECK(c, r == 0, "ns_info: %s", shoal_error_name(r));
            CHECK(c, info.keys == keys && info.bytes == bytes,
                  "namespace %d: %llu keys and %llu bytes, model %llu and %llu", ns,
                  (unsigned long long)info.keys, (unsigned long long)info.bytes,
                  (unsigned long long)keys, (unsigned long long)bytes);
        }
    }
}

/* ---- whole-namespace scans in multi-threaded runs -------------------------------------- */

/* Scans a whole shared namespace at a snapshot: strictly increasing keys, values intact,
 * and the same entries when scanned again after this thread's own writes. Returns a
 * digest of what it saw (count and hash), or marks the context failed. */
static void scan_shared(struct model_ctx *c, int ns, const shoal_snapshot *snap,
                        uint64_t *count, uint64_t *hash)
{
    shoal_iter_options o = {.snap = snap, .reverse = test_rng_percent(&c->r, 50)};
    shoal_iter *it = NULL;
    int r = shoal_iter_new(c->ns[ns], &o, &it);
    CHECK(c, r == 0, "iter_new: %s", shoal_error_name(r));
    uint8_t last[MAX_KLEN + 1];
    size_t last_len = 0;
    bool first = true;
    *count = 0;
    *hash = 0;
    while ((r = shoal_iter_next(it)) == 1) {
        size_t klen, vlen;
        const uint8_t *key = shoal_iter_key(it, &klen);
        const uint8_t *value = shoal_iter_value(it, &vlen);
        bool ordered = first || (o.reverse ? test_key_compare(key, klen, last, last_len) < 0
                                           : test_key_compare(key, klen, last, last_len) > 0);
        bool intact = true;
        if (vlen >= 8) {
            uint64_t seed;
            memcpy(&seed, value, 8);
            make_value(c->scratch, (uint32_t)vlen, seed);
            intact = memcmp(c->scratch, value, vlen) == 0;
        }
        if (!ordered || !intact || klen > MAX_KLEN)
            shoal_iter_free(it);
        CHECK(c, klen <= MAX_KLEN, "shared scan: a key of %zu bytes", klen);
        CHECK(c, ordered, "shared scan: keys out of order");
        CHECK(c, intact, "shared scan: a value is damaged");
        memcpy(last, key, klen);
        last_len = klen;
        first = false;
        (*count)++;
        /* A digest of each entry, summed: the same for a forward and a reverse scan. */
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < klen; i++)
            h = (h ^ key[i]) * 0x100000001b3ull;
        h = (h ^ vlen) * 0x100000001b3ull;
        for (size_t i = 0; i < vlen && i < 8; i++)
            h = (h ^ value[i]) * 0x100000001b3ull;
        *hash += h;
    }
    shoal_iter_free(it);
    CHECK(c, r == 0, "shared scan: %s", shoal_error_name(r));
    c->scanned += *count;
}

static void op_shared_scan(struct model_ctx *c, shoal_batch *b)
{
    shoal_snapshot *snap = NULL;
    int r = shoal_snapshot_take(c->db, &snap);
    CHECK(c, r == 0, "snapshot_take: %s", shoal_error_name(r));
    int ns = (int)test_rng_below(&c->r, NS_COUNT);
    uint64_t count1 = 0, hash1 = 0, count2 = 0, hash2 = 0;
    scan_shared(c, ns, snap, &count1, &hash1);
    /* A few writes of our own in between; the others keep writing too. */
    for (int i = 0; i < 5 && !c->failed; i++)
        test_rng_percent(&c->r, 50) ? op_put(c) : op_batch(c, b);
    if (!c->failed)
        scan_shared(c, ns, snap, &count2, &hash2);
    shoal_snapshot_release(snap);
    CHECK_FAILED(c);
    CHECK(c, count1 == count2 && hash1 == hash2, "two scans at one snapshot differ: %llu "
          "and %llu entries", (unsigned long long)count1, (unsigned long long)count2);
}

/* ---- the driver ------------------------------------------------------------------------ */

static void model_init(struct model_ctx *c)
{
    test_rng_init(&c->r, c->seed);
    universe_build(&c->u, c->u.count, c->owner, &c->r);
    c->model = calloc((size_t)NS_COUNT * c->u.count, sizeof *c->model);
    c->value = malloc(BIG_VALUE + 64);
    c->scratch = malloc(BIG_VALUE + 64);
    assert_non_null(c->model);
    assert_non_null(c->value);
    assert_non_null(c->scratch);
    c->next_seed = (uint64_t)(c->thread + 1) << 40;
}

static void model_free(struct model_ctx *c)
{
    while (c->snap_count > 0)
        release_snapshot(c, c->snap_count - 1);
    free(c->model);
    free(c->value);
    free(c->scratch);
    universe_free(&c->u);
}

/* Runs c->ops random operations (or until the deadline). */
static void model_run(struct model_ctx *c)
{
    shoal_batch *b = NULL;
    if (shoal_batch_new(c->db, &b) != 0) {
        model_fail(c, __LINE__, "batch_new");
        return;
    }
    for (c->done = 0; c->done < c->ops && !c->failed; c->done++) {
        if ((c->done & 255) == 0 && !test_before(c->deadline))
            break;
        uint64_t p = test_rng_below(&c->r, 1000);
        if (p < 300)
            op_put(c);
        else if (p < 420)
            op_delete(c);
        else if (p < 520)
            op_batch(c, b);
        else if (p < 940)
            op_read(c);
        else if (p < 960)
            op_take(c);
        else if (p < 980)
            op_release(c);
        else if (p < 997 || c->owner < 0)
            op_scan(c);
        else
            op_shared_scan(c, b);
        if (!c->failed && c->done % 20000 == 19999)
            verify_all(c);
    }
    if (!c->failed)
        verify_all(c);
    shoal_batch_free(b);
}

static void log_run(const char *what, const struct model_ctx *c)
{
    print_message("%s: %llu ops (%llu puts, %llu deletes, %llu batches with %llu conflicts "
                  "and %llu whole-namespace deletes, %llu reads, %llu scans over %llu entries, %llu snapshots)\n",
                  what, (unsigned long long)c->done, (unsigned long long)c->puts,
                  (unsigned long long)c->deletes, (unsigned long long)c->batches,
                  (unsigned long long)c->conflicts, (unsigned long long)c->clears, (unsigned long long)c->reads,
                  (unsigned long long)c->scans, (unsigned long long)c->scanned,
                  (unsigned long long)c->snapshots);
}

static shoal_ns **open_namespaces(shoal_db *db)
{
    static const shoal_placement placement[NS_COUNT] = {
        SHOAL_PLACE_PINNED, SHOAL_PLACE_SPREAD, SHOAL_PLACE_SPREAD};
    static const char *names[NS_COUNT] = {"pinned", "spread", "spread2"};
    shoal_ns **ns = calloc(NS_COUNT, sizeof *ns);
    assert_non_null(ns);
    for (int i = 0; i < NS_COUNT; i++)
        ns[i] = test_ns(db, names[i], placement[i], 0);
    return ns;
}

static void close_namespaces(shoal_ns **ns)
{
    for (int i = 0; i < NS_COUNT; i++)
        shoal_ns_close(ns[i]);
    free(ns);
}

static void run_single(uint64_t shards, uint64_t ops, uint64_t seed)
{
    shoal_db *db = test_open(shards, 0);
    struct model_ctx c = {0};
    c.db = db;
    c.ns = open_namespaces(db);
    c.u.count = 400;
    c.exact_seq = true;
    c.owner = -1;
    c.ops = ops;
    c.deadline = test_deadline(SHOAL_TEST_SCALE(40.0, 200.0));
    c.seed = test_seed(seed);
    model_init(&c);
    model_run(&c);
    char what[64];
    snprintf(what, sizeof what, "single thread, %llu shards", (unsigned long long)shards);
    log_run(what, &c);
    bool failed = c.failed;
    if (!failed) {
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        assert_int_equal(st.seq, c.seq);
        assert_int_equal(st.snapshots_open, (uint64_t)c.snap_count);
    }
    model_free(&c);
    close_namespaces(c.ns);
    shoal_close(db);
    assert_false(failed);
}

static void test_single_thread_8_shards(void **state)
{
    (void)state;
    run_single(8, SHOAL_TEST_SCALE(200000, 60000), 0x5EED0001);
}

static void test_single_thread_1_and_64_shards(void **state)
{
    (void)state;
    run_single(1, SHOAL_TEST_SCALE(50000, 15000), 0x5EED0002);
    run_single(64, SHOAL_TEST_SCALE(50000, 15000), 0x5EED0003);
}

/* ---- multi-threaded runs ------------------------------------------------------------------ */

static void *thread_main(void *arg)
{
    struct model_ctx *c = arg;
    model_run(c);
    return NULL;
}

static void run_threads(int threads, uint64_t ops_per_thread, uint64_t seed)
{
    shoal_db *db = test_open(16, 0);
    shoal_ns **ns = open_namespaces(db);
    struct model_ctx *ctx = calloc((size_t)threads, sizeof *ctx);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    assert_non_null(ctx);
    assert_non_null(ids);
    uint64_t deadline = test_deadline(SHOAL_TEST_SCALE(15.0, 100.0));
    for (int t = 0; t < threads; t++) {
        struct model_ctx *c = &ctx[t];
        c->db = db;
        c->ns = ns;
        c->u.count = 150;
        c->exact_seq = false;
        c->owner = 0x20 + t * 0x1d; /* spread over the byte range, clear of 0x00 and 0xff */
        c->ops = ops_per_thread;
        c->deadline = deadline;
        c->seed = test_seed(seed) + (uint64_t)t * 0x9E3779B97F4A7C15ull;
        c->thread = t;
        model_init(c);
    }
    for (int t = 0; t < threads; t++)
        assert_int_equal(pthread_create(&ids[t], NULL, thread_main, &ctx[t]), 0);
    bool failed = false;
    uint64_t total_ops = 0, spurious = 0;
    struct model_ctx sum = {0};
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        failed |= ctx[t].failed;
        total_ops += ctx[t].done;
        spurious += ctx[t].spurious_conflicts;
        sum.done += ctx[t].done;
        sum.puts += ctx[t].puts;
        sum.deletes += ctx[t].deletes;
        sum.batches += ctx[t].batches;
        sum.conflicts += ctx[t].conflicts;
        sum.reads += ctx[t].reads;
        sum.scans += ctx[t].scans;
        sum.scanned += ctx[t].scanned;
        sum.snapshots += ctx[t].snapshots;
    }
    char what[64];
    snprintf(what, sizeof what, "%d threads", threads);
    log_run(what, &sum);
    if (spurious)
        print_message("%d threads: %llu conditions on deleted keys failed because the "
                      "delete's record was reclaimed meanwhile\n", threads,
                      (unsigned long long)spurious);

    /* Quiet now: every thread's model against the engine, one last time from here, and
     * the namespaces' counts against the sum of the models. */
    if (!failed) {
        for (int t = 0; t < threads && !failed; t++) {
            while (ctx[t].snap_count > 0)
                release_snapshot(&ctx[t], ctx[t].snap_count - 1);
            verify_all(&ctx[t]);
            failed |= ctx[t].failed;
        }
    }
    if (!failed) {
        for (int n = 0; n < NS_COUNT; n++) {
            uint64_t keys = 0, bytes = 0;
            for (int t = 0; t < threads; t++) {
                for (size_t k = 0; k < ctx[t].u.count; k++) {
                    const struct slot *s = slot_of(ctx[t].model, &ctx[t], n, k);
                    if (s->present) {
                        keys++;
                        bytes += ctx[t].u.klen[k] + s->vlen;
                    }
                }
            }
            shoal_ns_info info;
            assert_ok(shoal_ns_info_get(ns[n], &info));
            assert_int_equal(info.keys, keys);
            assert_int_equal(info.bytes, bytes);
            assert_int_equal(test_count_keys(ns[n], NULL), keys);
        }
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        assert_int_equal(st.snapshots_open, 0);
    }
    for (int t = 0; t < threads; t++)
        model_free(&ctx[t]);
    close_namespaces(ns);
    shoal_close(db);
    free(ctx);
    free(ids);
    assert_false(failed);
    assert_true(total_ops > 0);
}

static void test_threads_2(void **state)
{
    (void)state;
    run_threads(2, SHOAL_TEST_SCALE(100000, 25000), 0x7EAD0002);
}

static void test_threads_4(void **state)
{
    (void)state;
    run_threads(4, SHOAL_TEST_SCALE(60000, 15000), 0x7EAD0004);
}

static void test_threads_8(void **state)
{
    (void)state;
    run_threads(8, SHOAL_TEST_SCALE(40000, 10000), 0x7EAD0008);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_thread_8_shards),
        cmocka_unit_test(test_single_thread_1_and_64_shards),
        cmocka_unit_test(test_threads_2),
        cmocka_unit_test(test_threads_4),
        cmocka_unit_test(test_threads_8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
