/* SPDX-License-Identifier: MIT */
/* fuzz_db.h -- the small store configuration the fuzz targets that run a db share: limits low
 * enough that a fuzzer reaches them, nothing else set. */
#ifndef TANDEM_FUZZ_DB_H
#define TANDEM_FUZZ_DB_H

#include <string.h>

#include "store/db.h"

static inline void fuzz_db_config(struct db_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_bulk = 4096;
    cfg->max_multibulk = 64;
    cfg->query_buffer = 1 << 20;
    cfg->max_clients = 10;
}

#endif
