/* SPDX-License-Identifier: MIT */
/* store/cmd_impl.h -- private to the command files (store/cmd.c, store/cmd_data.c): the call
 * context every command receives, shared reply helpers and error texts, and the data commands
 * the table in cmd.c points at. */
#ifndef TD_STORE_CMD_IMPL_H
#define TD_STORE_CMD_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "base/alloc.h"
#include "proto/resp.h"
#include "store/cmd.h"
#include "store/keyspace.h"

#define ERR_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"
#define ERR_NOTINT "ERR value is not an integer or out of range"
#define ERR_SYNTAX "ERR syntax error"
#define ERR_OVERFLOW "ERR increment or decrement would overflow"
#define ERR_NOAUTH "NOAUTH Authentication required."
#define ERR_WRONGPASS "WRONGPASS invalid username-password pair or user is disabled."

#define CMD_WRITE 0x01u    /* changes the dataset */
#define CMD_READONLY 0x02u /* reads keys */
#define CMD_NOAUTH 0x04u   /* allowed before AUTH */
#define CMD_RECORD 0x08u   /* part of the resolved-record vocabulary (persist_apply) */
#define CMD_FAST 0x10u
#define CMD_ADMIN 0x20u
#define CMD_LOADING 0x40u /* also fine while loading */
#define CMD_NO_MULTI 0x80u /* refused between MULTI and EXEC */
#define CMD_MULTI_CTL 0x100u /* runs at once between MULTI and EXEC (EXEC, DISCARD, ...) */

struct call;

/* A command table entry. */
struct cmd_def {
    const char *name; /* lower case; "client|setname" style full names are built on demand */
    void (*fn)(struct call *c);
    int arity; /* > 0 exact, < 0 at least -arity */
    unsigned flags;
    const char *group; /* COMMAND DOCS / ACL category */
    const char *summary;
    const struct cmd_def *subs; /* container: nsubs sub-commands sorted by name */
    size_t nsubs;
};

/* One command being run. */
struct call {
    struct cmd_env *env;
    struct db *db;
    struct keyspace *ks;
    struct session *s;
    struct buf *out;
    int argc;
    const struct slice *argv;
    int64_t now;
    const struct cmd_def *def;
    const char *parent; /* container name when def is a sub-command */
    bool logged;
};

/* --- small helpers --- */

/* Appends a string literal reply; the length comes from the literal itself. */
#define ADD_LIT(o, lit) resp_add_raw((o), (lit), sizeof(lit) - 1)

static inline void reply_ok(struct buf *o)
{
    ADD_LIT(o, "+OK\r\n");
}

static inline void reply_err(struct buf *o, const char *msg)
{
    resp_add_error(o, msg, strlen(msg));
}

static inline void reply_zero(struct buf *o)
{
    ADD_LIT(o, ":0\r\n");
}

static inline void reply_one(struct buf *o)
{
    ADD_LIT(o, ":1\r\n");
}

static inline bool arg_is(struct slice a, const char *word)
{
    return slice_eq_nocase(a, slice_cstr(word));
}

static inline bool parse_int_arg(struct slice a, int64_t *out)
{
    return resp_parse_int(a.p, a.len, out);
}

/* Records one resolved write. */
static inline void log_rec(struct call *c, int argc, const struct slice *argv)
{
    db_log(c->db, argc, argv);
    c->logged = true;
}

static inline struct slice *rv_get(struct cmd_env *env, size_t n)
{
    if (n > env->rv_cap) {
        size_t cap = env->rv_cap ? env->rv_cap : 16;
        while (cap < n)
            cap *= 2;
        env->rv = xrealloc(env->rv, cap * sizeof(*env->rv));
        env->rv_cap = cap;
    }
    return env->rv;
}

/* Lookup for reads: counts hits and misses. */
static inline struct kentry *lookup_read(struct call *c, struct slice key)
{
    struct kentry *e = keyspace_find(c->ks, key, c->now);
    if (e)
        c->db->hits++;
    else
        c->db->misses++;
    return e;
}

static inline struct kentry *lookup_write(struct call *c, struct slice key)
{
    return keyspace_find(c->ks, key, c->now);
}

/* Replies the Redis arity error for the command being run (named "container|sub" for
 * sub-commands). */
void cmd_arity_error(struct call *c);

/* Runs an already resolved command for session s, appending its reply to s->out. Returns true
 * when it logged a record. */
bool cmd_run(struct cmd_env *env, struct session *s, const struct cmd_def *def, const char *parent,
             int argc, const struct slice *argv);

/* Transaction commands (store/cmd_multi.c). */
void cmd_multi_multi(struct call *c);
void cmd_multi_exec(struct call *c);
void cmd_multi_discard(struct call *c);
void cmd_multi_watch(struct call *c);
void cmd_multi_unwatch(struct call *c);
/* Replies "EXECABORT Transaction discarded because of: why" and discards the transaction (what
 * Redis answers when EXEC itself is refused). */
void cmd_multi_abort(struct call *c, const char *why);
/* Copies the command of c into the session's queue and replies +QUEUED, or replies an error and
 * flags the transaction when the queue would exceed its byte limit. */
void cmd_multi_queue(struct call *c);
/* Drops the queue, leaves MULTI and unwatches every key. */
void cmd_multi_discard_state(struct session *s);

/* Data commands (store/cmd_data.c); each appends exactly one reply to c->out. */
void cmd_data_get(struct call *c);
void cmd_data_set(struct call *c);
void cmd_data_setnx(struct call *c);
void cmd_data_getdel(struct call *c);
void cmd_data_del(struct call *c);
void cmd_data_exists(struct call *c);
void cmd_data_incr(struct call *c);
void cmd_data_decr(struct call *c);
void cmd_data_incrby(struct call *c);
void cmd_data_decrby(struct call *c);
void cmd_data_append(struct call *c);
void cmd_data_strlen(struct call *c);
void cmd_data_mget(struct call *c);
void cmd_data_mset(struct call *c);
void cmd_data_expire(struct call *c);
void cmd_data_pexpire(struct call *c);
void cmd_data_expireat(struct call *c);
void cmd_data_pexpireat(struct call *c);
void cmd_data_ttl(struct call *c);
void cmd_data_pttl(struct call *c);
void cmd_data_persist(struct call *c);
void cmd_data_type(struct call *c);
void cmd_data_keys(struct call *c);
void cmd_data_scan(struct call *c);
void cmd_data_dbsize(struct call *c);
void cmd_data_flushall(struct call *c);
void cmd_data_hset(struct call *c);
void cmd_data_hmset(struct call *c);
void cmd_data_hget(struct call *c);
void cmd_data_hmget(struct call *c);
void cmd_data_hgetall(struct call *c);
void cmd_data_hdel(struct call *c);
void cmd_data_hlen(struct call *c);
void cmd_data_hexists(struct call *c);
void cmd_data_hincrby(struct call *c);

#endif
