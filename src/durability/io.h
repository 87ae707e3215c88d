/*
 * io.h -- the table through which all of Shoal's file I/O goes, and a fault injector.
 *
 * Purpose. The engine never calls open(2), write(2) or fsync(2) itself: it calls the
 * function pointers of a struct shoal_io. The default table, io_posix(), is a thin layer
 * over POSIX. Tests substitute struct io_faults, which wraps another table and fails,
 * shortens or tears the Nth call of a kind, so that every error path of the log, the
 * MANIFEST and the checkpoint files can be driven on purpose (the SQLite way: crash
 * simulation and fault injection rather than hope).
 *
 * Conventions of the table.
 *   - Every function takes the table itself as its first argument, so a wrapper finds its
 *     own state from it.
 *   - Results are 0 (or a byte count, or a file descriptor) on success and a negative errno
 *     on failure: -ENOSPC, -EIO, ... Never errno, never -1. EINTR is retried inside.
 *   - Reads and writes may be short, as in POSIX; io_write_full, io_pwrite_full and
 *     io_pread_full loop until done.
 *   - Descriptors are opened with O_CLOEXEC.
 *   - The engine turns an errno into a SHOAL_E* code with io_error() (ENOSPC and EDQUOT give
 *     SHOAL_ENOSPC, anything else SHOAL_EIO) or io_sync_error() (any failure of fsync or
 *     fdatasync gives SHOAL_EFSYNC: after it the state of the data on disk is unknown).
 *
 * Invariants:
 *   1. io_posix() returns the same static table on every call; it has no state.
 *   2. A struct io_faults with no rule armed behaves exactly like the table it wraps,
 *      apart from counting calls.
 *   3. An injected fault hits exactly the calls its rule names (the Nth call of its kind,
 *      counted from 1 since io_faults_init or io_faults_reset_counts, and with and_after
 *      every later one too), whatever the threads making them.
 *   4. dir_lock holds an flock(2) lock on DIR/LOCK for as long as the returned descriptor is
 *      open. flock locks belong to an open file description, so a second dir_lock on the same
 *      directory fails with SHOAL_EBUSY even from the same process.
 *
 * Tested by tests/unit/test_io.c: the POSIX table on a temporary directory, each kind of
 * injected fault giving its documented result and count, and the directory lock held
 * twice in one process.
 *
 * Thread-safety: the tables may be used from any number of threads at once. Arm the rules
 * of a struct io_faults before the threads that use it start, or accept that a call racing
 * with io_faults_* sees the old or the new rule.
 */
#ifndef SHOAL_DURABILITY_IO_H
#define SHOAL_DURABILITY_IO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct shoal_io {
    /* open(2). flags and mode as for open(2); O_CLOEXEC is added. Returns a descriptor. */
    int (*open)(const struct shoal_io *io, const char *path, int flags, unsigned mode);
    int (*close)(const struct shoal_io *io, int fd);
    /* pwrite(2) and write(2): bytes written (possibly fewer than len) or -errno. */
    ssize_t (*pwrite)(const struct shoal_io *io, int fd, const void *buf, size_t len,
                      uint64_t offset);
    ssize_t (*write)(const struct shoal_io *io, int fd, const void *buf, size_t len);
    /* pread(2) and read(2): bytes read (0 at end of file) or -errno. */
    ssize_t (*pread)(const struct shoal_io *io, int fd, void *buf, size_t len, uint64_t offset);
    ssize_t (*read)(const struct shoal_io *io, int fd, void *buf, size_t len);
    int (*fdatasync)(const struct shoal_io *io, int fd);
    int (*fsync)(const struct shoal_io *io, int fd);
    int (*ftruncate)(const struct shoal_io *io, int fd, uint64_t length);
    /* Reserves [offset, offset+length) and extends the file size over it (fallocate(2) with
     * mode 0). -EOPNOTSUPP where the file system cannot. */
    int (*fallocate)(const struct shoal_io *io, int fd, uint64_t offset, uint64_t length);
    /* Asks the OS to bring [offset, offset+length) into its page cache now (posix_fadvise
     * POSIX_FADV_WILLNEED). A hint: 0 or -errno, and a failure changes nothing. */
    int (*cache_ahead)(const struct shoal_io *io, int fd, uint64_t offset, uint64_t length);
    /* Writes zeros over [offset, offset+length) of space fallocate reserved, so that later
     * writes there land in blocks already written and synced (pwritev(2) of a zero page).
     * 0 or -errno. The log's "Zeroed ahead" (wal.c) is its only user. */
    int (*write_zeros)(const struct shoal_io *io, int fd, uint64_t offset, uint64_t length);
    /* The file's size in bytes (fstat(2)). */
    int (*file_size)(const struct shoal_io *io, int fd, uint64_t *size);
    int (*rename)(const struct shoal_io *io, const char *from, const char *to);
    int (*unlink)(const struct shoal_io *io, const char *path);
    /* mkdir(2): -EEXIST when the path exists. */
    int (*mkdir)(const struct shoal_io *io, const char *path, unsigned mode);
    int (*rmdir)(const struct shoal_io *io, const char *path);
    /* Calls fn(ctx, name) for every entry of the directory but "." and "..", in no particular
     * order. fn returning non-zero stops the listing, and that value is returned. */
    int (*list_dir)(const struct shoal_io *io, const char *path,
                    int (*fn)(void *ctx, const char *name), void *ctx);
    /* Opens the directory, fsyncs it and closes it: makes its entries (created, renamed or
     * removed files) durable. */
    int (*fsync_dir)(const struct shoal_io *io, const char *path);
    /* flock(2). -EWOULDBLOCK when LOCK_NB is given and the lock is held elsewhere. */
    int (*flock)(const struct shoal_io *io, int fd, int operation);
};

