/* SPDX-License-Identifier: MIT */
/* store/keyspace.c -- the dataset's hash table and values.
 *
 * Entry layout, one malloc per key (no separate key, value or expiry objects):
 *   next (8) | flags (1) | klen, vlen (1+1, or 4+4 when WIDE) | [expiry (8)] | key | value
 * flags holds the type, EXPIRE (an expiry field is present) and WIDE. A hash value is an 8-byte
 * pointer to a struct khash in the value area. A string may be overwritten in place when the
 * allocation (malloc_usable_size) has room and the layout does not change; otherwise a new entry
 * replaces the old one in its chain. Memory accounting sums malloc_usable_size of everything
 * the dataset owns plus table arrays.
 *
 * Tables: two arrays of chains (t[0], t[1]); while rehashing, bucket rehash_idx.. of t[0] still
 * have to move to t[1]; every find/insert/delete moves one bucket, and the server's cron moves
 * more. Tables double when the load reaches 1 and shrink (from cron) below 1/8. Scans use the
 * reverse-binary cursor, which visits every bucket of either size exactly once per pass, so a
 * resize between two steps neither skips keys nor loops. */
#include "store/keyspace.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"
#include "base/siphash.h"

#define F_TYPE 0x3u
#define F_EXPIRE 0x4u
#define F_WIDE 0x8u

struct kentry {
    struct kentry *next;
    uint8_t flags;
    unsigned char d[];
};

#define ENT_BASE offsetof(struct kentry, d)
#define HT_MIN_SIZE 4u

struct htab {
    struct kentry **t[2];
    uint64_t size[2]; /* 0 or a power of two */
    uint64_t used[2];
    int64_t rehash_idx; /* -1 when not rehashing */
};

struct khash {
    uint64_t count;
    bool big;
    unsigned char *lp; /* packed: [flen][field][vlen][value]... (lengths <= 64, one byte) */
    size_t lp_len;
    struct htab ht; /* big: fields as string entries */
};

struct keyspace {
    struct htab ht;
    uint8_t seed[16];
    uint64_t nexpires;
    size_t mem;
    uint64_t expire_cursor;
    uint64_t expired;
    keyspace_expired_fn on_expired;
    void *on_expired_ud;
    bool keep_expired; /* a replica: expired keys are hidden, never removed */
};

/* --- entry layout --- */

static inline uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void wr32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline size_t e_lens(uint8_t flags)
{
    return (flags & F_WIDE) ? 8 : 2;
}

static inline size_t e_klen(const struct kentry *e)
{
    return (e->flags & F_WIDE) ? rd32(e->d) : e->d[0];
}

static inline size_t e_vlen(const struct kentry *e)
{
    return (e->flags & F_WIDE) ? rd32(e->d + 4) : e->d[1];
}

static inline void e_set_vlen(struct kentry *e, size_t vlen)
{
    if (e->flags & F_WIDE)
        wr32(e->d + 4, (uint32_t)vlen);
    else
        e->d[1] = (unsigned char)vlen;
}

static inline size_t e_key_off(uint8_t flags)
{
    return e_lens(flags) + ((flags & F_EXPIRE) ? 8 : 0);
}

static inline unsigned char *e_key(const struct kentry *e)
{
    return (unsigned char *)e->d + e_key_off(e->flags);
}

static inline unsigned char *e_val(const struct kentry *e)
{
    return e_key(e) + e_klen(e);
}

static inline size_t ent_size(uint8_t flags, size_t klen, size_t vlen)
{
    return ENT_BASE + e_key_off(flags) + klen + vlen;
}

static inline bool is_wide(size_t klen, size_t vlen)
{
    return klen > 255 || vlen > 255;
}

static inline int64_t e_expire(const struct kentry *e)
{
    if (!(e->flags & F_EXPIRE))
        return KEYSPACE_NO_EXPIRE;
    int64_t v;
    memcpy(&v, e->d + e_lens(e->flags), 8);
    return v;
}

static inline void e_set_expire(struct kentry *e, int64_t v)
{
    memcpy(e->d + e_lens(e->flags), &v, 8);
}

static inline size_t usable(const void *p)
{
    return malloc_usable_size((void *)p);
}

/* Allocates an entry with room for at least cap bytes (0: exact) and fills key, expiry and the
 * first vlen bytes of value (val may be NULL to leave them uninitialised). */
