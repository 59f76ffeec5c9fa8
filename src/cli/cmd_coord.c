/* SPDX-License-Identifier: MIT */
/* cli/cmd_coord.c -- `tandem coord`: a small client for any coordinator backend (coord/dcs.h),
 * like etcdctl for tandem's coordinators. One request per run (grant, keepalive, revoke, read,
 * txn), or `watch` until SIGINT/SIGTERM. Results go to stdout, one logfmt-style line each:
 *   grant/keepalive  lease=ID ttl_ms=N
 *   revoke           revoked lease=ID
 *   read             rev=N count=K, then per key: key=K rev=R lease=L value=V
 *   txn              ok rev=N
 *   watch            watching prefix=P rev=N keys=K, then per change: changed rev=N keys=K
 * Strings with spaces, quotes or non-printable bytes are quoted with C escapes. Failures go to
 * stderr; exit 1 coordinator unavailable (outcome unknown), 2 usage, 3 compare failed, 4 lease
 * not found. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/cfg.h"
#include "base/log.h"
#include "base/parse.h"
#include "cli/cli.h"
#include "coord/dcs.h"
#include "coord/dcs_open.h"

#define EXIT_UNAVAIL 1
#define EXIT_USAGE 2
#define EXIT_COMPARE 3
#define EXIT_NOLEASE 4
#define WATCH_POLL_MS 500 /* backends without a watch are polled */

struct coord_cfg {
    char *coordinator;
    uint64_t timeout_ms;
    char *log_level;
};

