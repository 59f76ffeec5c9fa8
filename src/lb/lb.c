/* SPDX-License-Identifier: MIT */
/* lb/lb.c -- pools and servers: start, reload, stop, and every state change of a server in one
 * place (lb_server_changed), where it is logged with its cause and acted upon. */
#include "lb/lb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/parse.h"
#include "lb/lb_config.h"

const char *lb_admin_name(enum lb_admin a)
{
    switch (a) {
    case LB_ADMIN_ENABLED:
        return "enabled";
    case LB_ADMIN_DRAIN:
        return "drain";
    case LB_ADMIN_DISABLED:
        return "disabled";
    }
    return "?";
}

const char *lb_role_name(enum lb_role r)
{
    switch (r) {
    case LB_ROLE_PRIMARY:
        return "primary";
    case LB_ROLE_REPLICA:
        return "replica";
    default:
        return "unknown";
    }
}

bool lb_server_usable(const struct lb_server *s)
{
    if (s->removed || s->admin != LB_ADMIN_ENABLED || s->health.state != HEALTH_UP)
        return false;
    if (s->pool->check_kind == LB_CHECK_RESP_ROLE && s->role != LB_ROLE_PRIMARY)
        return false;
    return true;
}

void lb_server_ref(struct lb_server *s)
{
    s->refs++;
}

static void server_free(struct lb_server *s)
{
    free(s->name);
    free(s);
}

static void on_check_timer_closed(uv_handle_t *h)
{
    struct lb_server *s = h->data;
    lb_server_unref(s);
}

void lb_server_unref(struct lb_server *s)
{
    TD_ASSERT(s->refs > 0);
    if (--s->refs == 0)
        server_free(s);
}

/* Recomputes the pool's views and, for active-passive, its active server; logs a switch. */
static void pool_refresh(struct lb_pool *p, const char *why)
{
    int before = p->bal.active;
    for (size_t i = 0; i < p->nservers; i++) {
        p->views[i].usable = lb_server_usable(p->servers[i]);
        p->views[i].load = p->servers[i]->inflight;
    }
    if (p->bal.mode != BALANCE_ACTIVE_PASSIVE) {
        for (size_t i = 0; i < p->nservers; i++)
            *p->servers[i]->m_active = p->views[i].usable;
        return;
    }
    int after = balance_update_active(&p->bal, p->views, p->nservers);
    for (size_t i = 0; i < p->nservers; i++)
        *p->servers[i]->m_active = (int)i == after;
    if (before == after)
        return;
    if (after < 0)
        log_warn("balance", "no server can take traffic", "pool=%s cause=\"%s\"", p->name, why);
    else
        log_notice("balance", "active server changed", "pool=%s from=%s to=%s cause=\"%s\"",
                   p->name, before >= 0 ? p->servers[before]->name : "none",
                   p->servers[after]->name, why);
}

void lb_server_changed(struct lb_server *s, const char *why)
{
    struct lb_pool *p = s->pool;
    bool usable = lb_server_usable(s);
    snprintf(s->last_reason, sizeof(s->last_reason), "%s", why);
    s->last_change_ms = clock_now_ms();
    *s->m_up = s->health.state == HEALTH_UP;
    log_notice("health", usable ? "server usable" : "server not usable",
               "pool=%s server=%s addr=%s state=%s admin=%s role=%s cause=\"%s\"", p->name,
               s->name, s->addr_str, health_state_name(s->health.state), lb_admin_name(s->admin),
               lb_role_name(s->role), why);
    pool_refresh(p, why);
    if (!usable && p->cfg.protocol == LB_PROTO_TCP &&
        (s->admin != LB_ADMIN_DRAIN || s->health.state != HEALTH_UP))
        lb_tcp_close_server_sessions(s, why);
    if (!usable && p->cfg.protocol == LB_PROTO_HTTP)
        lb_http_server_closing(s, s->admin != LB_ADMIN_DRAIN || s->health.state != HEALTH_UP);
}

void lb_server_passive_failure(struct lb_server *s, const char *reason)
{
    (*s->m_failures)++;
    enum health_change ch = health_on_passive_failure(&s->health, clock_now_ms());
    if (ch == HEALTH_WENT_DOWN) {
        char why[160];
        snprintf(why, sizeof(why), "passive: %s", reason);
        lb_server_changed(s, why);
        /* re-check at the fast interval from now on, starting right away */
        lb_check_start(s, 0);
    }
}

