/* SPDX-License-Identifier: MIT */
/* Unit tests for proto/http1.c: events, spans, limits and smuggling rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "base/err.h"
#include "proto/http1.h"

struct body_acc {
    char data[256];
    size_t len;
};

static void acc_body(void *ud, const char *at, size_t len)
{
    struct body_acc *b = ud;
    memcpy(b->data + b->len, at, len);
    b->len += len;
}

/* Feeds the whole of s in pieces of step bytes (the buffer grows as a socket would fill it);
 * returns the last event and leaves *off at the bytes consumed. */
static int feed_steps(struct http1_parser *p, const char *s, size_t step, size_t *off,
                      int want)
{
    size_t len = strlen(s), avail = 0;
    int ev = HTTP1_NEED_MORE;
    while (*off < len) {
        if (avail < len)
            avail = avail + step > len ? len : avail + step;
        size_t used;
        ev = http1_feed(p, s, *off, avail - *off, &used);
        *off += used;
        if (ev < 0 || ev == want)
            return ev;
    }
    if (want == HTTP1_MSG_DONE && ev == HTTP1_HEAD_DONE) {
        size_t used;
        ev = http1_feed(p, s, *off, 0, &used);
    }
    return ev;
}

static void test_get_keepalive_two_messages(void **state)
{
    (void)state;
    const char *s = "GET /users/7 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n"
                    "HEAD / HTTP/1.1\r\n\r\n";
    for (size_t step = 1; step <= strlen(s); step += 7) {
        struct http1_parser p;
        http1_init(&p, HTTP1_REQUEST, NULL);
        size_t off = 0;
        assert_int_equal(feed_steps(&p, s, step, &off, HTTP1_HEAD_DONE), HTTP1_HEAD_DONE);
        assert_int_equal(p.msg.method, HTTP_GET);
        struct slice url = http1_slice(s, p.msg.url);
        assert_true(slice_eq(url, SLICE_LIT("/users/7")));
        assert_int_equal(p.msg.nheaders, 2);
        assert_true(slice_eq(http1_header_get(&p.msg, s, "x-a"), SLICE_LIT("1")));
        assert_null(http1_header_get(&p.msg, s, "missing").p);
        assert_true(p.msg.keep_alive);
        assert_int_equal(p.msg.head_len, 42);
        assert_int_equal(off, 42);
        assert_int_equal(feed_steps(&p, s, step, &off, HTTP1_MSG_DONE), HTTP1_MSG_DONE);
        http1_next(&p);
        assert_int_equal(feed_steps(&p, s, step, &off, HTTP1_HEAD_DONE), HTTP1_HEAD_DONE);
        assert_int_equal(p.msg.method, HTTP_HEAD);
        assert_int_equal(p.msg.head_off, 42);
    }
}

static void test_chunked_body(void **state)
{
    (void)state;
    const char *s = "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    struct http1_parser p;
    struct body_acc acc = {0};
    http1_init(&p, HTTP1_REQUEST, NULL);
    p.on_body = acc_body;
    p.ud = &acc;
    size_t off = 0;
    assert_int_equal(feed_steps(&p, s, 5, &off, HTTP1_HEAD_DONE), HTTP1_HEAD_DONE);
    assert_true(p.msg.chunked);
    assert_int_equal(feed_steps(&p, s, 5, &off, HTTP1_MSG_DONE), HTTP1_MSG_DONE);
    assert_int_equal(off, strlen(s));
    assert_int_equal(acc.len, 5);
    assert_memory_equal(acc.data, "abcde", 5);
}

static void test_response_head_and_close(void **state)
{
    (void)state;
    const char *s = "HTTP/1.0 200 OK\r\nServer: t\r\n\r\nhello";
    struct http1_parser p;
    struct body_acc acc = {0};
    http1_init(&p, HTTP1_RESPONSE, NULL);
    p.on_body = acc_body;
    p.ud = &acc;
    size_t off = 0;
    assert_int_equal(feed_steps(&p, s, 64, &off, HTTP1_HEAD_DONE), HTTP1_HEAD_DONE);
    assert_int_equal(p.msg.status, 200);
    assert_false(p.msg.keep_alive);
    size_t used;
    assert_int_equal(http1_feed(&p, s, off, strlen(s) - off, &used), HTTP1_NEED_MORE);
    assert_int_equal(http1_finish(&p), HTTP1_MSG_DONE);
    assert_int_equal(acc.len, 5);

    /* a response to HEAD has no body even with Content-Length */
    const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    http1_init(&p, HTTP1_RESPONSE, NULL);
    p.skip_body = true;
    assert_int_equal(http1_feed(&p, h, 0, strlen(h), &used), HTTP1_MSG_DONE);
    assert_int_equal(used, 39);
    http1_next(&p);
    assert_int_equal(http1_feed(&p, h, used, strlen(h) - used, &used), HTTP1_HEAD_DONE);
    assert_int_equal(p.msg.status, 204);
}

static int feed_all(const char *s, const struct http1_limits *lim)
{
    struct http1_parser p;
    http1_init(&p, HTTP1_REQUEST, lim);
    size_t off = 0;
    return feed_steps(&p, s, strlen(s), &off, HTTP1_MSG_DONE);
}

static void test_rejects(void **state)
{
    (void)state;
    assert_int_equal(feed_all("POST / HTTP/1.1\r\nContent-Length: 3\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", NULL),
                     TD_ESMUGGLE);
    assert_int_equal(feed_all("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
                              NULL),
                     TD_ESMUGGLE);
    assert_int_equal(feed_all("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked, x\r\n\r\n", NULL) < 0,
                     true);
    assert_int_equal(feed_all("GARBAGE\r\n\r\n", NULL), TD_EPROTO_HTTP);
    assert_int_equal(feed_all("GET / HTTP/1.1\r\nBad Header\r\n\r\n", NULL), TD_EPROTO_HTTP);
    struct http1_limits lim = {.max_head_bytes = 64, .max_headers = 2};
    assert_int_equal(feed_all("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &lim),
                     TD_EHDR_TOO_BIG);
    assert_int_equal(feed_all("GET / HTTP/1.1\r\nA: 0123456789012345678901234567890123456789"
                              "0123456789\r\n\r\n",
                              &lim),
                     TD_EHDR_TOO_BIG);
    /* an unfinished head that never ends is cut at the limit, not buffered forever */
    struct http1_parser p;
    http1_init(&p, HTTP1_REQUEST, &lim);
    char big[200];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    size_t used;
    assert_int_equal(http1_feed(&p, big, 0, sizeof(big), &used), TD_EHDR_TOO_BIG);
}

static void test_idempotent(void **state)
{
    (void)state;
    assert_true(http1_method_is_idempotent(HTTP_GET));
    assert_true(http1_method_is_idempotent(HTTP_PUT));
    assert_true(http1_method_is_idempotent(HTTP_DELETE));
    assert_false(http1_method_is_idempotent(HTTP_POST));
    assert_false(http1_method_is_idempotent(HTTP_PATCH));
    assert_string_equal(http1_method_name(HTTP_POST), "POST");
    assert_string_equal(http1_reason(431), "Request Header Fields Too Large");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_keepalive_two_messages),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_response_head_and_close),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_idempotent),
    };
    return cmocka_run_group_tests_name("http1", tests, NULL, NULL);
}