#define F(x) offsetof(struct coord_cfg, x)
static const struct cfg_entry coord_table[] = {
    {"coordinator", CFG_STRING, F(coordinator), 0, 0, NULL, NULL,
     "etcd://HOST:PORT[,HOST:PORT...] or builtin://HOST:PORT (required)", 0},
    {"timeout", CFG_DURATION, F(timeout_ms), 1, 0, "2s", NULL,
     "per request, connect included; then the outcome is unknown (exit 1)", 0},
    {"log-level", CFG_STRING, F(log_level), 0, 0, "warn", NULL,
     "error|warn|notice|info|debug (stderr)", 0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef F

/* txn flags, owned copies of argv strings split in place */
struct txn_args {
    char *cmp_key[DCS_TXN_MAX];
    uint64_t cmp_rev[DCS_TXN_MAX];
    size_t ncmp;
    struct dcs_put put[DCS_TXN_MAX];
    char *put_str[DCS_TXN_MAX];
    size_t nput;
};

/* Parses --cmp KEY=REV, --put KEY=VALUE[@LEASE], --del KEY. */
static int extra_flag(void *ud, const char *name, const char *value, char *err, size_t errlen)
{
    struct txn_args *t = ud;
    bool cmp = strcmp(name, "cmp") == 0, put = strcmp(name, "put") == 0;
    bool del = strcmp(name, "del") == 0;
    if (!cmp && !put && !del)
        return 1;
    if (value == NULL || *value == '\0') {
        snprintf(err, errlen, "option --%s needs a value", name);
        return -1;
    }
    if (cmp) {
        const char *eq = strrchr(value, '=');
        uint64_t rev;
        if (eq == NULL || eq == value || parse_uint(eq + 1, 0, INT64_MAX, &rev) != 0) {
            snprintf(err, errlen, "--cmp '%s': want KEY=REV (REV 0: the key is absent)", value);
            return -1;
        }
        if (t->ncmp == DCS_TXN_MAX) {
            snprintf(err, errlen, "at most %d --cmp", DCS_TXN_MAX);
            return -1;
        }
        t->cmp_key[t->ncmp] = xstrndup(value, (size_t)(eq - value));
        t->cmp_rev[t->ncmp++] = rev;
        return 0;
    }
    if (t->nput == DCS_TXN_MAX) {
        snprintf(err, errlen, "at most %d --put and --del together", DCS_TXN_MAX);
        return -1;
    }
    char *s = xstrdup(value);
    struct dcs_put *p = &t->put[t->nput];
    memset(p, 0, sizeof(*p));
    if (del) {
        p->key = slice_cstr(s);
        p->del = true;
    } else {
        char *eq = strchr(s, '=');
        if (eq == NULL || eq == s) {
            snprintf(err, errlen, "--put '%s': want KEY=VALUE[@LEASE]", value);
            free(s);
            return -1;
        }
        *eq = '\0';
        char *v = eq + 1;
        char *at = strrchr(v, '@');
        uint64_t lease;
        if (at && at[1] != '\0' && parse_uint(at + 1, 1, INT64_MAX, &lease) == 0) {
            *at = '\0';
            p->lease = lease;
        }
        p->key = slice_cstr(s);
        p->value = slice_cstr(v);
    }
    t->put_str[t->nput++] = s;
    return 0;
}

static void txn_args_free(struct txn_args *t)
{
    for (size_t i = 0; i < t->ncmp; i++)
        free(t->cmp_key[i]);
    for (size_t i = 0; i < t->nput; i++)
        free(t->put_str[i]);
}

struct coord_run {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    uv_timer_t timer; /* one-shot: a guard; watch: polling when the backend cannot watch */
    struct dcs *d;
    struct dcs_req req;
    const char *prefix;
    bool watch;
    bool closing;
    int rc;
    /* watch */
    bool read_busy, read_again, printed;
    uint64_t seen_fp;
    uint64_t next_id;
};

/* Prints s, quoted with C escapes when it is empty or holds a space, a quote, a backslash or a
 * non-printable byte. */
static void print_str(struct slice s)
{
    bool plain = s.len > 0;
    for (size_t i = 0; i < s.len && plain; i++) {
        unsigned char c = (unsigned char)s.p[i];
        plain = c > ' ' && c < 0x7f && c != '"' && c != '\\';
    }
    if (plain) {
        fwrite(s.p, 1, s.len, stdout);
        return;
    }
    putchar('"');
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < ' ' || c >= 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void dcs_closed(struct dcs *d)
{
    (void)d;
}

/* Closes every handle; the loop ends afterwards. */
static void run_close(struct coord_run *r)
{
    if (r->closing)
        return;
    r->closing = true;
    r->d->ops->close(r->d, dcs_closed);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->timer, NULL);
}

static int fail(struct coord_run *r, const char *what, int status)
{
    const char *why = "coordinator unavailable (timed out or failed: outcome unknown)";
    int rc = EXIT_UNAVAIL;
    if (status == DCS_ECOMPARE) {
        why = "compare failed, nothing written";
        rc = EXIT_COMPARE;
    } else if (status == DCS_ENOLEASE) {
        why = "lease not found (expired or revoked)";
        rc = EXIT_NOLEASE;
    }
    fprintf(stderr, "tandem coord: %s: %s\n", what, why);
    (void)r;
    return rc;
}

static const char *op_name(enum dcs_op op)
{
    switch (op) {
    case DCS_OP_GRANT:
        return "grant";
    case DCS_OP_KEEPALIVE:
        return "keepalive";
    case DCS_OP_REVOKE:
        return "revoke";
    case DCS_OP_READ:
        return "read";
    case DCS_OP_TXN:
        return "txn";
    }
    return "?";
}

/* FNV-1a over every (key, rev): a change under the prefix changes it. */
static uint64_t kv_fingerprint(const struct dcs_result *res)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < res->nkvs; i++) {
        const struct dcs_kv *kv = &res->kvs[i];
        for (size_t k = 0; k < kv->key.len; k++)
            h = (h ^ (unsigned char)kv->key.p[k]) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
        for (int b = 0; b < 8; b++)
            h = (h ^ ((kv->rev >> (8 * b)) & 0xff)) * 1099511628211ull;
    }
    return h;
}

