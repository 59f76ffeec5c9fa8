/* SPDX-License-Identifier: MIT */
/* libFuzzer target: parsed commands run through the whole command layer (store/cmd.c) on a
 * real db with a fake clock that moves, so options parsing, expiry, hashes switching
 * representation, SCAN/KEYS patterns and the resolved records all see hostile input. Every
 * command must produce exactly one well-formed reply start. Replaying the recorded records into
 * a second db must succeed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "proto/resp.h"
#include "store/cmd.h"
#include "store/db.h"
#include "store/persist.h"

#include "fuzz_db.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t seed[16] = {1};

struct rec {
    struct db *replica;
};

static uint64_t rec_append(void *ud, int argc, const struct slice *argv)
{
    struct rec *r = ud;
    char err[256];
    if (persist_apply(r->replica, argc, argv, err, sizeof(err)) != 0)
        abort();
    return 1;
}

static void rec_flush(void *ud)
{
    (void)ud;
}

static const struct persist_ops rec_ops = {NULL, rec_append, rec_flush, NULL, NULL, NULL, NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct db_config cfg;
    fuzz_db_config(&cfg);
    struct db *db = db_new(&cfg, seed);
    struct rec r = {db_new(&cfg, seed)};
    db_set_persist(db, &rec_ops, &r);
    db->now_ms = 1000000;
    struct cmd_env env;
    cmd_env_init(&env, db);
    struct buf out;
    buf_init(&out);
    struct session s = {.id = 1, .authed = true, .out = &out};
    struct resp_limits lim = {4096, 64, 1024, false};
    struct resp_parser p;
    resp_parser_init(&p, &lim);
    size_t off = 0;
    int cmds = 0;
    while (off < size && cmds < 200) {
        ssize_t n = resp_parse(&p, (const char *)data + off, size - off);
        if (n < 0)
            break;
        off += (size_t)n;
        if (p.argc == 0)
            continue;
        cmds++;
        out.len = 0;
        s.flags = 0;
        cmd_exec(&env, &s, (int)p.argc, p.argv);
        if (!(s.flags & SESSION_SHUTDOWN) &&
            (out.len < 3 || !strchr("+-:$*", out.p[0]) || out.p[out.len - 1] != '\n'))
            abort();
        db->now_ms += 37; /* time passes: keys with short TTLs expire mid-run */
    }
    resp_parser_free(&p);
    buf_free(&out);
    cmd_session_free(&s);
    cmd_env_free(&env);
    if (keyspace_size(r.replica->ks) < keyspace_size(db->ks))
        abort(); /* the replica may only lag in removing expired keys, never miss one */
    db_free(r.replica);
    db_free(db);
    return 0;
}
