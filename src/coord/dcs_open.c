/* SPDX-License-Identifier: MIT */
/* coord/dcs_open.c -- the coordinator URL factory (see dcs_open.h). */
#include "coord/dcs_open.h"

#include <stdio.h>
#include <string.h>

#include "coord/dcs_builtin.h"

struct dcs *dcs_open(uv_loop_t *loop, const char *url, uint64_t timeout_ms, char *err,
                     size_t errlen)
{
    static const char builtin[] = "builtin://";
    if (strncmp(url, builtin, sizeof(builtin) - 1) == 0)
        return dcs_builtin_new(loop, url + sizeof(builtin) - 1, timeout_ms, err, errlen);
    snprintf(err, errlen, "coordinator '%s': expected builtin://HOST:PORT or etcd://HOST:PORT",
             url);
    return NULL;
}
