/* SPDX-License-Identifier: MIT */
/* store/cmd.c -- command table and implementations.
 *
 * Dispatch follows Redis 7's order, so error replies match byte for byte: look the name up
 * (unknown command / unknown subcommand), check the arity, then authentication (NOAUTH), then
 * run. The table is sorted by lower-case name and searched by bisection on a folded copy of
 * argv[0]; containers (CLIENT, CONFIG, COMMAND) have a sub-table searched the same way.
 *
 * Every write calls db_log() with its resolved record (store/persist.h) after the keyspace has
 * changed and only when it changed something. Reads look keys up with the db's current time,
 * which removes expired keys lazily (the keyspace hook logs a DEL for each). */
#include "store/cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/err.h"
#include "proto/resp.h"
#include "store/cmd_impl.h"
#include "store/keyspace.h"
#include "store/persist.h"

#define TANDEM_REDIS_VERSION "7.0.0"

/* --- connection commands --- */

static void cmd_ping(struct call *c)
{
    if (c->argc == 1)
        ADD_LIT(c->out, "+PONG\r\n");
    else if (c->argc == 2)
        resp_add_bulk(c->out, c->argv[1].p, c->argv[1].len);
    else
        resp_add_errorf(c->out, "ERR wrong number of arguments for '%s' command", "ping");
}

static void cmd_echo(struct call *c)
{
    resp_add_bulk(c->out, c->argv[1].p, c->argv[1].len);
}

static const char *requirepass(const struct call *c)
{
    const char *p = c->db->cfg ? c->db->cfg->requirepass : NULL;
    return (p && p[0]) ? p : NULL;
}

/* Compares in time that depends only on the lengths, not on where the bytes differ. */
static bool secret_eq(struct slice a, const char *b)
{
    size_t bl = strlen(b);
    unsigned char diff = (unsigned char)(a.len != bl);
    for (size_t i = 0; i < a.len; i++)
        diff |= (unsigned char)(a.p[i] ^ b[i % (bl ? bl : 1)]);
    return diff == 0;
}

/* Checks user/password; returns true and marks the session authenticated on success. user may
 * be NULL (AUTH password form). */
static bool try_auth(struct call *c, const struct slice *user, struct slice pass)
{
    const char *rp = requirepass(c);
    if (user && !slice_eq(*user, SLICE_LIT("default")))
        return false;
    if (rp == NULL) {
        c->s->authed = true;
        return true;
    }
    if (!secret_eq(pass, rp))
        return false;
    c->s->authed = true;
    return true;
}

static void cmd_auth(struct call *c)
{
    if (c->argc > 3) {
        reply_err(c->out, ERR_SYNTAX);
        return;
    }
    if (c->argc == 2 && requirepass(c) == NULL) {
        reply_err(c->out, "ERR AUTH <password> called without any password configured for the "
                          "default user. Are you sure your configuration is correct?");
        return;
    }
    bool ok = c->argc == 2 ? try_auth(c, NULL, c->argv[1]) : try_auth(c, &c->argv[1], c->argv[2]);
    if (ok)
        reply_ok(c->out);
    else
        reply_err(c->out, ERR_WRONGPASS);
}

static bool valid_client_name(struct slice n)
{
    for (size_t i = 0; i < n.len; i++)
        if (n.p[i] < '!' || n.p[i] > '~')
            return false;
    return true;
}

static void set_client_name(struct session *s, struct slice n)
{
    free(s->name);
    s->name = n.len ? xstrndup(n.p, n.len) : NULL;
}

static void cmd_hello(struct call *c)
{
    int64_t ver = 2;
    int j = 1;
    if (c->argc >= 2) {
        if (!parse_int_arg(c->argv[1], &ver)) {
            reply_err(c->out, "ERR Protocol version is not an integer or out of range");
            return;
        }
        j = 2;
        /* tandem speaks RESP2 only: HELLO 3 gets the error Redis gives for unknown versions. */
        if (ver != 2) {
            reply_err(c->out, "NOPROTO unsupported protocol version");
            return;
        }
    }
    const struct slice *user = NULL, *pass = NULL, *name = NULL;
    for (; j < c->argc; j++) {
        int more = c->argc - 1 - j;
        if (arg_is(c->argv[j], "auth") && more >= 2) {
            user = &c->argv[j + 1];
            pass = &c->argv[j + 2];
            j += 2;
        } else if (arg_is(c->argv[j], "setname") && more >= 1) {
            name = &c->argv[j + 1];
            j++;
        } else {
            resp_add_errorf(c->out, "ERR Syntax error in HELLO option '%.*s'", (int)c->argv[j].len,
                            c->argv[j].p);
            return;
        }
    }
    if (user && !try_auth(c, user, *pass)) {
        reply_err(c->out, ERR_WRONGPASS);
        return;
    }
    if (!c->s->authed) {
        reply_err(c->out, "NOAUTH HELLO must be called with the client already authenticated, "
                          "otherwise the HELLO AUTH <user> <pass> option can be used to "
                          "authenticate the client and select the RESP protocol version at the "
                          "same time");
        return;
    }
    if (name) {
        if (!valid_client_name(*name)) {
            reply_err(c->out,
                      "ERR Client names cannot contain spaces, newlines or special characters.");
            return;
        }
        set_client_name(c->s, *name);
    }
    resp_add_array(c->out, 14);
    resp_add_bulk(c->out, "server", 6);
    resp_add_bulk(c->out, "redis", 5);
    resp_add_bulk(c->out, "version", 7);
    resp_add_bulk(c->out, TANDEM_REDIS_VERSION, strlen(TANDEM_REDIS_VERSION));
    resp_add_bulk(c->out, "proto", 5);
    resp_add_int(c->out, 2);
    resp_add_bulk(c->out, "id", 2);
    resp_add_int(c->out, (int64_t)c->s->id);
    resp_add_bulk(c->out, "mode", 4);
    resp_add_bulk(c->out, "standalone", 10);
    resp_add_bulk(c->out, "role", 4);
    resp_add_bulk(c->out, "master", 6);
    resp_add_bulk(c->out, "modules", 7);
    resp_add_array(c->out, 0);
}

static void cmd_select(struct call *c)
{
    int64_t id;
    if (!parse_int_arg(c->argv[1], &id) || id < INT32_MIN || id > INT32_MAX) {
        reply_err(c->out, ERR_NOTINT);
        return;
    }
    /* tandem has one database; any other index is out of its range. */
    if (id != 0) {
        reply_err(c->out, "ERR DB index is out of range");
        return;
    }
    reply_ok(c->out);
}

