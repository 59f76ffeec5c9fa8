/* SPDX-License-Identifier: MIT */
/* coord/agent_loop.h -- the HA agent's event-loop shell: owns the pure agent (coord/agent.h) and
 * a coordinator backend (coord/dcs.h), calls agent_tick() on a timer at agent_next_deadline(),
 * submits the agent's coordinator requests and feeds their results back, observes the store on
 * a timer and after every role action, and performs the agent's actions through host callbacks
 * (the store's role, in cli/cmd_db.c). Every action but DCS is logged at NOTICE with its cause.
 *
 * Re-entrancy: actions are performed in order with no call into the agent in between; a term the
 * host reports while actions run is fed to the agent right after the batch. Loop thread only. */
#ifndef TD_COORD_AGENT_LOOP_H
#define TD_COORD_AGENT_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "coord/agent.h"
#include "coord/dcs.h"

/* What the host (the store) does for the agent. Strings are borrowed for the call. */
struct agent_host_ops {
    /* Fills obs (replica names borrowed until the next call into the host). */
    void (*observe)(void *ud, struct agent_store_obs *obs);
    void (*promote)(void *ud, uint64_t term);
    void (*demote)(void *ud);
    /* addr NULL: follow nobody (read-only, waiting for a leader). */
    void (*follow)(void *ud, const char *name, const char *addr, uint64_t term);
    void (*sync)(void *ud, const char *const *names, size_t n, bool degraded, bool hold_acks);
    /* Send failsafe pings; feed each positive answer to agent_loop_failsafe_ack(). May be
     * NULL (failsafe then never confirms: the primary stops at its lease). */
    void (*failsafe_ping)(void *ud, const char *const *to, size_t n, uint64_t term,
                          uint64_t round, uint64_t valid_ms);
    void (*provision)(void *ud, unsigned missing);
    /* After every batch of actions: the write permission may have changed. */
    void (*changed)(void *ud);
};

struct agent_loop;

/* Creates the shell: dcs (owned from now on, closed by agent_loop_stop) and a new agent from
 * cfg. Returns NULL with a reason in err. Starts at once. */
struct agent_loop *agent_loop_new(uv_loop_t *loop, struct dcs *dcs, const struct agent_config *cfg,
                                  const struct agent_host_ops *ops, void *ud, char *err,
                                  size_t errlen);

/* The write path's check (agent_may_accept_writes at now). */
bool agent_loop_may_write(const struct agent_loop *al);

/* Some peer showed a term (a replication link, a client). */
void agent_loop_term_seen(struct agent_loop *al, uint64_t term);

/* The store changed (a replica joined or left, a role action finished): observe it soon. */
void agent_loop_poke(struct agent_loop *al);

/* Failsafe, replica side: returns true when the ping is confirmed (answer the primary). */
bool agent_loop_failsafe_ping(struct agent_loop *al, const char *from, uint64_t term,
                              uint64_t valid_ms);
/* Failsafe, primary side: from confirmed round of term. */
void agent_loop_failsafe_ack(struct agent_loop *al, const char *from, uint64_t term,
                             uint64_t round);

/* The agent's state for INFO and `tandem status`. */
void agent_loop_info(const struct agent_loop *al, struct agent_info *out);

/* Clean shutdown: the agent hands over (demotes and revokes its lease), waits up to 500 ms for
 * the coordinator, closes the backend and every handle, frees al, then calls done (may be
 * NULL). */
void agent_loop_stop(struct agent_loop *al, void (*done)(void *ud), void *ud);

#endif
