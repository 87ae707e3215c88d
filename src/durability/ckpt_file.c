/*
 * ckpt_file.c -- writing and reading checkpoint files.
 *
 * FORMAT (little-endian; docs/FORMAT.md, "Checkpoint files")
 *   File header, 32 bytes: "SHOALCKP", u32 version (1), u32 shard, u64 seq, u32 flags (0),
 *   u32 masked CRC-32C of bytes 0..27.
 *   Blocks, each a 24-byte header and the stored bytes:
 *     u32 kind (1 zstd, 2 stored uncompressed), u32 raw length, u32 stored length,
 *     u32 masked CRC-32C of the stored bytes, u32 masked CRC-32C of the raw bytes,
 *     u32 masked CRC-32C of bytes 0..19 of this header.
 *   Trailer, 32 bytes: u32 kind (3), u32 masked CRC-32C of all raw bytes in order,
 *     u64 block count, u64 total raw bytes, u32 reserved (0), u32 masked CRC-32C of
 *     bytes 0..27. The file ends right after it.
 *
 * WHY THIS SHAPE
 * Blocks of 128 KiB raw keep the reader's memory small and let it verify as it goes; the
 * CRC of the stored bytes rejects damage before the decompressor sees it, the CRC of the
 * raw bytes catches anything the decompressor could get wrong, and the header's own CRC
 * means a damaged length is never trusted. The trailer is what tells a complete file from
 * one cut at a block boundary. A block that zstd cannot shrink is stored as is (kind 2).
 * zstd level 1: checkpoints run while the database serves writes, so speed matters more
 * than the last percent of ratio.
 *
 * INVARIANTS
 *   1. A reader returns a block only after its header CRC, stored CRC, decompressed length
 *      and raw CRC all check; it returns 0 (end) only after the trailer's count, total and
 *      chained CRC match what it returned and the file ends right after the trailer.
 *   2. A writer that met an error is failed for good; finish removes the file on failure,
 *      so a checkpoint directory never holds a file that finish did not vouch for.
 *
 * TESTED BY tests/unit/test_ckpt_file.c: round trips of empty, small, multi-block,
 * incompressible and exactly-one-block inputs; a bit flip at every offset of a small file
 * and at sampled offsets of a large one, truncation at every length; injected write and
 * fsync failures; the directory helpers.
 */
#include "durability/ckpt_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "durability/crc32c.h"
#include "durability/encoding.h"
#include "shoal.h"

#define CKPT_ZSTD_LEVEL 1
#define CKPT_KIND_ZSTD 1u
#define CKPT_KIND_STORED 2u
#define CKPT_KIND_END 3u
#define CKPT_PATH_MAX 4096

static const uint8_t ckpt_magic[8] = {'S', 'H', 'O', 'A', 'L', 'C', 'K', 'P'};

struct ckpt_writer {
    const struct shoal_io *io;
    char path[CKPT_PATH_MAX];
    int fd;
    int error; /* sticky (invariant 2) */
    ZSTD_CCtx *zstd;
    uint8_t *raw; /* the block being filled */
    size_t raw_len;
    uint8_t *out; /* block header + compressed bytes, written with one call */
    size_t out_cap;
    uint64_t blocks;
    uint64_t total;
    uint32_t raw_crc; /* chained over every raw byte */
};

struct ckpt_reader {
    const struct shoal_io *io;
    int fd;
    uint64_t size;
    uint64_t offset; /* next structure to read; after an error, the damaged one */
    int error;       /* sticky */
    bool done;
    ZSTD_DCtx *zstd;
    uint8_t *stored;
    size_t stored_cap;
    uint8_t *raw;
    size_t raw_cap;
    uint64_t blocks;
    uint64_t total;
    uint32_t raw_crc;
};

/* ------------------------------------------------------------------------------------
 * Paths and directories.
 * ---------------------------------------------------------------------------------- */

int ckpt_path(char *out, size_t cap, const char *dir, uint64_t seq, uint32_t shard)
{
    int n = snprintf(out, cap, "%s/ckpt/%020" PRIu64 "/shard-%" PRIu32 ".ckpt", dir, seq, shard);
    return n < 0 || (size_t)n >= cap ? SHOAL_EINVAL : 0;
}

static int ckpt_seq_dir(char *out, size_t cap, const char *dir, uint64_t seq)
{
    int n = snprintf(out, cap, "%s/ckpt/%020" PRIu64, dir, seq);
    return n < 0 || (size_t)n >= cap ? SHOAL_EINVAL : 0;
}

