/* SPDX-License-Identifier: MIT */
/* store/wal.c -- write-ahead log: segments, group commit, snapshots, recovery.
 *
 * Files in DIR:
 *   wal-<first lsn, 20 digits>.log   segments; records (proto/walrec.h) back to back, the first
 *                                    one carrying the lsn in the name, +1 each
 *   snap-<lsn>.snap                  the newest snapshot: state after record <lsn>
 *   snap-<lsn>.tmp                   a snapshot being written (deleted at open)
 *   torn-<lsn>.bin                   bytes cut from a torn tail at recovery, after record <lsn>
 *   discarded-<term>.log             records removed by wal_truncate_after (exact bytes)
 *   discarded-<term>.txt             the same records as text lines, for people
 *   discarded-<term>-<lsn>.snap      a snapshot kept (hard link) as the audit of divergent
 *                                    records folded into it (wal_keep_snapshot_audit)
 *   term-history                     term boundaries up to the snapshot (store/termhist.h)
 *   LOCK                             flock()ed while a process owns DIR
 *
 * Write path (loop thread unless noted):
 *   append -> record encoded into `pending`
 *   commit -> if no job is in flight, `pending` becomes the job's buffer and the job runs: pwrite
 *             at the segment offset, [at each segment switch: fdatasync + close the old
 *             segment, create the next one, fsync DIR], fdatasync when the policy asks;
 *             otherwise the commit is remembered and issued when the running job ends, with
 *             everything buffered meanwhile (group commit: one write + one fdatasync per batch)
 *   done   -> written/durable lsn advance, on_written(written lsn), on_durable(durable lsn)
 * Where a job runs: one that fdatasyncs or switches segments runs on the libuv thread pool; a
 * plain write (fsync=everysec/no, no switch) runs inline on the loop thread, as Redis writes its
 * AOF: a pwrite into the page cache costs microseconds, less than the hand-off to a pool thread
 * and back, and its reply can leave in the same loop iteration. The once-a-second fdatasync of
 * everysec is a separate sync job on the pool that holds a dup() of the segment fd, so writes go
 * on while it runs; it makes durable what was written when it started.
 * Gathering (fsync=always, opt.gather_ms > 0): clients whose replies a sync released come back
 * with their next writes a moment later. Dispatching the next batch with the first of them
 * would leave the rest for the batch after, and a closed population of clients settles into
 * two groups that take turns, each waiting for two fdatasyncs per round trip. So after a sync
 * (that took at least opt.gather_min_sync_us) the next batch waits until as many records are
 * buffered as the finished batch held (plus what was already waiting), or gather_ms passed:
 * one group, one fdatasync per round trip.
 * Syncs on the loop thread (fsync=always, opt.sync_inline_when_idle): when the loop has no
 * event waiting at commit time, the batch is written and fdatasynced right there, as Redis
 * does, saving the hand-off to a pool thread and the wake-up back. Requests that arrive during
 * such a sync stay unread until it ends, so the gathering that follows also counts one record
 * per descriptor ready at that point. Even so, on a disk whose fdatasync takes milliseconds
 * the loop gathers better while a pool thread syncs (measured with 50 clients: 28 instead of
 * 33-36 records per fdatasync, 20-35% less throughput), so a batch syncs inline only while the
 * last fdatasync was fast (below opt.gather_min_sync_us, when gathering does not apply): there
 * the hand-off is a larger share of the cost and the loop has little to read meanwhile.
 * Only the job touches the segment fd while it is in flight; one job at a time keeps bytes in
 * lsn order. A segment is closed only after an fdatasync, so a later segment never exists
 * next to a torn earlier one: corruption that is not at the very end is real corruption.
 *
 * Snapshots: the state at lsn S is dumped by a fork()ed child (copy-on-write) to snap-S.tmp,
 * fsynced, renamed to snap-S.snap, DIR fsynced. A rotation is requested at the same time, so
 * segments ending at or before S can then be deleted. Recovery: newest snapshot, then every
 * record after S; see docs/wal.md for the rules that decide truncation versus refusal. */
#include "store/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/fsio.h"
#include "base/log.h"
#include "store/termhist.h"

#define DEFAULT_SEGMENT_BYTES (64ull << 20)
#define CHILD_POLL_MS 10
#define KEEP_BUF_BYTES (4u << 20)
#define READ_CHUNK (512u << 10) /* wal_read reads segments in pieces of this size */
#define RPOS_SPACING (64u << 10) /* wal_read remembers a record position every this many bytes */

/* A position learned by wal_read: record lsn starts at byte off of the segment named seg. */
struct rpos {
    uint64_t lsn, seg, off;
};

struct seg {
    uint64_t first_lsn;
    uint64_t bytes;      /* up to the end of its last record */
    uint64_t file_bytes; /* its size at recovery: bytes plus zero padding (preallocation) */
};

/* A segment switch inside a batch: bytes from `at` on go to a new segment named `lsn`. */
struct rot {
    size_t at;
    uint64_t lsn;
};

struct rots {
    struct rot *v;
    size_t n, cap;
};

/* One batch handed to the thread pool. Fields marked "out" are written by the job. */
struct wal_job {
    struct buf data;
    struct rots rots;
    int fd;            /* in: current segment or -1; out: current after the job */
    uint64_t off;      /* in/out: write offset in fd */
    uint64_t zero_end; /* in/out: fd's size; bytes in [off, zero_end) are written zeros */
    uint64_t prealloc; /* in: keep at least this many zero bytes ahead of off (0: none) */
    bool sync;
    uint64_t last_lsn;
    uint64_t records;
    const char *dir;
    int err;              /* out */
    bool synced;          /* out: fdatasync of everything done */
    uint64_t synced_upto; /* out: last lsn of the last segment closed (and synced) */
    uint64_t us;          /* out: duration */
    bool ran_inline;      /* it synced on the loop thread */
};

struct wal {
    char *dir;
    struct wal_options opt;
    uv_loop_t *loop;
    int lock_fd;

    struct seg *segs;
    size_t nsegs, capsegs;
    uint64_t *snaps; /* snapshot files found at open (lsn), sorted */
    size_t nsnaps;
    /* Record positions wal_read saw, sorted by lsn, at least RPOS_SPACING bytes apart within a
     * segment: a read starts at the nearest one instead of the segment's first byte. Cleared
     * whenever segment bytes may change under them (truncation, snapshot install, removal). */
    struct rpos *rpos;
    size_t nrpos, caprpos;

    int fd;            /* current segment, owned by the job while busy */
    uint64_t off;      /* end of its last record: where the next one goes */
    uint64_t zero_end; /* its file size: [off, zero_end) is preallocated zero padding */
    uint64_t next_lsn, last_term;
    uint64_t written_lsn, durable_lsn;
    uint64_t snap_lsn, snap_term, snap_bytes;
    struct termhist th; /* term boundaries up to snap_lsn (th.snap_lsn == snap_lsn) */

    struct buf pending;
    struct rots pending_rots;
    bool want_rotate;
    uint64_t cur_seg_bytes; /* bytes in the current segment, pending included */
    uint64_t growth;        /* bytes appended since the last snapshot started */
    uint64_t growth_at_snap;

    bool recovered, closing;
    int err;

    struct wal_job job;
    bool busy, commit_wanted, sync_wanted;
    uv_work_t work;
    /* The everysec sync job: fdatasync of a dup of the segment fd, concurrent with writes. */
    uv_work_t sync_work;
    bool sync_busy;
    int sync_fd, sync_err;
    uint64_t sync_upto, sync_us;
    uv_timer_t sync_timer, child_timer, gather_timer;
    uint64_t pending_records; /* appended since the last dispatch */
    bool gathering;
    uint64_t gather_target; /* dispatch once pending_records reaches this */
    int open_handles;

    pid_t child;
    uint64_t child_lsn, child_term, snap_started_ms;
    wal_snapshot_cb snap_cb;
    void *snap_ud;

    uint64_t commits, syncs, inline_syncs, last_sync_us, snapshots, last_snapshot_ms,
        last_snapshot_wall_ms;
    int last_snapshot_status;

    wal_close_cb close_cb;
    void *close_ud;
};

static void dispatch(struct wal *w);

/* ---- small helpers ---- */

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void seg_path(const struct wal *w, uint64_t lsn, char *out, size_t len)
{
    snprintf(out, len, "%s/wal-%020" PRIu64 ".log", w->dir, lsn);
}

static void snap_path(const char *dir, uint64_t lsn, const char *ext, char *out, size_t len)
{
    snprintf(out, len, "%s/snap-%020" PRIu64 ".%s", dir, lsn, ext);
}

static int pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t r = fsio_pwrite(fd, p, n, off);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return -EIO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static void segs_push(struct wal *w, uint64_t first_lsn, uint64_t bytes)
{
    if (w->nsegs == w->capsegs) {
        w->capsegs = w->capsegs ? w->capsegs * 2 : 8;
        w->segs = xrealloc(w->segs, w->capsegs * sizeof(*w->segs));
    }
    w->segs[w->nsegs].first_lsn = first_lsn;
    w->segs[w->nsegs].bytes = bytes;
    w->segs[w->nsegs].file_bytes = bytes;
    w->nsegs++;
}

static void segs_remove_first(struct wal *w, size_t k)
{
    if (k == 0)
        return;
    memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof(*w->segs));
    w->nsegs -= k;
    w->nrpos = 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_seg(const void *a, const void *b)
{
    return cmp_u64(&((const struct seg *)a)->first_lsn, &((const struct seg *)b)->first_lsn);
}

