/* SPDX-License-Identifier: MIT */
/* coord/agent.c -- the HA agent's decision core (Patroni's loop as a pure state machine).
 *
 *   STARTING --first coordinator snapshot--> REPLICA
 *   REPLICA  --leader key held by X--> REPLICA following X (FOLLOW)
 *   REPLICA  --leader key absent; we are the best eligible member; no failsafe promise pending;
 *              startup grace (one TTL) over--> txn { leader absent, term/sync/failsafe unchanged }
 *              => { leader = us in term+1 on our lease, term = term+1, sync = {}, failsafe = the
 *              members alive }
 *   REPLICA  --txn ok, or a snapshot shows that txn took effect--> leader-elect
 *   leader-elect --every failsafe promise we made has run out--> PRIMARY (PROMOTE)
 *   PRIMARY  --renewal not confirmed in time / key held by another / higher term seen / lease
 *              gone without failsafe--> REPLICA (DEMOTE, then release the key if it is ours)
 *   PRIMARY  --renewal in doubt--> failsafe pings: each member of the recorded failsafe set
 *              confirms it follows us (promising not to take over for a TTL); when all did, writes
 *              may go on past the lease; when the coordinator returns, we re-take our key in the
 *              same term.
 *
 * Fencing. A primary may accept writes only before write_until(): the send time of the last
 * renewal the coordinator confirmed, plus the TTL, minus a margin. The coordinator refreshed the
 * lease no earlier than we sent it and never expires it early, so our permission ends before the
 * leader key can disappear and before anyone else can take it. A failsafe round sent at s extends
 * it to s + TTL - margin only when every member that could be elected (the failsafe set, which a
 * candidate must belong to) confirmed, each promising at receipt r >= s not to promote before
 * r + TTL + margin. A leader-elect promotes only once its own promises ran out.
 *
 * Terms. The `term` key holds the highest term ever granted; a promotion writes term+1 in the
 * same transaction that takes the leader key, so its term exceeds every term recorded. A term we
 * stepped down from is never acted in again (a late snapshot may still show our old key).
 *
 * Sync mode. W is the set the store waits on before acknowledging; S is the recorded in-sync set
 * (only S and the leader that recorded it may be promoted). The agent keeps W >= S: a replica
 * joins W first and S once it holds every acknowledged write; it leaves S first (a confirmed
 * write) and W afterwards; a proposal whose outcome is unknown stays guarded in W. */
#include "coord/agent.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"
#include "coord/cluster.h"
#include "coord/syncset.h"

#define NM CLUSTER_NAME_MAX
#define MAX_PENDING 32
#define MAX_KEEPALIVES 6
#define ROUNDS 4
#define ARENA 16384

_Static_assert(AGENT_NAME_MAX == CLUSTER_NAME_MAX && AGENT_MAX_MEMBERS == CLUSTER_MAX_MEMBERS,
               "agent and cluster limits agree");

enum rq { RQ_GRANT = 1, RQ_KEEPALIVE, RQ_READ, RQ_PUBLISH, RQ_ACQUIRE, RQ_SYNC, RQ_FS, RQ_OTHER };

struct pending {
    uint64_t id, sent_ms, lease;
    enum rq kind;
};

struct rep {
    char name[NM];
    bool connected;
    uint64_t lsn;
};

struct round {
    uint64_t id, sent_ms;
    struct cluster_names to;
    uint32_t acked;
};

struct agent {
    struct agent_config cfg;
    char name[NM], addr[NM], prefix[NM + 16];
    uint64_t now, start_ms;
    enum agent_role role;
    bool stopped;
    uint64_t term;          /* highest term known; never decreases */
    uint64_t my_term;       /* term of the key we hold (leader-elect or primary) */
    uint64_t released_term; /* we stepped down from this term: never act in it again */

    /* Our lease; lease_until = lease_sent (send time of the last confirmed renewal) + TTL - margin.
     */
    uint64_t lease, lease_ttl, lease_until, lease_sent, next_renew, next_grant;
    bool grant_pending;
    uint64_t hold_rev, hold_lease; /* our leader key: its revision and lease */
    bool elect, waiting_noted;

    char follow[NM], follow_addr[NM];
    uint64_t follow_term;

    struct cluster_view
        view; /* the last READ; max_rev: newest revision seen, older READs ignored */
    bool read_pending, read_now, dcs_down, publish_pending, acquire_pending, acquire_own;
    uint64_t max_rev, next_read, next_publish, acquire_term, published_lease;
    struct cluster_names acquire_fs;
    char published[CLUSTER_VALUE_MAX], publishing[CLUSTER_VALUE_MAX];

    bool have_obs, healthy;
    uint64_t last_lsn, last_term, acked_lsn;
    size_t nrep;
    struct rep rep[AGENT_MAX_MEMBERS];

    struct syncset sync; /* sync mode's wait set and recorded set, while we hold the key */

    /* Failsafe. fs_rec: the set recorded for our term; fs_need: it plus any proposal that may yet
     * land (who must confirm a round); fs_until: end of the permission confirmations gave us.
     * promise_until: replica side, we promised a primary not to take over before then. */
    struct cluster_names fs_rec, fs_need, fs_prop;
    uint64_t fs_rev, fs_until, next_ping, round_seq, promise_until;
    bool fs_pending, fs_known;
    struct round rounds[ROUNDS];

    uint64_t below_since, prov_at, prov_backoff;
    unsigned provisions;

    struct pending pend[MAX_PENDING];
    uint64_t next_id;
    struct agent_action act[AGENT_MAX_ACTIONS];
    size_t nact, arena_len, nptrs;
    char cause[AGENT_MAX_ACTIONS][AGENT_CAUSE_MAX];
    char arena[ARENA];
    const char *ptrs[4 * AGENT_MAX_MEMBERS];
};

