/* SPDX-License-Identifier: MIT */
/* lb/health.c -- rise/fall with passive failure.
 *
 *   UP   --fall consecutive failed checks-->   DOWN
 *   UP   --one passive failure (suspect)-->    DOWN   (re-checked at the fast interval)
 *   DOWN --rise consecutive good checks-->     UP
 *
 * A good check resets the failure streak and vice versa, so a flapping server never reaches
 * either threshold by accident. */
#include "lb/health.h"

void health_init(struct health *h, unsigned rise, unsigned fall, uint64_t now_ms)
{
    h->state = HEALTH_UP;
    h->rise = rise ? rise : 1;
    h->fall = fall ? fall : 1;
    h->ok_streak = 0;
    h->fail_streak = 0;
    h->suspect = false;
    h->changed_ms = now_ms;
}

enum health_change health_on_check(struct health *h, bool ok, uint64_t now_ms)
{
    if (ok) {
        h->fail_streak = 0;
        h->ok_streak++;
        if (h->state == HEALTH_DOWN && h->ok_streak >= h->rise) {
            h->state = HEALTH_UP;
            h->suspect = false;
            h->changed_ms = now_ms;
            return HEALTH_WENT_UP;
        }
        if (h->state == HEALTH_UP)
            h->suspect = false;
        return HEALTH_SAME;
    }
    h->ok_streak = 0;
    h->fail_streak++;
    if (h->state == HEALTH_UP && h->fail_streak >= h->fall) {
        h->state = HEALTH_DOWN;
        h->changed_ms = now_ms;
        return HEALTH_WENT_DOWN;
    }
    return HEALTH_SAME;
}

enum health_change health_on_passive_failure(struct health *h, uint64_t now_ms)
{
    h->ok_streak = 0;
    h->suspect = true;
    if (h->fail_streak < h->fall)
        h->fail_streak = h->fall;
    if (h->state == HEALTH_UP) {
        h->state = HEALTH_DOWN;
        h->changed_ms = now_ms;
        return HEALTH_WENT_DOWN;
    }
    return HEALTH_SAME;
}

uint64_t health_next_delay(const struct health *h, uint64_t inter_ms, uint64_t fast_ms)
{
    bool in_doubt = h->suspect || (h->state == HEALTH_DOWN && h->ok_streak > 0) ||
                    (h->state == HEALTH_UP && h->fail_streak > 0);
    if (in_doubt && fast_ms < inter_ms)
        return fast_ms;
    return inter_ms;
}

bool health_is_stalled(uint32_t inflight, uint64_t progress_ms, uint64_t now_ms,
                       uint64_t stall_ms)
{
    return stall_ms > 0 && inflight > 0 && now_ms > progress_ms && now_ms - progress_ms >= stall_ms;
}

const char *health_state_name(enum health_state s)
{
    return s == HEALTH_UP ? "up" : "down";
}