/* Parses "<prefix><20 digits><suffix>" into *lsn; true on a match. */
static bool parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *lsn)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), nl = strlen(name);
    if (nl != pl + 20 + sl || strncmp(name, prefix, pl) != 0 || strcmp(name + pl + 20, suffix))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < 20; i++) {
        char c = name[pl + i];
        if (c < '0' || c > '9')
            return false;
        uint64_t d = (uint64_t)(c - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *lsn = v;
    return true;
}

int wal_fsync_parse(const char *s, enum wal_fsync *out)
{
    if (strcasecmp(s, "always") == 0)
        *out = WAL_FSYNC_ALWAYS;
    else if (strcasecmp(s, "everysec") == 0)
        *out = WAL_FSYNC_EVERYSEC;
    else if (strcasecmp(s, "no") == 0)
        *out = WAL_FSYNC_NO;
    else
        return -EINVAL;
    return 0;
}

const char *wal_fsync_name(enum wal_fsync mode)
{
    switch (mode) {
    case WAL_FSYNC_ALWAYS:
        return "always";
    case WAL_FSYNC_EVERYSEC:
        return "everysec";
    case WAL_FSYNC_NO:
        return "no";
    }
    return "?";
}

/* ---- open ---- */

struct listing {
    struct wal *w;
    int err;
};

static int list_entry(void *ud, const char *name)
{
    struct listing *l = ud;
    struct wal *w = l->w;
    uint64_t lsn;
    size_t nl = strlen(name);
    if (parse_name(name, "wal-", ".log", &lsn)) {
        segs_push(w, lsn, 0);
    } else if (parse_name(name, "snap-", ".snap", &lsn)) {
        w->snaps = xrealloc(w->snaps, (w->nsnaps + 1) * sizeof(*w->snaps));
        w->snaps[w->nsnaps++] = lsn;
    } else if (nl > 4 && strcmp(name + nl - 4, ".tmp") == 0) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", w->dir, name);
        int r = fsio_unlink(path);
        if (r < 0 && r != -ENOENT)
            l->err = r;
    }
    return 0;
}

static void sync_timer_cb(uv_timer_t *t);

int wal_open(const char *dir, const struct wal_options *opt, uv_loop_t *loop, struct wal **out,
             char *err, size_t errlen)
{
    if (strlen(dir) == 0 || strlen(dir) > 3900)
        return fail(err, errlen, -ENAMETOOLONG, "wal: directory name empty or too long");
    int r = fsio_mkdir(dir, 0755);
    if (r < 0)
        return fail(err, errlen, r, "wal: cannot create directory %s: %s", dir, td_strerror(r));
    char path[4096];
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    int lock_fd = fsio_open(path, O_RDWR | O_CREAT, 0644);
    if (lock_fd < 0)
        return fail(err, errlen, lock_fd, "wal: cannot open %s: %s", path, td_strerror(lock_fd));
    r = fsio_lock(lock_fd);
    if (r < 0) {
        fsio_close(lock_fd);
        if (r == -EWOULDBLOCK)
            return fail(err, errlen, r, "wal: directory %s is in use by another tandem db process",
                        dir);
        return fail(err, errlen, r, "wal: cannot lock %s: %s", path, td_strerror(r));
    }
    struct wal *w = xcalloc(1, sizeof(*w));
    w->dir = xstrdup(dir);
    w->opt = *opt;
    if (w->opt.segment_bytes == 0)
        w->opt.segment_bytes = DEFAULT_SEGMENT_BYTES;
    w->loop = loop;
    w->lock_fd = lock_fd;
    w->fd = -1;
    w->sync_fd = -1;
    w->next_lsn = 1;
    buf_init(&w->pending);
    buf_init(&w->job.data);
    struct listing l = {w, 0};
    r = fsio_list_dir(dir, list_entry, &l);
    if (r == 0)
        r = l.err;
    if (r < 0) {
        fail(err, errlen, r, "wal: cannot read directory %s: %s", dir, td_strerror(r));
        wal_close(w, NULL, NULL);
        return r;
    }
    if (w->nsegs > 1)
        qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_seg);
    if (w->nsnaps > 1)
        qsort(w->snaps, w->nsnaps, sizeof(*w->snaps), cmp_u64);
    if (loop) {
        uv_timer_init(loop, &w->sync_timer);
        uv_timer_init(loop, &w->child_timer);
        uv_timer_init(loop, &w->gather_timer);
        w->sync_timer.data = w;
        w->child_timer.data = w;
        w->gather_timer.data = w;
        w->open_handles = 3;
        if (w->opt.fsync == WAL_FSYNC_EVERYSEC) {
            uv_timer_start(&w->sync_timer, sync_timer_cb, 1000, 1000);
            uv_unref((uv_handle_t *)&w->sync_timer);
        }
    }
    *out = w;
    return 0;
}

/* ---- recovery ---- */

struct replay {
    struct wal *w;
    wal_apply_fn apply;
    void *ud;
    struct slice *argv;
    size_t cap;
    uint64_t records;
    uint64_t bad_lsn; /* set when a record after the snapshot has a term below it */
};

static int replay_rec(void *ud, const struct walrec *rec)
{
    struct replay *rp = ud;
    if (rec->lsn <= rp->w->snap_lsn)
        return 0;
    if (rec->term < rp->w->snap_term) {
        rp->bad_lsn = rec->lsn;
        return TD_ECORRUPT;
    }
    if (rec->argc > rp->cap) {
        rp->cap = rec->argc;
        rp->argv = xrealloc(rp->argv, rp->cap * sizeof(*rp->argv));
    }
    walrec_argv(rec, rp->argv);
    rp->records++;
    return rp->apply ? rp->apply(rp->ud, rec->lsn, rec->term, rec->argc, rp->argv) : 0;
}

/* Saves data[0..n) to DIR/<prefix>-<lsn>.bin durably (truncating an older file of that name). */
static int save_bytes(struct wal *w, const char *prefix, uint64_t lsn, struct buf *data)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s-%" PRIu64 ".bin", w->dir, prefix, lsn);
    int fd = fsio_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return fd;
    int r = fsio_write_all(fd, data->p, data->len);
    if (r == 0)
        r = fsio_fsync(fd);
    fsio_close(fd);
    return r;
}

/* Cuts segment i at byte `at`, removes every later segment; the cut bytes are saved first to
 * DIR/<prefix>-<last_lsn>.bin. */
static int cut_log(struct wal *w, size_t i, uint64_t at, const struct buf *seg_data,
                   const char *prefix, uint64_t last_lsn, uint64_t *cut_bytes)
{
    struct buf keep;
    buf_init(&keep);
    buf_append(&keep, seg_data->p + at, seg_data->len - at);
    char path[4096];
    int r = 0;
    for (size_t j = i + 1; j < w->nsegs && r == 0; j++) {
        seg_path(w, w->segs[j].first_lsn, path, sizeof(path));
        r = fsio_read_file(path, &keep);
    }
    *cut_bytes = keep.len;
    if (r == 0 && keep.len > 0)
        r = save_bytes(w, prefix, last_lsn, &keep);
    buf_free(&keep);
    if (r < 0)
        return r;
    seg_path(w, w->segs[i].first_lsn, path, sizeof(path));
    int fd = fsio_open(path, O_WRONLY, 0);
    if (fd < 0)
        return fd;
    r = fsio_ftruncate(fd, at);
    if (r == 0)
        r = fsio_fdatasync(fd);
    fsio_close(fd);
    for (size_t j = i + 1; j < w->nsegs && r == 0; j++) {
        seg_path(w, w->segs[j].first_lsn, path, sizeof(path));
        r = fsio_unlink(path);
    }
    if (r == 0)
        r = fsio_fsync_dir(w->dir);
    if (r == 0) {
        w->nsegs = i + 1;
        w->segs[i].bytes = at;
        w->nrpos = 0;
    }
    return r;
}

/* True when p[0..n) holds only zero bytes (preallocated, never written). */
static bool all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* True when some segment after i holds a valid record. */
static int later_valid(struct wal *w, size_t i, bool *found, uint64_t *lsn, char *which,
                       size_t wlen)
{
    *found = false;
    for (size_t j = i + 1; j < w->nsegs; j++) {
        char path[4096];
        struct buf b;
        buf_init(&b);
        seg_path(w, w->segs[j].first_lsn, path, sizeof(path));
        int r = fsio_read_file(path, &b);
        if (r < 0) {
            buf_free(&b);
            return r;
        }
        ssize_t v = walrec_find_valid(b.p, b.len, 0);
        if (v >= 0) {
            struct walrec rec;
            walrec_decode(b.p + v, b.len - (size_t)v, &rec);
            *found = true;
            *lsn = rec.lsn;
            snprintf(which, wlen, "%s at offset %zd", path, v);
            buf_free(&b);
            return 0;
        }
        buf_free(&b);
    }
    return 0;
}

int wal_recover(struct wal *w, snapshot_load_fn load, wal_apply_fn apply, void *ud,
                struct wal_recovery *rep, char *err, size_t errlen)
{
    TD_ASSERT(!w->recovered);
    struct wal_recovery local;
    if (rep == NULL)
        rep = &local;
    memset(rep, 0, sizeof(*rep));
    uint64_t t0 = clock_now_ms();
    char path[4096];
    int r;

