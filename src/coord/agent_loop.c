/* SPDX-License-Identifier: MIT */
/* coord/agent_loop.c -- the HA agent on a libuv loop (see agent_loop.h). */
#include "coord/agent_loop.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"

#define OBSERVE_MS 100
#define STOP_WAIT_MS 500

struct agent_loop {
    uv_loop_t *loop;
    struct dcs *dcs;
    struct agent *agent;
    const struct agent_host_ops *ops;
    void *ud;
    uv_timer_t tick;    /* agent_next_deadline */
    uv_timer_t observe; /* periodic store observation; also the stop deadline */
    bool running;       /* performing a batch of actions */
    uint64_t term_seen; /* reported while running: fed after the batch */
    bool observe_soon;
    bool stopping, finishing;
    int handles;
    void (*done)(void *ud);
    void *done_ud;
};

static void run_actions(struct agent_loop *al);

static const char *op_name(enum dcs_op op)
{
    static const char *const names[] = {"grant", "keepalive", "revoke", "read", "txn"};
    return op <= DCS_OP_TXN ? names[op] : "?";
}

static void do_observe(struct agent_loop *al)
{
    struct agent_store_obs obs;
    memset(&obs, 0, sizeof(obs));
    al->ops->observe(al->ud, &obs);
    al->observe_soon = false;
    agent_observe_store(al->agent, clock_now_ms(), &obs);
    run_actions(al);
}

static void on_tick(uv_timer_t *t)
{
    struct agent_loop *al = t->data;
    agent_tick(al->agent, clock_now_ms());
    run_actions(al);
}

static void arm_tick(struct agent_loop *al)
{
    if (al->stopping)
        return;
    uint64_t now = clock_now_ms(), at = agent_next_deadline(al->agent);
    uv_timer_start(&al->tick, on_tick, at > now ? at - now : 0, 0);
}

/* Performs the actions of the last call, in order, then whatever they made necessary. */
static void run_actions(struct agent_loop *al)
{
    if (al->running)
        return;
    al->running = true;
    size_t n;
    const struct agent_action *acts = agent_actions(al->agent, &n);
    bool role_changed = false;
    for (size_t i = 0; i < n; i++) {
        const struct agent_action *a = &acts[i];
        if (a->kind != AGENT_ACT_DCS) {
            if (a->kind == AGENT_ACT_NOTE && a->u.note.warn)
                log_warn("ha", a->cause, "");
            else
                log_notice("ha", agent_action_name(a->kind), "cause=\"%s\"", a->cause);
        }
        switch (a->kind) {
        case AGENT_ACT_DCS: {
            log_debug("ha", "coordinator request", "op=%s id=%" PRIu64 " cause=\"%s\"",
                      op_name(a->u.dcs.op), a->u.dcs.id, a->cause);
            int rc = dcs_submit(al->dcs, &a->u.dcs);
            if (rc != 0)
                log_info("ha", "coordinator request not sent", "op=%s rc=%d",
                         op_name(a->u.dcs.op), rc);
            break;
        }
        case AGENT_ACT_PROMOTE:
            al->ops->promote(al->ud, a->u.promote.term);
            role_changed = true;
            break;
        case AGENT_ACT_DEMOTE:
            al->ops->demote(al->ud);
            role_changed = true;
            break;
        case AGENT_ACT_FOLLOW:
            al->ops->follow(al->ud, a->u.follow.name, a->u.follow.addr, a->u.follow.term);
            role_changed = true;
            break;
        case AGENT_ACT_SYNC:
            al->ops->sync(al->ud, a->u.sync.names, a->u.sync.n, a->u.sync.degraded,
                          a->u.sync.hold_acks);
            role_changed = true;
            break;
        case AGENT_ACT_FAILSAFE_PING:
            if (al->ops->failsafe_ping)
                al->ops->failsafe_ping(al->ud, a->u.ping.to, a->u.ping.n, a->u.ping.term,
                                       a->u.ping.round, a->u.ping.valid_ms);
            break;
        case AGENT_ACT_PROVISION:
            al->ops->provision(al->ud, a->u.provision.missing);
            break;
        case AGENT_ACT_NOTE:
            break;
        }
    }
    al->running = false;
    if (al->ops->changed)
        al->ops->changed(al->ud);
    if (al->stopping)
        return;
    if (al->term_seen) {
        uint64_t t = al->term_seen;
        al->term_seen = 0;
        agent_on_term_seen(al->agent, clock_now_ms(), t);
        run_actions(al);
        return;
    }
    if (role_changed || al->observe_soon) {
        do_observe(al);
        return;
    }
    arm_tick(al);
}

static void on_observe(uv_timer_t *t)
{
    struct agent_loop *al = t->data;
    do_observe(al);
}

static void finish(struct agent_loop *al);

