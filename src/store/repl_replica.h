/* SPDX-License-Identifier: MIT */
/* store/repl_replica.h -- the replica's libuv shell: connects to the primary, sends REPLSYNC
 * built from the local log, feeds the stream to a repl_link over a repl_wal_sink (records
 * appended to the wal and applied to the db), acknowledges durable lsns with REPLACK, and
 * reconnects after a pause when the link drops or fails. */
#ifndef TD_STORE_REPL_REPLICA_H
#define TD_STORE_REPL_REPLICA_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "store/db.h"
#include "store/wal.h"

struct repl_replica;

struct repl_replica_opts {
    struct sockaddr_storage primary;
    const char *node;   /* this node's name (copied) */
    const char *secret; /* replication secret, "" for none (copied) */
    uint64_t retry_ms;  /* pause before reconnecting; 0 = 500 */
    /* A failsafe ping from the primary: return true to confirm it (REPLFS goes back). May be
     * NULL (pings are not confirmed). */
    bool (*on_failsafe)(void *ud, uint64_t term, uint64_t round, uint64_t valid_ms);
    void *ud;
};

/* What INFO replication shows on a replica. */
struct repl_replica_info {
    bool link_up;                                  /* streaming from the primary */
    uint64_t term;                                 /* adopted from the primary */
    uint64_t applied_lsn;                          /* last record appended and applied */
    uint64_t acked_lsn;                            /* last REPLACK sent */
    uint64_t primary_last_lsn, primary_commit_lsn; /* from the last heartbeat */
    uint64_t connects, full_syncs, truncations, discarded;
    char last_error[200];
};

/* Creates a replica of the primary at opts->primary over w and db (both recovered, owned by the
 * caller, dir is w's directory, all borrowed until the close callback ran). Returns an owned
 * object; nothing happens before repl_replica_start. */
struct repl_replica *repl_replica_new(uv_loop_t *loop, struct wal *w, struct db *db,
                                      const char *dir, const struct repl_replica_opts *opts);
/* Starts connecting (and keeps reconnecting). Loop thread. */
void repl_replica_start(struct repl_replica *r);
/* The owner of w's durable callback forwards it here: acknowledges lsn to the primary. */
void repl_replica_on_durable(struct repl_replica *r, uint64_t lsn);
void repl_replica_get_info(const struct repl_replica *r, struct repl_replica_info *out);
/* Disconnects, closes every handle and frees r, then calls cb (may be NULL) on the loop. */
void repl_replica_close(struct repl_replica *r, void (*cb)(void *ud), void *ud);

#endif