    /* 1. The newest snapshot. */
    if (w->nsnaps > 0) {
        uint64_t lsn = w->snaps[w->nsnaps - 1];
        snap_path(w->dir, lsn, "snap", path, sizeof(path));
        struct snapshot_info info;
        char why[512];
        why[0] = '\0';
        r = snapshot_load(path, load, ud, &info, why, sizeof(why));
        if (r == 0 && info.lsn != lsn)
            r = fail(why, sizeof(why), TD_ECORRUPT, "snapshot %s: header says lsn %" PRIu64, path,
                     info.lsn);
        if (r == TD_ECORRUPT)
            return fail(err, errlen, r, "wal: %s; refusing to start (the snapshot is damaged)",
                        why);
        if (r < 0 && why[0])
            return fail(err, errlen, r, "wal: %s", why);
        if (r != 0)
            return fail(err, errlen, r, "wal: loading snapshot %s stopped: %s", path,
                        td_strerror(r));
        w->snap_lsn = info.lsn;
        w->snap_term = info.term;
        w->snap_bytes = info.bytes;
        r = termhist_load(w->dir, info.lsn, info.term, &w->th);
        if (r != 0 && r != -ENOENT)
            log_warn("wal", "term history ignored: terms below the snapshot are unknown",
                     "snapshot_lsn=%" PRIu64 " err=%s", info.lsn, td_strerror(r));
        rep->snapshot_lsn = info.lsn;
        rep->snapshot_term = info.term;
        rep->snapshot_items = info.items;
    }

    /* 2. Segments wholly covered by the snapshot are leftovers of an interrupted cleanup. */
    size_t drop = 0;
    while (drop + 1 < w->nsegs && w->segs[drop + 1].first_lsn <= w->snap_lsn + 1)
        drop++;
    for (size_t k = 0; k < drop; k++) {
        seg_path(w, w->segs[k].first_lsn, path, sizeof(path));
        r = fsio_unlink(path);
        if (r < 0 && r != -ENOENT)
            return fail(err, errlen, r, "wal: cannot remove %s: %s", path, td_strerror(r));
    }
    segs_remove_first(w, drop);
    if (w->nsegs > 0 && w->segs[0].first_lsn > w->snap_lsn + 1)
        return fail(err, errlen, TD_ECORRUPT,
                    "wal: the log starts at lsn %" PRIu64 " but the snapshot ends at lsn %" PRIu64
                    ": records %" PRIu64 "..%" PRIu64 " are missing; refusing to start",
                    w->segs[0].first_lsn, w->snap_lsn, w->snap_lsn + 1, w->segs[0].first_lsn - 1);

    /* 3. Replay every segment; the first bad byte ends the log or refuses. */
    struct replay rp = {w, apply, ud, NULL, 0, 0, 0};
    uint64_t log_last = 0, log_term = 0;
    uint64_t expect = w->nsegs > 0 ? w->segs[0].first_lsn : 0;
    r = 0;
    for (size_t i = 0; i < w->nsegs && r == 0; i++) {
        struct seg *s = &w->segs[i];
        seg_path(w, s->first_lsn, path, sizeof(path));
        if (s->first_lsn != expect) {
            r = fail(err, errlen, TD_ECORRUPT,
                     "wal: segment %s should start at lsn %" PRIu64
                     " (the log before it ends at lsn %" PRIu64 "); refusing to start",
                     path, expect, expect - 1);
            break;
        }
        struct buf data;
        buf_init(&data);
        r = fsio_read_file(path, &data);
        if (r < 0) {
            fail(err, errlen, r, "wal: cannot read %s: %s", path, td_strerror(r));
            buf_free(&data);
            break;
        }
        s->bytes = data.len;
        struct walrec_scan sc;
        r = walrec_scan(data.p, data.len, s->first_lsn, log_term, replay_rec, &rp, &sc);
        if (r != 0 && rp.bad_lsn != 0) {
            r = fail(err, errlen, TD_ECORRUPT,
                     "wal: record lsn %" PRIu64 " in %s has a term below the snapshot's (%" PRIu64
                     "); refusing to start",
                     rp.bad_lsn, path, w->snap_term);
        } else if (r != 0) {
            fail(err, errlen, r, "wal: replaying %s stopped: %s", path, td_strerror(r));
        }
        if (r != 0) {
            buf_free(&data);
            break;
        }
        if (sc.nrecords > 0) {
            log_last = sc.last_lsn;
            log_term = sc.last_term;
            expect = log_last + 1;
        }
        s->file_bytes = data.len;
        if (sc.status == WALREC_SCAN_TORN && all_zero(data.p + sc.good_len, data.len - sc.good_len))
            sc.status = WALREC_SCAN_CLEAN; /* preallocated padding, not damage */
        if (sc.status == WALREC_SCAN_CLEAN) {
            s->bytes = sc.good_len;
            buf_free(&data);
            continue;
        }
        bool follow = sc.status == WALREC_SCAN_CORRUPT;
        uint64_t follow_lsn = sc.next_lsn;
        char where[4200];
        snprintf(where, sizeof(where), "%s at offset %zu", path, sc.next_valid);
        if (!follow) {
            r = later_valid(w, i, &follow, &follow_lsn, where, sizeof(where));
            if (r < 0) {
                fail(err, errlen, r, "wal: reading segments after %s: %s", path, td_strerror(r));
                buf_free(&data);
                break;
            }
        }
        if (follow && !w->opt.repair) {
            if (sc.seq_break)
                r = fail(err, errlen, TD_ECORRUPT,
                         "wal: record at offset %zu of %s breaks the sequence (lsn %" PRIu64
                         " after lsn %" PRIu64 "); refusing to start. Restart with repair "
                         "enabled to cut the log after lsn %" PRIu64 " (later records are saved)",
                         sc.good_len, path, sc.next_lsn, log_last, log_last);
            else
                r = fail(err, errlen, TD_ECORRUPT,
                         "wal: corrupt record at offset %zu of %s (after lsn %" PRIu64
                         "), but a valid record (lsn %" PRIu64 ") follows in %s: the log is "
                         "damaged in the middle; refusing to start. Restart with repair enabled "
                         "to cut the log after lsn %" PRIu64 " (later records are saved)",
                         sc.good_len, path, log_last, follow_lsn, where, log_last);
            buf_free(&data);
            break;
        }
        uint64_t cut = 0;
        const char *prefix = follow ? "repaired" : "torn";
        r = cut_log(w, i, sc.good_len, &data, prefix, log_last, &cut);
        buf_free(&data);
        if (r < 0) {
            fail(err, errlen, r, "wal: cannot truncate %s: %s", path, td_strerror(r));
            break;
        }
        rep->truncated_bytes = cut;
        const char *base = strrchr(path, '/') + 1;
        snprintf(rep->warning, sizeof(rep->warning),
                 "%s log tail truncated: %" PRIu64 " bytes after lsn %" PRIu64
                 " at offset %zu of %.64s (%s); saved to %s-%" PRIu64 ".bin",
                 follow ? "corrupt" : "torn", cut, log_last, sc.good_len, base,
                 td_strerror(sc.reason), prefix, log_last);
        log_warn("wal", "log tail truncated",
                 "reason=%s bytes=%" PRIu64 " after_lsn=%" PRIu64
                 " file=%s offset=%zu saved=%s/%s-%" PRIu64 ".bin",
                 follow ? "corrupt_repaired" : "torn", cut, log_last, path, sc.good_len, w->dir,
                 prefix, log_last);
        break;
    }
    free(rp.argv);
    if (r != 0)
        return r;

    /* 4. Position the writer. */
    if (log_last >= w->snap_lsn && log_last > 0) {
        w->next_lsn = log_last + 1;
        w->last_term = log_term;
    } else {
        /* The log ends before the snapshot (or is empty): its records are all covered. */
        while (w->nsegs > 0) {
            struct seg *s = &w->segs[0];
            if (w->nsegs == 1 && s->bytes == 0 && s->first_lsn == w->snap_lsn + 1)
                break; /* an empty segment named for the next record: reuse it */
            seg_path(w, s->first_lsn, path, sizeof(path));
            r = fsio_unlink(path);
            if (r < 0)
                return fail(err, errlen, r, "wal: cannot remove %s: %s", path, td_strerror(r));
            segs_remove_first(w, 1);
        }
        w->next_lsn = w->snap_lsn + 1;
        w->last_term = w->snap_term;
    }
    if (w->nsegs > 0) {
        struct seg *s = &w->segs[w->nsegs - 1];
        if (s->bytes == 0 && s->first_lsn != w->next_lsn) {
            seg_path(w, s->first_lsn, path, sizeof(path));
            r = fsio_unlink(path);
            if (r < 0)
                return fail(err, errlen, r, "wal: cannot remove %s: %s", path, td_strerror(r));
            w->nsegs--;
        }
    }
    if (w->nsegs > 0) {
        struct seg *s = &w->segs[w->nsegs - 1];
        seg_path(w, s->first_lsn, path, sizeof(path));
        int fd = fsio_open(path, O_WRONLY, 0);
        if (fd < 0)
            return fail(err, errlen, fd, "wal: cannot open %s: %s", path, td_strerror(fd));
        /* What was replayed is about to be served: make sure it is on disk, even if the
         * previous process ran with fsync=no and was killed. */
        r = fsio_fdatasync(fd);
        if (r < 0) {
            fsio_close(fd);
            return fail(err, errlen, r, "wal: fdatasync %s: %s", path, td_strerror(r));
        }
        w->fd = fd;
        w->off = s->bytes;
        w->zero_end = s->file_bytes > s->bytes ? s->file_bytes : s->bytes;
        w->cur_seg_bytes = s->bytes;
        if (w->cur_seg_bytes >= w->opt.segment_bytes)
            w->want_rotate = true;
    } else {
        w->want_rotate = true;
    }
    w->written_lsn = w->durable_lsn = w->next_lsn - 1;
    w->growth = 0;
    for (size_t k = 0; k < w->nsegs; k++)
        w->growth += w->segs[k].bytes;

