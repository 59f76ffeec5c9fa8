/* SPDX-License-Identifier: MIT */
/* net/listen.h -- the listening side of a TCP server: binding with a clear error, learning the
 * bound address (port 0 picks one), and turning a connection away when the server is at its
 * client limit (accept it only to write one error line and close it, so the client learns why
 * instead of waiting in the listen backlog). */
#ifndef TD_NET_LISTEN_H
#define TD_NET_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

#include <uv.h>

/* Binds t (initialised by the caller) to addr and listens with backlog, calling cb for new
 * connections. Fills *bound with the address actually bound. Returns 0, or a negative libuv
 * code with "cannot listen on ADDR: reason" in err (t is still the caller's to close). */
int net_listen(uv_tcp_t *t, const struct sockaddr *addr, int backlog, uv_connection_cb cb,
               struct sockaddr_storage *bound, char *err, size_t errlen);

/* Accepts one pending connection on listener, writes msg to it if the socket takes it at once,
 * and closes it. The handle is allocated here with h->data = data; closed(h) runs once it is
 * closed and must free(h) (and count it, if the caller counts open handles). */
void net_refuse(uv_stream_t *listener, const char *msg, void *data, uv_close_cb closed);

#endif
