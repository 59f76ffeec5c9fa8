/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the RESP2 command parser on untrusted bytes. The first byte picks the limits
 * (authenticated or not) and the read size, so split reads, resumption and every limit are
 * exercised; each parsed argument is also re-encoded and checked to lie inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "proto/resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct resp_limits lim = {(data[0] & 1) ? 64 : 4096, (data[0] & 2) ? 4 : 1000, 128,
                              (data[0] & 4) != 0};
    size_t step = (size_t)(data[0] >> 3) + 1;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1, off = 0, avail = 0;
    struct resp_parser p;
    resp_parser_init(&p, &lim);
    struct buf out;
    buf_init(&out);
    while (off < len) {
        avail = avail + step > len ? len : avail + step;
        ssize_t n = resp_parse(&p, buf + off, avail - off);
        if (n == TD_EINCOMPLETE) {
            if (avail == len)
                break;
            continue;
        }
        if (n < 0) {
            if (resp_parser_error(&p)[0] == '\0')
                abort();
            break;
        }
        if ((size_t)n > avail - off)
            abort();
        for (size_t i = 0; i < p.argc; i++) {
            const char *a = p.argv[i].p;
            bool in_input = a >= buf + off && a + p.argv[i].len <= buf + off + (size_t)n;
            bool in_scratch =
                p.scratch.p && a >= p.scratch.p && a + p.argv[i].len <= p.scratch.p + p.scratch.len;
            if (!in_input && !in_scratch && p.argv[i].len > 0)
                abort();
            resp_add_bulk(&out, a, p.argv[i].len);
            int64_t v;
            if (resp_parse_int(a, p.argv[i].len, &v))
                resp_add_int(&out, v);
        }
        off += (size_t)n;
        if (out.len > (1u << 16))
            out.len = 0;
    }
    buf_free(&out);
    resp_parser_free(&p);
    return 0;
}
