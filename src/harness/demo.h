/* SPDX-License-Identifier: MIT */
/* harness/demo.h -- `tandem demo`: the architecture's story, live and measured. Two
 * `tandem app` servers (A, B) behind a `tandem lb`, first active-active, then active-passive;
 * under load from the in-process load generator, app A is killed with SIGKILL and restarted,
 * and the demo prints what clients saw (failed requests, longest gap without a successful
 * response, traffic split, idle capacity, failback). Then the stateful tier: harness/up runs
 * the whole topology, balance updates go through the app tier, the store primary is killed
 * with SIGKILL, and the demo shows the promotion, the re-routing, the provisioned replica and
 * the writes lost (none, in sync mode). A comparison table of the tiers ends it.
 * Every process is a child started from the same binary and is stopped by PID on the way out,
 * including after SIGINT/SIGTERM. */
#ifndef TD_HARNESS_DEMO_H
#define TD_HARNESS_DEMO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define DEMO_STORE 4u /* the stateful tier: tandem up, the store primary killed under writes */

struct demo_opts {
    const char *exe;          /* tandem binary to spawn; NULL: this process's executable */
    const char *log_dir;      /* NULL: a fresh /tmp/tandem-demo-XXXXXX */
    bool keep_logs;           /* keep the log directory (it is always kept after a failure) */
    unsigned connections;     /* load connections (8) */
    uint64_t run_ms;          /* length of each load run (6000) */
    uint64_t kill_at_ms;      /* SIGKILL app A at this point of the run (2000) */
    uint64_t restart_at_ms;   /* restart it here (3500) */
    uint64_t inter_ms;        /* lb health check interval (100) */
    unsigned fall, rise;      /* lb health thresholds (2, 2) */
    unsigned modes;           /* bit 0: active-active, bit 1: active-passive, DEMO_STORE */
    uint64_t store_run_ms;    /* length of the store run (8000); the primary dies at kill_at_ms */
    FILE *out;                /* the story goes here (stdout) */
};

/* Fills o with the defaults above. */
void demo_opts_default(struct demo_opts *o);
/* Runs the demo on its own libuv loop and returns an exit code: 0 when it ran to the end (or
 * was interrupted by SIGINT/SIGTERM, after cleaning up), 1 when a step failed (a child did not
 * start, the balancer never became ready); the reason is printed. */
int demo_run(const struct demo_opts *o);

#endif
