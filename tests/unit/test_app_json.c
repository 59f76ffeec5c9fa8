/* SPDX-License-Identifier: MIT */
/* Unit tests for app/app_json.c: body validation, delta rules, idempotency records, and the
 * exact text of response bodies. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "app/app_json.h"

static void assert_buf(const struct buf *b, const char *want)
{
    char got[512];
    size_t n = b->len < sizeof(got) - 1 ? b->len : sizeof(got) - 1;
    memcpy(got, b->p ? b->p : "", n);
    got[n] = '\0';
    assert_string_equal(got, want);
}

static int user(const char *body, struct buf *out, const char **why)
{
    buf_init(out);
    return app_json_user_parse(slice_cstr(body), out, why);
}

static void test_user_documents(void **state)
{
    (void)state;
    struct buf out;
    const char *why = NULL;
    assert_int_equal(user(" {\"name\" : \"Ann Lee\",\n \"n\": 12345678901234567890 } ", &out, &why),
                     0);
    /* whitespace goes, strings and numbers stay byte for byte */
    assert_buf(&out, "{\"name\":\"Ann Lee\",\"n\":12345678901234567890}");
    buf_free(&out);
    assert_int_equal(user("{}", &out, &why), 0);
    assert_buf(&out, "{}");
    buf_free(&out);
    assert_int_equal(user("{\"s\":\"caf\xc3\xa9 \\u00e9\"}", &out, &why), 0);
    assert_buf(&out, "{\"s\":\"caf\xc3\xa9 \\u00e9\"}");
    buf_free(&out);

    const char *bad[] = {
        "",
        "[1,2]",
        "\"str\"",
        "42",
        "null",
        "{",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "{'a':1}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"s\":\"\xff\"}",
        "{\"s\":\"\xc0\xaf\"}",
        "{\"s\":\"\xed\xa0\x80\"}",
        "{\"a\":1} /* c */",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(user(bad[i], &out, &why), -EINVAL);
        assert_non_null(why);
        assert_int_equal(out.len, 0);
        buf_free(&out);
    }
    /* an embedded NUL would hide trailing garbage from a C-string parser */
    buf_init(&out);
    assert_int_equal(app_json_user_parse(slice_of("{}\0{", 4), &out, &why), -EINVAL);
    buf_free(&out);
}

static int delta(const char *body, int64_t *d)
{
    const char *why = NULL;
    int rc = app_json_delta_parse(slice_cstr(body), d, &why);
    if (rc != 0)
        assert_non_null(why);
    return rc;
}

