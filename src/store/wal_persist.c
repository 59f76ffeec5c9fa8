/* SPDX-License-Identifier: MIT */
/* store/wal_persist.c -- persist_ops over the write-ahead log (see wal_persist.h).
 *
 * Every write command's resolved record becomes one log record in the current term (1 until
 * replication assigns terms); the server calls flush once per loop iteration, which becomes one
 * wal_commit (one write, plus one fdatasync for fsync=always, off the loop thread). The LSN that
 * releases held replies comes from the log's on_written callback for everysec/no and from
 * on_durable for always, so a reply never leaves before its record reached the kernel.
 *
 * Snapshots: SAVE writes one in the loop thread (blocking, as Redis's SAVE); a timer checks the
 * compaction rule (log grew past min bytes and pct% of the last snapshot, Redis's
 * auto-aof-rewrite) and starts a fork()ed one. Either way, the segments it covers are deleted
 * once it is durable. */
#include "store/wal_persist.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "store/keyspace.h"

#define DEFAULT_CHECK_MS 100
/* fsync=always: gather the next batch for up to 1 ms (libuv's timer resolution) after an
 * fdatasync that took 0.5 ms or more; below that the disk is fast enough that waiting for
 * stragglers would cost more than a second fdatasync. */
#define GATHER_MS 1
#define GATHER_MIN_SYNC_US 500
/* fsync=always: zeros written ahead of the log's end, so that each fdatasync flushes data only
 * (no new file size to journal): about half the fdatasync time on ext4 here. */
#define PREALLOC_BYTES (1u << 20)

struct wal_persist {
    struct wal *wal;
    struct db *db;
    struct wal_persist_config cfg;
    uv_loop_t *loop;
    uv_timer_t timer;
    bool timer_open;
    persist_durable_fn durable;
    void *durable_ctx;
    wal_persist_written_fn watch;
    void *watch_ud;
    uint64_t term;
    struct wal_recovery rep;
    uint64_t snapshot_keys;     /* keys the startup loaded from the snapshot */
    uint64_t dirty_at_snapshot; /* db->dirty when the running snapshot started */
    uint64_t auto_snapshots, saves;
    int64_t last_save_wall_ms; /* last successful snapshot (or startup), Unix ms */
    int last_status;           /* of the last snapshot attempt: 0 ok */
    bool closing;
    int pending_closes;
    wal_persist_closed_cb closed_cb;
    void *closed_ud;
};

/* --- log callbacks --- */

static void release(struct wal_persist *wp, uint64_t lsn)
{
    if (wp->durable && !wp->closing)
        wp->durable(wp->durable_ctx, lsn);
}

static void on_written(void *ud, uint64_t lsn)
{
    struct wal_persist *wp = ud;
    if (wp->cfg.fsync != WAL_FSYNC_ALWAYS)
        release(wp, lsn);
    if (wp->watch && !wp->closing)
        wp->watch(wp->watch_ud, lsn);
}

static void on_durable(void *ud, uint64_t lsn)
{
    struct wal_persist *wp = ud;
    if (wp->cfg.fsync == WAL_FSYNC_ALWAYS)
        release(wp, lsn);
}

static void on_error(void *ud, int err)
{
    struct wal_persist *wp = ud;
    if (wp->cfg.on_error && !wp->closing)
        wp->cfg.on_error(wp->cfg.ud, err);
}

/* --- persist_ops --- */

static void ops_bind(void *ud, persist_durable_fn durable, void *ctx)
{
    struct wal_persist *wp = ud;
    wp->durable = durable;
    wp->durable_ctx = ctx;
}

static uint64_t ops_append(void *ud, int argc, const struct slice *argv)
{
    struct wal_persist *wp = ud;
    uint64_t lsn = 0;
    int r = wal_append(wp->wal, wp->term, (size_t)argc, argv, &lsn);
    if (r != 0) {
        /* The log is broken (on_error has stopped the server or is about to): this write can
         * never become durable, so its reply is held until the connection closes. */
        return UINT64_MAX;
    }
    return lsn;
}

static void ops_flush(void *ud)
{
    struct wal_persist *wp = ud;
    wal_commit(wp->wal); /* an error is sticky and reported once through on_error */
}

static void snapshot_succeeded(struct wal_persist *wp)
{
    wp->last_status = 0;
    wp->last_save_wall_ms = (int64_t)clock_wall_ms();
    struct db *db = wp->db;
    db->dirty = db->dirty > wp->dirty_at_snapshot ? db->dirty - wp->dirty_at_snapshot : 0;
}

