/* SPDX-License-Identifier: MIT */
/* store/termhist.c -- term boundaries kept across compaction (see termhist.h).
 *
 * Advancing to a new snapshot finds where terms change in the log part the snapshot folds in by
 * binary search (terms never decrease along a log), so it costs O(terms * log n) lookups once
 * per snapshot. The file is written beside the snapshot after the snapshot is durable; a crash
 * in between leaves a file naming the previous snapshot, which readers ignore (fail safe). */
#include "store/termhist.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/crc32c.h"
#include "base/endian.h"
#include "base/err.h"
#include "base/fsio.h"
#include "store/repl_core.h"

#define MAGIC "TDTERMS1"
#define HEADER_BYTES (8 + 3 * 8 + 4)
#define PAIR_BYTES 16

void termhist_init(struct termhist *h)
{
    memset(h, 0, sizeof(*h));
}

void termhist_free(struct termhist *h)
{
    free(h->v);
    memset(h, 0, sizeof(*h));
}

static void push(struct termhist *h, uint64_t term, uint64_t first_lsn)
{
    if (h->n == TERMHIST_MAX) {
        /* Drop the oldest pair: the next one's start becomes the oldest known lsn. */
        memmove(h->v, h->v + 1, (h->n - 1) * sizeof(h->v[0]));
        h->n--;
        h->from_lsn = h->v[0].first_lsn;
    }
    h->v = xrealloc(h->v, (h->n + 1) * sizeof(h->v[0]));
    h->v[h->n++] = (struct termhist_start){term, first_lsn};
}

void termhist_reset_unknown(struct termhist *h, uint64_t snap_lsn, uint64_t snap_term)
{
    h->n = 0;
    h->snap_lsn = snap_lsn;
    h->snap_term = snap_term;
    h->from_lsn = snap_lsn;
    if (snap_lsn > 0 && snap_term > 0)
        push(h, snap_term, snap_lsn);
}

uint64_t termhist_known_lsn(const struct termhist *h)
{
    return h->from_lsn;
}

int termhist_term_at(const struct termhist *h, uint64_t lsn, uint64_t *term)
{
    if (lsn < h->from_lsn || lsn > h->snap_lsn)
        return -ENOENT;
    /* The last pair starting at or before lsn; none: term 0 (only when from_lsn is 0). */
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->v[mid].first_lsn <= lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    *term = lo == 0 ? 0 : h->v[lo - 1].term;
    return 0;
}

/* The pairs one advance adds, kept as a ring of the last TERMHIST_MAX: pushing them one by one
 * onto h moved (and reallocated) the whole array for every pair past the cap, O(pairs *
 * TERMHIST_MAX) for a log with many terms. */
struct added {
    struct termhist_start *ring; /* TERMHIST_MAX slots once the first pair arrives */
    uint64_t total;              /* pairs added; the ring holds the last min(total, MAX) */
};

static void added_push(struct added *a, uint64_t term, uint64_t first_lsn)
{
    if (a->ring == NULL)
        a->ring = xmalloc(TERMHIST_MAX * sizeof(a->ring[0]));
    a->ring[a->total % TERMHIST_MAX] = (struct termhist_start){term, first_lsn};
    a->total++;
}

/* Appends the added pairs to h keeping the last TERMHIST_MAX of old + new, as pushing them one
 * by one would (from_lsn moves to the oldest kept pair when any is dropped). */
static void added_merge(struct termhist *h, const struct added *a)
{
    if (a->total == 0)
        return;
    size_t keep_new = a->total < TERMHIST_MAX ? (size_t)a->total : TERMHIST_MAX;
    size_t keep_old = h->n < TERMHIST_MAX - keep_new ? h->n : TERMHIST_MAX - keep_new;
    bool dropped = keep_old < h->n || keep_new < a->total;
    struct termhist_start *v = xmalloc((keep_old + keep_new) * sizeof(v[0]));
    if (keep_old)
        memcpy(v, h->v + (h->n - keep_old), keep_old * sizeof(v[0]));
    uint64_t first = a->total - keep_new;
    for (size_t i = 0; i < keep_new; i++)
        v[keep_old + i] = a->ring[(first + i) % TERMHIST_MAX];
    free(h->v);
    h->v = v;
    h->n = keep_old + keep_new;
    if (dropped)
        h->from_lsn = v[0].first_lsn;
}

int termhist_advance(struct termhist *h, uint64_t snap_lsn, uint64_t snap_term,
                     termhist_term_at_fn term_at, void *ud)
{
    int rc = 0;
    struct added add = {NULL, 0};
    if (snap_lsn < h->snap_lsn) {
        rc = TD_ECORRUPT;
        goto fail;
    }
    uint64_t cur = h->snap_term, lo = h->snap_lsn + 1;
    while (lo <= snap_lsn) {
        uint64_t t;
        rc = term_at(ud, snap_lsn, &t);
        if (rc != 0)
            goto fail;
        if (t < cur) {
            rc = TD_ECORRUPT;
            goto fail;
        }
        if (t == cur)
            break; /* no term change up to snap_lsn */
        /* First lsn in [lo, snap_lsn] whose term is above cur. */
        uint64_t a;
        rc = repl_core_first_lsn_from_term(term_at, ud, lo, snap_lsn, cur + 1, &a);
        if (rc != 0)
            goto fail;
        rc = term_at(ud, a, &t);
        if (rc != 0)
            goto fail;
        if (t == 0 || t <= cur) {
            rc = TD_ECORRUPT;
            goto fail;
        }
        added_push(&add, t, a);
        cur = t;
        lo = a + 1;
    }
    if (cur != snap_term) {
        rc = TD_ECORRUPT;
        goto fail;
    }
    added_merge(h, &add);
    free(add.ring);
    h->snap_lsn = snap_lsn;
    h->snap_term = snap_term;
    return 0;
fail:
    free(add.ring);
    termhist_reset_unknown(h, snap_lsn, snap_term);
    return rc;
}

