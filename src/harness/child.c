/* SPDX-License-Identifier: MIT */
/* harness/child.c -- uv_spawn wrapper. The process handle stays open until release so the exit
 * callback can record the status; stderr (when piped) is split into lines, each written to the
 * log file with its newline and passed to the callback. */
#include "harness/child.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct child *c = p->data;
    c->running = false;
    c->exit_status = status;
    c->term_signal = sig;
}

static void on_close(uv_handle_t *h)
{
    struct child *c = h->data;
    c->open_handles--;
    if (c->open_handles == 0) {
        buf_free(&c->line);
        if (c->log_fd != -1) {
            close(c->log_fd);
            c->log_fd = -1;
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct child *c = h->data;
    buf_reserve(&c->line, 4096);
    *b = uv_buf_init(c->line.p + c->line.len, (unsigned)(c->line.cap - c->line.len));
}

static void emit_lines(struct child *c, bool flush_all)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(c->line.p + start, '\n', c->line.len - start);
        size_t end = nl ? (size_t)(nl - c->line.p) : c->line.len;
        if (nl == NULL && (!flush_all || end == start))
            break;
        if (c->log_fd != -1) {
            ssize_t w = write(c->log_fd, c->line.p + start, end - start);
            ssize_t w2 = write(c->log_fd, "\n", 1);
            (void)w;
            (void)w2;
        }
        if (c->on_line)
            c->on_line(c, slice_of(c->line.p + start, end - start), c->ud);
        start = nl ? end + 1 : end;
        if (nl == NULL)
            break;
    }
    buf_consume(&c->line, start);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    struct child *c = s->data;
    if (nread > 0) {
        c->line.len += (size_t)nread;
        emit_lines(c, c->line.len > 65536); /* a runaway line is cut, not buffered forever */
        return;
    }
    if (nread < 0) {
        emit_lines(c, true);
        uv_read_stop(s);
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_close);
    }
}

int child_spawn(uv_loop_t *loop, struct child *c, const char *name, char *const argv[],
                const char *log_path, child_line_cb on_line, void *ud)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (c->log_fd == -1)
        return -errno;
    buf_init(&c->line);
    c->on_line = on_line;
    c->ud = ud;
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = c->log_fd;
    if (on_line) {
        uv_pipe_init(loop, &c->err, 0);
        c->err.data = c;
        c->has_pipe = true;
        stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[2].data.stream = (uv_stream_t *)&c->err;
    } else {
        stdio[2].flags = UV_INHERIT_FD;
        stdio[2].data.fd = c->log_fd;
    }
    /* The child's environment: ours plus TANDEM_SUPERVISOR_PID, which a tandem child uses to
     * die with us (src/main.c), so a supervisor killed with -9 leaves nothing running. */
    extern char **environ;
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **env = xcalloc(nenv + 2, sizeof(*env));
    char supervisor[48];
    snprintf(supervisor, sizeof(supervisor), "%s=%ld", CHILD_SUPERVISOR_ENV, (long)getpid());
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], CHILD_SUPERVISOR_ENV "=", strlen(CHILD_SUPERVISOR_ENV) + 1) != 0)
            env[k++] = environ[i];
    env[k] = supervisor;
    uv_process_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.file = argv[0];
    opt.args = (char **)argv;
    opt.env = env;
    opt.exit_cb = on_exit_cb;
    opt.stdio_count = 3;
    opt.stdio = stdio;
    c->proc.data = c;
    int rc = uv_spawn(loop, &c->proc, &opt);
    free(env);
    if (rc != 0) {
        /* the process handle must still be closed; run the loop once to finish */
        c->open_handles = 1 + (c->has_pipe ? 1 : 0);
        uv_close((uv_handle_t *)&c->proc, on_close);
        if (c->has_pipe)
            uv_close((uv_handle_t *)&c->err, on_close);
        c->released = true;
        return rc;
    }
    c->running = true;
    c->open_handles = 1;
    if (c->has_pipe) {
        c->open_handles++;
        uv_read_start((uv_stream_t *)&c->err, on_alloc, on_read);
    }
    return 0;
}

int child_kill(struct child *c, int sig)
{
    if (!c->running)
        return -ESRCH;
    return uv_process_kill(&c->proc, sig);
}

int child_pid(const struct child *c)
{
    return c->proc.pid;
}

void child_release(struct child *c)
{
    if (c->released)
        return;
    c->released = true;
    uv_close((uv_handle_t *)&c->proc, on_close);
    /* the pipe closes itself at EOF, which follows the exit; a live child's pipe closes now */
    if (c->has_pipe && !uv_is_closing((uv_handle_t *)&c->err))
        uv_close((uv_handle_t *)&c->err, on_close);
}

bool child_is_released(const struct child *c)
{
    return c->released && c->open_handles == 0;
}
