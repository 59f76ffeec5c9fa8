/* SPDX-License-Identifier: MIT */
/* store/termhist.h -- the term boundaries of the part of a log that a snapshot folded in, kept
 * across compaction in DIR/term-history, so that a primary can still prove where a replica's
 * log meets its own when that point is older than its snapshot (docs/replication.md, "Full
 * resync with an audit").
 *
 * A history belongs to one snapshot (snap_lsn, snap_term) and knows the term of every lsn in
 * from_lsn..snap_lsn (from_lsn 0: every lsn, lsn 0 having term 0): it is the list of
 * (term, first lsn) pairs where a term starts, the first pair starting at from_lsn when
 * from_lsn > 0. Records after snap_lsn are in the log and answer for themselves.
 *
 * The file is a hint, never a source of truth: one that is missing, torn, corrupt, or written
 * for another snapshot is ignored and the history is "unknown below the snapshot" (only its
 * own term is known), which is what a data directory written before this file existed
 * means. An unknown history makes log matching answer "not proven", never a wrong proof. */
#ifndef TD_STORE_TERMHIST_H
#define TD_STORE_TERMHIST_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define TERMHIST_FILE "term-history"
/* At most this many pairs are kept; older ones are dropped (from_lsn moves up). */
#define TERMHIST_MAX 4096

/* Where a term starts (the first lsn carrying it, or from_lsn for the oldest pair). */
struct termhist_start {
    uint64_t term;
    uint64_t first_lsn;
};

struct termhist {
    uint64_t snap_lsn, snap_term; /* the snapshot this history belongs to */
    uint64_t from_lsn;            /* terms of lsns from_lsn..snap_lsn are known */
    size_t n;                     /* pairs, ascending by term and first_lsn */
    struct termhist_start *v;     /* owned */
};

/* Term of the log record at lsn, for lsns the caller's log holds. 0 or a negative code. */
typedef int (*termhist_term_at_fn)(void *ud, uint64_t lsn, uint64_t *term);

/* An empty history of an empty log (everything known: there is nothing). Never fails. */
void termhist_init(struct termhist *h);
void termhist_free(struct termhist *h);
/* Resets h to "only the snapshot's own term is known": from_lsn = snap_lsn (0 for no
 * snapshot, which knows everything). */
void termhist_reset_unknown(struct termhist *h, uint64_t snap_lsn, uint64_t snap_term);
/* The term of lsn into *term when from_lsn <= lsn <= snap_lsn; else -ENOENT. */
int termhist_term_at(const struct termhist *h, uint64_t lsn, uint64_t *term);
/* The oldest lsn whose term h knows. */
uint64_t termhist_known_lsn(const struct termhist *h);
/* Moves h forward to a new snapshot at snap_lsn (>= h->snap_lsn) of snap_term, adding the
 * term boundaries of lsns h->snap_lsn+1..snap_lsn read with term_at (which must answer for
 * them; terms never decrease). O(terms * log n) lookups. On failure (term_at's code, or
 * TD_ECORRUPT when the terms contradict h) h is reset to unknown at the new snapshot and the
 * code is returned. */
int termhist_advance(struct termhist *h, uint64_t snap_lsn, uint64_t snap_term,
                     termhist_term_at_fn term_at, void *ud);

/* Appends the file image of h: "TDTERMS1", u64 snap_lsn, snap_term, from_lsn, u32 n, n pairs
 * of u64 term, first_lsn, u32 CRC-32C of everything before it (little-endian). */
void termhist_encode(const struct termhist *h, struct buf *out);
/* Parses a file image into h (replacing its pairs). 0, or TD_ECORRUPT for anything that is
 * not exactly one valid image (torn, bad CRC, pairs out of order or out of range); h is then
 * untouched. */
int termhist_decode(const char *p, size_t n, struct termhist *h);

/* Writes h to DIR/term-history durably (a .tmp file, fsync, rename, fsync DIR). 0 or a
 * negative code (the old file may then remain: it names its own snapshot, so a reader of a
 * later snapshot ignores it). */
int termhist_save(const char *dir, const struct termhist *h);
/* Reads DIR/term-history for the snapshot (snap_lsn, snap_term) into h. Returns 0, -ENOENT
 * (no file), TD_ECORRUPT (torn or corrupt), -ESTALE (written for another snapshot) or an I/O
 * code; on any failure h is reset to unknown at that snapshot. */
int termhist_load(const char *dir, uint64_t snap_lsn, uint64_t snap_term, struct termhist *h);
/* Removes DIR/term-history (missing is fine). 0 or a negative code. */
int termhist_remove(const char *dir);

#endif
