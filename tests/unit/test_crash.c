/*
 * test_crash.c -- kill -9 of a process writing a durable database, then recovery,
 * checked against what the process was told had been acknowledged (architecture
 * invariants 2, 3 and 4).
 *
 * How a round goes. The test process (single-threaded, no database open) forks a writer
 * child. The child opens the directory with sync=always and starts WRITERS threads. Each
 * thread owns its keys in every namespace (two pinned, two spread) and performs numbered
 * operations one at a time: single puts, single deletes, and batches of puts and deletes
 * over several namespaces and shards. Every value a thread writes names the thread, the
 * key and the number of the operation that wrote it, followed by bytes derived from them,
 * so the parent can tell exactly which operation produced a value. After each
 * acknowledged commit the thread writes (thread, operation number) into a pipe. The
 * parent reads the pipe, kills the child with SIGKILL after a random, bounded delay,
 * reopens the directory and checks, thread by thread:
 *
 *   - the operations are generated from a per-thread random sequence that the parent
 *     replays, so it knows each thread's state after any number of operations;
 *   - if A is the thread's last acknowledged operation, every one of its keys must hold
 *     the state after exactly A operations or after exactly A + 1 (the one that may have
 *     been in flight), the same choice for all of its keys: a batch is whole or absent,
 *     and nothing acknowledged is missing;
 *   - a full scan of every namespace finds no key or value that no thread wrote in that
 *     state (nothing that was never written appears).
 * The parent then closes the database (a checkpoint), keeps the decided state as the
 * model and starts the next round on the same directory, so the rounds pile recovery on
 * recovery.
 *
 * Variants:
 *   1. plain: single puts and cross-shard batches on small log segments;
 *   2. checkpoints: SHOAL_OPT_CHECKPOINT_LOG_BYTES = 1 MiB, 64 KiB segments, larger
 *      values and a thread calling shoal_checkpoint all the time, so checkpoints and
 *      segment deletion are under way when the kill comes;
 *   3. recovery: after the writer is killed, children that only reopen the directory are
 *      killed at random moments during their recovery (torn-tail cutting, checkpoint
 *      loading, log replay), several times, before the parent reopens and checks.
 * In every variant the rounds alternate between recovery by one thread per log stream and
 * by the replay pipeline (SHOAL_OPT_RECOVERY_THREADS 1 and 4, with 3 streams).
 *
 * Tiers. SHOAL_CRASH_ROUNDS sets the rounds of each variant (default 20; 8 in sanitizer
 * builds). With the default a variant also stops after 20 s (time only shortens the loop,
 * never decides a check); with SHOAL_CRASH_ROUNDS set the limit is 3 s per round. The
 * crash tier runs this program with SHOAL_CRASH_ROUNDS=500. SHOAL_TEST_SEED replaces the
 * seed. Directories are made with mkdtemp() under $TMPDIR (default /tmp) and removed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "durability_testing.h"
#include "test_util.h"

enum {
    WRITERS = 4,
    CRASH_NS = 4,
    KEYS_PER_WRITER = 12,
    BATCH_MAX = 5,
    VALUE_HEADER = 16,
    VALUE_MAX = VALUE_HEADER + 2048,
    /* An upper bound of one writer's operations in one round (never reached: the kill
     * comes first; it only bounds the loop). */
    OPS_PER_ROUND = 1000000,
};

static const char *const ns_names[CRASH_NS] = {"pin0", "spr0", "pin1", "spr1"};
static const shoal_placement ns_placements[CRASH_NS] = {SHOAL_PLACE_PINNED, SHOAL_PLACE_SPREAD,
                                                        SHOAL_PLACE_PINNED, SHOAL_PLACE_SPREAD};

static const shoal_write_options always = {.sync = SHOAL_SYNC_ALWAYS};

/* ------------------------------------------------------------------------------------
 * Operations and values.
 * ---------------------------------------------------------------------------------- */

