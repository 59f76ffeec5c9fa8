/* SPDX-License-Identifier: MIT */
/* Unit tests for store/repl_core.c: log matching on hand-made cases and on randomized
 * histories (a simulated cluster whose leaders change, write, compact and resync followers
 * with the decision under test: after applying it a follower's log is always a prefix of the
 * leader's, and nothing the two logs share is discarded); the sync-commit rule in both
 * degraded modes; the term rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/repl_core.h"

/* --- a log for tests: terms (and record ids) by lsn --- */

#define MAXLOG 2048

struct tlog {
    uint64_t term[MAXLOG + 1]; /* term[lsn], lsn 1..len */
    uint64_t id[MAXLOG + 1];   /* identity of the record at lsn */
    uint64_t len;
    uint64_t base; /* records <= base are compacted (only in the snapshot) */
    uint64_t cur_term;
    /* Term boundaries kept across compaction: the terms of lsns >= hist are known even below
     * base (hist <= base). keeps: the node keeps them when it compacts (else, like a data
     * directory written before boundaries were kept, hist follows base). */
    bool keeps;
    uint64_t hist;
};

static int tlog_term_at(void *ud, uint64_t lsn, uint64_t *term)
{
    const struct tlog *l = ud;
    uint64_t low = l->keeps && l->hist < l->base ? l->hist : l->base;
    if (lsn < low || lsn > l->len)
        return -ENOENT;
    *term = lsn == 0 ? 0 : l->term[lsn];
    return 0;
}

static struct repl_log_view view_of(struct tlog *l)
{
    struct repl_log_view v = {l->cur_term, l->base, l->len, tlog_term_at, l, l->keeps, l->hist};
    return v;
}

/* Builds a hello from l's log: the term history of lsns max(base,1)..len, the newest
 * REPLMSG_MAX_TERMS terms of it. */
static void hello_of(const struct tlog *l, struct replmsg_hello *h)
{
    memset(h, 0, sizeof(*h));
    h->node = SLICE_LIT("r");
    h->last_lsn = l->len;
    h->last_term = l->len ? l->term[l->len] : 0;
    h->base_lsn = l->base;
    struct replmsg_term_start all[MAXLOG];
    size_t n = 0;
    for (uint64_t lsn = l->base ? l->base : 1; lsn <= l->len; lsn++)
        if (n == 0 || all[n - 1].term != l->term[lsn])
            all[n++] = (struct replmsg_term_start){l->term[lsn], lsn};
    size_t from = n > REPLMSG_MAX_TERMS ? n - REPLMSG_MAX_TERMS : 0;
    h->nterms = n - from;
    memcpy(h->terms, all + from, h->nterms * sizeof(all[0]));
}

static void set_log(struct tlog *l, const char *terms)
{
    memset(l, 0, sizeof(*l));
    for (const char *p = terms; *p; p++) {
        l->len++;
        l->term[l->len] = (uint64_t)(*p - '0');
        l->id[l->len] = l->term[l->len] * 1000 + l->len;
        if (l->term[l->len] > l->cur_term)
            l->cur_term = l->term[l->len];
    }
}

static struct repl_match match(struct tlog *p, const struct tlog *r)
{
    struct replmsg_hello h;
    hello_of(r, &h);
    struct repl_log_view v = view_of(p);
    struct repl_match m;
    assert_int_equal(repl_core_match(&v, &h, &m), 0);
    assert_non_null(m.cause);
    return m;
}

