/* SPDX-License-Identifier: MIT */
/* cli/cmd_app.c -- `tandem app`: flags, logging, signals and the event loop around
 * app/app.c. SIGINT/SIGTERM start a graceful stop; a second signal makes it immediate. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "app/app.h"
#include "base/cfg.h"
#include "base/log.h"
#include "cli/cli.h"

struct app_cli {
    struct app_config app;
    int log_level;
};

static const char *const log_levels[] = {"error", "warn", "notice", "info", "debug", NULL};

#define F(field) offsetof(struct app_cli, field)
static const struct cfg_entry app_table[] = {
    {"listen", CFG_ADDR, F(app.listen), 0, 0, "127.0.0.1:8080", NULL, "address to serve HTTP on",
     0},
    {"name", CFG_STRING, F(app.name), 0, 0, NULL, NULL,
     "this instance's name, sent as X-Server (required)", 0},
    {"store", CFG_ADDR, F(app.store), 0, 0, NULL, NULL,
     "store address (Redis protocol); without it store endpoints answer 503", 0},
    {"store-timeout", CFG_DURATION, F(app.store_timeout_ms), 1, 600000, "500ms", NULL,
     "longest a request waits for the store before 503", 0},
    {"store-connect-timeout", CFG_DURATION, F(app.store_connect_timeout_ms), 1, 600000, "1s", NULL,
     "longest a store connect attempt may take", 0},
    {"store-reconnect-min", CFG_DURATION, F(app.store_reconnect_min_ms), 1, 600000, "50ms", NULL,
     "first reconnect delay (doubles per failed attempt)", 0},
    {"store-reconnect-max", CFG_DURATION, F(app.store_reconnect_max_ms), 1, 600000, "1s", NULL,
     "longest reconnect delay", 0},
    {"idle-timeout", CFG_DURATION, F(app.idle_timeout_ms), 1, 0, "60s", NULL,
     "close a keep-alive connection idle this long", 0},
    {"request-timeout", CFG_DURATION, F(app.request_timeout_ms), 1, 0, "10s", NULL,
     "longest time to receive one request (408 after)", 0},
    {"shutdown-timeout", CFG_DURATION, F(app.shutdown_timeout_ms), 0, 0, "2s", NULL,
     "on SIGTERM, longest wait for requests in flight", 0},
    {"max-conns", CFG_UINT, F(app.max_conns), 1, 1000000, "1024", NULL,
     "client connections served at once; more are closed at accept", 0},
    {"max-body", CFG_SIZE, F(app.max_body_bytes), 1, 16 * 1024 * 1024, "64kb", NULL,
     "largest request body (413 above)", 0},
    {"idempotency-ttl", CFG_DURATION, F(app.idempotency_ttl_ms), 1000, 0, "24h", NULL,
     "how long an Idempotency-Key's outcome is kept", 0},
    {"log-level", CFG_ENUM, F(log_level), 0, 0, "notice", log_levels, "log verbosity", 0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef F

static const struct cli_spec app_spec = {
    .cmd = "app",
    .usage = "app --listen ADDR --name NAME [--store ADDR] [OPTIONS]",
    .about = "The example stateless HTTP/1.1 JSON API that sits behind tandem's load balancer.\n"
             "Endpoints: GET /healthz, GET /whoami, GET|PUT|DELETE /users/{id},\n"
             "GET|POST /users/{id}/balance (POST {\"delta\": N}, honours Idempotency-Key).\n"
             "Every response carries X-Server: NAME. Nothing is kept between requests.",
    .table = app_table,
};

struct app_main {
    uv_loop_t loop;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    struct app_server *srv;
    int signals;
    bool stopped;
};

static void on_stopped(void *ud)
{
    struct app_main *m = ud;
    m->stopped = true;
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct app_main *m = h->data;
    if (m->stopped)
        return;
    m->signals++;
    log_notice("app", "signal received", "signal=%s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    app_server_close(m->srv, m->signals == 1, on_stopped, m);
}

int cmd_app_main(int argc, char **argv)
{
    struct app_cli c;
    memset(&c, 0, sizeof(c));
    char err[512];
    if (cfg_defaults(app_table, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem app: %s\n", err);
        return 2;
    }
    int rc = cli_parse(argc, argv, &app_spec, &c, NULL, 0);
    if (rc < 0) {
        cfg_free(app_table, &c);
        return rc == -1 ? 0 : 2;
    }
    if (c.app.name == NULL) {
        fprintf(stderr, "tandem app: --name is required (see --help)\n");
        cfg_free(app_table, &c);
        return 2;
    }
    if (!app_name_is_valid(c.app.name)) {
        fprintf(stderr, "tandem app: --name '%s' is invalid: use 1-64 of [A-Za-z0-9_.-]\n",
                c.app.name);
        cfg_free(app_table, &c);
        return 2;
    }
    if (c.app.store_reconnect_max_ms < c.app.store_reconnect_min_ms)
        c.app.store_reconnect_max_ms = c.app.store_reconnect_min_ms;
    log_init("app", c.app.name);
    log_set_level((enum log_level)c.log_level);

    struct app_main m;
    memset(&m, 0, sizeof(m));
    uv_loop_init(&m.loop);
    int exit_code = 0;
    rc = app_server_new(&m.loop, &c.app, &m.srv, err, sizeof(err));
    if (rc != 0) {
        log_error("app", "cannot start", "reason=\"%s\"", err);
        exit_code = 1;
    } else {
        uv_signal_init(&m.loop, &m.sigint);
        uv_signal_init(&m.loop, &m.sigterm);
        m.sigint.data = &m;
        m.sigterm.data = &m;
        uv_signal_start(&m.sigint, on_signal, SIGINT);
        uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    }
    uv_run(&m.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&m.loop) != 0) {
        log_error("app", "event loop still had open handles at exit", "name=%s", c.app.name);
        exit_code = 1;
    }
    cfg_free(app_table, &c);
    return exit_code;
}
