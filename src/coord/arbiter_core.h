/* SPDX-License-Identifier: MIT */
/* coord/arbiter_core.h -- the built-in coordinator's state machine: the data model of
 * coord/dcs.h with no I/O and no clock reads (every call that depends on time takes now_ms).
 *
 * Model: a flat space of byte-string keys; one global revision bumped by every write (a
 * transaction's writes share one revision; the deletions caused by one lease expiring or being
 * revoked share one revision); each key carries the revision that last set it (mod_rev) and an
 * optional lease. Leases have ids that are never 0 and never reused (the next id is part of the
 * saved state), a TTL in ms and an expiry instant; when a lease expires (arbiter_core_expire) or
 * is revoked, the keys attached to it are deleted. A lease whose instant has passed counts as
 * expired even before arbiter_core_expire collects it.
 *
 * Durability: arbiter_core_save() encodes the whole state (versioned, CRC32C-protected);
 * arbiter_core_load() restores it and gives every lease a full TTL from the load instant, so a
 * restart never makes a lease expire early (dcs.h guarantee 2); revisions and lease ids continue
 * from the saved values (guarantee 3).
 *
 * Return codes: 0 on success; DCS_ECOMPARE / DCS_ENOLEASE (coord/dcs.h) for the outcomes a client
 * reasons about; -EINVAL for a malformed request (empty key, zero TTL, duplicate key in one
 * transaction) and TD_ETOO_BIG when a limit would be exceeded. A failed call changes nothing. */
#ifndef TD_COORD_ARBITER_CORE_H
#define TD_COORD_ARBITER_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "coord/dcs.h"

struct arbiter_limits {
    size_t max_keys;
    size_t max_key_bytes;
    size_t max_value_bytes;
    size_t max_leases;
    size_t max_txn_ops; /* compares, and writes, per transaction */
    uint64_t max_ttl_ms;
};

/* 10000 keys, keys up to 1 KiB, values up to 64 KiB, 10000 leases, 64 operations per
 * transaction, TTL up to one day. */
void arbiter_limits_defaults(struct arbiter_limits *lim);

/* Called for every key a successful write changed (put or deleted), with the revision of the
 * change; key is borrowed for the call. The hook must not call back into the core. */
typedef void (*arbiter_core_change_fn)(void *ud, struct slice key, uint64_t rev);

struct arbiter_core;

/* Returns an empty core (revision 0, no keys, no leases); lim NULL means the defaults (copied). */
struct arbiter_core *arbiter_core_new(const struct arbiter_limits *lim);
/* Frees the core; NULL is a no-op. */
void arbiter_core_free(struct arbiter_core *c);
/* Installs the change hook (NULL to remove). */
void arbiter_core_set_hook(struct arbiter_core *c, arbiter_core_change_fn fn, void *ud);

/* Current revision: that of the last write (0 before any). */
uint64_t arbiter_core_rev(const struct arbiter_core *c);
size_t arbiter_core_nkeys(const struct arbiter_core *c);
size_t arbiter_core_nleases(const struct arbiter_core *c);

/* New lease of ttl_ms (1..max_ttl_ms) expiring at now_ms + ttl_ms; its id in *lease. Returns 0,
 * -EINVAL (ttl out of range) or TD_ETOO_BIG (too many leases). Does not bump the revision. */
int arbiter_core_grant(struct arbiter_core *c, uint64_t now_ms, uint64_t ttl_ms, uint64_t *lease);
/* Restarts the lease's TTL from now_ms; *ttl_ms gets it. DCS_ENOLEASE when unknown or expired. */
int arbiter_core_keepalive(struct arbiter_core *c, uint64_t now_ms, uint64_t lease,
                           uint64_t *ttl_ms);
/* Drops the lease and deletes its keys (one revision for all of them, none when it had none).
 * DCS_ENOLEASE when unknown or already expired. */
int arbiter_core_revoke(struct arbiter_core *c, uint64_t now_ms, uint64_t lease);
/* Transaction: if every compare holds (key's mod_rev == rev, 0 = absent), applies every write
 * at one new revision (*rev gets it; when no write changes anything, the current revision).
 * Returns 0, DCS_ECOMPARE (*rev = current revision), DCS_ENOLEASE (a put names a lease that is
 * unknown or expired), -EINVAL or TD_ETOO_BIG. Checks everything before writing anything. */
int arbiter_core_txn(struct arbiter_core *c, uint64_t now_ms, const struct dcs_cmp *cmp,
                     size_t ncmp, const struct dcs_put *put, size_t nput, uint64_t *rev);

/* Collects every lease whose expiry instant is <= now_ms, deleting its keys. Returns how many
 * leases expired; fn (may be NULL) is told each one's id and how many keys went with it. */
typedef void (*arbiter_core_expired_fn)(void *ud, uint64_t lease, size_t nkeys);
size_t arbiter_core_expire(struct arbiter_core *c, uint64_t now_ms, arbiter_core_expired_fn fn,
                           void *ud);
/* The earliest lease expiry instant, or UINT64_MAX when there is no lease. */
uint64_t arbiter_core_next_expiry(const struct arbiter_core *c);

/* Keys under prefix (byte-wise prefix; empty: all), in key order: returns how many and sets
 * *first to the index of the first, for arbiter_core_at(). */
size_t arbiter_core_range(const struct arbiter_core *c, struct slice prefix, size_t *first);
/* The key at index i (< arbiter_core_nkeys). Slices borrow the core until its next write. */
void arbiter_core_at(const struct arbiter_core *c, size_t i, struct dcs_kv *out);
/* Looks key up; true and *out filled when present (slices as for arbiter_core_at). */
bool arbiter_core_get(const struct arbiter_core *c, struct slice key, struct dcs_kv *out);
/* The remaining TTL of a live lease at now_ms, or DCS_ENOLEASE. */
int arbiter_core_lease_ttl(const struct arbiter_core *c, uint64_t now_ms, uint64_t lease,
                           uint64_t *remaining_ms);

/* Appends the encoded state to out. */
void arbiter_core_save(const struct arbiter_core *c, struct buf *out);
/* Replaces c's state with the one encoded in p[0..n): every lease expires at now_ms + its TTL.
 * Returns 0, or TD_ECORRUPT (bad magic, version, CRC, lengths or invariants) leaving c
 * unchanged. */
int arbiter_core_load(struct arbiter_core *c, const void *p, size_t n, uint64_t now_ms);

#endif
