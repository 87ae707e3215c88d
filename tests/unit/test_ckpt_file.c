/*
 * test_ckpt_file.c -- checkpoint files: round trips, damage and truncation detection,
 * injected failures, directory helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "durability/ckpt_file.h"
#include "durability/encoding.h"
#include "durability/io.h"
#include "durability_testing.h"
#include "shoal.h"

/* Test content: compressible text-like runs mixed with random bytes. */
static uint8_t *make_content(size_t len, uint64_t seed, bool random_only)
{
    uint8_t *p = malloc(len + 1);
    assert_non_null(p);
    uint64_t state = seed | 1;
    for (size_t i = 0; i < len; i++) {
        if (random_only || (i / 4096) % 3 == 2)
            p[i] = (uint8_t)testing_random(&state);
        else
            p[i] = (uint8_t)("key-000123:value-abcdefgh;"[i % 26] + (i / 8192) % 3);
    }
    return p;
}

/* Writes content through a writer in chunks of varying size. */
static void write_file(const char *path, const uint8_t *content, size_t len, uint32_t shard,
                       uint64_t seq)
{
    struct ckpt_writer *w = NULL;
    assert_int_equal(ckpt_writer_open(NULL, path, shard, seq, &w), 0);
    size_t pos = 0, step = 1;
    while (pos < len) {
        size_t n = step < len - pos ? step : len - pos;
        assert_int_equal(ckpt_writer_append(w, content + pos, n), 0);
        pos += n;
        step = step * 3 + 7; /* 1, 10, 37, ... up to blocks and beyond */
        if (step > 600000)
            step = 5;
    }
    assert_int_equal(ckpt_writer_finish(w), 0);
}

/* Reads a whole file back. Returns 0 and the bytes in *out, or the reader's error. */
static int read_file(const char *path, uint8_t **out, size_t *len, uint32_t *shard, uint64_t *seq,
                     uint64_t *error_offset, size_t *blocks)
{
    struct ckpt_reader *r = NULL;
    *out = NULL;
    *len = 0;
    *blocks = 0;
    int rc = ckpt_reader_open(NULL, path, &r, shard, seq);
    if (rc != 0) {
        *error_offset = 0;
        return rc;
    }
    size_t cap = 0;
    for (;;) {
        const void *data;
        size_t n;
        rc = ckpt_reader_next(r, &data, &n);
        if (rc <= 0)
            break;
        if (*len + n > cap) {
            cap = (*len + n) * 2;
            *out = realloc(*out, cap);
            assert_non_null(*out);
        }
        memcpy(*out + *len, data, n);
        *len += n;
        (*blocks)++;
    }
    *error_offset = ckpt_reader_offset(r);
    if (rc < 0) {
        /* The error is sticky. */
        const void *data;
        size_t n;
        assert_int_equal(ckpt_reader_next(r, &data, &n), rc);
    }
    ckpt_reader_close(r);
    return rc;
}

static void test_round_trips(void **state)
{
    (void)state;
    char dir[4096], path[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "ckpt"), 0);
    assert_int_equal(ckpt_dir_create(NULL, dir, 42), 0);
    assert_int_equal(ckpt_path(path, sizeof path, dir, 42, 3), 0);
    assert_non_null(strstr(path, "/ckpt/00000000000000000042/shard-3.ckpt"));

    const size_t sizes[] = {0, 1, 100, CKPT_BLOCK_BYTES, CKPT_BLOCK_BYTES + 1, 1000000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int random_only = 0; random_only < 2; random_only++) {
            uint8_t *content = make_content(sizes[i], i + 1, random_only);
            write_file(path, content, sizes[i], 3, 42);
            uint8_t *back;
            size_t len = 0, blocks = 0;
            uint32_t shard = 0;
            uint64_t seq = 0, offset;
            assert_int_equal(read_file(path, &back, &len, &shard, &seq, &offset, &blocks), 0);
            assert_int_equal(shard, 3);
            assert_int_equal(seq, 42);
            assert_int_equal(len, sizes[i]);
            if (len > 0)
                assert_memory_equal(back, content, len);
            assert_int_equal(blocks, (sizes[i] + CKPT_BLOCK_BYTES - 1) / CKPT_BLOCK_BYTES);
            if (!random_only && sizes[i] == 1000000) {
                /* Compression did something. */
                long long file_size = testing_file_size(path);
                assert_true(file_size > 0 && (size_t)file_size < sizes[i] / 2);
            }
            free(back);
            free(content);
        }
    }
    testing_remove_tree(dir);
}

