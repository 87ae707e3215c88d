/*
 * durable.h -- the core's side of durable mode: recovery at open, the commit log,
 * checkpoints and the MANIFEST's catalog. The only core file that calls the durability
 * modules (wal.h, manifest.h, ckpt_file.h); the rest of the core calls this header.
 */
#ifndef SHOAL_CORE_DURABLE_H
#define SHOAL_CORE_DURABLE_H

#include "core/internal.h"

struct shoal_io;

/* Opens dir as a durable database (shoal_open with a directory), with file I/O through io
 * (NULL: POSIX). Tests pass a fault-injecting table. */
int durable_open(const char *dir, const shoal_options *opts, const struct shoal_io *io,
                 shoal_db **out);
/* Stops the checkpointer, takes the closing checkpoint, closes the log and unlocks. */
int durable_close(struct shoal_db *db);

/* 0 when the database accepts writes, else the sticky error (SHOAL_EFSYNC, SHOAL_EIO...). */
int durable_writable(struct shoal_db *db);
/* Appends a commit's record to its stream; called with the commit's shard locks held,
 * before anything it replaced is freed. */
int durable_append(struct shoal_db *db, const struct write_op *ops, size_t n, uint64_t seq,
                   unsigned *stream, uint64_t *lsn);
/* Waits as the sync policy says (wo or the database's); called after the locks are gone. */
int durable_wait(struct shoal_db *db, unsigned stream, uint64_t lsn,
                 const shoal_write_options *wo);
/* A catalog change in two steps, so that the MANIFEST's write and fsync happen outside the
 * catalog lock (internal.h C1): durable_catalog_encode, with the catalog lock and
 * db->catalog_change held, takes the image; durable_catalog_store, with only
 * db->catalog_change held, writes it and frees it. Nothing to write in memory mode. */
struct catalog_image {
    uint8_t *data;
    size_t len;
    bool failed;  /* out of memory while encoding: the store fails with SHOAL_ENOMEM */
    bool present; /* a durable database: there is something to write */
};
int durable_catalog_encode(struct shoal_db *db, struct catalog_image *image);
int durable_catalog_store(struct shoal_db *db, struct catalog_image *image);
/* Fills the durable part of the statistics. */
void durable_stats(struct shoal_db *db, shoal_db_stats *out);
/* Records a detail for shoal_error_detail() on this thread. */
void durable_set_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
