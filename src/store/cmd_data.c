/* SPDX-License-Identifier: MIT */
/* store/cmd_data.c -- the data commands: strings, keys and expiry, hashes. Each one follows
 * Redis 7's argument rules and replies, and records what it changed as one resolved record
 * (store/persist.h) through log_rec()/log_set(), only when it changed something. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/cmd_impl.h"
#include "store/db.h"

/* --- string commands --- */

/* Replies with the string value of argv[1]: null when absent, WRONGTYPE when not a string.
 * Returns true when a value was sent. */
static bool reply_string(struct call *c)
{
    struct kentry *e = lookup_read(c, c->argv[1]);
    if (e == NULL) {
        resp_add_null(c->out);
        return false;
    }
    if (kentry_type(e) != KEYSPACE_STRING) {
        reply_err(c->out, ERR_WRONGTYPE);
        return false;
    }
    struct slice v = kentry_str(e);
    resp_add_bulk(c->out, v.p, v.len);
    return true;
}

void cmd_data_get(struct call *c)
{
    reply_string(c);
}

#define SET_NX 0x1u
#define SET_XX 0x2u
#define SET_GET 0x4u
#define SET_KEEPTTL 0x8u
#define SET_EX 0x10u
#define SET_PX 0x20u
#define SET_EXAT 0x40u
#define SET_PXAT 0x80u
#define SET_ANY_EXP (SET_EX | SET_PX | SET_EXAT | SET_PXAT)

/* Converts a SET/EXPIRE-style time argument into absolute ms. Returns false after replying. */
static bool set_expire_ms(struct call *c, struct slice arg, unsigned unit_flag, int64_t *abs_ms)
{
    int64_t v;
    if (!parse_int_arg(arg, &v)) {
        reply_err(c->out, ERR_NOTINT);
        return false;
    }
    bool seconds = unit_flag & (SET_EX | SET_EXAT);
    if (v <= 0 || (seconds && v > INT64_MAX / 1000)) {
        reply_err(c->out, "ERR invalid expire time in 'set' command");
        return false;
    }
    if (seconds)
        v *= 1000;
    if (unit_flag & (SET_EX | SET_PX)) {
        int64_t now = c->now;
        if (v > INT64_MAX - now) {
            reply_err(c->out, "ERR invalid expire time in 'set' command");
            return false;
        }
        v += now;
    }
    *abs_ms = v;
    return true;
}

static void log_set(struct call *c, struct slice key, struct slice val, int64_t expire,
                    bool keepttl)
{
    if (!db_is_logging(c->db)) {
        db_touch_key(c->db, key);
        return;
    }
    char num[24];
    struct slice rv[5] = {SLICE_LIT("SET"), key, val, {0, 0}, {0, 0}};
    int n = 3;
    if (keepttl) {
        rv[n++] = SLICE_LIT("KEEPTTL");
    } else if (expire >= 0) {
        rv[n++] = SLICE_LIT("PXAT");
        rv[n++] = slice_of(num, resp_fmt_int(num, expire));
    }
    log_rec(c, n, rv);
}

