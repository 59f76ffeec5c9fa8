/* SPDX-License-Identifier: MIT */
/* coord/syncset.h -- sync mode's two replica sets, as a pure state machine (used by the agent).
 *
 * W, the wait set: the replicas whose durable acknowledgement every write waits for (the store
 * applies it). S, the recorded set: the replicas the coordinator's `sync` key lists as holding
 * every acknowledged write; only they, and the primary that recorded them, may be promoted.
 *
 * Invariant: W contains S and every proposal for S whose outcome is unknown. Hence:
 *   - a replica joins W first, and S only once an observation taken after the store applied W
 *     shows it holds every acknowledged write;
 *   - a replica leaves S first (a confirmed coordinator write), and W afterwards;
 *   - one proposal at a time; a confirmed one is the new S (it also voids older, unanswered
 *     ones: the write compares the key's revision).
 * N is the number wanted (--sync-replicas). With |S| < N the set is "degraded": by default writes
 * go on, acknowledged by the members of W; strict mode holds acknowledgements while |W| < N. */
#ifndef TD_COORD_SYNCSET_H
#define TD_COORD_SYNCSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coord/cluster.h"

#define SYNCSET_WHY_MAX 160

/* One replica as the primary's store sees it: lsn is durably acknowledged on our history. */
struct syncset_replica {
    const char *name;
    bool connected;
    uint64_t lsn;
};

struct syncset {
    unsigned n;
    bool strict;
    struct cluster_names wait, recorded, guard, proposal, told;
    uint64_t rev; /* revision of the sync key as last written or read */
    bool pending; /* a proposal is in flight */
    bool fresh;   /* the store was observed since W last changed */
    bool told_once, told_degraded, told_hold;
};

/* What syncset_step() decided. */
struct syncset_out {
    bool propose; /* write `proposal` as the new S (compare the key's revision s->rev) */
    struct cluster_names proposal;
    char propose_why[SYNCSET_WHY_MAX];
    bool tell; /* tell the store W and the flags below */
    bool degraded, hold;
    char tell_why[SYNCSET_WHY_MAX];
};

/* Empty sets (not primary). */
void syncset_init(struct syncset *s, unsigned n, bool strict);
/* Holding the key: S is what the coordinator records (empty in a new term), at revision rev; W
 * starts as S and the next step tells the store. */
void syncset_start(struct syncset *s, const struct cluster_names *recorded, uint64_t rev);
/* The store was observed (its report reflects every W told so far). */
void syncset_observed(struct syncset *s);
/* A READ showed our own sync key: adopt it, unless a proposal is in flight. */
void syncset_adopt(struct syncset *s, const struct cluster_names *recorded, uint64_t rev);
/* The outcome of the proposal in flight: ok (written at rev) or not (unknown or refused). */
void syncset_result(struct syncset *s, bool ok, uint64_t rev);
/* One decision round. replicas (borrowed) is the store's last report, acked_lsn the highest lsn
 * acknowledged to a client; can_write: we hold the leader key (else nothing is proposed). */
void syncset_step(struct syncset *s, const struct syncset_replica *replicas, size_t n,
                  uint64_t acked_lsn, bool can_write, struct syncset_out *out);
/* True when fewer than N replicas are recorded in sync. */
bool syncset_is_degraded(const struct syncset *s);

#endif