static struct kentry *ent_new(unsigned type, struct slice key, const void *val, size_t vlen,
                              int64_t expire_ms, size_t cap)
{
    TD_ASSERT(key.len <= UINT32_MAX && vlen <= UINT32_MAX);
    uint8_t flags = (uint8_t)type;
    if (expire_ms >= 0)
        flags |= F_EXPIRE;
    if (is_wide(key.len, vlen) || cap > ent_size(flags, key.len, 255))
        flags |= F_WIDE;
    size_t need = ent_size(flags, key.len, vlen);
    struct kentry *e = xmalloc(cap > need ? cap : need);
    e->next = NULL;
    e->flags = flags;
    if (flags & F_WIDE) {
        wr32(e->d, (uint32_t)key.len);
        wr32(e->d + 4, (uint32_t)vlen);
    } else {
        e->d[0] = (unsigned char)key.len;
        e->d[1] = (unsigned char)vlen;
    }
    if (flags & F_EXPIRE)
        e_set_expire(e, expire_ms);
    if (key.len)
        memcpy(e_key(e), key.p, key.len);
    if (val && vlen)
        memcpy(e_val(e), val, vlen);
    return e;
}

static inline struct khash *e_hash(const struct kentry *e)
{
    struct khash *h;
    memcpy(&h, e_val(e), sizeof(h));
    return h;
}

static void khash_destroy(struct keyspace *ks, struct khash *h);

/* Frees e and, when owned is true, the hash it points to. Adjusts accounting unless ks is
 * NULL. */
static void ent_free(struct keyspace *ks, struct kentry *e, bool owned)
{
    if (owned && (e->flags & F_TYPE) == KEYSPACE_HASH)
        khash_destroy(ks, e_hash(e));
    if (ks) {
        ks->mem -= usable(e);
        if (e->flags & F_EXPIRE)
            ks->nexpires--;
    }
    free(e);
}

/* --- hash table --- */

static inline uint64_t hash_key(const uint8_t *seed, const void *p, size_t len)
{
    return siphash13(seed, p, len);
}

static inline bool key_eq(const struct kentry *e, struct slice key)
{
    return e_klen(e) == key.len && memcmp(e_key(e), key.p, key.len) == 0;
}

static void ht_init(struct htab *ht)
{
    memset(ht, 0, sizeof(*ht));
    ht->rehash_idx = -1;
}

static inline bool ht_rehashing(const struct htab *ht)
{
    return ht->rehash_idx >= 0;
}

static inline uint64_t ht_used(const struct htab *ht)
{
    return ht->used[0] + ht->used[1];
}

/* Moves up to n non-empty buckets from t[0] to t[1], visiting at most 10n empty ones. */
static bool ht_rehash(struct htab *ht, const uint8_t *seed, uint64_t n, size_t *mem)
{
    uint64_t empty_visits = n * 10;
    if (!ht_rehashing(ht))
        return false;
    while (n-- && ht->used[0] != 0) {
        while (ht->t[0][ht->rehash_idx] == NULL) {
            ht->rehash_idx++;
            if (--empty_visits == 0)
                return true;
        }
        struct kentry *e = ht->t[0][ht->rehash_idx];
        uint64_t mask1 = ht->size[1] - 1;
        while (e) {
            struct kentry *next = e->next;
            uint64_t b = hash_key(seed, e_key(e), e_klen(e)) & mask1;
            e->next = ht->t[1][b];
            ht->t[1][b] = e;
            ht->used[0]--;
            ht->used[1]++;
            e = next;
        }
        ht->t[0][ht->rehash_idx] = NULL;
        ht->rehash_idx++;
    }
    if (ht->used[0] == 0) {
        *mem -= ht->size[0] * sizeof(struct kentry *);
        free(ht->t[0]);
        ht->t[0] = ht->t[1];
        ht->size[0] = ht->size[1];
        ht->used[0] = ht->used[1];
        ht->t[1] = NULL;
        ht->size[1] = 0;
        ht->used[1] = 0;
        ht->rehash_idx = -1;
        return false;
    }
    return true;
}

static uint64_t next_pow2(uint64_t n)
{
    uint64_t s = HT_MIN_SIZE;
    while (s < n)
        s *= 2;
    return s;
}

/* Starts a resize to the power of two >= n (no-op while rehashing or when equal). */
static void ht_resize(struct htab *ht, uint64_t n, size_t *mem)
{
    if (ht_rehashing(ht))
        return;
    uint64_t size = next_pow2(n);
    if (size == ht->size[0])
        return;
    struct kentry **t = xcalloc(size, sizeof(*t));
    *mem += size * sizeof(*t);
    if (ht->size[0] == 0) {
        ht->t[0] = t;
        ht->size[0] = size;
        return;
    }
    ht->t[1] = t;
    ht->size[1] = size;
    ht->used[1] = 0;
    ht->rehash_idx = 0;
}

