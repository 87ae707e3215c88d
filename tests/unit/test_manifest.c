/*
 * test_manifest.c -- MANIFEST: round trip, atomic replacement under injected failures,
 * damage and truncation at every byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "durability/io.h"
#include "durability/manifest.h"
#include "durability_testing.h"
#include "shoal.h"

static void assert_manifest(const char *dir, const char *expected)
{
    void *body = NULL;
    size_t len = 0;
    assert_int_equal(manifest_read(NULL, dir, &body, &len), 0);
    assert_non_null(body);
    assert_int_equal(len, strlen(expected));
    assert_memory_equal(body, expected, len);
    free(body);
}

static void test_round_trip_and_replace(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "manifest"), 0);
    void *body = NULL;
    size_t len = 7;
    assert_int_equal(manifest_read(NULL, dir, &body, &len), SHOAL_ENOTFOUND);
    assert_null(body);
    assert_int_equal(len, 0);

    assert_int_equal(manifest_write(NULL, dir, "first catalog", 13), 0);
    assert_manifest(dir, "first catalog");
    assert_int_equal(manifest_write(NULL, dir, "second, longer catalog", 22), 0);
    assert_manifest(dir, "second, longer catalog");

    /* An empty body is a body. */
    assert_int_equal(manifest_write(NULL, dir, NULL, 0), 0);
    assert_int_equal(manifest_read(NULL, dir, &body, &len), 0);
    assert_non_null(body);
    assert_int_equal(len, 0);
    free(body);

    /* No temporary file is left behind. */
    char temp[4096];
    assert_int_equal(io_path_join(temp, sizeof temp, dir, "MANIFEST.tmp"), 0);
    assert_int_equal(testing_file_size(temp), -1);
    assert_int_equal(manifest_write(NULL, dir, NULL, 5), SHOAL_EINVAL);
    testing_remove_tree(dir);
}

/* Every step of a write failing leaves the old MANIFEST readable. */
static void test_failures_keep_old_manifest(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "manifest"), 0);
    assert_int_equal(manifest_write(NULL, dir, "old", 3), 0);

    struct {
        enum io_op op;
        int error;
        int expected;
    } cases[] = {
        {IO_OP_OPEN, EIO, SHOAL_EIO},
        {IO_OP_WRITE, ENOSPC, SHOAL_ENOSPC},
        {IO_OP_SYNC, EIO, SHOAL_EFSYNC},
        /* A crash between writing the temporary file and renaming it. */
        {IO_OP_RENAME, EIO, SHOAL_EIO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct io_faults faults;
        io_faults_init(&faults, NULL);
        io_faults_fail(&faults, cases[i].op, 1, cases[i].error, false);
        assert_int_equal(manifest_write(&faults.io, dir, "new", 3), cases[i].expected);
        assert_int_equal(atomic_load(&faults.injected), 1);
        assert_manifest(dir, "old");
    }

    /* A torn temporary file (the crash came during its write) is ignored by readers and
     * replaced by the next write. */
    char temp[4096];
    assert_int_equal(io_path_join(temp, sizeof temp, dir, "MANIFEST.tmp"), 0);
    assert_int_equal(testing_write_file(temp, "SHOALMAN garbage", 16), 0);
    assert_manifest(dir, "old");
    assert_int_equal(manifest_write(NULL, dir, "newer", 5), 0);
    assert_manifest(dir, "newer");

    /* A failure after the rename (the directory fsync) is reported: the new MANIFEST is in
     * place but may not survive a crash. */
    struct io_faults faults;
    io_faults_init(&faults, NULL);
    io_faults_fail(&faults, IO_OP_DIR_SYNC, 1, EIO, false);
    assert_int_equal(manifest_write(&faults.io, dir, "newest", 6), SHOAL_EFSYNC);
    assert_manifest(dir, "newest");
    testing_remove_tree(dir);
}

static void test_damage_everywhere(void **state)
{
    (void)state;
    char dir[4096], path[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "manifest"), 0);
    assert_int_equal(io_path_join(path, sizeof path, dir, "MANIFEST"), 0);
    const char *catalog = "namespaces: a b c; checkpoint 1234";
    assert_int_equal(manifest_write(NULL, dir, catalog, strlen(catalog)), 0);
    size_t size = 0;
    uint8_t *image = testing_read_file(path, &size);
    assert_non_null(image);
    assert_int_equal(size, MANIFEST_HEADER_SIZE + strlen(catalog));

    void *body;
    size_t len = 0;
    for (size_t off = 0; off < size; off++) {
        for (int bit = 0; bit < 8; bit += 3) {
            image[off] ^= (uint8_t)(1u << bit);
            assert_int_equal(testing_write_file(path, image, size), 0);
            image[off] ^= (uint8_t)(1u << bit);
            int rc = manifest_read(NULL, dir, &body, &len);
            /* A flipped version field is caught by the header checksum first. */
            assert_int_equal(rc, SHOAL_ECORRUPT);
            assert_null(body);
        }
    }
    for (size_t cut = 0; cut < size; cut++) {
        assert_int_equal(testing_write_file(path, image, cut), 0);
        assert_int_equal(manifest_read(NULL, dir, &body, &len), SHOAL_ECORRUPT);
    }
    /* Trailing bytes are damage too. */
    uint8_t *longer = malloc(size + 1);
    memcpy(longer, image, size);
    longer[size] = 0;
    assert_int_equal(testing_write_file(path, longer, size + 1), 0);
    assert_int_equal(manifest_read(NULL, dir, &body, &len), SHOAL_ECORRUPT);
    free(longer);
    assert_int_equal(testing_write_file(path, image, size), 0);
    assert_manifest(dir, catalog);
    free(image);
    testing_remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_replace),
        cmocka_unit_test(test_failures_keep_old_manifest),
        cmocka_unit_test(test_damage_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
