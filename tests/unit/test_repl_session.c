/* SPDX-License-Identifier: MIT */
/* Unit tests for store/repl_session.c: the primary's handshake (secret, terms, the answer
 * from log matching), ack bookkeeping, and the in-sync judgement driven by a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "base/err.h"
#include "store/repl_session.h"

/* A primary log of 20 records: lsns 1..10 in term 1, 11..20 in term 2; snapshot at base. */
static uint64_t base = 0;
static bool hist; /* term boundaries kept below the snapshot: every term is known */

static int term_at(void *ud, uint64_t lsn, uint64_t *term)
{
    (void)ud;
    if ((lsn < base && !hist) || lsn > 20)
        return -ENOENT;
    *term = lsn == 0 ? 0 : lsn <= 10 ? 1 : 2;
    return 0;
}

static struct repl_log_view view(uint64_t term)
{
    struct repl_log_view v = {term, base, 20, term_at, NULL, false, 0};
    return v;
}

static struct replmsg_hello hello(const char *secret, uint64_t last, uint64_t term)
{
    struct replmsg_hello h;
    memset(&h, 0, sizeof(h));
    h.secret = slice_cstr(secret);
    h.node = SLICE_LIT("replica-1");
    h.last_lsn = last;
    h.last_term = term;
    return h;
}

static void test_handshake(void **state)
{
    (void)state;
    struct repl_session s;
    struct replmsg_answer a;
    struct repl_term_verdict tv;
    struct repl_log_view v = view(2);
    base = 0;

    repl_session_init(&s);
    struct replmsg_hello h = hello("pw", 15, 2);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT("pw"), &v, &a, &tv), 0);
    assert_int_equal(a.kind, REPLMSG_CONTINUE);
    assert_int_equal(a.lsn, 15);
    assert_int_equal(a.term, 2);
    assert_int_equal(tv.action, REPL_TERM_OK);
    assert_int_equal(s.state, REPL_SESSION_STREAMING);
    assert_string_equal(s.node, "replica-1");
    assert_int_equal(s.sent_lsn, 15);
    assert_int_equal(s.acked_lsn, 15);
    /* A second REPLSYNC on the same link is refused. */
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT("pw"), &v, &a, &tv), TD_EPROTO_RESP);
    assert_int_equal(a.kind, REPLMSG_REFUSED);
    assert_int_equal(s.state, REPL_SESSION_CLOSED);

    /* Wrong secret (same length and not). */
    repl_session_init(&s);
    h = hello("px", 15, 2);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT("pw"), &v, &a, &tv), -EACCES);
    assert_int_equal(a.kind, REPLMSG_REFUSED);
    assert_true(slice_eq(slice_of(a.text.p, 6), SLICE_LIT("NOAUTH")));
    repl_session_init(&s);
    h = hello("pw2", 15, 2);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT("pw"), &v, &a, &tv), -EACCES);

    /* A replica with more term-1 records than the primary: truncate. */
    repl_session_init(&s);
    h = hello("", 12, 1);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT(""), &v, &a, &tv), 0);
    assert_int_equal(a.kind, REPLMSG_TRUNCATE);
    assert_int_equal(a.lsn, 10);
    assert_int_equal(s.acked_lsn, 10);

    /* Compacted past the replica: full resync, acks start from nothing. */
    base = 12;
    v = view(2);
    repl_session_init(&s);
    h = hello("", 5, 1);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT(""), &v, &a, &tv), 0);
    assert_int_equal(a.kind, REPLMSG_FULL);
    assert_int_equal(a.lsn, 12);
    assert_int_equal(s.state, REPL_SESSION_SNAPSHOT);
    assert_int_equal(s.acked_lsn, 0);
    repl_session_snapshot_sent(&s);
    assert_int_equal(s.state, REPL_SESSION_STREAMING);
    assert_false(a.has_common); /* unproven: term 1 lies inside the snapshot */

    /* With term boundaries kept below the snapshot the common prefix is proven; a V2 replica
     * gets it with FULL, one without V2 gets the three-number line it parses. */
    hist = true;
    v.has_hist = true;
    v.hist_lsn = 0;
    repl_session_init(&s);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT(""), &v, &a, &tv), 0);
    assert_int_equal(a.kind, REPLMSG_FULL);
    assert_false(a.has_common);
    assert_true(s.match.proven);
    h.v2 = true;
    repl_session_init(&s);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT(""), &v, &a, &tv), 0);
    assert_int_equal(a.kind, REPLMSG_FULL);
    assert_int_equal(a.lsn, 12);
    assert_true(a.has_common);
    assert_int_equal(a.common, 5); /* a lagging replica: nothing diverged */
    h = hello("", 11, 1);            /* lsn 11 of term 1 diverged */
    h.v2 = true;
    repl_session_init(&s);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT(""), &v, &a, &tv), 0);
    assert_int_equal(a.kind, REPLMSG_FULL);
    assert_true(a.has_common);
    assert_int_equal(a.common, 10);
    hist = false;
    base = 0;

    /* A replica from a higher term: refused, and the primary must step down. */
    v = view(2);
    repl_session_init(&s);
    h = hello("", 15, 3);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT(""), &v, &a, &tv), TD_ESTALE_TERM);
    assert_int_equal(a.kind, REPLMSG_REFUSED);
    assert_int_equal(tv.action, REPL_TERM_STEP_DOWN);
    assert_int_equal(tv.new_term, 3);
}

