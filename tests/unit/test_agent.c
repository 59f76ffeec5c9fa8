/* SPDX-License-Identifier: MIT */
/* Unit tests for coord/agent.c, driven by a fake clock.
 *
 * One harness serves every test: a simulated cluster of agents, each with a toy store (a log of
 * terms, replication with log matching, synchronous acknowledgement), a fake coordinator that is
 * linearizable and never expires a lease early (expiry is late by a random amount, leases are
 * optionally extended across a coordinator outage, grants are rounded up to whole seconds as etcd
 * does), and a network that delays, drops, duplicates and delivers late. Scenario tests drive it
 * deterministically and look at the actions each agent emitted; the randomized simulation runs
 * hours of simulated time with injected faults (paused, partitioned, killed nodes, coordinator
 * down, message chaos) and checks the safety invariants after every event:
 *   - at most one node may accept writes at any instant;
 *   - a lease-based write permission never outlives the coordinator's lease;
 *   - promotions happen in increasing terms, one node per term; a node's known term never drops;
 *   - sync mode: every promoted node holds every acknowledged write, and no acknowledged write is
 *     ever discarded by a rejoining node.
 * TANDEM_SIM_SEED=N runs one seed; TANDEM_SIM_SEEDS=N runs N seeds from TANDEM_SIM_FIRST (1);
 * TANDEM_SIM_MINUTES=M sets simulated minutes per seed;
 * TANDEM_SIM_VERBOSE=1 prints every action. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord/agent.h"

#define MAXN 5
#define KEYLEN 96
#define VALLEN 256

/* ---- deterministic randomness ---- */

static uint64_t rng, sim_seed;

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static uint64_t rnd_in(uint64_t lo, uint64_t hi)
{
    return lo + rnd() % (hi - lo + 1);
}

static bool chance(double p)
{
    return p > 0 && (double)(rnd() % 1000000) < p * 1000000.0;
}

/* ---- fake coordinator ---- */

struct ckv {
    bool used;
    char key[KEYLEN];
    char val[VALLEN];
    uint64_t rev, lease;
};

struct clease {
    uint64_t id, ttl, expires;
    bool live;
};

struct coord {
    struct ckv kv[64];
    struct clease lease[256];
    uint64_t rev, next_lease;
    bool down;
    uint64_t late_max;
};

/* A deep copy of a request, as it travels. */
struct sreq {
    uint64_t id, lease, ttl, sent;
    enum dcs_op op;
    char prefix[KEYLEN];
    size_t ncmp, nput;
    struct {
        char key[KEYLEN];
        uint64_t rev;
    } cmp[DCS_TXN_MAX];
    struct {
        char key[KEYLEN];
        char val[VALLEN];
        uint64_t lease;
        bool del;
    } put[DCS_TXN_MAX];
};

struct sres {
    uint64_t id, rev, lease, ttl;
    enum dcs_op op;
    int status;
    size_t nkv;
    struct ckv *kv; /* READ: owned, nkv entries */
};

static void copy_slice(char *dst, size_t cap, struct slice s)
{
    assert_true(s.len < cap);
    if (s.len > 0)
        memcpy(dst, s.p, s.len);
    dst[s.len] = '\0';
}

static struct clease *coord_lease(struct coord *c, uint64_t id)
{
    for (size_t i = 0; i < 256; i++)
        if (c->lease[i].live && c->lease[i].id == id)
            return &c->lease[i];
    return NULL;
}

static void coord_kill_lease(struct coord *c, struct clease *l)
{
    l->live = false;
    for (size_t i = 0; i < 64; i++)
        if (c->kv[i].used && c->kv[i].lease == l->id)
            c->kv[i].used = false;
}

static void coord_expire(struct coord *c, uint64_t now)
{
    for (size_t i = 0; i < 256; i++)
        if (c->lease[i].live && c->lease[i].expires <= now)
            coord_kill_lease(c, &c->lease[i]);
}

static struct ckv *coord_get(struct coord *c, const char *key)
{
    for (size_t i = 0; i < 64; i++)
        if (c->kv[i].used && strcmp(c->kv[i].key, key) == 0)
            return &c->kv[i];
    return NULL;
}

/* Applies one request atomically at instant now. */
static void coord_apply(struct coord *c, uint64_t now, const struct sreq *q, struct sres *out)
{
    coord_expire(c, now);
    memset(out, 0, sizeof(*out));
    out->id = q->id;
    out->op = q->op;
    struct clease *l;
    switch (q->op) {
    case DCS_OP_GRANT: {
        size_t i = 0;
        while (c->lease[i].live)
            i++;
        assert_true(i < 256);
        l = &c->lease[i];
        l->live = true;
        l->id = ++c->next_lease;
        l->ttl = (q->ttl + 999) / 1000 * 1000; /* etcd: whole seconds, rounded up */
        l->expires = now + l->ttl + rnd_in(0, c->late_max);
        out->lease = l->id;
        out->ttl = l->ttl;
        break;
    }
    case DCS_OP_KEEPALIVE:
        l = coord_lease(c, q->lease);
        if (l == NULL) {
            out->status = DCS_ENOLEASE;
            break;
        }
        if (now + l->ttl > l->expires)
            l->expires = now + l->ttl + rnd_in(0, c->late_max);
        out->ttl = l->ttl;
        break;
    case DCS_OP_REVOKE:
        if ((l = coord_lease(c, q->lease)) != NULL)
            coord_kill_lease(c, l);
        break;
    case DCS_OP_READ:
        out->rev = c->rev;
        out->kv = malloc(64 * sizeof(*out->kv));
        assert_non_null(out->kv);
        for (size_t i = 0; i < 64; i++)
            if (c->kv[i].used && strncmp(c->kv[i].key, q->prefix, strlen(q->prefix)) == 0)
                out->kv[out->nkv++] = c->kv[i];
        break;
    case DCS_OP_TXN:
        for (size_t i = 0; i < q->ncmp; i++) {
            struct ckv *kv = coord_get(c, q->cmp[i].key);
            if ((kv ? kv->rev : 0) != q->cmp[i].rev) {
                out->status = DCS_ECOMPARE;
                return;
            }
        }
        for (size_t i = 0; i < q->nput; i++)
            if (!q->put[i].del && q->put[i].lease && coord_lease(c, q->put[i].lease) == NULL) {
                out->status = DCS_ENOLEASE;
                return;
            }
        c->rev++;
        for (size_t i = 0; i < q->nput; i++) {
            struct ckv *kv = coord_get(c, q->put[i].key);
            if (q->put[i].del) {
                if (kv)
                    kv->used = false;
                continue;
            }
            if (kv == NULL) {
                size_t j = 0;
                while (c->kv[j].used)
                    j++;
                assert_true(j < 64);
                kv = &c->kv[j];
                kv->used = true;
                snprintf(kv->key, KEYLEN, "%s", q->put[i].key);
            }
            snprintf(kv->val, VALLEN, "%s", q->put[i].val);
            kv->rev = c->rev;
            kv->lease = q->put[i].lease;
        }
        out->rev = c->rev;
        break;
    }
}

/* ---- simulated nodes, network and store ---- */

enum evk { EV_TICK, EV_REQ, EV_RES, EV_PING, EV_ACK, EV_REPL, EV_WRITE, EV_OBS, EV_FAULT, EV_UP };

struct ev {
    uint64_t t, seq, gen, term, round, valid;
    enum evk k;
    int node, from, fault;
    bool periodic;
    struct sreq *req;
    struct sres *res;
};

struct act_rec {
    uint64_t t, term;
    int node;
    enum agent_action_kind kind;
    char cause[AGENT_CAUSE_MAX];
};

struct node {
    char name[8];
    struct agent_config cfg;
    struct agent *ag;
    bool dead, paused;
    uint64_t pause_until, tick_gen, max_term_seen, confirmed_sent;
    int cut_coord, cut_peers;          /* nesting counts of active partitions */
    uint64_t sent_id[64], sent_at[64]; /* requests by id % 64: when each was sent */
    /* store model */
    uint32_t *log;
    size_t len, cap;
    bool primary, hold;
    uint64_t sterm, known_term, acked;
    int follow;
    int w[MAXN];
    size_t nw;
    uint64_t rep_lsn[MAXN], rep_seen[MAXN];
    unsigned promotions, demotions, provisions;
};

struct sim {
    uint64_t now, seq, end;
    struct ev **heap;
    size_t nheap, capheap;
    struct coord c;
    struct node n[MAXN];
    int nn;
    /* network: base delay range, and chaos knobs */
    uint64_t dmin, dmax;
    double loss, dup, late;
    bool sync;
    uint32_t *acked_term; /* sync mode: term of the acknowledged write at each lsn */
    size_t acked_cap, acked_max;
    uint64_t max_promoted_term;
    int max_promoted_node;
    bool keep_log, verbose, chaos;
    int extend_on_up; /* leases after a coordinator outage: 1 extended, 0 as they were, -1 random */
    struct act_rec *log;
    size_t nlog, caplog;
    uint64_t writes, acks, failovers, faults;
    uint64_t sync_seen_rev, sync_term; /* the coordinator's sync key, parsed once per revision */
    int sync_leader, sync_members[MAXN];
    size_t nsync;
};

