/* SPDX-License-Identifier: MIT */
/* store/wal_persist.h -- the store's persistence layer: persist_ops (store/persist.h) over the
 * write-ahead log (store/wal.h), plus startup recovery into a db, SAVE, automatic snapshots on
 * a timer and the INFO persistence fields.
 *
 * When a reply is released (the LSN passed to the server's durable callback):
 *   fsync=always     after the fdatasync that covers the write (group commit);
 *   fsync=everysec   right after the record was handed to write(2): an acknowledged write
 *   fsync=no         survives kill -9 of the process (it is in the kernel), not a power loss.
 *
 * Life cycle (loop thread): wal_persist_open (opens DIR, recovers the snapshot and the log tail
 * into db) -> server_set_persist(srv, &wal_persist_ops, wp) -> wal_persist_start (automatic
 * snapshots) -> ... -> server_close -> wal_persist_close (final write + fsync). */
#ifndef TD_STORE_WAL_PERSIST_H
#define TD_STORE_WAL_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "store/db.h"
#include "store/persist.h"
#include "store/wal.h"

struct wal_persist;

/* The log hit an I/O error and is read-only for good: the process should stop (loop thread). */
typedef void (*wal_persist_error_cb)(void *ud, int err);
typedef void (*wal_persist_closed_cb)(void *ud);

struct wal_persist_config {
    enum wal_fsync fsync;
    bool repair;                  /* cut the log at damage in the middle (bytes are kept) */
    uint64_t segment_bytes;       /* 0: the log's default (64 MiB) */
    uint64_t snapshot_min_bytes;  /* automatic snapshot once the log grew past this ... */
    uint64_t snapshot_growth_pct; /* ... and past this % of the last snapshot; 0: never */
    uint64_t check_interval_ms;   /* how often the rule is checked; 0: 100 ms */
    bool snapshot_in_process;     /* tests: no fork() */
    wal_persist_error_cb on_error;
    void *ud;
};

/* The persist_ops to install with server_set_persist(srv, &wal_persist_ops, wp). */
extern const struct persist_ops wal_persist_ops;

/* Opens dir (created if missing, locked) and recovers its newest snapshot and the log after it
 * into db (borrowed for the life of wp; must be empty). cfg is copied. Returns 0 with an owned
 * wp in *out and the recovery report in *rep, or a negative code with a sentence in err
 * (TD_ECORRUPT: damage in the middle of the log or a bad snapshot; nothing was changed on
 * disk). On failure nothing stays open. */
int wal_persist_open(const char *dir, const struct wal_persist_config *cfg, uv_loop_t *loop,
                     struct db *db, struct wal_persist **out, struct wal_recovery *rep, char *err,
                     size_t errlen);
/* Starts the automatic snapshot timer (needs a loop). */
void wal_persist_start(struct wal_persist *wp);
/* Keys the startup loaded from the snapshot. */
uint64_t wal_persist_snapshot_keys(const struct wal_persist *wp);
/* The term this node's own writes are logged in from now on (a promotion). */
void wal_persist_set_term(struct wal_persist *wp, uint64_t term);
/* Records up to lsn have been handed to the kernel (replication streams them). */
typedef void (*wal_persist_written_fn)(void *ud, uint64_t lsn);
/* Sets the one observer of written records (NULL: none). */
void wal_persist_watch(struct wal_persist *wp, wal_persist_written_fn fn, void *ud);
/* The log, for inspection (borrowed). */
struct wal *wal_persist_wal(struct wal_persist *wp);
/* Writes everything appended, fsyncs it, stops a running snapshot child, frees wp and then
 * calls cb (may be NULL) on the loop thread. No durable callback reaches the server after this
 * call. */
void wal_persist_close(struct wal_persist *wp, wal_persist_closed_cb cb, void *ud);

#endif