int ckpt_dir_create(const struct shoal_io *io, const char *dir, uint64_t seq)
{
    if (io == NULL)
        io = io_posix();
    char path[CKPT_PATH_MAX];
    if (dir == NULL || io_path_join(path, sizeof path, dir, "ckpt") != 0)
        return SHOAL_EINVAL;
    int err = io_ensure_dir(io, path);
    if (err != 0)
        return err;
    if (ckpt_seq_dir(path, sizeof path, dir, seq) != 0)
        return SHOAL_EINVAL;
    return io_ensure_dir(io, path);
}

struct ckpt_remove_ctx {
    const struct shoal_io *io;
    const char *dir;
    int error;
};

static int ckpt_remove_entry(void *ctx, const char *name)
{
    struct ckpt_remove_ctx *c = ctx;
    char path[CKPT_PATH_MAX];
    if (io_path_join(path, sizeof path, c->dir, name) != 0) {
        c->error = SHOAL_EINVAL;
        return 0;
    }
    int rc = c->io->unlink(c->io, path);
    if (rc < 0 && rc != -ENOENT && c->error == 0)
        c->error = io_error(rc);
    return 0;
}

int ckpt_remove(const struct shoal_io *io, const char *dir, uint64_t seq)
{
    if (io == NULL)
        io = io_posix();
    char path[CKPT_PATH_MAX], parent[CKPT_PATH_MAX];
    if (dir == NULL || ckpt_seq_dir(path, sizeof path, dir, seq) != 0 ||
        io_path_join(parent, sizeof parent, dir, "ckpt") != 0)
        return SHOAL_EINVAL;
    struct ckpt_remove_ctx c = {.io = io, .dir = path};
    int rc = io->list_dir(io, path, ckpt_remove_entry, &c);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return io_error(rc);
    if (c.error != 0)
        return c.error;
    rc = io->rmdir(io, path);
    if (rc < 0 && rc != -ENOENT)
        return io_error(rc);
    rc = io->fsync_dir(io, parent);
    return rc < 0 ? io_error(rc) : 0;
}

struct ckpt_list_ctx {
    uint64_t *seqs;
    size_t count, cap;
    bool out_of_memory;
};

static int ckpt_list_entry(void *ctx, const char *name)
{
    struct ckpt_list_ctx *c = ctx;
    if (strlen(name) != 20)
        return 0;
    uint64_t seq = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        uint64_t digit = (uint64_t)(name[i] - '0');
        if (seq > (UINT64_MAX - digit) / 10)
            return 0;
        seq = seq * 10 + digit;
    }
    if (c->count == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        uint64_t *seqs = realloc(c->seqs, cap * sizeof *seqs);
        if (seqs == NULL) {
            c->out_of_memory = true;
            return 1;
        }
        c->seqs = seqs;
        c->cap = cap;
    }
    c->seqs[c->count++] = seq;
    return 0;
}

static int ckpt_compare_seq(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int ckpt_list(const struct shoal_io *io, const char *dir, uint64_t **seqs, size_t *count)
{
    *seqs = NULL;
    *count = 0;
    if (io == NULL)
        io = io_posix();
    char path[CKPT_PATH_MAX];
    if (dir == NULL || io_path_join(path, sizeof path, dir, "ckpt") != 0)
        return SHOAL_EINVAL;
    struct ckpt_list_ctx c = {0};
    int rc = io->list_dir(io, path, ckpt_list_entry, &c);
    if (c.out_of_memory) {
        free(c.seqs);
        return SHOAL_ENOMEM;
    }
    if (rc < 0 && rc != -ENOENT) {
        free(c.seqs);
        return io_error(rc);
    }
    if (c.count == 0) {
        free(c.seqs);
        return 0;
    }
    qsort(c.seqs, c.count, sizeof *c.seqs, ckpt_compare_seq);
    *seqs = c.seqs;
    *count = c.count;
    return 0;
}

/* ------------------------------------------------------------------------------------
 * Writer.
 * ---------------------------------------------------------------------------------- */

static void ckpt_writer_free(struct ckpt_writer *w)
{
    if (w->fd >= 0)
        w->io->close(w->io, w->fd);
    ZSTD_freeCCtx(w->zstd);
    free(w->raw);
    free(w->out);
    free(w);
}

int ckpt_writer_open(const struct shoal_io *io, const char *path, uint32_t shard, uint64_t seq,
                     struct ckpt_writer **out)
{
    if (out == NULL)
        return SHOAL_EINVAL;
    *out = NULL;
    if (path == NULL || strlen(path) >= CKPT_PATH_MAX)
        return SHOAL_EINVAL;
    struct ckpt_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return SHOAL_ENOMEM;
    w->io = io != NULL ? io : io_posix();
    w->fd = -1;
    strcpy(w->path, path);
    w->out_cap = CKPT_BLOCK_HEADER_SIZE + ZSTD_compressBound(CKPT_BLOCK_BYTES);
    w->raw = malloc(CKPT_BLOCK_BYTES);
    w->out = malloc(w->out_cap);
    w->zstd = ZSTD_createCCtx();
    if (w->raw == NULL || w->out == NULL || w->zstd == NULL) {
        ckpt_writer_free(w);
        return SHOAL_ENOMEM;
    }
    ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_compressionLevel, CKPT_ZSTD_LEVEL);

    int fd = w->io->open(w->io, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        ckpt_writer_free(w);
        return fd == -ENOENT ? SHOAL_EIO : io_error(fd);
    }
    w->fd = fd;
    uint8_t header[CKPT_HEADER_SIZE];
    memcpy(header, ckpt_magic, 8);
    encoding_put_u32(header + 8, CKPT_FORMAT_VERSION);
    encoding_put_u32(header + 12, shard);
    encoding_put_u64(header + 16, seq);
    encoding_put_u32(header + 24, 0);
    encoding_put_u32(header + 28, crc32c_mask(crc32c(header, 28)));
    int rc = io_write_full(w->io, fd, header, sizeof header);
    if (rc < 0) {
        ckpt_writer_abort(w);
        return io_error(rc);
    }
    *out = w;
    return 0;
}