/* Returns the link that points at the entry for key (NULL when absent); *tbl gets its table. */
static struct kentry **ht_find_slot(struct htab *ht, uint64_t h, struct slice key, int *tbl)
{
    for (int i = 0; i <= 1; i++) {
        if (ht->size[i] == 0)
            continue;
        uint64_t b = h & (ht->size[i] - 1);
        if (i == 0 && ht_rehashing(ht) && (int64_t)b < ht->rehash_idx)
            continue; /* already moved */
        struct kentry **pp = &ht->t[i][b];
        while (*pp) {
            if (key_eq(*pp, key)) {
                *tbl = i;
                return pp;
            }
            pp = &(*pp)->next;
        }
        if (!ht_rehashing(ht))
            break;
    }
    return NULL;
}

/* Links e (whose key is absent) at the head of its bucket, growing the table first if full. */
static void ht_insert(struct htab *ht, const uint8_t *seed, struct kentry *e, uint64_t h,
                      size_t *mem)
{
    if (!ht_rehashing(ht) && ht->used[0] >= ht->size[0])
        ht_resize(ht, ht->size[0] ? ht->size[0] * 2 : HT_MIN_SIZE, mem);
    if (ht_rehashing(ht))
        ht_rehash(ht, seed, 1, mem);
    int i = ht_rehashing(ht) ? 1 : 0;
    uint64_t b = h & (ht->size[i] - 1);
    e->next = ht->t[i][b];
    ht->t[i][b] = e;
    ht->used[i]++;
}

static inline uint64_t rev64(uint64_t v)
{
    v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
    v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
    v = ((v >> 4) & 0x0F0F0F0F0F0F0F0FULL) | ((v & 0x0F0F0F0F0F0F0F0FULL) << 4);
    return __builtin_bswap64(v);
}

/* Advances a reverse-binary cursor over a table of mask+1 buckets. */
static inline uint64_t cursor_next(uint64_t v, uint64_t mask)
{
    v |= ~mask;
    v = rev64(v);
    v++;
    return rev64(v);
}

/* Calls fn on the head link of every bucket the cursor designates and returns the next cursor.
 * fn may unlink entries of that chain (it gets the table index for accounting). */
typedef void (*bucket_fn)(void *ud, struct htab *ht, int tbl, struct kentry **head);

static uint64_t ht_scan(struct htab *ht, uint64_t v, bucket_fn fn, void *ud)
{
    if (ht_used(ht) == 0 || ht->size[0] == 0)
        return 0;
    if (!ht_rehashing(ht)) {
        uint64_t m0 = ht->size[0] - 1;
        fn(ud, ht, 0, &ht->t[0][v & m0]);
        return cursor_next(v, m0);
    }
    int small = ht->size[0] <= ht->size[1] ? 0 : 1, large = 1 - small;
    uint64_t ms = ht->size[small] - 1, ml = ht->size[large] - 1;
    /* Buckets of t[0] below rehash_idx are empty, so visiting them is harmless. */
    fn(ud, ht, small, &ht->t[small][v & ms]);
    do {
        fn(ud, ht, large, &ht->t[large][v & ml]);
        v = cursor_next(v, ml);
    } while (v & (ms ^ ml));
    return v;
}

static void ht_free_entries(struct keyspace *ks, struct htab *ht, bool account)
{
    for (int i = 0; i <= 1; i++) {
        for (uint64_t b = 0; b < ht->size[i]; b++) {
            struct kentry *e = ht->t[i][b];
            while (e) {
                struct kentry *next = e->next;
                ent_free(account ? ks : NULL, e, true);
                e = next;
            }
        }
        if (account)
            ks->mem -= ht->size[i] * sizeof(struct kentry *);
        free(ht->t[i]);
    }
    ht_init(ht);
}

/* --- keyspace --- */

struct keyspace *keyspace_new(const uint8_t seed[16])
{
    struct keyspace *ks = xcalloc(1, sizeof(*ks));
    ht_init(&ks->ht);
    memcpy(ks->seed, seed, 16);
    return ks;
}

void keyspace_free(struct keyspace *ks)
{
    if (ks == NULL)
        return;
    ht_free_entries(ks, &ks->ht, false);
    free(ks);
}

void keyspace_set_expired_hook(struct keyspace *ks, keyspace_expired_fn fn, void *ud)
{
    ks->on_expired = fn;
    ks->on_expired_ud = ud;
}

void keyspace_set_keep_expired(struct keyspace *ks, bool keep)
{
    ks->keep_expired = keep;
}