/* ---- output: actions, requests, per-call arena ---- */

/* n bytes from the per-call arena; they live until the next non-const call. */
static char *abuf(struct agent *a, size_t n)
{
    TD_ASSERT(n <= ARENA - a->arena_len);
    char *p = a->arena + a->arena_len;
    a->arena_len += n;
    return p;
}

__attribute__((format(printf, 2, 3))) static char *astr(struct agent *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = ARENA - a->arena_len;
    int n = vsnprintf(a->arena + a->arena_len, room, fmt, ap);
    va_end(ap);
    TD_ASSERT(n >= 0 && (size_t)n < room);
    return abuf(a, (size_t)n + 1);
}

static const char *set_value(struct agent *a, uint64_t term, const struct cluster_names *m)
{
    char *v = abuf(a, CLUSTER_VALUE_MAX);
    cluster_set_value(v, CLUSTER_VALUE_MAX, a->name, term, m);
    return v;
}

static const char *const *aptrs(struct agent *a, const struct cluster_names *s)
{
    TD_ASSERT(a->nptrs + s->n <= sizeof(a->ptrs) / sizeof(a->ptrs[0]));
    const char **p = &a->ptrs[a->nptrs];
    for (size_t i = 0; i < s->n; i++)
        p[i] = s->v[i];
    a->nptrs += s->n;
    return p;
}

__attribute__((format(printf, 3, 4))) static struct agent_action *
emit(struct agent *a, enum agent_action_kind kind, const char *fmt, ...)
{
    TD_ASSERT(a->nact < AGENT_MAX_ACTIONS);
    struct agent_action *x = &a->act[a->nact];
    memset(x, 0, sizeof(*x));
    x->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->cause[a->nact], AGENT_CAUSE_MAX, fmt, ap);
    va_end(ap);
    x->cause = a->cause[a->nact++];
    return x;
}

static void note(struct agent *a, bool warn, const char *why)
{
    emit(a, AGENT_ACT_NOTE, "%s", why)->u.note.warn = warn;
}

/* Emits a coordinator request and remembers it until its result or its deadline. */
static struct dcs_req *request(struct agent *a, enum rq kind, enum dcs_op op, uint64_t lease,
                               const char *why)
{
    size_t i = 0;
    while (i < MAX_PENDING && a->pend[i].kind != 0)
        i++;
    TD_ASSERT(i < MAX_PENDING);
    struct dcs_req *r = &emit(a, AGENT_ACT_DCS, "%s", why)->u.dcs;
    r->id = ++a->next_id;
    r->op = op;
    r->lease = lease;
    a->pend[i] = (struct pending){r->id, a->now, lease, kind};
    return r;
}

/* Adds a write (val NULL: a delete) of prefix+key to a transaction. */
static void put(struct agent *a, struct dcs_req *r, const char *key, const char *val,
                uint64_t lease)
{
    struct slice k = slice_cstr(astr(a, "%s%s", a->prefix, key));
    struct slice v = val ? slice_cstr(val) : slice_of("", 0);
    r->put[r->nput++] = (struct dcs_put){k, v, lease, val == NULL};
}

static void cmp(struct agent *a, struct dcs_req *r, const char *key, uint64_t rev)
{
    r->cmp[r->ncmp++] = (struct dcs_cmp){slice_cstr(astr(a, "%s%s", a->prefix, key)), rev};
}

/* A transaction guarded by our leader key (and the revision of key), writing val to key. */
static void guarded_write(struct agent *a, enum rq kind, const char *key, uint64_t rev,
                          const char *val, const char *why)
{
    struct dcs_req *r = request(a, kind, DCS_OP_TXN, 0, why);
    cmp(a, r, "leader", a->hold_rev);
    cmp(a, r, key, rev);
    put(a, r, key, val, 0);
}

/* ---- the write path's view ---- */

/* The instant our permission to accept writes ends (0: none). */
static uint64_t write_until(const struct agent *a)
{
    if (a->role != AGENT_PRIMARY || a->stopped)
        return 0;
    uint64_t u = 0;
    if (a->hold_rev != 0 && a->lease != 0 && a->hold_lease == a->lease)
        u = a->lease_until;
    return a->fs_until > u ? a->fs_until : u;
}

/* Pure, O(1), safe to call from the write path at any time. */
bool agent_may_accept_writes(const struct agent *a, uint64_t now_ms)
{
    return now_ms < write_until(a);
}

/* ---- transitions ---- */

static void set_term(struct agent *a, uint64_t t)
{
    if (t > a->term)
        a->term = t;
}

static void follow(struct agent *a, const char *name, const char *addr, uint64_t term,
                   const char *why)
{
    if (strcmp(a->follow, name) == 0 && strcmp(a->follow_addr, addr) == 0 && a->follow_term == term)
        return;
    snprintf(a->follow, NM, "%s", name);
    snprintf(a->follow_addr, NM, "%s", addr);
    a->follow_term = term;
    struct agent_action *x = emit(a, AGENT_ACT_FOLLOW, "%s", why);
    x->u.follow.name = name[0] ? a->follow : NULL;
    x->u.follow.addr = a->follow_addr;
    x->u.follow.term = term;
}

/* Deletes the leader key if it is still the one at revision rev, so that the next election need
 * not wait for our lease. Only after we stopped accepting writes. */
static void release(struct agent *a, uint64_t rev, uint64_t term, const char *why)
{
    /* It may take effect any time from now on: never trust a key of this term again. */
    if (term > a->released_term)
        a->released_term = term;
    struct dcs_req *r = request(a, RQ_OTHER, DCS_OP_TXN, 0, why);
    cmp(a, r, "leader", rev);
    put(a, r, "leader", NULL, 0);
}

