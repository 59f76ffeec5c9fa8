/* SPDX-License-Identifier: MIT */
/* Unit tests for harness/loadstats.c: counts, gaps between successes, first success, phases
 * split at marks, timeline windows and server interning, all with injected timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/loadstats.h"

#define MS 1000u
#define NOSRV ((struct slice){NULL, 0})

static struct loadstats *new_stats(uint64_t window_us)
{
    struct loadstats *st = malloc(sizeof(*st));
    assert_non_null(st);
    loadstats_init(st, window_us);
    return st;
}

static void free_stats(struct loadstats *st)
{
    loadstats_free(st);
    free(st);
}

static void ok(struct loadstats *st, uint64_t t_ms, const char *srv)
{
    loadstats_record(st, t_ms * MS, LOADSTATS_OK, 500, srv ? slice_cstr(srv) : NOSRV);
}

static void failed_at(struct loadstats *st, uint64_t t_ms, enum loadstats_outcome o)
{
    loadstats_record(st, t_ms * MS, o, 0, NOSRV);
}

static uint64_t srv_count(const struct loadstats *st, const char *name)
{
    int i = loadstats_server_index(st, name);
    return i < 0 ? 0 : st->c.servers[i];
}

static void test_counts_and_errors(void **state)
{
    (void)state;
    struct loadstats *st = new_stats(0);
    ok(st, 1, "a");
    ok(st, 2, "b");
    ok(st, 3, "a");
    failed_at(st, 4, LOADSTATS_ERR_CONNECT);
    failed_at(st, 5, LOADSTATS_ERR_RESET);
    failed_at(st, 6, LOADSTATS_ERR_TIMEOUT);
    failed_at(st, 7, LOADSTATS_ERR_5XX);
    failed_at(st, 8, LOADSTATS_ERR_5XX);
    failed_at(st, 9, LOADSTATS_ERR_PROTOCOL);
    loadstats_finish(st, 10 * MS);
    assert_int_equal(st->c.requests, 9);
    assert_int_equal(st->c.ok, 3);
    assert_int_equal(st->c.failed, 6);
    assert_int_equal(st->c.errors[LOADSTATS_ERR_CONNECT], 1);
    assert_int_equal(st->c.errors[LOADSTATS_ERR_RESET], 1);
    assert_int_equal(st->c.errors[LOADSTATS_ERR_TIMEOUT], 1);
    assert_int_equal(st->c.errors[LOADSTATS_ERR_5XX], 2);
    assert_int_equal(st->c.errors[LOADSTATS_ERR_PROTOCOL], 1);
    assert_int_equal(st->c.errors[LOADSTATS_OK], 0);
    assert_int_equal(srv_count(st, "a"), 2);
    assert_int_equal(srv_count(st, "b"), 1);
    assert_int_equal(st->lat.count, 3); /* only successes have a latency */
    assert_int_equal(st->end_us, 10 * MS);
    assert_string_equal(loadstats_outcome_name(LOADSTATS_ERR_5XX), "status_5xx");
    assert_string_equal(loadstats_outcome_name(LOADSTATS_ERR_CONNECT), "connect");
    free_stats(st);
}

static void test_gaps_between_successes_only(void **state)
{
    (void)state;
    struct loadstats *st = new_stats(0);
    /* 40 ms before the first success is not a gap; failures do not end a gap */
    ok(st, 40, "a");
    ok(st, 41, "a");
    failed_at(st, 50, LOADSTATS_ERR_RESET);
    failed_at(st, 300, LOADSTATS_ERR_CONNECT);
    ok(st, 341, "b"); /* 300 ms without a success */
    ok(st, 342, "b");
    ok(st, 400, "b"); /* 58 ms */
    /* a long tail after the last success is not a gap either */
    loadstats_finish(st, 5000 * MS);
    assert_true(st->has_ok);
    assert_int_equal(st->first_ok_us, 40 * MS);
    assert_int_equal(st->last_ok_us, 400 * MS);
    assert_int_equal(st->longest_gap_us, 300 * MS);
    assert_int_equal(st->gap_end_us, 341 * MS);
    free_stats(st);
}

