/* SPDX-License-Identifier: MIT */
/* Unit tests for app/app_route.c: paths, ids, methods and the order of refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include <llhttp.h>

#include "app/app_route.h"

static struct app_route resolve(int method, const char *target)
{
    struct app_route r;
    app_route_resolve(method, slice_cstr(target), &r);
    return r;
}

static void assert_id(const struct app_route *r, const char *id)
{
    assert_int_equal(r->id.len, strlen(id));
    assert_memory_equal(r->id.p, id, r->id.len);
}

static void test_id_validation(void **state)
{
    (void)state;
    assert_true(app_route_id_is_valid(SLICE_LIT("a")));
    assert_true(app_route_id_is_valid(SLICE_LIT("User_42-x")));
    char max[APP_ROUTE_ID_MAX + 1];
    memset(max, 'z', sizeof(max));
    assert_true(app_route_id_is_valid(slice_of(max, APP_ROUTE_ID_MAX)));
    assert_false(app_route_id_is_valid(slice_of(max, APP_ROUTE_ID_MAX + 1)));
    assert_false(app_route_id_is_valid(SLICE_LIT("")));
    assert_false(app_route_id_is_valid(SLICE_LIT("a.b")));
    assert_false(app_route_id_is_valid(SLICE_LIT("a%20b")));
    assert_false(app_route_id_is_valid(SLICE_LIT("a b")));
    assert_false(app_route_id_is_valid(SLICE_LIT("é")));
    assert_false(app_route_id_is_valid(slice_of("a\0b", 3)));
}

static void test_fixed_paths(void **state)
{
    (void)state;
    struct app_route r = resolve(HTTP_GET, "/healthz");
    assert_int_equal(r.action, APP_ACT_HEALTHZ);
    assert_int_equal(r.status, 0);
    assert_false(r.head);
    r = resolve(HTTP_HEAD, "/healthz");
    assert_int_equal(r.action, APP_ACT_HEALTHZ);
    assert_true(r.head);
    r = resolve(HTTP_GET, "/whoami?x=1");
    assert_int_equal(r.action, APP_ACT_WHOAMI);
    r = resolve(HTTP_POST, "/whoami");
    assert_int_equal(r.action, APP_ACT_NONE);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET, HEAD");
    assert_false(r.head);
    r = resolve(HTTP_GET, "/healthz/");
    assert_int_equal(r.status, 404);
    r = resolve(HTTP_GET, "/");
    assert_int_equal(r.status, 404);
    r = resolve(HTTP_GET, "/HEALTHZ");
    assert_int_equal(r.status, 404);
    r = resolve(HTTP_GET, "http://example.com/healthz");
    assert_int_equal(r.action, APP_ACT_HEALTHZ);
    r = resolve(HTTP_GET, "http://example.com");
    assert_int_equal(r.status, 404);
}

static void test_users(void **state)
{
    (void)state;
    struct app_route r = resolve(HTTP_GET, "/users/u1");
    assert_int_equal(r.action, APP_ACT_USER_GET);
    assert_id(&r, "u1");
    r = resolve(HTTP_PUT, "/users/u1?pretty");
    assert_int_equal(r.action, APP_ACT_USER_PUT);
    assert_id(&r, "u1");
    r = resolve(HTTP_DELETE, "/users/u1");
    assert_int_equal(r.action, APP_ACT_USER_DELETE);
    r = resolve(HTTP_HEAD, "/users/u1");
    assert_int_equal(r.action, APP_ACT_USER_GET);
    assert_true(r.head);
    r = resolve(HTTP_POST, "/users/u1");
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET, HEAD, PUT, DELETE");
    r = resolve(HTTP_GET, "/users/u1/balance");
    assert_int_equal(r.action, APP_ACT_BALANCE_GET);
    assert_id(&r, "u1");
    r = resolve(HTTP_POST, "/users/u-1_X/balance");
    assert_int_equal(r.action, APP_ACT_BALANCE_POST);
    assert_id(&r, "u-1_X");
    r = resolve(HTTP_PUT, "/users/u1/balance");
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET, HEAD, POST");
    r = resolve(HTTP_OPTIONS, "/users/u1/balance");
    assert_int_equal(r.status, 405);
}

static void test_refusal_order(void **state)
{
    (void)state;
    /* unknown shapes are 404 whatever the id */
    assert_int_equal(resolve(HTTP_GET, "/users").status, 404);
    assert_int_equal(resolve(HTTP_GET, "/users/u1/").status, 404);
    assert_int_equal(resolve(HTTP_GET, "/users/u1/balance/").status, 404);
    assert_int_equal(resolve(HTTP_GET, "/users/u1/other").status, 404);
    assert_int_equal(resolve(HTTP_GET, "/users/bad!/other").status, 404);
    assert_int_equal(resolve(HTTP_GET, "/userz/u1").status, 404);
    /* a known shape with a bad id is 400, before the method is looked at */
    struct app_route r = resolve(HTTP_GET, "/users/");
    assert_int_equal(r.status, 400);
    assert_int_equal(r.id.len, 0);
    assert_int_equal(resolve(HTTP_GET, "/users//balance").status, 400);
    assert_int_equal(resolve(HTTP_GET, "/users/a.b").status, 400);
    assert_int_equal(resolve(HTTP_PATCH, "/users/a%2Fb/balance").status, 400);
    char longid[128] = "/users/";
    memset(longid + 7, 'a', 65);
    assert_int_equal(resolve(HTTP_GET, longid).status, 400);
    longid[7 + 64] = '\0';
    assert_int_equal(resolve(HTTP_GET, longid).action, APP_ACT_USER_GET);
    /* then 405 */
    assert_int_equal(resolve(HTTP_PATCH, "/users/ok").status, 405);
}

static void test_action_properties(void **state)
{
    (void)state;
    assert_false(app_route_needs_store(APP_ACT_HEALTHZ));
    assert_false(app_route_needs_store(APP_ACT_WHOAMI));
    assert_false(app_route_needs_store(APP_ACT_NONE));
    assert_true(app_route_needs_store(APP_ACT_USER_GET));
    assert_true(app_route_needs_store(APP_ACT_BALANCE_POST));
    assert_true(app_route_takes_body(APP_ACT_USER_PUT));
    assert_true(app_route_takes_body(APP_ACT_BALANCE_POST));
    assert_false(app_route_takes_body(APP_ACT_USER_GET));
    assert_string_equal(app_route_action_name(APP_ACT_BALANCE_POST), "balance_post");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_validation),
        cmocka_unit_test(test_fixed_paths),
        cmocka_unit_test(test_users),
        cmocka_unit_test(test_refusal_order),
        cmocka_unit_test(test_action_properties),
    };
    return cmocka_run_group_tests_name("app_route", tests, NULL, NULL);
}