    /* 5. Older snapshots are obsolete. */
    for (size_t k = 0; k < w->nsnaps; k++) {
        if (w->snaps[k] == w->snap_lsn)
            continue;
        snap_path(w->dir, w->snaps[k], "snap", path, sizeof(path));
        fsio_unlink(path);
    }
    w->nsnaps = 0;
    r = fsio_fsync_dir(w->dir);
    if (r < 0)
        return fail(err, errlen, r, "wal: fsync %s: %s", w->dir, td_strerror(r));
    w->recovered = true;
    rep->records = rp.records;
    rep->last_lsn = w->next_lsn - 1;
    rep->last_term = w->last_term;
    rep->elapsed_ms = clock_now_ms() - t0;
    return 0;
}

/* Deletes the segments whose records all lie at or before the snapshot lsn; never the
 * current (last) one. Unlinks need no directory fsync: a segment that comes back after a
 * power loss is recognised as obsolete again at the next recovery. Returns the count. */
static size_t drop_obsolete(struct wal *w)
{
    size_t drop = 0;
    while (drop + 1 < w->nsegs && w->segs[drop + 1].first_lsn <= w->snap_lsn + 1)
        drop++;
    for (size_t k = 0; k < drop; k++) {
        char path[4096];
        seg_path(w, w->segs[k].first_lsn, path, sizeof(path));
        fsio_unlink(path);
    }
    segs_remove_first(w, drop);
    return drop;
}

/* After a snapshot at snap_lsn: when every record of the current (last) segment is covered by
 * it -- nothing was appended since the snapshot started, everything is written, no job owns the
 * fd -- the segment is deleted too, so a snapshot leaves no log behind it (a SAVE on an idle
 * server used to keep the whole current segment, up to 64 MiB). The snapshot started a
 * rotation, so the next record opens a new segment named snap_lsn + 1; wal_read of an lsn at or
 * before snap_lsn then says -ENOENT (send the snapshot), as for any compacted segment. The
 * records are durable in the snapshot, so the durable lsn moves up to snap_lsn. Returns true
 * when the segment went. */
static bool drop_covered_current(struct wal *w)
{
    if (w->nsegs != 1 || w->snap_lsn == 0 || w->busy || w->closing || w->err ||
        w->pending.len > 0 || w->pending_rots.n > 0 || !w->want_rotate)
        return false;
    if (w->next_lsn - 1 != w->snap_lsn || w->written_lsn != w->snap_lsn ||
        w->segs[0].first_lsn > w->snap_lsn)
        return false;
    char path[4096];
    seg_path(w, w->segs[0].first_lsn, path, sizeof(path));
    /* The everysec sync job may hold a dup of the fd: it syncs an unlinked file, harmlessly. */
    fsio_close(w->fd);
    w->fd = -1;
    w->off = w->zero_end = 0;
    w->cur_seg_bytes = 0;
    w->nsegs = 0;
    w->nrpos = 0; /* wal_read's remembered positions pointed into it */
    fsio_unlink(path);
    if (w->durable_lsn < w->snap_lsn) {
        w->durable_lsn = w->snap_lsn;
        if (w->opt.on_durable)
            w->opt.on_durable(w->opt.ud, w->durable_lsn);
    }
    return true;
}

/* ---- write path ---- */

static void set_error(struct wal *w, int e)
{
    if (w->err)
        return;
    w->err = e;
    log_error("wal", "log write failed, the log is now read-only", "err=%s dir=%s", td_strerror(e),
              w->dir);
    if (w->opt.on_error)
        w->opt.on_error(w->opt.ud, e);
}

/* Before appending a record: if a new segment is wanted, it starts with this record. */
static void place_rotation(struct wal *w)
{
    if (!w->want_rotate)
        return;
    w->want_rotate = false;
    w->cur_seg_bytes = 0;
    struct rots *r = &w->pending_rots;
    if (r->n > 0 && r->v[r->n - 1].at == w->pending.len)
        return; /* already switching here */
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
    }
    r->v[r->n].at = w->pending.len;
    r->v[r->n].lsn = w->next_lsn;
    r->n++;
}

static void appended(struct wal *w, size_t size, uint64_t term)
{
    w->next_lsn++;
    w->pending_records++;
    w->last_term = term;
    w->cur_seg_bytes += size;
    w->growth += size;
    if (w->cur_seg_bytes >= w->opt.segment_bytes)
        w->want_rotate = true;
}

int wal_append(struct wal *w, uint64_t term, size_t argc, const struct slice *argv, uint64_t *lsn)
{
    TD_ASSERT(w->recovered && !w->closing);
    if (w->err)
        return w->err;
    TD_ASSERT(term >= w->last_term);
    place_rotation(w);
    size_t n = walrec_encode(&w->pending, w->next_lsn, term, argc, argv);
    if (lsn)
        *lsn = w->next_lsn;
    appended(w, n, term);
    return 0;
}

int wal_append_record(struct wal *w, const struct walrec *rec)
{
    TD_ASSERT(w->recovered && !w->closing);
    if (w->err)
        return w->err;
    if (rec->lsn != w->next_lsn || rec->term < w->last_term)
        return TD_ECORRUPT;
    place_rotation(w);
    buf_append(&w->pending, rec->raw.p, rec->raw.len);
    appended(w, rec->raw.len, rec->term);
    return 0;
}

/* Runs on a thread-pool thread (or inline): touches only the job and fsio. For each segment
 * switch: write what belongs to the old segment, fdatasync and close it, create the new one
 * and fsync DIR so its name is durable; then the rest, then fdatasync when asked. */
/* Preallocation: writes zeros from the file's end so that at least j->prealloc bytes past the
 * write offset are initialized blocks, once fewer than half of that are left. Overwriting
 * written blocks inside the file's size changes no metadata, so the fdatasync after a record
 * flushes data only, without an ext4 journal commit for the new size (measured here: 0.6-0.8
 * ms instead of 1.0-1.7 ms). Recovery reads zeros after the last record as padding. */
static int prealloc(struct wal_job *j)
{
    if (j->prealloc == 0 || j->zero_end >= j->off + j->prealloc / 2)
        return 0;
    static const char zeros[64 * 1024];
    uint64_t from = j->zero_end > j->off ? j->zero_end : j->off;
    uint64_t to = j->off + j->prealloc;
    while (from < to) {
        size_t n = to - from < sizeof(zeros) ? (size_t)(to - from) : sizeof(zeros);
        int r = pwrite_all(j->fd, zeros, n, from);
        if (r != 0)
            return r;
        from += n;
    }
    j->zero_end = to;
    return 0;
}

static void run_job(struct wal_job *j)
{
    uint64_t t0 = clock_now_us();
    size_t pos = 0;
    int r = 0;
    for (size_t k = 0; k <= j->rots.n && r == 0; k++) {
        size_t end = k < j->rots.n ? j->rots.v[k].at : j->data.len;
        if (end > pos) {
            TD_ASSERT(j->fd >= 0);
            r = pwrite_all(j->fd, j->data.p + pos, end - pos, j->off);
            if (r != 0)
                break;
            j->off += end - pos;
            if (j->zero_end < j->off)
                j->zero_end = j->off;
            pos = end;
        }
        if (k == j->rots.n) {
            if (j->fd >= 0)
                r = prealloc(j);
            break;
        }
        if (j->fd >= 0) {
            r = fsio_fdatasync(j->fd);
            if (r != 0)
                break;
            j->synced_upto = j->rots.v[k].lsn - 1;
            fsio_close(j->fd);
            j->fd = -1;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/wal-%020" PRIu64 ".log", j->dir, j->rots.v[k].lsn);
        int fd = fsio_open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) {
            r = fd;
            break;
        }
        j->fd = fd;
        j->off = 0;
        j->zero_end = 0;
        r = fsio_fsync_dir(j->dir);
    }
    if (r == 0 && j->sync && j->fd >= 0) {
        r = fsio_fdatasync(j->fd);
        if (r == 0)
            j->synced = true;
    }
    j->err = r;
    j->us = clock_now_us() - t0;
}

static void finish_close(struct wal *w);

/* True when no I/O event is ready for the loop: its epoll descriptor, which is readable while
 * any descriptor in its set is ready, polls empty. One poll(2) with no wait. */
static bool loop_has_no_events(uv_loop_t *loop)
{
    struct pollfd p = {.fd = uv_backend_fd(loop), .events = POLLIN};
    if (p.fd < 0)
        return false;
    int r = poll(&p, 1, 0);
    return r == 0;
}

/* Counts the descriptors ready for the loop (up to 256), without consuming anything: libuv's
 * epoll set is level-triggered, so what epoll_wait reports here it reports again to the loop.
 * Used after an fdatasync on the loop thread: the clients whose requests arrived during it
 * are still unread, and the next batch should wait for them as well (see gathering). */
static uint64_t loop_ready_count(uv_loop_t *loop)
{
    struct epoll_event ev[256];
    int n = epoll_wait(uv_backend_fd(loop), ev, 256, 0);
    return n > 0 ? (uint64_t)n : 0;
}

/* Stops gathering and starts the batch that waited, if any. */
static void gather_end(struct wal *w)
{
    w->gathering = false;
    uv_timer_stop(&w->gather_timer);
    w->commit_wanted = false;
    if (w->err == 0 && !w->busy && w->pending.len > 0)
        dispatch(w);
}

static void gather_timer_cb(uv_timer_t *t)
{
    struct wal *w = t->data;
    if (w->gathering)
        gather_end(w);
}

