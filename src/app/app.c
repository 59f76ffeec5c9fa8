/* SPDX-License-Identifier: MIT */
/* app/app.c -- `tandem app`: HTTP/1.1 server on libuv, requests answered from the store.
 *
 * A connection serves one request at a time, in order (pipelined requests wait in the input
 * buffer):
 *
 *   WAIT --first byte--> READING --message complete--> (answered at once) --> WAIT
 *                                                   \-> BUSY (store op) --response--> WAIT
 *   any --error, Connection: close, EOF, shutdown--> LINGER --EOF or timer--> closed
 *
 * One timer per connection means what the state says: idle timeout in WAIT, request timeout in
 * READING (408), store timeout in BUSY (503: the op is detached and runs to its end without a
 * client), linger in LINGER. LINGER shuts down the write side after the last response and
 * drains input for a moment, so a client that is still sending does not get a reset that would
 * destroy the response it has not read yet.
 *
 * A store op owns copies of everything it needs (id, key, body) and not the connection, so it
 * survives its request: a timed-out POST with an Idempotency-Key that has started its
 * transaction runs it to the end (one that was still waiting for its turn is dropped).
 * Nothing outlives a request except that record in the store: any instance can serve any
 * request. */
#include "app/app.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "app/app_json.h"
#include "app/app_route.h"
#include "app/app_store.h"
#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/list.h"
#include "base/log.h"
#include "base/parse.h"
#include "net/listen.h"
#include "proto/http1.h"

#define READ_CHUNK 16384
#define WRITE_BACKLOG_MAX (256 * 1024) /* stop serving a client that does not read its answers */
#define LINGER_MS 1000
#define REJECT_LOG_EVERY_MS 1000
#define ERR_BALANCE_OVERFLOW "ERR increment or decrement would overflow"

enum conn_state {
    CS_WAIT = 0, /* no request bytes yet */
    CS_READING,  /* part of a request received */
    CS_BUSY,     /* request complete, store op in flight */
    CS_LINGER,   /* last response queued; write side shut, draining input until close */
};

/* What a request needs after its head has left the input buffer. */
struct req {
    bool active;
    int method;
    bool keep_alive;
    bool http10;
    struct app_route route; /* route.id points into id[] */
    char id[APP_ROUTE_ID_MAX + 1];
    bool has_key;
    bool key_bad;
    char key[APP_JSON_IDEM_KEY_MAX + 1];
    size_t key_len;
    char target[96]; /* for the DEBUG request log, truncated and sanitised */
    uint64_t start_us;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    struct list link;
    struct app_server *srv;
    struct http1_parser parser;
    struct buf in;    /* input not yet parsed... */
    size_t parse_off; /* ...from this offset (the head stays until HEAD_DONE) */
    struct buf body;  /* decoded body of the current request */
    bool body_too_big;
    enum conn_state state;
    bool reading;
    bool eof;
    bool closing;     /* uv_close called */
    bool shut;        /* uv_shutdown called */
    bool shut_done;   /* ...and completed: every response is written */
    bool close_after; /* close once the current response is queued */
    bool in_process;
    bool write_blocked;
    int handles;
    struct op *op;
    struct req req;
};

struct app_server {
    uv_loop_t *loop;
    struct app_config cfg;
    char name[65];
    char addr[80];
    uv_tcp_t listener;
    uv_timer_t drain_timer;
    struct app_store *store; /* NULL without --store, and once closing */
    struct http1_limits limits;
    struct list conns;
    uint64_t nconns;
    uint64_t rejected;
    uint64_t last_reject_log_ms;
    bool closing;
    bool store_closing;
    bool drain_closing;
    bool finished;
    struct list txn_wait;   /* keyed balance updates waiting for the lane (struct op.lane) */
    uint64_t txn_waiting;
    struct op *txn_active;  /* the one between its WATCH and its EXEC */
    bool txn_pumping;
    int pending_closes;
    app_server_closed_fn closed_cb;
    void *closed_ud;
};

/* A store operation for one request. conn is NULL once detached (request timed out, client
 * gone, server stopping): the op then finishes its commands and frees itself silently. */
struct op {
    struct conn *conn;
    struct app_server *srv;
    enum app_action action;
    char id[APP_ROUTE_ID_MAX + 1];
    size_t id_len;
    bool has_key;
    char key[APP_JSON_IDEM_KEY_MAX + 1];
    size_t key_len;
    int64_t delta;
    struct buf doc;    /* PUT: the document to store */
    struct buf result; /* POST with a key: the record read, then the response being recorded */
    /* POST with a key: the transaction (see "the lane" below) */
    struct list lane;    /* in srv->txn_wait while waiting for its turn */
    int phase;           /* enum txn_phase */
    unsigned inflight;   /* commands of the current batch not answered yet */
    unsigned reply_ix;   /* which reply of the batch comes next */
    int attempts;        /* read batches sent (a WATCH conflict starts over) */
    uint64_t store_conn; /* the store connection the WATCH went to */
    bool txn_failed;     /* some command of the batch failed: txn_why says how */
    char txn_why[160];
    bool found;          /* the record exists (its bytes are in result) */
    bool has_balance;    /* the balance exists (its bytes are in balance) */
    struct buf balance;
    bool exec_ok;        /* EXEC ran the transaction */
    bool conflict;       /* EXEC answered nil: a watched key changed */
};

static void process_input(struct conn *c);
static void conn_close(struct conn *c);
static void maybe_finish(struct app_server *s);
static void read_start(struct conn *c);

bool app_name_is_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* ---- writing ---- */