struct lb_pool *lb_find_pool(struct lb *lb, const char *name)
{
    for (size_t i = 0; i < lb->npools; i++)
        if (strcmp(lb->pools[i]->name, name) == 0)
            return lb->pools[i];
    return NULL;
}

static struct lb_server *find_server(struct lb_pool *p, const char *name)
{
    for (size_t i = 0; i < p->nservers; i++)
        if (strcmp(p->servers[i]->name, name) == 0)
            return p->servers[i];
    return NULL;
}

int lb_admin_set(struct lb *lb, const char *pool, const char *server, enum lb_admin st)
{
    struct lb_pool *p = lb_find_pool(lb, pool);
    struct lb_server *s = p ? find_server(p, server) : NULL;
    if (s == NULL)
        return -ENOENT;
    if (s->admin == st)
        return 0;
    s->admin = st;
    char why[64];
    snprintf(why, sizeof(why), "admin: %s", lb_admin_name(st));
    lb_server_changed(s, why);
    return 0;
}

int lb_pool_failback(struct lb *lb, const char *pool)
{
    struct lb_pool *p = lb_find_pool(lb, pool);
    if (p == NULL)
        return -ENOENT;
    if (p->bal.mode != BALANCE_ACTIVE_PASSIVE)
        return -EINVAL;
    int before = p->bal.active;
    pool_refresh(p, "admin: failback");
    int after = balance_failback_now(&p->bal, p->views, p->nservers);
    for (size_t i = 0; i < p->nservers; i++)
        *p->servers[i]->m_active = (int)i == after;
    if (before != after && after >= 0)
        log_notice("balance", "active server changed", "pool=%s from=%s to=%s cause=\"%s\"",
                   p->name, before >= 0 ? p->servers[before]->name : "none",
                   p->servers[after]->name, "admin: failback");
    return 0;
}

static void server_metrics(struct lb *lb, struct lb_server *s)
{
    struct buf l;
    buf_init(&l);
    buf_append_str(&l, "pool=\"");
    metrics_escape_label(&l, s->pool->name);
    buf_append_str(&l, "\",server=\"");
    metrics_escape_label(&l, s->name);
    buf_append(&l, "\"", 2);
    struct metrics *m = lb->metrics;
    s->m_requests = metrics_series(m, METRIC_COUNTER, "tandem_lb_server_requests_total",
                                   "Requests or connections sent to the server.", l.p);
    s->m_failures = metrics_series(m, METRIC_COUNTER, "tandem_lb_server_failures_total",
                                   "Live traffic failures (connect error, reset, timeout).", l.p);
    s->m_retries = metrics_series(m, METRIC_COUNTER, "tandem_lb_server_retries_total",
                                  "Requests retried elsewhere after failing on the server.", l.p);
    s->m_up = metrics_series(m, METRIC_GAUGE, "tandem_lb_server_up",
                             "1 when health checks say the server is up.", l.p);
    s->m_inflight = metrics_series(m, METRIC_GAUGE, "tandem_lb_server_inflight",
                                   "Requests or connections in flight.", l.p);
    s->m_active = metrics_series(m, METRIC_GAUGE, "tandem_lb_server_active",
                                 "1 when the server receives new traffic.", l.p);
    buf_free(&l);
}

static struct lb_server *server_new(struct lb_pool *p, const struct lb_server_cfg *sc,
                                    unsigned index)
{
    struct lb_server *s = xcalloc(1, sizeof(*s));
    s->pool = p;
    s->index = index;
    s->name = xstrdup(sc->name);
    s->addr = sc->addr;
    addr_format((const struct sockaddr *)&s->addr, s->addr_str, sizeof(s->addr_str));
    health_init(&s->health, (unsigned)p->cfg.rise, (unsigned)p->cfg.fall, clock_now_ms());
    if (p->check_kind == LB_CHECK_RESP_ROLE) {
        /* a store node is not trusted as primary until a check says so */
        s->health.state = HEALTH_DOWN;
    }
    s->admin = LB_ADMIN_ENABLED;
    snprintf(s->last_reason, sizeof(s->last_reason), "started");
    s->last_change_ms = clock_now_ms();
    list_init(&s->idle);
    list_init(&s->busy);
    list_init(&s->tcp_sessions);
    s->refs = 1; /* the pool's */
    uv_timer_init(p->lb->loop, &s->check_timer);
    s->check_timer.data = s;
    server_metrics(p->lb, s);
    *s->m_up = s->health.state == HEALTH_UP;
    return s;
}