static void on_result(struct dcs *d, const struct dcs_result *res)
{
    struct agent_loop *al = d->data;
    if (res->status != DCS_OK)
        log_debug("ha", "coordinator answered", "op=%s id=%" PRIu64 " status=%d",
                  op_name(res->op), res->id, res->status);
    if (al->stopping) {
        if (res->op == DCS_OP_REVOKE)
            finish(al);
        return;
    }
    agent_on_dcs_result(al->agent, clock_now_ms(), res);
    run_actions(al);
}

static void on_changed(struct dcs *d)
{
    struct agent_loop *al = d->data;
    if (al->stopping)
        return;
    agent_on_dcs_changed(al->agent, clock_now_ms());
    run_actions(al);
}

struct agent_loop *agent_loop_new(uv_loop_t *loop, struct dcs *dcs, const struct agent_config *cfg,
                                  const struct agent_host_ops *ops, void *ud, char *err,
                                  size_t errlen)
{
    struct agent *a = agent_new(cfg, clock_now_ms(), err, errlen);
    if (a == NULL)
        return NULL;
    struct agent_loop *al = xcalloc(1, sizeof(*al));
    al->loop = loop;
    al->dcs = dcs;
    al->agent = a;
    al->ops = ops;
    al->ud = ud;
    dcs->on_result = on_result;
    dcs->on_changed = on_changed;
    dcs->data = al;
    uv_timer_init(loop, &al->tick);
    uv_timer_init(loop, &al->observe);
    al->tick.data = al->observe.data = al;
    al->handles = 2;
    log_notice("ha", "agent started",
               "cluster=%s name=%s addr=%s ttl_ms=%" PRIu64 " coordinator=%s", cfg->cluster,
               cfg->name, cfg->addr, cfg->ttl_ms, dcs->ops->scheme);
    if (dcs->ops->watch) {
        char prefix[160];
        int len = snprintf(prefix, sizeof(prefix), "/tandem/%s/", cfg->cluster);
        dcs->ops->watch(dcs, (struct slice){prefix, (size_t)len});
    }
    uv_timer_start(&al->observe, on_observe, 0, OBSERVE_MS);
    return al;
}

bool agent_loop_may_write(const struct agent_loop *al)
{
    return !al->stopping && agent_may_accept_writes(al->agent, clock_now_ms());
}

void agent_loop_term_seen(struct agent_loop *al, uint64_t term)
{
    if (al->stopping)
        return;
    if (al->running) {
        if (term > al->term_seen)
            al->term_seen = term;
        return;
    }
    agent_on_term_seen(al->agent, clock_now_ms(), term);
    run_actions(al);
}

void agent_loop_poke(struct agent_loop *al)
{
    if (al->stopping)
        return;
    if (al->running) {
        al->observe_soon = true;
        return;
    }
    do_observe(al);
}

bool agent_loop_failsafe_ping(struct agent_loop *al, const char *from, uint64_t term,
                              uint64_t valid_ms)
{
    if (al->stopping || al->running)
        return false;
    bool ok = agent_on_failsafe_ping(al->agent, clock_now_ms(), from, term, valid_ms);
    run_actions(al);
    return ok;
}

void agent_loop_failsafe_ack(struct agent_loop *al, const char *from, uint64_t term,
                             uint64_t round)
{
    if (al->stopping || al->running)
        return;
    agent_on_failsafe_ack(al->agent, clock_now_ms(), from, term, round);
    run_actions(al);
}

void agent_loop_info(const struct agent_loop *al, struct agent_info *out)
{
    agent_get_info(al->agent, out);
}

/* --- stopping --- */

static void on_handle_closed(uv_handle_t *h)
{
    struct agent_loop *al = h->data;
    if (--al->handles > 0)
        return;
    void (*done)(void *) = al->done;
    void *ud = al->done_ud;
    agent_free(al->agent);
    free(al);
    if (done)
        done(ud);
}

static void on_dcs_closed(struct dcs *d)
{
    struct agent_loop *al = d->data;
    free(d); /* the backend's contract: released by its owner once closed */
    on_handle_closed((uv_handle_t *)&al->tick); /* counts the backend as a handle */
}

static void finish(struct agent_loop *al)
{
    if (al->finishing)
        return;
    al->finishing = true;
    al->handles = 3; /* two timers and the backend */
    uv_close((uv_handle_t *)&al->tick, on_handle_closed);
    uv_close((uv_handle_t *)&al->observe, on_handle_closed);
    al->dcs->ops->close(al->dcs, on_dcs_closed);
}

static void on_stop_deadline(uv_timer_t *t)
{
    finish(t->data);
}

void agent_loop_stop(struct agent_loop *al, void (*done)(void *ud), void *ud)
{
    al->done = done;
    al->done_ud = ud;
    agent_stop(al->agent, clock_now_ms());
    run_actions(al); /* demote, revoke */
    al->stopping = true;
    uv_timer_stop(&al->tick);
    uv_timer_start(&al->observe, on_stop_deadline, STOP_WAIT_MS, 0);
}
