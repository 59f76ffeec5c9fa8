/* SPDX-License-Identifier: MIT */
/* store/repl_session.h -- the primary's view of one replica, pure (no I/O; time is passed
 * in): the REPLSYNC handshake (secret, terms, log matching -> the answer), REPLACK bookkeeping
 * (durable lsn, never backwards, never beyond what was sent) and the in-sync judgement that
 * sync mode counts. repl_primary.c owns the connection and feeds these. */
#ifndef TD_STORE_REPL_SESSION_H
#define TD_STORE_REPL_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/replmsg.h"
#include "store/repl_core.h"

enum repl_session_state {
    REPL_SESSION_HANDSHAKE = 0,
    REPL_SESSION_SNAPSHOT, /* a full resync is being sent */
    REPL_SESSION_STREAMING,
    REPL_SESSION_CLOSED,
};

struct repl_session {
    enum repl_session_state state;
    char node[REPLMSG_MAX_NAME + 1];
    uint64_t acked_lsn; /* durable on the replica */
    uint64_t sent_lsn;  /* last lsn handed to the connection */
    bool in_sync;
    uint64_t target_lsn; /* in-sync probe: must be acked by target_since_ms + max_lag_ms */
    uint64_t target_since_ms;
    uint64_t last_ack_ms;
    struct repl_match match; /* the handshake's decision */
};

/* Initialises s for a new connection. Never fails. */
void repl_session_init(struct repl_session *s);

/* Handles a parsed REPLSYNC h against the primary's secret (empty: none) and log v. Fills *ans
 * (send it, then what it announces) and *tv (the term rule for the primary: STEP_DOWN when the
 * replica's term is higher -- stop accepting writes at once). Returns 0 (answer is not
 * REFUSED, state moves to SNAPSHOT or STREAMING with sent_lsn set to the decision's lsn) or
 * a negative code with a REFUSED answer whose text borrows static storage; s is CLOSED then. */
int repl_session_hello(struct repl_session *s, const struct replmsg_hello *h, struct slice secret,
                       const struct repl_log_view *v, struct replmsg_answer *ans,
                       struct repl_term_verdict *tv);
/* The snapshot announced by FULL has been sent completely. */
void repl_session_snapshot_sent(struct repl_session *s);
/* Records that records up to lsn were handed to the connection. */
void repl_session_sent(struct repl_session *s, uint64_t lsn);
/* Handles REPLACK (lsn, term) at now_ms for a primary in primary_term. Returns 0, or
 * TD_ECORRUPT when lsn is beyond what was sent or behind a previous ack (the shell closes the
 * link). *tv says STEP_DOWN when term is higher than primary_term. */
int repl_session_ack(struct repl_session *s, uint64_t lsn, uint64_t term, uint64_t primary_term,
                     uint64_t now_ms, struct repl_term_verdict *tv);
/* Re-judges in_sync at now_ms, given the primary's last lsn: a streaming replica is in sync
 * while it acknowledges every lsn within max_lag_ms of the moment it was the primary's last,
 * and becomes in sync again the same way. Returns true when in_sync changed. */
bool repl_session_tick(struct repl_session *s, uint64_t primary_last_lsn, uint64_t now_ms,
                       uint64_t max_lag_ms);

#endif