/* Start offsets of the structures of a file image: header, blocks, trailer. */
static size_t structure_starts(const uint8_t *image, size_t size, uint64_t *starts, size_t cap)
{
    size_t n = 0;
    starts[n++] = 0;
    uint64_t off = CKPT_HEADER_SIZE;
    while (off < size && n < cap) {
        starts[n++] = off;
        if (encoding_get_u32(image + off) == 3)
            break;
        off += CKPT_BLOCK_HEADER_SIZE + encoding_get_u32(image + off + 8);
    }
    return n;
}

static void check_damage(const char *path, uint8_t *image, size_t size, const uint8_t *content,
                         size_t content_len, size_t off)
{
    uint64_t starts[64];
    size_t count = structure_starts(image, size, starts, 64);
    uint64_t start = 0;
    for (size_t i = 0; i < count; i++)
        if (starts[i] <= off)
            start = starts[i];

    image[off] ^= (uint8_t)(1u << (off % 8));
    assert_int_equal(testing_write_file(path, image, size), 0);
    image[off] ^= (uint8_t)(1u << (off % 8));

    uint8_t *back;
    size_t len = 0, blocks = 0;
    uint64_t error_offset;
    int rc = read_file(path, &back, &len, NULL, NULL, &error_offset, &blocks);
    assert_int_equal(rc, SHOAL_ECORRUPT);
    assert_int_equal(error_offset, start);
    /* What came back before the damage is right. */
    assert_true(len <= content_len);
    if (len > 0)
        assert_memory_equal(back, content, len);
    free(back);
}

static void test_bit_flips(void **state)
{
    (void)state;
    char dir[4096], path[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "ckpt"), 0);
    assert_int_equal(io_path_join(path, sizeof path, dir, "small.ckpt"), 0);

    /* A small file: every byte. */
    uint8_t *content = make_content(2000, 7, false);
    write_file(path, content, 2000, 0, 9);
    size_t size = 0;
    uint8_t *image = testing_read_file(path, &size);
    assert_non_null(image);
    for (size_t off = 0; off < size; off++)
        check_damage(path, image, size, content, 2000, off);
    free(image);
    free(content);

    /* A multi-block file: sampled bytes, including every header and the trailer. */
    size_t big = 5 * CKPT_BLOCK_BYTES + 999;
    content = make_content(big, 11, false);
    write_file(path, content, big, 1, 10);
    image = testing_read_file(path, &size);
    assert_non_null(image);
    uint64_t starts[64];
    size_t count = structure_starts(image, size, starts, 64);
    assert_int_equal(count, 1 + 6 + 1);
    for (size_t i = 0; i < count; i++)
        for (size_t d = 0; d < CKPT_BLOCK_HEADER_SIZE && starts[i] + d < size; d++)
            check_damage(path, image, size, content, big, starts[i] + d);
    for (size_t off = 0; off < size; off += 1237)
        check_damage(path, image, size, content, big, off);
    free(image);
    free(content);
    testing_remove_tree(dir);
}

/* Truncates the file image at cut and checks that the reader reports damage where the
 * cut structure starts, after returning only correct bytes. */
