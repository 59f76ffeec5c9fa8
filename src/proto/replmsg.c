/* SPDX-License-Identifier: MIT */
/* proto/replmsg.c -- encoding and checking of the replication messages (see replmsg.h and
 * docs/replication.md). Every parser is bounded and non-recursive; numbers are strict
 * unsigned decimals (no sign, no leading zeros, no overflow) so one value has one spelling. */
#include "proto/replmsg.h"

#include <string.h>

#include "base/endian.h"
#include "base/err.h"
#include "proto/resp.h"
#include "proto/walrec.h"

#define ANSWER_MAX_LINE 512
#define FRAME_MAX_HEADER 16 /* "$" + up to 13 digits + CRLF */

/* Strict unsigned decimal: 1..20 digits, no leading zero, no overflow. */
static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A number a replica states: parse_u64, and at most REPLMSG_MAX_NUMBER. */
static bool parse_num(const char *s, size_t len, uint64_t *out)
{
    return parse_u64(s, len, out) && *out <= REPLMSG_MAX_NUMBER;
}

static size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static void add_bulk_u64(struct buf *out, uint64_t v)
{
    char d[24];
    size_t n = fmt_u64(d, v);
    resp_add_bulk(out, d, n);
}

#define HELLO_V2 "V2"

void replmsg_hello_encode(struct buf *out, const struct replmsg_hello *h)
{
    resp_add_array(out, (int64_t)(6 + 2 * h->nterms + (h->v2 ? 1 : 0)));
    resp_add_bulk(out, "REPLSYNC", 8);
    resp_add_bulk(out, h->secret.p, h->secret.len);
    resp_add_bulk(out, h->node.p, h->node.len);
    add_bulk_u64(out, h->last_lsn);
    add_bulk_u64(out, h->last_term);
    add_bulk_u64(out, h->base_lsn);
    for (size_t i = 0; i < h->nterms; i++) {
        add_bulk_u64(out, h->terms[i].term);
        add_bulk_u64(out, h->terms[i].first_lsn);
    }
    if (h->v2)
        resp_add_bulk(out, HELLO_V2, strlen(HELLO_V2));
}

int replmsg_hello_parse(size_t argc, const struct slice *argv, struct replmsg_hello *h,
                        const char **why)
{
    *why = "wrong number of arguments for 'replsync' command";
    if (argc < 6)
        return TD_EPROTO_RESP;
    bool v2 = (argc - 6) % 2 != 0;
    if (v2 && !slice_eq(argv[argc - 1], SLICE_LIT(HELLO_V2)))
        return TD_EPROTO_RESP;
    if (v2)
        argc--;
    if ((argc - 6) / 2 > REPLMSG_MAX_TERMS)
        return TD_EPROTO_RESP;
    *why = "not a REPLSYNC command";
    if (!slice_eq_nocase(argv[0], SLICE_LIT("REPLSYNC")))
        return TD_EPROTO_RESP;
    memset(h, 0, sizeof(*h));
    h->v2 = v2;
    h->secret = argv[1];
    h->node = argv[2];
    *why = "invalid node name";
    if (h->node.len == 0 || h->node.len > REPLMSG_MAX_NAME)
        return TD_EPROTO_RESP;
    *why = "invalid lsn or term";
    if (!parse_num(argv[3].p, argv[3].len, &h->last_lsn) ||
        !parse_num(argv[4].p, argv[4].len, &h->last_term) ||
        !parse_num(argv[5].p, argv[5].len, &h->base_lsn) || h->base_lsn > h->last_lsn)
        return TD_EPROTO_RESP;
    h->nterms = (argc - 6) / 2;
    for (size_t i = 0; i < h->nterms; i++) {
        struct replmsg_term_start *t = &h->terms[i];
        if (!parse_num(argv[6 + 2 * i].p, argv[6 + 2 * i].len, &t->term) ||
            !parse_num(argv[7 + 2 * i].p, argv[7 + 2 * i].len, &t->first_lsn))
            return TD_EPROTO_RESP;
    }
    *why = "invalid term history";
    for (size_t i = 0; i < h->nterms; i++) {
        const struct replmsg_term_start *t = &h->terms[i];
        if (t->first_lsn == 0 || t->first_lsn > h->last_lsn || t->term == 0)
            return TD_EPROTO_RESP;
        if (i > 0 && (t->term <= t[-1].term || t->first_lsn <= t[-1].first_lsn))
            return TD_EPROTO_RESP;
    }
    if (h->nterms > 0 && h->terms[h->nterms - 1].term != h->last_term)
        return TD_EPROTO_RESP;
    *why = NULL;
    return 0;
}

