/* SPDX-License-Identifier: MIT */
/* app/app_route.c -- request routing for `tandem app`. The path is matched before the id is
 * validated, and the id before the method, so a client learns the most useful error first:
 * 404 (no such resource kind), then 400 (malformed id), then 405 (with Allow). Targets are
 * compared byte for byte: ids are restricted to [A-Za-z0-9_-], so percent-encoding never makes
 * a valid id and needs no decoding. */
#include "app/app_route.h"

#include <string.h>

#include <llhttp.h>

bool app_route_id_is_valid(struct slice id)
{
    if (id.len == 0 || id.len > APP_ROUTE_ID_MAX)
        return false;
    for (size_t i = 0; i < id.len; i++) {
        char c = id.p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* Strips an absolute-form prefix ("http://host") and the query, leaving the path. */
static struct slice path_of(struct slice t)
{
    static const char *const schemes[] = {"http://", "https://"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(schemes[i]);
        if (t.len >= n && strncmp(t.p, schemes[i], n) == 0) {
            const char *slash = memchr(t.p + n, '/', t.len - n);
            if (slash == NULL)
                return SLICE_LIT("/");
            t.len -= (size_t)(slash - t.p);
            t.p = slash;
            break;
        }
    }
    const char *q = memchr(t.p, '?', t.len);
    if (q)
        t.len = (size_t)(q - t.p);
    const char *h = memchr(t.p, '#', t.len);
    if (h)
        t.len = (size_t)(h - t.p);
    return t;
}

static bool has_prefix(struct slice s, const char *prefix, struct slice *rest)
{
    size_t n = strlen(prefix);
    if (s.len < n || memcmp(s.p, prefix, n) != 0)
        return false;
    *rest = slice_of(s.p + n, s.len - n);
    return true;
}

static void set_error(struct app_route *out, int status, const char *error, const char *allow)
{
    out->action = APP_ACT_NONE;
    out->status = status;
    out->error = error;
    out->allow = allow;
}

/* Picks the action for a method among the resource's: GET (and HEAD), PUT, POST, DELETE; an
 * action of APP_ACT_NONE means the method is not allowed. */
static void by_method(struct app_route *out, int method, enum app_action get, enum app_action put,
                      enum app_action post, enum app_action del, const char *allow)
{
    enum app_action a = APP_ACT_NONE;
    switch (method) {
    case HTTP_GET:
        a = get;
        break;
    case HTTP_HEAD:
        a = get;
        out->head = true;
        break;
    case HTTP_PUT:
        a = put;
        break;
    case HTTP_POST:
        a = post;
        break;
    case HTTP_DELETE:
        a = del;
        break;
    default:
        break;
    }
    if (a == APP_ACT_NONE) {
        out->head = false;
        set_error(out, 405, "method not allowed", allow);
        return;
    }
    out->action = a;
    out->status = 0;
    out->error = NULL;
    out->allow = NULL;
}

void app_route_resolve(int method, struct slice target, struct app_route *out)
{
    memset(out, 0, sizeof(*out));
    struct slice path = path_of(target);
    struct slice rest;
    if (slice_eq(path, SLICE_LIT("/healthz"))) {
        by_method(out, method, APP_ACT_HEALTHZ, APP_ACT_NONE, APP_ACT_NONE, APP_ACT_NONE,
                  "GET, HEAD");
        return;
    }
    if (slice_eq(path, SLICE_LIT("/whoami"))) {
        by_method(out, method, APP_ACT_WHOAMI, APP_ACT_NONE, APP_ACT_NONE, APP_ACT_NONE,
                  "GET, HEAD");
        return;
    }
    if (!has_prefix(path, "/users/", &rest)) {
        set_error(out, 404, "not found", NULL);
        return;
    }
    const char *slash = memchr(rest.p, '/', rest.len);
    struct slice id = rest;
    bool balance = false;
    if (slash) {
        id.len = (size_t)(slash - rest.p);
        struct slice tail = slice_of(slash, rest.len - id.len);
        if (!slice_eq(tail, SLICE_LIT("/balance"))) {
            set_error(out, 404, "not found", NULL);
            return;
        }
        balance = true;
    }
    if (!app_route_id_is_valid(id)) {
        set_error(out, 400, "invalid user id: use 1-64 of [A-Za-z0-9_-]", NULL);
        return;
    }
    out->id = id;
    if (balance)
        by_method(out, method, APP_ACT_BALANCE_GET, APP_ACT_NONE, APP_ACT_BALANCE_POST,
                  APP_ACT_NONE, "GET, HEAD, POST");
    else
        by_method(out, method, APP_ACT_USER_GET, APP_ACT_USER_PUT, APP_ACT_NONE,
                  APP_ACT_USER_DELETE, "GET, HEAD, PUT, DELETE");
}

bool app_route_needs_store(enum app_action a)
{
    return a != APP_ACT_NONE && a != APP_ACT_HEALTHZ && a != APP_ACT_WHOAMI;
}

bool app_route_takes_body(enum app_action a)
{
    return a == APP_ACT_USER_PUT || a == APP_ACT_BALANCE_POST;
}

const char *app_route_action_name(enum app_action a)
{
    switch (a) {
    case APP_ACT_NONE:
        return "none";
    case APP_ACT_HEALTHZ:
        return "healthz";
    case APP_ACT_WHOAMI:
        return "whoami";
    case APP_ACT_USER_GET:
        return "user_get";
    case APP_ACT_USER_PUT:
        return "user_put";
    case APP_ACT_USER_DELETE:
        return "user_delete";
    case APP_ACT_BALANCE_GET:
        return "balance_get";
    case APP_ACT_BALANCE_POST:
        return "balance_post";
    }
    return "unknown";
}