struct wreq {
    uv_write_t req;
    struct conn *c;
    char *data;
};

static void arm_timer(struct conn *c);

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = container_of(req, struct wreq, req);
    struct conn *c = w->c;
    free(w->data);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        log_debug("http", "write failed", "err=%s", uv_err_name(status));
        conn_close(c);
        return;
    }
    if (c->write_blocked && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
        c->write_blocked = false;
        arm_timer(c);
        if (!c->eof)
            read_start(c);
        process_input(c);
    }
}

/* Queues b's bytes (ownership of b->p moves to the write request). */
static void write_buf(struct conn *c, struct buf *b)
{
    struct wreq *w = xmalloc(sizeof(*w));
    w->c = c;
    w->data = b->p;
    uv_buf_t ub = uv_buf_init(b->p, (unsigned)b->len);
    buf_init(b);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
    if (rc != 0) {
        free(w->data);
        free(w);
        log_debug("http", "write failed", "err=%s", uv_err_name(rc));
        conn_close(c);
    }
}

/* ---- connection lifecycle ---- */

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles > 0)
        return;
    struct app_server *s = c->srv;
    list_remove(&c->link);
    s->nconns--;
    buf_free(&c->in);
    buf_free(&c->body);
    free(c);
    maybe_finish(s);
}

/* Closes c now: pending writes are cancelled, a store op in flight is detached. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->op) {
        c->op->conn = NULL;
        c->op = NULL;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0 || c->eof) {
        conn_close(c);
        return;
    }
    /* Everything is written; drain what the client still sends, briefly. */
    c->shut_done = true;
    c->in.len = 0;
    c->parse_off = 0;
    read_start(c);
    arm_timer(c);
}

/* Ends the connection after the queued responses: shut the write side (libuv sends the FIN
 * after the pending writes), then linger. */
static void start_shutdown(struct conn *c)
{
    if (c->closing || c->shut)
        return;
    c->shut = true;
    c->state = CS_LINGER;
    arm_timer(c); /* a client that does not read its last response is cut off after a while */
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

static void respond_error(struct conn *c, int status, const char *error, const char *detail,
                          const char *extra_headers);

static void on_conn_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->closing)
        return;
    if (c->write_blocked) {
        log_debug("http", "client not reading, closing", "queued_bytes=%zu",
                  uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp));
        conn_close(c);
        return;
    }
    switch (c->state) {
    case CS_WAIT:
        conn_close(c);
        break;
    case CS_READING:
        c->req.keep_alive = false;
        respond_error(c, 408, "request timeout", "the request did not arrive in time", NULL);
        break;
    case CS_BUSY: {
        char detail[80];
        snprintf(detail, sizeof(detail), "no answer from the store within %" PRIu64 "ms",
                 c->srv->cfg.store_timeout_ms);
        if (c->op) {
            c->op->conn = NULL; /* the op completes on its own */
            c->op = NULL;
        }
        respond_error(c, 503, "store unavailable", detail, NULL);
        break;
    }
    case CS_LINGER:
        conn_close(c);
        break;
    }
}

static void arm_timer(struct conn *c)
{
    const struct app_config *cfg = &c->srv->cfg;
    uint64_t ms = cfg->idle_timeout_ms;
    if (!c->write_blocked) {
        switch (c->state) {
        case CS_WAIT:
            ms = cfg->idle_timeout_ms;
            break;
        case CS_READING:
            ms = cfg->request_timeout_ms;
            break;
        case CS_BUSY:
            ms = cfg->store_timeout_ms;
            break;
        case CS_LINGER:
            ms = c->shut_done ? LINGER_MS : cfg->idle_timeout_ms;
            break;
        }
    }
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

/* ---- responses ---- */

/* Sends one complete response for the current request, then readies the connection for the
 * next one (or for closing). extra_headers is NULL or CRLF-terminated header lines. */
static void respond(struct conn *c, int status, struct slice body, const char *extra_headers)
{
    struct app_server *s = c->srv;
    struct req *r = &c->req;
    bool close = !r->keep_alive || s->closing || c->eof;
    struct buf out;
    buf_init(&out);
    buf_reserve(&out, body.len + 256);
    buf_printf(&out,
               "HTTP/1.1 %d %s\r\nX-Server: %s\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\n",
               status, http1_reason(status), s->name, body.len);
    if (close)
        buf_append_str(&out, "Connection: close\r\n");
    else if (r->http10)
        buf_append_str(&out, "Connection: keep-alive\r\n");
    if (extra_headers)
        buf_append_str(&out, extra_headers);
    buf_append_str(&out, "\r\n");
    if (!r->route.head)
        buf_append(&out, body.p, body.len);
    write_buf(c, &out);
    if (log_min_level >= LOG_DEBUG && r->active)
        log_debug("http", "request", "method=%s target=\"%s\" status=%d us=%" PRIu64,
                  http1_method_name(r->method), r->target, status, clock_now_us() - r->start_us);
    if (c->closing)
        return;

    /* The request is over: ready the connection for the next one. */
    c->op = NULL;
    if (c->body.cap > 4 * READ_CHUNK)
        buf_free(&c->body);
    if (c->in.len == 0 && c->in.cap > 4 * READ_CHUNK)
        buf_free(&c->in); /* do not keep a large request's buffer for an idle connection */
    c->body.len = 0;
    c->body_too_big = false;
    http1_next(&c->parser);
    memset(r, 0, sizeof(*r));
    if (close) {
        start_shutdown(c);
        return;
    }
    c->state = c->in.len > 0 ? CS_READING : CS_WAIT;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > WRITE_BACKLOG_MAX) {
        c->write_blocked = true;
        log_debug("http", "client not reading its answers, pausing", "queued_bytes=%zu",
                  uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp));
    }
    arm_timer(c);
    if (!c->eof && !c->reading && !c->write_blocked)
        read_start(c);
    process_input(c);
}

