/* SPDX-License-Identifier: MIT */
/* store/keyspace.h -- the in-memory dataset: keys mapped to string or hash values with an
 * optional absolute expiry time. A chained hash table with incremental rehashing, keyed with a
 * per-process secret seed (SipHash-1-3), holds one allocation per key: header, expiry, key and
 * value packed together. Small hashes are packed arrays kept in insertion order (as Redis's
 * listpack), large ones are tables of the same kind as the keyspace.
 *
 * Pure: no clock reads and no I/O. Times are wall-clock milliseconds passed by the caller
 * (expiry times are absolute Unix times, so they survive restarts and replication); now_ms 0
 * means "do not expire anything" (replay of a log, which deletes expired keys explicitly).
 * A key is expired when now_ms > its expiry, as in Redis. Not thread-safe. */
#ifndef TD_STORE_KEYSPACE_H
#define TD_STORE_KEYSPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

enum keyspace_type {
    KEYSPACE_NONE = 0,
    KEYSPACE_STRING = 1,
    KEYSPACE_HASH = 2,
};

#define KEYSPACE_NO_EXPIRE INT64_C(-1) /* no expiry time */
#define KEYSPACE_KEEP_TTL INT64_C(-2)  /* keyspace_set_str: keep the current key's expiry */

/* Small hashes switch to a table beyond these (Redis's hash-max-listpack-* defaults). */
#define KEYSPACE_HASH_PACKED_ENTRIES 128
#define KEYSPACE_HASH_PACKED_VALUE 64

struct keyspace;
struct kentry; /* one key; borrowed from the keyspace, valid until the next mutation */
struct khash;  /* a hash value; owned by its kentry */

/* Called with the key of an entry the keyspace is about to remove because it expired (lazily in
 * keyspace_find or by keyspace_expire_cycle), before the entry is freed. */
typedef void (*keyspace_expired_fn)(void *ud, struct slice key);
/* Visits one entry; must not modify the keyspace. Return non-zero to stop (foreach only). */
typedef int (*keyspace_visit_fn)(void *ud, const struct kentry *e);
/* Visits one field of a hash; must not modify it. */
typedef void (*khash_visit_fn)(void *ud, struct slice field, struct slice value);

/* Returns an empty keyspace hashing with the 16-byte secret seed (copied). */
struct keyspace *keyspace_new(const uint8_t seed[16]);
/* Frees every key and the keyspace; NULL is a no-op. */
void keyspace_free(struct keyspace *ks);
/* Sets the hook told about expired keys (NULL for none). */
void keyspace_set_expired_hook(struct keyspace *ks, keyspace_expired_fn fn, void *ud);

/* keep: expired keys are never removed (lookups return NULL for them, the active cycle does
 * nothing) -- a replica, whose keys are removed only by its primary's records. */
void keyspace_set_keep_expired(struct keyspace *ks, bool keep);

/* Looks key up. An expired key (now_ms > 0 and past its time) is removed, the hook is called,
 * and NULL is returned. Also performs one incremental rehash step. */
struct kentry *keyspace_find(struct keyspace *ks, struct slice key, int64_t now_ms);
/* True when e is logically expired at now_ms (now_ms 0: never). */
bool keyspace_is_expired(const struct kentry *e, int64_t now_ms);

enum keyspace_type kentry_type(const struct kentry *e);
/* The key bytes, borrowed from e. */
struct slice kentry_key(const struct kentry *e);
/* The string value, borrowed from e (e must be a string). */
struct slice kentry_str(const struct kentry *e);
/* Absolute expiry in ms, or KEYSPACE_NO_EXPIRE. */
int64_t kentry_expire(const struct kentry *e);
/* The hash value (e must be a hash). */
struct khash *kentry_hash(const struct kentry *e);

/* Sets key to the string val, replacing any value of any type. expire_ms is an absolute time,
 * KEYSPACE_NO_EXPIRE, or KEYSPACE_KEEP_TTL. Does not look at expiry of the old value: callers
 * that care (KEEPTTL, NX) look the key up first. Returns the entry (borrowed). */
struct kentry *keyspace_set_str(struct keyspace *ks, struct slice key, struct slice val,
                                int64_t expire_ms);
/* Appends suffix to the string at key (which must exist and be a string); grows geometrically
 * so repeated appends are amortised O(1) per byte. Returns the (possibly moved) entry. */