bool keyspace_is_expired(const struct kentry *e, int64_t now_ms)
{
    if (now_ms <= 0 || !(e->flags & F_EXPIRE))
        return false;
    return now_ms > e_expire(e);
}

/* Unlinks the entry at *slot of table tbl and frees it. */
static void unlink_free(struct keyspace *ks, struct htab *ht, int tbl, struct kentry **slot)
{
    struct kentry *e = *slot;
    *slot = e->next;
    ht->used[tbl]--;
    ent_free(ks, e, true);
}

static void expire_entry(struct keyspace *ks, struct htab *ht, int tbl, struct kentry **slot)
{
    struct kentry *e = *slot;
    if (ks->on_expired)
        ks->on_expired(ks->on_expired_ud, (struct slice){(const char *)e_key(e), e_klen(e)});
    ks->expired++;
    unlink_free(ks, ht, tbl, slot);
}

struct kentry *keyspace_find(struct keyspace *ks, struct slice key, int64_t now_ms)
{
    if (ht_used(&ks->ht) == 0)
        return NULL;
    if (ht_rehashing(&ks->ht))
        ht_rehash(&ks->ht, ks->seed, 1, &ks->mem);
    int tbl;
    struct kentry **slot = ht_find_slot(&ks->ht, hash_key(ks->seed, key.p, key.len), key, &tbl);
    if (slot == NULL)
        return NULL;
    if (keyspace_is_expired(*slot, now_ms)) {
        if (!ks->keep_expired)
            expire_entry(ks, &ks->ht, tbl, slot);
        return NULL;
    }
    return *slot;
}

enum keyspace_type kentry_type(const struct kentry *e)
{
    return (enum keyspace_type)(e->flags & F_TYPE);
}

struct slice kentry_key(const struct kentry *e)
{
    return (struct slice){(const char *)e_key(e), e_klen(e)};
}

struct slice kentry_str(const struct kentry *e)
{
    return (struct slice){(const char *)e_val(e), e_vlen(e)};
}

int64_t kentry_expire(const struct kentry *e)
{
    return e_expire(e);
}

struct khash *kentry_hash(const struct kentry *e)
{
    TD_ASSERT(kentry_type(e) == KEYSPACE_HASH);
    return e_hash(e);
}

/* Puts fresh entry e in place of the one at *slot (same key), freeing the old one; the old
 * entry's hash is freed only when owned_old is true. */
static void replace_at(struct keyspace *ks, struct kentry **slot, struct kentry *e, bool owned_old)
{
    struct kentry *old = *slot;
    e->next = old->next;
    *slot = e;
    ks->mem += usable(e);
    if (e->flags & F_EXPIRE)
        ks->nexpires++;
    ent_free(ks, old, owned_old);
}

static void insert_new(struct keyspace *ks, struct kentry *e, uint64_t h)
{
    ks->mem += usable(e);
    if (e->flags & F_EXPIRE)
        ks->nexpires++;
    ht_insert(&ks->ht, ks->seed, e, h, &ks->mem);
}

struct kentry *keyspace_set_str(struct keyspace *ks, struct slice key, struct slice val,
                                int64_t expire_ms)
{
    uint64_t h = hash_key(ks->seed, key.p, key.len);
    if (ht_rehashing(&ks->ht))
        ht_rehash(&ks->ht, ks->seed, 1, &ks->mem);
    int tbl;
    struct kentry **slot = ht_find_slot(&ks->ht, h, key, &tbl);
    if (slot == NULL) {
        struct kentry *e =
            ent_new(KEYSPACE_STRING, key, val.p, val.len,
                    expire_ms == KEYSPACE_KEEP_TTL ? KEYSPACE_NO_EXPIRE : expire_ms, 0);
        insert_new(ks, e, h);
        return e;
    }
    struct kentry *old = *slot;
    if (expire_ms == KEYSPACE_KEEP_TTL)
        expire_ms = e_expire(old);
    bool old_exp = (old->flags & F_EXPIRE) != 0, new_exp = expire_ms >= 0;
    if ((old->flags & F_TYPE) == KEYSPACE_STRING && old_exp == new_exp &&
        ((old->flags & F_WIDE) != 0 || val.len <= 255)) {
        size_t need = ent_size(old->flags, key.len, val.len), have = usable(old);
        /* Overwrite in place when it fits without wasting more than half the block. */
        if (need <= have && have <= 2 * need + 64) {
            memcpy(e_val(old), val.p, val.len);
            e_set_vlen(old, val.len);
            if (new_exp)
                e_set_expire(old, expire_ms);
            return old;
        }
    }
    struct kentry *e = ent_new(KEYSPACE_STRING, key, val.p, val.len, expire_ms, 0);
    replace_at(ks, slot, e, true);
    return e;
}