static void test_match_cases(void **state)
{
    (void)state;
    struct tlog p, r;
    struct repl_match m;

    set_log(&p, "1112");
    set_log(&r, "");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_CONTINUE);
    assert_int_equal(m.lsn, 0);

    set_log(&r, "11");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_CONTINUE);
    assert_int_equal(m.lsn, 2);

    set_log(&r, "1112");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_CONTINUE);
    assert_int_equal(m.lsn, 4);

    /* The replica got more records of term 1 than the primary (the old primary's tail). */
    set_log(&r, "111111");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_TRUNCATE);
    assert_int_equal(m.lsn, 3);

    /* The replica's last term is unknown to the primary; its earlier term decides. */
    set_log(&p, "1111133");
    set_log(&r, "11222");
    r.term[1] = r.term[2] = 1;
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_TRUNCATE);
    assert_int_equal(m.lsn, 2);

    /* The case a last-term-only rule gets wrong: lsns 6,7 of the replica are term 2. */
    set_log(&p, "11111113");
    set_log(&r, "11111222");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_TRUNCATE);
    assert_int_equal(m.lsn, 5);

    /* Without history, an unknown last term cannot be placed: full resync. */
    {
        struct replmsg_hello h;
        hello_of(&r, &h);
        h.nterms = 0;
        struct repl_log_view v = view_of(&p);
        assert_int_equal(repl_core_match(&v, &h, &m), 0);
        assert_int_equal(m.kind, REPL_MATCH_FULL);
        /* ... but a known one can. */
        set_log(&r, "111");
        hello_of(&r, &h);
        h.nterms = 0;
        assert_int_equal(repl_core_match(&v, &h, &m), 0);
        assert_int_equal(m.kind, REPL_MATCH_CONTINUE);
        assert_int_equal(m.lsn, 3);
    }

    /* Nothing in common, complete history: truncate everything. */
    set_log(&p, "333");
    set_log(&r, "22");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_TRUNCATE);
    assert_int_equal(m.lsn, 0);

    /* Compacted primary: the common prefix is older than the snapshot. */
    set_log(&p, "1111122");
    p.base = 4;
    set_log(&r, "11");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_int_equal(m.lsn, 4);
    set_log(&r, "1111");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_CONTINUE);
    assert_int_equal(m.lsn, 4);
    set_log(&r, "11111");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_CONTINUE);
    assert_int_equal(m.lsn, 5);
    /* Base term above the replica's terms: the snapshot covers all of them. */
    set_log(&p, "1122222");
    p.base = 4;
    set_log(&r, "111");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    /* Empty replica, compacted primary. */
    set_log(&r, "");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_int_equal(m.lsn, 4);

    /* The replica's divergent records are already folded into its snapshot. */
    set_log(&p, "1113");
    set_log(&r, "11111");
    r.base = 5;
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_non_null(strstr(m.cause, "snapshot"));
    /* ... or diverged in a term its log no longer shows: unproven, full resync too. */
    set_log(&r, "11122");
    r.base = 5;
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);

    /* A replica from a higher term is refused. */
    set_log(&p, "11");
    set_log(&r, "113");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_REFUSE);
}

/* The primary kept its term boundaries across compaction: a common prefix older than its
 * snapshot is proven and travels with FULL; without them it is not. */
