/*
 * check.c -- `shoal check DIR`: verifies every checksum of a durable database and says what
 * is damaged, where, without changing anything.
 *
 * What it reads, in order (the formats are in docs/FORMAT.md):
 *   1. DIR/MANIFEST: its frame and checksums (manifest_read), then the catalog body the
 *      core keeps in it (durable.c): version, checkpoint seq and shard mask, shard count,
 *      tenants and namespaces, each field checked against the limits the engine accepts.
 *   2. The checkpoint the MANIFEST names: every file of its shard mask, every block (frame,
 *      both checksums, decompression, the trailer's counts), and the entries inside the
 *      raw image (namespace id, key and value lengths) across block seams. Checkpoint
 *      directories and files the MANIFEST does not name are reported as stray.
 *   3. Every log stream: every record of every segment through wal_replay in read-only
 *      mode, with a callback that decodes each payload with log_decode, so a record whose
 *      checksum matches but whose payload is malformed is found too.
 *
 * Output: one line per file, "PATH: OK (...)", "PATH: DAMAGED at offset N: ...",
 * "PATH: WARNING: ..." or "PATH: ERROR: ...", then a summary line. A torn tail at the end of
 * a stream's last segment is a warning, not damage: the next open cuts it off, as a crash
 * in the middle of a write leaves it (architecture invariant 4). Segments after a damaged
 * one in the same stream are listed as not verified: the log reader stops at damage.
 *
 * Exit status: 0 when nothing is damaged (warnings allowed), 1 when anything is damaged
 * (even if some file could not be read), 2 for a usage error, a directory that holds no
 * database, one in use, or an I/O error with no damage found.
 *
 * Invariants:
 *   1. Nothing under DIR is created, written, truncated or deleted, with one exception:
 *      DIR/LOCK is opened (and created if a database directory lacks it) to hold the lock.
 *      Log segments are opened read-only (wal_replay with read_only), checkpoint files and
 *      the MANIFEST are only read.
 *   2. The check runs only while no other process or handle has DIR open: it holds DIR/LOCK
 *      (dir_lock) from before the first read to after the last, so nothing changes under it.
 *      A lock held elsewhere is reported as "in use" (exit 2), never waited for.
 *   3. Every damage line names the file and the offset of the first bad structure, as
 *      the engine's own readers report it.
 *
 * How it is tested: tests/cli/cli_durable.sh checks a clean database (exit 0), a log segment
 * with a byte flipped in its middle (exit 1, the segment named), and that the check leaves
 * every file as it found it.
 */
#include "cli.h"

#include "shoal.h"

#include "core/log.h"
#include "durability/ckpt_file.h"
#include "durability/encoding.h"
#include "durability/io.h"
#include "durability/manifest.h"
#include "durability/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CLI_CHECK_PATH_MAX 4200
/* The catalog body version the core writes (durable.c, CATALOG_VERSION). */
#define CLI_CHECK_CATALOG_VERSION 1u
/* What the log callback returns to stop a replay at a record whose payload is malformed. */
#define CLI_CHECK_BAD_PAYLOAD 1

/* One namespace of the catalog: its id, for telling the entries of live namespaces from
 * those of namespaces dropped since they were written. */
typedef struct cli_check_namespace {
    uint32_t id;
} cli_check_namespace;

typedef struct cli_check_state {
    const char *dir;
    const struct shoal_io *io;
    unsigned files, damaged, warnings, errors;
    /* The catalog, once the MANIFEST was read and parsed. */
    bool have_catalog;
    uint64_t checkpoint_seq, checkpoint_shards;
    uint32_t shards, tenants;
    cli_check_namespace *namespaces;
    uint32_t namespace_count;
} cli_check_state;

/* ---- output ------------------------------------------------------------------------------ */

static void cli_check_line(const char *path, const char *status, const char *fmt, va_list ap)
{
    printf("%s: %s", path, status);
    if (fmt && *fmt) {
        fputs(" ", stdout);
        vprintf(fmt, ap);
    }
    fputc('\n', stdout);
}

