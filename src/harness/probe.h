/* SPDX-License-Identifier: MIT */
/* harness/probe.h -- short blocking probes of local servers, for supervisors and reports that
 * look at a topology from outside (tandem up, status, demo): is a port open, an HTTP GET, a
 * Redis-protocol command, and reading "key:value" lines of an INFO reply. Loopback only, with
 * short timeouts, so a probe costs at most its timeout even against a stopped process. */
#ifndef TD_HARNESS_PROBE_H
#define TD_HARNESS_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"

/* True when something accepts connections on 127.0.0.1:port. */
bool probe_port_open(unsigned port);
/* A free loopback port the OS offered (bound and released), or 0. */
unsigned probe_free_port(void);
/* GET path from 127.0.0.1:port (HTTP/1.1, Connection: close) with timeout_ms for connect and
 * each read. On 2xx returns 0 with the body appended to out (caller frees); otherwise a
 * negative code (-EPROTO for a non-2xx or unparsable response). */
int probe_http_get(unsigned port, const char *path, uint64_t timeout_ms, struct buf *out);
/* Sends a command (argv of argc strings) to the Redis-protocol server on 127.0.0.1:port and
 * appends the reply to out: a status, bulk or integer reply as text, an array as its
 * elements' texts joined by '\n', an error as "-ERR ...". Returns 0, or a negative code when
 * the server could not be reached or did not answer within timeout_ms. */
int probe_resp(unsigned port, int argc, const char **argv, uint64_t timeout_ms, struct buf *out);
/* The value of "key:" in INFO text (one "key:value" per line), copied into out (NUL-terminated,
 * cut to outlen); false when absent. */
bool probe_info_get(const char *info, const char *key, char *out, size_t outlen);
/* The same as an unsigned number; def when absent or not a number. */
uint64_t probe_info_u64(const char *info, const char *key, uint64_t def);

#endif
