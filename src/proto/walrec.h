/* SPDX-License-Identifier: MIT */
/* proto/walrec.h -- the write-ahead log record codec (pure: no I/O).
 *
 * A record is a 32-byte header followed by a payload, all integers little-endian:
 *
 *   off size field
 *     0    4 magic        "TWR1" (0x31525754 read as little-endian u32)
 *     4    4 payload_len  bytes of payload, at most WALREC_MAX_PAYLOAD
 *     8    8 lsn          log sequence number, >= 1, +1 per record
 *    16    8 term         term in which the record was written
 *    24    4 payload_crc  CRC-32C of the payload
 *    28    4 header_crc   CRC-32C of bytes 0..27
 *
 *   payload: u32 argc, then argc times (u32 len, len bytes) -- one command's argument vector,
 *   in resolved (deterministic) form. argc 0 is a no-op record (used to open a term).
 *
 * The header has its own CRC so a damaged length is never trusted: a reader can tell "this
 * header is intact but its payload is not all here yet" (a torn tail) from "these bytes are
 * not a record" (corruption). docs/wal.md explains how recovery uses that. */
#ifndef TD_PROTO_WALREC_H
#define TD_PROTO_WALREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/buf.h"

#define WALREC_MAGIC 0x31525754u /* "TWR1" */
#define WALREC_HEADER_SIZE 32
#define WALREC_MAX_PAYLOAD (1u << 30)

/* A decoded record. Slices borrow the decoded buffer. */
struct walrec {
    uint64_t lsn;
    uint64_t term;
    uint32_t argc;
    struct slice payload; /* the payload bytes (argc + arguments) */
    struct slice raw;     /* the whole record, header included (for streaming it verbatim) */
};

/* Encoded size of a record holding argv[0..argc). */
size_t walrec_size(size_t argc, const struct slice *argv);
/* Appends one record to out. lsn >= 1; argv may be NULL when argc is 0. The payload must not
 * exceed WALREC_MAX_PAYLOAD (asserted). Returns the bytes appended. */
size_t walrec_encode(struct buf *out, uint64_t lsn, uint64_t term, size_t argc,
                     const struct slice *argv);

/* Decodes the record at p[0..n). Returns the record's size (> 0) and fills *rec; TD_EINCOMPLETE
 * when p holds an intact header (or fewer than WALREC_HEADER_SIZE bytes that could still
 * start one) but not the whole record; TD_ECORRUPT when the bytes are not a valid record (bad
 * magic, header CRC, length, payload CRC or payload structure). Never reads past p + n. */
ssize_t walrec_decode(const char *p, size_t n, struct walrec *rec);
/* Fills argv[0..rec->argc) with the arguments of a record returned by walrec_decode (argv must
 * have room for rec->argc slices). Slices borrow the decoded buffer. */
void walrec_argv(const struct walrec *rec, struct slice *argv);

/* Classification of a segment's bytes by walrec_scan. */
enum walrec_scan_status {
    WALREC_SCAN_CLEAN = 0, /* every byte belongs to a valid record */
    WALREC_SCAN_TORN,      /* valid records, then bytes that hold no valid record at all */
    WALREC_SCAN_CORRUPT,   /* a bad region followed by a valid record, or a sequence break */
};

struct walrec_scan {
    enum walrec_scan_status status;
    size_t good_len; /* bytes of the valid prefix: records [0, nrecords) */
    uint64_t nrecords;
    uint64_t first_lsn; /* of the prefix; 0 when empty */
    uint64_t last_lsn;  /* of the prefix; 0 when empty */
    uint64_t last_term; /* of the prefix; 0 when empty */
    size_t next_valid;  /* CORRUPT: offset of a valid record after the bad region, else 0 */
    uint64_t next_lsn;  /* CORRUPT: lsn of that record (0 for a sequence break) */
    int reason;         /* TD_ECORRUPT or TD_EINCOMPLETE at good_len, 0 when CLEAN */
    bool seq_break;     /* CORRUPT because a valid record broke the lsn/term sequence */
};

/* Called for each record of the valid prefix, in order; a non-zero return stops the scan and
 * is returned by walrec_scan. */
typedef int (*walrec_scan_fn)(void *ud, const struct walrec *rec);

/* Scans p[0..n), the content of one log segment, record by record. expect_lsn is the lsn the
 * first record must carry (0: any); each next record must carry lsn + 1 and a term not lower
 * than the previous one. min_term is the lowest term the first record may have. fn (may be
 * NULL) sees each record of the valid prefix. On the first undecodable record the rest of the
 * buffer is searched for any valid record: none makes the status TORN, one makes it CORRUPT.
 * A valid record out of sequence is CORRUPT too (seq_break). Returns 0 or fn's non-zero
 * value. Pure and bounded: O(n) decode attempts after a bad record. */
int walrec_scan(const char *p, size_t n, uint64_t expect_lsn, uint64_t min_term, walrec_scan_fn fn,
                void *ud, struct walrec_scan *out);
/* Offset of the first valid record in p[from..n), or -1 when there is none. */
ssize_t walrec_find_valid(const char *p, size_t n, size_t from);

#endif
