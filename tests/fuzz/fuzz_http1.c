/* SPDX-License-Identifier: MIT */
/* libFuzzer target: HTTP/1 request and response parsing of untrusted bytes. The first byte
 * picks request or response and the feed step, so split reads are exercised too. */
#include <stdint.h>
#include <string.h>

#include "base/err.h"
#include "proto/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void sink(void *ud, const char *at, size_t len)
{
    size_t *n = ud;
    if (len)
        *n += (unsigned char)at[len - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum http1_kind kind = (data[0] & 1) ? HTTP1_RESPONSE : HTTP1_REQUEST;
    size_t step = (data[0] >> 1) + 1;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    struct http1_parser p;
    size_t acc = 0;
    http1_init(&p, kind, NULL);
    p.on_body = sink;
    p.ud = &acc;
    size_t off = 0, avail = 0;
    for (int guard = 0; guard < 100000; guard++) {
        if (avail < len)
            avail = avail + step > len ? len : avail + step;
        size_t used;
        int ev = http1_feed(&p, buf, off, avail - off, &used);
        off += used;
        if (ev < 0)
            break;
        if (ev == HTTP1_HEAD_DONE) {
            /* touch every span: they must lie inside what was fed */
            for (unsigned i = 0; i < p.msg.nheaders; i++) {
                struct slice n = http1_slice(buf, p.msg.headers[i].name);
                struct slice v = http1_slice(buf, p.msg.headers[i].value);
                if (n.len)
                    acc += (unsigned char)n.p[n.len - 1];
                if (v.len)
                    acc += (unsigned char)v.p[v.len - 1];
            }
            continue;
        }
        if (ev == HTTP1_MSG_DONE) {
            if (p.msg.upgrade)
                break;
            http1_next(&p);
            continue;
        }
        if (off == len && avail == len) {
            if (kind == HTTP1_RESPONSE)
                http1_finish(&p);
            break;
        }
    }
    return (int)(acc & 0);
}
