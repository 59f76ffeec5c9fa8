/* SPDX-License-Identifier: MIT */
/* store/snapshot.h -- snapshot files: a point-in-time dump of a keyspace at some lsn, written
 * and read item by item through callbacks, so this module knows nothing about the keyspace.
 *
 * File layout (integers little-endian):
 *   header, 32 bytes: magic "TDSNAP01", u64 lsn, u64 term, u32 flags (0), u32 CRC-32C of
 *   bytes 0..27;
 *   then frames: u32 body_len, u32 CRC-32C(body), body. An item body is
 *     u8 type (1..255, caller-defined), u64 expire_ms (absolute wall-clock ms, 0 = none),
 *     u32 key_len, key, u32 nvals, nvals x (u32 len, bytes);
 *   the last frame is the end marker: body = u8 0, u64 item count. Nothing may follow it.
 * Every frame is verified before it is handed to the caller; a snapshot without its end marker
 * is incomplete and fails to load. */
#ifndef TD_STORE_SNAPSHOT_H
#define TD_STORE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/buf.h"

#define SNAPSHOT_HEADER_SIZE 32
/* Conventional item types for tandem's store (the module itself accepts any 1..255). */
#define SNAPSHOT_TYPE_STRING 1 /* one value */
#define SNAPSHOT_TYPE_HASH 2   /* field, value, field, value, ... */
#define SNAPSHOT_TYPE_ARGV 3   /* one resolved command (values = argv) to replay; key unused */
#define SNAPSHOT_TYPE_HINT 4   /* loader hint, no data: key "keys", one value: the key count */

/* One item handed to a load callback; all slices borrow the loader's buffer and are valid
 * only during the call. */
struct snapshot_item {
    uint8_t type;
    uint64_t expire_ms;
    struct slice key;
    size_t nvals;
    const struct slice *vals;
};

struct snapshot_info {
    uint64_t lsn;
    uint64_t term;
    uint64_t items;
    uint64_t bytes;
};

struct snapshot_writer;

/* Creates (truncating) the file at path and writes the header. Returns 0 and an owned writer
 * in *out, or a negated errno. The file is durable only after snapshot_writer_finish. */
int snapshot_writer_open(const char *path, uint64_t lsn, uint64_t term,
                         struct snapshot_writer **out);
/* Adds one item with nvals values (vals may be NULL when nvals is 0). type must be 1..255.
 * Returns 0 or the first error the writer met (errors are sticky). */
int snapshot_put(struct snapshot_writer *w, uint8_t type, uint64_t expire_ms, struct slice key,
                 size_t nvals, const struct slice *vals);
/* Streaming form of snapshot_put for large items: begin, then exactly nvals calls of
 * snapshot_item_val. The item is buffered in memory until the next begin/put/finish. */
int snapshot_item_begin(struct snapshot_writer *w, uint8_t type, uint64_t expire_ms,
                        struct slice key, size_t nvals);
int snapshot_item_val(struct snapshot_writer *w, struct slice v);
/* Writes the end marker, fsyncs and closes the file, frees w. Returns 0 when the snapshot is
 * complete and durable, else the first error (the file is then left for the caller to
 * remove). */
int snapshot_writer_finish(struct snapshot_writer *w, struct snapshot_info *info);
/* Closes and frees w without completing the file. NULL is a no-op. */
void snapshot_writer_abort(struct snapshot_writer *w);

/* Load callback: return 0 to continue, non-zero to stop (that value is returned by
 * snapshot_load). */
typedef int (*snapshot_load_fn)(void *ud, const struct snapshot_item *it);

/* Reads the snapshot at path, handing each verified item to fn (may be NULL to only verify).
 * Returns 0 with *info filled (may be NULL), TD_ECORRUPT for a damaged or incomplete file, a
 * negated errno for I/O errors, or fn's non-zero value. On TD_ECORRUPT, err (may be NULL)
 * receives a description with the byte offset. */
int snapshot_load(const char *path, snapshot_load_fn fn, void *ud, struct snapshot_info *info,
                  char *err, size_t errlen);
/* Reads and checks only the header of path: lsn and term into *info (items/bytes zero). */
int snapshot_read_header(const char *path, struct snapshot_info *info);

/* Pure frame parser (used by snapshot_load and the fuzzer). Parses the frame at p[0..n).
 * Returns the frame size (> 0) and fills *it (vals stored in *vals, grown with xrealloc,
 * capacity *cap) or sets *end_count for the end marker (*is_end true); TD_EINCOMPLETE when more
 * bytes are needed; TD_ECORRUPT. */
ssize_t snapshot_parse_frame(const char *p, size_t n, struct snapshot_item *it, struct slice **vals,
                             size_t *cap, bool *is_end, uint64_t *end_count);
/* Parses a header (SNAPSHOT_HEADER_SIZE bytes at p): 0 or TD_ECORRUPT. */
int snapshot_parse_header(const char *p, size_t n, struct snapshot_info *info);

#endif
