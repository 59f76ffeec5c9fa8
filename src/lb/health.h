/* SPDX-License-Identifier: MIT */
/* lb/health.h -- a server's operational health as a pure state machine (no I/O, no clock).
 * Active check results and passive failures (live traffic that failed) go in; transitions come
 * out, each with its cause, for the caller to log and act on. */
#ifndef TD_LB_HEALTH_H
#define TD_LB_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

enum health_state {
    HEALTH_DOWN = 0,
    HEALTH_UP,
};

enum health_change {
    HEALTH_SAME = 0,
    HEALTH_WENT_UP,
    HEALTH_WENT_DOWN,
};

struct health {
    enum health_state state;
    unsigned rise;        /* consecutive good checks to go up */
    unsigned fall;        /* consecutive bad checks to go down */
    unsigned ok_streak;
    unsigned fail_streak;
    bool suspect;         /* a passive failure took it down; re-check fast */
    uint64_t changed_ms;  /* when state last changed */
};

/* Starts UP (traffic flows until checks or live traffic say otherwise), as HAProxy does. */
void health_init(struct health *h, unsigned rise, unsigned fall, uint64_t now_ms);
/* Records one active check result. */
enum health_change health_on_check(struct health *h, bool ok, uint64_t now_ms);
/* Live traffic failed (connect refused, reset, timeout): down at once, no waiting for checks. */
enum health_change health_on_passive_failure(struct health *h, uint64_t now_ms);
/* Delay before the next active check: fast_ms while the state is in doubt (suspect, or a streak
 * toward a transition is under way), inter_ms otherwise. */
uint64_t health_next_delay(const struct health *h, uint64_t inter_ms, uint64_t fast_ms);
const char *health_state_name(enum health_state s);
/* A server is stalled when requests wait on it and it has sent nothing for stall_ms since the
 * later of its last progress and its first waiting request (progress_ms). stall_ms 0: never. */
bool health_is_stalled(uint32_t inflight, uint64_t progress_ms, uint64_t now_ms,
                       uint64_t stall_ms);

#endif
