/* SPDX-License-Identifier: MIT */
/* net/deadline.h -- a timeout that hot paths can move for the cost of a store. The timer is
 * armed at most once; when it fires before the (moved) deadline it re-arms for the rest, and a
 * cleared deadline just lets it lapse. Per request this replaces a timer stop + start (two heap
 * operations) with one assignment. */
#ifndef TD_NET_DEADLINE_H
#define TD_NET_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

struct deadline {
    uv_timer_t timer; /* the owner closes it (uv_close) with its other handles */
    uint64_t at;      /* loop time in ms; 0 = no deadline */
    uv_timer_cb cb;
};

/* Initialises the timer; data is stored in timer.data for the callback. */
void deadline_init(uv_loop_t *loop, struct deadline *d, uv_timer_cb cb, void *data);
/* Sets the deadline to now + ms (loop time). */
void deadline_set(struct deadline *d, uint64_t ms);
/* No deadline: the callback will not run for the current one. */
void deadline_clear(struct deadline *d);
/* To be called first in the callback: true when the deadline really passed (then it is
 * cleared); false when it moved or was cleared (re-armed as needed). */
bool deadline_expired(struct deadline *d);

#endif
