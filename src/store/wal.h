/* SPDX-License-Identifier: MIT */
/* store/wal.h -- the write-ahead log of `tandem db`: segment files, group commit, snapshots,
 * recovery. Independent of the keyspace: records are argument vectors, snapshots are items
 * handed over through callbacks.
 *
 * Life cycle (all calls on the loop thread):
 *   wal_open(dir, opts, loop)      lock DIR, list snapshot and segment files
 *   wal_recover(load, apply)       snapshot items, then log records after it; a torn tail is
 *                                  truncated (logged); corruption in the middle is an error
 *   loop: wal_append() per write   buffers a record, returns its lsn
 *         wal_commit() per loop    one write (+ one fdatasync for fsync=always) of everything
 *           iteration              buffered: on the libuv thread pool when it syncs or opens a
 *                                  segment, else inline (a pwrite, everysec/no);
 *                                  on_written(lsn) once written, on_durable(lsn) once on disk,
 *                                  on the loop thread; everysec's fdatasync is a pool job of
 *                                  its own, concurrent with later writes
 *         wal_snapshot_start()     fork()ed child dumps the keyspace; old segments are deleted
 *   wal_close(cb)                  final write + fsync, then cb
 * With loop == NULL everything runs synchronously in the caller (tests, tools): wal_commit
 * writes and calls on_durable before it returns, snapshots are written in-process.
 *
 * LSNs start at 1 and grow by one per record; lsn 0 means "nothing". Terms never decrease.
 * After an I/O error the log is broken for good (the page cache state after a failed fsync is
 * unknown, STYLE.md 2.5): appends fail, on_error is called once, the server should stop. */
#ifndef TD_STORE_WAL_H
#define TD_STORE_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"
#include "proto/walrec.h"
#include "store/snapshot.h"

struct wal;
struct termhist;

enum wal_fsync {
    WAL_FSYNC_ALWAYS = 0, /* acknowledge after fdatasync (group commit) */
    WAL_FSYNC_EVERYSEC,   /* write every loop iteration, fdatasync once a second */
    WAL_FSYNC_NO,         /* write every loop iteration, let the kernel flush */
};

/* Durable lsn advanced (records up to lsn are fdatasynced); runs on the loop thread (inside
 * wal_commit/wal_close when the wal has no loop). May still be called during wal_close. */
typedef void (*wal_durable_cb)(void *ud, uint64_t durable_lsn);
/* Written lsn advanced: records up to lsn have been handed to write(2), so they survive the
 * death of the process (kill -9), not yet a power loss. Same thread and timing rules as
 * wal_durable_cb; when one job both writes and syncs, on_written runs first. */
typedef void (*wal_written_cb)(void *ud, uint64_t written_lsn);
/* The log hit an I/O error (negated errno) and is now read-only; called once. */
typedef void (*wal_error_cb)(void *ud, int err);
/* Replays one record during recovery; non-zero stops recovery with that code. */
typedef int (*wal_apply_fn)(void *ud, uint64_t lsn, uint64_t term, size_t argc,
                            const struct slice *argv);
/* Dumps the keyspace into a snapshot writer (snapshot_put...). Runs in the forked child (or
 * in-process without fork). Returns 0 or the first error from the writer. */
typedef int (*wal_iterate_fn)(void *ud, struct snapshot_writer *sw);
/* A snapshot started by wal_snapshot_start ended: status 0 or a negative code. */
typedef void (*wal_snapshot_cb)(void *ud, int status, uint64_t lsn);
/* A record read back by wal_read; borrows the read buffer. Non-zero stops the read. */
typedef int (*wal_record_fn)(void *ud, const struct walrec *rec);
typedef void (*wal_close_cb)(void *ud);

