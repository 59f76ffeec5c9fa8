/* SPDX-License-Identifier: MIT */
/* tests/unit/testutil.h -- helpers shared by the durability tests: scratch directories (on
 * tmpfs when there is one, so thousands of fsyncs cost nothing) and whole-file access that
 * bypasses fsio (tests damage files behind the code's back). */
#ifndef TD_TESTS_TESTUTIL_H
#define TD_TESTS_TESTUTIL_H

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline int tu_rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

/* Creates a fresh scratch directory; returns a malloc'ed path. */
static inline char *tu_mkdtemp(void)
{
    const char *base = getenv("TANDEM_TEST_TMP");
    struct stat st;
    if (base == NULL)
        base = (stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0) ? "/dev/shm" : "/tmp";
    size_t n = strlen(base) + 32;
    char *p = malloc(n);
    snprintf(p, n, "%s/tandem-test-XXXXXX", base);
    if (mkdtemp(p) == NULL) {
        perror("mkdtemp");
        abort();
    }
    return p;
}

/* Removes the directory tree and frees the path. */
static inline void tu_rmtree(char *p)
{
    if (p)
        nftw(p, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(p);
}

/* Reads a whole file; returns malloc'ed bytes (NULL when missing) and the size in *n. */
static inline char *tu_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        *n = 0;
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static inline void tu_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        abort();
    }
    if (n)
        fwrite(p, 1, n, f);
    fclose(f);
}

static inline void tu_append(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "ab");
    if (f == NULL) {
        perror(path);
        abort();
    }
    fwrite(p, 1, n, f);
    fclose(f);
}

static inline long tu_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

#endif
