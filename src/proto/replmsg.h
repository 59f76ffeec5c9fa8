/* SPDX-License-Identifier: MIT */
/* proto/replmsg.h -- the replication wire messages (pure codec: no I/O, no logging).
 *
 * Replication runs on the store's normal RESP port, as Redis's PSYNC does. docs/replication.md
 * has the full story; in short:
 *
 *   replica -> primary   REPLSYNC <secret> <node> <last_lsn> <last_term> <base_lsn>
 *                          [<term> <first_lsn>]... [V2]
 *                        (a RESP command; the optional pairs are the replica's term history,
 *                        oldest first, at most REPLMSG_MAX_TERMS pairs; V2: the replica
 *                        understands the common prefix in +FULL)
 *   primary -> replica   +CONTINUE <after_lsn> <term>    stream records after_lsn+1...
 *                        +TRUNCATE <after_lsn> <term>    discard records > after_lsn, then stream
 *                        +FULL <snapshot_lsn> <term> [<common>]
 *                                                        snapshot frames, then records; common
 *                                                        (only to a V2 replica, only when
 *                                                        proven): the replica's records after
 *                                                        it diverged and are to be audited
 *                        -<error>                        refused (bad secret, stale term...)
 *   primary -> replica   frames, each one RESP bulk "$<len>\r\n<type><body>\r\n":
 *                        'W' one or more WAL records (proto/walrec encoding, verbatim)
 *                        'H' heartbeat: u64 term, u64 commit_lsn, u64 last_lsn (little-endian)
 *                        'S' a chunk of the snapshot file
 *                        'E' end of snapshot: u64 lsn, u64 term, u64 total bytes
 *   replica -> primary   REPLACK <durable_lsn> <term>  (a RESP command; no reply)
 *
 * Commands from the replica are parsed by the ordinary RESP parser; this codec checks their
 * argument vectors. */
#ifndef TD_PROTO_REPLMSG_H
#define TD_PROTO_REPLMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/buf.h"

#define REPLMSG_MAX_TERMS 32
/* Largest frame body: one maximal WAL record plus the type byte, with slack. */
#define REPLMSG_MAX_FRAME ((size_t)(1u << 30) + 4096)
#define REPLMSG_MAX_NAME 256
/* Largest lsn or term a replica may state in REPLSYNC or REPLACK (2^63 - 1): no real log gets
 * near it. A larger one is refused, so that a primary that steps down for a replica's term can
 * still be promoted above it (term + 1) without wrapping to 0. */
#define REPLMSG_MAX_NUMBER ((uint64_t)INT64_MAX)

/* The first lsn of one term in a node's log. */
struct replmsg_term_start {
    uint64_t term;
    uint64_t first_lsn;
};

/* The replica's handshake. Slices borrow the parsed argv. */
struct replmsg_hello {
    struct slice secret; /* "" when the primary has no secret */
    struct slice node;   /* replica's node name, 1..REPLMSG_MAX_NAME bytes */
    uint64_t last_lsn;   /* last record in the replica's log (snapshot lsn when none after it) */
    uint64_t last_term;  /* its term */
    uint64_t base_lsn;   /* the replica's snapshot lsn (<= last_lsn): it cannot truncate below */
    size_t nterms;       /* term history, ascending by term and first_lsn; may be empty */
    struct replmsg_term_start terms[REPLMSG_MAX_TERMS];
    /* The trailing "V2": the replica understands "+FULL <lsn> <term> <common>". A primary
     * that predates it refuses such a hello ("wrong number of arguments"); the replica then
     * retries without it (docs/replication.md, "Versions"). */
    bool v2;
};

enum replmsg_answer_kind {
    REPLMSG_CONTINUE = 0,
    REPLMSG_TRUNCATE,
    REPLMSG_FULL,
    REPLMSG_REFUSED,
};

/* The primary's answer to REPLSYNC. */
struct replmsg_answer {
    enum replmsg_answer_kind kind;
    uint64_t lsn;      /* CONTINUE/TRUNCATE: after_lsn; FULL: snapshot lsn */
    uint64_t term;     /* the primary's term */
    struct slice text; /* REFUSED: the error text (borrows the input), else empty */
    /* FULL only: the proven end of the common prefix of the two logs (a 4th number on the
     * line). has_common false: not sent (unproven, or a replica without V2). */
    bool has_common;
    uint64_t common;
};

