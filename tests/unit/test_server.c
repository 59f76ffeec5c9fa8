/* SPDX-License-Identifier: MIT */
/* Unit tests for store/server.c's persistence contract, on a real loop and loopback sockets with
 * a fake persistence layer: write replies (and everything after them on the connection) are held
 * until durable() covers their LSN; reads before any write are not held; all writes of one loop
 * iteration share one flush; a layer that reports durability inside flush (fsync=everysec/no)
 * releases replies in the same iteration; closing with held replies frees everything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "store/db.h"
#include "store/persist.h"
#include "store/server.h"

static const uint8_t seed[16] = {3};

struct fake {
    persist_durable_fn durable;
    void *ctx;
    uint64_t lsn;
    int appends, flushes;
    bool sync_durable; /* report durability from inside flush, as everysec/no would */
    char last[128];
};

static void fake_bind(void *ud, persist_durable_fn durable, void *ctx)
{
    struct fake *f = ud;
    f->durable = durable;
    f->ctx = ctx;
}

static uint64_t fake_append(void *ud, int argc, const struct slice *argv)
{
    struct fake *f = ud;
    f->appends++;
    size_t n = 0;
    for (int i = 0; i < argc && n < sizeof(f->last); i++)
        n += (size_t)snprintf(f->last + n, sizeof(f->last) - n, "%s%.*s", i ? " " : "",
                              (int)argv[i].len, argv[i].p);
    return ++f->lsn;
}

static void fake_flush(void *ud)
{
    struct fake *f = ud;
    f->flushes++;
    if (f->sync_durable)
        f->durable(f->ctx, f->lsn);
}

static const struct persist_ops fake_ops = {fake_bind, fake_append, fake_flush, NULL,
                                            NULL,      NULL,        NULL};

struct env {
    uv_loop_t loop;
    struct db_config cfg;
    struct db *db;
    struct server *srv;
    struct fake fake;
};

static void setup_env(struct env *e)
{
    memset(e, 0, sizeof(*e));
    uv_loop_init(&e->loop);
    e->cfg.max_bulk = 1 << 20;
    e->cfg.max_multibulk = 1024;
    e->cfg.query_buffer = 1 << 20;
    e->cfg.output_limit = 1 << 20;
    e->cfg.max_clients = 10;
    struct sockaddr_in *a = (struct sockaddr_in *)&e->cfg.listen;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->sin_port = 0;
    e->db = db_new(&e->cfg, seed);
    e->srv = server_new(&e->loop, e->db, &e->cfg);
    server_set_persist(e->srv, &fake_ops, &e->fake);
    char err[128];
    assert_int_equal(server_start(e->srv, err, sizeof(err)), 0);
    assert_true(server_port(e->srv) > 0);
}

static void on_closed(void *ud)
{
    (void)ud;
}

static void teardown_env(struct env *e)
{
    server_close(e->srv, on_closed, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    server_free(e->srv);
    db_free(e->db);
}

static int connect_to(struct env *e)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)server_port(e->srv));
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* Runs a few loop iterations so that reads, the before-poll batch and writes all happen. */
static void spin(struct env *e)
{
    for (int i = 0; i < 20; i++)
        uv_run(&e->loop, UV_RUN_NOWAIT);
}

/* Runs the loop until the server has recorded n appends (loopback delivery may be deferred on
 * a loaded machine, so this waits on the condition, with a 10 s deadline). */
static void wait_appends(struct env *e, int n)
{
    for (int i = 0; i < 10000 && e->fake.appends < n; i++) {
        spin(e);
        usleep(1000);
    }
    assert_int_equal(e->fake.appends, n);
    spin(e);
}

/* Everything readable on fd now, as a string. */
static const char *drain(int fd)
{
    static char buf[4096];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return buf;
}

/* Runs the loop until exactly want has arrived on fd (10 s deadline). */
static void expect(struct env *e, int fd, const char *want)
{
    char got[4096] = "";
    size_t n = 0, wl = strlen(want);
    for (int i = 0; i < 10000 && n < wl; i++) {
        spin(e);
        const char *d = drain(fd);
        size_t dl = strlen(d);
        memcpy(got + n, d, dl + 1);
        n += dl;
        if (n < wl)
            usleep(1000);
    }
    assert_string_equal(got, want);
}