static void check_truncation(const char *path, const uint8_t *image, size_t size,
                             const uint8_t *content, size_t cut)
{
    uint64_t starts[64];
    size_t count = structure_starts(image, size, starts, 64);
    assert_int_equal(testing_write_file(path, image, cut), 0);
    uint8_t *back;
    size_t len = 0, blocks = 0;
    uint64_t error_offset;
    int rc = read_file(path, &back, &len, NULL, NULL, &error_offset, &blocks);
    /* Never a clean end: the trailer is what vouches for completeness. */
    assert_int_equal(rc, SHOAL_ECORRUPT);
    if (cut >= CKPT_HEADER_SIZE) {
        uint64_t start = 0;
        for (size_t i = 1; i < count; i++)
            if (starts[i] <= cut)
                start = starts[i];
        /* A cut exactly between structures reports the missing one where it should
         * start. */
        assert_int_equal(error_offset, start);
    }
    if (len > 0)
        assert_memory_equal(back, content, len);
    free(back);
}

static void test_truncations(void **state)
{
    (void)state;
    char dir[4096], path[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "ckpt"), 0);
    assert_int_equal(io_path_join(path, sizeof path, dir, "cut.ckpt"), 0);

    /* A small file: every length. */
    uint8_t *content = make_content(3000, 5, false);
    write_file(path, content, 3000, 2, 77);
    size_t size = 0;
    uint8_t *image = testing_read_file(path, &size);
    assert_non_null(image);
    for (size_t cut = 0; cut < size; cut++)
        check_truncation(path, image, size, content, cut);
    free(image);
    free(content);

    /* Two blocks and a trailer: every length near a structure boundary, sampled elsewhere. */
    size_t content_len = CKPT_BLOCK_BYTES + 3000;
    content = make_content(content_len, 5, true);
    write_file(path, content, content_len, 2, 77);
    image = testing_read_file(path, &size);
    assert_non_null(image);
    uint64_t starts[8];
    size_t count = structure_starts(image, size, starts, 8);
    assert_int_equal(count, 4);
    for (size_t i = 1; i < count; i++)
        for (size_t cut = starts[i] - 30; cut < starts[i] + 30 && cut < size; cut++)
            check_truncation(path, image, size, content, cut);
    for (size_t cut = size - 30; cut < size; cut++)
        check_truncation(path, image, size, content, cut);
    for (size_t cut = 0; cut < size; cut += 997)
        check_truncation(path, image, size, content, cut);

    /* Trailing garbage after the trailer is damage too. */
    uint8_t *longer = malloc(size + 4);
    memcpy(longer, image, size);
    memset(longer + size, 0, 4);
    assert_int_equal(testing_write_file(path, longer, size + 4), 0);
    uint8_t *back;
    size_t len = 0, blocks = 0;
    uint64_t error_offset;
    assert_int_equal(read_file(path, &back, &len, NULL, NULL, &error_offset, &blocks),
                     SHOAL_ECORRUPT);
    assert_int_equal(error_offset, starts[count - 1]);
    free(back);
    free(longer);
    free(image);
    free(content);

    assert_int_equal(io_path_join(path, sizeof path, dir, "missing.ckpt"), 0);
    struct ckpt_reader *r = NULL;
    assert_int_equal(ckpt_reader_open(NULL, path, &r, NULL, NULL), SHOAL_ENOTFOUND);
    assert_null(r);
    testing_remove_tree(dir);
}