static void test_match_full_with_common(void **state)
{
    (void)state;
    struct tlog p, r;
    struct repl_match m;

    /* The integration test's story: a(1) on both; r is promoted (term 2: its opening record
     * and one write) and compacts at 3; the old primary p writes div:1..3 in term 1 and
     * compacted at 3 (div:1, div:2 folded into its snapshot). p rejoins r. */
    set_log(&r, "122");
    r.base = 3;
    set_log(&p, "1111");
    p.base = 3;
    m = match(&r, &p);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_false(m.proven); /* today: r's snapshot covers term 1 */
    r.keeps = true;
    r.hist = 0;
    m = match(&r, &p);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_int_equal(m.lsn, 3);
    assert_true(m.proven);
    assert_int_equal(m.common, 1); /* p audits 2..3 (its snapshot) and 4 (its log) */
    /* Boundaries known only from lsn 2 (e.g. r installed a snapshot at 2): term 1 is not. */
    r.hist = 2;
    m = match(&r, &p);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_false(m.proven);

    /* A lagging replica behind the primary's snapshot: proven, nothing diverged. */
    set_log(&p, "1111122");
    p.base = 6;
    p.keeps = true;
    set_log(&r, "111");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_true(m.proven);
    assert_int_equal(m.common, 3);
    /* ... with its last records compacted into its own snapshot: still a prefix. */
    r.base = 3;
    m = match(&p, &r);
    assert_true(m.proven);
    assert_int_equal(m.common, 3);
    /* A fresh replica. */
    set_log(&r, "");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_true(m.proven);
    assert_int_equal(m.common, 0);

    /* A divergent suffix in the replica's log, older than the primary's snapshot: FULL (the
     * primary cannot stream from 3) with common 3; the replica audits 4..5 as records. */
    set_log(&r, "11133"); /* lsns 4, 5 of term 3: an old primary p never heard of */
    p.cur_term = 4;
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_true(m.proven);
    assert_int_equal(m.common, 3);

    /* Divergence folded into the replica's snapshot, primary not compacted: FULL (the
     * replica cannot cut below its snapshot) with the exact common prefix. */
    set_log(&p, "1113");
    set_log(&r, "11111");
    r.base = 5;
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
    assert_true(m.proven);
    assert_int_equal(m.common, 3);

    /* CONTINUE and TRUNCATE answers are the same with or without kept boundaries. */
    set_log(&p, "1111122");
    p.base = 4;
    set_log(&r, "11111");
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_CONTINUE);
    p.keeps = true;
    p.hist = 0;
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_CONTINUE);
    assert_int_equal(m.lsn, 5);
    assert_false(m.proven);
}

/* The replica's plan before a full resync. */
static void test_full_audit_plan(void **state)
{
    (void)state;
    struct repl_full_audit a;
    /* Unproven: nothing. */
    assert_int_equal(repl_core_full_audit(false, 0, 5, 9, &a), 0);
    assert_false(a.keep_snapshot || a.cut);
    /* The integration story: common 1, snapshot 3, last 4. */
    assert_int_equal(repl_core_full_audit(true, 1, 3, 4, &a), 0);
    assert_true(a.keep_snapshot);
    assert_int_equal(a.folded, 2);
    assert_true(a.cut);
    assert_int_equal(a.cut_after, 3);
    assert_int_equal(a.cut_records, 1);
    /* Divergence only in the log (the primary compacted past the common prefix). */
    assert_int_equal(repl_core_full_audit(true, 6, 3, 9, &a), 0);
    assert_false(a.keep_snapshot);
    assert_int_equal(a.folded, 0);
    assert_true(a.cut);
    assert_int_equal(a.cut_after, 6);
    assert_int_equal(a.cut_records, 3);
    /* Divergence only folded into the snapshot (nothing after it). */
    assert_int_equal(repl_core_full_audit(true, 0, 5, 5, &a), 0);
    assert_true(a.keep_snapshot);
    assert_int_equal(a.folded, 5);
    assert_false(a.cut);
    /* A lagging replica (common = last): nothing, with or without a snapshot of its own. */
    assert_int_equal(repl_core_full_audit(true, 9, 3, 9, &a), 0);
    assert_false(a.keep_snapshot || a.cut);
    assert_int_equal(repl_core_full_audit(true, 9, 9, 9, &a), 0);
    assert_false(a.keep_snapshot || a.cut);
    assert_int_equal(repl_core_full_audit(true, 0, 0, 0, &a), 0); /* fresh */
    assert_false(a.keep_snapshot || a.cut);
    /* Nonsense: beyond the log. */
    assert_int_equal(repl_core_full_audit(true, 10, 3, 9, &a), -ERANGE);
    assert_int_equal(repl_core_full_audit(true, 1, 10, 9, &a), -ERANGE);
}

/* A term_at failure is passed through. */
static int failing_term_at(void *ud, uint64_t lsn, uint64_t *term)
{
    (void)ud;
    (void)lsn;
    (void)term;
    return -EIO;
}

static void test_match_lookup_error(void **state)
{
    (void)state;
    struct repl_log_view v = {2, 0, 5, failing_term_at, NULL, false, 0};
    struct replmsg_hello h;
    memset(&h, 0, sizeof(h));
    h.last_lsn = 3;
    h.last_term = 1;
    struct repl_match m;
    assert_int_equal(repl_core_match(&v, &h, &m), -EIO);
}

