/*
 * wal.h -- log streams with group commit: the write-ahead log of a durable database.
 *
 * A durable database writes every commit's record into one of L log streams (shard i logs
 * to stream i % L). Each stream is a sequence of segment files DIR/log/<stream>/<base>.wal
 * with its own buffer, its own file and its own group commit, so streams append and
 * fdatasync in parallel. Records are opaque to this module: a type byte, the commit's seq
 * and payload bytes that the core encodes. The byte format is in docs/FORMAT.md; the
 * design, invariants and measurements are in the essay at the top of wal.c.
 *
 * Life cycle: (recovery) wal_list_streams + wal_replay on every stream, then wal_open with
 * next_seq_hint = the largest replayed seq + 1; then appends and waits from any threads;
 * wal_rotate + wal_delete_before after each checkpoint; wal_close last.
 *
 * Errors are SHOAL_E* codes (shoal.h). A failed write or fsync is sticky for the whole log
 * (wal_error): every later append and wait fails with that error, and nothing is
 * acknowledged after it, even if a later fsync would succeed (architecture invariant 8).
 *
 * Thread-safety: wal_append, wal_wait, wal_wait_async, wal_sync_all, wal_rotate,
 * wal_delete_before, wal_bytes, wal_stats and wal_error may be called from any number of
 * threads at once. wal_open and wal_close are called once each; no other call may run
 * during or after wal_close. wal_replay and wal_list_streams touch no open log: run them
 * before wal_open (different streams may be replayed in parallel).
 */
#ifndef SHOAL_DURABILITY_WAL_H
#define SHOAL_DURABILITY_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "durability/io.h"

/* Format constants (docs/FORMAT.md, "Log segments"). New segments are written in
 * WAL_FORMAT_VERSION; segments of version 1 (a 48-byte header, no predecessor seq bound)
 * are still read. The record format has its own version, unchanged since version 1. */
#define WAL_FORMAT_VERSION 2u
#define WAL_SEGMENT_HEADER_SIZE 64u    /* the header of a version 2 segment */
#define WAL_SEGMENT_HEADER_SIZE_V1 48u /* the header of a version 1 segment */
#define WAL_RECORD_VERSION 1u
#define WAL_RECORD_HEADER_SIZE 20u
#define WAL_DEFAULT_SEGMENT_BYTES (64ull * 1024 * 1024)
/* Segments are reserved (fallocate) this much at a time ahead of the writes. */
#define WAL_PREALLOCATE_STEP (4ull * 1024 * 1024)
/* The reserved space this far past a segment's end is kept in the page cache, brought in a
 * step at a time (wal.c essay, "Cached ahead"). */
#define WAL_CACHE_AHEAD (256u * 1024)
#define WAL_CACHE_STEP (64u * 1024)
/* A flush that syncs keeps at least WAL_ZERO_AHEAD bytes past the segment's end written
 * with zeros, WAL_ZERO_STEP at a time (wal.c essay, "Zeroed ahead"). */
#define WAL_ZERO_AHEAD (512u * 1024)
#define WAL_ZERO_STEP (1024u * 1024)
/* The largest payload one record can carry (its length field is 32 bits). */
#define WAL_MAX_PAYLOAD ((size_t)UINT32_MAX - WAL_RECORD_HEADER_SIZE)

/* How the records of many waiters are made durable together (wal.c essay, "Group commit"). */
enum wal_group_commit {
    WAL_GROUP_LEADER = 0,  /* the first waiter writes and syncs for everyone (default) */
    WAL_GROUP_FLUSHER = 1, /* a thread per stream writes and syncs; waiters only wait */
};

struct wal;

struct wal_options {
    const char *dir;           /* database directory; logs go to dir/log/<stream>/ */
    unsigned streams;          /* >= 1 */
    uint64_t segment_bytes;    /* roll threshold; 0: WAL_DEFAULT_SEGMENT_BYTES */
    int sync;                  /* enum shoal_sync value: NONE, PERIODIC, BATCH, ALWAYS
                                  (SHOAL_SYNC_DEFAULT means PERIODIC) */
    uint32_t sync_period_ms;   /* PERIODIC: the background sync interval; 0: 1000 */
    uint32_t sync_window_us;   /* BATCH: longest wait; 0: 2000 */
    const struct shoal_io *io; /* NULL: io_posix() */
    uint64_t next_seq_hint;    /* must exceed every seq already in the log (the core passes
                                  the largest replayed seq + 1); new segments are named
                                  from it on. 0 when unknown: the log is then scanned. */
    int group_commit;          /* enum wal_group_commit; 0: WAL_GROUP_LEADER */
    bool no_preallocate;       /* grow segment files instead of fallocate'ing them */
};

