/* SPDX-License-Identifier: MIT */
/* cli/cmd_db.c -- `tandem db`: the Redis-protocol store, single node. Wires the configuration
 * table, the db, the server, signals and (once it exists) the persistence layer. */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "base/alloc.h"
#include "base/cfg.h"
#include "base/log.h"
#include "cli/cli.h"
#include "store/db.h"
#include "store/server.h"

static const char *const fsync_choices[] = {"always", "everysec", "no", NULL};

#define OFF(f) offsetof(struct db_config, f)

static const struct cfg_entry db_table[] = {
    {"listen", CFG_ADDR, OFF(listen), 0, 0, "127.0.0.1:6379", NULL,
     "address to listen on, HOST:PORT", 0},
    {"dir", CFG_STRING, OFF(dir), 0, 0, NULL, NULL, "data directory (required; created if missing)",
     0},
    {"fsync", CFG_ENUM, OFF(fsync), 0, 0, "everysec", fsync_choices,
     "when the write-ahead log reaches the disk", 0},
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
    {"log-level", CFG_STRING, OFF(log_level), 0, 0, "notice", NULL, "error|warn|notice|info|debug",
     0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};

static const char about[] =
    "The stateful tier: a Redis-protocol (RESP2) key-value server. Strings and hashes with\n"
    "expiry; redis-cli, redis-benchmark and redis-py work unmodified.\n"
    "\n"
    "PERSISTENCE IS NOT YET WIRED: the write-ahead log and snapshots exist (docs/wal.md) but\n"
    "tandem db does not use them yet. --dir and --fsync are accepted and validated, but this\n"
    "build keeps all data in memory only; it is lost when the process stops, and SAVE replies\n"
    "with an error.";

struct db_main {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    struct server *srv;
    bool stopping;
};

static void on_server_closed(void *ud)
{
    struct db_main *m = ud;
    log_notice("db", "stopped", "");
    (void)m;
}

static void stop(struct db_main *m, const char *why)
{
    if (m->stopping)
        return;
    m->stopping = true;
    log_notice("db", "stopping", "cause=%s", why);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
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

/* Makes sure dir exists (creating one level) and is a writable directory. */
static int check_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) == -1) {
        if (errno != ENOENT || mkdir(dir, 0755) == -1) {
            snprintf(err, errlen, "--dir %s: %s", dir, strerror(errno));
            return -errno;
        }
        if (stat(dir, &st) == -1) {
            snprintf(err, errlen, "--dir %s: %s", dir, strerror(errno));
            return -errno;
        }
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "--dir %s: not a directory", dir);
        return -ENOTDIR;
    }
    if (access(dir, W_OK | X_OK) == -1) {
        snprintf(err, errlen, "--dir %s: not writable: %s", dir, strerror(errno));
        return -errno;
    }
    return 0;
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
        "db --listen ADDR --dir DIR [--fsync always|everysec|no] [--requirepass SECRET] "
        "[limits]",
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
        fprintf(stderr, "tandem db: --dir is required (see --help)\n");
        cfg_free(db_table, &cfg);
        return 2;
    }
    if (check_dir(cfg.dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "tandem db: %s\n", err);
        cfg_free(db_table, &cfg);
        return 2;
    }
    if (dump) {
        char *pw = cfg.requirepass;
        cfg.requirepass = pw ? "(set)" : NULL;
        cfg_dump(db_table, &cfg, stdout);
        cfg.requirepass = pw;
        cfg_free(db_table, &cfg);
        return 0;
    }
    log_init("db", NULL);
    log_set_level(level);

    uint8_t seed[16];
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        log_error("db", "cannot read random bytes for the hash seed", "err=%s", strerror(errno));
        cfg_free(db_table, &cfg);
        return 1;
    }
    log_warn("db", "persistence: not yet wired, data is kept in memory only", "dir=%s fsync=%s",
             cfg.dir, fsync_choices[cfg.fsync]);

    struct db_main m;
    memset(&m, 0, sizeof(m));
    uv_loop_init(&m.loop);
    struct db *db = db_new(&cfg, seed);
    m.srv = server_new(&m.loop, db, &cfg);
    server_on_shutdown(m.srv, on_shutdown, &m);
    uv_signal_init(&m.loop, &m.sigint);
    uv_signal_init(&m.loop, &m.sigterm);
    m.sigint.data = &m;
    m.sigterm.data = &m;
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);

    int exit_code = 0;
    if (server_start(m.srv, err, sizeof(err)) != 0) {
        log_error("db", "cannot start", "err=\"%s\"", err);
        exit_code = 1;
        stop(&m, "startup failure");
    }
    uv_run(&m.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&m.loop) != 0) {
        log_error("db", "event loop still has open handles at exit", "");
        exit_code = 1;
    }
    server_free(m.srv);
    db_free(db);
    cfg_free(db_table, &cfg);
    return exit_code;
}