void cmd_data_set(struct call *c)
{
    struct slice key = c->argv[1], val = c->argv[2];
    if (c->argc == 3) {
        /* The common case: no options. */
        keyspace_set_str(c->ks, key, val, KEYSPACE_NO_EXPIRE);
        log_set(c, key, val, KEYSPACE_NO_EXPIRE, false);
        reply_ok(c->out);
        return;
    }
    unsigned flags = 0, unit = 0;
    const struct slice *exp_arg = NULL;
    for (int j = 3; j < c->argc; j++) {
        struct slice o = c->argv[j];
        bool has_next = j + 1 < c->argc;
        if (arg_is(o, "nx") && !(flags & SET_XX)) {
            flags |= SET_NX;
        } else if (arg_is(o, "xx") && !(flags & SET_NX)) {
            flags |= SET_XX;
        } else if (arg_is(o, "get")) {
            flags |= SET_GET;
        } else if (arg_is(o, "keepttl") && !(flags & SET_ANY_EXP)) {
            flags |= SET_KEEPTTL;
        } else if (has_next && arg_is(o, "ex") &&
                   !(flags & (SET_KEEPTTL | SET_PX | SET_EXAT | SET_PXAT))) {
            flags |= SET_EX;
            unit = SET_EX;
            exp_arg = &c->argv[++j];
        } else if (has_next && arg_is(o, "px") &&
                   !(flags & (SET_KEEPTTL | SET_EX | SET_EXAT | SET_PXAT))) {
            flags |= SET_PX;
            unit = SET_PX;
            exp_arg = &c->argv[++j];
        } else if (has_next && arg_is(o, "exat") &&
                   !(flags & (SET_KEEPTTL | SET_EX | SET_PX | SET_PXAT))) {
            flags |= SET_EXAT;
            unit = SET_EXAT;
            exp_arg = &c->argv[++j];
        } else if (has_next && arg_is(o, "pxat") &&
                   !(flags & (SET_KEEPTTL | SET_EX | SET_PX | SET_EXAT))) {
            flags |= SET_PXAT;
            unit = SET_PXAT;
            exp_arg = &c->argv[++j];
        } else {
            reply_err(c->out, ERR_SYNTAX);
            return;
        }
    }
    int64_t expire = KEYSPACE_NO_EXPIRE;
    if (exp_arg && !set_expire_ms(c, *exp_arg, unit, &expire))
        return;
    struct kentry *e = lookup_write(c, key);
    if (flags & SET_GET) {
        if (e && kentry_type(e) != KEYSPACE_STRING) {
            reply_err(c->out, ERR_WRONGTYPE);
            return;
        }
        if (e) {
            struct slice v = kentry_str(e);
            resp_add_bulk(c->out, v.p, v.len);
        } else {
            resp_add_null(c->out);
        }
    }
    if (((flags & SET_NX) && e) || ((flags & SET_XX) && !e)) {
        if (!(flags & SET_GET))
            resp_add_null(c->out);
        return;
    }
    bool keepttl = (flags & SET_KEEPTTL) != 0;
    bool had_ttl = e && kentry_expire(e) >= 0; /* e may be freed by the set below */
    keyspace_set_str(c->ks, key, val, keepttl ? KEYSPACE_KEEP_TTL : expire);
    log_set(c, key, val, expire, keepttl && had_ttl);
    if (!(flags & SET_GET))
        reply_ok(c->out);
}

void cmd_data_setnx(struct call *c)
{
    if (lookup_write(c, c->argv[1])) {
        reply_zero(c->out);
        return;
    }
    keyspace_set_str(c->ks, c->argv[1], c->argv[2], KEYSPACE_NO_EXPIRE);
    log_set(c, c->argv[1], c->argv[2], KEYSPACE_NO_EXPIRE, false);
    reply_one(c->out);
}

static void log_del1(struct call *c, struct slice key)
{
    struct slice rv[2] = {SLICE_LIT("DEL"), key};
    log_rec(c, 2, rv);
}

void cmd_data_getdel(struct call *c)
{
    if (!reply_string(c))
        return;
    keyspace_del(c->ks, c->argv[1]);
    log_del1(c, c->argv[1]);
}

void cmd_data_del(struct call *c)
{
    struct slice *rv = rv_get(c->env, (size_t)c->argc);
    int n = 1;
    rv[0] = SLICE_LIT("DEL");
    for (int j = 1; j < c->argc; j++) {
        if (lookup_write(c, c->argv[j]) && keyspace_del(c->ks, c->argv[j]))
            rv[n++] = c->argv[j];
    }
    if (n > 1)
        log_rec(c, n, rv);
    resp_add_int(c->out, n - 1);
}

void cmd_data_exists(struct call *c)
{
    int64_t n = 0;
    for (int j = 1; j < c->argc; j++)
        if (lookup_read(c, c->argv[j]))
            n++;
    resp_add_int(c->out, n);
}

