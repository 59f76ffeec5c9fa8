/* SPDX-License-Identifier: MIT */
/* store/repl_link.c -- the replica's link state machine (see repl_link.h).
 *
 *   WAIT_ANSWER --+CONTINUE/+TRUNCATE--> STREAMING <--W/H frames
 *        |                                  ^
 *        +--+FULL--> SNAPSHOT --S...E-------+          any violation --> FAILED (sticky)
 *
 * Checks: the answer's term against ours (never follow a lower term, adopt a higher one
 * before applying anything), CONTINUE at exactly our last lsn, TRUNCATE strictly below it,
 * snapshot chunks adding up to the announced size at the announced lsn, records arriving
 * gap-free from next_lsn with terms no higher than the primary's, heartbeats never from a lower
 * term. */
#include "store/repl_link.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "store/repl_core.h"

void repl_link_init(struct repl_link *l, uint64_t term, uint64_t last_lsn,
                    const struct repl_link_ops *ops, void *ud)
{
    memset(l, 0, sizeof(*l));
    l->state = REPL_LINK_WAIT_ANSWER;
    l->term = term;
    l->last_lsn = last_lsn;
    l->next_lsn = last_lsn + 1;
    l->ops = ops;
    l->ud = ud;
}

static int fail(struct repl_link *l, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct repl_link *l, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, sizeof(l->err), fmt, ap);
    va_end(ap);
    l->state = REPL_LINK_FAILED;
    return code;
}

/* Applies the term rule to a term announced by the primary. */
static int check_term(struct repl_link *l, uint64_t term)
{
    struct repl_term_verdict v;
    repl_core_stream_term(l->term, term, &v);
    if (v.action == REPL_TERM_REJECT)
        return fail(l, TD_ESTALE_TERM, "%s", v.cause);
    if (v.action == REPL_TERM_ADOPT) {
        int rc = l->ops->adopt_term(l->ud, v.new_term, v.cause);
        if (rc != 0)
            return fail(l, rc, "could not adopt term %llu", (unsigned long long)v.new_term);
        l->term = v.new_term;
    }
    return 0;
}

static int on_answer(struct repl_link *l, const struct replmsg_answer *a)
{
    if (a->kind == REPLMSG_REFUSED)
        return fail(l, TD_ENOTPRIMARY, "primary refused: %.*s", (int)a->text.len, a->text.p);
    int rc = check_term(l, a->term);
    if (rc != 0)
        return rc;
    l->answer = a->kind;
    switch (a->kind) {
    case REPLMSG_CONTINUE:
        if (a->lsn != l->last_lsn)
            return fail(l, TD_EPROTO_RESP, "CONTINUE after lsn %llu, but our last lsn is %llu",
                        (unsigned long long)a->lsn, (unsigned long long)l->last_lsn);
        l->state = REPL_LINK_STREAMING;
        return 0;
    case REPLMSG_TRUNCATE:
        if (a->lsn >= l->last_lsn)
            return fail(l, TD_EPROTO_RESP, "TRUNCATE after lsn %llu, but our last lsn is %llu",
                        (unsigned long long)a->lsn, (unsigned long long)l->last_lsn);
        rc = l->ops->truncate_after(l->ud, a->lsn);
        if (rc != 0)
            return fail(l, rc, "truncating after lsn %llu failed", (unsigned long long)a->lsn);
        l->next_lsn = a->lsn + 1;
        l->state = REPL_LINK_STREAMING;
        return 0;
    case REPLMSG_FULL:
        if (a->has_common && a->common > l->last_lsn)
            return fail(l, TD_EPROTO_RESP, "FULL with common prefix %llu, but our last lsn is %llu",
                        (unsigned long long)a->common, (unsigned long long)l->last_lsn);
        l->full_proven = a->has_common;
        l->full_common = a->has_common ? a->common : 0;
        rc = l->ops->snapshot_begin(l->ud, a->lsn, a->term);
        if (rc != 0)
            return fail(l, rc, "cannot start receiving a snapshot");
        l->snap_lsn = a->lsn;
        l->snap_term = a->term;
        l->snap_bytes = 0;
        l->state = REPL_LINK_SNAPSHOT;
        return 0;
    case REPLMSG_REFUSED:
        break;
    }
    return fail(l, TD_EPROTO_RESP, "unknown answer");
}

