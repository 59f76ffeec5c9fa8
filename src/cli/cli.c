/* SPDX-License-Identifier: MIT */
/* cli/cli.c -- the flag parser every subcommand uses: one cfg table serves flags, config files,
 * --help and --dump-config; and the data directory check the servers share. */
#include "cli/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/parse.h"
#include "harness/child.h"

void cli_help(const struct cli_spec *spec)
{
    printf("usage: tandem %s\n\n%s\n\noptions:\n", spec->usage, spec->about);
    if (spec->table)
        cfg_help(spec->table, stdout);
    if (spec->extra_help)
        fputs(spec->extra_help, stdout);
    printf("  %-28s %s\n", "--help", "print this help and exit");
}

int cli_parse(int argc, char **argv, const struct cli_spec *spec, void *target, char **pos,
              int maxpos)
{
    int npos = 0;
    char err[512];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_help(spec);
            return -1;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (npos >= maxpos) {
                fprintf(stderr, "tandem %s: unexpected argument '%s' (see --help)\n", spec->cmd,
                        a);
                return -2;
            }
            pos[npos++] = argv[i];
            continue;
        }
        char name[64];
        const char *value = NULL;
        const char *eq = strchr(a + 2, '=');
        size_t nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nlen >= sizeof(name)) {
            fprintf(stderr, "tandem %s: unknown option '%s' (see --help)\n", spec->cmd, a);
            return -2;
        }
        memcpy(name, a + 2, nlen);
        name[nlen] = '\0';
        const struct cfg_entry *e = spec->table ? cfg_find(spec->table, name) : NULL;
        bool is_bool = e && e->type == CFG_BOOL;
        if (eq) {
            value = eq + 1;
        } else if (is_bool) {
            value = "yes";
        } else if (i + 1 < argc) {
            value = argv[++i];
        }
        if (e) {
            if (value == NULL) {
                fprintf(stderr, "tandem %s: option --%s needs a value\n", spec->cmd, name);
                return -2;
            }
            if (cfg_set(e, target, value, err, sizeof(err)) != 0) {
                fprintf(stderr, "tandem %s: %s\n", spec->cmd, err);
                return -2;
            }
            continue;
        }
        int rc = spec->extra ? spec->extra(spec->ud, name, value, err, sizeof(err)) : 1;
        if (rc == 1) {
            fprintf(stderr, "tandem %s: unknown option '--%s' (see --help)\n", spec->cmd, name);
            return -2;
        }
        if (rc < 0) {
            fprintf(stderr, "tandem %s: %s\n", spec->cmd, err);
            return -2;
        }
    }
    return npos;
}

int cli_data_dir(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    if (strlen(dir) >= sizeof(path) - 1) {
        snprintf(err, errlen, "--dir: path too long");
        return -ENAMETOOLONG;
    }
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(path, 0755) == -1 && errno != EEXIST) {
                int e = errno;
                snprintf(err, errlen, "--dir: cannot create %.400s: %s", path, strerror(e));
                return -e;
            }
            if (end)
                break;
            *p = '/';
        }
    }
    struct stat st;
    if (stat(dir, &st) == -1) {
        snprintf(err, errlen, "--dir %s: %s", dir, strerror(errno));
        return -errno;
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

void cli_follow_supervisor(void)
{
    const char *v = getenv(CHILD_SUPERVISOR_ENV);
    uint64_t pid;
    if (v == NULL || parse_uint(v, 2, INT32_MAX, &pid) != 0) {
        unsetenv(CHILD_SUPERVISOR_ENV);
        return;
    }
    /* Only the supervisor's own children: what a provision command starts is not tied to it. */
    unsetenv(CHILD_SUPERVISOR_ENV);
    if ((uint64_t)getppid() != pid)
        return;
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
        return;
    if ((uint64_t)getppid() != pid)
        raise(SIGTERM); /* it died between the check and the request */
}
