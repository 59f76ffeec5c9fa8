/* SPDX-License-Identifier: MIT */
/* Tests for coord/arbiter.c and coord/dcs_builtin.c together: the arbiter and the builtin://
 * backend on one libuv loop over loopback. Grant, keepalive, transactions (compare success and
 * failure, ENOLEASE), reads, revoke deleting keys, expiry deleting keys (with a watch firing),
 * DCS_EUNAVAIL when the arbiter is stopped, reconnection to a restarted arbiter with its state
 * intact, a per-request timeout against a server that never answers, close() cancelling
 * requests; results never come from inside submit, and every handle closes
 * (uv_loop_close returns 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/fsio.h"
#include "coord/arbiter.h"
#include "coord/arbiter_core.h"
#include "coord/dcs_builtin.h"
#include "testutil.h"

#define MAX_KV 8

struct env {
    uv_loop_t loop;
    char *dir;
    struct arbiter_config cfg;
    struct arbiter *arb;
    bool arb_closed;
    struct dcs *d;
    bool d_closed;
    bool in_submit;
    int results;
    struct dcs_result last;
    char keys[MAX_KV][64], vals[MAX_KV][64];
    int changed;
    int fatal;
    bool close_in_cb; /* the result callback closes the backend */
};

static void on_dcs_closed(struct dcs *d);

/* Whether the state file in e->dir holds key (loaded as a restart would). */
static bool state_file_has(struct env *e, const char *key)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/arbiter.state", e->dir);
    size_t n;
    char *b = tu_read(path, &n);
    if (b == NULL)
        return false;
    struct arbiter_core *c = arbiter_core_new(NULL);
    struct dcs_kv kv;
    bool has = arbiter_core_load(c, b, n, 0) == 0 && arbiter_core_get(c, slice_cstr(key), &kv);
    arbiter_core_free(c);
    free(b);
    return has;
}

static void on_result(struct dcs *d, const struct dcs_result *r)
{
    struct env *e = d->data;
    assert_false(e->in_submit); /* never from inside submit */
    e->results++;
    if (e->close_in_cb) {
        e->close_in_cb = false;
        d->ops->close(d, on_dcs_closed);
    }
    e->last = *r;
    e->last.kvs = NULL;
    for (size_t i = 0; i < r->nkvs && i < MAX_KV; i++) {
        snprintf(e->keys[i], sizeof(e->keys[i]), "%.*s", (int)r->kvs[i].key.len, r->kvs[i].key.p);
        snprintf(e->vals[i], sizeof(e->vals[i]), "%.*s", (int)r->kvs[i].value.len,
                 r->kvs[i].value.p);
    }
}

static void on_changed(struct dcs *d)
{
    struct env *e = d->data;
    e->changed++;
}

static void on_fatal(void *ud)
{
    struct env *e = ud;
    e->fatal++;
}

static void start_arbiter(struct env *e)
{
    e->arb = arbiter_new(&e->loop, &e->cfg);
    arbiter_on_fatal(e->arb, on_fatal, e);
    e->arb_closed = false;
    char err[256];
    int rc = arbiter_start(e->arb, err, sizeof(err));
    if (rc != 0)
        fail_msg("arbiter_start: %s", err);
    /* Keep the port for restarts. */
    ((struct sockaddr_in *)&e->cfg.listen)->sin_port = htons((uint16_t)arbiter_port(e->arb));
}

