/* SPDX-License-Identifier: MIT */
/* coord/dcs_open.h -- opens a coordinator backend (coord/dcs.h) from its URL:
 *   etcd://HOST:PORT[,HOST:PORT...]   etcd v3 through its JSON gateway (coord/dcs_etcd.h)
 *   builtin://HOST:PORT               the `tandem arbiter` witness */
#ifndef TD_COORD_DCS_OPEN_H
#define TD_COORD_DCS_OPEN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "coord/dcs.h"

/* Opens the backend named by url on loop; timeout_ms bounds every request (a request with no
 * answer by then is DCS_EUNAVAIL). Returns the backend, or NULL with a reason in err (unknown
 * scheme, bad address list). Close it with d->ops->close(d, done); once done has run, free(d). */
struct dcs *dcs_open(uv_loop_t *loop, const char *url, uint64_t timeout_ms, char *err,
                     size_t errlen);

#endif
