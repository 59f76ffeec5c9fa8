/* SPDX-License-Identifier: MIT */
/* coord/syncset.c -- the wait set W and the recorded set S of sync mode (see syncset.h).
 * Invariant kept by every function: wait >= guard >= recorded, and guard contains every
 * proposal whose outcome is unknown. */
#include "coord/syncset.h"

#include <stdio.h>
#include <string.h>

static const struct syncset_replica *find(const struct syncset_replica *r, size_t n,
                                          const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].name, name) == 0)
            return &r[i];
    return NULL;
}

static bool connected(const struct syncset_replica *r, size_t n, const char *name)
{
    const struct syncset_replica *x = find(r, n, name);
    return x != NULL && x->connected;
}

/* Starts empty; n is --sync-replicas (0: the set is never used). */
void syncset_init(struct syncset *s, unsigned n, bool strict)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    s->strict = strict;
}

/* Copies recorded. */
void syncset_start(struct syncset *s, const struct cluster_names *recorded, uint64_t rev)
{
    syncset_init(s, s->n, s->strict);
    s->recorded = s->guard = s->wait = *recorded;
    s->rev = rev;
}

void syncset_observed(struct syncset *s)
{
    s->fresh = true;
}

/* Copies recorded; it only grows the guard (W must still cover anything that may be recorded). */
void syncset_adopt(struct syncset *s, const struct cluster_names *recorded, uint64_t rev)
{
    if (s->pending)
        return;
    s->recorded = *recorded;
    s->rev = rev;
    cluster_names_union(&s->guard, recorded);
    cluster_names_union(&s->wait, recorded);
}

void syncset_result(struct syncset *s, bool ok, uint64_t rev)
{
    s->pending = false;
    if (!ok)
        return; /* unknown or refused: the guard keeps covering it */
    s->recorded = s->guard = s->proposal;
    s->rev = rev;
}

bool syncset_is_degraded(const struct syncset *s)
{
    return s->recorded.n < s->n;
}

/* Fills out; never fails. Order matters: removals are proposed before W shrinks, W grows before
 * anything is proposed for S, and only an observation after W changed can prove a catch-up. */
void syncset_step(struct syncset *s, const struct syncset_replica *r, size_t nr, uint64_t acked_lsn,
                  bool can_write, struct syncset_out *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->tell_why, sizeof(out->tell_why), "replica set changed");
    bool changed = false;
    if (!s->pending && can_write) {
        /* A recorded replica went away: record its removal before we stop waiting for it. */
        struct cluster_names keep = {0};
        const char *gone = NULL;
        for (size_t i = 0; i < s->recorded.n; i++) {
            if (connected(r, nr, s->recorded.v[i]))
                cluster_names_add(&keep, s->recorded.v[i]);
            else
                gone = s->recorded.v[i];
        }
        if (gone != NULL) {
            out->propose = true;
            out->proposal = keep;
            snprintf(out->propose_why, sizeof(out->propose_why), "sync replica '%s' disconnected",
                     gone);
        } else if (!cluster_names_same(&s->guard, &s->recorded)) {
            /* A proposal went unanswered and may still land: write S again, which changes the
             * key's revision and so voids it; then W may let go of what it guarded. */
            out->propose = true;
            out->proposal = s->recorded;
            snprintf(out->propose_why, sizeof(out->propose_why), "voiding an unanswered proposal");
        }
    }
    for (size_t i = 0; i < s->wait.n;) {
        const char *w = s->wait.v[i];
        if (connected(r, nr, w) || cluster_names_has(&s->guard, w)) {
            i++;
            continue;
        }
        snprintf(out->tell_why, sizeof(out->tell_why), "replica '%s' left the wait set", w);
        cluster_names_del(&s->wait, w);
        changed = true;
    }
    while (s->wait.n < s->n) {
        const struct syncset_replica *best = NULL;
        for (size_t i = 0; i < nr; i++)
            if (r[i].connected && !cluster_names_has(&s->wait, r[i].name) &&
                (best == NULL || r[i].lsn > best->lsn))
                best = &r[i];
        if (best == NULL)
            break;
        snprintf(out->tell_why, sizeof(out->tell_why), "replica '%s' joins the wait set",
                 best->name);
        cluster_names_add(&s->wait, best->name);
        changed = true;
    }
    if (changed)
        s->fresh = false;
    if (!out->propose && !s->pending && can_write && s->fresh && s->recorded.n < s->n) {
        struct cluster_names grow = s->recorded;
        for (size_t i = 0; i < s->wait.n; i++) {
            const struct syncset_replica *x = find(r, nr, s->wait.v[i]);
            if (x != NULL && x->connected && x->lsn >= acked_lsn)
                cluster_names_add(&grow, x->name);
        }
        if (grow.n != s->recorded.n) {
            out->propose = true;
            out->proposal = grow;
            snprintf(out->propose_why, sizeof(out->propose_why),
                     "replicas hold every write up to lsn %llu", (unsigned long long)acked_lsn);
        }
    }
    if (out->propose) {
        s->proposal = out->proposal;
        cluster_names_union(&s->guard, &out->proposal);
        s->pending = true;
    }
    out->degraded = syncset_is_degraded(s);
    out->hold = s->strict && s->wait.n < s->n;
    out->tell = !s->told_once || !cluster_names_same(&s->wait, &s->told) ||
                out->degraded != s->told_degraded || out->hold != s->told_hold;
    if (out->tell) {
        s->told = s->wait;
        s->told_degraded = out->degraded;
        s->told_hold = out->hold;
        s->told_once = true;
    }
}
