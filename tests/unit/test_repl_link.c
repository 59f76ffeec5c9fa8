/* SPDX-License-Identifier: MIT */
/* Unit tests for store/repl_link.c: the replica's link fed with encoded primary streams in
 * random pieces (the ops see the same calls whatever the split), and every rule violation
 * failing the link with a reason: refusal, lower terms, misplaced CONTINUE/TRUNCATE, gaps,
 * snapshot framing, op failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/replmsg.h"
#include "proto/walrec.h"
#include "store/repl_link.h"

/* The fake shell: a transcript of the calls. */
struct fake {
    struct buf log;
    int fail_records; /* returned by records() when non-zero */
};

static int f_adopt(void *ud, uint64_t term, const char *cause)
{
    struct fake *f = ud;
    assert_non_null(cause);
    buf_printf(&f->log, "adopt %llu;", (unsigned long long)term);
    return 0;
}

static int f_truncate(void *ud, uint64_t lsn)
{
    struct fake *f = ud;
    buf_printf(&f->log, "truncate %llu;", (unsigned long long)lsn);
    return 0;
}

static int f_snap_begin(void *ud, uint64_t lsn, uint64_t term)
{
    struct fake *f = ud;
    buf_printf(&f->log, "snap %llu/%llu;", (unsigned long long)lsn, (unsigned long long)term);
    return 0;
}

static int f_snap_chunk(void *ud, const char *p, size_t n)
{
    struct fake *f = ud;
    buf_printf(&f->log, "chunk %.*s;", (int)n, p);
    return 0;
}

static int f_snap_end(void *ud, uint64_t lsn, uint64_t term)
{
    struct fake *f = ud;
    buf_printf(&f->log, "install %llu/%llu;", (unsigned long long)lsn, (unsigned long long)term);
    return 0;
}

static int f_records(void *ud, const struct replmsg_frame *fr)
{
    struct fake *f = ud;
    if (f->fail_records)
        return f->fail_records;
    /* Records arrive one frame at a time: list their lsns. */
    size_t off = 0;
    while (off < fr->records.len) {
        struct walrec rec;
        ssize_t r = walrec_decode(fr->records.p + off, fr->records.len - off, &rec);
        assert_true(r > 0);
        buf_printf(&f->log, "rec %llu/%llu;", (unsigned long long)rec.lsn,
                   (unsigned long long)rec.term);
        off += (size_t)r;
    }
    return 0;
}

static void f_heartbeat(void *ud, uint64_t commit, uint64_t last)
{
    struct fake *f = ud;
    buf_printf(&f->log, "hb %llu %llu;", (unsigned long long)commit, (unsigned long long)last);
}

static int f_discard(void *ud, bool proven, uint64_t common)
{
    struct fake *f = ud;
    if (proven)
        buf_printf(&f->log, "audit after %llu;", (unsigned long long)common);
    else
        buf_printf(&f->log, "unproven;");
    return 0;
}

static const struct repl_link_ops ops = {f_adopt,     f_truncate, f_snap_begin,
                                         f_snap_chunk, f_snap_end, f_records,
                                         f_heartbeat, NULL,       f_discard};

static uint64_t rng = 42;

static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng % n;
}

static void add_records(struct buf *out, uint64_t first, uint64_t last, uint64_t term)
{
    struct buf recs;
    buf_init(&recs);
    struct slice argv[3] = {SLICE_LIT("SET"), SLICE_LIT("k"), SLICE_LIT("v")};
    for (uint64_t lsn = first; lsn <= last; lsn++)
        walrec_encode(&recs, lsn, term, 3, argv);
    replmsg_frame_wal(out, recs.p, recs.len);
    buf_free(&recs);
}

/* Feeds s to a link (term, last_lsn) in random pieces, keeping unconsumed bytes as a shell
 * does. Returns the final code (0 when everything was consumed); the transcript in f. */
