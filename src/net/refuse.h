/* SPDX-License-Identifier: MIT */
/* net/refuse.h -- turning a connection away: a server at its client limit accepts the pending
 * connection only to write one line (an error reply) and close it, so the client learns why
 * instead of waiting in the listen backlog. */
#ifndef TD_NET_REFUSE_H
#define TD_NET_REFUSE_H

#include <uv.h>

/* Accepts one pending connection on listener, writes msg to it if the socket takes it at once,
 * and closes it. The handle is allocated here with h->data = data; closed(h) runs once it is
 * closed and must free(h) (and count it, if the caller counts open handles). */
void net_refuse(uv_stream_t *listener, const char *msg, void *data, uv_close_cb closed);

#endif
