/* SPDX-License-Identifier: MIT */
/* Unit tests for coord/dcs_etcd.c, the I/O shell, against a scripted HTTP server on the same
 * libuv loop (127.0.0.1, ephemeral port): results come from the loop and never from inside
 * submit, exactly once; a silent server is DCS_EUNAVAIL after the timeout; a refused endpoint
 * hands over to the next one; close() with requests in flight calls nothing but done and leaves
 * the loop closable; the watch stream turns lines into on_changed and comes back after the
 * server drops it. Answers are bodies captured from etcd 3.4.23. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "base/buf.h"
#include "coord/dcs_etcd.h"

enum srv_mode {
    SRV_ANSWER, /* 200 with `body`, keep-alive */
    SRV_SILENT, /* read the request, never answer */
    SRV_STREAM, /* chunked watch stream: created + one event, then close the connection */
};

struct srv {
    uv_tcp_t listener;
    int port;
    enum srv_mode mode;
    const char *body;
    unsigned conns;
    unsigned requests;
    char last_path[64];
    struct buf last_body;
};

struct conn {
    uv_tcp_t tcp;
    struct srv *s;
    struct buf in;
};

static struct srv srv;

struct ctx {
    uv_loop_t loop;
    struct dcs *d;
    bool in_submit;
    unsigned results;
    struct dcs_result last;
    uint64_t last_nkvs;
    char first_key[64];
    unsigned changed;
    bool closed;
    uint64_t t_result_ms;
};

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    buf_free(&c->in);
    free(c);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(hint);
    b->len = hint;
}

static void write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void send_str(struct conn *c, const char *s)
{
    uv_write_t *w = malloc(sizeof(*w));
    char *copy = strdup(s);
    w->data = copy;
    uv_buf_t b = uv_buf_init(copy, (unsigned)strlen(copy));
    uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, write_done);
}

/* Takes every complete request (head + Content-Length body) out of c->in and answers it. */
static void serve(struct conn *c)
{
    for (;;) {
        char *end = memmem(c->in.p, c->in.len, "\r\n\r\n", 4);
        if (end == NULL)
            return;
        size_t head = (size_t)(end - c->in.p) + 4;
        char *cl = memmem(c->in.p, head, "Content-Length: ", 16);
        size_t blen = cl ? strtoul(cl + 16, NULL, 10) : 0;
        if (c->in.len < head + blen)
            return;
        struct srv *s = c->s;
        s->requests++;
        char *sp = memchr(c->in.p, ' ', head);
        char *sp2 = sp ? memchr(sp + 1, ' ', head) : NULL;
        if (sp && sp2)
            snprintf(s->last_path, sizeof(s->last_path), "%.*s", (int)(sp2 - sp - 1), sp + 1);
        s->last_body.len = 0;
        buf_append(&s->last_body, c->in.p + head, blen);
        buf_consume(&c->in, head + blen);
        if (s->mode == SRV_ANSWER) {
            char hdr[128];
            snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     strlen(s->body));
            send_str(c, hdr);
            send_str(c, s->body);
        } else if (s->mode == SRV_STREAM) {
            static const char l1[] =
                "{\"result\":{\"header\":{\"revision\":\"3\"},\"created\":true}}\n";
            static const char l2[] =
                "{\"result\":{\"header\":{\"revision\":\"4\"},\"events\":[{\"kv\":"
                "{\"key\":\"L3QvYQ==\",\"mod_revision\":\"4\"}}]}}\n";
            char buf[512];
            snprintf(
                buf, sizeof(buf),
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n%zx\r\n%s\r\n",
                strlen(l1), l1, strlen(l2), l2);
            send_str(c, buf);
            /* then the stream breaks (no final chunk): the backend must re-establish it */
            uv_close((uv_handle_t *)&c->tcp, conn_closed);
            return;
        }
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = st->data;
    if (n > 0) {
        buf_append(&c->in, b->base, (size_t)n);
        serve(c);
    }
    free(b->base);
    if (n < 0 && !uv_is_closing((uv_handle_t *)st))
        uv_close((uv_handle_t *)st, conn_closed);
}

static void on_conn(uv_stream_t *l, int status)
{
    assert_int_equal(status, 0);
    struct srv *s = l->data;
    struct conn *c = calloc(1, sizeof(*c));
    c->s = s;
    buf_init(&c->in);
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    s->conns++;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void srv_start(uv_loop_t *loop, enum srv_mode mode, const char *body)
{
    memset(&srv, 0, sizeof(srv));
    buf_init(&srv.last_body);
    srv.mode = mode;
    srv.body = body;
    uv_tcp_init(loop, &srv.listener);
    srv.listener.data = &srv;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&srv.listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv.listener, 16, on_conn), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&srv.listener, (struct sockaddr *)&ss, &len);
    srv.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h->data == &srv ? NULL : conn_closed);
}

