/* SPDX-License-Identifier: MIT */
/* harness/loadreport.c -- JSON (cJSON, key order as documented) and text reports of a load run.
 * Times are printed in milliseconds rounded to the microsecond. */
#include "harness/loadreport.h"

#include <math.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/err.h"

static double ms3(uint64_t us)
{
    return (double)us / 1000.0;
}

static double round3(double v)
{
    return round(v * 1000.0) / 1000.0;
}

double loadreport_duration_s(const struct loadstats *st)
{
    uint64_t us = st->end_us ? st->end_us : 1;
    return (double)us / 1e6;
}

static void add_num(cJSON *o, const char *k, double v)
{
    if (cJSON_AddNumberToObject(o, k, v) == NULL)
        td_panic("out of memory building JSON");
}

static cJSON *obj(cJSON *parent, const char *k)
{
    cJSON *o = cJSON_AddObjectToObject(parent, k);
    if (o == NULL)
        td_panic("out of memory building JSON");
    return o;
}

static size_t timeline_len(const struct loadstats *st)
{
    if (st->window_us == 0)
        return 0;
    /* whole windows up to the end, plus a last partial one only when something landed in it */
    size_t n = (size_t)(st->end_us / st->window_us);
    return n > st->nwindows ? n : st->nwindows;
}

char *loadreport_json(const struct loadstats *st)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        td_panic("out of memory building JSON");
    add_num(root, "requests", (double)st->c.requests);
    add_num(root, "ok", (double)st->c.ok);
    add_num(root, "failed", (double)st->c.failed);
    cJSON *errs = obj(root, "errors");
    for (int o = LOADSTATS_ERR_CONNECT; o < LOADSTATS_NOUTCOMES; o++)
        add_num(errs, loadstats_outcome_name((enum loadstats_outcome)o), (double)st->c.errors[o]);
    double dur = loadreport_duration_s(st);
    add_num(root, "duration_s", round3(dur));
    add_num(root, "rps", round(st->c.ok / dur * 10.0) / 10.0);
    cJSON *lat = obj(root, "latency_ms");
    add_num(lat, "p50", ms3(hist_percentile(&st->lat, 50)));
    add_num(lat, "p99", ms3(hist_percentile(&st->lat, 99)));
    add_num(lat, "max", ms3(st->lat.max));
    add_num(root, "longest_gap_ms", ms3(st->longest_gap_us));
    if (st->has_ok) {
        add_num(root, "first_ok_ms", ms3(st->first_ok_us));
        add_num(root, "last_ok_ms", ms3(st->last_ok_us));
    } else {
        cJSON_AddNullToObject(root, "first_ok_ms");
        cJSON_AddNullToObject(root, "last_ok_ms");
    }
    cJSON *srv = obj(root, "servers");
    for (unsigned i = 0; i < st->nservers; i++)
        add_num(srv, st->names[i], (double)st->c.servers[i]);
    /* phases: the run split at each SIGUSR1 mark; a gap belongs to the phase it ends in */
    cJSON *ph = cJSON_AddArrayToObject(root, "phases");
    if (ph == NULL)
        td_panic("out of memory building JSON");
    for (unsigned k = 0; k < st->nphases; k++) {
        const struct loadstats_phase *p = &st->phases[k];
        cJSON *e = cJSON_CreateObject();
        if (e == NULL)
            td_panic("out of memory building JSON");
        cJSON_AddItemToArray(ph, e);
        add_num(e, "start_ms", ms3(p->start_us));
        add_num(e, "end_ms", ms3(p->end_us));
        add_num(e, "ok", (double)p->c.ok);
        add_num(e, "failed", (double)p->c.failed);
        add_num(e, "longest_gap_ms", ms3(p->longest_gap_us));
        cJSON *ps = obj(e, "servers");
        for (unsigned i = 0; i < st->nservers; i++)
            add_num(ps, st->names[i], (double)p->c.servers[i]);
    }
    cJSON *tl = cJSON_AddArrayToObject(root, "timeline");
    if (tl == NULL)
        td_panic("out of memory building JSON");
    size_t nw = timeline_len(st);
    for (size_t w = 0; w < nw; w++) {
        static const struct loadstats_window empty;
        const struct loadstats_window *win = w < st->nwindows ? &st->windows[w] : &empty;
        cJSON *e = cJSON_CreateObject();
        if (e == NULL)
            td_panic("out of memory building JSON");
        cJSON_AddItemToArray(tl, e);
        add_num(e, "t_ms", (double)(w * st->window_us / 1000u));
        add_num(e, "ok", win->ok);
        add_num(e, "failed", win->failed);
        cJSON *ws = obj(e, "servers");
        for (unsigned i = 0; i < st->nservers; i++)
            add_num(ws, st->names[i], win->servers[i]);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (s == NULL)
        td_panic("out of memory printing JSON");
    /* cJSON allocates with malloc by default, so free() releases it */
    return s;
}

