/* SPDX-License-Identifier: MIT */
/* Unit tests for harness/loadreport.c: the JSON contract of `tandem load --json`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "harness/loadreport.h"
#include "harness/loadstats.h"

#define MS 1000u

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    assert_non_null(v);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_json_fields_and_consistency(void **state)
{
    (void)state;
    struct loadstats *st = malloc(sizeof(*st));
    assert_non_null(st);
    loadstats_init(st, 100 * MS);
    loadstats_record(st, 5 * MS, LOADSTATS_OK, 1500, slice_cstr("A"));
    loadstats_record(st, 6 * MS, LOADSTATS_OK, 2500, slice_cstr("B"));
    loadstats_record(st, 150 * MS, LOADSTATS_ERR_RESET, 0, (struct slice){NULL, 0});
    loadstats_record(st, 160 * MS, LOADSTATS_ERR_5XX, 0, (struct slice){NULL, 0});
    loadstats_record(st, 206 * MS, LOADSTATS_OK, 1000, slice_cstr("B"));
    loadstats_finish(st, 250 * MS);
    char *js = loadreport_json(st);
    cJSON *root = cJSON_Parse(js);
    assert_non_null(root);
    /* key order is part of the contract: requests first, timeline last */
    assert_true(strncmp(js, "{\"requests\":5,\"ok\":3,\"failed\":2,\"errors\":{", 41) == 0);
    assert_true(num(root, "requests") == 5);
    assert_true(num(root, "ok") == 3);
    assert_true(num(root, "failed") == 2);
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(root, "errors");
    assert_true(num(errs, "connect") == 0);
    assert_true(num(errs, "reset") == 1);
    assert_true(num(errs, "timeout") == 0);
    assert_true(num(errs, "status_5xx") == 1);
    assert_true(num(errs, "protocol") == 0);
    assert_true(num(root, "duration_s") == 0.25);
    assert_true(num(root, "rps") == 12);
    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(root, "latency_ms");
    /* percentiles are bucket bounds: at most 1/HIST_SUB_COUNT above the true value */
    assert_true(num(lat, "p50") >= 1.5 && num(lat, "p50") <= 1.5 * (1 + 1.0 / HIST_SUB_COUNT));
    assert_true(num(lat, "max") == 2.5);
    assert_true(num(lat, "p99") == 2.5);
    assert_true(num(root, "longest_gap_ms") == 200);
    assert_true(num(root, "first_ok_ms") == 5);
    assert_true(num(root, "last_ok_ms") == 206);
    const cJSON *srv = cJSON_GetObjectItemCaseSensitive(root, "servers");
    assert_true(num(srv, "A") == 1);
    assert_true(num(srv, "B") == 2);
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(root, "timeline");
    assert_true(cJSON_IsArray(tl));
    assert_int_equal(cJSON_GetArraySize(tl), 3);
    double ok_sum = 0, failed_sum = 0;
    for (int i = 0; i < 3; i++) {
        const cJSON *w = cJSON_GetArrayItem(tl, i);
        assert_true(num(w, "t_ms") == i * 100);
        ok_sum += num(w, "ok");
        failed_sum += num(w, "failed");
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(w, "servers");
        assert_true(num(ws, "A") + num(ws, "B") == num(w, "ok"));
    }
    assert_true(ok_sum == 3 && failed_sum == 2);
    assert_true(num(cJSON_GetArrayItem(tl, 1), "failed") == 2);
    cJSON_Delete(root);
    free(js);
    loadstats_free(st);
    free(st);
}

static void test_json_without_success(void **state)
{
    (void)state;
    struct loadstats *st = malloc(sizeof(*st));
    assert_non_null(st);
    loadstats_init(st, 0);
    loadstats_record(st, 5 * MS, LOADSTATS_ERR_CONNECT, 0, (struct slice){NULL, 0});
    loadstats_finish(st, 10 * MS);
    char *js = loadreport_json(st);
    cJSON *root = cJSON_Parse(js);
    assert_non_null(root);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "first_ok_ms")));
    assert_true(num(root, "longest_gap_ms") == 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "timeline")), 0);
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "servers")->child);
    cJSON_Delete(root);
    free(js);
    loadstats_free(st);
    free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_fields_and_consistency),
        cmocka_unit_test(test_json_without_success),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