/* Stops acting as primary (or leader-elect) at once. */
static void demote(struct agent *a, const char *why)
{
    if (a->role == AGENT_PRIMARY) {
        emit(a, AGENT_ACT_DEMOTE, "%s", why);
        a->role = AGENT_REPLICA;
        a->follow[0] = '\0';
        a->follow_term = 0;
    } else if (a->elect) {
        note(a, true, astr(a, "giving up the leader key: %s", why));
    }
    if (a->my_term > a->released_term)
        a->released_term = a->my_term;
    if (a->hold_rev != 0)
        release(a, a->hold_rev, a->my_term, "stepped down: releasing the leader key");
    a->my_term = a->hold_rev = a->hold_lease = a->fs_until = 0;
    a->elect = a->fs_known = a->fs_pending = false;
    a->fs_rec.n = a->fs_need.n = 0;
    syncset_init(&a->sync, a->cfg.sync_replicas, a->cfg.sync_strict);
    a->below_since = a->prov_at = 0;
    a->prov_backoff = a->cfg.provision_backoff_ms;
    memset(a->rounds, 0, sizeof(a->rounds));
    a->read_now = true;
}

/* Sync mode, primary: one syncset round; writes the proposal it asks for, tells the store W. */
static void maintain_sync(struct agent *a)
{
    struct syncset_replica reps[AGENT_MAX_MEMBERS];
    struct syncset_out o;
    for (size_t i = 0; i < a->nrep; i++) {
        /* Only a member of the recorded failsafe set may be in S: a candidate must belong to
         * both, so S outside F would leave nobody electable once we die (a replica that came
         * back while a failsafe round held F still joins S, one F update later). */
        bool in_f = !a->cfg.failsafe ||
                    (a->fs_known && cluster_names_has(&a->fs_rec, a->rep[i].name));
        reps[i] = (struct syncset_replica){a->rep[i].name, a->rep[i].connected && in_f,
                                           a->rep[i].lsn};
    }
    syncset_step(&a->sync, reps, a->nrep, a->acked_lsn, a->hold_rev != 0, &o);
    if (o.propose) {
        const char *val = set_value(a, a->my_term, &o.proposal);
        guarded_write(a, RQ_SYNC, "sync", a->sync.rev, val,
                      astr(a, "%s: recording %s", o.propose_why, val));
    }
    if (!o.tell)
        return;
    struct agent_action *x =
        emit(a, AGENT_ACT_SYNC, "%s; %s%zu of %u replicas recorded in sync%s", o.tell_why,
             o.degraded ? "only " : "", a->sync.recorded.n, a->cfg.sync_replicas,
             !o.degraded ? ""
             : o.hold    ? ": holding acknowledgements"
                         : ": writes continue DEGRADED");
    x->u.sync.names = aptrs(a, &a->sync.wait);
    x->u.sync.n = a->sync.wait.n;
    x->u.sync.degraded = o.degraded;
    x->u.sync.hold_acks = o.hold;
}

static void promote(struct agent *a)
{
    a->role = AGENT_PRIMARY;
    a->elect = a->waiting_noted = false;
    a->follow[0] = '\0';
    a->follow_term = 0;
    emit(a, AGENT_ACT_PROMOTE,
         "holding the leader key for term %" PRIu64 " (lsn %" PRIu64 ", last term %" PRIu64
         ", lease valid until %" PRIu64 ")",
         a->my_term, a->last_lsn, a->last_term, a->lease_until)
        ->u.promote.term = a->my_term;
    if (a->cfg.sync_replicas > 0) /* before any write: the store waits for S from the start */
        maintain_sync(a);
}

/* Our lease is gone at the coordinator, and every key on it. */
static void lease_lost(struct agent *a, const char *why)
{
    a->lease = a->lease_until = 0;
    a->published[0] = '\0';
    a->hold_rev = 0; /* the key went with the lease: nothing to release */
    if (a->role == AGENT_PRIMARY && a->now < a->fs_until)
        note(a, true, astr(a, "%s; serving on failsafe until %" PRIu64, why, a->fs_until));
    else if (a->role == AGENT_PRIMARY || a->elect)
        demote(a, why);
}

/* A term from anywhere: a primary in a lower term steps down at once. */
static void saw_term(struct agent *a, uint64_t term, const char *where)
{
    set_term(a, term);
    if (a->role == AGENT_PRIMARY && term > a->my_term)
        demote(a, astr(a, "saw term %" PRIu64 " (%s), above our term %" PRIu64, term, where,
                       a->my_term));
}

/* ---- election ---- */

static bool eligible(const struct agent *a, const char *name, bool healthy, uint32_t prio)
{
    const struct cluster_view *v = &a->view;
    if (!healthy || prio == 0)
        return false;
    if (v->sync.rev != 0 && strcmp(v->sync.leader, name) != 0 &&
        !cluster_names_has(&v->sync.members, name))
        return false;
    return v->failsafe.rev == 0 || cluster_names_has(&v->failsafe.members, name);
}

/* True when x ranks above y: (last_term, lsn), then priority, then the smaller name. */
static bool better(const struct cluster_member *x, const struct cluster_member *y)
{
    if (x->last_term != y->last_term)
        return x->last_term > y->last_term;
    if (x->lsn != y->lsn)
        return x->lsn > y->lsn;
    if (x->priority != y->priority)
        return x->priority > y->priority;
    return strcmp(x->name, y->name) < 0;
}