static void watch_read(struct coord_run *r)
{
    if (r->closing)
        return;
    if (r->read_busy) {
        r->read_again = true;
        return;
    }
    struct dcs_req q;
    memset(&q, 0, sizeof(q));
    q.id = ++r->next_id;
    q.op = DCS_OP_READ;
    q.prefix = slice_cstr(r->prefix);
    if (dcs_submit(r->d, &q) == 0)
        r->read_busy = true;
}

static void on_watch_result(struct coord_run *r, const struct dcs_result *res)
{
    r->read_busy = false;
    if (res->status != DCS_OK) {
        fprintf(stderr, "tandem coord: watch: read failed (%d), still watching\n", res->status);
    } else {
        uint64_t fp = kv_fingerprint(res);
        if (!r->printed) {
            printf("watching prefix=");
            print_str(slice_cstr(r->prefix));
            printf(" rev=%llu keys=%zu\n", (unsigned long long)res->rev, res->nkvs);
        } else if (fp != r->seen_fp) {
            printf("changed rev=%llu keys=%zu\n", (unsigned long long)res->rev, res->nkvs);
        }
        fflush(stdout);
        r->printed = true;
        r->seen_fp = fp;
    }
    if (r->read_again) {
        r->read_again = false;
        watch_read(r);
    }
}

static void on_result(struct dcs *d, const struct dcs_result *res)
{
    struct coord_run *r = d->data;
    if (r->watch) {
        on_watch_result(r, res);
        return;
    }
    if (res->status != DCS_OK) {
        r->rc = fail(r, op_name(res->op), res->status);
        run_close(r);
        return;
    }
    switch (res->op) {
    case DCS_OP_GRANT:
    case DCS_OP_KEEPALIVE:
        printf("lease=%llu ttl_ms=%llu\n",
               (unsigned long long)(res->op == DCS_OP_GRANT ? res->lease : r->req.lease),
               (unsigned long long)res->ttl_ms);
        break;
    case DCS_OP_REVOKE:
        printf("revoked lease=%llu\n", (unsigned long long)r->req.lease);
        break;
    case DCS_OP_READ:
        printf("rev=%llu count=%zu\n", (unsigned long long)res->rev, res->nkvs);
        for (size_t i = 0; i < res->nkvs; i++) {
            const struct dcs_kv *kv = &res->kvs[i];
            printf("key=");
            print_str(kv->key);
            printf(" rev=%llu lease=%llu value=", (unsigned long long)kv->rev,
                   (unsigned long long)kv->lease);
            print_str(kv->value);
            putchar('\n');
        }
        break;
    case DCS_OP_TXN:
        printf("ok rev=%llu\n", (unsigned long long)res->rev);
        break;
    }
    fflush(stdout);
    r->rc = 0;
    run_close(r);
}

static void on_changed(struct dcs *d)
{
    watch_read(d->data);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    struct coord_run *r = s->data;
    if (!r->watch)
        r->rc = EXIT_UNAVAIL;
    run_close(r);
}

static void on_timer(uv_timer_t *t)
{
    struct coord_run *r = t->data;
    if (r->watch) {
        watch_read(r); /* poll-only backend */
        return;
    }
    /* dcs.h promises a result; this guard only keeps a broken backend from hanging us */
    fprintf(stderr, "tandem coord: %s: no answer in time\n", op_name(r->req.op));
    r->rc = EXIT_UNAVAIL;
    run_close(r);
}

static int parse_lease(const char *s, uint64_t *out)
{
    if (s == NULL || parse_uint(s, 1, INT64_MAX, out) != 0) {
        fprintf(stderr, "tandem coord: bad lease id '%s' (a positive integer)\n", s ? s : "");
        return -1;
    }
    return 0;
}

