/* SPDX-License-Identifier: MIT */
/* lb/lb_config.c -- pool settings table, config file and server specs. */
#include "lb/lb_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/parse.h"

static const char *const protocols[] = {"http", "tcp", NULL};
static const char *const modes[] = {"active-active", "active-passive", NULL};
static const char *const algos[] = {"leastconn", "roundrobin", NULL};
static const char *const failbacks[] = {"auto", "manual", NULL};

#define F(field) offsetof(struct lb_pool_cfg, field)
const struct cfg_entry lb_pool_table[] = {
    {"listen", CFG_ADDR, F(listen), 0, 0, "127.0.0.1:8080", NULL, "address clients connect to", 0},
    {"protocol", CFG_ENUM, F(protocol), 0, 0, "http", protocols, "what the pool carries", 0},
    {"mode", CFG_ENUM, F(mode), 0, 0, "active-active", modes,
     "all healthy servers serve, or one serves and the rest stand by", CFG_RELOAD},
    {"balance", CFG_ENUM, F(balance), 0, 0, "leastconn", algos,
     "active-active: fewest in flight (round-robin among ties) or plain round-robin", CFG_RELOAD},
    {"check", CFG_STRING, F(check), 0, 0, "tcp", NULL,
     "active health check: tcp | http:PATH (2xx) | resp-role (ROLE is master) | none",
     CFG_RELOAD},
    {"inter", CFG_DURATION, F(inter_ms), 10, 3600000, "1s", NULL, "interval between checks",
     CFG_RELOAD},
    {"fastinter", CFG_DURATION, F(fastinter_ms), 10, 3600000, "100ms", NULL,
     "check interval while a server's state is in doubt", CFG_RELOAD},
    {"fall", CFG_UINT, F(fall), 1, 100, "2", NULL, "failed checks in a row to mark a server down",
     CFG_RELOAD},
    {"rise", CFG_UINT, F(rise), 1, 100, "2", NULL, "good checks in a row to mark a server up",
     CFG_RELOAD},
    {"failback", CFG_ENUM, F(failback), 0, 0, "auto", failbacks,
     "active-passive: return to the preferred server when it recovers, or wait for the admin",
     CFG_RELOAD},
    {"timeout-connect", CFG_DURATION, F(timeout_connect_ms), 1, 600000, "1s", NULL,
     "connecting to a server", CFG_RELOAD},
    {"timeout-server", CFG_DURATION, F(timeout_server_ms), 1, 3600000, "30s", NULL,
     "waiting for a server's response (a hung server's requests are retried after this)",
     CFG_RELOAD},
    {"timeout-check", CFG_DURATION, F(timeout_check_ms), 0, 600000, "0", NULL,
     "one health check; 0 means the check interval", CFG_RELOAD},
    {"stall-timeout", CFG_DURATION, F(stall_timeout_ms), 0, 3600000, "0", NULL,
     "http: mark a server down when requests wait on it and it sends nothing for this long "
     "(0 = off; only for pools whose requests are all fast: catches a hung server sooner than "
     "timeout-server)",
     CFG_RELOAD},
    {"timeout-request", CFG_DURATION, F(timeout_request_ms), 1, 600000, "10s", NULL,
     "a client's whole request once it started (slow clients get 408)", CFG_RELOAD},
    {"timeout-client", CFG_DURATION, F(timeout_client_ms), 1, 3600000, "60s", NULL,
     "an idle client connection (keep-alive, or a TCP session with no traffic)", CFG_RELOAD},
    {"retries", CFG_UINT, F(retries), 0, 10, "2", NULL,
     "other servers to try when a request fails before any response byte", CFG_RELOAD},
    {"max-conns", CFG_UINT, F(max_conns), 1, 1000000, "10000", NULL,
     "client connections per pool; more are refused", CFG_RELOAD},
    {"max-head", CFG_SIZE, F(max_head_bytes), 1024, 1048576, "16kb", NULL,
     "request line and headers (larger gets 431)", CFG_RELOAD},
    {"max-body", CFG_SIZE, F(max_body_bytes), 0, UINT64_C(1) << 32, "8mb", NULL,
     "request body, buffered so a failed request can be retried (larger gets 413)", CFG_RELOAD},
    {"max-idle-backend", CFG_UINT, F(max_idle_backend), 0, 10000, "64", NULL,
     "idle keep-alive connections kept per server", CFG_RELOAD},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0},
};
#undef F

void lb_config_init(struct lb_config *c)
{
    memset(c, 0, sizeof(*c));
}

static void pool_def_free(struct lb_pool_def *p)
{
    for (size_t i = 0; i < p->nservers; i++)
        free(p->servers[i].name);
    cfg_free(lb_pool_table, &p->cfg);
    free(p->name);
    free(p);
}

void lb_config_free(struct lb_config *c)
{
    for (size_t i = 0; i < c->npools; i++)
        pool_def_free(c->pools[i]);
    c->npools = 0;
}

