/* SPDX-License-Identifier: MIT */
/* store/watch.c -- the WATCH table (store/watch.h).
 *
 * Layout: buckets of singly linked key entries; each entry heads an intrusive list of links,
 * one per watcher of that key; each watcher holds an array of its links. A link therefore sits
 * in two places (its key's list and its watcher's array) and is freed by watch_clear(). An
 * entry whose last link goes is unlinked from its bucket and freed, so the table only ever holds
 * keys someone watches. */
#include "store/watch.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"
#include "base/list.h"
#include "base/siphash.h"

struct watch_key {
    struct watch_key *next; /* bucket chain */
    uint64_t hash;
    struct list watchers; /* of struct watch_link.in_key */
    size_t nwatchers;
    size_t len;
    char key[];
};

struct watch_link {
    struct list in_key;
    struct watch_key *k;
    struct watcher *w;
};

struct watch {
    uint8_t seed[16];
    struct watch_key **b;
    size_t nb; /* power of two, or 0 before the first key */
    size_t n;  /* entries */
};

struct watch *watch_new(const uint8_t seed[16])
{
    struct watch *t = xcalloc(1, sizeof(*t));
    memcpy(t->seed, seed, sizeof(t->seed));
    return t;
}

void watch_free(struct watch *t)
{
    if (t == NULL)
        return;
    TD_ASSERT(t->n == 0);
    free(t->b);
    free(t);
}

static void grow(struct watch *t)
{
    size_t nb = t->nb ? t->nb * 2 : 8;
    struct watch_key **b = xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < t->nb; i++) {
        struct watch_key *k = t->b[i];
        while (k) {
            struct watch_key *next = k->next;
            size_t j = k->hash & (nb - 1);
            k->next = b[j];
            b[j] = k;
            k = next;
        }
    }
    free(t->b);
    t->b = b;
    t->nb = nb;
}

static struct watch_key *find(const struct watch *t, struct slice key, uint64_t h)
{
    if (t->nb == 0)
        return NULL;
    for (struct watch_key *k = t->b[h & (t->nb - 1)]; k; k = k->next)
        if (k->hash == h && k->len == key.len && memcmp(k->key, key.p, key.len) == 0)
            return k;
    return NULL;
}

static bool watches(const struct watcher *w, const struct watch_key *k)
{
    /* Scan whichever side is shorter: the watcher's keys or the key's watchers. */
    if (w->nlinks <= k->nwatchers) {
        for (size_t i = 0; i < w->nlinks; i++)
            if (w->links[i]->k == k)
                return true;
        return false;
    }
    struct list *pos;
    list_for_each(pos, &k->watchers)
    {
        if (container_of(pos, struct watch_link, in_key)->w == w)
            return true;
    }
    return false;
}

void watch_add(struct watch *t, struct watcher *w, struct slice key)
{
    TD_ASSERT(w->table == NULL || w->table == t);
    uint64_t h = siphash13(t->seed, key.p, key.len);
    struct watch_key *k = find(t, key, h);
    if (k && watches(w, k))
        return;
    if (k == NULL) {
        if (t->n >= t->nb)
            grow(t);
        k = xmalloc(sizeof(*k) + key.len);
        k->hash = h;
        k->len = key.len;
        if (key.len)
            memcpy(k->key, key.p, key.len);
        list_init(&k->watchers);
        k->nwatchers = 0;
        size_t j = h & (t->nb - 1);
        k->next = t->b[j];
        t->b[j] = k;
        t->n++;
    }
    struct watch_link *l = xmalloc(sizeof(*l));
    l->k = k;
    l->w = w;
    list_append(&k->watchers, &l->in_key);
    k->nwatchers++;
    if (w->nlinks == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 4;
        w->links = xrealloc(w->links, w->cap * sizeof(*w->links));
    }
    w->links[w->nlinks++] = l;
    w->table = t;
}

static void unlink_key(struct watch *t, struct watch_key *k)
{
    struct watch_key **pp = &t->b[k->hash & (t->nb - 1)];
    while (*pp != k)
        pp = &(*pp)->next;
    *pp = k->next;
    t->n--;
    free(k);
}

void watch_clear(struct watcher *w)
{
    struct watch *t = w->table;
    for (size_t i = 0; i < w->nlinks; i++) {
        struct watch_link *l = w->links[i];
        struct watch_key *k = l->k;
        list_remove(&l->in_key);
        free(l);
        if (--k->nwatchers == 0)
            unlink_key(t, k);
    }
    free(w->links);
    w->links = NULL;
    w->nlinks = w->cap = 0;
    w->dirty = false;
    w->table = NULL;
    if (t && t->n == 0 && t->nb > 8) {
        /* Give back a table grown by a burst of WATCHes once nothing is watched. */
        free(t->b);
        t->b = NULL;
        t->nb = 0;
    }
}

void watch_touch(struct watch *t, struct slice key)
{
    if (t->n == 0)
        return;
    struct watch_key *k = find(t, key, siphash13(t->seed, key.p, key.len));
    if (k == NULL)
        return;
    struct list *pos;
    list_for_each(pos, &k->watchers)
    {
        container_of(pos, struct watch_link, in_key)->w->dirty = true;
    }
}

void watch_touch_all(struct watch *t)
{
    for (size_t i = 0; i < t->nb; i++) {
        for (struct watch_key *k = t->b[i]; k; k = k->next) {
            struct list *pos;
            list_for_each(pos, &k->watchers)
            {
                container_of(pos, struct watch_link, in_key)->w->dirty = true;
            }
        }
    }
}

struct slice watch_key_at(const struct watcher *w, size_t i)
{
    const struct watch_key *k = w->links[i]->k;
    return slice_of(k->key, k->len);
}

void watch_touch_if(struct watch *t, bool (*pred)(void *ud, struct slice key), void *ud)
{
    for (size_t i = 0; i < t->nb; i++) {
        for (struct watch_key *k = t->b[i]; k; k = k->next) {
            if (!pred(ud, slice_of(k->key, k->len)))
                continue;
            struct list *pos;
            list_for_each(pos, &k->watchers)
            {
                container_of(pos, struct watch_link, in_key)->w->dirty = true;
            }
        }
    }
}

size_t watch_keys(const struct watch *t)
{
    return t->n;
}

size_t watch_buckets(const struct watch *t)
{
    return t->nb;
}
