/* SPDX-License-Identifier: MIT */
/* Unit tests for proto/resp.c: multibulk and inline parsing, split reads with a moving buffer,
 * limits and their Redis-compatible messages, and the reply writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "proto/resp.h"

static const struct resp_limits lim = {1024, 64, 256, false};

static void assert_arg(const struct resp_parser *p, size_t i, const char *want)
{
    assert_true(i < p->argc);
    assert_int_equal(p->argv[i].len, strlen(want));
    assert_memory_equal(p->argv[i].p, want, strlen(want));
}

static void test_multibulk(void **state)
{
    (void)state;
    struct resp_parser p;
    resp_parser_init(&p, &lim);
    const char *s = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
    ssize_t n = resp_parse(&p, s, strlen(s));
    assert_int_equal(n, 20);
    assert_int_equal(p.argc, 2);
    assert_arg(&p, 0, "GET");
    assert_arg(&p, 1, "k");
    ssize_t m = resp_parse(&p, s + n, strlen(s) - (size_t)n);
    assert_int_equal(m, 14);
    assert_int_equal(p.argc, 1);
    assert_arg(&p, 0, "PING");
    assert_int_equal(resp_parse(&p, s, 0), TD_EINCOMPLETE);
    /* Empty bulk and binary content. */
    const char bin[] = "*2\r\n$0\r\n\r\n$3\r\na\0b\r\n";
    n = resp_parse(&p, bin, sizeof(bin) - 1);
    assert_int_equal(n, (ssize_t)sizeof(bin) - 1);
    assert_int_equal(p.argv[0].len, 0);
    assert_int_equal(p.argv[1].len, 3);
    assert_memory_equal(p.argv[1].p, "a\0b", 3);
    resp_parser_free(&p);
}

/* Feeds s one byte more at a time, copying the bytes to a fresh allocation for every call so
 * that a parser keeping pointers (instead of offsets) across calls would fail under ASan. */
static void test_split_reads_moving_buffer(void **state)
{
    (void)state;
    const char *s = "*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$11\r\nhello world\r\n";
    size_t len = strlen(s);
    struct resp_parser p;
    resp_parser_init(&p, &lim);
    for (size_t have = 0; have <= len; have++) {
        char *copy = malloc(have ? have : 1);
        memcpy(copy, s, have);
        ssize_t n = resp_parse(&p, copy, have);
        if (have < len) {
            assert_int_equal(n, TD_EINCOMPLETE);
        } else {
            assert_int_equal(n, (ssize_t)len);
            assert_int_equal(p.argc, 3);
            assert_arg(&p, 0, "SET");
            assert_arg(&p, 1, "hello");
            assert_arg(&p, 2, "hello world");
        }
        free(copy);
    }
    resp_parser_free(&p);
}

static void test_need_hint(void **state)
{
    (void)state;
    struct resp_parser p;
    resp_parser_init(&p, &lim);
    const char *s = "*1\r\n$100\r\nab";
    assert_int_equal(resp_parse(&p, s, strlen(s)), TD_EINCOMPLETE);
    assert_int_equal(resp_parser_need(&p), 4 + 6 + 100 + 2);
    resp_parser_free(&p);
}

static void test_empty_commands(void **state)
{
    (void)state;
    struct resp_parser p;
    resp_parser_init(&p, &lim);
    assert_int_equal(resp_parse(&p, "*0\r\n", 4), 4);
    assert_int_equal(p.argc, 0);
    assert_int_equal(resp_parse(&p, "*-1\r\n", 5), 5);
    assert_int_equal(p.argc, 0);
    assert_int_equal(resp_parse(&p, "\r\n", 2), 2);
    assert_int_equal(p.argc, 0);
    assert_int_equal(resp_parse(&p, "   \n", 4), 4);
    assert_int_equal(p.argc, 0);
    resp_parser_free(&p);
}

static void test_inline(void **state)
{
    (void)state;
    struct resp_parser p;
    resp_parser_init(&p, &lim);
    const char *s = "set  k \"a b\\x41\\n\" 'it\\'s'\r\n";
    ssize_t n = resp_parse(&p, s, strlen(s));
    assert_int_equal(n, (ssize_t)strlen(s));
    assert_int_equal(p.argc, 4);
    assert_arg(&p, 0, "set");
    assert_arg(&p, 1, "k");
    assert_arg(&p, 2, "a bA\n");
    assert_arg(&p, 3, "it's");
    /* A quote inside a word starts quoting there, as in Redis's sdssplitargs. */
    s = "echo foo\"bar baz\"\n";
    assert_int_equal(resp_parse(&p, s, strlen(s)), (ssize_t)strlen(s));
    assert_int_equal(p.argc, 2);
    assert_arg(&p, 1, "foobar baz");
    /* Split inline: incomplete until the newline arrives. */
    assert_int_equal(resp_parse(&p, "PIN", 3), TD_EINCOMPLETE);
    assert_int_equal(resp_parse(&p, "PING\n", 5), 5);
    assert_arg(&p, 0, "PING");
    const char *bad[] = {"set a \"b\r\n", "set a \"b\"c\r\n", "set a 'b\r\n", "set a 'b'c\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(resp_parse(&p, bad[i], strlen(bad[i])), TD_EPROTO_RESP);
        assert_string_equal(resp_parser_error(&p), "Protocol error: unbalanced quotes in request");
    }
    resp_parser_free(&p);
}

