/* SPDX-License-Identifier: MIT */
/* libFuzzer target: what a coordinator READ returns, as the HA agent parses and acts on it. The
 * input is lines "key<TAB>value"; line i gets revision i+1 and lease i%3. The view must hold only
 * valid names; an agent fed the same READ (as a replica and after a lease grant) must not crash,
 * assert, or claim write permission it never got. */
#include <stdint.h>
#include <string.h>

#include "base/err.h"
#include "coord/agent.h"
#include "coord/cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXKV 48

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dcs_kv kvs[MAXKV];
    size_t n = 0, off = 0;
    const char *p = (const char *)data;
    while (off < size && n < MAXKV) {
        const char *nl = memchr(p + off, '\n', size - off);
        size_t end = nl ? (size_t)(nl - p) : size;
        const char *tab = memchr(p + off, '\t', end - off);
        size_t kend = tab ? (size_t)(tab - p) : end;
        kvs[n].key = slice_of(p + off, kend - off);
        kvs[n].value = tab ? slice_of(tab + 1, end - kend - 1) : slice_of("", 0);
        kvs[n].rev = n + 1;
        kvs[n].lease = n % 3;
        n++;
        off = end + 1;
    }
    struct dcs_result res = {.op = DCS_OP_READ, .rev = n + 1, .kvs = kvs, .nkvs = n};
    static struct cluster_view v;
    cluster_parse(&v, "/tandem/c1/", &res);
    TD_ASSERT(v.leader[0] == '\0' || cluster_name_valid(v.leader, strlen(v.leader)));
    TD_ASSERT(v.nmembers <= CLUSTER_MAX_MEMBERS);
    for (size_t i = 0; i < v.nmembers; i++)
        TD_ASSERT(cluster_name_valid(v.members[i].name, strlen(v.members[i].name)));
    TD_ASSERT(v.sync.members.n <= CLUSTER_MAX_MEMBERS);

    struct agent_config c;
    char err[128];
    agent_config_defaults(&c);
    c.cluster = "c1";
    c.name = "db1";
    c.addr = "127.0.0.1:7001";
    c.sync_replicas = 1;
    struct agent *a = agent_new(&c, 0, err, sizeof(err));
    TD_ASSERT(a != NULL);
    agent_tick(a, 0);
    size_t nact;
    const struct agent_action *x = agent_actions(a, &nact);
    uint64_t grant = x[0].u.dcs.id, read = x[1].u.dcs.id;
    struct dcs_result g = {.id = grant, .op = DCS_OP_GRANT, .lease = 1, .ttl_ms = 2000};
    agent_on_dcs_result(a, 1, &g);
    struct agent_store_obs obs = {.last_lsn = 5, .last_term = 1, .healthy = true};
    agent_observe_store(a, 2, &obs);
    res.id = read;
    agent_on_dcs_result(a, 3000, &res); /* past the startup grace: it may try to run */
    agent_tick(a, 3001);
    TD_ASSERT(!agent_may_accept_writes(a, 3001));
    agent_free(a);
    return 0;
}
