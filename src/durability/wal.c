/*
 * wal.c -- log streams: buffered appends, group commit, segment files, recovery.
 *
 * PURPOSE
 * A durable Shoal database logs every commit before acknowledging it (per its sync
 * policy). The log is split into L streams, each a directory of segment files with its own
 * buffer, mutex, file and background thread, so that L streams append without sharing a
 * lock and fdatasync in parallel (the disk overlaps syncs of different files: 30,226
 * fdatasync/s on two files against 17,920/s on one, in a quiet run). Records
 * are opaque: a type byte, a seq and payload bytes encoded by the core.
 *
 * FORMAT (docs/FORMAT.md has the byte-by-byte tables; version WAL_FORMAT_VERSION = 2)
 *   DIR/log/<stream>/<base>.wal, base a 20-digit zero-padded decimal.
 *   Segment header, 64 bytes: a 48-byte prologue -- "SHOALWAL", u32 version, u32 stream,
 *   u64 base, u64 base and u64 length of the previous segment (0, 0 for none), u32 flags
 *   (0), u32 masked CRC-32C of bytes 0..43 -- then u64 the previous segment's seq bound
 *   (invariant 8), u32 reserved (0), u32 masked CRC-32C of bytes 0..59. Naming the
 *   predecessor lets replay detect a segment that was cut short at a record boundary, or
 *   is missing, which no checksum inside it could reveal; its seq bound tells a missing
 *   first segment that a checkpoint deleted from one that was lost. Version 1 headers are
 *   the prologue alone (48 bytes) and are still read. The prologue's own CRC lets a reader
 *   trust the version field before it knows the layout: any other version with an intact
 *   prologue is SHOAL_ENOTSUP, a flipped bit in it is damage.
 *   Then records (record format version 1 in every segment version), back to back, each a
 *   20-byte header and the payload:
 *   u32 masked CRC-32C of bytes 4..(20+len), u32 len, u8 version, u8 type (non-zero),
 *   u16 reserved (0), u64 seq, then len payload bytes. All integers little-endian.
 *   A segment may end in zeros (preallocated space that was never written).
 *
 * NAMES AND SEQS
 * Records of one stream are not in seq order: two shards of one stream draw seqs under
 * different locks, so the one that appends second may hold the smaller seq. Segment names
 * therefore do not promise "the first record's seq"; they promise an ordering and a bound:
 * a segment's base is chosen when it is created as the largest of (a) the floor set by
 * next_seq_hint or wal_rotate, (b) the previous segment's base + 1, and (c) the largest seq
 * written to the stream so far + 1. Hence (invariant 2) every record in earlier segments
 * has a seq below it, and each ended segment knows an upper bound of its seqs, which is
 * what wal_delete_before needs. A record with a seq below its own segment's base (a late
 * appender) is legal.
 *
 * INVARIANTS
 *   1. Records of a stream reach the files in append order; lsn k is the k-th record
 *      appended to the stream since wal_open.
 *   2. Segment bases strictly increase in creation order, and every record of segments
 *      before a segment has seq < that segment's base.
 *   3. written <= appended and synced <= written (per stream, under its mutex). Every record
 *      with lsn <= synced is on disk: its bytes were written before a successful fdatasync
 *      of its segment began, or its segment was ended (ending fdatasyncs it).
 *   4. At most one thread at a time (the "flusher", which set `flushing`) touches the
 *      stream's file fields; appenders touch only the buffer, under the mutex.
 *   5. After the first failed write or sync the log's error is set for good. Flushes then
 *      write nothing, appends and waits return the error, and no waiter is acknowledged
 *      afterwards: not even one whose record a later sync would have covered (architecture
 *      invariant 8).
 *   6. An ended segment is fdatasync'ed and never written again; only ended segments are
 *      deleted, and only when their seq bound is <= the caller's seq.
 *   7. Replay delivers, for each stream, a prefix of what was appended, and never a record
 *      after the first damaged byte (architecture invariant 4).
 *   8. A segment's header carries B, the seq bound of its predecessor P: the number that
 *      wal_delete_segments compares with a checkpoint's seq to decide whether P may go
 *      (wal_stream_create_segment copies P's max_seq). Every deletion bound ever used for
 *      P is >= B, and P is deleted only when that bound is <= a checkpoint seq S that a
 *      durable MANIFEST already names; MANIFEST seqs never decrease. So when replay from
 *      the MANIFEST's checkpoint C finds P missing although a header names it, B <= C
 *      means a checkpoint covers every record P held (deleted or not, nothing is lost),
 *      and B > C means no checkpoint can have deleted P: it was lost (damage). Exact in
 *      both directions, because B bounds P's records and those of every segment before P.
 *      Why no crash makes a false report:
 *      a. Deletion bounds >= B. In the session that created P's successor F, P's bound is
 *         B itself (an ended segment's max_seq never changes). In a later session P is
 *         loaded from disk with bound F.base - 1 (F is the next segment on disk: nothing
 *         can be created between two segments, and a segment that is gone is gone for
 *         good), and F.base > B because F was named above every seq written before it.
 *         A loaded last segment gets next_seq_hint - 1, which is what a successor
 *         created in that session then records.
 *      b. Deletion only after the MANIFEST (durable.c R3): wal_delete_before(S) runs after
 *         manifest_write returned, i.e. after the rename and the directory fsync. A crash
 *         between the rename and the deletion, or during the deletion (some files gone),
 *         leaves a MANIFEST naming S and segments gone only if their bound is <= S.
 *      c. A deletion racing the creation of F (F's header read P from the list under the
 *         stream mutex just before a checkpoint removed P): P's bound was <= that
 *         checkpoint's seq, so B <= C after any crash.
 *      d. A crash while F is being created (header torn or absent): F is the last segment
 *         and its bad header is a torn tail at offset 0, removed; F names nothing.
 *      e. Recovery's own deletions never remove a segment that something after it names:
 *         a torn or headerless last segment is the last; salvage removes a damaged segment
 *         together with every later one.
 *      f. Retired stream directories (reopen with fewer streams) get no new segments; their
 *         segments are deleted from the front under the same rule, and replayed from the
 *         same checkpoint.
 *      g. Clean close checkpoints and then deletes what the checkpoint covers; the trimmed
 *         last segment is loaded at the next open with bound next_seq_hint - 1 >= every
 *         seq in it. shoal_persist starts a log in an empty directory (its first
 *         segments name no predecessor) and deletes nothing before a MANIFEST names its
 *         first checkpoint, as (b) says of every checkpoint.
 *      h. Unlinks made durable out of order by a power failure (a later segment gone, an
 *         earlier one still there) leave a missing predecessor in the middle of a stream;
 *         the same rule applies there, so that is no false report either.
 *      A stream's first segment of format version 1 carries no B: a missing predecessor
 *      there is taken for a deleted one (docs/FORMAT.md, the version 1 gap).
 *
 * STATE MACHINE OF A STREAM
 *   idle --wal_append--> buffered --flush (a waiter, the background thread, rotate,
 *   sync_all or close)--> flushing --write ok, sync ok--> idle (written/synced advance)
 *   flushing --write or sync fails--> FAILED (wal_fail: sticky for the whole log).
 *   A flush swaps the append buffer for a spare one under the mutex, then writes and syncs
 *   with the mutex released, so appenders never wait for the disk (they wait at most for a
 *   memcpy by another appender).
 *
 * GROUP COMMIT
 * Two schemes are implemented and selectable (wal_options.group_commit):
 *   WAL_GROUP_LEADER  -- the first waiter that finds no flush in progress becomes the
 *     flusher (wal_wait -> wal_stream_flush): it takes everything appended so far, writes
 *     it, fdatasyncs, then wakes the waiters its sync covered and hands the lead to the
 *     oldest waiter left over (wal_stream_wake_waiters). The thread that commits first
 *     syncs for itself: no hand-off to another thread unless there is a queue. Waiters
 *     sleep on the stream's futex word, each with a bit of its own; one bitset wake after
 *     the stream lock is released wakes a whole group, and a covered waiter returns with
 *     the verdict the waker left it, without taking the lock again (struct wal_waiter).
 *   WAL_GROUP_FLUSHER -- waiters post the lsn they need and sleep; the stream's background
 *     thread does every write and sync.
 * Measured on this machine (2 vCPUs shared with other work, virtio disk; one fdatasync
 * takes 55-80 us when the machine is quiet and milliseconds when it is not) with
 * bench/bench_fsync.c: sync ALWAYS, one 100-byte record per commit, 2 s per point, the
 * points of one writer count run back to back so they share the disk's mood. Two runs of
 * the final code (a / b), commits/s:
 *
 *                         16 writers            64 writers
 *     RocksDB sync=true   28,748 / 26,818       48,733 /  31,437
 *     leader,  L=1        72,195 / 80,114      201,479 / 129,672
 *     leader,  L=2        88,873 / 63,183      180,150 / 131,790
 *     flusher, L=1        58,675 / 13,177       46,764 /  53,629
 *     flusher, L=2        78,164 / 58,587      119,835 /  25,240
 *
 * With 1 and 4 writers both runs were dominated by disk stalls (raw fdatasync at 230-260/s)
 * and the order of the schemes flipped between them; in a quiet run of the same path: 1
 * writer 18,175/s (RocksDB 10,451), 4 writers 33,424/s (RocksDB 22,093), the flusher scheme
 * 14,763 and 1,812. A flusher thread puts two wakeups of a sleeping thread on the path of
 * every commit (waiter to flusher, flusher to waiter), and on a small virtual machine a
 * wakeup can cost as much as the fdatasync. Hence WAL_GROUP_LEADER is the default.
 * Refinements measured in interleaved A/B runs: waking only the covered waiters plus one
 * next leader instead of broadcasting (kept); semaphores posted outside the lock with the
 * verdict handed over, instead of condition variables signalled under it (kept: 16
 * writers 62-97K against 26-62K, 64 writers 134-212K against 8-119K); a leader that goes on
 * leading a few more flushes instead of handing over (no better; dropped).
 * Gathering (kept). Without it, N writers on one stream split into two halves that take
 * turns: while one half's sync runs, the other half (released by the previous sync) appends
 * and waits, and the next leader syncs just those, so groups stayed at N/2 (7.6-8.1 at 16
 * writers, 2.2 at 4). Now a leader first waits for the writers the last flush released
 * (s->returning, counted in wal_stream_wake_waiters) to append again, up to the stream's
 * average sync time and never more than WAL_GATHER_MAX_NS, holding the flusher's role
 * meanwhile so that they queue behind it; the append that completes the group signals it.
 * (Waiting up to half the average sync, the first version, cut the group short more often:
 * a whole average won 6 of 6 alternated pairs at 16 writers, 54-62K against 33-54K
 * commits/s, and 5 of 6 at 64.) One writer releases nobody and never waits; async waits
 * (the server) are not counted. With L streams a leader expects 1/L of the writers its
 * flush released, since their next records land on any stream: expecting all of them held
 * every leader until its deadline (16 writers, 2 streams: 13-26K commits/s, against 35K
 * with the share). bench_fsync, 1 stream, 4 alternated pairs, commits/s old -> new: 16
 * writers 26-46K -> 45-65K (groups 7.7 -> 15), 4 writers 11-20K -> 19-24K (2.2 -> 4.0), 1
 * writer unchanged; shoal-bench-durable, 3 pairs: 16 writers 33-45K -> 43-56K (groups 8 ->
 * 15.6), 64 writers 67-74K -> 77-92K (groups 23-28 -> 46-49).
 * One futex wake per group (kept). With a semaphore per waiter, the waker's loop of
 * sem_post calls took 54 us per flush at 16 writers (3.7 us per post, 14.4 posts), a
 * quarter of the time between two syncs. A bitset wake on one word per stream makes it one
 * system call; CPU per commit at 16 writers (a program doing only durable puts, 4
 * alternated pairs) fell from 9.4-11.6 us to 8.0-10.1 us, commits/s 58-75K -> 58-81K; at
 * 64 writers 105-108K -> 96-137K. Waiters no longer own a semaphore, so a waker touches no
 * waiter's memory after it releases the lock.
 * Gathering by yielding (kept, for up to WAL_GATHER_YIELD_PER_CORE writers per core). A
 * gathering leader that sleeps on a condition variable is woken by the last writer's
 * append, and on this 2-core virtual machine that wakeup sits between the group's last
 * append and its sync. A leader that calls sched_yield instead stays runnable and gives
 * its core to the writers it waits for. shoal-bench-durable --only commits --anchors none,
 * 6 alternated pairs (December 2026, AMD EPYC host), commits/s old -> new: 16 writers
 * 52.3-53.8K -> 50.6-59.0K (new ahead in 5 of 6, median +9%), with CPU per commit 11.5 ->
 * 15.9 us (the yields); in bench_fsync the yielding leader won 7 of 8 pairs at 16. With
 * 64 writers it lost: the leader's slices delayed 63 returning writers past the deadline
 * and groups fell from 63.7 to 52-57 (bench_fsync, 3 of 3 pairs); spinning 50 or 100 us
 * and then sleeping, or sleeping until all but 2 or 8 were in and then yielding, measured
 * no better than sleeping. So 64 writers on 2 cores still sleep, and their figures did not
 * move (104-108K either way).
 *
 * BACKGROUND THREAD (one per stream)
 * Runs async waits (wal_wait_async callbacks), the PERIODIC sync every sync_period_ms
 * (other policies: a write of what is buffered, so records reach the OS within a period),
 * write-behind when the buffer passes 1 MiB, all flushes in the FLUSHER scheme, and the
 * final flush at close.
 *
 * PREALLOCATION
 * Segments are fallocate'd ahead of the writes, WAL_PREALLOCATE_STEP at a time (up to
 * segment_bytes): fdatasync after appending into reserved space measured 1.2-1.5x faster
 * than into a growing file (17,920/s against 12,514/s in a quiet run), since the file size
 * need not be journaled with every sync. Reserving a step rather than the whole segment
 * bounds the zeros recovery must read past at the end of a crashed stream (a whole 64 MiB
 * reservation made them most of the cost of recovering a small log).
 * The reader therefore treats zeros to the end of a file as a clean end, and ending a
 * segment (roll, close) trims the unused reservation.
 * Zeroed ahead (kept). A write into fallocate'd space lands in an unwritten extent, so the
 * fdatasync that follows must convert it: on this machine's file system (ext4 without a
 * journal, ext4_fsync_nojournal) a second, synchronous write of the inode's block after the
 * data's, a round trip of its own. A commit of 120 bytes converts a 4 KiB block once in 30
 * syncs, but a group of a few KiB converts one or more in every sync. One file, pwrite +
 * fdatasync, fallocate'd against written before (December 2026): 140 bytes 5.8-6.4K/s
 * either way; 2,000 bytes 4.3-5.0K against 5.8-6.6K/s; 9,600 bytes 3.9-4.5K against
 * 5.6-6.9K; 40,000 bytes 2.8-3.2K against 4.9-5.2K. So a flush that syncs for waiters
 * first writes zeros WAL_ZERO_STEP past the end of what it wrote whenever fewer than
 * WAL_ZERO_AHEAD are left (wal_stream_zero_ahead, through io write_zeros, in the page
 * cache): the sync it was going to make anyway carries them and pays the conversion, once
 * per step, and the syncs after it find written blocks. The zeros start past everything
 * written, in the flusher's own hands (no second writer of the file), and read as the
 * clean end the reader already accepts; a failed write of zeros stops them for the segment
 * and nothing else. Only a sync for waiters zeroes (WAL_FLUSH_WAITED): not a periodic
 * tick's, whose one conversion per period costs less than writing every byte of the log
 * twice, nor close's. Measured, old and new builds alternated (bench/ab_server.sh, 6
 * rounds each): shoal-server under sync always, redis-benchmark -P 16 SET, 217K -> 234K
 * requests/s with 256 KiB steps and 284K -> 300K with 1 MiB (kept; 4 MiB measured no
 * better, 291K against 299K), CPU per request 4.19 -> 3.91 us; -P 1 35.5K -> 42.4K (6 of 6
 * rounds). shoal-bench-durable --only commits, 3 pairs: 4 / 16 / 64 writers 11.1-14.5K /
 * 32.0-36.1K / 64.5-78.7K -> 13.5-16.7K / 30.8-45.4K / 69.0-99.9K commits/s (new ahead in
 * 7 of 9), 1 writer unchanged.
 * An earlier variant that had the stream's background thread write and sync zeros 1 MiB
 * ahead, measured with commits of 120 bytes only, showed no gain beyond the noise and was
 * not kept; its second writer of the open segment needed a claim protocol this does not.
 * Cached ahead (kept). Appending a record to a page the page cache does not hold yet makes
 * that write(2) allocate the page and zero the rest of it: once every 27 records of 148
 * bytes, on the committing thread. Alone that is 1-2 us, but while a checkpoint fills the
 * page cache with its own files the allocation meets theirs, and in shoal-bench-durable's
 * checkpoint point 3-4% of the puts' writes took over 8 us (against 0.4% idle): half of the
 * puts that set the p99. So the reserved space WAL_CACHE_AHEAD past the end is asked into
 * the page cache (io cache_ahead: posix_fadvise WILLNEED) a WAL_CACHE_STEP at a time, each
 * time a write crosses a step. An unwritten extent reads as zeros without a disk request,
 * so this costs no I/O; it moves the allocation and zeroing of 16 pages into one call per
 * 64 KiB, and the write into a cached page then only copies. The writes over 8 us fell to
 * 0.3-0.4% during a checkpoint; space that is not reserved (no fallocate) is left alone.
 *
 * RECOVERY (wal_replay, wal_replay_from_checkpoint)
 * A bad record at offset p of segment k is classified: zeros from p to the end of the
 * file -> clean end; k is the last segment and no valid record starts anywhere after p ->
 * torn tail, cut off; otherwise damage -> SHOAL_ECORRUPT naming file and offset, or, with
 * salvage, the prefix before it is kept and the rest dropped. The search for "a valid
 * record after p" tries every byte offset (a cheap header test first, the CRC only for
 * plausible headers), so a bit flip in the middle of the last segment is reported, not
 * silently cut. A header that names a predecessor other than the segment before it on
 * disk is a gap (damage at the end of the segment before, or at offset 0 of the first
 * one), except a missing predecessor that a checkpoint covers (invariant 8). Only
 * wal_replay_from_checkpoint knows the checkpoint; wal_replay (for tools that read a
 * directory without it) keeps the version 1 rule for a missing first predecessor.
 *
 * TESTED BY tests/unit/test_wal.c: round trips over several segments and streams (both
 * schemes, preallocated and growing files), rotate and delete_before, reopen with and
 * without a seq hint and with fewer streams, group commit with 8 threads x 40 commits
 * (every acknowledged record replayed; group size > 1 observed as counts: a sync hook holds
 * each fdatasync until every writer has a record waiting; leaders gathered), sticky errors
 * after injected fsync and write failures and ENOSPC, short writes, a torn last write cut
 * on replay, bit flips and truncations at every byte of a two-segment stream, a missing
 * middle segment, salvage, a crash image with preallocated zeros (exact replay; a torn
 * write into the zeros is a torn tail; zeros then a valid record, or a flipped bit inside
 * the records, is damage), a failed reservation (the file grows), a newer format, async
 * waits, the periodic sync and BATCH; the version 2 header fields (the predecessor's bound
 * equals the deletion bound, across rotation, reopen and a deletion), a lost first segment
 * against a deleted one on both sides of the checkpoint, and a hand-made version 1 segment
 * read beside version 2 ones; under ASan+UBSan and TSan. tests/unit/test_corruption.c loses
 * the first segment after a checkpoint in a whole database; tests/unit/test_crash.c kills
 * writers during checkpoints and deletions (no false SHOAL_ECORRUPT).
 */
