/* SPDX-License-Identifier: MIT */
/* base/fsio.c -- file I/O shim with fault injection.
 * Normal path: each function is its syscall, EINTR retried, errors returned as negated errno.
 * Fault path (tests): while a plan is installed every call takes one mutex, is counted, may be
 * made to fail, to write short, or to "crash". To simulate a crash, every write and truncate
 * since a file's last fsync is recorded with the bytes it overwrote (an undo log per inode);
 * a crash replays the undo logs backwards from the chosen cut point. The mutex is held across
 * the real syscall so undo logs and file contents never disagree; a pthread_atfork handler
 * keeps a forked child from inheriting a held lock. */
#include "base/fsio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"

/* ---- fault state (only touched with `mu` held, except the `active` flag) ---- */

enum undo_kind {
    UNDO_WRITE = 0,
    UNDO_TRUNC,
};

struct undo {
    enum undo_kind kind;
    uint64_t off;       /* write offset, or the new length for a truncate */
    uint64_t len;       /* bytes written (0 for a truncate) */
    uint64_t prev_size; /* file size before the operation */
    char *old;          /* bytes the operation destroyed */
    size_t old_len;
};

struct tracked {
    dev_t dev;
    ino_t ino;
    char *path;
    struct undo *u;
    size_t n, cap;
};

static atomic_bool active;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static struct fsio_fault plan;
static uint64_t calls;
static bool fired;
static bool dead;
static struct tracked *files;
static size_t nfiles, capfiles;

static void lock_mu(void)
{
    pthread_mutex_lock(&mu);
}

static void unlock_mu(void)
{
    pthread_mutex_unlock(&mu);
}

static void register_atfork(void)
{
    pthread_atfork(lock_mu, unlock_mu, unlock_mu);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void forget_file(size_t i)
{
    for (size_t k = 0; k < files[i].n; k++)
        free(files[i].u[k].old);
    free(files[i].u);
    free(files[i].path);
    files[i] = files[--nfiles];
}

static void forget_all(void)
{
    while (nfiles > 0)
        forget_file(nfiles - 1);
    free(files);
    files = NULL;
    capfiles = 0;
}

static struct tracked *find_ino(dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < nfiles; i++)
        if (files[i].dev == dev && files[i].ino == ino)
            return &files[i];
    return NULL;
}

static struct tracked *track_fd(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))
        return NULL;
    struct tracked *t = find_ino(st.st_dev, st.st_ino);
    if (t)
        return t;
    char link[64], path[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n == -1)
        return NULL;
    path[n] = '\0';
    if (nfiles == capfiles) {
        capfiles = capfiles ? capfiles * 2 : 8;
        files = xrealloc(files, capfiles * sizeof(*files));
    }
    t = &files[nfiles++];
    memset(t, 0, sizeof(*t));
    t->dev = st.st_dev;
    t->ino = st.st_ino;
    t->path = xstrdup(path);
    return t;
}

static struct undo *push_undo(struct tracked *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->u = xrealloc(t->u, t->cap * sizeof(*t->u));
    }
    struct undo *u = &t->u[t->n++];
    memset(u, 0, sizeof(*u));
    return u;
}

/* Captures what a write of n bytes at off will destroy; returns a filled undo record (not yet
 * attached) through *u. */
static void capture(int fd, uint64_t off, size_t n, struct undo *u)
{
    struct stat st;
    memset(u, 0, sizeof(*u));
    u->kind = UNDO_WRITE;
    u->off = off;
    if (fstat(fd, &st) == -1)
        return;
    u->prev_size = (uint64_t)st.st_size;
    if (off < u->prev_size) {
        size_t k = u->prev_size - off < n ? (size_t)(u->prev_size - off) : n;
        u->old = xmalloc(k);
        ssize_t r = pread(fd, u->old, k, (off_t)off);
        u->old_len = r > 0 ? (size_t)r : 0;
    }
}

/* Undoes u from byte `keep` of the operation on: bytes [off+keep, off+len) get their old
 * content back (or garbage), the file is cut back to its previous size where it had grown. */
