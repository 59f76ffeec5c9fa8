/* SPDX-License-Identifier: MIT */
/* cli/cmd_arbiter.c -- `tandem arbiter`: the built-in coordinator. Wires the configuration
 * table, the data directory, the arbiter (coord/arbiter) and signals. */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "base/cfg.h"
#include "base/err.h"
#include "base/log.h"
#include "cli/cli.h"
#include "coord/arbiter.h"

#define OFF(f) offsetof(struct arbiter_config, f)

static const struct cfg_entry arbiter_table[] = {
    {"listen", CFG_ADDR, OFF(listen), 0, 0, "127.0.0.1:7000", NULL,
     "address to listen on, HOST:PORT", 0},
    {"dir", CFG_STRING, OFF(dir), 0, 0, "tandem-data/arbiter", NULL,
     "state directory: arbiter.state (created if missing)", 0},
    {"requirepass", CFG_STRING, OFF(requirepass), 0, 0, NULL, NULL,
     "password clients must give with AUTH", 0},
    {"max-clients", CFG_UINT, OFF(max_clients), 1, 100000, "1000", NULL,
     "connections served at once; more get an error", 0},
    {"log-level", CFG_STRING, OFF(log_level), 0, 0, "notice", NULL, "error|warn|notice|info|debug",
     0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};

static const char about[] =
    "The built-in coordinator (a witness) for `tandem db --coordinator builtin://HOST:PORT`:\n"
    "keys with revisions, leases with TTLs, compare-and-set transactions and watches, over\n"
    "the Redis protocol (redis-cli works: try READ \"\" or INFO).\n"
    "\n"
    "Durability: every change (GRANT, REVOKE, TXN, a lease expiry) is written to\n"
    "DIR/arbiter.state and fsynced before its reply is sent, so a restart, even after\n"
    "kill -9 or a power loss, keeps every acknowledged key and the revision. Leases are\n"
    "restored with a full TTL from the restart (never expiring early). A damaged state file\n"
    "refuses to start. Details: docs/arbiter.md.";

struct arbiter_main {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    struct arbiter *arb;
    bool stopping;
    int exit_code;
};

static void on_closed(void *ud)
{
    (void)ud;
    log_notice("arbiter", "stopped", "");
}

static void stop(struct arbiter_main *m, const char *why)
{
    if (m->stopping)
        return;
    m->stopping = true;
    log_notice("arbiter", "stopping", "cause=\"%s\"", why);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    arbiter_close(m->arb, on_closed, m);
}

static void on_signal(uv_signal_t *s, int signum)
{
    stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_fatal(void *ud)
{
    struct arbiter_main *m = ud;
    m->exit_code = 1;
    stop(m, "state file I/O error");
}

int cmd_arbiter_main(int argc, char **argv)
{
    struct arbiter_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    char err[1024];
    if (cfg_defaults(arbiter_table, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem arbiter: %s\n", err);
        return 2;
    }
    struct cli_spec spec = {
        "arbiter",
        "arbiter [--listen ADDR] [--dir DIR] [--requirepass SECRET]",
        about,
        arbiter_table,
        NULL,
        NULL,
        NULL,
    };
    int rc = cli_parse(argc, argv, &spec, &cfg, NULL, 0);
    if (rc < 0) {
        cfg_free(arbiter_table, &cfg);
        return rc == -1 ? 0 : 2;
    }
    enum log_level level;
    if (log_level_parse(cfg.log_level, &level) != 0) {
        fprintf(stderr, "tandem arbiter: --log-level: '%s' is not error|warn|notice|info|debug\n",
                cfg.log_level);
        cfg_free(arbiter_table, &cfg);
        return 2;
    }
    if (cfg.dir == NULL || cfg.dir[0] == '\0') {
        fprintf(stderr, "tandem arbiter: --dir must not be empty (see --help)\n");
        cfg_free(arbiter_table, &cfg);
        return 2;
    }
    if (cli_data_dir(cfg.dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem arbiter: %s\n", err);
        cfg_free(arbiter_table, &cfg);
        return 2;
    }
    log_init("arbiter", NULL);
    log_set_level(level);

    struct arbiter_main m;
    memset(&m, 0, sizeof(m));
    uv_loop_init(&m.loop);
    m.arb = arbiter_new(&m.loop, &cfg);
    arbiter_on_fatal(m.arb, on_fatal, &m);
    uv_signal_init(&m.loop, &m.sigint);
    uv_signal_init(&m.loop, &m.sigterm);
    m.sigint.data = &m;
    m.sigterm.data = &m;
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    if (arbiter_start(m.arb, err, sizeof(err)) != 0) {
        log_error("arbiter", "cannot start", "err=\"%s\"", err);
        m.exit_code = 1;
        stop(&m, "startup failure");
    }
    uv_run(&m.loop, UV_RUN_DEFAULT);
    int exit_code = m.exit_code;
    if (uv_loop_close(&m.loop) != 0) {
        log_error("arbiter", "event loop still has open handles at exit", "");
        exit_code = 1;
    }
    arbiter_free(m.arb);
    cfg_free(arbiter_table, &cfg);
    return exit_code;
}