static void heap_push(struct sim *s, struct ev *e)
{
    e->seq = ++s->seq;
    if (s->nheap == s->capheap) {
        s->capheap = s->capheap ? 2 * s->capheap : 256;
        s->heap = realloc(s->heap, s->capheap * sizeof(*s->heap));
        assert_non_null(s->heap);
    }
    size_t i = s->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        struct ev *q = s->heap[p];
        if (q->t < e->t || (q->t == e->t && q->seq < e->seq))
            break;
        s->heap[i] = q;
        i = p;
    }
    s->heap[i] = e;
}

static struct ev *heap_pop(struct sim *s)
{
    struct ev *top = s->heap[0], *last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        struct ev *best = last;
        if (l < s->nheap && (s->heap[l]->t < best->t ||
                             (s->heap[l]->t == best->t && s->heap[l]->seq < best->seq))) {
            m = l;
            best = s->heap[l];
        }
        if (l + 1 < s->nheap && (s->heap[l + 1]->t < best->t ||
                                 (s->heap[l + 1]->t == best->t && s->heap[l + 1]->seq < best->seq)))
            m = l + 1;
        if (m == i)
            break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (s->nheap > 0)
        s->heap[i] = last;
    return top;
}

static struct ev *ev_new(enum evk k, int node, uint64_t t)
{
    struct ev *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->k = k;
    e->node = node;
    e->t = t;
    return e;
}

static void ev_free(struct ev *e)
{
    free(e->req);
    if (e->res)
        free(e->res->kv);
    free(e->res);
    free(e);
}

/* Sends e over a link: dropped when the link is down or by chance, delayed, maybe late, maybe
 * duplicated. */
static void net_send(struct sim *s, struct ev *e, bool link_up, uint64_t timeout)
{
    if (!link_up || chance(s->loss)) {
        ev_free(e);
        return;
    }
    e->t = s->now + rnd_in(s->dmin, s->dmax);
    if (chance(s->late))
        e->t += rnd_in(timeout / 2, 3 * timeout);
    if (chance(s->dup)) {
        struct ev *d = ev_new(e->k, e->node, s->now + rnd_in(s->dmin, 3 * s->dmax));
        *d = *e;
        d->req = NULL;
        d->res = NULL;
        if (e->req) {
            d->req = malloc(sizeof(*d->req));
            *d->req = *e->req;
        }
        if (e->res) {
            d->res = malloc(sizeof(*d->res));
            *d->res = *e->res;
            if (e->res->kv) {
                d->res->kv = malloc(e->res->nkv * sizeof(*d->res->kv) + 1);
                memcpy(d->res->kv, e->res->kv, e->res->nkv * sizeof(*d->res->kv));
            }
        }
        heap_push(s, d);
    }
    heap_push(s, e);
}

static int node_idx(const struct sim *s, const char *name)
{
    for (int i = 0; i < s->nn; i++)
        if (strcmp(s->n[i].name, name) == 0)
            return i;
    return -1;
}

static bool peers_up(const struct sim *s, int a, int b)
{
    return !s->n[a].cut_peers && !s->n[b].cut_peers && !s->n[a].dead && !s->n[b].dead;
}

static void schedule_tick(struct sim *s, int i)
{
    struct node *nd = &s->n[i];
    uint64_t d = agent_next_deadline(nd->ag);
    if (d == UINT64_MAX)
        return;
    struct ev *e = ev_new(EV_TICK, i, d < s->now ? s->now : d);
    e->gen = ++nd->tick_gen;
    heap_push(s, e);
}

static void check_promotion(struct sim *s, int i, uint64_t term)
{
    struct node *nd = &s->n[i];
    /* Terms: strictly increasing across the cluster, except a primary re-taking its own term. */
    if (term < s->max_promoted_term || (term == s->max_promoted_term && s->max_promoted_node != i))
        fail_msg("t=%" PRIu64 " %s promoted in term %" PRIu64 " but term %" PRIu64
                 " was promoted by %d",
                 s->now, nd->name, term, s->max_promoted_term, s->max_promoted_node);
    if (nd->len > 0 && nd->log[nd->len - 1] > term)
        fail_msg("%s promoted in term %" PRIu64 " below its log's last term", nd->name, term);
    s->max_promoted_term = term;
    s->max_promoted_node = i;
    if (!s->sync)
        return;
    for (size_t lsn = 1; lsn <= s->acked_max; lsn++)
        if (s->acked_term[lsn] != 0 && (lsn > nd->len || nd->log[lsn - 1] != s->acked_term[lsn]))
            fail_msg("t=%" PRIu64 " %s promoted in term %" PRIu64
                     " without acknowledged write lsn %zu (term %u; it has %zu records)",
                     s->now, nd->name, term, lsn, s->acked_term[lsn], nd->len);
}

static void obs_now(struct sim *s, int i);

/* Performs the actions the agent of node i left, as a shell would. */
static void perform(struct sim *s, int i)
{
    struct node *nd = &s->n[i];
    size_t k;
    const struct agent_action *acts = agent_actions(nd->ag, &k);
    bool observe = false;
    for (size_t j = 0; j < k; j++) {
        const struct agent_action *x = &acts[j];
        assert_non_null(x->cause);
        assert_true(x->cause[0] != '\0');
        if (s->verbose && (x->kind != AGENT_ACT_DCS || x->u.dcs.op != DCS_OP_READ))
            printf("%8" PRIu64 " %s %-13s %s\n", s->now, nd->name, agent_action_name(x->kind),
                   x->cause);
        if (s->keep_log) {
            if (s->nlog == s->caplog) {
                s->caplog = s->caplog ? 2 * s->caplog : 256;
                s->log = realloc(s->log, s->caplog * sizeof(*s->log));
            }
            struct act_rec *r = &s->log[s->nlog++];
            r->t = s->now;
            r->node = i;
            r->kind = x->kind;
            r->term = x->kind == AGENT_ACT_PROMOTE  ? x->u.promote.term
                      : x->kind == AGENT_ACT_FOLLOW ? x->u.follow.term
                                                    : 0;
            snprintf(r->cause, sizeof(r->cause), "%s", x->cause);
        }
        switch (x->kind) {
        case AGENT_ACT_DCS: {
            const struct dcs_req *r = &x->u.dcs;
            struct ev *e = ev_new(EV_REQ, i, 0);
            struct sreq *q = e->req = calloc(1, sizeof(*q));
            q->id = r->id;
            q->op = r->op;
            q->lease = r->lease;
            q->ttl = r->ttl_ms;
            q->sent = s->now;
            copy_slice(q->prefix, KEYLEN, r->prefix);
            q->ncmp = r->ncmp;
            q->nput = r->nput;
            for (size_t c = 0; c < r->ncmp; c++) {
                copy_slice(q->cmp[c].key, KEYLEN, r->cmp[c].key);
                q->cmp[c].rev = r->cmp[c].rev;
            }
            for (size_t c = 0; c < r->nput; c++) {
                copy_slice(q->put[c].key, KEYLEN, r->put[c].key);
                copy_slice(q->put[c].val, VALLEN, r->put[c].value);
                q->put[c].lease = r->put[c].lease;
                q->put[c].del = r->put[c].del;
            }
            nd->sent_id[q->id % 64] = q->id;
            nd->sent_at[q->id % 64] = s->now;
            net_send(s, e, nd->cut_coord == 0, nd->cfg.dcs_timeout_ms);
            break;
        }
        case AGENT_ACT_PROMOTE:
            check_promotion(s, i, x->u.promote.term);
            nd->primary = true;
            nd->promotions++;
            nd->sterm = x->u.promote.term;
            if (nd->sterm > nd->known_term)
                nd->known_term = nd->sterm;
            nd->follow = -1;
            nd->nw = 0;
            nd->hold = false;
            nd->acked = nd->len;
            memset(nd->rep_lsn, 0, sizeof(nd->rep_lsn));
            memset(nd->rep_seen, 0, sizeof(nd->rep_seen));
            s->failovers++;
            observe = true;
            break;
        case AGENT_ACT_DEMOTE:
            assert_true(nd->primary);
            nd->primary = false;
            nd->demotions++;
            observe = true;
            break;
        case AGENT_ACT_FOLLOW:
            nd->follow = x->u.follow.name ? node_idx(s, x->u.follow.name) : -1;
            break;
        case AGENT_ACT_SYNC:
            assert_true(nd->primary);
            nd->nw = 0;
            for (size_t c = 0; c < x->u.sync.n; c++) {
                int w = node_idx(s, x->u.sync.names[c]);
                assert_true(w >= 0 && w != i);
                nd->w[nd->nw++] = w;
            }
            nd->hold = x->u.sync.hold_acks;
            observe = true;
            break;
        case AGENT_ACT_FAILSAFE_PING:
            for (size_t c = 0; c < x->u.ping.n; c++) {
                int to = node_idx(s, x->u.ping.to[c]);
                assert_true(to >= 0 && to != i);
                struct ev *e = ev_new(EV_PING, to, 0);
                e->from = i;
                e->term = x->u.ping.term;
                e->round = x->u.ping.round;
                e->valid = x->u.ping.valid_ms;
                net_send(s, e, peers_up(s, i, to), nd->cfg.dcs_timeout_ms);
            }
            break;
        case AGENT_ACT_PROVISION:
            nd->provisions++;
            break;
        case AGENT_ACT_NOTE:
            break;
        }
    }
    if (observe)
        heap_push(s, ev_new(EV_OBS, i, s->now));
    schedule_tick(s, i);
}

