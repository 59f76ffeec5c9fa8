/* SPDX-License-Identifier: MIT */
/* coord/cluster.c -- coordinator value texts and the parsed cluster view (see cluster.h).
 * Invariant: every string in a parsed view is NUL-terminated, a valid name where it is a name,
 * and never longer than its buffer, whatever bytes the coordinator returned. */
#include "coord/cluster.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"

#define NM CLUSTER_NAME_MAX

/* s need not be NUL-terminated; len bytes are checked. */
bool cluster_name_valid(const char *s, size_t len)
{
    if (len == 0 || len >= NM)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || c == ':'))
            return false;
    }
    return true;
}

/* Set helpers: see cluster.h. Names are copied in, truncated never (callers pass valid names). */
bool cluster_names_has(const struct cluster_names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0)
            return true;
    return false;
}

void cluster_names_add(struct cluster_names *s, const char *name)
{
    if (!cluster_names_has(s, name) && s->n < CLUSTER_MAX_MEMBERS)
        snprintf(s->v[s->n++], NM, "%s", name);
}

void cluster_names_del(struct cluster_names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0) {
            memmove(s->v[i], s->v[i + 1], (s->n - i - 1) * NM);
            s->n--;
            return;
        }
}

void cluster_names_union(struct cluster_names *dst, const struct cluster_names *src)
{
    for (size_t i = 0; i < src->n; i++)
        cluster_names_add(dst, src->v[i]);
}

bool cluster_names_same(const struct cluster_names *a, const struct cluster_names *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!cluster_names_has(b, a->v[i]))
            return false;
    return true;
}

/* Asserts that the list fits cap (CLUSTER_VALUE_MAX always does). */
void cluster_names_join(const struct cluster_names *s, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < s->n; i++) {
        int n = snprintf(out + len, cap - len, "%s%s", i ? "," : "", s->v[i]);
        TD_ASSERT(n >= 0 && (size_t)n < cap - len);
        len += (size_t)n;
    }
}

/* Finds the token `key=...` in a space-separated value and copies its text, NUL-terminated, to
 * out. False when absent or when it does not fit. */
static bool kv_str(struct slice v, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key), i = 0;
    while (i < v.len) {
        while (i < v.len && v.p[i] == ' ')
            i++;
        size_t s = i;
        while (i < v.len && v.p[i] != ' ')
            i++;
        if (i - s > kl && memcmp(v.p + s, key, kl) == 0 && v.p[s + kl] == '=') {
            size_t n = i - s - kl - 1;
            if (n >= cap)
                return false;
            memcpy(out, v.p + s + kl + 1, n);
            out[n] = '\0';
            return true;
        }
    }
    return false;
}

