/* SPDX-License-Identifier: MIT */
/* coord/agent.h -- the HA agent's decision core: observations + now -> actions.
 *
 * One agent runs inside each `tandem db` node (Patroni's model). It is a pure state machine: no
 * sockets, no timers, no clock reads, no logging. A shell on the event loop (cli/cmd_db.c) owns
 * it and drives it:
 *
 *   in   agent_tick()            when agent_next_deadline() is reached (a uv_timer)
 *        agent_on_dcs_result()   each result of a request the agent emitted (dcs.h callback)
 *        agent_on_dcs_changed()  a coordinator watch fired (optional: the agent also polls)
 *        agent_observe_store()   the store's position, health and replicas: after performing
 *                                PROMOTE, DEMOTE or SYNC, and whenever it changes (say, 10/s)
 *        agent_on_term_seen()    a term seen on a replication link or from a client
 *        agent_on_failsafe_ping()  a primary's ping arrived (replica side); answer if true
 *        agent_on_failsafe_ack()   a replica's answer arrived (primary side)
 *        agent_stop()            clean shutdown (SIGTERM): hands over without waiting a TTL
 *   out  agent_actions()         after every call above, performed in order, before the next
 *                                call into the agent (except agent_may_accept_writes()):
 *
 *   AGENT_ACT_DCS           dcs_submit(u.dcs); its result comes back through agent_on_dcs_result
 *                           (the agent times requests out itself: a result may never come)
 *   AGENT_ACT_PROMOTE       make the store primary in term u.promote.term (each write is still
 *                           gated by agent_may_accept_writes())
 *   AGENT_ACT_DEMOTE        stop acknowledging writes at once (fail pending ones), read-only
 *   AGENT_ACT_FOLLOW        replicate from u.follow (name, addr, term); name NULL: from nobody
 *   AGENT_ACT_SYNC          sync mode: acknowledge a write only once every replica named in
 *                           u.sync has it durably; hold_acks: also wait while the set is short
 *                           (strict mode); degraded: say so in INFO and metrics
 *   AGENT_ACT_FAILSAFE_PING send (from, term, round, valid_ms) to each named replica over its
 *                           replication link; feed each positive answer to agent_on_failsafe_ack
 *   AGENT_ACT_PROVISION     run the provision hook (u.provision.missing nodes short)
 *   AGENT_ACT_NOTE          log only (u.note.warn: at WARN, else NOTICE)
 *
 * Every action carries a human-readable cause for the log (log every action but DCS at NOTICE).
 * Pointers inside actions (cause, names, DCS keys and values) are owned by the agent and valid
 * until the next call that takes a non-const agent. Times are monotonic ms (clock_now_ms()).
 * The write path calls agent_may_accept_writes(agent, clock_now_ms()) inline on every write and
 * on ROLE. */
#ifndef TD_COORD_AGENT_H
#define TD_COORD_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coord/dcs.h"

#define AGENT_NAME_MAX 64    /* node names and addresses, including the NUL */
#define AGENT_MAX_MEMBERS 16 /* nodes per cluster */
#define AGENT_MAX_ACTIONS 32 /* actions per call, at most */
#define AGENT_CAUSE_MAX 192

struct agent_config {
    const char *cluster;     /* copied by agent_new(); 1..63 bytes of [A-Za-z0-9_.:-] */
    const char *name;        /* this node; same charset */
    const char *addr;        /* host:port replicas connect to (published); same charset */
    uint32_t priority;       /* 0: never promoted; higher wins ties on (last_term, lsn) */
    uint64_t ttl_ms;         /* lease TTL at the coordinator; the same on every node */
    uint64_t renew_ms;       /* keepalive interval; < ttl_ms / 2 */
    uint64_t loop_ms;        /* read (poll) interval; a watch hint reads earlier */
    uint64_t dcs_timeout_ms; /* a request with no result by then has an unknown outcome */
    uint64_t margin_ms;      /* stop this much before the lease could expire (clock rate drift) */
    unsigned sync_replicas;  /* --sync-replicas N; 0: asynchronous */
    bool sync_strict;        /* --sync-strict: hold acknowledgements instead of degrading */
    bool failsafe; /* keep serving while the coordinator is down and every member confirms */
    unsigned min_replicas;       /* restore redundancy below this many healthy replicas (0: off) */
    uint64_t provision_after_ms; /* ... once they stayed below for this long */
    uint64_t provision_backoff_ms; /* first retry delay if provisioning did not help (doubles) */
};

/* Fills defaults: ttl 2000, renew 500, loop 200, timeout 700, margin 50, failsafe on,
 * provision_after 5000, backoff 30000; cluster, name, addr NULL; priority 100. */
void agent_config_defaults(struct agent_config *c);

enum agent_role {
    AGENT_STARTING = 0, /* no coordinator snapshot yet: read-only, follows nobody */
    AGENT_REPLICA,      /* follows the leader named in the leader key (or waits for one) */
    AGENT_PRIMARY,      /* holds the leader key in its term; writes gated by the lease */
};

/* What the store reports about one connected or known replica (primary side). lsn is the
 * highest lsn the replica has durably acknowledged on this primary's history. */
struct agent_replica_obs {
    const char *name;
    bool connected; /* streaming live (past any snapshot or catch-up phase) */
    uint64_t lsn;
};