struct kentry *keyspace_append(struct keyspace *ks, struct slice key, struct slice suffix)
{
    int tbl;
    struct kentry **slot = ht_find_slot(&ks->ht, hash_key(ks->seed, key.p, key.len), key, &tbl);
    TD_ASSERT(slot && kentry_type(*slot) == KEYSPACE_STRING);
    struct kentry *old = *slot;
    size_t vlen = e_vlen(old), nlen = vlen + suffix.len;
    TD_ASSERT(nlen <= UINT32_MAX);
    size_t need = ent_size(old->flags, key.len, nlen);
    bool width_ok = (old->flags & F_WIDE) || !is_wide(key.len, nlen);
    if (width_ok && need <= usable(old)) {
        memcpy(e_val(old) + vlen, suffix.p, suffix.len);
        e_set_vlen(old, nlen);
        return old;
    }
    size_t cap = need < (1u << 20) ? need * 2 : need + (1u << 20);
    if (width_ok) {
        ks->mem -= usable(old);
        struct kentry *e = xrealloc(old, cap);
        ks->mem += usable(e);
        *slot = e;
        memcpy(e_val(e) + vlen, suffix.p, suffix.len);
        e_set_vlen(e, nlen);
        return e;
    }
    struct kentry *e = ent_new(KEYSPACE_STRING, key, NULL, nlen, e_expire(old), cap);
    memcpy(e_val(e), e_val(old), vlen);
    memcpy(e_val(e) + vlen, suffix.p, suffix.len);
    replace_at(ks, slot, e, true);
    return e;
}

bool keyspace_set_expire(struct keyspace *ks, struct slice key, int64_t expire_ms)
{
    int tbl;
    struct kentry **slot = ht_find_slot(&ks->ht, hash_key(ks->seed, key.p, key.len), key, &tbl);
    if (slot == NULL)
        return false;
    struct kentry *old = *slot;
    bool has = (old->flags & F_EXPIRE) != 0;
    if (expire_ms >= 0 && has) {
        e_set_expire(old, expire_ms);
        return true;
    }
    if (expire_ms < 0 && !has)
        return true;
    /* The layout changes: copy into a new entry; a hash pointer moves with it. */
    struct kentry *e = ent_new(old->flags & F_TYPE, key, e_val(old), e_vlen(old),
                               expire_ms < 0 ? KEYSPACE_NO_EXPIRE : expire_ms, 0);
    replace_at(ks, slot, e, false);
    return true;
}

static struct khash *khash_create(struct keyspace *ks)
{
    struct khash *h = xcalloc(1, sizeof(*h));
    ht_init(&h->ht);
    ks->mem += usable(h);
    return h;
}

struct kentry *keyspace_add_hash(struct keyspace *ks, struct slice key)
{
    struct khash *h = khash_create(ks);
    struct kentry *e = ent_new(KEYSPACE_HASH, key, &h, sizeof(h), KEYSPACE_NO_EXPIRE, 0);
    insert_new(ks, e, hash_key(ks->seed, key.p, key.len));
    return e;
}

int keyspace_del(struct keyspace *ks, struct slice key)
{
    if (ht_used(&ks->ht) == 0)
        return 0;
    if (ht_rehashing(&ks->ht))
        ht_rehash(&ks->ht, ks->seed, 1, &ks->mem);
    int tbl;
    struct kentry **slot = ht_find_slot(&ks->ht, hash_key(ks->seed, key.p, key.len), key, &tbl);
    if (slot == NULL)
        return 0;
    unlink_free(ks, &ks->ht, tbl, slot);
    return 1;
}

void keyspace_flush(struct keyspace *ks)
{
    ht_free_entries(ks, &ks->ht, true);
    ks->expire_cursor = 0;
}

void keyspace_reserve(struct keyspace *ks, uint64_t n)
{
    struct htab *ht = &ks->ht;
    if (n > KEYSPACE_RESERVE_MAX)
        n = KEYSPACE_RESERVE_MAX; /* a hint, not a promise: never a table the size of memory */
    if (ht_rehashing(ht) || n <= ht->size[0])
        return;
    ht_resize(ht, n, &ks->mem);
    while (ht_rehash(ht, ks->seed, 1024, &ks->mem))
        ;
}

uint64_t keyspace_size(const struct keyspace *ks)
{
    return ht_used(&ks->ht);
}

uint64_t keyspace_expires(const struct keyspace *ks)
{
    return ks->nexpires;
}

