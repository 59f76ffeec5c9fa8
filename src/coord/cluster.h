/* SPDX-License-Identifier: MIT */
/* coord/cluster.h -- the cluster as the coordinator records it: the text of every value the HA
 * agent writes under "/tandem/<cluster>/", and a parsed view of one READ of that prefix.
 *
 *   leader            name=db1 term=7 addr=127.0.0.1:7001        (on the leader's lease)
 *   term              term=7                                     (highest term ever granted)
 *   sync              leader=db1 term=7 members=db2              (recorded in-sync set)
 *   failsafe          leader=db1 term=7 members=db1,db2,db3      (who must confirm in failsafe)
 *   members/<name>    role=replica term=7 lsn=42 lterm=7 healthy=1 prio=100 addr=... leader=db1
 *
 * Values are space-separated key=value tokens, so fields can be added later. The coordinator is
 * another process: parsing is defensive (fuzzed) and an unreadable value errs on the safe side
 * (a leader key that exists but cannot be read still blocks elections; an unreadable sync or
 * failsafe set makes nobody eligible). Pure: no I/O, no allocation. */
#ifndef TD_COORD_CLUSTER_H
#define TD_COORD_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coord/dcs.h"

#define CLUSTER_NAME_MAX 64    /* node names and addresses, including the NUL */
#define CLUSTER_MAX_MEMBERS 16 /* nodes per cluster */
#define CLUSTER_VALUE_MAX (CLUSTER_MAX_MEMBERS * CLUSTER_NAME_MAX + 96)

/* A small set of node names; insertion order is kept. */
struct cluster_names {
    size_t n;
    char v[CLUSTER_MAX_MEMBERS][CLUSTER_NAME_MAX];
};

/* One published member (members/<name>). */
struct cluster_member {
    char name[CLUSTER_NAME_MAX];
    char addr[CLUSTER_NAME_MAX];
    uint64_t lsn, last_term;
    uint32_t priority;
    bool healthy;
};

/* A recorded set (sync or failsafe). rev 0: the key is absent. Present but unreadable: leader is
 * "" and members is empty. */
struct cluster_set {
    uint64_t rev;
    char leader[CLUSTER_NAME_MAX];
    uint64_t term;
    struct cluster_names members;
};

/* One READ of the cluster prefix. */
struct cluster_view {
    uint64_t rev;
    uint64_t leader_rev; /* 0: no leader key */
    uint64_t leader_lease, leader_term;
    char leader[CLUSTER_NAME_MAX]; /* "" when the key exists but is unreadable */
    char leader_addr[CLUSTER_NAME_MAX];
    uint64_t term, term_rev;
    struct cluster_set sync, failsafe;
    size_t nmembers;
    struct cluster_member members[CLUSTER_MAX_MEMBERS];
};

/* True for 1..63 bytes of [A-Za-z0-9_.:-] (names, cluster names, host:port addresses). */
bool cluster_name_valid(const char *s, size_t len);

/* Parses a READ result of prefix (e.g. "/tandem/c1/") into v, which it overwrites. Keys outside
 * the prefix, unknown keys, unreadable member values and members beyond CLUSTER_MAX_MEMBERS are
 * skipped. res is borrowed for the call. */
void cluster_parse(struct cluster_view *v, const char *prefix, const struct dcs_result *res);
/* The member named name in v, or NULL. */
const struct cluster_member *cluster_member_find(const struct cluster_view *v, const char *name);

/* Value texts, written NUL-terminated into out (cap >= CLUSTER_VALUE_MAX always suffices). */
void cluster_leader_value(char *out, size_t cap, const char *name, uint64_t term, const char *addr);
void cluster_term_value(char *out, size_t cap, uint64_t term);
void cluster_set_value(char *out, size_t cap, const char *leader, uint64_t term,
                       const struct cluster_names *members);
void cluster_member_value(char *out, size_t cap, const struct cluster_member *m, const char *role,
                          uint64_t term, const char *leader);

/* Set operations on names. add is a no-op when present or full; same ignores order. */
bool cluster_names_has(const struct cluster_names *s, const char *name);
void cluster_names_add(struct cluster_names *s, const char *name);
void cluster_names_del(struct cluster_names *s, const char *name);
void cluster_names_union(struct cluster_names *dst, const struct cluster_names *src);
bool cluster_names_same(const struct cluster_names *a, const struct cluster_names *b);
/* "a,b,c" into out (cap >= CLUSTER_VALUE_MAX suffices). */
void cluster_names_join(const struct cluster_names *s, char *out, size_t cap);

#endif