struct variant {
    const char *name;
    uint64_t segment_bytes;
    uint64_t checkpoint_log_bytes; /* 0: the default */
    unsigned value_extra_max;      /* value bytes after the header: 0 .. this */
    unsigned kill_delay_min_ms, kill_delay_max_ms;
    bool checkpoint_thread;  /* a child thread calls shoal_checkpoint in a loop */
    unsigned recovery_kills; /* children killed during recovery, per round */
};

/* One writer's keys: state[ns][k] is the number of the operation that wrote the current
 * value, 0 when the key is absent. */
struct writer_state {
    uint64_t state[CRASH_NS][KEYS_PER_WRITER];
    uint64_t done;       /* operations applied so far */
    struct test_rng rng; /* positioned to generate operation done + 1 */
};

struct op_item {
    unsigned ns, key;
    bool put;
};

struct op {
    uint64_t n;
    unsigned count; /* 1: a single put or delete; more: a batch */
    struct op_item items[BATCH_MAX];
};

/* Generates the next operation of a writer from its random sequence. */
static void op_next(struct test_rng *rng, uint64_t n, struct op *op)
{
    op->n = n;
    unsigned dice = (unsigned)test_rng_below(rng, 100);
    if (dice < 50) {
        op->count = 1;
        op->items[0] = (struct op_item){(unsigned)test_rng_below(rng, CRASH_NS),
                                        (unsigned)test_rng_below(rng, KEYS_PER_WRITER), true};
    } else if (dice < 62) {
        op->count = 1;
        op->items[0] = (struct op_item){(unsigned)test_rng_below(rng, CRASH_NS),
                                        (unsigned)test_rng_below(rng, KEYS_PER_WRITER), false};
    } else {
        op->count = 2 + (unsigned)test_rng_below(rng, BATCH_MAX - 1);
        /* Item i goes to namespace (first + i) % CRASH_NS, so a batch always spans two
         * namespaces or more and, through the spread ones, several shards. A key that an
         * earlier item already has (possible once the namespaces wrap) moves on by one. */
        unsigned first = (unsigned)test_rng_below(rng, CRASH_NS);
        for (unsigned i = 0; i < op->count; i++) {
            struct op_item it = {.ns = (first + i) % CRASH_NS,
                                 .key = (unsigned)test_rng_below(rng, KEYS_PER_WRITER),
                                 .put = test_rng_percent(rng, 80)};
            for (unsigned j = 0; j < i; j++)
                if (op->items[j].ns == it.ns && op->items[j].key == it.key)
                    it.key = (it.key + 1) % KEYS_PER_WRITER;
            op->items[i] = it;
        }
    }
}

static void op_apply(struct writer_state *w, const struct op *op)
{
    for (unsigned i = 0; i < op->count; i++)
        w->state[op->items[i].ns][op->items[i].key] = op->items[i].put ? op->n : 0;
    w->done = op->n;
}

static size_t key_make(unsigned writer, unsigned k, char *key)
{
    return (size_t)sprintf(key, "w%u/key%02u", writer, k);
}

/* Parses a key of the form key_make writes; false for anything else. */
static bool key_parse(const void *key, size_t klen, unsigned *writer, unsigned *k)
{
    char text[32], again[32];
    if (klen == 0 || klen >= sizeof text)
        return false;
    memcpy(text, key, klen);
    text[klen] = 0;
    if (sscanf(text, "w%u/key%u", writer, k) != 2 || *writer >= WRITERS || *k >= KEYS_PER_WRITER)
        return false;
    return key_make(*writer, *k, again) == klen && memcmp(again, text, klen) == 0;
}

static uint64_t value_seed(unsigned writer, unsigned ns, unsigned k, uint64_t n)
{
    return n * 0x9E3779B97F4A7C15ull ^ ((uint64_t)writer << 56) ^ ((uint64_t)ns << 48) ^
           ((uint64_t)k << 40);
}

/* The value operation n of writer puts under ns/k: a header naming them, then bytes
 * derived from them. */