/* The primary acknowledges what every member of its wait set holds (all of it when async). */
static void compute_acks(struct sim *s, int p)
{
    struct node *nd = &s->n[p];
    if (!nd->primary || nd->dead)
        return;
    uint64_t x = nd->len;
    if (s->sync) {
        if (nd->hold)
            return;
        for (size_t i = 0; i < nd->nw; i++)
            if (nd->rep_lsn[nd->w[i]] < x)
                x = nd->rep_lsn[nd->w[i]];
        if (x + 1 >= s->acked_cap) {
            size_t cap = s->acked_cap ? s->acked_cap : 4096;
            while (cap <= x + 1)
                cap *= 2;
            s->acked_term = realloc(s->acked_term, cap * sizeof(uint32_t));
            memset(s->acked_term + s->acked_cap, 0, (cap - s->acked_cap) * sizeof(uint32_t));
            s->acked_cap = cap;
        }
        for (uint64_t lsn = nd->acked + 1; lsn <= x; lsn++) {
            uint32_t t = nd->log[lsn - 1];
            if (s->acked_term[lsn] != 0 && s->acked_term[lsn] != t)
                fail_msg("lsn %" PRIu64 " acknowledged in term %u and again in term %u", lsn,
                         s->acked_term[lsn], t);
            s->acked_term[lsn] = t;
            if (lsn > s->acked_max)
                s->acked_max = lsn;
            s->acks++;
        }
    }
    if (x > nd->acked)
        nd->acked = x;
}

/* Replica r pulls from the node it follows: log matching, truncation, append, ack. */
static void replicate(struct sim *s, int r)
{
    struct node *rn = &s->n[r];
    int p = rn->follow;
    if (p < 0 || rn->primary || rn->paused || rn->dead)
        return;
    struct node *pn = &s->n[p];
    if (!pn->primary || pn->paused || !peers_up(s, r, p))
        return;
    if (rn->known_term > pn->sterm) {
        /* The stream refuses a lower term, and tells the old primary. */
        agent_on_term_seen(pn->ag, s->now, rn->known_term);
        perform(s, p);
        return;
    }
    size_t i = rn->len < pn->len ? rn->len : pn->len;
    while (i > 0 && rn->log[i - 1] != pn->log[i - 1])
        i--;
    if (i < rn->len && s->sync)
        for (size_t lsn = i + 1; lsn <= rn->len; lsn++)
            if (lsn <= s->acked_max && s->acked_term[lsn] == rn->log[lsn - 1])
                fail_msg("%s discards acknowledged write lsn %zu following %s", rn->name, lsn,
                         pn->name);
    rn->len = i;
    size_t want = pn->len - i > 400 ? i + 400 : pn->len;
    if (want > rn->cap) {
        rn->cap = want * 2 + 64;
        rn->log = realloc(rn->log, rn->cap * sizeof(uint32_t));
    }
    if (want > i)
        memcpy(rn->log + i, pn->log + i, (want - i) * sizeof(uint32_t));
    rn->len = want;
    if (pn->sterm > rn->known_term)
        rn->known_term = pn->sterm;
    pn->rep_lsn[r] = rn->len;
    pn->rep_seen[r] = s->now;
    compute_acks(s, p);
}

static void obs_now(struct sim *s, int i)
{
    struct node *nd = &s->n[i];
    struct agent_replica_obs reps[MAXN];
    char names[MAXN][8];
    size_t nr = 0;
    for (int j = 0; j < s->nn && nd->primary; j++) {
        if (j == i || nd->rep_seen[j] == 0)
            continue;
        snprintf(names[nr], 8, "%s", s->n[j].name);
        reps[nr] =
            (struct agent_replica_obs){names[nr], s->now - nd->rep_seen[j] <= 150, nd->rep_lsn[j]};
        nr++;
    }
    struct agent_store_obs o = {
        .last_lsn = nd->len,
        .last_term = nd->len ? nd->log[nd->len - 1] : 0,
        .acked_lsn = nd->acked,
        .healthy = true,
        .replicas = reps,
        .n_replicas = nr,
    };
    agent_observe_store(nd->ag, s->now, &o);
    perform(s, i);
}

static void node_start(struct sim *s, int i)
{
    struct node *nd = &s->n[i];
    char err[128];
    nd->ag = agent_new(&nd->cfg, s->now, err, sizeof(err));
    assert_non_null(nd->ag);
    nd->dead = false;
    nd->max_term_seen = 0;
    nd->primary = false;
    nd->follow = -1;
    nd->confirmed_sent = 0;
    agent_tick(nd->ag, s->now);
    perform(s, i);
    obs_now(s, i);
}

static void node_kill(struct sim *s, int i)
{
    struct node *nd = &s->n[i];
    agent_free(nd->ag);
    nd->ag = NULL;
    nd->dead = true;
    nd->primary = false;
    nd->paused = false;
}

/* ---- faults ---- */

enum fault { F_PAUSE, F_CUT_COORD, F_CUT_PEERS, F_ISOLATE, F_COORD_DOWN, F_KILL, F_CHAOS, F_N };

static void coord_up(struct sim *s)
{
    s->c.down = false;
    if (s->extend_on_up == 1 || (s->extend_on_up < 0 && rnd() % 2))
        for (size_t i = 0; i < 256; i++) /* etcd extends leases across a leader change */
            if (s->c.lease[i].live && s->c.lease[i].expires < s->now + s->c.lease[i].ttl)
                s->c.lease[i].expires = s->now + s->c.lease[i].ttl;
}

/* Starts a random fault and schedules its end. */
static void fault_start(struct sim *s)
{
    uint64_t ttl = s->n[0].cfg.ttl_ms;
    int f = (int)(rnd() % F_N), i = (int)(rnd() % (uint64_t)s->nn);
    struct node *nd = &s->n[i];
    struct ev *end = ev_new(EV_FAULT, i, s->now + rnd_in(100, 4 * ttl));
    end->fault = f + 100;
    s->faults++;
    switch (f) {
    case F_PAUSE:
        if (nd->dead || nd->paused)
            break;
        nd->paused = true;
        nd->pause_until = s->now + rnd_in(10, 3 * ttl);
        break;
    case F_CUT_COORD:
        nd->cut_coord++;
        break;
    case F_CUT_PEERS:
        nd->cut_peers++;
        break;
    case F_ISOLATE:
        nd->cut_coord++;
        nd->cut_peers++;
        break;
    case F_COORD_DOWN:
        s->c.down = true;
        break;
    case F_KILL:
        if (nd->dead)
            break;
        node_kill(s, i);
        ev_free(end);
        heap_push(s, ev_new(EV_UP, i, s->now + rnd_in(0, 2 * ttl)));
        return;
    case F_CHAOS:
        s->loss = (double)rnd_in(0, 300) / 1000;
        s->dup = (double)rnd_in(0, 100) / 1000;
        s->late = (double)rnd_in(0, 100) / 1000;
        break;
    }
    heap_push(s, end);
}

static void fault_end(struct sim *s, int f, int i)
{
    struct node *nd = &s->n[i];
    switch (f) {
    case F_CUT_COORD:
        nd->cut_coord--;
        break;
    case F_CUT_PEERS:
        nd->cut_peers--;
        break;
    case F_ISOLATE:
        nd->cut_coord--;
        nd->cut_peers--;
        break;
    case F_COORD_DOWN:
        coord_up(s);
        break;
    case F_CHAOS:
        s->loss = s->dup = s->late = 0;
        break;
    default:
        break;
    }
}

/* ---- the event loop and the invariants ---- */

static void check_invariants(struct sim *s)
{
    int writers = 0;
    for (int i = 0; i < s->nn; i++) {
        struct node *nd = &s->n[i];
        if (nd->dead)
            continue;
        struct agent_info info;
        agent_get_info(nd->ag, &info);
        if (info.term < nd->max_term_seen)
            fail_msg("%s: known term went from %" PRIu64 " down to %" PRIu64, nd->name,
                     nd->max_term_seen, info.term);
        nd->max_term_seen = info.term;
        if (!agent_may_accept_writes(nd->ag, s->now))
            continue;
        writers++;
        assert_true(nd->primary);
        assert_true(info.write_until_ms > s->now);
        if (!info.failsafe_active) {
            /* The lease-based permission ends before the coordinator could expire the lease. */
            struct clease *l = coord_lease(&s->c, info.lease_id);
            if (l == NULL || l->expires < info.write_until_ms)
                fail_msg("t=%" PRIu64 " %s may write until %" PRIu64 " but lease %" PRIu64
                         " expires at %" PRIu64,
                         s->now, nd->name, info.write_until_ms, info.lease_id, l ? l->expires : 0);
        }
    }
    if (s->sync) { /* the store waits for every replica the coordinator says is in sync */
        if (s->c.rev != s->sync_seen_rev) {
            struct ckv *kv = coord_get(&s->c, "/tandem/c1/sync");
            char leader[16] = "";
            unsigned long term = 0;
            int off = 0;
            s->sync_seen_rev = s->c.rev;
            s->sync_leader = -1;
            s->nsync = 0;
            if (kv &&
                sscanf(kv->val, "leader=%15s term=%lu members=%n", leader, &term, &off) == 2 &&
                off > 0) {
                s->sync_leader = node_idx(s, leader);
                s->sync_term = term;
                for (const char *m = kv->val + off; *m;) {
                    size_t len = strcspn(m, ",");
                    char name[16];
                    snprintf(name, sizeof(name), "%.*s", (int)len, m);
                    s->sync_members[s->nsync++] = node_idx(s, name);
                    m += len + (m[len] == ',');
                }
            }
        }
        struct node *pn = s->sync_leader >= 0 ? &s->n[s->sync_leader] : NULL;
        if (pn && pn->primary && !pn->dead && pn->sterm == s->sync_term)
            for (size_t k = 0; k < s->nsync; k++) {
                bool in = false;
                for (size_t j = 0; j < pn->nw; j++)
                    in |= pn->w[j] == s->sync_members[k];
                if (!in)
                    fail_msg("t=%" PRIu64 " %d recorded in sync but %s does not wait for it",
                             s->now, s->sync_members[k], pn->name);
            }
    }
    if (writers > 1) {
        for (int i = 0; i < s->nn; i++)
            if (!s->n[i].dead && agent_may_accept_writes(s->n[i].ag, s->now))
                fprintf(stderr, "  %s may accept writes\n", s->n[i].name);
        fail_msg("seed %" PRIu64 " t=%" PRIu64 ": %d nodes may accept writes at once", sim_seed,
                 s->now, writers);
    }
}