#include "durability/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "durability/crc32c.h"
#include "durability/encoding.h"
#include "shoal.h"

/* A buffer this full wakes the background thread to write it out (write-behind). */
#define WAL_WRITE_BEHIND_BYTES (1u << 20)
/* A flush buffer that grew beyond this is freed after use rather than kept as the spare. */
#define WAL_SPARE_KEEP_BYTES (8u << 20)
/* The initial append buffer. */
#define WAL_BUFFER_INITIAL (64u * 1024)
/* Replay reads segments in windows of this size (larger for larger records). */
#define WAL_READ_CHUNK (1u << 20)
#define WAL_MAX_STREAMS 4096u
#define WAL_DEFAULT_PERIOD_MS 1000u
#define WAL_DEFAULT_WINDOW_US 2000u
#define WAL_NO_DEADLINE UINT64_MAX
#define WAL_PATH_MAX 4096
/* The longest a leader waits for released writers to return (wal_stream_gather). */
#define WAL_GATHER_MAX_NS 1000000u
/* A leader yields while it gathers at most this many writers per online core, and sleeps
 * while it gathers more (wal_stream_gather). */
#define WAL_GATHER_YIELD_PER_CORE 8u

static const uint8_t wal_segment_magic[8] = {'S', 'H', 'O', 'A', 'L', 'W', 'A', 'L'};

struct wal_segment {
    uint64_t base;
    uint64_t bytes;   /* bytes in use: header and records */
    uint64_t max_seq; /* for an ended segment, an upper bound of its records' seqs */
    bool ended;       /* fdatasync'ed and closed for writing (invariant 6) */
};

struct wal_async {
    uint64_t lsn;
    uint64_t due_ns; /* BATCH: when to force a sync; ALWAYS: 0 */
    bool durable;    /* ALWAYS or BATCH: needs synced, else written */
    void (*cb)(void *ctx, int err);
    void *ctx;
};

/* A thread blocked in wal_wait. It sleeps on its stream's futex word with a bit of its own
 * (one of 32, dealt round-robin as waiters queue), so the end of a flush wakes the waiters
 * it covered, plus at most one that is to lead the next flush, with one FUTEX_WAKE_BITSET
 * whose mask holds their bits: waiters whose bit is not in it sleep on (some share a bit
 * when more than 32 wait; they wake, find no verdict, and sleep again). The waker dequeues
 * each waiter and sets its verdict under the mutex, then bumps the word and wakes after
 * releasing it: a covered waiter returns with the verdict without taking the mutex again,
 * so a group costs one system call and no second round of contention on the stream lock
 * (which appenders holding shard locks need). A waiter loads the word before it looks at
 * its verdict, so a verdict set after the look changes the word first and the wait
 * returns at once. */
enum wal_verdict {
    WAL_WAITING = 0, /* queued, or running */
    WAL_DONE,        /* result holds the answer */
    WAL_LEAD,        /* lead the next flush */
};

struct wal_waiter {
    struct wal_waiter *prev, *next;
    uint64_t lsn;
    uint64_t due_ns; /* BATCH: when to force a sync; otherwise 0 */
    bool durable;
    bool queued;
    /* enum wal_verdict: stored with release order after result, by the waker under the
     * mutex before the wake, and loaded with acquire order (ThreadSanitizer does not see
     * through futex calls; the atomic is what orders result). */
    _Atomic int verdict;
    int result;
    uint32_t bit; /* this waiter's bit of the stream's futex bitset */
};

struct wal_stream {
    struct wal *wal;
    unsigned index;
    char dir[WAL_PATH_MAX];
    pthread_mutex_t mutex;
    pthread_cond_t flushed; /* broadcast at the end of every flush */
    pthread_cond_t work;    /* wakes the background thread */
    pthread_cond_t gathered; /* signalled when a gathering leader's records are in */
    pthread_t thread;
    bool thread_started;

    /* Guarded by mutex. */
    uint8_t *buf; /* records appended and not yet taken by a flusher */
    size_t len, cap;
    uint8_t *spare; /* the other buffer, swapped in by each flush */
    size_t spare_cap;
    uint64_t appended; /* lsn of the last record appended */
    uint64_t written;  /* records <= written have been handed to write (invariant 3) */
    uint64_t synced;   /* records <= synced are durable */
    uint64_t max_seq;  /* largest seq appended */
    bool flushing;     /* a flusher owns the file fields (invariant 4) */
    bool stop;         /* wal_close has begun */
    bool thread_idle;  /* the background thread waits on `work` */
    bool write_behind_kicked;
    uint64_t request_sync;     /* FLUSHER scheme: highest lsn a durable waiter needs */
    uint64_t request_sync_due; /* ... and when its sync is due (ALWAYS: now) */
    uint64_t request_write;    /* FLUSHER scheme: highest lsn a non-durable waiter needs */
    struct wal_async *async;
    size_t async_len, async_cap;
    struct wal_waiter *waiters_head, *waiters_tail; /* blocked in wal_wait, FIFO */
    uint32_t next_bit; /* the bit the next waiter gets, modulo 32 */
    _Atomic uint32_t wake_word; /* the waiters' futex word: bumped by every wake */
    uint64_t returning;    /* durable waiters the last flush released: likely back soon */
    uint64_t gather_until; /* a leader gathers until appended reaches this (0: none) */
    struct wal_segment *segments; /* oldest first; the last may be the one being written */
    size_t segment_count, segment_cap;
    uint64_t stat_appends, stat_bytes, stat_syncs, stat_sync_ns, stat_group_commits,
        stat_waiters_woken, stat_gathers;