static int ops_save(void *ud, char *err, size_t errlen)
{
    struct wal_persist *wp = ud;
    uint64_t t0 = clock_now_ms();
    wp->dirty_at_snapshot = wp->db->dirty;
    int r = wal_snapshot_save(wp->wal, persist_snapshot_iterate, wp->db);
    if (r == -EBUSY) {
        snprintf(err, errlen, "Background save already in progress");
        return r;
    }
    wp->last_status = r;
    if (r != 0) {
        snprintf(err, errlen, "snapshot failed: %s", td_strerror(r));
        log_warn("persist", "SAVE failed", "err=%s", td_strerror(r));
        return r;
    }
    wp->saves++;
    snapshot_succeeded(wp);
    log_notice("persist", "SAVE done", "lsn=%" PRIu64 " keys=%" PRIu64 " ms=%" PRIu64,
               wal_last_lsn(wp->wal), keyspace_size(wp->db->ks), clock_now_ms() - t0);
    return 0;
}

static void ops_info(void *ud, struct buf *o)
{
    struct wal_persist *wp = ud;
    struct wal_stats st;
    wal_get_stats(wp->wal, &st);
    const char *last_ok = st.last_snapshot_status == 0 ? "ok" : "err";
    int64_t last_snap_sec =
        st.last_snapshot_wall_ms ? (int64_t)(st.last_snapshot_wall_ms / 1000) : -1;
    int64_t last_snap_dur = st.last_snapshot_wall_ms ? (int64_t)(st.last_snapshot_ms / 1000) : -1;
    /* The fields Redis clients and tools read, mapped onto the log: the log is the AOF, a
     * snapshot is both an RDB save and an AOF rewrite (it compacts the log). */
    buf_printf(o,
               "rdb_bgsave_in_progress:%d\r\nrdb_last_save_time:%" PRId64
               "\r\nrdb_last_bgsave_status:%s\r\nrdb_last_bgsave_time_sec:%" PRId64
               "\r\nrdb_saves:%" PRIu64 "\r\nrdb_last_load_keys_loaded:%" PRIu64
               "\r\naof_enabled:1\r\naof_rewrite_in_progress:%d\r\naof_rewrite_scheduled:0"
               "\r\naof_last_rewrite_time_sec:%" PRId64 "\r\naof_rewrites:%" PRIu64
               "\r\naof_last_bgrewrite_status:%s\r\naof_last_write_status:%s"
               "\r\naof_current_size:%" PRIu64 "\r\naof_base_size:%" PRIu64
               "\r\naof_buffer_length:%" PRIu64 "\r\n",
               st.snapshot_running, wp->last_save_wall_ms / 1000, last_ok, last_snap_dur,
               st.snapshots, wp->snapshot_keys, st.snapshot_running, last_snap_dur, st.snapshots,
               last_ok, st.io_error ? "err" : "ok", st.log_bytes, st.snapshot_bytes,
               st.pending_bytes);
    buf_printf(o,
               "tandem_persistence:wal\r\ntandem_fsync:%s\r\ntandem_term:%" PRIu64
               "\r\ntandem_last_lsn:%" PRIu64 "\r\ntandem_written_lsn:%" PRIu64
               "\r\ntandem_durable_lsn:%" PRIu64 "\r\ntandem_first_lsn:%" PRIu64
               "\r\ntandem_log_bytes:%" PRIu64 "\r\ntandem_log_segments:%" PRIu64
               "\r\ntandem_log_commits:%" PRIu64 "\r\ntandem_log_syncs:%" PRIu64
               "\r\ntandem_log_inline_syncs:%" PRIu64 "\r\ntandem_log_last_sync_us:%" PRIu64
               "\r\ntandem_log_error:%s\r\n",
               wal_fsync_name(st.fsync), wp->term, st.last_lsn, st.written_lsn, st.durable_lsn,
               wal_first_lsn(wp->wal), st.log_bytes, st.segments, st.commits, st.syncs,
               st.inline_syncs, st.last_sync_us, st.io_error ? td_errname(st.io_error) : "none");
    buf_printf(o,
               "tandem_snapshot_lsn:%" PRIu64 "\r\ntandem_snapshot_term:%" PRIu64
               "\r\ntandem_snapshot_bytes:%" PRIu64 "\r\ntandem_snapshot_in_progress:%d"
               "\r\ntandem_snapshots:%" PRIu64 "\r\ntandem_snapshots_automatic:%" PRIu64
               "\r\ntandem_last_snapshot_status:%s\r\ntandem_last_snapshot_time:%" PRId64
               "\r\ntandem_last_snapshot_ms:%" PRIu64 "\r\ntandem_snapshot_min_bytes:%" PRIu64
               "\r\ntandem_snapshot_growth_pct:%" PRIu64 "\r\n",
               st.snapshot_lsn, st.snapshot_term, st.snapshot_bytes, st.snapshot_running,
               st.snapshots, wp->auto_snapshots,
               st.last_snapshot_status == 0 ? "ok" : td_errname(st.last_snapshot_status),
               last_snap_sec, st.last_snapshot_ms, wp->cfg.snapshot_min_bytes,
               wp->cfg.snapshot_growth_pct);
    buf_printf(
        o,
        "tandem_recovered_snapshot_lsn:%" PRIu64 "\r\ntandem_recovered_snapshot_keys:%" PRIu64
        "\r\ntandem_recovered_records:%" PRIu64 "\r\ntandem_recovered_last_lsn:%" PRIu64
        "\r\ntandem_recovered_truncated_bytes:%" PRIu64 "\r\ntandem_recovery_ms:%" PRIu64 "\r\n",
        wp->rep.snapshot_lsn, wp->snapshot_keys, wp->rep.records, wp->rep.last_lsn,
        wp->rep.truncated_bytes, wp->rep.elapsed_ms);
}

