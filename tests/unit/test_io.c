/*
 * test_io.c -- the I/O table: POSIX behaviour, errno mapping, every kind of injected fault,
 * the directory lock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>

#include "durability/io.h"
#include "durability_testing.h"
#include "shoal.h"

struct names {
    int count;
    bool saw_a, saw_b, saw_sub;
};

static int collect_name(void *ctx, const char *name)
{
    struct names *n = ctx;
    n->count++;
    if (strcmp(name, "a") == 0)
        n->saw_a = true;
    if (strcmp(name, "b") == 0)
        n->saw_b = true;
    if (strcmp(name, "sub") == 0)
        n->saw_sub = true;
    return 0;
}

static int stop_listing(void *ctx, const char *name)
{
    (void)name;
    (*(int *)ctx)++;
    return 42;
}

static void test_posix_table(void **state)
{
    (void)state;
    const struct shoal_io *io = io_posix();
    assert_ptr_equal(io, io_posix());
    char dir[4096], a[4096], b[4096], sub[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "io"), 0);
    assert_int_equal(io_path_join(a, sizeof a, dir, "a"), 0);
    assert_int_equal(io_path_join(b, sizeof b, dir, "b"), 0);
    assert_int_equal(io_path_join(sub, sizeof sub, dir, "sub"), 0);

    int fd = io->open(io, a, O_RDWR | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(io->open(io, a, O_RDWR | O_CREAT | O_EXCL, 0644), -EEXIST);
    assert_int_equal(io_write_full(io, fd, "hello ", 6), 0);
    assert_int_equal(io_pwrite_full(io, fd, "world", 5, 6), 0);
    char buf[32] = {0};
    assert_int_equal(io_pread_full(io, fd, buf, sizeof buf, 0), 11);
    assert_memory_equal(buf, "hello world", 11);
    assert_int_equal(io->fdatasync(io, fd), 0);
    assert_int_equal(io->fsync(io, fd), 0);

    uint64_t size = 0;
    assert_int_equal(io->file_size(io, fd, &size), 0);
    assert_int_equal(size, 11);
    int rc = io->fallocate(io, fd, 0, 4096);
    assert_true(rc == 0 || rc == -EOPNOTSUPP);
    if (rc == 0) {
        assert_int_equal(io->file_size(io, fd, &size), 0);
        assert_int_equal(size, 4096);
        /* Preallocated space reads back as zeros. */
        memset(buf, 1, sizeof buf);
        assert_int_equal(io_pread_full(io, fd, buf, 8, 100), 8);
        for (int i = 0; i < 8; i++)
            assert_int_equal(buf[i], 0);
    }
    /* Caching ahead, over written and reserved bytes and past the end, changes no byte. */
    assert_int_equal(io->cache_ahead(io, fd, 0, 1 << 20), 0);
    assert_int_equal(io_pread_full(io, fd, buf, 11, 0), 11);
    assert_memory_equal(buf, "hello world", 11);
    assert_int_equal(io->cache_ahead(io, -1, 0, 4096), -EBADF);
    /* Zeros over bytes written before, across more pages than one call's iovecs (64) and
     * ending inside a page; what lies on either side is untouched. */
    size_t span = 70 * 4096 + 123;
    uint8_t *bytes = malloc(span + 2);
    memset(bytes, 0xab, span + 2);
    assert_int_equal(io_pwrite_full(io, fd, bytes, span + 2, 10), 0);
    assert_int_equal(io->write_zeros(io, fd, 11, span), 0);
    memset(bytes, 1, span + 2);
    assert_int_equal(io_pread_full(io, fd, bytes, span + 2, 10), (ssize_t)span + 2);
    assert_int_equal(bytes[0], 0xab);
    for (size_t i = 1; i <= span; i++)
        assert_int_equal(bytes[i], 0);
    assert_int_equal(bytes[span + 1], 0xab);
    free(bytes);
    assert_int_equal(io->write_zeros(io, -1, 0, 4096), -EBADF);
    assert_int_equal(io_pwrite_full(io, fd, "hello world", 11, 0), 0);
    assert_int_equal(io->ftruncate(io, fd, 5), 0);
    assert_int_equal(io->file_size(io, fd, &size), 0);
    assert_int_equal(size, 5);
    assert_int_equal(io_pread_full(io, fd, buf, sizeof buf, 3), 2);
    assert_int_equal(io->close(io, fd), 0);

    assert_int_equal(io->rename(io, a, b), 0);
    assert_int_equal(io->open(io, a, O_RDONLY, 0), -ENOENT);
    assert_int_equal(io->mkdir(io, sub, 0755), 0);
    assert_int_equal(io->mkdir(io, sub, 0755), -EEXIST);
    assert_int_equal(io_ensure_dir(io, sub), 0);
    assert_int_equal(io->fsync_dir(io, dir), 0);

    struct names names = {0};
    assert_int_equal(io->list_dir(io, dir, collect_name, &names), 0);
    assert_int_equal(names.count, 2);
    assert_true(names.saw_b && names.saw_sub && !names.saw_a);
    int calls = 0;
    assert_int_equal(io->list_dir(io, dir, stop_listing, &calls), 42);
    assert_int_equal(calls, 1);
    assert_int_equal(io->list_dir(io, a, collect_name, &names), -ENOENT);

    assert_int_equal(io->rmdir(io, sub), 0);
    assert_int_equal(io->unlink(io, b), 0);
    assert_int_equal(io->unlink(io, b), -ENOENT);
    assert_int_equal(io->rmdir(io, dir), 0);
}