    /* Owned by the flusher (invariant 4). */
    int fd;                                  /* the segment being written, -1 if none */
    uint64_t seg_len;                        /* bytes written to it, header included */
    uint64_t seg_allocated;                  /* bytes reserved by fallocate, 0 if none */
    uint64_t seg_zeroed; /* bytes below which the segment is written (records or zeros) */
    uint64_t last_base;                      /* base of the newest segment, 0 if none */
    uint64_t base_floor;                     /* the next segment's base is at least this */
    uint64_t max_seq_written;                /* bound of every seq written to this stream */
    uint64_t pending_syncs, pending_sync_ns; /* folded into the stats at the end of a flush */
};

/* Segments of a stream directory beyond the configured streams (a database reopened with
 * fewer streams): kept until wal_delete_before covers them. */
struct wal_retired {
    char dir[WAL_PATH_MAX];
    struct wal_segment *segments;
    size_t segment_count;
};

struct wal {
    const struct shoal_io *io;
    char dir[WAL_PATH_MAX];
    char log_dir[WAL_PATH_MAX];
    unsigned stream_count;
    uint64_t segment_bytes;
    int sync;
    uint64_t period_ns;
    uint64_t window_ns;
    int group_commit;
    unsigned cores; /* online cores at open, at least 1 (wal_stream_gather) */
    bool preallocate;
    struct wal_stream *streams;
    unsigned streams_initialized; /* streams whose mutex and conditions exist */
    pthread_mutex_t retired_mutex;
    struct wal_retired *retired;
    size_t retired_count;
    _Atomic int error;
    _Atomic uint64_t live_bytes;
};

/* ------------------------------------------------------------------------------------
 * Small helpers.
 * ---------------------------------------------------------------------------------- */

static uint64_t wal_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void wal_timed_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ns)
{
    struct timespec ts = {
        .tv_sec = (time_t)(deadline_ns / 1000000000ull),
        .tv_nsec = (long)(deadline_ns % 1000000000ull),
    };
    pthread_cond_timedwait(cond, mutex, &ts);
}

static int wal_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return SHOAL_ENOMEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : SHOAL_ENOMEM;
}

static uint64_t wal_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t wal_max(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* Records the first failure of the log; later ones keep the first (invariant 5). */
static void wal_fail(struct wal *w, int err)
{
    int expected = 0;
    atomic_compare_exchange_strong(&w->error, &expected, err);
}

/* The policy a wait uses: the log's for SHOAL_SYNC_DEFAULT; -1 for an unknown value. */
static int wal_policy(const struct wal *w, int sync)
{
    if (sync == SHOAL_SYNC_DEFAULT)
        return w->sync;
    if (sync < SHOAL_SYNC_NONE || sync > SHOAL_SYNC_ALWAYS)
        return -1;
    return sync;
}

static bool wal_policy_durable(int policy)
{
    return policy == SHOAL_SYNC_ALWAYS || policy == SHOAL_SYNC_BATCH;
}

static int wal_stream_dir(char *out, size_t cap, const char *dir, unsigned stream)
{
    int n = snprintf(out, cap, "%s/log/%u", dir, stream);
    return n < 0 || (size_t)n >= cap ? SHOAL_EINVAL : 0;
}

int wal_segment_path(char *out, size_t cap, const char *dir, unsigned stream, uint64_t base)
{
    int n = snprintf(out, cap, "%s/log/%u/%020" PRIu64 ".wal", dir, stream, base);
    return n < 0 || (size_t)n >= cap ? SHOAL_EINVAL : 0;
}

static int wal_segment_file(char *out, size_t cap, const char *stream_dir, uint64_t base)
{
    int n = snprintf(out, cap, "%s/%020" PRIu64 ".wal", stream_dir, base);
    return n < 0 || (size_t)n >= cap ? SHOAL_EINVAL : 0;
}

/* Encodes a version 2 segment header (WAL_SEGMENT_HEADER_SIZE bytes): the prologue that
 * every version shares (bytes 0..47, checked by its own CRC, so that a reader can trust the
 * version before it knows the layout), then the predecessor's seq bound and the CRC of the
 * whole header. */
static void wal_encode_segment_header(uint8_t *out, unsigned stream, uint64_t base,
                                      uint64_t prev_base, uint64_t prev_bytes,
                                      uint64_t prev_max_seq)
{
    memcpy(out, wal_segment_magic, 8);
    encoding_put_u32(out + 8, WAL_FORMAT_VERSION);
    encoding_put_u32(out + 12, stream);
    encoding_put_u64(out + 16, base);
    encoding_put_u64(out + 24, prev_base);
    encoding_put_u64(out + 32, prev_bytes);
    encoding_put_u32(out + 40, 0);
    encoding_put_u32(out + 44, crc32c_mask(crc32c(out, 44)));
    encoding_put_u64(out + 48, prev_max_seq);
    encoding_put_u32(out + 56, 0);
    encoding_put_u32(out + 60, crc32c_mask(crc32c(out, 60)));
}

/* ------------------------------------------------------------------------------------
 * Listing segments.
 * ---------------------------------------------------------------------------------- */

struct wal_listing {
    uint64_t *bases;
    size_t count, cap;
    bool out_of_memory;
};

/* Parses "<20 digits>.wal"; anything else in a stream directory is not a segment. */
static bool wal_parse_segment_name(const char *name, uint64_t *base)
{
    if (strlen(name) != 24 || strcmp(name + 20, ".wal") != 0)
        return false;
    uint64_t value = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        uint64_t digit = (uint64_t)(name[i] - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    *base = value;
    return true;
}

static int wal_listing_add(void *ctx, const char *name)
{
    struct wal_listing *l = ctx;
    uint64_t base;
    if (!wal_parse_segment_name(name, &base))
        return 0;
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        uint64_t *bases = realloc(l->bases, cap * sizeof *bases);
        if (bases == NULL) {
            l->out_of_memory = true;
            return 1;
        }
        l->bases = bases;
        l->cap = cap;
    }
    l->bases[l->count++] = base;
    return 0;
}

static int wal_compare_base(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the segments of a stream directory in base order. A missing directory has none. */
static int wal_list_segments(const struct shoal_io *io, const char *stream_dir,
                             struct wal_listing *l)
{
    memset(l, 0, sizeof *l);
    int rc = io->list_dir(io, stream_dir, wal_listing_add, l);
    if (l->out_of_memory) {
        free(l->bases);
        l->bases = NULL;
        return SHOAL_ENOMEM;
    }
    if (rc == -ENOENT)
        return 0;
    if (rc < 0) {
        free(l->bases);
        l->bases = NULL;
        return io_error(rc);
    }
    if (l->count > 1)
        qsort(l->bases, l->count, sizeof *l->bases, wal_compare_base);
    return 0;
}

struct wal_stream_listing {
    unsigned count;
};

static int wal_stream_listing_add(void *ctx, const char *name)
{
    struct wal_stream_listing *l = ctx;
    size_t n = strlen(name);
    if (n == 0 || n > 9)
        return 0;
    unsigned value = 0;
    for (size_t i = 0; i < n; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        value = value * 10 + (unsigned)(name[i] - '0');
    }
    if (value + 1 > l->count)
        l->count = value + 1;
    return 0;
}

int wal_list_streams(const char *dir, const struct shoal_io *io, unsigned *count)
{
    char log_dir[WAL_PATH_MAX];
    *count = 0;
    if (dir == NULL || io_path_join(log_dir, sizeof log_dir, dir, "log") != 0)
        return SHOAL_EINVAL;
    if (io == NULL)
        io = io_posix();
    struct wal_stream_listing l = {0};
    int rc = io->list_dir(io, log_dir, wal_stream_listing_add, &l);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return io_error(rc);
    *count = l.count;
    return 0;
}

/* ------------------------------------------------------------------------------------
 * Writing: segments and flushes. Everything here runs in the flusher (invariant 4).
 * ---------------------------------------------------------------------------------- */

static int wal_stream_push_segment(struct wal_stream *s, uint64_t base, uint64_t bytes)
{
    if (s->segment_count == s->segment_cap) {
        size_t cap = s->segment_cap ? s->segment_cap * 2 : 8;
        struct wal_segment *segments = realloc(s->segments, cap * sizeof *segments);
        if (segments == NULL)
            return SHOAL_ENOMEM;
        s->segments = segments;
        s->segment_cap = cap;
    }
    s->segments[s->segment_count++] = (struct wal_segment){.base = base, .bytes = bytes};
    return 0;
}

/* Keeps the reserved space WAL_CACHE_AHEAD past the segment's end in the page cache, as its
 * end moves from `from` to `to` bytes (PREALLOCATION, "Cached ahead"): the steps whose
 * boundaries it crossed, that far ahead, are asked in. A hint; its failure changes nothing. */
static void wal_stream_cache_range(struct wal_stream *s, uint64_t begin, uint64_t end)
{
    for (end = wal_min(end, s->seg_allocated); begin < end; begin += WAL_CACHE_STEP)
        (void)s->wal->io->cache_ahead(s->wal->io, s->fd, begin, WAL_CACHE_STEP);
}

static void wal_stream_cache_ahead(struct wal_stream *s, uint64_t from, uint64_t to)
{
    wal_stream_cache_range(s, from / WAL_CACHE_STEP * WAL_CACHE_STEP + WAL_CACHE_AHEAD,
                           to / WAL_CACHE_STEP * WAL_CACHE_STEP + WAL_CACHE_AHEAD);
}

/* Creates the next segment: reserve its space, write and fsync its header, fsync the
 * directory so the file survives a crash before any record in it is acknowledged. */
static int wal_stream_create_segment(struct wal_stream *s)
{
    struct wal *w = s->wal;
    const struct shoal_io *io = w->io;
    uint64_t base = wal_max(wal_max(s->base_floor, s->last_base + 1), s->max_seq_written + 1);
    char path[WAL_PATH_MAX];
    if (wal_segment_file(path, sizeof path, s->dir, base) != 0)
        return SHOAL_EINVAL;

    int fd = io->open(io, path, O_RDWR | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return io_error(fd);
    uint64_t allocated = 0;
    uint64_t first_step = wal_min(w->segment_bytes, WAL_PREALLOCATE_STEP);
    if (w->preallocate && io->fallocate(io, fd, 0, first_step) == 0)
        allocated = first_step;
    /* A failed reservation is not an error: the file grows instead, and a disk that is
     * really full fails the writes themselves with ENOSPC. */

    /* The predecessor is the newest segment still listed: ended (so its bound is final)
     * and not deleted yet. Its bound is the very number wal_delete_segments compares with a
     * checkpoint's seq (invariant 8). A checkpoint may delete it right after we read it;
     * the header then names a segment that a checkpoint covered, which replay accepts. */
    uint64_t prev_base = 0, prev_bytes = 0, prev_max_seq = 0;
    pthread_mutex_lock(&s->mutex);
    if (s->segment_count > 0) {
        const struct wal_segment *prev = &s->segments[s->segment_count - 1];
        prev_base = prev->base;
        prev_bytes = prev->bytes;
        prev_max_seq = prev->max_seq;
    }
    pthread_mutex_unlock(&s->mutex);
    uint8_t header[WAL_SEGMENT_HEADER_SIZE];
    wal_encode_segment_header(header, s->index, base, prev_base, prev_bytes, prev_max_seq);
    int err = io_pwrite_full(io, fd, header, sizeof header, 0);
    if (err < 0) {
        err = io_error(err);
    } else {
        uint64_t start = wal_now_ns();
        int rc = io->fsync(io, fd);
        s->pending_syncs++;
        s->pending_sync_ns += wal_now_ns() - start;
        if (rc == 0)
            rc = io->fsync_dir(io, s->dir);
        err = io_sync_error(rc);
    }
    if (err != 0) {
        io->close(io, fd);
        io->unlink(io, path);
        return err;
    }

    pthread_mutex_lock(&s->mutex);
    err = wal_stream_push_segment(s, base, WAL_SEGMENT_HEADER_SIZE);
    pthread_mutex_unlock(&s->mutex);
    if (err != 0) {
        io->close(io, fd);
        io->unlink(io, path);
        return err;
    }
    s->fd = fd;
    s->seg_len = WAL_SEGMENT_HEADER_SIZE;
    s->seg_allocated = allocated;
    s->seg_zeroed = WAL_SEGMENT_HEADER_SIZE;
    s->last_base = base;
    atomic_fetch_add(&w->live_bytes, WAL_SEGMENT_HEADER_SIZE);
    wal_stream_cache_range(s, 0, WAL_CACHE_AHEAD);
    return 0;
}

/* Ends the segment being written: fdatasync it (invariant 6), give back the unused
 * reservation, close it. Its seq bound is every seq written to the stream so far. */
static int wal_stream_end_segment(struct wal_stream *s)
{
    struct wal *w = s->wal;
    const struct shoal_io *io = w->io;
    if (s->fd < 0)
        return 0;
    uint64_t start = wal_now_ns();
    int rc = io->fdatasync(io, s->fd);
    s->pending_syncs++;
    s->pending_sync_ns += wal_now_ns() - start;
    if (rc < 0)
        return io_sync_error(rc);
    /* Trimming is tidiness, not durability: zeros at the end of a segment read as a clean
     * end, so a failed or forgotten truncation loses nothing. */
    if (s->seg_allocated > s->seg_len)
        io->ftruncate(io, s->fd, s->seg_len);
    io->close(io, s->fd);
    s->fd = -1;
    s->seg_allocated = 0;
    s->seg_zeroed = 0;

    pthread_mutex_lock(&s->mutex);
    struct wal_segment *last = &s->segments[s->segment_count - 1];
    last->bytes = s->seg_len;
    last->max_seq = s->max_seq_written;
    last->ended = true;
    pthread_mutex_unlock(&s->mutex);
    return 0;
}

/* Extends the segment's reservation to cover `upto` bytes, a step at a time. A failed
 * reservation is not an error: the file grows instead from there on. */
static void wal_stream_preallocate(struct wal_stream *s, uint64_t upto)
{
    struct wal *w = s->wal;
    if (s->seg_allocated == 0 || upto <= s->seg_allocated)
        return;
    uint64_t target =
        wal_min(w->segment_bytes, wal_max(upto, s->seg_allocated + WAL_PREALLOCATE_STEP));
    if (target <= s->seg_allocated ||
        w->io->fallocate(w->io, s->fd, s->seg_allocated, target - s->seg_allocated) != 0) {
        s->seg_allocated = 0;
        return;
    }
    s->seg_allocated = target;
}

/* Before a flush's sync: keeps WAL_ZERO_AHEAD of the reserved space past the segment's end
 * written with zeros, a WAL_ZERO_STEP at a time, so the sync that follows carries them and
 * later syncs find their blocks written (PREALLOCATION, "Zeroed ahead"). Zeros go only
 * past everything written, where no record is. An optimization: a failure stops it for the
 * rest of the segment and changes nothing else. */
static void wal_stream_zero_ahead(struct wal_stream *s)
{
    struct wal *w = s->wal;
    if (s->seg_zeroed == 0 || s->seg_zeroed >= s->seg_len + WAL_ZERO_AHEAD)
        return;
    uint64_t from = wal_max(s->seg_zeroed, s->seg_len);
    uint64_t to = wal_min(from + WAL_ZERO_STEP, w->segment_bytes);
    wal_stream_preallocate(s, to);
    to = wal_min(to, s->seg_allocated);
    if (to <= from || w->io->write_zeros(w->io, s->fd, from, to - from) != 0) {
        s->seg_zeroed = 0;
        return;
    }
    s->seg_zeroed = to;
}

/* Writes a run of whole records, starting segments as needed. A segment takes records
 * while they fit in segment_bytes; a record larger than that gets a segment of its own.
 * max_seq bounds every seq in data. With zero_ahead (a sync follows), the segment left
 * open is zeroed ahead of its end. */
static int wal_stream_write(struct wal_stream *s, const uint8_t *data, size_t len, uint64_t max_seq,
                            bool zero_ahead)
{
    struct wal *w = s->wal;
    size_t pos = 0;
    while (pos < len) {
        if (s->fd < 0) {
            int err = wal_stream_create_segment(s);
            if (err != 0)
                return err;
        }
        uint64_t room = s->seg_len < w->segment_bytes ? w->segment_bytes - s->seg_len : 0;
        size_t chunk = len - pos;
        if (chunk > room) {
            chunk = 0;
            while (pos + chunk < len) {
                size_t record =
                    WAL_RECORD_HEADER_SIZE + (size_t)encoding_get_u32(data + pos + chunk + 4);
                if (chunk + record > room)
                    break;
                chunk += record;
            }
            if (chunk == 0 && s->seg_len == WAL_SEGMENT_HEADER_SIZE)
                chunk = WAL_RECORD_HEADER_SIZE + (size_t)encoding_get_u32(data + pos + 4);
        }
        if (chunk > 0) {
            wal_stream_preallocate(s, s->seg_len + chunk + WAL_CACHE_AHEAD);
            int rc = io_pwrite_full(w->io, s->fd, data + pos, chunk, s->seg_len);
            if (rc < 0)
                return io_error(rc);
            wal_stream_cache_ahead(s, s->seg_len, s->seg_len + chunk);
            s->seg_len += chunk;
            pos += chunk;
            s->max_seq_written = wal_max(s->max_seq_written, max_seq);
            atomic_fetch_add(&w->live_bytes, chunk);
        }
        if (pos < len) {
            int err = wal_stream_end_segment(s);
            if (err != 0)
                return err;
        }
    }
    if (zero_ahead && s->fd >= 0)
        wal_stream_zero_ahead(s);
    return 0;
}

static void wal_waiter_enqueue(struct wal_stream *s, struct wal_waiter *w)
{
    w->prev = s->waiters_tail;
    w->next = NULL;
    if (s->waiters_tail != NULL)
        s->waiters_tail->next = w;
    else
        s->waiters_head = w;
    s->waiters_tail = w;
    w->queued = true;
    w->bit = 1u << (s->next_bit++ % 32);
}

static void wal_waiter_dequeue(struct wal_stream *s, struct wal_waiter *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        s->waiters_head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        s->waiters_tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = false;
}

/* Is the record at lsn covered for a waiter of this kind? (mutex held) */
static bool wal_stream_covers(const struct wal_stream *s, uint64_t lsn, bool durable)
{
    return durable ? s->synced >= lsn : s->written >= lsn;
}

/* Wakes the waiters of word whose bits are in mask (one system call for a whole group). */
static void wal_futex_wake(_Atomic uint32_t *word, uint32_t mask)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_BITSET_PRIVATE, INT_MAX, NULL, NULL, mask);
}

/* Sleeps while *word equals seen, until a wake whose mask shares a bit with bits, or until
 * deadline_ns (CLOCK_MONOTONIC; 0: none). It may return early for any reason (EAGAIN,
 * EINTR, a wake for a waiter sharing the bit): callers check their verdict and loop. */
static void wal_futex_wait(_Atomic uint32_t *word, uint32_t seen, uint32_t bits,
                           uint64_t deadline_ns)
{
    struct timespec ts, *timeout = NULL;
    if (deadline_ns != 0) {
        ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
        ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
        timeout = &ts; /* FUTEX_WAIT_BITSET: absolute, on CLOCK_MONOTONIC */
    }
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET_PRIVATE, seen, timeout, NULL, bits);
}

