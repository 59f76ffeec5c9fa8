/* SPDX-License-Identifier: MIT */
/* harness/up_config.h -- the topology `tandem up` runs: what its config file says (or the
 * built-in default), the port assignment (fixed ports from the file, free ephemeral ones for
 * the rest) and the provisioning rule. Pure: no libuv, no sockets (the port source is a
 * callback), no logging; unit-tested in tests/unit/test_up_config.c. */
#ifndef TD_HARNESS_UP_CONFIG_H
#define TD_HARNESS_UP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cfg.h"

#define UP_MAX_DB 12 /* db nodes, provisioned ones included */
#define UP_MAX_APP 8
#define UP_NAME_MAX 32

/* One process of the topology with a listening port (0: pick a free one). */
struct up_node {
    char name[UP_NAME_MAX];
    unsigned port;
};

enum up_web_mode { UP_WEB_ACTIVE_ACTIVE = 0, UP_WEB_ACTIVE_PASSIVE };

struct up_config {
    /* [up] (the table up_config_table) */
    char *dir;                   /* logs and data; NULL: a new /tmp/tandem-up-XXXXXX */
    char *cluster;               /* cluster name at the arbiter */
    uint64_t lease_ttl_ms;       /* db --lease-ttl */
    uint64_t sync_replicas;      /* db --sync-replicas */
    uint64_t min_replicas;       /* db --min-replicas */
    uint64_t provision_after_ms; /* db --provision-after */
    uint64_t max_db;             /* never run more db nodes than this (provisioned included) */
    uint64_t inter_ms;           /* lb health check interval, both pools */
    uint64_t fall, rise;         /* lb thresholds */
    uint64_t check_timeout_ms;   /* lb timeout-check, both pools */
    char *fsync;                 /* db --fsync */
    /* sections */
    struct up_node arbiter, web, store, admin;
    int web_mode; /* enum up_web_mode */
    struct up_node db[UP_MAX_DB];
    size_t ndb;
    struct up_node app[UP_MAX_APP];
    size_t napp;
    bool db_from_file, app_from_file; /* the file named its own db/app nodes */
};

/* The [up] settings. */
extern const struct cfg_entry up_config_table[];

/* Fills c with the built-in default topology: an arbiter, db1 and db2, apps A and B, the web
 * pool active-active, the store pool, the admin endpoint, every port 0 (free ones). Returns 0
 * or -EINVAL (a bad table default: a bug) with the reason in err. Free with up_config_free. */
int up_config_default(struct up_config *c, char *err, size_t errlen);
/* Reads an up config file over the defaults already in c (see docs/up.md for the format): a
 * file that names [db X] or [app X] sections replaces the default nodes of that kind. Returns
 * 0, or a negative code with "PATH:LINE: reason" in err. */
int up_config_load(struct up_config *c, const char *path, char *err, size_t errlen);
/* Parses one "key = value" line of section (the part of cfg_parse_file that decides; exposed
 * for the tests). Returns 0, or -EINVAL with the reason in err. */
int up_config_line(struct up_config *c, const char *section, const char *key, const char *value,
                   char *err, size_t errlen);
/* Checks the whole: at least one db and one app node, unique names, unique fixed ports,
 * sync-replicas below the number of db nodes, max-db at least the number of db nodes.
 * Returns 0 or -EINVAL with the reason in err. */
int up_config_validate(const struct up_config *c, char *err, size_t errlen);
/* Frees the owned strings. */
void up_config_free(struct up_config *c);

/* Returns a free port the OS offered (0 when none). */
typedef unsigned (*up_port_fn)(void *ud);

/* Gives every node with port 0 a port from pick that no other node of c uses (fixed ports are
 * kept). Returns 0, or -EADDRINUSE when pick keeps offering ports already taken (or 0). */
int up_config_assign_ports(struct up_config *c, up_port_fn pick, void *ud, char *err,
                           size_t errlen);
/* True when port is used by a node of c. */
bool up_config_port_used(const struct up_config *c, unsigned port);
/* Appends a new db node (name "dbN", the first N not used yet, port from pick, unused by c).
 * Returns its index, or -ENOSPC at max-db / UP_MAX_DB, or -EADDRINUSE. */
int up_config_add_db(struct up_config *c, up_port_fn pick, void *ud);

/* The provisioning rule: a provision request arrived while `live` db processes run (started
 * and not exited, new ones included) and `total` were ever started. The cluster wants
 * 1 + min_replicas nodes; returns how many to start now: the shortfall, capped so that the
 * total stays within max_db. A request while enough nodes run starts nothing (the db agent
 * may ask again while a new node is still catching up). */
unsigned up_provision_count(unsigned live, unsigned total, uint64_t min_replicas, uint64_t max_db);

#endif
