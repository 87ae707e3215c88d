/*
 * manifest.c -- the MANIFEST file: framing, atomic replacement, verification.
 *
 * FORMAT (little-endian; docs/FORMAT.md, "MANIFEST")
 *   0  8  magic "SHOALMAN"
 *   8  4  format version (1)
 *   12 4  flags (0)
 *   16 8  body length
 *   24 4  masked CRC-32C of the body
 *   28 4  masked CRC-32C of bytes 0..27
 *   32    body
 * The file is exactly 32 + body length bytes long.
 *
 * INVARIANTS
 *   1. DIR/MANIFEST is only ever created by rename(2) of a complete, fsynced temporary
 *      file, so a reader finds the previous MANIFEST or the new one, never a mix.
 *   2. manifest_write returns 0 only after the directory entry is durable (fsync of DIR),
 *      so the caller may then delete what the old MANIFEST referenced.
 *   3. manifest_read returns a body only if both checksums and the length agree.
 *
 * TESTED BY tests/unit/test_manifest.c: round trip and replacement, a crash between the
 * temporary write and the rename (injected rename failure: the old MANIFEST stays
 * readable), failures of each step, damage at every byte and every truncation.
 */
#include "durability/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "durability/crc32c.h"
#include "durability/encoding.h"
#include "shoal.h"

static const uint8_t manifest_magic[8] = {'S', 'H', 'O', 'A', 'L', 'M', 'A', 'N'};

int manifest_write(const struct shoal_io *io, const char *dir, const void *body, size_t len)
{
    if (dir == NULL || (body == NULL && len > 0) || len > MANIFEST_MAX_BODY)
        return SHOAL_EINVAL;
    if (io == NULL)
        io = io_posix();
    char path[4096], temp[4096];
    if (io_path_join(path, sizeof path, dir, "MANIFEST") != 0 ||
        io_path_join(temp, sizeof temp, dir, "MANIFEST.tmp") != 0)
        return SHOAL_EINVAL;

    uint8_t *file = malloc(MANIFEST_HEADER_SIZE + len);
    if (file == NULL)
        return SHOAL_ENOMEM;
    memcpy(file, manifest_magic, 8);
    encoding_put_u32(file + 8, MANIFEST_FORMAT_VERSION);
    encoding_put_u32(file + 12, 0);
    encoding_put_u64(file + 16, len);
    encoding_put_u32(file + 24, crc32c_mask(crc32c(body, len)));
    encoding_put_u32(file + 28, crc32c_mask(crc32c(file, 28)));
    if (len > 0)
        memcpy(file + MANIFEST_HEADER_SIZE, body, len);

    int err = 0;
    int fd = io->open(io, temp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        err = io_error(fd);
    } else {
        int rc = io_write_full(io, fd, file, MANIFEST_HEADER_SIZE + len);
        if (rc < 0)
            err = io_error(rc);
        else if ((rc = io->fsync(io, fd)) < 0)
            err = io_sync_error(rc);
        rc = io->close(io, fd);
        if (rc < 0 && err == 0)
            err = io_error(rc);
    }
    free(file);
    if (err == 0) {
        int rc = io->rename(io, temp, path);
        if (rc < 0)
            err = io_error(rc);
    }
    if (err != 0) {
        io->unlink(io, temp); /* best effort: a leftover temporary file is ignored anyway */
        return err;
    }
    int rc = io->fsync_dir(io, dir);
    return rc < 0 ? io_sync_error(rc) : 0;
}

int manifest_read(const struct shoal_io *io, const char *dir, void **body, size_t *len)
{
    if (dir == NULL || body == NULL || len == NULL)
        return SHOAL_EINVAL;
    *body = NULL;
    *len = 0;
    if (io == NULL)
        io = io_posix();
    char path[4096];
    if (io_path_join(path, sizeof path, dir, "MANIFEST") != 0)
        return SHOAL_EINVAL;
    int fd = io->open(io, path, O_RDONLY, 0);
    if (fd == -ENOENT)
        return SHOAL_ENOTFOUND;
    if (fd < 0)
        return io_error(fd);

    int err = 0;
    uint64_t size = 0;
    uint8_t header[MANIFEST_HEADER_SIZE];
    uint8_t *copy = NULL;
    int rc = io->file_size(io, fd, &size);
    if (rc < 0) {
        err = io_error(rc);
        goto done;
    }
    ssize_t got = io_pread_full(io, fd, header, sizeof header, 0);
    if (got < 0) {
        err = io_error((int)got);
        goto done;
    }
    if ((size_t)got < sizeof header || memcmp(header, manifest_magic, 8) != 0 ||
        crc32c(header, 28) != crc32c_unmask(encoding_get_u32(header + 28))) {
        err = SHOAL_ECORRUPT;
        goto done;
    }
    if (encoding_get_u32(header + 8) != MANIFEST_FORMAT_VERSION) {
        err = SHOAL_ENOTSUP;
        goto done;
    }
    uint64_t body_len = encoding_get_u64(header + 16);
    if (encoding_get_u32(header + 12) != 0 || body_len > MANIFEST_MAX_BODY ||
        size != MANIFEST_HEADER_SIZE + body_len) {
        err = SHOAL_ECORRUPT;
        goto done;
    }
    copy = malloc(body_len + 1); /* + 1: a non-NULL pointer for an empty body */
    if (copy == NULL) {
        err = SHOAL_ENOMEM;
        goto done;
    }
    got = io_pread_full(io, fd, copy, (size_t)body_len, MANIFEST_HEADER_SIZE);
    if (got < 0) {
        err = io_error((int)got);
        goto done;
    }
    if ((uint64_t)got != body_len ||
        crc32c(copy, (size_t)body_len) != crc32c_unmask(encoding_get_u32(header + 24))) {
        err = SHOAL_ECORRUPT;
        goto done;
    }
    *body = copy;
    *len = (size_t)body_len;
    copy = NULL;
done:
    free(copy);
    io->close(io, fd);
    return err;
}