static void snapshot_done(void *ud, int status, uint64_t lsn);

/* BGSAVE: a fork()ed snapshot, as the automatic ones (Redis's BGSAVE). */
static int ops_bgsave(void *ud, char *err, size_t errlen)
{
    struct wal_persist *wp = ud;
    if (wal_snapshot_running(wp->wal)) {
        snprintf(err, errlen, "Background save already in progress");
        return -EBUSY;
    }
    wp->dirty_at_snapshot = wp->db->dirty;
    int r = wal_snapshot_start(wp->wal, persist_snapshot_iterate, wp->db, snapshot_done, wp);
    if (r == -EBUSY) {
        snprintf(err, errlen, "Background save already in progress");
        return r;
    }
    if (r != 0) {
        snprintf(err, errlen, "cannot start a snapshot: %s", td_strerror(r));
        log_warn("persist", "BGSAVE failed", "err=%s", td_strerror(r));
        return r;
    }
    wp->saves++;
    log_notice("persist", "BGSAVE started", "lsn=%" PRIu64, wal_last_lsn(wp->wal));
    return 0;
}

/* LASTSAVE: the last successful snapshot (or the start), Unix seconds. */
static int64_t ops_lastsave(void *ud)
{
    struct wal_persist *wp = ud;
    return wp->last_save_wall_ms / 1000;
}

/* The table the server calls; ud is the struct wal_persist. */
const struct persist_ops wal_persist_ops = {ops_bind, ops_append, ops_flush,   ops_save,
                                            ops_info, ops_bgsave, ops_lastsave};

/* snapshot_load_fn for recovery: persist_snapshot_load, counting the keys (items other than
 * hints and records) for INFO's rdb_last_load_keys_loaded. */
static int load_item(void *ud, const struct snapshot_item *it)
{
    struct wal_persist *wp = ud;
    int r = persist_snapshot_load(wp->db, it);
    if (r == 0 && (it->type == SNAPSHOT_TYPE_STRING || it->type == SNAPSHOT_TYPE_HASH))
        wp->snapshot_keys++;
    return r;
}

static int apply_record(void *ud, uint64_t lsn, uint64_t term, size_t argc,
                        const struct slice *argv)
{
    struct wal_persist *wp = ud;
    return persist_wal_apply(wp->db, lsn, term, argc, argv);
}

/* --- automatic snapshots --- */

static void snapshot_done(void *ud, int status, uint64_t lsn)
{
    struct wal_persist *wp = ud;
    (void)lsn;
    wp->last_status = status;
    if (status == 0)
        snapshot_succeeded(wp);
}

static void check_timer_cb(uv_timer_t *t)
{
    struct wal_persist *wp = t->data;
    if (wp->closing || wp->cfg.snapshot_growth_pct == 0)
        return;
    if (!wal_snapshot_due(wp->wal, wp->cfg.snapshot_min_bytes,
                          (unsigned)wp->cfg.snapshot_growth_pct))
        return;
    struct wal_stats st;
    wal_get_stats(wp->wal, &st);
    log_notice("persist", "automatic snapshot", "log_bytes=%" PRIu64 " snapshot_bytes=%" PRIu64,
               st.log_bytes, st.snapshot_bytes);
    wp->dirty_at_snapshot = wp->db->dirty;
    int r = wal_snapshot_start(wp->wal, persist_snapshot_iterate, wp->db, snapshot_done, wp);
    if (r == 0)
        wp->auto_snapshots++;
    else if (r != -EBUSY)
        log_warn("persist", "cannot start a snapshot", "err=%s", td_strerror(r));
}