/* Compresses and writes one block of raw bytes. */
static int ckpt_writer_block(struct ckpt_writer *w, const uint8_t *raw, size_t len)
{
    uint8_t *stored = w->out + CKPT_BLOCK_HEADER_SIZE;
    size_t stored_len =
        ZSTD_compress2(w->zstd, stored, w->out_cap - CKPT_BLOCK_HEADER_SIZE, raw, len);
    uint32_t kind = CKPT_KIND_ZSTD;
    if (ZSTD_isError(stored_len) || stored_len >= len) {
        /* zstd could not shrink it (or failed): store the raw bytes. */
        memcpy(stored, raw, len);
        stored_len = len;
        kind = CKPT_KIND_STORED;
    }
    uint32_t raw_crc = crc32c(raw, len);
    uint8_t *h = w->out;
    encoding_put_u32(h, kind);
    encoding_put_u32(h + 4, (uint32_t)len);
    encoding_put_u32(h + 8, (uint32_t)stored_len);
    encoding_put_u32(h + 12, crc32c_mask(crc32c(stored, stored_len)));
    encoding_put_u32(h + 16, crc32c_mask(raw_crc));
    encoding_put_u32(h + 20, crc32c_mask(crc32c(h, 20)));
    int rc = io_write_full(w->io, w->fd, w->out, CKPT_BLOCK_HEADER_SIZE + stored_len);
    if (rc < 0)
        return io_error(rc);
    w->blocks++;
    w->total += len;
    w->raw_crc = crc32c_extend(w->raw_crc, raw, len);
    return 0;
}

int ckpt_writer_append(struct ckpt_writer *w, const void *data, size_t len)
{
    if (w == NULL || (data == NULL && len > 0))
        return SHOAL_EINVAL;
    if (w->error != 0)
        return w->error;
    const uint8_t *p = data;
    while (len > 0) {
        if (w->raw_len == 0 && len >= CKPT_BLOCK_BYTES) {
            /* A whole block straight from the caller's bytes: no copy. */
            w->error = ckpt_writer_block(w, p, CKPT_BLOCK_BYTES);
            if (w->error != 0)
                return w->error;
            p += CKPT_BLOCK_BYTES;
            len -= CKPT_BLOCK_BYTES;
            continue;
        }
        size_t n = CKPT_BLOCK_BYTES - w->raw_len;
        if (n > len)
            n = len;
        memcpy(w->raw + w->raw_len, p, n);
        w->raw_len += n;
        p += n;
        len -= n;
        if (w->raw_len == CKPT_BLOCK_BYTES) {
            w->error = ckpt_writer_block(w, w->raw, w->raw_len);
            w->raw_len = 0;
            if (w->error != 0)
                return w->error;
        }
    }
    return 0;
}

