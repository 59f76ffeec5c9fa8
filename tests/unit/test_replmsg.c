/* SPDX-License-Identifier: MIT */
/* Unit tests for proto/replmsg.c: every message round-trips through its encoder and parser
 * (commands through the real RESP parser), every truncation of a frame or answer is
 * incomplete, and malformed inputs are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/replmsg.h"
#include "proto/resp.h"
#include "proto/walrec.h"

static const struct resp_limits lim = {1u << 20, 1024, 4096, false};

/* Parses one RESP command from b and returns argc (argv into *argv, valid until freed). */
static size_t parse_cmd(struct resp_parser *rp, const struct buf *b, struct slice **argv)
{
    ssize_t r = resp_parse(rp, b->p, b->len);
    assert_int_equal(r, (ssize_t)b->len);
    *argv = rp->argv;
    return rp->argc;
}

static void test_hello_round_trip(void **state)
{
    (void)state;
    struct replmsg_hello h, g;
    memset(&h, 0, sizeof(h));
    h.secret = SLICE_LIT("s3cret");
    h.node = SLICE_LIT("node-b");
    h.last_lsn = REPLMSG_MAX_NUMBER;
    h.last_term = 7;
    h.base_lsn = 100;
    h.nterms = 3;
    h.terms[0] = (struct replmsg_term_start){2, 1};
    h.terms[1] = (struct replmsg_term_start){5, 50};
    h.terms[2] = (struct replmsg_term_start){7, 400};
    struct buf b;
    buf_init(&b);
    replmsg_hello_encode(&b, &h);
    struct resp_parser rp;
    resp_parser_init(&rp, &lim);
    struct slice *argv;
    size_t argc = parse_cmd(&rp, &b, &argv);
    const char *why;
    assert_int_equal(replmsg_hello_parse(argc, argv, &g, &why), 0);
    assert_null(why);
    assert_true(slice_eq(g.secret, h.secret));
    assert_true(slice_eq(g.node, h.node));
    assert_int_equal(g.last_lsn, h.last_lsn);
    assert_int_equal(g.last_term, 7);
    assert_int_equal(g.base_lsn, 100);
    assert_int_equal(g.nterms, 3);
    assert_memory_equal(g.terms, h.terms, 3 * sizeof(h.terms[0]));
    assert_false(g.v2);
    resp_parser_free(&rp);
    /* V2: one more argument, with or without a history. */
    for (size_t nt = 0; nt <= 3; nt += 3) {
        h.v2 = true;
        h.nterms = nt;
        b.len = 0;
        replmsg_hello_encode(&b, &h);
        resp_parser_init(&rp, &lim);
        argc = parse_cmd(&rp, &b, &argv);
        assert_int_equal(argc, 7 + 2 * nt);
        assert_true(slice_eq(argv[argc - 1], SLICE_LIT("V2")));
        assert_int_equal(replmsg_hello_parse(argc, argv, &g, &why), 0);
        assert_true(g.v2);
        assert_int_equal(g.nterms, nt);
        assert_int_equal(g.base_lsn, 100);
        resp_parser_free(&rp);
    }
    buf_free(&b);
}

static int hello_argv(const char **words, size_t n)
{
    struct slice argv[80];
    for (size_t i = 0; i < n; i++)
        argv[i] = slice_cstr(words[i]);
    struct replmsg_hello h;
    const char *why;
    int rc = replmsg_hello_parse(n, argv, &h, &why);
    if (rc != 0)
        assert_non_null(why);
    return rc;
}