/* Adds delta to the integer at key; replies the new value. */
static void incr_by(struct call *c, struct slice key, int64_t delta)
{
    struct kentry *e = lookup_write(c, key);
    int64_t cur = 0;
    if (e) {
        if (kentry_type(e) != KEYSPACE_STRING) {
            reply_err(c->out, ERR_WRONGTYPE);
            return;
        }
        struct slice v = kentry_str(e);
        if (!resp_parse_int(v.p, v.len, &cur)) {
            reply_err(c->out, ERR_NOTINT);
            return;
        }
    }
    if ((delta < 0 && cur < 0 && delta < INT64_MIN - cur) ||
        (delta > 0 && cur > 0 && delta > INT64_MAX - cur)) {
        reply_err(c->out, ERR_OVERFLOW);
        return;
    }
    int64_t nv = cur + delta;
    char num[24];
    struct slice sv = slice_of(num, resp_fmt_int(num, nv));
    bool had_ttl = e && kentry_expire(e) >= 0; /* e may be freed by the set below */
    keyspace_set_str(c->ks, key, sv, KEYSPACE_KEEP_TTL);
    log_set(c, key, sv, KEYSPACE_NO_EXPIRE, had_ttl);
    resp_add_int(c->out, nv);
}

void cmd_data_incr(struct call *c)
{
    incr_by(c, c->argv[1], 1);
}

void cmd_data_decr(struct call *c)
{
    incr_by(c, c->argv[1], -1);
}

void cmd_data_incrby(struct call *c)
{
    int64_t d;
    if (!parse_int_arg(c->argv[2], &d)) {
        reply_err(c->out, ERR_NOTINT);
        return;
    }
    incr_by(c, c->argv[1], d);
}

void cmd_data_decrby(struct call *c)
{
    int64_t d;
    if (!parse_int_arg(c->argv[2], &d)) {
        reply_err(c->out, ERR_NOTINT);
        return;
    }
    if (d == INT64_MIN) {
        reply_err(c->out, "ERR decrement would overflow");
        return;
    }
    incr_by(c, c->argv[1], -d);
}

static uint64_t max_bulk(const struct call *c)
{
    return c->db->cfg ? c->db->cfg->max_bulk : 512ull << 20;
}

