/* SPDX-License-Identifier: MIT */
/* harness/demo.c -- the demo script. It runs on its own loop, step by step: each step arms what
 * it needs (children, a load run) and then turns the loop with run_until() until a condition
 * holds, a deadline passes, or SIGINT/SIGTERM arrives. One run per mode:
 *
 *   start A, B (if not running) -> start lb in MODE -> wait until it serves as it should ->
 *   load for run_ms: mark + kill -9 A at kill_at_ms, mark + restart A at restart_at_ms ->
 *   read the three phases (before the kill, after it, after the restart) -> stop lb
 *
 * and the comparison table at the end. The balancer's own log lines about server state are
 * shown as they happen. Children are stopped by PID on every way out. */
#include "harness/demo.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "harness/child.h"
#include "harness/loadgen.h"
#include "harness/loadstats.h"
#include "proto/http1.h"

enum { MODE_AA = 0, MODE_AP = 1, NMODES = 2 };
static const char *const mode_names[NMODES] = {"active-active", "active-passive"};
static const char *const app_names[2] = {"A", "B"};

#define MAX_KIDS 16
#define TICK_MS 500

struct demo;

struct kid {
    struct child c;
    struct demo *d;
    char role[8];
    bool expect_alive;  /* false once the demo kills it on purpose */
};

struct mode_result {
    bool ran;
    bool complete;            /* all three phases measured */
    uint64_t requests, ok, failed;
    uint64_t errors[LOADSTATS_NOUTCOMES];
    uint64_t longest_gap_us;
    uint64_t gap_end_us;
    uint64_t kill_us, restart_us;
    uint64_t before_ok;
    double share_before[2];   /* percent of ok responses before the kill, per app */
    double rps_before[2];
    double share_after_kill[2];
    uint64_t failed_after_kill;
    uint64_t gap_kill_us;     /* longest gap ending between the kill and the restart */
    bool a_back;
    uint64_t a_back_us;       /* from the restart to A's first response */
    double share_end[2];      /* after the restart */
};

struct demo {
    const struct demo_opts *o;
    FILE *out;
    uv_loop_t loop;
    uv_signal_t sigs[3];
    uv_timer_t wake, tick;
    bool interrupted;
    bool failed;
    char dir[PATH_MAX];
    char exe[PATH_MAX];
    struct kid *kids[MAX_KIDS];
    unsigned nkids;
    struct kid *app[2];
    struct kid *lb;
    unsigned app_port[2], lb_port, admin_port;
    struct loadgen *lg;
    bool load_running;
    bool live;                /* print progress lines and lb events */
    uint64_t tick_ok, tick_failed, tick_srv[2];
    uint64_t tick_us;
    struct mode_result res[NMODES];
};

/* ---- output ---------------------------------------------------------------------------- */

static void say(struct demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct demo *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(d->out, fmt, ap);
    va_end(ap);
    fflush(d->out);
}

static double load_t(struct demo *d)
{
    return d->lg && d->load_running ? (double)loadgen_elapsed_us(d->lg) / 1e6 : 0.0;
}

/* ---- the loop -------------------------------------------------------------------------- */

typedef bool (*pred_fn)(struct demo *d, void *arg);

static void on_wake(uv_timer_t *t)
{
    (void)t;
}

/* Turns the loop until pred holds (true), timeout_ms passes or, unless ignore_signals, the demo
 * is interrupted (false). */
static bool run_until(struct demo *d, pred_fn pred, void *arg, uint64_t timeout_ms,
                      bool ignore_signals)
{
    uint64_t deadline = clock_now_ms() + timeout_ms;
    for (;;) {
        if (pred(d, arg))
            return true;
        if ((d->interrupted && !ignore_signals) || clock_now_ms() >= deadline)
            return false;
        /* the loop's cached time may be stale after blocking work (spawn, connect): a timer
         * armed from it could already be due and leave UV_RUN_ONCE waiting forever */
        uv_update_time(&d->loop);
        uv_timer_start(&d->wake, on_wake, 10, 0);
        uv_run(&d->loop, UV_RUN_ONCE);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct demo *d = s->data;
    if (!d->interrupted)
        say(d, "\n  (signal %d: stopping the demo and every process it started)\n", signum);
    d->interrupted = true;
    if (d->lg && d->load_running)
        loadgen_stop(d->lg);
}

/* ---- ports ----------------------------------------------------------------------------- */

static unsigned pick_port(struct demo *d)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd == -1)
            return 0;
        struct sockaddr_in a;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(a);
        unsigned port = 0;
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
            port = ntohs(a.sin_port);
        close(fd);
        if (port == 0)
            continue;
        if (port == d->app_port[0] || port == d->app_port[1] || port == d->lb_port ||
            port == d->admin_port)
            continue;
        return port;
    }
    return 0;
}