void termhist_encode(const struct termhist *h, struct buf *out)
{
    size_t start = out->len, len = HEADER_BYTES + h->n * PAIR_BYTES + 4;
    buf_reserve(out, len);
    char *p = out->p + start;
    memcpy(p, MAGIC, 8);
    le_put64(p + 8, h->snap_lsn);
    le_put64(p + 16, h->snap_term);
    le_put64(p + 24, h->from_lsn);
    le_put32(p + 32, (uint32_t)h->n);
    for (size_t i = 0; i < h->n; i++) {
        le_put64(p + HEADER_BYTES + i * PAIR_BYTES, h->v[i].term);
        le_put64(p + HEADER_BYTES + i * PAIR_BYTES + 8, h->v[i].first_lsn);
    }
    le_put32(p + len - 4, crc32c(p, len - 4));
    out->len += len;
}

int termhist_decode(const char *p, size_t n, struct termhist *h)
{
    if (n < HEADER_BYTES + 4 || memcmp(p, MAGIC, 8) != 0)
        return TD_ECORRUPT;
    uint64_t snap_lsn = le_get64(p + 8), snap_term = le_get64(p + 16), from = le_get64(p + 24);
    uint32_t np = le_get32(p + 32);
    if (np > TERMHIST_MAX || n != HEADER_BYTES + (size_t)np * PAIR_BYTES + 4)
        return TD_ECORRUPT;
    if (le_get32(p + n - 4) != crc32c(p, n - 4))
        return TD_ECORRUPT;
    if (from > snap_lsn || (snap_lsn == 0 && (np != 0 || snap_term != 0)))
        return TD_ECORRUPT;
    if (from > 0 && np == 0)
        return TD_ECORRUPT;
    uint64_t prev_term = 0, prev_lsn = 0;
    for (uint32_t i = 0; i < np; i++) {
        uint64_t t = le_get64(p + HEADER_BYTES + i * PAIR_BYTES);
        uint64_t f = le_get64(p + HEADER_BYTES + i * PAIR_BYTES + 8);
        if (t == 0 || f == 0 || f > snap_lsn || t <= prev_term || f <= prev_lsn)
            return TD_ECORRUPT;
        if (i == 0 && from > 0 && f != from)
            return TD_ECORRUPT;
        prev_term = t;
        prev_lsn = f;
    }
    if (prev_term != snap_term)
        return TD_ECORRUPT;
    struct termhist_start *v = np ? xmalloc(np * sizeof(*v)) : NULL;
    for (uint32_t i = 0; i < np; i++) {
        v[i].term = le_get64(p + HEADER_BYTES + i * PAIR_BYTES);
        v[i].first_lsn = le_get64(p + HEADER_BYTES + i * PAIR_BYTES + 8);
    }
    free(h->v);
    h->v = v;
    h->n = np;
    h->snap_lsn = snap_lsn;
    h->snap_term = snap_term;
    h->from_lsn = from;
    return 0;
}

int termhist_save(const char *dir, const struct termhist *h)
{
    char tmp[4096], fin[4096];
    snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, TERMHIST_FILE);
    snprintf(fin, sizeof(fin), "%s/%s", dir, TERMHIST_FILE);
    struct buf b;
    buf_init(&b);
    termhist_encode(h, &b);
    int fd = fsio_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = fd < 0 ? fd : fsio_write_all(fd, b.p, b.len);
    if (rc == 0)
        rc = fsio_fsync(fd);
    if (fd >= 0)
        fsio_close(fd);
    buf_free(&b);
    if (rc == 0)
        rc = fsio_rename(tmp, fin);
    if (rc == 0)
        rc = fsio_fsync_dir(dir);
    if (rc != 0)
        fsio_unlink(tmp);
    return rc;
}

int termhist_load(const char *dir, uint64_t snap_lsn, uint64_t snap_term, struct termhist *h)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, TERMHIST_FILE);
    struct buf b;
    buf_init(&b);
    int rc = fsio_read_file(path, &b);
    if (rc == 0)
        rc = termhist_decode(b.p, b.len, h);
    if (rc == 0 && (h->snap_lsn != snap_lsn || h->snap_term != snap_term))
        rc = -ESTALE;
    buf_free(&b);
    if (rc != 0)
        termhist_reset_unknown(h, snap_lsn, snap_term);
    return rc;
}

int termhist_remove(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, TERMHIST_FILE);
    int rc = fsio_unlink(path);
    return rc == -ENOENT ? 0 : rc;
}
