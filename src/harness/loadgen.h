/* SPDX-License-Identifier: MIT */
/* harness/loadgen.h -- an HTTP/1.1 keep-alive load generator that runs on a caller's libuv loop.
 *
 * N connections each carry one request at a time (closed loop), optionally paced to a total
 * rate. A request is ok on any complete response with status < 500; it fails on a 5xx, a
 * connect error, a reset or EOF before the response is complete, a malformed response, or a
 * timeout (the connection is then closed and a new one opened). Outcomes go into a
 * struct loadstats (harness/loadstats.h) with timestamps relative to loadgen_start, so callers
 * can read the split per X-Server, gaps and a timeline, and split the run with loadgen_mark()
 * at the moment of an event (a kill, a restart).
 *
 * Lifecycle: loadgen_new (parses, resolves: blocking, config time) → loadgen_start →
 * [loadgen_mark/loadgen_stats while running] → the run ends (duration elapsed or
 * loadgen_stop) → every handle is closed → done callback → loadgen_stats → loadgen_free. */
#ifndef TD_HARNESS_LOADGEN_H
#define TD_HARNESS_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "harness/loadstats.h"

struct loadgen;

struct loadgen_opts {
    const char *url;              /* http://HOST[:PORT][/PATH]; borrowed during loadgen_new */
    const char *method;           /* NULL: GET */
    const char *const *headers;   /* "Name: value" lines, nheaders of them; borrowed */
    size_t nheaders;
    const char *body;             /* NULL: none (a Content-Length is sent when set) */
    unsigned connections;         /* 0: 8 */
    uint64_t duration_ms;         /* 0: until loadgen_stop */
    uint64_t timeout_ms;          /* per attempt, connect included; 0: 1000 */
    uint64_t rate;                /* total requests per second; 0: as fast as possible */
    uint64_t timeline_ms;         /* window of the timeline; 0: no timeline */
    uint64_t reconnect_delay_ms;  /* pause of a connection after a failed connect */
};

/* Called once, on the loop thread, when the run has ended and every handle is closed. */
typedef void (*loadgen_done_cb)(struct loadgen *lg, void *ud);

/* Builds a generator for loop from o (copied). Resolves the URL's host (blocking). Returns 0
 * and *out (owned: loadgen_free), or -EINVAL with the reason written into err. */
int loadgen_new(uv_loop_t *loop, const struct loadgen_opts *o, struct loadgen **out, char *err,
                size_t errlen);
/* Starts the connections and the duration timer; time 0 of the stats is now. done is called
 * exactly once, never synchronously. Returns 0, or a negative code (done not called). */
int loadgen_start(struct loadgen *lg, loadgen_done_cb done, void *ud);
/* Ends the run now: requests still in flight are abandoned (not counted). Idempotent; the
 * done callback follows once the handles are closed. */
void loadgen_stop(struct loadgen *lg);
/* Splits the stats: closes the current phase now and opens the next. Returns the new phase's
 * index, or -1 when no more phases are available. */
int loadgen_mark(struct loadgen *lg);
/* Microseconds since loadgen_start (frozen at the end of the run). */
uint64_t loadgen_elapsed_us(const struct loadgen *lg);
/* True between loadgen_start and the done callback. */
bool loadgen_is_running(const struct loadgen *lg);
/* The accounting so far (live while running, final after done). Borrowed from lg. */
const struct loadstats *loadgen_stats(const struct loadgen *lg);
/* The request target as given ("http://127.0.0.1:8080/whoami"). Borrowed from lg. */
const char *loadgen_url(const struct loadgen *lg);
/* Frees lg. Must not be running (call before loadgen_start or after done). NULL is a no-op. */
void loadgen_free(struct loadgen *lg);

/* Parsed form of an http:// URL. */
struct loadgen_url {
    char host[256];               /* without brackets */
    char authority[270];          /* Host header value: as written in the URL */
    unsigned port;
    char path[2048];              /* starts with '/' */
};

/* Parses "http://HOST[:PORT][/PATH]" (HOST may be [v6]). Pure. Returns 0 or -EINVAL with the
 * reason in err. */
int loadgen_url_parse(const char *url, struct loadgen_url *u, char *err, size_t errlen);

#endif
