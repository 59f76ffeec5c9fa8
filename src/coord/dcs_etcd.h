/* SPDX-License-Identifier: MIT */
/* coord/dcs_etcd.h -- the etcd v3 coordinator backend (dcs.h) over etcd's JSON gateway, with
 * libcurl's multi interface driven by the libuv loop. */
#ifndef TD_COORD_DCS_ETCD_H
#define TD_COORD_DCS_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "coord/dcs.h"

/* Creates an etcd backend on loop for endpoints "HOST:PORT[,HOST:PORT...]" (plain HTTP; an IPv6
 * host in brackets). Every request gets timeout_ms (connect included); a timeout or a transport
 * failure is DCS_EUNAVAIL and moves later requests to the next endpoint; a refused connection is
 * retried at once on the next endpoint while time remains (the request never reached etcd).
 * Returns the backend, or NULL with a reason in err. Close it with d->ops->close(d, done); once
 * done has run, everything but the struct itself is released: free(d) then. */
struct dcs *dcs_etcd_new(uv_loop_t *loop, const char *endpoints, uint64_t timeout_ms, char *err,
                         size_t errlen);

#endif