/* Fills r->req from the positionals; returns 0 or EXIT_USAGE after printing why. */
static int build_request(struct coord_run *r, char **pos, int npos, struct txn_args *t)
{
    const char *cmd = pos[0];
    struct dcs_req *q = &r->req;
    q->id = 1;
    int want = 2;
    if (strcmp(cmd, "grant") == 0) {
        q->op = DCS_OP_GRANT;
        if (npos < 2 || parse_duration_ms(pos[1], &q->ttl_ms) != 0 || q->ttl_ms == 0) {
            fprintf(stderr, "tandem coord: grant TTL_MS (a positive duration: 2000, 2s)\n");
            return EXIT_USAGE;
        }
    } else if (strcmp(cmd, "keepalive") == 0 || strcmp(cmd, "revoke") == 0) {
        q->op = cmd[0] == 'k' ? DCS_OP_KEEPALIVE : DCS_OP_REVOKE;
        if (parse_lease(npos > 1 ? pos[1] : NULL, &q->lease) != 0)
            return EXIT_USAGE;
    } else if (strcmp(cmd, "read") == 0 || strcmp(cmd, "watch") == 0) {
        q->op = DCS_OP_READ;
        r->watch = cmd[0] == 'w';
        if (npos < 2) {
            fprintf(stderr, "tandem coord: %s PREFIX\n", cmd);
            return EXIT_USAGE;
        }
        r->prefix = pos[1];
        q->prefix = slice_cstr(pos[1]);
    } else if (strcmp(cmd, "txn") == 0) {
        q->op = DCS_OP_TXN;
        want = 1;
        if (t->nput == 0 && t->ncmp == 0) {
            fprintf(stderr, "tandem coord: txn needs --cmp, --put or --del (see --help)\n");
            return EXIT_USAGE;
        }
        q->ncmp = t->ncmp;
        for (size_t i = 0; i < t->ncmp; i++) {
            q->cmp[i].key = slice_cstr(t->cmp_key[i]);
            q->cmp[i].rev = t->cmp_rev[i];
        }
        q->nput = t->nput;
        memcpy(q->put, t->put, sizeof(t->put));
    } else {
        fprintf(stderr, "tandem coord: unknown command '%s' (see --help)\n", cmd);
        return EXIT_USAGE;
    }
    if (npos > want) {
        fprintf(stderr, "tandem coord: %s: unexpected argument '%s'\n", cmd, pos[want]);
        return EXIT_USAGE;
    }
    if (q->op != DCS_OP_TXN && (t->ncmp || t->nput)) {
        fprintf(stderr, "tandem coord: --cmp, --put and --del belong to txn\n");
        return EXIT_USAGE;
    }
    return 0;
}

