/* SPDX-License-Identifier: MIT */
/* coord/etcd_json.c -- etcd v3 JSON gateway codec: request bodies out, dcs results in.
 *
 * Bodies are written by hand (they are small and fixed in shape); responses are parsed with
 * cJSON. etcd's gateway (grpc-gateway, proto3 JSON) omits fields holding their zero value, so an
 * absent "succeeded" means false, an absent "lease" means none and an absent "TTL" on a
 * keepalive answer means the lease is gone. Every int64 arrives as a decimal JSON string; a
 * number is accepted too. A parse failure is an unknown outcome (DCS_EUNAVAIL), never a guess. */
#include "coord/etcd_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/err.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void etcd_json_b64_encode(struct buf *out, const void *p, size_t n)
{
    const unsigned char *s = p;
    buf_reserve(out, (n + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        char q[4] = {b64_alphabet[v >> 18], b64_alphabet[(v >> 12) & 63],
                     b64_alphabet[(v >> 6) & 63], b64_alphabet[v & 63]};
        buf_append(out, q, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        char q[4] = {b64_alphabet[v >> 18], b64_alphabet[(v >> 12) & 63], '=', '='};
        buf_append(out, q, 4);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        char q[4] = {b64_alphabet[v >> 18], b64_alphabet[(v >> 12) & 63],
                     b64_alphabet[(v >> 6) & 63], '='};
        buf_append(out, q, 4);
    }
}

/* Value of a base64 character, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long etcd_json_b64_decode(const char *in, size_t n, char *out)
{
    if (n % 4 != 0)
        return -EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0) /* data after padding */
                return -EINVAL;
            v[k] = b64_value(c);
            if (v[k] < 0)
                return -EINVAL;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (char)(w >> 16);
        if (pad < 2)
            out[o++] = (char)(w >> 8);
        if (pad < 1)
            out[o++] = (char)w;
    }
    return (long)o;
}

void etcd_json_prefix_end(struct buf *out, struct slice prefix)
{
    size_t n = prefix.len;
    while (n > 0 && (unsigned char)prefix.p[n - 1] == 0xff)
        n--;
    if (n == 0) {
        buf_append(out, "", 1); /* "\0": every key from `key` on */
        return;
    }
    buf_append(out, prefix.p, n - 1);
    char last = (char)((unsigned char)prefix.p[n - 1] + 1);
    buf_append(out, &last, 1);
}

/* Appends "NAME":"BASE64" to body. */
static void put_b64_field(struct buf *body, const char *name, const void *p, size_t n)
{
    buf_printf(body, "\"%s\":\"", name);
    etcd_json_b64_encode(body, p, n);
    buf_append_str(body, "\"");
}

