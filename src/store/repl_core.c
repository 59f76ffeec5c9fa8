/* SPDX-License-Identifier: MIT */
/* store/repl_core.c -- replication decisions (see repl_core.h, docs/replication.md).
 *
 * Log matching rests on two facts. One primary per term, and a primary only appends in its
 * term, so two logs holding a record of term t at lsn L hold the same record there. Every
 * record a replica keeps was appended after a match check, so two logs that agree at L agree
 * on everything before L. Hence the common prefix of a replica and the primary ends at the
 * last lsn where both logs carry the same term: for the replica's latest term t that the
 * primary's log also contains, min(replica's last lsn in t, primary's last lsn in t). The
 * replica's hello carries its term history so terms the primary never saw are skipped
 * exactly rather than guessed. */
#include "store/repl_core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Largest lsn in [low, v->last_lsn] whose term is <= t, by binary search (terms never
 * decrease along the log), where low is the oldest lsn whose term the view knows (base_lsn,
 * or hist_lsn with kept term boundaries). *found is false when even low's term is above t. */
static int last_lsn_upto(const struct repl_log_view *v, uint64_t t, uint64_t *lsn, uint64_t *term,
                         bool *found)
{
    uint64_t low = v->has_hist && v->hist_lsn < v->base_lsn ? v->hist_lsn : v->base_lsn, bt;
    int rc = v->term_at(v->ud, low, &bt);
    if (rc != 0)
        return rc;
    if (bt > t) {
        *found = false;
        return 0;
    }
    uint64_t lo = low, hi = v->last_lsn, lo_term = bt; /* term_at(lo) <= t */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2, mt;
        rc = v->term_at(v->ud, mid, &mt);
        if (rc != 0)
            return rc;
        if (mt <= t) {
            lo = mid;
            lo_term = mt;
        } else {
            hi = mid - 1;
        }
    }
    *found = true;
    *lsn = lo;
    *term = lo_term;
    return 0;
}

int repl_core_match(const struct repl_log_view *v, const struct replmsg_hello *h,
                    struct repl_match *out)
{
    memset(out, 0, sizeof(*out));
    if (h->last_term > v->term) {
        out->kind = REPL_MATCH_REFUSE;
        out->cause = "the replica's term is higher than the primary's";
        return 0;
    }
    bool matched = false;
    uint64_t common = 0;
    if (h->last_lsn == 0) {
        matched = true; /* an empty log is a prefix of every log */
    } else {
        /* Walk the replica's term segments from the newest: [start, end] in term t. Without
         * history the only segment is the last term, its start unknown. */
        size_t nseg = h->nterms ? h->nterms : 1;
        uint64_t end = h->last_lsn;
        for (size_t k = nseg; k-- > 0;) {
            uint64_t t = h->nterms ? h->terms[k].term : h->last_term;
            uint64_t plsn = 0, pterm = 0;
            bool found;
            int rc = last_lsn_upto(v, t, &plsn, &pterm, &found);
            if (rc != 0)
                return rc;
            if (!found)
                break; /* term t and everything before it are only in the snapshot */
            if (pterm == t) {
                matched = true;
                common = end < plsn ? end : plsn;
                break;
            }
            if (h->nterms == 0)
                break;
            end = h->terms[k].first_lsn - 1;
            if (k == 0 && h->terms[0].first_lsn == 1) {
                matched = true; /* the whole history is known and shares nothing */
                common = 0;
            }
        }
    }
    if (!matched || common < v->base_lsn || common < h->base_lsn) {
        out->kind = REPL_MATCH_FULL;
        out->lsn = v->base_lsn;
        out->proven = matched;
        out->common = matched ? common : 0;
        if (!matched)
            out->cause = "no common prefix can be proven from the replica's history";
        else if (common < v->base_lsn)
            out->cause = "the primary's log no longer reaches back to the common prefix";
        else
            out->cause = "the replica's snapshot holds records the primary's history lacks";
        return 0;
    }
    out->lsn = common;
    if (common == h->last_lsn) {
        out->kind = REPL_MATCH_CONTINUE;
        out->cause = "the replica's log is a prefix of the primary's";
    } else {
        out->kind = REPL_MATCH_TRUNCATE;
        out->cause = "the replica's suffix is from a term the primary's history does not contain";
    }
    return 0;
}

int repl_core_full_audit(bool proven, uint64_t common, uint64_t snap_lsn, uint64_t last_lsn,
                         struct repl_full_audit *out)
{
    memset(out, 0, sizeof(*out));
    if (!proven)
        return 0;
    if (common > last_lsn || snap_lsn > last_lsn)
        return -ERANGE;
    if (common < snap_lsn) {
        out->keep_snapshot = true;
        out->folded = snap_lsn - common;
    }
    out->cut_after = common > snap_lsn ? common : snap_lsn;
    if (out->cut_after < last_lsn) {
        out->cut = true;
        out->cut_records = last_lsn - out->cut_after;
    }
    return 0;
}

int repl_core_first_lsn_from_term(repl_term_at_fn term_at, void *ud, uint64_t lo, uint64_t hi,
                                  uint64_t t, uint64_t *out)
{
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2, mt;
        int rc = term_at(ud, mid, &mt);
        if (rc != 0)
            return rc;
        if (mt >= t)
            hi = mid;
        else
            lo = mid + 1;
    }
    *out = lo;
    return 0;
}

