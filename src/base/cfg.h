/* SPDX-License-Identifier: MIT */
/* base/cfg.h -- table-driven configuration. A component describes its settings once, in a
 * table of cfg_entry; the same table fills defaults, parses config-file lines and command-line
 * flags, range-checks, prints --help and dumps the effective config. */
#ifndef TD_BASE_CFG_H
#define TD_BASE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type {
    CFG_UINT = 0, /* uint64_t, decimal */
    CFG_DURATION, /* uint64_t milliseconds: "250ms", "2s" */
    CFG_SIZE,     /* uint64_t bytes: "64kb", "16mb" */
    CFG_STRING,   /* char *, owned by the target, freed by cfg_free */
    CFG_ENUM,     /* int: index into choices */
    CFG_BOOL,     /* bool: yes/no, true/false, on/off, 1/0 */
    CFG_ADDR,     /* struct sockaddr_storage: HOST:PORT */
};

#define CFG_RELOAD 0x1u /* may change on reload (SIGHUP) */

struct cfg_entry {
    const char *name;
    enum cfg_type type;
    size_t offset;
    uint64_t min, max;           /* numeric types; max 0 means no upper bound */
    const char *def;             /* default, as text; NULL means none (strings: NULL) */
    const char *const *choices;  /* CFG_ENUM: NULL-terminated names */
    const char *help;
    unsigned flags;
};

/* Finds name in table t (terminated by an entry with name NULL); '-' and '_' match each other. */
const struct cfg_entry *cfg_find(const struct cfg_entry *t, const char *name);
/* Parses value into the target field of e. On error returns -EINVAL/-ERANGE and writes why. */
int cfg_set(const struct cfg_entry *e, void *target, const char *value, char *err, size_t errlen);
/* Sets every entry to its default. Returns 0, or an error for a bad default (a bug). */
int cfg_defaults(const struct cfg_entry *t, void *target, char *err, size_t errlen);
/* Frees owned strings of the target and NULLs them. */
void cfg_free(const struct cfg_entry *t, void *target);
/* Prints "  --name VALUE   help (default: x)" per entry. */
void cfg_help(const struct cfg_entry *t, FILE *out);
/* Prints "name = value" per entry, the effective configuration. */
void cfg_dump(const struct cfg_entry *t, const void *target, FILE *out);

/* Called per "key = value" line of a config file; section is "" before any [section].
 * Returns 0, or an error after writing the reason into err. */
typedef int (*cfg_line_fn)(void *ud, const char *section, const char *key, const char *value,
                           char *err, size_t errlen);
/* Parses an INI file with inih; the first failing line stops parsing and its reason is reported
 * as "PATH:LINE: reason". */
int cfg_parse_file(const char *path, cfg_line_fn fn, void *ud, char *err, size_t errlen);

#endif