/* Opens the log: creates dir/log and dir/log/<i> for i < streams (the directory dir itself
 * must exist), takes stock of the segments already there, and starts one background
 * thread per stream. New records go to new segments, after the existing ones. Segments of
 * stream directories >= streams (a database reopened with fewer streams) are kept until
 * wal_delete_before covers them. On success *out is the log.
 * Errors: SHOAL_EINVAL, SHOAL_ENOMEM, SHOAL_EIO, SHOAL_ENOSPC, SHOAL_EFSYNC. */
int wal_open(const struct wal_options *o, struct wal **out);

/* Appends one record to a stream's buffer and returns its position *lsn (1, 2, 3, ... per
 * stream). Called while the core holds a shard lock: it only encodes the 20-byte header,
 * checksums the payload (before taking any lock) and copies both into the buffer under the
 * stream's mutex. It never waits for the disk; the buffer grows instead. Records appended
 * to one stream are written in append order. type must be non-zero.
 * Errors: SHOAL_EINVAL, SHOAL_ETOOBIG (len > WAL_MAX_PAYLOAD), SHOAL_ENOMEM, SHOAL_ECLOSED,
 * or the sticky error. */
int wal_append(struct wal *w, unsigned stream, uint8_t type, uint64_t seq, const void *payload,
               size_t len, uint64_t *lsn);

/* Waits until the record at lsn is durable per policy sync (SHOAL_SYNC_DEFAULT: the log's):
 *   ALWAYS   returns once the record is fdatasync'ed;
 *   BATCH    the same, but first waits up to sync_window_us for another waiter's sync to
 *            cover it, then forces one;
 *   PERIODIC and NONE return once the record has been handed to write(2) (it then survives
 *            a crash of the process, not of the machine).
 * Group commit: one flusher at a time per stream writes and syncs everything appended so
 * far, and wakes every waiter its sync covers. Returns 0, SHOAL_EINVAL (lsn not appended
 * yet), or the sticky error: once the log has failed, every wait fails, including waits for
 * records that were already durable (treat any error as "outcome unknown"). */
int wal_wait(struct wal *w, unsigned stream, uint64_t lsn, int sync);
/* wal_wait for a caller that brings its whole group (a server's event loop at the end of
 * a round): as a leader it syncs at once, without waiting for released writers to return. */
int wal_wait_now(struct wal *w, unsigned stream, uint64_t lsn, int sync);

/* The same without blocking: cb(ctx, err) runs once, on the stream's background thread,
 * when the record is durable (err 0) or the log failed (err the sticky error). cb must not
 * call wal_close and should return quickly. Returns 0 (cb will run), or an error (SHOAL_EINVAL,
 * SHOAL_ENOMEM, SHOAL_ECLOSED, the sticky error), in which case cb never runs. */
int wal_wait_async(struct wal *w, unsigned stream, uint64_t lsn, int sync,
                   void (*cb)(void *ctx, int err), void *ctx);

/* The lsn of the last record appended to the stream (0: none since wal_open, or no such
 * stream). */
uint64_t wal_appended(struct wal *w, unsigned stream);

/* Writes and fdatasyncs everything appended so far on every stream. Returns 0 or the sticky
 * error. */
int wal_sync_all(struct wal *w);

/* 0, or the sticky error (SHOAL_EIO, SHOAL_ENOSPC, SHOAL_EFSYNC) after a failed write or
 * fsync. */
int wal_error(const struct wal *w);

/* Ends every stream's current segment (writing and fdatasyncing what was appended before the
 * call) so that later records go to new segments named >= seq. After a checkpoint at S, a
 * call with S + 1 lets wal_delete_before(S) remove every segment the checkpoint covers.
 * Returns 0 or an error (which is then sticky). */
int wal_rotate(struct wal *w, uint64_t seq);

/* Deletes every ended segment all of whose records have seq <= seq, on every stream
 * (including stream directories beyond `streams` left by an earlier configuration). The
 * segment being written is never deleted. Returns 0 or SHOAL_EIO (deletion continues past
 * a failure; the log itself stays usable). */
int wal_delete_before(struct wal *w, uint64_t seq);

/* Bytes in the live segment files (headers and records; preallocated space not counted):
 * the checkpoint trigger. */
uint64_t wal_bytes(const struct wal *w);

struct wal_stats {
    uint64_t appends;       /* records appended */
    uint64_t bytes;         /* record bytes appended, headers included */
    uint64_t syncs;         /* fdatasync calls on segments */
    uint64_t sync_ns_total; /* time spent in them */
    uint64_t group_commits; /* syncs that made new records durable */
    uint64_t waiters_woken; /* ALWAYS/BATCH waits (and async waits) that a sync satisfied */
    uint64_t gathers;       /* leaders that waited for released writers (wal.c, GROUP COMMIT) */
};
/* Sums the counters of every stream. Group size = waiters_woken / group_commits. */
void wal_stats(const struct wal *w, struct wal_stats *out);

