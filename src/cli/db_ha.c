/* SPDX-License-Identifier: MIT */
/* cli/db_ha.c -- the HA agent inside `tandem db` (see db_ha.h). */
#include "cli/db_ha.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/parse.h"
#include "coord/agent_loop.h"
#include "coord/dcs_open.h"

#define MAX_OBS 16

struct db_ha {
    uv_loop_t *loop;
    struct repl_node *node;
    struct agent_loop *al;
    char following[AGENT_NAME_MAX]; /* address we follow ("" none) */
    char leader[AGENT_NAME_MAX];    /* its name (failsafe pings come from it) */
    char *provision_cmd;
    char cluster[AGENT_NAME_MAX], name[AGENT_NAME_MAX];
    struct repl_node_replica reps[MAX_OBS];
    struct agent_replica_obs obs[MAX_OBS];
    void (*done)(void *ud);
    void *done_ud;
};

/* --- the write gate --- */

static const char *gate(void *ud)
{
    struct db_ha *h = ud;
    if (h->al && agent_loop_may_write(h->al))
        return NULL;
    return "READONLY no confirmed leader lease: writes go to the cluster's primary";
}

/* --- host callbacks --- */

static void host_observe(void *ud, struct agent_store_obs *o)
{
    struct db_ha *h = ud;
    struct repl_node_status st;
    repl_node_status(h->node, &st);
    o->last_lsn = st.last_lsn;
    o->last_term = st.last_term;
    o->acked_lsn = st.released_lsn;
    o->healthy = true;
    size_t n = repl_node_replicas(h->node, h->reps, MAX_OBS);
    for (size_t i = 0; i < n; i++)
        h->obs[i] = (struct agent_replica_obs){h->reps[i].name, h->reps[i].streaming,
                                               h->reps[i].acked_lsn};
    o->replicas = h->obs;
    o->n_replicas = n;
}

static void host_promote(void *ud, uint64_t term)
{
    struct db_ha *h = ud;
    h->following[0] = '\0';
    if (repl_node_promote(h->node, term) != 0)
        log_error("ha", "promotion failed", "term=%" PRIu64, term);
}

static void host_demote(void *ud)
{
    struct db_ha *h = ud;
    h->following[0] = '\0';
    repl_node_follow(h->node, NULL);
}

static void host_follow(void *ud, const char *name, const char *addr, uint64_t term)
{
    struct db_ha *h = ud;
    (void)term;
    if (addr == NULL || name == NULL) {
        if (h->following[0] || repl_node_writable(h->node)) {
            h->following[0] = '\0';
            repl_node_follow(h->node, NULL);
        }
        return;
    }
    snprintf(h->leader, sizeof(h->leader), "%s", name);
    if (strcmp(h->following, addr) == 0)
        return;
    struct sockaddr_storage ss;
    char err[160];
    if (parse_addr(addr, &ss, err, sizeof(err)) != 0) {
        log_warn("ha", "the leader's address is unusable", "leader=%s addr=%s err=\"%s\"", name,
                 addr, err);
        return;
    }
    snprintf(h->following, sizeof(h->following), "%s", addr);
    repl_node_follow(h->node, &ss);
}

static void host_failsafe_ping(void *ud, const char *const *to, size_t n, uint64_t term,
                               uint64_t round, uint64_t valid_ms)
{
    struct db_ha *h = ud;
    repl_node_failsafe_ping(h->node, to, n, term, round, valid_ms);
}

/* A replica: our primary asks whether we follow it (the coordinator is unreachable to it). */
static bool on_fs_ping(void *ud, uint64_t term, uint64_t round, uint64_t valid_ms)
{
    struct db_ha *h = ud;
    (void)round;
    return h->al && h->leader[0] && agent_loop_failsafe_ping(h->al, h->leader, term, valid_ms);
}

static void on_fs_ack(void *ud, const char *node, uint64_t term, uint64_t round)
{
    struct db_ha *h = ud;
    if (h->al)
        agent_loop_failsafe_ack(h->al, node, term, round);
}

static void host_sync(void *ud, const char *const *names, size_t n, bool degraded, bool hold)
{
    struct db_ha *h = ud;
    repl_node_set_sync(h->node, names, n, degraded, hold);
}

static void on_provision_closed(uv_handle_t *hd)
{
    free(hd);
}

/* Runs --provision-cmd through /bin/sh, detached: the new node it starts must outlive this
 * one if need be. Its output goes to our stderr. */
