/*
 * test_corruption.c -- damage to every kind of file of a durable database, and what a
 * reopen makes of it (architecture invariant 4: a prefix of each stream, damage reported
 * with its file, never silently wrong data).
 *
 * The image. A database with three namespaces (pinned and spread) over four shards and
 * two log streams is built with random puts, deletes and cross-shard batches; then a
 * checkpoint; then more writes over several 64 KiB log segments per stream. The directory
 * is copied while the database is still open and idle (every record was written before
 * its commit returned): the copy is the image of a crash, with preallocated zeros at the
 * end of each stream's last segment. The builder records, for every commit, its seq and
 * what it wrote.
 *
 * The oracle. The pristine segments are parsed by the format of docs/FORMAT.md, which
 * gives every record's stream, segment, offset, end and seq. The state a reopen must give
 * when stream s keeps its first j records (and every other stream all of its records) is
 * then computable: the checkpoint's contents, plus the commits of the kept records, the
 * largest seq winning per key. For damage at offset p of a segment of stream s, j is the
 * number of the stream's records that end at or before p in that segment and earlier ones:
 * those are intact.
 *
 * The cases. Bits flipped and truncations at many offsets (every 97th byte or so, at most
 * a bounded number per file, denser for small files) of every log segment, every
 * checkpoint file and the MANIFEST, each on a fresh copy of the pristine image. The result
 * of reopening must be one of:
 *   - the full state (the damage hit nothing that mattered);
 *   - a cut tail: the state with stream s cut at j, only when the damage is at the end of
 *     the stream (a truncation of its last segment, or a flip in its last record or in the
 *     zeros after it), with torn_streams > 0;
 *   - SHOAL_ECORRUPT, with shoal_error_detail() naming the damaged file (for a truncated
 *     log segment, the next segment of the stream may be the one that reveals it).
 * Never anything else: no value that was never written, no key the prefix rules exclude.
 * Where the plain reopen reports damage in a log segment, a reopen with SHOAL_OPT_SALVAGE
 * must open, with exactly the state cut at j. Lost files are cases too: the MANIFEST, a
 * checkpoint file, a segment in the middle of a stream, the first segment after the
 * checkpoint.
 *
 * Speed. The builder and the reopens use an I/O table whose fsync calls do nothing (the
 * subject here is damage, not power loss), so a case costs a copy and an open. Counts
 * shrink under sanitizers; time limits per kind of file (35 s for the log segments, 15 s
 * for the checkpoint files, 10 s for the MANIFEST; about double under sanitizers) only
 * shorten the run, they never decide a check.
 * SHOAL_TEST_SEED replaces the seed of the image.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>

#include "core/durable.h"
#include "durability/io.h"
#include "durability_testing.h"
#include "test_util.h"

enum {
    IMAGE_NS = 3,
    IMAGE_KEYS = 150,
    IMAGE_VALUE_MAX = 400,
    IMAGE_BATCH_MAX = 6,
    SEGMENT_HEADER_V1 = 48, /* docs/FORMAT.md, "Segment header": format version 1 */
    SEGMENT_HEADER_V2 = 64, /* ... and format version 2, which the log writes */
    RECORD_HEADER = 20,     /* docs/FORMAT.md, "Record" */
    MAX_STREAMS = 2,
    MAX_FILES = 64,
};

static const char *const image_ns_names[IMAGE_NS] = {"pinned", "spread", "another"};
static const shoal_placement image_ns_placements[IMAGE_NS] = {
    SHOAL_PLACE_PINNED, SHOAL_PLACE_SPREAD, SHOAL_PLACE_SPREAD};

/* ------------------------------------------------------------------------------------
 * An I/O table without fsync: damage, not power loss, is the subject here.
 * ---------------------------------------------------------------------------------- */

static int nosync_fdatasync(const struct shoal_io *io, int fd)
{
    (void)io;
    (void)fd;
    return 0;
}

static int nosync_fsync_dir(const struct shoal_io *io, const char *path)
{
    (void)io;
    (void)path;
    return 0;
}

static struct shoal_io nosync_io;

static const struct shoal_io *nosync(void)
{
    if (nosync_io.open == NULL) {
        nosync_io = *io_posix();
        nosync_io.fdatasync = nosync_fdatasync;
        nosync_io.fsync = nosync_fdatasync;
        nosync_io.fsync_dir = nosync_fsync_dir;
    }
    return &nosync_io;
}

/* ------------------------------------------------------------------------------------
 * The image: commits and their effects.
 * ---------------------------------------------------------------------------------- */

struct effect {
    uint8_t ns;
    uint16_t key;
    bool put;
    uint32_t len;
    uint64_t seed; /* the value is test_fill_pattern(len, seed) */
};

struct commit {
    uint64_t seq;
    uint32_t first, count; /* effects[first .. first + count) */
};

