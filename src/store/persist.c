/* SPDX-License-Identifier: MIT */
/* store/persist.c -- the store's side of the persistence contract (store/persist.h): applying a
 * resolved record, and describing the dataset as records for a snapshot. */
#include "store/persist.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"
#include "proto/resp.h"
#include "store/cmd.h"
#include "store/keyspace.h"
#include "store/snapshot.h"

#define HSET_BATCH 512

int persist_apply(struct db *db, int argc, const struct slice *argv, char *err, size_t errlen)
{
    return cmd_apply(db, argc, argv, err, errlen);
}

enum persist_keys persist_record_keys(int argc, const struct slice *argv, int *first, int *step)
{
    *first = 1;
    *step = 1;
    if (argc < 1)
        return PERSIST_KEYS_NONE;
    struct slice n = argv[0];
    if (slice_eq_nocase(n, SLICE_LIT("FLUSHALL")))
        return PERSIST_KEYS_ALL;
    if (argc < 2)
        return PERSIST_KEYS_NONE;
    if (slice_eq_nocase(n, SLICE_LIT("DEL")))
        return PERSIST_KEYS_SOME;
    if (slice_eq_nocase(n, SLICE_LIT("MSET"))) {
        *step = 2;
        return PERSIST_KEYS_SOME;
    }
    if (slice_eq_nocase(n, SLICE_LIT("SET")) || slice_eq_nocase(n, SLICE_LIT("HSET")) ||
        slice_eq_nocase(n, SLICE_LIT("HDEL")) || slice_eq_nocase(n, SLICE_LIT("PEXPIREAT")) ||
        slice_eq_nocase(n, SLICE_LIT("PERSIST"))) {
        *step = argc; /* argv[1] only */
        return PERSIST_KEYS_SOME;
    }
    return PERSIST_KEYS_NONE;
}

struct emit {
    persist_record_fn fn;
    void *ud;
    int64_t now;
    struct slice *argv; /* HSET key f v ... under construction */
    int argc;
    int rc;
};

static void flush_hset(struct emit *x)
{
    if (x->argc > 2 && x->rc == 0)
        x->rc = x->fn(x->ud, x->argc, x->argv);
    x->argc = 2;
}

static void emit_field(void *ud, struct slice f, struct slice v)
{
    struct emit *x = ud;
    x->argv[x->argc++] = f;
    x->argv[x->argc++] = v;
    if (x->argc >= 2 + 2 * HSET_BATCH)
        flush_hset(x);
}

static int emit_key(void *ud, const struct kentry *e)
{
    struct emit *x = ud;
    if (keyspace_is_expired(e, x->now))
        return 0;
    struct slice key = kentry_key(e);
    int64_t exp = kentry_expire(e);
    char num[24];
    struct slice ms = exp >= 0 ? slice_of(num, resp_fmt_int(num, exp)) : (struct slice){0, 0};
    if (kentry_type(e) == KEYSPACE_STRING) {
        struct slice argv[5] = {SLICE_LIT("SET"), key, kentry_str(e), SLICE_LIT("PXAT"), ms};
        return x->fn(x->ud, exp >= 0 ? 5 : 3, argv);
    }
    x->argv[0] = SLICE_LIT("HSET");
    x->argv[1] = key;
    x->argc = 2;
    khash_foreach(kentry_hash(e), emit_field, x);
    flush_hset(x);
    if (x->rc == 0 && exp >= 0) {
        struct slice argv[3] = {SLICE_LIT("PEXPIREAT"), key, ms};
        x->rc = x->fn(x->ud, 3, argv);
    }
    return x->rc;
}

int persist_foreach_record(struct db *db, int64_t now_ms, persist_record_fn fn, void *ud)
{
    struct emit x = {fn, ud, now_ms, NULL, 0, 0};
    x.argv = xmalloc((2 + 2 * HSET_BATCH) * sizeof(*x.argv));
    int rc = keyspace_foreach(db->ks, emit_key, &x);
    free(x.argv);
    return rc;
}