/* A blocking connect on loopback answers at once: refused or accepted. */
static bool port_open(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return false;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* GET http://127.0.0.1:port/path with a blocking socket and short timeouts. On 2xx, returns 0
 * with the body in out (caller frees); otherwise a negative code. */
static int http_get(unsigned port, const char *path, struct buf *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1) {
        int e = -errno;
        close(fd);
        return e;
    }
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -EIO;
    }
    struct buf raw;
    buf_init(&raw);
    for (;;) {
        buf_reserve(&raw, 4096);
        ssize_t r = read(fd, raw.p + raw.len, raw.cap - raw.len);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        raw.len += (size_t)r;
        if (raw.len > (1u << 20))
            break;
    }
    close(fd);
    struct http1_parser p;
    http1_init(&p, HTTP1_RESPONSE, NULL);
    size_t used = 0;
    int rc = -EPROTO;
    int ev = http1_feed(&p, raw.p, 0, raw.len, &used);
    if (ev == HTTP1_HEAD_DONE && p.msg.status >= 200 && p.msg.status < 300) {
        /* Connection: close: the body is whatever follows the head (no chunked decoding here;
         * a chunked status page simply fails the check) */
        if (!p.msg.chunked) {
            buf_append(out, raw.p + used, raw.len - used);
            rc = 0;
        }
    }
    buf_free(&raw);
    return rc;
}

/* Looks through the balancer's /status JSON for server name and reports 1 when it is up, 0
 * when it is listed in another state, -1 when it cannot tell. Accepts an object carrying
 * "name": name (or keyed by name) with a "state"/"status"/"health" string starting with "up"
 * (case-insensitive) or a boolean "up". */
static int status_is_up(const cJSON *node, const char *name, const char *key, int depth)
{
    if (node == NULL || depth > 16)
        return -1;
    if (cJSON_IsObject(node)) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(node, "name");
        bool match = (cJSON_IsString(nm) && strcmp(nm->valuestring, name) == 0) ||
                     (key && strcmp(key, name) == 0);
        if (match) {
            static const char *const fields[] = {"state", "status", "health"};
            for (size_t i = 0; i < 3; i++) {
                const cJSON *st = cJSON_GetObjectItemCaseSensitive(node, fields[i]);
                if (cJSON_IsString(st))
                    return strncasecmp(st->valuestring, "up", 2) == 0 ? 1 : 0;
            }
            const cJSON *up = cJSON_GetObjectItemCaseSensitive(node, "up");
            if (cJSON_IsBool(up))
                return cJSON_IsTrue(up) ? 1 : 0;
        }
    }
    const cJSON *ch;
    cJSON_ArrayForEach(ch, node)
    {
        int r = status_is_up(ch, name, ch->string, depth + 1);
        if (r >= 0)
            return r;
    }
    return -1;
}

static int lb_server_up(struct demo *d, const char *name)
{
    struct buf body;
    buf_init(&body);
    int r = -1;
    if (http_get(d->admin_port, "/status", &body) == 0) {
        cJSON *js = cJSON_ParseWithLength(body.p, body.len);
        r = status_is_up(js, name, NULL, 0);
        cJSON_Delete(js);
    }
    buf_free(&body);
    return r;
}

/* ---- children -------------------------------------------------------------------------- */

static bool kid_alive(const struct kid *k)
{
    return k && k->c.running;
}

/* "exited with status N" or "was killed by signal N (name)". */
static const char *exit_text(const struct kid *k, char *buf, size_t len)
{
    if (k->c.term_signal)
        snprintf(buf, len, "was killed by signal %d (%s)", k->c.term_signal,
                 strsignal(k->c.term_signal));
    else
        snprintf(buf, len, "exited with status %lld", (long long)k->c.exit_status);
    return buf;
}

/* The value of key in a logfmt line (quoted or bare); p NULL when absent. */
static struct slice logfmt_get(struct slice line, const char *key)
{
    char pat[32];
    int n = snprintf(pat, sizeof(pat), " %s=", key);
    const char *at = memmem(line.p, line.len, pat, (size_t)n);
    if (at == NULL)
        return (struct slice){NULL, 0};
    const char *v = at + n, *end = line.p + line.len;
    if (v < end && *v == '"') {
        const char *q = memchr(v + 1, '"', (size_t)(end - v - 1));
        return slice_of(v + 1, q ? (size_t)(q - v - 1) : (size_t)(end - v - 1));
    }
    const char *sp = memchr(v, ' ', (size_t)(end - v));
    return slice_of(v, sp ? (size_t)(sp - v) : (size_t)(end - v));
}

