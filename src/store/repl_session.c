/* SPDX-License-Identifier: MIT */
/* store/repl_session.c -- one replica as the primary sees it (see repl_session.h).
 *
 *   HANDSHAKE --REPLSYNC ok--> STREAMING (CONTINUE/TRUNCATE)
 *            \--REPLSYNC ok--> SNAPSHOT --snapshot sent--> STREAMING
 *            \--refused------> CLOSED
 *
 * In sync: the primary keeps one probe per replica, (target lsn, since). When the replica has
 * not acknowledged the primary's last lsn, the probe is armed with that lsn and the time; an
 * ack reaching the target within max_lag_ms keeps (or makes) the replica in sync, a probe
 * older than max_lag_ms drops it. Under constant load a replica that keeps up is therefore in
 * sync even though it is never exactly at the primary's last lsn. */
#include "store/repl_session.h"

#include <errno.h>
#include <string.h>

#include "base/err.h"

void repl_session_init(struct repl_session *s)
{
    memset(s, 0, sizeof(*s));
    s->state = REPL_SESSION_HANDSHAKE;
}

/* Compares secrets in time independent of where they differ. */
static bool secret_eq(struct slice a, struct slice b)
{
    unsigned char d = a.len != b.len;
    size_t n = a.len < b.len ? a.len : b.len;
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)(a.p[i] ^ b.p[i]);
    return d == 0;
}

static int refuse(struct repl_session *s, struct replmsg_answer *ans, uint64_t term, int code,
                  const char *text)
{
    memset(ans, 0, sizeof(*ans));
    ans->kind = REPLMSG_REFUSED;
    ans->term = term;
    ans->text = slice_cstr(text);
    s->state = REPL_SESSION_CLOSED;
    return code;
}

int repl_session_hello(struct repl_session *s, const struct replmsg_hello *h, struct slice secret,
                       const struct repl_log_view *v, struct replmsg_answer *ans,
                       struct repl_term_verdict *tv)
{
    repl_core_observe_term(true, v->term, h->last_term, "a replica's REPLSYNC", tv);
    if (s->state != REPL_SESSION_HANDSHAKE)
        return refuse(s, ans, v->term, TD_EPROTO_RESP, "ERR REPLSYNC already received");
    if (!secret_eq(h->secret, secret))
        return refuse(s, ans, v->term, -EACCES, "NOAUTH invalid replication secret");
    size_t nl = h->node.len < REPLMSG_MAX_NAME ? h->node.len : REPLMSG_MAX_NAME;
    memcpy(s->node, h->node.p, nl);
    s->node[nl] = '\0';
    int rc = repl_core_match(v, h, &s->match);
    if (rc != 0)
        return refuse(s, ans, v->term, rc, "ERR cannot read the log to match the replica");
    memset(ans, 0, sizeof(*ans));
    ans->term = v->term;
    ans->lsn = s->match.lsn;
    switch (s->match.kind) {
    case REPL_MATCH_CONTINUE:
        ans->kind = REPLMSG_CONTINUE;
        break;
    case REPL_MATCH_TRUNCATE:
        ans->kind = REPLMSG_TRUNCATE;
        break;
    case REPL_MATCH_FULL:
        ans->kind = REPLMSG_FULL;
        /* Only a V2 replica understands the fourth number; an older one gets today's line. */
        ans->has_common = h->v2 && s->match.proven;
        ans->common = ans->has_common ? s->match.common : 0;
        break;
    case REPL_MATCH_REFUSE:
        return refuse(s, ans, v->term, TD_ESTALE_TERM,
                      "ERR the replica has a higher term than this primary");
    }
    s->sent_lsn = s->match.lsn;
    /* What the replica keeps is durable there already (it was in its log). */
    s->acked_lsn = s->match.kind == REPL_MATCH_FULL ? 0 : s->match.lsn;
    s->state = s->match.kind == REPL_MATCH_FULL ? REPL_SESSION_SNAPSHOT : REPL_SESSION_STREAMING;
    return 0;
}

void repl_session_snapshot_sent(struct repl_session *s)
{
    if (s->state == REPL_SESSION_SNAPSHOT)
        s->state = REPL_SESSION_STREAMING;
}

void repl_session_sent(struct repl_session *s, uint64_t lsn)
{
    if (lsn > s->sent_lsn)
        s->sent_lsn = lsn;
}

int repl_session_ack(struct repl_session *s, uint64_t lsn, uint64_t term, uint64_t primary_term,
                     uint64_t now_ms, struct repl_term_verdict *tv)
{
    repl_core_observe_term(true, primary_term, term, "a replica's REPLACK", tv);
    if (lsn > s->sent_lsn || lsn < s->acked_lsn)
        return TD_ECORRUPT;
    s->acked_lsn = lsn;
    s->last_ack_ms = now_ms;
    return 0;
}

bool repl_session_tick(struct repl_session *s, uint64_t primary_last_lsn, uint64_t now_ms,
                       uint64_t max_lag_ms)
{
    bool was = s->in_sync;
    if (s->state != REPL_SESSION_STREAMING) {
        s->in_sync = false;
        s->target_lsn = 0;
        return was != s->in_sync;
    }
    if (s->target_lsn != 0 && s->acked_lsn >= s->target_lsn) {
        /* The probe was met (by the last ack): in time keeps or makes the replica in sync,
         * late drops it. */
        s->in_sync = s->last_ack_ms - s->target_since_ms <= max_lag_ms;
        s->target_lsn = 0;
    }
    if (s->acked_lsn >= primary_last_lsn) {
        s->in_sync = true;
        s->target_lsn = 0;
    } else if (s->target_lsn == 0) {
        s->target_lsn = primary_last_lsn;
        s->target_since_ms = now_ms;
    } else if (now_ms - s->target_since_ms > max_lag_ms) {
        s->in_sync = false;
        /* Re-arm at the current end so the replica can earn its place back. */
        s->target_lsn = primary_last_lsn;
        s->target_since_ms = now_ms;
    }
    return was != s->in_sync;
}