void loadreport_text(const struct loadstats *st, const char *url, unsigned connections,
                     FILE *out)
{
    double dur = loadreport_duration_s(st);
    fprintf(out, "tandem load: %s, %u connections, %.2f s\n", url, connections, dur);
    fprintf(out, "  requests    %llu   ok %llu   failed %llu", (unsigned long long)st->c.requests,
            (unsigned long long)st->c.ok, (unsigned long long)st->c.failed);
    if (st->c.failed) {
        fputs(" (", out);
        const char *sep = "";
        for (int o = LOADSTATS_ERR_CONNECT; o < LOADSTATS_NOUTCOMES; o++) {
            if (st->c.errors[o] == 0)
                continue;
            fprintf(out, "%s%s %llu", sep, loadstats_outcome_name((enum loadstats_outcome)o),
                    (unsigned long long)st->c.errors[o]);
            sep = ", ";
        }
        fputs(")", out);
    }
    fputc('\n', out);
    fprintf(out, "  throughput  %.1f ok responses/s\n", st->c.ok / dur);
    fprintf(out, "  latency     p50 %.3f ms   p99 %.3f ms   max %.3f ms\n",
            ms3(hist_percentile(&st->lat, 50)), ms3(hist_percentile(&st->lat, 99)),
            ms3(st->lat.max));
    if (st->has_ok) {
        fprintf(out, "  first ok    %.3f ms after the start; last ok at %.3f ms\n",
                ms3(st->first_ok_us), ms3(st->last_ok_us));
        fprintf(out, "  longest gap %.3f ms without a successful response", ms3(st->longest_gap_us));
        if (st->longest_gap_us)
            fprintf(out, " (ended at %.3f s)", (double)st->gap_end_us / 1e6);
        fputc('\n', out);
    } else {
        fputs("  no successful response\n", out);
    }
    if (st->nservers) {
        fputs("  servers    ", out);
        for (unsigned i = 0; i < st->nservers; i++)
            fprintf(out, " %s %llu (%.1f%%)", st->names[i], (unsigned long long)st->c.servers[i],
                    st->c.ok ? 100.0 * (double)st->c.servers[i] / (double)st->c.ok : 0.0);
        fputc('\n', out);
    }
    size_t nw = timeline_len(st);
    if (nw == 0)
        return;
    fprintf(out, "  timeline (window %.0f ms)\n    %8s %8s %8s", ms3(st->window_us), "t_ms", "ok",
            "failed");
    for (unsigned i = 0; i < st->nservers; i++)
        fprintf(out, " %10.10s", st->names[i]);
    fputc('\n', out);
    for (size_t w = 0; w < nw; w++) {
        static const struct loadstats_window empty;
        const struct loadstats_window *win = w < st->nwindows ? &st->windows[w] : &empty;
        fprintf(out, "    %8llu %8u %8u", (unsigned long long)(w * st->window_us / 1000u), win->ok,
                win->failed);
        for (unsigned i = 0; i < st->nservers; i++)
            fprintf(out, " %10u", win->servers[i]);
        fputc('\n', out);
    }
}