struct wal_options {
    enum wal_fsync fsync;
    uint64_t segment_bytes;    /* rotate segments past this size; 0 = 64 MiB */
    bool snapshot_in_process;  /* write snapshots in-process instead of in a fork()ed child */
    bool repair;               /* truncate at the first bad record even when valid ones follow */
    wal_durable_cb on_durable; /* may be NULL */
    wal_error_cb on_error;     /* may be NULL */
    void *ud;
    wal_written_cb on_written; /* may be NULL */
    /* fsync=always with a loop: after an fdatasync that took at least gather_min_sync_us, the
     * next batch waits up to gather_ms for as many records as the synced batch held (the
     * clients it released coming back), so they share one fdatasync. 0: off. */
    unsigned gather_ms;
    uint64_t gather_min_sync_us;
    /* Keep this many bytes of zeros written ahead of the log's end (topped up when half is
     * used), so that an fdatasync after a record changes no file size and flushes data only;
     * recovery reads zeros after the last record as padding. Worth it with fsync=always. 0: off. */
    uint64_t prealloc_bytes;
    /* fsync=always with a loop: a batch that opens no segment and needs no preallocation is
     * written and fdatasynced on the loop thread when, at commit time, no I/O event is waiting
     * for the loop (its epoll set has nothing ready: no client input, no thread-pool
     * completion), as Redis does in its event loop; else on the thread pool, so the loop keeps
     * serving during the sync. The hand-off costs two thread wake-ups per batch that a loop
     * with nothing else to do has no use for. Gathering after an inline sync also waits for
     * one record per descriptor that became ready during it (requests not read yet). */
    bool sync_inline_when_idle;
    /* ... and only while the last fdatasync took less than this (0: no limit): with slower
     * syncs the loop gathers the next batch better while a pool thread syncs. */
    uint64_t sync_inline_max_us;
};

struct wal_recovery {
    uint64_t snapshot_lsn, snapshot_term, snapshot_items;
    uint64_t records; /* log records applied after the snapshot */
    uint64_t last_lsn, last_term;
    uint64_t truncated_bytes; /* torn or (with repair) corrupt bytes cut from the log */
    uint64_t elapsed_ms;
    char warning[512]; /* non-empty when something was truncated (also logged) */
};

struct wal_stats {
    enum wal_fsync fsync;
    uint64_t last_lsn, last_term, written_lsn, durable_lsn;
    uint64_t snapshot_lsn, snapshot_term, snapshot_bytes;
    uint64_t log_bytes; /* bytes in live segments, pending included */
    uint64_t segments;
    uint64_t pending_bytes;  /* appended, not yet handed to a write */
    uint64_t commits, syncs; /* write jobs, fdatasyncs */
    uint64_t inline_syncs;   /* fdatasyncs of batches done on the loop thread */
    uint64_t last_sync_us;   /* duration of the last write+fdatasync job */
    uint64_t snapshots;      /* completed */
    bool snapshot_running;
    int last_snapshot_status;       /* 0 ok, else the error of the last attempt */
    uint64_t last_snapshot_ms;      /* its duration */
    uint64_t last_snapshot_wall_ms; /* when it ended (Unix ms), 0 = never */
    int io_error;                   /* 0, or the error that broke the log */
};

/* "always" | "everysec" | "no" -> *out; 0 or -EINVAL. */
int wal_fsync_parse(const char *s, enum wal_fsync *out);
const char *wal_fsync_name(enum wal_fsync mode);

/* Opens (creating) dir, takes its lock, lists its files and removes leftovers (*.tmp). loop may
 * be NULL (synchronous mode). Returns 0 with an owned wal in *out, or a negative code with a
 * sentence in err. The wal is not usable for appends until wal_recover succeeded. */
int wal_open(const char *dir, const struct wal_options *opt, uv_loop_t *loop, struct wal **out,
             char *err, size_t errlen);
/* Replays the newest snapshot through load (may be NULL) and every later log record through
 * apply, in lsn order; both borrow ud. A torn tail (bytes after the last valid record that hold
 * no valid record, in any later segment either) is cut off, saved to DIR/torn-<lsn>.bin and
 * reported in rep->warning and the log. A bad record followed by a valid one, a gap or a
 * term going backwards refuses: TD_ECORRUPT with a sentence in err naming file, offset and
 * lsn; other failures return their code (load/apply's non-zero value, I/O errors) with a
 * sentence in err. Must be called exactly once, before any append; after a failure the only
 * valid call is wal_close. */
int wal_recover(struct wal *w, snapshot_load_fn load, wal_apply_fn apply, void *ud,
                struct wal_recovery *rep, char *err, size_t errlen);

/* Buffers a record of argv[0..argc) in term (>= the last term, asserted); its lsn goes to *lsn
 * (may be NULL). Nothing is written before wal_commit. Returns 0, or the sticky I/O error. */
int wal_append(struct wal *w, uint64_t term, size_t argc, const struct slice *argv, uint64_t *lsn);
/* Buffers a record received verbatim (replication): rec->lsn must be the next lsn and its term
 * not lower than the last one, else TD_ECORRUPT. */
int wal_append_record(struct wal *w, const struct walrec *rec);
/* Hands everything buffered to one write (and, for fsync=always, one fdatasync): off the loop
 * thread when it syncs or opens a segment, else inline, in which case on_written runs before
 * this returns. If a write is already in flight (or, for always, the next batch is gathering),
 * the next one starts when it ends, batching all that came in meanwhile. Call once per loop
 * iteration. Returns 0 or the sticky I/O error. */
