/* SPDX-License-Identifier: MIT */
/* store/persist.c -- the store's side of the persistence contract (store/persist.h): applying a
 * resolved record, and describing the dataset as records for a snapshot. */
#include "store/persist.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "proto/resp.h"
#include "store/cmd.h"
#include "store/keyspace.h"

#define HSET_BATCH 512

int persist_apply(struct db *db, int argc, const struct slice *argv, char *err, size_t errlen)
{
    return cmd_apply(db, argc, argv, err, errlen);
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
