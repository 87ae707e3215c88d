/*
 * io.c -- the POSIX I/O table, the fault-injecting wrapper and the directory lock.
 *
 * Purpose: see io.h, which states the conventions (negative errno results, EINTR retried,
 * O_CLOEXEC everywhere) and the invariants this file keeps.
 *
 * The POSIX table. Each function is the system call with its errno turned into a negative
 * return value. There is no state, so one static table serves every database (io.h, 1).
 *
 * The fault wrapper. struct io_faults begins with a struct shoal_io whose functions are the
 * io_faults_* trampolines below; each one recovers the wrapper from its table pointer,
 * counts the call (an atomic increment, so the numbering is exact under threads: io.h, 3)
 * and consults the rule of its kind. A rule is a handful of atomics rather than a struct
 * behind a lock, so a test that arms a rule while a log's background thread is running
 * needs no lock shared with the code under test (a lock there would hide data races from
 * ThreadSanitizer). The rule's kind is stored last with release order and loaded first
 * with acquire order, so a call that sees the kind also sees its other fields.
 *
 * Tested by tests/unit/test_io.c.
 */
#include "durability/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shoal.h"

/* ------------------------------------------------------------------------------------
 * The POSIX table.
 * ---------------------------------------------------------------------------------- */

static int io_posix_open(const struct shoal_io *io, const char *path, int flags, unsigned mode)
{
    (void)io;
    for (;;) {
        int fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
        if (fd >= 0)
            return fd;
        if (errno != EINTR)
            return -errno;
    }
}

static int io_posix_close(const struct shoal_io *io, int fd)
{
    (void)io;
    /* close(2) must not be retried on EINTR: on Linux the descriptor is already gone. */
    return close(fd) == 0 ? 0 : -errno;
}