/* The table that calls POSIX directly. */
const struct shoal_io *io_posix(void);

/* SHOAL_ENOSPC for -ENOSPC and -EDQUOT, SHOAL_EIO for any other negative errno; a
 * non-negative value is returned unchanged. */
int io_error(int negative_errno);
/* SHOAL_EFSYNC for any negative value (a failed fsync or fdatasync); else unchanged. */
int io_sync_error(int negative_errno);

/* Writes all len bytes, looping over short writes. Returns 0 or -errno. A write that makes
 * no progress gives -EIO. */
int io_write_full(const struct shoal_io *io, int fd, const void *buf, size_t len);
int io_pwrite_full(const struct shoal_io *io, int fd, const void *buf, size_t len, uint64_t offset);
/* Reads up to len bytes from offset, looping over short reads until len or end of file.
 * Returns the bytes read or -errno. */
ssize_t io_pread_full(const struct shoal_io *io, int fd, void *buf, size_t len, uint64_t offset);

/* Writes "a/b" into out (cap bytes). Returns 0, or SHOAL_EINVAL when it does not fit. */
int io_path_join(char *out, size_t cap, const char *a, const char *b);

/* Creates the directory if it is missing (one level), then fsyncs its parent so the new
 * entry is durable. Returns 0 when it exists or was created, else SHOAL_EIO/SHOAL_ENOSPC. */
int io_ensure_dir(const struct shoal_io *io, const char *path);

/* Opens (creating if needed) DIR/LOCK and takes flock(LOCK_EX | LOCK_NB) on it; *fd is the
 * descriptor that holds the lock. Returns 0, SHOAL_EBUSY when another process or another
 * open of the same directory holds it, or SHOAL_EIO. */
int dir_lock(const struct shoal_io *io, const char *dir, int *fd);
/* Releases a lock taken by dir_lock (closes the descriptor). A negative fd is a no-op. */
void dir_unlock(const struct shoal_io *io, int fd);

/* ------------------------------------------------------------------------------------
 * Fault injection.
 * ---------------------------------------------------------------------------------- */

/* The kinds of call a rule can target; each kind has its own call counter. */
enum io_op {
    IO_OP_OPEN = 0,
    IO_OP_CLOSE,
    IO_OP_WRITE,    /* pwrite and write */
    IO_OP_READ,     /* pread and read */
    IO_OP_SYNC,     /* fdatasync and fsync of a file */
    IO_OP_DIR_SYNC, /* fsync_dir */
    IO_OP_TRUNCATE,
    IO_OP_ALLOCATE,
    IO_OP_STAT, /* file_size */
    IO_OP_RENAME,
    IO_OP_UNLINK,
    IO_OP_MKDIR,
    IO_OP_RMDIR,
    IO_OP_LIST,
    IO_OP_LOCK,
    IO_OP_ZERO, /* write_zeros */
    IO_OP_COUNT
};

enum io_fault_kind {
    IO_FAULT_NONE = 0,
    IO_FAULT_FAIL,  /* the call does nothing and returns -error */
    IO_FAULT_SHORT, /* a write writes only `keep` bytes and reports that (not an error) */
    IO_FAULT_TEAR,  /* a write writes only `keep` bytes, then returns -error: a crash
                       in the middle of a write, as the disk would leave it */
};

struct io_fault_rule {
    _Atomic int kind;       /* enum io_fault_kind; IO_FAULT_NONE: disarmed */
    _Atomic uint64_t at;    /* the 1-based number of the call it hits */
    _Atomic bool and_after; /* IO_FAULT_FAIL: every later call fails too */
    _Atomic int error;      /* positive errno returned (negated) by FAIL and TEAR */
    _Atomic size_t keep;    /* SHORT and TEAR: bytes that reach the file; clamped to
                               len - 1; 0 means half of the call's length */
};

struct io_faults {
    struct shoal_io io;          /* first member: pass &faults.io wherever a table is wanted */
    const struct shoal_io *base; /* the table that does the real work */
    struct io_fault_rule rules[IO_OP_COUNT];
    _Atomic uint64_t calls[IO_OP_COUNT];
    _Atomic uint64_t injected; /* faults injected so far, all kinds */
    /* Called before every IO_OP_SYNC call with its 1-based number (NULL: none). Lets a test
     * make a sync wait for a condition (bounded), to provoke a group commit. */
    void (*before_sync)(void *ctx, uint64_t nth);
    void *hook_ctx;
};

/* Makes f a pass-through wrapper of base (NULL: io_posix()) with no rule armed and every
 * counter at zero. */
void io_faults_init(struct io_faults *f, const struct shoal_io *base);
/* Arms: the nth call of kind op (and every later one if and_after) fails with -error
 * (a positive errno such as EIO or ENOSPC) without doing anything. */
void io_faults_fail(struct io_faults *f, enum io_op op, uint64_t nth, int error, bool and_after);
/* Arms: the nth write writes only keep bytes (0: half) and returns that count. */
void io_faults_short_write(struct io_faults *f, uint64_t nth, size_t keep);
/* Arms: the nth write writes only keep bytes (0: half), then fails with -EIO. */
void io_faults_tear_write(struct io_faults *f, uint64_t nth, size_t keep);
/* Disarms every rule (the counters keep counting). */
void io_faults_clear(struct io_faults *f);
/* Sets every call counter back to zero, so "the nth call" counts from now. */
void io_faults_reset_counts(struct io_faults *f);
/* Calls of kind op made so far (including the ones a fault hit). */
uint64_t io_faults_count(const struct io_faults *f, enum io_op op);

#endif /* SHOAL_DURABILITY_IO_H */
