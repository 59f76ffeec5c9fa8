/* SPDX-License-Identifier: MIT */
/* Unit tests for lb/health.c and lb/balance.c: the rules that decide where traffic goes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lb/balance.h"
#include "lb/health.h"

static void test_rise_fall(void **state)
{
    (void)state;
    struct health h;
    health_init(&h, 2, 3, 0);
    assert_int_equal(h.state, HEALTH_UP);
    assert_int_equal(health_on_check(&h, false, 10), HEALTH_SAME);
    assert_int_equal(health_on_check(&h, false, 20), HEALTH_SAME);
    /* a good check in between resets the streak */
    assert_int_equal(health_on_check(&h, true, 30), HEALTH_SAME);
    assert_int_equal(health_on_check(&h, false, 40), HEALTH_SAME);
    assert_int_equal(health_on_check(&h, false, 50), HEALTH_SAME);
    assert_int_equal(health_on_check(&h, false, 60), HEALTH_WENT_DOWN);
    assert_int_equal(h.changed_ms, 60);
    assert_int_equal(health_on_check(&h, false, 70), HEALTH_SAME);
    assert_int_equal(health_on_check(&h, true, 80), HEALTH_SAME);
    assert_int_equal(health_on_check(&h, false, 90), HEALTH_SAME);
    assert_int_equal(health_on_check(&h, true, 100), HEALTH_SAME);
    assert_int_equal(health_on_check(&h, true, 110), HEALTH_WENT_UP);
    assert_int_equal(h.state, HEALTH_UP);
}

static void test_passive_failure(void **state)
{
    (void)state;
    struct health h;
    health_init(&h, 2, 3, 0);
    assert_int_equal(health_on_passive_failure(&h, 5), HEALTH_WENT_DOWN);
    assert_true(h.suspect);
    assert_int_equal(health_on_passive_failure(&h, 6), HEALTH_SAME);
    /* while suspect the next check comes at the fast interval */
    assert_int_equal(health_next_delay(&h, 1000, 50), 50);
    assert_int_equal(health_on_check(&h, true, 60), HEALTH_SAME);
    assert_int_equal(health_on_check(&h, true, 110), HEALTH_WENT_UP);
    assert_false(h.suspect);
    assert_int_equal(health_next_delay(&h, 1000, 50), 1000);
    /* one failed check of an up server: in doubt, checked fast */
    assert_int_equal(health_on_check(&h, false, 120), HEALTH_SAME);
    assert_int_equal(health_next_delay(&h, 1000, 50), 50);
}

static void test_stall_rule(void **state)
{
    (void)state;
    assert_false(health_is_stalled(3, 100, 200, 0));   /* off */
    assert_false(health_is_stalled(0, 100, 500, 50));  /* nothing waits on it */
    assert_false(health_is_stalled(3, 100, 149, 50));  /* not yet */
    assert_true(health_is_stalled(3, 100, 150, 50));
    assert_false(health_is_stalled(1, 300, 200, 50));  /* progress stamped after now */
}

static void test_aa_least_loaded_round_robin(void **state)
{
    (void)state;
    struct balance b;
    balance_init(&b, BALANCE_ACTIVE_ACTIVE, BALANCE_LEASTCONN, BALANCE_FAILBACK_AUTO);
    struct balance_view v[3] = {{true, 0}, {true, 0}, {true, 0}};
    int counts[3] = {0};
    for (int i = 0; i < 300; i++)
        counts[balance_pick(&b, v, 3, 0)]++;
    assert_int_equal(counts[0], 100);
    assert_int_equal(counts[1], 100);
    assert_int_equal(counts[2], 100);
    /* a server with requests stuck in flight gets no new ones */
    v[1].load = 5;
    for (int i = 0; i < 10; i++)
        assert_int_not_equal(balance_pick(&b, v, 3, 0), 1);
    /* unusable and excluded servers are skipped; nothing left gives -1 */
    v[0].usable = false;
    assert_int_equal(balance_pick(&b, v, 3, 1u << 2), 1);
    assert_int_equal(balance_pick(&b, v, 3, (1u << 1) | (1u << 2)), -1);
}

static void test_aa_roundrobin(void **state)
{
    (void)state;
    struct balance b;
    balance_init(&b, BALANCE_ACTIVE_ACTIVE, BALANCE_ROUNDROBIN, BALANCE_FAILBACK_AUTO);
    struct balance_view v[2] = {{true, 9}, {true, 0}};
    assert_int_equal(balance_pick(&b, v, 2, 0), 0);
    assert_int_equal(balance_pick(&b, v, 2, 0), 1);
    assert_int_equal(balance_pick(&b, v, 2, 0), 0);
}

static void test_ap_failover_and_failback(void **state)
{
    (void)state;
    struct balance b;
    balance_init(&b, BALANCE_ACTIVE_PASSIVE, BALANCE_LEASTCONN, BALANCE_FAILBACK_AUTO);
    struct balance_view v[2] = {{true, 0}, {true, 0}};
    assert_int_equal(balance_update_active(&b, v, 2), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(balance_pick(&b, v, 2, 0), 0); /* the backup idles */
    /* a retry of a request that failed on the primary goes to the backup */
    assert_int_equal(balance_pick(&b, v, 2, 1u << 0), 1);
    v[0].usable = false;
    assert_int_equal(balance_update_active(&b, v, 2), 1);
    assert_int_equal(balance_pick(&b, v, 2, 0), 1);
    v[0].usable = true;
    assert_int_equal(balance_update_active(&b, v, 2), 0); /* failback auto */
    v[0].usable = v[1].usable = false;
    assert_int_equal(balance_update_active(&b, v, 2), -1);
    assert_int_equal(balance_pick(&b, v, 2, 0), -1);
}

static void test_ap_manual_failback(void **state)
{
    (void)state;
    struct balance b;
    balance_init(&b, BALANCE_ACTIVE_PASSIVE, BALANCE_LEASTCONN, BALANCE_FAILBACK_MANUAL);
    struct balance_view v[3] = {{true, 0}, {true, 0}, {true, 0}};
    assert_int_equal(balance_update_active(&b, v, 3), 0);
    v[0].usable = false;
    assert_int_equal(balance_update_active(&b, v, 3), 1);
    v[0].usable = true;
    assert_int_equal(balance_update_active(&b, v, 3), 1); /* stays on the backup */
    assert_int_equal(balance_pick(&b, v, 3, 0), 1);
    assert_int_equal(balance_failback_now(&b, v, 3), 0);
    assert_int_equal(balance_pick(&b, v, 3, 0), 0);
    /* manual mode still fails over when the serving server dies */
    v[0].usable = false;
    assert_int_equal(balance_update_active(&b, v, 3), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rise_fall),
        cmocka_unit_test(test_passive_failure),
        cmocka_unit_test(test_stall_rule),
        cmocka_unit_test(test_aa_least_loaded_round_robin),
        cmocka_unit_test(test_aa_roundrobin),
        cmocka_unit_test(test_ap_failover_and_failback),
        cmocka_unit_test(test_ap_manual_failback),
    };
    return cmocka_run_group_tests_name("lb_core", tests, NULL, NULL);
}