static void on_arb_closed(void *ud)
{
    struct env *e = ud;
    e->arb_closed = true;
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag is true or ms pass; returns the flag. */
static bool run_until(struct env *e, const bool *flag, uint64_t ms)
{
    uint64_t end = clock_now_ms() + ms;
    uv_timer_t guard;
    uv_timer_init(&e->loop, &guard);
    uv_timer_start(&guard, tick, 10, 10); /* wakes the loop */
    while (!*flag && clock_now_ms() < end)
        uv_run(&e->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    return *flag;
}

static void stop_arbiter(struct env *e)
{
    arbiter_close(e->arb, on_arb_closed, e);
    assert_true(run_until(e, &e->arb_closed, 5000));
    arbiter_free(e->arb);
    e->arb = NULL;
}

static void new_dcs(struct env *e, int port, uint64_t timeout_ms)
{
    char hp[64], err[256];
    snprintf(hp, sizeof(hp), "builtin://127.0.0.1:%d", port);
    e->d = dcs_builtin_new(&e->loop, hp, timeout_ms, err, sizeof(err));
    assert_non_null(e->d);
    e->d->on_result = on_result;
    e->d->on_changed = on_changed;
    e->d->data = e;
    e->d_closed = false;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    uv_loop_init(&e->loop);
    e->dir = tu_mkdtemp();
    struct sockaddr_in *sin = (struct sockaddr_in *)&e->cfg.listen;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin->sin_port = 0;
    e->cfg.dir = e->dir;
    e->cfg.max_clients = 100;
    start_arbiter(e);
    new_dcs(e, arbiter_port(e->arb), 2000);
    *state = e;
    return 0;
}

static void on_dcs_closed(struct dcs *d)
{
    struct env *e = d->data;
    e->d_closed = true;
    free(d);
}

static int teardown(void **state)
{
    struct env *e = *state;
    if (e->d) {
        e->d->ops->close(e->d, on_dcs_closed);
        assert_true(run_until(e, &e->d_closed, 5000));
    }
    if (e->arb)
        stop_arbiter(e);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    tu_rmtree(e->dir);
    free(e);
    return 0;
}

/* Submits q and runs the loop until its result; returns it (copied into e->last). */
static const struct dcs_result *call(struct env *e, struct dcs_req *q)
{
    static uint64_t next_id = 1;
    q->id = next_id++;
    int before = e->results;
    e->in_submit = true;
    assert_int_equal(dcs_submit(e->d, q), 0);
    e->in_submit = false;
    assert_int_equal(e->results, before); /* nothing delivered synchronously */
    uint64_t end = clock_now_ms() + 5000;
    while (e->results == before && clock_now_ms() < end)
        uv_run(&e->loop, UV_RUN_ONCE);
    assert_int_equal(e->results, before + 1);
    assert_int_equal(e->last.id, q->id);
    return &e->last;
}

static const struct dcs_result *grant(struct env *e, uint64_t ttl)
{
    struct dcs_req q = {.op = DCS_OP_GRANT, .ttl_ms = ttl};
    return call(e, &q);
}

static const struct dcs_result *keepalive(struct env *e, uint64_t lease)
{
    struct dcs_req q = {.op = DCS_OP_KEEPALIVE, .lease = lease};
    return call(e, &q);
}

static const struct dcs_result *readp(struct env *e, const char *prefix)
{
    struct dcs_req q = {.op = DCS_OP_READ, .prefix = slice_cstr(prefix)};
    return call(e, &q);
}

static void test_grant_keepalive_txn_read_revoke(void **state)
{
    struct env *e = *state;
    const struct dcs_result *r = grant(e, 3000);
    assert_int_equal(r->status, DCS_OK);
    assert_true(r->lease != 0);
    assert_int_equal(r->ttl_ms, 3000);
    uint64_t lease = r->lease;
    r = keepalive(e, lease);
    assert_int_equal(r->status, DCS_OK);
    assert_int_equal(r->ttl_ms, 3000);
    r = keepalive(e, lease + 100);
    assert_int_equal(r->status, DCS_ENOLEASE);

    /* Take the leader key if absent, with the term. */
    struct dcs_req q = {.op = DCS_OP_TXN, .ncmp = 1, .nput = 2};
    q.cmp[0] = (struct dcs_cmp){SLICE_LIT("/t/c/leader"), 0};
    q.put[0] = (struct dcs_put){SLICE_LIT("/t/c/leader"), SLICE_LIT("name=db1 term=1"), lease,
                                false};
    q.put[1] = (struct dcs_put){SLICE_LIT("/t/c/term"), SLICE_LIT("1"), 0, false};
    r = call(e, &q);
    assert_int_equal(r->status, DCS_OK);
    assert_int_equal(r->rev, 1);
    /* The same compare now fails; nothing is written. */
    r = call(e, &q);
    assert_int_equal(r->status, DCS_ECOMPARE);
    /* A put on an unknown lease. */
    struct dcs_req bad = {.op = DCS_OP_TXN, .nput = 1};
    bad.put[0] = (struct dcs_put){SLICE_LIT("/t/c/x"), SLICE_LIT("v"), 424242, false};
    r = call(e, &bad);
    assert_int_equal(r->status, DCS_ENOLEASE);
    /* A value that reads "DEL" is a value. */
    struct dcs_req odd = {.op = DCS_OP_TXN, .ncmp = 1, .nput = 1};
    odd.cmp[0] = (struct dcs_cmp){SLICE_LIT("/t/c/term"), 1};
    odd.put[0] = (struct dcs_put){SLICE_LIT("/t/c/del"), SLICE_LIT("DEL"), 0, false};
    r = call(e, &odd);
    assert_int_equal(r->status, DCS_OK);
    assert_int_equal(r->rev, 2);

    r = readp(e, "/t/c/");
    assert_int_equal(r->status, DCS_OK);
    assert_int_equal(r->rev, 2);
    assert_int_equal(r->nkvs, 3);
    assert_string_equal(e->keys[0], "/t/c/del");
    assert_string_equal(e->vals[0], "DEL");
    assert_string_equal(e->keys[1], "/t/c/leader");
    assert_string_equal(e->vals[1], "name=db1 term=1");
    assert_string_equal(e->keys[2], "/t/c/term");

    /* Revoke: the leader key goes with the lease. */
    struct dcs_req rv = {.op = DCS_OP_REVOKE, .lease = lease};
    r = call(e, &rv);
    assert_int_equal(r->status, DCS_OK);
    r = call(e, &rv);
    assert_int_equal(r->status, DCS_ENOLEASE);
    r = readp(e, "/t/c/");
    assert_int_equal(r->rev, 3);
    assert_int_equal(r->nkvs, 2);
    assert_string_equal(e->keys[0], "/t/c/del");
    assert_string_equal(e->keys[1], "/t/c/term");
    /* Delete in a transaction. */
    struct dcs_req del = {.op = DCS_OP_TXN, .nput = 1};
    del.put[0] = (struct dcs_put){SLICE_LIT("/t/c/del"), {NULL, 0}, 0, true};
    r = call(e, &del);
    assert_int_equal(r->status, DCS_OK);
    assert_int_equal(r->rev, 4);
    r = readp(e, "");
    assert_int_equal(r->nkvs, 1);
}

static void test_expiry_and_watch(void **state)
{
    struct env *e = *state;
    assert_int_equal(e->d->ops->watch(e->d, SLICE_LIT("/w/")), 0);
    const struct dcs_result *r = grant(e, 150);
    assert_int_equal(r->status, DCS_OK);
    uint64_t lease = r->lease;
    struct dcs_req q = {.op = DCS_OP_TXN, .nput = 1};
    q.put[0] = (struct dcs_put){SLICE_LIT("/w/member"), SLICE_LIT("x"), lease, false};
    r = call(e, &q);
    assert_int_equal(r->status, DCS_OK);
    uint64_t t0 = clock_now_ms();
    /* The watch sees the put (it may have been set up just before or after it). */
    r = readp(e, "/w/");
    assert_int_equal(r->nkvs, 1);
    int seen = e->changed;
    /* Wait for the expiry: the key disappears on its own and the watch fires. */
    bool gone = false;
    while (!gone && clock_now_ms() - t0 < 3000) {
        uv_run(&e->loop, UV_RUN_ONCE);
        r = readp(e, "/w/");
        gone = r->nkvs == 0;
    }
    assert_true(gone);
    assert_true(clock_now_ms() - t0 >= 140); /* not early (the grant came before t0) */
    uint64_t end = clock_now_ms() + 2000;
    while (e->changed == seen && clock_now_ms() < end)
        uv_run(&e->loop, UV_RUN_ONCE);
    assert_true(e->changed > seen);
    r = keepalive(e, lease);
    assert_int_equal(r->status, DCS_ENOLEASE);
}

static void test_stopped_then_restarted(void **state)
{
    struct env *e = *state;
    struct dcs_req q = {.op = DCS_OP_TXN, .nput = 1};
    q.put[0] = (struct dcs_put){SLICE_LIT("/s/term"), SLICE_LIT("5"), 0, false};
    const struct dcs_result *r = call(e, &q);
    assert_int_equal(r->status, DCS_OK);
    uint64_t rev = r->rev;
    stop_arbiter(e);
    /* Down: every request fails with EUNAVAIL (from the lost connection or the backoff). */
    for (int i = 0; i < 3; i++) {
        r = readp(e, "/s/");
        assert_int_equal(r->status, DCS_EUNAVAIL);
    }
    /* Back on the same port and directory: the backend reconnects, the state is intact. */
    start_arbiter(e);
    bool ok = false;
    uint64_t end = clock_now_ms() + 5000;
    while (!ok && clock_now_ms() < end) {
        r = readp(e, "/s/");
        ok = r->status == DCS_OK;
        if (!ok) {
            uv_run(&e->loop, UV_RUN_ONCE);
        }
    }
    assert_true(ok);
    assert_int_equal(r->rev, rev);
    assert_int_equal(r->nkvs, 1);
    assert_string_equal(e->vals[0], "5");
}

/* A server that accepts and reads but never answers. */
struct mute {
    uv_tcp_t listener;
    uv_tcp_t conns[4];
    int nconns;
    char buf[4096];
};

static void mute_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)s;
    struct mute *m = h->data;
    *b = uv_buf_init(m->buf, sizeof(m->buf));
}