/* Shows the balancer's decisions as they happen: server state changes (sub=health), changes
 * of the active server (sub=balance), and its warnings and errors, as "msg: key=value...". */
static void on_lb_line(struct child *c, struct slice line, void *ud)
{
    struct kid *k = ud;
    struct demo *d = k->d;
    (void)c;
    if (!d->live)
        return;
    bool shown = memmem(line.p, line.len, "sub=health", 10) ||
                 memmem(line.p, line.len, "sub=balance", 11);
    bool quiet = memmem(line.p, line.len, "lvl=debug", 9) || memmem(line.p, line.len, "lvl=info", 8);
    bool loud = memmem(line.p, line.len, "lvl=error", 9) || memmem(line.p, line.len, "lvl=warn", 8);
    if ((!shown || quiet) && !loud)
        return;
    struct buf b;
    buf_init(&b);
    struct slice msg = logfmt_get(line, "msg");
    if (msg.p == NULL)
        buf_append(&b, line.p, line.len);
    else
        buf_append(&b, msg.p, msg.len);
    static const char *const keys[] = {"server", "state", "from", "to", "cause", "err"};
    const char *sep = ": ";
    for (size_t i = 0; msg.p && i < sizeof(keys) / sizeof(keys[0]); i++) {
        struct slice v = logfmt_get(line, keys[i]);
        if (v.p == NULL)
            continue;
        buf_printf(&b, "%s%s=%.*s", sep, keys[i], (int)v.len, v.p);
        sep = " ";
    }
    if (d->load_running)
        say(d, "  %6.2f   lb | %.*s\n", load_t(d), (int)b.len, b.p);
    else
        say(d, "           lb | %.*s\n", (int)b.len, b.p);
    buf_free(&b);
}

static struct kid *spawn(struct demo *d, const char *role, char *const argv[], bool watch)
{
    if (d->nkids >= MAX_KIDS) {
        say(d, "  demo: too many processes\n");
        return NULL;
    }
    struct kid *k = xcalloc(1, sizeof(*k));
    k->d = d;
    snprintf(k->role, sizeof(k->role), "%s", role);
    unsigned nth = 1;
    for (unsigned i = 0; i < d->nkids; i++)
        if (strcmp(d->kids[i]->role, role) == 0)
            nth++;
    char log[PATH_MAX + 32];
    snprintf(log, sizeof(log), "%s/%s-%u.log", d->dir, role, nth);
    d->kids[d->nkids++] = k;
    int rc = child_spawn(&d->loop, &k->c, role, argv, log, watch ? on_lb_line : NULL, k);
    if (rc != 0) {
        say(d, "  demo: cannot start %s: %s\n", role, uv_strerror(rc));
        return NULL;
    }
    k->expect_alive = true;
    return k;
}

struct port_wait {
    struct kid *k;
    unsigned port;
};

static bool port_ready(struct demo *d, void *arg)
{
    (void)d;
    struct port_wait *w = arg;
    return !kid_alive(w->k) || port_open(w->port);
}

static void show_log_tail(struct demo *d, const struct kid *k)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s-1.log", d->dir, k->role);
    say(d, "  (its log: %s)\n", path);
}

/* Waits until k listens on port. Returns false (and says why) when it died or never did. */
static bool wait_listening(struct demo *d, struct kid *k, unsigned port, uint64_t timeout_ms)
{
    struct port_wait w = {k, port};
    bool ok = run_until(d, port_ready, &w, timeout_ms, false);
    if (d->interrupted)
        return false;
    if (!kid_alive(k)) {
        char why[96];
        say(d, "  demo: %s (pid %d) %s before listening on %u\n", k->role, child_pid(&k->c),
            exit_text(k, why, sizeof(why)), port);
        show_log_tail(d, k);
        return false;
    }
    if (!ok) {
        say(d, "  demo: %s did not listen on 127.0.0.1:%u within %llu ms\n", k->role, port,
            (unsigned long long)timeout_ms);
        return false;
    }
    return true;
}

static bool start_app(struct demo *d, int i, bool wait)
{
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", d->app_port[i]);
    char *argv[] = {d->exe, "app", "--listen", listen, "--name", (char *)app_names[i], NULL};
    struct kid *k = spawn(d, app_names[i], argv, false);
    if (k == NULL)
        return false;
    d->app[i] = k;
    return wait ? wait_listening(d, k, d->app_port[i], 10000) : true;
}

