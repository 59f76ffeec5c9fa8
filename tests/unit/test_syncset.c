/* SPDX-License-Identifier: MIT */
/* Unit tests for coord/syncset.c: the order in which sync mode's wait set W and recorded set S
 * change, so that W always contains S and anything that may yet be recorded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "coord/syncset.h"

static bool has(const struct cluster_names *s, const char *n)
{
    return cluster_names_has(s, n);
}

/* W always contains the guard, which contains S. */
static void check(const struct syncset *s)
{
    for (size_t i = 0; i < s->recorded.n; i++)
        assert_true(has(&s->guard, s->recorded.v[i]));
    for (size_t i = 0; i < s->guard.n; i++)
        assert_true(has(&s->wait, s->guard.v[i]));
}

static void test_join_then_record_then_leave(void **state)
{
    (void)state;
    struct syncset s;
    struct syncset_out o;
    struct cluster_names none = {0};
    syncset_init(&s, 1, false);
    syncset_start(&s, &none, 10);
    struct syncset_replica r[1] = {{"db2", true, 0}};
    /* First round: db2 joins W; the store must apply that before db2 can be recorded. */
    syncset_step(&s, r, 1, 5, true, &o);
    check(&s);
    assert_true(o.tell);
    assert_true(o.degraded);
    assert_false(o.hold);
    assert_true(has(&s.wait, "db2"));
    assert_false(o.propose);
    assert_non_null(strstr(o.tell_why, "joins the wait set"));
    /* Observed, but behind what clients got acknowledged: not yet. */
    syncset_observed(&s);
    syncset_step(&s, r, 1, 5, true, &o);
    assert_false(o.propose);
    assert_false(o.tell);
    /* Caught up: record it. Not without the leader key, though. */
    r[0].lsn = 5;
    syncset_step(&s, r, 1, 5, false, &o);
    assert_false(o.propose);
    syncset_step(&s, r, 1, 5, true, &o);
    check(&s);
    assert_true(o.propose);
    assert_true(has(&o.proposal, "db2"));
    assert_non_null(strstr(o.propose_why, "up to lsn 5"));
    assert_true(syncset_is_degraded(&s)); /* not until confirmed */
    syncset_result(&s, true, 11);
    assert_false(syncset_is_degraded(&s));
    assert_int_equal(s.rev, 11);
    syncset_step(&s, r, 1, 9, true, &o);
    assert_true(o.tell); /* no longer degraded */
    assert_false(o.degraded);
    /* db2 goes away: its removal is proposed while W still holds it. */
    r[0].connected = false;
    syncset_step(&s, r, 1, 9, true, &o);
    check(&s);
    assert_true(o.propose);
    assert_int_equal(o.proposal.n, 0);
    assert_true(has(&s.wait, "db2"));
    assert_non_null(strstr(o.propose_why, "'db2' disconnected"));
    syncset_step(&s, r, 1, 9, true, &o); /* in flight: nothing new, W unchanged */
    assert_false(o.propose);
    assert_true(has(&s.wait, "db2"));
    syncset_result(&s, true, 12);
    syncset_step(&s, r, 1, 9, true, &o);
    check(&s);
    assert_false(has(&s.wait, "db2"));
    assert_true(o.tell);
    assert_true(o.degraded);
    assert_non_null(strstr(o.tell_why, "left the wait set"));
}

/* A proposal whose outcome is unknown keeps its members in W until a confirmed write voids it. */
static void test_unknown_outcome_is_guarded(void **state)
{
    (void)state;
    struct syncset s;
    struct syncset_out o;
    struct cluster_names none = {0};
    syncset_init(&s, 1, false);
    syncset_start(&s, &none, 10);
    struct syncset_replica r[1] = {{"db2", true, 7}};
    syncset_step(&s, r, 1, 7, true, &o);
    syncset_observed(&s);
    syncset_step(&s, r, 1, 7, true, &o);
    assert_true(o.propose);
    syncset_result(&s, false, 0); /* timed out: it may still land */
    r[0].connected = false;
    syncset_step(&s, r, 1, 7, true, &o);
    check(&s);
    assert_true(has(&s.wait, "db2")); /* still waited for */
    assert_true(o.propose);           /* S written again, to void the old proposal */
    assert_int_equal(o.proposal.n, 0);
    assert_non_null(strstr(o.propose_why, "voiding"));
    syncset_result(&s, true, 13);
    syncset_step(&s, r, 1, 7, true, &o);
    check(&s);
    assert_false(has(&s.wait, "db2"));
    /* A READ showing our key: adopted, and it can only grow what W must cover. */
    struct cluster_names rec = {0};
    cluster_names_add(&rec, "db3");
    syncset_adopt(&s, &rec, 14);
    check(&s);
    assert_true(has(&s.wait, "db3"));
    assert_int_equal(s.rev, 14);
}

/* Strict mode: acknowledgements are held while W is short of N. Re-taking a term: W = S. */
static void test_strict_and_restart(void **state)
{
    (void)state;
    struct syncset s;
    struct syncset_out o;
    struct cluster_names rec = {0};
    cluster_names_add(&rec, "db2");
    syncset_init(&s, 2, true);
    syncset_start(&s, &rec, 20);
    assert_true(has(&s.wait, "db2"));
    struct syncset_replica r[2] = {{"db2", true, 3}, {"db3", false, 0}};
    syncset_step(&s, r, 2, 3, true, &o);
    assert_true(o.tell);
    assert_true(o.hold);
    assert_true(o.degraded);
    r[1].connected = true;
    syncset_step(&s, r, 2, 3, true, &o);
    assert_true(o.tell);
    assert_false(o.hold); /* W is full, S not yet: acks flow, still degraded */
    assert_true(o.degraded);
    assert_int_equal(s.wait.n, 2);
    /* The best replica (highest lsn) joins first. */
    syncset_init(&s, 1, false);
    struct cluster_names none = {0};
    syncset_start(&s, &none, 1);
    struct syncset_replica q[3] = {{"a", true, 1}, {"b", true, 9}, {"c", false, 20}};
    syncset_step(&s, q, 3, 0, true, &o);
    assert_int_equal(s.wait.n, 1);
    assert_true(has(&s.wait, "b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_then_record_then_leave),
        cmocka_unit_test(test_unknown_outcome_is_guarded),
        cmocka_unit_test(test_strict_and_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