static void mute_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n < 0)
        uv_read_stop(s);
}

static void mute_conn(uv_stream_t *ls, int status)
{
    struct mute *m = ls->data;
    if (status < 0 || m->nconns == 4)
        return;
    uv_tcp_t *t = &m->conns[m->nconns++];
    uv_tcp_init(ls->loop, t);
    t->data = m;
    if (uv_accept(ls, (uv_stream_t *)t) == 0)
        uv_read_start((uv_stream_t *)t, mute_alloc, mute_read);
}

static void test_timeout(void **state)
{
    struct env *e = *state;
    struct mute m;
    memset(&m, 0, sizeof(m));
    uv_tcp_init(&e->loop, &m.listener);
    m.listener.data = &m;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&m.listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&m.listener, 8, mute_conn), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&m.listener, (struct sockaddr *)&ss, &len);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    /* Replace the env's backend with one pointing at the mute server. */
    e->d->ops->close(e->d, on_dcs_closed);
    assert_true(run_until(e, &e->d_closed, 5000));
    new_dcs(e, port, 200);
    /* Two requests in flight: both fail once the first one's deadline passes. */
    struct dcs_req q1 = {.id = 901, .op = DCS_OP_READ, .prefix = SLICE_LIT("/")};
    struct dcs_req q2 = {.id = 902, .op = DCS_OP_GRANT, .ttl_ms = 1000};
    uint64_t t0 = clock_now_ms();
    e->in_submit = true;
    assert_int_equal(dcs_submit(e->d, &q1), 0);
    assert_int_equal(dcs_submit(e->d, &q2), 0);
    e->in_submit = false;
    int before = e->results;
    while (e->results < before + 2 && clock_now_ms() - t0 < 5000)
        uv_run(&e->loop, UV_RUN_ONCE);
    assert_int_equal(e->results, before + 2);
    assert_int_equal(e->last.id, 902);
    assert_int_equal(e->last.status, DCS_EUNAVAIL);
    uint64_t took = clock_now_ms() - t0;
    assert_true(took >= 190);
    assert_true(took < 2000);
    e->d->ops->close(e->d, on_dcs_closed);
    assert_true(run_until(e, &e->d_closed, 5000));
    e->d = NULL;
    for (int i = 0; i < m.nconns; i++)
        uv_close((uv_handle_t *)&m.conns[i], NULL);
    uv_close((uv_handle_t *)&m.listener, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
}