static void test_delta(void **state)
{
    (void)state;
    int64_t d = 0;
    assert_int_equal(delta("{\"delta\": 5}", &d), 0);
    assert_int_equal(d, 5);
    assert_int_equal(delta("{\"delta\":-17,\"note\":\"x\"}", &d), 0);
    assert_int_equal(d, -17);
    assert_int_equal(delta("{\"delta\":0}", &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(delta("{\"delta\":1e3}", &d), 0);
    assert_int_equal(d, 1000);
    assert_int_equal(delta("{\"delta\":9007199254740991}", &d), 0);
    assert_int_equal(d, APP_JSON_DELTA_MAX);
    assert_int_equal(delta("{\"delta\":-9007199254740991}", &d), 0);
    assert_int_equal(d, -APP_JSON_DELTA_MAX);

    const char *bad[] = {
        "{}",
        "{\"Delta\":1}",
        "{\"delta\":1.5}",
        "{\"delta\":\"5\"}",
        "{\"delta\":null}",
        "{\"delta\":true}",
        "{\"delta\":[1]}",
        "{\"delta\":1e400}",
        "{\"delta\":9007199254740993}",
        "{\"delta\":-1e300}",
        "{\"delta\":1,\"delta\":2}",
        "[{\"delta\":1}]",
        "{\"delta\":1",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d = 77;
        assert_int_equal(delta(bad[i], &d), -EINVAL);
        assert_int_equal(d, 77);
    }
}

static void test_idem_key(void **state)
{
    (void)state;
    assert_true(app_json_idem_key_is_valid(SLICE_LIT("k")));
    assert_true(app_json_idem_key_is_valid(SLICE_LIT("8e03978e-40d5-43e8-bc93-6894a57f9324")));
    assert_true(app_json_idem_key_is_valid(SLICE_LIT("!~\"{}")));
    char k[APP_JSON_IDEM_KEY_MAX + 1];
    memset(k, 'k', sizeof(k));
    assert_true(app_json_idem_key_is_valid(slice_of(k, APP_JSON_IDEM_KEY_MAX)));
    assert_false(app_json_idem_key_is_valid(slice_of(k, APP_JSON_IDEM_KEY_MAX + 1)));
    assert_false(app_json_idem_key_is_valid(SLICE_LIT("")));
    assert_false(app_json_idem_key_is_valid(SLICE_LIT("a b")));
    assert_false(app_json_idem_key_is_valid(SLICE_LIT("a\tb")));
    assert_false(app_json_idem_key_is_valid(SLICE_LIT("\x7f")));
    assert_false(app_json_idem_key_is_valid(SLICE_LIT("\xc3\xa9")));
}

static void test_int64(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(app_json_parse_int64(SLICE_LIT("0"), &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(app_json_parse_int64(SLICE_LIT("-42"), &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(app_json_parse_int64(SLICE_LIT("9223372036854775807"), &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(app_json_parse_int64(SLICE_LIT("-9223372036854775808"), &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(app_json_parse_int64(SLICE_LIT("9223372036854775808"), &v), -EINVAL);
    assert_int_equal(app_json_parse_int64(SLICE_LIT("-9223372036854775809"), &v), -EINVAL);
    assert_int_equal(app_json_parse_int64(SLICE_LIT(""), &v), -EINVAL);
    assert_int_equal(app_json_parse_int64(SLICE_LIT("-"), &v), -EINVAL);
    assert_int_equal(app_json_parse_int64(SLICE_LIT("+1"), &v), -EINVAL);
    assert_int_equal(app_json_parse_int64(SLICE_LIT(" 1"), &v), -EINVAL);
    assert_int_equal(app_json_parse_int64(SLICE_LIT("1.0"), &v), -EINVAL);
    assert_int_equal(app_json_parse_int64(SLICE_LIT("abc"), &v), -EINVAL);
}

static void test_bodies(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    app_json_health(&b, "app-1");
    assert_buf(&b, "{\"status\":\"ok\",\"name\":\"app-1\"}");
    b.len = 0;
    app_json_whoami(&b, "a");
    assert_buf(&b, "{\"name\":\"a\"}");
    b.len = 0;
    app_json_balance(&b, SLICE_LIT("u1"), INT64_MAX);
    assert_buf(&b, "{\"id\":\"u1\",\"balance\":9223372036854775807}");
    b.len = 0;
    app_json_balance(&b, SLICE_LIT("u1"), -3);
    assert_buf(&b, "{\"id\":\"u1\",\"balance\":-3}");
    b.len = 0;
    app_json_deleted(&b, SLICE_LIT("x"));
    assert_buf(&b, "{\"id\":\"x\",\"deleted\":true}");
    b.len = 0;
    app_json_error(&b, "store unavailable", "said \"no\"", SLICE_LIT("u1"));
    assert_buf(&b,
               "{\"error\":\"store unavailable\",\"detail\":\"said \\\"no\\\"\",\"id\":\"u1\"}");
    b.len = 0;
    app_json_error(&b, "not found", NULL, (struct slice){NULL, 0});
    assert_buf(&b, "{\"error\":\"not found\"}");
    buf_free(&b);
}

static void test_idem_record(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    const char *body = "{\"id\":\"u1\",\"balance\":9223372036854775807}";
    app_json_idem_encode(&b, SLICE_LIT("u1"), -APP_JSON_DELTA_MAX, 200, slice_cstr(body));
    struct app_json_idem rec;
    memset(&rec, 0, sizeof(rec));
    buf_init(&rec.body);
    assert_int_equal(app_json_idem_decode(slice_of(b.p, b.len), &rec), 0);
    assert_string_equal(rec.id, "u1");
    assert_true(rec.delta == -APP_JSON_DELTA_MAX);
    assert_int_equal(rec.status, 200);
    /* the body comes back byte for byte, large integers included */
    assert_buf(&rec.body, body);
    buf_free(&rec.body);
    buf_free(&b);

    const char *bad[] = {
        "pending",
        "{}",
        "{\"id\":\"u1\",\"delta\":1,\"status\":200}",
        "{\"id\":\"u1\",\"delta\":\"1\",\"status\":200,\"body\":\"{}\"}",
        "{\"id\":\"u1\",\"delta\":1,\"status\":99,\"body\":\"{}\"}",
        "{\"id\":1,\"delta\":1,\"status\":200,\"body\":\"{}\"}",
        "{\"id\":\"u1\",\"delta\":1,\"status\":200,\"body\":{}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&rec, 0, sizeof(rec));
        buf_init(&rec.body);
        assert_int_equal(app_json_idem_decode(slice_cstr(bad[i]), &rec), -EINVAL);
        assert_int_equal(rec.body.len, 0);
        buf_free(&rec.body);
    }
}

/* One keyed update's decision for (record, balance) as found by its read batch. */
static enum app_idem_verdict decide(const char *record, const char *balance, const char *id,
                                    int64_t delta, int64_t *next, struct buf *replayed)
{
    struct slice r = record ? slice_cstr(record) : (struct slice){NULL, 0};
    struct slice b = balance ? slice_cstr(balance) : (struct slice){NULL, 0};
    struct app_json_idem rec;
    memset(&rec, 0, sizeof(rec));
    buf_init(&rec.body);
    enum app_idem_verdict v = app_json_idem_decide(record ? &r : NULL, balance ? &b : NULL,
                                                   slice_cstr(id), delta, &rec, next);
    replayed->len = 0;
    buf_append(replayed, rec.body.p ? rec.body.p : "", rec.body.len);
    buf_free(&rec.body);
    return v;
}

static void test_idem_decide(void **state)
{
    (void)state;
    struct buf rec, out;
    buf_init(&rec);
    buf_init(&out);
    int64_t next = 0;
    /* no record: apply on top of the stored balance (none = 0) */
    assert_int_equal(decide(NULL, NULL, "u1", 5, &next, &out), APP_IDEM_APPLY);
    assert_true(next == 5);
    assert_int_equal(decide(NULL, "-7", "u1", 5, &next, &out), APP_IDEM_APPLY);
    assert_true(next == -2);
    assert_int_equal(decide(NULL, "9223372036854775806", "u1", 1, &next, &out), APP_IDEM_APPLY);
    assert_true(next == INT64_MAX);
    assert_int_equal(decide(NULL, "9223372036854775807", "u1", 1, &next, &out),
                     APP_IDEM_OVERFLOW);
    assert_int_equal(decide(NULL, "-9223372036854775808", "u1", -1, &next, &out),
                     APP_IDEM_OVERFLOW);
    assert_int_equal(decide(NULL, "12abc", "u1", 1, &next, &out), APP_IDEM_BAD_BALANCE);
    assert_int_equal(decide(NULL, "", "u1", 1, &next, &out), APP_IDEM_BAD_BALANCE);

    /* a record: this request's is replayed (whatever the balance is now), another's refused */
    app_json_idem_encode(&rec, SLICE_LIT("u1"), 5, 200, SLICE_LIT("{\"id\":\"u1\",\"balance\":5}"));
    buf_append(&rec, "", 1); /* NUL for slice_cstr */
    assert_int_equal(decide(rec.p, "oops", "u1", 5, &next, &out), APP_IDEM_REPLAY);
    assert_buf(&out, "{\"id\":\"u1\",\"balance\":5}");
    assert_int_equal(decide(rec.p, "5", "u1", 6, &next, &out), APP_IDEM_MISMATCH);
    assert_int_equal(decide(rec.p, "5", "u2", 5, &next, &out), APP_IDEM_MISMATCH);
    assert_int_equal(decide(rec.p, "5", "u", 5, &next, &out), APP_IDEM_MISMATCH);
    assert_int_equal(decide("pending", "5", "u1", 5, &next, &out), APP_IDEM_BAD_RECORD);
    buf_free(&rec);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_documents), cmocka_unit_test(test_delta),
        cmocka_unit_test(test_idem_key),       cmocka_unit_test(test_int64),
        cmocka_unit_test(test_bodies),         cmocka_unit_test(test_idem_record),
        cmocka_unit_test(test_idem_decide),
    };
    return cmocka_run_group_tests_name("app_json", tests, NULL, NULL);
}