static void respond_buf(struct conn *c, int status, struct buf *body, const char *extra)
{
    respond(c, status, slice_of(body->p ? body->p : "", body->len), extra);
}

static void respond_error(struct conn *c, int status, const char *error, const char *detail,
                          const char *extra_headers)
{
    struct buf b;
    buf_init(&b);
    app_json_error(&b, error, detail, (struct slice){NULL, 0});
    respond_buf(c, status, &b, extra_headers);
    buf_free(&b);
}

/* ---- store operations ---- */

static void op_free(struct op *op)
{
    buf_free(&op->doc);
    buf_free(&op->result);
    buf_free(&op->balance);
    free(op);
}

static void txn_run_next(struct app_server *s);

/* Answers the op's request (if it still has one), frees the op, and gives the transaction
 * lane to the next op when this one held it. */
static void op_finish(struct op *op, int status, struct slice body, const char *extra)
{
    struct app_server *s = op->srv;
    if (s->txn_active == op) {
        s->txn_active = NULL;
        txn_run_next(s); /* first, so that the waiting go before what this answer lets in */
    }
    struct conn *c = op->conn;
    if (c) {
        c->op = NULL;
        respond(c, status, body, extra);
    }
    op_free(op);
}

static void op_finish_error(struct op *op, int status, const char *error, const char *detail)
{
    struct buf b;
    buf_init(&b);
    app_json_error(&b, error, detail, slice_of(op->id, op->id_len));
    op_finish(op, status, slice_of(b.p, b.len), NULL);
    buf_free(&b);
}

static void op_store_failed(struct op *op, const char *detail)
{
    op_finish_error(op, 503, "store unavailable", detail);
}

static void op_on_reply(void *ud, const redisReply *reply);

/* Sends one command for op; on failure to send, the op fails with 503 at once. Returns true
 * when the command is in flight. */
static bool op_send(struct op *op, int argc, const char **argv, const size_t *lens)
{
    struct app_store *st = op->srv->store;
    if (st == NULL) {
        op_store_failed(op, "shutting down");
        return false;
    }
    if (app_store_command(st, op_on_reply, op, argc, argv, lens) != 0) {
        char detail[200];
        snprintf(detail, sizeof(detail), "%s", app_store_status(st));
        op_store_failed(op, detail[0] ? detail : "not connected");
        return false;
    }
    return true;
}

static void key_of(char *out, size_t outlen, const char *prefix, const char *s, size_t len)
{
    snprintf(out, outlen, "%s%.*s", prefix, (int)len, s);
}

static bool reply_is(const redisReply *r, int type)
{
    return r && r->type == type;
}

/* ---- balance updates with an Idempotency-Key: one transaction at a time ----
 *
 * The balance change and the record of its outcome are written by one MULTI/EXEC, so they
 * exist together or not at all, on the primary, on its replicas and after a crash; the WATCH
 * makes it a compare-and-set against any other writer of either key:
 *
 *   WATCH idem:KEY balance:ID, GET idem:KEY, GET balance:ID        (the read batch)
 *     record found  -> its response again (Idempotent-Replayed: true), or 422 when the key was
 *                      used for another request; UNWATCH
 *     no record     -> MULTI, SET balance:ID B+DELTA, SET idem:KEY <record> EX ttl, EXEC
 *                        array -> 200 with the new balance
 *                        nil   -> a watched key changed since the read: start over
 *
 * A request whose EXEC got no answer (store or connection lost) is answered 503, and its retry
 * with the same key is safe whatever happened: either the record exists and is replayed, or
 * nothing was applied and the retry applies it. WATCH belongs to a connection and the app
 * shares one connection to the store among all requests, so these transactions take turns (the
 * lane): one is between its WATCH and its EXEC at a time; other commands flow meanwhile. */

#define TXN_WAITING_MAX 4096 /* keyed balance updates queued for the lane */
#define TXN_ATTEMPTS_MAX 64  /* WATCH conflicts before the update gives up with 409 */

enum txn_phase {
    TXN_READ = 1, /* WATCH, GET record, GET balance */
    TXN_WRITE,    /* MULTI, SET balance, SET record, EXEC */
};

static uint64_t idem_ttl_s(const struct op *op)
{
    uint64_t s = op->srv->cfg.idempotency_ttl_ms / 1000;
    return s ? s : 1;
}

static void txn_fail(struct op *op, const char *why)
{
    if (op->txn_failed)
        return; /* the first failure explains the others */
    op->txn_failed = true;
    snprintf(op->txn_why, sizeof(op->txn_why), "%s", why && why[0] ? why : "not connected");
}

/* Sends one command of op's current batch; a failure is recorded, and the replies already due
 * still arrive before the batch is judged. */
static void txn_send(struct op *op, int argc, const char **argv, const size_t *lens)
{
    struct app_store *st = op->srv->store;
    if (op->txn_failed)
        return;
    if (st == NULL) {
        txn_fail(op, "shutting down");
        return;
    }
    if (app_store_command(st, op_on_reply, op, argc, argv, lens) != 0) {
        txn_fail(op, app_store_status(st));
        return;
    }
    op->inflight++;
}

static void ignore_reply(void *ud, const redisReply *reply)
{
    (void)ud;
    (void)reply;
}