/* --- randomized histories --- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(uint64_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return n ? rng % n : 0;
}

#define NODES 4

static uint64_t common_prefix(const struct tlog *a, const struct tlog *b)
{
    uint64_t n = a->len < b->len ? a->len : b->len, i = 0;
    while (i < n && a->id[i + 1] == b->id[i + 1])
        i++;
    return i;
}

/* Syncs follower r with leader p using the decision under test, checks it, applies it, then
 * copies a random number of the leader's next records. */
static void sync_follower(struct tlog *p, struct tlog *r, unsigned *counts)
{
    struct replmsg_hello h;
    hello_of(r, &h);
    bool complete = r->len == 0 || (h.nterms > 0 && h.terms[0].first_lsn == 1);
    if (rnd(5) == 0) {
        h.nterms = 0; /* an old replica that sends no history */
        complete = r->len == 0;
    } else if (h.nterms > 1 && rnd(5) == 0) {
        size_t drop = 1 + rnd(h.nterms - 1);
        memmove(h.terms, h.terms + drop, (h.nterms - drop) * sizeof(h.terms[0]));
        h.nterms -= drop;
        complete = false;
    }
    struct repl_log_view v = view_of(p);
    struct repl_match m;
    assert_int_equal(repl_core_match(&v, &h, &m), 0);
    uint64_t lcp = common_prefix(p, r);
    counts[m.kind]++;
    switch (m.kind) {
    case REPL_MATCH_CONTINUE:
        assert_int_equal(m.lsn, r->len);
        assert_int_equal(lcp, r->len);
        assert_true(m.lsn >= p->base);
        break;
    case REPL_MATCH_TRUNCATE:
        assert_int_equal(m.lsn, lcp); /* exactly the divergent suffix goes */
        assert_true(m.lsn < r->len);
        assert_true(m.lsn >= p->base);
        assert_true(m.lsn >= r->base);
        r->len = m.lsn;
        break;
    case REPL_MATCH_FULL:
        assert_int_equal(m.lsn, p->base);
        if (complete) /* a full resync only when a log cannot serve */
            assert_true(lcp < p->base || lcp < r->base);
        if (complete && p->keeps && p->hist == 0)
            assert_true(m.proven); /* complete histories on both sides always prove it */
        if (m.proven) {
            /* The replica audits exactly its records after common (from its snapshot when
             * common is below it, from its log after max(common, its base)): they are the
             * divergent ones, and none of them is shared. */
            assert_int_equal(m.common, lcp);
            struct repl_full_audit plan;
            assert_int_equal(repl_core_full_audit(true, m.common, r->base, r->len, &plan), 0);
            assert_int_equal(plan.folded + plan.cut_records, r->len - lcp);
            assert_int_equal(plan.keep_snapshot, lcp < r->base);
            if (lcp == r->len)
                assert_false(plan.keep_snapshot || plan.cut);
            counts[4]++;
            if (m.common < r->len)
                counts[5]++;
            if (m.common < r->base)
                counts[6]++;
        } else {
            assert_int_equal(m.common, 0);
        }
        memcpy(r->term, p->term, sizeof(p->term[0]) * (p->base + 1));
        memcpy(r->id, p->id, sizeof(p->id[0]) * (p->base + 1));
        r->len = r->base = p->base;
        r->hist = r->base; /* an installed snapshot's history is unknown below it */
        break;
    case REPL_MATCH_REFUSE:
        fail_msg("leader refused a follower with a lower term");
    }
    assert_int_equal(common_prefix(p, r), r->len); /* the follower is a prefix now */
    uint64_t k = rnd(p->len - r->len + 1);
    for (uint64_t i = 0; i < k; i++) {
        r->len++;
        r->term[r->len] = p->term[r->len];
        r->id[r->len] = p->id[r->len];
    }
    if (r->cur_term < p->cur_term)
        r->cur_term = p->cur_term;
}