size_t keyspace_mem(const struct keyspace *ks)
{
    return ks->mem;
}

uint64_t keyspace_expired_total(const struct keyspace *ks)
{
    return ks->expired;
}

uint64_t keyspace_buckets(const struct keyspace *ks)
{
    return ks->ht.size[0] + ks->ht.size[1];
}

bool keyspace_is_rehashing(const struct keyspace *ks)
{
    return ht_rehashing(&ks->ht);
}

struct visit_ctx {
    keyspace_visit_fn fn;
    void *ud;
};

static void visit_bucket(void *ud, struct htab *ht, int tbl, struct kentry **head)
{
    (void)ht;
    (void)tbl;
    struct visit_ctx *v = ud;
    for (struct kentry *e = *head; e; e = e->next)
        v->fn(v->ud, e);
}

uint64_t keyspace_scan(struct keyspace *ks, uint64_t cursor, keyspace_visit_fn fn, void *ud)
{
    struct visit_ctx v = {fn, ud};
    return ht_scan(&ks->ht, cursor, visit_bucket, &v);
}

int keyspace_foreach(const struct keyspace *ks, keyspace_visit_fn fn, void *ud)
{
    for (int i = 0; i <= 1; i++) {
        for (uint64_t b = 0; b < ks->ht.size[i]; b++) {
            for (struct kentry *e = ks->ht.t[i][b]; e; e = e->next) {
                int rc = fn(ud, e);
                if (rc)
                    return rc;
            }
        }
    }
    return 0;
}

struct expire_ctx {
    struct keyspace *ks;
    int64_t now;
    uint64_t removed;
};

static void expire_bucket(void *ud, struct htab *ht, int tbl, struct kentry **head)
{
    struct expire_ctx *x = ud;
    struct kentry **pp = head;
    while (*pp) {
        if (keyspace_is_expired(*pp, x->now)) {
            expire_entry(x->ks, ht, tbl, pp);
            x->removed++;
        } else {
            pp = &(*pp)->next;
        }
    }
}

uint64_t keyspace_expire_cycle(struct keyspace *ks, int64_t now_ms, uint64_t max_steps,
                               bool *wrapped)
{
    struct expire_ctx x = {ks, now_ms, 0};
    *wrapped = false;
    if (now_ms <= 0 || ks->keep_expired)
        return 0;
    while (max_steps-- && ks->nexpires > 0) {
        ks->expire_cursor = ht_scan(&ks->ht, ks->expire_cursor, expire_bucket, &x);
        if (ks->expire_cursor == 0) {
            *wrapped = true;
            break;
        }
    }
    if (ks->nexpires == 0)
        *wrapped = true;
    return x.removed;
}

bool keyspace_rehash(struct keyspace *ks, uint64_t steps)
{
    return ht_rehash(&ks->ht, ks->seed, steps, &ks->mem);
}

static void ht_maybe_shrink(struct htab *ht, size_t *mem)
{
    uint64_t used = ht_used(ht);
    if (ht_rehashing(ht) || ht->size[0] <= HT_MIN_SIZE || used * 8 >= ht->size[0])
        return;
    ht_resize(ht, used, mem);
}

void keyspace_maybe_shrink(struct keyspace *ks)
{
    ht_maybe_shrink(&ks->ht, &ks->mem);
}

/* --- hash values --- */

/* Frees h and its fields; ks NULL skips accounting (whole-keyspace teardown). */
static void khash_destroy(struct keyspace *ks, struct khash *h)
{
    if (h->big) {
        ht_free_entries(ks, &h->ht, ks != NULL);
    } else if (h->lp) {
        if (ks)
            ks->mem -= usable(h->lp);
        free(h->lp);
    }
    if (ks)
        ks->mem -= usable(h);
    free(h);
}

uint64_t khash_len(const struct khash *h)
{
    return h->count;
}

bool khash_is_packed(const struct khash *h)
{
    return !h->big;
}

/* Offset of field in the packed array, or -1. */
static ssize_t lp_find(const struct khash *h, struct slice field)
{
    size_t i = 0;
    while (i < h->lp_len) {
        size_t fl = h->lp[i];
        size_t vl = h->lp[i + 1 + fl];
        if (fl == field.len && memcmp(h->lp + i + 1, field.p, fl) == 0)
            return (ssize_t)i;
        i += 2 + fl + vl;
    }
    return -1;
}