/* Called (mutex held) whenever a flush ends, and returns with the mutex held: wakes every
 * waiter the flush covered (every waiter if the log failed) and, in the LEADER scheme, the
 * oldest waiter still uncovered and due, which then leads the next flush. BATCH waiters
 * not yet due are left to their timers. The posts happen with the mutex released. */
static void wal_stream_wake_waiters(struct wal_stream *s)
{
    int err = atomic_load(&s->wal->error);
    bool choose_leader = s->wal->group_commit == WAL_GROUP_LEADER && !s->flushing;
    struct wal_waiter *leader = NULL;
    uint32_t mask = 0;
    uint64_t now = 0, released = 0;
    for (struct wal_waiter *w = s->waiters_head, *next; w != NULL; w = next) {
        next = w->next;
        if (err != 0 || wal_stream_covers(s, w->lsn, w->durable)) {
            wal_waiter_dequeue(s, w);
            w->result = err;
            atomic_store_explicit(&w->verdict, WAL_DONE, memory_order_release);
            if (err == 0 && w->durable) {
                s->stat_waiters_woken++;
                released++;
            }
            mask |= w->bit;
            continue;
        }
        if (!choose_leader || leader != NULL)
            continue;
        if (w->due_ns != 0 && now == 0)
            now = wal_now_ns();
        if (w->due_ns <= now)
            leader = w;
    }
    /* The released writers' next records go to any stream, evenly on average: expect this
     * stream's share. Expecting all of them here would hold the next leader until its
     * deadline whenever there are several streams. */
    if (released > 0)
        s->returning = released / s->wal->stream_count;
    if (leader != NULL) {
        wal_waiter_dequeue(s, leader);
        atomic_store_explicit(&leader->verdict, WAL_LEAD, memory_order_release);
        mask |= leader->bit;
    }
    if (mask == 0)
        return;
    pthread_mutex_unlock(&s->mutex);
    atomic_fetch_add_explicit(&s->wake_word, 1, memory_order_release);
    wal_futex_wake(&s->wake_word, mask);
    pthread_mutex_lock(&s->mutex);
}

enum {
    WAL_FLUSH_SYNC = 1,        /* fdatasync after writing */
    WAL_FLUSH_END_SEGMENT = 2, /* end the segment after writing (rotate) */
    WAL_FLUSH_WAITED = 4,      /* the sync is for waiters: zero ahead (not a periodic tick) */
};

/* The one flush procedure of every scheme. Called with s->mutex held and s->flushing
 * false; returns with the mutex held. Takes every record appended so far, writes it with
 * the mutex released, syncs if asked, then publishes written/synced (or the failure) and
 * wakes every waiter. floor raises the base of the next segment (rotate). */
static void wal_stream_flush(struct wal_stream *s, int how, uint64_t floor)
{
    struct wal *w = s->wal;
    s->flushing = true;
    uint8_t *data = s->buf;
    size_t data_len = s->len, data_cap = s->cap;
    s->buf = s->spare;
    s->cap = s->spare_cap;
    s->len = 0;
    s->spare = NULL;
    s->spare_cap = 0;
    s->write_behind_kicked = false;
    uint64_t target = s->appended;
    uint64_t max_seq = s->max_seq;
    bool sync = (how & WAL_FLUSH_SYNC) && target > s->synced;
    if ((how & WAL_FLUSH_SYNC) && s->request_sync <= target)
        s->request_sync_due = WAL_NO_DEADLINE;
    pthread_mutex_unlock(&s->mutex);

    int err = atomic_load(&w->error);
    if (err == 0 && data_len > 0)
        err = wal_stream_write(s, data, data_len, max_seq,
                               sync && (how & WAL_FLUSH_WAITED) && !(how & WAL_FLUSH_END_SEGMENT));
    if (err == 0 && (how & WAL_FLUSH_END_SEGMENT)) {
        err = wal_stream_end_segment(s);
        s->base_floor = wal_max(s->base_floor, floor);
    } else if (err == 0 && sync && s->fd >= 0) {
        /* With no open segment every written record sits in an ended, synced segment. */
        uint64_t start = wal_now_ns();
        int rc = w->io->fdatasync(w->io, s->fd);
        s->pending_syncs++;
        s->pending_sync_ns += wal_now_ns() - start;
        err = io_sync_error(rc);
    }

    pthread_mutex_lock(&s->mutex);
    if (data_cap > WAL_SPARE_KEEP_BYTES) {
        free(data);
        data = NULL;
        data_cap = 0;
    }
    s->spare = data;
    s->spare_cap = data_cap;
    s->stat_syncs += s->pending_syncs;
    s->stat_sync_ns += s->pending_sync_ns;
    s->pending_syncs = 0;
    s->pending_sync_ns = 0;
    if (err != 0) {
        wal_fail(w, err);
    } else {
        s->written = target;
        if (sync || (how & WAL_FLUSH_END_SEGMENT)) {
            if (target > s->synced)
                s->stat_group_commits++;
            s->synced = target;
        }
    }
    s->flushing = false;
    pthread_cond_broadcast(&s->flushed);
    if (s->async_len > 0 && s->thread_idle) {
        s->thread_idle = false;
        pthread_cond_signal(&s->work);
    }
    wal_stream_wake_waiters(s);
}

