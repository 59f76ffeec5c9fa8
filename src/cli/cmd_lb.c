/* SPDX-License-Identifier: MIT */
/* cli/cmd_lb.c -- `tandem lb`: one pool from flags, or any number from --config FILE.
 * SIGHUP reloads the file without dropping established connections; SIGINT/SIGTERM stop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/log.h"
#include "base/parse.h"
#include "cli/cli.h"
#include "lb/lb.h"
#include "lb/lb_config.h"

struct lb_cli {
    struct lb_config cfg;
    struct lb_pool_def *flag_pool;
    const char *config_path;
    bool dump;
    bool pool_flags_used;
    const char *name;
};

static const char extra_help[] =
    "  --server NAME=ADDR           a server of the pool; repeat, order = priority\n"
    "  --admin ADDR                 admin endpoint: /metrics, /status, drain/enable/disable\n"
    "  --config FILE                pools from an INI file ([lb] admin=..., [pool NAME] ...);\n"
    "                               SIGHUP reloads it\n"
    "  --pool-name NAME             name of the pool built from flags [default: default]\n"
    "  --log-level LEVEL            error|warn|notice|info|debug [default: notice]\n"
    "  --dump-config                print the effective configuration and exit\n";

static int on_extra(void *ud, const char *name, const char *value, char *err, size_t errlen)
{
    struct lb_cli *c = ud;
    if (strcmp(name, "dump-config") == 0) {
        c->dump = true;
        return 0;
    }
    if (value == NULL) {
        snprintf(err, errlen, "option --%s needs a value", name);
        return -EINVAL;
    }
    if (strcmp(name, "server") == 0) {
        c->pool_flags_used = true;
        return lb_config_add_server(c->flag_pool, value, err, errlen);
    }
    if (strcmp(name, "admin") == 0) {
        char why[256];
        if (parse_addr(value, &c->cfg.admin, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "--admin: %s", why);
            return -EINVAL;
        }
        c->cfg.has_admin = true;
        return 0;
    }
    if (strcmp(name, "config") == 0) {
        c->config_path = value;
        return 0;
    }
    if (strcmp(name, "pool-name") == 0) {
        c->name = value;
        return 0;
    }
    if (strcmp(name, "log-level") == 0) {
        enum log_level lvl;
        if (log_level_parse(value, &lvl) != 0) {
            snprintf(err, errlen, "--log-level: '%s' is not error|warn|notice|info|debug", value);
            return -EINVAL;
        }
        log_set_level(lvl);
        return 0;
    }
    return 1;
}

struct lb_run {
    struct lb lb;
    uv_signal_t sigint, sigterm, sighup;
    const char *config_path;
    const struct lb_config *flag_cfg;
};

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct lb_run *r = h->data;
    log_notice("main", "stopping", "signal=%s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    lb_stop(&r->lb);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->sighup, NULL);
}

static void on_hup(uv_signal_t *h, int signum)
{
    struct lb_run *r = h->data;
    (void)signum;
    if (r->config_path == NULL) {
        log_notice("reload", "SIGHUP ignored: started from flags, no config file to re-read", "");
        return;
    }
    struct lb_config cfg;
    char err[512];
    lb_config_init(&cfg);
    int rc = lb_config_load_file(&cfg, r->config_path, err, sizeof(err));
    if (rc == 0)
        rc = lb_config_validate(&cfg, err, sizeof(err));
    if (rc == 0)
        rc = lb_reload(&r->lb, &cfg, err, sizeof(err));
    if (rc != 0)
        log_error("reload", "reload failed, keeping the running configuration", "err=\"%s\"",
                  err);
    lb_config_free(&cfg);
}

static void dump_config(const struct lb_config *cfg)
{
    if (cfg->has_admin) {
        char a[64];
        addr_format((const struct sockaddr *)&cfg->admin, a, sizeof(a));
        printf("[lb]\nadmin = %s\n\n", a);
    }
    for (size_t i = 0; i < cfg->npools; i++) {
        const struct lb_pool_def *p = cfg->pools[i];
        printf("[pool %s]\n", p->name);
        cfg_dump(lb_pool_table, &p->cfg, stdout);
        for (size_t k = 0; k < p->nservers; k++) {
            char a[64];
            addr_format((const struct sockaddr *)&p->servers[k].addr, a, sizeof(a));
            printf("server = %s=%s\n", p->servers[k].name, a);
        }
        printf("\n");
    }
}

int cmd_lb_main(int argc, char **argv)
{
    struct lb_cli c;
    memset(&c, 0, sizeof(c));
    char err[512];
    log_init("lb", NULL);
    lb_config_init(&c.cfg);
    /* flags fill a scratch pool; it becomes the only pool unless --config is used */
    c.flag_pool = lb_config_add_pool(&c.cfg, "default", err, sizeof(err));
    struct cli_spec spec = {
        .cmd = "lb",
        .usage = "lb --listen ADDR --server NAME=ADDR [--server ...] [options]\n"
                 "       tandem lb --config FILE",
        .about = "Load balancer. A pool is active-active (every healthy server takes traffic)\n"
                 "or active-passive (the first healthy server takes it all, the rest stand by).\n"
                 "Health comes from active checks and from live traffic: a refused or reset\n"
                 "connection takes a server out at once, and a request that failed before any\n"
                 "response byte is retried on another server when it is safe to repeat.",
        .table = lb_pool_table,
        .extra_help = extra_help,
        .extra = on_extra,
        .ud = &c,
    };
    char *pos[1];
    int np = cli_parse(argc, argv, &spec, &c.flag_pool->cfg, pos, 0);
    if (np == -1) {
        lb_config_free(&c.cfg);
        return 0;
    }
    if (np < 0) {
        lb_config_free(&c.cfg);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && cfg_find(lb_pool_table, argv[i] + 2))
            c.pool_flags_used = true;
    if (c.config_path) {
        if (c.pool_flags_used) {
            fprintf(stderr, "tandem lb: pool options and --server go in the config file when "
                            "--config is used\n");
            lb_config_free(&c.cfg);
            return 2;
        }
        bool cli_admin = c.cfg.has_admin;
        struct sockaddr_storage admin = c.cfg.admin;
        lb_config_free(&c.cfg);
        lb_config_init(&c.cfg);
        if (lb_config_load_file(&c.cfg, c.config_path, err, sizeof(err)) != 0) {
            fprintf(stderr, "tandem lb: %s\n", err);
            lb_config_free(&c.cfg);
            return 2;
        }
        if (cli_admin) {
            c.cfg.has_admin = true;
            c.cfg.admin = admin;
        }
    } else if (c.name) {
        free(c.flag_pool->name);
        c.flag_pool->name = strdup(c.name);
    }
    if (lb_config_validate(&c.cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem lb: %s\n", err);
        lb_config_free(&c.cfg);
        return 2;
    }
    if (c.dump) {
        dump_config(&c.cfg);
        lb_config_free(&c.cfg);
        return 0;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct lb_run *r = calloc(1, sizeof(*r));
    r->config_path = c.config_path;
    int rc = lb_start(&r->lb, &loop, &c.cfg, err, sizeof(err));
    int code = 0;
    if (rc != 0) {
        log_error("main", "cannot start", "err=\"%s\"", err);
        lb_stop(&r->lb);
        code = 1;
    } else {
        uv_signal_init(&loop, &r->sigint);
        uv_signal_init(&loop, &r->sigterm);
        uv_signal_init(&loop, &r->sighup);
        r->sigint.data = r->sigterm.data = r->sighup.data = r;
        uv_signal_start(&r->sigint, on_stop_signal, SIGINT);
        uv_signal_start(&r->sigterm, on_stop_signal, SIGTERM);
        uv_signal_start(&r->sighup, on_hup, SIGHUP);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    lb_free(&r->lb);
    free(r);
    lb_config_free(&c.cfg);
    if (uv_loop_close(&loop) != 0) {
        log_error("main", "handles left open at exit", "");
        code = 1;
    }
    if (code == 0)
        log_notice("main", "stopped", "");
    return code;
}
