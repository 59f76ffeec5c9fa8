/* SPDX-License-Identifier: MIT */
/* coord/etcd_json.h -- the pure half of the etcd backend: request bodies and response parsing
 * for etcd v3's JSON gateway (v3.4 paths under /v3/), and base64 for keys and values.
 *
 * No I/O, no clock, no logging: coord/dcs_etcd.c sends what etcd_json_request() builds and feeds
 * the HTTP status and body it got back to etcd_json_response(). Mapping (dcs.h):
 *   GRANT      POST /v3/lease/grant      {"TTL":"s"}  s = ttl_ms rounded up to seconds, >= 1
 *   KEEPALIVE  POST /v3/lease/keepalive  {"ID":"n"}   200 without TTL: DCS_ENOLEASE
 *   REVOKE     POST /v3/lease/revoke     {"ID":"n"}   "requested lease not found": DCS_ENOLEASE
 *   READ       POST /v3/kv/range         key = prefix, range_end = prefix + 1
 *   TXN        POST /v3/kv/txn           rev 0: CREATE == 0 (absent), else MOD == rev;
 *                                        not succeeded: DCS_ECOMPARE; lease gone: DCS_ENOLEASE
 * Any other answer (5xx, malformed JSON, an unexpected error) is DCS_EUNAVAIL: outcome unknown.
 * int64 values travel as JSON strings, keys and values as base64. */
#ifndef TD_COORD_ETCD_JSON_H
#define TD_COORD_ETCD_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "coord/dcs.h"

/* A parsed response: res is what the backend hands to on_result. res.kvs and the slices in it
 * point into kvs and data, owned here until etcd_json_result_free(). */
struct etcd_json_result {
    struct dcs_result res;
    struct dcs_kv *kvs;
    char *data;
    char msg[128]; /* etcd's error message when it sent one, for the log; "" otherwise */
};

/* Appends the standard base64 (RFC 4648, padded) of p[0..n) to out. */
void etcd_json_b64_encode(struct buf *out, const void *p, size_t n);
/* Decodes n bytes of padded base64 into out (room for n / 4 * 3 bytes needed); returns the
 * decoded length, or -EINVAL for bad characters, bad padding or a length not a multiple of 4. */
long etcd_json_b64_decode(const char *in, size_t n, char *out);

/* The range end that selects every key starting with prefix (etcd's "prefix + 1"): the prefix
 * with its last byte below 0xff incremented and what follows it dropped; "\0" (every key) when
 * there is none. Appended to out. */
void etcd_json_prefix_end(struct buf *out, struct slice prefix);

/* Sets *path to the gateway path for req->op (a static string) and appends the JSON body to
 * body. Returns 0, or -EINVAL for a request etcd cannot express (an unknown op, more than
 * DCS_TXN_MAX compares or writes, a lease of 0 for KEEPALIVE/REVOKE, an empty key). */
int etcd_json_request(const struct dcs_req *req, const char **path, struct buf *body);

/* Parses the answer to a request of kind op: http_status and body[0..len). Always fills out
 * (free it with etcd_json_result_free): out->res.status is DCS_OK, DCS_ECOMPARE, DCS_ENOLEASE or
 * DCS_EUNAVAIL; id is set to req_id. Returns out->res.status. */
int etcd_json_response(enum dcs_op op, uint64_t req_id, long http_status, const char *body,
                       size_t len, struct etcd_json_result *out);
/* Frees what etcd_json_response() allocated; safe on a zeroed or already freed result. */
void etcd_json_result_free(struct etcd_json_result *r);

/* Appends the body of a watch create request for every key under prefix, to POST to
 * /v3/watch. start_rev 0: from now on. */
void etcd_json_watch_request(struct slice prefix, uint64_t start_rev, struct buf *body);

/* What a stretch of the watch stream said. */
struct etcd_json_watch_msg {
    unsigned created; /* "created" answers (the watch is live) */
    unsigned events;  /* change events */
    bool ended;       /* canceled, or an error message: the stream is over */
    uint64_t rev;     /* highest header revision seen; 0 if none */
    char msg[128];    /* cancel reason or error message when ended */
};

#define ETCD_JSON_WATCH_LINE_MAX (4u << 20) /* a longer line is a broken stream */

/* Feeds stream bytes p[0..n) (any split). Complete lines are parsed and accumulated into *m
 * (which the caller zeroes); an incomplete line stays in acc for the next call. Returns 0, or
 * TD_ECORRUPT for malformed JSON or a line beyond ETCD_JSON_WATCH_LINE_MAX (end the stream). */
int etcd_json_watch_feed(struct buf *acc, const char *p, size_t n, struct etcd_json_watch_msg *m);

#endif