static void test_match_random_histories(void **state)
{
    (void)state;
    static struct tlog nodes[NODES];
    /* Decisions by kind; then FULLs proven, proven with divergence, with divergence folded
     * into the replica's snapshot. */
    unsigned counts[7] = {0};
    uint64_t next_id = 1;
    for (int hist = 0; hist < 400; hist++) {
        memset(nodes, 0, sizeof(nodes));
        for (int i = 0; i < NODES; i++)
            nodes[i].keeps = rnd(4) != 0;
        uint64_t term = 0;
        int leader = -1;
        for (int step = 0; step < 150; step++) {
            unsigned op = (unsigned)rnd(10);
            if (leader < 0 || op == 0) {
                /* A new term: any node may win (manual promotion need not pick the best). */
                leader = (int)rnd(NODES);
                term++;
                nodes[leader].cur_term = term;
            } else if (op <= 4) {
                struct tlog *p = &nodes[leader];
                uint64_t k = 1 + rnd(4);
                for (uint64_t i = 0; i < k && p->len < MAXLOG - 8; i++) {
                    p->len++;
                    p->term[p->len] = p->cur_term;
                    p->id[p->len] = next_id++;
                }
            } else if (op == 5) {
                struct tlog *p = &nodes[leader];
                p->base += rnd(p->len - p->base + 1);
                if (!p->keeps)
                    p->hist = p->base;
            } else {
                int r = (int)rnd(NODES);
                if (r != leader)
                    sync_follower(&nodes[leader], &nodes[r], counts);
            }
        }
    }
    /* Every kind of decision was exercised. */
    assert_true(counts[REPL_MATCH_CONTINUE] > 100);
    assert_true(counts[REPL_MATCH_TRUNCATE] > 100);
    assert_true(counts[REPL_MATCH_FULL] > 100);
    assert_true(counts[4] > 50);
    assert_true(counts[5] > 20);
    assert_true(counts[6] > 10);
    print_message("decisions: continue %u truncate %u full %u (proven %u, diverged %u, folded "
                  "into the replica's snapshot %u)\n",
                  counts[0], counts[1], counts[2], counts[4], counts[5], counts[6]);
}

/* Many terms: a history longer than REPLMSG_MAX_TERMS still matches where it can. */
static void test_match_long_history(void **state)
{
    (void)state;
    static struct tlog p, r;
    memset(&p, 0, sizeof(p));
    for (uint64_t lsn = 1; lsn <= 100; lsn++) {
        p.len = lsn;
        p.term[lsn] = lsn;
        p.id[lsn] = lsn;
    }
    p.cur_term = 200;
    r = p;
    r.len = 90;
    struct repl_match m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_CONTINUE);
    assert_int_equal(m.lsn, 90);
    /* Replica diverged at 80 with terms 101.. */
    for (uint64_t lsn = 81; lsn <= 90; lsn++)
        r.term[lsn] = 100 + lsn;
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_TRUNCATE);
    assert_int_equal(m.lsn, 80);
    /* Diverged before its reported history starts: cannot be proven. */
    for (uint64_t lsn = 40; lsn <= 90; lsn++)
        r.term[lsn] = 100 + lsn;
    m = match(&p, &r);
    assert_int_equal(m.kind, REPL_MATCH_FULL);
}

