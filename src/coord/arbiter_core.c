/* SPDX-License-Identifier: MIT */
/* coord/arbiter_core.c -- the arbiter's keys, revisions and leases (see arbiter_core.h).
 *
 * Keys live in one array sorted by key bytes, so a prefix read is a binary search and a walk;
 * leases live in an array sorted by id (ids only grow, so a grant appends). The arbiter is a
 * witness holding a few dozen keys per cluster: bounded arrays are simpler than a tree and fast
 * enough at the limits (10000 keys).
 *
 * State file format (little endian), version 1:
 *   "TDARBITR" | u32 version | u32 0 | u64 rev | u64 next_lease | u32 nleases | u32 nkeys
 *   nleases x (u64 id | u64 ttl_ms)
 *   nkeys   x (u32 klen | u32 vlen | u64 mod_rev | u64 lease | key | value)
 *   u32 CRC32C of every byte before it
 * Expiry instants are not saved: they are monotonic-clock values of one process. */
#include "coord/arbiter_core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/crc32c.h"
#include "base/endian.h"
#include "base/err.h"

#define MAGIC "TDARBITR"
#define VERSION 1u
#define HDR_BYTES (8 + 4 + 4 + 8 + 8 + 4 + 4)
#define LEASE_BYTES 16
#define KEY_HDR_BYTES 24

struct entry {
    char *key; /* key bytes followed by value bytes, one allocation */
    size_t klen, vlen;
    uint64_t mod_rev;
    uint64_t lease;
};

struct lease {
    uint64_t id;
    uint64_t ttl_ms;
    uint64_t expires_ms;
};

struct arbiter_core {
    struct arbiter_limits lim;
    uint64_t rev;
    uint64_t next_lease;
    struct entry *e;
    size_t ne, cap_e;
    struct lease *l;
    size_t nl, cap_l;
    arbiter_core_change_fn hook;
    void *hook_ud;
};

void arbiter_limits_defaults(struct arbiter_limits *lim)
{
    lim->max_keys = 10000;
    lim->max_key_bytes = 1024;
    lim->max_value_bytes = 64 * 1024;
    lim->max_leases = 10000;
    lim->max_txn_ops = 64;
    lim->max_ttl_ms = 24ull * 3600 * 1000;
}

struct arbiter_core *arbiter_core_new(const struct arbiter_limits *lim)
{
    struct arbiter_core *c = xcalloc(1, sizeof(*c));
    if (lim)
        c->lim = *lim;
    else
        arbiter_limits_defaults(&c->lim);
    c->next_lease = 1;
    return c;
}

static void free_state(struct arbiter_core *c)
{
    for (size_t i = 0; i < c->ne; i++)
        free(c->e[i].key);
    free(c->e);
    free(c->l);
    c->e = NULL;
    c->l = NULL;
    c->ne = c->cap_e = c->nl = c->cap_l = 0;
}

void arbiter_core_free(struct arbiter_core *c)
{
    if (c == NULL)
        return;
    free_state(c);
    free(c);
}

void arbiter_core_set_hook(struct arbiter_core *c, arbiter_core_change_fn fn, void *ud)
{
    c->hook = fn;
    c->hook_ud = ud;
}

uint64_t arbiter_core_rev(const struct arbiter_core *c)
{
    return c->rev;
}

size_t arbiter_core_nkeys(const struct arbiter_core *c)
{
    return c->ne;
}

size_t arbiter_core_nleases(const struct arbiter_core *c)
{
    return c->nl;
}

/* --- lookups --- */

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int r = n ? memcmp(a, b, n) : 0;
    if (r != 0)
        return r;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Binary search: true when key is present at *idx; else *idx is where it would go. */
