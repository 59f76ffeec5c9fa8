/* SPDX-License-Identifier: MIT */
/* cli/cmd_load.c -- `tandem load`: drive HTTP/1.1 keep-alive load at a URL and report counts,
 * errors, latency, the traffic split per X-Server, the longest gap without a successful
 * response, and an optional timeline. `--json` prints exactly one JSON object on stdout (see
 * harness/loadreport.h); logs go to stderr. SIGINT/SIGTERM end the run early; the report is
 * still printed and the exit code is 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/cfg.h"
#include "base/log.h"
#include "cli/cli.h"
#include "harness/loadgen.h"
#include "harness/loadreport.h"

struct load_cfg {
    char *url;
    uint64_t connections;
    uint64_t duration_ms;
    char *method;
    char *body;
    uint64_t timeout_ms;
    uint64_t rate;
    uint64_t timeline_ms;
    uint64_t reconnect_delay_ms;
    bool json;
    char *log_level;
};

#define F(x) offsetof(struct load_cfg, x)
static const struct cfg_entry load_table[] = {
    {"url", CFG_STRING, F(url), 0, 0, NULL, NULL, "target, http://HOST:PORT/PATH (required)", 0},
    {"connections", CFG_UINT, F(connections), 1, 10000, "8", NULL,
     "keep-alive connections, one request at a time each", 0},
    {"duration", CFG_DURATION, F(duration_ms), 0, 0, "5s", NULL,
     "length of the run; 0 runs until SIGINT/SIGTERM", 0},
    {"method", CFG_STRING, F(method), 0, 0, "GET", NULL, "request method", 0},
    {"body", CFG_STRING, F(body), 0, 0, NULL, NULL, "request body (sent with Content-Length)", 0},
    {"timeout", CFG_DURATION, F(timeout_ms), 1, 0, "1s", NULL,
     "per request, connect included; then the connection is reopened", 0},
    {"rate", CFG_UINT, F(rate), 0, 10000000, "0", NULL,
     "total requests per second; 0 = as fast as possible", 0},
    {"timeline", CFG_DURATION, F(timeline_ms), 0, 0, "0", NULL,
     "window of the per-window timeline; 0 = no timeline", 0},
    {"reconnect-delay", CFG_DURATION, F(reconnect_delay_ms), 0, 0, "10ms", NULL,
     "pause of a connection after a failed connect", 0},
    {"json", CFG_BOOL, F(json), 0, 0, "no", NULL, "print one JSON object instead of the table", 0},
    {"log-level", CFG_STRING, F(log_level), 0, 0, "notice", NULL,
     "error|warn|notice|info|debug (stderr)", 0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef F

struct headers {
    char **v;
    size_t n;
};

static int extra_flag(void *ud, const char *name, const char *value, char *err, size_t errlen)
{
    struct headers *h = ud;
    if (strcmp(name, "header") != 0 && strcmp(name, "H") != 0)
        return 1;
    if (value == NULL) {
        snprintf(err, errlen, "option --header needs a value");
        return -1;
    }
    h->v = xrealloc(h->v, (h->n + 1) * sizeof(char *));
    h->v[h->n++] = xstrdup(value);
    return 0;
}

struct run {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sigusr1;
    struct loadgen *lg;
};

/* SIGUSR1 marks an event (a fault injected by a test or a drill): the stats split there. */
static void on_mark(uv_signal_t *s, int signum)
{
    struct run *r = s->data;
    (void)signum;
    int phase = loadgen_mark(r->lg);
    log_info("load", "mark", "phase=%d", phase);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct run *r = s->data;
    log_notice("load", "stopping early", "signal=%d", signum);
    loadgen_stop(r->lg);
}

static void on_done(struct loadgen *lg, void *ud)
{
    (void)lg;
    struct run *r = ud;
    /* the loop can end once the signal watchers are gone */
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->sigusr1, NULL);
}

