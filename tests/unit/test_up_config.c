/* SPDX-License-Identifier: MIT */
/* Unit tests for harness/up_config.c: the config file of `tandem up`, port assignment and the
 * provisioning rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/up_config.h"

static char err[512];

static void test_default(void **state)
{
    (void)state;
    struct up_config c;
    assert_int_equal(up_config_default(&c, err, sizeof(err)), 0);
    assert_int_equal(c.ndb, 2);
    assert_string_equal(c.db[0].name, "db1");
    assert_string_equal(c.db[1].name, "db2");
    assert_int_equal(c.napp, 2);
    assert_string_equal(c.app[0].name, "A");
    assert_int_equal(c.sync_replicas, 1);
    assert_int_equal(c.min_replicas, 1);
    assert_int_equal(c.web_mode, UP_WEB_ACTIVE_ACTIVE);
    assert_int_equal(c.db[0].port, 0);
    assert_int_equal(up_config_validate(&c, err, sizeof(err)), 0);
    up_config_free(&c);
}

static void test_lines(void **state)
{
    (void)state;
    struct up_config c;
    assert_int_equal(up_config_default(&c, err, sizeof(err)), 0);
    assert_int_equal(up_config_line(&c, "up", "lease-ttl", "2s", err, sizeof(err)), 0);
    assert_int_equal(c.lease_ttl_ms, 2000);
    assert_int_equal(up_config_line(&c, "", "min_replicas", "2", err, sizeof(err)), 0);
    assert_int_equal(c.min_replicas, 2);
    assert_int_equal(up_config_line(&c, "admin", "listen", "127.0.0.1:9000", err, sizeof(err)), 0);
    assert_int_equal(c.admin.port, 9000);
    assert_int_equal(up_config_line(&c, "web", "listen", "8080", err, sizeof(err)), 0);
    assert_int_equal(c.web.port, 8080);
    assert_int_equal(up_config_line(&c, "web", "mode", "active-passive", err, sizeof(err)), 0);
    assert_int_equal(c.web_mode, UP_WEB_ACTIVE_PASSIVE);
    /* the first [db X] replaces the default nodes */
    assert_int_equal(up_config_line(&c, "db n1", "listen", "7001", err, sizeof(err)), 0);
    assert_int_equal(c.ndb, 1);
    assert_string_equal(c.db[0].name, "n1");
    assert_int_equal(up_config_line(&c, "db n2", "listen", "0", err, sizeof(err)), 0);
    assert_int_equal(up_config_line(&c, "db n1", "listen", "7011", err, sizeof(err)), 0);
    assert_int_equal(c.ndb, 2);
    assert_int_equal(c.db[0].port, 7011);
    assert_int_equal(c.napp, 2); /* untouched */
    assert_int_equal(up_config_validate(&c, err, sizeof(err)), 0);
    up_config_free(&c);
}

