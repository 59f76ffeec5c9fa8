/* SPDX-License-Identifier: MIT */
/* libFuzzer target: etcd gateway answers on untrusted bytes (an etcd endpoint, or whatever sits
 * at its address, is not trusted to send well-formed JSON). The first byte picks the op and the
 * HTTP status; the rest is the body, parsed as a response and fed to the watch stream parser in
 * pieces. Every byte of a READ's kv slices is read (ASan checks they are in bounds). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coord/etcd_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum dcs_op op = (enum dcs_op)(data[0] % 5);
    static const long statuses[] = {200, 200, 404, 503};
    long status = statuses[(data[0] >> 3) & 3];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct etcd_json_result r;
    int st = etcd_json_response(op, 7, status, body, len, &r);
    if (st != r.res.status || r.res.id != 7)
        abort();
    if (st == DCS_OK && op == DCS_OP_READ) {
        volatile unsigned sum = 0; /* touches every byte: ASan checks the bounds */
        for (size_t i = 0; i < r.res.nkvs; i++) {
            const struct dcs_kv *kv = &r.res.kvs[i];
            if (kv->rev == 0)
                abort();
            for (size_t k = 0; k < kv->key.len; k++)
                sum += (unsigned char)kv->key.p[k];
            for (size_t k = 0; k < kv->value.len; k++)
                sum += (unsigned char)kv->value.p[k];
        }
    }
    if (st != DCS_OK && r.res.nkvs != 0)
        abort();
    etcd_json_result_free(&r);

    struct buf acc;
    buf_init(&acc);
    struct etcd_json_watch_msg m;
    memset(&m, 0, sizeof(m));
    size_t step = (size_t)(data[0] >> 5) + 1;
    for (size_t off = 0; off < len; off += step) {
        size_t k = len - off < step ? len - off : step;
        if (etcd_json_watch_feed(&acc, body + off, k, &m) < 0)
            break;
    }
    buf_free(&acc);
    return 0;
}
