/* SPDX-License-Identifier: MIT */
/* harness/up.h -- `tandem up`'s supervisor: runs a whole topology (harness/up_config.h) on
 * loopback as child processes of this one, on a caller's libuv loop:
 *
 *   arbiter  <-  db1, db2 (--coordinator builtin://, sync mode, --min-replicas)
 *   lb (one process, from a generated DIR/lb.ini): pool "store" (tcp, resp-role) over the db
 *      nodes, pool "web" (http) over the apps, the admin endpoint
 *   app A, app B (--store: the store pool)
 *
 * Nothing is restarted, except that provisioning adds db nodes: every db node gets
 * `--provision-cmd 'kill -USR1 <this pid>'`; on SIGUSR1 the supervisor applies
 * up_provision_count() (running db nodes against 1 + min-replicas), starts the new node on a
 * free port, adds it to the store pool in DIR/lb.ini and sends SIGHUP to the balancer. The new
 * node finds the primary through the arbiter and bootstraps from it by itself.
 *
 * Lifecycle: up_new → up_start → (the loop runs; up_is_ready) → up_stop → (loop until
 * up_is_stopped) → up_release → (loop until up_is_released) → up_free. */
#ifndef TD_HARNESS_UP_H
#define TD_HARNESS_UP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "base/buf.h"
#include "harness/up_config.h"

struct up;

/* One line of a child's stderr (also written to its log); borrowed for the call. */
typedef void (*up_line_cb)(void *ud, const char *name, struct slice line);

struct up_opts {
    const char *exe;    /* tandem binary; NULL: this process's executable */
    FILE *out;          /* what up says (ports, pids, events); NULL: nothing */
    const char *indent; /* prefix of every line written to out; NULL: "" */
    up_line_cb on_line; /* NULL: children's output goes straight to their logs */
    void *ud;
};

/* Takes the topology in *cfg (moved: cfg is zeroed and must not be freed by the caller),
 * creates the directory (cfg->dir, or a new /tmp/tandem-up-XXXXXX), assigns ports and writes
 * DIR/lb.ini. Returns 0 and *out (owned), or a negative code with the reason in err. */
int up_new(uv_loop_t *loop, struct up_config *cfg, const struct up_opts *o, struct up **out,
           char *err, size_t errlen);
/* Installs the SIGUSR1 handler, starts every process and a 100 ms supervision timer (exits
 * are reported, readiness and the primary are watched). Returns 0, or a negative code after
 * saying why (the caller then stops and releases as usual). */
int up_start(struct up *u);
/* True once every process of the initial topology listens. */
bool up_is_ready(const struct up *u);
/* Number of the db node whose INFO says it is the primary, -1 when none is known (updated by
 * the supervision timer every 250 ms). */
int up_primary(const struct up *u);
/* The topology (ports assigned; db nodes added by provisioning appear at the end). */
const struct up_config *up_topology(const struct up *u);
/* The directory holding the logs and data. */
const char *up_dir(const struct up *u);
/* PID of db node i (0 when never started); whether it is running. */
int up_db_pid(const struct up *u, size_t i);
bool up_db_alive(const struct up *u, size_t i);
/* Sends sig to db node i; the supervisor then knows the exit was wanted (SIGKILL is reported
 * as a fault injected by the caller). Returns 0 or a negative code. */
int up_kill_db(struct up *u, size_t i, int sig);
/* Number of db nodes started by provisioning so far. */
unsigned up_provisioned(const struct up *u);
/* Process listing: one line per process, "NAME ADDR pid PID" (appended to out). */
void up_describe(const struct up *u, struct buf *out);
/* True when some child of the topology is still running. */
bool up_any_alive(const struct up *u);

/* Stops every process: SIGTERM, SIGKILL for those still running after grace_ms. */
void up_stop(struct up *u, uint64_t grace_ms);
/* Lists (appends to out) the processes that up_stop stopped and that did not exit cleanly
 * (status 0) after SIGTERM: a sanitizer report, a crash at shutdown. Returns how many. */
unsigned up_bad_exits(const struct up *u, struct buf *out);
/* True once every child has exited. */
bool up_is_stopped(const struct up *u);
/* Closes every handle (call after up_is_stopped). */
void up_release(struct up *u);
bool up_is_released(const struct up *u);
/* Frees u (after up_is_released, or straight after a failed up_new). NULL is a no-op. */
void up_free(struct up *u);

#endif
