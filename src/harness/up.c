/* SPDX-License-Identifier: MIT */
/* harness/up.c -- the supervisor behind `tandem up` (see up.h). Every role is a child process
 * (harness/child.c) so each can be killed on its own; the supervisor only starts, watches and
 * stops them by PID. A timer every 100 ms notices exits (reported once, never restarted),
 * readiness (every initial port listens) and, every 250 ms, which db node is the primary
 * (INFO replication over loopback). SIGUSR1 is the provisioning request from a db primary. */
#include "harness/up.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "harness/child.h"
#include "harness/probe.h"

enum kind { K_ARBITER = 0, K_DB, K_LB, K_APP };

struct proc {
    struct child c;
    struct up *u;
    enum kind kind;
    size_t idx; /* K_DB / K_APP: index in the config */
    char name[UP_NAME_MAX];
    unsigned port;
    bool spawned;
    bool reported;      /* its exit was reported */
    bool killed;        /* the caller killed it on purpose */
    bool stopped_by_us; /* up_stop sent it SIGTERM */
};

#define MAX_PROCS (2 + UP_MAX_DB + UP_MAX_APP)

struct up {
    uv_loop_t *loop;
    struct up_config cfg;
    struct up_opts o;
    char dir[PATH_MAX];
    char exe[PATH_MAX];
    char lb_ini[PATH_MAX + 16];
    struct proc *procs[MAX_PROCS];
    size_t nprocs;
    struct proc *db[UP_MAX_DB];
    struct proc *lb;
    uv_signal_t usr1;
    uv_timer_t tick, kill_timer;
    bool started, ready, stopping, released;
    unsigned open_handles;
    unsigned provisioned;
    int primary;
    uint64_t primary_term;
    uint64_t next_role_ms;
    uint64_t start_ms;
};

static void say(struct up *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct up *u, const char *fmt, ...)
{
    if (u->o.out == NULL)
        return;
    fputs(u->o.indent ? u->o.indent : "", u->o.out);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(u->o.out, fmt, ap);
    va_end(ap);
    fflush(u->o.out);
}

static unsigned pick(void *ud)
{
    (void)ud;
    return probe_free_port();
}

/* Writes DIR/lb.ini for the current topology (atomically: a new file renamed over the old, so
 * a SIGHUP never reads half a file). Returns 0 or -errno. */
static int write_lb_ini(struct up *u)
{
    const struct up_config *c = &u->cfg;
    struct buf b;
    buf_init(&b);
    buf_printf(&b,
               "# written by tandem up; rewritten when a db node is provisioned\n"
               "[lb]\nadmin = 127.0.0.1:%u\n\n"
               "[pool web]\nlisten = 127.0.0.1:%u\nprotocol = http\nmode = %s\n"
               "check = http:/healthz\ninter = %llums\ntimeout-check = %llums\nfall = %llu\n"
               "rise = %llu\n",
               c->admin.port, c->web.port,
               c->web_mode == UP_WEB_ACTIVE_PASSIVE ? "active-passive" : "active-active",
               (unsigned long long)c->inter_ms, (unsigned long long)c->check_timeout_ms,
               (unsigned long long)c->fall, (unsigned long long)c->rise);
    for (size_t i = 0; i < c->napp; i++)
        buf_printf(&b, "server = %s=127.0.0.1:%u\n", c->app[i].name, c->app[i].port);
    buf_printf(&b,
               "\n[pool store]\nlisten = 127.0.0.1:%u\nprotocol = tcp\nmode = active-passive\n"
               "check = resp-role\ninter = %llums\ntimeout-check = %llums\nfall = %llu\n"
               "rise = %llu\n",
               c->store.port, (unsigned long long)c->inter_ms,
               (unsigned long long)c->check_timeout_ms, (unsigned long long)c->fall,
               (unsigned long long)c->rise);
    for (size_t i = 0; i < c->ndb; i++)
        buf_printf(&b, "server = %s=127.0.0.1:%u\n", c->db[i].name, c->db[i].port);
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", u->lb_ini);
    FILE *f = fopen(tmp, "w");
    int rc = 0;
    if (f == NULL)
        rc = -errno;
    else {
        if (fwrite(b.p, 1, b.len, f) != b.len)
            rc = -EIO;
        if (fclose(f) != 0 && rc == 0)
            rc = -errno;
        if (rc == 0 && rename(tmp, u->lb_ini) == -1)
            rc = -errno;
    }
    buf_free(&b);
    return rc;
}