struct lb_pool_def *lb_config_add_pool(struct lb_config *c, const char *name, char *err,
                                       size_t errlen)
{
    if (c->npools >= sizeof(c->pools) / sizeof(c->pools[0])) {
        snprintf(err, errlen, "too many pools (max %zu)", sizeof(c->pools) / sizeof(c->pools[0]));
        return NULL;
    }
    for (size_t i = 0; i < c->npools; i++) {
        if (strcmp(c->pools[i]->name, name) == 0) {
            snprintf(err, errlen, "pool '%s' defined twice", name);
            return NULL;
        }
    }
    struct lb_pool_def *p = xcalloc(1, sizeof(*p));
    p->name = xstrdup(name);
    if (cfg_defaults(lb_pool_table, &p->cfg, err, errlen) != 0) {
        pool_def_free(p);
        return NULL;
    }
    c->pools[c->npools++] = p;
    return p;
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

int lb_config_add_server(struct lb_pool_def *p, const char *spec, char *err, size_t errlen)
{
    const char *sep = strchr(spec, '=');
    if (sep == NULL)
        sep = strchr(spec, ' ');
    if (sep == NULL) {
        snprintf(err, errlen, "server '%s': expected NAME=HOST:PORT", spec);
        return -EINVAL;
    }
    size_t nlen = (size_t)(sep - spec);
    if (!valid_name(spec, nlen)) {
        snprintf(err, errlen, "server '%s': name must be 1-64 of [A-Za-z0-9._-]", spec);
        return -EINVAL;
    }
    if (p->nservers >= BALANCE_MAX_SERVERS) {
        snprintf(err, errlen, "pool '%s': too many servers (max %d)", p->name, BALANCE_MAX_SERVERS);
        return -EINVAL;
    }
    const char *addr = sep + 1;
    while (*addr == ' ')
        addr++;
    struct lb_server_cfg *s = &p->servers[p->nservers];
    char why[256];
    if (parse_addr(addr, &s->addr, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "server '%.*s': %s", (int)nlen, spec, why);
        return -EINVAL;
    }
    s->name = xstrndup(spec, nlen);
    p->nservers++;
    return 0;
}

struct file_state {
    struct lb_config *c;
    struct lb_pool_def *cur;
    char cur_section[128];
};

static int on_line(void *ud, const char *section, const char *key, const char *value, char *err,
                   size_t errlen)
{
    struct file_state *st = ud;
    if (strcmp(section, "lb") == 0 || section[0] == '\0') {
        if (strcmp(key, "admin") == 0) {
            char why[256];
            if (parse_addr(value, &st->c->admin, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "admin: %s", why);
                return -EINVAL;
            }
            st->c->has_admin = true;
            return 0;
        }
        snprintf(err, errlen, "unknown key '%s' in [lb] (known: admin)", key);
        return -EINVAL;
    }
    if (strncmp(section, "pool ", 5) != 0) {
        snprintf(err, errlen, "unknown section [%s] (expected [lb] or [pool NAME])", section);
        return -EINVAL;
    }
    if (strcmp(st->cur_section, section) != 0) {
        const char *name = section + 5;
        if (!valid_name(name, strlen(name))) {
            snprintf(err, errlen, "pool name '%s' must be 1-64 of [A-Za-z0-9._-]", name);
            return -EINVAL;
        }
        st->cur = lb_config_add_pool(st->c, name, err, errlen);
        if (st->cur == NULL)
            return -EINVAL;
        snprintf(st->cur_section, sizeof(st->cur_section), "%s", section);
    }
    if (strcmp(key, "server") == 0)
        return lb_config_add_server(st->cur, value, err, errlen);
    const struct cfg_entry *e = cfg_find(lb_pool_table, key);
    if (e == NULL) {
        snprintf(err, errlen, "unknown key '%s' in [%s]", key, section);
        return -EINVAL;
    }
    return cfg_set(e, &st->cur->cfg, value, err, errlen);
}

int lb_config_load_file(struct lb_config *c, const char *path, char *err, size_t errlen)
{
    struct file_state st = {c, NULL, ""};
    return cfg_parse_file(path, on_line, &st, err, errlen);
}

int lb_config_parse_check(const char *s, enum lb_check_kind *kind, char **path)
{
    *path = NULL;
    if (s == NULL || strcmp(s, "tcp") == 0) {
        *kind = LB_CHECK_TCP;
        return 0;
    }
    if (strcmp(s, "resp-role") == 0) {
        *kind = LB_CHECK_RESP_ROLE;
        return 0;
    }
    if (strcmp(s, "none") == 0) {
        *kind = LB_CHECK_NONE;
        return 0;
    }
    if (strncmp(s, "http:", 5) == 0 && s[5] == '/') {
        for (const char *q = s + 5; *q; q++)
            if ((unsigned char)*q <= ' ' || *q == 0x7f)
                return -EINVAL;
        *kind = LB_CHECK_HTTP;
        *path = xstrdup(s + 5);
        return 0;
    }
    return -EINVAL;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

int lb_config_validate(const struct lb_config *c, char *err, size_t errlen)
{
    if (c->npools == 0) {
        snprintf(err, errlen, "no pool defined");
        return -EINVAL;
    }
    for (size_t i = 0; i < c->npools; i++) {
        const struct lb_pool_def *p = c->pools[i];
        if (p->nservers == 0) {
            snprintf(err, errlen, "pool '%s' has no server (add --server NAME=HOST:PORT)",
                     p->name);
            return -EINVAL;
        }
        enum lb_check_kind kind;
        char *path;
        if (lb_config_parse_check(p->cfg.check, &kind, &path) != 0) {
            snprintf(err, errlen,
                     "pool '%s': bad check '%s' (tcp | http:/PATH | resp-role | none)", p->name,
                     p->cfg.check ? p->cfg.check : "");
            return -EINVAL;
        }
        free(path);
        for (size_t a = 0; a < p->nservers; a++)
            for (size_t b = a + 1; b < p->nservers; b++)
                if (strcmp(p->servers[a].name, p->servers[b].name) == 0) {
                    snprintf(err, errlen, "pool '%s': server '%s' listed twice", p->name,
                             p->servers[a].name);
                    return -EINVAL;
                }
        for (size_t j = i + 1; j < c->npools; j++)
            if (same_addr(&p->cfg.listen, &c->pools[j]->cfg.listen)) {
                snprintf(err, errlen, "pools '%s' and '%s' listen on the same address", p->name,
                         c->pools[j]->name);
                return -EINVAL;
            }
    }
    return 0;
}