static bool find_key(const struct arbiter_core *c, struct slice key, size_t *idx)
{
    size_t lo = 0, hi = c->ne;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = key_cmp(c->e[mid].key, c->e[mid].klen, key.p, key.len);
        if (r == 0) {
            *idx = mid;
            return true;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *idx = lo;
    return false;
}

static struct lease *find_lease(const struct arbiter_core *c, uint64_t id)
{
    size_t lo = 0, hi = c->nl;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->l[mid].id == id)
            return &c->l[mid];
        if (c->l[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* A lease that exists and whose instant has not passed. */
static struct lease *live_lease(const struct arbiter_core *c, uint64_t id, uint64_t now_ms)
{
    struct lease *l = id ? find_lease(c, id) : NULL;
    return l && l->expires_ms > now_ms ? l : NULL;
}

/* --- mutations --- */

static void notify(struct arbiter_core *c, const struct entry *e)
{
    if (c->hook)
        c->hook(c->hook_ud, slice_of(e->key, e->klen), c->rev);
}

static void delete_at(struct arbiter_core *c, size_t i)
{
    notify(c, &c->e[i]);
    free(c->e[i].key);
    memmove(&c->e[i], &c->e[i + 1], (c->ne - i - 1) * sizeof(c->e[0]));
    c->ne--;
}

/* Inserts or replaces key at the current revision (already bumped by the caller). */
static void put_key(struct arbiter_core *c, struct slice key, struct slice value, uint64_t lease)
{
    size_t i;
    bool found = find_key(c, key, &i);
    if (!found) {
        if (c->ne == c->cap_e) {
            c->cap_e = c->cap_e ? c->cap_e * 2 : 16;
            c->e = xrealloc(c->e, c->cap_e * sizeof(c->e[0]));
        }
        memmove(&c->e[i + 1], &c->e[i], (c->ne - i) * sizeof(c->e[0]));
        c->ne++;
    } else {
        free(c->e[i].key);
    }
    struct entry *e = &c->e[i];
    e->key = xmalloc(key.len + value.len + 1);
    memcpy(e->key, key.p, key.len);
    if (value.len)
        memcpy(e->key + key.len, value.p, value.len);
    e->klen = key.len;
    e->vlen = value.len;
    e->mod_rev = c->rev;
    e->lease = lease;
    notify(c, e);
}

/* Removes lease l and deletes its keys at one new revision (none when it had no keys). Returns
 * how many keys went. */
static size_t drop_lease(struct arbiter_core *c, struct lease *l)
{
    uint64_t id = l->id;
    size_t li = (size_t)(l - c->l);
    memmove(&c->l[li], &c->l[li + 1], (c->nl - li - 1) * sizeof(c->l[0]));
    c->nl--;
    size_t n = 0;
    for (size_t i = 0; i < c->ne;) {
        if (c->e[i].lease == id) {
            if (n++ == 0)
                c->rev++;
            delete_at(c, i);
        } else {
            i++;
        }
    }
    return n;
}

int arbiter_core_grant(struct arbiter_core *c, uint64_t now_ms, uint64_t ttl_ms, uint64_t *lease)
{
    if (ttl_ms == 0 || ttl_ms > c->lim.max_ttl_ms)
        return -EINVAL;
    if (c->nl >= c->lim.max_leases)
        return TD_ETOO_BIG;
    if (c->nl == c->cap_l) {
        c->cap_l = c->cap_l ? c->cap_l * 2 : 16;
        c->l = xrealloc(c->l, c->cap_l * sizeof(c->l[0]));
    }
    uint64_t id = c->next_lease++;
    c->l[c->nl++] = (struct lease){id, ttl_ms, now_ms + ttl_ms};
    *lease = id;
    return 0;
}

int arbiter_core_keepalive(struct arbiter_core *c, uint64_t now_ms, uint64_t lease,
                           uint64_t *ttl_ms)
{
    struct lease *l = live_lease(c, lease, now_ms);
    if (l == NULL)
        return DCS_ENOLEASE;
    l->expires_ms = now_ms + l->ttl_ms;
    *ttl_ms = l->ttl_ms;
    return 0;
}

int arbiter_core_revoke(struct arbiter_core *c, uint64_t now_ms, uint64_t lease)
{
    struct lease *l = live_lease(c, lease, now_ms);
    if (l == NULL)
        return DCS_ENOLEASE;
    drop_lease(c, l);
    return 0;
}

int arbiter_core_lease_ttl(const struct arbiter_core *c, uint64_t now_ms, uint64_t lease,
                           uint64_t *remaining_ms)
{
    struct lease *l = live_lease(c, lease, now_ms);
    if (l == NULL)
        return DCS_ENOLEASE;
    *remaining_ms = l->expires_ms - now_ms;
    return 0;
}

static int check_key(const struct arbiter_core *c, struct slice key)
{
    if (key.len == 0)
        return -EINVAL;
    return key.len > c->lim.max_key_bytes ? TD_ETOO_BIG : 0;
}

int arbiter_core_txn(struct arbiter_core *c, uint64_t now_ms, const struct dcs_cmp *cmp,
                     size_t ncmp, const struct dcs_put *put, size_t nput, uint64_t *rev)
{
    if (ncmp > c->lim.max_txn_ops || nput > c->lim.max_txn_ops)
        return TD_ETOO_BIG;
    /* Validate the whole request first: a malformed one is refused before any compare. */
    for (size_t i = 0; i < ncmp; i++) {
        int r = check_key(c, cmp[i].key);
        if (r != 0)
            return r;
    }
    for (size_t i = 0; i < nput; i++) {
        int r = check_key(c, put[i].key);
        if (r != 0)
            return r;
        if (!put[i].del && put[i].value.len > c->lim.max_value_bytes)
            return TD_ETOO_BIG;
        for (size_t j = 0; j < i; j++)
            if (slice_eq(put[i].key, put[j].key))
                return -EINVAL;
    }
    for (size_t i = 0; i < ncmp; i++) {
        struct dcs_kv kv;
        uint64_t have = arbiter_core_get(c, cmp[i].key, &kv) ? kv.rev : 0;
        if (have != cmp[i].rev) {
            *rev = c->rev;
            return DCS_ECOMPARE;
        }
    }
    size_t nkeys = c->ne;
    for (size_t i = 0; i < nput; i++) {
        size_t idx;
        bool exists = find_key(c, put[i].key, &idx);
        if (put[i].del) {
            nkeys -= exists;
            continue;
        }
        if (put[i].lease != 0 && live_lease(c, put[i].lease, now_ms) == NULL)
            return DCS_ENOLEASE;
        nkeys += !exists;
    }
    if (nkeys > c->lim.max_keys && nkeys > c->ne)
        return TD_ETOO_BIG;
    /* Everything holds: apply at one revision. */
    uint64_t before = c->rev;
    for (size_t i = 0; i < nput; i++) {
        size_t idx;
        bool exists = find_key(c, put[i].key, &idx);
        if (put[i].del && !exists)
            continue;
        if (c->rev == before)
            c->rev++;
        if (put[i].del)
            delete_at(c, idx);
        else
            put_key(c, put[i].key, put[i].value, put[i].lease);
    }
    *rev = c->rev;
    return 0;
}

size_t arbiter_core_expire(struct arbiter_core *c, uint64_t now_ms, arbiter_core_expired_fn fn,
                           void *ud)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nl;) {
        if (c->l[i].expires_ms <= now_ms) {
            uint64_t id = c->l[i].id;
            size_t nk = drop_lease(c, &c->l[i]);
            if (fn)
                fn(ud, id, nk);
            n++;
        } else {
            i++;
        }
    }
    return n;
}

uint64_t arbiter_core_next_expiry(const struct arbiter_core *c)
{
    uint64_t m = UINT64_MAX;
    for (size_t i = 0; i < c->nl; i++)
        if (c->l[i].expires_ms < m)
            m = c->l[i].expires_ms;
    return m;
}

/* --- reads --- */

size_t arbiter_core_range(const struct arbiter_core *c, struct slice prefix, size_t *first)
{
    size_t i;
    find_key(c, prefix, &i);
    *first = i;
    size_t n = 0;
    while (i + n < c->ne && c->e[i + n].klen >= prefix.len &&
           (prefix.len == 0 || memcmp(c->e[i + n].key, prefix.p, prefix.len) == 0))
        n++;
    return n;
}

void arbiter_core_at(const struct arbiter_core *c, size_t i, struct dcs_kv *out)
{
    const struct entry *e = &c->e[i];
    out->key = slice_of(e->key, e->klen);
    out->value = slice_of(e->key + e->klen, e->vlen);
    out->rev = e->mod_rev;
    out->lease = e->lease;
}

bool arbiter_core_get(const struct arbiter_core *c, struct slice key, struct dcs_kv *out)
{
    size_t i;
    if (!find_key(c, key, &i))
        return false;
    arbiter_core_at(c, i, out);
    return true;
}

/* --- state file --- */

void arbiter_core_save(const struct arbiter_core *c, struct buf *out)
{
    size_t start = out->len;
    char h[HDR_BYTES];
    memcpy(h, MAGIC, 8);
    le_put32(h + 8, VERSION);
    le_put32(h + 12, 0);
    le_put64(h + 16, c->rev);
    le_put64(h + 24, c->next_lease);
    le_put32(h + 32, (uint32_t)c->nl);
    le_put32(h + 36, (uint32_t)c->ne);
    buf_append(out, h, sizeof(h));
    for (size_t i = 0; i < c->nl; i++) {
        char b[LEASE_BYTES];
        le_put64(b, c->l[i].id);
        le_put64(b + 8, c->l[i].ttl_ms);
        buf_append(out, b, sizeof(b));
    }
    for (size_t i = 0; i < c->ne; i++) {
        const struct entry *e = &c->e[i];
        char b[KEY_HDR_BYTES];
        le_put32(b, (uint32_t)e->klen);
        le_put32(b + 4, (uint32_t)e->vlen);
        le_put64(b + 8, e->mod_rev);
        le_put64(b + 16, e->lease);
        buf_append(out, b, sizeof(b));
        buf_append(out, e->key, e->klen + e->vlen);
    }
    char crc[4];
    le_put32(crc, crc32c(out->p + start, out->len - start));
    buf_append(out, crc, sizeof(crc));
}

int arbiter_core_load(struct arbiter_core *c, const void *p, size_t n, uint64_t now_ms)
{
    const char *s = p;
    if (n < HDR_BYTES + 4 || memcmp(s, MAGIC, 8) != 0)
        return TD_ECORRUPT;
    if (le_get32(s + n - 4) != crc32c(s, n - 4))
        return TD_ECORRUPT;
    if (le_get32(s + 8) != VERSION || le_get32(s + 12) != 0)
        return TD_ECORRUPT;
    uint64_t rev = le_get64(s + 16), next_lease = le_get64(s + 24);
    size_t nl = le_get32(s + 32), ne = le_get32(s + 36);
    size_t end = n - 4, off = HDR_BYTES;
    if (next_lease == 0 || nl > (end - off) / LEASE_BYTES)
        return TD_ECORRUPT;
    struct arbiter_core t;
    memset(&t, 0, sizeof(t));
    t.rev = rev;
    t.next_lease = next_lease;
    t.l = xmalloc((nl ? nl : 1) * sizeof(t.l[0]));
    t.cap_l = nl ? nl : 1;
    for (size_t i = 0; i < nl; i++, off += LEASE_BYTES) {
        uint64_t id = le_get64(s + off), ttl = le_get64(s + off + 8);
        if (id == 0 || id >= next_lease || (i > 0 && id <= t.l[i - 1].id) || ttl == 0 ||
            ttl > UINT64_MAX / 2)
            goto corrupt;
        t.l[t.nl++] = (struct lease){id, ttl, now_ms + ttl};
    }
    if (ne > (end - off) / KEY_HDR_BYTES)
        goto corrupt;
    t.e = xmalloc((ne ? ne : 1) * sizeof(t.e[0]));
    t.cap_e = ne ? ne : 1;
    for (size_t i = 0; i < ne; i++) {
        if (end - off < KEY_HDR_BYTES)
            goto corrupt;
        size_t klen = le_get32(s + off), vlen = le_get32(s + off + 4);
        uint64_t mod_rev = le_get64(s + off + 8), lease = le_get64(s + off + 16);
        off += KEY_HDR_BYTES;
        if (klen == 0 || klen > end - off || vlen > end - off - klen)
            goto corrupt;
        if (mod_rev == 0 || mod_rev > rev || (lease != 0 && find_lease(&t, lease) == NULL))
            goto corrupt;
        if (i > 0 && key_cmp(t.e[i - 1].key, t.e[i - 1].klen, s + off, klen) >= 0)
            goto corrupt;
        struct entry *e = &t.e[t.ne++];
        e->key = xmalloc(klen + vlen + 1);
        memcpy(e->key, s + off, klen + vlen);
        e->klen = klen;
        e->vlen = vlen;
        e->mod_rev = mod_rev;
        e->lease = lease;
        off += klen + vlen;
    }
    if (off != end)
        goto corrupt;
    free_state(c);
    c->rev = t.rev;
    c->next_lease = t.next_lease;
    c->e = t.e;
    c->ne = t.ne;
    c->cap_e = t.cap_e;
    c->l = t.l;
    c->nl = t.nl;
    c->cap_l = t.cap_l;
    return 0;
corrupt:
    free_state(&t);
    return TD_ECORRUPT;
}