enum replmsg_frame_type {
    REPLMSG_FRAME_WAL = 'W',
    REPLMSG_FRAME_HEARTBEAT = 'H',
    REPLMSG_FRAME_SNAP_CHUNK = 'S',
    REPLMSG_FRAME_SNAP_END = 'E',
    REPLMSG_FRAME_FAILSAFE = 'F', /* failsafe ping: term, round, valid_ms */
};

/* One decoded frame. Slices borrow the input. */
struct replmsg_frame {
    enum replmsg_frame_type type;
    /* WAL: the records (verbatim bytes), their count and range. */
    struct slice records;
    uint64_t nrecords, first_lsn, last_lsn, last_term;
    /* HEARTBEAT: term, commit_lsn, last_lsn; SNAP_END: term, lsn (in last_lsn), total_bytes. */
    uint64_t term, commit_lsn, total_bytes;
    /* SNAP_CHUNK: the bytes. */
    struct slice chunk;
    /* FAILSAFE: term (above), the primary's round and how long the promise must hold. */
    uint64_t round, valid_ms;
};

/* --- Replica -> primary commands --- */

/* Appends h as a REPLSYNC RESP command to out. h must satisfy replmsg_hello_parse's rules. */
void replmsg_hello_encode(struct buf *out, const struct replmsg_hello *h);
/* Checks a REPLSYNC argument vector (argv[0] is the command name, any case; numbers at most
 * REPLMSG_MAX_NUMBER) and fills *h (slices borrow argv). Returns 0, or TD_EPROTO_RESP with a
 * static message in *why. */
int replmsg_hello_parse(size_t argc, const struct slice *argv, struct replmsg_hello *h,
                        const char **why);
/* Appends "REPLACK <lsn> <term>" as a RESP command. */
void replmsg_ack_encode(struct buf *out, uint64_t lsn, uint64_t term);
/* Checks a REPLACK argument vector (numbers at most REPLMSG_MAX_NUMBER); fills *lsn and *term.
 * 0 or TD_EPROTO_RESP. */
int replmsg_ack_parse(size_t argc, const struct slice *argv, uint64_t *lsn, uint64_t *term);

/* Appends "REPLFS <term> <round>": the replica confirms failsafe ping round of term. */
void replmsg_failsafe_ack_encode(struct buf *out, uint64_t term, uint64_t round);
/* Checks a REPLFS argument vector (numbers at most REPLMSG_MAX_NUMBER). 0 or TD_EPROTO_RESP. */
int replmsg_failsafe_ack_parse(size_t argc, const struct slice *argv, uint64_t *term,
                               uint64_t *round);

/* --- Primary -> replica --- */

/* Appends the answer line (REFUSED: "-<text>", CR/LF in text replaced by spaces). */
void replmsg_answer_encode(struct buf *out, const struct replmsg_answer *a);
/* Parses the answer line at p[0..n). Returns the bytes consumed, TD_EINCOMPLETE, or
 * TD_EPROTO_RESP (not an answer line; no line end within 512 bytes counts as that). */
ssize_t replmsg_answer_parse(const char *p, size_t n, struct replmsg_answer *a);

/* Appends a WAL frame holding the already-encoded records recs[0..len) (1 or more). */
void replmsg_frame_wal(struct buf *out, const char *recs, size_t len);
/* Appends a heartbeat frame. */
void replmsg_frame_heartbeat(struct buf *out, uint64_t term, uint64_t commit_lsn,
                             uint64_t last_lsn);
/* Appends a failsafe ping frame: "do you follow me in term? promise not to take over for
 * valid_ms" (coord/agent.h, failsafe). */
void replmsg_frame_failsafe(struct buf *out, uint64_t term, uint64_t round, uint64_t valid_ms);
/* Appends a snapshot chunk frame (len >= 1). */
void replmsg_frame_snap_chunk(struct buf *out, const char *p, size_t len);
/* Appends the end-of-snapshot frame. */
void replmsg_frame_snap_end(struct buf *out, uint64_t lsn, uint64_t term, uint64_t total_bytes);
/* Parses the frame at p[0..n). Returns the bytes consumed, TD_EINCOMPLETE, TD_EPROTO_RESP
 * (bad framing, unknown type, wrong body size) or TD_ECORRUPT (a WAL frame whose records do
 * not decode, or whose lsns are not consecutive or terms decrease). Never reads past p + n. */
ssize_t replmsg_frame_parse(const char *p, size_t n, struct replmsg_frame *f);

#endif
