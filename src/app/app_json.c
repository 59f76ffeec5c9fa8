/* SPDX-License-Identifier: MIT */
/* app/app_json.c -- request validation and response bodies for `tandem app`, built on cJSON.
 * Input is untrusted: bodies are copied and NUL-terminated before cJSON sees them, an embedded
 * NUL or invalid UTF-8 is refused, and trailing bytes after the JSON value are an error. Output
 * that carries int64 values (balances, deltas) is written as raw number text so it never goes
 * through a double. cJSON returns NULL only when allocation fails; that is fail-stop here, as
 * everywhere in tandem. */
#include "app/app_json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"

static cJSON *must(cJSON *j)
{
    if (j == NULL)
        td_panic("cJSON: out of memory");
    return j;
}

/* Appends the compact text of j to out and deletes j. */
static void emit(struct buf *out, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (s == NULL)
        td_panic("cJSON: out of memory");
    buf_append_str(out, s);
    cJSON_free(s);
    cJSON_Delete(j);
}

/* Adds a string member from a slice (cJSON wants NUL-terminated strings). */
static void add_slice(cJSON *obj, const char *name, struct slice v)
{
    char *s = xstrndup(v.p ? v.p : "", v.len);
    must(cJSON_AddStringToObject(obj, name, s));
    free(s);
}

static void add_int64(cJSON *obj, const char *name, int64_t v)
{
    char num[32];
    snprintf(num, sizeof(num), "%" PRId64, v);
    must(cJSON_AddRawToObject(obj, name, num));
}

/* RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_is_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned min, cp;
        if ((c & 0xe0) == 0xc0) {
            need = 1, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i - 1 < need)
            return false;
        for (size_t k = 1; k <= need; k++) {
            unsigned cc = p[i + k];
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

/* Parses body as one complete JSON value. Returns the tree (owned) or NULL with *why set;
 * *text receives the NUL-terminated copy (owned) when text is not NULL. */
static cJSON *parse_body(struct slice body, char **text, const char **why)
{
    if (body.len == 0) {
        *why = "empty body: expected a JSON object";
        return NULL;
    }
    if (memchr(body.p, '\0', body.len) != NULL || !utf8_is_valid((const void *)body.p, body.len)) {
        *why = "body is not UTF-8 JSON text";
        return NULL;
    }
    char *s = xstrndup(body.p, body.len);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(s, &end, 1);
    if (j == NULL) {
        *why = "malformed JSON";
        free(s);
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        *why = "expected a JSON object";
        cJSON_Delete(j);
        free(s);
        return NULL;
    }
    if (text)
        *text = s;
    else
        free(s);
    return j;
}

int app_json_user_parse(struct slice body, struct buf *out, const char **why)
{
    char *text = NULL;
    cJSON *j = parse_body(body, &text, why);
    if (j == NULL)
        return -EINVAL;
    cJSON_Delete(j);
    /* Minify only drops whitespace (and comments, which the parser has already refused). */
    cJSON_Minify(text);
    buf_append_str(out, text);
    free(text);
    return 0;
}

int app_json_delta_parse(struct slice body, int64_t *delta, const char **why)
{
    cJSON *j = parse_body(body, NULL, why);
    if (j == NULL)
        return -EINVAL;
    const cJSON *d = NULL;
    int seen = 0;
    for (const cJSON *it = j->child; it; it = it->next) {
        if (it->string && strcmp(it->string, "delta") == 0) {
            d = it;
            seen++;
        }
    }
    int rc = -EINVAL;
    if (seen == 0) {
        *why = "missing \"delta\"";
    } else if (seen > 1) {
        *why = "\"delta\" given more than once";
    } else if (!cJSON_IsNumber(d)) {
        *why = "\"delta\" must be an integer";
    } else {
        double v = d->valuedouble;
        if (!isfinite(v) || v != trunc(v)) {
            *why = "\"delta\" must be an integer";
        } else if (fabs(v) > (double)APP_JSON_DELTA_MAX) {
            *why = "\"delta\" out of range (|delta| <= 9007199254740991)";
        } else {
            *delta = (int64_t)v;
            rc = 0;
        }
    }
    cJSON_Delete(j);
    return rc;
}

