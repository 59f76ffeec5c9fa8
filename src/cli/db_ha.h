/* SPDX-License-Identifier: MIT */
/* cli/db_ha.h -- the HA agent inside `tandem db --coordinator URL`: joins the agent's loop
 * (coord/agent_loop) to the node's replication role (store/repl_node). The agent decides; this
 * file only translates: PROMOTE -> repl_node_promote, DEMOTE / FOLLOW -> repl_node_follow,
 * SYNC -> repl_node_set_sync, PROVISION -> runs --provision-cmd; the node's write gate asks the
 * agent's lease on every write. */
#ifndef TD_CLI_DB_HA_H
#define TD_CLI_DB_HA_H

#include <stdint.h>

#include <uv.h>

#include "store/db.h"
#include "store/repl_node.h"

struct db_ha;

/* Starts the agent for node n (borrowed until the stop callback). cfg's coordinator, cluster,
 * priority, lease and provisioning settings are used; name and addr are the node's. Returns
 * NULL with a reason in err. */
struct db_ha *db_ha_start(uv_loop_t *loop, struct repl_node *n, const struct db_config *cfg,
                          const char *name, const char *addr, char *err, size_t errlen);

/* Hands over (a primary demotes and releases its lease so a replica takes over at once),
 * closes everything, frees h, then calls done. */
void db_ha_stop(struct db_ha *h, void (*done)(void *ud), void *ud);

#endif