/* The binary-search history equals the linear one used by the simulation. */
static void test_term_history(void **state)
{
    (void)state;
    static struct tlog l;
    for (int it = 0; it < 2000; it++) {
        memset(&l, 0, sizeof(l));
        uint64_t n = rnd(200), t = rnd(3);
        for (uint64_t lsn = 1; lsn <= n; lsn++) {
            if (rnd(4) == 0)
                t += 1 + rnd(3);
            l.term[lsn] = t;
            l.id[lsn] = lsn;
        }
        l.len = n;
        l.base = rnd(n + 1);
        struct replmsg_hello want, got;
        hello_of(&l, &want);
        while (want.nterms > 0 && want.terms[0].term == 0) { /* term-0 records are not listed */
            memmove(want.terms, want.terms + 1, (want.nterms - 1) * sizeof(want.terms[0]));
            want.nterms--;
        }
        memset(&got, 0, sizeof(got));
        assert_int_equal(repl_core_term_history(tlog_term_at, &l, l.base, l.len, &got), 0);
        assert_int_equal(got.last_lsn, want.last_lsn);
        assert_int_equal(got.last_term, want.last_term);
        assert_int_equal(got.base_lsn, l.base);
        assert_int_equal(got.nterms, want.nterms);
        assert_memory_equal(got.terms, want.terms, got.nterms * sizeof(got.terms[0]));
        /* And it is a valid hello. */
        got.node = SLICE_LIT("n");
        struct buf b;
        buf_init(&b);
        replmsg_hello_encode(&b, &got);
        buf_free(&b);
    }
    /* Lookup errors are passed through. */
    struct replmsg_hello h;
    assert_int_equal(repl_core_term_history(failing_term_at, NULL, 0, 5, &h), -EIO);
}

/* --- sync commit --- */

static struct repl_commit commit(unsigned req, bool strict, uint64_t local, uint64_t prev,
                                 bool recorded, const struct repl_replica_ack *r, size_t n)
{
    struct repl_commit_in in = {req, strict, local, prev, recorded, n, r};
    struct repl_commit out;
    repl_core_commit(&in, &out);
    return out;
}

static void test_commit(void **state)
{
    (void)state;
    struct repl_replica_ack r[4] = {{10, true}, {7, true}, {12, false}, {9, true}};
    struct repl_commit c;

    /* Asynchronous: the local lsn. */
    c = commit(0, false, 20, 0, false, r, 4);
    assert_int_equal(c.commit_lsn, 20);
    assert_false(c.degraded);
    assert_int_equal(c.in_sync, 3);

    /* N-th highest among in-sync replicas (12 is not in sync). */
    c = commit(1, false, 20, 0, false, r, 4);
    assert_int_equal(c.commit_lsn, 10);
    c = commit(2, false, 20, 0, false, r, 4);
    assert_int_equal(c.commit_lsn, 9);
    c = commit(3, false, 20, 0, false, r, 4);
    assert_int_equal(c.commit_lsn, 7);
    assert_false(c.degraded);
    /* Capped by the primary's own durable lsn. */
    c = commit(1, false, 8, 0, false, r, 4);
    assert_int_equal(c.commit_lsn, 8);
    /* Never goes back. */
    c = commit(3, false, 20, 9, false, r, 4);
    assert_int_equal(c.commit_lsn, 9);
    /* Ties count once per replica. */
    struct repl_replica_ack tie[3] = {{5, true}, {5, true}, {3, true}};
    assert_int_equal(commit(2, false, 9, 0, false, tie, 3).commit_lsn, 5);
    assert_int_equal(commit(3, false, 9, 0, false, tie, 3).commit_lsn, 3);

    /* Fewer than N in sync, default mode: first record it, acknowledging nothing new... */
    c = commit(4, false, 20, 7, false, r, 4);
    assert_true(c.degraded);
    assert_true(c.record_unsynced);
    assert_false(c.blocked);
    assert_int_equal(c.commit_lsn, 7);
    /* ...then acknowledge at the local lsn. */
    c = commit(4, false, 20, 7, true, r, 4);
    assert_true(c.degraded);
    assert_false(c.record_unsynced);
    assert_int_equal(c.commit_lsn, 20);
    /* Strict: blocked, nothing new acknowledged. */
    c = commit(4, true, 20, 7, false, r, 4);
    assert_true(c.blocked);
    assert_false(c.record_unsynced);
    assert_int_equal(c.commit_lsn, 7);

    /* Back in sync after degraded acks: keep acking locally until the replicas hold every
     * acknowledged write, then clear the record. */
    c = commit(1, false, 25, 20, true, r, 4);
    assert_false(c.degraded);
    assert_false(c.clear_unsynced);
    assert_int_equal(c.commit_lsn, 25);
    /* Strict mode never acknowledges on the primary alone, even with a stale record. */
    c = commit(1, true, 25, 9, true, r, 4);
    assert_int_equal(c.commit_lsn, 10);
    struct repl_replica_ack caught[1] = {{25, true}};
    c = commit(1, false, 25, 25, true, caught, 1);
    assert_true(c.clear_unsynced);
    assert_int_equal(c.commit_lsn, 25);

    /* No replicas at all. */
    c = commit(1, false, 5, 0, false, NULL, 0);
    assert_true(c.degraded);
    assert_true(c.record_unsynced);
    assert_int_equal(c.commit_lsn, 0);
}

