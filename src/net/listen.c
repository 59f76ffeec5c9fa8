/* SPDX-License-Identifier: MIT */
/* net/listen.c -- see listen.h. */
#include "net/listen.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/parse.h"

int net_listen(uv_tcp_t *t, const struct sockaddr *addr, int backlog, uv_connection_cb cb,
               struct sockaddr_storage *bound, char *err, size_t errlen)
{
    int rc = uv_tcp_bind(t, addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)t, backlog, cb);
    if (rc < 0) {
        char a[80];
        addr_format(addr, a, sizeof(a));
        snprintf(err, errlen, "cannot listen on %s: %s", a, uv_strerror(rc));
        return rc;
    }
    int len = sizeof(*bound);
    if (uv_tcp_getsockname(t, (struct sockaddr *)bound, &len) != 0)
        memcpy(bound, addr, addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                        : sizeof(struct sockaddr_in));
    return 0;
}

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