/* "<NAME> <a> <b>": the replica's two commands after the hello. */
static void encode_pair(struct buf *out, struct slice name, uint64_t a, uint64_t b)
{
    resp_add_array(out, 3);
    resp_add_bulk(out, name.p, name.len);
    add_bulk_u64(out, a);
    add_bulk_u64(out, b);
}

static int parse_pair(size_t argc, const struct slice *argv, struct slice name, uint64_t *a,
                      uint64_t *b)
{
    if (argc != 3 || !slice_eq_nocase(argv[0], name))
        return TD_EPROTO_RESP;
    if (!parse_num(argv[1].p, argv[1].len, a) || !parse_num(argv[2].p, argv[2].len, b))
        return TD_EPROTO_RESP;
    return 0;
}

void replmsg_ack_encode(struct buf *out, uint64_t lsn, uint64_t term)
{
    encode_pair(out, SLICE_LIT("REPLACK"), lsn, term);
}

int replmsg_ack_parse(size_t argc, const struct slice *argv, uint64_t *lsn, uint64_t *term)
{
    return parse_pair(argc, argv, SLICE_LIT("REPLACK"), lsn, term);
}

void replmsg_failsafe_ack_encode(struct buf *out, uint64_t term, uint64_t round)
{
    encode_pair(out, SLICE_LIT("REPLFS"), term, round);
}

int replmsg_failsafe_ack_parse(size_t argc, const struct slice *argv, uint64_t *term,
                               uint64_t *round)
{
    return parse_pair(argc, argv, SLICE_LIT("REPLFS"), term, round);
}

static const char *const answer_words[] = {"CONTINUE", "TRUNCATE", "FULL"};

void replmsg_answer_encode(struct buf *out, const struct replmsg_answer *a)
{
    if (a->kind == REPLMSG_REFUSED) {
        resp_add_error(out, a->text.p, a->text.len);
        return;
    }
    char line[80];
    size_t n = 0;
    const char *w = answer_words[a->kind];
    line[n++] = '+';
    memcpy(line + n, w, strlen(w));
    n += strlen(w);
    line[n++] = ' ';
    n += fmt_u64(line + n, a->lsn);
    line[n++] = ' ';
    n += fmt_u64(line + n, a->term);
    if (a->kind == REPLMSG_FULL && a->has_common) {
        line[n++] = ' ';
        n += fmt_u64(line + n, a->common);
    }
    line[n++] = '\r';
    line[n++] = '\n';
    buf_append(out, line, n);
}