static bool start_lb(struct demo *d, int mode)
{
    char listen[64], admin[64], sa[64], sb[64], inter[32], fall[16], rise[16];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", d->lb_port);
    snprintf(admin, sizeof(admin), "127.0.0.1:%u", d->admin_port);
    snprintf(sa, sizeof(sa), "A=127.0.0.1:%u", d->app_port[0]);
    snprintf(sb, sizeof(sb), "B=127.0.0.1:%u", d->app_port[1]);
    snprintf(inter, sizeof(inter), "%llums", (unsigned long long)d->o->inter_ms);
    snprintf(fall, sizeof(fall), "%u", d->o->fall);
    snprintf(rise, sizeof(rise), "%u", d->o->rise);
    char *argv[] = {d->exe, "lb", "--listen", listen, "--protocol", "http", "--mode",
                    (char *)mode_names[mode], "--server", sa, "--server", sb, "--check",
                    "http:/healthz", "--inter", inter, "--fall", fall, "--rise", rise,
                    "--failback", "auto", "--admin", admin, NULL};
    say(d, "  $ tandem lb --listen %s --mode %s --server %s --server %s\n"
           "        --check http:/healthz --inter %s --fall %s --rise %s --failback auto\n",
        listen, mode_names[mode], sa, sb, inter, fall, rise);
    struct kid *k = spawn(d, "lb", argv, true);
    if (k == NULL)
        return false;
    d->lb = k;
    return wait_listening(d, k, d->lb_port, 10000) && wait_listening(d, k, d->admin_port, 10000);
}

static bool kid_gone(struct demo *d, void *arg)
{
    (void)d;
    return !kid_alive(arg);
}

/* SIGTERM, then SIGKILL after a grace period; waits for the exit. */
static void stop_kid(struct demo *d, struct kid *k)
{
    if (!kid_alive(k))
        return;
    k->expect_alive = false;
    child_kill(&k->c, SIGTERM);
    if (!run_until(d, kid_gone, k, 5000, true)) {
        child_kill(&k->c, SIGKILL);
        run_until(d, kid_gone, k, 5000, true);
    }
}

/* ---- load runs ------------------------------------------------------------------------- */

static void on_load_done(struct loadgen *lg, void *ud)
{
    (void)lg;
    struct demo *d = ud;
    d->load_running = false;
}

static bool load_finished(struct demo *d, void *arg)
{
    (void)arg;
    return !d->load_running;
}

static int app_index(const struct loadstats *st, int i)
{
    return loadstats_server_index(st, app_names[i]);
}

static uint64_t count_of(const struct loadstats *st, const uint64_t *counts, int i)
{
    int idx = app_index(st, i);
    return idx < 0 ? 0 : counts[idx];
}

static void on_tick(uv_timer_t *t)
{
    struct demo *d = t->data;
    if (!d->lg || !d->load_running)
        return;
    const struct loadstats *st = loadgen_stats(d->lg);
    uint64_t now = loadgen_elapsed_us(d->lg);
    double secs = (double)(now - d->tick_us) / 1e6;
    uint64_t ok = st->c.ok - d->tick_ok, failed = st->c.failed - d->tick_failed;
    uint64_t s[2];
    for (int i = 0; i < 2; i++) {
        uint64_t c = count_of(st, st->c.servers, i);
        s[i] = c - d->tick_srv[i];
        d->tick_srv[i] = c;
    }
    char bar[2][24];
    for (int i = 0; i < 2; i++) {
        int n = ok ? (int)((s[i] * 20 + ok / 2) / ok) : 0;
        memset(bar[i], '#', (size_t)n);
        bar[i][n] = '\0';
    }
    say(d, "  %6.2f   %7.0f %7llu   A %5.1f%% %-20s B %5.1f%% %s\n", (double)now / 1e6,
        secs > 0 ? (double)ok / secs : 0.0, (unsigned long long)failed,
        ok ? 100.0 * (double)s[0] / (double)ok : 0.0, bar[0],
        ok ? 100.0 * (double)s[1] / (double)ok : 0.0, bar[1]);
    d->tick_ok = st->c.ok;
    d->tick_failed = st->c.failed;
    d->tick_us = now;
}

/* Creates and starts a load run through the balancer. */
static bool load_start(struct demo *d, unsigned conns, uint64_t duration_ms, bool live)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/whoami", d->lb_port);
    struct loadgen_opts lo = {
        .url = url,
        .connections = conns,
        .duration_ms = duration_ms,
        .timeout_ms = 1000,
        .timeline_ms = 100,
        .reconnect_delay_ms = 10,
    };
    char err[256];
    if (loadgen_new(&d->loop, &lo, &d->lg, err, sizeof(err)) != 0) {
        say(d, "  demo: %s\n", err);
        return false;
    }
    d->live = live;
    d->tick_ok = d->tick_failed = d->tick_us = 0;
    d->tick_srv[0] = d->tick_srv[1] = 0;
    if (loadgen_start(d->lg, on_load_done, d) != 0) {
        loadgen_free(d->lg);
        d->lg = NULL;
        return false;
    }
    d->load_running = true;
    if (live)
        uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
    return true;
}

