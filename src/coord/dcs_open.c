/* SPDX-License-Identifier: MIT */
/* coord/dcs_open.c -- the coordinator URL factory: the scheme picks the backend, the rest of
 * the URL is the backend's address list. */
#include "coord/dcs_open.h"

#include <stdio.h>
#include <string.h>

#include "coord/dcs_builtin.h"
#include "coord/dcs_etcd.h"

struct dcs *dcs_open(uv_loop_t *loop, const char *url, uint64_t timeout_ms, char *err,
                     size_t errlen)
{
    static const char etcd[] = "etcd://";
    static const char builtin[] = "builtin://";
    if (url == NULL || *url == '\0') {
        snprintf(err, errlen,
                 "empty coordinator URL (want etcd://HOST:PORT[,...] or "
                 "builtin://HOST:PORT)");
        return NULL;
    }
    if (strncmp(url, etcd, sizeof(etcd) - 1) == 0)
        return dcs_etcd_new(loop, url + sizeof(etcd) - 1, timeout_ms, err, errlen);
    if (strncmp(url, builtin, sizeof(builtin) - 1) == 0)
        return dcs_builtin_new(loop, url + sizeof(builtin) - 1, timeout_ms, err, errlen);
    snprintf(err, errlen, "coordinator '%s': unknown scheme (want etcd:// or builtin://)", url);
    return NULL;
}
