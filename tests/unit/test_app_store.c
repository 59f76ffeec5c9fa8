/* SPDX-License-Identifier: MIT */
/* Unit tests for app/app_store.c: the backoff rule, and the connection's behaviour on a real
 * loop against a refused port and against a peer that accepts but never answers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "app/app_store.h"
#include "base/clock.h"

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(app_store_backoff_ms(0, 50, 1000), 50);
    assert_int_equal(app_store_backoff_ms(1, 50, 1000), 100);
    assert_int_equal(app_store_backoff_ms(4, 50, 1000), 800);
    assert_int_equal(app_store_backoff_ms(5, 50, 1000), 1000);
    assert_int_equal(app_store_backoff_ms(63, 50, 1000), 1000);
    assert_int_equal(app_store_backoff_ms(1000, 50, 1000), 1000);
    assert_int_equal(app_store_backoff_ms(3, 500, 100), 100);
    assert_int_equal(app_store_backoff_ms(2, 0, 100), 4);
}

/* A port nothing listens on: bound by the kernel, then released. */
static int unused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd != -1);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

typedef bool (*cond_fn)(void *ud);

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs loop until cond holds or timeout_ms passes; returns whether it held. */
static bool run_until(uv_loop_t *loop, cond_fn cond, void *ud, uint64_t timeout_ms)
{
    uint64_t deadline = clock_now_ms() + timeout_ms;
    uv_timer_t tick; /* keeps UV_RUN_ONCE from blocking forever */
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, tick_cb, 5, 5);
    bool ok = cond(ud);
    while (!ok && clock_now_ms() < deadline) {
        uv_run(loop, UV_RUN_ONCE);
        ok = cond(ud);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

struct ctx {
    struct app_store *s;
    int replies;
    int null_replies;
    bool closed;
};

static void on_reply(void *ud, const redisReply *r)
{
    struct ctx *c = ud;
    c->replies++;
    if (r == NULL)
        c->null_replies++;
}

static void on_closed(void *ud)
{
    struct ctx *c = ud;
    c->closed = true;
}

static bool status_refused(void *ud)
{
    struct ctx *c = ud;
    return strstr(app_store_status(c->s), "refused") != NULL;
}

static bool is_closed(void *ud)
{
    return ((struct ctx *)ud)->closed;
}

static const struct app_store_opts fast = {
    .connect_timeout_ms = 1000,
    .stall_ms = 150,
    .reconnect_min_ms = 10,
    .reconnect_max_ms = 40,
};

static void test_refused_fails_fast(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct ctx c = {0};
    uint64_t t0 = clock_now_ms();
    c.s = app_store_new(&loop, "127.0.0.1", unused_port(), &fast);
    /* refused is seen well before the 1s connect timeout would fire */
    assert_true(run_until(&loop, status_refused, &c, 900));
    assert_true(clock_now_ms() - t0 < 900);
    assert_false(app_store_is_connected(c.s));
    /* between attempts, commands are refused at once and their callback never runs */
    if (!strstr(app_store_status(c.s), "connecting")) {
        const char *argv[] = {"PING"};
        size_t lens[] = {4};
        assert_int_equal(app_store_command(c.s, on_reply, &c, 1, argv, lens), -ENOTCONN);
    }
    app_store_close(c.s, on_closed, &c);
    assert_true(run_until(&loop, is_closed, &c, 1000));
    assert_int_equal(c.replies, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A peer that accepts and reads but never answers (a stopped or partitioned store). */
struct mute {
    uv_tcp_t listener;
    uv_tcp_t *conns[8];
    int nconns;
    int port;
};

static void mute_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    (void)h;
    static char sink[4096];
    (void)n;
    *b = uv_buf_init(sink, sizeof(sink));
}

static void mute_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)s;
    (void)n;
    (void)b;
}

static void mute_accept(uv_stream_t *l, int status)
{
    struct mute *m = l->data;
    assert_int_equal(status, 0);
    assert_true(m->nconns < 8);
    uv_tcp_t *t = calloc(1, sizeof(*t));
    uv_tcp_init(l->loop, t);
    assert_int_equal(uv_accept(l, (uv_stream_t *)t), 0);
    uv_read_start((uv_stream_t *)t, mute_alloc, mute_read);
    m->conns[m->nconns++] = t;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static bool connected(void *ud)
{
    return app_store_is_connected(((struct ctx *)ud)->s);
}

static bool got_reply(void *ud)
{
    return ((struct ctx *)ud)->replies > 0;
}

static void test_stall_drops_and_reconnects(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mute m = {0};
    uv_tcp_init(&loop, &m.listener);
    m.listener.data = &m;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&m.listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&m.listener, 16, mute_accept), 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&m.listener, (struct sockaddr *)&a, &len);

    struct ctx c = {0};
    c.s = app_store_new(&loop, "127.0.0.1", ntohs(a.sin_port), &fast);
    assert_true(run_until(&loop, connected, &c, 2000));
    const char *argv[] = {"GET", "k"};
    size_t lens[] = {3, 1};
    uint64_t t0 = clock_now_ms();
    assert_int_equal(app_store_command(c.s, on_reply, &c, 2, argv, lens), 0);
    assert_int_equal(c.replies, 0); /* never called synchronously */
    /* no reply: the stall check drops the connection and fails the command */
    assert_true(run_until(&loop, got_reply, &c, 2000));
    assert_int_equal(c.null_replies, 1);
    assert_true(clock_now_ms() - t0 >= fast.stall_ms);
    /* and the connection comes back by itself */
    assert_true(run_until(&loop, connected, &c, 2000));
    assert_true(m.nconns >= 2);

    /* closing fails what is pending, from inside the call */
    assert_int_equal(app_store_command(c.s, on_reply, &c, 2, argv, lens), 0);
    app_store_close(c.s, on_closed, &c);
    assert_int_equal(c.null_replies, 2);
    assert_true(run_until(&loop, is_closed, &c, 1000));
    for (int i = 0; i < m.nconns; i++)
        uv_close((uv_handle_t *)m.conns[i], free_handle);
    uv_close((uv_handle_t *)&m.listener, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_refused_fails_fast),
        cmocka_unit_test(test_stall_drops_and_reconnects),
    };
    return cmocka_run_group_tests_name("app_store", tests, NULL, NULL);
}