bool khash_get(const struct keyspace *ks, const struct khash *h, struct slice field,
               struct slice *val)
{
    if (h->big) {
        int tbl;
        struct kentry **slot = ht_find_slot((struct htab *)&h->ht,
                                            hash_key(ks->seed, field.p, field.len), field, &tbl);
        if (slot == NULL)
            return false;
        *val = kentry_str(*slot);
        return true;
    }
    ssize_t at = lp_find(h, field);
    if (at < 0)
        return false;
    size_t fl = h->lp[at];
    val->len = h->lp[at + 1 + (ssize_t)fl];
    val->p = (const char *)h->lp + at + 2 + (ssize_t)fl;
    return true;
}

static void lp_reserve(struct keyspace *ks, struct khash *h, size_t len)
{
    size_t have = h->lp ? usable(h->lp) : 0;
    if (len <= have)
        return;
    size_t cap = len < 64 ? 64 : len + len / 2;
    ks->mem -= have;
    h->lp = xrealloc(h->lp, cap);
    ks->mem += usable(h->lp);
}

static void big_insert(struct keyspace *ks, struct khash *h, struct slice field, struct slice val)
{
    struct kentry *e = ent_new(KEYSPACE_STRING, field, val.p, val.len, KEYSPACE_NO_EXPIRE, 0);
    ks->mem += usable(e);
    ht_insert(&h->ht, ks->seed, e, hash_key(ks->seed, field.p, field.len), &ks->mem);
}

/* Converts a packed hash to a table. */
static void khash_convert(struct keyspace *ks, struct khash *h)
{
    unsigned char *lp = h->lp;
    size_t len = h->lp_len;
    ht_init(&h->ht);
    h->big = true;
    ht_resize(&h->ht, h->count + 1, &ks->mem);
    size_t i = 0;
    while (i < len) {
        size_t fl = lp[i], vl = lp[i + 1 + fl];
        struct slice f = {(const char *)lp + i + 1, fl};
        struct slice v = {(const char *)lp + i + 2 + fl, vl};
        big_insert(ks, h, f, v);
        i += 2 + fl + vl;
    }
    if (lp) {
        ks->mem -= usable(lp);
        free(lp);
    }
    h->lp = NULL;
    h->lp_len = 0;
}

int khash_set(struct keyspace *ks, struct khash *h, struct slice field, struct slice val)
{
    if (!h->big) {
        ssize_t at = lp_find(h, field);
        bool fits =
            field.len <= KEYSPACE_HASH_PACKED_VALUE && val.len <= KEYSPACE_HASH_PACKED_VALUE;
        if (at >= 0 && fits) {
            size_t fl = h->lp[at], vl = h->lp[at + 1 + (ssize_t)fl];
            size_t voff = (size_t)at + 2 + fl;
            if (vl != val.len) {
                size_t tail = h->lp_len - (voff + vl);
                if (val.len > vl)
                    lp_reserve(ks, h, h->lp_len + val.len - vl);
                memmove(h->lp + voff + val.len, h->lp + voff + vl, tail);
                h->lp_len = h->lp_len + val.len - vl;
                h->lp[voff - 1] = (unsigned char)val.len;
            }
            if (val.len)
                memcpy(h->lp + voff, val.p, val.len);
            return 0;
        }
        if (at < 0 && fits && h->count < KEYSPACE_HASH_PACKED_ENTRIES) {
            size_t add = 2 + field.len + val.len;
            lp_reserve(ks, h, h->lp_len + add);
            unsigned char *o = h->lp + h->lp_len;
            o[0] = (unsigned char)field.len;
            if (field.len)
                memcpy(o + 1, field.p, field.len);
            o[1 + field.len] = (unsigned char)val.len;
            if (val.len)
                memcpy(o + 2 + field.len, val.p, val.len);
            h->lp_len += add;
            h->count++;
            return 1;
        }
        khash_convert(ks, h);
    }
    if (ht_rehashing(&h->ht))
        ht_rehash(&h->ht, ks->seed, 1, &ks->mem);
    uint64_t hv = hash_key(ks->seed, field.p, field.len);
    int tbl;
    struct kentry **slot = ht_find_slot(&h->ht, hv, field, &tbl);
    if (slot) {
        struct kentry *old = *slot;
        size_t need = ent_size(old->flags, field.len, val.len), have = usable(old);
        if (((old->flags & F_WIDE) || val.len <= 255) && need <= have && have <= 2 * need + 64) {
            memcpy(e_val(old), val.p, val.len);
            e_set_vlen(old, val.len);
            return 0;
        }
        struct kentry *e = ent_new(KEYSPACE_STRING, field, val.p, val.len, KEYSPACE_NO_EXPIRE, 0);
        replace_at(ks, slot, e, true);
        return 0;
    }
    struct kentry *e = ent_new(KEYSPACE_STRING, field, val.p, val.len, KEYSPACE_NO_EXPIRE, 0);
    ks->mem += usable(e);
    ht_insert(&h->ht, ks->seed, e, hv, &ks->mem);
    h->count++;
    return 1;
}