int etcd_json_request(const struct dcs_req *req, const char **path, struct buf *body)
{
    switch (req->op) {
    case DCS_OP_GRANT: {
        uint64_t s = (req->ttl_ms + 999) / 1000;
        if (s == 0)
            s = 1; /* etcd raises it to its own minimum anyway */
        *path = "/v3/lease/grant";
        buf_printf(body, "{\"TTL\":\"%llu\"}", (unsigned long long)s);
        return 0;
    }
    case DCS_OP_KEEPALIVE:
    case DCS_OP_REVOKE:
        if (req->lease == 0 || req->lease > INT64_MAX)
            return -EINVAL;
        *path = req->op == DCS_OP_KEEPALIVE ? "/v3/lease/keepalive" : "/v3/lease/revoke";
        buf_printf(body, "{\"ID\":\"%llu\"}", (unsigned long long)req->lease);
        return 0;
    case DCS_OP_READ: {
        *path = "/v3/kv/range";
        struct buf end;
        buf_init(&end);
        etcd_json_prefix_end(&end, req->prefix);
        buf_append_str(body, "{");
        if (req->prefix.len == 0)
            put_b64_field(body, "key", "", 1); /* with range_end "\0": every key */
        else
            put_b64_field(body, "key", req->prefix.p, req->prefix.len);
        buf_append_str(body, ",");
        put_b64_field(body, "range_end", end.p, end.len);
        buf_append_str(body, "}");
        buf_free(&end);
        return 0;
    }
    case DCS_OP_TXN:
        if (req->ncmp > DCS_TXN_MAX || req->nput > DCS_TXN_MAX)
            return -EINVAL;
        for (size_t i = 0; i < req->ncmp; i++)
            if (req->cmp[i].key.len == 0 || req->cmp[i].rev > INT64_MAX)
                return -EINVAL;
        for (size_t i = 0; i < req->nput; i++)
            if (req->put[i].key.len == 0 || req->put[i].lease > INT64_MAX)
                return -EINVAL;
        *path = "/v3/kv/txn";
        buf_append_str(body, "{\"compare\":[");
        for (size_t i = 0; i < req->ncmp; i++) {
            const struct dcs_cmp *c = &req->cmp[i];
            buf_append_str(body, i ? ",{" : "{");
            put_b64_field(body, "key", c->key.p, c->key.len);
            /* absent: never created (create_revision 0); present: last written at rev */
            if (c->rev == 0)
                buf_append_str(body, ",\"target\":\"CREATE\",\"result\":\"EQUAL\","
                                     "\"create_revision\":\"0\"}");
            else
                buf_printf(body,
                           ",\"target\":\"MOD\",\"result\":\"EQUAL\",\"mod_revision\":\"%llu\"}",
                           (unsigned long long)c->rev);
        }
        buf_append_str(body, "],\"success\":[");
        for (size_t i = 0; i < req->nput; i++) {
            const struct dcs_put *p = &req->put[i];
            buf_append_str(body, i ? "," : "");
            if (p->del) {
                buf_append_str(body, "{\"request_delete_range\":{");
                put_b64_field(body, "key", p->key.p, p->key.len);
                buf_append_str(body, "}}");
                continue;
            }
            buf_append_str(body, "{\"request_put\":{");
            put_b64_field(body, "key", p->key.p, p->key.len);
            buf_append_str(body, ",");
            put_b64_field(body, "value", p->value.p, p->value.len);
            if (p->lease != 0)
                buf_printf(body, ",\"lease\":\"%llu\"", (unsigned long long)p->lease);
            buf_append_str(body, "}}");
        }
        buf_append_str(body, "]}");
        return 0;
    }
    return -EINVAL;
}

/* Reads an int64 field that etcd sends as a decimal string (or, leniently, a number). Returns
 * 1 and sets *out when present and valid, 0 when absent, -1 when malformed or negative. */
static int get_u64(const cJSON *obj, const char *name, uint64_t *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (it == NULL || cJSON_IsNull(it))
        return 0;
    if (cJSON_IsNumber(it)) {
        double d = cJSON_GetNumberValue(it);
        if (d < 0 || d > 9007199254740992.0 || d != (double)(uint64_t)d)
            return -1;
        *out = (uint64_t)d;
        return 1;
    }
    if (!cJSON_IsString(it))
        return -1;
    const char *s = cJSON_GetStringValue(it);
    if (*s == '\0')
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

/* The revision in obj's "header"; 0 when absent. Returns -1 when malformed. */
static int get_header_rev(const cJSON *obj, uint64_t *rev)
{
    *rev = 0;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(obj, "header");
    if (h == NULL)
        return 0;
    if (!cJSON_IsObject(h))
        return -1;
    return get_u64(h, "revision", rev) < 0 ? -1 : 0;
}

/* Copies etcd's error message ("error" string, or "message") into msg; returns it ("" when
 * none). */
static const char *get_error(const cJSON *root, char *msg, size_t msglen)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsObject(e)) /* an error inside a stream: {"error":{"message":...}} */
        e = cJSON_GetObjectItemCaseSensitive(e, "message");
    if (!cJSON_IsString(e))
        e = cJSON_GetObjectItemCaseSensitive(root, "message");
    snprintf(msg, msglen, "%s", cJSON_IsString(e) ? cJSON_GetStringValue(e) : "");
    return msg;
}

static bool is_lease_not_found(const char *msg)
{
    return strstr(msg, "requested lease not found") != NULL;
}