/* The leader key is absent: take it if we are the best eligible member we can see. */
static void run_election(struct agent *a)
{
    const struct cluster_view *v = &a->view;
    uint64_t now = a->now;
    if (a->acquire_pending || a->elect || !a->have_obs || a->lease == 0 || a->lease_until <= now ||
        now < a->start_ms + a->cfg.ttl_ms + a->cfg.margin_ms || now < a->promise_until ||
        !eligible(a, a->name, a->healthy, a->cfg.priority))
        return;
    struct cluster_member me = {
        .lsn = a->last_lsn, .last_term = a->last_term, .priority = a->cfg.priority};
    snprintf(me.name, NM, "%s", a->name);
    for (size_t i = 0; i < v->nmembers; i++) {
        const struct cluster_member *m = &v->members[i];
        if (strcmp(m->name, a->name) != 0 && eligible(a, m->name, m->healthy, m->priority) &&
            better(m, &me))
            return;
    }
    uint64_t t = a->term > v->term ? a->term : v->term;
    t = (t > a->last_term ? t : a->last_term) + 1;
    a->acquire_fs.n = 0;
    cluster_names_add(&a->acquire_fs, a->name);
    for (size_t i = 0; i < v->nmembers; i++)
        cluster_names_add(&a->acquire_fs, v->members[i].name);
    const char *why = astr(a,
                           "leader key absent at rev %" PRIu64 "; best eligible (last term %" PRIu64
                           ", lsn %" PRIu64 ", priority %u): taking it for term %" PRIu64,
                           v->rev, a->last_term, a->last_lsn, a->cfg.priority, t);
    struct dcs_req *r = request(a, RQ_ACQUIRE, DCS_OP_TXN, a->lease, why);
    cmp(a, r, "leader", 0);
    cmp(a, r, "term", v->term_rev);
    cmp(a, r, "sync", v->sync.rev);
    cmp(a, r, "failsafe", v->failsafe.rev);
    char *leader = abuf(a, CLUSTER_VALUE_MAX), *term = abuf(a, 32);
    cluster_leader_value(leader, CLUSTER_VALUE_MAX, a->name, t, a->addr);
    cluster_term_value(term, 32, t);
    struct cluster_names none = {0};
    put(a, r, "leader", leader, a->lease);
    put(a, r, "term", term, 0);
    put(a, r, "sync", a->cfg.sync_replicas ? set_value(a, t, &none) : NULL, 0);
    put(a, r, "failsafe", set_value(a, t, &a->acquire_fs), 0);
    a->acquire_pending = true;
    a->acquire_own = false;
    a->acquire_term = t;
}

/* ---- applying a coordinator snapshot ---- */

/* Primary: keep the recorded failsafe set equal to the members alive at the coordinator. */
static void maintain_failsafe(struct agent *a)
{
    const struct cluster_view *v = &a->view;
    if (v->failsafe.rev != 0 && strcmp(v->failsafe.leader, a->name) == 0 &&
        v->failsafe.term == a->my_term && !a->fs_pending) {
        a->fs_rec = v->failsafe.members;
        a->fs_rev = v->failsafe.rev;
        a->fs_known = true;
        cluster_names_union(&a->fs_need, &v->failsafe.members);
    }
    struct cluster_names alive = {0};
    cluster_names_add(&alive, a->name);
    for (size_t i = 0; i < v->nmembers; i++)
        cluster_names_add(&alive, v->members[i].name);
    if (a->fs_pending || a->hold_rev == 0 || !a->fs_known || cluster_names_same(&alive, &a->fs_rec))
        return;
    /* A member added to the set becomes electable at once, but confirmed no earlier round: not
     * while those rounds are what lets us accept writes. */
    for (size_t i = 0; i < alive.n; i++)
        if (a->now < a->fs_until && !cluster_names_has(&a->fs_need, alive.v[i]))
            return;
    const char *val = set_value(a, a->my_term, &alive);
    guarded_write(a, RQ_FS, "failsafe", a->fs_rev, val,
                  astr(a, "members alive changed: recording failsafe set %s", val));
    a->fs_prop = alive;
    cluster_names_union(&a->fs_need, &alive); /* it may take effect though we never hear back */
    a->fs_pending = true;
}

/* Primary whose key vanished while failsafe holds every other candidate back: take it again in
 * the same term. */
static void retake(struct agent *a)
{
    const struct cluster_view *v = &a->view;
    a->hold_rev = 0;
    if (a->acquire_pending || a->lease == 0 || a->lease_until <= a->now || v->term != a->my_term)
        return;
    struct dcs_req *r =
        request(a, RQ_ACQUIRE, DCS_OP_TXN, a->lease,
                astr(a, "re-taking the leader key for term %" PRIu64 " (failsafe)", a->my_term));
    cmp(a, r, "leader", 0);
    cmp(a, r, "term", v->term_rev);
    char *leader = abuf(a, CLUSTER_VALUE_MAX);
    cluster_leader_value(leader, CLUSTER_VALUE_MAX, a->name, a->my_term, a->addr);
    put(a, r, "leader", leader, a->lease);
    a->acquire_pending = a->acquire_own = true;
}

