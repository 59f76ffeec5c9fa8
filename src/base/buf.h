/* SPDX-License-Identifier: MIT */
/* base/buf.h -- byte slices passed by value and growable buffers mutated in place. */
#ifndef TD_BASE_BUF_H
#define TD_BASE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* A borrowed byte range; never owns its bytes. */
struct slice {
    const char *p;
    size_t len;
};

/* A growable buffer: p[0..len) holds data, cap is the allocation. p may be NULL when cap is 0. */
struct buf {
    char *p;
    size_t len;
    size_t cap;
};

#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})

static inline struct slice slice_of(const char *p, size_t len)
{
    return (struct slice){p, len};
}

static inline struct slice slice_cstr(const char *s)
{
    return (struct slice){s, strlen(s)};
}

/* True when a equals b byte for byte. */
bool slice_eq(struct slice a, struct slice b);
/* True when a equals b ignoring ASCII case. */
bool slice_eq_nocase(struct slice a, struct slice b);

void buf_init(struct buf *b);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);
/* Grows the allocation so n more bytes fit (use buf_reserve). Aborts on exhaustion. */
void buf_grow(struct buf *b, size_t n);

/* Ensures room for n more bytes; never fails. */
static inline void buf_reserve(struct buf *b, size_t n)
{
    if (b->cap - b->len < n)
        buf_grow(b, n);
}

/* Appends n bytes (inline: the proxy's hot path builds heads from many small pieces). */
static inline void buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->cap - b->len < n)
        buf_grow(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

#endif
