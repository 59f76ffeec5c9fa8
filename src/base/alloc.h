/* SPDX-License-Identifier: MIT */
/* base/alloc.h -- allocation that never returns NULL: on exhaustion the process stops
 * (fail-stop: in an HA pair the peer takes over). */
#ifndef TD_BASE_ALLOC_H
#define TD_BASE_ALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