int repl_core_term_history(repl_term_at_fn term_at, void *ud, uint64_t base_lsn, uint64_t last_lsn,
                           struct replmsg_hello *h)
{
    uint64_t t;
    int rc = term_at(ud, last_lsn, &t);
    if (rc != 0)
        return rc;
    h->last_lsn = last_lsn;
    h->last_term = t;
    h->base_lsn = base_lsn;
    h->nterms = 0;
    uint64_t lo_bound = base_lsn ? base_lsn : 1, hi = last_lsn;
    struct replmsg_term_start rev[REPLMSG_MAX_TERMS];
    size_t n = 0;
    while (hi >= lo_bound && n < REPLMSG_MAX_TERMS) {
        rc = term_at(ud, hi, &t);
        if (rc != 0)
            return rc;
        if (t == 0)
            break;
        /* First lsn in [lo_bound, hi] whose term is t (terms below it are lower). */
        uint64_t lo;
        rc = repl_core_first_lsn_from_term(term_at, ud, lo_bound, hi, t, &lo);
        if (rc != 0)
            return rc;
        rev[n++] = (struct replmsg_term_start){t, lo};
        hi = lo - 1;
    }
    for (size_t i = 0; i < n; i++)
        h->terms[i] = rev[n - 1 - i];
    h->nterms = n;
    return 0;
}

void repl_core_commit(const struct repl_commit_in *in, struct repl_commit *out)
{
    memset(out, 0, sizeof(*out));
    if (in->required == 0) {
        out->commit_lsn = in->local_lsn > in->prev_commit ? in->local_lsn : in->prev_commit;
        out->in_sync = 0;
        for (size_t i = 0; i < in->nreplicas; i++)
            out->in_sync += in->replicas[i].in_sync;
        return;
    }
    /* The required-th highest durable lsn among in-sync replicas, capped at local_lsn (a
     * write is acknowledged only once the primary has it too). Selection by repeated max:
     * the replica count is small. */
    uint64_t quorum = 0;
    unsigned n = 0;
    for (size_t i = 0; i < in->nreplicas; i++)
        n += in->replicas[i].in_sync;
    out->in_sync = n;
    if (n >= in->required) {
        uint64_t bound = UINT64_MAX;
        unsigned taken = 0;
        while (taken < in->required) {
            uint64_t best = 0;
            unsigned cnt = 0;
            for (size_t i = 0; i < in->nreplicas; i++) {
                uint64_t a = in->replicas[i].acked_lsn;
                if (!in->replicas[i].in_sync || a > bound)
                    continue;
                if (a > best || cnt == 0) {
                    best = a;
                    cnt = 0;
                }
                if (a == best)
                    cnt++;
            }
            /* cnt replicas are at best (all <= bound and not yet taken). */
            taken += cnt;
            quorum = best;
            if (best == 0)
                break;
            bound = best - 1;
        }
    }
    if (quorum > in->local_lsn)
        quorum = in->local_lsn;
    uint64_t commit = quorum;
    if (n < in->required) {
        out->degraded = true;
        if (in->strict) {
            out->blocked = true;
        } else if (in->unsynced_recorded) {
            commit = in->local_lsn;
        } else {
            out->record_unsynced = true;
        }
    } else if (in->unsynced_recorded) {
        /* Writes were acknowledged without replicas; keep doing so (not in strict mode) until
         * the replicas hold all of them, then clear the record. */
        if (quorum >= in->prev_commit)
            out->clear_unsynced = true;
        else if (!in->strict)
            commit = in->local_lsn;
    }
    out->commit_lsn = commit > in->prev_commit ? commit : in->prev_commit;
}

void repl_core_stream_term(uint64_t my_term, uint64_t stream_term, struct repl_term_verdict *out)
{
    memset(out, 0, sizeof(*out));
    out->new_term = my_term;
    if (stream_term < my_term) {
        out->action = REPL_TERM_REJECT;
        snprintf(out->cause, sizeof(out->cause),
                 "stream from term %llu is older than our term %llu",
                 (unsigned long long)stream_term, (unsigned long long)my_term);
    } else if (stream_term > my_term) {
        out->action = REPL_TERM_ADOPT;
        out->new_term = stream_term;
        snprintf(out->cause, sizeof(out->cause), "primary is in term %llu, ours was %llu",
                 (unsigned long long)stream_term, (unsigned long long)my_term);
    }
}

void repl_core_observe_term(bool is_primary, uint64_t my_term, uint64_t seen, const char *source,
                            struct repl_term_verdict *out)
{
    memset(out, 0, sizeof(*out));
    out->new_term = my_term;
    if (seen <= my_term)
        return;
    out->new_term = seen;
    out->action = is_primary ? REPL_TERM_STEP_DOWN : REPL_TERM_ADOPT;
    snprintf(out->cause, sizeof(out->cause), "%s term %llu from %s (own term %llu)%s",
             is_primary ? "saw higher" : "adopting", (unsigned long long)seen,
             source ? source : "a peer", (unsigned long long)my_term,
             is_primary ? ": stopped accepting writes" : "");
}
