/* SPDX-License-Identifier: MIT */
/* cli/cmd_db.c -- `tandem db`: the Redis-protocol store, single node. Wires the configuration
 * table, the db, the persistence layer (store/wal_persist: recovery at startup, the log while
 * serving, a final fsync at shutdown), the server and signals. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/cfg.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/parse.h"
#include "cli/cli.h"
#include "cli/db_ha.h"
#include "store/db.h"
#include "store/keyspace.h"
#include "store/repl_node.h"
#include "store/server.h"
#include "store/wal_persist.h"

static const char *const fsync_choices[] = {"always", "everysec", "no", NULL};

#define OFF(f) offsetof(struct db_config, f)

static const struct cfg_entry db_table[] = {
    {"listen", CFG_ADDR, OFF(listen), 0, 0, "127.0.0.1:6379", NULL,
     "address to listen on, HOST:PORT", 0},
    {"dir", CFG_STRING, OFF(dir), 0, 0, "tandem-data/db", NULL,
     "data directory: log segments and snapshots (created if missing)", 0},
    {"fsync", CFG_ENUM, OFF(fsync), 0, 0, "everysec", fsync_choices,
     "always: reply after fdatasync (group commit); everysec/no: reply once written to the "
     "kernel, fdatasync every second / never",
     0},
    {"in-memory", CFG_BOOL, OFF(in_memory), 0, 0, "no", NULL,
     "no log and no snapshots: every write is lost when the process stops (a cache; Redis "
     "with appendonly no and save \"\")",
     0},
    {"wal-repair", CFG_BOOL, OFF(wal_repair), 0, 0, "no", NULL,
     "start even if the log is damaged in the middle: cut it there (cut bytes are kept in "
     "DIR/repaired-<lsn>.bin)",
     0},
    {"wal-segment-size", CFG_SIZE, OFF(wal_segment_bytes), 4096, 0, "64mb", NULL,
     "start a new log segment past this size", 0},
    {"snapshot-min-log", CFG_SIZE, OFF(snapshot_min_bytes), 0, 0, "64mb", NULL,
     "automatic snapshot once the log grew past this since the last one ...", 0},
    {"snapshot-growth", CFG_UINT, OFF(snapshot_growth_pct), 0, 1000000, "100", NULL,
     "... and past this percentage of the last snapshot's size (0: no automatic snapshots)", 0},
    {"requirepass", CFG_STRING, OFF(requirepass), 0, 0, NULL, NULL,
     "password clients must give with AUTH", 0},
    {"max-bulk", CFG_SIZE, OFF(max_bulk), 1, 0xffffffffu, "512mb", NULL,
     "longest argument a client may send", 0},
    {"max-multibulk", CFG_UINT, OFF(max_multibulk), 1, 0x7fffffff, "1048576", NULL,
     "most arguments in one command", 0},
    {"query-buffer", CFG_SIZE, OFF(query_buffer), 1024, 0, "1gb", NULL,
     "unparsed input buffered per client before it is disconnected", 0},
    {"output-limit", CFG_SIZE, OFF(output_limit), 1024, 0, "256mb", NULL,
     "unsent replies per client before it is disconnected", 0},
    {"max-clients", CFG_UINT, OFF(max_clients), 1, 1000000, "10000", NULL,
     "connections served at once; more get an error", 0},
    {"idle-timeout", CFG_DURATION, OFF(idle_timeout_ms), 0, 0, "0", NULL,
     "close clients idle this long (0: never)", 0},
    {"replicaof", CFG_STRING, OFF(replicaof), 0, 0, NULL, NULL,
     "start as a replica of the primary at HOST:PORT (REPLICAOF changes it at runtime)", 0},
    {"name", CFG_STRING, OFF(name), 0, 0, NULL, NULL,
     "this node's name, shown by its primary (default: the listen address HOST:PORT, which "
     "FAILOVER uses to reach it)",
     0},
    {"repl-secret", CFG_STRING, OFF(repl_secret), 0, 0, NULL, NULL,
     "shared replication secret replicas present (default: the --requirepass value)", 0},
    {"sync-replicas", CFG_UINT, OFF(sync_replicas), 0, 64, "0", NULL,
     "acknowledge a write only once this many replicas hold it durably (0: asynchronous); "
     "with fewer in sync, writes go on after saying so in the log and INFO",
     0},
    {"sync-strict", CFG_BOOL, OFF(sync_strict), 0, 0, "no", NULL,
     "with --sync-replicas: refuse writes (-NOREPLICAS) while fewer replicas are in sync", 0},
    {"repl-heartbeat", CFG_DURATION, OFF(repl_heartbeat_ms), 10, 60000, "100ms", NULL,
     "primary -> replica heartbeat interval", 0},
    {"repl-max-lag", CFG_DURATION, OFF(repl_max_lag_ms), 10, 3600000, "1s", NULL,
     "a replica that has not caught up within this is out of sync", 0},
    {"coordinator", CFG_STRING, OFF(coordinator), 0, 0, NULL, NULL,
     "automatic failover: builtin://HOST:PORT (tandem arbiter) or etcd://HOST:PORT[,...]; the "
     "node starts read-only and is primary only while it holds the leader lease",
     0},
    {"cluster", CFG_STRING, OFF(cluster), 0, 0, "tandem", NULL,
     "cluster name at the coordinator (nodes of one cluster elect one primary)", 0},
    {"priority", CFG_UINT, OFF(priority), 0, 1000000, "100", NULL,
     "failover preference among equally up-to-date nodes (0: never promoted)", 0},
    {"lease-ttl", CFG_DURATION, OFF(lease_ttl_ms), 200, 3600000, "2s", NULL,
     "leader lease: a dead primary is replaced about this long after it stopped renewing; it "
     "stops taking writes before its lease can expire (etcd rounds up to whole seconds)",
     0},
    {"min-replicas", CFG_UINT, OFF(min_replicas), 0, 15, "0", NULL,
     "restore redundancy: below this many healthy replicas the primary runs --provision-cmd",
     0},
    {"provision-after", CFG_DURATION, OFF(provision_after_ms), 0, 3600000, "5s", NULL,
     "... once they stayed below for this long", 0},
    {"provision-cmd", CFG_STRING, OFF(provision_cmd), 0, 0, NULL, NULL,
     "command (run by /bin/sh -c, with TANDEM_CLUSTER, TANDEM_PRIMARY, TANDEM_MISSING set) that "
     "starts a new node replicating from this cluster",
     0},
    {"log-level", CFG_STRING, OFF(log_level), 0, 0, "notice", NULL, "error|warn|notice|info|debug",
     0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};

static const char about[] =
    "The stateful tier: a Redis-protocol (RESP2) key-value server. Strings and hashes with\n"
    "expiry; redis-cli, redis-benchmark and redis-py work unmodified.\n"
    "\n"
    "Durability: every write is appended to a write-ahead log in --dir before its reply is\n"
    "sent. --fsync always: the reply waits for fdatasync (writes of one loop iteration share\n"
    "one fdatasync), nothing acknowledged is lost even on power loss. --fsync everysec (the\n"
    "default) or no: the reply waits until the record is written to the kernel, so an\n"
    "acknowledged write survives a crash or kill -9 of the process; a power loss may lose\n"
    "about the last second (everysec) or what the kernel had not flushed (no). Snapshots\n"
    "compact the log (SAVE, and automatically by log growth); restart loads the newest\n"
    "snapshot, then the log after it. A torn log tail is cut with a warning; damage in the\n"
    "middle of the log refuses to start (see --wal-repair). Details: docs/wal.md.";

struct db_main {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    struct server *srv;
    struct wal_persist *wp;
    struct repl_node *node;
    struct db_ha *ha;
    bool stopping;
    int exit_code;
};

static void on_persist_closed(void *ud)
{
    struct db_main *m = ud;
    m->wp = NULL;
    log_notice("db", "stopped", "");
}

static void on_node_closed(void *ud)
{
    struct db_main *m = ud;
    /* No client or replica is left: write and fsync what the log still holds, release DIR. */
    m->node = NULL;
    wal_persist_close(m->wp, on_persist_closed, m);
}