static void test_acks(void **state)
{
    (void)state;
    struct repl_session s;
    struct replmsg_answer a;
    struct repl_term_verdict tv;
    struct repl_log_view v = view(2);
    base = 0;
    repl_session_init(&s);
    struct replmsg_hello h = hello("", 15, 2);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT(""), &v, &a, &tv), 0);
    repl_session_sent(&s, 18);
    repl_session_sent(&s, 17); /* never backwards */
    assert_int_equal(s.sent_lsn, 18);
    assert_int_equal(repl_session_ack(&s, 17, 2, 2, 100, &tv), 0);
    assert_int_equal(s.acked_lsn, 17);
    assert_int_equal(s.last_ack_ms, 100);
    assert_int_equal(repl_session_ack(&s, 16, 2, 2, 101, &tv), TD_ECORRUPT); /* backwards */
    assert_int_equal(repl_session_ack(&s, 19, 2, 2, 101, &tv), TD_ECORRUPT); /* never sent */
    assert_int_equal(repl_session_ack(&s, 18, 3, 2, 102, &tv), 0);
    assert_int_equal(tv.action, REPL_TERM_STEP_DOWN);
}

static void test_in_sync(void **state)
{
    (void)state;
    struct repl_session s;
    struct replmsg_answer a;
    struct repl_term_verdict tv;
    struct repl_log_view v = view(2);
    base = 0;
    repl_session_init(&s);
    /* Not streaming: never in sync. */
    assert_false(repl_session_tick(&s, 20, 0, 100));
    assert_false(s.in_sync);
    struct replmsg_hello h = hello("", 10, 1);
    assert_int_equal(repl_session_hello(&s, &h, SLICE_LIT(""), &v, &a, &tv), 0);
    /* Behind: a probe at lsn 20 is armed; not in sync yet. */
    assert_false(repl_session_tick(&s, 20, 1000, 100));
    assert_false(s.in_sync);
    repl_session_sent(&s, 30);
    assert_int_equal(repl_session_ack(&s, 20, 2, 2, 1050, &tv), 0);
    /* Met within 100 ms while the primary moved on: in sync (under load, never "equal"). */
    assert_true(repl_session_tick(&s, 25, 1060, 100));
    assert_true(s.in_sync);
    /* Next probe at 25 from 1060; acked 25 at 1100: still in sync. */
    assert_int_equal(repl_session_ack(&s, 25, 2, 2, 1100, &tv), 0);
    assert_false(repl_session_tick(&s, 28, 1110, 100));
    assert_true(s.in_sync);
    /* Probe at 28 from 1110; no ack for 101 ms: dropped. */
    assert_false(repl_session_tick(&s, 30, 1200, 100));
    assert_true(repl_session_tick(&s, 30, 1211, 100));
    assert_false(s.in_sync);
    /* Probe re-armed at 30 from 1211: acked at 1250, in sync again. */
    assert_int_equal(repl_session_ack(&s, 30, 2, 2, 1250, &tv), 0);
    assert_true(repl_session_tick(&s, 30, 1260, 100));
    assert_true(s.in_sync);
    /* A probe met late (ack seen only after the lag) drops the replica even if no tick ran in
     * between. */
    repl_session_sent(&s, 40);
    assert_false(repl_session_tick(&s, 40, 2000, 100)); /* probe 40 from 2000 */
    assert_int_equal(repl_session_ack(&s, 40, 2, 2, 2300, &tv), 0);
    assert_true(repl_session_tick(&s, 41, 2301, 100));
    assert_false(s.in_sync);
    /* Caught up exactly: in sync at once. */
    assert_int_equal(repl_session_ack(&s, 40, 2, 2, 2400, &tv), 0);
    assert_true(repl_session_tick(&s, 40, 2400, 100));
    assert_true(s.in_sync);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_acks),
        cmocka_unit_test(test_in_sync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
