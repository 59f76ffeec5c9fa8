/* SPDX-License-Identifier: MIT */
/* base/siphash.h -- SipHash, a keyed 64-bit hash (Aumasson & Bernstein). With a secret random
 * key an attacker cannot choose keys that collide, which keeps hash tables safe from flooding.
 * siphash13 (1 compression, 3 finalization rounds) is the fast variant used by hash tables;
 * siphash24 is the variant of the paper, kept to check the implementation against its vectors. */
#ifndef TD_BASE_SIPHASH_H
#define TD_BASE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* Hashes len bytes at p (p may be NULL when len is 0) with the 16-byte key. Pure. */
uint64_t siphash13(const uint8_t key[16], const void *p, size_t len);
uint64_t siphash24(const uint8_t key[16], const void *p, size_t len);

#endif