ssize_t replmsg_answer_parse(const char *p, size_t n, struct replmsg_answer *a)
{
    size_t lim = n < ANSWER_MAX_LINE ? n : ANSWER_MAX_LINE;
    const char *cr = memchr(p, '\r', lim);
    if (cr == NULL || (size_t)(cr - p) + 1 >= n)
        return (n >= ANSWER_MAX_LINE || (cr && (size_t)(cr - p) + 1 >= ANSWER_MAX_LINE))
                   ? TD_EPROTO_RESP
                   : TD_EINCOMPLETE;
    if (cr[1] != '\n')
        return TD_EPROTO_RESP;
    size_t len = (size_t)(cr - p);
    if (memchr(p, '\n', len) != NULL || len == 0)
        return TD_EPROTO_RESP;
    memset(a, 0, sizeof(*a));
    if (p[0] == '-') {
        a->kind = REPLMSG_REFUSED;
        a->text = slice_of(p + 1, len - 1);
        return (ssize_t)(len + 2);
    }
    if (p[0] != '+')
        return TD_EPROTO_RESP;
    /* "+WORD lsn term" */
    const char *s = p + 1, *end = p + len;
    const char *sp1 = memchr(s, ' ', (size_t)(end - s));
    if (sp1 == NULL)
        return TD_EPROTO_RESP;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
    if (sp2 == NULL)
        return TD_EPROTO_RESP;
    struct slice word = slice_of(s, (size_t)(sp1 - s));
    size_t k;
    for (k = 0; k < 3; k++)
        if (slice_eq(word, slice_cstr(answer_words[k])))
            break;
    if (k == 3)
        return TD_EPROTO_RESP;
    a->kind = (enum replmsg_answer_kind)k;
    /* FULL may carry a fourth number, the common prefix. */
    const char *sp3 = memchr(sp2 + 1, ' ', (size_t)(end - sp2 - 1));
    if (sp3 != NULL && a->kind != REPLMSG_FULL)
        return TD_EPROTO_RESP;
    const char *term_end = sp3 ? sp3 : end;
    if (!parse_u64(sp1 + 1, (size_t)(sp2 - sp1 - 1), &a->lsn) ||
        !parse_u64(sp2 + 1, (size_t)(term_end - sp2 - 1), &a->term))
        return TD_EPROTO_RESP;
    if (sp3 != NULL) {
        if (!parse_u64(sp3 + 1, (size_t)(end - sp3 - 1), &a->common))
            return TD_EPROTO_RESP;
        a->has_common = true;
    }
    return (ssize_t)(len + 2);
}

/* Appends "$<1+len>\r\n<type>" and reserves room for the body and the final CRLF. */
static void frame_open(struct buf *out, char type, size_t len)
{
    char hdr[FRAME_MAX_HEADER + 8];
    size_t n = 0;
    hdr[n++] = '$';
    n += fmt_u64(hdr + n, (uint64_t)len + 1);
    hdr[n++] = '\r';
    hdr[n++] = '\n';
    hdr[n++] = type;
    buf_reserve(out, n + len + 2);
    buf_append(out, hdr, n);
}

static void frame_close(struct buf *out)
{
    buf_append(out, "\r\n", 2);
}

void replmsg_frame_wal(struct buf *out, const char *recs, size_t len)
{
    TD_ASSERT(len > 0 && len < REPLMSG_MAX_FRAME);
    frame_open(out, REPLMSG_FRAME_WAL, len);
    buf_append(out, recs, len);
    frame_close(out);
}

/* The fixed-size frames: three little-endian u64s. */
static void frame_u64x3(struct buf *out, char type, uint64_t a, uint64_t b, uint64_t c)
{
    char v[24];
    le_put64(v, a);
    le_put64(v + 8, b);
    le_put64(v + 16, c);
    frame_open(out, type, sizeof(v));
    buf_append(out, v, sizeof(v));
    frame_close(out);
}

void replmsg_frame_heartbeat(struct buf *out, uint64_t term, uint64_t commit_lsn, uint64_t last_lsn)
{
    frame_u64x3(out, REPLMSG_FRAME_HEARTBEAT, term, commit_lsn, last_lsn);
}

void replmsg_frame_failsafe(struct buf *out, uint64_t term, uint64_t round, uint64_t valid_ms)
{
    frame_u64x3(out, REPLMSG_FRAME_FAILSAFE, term, round, valid_ms);
}

void replmsg_frame_snap_chunk(struct buf *out, const char *p, size_t len)
{
    TD_ASSERT(len > 0 && len < REPLMSG_MAX_FRAME);
    frame_open(out, REPLMSG_FRAME_SNAP_CHUNK, len);
    buf_append(out, p, len);
    frame_close(out);
}

