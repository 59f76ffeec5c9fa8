/* SPDX-License-Identifier: MIT */
/* base/cfg.c -- config tables: defaults, parsing, help and dump from one description. */
#include "base/cfg.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "base/alloc.h"
#include "base/parse.h"

static bool name_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a == '_' ? '-' : *a, y = *b == '_' ? '-' : *b;
        if (x != y)
            return false;
    }
    return *a == *b;
}

const struct cfg_entry *cfg_find(const struct cfg_entry *t, const char *name)
{
    for (; t->name; t++)
        if (name_eq(t->name, name))
            return t;
    return NULL;
}

static int set_number(const struct cfg_entry *e, uint64_t *field, const char *value, char *err,
                      size_t errlen)
{
    uint64_t v;
    int rc;
    const char *what;
    switch (e->type) {
    case CFG_DURATION:
        rc = parse_duration_ms(value, &v);
        what = "a duration like 250ms or 2s";
        break;
    case CFG_SIZE:
        rc = parse_size_bytes(value, &v);
        what = "a size like 512, 64kb or 16mb";
        break;
    default:
        rc = parse_uint(value, 0, UINT64_MAX, &v);
        what = "a non-negative integer";
        break;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: '%s' is not %s", e->name, value, what);
        return -EINVAL;
    }
    if (v < e->min || (e->max != 0 && v > e->max)) {
        snprintf(err, errlen, "%s: %s is out of range [%" PRIu64 ", %" PRIu64 "]", e->name,
                 value, e->min, e->max);
        return -ERANGE;
    }
    *field = v;
    return 0;
}

int cfg_set(const struct cfg_entry *e, void *target, const char *value, char *err, size_t errlen)
{
    void *field = (char *)target + e->offset;
    switch (e->type) {
    case CFG_UINT:
    case CFG_DURATION:
    case CFG_SIZE:
        return set_number(e, field, value, err, errlen);
    case CFG_STRING: {
        char **s = field;
        free(*s);
        *s = value ? xstrdup(value) : NULL;
        return 0;
    }
    case CFG_ENUM:
        for (int i = 0; e->choices[i]; i++) {
            if (strcmp(e->choices[i], value) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        {
            int n = snprintf(err, errlen, "%s: '%s' is not one of", e->name, value);
            for (int i = 0; e->choices[i] && n > 0 && (size_t)n < errlen; i++)
                n += snprintf(err + n, errlen - (size_t)n, "%s%s", i ? "|" : " ", e->choices[i]);
        }
        return -EINVAL;
    case CFG_BOOL:
        if (!strcasecmp(value, "yes") || !strcasecmp(value, "true") || !strcasecmp(value, "on") ||
            !strcmp(value, "1")) {
            *(bool *)field = true;
            return 0;
        }
        if (!strcasecmp(value, "no") || !strcasecmp(value, "false") || !strcasecmp(value, "off") ||
            !strcmp(value, "0")) {
            *(bool *)field = false;
            return 0;
        }
        snprintf(err, errlen, "%s: '%s' is not yes/no", e->name, value);
        return -EINVAL;
    case CFG_ADDR: {
        char why[256];
        if (parse_addr(value, field, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s: %s", e->name, why);
            return -EINVAL;
        }
        return 0;
    }
    }
    return -EINVAL;
}

int cfg_defaults(const struct cfg_entry *t, void *target, char *err, size_t errlen)
{
    for (; t->name; t++) {
        if (t->def == NULL)
            continue;
        int rc = cfg_set(t, target, t->def, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

void cfg_free(const struct cfg_entry *t, void *target)
{
    for (; t->name; t++) {
        if (t->type == CFG_STRING) {
            char **s = (char **)((char *)target + t->offset);
            free(*s);
            *s = NULL;
        }
    }
}

static const char *type_hint(const struct cfg_entry *e)
{
    switch (e->type) {
    case CFG_UINT:
        return "N";
    case CFG_DURATION:
        return "DUR";
    case CFG_SIZE:
        return "SIZE";
    case CFG_STRING:
        return "STR";
    case CFG_ENUM:
        return "CHOICE";
    case CFG_BOOL:
        return "yes|no";
    case CFG_ADDR:
        return "ADDR";
    }
    return "";
}

void cfg_help(const struct cfg_entry *t, FILE *out)
{
    for (; t->name; t++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s %s", t->name, type_hint(t));
        fprintf(out, "  %-28s %s", flag, t->help);
        if (t->type == CFG_ENUM) {
            fputs(" (", out);
            for (int i = 0; t->choices[i]; i++)
                fprintf(out, "%s%s", i ? "|" : "", t->choices[i]);
            fputc(')', out);
        }
        if (t->def)
            fprintf(out, " [default: %s]", t->def);
        fputc('\n', out);
    }
}

void cfg_dump(const struct cfg_entry *t, const void *target, FILE *out)
{
    for (; t->name; t++) {
        const void *field = (const char *)target + t->offset;
        fprintf(out, "%s = ", t->name);
        switch (t->type) {
        case CFG_UINT:
        case CFG_SIZE:
            fprintf(out, "%" PRIu64, *(const uint64_t *)field);
            break;
        case CFG_DURATION:
            fprintf(out, "%" PRIu64 "ms", *(const uint64_t *)field);
            break;
        case CFG_STRING: {
            const char *s = *(char *const *)field;
            fputs(s ? s : "", out);
            break;
        }
        case CFG_ENUM:
            fputs(t->choices[*(const int *)field], out);
            break;
        case CFG_BOOL:
            fputs(*(const bool *)field ? "yes" : "no", out);
            break;
        case CFG_ADDR: {
            char a[128];
            addr_format((const struct sockaddr *)field, a, sizeof(a));
            fputs(a, out);
            break;
        }
        }
        fputc('\n', out);
    }
}

struct file_ctx {
    cfg_line_fn fn;
    void *ud;
    char *err;
    size_t errlen;
    int rc;
};

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
    struct file_ctx *c = user;
    if (c->rc)
        return 0;
    int rc = c->fn(c->ud, section, name, value, c->err, c->errlen);
    if (rc) {
        c->rc = rc;
        return 0;
    }
    return 1;
}

int cfg_parse_file(const char *path, cfg_line_fn fn, void *ud, char *err, size_t errlen)
{
    char why[512] = "";
    struct file_ctx c = {fn, ud, why, sizeof(why), 0};
    int line = ini_parse(path, on_ini_line, &c);
    if (line == -1) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -ENOENT;
    }
    if (line == -2) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    if (line > 0) {
        snprintf(err, errlen, "%s:%d: %s", path, line, why[0] ? why : "syntax error");
        return c.rc ? c.rc : -EINVAL;
    }
    return 0;
}
