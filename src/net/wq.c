/* SPDX-License-Identifier: MIT */
/* net/wq.c -- try_write first, then one uv_write at a time over a swapped pair of buffers. */
#include "net/wq.h"

static void start_write(struct wq *q);

static void on_written(uv_write_t *req, int status)
{
    struct wq *q = req->data;
    q->busy = false;
    q->inflight.len = 0;
    if (status < 0) {
        if (q->err == 0)
            q->err = status;
        q->pending.len = 0;
        if (q->on_drain)
            q->on_drain(q, status);
        return;
    }
    if (q->pending.len > 0) {
        start_write(q);
        return;
    }
    if (q->on_drain)
        q->on_drain(q, 0);
}

static void start_write(struct wq *q)
{
    struct buf t = q->inflight;
    q->inflight = q->pending;
    q->pending = t;
    q->pending.len = 0;
    uv_buf_t b = uv_buf_init(q->inflight.p, (unsigned)q->inflight.len);
    q->req.data = q;
    int rc = uv_write(&q->req, q->stream, &b, 1, on_written);
    if (rc < 0) {
        q->err = rc;
        q->inflight.len = 0;
        return;
    }
    q->busy = true;
}

void wq_init(struct wq *q, uv_stream_t *stream, wq_drain_cb on_drain, void *data)
{
    q->stream = stream;
    buf_init(&q->pending);
    buf_init(&q->inflight);
    q->busy = false;
    q->err = 0;
    q->on_drain = on_drain;
    q->data = data;
}

int wq_write(struct wq *q, const void *p, size_t n)
{
    if (q->err)
        return q->err;
    if (n == 0)
        return 0;
    const char *s = p;
    if (!q->busy && q->pending.len == 0) {
        uv_buf_t b = uv_buf_init((char *)s, (unsigned)n);
        int w = uv_try_write(q->stream, &b, 1);
        if (w == (int)n)
            return 0;
        if (w < 0 && w != UV_EAGAIN) {
            q->err = w;
            return w;
        }
        if (w > 0) {
            s += w;
            n -= (size_t)w;
        }
    }
    buf_append(&q->pending, s, n);
    if (!q->busy)
        start_write(q);
    return q->err;
}

size_t wq_pending(const struct wq *q)
{
    return q->pending.len + q->inflight.len;
}

void wq_free(struct wq *q)
{
    buf_free(&q->pending);
    buf_free(&q->inflight);
}
