/* SPDX-License-Identifier: MIT */
/* app/app_route.h -- the example app's routing table as a pure function: method + request
 * target in, the action to take (or the error status to answer) out. No I/O. */
#ifndef TD_APP_APP_ROUTE_H
#define TD_APP_APP_ROUTE_H

#include <stdbool.h>

#include "base/buf.h"

#define APP_ROUTE_ID_MAX 64

enum app_action {
    APP_ACT_NONE = 0, /* answer route.status with route.error */
    APP_ACT_HEALTHZ,
    APP_ACT_WHOAMI,
    APP_ACT_USER_GET,
    APP_ACT_USER_PUT,
    APP_ACT_USER_DELETE,
    APP_ACT_BALANCE_GET,
    APP_ACT_BALANCE_POST,
};

struct app_route {
    enum app_action action;
    int status;        /* 0 when action is set; 400, 404 or 405 otherwise */
    const char *error; /* static message for the error body; NULL when action is set */
    const char *allow; /* for 405: the Allow header value (static) */
    bool head;         /* a HEAD request: answer as GET without the body */
    struct slice id;   /* the user id, borrowed from the target; len 0 when none */
};

/* True when id matches [A-Za-z0-9_-]{1,64}. */
bool app_route_id_is_valid(struct slice id);
/* Resolves method (an llhttp method number) and target (the request-target as received: origin
 * form, optionally with a query, or absolute form) into out. Never fails: unknown paths give
 * 404, bad ids 400, wrong methods 405. out->id borrows from target. */
void app_route_resolve(int method, struct slice target, struct app_route *out);
/* True when the action reads or writes the store. */
bool app_route_needs_store(enum app_action a);
/* True when the action takes a request body. */
bool app_route_takes_body(enum app_action a);
/* A short name for logs ("balance_post"). */
const char *app_route_action_name(enum app_action a);

#endif