int up_new(uv_loop_t *loop, struct up_config *cfg, const struct up_opts *o, struct up **out,
           char *err, size_t errlen)
{
    int rc = up_config_validate(cfg, err, errlen);
    if (rc != 0)
        return rc;
    struct up *u = xcalloc(1, sizeof(*u));
    u->loop = loop;
    u->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    u->o = *o;
    u->primary = -1;
    size_t len = sizeof(u->exe);
    if (o->exe)
        snprintf(u->exe, sizeof(u->exe), "%s", o->exe);
    else if (uv_exepath(u->exe, &len) != 0)
        snprintf(u->exe, sizeof(u->exe), "/proc/self/exe");
    if (u->cfg.dir) {
        snprintf(u->dir, sizeof(u->dir), "%s", u->cfg.dir);
        if (mkdir(u->dir, 0755) == -1 && errno != EEXIST) {
            rc = -errno;
            snprintf(err, errlen, "cannot create %s: %s", u->dir, strerror(errno));
            goto fail;
        }
    } else {
        snprintf(u->dir, sizeof(u->dir), "/tmp/tandem-up-XXXXXX");
        if (mkdtemp(u->dir) == NULL) {
            rc = -errno;
            snprintf(err, errlen, "cannot create a directory in /tmp: %s", strerror(errno));
            goto fail;
        }
    }
    rc = up_config_assign_ports(&u->cfg, pick, NULL, err, errlen);
    if (rc != 0)
        goto fail;
    snprintf(u->lb_ini, sizeof(u->lb_ini), "%s/lb.ini", u->dir);
    rc = write_lb_ini(u);
    if (rc != 0) {
        snprintf(err, errlen, "cannot write %s: %s", u->lb_ini, strerror(-rc));
        goto fail;
    }
    *out = u;
    return 0;
fail:
    up_config_free(&u->cfg);
    free(u);
    return rc;
}

/* ---- children -------------------------------------------------------------------------- */

static void on_child_line(struct child *c, struct slice line, void *ud)
{
    (void)c;
    struct proc *p = ud;
    if (p->u->o.on_line)
        p->u->o.on_line(p->u->o.ud, p->name, line);
}

/* Starts one process; argv[0] is filled with the binary. Returns it, or NULL after saying
 * why. */
static struct proc *spawn(struct up *u, enum kind kind, size_t idx, const char *name, unsigned port,
                          char **argv)
{
    if (u->nprocs >= MAX_PROCS) {
        say(u, "up: too many processes\n");
        return NULL;
    }
    struct proc *p = xcalloc(1, sizeof(*p));
    p->u = u;
    p->kind = kind;
    p->idx = idx;
    p->port = port;
    snprintf(p->name, sizeof(p->name), "%s", name);
    u->procs[u->nprocs++] = p;
    char log[PATH_MAX + 64];
    snprintf(log, sizeof(log), "%s/%s.log", u->dir, name);
    argv[0] = u->exe;
    int rc = child_spawn(u->loop, &p->c, name, argv, log, u->o.on_line ? on_child_line : NULL, p);
    if (rc != 0) {
        say(u, "up: cannot start %s: %s\n", name, uv_strerror(rc));
        p->reported = true;
        return NULL;
    }
    p->spawned = true;
    return p;
}