static void txn_unwatch(struct op *op)
{
    struct app_store *st = op->srv->store;
    const char *argv[] = {"UNWATCH"};
    size_t lens[] = {7};
    if (st)
        (void)app_store_command(st, ignore_reply, NULL, 1, argv, lens);
}

static void txn_read(struct op *op)
{
    char ikey[300], bkey[96];
    key_of(ikey, sizeof(ikey), "idem:", op->key, op->key_len);
    key_of(bkey, sizeof(bkey), "balance:", op->id, op->id_len);
    op->attempts++;
    op->phase = TXN_READ;
    op->reply_ix = 0;
    op->txn_failed = false;
    op->found = false;
    op->has_balance = false;
    op->result.len = 0;
    op->balance.len = 0;
    op->store_conn = op->srv->store ? app_store_connection_id(op->srv->store) : 0;
    const char *watch[] = {"WATCH", ikey, bkey};
    size_t watch_lens[] = {5, strlen(ikey), strlen(bkey)};
    const char *get_rec[] = {"GET", ikey};
    size_t get_rec_lens[] = {3, strlen(ikey)};
    const char *get_bal[] = {"GET", bkey};
    size_t get_bal_lens[] = {3, strlen(bkey)};
    txn_send(op, 3, watch, watch_lens);
    txn_send(op, 2, get_rec, get_rec_lens);
    txn_send(op, 2, get_bal, get_bal_lens);
    if (op->inflight == 0)
        op_finish_error(op, 503, "store unavailable", op->txn_why);
}

/* The read batch is complete: replay, refuse, or write. */
static void txn_after_read(struct op *op)
{
    if (op->txn_failed) {
        txn_unwatch(op);
        op_finish_error(op, 503, "store unavailable", op->txn_why);
        return;
    }
    struct app_json_idem rec;
    memset(&rec, 0, sizeof(rec));
    buf_init(&rec.body);
    struct slice record = slice_of(op->result.p, op->result.len);
    struct slice balance = slice_of(op->balance.p, op->balance.len);
    int64_t next = 0;
    enum app_idem_verdict v =
        app_json_idem_decide(op->found ? &record : NULL, op->has_balance ? &balance : NULL,
                             slice_of(op->id, op->id_len), op->delta, &rec, &next);
    if (v != APP_IDEM_APPLY)
        txn_unwatch(op);
    switch (v) {
    case APP_IDEM_APPLY:
        break;
    case APP_IDEM_REPLAY:
        op_finish(op, rec.status, slice_of(rec.body.p ? rec.body.p : "", rec.body.len),
                  "Idempotent-Replayed: true\r\n");
        break;
    case APP_IDEM_MISMATCH:
        op_finish_error(op, 422, "Idempotency-Key reused for a different request",
                        "a key may be used for one user id and delta only");
        break;
    case APP_IDEM_BAD_RECORD:
        op_finish_error(op, 500, "unreadable idempotency record", NULL);
        break;
    case APP_IDEM_BAD_BALANCE:
        op_finish_error(op, 500, "stored balance is not an integer", NULL);
        break;
    case APP_IDEM_OVERFLOW:
        op_finish_error(op, 409, "balance out of range", ERR_BALANCE_OVERFLOW);
        break;
    }
    buf_free(&rec.body);
    if (v != APP_IDEM_APPLY)
        return;
    if (op->srv->store == NULL || app_store_connection_id(op->srv->store) != op->store_conn) {
        /* the WATCH went to a connection that is gone: it protects nothing on the new one */
        txn_read(op);
        return;
    }
    struct slice id = slice_of(op->id, op->id_len);
    op->result.len = 0;
    app_json_balance(&op->result, id, next);
    struct buf stored;
    buf_init(&stored);
    app_json_idem_encode(&stored, id, op->delta, 200, slice_of(op->result.p, op->result.len));
    char ikey[300], bkey[96], num[32], ttl[32];
    key_of(ikey, sizeof(ikey), "idem:", op->key, op->key_len);
    key_of(bkey, sizeof(bkey), "balance:", op->id, op->id_len);
    snprintf(num, sizeof(num), "%" PRId64, next);
    snprintf(ttl, sizeof(ttl), "%" PRIu64, idem_ttl_s(op));
    const char *multi[] = {"MULTI"};
    size_t multi_lens[] = {5};
    const char *set_bal[] = {"SET", bkey, num};
    size_t set_bal_lens[] = {3, strlen(bkey), strlen(num)};
    const char *set_rec[] = {"SET", ikey, stored.p, "EX", ttl};
    size_t set_rec_lens[] = {3, strlen(ikey), stored.len, 2, strlen(ttl)};
    const char *exec[] = {"EXEC"};
    size_t exec_lens[] = {4};
    op->phase = TXN_WRITE;
    op->reply_ix = 0;
    op->exec_ok = false;
    op->conflict = false;
    txn_send(op, 1, multi, multi_lens);
    txn_send(op, 3, set_bal, set_bal_lens);
    txn_send(op, 5, set_rec, set_rec_lens);
    txn_send(op, 1, exec, exec_lens);
    buf_free(&stored);
    if (op->inflight == 0)
        op_finish_error(op, 503, "store unavailable", op->txn_why);
}

