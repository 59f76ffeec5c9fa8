/* SPDX-License-Identifier: MIT */
/* store/snapshot.c -- snapshot writer and loader (format in snapshot.h, rules in docs/wal.md).
 * The writer builds each frame in memory, patches its length and CRC once the item is complete
 * and writes in chunks of about 1 MiB through fsio; the loader reads in chunks, verifies each
 * frame's CRC before decoding it, and requires the end marker with a matching item count. */
#include "store/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/crc32c.h"
#include "base/endian.h"
#include "base/err.h"
#include "base/fsio.h"

#define MAGIC "TDSNAP01"
#define FLUSH_BYTES (1u << 20)
#define FRAME_HDR 8
#define MAX_BODY 0xFFFFFFF0u

struct snapshot_writer {
    int fd;
    int err;
    struct buf b;
    uint64_t items;
    uint64_t bytes;
    bool in_item;
    size_t item_off; /* offset in b of the open frame */
    size_t nvals_left;
};

static void app32(struct buf *b, uint32_t v)
{
    char t[4];
    le_put32(t, v);
    buf_append(b, t, 4);
}

static void app64(struct buf *b, uint64_t v)
{
    char t[8];
    le_put64(t, v);
    buf_append(b, t, 8);
}

static int flush(struct snapshot_writer *w)
{
    if (w->err == 0 && w->b.len > 0) {
        w->err = fsio_write_all(w->fd, w->b.p, w->b.len);
        w->bytes += w->b.len;
    }
    w->b.len = 0;
    return w->err;
}

/* Seals the open item's frame (length and CRC) and flushes when the buffer is large. */
static int seal(struct snapshot_writer *w)
{
    if (!w->in_item)
        return w->err;
    TD_ASSERT(w->nvals_left == 0);
    w->in_item = false;
    size_t body = w->b.len - w->item_off - FRAME_HDR;
    if (body > MAX_BODY) {
        if (w->err == 0)
            w->err = TD_ETOO_BIG;
        w->b.len = w->item_off;
        return w->err;
    }
    char *f = w->b.p + w->item_off;
    le_put32(f, (uint32_t)body);
    le_put32(f + 4, crc32c(f + FRAME_HDR, body));
    w->items++;
    if (w->b.len >= FLUSH_BYTES)
        return flush(w);
    return w->err;
}

int snapshot_writer_open(const char *path, uint64_t lsn, uint64_t term,
                         struct snapshot_writer **out)
{
    int fd = fsio_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return fd;
    struct snapshot_writer *w = xcalloc(1, sizeof(*w));
    w->fd = fd;
    buf_init(&w->b);
    char h[SNAPSHOT_HEADER_SIZE];
    memcpy(h, MAGIC, 8);
    le_put64(h + 8, lsn);
    le_put64(h + 16, term);
    le_put32(h + 24, 0);
    le_put32(h + 28, crc32c(h, 28));
    buf_append(&w->b, h, sizeof(h));
    *out = w;
    return 0;
}

int snapshot_item_begin(struct snapshot_writer *w, uint8_t type, uint64_t expire_ms,
                        struct slice key, size_t nvals)
{
    TD_ASSERT(type != 0);
    seal(w);
    if (w->err)
        return w->err;
    if (key.len > MAX_BODY || nvals > MAX_BODY)
        return w->err = TD_ETOO_BIG;
    w->in_item = true;
    w->item_off = w->b.len;
    w->nvals_left = nvals;
    buf_reserve(&w->b, FRAME_HDR + 1 + 8 + 4 + key.len + 4);
    w->b.len += FRAME_HDR;
    buf_append(&w->b, &type, 1);
    app64(&w->b, expire_ms);
    app32(&w->b, (uint32_t)key.len);
    buf_append(&w->b, key.p, key.len);
    app32(&w->b, (uint32_t)nvals);
    return 0;
}