static void test_close_cancels(void **state)
{
    struct env *e = *state;
    struct dcs_req q = {.id = 77, .op = DCS_OP_GRANT, .ttl_ms = 1000};
    int before = e->results;
    e->in_submit = true;
    assert_int_equal(dcs_submit(e->d, &q), 0);
    e->in_submit = false;
    e->d->ops->close(e->d, on_dcs_closed);
    assert_true(e->d->ops->submit(e->d, &q) != 0); /* refused after close */
    assert_true(run_until(e, &e->d_closed, 5000));
    e->d = NULL;
    /* Give a reply every chance to arrive: it must not be delivered. */
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(e->results, before);
}

/* A plain blocking client in this thread: after each single loop iteration, any reply that
 * has arrived is checked against the state file on disk. A reply written before the state
 * would be seen here with the key missing from the file. */
static void test_reply_only_after_state_written(void **state)
{
    struct env *e = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)arbiter_port(e->arb))};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    for (int i = 0; i < 5; i++) {
        char cmd[128], key[32];
        snprintf(key, sizeof(key), "/d/k%d", i);
        int n = snprintf(cmd, sizeof(cmd), "TXN 0 1 PUT %s v 0\r\n", key);
        assert_int_equal(write(fd, cmd, (size_t)n), n);
        char reply[64];
        ssize_t got = 0;
        uint64_t end = clock_now_ms() + 5000;
        while (got <= 0 && clock_now_ms() < end) {
            uv_run(&e->loop, UV_RUN_NOWAIT);
            got = recv(fd, reply, sizeof(reply), MSG_DONTWAIT);
        }
        assert_true(got > 0);
        assert_true(state_file_has(e, key));
        assert_memory_equal(reply, "*2\r\n:0\r\n", 8);
    }
    close(fd);
}