static void dcs_done(struct dcs *d)
{
    struct ctx *c = d->data;
    c->closed = true;
}

static void on_result(struct dcs *d, const struct dcs_result *r)
{
    struct ctx *c = d->data;
    assert_false(c->in_submit);
    c->results++;
    c->last = *r;
    c->last_nkvs = r->nkvs;
    c->t_result_ms = uv_now(&c->loop);
    if (r->nkvs)
        snprintf(c->first_key, sizeof(c->first_key), "%.*s", (int)r->kvs[0].key.len,
                 r->kvs[0].key.p);
    c->last.kvs = NULL;
}

static void on_changed(struct dcs *d)
{
    struct ctx *c = d->data;
    assert_false(c->in_submit);
    c->changed++;
}

static void ctx_open(struct ctx *c, const char *endpoints, uint64_t timeout_ms)
{
    char err[256];
    c->d = dcs_etcd_new(&c->loop, endpoints, timeout_ms, err, sizeof(err));
    assert_non_null(c->d);
    c->d->data = c;
    c->d->on_result = on_result;
    c->d->on_changed = on_changed;
}

static int submit(struct ctx *c, const struct dcs_req *q)
{
    c->in_submit = true;
    int rc = dcs_submit(c->d, q);
    c->in_submit = false;
    return rc;
}

/* Runs the loop until cond holds (checked per iteration) or 5 s pass. */
static void run_until(struct ctx *c, bool (*cond)(struct ctx *))
{
    uint64_t start = uv_now(&c->loop);
    while (!cond(c) && uv_now(&c->loop) - start < 5000)
        uv_run(&c->loop, UV_RUN_ONCE);
    assert_true(cond(c));
}

static bool has_result(struct ctx *c)
{
    return c->results > 0;
}

static bool is_closed(struct ctx *c)
{
    return c->closed;
}

/* Closes the backend and the server; the loop must close cleanly. */
static void finish(struct ctx *c)
{
    c->d->ops->close(c->d, dcs_done);
    run_until(c, is_closed);
    free(c->d);
    uv_walk(&c->loop, close_walk, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    buf_free(&srv.last_body);
    assert_int_equal(uv_loop_close(&c->loop), 0);
}

static const char range_ok[] =
    "{\"header\":{\"revision\":\"2\"},\"kvs\":[{\"key\":\"L3RhbmRlbS9jL3Rlcm0=\","
    "\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"MQ==\"}],"
    "\"count\":\"1\"}";

static void test_result_from_loop_and_keepalive(void **state)
{
    (void)state;
    struct ctx c;
    memset(&c, 0, sizeof(c));
    uv_loop_init(&c.loop);
    srv_start(&c.loop, SRV_ANSWER, range_ok);
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", srv.port);
    ctx_open(&c, ep, 2000);
    struct dcs_req q;
    memset(&q, 0, sizeof(q));
    q.id = 7;
    q.op = DCS_OP_READ;
    q.prefix = SLICE_LIT("/tandem/c/");
    assert_int_equal(submit(&c, &q), 0);
    assert_int_equal(c.results, 0); /* never from inside submit */
    run_until(&c, has_result);
    assert_int_equal(c.results, 1);
    assert_int_equal(c.last.id, 7);
    assert_int_equal(c.last.status, DCS_OK);
    assert_int_equal(c.last.rev, 2);
    assert_int_equal(c.last_nkvs, 1);
    assert_string_equal(c.first_key, "/tandem/c/term");
    assert_string_equal(srv.last_path, "/v3/kv/range");
    /* a second request reuses the kept-alive connection */
    c.results = 0;
    q.id = 8;
    assert_int_equal(submit(&c, &q), 0);
    run_until(&c, has_result);
    assert_int_equal(c.last.id, 8);
    assert_int_equal(srv.requests, 2);
    assert_int_equal(srv.conns, 1);
    /* a request etcd cannot express is refused synchronously, with no callback */
    q.op = DCS_OP_KEEPALIVE;
    q.lease = 0;
    c.results = 0;
    assert_int_not_equal(submit(&c, &q), 0);
    for (int i = 0; i < 5; i++)
        uv_run(&c.loop, UV_RUN_NOWAIT);
    assert_int_equal(c.results, 0);
    finish(&c);
}

static void test_silent_server_times_out(void **state)
{
    (void)state;
    struct ctx c;
    memset(&c, 0, sizeof(c));
    uv_loop_init(&c.loop);
    srv_start(&c.loop, SRV_SILENT, NULL);
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", srv.port);
    ctx_open(&c, ep, 150);
    struct dcs_req q;
    memset(&q, 0, sizeof(q));
    q.id = 1;
    q.op = DCS_OP_GRANT;
    q.ttl_ms = 2000;
    uint64_t t0 = uv_now(&c.loop);
    assert_int_equal(submit(&c, &q), 0);
    run_until(&c, has_result);
    assert_int_equal(c.last.status, DCS_EUNAVAIL);
    assert_true(c.t_result_ms - t0 >= 140);
    assert_true(c.t_result_ms - t0 < 2000);
    assert_string_equal(srv.last_path, "/v3/lease/grant");
    assert_int_equal(srv.last_body.len, strlen("{\"TTL\":\"2\"}"));
    finish(&c);
}

static void test_refused_endpoint_hands_over(void **state)
{
    (void)state;
    struct ctx c;
    memset(&c, 0, sizeof(c));
    uv_loop_init(&c.loop);
    /* a port that was just free: nothing listens there */
    uv_tcp_t probe;
    uv_tcp_init(&c.loop, &probe);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&probe, (struct sockaddr *)&a, 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&probe, (struct sockaddr *)&ss, &len);
    int dead = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&probe, NULL);
    srv_start(&c.loop, SRV_ANSWER, "{\"header\":{\"revision\":\"5\"},\"succeeded\":true}");
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d,127.0.0.1:%d", dead, srv.port);
    ctx_open(&c, ep, 2000);
    struct dcs_req q;
    memset(&q, 0, sizeof(q));
    q.id = 3;
    q.op = DCS_OP_TXN;
    q.nput = 1;
    q.put[0].key = SLICE_LIT("/t/k");
    q.put[0].value = SLICE_LIT("v");
    assert_int_equal(submit(&c, &q), 0);
    run_until(&c, has_result);
    assert_int_equal(c.last.status, DCS_OK);
    assert_int_equal(c.last.rev, 5);
    assert_int_equal(srv.requests, 1);
    finish(&c);
}