static void on_server_closed(void *ud)
{
    struct db_main *m = ud;
    if (m->node)
        repl_node_close(m->node, on_node_closed, m);
    else if (m->wp)
        wal_persist_close(m->wp, on_persist_closed, m);
    else
        log_notice("db", "stopped", "");
}

static void on_ha_stopped(void *ud)
{
    struct db_main *m = ud;
    m->ha = NULL;
    server_close(m->srv, on_server_closed, m);
}

static void stop(struct db_main *m, const char *why)
{
    if (m->stopping)
        return;
    m->stopping = true;
    log_notice("db", "stopping", "cause=\"%s\"", why);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    if (m->ha)
        db_ha_stop(m->ha, on_ha_stopped, m); /* hand over first, then close */
    else
        server_close(m->srv, on_server_closed, m);
}

static void on_signal(uv_signal_t *s, int signum)
{
    stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_shutdown(void *ud)
{
    stop(ud, "SHUTDOWN command");
}

static void on_wal_error(void *ud, int err)
{
    struct db_main *m = ud;
    /* After a failed write or fsync the page cache state is unknown: stop (fail-stop, a
     * replica takes over) rather than acknowledge writes that may not be on disk. */
    log_error("db", "the write-ahead log failed, stopping", "err=%s", td_strerror(err));
    m->exit_code = 1;
    stop(m, "log I/O error");
}

static enum wal_fsync fsync_mode(int v)
{
    switch (v) {
    case DB_FSYNC_ALWAYS:
        return WAL_FSYNC_ALWAYS;
    case DB_FSYNC_NO:
        return WAL_FSYNC_NO;
    default:
        return WAL_FSYNC_EVERYSEC;
    }
}

/* Opens the data directory and recovers it into db; logs the outcome. Returns 0 or -1. */
static int recover(struct db_main *m, const struct db_config *cfg, struct db *db)
{
    struct wal_persist_config pc;
    memset(&pc, 0, sizeof(pc));
    pc.fsync = fsync_mode(cfg->fsync);
    pc.repair = cfg->wal_repair;
    pc.segment_bytes = cfg->wal_segment_bytes;
    pc.snapshot_min_bytes = cfg->snapshot_min_bytes;
    pc.snapshot_growth_pct = cfg->snapshot_growth_pct;
    pc.on_error = on_wal_error;
    pc.ud = m;
    log_notice("db", "recovering", "dir=%s fsync=%s repair=%s", cfg->dir, wal_fsync_name(pc.fsync),
               cfg->wal_repair ? "yes" : "no");
    uint64_t t0 = clock_now_ms();
    struct wal_recovery rep;
    char err[1024];
    int r = wal_persist_open(cfg->dir, &pc, &m->loop, db, &m->wp, &rep, err, sizeof(err));
    if (r != 0) {
        log_error("db", "cannot recover the data directory, refusing to start", "err=\"%s\"", err);
        if (r == TD_ECORRUPT && !cfg->wal_repair)
            log_error("db",
                      "inspect the file named above; to start anyway, run again with "
                      "--wal-repair: the log is cut at the damage and every cut byte is kept in "
                      "DIR/repaired-<lsn>.bin",
                      "dir=%s", cfg->dir);
        return -1;
    }
    log_notice("db", "recovered",
               "snapshot_lsn=%" PRIu64 " snapshot_keys=%" PRIu64 " log_records=%" PRIu64
               " last_lsn=%" PRIu64 " term=%" PRIu64 " keys=%" PRIu64 " truncated_bytes=%" PRIu64
               " ms=%" PRIu64,
               rep.snapshot_lsn, wal_persist_snapshot_keys(m->wp), rep.records, rep.last_lsn,
               rep.last_term, keyspace_size(db->ks), rep.truncated_bytes, clock_now_ms() - t0);
    return 0;
}

/* The node's name (the bound listen address unless --name) and its first role. */
static void start_role(struct db_main *m, const struct db_config *cfg)
{
    char addr[64];
    struct sockaddr_storage bound = cfg->listen;
    if (bound.ss_family == AF_INET)
        ((struct sockaddr_in *)&bound)->sin_port = htons((uint16_t)server_port(m->srv));
    else if (bound.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&bound)->sin6_port = htons((uint16_t)server_port(m->srv));
    addr_format((const struct sockaddr *)&bound, addr, sizeof(addr));
    const char *name = cfg->name ? cfg->name : addr;
    repl_node_set_name(m->node, name);
    if (cfg->coordinator) {
        char err[300];
        m->ha = db_ha_start(&m->loop, m->node, cfg, name, addr, err, sizeof(err));
        if (m->ha == NULL) {
            log_error("db", "cannot start the HA agent", "err=\"%s\"", err);
            m->exit_code = 2;
            stop(m, "HA agent failure");
        }
    } else if (cfg->replicaof) {
        struct sockaddr_storage up;
        char err[200];
        if (parse_addr(cfg->replicaof, &up, err, sizeof(err)) != 0) {
            log_error("db", "--replicaof: bad address", "err=\"%s\"", err);
            m->exit_code = 2;
            stop(m, "bad --replicaof");
            return;
        }
        repl_node_follow(m->node, &up);
    } else {
        repl_node_resume_primary(m->node);
    }
}

int cmd_db_main(int argc, char **argv)
{
    struct db_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    char err[512];
    if (cfg_defaults(db_table, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem db: %s\n", err);
        return 2;
    }
    struct cli_spec spec = {
        "db",
        "db [--listen ADDR] [--dir DIR] [--fsync always|everysec|no] [--wal-repair] "
        "[--requirepass SECRET] [limits]",
        about,
        db_table,
        "  --dump-config                print the effective configuration and exit\n",
        NULL,
        NULL,
    };
    /* --dump-config takes no value: take it out before the table-driven parse. */
    bool dump = false;
    char **args = xcalloc((size_t)argc + 1, sizeof(*args));
    int nargs = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--dump-config") == 0)
            dump = true;
        else
            args[nargs++] = argv[i];
    }
    int rc = cli_parse(nargs, args, &spec, &cfg, NULL, 0);
    free(args); /* the table copied every value it kept */
    if (rc < 0) {
        cfg_free(db_table, &cfg);
        return rc == -1 ? 0 : 2;
    }
    enum log_level level;
    if (log_level_parse(cfg.log_level, &level) != 0) {
        fprintf(stderr, "tandem db: --log-level: '%s' is not error|warn|notice|info|debug\n",
                cfg.log_level);
        cfg_free(db_table, &cfg);
        return 2;
    }
    if (cfg.query_buffer < cfg.max_bulk) {
        fprintf(stderr, "tandem db: --query-buffer must be at least --max-bulk, or arguments "
                        "that --max-bulk allows would be refused\n");
        cfg_free(db_table, &cfg);
        return 2;
    }
    if (cfg.dir == NULL || cfg.dir[0] == '\0') {
        fprintf(stderr, "tandem db: --dir must not be empty (see --help)\n");
        cfg_free(db_table, &cfg);
        return 2;
    }
    /* Before the directory is created: printing the configuration changes nothing. */
    if (dump) {
        char *pw = cfg.requirepass;
        cfg.requirepass = pw ? "(set)" : NULL;
        cfg_dump(db_table, &cfg, stdout);
        cfg.requirepass = pw;
        cfg_free(db_table, &cfg);
        return 0;
    }
    if (cfg.in_memory && (cfg.replicaof || cfg.sync_replicas)) {
        fprintf(stderr, "tandem db: replication streams the write-ahead log: --replicaof and "
                        "--sync-replicas cannot be used with --in-memory\n");
        cfg_free(db_table, &cfg);
        return 2;
    }
    if (cfg.coordinator && (cfg.replicaof || cfg.in_memory)) {
        fprintf(stderr, "tandem db: with --coordinator the agent chooses the primary: drop "
                        "--replicaof (and --in-memory)\n");
        cfg_free(db_table, &cfg);
        return 2;
    }
    if (cfg.replicaof) {
        struct sockaddr_storage up;
        if (parse_addr(cfg.replicaof, &up, err, sizeof(err)) != 0) {
            fprintf(stderr, "tandem db: --replicaof: %s\n", err);
            cfg_free(db_table, &cfg);
            return 2;
        }
    }
    if (!cfg.in_memory && cli_data_dir(cfg.dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem db: %s\n", err);
        cfg_free(db_table, &cfg);
        return 2;
    }
    log_init("db", NULL);
    log_set_level(level);

    uint8_t seed[16];
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        log_error("db", "cannot read random bytes for the hash seed", "err=%s", strerror(errno));
        cfg_free(db_table, &cfg);
        return 1;
    }
    struct db_main m;
    memset(&m, 0, sizeof(m));
    uv_loop_init(&m.loop);
    struct db *db = db_new(&cfg, seed);
    if (cfg.in_memory) {
        log_warn("db", "in-memory mode: nothing is written to disk, data is lost at exit", "");
    } else if (recover(&m, &cfg, db) != 0) {
        db_free(db);
        uv_run(&m.loop, UV_RUN_DEFAULT);
        uv_loop_close(&m.loop);
        cfg_free(db_table, &cfg);
        return 1;
    }
    m.srv = server_new(&m.loop, db, &cfg);
    if (m.wp) {
        struct repl_node_config nc;
        memset(&nc, 0, sizeof(nc));
        nc.dir = cfg.dir;
        nc.name = cfg.name ? cfg.name : "";
        nc.secret = cfg.repl_secret ? cfg.repl_secret : cfg.requirepass ? cfg.requirepass : "";
        nc.sync_replicas = (unsigned)cfg.sync_replicas;
        nc.sync_strict = cfg.sync_strict;
        nc.heartbeat_ms = cfg.repl_heartbeat_ms;
        nc.max_lag_ms = cfg.repl_max_lag_ms;
        nc.own = cfg.listen;
        m.node = repl_node_new(&m.loop, m.wp, db, &nc);
        repl_node_attach_server(m.node, m.srv);
    }
    server_on_shutdown(m.srv, on_shutdown, &m);
    uv_signal_init(&m.loop, &m.sigint);
    uv_signal_init(&m.loop, &m.sigterm);
    m.sigint.data = &m;
    m.sigterm.data = &m;
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);

    if (server_start(m.srv, err, sizeof(err)) != 0) {
        log_error("db", "cannot start", "err=\"%s\"", err);
        m.exit_code = 1;
        stop(&m, "startup failure");
    } else if (m.wp) {
        wal_persist_start(m.wp);
        start_role(&m, &cfg);
    }
    uv_run(&m.loop, UV_RUN_DEFAULT);
    int exit_code = m.exit_code;
    if (uv_loop_close(&m.loop) != 0) {
        log_error("db", "event loop still has open handles at exit", "");
        exit_code = 1;
    }
    server_free(m.srv);
    db_free(db);
    cfg_free(db_table, &cfg);
    return exit_code;
}
