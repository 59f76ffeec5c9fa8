/* SPDX-License-Identifier: MIT */
/* harness/up_config.c -- `tandem up`'s topology: config file, defaults, ports, provisioning
 * rule. Every listening address is on 127.0.0.1 (up is a one-machine tool): a `listen` value is
 * "PORT" or "127.0.0.1:PORT", and port 0 means "pick a free one". */
#include "harness/up_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/parse.h"

#define F(x) offsetof(struct up_config, x)
const struct cfg_entry up_config_table[] = {
    {"dir", CFG_STRING, F(dir), 0, 0, NULL, NULL,
     "logs and data (default: a new /tmp/tandem-up-XXXXXX)", 0},
    {"cluster", CFG_STRING, F(cluster), 0, 0, "tandem", NULL, "cluster name at the arbiter", 0},
    {"lease-ttl", CFG_DURATION, F(lease_ttl_ms), 200, 3600000, "1s", NULL,
     "db leader lease: a dead primary is replaced about this long after it died", 0},
    {"sync-replicas", CFG_UINT, F(sync_replicas), 0, 64, "1", NULL,
     "db: acknowledge a write once this many replicas hold it", 0},
    {"min-replicas", CFG_UINT, F(min_replicas), 0, 15, "1", NULL,
     "db: below this many healthy replicas the primary asks up for a new node", 0},
    {"provision-after", CFG_DURATION, F(provision_after_ms), 0, 3600000, "1s", NULL,
     "db: ... once they stayed below for this long", 0},
    {"max-db", CFG_UINT, F(max_db), 1, UP_MAX_DB, "6", NULL,
     "never run more db nodes than this (provisioned ones included)", 0},
    {"inter", CFG_DURATION, F(inter_ms), 10, 60000, "100ms", NULL,
     "lb health check interval (both pools)", 0},
    {"check-timeout", CFG_DURATION, F(check_timeout_ms), 10, 60000, "500ms", NULL,
     "lb: one health check (a busy node, e.g. one sending a snapshot, answers ROLE late)", 0},
    {"fall", CFG_UINT, F(fall), 1, 100, "2", NULL, "lb: failed checks to mark a server down", 0},
    {"rise", CFG_UINT, F(rise), 1, 100, "2", NULL, "lb: good checks to mark a server up", 0},
    {"fsync", CFG_STRING, F(fsync), 0, 0, "everysec", NULL, "db --fsync (always|everysec|no)", 0},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef F

static void set_node(struct up_node *n, const char *name)
{
    snprintf(n->name, sizeof(n->name), "%s", name);
    n->port = 0;
}

int up_config_default(struct up_config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    int rc = cfg_defaults(up_config_table, c, err, errlen);
    if (rc != 0)
        return rc;
    set_node(&c->arbiter, "arbiter");
    set_node(&c->web, "web");
    set_node(&c->store, "store");
    set_node(&c->admin, "admin");
    c->web_mode = UP_WEB_ACTIVE_ACTIVE;
    set_node(&c->db[0], "db1");
    set_node(&c->db[1], "db2");
    c->ndb = 2;
    set_node(&c->app[0], "A");
    set_node(&c->app[1], "B");
    c->napp = 2;
    return 0;
}

void up_config_free(struct up_config *c)
{
    cfg_free(up_config_table, c);
}

/* "PORT" or "127.0.0.1:PORT" (also "localhost:PORT", ":PORT"). */
static int parse_listen(const char *v, unsigned *port, char *err, size_t errlen)
{
    const char *p = v;
    const char *colon = strrchr(v, ':');
    if (colon) {
        size_t hl = (size_t)(colon - v);
        if (!(hl == 0 || (hl == 9 && strncmp(v, "127.0.0.1", 9) == 0) ||
              (hl == 9 && strncmp(v, "localhost", 9) == 0))) {
            snprintf(err, errlen, "listen '%s': tandem up runs on 127.0.0.1 only", v);
            return -EINVAL;
        }
        p = colon + 1;
    }
    uint64_t n;
    if (parse_uint(p, 0, 65535, &n) != 0) {
        snprintf(err, errlen, "listen '%s': expected PORT or 127.0.0.1:PORT (0: a free port)", v);
        return -EINVAL;
    }
    *port = (unsigned)n;
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= UP_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

/* Finds or creates the node NAME in arr (the first named section of a kind replaces the
 * defaults). */
static struct up_node *named_node(struct up_node *arr, size_t *n, size_t max, bool *from_file,
                                  const char *kind, const char *name, char *err, size_t errlen)
{
    if (!valid_name(name)) {
        snprintf(err, errlen, "[%s %s]: a name is 1-%d of [A-Za-z0-9._-]", kind, name,
                 UP_NAME_MAX - 1);
        return NULL;
    }
    if (!*from_file) {
        *from_file = true;
        *n = 0;
    }
    for (size_t i = 0; i < *n; i++)
        if (strcmp(arr[i].name, name) == 0)
            return &arr[i];
    if (*n >= max) {
        snprintf(err, errlen, "too many %s nodes (max %zu)", kind, max);
        return NULL;
    }
    struct up_node *nd = &arr[(*n)++];
    set_node(nd, name);
    return nd;
}

int up_config_line(struct up_config *c, const char *section, const char *key, const char *value,
                   char *err, size_t errlen)
{
    if (section[0] == '\0' || strcmp(section, "up") == 0) {
        const struct cfg_entry *e = cfg_find(up_config_table, key);
        if (e == NULL) {
            snprintf(err, errlen, "unknown key '%s' in [up]", key);
            return -EINVAL;
        }
        return cfg_set(e, c, value, err, errlen);
    }
    struct up_node *nd = NULL;
    if (strcmp(section, "arbiter") == 0) {
        nd = &c->arbiter;
    } else if (strcmp(section, "store") == 0) {
        nd = &c->store;
    } else if (strcmp(section, "admin") == 0) {
        nd = &c->admin;
    } else if (strcmp(section, "web") == 0) {
        nd = &c->web;
        if (strcmp(key, "mode") == 0) {
            if (strcmp(value, "active-active") == 0) {
                c->web_mode = UP_WEB_ACTIVE_ACTIVE;
            } else if (strcmp(value, "active-passive") == 0) {
                c->web_mode = UP_WEB_ACTIVE_PASSIVE;
            } else {
                snprintf(err, errlen, "[web] mode '%s': active-active or active-passive", value);
                return -EINVAL;
            }
            return 0;
        }
    } else if (strncmp(section, "db ", 3) == 0) {
        nd =
            named_node(c->db, &c->ndb, UP_MAX_DB, &c->db_from_file, "db", section + 3, err, errlen);
    } else if (strncmp(section, "app ", 4) == 0) {
        nd = named_node(c->app, &c->napp, UP_MAX_APP, &c->app_from_file, "app", section + 4, err,
                        errlen);
    } else {
        snprintf(err, errlen,
                 "unknown section [%s] (expected [up], [arbiter], [db NAME], [app NAME], [web], "
                 "[store], [admin])",
                 section);
        return -EINVAL;
    }
    if (nd == NULL)
        return -EINVAL;
    if (strcmp(key, "listen") != 0) {
        snprintf(err, errlen, "unknown key '%s' in [%s] (known: listen%s)", key, section,
                 strcmp(section, "web") == 0 ? ", mode" : "");
        return -EINVAL;
    }
    return parse_listen(value, &nd->port, err, errlen);
}

static int on_line(void *ud, const char *section, const char *key, const char *value, char *err,
                   size_t errlen)
{
    return up_config_line(ud, section, key, value, err, errlen);
}

int up_config_load(struct up_config *c, const char *path, char *err, size_t errlen)
{
    return cfg_parse_file(path, on_line, c, err, errlen);
}

/* Every node of c, in a fixed order; returns how many were written to out (at most max). */
static size_t all_nodes(struct up_config *c, struct up_node **out, size_t max)
{
    size_t n = 0;
    struct up_node *fixed[] = {&c->arbiter, &c->store, &c->web, &c->admin};
    for (size_t i = 0; i < 4 && n < max; i++)
        out[n++] = fixed[i];
    for (size_t i = 0; i < c->ndb && n < max; i++)
        out[n++] = &c->db[i];
    for (size_t i = 0; i < c->napp && n < max; i++)
        out[n++] = &c->app[i];
    return n;
}

#define MAX_NODES (4 + UP_MAX_DB + UP_MAX_APP)

int up_config_validate(const struct up_config *cc, char *err, size_t errlen)
{
    struct up_config *c = (struct up_config *)cc; /* all_nodes only reads through it here */
    if (c->ndb == 0 || c->napp == 0) {
        snprintf(err, errlen, "need at least one [db NAME] and one [app NAME]");
        return -EINVAL;
    }
    if (c->sync_replicas >= c->ndb && c->sync_replicas > 0) {
        snprintf(err, errlen, "sync-replicas %llu needs at least %llu db nodes (have %zu)",
                 (unsigned long long)c->sync_replicas, (unsigned long long)c->sync_replicas + 1,
                 c->ndb);
        return -EINVAL;
    }
    if (c->max_db < c->ndb) {
        snprintf(err, errlen, "max-db %llu is below the %zu db nodes configured",
                 (unsigned long long)c->max_db, c->ndb);
        return -EINVAL;
    }
    if (c->fsync == NULL || (strcmp(c->fsync, "always") != 0 && strcmp(c->fsync, "everysec") != 0 &&
                             strcmp(c->fsync, "no") != 0)) {
        snprintf(err, errlen, "fsync '%s': always, everysec or no", c->fsync ? c->fsync : "");
        return -EINVAL;
    }
    struct up_node *n[MAX_NODES];
    size_t nn = all_nodes(c, n, MAX_NODES);
    for (size_t i = 4; i < nn; i++)
        for (size_t j = i + 1; j < nn; j++)
            if (strcmp(n[i]->name, n[j]->name) == 0) {
                snprintf(err, errlen, "two nodes are named '%s'", n[i]->name);
                return -EINVAL;
            }
    for (size_t i = 0; i < nn; i++)
        for (size_t j = i + 1; j < nn; j++)
            if (n[i]->port != 0 && n[i]->port == n[j]->port) {
                snprintf(err, errlen, "%s and %s both listen on port %u", n[i]->name, n[j]->name,
                         n[i]->port);
                return -EINVAL;
            }
    return 0;
}

bool up_config_port_used(const struct up_config *cc, unsigned port)
{
    struct up_config *c = (struct up_config *)cc;
    struct up_node *n[MAX_NODES];
    size_t nn = all_nodes(c, n, MAX_NODES);
    for (size_t i = 0; i < nn; i++)
        if (n[i]->port == port)
            return true;
    return false;
}

/* A port from pick that no node uses yet; 0 after 64 bad offers. */
static unsigned fresh_port(const struct up_config *c, up_port_fn pick, void *ud)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        unsigned p = pick(ud);
        if (p != 0 && p <= 65535 && !up_config_port_used(c, p))
            return p;
    }
    return 0;
}