bool app_json_idem_key_is_valid(struct slice key)
{
    if (key.len == 0 || key.len > APP_JSON_IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < key.len; i++) {
        unsigned char c = (unsigned char)key.p[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

int app_json_parse_int64(struct slice s, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (s.len > 0 && s.p[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == s.len || s.len > 20)
        return -EINVAL;
    uint64_t v = 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < s.len; i++) {
        char c = s.p[i];
        if (c < '0' || c > '9')
            return -EINVAL;
        uint64_t dgt = (uint64_t)(c - '0');
        if (v > (limit - dgt) / 10)
            return -EINVAL;
        v = v * 10 + dgt;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

void app_json_health(struct buf *out, const char *name)
{
    cJSON *o = must(cJSON_CreateObject());
    must(cJSON_AddStringToObject(o, "status", "ok"));
    must(cJSON_AddStringToObject(o, "name", name));
    emit(out, o);
}

void app_json_whoami(struct buf *out, const char *name)
{
    cJSON *o = must(cJSON_CreateObject());
    must(cJSON_AddStringToObject(o, "name", name));
    emit(out, o);
}

void app_json_balance(struct buf *out, struct slice id, int64_t balance)
{
    cJSON *o = must(cJSON_CreateObject());
    add_slice(o, "id", id);
    add_int64(o, "balance", balance);
    emit(out, o);
}

void app_json_deleted(struct buf *out, struct slice id)
{
    cJSON *o = must(cJSON_CreateObject());
    add_slice(o, "id", id);
    must(cJSON_AddTrueToObject(o, "deleted"));
    emit(out, o);
}

void app_json_error(struct buf *out, const char *error, const char *detail, struct slice id)
{
    cJSON *o = must(cJSON_CreateObject());
    must(cJSON_AddStringToObject(o, "error", error));
    if (detail)
        must(cJSON_AddStringToObject(o, "detail", detail));
    if (id.len)
        add_slice(o, "id", id);
    emit(out, o);
}

void app_json_idem_encode(struct buf *out, struct slice id, int64_t delta, int status,
                          struct slice body)
{
    cJSON *o = must(cJSON_CreateObject());
    add_slice(o, "id", id);
    add_int64(o, "delta", delta);
    add_int64(o, "status", status);
    add_slice(o, "body", body);
    emit(out, o);
}

int app_json_idem_decode(struct slice s, struct app_json_idem *rec)
{
    const char *why;
    cJSON *j = parse_body(s, NULL, &why);
    if (j == NULL)
        return -EINVAL;
    int rc = -EINVAL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(j, "delta");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(j, "status");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(j, "body");
    if (cJSON_IsString(id) && cJSON_IsNumber(delta) && cJSON_IsNumber(status) &&
        cJSON_IsString(body) && strlen(id->valuestring) < sizeof(rec->id) &&
        fabs(delta->valuedouble) <= (double)APP_JSON_DELTA_MAX && status->valuedouble >= 100 &&
        status->valuedouble <= 599) {
        snprintf(rec->id, sizeof(rec->id), "%s", id->valuestring);
        rec->delta = (int64_t)delta->valuedouble;
        rec->status = (int)status->valuedouble;
        buf_append_str(&rec->body, body->valuestring);
        rc = 0;
    }
    cJSON_Delete(j);
    return rc;
}

enum app_idem_verdict app_json_idem_decide(const struct slice *record,
                                           const struct slice *balance, struct slice id,
                                           int64_t delta, struct app_json_idem *rec,
                                           int64_t *next)
{
    if (record) {
        if (app_json_idem_decode(*record, rec) != 0)
            return APP_IDEM_BAD_RECORD;
        if (strlen(rec->id) != id.len || memcmp(rec->id, id.p, id.len) != 0 ||
            rec->delta != delta)
            return APP_IDEM_MISMATCH;
        return APP_IDEM_REPLAY;
    }
    int64_t cur = 0;
    if (balance && app_json_parse_int64(*balance, &cur) != 0)
        return APP_IDEM_BAD_BALANCE;
    if (__builtin_add_overflow(cur, delta, next))
        return APP_IDEM_OVERFLOW;
    return APP_IDEM_APPLY;
}