/* The write batch is complete. */
static void txn_after_write(struct op *op)
{
    if (op->exec_ok) {
        op_finish(op, 200, slice_of(op->result.p, op->result.len), NULL);
    } else if (op->conflict && op->attempts < TXN_ATTEMPTS_MAX) {
        txn_read(op);
    } else if (op->conflict) {
        op_finish_error(op, 409, "too many concurrent updates of this balance", "retry");
    } else {
        /* Lost connection: the outcome is unknown and a retry with the same key settles it. */
        op_finish_error(op, 503, "store unavailable", op->txn_why);
    }
}

static void on_txn_reply(struct op *op, const redisReply *r)
{
    unsigned ix = op->reply_ix++;
    op->inflight--;
    bool is_exec = op->phase == TXN_WRITE && ix == 3;
    if (r == NULL) {
        txn_fail(op, "connection to the store lost");
    } else if (r->type == REDIS_REPLY_ERROR) {
        txn_fail(op, r->str); /* an error queueing a command also aborts the EXEC */
    } else if (is_exec) {
        if (r->type == REDIS_REPLY_ARRAY)
            op->exec_ok = true;
        else if (r->type == REDIS_REPLY_NIL)
            op->conflict = true;
        else
            txn_fail(op, "unexpected reply to EXEC");
    } else if (op->phase == TXN_READ && ix == 1) {
        if (r->type == REDIS_REPLY_STRING) {
            op->found = true;
            buf_append(&op->result, r->str, r->len);
        } else if (r->type != REDIS_REPLY_NIL) {
            txn_fail(op, "unexpected reply");
        }
    } else if (op->phase == TXN_READ && ix == 2) {
        if (r->type == REDIS_REPLY_STRING) {
            op->has_balance = true;
            buf_append(&op->balance, r->str, r->len);
        } else if (r->type != REDIS_REPLY_NIL) {
            txn_fail(op, "unexpected reply");
        }
    }
    if (op->inflight > 0)
        return;
    if (op->phase == TXN_READ)
        txn_after_read(op);
    else
        txn_after_write(op);
}

/* Starts waiting transactions while the lane is free. Not reentrant: a transaction that ends
 * at once, inside this loop, lets the loop start the next one. */
static void txn_run_next(struct app_server *s)
{
    if (s->txn_pumping)
        return;
    s->txn_pumping = true;
    while (s->txn_active == NULL && !list_empty(&s->txn_wait)) {
        struct op *op = container_of(s->txn_wait.next, struct op, lane);
        list_remove(&op->lane);
        s->txn_waiting--;
        if (op->conn == NULL) {
            op_free(op); /* its client was answered 503 or left; nothing was sent */
            continue;
        }
        s->txn_active = op;
        txn_read(op);
    }
    s->txn_pumping = false;
}

static void txn_enqueue(struct op *op)
{
    struct app_server *s = op->srv;
    if (s->txn_waiting >= TXN_WAITING_MAX) {
        op_store_failed(op, "too many balance updates waiting");
        return;
    }
    list_append(&s->txn_wait, &op->lane);
    s->txn_waiting++;
    txn_run_next(s);
}

static void send_incrby(struct op *op)
{
    char key[96], num[32];
    key_of(key, sizeof(key), "balance:", op->id, op->id_len);
    snprintf(num, sizeof(num), "%" PRId64, op->delta);
    const char *argv[] = {"INCRBY", key, num};
    size_t lens[] = {6, strlen(key), strlen(num)};
    op_send(op, 3, argv, lens);
}

/* POST /users/{id}/balance without an Idempotency-Key: INCRBY balance:ID DELTA. */
static void on_incrby_reply(struct op *op, const redisReply *r)
{
    if (reply_is(r, REDIS_REPLY_INTEGER)) {
        struct buf body;
        buf_init(&body);
        app_json_balance(&body, slice_of(op->id, op->id_len), r->integer);
        op_finish(op, 200, slice_of(body.p, body.len), NULL);
        buf_free(&body);
    } else if (reply_is(r, REDIS_REPLY_ERROR) &&
               (strstr(r->str, "overflow") || strstr(r->str, "out of range"))) {
        op_finish_error(op, 409, "balance out of range", r->str);
    } else {
        op_store_failed(op, reply_is(r, REDIS_REPLY_ERROR) ? r->str
                            : r ? "unexpected reply"
                                : "connection to the store lost");
    }
}

static void op_on_reply(void *ud, const redisReply *r)
{
    struct op *op = ud;
    struct slice id = slice_of(op->id, op->id_len);
    if (op->action == APP_ACT_BALANCE_POST) {
        if (op->has_key)
            on_txn_reply(op, r);
        else
            on_incrby_reply(op, r);
        return;
    }
    if (r == NULL) {
        op_store_failed(op, "connection to the store lost");
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        op_store_failed(op, r->str);
        return;
    }
    struct buf body;
    buf_init(&body);
    switch (op->action) {
    case APP_ACT_USER_GET:
        if (r->type == REDIS_REPLY_STRING)
            op_finish(op, 200, slice_of(r->str, r->len), NULL);
        else if (r->type == REDIS_REPLY_NIL)
            op_finish_error(op, 404, "user not found", NULL);
        else
            op_store_failed(op, "unexpected reply");
        break;
    case APP_ACT_USER_PUT:
        if (r->type == REDIS_REPLY_NIL || r->type == REDIS_REPLY_STRING)
            op_finish(op, r->type == REDIS_REPLY_NIL ? 201 : 200, slice_of(op->doc.p, op->doc.len),
                      NULL);
        else
            op_store_failed(op, "unexpected reply");
        break;
    case APP_ACT_USER_DELETE:
        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
            app_json_deleted(&body, id);
            op_finish(op, 200, slice_of(body.p, body.len), NULL);
        } else if (r->type == REDIS_REPLY_INTEGER) {
            op_finish_error(op, 404, "user not found", NULL);
        } else {
            op_store_failed(op, "unexpected reply");
        }
        break;
    case APP_ACT_BALANCE_GET: {
        int64_t v = 0;
        if (r->type == REDIS_REPLY_NIL ||
            (r->type == REDIS_REPLY_STRING &&
             app_json_parse_int64(slice_of(r->str, r->len), &v) == 0)) {
            app_json_balance(&body, id, v);
            op_finish(op, 200, slice_of(body.p, body.len), NULL);
        } else {
            op_finish_error(op, 500, "stored balance is not an integer", NULL);
        }
        break;
    }
    default:
        op_finish_error(op, 500, "internal error", NULL);
        break;
    }
    buf_free(&body);
}

