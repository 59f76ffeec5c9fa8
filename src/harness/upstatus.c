/* SPDX-License-Identifier: MIT */
/* harness/upstatus.c -- the topology report of `tandem status` (see upstatus.h). A db node's
 * health is "up" when it answers INFO, whatever the balancer thinks of it (a replica is up but
 * takes no store traffic); an app's health is the balancer's view of it. Traffic share is each
 * server's part of the requests its pool sent to servers since the balancer started. */
#include "harness/upstatus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "harness/probe.h"

static const char *str(const cJSON *o, const char *k, const char *def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : def;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

static unsigned port_of(const char *addr)
{
    const char *c = strrchr(addr, ':');
    if (c == NULL)
        return 0;
    char *end;
    unsigned long p = strtoul(c + 1, &end, 10);
    return (*end || p > 65535) ? 0 : (unsigned)p;
}

/* Name of the server of pool whose address has port, or "?" */
static const char *name_by_port(const cJSON *servers, unsigned port)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, servers)
    {
        if (port_of(str(s, "addr", "")) == port)
            return str(s, "name", "?");
    }
    return "?";
}

static void db_pool(const cJSON *pool, struct buf *out)
{
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(pool, "servers");
    buf_printf(out, "  %-8s %-17s %-7s %-8s %-5s %-7s %-10s %s\n", "node", "address", "health",
               "role", "term", "lsn", "lag", "replication");
    const cJSON *s;
    cJSON_ArrayForEach(s, servers)
    {
        const char *name = str(s, "name", "?"), *addr = str(s, "addr", "?");
        struct buf info;
        buf_init(&info);
        const char *argv[] = {"INFO", "replication"};
        if (probe_resp(port_of(addr), 2, argv, 300, &info) != 0 || info.len == 0 ||
            info.p[0] == '-') {
            buf_printf(out, "  %-8s %-17s %-7s %-8s %-5s %-7s %-10s %s\n", name, addr, "down", "-",
                       "-", "-", "-", "(no answer)");
            buf_free(&info);
            continue;
        }
        buf_append(&info, "", 1);
        char role[16] = "", term[24] = "-", sync[32] = "", link[16] = "";
        probe_info_get(info.p, "role", role, sizeof(role));
        probe_info_get(info.p, "tandem_term", term, sizeof(term));
        bool primary = strcmp(role, "master") == 0;
        bool writable = probe_info_u64(info.p, "tandem_writable", 0) == 1;
        char lsn[24], lag[32], repl[160];
        if (primary) {
            snprintf(lsn, sizeof(lsn), "%llu",
                     (unsigned long long)probe_info_u64(info.p, "master_repl_offset", 0));
            snprintf(lag, sizeof(lag), "-");
            probe_info_get(info.p, "tandem_sync_state", sync, sizeof(sync));
            snprintf(repl, sizeof(repl), "%llu replica(s) connected, sync %s%s",
                     (unsigned long long)probe_info_u64(info.p, "connected_slaves", 0),
                     sync[0] ? sync : "off", writable ? "" : ", NOT writable (no lease)");
        } else {
            snprintf(lsn, sizeof(lsn), "%llu",
                     (unsigned long long)probe_info_u64(info.p, "slave_repl_offset", 0));
            uint64_t l = probe_info_u64(info.p, "tandem_lag_records", UINT64_MAX);
            if (l == UINT64_MAX)
                snprintf(lag, sizeof(lag), "?");
            else
                snprintf(lag, sizeof(lag), "%llu rec", (unsigned long long)l);
            probe_info_get(info.p, "master_link_status", link, sizeof(link));
            unsigned mp = (unsigned)probe_info_u64(info.p, "master_port", 0);
            if (mp)
                snprintf(repl, sizeof(repl), "follows %s, link %s", name_by_port(servers, mp),
                         link[0] ? link : "?");
            else
                snprintf(repl, sizeof(repl), "follows nobody yet");
        }
        buf_printf(out, "  %-8s %-17s %-7s %-8s %-5s %-7s %-10s %s\n", name, addr, "up",
                   primary ? "primary" : "replica", term, lsn, lag, repl);
        buf_free(&info);
    }
}

static void app_pool(const cJSON *pool, struct buf *out)
{
    const cJSON *servers = cJSON_GetObjectItemCaseSensitive(pool, "servers");
    double total = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, servers) total += num(s, "requests");
    buf_printf(out, "  %-8s %-17s %-7s %-9s %-7s %s\n", "server", "address", "health", "requests",
               "share", "last change");
    cJSON_ArrayForEach(s, servers)
    {
        double r = num(s, "requests");
        char share[16];
        snprintf(share, sizeof(share), "%.1f%%", total > 0 ? 100.0 * r / total : 0.0);
        buf_printf(out, "  %-8s %-17s %-7s %-9.0f %-7s %s\n", str(s, "name", "?"),
                   str(s, "addr", "?"), str(s, "state", "?"), r, share,
                   str(s, "last_change_reason", ""));
    }
}

int upstatus_report(unsigned admin_port, struct buf *out, char *err, size_t errlen)
{
    struct buf body;
    buf_init(&body);
    int rc = probe_http_get(admin_port, "/status", 1000, &body);
    if (rc != 0) {
        snprintf(err, errlen, "no answer from the admin endpoint http://127.0.0.1:%u/status (%s)",
                 admin_port, strerror(-rc));
        buf_free(&body);
        return rc;
    }
    cJSON *js = cJSON_ParseWithLength(body.p, body.len);
    buf_free(&body);
    const cJSON *pools = cJSON_GetObjectItemCaseSensitive(js, "pools");
    if (!cJSON_IsArray(pools)) {
        snprintf(err, errlen, "http://127.0.0.1:%u/status: not a balancer's status", admin_port);
        cJSON_Delete(js);
        return -EPROTO;
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, pools)
    {
        const char *check = str(p, "check", "");
        bool db = strcmp(check, "resp-role") == 0;
        buf_printf(out, "\npool %s  %s  %s %s, %s", str(p, "name", "?"), str(p, "listen", "?"),
                   str(p, "protocol", "?"), str(p, "mode", "?"),
                   db ? "to the node whose ROLE is master" : check);
        const char *active = str(p, "active", NULL);
        if (active)
            buf_printf(out, "; active: %s", active);
        buf_printf(out, "; %.0f requests\n", num(p, "requests"));
        if (db)
            db_pool(p, out);
        else
            app_pool(p, out);
    }
    cJSON_Delete(js);
    return 0;
}
