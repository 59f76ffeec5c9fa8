/* SPDX-License-Identifier: MIT */
/* cli/cmd_status.c -- `tandem status [--admin ADDR | FILE]`: prints the topology of a running
 * `tandem up` (harness/upstatus) through its balancer's admin endpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/cfg.h"
#include "cli/cli.h"
#include "harness/up_config.h"
#include "harness/upstatus.h"

struct status_flags {
    char *admin;
};

#define F(x) offsetof(struct status_flags, x)
static const struct cfg_entry status_table[] = {
    {"admin", CFG_STRING, F(admin), 0, 0, NULL, NULL,
     "the balancer's admin endpoint, 127.0.0.1:PORT (tandem up prints it)", 0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef F

int cmd_status_main(int argc, char **argv)
{
    struct status_flags fl;
    char err[512];
    memset(&fl, 0, sizeof(fl));
    struct cli_spec spec = {
        .cmd = "status",
        .usage = "status [--admin 127.0.0.1:PORT | FILE]",
        .about = "Prints the topology that `tandem up` runs: each db node with its health, role,\n"
                 "term, LSN and lag (asked over the Redis protocol), each app server with its\n"
                 "health and share of the traffic, and the pools (from the balancer's /status).\n"
                 "FILE is the up config file; its [admin] listen port is used.",
        .table = status_table,
    };
    char *pos[1] = {NULL};
    struct up_config cfg;
    if (up_config_default(&cfg, err, sizeof(err)) != 0)
        return 2;
    int rc = 2;
    int npos = cli_parse(argc, argv, &spec, &fl, pos, 1);
    if (npos == -1) {
        rc = 0;
        goto out;
    }
    if (npos < 0)
        goto out;
    if ((npos == 1) == (fl.admin != NULL)) {
        fprintf(stderr, "tandem status: give either --admin ADDR or the up config FILE\n");
        goto out;
    }
    if (npos == 1 && up_config_load(&cfg, pos[0], err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem status: %s\n", err);
        goto out;
    }
    if (fl.admin && up_config_line(&cfg, "admin", "listen", fl.admin, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem status: --admin %s\n", err);
        goto out;
    }
    if (cfg.admin.port == 0) {
        fprintf(stderr,
                "tandem status: %s gives no fixed [admin] port (it is picked at each "
                "start): use --admin with the port tandem up printed\n",
                pos[0] ? pos[0] : "--admin");
        goto out;
    }
    struct buf b;
    buf_init(&b);
    rc = 1;
    if (upstatus_report(cfg.admin.port, &b, err, sizeof(err)) == 0) {
        printf("tandem status: admin http://127.0.0.1:%u\n%.*s", cfg.admin.port, (int)b.len, b.p);
        rc = 0;
    } else {
        fprintf(stderr, "tandem status: %s\n", err);
    }
    buf_free(&b);
out:
    up_config_free(&cfg);
    cfg_free(status_table, &fl);
    return rc;
}
