/* SPDX-License-Identifier: MIT */
/* Unit tests for harness/loadgen.c's pure parts: URL parsing. (The I/O side is covered by
 * tests/integration/test_load.py against real servers.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "harness/loadgen.h"

static void test_url_ok(void **state)
{
    (void)state;
    struct loadgen_url u;
    char err[256];
    assert_int_equal(loadgen_url_parse("http://127.0.0.1:8080/whoami", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.authority, "127.0.0.1:8080");
    assert_int_equal(u.port, 8080);
    assert_string_equal(u.path, "/whoami");

    assert_int_equal(loadgen_url_parse("HTTP://localhost", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 80);
    assert_string_equal(u.path, "/");

    assert_int_equal(loadgen_url_parse("http://[::1]:9/a/b?c=d", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.authority, "[::1]:9");
    assert_int_equal(u.port, 9);
    assert_string_equal(u.path, "/a/b?c=d");
}

static void test_url_bad(void **state)
{
    (void)state;
    struct loadgen_url u;
    char err[256];
    const char *bad[] = {
        "https://x/", "ftp://x", "127.0.0.1:80", "http://", "http:///x", "http://h:0/",
        "http://h:65536/", "http://h:12x/", "http://::1/", "http://[::1/", "http://[]:80/",
        "http://[::1]x/", "http://h/a b", "http://h/a\r\nX: y", "http://:80/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_not_equal(loadgen_url_parse(bad[i], &u, err, sizeof(err)), 0);
        assert_true(strlen(err) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_ok),
        cmocka_unit_test(test_url_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
