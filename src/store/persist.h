/* SPDX-License-Identifier: MIT */
/* store/persist.h -- the contract between the store and its persistence layer (the write-ahead
 * log and snapshots: store/wal.c, store/snapshot.c).
 *
 * Resolved records. Every write command, after it executed and changed the keyspace, hands
 * exactly one record to persist_ops.append: an argv in the vocabulary below, deterministic (no
 * relative times, no "current value" dependence) and idempotent (applying a record twice leaves
 * the same state as applying it once), so a log can be replayed over a snapshot taken while
 * writes continued, and a replica may re-apply an overlap after a reconnect. A command that
 * changes nothing (SET NX on an existing key, DEL of missing keys) logs nothing.
 *
 *   SET key value                  SET and SETNX without expiry
 *   SET key value PXAT ms          SET with EX/PX/EXAT/PXAT (absolute Unix ms)
 *   SET key value KEEPTTL          INCR/DECR/INCRBY/DECRBY (the new value), APPEND (the whole
 *                                  new value), SET ... KEEPTTL
 *   MSET key value [key value ...] MSET
 *   DEL key [key ...]              DEL, GETDEL (only keys that existed); expired keys the primary
 *                                  removes (lazily or by the active cycle) -- replay never expires
 *                                  keys on its own, so state follows the primary exactly
 *   PEXPIREAT key ms               EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT with a future time
 *                                  (a time already past logs DEL key)
 *   PERSIST key                    PERSIST that removed a TTL
 *   HSET key field value [...]     HSET/HMSET, and HINCRBY (the field's new value)
 *   HDEL key field [field ...]     HDEL (only fields that existed)
 *   FLUSHALL                       FLUSHALL, FLUSHDB
 *   TXN n1 a1.. n2 a2.. ...        an EXEC that logged two or more records: each sub-record as
 *                                  its argument count (decimal, > 0) then its arguments, in
 *                                  order. Applied whole or not at all (validated first); sub-
 *                                  records are plain records above, never TXN. An EXEC that
 *                                  logged one record logs that record; none, nothing.
 *
 * LSNs. append returns the LSN the persistence layer gave the record (strictly increasing, >0);
 * the server remembers, per client, the LSN of each write whose reply it holds.
 *
 * Group commit. All records appended during one event-loop iteration are followed by one flush
 * call (made just before the loop polls again, after the iteration's reads and timers). The
 * layer makes them durable per its policy and then calls the bound durable(ctx, lsn) on the loop
 * thread with the highest LSN now durable; the server releases every reply held for LSNs <= lsn,
 * in order per client. Replies to reads that follow a write on the same connection wait behind
 * it. For fsync=everysec/no the layer may call durable() from inside flush() right after write(2);
 * for fsync=always, after fdatasync returns (off the loop thread, reported back via libuv).
 * With no persistence installed (ops NULL) nothing is held.
 *
 * Threading: every callback is called on the loop thread; none may block for I/O except save.
 *
 * Wiring with store/wal.h (what cli/cmd_db.c needs; tests/unit/test_persist.c does it for a
 * synchronous log): wal_open(dir, {fsync, on_durable}, loop); wal_recover(w,
 * persist_snapshot_load, persist_wal_apply, db) before the server starts; then persist_ops with
 * append -> wal_append(w, term, ...), flush -> wal_commit(w), save -> wal_snapshot_save(w,
 * persist_snapshot_iterate, db), info -> wal_get_stats; bind keeps the durable callback that
 * wal's on_durable forwards to. Periodically (server cron) wal_snapshot_due() ->
 * wal_snapshot_start(w, persist_snapshot_iterate, db, ...). On shutdown, after server_close:
 * wal_close. Which LSN releases replies is the layer's choice: for fsync=always the fdatasynced
 * one; for everysec/no, releasing right after flush matches Redis's replies but not the promise
 * "nothing acknowledged is lost on kill -9" unless it waits for the write(2) to have happened
 * (wal's written LSN, which today has no callback). */
#ifndef TD_STORE_PERSIST_H
#define TD_STORE_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/db.h"

/* Reports that every record up to and including lsn is durable. Loop thread only. */
typedef void (*persist_durable_fn)(void *ctx, uint64_t lsn);

/* Implemented by the persistence layer; installed with server_set_persist() (which also calls
 * db_set_persist()). ud is the layer's own object, passed back to every call. */
