/* SPDX-License-Identifier: MIT */
/* main.c -- multi-call dispatch: `tandem CMD ...`, or `tandem-CMD ...` through a link. */
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

struct command {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *about;
};

static const struct command commands[] = {
    {"app", cmd_app_main, "example stateless HTTP API (users, balances) backed by the store"},
    {"db", cmd_db_main, "the store: a Redis-protocol key-value server"},
    {"arbiter", cmd_arbiter_main, "built-in coordinator (witness): leases, revisions, CAS"},
    {"lb", cmd_lb_main, "load balancer: HTTP and TCP pools, active-active or active-passive"},
    {"version", cmd_version_main, "print versions and exit"},
    {"load", cmd_load_main, "HTTP keep-alive load generator and failover checker"},
    {"demo", cmd_demo_main, "the architecture's story, live, with a measured table"},
    {"coord", cmd_coord_main, "coordinator client: leases, reads, transactions, watches"},
    {"up", cmd_up_main, "the whole topology on loopback, supervised (Ctrl-C stops it)"},
    {"status", cmd_status_main, "who is primary, term, lag, health, traffic split"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fputs("usage: tandem COMMAND [OPTIONS]   (tandem COMMAND --help for details)\n\n"
          "High availability, made real: an active-active load balancer over stateless app\n"
          "servers, and an active-passive replicated store with automatic failover.\n\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].about);
}

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    /* a peer that closes while we write must give EPIPE, not kill the process (for every
     * command: the balancer, app, store and load generator all write to sockets) */
    signal(SIGPIPE, SIG_IGN);
    cli_follow_supervisor();
    char self[256];
    snprintf(self, sizeof(self), "%s", argv[0]);
    const char *base = basename(self);
    if (strncmp(base, "tandem-", 7) == 0) {
        const struct command *c = find(base + 7);
        if (c)
            return c->main(argc, argv);
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version_main(argc - 1, argv + 1);
    const struct command *c = find(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "tandem: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    return c->main(argc - 1, argv + 1);
}
