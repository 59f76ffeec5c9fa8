/* SPDX-License-Identifier: MIT */
/* Unit tests for coord/etcd_json.c: base64, prefix range ends, request bodies, and the mapping of
 * etcd's answers to dcs results. The response bodies below were captured with curl from a real
 * etcd 3.4.23 (Debian etcd-server) JSON gateway; the two marked "synthetic" were written by hand
 * for answers that are hard to provoke (a 5xx, truncated bodies, a canceled watch). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "base/err.h"
#include "coord/etcd_json.h"

#define HDR(rev)                                                                                   \
    "{\"cluster_id\":\"15118495548433857066\",\"member_id\":\"13668033151171901709\","            \
    "\"revision\":\"" rev "\",\"raft_term\":\"2\"}"

static const char grant_ok[] =
    "{\"header\":" HDR("1") ",\"ID\":\"4111120267701604616\",\"TTL\":\"5\"}";
static const char keepalive_ok[] =
    "{\"result\":{\"header\":" HDR("1") ",\"ID\":\"4111120267701604616\",\"TTL\":\"5\"}}\n";
static const char keepalive_gone[] = "{\"result\":{\"header\":" HDR("1") ",\"ID\":\"12345\"}}\n";
static const char lease_not_found[] =
    "{\"error\":\"etcdserver: requested lease not found\",\"message\":\"etcdserver: requested "
    "lease not found\",\"code\":5}";
static const char revoke_ok[] = "{\"header\":" HDR("3") "}";
static const char txn_ok[] =
    "{\"header\":" HDR("2") ",\"succeeded\":true,\"responses\":[{\"response_put\":{\"header\":"
    "{\"revision\":\"2\"}}},{\"response_put\":{\"header\":{\"revision\":\"2\"}}}]}";
static const char txn_failed[] = "{\"header\":" HDR("2") "}";
static const char txn_del_ok[] =
    "{\"header\":" HDR("4") ",\"succeeded\":true,\"responses\":[{\"response_delete_range\":"
    "{\"header\":{\"revision\":\"4\"},\"deleted\":\"1\"}}]}";
static const char txn_dup_key[] =
    "{\"error\":\"etcdserver: duplicate key given in txn request\",\"message\":\"etcdserver: "
    "duplicate key given in txn request\",\"code\":3}";
static const char range_two[] =
    "{\"header\":" HDR("2") ",\"kvs\":[{\"key\":\"L3RhbmRlbS9jL2xlYWRlcg==\",\"create_revision\":"
    "\"2\",\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"bmFtZT1hLHRlcm09MQ==\",\"lease\":"
    "\"4111120267701604616\"},{\"key\":\"L3RhbmRlbS9jL3Rlcm0=\",\"create_revision\":\"2\","
    "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"MQ==\"}],\"count\":\"2\"}";
static const char range_none[] = "{\"header\":" HDR("2") "}";
static const char range_empty_value[] =
    "{\"header\":" HDR("11") ",\"kvs\":[{\"key\":\"L2Uvaw==\",\"create_revision\":\"11\","
    "\"mod_revision\":\"11\",\"version\":\"1\"}],\"count\":\"1\"}";
static const char bad_json_400[] =
    "{\"error\":\"invalid character 'g' looking for beginning of value\",\"message\":\"invalid "
    "character 'g' looking for beginning of value\",\"code\":3}";
static const char watch_stream[] =
    "{\"result\":{\"header\":" HDR("3") ",\"created\":true}}\n"
    "{\"result\":{\"header\":" HDR("4") ",\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":"
    "\"L3RhbmRlbS9jL3Rlcm0=\",\"mod_revision\":\"4\"}}]}}\n"
    "{\"result\":{\"header\":" HDR("5") ",\"events\":[{\"kv\":{\"key\":\"L3RhbmRlbS9jL2E=\","
    "\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":\"1\",\"value\":\"djE=\"}}]}}\n";
/* synthetic: etcd's shape for an unavailable cluster */
static const char no_leader_503[] =
    "{\"error\":\"etcdserver: no leader\",\"message\":\"etcdserver: no leader\",\"code\":14}";