static void load_end(struct demo *d)
{
    uv_timer_stop(&d->tick);
    if (d->lg && d->load_running) {
        loadgen_stop(d->lg);
        run_until(d, load_finished, NULL, 10000, true);
    }
    loadgen_free(d->lg);
    d->lg = NULL;
}

struct at_time {
    uint64_t us;
};

static bool time_reached(struct demo *d, void *arg)
{
    struct at_time *a = arg;
    return !d->load_running || loadgen_elapsed_us(d->lg) >= a->us ||
           (d->lb && d->lb->expect_alive && !kid_alive(d->lb));
}

/* Something the demo expects to be running has died: the step fails. */
static bool lb_died(struct demo *d)
{
    if (d->lb && d->lb->expect_alive && !kid_alive(d->lb)) {
        char why[96];
        say(d, "  demo: the balancer (pid %d) %s unexpectedly\n", child_pid(&d->lb->c),
            exit_text(d->lb, why, sizeof(why)));
        show_log_tail(d, d->lb);
        d->failed = true;
        return true;
    }
    return false;
}

/* Short runs through the balancer until it serves without errors, from both servers in
 * active-active and only from A in active-passive; then, for active-passive, asks the admin
 * endpoint whether the backup B is up (the demo needs a healthy backup before the kill). */
static bool wait_ready(struct demo *d, int mode)
{
    uint64_t deadline = clock_now_ms() + 15000;
    bool ready = false;
    uint64_t ok = 0, failed = 0, a = 0, b = 0;
    while (!ready && clock_now_ms() < deadline && !d->interrupted) {
        if (!load_start(d, 2, 200, false))
            return false;
        run_until(d, load_finished, NULL, 5000, false);
        const struct loadstats *st = loadgen_stats(d->lg);
        ok = st->c.ok;
        failed = st->c.failed;
        a = count_of(st, st->c.servers, 0);
        b = count_of(st, st->c.servers, 1);
        ready = ok > 0 && failed == 0 && a > 0 && (mode == MODE_AA ? b > 0 : b == 0);
        load_end(d);
        if (lb_died(d))
            return false;
    }
    if (d->interrupted)
        return false;
    if (!ready) {
        say(d, "  demo: the balancer did not serve as expected within 15 s (wanted %s; the last\n"
               "  0.2 s: %llu ok, %llu failed, A %llu, B %llu)\n",
            mode == MODE_AA ? "A and B, no errors" : "only A, no errors",
            (unsigned long long)ok, (unsigned long long)failed, (unsigned long long)a,
            (unsigned long long)b);
        show_log_tail(d, d->lb);
        return false;
    }
    if (mode == MODE_AP) {
        int up = -1;
        uint64_t until = clock_now_ms() + 5000;
        while (clock_now_ms() < until && !d->interrupted) {
            up = lb_server_up(d, "B");
            if (up == 1)
                break;
            uv_update_time(&d->loop);
            uv_timer_start(&d->wake, on_wake, 50, 0);
            uv_run(&d->loop, UV_RUN_ONCE);
        }
        if (up != 1)
            say(d, "  (could not confirm from /status that backup B is up; going on)\n");
    }
    return !d->interrupted;
}

/* ---- one mode -------------------------------------------------------------------------- */

