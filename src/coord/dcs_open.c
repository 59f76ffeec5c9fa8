/* SPDX-License-Identifier: MIT */
/* coord/dcs_open.c -- the coordinator URL factory (see dcs_open.h). */
#include "coord/dcs_open.h"

#include <stdio.h>
#include <string.h>

struct dcs *dcs_open(uv_loop_t *loop, const char *url, uint64_t timeout_ms, char *err,
                     size_t errlen)
{
    (void)loop;
    (void)timeout_ms;
    snprintf(err, errlen, "coordinator '%s': no backend for this scheme in this build", url);
    return NULL;
}