/* A leader about to flush for durable waiters first gives the writers the last flush
 * released (s->returning) a moment to append their next records, so that one sync covers
 * them too (GROUP COMMIT, "gathering"). Called with the mutex held and no flush in
 * progress; returns the same way. While it waits it holds the flusher's role (flushing),
 * so arrivals queue behind it instead of leading a flush of their own. A few writers per
 * core are waited for by yielding the core to them, more by sleeping until the last one
 * signals (GROUP COMMIT, "Gathering by yielding"). */
static void wal_stream_gather(struct wal_stream *s)
{
    uint64_t expected = s->returning;
    s->returning = 0;
    uint64_t average = s->stat_syncs ? s->stat_sync_ns / s->stat_syncs : 0;
    uint64_t wait_ns = wal_min(average, WAL_GATHER_MAX_NS);
    if (expected == 0 || wait_ns == 0)
        return;
    uint64_t deadline = wal_now_ns() + wait_ns;
    bool yield = expected <= (uint64_t)WAL_GATHER_YIELD_PER_CORE * s->wal->cores;
    s->flushing = true;
    s->gather_until = s->appended + expected;
    while (s->appended < s->gather_until && !s->stop && atomic_load(&s->wal->error) == 0 &&
           wal_now_ns() < deadline) {
        if (yield) {
            pthread_mutex_unlock(&s->mutex);
            sched_yield();
            pthread_mutex_lock(&s->mutex);
        } else {
            wal_timed_wait(&s->gathered, &s->mutex, deadline);
        }
    }
    s->gather_until = 0;
    s->flushing = false;
    s->stat_gathers++;
}

/* Waits (mutex held) until no flush is in progress. */
static void wal_stream_wait_idle(struct wal_stream *s)
{
    while (s->flushing)
        pthread_cond_wait(&s->flushed, &s->mutex);
}

/* ------------------------------------------------------------------------------------
 * Appending and waiting.
 * ---------------------------------------------------------------------------------- */

static int wal_stream_reserve(struct wal_stream *s, size_t extra)
{
    if (s->cap - s->len >= extra)
        return 0;
    size_t cap = s->cap ? s->cap : WAL_BUFFER_INITIAL;
    while (cap - s->len < extra) {
        if (cap > SIZE_MAX / 2)
            return SHOAL_ENOMEM;
        cap *= 2;
    }
    uint8_t *buf = realloc(s->buf, cap);
    if (buf == NULL)
        return SHOAL_ENOMEM;
    s->buf = buf;
    s->cap = cap;
    return 0;
}

int wal_append(struct wal *w, unsigned stream, uint8_t type, uint64_t seq, const void *payload,
               size_t len, uint64_t *lsn)
{
    if (w == NULL || stream >= w->stream_count || type == 0 || (len > 0 && payload == NULL))
        return SHOAL_EINVAL;
    if (len > WAL_MAX_PAYLOAD)
        return SHOAL_ETOOBIG;
    int err = atomic_load_explicit(&w->error, memory_order_relaxed);
    if (err != 0)
        return err;

    /* The header and the checksum are computed before taking the lock: the critical
     * section is two memcpy calls. */
    uint8_t header[WAL_RECORD_HEADER_SIZE];
    encoding_put_u32(header + 4, (uint32_t)len);
    header[8] = (uint8_t)WAL_RECORD_VERSION;
    header[9] = type;
    encoding_put_u16(header + 10, 0);
    encoding_put_u64(header + 12, seq);
    uint32_t crc = crc32c_extend(crc32c(header + 4, WAL_RECORD_HEADER_SIZE - 4), payload, len);
    encoding_put_u32(header, crc32c_mask(crc));

    struct wal_stream *s = &w->streams[stream];
    size_t total = WAL_RECORD_HEADER_SIZE + len;
    pthread_mutex_lock(&s->mutex);
    err = atomic_load_explicit(&w->error, memory_order_relaxed);
    if (err == 0 && s->stop)
        err = SHOAL_ECLOSED;
    if (err == 0)
        err = wal_stream_reserve(s, total);
    if (err == 0) {
        memcpy(s->buf + s->len, header, WAL_RECORD_HEADER_SIZE);
        if (len > 0)
            memcpy(s->buf + s->len + WAL_RECORD_HEADER_SIZE, payload, len);
        s->len += total;
        s->appended++;
        if (lsn != NULL)
            *lsn = s->appended;
        if (seq > s->max_seq)
            s->max_seq = seq;
        s->stat_appends++;
        s->stat_bytes += total;
        if (s->gather_until != 0 && s->appended >= s->gather_until)
            pthread_cond_signal(&s->gathered);
        if (s->len >= WAL_WRITE_BEHIND_BYTES && !s->write_behind_kicked && s->thread_idle) {
            s->write_behind_kicked = true;
            s->thread_idle = false;
            pthread_cond_signal(&s->work);
        }
    }
    pthread_mutex_unlock(&s->mutex);
    return err;
}

/* Sleeps on the stream's futex word with the mutex released until the waiter has a
 * verdict, or until its BATCH deadline; returns with the mutex held unless the verdict is
 * WAL_DONE (then *done is set and the mutex is not taken). */
static void wal_waiter_sleep(struct wal_stream *s, struct wal_waiter *self, bool *done)
{
    atomic_store_explicit(&self->verdict, WAL_WAITING, memory_order_relaxed);
    uint64_t deadline = self->due_ns != 0 && wal_now_ns() < self->due_ns ? self->due_ns : 0;
    pthread_mutex_unlock(&s->mutex);
    for (;;) {
        /* The word first, then the verdict: see struct wal_waiter. */
        uint32_t seen = atomic_load_explicit(&s->wake_word, memory_order_acquire);
        int verdict = atomic_load_explicit(&self->verdict, memory_order_acquire);
        if (verdict == WAL_DONE) {
            *done = true;
            return;
        }
        if (verdict == WAL_LEAD)
            break;
        if (deadline != 0 && wal_now_ns() >= deadline) {
            pthread_mutex_lock(&s->mutex);
            if (self->queued) {
                /* Nobody woke it: it is due now, and leaves the queue to act for itself. */
                wal_waiter_dequeue(s, self);
                return;
            }
            /* A waker dequeued it meanwhile, and set its verdict under the mutex. */
            if (atomic_load_explicit(&self->verdict, memory_order_acquire) == WAL_DONE) {
                pthread_mutex_unlock(&s->mutex);
                *done = true;
            }
            return;
        }
        wal_futex_wait(&s->wake_word, seen, self->bit, deadline);
    }
    pthread_mutex_lock(&s->mutex);
}

static int wal_wait_with(struct wal *w, unsigned stream, uint64_t lsn, int sync, bool gather)
{
    if (w == NULL || stream >= w->stream_count)
        return SHOAL_EINVAL;
    int policy = wal_policy(w, sync);
    if (policy < 0)
        return SHOAL_EINVAL;
    struct wal_stream *s = &w->streams[stream];
    struct wal_waiter self = {
        .lsn = lsn,
        .durable = wal_policy_durable(policy),
        .due_ns = policy == SHOAL_SYNC_BATCH ? wal_now_ns() + w->window_ns : 0,
    };
    int rc = 0;
    bool done = false;

    pthread_mutex_lock(&s->mutex);
    if (lsn > s->appended)
        rc = SHOAL_EINVAL;
    while (rc == 0) {
        rc = atomic_load(&w->error);
        if (rc != 0)
            break;
        if (wal_stream_covers(s, lsn, self.durable)) {
            if (self.durable)
                s->stat_waiters_woken++;
            break;
        }
        if (w->group_commit == WAL_GROUP_FLUSHER) {
            if (self.durable) {
                if (lsn > s->request_sync)
                    s->request_sync = lsn;
                if (self.due_ns < s->request_sync_due)
                    s->request_sync_due = self.due_ns;
            } else if (lsn > s->request_write) {
                s->request_write = lsn;
            }
            if (s->thread_idle) {
                s->thread_idle = false;
                pthread_cond_signal(&s->work);
            }
        } else if (!s->flushing && (self.due_ns == 0 || wal_now_ns() >= self.due_ns)) {
            /* Lead: write and sync everything appended so far, for every waiter. */
            if (self.durable && gather)
                wal_stream_gather(s);
            wal_stream_flush(s, self.durable ? WAL_FLUSH_SYNC | WAL_FLUSH_WAITED : 0, 0);
            continue;
        }
        /* Wait for a flush to cover the record (or, for BATCH, for the window to pass, so
         * that other writers can join the sync). */
        wal_waiter_enqueue(s, &self);
        wal_waiter_sleep(s, &self, &done);
        if (done) {
            rc = self.result;
            break;
        }
    }
    if (!done)
        pthread_mutex_unlock(&s->mutex);
    return rc;
}

int wal_wait(struct wal *w, unsigned stream, uint64_t lsn, int sync)
{
    return wal_wait_with(w, stream, lsn, sync, true);
}

int wal_wait_now(struct wal *w, unsigned stream, uint64_t lsn, int sync)
{
    return wal_wait_with(w, stream, lsn, sync, false);
}

uint64_t wal_appended(struct wal *w, unsigned stream)
{
    if (w == NULL || stream >= w->stream_count)
        return 0;
    struct wal_stream *s = &w->streams[stream];
    pthread_mutex_lock(&s->mutex);
    uint64_t appended = s->appended;
    pthread_mutex_unlock(&s->mutex);
    return appended;
}

int wal_wait_async(struct wal *w, unsigned stream, uint64_t lsn, int sync,
                   void (*cb)(void *ctx, int err), void *ctx)
{
    if (w == NULL || stream >= w->stream_count || cb == NULL)
        return SHOAL_EINVAL;
    int policy = wal_policy(w, sync);
    if (policy < 0)
        return SHOAL_EINVAL;
    struct wal_stream *s = &w->streams[stream];
    int rc = 0;
    pthread_mutex_lock(&s->mutex);
    if (lsn > s->appended)
        rc = SHOAL_EINVAL;
    else if ((rc = atomic_load(&w->error)) != 0)
        ;
    else if (s->stop)
        rc = SHOAL_ECLOSED;
    else if (s->async_len == s->async_cap) {
        size_t cap = s->async_cap ? s->async_cap * 2 : 16;
        struct wal_async *async = realloc(s->async, cap * sizeof *async);
        if (async == NULL) {
            rc = SHOAL_ENOMEM;
        } else {
            s->async = async;
            s->async_cap = cap;
        }
    }
    if (rc == 0) {
        s->async[s->async_len++] = (struct wal_async){
            .lsn = lsn,
            .due_ns = policy == SHOAL_SYNC_BATCH ? wal_now_ns() + w->window_ns : 0,
            .durable = wal_policy_durable(policy),
            .cb = cb,
            .ctx = ctx,
        };
        if (s->thread_idle) {
            s->thread_idle = false;
            pthread_cond_signal(&s->work);
        }
    }
    pthread_mutex_unlock(&s->mutex);
    return rc;
}

/* Runs the callbacks of finished async waits, with the mutex released around them.
 * closing: the final call, which finishes every entry. (mutex held) */
static void wal_stream_complete_async(struct wal_stream *s, bool closing)
{
    enum { BATCH_SIZE = 32 };
    for (;;) {
        struct wal_async done[BATCH_SIZE];
        int results[BATCH_SIZE];
        size_t n = 0, kept = 0;
        int err = atomic_load(&s->wal->error);
        for (size_t i = 0; i < s->async_len; i++) {
            struct wal_async *a = &s->async[i];
            int result = 1;
            if (n < BATCH_SIZE) {
                if (err != 0)
                    result = err;
                else if (wal_stream_covers(s, a->lsn, a->durable))
                    result = 0;
                else if (closing)
                    result = SHOAL_ECLOSED;
            }
            if (result == 1) {
                s->async[kept++] = *a;
                continue;
            }
            if (result == 0 && a->durable)
                s->stat_waiters_woken++;
            done[n] = *a;
            results[n] = result;
            n++;
        }
        s->async_len = kept;
        if (n == 0)
            return;
        pthread_mutex_unlock(&s->mutex);
        for (size_t i = 0; i < n; i++)
            done[i].cb(done[i].ctx, results[i]);
        pthread_mutex_lock(&s->mutex);
        if (n < BATCH_SIZE)
            return;
    }
}