/* Writes and syncs what is buffered (unless the log failed), runs the pending async
 * callbacks, stops the background threads, trims the preallocated tail of each stream's
 * last segment and frees the log. Returns 0 or the sticky error. NULL is a no-op. */
int wal_close(struct wal *w);

/* ------------------------------------------------------------------------------------
 * Recovery.
 * ---------------------------------------------------------------------------------- */

struct wal_replay_report {
    char file[4096];        /* the segment that was cut or is damaged ("" if none) */
    uint64_t offset;        /* where in it (the start of the first bad record) */
    uint64_t records;       /* records passed to fn */
    uint64_t bytes_dropped; /* bytes cut off or salvaged away (preallocated zeros excluded) */
    uint64_t last_seq;      /* the largest seq of any valid record of the stream, 0 if none */
    uint64_t missing_base;  /* the damage is a segment missing from the stream: its base
                               (named by the header of the segment after it), else 0 */
    bool torn_tail;         /* a half-written tail was cut off the last segment */
    bool salvaged;          /* damage was dropped because salvage was set */
};

/* Reads one stream's segments in order and calls fn for every valid record with
 * seq > after_seq (fn may be NULL to only scan; payload is valid during the call only).
 * It does not know which checkpoint the database is restored from, so it cannot tell a
 * stream's first segments deleted by a checkpoint from ones that were lost: when the first
 * segment on disk names a predecessor that is absent, replay starts there (as for a
 * version 1 segment, always). Recovery uses wal_replay_from_checkpoint instead.
 *   - A clean end (end of file, or only zeros from there on: preallocated space) is no
 *     damage; unless read_only, such zeros are trimmed from the last segment.
 *   - A torn or half-written tail (an incomplete or bad record after which no valid record
 *     starts, at the end of the stream's last segment) is cut off: the file is truncated
 *     there and fsynced (unless read_only), torn_tail is set, bytes_dropped counts it.
 *   - Damage anywhere else returns SHOAL_ECORRUPT with report->file and report->offset
 *     naming it (fn has seen the records before it) -- unless salvage is set: then the
 *     longest valid prefix is kept, the rest dropped (the damaged segment truncated, later
 *     segments deleted, unless read_only) and reported (salvaged, bytes_dropped).
 * fn returning non-zero stops the replay with that value (nothing is truncated then).
 * A stream with no directory replays nothing. Returns 0, SHOAL_ECORRUPT, SHOAL_ENOTSUP (a
 * segment of a newer format), SHOAL_EIO, SHOAL_ENOMEM, or fn's value. */
int wal_replay(const char *dir, unsigned stream, uint64_t after_seq, const struct shoal_io *io,
               bool salvage, bool read_only,
               int (*fn)(void *ctx, uint8_t type, uint64_t seq, const void *payload, size_t len),
               void *ctx, struct wal_replay_report *report);

/* wal_replay for a database restored from the checkpoint at checkpoint_seq (the MANIFEST's;
 * 0 when there is none): the same, and every segment header of format version 2 that names
 * a predecessor which is not on disk is judged by the largest seq that predecessor may
 * hold, which the header carries (wal.c invariant 8):
 *   - bound <= checkpoint_seq: a checkpoint covers every record it held (and deleted it,
 *     or may have); no damage, replay goes on;
 *   - bound > checkpoint_seq: it held records that only the log has, so it was lost:
 *     SHOAL_ECORRUPT with report->file and report->offset at offset 0 of the segment whose
 *     header names it when that segment is the first on disk, else at the end of the
 *     segment before it (as for any gap), and report->missing_base the missing segment's
 *     base. With salvage the stream keeps
 *     nothing from the gap on (the segments from there are deleted unless read_only) and
 *     reports it (salvaged, bytes_dropped).
 * Records with seq <= after_seq are read and checked but not passed to fn; recovery passes
 * after_seq == checkpoint_seq, a checker that wants every record passes 0. */
int wal_replay_from_checkpoint(const char *dir, unsigned stream, uint64_t checkpoint_seq,
                               uint64_t after_seq, const struct shoal_io *io, bool salvage,
                               bool read_only,
                               int (*fn)(void *ctx, uint8_t type, uint64_t seq, const void *payload,
                                         size_t len),
                               void *ctx, struct wal_replay_report *report);

/* Sets *count to 1 + the largest stream number with a directory under dir/log (0 if none):
 * replay streams 0..count-1. Returns 0 or SHOAL_EIO. */
int wal_list_streams(const char *dir, const struct shoal_io *io, unsigned *count);

/* Writes the path of a segment file into out. Returns 0 or SHOAL_EINVAL (too long). */
int wal_segment_path(char *out, size_t cap, const char *dir, unsigned stream, uint64_t base);

#endif /* SHOAL_DURABILITY_WAL_H */
