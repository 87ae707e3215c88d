/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum of every Shoal on-disk structure.
 *
 * Purpose. Log records, segment headers, the MANIFEST and checkpoint blocks all carry a
 * CRC-32C (polynomial 0x1EDC6F41, reflected, initial and final XOR 0xFFFFFFFF, as in
 * iSCSI, ext4 and RocksDB). It detects every burst error of up to 32 bits and, on x86-64,
 * costs about a cycle per 8 bytes through the SSE4.2 crc32 instruction.
 *
 * Stored checksums are masked. A CRC computed over bytes that themselves contain CRCs
 * (a segment holding records, a record holding an embedded log image) is weak when the
 * inner CRC is stored raw, because the CRC of "data followed by its own CRC" is a
 * constant. crc32c_mask() rotates and adds a constant before the value is stored, as
 * LevelDB and RocksDB do; readers compare crc32c_unmask(stored) with the computed value.
 *
 * Invariants:
 *   1. crc32c_extend(crc32c(a), b) == crc32c(a || b): checksums can be computed over
 *      several pieces (a record header, then its payload) without copying them together.
 *   2. The hardware and portable paths return the same value for every input, whatever
 *      its length and alignment.
 *   3. crc32c_unmask(crc32c_mask(x)) == x for every x.
 *
 * Tested by tests/unit/test_crc32c.c: the RFC 3720 test vectors, hardware against
 * portable on random buffers of every length 0..300 at every start alignment 0..7, the
 * extend property and the mask round trip.
 *
 * Thread-safety: every function may be called from any thread.
 */
#ifndef SHOAL_DURABILITY_CRC32C_H
#define SHOAL_DURABILITY_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns the CRC-32C of the bytes that produced crc followed by buf[0..len). Pass 0 as
 * crc to start. Uses the crc32 instruction when the CPU has SSE4.2 (checked once, at the
 * first call), the portable slicing-by-8 code otherwise. buf may be NULL when len is 0. */
uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len);

/* The portable slicing-by-8 path, whatever the CPU. For tests and benchmarks. */
uint32_t crc32c_extend_portable(uint32_t crc, const void *buf, size_t len);

/* The SSE4.2 path. Only valid when crc32c_hardware_available() is true; otherwise it
 * falls back to the portable path. For tests and benchmarks. */
uint32_t crc32c_extend_hardware(uint32_t crc, const void *buf, size_t len);

/* True when crc32c_extend uses the crc32 instruction. */
bool crc32c_hardware_available(void);

/* Returns the CRC-32C of buf[0..len). */
static inline uint32_t crc32c(const void *buf, size_t len)
{
    return crc32c_extend(0, buf, len);
}

/* The constant added by crc32c_mask; the value LevelDB and RocksDB use. */
#define CRC32C_MASK_DELTA 0xa282ead8u

/* Returns the form of crc to store on disk (rotated right by 15 bits, plus a constant). */
static inline uint32_t crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + CRC32C_MASK_DELTA;
}

/* Inverts crc32c_mask: returns the CRC a stored value stands for. */
static inline uint32_t crc32c_unmask(uint32_t masked)
{
    uint32_t rotated = masked - CRC32C_MASK_DELTA;
    return (rotated >> 17) | (rotated << 15);
}

#endif /* SHOAL_DURABILITY_CRC32C_H */
