/* SPDX-License-Identifier: MIT */
/* coord/dcs.h -- the coordinator interface ("distributed configuration store", Patroni's word).
 *
 * The HA agent (coord/agent.h) talks to a coordinator only through this small, asynchronous
 * interface. Two backends implement it: the built-in arbiter (`builtin://HOST:PORT`) and etcd v3
 * through its JSON gateway (`etcd://HOST:PORT[,...]`). The agent never calls a backend: it emits
 * `struct dcs_req` values as actions; the event-loop shell submits them with dcs_submit() and
 * feeds every `struct dcs_result` back to agent_on_dcs_result(). Nothing here blocks.
 *
 * Data model (a subset of etcd v3): a flat key space of byte strings; every write bumps one global
 * revision; a key's `rev` is the revision of the write that last set it (etcd's mod_revision), 0
 * when the key is absent. Keys may be attached to a lease; when the lease expires or is revoked,
 * its keys are deleted.
 *
 * What a backend must guarantee (the agent's safety argument rests on each point):
 *  1. Linearizable: each request takes effect atomically at one instant between its submission
 *     and its result; a transaction's compares and writes see no other request in between.
 *  2. Lease expiry is never early: a lease granted or kept alive at instant t expires no earlier
 *     than t + ttl, measured by the coordinator, including across a coordinator restart or leader
 *     change (the arbiter restores leases with a full TTL on restart, as etcd extends them on a
 *     leader change). Late expiry is allowed.
 *  3. Revisions never decrease, across restarts too.
 *  4. A transaction that writes a key attached to an unknown or expired lease fails as a whole
 *     with DCS_ENOLEASE; a keepalive of such a lease answers DCS_ENOLEASE (etcd's gateway answers
 *     200 without a TTL: the backend maps that to DCS_ENOLEASE).
 *  5. A result is delivered exactly once per accepted request, never from inside dcs_submit()
 *     (the shell is still iterating the agent's action list then). A transport failure or a
 *     timeout is reported as DCS_EUNAVAIL: the request may or may not have taken effect. The agent
 *     keeps its own deadline per request and ignores results that arrive after it, or twice.
 *  6. A READ returns every key under the prefix as of one revision, and that revision.
 *
 * Key layout the agent uses under "/tandem/<cluster>/": `leader` (leader name + term, attached to
 * the leader's lease), `term` (highest term ever granted, no lease), `sync` (the recorded in-sync
 * set), `failsafe` (members that must confirm a primary while the coordinator is unreachable),
 * `members/<name>` (published member state, attached to that member's lease). Values are short
 * ASCII `key=value` lists; backends store them opaquely. */
#ifndef TD_COORD_DCS_H
#define TD_COORD_DCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

enum dcs_op {
    DCS_OP_GRANT = 0, /* new lease of ttl_ms; result: lease, ttl_ms granted */
    DCS_OP_KEEPALIVE, /* refresh `lease`; result: ttl_ms remaining or DCS_ENOLEASE */
    DCS_OP_REVOKE,    /* drop `lease` and its keys at once */
    DCS_OP_READ,      /* every key under `prefix`; result: kvs, rev */
    DCS_OP_TXN,       /* if every cmp holds, apply every put; result: rev of the writes */
};

/* Result status. Not errno values: these are outcomes the agent reasons about. */
enum dcs_status {
    DCS_OK = 0,
    DCS_ECOMPARE = -1, /* TXN: a compare did not hold; nothing was written */
    DCS_ENOLEASE = -2, /* the lease is unknown or expired */
    DCS_EUNAVAIL = -3, /* not reached, timed out, or failed: outcome unknown */
};

/* Up to this many compares and this many writes per transaction (the agent needs 4 of each:
 * leader, term, sync, failsafe). */
#define DCS_TXN_MAX 4

/* A compare: the key's mod revision equals rev (rev 0: the key is absent). */
struct dcs_cmp {
    struct slice key;
    uint64_t rev;
};

/* A write: put value (attached to lease when lease != 0), or delete the key when del is set. */
struct dcs_put {
    struct slice key;
    struct slice value;
    uint64_t lease;
    bool del;
};

/* One request. Every slice is borrowed for the duration of dcs_submit() only: the backend copies
 * what it keeps. id is chosen by the agent and echoed in the result. */
struct dcs_req {
    uint64_t id;
    enum dcs_op op;
    uint64_t lease;      /* KEEPALIVE, REVOKE */
    uint64_t ttl_ms;     /* GRANT; backends round up to their granularity (etcd: seconds) */
    struct slice prefix; /* READ */
    size_t ncmp;
    size_t nput;
    struct dcs_cmp cmp[DCS_TXN_MAX];
    struct dcs_put put[DCS_TXN_MAX];
};

/* One key as read: lease is 0 when the key has none. */
struct dcs_kv {
    struct slice key;
    struct slice value;
    uint64_t rev;
    uint64_t lease;
};

/* A request's outcome. kvs and every slice are borrowed for the duration of the result callback;
 * the agent copies what it keeps. */
struct dcs_result {
    uint64_t id;
    enum dcs_op op;
    int status;               /* enum dcs_status */
    uint64_t rev;             /* READ: revision of the snapshot; TXN ok: revision of its writes */
    uint64_t lease;           /* GRANT: the new lease id (never 0) */
    uint64_t ttl_ms;          /* GRANT: TTL granted; KEEPALIVE: TTL remaining */
    const struct dcs_kv *kvs; /* READ only */
    size_t nkvs;
};

struct dcs;

/* Called once per submitted request, on the loop thread, never from inside dcs_submit(). */
typedef void (*dcs_result_cb)(struct dcs *d, const struct dcs_result *res);
/* Called when a watched key changed (a hint: the agent reads again; poll-only backends never
 * call it). */
typedef void (*dcs_changed_cb)(struct dcs *d);
/* Called once a backend has closed every handle; the shell frees it afterwards. */
typedef void (*dcs_close_cb)(struct dcs *d);

/* What a backend implements. */
struct dcs_ops {
    const char *scheme; /* "builtin", "etcd" */
    /* Starts req; 0 if accepted (on_result will follow exactly once), negative errno if not (no
     * callback then; the agent's deadline treats it as unreachable). */
    int (*submit)(struct dcs *d, const struct dcs_req *req);
    /* Optional (NULL: poll only): call on_changed whenever a key under prefix changes. */
    int (*watch)(struct dcs *d, struct slice prefix);
    /* Cancels outstanding requests (no more callbacks) and closes handles; done runs later. */
    void (*close)(struct dcs *d, dcs_close_cb done);
};

/* A backend instance. The backend embeds this struct as its first member (or uses
 * container_of); the shell sets on_result, on_changed and data before the first submit. */
struct dcs {
    const struct dcs_ops *ops;
    dcs_result_cb on_result;
    dcs_changed_cb on_changed;
    void *data;
};

/* Submits one request; see dcs_ops.submit. */
static inline int dcs_submit(struct dcs *d, const struct dcs_req *req)
{
    return d->ops->submit(d, req);
}

#endif