static ssize_t io_posix_pwrite(const struct shoal_io *io, int fd, const void *buf, size_t len,
                               uint64_t offset)
{
    (void)io;
    for (;;) {
        ssize_t n = pwrite(fd, buf, len, (off_t)offset);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

static ssize_t io_posix_write(const struct shoal_io *io, int fd, const void *buf, size_t len)
{
    (void)io;
    for (;;) {
        ssize_t n = write(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

static ssize_t io_posix_pread(const struct shoal_io *io, int fd, void *buf, size_t len,
                              uint64_t offset)
{
    (void)io;
    for (;;) {
        ssize_t n = pread(fd, buf, len, (off_t)offset);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

static ssize_t io_posix_read(const struct shoal_io *io, int fd, void *buf, size_t len)
{
    (void)io;
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

static int io_posix_fdatasync(const struct shoal_io *io, int fd)
{
    (void)io;
    /* Not retried on EINTR either: a failed sync may have dropped the dirty pages it was
     * writing, and a second call that succeeds would hide that (io.h; invariant 8 of the
     * architecture). Linux does not return EINTR from fdatasync on regular files anyway. */
    return fdatasync(fd) == 0 ? 0 : -errno;
}

static int io_posix_fsync(const struct shoal_io *io, int fd)
{
    (void)io;
    return fsync(fd) == 0 ? 0 : -errno;
}

static int io_posix_ftruncate(const struct shoal_io *io, int fd, uint64_t length)
{
    (void)io;
    for (;;) {
        if (ftruncate(fd, (off_t)length) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

static int io_posix_fallocate(const struct shoal_io *io, int fd, uint64_t offset, uint64_t length)
{
    (void)io;
#if defined(__linux__)
    for (;;) {
        if (fallocate(fd, 0, (off_t)offset, (off_t)length) == 0)
            return 0;
        if (errno != EINTR)
            return errno == ENOSYS ? -EOPNOTSUPP : -errno;
    }
#else
    int rc = posix_fallocate(fd, (off_t)offset, (off_t)length);
    return rc == 0 ? 0 : -rc;
#endif
}

static int io_posix_cache_ahead(const struct shoal_io *io, int fd, uint64_t offset, uint64_t length)
{
    (void)io;
    return -posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_WILLNEED);
}

/* What write_zeros writes from: a page of zeros repeated by the iovec. */
static const uint8_t io_zero_page[4096];
#define IO_ZERO_IOVECS 64

static int io_posix_write_zeros(const struct shoal_io *io, int fd, uint64_t offset, uint64_t length)
{
    (void)io;
    struct iovec iov[IO_ZERO_IOVECS];
    for (int i = 0; i < IO_ZERO_IOVECS; i++)
        iov[i] = (struct iovec){.iov_base = (void *)io_zero_page, .iov_len = sizeof io_zero_page};
    while (length > 0) {
        uint64_t pages = (length + sizeof io_zero_page - 1) / sizeof io_zero_page;
        int count = pages < IO_ZERO_IOVECS ? (int)pages : IO_ZERO_IOVECS;
        size_t bytes = (size_t)count * sizeof io_zero_page;
        if (bytes > length) {
            iov[count - 1].iov_len = sizeof io_zero_page - (size_t)(bytes - length);
            bytes = (size_t)length;
        }
        ssize_t n = pwritev(fd, iov, count, (off_t)offset);
        iov[count - 1].iov_len = sizeof io_zero_page;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        offset += (uint64_t)n;
        length -= (uint64_t)n;
    }
    return 0;
}

static int io_posix_file_size(const struct shoal_io *io, int fd, uint64_t *size)
{
    (void)io;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

static int io_posix_rename(const struct shoal_io *io, const char *from, const char *to)
{
    (void)io;
    return rename(from, to) == 0 ? 0 : -errno;
}

static int io_posix_unlink(const struct shoal_io *io, const char *path)
{
    (void)io;
    return unlink(path) == 0 ? 0 : -errno;
}

static int io_posix_mkdir(const struct shoal_io *io, const char *path, unsigned mode)
{
    (void)io;
    return mkdir(path, (mode_t)mode) == 0 ? 0 : -errno;
}

static int io_posix_rmdir(const struct shoal_io *io, const char *path)
{
    (void)io;
    return rmdir(path) == 0 ? 0 : -errno;
}

static int io_posix_list_dir(const struct shoal_io *io, const char *path,
                             int (*fn)(void *ctx, const char *name), void *ctx)
{
    (void)io;
    DIR *dir = opendir(path);
    if (dir == NULL)
        return -errno;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(dir);
        if (entry == NULL) {
            if (errno != 0)
                rc = -errno;
            break;
        }
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        rc = fn(ctx, entry->d_name);
        if (rc != 0)
            break;
    }
    closedir(dir);
    return rc;
}

static int io_posix_fsync_dir(const struct shoal_io *io, const char *path)
{
    int fd = io_posix_open(io, path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int io_posix_flock(const struct shoal_io *io, int fd, int operation)
{
    (void)io;
    for (;;) {
        if (flock(fd, operation) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

static const struct shoal_io io_posix_table = {
    .open = io_posix_open,
    .close = io_posix_close,
    .pwrite = io_posix_pwrite,
    .write = io_posix_write,
    .pread = io_posix_pread,
    .read = io_posix_read,
    .fdatasync = io_posix_fdatasync,
    .fsync = io_posix_fsync,
    .ftruncate = io_posix_ftruncate,
    .fallocate = io_posix_fallocate,
    .cache_ahead = io_posix_cache_ahead,
    .write_zeros = io_posix_write_zeros,
    .file_size = io_posix_file_size,
    .rename = io_posix_rename,
    .unlink = io_posix_unlink,
    .mkdir = io_posix_mkdir,
    .rmdir = io_posix_rmdir,
    .list_dir = io_posix_list_dir,
    .fsync_dir = io_posix_fsync_dir,
    .flock = io_posix_flock,
};

const struct shoal_io *io_posix(void)
{
    return &io_posix_table;
}

/* ------------------------------------------------------------------------------------
 * Helpers.
 * ---------------------------------------------------------------------------------- */

int io_error(int negative_errno)
{
    if (negative_errno >= 0)
        return negative_errno;
    if (negative_errno == -ENOSPC || negative_errno == -EDQUOT)
        return SHOAL_ENOSPC;
    return SHOAL_EIO;
}

int io_sync_error(int negative_errno)
{
    return negative_errno >= 0 ? negative_errno : SHOAL_EFSYNC;
}

int io_write_full(const struct shoal_io *io, int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = io->write(io, fd, p, len);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int io_pwrite_full(const struct shoal_io *io, int fd, const void *buf, size_t len, uint64_t offset)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = io->pwrite(io, fd, p, len, offset);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

ssize_t io_pread_full(const struct shoal_io *io, int fd, void *buf, size_t len, uint64_t offset)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = io->pread(io, fd, p + done, len - done, offset + done);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int io_path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return SHOAL_EINVAL;
    return 0;
}

int io_ensure_dir(const struct shoal_io *io, const char *path)
{
    int rc = io->mkdir(io, path, 0755);
    if (rc == -EEXIST)
        return 0;
    if (rc < 0)
        return io_error(rc);

    /* The new entry lives in the parent directory: fsync the parent, or a crash could
     * forget the directory along with everything later made durable inside it. */
    char parent[4096];
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    while (len > 0 && path[len - 1] != '/')
        len--;
    if (len == 0) {
        strcpy(parent, ".");
    } else {
        if (len >= sizeof parent)
            return SHOAL_EINVAL;
        memcpy(parent, path, len);
        parent[len] = '\0';
    }
    rc = io->fsync_dir(io, parent);
    return rc < 0 ? io_sync_error(rc) : 0;
}

int dir_lock(const struct shoal_io *io, const char *dir, int *fd)
{
    char path[4096];
    *fd = -1;
    if (io_path_join(path, sizeof path, dir, "LOCK") != 0)
        return SHOAL_EINVAL;
    int lock_fd = io->open(io, path, O_RDWR | O_CREAT, 0644);
    if (lock_fd < 0)
        return io_error(lock_fd);
    int rc = io->flock(io, lock_fd, LOCK_EX | LOCK_NB);
    if (rc < 0) {
        io->close(io, lock_fd);
        return rc == -EWOULDBLOCK ? SHOAL_EBUSY : io_error(rc);
    }
    *fd = lock_fd;
    return 0;
}

void dir_unlock(const struct shoal_io *io, int fd)
{
    if (fd >= 0)
        io->close(io, fd); /* closing the last descriptor of the description drops the lock */
}

/* ------------------------------------------------------------------------------------
 * Fault injection.
 * ---------------------------------------------------------------------------------- */

static struct io_faults *io_faults_of(const struct shoal_io *io)
{
    /* io is the first member of struct io_faults (io.h). */
    return (struct io_faults *)(void *)(uintptr_t)io;
}

/* Counts a call of kind op and returns the fault to inject into it (IO_FAULT_NONE for
 * none); *rule is the rule that fired. */
static int io_faults_check_nth(struct io_faults *f, enum io_op op,
                               const struct io_fault_rule **rule, uint64_t *nth_out)
{
    uint64_t nth = atomic_fetch_add(&f->calls[op], 1) + 1;
    if (nth_out != NULL)
        *nth_out = nth;
    const struct io_fault_rule *r = &f->rules[op];
    int kind = atomic_load_explicit(&r->kind, memory_order_acquire);
    *rule = r;
    if (kind == IO_FAULT_NONE)
        return IO_FAULT_NONE;
    uint64_t at = atomic_load_explicit(&r->at, memory_order_relaxed);
    bool hit = nth == at;
    if (!hit && kind == IO_FAULT_FAIL && atomic_load_explicit(&r->and_after, memory_order_relaxed))
        hit = nth > at;
    if (!hit)
        return IO_FAULT_NONE;
    atomic_fetch_add(&f->injected, 1);
    return kind;
}

static int io_faults_check(struct io_faults *f, enum io_op op, const struct io_fault_rule **rule)
{
    return io_faults_check_nth(f, op, rule, NULL);
}

static int io_faults_errno(const struct io_fault_rule *rule)
{
    int error = atomic_load_explicit(&rule->error, memory_order_relaxed);
    return error > 0 ? error : EIO;
}

/* How many bytes of a len-byte write a SHORT or TEAR fault lets through: at least 0 and
 * fewer than len, so the write really is incomplete. */
static size_t io_faults_keep(const struct io_fault_rule *rule, size_t len)
{
    size_t keep = atomic_load_explicit(&rule->keep, memory_order_relaxed);
    if (keep == 0)
        keep = len / 2;
    if (len > 0 && keep >= len)
        keep = len - 1;
    return keep;
}

static int io_faults_open(const struct shoal_io *io, const char *path, int flags, unsigned mode)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_OPEN, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->open(f->base, path, flags, mode);
}

static int io_faults_close(const struct shoal_io *io, int fd)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_CLOSE, &rule) == IO_FAULT_FAIL) {
        /* The descriptor is released all the same, as Linux does on a failed close. */
        f->base->close(f->base, fd);
        return -io_faults_errno(rule);
    }
    return f->base->close(f->base, fd);
}

static ssize_t io_faults_pwrite(const struct shoal_io *io, int fd, const void *buf, size_t len,
                                uint64_t offset)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    switch (io_faults_check(f, IO_OP_WRITE, &rule)) {
    case IO_FAULT_FAIL:
        return -io_faults_errno(rule);
    case IO_FAULT_SHORT: {
        size_t keep = io_faults_keep(rule, len);
        if (keep == 0)
            keep = len; /* a 1-byte write cannot be shortened and still make progress */
        return f->base->pwrite(f->base, fd, buf, keep, offset);
    }
    case IO_FAULT_TEAR: {
        size_t keep = io_faults_keep(rule, len);
        if (keep > 0) {
            int rc = io_pwrite_full(f->base, fd, buf, keep, offset);
            if (rc < 0)
                return rc;
        }
        return -io_faults_errno(rule);
    }
    default:
        return f->base->pwrite(f->base, fd, buf, len, offset);
    }
}

static ssize_t io_faults_write(const struct shoal_io *io, int fd, const void *buf, size_t len)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    switch (io_faults_check(f, IO_OP_WRITE, &rule)) {
    case IO_FAULT_FAIL:
        return -io_faults_errno(rule);
    case IO_FAULT_SHORT: {
        size_t keep = io_faults_keep(rule, len);
        if (keep == 0)
            keep = len;
        return f->base->write(f->base, fd, buf, keep);
    }
    case IO_FAULT_TEAR: {
        size_t keep = io_faults_keep(rule, len);
        if (keep > 0) {
            int rc = io_write_full(f->base, fd, buf, keep);
            if (rc < 0)
                return rc;
        }
        return -io_faults_errno(rule);
    }
    default:
        return f->base->write(f->base, fd, buf, len);
    }
}

static ssize_t io_faults_pread(const struct shoal_io *io, int fd, void *buf, size_t len,
                               uint64_t offset)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_READ, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->pread(f->base, fd, buf, len, offset);
}

static ssize_t io_faults_read(const struct shoal_io *io, int fd, void *buf, size_t len)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_READ, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->read(f->base, fd, buf, len);
}

static int io_faults_sync(struct io_faults *f, int fd, bool data_only)
{
    const struct io_fault_rule *rule;
    uint64_t nth;
    int fault = io_faults_check_nth(f, IO_OP_SYNC, &rule, &nth);
    if (f->before_sync != NULL)
        f->before_sync(f->hook_ctx, nth);
    if (fault == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return data_only ? f->base->fdatasync(f->base, fd) : f->base->fsync(f->base, fd);
}

static int io_faults_fdatasync(const struct shoal_io *io, int fd)
{
    return io_faults_sync(io_faults_of(io), fd, true);
}

static int io_faults_fsync(const struct shoal_io *io, int fd)
{
    return io_faults_sync(io_faults_of(io), fd, false);
}

static int io_faults_ftruncate(const struct shoal_io *io, int fd, uint64_t length)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_TRUNCATE, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->ftruncate(f->base, fd, length);
}

static int io_faults_fallocate(const struct shoal_io *io, int fd, uint64_t offset, uint64_t length)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_ALLOCATE, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->fallocate(f->base, fd, offset, length);
}

/* A hint, never failed on purpose: nothing depends on its result. */
static int io_faults_cache_ahead(const struct shoal_io *io, int fd, uint64_t offset,
                                 uint64_t length)
{
    struct io_faults *f = io_faults_of(io);
    return f->base->cache_ahead(f->base, fd, offset, length);
}

static int io_faults_write_zeros(const struct shoal_io *io, int fd, uint64_t offset,
                                 uint64_t length)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_ZERO, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->write_zeros(f->base, fd, offset, length);
}

static int io_faults_file_size(const struct shoal_io *io, int fd, uint64_t *size)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_STAT, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->file_size(f->base, fd, size);
}

static int io_faults_rename(const struct shoal_io *io, const char *from, const char *to)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_RENAME, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->rename(f->base, from, to);
}

static int io_faults_unlink(const struct shoal_io *io, const char *path)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_UNLINK, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->unlink(f->base, path);
}

static int io_faults_mkdir(const struct shoal_io *io, const char *path, unsigned mode)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_MKDIR, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->mkdir(f->base, path, mode);
}

static int io_faults_rmdir(const struct shoal_io *io, const char *path)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_RMDIR, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->rmdir(f->base, path);
}