/* Randomized: the commit lsn never exceeds what N in-sync replicas and the primary hold,
 * unless the unsynced state is recorded and the mode is not strict. */
static void test_commit_random(void **state)
{
    (void)state;
    for (int it = 0; it < 20000; it++) {
        struct repl_replica_ack r[6];
        size_t n = (size_t)rnd(7);
        for (size_t i = 0; i < n; i++)
            r[i] = (struct repl_replica_ack){rnd(50), rnd(3) != 0};
        unsigned req = (unsigned)rnd(4);
        bool strict = rnd(2), rec = rnd(2);
        uint64_t local = rnd(50), prev = rnd(local + 1);
        struct repl_commit c = commit(req, strict, local, prev, rec, r, n);
        assert_true(c.commit_lsn >= prev);
        assert_true(c.commit_lsn <= local);
        if (req == 0)
            continue;
        unsigned holding = 0;
        for (size_t i = 0; i < n; i++)
            holding += r[i].in_sync && r[i].acked_lsn >= c.commit_lsn;
        if (c.commit_lsn > prev && holding < req)
            assert_true(rec && !strict);
        assert_true(!c.blocked || strict);
        assert_true(!c.record_unsynced || (!rec && !strict && c.degraded));
    }
}

/* --- terms --- */

static void test_terms(void **state)
{
    (void)state;
    struct repl_term_verdict v;
    repl_core_stream_term(5, 5, &v);
    assert_int_equal(v.action, REPL_TERM_OK);
    assert_int_equal(v.new_term, 5);
    repl_core_stream_term(5, 4, &v);
    assert_int_equal(v.action, REPL_TERM_REJECT);
    assert_int_equal(v.new_term, 5);
    assert_non_null(strstr(v.cause, "older"));
    repl_core_stream_term(5, 7, &v);
    assert_int_equal(v.action, REPL_TERM_ADOPT);
    assert_int_equal(v.new_term, 7);

    repl_core_observe_term(true, 5, 6, "replica r2", &v);
    assert_int_equal(v.action, REPL_TERM_STEP_DOWN);
    assert_int_equal(v.new_term, 6);
    assert_non_null(strstr(v.cause, "stopped accepting writes"));
    assert_non_null(strstr(v.cause, "replica r2"));
    repl_core_observe_term(true, 5, 5, NULL, &v);
    assert_int_equal(v.action, REPL_TERM_OK);
    repl_core_observe_term(true, 5, 3, NULL, &v);
    assert_int_equal(v.action, REPL_TERM_OK);
    repl_core_observe_term(false, 5, 9, NULL, &v);
    assert_int_equal(v.action, REPL_TERM_ADOPT);
    assert_int_equal(v.new_term, 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_cases),
        cmocka_unit_test(test_match_full_with_common),
        cmocka_unit_test(test_full_audit_plan),
        cmocka_unit_test(test_match_lookup_error),
        cmocka_unit_test(test_match_random_histories),
        cmocka_unit_test(test_match_long_history),
        cmocka_unit_test(test_term_history),
        cmocka_unit_test(test_commit),
        cmocka_unit_test(test_commit_random),
        cmocka_unit_test(test_terms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
