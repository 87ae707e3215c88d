/*
 * test_crc32c.c -- CRC-32C: known vectors, hardware against portable, composition, mask.
 *
 * The vectors are those of RFC 3720 (iSCSI), appendix B.4, plus the customary check value
 * of "123456789". Random buffers come from a fixed-seed generator so a failure reproduces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "durability/crc32c.h"

/* A small deterministic generator (xorshift64*): the same buffers on every run. */
static uint64_t test_random_state = 0x9E3779B97F4A7C15ull;

static uint64_t test_random(void)
{
    test_random_state ^= test_random_state >> 12;
    test_random_state ^= test_random_state << 25;
    test_random_state ^= test_random_state >> 27;
    return test_random_state * 2685821657736338717ull;
}

static void test_rfc3720_vectors(void **state)
{
    (void)state;
    uint8_t buf[32];

    memset(buf, 0, sizeof buf);
    assert_int_equal(crc32c(buf, sizeof buf), 0x8A9136AAu);
    assert_int_equal(crc32c_extend_portable(0, buf, sizeof buf), 0x8A9136AAu);

    memset(buf, 0xff, sizeof buf);
    assert_int_equal(crc32c(buf, sizeof buf), 0x62A8AB43u);
    assert_int_equal(crc32c_extend_portable(0, buf, sizeof buf), 0x62A8AB43u);

    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(crc32c(buf, sizeof buf), 0x46DD794Eu);
    assert_int_equal(crc32c_extend_portable(0, buf, sizeof buf), 0x46DD794Eu);

    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(crc32c(buf, sizeof buf), 0x113FDB5Cu);
    assert_int_equal(crc32c_extend_portable(0, buf, sizeof buf), 0x113FDB5Cu);

    /* An iSCSI SCSI Read (10) command PDU, the last vector of RFC 3720 B.4. */
    static const uint8_t iscsi_read[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    assert_int_equal(crc32c(iscsi_read, sizeof iscsi_read), 0xD9963A56u);
    assert_int_equal(crc32c_extend_portable(0, iscsi_read, sizeof iscsi_read), 0xD9963A56u);

    assert_int_equal(crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c(NULL, 0), 0u);
}

static void test_hardware_matches_portable(void **state)
{
    (void)state;
    uint8_t buf[300 + 8];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)test_random();

    for (size_t start = 0; start < 8; start++) {
        for (size_t len = 0; len <= 300; len++) {
            uint32_t portable = crc32c_extend_portable(0, buf + start, len);
            uint32_t hardware = crc32c_extend_hardware(0, buf + start, len);
            uint32_t chosen = crc32c(buf + start, len);
            assert_int_equal(portable, hardware);
            assert_int_equal(portable, chosen);
            /* A non-zero starting value must also agree (the running state differs). */
            assert_int_equal(crc32c_extend_portable(0x12345678u, buf + start, len),
                             crc32c_extend_hardware(0x12345678u, buf + start, len));
        }
    }
    /* Report which path ran, so a log shows whether the hardware was actually compared. */
    print_message("crc32c hardware path available: %s\n",
                  crc32c_hardware_available() ? "yes" : "no");
}

static void test_extend_composes(void **state)
{
    (void)state;
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)test_random();
    uint32_t whole = crc32c(buf, sizeof buf);
    for (size_t split = 0; split <= sizeof buf; split += 37) {
        uint32_t first = crc32c(buf, split);
        assert_int_equal(crc32c_extend(first, buf + split, sizeof buf - split), whole);
        assert_int_equal(crc32c_extend_portable(crc32c_extend_portable(0, buf, split), buf + split,
                                                sizeof buf - split),
                         whole);
    }
    /* A single changed bit changes the checksum. */
    buf[500] ^= 0x10;
    assert_int_not_equal(crc32c(buf, sizeof buf), whole);
}

static void test_mask_round_trip(void **state)
{
    (void)state;
    uint32_t samples[] = {0u, 1u, 0x80000000u, 0xffffffffu, 0xE3069283u, CRC32C_MASK_DELTA};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        assert_int_equal(crc32c_unmask(crc32c_mask(samples[i])), samples[i]);
        /* The masked form differs from the raw one, which is the point of masking. */
        assert_int_not_equal(crc32c_mask(samples[i]), samples[i]);
    }
    for (int i = 0; i < 10000; i++) {
        uint32_t v = (uint32_t)test_random();
        assert_int_equal(crc32c_unmask(crc32c_mask(v)), v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3720_vectors),
        cmocka_unit_test(test_hardware_matches_portable),
        cmocka_unit_test(test_extend_composes),
        cmocka_unit_test(test_mask_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
