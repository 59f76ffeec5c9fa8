/* SPDX-License-Identifier: MIT */
/* base/metrics.h -- a metrics registry rendered as Prometheus text (format 0.0.4).
 * A family has a name, type and help; each series is one label set with a value cell whose
 * address stays valid until metrics_free, so hot paths bump it directly with no lookup. */
#ifndef TD_BASE_METRICS_H
#define TD_BASE_METRICS_H

#include <stdint.h>

#include "base/buf.h"

enum metric_type {
    METRIC_COUNTER = 0,
    METRIC_GAUGE,
};

struct metrics;

struct metrics *metrics_new(void);
/* Frees every family and series; NULL is a no-op. */
void metrics_free(struct metrics *m);
/* Returns the value cell of series NAME{LABELS}, creating family and series on first use.
 * labels is the inside of the braces, e.g. `pool="web",server="a"`, or "" for none; the
 * caller escapes label values. Same name with another type is a programming error (asserts).
 * The cell is a signed 64-bit integer: counters only grow, gauges may go down. */
int64_t *metrics_series(struct metrics *m, enum metric_type type, const char *name,
                        const char *help, const char *labels);
/* Appends the exposition of every family, in registration order, to out. */
void metrics_render(const struct metrics *m, struct buf *out);
/* Appends s to out with Prometheus label-value escaping (backslash, quote, newline). */
void metrics_escape_label(struct buf *out, const char *s);

#endif