static void on_snapshot(struct agent *a)
{
    const struct cluster_view *v = &a->view;
    set_term(a, v->term);
    set_term(a, v->leader_term);
    if (a->role == AGENT_STARTING)
        a->role = AGENT_REPLICA;
    bool named = v->leader_rev != 0 && strcmp(v->leader, a->name) == 0;
    bool mine = named && a->lease != 0 && v->leader_lease == a->lease;
    if (a->role == AGENT_PRIMARY) {
        if (mine && v->leader_term == a->my_term) {
            a->hold_rev = v->leader_rev;
            a->hold_lease = a->lease;
            if (v->sync.rev != 0 && strcmp(v->sync.leader, a->name) == 0 &&
                v->sync.term == a->my_term)
                syncset_adopt(&a->sync, &v->sync.members, v->sync.rev);
            maintain_failsafe(a);
            return;
        }
        if (v->leader_rev != 0 || v->term > a->my_term)
            demote(a, astr(a,
                           "leader key held by '%s' in term %" PRIu64 " (term key %" PRIu64
                           "), not by us in term %" PRIu64,
                           v->leader, v->leader_term, v->term, a->my_term));
        else if (a->now >= a->fs_until)
            demote(a, astr(a, "leader key gone from the coordinator (rev %" PRIu64 ")", v->rev));
        else
            return retake(a);
    }
    if (v->leader_rev == 0 || !named)
        a->waiting_noted = false;
    if (mine && (v->leader_term < a->term || v->leader_term <= a->released_term)) {
        if (!a->acquire_pending)
            release(a, v->leader_rev, v->leader_term, "our leader key is from a term we left");
    } else if (mine) {
        if (!a->elect && !a->acquire_pending) {
            /* An acquisition whose outcome we never heard took effect. */
            a->elect = true;
            a->my_term = v->leader_term;
            a->hold_rev = v->leader_rev;
            a->hold_lease = a->lease;
            syncset_start(&a->sync, &v->sync.members, v->sync.rev);
            a->fs_rec = a->fs_need = v->failsafe.members;
            a->fs_rev = v->failsafe.rev;
            a->fs_known = v->failsafe.rev != 0;
        }
    } else if (named) {
        if (!a->waiting_noted)
            note(a, false,
                 astr(a,
                      "leader key names us on lease %" PRIu64 ", not on ours (%" PRIu64
                      "): waiting for it to expire",
                      v->leader_lease, a->lease));
        a->waiting_noted = true;
        follow(a, "", "", 0, "the leader key is a previous life of ours");
    } else if (v->leader_rev != 0) {
        if (a->elect)
            demote(a, "another node holds the leader key");
        follow(a, v->leader, v->leader_addr, v->leader_term,
               astr(a, "leader key held by '%s' in term %" PRIu64, v->leader, v->leader_term));
    } else {
        if (a->elect)
            demote(a, "our leader key vanished before we could promote");
        run_election(a);
    }
}

/* ---- results ---- */

static void on_result(struct agent *a, const struct pending *p, const struct dcs_result *r)
{
    int st = r->status;
    bool current = p->lease == a->lease;
    if (st == DCS_EUNAVAIL && !a->dcs_down)
        note(a, true, astr(a, "coordinator unreachable (request %" PRIu64 ")", p->id));
    else if (st != DCS_EUNAVAIL && a->dcs_down)
        note(a, false, "coordinator reachable again");
    a->dcs_down = st == DCS_EUNAVAIL;
    if (st == DCS_OK && r->op == DCS_OP_TXN && r->rev > a->max_rev)
        a->max_rev = r->rev; /* a later READ older than our own write is stale */
    if (st == DCS_ENOLEASE && current && p->lease != 0)
        lease_lost(a, astr(a, "lease %" PRIu64 " unknown to the coordinator", p->lease));
    switch (p->kind) {
    case RQ_GRANT:
        a->grant_pending = false;
        if (st != DCS_OK || r->lease == 0) {
            a->next_grant = a->now + a->cfg.renew_ms;
            break;
        }
        a->lease = r->lease;
        a->lease_ttl = r->ttl_ms && r->ttl_ms < a->cfg.ttl_ms ? r->ttl_ms : a->cfg.ttl_ms;
        a->lease_sent = p->sent_ms;
        a->lease_until = p->sent_ms + a->lease_ttl - a->cfg.margin_ms;
        a->next_renew = p->sent_ms + a->cfg.renew_ms;
        a->read_now = true;
        break;
    case RQ_KEEPALIVE:
        if (st == DCS_OK && current &&
            p->sent_ms + a->lease_ttl - a->cfg.margin_ms > a->lease_until) {
            a->lease_until = p->sent_ms + a->lease_ttl - a->cfg.margin_ms;
            a->lease_sent = p->sent_ms;
        }
        break;
    case RQ_READ:
        a->read_pending = false;
        if (st == DCS_OK && r->rev >= a->max_rev) {
            a->max_rev = r->rev;
            cluster_parse(&a->view, a->prefix, r);
            on_snapshot(a);
        }
        break;
    case RQ_PUBLISH:
        a->publish_pending = false;
        if (st == DCS_OK && current) {
            memcpy(a->published, a->publishing, sizeof(a->published));
            a->published_lease = p->lease;
        } else {
            a->next_publish = a->now + a->cfg.loop_ms;
        }
        break;
    case RQ_ACQUIRE:
        a->acquire_pending = false;
        a->read_now = true;
        if (st != DCS_OK || !current) {
            break;
        } else if (a->acquire_own) {
            a->hold_rev = r->rev;
            a->hold_lease = p->lease;
            note(a, false, astr(a, "leader key re-taken for term %" PRIu64, a->my_term));
        } else if (a->role != AGENT_PRIMARY) {
            a->elect = true;
            a->my_term = a->acquire_term;
            set_term(a, a->acquire_term);
            a->hold_rev = a->fs_rev = r->rev;
            a->hold_lease = p->lease;
            struct cluster_names none = {0};
            syncset_start(&a->sync, &none, r->rev);
            a->fs_rec = a->fs_need = a->acquire_fs;
            a->fs_known = true;
        }
        break;
    case RQ_SYNC:
        syncset_result(&a->sync, st == DCS_OK && a->role == AGENT_PRIMARY, r->rev);
        a->read_now |= st == DCS_ECOMPARE;
        break;
    case RQ_FS:
        a->fs_pending = false;
        if (st == DCS_OK && a->role == AGENT_PRIMARY) {
            a->fs_rec = a->fs_need = a->fs_prop;
            a->fs_rev = r->rev;
        }
        a->read_now |= st == DCS_ECOMPARE;
        break;
    case RQ_OTHER:
        a->read_now = true;
        break;
    }
}

/* ---- routine work, after every event ---- */