/* One stream's records as parsed from the pristine segments, in stream order. */
struct record {
    unsigned segment; /* index into the stream's segments */
    uint64_t offset, end, seq;
};

struct stream {
    char names[MAX_FILES][32]; /* segment file names, in base order */
    uint64_t sizes[MAX_FILES];
    uint64_t header_sizes[MAX_FILES]; /* where each segment's records start */
    unsigned segments;
    struct record *records;
    size_t count;
    /* records[first_of[g]] is the first record of segment g */
    size_t first_of[MAX_FILES + 1];
};

struct image {
    char pristine[4096];
    char work[4096];
    struct effect *effects;
    size_t effect_count, effect_cap;
    struct commit *commits;
    size_t commit_count, commit_cap;
    uint64_t checkpoint_seq;
    struct stream streams[MAX_STREAMS];
    unsigned stream_count;
    char checkpoint_files[MAX_FILES][96]; /* relative paths */
    unsigned checkpoint_file_count;
};

/* The state of every key: the seq of its version and the value, or absent. */
struct key_state {
    bool present;
    uint32_t len;
    uint64_t seed;
    uint64_t seq;
};

struct state {
    struct key_state keys[IMAGE_NS][IMAGE_KEYS];
};

static size_t image_key(unsigned k, char *key)
{
    switch (k % 3) {
    case 0:
        return (size_t)sprintf(key, "k%u", k);
    case 1:
        return (size_t)sprintf(key, "key/%05u", k);
    default:
        return (size_t)sprintf(key, "%u-a-longer-key-%u", k, k * 7);
    }
}

/* Every key, made once: scans look keys up here. */
static char image_keys[IMAGE_KEYS][32];
static size_t image_key_lens[IMAGE_KEYS];

static int image_key_index(const void *key, size_t klen)
{
    if (image_key_lens[0] == 0)
        for (unsigned k = 0; k < IMAGE_KEYS; k++)
            image_key_lens[k] = image_key(k, image_keys[k]);
    for (unsigned k = 0; k < IMAGE_KEYS; k++)
        if (image_key_lens[k] == klen && memcmp(image_keys[k], key, klen) == 0)
            return (int)k;
    return -1;
}

static void image_add_effect(struct image *im, struct effect e)
{
    if (im->effect_count == im->effect_cap) {
        im->effect_cap = im->effect_cap ? im->effect_cap * 2 : 1024;
        im->effects = realloc(im->effects, im->effect_cap * sizeof *im->effects);
        assert_non_null(im->effects);
    }
    im->effects[im->effect_count++] = e;
}

static void image_add_commit(struct image *im, uint64_t seq, size_t first)
{
    if (im->commit_count == im->commit_cap) {
        im->commit_cap = im->commit_cap ? im->commit_cap * 2 : 1024;
        im->commits = realloc(im->commits, im->commit_cap * sizeof *im->commits);
        assert_non_null(im->commits);
    }
    im->commits[im->commit_count++] =
        (struct commit){seq, (uint32_t)first, (uint32_t)(im->effect_count - first)};
}

/* One random commit against the database; records it if it drew a seq. */
static void image_write(struct image *im, shoal_db *db, shoal_ns **ns, struct test_rng *rng,
                        uint64_t *next_seed)
{
    uint64_t before = shoal_last_seq(db);
    size_t first = im->effect_count;
    unsigned dice = (unsigned)test_rng_below(rng, 100);
    unsigned n = dice < 55 ? 1 : 2 + (unsigned)test_rng_below(rng, IMAGE_BATCH_MAX - 1);
    bool single_delete = dice >= 45 && dice < 55;
    shoal_batch *b = NULL;
    if (n > 1)
        assert_ok(shoal_batch_new(db, &b));
    for (unsigned i = 0; i < n; i++) {
        struct effect e = {.ns = (uint8_t)test_rng_below(rng, IMAGE_NS),
                           .key = (uint16_t)test_rng_below(rng, IMAGE_KEYS),
                           .put = !single_delete && test_rng_percent(rng, 80),
                           .len = (uint32_t)test_rng_below(rng, IMAGE_VALUE_MAX + 1),
                           .seed = (*next_seed)++};
        for (size_t j = first; j < im->effect_count; j++)
            if (im->effects[j].ns == e.ns && im->effects[j].key == e.key)
                e.key = (uint16_t)((e.key + 1) % IMAGE_KEYS);
        char key[64];
        uint8_t value[IMAGE_VALUE_MAX];
        size_t klen = image_key(e.key, key);
        test_fill_pattern(value, e.len, e.seed);
        if (n == 1 && e.put)
            assert_ok(shoal_put(ns[e.ns], key, klen, value, e.len, NULL));
        else if (n == 1) {
            int err = shoal_delete(ns[e.ns], key, klen, NULL);
            assert_true(err == 0 || err == SHOAL_ENOTFOUND);
        } else if (e.put)
            assert_ok(shoal_batch_put(b, ns[e.ns], key, klen, value, e.len));
        else
            assert_ok(shoal_batch_delete(b, ns[e.ns], key, klen));
        image_add_effect(im, e);
    }
    if (b) {
        assert_ok(shoal_batch_commit(b, NULL, NULL));
        shoal_batch_free(b);
    }
    uint64_t seq = shoal_last_seq(db);
    if (seq == before) {
        im->effect_count = first; /* changed nothing, drew no seq */
        return;
    }
    assert_int_equal(seq, before + 1);
    image_add_commit(im, seq, first);
}

