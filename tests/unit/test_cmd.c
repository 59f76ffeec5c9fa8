/* SPDX-License-Identifier: MIT */
/* Unit tests for store/cmd.c and store/persist.c: argument rules and exact Redis error texts,
 * authentication order, the resolved records each write hands to the persistence hook, and that
 * replaying those records (persist_apply) rebuilds the same dataset (persist_foreach_record). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/cmd.h"
#include "store/db.h"
#include "store/persist.h"
#include "store/watch.h"

static const uint8_t seed[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};

/* A fake persistence layer: records every resolved argv as one space-separated line. */
struct fake_wal {
    char log[8192];
    size_t len;
    uint64_t lsn;
};

static uint64_t fake_append(void *ud, int argc, const struct slice *argv)
{
    struct fake_wal *w = ud;
    for (int i = 0; i < argc; i++)
        w->len += (size_t)snprintf(w->log + w->len, sizeof(w->log) - w->len, "%s%.*s", i ? " " : "",
                                   (int)argv[i].len, argv[i].p);
    w->len += (size_t)snprintf(w->log + w->len, sizeof(w->log) - w->len, "\n");
    return ++w->lsn;
}

static void fake_flush(void *ud)
{
    (void)ud;
}

static const struct persist_ops fake_ops = {NULL, fake_append, fake_flush, NULL, NULL, NULL, NULL};

struct fixture {
    struct db_config cfg;
    struct db *db;
    struct cmd_env env;
    struct session s;
    struct buf out;
    struct fake_wal wal;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->cfg.max_bulk = 512u << 20;
    f->cfg.max_multibulk = 1024 * 1024;
    f->cfg.query_buffer = 1u << 30;
    f->cfg.max_clients = 100;
    f->cfg.fsync = DB_FSYNC_EVERYSEC;
    f->db = db_new(&f->cfg, seed);
    f->db->now_ms = 1000000;
    cmd_env_init(&f->env, f->db);
    buf_init(&f->out);
    f->s = (struct session){.id = 7, .authed = true, .out = &f->out};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    cmd_session_free(&f->s);
    cmd_env_free(&f->env);
    db_free(f->db);
    buf_free(&f->out);
    free(f);
    return 0;
}

/* Runs one command given as words separated by '|' (so arguments may contain spaces) for
 * session s, replies into out; returns the reply as a NUL-terminated string (valid until the
 * next call) and sets *wrote (may be NULL) to what cmd_exec returned. */
static const char *run_as(struct fixture *f, struct session *s, struct buf *out, const char *cmd,
                          bool *wrote)
{
    char copy[1024];
    snprintf(copy, sizeof(copy), "%s", cmd);
    struct slice argv[64];
    int argc = 0;
    char *p = copy;
    for (;;) {
        char *bar = strchr(p, '|');
        if (bar)
            *bar = '\0';
        argv[argc++] = slice_cstr(p);
        if (!bar)
            break;
        p = bar + 1;
    }
    out->len = 0;
    bool w = cmd_exec(&f->env, s, argc, argv);
    if (wrote)
        *wrote = w;
    buf_append(out, "", 1);
    out->len--;
    return out->p;
}

/* run_as for the fixture's own session. */
static const char *run(struct fixture *f, const char *cmd)
{
    return run_as(f, &f->s, &f->out, cmd, NULL);
}

static void test_table_sorted(void **state)
{
    (void)state;
    assert_true(cmd_table_is_sorted());
    assert_true(cmd_count() >= 45);
}