/* Extends the failsafe permission with a round every member confirmed. */
static void round_done(struct agent *a, const struct round *rd)
{
    uint64_t until = rd->sent_ms + a->cfg.ttl_ms - a->cfg.margin_ms;
    for (size_t i = 0; i < a->fs_need.n; i++) /* the set grew since: not a full round */
        if (strcmp(a->fs_need.v[i], a->name) != 0 && !cluster_names_has(&rd->to, a->fs_need.v[i]))
            return;
    if (until <= a->fs_until)
        return;
    if (a->now >= a->fs_until)
        note(a, true,
             astr(a,
                  "failsafe: all %zu members confirmed round %" PRIu64 " sent at %" PRIu64
                  "; accepting writes until %" PRIu64 " without the coordinator",
                  rd->to.n, rd->id, rd->sent_ms, until));
    a->fs_until = until;
}

/* Primary whose lease is in doubt: ask every member that could be elected to confirm us. */
static void failsafe_ping(struct agent *a)
{
    if (a->role != AGENT_PRIMARY || !a->cfg.failsafe || !a->fs_known || a->now < a->next_ping)
        return;
    a->next_ping = a->now + a->cfg.renew_ms;
    if (!a->dcs_down && a->hold_rev != 0 && a->hold_lease == a->lease &&
        a->lease_until >= a->now + a->lease_ttl / 2)
        return;
    struct round *rd = &a->rounds[++a->round_seq % ROUNDS];
    rd->id = a->round_seq;
    rd->sent_ms = a->now;
    rd->acked = 0;
    rd->to = a->fs_need;
    cluster_names_del(&rd->to, a->name);
    if (rd->to.n == 0)
        return round_done(a, rd); /* nobody else may be elected */
    struct agent_action *x = emit(a, AGENT_ACT_FAILSAFE_PING,
                                  "lease in doubt (valid until %" PRIu64
                                  "): asking %zu members to confirm term %" PRIu64,
                                  a->lease_until, rd->to.n, a->my_term);
    x->u.ping.to = aptrs(a, &rd->to);
    x->u.ping.n = rd->to.n;
    x->u.ping.term = a->my_term;
    x->u.ping.round = rd->id;
    x->u.ping.valid_ms = a->cfg.ttl_ms;
}

/* Primary: too few healthy replicas for provision_after -> PROVISION, then again only after a
 * backoff that doubles (up to 8x) while it does not help. */
static void provision(struct agent *a)
{
    unsigned healthy = 0, min = a->cfg.min_replicas;
    for (size_t i = 0; i < a->nrep; i++)
        healthy += a->rep[i].connected;
    if (healthy >= min) {
        a->below_since = a->prov_at = 0;
        a->prov_backoff = a->cfg.provision_backoff_ms;
        return;
    }
    if (a->below_since == 0)
        a->below_since = a->now;
    if (a->now < a->below_since + a->cfg.provision_after_ms ||
        (a->prov_at != 0 && a->now < a->prov_at + a->prov_backoff))
        return;
    emit(a, AGENT_ACT_PROVISION,
         "%u healthy replicas, below min %u since %" PRIu64 " (%" PRIu64 "ms)%s", healthy, min,
         a->below_since, a->now - a->below_since,
         a->prov_at ? astr(a, "; provisioning at %" PRIu64 " did not help: retrying", a->prov_at)
                    : "")
        ->u.provision.missing = min - healthy;
    if (a->prov_at != 0 && a->prov_backoff < 8 * a->cfg.provision_backoff_ms)
        a->prov_backoff *= 2;
    a->prov_at = a->now;
    a->provisions++;
}

static void publish(struct agent *a)
{
    if (a->lease == 0 || !a->have_obs || a->publish_pending ||
        (a->now < a->next_publish && a->published_lease == a->lease))
        return;
    a->next_publish = a->now + a->cfg.loop_ms;
    struct cluster_member me = {.lsn = a->last_lsn,
                                .last_term = a->last_term,
                                .priority = a->cfg.priority,
                                .healthy = a->healthy};
    snprintf(me.addr, NM, "%s", a->addr);
    cluster_member_value(a->publishing, sizeof(a->publishing), &me, agent_role_name(a->role),
                         a->term, a->role == AGENT_PRIMARY ? a->name : a->follow);
    if (strcmp(a->publishing, a->published) == 0 && a->published_lease == a->lease)
        return;
    struct dcs_req *r = request(a, RQ_PUBLISH, DCS_OP_TXN, a->lease, "publish member state");
    put(a, r, astr(a, "members/%s", a->name), a->publishing, a->lease);
    a->publish_pending = true;
}

static void step(struct agent *a)
{
    uint64_t now = a->now;
    if (a->stopped)
        return;
    for (size_t i = 0; i < MAX_PENDING; i++) { /* no result by the deadline: outcome unknown */
        struct pending p = a->pend[i];
        if (p.kind == 0 || now < p.sent_ms + a->cfg.dcs_timeout_ms)
            continue;
        a->pend[i].kind = 0;
        struct dcs_result r = {.id = p.id, .status = DCS_EUNAVAIL};
        on_result(a, &p, &r);
    }
    if (a->role == AGENT_PRIMARY && now >= write_until(a)) {
        if (now >= a->lease_until)
            demote(a, astr(a,
                           "lease not confirmed within %" PRIu64 "ms since renewal sent at %" PRIu64
                           " (now %" PRIu64 ", margin %" PRIu64 "ms%s)",
                           a->lease_ttl, a->lease_sent, now, a->cfg.margin_ms,
                           a->cfg.failsafe && a->fs_known ? ", failsafe not confirmed" : ""));
        else
            demote(a, "leader key lost and failsafe not confirmed");
    }
    if (a->elect && a->my_term < a->term)
        demote(a, astr(a, "term %" PRIu64 " seen while about to promote in term %" PRIu64, a->term,
                       a->my_term));
    if (a->elect && now >= a->promise_until && a->lease == a->hold_lease && a->lease_until > now)
        promote(a);
    if (a->lease == 0 && !a->grant_pending && now >= a->next_grant) {
        request(a, RQ_GRANT, DCS_OP_GRANT, 0, "need a lease")->ttl_ms = a->cfg.ttl_ms;
        a->grant_pending = true;
    } else if (a->lease != 0 && now >= a->next_renew) {
        a->next_renew = now + a->cfg.renew_ms;
        size_t n = 0;
        for (size_t i = 0; i < MAX_PENDING; i++)
            n += a->pend[i].kind == RQ_KEEPALIVE;
        if (n < MAX_KEEPALIVES)
            request(a, RQ_KEEPALIVE, DCS_OP_KEEPALIVE, a->lease, "renew lease");
    }
    if (!a->read_pending && (a->read_now || now >= a->next_read)) {
        request(a, RQ_READ, DCS_OP_READ, 0, "read cluster state")->prefix = slice_cstr(a->prefix);
        a->read_pending = true;
        a->read_now = false;
        a->next_read = now + a->cfg.loop_ms;
    }
    publish(a);
    failsafe_ping(a);
    if (a->role == AGENT_PRIMARY && a->have_obs && a->cfg.sync_replicas > 0)
        maintain_sync(a);
    if (a->role == AGENT_PRIMARY && a->have_obs && a->cfg.min_replicas > 0)
        provision(a);
}