static int io_faults_list_dir(const struct shoal_io *io, const char *path,
                              int (*fn)(void *ctx, const char *name), void *ctx)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_LIST, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->list_dir(f->base, path, fn, ctx);
}

static int io_faults_fsync_dir(const struct shoal_io *io, const char *path)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_DIR_SYNC, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->fsync_dir(f->base, path);
}

static int io_faults_flock(const struct shoal_io *io, int fd, int operation)
{
    struct io_faults *f = io_faults_of(io);
    const struct io_fault_rule *rule;
    if (io_faults_check(f, IO_OP_LOCK, &rule) == IO_FAULT_FAIL)
        return -io_faults_errno(rule);
    return f->base->flock(f->base, fd, operation);
}

void io_faults_init(struct io_faults *f, const struct shoal_io *base)
{
    f->io = (struct shoal_io){
        .open = io_faults_open,
        .close = io_faults_close,
        .pwrite = io_faults_pwrite,
        .write = io_faults_write,
        .pread = io_faults_pread,
        .read = io_faults_read,
        .fdatasync = io_faults_fdatasync,
        .fsync = io_faults_fsync,
        .ftruncate = io_faults_ftruncate,
        .fallocate = io_faults_fallocate,
        .cache_ahead = io_faults_cache_ahead,
        .write_zeros = io_faults_write_zeros,
        .file_size = io_faults_file_size,
        .rename = io_faults_rename,
        .unlink = io_faults_unlink,
        .mkdir = io_faults_mkdir,
        .rmdir = io_faults_rmdir,
        .list_dir = io_faults_list_dir,
        .fsync_dir = io_faults_fsync_dir,
        .flock = io_faults_flock,
    };
    f->base = base != NULL ? base : io_posix();
    for (int op = 0; op < IO_OP_COUNT; op++) {
        atomic_init(&f->rules[op].kind, IO_FAULT_NONE);
        atomic_init(&f->rules[op].at, 0);
        atomic_init(&f->rules[op].and_after, false);
        atomic_init(&f->rules[op].error, 0);
        atomic_init(&f->rules[op].keep, 0);
        atomic_init(&f->calls[op], 0);
    }
    atomic_init(&f->injected, 0);
    f->before_sync = NULL;
    f->hook_ctx = NULL;
}