/* Remembers the send time of every lease renewal the agent saw confirmed. */
static void note_result(struct node *nd, const struct sres *r)
{
    uint64_t sent = nd->sent_at[r->id % 64];
    if (nd->sent_id[r->id % 64] == r->id && r->status == DCS_OK &&
        (r->op == DCS_OP_KEEPALIVE || r->op == DCS_OP_GRANT) && sent > nd->confirmed_sent)
        nd->confirmed_sent = sent;
}

static void deliver(struct sim *s, struct ev *e)
{
    struct node *nd = &s->n[e->node];
    switch (e->k) {
    case EV_TICK:
        if (e->gen == nd->tick_gen) {
            agent_tick(nd->ag, s->now);
            perform(s, e->node);
        }
        break;
    case EV_RES: {
        struct dcs_kv kvs[64];
        for (size_t i = 0; i < e->res->nkv; i++)
            kvs[i] = (struct dcs_kv){slice_cstr(e->res->kv[i].key), slice_cstr(e->res->kv[i].val),
                                     e->res->kv[i].rev, e->res->kv[i].lease};
        struct dcs_result r = {e->res->id,  e->res->op, e->res->status, e->res->rev, e->res->lease,
                               e->res->ttl, kvs,        e->res->nkv};
        note_result(nd, e->res);
        agent_on_dcs_result(nd->ag, s->now, &r);
        perform(s, e->node);
        break;
    }
    case EV_PING:
        if (agent_on_failsafe_ping(nd->ag, s->now, s->n[e->from].name, e->term, e->valid)) {
            struct ev *a = ev_new(EV_ACK, e->from, 0);
            a->from = e->node;
            a->term = e->term;
            a->round = e->round;
            net_send(s, a, peers_up(s, e->node, e->from), nd->cfg.dcs_timeout_ms);
        }
        perform(s, e->node);
        break;
    case EV_ACK:
        agent_on_failsafe_ack(nd->ag, s->now, s->n[e->from].name, e->term, e->round);
        perform(s, e->node);
        break;
    case EV_REPL:
        replicate(s, e->node);
        break;
    case EV_WRITE:
        if (nd->primary && agent_may_accept_writes(nd->ag, s->now)) {
            if (nd->len == nd->cap) {
                nd->cap = nd->cap ? 2 * nd->cap : 1024;
                nd->log = realloc(nd->log, nd->cap * sizeof(uint32_t));
            }
            if (nd->len > 0 && nd->log[nd->len - 1] > nd->sterm)
                fail_msg("%s writes term %" PRIu64 " after term %u", nd->name, nd->sterm,
                         nd->log[nd->len - 1]);
            nd->log[nd->len++] = (uint32_t)nd->sterm;
            s->writes++;
            compute_acks(s, e->node);
        }
        break;
    case EV_OBS:
        obs_now(s, e->node);
        break;
    default:
        break;
    }
}

/* Runs the simulation until instant `until`. */
static void sim_run(struct sim *s, uint64_t until)
{
    while (s->nheap > 0 && s->heap[0]->t <= until) {
        struct ev *e = heap_pop(s);
        s->now = e->t;
        struct node *nd = &s->n[e->node];
        bool periodic = e->k == EV_REPL || e->k == EV_WRITE || (e->k == EV_OBS && e->periodic);
        if (periodic) { /* re-arm first, whatever happens to this one */
            uint64_t dt = e->k == EV_REPL ? 25 : e->k == EV_WRITE ? rnd_in(5, 40) : 100;
            struct ev *n = ev_new(e->k, e->node, s->now + dt);
            n->periodic = true;
            heap_push(s, n);
        }
        if (e->k == EV_FAULT) {
            if (e->fault >= 100 && s->chaos) /* after healing, pending fault ends are void */
                fault_end(s, e->fault - 100, e->node);
            else if (s->chaos && s->now < s->end)
                fault_start(s);
            if (e->fault < 100 && s->chaos) {
                struct ev *n = ev_new(EV_FAULT, 0, s->now + rnd_in(500, 8000));
                heap_push(s, n);
            }
            ev_free(e);
            check_invariants(s);
            continue;
        }
        if (e->k == EV_REQ) {
            if (!s->c.down) {
                struct ev *r = ev_new(EV_RES, e->node, 0);
                r->res = malloc(sizeof(*r->res));
                coord_apply(&s->c, s->now, e->req, r->res);
                net_send(s, r, nd->cut_coord == 0 && !nd->dead, nd->cfg.dcs_timeout_ms);
            }
            ev_free(e);
            check_invariants(s);
            continue;
        }
        if (e->k == EV_UP) {
            if (nd->dead)
                node_start(s, e->node);
            ev_free(e);
            check_invariants(s);
            continue;
        }
        if (nd->dead) {
            ev_free(e);
            continue;
        }
        if (nd->paused && s->now >= nd->pause_until)
            nd->paused = false;
        if ((nd->paused && periodic) || (e->k == EV_WRITE && !nd->primary)) {
            ev_free(e); /* nothing happens: no state to check */
            continue;
        }
        if (nd->paused) {
            e->t = nd->pause_until;
            heap_push(s, e);
            continue;
        }
        deliver(s, e);
        ev_free(e);
        check_invariants(s);
    }
    if (s->now < until)
        s->now = until;
}

static void sim_init(struct sim *s, int nn, unsigned sync_n, bool strict)
{
    memset(s, 0, sizeof(*s));
    s->nn = nn;
    s->dmin = 1;
    s->dmax = 1;
    s->sync = sync_n > 0;
    s->c.late_max = 0;
    s->max_promoted_node = -1;
    s->extend_on_up = -1;
    s->keep_log = true;
    s->verbose = getenv("TANDEM_SIM_VERBOSE") != NULL;
    for (int i = 0; i < nn; i++) {
        struct node *nd = &s->n[i];
        snprintf(nd->name, sizeof(nd->name), "db%d", i + 1);
        agent_config_defaults(&nd->cfg);
        nd->cfg.cluster = "c1";
        nd->cfg.name = nd->name;
        nd->cfg.addr = nd->name;
        nd->cfg.sync_replicas = sync_n;
        nd->cfg.sync_strict = strict;
        nd->follow = -1;
    }
}

/* Starts every node and the periodic events. */
static void sim_start(struct sim *s)
{
    for (int i = 0; i < s->nn; i++) {
        node_start(s, i);
        for (enum evk k = EV_REPL; k <= EV_OBS; k++) {
            struct ev *e = ev_new(k, i, s->now + rnd_in(1, 25));
            e->periodic = true;
            heap_push(s, e);
        }
    }
}

static void sim_free(struct sim *s)
{
    while (s->nheap > 0)
        ev_free(heap_pop(s));
    free(s->heap);
    for (int i = 0; i < s->nn; i++) {
        agent_free(s->n[i].ag);
        free(s->n[i].log);
    }
    free(s->acked_term);
    free(s->log);
}

/* The node that may accept writes now, or -1. */
static int writer(const struct sim *s)
{
    for (int i = 0; i < s->nn; i++)
        if (!s->n[i].dead && agent_may_accept_writes(s->n[i].ag, s->now))
            return i;
    return -1;
}

/* Index of the first logged action of kind k by node (any node: -1) at or after t whose cause
 * contains text (NULL: any), or -1. */
static long find_act(const struct sim *s, int node, enum agent_action_kind k, uint64_t t,
                     const char *text)
{
    for (size_t i = 0; i < s->nlog; i++) {
        const struct act_rec *r = &s->log[i];
        if (r->t >= t && r->kind == k && (node < 0 || r->node == node) &&
            (text == NULL || strstr(r->cause, text) != NULL))
            return (long)i;
    }
    return -1;
}

/* Runs in small steps until some node may accept writes; returns it (or -1 after limit). */
static int run_until_writer(struct sim *s, uint64_t limit, int not )
{
    uint64_t stop = s->now + limit;
    while (s->now < stop) {
        sim_run(s, s->now + 5);
        int w = writer(s);
        if (w >= 0 && w != not )
            return w;
    }
    return -1;
}

static struct sim *sim_new(int nn, unsigned sync_n, bool strict)
{
    struct sim *s = malloc(sizeof(*s));
    assert_non_null(s);
    rng = 42;
    sim_init(s, nn, sync_n, strict);
    return s;
}

static void sim_del(struct sim *s)
{
    sim_free(s);
    free(s);
}