static void compute(struct demo *d, int mode)
{
    struct mode_result *r = &d->res[mode];
    const struct loadstats *st = loadgen_stats(d->lg);
    r->ran = true;
    r->requests = st->c.requests;
    r->ok = st->c.ok;
    r->failed = st->c.failed;
    memcpy(r->errors, st->c.errors, sizeof(r->errors));
    r->longest_gap_us = st->longest_gap_us;
    r->gap_end_us = st->gap_end_us;
    r->complete = st->nphases == 3;
    const struct loadstats_phase *p0 = &st->phases[0];
    double dur0 = (double)(p0->end_us - p0->start_us) / 1e6;
    r->before_ok = p0->c.ok;
    for (int i = 0; i < 2; i++) {
        uint64_t n = count_of(st, p0->c.servers, i);
        r->share_before[i] = p0->c.ok ? 100.0 * (double)n / (double)p0->c.ok : 0.0;
        r->rps_before[i] = dur0 > 0 ? (double)n / dur0 : 0.0;
    }
    if (!r->complete)
        return;
    const struct loadstats_phase *p1 = &st->phases[1], *p2 = &st->phases[2];
    r->kill_us = p1->start_us;
    r->restart_us = p2->start_us;
    r->failed_after_kill = p1->c.failed + p2->c.failed;
    r->gap_kill_us = p1->longest_gap_us;
    for (int i = 0; i < 2; i++) {
        uint64_t n1 = count_of(st, p1->c.servers, i), n2 = count_of(st, p2->c.servers, i);
        r->share_after_kill[i] = p1->c.ok ? 100.0 * (double)n1 / (double)p1->c.ok : 0.0;
        r->share_end[i] = p2->c.ok ? 100.0 * (double)n2 / (double)p2->c.ok : 0.0;
    }
    int ia = app_index(st, 0);
    r->a_back = ia >= 0 && p2->c.servers[ia] > 0;
    if (r->a_back)
        r->a_back_us = p2->server_first_us[ia] - p2->start_us;
}

static void print_mode_result(struct demo *d, int mode)
{
    const struct mode_result *r = &d->res[mode];
    say(d, "\n  measured (%s):\n", mode_names[mode]);
    say(d, "    before the kill:  A %.1f%% / B %.1f%% of %llu responses "
           "(A %.0f + B %.0f req/s)%s\n",
        r->share_before[0], r->share_before[1], (unsigned long long)r->before_ok,
        r->rps_before[0], r->rps_before[1],
        mode == MODE_AP && r->share_before[1] == 0.0 ? ": B idle" : "");
    if (!r->complete) {
        say(d, "    (the run was cut short)\n");
        return;
    }
    say(d, "    after the kill:   B %.1f%% of responses\n", r->share_after_kill[1]);
    say(d, "    failed requests:  %llu of %llu", (unsigned long long)r->failed,
        (unsigned long long)r->requests);
    if (r->failed) {
        const char *sep = " (";
        for (int o = LOADSTATS_ERR_CONNECT; o < LOADSTATS_NOUTCOMES; o++) {
            if (r->errors[o] == 0)
                continue;
            say(d, "%s%s %llu", sep, loadstats_outcome_name((enum loadstats_outcome)o),
                (unsigned long long)r->errors[o]);
            sep = ", ";
        }
        say(d, ")");
    }
    say(d, "\n    longest gap:      %.1f ms without a successful response (ended at %.2f s);\n"
           "                      %.1f ms across the kill\n",
        (double)r->longest_gap_us / 1000.0, (double)r->gap_end_us / 1e6,
        (double)r->gap_kill_us / 1000.0);
    if (r->a_back)
        say(d, "    after the restart: A answered again %.2f s later; then A %.1f%% / B %.1f%%\n",
            (double)r->a_back_us / 1e6, r->share_end[0], r->share_end[1]);
    else
        say(d, "    after the restart: A got no traffic before the end of the run\n");
}

static bool run_mode(struct demo *d, int mode)
{
    const struct demo_opts *o = d->o;
    if (mode == MODE_AA)
        say(d, "\n== 1. active-active: both servers serve ====================================\n"
               "  Every healthy server takes requests. When one dies, the balancer sees the\n"
               "  connect error or reset at once, retries the request on the other server,\n"
               "  and takes the dead one out of rotation: clients should see nothing.\n\n");
    else
        say(d, "\n== 2. active-passive: B waits as a backup ==================================\n"
               "  Only the highest-priority healthy server (A) takes requests; B idles until\n"
               "  A fails, then takes over; when A is healthy again, traffic fails back.\n\n");
    for (int i = 0; i < 2; i++) {
        if (!kid_alive(d->app[i])) {
            say(d, "  $ tandem app --listen 127.0.0.1:%u --name %s\n", d->app_port[i],
                app_names[i]);
            if (!start_app(d, i, true))
                return false;
        }
    }
    if (!start_lb(d, mode) || !wait_ready(d, mode))
        return false;
    say(d, "\n  load: %u keep-alive connections, GET /whoami through the balancer, %.1f s;\n"
           "  kill -9 app A at %.1f s, restart it at %.1f s.\n\n",
        o->connections, (double)o->run_ms / 1000, (double)o->kill_at_ms / 1000,
        (double)o->restart_at_ms / 1000);
    say(d, "  %6s   %7s %7s   %s\n", "t (s)", "ok/s", "failed", "traffic split per 0.5 s");
    if (!load_start(d, o->connections, o->run_ms, true))
        return false;
    struct at_time kill_at = {o->kill_at_ms * 1000}, restart_at = {o->restart_at_ms * 1000};
    run_until(d, time_reached, &kill_at, o->run_ms + 10000, false);
    if (d->interrupted || lb_died(d)) {
        load_end(d);
        return false;
    }
    if (d->load_running) {
        loadgen_mark(d->lg);
        say(d, "  %6.2f   >>> kill -9 app A (pid %d)\n", load_t(d), child_pid(&d->app[0]->c));
        d->app[0]->expect_alive = false;
        child_kill(&d->app[0]->c, SIGKILL);
    }
    run_until(d, time_reached, &restart_at, o->run_ms + 10000, false);
    if (d->interrupted || lb_died(d)) {
        load_end(d);
        return false;
    }
    if (d->load_running) {
        loadgen_mark(d->lg);
        if (!start_app(d, 0, false)) {
            load_end(d);
            return false;
        }
        say(d, "  %6.2f   >>> restart app A (pid %d)\n", load_t(d), child_pid(&d->app[0]->c));
    }
    struct at_time end = {UINT64_MAX};
    run_until(d, time_reached, &end, o->run_ms + 10000, false);
    if (d->interrupted || lb_died(d)) {
        load_end(d);
        return false;
    }
    if (d->lg && !d->load_running)
        compute(d, mode);
    load_end(d);
    print_mode_result(d, mode);
    say(d, "\n  stopping the balancer (pid %d)\n", child_pid(&d->lb->c));
    stop_kid(d, d->lb);
    return true;
}

