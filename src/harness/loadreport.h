/* SPDX-License-Identifier: MIT */
/* harness/loadreport.h -- `tandem load` reports from a struct loadstats: the JSON object that
 * tests and scripts parse (a contract: field names and meaning are stable; fields are only ever
 * added), and the human table. */
#ifndef TD_HARNESS_LOADREPORT_H
#define TD_HARNESS_LOADREPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "harness/loadstats.h"

/* The JSON object, one line, no trailing newline:
 *   {"requests":N,"ok":N,"failed":N,
 *    "errors":{"connect":N,"reset":N,"timeout":N,"status_5xx":N,"protocol":N},
 *    "duration_s":F,"rps":F,"latency_ms":{"p50":F,"p99":F,"max":F},"longest_gap_ms":F,
 *    "first_ok_ms":F,"last_ok_ms":F,"servers":{"NAME":N,...},
 *    "timeline":[{"t_ms":N,"ok":N,"failed":N,"servers":{...}},...]}
 * rps is ok responses per second; first_ok_ms/last_ok_ms are null without any success;
 * timeline is [] when the run had no timeline. st must be finished (loadstats_finish).
 * Returns an owned string (free()). */
char *loadreport_json(const struct loadstats *st);
/* Writes the human-readable table for a run against url with the given connection count. */
void loadreport_text(const struct loadstats *st, const char *url, unsigned connections,
                     FILE *out);
/* Duration of the run in seconds (end_us, at least 1 us to keep rates finite). */
double loadreport_duration_s(const struct loadstats *st);

#endif