static void test_no_success(void **state)
{
    (void)state;
    struct loadstats *st = new_stats(0);
    failed_at(st, 1, LOADSTATS_ERR_CONNECT);
    failed_at(st, 2, LOADSTATS_ERR_CONNECT);
    loadstats_finish(st, 3 * MS);
    assert_false(st->has_ok);
    assert_int_equal(st->longest_gap_us, 0);
    assert_int_equal(st->c.ok, 0);
    assert_int_equal(st->nservers, 0);
    free_stats(st);
}

static void test_phases_split_at_marks(void **state)
{
    (void)state;
    struct loadstats *st = new_stats(0);
    ok(st, 10, "a");
    ok(st, 20, "b");
    ok(st, 30, "a");
    assert_int_equal(loadstats_mark(st, 35 * MS), 1); /* the kill */
    failed_at(st, 36, LOADSTATS_ERR_RESET);
    ok(st, 90, "b"); /* the gap 30 -> 90 spans the mark: it belongs to phase 1 */
    ok(st, 95, "b");
    assert_int_equal(loadstats_mark(st, 100 * MS), 2); /* the restart */
    ok(st, 110, "a");
    loadstats_finish(st, 120 * MS);

    assert_int_equal(st->nphases, 3);
    const struct loadstats_phase *p0 = &st->phases[0], *p1 = &st->phases[1],
                                 *p2 = &st->phases[2];
    assert_int_equal(p0->start_us, 0);
    assert_int_equal(p0->end_us, 35 * MS);
    assert_int_equal(p0->c.ok, 3);
    assert_int_equal(p0->c.failed, 0);
    assert_int_equal(p0->longest_gap_us, 10 * MS);
    assert_int_equal(p0->c.servers[loadstats_server_index(st, "a")], 2);
    assert_int_equal(p0->c.servers[loadstats_server_index(st, "b")], 1);

    assert_int_equal(p1->start_us, 35 * MS);
    assert_int_equal(p1->end_us, 100 * MS);
    assert_int_equal(p1->c.ok, 2);
    assert_int_equal(p1->c.failed, 1);
    assert_int_equal(p1->c.errors[LOADSTATS_ERR_RESET], 1);
    assert_int_equal(p1->longest_gap_us, 60 * MS);
    assert_int_equal(p1->gap_end_us, 90 * MS);
    assert_int_equal(p1->first_ok_us, 90 * MS);
    assert_int_equal(p1->c.servers[loadstats_server_index(st, "a")], 0);
    assert_int_equal(p1->lat.count, 2);

    assert_int_equal(p2->start_us, 100 * MS);
    assert_int_equal(p2->end_us, 120 * MS);
    assert_int_equal(p2->c.ok, 1);
    assert_int_equal(p2->longest_gap_us, 15 * MS);
    /* when each server answered first in a phase: how failback is measured */
    int a = loadstats_server_index(st, "a"), b = loadstats_server_index(st, "b");
    assert_int_equal(p0->server_first_us[a], 10 * MS);
    assert_int_equal(p0->server_first_us[b], 20 * MS);
    assert_int_equal(p1->server_first_us[b], 90 * MS);
    assert_int_equal(p1->c.servers[a], 0);
    assert_int_equal(p2->server_first_us[a], 110 * MS);

    /* the phases add up to the run */
    uint64_t req = 0, okc = 0;
    for (unsigned i = 0; i < st->nphases; i++) {
        req += st->phases[i].c.requests;
        okc += st->phases[i].c.ok;
    }
    assert_int_equal(req, st->c.requests);
    assert_int_equal(okc, st->c.ok);
    assert_int_equal(st->longest_gap_us, 60 * MS);
    free_stats(st);
}

static void test_mark_limit(void **state)
{
    (void)state;
    struct loadstats *st = new_stats(0);
    for (int i = 1; i < LOADSTATS_MAX_PHASES; i++)
        assert_int_equal(loadstats_mark(st, (uint64_t)i * MS), i);
    assert_int_equal(loadstats_mark(st, 100 * MS), -1);
    ok(st, 200, "a"); /* still counted, in the last phase */
    assert_int_equal(st->phases[LOADSTATS_MAX_PHASES - 1].c.ok, 1);
    free_stats(st);
}