static size_t value_make(const struct variant *v, unsigned writer, unsigned ns, unsigned k,
                         uint64_t n, uint8_t *out)
{
    uint64_t seed = value_seed(writer, ns, k, n);
    size_t extra = (size_t)(seed >> 7) % (v->value_extra_max + 1);
    memcpy(out, "CRSH", 4);
    out[4] = (uint8_t)writer;
    out[5] = (uint8_t)ns;
    out[6] = (uint8_t)k;
    out[7] = 0;
    for (int i = 0; i < 8; i++)
        out[8 + i] = (uint8_t)(n >> (8 * i));
    test_fill_pattern(out + VALUE_HEADER, extra, seed);
    return VALUE_HEADER + extra;
}

/* Which operation wrote this value: 0 if the value is not one that writer could have put
 * under ns/k with the bytes that operation would have given it. */
static uint64_t value_origin(const struct variant *v, unsigned writer, unsigned ns, unsigned k,
                             const uint8_t *value, size_t len)
{
    if (len < VALUE_HEADER || memcmp(value, "CRSH", 4) != 0 || value[4] != writer ||
        value[5] != ns || value[6] != k || value[7] != 0)
        return 0;
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)value[8 + i] << (8 * i);
    uint8_t expected[VALUE_MAX];
    size_t expected_len = value_make(v, writer, ns, k, n, expected);
    if (n == 0 || expected_len != len || memcmp(expected, value, len) != 0)
        return 0;
    return n;
}

/* ------------------------------------------------------------------------------------
 * The writer child.
 * ---------------------------------------------------------------------------------- */

enum message_kind {
    MSG_READY = 1, /* the database is open (writer) or recovered (recovery child) */
    MSG_ACK,       /* writer `who` had operation n acknowledged */
    MSG_ERROR,     /* writer `who` (WRITERS: the child itself) failed with code -n */
};

struct message {
    uint32_t kind;
    uint32_t who;
    uint64_t n;
};

struct child {
    const struct variant *v;
    const char *dir;
    const shoal_options *opts;
    int pipe_fd;
    struct writer_state writers[WRITERS];
    shoal_ns *ns[CRASH_NS];
    shoal_db *db;
};

struct child_writer {
    struct child *c;
    unsigned index;
    pthread_t thread;
};

static void child_send(int fd, uint32_t kind, uint32_t who, uint64_t n)
{
    struct message m = {kind, who, n};
    /* 16 bytes: below PIPE_BUF, so the write is atomic and never interleaved. */
    while (write(fd, &m, sizeof m) < 0 && errno == EINTR)
        ;
}

static int child_commit(struct child *c, unsigned writer, const struct op *op,
                        const struct writer_state *w)
{
    uint8_t value[VALUE_MAX];
    char key[32];
    if (op->count == 1) {
        const struct op_item *it = &op->items[0];
        size_t klen = key_make(writer, it->key, key);
        if (it->put) {
            size_t vlen = value_make(c->v, writer, it->ns, it->key, op->n, value);
            return shoal_put(c->ns[it->ns], key, klen, value, vlen, &always);
        }
        int err = shoal_delete(c->ns[it->ns], key, klen, &always);
        /* A delete of an absent key changes nothing and says so. */
        if (err == SHOAL_ENOTFOUND && w->state[it->ns][it->key] == 0)
            err = 0;
        return err;
    }
    shoal_batch *b = NULL;
    int err = shoal_batch_new(c->db, &b);
    for (unsigned i = 0; !err && i < op->count; i++) {
        const struct op_item *it = &op->items[i];
        size_t klen = key_make(writer, it->key, key);
        if (it->put) {
            size_t vlen = value_make(c->v, writer, it->ns, it->key, op->n, value);
            err = shoal_batch_put(b, c->ns[it->ns], key, klen, value, vlen);
        } else {
            err = shoal_batch_delete(b, c->ns[it->ns], key, klen);
        }
    }
    if (!err)
        err = shoal_batch_commit(b, &always, NULL);
    shoal_batch_free(b);
    return err;
}