static void test_bad_lines(void **state)
{
    (void)state;
    struct up_config c;
    assert_int_equal(up_config_default(&c, err, sizeof(err)), 0);
    assert_int_equal(up_config_line(&c, "up", "nope", "1", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown key 'nope'"));
    assert_int_equal(up_config_line(&c, "pool x", "listen", "1", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown section"));
    assert_int_equal(up_config_line(&c, "admin", "listen", "10.0.0.1:9000", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "127.0.0.1 only"));
    assert_int_equal(up_config_line(&c, "admin", "listen", "70000", err, sizeof(err)), -EINVAL);
    assert_int_equal(up_config_line(&c, "admin", "port", "7000", err, sizeof(err)), -EINVAL);
    assert_int_equal(up_config_line(&c, "web", "mode", "both", err, sizeof(err)), -EINVAL);
    assert_int_equal(up_config_line(&c, "db a b", "listen", "1", err, sizeof(err)), -EINVAL);
    assert_int_equal(up_config_line(&c, "up", "lease-ttl", "10ms", err, sizeof(err)), -ERANGE);
    up_config_free(&c);
}

static void test_validate(void **state)
{
    (void)state;
    struct up_config c;
    assert_int_equal(up_config_default(&c, err, sizeof(err)), 0);
    c.admin.port = 9000;
    c.web.port = 9000;
    assert_int_equal(up_config_validate(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "both listen on port 9000"));
    c.web.port = 0;
    c.sync_replicas = 2;
    assert_int_equal(up_config_validate(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "sync-replicas"));
    c.sync_replicas = 1;
    c.max_db = 1;
    assert_int_equal(up_config_validate(&c, err, sizeof(err)), -EINVAL);
    c.max_db = 6;
    snprintf(c.app[1].name, sizeof(c.app[1].name), "db1");
    assert_int_equal(up_config_validate(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "two nodes are named 'db1'"));
    up_config_free(&c);
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_up_config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "; comment\n[up]\ncluster = shop\nsync-replicas = 0\n"
                        "[db only]\nlisten = 127.0.0.1:0\n[app X]\n[app Y]\nlisten = 8082\n"
                        "[bogus]\nkey = 1\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (int)(sizeof(text) - 1));
    close(fd);
    struct up_config c;
    assert_int_equal(up_config_default(&c, err, sizeof(err)), 0);
    assert_int_not_equal(up_config_load(&c, path, err, sizeof(err)), 0);
    assert_non_null(strstr(err, ":11: unknown section [bogus]"));
    assert_string_equal(c.cluster, "shop");
    assert_int_equal(c.ndb, 1);
    /* a section without a key is not seen (inih): only Y replaced A and B */
    assert_int_equal(c.napp, 1);
    assert_string_equal(c.app[0].name, "Y");
    assert_int_equal(c.app[0].port, 8082);
    unlink(path);
    up_config_free(&c);
}

struct fake_ports {
    unsigned seq[16];
    size_t n, next;
};

static unsigned fake_pick(void *ud)
{
    struct fake_ports *f = ud;
    return f->next < f->n ? f->seq[f->next++] : 0;
}

static void test_assign_ports(void **state)
{
    (void)state;
    struct up_config c;
    assert_int_equal(up_config_default(&c, err, sizeof(err)), 0);
    c.admin.port = 9000;
    c.db[1].port = 7002;
    /* the source offers a fixed port and a repeat: both are skipped */
    struct fake_ports f = {{100, 9000, 101, 101, 102, 7002, 103, 104, 105, 0}, 10, 0};
    assert_int_equal(up_config_assign_ports(&c, fake_pick, &f, err, sizeof(err)), 0);
    assert_int_equal(c.arbiter.port, 100);
    assert_int_equal(c.store.port, 101);
    assert_int_equal(c.web.port, 102);
    assert_int_equal(c.admin.port, 9000);
    assert_int_equal(c.db[0].port, 103);
    assert_int_equal(c.db[1].port, 7002);
    assert_int_equal(c.app[0].port, 104);
    assert_int_equal(c.app[1].port, 105);
    assert_true(up_config_port_used(&c, 104));
    assert_false(up_config_port_used(&c, 106));
    assert_int_equal(up_config_validate(&c, err, sizeof(err)), 0);

    /* a new db node: next free name, next unused port */
    struct fake_ports g = {{104, 106}, 2, 0};
    assert_int_equal(up_config_add_db(&c, fake_pick, &g), 2);
    assert_string_equal(c.db[2].name, "db3");
    assert_int_equal(c.db[2].port, 106);
    c.max_db = 3;
    assert_int_equal(up_config_add_db(&c, fake_pick, &g), -ENOSPC);
    c.max_db = 6;
    struct fake_ports none = {{0}, 0, 0};
    assert_int_equal(up_config_add_db(&c, fake_pick, &none), -EADDRINUSE);
    assert_int_equal(c.ndb, 3);
    up_config_free(&c);

    /* a source that only offers taken ports fails instead of looping */
    assert_int_equal(up_config_default(&c, err, sizeof(err)), 0);
    c.admin.port = 5;
    struct fake_ports bad = {{5, 5, 5}, 3, 0};
    assert_int_equal(up_config_assign_ports(&c, fake_pick, &bad, err, sizeof(err)), -EADDRINUSE);
    assert_non_null(strstr(err, "arbiter"));
    up_config_free(&c);
}

static void test_provision_count(void **state)
{
    (void)state;
    /* two nodes wanted (min-replicas 1) */
    assert_int_equal(up_provision_count(1, 2, 1, 6), 1); /* the primary died: one more */
    assert_int_equal(up_provision_count(2, 3, 1, 6), 0); /* the new node is still starting */
    assert_int_equal(up_provision_count(0, 2, 1, 6), 2);
    assert_int_equal(up_provision_count(1, 6, 1, 6), 0); /* max-db reached */
    assert_int_equal(up_provision_count(0, 5, 2, 6), 1); /* capped by max-db */
    assert_int_equal(up_provision_count(1, 1, 0, 6), 0); /* no replica wanted */
    assert_int_equal(up_provision_count(1, 3, 2, 6), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default),         cmocka_unit_test(test_lines),
        cmocka_unit_test(test_bad_lines),       cmocka_unit_test(test_validate),
        cmocka_unit_test(test_load_file),       cmocka_unit_test(test_assign_ports),
        cmocka_unit_test(test_provision_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