static void test_hello_refusals(void **state)
{
    (void)state;
    const char *ok[] = {"replsync", "", "n", "10", "3", "0", "1", "1", "3", "8"};
    assert_int_equal(hello_argv(ok, 10), 0);
    const char *ok_nohist[] = {"REPLSYNC", "x", "n", "0", "0", "0"};
    assert_int_equal(hello_argv(ok_nohist, 6), 0);
    const char *ok_v2[] = {"REPLSYNC", "x", "n", "10", "3", "0", "1", "1", "3", "8", "V2"};
    assert_int_equal(hello_argv(ok_v2, 11), 0);
    const char *bad[][10] = {
        {"REPLSYNC", "x", "n", "10", "3", "0", "1", "1", "3"},       /* odd pair count */
        {"REPLSYNC", "x", "", "10", "3", "0", "1", "1", "3", "8"},   /* empty node */
        {"REPLSYNC", "x", "n", "010", "3", "0", "1", "1", "3", "8"}, /* leading zero */
        {"REPLSYNC", "x", "n", "-1", "3", "0", "1", "1", "3", "8"},
        {"REPLSYNC", "x", "n", "18446744073709551616", "3", "0", "1", "1", "3", "8"},
        /* Absurd (above REPLMSG_MAX_NUMBER): a term a primary could not be promoted above. */
        {"REPLSYNC", "x", "n", "10", "9223372036854775808", "0"},
        {"REPLSYNC", "x", "n", "9223372036854775808", "3", "0"},
        {"REPLSYNC", "x", "n", "10", "18446744073709551615", "0", "1", "1",
         "18446744073709551615", "8"},
        {"REPLSYNC", "x", "n", "10", "3", "11", "1", "1", "3", "8"}, /* base > last */
        {"REPLSYNC", "x", "n", "10", "3", "0", "3", "1", "1", "8"},  /* terms not ascending */
        {"REPLSYNC", "x", "n", "10", "3", "0", "1", "5", "3", "5"},  /* lsns not ascending */
        {"REPLSYNC", "x", "n", "10", "3", "0", "1", "1", "2", "8"},  /* last term differs */
        {"REPLSYNC", "x", "n", "10", "3", "0", "1", "1", "3", "11"}, /* beyond last lsn */
        {"REPLSYNC", "x", "n", "10", "3", "0", "1", "0", "3", "8"},  /* lsn 0 */
        {"PSYNC", "x", "n", "10", "3", "0", "1", "1", "3", "8"},
        {"REPLSYNC", "x", "n", "10", "3", "0", "V3"},                /* unknown version */
        {"REPLSYNC", "x", "n", "10", "3", "0", "v2"},                /* one spelling */
        {"REPLSYNC", "x", "n", "10", "3", "0", "V2", "3", "8"},      /* V2 comes last */
    };
    size_t sizes[] = {9, 10, 10, 10, 10, 6, 6, 10, 10, 10, 10, 10, 10, 10, 10, 7, 7, 9};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        assert_int_equal(hello_argv(bad[i], sizes[i]), TD_EPROTO_RESP);
    /* Too many terms. */
    const char *many[6 + 2 * (REPLMSG_MAX_TERMS + 1)];
    char nums[2 * (REPLMSG_MAX_TERMS + 1)][8];
    many[0] = "REPLSYNC";
    many[1] = "";
    many[2] = "n";
    many[3] = "1000";
    many[4] = "33";
    many[5] = "0";
    for (int i = 0; i <= REPLMSG_MAX_TERMS; i++) {
        snprintf(nums[2 * i], 8, "%d", i + 1);
        snprintf(nums[2 * i + 1], 8, "%d", i + 1);
        many[6 + 2 * i] = nums[2 * i];
        many[7 + 2 * i] = nums[2 * i + 1];
    }
    assert_int_equal(hello_argv(many, 6 + 2 * (REPLMSG_MAX_TERMS + 1)), TD_EPROTO_RESP);
    assert_int_equal(hello_argv(many, 6 + 2 * REPLMSG_MAX_TERMS), TD_EPROTO_RESP); /* term 32!=33 */
    many[4] = "32";
    assert_int_equal(hello_argv(many, 6 + 2 * REPLMSG_MAX_TERMS), 0);
}

static void test_ack(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    replmsg_ack_encode(&b, 12345, 9);
    struct resp_parser rp;
    resp_parser_init(&rp, &lim);
    struct slice *argv;
    size_t argc = parse_cmd(&rp, &b, &argv);
    uint64_t lsn, term;
    assert_int_equal(replmsg_ack_parse(argc, argv, &lsn, &term), 0);
    assert_int_equal(lsn, 12345);
    assert_int_equal(term, 9);
    assert_int_equal(replmsg_ack_parse(argc - 1, argv, &lsn, &term), TD_EPROTO_RESP);
    struct slice bad[3] = {SLICE_LIT("REPLACK"), SLICE_LIT("1x"), SLICE_LIT("1")};
    assert_int_equal(replmsg_ack_parse(3, bad, &lsn, &term), TD_EPROTO_RESP);
    struct slice absurd[3] = {SLICE_LIT("REPLACK"), SLICE_LIT("1"),
                              SLICE_LIT("9223372036854775808")};
    assert_int_equal(replmsg_ack_parse(3, absurd, &lsn, &term), TD_EPROTO_RESP);
    absurd[2] = SLICE_LIT("9223372036854775807");
    assert_int_equal(replmsg_ack_parse(3, absurd, &lsn, &term), 0);
    resp_parser_free(&rp);
    buf_free(&b);
}