int snapshot_item_val(struct snapshot_writer *w, struct slice v)
{
    TD_ASSERT(w->in_item && w->nvals_left > 0);
    w->nvals_left--;
    if (v.len > MAX_BODY) {
        if (w->err == 0)
            w->err = TD_ETOO_BIG;
        v.len = 0;
    }
    app32(&w->b, (uint32_t)v.len);
    buf_append(&w->b, v.p, v.len);
    return w->err;
}

int snapshot_put(struct snapshot_writer *w, uint8_t type, uint64_t expire_ms, struct slice key,
                 size_t nvals, const struct slice *vals)
{
    int r = snapshot_item_begin(w, type, expire_ms, key, nvals);
    if (r != 0)
        return r;
    for (size_t i = 0; i < nvals; i++)
        snapshot_item_val(w, vals[i]);
    return seal(w);
}

int snapshot_writer_finish(struct snapshot_writer *w, struct snapshot_info *info)
{
    seal(w);
    size_t off = w->b.len;
    buf_reserve(&w->b, FRAME_HDR + 9);
    w->b.len += FRAME_HDR;
    char z = 0;
    buf_append(&w->b, &z, 1);
    app64(&w->b, w->items);
    le_put32(w->b.p + off, 9);
    le_put32(w->b.p + off + 4, crc32c(w->b.p + off + FRAME_HDR, 9));
    int r = flush(w);
    if (r == 0)
        r = fsio_fsync(w->fd);
    if (info) {
        info->items = w->items;
        info->bytes = w->bytes;
    }
    fsio_close(w->fd);
    buf_free(&w->b);
    free(w);
    return r;
}

void snapshot_writer_abort(struct snapshot_writer *w)
{
    if (w == NULL)
        return;
    fsio_close(w->fd);
    buf_free(&w->b);
    free(w);
}

/* ---- reading ---- */

int snapshot_parse_header(const char *p, size_t n, struct snapshot_info *info)
{
    if (n < SNAPSHOT_HEADER_SIZE || memcmp(p, MAGIC, 8) != 0)
        return TD_ECORRUPT;
    if (crc32c(p, 28) != le_get32(p + 28) || le_get32(p + 24) != 0)
        return TD_ECORRUPT;
    memset(info, 0, sizeof(*info));
    info->lsn = le_get64(p + 8);
    info->term = le_get64(p + 16);
    return 0;
}

ssize_t snapshot_parse_frame(const char *p, size_t n, struct snapshot_item *it, struct slice **vals,
                             size_t *cap, bool *is_end, uint64_t *end_count)
{
    *is_end = false;
    if (n < FRAME_HDR)
        return TD_EINCOMPLETE;
    uint32_t body = le_get32(p);
    if (body < 9 || body > MAX_BODY)
        return TD_ECORRUPT;
    if (n - FRAME_HDR < body)
        return TD_EINCOMPLETE;
    const char *b = p + FRAME_HDR;
    if (crc32c(b, body) != le_get32(p + 4))
        return TD_ECORRUPT;
    uint8_t type = (uint8_t)b[0];
    if (type == 0) {
        if (body != 9)
            return TD_ECORRUPT;
        *is_end = true;
        *end_count = le_get64(b + 1);
        return FRAME_HDR + body;
    }
    size_t off = 9;
    if (body - off < 4)
        return TD_ECORRUPT;
    uint32_t klen = le_get32(b + off);
    off += 4;
    if (klen > body - off)
        return TD_ECORRUPT;
    it->type = type;
    it->expire_ms = le_get64(b + 1);
    it->key = slice_of(b + off, klen);
    off += klen;
    if (body - off < 4)
        return TD_ECORRUPT;
    uint32_t nv = le_get32(b + off);
    off += 4;
    if (nv > (body - off) / 4)
        return TD_ECORRUPT;
    if (nv > *cap) {
        *cap = nv;
        *vals = xrealloc(*vals, (size_t)nv * sizeof(**vals));
    }
    for (uint32_t i = 0; i < nv; i++) {
        if (body - off < 4)
            return TD_ECORRUPT;
        uint32_t len = le_get32(b + off);
        off += 4;
        if (len > body - off)
            return TD_ECORRUPT;
        (*vals)[i] = slice_of(b + off, len);
        off += len;
    }
    if (off != body)
        return TD_ECORRUPT;
    it->nvals = nv;
    it->vals = *vals;
    return FRAME_HDR + body;
}

