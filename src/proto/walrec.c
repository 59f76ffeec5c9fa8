/* SPDX-License-Identifier: MIT */
/* proto/walrec.c -- WAL record encode/decode and the segment scan that tells a torn tail from
 * corruption. Layout in walrec.h; the rules in docs/wal.md. Invariants: the decoder never reads
 * outside [p, p+n); a length is used only after the header CRC vouched for it. */
#include "proto/walrec.h"

#include <string.h>

#include "base/crc32c.h"
#include "base/endian.h"
#include "base/err.h"

static size_t payload_size(size_t argc, const struct slice *argv)
{
    size_t n = 4 + 4 * argc;
    for (size_t i = 0; i < argc; i++)
        n += argv[i].len;
    return n;
}

size_t walrec_size(size_t argc, const struct slice *argv)
{
    return WALREC_HEADER_SIZE + payload_size(argc, argv);
}

size_t walrec_encode(struct buf *out, uint64_t lsn, uint64_t term, size_t argc,
                     const struct slice *argv)
{
    size_t plen = payload_size(argc, argv);
    TD_ASSERT(lsn >= 1);
    TD_ASSERT(plen <= WALREC_MAX_PAYLOAD);
    size_t total = WALREC_HEADER_SIZE + plen;
    buf_reserve(out, total);
    char *h = out->p + out->len;
    char *p = h + WALREC_HEADER_SIZE;
    le_put32(p, (uint32_t)argc);
    char *q = p + 4;
    for (size_t i = 0; i < argc; i++) {
        le_put32(q, (uint32_t)argv[i].len);
        if (argv[i].len)
            memcpy(q + 4, argv[i].p, argv[i].len);
        q += 4 + argv[i].len;
    }
    le_put32(h, WALREC_MAGIC);
    le_put32(h + 4, (uint32_t)plen);
    le_put64(h + 8, lsn);
    le_put64(h + 16, term);
    le_put32(h + 24, crc32c(p, plen));
    le_put32(h + 28, crc32c(h, 28));
    out->len += total;
    return total;
}

/* True when the bytes present could be the start of a record header. */
static bool magic_prefix(const char *p, size_t n)
{
    char m[4];
    le_put32(m, WALREC_MAGIC);
    return memcmp(p, m, n < 4 ? n : 4) == 0;
}

/* Checks the header at p (at least WALREC_HEADER_SIZE bytes): 0 when intact. */
static int check_header(const char *p)
{
    if (le_get32(p) != WALREC_MAGIC)
        return TD_ECORRUPT;
    if (crc32c(p, 28) != le_get32(p + 28))
        return TD_ECORRUPT;
    if (le_get32(p + 4) > WALREC_MAX_PAYLOAD || le_get32(p + 4) < 4 || le_get64(p + 8) == 0)
        return TD_ECORRUPT;
    return 0;
}

/* Checks the argv structure of a payload; returns argc or TD_ECORRUPT. */
static int64_t check_payload(const char *p, size_t n)
{
    if (n < 4)
        return TD_ECORRUPT;
    uint32_t argc = le_get32(p);
    if (argc > (n - 4) / 4)
        return TD_ECORRUPT;
    size_t off = 4;
    for (uint32_t i = 0; i < argc; i++) {
        if (n - off < 4)
            return TD_ECORRUPT;
        uint32_t len = le_get32(p + off);
        off += 4;
        if (len > n - off)
            return TD_ECORRUPT;
        off += len;
    }
    return off == n ? (int64_t)argc : TD_ECORRUPT;
}

