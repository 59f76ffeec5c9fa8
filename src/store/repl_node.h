/* SPDX-License-Identifier: MIT */
/* store/repl_node.h -- one `tandem db` node's replication role while it serves: primary (serves
 * replicas through store/repl_primary) or replica (follows a primary through
 * store/repl_replica), the switch between the two (REPLICAOF, promotion, stepping down), the
 * term, and what the write path asks of it:
 *
 *  - may this node take a write now? (a replica, a primary that saw a higher term, a primary
 *    fenced by its owner: no -- the server answers the error this returns);
 *  - when may a write's reply leave? The node sits between the server and the persistence layer
 *    (it is the server's persist_ops, delegating to store/wal_persist): a reply is released at
 *    the local release point (the log's durability rule) in asynchronous mode, at the sync-commit
 *    point (store/repl_core.h) with --sync-replicas N, and never while writes are refused;
 *  - INFO replication, ROLE, WAIT, REPLICAOF and FAILOVER (through cmd_repl_ops, store/cmd.h).
 *
 * Terms: a promotion moves to a term above every term this node has seen and writes one empty
 * record in it, so the new term is durable and the first thing replicas receive. A primary that
 * learns of a higher term (a replica's hello or ack) refuses writes at once and logs it.
 *
 * The owner may drive roles itself (the HA agent, cli/cmd_db.c): repl_node_promote,
 * repl_node_follow, repl_node_set_fence. Loop thread only. */
#ifndef TD_STORE_REPL_NODE_H
#define TD_STORE_REPL_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "store/cmd.h"
#include "store/db.h"
#include "store/persist.h"
#include "store/wal_persist.h"

struct repl_node;
struct server;

struct repl_node_config {
    const char *dir;            /* the log's directory (copied) */
    const char *name;           /* this node's name, sent to primaries (copied) */
    const char *secret;         /* replication secret, "" for none (copied) */
    unsigned sync_replicas;     /* 0: asynchronous */
    bool sync_strict;           /* refuse writes while fewer than sync_replicas are in sync */
    uint64_t heartbeat_ms;      /* primary -> replica heartbeats; 0 = 100 */
    uint64_t max_lag_ms;        /* a replica not caught up within this is out of sync; 0 = 1000 */
    uint64_t retry_ms;          /* replica: pause before reconnecting; 0 = 500 */
    struct sockaddr_storage own; /* this node's listen address (REPLICAOF to itself is refused) */
};

/* Role changes and term news, for the owner (the HA agent). May be NULL. */
typedef void (*repl_node_term_fn)(void *ud, uint64_t term);

/* Creates the node over wp and db (both borrowed for its life). It starts as nothing: call
 * repl_node_promote or repl_node_follow (or REPLICAOF) before serving. */
struct repl_node *repl_node_new(uv_loop_t *loop, struct wal_persist *wp, struct db *db,
                                const struct repl_node_config *cfg);

/* Connects the node to the server (after server_new, before server_start): installs itself as
 * the server's persistence layer and replication hooks. */
void repl_node_attach_server(struct repl_node *n, struct server *srv);

/* Failsafe (coord/agent.h): pings travel on the replication links. ping: a replica's side, a
 * ping from its primary (return true to confirm); ack: a primary's side, a replica confirmed. */
typedef bool (*repl_node_fs_ping_fn)(void *ud, uint64_t term, uint64_t round, uint64_t valid_ms);
typedef void (*repl_node_fs_ack_fn)(void *ud, const char *node, uint64_t term, uint64_t round);
void repl_node_on_failsafe(struct repl_node *n, repl_node_fs_ping_fn ping,
                           repl_node_fs_ack_fn ack, void *ud);
/* Primary: pings the named replicas. */
void repl_node_failsafe_ping(struct repl_node *n, const char *const *names, size_t count,
                             uint64_t term, uint64_t round, uint64_t valid_ms);

/* Called with every higher term the node learns of (from a replica or a primary). */
void repl_node_on_term(struct repl_node *n, repl_node_term_fn fn, void *ud);

/* Becomes primary in term (0: one above every term seen) and writes an empty record in it.
 * Replies held for writes of an earlier role are dropped first (their clients are closed:
 * the outcome is unknown to them). Returns 0 or a negative code (log I/O). */
int repl_node_promote(struct repl_node *n, uint64_t term);

/* A node restarted as primary without a coordinator. Becomes primary in the log's last term
 * (1 for an empty log), writing nothing, when this node led that term (DIR/primary-term says
 * so): two nodes must not both be primary in one term. When the log's last term was another
 * primary's (this node was its replica), resuming in it would be exactly that, so the node
 * is promoted instead (repl_node_promote: a new term and its empty record). */
void repl_node_resume_primary(struct repl_node *n);

/* Changes the node name sent to primaries (before the first follow). */
void repl_node_set_name(struct repl_node *n, const char *name);

/* Becomes a replica of addr (NULL: of nobody -- read-only, waiting for a primary). Clients
 * whose write replies are still held are closed. */
void repl_node_follow(struct repl_node *n, const struct sockaddr_storage *addr);

/* An owner's veto on writes (the HA agent's lease): gate(ud) returns NULL when writes may go
 * on, else the error line to answer ("READONLY ..."). Asked on every write and before any
 * reply of a write is released. */
void repl_node_set_gate(struct repl_node *n, const char *(*gate)(void *ud), void *ud);
/* The gate's answer may have changed (a renewal confirmed): release what is due. */
void repl_node_gate_changed(struct repl_node *n);

/* The HA agent's sync rule (replaces --sync-replicas' own): acknowledge a write once every
 * replica in names holds it; hold: acknowledge nothing new; degraded: say so in INFO. */
void repl_node_set_sync(struct repl_node *n, const char *const *names, size_t count,
                        bool degraded, bool hold);

/* Connected replicas (primary), for the HA agent. Returns how many were written. */
struct repl_node_replica {
    char name[257];
    bool streaming, in_sync;
    uint64_t acked_lsn;
};
size_t repl_node_replicas(const struct repl_node *n, struct repl_node_replica *out, size_t max);

/* True when the node is primary, has not seen a higher term and is not fenced. */
bool repl_node_writable(const struct repl_node *n);

/* The highest term this node knows. */
uint64_t repl_node_term(const struct repl_node *n);

/* Position and replicas, for the HA agent and `tandem status`. */
struct repl_node_status {
    bool primary;
    uint64_t last_lsn, last_term, released_lsn;
    unsigned replicas;
};
void repl_node_status(const struct repl_node *n, struct repl_node_status *out);

/* Closes the replication connections and handles, frees n, then calls cb (may be NULL). */
void repl_node_close(struct repl_node *n, void (*cb)(void *ud), void *ud);

/* The persist_ops the node installs on the server (exposed for tests). */
extern const struct persist_ops repl_node_persist_ops;

#endif