static void begin(struct agent *a, uint64_t now)
{
    if (now > a->now)
        a->now = now;
    a->nact = a->arena_len = a->nptrs = 0;
}

/* ---- public API ---- */

/* See agent.h. Never fails. */
void agent_config_defaults(struct agent_config *c)
{
    *c = (struct agent_config){.priority = 100,
                               .ttl_ms = 2000,
                               .renew_ms = 500,
                               .loop_ms = 200,
                               .dcs_timeout_ms = 700,
                               .margin_ms = 50,
                               .failsafe = true,
                               .provision_after_ms = 5000,
                               .provision_backoff_ms = 30000};
}

/* Copies what it keeps from cfg (strings included); the caller owns the result and frees it with
 * agent_free(). Emits nothing: the shell calls agent_tick() first. */
struct agent *agent_new(const struct agent_config *cfg, uint64_t now_ms, char *err, size_t errlen)
{
    const char *bad = NULL;
    if (cfg->cluster == NULL || !cluster_name_valid(cfg->cluster, strlen(cfg->cluster)))
        bad = "cluster name: 1-63 characters of [A-Za-z0-9_.:-]";
    else if (cfg->name == NULL || !cluster_name_valid(cfg->name, strlen(cfg->name)))
        bad = "node name: 1-63 characters of [A-Za-z0-9_.:-]";
    else if (cfg->addr == NULL || !cluster_name_valid(cfg->addr, strlen(cfg->addr)))
        bad = "node address: 1-63 characters of [A-Za-z0-9_.:-]";
    else if (cfg->renew_ms == 0 || cfg->renew_ms * 2 >= cfg->ttl_ms)
        bad = "lease renewal interval must be below half the TTL";
    else if (cfg->margin_ms * 4 >= cfg->ttl_ms || cfg->dcs_timeout_ms == 0 ||
             cfg->dcs_timeout_ms >= cfg->ttl_ms || cfg->loop_ms == 0)
        bad = "need margin < TTL/4, 0 < coordinator timeout < TTL, loop interval > 0";
    else if (cfg->sync_replicas >= AGENT_MAX_MEMBERS)
        bad = "too many sync replicas";
    if (bad != NULL) {
        snprintf(err, errlen, "%s", bad);
        return NULL;
    }
    struct agent *a = xcalloc(1, sizeof(*a));
    a->cfg = *cfg;
    snprintf(a->name, NM, "%s", cfg->name);
    snprintf(a->addr, NM, "%s", cfg->addr);
    snprintf(a->prefix, sizeof(a->prefix), "/tandem/%s/", cfg->cluster);
    a->cfg.cluster = NULL;
    a->cfg.name = a->name;
    a->cfg.addr = a->addr;
    a->now = a->start_ms = now_ms;
    a->lease_ttl = cfg->ttl_ms;
    a->prov_backoff = cfg->provision_backoff_ms;
    syncset_init(&a->sync, cfg->sync_replicas, cfg->sync_strict);
    return a;
}

/* Frees a (NULL is fine); requests still in flight are forgotten. */
void agent_free(struct agent *a)
{
    free(a);
}

/* Borrowed: valid until the next call with a non-const agent. */
const struct agent_action *agent_actions(const struct agent *a, size_t *n)
{
    *n = a->nact;
    return a->act;
}

/* Timers only; now_ms below an earlier call counts as that earlier time. */
void agent_tick(struct agent *a, uint64_t now_ms)
{
    begin(a, now_ms);
    step(a);
}

/* Never below the last now; UINT64_MAX once stopped. */
uint64_t agent_next_deadline(const struct agent *a)
{
    uint64_t d = UINT64_MAX, w = write_until(a);
#define AT(t) (d = (t) < d ? (t) : d)
    if (a->stopped)
        return d;
    for (size_t i = 0; i < MAX_PENDING; i++)
        if (a->pend[i].kind != 0)
            AT(a->pend[i].sent_ms + a->cfg.dcs_timeout_ms);
    if (a->lease != 0)
        AT(a->next_renew);
    else if (!a->grant_pending)
        AT(a->next_grant);
    if (!a->read_pending)
        AT(a->read_now ? a->now : a->next_read);
    if (a->lease != 0 && a->have_obs && !a->publish_pending)
        AT(a->next_publish);
    if (a->role == AGENT_PRIMARY && w > a->now)
        AT(w);
    if (a->role == AGENT_PRIMARY && a->cfg.failsafe && a->fs_known)
        AT(a->next_ping);
    if (a->role == AGENT_PRIMARY && a->below_since != 0)
        AT(a->prov_at ? a->prov_at + a->prov_backoff : a->below_since + a->cfg.provision_after_ms);
    if (a->elect && a->promise_until > a->now)
        AT(a->promise_until);
#undef AT
    return d < a->now ? a->now : d;
}

