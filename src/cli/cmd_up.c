/* SPDX-License-Identifier: MIT */
/* cli/cmd_up.c -- `tandem up [FILE]`: the whole topology on loopback, supervised by
 * harness/up until SIGINT/SIGTERM, then stopped by PID. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/buf.h"
#include "base/cfg.h"
#include "base/log.h"
#include "cli/cli.h"
#include "harness/up.h"
#include "harness/up_config.h"

struct up_flags {
    char *dir;
    uint64_t grace_ms;
    bool dump;
};

#define F(x) offsetof(struct up_flags, x)
static const struct cfg_entry up_flag_table[] = {
    {"dir", CFG_STRING, F(dir), 0, 0, NULL, NULL,
     "logs and data (overrides the file's dir; default: a new /tmp/tandem-up-XXXXXX)", 0},
    {"grace", CFG_DURATION, F(grace_ms), 100, 600000, "5s", NULL,
     "on Ctrl-C, SIGKILL what has not stopped after SIGTERM within this", 0},
    {"dump-config", CFG_BOOL, F(dump), 0, 0, "no", NULL,
     "print the [up] settings in effect and exit", 0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef F

struct run {
    bool stop;
    int signum;
};

static void on_signal(uv_signal_t *s, int signum)
{
    struct run *r = s->data;
    r->stop = true;
    r->signum = signum;
}

static void on_wake(uv_timer_t *t)
{
    (void)t;
}

int cmd_up_main(int argc, char **argv)
{
    struct up_flags fl;
    char err[512];
    memset(&fl, 0, sizeof(fl));
    if (cfg_defaults(up_flag_table, &fl, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem up: %s\n", err);
        return 2;
    }
    struct cli_spec spec = {
        .cmd = "up",
        .usage = "up [OPTIONS] [FILE]",
        .about = "The whole architecture on 127.0.0.1, each role a supervised process: an\n"
                 "arbiter; db nodes (db1, db2) electing a primary, sync replication; app servers\n"
                 "A and B using the store through a balancer pool that follows the primary; an\n"
                 "HTTP pool (active-active) over the apps; the balancer's admin endpoint. FILE\n"
                 "(ini, see docs/up.md) changes the topology and fixes ports; without it every\n"
                 "port is a free one, printed at start. Nothing is restarted, but when the\n"
                 "primary is left with too few replicas, it asks up for a new db node.\n"
                 "Ctrl-C stops every process (by PID). `tandem status` shows the topology.",
        .table = up_flag_table,
    };
    struct up_config cfg;
    char *pos[1] = {NULL};
    int rc = 2;
    if (up_config_default(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem up: %s\n", err);
        cfg_free(up_flag_table, &fl);
        return 2;
    }
    int npos = cli_parse(argc, argv, &spec, &fl, pos, 1);
    if (npos == -1) {
        rc = 0;
        goto out;
    }
    if (npos < 0)
        goto out;
    if (npos == 1 && up_config_load(&cfg, pos[0], err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem up: %s\n", err);
        goto out;
    }
    if (fl.dir) {
        free(cfg.dir);
        cfg.dir = fl.dir;
        fl.dir = NULL;
    }
    if (up_config_validate(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem up: %s%s%s\n", npos ? pos[0] : "", npos ? ": " : "", err);
        goto out;
    }
    if (fl.dump) {
        cfg_dump(up_config_table, &cfg, stdout);
        rc = 0;
        goto out;
    }
    log_init("up", NULL);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct run r = {false, 0};
    uv_signal_t sigs[2];
    static const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&loop, &sigs[i]);
        sigs[i].data = &r;
        uv_signal_start(&sigs[i], on_signal, signums[i]);
    }
    uv_timer_t wake;
    uv_timer_init(&loop, &wake);
    struct up_opts o = {.out = stdout};
    struct up *u = NULL;
    rc = 1;
    printf("tandem up: %s\n", npos ? pos[0] : "the built-in topology (no FILE given)");
    fflush(stdout);
    if (up_new(&loop, &cfg, &o, &u, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem up: %s\n", err);
        goto close;
    }
    if (up_start(u) == 0) {
        rc = 0;
        while (!r.stop)
            uv_run(&loop, UV_RUN_ONCE);
        printf("signal %d: stopping every process\n", r.signum);
    }
    fflush(stdout);
    up_stop(u, fl.grace_ms);
    while (!up_is_stopped(u)) {
        uv_timer_start(&wake, on_wake, 50, 0);
        uv_run(&loop, UV_RUN_ONCE);
    }
    struct buf bad;
    buf_init(&bad);
    if (up_bad_exits(u, &bad) > 0) {
        printf("not every process stopped cleanly:\n%.*s", (int)bad.len, bad.p);
        rc = 1;
    }
    buf_free(&bad);
    up_release(u);
    while (!up_is_released(u))
        uv_run(&loop, UV_RUN_ONCE);
    printf("stopped; logs kept in %s\n", up_dir(u));
    up_free(u);
close:
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&sigs[i], NULL);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "tandem up: loop closed with handles open\n");
        rc = 1;
    }
out:
    up_config_free(&cfg);
    cfg_free(up_flag_table, &fl);
    return rc;
}
