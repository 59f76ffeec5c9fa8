/* SPDX-License-Identifier: MIT */
/* harness/upstatus.h -- `tandem status`: the topology as seen from outside. The balancer's
 * admin endpoint (/status) lists the pools and their servers; each server of a resp-role pool
 * (a db node) is then asked INFO replication for its role, term, LSN and lag. Blocking, short
 * timeouts, loopback. */
#ifndef TD_HARNESS_UPSTATUS_H
#define TD_HARNESS_UPSTATUS_H

#include "base/buf.h"

/* Appends the report for the balancer whose admin endpoint listens on 127.0.0.1:admin_port to
 * out. Returns 0, or a negative code with the reason in err (the admin endpoint did not answer
 * or its answer is not the expected JSON). */
int upstatus_report(unsigned admin_port, struct buf *out, char *err, size_t errlen);

#endif
