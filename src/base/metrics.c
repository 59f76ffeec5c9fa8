/* SPDX-License-Identifier: MIT */
/* base/metrics.c -- families in a list, series in a list per family. Registration is rare
 * (startup, reload) so lookups are linear; updates go through the returned cell. */
#include "base/metrics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/err.h"

struct series {
    struct series *next;
    char *labels;
    int64_t value;
};

struct family {
    struct family *next;
    enum metric_type type;
    char *name;
    char *help;
    struct series *head, **tail;
};

struct metrics {
    struct family *head, **tail;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof(*m));
    m->tail = &m->head;
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    struct family *f = m->head;
    while (f) {
        struct family *fn = f->next;
        struct series *s = f->head;
        while (s) {
            struct series *sn = s->next;
            free(s->labels);
            free(s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    free(m);
}

int64_t *metrics_series(struct metrics *m, enum metric_type type, const char *name,
                        const char *help, const char *labels)
{
    struct family *f;
    for (f = m->head; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            break;
    if (f == NULL) {
        f = xcalloc(1, sizeof(*f));
        f->type = type;
        f->name = xstrdup(name);
        f->help = xstrdup(help ? help : "");
        f->tail = &f->head;
        *m->tail = f;
        m->tail = &f->next;
    }
    TD_ASSERT(f->type == type);
    struct series *s;
    for (s = f->head; s; s = s->next)
        if (strcmp(s->labels, labels) == 0)
            return &s->value;
    s = xcalloc(1, sizeof(*s));
    s->labels = xstrdup(labels);
    *f->tail = s;
    f->tail = &s->next;
    return &s->value;
}

void metrics_render(const struct metrics *m, struct buf *out)
{
    for (const struct family *f = m->head; f; f = f->next) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                   f->type == METRIC_COUNTER ? "counter" : "gauge");
        for (const struct series *s = f->head; s; s = s->next) {
            if (s->labels[0])
                buf_printf(out, "%s{%s} %" PRId64 "\n", f->name, s->labels, s->value);
            else
                buf_printf(out, "%s %" PRId64 "\n", f->name, s->value);
        }
    }
}

void metrics_escape_label(struct buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_append(out, "\\\\", 2);
        else if (*s == '"')
            buf_append(out, "\\\"", 2);
        else if (*s == '\n')
            buf_append(out, "\\n", 2);
        else
            buf_append(out, s, 1);
    }
}
