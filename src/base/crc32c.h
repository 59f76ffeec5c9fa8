/* SPDX-License-Identifier: MIT */
/* base/crc32c.h -- CRC-32C (Castagnoli), the checksum of WAL records and snapshots.
 * Uses the SSE4.2 crc32 instruction when the CPU has it, slicing-by-8 tables otherwise; both
 * give the same values (crc32c("123456789") == 0xE3069283). Thread-safe. */
#ifndef TD_BASE_CRC32C_H
#define TD_BASE_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Extends a finished CRC (0 to start) with n bytes at p (p may be NULL when n is 0) and returns
 * the new finished CRC, so crc32c_extend(crc32c(a), b) == crc32c(a || b). */
uint32_t crc32c_extend(uint32_t crc, const void *p, size_t n);
/* The CRC-32C of n bytes at p. */
uint32_t crc32c(const void *p, size_t n);
/* Same as crc32c_extend, always through the portable table code (tests compare both paths). */
uint32_t crc32c_extend_sw(uint32_t crc, const void *p, size_t n);
/* True when crc32c_extend uses the SSE4.2 instruction on this CPU. */
bool crc32c_is_hw(void);

#endif