static void host_provision(void *ud, unsigned missing)
{
    struct db_ha *h = ud;
    if (h->provision_cmd == NULL || h->provision_cmd[0] == '\0') {
        log_warn("ha", "below --min-replicas and no --provision-cmd: redundancy stays reduced",
                 "missing=%u", missing);
        return;
    }
    char env_cluster[128], env_name[128], env_missing[64];
    snprintf(env_cluster, sizeof(env_cluster), "TANDEM_CLUSTER=%s", h->cluster);
    snprintf(env_name, sizeof(env_name), "TANDEM_PRIMARY=%s", h->name);
    snprintf(env_missing, sizeof(env_missing), "TANDEM_MISSING=%u", missing);
    extern char **environ;
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **env = xcalloc(ne + 4, sizeof(*env));
    for (size_t i = 0; i < ne; i++)
        env[i] = environ[i];
    env[ne] = env_cluster;
    env[ne + 1] = env_name;
    env[ne + 2] = env_missing;
    char *argv[] = {"/bin/sh", "-c", h->provision_cmd, NULL};
    uv_process_t *proc = xcalloc(1, sizeof(*proc));
    uv_stdio_container_t io[3] = {{UV_IGNORE, {0}}, {UV_INHERIT_FD, {.fd = 2}},
                                  {UV_INHERIT_FD, {.fd = 2}}};
    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    po.file = argv[0];
    po.args = argv;
    po.env = env;
    po.flags = UV_PROCESS_DETACHED;
    po.stdio_count = 3;
    po.stdio = io;
    int rc = uv_spawn(h->loop, proc, &po);
    free(env);
    if (rc != 0)
        log_warn("ha", "cannot run the provision command", "err=%s", uv_strerror(rc));
    else
        log_notice("ha", "provisioning a replica", "missing=%u pid=%d cmd=\"%s\"", missing,
                   proc->pid, h->provision_cmd);
    uv_close((uv_handle_t *)proc, on_provision_closed);
}

static void host_changed(void *ud)
{
    struct db_ha *h = ud;
    repl_node_gate_changed(h->node);
}

static const struct agent_host_ops host_ops = {
    host_observe, host_promote,       host_demote,    host_follow,
    host_sync,    host_failsafe_ping, host_provision, host_changed};

static void on_term(void *ud, uint64_t term)
{
    struct db_ha *h = ud;
    if (h->al)
        agent_loop_term_seen(h->al, term);
}

static void free_dcs(struct dcs *d)
{
    free(d);
}

struct db_ha *db_ha_start(uv_loop_t *loop, struct repl_node *n, const struct db_config *cfg,
                          const char *name, const char *addr, char *err, size_t errlen)
{
    struct agent_config ac;
    agent_config_defaults(&ac);
    ac.cluster = cfg->cluster;
    ac.name = name;
    ac.addr = addr;
    ac.priority = (uint32_t)cfg->priority;
    ac.ttl_ms = cfg->lease_ttl_ms;
    /* Renew four times per TTL, poll five times, and give up on a request after half a TTL. */
    ac.renew_ms = ac.ttl_ms / 4;
    ac.loop_ms = ac.ttl_ms / 5 < 1000 ? ac.ttl_ms / 5 : 1000;
    ac.dcs_timeout_ms = ac.ttl_ms / 2;
    ac.margin_ms = ac.ttl_ms / 20 > 20 ? ac.ttl_ms / 20 : 20;
    ac.sync_replicas = (unsigned)cfg->sync_replicas;
    ac.sync_strict = cfg->sync_strict;
    ac.min_replicas = (unsigned)cfg->min_replicas;
    ac.provision_after_ms = cfg->provision_after_ms;
    struct dcs *d = dcs_open(loop, cfg->coordinator, ac.dcs_timeout_ms, err, errlen);
    if (d == NULL)
        return NULL;
    struct db_ha *h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->node = n;
    h->provision_cmd = cfg->provision_cmd ? xstrdup(cfg->provision_cmd) : NULL;
    snprintf(h->cluster, sizeof(h->cluster), "%s", cfg->cluster);
    snprintf(h->name, sizeof(h->name), "%s", name);
    /* Read-only until the agent holds the leader lease or knows whom to follow. */
    repl_node_set_gate(n, gate, h);
    repl_node_on_term(n, on_term, h);
    repl_node_on_failsafe(n, on_fs_ping, on_fs_ack, h);
    repl_node_follow(n, NULL);
    h->al = agent_loop_new(loop, d, &ac, &host_ops, h, err, errlen);
    if (h->al == NULL) {
        d->ops->close(d, free_dcs);
        repl_node_set_gate(n, NULL, NULL);
        repl_node_on_term(n, NULL, NULL);
        repl_node_on_failsafe(n, NULL, NULL, NULL);
        free(h->provision_cmd);
        free(h);
        return NULL;
    }
    return h;
}

static void on_agent_stopped(void *ud)
{
    struct db_ha *h = ud;
    void (*done)(void *) = h->done;
    void *dud = h->done_ud;
    repl_node_set_gate(h->node, NULL, NULL);
    repl_node_on_term(h->node, NULL, NULL);
    repl_node_on_failsafe(h->node, NULL, NULL, NULL);
    free(h->provision_cmd);
    free(h);
    if (done)
        done(dud);
}

void db_ha_stop(struct db_ha *h, void (*done)(void *ud), void *ud)
{
    h->done = done;
    h->done_ud = ud;
    struct agent_loop *al = h->al;
    agent_loop_stop(al, on_agent_stopped, h);
}
