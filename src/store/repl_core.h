/* SPDX-License-Identifier: MIT */
/* store/repl_core.h -- the decisions of replication, pure (no I/O, no clock, no logging):
 * where a (re)joining replica's log meets the primary's, up to which lsn writes may be
 * acknowledged in sync mode, and what a node does when it meets another term. The libuv
 * shells (repl_primary.c, repl_replica.c) feed these functions and carry out their answers.
 * docs/replication.md explains the rules. */
#ifndef TD_STORE_REPL_CORE_H
#define TD_STORE_REPL_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/replmsg.h"

/* Term of the record at lsn, for base_lsn <= lsn <= last_lsn of the view (at base_lsn: the
 * snapshot's term; lsn 0 has term 0). Returns 0 and sets *term, or a negative code. */
typedef int (*repl_term_at_fn)(void *ud, uint64_t lsn, uint64_t *term);

/* The primary's log as the matcher sees it. Terms never decrease along the log. */
struct repl_log_view {
    uint64_t term;     /* the primary's current term */
    uint64_t base_lsn; /* records <= base_lsn exist only in the snapshot */
    uint64_t last_lsn; /* last record in the log (>= base_lsn) */
    repl_term_at_fn term_at;
    void *ud;
    /* Term boundaries kept across compaction (store/termhist.h): when has_hist, term_at also
     * answers for hist_lsn <= lsn < base_lsn (hist_lsn <= base_lsn), so a common prefix older
     * than the snapshot can still be proven (and sent with FULL). false: today's view. */
    bool has_hist;
    uint64_t hist_lsn;
};

enum repl_match_kind {
    REPL_MATCH_CONTINUE = 0, /* stream records lsn+1... */
    REPL_MATCH_TRUNCATE,     /* the replica discards records > lsn, then stream lsn+1... */
    REPL_MATCH_FULL,         /* send the snapshot at base_lsn (lsn), then stream lsn+1... */
    REPL_MATCH_REFUSE,       /* the replica's term is higher than the primary's */
};

struct repl_match {
    enum repl_match_kind kind;
    uint64_t lsn;
    const char *cause; /* static text saying why (for logs and INFO) */
    /* FULL only: whether the longest common prefix of the two logs was proven, and where it
     * ends (<= the replica's last lsn). The replica's records after it diverged: it audits
     * them before installing the snapshot. common == the replica's last lsn: nothing
     * diverged (a lagging or fresh replica). */
    bool proven;
    uint64_t common;
};

/* Decides how a replica that sent hello h joins the primary whose log is v. The result
 * always leaves the replica with a prefix of the primary's log: CONTINUE/TRUNCATE keep the
 * longest common prefix the hello can prove, FULL when that prefix is older than base_lsn
 * (or than the replica's own snapshot) or cannot be proven; a FULL says whether the prefix
 * was proven and where it ends. Returns 0, or the term_at callback's negative code. */
int repl_core_match(const struct repl_log_view *v, const struct replmsg_hello *h,
                    struct repl_match *out);

/* What a replica audits before a FULL replaces its log, whose snapshot is at snap_lsn and last
 * record at last_lsn, given the answer's common prefix. */
struct repl_full_audit {
    bool keep_snapshot;   /* common < snap_lsn: the snapshot is the audit of common+1..snap_lsn */
    uint64_t folded;      /* snap_lsn - common when it is kept, else 0 */
    bool cut;             /* records after cut_after are in the log: audit them and cut */
    uint64_t cut_after;   /* max(common, snap_lsn) */
    uint64_t cut_records; /* last_lsn - cut_after when cut, else 0 */
};

/* Plans the audit before a full resync. proven false (no common prefix came with FULL): nothing
 * can be told apart, nothing is planned. A proven common at last_lsn (a lagging or fresh
 * replica) plans nothing either. Returns 0, or -ERANGE when common > last_lsn (the shell fails
 * the link; repl_link refuses such an answer before). Pure. */
int repl_core_full_audit(bool proven, uint64_t common, uint64_t snap_lsn, uint64_t last_lsn,
                         struct repl_full_audit *out);

/* The first lsn in [lo, hi] whose term (read with term_at; terms never decrease along the
 * log) is at least t, by bisection; hi when no lsn below hi has it. Returns 0 or term_at's
 * negative code. */
int repl_core_first_lsn_from_term(repl_term_at_fn term_at, void *ud, uint64_t lo, uint64_t hi,
                                  uint64_t t, uint64_t *out);
/* Fills h->terms/nterms with the term history of a log whose records base_lsn..last_lsn have
 * terms given by term_at (never decreasing): the newest REPLMSG_MAX_TERMS terms, each with the
 * first lsn carrying it (base_lsn, or 1, for the oldest one when the log starts inside it).
 * Term-0 records are not listed. Also sets last_lsn, last_term and base_lsn. O(terms * log n)
 * term_at calls. Returns 0 or term_at's negative code. */
int repl_core_term_history(repl_term_at_fn term_at, void *ud, uint64_t base_lsn, uint64_t last_lsn,
                           struct replmsg_hello *h);

/* One replica as the sync-commit rule sees it. */
struct repl_replica_ack {
    uint64_t acked_lsn; /* highest lsn the replica reported durable */
    bool in_sync;       /* streaming live (the shell's judgement) */
};

struct repl_commit_in {
    unsigned required;      /* --sync-replicas N; 0 = asynchronous */
    bool strict;            /* --sync-strict */
    uint64_t local_lsn;     /* durable on the primary itself */
    uint64_t prev_commit;   /* the commit lsn computed last time (never goes back) */
    bool unsynced_recorded; /* "no replica is in sync" is recorded (and said loudly) */
    size_t nreplicas;
    const struct repl_replica_ack *replicas;
};

struct repl_commit {
    uint64_t commit_lsn;  /* writes with lsn <= commit_lsn may be acknowledged */
    unsigned in_sync;     /* replicas in sync */
    bool degraded;        /* fewer than required in sync (sync mode only) */
    bool blocked;         /* degraded and strict: writes wait (the shell errors on timeout) */
    bool record_unsynced; /* record "no replica in sync" before acknowledging more */
    bool clear_unsynced;  /* replicas hold every acknowledged write again: clear the record */
};

/* Computes the sync-commit lsn and the degraded-mode actions from in. Pure; never fails. */
void repl_core_commit(const struct repl_commit_in *in, struct repl_commit *out);

enum repl_term_action {
    REPL_TERM_OK = 0,    /* same term: go on */
    REPL_TERM_ADOPT,     /* a replica moves to the higher term new_term */
    REPL_TERM_REJECT,    /* a stream from a lower term: refuse it, disconnect */
    REPL_TERM_STEP_DOWN, /* a primary saw a higher term: stop accepting writes at once */
};

struct repl_term_verdict {
    enum repl_term_action action;
    uint64_t new_term; /* the term to hold afterwards */
    char cause[160];   /* "" for OK */
};

/* A replica receives a stream (answer, heartbeat, records) from a primary in stream_term. */
void repl_core_stream_term(uint64_t my_term, uint64_t stream_term, struct repl_term_verdict *out);
/* A node learns of term seen from source (a replica's hello, a peer, the coordinator; a
 * short static name, may be NULL). A primary steps down on a higher term; a replica adopts. */
void repl_core_observe_term(bool is_primary, uint64_t my_term, uint64_t seen, const char *source,
                            struct repl_term_verdict *out);

#endif