/* Copies the regular files and directories of a tree. */
static void copy_tree(const char *from, const char *to)
{
    assert_true(mkdir(to, 0755) == 0 || errno == EEXIST);
    DIR *d = opendir(from);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        struct stat st;
        assert_int_equal(lstat(a, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            copy_tree(a, b);
        } else if (S_ISREG(st.st_mode)) {
            size_t len = 0;
            uint8_t *data = testing_read_file(a, &len);
            assert_non_null(data);
            assert_int_equal(testing_write_file(b, data, len), 0);
            free(data);
        }
    }
    closedir(d);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Lists the names in a directory that end with suffix, sorted. */
static unsigned list_names(const char *path, const char *suffix, char names[][32])
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    unsigned count = 0;
    struct dirent *e;
    size_t slen = strlen(suffix);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < slen || len >= 32 || strcmp(e->d_name + len - slen, suffix) != 0)
            continue;
        assert_true(count < MAX_FILES);
        strcpy(names[count++], e->d_name);
    }
    closedir(d);
    qsort(names, count, 32, compare_names);
    return count;
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Parses the pristine segments of every stream (docs/FORMAT.md, "Log segments"). */
static void image_parse_streams(struct image *im)
{
    for (unsigned s = 0; s < MAX_STREAMS; s++) {
        struct stream *st = &im->streams[s];
        char path[4200];
        snprintf(path, sizeof path, "%s/log/%u", im->pristine, s);
        st->segments = list_names(path, ".wal", st->names);
        size_t cap = 0;
        for (unsigned g = 0; g < st->segments; g++) {
            char file[4300];
            snprintf(file, sizeof file, "%s/%s", path, st->names[g]);
            size_t len = 0;
            uint8_t *data = testing_read_file(file, &len);
            assert_non_null(data);
            st->sizes[g] = len;
            st->first_of[g] = st->count;
            assert_true(len >= SEGMENT_HEADER_V1);
            assert_memory_equal(data, "SHOALWAL", 8);
            uint64_t version = get_le(data + 8, 4);
            assert_true(version == 1 || version == 2);
            uint64_t off = version == 1 ? SEGMENT_HEADER_V1 : SEGMENT_HEADER_V2;
            assert_true(len >= off);
            st->header_sizes[g] = off;
            while (off + RECORD_HEADER <= len) {
                uint64_t plen = get_le(data + off + 4, 4);
                if (data[off + 9] == 0 || off + RECORD_HEADER + plen > len)
                    break; /* the zeros of the reservation */
                if (st->count == cap) {
                    cap = cap ? cap * 2 : 256;
                    st->records = realloc(st->records, cap * sizeof *st->records);
                    assert_non_null(st->records);
                }
                st->records[st->count++] =
                    (struct record){g, off, off + RECORD_HEADER + plen, get_le(data + off + 12, 8)};
                off += RECORD_HEADER + plen;
            }
            free(data);
        }
        st->first_of[st->segments] = st->count;
        if (st->segments)
            im->stream_count = s + 1;
    }
}