int ckpt_writer_finish(struct ckpt_writer *w)
{
    if (w == NULL)
        return SHOAL_EINVAL;
    int err = w->error;
    if (err == 0 && w->raw_len > 0) {
        err = ckpt_writer_block(w, w->raw, w->raw_len);
        w->raw_len = 0;
    }
    if (err == 0) {
        uint8_t t[CKPT_TRAILER_SIZE];
        encoding_put_u32(t, CKPT_KIND_END);
        encoding_put_u32(t + 4, crc32c_mask(w->raw_crc));
        encoding_put_u64(t + 8, w->blocks);
        encoding_put_u64(t + 16, w->total);
        encoding_put_u32(t + 24, 0);
        encoding_put_u32(t + 28, crc32c_mask(crc32c(t, 28)));
        int rc = io_write_full(w->io, w->fd, t, sizeof t);
        if (rc < 0)
            err = io_error(rc);
    }
    if (err == 0) {
        int rc = w->io->fsync(w->io, w->fd);
        if (rc < 0)
            err = io_sync_error(rc);
    }
    if (err == 0) {
        int rc = w->io->close(w->io, w->fd);
        w->fd = -1;
        if (rc < 0)
            err = io_error(rc);
    }
    if (err == 0) {
        /* The file's directory entry must be durable too before the MANIFEST names it. */
        char parent[CKPT_PATH_MAX];
        strcpy(parent, w->path);
        char *slash = strrchr(parent, '/');
        if (slash == NULL)
            strcpy(parent, ".");
        else if (slash == parent)
            parent[1] = '\0';
        else
            *slash = '\0';
        int rc = w->io->fsync_dir(w->io, parent);
        if (rc < 0)
            err = io_sync_error(rc);
    }
    if (err != 0) {
        ckpt_writer_abort(w);
        return err;
    }
    ckpt_writer_free(w);
    return 0;
}

void ckpt_writer_abort(struct ckpt_writer *w)
{
    if (w == NULL)
        return;
    if (w->fd >= 0) {
        w->io->close(w->io, w->fd);
        w->fd = -1;
    }
    w->io->unlink(w->io, w->path);
    ckpt_writer_free(w);
}

/* ------------------------------------------------------------------------------------
 * Reader.
 * ---------------------------------------------------------------------------------- */

/* Reads exactly len bytes at the current offset into buf. Returns 0, SHOAL_ECORRUPT when
 * the file ends first (a truncated file), or an I/O error. */
static int ckpt_reader_read(struct ckpt_reader *r, void *buf, size_t len, uint64_t offset)
{
    if (offset > r->size || len > r->size - offset)
        return SHOAL_ECORRUPT;
    ssize_t got = io_pread_full(r->io, r->fd, buf, len, offset);
    if (got < 0)
        return io_error((int)got);
    return (size_t)got == len ? 0 : SHOAL_ECORRUPT;
}

void ckpt_reader_close(struct ckpt_reader *r)
{
    if (r == NULL)
        return;
    if (r->fd >= 0)
        r->io->close(r->io, r->fd);
    ZSTD_freeDCtx(r->zstd);
    free(r->stored);
    free(r->raw);
    free(r);
}

int ckpt_reader_open(const struct shoal_io *io, const char *path, struct ckpt_reader **out,
                     uint32_t *shard, uint64_t *seq)
{
    if (out == NULL)
        return SHOAL_EINVAL;
    *out = NULL;
    if (path == NULL)
        return SHOAL_EINVAL;
    struct ckpt_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return SHOAL_ENOMEM;
    r->io = io != NULL ? io : io_posix();
    r->fd = r->io->open(r->io, path, O_RDONLY, 0);
    if (r->fd < 0) {
        int err = r->fd == -ENOENT ? SHOAL_ENOTFOUND : io_error(r->fd);
        r->fd = -1;
        ckpt_reader_close(r);
        return err;
    }
    r->zstd = ZSTD_createDCtx();
    if (r->zstd == NULL) {
        ckpt_reader_close(r);
        return SHOAL_ENOMEM;
    }
    int rc = r->io->file_size(r->io, r->fd, &r->size);
    if (rc < 0) {
        ckpt_reader_close(r);
        return io_error(rc);
    }
    uint8_t header[CKPT_HEADER_SIZE];
    int err = ckpt_reader_read(r, header, sizeof header, 0);
    if (err == 0 && (memcmp(header, ckpt_magic, 8) != 0 ||
                     crc32c(header, 28) != crc32c_unmask(encoding_get_u32(header + 28))))
        err = SHOAL_ECORRUPT;
    if (err == 0 && encoding_get_u32(header + 8) != CKPT_FORMAT_VERSION)
        err = SHOAL_ENOTSUP;
    if (err == 0 && encoding_get_u32(header + 24) != 0)
        err = SHOAL_ECORRUPT;
    if (err != 0) {
        ckpt_reader_close(r);
        return err;
    }
    if (shard != NULL)
        *shard = encoding_get_u32(header + 12);
    if (seq != NULL)
        *seq = encoding_get_u64(header + 16);
    r->offset = CKPT_HEADER_SIZE;
    *out = r;
    return 0;
}

