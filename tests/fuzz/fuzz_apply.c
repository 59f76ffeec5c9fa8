/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the record apply path (cmd_apply via persist_apply) on hostile records, as
 * recovery and a replica see them from a damaged WAL or a hostile primary. The input is RESP
 * commands; the first byte picks the mode: bit 0 packs every command into ONE TXN record
 * ("TXN" then a count before each sub-record's argv), bit 1 also applies the commands one by
 * one to a second db. A record must apply or fail with a reason, never crash or leak. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"
#include "proto/resp.h"
#include "store/db.h"
#include "store/persist.h"

#include "fuzz_db.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t seed[16] = {2};

#define MAX_ARGS 256

struct rec_set {
    struct slice argv[MAX_ARGS];
    char nums[MAX_ARGS][12];
    bool owned[MAX_ARGS];
    int argc;
};

static struct slice dup_slice(struct slice s)
{
    char *p = xmalloc(s.len ? s.len : 1);
    if (s.len)
        memcpy(p, s.p, s.len);
    return (struct slice){p, s.len};
}

static void apply_checked(struct db *db, int argc, const struct slice *argv)
{
    char err[256];
    err[0] = '\0';
    int rc = persist_apply(db, argc, argv, err, sizeof(err));
    if (rc != 0 && (rc != -EINVAL || err[0] == '\0'))
        abort(); /* a failing record always says why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    struct db_config cfg;
    fuzz_db_config(&cfg);
    struct db *db = db_new(&cfg, seed);
    struct db *one = db_new(&cfg, seed);
    db->now_ms = 1000000;
    one->now_ms = 1000000;
    struct resp_limits lim = {4096, 64, 1024, false};
    struct resp_parser p;
    resp_parser_init(&p, &lim);
    struct rec_set *txn = xcalloc(1, sizeof(*txn));
    txn->argv[txn->argc++] = SLICE_LIT("TXN");
    size_t off = 0;
    int cmds = 0;
    while (off < size && cmds < 64) {
        ssize_t n = resp_parse(&p, (const char *)data + off, size - off);
        if (n < 0)
            break;
        off += (size_t)n;
        if (p.argc == 0)
            continue;
        cmds++;
        if (mode & 2)
            apply_checked(one, (int)p.argc, p.argv);
        if (!(mode & 1)) {
            apply_checked(db, (int)p.argc, p.argv);
        } else if (txn->argc + 1 + (int)p.argc <= MAX_ARGS) {
            /* The count as the writer puts it; bit 6 of the mode lets it lie by one. */
            size_t cnt = p.argc + ((mode & 0x40) && cmds == 2 ? 1 : 0);
            int k = txn->argc;
            int len = snprintf(txn->nums[k], sizeof(txn->nums[k]), "%zu", cnt);
            txn->argv[txn->argc++] = (struct slice){txn->nums[k], (size_t)len};
            for (size_t i = 0; i < p.argc; i++) {
                txn->owned[txn->argc] = true;
                txn->argv[txn->argc++] = dup_slice(p.argv[i]);
            }
        }
    }
    if ((mode & 1) && txn->argc > 0)
        apply_checked(db, txn->argc, txn->argv);
    for (int i = 1; i < txn->argc; i++)
        if (txn->owned[i])
            free((void *)txn->argv[i].p);
    free(txn);
    resp_parser_free(&p);
    db_free(one);
    db_free(db);
    return 0;
}