/* ---- the table ------------------------------------------------------------------------- */

static void print_table(struct demo *d)
{
    say(d, "\n== what was measured, this run, this machine ================================\n\n");
    say(d, "  %-15s %-9s %-9s %-16s %-11s %-20s %s\n", "mode", "both", "failed",
        "longest gap, ms", "split", "req/s before kill", "A back after");
    say(d, "  %-15s %-9s %-9s %-16s %-11s %-20s %s\n", "", "serving?", "requests",
        "at kill / run", "A / B", "A + B", "its restart");
    for (int m = 0; m < NMODES; m++) {
        const struct mode_result *r = &d->res[m];
        if (!r->ran)
            continue;
        char gap[40], split[32], rps[48], back[32];
        snprintf(gap, sizeof(gap), "%.1f / %.1f", (double)r->gap_kill_us / 1000.0,
                 (double)r->longest_gap_us / 1000.0);
        snprintf(split, sizeof(split), "%.0f%% / %.0f%%", r->share_before[0], r->share_before[1]);
        const char *idle = r->rps_before[1] < 1.0 ? " (B idle)" :
                           r->rps_before[0] < 1.0 ? " (A idle)" : "";
        snprintf(rps, sizeof(rps), "%.0f + %.0f%s", r->rps_before[0], r->rps_before[1], idle);
        if (r->a_back)
            snprintf(back, sizeof(back), "%.2f s", (double)r->a_back_us / 1e6);
        else
            snprintf(back, sizeof(back), "%s", r->complete ? "not yet" : "-");
        bool both = r->share_before[0] > 0 && r->share_before[1] > 0;
        say(d, "  %-15s %-9s %-9llu %-16s %-11s %-20s %s\n", mode_names[m], both ? "yes" : "no",
            (unsigned long long)r->failed, gap, split, rps, back);
    }
    say(d, "\n  failed requests: any 5xx, reset, timeout or connect error a client saw.\n"
           "  longest gap: the longest time with no successful response on any connection,\n"
           "  across the kill and over the whole run (on a busy machine, the run's longest\n"
           "  gap may come from scheduling rather than from the failover).\n"
           "  idle capacity: in active-passive the backup's capacity is paid for but unused\n"
           "  until the primary fails; in active-active every server carries load.\n");
}

/* ---- setup and teardown ---------------------------------------------------------------- */

void demo_opts_default(struct demo_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->connections = 8;
    o->run_ms = 6000;
    o->kill_at_ms = 2000;
    o->restart_at_ms = 3500;
    o->inter_ms = 100;
    o->fall = 2;
    o->rise = 2;
    o->modes = 3;
    o->out = stdout;
}

static bool all_exited(struct demo *d, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < d->nkids; i++)
        if (kid_alive(d->kids[i]))
            return false;
    return true;
}

static bool all_released(struct demo *d, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < d->nkids; i++)
        if (!child_is_released(&d->kids[i]->c))
            return false;
    return true;
}

/* Stops the load, then every child still running (SIGTERM, SIGKILL after 3 s), and releases
 * their handles. */
