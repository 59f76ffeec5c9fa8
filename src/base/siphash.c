/* SPDX-License-Identifier: MIT */
/* base/siphash.c -- SipHash-c-d written from the paper's description: four 64-bit state words
 * initialised from the key and four constants, c ARX rounds per 8-byte little-endian message
 * word, the length in the top byte of the last word, then d rounds and a xor-fold. */
#include "base/siphash.h"

#include "base/endian.h"

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const unsigned char *p)
{
    return le_get64((const char *)p);
}

#define SIP_ROUND(v0, v1, v2, v3)                                                                  \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

/* The c and d round counts are compile-time constants in both callers, so the loops unroll. */
static inline uint64_t siphash_cd(const uint8_t key[16], const void *data, size_t len, int c, int d)
{
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    const unsigned char *p = data;
    size_t words = len / 8;
    for (size_t i = 0; i < words; i++, p += 8) {
        uint64_t m = load_le64(p);
        v3 ^= m;
        for (int r = 0; r < c; r++)
            SIP_ROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    switch (len & 7) {
    case 7:
        last |= (uint64_t)p[6] << 48;
        /* fall through */
    case 6:
        last |= (uint64_t)p[5] << 40;
        /* fall through */
    case 5:
        last |= (uint64_t)p[4] << 32;
        /* fall through */
    case 4:
        last |= (uint64_t)p[3] << 24;
        /* fall through */
    case 3:
        last |= (uint64_t)p[2] << 16;
        /* fall through */
    case 2:
        last |= (uint64_t)p[1] << 8;
        /* fall through */
    case 1:
        last |= (uint64_t)p[0];
        break;
    default:
        break;
    }
    v3 ^= last;
    for (int r = 0; r < c; r++)
        SIP_ROUND(v0, v1, v2, v3);
    v0 ^= last;
    v2 ^= 0xff;
    for (int r = 0; r < d; r++)
        SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t siphash13(const uint8_t key[16], const void *p, size_t len)
{
    return siphash_cd(key, p, len, 1, 3);
}

uint64_t siphash24(const uint8_t key[16], const void *p, size_t len)
{
    return siphash_cd(key, p, len, 2, 4);
}