static void expect_err(const char *in, size_t len, int code, const char *msg,
                       const struct resp_limits *l)
{
    struct resp_parser p;
    resp_parser_init(&p, l);
    ssize_t n = resp_parse(&p, in, len);
    assert_int_equal(n, code);
    assert_string_equal(resp_parser_error(&p), msg);
    resp_parser_free(&p);
}

static void test_errors_and_limits(void **state)
{
    (void)state;
    expect_err("*abc\r\n", 6, TD_EPROTO_RESP, "Protocol error: invalid multibulk length", &lim);
    expect_err("*01\r\n", 5, TD_EPROTO_RESP, "Protocol error: invalid multibulk length", &lim);
    expect_err("*+1\r\n", 5, TD_EPROTO_RESP, "Protocol error: invalid multibulk length", &lim);
    expect_err("*65\r\n", 5, TD_ETOO_BIG, "Protocol error: invalid multibulk length", &lim);
    expect_err("*2147483648\r\n", 13, TD_EPROTO_RESP, "Protocol error: invalid multibulk length",
               &lim);
    expect_err("*1\r\nx\r\n", 7, TD_EPROTO_RESP, "Protocol error: expected '$', got 'x'", &lim);
    expect_err("*1\r\n$-1\r\n", 9, TD_EPROTO_RESP, "Protocol error: invalid bulk length", &lim);
    expect_err("*1\r\n$abc\r\n", 10, TD_EPROTO_RESP, "Protocol error: invalid bulk length", &lim);
    expect_err("*1\r\n$1025\r\n", 11, TD_ETOO_BIG, "Protocol error: invalid bulk length", &lim);
    expect_err("*1\r\n$1\r\nabc", 11, TD_EPROTO_RESP, "Protocol error: expected CRLF after bulk",
               &lim);
    struct resp_limits un = {16384, 10, 256, true};
    expect_err("*11\r\n", 5, TD_ETOO_BIG, "Protocol error: unauthenticated multibulk length", &un);
    expect_err("*1\r\n$16385\r\n", 12, TD_ETOO_BIG, "Protocol error: unauthenticated bulk length",
               &un);
    /* Lines that never end: limited by max_inline. */
    char big[300];
    memset(big, 'a', sizeof(big));
    expect_err(big, sizeof(big), TD_ETOO_BIG, "Protocol error: too big inline request", &lim);
    big[0] = '*';
    expect_err(big, sizeof(big), TD_ETOO_BIG, "Protocol error: too big mbulk count string", &lim);
    memcpy(big, "*1\r\n$", 5);
    expect_err(big, sizeof(big), TD_ETOO_BIG, "Protocol error: too big bulk count string", &lim);
    /* Under the limit, the same bytes are merely incomplete. */
    struct resp_parser p;
    resp_parser_init(&p, &lim);
    assert_int_equal(resp_parse(&p, big, 200), TD_EINCOMPLETE);
    resp_parser_free(&p);
}

static void test_parse_int(void **state)
{
    (void)state;
    int64_t v;
    assert_true(resp_parse_int("0", 1, &v));
    assert_int_equal(v, 0);
    assert_true(resp_parse_int("-9223372036854775808", 20, &v));
    assert_true(v == INT64_MIN);
    assert_true(resp_parse_int("9223372036854775807", 19, &v));
    assert_true(v == INT64_MAX);
    assert_false(resp_parse_int("9223372036854775808", 19, &v));
    assert_false(resp_parse_int("-0", 2, &v));
    assert_false(resp_parse_int("01", 2, &v));
    assert_false(resp_parse_int("+1", 2, &v));
    assert_false(resp_parse_int(" 1", 2, &v));
    assert_false(resp_parse_int("1 ", 2, &v));
    assert_false(resp_parse_int("", 0, &v));
    assert_false(resp_parse_int("-", 1, &v));
    assert_false(resp_parse_int("1.5", 3, &v));
}

static void test_writer(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    resp_add_int(&b, -42);
    resp_add_bulk(&b, "hi", 2);
    resp_add_null(&b);
    resp_add_array(&b, 2);
    resp_add_status(&b, "OK");
    resp_add_error(&b, "ERR a\r\nb", 8);
    resp_add_errorf(&b, "ERR %s %d", "x", 5);
    resp_add_bulk_int(&b, INT64_MIN);
    const char *want = ":-42\r\n$2\r\nhi\r\n$-1\r\n*2\r\n+OK\r\n-ERR a  b\r\n-ERR x 5\r\n"
                       "$20\r\n-9223372036854775808\r\n";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.p, want, b.len);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multibulk), cmocka_unit_test(test_split_reads_moving_buffer),
        cmocka_unit_test(test_need_hint), cmocka_unit_test(test_empty_commands),
        cmocka_unit_test(test_inline),    cmocka_unit_test(test_errors_and_limits),
        cmocka_unit_test(test_parse_int), cmocka_unit_test(test_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
