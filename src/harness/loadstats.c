/* SPDX-License-Identifier: MIT */
/* harness/loadstats.c -- request outcome accounting for the load generator. Every record
 * updates the run totals and the current phase; gaps are measured between consecutive
 * successes; timeline windows grow on demand (window i covers [i*w, (i+1)*w)). */
#include "harness/loadstats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"

static void phase_init(struct loadstats_phase *ph, uint64_t start_us)
{
    memset(ph, 0, sizeof(*ph));
    ph->start_us = start_us;
    hist_init(&ph->lat);
}

void loadstats_init(struct loadstats *st, uint64_t window_us)
{
    memset(st, 0, sizeof(*st));
    hist_init(&st->lat);
    st->nphases = 1;
    phase_init(&st->phases[0], 0);
    st->window_us = window_us;
}

void loadstats_free(struct loadstats *st)
{
    free(st->windows);
    st->windows = NULL;
    st->nwindows = st->cap_windows = 0;
}

const char *loadstats_outcome_name(enum loadstats_outcome o)
{
    switch (o) {
    case LOADSTATS_OK: return "ok";
    case LOADSTATS_ERR_CONNECT: return "connect";
    case LOADSTATS_ERR_RESET: return "reset";
    case LOADSTATS_ERR_TIMEOUT: return "timeout";
    case LOADSTATS_ERR_5XX: return "status_5xx";
    case LOADSTATS_ERR_PROTOCOL: return "protocol";
    default: return "unknown";
    }
}

int loadstats_server_index(const struct loadstats *st, const char *name)
{
    for (unsigned i = 0; i < st->nservers; i++)
        if (strcmp(st->names[i], name) == 0)
            return (int)i;
    return -1;
}

static unsigned intern_literal(struct loadstats *st, const char *name)
{
    int i = loadstats_server_index(st, name);
    if (i >= 0)
        return (unsigned)i;
    TD_ASSERT(st->nservers < LOADSTATS_MAX_SERVERS);
    snprintf(st->names[st->nservers], LOADSTATS_NAME_MAX, "%s", name);
    return st->nservers++;
}

/* Slots for real names stop two short of the array so "(none)" and "(other)" always fit. */
static unsigned intern(struct loadstats *st, struct slice name)
{
    if (name.p == NULL)
        return intern_literal(st, LOADSTATS_NONE);
    char tmp[LOADSTATS_NAME_MAX];
    size_t n = name.len < sizeof(tmp) - 1 ? name.len : sizeof(tmp) - 1;
    memcpy(tmp, name.p, n);
    tmp[n] = '\0';
    int i = loadstats_server_index(st, tmp);
    if (i >= 0)
        return (unsigned)i;
    unsigned real = 0;
    for (unsigned k = 0; k < st->nservers; k++)
        if (strcmp(st->names[k], LOADSTATS_NONE) != 0 && strcmp(st->names[k], LOADSTATS_OTHER) != 0)
            real++;
    if (real >= LOADSTATS_MAX_SERVERS - 2)
        return intern_literal(st, LOADSTATS_OTHER);
    return intern_literal(st, tmp);
}

static struct loadstats_window *window_at(struct loadstats *st, uint64_t now_us)
{
    size_t idx = (size_t)(now_us / st->window_us);
    if (idx >= st->cap_windows) {
        size_t cap = st->cap_windows ? st->cap_windows : 64;
        while (cap <= idx)
            cap *= 2;
        st->windows = xrealloc(st->windows, cap * sizeof(*st->windows));
        memset(st->windows + st->cap_windows, 0,
               (cap - st->cap_windows) * sizeof(*st->windows));
        st->cap_windows = cap;
    }
    if (idx >= st->nwindows)
        st->nwindows = idx + 1;
    return &st->windows[idx];
}

static uint64_t latest_time(const struct loadstats *st)
{
    const struct loadstats_phase *ph = &st->phases[st->nphases - 1];
    uint64_t t = ph->start_us;
    if (st->has_ok && st->last_ok_us > t)
        t = st->last_ok_us;
    return t;
}

void loadstats_record(struct loadstats *st, uint64_t now_us, enum loadstats_outcome outcome,
                      uint64_t latency_us, struct slice server)
{
    TD_ASSERT(outcome >= LOADSTATS_OK && outcome < LOADSTATS_NOUTCOMES);
    uint64_t floor_us = latest_time(st);
    if (now_us < floor_us)
        now_us = floor_us;
    struct loadstats_phase *ph = &st->phases[st->nphases - 1];
    struct loadstats_window *w = st->window_us ? window_at(st, now_us) : NULL;
    st->c.requests++;
    ph->c.requests++;
    if (outcome != LOADSTATS_OK) {
        st->c.failed++;
        ph->c.failed++;
        st->c.errors[outcome]++;
        ph->c.errors[outcome]++;
        if (w)
            w->failed++;
        return;
    }
    unsigned s = intern(st, server);
    st->c.ok++;
    ph->c.ok++;
    st->c.servers[s]++;
    if (ph->c.servers[s]++ == 0)
        ph->server_first_us[s] = now_us;
    hist_record(&st->lat, latency_us);
    hist_record(&ph->lat, latency_us);
    if (w) {
        w->ok++;
        w->servers[s]++;
    }
    if (st->has_ok) {
        uint64_t gap = now_us - st->last_ok_us;
        if (gap > st->longest_gap_us) {
            st->longest_gap_us = gap;
            st->gap_end_us = now_us;
        }
        if (gap > ph->longest_gap_us) {
            ph->longest_gap_us = gap;
            ph->gap_end_us = now_us;
        }
    } else {
        st->has_ok = true;
        st->first_ok_us = now_us;
    }
    st->last_ok_us = now_us;
    if (!ph->has_ok) {
        ph->has_ok = true;
        ph->first_ok_us = now_us;
    }
    ph->last_ok_us = now_us;
}

int loadstats_mark(struct loadstats *st, uint64_t now_us)
{
    if (st->nphases >= LOADSTATS_MAX_PHASES)
        return -1;
    uint64_t floor_us = latest_time(st);
    if (now_us < floor_us)
        now_us = floor_us;
    st->phases[st->nphases - 1].end_us = now_us;
    phase_init(&st->phases[st->nphases], now_us);
    return (int)st->nphases++;
}

void loadstats_finish(struct loadstats *st, uint64_t now_us)
{
    uint64_t floor_us = latest_time(st);
    if (now_us < floor_us)
        now_us = floor_us;
    st->end_us = now_us;
    st->phases[st->nphases - 1].end_us = now_us;
}