static void *child_writer_main(void *arg)
{
    struct child_writer *cw = arg;
    struct child *c = cw->c;
    struct writer_state *w = &c->writers[cw->index];
    for (unsigned i = 0; i < OPS_PER_ROUND; i++) {
        struct op op;
        op_next(&w->rng, w->done + 1, &op);
        int err = child_commit(c, cw->index, &op, w);
        if (err) {
            child_send(c->pipe_fd, MSG_ERROR, cw->index, (uint64_t)-err);
            return NULL;
        }
        op_apply(w, &op);
        child_send(c->pipe_fd, MSG_ACK, cw->index, op.n);
    }
    return NULL;
}

static void *child_checkpointer_main(void *arg)
{
    struct child *c = arg;
    for (unsigned i = 0; i < 100000; i++) {
        int err = shoal_checkpoint(c->db);
        if (err) {
            child_send(c->pipe_fd, MSG_ERROR, WRITERS, (uint64_t)-err);
            return NULL;
        }
        test_sleep_ms(5);
    }
    return NULL;
}

/* Never returns: runs until killed (or _exits with a failure the parent reports). */
static void child_writer_run(struct child *c)
{
    int err = shoal_open(c->dir, c->opts, &c->db);
    if (err) {
        fprintf(stderr, "writer child: open: %s (%s)\n", shoal_error_name(err),
                shoal_error_detail());
        child_send(c->pipe_fd, MSG_ERROR, WRITERS, (uint64_t)-err);
        _exit(2);
    }
    for (unsigned i = 0; i < CRASH_NS; i++) {
        if ((err = shoal_ns_open(c->db, ns_names[i], NULL, &c->ns[i])) != 0) {
            child_send(c->pipe_fd, MSG_ERROR, WRITERS, (uint64_t)-err);
            _exit(2);
        }
    }
    child_send(c->pipe_fd, MSG_READY, 0, 0);
    struct child_writer cw[WRITERS];
    for (unsigned i = 0; i < WRITERS; i++) {
        cw[i] = (struct child_writer){c, i, 0};
        if (pthread_create(&cw[i].thread, NULL, child_writer_main, &cw[i]) != 0)
            _exit(3);
    }
    pthread_t checkpointer;
    if (c->v->checkpoint_thread &&
        pthread_create(&checkpointer, NULL, child_checkpointer_main, c) != 0)
        _exit(3);
    for (unsigned i = 0; i < WRITERS; i++)
        pthread_join(cw[i].thread, NULL);
    /* Everything done (or failed): wait for the kill, at most a minute. */
    for (unsigned i = 0; i < 600; i++)
        test_sleep_ms(100);
    _exit(4);
}

/* A child that only opens the directory (recovery), says so, and waits to be killed. */
static void child_recovery_run(struct child *c)
{
    int err = shoal_open(c->dir, c->opts, &c->db);
    if (err) {
        fprintf(stderr, "recovery child: open: %s (%s)\n", shoal_error_name(err),
                shoal_error_detail());
        child_send(c->pipe_fd, MSG_ERROR, WRITERS, (uint64_t)-err);
        _exit(2);
    }
    child_send(c->pipe_fd, MSG_READY, 0, 0);
    for (unsigned i = 0; i < 600; i++)
        test_sleep_ms(100);
    _exit(4);
}

/* ------------------------------------------------------------------------------------
 * The parent: run a child, kill it, check.
 * ---------------------------------------------------------------------------------- */

struct kill_result {
    bool ready;              /* the child said READY before the kill */
    uint64_t acked[WRITERS]; /* the last acknowledged operation of each writer */
    uint64_t ready_ns;       /* from fork to READY */
    char error[256];         /* a failure the child reported, or "" */
};