static int run(struct fake *f, uint64_t term, uint64_t last_lsn, const struct buf *s,
               struct repl_link *l, bool split)
{
    buf_init(&f->log);
    repl_link_init(l, term, last_lsn, &ops, f);
    struct buf pending;
    buf_init(&pending);
    size_t off = 0;
    int rc = 0;
    while (off < s->len) {
        size_t k = split ? 1 + rnd(s->len - off < 40 ? s->len - off : 40) : s->len - off;
        buf_append(&pending, s->p + off, k);
        off += k;
        ssize_t r = repl_link_feed(l, pending.p, pending.len);
        if (r < 0) {
            rc = (int)r;
            break;
        }
        buf_consume(&pending, (size_t)r);
    }
    if (rc == 0 && pending.len != 0)
        rc = TD_EINCOMPLETE;
    buf_free(&pending);
    buf_append(&f->log, "", 1); /* NUL-terminate the transcript */
    return rc;
}

static void expect(const struct buf *s, uint64_t term, uint64_t last_lsn, int want_rc,
                   const char *want_log, const char *want_err)
{
    for (int split = 0; split < 2; split++) {
        for (int rep = 0; rep < (split ? 20 : 1); rep++) {
            struct fake f = {{0}, 0};
            struct repl_link l;
            int rc = run(&f, term, last_lsn, s, &l, split);
            if (strcmp(f.log.p, want_log) != 0)
                fail_msg("transcript \"%s\", want \"%s\"", f.log.p, want_log);
            assert_int_equal(rc, want_rc);
            if (want_err)
                assert_non_null(strstr(l.err, want_err));
            else
                assert_string_equal(l.err, "");
            buf_free(&f.log);
        }
    }
}

static void answer(struct buf *b, enum replmsg_answer_kind k, uint64_t lsn, uint64_t term)
{
    struct replmsg_answer a = {k, lsn, term, {NULL, 0}, false, 0};
    replmsg_answer_encode(b, &a);
}

static void answer_full(struct buf *b, uint64_t lsn, uint64_t term, uint64_t common)
{
    struct replmsg_answer a = {REPLMSG_FULL, lsn, term, {NULL, 0}, true, common};
    replmsg_answer_encode(b, &a);
}

static void test_continue_stream(void **state)
{
    (void)state;
    struct buf s;
    buf_init(&s);
    answer(&s, REPLMSG_CONTINUE, 5, 3);
    add_records(&s, 6, 8, 2);
    replmsg_frame_heartbeat(&s, 3, 7, 8);
    add_records(&s, 9, 9, 3);
    expect(&s, 3, 5, 0, "rec 6/2;rec 7/2;rec 8/2;hb 7 8;rec 9/3;", NULL);
    /* A higher term is adopted before anything is applied. */
    expect(&s, 2, 5, 0, "adopt 3;rec 6/2;rec 7/2;rec 8/2;hb 7 8;rec 9/3;", NULL);
    buf_free(&s);
}

static void test_truncate_and_full(void **state)
{
    (void)state;
    struct buf s;
    buf_init(&s);
    answer(&s, REPLMSG_TRUNCATE, 4, 5);
    add_records(&s, 5, 6, 5);
    expect(&s, 5, 9, 0, "truncate 4;rec 5/5;rec 6/5;", NULL);
    buf_free(&s);

    buf_init(&s);
    answer(&s, REPLMSG_FULL, 100, 5);
    replmsg_frame_snap_chunk(&s, "abc", 3);
    replmsg_frame_heartbeat(&s, 5, 100, 101);
    replmsg_frame_snap_chunk(&s, "de", 2);
    replmsg_frame_snap_end(&s, 100, 5, 5);
    add_records(&s, 101, 101, 5);
    expect(&s, 5, 3, 0,
           "snap 100/5;chunk abc;hb 100 101;chunk de;unproven;install 100/5;rec 101/5;", NULL);
    buf_free(&s);

    /* FULL with the common prefix: the audit runs once the snapshot is complete, before it
     * is installed (a transfer that breaks off audits nothing). */
    buf_init(&s);
    answer_full(&s, 100, 5, 2);
    replmsg_frame_snap_chunk(&s, "abc", 3);
    replmsg_frame_snap_end(&s, 100, 5, 3);
    add_records(&s, 101, 101, 5);
    expect(&s, 5, 7, 0, "snap 100/5;chunk abc;audit after 2;install 100/5;rec 101/5;", NULL);
    buf_free(&s);
    buf_init(&s);
    answer_full(&s, 100, 5, 2);
    replmsg_frame_snap_chunk(&s, "abc", 3);
    expect(&s, 5, 7, 0, "snap 100/5;chunk abc;", NULL);
    buf_free(&s);
}

