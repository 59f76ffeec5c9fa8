/* SPDX-License-Identifier: MIT */
/* cli/cmd_demo.c -- `tandem demo`: runs harness/demo (two app servers behind the balancer in
 * each mode, one killed under load) and prints the measured comparison. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/cfg.h"
#include "base/log.h"
#include "cli/cli.h"
#include "harness/demo.h"

struct demo_cfg {
    uint64_t connections;
    uint64_t run_ms;
    uint64_t kill_at_ms;
    uint64_t restart_at_ms;
    uint64_t store_run_ms;
    uint64_t inter_ms;
    uint64_t fall;
    uint64_t rise;
    int mode;
    bool keep_logs;
    char *log_dir;
    char *exe;
};

static const char *const demo_modes[] = {"all",  "both",  "active-active", "active-passive",
                                         "store", NULL};
/* bits of struct demo_opts.modes, per choice above */
static const unsigned demo_mode_bits[] = {3u | DEMO_STORE, 3u, 1u, 2u, DEMO_STORE};

#define F(x) offsetof(struct demo_cfg, x)
static const struct cfg_entry demo_table[] = {
    {"mode", CFG_ENUM, F(mode), 0, 0, "all", demo_modes,
     "which parts to show: all, both stateless modes, one of them, or the store", 0},
    {"connections", CFG_UINT, F(connections), 1, 1000, "8", NULL, "load connections", 0},
    {"run", CFG_DURATION, F(run_ms), 1000, 600000, "6s", NULL, "length of each load run", 0},
    {"kill-at", CFG_DURATION, F(kill_at_ms), 100, 0, "2s", NULL, "kill -9 app A at", 0},
    {"restart-at", CFG_DURATION, F(restart_at_ms), 100, 0, "3500ms", NULL, "restart app A at", 0},
    {"store-run", CFG_DURATION, F(store_run_ms), 1000, 600000, "8s", NULL,
     "length of the store run (the primary is killed at --kill-at)", 0},
    {"inter", CFG_DURATION, F(inter_ms), 10, 60000, "100ms", NULL, "lb health check interval", 0},
    {"fall", CFG_UINT, F(fall), 1, 100, "2", NULL, "lb: failed checks to mark a server down", 0},
    {"rise", CFG_UINT, F(rise), 1, 100, "2", NULL, "lb: good checks to mark a server up", 0},
    {"keep-logs", CFG_BOOL, F(keep_logs), 0, 0, "no", NULL, "keep the processes' logs", 0},
    {"log-dir", CFG_STRING, F(log_dir), 0, 0, NULL, NULL,
     "directory for the logs (default: a new /tmp/tandem-demo-*, removed after a good run)", 0},
    {"exe", CFG_STRING, F(exe), 0, 0, NULL, NULL,
     "tandem binary to start the servers with (default: this one)", 0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef F

int cmd_demo_main(int argc, char **argv)
{
    struct demo_cfg cfg;
    char err[512];
    memset(&cfg, 0, sizeof(cfg));
    if (cfg_defaults(demo_table, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem demo: %s\n", err);
        return 2;
    }
    struct cli_spec spec = {
        .cmd = "demo",
        .usage = "demo [OPTIONS]",
        .about = "The architecture's story, live and measured: two `tandem app` servers behind\n"
                 "`tandem lb`, first active-active, then active-passive. Under load, app A is\n"
                 "killed with SIGKILL and restarted; the demo prints failed requests, the longest\n"
                 "gap without a successful response, the traffic split, the idle capacity and\n"
                 "failback. Then the stateful tier: `tandem up` runs the whole topology, balance\n"
                 "updates go through the app tier and the store primary is killed with SIGKILL:\n"
                 "promotion, re-routing, a new replica, writes lost. A comparison table ends it.\n"
                 "Every process it starts is stopped on exit, also after Ctrl-C.",
        .table = demo_table,
    };
    int rc = 2;
    int npos = cli_parse(argc, argv, &spec, &cfg, NULL, 0);
    if (npos == -1) {
        rc = 0;
        goto out;
    }
    if (npos < 0)
        goto out;
    if (cfg.kill_at_ms >= cfg.restart_at_ms || cfg.restart_at_ms >= cfg.run_ms) {
        fprintf(stderr, "tandem demo: need --kill-at < --restart-at < --run\n");
        goto out;
    }
    if (cfg.kill_at_ms >= cfg.store_run_ms) {
        fprintf(stderr, "tandem demo: need --kill-at < --store-run\n");
        goto out;
    }
    log_init("demo", NULL);
    struct demo_opts o;
    demo_opts_default(&o);
    o.exe = cfg.exe;
    o.log_dir = cfg.log_dir;
    o.keep_logs = cfg.keep_logs;
    o.connections = (unsigned)cfg.connections;
    o.run_ms = cfg.run_ms;
    o.kill_at_ms = cfg.kill_at_ms;
    o.restart_at_ms = cfg.restart_at_ms;
    o.inter_ms = cfg.inter_ms;
    o.fall = (unsigned)cfg.fall;
    o.rise = (unsigned)cfg.rise;
    o.modes = demo_mode_bits[cfg.mode];
    o.store_run_ms = cfg.store_run_ms;
    rc = demo_run(&o);
out:
    cfg_free(demo_table, &cfg);
    return rc;
}