/* Starts the store op for the complete request on c. Answers at once when the request is
 * invalid or the store cannot be asked. */
static void start_op(struct conn *c)
{
    struct app_server *s = c->srv;
    struct req *r = &c->req;
    if (s->store == NULL) {
        respond_error(c, 503, "store unavailable",
                      s->closing ? "shutting down" : "no store configured (start with --store)",
                      NULL);
        return;
    }
    struct op *op = xcalloc(1, sizeof(*op));
    op->srv = s;
    op->action = r->route.action;
    memcpy(op->id, r->id, sizeof(op->id));
    op->id_len = r->route.id.len;
    buf_init(&op->doc);
    buf_init(&op->result);
    buf_init(&op->balance);
    struct slice body = slice_of(c->body.p ? c->body.p : "", c->body.len);
    const char *why = NULL;
    if (op->action == APP_ACT_USER_PUT && app_json_user_parse(body, &op->doc, &why) != 0) {
        op_free(op);
        respond_error(c, 400, "invalid user document", why, NULL);
        return;
    }
    if (op->action == APP_ACT_BALANCE_POST) {
        if (app_json_delta_parse(body, &op->delta, &why) != 0) {
            op_free(op);
            respond_error(c, 400, "invalid balance change", why, NULL);
            return;
        }
        if (r->key_bad) {
            op_free(op);
            respond_error(c, 400, "invalid Idempotency-Key", "use 1-255 visible ASCII characters",
                          NULL);
            return;
        }
        op->has_key = r->has_key;
        memcpy(op->key, r->key, sizeof(op->key));
        op->key_len = r->key_len;
    }
    /* From here the op answers the request itself, now (send failed) or later. */
    op->conn = c;
    c->op = op;
    c->state = CS_BUSY;
    arm_timer(c);
    char key[96];
    key_of(key, sizeof(key), op->action == APP_ACT_BALANCE_GET ? "balance:" : "user:", op->id,
           op->id_len);
    switch (op->action) {
    case APP_ACT_USER_GET:
    case APP_ACT_BALANCE_GET: {
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, strlen(key)};
        op_send(op, 2, argv, lens);
        break;
    }
    case APP_ACT_USER_PUT: {
        const char *argv[] = {"SET", key, op->doc.p, "GET"};
        size_t lens[] = {3, strlen(key), op->doc.len, 3};
        op_send(op, 4, argv, lens);
        break;
    }
    case APP_ACT_USER_DELETE: {
        const char *argv[] = {"DEL", key};
        size_t lens[] = {3, strlen(key)};
        op_send(op, 2, argv, lens);
        break;
    }
    case APP_ACT_BALANCE_POST:
        if (op->has_key)
            txn_enqueue(op);
        else
            send_incrby(op);
        break;
    default:
        op_finish_error(op, 500, "internal error", NULL);
        break;
    }
}

/* ---- requests ---- */

static void dispatch(struct conn *c)
{
    struct req *r = &c->req;
    struct app_server *s = c->srv;
    struct buf b;
    buf_init(&b);
    switch (r->route.action) {
    case APP_ACT_NONE: {
        char allow[64] = "";
        if (r->route.allow)
            snprintf(allow, sizeof(allow), "Allow: %s\r\n", r->route.allow);
        respond_error(c, r->route.status, r->route.error, NULL, allow[0] ? allow : NULL);
        break;
    }
    case APP_ACT_HEALTHZ:
        app_json_health(&b, s->name);
        respond_buf(c, 200, &b, NULL);
        break;
    case APP_ACT_WHOAMI:
        app_json_whoami(&b, s->name);
        respond_buf(c, 200, &b, NULL);
        break;
    default:
        start_op(c);
        break;
    }
    buf_free(&b);
}

/* Copies what the request needs out of the head (which is about to leave the buffer) and
 * decides early refusals. Returns false when the request was answered already (413). */
