/*
 * manifest.h -- DIR/MANIFEST: the one small file that says which checkpoint is current.
 *
 * The body is opaque to this module (the core writes its catalog and the checkpoint seq
 * into it); this module frames it with a checksummed header and replaces the file
 * atomically: write DIR/MANIFEST.tmp, fsync it, rename it over DIR/MANIFEST, fsync DIR.
 * A crash at any point leaves either the old MANIFEST or the new one, whole. The format is
 * in docs/FORMAT.md ("MANIFEST"), version MANIFEST_FORMAT_VERSION.
 *
 * Thread-safety: the functions keep no state; concurrent writers of one directory must be
 * serialized by the caller (the core holds its checkpoint lock).
 */
#ifndef SHOAL_DURABILITY_MANIFEST_H
#define SHOAL_DURABILITY_MANIFEST_H

#include <stddef.h>

#include "durability/io.h"

#define MANIFEST_FORMAT_VERSION 1u
#define MANIFEST_HEADER_SIZE 32u
/* Bodies beyond this are refused on write and reported as damage on read. */
#define MANIFEST_MAX_BODY (256u * 1024 * 1024)

/* Replaces DIR/MANIFEST with body[0..len) (io NULL: io_posix()). Returns 0 when the new
 * MANIFEST is durable; otherwise the old one is still in place unless the failure came
 * after the rename (then either may be found after a crash). Errors: SHOAL_EINVAL,
 * SHOAL_ENOMEM, SHOAL_EIO, SHOAL_ENOSPC, SHOAL_EFSYNC. */
int manifest_write(const struct shoal_io *io, const char *dir, const void *body, size_t len);

/* Reads and verifies DIR/MANIFEST. On success *body is a malloc'd copy of the body (never
 * NULL, even for length 0; free it with free()) and *len its length. DIR/MANIFEST.tmp is
 * ignored. Errors: SHOAL_ENOTFOUND (no MANIFEST), SHOAL_ECORRUPT (bad magic, checksum or
 * length), SHOAL_ENOTSUP (a newer format), SHOAL_EIO, SHOAL_ENOMEM, SHOAL_EINVAL. */
int manifest_read(const struct shoal_io *io, const char *dir, void **body, size_t *len);

#endif /* SHOAL_DURABILITY_MANIFEST_H */
