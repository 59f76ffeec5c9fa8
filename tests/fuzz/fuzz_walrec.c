/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the WAL reader on arbitrary bytes, as recovery sees a damaged segment.
 * Runs the segment scan (with argv decoding of every record of the valid prefix), the
 * "is there a valid record further on" search, a record-by-record decode at every offset of
 * the first bytes, and the snapshot frame parser. Checks the scan's own invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/crc32c.h"
#include "base/endian.h"
#include "base/err.h"
#include "proto/walrec.h"
#include "store/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct acc {
    size_t bytes;
    uint64_t sum;
    uint64_t prev_lsn;
};

static int on_rec(void *ud, const struct walrec *rec)
{
    struct acc *a = ud;
    if (a->prev_lsn && rec->lsn != a->prev_lsn + 1)
        abort(); /* the scan promised a gap-free sequence */
    a->prev_lsn = rec->lsn;
    struct slice argv[64];
    if (rec->argc <= 64) {
        walrec_argv(rec, argv);
        for (uint32_t i = 0; i < rec->argc; i++)
            if (argv[i].len)
                a->sum += (unsigned char)argv[i].p[argv[i].len - 1];
    }
    a->bytes += rec->raw.len;
    return 0;
}

/* Rewrites the CRCs of every record the bytes claim to hold, so the fuzzer can reach the
 * payload-structure and sequence checks that random bytes never get past. */
static void fix_crcs(char *p, size_t n)
{
    size_t off = 0;
    while (n - off >= WALREC_HEADER_SIZE && le_get32(p + off) == WALREC_MAGIC) {
        uint32_t plen = le_get32(p + off + 4);
        if (plen > n - off - WALREC_HEADER_SIZE)
            break;
        le_put32(p + off + 24, crc32c(p + off + WALREC_HEADER_SIZE, plen));
        le_put32(p + off + 28, crc32c(p + off, 28));
        off += WALREC_HEADER_SIZE + plen;
    }
}

static int scan_one(const char *p, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && (data[0] & 0x80) && size < (1u << 20)) {
        char *copy = malloc(size - 1);
        memcpy(copy, data + 1, size - 1);
        fix_crcs(copy, size - 1);
        scan_one(copy, size - 1);
        free(copy);
        return 0;
    }
    return scan_one((const char *)data, size);
}

static int scan_one(const char *p, size_t size)
{
    struct acc a = {0, 0, 0};
    struct walrec_scan sc;
    walrec_scan(p, size, 0, 0, on_rec, &a, &sc);
    if (sc.good_len != a.bytes || sc.good_len > size)
        abort();
    if (sc.status == WALREC_SCAN_CLEAN && sc.good_len != size)
        abort();
    if (sc.status == WALREC_SCAN_CORRUPT && !sc.seq_break &&
        (sc.next_valid <= sc.good_len || sc.next_valid >= size))
        abort();
    ssize_t v = walrec_find_valid(p, size, 0);
    if (v >= 0 && (size_t)v >= size)
        abort();
    for (size_t off = 0; off < size && off < 64; off++) {
        struct walrec rec;
        ssize_t r = walrec_decode(p + off, size - off, &rec);
        if (r > 0 && (size_t)r > size - off)
            abort();
    }
    /* The same bytes as snapshot frames. */
    struct slice *vals = NULL;
    size_t cap = 0, off = 0;
    struct snapshot_info info;
    if (size >= SNAPSHOT_HEADER_SIZE && snapshot_parse_header(p, size, &info) == 0)
        off = SNAPSHOT_HEADER_SIZE;
    while (off < size) {
        struct snapshot_item it;
        bool is_end;
        uint64_t count;
        ssize_t r = snapshot_parse_frame(p + off, size - off, &it, &vals, &cap, &is_end, &count);
        if (r <= 0)
            break;
        if (!is_end)
            for (size_t i = 0; i < it.nvals; i++)
                a.sum += it.vals[i].len;
        off += (size_t)r;
    }
    free(vals);
    return (int)(a.sum & 0);
}