static void test_error_mapping(void **state)
{
    (void)state;
    assert_int_equal(io_error(-ENOSPC), SHOAL_ENOSPC);
    assert_int_equal(io_error(-EDQUOT), SHOAL_ENOSPC);
    assert_int_equal(io_error(-EIO), SHOAL_EIO);
    assert_int_equal(io_error(-EACCES), SHOAL_EIO);
    assert_int_equal(io_error(0), 0);
    assert_int_equal(io_error(17), 17);
    assert_int_equal(io_sync_error(-EIO), SHOAL_EFSYNC);
    assert_int_equal(io_sync_error(-ENOSPC), SHOAL_EFSYNC);
    assert_int_equal(io_sync_error(0), 0);

    char out[8];
    assert_int_equal(io_path_join(out, sizeof out, "abc", "de"), 0);
    assert_string_equal(out, "abc/de");
    assert_int_equal(io_path_join(out, sizeof out, "abcd", "efg"), SHOAL_EINVAL);
}

/* Opens a scratch file through the fault table. */
static int open_scratch(struct io_faults *f, char *dir, size_t cap, char *path)
{
    assert_int_equal(testing_make_dir(dir, cap, "faults"), 0);
    assert_int_equal(io_path_join(path, 4096, dir, "f"), 0);
    int fd = f->io.open(&f->io, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    return fd;
}

static void test_fault_fail_nth_write(void **state)
{
    (void)state;
    struct io_faults f;
    io_faults_init(&f, NULL);
    const struct shoal_io *io = &f.io;
    char dir[4096], path[4096];
    int fd = open_scratch(&f, dir, sizeof dir, path);

    io_faults_fail(&f, IO_OP_WRITE, 3, EIO, false);
    assert_int_equal(io->write(io, fd, "a", 1), 1);
    assert_int_equal(io->pwrite(io, fd, "b", 1, 1), 1);
    assert_int_equal(io->write(io, fd, "c", 1), -EIO);
    assert_int_equal(io->pwrite(io, fd, "d", 1, 2), 1);
    assert_int_equal(io_faults_count(&f, IO_OP_WRITE), 4);
    assert_int_equal(atomic_load(&f.injected), 1);
    assert_int_equal(testing_file_size(path), 3);

    /* ENOSPC from the 2nd write on, for every later write: the engine sees SHOAL_ENOSPC. */
    io_faults_reset_counts(&f);
    io_faults_fail(&f, IO_OP_WRITE, 2, ENOSPC, true);
    assert_int_equal(io_write_full(io, fd, "e", 1), 0);
    int rc = io_write_full(io, fd, "f", 1);
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(io_error(rc), SHOAL_ENOSPC);
    assert_int_equal(io_pwrite_full(io, fd, "g", 1, 0), -ENOSPC);
    assert_int_equal(io_pwrite_full(io, fd, "h", 1, 0), -ENOSPC);
    assert_int_equal(io_faults_count(&f, IO_OP_WRITE), 4);

    io_faults_clear(&f);
    assert_int_equal(io_write_full(io, fd, "i", 1), 0);
    io->close(io, fd);
    testing_remove_tree(dir);
}

struct sync_log {
    uint64_t seen[8];
    int count;
};

static void record_sync(void *ctx, uint64_t nth)
{
    struct sync_log *log = ctx;
    if (log->count < 8)
        log->seen[log->count++] = nth;
}

static void test_fault_fail_nth_sync(void **state)
{
    (void)state;
    struct io_faults f;
    io_faults_init(&f, NULL);
    struct sync_log log = {0};
    f.before_sync = record_sync;
    f.hook_ctx = &log;
    const struct shoal_io *io = &f.io;
    char dir[4096], path[4096];
    int fd = open_scratch(&f, dir, sizeof dir, path);

    io_faults_fail(&f, IO_OP_SYNC, 2, EIO, false);
    assert_int_equal(io->fdatasync(io, fd), 0);
    int rc = io->fsync(io, fd);
    assert_int_equal(rc, -EIO);
    assert_int_equal(io_sync_error(rc), SHOAL_EFSYNC);
    assert_int_equal(io->fdatasync(io, fd), 0);
    assert_int_equal(log.count, 3);
    assert_int_equal(log.seen[0], 1);
    assert_int_equal(log.seen[1], 2);
    assert_int_equal(log.seen[2], 3);

    /* Directory syncs are their own kind. */
    io_faults_fail(&f, IO_OP_DIR_SYNC, 1, EIO, false);
    assert_int_equal(io->fsync_dir(io, dir), -EIO);
    assert_int_equal(io->fsync_dir(io, dir), 0);
    assert_int_equal(io_faults_count(&f, IO_OP_DIR_SYNC), 2);
    assert_int_equal(io_faults_count(&f, IO_OP_SYNC), 3);

    /* Other kinds fail the same way. */
    io_faults_fail(&f, IO_OP_RENAME, 1, EIO, false);
    char other[4096];
    assert_int_equal(io_path_join(other, sizeof other, dir, "g"), 0);
    assert_int_equal(io->rename(io, path, other), -EIO);
    assert_int_equal(testing_file_size(path), 0);
    io_faults_fail(&f, IO_OP_OPEN, io_faults_count(&f, IO_OP_OPEN) + 1, ENOSPC, false);
    assert_int_equal(io->open(io, other, O_RDWR | O_CREAT, 0644), -ENOSPC);
    /* Writing zeros is its own kind too: writes are not counted for it, nor it for them. */
    uint64_t writes = io_faults_count(&f, IO_OP_WRITE);
    io_faults_fail(&f, IO_OP_ZERO, 1, EIO, false);
    assert_int_equal(io->write_zeros(io, fd, 0, 4096), -EIO);
    assert_int_equal(io->write_zeros(io, fd, 0, 4096), 0);
    assert_int_equal(io_faults_count(&f, IO_OP_ZERO), 2);
    assert_int_equal(io_faults_count(&f, IO_OP_WRITE), writes);
    io->close(io, fd);
    testing_remove_tree(dir);
}

static void test_fault_short_write(void **state)
{
    (void)state;
    struct io_faults f;
    io_faults_init(&f, NULL);
    const struct shoal_io *io = &f.io;
    char dir[4096], path[4096];
    int fd = open_scratch(&f, dir, sizeof dir, path);

    /* A short write is not an error: the caller sees the count and the full-write
     * helpers finish the job with a second call. */
    io_faults_short_write(&f, 1, 3);
    assert_int_equal(io->pwrite(io, fd, "abcdefgh", 8, 0), 3);
    io_faults_reset_counts(&f);
    io_faults_short_write(&f, 1, 0);
    assert_int_equal(io_pwrite_full(io, fd, "ABCDEFGHIJ", 10, 0), 0);
    assert_int_equal(io_faults_count(&f, IO_OP_WRITE), 2);
    size_t len = 0;
    uint8_t *data = testing_read_file(path, &len);
    assert_non_null(data);
    assert_int_equal(len, 10);
    assert_memory_equal(data, "ABCDEFGHIJ", 10);
    free(data);
    io->close(io, fd);
    testing_remove_tree(dir);
}

static void test_fault_tear_write(void **state)
{
    (void)state;
    struct io_faults f;
    io_faults_init(&f, NULL);
    const struct shoal_io *io = &f.io;
    char dir[4096], path[4096];
    int fd = open_scratch(&f, dir, sizeof dir, path);

    io_faults_tear_write(&f, 2, 4);
    assert_int_equal(io_pwrite_full(io, fd, "0123456789", 10, 0), 0);
    int rc = io_pwrite_full(io, fd, "abcdefghij", 10, 10);
    assert_int_equal(rc, -EIO);
    assert_int_equal(io_error(rc), SHOAL_EIO);
    size_t len = 0;
    uint8_t *data = testing_read_file(path, &len);
    assert_non_null(data);
    assert_int_equal(len, 14); /* the first write and the torn prefix of the second */
    assert_memory_equal(data, "0123456789abcd", 14);
    free(data);

    /* keep larger than the write is clamped so the write stays incomplete. */
    io_faults_reset_counts(&f);
    io_faults_tear_write(&f, 1, 100);
    assert_int_equal(io->write(io, fd, "xyz", 3), -EIO);
    io->close(io, fd);
    testing_remove_tree(dir);
}

static void test_dir_lock(void **state)
{
    (void)state;
    const struct shoal_io *io = io_posix();
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "lock"), 0);

    int first = -1, second = -1;
    assert_int_equal(dir_lock(io, dir, &first), 0);
    assert_true(first >= 0);
    /* A second open of the same directory in the same process is refused: flock locks
     * belong to the open file description, not to the process. */
    assert_int_equal(dir_lock(io, dir, &second), SHOAL_EBUSY);
    assert_int_equal(second, -1);
    dir_unlock(io, first);
    assert_int_equal(dir_lock(io, dir, &second), 0);
    dir_unlock(io, second);
    dir_unlock(io, -1);

    /* A lock failure other than contention is an I/O error. */
    struct io_faults f;
    io_faults_init(&f, NULL);
    io_faults_fail(&f, IO_OP_LOCK, 1, ENOLCK, false);
    assert_int_equal(dir_lock(&f.io, dir, &first), SHOAL_EIO);
    char missing[4096];
    assert_int_equal(io_path_join(missing, sizeof missing, dir, "missing"), 0);
    assert_int_equal(dir_lock(io, missing, &first), SHOAL_EIO);
    testing_remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_posix_table),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_fault_fail_nth_write),
        cmocka_unit_test(test_fault_fail_nth_sync),
        cmocka_unit_test(test_fault_short_write),
        cmocka_unit_test(test_fault_tear_write),
        cmocka_unit_test(test_dir_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