/* Fills a READ result from the kvs array of root. Returns 0 or -1 when malformed. */
static int parse_kvs(const cJSON *root, struct etcd_json_result *out)
{
    const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(root, "kvs");
    if (kvs == NULL)
        return 0; /* no key under the prefix */
    if (!cJSON_IsArray(kvs))
        return -1;
    size_t n = (size_t)cJSON_GetArraySize(kvs);
    size_t room = 0;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, kvs)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(kv, "key");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(kv, "value");
        if (!cJSON_IsObject(kv) || !cJSON_IsString(k) || (v != NULL && !cJSON_IsString(v)))
            return -1;
        room += strlen(cJSON_GetStringValue(k)) / 4 * 3 + 1;
        if (v)
            room += strlen(cJSON_GetStringValue(v)) / 4 * 3 + 1;
    }
    out->kvs = xcalloc(n ? n : 1, sizeof(*out->kvs));
    out->data = xmalloc(room ? room : 1);
    size_t used = 0, i = 0;
    cJSON_ArrayForEach(kv, kvs)
    {
        struct dcs_kv *d = &out->kvs[i++];
        const char *ks = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(kv, "key"));
        long kl = etcd_json_b64_decode(ks, strlen(ks), out->data + used);
        if (kl < 0)
            return -1;
        d->key = slice_of(out->data + used, (size_t)kl);
        used += (size_t)kl;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(kv, "value");
        d->value = slice_of(out->data + used, 0);
        if (v) { /* an empty value is omitted */
            const char *vs = cJSON_GetStringValue(v);
            long vl = etcd_json_b64_decode(vs, strlen(vs), out->data + used);
            if (vl < 0)
                return -1;
            d->value.len = (size_t)vl;
            used += (size_t)vl;
        }
        if (get_u64(kv, "mod_revision", &d->rev) <= 0 || d->rev == 0)
            return -1;
        if (get_u64(kv, "lease", &d->lease) < 0)
            return -1;
    }
    out->res.kvs = out->kvs;
    out->res.nkvs = n;
    return 0;
}

/* The body of a 200 answer for op; returns the dcs status. */
static int parse_ok(enum dcs_op op, const cJSON *root, struct etcd_json_result *out)
{
    struct dcs_result *r = &out->res;
    uint64_t ttl = 0;
    switch (op) {
    case DCS_OP_GRANT:
        if (get_header_rev(root, &r->rev) < 0 || get_u64(root, "ID", &r->lease) <= 0 ||
            r->lease == 0 || get_u64(root, "TTL", &ttl) <= 0 || ttl == 0)
            return DCS_EUNAVAIL;
        r->ttl_ms = ttl * 1000;
        return DCS_OK;
    case DCS_OP_KEEPALIVE: {
        /* a streaming endpoint: the message is wrapped in "result" */
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result");
        if (!cJSON_IsObject(res))
            return DCS_EUNAVAIL;
        if (get_header_rev(res, &r->rev) < 0 || get_u64(res, "ID", &r->lease) < 0)
            return DCS_EUNAVAIL;
        int rc = get_u64(res, "TTL", &ttl);
        if (rc < 0)
            return DCS_EUNAVAIL;
        if (rc == 0 || ttl == 0)
            return DCS_ENOLEASE; /* dcs.h point 4: etcd's way of saying "no such lease" */
        r->ttl_ms = ttl * 1000;
        return DCS_OK;
    }
    case DCS_OP_REVOKE:
        return get_header_rev(root, &r->rev) < 0 ? DCS_EUNAVAIL : DCS_OK;
    case DCS_OP_READ:
        if (get_header_rev(root, &r->rev) < 0 || r->rev == 0 || parse_kvs(root, out) < 0)
            return DCS_EUNAVAIL;
        return DCS_OK;
    case DCS_OP_TXN: {
        if (get_header_rev(root, &r->rev) < 0 || r->rev == 0)
            return DCS_EUNAVAIL;
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "succeeded");
        if (s != NULL && !cJSON_IsBool(s))
            return DCS_EUNAVAIL;
        return cJSON_IsTrue(s) ? DCS_OK : DCS_ECOMPARE;
    }
    }
    return DCS_EUNAVAIL;
}

