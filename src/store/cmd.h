/* SPDX-License-Identifier: MIT */
/* store/cmd.h -- the command table and the commands: a parsed RESP argv in, a RESP2 reply
 * appended to the session's output buffer, replies and errors byte-identical to Redis 7 for the
 * supported set. Write commands hand their resolved record to the persistence hook through
 * db_log() (vocabulary in store/persist.h). */
#ifndef TD_STORE_CMD_H
#define TD_STORE_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "store/db.h"
#include "store/watch.h"

#define SESSION_CLOSE_AFTER_REPLY 0x1u /* QUIT: close once the replies are written */
#define SESSION_SHUTDOWN 0x2u          /* SHUTDOWN: stop the server */
#define SESSION_WAIT 0x4u              /* WAIT: the server blocks the client (wait_* fields) */

struct cmd_def;

/* A command queued by MULTI: its definition (resolved when queued) and an owned copy of argv
 * (one allocation: the slices, then the bytes). */
struct cmd_queued {
    const struct cmd_def *def;
    const char *parent; /* container name when def is a sub-command */
    int argc;
    struct slice *argv;
};

/* Transaction state of a session (store/cmd_multi.c). */
struct cmd_multi {
    bool on;      /* between MULTI and EXEC/DISCARD */
    bool flagged; /* a command was refused while queueing: EXEC aborts */
    bool writes;  /* a queued command is a write */
    struct cmd_queued *q;
    size_t n, cap;
    uint64_t bytes;         /* queued bytes, capped (see cmd_multi.c) */
    struct watcher watcher; /* WATCHed keys */
};

/* Per-connection state the commands read and change. The server embeds one per client. */
struct session {
    uint64_t id;
    char *name;      /* CLIENT SETNAME; owned, NULL when unset */
    bool authed;     /* true when no password is required or AUTH succeeded */
    unsigned flags;  /* SESSION_* */
    struct buf *out; /* replies are appended here (borrowed) */
    uint64_t last_write_lsn;  /* lsn of this connection's last write (WAIT waits for it) */
    uint64_t wait_replicas;   /* WAIT numreplicas */
    uint64_t wait_timeout_ms; /* WAIT timeout (0: forever) */
    struct cmd_multi multi;   /* MULTI/EXEC/WATCH state; zero-initialised */
};

/* Replication hooks (store/repl_node.c implements them). Without them the node is a standalone
 * primary: writes allowed, ROLE master, no replicas. */
struct cmd_repl_ops {
    /* NULL when a write may run now; else the error line to answer ("READONLY ..."). */
    const char *(*write_refusal)(void *ud);
    /* Appends the body of INFO replication. */
    void (*info)(void *ud, struct buf *out);
    /* Appends the ROLE reply. */
    void (*role)(void *ud, struct buf *out);
    /* REPLICAOF host port (host NULL: NO ONE). Returns 0 or a negative code with the error
     * line (without "-") in err. */
    int (*replicaof)(void *ud, const char *host, int port, char *err, size_t errlen);
    /* FAILOVER [TO host port] [TIMEOUT ms] [ABORT] (host NULL: any in-sync replica). Returns 0
     * (started; progress in INFO) or a negative code with the error line in err. */
    int (*failover)(void *ud, const char *host, int port, uint64_t timeout_ms, bool abort_,
                    char *err, size_t errlen);
    /* Replicas that durably hold every record up to lsn (WAIT). */
    unsigned (*count_acked)(void *ud, uint64_t lsn);
    /* Takes over a client socket whose buffered input in[0..n) starts with REPLSYNC (fd owned
     * by the callee from now on). Returns 0 or a negative code (fd closed then). */
    int (*attach)(void *ud, int fd, const char *in, size_t n);
};

#define CMD_LUT_SIZE 256

/* Appends the server's own "name:value\r\n" lines of INFO section (lower case: "server",
 * "clients", "memory", "stats") to out; the command layer adds the database's lines. */
typedef void (*cmd_info_fn)(void *ud, const char *section, struct buf *out);

/* What commands run against: the db plus hooks into the server. Scratch vectors are private. */
struct cmd_env {
    struct db *db;
    cmd_info_fn info; /* may be NULL */
    void *info_ud;
    const struct cmd_repl_ops *repl; /* may be NULL */
    void *repl_ud;
    struct slice *rv; /* resolved-record scratch */
    size_t rv_cap;
    const struct kentry **ev; /* SCAN scratch */
    size_t ev_cap;
    const void *lut[CMD_LUT_SIZE]; /* command name hash -> table entry (open addressing) */
};

/* Initialises env over db (borrowed). */
void cmd_env_init(struct cmd_env *env, struct db *db);
/* Frees env's scratch (not the db). */
void cmd_env_free(struct cmd_env *env);
/* Releases what a session owns (its name, a queued transaction) and unwatches its keys (the db
 * whose table they are in must still be alive). The session may be reused afterwards. */
void cmd_session_free(struct session *s);

/* Runs one command (argc >= 1; argv borrowed for the call) for session s, appending exactly one
 * reply to s->out, except SHUTDOWN which replies nothing on success. Between MULTI and EXEC a
 * command that passes the checks is copied into the session's queue and answered +QUEUED; EXEC
 * runs the queue with the db capturing its records, logged as one record. Uses env->db->now_ms as the
 * current time: the caller sets it (wall clock) before a batch of commands. Returns true when
 * the command was a write that logged a record (its reply must wait for durability). */
bool cmd_exec(struct cmd_env *env, struct session *s, int argc, const struct slice *argv);

/* Applies a resolved record (see store/persist.h) with expiry and logging disabled. A TXN record
 * is validated whole before any of it is applied. Returns 0 or -EINVAL with a reason in err. */
int cmd_apply(struct db *db, int argc, const struct slice *argv, char *err, size_t errlen);

/* Number of commands in the table (COMMAND COUNT). */
size_t cmd_count(void);
/* True when the command table is sorted and every name is lower case (a unit-test check). */
bool cmd_table_is_sorted(void);

#endif