static void send_str(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void test_write_replies_wait_for_durability(void **state)
{
    (void)state;
    struct env e;
    setup_env(&e);
    assert_non_null(e.fake.durable);
    int fd = connect_to(&e);
    /* A read before any write is answered at once. */
    send_str(fd, "PING\r\n");
    expect(&e, fd, "+PONG\r\n");
    /* A write, then a read behind it: both wait for the write's LSN. */
    send_str(fd, "SET a 1 EX 100\r\nGET a\r\n");
    wait_appends(&e, 1);
    assert_true(strncmp(e.fake.last, "SET a 1 PXAT ", 13) == 0);
    assert_int_equal(e.fake.flushes, 1);
    assert_string_equal(drain(fd), "");
    e.fake.durable(e.fake.ctx, 1);
    expect(&e, fd, "+OK\r\n$1\r\n1\r\n");
    /* Nothing was appended since: no new flush. */
    spin(&e);
    assert_int_equal(e.fake.flushes, 1);
    close(fd);
    teardown_env(&e);
}

static void test_group_commit_and_partial_release(void **state)
{
    (void)state;
    struct env e;
    setup_env(&e);
    int a = connect_to(&e), b = connect_to(&e);
    /* Two writes read in one iteration share one flush. */
    send_str(a, "SET k1 v\r\nINCR n\r\n");
    wait_appends(&e, 2);
    assert_int_equal(e.fake.flushes, 1);
    send_str(b, "SET k2 v\r\n");
    wait_appends(&e, 3);
    assert_int_equal(e.fake.flushes, 2);
    assert_string_equal(drain(a), "");
    assert_string_equal(drain(b), "");
    /* Durable up to 2 releases a only; then 3 releases b. */
    e.fake.durable(e.fake.ctx, 2);
    expect(&e, a, "+OK\r\n:1\r\n");
    spin(&e);
    assert_string_equal(drain(b), "");
    e.fake.durable(e.fake.ctx, 3);
    expect(&e, b, "+OK\r\n");
    /* Two batches on one connection: the first is released alone when only it is durable, and
     * the PING behind the second write waits with it. */
    send_str(a, "INCR n\r\n");
    wait_appends(&e, 4);
    send_str(a, "INCR n\r\nPING\r\n");
    wait_appends(&e, 5);
    assert_int_equal(e.fake.flushes, 4);
    e.fake.durable(e.fake.ctx, 4);
    expect(&e, a, ":2\r\n");
    spin(&e);
    assert_string_equal(drain(a), "");
    e.fake.durable(e.fake.ctx, 5);
    expect(&e, a, ":3\r\n+PONG\r\n");
    /* A stale report changes nothing. */
    e.fake.durable(e.fake.ctx, 2);
    spin(&e);
    assert_string_equal(drain(a), "");
    /* INCR on an expired key logs DEL then SET: the reply waits for the later LSN. */
    send_str(a, "SET t 5 PX 1\r\n");
    wait_appends(&e, 6);
    e.fake.durable(e.fake.ctx, 6);
    expect(&e, a, "+OK\r\n");
    usleep(5000); /* let the 1 ms TTL pass on the wall clock */
    send_str(a, "INCR t\r\n");
    wait_appends(&e, 8);
    assert_string_equal(e.fake.last, "SET t 1");
    e.fake.durable(e.fake.ctx, 7);
    spin(&e);
    assert_string_equal(drain(a), "");
    e.fake.durable(e.fake.ctx, 8);
    expect(&e, a, ":1\r\n");
    close(a);
    close(b);
    teardown_env(&e);
}

static void test_synchronous_durability_and_close_with_holds(void **state)
{
    (void)state;
    struct env e;
    setup_env(&e);
    e.fake.sync_durable = true;
    int fd = connect_to(&e);
    send_str(fd, "SET a 1\r\nDEL a zz\r\nDEL zz\r\n");
    expect(&e, fd, "+OK\r\n:1\r\n:0\r\n");
    /* DEL of a missing key logs nothing. */
    assert_int_equal(e.fake.appends, 2);
    assert_string_equal(e.fake.last, "DEL a");
    /* A client that leaves while its replies are held, and a server closed with holds pending,
     * free everything (ASan checks). */
    e.fake.sync_durable = false;
    int gone = connect_to(&e);
    send_str(gone, "SET b 2\r\n");
    send_str(fd, "SET c 3\r\n");
    wait_appends(&e, 4);
    close(gone);
    spin(&e);
    close(fd);
    teardown_env(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_replies_wait_for_durability),
        cmocka_unit_test(test_group_commit_and_partial_release),
        cmocka_unit_test(test_synchronous_durability_and_close_with_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