/* Builds the image in a directory of its own and copies it to im->pristine. */
static void image_build(struct image *im, uint64_t seed, unsigned before_checkpoint,
                        unsigned after_checkpoint)
{
    char live[4096];
    assert_int_equal(testing_make_dir(live, sizeof live, "corrupt-live"), 0);
    assert_int_equal(testing_make_dir(im->pristine, sizeof im->pristine, "corrupt-pristine"), 0);
    assert_int_equal(testing_make_dir(im->work, sizeof im->work, "corrupt-work"), 0);
    shoal_options *opts = NULL;
    assert_ok(shoal_options_new(&opts));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SHARDS, 4));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_LOG_STREAMS, MAX_STREAMS));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_SYNC, SHOAL_SYNC_ALWAYS));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_LOG_SEGMENT_BYTES, 64 << 10));
    shoal_db *db = NULL;
    assert_ok(durable_open(live, opts, nosync(), &db));
    shoal_ns *ns[IMAGE_NS];
    for (unsigned i = 0; i < IMAGE_NS; i++)
        ns[i] = test_ns(db, image_ns_names[i], image_ns_placements[i], 0);
    struct test_rng rng;
    test_rng_init(&rng, seed);
    uint64_t next_seed = 1;
    for (unsigned i = 0; i < before_checkpoint; i++)
        image_write(im, db, ns, &rng, &next_seed);
    assert_ok(shoal_checkpoint(db));
    im->checkpoint_seq = shoal_last_seq(db);
    for (unsigned i = 0; i < after_checkpoint; i++)
        image_write(im, db, ns, &rng, &next_seed);
    /* Idle, every record written: the copy is a crash image. */
    assert_int_equal(rmdir(im->pristine), 0);
    copy_tree(live, im->pristine);
    for (unsigned i = 0; i < IMAGE_NS; i++)
        shoal_ns_close(ns[i]);
    assert_ok(shoal_close(db));
    shoal_options_free(opts);
    testing_remove_tree(live);

    image_parse_streams(im);
    char ckpt[4200], names[MAX_FILES][32];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt/%020" PRIu64, im->pristine, im->checkpoint_seq);
    unsigned files = list_names(ckpt, ".ckpt", names);
    for (unsigned i = 0; i < files; i++)
        snprintf(im->checkpoint_files[i], sizeof im->checkpoint_files[i],
                 "ckpt/%020" PRIu64 "/%.31s", im->checkpoint_seq, names[i]);
    im->checkpoint_file_count = files;
}

static void image_free(struct image *im)
{
    testing_remove_tree(im->pristine);
    testing_remove_tree(im->work);
    for (unsigned s = 0; s < MAX_STREAMS; s++)
        free(im->streams[s].records);
    free(im->effects);
    free(im->commits);
}

