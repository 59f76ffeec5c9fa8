/* SPDX-License-Identifier: MIT */
/* store/db.c -- the database object: keyspace, persistence hook, counters. Keys the keyspace
 * removes because they expired are logged as DEL so that replay, which never expires keys by
 * itself, follows the primary's state exactly. */
#include "store/db.h"

#include <stdlib.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "store/persist.h"

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
    keyspace_set_expired_hook(db->ks, on_expired, db);
    return db;
}

void db_free(struct db *db)
{
    if (db == NULL)
        return;
    keyspace_free(db->ks);
    free(db);
}

void db_set_persist(struct db *db, const struct persist_ops *ops, void *ud)
{
    db->pops = ops;
    db->pud = ud;
}

void db_log(struct db *db, int argc, const struct slice *argv)
{
    db->dirty++;
    if (!db_is_logging(db))
        return;
    db->last_lsn = db->pops->append(db->pud, argc, argv);
}
