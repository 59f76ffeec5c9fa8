/* SPDX-License-Identifier: MIT */
/* lb/balance.h -- choosing a server for a request or connection, per pool mode (pure).
 *
 * The caller keeps one balance_view per server (usable = healthy and admin-enabled; load =
 * requests or connections in flight) and asks for a pick, excluding servers already tried for
 * this request. Active-passive pools also keep an "active" server that only changes when it
 * stops being usable, or on failback. */
#ifndef TD_LB_BALANCE_H
#define TD_LB_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BALANCE_MAX_SERVERS 64

enum balance_mode {
    BALANCE_ACTIVE_ACTIVE = 0,
    BALANCE_ACTIVE_PASSIVE,
};

enum balance_algo {
    BALANCE_LEASTCONN = 0, /* fewest in flight, round-robin among ties */
    BALANCE_ROUNDROBIN,
};

enum balance_failback {
    BALANCE_FAILBACK_AUTO = 0,
    BALANCE_FAILBACK_MANUAL,
};

struct balance_view {
    bool usable;
    uint32_t load;
};

struct balance {
    enum balance_mode mode;
    enum balance_algo algo;
    enum balance_failback failback;
    size_t rr_next;
    int active; /* active-passive: index serving now, -1 when none is usable */
};

void balance_init(struct balance *b, enum balance_mode mode, enum balance_algo algo,
                  enum balance_failback failback);
/* Index of the server to use, or -1 when every usable server is excluded (bit i of exclude set
 * means server i was already tried). Servers are in priority order (index 0 first). */
int balance_pick(struct balance *b, const struct balance_view *v, size_t n, uint64_t exclude);
/* Active-passive: re-evaluates the active server after a health or admin change and returns it
 * (-1 if none). With failback auto the highest-priority usable server always wins; with manual
 * the current one keeps traffic while usable. No effect in active-active (returns -1). */
int balance_update_active(struct balance *b, const struct balance_view *v, size_t n);
/* Manual failback: hands traffic to the highest-priority usable server. Returns it or -1. */
int balance_failback_now(struct balance *b, const struct balance_view *v, size_t n);

#endif