static void cmd_quit(struct call *c)
{
    c->s->flags |= SESSION_CLOSE_AFTER_REPLY;
    reply_ok(c->out);
}

static void add_help(struct buf *o, const char *const *lines)
{
    size_t n = 0;
    while (lines[n])
        n++;
    resp_add_array(o, (int64_t)n);
    for (size_t i = 0; i < n; i++)
        resp_add_status(o, lines[i]);
}

static void cmd_client_id(struct call *c)
{
    resp_add_int(c->out, (int64_t)c->s->id);
}

static void cmd_client_getname(struct call *c)
{
    if (c->s->name)
        resp_add_bulk(c->out, c->s->name, strlen(c->s->name));
    else
        resp_add_null(c->out);
}

static void cmd_client_setname(struct call *c)
{
    if (!valid_client_name(c->argv[2])) {
        reply_err(c->out,
                  "ERR Client names cannot contain spaces, newlines or special characters.");
        return;
    }
    set_client_name(c->s, c->argv[2]);
    reply_ok(c->out);
}

static void cmd_client_help(struct call *c)
{
    static const char *const lines[] = {
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "HELP",
        "    Prints this help.",
        NULL,
    };
    add_help(c->out, lines);
}

/* --- server commands --- */

static void human_bytes(char *out, size_t len, uint64_t n)
{
    double d = (double)n;
    if (n < 1024)
        snprintf(out, len, "%" PRIu64 "B", n);
    else if (n < (1ull << 20))
        snprintf(out, len, "%.2fK", d / 1024);
    else if (n < (1ull << 30))
        snprintf(out, len, "%.2fM", d / (1024 * 1024));
    else
        snprintf(out, len, "%.2fG", d / (1024.0 * 1024 * 1024));
}

static void info_section(struct call *c, const char *name, struct buf *o)
{
    struct cmd_env *env = c->env;
    struct db *db = c->db;
    if (!strcmp(name, "server")) {
        buf_append_str(o, "# Server\r\n");
        buf_printf(o, "redis_version:%s\r\n", TANDEM_REDIS_VERSION);
        buf_append_str(o, "redis_mode:standalone\r\n");
    } else if (!strcmp(name, "clients")) {
        buf_append_str(o, "# Clients\r\n");
    } else if (!strcmp(name, "memory")) {
        buf_append_str(o, "# Memory\r\n");
    } else if (!strcmp(name, "persistence")) {
        buf_append_str(o, "# Persistence\r\n");
    } else if (!strcmp(name, "stats")) {
        buf_append_str(o, "# Stats\r\n");
    } else if (!strcmp(name, "replication")) {
        buf_append_str(o, "# Replication\r\n");
    } else if (!strcmp(name, "keyspace")) {
        buf_append_str(o, "# Keyspace\r\n");
    }
    if (env->info && strcmp(name, "keyspace") != 0)
        env->info(env->info_ud, name, o);
    if (!strcmp(name, "memory")) {
        char h[32];
        size_t m = keyspace_mem(c->ks);
        human_bytes(h, sizeof(h), m);
        buf_printf(o,
                   "used_memory_dataset:%zu\r\nused_memory_dataset_human:%s\r\n"
                   "maxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n"
                   "mem_allocator:libc\r\n",
                   m, h);
    } else if (!strcmp(name, "persistence")) {
        buf_printf(o, "loading:0\r\nrdb_changes_since_last_save:%" PRIu64 "\r\n", db->dirty);
        if (db->pops && db->pops->info)
            db->pops->info(db->pud, o);
        else
            buf_append_str(o, "rdb_bgsave_in_progress:0\r\naof_enabled:0\r\n"
                              "aof_rewrite_in_progress:0\r\ntandem_persistence:none\r\n");
    } else if (!strcmp(name, "stats")) {
        buf_printf(o,
                   "expired_keys:%" PRIu64 "\r\nevicted_keys:0\r\nkeyspace_hits:%" PRIu64
                   "\r\nkeyspace_misses:%" PRIu64 "\r\ntandem_watched_keys:%zu\r\n",
                   keyspace_expired_total(c->ks), db->hits, db->misses, watch_keys(db->watch));
    } else if (!strcmp(name, "replication")) {
        if (env->repl)
            env->repl->info(env->repl_ud, o);
        else
            buf_append_str(o, "role:master\r\nconnected_slaves:0\r\n"
                              "master_failover_state:no-failover\r\n"
                              "master_repl_offset:0\r\nsecond_repl_offset:-1\r\n"
                              "repl_backlog_active:0\r\n");
    } else if (!strcmp(name, "keyspace")) {
        uint64_t keys = keyspace_size(c->ks);
        if (keys)
            buf_printf(o, "db0:keys=%" PRIu64 ",expires=%" PRIu64 ",avg_ttl=0\r\n", keys,
                       keyspace_expires(c->ks));
    }
}

static const char *const info_all[] = {"server", "clients",     "memory",   "persistence",
                                       "stats",  "replication", "keyspace", NULL};

static void cmd_info(struct call *c)
{
    bool want[7] = {false};
    if (c->argc == 1) {
        for (int i = 0; i < 7; i++)
            want[i] = true;
    }
    for (int j = 1; j < c->argc; j++) {
        struct slice a = c->argv[j];
        if (arg_is(a, "all") || arg_is(a, "default") || arg_is(a, "everything")) {
            for (int i = 0; i < 7; i++)
                want[i] = true;
            continue;
        }
        for (int i = 0; i < 7; i++)
            if (arg_is(a, info_all[i]))
                want[i] = true;
    }
    struct buf o;
    buf_init(&o);
    int sections = 0;
    for (int i = 0; i < 7; i++) {
        if (!want[i])
            continue;
        if (sections++)
            buf_append_str(&o, "\r\n");
        info_section(c, info_all[i], &o);
    }
    resp_add_bulk(c->out, o.p, o.len);
    buf_free(&o);
}

