/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the replication messages on arbitrary bytes. The first byte picks what
 * the rest is: a primary's stream (answer line, then frames), or replica commands (RESP,
 * checked as REPLSYNC/REPLACK). Whatever parses must re-encode to exactly the bytes it was
 * parsed from (one spelling per message), and parsers never read past their input. The stream
 * also goes through the replica's link state machine (store/repl_link) with accepting ops, fed
 * in two pieces: it must never consume more than it was given, and once failed stays failed. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/replmsg.h"
#include "proto/resp.h"
#include "store/repl_link.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_same(const struct buf *b, const char *p, size_t n)
{
    if (b->len != n || memcmp(b->p, p, n) != 0)
        abort();
}

static void fuzz_stream(const char *p, size_t n)
{
    struct buf b;
    buf_init(&b);
    struct replmsg_answer a;
    ssize_t r = replmsg_answer_parse(p, n, &a);
    size_t off = 0;
    if (r > 0) {
        if ((size_t)r > n)
            abort();
        if (a.kind != REPLMSG_REFUSED) {
            replmsg_answer_encode(&b, &a);
            check_same(&b, p, (size_t)r);
        }
        off = (size_t)r;
    }
    while (off < n) {
        struct replmsg_frame f;
        r = replmsg_frame_parse(p + off, n - off, &f);
        if (r <= 0)
            break;
        if ((size_t)r > n - off)
            abort();
        b.len = 0;
        switch (f.type) {
        case REPLMSG_FRAME_WAL:
            if (f.nrecords == 0 || f.last_lsn - f.first_lsn + 1 != f.nrecords)
                abort();
            replmsg_frame_wal(&b, f.records.p, f.records.len);
            break;
        case REPLMSG_FRAME_HEARTBEAT:
            replmsg_frame_heartbeat(&b, f.term, f.commit_lsn, f.last_lsn);
            break;
        case REPLMSG_FRAME_SNAP_CHUNK:
            replmsg_frame_snap_chunk(&b, f.chunk.p, f.chunk.len);
            break;
        case REPLMSG_FRAME_SNAP_END:
            replmsg_frame_snap_end(&b, f.last_lsn, f.term, f.total_bytes);
            break;
        default:
            abort();
        }
        check_same(&b, p + off, (size_t)r);
        off += (size_t)r;
    }
    buf_free(&b);
}

static int nop_term(void *ud, uint64_t term, const char *cause)
{
    (void)ud;
    (void)term;
    if (cause == NULL)
        abort();
    return 0;
}

static int nop_lsn(void *ud, uint64_t lsn)
{
    (void)ud;
    (void)lsn;
    return 0;
}

static int nop_snap(void *ud, uint64_t lsn, uint64_t term)
{
    (void)ud;
    (void)lsn;
    (void)term;
    return 0;
}

static int nop_chunk(void *ud, const char *p, size_t n)
{
    (void)ud;
    (void)p;
    (void)n;
    return 0;
}

static int check_records(void *ud, const struct replmsg_frame *f)
{
    const struct repl_link *l = ud;
    if (f->first_lsn != l->next_lsn || f->last_term > l->term)
        abort(); /* the link must have checked both before applying */
    return 0;
}

static int check_discard(void *ud, bool proven, uint64_t common)
{
    const struct repl_link *l = ud;
    if (proven && common > l->last_lsn)
        abort(); /* the link must refuse a common prefix beyond our log */
    return 0;
}

static void fuzz_link(const char *p, size_t n)
{
    static const struct repl_link_ops ops = {nop_term,      nop_lsn, nop_snap, nop_chunk,    nop_snap,
                                             check_records, NULL,    NULL,     check_discard};
    struct repl_link l;
    uint64_t last = n ? (unsigned char)p[0] : 0;
    repl_link_init(&l, 2, last, &ops, &l);
    size_t cut = n / 2, off = 0;
    ssize_t r = repl_link_feed(&l, p, cut);
    if (r >= 0) {
        if ((size_t)r > cut)
            abort();
        off = (size_t)r;
        r = repl_link_feed(&l, p + off, n - off);
        if (r >= 0 && (size_t)r > n - off)
            abort();
    }
    if (r < 0 && (l.state != REPL_LINK_FAILED || l.err[0] == '\0' || repl_link_feed(&l, p, n) >= 0))
        abort();
}

static void fuzz_commands(const char *p, size_t n)
{
    struct resp_limits lim = {1u << 16, 256, 4096, false};
    struct resp_parser rp;
    resp_parser_init(&rp, &lim);
    struct buf b;
    buf_init(&b);
    size_t off = 0;
    while (off < n) {
        ssize_t r = resp_parse(&rp, p + off, n - off);
        if (r <= 0)
            break;
        off += (size_t)r;
        struct replmsg_hello h;
        const char *why;
        uint64_t lsn, term;
        b.len = 0;
        if (replmsg_hello_parse(rp.argc, rp.argv, &h, &why) == 0) {
            /* Round trip through the encoder and the RESP parser again. */
            replmsg_hello_encode(&b, &h);
            struct resp_parser rp2;
            resp_parser_init(&rp2, &lim);
            struct replmsg_hello g;
            if (resp_parse(&rp2, b.p, b.len) != (ssize_t)b.len ||
                replmsg_hello_parse(rp2.argc, rp2.argv, &g, &why) != 0 ||
                g.last_lsn != h.last_lsn || g.last_term != h.last_term ||
                g.base_lsn != h.base_lsn || g.nterms != h.nterms ||
                memcmp(g.terms, h.terms, h.nterms * sizeof(h.terms[0])) != 0 ||
                !slice_eq(g.secret, h.secret) || !slice_eq(g.node, h.node))
                abort();
            resp_parser_free(&rp2);
        } else if (why == NULL) {
            abort();
        }
        if (replmsg_ack_parse(rp.argc, rp.argv, &lsn, &term) == 0) {
            replmsg_ack_encode(&b, lsn, term);
            if (b.len == 0)
                abort();
        }
    }
    buf_free(&b);
    resp_parser_free(&rp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *p = (const char *)data + 1;
    if (data[0] & 1)
        fuzz_commands(p, size - 1);
    else {
        fuzz_stream(p, size - 1);
        fuzz_link(p, size - 1);
    }
    return 0;
}