static void test_failsafe(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    replmsg_failsafe_ack_encode(&b, 7, 42);
    struct resp_parser rp;
    resp_parser_init(&rp, &lim);
    struct slice *argv;
    size_t argc = parse_cmd(&rp, &b, &argv);
    uint64_t term, round, lsn;
    assert_int_equal(replmsg_failsafe_ack_parse(argc, argv, &term, &round), 0);
    assert_int_equal(term, 7);
    assert_int_equal(round, 42);
    /* the two commands are told apart by name */
    assert_int_equal(replmsg_ack_parse(argc, argv, &lsn, &term), TD_EPROTO_RESP);
    resp_parser_free(&rp);
    b.len = 0;
    replmsg_frame_failsafe(&b, 5, 9, 1000);
    struct replmsg_frame f;
    ssize_t r = replmsg_frame_parse(b.p, b.len, &f);
    assert_int_equal(r, (ssize_t)b.len);
    assert_int_equal(f.type, REPLMSG_FRAME_FAILSAFE);
    assert_int_equal(f.term, 5);
    assert_int_equal(f.round, 9);
    assert_int_equal(f.valid_ms, 1000);
    /* a wrong body size is refused */
    b.len = 0;
    buf_append_str(&b, "$4\r\nFabc\r\n");
    assert_int_equal(replmsg_frame_parse(b.p, b.len, &f), TD_EPROTO_RESP);
    buf_free(&b);
}

static void test_answers(void **state)
{
    (void)state;
    struct replmsg_answer in[6] = {
        {REPLMSG_CONTINUE, 42, 3, {NULL, 0}, false, 0},
        {REPLMSG_TRUNCATE, 0, 18446744073709551615ull, {NULL, 0}, false, 0},
        {REPLMSG_FULL, 1000000, 1, {NULL, 0}, false, 0},
        {REPLMSG_REFUSED, 0, 0, SLICE_LIT("NOAUTH bad\nsecret"), false, 0},
        {REPLMSG_FULL, 1000000, 2, {NULL, 0}, true, 17},
        {REPLMSG_FULL, 5, 2, {NULL, 0}, true, 0},
    };
    for (int i = 0; i < 6; i++) {
        struct buf b;
        buf_init(&b);
        replmsg_answer_encode(&b, &in[i]);
        buf_append(&b, "$junk", 5); /* the stream that follows */
        struct replmsg_answer out;
        ssize_t r = replmsg_answer_parse(b.p, b.len, &out);
        assert_int_equal(r, (ssize_t)b.len - 5);
        assert_int_equal(out.kind, in[i].kind);
        if (in[i].kind == REPLMSG_REFUSED) {
            assert_true(slice_eq(out.text, SLICE_LIT("NOAUTH bad secret")));
        } else {
            assert_int_equal(out.lsn, in[i].lsn);
            assert_int_equal(out.term, in[i].term);
            assert_int_equal(out.has_common, in[i].has_common);
            assert_int_equal(out.common, in[i].common);
        }
        for (size_t k = 0; k < (size_t)r; k++)
            assert_int_equal(replmsg_answer_parse(b.p, k, &out), TD_EINCOMPLETE);
        buf_free(&b);
    }
    const char *bad[] = {"+CONTINUE 1\r\n",
                         "+MAYBE 1 2\r\n",
                         "+CONTINUE 1 2 3\r\n",
                         "+CONTINUE 01 2\r\n",
                         ":1\r\n",
                         "+FULL 1 2\n\r\n",
                         "+TRUNCATE 1 2 3\r\n", /* only FULL carries a common prefix */
                         "+FULL 1 2 03\r\n",
                         "+FULL 1 2 3 4\r\n",
                         "+FULL 1 2 \r\n",
                         "\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct replmsg_answer out;
        assert_int_equal(replmsg_answer_parse(bad[i], strlen(bad[i]), &out), TD_EPROTO_RESP);
    }
    char longline[600];
    memset(longline, 'a', sizeof(longline));
    longline[0] = '+';
    struct replmsg_answer out;
    assert_int_equal(replmsg_answer_parse(longline, sizeof(longline), &out), TD_EPROTO_RESP);
}