int snapshot_read_header(const char *path, struct snapshot_info *info)
{
    int fd = fsio_open(path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    char h[SNAPSHOT_HEADER_SIZE];
    ssize_t r = fsio_pread(fd, h, sizeof(h), 0);
    fsio_close(fd);
    if (r < 0)
        return (int)r;
    return snapshot_parse_header(h, (size_t)r, info);
}

static int corrupt(char *err, size_t errlen, const char *path, uint64_t off, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, "snapshot %s: %s at byte offset %llu", path, what,
                 (unsigned long long)off);
    return TD_ECORRUPT;
}

int snapshot_load(const char *path, snapshot_load_fn fn, void *ud, struct snapshot_info *info,
                  char *err, size_t errlen)
{
    int fd = fsio_open(path, O_RDONLY, 0);
    if (fd < 0) {
        if (err && errlen)
            snprintf(err, errlen, "snapshot %s: %s", path, td_strerror(fd));
        return fd;
    }
    struct buf b;
    buf_init(&b);
    struct slice *vals = NULL;
    size_t cap = 0, start = 0;
    uint64_t file_off = 0, items = 0, end_count = 0;
    bool eof = false, seen_end = false, header = false;
    struct snapshot_info hi;
    memset(&hi, 0, sizeof(hi));
    int rc = 0;
    for (;;) {
        /* Parse what is buffered. */
        while (rc == 0 && start < b.len) {
            if (!header) {
                if (b.len - start < SNAPSHOT_HEADER_SIZE)
                    break;
                if (snapshot_parse_header(b.p + start, SNAPSHOT_HEADER_SIZE, &hi) != 0) {
                    rc = corrupt(err, errlen, path, 0, "bad header");
                    break;
                }
                header = true;
                start += SNAPSHOT_HEADER_SIZE;
                file_off += SNAPSHOT_HEADER_SIZE;
                continue;
            }
            if (seen_end) {
                rc = corrupt(err, errlen, path, file_off, "bytes after the end marker");
                break;
            }
            struct snapshot_item it;
            bool is_end;
            ssize_t r = snapshot_parse_frame(b.p + start, b.len - start, &it, &vals, &cap, &is_end,
                                             &end_count);
            if (r == TD_EINCOMPLETE)
                break;
            if (r < 0) {
                rc = corrupt(err, errlen, path, file_off, "bad frame");
                break;
            }
            if (is_end) {
                seen_end = true;
            } else {
                items++;
                if (fn) {
                    rc = fn(ud, &it);
                    if (rc != 0)
                        break;
                }
            }
            start += (size_t)r;
            file_off += (uint64_t)r;
        }
        if (rc != 0 || eof)
            break;
        /* Refill: keep the unparsed tail, read more. */
        buf_consume(&b, start);
        start = 0;
        buf_reserve(&b, 64u << 10);
        ssize_t n = fsio_read(fd, b.p + b.len, b.cap - b.len);
        if (n < 0) {
            rc = (int)n;
            if (err && errlen)
                snprintf(err, errlen, "snapshot %s: read: %s", path, td_strerror(rc));
            break;
        }
        if (n == 0)
            eof = true;
        b.len += (size_t)n;
    }
    if (rc == 0 && (!header || !seen_end))
        rc = corrupt(err, errlen, path, file_off, "incomplete file (no end marker)");
    if (rc == 0 && end_count != items)
        rc = corrupt(err, errlen, path, file_off, "item count mismatch");
    if (rc == 0 && info) {
        *info = hi;
        info->items = items;
        info->bytes = file_off;
    }
    free(vals);
    buf_free(&b);
    fsio_close(fd);
    return rc;
}