/* Reads every complete message available; returns false at end of file. */
static bool drain(int fd, struct kill_result *res, uint8_t *carry, size_t *carry_len,
                  uint64_t started)
{
    uint8_t buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN;
    if (n == 0)
        return false;
    for (ssize_t i = 0; i < n; i++) {
        carry[(*carry_len)++] = buf[i];
        if (*carry_len < sizeof(struct message))
            continue;
        struct message m;
        memcpy(&m, carry, sizeof m);
        *carry_len = 0;
        if (m.kind == MSG_READY) {
            if (!res->ready)
                res->ready_ns = test_now_ns() - started;
            res->ready = true;
        } else if (m.kind == MSG_ACK && m.who < WRITERS) {
            if (m.n != res->acked[m.who] + 1 && res->error[0] == 0)
                snprintf(res->error, sizeof res->error,
                         "writer %u acknowledged %" PRIu64 " after %" PRIu64, m.who, m.n,
                         res->acked[m.who]);
            res->acked[m.who] = m.n;
        } else if (m.kind == MSG_ERROR && res->error[0] == 0) {
            snprintf(res->error, sizeof res->error, "%s %u failed: %s",
                     m.who < WRITERS ? "writer" : "child", m.who, shoal_error_name(-(int)m.n));
        }
    }
    return true;
}

/* Forks a child running fn(c), waits for its READY (bounded), lets it run delay_ms more
 * (or, when kill_before_ready, kills it delay_ms after the fork whatever it is doing),
 * kills it with SIGKILL and collects its messages. */
static void run_and_kill(struct child *c, void (*fn)(struct child *c), unsigned delay_ms,
                         bool kill_before_ready, struct kill_result *res)
{
    memset(res, 0, sizeof *res);
    for (unsigned i = 0; i < WRITERS; i++)
        res->acked[i] = c->writers[i].done;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    uint64_t started = test_now_ns();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        c->pipe_fd = fds[1];
        fn(c);
        _exit(5);
    }
    close(fds[1]);
    uint8_t carry[sizeof(struct message)];
    size_t carry_len = 0;
    bool open = true;
    /* Phase 1: until READY (at most 60 s), unless the kill comes before it. */
    uint64_t until =
        kill_before_ready ? started + (uint64_t)delay_ms * 1000000u : test_deadline(60);
    while (open && test_before(until) && (kill_before_ready || !res->ready) && res->error[0] == 0) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        uint64_t left_ms = (until - test_now_ns()) / 1000000u;
        if (poll(&p, 1, (int)(left_ms < 100 ? left_ms + 1 : 100)) > 0)
            open = drain(fds[0], res, carry, &carry_len, started);
    }
    /* Phase 2: delay_ms after READY. */
    if (!kill_before_ready && res->ready) {
        until = test_deadline(delay_ms / 1000.0);
        while (open && test_before(until) && res->error[0] == 0) {
            struct pollfd p = {.fd = fds[0], .events = POLLIN};
            uint64_t left_ms = (until - test_now_ns()) / 1000000u;
            if (poll(&p, 1, (int)(left_ms + 1)) > 0)
                open = drain(fds[0], res, carry, &carry_len, started);
        }
    }
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    while (open)
        open = drain(fds[0], res, carry, &carry_len, started);
    close(fds[0]);
    if (res->error[0] == 0 && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
        snprintf(res->error, sizeof res->error, "the child ended before the kill (status %#x)",
                 (unsigned)status);
    if (res->error[0] == 0 && !kill_before_ready && !res->ready)
        snprintf(res->error, sizeof res->error, "the child never said it was ready");
}

struct crash_stats {
    unsigned rounds, torn_rounds, recovery_kills, recovery_kills_before_ready;
    uint64_t operations, in_flight_applied;
    unsigned child_checkpoint_rounds; /* reopens that found a checkpoint the child took */
};

/* Reads what writer w's key ns/k holds: the number of the operation that wrote it, 0 when
 * absent, or UINT64_MAX for a value no operation of that writer would have written. */