static void job_done(struct wal *w)
{
    struct wal_job *j = &w->job;
    w->busy = false;
    w->fd = j->fd;
    w->off = j->off;
    w->zero_end = j->zero_end;
    w->commits++;
    w->last_sync_us = j->us;
    if (j->err) {
        set_error(w, j->err);
    } else {
        size_t pos = 0;
        for (size_t k = 0; k < j->rots.n; k++) {
            if (w->nsegs > 0)
                w->segs[w->nsegs - 1].bytes += j->rots.v[k].at - pos;
            segs_push(w, j->rots.v[k].lsn, 0);
            pos = j->rots.v[k].at;
        }
        if (w->nsegs > 0)
            w->segs[w->nsegs - 1].bytes += j->data.len - pos;
        if (j->rots.n > 0 && w->snap_lsn > 0)
            drop_obsolete(w);
        if (j->last_lsn > w->written_lsn) {
            w->written_lsn = j->last_lsn;
            if (w->opt.on_written)
                w->opt.on_written(w->opt.ud, j->last_lsn);
        }
        uint64_t durable = w->durable_lsn;
        if (j->synced)
            durable = j->last_lsn;
        else if (j->synced_upto > durable)
            durable = j->synced_upto;
        if (j->synced || j->synced_upto)
            w->syncs++;
        if (durable > w->durable_lsn) {
            w->durable_lsn = durable;
            if (w->opt.on_durable)
                w->opt.on_durable(w->opt.ud, durable);
        }
    }
    j->data.len = 0;
    if (j->data.cap > KEEP_BUF_BYTES)
        buf_free(&j->data);
    if (w->err == 0 && !w->closing && j->synced && w->loop && w->opt.gather_ms > 0 &&
        j->us >= w->opt.gather_min_sync_us) {
        /* Let the clients this sync released come back before the next batch starts. After
         * a sync on the loop thread, the requests that arrived during it are still unread:
         * wait for those clients too (about one record per ready descriptor). */
        uint64_t waiting = j->ran_inline ? loop_ready_count(w->loop) : 0;
        w->gathering = true;
        w->gather_target = w->pending_records + j->records + waiting;
        uv_timer_start(&w->gather_timer, gather_timer_cb, w->opt.gather_ms, 0);
        if (w->pending_records >= w->gather_target)
            gather_end(w);
        return;
    }
    if (w->err == 0 && (w->commit_wanted || w->sync_wanted || w->closing) &&
        (w->pending.len > 0 || w->sync_wanted ||
         (w->closing && !j->sync && w->durable_lsn < w->written_lsn))) {
        w->commit_wanted = false;
        dispatch(w);
        return;
    }
    w->commit_wanted = false;
    if (w->closing)
        finish_close(w);
    else if (w->snap_lsn > 0 && w->written_lsn == w->snap_lsn)
        drop_covered_current(w); /* the snapshot's own last records just got written */
}

static void work_cb(uv_work_t *req)
{
    struct wal *w = req->data;
    run_job(&w->job);
}

static void after_work_cb(uv_work_t *req, int status)
{
    struct wal *w = req->data;
    TD_ASSERT(status == 0);
    job_done(w);
}

/* Decides where the job just prepared in w->job runs: true for an fsync=always batch that opens
 * no segment, tops up no preallocation and is not the final one of a close, while the loop has
 * no event waiting (opt.sync_inline_when_idle): nothing would be served during the fdatasync
 * anyway, and doing it here saves the hand-off to a pool thread and the wake-up back. */
static bool sync_inline(const struct wal *w)
{
    const struct wal_job *j = &w->job;
    if (!w->opt.sync_inline_when_idle || w->opt.fsync != WAL_FSYNC_ALWAYS || w->closing ||
        j->rots.n > 0 || j->fd < 0)
        return false;

    if (j->prealloc > 0 && j->zero_end < j->off + j->data.len + j->prealloc / 2)
        return false; /* this batch writes up to 1 MiB of zeros: not on the loop */
    if (w->opt.sync_inline_max_us > 0 && w->last_sync_us >= w->opt.sync_inline_max_us)
        return false; /* slow syncs: the loop should read (and gather) during the next one */
    return loop_has_no_events(w->loop);
}

static void dispatch(struct wal *w)
{
    TD_ASSERT(!w->busy);
    struct wal_job *j = &w->job;
    struct buf tmp = j->data;
    j->data = w->pending;
    w->pending = tmp;
    w->pending.len = 0;
    struct rots rt = j->rots;
    j->rots = w->pending_rots;
    w->pending_rots = rt;
    w->pending_rots.n = 0;
    j->fd = w->fd;
    j->off = w->off;
    j->zero_end = w->zero_end;
    j->prealloc = w->opt.prealloc_bytes;
    j->sync = w->opt.fsync == WAL_FSYNC_ALWAYS || w->sync_wanted || w->closing;
    w->sync_wanted = false;
    j->last_lsn = w->next_lsn - 1;
    j->records = w->pending_records;
    w->pending_records = 0;
    j->dir = w->dir;
    j->err = 0;
    j->synced = false;
    j->synced_upto = 0;
    j->ran_inline = false;
    w->busy = true;
    /* A plain write runs inline (see the header); syncs and segment switches go to the pool,
     * except an fsync=always batch when the loop has nothing else to do. */
    if (w->loop && (j->sync || j->rots.n > 0) && !sync_inline(w)) {
        w->work.data = w;
        uv_queue_work(w->loop, &w->work, work_cb, after_work_cb);
    } else {
        if (j->sync && w->loop) {
            w->inline_syncs++;
            j->ran_inline = true;
        }
        run_job(j);
        job_done(w);
    }
}

int wal_commit(struct wal *w)
{
    if (w->err)
        return w->err;
    if (w->pending.len == 0 && !w->sync_wanted)
        return 0;
    if (w->busy) {
        w->commit_wanted = true;
        return 0;
    }
    if (w->gathering) {
        if (w->pending_records < w->gather_target) {
            w->commit_wanted = true;
            return 0;
        }
        gather_end(w);
        return w->err;
    }
    dispatch(w);
    return w->err;
}

static void sync_work_cb(uv_work_t *req)
{
    struct wal *w = req->data;
    uint64_t t0 = clock_now_us();
    w->sync_err = fsio_fdatasync(w->sync_fd);
    fsio_close(w->sync_fd);
    w->sync_us = clock_now_us() - t0;
}

static void sync_after_cb(uv_work_t *req, int status)
{
    struct wal *w = req->data;
    TD_ASSERT(status == 0);
    w->sync_busy = false;
    w->sync_fd = -1;
    if (w->sync_err) {
        set_error(w, w->sync_err);
    } else if (w->err == 0) {
        w->syncs++;
        w->last_sync_us = w->sync_us;
        if (w->sync_upto > w->durable_lsn) {
            w->durable_lsn = w->sync_upto;
            if (w->opt.on_durable)
                w->opt.on_durable(w->opt.ud, w->durable_lsn);
        }
    }
    if (w->closing)
        finish_close(w);
}

/* Starts the sync job for everything written so far. The segment fd is dup()ed so that the
 * job's fd stays valid whatever the write path does meanwhile (a later segment switch closes
 * the original after its own fdatasync). */
static void start_sync(struct wal *w)
{
    int fd = dup(w->fd);
    if (fd == -1) {
        set_error(w, -errno);
        return;
    }
    w->sync_fd = fd;
    w->sync_upto = w->written_lsn;
    w->sync_err = 0;
    w->sync_busy = true;
    w->sync_work.data = w;
    uv_queue_work(w->loop, &w->sync_work, sync_work_cb, sync_after_cb);
}

static void sync_timer_cb(uv_timer_t *t)
{
    struct wal *w = t->data;
    if (w->err || w->closing || !w->recovered || w->sync_busy)
        return;
    if (w->written_lsn <= w->durable_lsn && w->pending.len == 0)
        return;
    if (w->busy || w->pending_rots.n > 0) {
        /* A job owns the fd, or the buffered bytes open a new segment: the next pool job
         * writes and fdatasyncs (the old way, which holds the commits behind it). */
        w->sync_wanted = true;
        if (!w->busy)
            dispatch(w);
        return;
    }
    if (w->pending.len > 0)
        dispatch(w); /* inline write */
    if (w->err == 0 && w->fd >= 0 && w->written_lsn > w->durable_lsn)
        start_sync(w);
}

uint64_t wal_last_lsn(const struct wal *w)
{
    return w->next_lsn - 1;
}

uint64_t wal_last_term(const struct wal *w)
{
    return w->last_term;
}

uint64_t wal_durable_lsn(const struct wal *w)
{
    return w->durable_lsn;
}

uint64_t wal_written_lsn(const struct wal *w)
{
    return w->written_lsn;
}

const struct termhist *wal_term_history(const struct wal *w)
{
    return &w->th;
}

uint64_t wal_first_lsn(const struct wal *w)
{
    return w->nsegs > 0 ? w->segs[0].first_lsn : w->next_lsn;
}

bool wal_is_idle(const struct wal *w)
{
    return !w->busy && !w->sync_busy && w->pending.len == 0;
}

static uint64_t log_bytes(const struct wal *w)
{
    uint64_t n = w->pending.len + (w->busy ? w->job.data.len : 0);
    for (size_t i = 0; i < w->nsegs; i++)
        n += w->segs[i].bytes;
    return n;
}

void wal_get_stats(const struct wal *w, struct wal_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->fsync = w->opt.fsync;
    st->last_lsn = w->next_lsn - 1;
    st->last_term = w->last_term;
    st->written_lsn = w->written_lsn;
    st->durable_lsn = w->durable_lsn;
    st->snapshot_lsn = w->snap_lsn;
    st->snapshot_term = w->snap_term;
    st->snapshot_bytes = w->snap_bytes;
    st->log_bytes = log_bytes(w);
    st->segments = w->nsegs;
    st->pending_bytes = w->pending.len;
    st->commits = w->commits;
    st->syncs = w->syncs;
    st->inline_syncs = w->inline_syncs;
    st->last_sync_us = w->last_sync_us;
    st->snapshots = w->snapshots;
    st->snapshot_running = w->child > 0;
    st->last_snapshot_status = w->last_snapshot_status;
    st->last_snapshot_ms = w->last_snapshot_ms;
    st->last_snapshot_wall_ms = w->last_snapshot_wall_ms;
    st->io_error = w->err;
}