static bool kv_u64(struct slice v, const char *key, uint64_t *out)
{
    char t[24];
    uint64_t x = 0;
    if (!kv_str(v, key, t, sizeof(t)) || t[0] == '\0')
        return false;
    for (const char *p = t; *p; p++) {
        if (*p < '0' || *p > '9' || x > (UINT64_MAX - 9) / 10)
            return false;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *out = x;
    return true;
}

/* A name-valued token: present and a valid name (or empty when allow_empty). */
static bool kv_name(struct slice v, const char *key, char *out, bool allow_empty)
{
    return kv_str(v, key, out, NM) &&
           (cluster_name_valid(out, strlen(out)) || (allow_empty && out[0] == '\0'));
}

static void parse_set(struct cluster_set *set, struct slice v, uint64_t rev)
{
    char list[CLUSTER_VALUE_MAX];
    memset(set, 0, sizeof(*set));
    set->rev = rev;
    if (!kv_name(v, "leader", set->leader, false) || !kv_u64(v, "term", &set->term) ||
        !kv_str(v, "members", list, sizeof(list)))
        goto bad;
    for (char *p = list; *p;) {
        char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (!cluster_name_valid(p, len) || set->members.n == CLUSTER_MAX_MEMBERS)
            goto bad;
        memcpy(set->members.v[set->members.n], p, len);
        set->members.v[set->members.n++][len] = '\0';
        p += len + (c != NULL);
    }
    return;
bad:
    set->leader[0] = '\0';
    set->term = 0;
    set->members.n = 0;
}

/* Overwrites v; res and its slices are borrowed for the call and nothing points into them
 * afterwards. */
void cluster_parse(struct cluster_view *v, const char *prefix, const struct dcs_result *res)
{
    memset(v, 0, sizeof(*v));
    v->rev = res->rev;
    size_t pl = strlen(prefix);
    for (size_t i = 0; i < res->nkvs; i++) {
        const struct dcs_kv *kv = &res->kvs[i];
        if (kv->key.len <= pl || memcmp(kv->key.p, prefix, pl) != 0 || kv->rev == 0)
            continue;
        struct slice k = slice_of(kv->key.p + pl, kv->key.len - pl), val = kv->value;
        if (slice_eq(k, SLICE_LIT("leader"))) {
            v->leader_rev = kv->rev;
            v->leader_lease = kv->lease;
            if (!kv_name(val, "name", v->leader, false) || !kv_u64(val, "term", &v->leader_term) ||
                !kv_name(val, "addr", v->leader_addr, false)) {
                v->leader[0] = v->leader_addr[0] = '\0';
                v->leader_term = 0;
            }
        } else if (slice_eq(k, SLICE_LIT("term"))) {
            v->term_rev = kv->rev;
            if (!kv_u64(val, "term", &v->term))
                v->term = 0;
        } else if (slice_eq(k, SLICE_LIT("sync"))) {
            parse_set(&v->sync, val, kv->rev);
        } else if (slice_eq(k, SLICE_LIT("failsafe"))) {
            parse_set(&v->failsafe, val, kv->rev);
        } else if (k.len > 8 && memcmp(k.p, "members/", 8) == 0 &&
                   v->nmembers < CLUSTER_MAX_MEMBERS && cluster_name_valid(k.p + 8, k.len - 8)) {
            struct cluster_member *m = &v->members[v->nmembers];
            uint64_t healthy = 0, prio = 0;
            memset(m, 0, sizeof(*m));
            memcpy(m->name, k.p + 8, k.len - 8);
            if (cluster_member_find(v, m->name) == NULL && kv_u64(val, "lsn", &m->lsn) &&
                kv_u64(val, "lterm", &m->last_term) && kv_u64(val, "healthy", &healthy) &&
                kv_u64(val, "prio", &prio) && prio <= UINT32_MAX &&
                kv_name(val, "addr", m->addr, false)) {
                m->healthy = healthy == 1;
                m->priority = (uint32_t)prio;
                v->nmembers++;
            }
        }
    }
}

/* Borrowed from v. */
const struct cluster_member *cluster_member_find(const struct cluster_view *v, const char *name)
{
    for (size_t i = 0; i < v->nmembers; i++)
        if (strcmp(v->members[i].name, name) == 0)
            return &v->members[i];
    return NULL;
}

/* Value writers: assert that the text fits cap (CLUSTER_VALUE_MAX always does for valid
 * names). */
void cluster_leader_value(char *out, size_t cap, const char *name, uint64_t term, const char *addr)
{
    int n = snprintf(out, cap, "name=%s term=%" PRIu64 " addr=%s", name, term, addr);
    TD_ASSERT(n >= 0 && (size_t)n < cap);
}

void cluster_term_value(char *out, size_t cap, uint64_t term)
{
    int n = snprintf(out, cap, "term=%" PRIu64, term);
    TD_ASSERT(n >= 0 && (size_t)n < cap);
}

void cluster_set_value(char *out, size_t cap, const char *leader, uint64_t term,
                       const struct cluster_names *members)
{
    char list[CLUSTER_VALUE_MAX];
    cluster_names_join(members, list, sizeof(list));
    int n = snprintf(out, cap, "leader=%s term=%" PRIu64 " members=%s", leader, term, list);
    TD_ASSERT(n >= 0 && (size_t)n < cap);
}

void cluster_member_value(char *out, size_t cap, const struct cluster_member *m, const char *role,
                          uint64_t term, const char *leader)
{
    int n = snprintf(out, cap,
                     "role=%s term=%" PRIu64 " lsn=%" PRIu64 " lterm=%" PRIu64
                     " healthy=%d prio=%" PRIu32 " addr=%s leader=%s",
                     role, term, m->lsn, m->last_term, m->healthy, m->priority, m->addr, leader);
    TD_ASSERT(n >= 0 && (size_t)n < cap);
}
