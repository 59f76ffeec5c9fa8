/* SPDX-License-Identifier: MIT */
/* base/clock.h -- time sources: monotonic milliseconds for all decisions, wall clock only for
 * log timestamps and reports. */
#ifndef TD_BASE_CLOCK_H
#define TD_BASE_CLOCK_H

#include <stdint.h>

/* Milliseconds from CLOCK_MONOTONIC. */
uint64_t clock_now_ms(void);
/* Microseconds from CLOCK_MONOTONIC, for latency measurement. */
uint64_t clock_now_us(void);
/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t clock_wall_ms(void);

#endif