static void test_close_with_requests_in_flight(void **state)
{
    (void)state;
    struct ctx c;
    memset(&c, 0, sizeof(c));
    uv_loop_init(&c.loop);
    srv_start(&c.loop, SRV_SILENT, NULL);
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", srv.port);
    ctx_open(&c, ep, 5000);
    struct dcs_req q;
    memset(&q, 0, sizeof(q));
    q.op = DCS_OP_READ;
    q.prefix = SLICE_LIT("/t/");
    for (int i = 0; i < 3; i++) {
        q.id = (uint64_t)i;
        assert_int_equal(submit(&c, &q), 0);
    }
    assert_int_equal(c.d->ops->watch(c.d, SLICE_LIT("/t/")), 0);
    /* let the requests reach the server */
    uint64_t start = uv_now(&c.loop);
    while (srv.requests < 4 && uv_now(&c.loop) - start < 5000)
        uv_run(&c.loop, UV_RUN_ONCE);
    assert_int_equal(srv.requests, 4);
    finish(&c); /* asserts a clean loop close; ASan checks nothing leaked */
    assert_int_equal(c.results, 0);
    assert_int_equal(c.changed, 0);
}

static bool changed_twice(struct ctx *c)
{
    return c->changed >= 2 && srv.conns >= 2;
}

static void test_watch_stream_and_reconnect(void **state)
{
    (void)state;
    struct ctx c;
    memset(&c, 0, sizeof(c));
    uv_loop_init(&c.loop);
    srv_start(&c.loop, SRV_STREAM, NULL);
    char ep[64];
    snprintf(ep, sizeof(ep), "127.0.0.1:%d", srv.port);
    ctx_open(&c, ep, 2000);
    c.in_submit = true; /* nothing may be called from inside watch() either */
    assert_int_equal(c.d->ops->watch(c.d, SLICE_LIT("/t/")), 0);
    c.in_submit = false;
    assert_int_equal(c.d->ops->watch(c.d, SLICE_LIT("/u/")), -EALREADY);
    run_until(&c, changed_twice);
    assert_string_equal(srv.last_path, "/v3/watch");
    assert_non_null(memmem(srv.last_body.p, srv.last_body.len, "create_request", 14));
    finish(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_from_loop_and_keepalive),
        cmocka_unit_test(test_silent_server_times_out),
        cmocka_unit_test(test_refused_endpoint_hands_over),
        cmocka_unit_test(test_close_with_requests_in_flight),
        cmocka_unit_test(test_watch_stream_and_reconnect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