static uint64_t read_origin(const struct variant *v, shoal_ns *ns, unsigned nsi, unsigned w,
                            unsigned k)
{
    char key[32];
    uint8_t value[VALUE_MAX];
    size_t klen = key_make(w, k, key), vlen = 0;
    int err = shoal_get_into(ns, NULL, key, klen, value, sizeof value, &vlen);
    if (err == SHOAL_ENOTFOUND)
        return 0;
    if (err) {
        print_error("get %s/%s: %s\n", ns_names[nsi], key, shoal_error_name(err));
        return UINT64_MAX;
    }
    uint64_t n = value_origin(v, w, nsi, k, value, vlen);
    return n ? n : UINT64_MAX;
}

/* Checks the reopened database against the writers' states and the acknowledgements,
 * decides for each writer whether its in-flight operation took effect, and advances the
 * states to what the database now holds. */
static void check_recovered(shoal_db *db, struct child *c, const struct kill_result *res,
                            struct crash_stats *stats, uint64_t seed, unsigned round)
{
    const struct variant *v = c->v;
    shoal_ns *ns[CRASH_NS];
    for (unsigned i = 0; i < CRASH_NS; i++)
        assert_ok(shoal_ns_open(db, ns_names[i], NULL, &ns[i]));
    for (unsigned w = 0; w < WRITERS; w++) {
        struct writer_state *ws = &c->writers[w];
        /* Operations up to the last acknowledged one are certain. */
        while (ws->done < res->acked[w]) {
            struct op op;
            op_next(&ws->rng, ws->done + 1, &op);
            op_apply(ws, &op);
            stats->operations++;
        }
        /* The next one may have been in flight. */
        struct writer_state next = *ws;
        struct op op;
        op_next(&next.rng, next.done + 1, &op);
        op_apply(&next, &op);
        unsigned as_before = 0, as_after = 0;
        for (unsigned i = 0; i < CRASH_NS; i++) {
            for (unsigned k = 0; k < KEYS_PER_WRITER; k++) {
                uint64_t got = read_origin(v, ns[i], i, w, k);
                uint64_t before = ws->state[i][k], after = next.state[i][k];
                if (got == before && got == after)
                    continue;
                if (got == after) {
                    as_after++;
                } else if (got == before) {
                    as_before++;
                } else {
                    print_error("seed %#" PRIx64 " round %u (%s): writer %u key %s/%u holds "
                                "%s %" PRIu64 "; acknowledged up to %" PRIu64
                                ", so it must hold the value of operation %" PRIu64
                                " or of %" PRIu64 " (0: absent)\n",
                                seed, round, v->name, w, ns_names[i], k,
                                got == UINT64_MAX ? "a value never written, or" : "operation",
                                got == UINT64_MAX ? 0 : got, res->acked[w], before, after);
                    fail();
                }
            }
        }
        if (as_before && as_after) {
            print_error("seed %#" PRIx64 " round %u (%s): writer %u operation %" PRIu64
                        " (%u items) is half applied: %u keys with it, %u without\n",
                        seed, round, v->name, w, op.n, op.count, as_after, as_before);
            fail();
        }
        if (as_after) {
            *ws = next;
            stats->operations++;
            stats->in_flight_applied++;
        }
    }
    /* Nothing else is there: every key a scan finds is a writer's key in its state. */
    for (unsigned i = 0; i < CRASH_NS; i++) {
        shoal_iter *it = NULL;
        assert_ok(shoal_iter_new(ns[i], NULL, &it));
        uint64_t found = 0, expected = 0;
        int more;
        while ((more = shoal_iter_next(it)) == 1) {
            size_t klen, vlen;
            const void *key = shoal_iter_key(it, &klen);
            const uint8_t *value = shoal_iter_value(it, &vlen);
            unsigned w, k;
            if (!key_parse(key, klen, &w, &k)) {
                print_error("round %u: %s holds a key no writer wrote: '%.*s'\n", round,
                            ns_names[i], (int)klen, (const char *)key);
                fail();
            }
            uint64_t origin = value_origin(v, w, i, k, value, vlen);
            if (origin == 0 || origin != c->writers[w].state[i][k]) {
                print_error("round %u: scan of %s: writer %u key %u holds operation %" PRIu64
                            ", the decided state says %" PRIu64 "\n",
                            round, ns_names[i], w, k, origin, c->writers[w].state[i][k]);
                fail();
            }
            found++;
        }
        assert_int_equal(more, 0);
        shoal_iter_free(it);
        for (unsigned w = 0; w < WRITERS; w++)
            for (unsigned k = 0; k < KEYS_PER_WRITER; k++)
                expected += c->writers[w].state[i][k] != 0;
        assert_int_equal(found, expected);
        shoal_ns_close(ns[i]);
    }
}