/* Gives node i a log of len records, the last `tail` of them in term t2, the rest in term 1. */
static void prefill(struct sim *s, int i, size_t len, size_t tail, uint32_t t2)
{
    struct node *nd = &s->n[i];
    nd->cap = len + 1024;
    nd->log = realloc(nd->log, nd->cap * sizeof(uint32_t));
    for (size_t j = 0; j < len; j++)
        nd->log[j] = j >= len - tail ? t2 : 1;
    nd->len = len;
}

/* ---- scenarios ---- */

static void test_config_validation(void **state)
{
    (void)state;
    struct agent_config c;
    char err[128];
    agent_config_defaults(&c);
    c.cluster = "c1";
    c.name = "db 1";
    c.addr = "127.0.0.1:7000";
    assert_null(agent_new(&c, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "node name"));
    c.name = "db1";
    c.renew_ms = c.ttl_ms;
    assert_null(agent_new(&c, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "renewal"));
    agent_config_defaults(&c);
    c.cluster = "c1";
    c.name = "db1";
    c.addr = "127.0.0.1:7000";
    struct agent *a = agent_new(&c, 0, err, sizeof(err));
    assert_non_null(a);
    /* Nothing is emitted before the first call; the first tick asks for a lease and a read. */
    size_t n;
    agent_actions(a, &n);
    assert_int_equal(n, 0);
    agent_tick(a, 0);
    const struct agent_action *x = agent_actions(a, &n);
    assert_int_equal(n, 2);
    assert_int_equal(x[0].u.dcs.op, DCS_OP_GRANT);
    assert_int_equal(x[0].u.dcs.ttl_ms, 2000);
    assert_int_equal(x[1].u.dcs.op, DCS_OP_READ);
    assert_true(slice_eq(x[1].u.dcs.prefix, SLICE_LIT("/tandem/c1/")));
    assert_false(agent_may_accept_writes(a, 0));
    struct agent_info info;
    agent_get_info(a, &info);
    assert_int_equal(info.role, AGENT_STARTING);
    agent_free(a);
    agent_free(NULL);
}

/* A duplicated or late result changes nothing; an unknown id is ignored. */
static void test_duplicate_and_late_results(void **state)
{
    (void)state;
    struct agent_config c;
    char err[128];
    size_t n;
    agent_config_defaults(&c);
    c.cluster = "c1";
    c.name = "db1";
    c.addr = "h:1";
    struct agent *a = agent_new(&c, 0, err, sizeof(err));
    agent_tick(a, 0);
    const struct agent_action *x = agent_actions(a, &n);
    uint64_t grant = x[0].u.dcs.id;
    struct dcs_result r = {.id = grant, .op = DCS_OP_GRANT, .lease = 7, .ttl_ms = 2000};
    agent_on_dcs_result(a, 10, &r);
    struct agent_info info;
    agent_get_info(a, &info);
    assert_int_equal(info.lease_id, 7);
    r.lease = 8; /* the same reply again, or a twin */
    agent_on_dcs_result(a, 11, &r);
    agent_get_info(a, &info);
    assert_int_equal(info.lease_id, 7);
    /* A keepalive that timed out is forgotten; its late confirmation is ignored. */
    agent_tick(a, 500);
    x = agent_actions(a, &n);
    uint64_t ka = 0;
    for (size_t i = 0; i < n; i++)
        if (x[i].kind == AGENT_ACT_DCS && x[i].u.dcs.op == DCS_OP_KEEPALIVE)
            ka = x[i].u.dcs.id;
    assert_true(ka != 0);
    agent_tick(a, 500 + c.dcs_timeout_ms);
    x = agent_actions(a, &n);
    bool noted = false;
    for (size_t i = 0; i < n; i++)
        noted |= x[i].kind == AGENT_ACT_NOTE && strstr(x[i].cause, "unreachable") != NULL;
    assert_true(noted);
    struct dcs_result k = {.id = ka, .op = DCS_OP_KEEPALIVE, .ttl_ms = 2000};
    agent_on_dcs_result(a, 1300, &k);
    x = agent_actions(a, &n);
    for (size_t i = 0; i < n; i++) /* no "reachable again": the result was not ours any more */
        assert_false(x[i].kind == AGENT_ACT_NOTE);
    agent_free(a);
}

static void test_bootstrap_one_primary(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    sim_start(s);
    int w = run_until_writer(s, 10000, -1);
    assert_int_equal(w, 0); /* all equal: the smallest name wins */
    long p = find_act(s, -1, AGENT_ACT_PROMOTE, 0, NULL);
    assert_true(p >= 0);
    assert_int_equal(s->log[p].node, 0);
    assert_int_equal(s->log[p].term, 1);
    /* Startup grace: nobody takes the key before one TTL (a promise made in a past life). */
    assert_true(s->log[p].t >= s->n[0].cfg.ttl_ms);
    /* Never writable before the promotion. */
    assert_true(s->now >= s->log[p].t);
    sim_run(s, s->now + 5000);
    for (int i = 1; i < 3; i++) {
        long f = find_act(s, i, AGENT_ACT_FOLLOW, 0, "held by 'db1' in term 1");
        assert_true(f >= 0);
        assert_int_equal(s->log[f].term, 1);
    }
    assert_int_equal(find_act(s, -1, AGENT_ACT_PROMOTE, s->log[p].t + 1, NULL), -1);
    assert_int_equal(writer(s), 0);
    assert_true(s->writes > 100);
    /* Replicas caught up. */
    sim_run(s, s->now + 500);
    assert_true(s->n[1].len + 20 >= s->n[0].len);
    sim_del(s);
}

/* The best candidate is taken by (last_term, lsn), then priority, then name; priority 0 never. */
static void test_election_order(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    prefill(s, 0, 50, 0, 1);
    prefill(s, 1, 100, 0, 1);
    prefill(s, 2, 80, 10, 2); /* fewer records, but a later term: the longer log is stale */
    sim_start(s);
    assert_int_equal(run_until_writer(s, 10000, -1), 2);
    assert_int_equal(s->log[find_act(s, -1, AGENT_ACT_PROMOTE, 0, NULL)].term, 3);
    sim_del(s);

    s = sim_new(3, 0, false);
    s->n[2].cfg.priority = 200; /* same logs: priority decides */
    sim_start(s);
    assert_int_equal(run_until_writer(s, 10000, -1), 2);
    sim_del(s);

    s = sim_new(3, 0, false);
    prefill(s, 0, 100, 0, 1);
    s->n[0].cfg.priority = 0; /* best log, but never promoted */
    sim_start(s);
    assert_int_equal(run_until_writer(s, 10000, -1), 1);
    sim_run(s, s->now + 3000);
    assert_int_equal(s->n[0].promotions, 0);
    sim_del(s);
}

static void test_failover_on_kill_and_rejoin(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    sim_run(s, s->now + 3000);
    uint64_t t0 = s->now;
    node_kill(s, p);
    int q = run_until_writer(s, 10000, p);
    assert_true(q >= 0 && q != p);
    uint64_t ttl = s->n[0].cfg.ttl_ms;
    /* Not before the old lease could expire, not much after. */
    assert_true(s->now - t0 <= ttl + 2 * s->n[0].cfg.loop_ms + 100);
    long pr = find_act(s, q, AGENT_ACT_PROMOTE, t0, NULL);
    assert_int_equal(s->log[pr].term, 2);
    sim_run(s, s->now + 2000);
    int other = 3 - p - q;
    assert_true(find_act(s, other, AGENT_ACT_FOLLOW, t0, NULL) >= 0);
    /* The old primary comes back: it follows the new leader and never writes. */
    uint64_t t1 = s->now;
    node_start(s, p);
    sim_run(s, s->now + 10000);
    long f = find_act(s, p, AGENT_ACT_FOLLOW, t1, NULL);
    assert_true(f >= 0);
    assert_int_equal(s->log[f].term, 2);
    assert_int_equal(find_act(s, p, AGENT_ACT_PROMOTE, t1, NULL), -1);
    assert_int_equal(writer(s), q);
    assert_true(s->n[p].len + 50 >= s->n[q].len);
    sim_del(s);
}

/* A primary paused past its lease stops at the exact instant its renewal could lapse. */
static void test_paused_primary_fences_at_lease_end(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    s->dmin = 1;
    s->dmax = 3;
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    sim_run(s, s->now + 2000);
    struct node *nd = &s->n[p];
    nd->paused = true;
    nd->pause_until = s->now + 3 * nd->cfg.ttl_ms;
    struct agent_info info;
    agent_get_info(nd->ag, &info);
    /* Measured from when the last confirmed renewal was SENT. */
    uint64_t until = nd->confirmed_sent + nd->cfg.ttl_ms - nd->cfg.margin_ms;
    assert_int_equal(info.write_until_ms, until);
    assert_true(agent_may_accept_writes(nd->ag, until - 1));
    assert_false(agent_may_accept_writes(nd->ag, until));
    uint64_t t0 = s->now;
    int q = run_until_writer(s, 3 * nd->cfg.ttl_ms, p);
    assert_true(q >= 0);
    long pr = find_act(s, q, AGENT_ACT_PROMOTE, t0, NULL);
    assert_true(s->log[pr].t >= until);
    sim_run(s, nd->pause_until + 1000);
    long d = find_act(s, p, AGENT_ACT_DEMOTE, t0,
                      "lease not confirmed within 2000ms since renewal sent at");
    assert_true(d >= 0);
    assert_true(find_act(s, p, AGENT_ACT_FOLLOW, s->log[d].t, NULL) >= 0);
    assert_int_equal(writer(s), q);
    sim_del(s);
}

