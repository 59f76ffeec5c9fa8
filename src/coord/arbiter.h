/* SPDX-License-Identifier: MIT */
/* coord/arbiter.h -- `tandem arbiter`: the built-in coordinator (a witness) serving
 * coord/arbiter_core over RESP2 on a libuv loop, durable in one state file.
 *
 * Commands (readable with redis-cli; integers are decimal, TTLs in milliseconds):
 *   PING [msg]                 +PONG (or msg)
 *   AUTH [default] password    +OK, or -WRONGPASS (with --requirepass; before it only AUTH,
 *                              PING and QUIT are served: -NOAUTH)
 *   GRANT ttl_ms               *2 [:lease_id :ttl_ms]          new lease
 *   KEEPALIVE lease            :ttl_ms, or -NOLEASE ...        restarts the lease's TTL
 *   REVOKE lease               +OK, or -NOLEASE ...            deletes the lease's keys
 *   READ prefix                *2 [:rev *N [*4 [key value :mod_rev :lease]]]
 *   TXN ncmp (key rev)*ncmp nput (PUT key value lease | DEL key)*nput
 *                              *2 [:status :rev]; status 0 applied (rev of the writes), -1 a
 *                              compare failed (current rev), -2 a put names an unknown or expired
 *                              lease; nothing is written unless status is 0
 *   GET key                    value or nil (for humans)
 *   WATCH prefix               *3 [watching prefix :rev]; then the connection receives
 *                              *2 [changed :rev] whenever a key under prefix changes (pushes
 *                              coalesce: the newest revision); only PING and QUIT are served on
 *                              it afterwards
 *   INFO                       revision, keys, leases, clients, uptime
 *   QUIT                       +OK and close
 * TXN names each write's kind (PUT/DEL) instead of telling "key value lease" from "key DEL" by
 * arity: a value may well be the string "DEL".
 *
 * Durability: a command that changes state (GRANT, REVOKE, TXN, an expiry) has its reply held
 * until the whole state has been written to DIR/arbiter.state (write a temporary file, fsync,
 * rename, fsync the directory); so are all replies and pushes that follow in the same loop
 * iteration, from every client, so nobody observes a state that a crash could lose. KEEPALIVE is
 * not persisted: on start every lease gets a full TTL anyway. A state file that fails its CRC
 * refuses to start. A failed write stops the arbiter (fail-stop) without replying.
 *
 * Limits: malformed RESP or an argument, command or query buffer over the limits gets an error
 * reply and the connection is closed; other clients are unaffected. One arbiter per loop; loop
 * thread only. */
#ifndef TD_COORD_ARBITER_H
#define TD_COORD_ARBITER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

struct arbiter_config {
    struct sockaddr_storage listen;
    char *dir;          /* state directory (must exist) */
    char *requirepass;  /* NULL or "": no AUTH needed */
    char *log_level;    /* used by the command, not here */
    uint64_t max_clients;
};

struct arbiter;

/* Called once every handle has closed; the arbiter may then be freed. */
typedef void (*arbiter_closed_cb)(void *ud);
/* Called when the arbiter cannot go on (the state file could not be written); it has already
 * stopped serving. The callee should close it and exit non-zero. */
typedef void (*arbiter_fatal_cb)(void *ud);

/* Creates an arbiter for cfg (borrowed for its life). Does not touch the disk yet. */
struct arbiter *arbiter_new(uv_loop_t *loop, const struct arbiter_config *cfg);
/* Locks DIR, loads DIR/arbiter.state (a missing file is an empty state), binds and listens.
 * Returns 0, or a negative code (TD_ECORRUPT for a damaged state file) after writing the reason
 * into err; close the arbiter then as usual. */
int arbiter_start(struct arbiter *a, char *err, size_t errlen);
/* The bound TCP port (useful with port 0), or 0 before arbiter_start. */
int arbiter_port(const struct arbiter *a);
/* Sets the fatal-error callback (may be NULL: the arbiter then just stops serving). */
void arbiter_on_fatal(struct arbiter *a, arbiter_fatal_cb cb, void *ud);
/* Stops accepting, writes pending state, closes every client and handle; cb(ud) runs (later,
 * never inside this call) once all are closed. Later calls are ignored. */
void arbiter_close(struct arbiter *a, arbiter_closed_cb cb, void *ud);
/* Frees a closed arbiter (after the closed callback); NULL is a no-op. */
void arbiter_free(struct arbiter *a);

#endif