int etcd_json_response(enum dcs_op op, uint64_t req_id, long http_status, const char *body,
                       size_t len, struct etcd_json_result *out)
{
    memset(out, 0, sizeof(*out));
    out->res.id = req_id;
    out->res.op = op;
    cJSON *root = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    int st = DCS_EUNAVAIL;
    if (root == NULL || !cJSON_IsObject(root)) {
        snprintf(out->msg, sizeof(out->msg), "HTTP %ld, %s", http_status,
                 root ? "unexpected JSON" : "no JSON body");
    } else if (http_status == 200) {
        get_error(root, out->msg, sizeof(out->msg)); /* a stream may carry an error inside */
        st = out->msg[0] ? DCS_EUNAVAIL : parse_ok(op, root, out);
        if (out->msg[0] && is_lease_not_found(out->msg) &&
            (op == DCS_OP_KEEPALIVE || op == DCS_OP_REVOKE || op == DCS_OP_TXN))
            st = DCS_ENOLEASE;
        if (st == DCS_EUNAVAIL && !out->msg[0])
            snprintf(out->msg, sizeof(out->msg), "malformed answer");
    } else {
        get_error(root, out->msg, sizeof(out->msg));
        /* the lease a put named, or the one to revoke, is gone: a definite answer (404) */
        if (is_lease_not_found(out->msg) &&
            (op == DCS_OP_TXN || op == DCS_OP_REVOKE || op == DCS_OP_KEEPALIVE))
            st = DCS_ENOLEASE;
    }
    cJSON_Delete(root);
    if (st != DCS_OK) {
        /* nothing but the status is meaningful on failure */
        uint64_t id = out->res.id;
        free(out->kvs);
        free(out->data);
        out->kvs = NULL;
        out->data = NULL;
        out->res = (struct dcs_result){.id = id, .op = op};
    }
    out->res.status = st;
    return st;
}

void etcd_json_result_free(struct etcd_json_result *r)
{
    free(r->kvs);
    free(r->data);
    r->kvs = NULL;
    r->data = NULL;
    r->res.kvs = NULL;
    r->res.nkvs = 0;
}

void etcd_json_watch_request(struct slice prefix, uint64_t start_rev, struct buf *body)
{
    struct buf end;
    buf_init(&end);
    etcd_json_prefix_end(&end, prefix);
    buf_append_str(body, "{\"create_request\":{");
    if (prefix.len == 0)
        put_b64_field(body, "key", "", 1);
    else
        put_b64_field(body, "key", prefix.p, prefix.len);
    buf_append_str(body, ",");
    put_b64_field(body, "range_end", end.p, end.len);
    if (start_rev)
        buf_printf(body, ",\"start_revision\":\"%llu\"", (unsigned long long)start_rev);
    buf_append_str(body, "}}");
    buf_free(&end);
}

/* Accumulates one line of the watch stream into m. Returns 0 or TD_ECORRUPT. */
static int watch_line(const char *p, size_t n, struct etcd_json_watch_msg *m)
{
    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' '))
        n--;
    if (n == 0)
        return 0;
    cJSON *root = cJSON_ParseWithLength(p, n);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return TD_ECORRUPT;
    }
    int rc = 0;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result");
    if (cJSON_GetObjectItemCaseSensitive(root, "error") != NULL) {
        get_error(root, m->msg, sizeof(m->msg));
        m->ended = true;
    } else if (!cJSON_IsObject(res)) {
        rc = TD_ECORRUPT;
    } else {
        uint64_t rev;
        if (get_header_rev(res, &rev) < 0) {
            rc = TD_ECORRUPT;
        } else if (rev > m->rev) {
            m->rev = rev;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "created")))
            m->created++;
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(res, "events");
        if (cJSON_IsArray(ev))
            m->events += (unsigned)cJSON_GetArraySize(ev);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res, "canceled"))) {
            const cJSON *why = cJSON_GetObjectItemCaseSensitive(res, "cancel_reason");
            snprintf(m->msg, sizeof(m->msg), "canceled: %s",
                     cJSON_IsString(why) ? cJSON_GetStringValue(why) : "");
            m->ended = true;
        }
    }
    cJSON_Delete(root);
    return rc;
}

int etcd_json_watch_feed(struct buf *acc, const char *p, size_t n, struct etcd_json_watch_msg *m)
{
    buf_append(acc, p, n);
    size_t start = 0;
    for (;;) {
        const char *nl = acc->len > start ? memchr(acc->p + start, '\n', acc->len - start) : NULL;
        if (nl == NULL)
            break;
        size_t end = (size_t)(nl - acc->p);
        int rc = watch_line(acc->p + start, end - start, m);
        if (rc < 0) {
            buf_consume(acc, acc->len);
            return rc;
        }
        start = end + 1;
    }
    buf_consume(acc, start);
    if (acc->len > ETCD_JSON_WATCH_LINE_MAX) {
        buf_consume(acc, acc->len);
        return TD_ECORRUPT;
    }
    return 0;
}