static const struct commit *image_commit(const struct image *im, uint64_t seq)
{
    size_t lo = 0, hi = im->commit_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (im->commits[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < im->commit_count && im->commits[lo].seq == seq ? &im->commits[lo] : NULL;
}

static void state_apply(struct state *st, const struct image *im, const struct commit *c)
{
    for (uint32_t i = 0; i < c->count; i++) {
        const struct effect *e = &im->effects[c->first + i];
        struct key_state *k = &st->keys[e->ns][e->key];
        if (c->seq < k->seq)
            continue;
        *k = (struct key_state){e->put, e->len, e->seed, c->seq};
    }
}

/* The state a reopen must give when stream `cut_stream` keeps its first `kept` records
 * and every other stream keeps all of its records (cut_stream -1: nothing is cut). */
static void state_expected(const struct image *im, int cut_stream, size_t kept, struct state *st)
{
    memset(st, 0, sizeof *st);
    /* The checkpoint: every commit up to its seq. */
    for (size_t i = 0; i < im->commit_count && im->commits[i].seq <= im->checkpoint_seq; i++)
        state_apply(st, im, &im->commits[i]);
    for (unsigned s = 0; s < im->stream_count; s++) {
        const struct stream *sm = &im->streams[s];
        size_t n = (int)s == cut_stream ? kept : sm->count;
        for (size_t r = 0; r < n; r++) {
            if (sm->records[r].seq <= im->checkpoint_seq)
                continue;
            const struct commit *c = image_commit(im, sm->records[r].seq);
            assert_non_null(c); /* every record is a commit the builder made */
            state_apply(st, im, c);
        }
    }
}

/* Does the database hold exactly this state? On a difference, why says where. */
static bool state_matches(shoal_db *db, const struct state *st, char *why, size_t cap)
{
    for (unsigned i = 0; i < IMAGE_NS; i++) {
        shoal_ns *ns = NULL;
        int err = shoal_ns_open(db, image_ns_names[i], NULL, &ns);
        if (err) {
            snprintf(why, cap, "namespace %s: %s", image_ns_names[i], shoal_error_name(err));
            return false;
        }
        shoal_iter *it = NULL;
        if (shoal_iter_new(ns, NULL, &it) != 0) {
            shoal_ns_close(ns);
            snprintf(why, cap, "iterator on %s", image_ns_names[i]);
            return false;
        }
        bool ok = true;
        size_t found = 0, expected = 0;
        int more;
        while (ok && (more = shoal_iter_next(it)) == 1) {
            size_t klen, vlen;
            const void *key = shoal_iter_key(it, &klen);
            const uint8_t *value = shoal_iter_value(it, &vlen);
            int k = image_key_index(key, klen);
            if (k < 0) {
                snprintf(why, cap, "%s holds a key never written: '%.*s'", image_ns_names[i],
                         (int)klen, (const char *)key);
                ok = false;
                break;
            }
            const struct key_state *ks = &st->keys[i][k];
            uint8_t want[IMAGE_VALUE_MAX];
            test_fill_pattern(want, ks->len, ks->seed);
            if (!ks->present) {
                snprintf(why, cap, "%s key %d is present, expected absent", image_ns_names[i], k);
                ok = false;
            } else if (vlen != ks->len || memcmp(value, want, vlen) != 0) {
                snprintf(why, cap, "%s key %d holds another value than that of seq %" PRIu64,
                         image_ns_names[i], k, ks->seq);
                ok = false;
            }
            found++;
        }
        shoal_iter_free(it);
        shoal_ns_close(ns);
        if (!ok)
            return false;
        for (unsigned k = 0; k < IMAGE_KEYS; k++)
            expected += st->keys[i][k].present;
        if (found != expected) {
            snprintf(why, cap, "%s holds %zu keys, expected %zu", image_ns_names[i], found,
                     expected);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------------------
 * Cases.
 * ---------------------------------------------------------------------------------- */

enum damage_kind { DAMAGE_FLIP, DAMAGE_TRUNCATE, DAMAGE_REMOVE };

struct damage {
    char file[128]; /* relative to the database directory */
    enum damage_kind kind;
    uint64_t offset;
    /* For log segments: the stream, the segment and the prefix the damage leaves. */
    int stream; /* -1: not a log segment */
    unsigned segment;
    size_t kept;
};

struct outcome_counts {
    unsigned cases, full, cut, corrupt, salvaged;
};

static void damage_describe(const struct damage *d, char *out, size_t cap)
{
    static const char *const kinds[] = {"bit flip", "truncation", "removal"};
    snprintf(out, cap, "%s of %s at offset %" PRIu64, kinds[d->kind], d->file, d->offset);
}

static void damage_apply(const struct image *im, const struct damage *d)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", im->work, d->file);
    if (d->kind == DAMAGE_REMOVE) {
        assert_int_equal(unlink(path), 0);
        return;
    }
    size_t len = 0;
    uint8_t *data = testing_read_file(path, &len);
    assert_non_null(data);
    assert_true(d->offset < len || (d->kind == DAMAGE_TRUNCATE && d->offset <= len));
    if (d->kind == DAMAGE_FLIP) {
        data[d->offset] ^= (uint8_t)(1u << (d->offset % 8));
    } else {
        len = (size_t)d->offset;
    }
    assert_int_equal(testing_write_file(path, data, len), 0);
    free(data);
}

static int reopen(const struct image *im, bool salvage, shoal_db **db)
{
    shoal_options *opts = NULL;
    assert_ok(shoal_options_new(&opts));
    assert_ok(shoal_options_set(opts, SHOAL_OPT_LOG_STREAMS, MAX_STREAMS));
    if (salvage)
        assert_ok(shoal_options_set(opts, SHOAL_OPT_SALVAGE, 1));
    *db = NULL;
    int err = durable_open(im->work, opts, nosync(), db);
    shoal_options_free(opts);
    return err;
}

/* Is the damage at the end of its stream, where a cut tail is the right answer? */
static bool damage_at_stream_end(const struct image *im, const struct damage *d)
{
    if (d->stream < 0)
        return false;
    const struct stream *sm = &im->streams[d->stream];
    if (d->segment + 1 != sm->segments)
        return false;
    return d->kind == DAMAGE_TRUNCATE || d->kind == DAMAGE_REMOVE || d->kept + 1 >= sm->count;
}

/* Does the damage leave a stream that ends cleanly, where nothing says bytes were lost: a
 * lost last segment, or a last segment truncated to nothing, to its bare header or at a
 * record boundary? (A crash can leave each of these; the reader cannot tell them from a
 * stream that was never longer, so torn_streams may stay 0.) */
static bool damage_leaves_clean_end(const struct image *im, const struct damage *d)
{
    if (d->kind == DAMAGE_REMOVE)
        return true;
    if (d->kind != DAMAGE_TRUNCATE)
        return false;
    const struct stream *sm = &im->streams[d->stream];
    uint64_t boundary = d->kept > sm->first_of[d->segment] ? sm->records[d->kept - 1].end
                                                           : sm->header_sizes[d->segment];
    return d->offset == 0 || d->offset == boundary;
}

/* Does the error detail name the damaged file? A log segment that lost bytes may also be
 * named by the next segment of its stream (whose header records the length it should
 * have); a lost segment, which has no name left to give, by its neighbours: wal.c reports
 * a gap at the end of the segment before it. */
static bool detail_names_file(const struct image *im, const struct damage *d, const char *detail)
{
    if (strstr(detail, d->file))
        return true;
    if (d->stream < 0 || d->kind == DAMAGE_FLIP)
        return false;
    const struct stream *sm = &im->streams[d->stream];
    char neighbour[128];
    if (d->segment + 1 < sm->segments) {
        snprintf(neighbour, sizeof neighbour, "log/%d/%s", d->stream, sm->names[d->segment + 1]);
        if (strstr(detail, neighbour))
            return true;
    }
    if (d->kind == DAMAGE_REMOVE && d->segment > 0) {
        snprintf(neighbour, sizeof neighbour, "log/%d/%s", d->stream, sm->names[d->segment - 1]);
        if (strstr(detail, neighbour))
            return true;
    }
    return false;
}

/* Runs one case on a fresh copy of the pristine image and checks the outcome. */
static void run_case(const struct image *im, const struct damage *d, const struct state *full,
                     struct outcome_counts *counts)
{
    char what[256], why[256] = "";
    damage_describe(d, what, sizeof what);
    testing_remove_tree(im->work);
    copy_tree(im->pristine, im->work);
    damage_apply(im, d);
    counts->cases++;

    struct state cut;
    bool has_cut = d->stream >= 0 && d->kept < im->streams[d->stream].count;
    if (has_cut)
        state_expected(im, d->stream, d->kept, &cut);

    shoal_db *db = NULL;
    int err = reopen(im, false, &db);
    if (err == 0) {
        shoal_db_stats st;
        assert_ok(shoal_stats(db, &st));
        bool is_full = state_matches(db, full, why, sizeof why);
        char why_cut[256] = "";
        bool is_cut = !is_full && has_cut && state_matches(db, &cut, why_cut, sizeof why_cut);
        assert_ok(shoal_close(db));
        if (is_full) {
            counts->full++;
            return;
        }
        if (is_cut && damage_at_stream_end(im, d) &&
            (st.torn_streams > 0 || damage_leaves_clean_end(im, d))) {
            counts->cut++;
            return;
        }
        if (is_cut)
            print_error("%s: opened with the stream cut at record %zu, but the damage is "
                        "not at the end of the stream (or torn_streams is %u)\n",
                        what, d->kept, st.torn_streams);
        else
            print_error("%s: opened with WRONG DATA: against the full state: %s; against "
                        "the cut at record %zu: %s\n",
                        what, why, d->kept, has_cut ? why_cut : "(no cut applies)");
        fail();
    }
    const char *detail = shoal_error_detail();
    if (err != SHOAL_ECORRUPT || !detail_names_file(im, d, detail)) {
        print_error("%s: open returned %s with detail \"%s\"; expected success or ECORRUPT "
                    "naming the file\n",
                    what, shoal_error_name(err), detail);
        fail();
    }
    counts->corrupt++;
    if (d->stream < 0)
        return;
    /* Salvage keeps the longest valid prefix: exactly the records before the damage. */
    err = reopen(im, true, &db);
    if (err) {
        print_error("%s: salvage: %s (%s)\n", what, shoal_error_name(err), shoal_error_detail());
        fail();
    }
    const struct state *want = has_cut ? &cut : full;
    bool ok = state_matches(db, want, why, sizeof why);
    assert_ok(shoal_close(db));
    if (!ok) {
        print_error("%s: salvage opened, but not with the stream cut at record %zu: %s\n", what,
                    d->kept, why);
        fail();
    }
    counts->salvaged++;
}

/* The intact records of stream s when its segment g is damaged from offset p on. */
static size_t intact_records(const struct image *im, unsigned s, unsigned g, uint64_t p)
{
    const struct stream *sm = &im->streams[s];
    size_t kept = sm->first_of[g];
    while (kept < sm->first_of[g + 1] && sm->records[kept].end <= p)
        kept++;
    return kept;
}

/* Offsets to damage in a file of len bytes: every 97th byte, or denser for a small file
 * so that it gets about `most` cases; never more than `most`. */
static uint64_t stride_for(uint64_t len, unsigned most)
{
    uint64_t stride = len / most + 1;
    if (len > 97ull * most / 4 && stride < 97)
        stride = 97;
    return stride;
}

struct run {
    const struct image *im;
    struct state full;
    struct outcome_counts counts;
    uint64_t deadline;
    bool out_of_time;
};

static void damage_file(struct run *r, const char *file, int stream, unsigned segment, uint64_t len,
                        unsigned most)
{
    uint64_t stride = stride_for(len, most);
    for (int kind = DAMAGE_FLIP; kind <= DAMAGE_TRUNCATE; kind++) {
        /* Truncations: fewer, from offset 0 (an empty file) on. */
        uint64_t step = kind == DAMAGE_FLIP ? stride : stride * 2;
        for (uint64_t p = kind == DAMAGE_FLIP ? stride / 3 : 0; p < len; p += step) {
            if (!test_before(r->deadline)) {
                r->out_of_time = true;
                return;
            }
            struct damage d = {
                .kind = (enum damage_kind)kind, .offset = p, .stream = stream, .segment = segment};
            snprintf(d.file, sizeof d.file, "%s", file);
            if (stream >= 0)
                d.kept = intact_records(r->im, (unsigned)stream, segment, p);
            run_case(r->im, &d, &r->full, &r->counts);
        }
    }
}

static struct image image;

static int image_setup(void **state)
{
    (void)state;
    memset(&image, 0, sizeof image);
    image_build(&image, test_seed(0xC0FFEE), SHOAL_TEST_SCALE(700, 400),
                SHOAL_TEST_SCALE(1800, 1400));
    return 0;
}

static int image_teardown(void **state)
{
    (void)state;
    image_free(&image);
    return 0;
}

/* The image is what the test thinks it is: an undamaged copy opens with the full state,
 * there are several segments per stream after the checkpoint, and a cut the oracle
 * computes differs from the full state (so the checks can tell them apart). */
static void test_image_is_sound(void **state)
{
    (void)state;
    struct run r = {.im = &image};
    state_expected(&image, -1, 0, &r.full);
    assert_true(image.checkpoint_seq > 0);
    assert_true(image.checkpoint_file_count >= 2);
    assert_int_equal(image.stream_count, MAX_STREAMS);
    for (unsigned s = 0; s < image.stream_count; s++) {
        const struct stream *sm = &image.streams[s];
        print_message("stream %u: %u segments, %zu records, last segment %s (%" PRIu64
                      " bytes), the one before %" PRIu64 " bytes, ends at %" PRIu64 "\n",
                      s, sm->segments, sm->count, sm->names[sm->segments - 1],
                      sm->sizes[sm->segments - 1], sm->sizes[sm->segments - 2],
                      sm->records[sm->first_of[sm->segments - 1] - 1].end);
        assert_true(image.streams[s].segments >= 3);
        assert_true(image.streams[s].count > 50);
        for (size_t i = 0; i < image.streams[s].count; i++)
            assert_true(image.streams[s].records[i].seq > image.checkpoint_seq);
    }
    testing_remove_tree(image.work);
    copy_tree(image.pristine, image.work);
    shoal_db *db = NULL;
    assert_ok(reopen(&image, false, &db));
    char why[256];
    if (!state_matches(db, &r.full, why, sizeof why)) {
        print_error("the undamaged image: %s\n", why);
        fail();
    }
    shoal_db_stats st;
    assert_ok(shoal_stats(db, &st));
    assert_int_equal(st.torn_streams, 0);
    assert_int_equal(st.checkpoint_seq, image.checkpoint_seq);
    assert_ok(shoal_close(db));
    struct state cut;
    state_expected(&image, 0, image.streams[0].count / 2, &cut);
    bool differs = memcmp(&cut, &r.full, sizeof cut) != 0;
    assert_true(differs);
}

static void test_log_segment_damage(void **state)
{
    (void)state;
    static struct run r;
    memset(&r, 0, sizeof r);
    r.im = &image;
    r.deadline = test_deadline(SHOAL_TEST_SCALE(35, 45));
    state_expected(&image, -1, 0, &r.full);
    for (unsigned s = 0; s < image.stream_count && !r.out_of_time; s++) {
        const struct stream *sm = &image.streams[s];
        for (unsigned g = 0; g < sm->segments && !r.out_of_time; g++) {
            char file[128];
            snprintf(file, sizeof file, "log/%u/%s", s, sm->names[g]);
            damage_file(&r, file, (int)s, g, sm->sizes[g], SHOAL_TEST_SCALE(60, 8));
        }
    }
    print_message("log segments: %u cases: %u full, %u cut tails, %u ECORRUPT (%u salvaged)%s\n",
                  r.counts.cases, r.counts.full, r.counts.cut, r.counts.corrupt, r.counts.salvaged,
                  r.out_of_time ? "; stopped by the time limit" : "");
    assert_true(r.counts.cut > 0);
    assert_true(r.counts.corrupt > 0);
}

static void test_checkpoint_damage(void **state)
{
    (void)state;
    static struct run r;
    memset(&r, 0, sizeof r);
    r.im = &image;
    r.deadline = test_deadline(SHOAL_TEST_SCALE(15, 25));
    state_expected(&image, -1, 0, &r.full);
    for (unsigned i = 0; i < image.checkpoint_file_count && !r.out_of_time; i++) {
        char path[4300];
        snprintf(path, sizeof path, "%s/%s", image.pristine, image.checkpoint_files[i]);
        long long len = testing_file_size(path);
        assert_true(len > 0);
        damage_file(&r, image.checkpoint_files[i], -1, 0, (uint64_t)len, SHOAL_TEST_SCALE(80, 10));
    }
    print_message("checkpoint files: %u cases: %u full, %u ECORRUPT%s\n", r.counts.cases,
                  r.counts.full, r.counts.corrupt,
                  r.out_of_time ? "; stopped by the time limit" : "");
    assert_true(r.counts.corrupt > 0);
}

static void test_manifest_damage(void **state)
{
    (void)state;
    static struct run r;
    memset(&r, 0, sizeof r);
    r.im = &image;
    r.deadline = test_deadline(SHOAL_TEST_SCALE(10, 30));
    state_expected(&image, -1, 0, &r.full);
    char path[4300];
    snprintf(path, sizeof path, "%s/MANIFEST", image.pristine);
    long long len = testing_file_size(path);
    assert_true(len > 32);
    /* Small: every byte. */
    damage_file(&r, "MANIFEST", -1, 0, (uint64_t)len, (unsigned)len);
    print_message("MANIFEST: %u cases: %u full, %u ECORRUPT\n", r.counts.cases, r.counts.full,
                  r.counts.corrupt);
    assert_int_equal(r.counts.corrupt, r.counts.cases);
}

/* A lost MANIFEST while checkpoint files and log segments with records are there: not a
 * state any crash leaves (the MANIFEST is written before the first record can be), so it
 * is damage, not a fresh directory. */
static void test_lost_manifest(void **state)
{
    (void)state;
    static struct run r;
    memset(&r, 0, sizeof r);
    r.im = &image;
    state_expected(&image, -1, 0, &r.full);
    struct damage d = {.file = "MANIFEST", .kind = DAMAGE_REMOVE, .stream = -1};
    run_case(&image, &d, &r.full, &r.counts);
}

/* Other lost files. A lost checkpoint file or middle segment is damage; a lost last
 * segment is the end of the stream (a cut that the reader cannot tell from a crash before
 * the segment was created). */
static void test_lost_files(void **state)
{
    (void)state;
    static struct run r;
    memset(&r, 0, sizeof r);
    r.im = &image;
    state_expected(&image, -1, 0, &r.full);
    for (unsigned i = 0; i < image.checkpoint_file_count && i < 2; i++) {
        struct damage d = {.kind = DAMAGE_REMOVE, .stream = -1};
        snprintf(d.file, sizeof d.file, "%s", image.checkpoint_files[i]);
        run_case(&image, &d, &r.full, &r.counts);
    }
    for (unsigned s = 0; s < image.stream_count; s++) {
        const struct stream *sm = &image.streams[s];
        for (unsigned g = 1; g < sm->segments; g++) {
            struct damage d = {
                .kind = DAMAGE_REMOVE, .stream = (int)s, .segment = g, .kept = sm->first_of[g]};
            snprintf(d.file, sizeof d.file, "log/%u/%s", s, sm->names[g]);
            run_case(&image, &d, &r.full, &r.counts);
        }
    }
    print_message("lost files: %u cases: %u full, %u cut tails, %u ECORRUPT\n", r.counts.cases,
                  r.counts.full, r.counts.cut, r.counts.corrupt);
    assert_int_equal(r.counts.full, 0);
}

/* The first segment of a stream after the checkpoint is lost. Its successor's header names
 * it as the previous segment, with a seq bound above the checkpoint's (its records have
 * seqs above it, so no checkpoint can have deleted it): replaying the later segments
 * without it would give a state that is no prefix of the stream. Damage, or at most a
 * cut before it; salvage keeps nothing of the stream after the checkpoint. */
static void test_lost_first_segment_after_checkpoint(void **state)
{
    (void)state;
    static struct run r;
    memset(&r, 0, sizeof r);
    r.im = &image;
    state_expected(&image, -1, 0, &r.full);
    for (unsigned s = 0; s < image.stream_count; s++) {
        const struct stream *sm = &image.streams[s];
        struct damage d = {.kind = DAMAGE_REMOVE, .stream = (int)s, .segment = 0, .kept = 0};
        snprintf(d.file, sizeof d.file, "log/%u/%s", s, sm->names[0]);
        assert_true(sm->records[0].seq > image.checkpoint_seq);
        run_case(&image, &d, &r.full, &r.counts);
    }
    /* run_case would also accept the full state or a cut tail; neither may happen here:
     * every record of the lost segment is after the checkpoint, and it is no tail. */
    print_message("lost first segments: %u cases: %u ECORRUPT (%u salvaged)\n", r.counts.cases,
                  r.counts.corrupt, r.counts.salvaged);
    assert_int_equal(r.counts.cases, image.stream_count);
    assert_int_equal(r.counts.corrupt, r.counts.cases);
    assert_int_equal(r.counts.salvaged, r.counts.cases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_is_sound),
        cmocka_unit_test(test_log_segment_damage),
        cmocka_unit_test(test_checkpoint_damage),
        cmocka_unit_test(test_manifest_damage),
        cmocka_unit_test(test_lost_files),
        cmocka_unit_test(test_lost_first_segment_after_checkpoint),
        cmocka_unit_test(test_lost_manifest),
    };
    return cmocka_run_group_tests(tests, image_setup, image_teardown);
}