static void test_time_never_goes_back(void **state)
{
    (void)state;
    struct loadstats *st = new_stats(0);
    ok(st, 100, "a");
    ok(st, 90, "a"); /* reported late: treated as at 100, no negative gap */
    assert_int_equal(st->longest_gap_us, 0);
    assert_int_equal(st->last_ok_us, 100 * MS);
    assert_int_equal(loadstats_mark(st, 50 * MS), 1);
    assert_int_equal(st->phases[1].start_us, 100 * MS);
    loadstats_finish(st, 10 * MS);
    assert_int_equal(st->end_us, 100 * MS);
    free_stats(st);
}

static void test_timeline_windows(void **state)
{
    (void)state;
    struct loadstats *st = new_stats(100 * MS);
    ok(st, 0, "a");
    ok(st, 99, "b");
    ok(st, 100, "a");
    failed_at(st, 150, LOADSTATS_ERR_TIMEOUT);
    /* nothing in 200..299; window 3 and a far window force growth beyond 64 */
    ok(st, 350, "b");
    ok(st, 9999, "a");
    loadstats_finish(st, 10000 * MS);
    assert_int_equal(st->nwindows, 100);
    assert_true(st->cap_windows >= 100);
    int a = loadstats_server_index(st, "a"), b = loadstats_server_index(st, "b");
    assert_int_equal(st->windows[0].ok, 2);
    assert_int_equal(st->windows[0].servers[a], 1);
    assert_int_equal(st->windows[0].servers[b], 1);
    assert_int_equal(st->windows[1].ok, 1);
    assert_int_equal(st->windows[1].failed, 1);
    assert_int_equal(st->windows[2].ok, 0);
    assert_int_equal(st->windows[2].failed, 0);
    assert_int_equal(st->windows[3].servers[b], 1);
    assert_int_equal(st->windows[50].ok, 0);
    assert_int_equal(st->windows[99].servers[a], 1);
    uint64_t sum_ok = 0, sum_failed = 0;
    for (size_t w = 0; w < st->nwindows; w++) {
        sum_ok += st->windows[w].ok;
        sum_failed += st->windows[w].failed;
    }
    assert_int_equal(sum_ok, st->c.ok);
    assert_int_equal(sum_failed, st->c.failed);
    free_stats(st);
}

static void test_server_interning(void **state)
{
    (void)state;
    struct loadstats *st = new_stats(0);
    ok(st, 1, NULL);
    ok(st, 2, NULL);
    char name[32];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        ok(st, 3 + (uint64_t)i, name);
    }
    ok(st, 30, "s0");
    /* a name longer than the slot is cut, consistently */
    char longname[LOADSTATS_NAME_MAX + 20];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_true(st->nservers <= LOADSTATS_MAX_SERVERS);
    assert_int_equal(srv_count(st, LOADSTATS_NONE), 2);
    assert_int_equal(srv_count(st, "s0"), 2);
    assert_int_equal(srv_count(st, "s13"), 1);
    assert_int_equal(loadstats_server_index(st, "s14"), -1);
    assert_int_equal(srv_count(st, LOADSTATS_OTHER), 6); /* s14..s19 */
    uint64_t sum = 0;
    for (unsigned i = 0; i < st->nservers; i++)
        sum += st->c.servers[i];
    assert_int_equal(sum, st->c.ok);
    free_stats(st);

    st = new_stats(0);
    ok(st, 1, longname);
    ok(st, 2, longname);
    assert_int_equal(st->nservers, 1);
    assert_int_equal(strlen(st->names[0]), LOADSTATS_NAME_MAX - 1);
    assert_int_equal(st->c.servers[0], 2);
    free_stats(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_errors),
        cmocka_unit_test(test_gaps_between_successes_only),
        cmocka_unit_test(test_no_success),
        cmocka_unit_test(test_phases_split_at_marks),
        cmocka_unit_test(test_mark_limit),
        cmocka_unit_test(test_time_never_goes_back),
        cmocka_unit_test(test_timeline_windows),
        cmocka_unit_test(test_server_interning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