static struct proc *start_db(struct up *u, size_t i)
{
    const struct up_config *c = &u->cfg;
    char listen[32], dir[PATH_MAX + 32], coord[64], ttl[32], sync[16], minr[16], after[32], cmd[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", c->db[i].port);
    snprintf(dir, sizeof(dir), "%s/%s", u->dir, c->db[i].name);
    snprintf(coord, sizeof(coord), "builtin://127.0.0.1:%u", c->arbiter.port);
    snprintf(ttl, sizeof(ttl), "%llums", (unsigned long long)c->lease_ttl_ms);
    snprintf(sync, sizeof(sync), "%llu", (unsigned long long)c->sync_replicas);
    snprintf(minr, sizeof(minr), "%llu", (unsigned long long)c->min_replicas);
    snprintf(after, sizeof(after), "%llums", (unsigned long long)c->provision_after_ms);
    snprintf(cmd, sizeof(cmd), "kill -USR1 %d", (int)getpid());
    char *argv[] = {NULL,
                    "db",
                    "--listen",
                    listen,
                    "--dir",
                    dir,
                    "--name",
                    (char *)c->db[i].name,
                    "--coordinator",
                    coord,
                    "--cluster",
                    c->cluster,
                    "--lease-ttl",
                    ttl,
                    "--sync-replicas",
                    sync,
                    "--min-replicas",
                    minr,
                    "--provision-after",
                    after,
                    "--provision-cmd",
                    cmd,
                    "--fsync",
                    c->fsync,
                    NULL};
    struct proc *p = spawn(u, K_DB, i, c->db[i].name, c->db[i].port, argv);
    u->db[i] = p;
    return p;
}

static struct proc *start_app(struct up *u, size_t i)
{
    const struct up_config *c = &u->cfg;
    char listen[32], store[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", c->app[i].port);
    snprintf(store, sizeof(store), "127.0.0.1:%u", c->store.port);
    char *argv[] = {NULL,      "app", "--listen", listen, "--name", (char *)c->app[i].name,
                    "--store", store, NULL};
    return spawn(u, K_APP, i, c->app[i].name, c->app[i].port, argv);
}

static void announce(struct up *u, const struct proc *p, const char *what)
{
    say(u, "%-8s %-7s 127.0.0.1:%-5u pid %-7d log %s/%s.log\n", p->name, what, p->port,
        child_pid(&p->c), u->dir, p->name);
}

/* ---- provisioning ---------------------------------------------------------------------- */

static unsigned live_db(const struct up *u)
{
    unsigned n = 0;
    for (size_t i = 0; i < u->cfg.ndb; i++)
        if (u->db[i] && u->db[i]->c.running)
            n++;
    return n;
}

static void on_usr1(uv_signal_t *s, int signum)
{
    (void)signum;
    struct up *u = s->data;
    if (u->stopping)
        return;
    unsigned live = live_db(u);
    unsigned n = up_provision_count(live, (unsigned)u->cfg.ndb, u->cfg.min_replicas, u->cfg.max_db);
    log_info("up", "provision request", "live=%u total=%zu min_replicas=%llu start=%u", live,
             u->cfg.ndb, (unsigned long long)u->cfg.min_replicas, n);
    if (n == 0) {
        if (live < 1 + u->cfg.min_replicas)
            say(u, "provision request: max-db (%llu) reached, no new node\n",
                (unsigned long long)u->cfg.max_db);
        return;
    }
    bool added = false;
    for (unsigned k = 0; k < n; k++) {
        int i = up_config_add_db(&u->cfg, pick, NULL);
        if (i < 0) {
            say(u, "provision request: cannot add a db node: %s\n", strerror(-i));
            break;
        }
        struct proc *p = start_db(u, (size_t)i);
        if (p == NULL)
            break;
        u->provisioned++;
        added = true;
        announce(u, p, "new");
        say(u, "  (provisioned: the primary asked for a replica; %s joins through the arbiter)\n",
            p->name);
    }
    if (!added)
        return;
    int rc = write_lb_ini(u);
    if (rc != 0)
        say(u, "cannot rewrite %s: %s\n", u->lb_ini, strerror(-rc));
    else if (u->lb && u->lb->c.running)
        child_kill(&u->lb->c, SIGHUP); /* the store pool learns the new node */
}

/* ---- supervision ----------------------------------------------------------------------- */

static bool all_listening(const struct up *u)
{
    for (size_t i = 0; i < u->nprocs; i++) {
        const struct proc *p = u->procs[i];
        if (p->port && !probe_port_open(p->port))
            return false;
    }
    return probe_port_open(u->cfg.web.port) && probe_port_open(u->cfg.store.port) &&
           probe_port_open(u->cfg.admin.port);
}

static void watch_primary(struct up *u)
{
    int primary = -1;
    uint64_t term = 0;
    for (size_t i = 0; i < u->cfg.ndb; i++) {
        if (!u->db[i] || !u->db[i]->c.running)
            continue;
        struct buf b;
        buf_init(&b);
        const char *argv[] = {"INFO", "replication"};
        if (probe_resp(u->cfg.db[i].port, 2, argv, 200, &b) == 0) {
            buf_append(&b, "", 1);
            char role[16];
            if (probe_info_get(b.p, "role", role, sizeof(role)) && strcmp(role, "master") == 0 &&
                probe_info_u64(b.p, "tandem_writable", 0) == 1) {
                primary = (int)i;
                term = probe_info_u64(b.p, "tandem_term", 0);
            }
        }
        buf_free(&b);
    }
    if (primary >= 0 && (primary != u->primary || term != u->primary_term))
        say(u, "primary: %s (term %llu)\n", u->cfg.db[primary].name, (unsigned long long)term);
    if (primary >= 0 || (u->primary >= 0 && !u->db[u->primary]->c.running))
        u->primary = primary;
    if (primary >= 0)
        u->primary_term = term;
}

static void on_tick(uv_timer_t *t)
{
    struct up *u = t->data;
    for (size_t i = 0; i < u->nprocs; i++) {
        struct proc *p = u->procs[i];
        if (!p->spawned || p->c.running || p->reported)
            continue;
        p->reported = true;
        if (u->stopping)
            continue;
        char why[96];
        if (p->c.term_signal)
            snprintf(why, sizeof(why), "was killed by signal %d (%s)", p->c.term_signal,
                     strsignal(p->c.term_signal));
        else
            snprintf(why, sizeof(why), "exited with status %lld", (long long)p->c.exit_status);
        say(u, "%s (pid %d) %s%s; not restarted%s\n", p->name, child_pid(&p->c), why,
            p->killed ? " (on purpose)" : "",
            p->kind == K_DB && u->cfg.min_replicas ? " (the primary provisions a new db node)"
                                                   : "");
    }
    if (u->stopping)
        return;
    uint64_t now = clock_now_ms();
    if (!u->ready && all_listening(u)) {
        u->ready = true;
        say(u,
            "ready in %.1f s: web http://127.0.0.1:%u  store 127.0.0.1:%u  admin "
            "http://127.0.0.1:%u\n",
            (double)(now - u->start_ms) / 1000.0, u->cfg.web.port, u->cfg.store.port,
            u->cfg.admin.port);
        say(u, "  tandem status --admin 127.0.0.1:%u\n", u->cfg.admin.port);
    }
    if (u->ready && now >= u->next_role_ms) {
        u->next_role_ms = now + 250;
        watch_primary(u);
    }
}

int up_start(struct up *u)
{
    const struct up_config *c = &u->cfg;
    u->start_ms = clock_now_ms();
    uv_signal_init(u->loop, &u->usr1);
    u->usr1.data = u;
    uv_signal_start(&u->usr1, on_usr1, SIGUSR1);
    uv_timer_init(u->loop, &u->tick);
    u->tick.data = u;
    uv_timer_init(u->loop, &u->kill_timer);
    u->kill_timer.data = u;
    u->open_handles = 3;
    u->started = true;
    say(u, "logs and data in %s\n", u->dir);
    char listen[32], adir[PATH_MAX + 32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", c->arbiter.port);
    snprintf(adir, sizeof(adir), "%s/arbiter", u->dir);
    char *aargv[] = {NULL, "arbiter", "--listen", listen, "--dir", adir, NULL};
    struct proc *p = spawn(u, K_ARBITER, 0, "arbiter", c->arbiter.port, aargv);
    if (p == NULL)
        return -ECHILD;
    announce(u, p, "arbiter");
    for (size_t i = 0; i < c->ndb; i++) {
        p = start_db(u, i);
        if (p == NULL)
            return -ECHILD;
        announce(u, p, "db");
    }
    char *largv[] = {NULL, "lb", "--config", u->lb_ini, NULL};
    p = spawn(u, K_LB, 0, "lb", c->admin.port, largv);
    if (p == NULL)
        return -ECHILD;
    u->lb = p;
    say(u, "%-8s %-7s 127.0.0.1:%-5u pid %-7d log %s/lb.log\n", "lb", "admin", c->admin.port,
        child_pid(&p->c), u->dir);
    say(u, "%-8s %-7s 127.0.0.1:%-5u (lb: %s over the apps)\n", "web", "pool", c->web.port,
        c->web_mode == UP_WEB_ACTIVE_PASSIVE ? "active-passive" : "active-active");
    say(u, "%-8s %-7s 127.0.0.1:%-5u (lb: tcp, to the db node whose ROLE is master)\n", "store",
        "pool", c->store.port);
    for (size_t i = 0; i < c->napp; i++) {
        p = start_app(u, i);
        if (p == NULL)
            return -ECHILD;
        announce(u, p, "app");
    }
    uv_timer_start(&u->tick, on_tick, 100, 100);
    return 0;
}

bool up_is_ready(const struct up *u)
{
    return u->ready;
}

int up_primary(const struct up *u)
{
    return u->primary;
}

const struct up_config *up_topology(const struct up *u)
{
    return &u->cfg;
}

const char *up_dir(const struct up *u)
{
    return u->dir;
}

int up_db_pid(const struct up *u, size_t i)
{
    return i < u->cfg.ndb && u->db[i] ? child_pid(&u->db[i]->c) : 0;
}

bool up_db_alive(const struct up *u, size_t i)
{
    return i < u->cfg.ndb && u->db[i] && u->db[i]->c.running;
}

int up_kill_db(struct up *u, size_t i, int sig)
{
    if (i >= u->cfg.ndb || u->db[i] == NULL)
        return -ESRCH;
    u->db[i]->killed = true;
    return child_kill(&u->db[i]->c, sig);
}

unsigned up_provisioned(const struct up *u)
{
    return u->provisioned;
}

void up_describe(const struct up *u, struct buf *out)
{
    for (size_t i = 0; i < u->nprocs; i++) {
        const struct proc *p = u->procs[i];
        if (p->spawned)
            buf_printf(out, "%s 127.0.0.1:%u pid %d%s\n", p->name, p->port, child_pid(&p->c),
                       p->c.running ? "" : " (exited)");
    }
}

bool up_any_alive(const struct up *u)
{
    for (size_t i = 0; i < u->nprocs; i++)
        if (u->procs[i]->c.running)
            return true;
    return false;
}

/* ---- stopping -------------------------------------------------------------------------- */

static void on_kill_timer(uv_timer_t *t)
{
    struct up *u = t->data;
    for (size_t i = 0; i < u->nprocs; i++)
        if (u->procs[i]->c.running) {
            say(u, "%s (pid %d) still running: SIGKILL\n", u->procs[i]->name,
                child_pid(&u->procs[i]->c));
            child_kill(&u->procs[i]->c, SIGKILL);
        }
}

void up_stop(struct up *u, uint64_t grace_ms)
{
    if (u->stopping)
        return;
    u->stopping = true;
    if (!u->started)
        return;
    uv_signal_stop(&u->usr1);
    /* the clients of the store first, so the db nodes see no traffic while they hand over */
    for (size_t i = u->nprocs; i-- > 0;) {
        if (u->procs[i]->c.running) {
            u->procs[i]->stopped_by_us = true;
            child_kill(&u->procs[i]->c, SIGTERM);
        }
    }
    uv_timer_start(&u->kill_timer, on_kill_timer, grace_ms, 0);
}

unsigned up_bad_exits(const struct up *u, struct buf *out)
{
    unsigned n = 0;
    for (size_t i = 0; i < u->nprocs; i++) {
        const struct proc *p = u->procs[i];
        if (!p->spawned || p->c.running || !p->stopped_by_us)
            continue;
        if (p->c.exit_status == 0 && p->c.term_signal == 0)
            continue;
        n++;
        buf_printf(out, "%s (pid %d) exited with status %lld, signal %d, after SIGTERM\n", p->name,
                   child_pid(&p->c), (long long)p->c.exit_status, p->c.term_signal);
    }
    return n;
}

bool up_is_stopped(const struct up *u)
{
    return !up_any_alive(u);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct up *u = h->data;
    u->open_handles--;
}

void up_release(struct up *u)
{
    if (u->released)
        return;
    u->released = true;
    for (size_t i = 0; i < u->nprocs; i++)
        if (u->procs[i]->spawned)
            child_release(&u->procs[i]->c);
    if (u->started) {
        uv_close((uv_handle_t *)&u->usr1, on_handle_closed);
        uv_close((uv_handle_t *)&u->tick, on_handle_closed);
        uv_close((uv_handle_t *)&u->kill_timer, on_handle_closed);
    }
}

bool up_is_released(const struct up *u)
{
    if (!u->released || u->open_handles != 0)
        return false;
    for (size_t i = 0; i < u->nprocs; i++) {
        const struct child *c = &u->procs[i]->c;
        /* a failed spawn may still have handles closing (child_spawn closes them itself) */
        if ((u->procs[i]->spawned || c->released) && !child_is_released(c))
            return false;
    }
    return true;
}

void up_free(struct up *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < u->nprocs; i++)
        free(u->procs[i]);
    up_config_free(&u->cfg);
    free(u);
}
