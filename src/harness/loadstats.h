/* SPDX-License-Identifier: MIT */
/* harness/loadstats.h -- the accounting behind `tandem load`: outcomes of requests arriving
 * with timestamps (microseconds since the start of the run, injected by the caller) become
 * counts, error reasons, a latency histogram, the traffic split per server, the longest gap
 * between two successful responses, a timeline of fixed windows, and phases split at marks
 * (so "before the kill" and "after the kill" can be read apart). Pure: no I/O, no clock.
 *
 * Gaps: a gap is the time between two consecutive successful completions (on any
 * connection). The time from the start to the first success is reported on its own
 * (first_ok_us), and so is the time of the last success (last_ok_us); neither counts as a gap.
 * A phase owns the gaps that end inside it, so the gap that spans a kill belongs to the phase
 * after the mark. */
#ifndef TD_HARNESS_LOADSTATS_H
#define TD_HARNESS_LOADSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "harness/hist.h"

enum loadstats_outcome {
    LOADSTATS_OK = 0,        /* any complete response with status < 500 */
    LOADSTATS_ERR_CONNECT,   /* connect failed (refused, unreachable, ...) */
    LOADSTATS_ERR_RESET,     /* reset or EOF before a complete response, write error */
    LOADSTATS_ERR_TIMEOUT,   /* no complete response within the timeout */
    LOADSTATS_ERR_5XX,       /* complete response with status >= 500 */
    LOADSTATS_ERR_PROTOCOL,  /* the response could not be parsed */
    LOADSTATS_NOUTCOMES,
};

/* Server names are interned; the first LOADSTATS_MAX_SERVERS - 2 distinct names get their own
 * slot, then everything else is counted under "(other)". A response without the header is
 * counted under "(none)". */
#define LOADSTATS_MAX_SERVERS 16
#define LOADSTATS_NAME_MAX 48
#define LOADSTATS_MAX_PHASES 16
#define LOADSTATS_NONE "(none)"
#define LOADSTATS_OTHER "(other)"

struct loadstats_counts {
    uint64_t requests;           /* ok + failed */
    uint64_t ok;
    uint64_t failed;
    uint64_t errors[LOADSTATS_NOUTCOMES]; /* errors[LOADSTATS_OK] stays 0 */
    uint64_t servers[LOADSTATS_MAX_SERVERS]; /* ok responses per interned server */
};

struct loadstats_phase {
    uint64_t start_us;           /* the mark that opened it (0 for the first phase) */
    uint64_t end_us;             /* the next mark or the end of the run */
    struct loadstats_counts c;
    struct hist lat;             /* latency of ok responses, microseconds */
    uint64_t longest_gap_us;     /* longest gap that ends in this phase */
    uint64_t gap_end_us;         /* when that gap ended (0 if none) */
    bool has_ok;
    uint64_t first_ok_us;        /* first success inside this phase */
    uint64_t last_ok_us;
    uint64_t server_first_us[LOADSTATS_MAX_SERVERS]; /* first ok per server in this phase;
                                                       * valid where c.servers[i] > 0 */
};

struct loadstats_window {
    uint32_t ok;
    uint32_t failed;
    uint32_t servers[LOADSTATS_MAX_SERVERS];
};

struct loadstats {
    struct loadstats_counts c;   /* the whole run */
    struct hist lat;
    uint64_t end_us;             /* set by loadstats_finish; 0 while running */
    bool has_ok;
    uint64_t first_ok_us;
    uint64_t last_ok_us;
    uint64_t longest_gap_us;
    uint64_t gap_end_us;         /* when the longest gap ended */
    unsigned nservers;
    char names[LOADSTATS_MAX_SERVERS][LOADSTATS_NAME_MAX];
    unsigned nphases;            /* >= 1 */
    struct loadstats_phase phases[LOADSTATS_MAX_PHASES];
    uint64_t window_us;          /* 0: no timeline */
    size_t nwindows;             /* windows touched so far */
    size_t cap_windows;
    struct loadstats_window *windows; /* owned */
};

/* Prepares st for a run starting at time 0; window_us 0 disables the timeline. Free with
 * loadstats_free. */
void loadstats_init(struct loadstats *st, uint64_t window_us);
/* Frees the timeline; st may be reinitialised afterwards. */
void loadstats_free(struct loadstats *st);
/* Records one finished request at now_us (monotonic within a run; an earlier time is treated as
 * equal to the latest seen). latency_us counts only for LOADSTATS_OK. server is the X-Server
 * value of an ok response (p NULL: header absent); its bytes are copied. */
void loadstats_record(struct loadstats *st, uint64_t now_us, enum loadstats_outcome outcome,
                      uint64_t latency_us, struct slice server);
/* Closes the current phase at now_us and opens a new one. Returns the index of the new phase,
 * or -1 when LOADSTATS_MAX_PHASES are in use (the current phase then continues). */
int loadstats_mark(struct loadstats *st, uint64_t now_us);
/* Ends the run at now_us (the last phase ends there too). */
void loadstats_finish(struct loadstats *st, uint64_t now_us);
/* Index of the interned name (or -1 when never seen). */
int loadstats_server_index(const struct loadstats *st, const char *name);
/* Name of an outcome as used in reports ("connect", "reset", "timeout", "status_5xx",
 * "protocol"; "ok"). */
const char *loadstats_outcome_name(enum loadstats_outcome o);

#endif
