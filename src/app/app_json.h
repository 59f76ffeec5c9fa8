/* SPDX-License-Identifier: MIT */
/* app/app_json.h -- the example app's request validation and response bodies (cJSON), pure:
 * no I/O, no clock. Every builder appends one JSON document to a struct buf. */
#ifndef TD_APP_APP_JSON_H
#define TD_APP_APP_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"

/* Deltas are JSON numbers, which cJSON holds as doubles: only integers a double represents
 * exactly are accepted (the same bound JavaScript calls MAX_SAFE_INTEGER). */
#define APP_JSON_DELTA_MAX 9007199254740991LL
#define APP_JSON_IDEM_KEY_MAX 255

/* Validates a user document: UTF-8 JSON whose top-level value is an object. On success appends
 * the document with insignificant whitespace removed to out (numbers and strings byte for byte
 * as sent) and returns 0; otherwise returns -EINVAL and sets *why to a static reason. */
int app_json_user_parse(struct slice body, struct buf *out, const char **why);
/* Parses {"delta": N} with N an integer within +-APP_JSON_DELTA_MAX; other members are
 * ignored, a repeated "delta" is refused. Returns 0 or -EINVAL with *why set. */
int app_json_delta_parse(struct slice body, int64_t *delta, const char **why);
/* True when key is 1-255 visible ASCII characters (0x21-0x7e). */
bool app_json_idem_key_is_valid(struct slice key);
/* Strict decimal int64 ("-12"; no sign-only, spaces or overflow). Returns 0 or -EINVAL. */
int app_json_parse_int64(struct slice s, int64_t *out);

/* {"status":"ok","name":NAME} */
void app_json_health(struct buf *out, const char *name);
/* {"name":NAME} */
void app_json_whoami(struct buf *out, const char *name);
/* {"id":ID,"balance":N} with N exact (not through a double). */
void app_json_balance(struct buf *out, struct slice id, int64_t balance);
/* {"id":ID,"deleted":true} */
void app_json_deleted(struct buf *out, struct slice id);
/* {"error":ERROR} plus "detail":DETAIL and "id":ID when not NULL / not empty. */
void app_json_error(struct buf *out, const char *error, const char *detail, struct slice id);

/* The stored outcome of a request carrying an Idempotency-Key: which request it was (user id,
 * delta) and the response it got (status, body), so a repeat gets the same response and a key
 * reused for a different request is detected. */
struct app_json_idem {
    char id[65];
    int64_t delta;
    int status;
    struct buf body; /* owned by the caller: buf_free it */
};

/* Appends the record for (id, delta, status, body) to out. */
void app_json_idem_encode(struct buf *out, struct slice id, int64_t delta, int status,
                          struct slice body);
/* Parses a record written by app_json_idem_encode into rec (rec->body must be initialised; the
 * response body is appended to it). Returns 0 or -EINVAL for anything else. */
int app_json_idem_decode(struct slice s, struct app_json_idem *rec);

/* What a keyed balance update does, decided from what its read batch found. */
enum app_idem_verdict {
    APP_IDEM_APPLY = 0,   /* no record: write the balance *next with the record */
    APP_IDEM_REPLAY,      /* the record of this very request: answer *rec again */
    APP_IDEM_MISMATCH,    /* the key's record belongs to another request (422) */
    APP_IDEM_BAD_RECORD,  /* the record cannot be read (500) */
    APP_IDEM_BAD_BALANCE, /* the stored balance is not an integer (500) */
    APP_IDEM_OVERFLOW,    /* balance + delta would leave int64 (409) */
};

/* Decides a keyed update of user id by delta. record is the key's stored record and balance
 * the stored balance, each NULL when absent (a missing balance is 0). rec (body initialised)
 * is filled for REPLAY; *next is set for APPLY. */
enum app_idem_verdict app_json_idem_decide(const struct slice *record,
                                           const struct slice *balance, struct slice id,
                                           int64_t delta, struct app_json_idem *rec,
                                           int64_t *next);

#endif
