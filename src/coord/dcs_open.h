/* SPDX-License-Identifier: MIT */
/* coord/dcs_open.h -- picks a coordinator backend from its URL. */
#ifndef TD_COORD_DCS_OPEN_H
#define TD_COORD_DCS_OPEN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "coord/dcs.h"

/* builtin://HOST:PORT (tandem arbiter) or etcd://HOST:PORT[,HOST:PORT...]. timeout_ms bounds
 * each request. Returns an owned backend (close it with its ops->close, then free() it in the
 * close callback), or NULL with a reason in err. */
struct dcs *dcs_open(uv_loop_t *loop, const char *url, uint64_t timeout_ms, char *err,
                     size_t errlen);

#endif