static shoal_options *variant_options(const struct variant *v)
{
    shoal_options *opts = NULL;
    assert_ok(shoal_options_new(&opts));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, 8));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_LOG_STREAMS, 3));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SYNC, SHOAL_SYNC_ALWAYS));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_LOG_SEGMENT_BYTES, v->segment_bytes));
    if (v->checkpoint_log_bytes)
        assert_ok(shoal_options_set(opts, SHOAL_OPT_CHECKPOINT_LOG_BYTES, v->checkpoint_log_bytes));
    return opts;
}

/* Rounds and the time limit of a variant (see the essay: tiers). */
static unsigned crash_rounds(double *seconds)
{
    const char *env = getenv("SHOAL_CRASH_ROUNDS");
    unsigned rounds = SHOAL_TEST_SCALE(20, 8);
    *seconds = 20;
    if (env && *env) {
        rounds = (unsigned)strtoul(env, NULL, 10);
        if (rounds == 0)
            rounds = 1;
        *seconds = 3.0 * rounds;
    }
    return rounds;
}

/* The directory of the running variant, removed by the teardown even when an assertion
 * ended the variant early. */
static char crash_dir[4096];

static int remove_crash_dir(void **state)
{
    (void)state;
    if (crash_dir[0])
        testing_remove_tree(crash_dir);
    crash_dir[0] = 0;
    return 0;
}

