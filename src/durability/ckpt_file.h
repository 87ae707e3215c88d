/*
 * ckpt_file.h -- checkpoint files: one shard's image at one seq, as zstd-compressed,
 * checksummed blocks.
 *
 * The core streams a shard's contents (opaque bytes it encodes and decodes itself) into a
 * writer, which cuts them into blocks of CKPT_BLOCK_BYTES raw bytes, compresses each with
 * zstd, and frames it with its lengths and CRC-32Cs; a trailer with the block count, the
 * total raw length and a CRC of all raw bytes ends the file, so a truncated file is
 * detected. A reader hands the raw bytes back block by block and verifies everything. The
 * byte format is in docs/FORMAT.md ("Checkpoint files"), version CKPT_FORMAT_VERSION.
 *
 * Files live at DIR/ckpt/<seq>/shard-<i>.ckpt (seq as 20 zero-padded digits).
 *
 * Thread-safety: a writer or reader belongs to one thread at a time; different writers and
 * readers may run in parallel (one per shard).
 */
#ifndef SHOAL_DURABILITY_CKPT_FILE_H
#define SHOAL_DURABILITY_CKPT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "durability/io.h"

#define CKPT_FORMAT_VERSION 1u
#define CKPT_HEADER_SIZE 32u
#define CKPT_BLOCK_HEADER_SIZE 24u
#define CKPT_TRAILER_SIZE 32u
/* Raw bytes per block the writer produces. */
#define CKPT_BLOCK_BYTES (128u * 1024)
/* The largest raw block a reader accepts (a bound against absurd lengths). */
#define CKPT_MAX_BLOCK_BYTES (64u * 1024 * 1024)

struct ckpt_writer;
struct ckpt_reader;

/* Writes DIR/ckpt/<seq>/shard-<shard>.ckpt into out. Returns 0 or SHOAL_EINVAL (too long). */
int ckpt_path(char *out, size_t cap, const char *dir, uint64_t seq, uint32_t shard);
/* Creates DIR/ckpt and DIR/ckpt/<seq> if missing, each made durable in its parent. */
int ckpt_dir_create(const struct shoal_io *io, const char *dir, uint64_t seq);
/* Deletes the files of DIR/ckpt/<seq> and the directory itself. A missing checkpoint is
 * not an error. Returns 0 or SHOAL_EIO. */
int ckpt_remove(const struct shoal_io *io, const char *dir, uint64_t seq);
/* Lists the seqs of the checkpoint directories under DIR/ckpt, ascending, into a malloc'd
 * array (*seqs, free it; NULL when *count is 0). Returns 0, SHOAL_ENOMEM or SHOAL_EIO. */
int ckpt_list(const struct shoal_io *io, const char *dir, uint64_t **seqs, size_t *count);

/* Creates (or truncates) the file at path and writes its header. io NULL: io_posix().
 * Errors: SHOAL_EINVAL, SHOAL_ENOMEM, SHOAL_EIO, SHOAL_ENOSPC. */
int ckpt_writer_open(const struct shoal_io *io, const char *path, uint32_t shard, uint64_t seq,
                     struct ckpt_writer **w);
/* Appends len bytes; full blocks are compressed and written as they fill. After an error
 * the writer is failed: every later call returns the same error (abort it). */
int ckpt_writer_append(struct ckpt_writer *w, const void *data, size_t len);
/* Writes the last block and the trailer, fsyncs the file and its directory, closes and
 * frees the writer (whatever the result). Returns 0 once the file is durable, or an error
 * (SHOAL_EIO, SHOAL_ENOSPC, SHOAL_EFSYNC, ...), in which case the file is removed. */
int ckpt_writer_finish(struct ckpt_writer *w);
/* Closes and frees the writer and removes the partial file. NULL is a no-op. */
void ckpt_writer_abort(struct ckpt_writer *w);

/* Opens a checkpoint file and verifies its header; *shard and *seq (either may be NULL)
 * are the header's. Errors: SHOAL_ENOTFOUND (no such file), SHOAL_ECORRUPT (bad header; the
 * damage is at offset 0), SHOAL_ENOTSUP (a newer format), SHOAL_EIO, SHOAL_ENOMEM. */
int ckpt_reader_open(const struct shoal_io *io, const char *path, struct ckpt_reader **r,
                     uint32_t *shard, uint64_t *seq);
/* Returns 1 and the next block's raw bytes in *data and *len (valid until the next call or
 * close), 0 at the verified end of the file, or an error: SHOAL_ECORRUPT (damage or
 * truncation; ckpt_reader_offset says where), SHOAL_EIO, SHOAL_ENOMEM. After an error
 * every later call returns it again. */
int ckpt_reader_next(struct ckpt_reader *r, const void **data, size_t *len);
/* The file offset of the damaged structure after SHOAL_ECORRUPT (else of the next block). */
uint64_t ckpt_reader_offset(const struct ckpt_reader *r);
/* Closes and frees the reader. NULL is a no-op. */
void ckpt_reader_close(struct ckpt_reader *r);

#endif /* SHOAL_DURABILITY_CKPT_FILE_H */