static void test_arity_and_unknown(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(run(f, "get"), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_string_equal(run(f, "GET|a|b"), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_string_equal(run(f, "mset|a|b|c"),
                        "-ERR wrong number of arguments for 'mset' command\r\n");
    assert_string_equal(run(f, "hset|h|a"),
                        "-ERR wrong number of arguments for 'hset' command\r\n");
    assert_string_equal(run(f, "hset|h|a|1|b"),
                        "-ERR wrong number of arguments for 'hset' command\r\n");
    assert_string_equal(run(f, "client"),
                        "-ERR wrong number of arguments for 'client' command\r\n");
    assert_string_equal(run(f, "client|setname"),
                        "-ERR wrong number of arguments for 'client|setname' command\r\n");
    assert_string_equal(run(f, "config|get"),
                        "-ERR wrong number of arguments for 'config|get' command\r\n");
    assert_string_equal(run(f, "command|count|x"),
                        "-ERR wrong number of arguments for 'command|count' command\r\n");
    assert_string_equal(run(f, "client|foo"),
                        "-ERR unknown subcommand 'foo'. Try CLIENT HELP.\r\n");
    assert_string_equal(run(f, "foo|a|b"),
                        "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n");
    assert_string_equal(run(f, "FOO"),
                        "-ERR unknown command 'FOO', with args beginning with: \r\n");
    assert_string_equal(run(f, "foo|a\r\nb"),
                        "-ERR unknown command 'foo', with args beginning with: 'a  b' \r\n");
    /* Arguments are cut once 128 characters of them have been printed. */
    char cmd[600], want[600];
    snprintf(cmd, sizeof(cmd), "x|%0200d|b", 0);
    snprintf(want, sizeof(want),
             "-ERR unknown command 'x', with args beginning with: '%0128d' \r\n", 0);
    assert_string_equal(run(f, cmd), want);
    /* A name with a NUL byte is no command, whatever precedes the NUL (found by fuzz_cmd: the
     * lookup compared with strncmp and read past the end of a shorter name). */
    static const struct {
        const char *p;
        size_t len;
    } nul_names[] = {{"get\0x", 5}, {"scan\0\0\0\0\0\0\0", 11}, {"GET\0", 4}, {"\0", 1}};
    for (size_t i = 0; i < sizeof(nul_names) / sizeof(nul_names[0]); i++) {
        struct slice argv[2] = {{nul_names[i].p, nul_names[i].len}, SLICE_LIT("k")};
        f->out.len = 0;
        cmd_exec(&f->env, &f->s, 2, argv);
        assert_true(f->out.len > 22 && memcmp(f->out.p, "-ERR unknown command '", 22) == 0);
    }
    /* Sub-commands and records go through the same bisection. */
    struct slice sub[3] = {SLICE_LIT("config"), {"get\0", 4}, SLICE_LIT("x")};
    f->out.len = 0;
    cmd_exec(&f->env, &f->s, 3, sub);
    assert_true(f->out.len > 0 && f->out.p[0] == '-');
    struct slice rec[3] = {{"SET\0", 4}, SLICE_LIT("k"), SLICE_LIT("v")};
    char err[128];
    assert_int_equal(cmd_apply(f->db, 3, rec, err, sizeof(err)), -EINVAL);
}

static void test_set_options(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(run(f, "set|k|v"), "+OK\r\n");
    assert_string_equal(run(f, "set|k|v|nx"), "$-1\r\n");
    assert_string_equal(run(f, "set|k|w|xx|get"), "$1\r\nv\r\n");
    assert_string_equal(run(f, "set|k|v|nx|xx"), "-ERR syntax error\r\n");
    assert_string_equal(run(f, "set|k|v|ex|10|px|10"), "-ERR syntax error\r\n");
    assert_string_equal(run(f, "set|k|v|keepttl|ex|10"), "-ERR syntax error\r\n");
    assert_string_equal(run(f, "set|k|v|ex"), "-ERR syntax error\r\n");
    assert_string_equal(run(f, "set|k|v|ex|abc|foo"), "-ERR syntax error\r\n");
    assert_string_equal(run(f, "set|k|v|ex|abc"),
                        "-ERR value is not an integer or out of range\r\n");
    assert_string_equal(run(f, "set|k|v|ex|0"), "-ERR invalid expire time in 'set' command\r\n");
    assert_string_equal(run(f, "set|k|v|px|9223372036854775807"),
                        "-ERR invalid expire time in 'set' command\r\n");
    assert_string_equal(run(f, "set|k|v|ex|10|ex|20"), "+OK\r\n");
    assert_string_equal(run(f, "ttl|k"), ":20\r\n");
    assert_string_equal(run(f, "set|k|v|keepttl"), "+OK\r\n");
    assert_string_equal(run(f, "pttl|k"), ":20000\r\n");
    assert_string_equal(run(f, "hset|h|f|v"), ":1\r\n");
    assert_string_equal(run(f, "set|h|v|get"),
                        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    assert_string_equal(run(f, "get|h"),
                        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
}

static void test_integers(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(run(f, "incr|n"), ":1\r\n");
    assert_string_equal(run(f, "incrby|n|41"), ":42\r\n");
    assert_string_equal(run(f, "decrby|n|50"), ":-8\r\n");
    assert_string_equal(run(f, "set|n|9223372036854775807"), "+OK\r\n");
    assert_string_equal(run(f, "incr|n"), "-ERR increment or decrement would overflow\r\n");
    assert_string_equal(run(f, "decrby|x|-9223372036854775808"),
                        "-ERR decrement would overflow\r\n");
    const char *notint[] = {"1.5", " 1", "+1", "01", "-0", ""};
    for (size_t i = 0; i < sizeof(notint) / sizeof(notint[0]); i++) {
        char c[64];
        snprintf(c, sizeof(c), "set|s|%s", notint[i]);
        run(f, c);
        assert_string_equal(run(f, "incr|s"), "-ERR value is not an integer or out of range\r\n");
    }
    assert_string_equal(run(f, "hincrby|h|f|x"),
                        "-ERR value is not an integer or out of range\r\n");
    assert_string_equal(run(f, "hset|h|f|abc"), ":1\r\n");
    assert_string_equal(run(f, "hincrby|h|f|1"), "-ERR hash value is not an integer\r\n");
    assert_string_equal(run(f, "hincrby|h|g|-5"), ":-5\r\n");
    assert_string_equal(run(f, "hincrby|new|g|3"), ":3\r\n");
    assert_string_equal(run(f, "select|0"), "+OK\r\n");
    assert_string_equal(run(f, "select|1"), "-ERR DB index is out of range\r\n");
    assert_string_equal(run(f, "select|x"), "-ERR value is not an integer or out of range\r\n");
}

static void test_expire_options(void **state)
{
    struct fixture *f = *state;
    run(f, "set|k|v");
    assert_string_equal(run(f, "expire|k|100|foo"), "-ERR Unsupported option foo\r\n");
    assert_string_equal(run(f, "expire|k|100|nx|xx"),
                        "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n");
    assert_string_equal(run(f, "expire|k|100|gt|lt"),
                        "-ERR GT and LT options at the same time are not compatible\r\n");
    assert_string_equal(run(f, "expire|k|9223372036854775807"),
                        "-ERR invalid expire time in 'expire' command\r\n");
    assert_string_equal(run(f, "expire|k|100|xx"), ":0\r\n");
    assert_string_equal(run(f, "expire|k|100|gt"), ":0\r\n");
    assert_string_equal(run(f, "expire|k|100|nx"), ":1\r\n");
    assert_string_equal(run(f, "expire|k|50|gt"), ":0\r\n");
    assert_string_equal(run(f, "expire|k|200|gt"), ":1\r\n");
    assert_string_equal(run(f, "expire|k|50|lt"), ":1\r\n");
    assert_string_equal(run(f, "ttl|k"), ":50\r\n");
    assert_string_equal(run(f, "persist|k"), ":1\r\n");
    assert_string_equal(run(f, "persist|k"), ":0\r\n");
    assert_string_equal(run(f, "ttl|k"), ":-1\r\n");
    assert_string_equal(run(f, "ttl|missing"), ":-2\r\n");
    assert_string_equal(run(f, "expire|k|-1"), ":1\r\n");
    assert_string_equal(run(f, "exists|k"), ":0\r\n");
    assert_string_equal(run(f, "expire|missing|abc"),
                        "-ERR value is not an integer or out of range\r\n");
    /* Lazy expiry with the db's clock. */
    run(f, "set|t|v|px|100");
    f->db->now_ms += 100;
    assert_string_equal(run(f, "get|t"), "$1\r\nv\r\n");
    f->db->now_ms += 1;
    assert_string_equal(run(f, "get|t"), "$-1\r\n");
}

static void test_scan_and_misc(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(run(f, "scan|abc"), "-ERR invalid cursor\r\n");
    assert_string_equal(run(f, "scan|0|count|0"), "-ERR syntax error\r\n");
    assert_string_equal(run(f, "scan|0|count|x"),
                        "-ERR value is not an integer or out of range\r\n");
    assert_string_equal(run(f, "scan|0|foo"), "-ERR syntax error\r\n");
    assert_string_equal(run(f, "scan|18446744073709551616"), "-ERR invalid cursor\r\n");
    assert_string_equal(run(f, "scan|0"), "*2\r\n$1\r\n0\r\n*0\r\n");
    run(f, "set|a|1");
    run(f, "hset|b|f|v");
    assert_string_equal(run(f, "scan|0|type|hash"), "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nb\r\n");
    assert_string_equal(run(f, "scan|0|match|a"), "*2\r\n$1\r\n0\r\n*1\r\n$1\r\na\r\n");
    assert_string_equal(run(f, "keys|a*"), "*1\r\n$1\r\na\r\n");
    assert_string_equal(run(f, "type|b"), "+hash\r\n");
    assert_string_equal(run(f, "type|zz"), "+none\r\n");
    assert_string_equal(run(f, "flushall|foo"), "-ERR syntax error\r\n");
    assert_string_equal(run(f, "flushall|async"), "+OK\r\n");
    assert_string_equal(run(f, "dbsize"), ":0\r\n");
    assert_string_equal(run(f, "ping|a|b"),
                        "-ERR wrong number of arguments for 'ping' command\r\n");
    assert_string_equal(run(f, "ping"), "+PONG\r\n");
    assert_string_equal(run(f, "role"), "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
    assert_string_equal(
        run(f, "client|setname|a b"),
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
    assert_string_equal(run(f, "client|setname|me"), "+OK\r\n");
    assert_string_equal(run(f, "client|getname"), "$2\r\nme\r\n");
    assert_string_equal(run(f, "client|id"), ":7\r\n");
    assert_string_equal(run(f, "hello|3"), "-NOPROTO unsupported protocol version\r\n");
    assert_string_equal(run(f, "hello|x"),
                        "-ERR Protocol version is not an integer or out of range\r\n");
    assert_string_equal(run(f, "hello|2|foo"), "-ERR Syntax error in HELLO option 'foo'\r\n");
    assert_string_equal(run(f, "config|get|maxmemory"), "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n");
    assert_string_equal(run(f, "config|get|nosuch"), "*0\r\n");
    assert_string_equal(run(f, "info|nosuch"), "$0\r\n\r\n");
    assert_string_equal(run(f, "shutdown|abort"), "-ERR No shutdown in progress.\r\n");
    assert_string_equal(run(f, "shutdown|foo"), "-ERR syntax error\r\n");
    assert_int_equal(f->s.flags & SESSION_SHUTDOWN, 0);
    assert_string_equal(run(f, "shutdown|nosave"), "");
    assert_int_equal(f->s.flags & SESSION_SHUTDOWN, SESSION_SHUTDOWN);
    assert_string_equal(run(f, "save"),
                        "-ERR SAVE is not available: this server runs without persistence\r\n");
    assert_string_equal(run(f, "quit"), "+OK\r\n");
    assert_true(f->s.flags & SESSION_CLOSE_AFTER_REPLY);
}

static void test_auth(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(run(f, "auth|x"),
                        "-ERR AUTH <password> called without any password configured for the "
                        "default user. Are you sure your configuration is correct?\r\n");
    char pw[] = "sekret";
    f->cfg.requirepass = pw;
    f->s.authed = false;
    /* Lookup and arity come before authentication, as in Redis. */
    assert_string_equal(run(f, "nosuch"),
                        "-ERR unknown command 'nosuch', with args beginning with: \r\n");
    assert_string_equal(run(f, "get"), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_string_equal(run(f, "get|k"), "-NOAUTH Authentication required.\r\n");
    assert_true(strncmp(run(f, "hello"), "-NOAUTH HELLO must be called", 28) == 0);
    assert_string_equal(run(f, "auth|bad"),
                        "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    assert_string_equal(run(f, "auth|bob|sekret"),
                        "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    assert_string_equal(run(f, "auth|a|b|c"), "-ERR syntax error\r\n");
    assert_string_equal(run(f, "auth|default|sekret"), "+OK\r\n");
    assert_string_equal(run(f, "get|k"), "$-1\r\n");
    f->s.authed = false;
    assert_true(strncmp(run(f, "hello|2|auth|default|sekret|setname|n"), "*14\r\n", 5) == 0);
    assert_true(f->s.authed);
    assert_string_equal(f->s.name, "n");
    f->cfg.requirepass = NULL;
}

static void test_resolved_records(void **state)
{
    struct fixture *f = *state;
    db_set_persist(f->db, &fake_ops, &f->wal);
    run(f, "set|a|1");
    run(f, "set|b|2|ex|10");   /* relative expiry becomes absolute */
    run(f, "set|b|3|keepttl"); /* keeps the TTL: recorded with KEEPTTL */
    run(f, "set|a|x|nx");      /* no change: nothing recorded */
    run(f, "incr|b");          /* new value, TTL kept */
    run(f, "incr|c");          /* new key, no TTL */
    run(f, "append|a|bc");     /* the whole new value */
    run(f, "del|a|zz");        /* only keys that existed */
    run(f, "del|zz");          /* nothing */
    run(f, "expire|c|100");
    run(f, "pexpire|c|-1"); /* in the past: deleted */
    run(f, "mset|m|1|n|2");
    run(f, "hset|h|f|1|g|2");
    run(f, "hincrby|h|f|5");
    run(f, "hdel|h|f|zz");
    run(f, "persist|b");
    run(f, "setnx|s|1");
    run(f, "getdel|s");
    run(f, "set|t|v|px|5");
    f->db->now_ms += 6;
    run(f, "get|t"); /* lazily expired: recorded as DEL */
    run(f, "flushdb");
    const char *want = "SET a 1\n"
                       "SET b 2 PXAT 1010000\n"
                       "SET b 3 KEEPTTL\n"
                       "SET b 4 KEEPTTL\n"
                       "SET c 1\n"
                       "SET a 1bc\n"
                       "DEL a\n"
                       "PEXPIREAT c 1100000\n"
                       "DEL c\n"
                       "MSET m 1 n 2\n"
                       "HSET h f 1 g 2\n"
                       "HSET h f 6\n"
                       "HDEL h f\n"
                       "PERSIST b\n"
                       "SET s 1\n"
                       "DEL s\n"
                       "SET t v PXAT 1000005\n"
                       "DEL t\n"
                       "FLUSHALL\n";
    f->wal.log[f->wal.len] = '\0';
    assert_string_equal(f->wal.log, want);
    assert_int_equal(f->db->last_lsn, 19);
}

struct dump {
    char text[8192];
    size_t len;
};

static int dump_record(void *ud, int argc, const struct slice *argv)
{
    struct dump *d = ud;
    for (int i = 0; i < argc; i++)
        d->len += (size_t)snprintf(d->text + d->len, sizeof(d->text) - d->len, "%s%.*s",
                                   i ? " " : "", (int)argv[i].len, argv[i].p);
    d->len += (size_t)snprintf(d->text + d->len, sizeof(d->text) - d->len, "\n");
    return 0;
}

/* Splits s in place at sep; returns the number of pieces (at most max). */
static int split(char *s, char sep, char **out, int max)
{
    int n = 0;
    while (*s && n < max) {
        out[n++] = s;
        char *e = strchr(s, sep);
        if (e == NULL)
            break;
        *e = '\0';
        s = e + 1;
    }
    return n;
}

static int replay(void *ud, int argc, const struct slice *argv)
{
    struct db *db = ud;
    char err[128];
    int rc = persist_apply(db, argc, argv, err, sizeof(err));
    assert_int_equal(rc, 0);
    return 0;
}

/* Records of a workload, replayed into a fresh db (even twice: records are idempotent), rebuild
 * the same dataset; so does a snapshot of it. */
static void test_replay_rebuilds(void **state)
{
    struct fixture *f = *state;
    db_set_persist(f->db, &fake_ops, &f->wal);
    const char *script[] = {"set|a|1",        "set|b|2|ex|100",
                            "incr|b",         "append|a|zz",
                            "hset|h|f|1|g|2", "hincrby|h|f|9",
                            "hdel|h|g",       "mset|x|1|y|2",
                            "del|x",          "expire|y|1000",
                            "set|c|3",        "persist|y",
                            "hset|big|f|1",   "pexpireat|big|99999999999",
                            "setnx|s|1"};
    for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++)
        run(f, script[i]);
    f->wal.log[f->wal.len] = '\0';
    for (int times = 1; times <= 2; times++) {
        struct db *copy = db_new(NULL, seed);
        for (int t = 0; t < times; t++) {
            char log[8192];
            snprintf(log, sizeof(log), "%s", f->wal.log);
            char *lines[64];
            int nl = split(log, '\n', lines, 64);
            for (int l = 0; l < nl; l++) {
                char *words[32];
                int argc = split(lines[l], ' ', words, 32);
                struct slice argv[32];
                for (int w = 0; w < argc; w++)
                    argv[w] = slice_cstr(words[w]);
                replay(copy, argc, argv);
            }
        }
        struct dump a = {"", 0}, b = {"", 0};
        persist_foreach_record(f->db, 0, dump_record, &a);
        persist_foreach_record(copy, 0, dump_record, &b);
        assert_int_equal(keyspace_size(copy->ks), keyspace_size(f->db->ks));
        /* Same seed, same insertion history: same iteration order. */
        assert_string_equal(a.text, b.text);
        db_free(copy);
    }
    char err[128];
    struct slice bad[2] = {SLICE_LIT("GET"), SLICE_LIT("a")};
    assert_int_equal(persist_apply(f->db, 2, bad, err, sizeof(err)), -EINVAL);
    struct slice wrong[4] = {SLICE_LIT("HSET"), SLICE_LIT("a"), SLICE_LIT("f"), SLICE_LIT("v")};
    assert_int_equal(persist_apply(f->db, 4, wrong, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "WRONGTYPE Operation against a key holding the wrong kind of value");
}

/* --- transactions --- */

/* A second client on the same db. */
struct other {
    struct session s;
    struct buf out;
};

static const char *run_other(struct fixture *f, struct other *o, const char *cmd)
{
    return run_as(f, &o->s, &o->out, cmd, NULL);
}

static void other_init(struct other *o)
{
    buf_init(&o->out);
    o->s = (struct session){.id = 8, .authed = true, .out = &o->out};
}

static void other_free(struct other *o)
{
    cmd_session_free(&o->s);
    buf_free(&o->out);
}

static void test_multi_replies(void **state)
{
    struct fixture *f = *state;
    assert_string_equal(run(f, "exec"), "-ERR EXEC without MULTI\r\n");
    assert_string_equal(run(f, "discard"), "-ERR DISCARD without MULTI\r\n");
    assert_string_equal(run(f, "multi"), "+OK\r\n");
    assert_string_equal(run(f, "multi"), "-ERR MULTI calls can not be nested\r\n");
    assert_string_equal(run(f, "watch|x"), "-ERR WATCH inside MULTI is not allowed\r\n");
    assert_string_equal(run(f, "set|a|1"), "+QUEUED\r\n");
    assert_string_equal(run(f, "GET|a"), "+QUEUED\r\n");
    assert_string_equal(run(f, "incr|a"), "+QUEUED\r\n");
    assert_string_equal(run(f, "hset|a|f|v"), "+QUEUED\r\n");
    assert_string_equal(run(f, "ping"), "+QUEUED\r\n");
    /* Nested MULTI and WATCH inside MULTI do not flag the transaction (Redis). */
    assert_string_equal(run(f, "exec"), "*5\r\n+OK\r\n$1\r\n1\r\n:2\r\n-WRONGTYPE Operation "
                                        "against a key holding the wrong kind of value\r\n"
                                        "+PONG\r\n");
    assert_string_equal(run(f, "exec"), "-ERR EXEC without MULTI\r\n");
    assert_string_equal(run(f, "multi"), "+OK\r\n");
    assert_string_equal(run(f, "set|a|5"), "+QUEUED\r\n");
    assert_string_equal(run(f, "discard"), "+OK\r\n");
    assert_string_equal(run(f, "get|a"), "$1\r\n2\r\n");
    assert_string_equal(run(f, "multi"), "+OK\r\n");
    assert_string_equal(run(f, "exec"), "*0\r\n");
    assert_string_equal(run(f, "watch"), "-ERR wrong number of arguments for 'watch' command\r\n");
    assert_string_equal(run(f, "unwatch|x"),
                        "-ERR wrong number of arguments for 'unwatch' command\r\n");
    assert_string_equal(run(f, "unwatch"), "+OK\r\n");
    /* EXEC with arguments aborts, in or out of MULTI, as Redis does. */
    assert_string_equal(run(f, "exec|x"), "-EXECABORT Transaction discarded because of: wrong "
                                          "number of arguments for 'exec' command\r\n");
    assert_string_equal(run(f, "multi"), "+OK\r\n");
    assert_string_equal(run(f, "exec|x"), "-EXECABORT Transaction discarded because of: wrong "
                                          "number of arguments for 'exec' command\r\n");
    assert_false(f->s.multi.on);
    assert_string_equal(run(f, "multi|x"), "-ERR wrong number of arguments for 'multi' command\r\n");
    assert_false(f->s.multi.on);
}

static void test_multi_aborts(void **state)
{
    struct fixture *f = *state;
    const char *abort_ = "-EXECABORT Transaction discarded because of previous errors.\r\n";
    run(f, "multi");
    assert_string_equal(run(f, "set|a|1"), "+QUEUED\r\n");
    assert_true(strncmp(run(f, "nosuch|x"), "-ERR unknown command 'nosuch'", 29) == 0);
    assert_string_equal(run(f, "exec"), abort_);
    assert_string_equal(run(f, "get|a"), "$-1\r\n"); /* nothing ran */
    run(f, "multi");
    assert_string_equal(run(f, "get"), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_string_equal(run(f, "exec"), abort_);
    /* Commands that act on the connection or the server cannot be queued. */
    const char *no[] = {"shutdown", "wait|0|0", "replicaof|no|one", "slaveof|no|one", "failover",
                        "save", "replsync|x"};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        run(f, "multi");
        assert_string_equal(run(f, no[i]), "-ERR Command not allowed inside a transaction\r\n");
        assert_string_equal(run(f, "exec"), abort_);
        assert_int_equal(f->s.flags, 0);
    }
    /* NOAUTH inside MULTI flags it too. */
    run(f, "multi");
    f->s.authed = false;
    assert_string_equal(run(f, "get|a"), "-NOAUTH Authentication required.\r\n");
    f->s.authed = true;
    assert_string_equal(run(f, "exec"), abort_);
    /* The queue is bounded by the query-buffer limit. */
    f->cfg.query_buffer = 300;
    run(f, "multi");
    assert_string_equal(run(f, "set|a|1"), "+QUEUED\r\n");
    char big[400];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char cmd[500];
    snprintf(cmd, sizeof(cmd), "set|b|%s", big);
    assert_true(strncmp(run(f, cmd), "-ERR transaction queue exceeds", 30) == 0);
    assert_int_equal(f->s.multi.n, 1);
    assert_string_equal(run(f, "exec"), abort_);
    assert_int_equal(f->s.multi.n, 0);
    f->cfg.query_buffer = 1u << 30;
    /* A transaction left open is freed with the session (ASan checks). */
    run(f, "watch|k");
    run(f, "multi");
    run(f, "set|a|1");
}

static const char *refusal;

static const char *fake_refusal(void *ud)
{
    (void)ud;
    return refusal;
}

static const struct cmd_repl_ops fake_repl = {.write_refusal = fake_refusal};

static void test_exec_refused_when_writes_are(void **state)
{
    struct fixture *f = *state;
    f->env.repl = &fake_repl;
    const char *ro = "READONLY You can't write against a read only replica.";
    /* Queued while writable, then the node became a replica: EXEC aborts (Redis 7's text). */
    refusal = NULL;
    run(f, "multi");
    run(f, "set|a|1");
    refusal = ro;
    assert_string_equal(run(f, "exec"), "-EXECABORT Transaction discarded because of: READONLY "
                                        "You can't write against a read only replica.\r\n");
    assert_false(f->s.multi.on);
    assert_string_equal(run(f, "get|a"), "$-1\r\n");
    /* Reads only: EXEC runs on a replica. */
    run(f, "multi");
    run(f, "get|a");
    assert_string_equal(run(f, "exec"), "*1\r\n$-1\r\n");
    /* A write refused while queueing flags the transaction. */
    run(f, "multi");
    assert_string_equal(run(f, "set|a|1"),
                        "-READONLY You can't write against a read only replica.\r\n");
    refusal = NULL;
    assert_string_equal(run(f, "exec"),
                        "-EXECABORT Transaction discarded because of previous errors.\r\n");
    f->env.repl = NULL;
}

static void test_watch_dirty(void **state)
{
    struct fixture *f = *state;
    struct other o;
    other_init(&o);
    /* Changed by another client. */
    run(f, "watch|k");
    assert_string_equal(run_other(f, &o, "set|k|1"), "+OK\r\n");
    run(f, "multi");
    run(f, "set|a|1");
    assert_string_equal(run(f, "exec"), "*-1\r\n");
    assert_string_equal(run(f, "get|a"), "$-1\r\n");
    assert_int_equal(watch_keys(f->db->watch), 0); /* EXEC unwatches */
    /* A write to an unrelated key (or an unchanged one) does not dirty. */
    run(f, "watch|k|k2");
    run_other(f, &o, "set|other|1");
    run_other(f, &o, "set|k|x|nx"); /* exists: no change */
    run_other(f, &o, "del|k2");     /* missing: no change */
    run(f, "multi");
    run(f, "set|a|1");
    assert_string_equal(run(f, "exec"), "*1\r\n+OK\r\n");
    /* Changed by the same client before MULTI. */
    run(f, "watch|k");
    run(f, "incr|a");
    run(f, "append|k|z");
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*-1\r\n");
    /* FLUSHALL dirties the watched keys that existed (Redis 7.0), not the others. */
    run_other(f, &o, "set|k|1");
    run(f, "watch|k");
    run_other(f, &o, "flushall");
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*-1\r\n");
    run(f, "watch|k");
    run_other(f, &o, "flushall");
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*0\r\n");
    /* ... but an applied FLUSHALL (a full resync replaces the dataset) dirties them all. */
    run(f, "watch|k");
    char ferr[128];
    struct slice flush[1] = {SLICE_LIT("FLUSHALL")};
    assert_int_equal(cmd_apply(f->db, 1, flush, ferr, sizeof(ferr)), 0);
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*-1\r\n");
    /* Hash and expiry changes count. */
    run(f, "watch|h");
    run_other(f, &o, "hset|h|f|v");
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*-1\r\n");
    run(f, "watch|h");
    run_other(f, &o, "expire|h|100");
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*-1\r\n");
    /* UNWATCH forgets. */
    run(f, "watch|h");
    run_other(f, &o, "hdel|h|f");
    run(f, "unwatch");
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*0\r\n");
    /* DISCARD unwatches. */
    run(f, "watch|h");
    run(f, "multi");
    run(f, "discard");
    assert_int_equal(watch_keys(f->db->watch), 0);
    /* A key that expires after WATCH counts as changed, even if nobody touched it. */
    run(f, "set|t|v|px|5");
    run(f, "watch|t");
    f->db->now_ms += 10;
    run(f, "multi");
    run(f, "set|a|2");
    assert_string_equal(run(f, "exec"), "*-1\r\n");
    /* A key already expired when WATCHed does not (Redis 7). */
    run(f, "set|t|v|px|5");
    f->db->now_ms += 10;
    run(f, "watch|t");
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*0\r\n");
    /* A record applied by replication (or recovery) dirties too. */
    run(f, "watch|r");
    char err[128];
    struct slice rec[3] = {SLICE_LIT("SET"), SLICE_LIT("r"), SLICE_LIT("1")};
    assert_int_equal(cmd_apply(f->db, 3, rec, err, sizeof(err)), 0);
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*-1\r\n");
    run(f, "watch|m2");
    struct slice mrec[5] = {SLICE_LIT("MSET"), SLICE_LIT("m1"), SLICE_LIT("1"), SLICE_LIT("m2"),
                            SLICE_LIT("2")};
    assert_int_equal(cmd_apply(f->db, 5, mrec, err, sizeof(err)), 0);
    run(f, "multi");
    assert_string_equal(run(f, "exec"), "*-1\r\n");
    /* Two watchers, a disconnect unwatches one. */
    run(f, "watch|z");
    run_other(f, &o, "watch|z|y");
    assert_int_equal(watch_keys(f->db->watch), 2);
    other_free(&o);
    assert_int_equal(watch_keys(f->db->watch), 1);
    run(f, "unwatch");
    assert_int_equal(watch_keys(f->db->watch), 0);
}

static void test_exec_logs_one_record(void **state)
{
    struct fixture *f = *state;
    db_set_persist(f->db, &fake_ops, &f->wal);
    bool wrote;
    run(f, "multi");
    run(f, "set|a|1");
    run(f, "incr|a");
    run(f, "get|a");
    run(f, "set|a|x|nx"); /* changes nothing: no record */
    run(f, "mset|b|1|c|2");
    assert_string_equal(run_as(f, &f->s, &f->out, "exec", &wrote),
                        "*5\r\n+OK\r\n:2\r\n$1\r\n2\r\n$-1\r\n+OK\r\n");
    assert_true(wrote);
    assert_int_equal(f->db->last_lsn, 1);
    assert_string_equal(f->wal.log, "TXN 3 SET a 1 3 SET a 2 5 MSET b 1 c 2\n");
    /* One write: the plain record. */
    f->wal.len = 0;
    run(f, "multi");
    run(f, "get|a");
    run(f, "del|b|zz");
    assert_string_equal(run_as(f, &f->s, &f->out, "exec", &wrote), "*2\r\n$1\r\n2\r\n:1\r\n");
    assert_true(wrote);
    f->wal.log[f->wal.len] = '\0';
    assert_string_equal(f->wal.log, "DEL b\n");
    assert_int_equal(f->db->last_lsn, 2);
    /* Reads only: nothing logged, nothing held. */
    f->wal.len = 0;
    run(f, "multi");
    run(f, "get|a");
    run(f, "exists|a");
    assert_string_equal(run_as(f, &f->s, &f->out, "exec", &wrote), "*2\r\n$1\r\n2\r\n:1\r\n");
    assert_false(wrote);
    assert_int_equal(f->wal.len, 0);
    assert_int_equal(f->db->last_lsn, 2);
    /* A key expiring lazily inside EXEC is part of the transaction's record. */
    run(f, "set|t|v|px|5");
    f->wal.len = 0;
    f->db->now_ms += 10;
    run(f, "multi");
    run(f, "get|t");
    run(f, "set|u|1");
    assert_string_equal(run_as(f, &f->s, &f->out, "exec", &wrote), "*2\r\n$-1\r\n+OK\r\n");
    f->wal.log[f->wal.len] = '\0';
    assert_string_equal(f->wal.log, "TXN 2 DEL t 3 SET u 1\n");
    /* The TXN record replays to the same state. */
    struct db *copy = db_new(NULL, seed);
    char err[128];
    struct slice txn[] = {SLICE_LIT("TXN"), SLICE_LIT("3"), SLICE_LIT("SET"), SLICE_LIT("a"),
                          SLICE_LIT("1"), SLICE_LIT("4"), SLICE_LIT("SET"), SLICE_LIT("a"),
                          SLICE_LIT("2"), SLICE_LIT("KEEPTTL"), SLICE_LIT("5"), SLICE_LIT("MSET"),
                          SLICE_LIT("b"), SLICE_LIT("1"), SLICE_LIT("c"), SLICE_LIT("2")};
    assert_int_equal(persist_apply(copy, 16, txn, err, sizeof(err)), 0);
    assert_int_equal(keyspace_size(copy->ks), 3);
    assert_non_null(keyspace_find(copy->ks, SLICE_LIT("c"), 0));
    db_free(copy);
}

/* Applies the '|'-separated record rec to a fresh db; returns cmd_apply's result and leaves
 * the number of keys afterwards in *keys. */
static int apply_txt(const char *rec, uint64_t *keys, char *err, size_t errlen)
{
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", rec);
    char *words[64];
    int argc = split(copy, '|', words, 64);
    struct slice argv[64];
    for (int i = 0; i < argc; i++)
        argv[i] = slice_cstr(words[i]);
    struct db *db = db_new(NULL, seed);
    int rc = cmd_apply(db, argc, argv, err, errlen);
    *keys = keyspace_size(db->ks);
    db_free(db);
    return rc;
}

static void test_apply_txn(void **state)
{
    (void)state;
    char err[256];
    uint64_t keys;
    assert_int_equal(apply_txt("TXN|3|SET|a|1|2|DEL|a|3|SET|b|2", &keys, err, sizeof(err)), 0);
    assert_int_equal(keys, 1);
    assert_int_equal(apply_txt("txn|1|FLUSHALL|4|HSET|h|f|v", &keys, err, sizeof(err)), 0);
    assert_int_equal(keys, 1);
    /* Malformed: nothing applied (the valid first sub-record included). */
    const char *bad[] = {
        "TXN",                          /* no sub-records */
        "TXN|3|SET|a|1|0",              /* zero count */
        "TXN|3|SET|a|1|2",              /* count without a record */
        "TXN|3|SET|a|1|3|DEL|b",        /* count past the end */
        "TXN|3|SET|a|1|x|DEL|b",        /* not a number */
        "TXN|3|SET|a|1|-2|DEL|b",       /* sign */
        "TXN|3|SET|a|1|02|DEL|b",       /* leading zero */
        "TXN|3|SET|a|1|+2|DEL|b",       /* plus */
        "TXN|3|SET|a|1|2|GET|a",        /* not a record command */
        "TXN|3|SET|a|1|2|FOO|a",        /* unknown */
        "TXN|3|SET|a|1|4|TXN|1|DEL|a",  /* nested */
        "TXN|3|SET|a|1|2|SET|a",        /* bad arity */
        "TXN|3|SET|a|1|99999999999|SET", /* huge count */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(apply_txt(bad[i], &keys, err, sizeof(err)), -EINVAL);
        assert_int_equal(keys, 0);
        assert_true(err[0] != '\0');
    }
    apply_txt("TXN|3|SET|a|1|4|TXN|1|DEL|a", &keys, err, sizeof(err));
    assert_string_equal(err, "TXN sub-record 2: nested TXN");
    apply_txt("TXN|3|SET|a|1|2|GET|a", &keys, err, sizeof(err));
    assert_string_equal(err, "TXN sub-record 2: 'GET' is not a record command");
}

static void test_record_keys(void **state)
{
    (void)state;
    int first, step;
    struct slice set[3] = {SLICE_LIT("SET"), SLICE_LIT("k"), SLICE_LIT("v")};
    assert_int_equal(persist_record_keys(3, set, &first, &step), PERSIST_KEYS_SOME);
    assert_int_equal(first, 1);
    assert_true(first + step >= 3); /* argv[1] only */
    struct slice mset[5] = {SLICE_LIT("MSET"), SLICE_LIT("a"), SLICE_LIT("1"), SLICE_LIT("b"),
                            SLICE_LIT("2")};
    assert_int_equal(persist_record_keys(5, mset, &first, &step), PERSIST_KEYS_SOME);
    assert_int_equal(first, 1);
    assert_int_equal(step, 2);
    struct slice del[3] = {SLICE_LIT("DEL"), SLICE_LIT("a"), SLICE_LIT("b")};
    assert_int_equal(persist_record_keys(3, del, &first, &step), PERSIST_KEYS_SOME);
    assert_int_equal(step, 1);
    const char *one_key[] = {"PEXPIREAT", "PERSIST", "HSET", "HDEL"};
    for (int i = 0; i < 4; i++) {
        struct slice r[4] = {slice_cstr(one_key[i]), SLICE_LIT("k"), SLICE_LIT("x"),
                             SLICE_LIT("y")};
        assert_int_equal(persist_record_keys(4, r, &first, &step), PERSIST_KEYS_SOME);
        assert_int_equal(first, 1);
        assert_true(first + step >= 4);
    }
    struct slice fl[1] = {SLICE_LIT("FLUSHALL")};
    assert_int_equal(persist_record_keys(1, fl, &first, &step), PERSIST_KEYS_ALL);
    assert_int_equal(persist_record_keys(0, NULL, &first, &step), PERSIST_KEYS_NONE);
    struct slice txn[3] = {SLICE_LIT("TXN"), SLICE_LIT("1"), SLICE_LIT("FLUSHALL")};
    assert_int_equal(persist_record_keys(3, txn, &first, &step), PERSIST_KEYS_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_sorted),
        cmocka_unit_test_setup_teardown(test_arity_and_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_and_misc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolved_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_rebuilds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_dirty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_refused_when_writes_are, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_logs_one_record, setup, teardown),
        cmocka_unit_test(test_apply_txn),
        cmocka_unit_test(test_record_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