struct kentry *keyspace_append(struct keyspace *ks, struct slice key, struct slice suffix);
/* Sets (expire_ms >= 0) or removes (KEYSPACE_NO_EXPIRE) the expiry of an existing key.
 * Returns false when the key does not exist. */
bool keyspace_set_expire(struct keyspace *ks, struct slice key, int64_t expire_ms);
/* Creates key holding an empty hash (the key must not exist). Returns the entry. */
struct kentry *keyspace_add_hash(struct keyspace *ks, struct slice key);
/* Removes key whatever its state. Returns 1 when it existed, 0 otherwise. */
int keyspace_del(struct keyspace *ks, struct slice key);
/* Removes every key. */
void keyspace_flush(struct keyspace *ks);

/* keyspace_reserve never sizes the table for more keys than this (2^24 buckets, 128 MiB of
 * pointers): the count comes from a snapshot, i.e. from disk or a primary, so it is untrusted;
 * a larger keyspace grows by doubling as its keys actually arrive. */
#define KEYSPACE_RESERVE_MAX (UINT64_C(1) << 24)

/* Grows the key table at once to hold n keys without resizing (before a bulk load such as a
 * snapshot: no incremental rehash while loading). A hint: no-op while a resize is in progress
 * or when the table is already that large; n is capped at KEYSPACE_RESERVE_MAX. */
void keyspace_reserve(struct keyspace *ks, uint64_t n);
/* Number of keys (including expired ones not yet removed). */
uint64_t keyspace_size(const struct keyspace *ks);
/* Number of keys carrying an expiry time. */
uint64_t keyspace_expires(const struct keyspace *ks);
/* Bytes held by the dataset: entries, values and tables, as the allocator sized them. */
size_t keyspace_mem(const struct keyspace *ks);
/* Keys removed because they expired, since creation. */
uint64_t keyspace_expired_total(const struct keyspace *ks);
/* Bucket count of the main table(s), and whether a rehash is in progress. */
uint64_t keyspace_buckets(const struct keyspace *ks);
bool keyspace_is_rehashing(const struct keyspace *ks);

/* One SCAN step from cursor: visits every entry of the bucket(s) the cursor designates and
 * returns the next cursor (0 when the iteration is complete). Every key present during the
 * whole iteration is visited at least once, even across resizes; some may be visited twice. */
uint64_t keyspace_scan(struct keyspace *ks, uint64_t cursor, keyspace_visit_fn fn, void *ud);
/* Visits every entry (including expired ones); stops early when fn returns non-zero and returns
 * that value, else 0. fn must not modify the keyspace. */
int keyspace_foreach(const struct keyspace *ks, keyspace_visit_fn fn, void *ud);

/* Active expiry: sweeps up to max_steps scan steps from an internal cursor, removing expired
 * keys (the hook is called for each). Returns keys removed; *wrapped is set when the sweep
 * reached the end of the table (a full pass completed). */
uint64_t keyspace_expire_cycle(struct keyspace *ks, int64_t now_ms, uint64_t max_steps,
                               bool *wrapped);
/* Performs up to steps bucket moves of an ongoing rehash. Returns true while one remains. */
bool keyspace_rehash(struct keyspace *ks, uint64_t steps);
/* Starts a shrink when the table is mostly empty (called periodically). */
void keyspace_maybe_shrink(struct keyspace *ks);

/* --- hash values --- */

/* Number of fields. */
uint64_t khash_len(const struct khash *h);
/* Looks field up; on success *val borrows the value until the next mutation of h. */
bool khash_get(const struct keyspace *ks, const struct khash *h, struct slice field,
               struct slice *val);
/* Sets field to val. Returns 1 when the field is new, 0 when it was updated. */
int khash_set(struct keyspace *ks, struct khash *h, struct slice field, struct slice val);
/* Removes field. Returns true when it existed. The caller deletes the key of an empty hash. */
bool khash_del(struct keyspace *ks, struct khash *h, struct slice field);
/* Visits every field in order (insertion order while the hash is small). */
void khash_foreach(const struct khash *h, khash_visit_fn fn, void *ud);
/* True when the hash uses the packed representation. */
bool khash_is_packed(const struct khash *h);

/* Iterative glob match (Redis KEYS/SCAN MATCH syntax: * ? [abc] [^a-z] \x); nocase folds
 * ASCII. Runs in O(len(pattern) * len(s)) worst case, no recursion. */
bool keyspace_glob_match(struct slice pattern, struct slice s, bool nocase);

#endif