int up_config_assign_ports(struct up_config *c, up_port_fn pick, void *ud, char *err, size_t errlen)
{
    struct up_node *n[MAX_NODES];
    size_t nn = all_nodes(c, n, MAX_NODES);
    for (size_t i = 0; i < nn; i++) {
        if (n[i]->port != 0)
            continue;
        unsigned p = fresh_port(c, pick, ud);
        if (p == 0) {
            snprintf(err, errlen, "no free loopback port for %s", n[i]->name);
            return -EADDRINUSE;
        }
        n[i]->port = p;
    }
    return 0;
}

int up_config_add_db(struct up_config *c, up_port_fn pick, void *ud)
{
    if (c->ndb >= UP_MAX_DB || c->ndb >= c->max_db)
        return -ENOSPC;
    char name[UP_NAME_MAX];
    for (unsigned k = 1;; k++) {
        snprintf(name, sizeof(name), "db%u", k);
        bool taken = false;
        for (size_t i = 0; i < c->ndb; i++)
            if (strcmp(c->db[i].name, name) == 0)
                taken = true;
        for (size_t i = 0; i < c->napp; i++)
            if (strcmp(c->app[i].name, name) == 0)
                taken = true;
        if (!taken)
            break;
    }
    unsigned p = fresh_port(c, pick, ud);
    if (p == 0)
        return -EADDRINUSE;
    struct up_node *nd = &c->db[c->ndb];
    set_node(nd, name);
    nd->port = p;
    return (int)c->ndb++;
}

unsigned up_provision_count(unsigned live, unsigned total, uint64_t min_replicas, uint64_t max_db)
{
    uint64_t want = 1 + min_replicas;
    if (live >= want || total >= max_db)
        return 0;
    uint64_t n = want - live;
    if (n > max_db - total)
        n = max_db - total;
    return (unsigned)n;
}