/* ---- snapshots ---- */

static int term_at_cb(void *ud, uint64_t lsn, uint64_t *term)
{
    return wal_term_at(ud, lsn, term);
}

/* Writes the snapshot of lsn/term to DIR/snap-<lsn>.tmp, fsyncs, renames it into place and
 * fsyncs DIR. Runs in the forked child or in-process. */
static int write_snapshot(const char *dir, uint64_t lsn, uint64_t term, wal_iterate_fn iterate,
                          void *ud, uint64_t *bytes)
{
    char tmp[4096], fin[4096];
    snap_path(dir, lsn, "tmp", tmp, sizeof(tmp));
    snap_path(dir, lsn, "snap", fin, sizeof(fin));
    struct snapshot_writer *sw;
    int r = snapshot_writer_open(tmp, lsn, term, &sw);
    if (r < 0)
        return r;
    r = iterate ? iterate(ud, sw) : 0;
    if (r != 0) {
        snapshot_writer_abort(sw);
        fsio_unlink(tmp);
        return r;
    }
    struct snapshot_info info;
    r = snapshot_writer_finish(sw, &info);
    if (r == 0)
        r = fsio_rename(tmp, fin);
    if (r == 0)
        r = fsio_fsync_dir(dir);
    if (r != 0)
        fsio_unlink(tmp);
    if (bytes)
        *bytes = info.bytes;
    return r;
}

/* Loop thread: a snapshot of lsn ended with rc. Deletes what it made obsolete. hist_by_child:
 * a forked child wrote DIR/term-history for it (read it back), else write it here. */
static void snapshot_ended(struct wal *w, int rc, uint64_t lsn, uint64_t term, uint64_t bytes,
                           bool hist_by_child)
{
    w->child = 0;
    w->last_snapshot_status = rc;
    w->last_snapshot_ms = clock_now_ms() - w->snap_started_ms;
    w->last_snapshot_wall_ms = clock_wall_ms();
    char path[4096];
    if (rc == 0) {
        if (w->snap_lsn != lsn && w->snap_lsn > 0) {
            snap_path(w->dir, w->snap_lsn, "snap", path, sizeof(path));
            fsio_unlink(path);
        }
        /* The term boundaries the snapshot folds in: a forked child wrote them next to the
         * snapshot (so no fsync blocks the loop here), in-process they are written now, while
         * the segments they come from are still here. Either way, failing leaves them unknown
         * below the snapshot, never wrong. */
        int hr;
        if (hist_by_child) {
            hr = termhist_load(w->dir, lsn, term, &w->th);
        } else {
            hr = termhist_advance(&w->th, lsn, term, term_at_cb, w);
            if (hr == 0)
                hr = termhist_save(w->dir, &w->th);
        }
        if (hr != 0) {
            termhist_reset_unknown(&w->th, lsn, term);
            termhist_remove(w->dir);
            log_warn("wal", "term history not kept: terms below the snapshot are unknown",
                     "lsn=%" PRIu64 " err=%s", lsn, td_strerror(hr));
        }
        w->snap_lsn = lsn;
        w->snap_term = term;
        if (bytes == 0) {
            snap_path(w->dir, lsn, "snap", path, sizeof(path));
            int fd = fsio_open(path, O_RDONLY, 0);
            if (fd >= 0) {
                fsio_size(fd, &bytes);
                fsio_close(fd);
            }
        }
        w->snap_bytes = bytes;
        w->snapshots++;
        size_t drop = drop_obsolete(w);
        drop += drop_covered_current(w);
        log_notice("wal", "snapshot saved",
                   "lsn=%" PRIu64 " term=%" PRIu64 " bytes=%" PRIu64 " ms=%" PRIu64
                   " segments_removed=%zu",
                   lsn, term, bytes, w->last_snapshot_ms, drop);
    } else {
        w->growth += w->growth_at_snap;
        snap_path(w->dir, lsn, "tmp", path, sizeof(path));
        fsio_unlink(path);
        /* Failing after its rename (a child stopped by wal_close or killed before it exited, a
         * directory fsync that failed) leaves a complete snapshot no segment was dropped for:
         * this process did not take it over, so it goes too (never the current snapshot). */
        if (lsn != w->snap_lsn) {
            snap_path(w->dir, lsn, "snap", path, sizeof(path));
            fsio_unlink(path);
        }
        log_warn("wal", "snapshot failed", "lsn=%" PRIu64 " err=%s", lsn, td_strerror(rc));
    }
    wal_snapshot_cb cb = w->snap_cb;
    w->snap_cb = NULL;
    if (cb)
        cb(w->snap_ud, rc, lsn);
}

static void child_timer_cb(uv_timer_t *t)
{
    struct wal *w = t->data;
    if (w->child <= 0) {
        uv_timer_stop(t);
        return;
    }
    int status;
    pid_t p = waitpid(w->child, &status, WNOHANG);
    if (p == 0)
        return;
    uv_timer_stop(t);
    int rc = 0;
    if (p == -1)
        rc = -errno;
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = -EIO;
    snapshot_ended(w, rc, w->child_lsn, w->child_term, 0, true);
}

/* Shared body of wal_snapshot_start and wal_snapshot_save; *sync_rc receives the outcome when
 * the snapshot ran in-process. */
static int snapshot_begin(struct wal *w, wal_iterate_fn iterate, void *iterate_ud,
                          wal_snapshot_cb done, void *done_ud, bool in_process, int *sync_rc)
{
    TD_ASSERT(w->recovered);
    if (w->closing)
        return -ECANCELED;
    if (w->child > 0 || w->snap_cb)
        return -EBUSY;
    uint64_t lsn = w->next_lsn - 1, term = w->last_term;
    w->want_rotate = true;
    w->growth_at_snap = w->growth;
    w->growth = 0;
    w->snap_started_ms = clock_now_ms();
    w->child_lsn = lsn;
    w->child_term = term;
    w->snap_cb = done;
    w->snap_ud = done_ud;
    if (in_process) {
        uint64_t bytes = 0;
        int rc = write_snapshot(w->dir, lsn, term, iterate, iterate_ud, &bytes);
        if (sync_rc)
            *sync_rc = rc;
        snapshot_ended(w, rc, lsn, term, bytes, false);
        return 0;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == -1) {
        int e = -errno;
        w->snap_cb = NULL;
        w->growth += w->growth_at_snap;
        return e;
    }
    if (pid == 0) {
        /* Child: nothing of the loop is touched; only the keyspace (copy-on-write) and files.
         * It dies with its parent: a child outliving a kill -9 would keep the inherited DIR
         * lock and listening socket, and a restarted server could not start until it ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int rc = write_snapshot(w->dir, lsn, term, iterate, iterate_ud, NULL);
        if (rc != 0)
            log_error("wal", "snapshot child failed", "lsn=%" PRIu64 " err=%s", lsn,
                      td_strerror(rc));
        /* The term boundaries it folds in, from the child's copy of the log's state (the
         * segments are still there); the parent reads the small file back. A failure here
         * only leaves them unknown. */
        if (rc == 0 && termhist_advance(&w->th, lsn, term, term_at_cb, w) == 0)
            termhist_save(w->dir, &w->th);
        _exit(rc == 0 ? 0 : 1);
    }
    w->child = pid;
    log_notice("wal", "snapshot started", "lsn=%" PRIu64 " pid=%d fork_ms=%" PRIu64, lsn, (int)pid,
               clock_now_ms() - w->snap_started_ms);
    uv_timer_start(&w->child_timer, child_timer_cb, CHILD_POLL_MS, CHILD_POLL_MS);
    return 0;
}

int wal_snapshot_start(struct wal *w, wal_iterate_fn iterate, void *iterate_ud,
                       wal_snapshot_cb done, void *done_ud)
{
    bool in_process = w->loop == NULL || w->opt.snapshot_in_process;
    return snapshot_begin(w, iterate, iterate_ud, done, done_ud, in_process, NULL);
}

int wal_snapshot_save(struct wal *w, wal_iterate_fn iterate, void *iterate_ud)
{
    int rc = 0;
    int r = snapshot_begin(w, iterate, iterate_ud, NULL, NULL, true, &rc);
    return r != 0 ? r : rc;
}

bool wal_snapshot_running(const struct wal *w)
{
    return w->child > 0;
}

bool wal_snapshot_due(const struct wal *w, uint64_t min_bytes, unsigned pct)
{
    if (w->child > 0 || w->closing || w->err)
        return false;
    if (w->growth < min_bytes)
        return false;
    return w->growth * 100 >= (uint64_t)pct * w->snap_bytes;
}

/* ---- reading back ---- */