struct persist_ops {
    /* Called once, before any append: remember durable/ctx and report durability through it. */
    void (*bind)(void *ud, persist_durable_fn durable, void *ctx);
    /* Records one resolved write (argv borrowed for the call: copy it). Returns its LSN (> 0).
     * Must not block: buffer, and write in flush. */
    uint64_t (*append)(void *ud, int argc, const struct slice *argv);
    /* Once per loop iteration with appends since the previous flush: start making everything
     * appended durable; report via durable(). */
    void (*flush)(void *ud);
    /* The SAVE command: write a snapshot now (may block the loop). Returns 0, or a negative code
     * after writing a one-line reason into err. NULL: SAVE replies with an error. */
    int (*save)(void *ud, char *err, size_t errlen);
    /* Appends "name:value\r\n" lines to INFO's persistence section. May be NULL. */
    void (*info)(void *ud, struct buf *out);
    /* The BGSAVE command: start a snapshot in the background (the loop keeps serving). Returns
     * 0 once started, or a negative code after writing a one-line reason into err (-EBUSY:
     * "Background save already in progress"). NULL: BGSAVE replies with an error. */
    int (*bgsave)(void *ud, char *err, size_t errlen);
    /* The LASTSAVE command: Unix time in seconds of the last successful snapshot (the start
     * time when there was none since). NULL: the server's start time. */
    int64_t (*lastsave)(void *ud);
};

/* --- Entry points the store offers the persistence layer (implemented in store/persist.c) --- */

/* Applies one resolved record to db (recovery, and later replication): no expiry is evaluated,
 * nothing is logged, replies are discarded. Returns 0, or -EINVAL for a record outside the
 * vocabulary above or that fails (wrong type, bad number), with a reason in err. */
int persist_apply(struct db *db, int argc, const struct slice *argv, char *err, size_t errlen);

/* Which arguments of a record name keys (for WATCH). */
enum persist_keys {
    PERSIST_KEYS_NONE = 0, /* none (the empty record, TXN, unknown names) */
    PERSIST_KEYS_SOME,     /* argv[first], argv[first + step], ... below argc */
    PERSIST_KEYS_ALL,      /* every key (FLUSHALL) */
};

/* Classifies a record of the vocabulary above: SET, PEXPIREAT, PERSIST, HSET, HDEL name argv[1];
 * MSET argv[1], argv[3], ...; DEL argv[1..]; FLUSHALL all. Sets *first and *step for
 * PERSIST_KEYS_SOME. Pure. */
enum persist_keys persist_record_keys(int argc, const struct slice *argv, int *first, int *step);

/* Called once per record by persist_foreach_record; argv borrowed for the call. Return non-zero
 * to stop the iteration. */
typedef int (*persist_record_fn)(void *ud, int argc, const struct slice *argv);

/* Emits records that recreate the whole dataset, for a snapshot: per key, "SET k v" or
 * "SET k v PXAT ms" for a string, "HSET k f v ..." (at most 512 fields per record) followed by
 * "PEXPIREAT k ms" when it has a TTL for a hash. Keys already expired at now_ms are skipped
 * (now_ms 0: keep all). The keyspace must not change during the call (call it on the loop
 * thread, or in a forked child). Returns 0, or the first non-zero value fn returned. */
int persist_foreach_record(struct db *db, int64_t now_ms, persist_record_fn fn, void *ud);

/* --- Bridges with the signatures of store/wal.h and store/snapshot.h callbacks, so that the
 * write-ahead log can recover into and snapshot a db directly (ud is the struct db *). --- */

struct snapshot_writer;
struct snapshot_item;

/* wal_apply_fn: applies one logged record (argc 0 is a no-op record, accepted). On a record
 * that does not apply, logs the reason with its lsn and returns -EINVAL (recovery stops). */
int persist_wal_apply(void *db, uint64_t lsn, uint64_t term, size_t argc, const struct slice *argv);
/* snapshot_load_fn: loads one snapshot item: SNAPSHOT_TYPE_STRING (one value),
 * SNAPSHOT_TYPE_HASH (field, value pairs), SNAPSHOT_TYPE_ARGV (a record, applied) or
 * SNAPSHOT_TYPE_HINT ("keys" N: the key table is sized for N keys at once; other hints are
 * ignored); expire_ms 0 means none. Returns 0, or TD_ECORRUPT for an item of another shape. */
int persist_snapshot_load(void *db, const struct snapshot_item *it);
/* wal_iterate_fn: writes a HINT item with the key count, then every key, expired or not (replay
 * never expires keys, so the snapshot is the exact state at its lsn), as STRING or HASH items. Must
 * not run concurrently with changes to the keyspace (fork()ed child, or the loop thread). Returns 0
 * or the writer's first error. */
int persist_snapshot_iterate(void *db, struct snapshot_writer *sw);

/* Low-level iteration, for a layer that encodes entries itself: see keyspace_foreach(),
 * kentry_type(), kentry_key(), kentry_str(), kentry_expire(), kentry_hash() and
 * khash_foreach() in store/keyspace.h, reached through db->ks. */

#endif
