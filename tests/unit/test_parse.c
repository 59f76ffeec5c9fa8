/* SPDX-License-Identifier: MIT */
/* Unit tests for base/parse.c, base/cfg.c and base/metrics.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cfg.h"
#include "base/metrics.h"
#include "base/parse.h"

static void test_duration(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(parse_duration_ms("250ms", &v), 0);
    assert_int_equal(v, 250);
    assert_int_equal(parse_duration_ms("2s", &v), 0);
    assert_int_equal(v, 2000);
    assert_int_equal(parse_duration_ms("1m", &v), 0);
    assert_int_equal(v, 60000);
    assert_int_equal(parse_duration_ms("15", &v), 0);
    assert_int_equal(v, 15);
    assert_int_equal(parse_duration_ms("", &v), -EINVAL);
    assert_int_equal(parse_duration_ms("2 s", &v), -EINVAL);
    assert_int_equal(parse_duration_ms("-1s", &v), -EINVAL);
    assert_int_equal(parse_duration_ms("2x", &v), -EINVAL);
    assert_int_equal(parse_duration_ms("99999999999999999999s", &v), -ERANGE);
    assert_int_equal(parse_duration_ms("18446744073709551615h", &v), -ERANGE);
}

static void test_size(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(parse_size_bytes("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(parse_size_bytes("64kb", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(parse_size_bytes("16MB", &v), 0);
    assert_int_equal(v, 16u << 20);
    assert_int_equal(parse_size_bytes("1q", &v), -EINVAL);
}

static void test_uint(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(parse_uint("7", 1, 10, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(parse_uint("0", 1, 10, &v), -ERANGE);
    assert_int_equal(parse_uint("11", 1, 10, &v), -ERANGE);
    assert_int_equal(parse_uint("7a", 1, 10, &v), -EINVAL);
}

static void test_addr(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char err[256], out[64];
    assert_int_equal(parse_addr("127.0.0.1:8080", &ss, err, sizeof(err)), 0);
    addr_format((struct sockaddr *)&ss, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1:8080");
    assert_int_equal(parse_addr(":9000", &ss, err, sizeof(err)), 0);
    addr_format((struct sockaddr *)&ss, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1:9000");
    assert_int_equal(parse_addr("[::1]:53", &ss, err, sizeof(err)), 0);
    addr_format((struct sockaddr *)&ss, out, sizeof(out));
    assert_string_equal(out, "[::1]:53");
    assert_int_equal(addr_port((struct sockaddr *)&ss), 53);
    assert_int_equal(parse_addr("127.0.0.1", &ss, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "HOST:PORT"));
    assert_int_equal(parse_addr("127.0.0.1:99999", &ss, err, sizeof(err)), -EINVAL);
    assert_int_equal(parse_addr("[::1:80", &ss, err, sizeof(err)), -EINVAL);
}

struct demo_cfg {
    uint64_t inter_ms;
    uint64_t fall;
    int mode;
    bool flag;
    char *name;
};

static const char *const modes[] = {"active-active", "active-passive", NULL};

static const struct cfg_entry demo_table[] = {
    {"inter", CFG_DURATION, offsetof(struct demo_cfg, inter_ms), 10, 60000, "2s", NULL, "check interval", 0},
    {"fall", CFG_UINT, offsetof(struct demo_cfg, fall), 1, 100, "3", NULL, "failures", 0},
    {"mode", CFG_ENUM, offsetof(struct demo_cfg, mode), 0, 0, "active-active", modes, "mode", 0},
    {"flag", CFG_BOOL, offsetof(struct demo_cfg, flag), 0, 0, "no", NULL, "flag", 0},
    {"name", CFG_STRING, offsetof(struct demo_cfg, name), 0, 0, NULL, NULL, "name", 0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};

static void test_cfg(void **state)
{
    (void)state;
    struct demo_cfg c = {0};
    char err[256];
    assert_int_equal(cfg_defaults(demo_table, &c, err, sizeof(err)), 0);
    assert_int_equal(c.inter_ms, 2000);
    assert_int_equal(c.fall, 3);
    assert_int_equal(c.mode, 0);
    const struct cfg_entry *e = cfg_find(demo_table, "inter");
    assert_non_null(e);
    assert_int_equal(cfg_set(e, &c, "100ms", err, sizeof(err)), 0);
    assert_int_equal(c.inter_ms, 100);
    assert_int_equal(cfg_set(e, &c, "5ms", err, sizeof(err)), -ERANGE);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(c.inter_ms, 100);
    e = cfg_find(demo_table, "mode");
    assert_int_equal(cfg_set(e, &c, "active-passive", err, sizeof(err)), 0);
    assert_int_equal(c.mode, 1);
    assert_int_equal(cfg_set(e, &c, "both", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "active-active|active-passive"));
    e = cfg_find(demo_table, "name");
    assert_int_equal(cfg_set(e, &c, "web", err, sizeof(err)), 0);
    assert_string_equal(c.name, "web");
    assert_null(cfg_find(demo_table, "nope"));
    cfg_free(demo_table, &c);
    assert_null(c.name);
}

struct file_seen {
    int lines;
    char last[128];
};

static int on_line(void *ud, const char *section, const char *key, const char *value, char *err,
                   size_t errlen)
{
    struct file_seen *s = ud;
    if (strcmp(key, "bad") == 0) {
        snprintf(err, errlen, "bad key");
        return -EINVAL;
    }
    s->lines++;
    snprintf(s->last, sizeof(s->last), "%s/%s=%s", section, key, value);
    return 0;
}

static void test_cfg_file(void **state)
{
    (void)state;
    char path[] = "/tmp/tandem-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("# comment\n[pool web]\nmode = active-passive\nserver = a 127.0.0.1:1\n", f);
    fclose(f);
    struct file_seen s = {0};
    char err[256];
    assert_int_equal(cfg_parse_file(path, on_line, &s, err, sizeof(err)), 0);
    assert_int_equal(s.lines, 2);
    assert_string_equal(s.last, "pool web/server=a 127.0.0.1:1");
    f = fopen(path, "w");
    fputs("[x]\nok = 1\nbad = 2\n", f);
    fclose(f);
    assert_int_equal(cfg_parse_file(path, on_line, &s, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, ":3: bad key"));
    unlink(path);
    assert_int_equal(cfg_parse_file(path, on_line, &s, err, sizeof(err)), -ENOENT);
}

static void test_metrics(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    int64_t *a = metrics_series(m, METRIC_COUNTER, "lb_requests_total", "Requests.", "server=\"a\"");
    int64_t *b = metrics_series(m, METRIC_COUNTER, "lb_requests_total", "Requests.", "server=\"b\"");
    int64_t *g = metrics_series(m, METRIC_GAUGE, "lb_up", "Up.", "");
    assert_ptr_equal(a, metrics_series(m, METRIC_COUNTER, "lb_requests_total", "", "server=\"a\""));
    *a += 3;
    *b += 1;
    *g = 1;
    struct buf out;
    buf_init(&out);
    metrics_render(m, &out);
    buf_append(&out, "", 1);
    assert_string_equal(out.p, "# HELP lb_requests_total Requests.\n"
                               "# TYPE lb_requests_total counter\n"
                               "lb_requests_total{server=\"a\"} 3\n"
                               "lb_requests_total{server=\"b\"} 1\n"
                               "# HELP lb_up Up.\n"
                               "# TYPE lb_up gauge\n"
                               "lb_up 1\n");
    out.len = 0;
    metrics_escape_label(&out, "a\"b\\c\nd");
    buf_append(&out, "", 1);
    assert_string_equal(out.p, "a\\\"b\\\\c\\nd");
    buf_free(&out);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration), cmocka_unit_test(test_size),
        cmocka_unit_test(test_uint),     cmocka_unit_test(test_addr),
        cmocka_unit_test(test_cfg),      cmocka_unit_test(test_cfg_file),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