static void stop_everything(struct demo *d)
{
    load_end(d);
    unsigned alive = 0;
    for (unsigned i = 0; i < d->nkids; i++) {
        if (kid_alive(d->kids[i])) {
            d->kids[i]->expect_alive = false;
            child_kill(&d->kids[i]->c, SIGTERM);
            alive++;
        }
    }
    if (alive && !run_until(d, all_exited, NULL, 3000, true)) {
        for (unsigned i = 0; i < d->nkids; i++)
            if (kid_alive(d->kids[i]))
                child_kill(&d->kids[i]->c, SIGKILL);
        run_until(d, all_exited, NULL, 3000, true);
    }
    for (unsigned i = 0; i < d->nkids; i++)
        child_release(&d->kids[i]->c);
    run_until(d, all_released, NULL, 3000, true);
    for (unsigned i = 0; i < d->nkids; i++)
        free(d->kids[i]);
    d->nkids = 0;
}

static void remove_logs(struct demo *d)
{
    for (unsigned i = 0; i < MAX_KIDS; i++) {
        static const char *const roles[] = {"A", "B", "lb"};
        for (size_t r = 0; r < 3; r++) {
            char path[PATH_MAX + 32];
            snprintf(path, sizeof(path), "%s/%s-%u.log", d->dir, roles[r], i + 1);
            unlink(path);
        }
    }
    rmdir(d->dir);
}

int demo_run(const struct demo_opts *o)
{
    struct demo *d = xcalloc(1, sizeof(*d));
    d->o = o;
    d->out = o->out ? o->out : stdout;
    int rc = 1;
    if (uv_loop_init(&d->loop) != 0) {
        free(d);
        return 1;
    }
    uv_timer_init(&d->loop, &d->wake);
    uv_timer_init(&d->loop, &d->tick);
    d->tick.data = d;
    static const int signums[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&d->loop, &d->sigs[i]);
        d->sigs[i].data = d;
        uv_signal_start(&d->sigs[i], on_signal, signums[i]);
    }
    size_t len = sizeof(d->exe);
    if (o->exe)
        snprintf(d->exe, sizeof(d->exe), "%s", o->exe);
    else if (uv_exepath(d->exe, &len) != 0)
        snprintf(d->exe, sizeof(d->exe), "/proc/self/exe");
    bool made_dir = false;
    if (o->log_dir) {
        snprintf(d->dir, sizeof(d->dir), "%s", o->log_dir);
        if (mkdir(d->dir, 0755) == -1 && errno != EEXIST) {
            say(d, "demo: cannot create %s: %s\n", d->dir, strerror(errno));
            goto out;
        }
    } else {
        snprintf(d->dir, sizeof(d->dir), "/tmp/tandem-demo-XXXXXX");
        if (mkdtemp(d->dir) == NULL) {
            say(d, "demo: cannot create a temporary directory: %s\n", strerror(errno));
            goto out;
        }
        made_dir = true;
    }
    for (int i = 0; i < 2; i++)
        d->app_port[i] = pick_port(d);
    d->lb_port = pick_port(d);
    d->admin_port = pick_port(d);
    if (!d->app_port[0] || !d->app_port[1] || !d->lb_port || !d->admin_port) {
        say(d, "demo: no free loopback ports\n");
        goto out;
    }
    say(d, "tandem demo: the stateless tier, live and measured\n\n"
           "  Users -> load balancer -> app server A\n"
           "                         -> app server B\n\n"
           "  Two `tandem app` servers behind one `tandem lb`, all on 127.0.0.1, each a real\n"
           "  process. The same load and the same fault (kill -9 of A, then a restart) are\n"
           "  run against the two ways of using two servers. Logs: %s\n",
        d->dir);
    bool all_ok = true;
    for (int m = 0; m < NMODES && all_ok; m++) {
        if (!(o->modes & (1u << m)))
            continue;
        all_ok = run_mode(d, m);
    }
    if (d->interrupted) {
        rc = 0;
    } else if (all_ok) {
        print_table(d);
        rc = 0;
    } else {
        d->failed = true;
    }
out:
    stop_everything(d);
    if (d->failed)
        say(d, "\n  demo failed; logs kept in %s\n", d->dir);
    else if (made_dir && !o->keep_logs)
        remove_logs(d);
    else if (d->dir[0])
        say(d, "\n  logs kept in %s\n", d->dir);
    for (int i = 0; i < 3; i++)
        uv_close((uv_handle_t *)&d->sigs[i], NULL);
    uv_close((uv_handle_t *)&d->wake, NULL);
    uv_close((uv_handle_t *)&d->tick, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&d->loop) != 0)
        say(d, "demo: loop closed with handles open\n");
    if (d->failed)
        rc = 1;
    free(d);
    return rc;
}
