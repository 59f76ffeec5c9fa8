/* SPDX-License-Identifier: MIT */
/* store/repl_wal.c -- replication over a real log and keyspace, without sockets (see
 * repl_wal.h).
 *
 * Primary: the view for log matching has base = the snapshot lsn (records after it are always
 * in the log, since segments are deleted only once a snapshot covers them); records are read
 * with wal_read, which returns only records already handed to write(2), and framed verbatim.
 *
 * Replica: records are appended verbatim (wal_append_record) and applied to the db as in
 * recovery. A truncation cuts the log (wal_truncate_after audits the discarded records in
 * DIR/discarded-<term>.log) and then rebuilds the keyspace from the newest snapshot and the
 * remaining log, since applied writes cannot be undone one by one. A full resync writes the
 * incoming snapshot to DIR/incoming.snap.partial, installs it (wal_install_snapshot) and
 * rebuilds the keyspace from it. */
#include "store/repl_wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"
#include "base/fsio.h"
#include "store/persist.h"
#include "store/snapshot.h"
#include "store/termhist.h"

#define INCOMING_NAME "incoming.snap.partial"

/* Terms below the snapshot come from the kept term boundaries, the rest from the log. */
static int view_term_at(void *ud, uint64_t lsn, uint64_t *term)
{
    const struct termhist *th = wal_term_history(ud);
    if (lsn < th->snap_lsn)
        return termhist_term_at(th, lsn, term);
    return wal_term_at(ud, lsn, term);
}

void repl_wal_view(struct wal *w, uint64_t term, struct repl_log_view *v)
{
    struct wal_stats st;
    wal_get_stats(w, &st);
    memset(v, 0, sizeof(*v));
    v->term = term;
    v->base_lsn = st.snapshot_lsn;
    v->last_lsn = wal_written_lsn(w);
    if (v->last_lsn < v->base_lsn)
        v->last_lsn = v->base_lsn;
    v->term_at = view_term_at;
    v->ud = w;
    const struct termhist *th = wal_term_history(w);
    if (th->snap_lsn == st.snapshot_lsn) {
        v->has_hist = true;
        v->hist_lsn = termhist_known_lsn(th);
    }
}

static int gather(void *ud, const struct walrec *rec)
{
    buf_append(ud, rec->raw.p, rec->raw.len);
    return 0;
}

int64_t repl_wal_fill(struct wal *w, struct repl_session *s, struct buf *out, size_t max_bytes)
{
    struct buf recs;
    buf_init(&recs);
    int64_t n = wal_read(w, s->sent_lsn + 1, max_bytes, gather, &recs);
    if (n > 0) {
        replmsg_frame_wal(out, recs.p, recs.len);
        repl_session_sent(s, s->sent_lsn + (uint64_t)n);
    }
    buf_free(&recs);
    return n;
}

int repl_wal_snapshot_frames(const char *path, size_t chunk_bytes, struct buf *out)
{
    struct snapshot_info info;
    int rc = snapshot_read_header(path, &info);
    if (rc != 0)
        return rc;
    struct buf file;
    buf_init(&file);
    rc = fsio_read_file(path, &file);
    if (rc == 0) {
        for (size_t off = 0; off < file.len; off += chunk_bytes) {
            size_t k = file.len - off < chunk_bytes ? file.len - off : chunk_bytes;
            replmsg_frame_snap_chunk(out, file.p + off, k);
        }
        replmsg_frame_snap_end(out, info.lsn, info.term, file.len);
    }
    buf_free(&file);
    return rc;
}

/* --- replica --- */

void repl_wal_sink_init(struct repl_wal_sink *k, struct wal *w, struct db *db, const char *dir)
{
    memset(k, 0, sizeof(*k));
    k->w = w;
    k->db = db;
    k->dir = dir;
    k->term = wal_last_term(w);
    k->snap_fd = -1;
}

static void incoming_path(const struct repl_wal_sink *k, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", k->dir, INCOMING_NAME);
}

void repl_wal_sink_free(struct repl_wal_sink *k)
{
    if (k->snap_fd >= 0) {
        char p[4096];
        fsio_close(k->snap_fd);
        k->snap_fd = -1;
        incoming_path(k, p, sizeof(p));
        fsio_unlink(p);
    }
}

static int apply_read(void *ud, const struct walrec *rec)
{
    struct slice small[16], *argv = small;
    if (rec->argc > 16)
        argv = xmalloc(rec->argc * sizeof(*argv));
    walrec_argv(rec, argv);
    int rc = persist_wal_apply(ud, rec->lsn, rec->term, rec->argc, argv);
    if (argv != small)
        free(argv);
    return rc;
}

/* Empties the keyspace and loads the newest snapshot and the log after it. */
static int rebuild(struct repl_wal_sink *k)
{
    struct slice flush = SLICE_LIT("FLUSHALL");
    char err[256];
    int rc = persist_apply(k->db, 1, &flush, err, sizeof(err));
    if (rc != 0)
        return rc;
    struct wal_stats st;
    wal_get_stats(k->w, &st);
    if (st.snapshot_lsn > 0) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/snap-%020" PRIu64 ".snap", k->dir, st.snapshot_lsn);
        rc = snapshot_load(p, persist_snapshot_load, k->db, NULL, k->err, sizeof(k->err));
        if (rc != 0)
            return rc;
    }
    uint64_t from = st.snapshot_lsn + 1;
    for (;;) {
        int64_t n = wal_read(k->w, from, 1u << 20, apply_read, k->db);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return 0;
        from += (uint64_t)n;
    }
}

