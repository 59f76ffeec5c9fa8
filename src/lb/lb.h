/* SPDX-License-Identifier: MIT */
/* lb/lb.h -- the load balancer's runtime: pools of servers behind listeners, health checks,
 * the HTTP and TCP proxies and the admin endpoint, all on one libuv loop.
 *
 * Ownership: struct lb owns its pools, a pool owns its servers and its listener, a server owns
 * its check and its idle backend connections. Client sessions reference their pool; a server
 * removed by a reload is unlinked from its pool at once and freed when its last reference
 * (in-flight request, connection, check) is gone. */
#ifndef TD_LB_LB_H
#define TD_LB_LB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "base/list.h"
#include "base/metrics.h"
#include "lb/balance.h"
#include "lb/health.h"

enum lb_protocol {
    LB_PROTO_HTTP = 0,
    LB_PROTO_TCP,
};

enum lb_check_kind {
    LB_CHECK_TCP = 0,
    LB_CHECK_HTTP,
    LB_CHECK_RESP_ROLE,
    LB_CHECK_NONE,
};

enum lb_admin {
    LB_ADMIN_ENABLED = 0,
    LB_ADMIN_DRAIN,    /* no new requests/connections; existing ones finish */
    LB_ADMIN_DISABLED, /* no traffic at all; its TCP connections are closed */
};

enum lb_role {
    LB_ROLE_UNKNOWN = 0,
    LB_ROLE_PRIMARY,
    LB_ROLE_REPLICA,
};

/* One pool's settings, filled from the cfg table in lb_config.c. */
struct lb_pool_cfg {
    struct sockaddr_storage listen;
    int protocol;            /* enum lb_protocol */
    int mode;                /* enum balance_mode */
    int balance;             /* enum balance_algo */
    char *check;             /* "tcp", "http:/PATH", "resp-role", "none" */
    uint64_t inter_ms;
    uint64_t fastinter_ms;
    uint64_t fall;
    uint64_t rise;
    int failback;            /* enum balance_failback */
    uint64_t timeout_connect_ms;
    uint64_t timeout_server_ms;
    uint64_t timeout_check_ms;   /* 0: same as inter */
    uint64_t stall_timeout_ms;   /* http: down when no response progress this long; 0 off */
    uint64_t timeout_request_ms; /* whole request head+body from a client (slowloris) */
    uint64_t timeout_client_ms;  /* idle keep-alive client */
    uint64_t retries;
    uint64_t max_conns;
    uint64_t max_head_bytes;
    uint64_t max_body_bytes;
    uint64_t max_idle_backend;   /* pooled idle connections per server */
};

/* A parsed server line: NAME=ADDR. */
struct lb_server_cfg {
    char *name;
    struct sockaddr_storage addr;
};

struct lb_pool_def {
    char *name;
    struct lb_pool_cfg cfg;
    struct lb_server_cfg servers[BALANCE_MAX_SERVERS];
    size_t nservers;
};

/* The whole configuration: pools plus global settings. */
struct lb_config {
    struct lb_pool_def *pools[16];
    size_t npools;
    bool has_admin;
    struct sockaddr_storage admin;
};

struct lb;
struct lb_pool;
struct lb_check;

struct lb_server {
    struct lb_pool *pool;
    unsigned index;               /* priority order within the pool */
    char *name;
    struct sockaddr_storage addr;
    char addr_str[64];
    struct health health;
    enum lb_admin admin;
    enum lb_role role;
    char last_reason[160];
    uint64_t last_change_ms;
    bool removed;                 /* dropped by a reload; freed when refs reach 0 */
    unsigned refs;
    uv_timer_t check_timer;
    struct lb_check *check;       /* in flight, or NULL */
    struct list idle;             /* idle HTTP backend connections */
    struct list busy;             /* HTTP backend connections carrying a request */
    unsigned nidle;
    struct list tcp_sessions;     /* TCP-mode sessions using this server */
    uint32_t inflight;
    uint64_t progress_ms;         /* loop time of the last byte from it, or of 0 -> 1 in flight */
    int64_t *m_requests;
    int64_t *m_failures;
    int64_t *m_retries;
    int64_t *m_up;
    int64_t *m_inflight;
    int64_t *m_active;            /* active-passive: 1 when this server takes the traffic */
};

