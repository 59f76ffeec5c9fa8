/* SPDX-License-Identifier: MIT */
/* harness/child.h -- child processes for the demo and drills: spawn with output to a log file,
 * optionally hand each line of stderr to a callback, kill by PID, notice the exit, and release
 * the libuv handles. A child is a real process so it can be killed on its own (kill -9). */
#ifndef TD_HARNESS_CHILD_H
#define TD_HARNESS_CHILD_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"

struct child;

/* Set in every child's environment to the spawning process's PID: a tandem process started
 * with it asks the kernel to stop it when that process dies (cli_follow_supervisor). */
#define CHILD_SUPERVISOR_ENV "TANDEM_SUPERVISOR_PID"

/* One complete line of the child's stderr (without the newline); borrowed for the call. */
typedef void (*child_line_cb)(struct child *c, struct slice line, void *ud);

struct child {
    char name[32];
    uv_process_t proc;
    uv_pipe_t err;                /* stderr, when a line callback is set */
    bool has_pipe;
    bool running;                 /* spawned and no exit seen yet */
    bool released;                /* child_release called */
    int64_t exit_status;
    int term_signal;
    unsigned open_handles;
    int log_fd;                   /* -1 once closed */
    struct buf line;
    child_line_cb on_line;
    void *ud;
};

/* Spawns argv[0] with argv (NULL-terminated) on loop. stdout and stderr go to log_path
 * (created/truncated); with on_line set, stderr passes through a pipe and each line is written
 * to the log and handed to on_line. c is caller-owned storage that must stay put until
 * child_is_released() after child_release(). Returns 0 or a negative libuv/errno code (then
 * nothing needs releasing). */
int child_spawn(uv_loop_t *loop, struct child *c, const char *name, char *const argv[],
                const char *log_path, child_line_cb on_line, void *ud);
/* Sends sig to the child's PID if it is still running. Returns 0, or a negative code. */
int child_kill(struct child *c, int sig);
/* PID of the child (0 before spawn). */
int child_pid(const struct child *c);
/* Closes the handles (the process keeps running if it has not exited: kill it first). Safe to
 * call more than once. */
void child_release(struct child *c);
/* True once every handle of c is closed after child_release. */
bool child_is_released(const struct child *c);

#endif
