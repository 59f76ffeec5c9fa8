/* SPDX-License-Identifier: MIT */
/* store/db.h -- the database one `tandem db` serves: its keyspace, configuration, the hook that
 * hands every change to the persistence layer (store/persist.h), and counters. Commands
 * (store/cmd.c), the network server (store/server.c) and persistence share this struct; the
 * caller that creates it (cli/cmd_db.c) owns it and frees it after the server has closed. */
#ifndef TD_STORE_DB_H
#define TD_STORE_DB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/buf.h"
#include "store/keyspace.h"

struct persist_ops;
struct watch;

/* Records collected while an EXEC runs (db_capture_begin/end): their arguments back to back in
 * bytes, each argument's length in lens, each record's argument count in argcs. */
struct db_capture {
    bool on;
    struct buf bytes;
    size_t *lens;
    size_t nargs, args_cap;
    int *argcs;
    size_t nrecs, recs_cap;
};

enum db_fsync {
    DB_FSYNC_ALWAYS = 0,
    DB_FSYNC_EVERYSEC,
    DB_FSYNC_NO,
};

/* Settings of `tandem db`, filled from one cfg table in cli/cmd_db.c. Immutable once the server
 * runs. Byte sizes and counts are uint64_t as base/cfg.h requires. */
struct db_config {
    struct sockaddr_storage listen;
    char *dir;
    int fsync; /* enum db_fsync */
    char *requirepass;
    uint64_t max_bulk;        /* longest argument (Redis proto-max-bulk-len) */
    uint64_t max_multibulk;   /* most arguments per command */
    uint64_t query_buffer;    /* unparsed input per client (client-query-buffer-limit) */
    uint64_t output_limit;    /* pending replies per client before it is disconnected */
    uint64_t max_clients;     /* connections beyond this get an error and are closed */
    uint64_t idle_timeout_ms; /* 0: never close idle clients (Redis timeout 0) */
    char *log_level;
    bool in_memory;               /* no log, no snapshots: data lives only in the process */
    bool wal_repair;              /* cut a log damaged in the middle instead of refusing */
    uint64_t wal_segment_bytes;   /* log segment size */
    uint64_t snapshot_min_bytes;  /* automatic snapshot: log grew past this ... */
    uint64_t snapshot_growth_pct; /* ... and this % of the last snapshot (0: never) */
    /* replication (store/repl_node.h) */
    char *replicaof;          /* HOST:PORT of the primary to follow at startup; NULL: primary */
    char *name;               /* node name; NULL: the listen address */
    char *repl_secret;        /* NULL: requirepass */
    uint64_t sync_replicas;   /* acknowledge a write once this many replicas have it */
    bool sync_strict;         /* refuse writes while fewer are in sync */
    uint64_t repl_heartbeat_ms;
    uint64_t repl_max_lag_ms;
    /* automatic failover (cli/db_ha.c) */
    char *coordinator;          /* builtin://HOST:PORT or etcd://HOST:PORT[,...]; NULL: none */
    char *cluster;
    uint64_t priority;          /* 0: never promoted */
    uint64_t lease_ttl_ms;
    uint64_t min_replicas;      /* restore redundancy below this many healthy replicas */
    uint64_t provision_after_ms;
    char *provision_cmd;        /* run by /bin/sh -c with TANDEM_* variables */
};

struct db {
    struct keyspace *ks;
    const struct db_config *cfg;    /* borrowed; may be NULL in unit tests */
    const struct persist_ops *pops; /* NULL: in memory only */
    void *pud;
    uint64_t last_lsn; /* LSN returned by the last append (0: none yet) */
    uint64_t dirty;    /* changes since start (or last save, once persistence lands) */
    int64_t now_ms;    /* wall-clock ms of the command being run; 0 while applying records */
    bool applying;     /* replaying records: no logging, no expiry */
    uint64_t hits, misses;
    int64_t start_wall_ms;
    struct watch *watch;   /* WATCH table (store/watch.h): keys clients watch */
    struct db_capture cap; /* on while an EXEC runs */
};

/* Creates a db with an empty keyspace hashed with seed (16 secret random bytes). cfg is
 * borrowed and may be NULL (defaults). */
struct db *db_new(const struct db_config *cfg, const uint8_t seed[16]);
/* Frees the keyspace and the db; NULL is a no-op. Persistence is not touched. */
void db_free(struct db *db);
/* Installs the persistence hook (ops NULL: none). ops and ud are borrowed for the db's life. */
void db_set_persist(struct db *db, const struct persist_ops *ops, void *ud);
/* True when changes are being recorded (a hook is set and the db is not replaying). */
static inline bool db_is_logging(const struct db *db)
{
    return db->pops != NULL && !db->applying;
}
/* Hands one resolved record to the hook (no-op when not logging), counts the change and marks
 * the keys it names as modified for WATCH (also while applying records). While a capture is on,
 * the record is collected instead of appended. argv is borrowed for the duration of the call. */
void db_log(struct db *db, int argc, const struct slice *argv);
/* Before a FLUSHALL a client runs: marks the watched keys that exist as modified (Redis 7.0 does
 * not dirty a watched key that did not exist). While applying records (replicas, recovery) the
 * FLUSHALL record dirties every watched key instead, since a full resync replaces the dataset. */
void db_flush_watched(struct db *db);
/* Starts collecting the records db_log receives instead of appending them (EXEC). Nothing is
 * collected when the db is not logging. Captures do not nest (asserted). */
void db_capture_begin(struct db *db);
/* Ends the capture and appends what it collected: nothing for no record, the record itself for
 * one, else one compound record "TXN n1 a1.. n2 a2.." (store/persist.h), so the whole batch is
 * in the log, on replicas and after a crash, all or nothing. Returns true when a record was
 * appended (db->last_lsn is then its LSN). */
bool db_capture_end(struct db *db);
/* Counts a change that is not logged (apply). */
static inline void db_touch(struct db *db)
{
    db->dirty++;
}
/* Counts a change to key that is not logged (not logging, or applying) and marks the key as
 * modified for WATCH, as db_log would. */
void db_touch_key(struct db *db, struct slice key);

#endif