static void test_failed_state_write_gives_no_reply(void **state)
{
    struct env *e = *state;
    const struct dcs_result *r = readp(e, "");
    assert_int_equal(r->status, DCS_OK);
    struct fsio_fault f = {.at = 1, .ops = 1u << FSIO_OP_RENAME, .persistent = true};
    fsio_fault_set(&f);
    struct dcs_req q = {.op = DCS_OP_TXN, .nput = 1};
    q.put[0] = (struct dcs_put){SLICE_LIT("/f/lost"), SLICE_LIT("v"), 0, false};
    r = call(e, &q);
    fsio_fault_clear();
    /* The arbiter stopped serving: the request's outcome is unknown to the client. */
    assert_int_equal(r->status, DCS_EUNAVAIL);
    assert_int_equal(e->fatal, 1);
    assert_false(state_file_has(e, "/f/lost"));
}

/* A callback that closes the backend stops every later delivery, even of replies already
 * received in the same read, and of failures queued for the defer timer. */
static void test_close_from_callback(void **state)
{
    struct env *e = *state;
    const struct dcs_result *r = readp(e, ""); /* connected */
    assert_int_equal(r->status, DCS_OK);
    int before = e->results;
    e->in_submit = true;
    for (uint64_t i = 0; i < 3; i++) {
        struct dcs_req q = {.id = 500 + i, .op = DCS_OP_READ, .prefix = SLICE_LIT("")};
        assert_int_equal(dcs_submit(e->d, &q), 0);
    }
    e->in_submit = false;
    e->close_in_cb = true;
    assert_true(run_until(e, &e->d_closed, 5000));
    e->d = NULL;
    assert_int_equal(e->results, before + 1);
    /* Same with failures: arbiter down, requests fail from the backoff path. */
    stop_arbiter(e);
    new_dcs(e, (int)ntohs(((struct sockaddr_in *)&e->cfg.listen)->sin_port), 1000);
    before = e->results;
    e->in_submit = true;
    for (uint64_t i = 0; i < 3; i++) {
        struct dcs_req q = {.id = 600 + i, .op = DCS_OP_READ, .prefix = SLICE_LIT("")};
        assert_int_equal(dcs_submit(e->d, &q), 0);
    }
    e->in_submit = false;
    e->close_in_cb = true;
    assert_true(run_until(e, &e->d_closed, 5000));
    e->d = NULL;
    assert_int_equal(e->results, before + 1);
    assert_int_equal(e->last.status, DCS_EUNAVAIL);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grant_keepalive_txn_read_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_and_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_then_restarted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_only_after_state_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_state_write_gives_no_reply, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
