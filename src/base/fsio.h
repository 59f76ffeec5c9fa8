/* SPDX-License-Identifier: MIT */
/* base/fsio.h -- the file I/O shim: every read, write, sync, rename, truncate and unlink of the
 * durability layer goes through these functions, so tests can inject faults (SQLite's
 * instrumented VFS). Without a fault plan installed each call is the plain syscall plus an
 * atomic load. All functions return 0 (or a count / fd) on success and a negated errno on
 * failure; they retry EINTR themselves. Callable from any thread. */
#ifndef TD_BASE_FSIO_H
#define TD_BASE_FSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/buf.h"

/* Opens path like open(2); returns the fd or a negated errno. */
int fsio_open(const char *path, int flags, int mode);
/* Closes fd; close errors are not reported (on Linux they carry no durability meaning: only
 * fsync does). Not counted by fault plans. fd < 0 is a no-op. */
void fsio_close(int fd);
/* One write(2): returns bytes written (possibly fewer than n) or a negated errno. */
ssize_t fsio_write(int fd, const void *p, size_t n);
/* One pwrite(2) at off: returns bytes written (possibly fewer) or a negated errno. */
ssize_t fsio_pwrite(int fd, const void *p, size_t n, uint64_t off);
/* Writes all n bytes, looping over short writes; 0 or a negated errno (some bytes may have been
 * written before the error). */
int fsio_write_all(int fd, const void *p, size_t n);
/* One read(2) / pread(2): bytes read (0 at end of file) or a negated errno. */
ssize_t fsio_read(int fd, void *p, size_t n);
ssize_t fsio_pread(int fd, void *p, size_t n, uint64_t off);
/* Appends the whole content of path to out (out is not cleared first); 0 or a negated errno. */
int fsio_read_file(const char *path, struct buf *out);
int fsio_fdatasync(int fd);
int fsio_fsync(int fd);
/* Opens directory dir and fsyncs it, making creations/renames/unlinks in it durable. */
int fsio_fsync_dir(const char *dir);
int fsio_rename(const char *from, const char *to);
/* Hard link: a second name for the file at from (no copy). Counted as a rename by faults.
 * 0 or a negative errno (-EEXIST when to exists). */
int fsio_link(const char *from, const char *to);
int fsio_ftruncate(int fd, uint64_t len);
int fsio_unlink(const char *path);
/* mkdir(2); an existing directory is success. */
int fsio_mkdir(const char *path, int mode);
/* Size of the open file fd in *size. */
int fsio_size(int fd, uint64_t *size);
/* Takes an exclusive advisory lock (flock) on fd without waiting: -EWOULDBLOCK when another
 * process holds it. */
int fsio_lock(int fd);

/* Calls fn(ud, name) for each entry of dir except "." and ".."; stops early and returns fn's
 * value when it returns non-zero. Returns 0 or a negated errno. */
typedef int (*fsio_dir_fn)(void *ud, const char *name);
int fsio_list_dir(const char *dir, fsio_dir_fn fn, void *ud);

/* ---- Fault injection (tests only) ----
 * A fault plan counts the calls of the selected kinds (open, read, write, sync, rename,
 * truncate, unlink, mkdir, list) from 1 upward and strikes at call number `at`:
 *  - FSIO_FAULT_ERROR: that call fails with `err` (default -EIO) without touching the file;
 *    with `persistent` every later counted call fails too.
 *  - FSIO_FAULT_SHORT_WRITE: that write (and with `persistent` every later one) writes only
 *    the first half of its bytes (at least one) and reports that count.
 *  - FSIO_FAULT_CRASH: the machine "loses power" just before that call: every file written
 *    since it was last fsynced is damaged according to `crash`, then that call and every later
 *    call of any kind fails with -EIO (the process is dead for I/O purposes) until the plan is
 *    cleared. Unsynced writes are tracked from fsio_fault_set on, so the plan must be set
 *    before the files are written.
 * Crash damage per file (SQLite crash tests): writes since the last fsync of that file form a
 * sequence; a cut point is chosen in it (from `seed`), writes before the cut persist, the write
 * at the cut keeps a random prefix, later ones are lost. FSIO_CRASH_DROP cuts at the first
 * unsynced byte (all unsynced data lost), FSIO_CRASH_TEAR cuts at a random byte,
 * FSIO_CRASH_GARBAGE cuts like TEAR and fills the rest of the torn write with random bytes.
 * Not modelled: loss of un-fsynced directory entries (created or renamed files survive). */
enum fsio_op {
    FSIO_OP_OPEN = 0,
    FSIO_OP_READ,
    FSIO_OP_WRITE,
    FSIO_OP_SYNC,
    FSIO_OP_RENAME,
    FSIO_OP_TRUNCATE,
    FSIO_OP_UNLINK,
    FSIO_OP_MKDIR,
    FSIO_OP_LIST,
    FSIO_OP_COUNT_
};

#define FSIO_OPS_ALL ((1u << FSIO_OP_COUNT_) - 1)
#define FSIO_OPS_MUTATING                                                                          \
    ((1u << FSIO_OP_WRITE) | (1u << FSIO_OP_SYNC) | (1u << FSIO_OP_RENAME) |                       \
     (1u << FSIO_OP_TRUNCATE) | (1u << FSIO_OP_UNLINK))

enum fsio_fault_kind {
    FSIO_FAULT_ERROR = 0,
    FSIO_FAULT_SHORT_WRITE,
    FSIO_FAULT_CRASH,
};

enum fsio_crash {
    FSIO_CRASH_DROP = 0,
    FSIO_CRASH_TEAR,
    FSIO_CRASH_GARBAGE,
};

struct fsio_fault {
    uint64_t at;  /* 1-based number of the counted call that strikes; 0 = never */
    unsigned ops; /* mask of (1u << FSIO_OP_*) to count; 0 means FSIO_OPS_ALL */
    bool persistent;
    int err; /* negated errno for FSIO_FAULT_ERROR; 0 means -EIO */
    enum fsio_fault_kind kind;
    enum fsio_crash crash;
    uint64_t seed; /* drives crash damage */
};

/* Installs a plan (copied), resets the call counter, starts tracking unsynced writes. */
void fsio_fault_set(const struct fsio_fault *f);
/* Removes the plan and forgets tracked writes; I/O is normal again. */
void fsio_fault_clear(void);
/* Counted calls since fsio_fault_set. */
uint64_t fsio_fault_calls(void);
/* True once the plan has struck. */
bool fsio_fault_fired(void);
/* Applies crash damage now (mode and seed as above) to every tracked file, then fails all I/O
 * until fsio_fault_clear. Requires a plan to be installed (use at = 0 to only track). */
void fsio_fault_crash_now(enum fsio_crash mode, uint64_t seed);

#endif
