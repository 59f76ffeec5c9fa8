/* SPDX-License-Identifier: MIT */
/* net/refuse.c -- see refuse.h. */
#include "net/refuse.h"

#include <string.h>

#include "base/alloc.h"

void net_refuse(uv_stream_t *listener, const char *msg, void *data, uv_close_cb closed)
{
    uv_tcp_t *t = xmalloc(sizeof(*t));
    uv_tcp_init(listener->loop, t);
    t->data = data;
    if (uv_accept(listener, (uv_stream_t *)t) == 0) {
        uv_buf_t b = uv_buf_init((char *)msg, (unsigned)strlen(msg));
        (void)uv_try_write((uv_stream_t *)t, &b, 1); /* best effort: it is closed either way */
    }
    uv_close((uv_handle_t *)t, closed);
}