/* What the store reports about itself. acked_lsn: highest lsn acknowledged to a client (primary).
 * Strings are borrowed for the call. */
struct agent_store_obs {
    uint64_t last_lsn;
    uint64_t last_term; /* term of the record at last_lsn */
    uint64_t acked_lsn;
    bool healthy; /* disk writable, log readable: fit to be promoted */
    const struct agent_replica_obs *replicas;
    size_t n_replicas;
};

enum agent_action_kind {
    AGENT_ACT_DCS = 0,
    AGENT_ACT_PROMOTE,
    AGENT_ACT_DEMOTE,
    AGENT_ACT_FOLLOW,
    AGENT_ACT_SYNC,
    AGENT_ACT_FAILSAFE_PING,
    AGENT_ACT_PROVISION,
    AGENT_ACT_NOTE,
};

struct agent_action {
    enum agent_action_kind kind;
    const char *cause;
    union {
        struct dcs_req dcs;
        struct {
            uint64_t term;
        } promote;
        struct {
            const char *name; /* NULL: no leader known, stop replicating */
            const char *addr;
            uint64_t term;
        } follow;
        struct {
            /* Acknowledge a write only when every one of names has it durably. degraded: fewer
             * than N recorded in sync (say so in INFO/metrics). hold_acks: also wait until the set
             * is complete (strict mode). */
            const char *const *names;
            size_t n;
            bool degraded;
            bool hold_acks;
        } sync;
        struct {
            const char *const *to;
            size_t n;
            uint64_t term;
            uint64_t round;    /* echo it in agent_on_failsafe_ack() */
            uint64_t valid_ms; /* pass to agent_on_failsafe_ping() */
        } ping;
        struct {
            unsigned missing;
        } provision;
        struct {
            bool warn;
        } note;
    } u;
};

/* A snapshot for INFO, metrics and `tandem status`. Strings point into the agent. */
struct agent_info {
    enum agent_role role;
    uint64_t term;         /* highest term known */
    uint64_t primary_term; /* our term while primary, else 0 */
    const char *leader;    /* leader we follow or are; "" if none */
    uint64_t lease_id;
    uint64_t write_until_ms; /* writes are accepted before this instant (primary) */
    bool sync_degraded;
    bool failsafe_active;      /* serving on replica confirmations, not on the lease */
    uint64_t promise_until_ms; /* we promised a primary not to take over before this */
    unsigned provisions;       /* PROVISION actions emitted so far */
};

struct agent;

/* Validates cfg (names, durations) and returns an owned agent, or NULL with a reason in err. */
struct agent *agent_new(const struct agent_config *cfg, uint64_t now_ms, char *err, size_t errlen);
/* Frees the agent; NULL is a no-op. Outstanding requests are simply forgotten. */
void agent_free(struct agent *a);

/* The actions left by the last call; valid until the next non-const call. */
const struct agent_action *agent_actions(const struct agent *a, size_t *n);

/* Timers: renewals, polls, deadlines, provisioning. Call at agent_next_deadline() or earlier. */
void agent_tick(struct agent *a, uint64_t now_ms);
/* The instant the agent next needs agent_tick(). */
uint64_t agent_next_deadline(const struct agent *a);
/* A coordinator result for a request this agent emitted (unknown, late or repeated ids are
 * ignored). */
void agent_on_dcs_result(struct agent *a, uint64_t now_ms, const struct dcs_result *res);
/* A watch fired: read the cluster state now. */
void agent_on_dcs_changed(struct agent *a, uint64_t now_ms);
/* The store's state (obs borrowed for the call): after performing PROMOTE, DEMOTE or SYNC, and
 * whenever it changes. Nothing is promoted before the first observation. */
void agent_observe_store(struct agent *a, uint64_t now_ms, const struct agent_store_obs *obs);
/* Some peer (replication stream, a client, a primary) showed a term; higher than ours as primary:
 * step down at once. */
void agent_on_term_seen(struct agent *a, uint64_t now_ms, uint64_t term);
/* Replica side of failsafe: primary `from` asks in `term`. Returns true (and promises not to
 * take over for a TTL) when we follow that primary in that term; send the confirmation then. */
bool agent_on_failsafe_ping(struct agent *a, uint64_t now_ms, const char *from, uint64_t term,
                            uint64_t valid_ms);
/* Primary side: `from` confirmed ping `round` of `term`. */
void agent_on_failsafe_ack(struct agent *a, uint64_t now_ms, const char *from, uint64_t term,
                           uint64_t round);

/* Clean shutdown: demote if primary and revoke our lease (the leader key goes with it, so a
 * replica takes over without waiting for the TTL). The agent emits nothing afterwards. */
void agent_stop(struct agent *a, uint64_t now_ms);

/* The write path's check: true only while we are primary and hold a confirmed lease (or failsafe
 * confirmations) at now_ms. Pure and cheap; call it on every write and on ROLE. */
bool agent_may_accept_writes(const struct agent *a, uint64_t now_ms);
/* Fills info from the agent's state (no side effects). */
void agent_get_info(const struct agent *a, struct agent_info *info);
/* "starting", "replica", "primary". */
const char *agent_role_name(enum agent_role r);
/* Name of an action kind for logs: "dcs", "promote", ... */
const char *agent_action_name(enum agent_action_kind k);

#endif