static void test_violations(void **state)
{
    (void)state;
    struct buf s;

    buf_init(&s);
    buf_append_str(&s, "-NOAUTH bad replication secret\r\n");
    expect(&s, 1, 0, TD_ENOTPRIMARY, "", "NOAUTH");
    buf_free(&s);

    buf_init(&s);
    answer(&s, REPLMSG_CONTINUE, 5, 2);
    expect(&s, 3, 5, TD_ESTALE_TERM, "", "older");
    buf_free(&s);

    buf_init(&s);
    answer(&s, REPLMSG_CONTINUE, 4, 3);
    expect(&s, 3, 5, TD_EPROTO_RESP, "", "CONTINUE");
    buf_free(&s);

    buf_init(&s);
    answer(&s, REPLMSG_TRUNCATE, 5, 3);
    expect(&s, 3, 5, TD_EPROTO_RESP, "", "TRUNCATE");
    buf_free(&s);

    /* A gap, and a record from a term above the primary's. */
    buf_init(&s);
    answer(&s, REPLMSG_CONTINUE, 5, 3);
    add_records(&s, 7, 7, 3);
    expect(&s, 3, 5, TD_ECORRUPT, "", "expected 6");
    buf_free(&s);
    buf_init(&s);
    answer(&s, REPLMSG_CONTINUE, 5, 3);
    add_records(&s, 6, 6, 4);
    expect(&s, 3, 5, TD_ECORRUPT, "", "term 4");
    buf_free(&s);

    /* A heartbeat from a lower term mid-stream. */
    buf_init(&s);
    answer(&s, REPLMSG_CONTINUE, 5, 3);
    add_records(&s, 6, 6, 3);
    replmsg_frame_heartbeat(&s, 2, 6, 6);
    expect(&s, 3, 5, TD_ESTALE_TERM, "rec 6/3;", "older");
    buf_free(&s);

    /* Snapshot framing. */
    buf_init(&s);
    answer(&s, REPLMSG_FULL, 10, 3);
    replmsg_frame_snap_chunk(&s, "abc", 3);
    replmsg_frame_snap_end(&s, 10, 3, 4);
    expect(&s, 3, 0, TD_ECORRUPT, "snap 10/3;chunk abc;", "does not match");
    buf_free(&s);
    buf_init(&s);
    answer(&s, REPLMSG_FULL, 10, 3);
    add_records(&s, 11, 11, 3);
    expect(&s, 3, 0, TD_EPROTO_RESP, "snap 10/3;", "inside a snapshot");
    buf_free(&s);
    buf_init(&s);
    answer(&s, REPLMSG_CONTINUE, 0, 3);
    replmsg_frame_snap_chunk(&s, "abc", 3);
    expect(&s, 3, 0, TD_EPROTO_RESP, "", "outside a transfer");
    buf_free(&s);

    /* A common prefix beyond our last lsn is nonsense. */
    buf_init(&s);
    answer_full(&s, 10, 3, 6);
    expect(&s, 3, 5, TD_EPROTO_RESP, "", "common prefix 6");
    buf_free(&s);

    /* Garbage instead of an answer or a frame. */
    buf_init(&s);
    buf_append_str(&s, "*1\r\n$4\r\nPING\r\n");
    expect(&s, 3, 0, TD_EPROTO_RESP, "", "malformed answer");
    buf_free(&s);
    buf_init(&s);
    answer(&s, REPLMSG_CONTINUE, 0, 3);
    buf_append_str(&s, "+OK\r\n");
    expect(&s, 3, 0, TD_EPROTO_RESP, "", "malformed replication frame");
    buf_free(&s);

    /* An op failure fails the link, and the failure is sticky. */
    buf_init(&s);
    answer(&s, REPLMSG_CONTINUE, 0, 3);
    add_records(&s, 1, 1, 3);
    struct fake f = {{0}, -5};
    struct repl_link l;
    assert_int_equal(run(&f, 3, 0, &s, &l, false), -5);
    assert_non_null(strstr(l.err, "applying records 1..1"));
    assert_int_equal(l.state, REPL_LINK_FAILED);
    assert_true(repl_link_feed(&l, s.p, s.len) < 0);
    buf_free(&f.log);
    buf_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_continue_stream),
        cmocka_unit_test(test_truncate_and_full),
        cmocka_unit_test(test_violations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