/* A primary cut off from the coordinator and from its replicas stops within its lease. */
static void test_isolated_primary_stops(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    sim_run(s, s->now + 2000);
    struct node *nd = &s->n[p];
    nd->cut_coord++;
    nd->cut_peers++;
    uint64_t t0 = s->now;
    while (agent_may_accept_writes(nd->ag, s->now))
        sim_run(s, s->now + 1);
    assert_true(s->now - t0 <= nd->cfg.ttl_ms);
    long d = find_act(s, p, AGENT_ACT_DEMOTE, t0, "lease not confirmed");
    assert_true(d >= 0);
    int q = run_until_writer(s, 5000, p);
    assert_true(q >= 0 && q != p);
    nd->cut_coord--;
    nd->cut_peers--;
    sim_run(s, s->now + 5000);
    assert_int_equal(writer(s), q);
    assert_true(find_act(s, p, AGENT_ACT_FOLLOW, t0, s->n[q].name) >= 0);
    sim_del(s);
}

/* A higher term from anywhere makes a primary step down at once. */
static void test_higher_term_steps_down(void **state)
{
    (void)state;
    struct sim *s = sim_new(2, 0, false);
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    uint64_t t0 = s->now;
    agent_on_term_seen(s->n[p].ag, s->now, 9);
    assert_false(agent_may_accept_writes(s->n[p].ag, s->now));
    perform(s, p);
    assert_true(find_act(s, p, AGENT_ACT_DEMOTE, t0, "saw term 9") >= 0);
    /* A new election then runs in a term above 9. */
    int q = run_until_writer(s, 10000, -1);
    assert_true(q >= 0);
    assert_true(s->log[find_act(s, q, AGENT_ACT_PROMOTE, t0, NULL)].term >= 10);
    sim_del(s);
}

/* kill -9 and an immediate restart: the leader key still names us, on a lease of our past life. */
static void test_restarted_primary_waits_for_its_old_lease(void **state)
{
    (void)state;
    struct sim *s = sim_new(1, 0, false);
    sim_start(s);
    assert_int_equal(run_until_writer(s, 10000, -1), 0);
    sim_run(s, s->now + 1000);
    uint64_t t0 = s->now;
    node_kill(s, 0);
    node_start(s, 0);
    sim_run(s, s->now + 300);
    assert_true(find_act(s, 0, AGENT_ACT_NOTE, t0, "waiting for it to expire") >= 0);
    assert_int_equal(writer(s), -1);
    assert_int_equal(run_until_writer(s, 10000, -1), 0);
    long pr = find_act(s, 0, AGENT_ACT_PROMOTE, t0, NULL);
    assert_int_equal(s->log[pr].term, 2);
    assert_true(s->log[pr].t >= t0 + s->n[0].cfg.ttl_ms);
    sim_del(s);
}

/* Coordinator down: no failover; the primary keeps serving on its replicas' confirmations; its
 * lease resumes when the coordinator returns. */
static void test_failsafe_coordinator_down(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    s->extend_on_up = 0;
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    sim_run(s, s->now + 2000);
    uint64_t t0 = s->now, w0 = s->writes;
    s->c.down = true;
    while (s->now < t0 + 20000) {
        sim_run(s, s->now + 50);
        assert_int_equal(writer(s), p);
    }
    assert_true(s->writes > w0 + 300);
    assert_true(find_act(s, p, AGENT_ACT_FAILSAFE_PING, t0, NULL) >= 0);
    assert_true(find_act(s, p, AGENT_ACT_NOTE, t0, "failsafe: all 2 members confirmed") >= 0);
    assert_int_equal(find_act(s, -1, AGENT_ACT_PROMOTE, t0, NULL), -1);
    struct agent_info info;
    agent_get_info(s->n[p].ag, &info);
    assert_true(info.failsafe_active);
    coord_up(s);
    uint64_t t1 = s->now;
    sim_run(s, s->now + 5000);
    assert_int_equal(writer(s), p);
    assert_true(find_act(s, p, AGENT_ACT_NOTE, t1, "leader key re-taken for term 1") >= 0);
    assert_int_equal(find_act(s, -1, AGENT_ACT_PROMOTE, t0, NULL), -1);
    agent_get_info(s->n[p].ag, &info);
    assert_false(info.failsafe_active);
    sim_del(s);
}

/* Coordinator down and one replica unreachable: the primary stops within its lease; nobody is
 * promoted; service resumes when things heal. */
static void test_failsafe_needs_every_member(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    sim_run(s, s->now + 2000);
    int r = (p + 1) % 3;
    uint64_t t0 = s->now;
    s->c.down = true;
    s->n[r].cut_peers++;
    sim_run(s, s->now + s->n[p].cfg.ttl_ms);
    assert_int_equal(writer(s), -1);
    assert_true(find_act(s, p, AGENT_ACT_DEMOTE, t0, "failsafe not confirmed") >= 0);
    sim_run(s, s->now + 10000);
    assert_int_equal(writer(s), -1);
    assert_int_equal(find_act(s, -1, AGENT_ACT_PROMOTE, t0, NULL), -1);
    coord_up(s);
    s->n[r].cut_peers--;
    assert_true(run_until_writer(s, 10000, -1) >= 0);
    sim_del(s);
}

/* The primary loses only the coordinator: the replicas, which see the leader key expire, have
 * promised to follow it and do not take over while it can still reach them all. */
static void test_failsafe_promise_holds_replicas_back(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    sim_run(s, s->now + 2000);
    uint64_t t0 = s->now;
    s->n[p].cut_coord++;
    while (s->now < t0 + 15000) {
        sim_run(s, s->now + 50);
        assert_int_equal(writer(s), p);
    }
    assert_int_equal(find_act(s, -1, AGENT_ACT_PROMOTE, t0, NULL), -1);
    struct agent_info info;
    agent_get_info(s->n[(p + 1) % 3].ag, &info);
    assert_true(info.promise_until_ms > s->now);
    /* Now the replicas lose it too: it stops, and one of them takes over after the promise. */
    s->n[p].cut_peers++;
    uint64_t t1 = s->now;
    int q = run_until_writer(s, 10000, p);
    assert_true(q >= 0);
    assert_true(s->now >= t1 + s->n[p].cfg.ttl_ms);
    s->n[p].cut_coord--;
    s->n[p].cut_peers--;
    sim_run(s, s->now + 5000);
    assert_int_equal(writer(s), q);
    sim_del(s);
}

/* Sync mode: only the recorded in-sync replica may be promoted, even if another ranks higher. */
static void test_sync_only_recorded_replica_promoted(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 1, false);
    s->n[2].cfg.priority = 200;
    s->n[0].cfg.priority = 300;
    s->n[2].cut_peers++; /* db3 misses the start: db2 becomes the sync replica */
    sim_start(s);
    assert_int_equal(run_until_writer(s, 10000, -1), 0);
    sim_run(s, s->now + 2000);
    assert_true(find_act(s, 0, AGENT_ACT_SYNC, 0, "recorded in sync") >= 0);
    s->n[2].cut_peers--;
    sim_run(s, s->now + 3000);
    assert_true(s->n[2].len + 100 >= s->n[0].len); /* db3 caught up, but is not in the set */
    uint64_t t0 = s->now, acks = s->acks;
    assert_true(acks > 100);
    node_kill(s, 0);
    int q = run_until_writer(s, 10000, 0);
    assert_int_equal(q, 1);
    assert_int_equal(s->n[2].promotions, 0);
    /* The new term starts with an empty recorded set, says so, and fills it. */
    assert_true(find_act(s, 1, AGENT_ACT_SYNC, t0, "DEGRADED") >= 0);
    sim_run(s, s->now + 3000);
    assert_true(find_act(s, 1, AGENT_ACT_SYNC, t0, "1 replicas recorded in sync") >= 0);
    struct agent_info info;
    agent_get_info(s->n[1].ag, &info);
    assert_false(info.sync_degraded);
    assert_true(s->acks > acks);
    sim_del(s);
}

/* Sync mode, two nodes, kill and restart over and over, killing the primary the moment it records
 * the restarted node in sync: that node must always be electable (S never names a member outside
 * the recorded failsafe set; found by tests/integration/test_failover.py). */
static void test_sync_two_nodes_kill_rounds_stay_electable(void **state)
{
    (void)state;
    struct sim *s = sim_new(2, 1, false);
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    assert_true(p >= 0);
    for (int round = 0; round < 12; round++) {
        int o = 1 - p;
        uint64_t t = s->now;
        while (find_act(s, p, AGENT_ACT_SYNC, t, "1 of 1 replicas recorded in sync") < 0 &&
               s->now < t + 20000)
            sim_run(s, s->now + 1);
        assert_true(s->now < t + 20000);
        node_kill(s, p);
        int q = run_until_writer(s, 20000, p);
        assert_int_equal(q, o);
        node_start(s, p);
        p = q;
    }
    sim_del(s);
}

/* Sync mode, two nodes: the replica dies; the primary records that nobody is in sync, then keeps
 * acknowledging (loudly). The stale replica is never promoted while the primary is down. */