void cmd_data_append(struct call *c)
{
    struct slice key = c->argv[1], suffix = c->argv[2];
    struct kentry *e = lookup_write(c, key);
    if (e == NULL) {
        keyspace_set_str(c->ks, key, suffix, KEYSPACE_NO_EXPIRE);
        log_set(c, key, suffix, KEYSPACE_NO_EXPIRE, false);
        resp_add_int(c->out, (int64_t)suffix.len);
        return;
    }
    if (kentry_type(e) != KEYSPACE_STRING) {
        reply_err(c->out, ERR_WRONGTYPE);
        return;
    }
    if (kentry_str(e).len + suffix.len > max_bulk(c)) {
        reply_err(c->out, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return;
    }
    bool had_ttl = kentry_expire(e) >= 0;
    e = keyspace_append(c->ks, key, suffix);
    struct slice v = kentry_str(e);
    /* Logged as the whole new value, so that the record is idempotent. */
    log_set(c, key, v, KEYSPACE_NO_EXPIRE, had_ttl);
    resp_add_int(c->out, (int64_t)v.len);
}

void cmd_data_strlen(struct call *c)
{
    struct kentry *e = lookup_read(c, c->argv[1]);
    if (e == NULL) {
        reply_zero(c->out);
        return;
    }
    if (kentry_type(e) != KEYSPACE_STRING) {
        reply_err(c->out, ERR_WRONGTYPE);
        return;
    }
    resp_add_int(c->out, (int64_t)kentry_str(e).len);
}

void cmd_data_mget(struct call *c)
{
    resp_add_array(c->out, c->argc - 1);
    for (int j = 1; j < c->argc; j++) {
        struct kentry *e = lookup_read(c, c->argv[j]);
        if (e == NULL || kentry_type(e) != KEYSPACE_STRING) {
            resp_add_null(c->out);
            continue;
        }
        struct slice v = kentry_str(e);
        resp_add_bulk(c->out, v.p, v.len);
    }
}

void cmd_data_mset(struct call *c)
{
    if (c->argc % 2 == 0) {
        cmd_arity_error(c);
        return;
    }
    for (int j = 1; j < c->argc; j += 2)
        keyspace_set_str(c->ks, c->argv[j], c->argv[j + 1], KEYSPACE_NO_EXPIRE);
    struct slice *rv = rv_get(c->env, (size_t)c->argc);
    rv[0] = SLICE_LIT("MSET");
    memcpy(rv + 1, c->argv + 1, (size_t)(c->argc - 1) * sizeof(*rv));
    log_rec(c, c->argc, rv);
    reply_ok(c->out);
}

/* --- keyspace commands --- */

#define EXP_NX 0x1u
#define EXP_XX 0x2u
#define EXP_GT 0x4u
#define EXP_LT 0x8u

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT. */
static void expire_generic(struct call *c, int64_t basetime, bool seconds)
{
    unsigned flags = 0;
    for (int j = 3; j < c->argc; j++) {
        struct slice o = c->argv[j];
        if (arg_is(o, "nx"))
            flags |= EXP_NX;
        else if (arg_is(o, "xx"))
            flags |= EXP_XX;
        else if (arg_is(o, "gt"))
            flags |= EXP_GT;
        else if (arg_is(o, "lt"))
            flags |= EXP_LT;
        else {
            resp_add_errorf(c->out, "ERR Unsupported option %.*s", (int)o.len, o.p);
            return;
        }
    }
    if ((flags & EXP_NX) && (flags & (EXP_XX | EXP_GT | EXP_LT))) {
        reply_err(c->out, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if ((flags & EXP_GT) && (flags & EXP_LT)) {
        reply_err(c->out, "ERR GT and LT options at the same time are not compatible");
        return;
    }
    int64_t when;
    if (!parse_int_arg(c->argv[2], &when)) {
        reply_err(c->out, ERR_NOTINT);
        return;
    }
    if (seconds) {
        if (when > INT64_MAX / 1000 || when < INT64_MIN / 1000) {
            resp_add_errorf(c->out, "ERR invalid expire time in '%s' command", c->def->name);
            return;
        }
        when *= 1000;
    }
    if (when > INT64_MAX - basetime) {
        resp_add_errorf(c->out, "ERR invalid expire time in '%s' command", c->def->name);
        return;
    }
    when += basetime;
    struct kentry *e = lookup_write(c, c->argv[1]);
    if (e == NULL) {
        reply_zero(c->out);
        return;
    }
    int64_t cur = kentry_expire(e);
    if (((flags & EXP_NX) && cur != KEYSPACE_NO_EXPIRE) ||
        ((flags & EXP_XX) && cur == KEYSPACE_NO_EXPIRE) ||
        ((flags & EXP_GT) && (cur == KEYSPACE_NO_EXPIRE || when <= cur)) ||
        ((flags & EXP_LT) && cur != KEYSPACE_NO_EXPIRE && when >= cur)) {
        reply_zero(c->out);
        return;
    }
    if (c->now > 0 && when <= c->now) {
        /* Already in the past: the key goes now (Redis's checkAlreadyExpired). */
        keyspace_del(c->ks, c->argv[1]);
        log_del1(c, c->argv[1]);
        reply_one(c->out);
        return;
    }
    keyspace_set_expire(c->ks, c->argv[1], when);
    char num[24];
    struct slice rv[3] = {SLICE_LIT("PEXPIREAT"), c->argv[1],
                          slice_of(num, resp_fmt_int(num, when))};
    log_rec(c, 3, rv);
    reply_one(c->out);
}

void cmd_data_expire(struct call *c)
{
    expire_generic(c, c->now, true);
}

void cmd_data_pexpire(struct call *c)
{
    expire_generic(c, c->now, false);
}

void cmd_data_expireat(struct call *c)
{
    expire_generic(c, 0, true);
}

void cmd_data_pexpireat(struct call *c)
{
    expire_generic(c, 0, false);
}

static void ttl_generic(struct call *c, bool ms)
{
    struct kentry *e = lookup_read(c, c->argv[1]);
    if (e == NULL) {
        resp_add_int(c->out, -2);
        return;
    }
    int64_t exp = kentry_expire(e);
    if (exp == KEYSPACE_NO_EXPIRE) {
        resp_add_int(c->out, -1);
        return;
    }
    int64_t ttl = exp - c->now;
    if (ttl < 0)
        ttl = 0;
    resp_add_int(c->out, ms ? ttl : (ttl + 500) / 1000);
}

void cmd_data_ttl(struct call *c)
{
    ttl_generic(c, false);
}

void cmd_data_pttl(struct call *c)
{
    ttl_generic(c, true);
}

void cmd_data_persist(struct call *c)
{
    struct kentry *e = lookup_write(c, c->argv[1]);
    if (e == NULL || kentry_expire(e) == KEYSPACE_NO_EXPIRE) {
        reply_zero(c->out);
        return;
    }
    keyspace_set_expire(c->ks, c->argv[1], KEYSPACE_NO_EXPIRE);
    struct slice rv[2] = {SLICE_LIT("PERSIST"), c->argv[1]};
    log_rec(c, 2, rv);
    reply_one(c->out);
}

static const char *type_name(enum keyspace_type t)
{
    switch (t) {
    case KEYSPACE_STRING:
        return "string";
    case KEYSPACE_HASH:
        return "hash";
    default:
        return "none";
    }
}

void cmd_data_type(struct call *c)
{
    struct kentry *e = lookup_write(c, c->argv[1]);
    resp_add_status(c->out, type_name(e ? kentry_type(e) : KEYSPACE_NONE));
}

struct keys_ctx {
    struct slice pattern;
    bool all;
    int64_t now;
    struct buf body;
    int64_t n;
};

static int keys_visit(void *ud, const struct kentry *e)
{
    struct keys_ctx *k = ud;
    if (keyspace_is_expired(e, k->now))
        return 0;
    struct slice key = kentry_key(e);
    if (!k->all && !keyspace_glob_match(k->pattern, key, false))
        return 0;
    resp_add_bulk(&k->body, key.p, key.len);
    k->n++;
    return 0;
}

void cmd_data_keys(struct call *c)
{
    struct keys_ctx k = {c->argv[1], false, c->now, {0}, 0};
    k.all = slice_eq(k.pattern, SLICE_LIT("*"));
    buf_init(&k.body);
    keyspace_foreach(c->ks, keys_visit, &k);
    resp_add_array(c->out, k.n);
    buf_append(c->out, k.body.p, k.body.len);
    buf_free(&k.body);
}

struct scan_acc {
    struct cmd_env *env;
    size_t n;
};

static int scan_push(void *ud, const struct kentry *e)
{
    struct scan_acc *a = ud;
    if (a->n == a->env->ev_cap) {
        a->env->ev_cap = a->env->ev_cap ? a->env->ev_cap * 2 : 64;
        a->env->ev = xrealloc(a->env->ev, a->env->ev_cap * sizeof(*a->env->ev));
    }
    a->env->ev[a->n++] = e;
    return 0;
}

/* strtoul semantics, as Redis parses SCAN cursors: no leading space, whole string, no ERANGE
 * ("-1" wraps, "+5" is accepted). */
static bool parse_cursor(struct slice a, uint64_t *out)
{
    if (a.len == 0 || a.len > 4096)
        return a.len == 0 ? (*out = 0, true) : false;
    if (a.p[0] == ' ' || (a.p[0] >= '\t' && a.p[0] <= '\r'))
        return false;
    char tmp[4097];
    memcpy(tmp, a.p, a.len);
    tmp[a.len] = '\0';
    if (strlen(tmp) != a.len)
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(tmp, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return false;
    *out = v;
    return true;
}

void cmd_data_scan(struct call *c)
{
    uint64_t cursor;
    if (!parse_cursor(c->argv[1], &cursor)) {
        reply_err(c->out, "ERR invalid cursor");
        return;
    }
    int64_t count = 10;
    const struct slice *pattern = NULL, *type = NULL;
    for (int i = 2; i < c->argc;) {
        int left = c->argc - i;
        if (arg_is(c->argv[i], "count") && left >= 2) {
            if (!parse_int_arg(c->argv[i + 1], &count)) {
                reply_err(c->out, ERR_NOTINT);
                return;
            }
            if (count < 1) {
                reply_err(c->out, ERR_SYNTAX);
                return;
            }
            i += 2;
        } else if (arg_is(c->argv[i], "match") && left >= 2) {
            pattern = slice_eq(c->argv[i + 1], SLICE_LIT("*")) ? NULL : &c->argv[i + 1];
            i += 2;
        } else if (arg_is(c->argv[i], "type") && left >= 2) {
            type = &c->argv[i + 1];
            i += 2;
        } else {
            reply_err(c->out, ERR_SYNTAX);
            return;
        }
    }
    struct scan_acc acc = {c->env, 0};
    uint64_t maxiter = (uint64_t)count * 10;
    do {
        cursor = keyspace_scan(c->ks, cursor, scan_push, &acc);
    } while (cursor && maxiter-- && acc.n < (uint64_t)count);
    struct buf body;
    buf_init(&body);
    int64_t n = 0;
    for (size_t i = 0; i < acc.n; i++) {
        const struct kentry *e = c->env->ev[i];
        struct slice key = kentry_key(e);
        if (pattern && !keyspace_glob_match(*pattern, key, false))
            continue;
        if (type && !slice_eq_nocase(*type, slice_cstr(type_name(kentry_type(e)))))
            continue;
        if (keyspace_is_expired(e, c->now))
            continue;
        resp_add_bulk(&body, key.p, key.len);
        n++;
    }
    char num[24];
    size_t nl = (size_t)snprintf(num, sizeof(num), "%" PRIu64, cursor);
    resp_add_array(c->out, 2);
    resp_add_bulk(c->out, num, nl);
    resp_add_array(c->out, n);
    buf_append(c->out, body.p, body.len);
    buf_free(&body);
}

void cmd_data_dbsize(struct call *c)
{
    resp_add_int(c->out, (int64_t)keyspace_size(c->ks));
}

void cmd_data_flushall(struct call *c)
{
    if (c->argc > 2 ||
        (c->argc == 2 && !arg_is(c->argv[1], "sync") && !arg_is(c->argv[1], "async"))) {
        reply_err(c->out, ERR_SYNTAX);
        return;
    }
    db_flush_watched(c->db);
    keyspace_flush(c->ks);
    struct slice rv[1] = {SLICE_LIT("FLUSHALL")};
    log_rec(c, 1, rv);
    reply_ok(c->out);
}

/* --- hash commands --- */

/* Returns the hash at key, creating it when create is set; NULL with *wrong set on a type
 * mismatch, or NULL when absent (and not created). */
static struct khash *hash_lookup(struct call *c, struct slice key, bool create, bool read,
                                 bool *wrong)
{
    *wrong = false;
    struct kentry *e = read ? lookup_read(c, key) : lookup_write(c, key);
    if (e == NULL) {
        if (!create)
            return NULL;
        e = keyspace_add_hash(c->ks, key);
    } else if (kentry_type(e) != KEYSPACE_HASH) {
        *wrong = true;
        reply_err(c->out, ERR_WRONGTYPE);
        return NULL;
    }
    return kentry_hash(e);
}

static void hset_generic(struct call *c, bool hmset)
{
    if (c->argc % 2 == 1) {
        cmd_arity_error(c);
        return;
    }
    bool wrong;
    struct khash *h = hash_lookup(c, c->argv[1], true, false, &wrong);
    if (h == NULL)
        return;
    int64_t added = 0;
    for (int j = 2; j < c->argc; j += 2)
        added += khash_set(c->ks, h, c->argv[j], c->argv[j + 1]);
    struct slice *rv = rv_get(c->env, (size_t)c->argc);
    rv[0] = SLICE_LIT("HSET");
    memcpy(rv + 1, c->argv + 1, (size_t)(c->argc - 1) * sizeof(*rv));
    log_rec(c, c->argc, rv);
    if (hmset)
        reply_ok(c->out);
    else
        resp_add_int(c->out, added);
}

void cmd_data_hset(struct call *c)
{
    hset_generic(c, false);
}

void cmd_data_hmset(struct call *c)
{
    hset_generic(c, true);
}

void cmd_data_hget(struct call *c)
{
    bool wrong;
    struct khash *h = hash_lookup(c, c->argv[1], false, true, &wrong);
    struct slice v;
    if (wrong)
        return;
    if (h == NULL || !khash_get(c->ks, h, c->argv[2], &v)) {
        resp_add_null(c->out);
        return;
    }
    resp_add_bulk(c->out, v.p, v.len);
}

void cmd_data_hmget(struct call *c)
{
    bool wrong;
    struct khash *h = hash_lookup(c, c->argv[1], false, true, &wrong);
    if (wrong)
        return;
    resp_add_array(c->out, c->argc - 2);
    for (int j = 2; j < c->argc; j++) {
        struct slice v;
        if (h && khash_get(c->ks, h, c->argv[j], &v))
            resp_add_bulk(c->out, v.p, v.len);
        else
            resp_add_null(c->out);
    }
}

static void hgetall_visit(void *ud, struct slice f, struct slice v)
{
    struct buf *o = ud;
    resp_add_bulk(o, f.p, f.len);
    resp_add_bulk(o, v.p, v.len);
}

void cmd_data_hgetall(struct call *c)
{
    bool wrong;
    struct khash *h = hash_lookup(c, c->argv[1], false, true, &wrong);
    if (wrong)
        return;
    if (h == NULL) {
        resp_add_array(c->out, 0);
        return;
    }
    resp_add_array(c->out, (int64_t)khash_len(h) * 2);
    khash_foreach(h, hgetall_visit, c->out);
}

void cmd_data_hdel(struct call *c)
{
    bool wrong;
    struct khash *h = hash_lookup(c, c->argv[1], false, false, &wrong);
    if (wrong)
        return;
    if (h == NULL) {
        reply_zero(c->out);
        return;
    }
    struct slice *rv = rv_get(c->env, (size_t)c->argc);
    rv[0] = SLICE_LIT("HDEL");
    rv[1] = c->argv[1];
    int n = 2;
    for (int j = 2; j < c->argc; j++) {
        if (khash_del(c->ks, h, c->argv[j])) {
            rv[n++] = c->argv[j];
            if (khash_len(h) == 0) {
                keyspace_del(c->ks, c->argv[1]);
                break;
            }
        }
    }
    if (n > 2)
        log_rec(c, n, rv);
    resp_add_int(c->out, n - 2);
}

void cmd_data_hlen(struct call *c)
{
    bool wrong;
    struct khash *h = hash_lookup(c, c->argv[1], false, true, &wrong);
    if (wrong)
        return;
    resp_add_int(c->out, h ? (int64_t)khash_len(h) : 0);
}

void cmd_data_hexists(struct call *c)
{
    bool wrong;
    struct khash *h = hash_lookup(c, c->argv[1], false, true, &wrong);
    struct slice v;
    if (wrong)
        return;
    resp_add_int(c->out, (h && khash_get(c->ks, h, c->argv[2], &v)) ? 1 : 0);
}

void cmd_data_hincrby(struct call *c)
{
    int64_t incr, cur = 0;
    if (!parse_int_arg(c->argv[3], &incr)) {
        reply_err(c->out, ERR_NOTINT);
        return;
    }
    bool wrong;
    struct khash *h = hash_lookup(c, c->argv[1], false, false, &wrong);
    if (wrong)
        return;
    struct slice v;
    bool existed = h && khash_get(c->ks, h, c->argv[2], &v);
    if (existed && !resp_parse_int(v.p, v.len, &cur)) {
        reply_err(c->out, "ERR hash value is not an integer");
        return;
    }
    if ((incr < 0 && cur < 0 && incr < INT64_MIN - cur) ||
        (incr > 0 && cur > 0 && incr > INT64_MAX - cur)) {
        reply_err(c->out, ERR_OVERFLOW);
        return;
    }
    if (h == NULL)
        h = kentry_hash(keyspace_add_hash(c->ks, c->argv[1]));
    int64_t nv = cur + incr;
    char num[24];
    struct slice sv = slice_of(num, resp_fmt_int(num, nv));
    khash_set(c->ks, h, c->argv[2], sv);
    struct slice rv[4] = {SLICE_LIT("HSET"), c->argv[1], c->argv[2], sv};
    log_rec(c, 4, rv);
    resp_add_int(c->out, nv);
}