static void *wal_stream_thread(void *arg)
{
    struct wal_stream *s = arg;
    struct wal *w = s->wal;
    char name[16]; /* named for top -H, perf and gdb */
    snprintf(name, sizeof(name), "shoal-log-%u", s->index);
    pthread_setname_np(pthread_self(), name);
    uint64_t next_tick = wal_now_ns() + w->period_ns;

    pthread_mutex_lock(&s->mutex);
    for (;;) {
        wal_stream_complete_async(s, false);
        if (s->stop)
            break;
        int err = atomic_load(&w->error);
        uint64_t now = wal_now_ns();
        uint64_t wake = next_tick;
        bool need_sync = false, need_write = false, waited = false;
        if (err != 0) {
            /* Waiters learn of a failure of another stream here. */
            s->request_sync = s->synced;
            s->request_write = s->written;
            wal_stream_wake_waiters(s);
        } else {
            if (s->request_sync > s->synced) {
                if (s->request_sync_due <= now)
                    need_sync = waited = true;
                else if (s->request_sync_due < wake)
                    wake = s->request_sync_due;
            }
            if (s->request_write > s->written)
                need_write = true;
            for (size_t i = 0; i < s->async_len; i++) {
                const struct wal_async *a = &s->async[i];
                if (wal_stream_covers(s, a->lsn, a->durable))
                    continue;
                if (!a->durable)
                    need_write = true;
                else if (a->due_ns <= now)
                    need_sync = waited = true;
                else if (a->due_ns < wake)
                    wake = a->due_ns;
            }
            if (now >= next_tick) {
                /* The tick stays due until its flush has run: a flush by someone else in
                 * the meantime may have been a write without a sync. */
                if (w->sync == SHOAL_SYNC_PERIODIC && s->appended > s->synced)
                    need_sync = true;
                else if (s->appended > s->written)
                    need_write = true;
                else
                    next_tick = now + w->period_ns;
            }
            if (s->len >= WAL_WRITE_BEHIND_BYTES)
                need_write = true;
        }
        if (need_sync || need_write) {
            if (s->flushing) {
                pthread_cond_wait(&s->flushed, &s->mutex);
            } else {
                int how = need_sync ? WAL_FLUSH_SYNC : 0;
                wal_stream_flush(s, how | (waited ? WAL_FLUSH_WAITED : 0), 0);
                if (now >= next_tick)
                    next_tick = now + w->period_ns;
            }
            continue;
        }
        s->thread_idle = true;
        wal_timed_wait(&s->work, &s->mutex, wake);
        s->thread_idle = false;
    }

    /* Closing: write and sync what is left, then finish every async wait. */
    wal_stream_wait_idle(s);
    if (atomic_load(&w->error) == 0 && (s->len > 0 || s->appended > s->synced))
        wal_stream_flush(s, WAL_FLUSH_SYNC, 0);
    wal_stream_complete_async(s, true);
    pthread_mutex_unlock(&s->mutex);
    return NULL;
}

int wal_sync_all(struct wal *w)
{
    if (w == NULL)
        return SHOAL_EINVAL;
    for (unsigned i = 0; i < w->stream_count; i++) {
        struct wal_stream *s = &w->streams[i];
        pthread_mutex_lock(&s->mutex);
        /* Only what was appended before the call: a stream that never stops receiving
         * records must not keep this loop going. */
        uint64_t target = s->appended;
        for (;;) {
            if (atomic_load(&w->error) != 0 || s->synced >= target)
                break;
            if (s->flushing)
                pthread_cond_wait(&s->flushed, &s->mutex);
            else
                wal_stream_flush(s, WAL_FLUSH_SYNC, 0);
        }
        pthread_mutex_unlock(&s->mutex);
    }
    return atomic_load(&w->error);
}

int wal_error(const struct wal *w)
{
    return w == NULL ? SHOAL_EINVAL : atomic_load(&((struct wal *)(uintptr_t)w)->error);
}

int wal_rotate(struct wal *w, uint64_t seq)
{
    if (w == NULL)
        return SHOAL_EINVAL;
    for (unsigned i = 0; i < w->stream_count; i++) {
        struct wal_stream *s = &w->streams[i];
        pthread_mutex_lock(&s->mutex);
        wal_stream_wait_idle(s);
        if (atomic_load(&w->error) == 0)
            wal_stream_flush(s, WAL_FLUSH_END_SEGMENT, seq);
        pthread_mutex_unlock(&s->mutex);
    }
    return atomic_load(&w->error);
}

/* Deletes the leading ended segments whose seq bound is <= seq from one list. The list is
 * edited under lock (when given); the files are removed afterwards. */
static int wal_delete_segments(struct wal *w, const char *stream_dir,
                               struct wal_segment *const *list, size_t *count,
                               pthread_mutex_t *lock, uint64_t seq)
{
    if (lock != NULL)
        pthread_mutex_lock(lock);
    /* Read the array under the lock: the flusher may grow (move) it meanwhile. */
    struct wal_segment *segments = *list;
    size_t n = 0;
    /* Bounds never decrease along the list, so the deletable segments are a prefix. */
    while (n < *count && segments[n].ended && segments[n].max_seq <= seq)
        n++;
    struct wal_segment *gone = NULL;
    if (n > 0) {
        gone = malloc(n * sizeof *gone);
        if (gone == NULL) {
            if (lock != NULL)
                pthread_mutex_unlock(lock);
            return SHOAL_ENOMEM;
        }
        memcpy(gone, segments, n * sizeof *gone);
        memmove(segments, segments + n, (*count - n) * sizeof *segments);
        *count -= n;
    }
    if (lock != NULL)
        pthread_mutex_unlock(lock);

    int err = 0;
    for (size_t i = 0; i < n; i++) {
        char path[WAL_PATH_MAX];
        if (wal_segment_file(path, sizeof path, stream_dir, gone[i].base) != 0)
            continue;
        int rc = w->io->unlink(w->io, path);
        if (rc < 0 && rc != -ENOENT && err == 0)
            err = io_error(rc);
        atomic_fetch_sub(&w->live_bytes, gone[i].bytes);
    }
    if (n > 0) {
        int rc = w->io->fsync_dir(w->io, stream_dir);
        if (rc < 0 && err == 0)
            err = io_error(rc);
    }
    free(gone);
    return err;
}

int wal_delete_before(struct wal *w, uint64_t seq)
{
    if (w == NULL)
        return SHOAL_EINVAL;
    int err = 0;
    for (unsigned i = 0; i < w->stream_count; i++) {
        struct wal_stream *s = &w->streams[i];
        int rc = wal_delete_segments(w, s->dir, &s->segments, &s->segment_count, &s->mutex, seq);
        if (rc != 0 && err == 0)
            err = rc;
    }
    pthread_mutex_lock(&w->retired_mutex);
    for (size_t i = 0; i < w->retired_count; i++) {
        struct wal_retired *r = &w->retired[i];
        if (r->segment_count == 0)
            continue;
        int rc = wal_delete_segments(w, r->dir, &r->segments, &r->segment_count, NULL, seq);
        if (rc != 0 && err == 0)
            err = rc;
        if (r->segment_count == 0 && w->io->rmdir(w->io, r->dir) == 0)
            w->io->fsync_dir(w->io, w->log_dir);
    }
    pthread_mutex_unlock(&w->retired_mutex);
    return err;
}

uint64_t wal_bytes(const struct wal *w)
{
    return w == NULL ? 0 : atomic_load(&((struct wal *)(uintptr_t)w)->live_bytes);
}

void wal_stats(const struct wal *w, struct wal_stats *out)
{
    memset(out, 0, sizeof *out);
    if (w == NULL)
        return;
    for (unsigned i = 0; i < w->stream_count; i++) {
        struct wal_stream *s = &w->streams[i];
        pthread_mutex_lock(&s->mutex);
        out->appends += s->stat_appends;
        out->bytes += s->stat_bytes;
        out->syncs += s->stat_syncs;
        out->sync_ns_total += s->stat_sync_ns;
        out->group_commits += s->stat_group_commits;
        out->waiters_woken += s->stat_waiters_woken;
        out->gathers += s->stat_gathers;
        pthread_mutex_unlock(&s->mutex);
    }
}

/* ------------------------------------------------------------------------------------
 * Opening and closing.
 * ---------------------------------------------------------------------------------- */

/* Takes stock of a stream directory's segments: their sizes, and seq bounds from the
 * bases that follow them and, for the last one, from next_seq_hint (all ended). */
static int wal_load_segments(struct wal *w, const char *stream_dir, uint64_t hint,
                             struct wal_segment **out, size_t *count, size_t *cap)
{
    struct wal_listing l;
    int err = wal_list_segments(w->io, stream_dir, &l);
    if (err != 0)
        return err;
    *out = NULL;
    *count = 0;
    *cap = 0;
    if (l.count == 0) {
        free(l.bases);
        return 0;
    }
    struct wal_segment *segments = calloc(l.count, sizeof *segments);
    if (segments == NULL) {
        free(l.bases);
        return SHOAL_ENOMEM;
    }
    for (size_t i = 0; i < l.count; i++) {
        char path[WAL_PATH_MAX];
        uint64_t size = 0;
        if (wal_segment_file(path, sizeof path, stream_dir, l.bases[i]) == 0) {
            int fd = w->io->open(w->io, path, O_RDONLY, 0);
            if (fd >= 0) {
                w->io->file_size(w->io, fd, &size);
                w->io->close(w->io, fd);
            }
        }
        segments[i].base = l.bases[i];
        segments[i].bytes = size;
        segments[i].max_seq = i + 1 < l.count ? l.bases[i + 1] - 1 : (hint > 0 ? hint - 1 : 0);
        segments[i].ended = true;
        atomic_fetch_add(&w->live_bytes, size);
    }
    free(l.bases);
    *out = segments;
    *count = *cap = l.count;
    return 0;
}

/* The largest seq in any stream directory, by a read-only scan (used only when the caller
 * gave no next_seq_hint and segments exist). */
static int wal_scan_last_seq(struct wal *w, unsigned streams_on_disk, uint64_t *last_seq)
{
    *last_seq = 0;
    for (unsigned i = 0; i < streams_on_disk; i++) {
        struct wal_replay_report report;
        int rc = wal_replay(w->dir, i, UINT64_MAX, w->io, true, true, NULL, NULL, &report);
        if (rc != 0)
            return rc;
        *last_seq = wal_max(*last_seq, report.last_seq);
    }
    return 0;
}

static void wal_free(struct wal *w)
{
    if (w->streams != NULL) {
        for (unsigned i = 0; i < w->streams_initialized; i++) {
            struct wal_stream *s = &w->streams[i];
            if (s->fd >= 0)
                w->io->close(w->io, s->fd);
            free(s->buf);
            free(s->spare);
            free(s->async);
            free(s->segments);
            pthread_mutex_destroy(&s->mutex);
            pthread_cond_destroy(&s->flushed);
            pthread_cond_destroy(&s->work);
            pthread_cond_destroy(&s->gathered);
        }
        free(w->streams);
    }
    for (size_t i = 0; i < w->retired_count; i++)
        free(w->retired[i].segments);
    free(w->retired);
    pthread_mutex_destroy(&w->retired_mutex);
    free(w);
}

/* Stops the background threads that were started (used by close and by a failed open). */
static void wal_stop_threads(struct wal *w)
{
    for (unsigned i = 0; i < w->streams_initialized; i++) {
        struct wal_stream *s = &w->streams[i];
        if (!s->thread_started)
            continue;
        pthread_mutex_lock(&s->mutex);
        s->stop = true;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mutex);
    }
    for (unsigned i = 0; i < w->streams_initialized; i++) {
        struct wal_stream *s = &w->streams[i];
        if (s->thread_started) {
            pthread_join(s->thread, NULL);
            s->thread_started = false;
        }
    }
}

