/* SPDX-License-Identifier: MIT */
/* app/app_store.h -- the app's one connection to the store (Redis protocol, hiredis async on
 * libuv), kept up in the background: reconnect with exponential backoff, a connect timeout,
 * and a stall check that drops a connection whose replies stopped coming, so a request never
 * waits on a dead store for longer than its own timeout. */
#ifndef TD_APP_APP_STORE_H
#define TD_APP_APP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

struct app_store;

struct app_store_opts {
    uint64_t connect_timeout_ms; /* a connect pending longer is abandoned */
    uint64_t stall_ms;           /* commands pending with no reply this long: drop and reconnect */
    uint64_t reconnect_min_ms;   /* first retry delay; doubles per failure */
    uint64_t reconnect_max_ms;   /* cap of the retry delay */
};

/* Called exactly once per accepted command, on the loop thread. reply is NULL when the command
 * failed without a reply (connection lost or dropped, store closed); it is borrowed for the
 * duration of the call. */
typedef void (*app_store_reply_fn)(void *ud, const redisReply *reply);
typedef void (*app_store_closed_fn)(void *ud);

/* The retry delay after `failures` consecutive failed attempts (0 for the first retry):
 * min_ms * 2^failures, capped at max_ms. */
uint64_t app_store_backoff_ms(unsigned failures, uint64_t min_ms, uint64_t max_ms);

/* Creates the client for host:port (host numeric) on loop and starts connecting. Returns owned;
 * release with app_store_close. */
struct app_store *app_store_new(uv_loop_t *loop, const char *host, int port,
                                const struct app_store_opts *opts);
/* True while a connection is established. */
bool app_store_is_connected(const struct app_store *s);
/* Names the connection commands are sent on now (a new value for every connection; 0 while
 * there is none). Connection state such as WATCH lives on one connection: a caller compares
 * this before and after to know its commands went to the same one. */
uint64_t app_store_connection_id(const struct app_store *s);
/* Sends one command (argv/lens borrowed for the call). Returns 0 and later calls fn once, or a
 * negative code (-ENOTCONN while no connection is up or being set up) and never calls fn. The
 * callback is never called synchronously from inside this function. */
int app_store_command(struct app_store *s, app_store_reply_fn fn, void *ud, int argc,
                      const char **argv, const size_t *lens);
/* Why the store is unavailable right now (static or owned by s; valid until the next loop
 * iteration); "" when connected. */
const char *app_store_status(const struct app_store *s);
/* Closes the connection (pending commands get their callback with NULL, synchronously, from
 * inside this call), stops retrying, and frees s once its handles are closed; then calls cb. */
void app_store_close(struct app_store *s, app_store_closed_fn cb, void *ud);

#endif