bool khash_del(struct keyspace *ks, struct khash *h, struct slice field)
{
    if (!h->big) {
        ssize_t at = lp_find(h, field);
        if (at < 0)
            return false;
        size_t fl = h->lp[at], vl = h->lp[at + 1 + (ssize_t)fl];
        size_t n = 2 + fl + vl;
        memmove(h->lp + at, h->lp + at + (ssize_t)n, h->lp_len - (size_t)at - n);
        h->lp_len -= n;
        h->count--;
        return true;
    }
    if (ht_rehashing(&h->ht))
        ht_rehash(&h->ht, ks->seed, 1, &ks->mem);
    int tbl;
    struct kentry **slot =
        ht_find_slot(&h->ht, hash_key(ks->seed, field.p, field.len), field, &tbl);
    if (slot == NULL)
        return false;
    unlink_free(ks, &h->ht, tbl, slot);
    h->count--;
    ht_maybe_shrink(&h->ht, &ks->mem);
    return true;
}

void khash_foreach(const struct khash *h, khash_visit_fn fn, void *ud)
{
    if (!h->big) {
        size_t i = 0;
        while (i < h->lp_len) {
            size_t fl = h->lp[i], vl = h->lp[i + 1 + fl];
            fn(ud, (struct slice){(const char *)h->lp + i + 1, fl},
               (struct slice){(const char *)h->lp + i + 2 + fl, vl});
            i += 2 + fl + vl;
        }
        return;
    }
    for (int t = 0; t <= 1; t++)
        for (uint64_t b = 0; b < h->ht.size[t]; b++)
            for (struct kentry *e = h->ht.t[t][b]; e; e = e->next)
                fn(ud, kentry_key(e), kentry_str(e));
}

/* --- glob matching --- */

static inline unsigned char fold(unsigned char c, bool nocase)
{
    return (nocase && c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Matches one non-'*' pattern token at p[*pi] against c; advances *pi past the token. */
static bool match_token(const char *p, size_t plen, size_t *pi, unsigned char c, bool nocase)
{
    size_t i = *pi;
    unsigned char fc = fold(c, nocase);
    if (p[i] == '?') {
        *pi = i + 1;
        return true;
    }
    if (p[i] == '[') {
        i++;
        bool neg = false, hit = false;
        if (i < plen && p[i] == '^') {
            neg = true;
            i++;
        }
        for (;;) {
            if (i >= plen)
                break; /* unterminated class: ends with the pattern, as in Redis */
            if (p[i] == '\\' && i + 1 < plen) {
                if (fold((unsigned char)p[i + 1], nocase) == fc)
                    hit = true;
                i += 2;
            } else if (p[i] == ']') {
                i++;
                break;
            } else if (i + 2 < plen && p[i + 1] == '-') {
                unsigned char a = fold((unsigned char)p[i], nocase);
                unsigned char b = fold((unsigned char)p[i + 2], nocase);
                if (a > b) {
                    unsigned char t = a;
                    a = b;
                    b = t;
                }
                if (fc >= a && fc <= b)
                    hit = true;
                i += 3;
            } else {
                if (fold((unsigned char)p[i], nocase) == fc)
                    hit = true;
                i++;
            }
        }
        *pi = i;
        return neg ? !hit : hit;
    }
    if (p[i] == '\\' && i + 1 < plen)
        i++;
    *pi = i + 1;
    return fold((unsigned char)p[i], nocase) == fc;
}

bool keyspace_glob_match(struct slice pattern, struct slice s, bool nocase)
{
    const char *p = pattern.p;
    size_t plen = pattern.len, pi = 0, si = 0;
    size_t star_pi = SIZE_MAX, star_si = 0;
    while (si < s.len) {
        if (pi < plen && p[pi] == '*') {
            while (pi < plen && p[pi] == '*')
                pi++;
            if (pi == plen)
                return true;
            star_pi = pi;
            star_si = si;
            continue;
        }
        size_t next = pi;
        if (pi < plen && match_token(p, plen, &next, (unsigned char)s.p[si], nocase)) {
            pi = next;
            si++;
            continue;
        }
        if (star_pi == SIZE_MAX)
            return false;
        pi = star_pi;
        si = ++star_si;
    }
    while (pi < plen && p[pi] == '*')
        pi++;
    return pi == plen;
}