/* Unlinks a server from traffic and checks; memory goes when the last user lets go. */
static void server_retire(struct lb_server *s)
{
    s->removed = true;
    lb_check_stop(s);
    lb_http_server_closing(s, true);
    if (s->pool->cfg.protocol == LB_PROTO_TCP)
        lb_tcp_close_server_sessions(s, "server removed");
    *s->m_up = 0;
    *s->m_active = 0;
    *s->m_inflight = 0;
    uv_close((uv_handle_t *)&s->check_timer, on_check_timer_closed);
}

static void on_stall_timer(uv_timer_t *t)
{
    struct lb_pool *p = t->data;
    uint64_t now = uv_now(t->loop);
    unsigned usable = 0;
    for (size_t i = 0; i < p->nservers; i++)
        usable += lb_server_usable(p->servers[i]);
    for (size_t i = 0; i < p->nservers; i++) {
        struct lb_server *s = p->servers[i];
        /* a stall only moves traffic elsewhere: never take out the last usable server (on an
         * overloaded machine a healthy one can look stalled, and a 503 helps nobody) */
        if (usable < 2 || !lb_server_usable(s) ||
            !health_is_stalled(s->inflight, s->progress_ms, now, p->cfg.stall_timeout_ms))
            continue;
        char why[128];
        snprintf(why, sizeof(why), "stalled: nothing received for %llums with %u waiting",
                 (unsigned long long)(now - s->progress_ms), s->inflight);
        lb_server_passive_failure(s, why);
        usable--;
    }
}

/* Runs the stall detector of an HTTP pool at a quarter of its timeout, or stops it. */
static void pool_stall_timer(struct lb_pool *p)
{
    uint64_t st = p->cfg.stall_timeout_ms;
    if (st == 0 || p->cfg.protocol != LB_PROTO_HTTP || p->closing) {
        uv_timer_stop(&p->stall_timer);
        return;
    }
    uint64_t every = st / 4 ? st / 4 : 1;
    uv_timer_start(&p->stall_timer, on_stall_timer, every, every);
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct lb_pool *p = listener->data;
    if (status < 0) {
        log_warn("listen", "accept failed", "pool=%s err=%s", p->name, uv_strerror(status));
        return;
    }
    if (p->cfg.protocol == LB_PROTO_HTTP)
        lb_http_accept(p, listener);
    else
        lb_tcp_accept(p, listener);
}

static void pool_metrics(struct lb *lb, struct lb_pool *p)
{
    struct buf l;
    buf_init(&l);
    buf_append_str(&l, "pool=\"");
    metrics_escape_label(&l, p->name);
    buf_append(&l, "\"", 2);
    struct metrics *m = lb->metrics;
    p->m_requests = metrics_series(m, METRIC_COUNTER, "tandem_lb_pool_requests_total",
                                   "Requests (http) or connections (tcp) received.", l.p);
    p->m_no_server = metrics_series(m, METRIC_COUNTER, "tandem_lb_pool_no_server_total",
                                    "Requests refused because no server could take them.", l.p);
    p->m_bad_requests = metrics_series(m, METRIC_COUNTER, "tandem_lb_pool_bad_requests_total",
                                       "Client requests rejected (malformed, too large, slow).",
                                       l.p);
    p->m_conns = metrics_series(m, METRIC_GAUGE, "tandem_lb_pool_client_connections",
                                "Open client connections.", l.p);
    p->m_rejected = metrics_series(m, METRIC_COUNTER, "tandem_lb_pool_rejected_connections_total",
                                   "Client connections refused at max-conns.", l.p);
    buf_free(&l);
}

static int pool_apply_check(struct lb_pool *p)
{
    free(p->check_path);
    p->check_path = NULL;
    return lb_config_parse_check(p->cfg.check, &p->check_kind, &p->check_path);
}