int persist_wal_apply(void *ud, uint64_t lsn, uint64_t term, size_t argc, const struct slice *argv)
{
    struct db *db = ud;
    if (argc == 0)
        return 0;
    char err[256];
    if (argc > INT_MAX || persist_apply(db, (int)argc, argv, err, sizeof(err)) != 0) {
        log_error("persist", "log record does not apply",
                  "lsn=%" PRIu64 " term=%" PRIu64 " cmd=%.*s err=\"%s\"", lsn, term,
                  (int)(argv[0].len < 32 ? argv[0].len : 32), argv[0].p,
                  argc > INT_MAX ? "too many arguments" : err);
        return -EINVAL;
    }
    return 0;
}

int persist_snapshot_load(void *ud, const struct snapshot_item *it)
{
    struct db *db = ud;
    int64_t exp = it->expire_ms ? (int64_t)it->expire_ms : KEYSPACE_NO_EXPIRE;
    if (it->expire_ms > INT64_MAX)
        return TD_ECORRUPT;
    switch (it->type) {
    case SNAPSHOT_TYPE_STRING:
        if (it->nvals != 1)
            return TD_ECORRUPT;
        keyspace_set_str(db->ks, it->key, it->vals[0], exp);
        break;
    case SNAPSHOT_TYPE_HASH: {
        if (it->nvals == 0 || it->nvals % 2 != 0)
            return TD_ECORRUPT;
        keyspace_del(db->ks, it->key);
        struct khash *h = kentry_hash(keyspace_add_hash(db->ks, it->key));
        for (size_t i = 0; i < it->nvals; i += 2)
            khash_set(db->ks, h, it->vals[i], it->vals[i + 1]);
        if (exp >= 0)
            keyspace_set_expire(db->ks, it->key, exp);
        break;
    }
    case SNAPSHOT_TYPE_HINT: {
        /* Size the key table once instead of doubling it while loading. Unknown hints are
         * ignored, so a later writer may add some. */
        if (!slice_eq(it->key, SLICE_LIT("keys")))
            return 0;
        int64_t n;
        if (it->nvals != 1 || !resp_parse_int(it->vals[0].p, it->vals[0].len, &n) || n < 0)
            return TD_ECORRUPT;
        keyspace_reserve(db->ks, (uint64_t)n);
        return 0;
    }
    case SNAPSHOT_TYPE_ARGV: {
        char err[256];
        if (it->nvals == 0 || it->nvals > INT_MAX ||
            persist_apply(db, (int)it->nvals, it->vals, err, sizeof(err)) != 0)
            return TD_ECORRUPT;
        return 0;
    }
    default:
        return TD_ECORRUPT;
    }
    db_touch(db);
    return 0;
}

struct snap_ctx {
    struct snapshot_writer *sw;
    int rc;
};

static void snap_field(void *ud, struct slice f, struct slice v)
{
    struct snap_ctx *x = ud;
    if (x->rc == 0)
        x->rc = snapshot_item_val(x->sw, f);
    if (x->rc == 0)
        x->rc = snapshot_item_val(x->sw, v);
}

static int snap_key(void *ud, const struct kentry *e)
{
    struct snap_ctx *x = ud;
    int64_t exp = kentry_expire(e);
    uint64_t ms = exp >= 0 ? (uint64_t)exp : 0;
    if (kentry_type(e) == KEYSPACE_STRING) {
        struct slice v = kentry_str(e);
        x->rc = snapshot_put(x->sw, SNAPSHOT_TYPE_STRING, ms, kentry_key(e), 1, &v);
        return x->rc;
    }
    const struct khash *h = kentry_hash(e);
    x->rc = snapshot_item_begin(x->sw, SNAPSHOT_TYPE_HASH, ms, kentry_key(e), 2 * khash_len(h));
    if (x->rc == 0)
        khash_foreach(h, snap_field, x);
    return x->rc;
}

int persist_snapshot_iterate(void *ud, struct snapshot_writer *sw)
{
    struct db *db = ud;
    struct snap_ctx x = {sw, 0};
    char num[24];
    struct slice count = slice_of(num, resp_fmt_int(num, (int64_t)keyspace_size(db->ks)));
    x.rc = snapshot_put(sw, SNAPSHOT_TYPE_HINT, 0, SLICE_LIT("keys"), 1, &count);
    if (x.rc == 0)
        keyspace_foreach(db->ks, snap_key, &x);
    return x.rc;
}
