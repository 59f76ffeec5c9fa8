/* SPDX-License-Identifier: MIT */
/* store/repl_primary.h -- the primary's libuv shell: serves replica connections handed over by
 * the server (a REPLSYNC arrives on the normal port; the server passes the socket's fd and the
 * bytes it already read), answers through repl_session, sends the snapshot in bounded pieces so
 * clients are never stalled, streams written records, heartbeats, and keeps every replica's
 * acknowledged lsn and in-sync state for sync mode, WAIT and INFO. */
#ifndef TD_STORE_REPL_PRIMARY_H
#define TD_STORE_REPL_PRIMARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"
#include "store/repl_core.h"
#include "store/wal.h"

struct repl_primary;

/* A replica told us of a higher term: stop accepting writes at once (cause for the log). */
typedef void (*repl_primary_step_down_fn)(void *ud, uint64_t term, const char *cause);

struct repl_primary_opts {
    const char *dir;                        /* the wal's directory (snapshots), copied */
    const char *secret;                     /* "" for none, copied */
    uint64_t term;                          /* the primary's term */
    uint64_t heartbeat_ms;                  /* 0 = 100 */
    uint64_t max_lag_ms;                    /* in-sync probe; 0 = 1000 */
    repl_primary_step_down_fn on_step_down; /* may be NULL */
    /* A replica acknowledged, joined, left, or changed in-sync state (sync mode, WAIT). May be
     * NULL. */
    void (*on_change)(void *ud);
    /* A replica confirmed failsafe round of term (REPLFS). May be NULL. */
    void (*on_failsafe_ack)(void *ud, const char *node, uint64_t term, uint64_t round);
    void *ud;
};

/* Creates the shell over w (borrowed until the close callback). Starts its heartbeat timer. */
struct repl_primary *repl_primary_new(uv_loop_t *loop, struct wal *w,
                                      const struct repl_primary_opts *opts);
/* Takes over a connected socket fd (owned from now on, closed on any failure) whose first
 * bytes in[0..n) hold a REPLSYNC command (and maybe more). Returns 0 or a negative code. */
int repl_primary_attach(struct repl_primary *p, int fd, const char *in, size_t n);
/* The log has written more records: stream them now (call after each wal commit). */
void repl_primary_notify(struct repl_primary *p);
/* Replicas whose acknowledged (durable) lsn is >= lsn: WAIT. */
unsigned repl_primary_count_acked(const struct repl_primary *p, uint64_t lsn);
/* Connected replicas (any state). */
unsigned repl_primary_count(const struct repl_primary *p);
/* The sync-commit point for in (its replicas fields are filled here from the connections). */
void repl_primary_commit(const struct repl_primary *p, struct repl_commit_in *in,
                         struct repl_commit *out);
/* Appends Redis-style INFO replication lines for the replicas ("connected_slaves:N",
 * "slaveI:ip=...,port=...,state=...,offset=...,lag=..."). */
void repl_primary_info(const struct repl_primary *p, uint64_t now_ms, struct buf *out);
/* Sends a failsafe ping to each streaming replica named in names (the HA agent). */
void repl_primary_failsafe_ping(struct repl_primary *p, const char *const *names, size_t n,
                                uint64_t term, uint64_t round, uint64_t valid_ms);
/* One connected replica, for the HA agent. */
struct repl_primary_replica {
    const char *node; /* borrowed until the next call into p */
    bool streaming;   /* past the snapshot and catch-up */
    bool in_sync;
    uint64_t acked_lsn;
};
/* Fills up to max entries; returns the number of connected replicas. */
unsigned repl_primary_replicas(const struct repl_primary *p, struct repl_primary_replica *out,
                               unsigned max);
/* Snapshots sent so far (full resyncs), for INFO and tests. */
uint64_t repl_primary_full_syncs(const struct repl_primary *p);
/* Closes every connection and handle, frees p, then calls cb (may be NULL). */
void repl_primary_close(struct repl_primary *p, void (*cb)(void *ud), void *ud);

#endif
