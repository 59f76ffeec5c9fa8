/* SPDX-License-Identifier: MIT */
/* lb/lb_config.h -- the balancer's configuration: one cfg table for a pool's settings, shared
 * by command-line flags (a single pool) and config files ([pool NAME] sections). */
#ifndef TD_LB_LB_CONFIG_H
#define TD_LB_LB_CONFIG_H

#include <stddef.h>

#include "base/cfg.h"
#include "lb/lb.h"

extern const struct cfg_entry lb_pool_table[];

void lb_config_init(struct lb_config *c);
void lb_config_free(struct lb_config *c);
/* Adds a pool with default settings. Returns it, or NULL after writing why into err. */
struct lb_pool_def *lb_config_add_pool(struct lb_config *c, const char *name, char *err,
                                       size_t errlen);
/* Adds a server from "NAME=ADDR" or "NAME ADDR". Returns 0 or -EINVAL with a reason. */
int lb_config_add_server(struct lb_pool_def *p, const char *spec, char *err, size_t errlen);
/* Reads a config file:
 *   [lb]            admin = ADDR
 *   [pool NAME]     any key of lb_pool_table, and repeatable  server = NAME=ADDR
 * Returns 0 or an error with "PATH:LINE: reason". */
int lb_config_load_file(struct lb_config *c, const char *path, char *err, size_t errlen);
/* Cross-field checks: servers present and uniquely named, check spec valid, listeners unique. */
int lb_config_validate(const struct lb_config *c, char *err, size_t errlen);
/* Parses a check spec: "tcp", "http:/PATH", "resp-role", "none". *path is owned by the
 * caller (NULL unless http). Returns 0 or -EINVAL. */
int lb_config_parse_check(const char *s, enum lb_check_kind *kind, char **path);

#endif
