/* SPDX-License-Identifier: MIT */
/* harness/hist.c -- log-bucketed histogram. Bucket layout, with S = HIST_SUB_BITS:
 *   v < 2^S:            bucket v (exact)
 *   2^e <= v < 2^(e+1): bucket (e - S + 1) * 2^S + ((v >> (e - S)) - 2^S)
 * i.e. the S bits below the leading one select the sub-bucket. Each bucket therefore spans
 * 2^(e-S) values, at most 1/2^S of its lower bound. */
#include "harness/hist.h"

#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
}

static unsigned msb(uint64_t v)
{
    return 63u - (unsigned)__builtin_clzll(v);
}

unsigned hist_bucket_of(uint64_t v)
{
    const uint64_t top = ((uint64_t)1 << HIST_MAX_BITS) - 1;
    if (v > top)
        v = top;
    if (v < HIST_SUB_COUNT)
        return (unsigned)v;
    unsigned e = msb(v);
    unsigned shift = e - HIST_SUB_BITS;
    return (e - HIST_SUB_BITS + 1) * HIST_SUB_COUNT + (unsigned)((v >> shift) - HIST_SUB_COUNT);
}

uint64_t hist_bucket_high(unsigned idx)
{
    if (idx < HIST_SUB_COUNT)
        return idx;
    unsigned e = idx / HIST_SUB_COUNT + HIST_SUB_BITS - 1;
    uint64_t sub = idx % HIST_SUB_COUNT + HIST_SUB_COUNT;
    unsigned shift = e - HIST_SUB_BITS;
    return ((sub + 1) << shift) - 1;
}

void hist_record(struct hist *h, uint64_t v)
{
    h->buckets[hist_bucket_of(v)]++;
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < HIST_NBUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
}

uint64_t hist_percentile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 100)
        q = 100;
    /* rank = ceil(q% of count), at least 1: the rank-th smallest value */
    double r = q / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_NBUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