/* res is borrowed for the call; results for ids the agent no longer waits for are ignored. */
void agent_on_dcs_result(struct agent *a, uint64_t now_ms, const struct dcs_result *res)
{
    begin(a, now_ms);
    for (size_t i = 0; i < MAX_PENDING && !a->stopped; i++) {
        if (a->pend[i].kind != 0 && a->pend[i].id == res->id) {
            struct pending p = a->pend[i];
            a->pend[i].kind = 0;
            on_result(a, &p, res);
            break;
        }
    }
    step(a);
}

/* A watch hint: one READ now (or right after the one in flight). */
void agent_on_dcs_changed(struct agent *a, uint64_t now_ms)
{
    begin(a, now_ms);
    a->read_now = true;
    step(a);
}

/* Copies what it keeps from obs (replica names included); names that are not valid are
 * skipped. */
void agent_observe_store(struct agent *a, uint64_t now_ms, const struct agent_store_obs *obs)
{
    begin(a, now_ms);
    a->have_obs = true;
    syncset_observed(&a->sync);
    a->healthy = obs->healthy;
    a->last_lsn = obs->last_lsn;
    a->last_term = obs->last_term;
    a->acked_lsn = obs->acked_lsn;
    a->nrep = 0;
    for (size_t i = 0; i < obs->n_replicas && a->nrep < AGENT_MAX_MEMBERS; i++) {
        const struct agent_replica_obs *r = &obs->replicas[i];
        if (r->name != NULL && cluster_name_valid(r->name, strlen(r->name))) {
            struct rep *x = &a->rep[a->nrep++];
            snprintf(x->name, NM, "%s", r->name);
            x->connected = r->connected;
            x->lsn = r->lsn;
        }
    }
    saw_term(a, obs->last_term, "our own log");
    step(a);
}

/* Any term from outside; a higher one also triggers a READ. */
void agent_on_term_seen(struct agent *a, uint64_t now_ms, uint64_t term)
{
    begin(a, now_ms);
    a->read_now |= term > a->term;
    saw_term(a, term, "from a peer");
    step(a);
}

/* Replica side of failsafe; from is borrowed. True means: we promised, answer the primary. */
bool agent_on_failsafe_ping(struct agent *a, uint64_t now_ms, const char *from, uint64_t term,
                            uint64_t valid_ms)
{
    begin(a, now_ms);
    saw_term(a, term, "failsafe ping");
    bool ok = a->cfg.failsafe && !a->stopped && a->role == AGENT_REPLICA && !a->elect &&
              !a->acquire_pending && a->follow[0] != '\0' && strcmp(a->follow, from) == 0 &&
              a->follow_term == term;
    if (ok && a->now + valid_ms + a->cfg.margin_ms > a->promise_until)
        a->promise_until = a->now + valid_ms + a->cfg.margin_ms;
    step(a);
    return ok;
}

/* Primary side of failsafe; answers for rounds we no longer track are ignored. */
void agent_on_failsafe_ack(struct agent *a, uint64_t now_ms, const char *from, uint64_t term,
                           uint64_t round)
{
    begin(a, now_ms);
    struct round *rd = &a->rounds[round % ROUNDS];
    if (a->role == AGENT_PRIMARY && term == a->my_term && rd->id == round && round != 0) {
        for (size_t i = 0; i < rd->to.n; i++)
            if (strcmp(rd->to.v[i], from) == 0)
                rd->acked |= 1u << i;
        if (rd->acked == (1u << rd->to.n) - 1)
            round_done(a, rd);
    }
    step(a);
}

/* Idempotent; afterwards every call emits nothing and may_accept_writes is false. */
void agent_stop(struct agent *a, uint64_t now_ms)
{
    begin(a, now_ms);
    if (a->stopped)
        return;
    if (a->role == AGENT_PRIMARY)
        demote(a, "shutting down");
    if (a->lease != 0)
        request(a, RQ_OTHER, DCS_OP_REVOKE, a->lease, "shutting down: revoking our lease");
    a->stopped = true;
}

/* Pure; strings in info point into a and live as long as its state does. */
void agent_get_info(const struct agent *a, struct agent_info *info)
{
    uint64_t lease_part = a->hold_rev && a->hold_lease == a->lease ? a->lease_until : 0;
    memset(info, 0, sizeof(*info));
    info->role = a->role;
    info->term = a->term;
    info->primary_term = a->role == AGENT_PRIMARY ? a->my_term : 0;
    info->leader = a->role == AGENT_PRIMARY ? a->name : a->follow;
    info->lease_id = a->lease;
    info->write_until_ms = write_until(a);
    info->sync_degraded =
        a->role == AGENT_PRIMARY && a->cfg.sync_replicas > 0 && syncset_is_degraded(&a->sync);
    info->failsafe_active =
        a->role == AGENT_PRIMARY && a->fs_until > a->now && a->fs_until > lease_part;
    info->promise_until_ms = a->promise_until;
    info->provisions = a->provisions;
}

/* Static strings. */
const char *agent_role_name(enum agent_role r)
{
    static const char *const names[] = {"starting", "replica", "primary"};
    return (unsigned)r < 3 ? names[r] : "unknown";
}

const char *agent_action_name(enum agent_action_kind k)
{
    static const char *const names[] = {"dcs",  "promote",       "demote",    "follow",
                                        "sync", "failsafe-ping", "provision", "note"};
    return (unsigned)k < 8 ? names[k] : "unknown";
}