static void test_sync_degrades_loudly_and_blocks_stale_failover(void **state)
{
    (void)state;
    struct sim *s = sim_new(2, 1, false);
    sim_start(s);
    assert_int_equal(run_until_writer(s, 10000, -1), 0);
    sim_run(s, s->now + 2000);
    uint64_t t0 = s->now;
    node_kill(s, 1);
    sim_run(s, s->now + 1000);
    long d = find_act(s, 0, AGENT_ACT_SYNC, t0, "writes continue DEGRADED");
    assert_true(d >= 0);
    /* Recorded first: the removal was confirmed before the wait set shrank. */
    assert_true(find_act(s, 0, AGENT_ACT_DCS, t0,
                         "disconnected: recording leader=db1 term=1 members=") >= 0);
    struct agent_info info;
    agent_get_info(s->n[0].ag, &info);
    assert_true(info.sync_degraded);
    uint64_t acks = s->acks;
    sim_run(s, s->now + 2000);
    assert_true(s->acks > acks + 20);
    /* The primary dies too; the replica returns alone: stale, it must not take over. */
    node_kill(s, 0);
    node_start(s, 1);
    sim_run(s, s->now + 20000);
    assert_int_equal(s->n[1].promotions, 0);
    assert_int_equal(writer(s), -1);
    /* The primary returns and is elected again (term 2); the replica rejoins the sync set. */
    node_start(s, 0);
    assert_int_equal(run_until_writer(s, 20000, -1), 0);
    sim_run(s, s->now + 3000);
    agent_get_info(s->n[0].ag, &info);
    assert_false(info.sync_degraded);
    assert_int_equal(info.primary_term, 2);
    sim_del(s);
}

/* --sync-strict: with the replica gone, acknowledgements stop instead. */
static void test_sync_strict_holds_acks(void **state)
{
    (void)state;
    struct sim *s = sim_new(2, 1, true);
    sim_start(s);
    assert_int_equal(run_until_writer(s, 10000, -1), 0);
    sim_run(s, s->now + 2000);
    uint64_t t0 = s->now;
    node_kill(s, 1);
    sim_run(s, s->now + 500);
    assert_true(find_act(s, 0, AGENT_ACT_SYNC, t0, "holding acknowledgements") >= 0);
    uint64_t acks = s->acks, writes = s->writes;
    sim_run(s, s->now + 3000);
    assert_int_equal(s->acks, acks);
    assert_true(s->writes > writes); /* accepted, not acknowledged */
    node_start(s, 1);
    sim_run(s, s->now + 3000);
    assert_true(s->acks > acks);
    sim_del(s);
}

/* Restore redundancy: PROVISION once after provision_after, again only after a backoff. */
static void test_provision_once_then_backoff(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    for (int i = 0; i < 3; i++) {
        s->n[i].cfg.min_replicas = 2;
        s->n[i].cfg.provision_after_ms = 3000;
        s->n[i].cfg.provision_backoff_ms = 10000;
    }
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    sim_run(s, s->now + 3000);
    assert_int_equal(s->n[p].provisions, 0);
    int r = (p + 1) % 3;
    uint64_t t0 = s->now;
    node_kill(s, r);
    sim_run(s, t0 + 3000 - 1);
    assert_int_equal(s->n[p].provisions, 0);
    sim_run(s, t0 + 3400);
    assert_int_equal(s->n[p].provisions, 1);
    long a1 = find_act(s, p, AGENT_ACT_PROVISION, t0, "below min 2");
    assert_true(a1 >= 0);
    sim_run(s, s->log[a1].t + 10000 - 1);
    assert_int_equal(s->n[p].provisions, 1);
    sim_run(s, s->log[a1].t + 10000 + 200);
    assert_int_equal(s->n[p].provisions, 2);
    long a2 = find_act(s, p, AGENT_ACT_PROVISION, s->log[a1].t + 1, "retrying");
    assert_true(a2 >= 0);
    sim_run(s, s->log[a2].t + 15000); /* the backoff doubled: no third one yet */
    assert_int_equal(s->n[p].provisions, 2);
    node_start(s, r); /* the new node arrives: no more provisioning */
    sim_run(s, s->now + 60000);
    assert_int_equal(s->n[p].provisions, 2);
    sim_del(s);
}

/* Garbage in the coordinator never makes two primaries: a malformed leader key blocks elections
 * (it exists), malformed member keys are ignored. */
static void test_malformed_coordinator_values(void **state)
{
    (void)state;
    struct sim *s = sim_new(2, 0, false);
    struct ckv *kv = &s->c.kv[0];
    kv->used = true;
    snprintf(kv->key, KEYLEN, "/tandem/c1/leader");
    snprintf(kv->val, VALLEN, "name= term=x");
    kv->rev = ++s->c.rev;
    kv = &s->c.kv[1];
    kv->used = true;
    snprintf(kv->key, KEYLEN, "/tandem/c1/members/zz");
    snprintf(kv->val, VALLEN, "lsn=99999999999999999999999 prio=-1");
    kv->rev = ++s->c.rev;
    sim_start(s);
    sim_run(s, 10000);
    assert_int_equal(writer(s), -1);
    s->c.kv[0].used = false; /* an operator removes it */
    assert_true(run_until_writer(s, 10000, -1) >= 0);
    sim_del(s);
}

/* Someone deletes the leader key (an operator, by hand): the primary steps down at its next read
 * and is elected again in a new term. (With replicas, deleting the key by hand breaks fencing,
 * as it does with Patroni: a replica may take over before the primary reads.) */
static void test_leader_key_deleted_under_primary(void **state)
{
    (void)state;
    struct sim *s = sim_new(1, 0, false);
    sim_start(s);
    assert_int_equal(run_until_writer(s, 10000, -1), 0);
    sim_run(s, s->now + 1000);
    uint64_t t0 = s->now;
    coord_get(&s->c, "/tandem/c1/leader")->used = false;
    s->c.rev++;
    sim_run(s, s->now + 2 * s->n[0].cfg.loop_ms);
    assert_true(find_act(s, 0, AGENT_ACT_DEMOTE, t0, "leader key gone from the coordinator") >= 0);
    assert_int_equal(run_until_writer(s, 10000, -1), 0);
    assert_int_equal(s->log[find_act(s, 0, AGENT_ACT_PROMOTE, t0, NULL)].term, 2);
    sim_del(s);
}

/* A clean stop hands over at once: demote, release, revoke; no TTL to wait for. */
static void test_clean_stop_hands_over_fast(void **state)
{
    (void)state;
    struct sim *s = sim_new(3, 0, false);
    sim_start(s);
    int p = run_until_writer(s, 10000, -1);
    sim_run(s, s->now + 1000);
    uint64_t t0 = s->now;
    agent_stop(s->n[p].ag, s->now);
    assert_false(agent_may_accept_writes(s->n[p].ag, s->now));
    perform(s, p);
    assert_true(find_act(s, p, AGENT_ACT_DEMOTE, t0, "shutting down") >= 0);
    assert_true(find_act(s, p, AGENT_ACT_DCS, t0, "revoking our lease") >= 0);
    agent_tick(s->n[p].ag, s->now + 10); /* stopped: silent */
    size_t n;
    agent_actions(s->n[p].ag, &n);
    assert_int_equal(n, 0);
    assert_int_equal(agent_next_deadline(s->n[p].ag), UINT64_MAX);
    int q = run_until_writer(s, 10000, p);
    assert_true(q >= 0 && q != p);
    assert_true(s->now - t0 < s->n[p].cfg.ttl_ms / 2);
    sim_del(s);
}

/* A watch hint makes the agent read at once instead of at its next poll. */
static void test_watch_hint_reads_now(void **state)
{
    (void)state;
    struct sim *s = sim_new(1, 0, false);
    sim_start(s);
    sim_run(s, 1000);
    struct agent *a = s->n[0].ag;
    uint64_t d = agent_next_deadline(a);
    agent_on_dcs_changed(a, s->now);
    size_t n;
    const struct agent_action *x = agent_actions(a, &n);
    bool read = false;
    for (size_t i = 0; i < n; i++)
        read |= x[i].kind == AGENT_ACT_DCS && x[i].u.dcs.op == DCS_OP_READ;
    /* either it read now, or a read is already in flight and another follows it */
    assert_true(read || agent_next_deadline(a) <= d);
    assert_string_equal(agent_action_name(AGENT_ACT_FAILSAFE_PING), "failsafe-ping");
    assert_string_equal(agent_role_name(AGENT_PRIMARY), "primary");
    perform(s, 0);
    sim_del(s);
}

/* Scripted coordinator for one agent: answers every request at once from a fixed picture,
 * except acquisitions, which get stuck in the network (no answer). */
struct script {
    const char *leader; /* leader key value, NULL: absent */
    uint64_t leader_lease, rev;
    bool promoted, down;
    unsigned acquisitions;
};

static void serve(struct agent *a, uint64_t now, struct script *sc)
{
    struct {
        uint64_t id;
        enum dcs_op op;
        bool acquire;
    } q[64];
    size_t nq = 0, n;
    for (size_t round = 0; round < 16; round++) {
        const struct agent_action *x = agent_actions(a, &n);
        for (size_t i = 0; i < n; i++) {
            sc->promoted |= x[i].kind == AGENT_ACT_PROMOTE;
            if (x[i].kind == AGENT_ACT_DCS && nq < 64) {
                q[nq].id = x[i].u.dcs.id;
                q[nq].op = x[i].u.dcs.op;
                q[nq++].acquire = strstr(x[i].cause, "taking it") != NULL;
            }
        }
        if (nq == 0)
            return;
        struct dcs_kv kv[2] = {
            {SLICE_LIT("/tandem/c1/term"), SLICE_LIT("term=1"), 1, 0},
            {SLICE_LIT("/tandem/c1/leader"), slice_cstr(sc->leader ? sc->leader : ""), 2,
             sc->leader_lease},
        };
        struct dcs_result r = {.id = q[nq - 1].id, .op = q[nq - 1].op, .rev = ++sc->rev};
        bool acquire = q[--nq].acquire;
        if (sc->down) {
            r.status = DCS_EUNAVAIL;
            agent_on_dcs_result(a, now, &r);
            continue;
        }
        if (acquire) {
            sc->acquisitions++;
            agent_tick(a, now);
            continue;
        }
        if (r.op == DCS_OP_GRANT)
            r.lease = 9;
        r.ttl_ms = 2000;
        if (r.op == DCS_OP_READ) {
            r.kvs = kv;
            r.nkvs = sc->leader ? 2 : 1;
        }
        agent_on_dcs_result(a, now, &r);
    }
}