void replmsg_frame_snap_end(struct buf *out, uint64_t lsn, uint64_t term, uint64_t total_bytes)
{
    frame_u64x3(out, REPLMSG_FRAME_SNAP_END, lsn, term, total_bytes);
}

/* Checks that body[0..len) is a run of consecutive, valid WAL records. */
static int parse_records(const char *body, size_t len, struct replmsg_frame *f)
{
    size_t off = 0;
    f->nrecords = 0;
    while (off < len) {
        struct walrec rec;
        ssize_t r = walrec_decode(body + off, len - off, &rec);
        if (r <= 0)
            return TD_ECORRUPT;
        if (f->nrecords == 0) {
            f->first_lsn = rec.lsn;
        } else if (rec.lsn != f->last_lsn + 1 || rec.term < f->last_term) {
            return TD_ECORRUPT;
        }
        f->last_lsn = rec.lsn;
        f->last_term = rec.term;
        f->nrecords++;
        off += (size_t)r;
    }
    f->records = slice_of(body, len);
    return 0;
}

ssize_t replmsg_frame_parse(const char *p, size_t n, struct replmsg_frame *f)
{
    if (n == 0)
        return TD_EINCOMPLETE;
    if (p[0] != '$')
        return TD_EPROTO_RESP;
    size_t i = 1;
    uint64_t blen = 0;
    for (;; i++) {
        if (i >= n)
            return i >= FRAME_MAX_HEADER ? TD_EPROTO_RESP : TD_EINCOMPLETE;
        if (i >= FRAME_MAX_HEADER)
            return TD_EPROTO_RESP;
        if (p[i] == '\r')
            break;
        if (p[i] < '0' || p[i] > '9' || (i == 2 && p[1] == '0'))
            return TD_EPROTO_RESP;
        blen = blen * 10 + (uint64_t)(p[i] - '0');
    }
    if (i == 1 || blen == 0 || blen > REPLMSG_MAX_FRAME)
        return TD_EPROTO_RESP;
    if (i + 1 >= n)
        return TD_EINCOMPLETE;
    if (p[i + 1] != '\n')
        return TD_EPROTO_RESP;
    size_t hdr = i + 2;
    if (n - hdr < blen + 2)
        return TD_EINCOMPLETE;
    if (p[hdr + blen] != '\r' || p[hdr + blen + 1] != '\n')
        return TD_EPROTO_RESP;
    const char *body = p + hdr + 1;
    size_t len = (size_t)blen - 1;
    memset(f, 0, sizeof(*f));
    f->type = (enum replmsg_frame_type)(unsigned char)p[hdr];
    switch (p[hdr]) {
    case REPLMSG_FRAME_WAL:
        if (len == 0)
            return TD_EPROTO_RESP;
        if (parse_records(body, len, f) != 0)
            return TD_ECORRUPT;
        break;
    case REPLMSG_FRAME_HEARTBEAT:
        if (len != 24)
            return TD_EPROTO_RESP;
        f->term = le_get64(body);
        f->commit_lsn = le_get64(body + 8);
        f->last_lsn = le_get64(body + 16);
        break;
    case REPLMSG_FRAME_SNAP_CHUNK:
        if (len == 0)
            return TD_EPROTO_RESP;
        f->chunk = slice_of(body, len);
        break;
    case REPLMSG_FRAME_FAILSAFE:
        if (len != 24)
            return TD_EPROTO_RESP;
        f->term = le_get64(body);
        f->round = le_get64(body + 8);
        f->valid_ms = le_get64(body + 16);
        break;
    case REPLMSG_FRAME_SNAP_END:
        if (len != 24)
            return TD_EPROTO_RESP;
        f->last_lsn = le_get64(body);
        f->term = le_get64(body + 8);
        f->total_bytes = le_get64(body + 16);
        break;
    default:
        return TD_EPROTO_RESP;
    }
    return (ssize_t)(hdr + blen + 2);
}