static void test_frames(void **state)
{
    (void)state;
    struct buf recs, b;
    buf_init(&recs);
    buf_init(&b);
    struct slice argv[3] = {SLICE_LIT("SET"), SLICE_LIT("k"), SLICE_LIT("v\r\n$3\r\n")};
    walrec_encode(&recs, 7, 2, 3, argv);
    walrec_encode(&recs, 8, 2, 0, NULL);
    walrec_encode(&recs, 9, 3, 2, argv);
    replmsg_frame_wal(&b, recs.p, recs.len);
    replmsg_frame_heartbeat(&b, 3, 8, 9);
    replmsg_frame_snap_chunk(&b, "SNAPBYTES", 9);
    replmsg_frame_snap_end(&b, 100, 3, 9);
    size_t off = 0;
    struct replmsg_frame f;
    ssize_t r = replmsg_frame_parse(b.p, b.len, &f);
    assert_true(r > 0);
    assert_int_equal(f.type, REPLMSG_FRAME_WAL);
    assert_int_equal(f.nrecords, 3);
    assert_int_equal(f.first_lsn, 7);
    assert_int_equal(f.last_lsn, 9);
    assert_int_equal(f.last_term, 3);
    assert_true(slice_eq(f.records, slice_of(recs.p, recs.len)));
    for (size_t k = 0; k < (size_t)r; k++)
        assert_int_equal(replmsg_frame_parse(b.p, k, &f), TD_EINCOMPLETE);
    off += (size_t)r;
    r = replmsg_frame_parse(b.p + off, b.len - off, &f);
    assert_true(r > 0);
    assert_int_equal(f.type, REPLMSG_FRAME_HEARTBEAT);
    assert_int_equal(f.term, 3);
    assert_int_equal(f.commit_lsn, 8);
    assert_int_equal(f.last_lsn, 9);
    off += (size_t)r;
    r = replmsg_frame_parse(b.p + off, b.len - off, &f);
    assert_true(r > 0);
    assert_int_equal(f.type, REPLMSG_FRAME_SNAP_CHUNK);
    assert_true(slice_eq(f.chunk, SLICE_LIT("SNAPBYTES")));
    off += (size_t)r;
    r = replmsg_frame_parse(b.p + off, b.len - off, &f);
    assert_true(r > 0);
    assert_int_equal(f.type, REPLMSG_FRAME_SNAP_END);
    assert_int_equal(f.last_lsn, 100);
    assert_int_equal(f.term, 3);
    assert_int_equal(f.total_bytes, 9);
    off += (size_t)r;
    assert_int_equal(off, b.len);

    /* A flipped byte inside the records is corruption; a gap in lsns too. */
    buf_free(&b);
    buf_init(&b);
    replmsg_frame_wal(&b, recs.p, recs.len);
    b.p[b.len - 5] ^= 1;
    assert_int_equal(replmsg_frame_parse(b.p, b.len, &f), TD_ECORRUPT);
    struct buf gap;
    buf_init(&gap);
    walrec_encode(&gap, 7, 2, 0, NULL);
    walrec_encode(&gap, 9, 2, 0, NULL);
    buf_free(&b);
    buf_init(&b);
    replmsg_frame_wal(&b, gap.p, gap.len);
    assert_int_equal(replmsg_frame_parse(b.p, b.len, &f), TD_ECORRUPT);
    /* Terms going down. */
    buf_free(&gap);
    buf_init(&gap);
    walrec_encode(&gap, 7, 3, 0, NULL);
    walrec_encode(&gap, 8, 2, 0, NULL);
    buf_free(&b);
    buf_init(&b);
    replmsg_frame_wal(&b, gap.p, gap.len);
    assert_int_equal(replmsg_frame_parse(b.p, b.len, &f), TD_ECORRUPT);

    const char *bad[] = {"+OK\r\n",      "$0\r\n\r\n",   "$1\r\nZ\r\n", "$2\r\nH1\r\n",
                         "$01\r\nS\r\n", "$2\r\nSx\r\r", "$x\r\n",      "$99999999999999\r\n",
                         "$2\nSx\r\n",   "$1\r\nW\r\n",  "$1\r\nS\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(replmsg_frame_parse(bad[i], strlen(bad[i]), &f), TD_EPROTO_RESP);
    buf_free(&gap);
    buf_free(&b);
    buf_free(&recs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_round_trip),
        cmocka_unit_test(test_hello_refusals),
        cmocka_unit_test(test_ack),
        cmocka_unit_test(test_failsafe),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
