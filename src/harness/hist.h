/* SPDX-License-Identifier: MIT */
/* harness/hist.h -- a log-bucketed latency histogram in the spirit of HdrHistogram: fixed memory,
 * O(1) record, bounded relative error. Values are unsigned integers (tandem records
 * microseconds). Below HIST_SUB_COUNT every value has its own bucket; above, each power of two
 * is split into HIST_SUB_COUNT equal sub-buckets, so a reported percentile is at most
 * 1/HIST_SUB_COUNT (0.8%) above the true value. Pure: no I/O, no clock. */
#ifndef TD_HARNESS_HIST_H
#define TD_HARNESS_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
/* Values at or above 2^HIST_MAX_BITS (about 19 hours in microseconds) are clamped. */
#define HIST_MAX_BITS 36
#define HIST_NBUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) * HIST_SUB_COUNT)

struct hist {
    uint64_t count;
    uint64_t min;          /* exact; 0 when count is 0 */
    uint64_t max;          /* exact */
    uint64_t sum;          /* for the mean; wraps only after ~5e12 hours of latency */
    uint64_t buckets[HIST_NBUCKETS];
};

/* Empties h. */
void hist_init(struct hist *h);
/* Adds one value (clamped to the largest trackable value). */
void hist_record(struct hist *h, uint64_t v);
/* Adds every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The smallest bucket bound v such that at least q percent (0..100) of the recorded values are
 * <= v, clamped to [min, max]; so q=100 gives max exactly. Returns 0 for an empty histogram. */
uint64_t hist_percentile(const struct hist *h, double q);
/* Mean of the recorded values; 0 when empty. */
double hist_mean(const struct hist *h);
/* Bucket index of v and the largest value sharing that bucket (exposed for tests). */
unsigned hist_bucket_of(uint64_t v);
uint64_t hist_bucket_high(unsigned idx);

#endif