static int sink_adopt(void *ud, uint64_t term, const char *cause)
{
    struct repl_wal_sink *k = ud;
    (void)cause;
    k->term = term;
    return 0;
}

static int sink_truncate(void *ud, uint64_t lsn)
{
    struct repl_wal_sink *k = ud;
    uint64_t nd = 0;
    int rc = wal_truncate_after(k->w, lsn, &nd);
    if (rc != 0)
        return rc;
    k->discarded += nd;
    k->truncations++;
    return rebuild(k);
}

static int sink_snap_begin(void *ud, uint64_t lsn, uint64_t term)
{
    struct repl_wal_sink *k = ud;
    (void)lsn;
    (void)term;
    char p[4096];
    incoming_path(k, p, sizeof(p));
    repl_wal_sink_free(k);
    int fd = fsio_open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fd;
    k->snap_fd = fd;
    return 0;
}

static int sink_snap_chunk(void *ud, const char *p, size_t n)
{
    struct repl_wal_sink *k = ud;
    return fsio_write_all(k->snap_fd, p, n);
}

static int sink_snap_end(void *ud, uint64_t lsn, uint64_t term)
{
    struct repl_wal_sink *k = ud;
    char p[4096];
    incoming_path(k, p, sizeof(p));
    int rc = fsio_fsync(k->snap_fd);
    fsio_close(k->snap_fd);
    k->snap_fd = -1;
    struct snapshot_info info;
    if (rc == 0)
        rc = snapshot_read_header(p, &info);
    if (rc == 0 && (info.lsn != lsn || info.term != term))
        rc = TD_ECORRUPT;
    if (rc == 0)
        rc = wal_install_snapshot(k->w, p);
    if (rc != 0) {
        fsio_unlink(p);
        return rc;
    }
    k->full_syncs++;
    return rebuild(k);
}

static int sink_records(void *ud, const struct replmsg_frame *f)
{
    struct repl_wal_sink *k = ud;
    size_t off = 0;
    while (off < f->records.len) {
        struct walrec rec;
        ssize_t r = walrec_decode(f->records.p + off, f->records.len - off, &rec);
        if (r <= 0)
            return TD_ECORRUPT; /* the frame parser checked it: cannot happen */
        int rc = wal_append_record(k->w, &rec);
        if (rc == 0)
            rc = apply_read(k->db, &rec);
        if (rc != 0)
            return rc;
        off += (size_t)r;
    }
    return 0;
}

/* Before the snapshot is installed: audit what diverged, as repl_core_full_audit plans it (the
 * snapshot kept for records folded into it, the log tail cut and audited as a truncation).
 * Without a proven common prefix nothing can be told apart: the replaced records are not
 * audited (the shell says so in its log). */
static int sink_discard_before_full(void *ud, bool proven, uint64_t common)
{
    struct repl_wal_sink *k = ud;
    k->audit[0] = '\0';
    k->full_audited = 0;
    struct wal_stats st;
    wal_get_stats(k->w, &st);
    uint64_t last = wal_last_lsn(k->w), n = 0;
    struct repl_full_audit plan;
    int rc = repl_core_full_audit(proven, common, st.snapshot_lsn, last, &plan);
    if (rc == 0 && plan.keep_snapshot) {
        bool again = false;
        char kept[4096];
        rc = wal_keep_snapshot_audit(k->w, common, &again, kept, sizeof(kept));
        if (rc == 0) {
            n += again ? 0 : plan.folded;
            snprintf(k->audit, sizeof(k->audit), "%.900s (lsn %" PRIu64 "..%" PRIu64 ")", kept,
                     common + 1, st.snapshot_lsn);
        }
    }
    if (rc == 0 && plan.cut) {
        uint64_t t = 0, nd = 0;
        rc = wal_term_at(k->w, plan.cut_after + 1, &t);
        if (rc == 0)
            rc = wal_truncate_after(k->w, plan.cut_after, &nd);
        if (rc == 0) {
            n += nd;
            size_t used = strlen(k->audit);
            snprintf(k->audit + used, sizeof(k->audit) - used,
                     "%s%s/discarded-%" PRIu64 ".log (lsn %" PRIu64 "..%" PRIu64 ")",
                     used ? ", " : "", k->dir, t, plan.cut_after + 1, last);
        }
    }
    if (rc != 0) {
        snprintf(k->err, sizeof(k->err), "%s", td_strerror(rc));
        return rc;
    }
    k->discarded += n;
    k->full_audited = n;
    return 0;
}

const struct repl_link_ops repl_wal_sink_ops = {
    sink_adopt,   sink_truncate, sink_snap_begin,         sink_snap_chunk, sink_snap_end,
    sink_records, NULL,          NULL,                    sink_discard_before_full,
};

int repl_wal_hello(struct wal *w, struct slice node, struct slice secret, struct replmsg_hello *h)
{
    memset(h, 0, sizeof(*h));
    struct wal_stats st;
    wal_get_stats(w, &st);
    /* The history reaches below the snapshot as far as the kept term boundaries know it. */
    const struct termhist *th = wal_term_history(w);
    uint64_t from = st.snapshot_lsn;
    if (th->snap_lsn == st.snapshot_lsn)
        from = termhist_known_lsn(th);
    int rc = repl_core_term_history(view_term_at, w, from, wal_last_lsn(w), h);
    h->base_lsn = st.snapshot_lsn;
    h->node = node;
    h->secret = secret;
    h->v2 = true;
    return rc;
}