static bool on_head(struct conn *c)
{
    struct req *r = &c->req;
    const struct http1_msg *m = &c->parser.msg;
    const char *base = c->in.p;
    r->active = true;
    r->start_us = clock_now_us();
    r->method = m->method;
    r->http10 = m->version_major == 1 && m->version_minor == 0;
    r->keep_alive = m->keep_alive && !m->upgrade;
    struct slice target = http1_slice(base, m->url);
    size_t tn = target.len < sizeof(r->target) - 1 ? target.len : sizeof(r->target) - 1;
    for (size_t i = 0; i < tn; i++) {
        char ch = target.p[i];
        r->target[i] = (ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\') ? ch : '?';
    }
    app_route_resolve(m->method, target, &r->route);
    if (r->route.id.len) {
        memcpy(r->id, r->route.id.p, r->route.id.len);
        r->id[r->route.id.len] = '\0';
        r->route.id = slice_of(r->id, r->route.id.len);
    }
    struct slice key = http1_header_get(m, base, "Idempotency-Key");
    if (key.p) {
        r->has_key = true;
        if (app_json_idem_key_is_valid(key)) {
            memcpy(r->key, key.p, key.len);
            r->key_len = key.len;
        } else {
            r->key_bad = true;
        }
    }
    uint64_t max_body = c->srv->cfg.max_body_bytes;
    if (m->has_content_length && m->content_length > max_body) {
        r->keep_alive = false;
        char detail[80];
        snprintf(detail, sizeof(detail), "the limit is %" PRIu64 " bytes", max_body);
        respond_error(c, 413, "request body too large", detail, NULL);
        return false;
    }
    struct slice expect = http1_header_get(m, base, "Expect");
    if (expect.p && slice_eq_nocase(expect, SLICE_LIT("100-continue")) && !r->http10 &&
        (m->chunked || m->content_length > 0)) {
        struct buf b;
        buf_init(&b);
        buf_append_str(&b, "HTTP/1.1 100 Continue\r\n\r\n");
        write_buf(c, &b);
    }
    return !c->closing;
}

static void bad_request(struct conn *c, int code)
{
    c->req.keep_alive = false;
    if (code == TD_EHDR_TOO_BIG)
        respond_error(c, 431, "request header fields too large", NULL, NULL);
    else
        respond_error(c, 400, "bad request", td_strerror(code), NULL);
}

/* Parses and serves what is in the input buffer, one request at a time, until it needs more
 * bytes, a store op is in flight, or the connection is ending. Not re-entrant (a response sent
 * synchronously from inside calls it again; the outer loop goes on instead). */
static void process_input(struct conn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    while (!c->closing && !c->shut && c->state != CS_BUSY && !c->write_blocked) {
        struct http1_parser *p = &c->parser;
        size_t used = 0;
        int ev = http1_feed(p, c->in.p, c->parse_off, c->in.len - c->parse_off, &used);
        c->parse_off += used;
        if (ev < 0) {
            bad_request(c, ev);
            break;
        }
        if (ev == HTTP1_HEAD_DONE && !on_head(c))
            break;
        if (p->head_done) {
            /* Past the head nothing parsed is needed again: drop it. */
            buf_consume(&c->in, c->parse_off);
            c->parse_off = 0;
        }
        if (c->body_too_big) {
            c->req.keep_alive = false;
            respond_error(c, 413, "request body too large", NULL, NULL);
            break;
        }
        if (ev == HTTP1_MSG_DONE) {
            dispatch(c);
            continue;
        }
        if (ev == HTTP1_NEED_MORE) {
            if (c->eof) {
                /* the client stopped sending in the middle of a request, or between two */
                start_shutdown(c);
            }
            break;
        }
    }
    c->in_process = false;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    struct conn *c = h->data;
    buf_reserve(&c->in, READ_CHUNK);
    *out = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void read_stop(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    struct conn *c = st->data;
    if (c->closing)
        return;
    if (nread < 0) {
        read_stop(c);
        if (nread != UV_EOF) {
            log_debug("http", "read failed", "err=%s", uv_err_name((int)nread));
            conn_close(c);
            return;
        }
        c->eof = true;
        if (c->state == CS_LINGER) {
            conn_close(c);
        } else if (c->state != CS_BUSY) {
            process_input(c); /* serves complete requests left, then shuts down */
            if (!c->closing && !c->shut && c->state != CS_BUSY)
                start_shutdown(c);
        }
        /* BUSY: the response is sent with Connection: close, then the connection ends */
        return;
    }
    if (nread == 0)
        return;
    if (c->state == CS_LINGER) {
        c->in.len = 0; /* discard */
        return;
    }
    c->in.len += (size_t)nread;
    if (c->state == CS_WAIT) {
        c->state = CS_READING;
        arm_timer(c);
    }
    if (c->state == CS_BUSY || c->write_blocked) {
        /* Pipelined input waits for the current request; bound what is buffered. */
        if (c->in.len > c->srv->limits.max_head_bytes + c->srv->cfg.max_body_bytes)
            read_stop(c);
        return;
    }
    process_input(c);
}

static void read_start(struct conn *c)
{
    if (c->reading || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
    else
        conn_close(c);
}

/* ---- listener ---- */

/* The decoded body of the request being read (http1 parser callback). */
static void on_body_bytes(void *ud, const char *at, size_t len)
{
    struct conn *c = ud;
    if (c->body_too_big)
        return;
    if (c->body.len + len > c->srv->cfg.max_body_bytes) {
        c->body_too_big = true;
        return;
    }
    buf_append(&c->body, at, len);
}

static void on_reject_closed(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct app_server *s = server->data;
    if (status < 0) {
        log_warn("http", "accept failed", "err=%s", uv_err_name(status));
        return;
    }
    if (s->closing || s->nconns >= s->cfg.max_conns) {
        uv_tcp_t *t = xmalloc(sizeof(*t));
        uv_tcp_init(s->loop, t);
        if (uv_accept(server, (uv_stream_t *)t) == 0) {
            s->rejected++;
            uint64_t now = clock_now_ms();
            if (now - s->last_reject_log_ms >= REJECT_LOG_EVERY_MS) {
                s->last_reject_log_ms = now;
                log_warn("http", "connection refused: too many connections",
                         "conns=%" PRIu64 " max_conns=%" PRIu64 " rejected_total=%" PRIu64,
                         s->nconns, s->cfg.max_conns, s->rejected);
            }
        }
        uv_close((uv_handle_t *)t, on_reject_closed);
        return;
    }
    struct conn *c = xcalloc(1, sizeof(*c));
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    list_append(&s->conns, &c->link);
    s->nconns++;
    buf_init(&c->in);
    buf_init(&c->body);
    http1_init(&c->parser, HTTP1_REQUEST, &s->limits);
    c->parser.on_body = on_body_bytes;
    c->parser.ud = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = CS_WAIT;
    arm_timer(c);
    read_start(c);
}

/* ---- server lifecycle ---- */

static void on_failed_listener_closed(uv_handle_t *h)
{
    struct app_server *s = h->data;
    free(s->cfg.name);
    free(s);
}

static void on_server_handle_closed(uv_handle_t *h)
{
    struct app_server *s = h->data;
    s->pending_closes--;
    maybe_finish(s);
}

static void on_store_closed(void *ud)
{
    struct app_server *s = ud;
    s->pending_closes--;
    maybe_finish(s);
}

/* Advances shutdown: once no connection is left, closes the store and the drain timer; once
 * everything is closed, frees s and calls the close callback. */
static void maybe_finish(struct app_server *s)
{
    if (!s->closing || s->finished || s->nconns > 0)
        return;
    if (s->store && !s->store_closing) {
        struct app_store *st = s->store;
        s->store_closing = true;
        s->store = NULL;
        s->pending_closes++;
        app_store_close(st, on_store_closed, s);
    }
    if (!s->drain_closing) {
        s->drain_closing = true;
        s->pending_closes++;
        uv_close((uv_handle_t *)&s->drain_timer, on_server_handle_closed);
    }
    if (s->pending_closes > 0)
        return;
    s->finished = true;
    log_notice("app", "stopped", "name=%s", s->name);
    app_server_closed_fn cb = s->closed_cb;
    void *ud = s->closed_ud;
    free(s->cfg.name);
    free(s);
    if (cb)
        cb(ud);
}

static void close_all(struct app_server *s, bool idle_only)
{
    struct list *pos, *tmp;
    list_for_each_safe(pos, tmp, &s->conns)
    {
        struct conn *c = container_of(pos, struct conn, link);
        if (!idle_only)
            conn_close(c);
        else if (c->state == CS_WAIT && c->in.len == 0 &&
                 uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0)
            conn_close(c); /* idle: nothing in either direction, no linger needed */
    }
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct app_server *s = t->data;
    if (s->nconns > 0)
        log_warn("app", "shutdown timeout, closing connections", "conns=%" PRIu64, s->nconns);
    close_all(s, false);
}

void app_server_close(struct app_server *s, bool graceful, app_server_closed_fn cb, void *ud)
{
    if (!s->closing) {
        s->closing = true;
        s->closed_cb = cb;
        s->closed_ud = ud;
        log_notice("app", "shutting down", "graceful=%s conns=%" PRIu64, graceful ? "yes" : "no",
                   s->nconns);
        s->pending_closes++;
        uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
        if (graceful) {
            close_all(s, true);
            uv_timer_start(&s->drain_timer, on_drain_timeout, s->cfg.shutdown_timeout_ms, 0);
        } else {
            close_all(s, false);
        }
    } else if (!graceful) {
        close_all(s, false);
    }
    maybe_finish(s);
}

const char *app_server_addr(const struct app_server *s)
{
    return s->addr;
}

int app_server_new(uv_loop_t *loop, const struct app_config *cfg, struct app_server **out,
                   char *err, size_t errlen)
{
    if (!app_name_is_valid(cfg->name)) {
        snprintf(err, errlen, "invalid name: use 1-64 of [A-Za-z0-9_.-]");
        return -EINVAL;
    }
    struct app_server *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->cfg = *cfg;
    s->cfg.name = xstrdup(cfg->name);
    snprintf(s->name, sizeof(s->name), "%s", cfg->name);
    s->limits = http1_default_limits;
    list_init(&s->conns);
    list_init(&s->txn_wait);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    struct sockaddr_storage bound;
    int rc = net_listen(&s->listener, (const struct sockaddr *)&cfg->listen, 511, on_connection,
                        &bound, err, errlen);
    if (rc != 0) {
        /* the listener handle must still be closed before s can go */
        uv_close((uv_handle_t *)&s->listener, on_failed_listener_closed);
        return rc;
    }
    addr_format((const struct sockaddr *)&bound, s->addr, sizeof(s->addr));
    uv_timer_init(loop, &s->drain_timer);
    s->drain_timer.data = s;
    char store_addr[80] = "none";
    if (cfg->store.ss_family == AF_INET || cfg->store.ss_family == AF_INET6) {
        char host[64];
        const struct sockaddr *sa = (const struct sockaddr *)&cfg->store;
        const void *ip = sa->sa_family == AF_INET
                             ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                             : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        uv_inet_ntop(sa->sa_family, ip, host, sizeof(host));
        struct app_store_opts o = {
            .connect_timeout_ms = cfg->store_connect_timeout_ms,
            .stall_ms = cfg->store_timeout_ms * 2 > 1000 ? cfg->store_timeout_ms * 2 : 1000,
            .reconnect_min_ms = cfg->store_reconnect_min_ms,
            .reconnect_max_ms = cfg->store_reconnect_max_ms,
        };
        addr_format(sa, store_addr, sizeof(store_addr));
        s->store = app_store_new(loop, host, addr_port(sa), &o);
    }
    log_notice("app", "listening", "addr=%s name=%s store=%s", s->addr, s->name, store_addr);
    *out = s;
    return 0;
}