ssize_t walrec_decode(const char *p, size_t n, struct walrec *rec)
{
    if (n < WALREC_HEADER_SIZE)
        return magic_prefix(p, n) ? TD_EINCOMPLETE : TD_ECORRUPT;
    if (check_header(p) != 0)
        return TD_ECORRUPT;
    size_t plen = le_get32(p + 4);
    if (n - WALREC_HEADER_SIZE < plen)
        return TD_EINCOMPLETE;
    const char *pl = p + WALREC_HEADER_SIZE;
    if (crc32c(pl, plen) != le_get32(p + 24))
        return TD_ECORRUPT;
    int64_t argc = check_payload(pl, plen);
    if (argc < 0)
        return TD_ECORRUPT;
    rec->lsn = le_get64(p + 8);
    rec->term = le_get64(p + 16);
    rec->argc = (uint32_t)argc;
    rec->payload = slice_of(pl, plen);
    rec->raw = slice_of(p, WALREC_HEADER_SIZE + plen);
    return (ssize_t)(WALREC_HEADER_SIZE + plen);
}

void walrec_argv(const struct walrec *rec, struct slice *argv)
{
    const char *p = rec->payload.p;
    size_t off = 4;
    for (uint32_t i = 0; i < rec->argc; i++) {
        uint32_t len = le_get32(p + off);
        argv[i] = slice_of(p + off + 4, len);
        off += 4 + len;
    }
}

ssize_t walrec_find_valid(const char *p, size_t n, size_t from)
{
    char m[4];
    le_put32(m, WALREC_MAGIC);
    struct walrec rec;
    for (size_t off = from; off + WALREC_HEADER_SIZE <= n && off >= from; off++) {
        const char *hit = memchr(p + off, m[0], n - off - WALREC_HEADER_SIZE + 1);
        if (hit == NULL)
            return -1;
        off = (size_t)(hit - p);
        if (memcmp(hit, m, 4) == 0 && walrec_decode(hit, n - off, &rec) > 0)
            return (ssize_t)off;
    }
    return -1;
}

int walrec_scan(const char *p, size_t n, uint64_t expect_lsn, uint64_t min_term, walrec_scan_fn fn,
                void *ud, struct walrec_scan *out)
{
    memset(out, 0, sizeof(*out));
    size_t off = 0;
    uint64_t prev_lsn = expect_lsn ? expect_lsn - 1 : 0;
    uint64_t prev_term = min_term;
    while (off < n) {
        struct walrec rec;
        ssize_t r = walrec_decode(p + off, n - off, &rec);
        if (r > 0) {
            bool in_seq = (out->nrecords == 0 && expect_lsn == 0) || rec.lsn == prev_lsn + 1;
            if (!in_seq || rec.term < prev_term) {
                out->status = WALREC_SCAN_CORRUPT;
                out->good_len = off;
                out->reason = TD_ECORRUPT;
                out->seq_break = true;
                out->next_valid = off;
                out->next_lsn = rec.lsn;
                return 0;
            }
            if (fn) {
                int rc = fn(ud, &rec);
                if (rc != 0)
                    return rc;
            }
            if (out->nrecords == 0)
                out->first_lsn = rec.lsn;
            out->nrecords++;
            out->last_lsn = rec.lsn;
            out->last_term = rec.term;
            prev_lsn = rec.lsn;
            prev_term = rec.term;
            off += (size_t)r;
            out->good_len = off;
            continue;
        }
        /* A bad record at off. When its header is intact, its length is trustworthy and the
         * claimed payload is skipped: bytes inside a payload are data, not records. */
        out->reason = (int)r;
        size_t from = off + 1;
        if (n - off >= WALREC_HEADER_SIZE && check_header(p + off) == 0) {
            uint64_t end = (uint64_t)off + WALREC_HEADER_SIZE + le_get32(p + off + 4);
            from = end > n ? n : (size_t)end;
        }
        ssize_t v = walrec_find_valid(p, n, from);
        if (v < 0) {
            out->status = WALREC_SCAN_TORN;
        } else {
            out->status = WALREC_SCAN_CORRUPT;
            out->next_valid = (size_t)v;
            struct walrec nx;
            walrec_decode(p + v, n - (size_t)v, &nx);
            out->next_lsn = nx.lsn;
        }
        return 0;
    }
    out->status = WALREC_SCAN_CLEAN;
    return 0;
}