int wal_open(const struct wal_options *o, struct wal **out)
{
    if (out == NULL)
        return SHOAL_EINVAL;
    *out = NULL;
    if (o == NULL || o->dir == NULL || o->streams == 0 || o->streams > WAL_MAX_STREAMS)
        return SHOAL_EINVAL;
    int sync = o->sync == SHOAL_SYNC_DEFAULT ? SHOAL_SYNC_PERIODIC : o->sync;
    if (sync < SHOAL_SYNC_NONE || sync > SHOAL_SYNC_ALWAYS)
        return SHOAL_EINVAL;
    if (o->group_commit != WAL_GROUP_LEADER && o->group_commit != WAL_GROUP_FLUSHER)
        return SHOAL_EINVAL;

    struct wal *w = calloc(1, sizeof *w);
    if (w == NULL)
        return SHOAL_ENOMEM;
    pthread_mutex_init(&w->retired_mutex, NULL);
    w->io = o->io != NULL ? o->io : io_posix();
    w->stream_count = o->streams;
    w->segment_bytes = o->segment_bytes ? o->segment_bytes : WAL_DEFAULT_SEGMENT_BYTES;
    if (w->segment_bytes < WAL_SEGMENT_HEADER_SIZE + WAL_RECORD_HEADER_SIZE)
        w->segment_bytes = WAL_SEGMENT_HEADER_SIZE + WAL_RECORD_HEADER_SIZE;
    w->sync = sync;
    w->period_ns =
        (uint64_t)(o->sync_period_ms ? o->sync_period_ms : WAL_DEFAULT_PERIOD_MS) * 1000000ull;
    w->window_ns =
        (uint64_t)(o->sync_window_us ? o->sync_window_us : WAL_DEFAULT_WINDOW_US) * 1000ull;
    w->group_commit = o->group_commit;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    w->cores = cores > 0 ? (unsigned)cores : 1;
    w->preallocate = !o->no_preallocate;
    atomic_init(&w->error, 0);
    atomic_init(&w->live_bytes, 0);

    int err = 0;
    if (snprintf(w->dir, sizeof w->dir, "%s", o->dir) >= (int)sizeof w->dir ||
        io_path_join(w->log_dir, sizeof w->log_dir, o->dir, "log") != 0)
        err = SHOAL_EINVAL;
    if (err == 0)
        err = io_ensure_dir(w->io, w->log_dir);

    unsigned on_disk = 0;
    if (err == 0)
        err = wal_list_streams(w->dir, w->io, &on_disk);
    uint64_t hint = o->next_seq_hint;
    if (err == 0 && hint == 0 && on_disk > 0) {
        uint64_t last_seq = 0;
        err = wal_scan_last_seq(w, on_disk, &last_seq);
        hint = last_seq + 1;
    }

    if (err == 0) {
        w->streams = calloc(w->stream_count, sizeof *w->streams);
        if (w->streams == NULL)
            err = SHOAL_ENOMEM;
    }
    for (unsigned i = 0; err == 0 && i < w->stream_count; i++) {
        struct wal_stream *s = &w->streams[i];
        s->wal = w;
        s->index = i;
        s->fd = -1;
        s->request_sync_due = WAL_NO_DEADLINE;
        pthread_mutex_init(&s->mutex, NULL);
        if (wal_cond_init(&s->flushed) != 0) {
            pthread_mutex_destroy(&s->mutex);
            err = SHOAL_ENOMEM;
            break;
        }
        if (wal_cond_init(&s->work) != 0) {
            pthread_cond_destroy(&s->flushed);
            pthread_mutex_destroy(&s->mutex);
            err = SHOAL_ENOMEM;
            break;
        }
        if (wal_cond_init(&s->gathered) != 0) {
            pthread_cond_destroy(&s->work);
            pthread_cond_destroy(&s->flushed);
            pthread_mutex_destroy(&s->mutex);
            err = SHOAL_ENOMEM;
            break;
        }
        w->streams_initialized++;
        err = wal_stream_dir(s->dir, sizeof s->dir, w->dir, i);
        if (err == 0)
            err = io_ensure_dir(w->io, s->dir);
        if (err == 0)
            err = wal_load_segments(w, s->dir, hint, &s->segments, &s->segment_count,
                                    &s->segment_cap);
        if (err == 0 && s->segment_count > 0)
            s->last_base = s->segments[s->segment_count - 1].base;
        s->base_floor = hint;
        s->max_seq_written = hint > 0 ? hint - 1 : 0;
    }
    for (unsigned i = w->stream_count; err == 0 && i < on_disk; i++) {
        struct wal_retired r = {0};
        size_t cap;
        err = wal_stream_dir(r.dir, sizeof r.dir, w->dir, i);
        if (err == 0)
            err = wal_load_segments(w, r.dir, hint, &r.segments, &r.segment_count, &cap);
        if (err != 0)
            break;
        if (r.segment_count == 0) {
            w->io->rmdir(w->io, r.dir); /* an empty leftover directory; absent is fine too */
            continue;
        }
        struct wal_retired *retired = realloc(w->retired, (w->retired_count + 1) * sizeof *retired);
        if (retired == NULL) {
            free(r.segments);
            err = SHOAL_ENOMEM;
            break;
        }
        w->retired = retired;
        w->retired[w->retired_count++] = r;
    }
    for (unsigned i = 0; err == 0 && i < w->stream_count; i++) {
        struct wal_stream *s = &w->streams[i];
        if (pthread_create(&s->thread, NULL, wal_stream_thread, s) != 0)
            err = SHOAL_ENOMEM;
        else
            s->thread_started = true;
    }
    if (err != 0) {
        if (w->streams != NULL)
            wal_stop_threads(w);
        wal_free(w);
        return err;
    }
    *out = w;
    return 0;
}

int wal_close(struct wal *w)
{
    if (w == NULL)
        return 0;
    wal_stop_threads(w);
    for (unsigned i = 0; i < w->stream_count; i++) {
        struct wal_stream *s = &w->streams[i];
        if (s->fd < 0)
            continue;
        if (atomic_load(&w->error) == 0 && s->seg_allocated > s->seg_len) {
            /* Give back the unused reservation; the fsync makes the new size durable. */
            if (w->io->ftruncate(w->io, s->fd, s->seg_len) == 0) {
                int rc = w->io->fsync(w->io, s->fd);
                if (rc < 0)
                    wal_fail(w, io_sync_error(rc));
            }
        }
        w->io->close(w->io, s->fd);
        s->fd = -1;
    }
    int err = atomic_load(&w->error);
    wal_free(w);
    return err;
}

/* ------------------------------------------------------------------------------------
 * Recovery.
 * ---------------------------------------------------------------------------------- */

struct wal_reader {
    const struct shoal_io *io;
    int fd;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t start; /* buf holds the file's bytes [start, start + len) */
    size_t len;
};

/* Makes bytes [off, off + n) of the file available in *out. Returns 1, 0 when they
 * extend past the end of the file, or a negative SHOAL_E* code. */
static int wal_reader_get(struct wal_reader *r, uint64_t off, size_t n, const uint8_t **out)
{
    if (off > r->size || n > r->size - off)
        return 0;
    if (off >= r->start && off - r->start + n <= r->len) {
        *out = r->buf + (off - r->start);
        return 1;
    }
    size_t want = n > WAL_READ_CHUNK ? n : WAL_READ_CHUNK;
    if (want > r->size - off)
        want = (size_t)(r->size - off);
    if (want > r->cap) {
        uint8_t *buf = realloc(r->buf, want);
        if (buf == NULL)
            return SHOAL_ENOMEM;
        r->buf = buf;
        r->cap = want;
    }
    ssize_t got = io_pread_full(r->io, r->fd, r->buf, want, off);
    if (got < 0) {
        r->len = 0;
        return io_error((int)got);
    }
    r->start = off;
    r->len = (size_t)got;
    if ((size_t)got < n)
        return 0;
    *out = r->buf;
    return 1;
}

struct wal_record {
    uint8_t type;
    uint64_t seq;
    const uint8_t *payload;
    uint32_t len;
};

/* Is there a valid record at off? Returns 1 (and *rec), 0, or a negative error. The cheap
 * header tests come first, so scanning garbage or zeros byte by byte is fast. */
static int wal_reader_record(struct wal_reader *r, uint64_t off, struct wal_record *rec)
{
    const uint8_t *p = NULL; /* set by wal_reader_get when it returns 1 */
    int rc = wal_reader_get(r, off, WAL_RECORD_HEADER_SIZE, &p);
    if (rc <= 0)
        return rc;
    if (p[8] != WAL_RECORD_VERSION || p[9] == 0 || p[10] != 0 || p[11] != 0)
        return 0;
    uint32_t len = encoding_get_u32(p + 4);
    uint32_t stored = encoding_get_u32(p);
    if ((uint64_t)len > r->size - off - WAL_RECORD_HEADER_SIZE)
        return 0;
    rc = wal_reader_get(r, off, WAL_RECORD_HEADER_SIZE + (size_t)len, &p);
    if (rc <= 0)
        return rc;
    if (crc32c(p + 4, WAL_RECORD_HEADER_SIZE - 4 + (size_t)len) != crc32c_unmask(stored))
        return 0;
    rec->type = p[9];
    rec->seq = encoding_get_u64(p + 12);
    rec->payload = p + WAL_RECORD_HEADER_SIZE;
    rec->len = len;
    return 1;
}

/* Sets *end to one past the last non-zero byte at or after off (off if there is none). */
static int wal_reader_data_end(struct wal_reader *r, uint64_t off, uint64_t *end)
{
    *end = off;
    uint64_t pos = off;
    while (pos < r->size) {
        size_t n = r->size - pos < WAL_READ_CHUNK ? (size_t)(r->size - pos) : WAL_READ_CHUNK;
        const uint8_t *p = NULL; /* set by wal_reader_get when it returns 1 */
        int rc = wal_reader_get(r, pos, n, &p);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return SHOAL_EIO; /* the file shrank under us */
        size_t i = n;
        while (i > 0 && p[i - 1] == 0)
            i--;
        if (i > 0)
            *end = pos + i;
        pos += n;
    }
    return 0;
}

/* Does a valid record start anywhere in (off, end)? Returns 1, 0 or a negative error. */
static int wal_reader_valid_after(struct wal_reader *r, uint64_t off, uint64_t end)
{
    struct wal_record rec;
    for (uint64_t q = off + 1; q + WAL_RECORD_HEADER_SIZE <= end; q++) {
        int rc = wal_reader_record(r, q, &rec);
        if (rc != 0)
            return rc;
    }
    return 0;
}

enum wal_segment_outcome {
    WAL_SEGMENT_CLEAN,   /* ends cleanly at *stop (end of file or zeros) */
    WAL_SEGMENT_TORN,    /* last segment, half-written from *stop on */
    WAL_SEGMENT_DAMAGED, /* bad bytes at *stop, valid data may follow */
    WAL_SEGMENT_GAP,     /* its header names a predecessor other than the one on disk: the
                            previous segment was cut short or a segment is missing */
};

/* What replay learned about the segment before the current one. */
struct wal_previous {
    bool present;
    uint64_t base;
    uint64_t stop; /* where its valid records ended */
    uint64_t size; /* its file size (zeros may lie between stop and size) */
};

typedef int (*wal_replay_fn)(void *ctx, uint8_t type, uint64_t seq, const void *payload,
                             size_t len);

/* What one replay of a stream was asked to do. */
struct wal_replay_args {
    unsigned stream;
    uint64_t after_seq;      /* records up to this seq are checked, not delivered */
    bool checkpoint_known;   /* the database is restored from the checkpoint below */
    uint64_t checkpoint_seq; /* ... whose records need no log (invariant 8) */
    wal_replay_fn fn;
    void *ctx;
};

/* A segment header as read from disk, of either format version. */
struct wal_segment_header {
    uint32_t version;
    uint32_t size; /* where the records start */
    uint32_t stream;
    uint32_t flags;
    uint32_t reserved; /* version 2 */
    uint64_t base;
    uint64_t prev_base, prev_bytes;
    uint64_t prev_max_seq; /* version 2: the predecessor's seq bound */
};

/* Reads the header at the start of the segment. Returns 1 (*h filled), 0 when there is no
 * valid header (short, zeros, torn or damaged: the caller classifies offset 0),
 * SHOAL_ENOTSUP for a version this reader does not know, or a negative error. The prologue
 * (bytes 0..47, the whole version 1 header) carries its own CRC, so the version is trusted
 * only when it is intact: a flipped bit in it is damage, not "a newer format". */
