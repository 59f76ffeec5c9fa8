/* SPDX-License-Identifier: MIT */
/* base/endian.h -- little-endian integer encoding for on-disk formats (WAL records,
 * snapshots), independent of the host's byte order and of alignment. */
#ifndef TD_BASE_ENDIAN_H
#define TD_BASE_ENDIAN_H

#include <stdint.h>

static inline void le_put32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (8 * i));
}

static inline void le_put64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (char)(v >> (8 * i));
}

static inline uint32_t le_get32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

static inline uint64_t le_get64(const char *p)
{
    return (uint64_t)le_get32(p) | (uint64_t)le_get32(p + 4) << 32;
}

#endif
