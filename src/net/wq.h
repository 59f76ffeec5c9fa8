/* SPDX-License-Identifier: MIT */
/* net/wq.h -- an ordered write queue on a libuv stream. Writes try uv_try_write first (the
 * common case on loopback: no request object, no copy); what the kernel does not take is copied
 * into a pending buffer and written with uv_write, in order. The caller may reuse its bytes as
 * soon as wq_write returns. */
#ifndef TD_NET_WQ_H
#define TD_NET_WQ_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "base/buf.h"

struct wq;
/* Called on the loop thread when everything queued has been written (pending drops to 0) or
 * when a write failed (status < 0); the owner decides whether to close. */
typedef void (*wq_drain_cb)(struct wq *q, int status);

struct wq {
    uv_stream_t *stream;
    struct buf pending;  /* not yet handed to libuv */
    struct buf inflight; /* owned by the uv_write in progress */
    uv_write_t req;
    bool busy;
    int err;             /* first write error, sticky */
    wq_drain_cb on_drain;
    void *data;          /* owner */
};

void wq_init(struct wq *q, uv_stream_t *stream, wq_drain_cb on_drain, void *data);
/* Queues n bytes. Returns 0, or the sticky error of an earlier failed write (the bytes are then
 * dropped). Never calls on_drain synchronously. */
int wq_write(struct wq *q, const void *p, size_t n);
/* Bytes accepted but not yet written to the kernel. */
size_t wq_pending(const struct wq *q);
/* Frees the buffers. Only after the stream's close callback (libuv has then cancelled and
 * called back any write in flight). */
void wq_free(struct wq *q);

#endif