/* --- life cycle --- */

/* Opens and recovers dir into db (see the header). The log's callbacks point at wp, which lives
 * until wal_persist_close; db must stay alive as long. Loop thread (or no loop: tests). */
int wal_persist_open(const char *dir, const struct wal_persist_config *cfg, uv_loop_t *loop,
                     struct db *db, struct wal_persist **out, struct wal_recovery *rep, char *err,
                     size_t errlen)
{
    struct wal_persist *wp = xcalloc(1, sizeof(*wp));
    wp->cfg = *cfg;
    if (wp->cfg.check_interval_ms == 0)
        wp->cfg.check_interval_ms = DEFAULT_CHECK_MS;
    wp->db = db;
    wp->loop = loop;
    struct wal_options o;
    memset(&o, 0, sizeof(o));
    o.fsync = cfg->fsync;
    o.segment_bytes = cfg->segment_bytes;
    o.snapshot_in_process = cfg->snapshot_in_process;
    o.repair = cfg->repair;
    o.gather_ms = GATHER_MS;
    o.gather_min_sync_us = GATHER_MIN_SYNC_US;
    o.prealloc_bytes = cfg->fsync == WAL_FSYNC_ALWAYS ? PREALLOC_BYTES : 0;
    o.sync_inline_when_idle = true;
    o.sync_inline_max_us = GATHER_MIN_SYNC_US;
    o.on_durable = on_durable;
    o.on_written = on_written;
    o.on_error = on_error;
    o.ud = wp;
    int r = wal_open(dir, &o, loop, &wp->wal, err, errlen);
    if (r != 0) {
        free(wp);
        return r;
    }
    r = wal_recover(wp->wal, load_item, apply_record, wp, &wp->rep, err, errlen);
    if (r != 0) {
        wp->closing = true;
        wal_close(wp->wal, NULL, NULL);
        free(wp);
        return r;
    }
    /* Replay counted every applied record as a change; none is unsaved. */
    db->dirty = 0;
    wp->term = wal_last_term(wp->wal) ? wal_last_term(wp->wal) : 1;
    wp->last_save_wall_ms = (int64_t)clock_wall_ms();
    if (rep)
        *rep = wp->rep;
    *out = wp;
    return 0;
}

/* Starts the timer that checks the automatic snapshot rule every check_interval_ms. Called once,
 * after the server is listening. */
void wal_persist_start(struct wal_persist *wp)
{
    TD_ASSERT(wp->loop != NULL && !wp->timer_open);
    uv_timer_init(wp->loop, &wp->timer);
    wp->timer.data = wp;
    wp->timer_open = true;
    uv_timer_start(&wp->timer, check_timer_cb, wp->cfg.check_interval_ms,
                   wp->cfg.check_interval_ms);
}

/* Keys the startup loaded from the snapshot (its items other than hints). */
uint64_t wal_persist_snapshot_keys(const struct wal_persist *wp)
{
    return wp->snapshot_keys;
}

/* Returns the log (borrowed for wp's life). */
void wal_persist_set_term(struct wal_persist *wp, uint64_t term)
{
    wp->term = term;
}

void wal_persist_watch(struct wal_persist *wp, wal_persist_written_fn fn, void *ud)
{
    wp->watch = fn;
    wp->watch_ud = ud;
}

struct wal *wal_persist_wal(struct wal_persist *wp)
{
    return wp->wal;
}

static void one_closed(struct wal_persist *wp)
{
    if (--wp->pending_closes > 0)
        return;
    wal_persist_closed_cb cb = wp->closed_cb;
    void *ud = wp->closed_ud;
    free(wp);
    if (cb)
        cb(ud);
}

static void timer_closed(uv_handle_t *h)
{
    one_closed(h->data);
}

static void wal_closed(void *ud)
{
    one_closed(ud);
}

/* Closes the timer and the log (final write + fsync, a running snapshot child is stopped), then
 * frees wp and calls cb(ud) on the loop thread. From now on nothing reaches the server's durable
 * callback or on_error. */
void wal_persist_close(struct wal_persist *wp, wal_persist_closed_cb cb, void *ud)
{
    TD_ASSERT(!wp->closing);
    wp->closing = true;
    wp->closed_cb = cb;
    wp->closed_ud = ud;
    /* One extra count so that a synchronous wal close cannot free wp under our feet. */
    wp->pending_closes = 2 + (wp->timer_open ? 1 : 0);
    if (wp->timer_open)
        uv_close((uv_handle_t *)&wp->timer, timer_closed);
    wal_close(wp->wal, wal_closed, wp);
    one_closed(wp);
}