/* A replica whose acquisition was delayed in the network confirmed a failsafe ping meanwhile.
 * When the acquisition turns out to have taken effect, it holds the key but does not promote
 * until its promise ran out, and it confirms no more pings. */
static void test_leader_elect_keeps_its_promise(void **state)
{
    (void)state;
    struct agent_config c;
    char err[128];
    agent_config_defaults(&c);
    c.cluster = "c1";
    c.name = "db2";
    c.addr = "h:2";
    struct agent *a = agent_new(&c, 0, err, sizeof(err));
    struct script sc = {.leader = "name=db1 term=1 addr=h:1", .leader_lease = 3};
    struct agent_store_obs obs = {.last_lsn = 10, .last_term = 1, .healthy = true};
    uint64_t t;
    for (t = 0; t <= 2500; t += 50) {
        agent_observe_store(a, t, &obs);
        serve(a, t, &sc);
        agent_tick(a, t);
        serve(a, t, &sc);
    }
    sc.leader = NULL; /* db1's key expired at the coordinator */
    for (; t <= 3400 && sc.acquisitions == 0; t += 50) {
        agent_tick(a, t);
        serve(a, t, &sc);
    }
    assert_int_equal(sc.acquisitions, 1);
    sc.down = true; /* and we lose the coordinator */
    t += c.dcs_timeout_ms;
    agent_tick(a, t); /* the acquisition timed out: outcome unknown */
    serve(a, t, &sc);
    /* db1 asks us to confirm it: we still follow it, so we promise. */
    assert_true(agent_on_failsafe_ping(a, t, "db1", 1, 2000));
    uint64_t promise = t + 2000 + c.margin_ms;
    struct agent_info info;
    agent_get_info(a, &info);
    assert_int_equal(info.promise_until_ms, promise);
    serve(a, t, &sc);
    /* The delayed acquisition took effect: the key is ours, on our lease. */
    sc.leader = "name=db2 term=2 addr=h:2";
    sc.leader_lease = 9;
    sc.down = false;
    agent_on_dcs_changed(a, t); /* a watch fires: it reads at once */
    serve(a, t, &sc);
    for (t += 50; t < promise; t += 50) {
        agent_tick(a, t);
        serve(a, t, &sc);
        assert_false(sc.promoted);
        assert_false(agent_may_accept_writes(a, t));
        assert_false(agent_on_failsafe_ping(a, t, "db1", 1, 2000)); /* no more promises */
        serve(a, t, &sc);
    }
    for (; t < promise + 500 && !sc.promoted; t += 10) {
        agent_tick(a, t);
        serve(a, t, &sc);
    }
    assert_true(sc.promoted);
    assert_true(t >= promise);
    assert_true(agent_may_accept_writes(a, t));
    agent_get_info(a, &info);
    assert_int_equal(info.primary_term, 2);
    agent_free(a);
}

/* ---- the randomized simulation ---- */

struct sim_stats {
    uint64_t writes, acks, failovers, faults, events_hours_ms;
};

static void run_random(uint64_t seed, uint64_t minutes, unsigned sync_n, bool strict,
                       struct sim_stats *st)
{
    struct sim *s = malloc(sizeof(*s));
    assert_non_null(s);
    rng = seed * 7919 + 1;
    sim_seed = seed;
    int nn = 2 + (int)(rnd() % 3);
    if (sync_n > 0 && nn > 2 && rnd() % 3 == 0)
        sync_n = 2;
    sim_init(s, nn, sync_n, strict);
    s->keep_log = false;
    s->chaos = true;
    s->dmin = 0;
    s->dmax = rnd_in(1, 20);
    s->c.late_max = rnd_in(0, 500);
    s->end = minutes * 60000;
    uint64_t ttl =
        rnd_in(800, 3000); /* one TTL per cluster: a failsafe promise uses the sender's */
    for (int i = 0; i < nn; i++) {
        struct agent_config *c = &s->n[i].cfg;
        c->ttl_ms = ttl;
        c->renew_ms = c->ttl_ms / rnd_in(3, 6);
        c->loop_ms = rnd_in(50, 300);
        c->dcs_timeout_ms = rnd_in(100, c->ttl_ms / 2);
        c->margin_ms = rnd_in(0, c->ttl_ms / 10);
        c->priority = (uint32_t)rnd_in(i == 0 ? 1 : 0, 3);
        c->failsafe = rnd() % 4 != 0;
        c->min_replicas = 1;
        c->provision_after_ms = 2000;
        c->provision_backoff_ms = 5000;
    }
    sim_start(s);
    heap_push(s, ev_new(EV_FAULT, 0, s->now + 3000));
    sim_run(s, s->end);
    /* Heal everything; a primary must emerge and stay. */
    s->chaos = false;
    s->loss = s->dup = s->late = 0;
    if (s->c.down)
        coord_up(s);
    for (int i = 0; i < nn; i++) {
        s->n[i].cut_coord = s->n[i].cut_peers = 0;
        if (s->n[i].dead)
            node_start(s, i);
    }
    sim_run(s, s->now + 30 * s->n[0].cfg.ttl_ms);
    if (writer(s) < 0)
        fail_msg("seed %" PRIu64 ": no primary 30 TTLs after healing", seed);
    uint64_t acks = s->acks, writes = s->writes;
    sim_run(s, s->now + 10000);
    assert_true(writer(s) >= 0);
    assert_true(s->writes > writes);
    if (s->sync && s->acks == acks) /* healed: acknowledgements flow again */
        fail_msg("seed %" PRIu64 ": no write acknowledged in the 10 s after healing", seed);
    st->writes += s->writes;
    st->acks += s->acks;
    st->failovers += s->failovers;
    st->faults += s->faults;
    st->events_hours_ms += s->now;
    sim_free(s);
    free(s);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    return strtoull(v, NULL, 10);
}

static void random_sims(unsigned sync_n, bool strict, uint64_t seeds, const char *what)
{
    struct sim_stats st = {0};
    uint64_t minutes = env_u64("TANDEM_SIM_MINUTES", 20), one = env_u64("TANDEM_SIM_SEED", 0);
    uint64_t first = one ? one : env_u64("TANDEM_SIM_FIRST", 1);
    uint64_t last = one ? one : first + env_u64("TANDEM_SIM_SEEDS", seeds) - 1;
    for (uint64_t seed = first; seed <= last; seed++)
        run_random(seed, minutes, sync_n, strict, &st);
    printf("[ sim      ] %s: %.1f simulated hours, %" PRIu64 " faults, %" PRIu64
           " promotions, %" PRIu64 " writes accepted, %" PRIu64 " acknowledged (sync)\n",
           what, (double)st.events_hours_ms / 3600000.0, st.faults, st.failovers, st.writes,
           st.acks);
}

static void test_random_async(void **state)
{
    (void)state;
    random_sims(0, false, 5, "async");
}

static void test_random_sync(void **state)
{
    (void)state;
    random_sims(1, false, 5, "sync");
}

static void test_random_sync_strict(void **state)
{
    (void)state;
    random_sims(1, true, 2, "sync-strict");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_duplicate_and_late_results),
        cmocka_unit_test(test_bootstrap_one_primary),
        cmocka_unit_test(test_election_order),
        cmocka_unit_test(test_failover_on_kill_and_rejoin),
        cmocka_unit_test(test_paused_primary_fences_at_lease_end),
        cmocka_unit_test(test_isolated_primary_stops),
        cmocka_unit_test(test_higher_term_steps_down),
        cmocka_unit_test(test_restarted_primary_waits_for_its_old_lease),
        cmocka_unit_test(test_failsafe_coordinator_down),
        cmocka_unit_test(test_failsafe_needs_every_member),
        cmocka_unit_test(test_failsafe_promise_holds_replicas_back),
        cmocka_unit_test(test_sync_only_recorded_replica_promoted),
        cmocka_unit_test(test_sync_degrades_loudly_and_blocks_stale_failover),
        cmocka_unit_test(test_sync_two_nodes_kill_rounds_stay_electable),
        cmocka_unit_test(test_sync_strict_holds_acks),
        cmocka_unit_test(test_provision_once_then_backoff),
        cmocka_unit_test(test_malformed_coordinator_values),
        cmocka_unit_test(test_leader_key_deleted_under_primary),
        cmocka_unit_test(test_clean_stop_hands_over_fast),
        cmocka_unit_test(test_watch_hint_reads_now),
        cmocka_unit_test(test_leader_elect_keeps_its_promise),
        cmocka_unit_test(test_random_async),
        cmocka_unit_test(test_random_sync),
        cmocka_unit_test(test_random_sync_strict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
