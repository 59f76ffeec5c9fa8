/* SPDX-License-Identifier: MIT */
/* net/deadline.c -- lazily re-armed timeouts (see deadline.h). */
#include "net/deadline.h"

void deadline_init(uv_loop_t *loop, struct deadline *d, uv_timer_cb cb, void *data)
{
    uv_timer_init(loop, &d->timer);
    d->timer.data = data;
    d->at = 0;
    d->cb = cb;
}

void deadline_set(struct deadline *d, uint64_t ms)
{
    uint64_t now = uv_now(d->timer.loop);
    d->at = now + ms;
    if (!uv_is_active((uv_handle_t *)&d->timer) || uv_timer_get_due_in(&d->timer) > ms)
        uv_timer_start(&d->timer, d->cb, ms, 0);
}

void deadline_clear(struct deadline *d)
{
    d->at = 0;
}

bool deadline_expired(struct deadline *d)
{
    if (d->at == 0)
        return false;
    uint64_t now = uv_now(d->timer.loop);
    if (now < d->at) {
        uv_timer_start(&d->timer, d->cb, d->at - now, 0);
        return false;
    }
    d->at = 0;
    return true;
}