static void pool_copy_cfg(struct lb_pool *p, const struct lb_pool_cfg *src)
{
    char *old_check = p->cfg.check;
    p->cfg = *src;
    p->cfg.check = src->check ? xstrdup(src->check) : NULL;
    free(old_check);
}

static int pool_start(struct lb *lb, const struct lb_pool_def *def, char *err, size_t errlen)
{
    struct lb_pool *p = xcalloc(1, sizeof(*p));
    p->lb = lb;
    p->name = xstrdup(def->name);
    pool_copy_cfg(p, &def->cfg);
    pool_apply_check(p);
    list_init(&p->clients);
    pool_metrics(lb, p);
    balance_init(&p->bal, (enum balance_mode)p->cfg.mode, (enum balance_algo)p->cfg.balance,
                 (enum balance_failback)p->cfg.failback);
    for (size_t i = 0; i < def->nservers; i++)
        p->servers[p->nservers++] = server_new(p, &def->servers[i], (unsigned)i);
    lb->pools[lb->npools++] = p;
    uv_timer_init(lb->loop, &p->stall_timer);
    p->stall_timer.data = p;

    uv_tcp_init(lb->loop, &p->listener);
    p->listener.data = p;
    int rc = uv_tcp_bind(&p->listener, (const struct sockaddr *)&p->cfg.listen, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&p->listener, 1024, on_accept);
    char a[64];
    addr_format((const struct sockaddr *)&p->cfg.listen, a, sizeof(a));
    if (rc < 0) {
        snprintf(err, errlen, "pool '%s': cannot listen on %s: %s", p->name, a, uv_strerror(rc));
        return rc;
    }
    p->listening = true;
    pool_refresh(p, "start");
    pool_stall_timer(p);
    for (size_t i = 0; i < p->nservers; i++)
        if (p->check_kind != LB_CHECK_NONE)
            lb_check_start(p->servers[i], 0);
    log_notice("listen", "pool started", "pool=%s listen=%s protocol=%s mode=%s servers=%zu check=%s",
               p->name, a, p->cfg.protocol == LB_PROTO_HTTP ? "http" : "tcp",
               p->cfg.mode == BALANCE_ACTIVE_PASSIVE ? "active-passive" : "active-active",
               p->nservers, p->cfg.check ? p->cfg.check : "tcp");
    return 0;
}