/* Index of the first remembered position with an lsn above lsn. */
static size_t rpos_upper(const struct wal *w, uint64_t lsn)
{
    size_t lo = 0, hi = w->nrpos;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->rpos[mid].lsn <= lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Remembers that record lsn starts at off in segment seg, unless a known position of that
 * segment lies closer than RPOS_SPACING bytes. */
static void rpos_learn(struct wal *w, uint64_t seg, uint64_t lsn, uint64_t off)
{
    size_t k = rpos_upper(w, lsn);
    if (k > 0 && w->rpos[k - 1].seg == seg && off - w->rpos[k - 1].off < RPOS_SPACING)
        return;
    if (k < w->nrpos && w->rpos[k].seg == seg && w->rpos[k].off - off < RPOS_SPACING)
        return;
    if (w->nrpos == w->caprpos) {
        w->caprpos = w->caprpos ? w->caprpos * 2 : 64;
        w->rpos = xrealloc(w->rpos, w->caprpos * sizeof(*w->rpos));
    }
    memmove(w->rpos + k + 1, w->rpos + k, (w->nrpos - k) * sizeof(*w->rpos));
    w->rpos[k] = (struct rpos){lsn, seg, off};
    w->nrpos++;
}

struct reader {
    uint64_t from, upto;
    size_t max_bytes, bytes;
    int64_t n;
    wal_record_fn fn;
    void *ud;
    int rc;
    /* where the scanned buffer lies, to learn record positions */
    struct wal *w;
    uint64_t seg, base_off, learned_off;
    const char *base;
    uint64_t seg_last; /* last valid lsn seen in the segment being read */
};

#define READ_STOP 1

static int read_rec(void *ud, const struct walrec *rec)
{
    struct reader *rd = ud;
    if (rec->lsn <= rd->upto) {
        uint64_t off = rd->base_off + (uint64_t)(rec->raw.p - rd->base);
        if (off - rd->learned_off >= RPOS_SPACING) {
            rpos_learn(rd->w, rd->seg, rec->lsn, off);
            rd->learned_off = off;
        }
    }
    if (rec->lsn < rd->from)
        return 0;
    if (rec->lsn > rd->upto || (rd->n > 0 && rd->bytes >= rd->max_bytes))
        return READ_STOP;
    int r = rd->fn(rd->ud, rec);
    rd->n++;
    rd->bytes += rec->raw.len;
    if (r != 0) {
        rd->rc = r;
        return READ_STOP;
    }
    return 0;
}

/* Feeds segment seg to rd from byte off on, where record expect starts, reading READ_CHUNK
 * bytes at a time (more for a record that does not fit). Returns 0 at the end of the segment's
 * valid records, READ_STOP, -EAGAIN when off (a remembered position) holds no record expect,
 * or a negative code. */
static int read_segment(struct wal *w, struct reader *rd, uint64_t seg, uint64_t off,
                        uint64_t expect, struct buf *b)
{
    char path[4096];
    seg_path(w, seg, path, sizeof(path));
    int fd = fsio_open(path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    rd->seg = seg;
    rd->learned_off = off;
    rd->seg_last = 0;
    bool at_rpos = off > 0;
    size_t want = READ_CHUNK;
    int r = 0;
    for (;;) {
        b->len = 0;
        buf_reserve(b, want);
        ssize_t got = fsio_pread(fd, b->p, want, off);
        if (got <= 0) {
            r = (int)got;
            break;
        }
        rd->base = b->p;
        rd->base_off = off;
        struct walrec_scan sc;
        r = walrec_scan(b->p, (size_t)got, expect, 0, read_rec, rd, &sc);
        if (r != 0)
            break;
        bool full = (size_t)got == want;
        if (at_rpos && sc.nrecords == 0 && !(sc.reason == TD_EINCOMPLETE && full)) {
            r = -EAGAIN;
            break;
        }
        if (sc.nrecords > 0) {
            at_rpos = false;
            expect = sc.last_lsn + 1;
            rd->seg_last = sc.last_lsn;
        }
        off += sc.good_len;
        if (sc.status == WALREC_SCAN_CLEAN && full)
            continue;
        if (sc.reason == TD_EINCOMPLETE && full) {
            /* A record cut by the end of the piece: read again from its start. */
            if (sc.good_len == 0) {
                if (want > WALREC_MAX_PAYLOAD)
                    break;
                want *= 2;
            }
            continue;
        }
        break; /* the end of the file, a torn tail or padding: the segment ends here */
    }
    fsio_close(fd);
    return r;
}

int64_t wal_read(struct wal *w, uint64_t from_lsn, size_t max_bytes, wal_record_fn fn, void *ud)
{
    if (from_lsn == 0)
        from_lsn = 1;
    if (from_lsn > w->written_lsn)
        return 0;
    if (w->nsegs == 0 || from_lsn < w->segs[0].first_lsn)
        return -ENOENT;
    size_t i = w->nsegs - 1;
    while (i > 0 && w->segs[i].first_lsn > from_lsn)
        i--;
    struct reader rd = {from_lsn, w->written_lsn, max_bytes, 0, 0, fn, ud, 0, w, 0, 0, 0, NULL, 0};
    struct buf b;
    buf_init(&b);
    int r = 0;
    for (; i < w->nsegs; i++) {
        uint64_t seg = w->segs[i].first_lsn, off = 0, expect = seg;
        size_t k = rpos_upper(w, from_lsn);
        if (k > 0 && w->rpos[k - 1].seg == seg) {
            off = w->rpos[k - 1].off;
            expect = w->rpos[k - 1].lsn;
        }
        r = read_segment(w, &rd, seg, off, expect, &b);
        if (r == -EAGAIN && rd.n == 0) {
            w->nrpos = 0; /* a stale position: forget them all and read from the start */
            r = read_segment(w, &rd, seg, 0, seg, &b);
        }
        if (r != 0 || rd.seg_last >= w->written_lsn)
            break;
    }
    buf_free(&b);
    if (r < 0)
        return r;
    return rd.n;
}

struct term_find {
    uint64_t lsn, term;
    bool found;
};

static int term_rec(void *ud, const struct walrec *rec)
{
    struct term_find *tf = ud;
    if (rec->lsn == tf->lsn) {
        tf->term = rec->term;
        tf->found = true;
        return READ_STOP;
    }
    return 0;
}

int wal_term_at(struct wal *w, uint64_t lsn, uint64_t *term)
{
    if (lsn == 0) {
        *term = 0;
        return 0;
    }
    if (lsn >= w->next_lsn)
        return -ENOENT;
    if (lsn == w->next_lsn - 1) {
        *term = w->last_term;
        return 0;
    }
    if (lsn == w->snap_lsn) {
        *term = w->snap_term;
        return 0;
    }
    struct term_find tf = {lsn, 0, false};
    if (lsn > w->written_lsn) {
        struct walrec_scan sc;
        walrec_scan(w->pending.p, w->pending.len, 0, 0, term_rec, &tf, &sc);
        if (!tf.found && w->busy)
            walrec_scan(w->job.data.p, w->job.data.len, 0, 0, term_rec, &tf, &sc);
    } else {
        int64_t n = wal_read(w, lsn, 1, term_rec, &tf);
        if (n < 0)
            return (int)n;
    }
    if (!tf.found)
        return -ENOENT;
    *term = tf.term;
    return 0;
}

struct cut_find {
    uint64_t lsn; /* first record to remove */
    size_t off;   /* where it starts */
    size_t end;   /* where the segment's records end (zero padding may follow) */
    uint64_t term;
    bool found;
};

static int cut_rec(void *ud, const struct walrec *rec)
{
    struct cut_find *cf = ud;
    if (rec->lsn == cf->lsn) {
        cf->found = true;
        cf->term = rec->term;
    }
    if (!cf->found)
        cf->off += rec->raw.len;
    cf->end += rec->raw.len;
    return 0;
}

/* Appends the records of the segment file at path to out, without the zero padding that
 * fsync=always writes ahead of the log, so an audit file holds records back to back. */
static int append_seg_records(const char *path, uint64_t first_lsn, struct buf *out)
{
    struct buf b;
    buf_init(&b);
    int r = fsio_read_file(path, &b);
    if (r == 0) {
        struct cut_find cf = {0, 0, 0, 0, false};
        struct walrec_scan sc;
        walrec_scan(b.p, b.len, first_lsn, 0, cut_rec, &cf, &sc);
        buf_append(out, b.p, cf.end);
    }
    buf_free(&b);
    return r;
}

/* Appends bytes to DIR/discarded-<term>.<ext> and fsyncs it. */
static int save_audit(const char *dir, uint64_t term, const char *ext, const struct buf *bytes)
{
    char dpath[4096];
    snprintf(dpath, sizeof(dpath), "%s/discarded-%" PRIu64 ".%s", dir, term, ext);
    int fd = fsio_open(dpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int r = fd < 0 ? fd : fsio_write_all(fd, bytes->p, bytes->len);
    if (r == 0)
        r = fsio_fsync(fd);
    if (fd >= 0)
        fsio_close(fd);
    return r;
}

/* One audit line: "lsn=L term=T ARG ARG ...", each argument printable ASCII as is, anything else
 * (spaces, quotes, backslashes, control or non-ASCII bytes) written as \xHH. An empty record
 * (a new term's first) shows as "(term start)". */
static int audit_line(void *ud, const struct walrec *rec)
{
    struct buf *out = ud;
    buf_printf(out, "lsn=%" PRIu64 " term=%" PRIu64, rec->lsn, rec->term);
    if (rec->argc == 0)
        buf_append_str(out, " (term start)");
    struct slice argv[64];
    struct slice *av = rec->argc <= 64 ? argv : xmalloc(rec->argc * sizeof(*av));
    walrec_argv(rec, av);
    for (uint32_t i = 0; i < rec->argc; i++) {
        buf_append(out, " ", 1);
        for (size_t k = 0; k < av[i].len; k++) {
            unsigned char c = (unsigned char)av[i].p[k];
            if (c > ' ' && c < 0x7f && c != '\\' && c != '"')
                buf_append(out, (const char *)&c, 1);
            else
                buf_printf(out, "\\x%02x", c);
        }
    }
    buf_append(out, "\n", 1);
    if (av != argv)
        free(av);
    return 0;
}

int wal_truncate_after(struct wal *w, uint64_t lsn, uint64_t *ndiscarded)
{
    TD_ASSERT(w->recovered);
    if (ndiscarded)
        *ndiscarded = 0;
    if (w->err)
        return w->err;
    if (w->busy || w->sync_busy || w->pending.len > 0 || w->child > 0)
        return -EBUSY;
    if (lsn < w->snap_lsn)
        return -ERANGE;
    if (lsn >= w->next_lsn - 1)
        return 0;
    if (w->nsegs == 0 || lsn + 1 < w->segs[0].first_lsn)
        return -ERANGE;
    uint64_t keep_term;
    int r = wal_term_at(w, lsn, &keep_term);
    if (r < 0)
        return r;
    size_t i = w->nsegs - 1;
    while (i > 0 && w->segs[i].first_lsn > lsn + 1)
        i--;
    char path[4096];
    seg_path(w, w->segs[i].first_lsn, path, sizeof(path));
    struct buf b;
    buf_init(&b);
    r = fsio_read_file(path, &b);
    struct cut_find cf = {lsn + 1, 0, 0, 0, false};
    if (r == 0) {
        struct walrec_scan sc;
        walrec_scan(b.p, b.len, w->segs[i].first_lsn, 0, cut_rec, &cf, &sc);
        if (!cf.found)
            r = TD_ECORRUPT;
    }
    /* Save what goes (records only, not the padding after them), then cut. */
    struct buf gone;
    buf_init(&gone);
    if (r == 0) {
        buf_append(&gone, b.p + cf.off, cf.end - cf.off);
        for (size_t j = i + 1; j < w->nsegs && r == 0; j++) {
            char p2[4096];
            seg_path(w, w->segs[j].first_lsn, p2, sizeof(p2));
            r = append_seg_records(p2, w->segs[j].first_lsn, &gone);
        }
    }
    if (r == 0)
        r = save_audit(w->dir, cf.term, "log", &gone);
    if (r == 0) {
        /* The same records as text, one per line, for people. */
        struct buf txt;
        buf_init(&txt);
        struct walrec_scan sc;
        walrec_scan(gone.p, gone.len, lsn + 1, 0, audit_line, &txt, &sc);
        r = save_audit(w->dir, cf.term, "txt", &txt);
        buf_free(&txt);
    }
    buf_free(&gone);
    buf_free(&b);
    if (r == 0) {
        fsio_close(w->fd);
        w->fd = -1;
        int fd = fsio_open(path, O_WRONLY, 0);
        r = fd < 0 ? fd : fsio_ftruncate(fd, cf.off);
        if (r == 0)
            r = fsio_fdatasync(fd);
        if (r == 0) {
            w->fd = fd;
            w->off = cf.off;
            w->zero_end = cf.off;
        } else {
            fsio_close(fd);
        }
    }
    for (size_t j = i + 1; j < w->nsegs && r == 0; j++) {
        char p2[4096];
        seg_path(w, w->segs[j].first_lsn, p2, sizeof(p2));
        r = fsio_unlink(p2);
    }
    if (r == 0)
        r = fsio_fsync_dir(w->dir);
    if (r != 0) {
        set_error(w, r);
        return r;
    }
    uint64_t n = w->next_lsn - 1 - lsn;
    w->nsegs = i + 1;
    w->nrpos = 0;
    w->segs[i].bytes = cf.off;
    w->cur_seg_bytes = cf.off;
    w->next_lsn = lsn + 1;
    w->last_term = keep_term;
    w->written_lsn = w->durable_lsn = lsn;
    if (ndiscarded)
        *ndiscarded = n;
    log_notice("wal", "log truncated",
               "after_lsn=%" PRIu64 " discarded=%" PRIu64 " saved=%s/discarded-%" PRIu64 ".log",
               lsn, n, w->dir, cf.term);
    return 0;
}

int wal_keep_snapshot_audit(struct wal *w, uint64_t common, bool *again, char *path,
                            size_t pathlen)
{
    TD_ASSERT(w->recovered);
    *again = false;
    if (w->err)
        return w->err;
    if (w->busy || w->sync_busy || w->pending.len > 0 || w->child > 0)
        return -EBUSY;
    if (common >= w->snap_lsn)
        return -ERANGE;
    /* Records common+1..snap_lsn exist only folded into the snapshot: keep the file itself (a
     * second name, no copy) before anything replaces it. */
    char from[4096], to[4200];
    snap_path(w->dir, w->snap_lsn, "snap", from, sizeof(from));
    snprintf(to, sizeof(to), "%s/discarded-%" PRIu64 "-%" PRIu64 ".snap", w->dir, w->snap_term,
             w->snap_lsn);
    if (path && pathlen)
        snprintf(path, pathlen, "%s", to);
    int r = fsio_link(from, to);
    /* Already there: an earlier attempt kept it (and counted it) but did not finish. The same
     * (term, lsn) names the same state, so it is the same audit. */
    if (r == -EEXIST) {
        *again = true;
        r = 0;
    }
    if (r == 0)
        r = fsio_fsync_dir(w->dir);
    if (r == 0 && !*again) {
        struct buf line;
        buf_init(&line);
        buf_printf(&line,
                   "# lsn=%" PRIu64 "..%" PRIu64 " term<=%" PRIu64
                   " folded into the snapshot kept as discarded-%" PRIu64 "-%" PRIu64 ".snap\n",
                   common + 1, w->snap_lsn, w->snap_term, w->snap_term, w->snap_lsn);
        r = save_audit(w->dir, w->snap_term, "txt", &line);
        buf_free(&line);
    }
    if (r != 0)
        return r;
    log_notice("wal", "snapshot kept as an audit",
               "lsn=%" PRIu64 "..%" PRIu64 " saved=%s again=%d", common + 1, w->snap_lsn, to,
               (int)*again);
    return 0;
}

int wal_install_snapshot(struct wal *w, const char *path)
{
    TD_ASSERT(w->recovered);
    if (w->err)
        return w->err;
    if (w->busy || w->sync_busy || w->pending.len > 0 || w->child > 0)
        return -EBUSY;
    struct snapshot_info info;
    int r = snapshot_load(path, NULL, NULL, &info, NULL, 0);
    if (r != 0)
        return r;
    char fin[4096], p2[4096];
    snap_path(w->dir, info.lsn, "snap", fin, sizeof(fin));
    fsio_close(w->fd);
    w->fd = -1;
    /* The history below the received snapshot is the primary's, unknown here. (A stale file
     * would be ignored anyway, as it names another snapshot.) */
    termhist_reset_unknown(&w->th, info.lsn, info.term);
    r = termhist_remove(w->dir);
    if (r == 0)
        r = fsio_rename(path, fin);
    if (r == 0)
        r = fsio_fsync_dir(w->dir);
    for (size_t j = 0; j < w->nsegs && r == 0; j++) {
        seg_path(w, w->segs[j].first_lsn, p2, sizeof(p2));
        r = fsio_unlink(p2);
    }
    if (r == 0 && w->snap_lsn > 0 && w->snap_lsn != info.lsn) {
        snap_path(w->dir, w->snap_lsn, "snap", p2, sizeof(p2));
        fsio_unlink(p2);
    }
    if (r == 0)
        r = fsio_fsync_dir(w->dir);
    if (r != 0) {
        set_error(w, r);
        return r;
    }
    w->nsegs = 0;
    w->nrpos = 0;
    w->snap_lsn = info.lsn;
    w->snap_term = info.term;
    w->snap_bytes = info.bytes;
    w->next_lsn = info.lsn + 1;
    w->last_term = info.term;
    w->written_lsn = w->durable_lsn = info.lsn;
    w->want_rotate = true;
    w->cur_seg_bytes = 0;
    log_notice("wal", "snapshot installed", "lsn=%" PRIu64 " term=%" PRIu64, info.lsn, info.term);
    return 0;
}

/* ---- close ---- */

static void handle_closed(uv_handle_t *h)
{
    struct wal *w = h->data;
    if (--w->open_handles > 0)
        return;
    wal_close_cb cb = w->close_cb;
    void *ud = w->close_ud;
    free(w);
    if (cb)
        cb(ud);
}

static void finish_close(struct wal *w)
{
    if (w->busy || w->sync_busy)
        return;
    fsio_close(w->fd);
    w->fd = -1;
    fsio_close(w->lock_fd);
    w->lock_fd = -1;
    buf_free(&w->pending);
    buf_free(&w->job.data);
    free(w->pending_rots.v);
    free(w->job.rots.v);
    free(w->segs);
    free(w->snaps);
    free(w->rpos);
    free(w->dir);
    termhist_free(&w->th);
    w->segs = NULL;
    w->snaps = NULL;
    w->dir = NULL;
    if (w->loop && w->open_handles > 0) {
        uv_close((uv_handle_t *)&w->sync_timer, handle_closed);
        uv_close((uv_handle_t *)&w->child_timer, handle_closed);
        uv_close((uv_handle_t *)&w->gather_timer, handle_closed);
        return;
    }
    wal_close_cb cb = w->close_cb;
    void *ud = w->close_ud;
    free(w);
    if (cb)
        cb(ud);
}

void wal_close(struct wal *w, wal_close_cb cb, void *ud)
{
    TD_ASSERT(!w->closing);
    w->closing = true;
    w->close_cb = cb;
    w->close_ud = ud;
    if (w->child > 0) {
        /* Our own child, by pid. It may have finished already (not yet reaped): then its
         * snapshot is complete and counts. */
        kill(w->child, SIGKILL);
        int status = 0;
        while (waitpid(w->child, &status, 0) == -1 && errno == EINTR)
            ;
        uv_timer_stop(&w->child_timer);
        bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        snapshot_ended(w, ok ? 0 : -ECANCELED, w->child_lsn, w->child_term, 0, true);
    }
    if (w->gathering) {
        w->gathering = false;
        uv_timer_stop(&w->gather_timer);
    }
    if (!w->busy && w->err == 0 && w->recovered &&
        (w->pending.len > 0 || w->durable_lsn < w->written_lsn)) {
        dispatch(w);
        return; /* job_done finishes the close */
    }
    finish_close(w);
}