int cmd_coord_main(int argc, char **argv)
{
    struct coord_cfg cfg;
    struct txn_args targs;
    char err[512];
    memset(&cfg, 0, sizeof(cfg));
    memset(&targs, 0, sizeof(targs));
    if (cfg_defaults(coord_table, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem coord: %s\n", err);
        return EXIT_USAGE;
    }
    struct cli_spec spec = {
        .cmd = "coord",
        .usage = "coord --coordinator URL COMMAND [ARGS]",
        .about =
            "A client for tandem's coordinators (like etcdctl), through the same interface the\n"
            "HA agent uses. Commands:\n"
            "  grant TTL_MS             new lease; prints: lease=ID ttl_ms=N (TTL as granted)\n"
            "  keepalive LEASE          refresh; prints: lease=ID ttl_ms=N (remaining)\n"
            "  revoke LEASE             drop the lease and its keys; prints: revoked lease=ID\n"
            "  read PREFIX              every key under PREFIX at one revision; prints:\n"
            "                             rev=N count=K\n"
            "                             key=KEY rev=MODREV lease=ID value=VALUE   (per key)\n"
            "  txn [--cmp KEY=REV]... [--put KEY=VALUE[@LEASE]]... [--del KEY]...\n"
            "                           if every KEY was last written at REV (0: is absent),\n"
            "                           apply the puts/deletes; prints: ok rev=N\n"
            "  watch PREFIX             prints 'watching prefix=P rev=N keys=K' once live, then\n"
            "                           'changed rev=N keys=K' per change, until SIGINT\n"
            "Strings with spaces, quotes or non-printable bytes are printed quoted, C-escaped.\n"
            "Exit codes: 0 ok, 1 coordinator unavailable (outcome unknown), 2 usage,\n"
            "3 compare failed (nothing written), 4 lease not found.",
        .table = coord_table,
        .extra_help = "  --cmp KEY=REV                txn: KEY's mod revision is REV (0: absent)\n"
                      "  --put KEY=VALUE[@LEASE]      txn: write (attached to LEASE)\n"
                      "  --del KEY                    txn: delete\n",
        .extra = extra_flag,
        .ud = &targs,
    };
    char *pos[4];
    int rc = EXIT_USAGE;
    int npos = cli_parse(argc, argv, &spec, &cfg, pos, 4);
    if (npos == -1) {
        rc = 0;
        goto out;
    }
    if (npos < 0)
        goto out;
    enum log_level lvl;
    if (log_level_parse(cfg.log_level, &lvl) != 0) {
        fprintf(stderr, "tandem coord: bad --log-level '%s'\n", cfg.log_level);
        goto out;
    }
    log_set_level(lvl);
    log_init("coord", NULL);
    if (npos == 0) {
        fprintf(stderr, "tandem coord: a command is required (see --help)\n");
        goto out;
    }
    if (cfg.coordinator == NULL) {
        fprintf(stderr, "tandem coord: --coordinator is required (see --help)\n");
        goto out;
    }
    struct coord_run r;
    memset(&r, 0, sizeof(r));
    if (build_request(&r, pos, npos, &targs) != 0)
        goto out;
    if (uv_loop_init(&r.loop) != 0) {
        fprintf(stderr, "tandem coord: uv_loop_init failed\n");
        rc = 1;
        goto out;
    }
    r.d = dcs_open(&r.loop, cfg.coordinator, cfg.timeout_ms, err, sizeof(err));
    if (r.d == NULL) {
        fprintf(stderr, "tandem coord: %s\n", err);
        uv_loop_close(&r.loop);
        goto out;
    }
    r.d->data = &r;
    r.d->on_result = on_result;
    r.d->on_changed = on_changed;
    r.rc = EXIT_UNAVAIL;
    uv_signal_init(&r.loop, &r.sigint);
    uv_signal_init(&r.loop, &r.sigterm);
    uv_timer_init(&r.loop, &r.timer);
    r.sigint.data = r.sigterm.data = r.timer.data = &r;
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    if (r.watch) {
        r.rc = 0;
        if (r.d->ops->watch == NULL) {
            uv_timer_start(&r.timer, on_timer, 0, WATCH_POLL_MS);
        } else {
            int wrc = r.d->ops->watch(r.d, slice_cstr(r.prefix));
            if (wrc != 0) {
                fprintf(stderr, "tandem coord: watch: %s\n", uv_strerror(wrc));
                r.rc = EXIT_UNAVAIL;
                run_close(&r);
            }
        }
    } else {
        int src = dcs_submit(r.d, &r.req);
        if (src != 0) {
            fprintf(stderr, "tandem coord: %s: request refused: %s\n", op_name(r.req.op),
                    uv_strerror(src));
            r.rc = EXIT_USAGE;
            run_close(&r);
        } else {
            uv_timer_start(&r.timer, on_timer, 2 * cfg.timeout_ms + 1000, 0);
        }
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    int crc = uv_loop_close(&r.loop);
    if (crc != 0)
        log_warn("coord", "loop closed with handles open", "err=%s", uv_err_name(crc));
    free(r.d);
    rc = r.rc;
out:
    txn_args_free(&targs);
    cfg_free(coord_table, &cfg);
    return rc;
}
