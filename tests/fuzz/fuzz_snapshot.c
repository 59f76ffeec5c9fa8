/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the snapshot reader (store/snapshot.c frame parser) feeding the store's
 * loader (persist_snapshot_load), as a replica sees a snapshot from a hostile primary or a
 * restart sees a damaged file: header, then frames, each verified item applied to a real db.
 * The first byte picks a mode: bit 0 rewrites the header and frame CRCs so the fuzzer reaches
 * the item structure and the loader. Must never crash, leak, or allocate without bound. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/crc32c.h"
#include "base/endian.h"
#include "base/err.h"
#include "store/db.h"
#include "store/persist.h"
#include "store/snapshot.h"

#include "fuzz_db.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t seed[16] = {3};

static void fix_crcs(char *p, size_t n)
{
    size_t off = 0;
    if (n >= SNAPSHOT_HEADER_SIZE) {
        le_put32(p + 28, crc32c(p, 28));
        off = SNAPSHOT_HEADER_SIZE;
    }
    while (n - off >= 8) {
        uint32_t blen = le_get32(p + off);
        if (blen > n - off - 8)
            break;
        le_put32(p + off + 4, crc32c(p + off + 8, blen));
        off += 8 + (size_t)blen;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    uint8_t mode = data[0];
    size--;
    char *p = malloc(size ? size : 1);
    if (size)
        memcpy(p, data + 1, size);
    if (mode & 1)
        fix_crcs(p, size);
    struct db_config cfg;
    fuzz_db_config(&cfg);
    struct db *db = db_new(&cfg, seed);
    struct slice *vals = NULL;
    size_t cap = 0, off = 0;
    uint64_t items = 0;
    struct snapshot_info info;
    if (size >= SNAPSHOT_HEADER_SIZE && snapshot_parse_header((const char *)p, size, &info) == 0)
        off = SNAPSHOT_HEADER_SIZE;
    while (off < size) {
        struct snapshot_item it;
        bool is_end = false;
        uint64_t count = 0;
        ssize_t r = snapshot_parse_frame((const char *)p + off, size - off, &it, &vals, &cap,
                                         &is_end, &count);
        if (r <= 0)
            break;
        if ((size_t)r > size - off)
            abort();
        off += (size_t)r;
        if (is_end)
            break;
        items++;
        if (persist_snapshot_load(db, &it) != 0)
            break;
    }
    free(vals);
    db_free(db);
    free(p);
    return (int)(items & 0);
}