static void cmd_role(struct call *c)
{
    if (c->env->repl)
        c->env->repl->role(c->env->repl_ud, c->out);
    else
        ADD_LIT(c->out, "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
}

/* Copies a host argument into out (NUL-terminated); false when it cannot be a host name. */
static bool host_arg(struct slice a, char *out, size_t len)
{
    if (a.len == 0 || a.len >= len || memchr(a.p, '\0', a.len))
        return false;
    memcpy(out, a.p, a.len);
    out[a.len] = '\0';
    return true;
}

static void cmd_replicaof(struct call *c)
{
    char host[256], err[256];
    const char *h = NULL;
    int64_t port = 0;
    if (arg_is(c->argv[1], "no") && arg_is(c->argv[2], "one")) {
        h = NULL;
    } else if (!host_arg(c->argv[1], host, sizeof(host))) {
        reply_err(c->out, "ERR Invalid master host");
        return;
    } else if (!parse_int_arg(c->argv[2], &port) || port < 1 || port > 65535) {
        reply_err(c->out, "ERR Invalid master port");
        return;
    } else {
        h = host;
    }
    if (c->env->repl == NULL) {
        reply_err(c->out, "ERR replication needs the write-ahead log (not with --in-memory)");
        return;
    }
    if (c->env->repl->replicaof(c->env->repl_ud, h, (int)port, err, sizeof(err)) != 0) {
        resp_add_errorf(c->out, "%s", err);
        return;
    }
    reply_ok(c->out);
}

static void cmd_failover(struct call *c)
{
    char host[256], err[256];
    const char *h = NULL;
    int64_t port = 0, timeout = 0;
    bool abort_ = false;
    for (int j = 1; j < c->argc; j++) {
        if (arg_is(c->argv[j], "to") && j + 2 < c->argc) {
            if (!host_arg(c->argv[j + 1], host, sizeof(host)) ||
                !parse_int_arg(c->argv[j + 2], &port) || port < 1 || port > 65535) {
                reply_err(c->out, "ERR Invalid target host or port");
                return;
            }
            h = host;
            j += 2;
        } else if (arg_is(c->argv[j], "timeout") && j + 1 < c->argc) {
            if (!parse_int_arg(c->argv[j + 1], &timeout) || timeout <= 0) {
                reply_err(c->out, "ERR FAILOVER timeout must be greater than 0");
                return;
            }
            j++;
        } else if (arg_is(c->argv[j], "abort")) {
            abort_ = true;
        } else if (arg_is(c->argv[j], "force")) {
            /* accepted: tandem never promotes a target that lacks acknowledged writes */
        } else {
            reply_err(c->out, ERR_SYNTAX);
            return;
        }
    }
    if (c->env->repl == NULL) {
        reply_err(c->out, "ERR FAILOVER requires connected replicas.");
        return;
    }
    if (c->env->repl->failover(c->env->repl_ud, h, (int)port, (uint64_t)timeout, abort_, err,
                               sizeof(err)) != 0) {
        resp_add_errorf(c->out, "%s", err);
        return;
    }
    reply_ok(c->out);
}

/* WAIT numreplicas timeout: the server blocks the client (SESSION_WAIT) and answers with the
 * number of replicas holding the connection's last write. */
static void cmd_wait(struct call *c)
{
    int64_t n, timeout;
    if (!parse_int_arg(c->argv[1], &n) || !parse_int_arg(c->argv[2], &timeout)) {
        reply_err(c->out, ERR_NOTINT);
        return;
    }
    if (timeout < 0) {
        reply_err(c->out, "ERR timeout is negative");
        return;
    }
    c->s->wait_replicas = n < 0 ? 0 : (uint64_t)n;
    c->s->wait_timeout_ms = (uint64_t)timeout;
    c->s->flags |= SESSION_WAIT;
}

static void cmd_time(struct call *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    resp_add_array(c->out, 2);
    resp_add_bulk_int(c->out, (int64_t)ts.tv_sec);
    resp_add_bulk_int(c->out, (int64_t)(ts.tv_nsec / 1000));
}

static void cmd_shutdown(struct call *c)
{
    bool nosave = false, save = false, abort_ = false;
    for (int j = 1; j < c->argc; j++) {
        struct slice a = c->argv[j];
        if (arg_is(a, "nosave"))
            nosave = true;
        else if (arg_is(a, "save"))
            save = true;
        else if (arg_is(a, "now") || arg_is(a, "force"))
            continue;
        else if (arg_is(a, "abort"))
            abort_ = true;
        else {
            reply_err(c->out, ERR_SYNTAX);
            return;
        }
    }
    if ((abort_ && c->argc > 2) || (nosave && save)) {
        reply_err(c->out, ERR_SYNTAX);
        return;
    }
    if (abort_) {
        reply_err(c->out, "ERR No shutdown in progress.");
        return;
    }
    c->s->flags |= SESSION_SHUTDOWN | SESSION_CLOSE_AFTER_REPLY;
}

static void cmd_save(struct call *c)
{
    struct db *db = c->db;
    if (db->pops == NULL || db->pops->save == NULL) {
        reply_err(c->out, "ERR SAVE is not available: this server runs without persistence");
        return;
    }
    char err[256] = "";
    if (db->pops->save(db->pud, err, sizeof(err)) != 0) {
        resp_add_errorf(c->out, "ERR %s", err[0] ? err : "snapshot failed");
        return;
    }
    reply_ok(c->out);
}

/* BGSAVE [SCHEDULE]: Redis's replies. SCHEDULE only matters in Redis when a child of another
 * kind (an AOF rewrite) runs; tandem's only child is the snapshot, so it changes nothing. */
static void cmd_bgsave(struct call *c)
{
    struct db *db = c->db;
    if (c->argc > 2 || (c->argc == 2 && !arg_is(c->argv[1], "schedule"))) {
        reply_err(c->out, ERR_SYNTAX);
        return;
    }
    if (db->pops == NULL || db->pops->bgsave == NULL) {
        reply_err(c->out, "ERR BGSAVE is not available: this server runs without persistence");
        return;
    }
    char err[256] = "";
    if (db->pops->bgsave(db->pud, err, sizeof(err)) != 0) {
        resp_add_errorf(c->out, "ERR %s", err[0] ? err : "snapshot failed");
        return;
    }
    ADD_LIT(c->out, "+Background saving started\r\n");
}

/* LASTSAVE: Unix time of the last successful snapshot, as Redis (its start time before any). */
static void cmd_lastsave(struct call *c)
{
    struct db *db = c->db;
    int64_t t = db->start_wall_ms / 1000;
    if (db->pops && db->pops->lastsave)
        t = db->pops->lastsave(db->pud);
    resp_add_int(c->out, t);
}

/* --- CONFIG --- */

struct cfg_pair {
    const char *name;
    char value[256];
};

static size_t config_pairs(const struct call *c, struct cfg_pair *p, size_t max)
{
    const struct db_config *cfg = c->db->cfg;
    size_t n = 0;
#define PAIR(nm, ...)                                                                              \
    do {                                                                                           \
        if (n < max) {                                                                             \
            p[n].name = (nm);                                                                      \
            snprintf(p[n].value, sizeof(p[n].value), __VA_ARGS__);                                 \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)
    static const char *const fsync_names[] = {"always", "everysec", "no"};
    PAIR("save", "%s", "");
    PAIR("appendonly", "%s", c->db->pops ? "yes" : "no");
    PAIR("appendfsync", "%s", cfg ? fsync_names[cfg->fsync % 3] : "everysec");
    PAIR("databases", "%d", 1);
    PAIR("maxmemory", "%d", 0);
    PAIR("maxmemory-policy", "%s", "noeviction");
    PAIR("maxclients", "%" PRIu64, cfg ? cfg->max_clients : 10000);
    PAIR("timeout", "%" PRIu64, cfg ? cfg->idle_timeout_ms / 1000 : 0);
    PAIR("proto-max-bulk-len", "%" PRIu64, cfg ? cfg->max_bulk : ((uint64_t)512 << 20));
    PAIR("client-query-buffer-limit", "%" PRIu64, cfg ? cfg->query_buffer : ((uint64_t)1 << 30));
    PAIR("requirepass", "%s", (cfg && cfg->requirepass) ? cfg->requirepass : "");
    PAIR("dir", "%s", (cfg && cfg->dir) ? cfg->dir : "");
    PAIR("hash-max-listpack-entries", "%d", KEYSPACE_HASH_PACKED_ENTRIES);
    PAIR("hash-max-listpack-value", "%d", KEYSPACE_HASH_PACKED_VALUE);
    PAIR("hash-max-ziplist-entries", "%d", KEYSPACE_HASH_PACKED_ENTRIES);
    PAIR("hash-max-ziplist-value", "%d", KEYSPACE_HASH_PACKED_VALUE);
    PAIR("hz", "%d", 10);
    PAIR("io-threads", "%d", 1);
    PAIR("cluster-enabled", "%s", "no");
    PAIR("replica-read-only", "%s", "yes");
#undef PAIR
    return n;
}

static void cmd_config_get(struct call *c)
{
    struct cfg_pair pairs[32];
    size_t n = config_pairs(c, pairs, 32);
    struct buf body;
    buf_init(&body);
    int64_t count = 0;
    for (size_t i = 0; i < n; i++) {
        struct slice name = slice_cstr(pairs[i].name);
        for (int j = 2; j < c->argc; j++) {
            if (keyspace_glob_match(c->argv[j], name, true)) {
                resp_add_bulk(&body, name.p, name.len);
                resp_add_bulk(&body, pairs[i].value, strlen(pairs[i].value));
                count += 2;
                break;
            }
        }
    }
    resp_add_array(c->out, count);
    buf_append(c->out, body.p, body.len);
    buf_free(&body);
}

static void cmd_config_set(struct call *c)
{
    resp_add_errorf(c->out,
                    "ERR CONFIG SET is not supported by tandem (restart with new flags) - '%.*s'",
                    (int)c->argv[2].len, c->argv[2].p);
}

static void cmd_config_resetstat(struct call *c)
{
    c->db->hits = 0;
    c->db->misses = 0;
    reply_ok(c->out);
}

static void cmd_config_help(struct call *c)
{
    static const char *const lines[] = {
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET <pattern>",
        "    Return parameters matching the glob-like <pattern> and their values.",
        "RESETSTAT",
        "    Reset statistics reported by the INFO command.",
        "HELP",
        "    Prints this help.",
        NULL,
    };
    add_help(c->out, lines);
}

/* --- COMMAND --- */

static void cmd_command(struct call *c);
static void cmd_command_count(struct call *c);
static void cmd_command_docs(struct call *c);
static void cmd_command_help(struct call *c);
static void cmd_command_info(struct call *c);
static void cmd_command_list(struct call *c);

#define SUBS(t) (t), (sizeof(t) / sizeof((t)[0]))

static const struct cmd_def client_subs[] = {
    {"getname", cmd_client_getname, 2, 0, "connection", "Get the current connection name", NULL, 0},
    {"help", cmd_client_help, 2, 0, "connection",
     "Show helpful text about the different subcommands", NULL, 0},
    {"id", cmd_client_id, 2, 0, "connection", "Returns the client ID for the current connection",
     NULL, 0},
    {"setname", cmd_client_setname, 3, 0, "connection", "Set the current connection name", NULL, 0},
};

static const struct cmd_def config_subs[] = {
    {"get", cmd_config_get, -3, CMD_ADMIN | CMD_LOADING, "server",
     "Get the values of configuration parameters", NULL, 0},
    {"help", cmd_config_help, 2, CMD_LOADING, "server",
     "Show helpful text about the different subcommands", NULL, 0},
    {"resetstat", cmd_config_resetstat, 2, CMD_ADMIN, "server", "Reset the stats returned by INFO",
     NULL, 0},
    {"set", cmd_config_set, -4, CMD_ADMIN, "server", "Set configuration parameters (not supported)",
     NULL, 0},
};

static const struct cmd_def command_subs[] = {
    {"count", cmd_command_count, 2, CMD_LOADING, "server", "Get total number of commands", NULL, 0},
    {"docs", cmd_command_docs, -2, CMD_LOADING, "server",
     "Get array of specific command documentation", NULL, 0},
    {"help", cmd_command_help, 2, CMD_LOADING, "server",
     "Show helpful text about the different subcommands", NULL, 0},
    {"info", cmd_command_info, -2, CMD_LOADING, "server", "Get array of specific command details",
     NULL, 0},
    {"list", cmd_command_list, -2, CMD_LOADING, "server", "Get an array of command names", NULL, 0},
};

#define W CMD_WRITE
#define R CMD_READONLY
#define REC CMD_RECORD
#define F CMD_FAST

/* Sorted by name (a unit test checks). */
static const struct cmd_def table[] = {
    {"append", cmd_data_append, 3, W, "string", "Append a value to a key", NULL, 0},
    {"auth", cmd_auth, -2, CMD_NOAUTH | F, "connection", "Authenticate to the server", NULL, 0},
    {"bgsave", cmd_bgsave, -1, CMD_ADMIN, "server", "Asynchronously save the dataset to disk", NULL,
     0},
    {"client", NULL, -2, 0, "connection", "A container for client connection commands",
     SUBS(client_subs)},
    {"command", cmd_command, -1, CMD_LOADING, "server", "Get array of command details",
     SUBS(command_subs)},
    {"config", NULL, -2, 0, "server", "A container for server configuration commands",
     SUBS(config_subs)},
    {"dbsize", cmd_data_dbsize, 1, R | F, "server", "Return the number of keys in the database",
     NULL, 0},
    {"decr", cmd_data_decr, 2, W | F, "string", "Decrement the integer value of a key by one", NULL,
     0},
    {"decrby", cmd_data_decrby, 3, W | F, "string",
     "Decrement the integer value of a key by the given number", NULL, 0},
    {"del", cmd_data_del, -2, W | REC, "generic", "Delete a key", NULL, 0},
    {"discard", cmd_multi_discard, 1, F | CMD_LOADING | CMD_MULTI_CTL, "transactions",
     "Discard all commands issued after MULTI", NULL, 0},
    {"echo", cmd_echo, 2, F, "connection", "Echo the given string", NULL, 0},
    {"exec", cmd_multi_exec, 1, CMD_LOADING | CMD_MULTI_CTL, "transactions",
     "Execute all commands issued after MULTI", NULL, 0},
    {"exists", cmd_data_exists, -2, R | F, "generic", "Determine if a key exists", NULL, 0},
    {"expire", cmd_data_expire, -3, W | F, "generic", "Set a key's time to live in seconds", NULL,
     0},
    {"expireat", cmd_data_expireat, -3, W | F, "generic",
     "Set the expiration for a key as a UNIX timestamp", NULL, 0},
    {"failover", cmd_failover, -1, CMD_ADMIN | CMD_NO_MULTI, "server",
     "Start a coordinated failover between this server and one of its replicas", NULL, 0},
    {"flushall", cmd_data_flushall, -1, W | REC, "server", "Remove all keys from all databases",
     NULL, 0},
    {"flushdb", cmd_data_flushall, -1, W, "server", "Remove all keys from the current database",
     NULL, 0},
    {"get", cmd_data_get, 2, R | F, "string", "Get the value of a key", NULL, 0},
    {"getdel", cmd_data_getdel, 2, W | F, "string", "Get the value of a key and delete the key",
     NULL, 0},
    {"hdel", cmd_data_hdel, -3, W | F | REC, "hash", "Delete one or more hash fields", NULL, 0},
    {"hello", cmd_hello, -1, CMD_NOAUTH | F, "connection", "Handshake with Redis", NULL, 0},
    {"hexists", cmd_data_hexists, 3, R | F, "hash", "Determine if a hash field exists", NULL, 0},
    {"hget", cmd_data_hget, 3, R | F, "hash", "Get the value of a hash field", NULL, 0},
    {"hgetall", cmd_data_hgetall, 2, R, "hash", "Get all the fields and values in a hash", NULL, 0},
    {"hincrby", cmd_data_hincrby, 4, W | F, "hash",
     "Increment the integer value of a hash field by the given number", NULL, 0},
    {"hlen", cmd_data_hlen, 2, R | F, "hash", "Get the number of fields in a hash", NULL, 0},
    {"hmget", cmd_data_hmget, -3, R | F, "hash", "Get the values of all the given hash fields",
     NULL, 0},
    {"hmset", cmd_data_hmset, -4, W | F, "hash", "Set multiple hash fields to multiple values",
     NULL, 0},
    {"hset", cmd_data_hset, -4, W | F | REC, "hash", "Set the string value of a hash field", NULL,
     0},
    {"incr", cmd_data_incr, 2, W | F, "string", "Increment the integer value of a key by one", NULL,
     0},
    {"incrby", cmd_data_incrby, 3, W | F, "string",
     "Increment the integer value of a key by the given amount", NULL, 0},
    {"info", cmd_info, -1, CMD_LOADING, "server", "Get information and statistics about the server",
     NULL, 0},
    {"keys", cmd_data_keys, 2, R, "generic", "Find all keys matching the given pattern", NULL, 0},
    {"lastsave", cmd_lastsave, 1, F | CMD_LOADING, "server",
     "Get the UNIX time stamp of the last successful save to disk", NULL, 0},
    {"mget", cmd_data_mget, -2, R | F, "string", "Get the values of all the given keys", NULL, 0},
    {"mset", cmd_data_mset, -3, W | REC, "string", "Set multiple keys to multiple values", NULL, 0},
    {"multi", cmd_multi_multi, 1, F | CMD_LOADING | CMD_MULTI_CTL, "transactions",
     "Mark the start of a transaction block", NULL, 0},
    {"persist", cmd_data_persist, 2, W | F | REC, "generic", "Remove the expiration from a key",
     NULL, 0},
    {"pexpire", cmd_data_pexpire, -3, W | F, "generic", "Set a key's time to live in milliseconds",
     NULL, 0},
    {"pexpireat", cmd_data_pexpireat, -3, W | F | REC, "generic",
     "Set the expiration for a key as a UNIX timestamp specified in milliseconds", NULL, 0},
    {"ping", cmd_ping, -1, F, "connection", "Ping the server", NULL, 0},
    {"pttl", cmd_data_pttl, 2, R | F, "generic", "Get the time to live for a key in milliseconds",
     NULL, 0},
    {"quit", cmd_quit, -1, CMD_NOAUTH | F | CMD_MULTI_CTL, "connection", "Close the connection", NULL, 0},
    {"replicaof", cmd_replicaof, 3, CMD_ADMIN | CMD_NO_MULTI, "server",
     "Make the server a replica of another instance, or promote it as master", NULL, 0},
    {"role", cmd_role, 1, F | CMD_LOADING, "server",
     "Return the role of the instance in the context of replication", NULL, 0},
    {"save", cmd_save, 1, CMD_ADMIN | CMD_NO_MULTI, "server", "Synchronously save the dataset to disk", NULL, 0},
    {"scan", cmd_data_scan, -2, R, "generic", "Incrementally iterate the keys space", NULL, 0},
    {"select", cmd_select, 2, F | CMD_LOADING, "connection",
     "Change the selected database for the current connection", NULL, 0},
    {"set", cmd_data_set, -3, W | REC, "string", "Set the string value of a key", NULL, 0},
    {"setnx", cmd_data_setnx, 3, W | F, "string",
     "Set the value of a key, only if the key does not exist", NULL, 0},
    {"shutdown", cmd_shutdown, -1, CMD_ADMIN | CMD_LOADING | CMD_NO_MULTI, "server",
     "Synchronously save the dataset to disk and then shut down the server", NULL, 0},
    {"slaveof", cmd_replicaof, 3, CMD_ADMIN | CMD_NO_MULTI, "server",
     "Make the server a replica of another instance, or promote it as master", NULL, 0},
    {"strlen", cmd_data_strlen, 2, R | F, "string", "Get the length of the value stored in a key",
     NULL, 0},
    {"time", cmd_time, 1, F | CMD_LOADING, "server", "Return the current server time", NULL, 0},
    {"ttl", cmd_data_ttl, 2, R | F, "generic", "Get the time to live for a key in seconds", NULL,
     0},
    {"type", cmd_data_type, 2, R | F, "generic", "Determine the type stored at key", NULL, 0},
    {"unwatch", cmd_multi_unwatch, 1, F | CMD_LOADING, "transactions",
     "Forget about all watched keys", NULL, 0},
    {"wait", cmd_wait, 3, CMD_NO_MULTI, "generic",
     "Wait for the synchronous replication of all the write commands sent in the context of the "
     "current connection",
     NULL, 0},
    {"watch", cmd_multi_watch, -2, F | CMD_LOADING | CMD_MULTI_CTL, "transactions",
     "Watch the given keys to determine execution of the MULTI/EXEC block", NULL, 0},
};

#undef W
#undef R
#undef REC
#undef F

#define NTABLE (sizeof(table) / sizeof(table[0]))

size_t cmd_count(void)
{
    return NTABLE;
}

static bool sorted_lower(const struct cmd_def *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (const char *p = t[i].name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                return false;
        if (i > 0 && strcmp(t[i - 1].name, t[i].name) >= 0)
            return false;
        if (t[i].subs && !sorted_lower(t[i].subs, t[i].nsubs))
            return false;
    }
    return true;
}

bool cmd_table_is_sorted(void)
{
    return sorted_lower(table, NTABLE);
}

/* Folds the name a into low[32] (ASCII lower case, NUL-terminated) and hashes it (FNV-1a).
 * False for a name no command has: empty, 32 bytes or more, or holding a NUL byte (strcmp would
 * stop there: "get\0x" must not be GET). */
static bool name_fold(struct slice a, char *low, uint32_t *hash)
{
    if (a.len == 0 || a.len >= 32)
        return false;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < a.len; i++) {
        char ch = a.p[i];
        if (ch == '\0')
            return false;
        ch = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        low[i] = ch;
        h = (h ^ (unsigned char)ch) * 16777619u;
    }
    low[a.len] = '\0';
    *hash = h;
    return true;
}

/* Bisects t for the command named like a (ASCII case-insensitive). */
static const struct cmd_def *find_cmd(const struct cmd_def *t, size_t n, struct slice a)
{
    char low[32];
    uint32_t h;
    if (!name_fold(a, low, &h))
        return NULL;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = strcmp(low, t[mid].name);
        if (r == 0)
            return &t[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static void lut_build(struct cmd_env *env)
{
    char low[32];
    for (size_t i = 0; i < NTABLE; i++) {
        uint32_t h;
        bool ok = name_fold(slice_cstr(table[i].name), low, &h);
        TD_ASSERT(ok);
        h &= CMD_LUT_SIZE - 1;
        while (env->lut[h])
            h = (h + 1) & (CMD_LUT_SIZE - 1);
        env->lut[h] = &table[i];
    }
}

/* The top-level command named like a, through env's hash table (find_cmd without the
 * bisection: this runs once per command). */
static const struct cmd_def *lut_find(const struct cmd_env *env, struct slice a)
{
    char low[32];
    uint32_t h;
    if (!name_fold(a, low, &h))
        return NULL; /* a NUL byte in a made the old strncmp read past a shorter name */
    h &= CMD_LUT_SIZE - 1;
    for (;;) {
        const struct cmd_def *d = env->lut[h];
        if (d == NULL)
            return NULL;
        if (strcmp(d->name, low) == 0)
            return d;
        h = (h + 1) & (CMD_LUT_SIZE - 1);
    }
}

static void add_flag_list(struct buf *o, unsigned flags)
{
    const char *names[7];
    int n = 0;
    if (flags & CMD_WRITE)
        names[n++] = "write";
    if (flags & CMD_READONLY)
        names[n++] = "readonly";
    if (flags & CMD_ADMIN)
        names[n++] = "admin";
    if (flags & CMD_NOAUTH)
        names[n++] = "no_auth";
    if (flags & CMD_LOADING)
        names[n++] = "loading";
    if (flags & CMD_FAST)
        names[n++] = "fast";
    if (flags & CMD_NO_MULTI)
        names[n++] = "no_multi";
    resp_add_array(o, n);
    for (int i = 0; i < n; i++)
        resp_add_status(o, names[i]);
}

static void add_command_info(struct buf *o, const struct cmd_def *d, const char *parent)
{
    char full[64];
    if (parent)
        snprintf(full, sizeof(full), "%s|%s", parent, d->name);
    else
        snprintf(full, sizeof(full), "%s", d->name);
    bool has_key = (d->flags & (CMD_WRITE | CMD_READONLY)) && d->arity != 1 &&
                   strcmp(d->name, "flushall") != 0 && strcmp(d->name, "flushdb") != 0 &&
                   strcmp(d->name, "scan") != 0 && strcmp(d->name, "keys") != 0 &&
                   strcmp(d->name, "dbsize") != 0;
    int64_t last = 1, step = 1;
    if (has_key &&
        (!strcmp(d->name, "del") || !strcmp(d->name, "exists") || !strcmp(d->name, "mget")))
        last = -1;
    if (has_key && !strcmp(d->name, "mset")) {
        last = -1;
        step = 2;
    }
    resp_add_array(o, 10);
    resp_add_bulk(o, full, strlen(full));
    resp_add_int(o, d->arity);
    add_flag_list(o, d->flags);
    resp_add_int(o, has_key ? 1 : 0);
    resp_add_int(o, has_key ? last : 0);
    resp_add_int(o, has_key ? step : 0);
    char cat[32];
    snprintf(cat, sizeof(cat), "@%s", d->group);
    resp_add_array(o, 2);
    resp_add_status(o, (d->flags & CMD_WRITE) ? "@write" : "@read");
    resp_add_status(o, cat);
    resp_add_array(o, 0); /* tips */
    resp_add_array(o, 0); /* key specs */
    resp_add_array(o, (int64_t)d->nsubs);
    for (size_t i = 0; i < d->nsubs; i++)
        add_command_info(o, &d->subs[i], d->name);
}

static void cmd_command(struct call *c)
{
    resp_add_array(c->out, (int64_t)NTABLE);
    for (size_t i = 0; i < NTABLE; i++)
        add_command_info(c->out, &table[i], NULL);
}

static void cmd_command_count(struct call *c)
{
    resp_add_int(c->out, (int64_t)NTABLE);
}

static void cmd_command_list(struct call *c)
{
    resp_add_array(c->out, (int64_t)NTABLE);
    for (size_t i = 0; i < NTABLE; i++)
        resp_add_bulk(c->out, table[i].name, strlen(table[i].name));
}

static void cmd_command_info(struct call *c)
{
    if (c->argc == 2) {
        cmd_command(c);
        return;
    }
    resp_add_array(c->out, c->argc - 2);
    for (int j = 2; j < c->argc; j++) {
        const struct cmd_def *d = find_cmd(table, NTABLE, c->argv[j]);
        if (d)
            add_command_info(c->out, d, NULL);
        else
            ADD_LIT(c->out, "*-1\r\n");
    }
}

static void add_docs(struct buf *o, const struct cmd_def *d)
{
    resp_add_bulk(o, d->name, strlen(d->name));
    resp_add_array(o, 6);
    resp_add_bulk(o, "summary", 7);
    resp_add_bulk(o, d->summary, strlen(d->summary));
    resp_add_bulk(o, "since", 5);
    resp_add_bulk(o, "1.0.0", 5);
    resp_add_bulk(o, "group", 5);
    resp_add_bulk(o, d->group, strlen(d->group));
}

static void cmd_command_docs(struct call *c)
{
    if (c->argc == 2) {
        resp_add_array(c->out, (int64_t)NTABLE * 2);
        for (size_t i = 0; i < NTABLE; i++)
            add_docs(c->out, &table[i]);
        return;
    }
    struct buf body;
    buf_init(&body);
    int64_t n = 0;
    for (int j = 2; j < c->argc; j++) {
        const struct cmd_def *d = find_cmd(table, NTABLE, c->argv[j]);
        if (d) {
            add_docs(&body, d);
            n += 2;
        }
    }
    resp_add_array(c->out, n);
    buf_append(c->out, body.p, body.len);
    buf_free(&body);
}

static void cmd_command_help(struct call *c)
{
    static const char *const lines[] = {
        "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "(no subcommand)",
        "    Return details about all commands of this server.",
        "COUNT",
        "    Return the total number of commands in this server.",
        "LIST",
        "    Return a list of all commands in this server.",
        "INFO [<command-name> ...]",
        "    Return details about multiple commands.",
        "DOCS [<command-name> ...]",
        "    Return documentation details about multiple commands.",
        "HELP",
        "    Prints this help.",
        NULL,
    };
    add_help(c->out, lines);
}

/* --- dispatch --- */

void cmd_arity_error(struct call *c)
{
    /* Sub-commands are named "container|sub", with the container's canonical name. */
    if (c->parent)
        resp_add_errorf(c->out, "ERR wrong number of arguments for '%s|%s' command", c->parent,
                        c->def->name);
    else
        resp_add_errorf(c->out, "ERR wrong number of arguments for '%s' command", c->def->name);
}

/* "unknown command 'x', with args beginning with: 'a' 'b' " as Redis builds it: the name and
 * arguments are cut at NUL bytes and at 128 characters. */
static void unknown_command(struct call *c)
{
    struct buf o;
    buf_init(&o);
    struct slice n = c->argv[0];
    size_t nl = strnlen(n.p, n.len < 128 ? n.len : 128);
    buf_printf(&o, "ERR unknown command '%.*s', with args beginning with: ", (int)nl, n.p);
    size_t args = 0;
    for (int j = 1; j < c->argc && args < 128; j++) {
        struct slice a = c->argv[j];
        size_t room = 128 - args;
        size_t al = strnlen(a.p, a.len);
        if (al > room)
            al = room;
        buf_printf(&o, "'%.*s' ", (int)al, a.p);
        args += al + 3;
    }
    resp_add_error(c->out, o.p, o.len);
    buf_free(&o);
}

static bool arity_ok(int arity, int argc)
{
    return arity > 0 ? argc == arity : argc >= -arity;
}

/* Lookup and arity, as Redis orders them. Returns the command to run, or NULL after replying. */
static const struct cmd_def *resolve(struct call *c)
{
    const struct cmd_def *d = lut_find(c->env, c->argv[0]);
    if (d == NULL) {
        unknown_command(c);
        return NULL;
    }
    if (d->subs && c->argc >= 2) {
        const struct cmd_def *sub = find_cmd(d->subs, d->nsubs, c->argv[1]);
        if (sub == NULL) {
            char up[32];
            size_t i = 0;
            for (; d->name[i] && i + 1 < sizeof(up); i++)
                up[i] = (char)(d->name[i] - 32 * (d->name[i] >= 'a' && d->name[i] <= 'z'));
            up[i] = '\0';
            size_t al = strnlen(c->argv[1].p, c->argv[1].len < 128 ? c->argv[1].len : 128);
            resp_add_errorf(c->out, "ERR unknown subcommand '%.*s'. Try %s HELP.", (int)al,
                            c->argv[1].p, up);
            return NULL;
        }
        c->parent = d->name;
        d = sub;
    } else if (d->subs && d->fn == NULL) {
        c->def = d;
        cmd_arity_error(c);
        return NULL;
    }
    c->def = d;
    if (!arity_ok(d->arity, c->argc)) {
        cmd_arity_error(c);
        return NULL;
    }
    return d;
}

void cmd_env_init(struct cmd_env *env, struct db *db)
{
    memset(env, 0, sizeof(*env));
    env->db = db;
    lut_build(env);
}

void cmd_env_free(struct cmd_env *env)
{
    free(env->rv);
    free(env->ev);
    env->rv = NULL;
    env->ev = NULL;
    env->rv_cap = env->ev_cap = 0;
}

void cmd_session_free(struct session *s)
{
    free(s->name);
    s->name = NULL;
    cmd_multi_discard_state(s);
}

bool cmd_run(struct cmd_env *env, struct session *s, const struct cmd_def *def, const char *parent,
             int argc, const struct slice *argv)
{
    struct call c = {env,  env->db,         env->db->ks, s,   s->out, argc,
                     argv, env->db->now_ms, def,         parent, false};
    def->fn(&c);
    return c.logged && db_is_logging(env->db);
}

/* A command refused before it ran: EXEC itself aborts the transaction (Redis answers
 * "EXECABORT ... because of: <why>"); anything else replies the error and, inside MULTI, flags
 * the transaction. */
static bool refuse(struct call *c, const char *why)
{
    if (c->def && c->def->fn == cmd_multi_exec && c->parent == NULL) {
        cmd_multi_abort(c, why);
        return false;
    }
    reply_err(c->out, why);
    if (c->s->multi.on)
        c->s->multi.flagged = true;
    return false;
}

bool cmd_exec(struct cmd_env *env, struct session *s, int argc, const struct slice *argv)
{
    struct call c = {env,  env->db,         env->db->ks, s,    s->out, argc,
                     argv, env->db->now_ms, NULL,        NULL, false};
    size_t mark = s->out->len;
    const struct cmd_def *d = resolve(&c);
    if (d == NULL) {
        if (c.def && c.def->fn == cmd_multi_exec && c.parent == NULL) {
            /* EXEC with arguments: Redis aborts the transaction with the arity text. */
            s->out->len = mark;
            cmd_multi_abort(&c, "wrong number of arguments for 'exec' command");
        } else if (s->multi.on) {
            if (c.def == NULL && arg_is(argv[0], "replsync")) {
                s->out->len = mark;
                reply_err(s->out, "ERR Command not allowed inside a transaction");
            }
            s->multi.flagged = true;
        }
        return false;
    }
    if (!s->authed && !(d->flags & CMD_NOAUTH))
        return refuse(&c, ERR_NOAUTH);
    if (s->multi.on && (d->flags & CMD_NO_MULTI))
        return refuse(&c, "ERR Command not allowed inside a transaction");
    bool writes = (d->flags & CMD_WRITE) ||
                  (d->fn == cmd_multi_exec && s->multi.on && s->multi.writes);
    if (writes && env->repl) {
        const char *why = env->repl->write_refusal(env->repl_ud);
        if (why)
            return refuse(&c, why);
    }
    if (s->multi.on && !(d->flags & CMD_MULTI_CTL)) {
        cmd_multi_queue(&c);
        return false;
    }
    d->fn(&c);
    return c.logged && db_is_logging(env->db);
}

/* Checks that argv is a plain record command with a valid arity; returns it or NULL with the
 * reason in err. */
static const struct cmd_def *record_def(int argc, const struct slice *argv, char *err,
                                        size_t errlen)
{
    if (argc < 1) {
        snprintf(err, errlen, "empty record");
        return NULL;
    }
    const struct cmd_def *d = find_cmd(table, NTABLE, argv[0]);
    if (d == NULL || !(d->flags & CMD_RECORD)) {
        snprintf(err, errlen, "'%.*s' is not a record command",
                 (int)(argv[0].len < 64 ? argv[0].len : 64), argv[0].p);
        return NULL;
    }
    if (!arity_ok(d->arity, argc)) {
        snprintf(err, errlen, "wrong number of arguments for record '%s'", d->name);
        return NULL;
    }
    return d;
}

/* A TXN sub-record count: decimal digits only, no leading zero, > 0. */
static bool parse_count(struct slice a, int64_t *out)
{
    if (a.len == 0 || a.len > 10 || a.p[0] == '0')
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < a.len; i++) {
        if (a.p[i] < '0' || a.p[i] > '9')
            return false;
        v = v * 10 + (a.p[i] - '0');
    }
    *out = v;
    return true;
}

/* Validates a whole TXN record (argv[0] is TXN): every count fits what follows exactly and
 * every sub-record is a plain record. Returns the number of sub-records, or 0 with err set. */
static int txn_check(int argc, const struct slice *argv, char *err, size_t errlen)
{
    int i = 1, n = 0;
    if (argc < 2) {
        snprintf(err, errlen, "TXN record without sub-records");
        return 0;
    }
    while (i < argc) {
        int64_t cnt;
        if (!parse_count(argv[i], &cnt)) {
            snprintf(err, errlen, "TXN sub-record %d: bad argument count '%.*s'", n + 1,
                     (int)(argv[i].len < 32 ? argv[i].len : 32), argv[i].p);
            return 0;
        }
        if (cnt > argc - i - 1) {
            snprintf(err, errlen, "TXN sub-record %d: count %lld exceeds the record", n + 1,
                     (long long)cnt);
            return 0;
        }
        if (slice_eq_nocase(argv[i + 1], SLICE_LIT("TXN"))) {
            snprintf(err, errlen, "TXN sub-record %d: nested TXN", n + 1);
            return 0;
        }
        char why[160];
        if (record_def((int)cnt, argv + i + 1, why, sizeof(why)) == NULL) {
            snprintf(err, errlen, "TXN sub-record %d: %s", n + 1, why);
            return 0;
        }
        i += 1 + (int)cnt;
        n++;
    }
    return n;
}

static int apply_one(struct db *db, int argc, const struct slice *argv, char *err,
                     size_t errlen);

int cmd_apply(struct db *db, int argc, const struct slice *argv, char *err, size_t errlen)
{
    if (argc < 1 || !slice_eq_nocase(argv[0], SLICE_LIT("TXN")))
        return apply_one(db, argc, argv, err, errlen);
    if (txn_check(argc, argv, err, errlen) == 0)
        return -EINVAL;
    for (int i = 1; i < argc;) {
        int cnt = 0;
        for (size_t k = 0; k < argv[i].len; k++)
            cnt = cnt * 10 + (argv[i].p[k] - '0');
        int rc = apply_one(db, cnt, argv + i + 1, err, errlen);
        if (rc != 0)
            return rc;
        i += 1 + cnt;
    }
    return 0;
}

/* Applies one plain record. */
static int apply_one(struct db *db, int argc, const struct slice *argv, char *err, size_t errlen)
{
    /* Records name their command in upper case and are looked up by bisection, so the env needs
     * no lookup table: zero only what cmd_env_free and the commands use. */
    struct cmd_env envs;
    struct cmd_env *env = &envs;
    memset(env, 0, offsetof(struct cmd_env, lut));
    env->db = db;
    struct buf out;
    buf_init(&out);
    struct session s = {.authed = true, .out = &out};
    struct call c = {env, db, db->ks, &s, &out, argc, argv, 0, NULL, NULL, false};
    const struct cmd_def *d = record_def(argc, argv, err, errlen);
    if (d == NULL)
        return -EINVAL;
    c.def = d;
    bool was_applying = db->applying;
    int64_t was_now = db->now_ms;
    db->applying = true;
    db->now_ms = 0;
    d->fn(&c);
    db->applying = was_applying;
    db->now_ms = was_now;
    int rc = 0;
    if (out.len > 0 && out.p[0] == '-') {
        size_t n = out.len - 3;
        snprintf(err, errlen, "%.*s", (int)n, out.p + 1);
        rc = -EINVAL;
    }
    buf_free(&out);
    cmd_env_free(env);
    return rc;
}