static int parse(enum dcs_op op, long status, const char *body, struct etcd_json_result *r)
{
    return etcd_json_response(op, 42, status, body, strlen(body), r);
}

static void test_b64_roundtrip(void **state)
{
    (void)state;
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        struct buf b;
        buf_init(&b);
        etcd_json_b64_encode(&b, in[i], strlen(in[i]));
        assert_int_equal(b.len, strlen(out[i]));
        assert_memory_equal(b.p ? b.p : "", out[i], b.len);
        char dec[16];
        assert_int_equal(etcd_json_b64_decode(out[i], strlen(out[i]), dec), strlen(in[i]));
        assert_memory_equal(dec, in[i], strlen(in[i]));
        buf_free(&b);
    }
    /* every byte value survives */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    struct buf b;
    buf_init(&b);
    etcd_json_b64_encode(&b, all, sizeof(all));
    char dec[256];
    assert_int_equal(etcd_json_b64_decode(b.p, b.len, dec), 256);
    assert_memory_equal(dec, all, 256);
    buf_free(&b);
}

static void test_b64_rejects(void **state)
{
    (void)state;
    char dec[16];
    assert_int_equal(etcd_json_b64_decode("Zg=", 3, dec), -EINVAL);   /* length */
    assert_int_equal(etcd_json_b64_decode("Z===", 4, dec), -EINVAL);  /* too much padding */
    assert_int_equal(etcd_json_b64_decode("Zg=a", 4, dec), -EINVAL);  /* data after padding */
    assert_int_equal(etcd_json_b64_decode("Zg==Zg==", 8, dec), -EINVAL); /* padding mid-way */
    assert_int_equal(etcd_json_b64_decode("Z!==", 4, dec), -EINVAL);  /* alphabet */
    assert_int_equal(etcd_json_b64_decode("Zm-v", 4, dec), -EINVAL);  /* not URL-safe base64 */
}

static void test_prefix_end(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    etcd_json_prefix_end(&b, SLICE_LIT("/tandem/c/"));
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.p, "/tandem/c0", 10);
    b.len = 0;
    etcd_json_prefix_end(&b, slice_of("a\xff\xff", 3)); /* trailing 0xff carry */
    assert_int_equal(b.len, 1);
    assert_memory_equal(b.p, "b", 1);
    b.len = 0;
    etcd_json_prefix_end(&b, slice_of("\xff", 1)); /* nothing to increment: every key */
    assert_int_equal(b.len, 1);
    assert_int_equal(b.p[0], '\0');
    buf_free(&b);
}

static void expect_body(const struct dcs_req *q, const char *path, const char *body)
{
    struct buf b;
    buf_init(&b);
    const char *p = NULL;
    assert_int_equal(etcd_json_request(q, &p, &b), 0);
    assert_string_equal(p, path);
    buf_append(&b, "", 1);
    assert_string_equal(b.p, body);
    buf_free(&b);
}

