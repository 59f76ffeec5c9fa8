/* SPDX-License-Identifier: MIT */
/* store/repl_wal.h -- replication over a real write-ahead log and keyspace, without sockets:
 * the primary's side reads its wal into frames for a session (repl_wal_view, repl_wal_fill),
 * the replica's side implements repl_link_ops over its wal and db (struct repl_wal_sink).
 * The libuv shells move the bytes; everything here runs on the loop thread and may block on
 * local file I/O only (reading segments, writing an incoming snapshot). */
#ifndef TD_STORE_REPL_WAL_H
#define TD_STORE_REPL_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/db.h"
#include "store/repl_link.h"
#include "store/repl_session.h"
#include "store/wal.h"

/* --- primary --- */

/* Fills *v with w's log as log matching sees it, for a primary in term. The view borrows w. */
void repl_wal_view(struct wal *w, uint64_t term, struct repl_log_view *v);
/* Appends to out one W frame with the records after s->sent_lsn that w has written, about
 * max_bytes at most (at least one record), and advances s->sent_lsn. Returns the number of
 * records framed (0: nothing new), -ENOENT when they are no longer in the log (the replica
 * needs a full resync), or another negative code. */
int64_t repl_wal_fill(struct wal *w, struct repl_session *s, struct buf *out, size_t max_bytes);
/* Appends the snapshot file at path as S frames of chunk_bytes and the E frame (lsn, term from
 * its header). Returns 0 or a negative code. Blocks on reading the file: the shell calls it
 * off the loop or in pieces for large snapshots. */
int repl_wal_snapshot_frames(const char *path, size_t chunk_bytes, struct buf *out);

/* --- replica --- */

/* The replica's side: a repl_link_ops implementation (repl_wal_sink_ops, ud = the sink). */
struct repl_wal_sink {
    struct wal *w;      /* borrowed */
    struct db *db;      /* borrowed */
    const char *dir;    /* the wal's directory (borrowed): incoming snapshots and rebuilds */
    uint64_t term;      /* the term adopted from the primary */
    uint64_t discarded; /* records removed by truncations (audited in discarded-<term>.log) */
    uint64_t full_syncs, truncations;
    int snap_fd; /* the incoming snapshot file while a transfer runs, else -1 */
    char err[256];
    /* The last full resync's audit: records audited (also in discarded) and where. */
    uint64_t full_audited;
    char audit[1024];
};

extern const struct repl_link_ops repl_wal_sink_ops;

/* Initialises a sink over w and db (both already recovered), with w's directory. */
void repl_wal_sink_init(struct repl_wal_sink *k, struct wal *w, struct db *db, const char *dir);
/* Closes and removes a half-received snapshot, if any. */
void repl_wal_sink_free(struct repl_wal_sink *k);
/* Builds the REPLSYNC hello for w (term history from the log, and below its snapshot as far as
 * the kept term boundaries reach; V2 set); node and secret borrowed. */
int repl_wal_hello(struct wal *w, struct slice node, struct slice secret, struct replmsg_hello *h);

#endif
