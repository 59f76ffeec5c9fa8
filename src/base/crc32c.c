/* SPDX-License-Identifier: MIT */
/* base/crc32c.c -- CRC-32C, reflected polynomial 0x82F63B78.
 * The portable path is slicing-by-8: eight 256-entry tables, table[k][b] being the CRC of byte b
 * followed by k zero bytes, so eight input bytes are folded per step with eight lookups. The
 * tables are built once (pthread_once) on first use. On x86-64 CPUs with SSE4.2 the crc32
 * instruction computes the same function 8 bytes per instruction; the choice is made once at
 * first use from the CPU's feature bits. */
#include "base/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static bool use_hw;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_tables(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = table[0][b];
        for (int k = 1; k < 8; k++) {
            c = table[0][c & 0xff] ^ (c >> 8);
            table[k][b] = c;
        }
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

/* Runs on the raw (inverted) register value. */
static uint32_t sw_update(uint32_t c, const unsigned char *p, size_t n)
{
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
            table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
            table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        n--;
    }
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t hw_update(uint32_t c, const unsigned char *p,
                                                            size_t n)
{
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8(c, *p++);
        n--;
    }
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n > 0) {
        c = _mm_crc32_u8(c, *p++);
        n--;
    }
    return c;
}
#endif

uint32_t crc32c_extend_sw(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&init_once, init_tables);
    if (n == 0)
        return crc;
    return ~sw_update(~crc, p, n);
}

uint32_t crc32c_extend(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&init_once, init_tables);
    if (n == 0)
        return crc;
#if defined(__x86_64__)
    if (use_hw)
        return ~hw_update(~crc, p, n);
#endif
    return ~sw_update(~crc, p, n);
}

uint32_t crc32c(const void *p, size_t n)
{
    return crc32c_extend(0, p, n);
}

bool crc32c_is_hw(void)
{
    pthread_once(&init_once, init_tables);
    return use_hw;
}