static int on_frame(struct repl_link *l, const struct replmsg_frame *f)
{
    int rc;
    l->frames++;
    if (f->type == REPLMSG_FRAME_HEARTBEAT) {
        rc = check_term(l, f->term);
        if (rc != 0)
            return rc;
        l->heartbeats++;
        if (l->ops->heartbeat)
            l->ops->heartbeat(l->ud, f->commit_lsn, f->last_lsn);
        return 0;
    }
    if (f->type == REPLMSG_FRAME_FAILSAFE) {
        rc = check_term(l, f->term);
        if (rc != 0)
            return rc;
        if (l->ops->failsafe)
            l->ops->failsafe(l->ud, f->term, f->round, f->valid_ms);
        return 0;
    }
    if (l->state == REPL_LINK_SNAPSHOT) {
        if (f->type == REPLMSG_FRAME_SNAP_CHUNK) {
            l->snap_bytes += f->chunk.len;
            rc = l->ops->snapshot_chunk(l->ud, f->chunk.p, f->chunk.len);
            return rc ? fail(l, rc, "writing the snapshot failed") : 0;
        }
        if (f->type != REPLMSG_FRAME_SNAP_END)
            return fail(l, TD_EPROTO_RESP, "frame '%c' inside a snapshot transfer", f->type);
        if (f->last_lsn != l->snap_lsn || f->term != l->snap_term ||
            f->total_bytes != l->snap_bytes)
            return fail(l, TD_ECORRUPT,
                        "snapshot end (lsn %llu, term %llu, %llu bytes) does not match the "
                        "transfer (lsn %llu, term %llu, %llu bytes)",
                        (unsigned long long)f->last_lsn, (unsigned long long)f->term,
                        (unsigned long long)f->total_bytes, (unsigned long long)l->snap_lsn,
                        (unsigned long long)l->snap_term, (unsigned long long)l->snap_bytes);
        if (l->ops->discard_before_full) {
            rc = l->ops->discard_before_full(l->ud, l->full_proven, l->full_common);
            if (rc != 0)
                return fail(l, rc, "auditing our records after lsn %llu failed",
                            (unsigned long long)l->full_common);
        }
        rc = l->ops->snapshot_end(l->ud, l->snap_lsn, l->snap_term);
        if (rc != 0)
            return fail(l, rc, "installing the snapshot failed");
        l->next_lsn = l->snap_lsn + 1;
        l->state = REPL_LINK_STREAMING;
        return 0;
    }
    if (f->type != REPLMSG_FRAME_WAL)
        return fail(l, TD_EPROTO_RESP, "snapshot frame '%c' outside a transfer", f->type);
    if (f->first_lsn != l->next_lsn)
        return fail(l, TD_ECORRUPT, "records start at lsn %llu, expected %llu",
                    (unsigned long long)f->first_lsn, (unsigned long long)l->next_lsn);
    if (f->last_term > l->term)
        return fail(l, TD_ECORRUPT, "record of term %llu from a primary in term %llu",
                    (unsigned long long)f->last_term, (unsigned long long)l->term);
    rc = l->ops->records(l->ud, f);
    if (rc != 0)
        return fail(l, rc, "applying records %llu..%llu failed", (unsigned long long)f->first_lsn,
                    (unsigned long long)f->last_lsn);
    l->records += f->nrecords;
    l->next_lsn = f->last_lsn + 1;
    return 0;
}

ssize_t repl_link_feed(struct repl_link *l, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        if (l->state == REPL_LINK_FAILED)
            return TD_EPROTO_RESP;
        ssize_t r;
        int rc;
        if (l->state == REPL_LINK_WAIT_ANSWER) {
            struct replmsg_answer a;
            r = replmsg_answer_parse(p + off, n - off, &a);
            if (r == TD_EINCOMPLETE)
                break;
            if (r < 0)
                return fail(l, (int)r, "malformed answer to REPLSYNC");
            rc = on_answer(l, &a);
        } else {
            struct replmsg_frame f;
            r = replmsg_frame_parse(p + off, n - off, &f);
            if (r == TD_EINCOMPLETE)
                break;
            if (r < 0)
                return fail(l, (int)r, "malformed replication frame");
            rc = on_frame(l, &f);
        }
        if (rc != 0)
            return rc;
        off += (size_t)r;
    }
    if (l->state == REPL_LINK_FAILED)
        return TD_EPROTO_RESP;
    return (ssize_t)off;
}