struct lb_pool {
    struct lb *lb;
    char *name;
    struct lb_pool_cfg cfg;
    enum lb_check_kind check_kind;
    char *check_path;
    struct lb_server *servers[BALANCE_MAX_SERVERS];
    struct balance_view views[BALANCE_MAX_SERVERS];
    size_t nservers;
    struct balance bal;
    uv_tcp_t listener;
    uv_timer_t stall_timer;       /* http pools with stall-timeout */
    bool listening;
    bool closing;
    unsigned nclients;
    struct list clients;          /* struct http_client or struct tcp_session */
    int64_t *m_requests;
    int64_t *m_no_server;
    int64_t *m_bad_requests;
    int64_t *m_conns;
    int64_t *m_rejected;
};

struct lb {
    uv_loop_t *loop;
    struct lb_pool *pools[16];
    size_t npools;
    struct metrics *metrics;
    struct lb_admin_srv *admin;
    bool stopping;
};

/* lb.c: lifecycle and server state */

/* Builds pools from cfg (borrowed) and starts listeners and checks. On error writes why. */
int lb_start(struct lb *lb, uv_loop_t *loop, const struct lb_config *cfg, char *err,
             size_t errlen);
/* Applies a new configuration without dropping established connections: pools and servers
 * are matched by name; new ones start, missing ones stop taking traffic and go away when idle. */
int lb_reload(struct lb *lb, const struct lb_config *cfg, char *err, size_t errlen);
/* Closes listeners, checks and connections; the loop then runs out. */
void lb_stop(struct lb *lb);
/* Frees what lb_stop left after the loop has run to completion. */
void lb_free(struct lb *lb);

/* True when the server may receive new traffic (healthy, enabled, not removed, and for a
 * resp-role pool known to be primary). */
bool lb_server_usable(const struct lb_server *s);
/* Live traffic to s failed with reason: down at once, re-checked fast. */
void lb_server_passive_failure(struct lb_server *s, const char *reason);
/* Applies a health transition/role/admin change: updates views and the active server, logs
 * with the cause, closes TCP sessions of a server that may no longer take them. */
void lb_server_changed(struct lb_server *s, const char *why);
/* Sets an admin state by pool and server name. Returns 0 or -ENOENT. */
int lb_admin_set(struct lb *lb, const char *pool, const char *server, enum lb_admin st);
/* Manual failback of an active-passive pool. Returns 0, -ENOENT, or -EINVAL (not a/p). */
int lb_pool_failback(struct lb *lb, const char *pool);
struct lb_pool *lb_find_pool(struct lb *lb, const char *name);
const char *lb_admin_name(enum lb_admin a);
const char *lb_role_name(enum lb_role r);

void lb_server_ref(struct lb_server *s);
void lb_server_unref(struct lb_server *s);

/* check.c */
void lb_check_start(struct lb_server *s, uint64_t delay_ms);
void lb_check_stop(struct lb_server *s);

/* proxy_http.c / proxy_tcp.c */
void lb_http_accept(struct lb_pool *p, uv_stream_t *listener);
/* The server stopped taking new requests: its idle connections are dropped; with redispatch
 * (it is down, disabled or removed, not merely draining) requests waiting on it that are safe
 * to repeat and have no response yet go to another server at once. */
void lb_http_server_closing(struct lb_server *s, bool redispatch);
void lb_http_close_clients(struct lb_pool *p);
void lb_tcp_accept(struct lb_pool *p, uv_stream_t *listener);
void lb_tcp_close_server_sessions(struct lb_server *s, const char *why);
void lb_tcp_close_clients(struct lb_pool *p);

/* admin.c */
struct lb_admin_srv;
int lb_admin_start(struct lb *lb, const struct sockaddr *addr, char *err, size_t errlen);
void lb_admin_stop(struct lb *lb);
/* Appends the /status JSON document. */
void lb_status_json(struct lb *lb, struct buf *out);

#endif
