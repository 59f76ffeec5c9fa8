/* SPDX-License-Identifier: MIT */
/* Unit tests for base/crc32c.c: published check values, and the hardware path, the
 * slicing-by-8 path and a bit-at-a-time reference agreeing at every length and alignment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/crc32c.h"

/* The definition, one bit at a time. */
static uint32_t crc_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static void test_check_values(void **state)
{
    (void)state;
    /* "123456789" and the iSCSI vectors of RFC 3720, appendix B.4. */
    assert_int_equal(crc32c("123456789", 9), 0xE3069283u);
    unsigned char b[32];
    memset(b, 0, sizeof(b));
    assert_int_equal(crc32c(b, 32), 0x8A9136AAu);
    memset(b, 0xFF, sizeof(b));
    assert_int_equal(crc32c(b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)i;
    assert_int_equal(crc32c(b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)(31 - i);
    assert_int_equal(crc32c(b, 32), 0x113FDB5Cu);
    assert_int_equal(crc32c(NULL, 0), 0);
    printf("crc32c: hardware path %s\n", crc32c_is_hw() ? "in use" : "not available");
}

static void test_paths_agree(void **state)
{
    (void)state;
    unsigned char buf[600];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    for (size_t off = 0; off < 9; off++) {
        for (size_t n = 0; n + off <= 300; n++) {
            uint32_t want = crc_ref(buf + off, n);
            assert_int_equal(crc32c(buf + off, n), want);
            assert_int_equal(crc32c_extend_sw(0, buf + off, n), want);
        }
    }
    /* Extending in pieces equals one pass. */
    for (size_t cut = 0; cut <= 600; cut += 37) {
        uint32_t a = crc32c(buf, cut);
        assert_int_equal(crc32c_extend(a, buf + cut, 600 - cut), crc_ref(buf, 600));
        assert_int_equal(crc32c_extend_sw(crc32c_extend_sw(0, buf, cut), buf + cut, 600 - cut),
                         crc_ref(buf, 600));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_values),
        cmocka_unit_test(test_paths_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