int cmd_load_main(int argc, char **argv)
{
    struct load_cfg cfg;
    struct headers hdrs = {NULL, 0};
    char err[512];
    memset(&cfg, 0, sizeof(cfg));
    if (cfg_defaults(load_table, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem load: %s\n", err);
        return 2;
    }
    struct cli_spec spec = {
        .cmd = "load",
        .usage = "load --url http://HOST:PORT/PATH [--connections 8] [--duration 5s] [OPTIONS]",
        .about = "HTTP/1.1 keep-alive load generator and failover checker. Each connection\n"
                 "sends one request at a time. A request is ok on any status < 500; it fails on\n"
                 "a 5xx, a connect error, a reset or EOF before a complete response, a malformed\n"
                 "response or a timeout. Reports counts, errors, ok responses per second, latency\n"
                 "p50/p99/max, the traffic split per X-Server response header, the longest gap\n"
                 "between two successful responses (and the time to the first one), and with\n"
                 "--timeline per-window counts. --json prints one JSON object on stdout.\n"
                 "SIGUSR1 marks an event (say, a fault injected by a drill): the report's\n"
                 "\"phases\" split the run there, each with its own counts and longest gap.",
        .table = load_table,
        .extra_help = "  --header 'Name: value'       extra request header (repeatable)\n",
        .extra = extra_flag,
        .ud = &hdrs,
    };
    int rc = 2;
    int npos = cli_parse(argc, argv, &spec, &cfg, NULL, 0);
    struct loadgen *lg = NULL;
    if (npos == -1) {
        rc = 0;
        goto out;
    }
    if (npos < 0)
        goto out;
    enum log_level lvl;
    if (log_level_parse(cfg.log_level, &lvl) != 0) {
        fprintf(stderr, "tandem load: bad --log-level '%s'\n", cfg.log_level);
        goto out;
    }
    log_set_level(lvl);
    log_init("load", NULL);
    if (cfg.url == NULL) {
        fprintf(stderr, "tandem load: --url is required (see --help)\n");
        goto out;
    }
    struct loadgen_opts o = {
        .url = cfg.url,
        .method = cfg.method,
        .headers = (const char *const *)hdrs.v,
        .nheaders = hdrs.n,
        .body = cfg.body,
        .connections = (unsigned)cfg.connections,
        .duration_ms = cfg.duration_ms,
        .timeout_ms = cfg.timeout_ms,
        .rate = cfg.rate,
        .timeline_ms = cfg.timeline_ms,
        .reconnect_delay_ms = cfg.reconnect_delay_ms,
    };
    struct run r;
    memset(&r, 0, sizeof(r));
    if (uv_loop_init(&r.loop) != 0) {
        fprintf(stderr, "tandem load: uv_loop_init failed\n");
        rc = 1;
        goto out;
    }
    if (loadgen_new(&r.loop, &o, &lg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem load: %s\n", err);
        uv_loop_close(&r.loop);
        goto out;
    }
    r.lg = lg;
    uv_signal_init(&r.loop, &r.sigint);
    uv_signal_init(&r.loop, &r.sigterm);
    uv_signal_init(&r.loop, &r.sigusr1);
    r.sigint.data = r.sigterm.data = r.sigusr1.data = &r;
    uv_signal_start(&r.sigusr1, on_mark, SIGUSR1);
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    int src = loadgen_start(lg, on_done, &r);
    if (src != 0) {
        fprintf(stderr, "tandem load: cannot start: %s\n", uv_strerror(src));
        uv_close((uv_handle_t *)&r.sigint, NULL);
        uv_close((uv_handle_t *)&r.sigterm, NULL);
        uv_close((uv_handle_t *)&r.sigusr1, NULL);
        uv_run(&r.loop, UV_RUN_DEFAULT);
        uv_loop_close(&r.loop);
        rc = 1;
        goto out;
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    int crc = uv_loop_close(&r.loop);
    if (crc != 0)
        log_warn("load", "loop closed with handles open", "err=%s", uv_err_name(crc));
    const struct loadstats *st = loadgen_stats(lg);
    if (cfg.json) {
        char *js = loadreport_json(st);
        printf("%s\n", js);
        free(js);
    } else {
        loadreport_text(st, loadgen_url(lg), (unsigned)cfg.connections, stdout);
    }
    fflush(stdout);
    rc = 0;
out:
    loadgen_free(lg);
    for (size_t i = 0; i < hdrs.n; i++)
        free(hdrs.v[i]);
    free(hdrs.v);
    cfg_free(load_table, &cfg);
    return rc;
}
