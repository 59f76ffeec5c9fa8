/* SPDX-License-Identifier: MIT */
/* store/cmd_multi.c -- transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH, with Redis 7's
 * replies.
 *
 * MULTI opens a queue in the session; cmd_exec() checks each later command as it would run it
 * (unknown command, arity, NOAUTH, commands not allowed in a transaction, write refusal on a
 * replica) and either queues a copy (+QUEUED) or replies the error and flags the transaction.
 * EXEC then answers EXECABORT when flagged, a null array when a WATCHed key changed (db_log marks
 * watchers for every change: writes, expiries, applied records), else runs the queue in order
 * with the db capturing the records the commands log, and appends them as ONE record (a TXN
 * when there are several, store/persist.h): all or nothing in the log, on replicas and after a
 * crash. Errors of single commands inside EXEC are elements of the reply, not rolled back
 * (Redis). The queued bytes are capped by the client query-buffer limit. */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "proto/resp.h"
#include "store/cmd_impl.h"
#include "store/keyspace.h"
#include "store/watch.h"

/* Queue limit when the db has no configuration (unit tests): Redis's default query buffer. */
#define MULTI_QUEUE_LIMIT_DEFAULT ((uint64_t)1 << 30)
/* Accounted per queued argument on top of its bytes. */
#define MULTI_ARG_OVERHEAD 16

void cmd_multi_discard_state(struct session *s)
{
    struct cmd_multi *m = &s->multi;
    for (size_t i = 0; i < m->n; i++)
        free(m->q[i].argv);
    free(m->q);
    m->q = NULL;
    m->n = m->cap = 0;
    m->bytes = 0;
    m->on = m->flagged = m->writes = false;
    watch_clear(&m->watcher);
}

void cmd_multi_abort(struct call *c, const char *why)
{
    cmd_multi_discard_state(c->s);
    resp_add_errorf(c->out, "EXECABORT Transaction discarded because of: %s", why);
}

static uint64_t queue_limit(const struct call *c)
{
    return c->db->cfg ? c->db->cfg->query_buffer : MULTI_QUEUE_LIMIT_DEFAULT;
}

void cmd_multi_queue(struct call *c)
{
    struct cmd_multi *m = &c->s->multi;
    size_t bytes = 0;
    for (int i = 0; i < c->argc; i++)
        bytes += c->argv[i].len;
    uint64_t cost = bytes + (uint64_t)c->argc * MULTI_ARG_OVERHEAD + sizeof(struct cmd_queued);
    if (m->bytes + cost > queue_limit(c)) {
        m->flagged = true;
        reply_err(c->out, "ERR transaction queue exceeds the client query buffer limit "
                          "(client-query-buffer-limit)");
        return;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->q = xrealloc(m->q, m->cap * sizeof(*m->q));
    }
    struct slice *argv = xmalloc((size_t)c->argc * sizeof(*argv) + bytes + 1);
    char *p = (char *)(argv + c->argc);
    for (int i = 0; i < c->argc; i++) {
        if (c->argv[i].len)
            memcpy(p, c->argv[i].p, c->argv[i].len);
        argv[i] = slice_of(p, c->argv[i].len);
        p += c->argv[i].len;
    }
    m->q[m->n++] = (struct cmd_queued){c->def, c->parent, c->argc, argv};
    m->bytes += cost;
    if (c->def->flags & CMD_WRITE)
        m->writes = true;
    ADD_LIT(c->out, "+QUEUED\r\n");
}

void cmd_multi_multi(struct call *c)
{
    if (c->s->multi.on) {
        reply_err(c->out, "ERR MULTI calls can not be nested");
        return;
    }
    c->s->multi.on = true;
    reply_ok(c->out);
}

void cmd_multi_discard(struct call *c)
{
    if (!c->s->multi.on) {
        reply_err(c->out, "ERR DISCARD without MULTI");
        return;
    }
    cmd_multi_discard_state(c->s);
    reply_ok(c->out);
}

void cmd_multi_watch(struct call *c)
{
    struct cmd_multi *m = &c->s->multi;
    if (m->on) {
        reply_err(c->out, "ERR WATCH inside MULTI is not allowed");
        return;
    }
    for (int i = 1; i < c->argc; i++) {
        /* A key already expired goes now (its DEL is logged before the watch starts), so only
         * an expiry after WATCH counts as a change, as in Redis. */
        lookup_write(c, c->argv[i]);
        watch_add(c->db->watch, &m->watcher, c->argv[i]);
    }
    reply_ok(c->out);
}

void cmd_multi_unwatch(struct call *c)
{
    watch_clear(&c->s->multi.watcher);
    reply_ok(c->out);
}

/* Looks every watched key up with the current time: one that expired since WATCH is removed
 * now, and the DEL that logs marks the watcher dirty. */
static void expire_watched(struct call *c)
{
    const struct watcher *w = &c->s->multi.watcher;
    for (size_t i = 0; i < w->nlinks && !w->dirty; i++)
        lookup_write(c, watch_key_at(w, i));
}

void cmd_multi_exec(struct call *c)
{
    struct session *s = c->s;
    struct cmd_multi *m = &s->multi;
    if (!m->on) {
        reply_err(c->out, "ERR EXEC without MULTI");
        return;
    }
    if (m->flagged) {
        cmd_multi_discard_state(s);
        reply_err(c->out, "EXECABORT Transaction discarded because of previous errors.");
        return;
    }
    expire_watched(c);
    if (m->watcher.dirty) {
        cmd_multi_discard_state(s);
        ADD_LIT(c->out, "*-1\r\n");
        return;
    }
    /* Take the queue: nothing a queued command does can reach it, and the watch ends now. */
    struct cmd_queued *q = m->q;
    size_t n = m->n;
    m->q = NULL;
    m->n = m->cap = 0;
    cmd_multi_discard_state(s);
    resp_add_array(c->out, (int64_t)n);
    db_capture_begin(c->db);
    for (size_t i = 0; i < n; i++)
        cmd_run(c->env, s, q[i].def, q[i].parent, q[i].argc, q[i].argv);
    c->logged = db_capture_end(c->db);
    for (size_t i = 0; i < n; i++)
        free(q[i].argv);
    free(q);
}
