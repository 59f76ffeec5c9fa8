/* SPDX-License-Identifier: MIT */
/* store/db.c -- the database object: keyspace, persistence hook, counters, the WATCH table and
 * the capture of an EXEC's records. Keys the keyspace removes because they expired are logged
 * as DEL so that replay, which never expires keys by itself, follows the primary's state
 * exactly. Every change goes through db_log(), which is also where watched keys are marked: a
 * command's write, a lazily or actively expired key, and a record a replica or recovery
 * applies. */
#include "store/db.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "proto/resp.h"
#include "proto/walrec.h"
#include "store/persist.h"
#include "store/watch.h"

/* A TXN record bigger than this is appended as its separate records instead (a record may not
 * exceed WALREC_MAX_PAYLOAD; the margin covers the per-argument framing). */
#define DB_TXN_MAX_BYTES (WALREC_MAX_PAYLOAD / 2)

static void on_expired(void *ud, struct slice key)
{
    struct db *db = ud;
    struct slice argv[2] = {SLICE_LIT("DEL"), key};
    db_log(db, 2, argv);
}

struct db *db_new(const struct db_config *cfg, const uint8_t seed[16])
{
    struct db *db = xcalloc(1, sizeof(*db));
    db->ks = keyspace_new(seed);
    db->cfg = cfg;
    db->start_wall_ms = (int64_t)clock_wall_ms();
    uint8_t wseed[16];
    for (int i = 0; i < 16; i++)
        wseed[i] = (uint8_t)(seed[i] ^ 0x5a);
    db->watch = watch_new(wseed);
    keyspace_set_expired_hook(db->ks, on_expired, db);
    return db;
}

static void capture_release(struct db_capture *cap)
{
    buf_free(&cap->bytes);
    free(cap->lens);
    free(cap->argcs);
    *cap = (struct db_capture){0};
}

void db_free(struct db *db)
{
    if (db == NULL)
        return;
    keyspace_free(db->ks);
    watch_free(db->watch);
    capture_release(&db->cap);
    free(db);
}

void db_set_persist(struct db *db, const struct persist_ops *ops, void *ud)
{
    db->pops = ops;
    db->pud = ud;
}

static void touch_keys(struct db *db, int argc, const struct slice *argv)
{
    int first, step;
    switch (persist_record_keys(argc, argv, &first, &step)) {
    case PERSIST_KEYS_ALL:
        /* A client's FLUSHALL marked the keys that existed (db_flush_watched). */
        if (db->applying)
            watch_touch_all(db->watch);
        break;
    case PERSIST_KEYS_SOME:
        for (int i = first; i < argc; i += step)
            watch_touch(db->watch, argv[i]);
        break;
    case PERSIST_KEYS_NONE:
        break;
    }
}

static void capture_add(struct db_capture *cap, int argc, const struct slice *argv)
{
    if (cap->nrecs == cap->recs_cap) {
        cap->recs_cap = cap->recs_cap ? cap->recs_cap * 2 : 8;
        cap->argcs = xrealloc(cap->argcs, cap->recs_cap * sizeof(*cap->argcs));
    }
    cap->argcs[cap->nrecs++] = argc;
    if (cap->nargs + (size_t)argc > cap->args_cap) {
        size_t n = cap->args_cap ? cap->args_cap : 16;
        while (n < cap->nargs + (size_t)argc)
            n *= 2;
        cap->lens = xrealloc(cap->lens, n * sizeof(*cap->lens));
        cap->args_cap = n;
    }
    for (int i = 0; i < argc; i++) {
        cap->lens[cap->nargs++] = argv[i].len;
        buf_append(&cap->bytes, argv[i].p, argv[i].len);
    }
}

void db_log(struct db *db, int argc, const struct slice *argv)
{
    db->dirty++;
    if (watch_keys(db->watch) > 0)
        touch_keys(db, argc, argv);
    if (!db_is_logging(db))
        return;
    if (db->cap.on) {
        capture_add(&db->cap, argc, argv);
        return;
    }
    db->last_lsn = db->pops->append(db->pud, argc, argv);
}

void db_touch_key(struct db *db, struct slice key)
{
    db->dirty++;
    if (watch_keys(db->watch) > 0)
        watch_touch(db->watch, key);
}

static bool key_exists(void *ud, struct slice key)
{
    struct db *db = ud;
    return keyspace_find(db->ks, key, 0) != NULL;
}

void db_flush_watched(struct db *db)
{
    if (!db->applying && watch_keys(db->watch) > 0)
        watch_touch_if(db->watch, key_exists, db);
}

void db_capture_begin(struct db *db)
{
    TD_ASSERT(!db->cap.on);
    db->cap.on = db_is_logging(db);
    db->cap.nrecs = db->cap.nargs = 0;
    db->cap.bytes.len = 0;
}

bool db_capture_end(struct db *db)
{
    struct db_capture *cap = &db->cap;
    if (!cap->on)
        return false;
    cap->on = false;
    size_t nrecs = cap->nrecs;
    if (nrecs == 0)
        return false;
    /* One argv for everything: "TXN" and a count before each record (counts live in nums). */
    size_t total = 1 + nrecs + cap->nargs;
    struct slice *argv = xmalloc(total * sizeof(*argv));
    char *nums = xmalloc(nrecs * 24);
    size_t a = 0, at = 0;
    struct slice *out = argv;
    *out++ = SLICE_LIT("TXN");
    for (size_t r = 0; r < nrecs; r++) {
        char *num = nums + r * 24;
        *out++ = slice_of(num, resp_fmt_int(num, cap->argcs[r]));
        for (int i = 0; i < cap->argcs[r]; i++, a++) {
            *out++ = slice_of(cap->bytes.p + at, cap->lens[a]);
            at += cap->lens[a];
        }
    }
    size_t bytes = cap->bytes.len + total * 16;
    if (nrecs == 1) {
        db->last_lsn = db->pops->append(db->pud, cap->argcs[0], argv + 2);
    } else if (bytes <= DB_TXN_MAX_BYTES) {
        db->last_lsn = db->pops->append(db->pud, (int)total, argv);
    } else {
        /* Too big for one log record: still logged, but as separate records. */
        log_warn("db", "transaction too large for one log record, logged as separate records",
                 "records=%zu bytes=%zu", nrecs, bytes);
        struct slice *p = argv + 1;
        for (size_t r = 0; r < nrecs; r++) {
            db->last_lsn = db->pops->append(db->pud, cap->argcs[r], p + 1);
            p += 1 + cap->argcs[r];
        }
    }
    free(nums);
    free(argv);
    if (cap->bytes.cap > (1u << 20) || cap->args_cap > 4096)
        capture_release(cap);
    return true;
}