static void io_faults_arm(struct io_faults *f, enum io_op op, int kind, uint64_t nth, int error,
                          bool and_after, size_t keep)
{
    struct io_fault_rule *r = &f->rules[op];
    atomic_store_explicit(&r->kind, IO_FAULT_NONE, memory_order_relaxed);
    atomic_store_explicit(&r->at, nth, memory_order_relaxed);
    atomic_store_explicit(&r->and_after, and_after, memory_order_relaxed);
    atomic_store_explicit(&r->error, error, memory_order_relaxed);
    atomic_store_explicit(&r->keep, keep, memory_order_relaxed);
    atomic_store_explicit(&r->kind, kind, memory_order_release);
}

void io_faults_fail(struct io_faults *f, enum io_op op, uint64_t nth, int error, bool and_after)
{
    io_faults_arm(f, op, IO_FAULT_FAIL, nth, error, and_after, 0);
}

void io_faults_short_write(struct io_faults *f, uint64_t nth, size_t keep)
{
    io_faults_arm(f, IO_OP_WRITE, IO_FAULT_SHORT, nth, 0, false, keep);
}

void io_faults_tear_write(struct io_faults *f, uint64_t nth, size_t keep)
{
    io_faults_arm(f, IO_OP_WRITE, IO_FAULT_TEAR, nth, EIO, false, keep);
}

void io_faults_clear(struct io_faults *f)
{
    for (int op = 0; op < IO_OP_COUNT; op++)
        atomic_store_explicit(&f->rules[op].kind, IO_FAULT_NONE, memory_order_release);
}

void io_faults_reset_counts(struct io_faults *f)
{
    for (int op = 0; op < IO_OP_COUNT; op++)
        atomic_store(&f->calls[op], 0);
}

uint64_t io_faults_count(const struct io_faults *f, enum io_op op)
{
    return atomic_load(&f->calls[op]);
}
