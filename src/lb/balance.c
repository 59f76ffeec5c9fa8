/* SPDX-License-Identifier: MIT */
/* lb/balance.c -- server selection. Active-active spreads over every usable server
 * (least-loaded with round-robin ties by default, which also steers new requests away from a
 * server whose requests hang); active-passive sends everything to one server and keeps the rest
 * idle, switching only when it fails (and back, with failback auto). */
#include "lb/balance.h"

void balance_init(struct balance *b, enum balance_mode mode, enum balance_algo algo,
                  enum balance_failback failback)
{
    b->mode = mode;
    b->algo = algo;
    b->failback = failback;
    b->rr_next = 0;
    b->active = -1;
}

static bool eligible(const struct balance_view *v, size_t i, uint64_t exclude)
{
    return v[i].usable && !(exclude & (UINT64_C(1) << i));
}

static int first_eligible(const struct balance_view *v, size_t n, uint64_t exclude)
{
    for (size_t i = 0; i < n; i++)
        if (eligible(v, i, exclude))
            return (int)i;
    return -1;
}

static int pick_active_active(struct balance *b, const struct balance_view *v, size_t n,
                              uint64_t exclude)
{
    int best = -1;
    for (size_t k = 0; k < n; k++) {
        size_t i = (b->rr_next + k) % n;
        if (!eligible(v, i, exclude))
            continue;
        if (b->algo == BALANCE_ROUNDROBIN) {
            best = (int)i;
            break;
        }
        if (best < 0 || v[i].load < v[best].load)
            best = (int)i;
    }
    if (best >= 0)
        b->rr_next = ((size_t)best + 1) % n;
    return best;
}

int balance_update_active(struct balance *b, const struct balance_view *v, size_t n)
{
    if (b->mode != BALANCE_ACTIVE_PASSIVE)
        return -1;
    bool keep = b->active >= 0 && (size_t)b->active < n && v[b->active].usable;
    if (keep && b->failback == BALANCE_FAILBACK_MANUAL)
        return b->active;
    b->active = first_eligible(v, n, 0);
    return b->active;
}

int balance_failback_now(struct balance *b, const struct balance_view *v, size_t n)
{
    b->active = first_eligible(v, n, 0);
    return b->active;
}

int balance_pick(struct balance *b, const struct balance_view *v, size_t n, uint64_t exclude)
{
    if (n > BALANCE_MAX_SERVERS)
        n = BALANCE_MAX_SERVERS;
    if (b->mode == BALANCE_ACTIVE_ACTIVE)
        return pick_active_active(b, v, n, exclude);
    if (b->active >= 0 && (size_t)b->active < n && eligible(v, (size_t)b->active, exclude))
        return b->active;
    /* the active server is excluded for this request (it just failed it) or gone: the next by
     * priority takes the request; the pool's active server is changed by update_active */
    return first_eligible(v, n, exclude);
}