static void test_injected_failures(void **state)
{
    (void)state;
    char dir[4096], path[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "ckpt"), 0);
    assert_int_equal(io_path_join(path, sizeof path, dir, "fail.ckpt"), 0);
    uint8_t *content = make_content(3 * CKPT_BLOCK_BYTES, 3, true);

    /* A full disk during the second block: the writer is failed for good. */
    struct io_faults faults;
    io_faults_init(&faults, NULL);
    io_faults_fail(&faults, IO_OP_WRITE, 3, ENOSPC, false);
    struct ckpt_writer *w = NULL;
    assert_int_equal(ckpt_writer_open(&faults.io, path, 0, 1, &w), 0);
    assert_int_equal(ckpt_writer_append(w, content, 3 * CKPT_BLOCK_BYTES), SHOAL_ENOSPC);
    assert_int_equal(ckpt_writer_append(w, content, 10), SHOAL_ENOSPC);
    assert_int_equal(ckpt_writer_finish(w), SHOAL_ENOSPC);
    assert_int_equal(testing_file_size(path), -1); /* removed */

    /* A failed fsync at finish. */
    io_faults_init(&faults, NULL);
    io_faults_fail(&faults, IO_OP_SYNC, 1, EIO, false);
    assert_int_equal(ckpt_writer_open(&faults.io, path, 0, 1, &w), 0);
    assert_int_equal(ckpt_writer_append(w, content, 1000), 0);
    assert_int_equal(ckpt_writer_finish(w), SHOAL_EFSYNC);
    assert_int_equal(testing_file_size(path), -1);

    /* Abort removes the partial file. */
    assert_int_equal(ckpt_writer_open(NULL, path, 0, 1, &w), 0);
    assert_int_equal(ckpt_writer_append(w, content, 1000), 0);
    ckpt_writer_abort(w);
    assert_int_equal(testing_file_size(path), -1);
    ckpt_writer_abort(NULL);
    ckpt_reader_close(NULL);

    /* A failed read is an I/O error, not damage. */
    write_file(path, content, 1000, 0, 1);
    io_faults_init(&faults, NULL);
    io_faults_fail(&faults, IO_OP_READ, 2, EIO, false);
    struct ckpt_reader *r = NULL;
    assert_int_equal(ckpt_reader_open(&faults.io, path, &r, NULL, NULL), 0);
    const void *data;
    size_t len = 0;
    assert_int_equal(ckpt_reader_next(r, &data, &len), SHOAL_EIO);
    ckpt_reader_close(r);
    free(content);
    testing_remove_tree(dir);
}

static void test_directory_helpers(void **state)
{
    (void)state;
    char dir[4096], path[4096];
    assert_int_equal(testing_make_dir(dir, sizeof dir, "ckpt"), 0);
    uint64_t *seqs = NULL;
    size_t count = 9;
    assert_int_equal(ckpt_list(NULL, dir, &seqs, &count), 0);
    assert_int_equal(count, 0);
    assert_null(seqs);

    const uint64_t made[] = {300, 7, 12000000000ull};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(ckpt_dir_create(NULL, dir, made[i]), 0);
        for (uint32_t shard = 0; shard < 2; shard++) {
            assert_int_equal(ckpt_path(path, sizeof path, dir, made[i], shard), 0);
            write_file(path, (const uint8_t *)"abc", 3, shard, made[i]);
        }
    }
    assert_int_equal(ckpt_dir_create(NULL, dir, 7), 0); /* exists: fine */
    assert_int_equal(ckpt_list(NULL, dir, &seqs, &count), 0);
    assert_int_equal(count, 3);
    assert_int_equal(seqs[0], 7);
    assert_int_equal(seqs[1], 300);
    assert_int_equal(seqs[2], 12000000000ull);
    free(seqs);

    assert_int_equal(ckpt_remove(NULL, dir, 300), 0);
    assert_int_equal(ckpt_remove(NULL, dir, 300), 0); /* already gone */
    assert_int_equal(ckpt_list(NULL, dir, &seqs, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(seqs[0], 7);
    assert_int_equal(seqs[1], 12000000000ull);
    free(seqs);
    assert_int_equal(ckpt_path(path, sizeof path, dir, 300, 0), 0);
    assert_int_equal(testing_file_size(path), -1);
    testing_remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),       cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_truncations),       cmocka_unit_test(test_injected_failures),
        cmocka_unit_test(test_directory_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
