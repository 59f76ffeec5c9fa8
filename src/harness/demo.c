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
#include <ftw.h>
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
#include "harness/probe.h"
#include "harness/up.h"

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

/* The store story: one run of balance updates through the app tier, the primary killed. */
struct store_result {
    bool ran, complete;
    char old_primary[UP_NAME_MAX], new_primary[UP_NAME_MAX], provisioned[UP_NAME_MAX];
    char pool_active[UP_NAME_MAX];  /* the store pool's active server after the run */
    int old_idx;
    uint64_t old_term, new_term;
    uint64_t kill_ms;               /* monotonic time of the kill */
    int64_t promoted_ms, provisioned_ms, restored_ms; /* after the kill; -1: not seen */
    uint64_t next_probe_ms;
    uint64_t requests, ok, failed;
    uint64_t errors[LOADSTATS_NOUTCOMES];
    double rps_before;              /* acknowledged writes per second before the kill */
    uint64_t gap_kill_us;           /* longest time without an acknowledged write, after the kill */
    bool balance_known;
    int64_t balance_before, balance_after;
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
    struct up *up;
    struct store_result sr;
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
        unsigned port = probe_free_port();
        if (port == 0)
            continue;
        if (port == d->app_port[0] || port == d->app_port[1] || port == d->lb_port ||
            port == d->admin_port)
            continue;
        return port;
    }
    return 0;
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
    if (probe_http_get(d->admin_port, "/status", 1000, &body) == 0) {
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
    return !kid_alive(w->k) || probe_port_open(w->port);
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

/* Creates and starts a load run: GET /whoami through the balancer, or (post_port set) POST
 * {"delta":1} to a user's balance through the web pool of the store story. */
static bool load_start_req(struct demo *d, unsigned conns, uint64_t duration_ms, bool live,
                           unsigned post_port)
{
    char url[96];
    static const char *const json_hdr[] = {"Content-Type: application/json"};
    if (post_port)
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/users/demo/balance", post_port);
    else
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/whoami", d->lb_port);
    struct loadgen_opts lo = {
        .url = url,
        .method = post_port ? "POST" : NULL,
        .headers = post_port ? json_hdr : NULL,
        .nheaders = post_port ? 1 : 0,
        .body = post_port ? "{\"delta\":1}" : NULL,
        .connections = conns,
        .duration_ms = duration_ms,
        .timeout_ms = post_port ? 3000 : 1000,
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

static bool load_start(struct demo *d, unsigned conns, uint64_t duration_ms, bool live)
{
    return load_start_req(d, conns, duration_ms, live, 0);
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

/* ---- the store: active-passive with automatic failover -------------------------------- */

static bool up_stopped(struct demo *d, void *arg)
{
    (void)arg;
    return up_is_stopped(d->up);
}

static bool up_released(struct demo *d, void *arg)
{
    (void)arg;
    return up_is_released(d->up);
}

/* Stops the `up` topology by PID (SIGTERM, SIGKILL after 3 s) and frees it. */
static void stop_up(struct demo *d)
{
    if (d->up == NULL)
        return;
    up_stop(d->up, 3000);
    run_until(d, up_stopped, NULL, 10000, true);
    up_release(d->up);
    run_until(d, up_released, NULL, 5000, true);
    up_free(d->up);
    d->up = NULL;
}

/* INFO replication of db node i into out (NUL-terminated); false when it did not answer. */
static bool db_info(struct demo *d, int i, struct buf *out)
{
    const char *argv[] = {"INFO", "replication"};
    if (i < 0 || probe_resp(up_topology(d->up)->db[i].port, 2, argv, 300, out) != 0)
        return false;
    buf_append(out, "", 1);
    return true;
}

/* True when the primary i has a replica connected and in sync (redundancy restored). */
static bool primary_in_sync(struct demo *d, int i, uint64_t *term)
{
    struct buf b;
    buf_init(&b);
    bool ok = false;
    if (db_info(d, i, &b)) {
        char st[16] = "";
        probe_info_get(b.p, "tandem_sync_state", st, sizeof(st));
        ok = probe_info_u64(b.p, "connected_slaves", 0) >= 1 && strcmp(st, "ok") == 0;
        if (term)
            *term = probe_info_u64(b.p, "tandem_term", 0);
    }
    buf_free(&b);
    return ok;
}

/* The user's balance through the web pool; false when the app tier did not answer 200. */
static bool read_balance(struct demo *d, int64_t *out)
{
    struct buf b;
    buf_init(&b);
    bool ok = false;
    if (probe_http_get(up_topology(d->up)->web.port, "/users/demo/balance", 1000, &b) == 0) {
        cJSON *js = cJSON_ParseWithLength(b.p, b.len);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(js, "balance");
        if (cJSON_IsNumber(v)) {
            *out = (int64_t)v->valuedouble;
            ok = true;
        }
        cJSON_Delete(js);
    }
    buf_free(&b);
    return ok;
}

struct store_wait {
    uint64_t next_ms;
    unsigned good;
};

/* Ready for the story: every process listens, a primary with its replica in sync, and both
 * apps reach the store (three good reads in a row). Probes at most every 100 ms. */
static bool store_ready(struct demo *d, void *arg)
{
    struct store_wait *w = arg;
    uint64_t now = clock_now_ms();
    if (now < w->next_ms)
        return false;
    w->next_ms = now + 100;
    if (!up_is_ready(d->up) || up_primary(d->up) < 0 ||
        !primary_in_sync(d, up_primary(d->up), NULL)) {
        w->good = 0;
        return false;
    }
    int64_t bal;
    w->good = read_balance(d, &bal) ? w->good + 1 : 0;
    if (w->good >= 3)
        d->sr.balance_before = bal;
    return w->good >= 3;
}

/* Follows the failover while the load runs: promotion, provisioning, redundancy restored. */
static void watch_store(struct demo *d)
{
    struct store_result *r = &d->sr;
    if (r->kill_ms == 0)
        return;
    uint64_t now = clock_now_ms();
    int p = up_primary(d->up);
    const struct up_config *c = up_topology(d->up);
    if (r->promoted_ms < 0 && p >= 0 && p != r->old_idx) {
        r->promoted_ms = (int64_t)(now - r->kill_ms);
        snprintf(r->new_primary, sizeof(r->new_primary), "%s", c->db[p].name);
        say(d, "  %6.2f   >>> %s is the primary now, %.2f s after the kill\n", load_t(d),
            r->new_primary, (double)r->promoted_ms / 1000.0);
    }
    if (r->provisioned_ms < 0 && up_provisioned(d->up) > 0) {
        r->provisioned_ms = (int64_t)(now - r->kill_ms);
        snprintf(r->provisioned, sizeof(r->provisioned), "%s", c->db[c->ndb - 1].name);
        say(d, "  %6.2f   >>> %s provisioned (asked for by the new primary), %.2f s after the "
               "kill\n",
            load_t(d), r->provisioned, (double)r->provisioned_ms / 1000.0);
    }
    if (r->promoted_ms >= 0 && r->provisioned_ms >= 0 && r->restored_ms < 0 &&
        now >= r->next_probe_ms) {
        r->next_probe_ms = now + 100;
        if (primary_in_sync(d, p, &r->new_term)) {
            r->restored_ms = (int64_t)(now - r->kill_ms);
            say(d, "  %6.2f   >>> redundancy restored: %s in sync with %s, %.2f s after the "
                   "kill\n",
                load_t(d), r->provisioned, r->new_primary, (double)r->restored_ms / 1000.0);
        }
    }
}

static bool store_time_reached(struct demo *d, void *arg)
{
    watch_store(d);
    struct at_time *a = arg;
    return !d->load_running || loadgen_elapsed_us(d->lg) >= a->us;
}

static bool store_restored(struct demo *d, void *arg)
{
    (void)arg;
    watch_store(d);
    return d->sr.restored_ms >= 0;
}

static bool balance_read(struct demo *d, void *arg)
{
    (void)arg;
    return read_balance(d, &d->sr.balance_after);
}

/* The store pool's active server, from the balancer's /status, into out ("" if unknown). */
static void store_pool_active(struct demo *d, char *out, size_t len)
{
    out[0] = '\0';
    struct buf b;
    buf_init(&b);
    if (probe_http_get(up_topology(d->up)->admin.port, "/status", 1000, &b) == 0) {
        cJSON *js = cJSON_ParseWithLength(b.p, b.len);
        const cJSON *pools = cJSON_GetObjectItemCaseSensitive(js, "pools"), *p;
        cJSON_ArrayForEach(p, pools)
        {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(p, "name");
            const cJSON *ac = cJSON_GetObjectItemCaseSensitive(p, "active");
            if (cJSON_IsString(nm) && strcmp(nm->valuestring, "store") == 0 &&
                cJSON_IsString(ac))
                snprintf(out, len, "%s", ac->valuestring);
        }
        cJSON_Delete(js);
    }
    buf_free(&b);
}

static void compute_store(struct demo *d)
{
    struct store_result *r = &d->sr;
    const struct loadstats *st = loadgen_stats(d->lg);
    r->ran = true;
    r->requests = st->c.requests;
    r->ok = st->c.ok;
    r->failed = st->c.failed;
    memcpy(r->errors, st->c.errors, sizeof(r->errors));
    const struct loadstats_phase *p0 = &st->phases[0];
    double dur0 = (double)(p0->end_us - p0->start_us) / 1e6;
    r->rps_before = dur0 > 0 ? (double)p0->c.ok / dur0 : 0.0;
    r->complete = st->nphases >= 2;
    if (r->complete)
        r->gap_kill_us = st->phases[1].longest_gap_us;
}

static void print_store_result(struct demo *d)
{
    const struct store_result *r = &d->sr;
    say(d, "\n  measured (store, active-passive):\n");
    say(d, "    before the kill:  %.0f acknowledged balance updates/s, all on %s; the replica\n"
           "                      takes none (it follows the primary's log)\n",
        r->rps_before, r->old_primary);
    if (!r->complete) {
        say(d, "    (the run was cut short)\n");
        return;
    }
    if (r->promoted_ms >= 0)
        say(d, "    promotion:        %s became the primary %.2f s after the kill (term %llu -> "
               "%llu)\n",
            r->new_primary, (double)r->promoted_ms / 1000.0, (unsigned long long)r->old_term,
            (unsigned long long)r->new_term);
    else
        say(d, "    promotion:        not seen\n");
    say(d, "    failover delay:   %.1f ms without an acknowledged write across the kill\n",
        (double)r->gap_kill_us / 1000.0);
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
        say(d, ": the app answers 503 while no primary takes writes)");
    }
    say(d, "\n");
    if (r->balance_known) {
        int64_t applied = r->balance_after - r->balance_before;
        int64_t lost = (int64_t)r->ok > applied ? (int64_t)r->ok - applied : 0;
        say(d, "    writes lost:      %lld (balance +%lld, %llu updates acknowledged; %lld applied "
               "but reported failed)\n",
            (long long)lost, (long long)applied, (unsigned long long)r->ok,
            (long long)(applied > (int64_t)r->ok ? applied - (int64_t)r->ok : 0));
    } else {
        say(d, "    writes lost:      unknown (the balance could not be read)\n");
    }
    say(d, "    re-routing:       the store pool sends to %s\n",
        r->pool_active[0] ? r->pool_active : "(unknown)");
    if (r->restored_ms >= 0)
        say(d, "    redundancy:       %s provisioned %.2f s and in sync %.2f s after the kill\n",
            r->provisioned, (double)r->provisioned_ms / 1000.0, (double)r->restored_ms / 1000.0);
    else
        say(d, "    redundancy:       not restored within the demo's wait\n");
}

static bool run_store(struct demo *d)
{
    const struct demo_opts *o = d->o;
    struct store_result *r = &d->sr;
    memset(r, 0, sizeof(*r));
    r->promoted_ms = r->provisioned_ms = r->restored_ms = -1;
    say(d, "\n== 3. the store: one primary, a replica, automatic failover ===============\n"
           "  `tandem up` runs the whole picture: an arbiter (the witness), db1 and db2 in sync\n"
           "  mode (a write is acknowledged once the replica has it), app A and B reaching the\n"
           "  store through a pool that follows ROLE, and the web pool over A and B. Only the\n"
           "  primary takes writes. When it dies, the replica is promoted once the primary's\n"
           "  lease runs out, the store pool re-routes, and the new primary asks `up` for a\n"
           "  new replica.\n\n");
    struct up_config cfg;
    char err[512];
    if (up_config_default(&cfg, err, sizeof(err)) != 0) {
        say(d, "  demo: %s\n", err);
        return false;
    }
    char dir[PATH_MAX + 8];
    snprintf(dir, sizeof(dir), "%s/up", d->dir);
    cfg.dir = xstrdup(dir);
    cfg.inter_ms = o->inter_ms;
    cfg.fall = o->fall;
    cfg.rise = o->rise;
    cfg.provision_after_ms = 1000;
    struct up_opts uo = {.exe = d->exe, .out = d->out, .indent = "      up | "};
    say(d, "  $ tandem up\n");
    if (up_new(&d->loop, &cfg, &uo, &d->up, err, sizeof(err)) != 0) {
        up_config_free(&cfg);
        say(d, "  demo: %s\n", err);
        return false;
    }
    if (up_start(d->up) != 0)
        return false;
    struct store_wait w = {0, 0};
    if (!run_until(d, store_ready, &w, 30000, false)) {
        if (!d->interrupted)
            say(d, "  demo: the topology did not become ready (a primary with its replica in "
                   "sync, both apps reaching the store) within 30 s; logs in %s\n",
                up_dir(d->up));
        return false;
    }
    r->old_idx = up_primary(d->up);
    snprintf(r->old_primary, sizeof(r->old_primary), "%s",
             up_topology(d->up)->db[r->old_idx].name);
    primary_in_sync(d, r->old_idx, &r->old_term);
    unsigned web = up_topology(d->up)->web.port;
    say(d, "\n  load: %u keep-alive connections, POST /users/demo/balance {\"delta\":1} through "
           "the\n  web pool, %.1f s; kill -9 the store primary (%s) at %.1f s.\n\n",
        o->connections, (double)o->store_run_ms / 1000, r->old_primary,
        (double)o->kill_at_ms / 1000);
    say(d, "  %6s   %7s %7s   %s\n", "t (s)", "ok/s", "failed", "app tier split per 0.5 s");
    if (!load_start_req(d, o->connections, o->store_run_ms, true, web))
        return false;
    struct at_time kill_at = {o->kill_at_ms * 1000};
    run_until(d, store_time_reached, &kill_at, o->store_run_ms + 10000, false);
    if (d->interrupted) {
        load_end(d);
        return false;
    }
    if (d->load_running) {
        loadgen_mark(d->lg);
        say(d, "  %6.2f   >>> kill -9 %s (pid %d), the store primary\n", load_t(d),
            r->old_primary, up_db_pid(d->up, (size_t)r->old_idx));
        r->kill_ms = clock_now_ms();
        up_kill_db(d->up, (size_t)r->old_idx, SIGKILL);
    }
    struct at_time end = {UINT64_MAX};
    run_until(d, store_time_reached, &end, o->store_run_ms + 10000, false);
    if (d->interrupted) {
        load_end(d);
        return false;
    }
    if (d->lg && !d->load_running)
        compute_store(d);
    load_end(d);
    if (r->kill_ms && r->restored_ms < 0) {
        say(d, "  (load over; waiting for redundancy to be restored)\n");
        run_until(d, store_restored, NULL, 20000, false);
    }
    r->balance_known = run_until(d, balance_read, NULL, 10000, false);
    store_pool_active(d, r->pool_active, sizeof(r->pool_active));
    if (d->interrupted)
        return false;
    print_store_result(d);
    say(d, "\n  stopping the topology (every process by PID)\n");
    stop_up(d);
    return true;
}

/* ---- the table ------------------------------------------------------------------------- */

/* The comparison table of the architecture: each tier's way of using two servers, side by
 * side, with this run's numbers. */
static void print_comparison(struct demo *d)
{
    say(d, "\n  the comparison: both serving? failover delay? failed requests? writes lost?\n"
           "  capacity: peak requests/s with both serving vs with one idle?\n\n");
    say(d, "  %-6s %-15s %-9s %-10s %-9s %-7s %s\n", "tier", "mode", "both", "failover",
        "failed", "writes", "capacity before the kill, req/s");
    say(d, "  %-6s %-15s %-9s %-10s %-9s %-7s %s\n", "", "", "serving?", "delay, ms", "requests",
        "lost", "(both serving, or one idle)");
    for (int m = 0; m < NMODES; m++) {
        const struct mode_result *r = &d->res[m];
        if (!r->ran)
            continue;
        char gap[24], cap[64];
        snprintf(gap, sizeof(gap), "%.1f", (double)r->gap_kill_us / 1000.0);
        const char *idle = r->rps_before[1] < 1.0 ? " (B idle)" :
                           r->rps_before[0] < 1.0 ? " (A idle)" : "";
        snprintf(cap, sizeof(cap), "A %.0f + B %.0f%s", r->rps_before[0], r->rps_before[1], idle);
        bool both = r->share_before[0] > 0 && r->share_before[1] > 0;
        say(d, "  %-6s %-15s %-9s %-10s %-9llu %-7s %s\n", "app", mode_names[m],
            both ? "yes" : "no", r->complete ? gap : "-", (unsigned long long)r->failed, "-",
            cap);
    }
    const struct store_result *r = &d->sr;
    if (r->ran) {
        char gap[24], lost[24], cap[96];
        snprintf(gap, sizeof(gap), "%.1f", (double)r->gap_kill_us / 1000.0);
        if (r->balance_known) {
            int64_t applied = r->balance_after - r->balance_before;
            snprintf(lost, sizeof(lost), "%lld",
                     (long long)((int64_t)r->ok > applied ? (int64_t)r->ok - applied : 0));
        } else {
            snprintf(lost, sizeof(lost), "?");
        }
        snprintf(cap, sizeof(cap), "%s %.0f writes + replica 0 (idle for writes)",
                 r->old_primary, r->rps_before);
        say(d, "  %-6s %-15s %-9s %-10s %-9llu %-7s %s\n", "store", "active-passive", "no",
            r->complete ? gap : "-", (unsigned long long)r->failed, lost, cap);
    }
    say(d, "\n  failover delay: the longest time without a successful response after the kill.\n"
           "  failed requests: any 5xx, reset, timeout or connect error a client saw.\n"
           "  writes lost: balance updates acknowledged to a client but missing from the final\n"
           "  balance (sync mode: the promoted replica held every acknowledged write).\n"
           "  capacity: active-active uses both servers; active-passive pays for an idle one.\n");
    if (r->ran && r->restored_ms >= 0)
        say(d, "  redundancy: %s promoted %.2f s, %s provisioned %.2f s and in sync %.2f s after "
               "the kill.\n",
            r->new_primary, (double)r->promoted_ms / 1000.0, r->provisioned,
            (double)r->provisioned_ms / 1000.0, (double)r->restored_ms / 1000.0);
}

static void print_app_table(struct demo *d);

static void print_table(struct demo *d)
{
    say(d, "\n== what was measured, this run, this machine ================================\n");
    bool any = false;
    for (int m = 0; m < NMODES; m++)
        any = any || d->res[m].ran;
    if (any)
        print_app_table(d);
    print_comparison(d);
}

/* The stateless runs in detail. */
static void print_app_table(struct demo *d)
{
    say(d, "\n  the app tier:\n");
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
    say(d, "\n  longest gap: the longest time with no successful response on any connection,\n"
           "  across the kill and over the whole run (on a busy machine, the run's longest\n"
           "  gap may come from scheduling rather than from the failover).\n");
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
    o->modes = 3 | DEMO_STORE;
    o->store_run_ms = 8000;
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
    stop_up(d);
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
    d->lb = d->app[0] = d->app[1] = NULL;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    remove(path);
    return 0;
}

static void remove_logs(struct demo *d)
{
    char up[PATH_MAX + 8];
    snprintf(up, sizeof(up), "%s/up", d->dir);
    nftw(up, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
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
    say(d, "tandem demo: the architecture, live and measured\n\n"
           "  Users -> load balancer -> app server A -> store pool -> store primary\n"
           "                         -> app server B                   store replica\n\n"
           "  Every box is a real process on 127.0.0.1. First the stateless tier: two\n"
           "  `tandem app` servers behind one `tandem lb`; the same load and the same fault\n"
           "  (kill -9 of A, then a restart) run against the two ways of using two servers.\n"
           "  Then the stateful tier (`tandem up`): the store primary is killed under writes.\n"
           "  Logs: %s\n",
        d->dir);
    bool all_ok = true;
    for (int m = 0; m < NMODES && all_ok; m++) {
        if (!(o->modes & (1u << m)))
            continue;
        all_ok = run_mode(d, m);
    }
    if (all_ok && !d->interrupted && (o->modes & DEMO_STORE)) {
        stop_everything(d); /* the stateless part's servers: up starts its own */
        all_ok = run_store(d);
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
