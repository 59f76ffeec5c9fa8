/* SPDX-License-Identifier: MIT */
/* store/repl_link.h -- the replica's side of a replication link as a pure state machine: it
 * is fed the bytes a primary sends (the REPLSYNC answer, then frames), checks them against
 * the rules of docs/replication.md (terms, lsn continuity, snapshot framing) and tells the
 * shell what to do through an ops table. No I/O, no clock: repl_replica.c owns the socket and
 * the log. */
#ifndef TD_STORE_REPL_LINK_H
#define TD_STORE_REPL_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/replmsg.h"

/* What the shell does for the link. Each returns 0 or a negative code, which fails the link
 * (the code is returned by repl_link_feed). All are called synchronously from
 * repl_link_feed; pointers borrow the fed bytes for the call only. */
struct repl_link_ops {
    /* The primary's term is higher than ours: persist it before anything else is applied. */
    int (*adopt_term)(void *ud, uint64_t term, const char *cause);
    /* Discard every record after lsn (audited by the log). */
    int (*truncate_after)(void *ud, uint64_t lsn);
    /* A full resync starts: a snapshot at lsn follows in chunks. */
    int (*snapshot_begin)(void *ud, uint64_t lsn, uint64_t term);
    int (*snapshot_chunk)(void *ud, const char *p, size_t n);
    /* The snapshot is complete (its size checked): install it. */
    int (*snapshot_end)(void *ud, uint64_t lsn, uint64_t term);
    /* Append and apply the frame's records (f->first_lsn is the next lsn). */
    int (*records)(void *ud, const struct replmsg_frame *f);
    /* A heartbeat: the primary's commit lsn and last lsn (for lag). May be NULL. */
    void (*heartbeat)(void *ud, uint64_t commit_lsn, uint64_t primary_last_lsn);
    /* A failsafe ping of the primary (coord/agent.h). May be NULL (ignored). */
    void (*failsafe)(void *ud, uint64_t term, uint64_t round, uint64_t valid_ms);
    /* A full resync's snapshot arrived complete and is about to be installed: audit our
     * records after common (proven: the +FULL line carried it) before they are replaced.
     * May be NULL. */
    int (*discard_before_full)(void *ud, bool proven, uint64_t common);
};

enum repl_link_state {
    REPL_LINK_WAIT_ANSWER = 0,
    REPL_LINK_SNAPSHOT,
    REPL_LINK_STREAMING,
    REPL_LINK_FAILED,
};

struct repl_link {
    enum repl_link_state state;
    enum replmsg_answer_kind answer; /* valid once past WAIT_ANSWER */
    uint64_t term;                   /* our term (adopted from the primary when higher) */
    uint64_t last_lsn;               /* our last lsn, as sent in REPLSYNC */
    uint64_t next_lsn;               /* the lsn the next record must carry */
    uint64_t snap_lsn, snap_term, snap_bytes;
    bool full_proven;     /* FULL carried the common prefix full_common */
    uint64_t full_common;
    uint64_t records, frames, heartbeats; /* counters for INFO */
    const struct repl_link_ops *ops;
    void *ud;
    char err[200]; /* why the link failed; "" otherwise */
};

/* Initialises l for a REPLSYNC sent with (last_lsn, term). ops and ud are borrowed for l's
 * lifetime. Never fails. */
void repl_link_init(struct repl_link *l, uint64_t term, uint64_t last_lsn,
                    const struct repl_link_ops *ops, void *ud);
/* Consumes complete messages from p[0..n). Returns the bytes consumed (keep the rest and feed
 * it again with more), or a negative code once the link failed (l->err says why; the shell
 * closes the connection): TD_ENOTPRIMARY (refused), TD_ESTALE_TERM (lower term),
 * TD_EPROTO_RESP / TD_ECORRUPT (bad bytes or sequence), or an op's code. Failure is sticky. */
ssize_t repl_link_feed(struct repl_link *l, const char *p, size_t n);

#endif