static void test_request_bodies(void **state)
{
    (void)state;
    struct dcs_req q;
    memset(&q, 0, sizeof(q));
    q.op = DCS_OP_GRANT;
    q.ttl_ms = 2000;
    expect_body(&q, "/v3/lease/grant", "{\"TTL\":\"2\"}");
    q.ttl_ms = 2001; /* rounded up: never shorter than asked */
    expect_body(&q, "/v3/lease/grant", "{\"TTL\":\"3\"}");
    q.ttl_ms = 1;
    expect_body(&q, "/v3/lease/grant", "{\"TTL\":\"1\"}");

    memset(&q, 0, sizeof(q));
    q.op = DCS_OP_KEEPALIVE;
    q.lease = 4111120267701604616ull;
    expect_body(&q, "/v3/lease/keepalive", "{\"ID\":\"4111120267701604616\"}");
    q.op = DCS_OP_REVOKE;
    expect_body(&q, "/v3/lease/revoke", "{\"ID\":\"4111120267701604616\"}");

    memset(&q, 0, sizeof(q));
    q.op = DCS_OP_READ;
    q.prefix = SLICE_LIT("/tandem/c/"); /* range_end "/tandem/c0" */
    expect_body(&q, "/v3/kv/range",
                "{\"key\":\"L3RhbmRlbS9jLw==\",\"range_end\":\"L3RhbmRlbS9jMA==\"}");

    memset(&q, 0, sizeof(q));
    q.op = DCS_OP_TXN;
    q.ncmp = 2;
    q.cmp[0] = (struct dcs_cmp){SLICE_LIT("/t/leader"), 0};
    q.cmp[1] = (struct dcs_cmp){SLICE_LIT("/t/term"), 7};
    q.nput = 2;
    q.put[0] = (struct dcs_put){SLICE_LIT("/t/leader"), SLICE_LIT("a"), 5, false};
    q.put[1] = (struct dcs_put){SLICE_LIT("/t/term"), SLICE_LIT(""), 0, true};
    expect_body(&q, "/v3/kv/txn",
                "{\"compare\":[{\"key\":\"L3QvbGVhZGVy\",\"target\":\"CREATE\",\"result\":"
                "\"EQUAL\",\"create_revision\":\"0\"},{\"key\":\"L3QvdGVybQ==\",\"target\":"
                "\"MOD\",\"result\":\"EQUAL\",\"mod_revision\":\"7\"}],\"success\":["
                "{\"request_put\":{\"key\":\"L3QvbGVhZGVy\",\"value\":\"YQ==\",\"lease\":\"5\"}},"
                "{\"request_delete_range\":{\"key\":\"L3QvdGVybQ==\"}}]}");
}

static void test_request_rejects(void **state)
{
    (void)state;
    struct dcs_req q;
    struct buf b;
    const char *p;
    buf_init(&b);
    memset(&q, 0, sizeof(q));
    q.op = DCS_OP_KEEPALIVE; /* lease 0 does not exist */
    assert_int_equal(etcd_json_request(&q, &p, &b), -EINVAL);
    q.op = DCS_OP_TXN;
    q.nput = DCS_TXN_MAX + 1;
    assert_int_equal(etcd_json_request(&q, &p, &b), -EINVAL);
    q.nput = 1; /* empty key */
    assert_int_equal(etcd_json_request(&q, &p, &b), -EINVAL);
    q.op = (enum dcs_op)99;
    assert_int_equal(etcd_json_request(&q, &p, &b), -EINVAL);
    buf_free(&b);
}

static void test_grant_keepalive_revoke(void **state)
{
    (void)state;
    struct etcd_json_result r;
    assert_int_equal(parse(DCS_OP_GRANT, 200, grant_ok, &r), DCS_OK);
    assert_int_equal(r.res.id, 42);
    assert_int_equal(r.res.op, DCS_OP_GRANT);
    assert_int_equal(r.res.lease, 4111120267701604616ull);
    assert_int_equal(r.res.ttl_ms, 5000);
    etcd_json_result_free(&r);

    assert_int_equal(parse(DCS_OP_KEEPALIVE, 200, keepalive_ok, &r), DCS_OK);
    assert_int_equal(r.res.ttl_ms, 5000);
    etcd_json_result_free(&r);
    /* dcs.h point 4: 200 without a TTL is etcd's "no such lease" */
    assert_int_equal(parse(DCS_OP_KEEPALIVE, 200, keepalive_gone, &r), DCS_ENOLEASE);
    etcd_json_result_free(&r);

    assert_int_equal(parse(DCS_OP_REVOKE, 200, revoke_ok, &r), DCS_OK);
    assert_int_equal(r.res.rev, 3);
    etcd_json_result_free(&r);
    assert_int_equal(parse(DCS_OP_REVOKE, 404, lease_not_found, &r), DCS_ENOLEASE);
    assert_string_equal(r.msg, "etcdserver: requested lease not found");
    etcd_json_result_free(&r);
}

