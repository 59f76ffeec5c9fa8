/* SPDX-License-Identifier: MIT */
/* coord/dcs_builtin.h -- the coordinator backend for `builtin://HOST:PORT`: a client of
 * `tandem arbiter` (coord/arbiter.h) implementing coord/dcs.h.
 *
 * One pipelined TCP connection carries every request (the arbiter answers in order); a second
 * one, opened by watch(), sends WATCH and turns each push into on_changed. Each request has a
 * deadline of timeout_ms: when the oldest one passes it, that request and every other one in
 * flight fail with DCS_EUNAVAIL and the connection is dropped (a reply that comes after a
 * timeout cannot be matched safely). A lost connection fails everything in flight the same way.
 * Reconnection is automatic, with a backoff from 50 ms doubling up to 500 ms; a request
 * submitted while waiting to reconnect fails at once with DCS_EUNAVAIL. Results are never
 * delivered from inside submit (failures detected there are delivered from a zero timer). */
#ifndef TD_COORD_DCS_BUILTIN_H
#define TD_COORD_DCS_BUILTIN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "coord/dcs.h"

/* Creates the backend for hostport ("HOST:PORT", an optional "builtin://" prefix is accepted;
 * a name is resolved now, blocking: call it at configuration time) and starts connecting.
 * timeout_ms (> 0) is the per-request deadline. Returns the backend (the shell sets on_result,
 * on_changed and data, and later calls ops->close; after the close callback it releases the
 * object with free(d)), or NULL with a reason in err. Loop thread only. */
struct dcs *dcs_builtin_new(uv_loop_t *loop, const char *hostport, uint64_t timeout_ms, char *err,
                            size_t errlen);

#endif