int lb_start(struct lb *lb, uv_loop_t *loop, const struct lb_config *cfg, char *err,
             size_t errlen)
{
    memset(lb, 0, sizeof(*lb));
    lb->loop = loop;
    lb->metrics = metrics_new();
    for (size_t i = 0; i < cfg->npools; i++) {
        int rc = pool_start(lb, cfg->pools[i], err, errlen);
        if (rc)
            return rc;
    }
    if (cfg->has_admin)
        return lb_admin_start(lb, (const struct sockaddr *)&cfg->admin, err, errlen);
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

static void pool_stop(struct lb_pool *p)
{
    p->closing = true;
    uv_close((uv_handle_t *)&p->stall_timer, NULL);
    if (p->listening) {
        uv_close((uv_handle_t *)&p->listener, on_listener_closed);
        p->listening = false;
    } else if (!uv_is_closing((uv_handle_t *)&p->listener)) {
        uv_close((uv_handle_t *)&p->listener, on_listener_closed);
    }
    for (size_t i = 0; i < p->nservers; i++)
        server_retire(p->servers[i]);
    if (p->cfg.protocol == LB_PROTO_HTTP)
        lb_http_close_clients(p);
    else
        lb_tcp_close_clients(p);
}

/* Reconciles a live pool with its new definition. The listener, protocol and the set of
 * established connections stay; settings, servers and order change. */
static void pool_update(struct lb_pool *p, const struct lb_pool_def *def)
{
    pool_copy_cfg(p, &def->cfg);
    pool_apply_check(p);
    int old_active = p->bal.active;
    const char *old_active_name = old_active >= 0 ? p->servers[old_active]->name : NULL;
    struct lb_server *next[BALANCE_MAX_SERVERS];
    size_t n = 0;
    for (size_t i = 0; i < def->nservers; i++) {
        struct lb_server *s = find_server(p, def->servers[i].name);
        if (s && memcmp(&s->addr, &def->servers[i].addr, sizeof(s->addr)) == 0) {
            s->health.rise = (unsigned)p->cfg.rise;
            s->health.fall = (unsigned)p->cfg.fall;
            s->index = (unsigned)i;
        } else {
            s = server_new(p, &def->servers[i], (unsigned)i);
            log_notice("reload", "server added", "pool=%s server=%s addr=%s", p->name, s->name,
                       s->addr_str);
            if (p->check_kind != LB_CHECK_NONE)
                lb_check_start(s, 0);
        }
        next[n++] = s;
    }
    for (size_t i = 0; i < p->nservers; i++) {
        struct lb_server *s = p->servers[i];
        bool kept = false;
        for (size_t j = 0; j < n; j++)
            kept |= next[j] == s;
        if (!kept) {
            log_notice("reload", "server removed", "pool=%s server=%s", p->name, s->name);
            server_retire(s);
        }
    }
    memcpy(p->servers, next, n * sizeof(next[0]));
    p->nservers = n;
    balance_init(&p->bal, (enum balance_mode)p->cfg.mode, (enum balance_algo)p->cfg.balance,
                 (enum balance_failback)p->cfg.failback);
    /* keep serving from the same server after a reload unless it is gone */
    if (old_active_name && p->cfg.failback == BALANCE_FAILBACK_MANUAL)
        for (size_t i = 0; i < n; i++)
            if (strcmp(p->servers[i]->name, old_active_name) == 0)
                p->bal.active = (int)i;
    pool_refresh(p, "reload");
    pool_stall_timer(p);
}

int lb_reload(struct lb *lb, const struct lb_config *cfg, char *err, size_t errlen)
{
    /* protocol and listen address of a kept pool cannot change in place */
    for (size_t i = 0; i < cfg->npools; i++) {
        struct lb_pool *p = lb_find_pool(lb, cfg->pools[i]->name);
        if (p && (p->cfg.protocol != cfg->pools[i]->cfg.protocol ||
                  memcmp(&p->cfg.listen, &cfg->pools[i]->cfg.listen, sizeof(p->cfg.listen)))) {
            snprintf(err, errlen,
                     "pool '%s': protocol and listen address cannot change on reload (rename "
                     "the pool to replace it)",
                     p->name);
            return -EINVAL;
        }
    }
    struct lb_pool *keep[16];
    size_t nkeep = 0;
    for (size_t i = 0; i < lb->npools; i++) {
        struct lb_pool *p = lb->pools[i];
        bool found = false;
        for (size_t j = 0; j < cfg->npools; j++)
            found |= strcmp(cfg->pools[j]->name, p->name) == 0;
        if (found) {
            keep[nkeep++] = p;
        } else {
            log_notice("reload", "pool removed", "pool=%s", p->name);
            pool_stop(p);
            /* the struct stays reachable through its clients until they close */
            keep[nkeep++] = p;
        }
    }
    memcpy(lb->pools, keep, nkeep * sizeof(keep[0]));
    lb->npools = nkeep;
    for (size_t j = 0; j < cfg->npools; j++) {
        struct lb_pool *p = lb_find_pool(lb, cfg->pools[j]->name);
        if (p && !p->closing) {
            pool_update(p, cfg->pools[j]);
            continue;
        }
        if (p == NULL) {
            int rc = pool_start(lb, cfg->pools[j], err, errlen);
            if (rc)
                return rc;
        }
    }
    log_notice("reload", "configuration reloaded", "pools=%zu", cfg->npools);
    return 0;
}

void lb_stop(struct lb *lb)
{
    lb->stopping = true;
    for (size_t i = 0; i < lb->npools; i++)
        if (!lb->pools[i]->closing)
            pool_stop(lb->pools[i]);
    lb_admin_stop(lb);
}

void lb_free(struct lb *lb)
{
    for (size_t i = 0; i < lb->npools; i++) {
        struct lb_pool *p = lb->pools[i];
        free(p->name);
        free(p->check_path);
        free(p->cfg.check);
        free(p);
    }
    lb->npools = 0;
    metrics_free(lb->metrics);
    lb->metrics = NULL;
}