static void test_txn(void **state)
{
    (void)state;
    struct etcd_json_result r;
    assert_int_equal(parse(DCS_OP_TXN, 200, txn_ok, &r), DCS_OK);
    assert_int_equal(r.res.rev, 2);
    etcd_json_result_free(&r);
    assert_int_equal(parse(DCS_OP_TXN, 200, txn_del_ok, &r), DCS_OK);
    assert_int_equal(r.res.rev, 4);
    etcd_json_result_free(&r);
    /* "succeeded":false is omitted by the gateway */
    assert_int_equal(parse(DCS_OP_TXN, 200, txn_failed, &r), DCS_ECOMPARE);
    assert_int_equal(r.res.rev, 0);
    etcd_json_result_free(&r);
    /* a put naming an expired lease fails as a whole */
    assert_int_equal(parse(DCS_OP_TXN, 404, lease_not_found, &r), DCS_ENOLEASE);
    etcd_json_result_free(&r);
    /* a request etcd refuses is not a compare failure: unknown to the agent, so unavailable */
    assert_int_equal(parse(DCS_OP_TXN, 400, txn_dup_key, &r), DCS_EUNAVAIL);
    assert_string_equal(r.msg, "etcdserver: duplicate key given in txn request");
    etcd_json_result_free(&r);
}

static void test_read(void **state)
{
    (void)state;
    struct etcd_json_result r;
    assert_int_equal(parse(DCS_OP_READ, 200, range_two, &r), DCS_OK);
    assert_int_equal(r.res.rev, 2);
    assert_int_equal(r.res.nkvs, 2);
    const struct dcs_kv *kv = r.res.kvs;
    assert_true(slice_eq(kv[0].key, SLICE_LIT("/tandem/c/leader")));
    assert_true(slice_eq(kv[0].value, SLICE_LIT("name=a,term=1")));
    assert_int_equal(kv[0].rev, 2);
    assert_int_equal(kv[0].lease, 4111120267701604616ull);
    assert_true(slice_eq(kv[1].key, SLICE_LIT("/tandem/c/term")));
    assert_true(slice_eq(kv[1].value, SLICE_LIT("1")));
    assert_int_equal(kv[1].lease, 0);
    etcd_json_result_free(&r);

    assert_int_equal(parse(DCS_OP_READ, 200, range_none, &r), DCS_OK);
    assert_int_equal(r.res.nkvs, 0);
    assert_int_equal(r.res.rev, 2);
    etcd_json_result_free(&r);

    assert_int_equal(parse(DCS_OP_READ, 200, range_empty_value, &r), DCS_OK);
    assert_int_equal(r.res.nkvs, 1);
    assert_true(slice_eq(r.res.kvs[0].key, SLICE_LIT("/e/k")));
    assert_int_equal(r.res.kvs[0].value.len, 0);
    assert_int_equal(r.res.kvs[0].rev, 11);
    etcd_json_result_free(&r);
}