static int ckpt_reader_grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 0;
    uint8_t *p = realloc(*buf, need);
    if (p == NULL)
        return SHOAL_ENOMEM;
    *buf = p;
    *cap = need;
    return 0;
}

/* Verifies the trailer at the current offset. */
static int ckpt_reader_trailer(struct ckpt_reader *r)
{
    uint8_t t[CKPT_TRAILER_SIZE];
    int err = ckpt_reader_read(r, t, sizeof t, r->offset);
    if (err != 0)
        return err;
    if (crc32c(t, 28) != crc32c_unmask(encoding_get_u32(t + 28)) || encoding_get_u32(t + 24) != 0 ||
        encoding_get_u64(t + 8) != r->blocks || encoding_get_u64(t + 16) != r->total ||
        crc32c_unmask(encoding_get_u32(t + 4)) != r->raw_crc ||
        r->offset + CKPT_TRAILER_SIZE != r->size)
        return SHOAL_ECORRUPT;
    return 0;
}

int ckpt_reader_next(struct ckpt_reader *r, const void **data, size_t *len)
{
    if (r == NULL || data == NULL || len == NULL)
        return SHOAL_EINVAL;
    *data = NULL;
    *len = 0;
    if (r->error != 0)
        return r->error;
    if (r->done)
        return 0;

    uint8_t h[CKPT_BLOCK_HEADER_SIZE];
    int err = 0;
    uint32_t kind = 0;
    if (r->size - r->offset >= 4) {
        err = ckpt_reader_read(r, h, 4, r->offset);
        kind = err == 0 ? encoding_get_u32(h) : 0;
    } else {
        err = SHOAL_ECORRUPT; /* the file stops before its trailer */
    }
    if (err == 0 && kind == CKPT_KIND_END) {
        err = ckpt_reader_trailer(r);
        if (err == 0) {
            r->done = true;
            return 0;
        }
    } else if (err == 0) {
        err = ckpt_reader_read(r, h, sizeof h, r->offset);
    }
    uint32_t raw_len = 0, stored_len = 0;
    if (err == 0) {
        raw_len = encoding_get_u32(h + 4);
        stored_len = encoding_get_u32(h + 8);
        if (crc32c(h, 20) != crc32c_unmask(encoding_get_u32(h + 20)) ||
            (kind != CKPT_KIND_ZSTD && kind != CKPT_KIND_STORED) || raw_len == 0 ||
            raw_len > CKPT_MAX_BLOCK_BYTES || stored_len > ZSTD_compressBound(raw_len) ||
            (kind == CKPT_KIND_STORED && stored_len != raw_len))
            err = SHOAL_ECORRUPT;
    }
    if (err == 0)
        err = ckpt_reader_grow(&r->stored, &r->stored_cap, stored_len);
    if (err == 0)
        err = ckpt_reader_read(r, r->stored, stored_len, r->offset + CKPT_BLOCK_HEADER_SIZE);
    if (err == 0 && crc32c(r->stored, stored_len) != crc32c_unmask(encoding_get_u32(h + 12)))
        err = SHOAL_ECORRUPT;
    const uint8_t *raw = r->stored;
    if (err == 0 && kind == CKPT_KIND_ZSTD) {
        err = ckpt_reader_grow(&r->raw, &r->raw_cap, raw_len);
        if (err == 0) {
            size_t n = ZSTD_decompressDCtx(r->zstd, r->raw, raw_len, r->stored, stored_len);
            if (ZSTD_isError(n) || n != raw_len)
                err = SHOAL_ECORRUPT;
            raw = r->raw;
        }
    }
    uint32_t raw_crc = 0;
    if (err == 0) {
        raw_crc = crc32c(raw, raw_len);
        if (raw_crc != crc32c_unmask(encoding_get_u32(h + 16)))
            err = SHOAL_ECORRUPT;
    }
    if (err != 0) {
        r->error = err; /* r->offset stays at the damaged structure */
        return err;
    }
    r->blocks++;
    r->total += raw_len;
    r->raw_crc = crc32c_extend(r->raw_crc, raw, raw_len);
    r->offset += CKPT_BLOCK_HEADER_SIZE + stored_len;
    *data = raw;
    *len = raw_len;
    return 1;
}

uint64_t ckpt_reader_offset(const struct ckpt_reader *r)
{
    return r == NULL ? 0 : r->offset;
}