int wal_commit(struct wal *w);

uint64_t wal_last_lsn(const struct wal *w);
uint64_t wal_last_term(const struct wal *w);
uint64_t wal_durable_lsn(const struct wal *w);
/* Records up to this lsn have been handed to write(2) (kill -9 safe, not power-loss safe). */
uint64_t wal_written_lsn(const struct wal *w);
/* Oldest lsn still readable from the log (records before it live only in the snapshot). */
uint64_t wal_first_lsn(const struct wal *w);
void wal_get_stats(const struct wal *w, struct wal_stats *st);
/* True when no write is in flight and nothing is buffered. */
bool wal_is_idle(const struct wal *w);

/* Starts a snapshot of the state at the last appended lsn: iterate runs in a fork()ed child
 * (copy-on-write memory; the loop is blocked only for fork itself) and writes
 * DIR/snap-<lsn>.snap; when it is durable, segments and snapshots it makes obsolete are
 * deleted and done (may be NULL) is called on the loop thread. Returns 0 (done will be called
 * exactly once, possibly before returning in synchronous mode) or -EBUSY when a snapshot is
 * already running, or another negative code. */
int wal_snapshot_start(struct wal *w, wal_iterate_fn iterate, void *iterate_ud,
                       wal_snapshot_cb done, void *done_ud);
/* Writes a snapshot in the calling thread, blocking until it is durable (Redis's SAVE; also for
 * shutdown). Returns 0, -EBUSY when a background snapshot is running, or the error. */
int wal_snapshot_save(struct wal *w, wal_iterate_fn iterate, void *iterate_ud);
bool wal_snapshot_running(const struct wal *w);
/* Automatic compaction rule (Redis auto-aof-rewrite): true when no snapshot is running and
 * the log holds at least min_bytes and has grown past pct percent of the last snapshot. */
bool wal_snapshot_due(const struct wal *w, uint64_t min_bytes, unsigned pct);

/* Reads records with from_lsn <= lsn <= written lsn, in order, stopping after about max_bytes
 * (at least one record). Returns the number of records delivered, 0 when none is available
 * yet, -ENOENT when from_lsn is older than the log (compacted: send a snapshot instead), or
 * another negative code. For replication catch-up. */
int64_t wal_read(struct wal *w, uint64_t from_lsn, size_t max_bytes, wal_record_fn fn, void *ud);
/* The term of the record at lsn into *term (lsn 0 -> term 0; the snapshot lsn -> its term).
 * -ENOENT when lsn is beyond the log or compacted. */
int wal_term_at(struct wal *w, uint64_t lsn, uint64_t *term);
/* Removes every record after lsn (a replica discarding a divergent suffix). The discarded
 * records are appended verbatim to DIR/discarded-<term>.log (term of the first one) before
 * anything is cut, and their count stored in *ndiscarded (may be NULL). Requires an idle log
 * (-EBUSY otherwise) and lsn >= the snapshot lsn (-ERANGE). */
int wal_truncate_after(struct wal *w, uint64_t lsn, uint64_t *ndiscarded);
/* Before a full resync replaces everything: keeps the snapshot (at S) as the audit of records
 * common+1..S (common < S, else -ERANGE), hard-linked (no copy) as
 * DIR/discarded-<S's term>-<S>.snap, with a "# ..." line naming it appended to
 * DIR/discarded-<S's term>.txt. *again is set when an earlier, unfinished attempt kept it
 * already (the same name is the same state; nothing is added). path (may be NULL) receives the
 * kept file's path. Requires an idle log as wal_truncate_after does (-EBUSY), so a truncation
 * right after it is not refused for that. 0 or a negative code. */
int wal_keep_snapshot_audit(struct wal *w, uint64_t common, bool *again, char *path,
                            size_t pathlen);
/* The term boundaries kept below the snapshot (store/termhist.h; borrowed, valid until the
 * next snapshot, install or close). */
const struct termhist *wal_term_history(const struct wal *w);
/* Replaces everything with the complete snapshot file at path (a replica's full resync): path
 * is renamed into DIR, every segment and older snapshot is deleted, the next lsn becomes the
 * snapshot's lsn + 1. The caller then reloads its keyspace from the snapshot. Requires an idle
 * log. */
int wal_install_snapshot(struct wal *w, const char *path);

/* Flushes and fsyncs what is buffered, stops a running snapshot child, releases the directory
 * lock, frees w and then calls cb (may be NULL) on the loop thread -- synchronously when w
 * has no loop. w must not be used after this call. */
void wal_close(struct wal *w, wal_close_cb cb, void *ud);

#endif
