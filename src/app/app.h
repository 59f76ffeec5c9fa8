/* SPDX-License-Identifier: MIT */
/* app/app.h -- `tandem app`, the example stateless HTTP/1.1 JSON API behind tandem's load
 * balancer: users and balances kept in the store, nothing kept between requests. */
#ifndef TD_APP_APP_H
#define TD_APP_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

struct app_config {
    struct sockaddr_storage listen;
    struct sockaddr_storage store; /* ss_family AF_UNSPEC: no store configured */
    char *name;                    /* borrowed; [A-Za-z0-9_.-]{1,64} */
    uint64_t store_timeout_ms;     /* a request's whole wait on the store */
    uint64_t store_connect_timeout_ms;
    uint64_t store_reconnect_min_ms;
    uint64_t store_reconnect_max_ms;
    uint64_t idle_timeout_ms;     /* keep-alive connection with no request */
    uint64_t request_timeout_ms;  /* from a request's first byte to its last */
    uint64_t shutdown_timeout_ms; /* graceful drain on SIGTERM before closing the rest */
    uint64_t max_conns;
    uint64_t max_body_bytes;
    uint64_t idempotency_ttl_ms;
};

struct app_server;
typedef void (*app_server_closed_fn)(void *ud);

/* True when name is acceptable as --name (it goes into a header and every log line). */
bool app_name_is_valid(const char *name);
/* Binds and listens on cfg->listen, and starts connecting to the store when one is set.
 * cfg is copied (the name too). Returns 0 and sets *out, or a negative code with a reason in
 * err. Must run on loop's thread. */
int app_server_new(uv_loop_t *loop, const struct app_config *cfg, struct app_server **out,
                   char *err, size_t errlen);
/* The bound address as "HOST:PORT" (useful with port 0). */
const char *app_server_addr(const struct app_server *s);
/* Stops the server. graceful: stop accepting, close idle connections, let requests in flight
 * finish (bounded by shutdown_timeout_ms), then close the rest; otherwise close everything now.
 * A second call may escalate a graceful close to an immediate one (its cb is ignored). Once
 * every handle is closed, s is freed and cb(ud) runs (never synchronously). */
void app_server_close(struct app_server *s, bool graceful, app_server_closed_fn cb, void *ud);

#endif