static void undo_apply(int fd, const struct undo *u, uint64_t keep, bool garbage, uint64_t *rng)
{
    if (u->kind == UNDO_TRUNC) {
        /* Undo a truncate: restore the size and the bytes it cut away. */
        if (ftruncate(fd, (off_t)u->prev_size) == -1)
            return;
        if (u->old_len > 0 && pwrite(fd, u->old, u->old_len, (off_t)u->off) == -1)
            return;
        return;
    }
    uint64_t from = u->off + keep, end = u->off + u->len;
    if (garbage) {
        char tmp[512];
        for (uint64_t p = from; p < end;) {
            size_t k = end - p < sizeof(tmp) ? (size_t)(end - p) : sizeof(tmp);
            for (size_t i = 0; i < k; i++)
                tmp[i] = (char)rng_next(rng);
            if (pwrite(fd, tmp, k, (off_t)p) == -1)
                return;
            p += k;
        }
        return;
    }
    /* Restore the old bytes that lay in [from, end). */
    uint64_t old_end = u->off + u->old_len;
    if (from < old_end &&
        pwrite(fd, u->old + (from - u->off), (size_t)(old_end - from), (off_t)from) == -1)
        return;
    uint64_t size = u->prev_size > from ? u->prev_size : from;
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > size && end > u->prev_size) {
        if (ftruncate(fd, (off_t)size) == -1)
            return;
    }
}

static void crash_file(struct tracked *t, enum fsio_crash mode, uint64_t *rng)
{
    if (t->n == 0)
        return;
    int fd = open(t->path, O_RDWR | O_CLOEXEC);
    if (fd == -1)
        return;
    struct stat st;
    if (fstat(fd, &st) == -1 || st.st_dev != t->dev || st.st_ino != t->ino) {
        close(fd);
        return;
    }
    size_t cut = 0;
    uint64_t keep = 0;
    if (mode != FSIO_CRASH_DROP) {
        cut = (size_t)(rng_next(rng) % t->n);
        if (t->u[cut].len > 0)
            keep = rng_next(rng) % t->u[cut].len;
    }
    for (size_t k = t->n; k-- > cut + 1;)
        undo_apply(fd, &t->u[k], 0, false, rng);
    undo_apply(fd, &t->u[cut], keep, mode == FSIO_CRASH_GARBAGE, rng);
    fdatasync(fd);
    close(fd);
}

/* With mu held: applies crash damage to every tracked file and kills all further I/O. */
static void crash_locked(enum fsio_crash mode, uint64_t seed)
{
    uint64_t rng = seed;
    for (size_t i = 0; i < nfiles; i++)
        crash_file(&files[i], mode, &rng);
    forget_all();
    dead = true;
    fired = true;
}

/* With mu held: counts a call of kind op and decides its fate. Returns 0 to proceed, or the
 * error to return; *short_w is set when a write must be cut short. */
static int strike(enum fsio_op op, bool *short_w)
{
    if (short_w)
        *short_w = false;
    if (dead)
        return -EIO;
    unsigned mask = plan.ops ? plan.ops : FSIO_OPS_ALL;
    if (!(mask & (1u << op)))
        return 0;
    calls++;
    if (plan.at == 0 || calls < plan.at)
        return 0;
    if (calls > plan.at && !plan.persistent)
        return 0;
    switch (plan.kind) {
    case FSIO_FAULT_ERROR:
        fired = true;
        return plan.err ? plan.err : -EIO;
    case FSIO_FAULT_SHORT_WRITE:
        if (op == FSIO_OP_WRITE && short_w) {
            fired = true;
            *short_w = true;
        }
        return 0;
    case FSIO_FAULT_CRASH:
        crash_locked(plan.crash, plan.seed);
        return -EIO;
    }
    return 0;
}

void fsio_fault_set(const struct fsio_fault *f)
{
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&mu);
    forget_all();
    plan = *f;
    calls = 0;
    fired = false;
    dead = false;
    atomic_store(&active, true);
    pthread_mutex_unlock(&mu);
}

void fsio_fault_clear(void)
{
    pthread_mutex_lock(&mu);
    atomic_store(&active, false);
    forget_all();
    memset(&plan, 0, sizeof(plan));
    calls = 0;
    fired = false;
    dead = false;
    pthread_mutex_unlock(&mu);
}

uint64_t fsio_fault_calls(void)
{
    pthread_mutex_lock(&mu);
    uint64_t n = calls;
    pthread_mutex_unlock(&mu);
    return n;
}

bool fsio_fault_fired(void)
{
    pthread_mutex_lock(&mu);
    bool f = fired;
    pthread_mutex_unlock(&mu);
    return f;
}

void fsio_fault_crash_now(enum fsio_crash mode, uint64_t seed)
{
    pthread_mutex_lock(&mu);
    if (atomic_load(&active))
        crash_locked(mode, seed);
    pthread_mutex_unlock(&mu);
}

/* ---- the calls ---- */

/* Runs `expr` (a syscall returning -1 on error) with the fault plan consulted first; stores
 * the negated errno or the result in `res`. */
