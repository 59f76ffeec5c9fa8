/* SPDX-License-Identifier: MIT */
/* store/server.h -- the Redis-protocol TCP server of `tandem db`: accepts clients on a libuv
 * loop, parses pipelined commands, runs them against a db, batches replies into one write per
 * client per loop iteration, enforces the per-client limits, runs the periodic jobs (active
 * expiry, rehashing, idle timeouts), and holds write replies until the persistence layer says
 * they are durable (store/persist.h). One server per loop; loop thread only. */
#ifndef TD_STORE_SERVER_H
#define TD_STORE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "store/cmd.h"
#include "store/db.h"
#include "store/persist.h"

struct server;

/* Called when the SHUTDOWN command asks the process to stop (loop thread, from inside a read
 * callback: the callee should start server_close, not free anything). */
typedef void (*server_shutdown_cb)(void *ud);
/* Called once every handle of the server has closed; the server may then be freed. */
typedef void (*server_closed_cb)(void *ud);

/* Creates a server for db with cfg (both borrowed for the server's life). Does not listen yet. */
struct server *server_new(uv_loop_t *loop, struct db *db, const struct db_config *cfg);
/* Binds and listens on cfg->listen and starts the periodic jobs. Returns 0, or a negative libuv
 * code after writing a reason into err. */
int server_start(struct server *srv, char *err, size_t errlen);
/* The bound TCP port (useful with port 0), or 0 before server_start. */
int server_port(const struct server *srv);
/* Installs persistence (before server_start): binds ops to the server's durability callback and
 * sets the db hook. ops and ud are borrowed for the server's life. */
void server_set_persist(struct server *srv, const struct persist_ops *ops, void *ud);
/* Installs the replication hooks (store/repl_node.c) before server_start: the write gate,
 * INFO replication, ROLE, REPLICAOF, FAILOVER, WAIT and the REPLSYNC hand-over. */
void server_set_repl(struct server *srv, const struct cmd_repl_ops *ops, void *ud);
/* Replication state changed (an acknowledgement arrived): blocked WAITs are checked before the
 * loop polls again. */
void server_repl_changed(struct server *srv);
/* Closes every client whose write replies are still held (their writes will never be
 * acknowledged by this node: it stopped being the primary). why is logged. */
void server_drop_held(struct server *srv, const char *why);
/* Sets the callback for the SHUTDOWN command (NULL: SHUTDOWN closes the server itself). */
void server_on_shutdown(struct server *srv, server_shutdown_cb cb, void *ud);
/* Stops accepting, closes every client and handle; cb(ud) runs once all are closed. Safe to
 * call more than once (later calls are ignored). */
void server_close(struct server *srv, server_closed_cb cb, void *ud);
/* Frees a closed server (after the closed callback); NULL is a no-op. */
void server_free(struct server *srv);

#endif