static int wal_read_segment_header(struct wal_reader *r, struct wal_segment_header *h)
{
    const uint8_t *p;
    int rc = wal_reader_get(r, 0, WAL_SEGMENT_HEADER_SIZE_V1, &p);
    if (rc <= 0)
        return rc;
    if (memcmp(p, wal_segment_magic, 8) != 0 ||
        crc32c(p, 44) != crc32c_unmask(encoding_get_u32(p + 44)))
        return 0;
    uint32_t version = encoding_get_u32(p + 8);
    if (version != 1 && version != WAL_FORMAT_VERSION)
        return SHOAL_ENOTSUP;
    memset(h, 0, sizeof *h);
    h->version = version;
    h->size = WAL_SEGMENT_HEADER_SIZE_V1;
    if (version == WAL_FORMAT_VERSION) {
        /* The second get may move the window: read every field from its pointer. */
        rc = wal_reader_get(r, 0, WAL_SEGMENT_HEADER_SIZE, &p);
        if (rc <= 0)
            return rc;
        if (crc32c(p, 60) != crc32c_unmask(encoding_get_u32(p + 60)))
            return 0;
        h->size = WAL_SEGMENT_HEADER_SIZE;
        h->prev_max_seq = encoding_get_u64(p + 48);
        h->reserved = encoding_get_u32(p + 56);
    }
    h->stream = encoding_get_u32(p + 12);
    h->base = encoding_get_u64(p + 16);
    h->prev_base = encoding_get_u64(p + 24);
    h->prev_bytes = encoding_get_u64(p + 32);
    h->flags = encoding_get_u32(p + 40);
    return 1;
}

/* Checks the predecessor a well-formed header names against the segment before it on disk
 * (prev). Returns 1 when they agree or the difference is legal, 0 for a gap (a predecessor
 * cut short, missing, or a segment on disk that the header does not know), with
 * report->missing_base set when the named predecessor is missing. */
static int wal_check_predecessor(const struct wal_segment_header *h,
                                 const struct wal_previous *prev,
                                 const struct wal_replay_args *args,
                                 struct wal_replay_report *report)
{
    if (prev->present && h->prev_base == prev->base) {
        /* It must end where this header says: at its last valid record, or at its file
         * size when it kept the zeros of its reservation (a segment written until a
         * crash). */
        return h->prev_bytes == prev->stop || h->prev_bytes == prev->size;
    }
    if (h->prev_base == 0)
        return !prev->present; /* names none, yet one is there: misplaced */
    if (prev->present && h->prev_base < prev->base)
        return 0; /* a segment on disk between the named one and this one */
    /* The named predecessor is not on disk. Bases sort the listing, and prev (if any) is
     * the greatest base below this one, so the named one would sit between them. */
    if (h->version >= 2 && args->checkpoint_known) {
        /* Invariant 8: legal exactly when a checkpoint in force covers all it held. */
        if (h->prev_max_seq <= args->checkpoint_seq)
            return 1;
        report->missing_base = h->prev_base;
        return 0;
    }
    /* Without the bound (version 1, or a replay that does not know its checkpoint): a
     * missing first segment is taken for one a checkpoint deleted (the gap docs/FORMAT.md
     * documents for version 1); a missing segment in the middle is a gap. */
    if (!prev->present)
        return 1;
    report->missing_base = h->prev_base;
    return 0;
}

/* Classifies a bad spot at off: clean end, torn tail or damage (see the essay). */
static int wal_classify(struct wal_reader *r, uint64_t off, bool last, uint64_t *data_end)
{
    int rc = wal_reader_data_end(r, off, data_end);
    if (rc < 0)
        return rc;
    if (*data_end == off)
        return WAL_SEGMENT_CLEAN;
    if (!last)
        return WAL_SEGMENT_DAMAGED;
    rc = wal_reader_valid_after(r, off, *data_end);
    if (rc < 0)
        return rc;
    return rc == 1 ? WAL_SEGMENT_DAMAGED : WAL_SEGMENT_TORN;
}

/* Reads one segment, delivering its records. Returns an outcome (>= 0) with *stop the
 * offset where reading ended and *data_end the end of its non-zero bytes, or a negative
 * error, or SHOAL_ENOTSUP, or fn's non-zero value (as *fn_result). */
static int wal_replay_segment(struct wal_reader *r, const struct wal_replay_args *args,
                              uint64_t base, bool last, const struct wal_previous *prev,
                              struct wal_replay_report *report, uint64_t *stop, uint64_t *data_end,
                              int *fn_result)
{
    *stop = 0;
    *data_end = 0;
    struct wal_segment_header h;
    int rc = wal_read_segment_header(r, &h);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return wal_classify(r, 0, last, data_end);
    if (h.stream != args->stream || h.base != base || h.flags != 0 || h.reserved != 0 ||
        (h.prev_base != 0 && (h.prev_base >= base || h.prev_max_seq >= base))) {
        /* A well-formed header that names another stream or base is misplaced, not torn;
         * one whose predecessor does not precede it (invariant 2) was never written by
         * this log. */
        rc = wal_reader_data_end(r, 0, data_end);
        return rc < 0 ? rc : WAL_SEGMENT_DAMAGED;
    }
    if (!wal_check_predecessor(&h, prev, args, report))
        return WAL_SEGMENT_GAP;

    uint64_t off = h.size;
    for (;;) {
        struct wal_record rec;
        rc = wal_reader_record(r, off, &rec);
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
        if (rec.seq > report->last_seq)
            report->last_seq = rec.seq;
        if (rec.seq > args->after_seq) {
            report->records++;
            if (args->fn != NULL) {
                int result = args->fn(args->ctx, rec.type, rec.seq, rec.payload, rec.len);
                if (result != 0) {
                    *fn_result = result;
                    return WAL_SEGMENT_CLEAN;
                }
            }
        }
        off += WAL_RECORD_HEADER_SIZE + (uint64_t)rec.len;
    }
    *stop = off;
    if (off == r->size) {
        *data_end = off;
        return WAL_SEGMENT_CLEAN;
    }
    return wal_classify(r, off, last, data_end);
}

/* Cuts a segment at off: truncates and fsyncs it, or removes it when nothing valid is left
 * (off 0: not even a header). */
static int wal_cut_segment(const struct shoal_io *io, const char *stream_dir, const char *path,
                           int fd, uint64_t off)
{
    if (off == 0) {
        int rc = io->unlink(io, path);
        if (rc == 0)
            rc = io->fsync_dir(io, stream_dir);
        return rc < 0 ? io_error(rc) : 0;
    }
    int rc = io->ftruncate(io, fd, off);
    if (rc < 0)
        return io_error(rc);
    /* The cut must be durable before anything is appended after it: a later crash must not
     * bring the torn bytes back in front of newer segments. */
    rc = io->fsync(io, fd);
    return io_sync_error(rc);
}

/* Drops segments bases[from..count) (salvage): counts their bytes and, unless read_only,
 * deletes them. */
static int wal_drop_segments(const struct shoal_io *io, const char *stream_dir,
                             const uint64_t *bases, size_t from, size_t count, bool read_only,
                             struct wal_replay_report *report)
{
    int result = 0;
    for (size_t j = from; j < count; j++) {
        char path[WAL_PATH_MAX];
        if (wal_segment_file(path, sizeof path, stream_dir, bases[j]) != 0)
            continue;
        int fd = io->open(io, path, O_RDONLY, 0);
        uint64_t size = 0;
        if (fd >= 0) {
            io->file_size(io, fd, &size);
            io->close(io, fd);
        }
        report->bytes_dropped += size;
        if (!read_only) {
            int rc = io->unlink(io, path);
            if (rc < 0 && result == 0)
                result = io_error(rc);
        }
    }
    if (!read_only && result == 0 && from < count) {
        int rc = io->fsync_dir(io, stream_dir);
        if (rc < 0)
            result = io_error(rc);
    }
    return result;
}

static int wal_replay_stream(const char *dir, const struct wal_replay_args *args,
                             const struct shoal_io *io, bool salvage, bool read_only,
                             struct wal_replay_report *report)
{
    unsigned stream = args->stream;
    struct wal_replay_report local;
    if (report == NULL)
        report = &local;
    memset(report, 0, sizeof *report);
    if (dir == NULL)
        return SHOAL_EINVAL;
    if (io == NULL)
        io = io_posix();

    char stream_dir[WAL_PATH_MAX];
    if (wal_stream_dir(stream_dir, sizeof stream_dir, dir, stream) != 0)
        return SHOAL_EINVAL;
    struct wal_listing l;
    int err = wal_list_segments(io, stream_dir, &l);
    if (err != 0)
        return err;

    struct wal_reader r = {.io = io, .fd = -1};
    struct wal_previous prev = {0};
    char prev_path[WAL_PATH_MAX] = "";
    int result = 0;
    for (size_t k = 0; k < l.count; k++) {
        bool last = k + 1 == l.count;
        char path[WAL_PATH_MAX];
        if (wal_segment_file(path, sizeof path, stream_dir, l.bases[k]) != 0) {
            result = SHOAL_EINVAL;
            break;
        }
        int fd = io->open(io, path, read_only ? O_RDONLY : O_RDWR, 0);
        if (fd < 0) {
            result = io_error(fd);
            break;
        }
        r.fd = fd;
        r.start = 0;
        r.len = 0;
        int rc = io->file_size(io, fd, &r.size);
        if (rc < 0) {
            io->close(io, fd);
            result = io_error(rc);
            break;
        }

        uint64_t stop = 0, data_end = 0;
        int fn_result = 0;
        int outcome = wal_replay_segment(&r, args, l.bases[k], last, &prev, report, &stop,
                                         &data_end, &fn_result);
        if (fn_result != 0) {
            result = fn_result;
        } else if (outcome < 0) {
            if (outcome == SHOAL_ENOTSUP) {
                snprintf(report->file, sizeof report->file, "%s", path);
                report->offset = 0;
            }
            result = outcome;
        } else if (outcome == WAL_SEGMENT_CLEAN) {
            /* Trim preallocated zeros off the last segment; a file without even a header
             * (created just before a crash) is removed. */
            if (!read_only && last && r.size > stop)
                result = wal_cut_segment(io, stream_dir, path, fd, stop);
        } else if (outcome == WAL_SEGMENT_TORN) {
            snprintf(report->file, sizeof report->file, "%s", path);
            report->offset = stop;
            report->torn_tail = true;
            report->bytes_dropped += data_end - stop;
            if (!read_only)
                result = wal_cut_segment(io, stream_dir, path, fd, stop);
        } else if (outcome == WAL_SEGMENT_GAP) {
            /* The data missing is at the end of the previous segment; when that segment is
             * gone altogether, the damage is named at the start of this one. */
            if (prev.present) {
                snprintf(report->file, sizeof report->file, "%s", prev_path);
                report->offset = prev.stop;
            } else {
                snprintf(report->file, sizeof report->file, "%s", path);
                report->offset = 0;
            }
            if (!salvage) {
                result = SHOAL_ECORRUPT;
            } else {
                report->salvaged = true;
                io->close(io, fd);
                fd = -1;
                result = wal_drop_segments(io, stream_dir, l.bases, k, l.count, read_only, report);
            }
        } else {
            snprintf(report->file, sizeof report->file, "%s", path);
            report->offset = stop;
            if (!salvage) {
                result = SHOAL_ECORRUPT;
            } else {
                report->salvaged = true;
                report->bytes_dropped += data_end - stop;
                result =
                    wal_drop_segments(io, stream_dir, l.bases, k + 1, l.count, read_only, report);
                if (!read_only && result == 0)
                    result = wal_cut_segment(io, stream_dir, path, fd, stop);
            }
        }
        if (fd >= 0)
            io->close(io, fd);
        if (outcome != WAL_SEGMENT_CLEAN || result != 0)
            break;
        prev = (struct wal_previous){
            .present = true, .base = l.bases[k], .stop = stop, .size = r.size};
        snprintf(prev_path, sizeof prev_path, "%s", path);
    }
    free(r.buf);
    free(l.bases);
    return result;
}

int wal_replay(const char *dir, unsigned stream, uint64_t after_seq, const struct shoal_io *io,
               bool salvage, bool read_only,
               int (*fn)(void *ctx, uint8_t type, uint64_t seq, const void *payload, size_t len),
               void *ctx, struct wal_replay_report *report)
{
    const struct wal_replay_args args = {
        .stream = stream, .after_seq = after_seq, .fn = fn, .ctx = ctx};
    return wal_replay_stream(dir, &args, io, salvage, read_only, report);
}

int wal_replay_from_checkpoint(const char *dir, unsigned stream, uint64_t checkpoint_seq,
                               uint64_t after_seq, const struct shoal_io *io, bool salvage,
                               bool read_only,
                               int (*fn)(void *ctx, uint8_t type, uint64_t seq, const void *payload,
                                         size_t len),
                               void *ctx, struct wal_replay_report *report)
{
    const struct wal_replay_args args = {.stream = stream,
                                         .after_seq = after_seq,
                                         .checkpoint_known = true,
                                         .checkpoint_seq = checkpoint_seq,
                                         .fn = fn,
                                         .ctx = ctx};
    return wal_replay_stream(dir, &args, io, salvage, read_only, report);
}