static void cli_check_ok(cli_check_state *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cli_check_ok(cli_check_state *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->files++;
    cli_check_line(path, "OK", fmt, ap);
    va_end(ap);
}

static void cli_check_damage(cli_check_state *c, const char *path, uint64_t offset, const char *fmt,
                             ...) __attribute__((format(printf, 4, 5)));
static void cli_check_damage(cli_check_state *c, const char *path, uint64_t offset, const char *fmt,
                             ...)
{
    char status[64];
    snprintf(status, sizeof status, "DAMAGED at offset %" PRIu64 ":", offset);
    va_list ap;
    va_start(ap, fmt);
    c->files++;
    c->damaged++;
    cli_check_line(path, status, fmt, ap);
    va_end(ap);
}

static void cli_check_warning(cli_check_state *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cli_check_warning(cli_check_state *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->warnings++;
    cli_check_line(path, "WARNING:", fmt, ap);
    va_end(ap);
}

static void cli_check_error(cli_check_state *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cli_check_error(cli_check_state *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->errors++;
    cli_check_line(path, "ERROR:", fmt, ap);
    va_end(ap);
}

/* ---- small helpers ----------------------------------------------------------------------- */

static bool cli_check_exists(const char *path, bool want_directory)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    return want_directory ? S_ISDIR(st.st_mode) : true;
}

/* Writes "a/b" into out (CLI_CHECK_PATH_MAX bytes); a path that does not fit is cut, which
 * only shortens what is printed (DIR itself is bounded when the check starts). */
static void cli_check_join(char *out, const char *a, const char *b)
{
    int n = snprintf(out, CLI_CHECK_PATH_MAX, "%s/%s", a, b);
    if (n < 0 || n >= CLI_CHECK_PATH_MAX)
        out[CLI_CHECK_PATH_MAX - 1] = 0;
}

/* A growing list of names, for directory listings. */
typedef struct cli_check_names {
    char **names;
    size_t count, cap;
    bool out_of_memory;
} cli_check_names;

static int cli_check_names_add(void *ctx, const char *name)
{
    cli_check_names *l = ctx;
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **grown = realloc(l->names, cap * sizeof *grown);
        if (!grown) {
            l->out_of_memory = true;
            return 1;
        }
        l->names = grown;
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        l->out_of_memory = true;
        return 1;
    }
    l->names[l->count++] = copy;
    return 0;
}

static int cli_check_names_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void cli_check_names_free(cli_check_names *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

/* Lists a directory's entries, sorted. Returns 0, -ENOENT for a missing directory, or
 * another negative errno. */
static int cli_check_list(cli_check_state *c, const char *path, cli_check_names *l)
{
    memset(l, 0, sizeof *l);
    int rc = c->io->list_dir(c->io, path, cli_check_names_add, l);
    if (l->out_of_memory)
        rc = -ENOMEM;
    if (rc < 0) {
        cli_check_names_free(l);
        return rc;
    }
    if (l->count > 1)
        qsort(l->names, l->count, sizeof *l->names, cli_check_names_compare);
    return 0;
}

/* Parses "<20 digits><suffix>" (zero-padded seqs and bases). */
static bool cli_check_parse_number(const char *name, const char *suffix, uint64_t *out)
{
    size_t suffix_len = strlen(suffix), len = strlen(name);
    if (len != 20 + suffix_len || strcmp(name + 20, suffix) != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t digit = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

static bool cli_check_namespace_known(const cli_check_state *c, uint32_t id)
{
    for (uint32_t i = 0; i < c->namespace_count; i++)
        if (c->namespaces[i].id == id)
            return true;
    return false;
}

/* ---- MANIFEST and catalog ------------------------------------------------------------------ */

/* Bounds-checked little-endian reads over the catalog body. */
typedef struct cli_check_reader {
    const uint8_t *start, *p, *end;
    bool failed;
} cli_check_reader;

static const uint8_t *cli_check_take(cli_check_reader *r, size_t n)
{
    if (r->failed || (size_t)(r->end - r->p) < n) {
        r->failed = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

static uint64_t cli_check_get(cli_check_reader *r, size_t n)
{
    const uint8_t *p = cli_check_take(r, n);
    if (!p)
        return 0;
    switch (n) {
    case 1:
        return p[0];
    case 2:
        return encoding_get_u16(p);
    case 4:
        return encoding_get_u32(p);
    default:
        return encoding_get_u64(p);
    }
}

/* Offset of the body's byte at the reader's position, in the MANIFEST file. */
static uint64_t cli_check_body_offset(const cli_check_reader *r)
{
    return MANIFEST_HEADER_SIZE + (uint64_t)(r->p - r->start);
}

/* Reads a name field (u16 length, bytes) and checks what the engine requires of names:
 * 1..SHOAL_MAX_NAME bytes, no NUL byte (names are C strings). */
static bool cli_check_name(cli_check_reader *r, char *out)
{
    uint16_t len = (uint16_t)cli_check_get(r, 2);
    const uint8_t *name = cli_check_take(r, len);
    if (!name || len == 0 || len > SHOAL_MAX_NAME || memchr(name, 0, len))
        return false;
    memcpy(out, name, len);
    out[len] = 0;
    return true;
}

/* Validates the catalog body; fills the catalog fields of c. Reports damage itself. */
static void cli_check_catalog(cli_check_state *c, const char *path, const uint8_t *body, size_t len)
{
    cli_check_reader r = {body, body, body + len, false};
    uint32_t version = (uint32_t)cli_check_get(&r, 4);
    uint64_t checkpoint_seq = cli_check_get(&r, 8);
    uint64_t checkpoint_shards = cli_check_get(&r, 8);
    uint32_t shards = (uint32_t)cli_check_get(&r, 4);
    uint32_t next_ns_id = (uint32_t)cli_check_get(&r, 4);
    if (r.failed) {
        cli_check_damage(c, path, MANIFEST_HEADER_SIZE, "the catalog body is too short (%zu bytes)",
                         len);
        return;
    }
    if (version > CLI_CHECK_CATALOG_VERSION) {
        cli_check_error(c, path, "catalog version %u is newer than this tool knows (%u)", version,
                        CLI_CHECK_CATALOG_VERSION);
        return;
    }
    if (version != CLI_CHECK_CATALOG_VERSION || shards == 0 || shards > SHOAL_MAX_SHARDS ||
        (shards & (shards - 1))) {
        cli_check_damage(c, path, MANIFEST_HEADER_SIZE,
                         "catalog header: version %u, %u shards (a power of two, 1..%d expected)",
                         version, shards, SHOAL_MAX_SHARDS);
        return;
    }
    uint64_t allowed = shards == 64 ? UINT64_MAX : (1ull << shards) - 1;
    if ((checkpoint_shards & ~allowed) || (checkpoint_seq == 0 && checkpoint_shards != 0)) {
        cli_check_damage(c, path, MANIFEST_HEADER_SIZE + 12,
                         "the checkpoint shard mask 0x%" PRIx64
                         " does not fit %u shards at seq %" PRIu64,
                         checkpoint_shards, shards, checkpoint_seq);
        return;
    }

    uint32_t tenants = (uint32_t)cli_check_get(&r, 4);
    char name[SHOAL_MAX_NAME + 1];
    for (uint32_t i = 0; i < tenants; i++) {
        uint64_t at = cli_check_body_offset(&r);
        uint32_t id = (uint32_t)cli_check_get(&r, 4);
        bool named = cli_check_name(&r, name);
        cli_check_take(&r, 24); /* the quota: any value is one the engine accepts */
        if (r.failed || !named || id != i) {
            cli_check_damage(c, path, at, "tenant %u of %u is malformed", i, tenants);
            return;
        }
    }
    uint32_t namespaces = (uint32_t)cli_check_get(&r, 4);
    if (r.failed || namespaces > len / 16) {
        cli_check_damage(c, path, cli_check_body_offset(&r), "the namespace count is malformed");
        return;
    }
    cli_check_namespace *list = calloc(namespaces ? namespaces : 1, sizeof *list);
    char(*names)[SHOAL_MAX_NAME + 1] = calloc(namespaces ? namespaces : 1, sizeof *names);
    if (!list || !names) {
        free(list);
        free(names);
        cli_check_error(c, path, "out of memory for %u namespaces", namespaces);
        return;
    }
    for (uint32_t i = 0; i < namespaces; i++) {
        uint64_t at = cli_check_body_offset(&r);
        uint32_t id = (uint32_t)cli_check_get(&r, 4);
        uint32_t tenant = (uint32_t)cli_check_get(&r, 4);
        uint8_t kind = (uint8_t)cli_check_get(&r, 1);
        uint8_t placement = (uint8_t)cli_check_get(&r, 1);
        uint32_t shard = (uint32_t)cli_check_get(&r, 4);
        bool named = cli_check_name(&r, names[i]);
        const char *problem = NULL;
        if (r.failed || !named)
            problem = "cut short or badly named";
        else if (tenant >= tenants)
            problem = "its tenant does not exist";
        else if (kind != SHOAL_KIND_KV)
            problem = "unknown kind";
        else if (placement != SHOAL_PLACE_PINNED && placement != SHOAL_PLACE_SPREAD)
            problem = "unknown placement";
        else if (shard >= shards)
            problem = "its shard is out of range";
        for (uint32_t k = 0; !problem && k < i; k++) {
            if (list[k].id == id)
                problem = "its id is used twice";
            else if (strcmp(names[k], names[i]) == 0)
                problem = "its name is used twice";
        }
        if (problem) {
            cli_check_damage(c, path, at, "namespace %u of %u: %s", i, namespaces, problem);
            free(list);
            free(names);
            return;
        }
        list[i].id = id;
    }
    free(names);
    if (r.p != r.end) {
        cli_check_damage(c, path, cli_check_body_offset(&r),
                         "%zu unexpected bytes after the catalog", (size_t)(r.end - r.p));
        free(list);
        return;
    }
    c->have_catalog = true;
    c->checkpoint_seq = checkpoint_seq;
    c->checkpoint_shards = checkpoint_shards;
    c->shards = shards;
    c->tenants = tenants;
    c->namespaces = list;
    c->namespace_count = namespaces;
    cli_check_ok(c, path,
                 "(catalog v%u: %u shards, %u tenant%s, %u namespace%s, next namespace id %u; "
                 "checkpoint seq %" PRIu64 ")",
                 version, shards, tenants, tenants == 1 ? "" : "s", namespaces,
                 namespaces == 1 ? "" : "s", next_ns_id, checkpoint_seq);
}

static void cli_check_manifest(cli_check_state *c)
{
    char path[CLI_CHECK_PATH_MAX];
    snprintf(path, sizeof path, "%s/MANIFEST", c->dir);
    void *body = NULL;
    size_t len = 0;
    int err = manifest_read(c->io, c->dir, &body, &len);
    if (err == 0)
        cli_check_catalog(c, path, body, len);
    else if (err == SHOAL_ENOTFOUND)
        cli_check_damage(c, path, 0, "missing, but the directory holds log or checkpoint files");
    else if (err == SHOAL_ECORRUPT)
        cli_check_damage(c, path, 0, "bad magic, length or checksum");
    else if (err == SHOAL_ENOTSUP)
        cli_check_error(c, path, "written by a newer format version");
    else
        cli_check_error(c, path, "%s", shoal_strerror(err));
    free(body);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

/* Walks the entries of a checkpoint image as its blocks arrive: an entry's 12-byte header or
 * its key and value may straddle blocks. */
typedef struct cli_check_image {
    uint8_t header[12];
    size_t header_len;  /* bytes of the current entry's header seen so far */
    uint64_t remaining; /* key and value bytes of the current entry still to skip */
    uint64_t entries, foreign;
    const char *problem; /* the first malformed entry found, or NULL */
} cli_check_image;

static void cli_check_image_feed(cli_check_image *im, const cli_check_state *c, const uint8_t *data,
                                 size_t len)
{
    while (len > 0 && !im->problem) {
        if (im->remaining > 0) {
            size_t n = im->remaining < len ? (size_t)im->remaining : len;
            im->remaining -= n;
            data += n;
            len -= n;
            continue;
        }
        size_t n = sizeof im->header - im->header_len;
        if (n > len)
            n = len;
        memcpy(im->header + im->header_len, data, n);
        im->header_len += n;
        data += n;
        len -= n;
        if (im->header_len < sizeof im->header)
            continue;
        uint32_t ns_id = encoding_get_u32(im->header);
        uint32_t klen = encoding_get_u32(im->header + 4);
        uint32_t vlen = encoding_get_u32(im->header + 8);
        if (klen == 0 || klen > SHOAL_MAX_KEY || vlen > SHOAL_MAX_VALUE) {
            im->problem = "an entry's key or value length is out of range";
            return;
        }
        im->header_len = 0;
        im->remaining = (uint64_t)klen + vlen;
        im->entries++;
        if (!cli_check_namespace_known(c, ns_id))
            im->foreign++;
    }
}

static void cli_check_checkpoint_file(cli_check_state *c, const char *path, uint32_t shard)
{
    struct ckpt_reader *r;
    uint32_t header_shard;
    uint64_t header_seq;
    int err = ckpt_reader_open(c->io, path, &r, &header_shard, &header_seq);
    if (err == SHOAL_ENOTFOUND) {
        cli_check_damage(c, path, 0, "missing: the MANIFEST names shard %u of checkpoint %" PRIu64,
                         shard, c->checkpoint_seq);
        return;
    }
    if (err == SHOAL_ECORRUPT) {
        cli_check_damage(c, path, 0, "bad file header");
        return;
    }
    if (err) {
        cli_check_error(c, path, "%s",
                        err == SHOAL_ENOTSUP ? "written by a newer format version"
                                             : shoal_strerror(err));
        return;
    }
    if (header_shard != shard || header_seq != c->checkpoint_seq) {
        cli_check_damage(c, path, 0, "the header names shard %u at seq %" PRIu64, header_shard,
                         header_seq);
        ckpt_reader_close(r);
        return;
    }
    cli_check_image im = {0};
    uint64_t blocks = 0, raw = 0, block_offset = ckpt_reader_offset(r);
    const void *data;
    size_t len;
    while ((err = ckpt_reader_next(r, &data, &len)) == 1) {
        blocks++;
        raw += len;
        cli_check_image_feed(&im, c, data, len);
        if (im.problem)
            break;
        block_offset = ckpt_reader_offset(r);
    }
    if (err == SHOAL_ECORRUPT)
        cli_check_damage(c, path, ckpt_reader_offset(r), "bad block, trailer or length");
    else if (err < 0)
        cli_check_error(c, path, "%s", shoal_strerror(err));
    else if (im.problem)
        cli_check_damage(c, path, block_offset, "in the block there: %s", im.problem);
    else if (im.header_len || im.remaining)
        cli_check_damage(c, path, ckpt_reader_offset(r),
                         "the image ends in the middle of an entry");
    else
        cli_check_ok(c, path, "(%" PRIu64 " block%s, %" PRIu64 " raw bytes, %" PRIu64 " entries%s)",
                     blocks, blocks == 1 ? "" : "s", raw, im.entries,
                     im.foreign ? ", some of namespaces dropped since" : "");
    ckpt_reader_close(r);
}

static void cli_check_checkpoint_dir(cli_check_state *c, const char *path)
{
    cli_check_names files;
    int rc = cli_check_list(c, path, &files);
    if (rc < 0) {
        cli_check_error(c, path, "cannot list: %s", strerror(-rc));
        return;
    }
    for (size_t i = 0; i < files.count; i++) {
        char file[CLI_CHECK_PATH_MAX];
        cli_check_join(file, path, files.names[i]);
        unsigned shard;
        char tail;
        if (sscanf(files.names[i], "shard-%u.ckp%c", &shard, &tail) != 2 || tail != 't' ||
            strlen(files.names[i]) > 16) {
            cli_check_warning(c, file, "stray: not a checkpoint file name");
        } else if (shard >= c->shards || !(c->checkpoint_shards & (1ull << shard))) {
            cli_check_warning(
                c, file, "stray: the MANIFEST does not name shard %u of this checkpoint", shard);
        }
    }
    cli_check_names_free(&files);
    for (uint32_t shard = 0; shard < c->shards; shard++) {
        if (!(c->checkpoint_shards & (1ull << shard)))
            continue;
        char file[CLI_CHECK_PATH_MAX];
        if (ckpt_path(file, sizeof file, c->dir, c->checkpoint_seq, shard) != 0) {
            cli_check_error(c, path, "path too long");
            continue;
        }
        cli_check_checkpoint_file(c, file, shard);
    }
}

static void cli_check_checkpoints(cli_check_state *c)
{
    char ckpt_dir[CLI_CHECK_PATH_MAX];
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/ckpt", c->dir);
    cli_check_names dirs = {0};
    int rc = cli_check_list(c, ckpt_dir, &dirs);
    if (rc < 0 && rc != -ENOENT) {
        cli_check_error(c, ckpt_dir, "cannot list: %s", strerror(-rc));
        return;
    }
    bool current_found = false;
    for (size_t i = 0; i < dirs.count; i++) {
        char path[CLI_CHECK_PATH_MAX];
        cli_check_join(path, ckpt_dir, dirs.names[i]);
        uint64_t seq;
        if (!cli_check_parse_number(dirs.names[i], "", &seq)) {
            cli_check_warning(c, path, "stray: not a checkpoint directory name");
        } else if (!c->have_catalog) {
            cli_check_warning(c, path,
                              "not verified: the MANIFEST that would name it is unreadable");
        } else if (seq != c->checkpoint_seq) {
            cli_check_warning(c, path,
                              "stray: a checkpoint the MANIFEST does not name (left by an "
                              "interrupted checkpoint; not verified, not used)");
        } else {
            current_found = true;
            cli_check_checkpoint_dir(c, path);
        }
    }
    cli_check_names_free(&dirs);
    if (c->have_catalog && c->checkpoint_shards && !current_found) {
        char path[CLI_CHECK_PATH_MAX];
        snprintf(path, sizeof path, "%s/ckpt/%020" PRIu64, c->dir, c->checkpoint_seq);
        cli_check_damage(c, path, 0, "missing: the MANIFEST names this checkpoint");
    }
}

/* ---- log streams ---------------------------------------------------------------------------- */

typedef struct cli_check_stream {
    cli_check_state *check;
    uint64_t records, puts, deletes, foreign, min_seq, max_seq;
    /* The record whose payload did not decode. */
    uint8_t bad_type;
    uint64_t bad_seq;
    size_t bad_len;
} cli_check_stream;

static int cli_check_op(void *ctx, const struct log_op *op)
{
    cli_check_stream *s = ctx;
    if (op->type == WRITE_PUT)
        s->puts++;
    else
        s->deletes++;
    if (s->check->have_catalog && !cli_check_namespace_known(s->check, op->ns_id))
        s->foreign++;
    return 0;
}

static int cli_check_record(void *ctx, uint8_t type, uint64_t seq, const void *payload, size_t len)
{
    cli_check_stream *s = ctx;
    int err = type <= LOG_BATCH ? log_decode(type, payload, len, cli_check_op, s) : SHOAL_ECORRUPT;
    if (err) {
        s->bad_type = type;
        s->bad_seq = seq;
        s->bad_len = len;
        return CLI_CHECK_BAD_PAYLOAD;
    }
    s->records++;
    if (s->min_seq == 0 || seq < s->min_seq)
        s->min_seq = seq;
    if (seq > s->max_seq)
        s->max_seq = seq;
    return 0;
}

/* Finds the file offset of the record (type, seq, len) in a segment whose records before it
 * were all verified by the replay; returns false if it is not there. */
static bool cli_check_find_record(cli_check_state *c, const char *path, const cli_check_stream *s,
                                  uint64_t *offset)
{
    int fd = c->io->open(c->io, path, O_RDONLY, 0);
    if (fd < 0)
        return false;
    uint64_t size = 0, at = WAL_SEGMENT_HEADER_SIZE;
    bool found = false;
    /* Records start after the segment header, whose size depends on its version. */
    uint8_t version[4];
    if (io_pread_full(c->io, fd, version, sizeof version, 8) == (ssize_t)sizeof version &&
        encoding_get_u32(version) == 1)
        at = WAL_SEGMENT_HEADER_SIZE_V1;
    if (c->io->file_size(c->io, fd, &size) == 0) {
        uint8_t header[WAL_RECORD_HEADER_SIZE];
        while (at + sizeof header <= size &&
               io_pread_full(c->io, fd, header, sizeof header, at) == (ssize_t)sizeof header) {
            uint32_t len = encoding_get_u32(header + 4);
            if (header[9] == s->bad_type && encoding_get_u64(header + 12) == s->bad_seq &&
                len == s->bad_len) {
                found = true;
                *offset = at;
                break;
            }
            if (header[9] == 0)
                break; /* zeros: the end of the records */
            at += sizeof header + (uint64_t)len;
        }
    }
    c->io->close(c->io, fd);
    return found;
}

static void cli_check_stream_run(cli_check_state *c, unsigned stream)
{
    char stream_dir[CLI_CHECK_PATH_MAX];
    snprintf(stream_dir, sizeof stream_dir, "%s/log/%u", c->dir, stream);
    cli_check_names names;
    int rc = cli_check_list(c, stream_dir, &names);
    if (rc == -ENOENT)
        return;
    if (rc < 0) {
        cli_check_error(c, stream_dir, "cannot list: %s", strerror(-rc));
        return;
    }
    /* The segments in base order (20-digit names sort as numbers). */
    uint64_t *bases = calloc(names.count ? names.count : 1, sizeof *bases);
    size_t count = 0;
    for (size_t i = 0; bases && i < names.count; i++) {
        if (cli_check_parse_number(names.names[i], ".wal", &bases[count])) {
            count++;
        } else {
            char path[CLI_CHECK_PATH_MAX];
            cli_check_join(path, stream_dir, names.names[i]);
            cli_check_warning(c, path, "stray: not a log segment name");
        }
    }
    cli_check_names_free(&names);
    if (!bases) {
        cli_check_error(c, stream_dir, "out of memory");
        return;
    }

    cli_check_stream s = {.check = c};
    struct wal_replay_report report;
    memset(&report, 0, sizeof report);
    /* With the catalog read, a missing first segment is judged against the checkpoint the
     * MANIFEST names, as recovery does (deleted by that checkpoint, or lost). */
    int err = c->have_catalog
                  ? wal_replay_from_checkpoint(c->dir, stream, c->checkpoint_seq, 0, c->io, false,
                                               true, cli_check_record, &s, &report)
                  : wal_replay(c->dir, stream, 0, c->io, false, true, cli_check_record, &s,
                               &report);

    /* Which segment the replay stopped in, if it did. */
    uint64_t bad_offset = report.offset;
    char bad_file[CLI_CHECK_PATH_MAX];
    snprintf(bad_file, sizeof bad_file, "%s", report.file);
    bool located = true;
    if (err == CLI_CHECK_BAD_PAYLOAD) {
        located = false;
        for (size_t k = 0; k < count && !located; k++) {
            char path[CLI_CHECK_PATH_MAX];
            wal_segment_path(path, sizeof path, c->dir, stream, bases[k]);
            if (cli_check_find_record(c, path, &s, &bad_offset)) {
                memcpy(bad_file, path, sizeof bad_file);
                located = true;
            }
        }
    }
    bool stopped = false;
    for (size_t k = 0; k < count; k++) {
        char path[CLI_CHECK_PATH_MAX];
        wal_segment_path(path, sizeof path, c->dir, stream, bases[k]);
        bool here = bad_file[0] && strcmp(path, bad_file) == 0;
        if (stopped) {
            c->files++;
            printf("%s: NOT VERIFIED (after the damage in its stream: the log is read in "
                   "order)\n",
                   path);
        } else if (here && err == SHOAL_ECORRUPT && report.missing_base != 0) {
            cli_check_damage(c, path, bad_offset,
                             "the segment before it (base %" PRIu64 ") is missing, and it "
                             "held records the checkpoint does not cover",
                             report.missing_base);
            stopped = true;
        } else if (here && err == SHOAL_ECORRUPT) {
            cli_check_damage(c, path, bad_offset,
                             "bad record (checksum, length or header), a bad segment header, "
                             "or a segment cut short before the next one");
            stopped = true;
        } else if (here && err == CLI_CHECK_BAD_PAYLOAD) {
            cli_check_damage(c, path, bad_offset,
                             "record of seq %" PRIu64 " (type %u, %zu bytes): its checksum "
                             "matches but its payload does not decode",
                             s.bad_seq, s.bad_type, s.bad_len);
            stopped = true;
        } else if (here && err == SHOAL_ENOTSUP) {
            cli_check_error(c, path, "written by a newer format version");
            stopped = true;
        } else if (here && err == 0 && report.torn_tail) {
            c->files++;
            cli_check_warning(c, path,
                              "torn tail at offset %" PRIu64 ": %" PRIu64 " bytes of a "
                              "half-written last write (the next open cuts them off)",
                              report.offset, report.bytes_dropped);
        } else {
            struct stat st;
            long long size = stat(path, &st) == 0 ? (long long)st.st_size : -1;
            cli_check_ok(c, path, "(%lld bytes)", size);
        }
    }
    free(bases);
    if (err == CLI_CHECK_BAD_PAYLOAD && !located)
        cli_check_damage(c, stream_dir, 0,
                         "record of seq %" PRIu64 " (type %u): its payload does not decode",
                         s.bad_seq, s.bad_type);
    else if (err < 0 && err != SHOAL_ECORRUPT && err != SHOAL_ENOTSUP)
        cli_check_error(c, stream_dir, "%s", shoal_strerror(err));
    else if (err == 0)
        printf("%s: stream %u: %" PRIu64 " records (%" PRIu64 " puts, %" PRIu64
               " deletes), seq %" PRIu64 "..%" PRIu64 "%s\n",
               stream_dir, stream, s.records, s.puts, s.deletes, s.min_seq, s.max_seq,
               s.foreign ? "; some of namespaces dropped since" : "");
}

static void cli_check_logs(cli_check_state *c)
{
    unsigned streams = 0;
    int err = wal_list_streams(c->dir, c->io, &streams);
    if (err) {
        char path[CLI_CHECK_PATH_MAX];
        snprintf(path, sizeof path, "%s/log", c->dir);
        cli_check_error(c, path, "cannot list: %s", shoal_strerror(err));
        return;
    }
    for (unsigned stream = 0; stream < streams; stream++)
        cli_check_stream_run(c, stream);
}

/* ---- the subcommand ------------------------------------------------------------------------ */

static void cli_check_usage(FILE *out)
{
    fprintf(out,
            "usage: shoal check DIR\n"
            "  Verifies every checksum of the durable database in DIR: the MANIFEST and its\n"
            "  catalog, every block of the checkpoint it names, every record of every log\n"
            "  stream. Changes nothing; DIR must not be open elsewhere. One line per file.\n"
            "  Exit status: 0 nothing damaged, 1 damage found, 2 usage, in use or I/O error.\n");
}

int cli_check(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        cli_check_usage(stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        cli_check_usage(stderr);
        return 2;
    }
    cli_check_state c = {.dir = argv[1], .io = io_posix()};
    if (strlen(c.dir) + 128 >= CLI_CHECK_PATH_MAX) {
        fprintf(stderr, "shoal check: %s: path too long\n", c.dir);
        return 2;
    }
    if (!cli_check_exists(c.dir, true)) {
        fprintf(stderr, "shoal check: %s: no such directory\n", c.dir);
        return 2;
    }
    char path[CLI_CHECK_PATH_MAX];
    bool any = false;
    const char *const parts[] = {"MANIFEST", "log", "ckpt"};
    for (size_t i = 0; i < 3 && !any; i++) {
        snprintf(path, sizeof path, "%s/%s", c.dir, parts[i]);
        any = cli_check_exists(path, false);
    }
    if (!any) {
        fprintf(stderr, "shoal check: %s: not a Shoal database (no MANIFEST, log or ckpt)\n",
                c.dir);
        return 2;
    }
    /* Invariant 2: hold the lock for the whole check. */
    int lock_fd = -1;
    int err = dir_lock(c.io, c.dir, &lock_fd);
    if (err == SHOAL_EBUSY) {
        fprintf(stderr, "shoal check: %s: in use (another process has it open); close it first\n",
                c.dir);
        return 2;
    }
    if (err) {
        fprintf(stderr, "shoal check: %s: cannot lock: %s\n", c.dir, shoal_strerror(err));
        return 2;
    }
    cli_check_manifest(&c);
    cli_check_checkpoints(&c);
    cli_check_logs(&c);
    dir_unlock(c.io, lock_fd);
    free(c.namespaces);

    printf("%s: %u file%s checked, %u damaged, %u warning%s, %u error%s\n", c.dir, c.files,
           c.files == 1 ? "" : "s", c.damaged, c.warnings, c.warnings == 1 ? "" : "s", c.errors,
           c.errors == 1 ? "" : "s");
    if (c.damaged)
        return 1;
    return c.errors ? 2 : 0;
}
