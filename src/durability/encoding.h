/*
 * encoding.h -- fixed-width little-endian integers in on-disk structures.
 *
 * Every on-disk format of Shoal (docs/FORMAT.md) stores integers little-endian at fixed
 * offsets, so that a file written on one machine reads the same on any other. These
 * helpers go through memcpy, which compiles to a single load or store on x86-64 and keeps
 * unaligned accesses defined behaviour everywhere.
 *
 * Invariants:
 *   1. encoding_get_uN(encoding_put_uN(p, v)) == v for every v.
 *   2. The byte at the lowest address is the least significant one, on every host.
 *
 * Tested through the format round trips of test_wal.c, test_manifest.c and
 * test_ckpt_file.c, which compare decoded fields with the values written.
 */
#ifndef SHOAL_DURABILITY_ENCODING_H
#define SHOAL_DURABILITY_ENCODING_H

#include <stdint.h>
#include <string.h>

static inline void encoding_put_u16(uint8_t *p, uint16_t v)
{
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap16(v);
#endif
    memcpy(p, &v, sizeof v);
}

static inline void encoding_put_u32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, sizeof v);
}

static inline void encoding_put_u64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof v);
}

static inline uint16_t encoding_get_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap16(v);
#endif
    return v;
}

static inline uint32_t encoding_get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t encoding_get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

#endif /* SHOAL_DURABILITY_ENCODING_H */