static void crash_variant(const struct variant *v, uint64_t seed_offset)
{
    double seconds;
    unsigned rounds = crash_rounds(&seconds);
    uint64_t deadline = test_deadline(seconds);
    uint64_t seed = test_seed(0xC4A5400) + seed_offset;
    struct test_rng rng;
    test_rng_init(&rng, seed);
    char *dir = crash_dir;
    assert_int_equal(testing_make_dir(dir, sizeof crash_dir, "crash"), 0);
    shoal_options *opts = variant_options(v);
    static struct child c;
    memset(&c, 0, sizeof c);
    c.v = v;
    c.dir = dir;
    c.opts = opts;
    for (unsigned w = 0; w < WRITERS; w++)
        test_rng_init(&c.writers[w].rng, seed * 31 + w + 1);

    /* The namespaces exist before the first writer starts. */
    shoal_db *db = NULL;
    assert_ok(shoal_open(dir, opts, &db));
    for (unsigned i = 0; i < CRASH_NS; i++) {
        shoal_ns *ns = test_ns(db, ns_names[i], ns_placements[i], 0);
        shoal_ns_close(ns);
    }
    assert_ok(shoal_close(db));

    struct crash_stats stats = {0};
    uint64_t recovery_estimate_ms = 20;
    uint64_t closed_at = 0; /* the seq of the parent's closing checkpoint */
    for (unsigned round = 0; round < rounds && test_before(deadline); round++) {
        /* Every open of the round (writer, recovery children, the parent's check) replays
         * the 3 streams a thread each, or through the replay pipeline, by turns. */
        assert_ok(shoal_options_set(opts, SHOAL_OPT_RECOVERY_THREADS, round % 2 ? 4 : 1));
        unsigned span = v->kill_delay_max_ms - v->kill_delay_min_ms;
        unsigned delay = v->kill_delay_min_ms + (unsigned)test_rng_below(&rng, span + 1);
        struct kill_result res;
        run_and_kill(&c, child_writer_run, delay, false, &res);
        if (res.error[0]) {
            print_error("seed %#" PRIx64 " round %u (%s): %s\n", seed, round, v->name, res.error);
            fail();
        }
        /* Recoveries killed part way. The first ones learn how long an open takes. */
        for (unsigned i = 0; i < v->recovery_kills; i++) {
            struct kill_result rec;
            unsigned at = (unsigned)test_rng_below(&rng, recovery_estimate_ms * 3 / 2 + 2);
            run_and_kill(&c, child_recovery_run, at, true, &rec);
            if (rec.error[0]) {
                print_error("seed %#" PRIx64 " round %u (%s): recovery %u killed at %u ms: "
                            "%s\n",
                            seed, round, v->name, i, at, rec.error);
                fail();
            }
            stats.recovery_kills++;
            if (rec.ready) {
                uint64_t ms = rec.ready_ns / 1000000u + 1;
                if (ms > recovery_estimate_ms || i == 0)
                    recovery_estimate_ms = ms;
            } else {
                stats.recovery_kills_before_ready++;
            }
        }
        db = NULL;
        int err = shoal_open(dir, opts, &db);
        if (err) {
            print_error("seed %#" PRIx64 " round %u (%s): reopen: %s (%s)\n", seed, round, v->name,
                        shoal_error_name(err), shoal_error_detail());
            fail();
        }
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        stats.torn_rounds += st.torn_streams > 0;
        stats.child_checkpoint_rounds += st.checkpoint_seq > closed_at;
        check_recovered(db, &c, &res, &stats, seed, round);
        closed_at = shoal_last_seq(db);
        assert_ok(shoal_close(db));
        stats.rounds++;
    }
    print_message("%s: %u rounds (of %u), %" PRIu64 " operations acknowledged or recovered, "
                  "%" PRIu64 " in-flight operations found applied, %u reopens cut a torn "
                  "tail, %u found a checkpoint the killed child had completed, %u recoveries "
                  "killed (%u before they finished)\n",
                  v->name, stats.rounds, rounds, stats.operations, stats.in_flight_applied,
                  stats.torn_rounds, stats.child_checkpoint_rounds, stats.recovery_kills,
                  stats.recovery_kills_before_ready);
    assert_true(stats.rounds >= 1);
    assert_true(stats.operations > 0);
    shoal_options_free(opts);
    remove_crash_dir(NULL);
}

static void test_crash_plain(void **state)
{
    (void)state;
    static const struct variant v = {
        .name = "plain",
        .segment_bytes = 256 << 10,
        .value_extra_max = 200,
        .kill_delay_min_ms = 0,
        .kill_delay_max_ms = SHOAL_TEST_SCALE(250, 600),
    };
    crash_variant(&v, 0);
}

static void test_crash_during_checkpoints(void **state)
{
    (void)state;
    static const struct variant v = {
        .name = "checkpoints",
        .segment_bytes = 64 << 10,
        .checkpoint_log_bytes = 1 << 20,
        .value_extra_max = 2000,
        .kill_delay_min_ms = 20,
        .kill_delay_max_ms = SHOAL_TEST_SCALE(400, 900),
        .checkpoint_thread = true,
    };
    crash_variant(&v, 1000);
}

static void test_crash_during_recovery(void **state)
{
    (void)state;
    static const struct variant v = {
        .name = "recovery",
        .segment_bytes = 128 << 10,
        .value_extra_max = 1000,
        .kill_delay_min_ms = 50,
        .kill_delay_max_ms = SHOAL_TEST_SCALE(300, 700),
        .recovery_kills = 3,
    };
    crash_variant(&v, 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_crash_plain, remove_crash_dir),
        cmocka_unit_test_teardown(test_crash_during_checkpoints, remove_crash_dir),
        cmocka_unit_test_teardown(test_crash_during_recovery, remove_crash_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
