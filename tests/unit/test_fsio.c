/* SPDX-License-Identifier: MIT */
/* Unit tests for base/fsio.c: plain I/O, and every kind of injected fault (error once or
 * persistently at the Nth call, short writes, crashes that drop, tear or scramble unsynced
 * bytes). */
#include "testutil.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/fsio.h"

static char *dir;

static int setup(void **state)
{
    (void)state;
    dir = tu_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fsio_fault_clear();
    tu_rmtree(dir);
    dir = NULL;
    return 0;
}

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static int count_entry(void *ud, const char *name)
{
    (void)name;
    (*(int *)ud)++;
    return 0;
}

static void test_plain(void **state)
{
    (void)state;
    char p[512], q[512];
    path_of(p, sizeof(p), "a");
    path_of(q, sizeof(q), "b");
    int fd = fsio_open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(fsio_open(p, O_WRONLY | O_CREAT | O_EXCL, 0644), -EEXIST);
    assert_int_equal(fsio_write_all(fd, "hello ", 6), 0);
    assert_int_equal(fsio_pwrite(fd, "world", 5, 6), 5);
    assert_int_equal(fsio_fdatasync(fd), 0);
    assert_int_equal(fsio_ftruncate(fd, 8), 0);
    uint64_t size;
    assert_int_equal(fsio_size(fd, &size), 0);
    assert_int_equal(size, 8);
    fsio_close(fd);
    assert_int_equal(fsio_rename(p, q), 0);
    struct buf b;
    buf_init(&b);
    assert_int_equal(fsio_read_file(q, &b), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.p, "hello wo", 8);
    buf_free(&b);
    assert_int_equal(fsio_read_file(p, &b), -ENOENT);
    assert_int_equal(fsio_fsync_dir(dir), 0);
    int n = 0;
    assert_int_equal(fsio_list_dir(dir, count_entry, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(fsio_unlink(q), 0);
    assert_int_equal(fsio_unlink(q), -ENOENT);
    path_of(p, sizeof(p), "sub");
    assert_int_equal(fsio_mkdir(p, 0755), 0);
    assert_int_equal(fsio_mkdir(p, 0755), 0);
    /* Locks exclude a second open file description, even in the same process. */
    path_of(p, sizeof(p), "LOCK");
    int l1 = fsio_open(p, O_RDWR | O_CREAT, 0644), l2 = fsio_open(p, O_RDWR, 0);
    assert_int_equal(fsio_lock(l1), 0);
    assert_int_equal(fsio_lock(l2), -EWOULDBLOCK);
    fsio_close(l1);
    fsio_close(l2);
}

static void test_fail_once_and_persistent(void **state)
{
    (void)state;
    char p[512];
    path_of(p, sizeof(p), "f");
    int fd = fsio_open(p, O_WRONLY | O_CREAT, 0644);
    struct fsio_fault f = {.at = 2, .ops = 1u << FSIO_OP_WRITE, .err = -ENOSPC};
    fsio_fault_set(&f);
    assert_int_equal(fsio_write(fd, "a", 1), 1);
    assert_int_equal(fsio_write(fd, "b", 1), -ENOSPC);
    assert_true(fsio_fault_fired());
    assert_int_equal(fsio_write(fd, "c", 1), 1);
    assert_int_equal(fsio_fdatasync(fd), 0); /* not a counted kind */
    assert_int_equal(fsio_fault_calls(), 3);
    f.persistent = true;
    f.err = 0;
    fsio_fault_set(&f);
    assert_int_equal(fsio_write(fd, "d", 1), 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(fsio_write(fd, "e", 1), -EIO);
    fsio_fault_clear();
    assert_int_equal(fsio_write(fd, "f", 1), 1);
    fsio_close(fd);
    size_t n;
    char *c = tu_read(p, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(c, "acdf", 4);
    free(c);
    /* Every kind can be selected: a failing rename leaves both names as they were. */
    struct fsio_fault g = {.at = 1, .ops = 1u << FSIO_OP_RENAME};
    fsio_fault_set(&g);
    char q[512];
    path_of(q, sizeof(q), "g");
    assert_int_equal(fsio_rename(p, q), -EIO);
    assert_int_equal(tu_size(p), 4);
    assert_int_equal(tu_size(q), -1);
    fsio_fault_clear();
}

static void test_short_write(void **state)
{
    (void)state;
    char p[512];
    path_of(p, sizeof(p), "s");
    int fd = fsio_open(p, O_WRONLY | O_CREAT, 0644);
    struct fsio_fault f = {.at = 1, .kind = FSIO_FAULT_SHORT_WRITE, .persistent = true};
    fsio_fault_set(&f);
    assert_int_equal(fsio_write(fd, "0123456789", 10), 5);
    assert_int_equal(fsio_write_all(fd, "abcdefghij", 10), 0); /* loops: 5, 3, 1, 1 */
    fsio_fault_clear();
    fsio_close(fd);
    size_t n;
    char *c = tu_read(p, &n);
    assert_int_equal(n, 15);
    assert_memory_equal(c, "01234abcdefghij", 15);
    free(c);
}

/* Writes "AAAA" durably then "BBBBBBBB" unsynced, crashes with mode, returns the content. */
static char *crash_after_unsynced(enum fsio_crash mode, uint64_t seed, size_t *n)
{
    char p[512];
    path_of(p, sizeof(p), "c");
    unlink(p);
    struct fsio_fault f = {.at = 0};
    fsio_fault_set(&f);
    int fd = fsio_open(p, O_WRONLY | O_CREAT, 0644);
    assert_int_equal(fsio_write_all(fd, "AAAA", 4), 0);
    assert_int_equal(fsio_fdatasync(fd), 0);
    assert_int_equal(fsio_write_all(fd, "BBBBBBBB", 8), 0);
    fsio_fault_crash_now(mode, seed);
    /* Dead: every call fails, including ones of kinds a plan would not count. */
    assert_int_equal(fsio_write(fd, "C", 1), -EIO);
    assert_int_equal(fsio_fdatasync(fd), -EIO);
    assert_int_equal(fsio_open(p, O_RDONLY, 0), -EIO);
    fsio_close(fd);
    fsio_fault_clear();
    return tu_read(p, n);
}

static void test_crash_modes(void **state)
{
    (void)state;
    size_t n;
    char *c = crash_after_unsynced(FSIO_CRASH_DROP, 1, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(c, "AAAA", 4);
    free(c);
    bool saw_partial = false;
    for (uint64_t seed = 1; seed < 40; seed++) {
        c = crash_after_unsynced(FSIO_CRASH_TEAR, seed, &n);
        assert_true(n >= 4 && n < 12);
        assert_memory_equal(c, "AAAA", 4);
        for (size_t i = 4; i < n; i++)
            assert_int_equal(c[i], 'B');
        saw_partial |= n > 4;
        free(c);
        c = crash_after_unsynced(FSIO_CRASH_GARBAGE, seed, &n);
        assert_int_equal(n, 12); /* the torn write's tail holds garbage */
        assert_memory_equal(c, "AAAA", 4);
        free(c);
    }
    assert_true(saw_partial);
}

static void test_crash_at_nth_call_undoes_truncate_and_overwrite(void **state)
{
    (void)state;
    char p[512];
    path_of(p, sizeof(p), "t");
    struct fsio_fault f = {.at = 6, .kind = FSIO_FAULT_CRASH, .crash = FSIO_CRASH_DROP};
    fsio_fault_set(&f);
    int fd = fsio_open(p, O_RDWR | O_CREAT, 0644);             /* 1 */
    assert_int_equal(fsio_write_all(fd, "0123456789", 10), 0); /* 2 */
    assert_int_equal(fsio_fsync(fd), 0);                       /* 3 */
    assert_int_equal(fsio_ftruncate(fd, 3), 0);                /* 4 */
    assert_int_equal(fsio_pwrite(fd, "xy", 2, 1), 2);          /* 5 */
    assert_int_equal(fsio_fdatasync(fd), -EIO);                /* 6: the crash */
    assert_true(fsio_fault_fired());
    fsio_close(fd);
    fsio_fault_clear();
    size_t n;
    char *c = tu_read(p, &n);
    assert_int_equal(n, 10);
    assert_memory_equal(c, "0123456789", 10);
    free(c);
}

static void test_crash_follows_renames(void **state)
{
    (void)state;
    char p[512], q[512];
    path_of(p, sizeof(p), "x.tmp");
    path_of(q, sizeof(q), "x");
    struct fsio_fault f = {.at = 0};
    fsio_fault_set(&f);
    int fd = fsio_open(p, O_WRONLY | O_CREAT, 0644);
    assert_int_equal(fsio_write_all(fd, "data", 4), 0);
    fsio_close(fd);
    assert_int_equal(fsio_rename(p, q), 0);
    fsio_fault_crash_now(FSIO_CRASH_DROP, 7);
    fsio_fault_clear();
    assert_int_equal(tu_size(q), 0); /* renamed without fsync: the bytes never reached disk */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_once_and_persistent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_at_nth_call_undoes_truncate_and_overwrite, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_crash_follows_renames, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