static void test_unavailable(void **state)
{
    (void)state;
    struct etcd_json_result r;
    assert_int_equal(parse(DCS_OP_READ, 503, no_leader_503, &r), DCS_EUNAVAIL);
    assert_string_equal(r.msg, "etcdserver: no leader");
    etcd_json_result_free(&r);
    assert_int_equal(parse(DCS_OP_READ, 400, bad_json_400, &r), DCS_EUNAVAIL);
    etcd_json_result_free(&r);
    /* synthetic: truncated body, empty body, wrong types, a negative revision */
    assert_int_equal(etcd_json_response(DCS_OP_READ, 1, 200, range_two, 40, &r), DCS_EUNAVAIL);
    etcd_json_result_free(&r);
    assert_int_equal(etcd_json_response(DCS_OP_GRANT, 1, 200, "", 0, &r), DCS_EUNAVAIL);
    etcd_json_result_free(&r);
    assert_int_equal(parse(DCS_OP_GRANT, 200, "{\"ID\":\"5\"}", &r), DCS_EUNAVAIL); /* no TTL */
    etcd_json_result_free(&r);
    assert_int_equal(parse(DCS_OP_TXN, 200, "{\"header\":{\"revision\":\"-3\"}}", &r),
                     DCS_EUNAVAIL);
    etcd_json_result_free(&r);
    assert_int_equal(parse(DCS_OP_READ, 200,
                           "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"!!\","
                           "\"mod_revision\":\"9\"}]}",
                           &r),
                     DCS_EUNAVAIL); /* bad base64 */
    assert_null(r.res.kvs);
    etcd_json_result_free(&r);
    assert_int_equal(parse(DCS_OP_TXN, 200, "[1,2]", &r), DCS_EUNAVAIL);
    etcd_json_result_free(&r);
    /* uint64 overflow in a revision string */
    static const char overflow[] =
        "{\"header\":{\"revision\":\"99999999999999999999\"},\"succeeded\":true}";
    assert_int_equal(parse(DCS_OP_TXN, 200, overflow, &r), DCS_EUNAVAIL);
    etcd_json_result_free(&r);
}

static void test_watch_stream(void **state)
{
    (void)state;
    struct buf acc;
    buf_init(&acc);
    struct etcd_json_watch_msg m;
    memset(&m, 0, sizeof(m));
    /* captured stream, fed in odd pieces: lines complete across calls */
    size_t n = strlen(watch_stream);
    for (size_t i = 0; i < n; i += 7) {
        size_t k = n - i < 7 ? n - i : 7;
        assert_int_equal(etcd_json_watch_feed(&acc, watch_stream + i, k, &m), 0);
    }
    assert_int_equal(acc.len, 0);
    assert_int_equal(m.created, 1);
    assert_int_equal(m.events, 2);
    assert_int_equal(m.rev, 5);
    assert_false(m.ended);

    memset(&m, 0, sizeof(m));
    /* synthetic (the shape etcd sends when a watch is canceled) */
    static const char canceled[] =
        "{\"result\":{\"header\":{\"revision\":\"9\"},\"canceled\":true,\"cancel_reason\":"
        "\"mvcc: required revision has been compacted\"}}\n";
    assert_int_equal(etcd_json_watch_feed(&acc, canceled, strlen(canceled), &m), 0);
    assert_true(m.ended);
    assert_string_equal(m.msg, "canceled: mvcc: required revision has been compacted");

    memset(&m, 0, sizeof(m));
    /* synthetic (a gateway stream error) */
    static const char err[] = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":"
                              "\"etcdserver: no leader\"}}\n";
    assert_int_equal(etcd_json_watch_feed(&acc, err, strlen(err), &m), 0);
    assert_true(m.ended);
    assert_string_equal(m.msg, "etcdserver: no leader");

    memset(&m, 0, sizeof(m));
    assert_int_equal(etcd_json_watch_feed(&acc, "{nope}\n", 7, &m), TD_ECORRUPT);
    assert_int_equal(acc.len, 0);
    buf_free(&acc);
}

static void test_watch_request(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    etcd_json_watch_request(SLICE_LIT("/tandem/c/"), 12, &b);
    buf_append(&b, "", 1);
    assert_string_equal(b.p, "{\"create_request\":{\"key\":\"L3RhbmRlbS9jLw==\",\"range_end\":"
                             "\"L3RhbmRlbS9jMA==\",\"start_revision\":\"12\"}}");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_roundtrip),
        cmocka_unit_test(test_b64_rejects),
        cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_request_bodies),
        cmocka_unit_test(test_request_rejects),
        cmocka_unit_test(test_grant_keepalive_revoke),
        cmocka_unit_test(test_txn),
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_unavailable),
        cmocka_unit_test(test_watch_stream),
        cmocka_unit_test(test_watch_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
