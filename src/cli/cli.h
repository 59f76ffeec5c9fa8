/* SPDX-License-Identifier: MIT */
/* cli/cli.h -- subcommand entry points and the shared flag parser. Each cmd_*_main returns an
 * exit code: 0 ok, 1 runtime failure, 2 usage or configuration error. */
#ifndef TD_CLI_CLI_H
#define TD_CLI_CLI_H

#include <stddef.h>

#include "base/cfg.h"

int cmd_app_main(int argc, char **argv);
int cmd_version_main(int argc, char **argv);
int cmd_lb_main(int argc, char **argv);
int cmd_load_main(int argc, char **argv);
int cmd_demo_main(int argc, char **argv);
int cmd_db_main(int argc, char **argv);
int cmd_arbiter_main(int argc, char **argv);
int cmd_coord_main(int argc, char **argv);
int cmd_up_main(int argc, char **argv);
int cmd_status_main(int argc, char **argv);

/* Flags that are not in the cfg table (repeatable ones like --server). Returns 0 when handled,
 * 1 when name is unknown, or a negative code after writing the reason into err. has_value
 * false means the flag was given without a value. */
typedef int (*cli_extra_fn)(void *ud, const char *name, const char *value, char *err,
                            size_t errlen);

struct cli_spec {
    const char *cmd;              /* "lb" */
    const char *usage;            /* one line after "usage: tandem " */
    const char *about;            /* paragraph printed by --help */
    const struct cfg_entry *table;
    const char *extra_help;       /* printed after the table's flags; may be NULL */
    cli_extra_fn extra;           /* may be NULL */
    void *ud;
};

/* Parses argv[1..] ("--name VALUE" or "--name=VALUE") into target through spec->table, then
 * spec->extra. Positional arguments are collected into pos (at most maxpos). Returns the
 * number of positionals, 0 upward; -1 after --help was printed (exit 0); -2 after an error
 * was printed to stderr (exit 2). */
int cli_parse(int argc, char **argv, const struct cli_spec *spec, void *target, char **pos,
              int maxpos);
/* Prints the --help text of spec to stdout. */
void cli_help(const struct cli_spec *spec);

/* A command's data directory (--dir): creates it and its missing parents (mkdir -p) and checks
 * it is a writable directory. Returns 0, or a negated errno with a sentence in err. */
int cli_data_dir(const char *dir, char *err, size_t errlen);

/* For a process started by tandem's supervisor (`tandem up`, `tandem demo`: the environment
 * names its PID): asks the kernel to send SIGTERM when the supervisor dies, so a supervisor
 * killed with -9 leaves nothing running. Clears the variable either way. Call first in main. */
void cli_follow_supervisor(void);

#endif
