/* SPDX-License-Identifier: MIT */
/* store/watch.h -- the WATCH table: which sessions watch which keys, so that a change to a key
 * marks every transaction that watched it as dirty (its EXEC then fails with a null array).
 *
 * The table maps key bytes (SipHash with a per-process secret seed, chained buckets that double
 * when full) to the watchers of that key. A watcher is embedded in its owner (the session) and
 * keeps links to the keys it watches, so unwatching costs O(its keys); touching a key costs
 * O(its watchers). Nothing scans the whole table except watch_touch_all (FLUSHALL), which is
 * bounded by the number of watched keys, not by the dataset. Loop thread only. */
#ifndef TD_STORE_WATCH_H
#define TD_STORE_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct watch;
struct watch_link;

/* One client's watch state. Zero-initialise it; watch_clear() releases what it holds. */
struct watcher {
    struct watch *table;       /* the table its keys are in (NULL: watches nothing) */
    bool dirty;                /* a watched key changed since it was watched */
    struct watch_link **links; /* one per watched key */
    size_t nlinks, cap;
};

/* Creates an empty table hashing keys with seed (16 secret bytes, copied). */
struct watch *watch_new(const uint8_t seed[16]);
/* Frees the table; every watcher must have been cleared before (asserted). NULL is a no-op. */
void watch_free(struct watch *t);

/* Makes w watch key (bytes copied). Watching a key twice is the same as once. A watcher watches
 * keys of one table only (asserted). */
void watch_add(struct watch *t, struct watcher *w, struct slice key);
/* Stops w watching anything and resets its dirty flag; frees key entries nobody watches any
 * more. A watcher that watches nothing is a no-op (t may then be NULL). */
void watch_clear(struct watcher *w);
/* Marks every watcher of key dirty. */
void watch_touch(struct watch *t, struct slice key);
/* Marks every watcher in the table dirty (FLUSHALL). */
void watch_touch_all(struct watch *t);
/* Marks the watchers of every watched key for which pred(ud, key) is true (pred must not change
 * the table). Costs O(watched keys). */
void watch_touch_if(struct watch *t, bool (*pred)(void *ud, struct slice key), void *ud);

/* The i-th key w watches (i < w->nlinks); borrowed until w is cleared. */
struct slice watch_key_at(const struct watcher *w, size_t i);

/* Number of distinct keys watched by at least one watcher (0 means touching is a no-op). */
size_t watch_keys(const struct watch *t);
/* Number of buckets (for tests of growth). */
size_t watch_buckets(const struct watch *t);

#endif