#define FSIO_CALL(op, res, expr)                                                                   \
    do {                                                                                           \
        bool on_ = atomic_load_explicit(&active, memory_order_acquire);                            \
        if (on_) {                                                                                 \
            pthread_mutex_lock(&mu);                                                               \
            int e_ = strike((op), NULL);                                                           \
            if (e_ != 0) {                                                                         \
                pthread_mutex_unlock(&mu);                                                         \
                (res) = e_;                                                                        \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
        do {                                                                                       \
            (res) = (expr);                                                                        \
        } while ((res) == -1 && errno == EINTR);                                                   \
        if ((res) == -1)                                                                           \
            (res) = -errno;                                                                        \
        if (on_)                                                                                   \
            pthread_mutex_unlock(&mu);                                                             \
    } while (0)

int fsio_open(const char *path, int flags, int mode)
{
    int r;
    FSIO_CALL(FSIO_OP_OPEN, r, open(path, flags | O_CLOEXEC, mode));
    return r;
}

void fsio_close(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* Shared body of write and pwrite; off < 0 means the file position. */
static ssize_t do_write(int fd, const void *p, size_t n, int64_t off)
{
    if (!atomic_load_explicit(&active, memory_order_acquire)) {
        ssize_t w;
        do {
            w = off < 0 ? write(fd, p, n) : pwrite(fd, p, n, (off_t)off);
        } while (w == -1 && errno == EINTR);
        return w == -1 ? -errno : w;
    }
    pthread_mutex_lock(&mu);
    bool short_w;
    int e = strike(FSIO_OP_WRITE, &short_w);
    if (e != 0) {
        pthread_mutex_unlock(&mu);
        return e;
    }
    if (short_w && n > 1)
        n = (n + 1) / 2;
    uint64_t pos;
    if (off >= 0) {
        pos = (uint64_t)off;
    } else {
        int fl = fcntl(fd, F_GETFL);
        struct stat st;
        if (fl != -1 && (fl & O_APPEND) && fstat(fd, &st) == 0)
            pos = (uint64_t)st.st_size;
        else
            pos = (uint64_t)lseek(fd, 0, SEEK_CUR);
    }
    struct undo u;
    capture(fd, pos, n, &u);
    ssize_t w;
    do {
        w = off < 0 ? write(fd, p, n) : pwrite(fd, p, n, (off_t)off);
    } while (w == -1 && errno == EINTR);
    int saved = errno;
    struct tracked *t = w > 0 ? track_fd(fd) : NULL;
    if (t) {
        u.len = (uint64_t)w;
        if (u.old_len > (size_t)w)
            u.old_len = (size_t)w;
        *push_undo(t) = u;
    } else {
        free(u.old);
    }
    pthread_mutex_unlock(&mu);
    return w == -1 ? -saved : w;
}

ssize_t fsio_write(int fd, const void *p, size_t n)
{
    return do_write(fd, p, n, -1);
}

ssize_t fsio_pwrite(int fd, const void *p, size_t n, uint64_t off)
{
    return do_write(fd, p, n, (int64_t)off);
}

int fsio_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = fsio_write(fd, c, n);
        if (w < 0)
            return (int)w;
        if (w == 0)
            return -EIO;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

ssize_t fsio_read(int fd, void *p, size_t n)
{
    ssize_t r;
    FSIO_CALL(FSIO_OP_READ, r, read(fd, p, n));
    return r;
}

ssize_t fsio_pread(int fd, void *p, size_t n, uint64_t off)
{
    ssize_t r;
    FSIO_CALL(FSIO_OP_READ, r, pread(fd, p, n, (off_t)off));
    return r;
}

int fsio_read_file(const char *path, struct buf *out)
{
    int fd = fsio_open(path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    uint64_t size = 0;
    int r = fsio_size(fd, &size);
    if (r == 0)
        buf_reserve(out, (size_t)size + 1);
    while (r == 0) {
        buf_reserve(out, 65536);
        ssize_t n = fsio_read(fd, out->p + out->len, out->cap - out->len);
        if (n < 0)
            r = (int)n;
        else if (n == 0)
            break;
        else
            out->len += (size_t)n;
    }
    fsio_close(fd);
    return r;
}

/* Forgets fd's undo log after a successful sync: its bytes are durable now. */
static void synced(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == -1)
        return;
    struct tracked *t = find_ino(st.st_dev, st.st_ino);
    if (t == NULL)
        return;
    for (size_t k = 0; k < t->n; k++)
        free(t->u[k].old);
    t->n = 0;
}

static int do_sync(int fd, bool data_only)
{
    if (!atomic_load_explicit(&active, memory_order_acquire)) {
        int r = data_only ? fdatasync(fd) : fsync(fd);
        return r == -1 ? -errno : 0;
    }
    pthread_mutex_lock(&mu);
    int e = strike(FSIO_OP_SYNC, NULL);
    if (e == 0) {
        int r = data_only ? fdatasync(fd) : fsync(fd);
        if (r == -1)
            e = -errno;
        else
            synced(fd);
    }
    pthread_mutex_unlock(&mu);
    return e;
}

int fsio_fdatasync(int fd)
{
    return do_sync(fd, true);
}

int fsio_fsync(int fd)
{
    return do_sync(fd, false);
}

int fsio_fsync_dir(const char *dir)
{
    int fd = fsio_open(dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int r = fsio_fsync(fd);
    fsio_close(fd);
    return r;
}

/* With mu held: drops tracking of the file at path (it is being replaced or removed). */
static struct tracked *tracked_at(const char *path)
{
    struct stat st;
    if (stat(path, &st) == -1)
        return NULL;
    return find_ino(st.st_dev, st.st_ino);
}

int fsio_rename(const char *from, const char *to)
{
    if (!atomic_load_explicit(&active, memory_order_acquire))
        return rename(from, to) == -1 ? -errno : 0;
    pthread_mutex_lock(&mu);
    int e = strike(FSIO_OP_RENAME, NULL);
    if (e == 0) {
        struct tracked *src = tracked_at(from);
        struct tracked *dst = tracked_at(to);
        dev_t sdev = src ? src->dev : 0;
        ino_t sino = src ? src->ino : 0;
        if (rename(from, to) == -1) {
            e = -errno;
        } else {
            if (dst && dst != src)
                forget_file((size_t)(dst - files));
            src = src ? find_ino(sdev, sino) : NULL;
            if (src) {
                free(src->path);
                src->path = xstrdup(to);
            }
        }
    }
    pthread_mutex_unlock(&mu);
    return e;
}

int fsio_ftruncate(int fd, uint64_t len)
{
    if (!atomic_load_explicit(&active, memory_order_acquire)) {
        int r;
        do {
            r = ftruncate(fd, (off_t)len);
        } while (r == -1 && errno == EINTR);
        return r == -1 ? -errno : 0;
    }
    pthread_mutex_lock(&mu);
    int e = strike(FSIO_OP_TRUNCATE, NULL);
    if (e == 0) {
        struct undo u;
        memset(&u, 0, sizeof(u));
        u.kind = UNDO_TRUNC;
        u.off = len;
        struct stat st;
        if (fstat(fd, &st) == 0) {
            u.prev_size = (uint64_t)st.st_size;
            if (u.prev_size > len) {
                u.old = xmalloc((size_t)(u.prev_size - len));
                ssize_t r = pread(fd, u.old, (size_t)(u.prev_size - len), (off_t)len);
                u.old_len = r > 0 ? (size_t)r : 0;
            }
        }
        if (ftruncate(fd, (off_t)len) == -1) {
            e = -errno;
            free(u.old);
        } else {
            struct tracked *t = track_fd(fd);
            if (t)
                *push_undo(t) = u;
            else
                free(u.old);
        }
    }
    pthread_mutex_unlock(&mu);
    return e;
}

int fsio_unlink(const char *path)
{
    if (!atomic_load_explicit(&active, memory_order_acquire))
        return unlink(path) == -1 ? -errno : 0;
    pthread_mutex_lock(&mu);
    int e = strike(FSIO_OP_UNLINK, NULL);
    if (e == 0) {
        struct tracked *t = tracked_at(path);
        if (unlink(path) == -1)
            e = -errno;
        else if (t)
            forget_file((size_t)(t - files));
    }
    pthread_mutex_unlock(&mu);
    return e;
}

int fsio_link(const char *from, const char *to)
{
    int r;
    FSIO_CALL(FSIO_OP_RENAME, r, link(from, to));
    return r;
}

int fsio_mkdir(const char *path, int mode)
{
    int r;
    FSIO_CALL(FSIO_OP_MKDIR, r, mkdir(path, (mode_t)mode));
    return r == -EEXIST ? 0 : r;
}

int fsio_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) == -1)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int fsio_lock(int fd)
{
    int r;
    do {
        r = flock(fd, LOCK_EX | LOCK_NB);
    } while (r == -1 && errno == EINTR);
    return r == -1 ? -errno : 0;
}

int fsio_list_dir(const char *dir, fsio_dir_fn fn, void *ud)
{
    int r;
    DIR *d = NULL;
    FSIO_CALL(FSIO_OP_LIST, r, ((d = opendir(dir)) == NULL ? -1 : 0));
    if (r < 0)
        return r;
    struct dirent *e;
    r = 0;
    while (r == 0) {
        errno = 0;
        e = readdir(d);
        if (e == NULL) {
            if (errno != 0)
                r = -errno;
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        r = fn(ud, e->d_name);
    }
    closedir(d);
    return r;
}
