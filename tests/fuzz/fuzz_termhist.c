/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the term-history file parser (store/termhist.c) on arbitrary bytes, as
 * termhist_load sees a damaged or hostile DIR/term-history. The first byte picks a mode: bit 0
 * rewrites the trailing CRC (so the fuzzer gets past it), bit 1 advances the decoded history
 * over a synthetic log whose term steps every `step` lsns (8 more bytes: u32 step, u32
 * records). A decoded image must re-encode to the same bytes and answer term_at consistently
 * with its pairs. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/crc32c.h"
#include "base/endian.h"
#include "base/err.h"
#include "store/termhist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct synth_log {
    uint64_t base_lsn, base_term, step, end;
};

/* Terms of the records after the history's snapshot: base_term, rising by one every step. */
static int synth_term_at(void *ud, uint64_t lsn, uint64_t *term)
{
    const struct synth_log *l = ud;
    if (lsn <= l->base_lsn || lsn > l->end)
        return -ENOENT;
    *term = l->base_term + (lsn - l->base_lsn - 1) / l->step;
    return 0;
}

static void check_history(const struct termhist *h)
{
    uint64_t t;
    for (size_t i = 0; i < h->n; i++) {
        if (i > 0 && (h->v[i].term <= h->v[i - 1].term ||
                      h->v[i].first_lsn <= h->v[i - 1].first_lsn))
            abort();
        if (termhist_term_at(h, h->v[i].first_lsn, &t) != 0 || t != h->v[i].term)
            abort();
    }
    if (termhist_term_at(h, h->snap_lsn, &t) != 0 || t != h->snap_term)
        abort();
    if (termhist_known_lsn(h) != h->from_lsn)
        abort();
    if (h->from_lsn > 0 && termhist_term_at(h, h->from_lsn - 1, &t) != -ENOENT)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    struct synth_log log = {0, 0, 1, 0};
    bool advance = (mode & 2) && size >= 8;
    if (advance) {
        log.step = le_get32((const char *)data) % 1000 + 1;
        log.end = le_get32((const char *)data + 4) % 100000;
        data += 8;
        size -= 8;
    }
    uint8_t *img = malloc(size ? size : 1);
    if (size)
        memcpy(img, data, size);
    if ((mode & 1) && size >= 4) {
        uint32_t c = crc32c(img, size - 4);
        for (int i = 0; i < 4; i++)
            img[size - 4 + i] = (uint8_t)(c >> (8 * i));
    }
    struct termhist h;
    termhist_init(&h);
    if (termhist_decode((const char *)img, size, &h) == 0) {
        check_history(&h);
        struct buf b;
        buf_init(&b);
        termhist_encode(&h, &b);
        if (b.len != size || memcmp(b.p, img, size) != 0)
            abort(); /* exactly one valid image: decode and encode are inverses */
        buf_free(&b);
        if (advance) {
            log.base_lsn = h.snap_lsn;
            log.base_term = h.snap_term;
            log.end += h.snap_lsn < UINT64_MAX - log.end ? h.snap_lsn : 0;
            uint64_t t;
            if (synth_term_at(&log, log.end, &t) == 0 &&
                termhist_advance(&h, log.end, t, synth_term_at, &log) == 0) {
                check_history(&h);
                if (h.n > TERMHIST_MAX)
                    abort();
            }
        }
    }
    termhist_free(&h);
    free(img);
    return 0;
}
