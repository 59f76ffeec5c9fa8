/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the arbiter's core on untrusted input. The first byte picks a mode:
 *  even: the rest is a state file, as a restart reads it (odd bit 1: the CRC is rewritten first,
 *        so the structure checks behind it are reached). A file that loads must save to the
 *        same bytes (after the CRC fix) and load again.
 *  odd:  the rest is a script of operations (grant, keepalive, revoke, txn, expire, save+load)
 *        on a core with small limits and a fake clock. Checks: the revision never decreases,
 *        a failed txn changes nothing, lease ids only grow, every save loads back with the same
 *        revision and keys. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/crc32c.h"
#include "base/endian.h"
#include "coord/arbiter_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(struct arbiter_core *c, uint64_t now)
{
    struct buf a, b;
    buf_init(&a);
    buf_init(&b);
    arbiter_core_save(c, &a);
    struct arbiter_core *d = arbiter_core_new(NULL);
    if (arbiter_core_load(d, a.p, a.len, now) != 0)
        abort();
    arbiter_core_save(d, &b);
    if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0)
        abort();
    if (arbiter_core_rev(d) != arbiter_core_rev(c) || arbiter_core_nkeys(d) != arbiter_core_nkeys(c))
        abort();
    arbiter_core_free(d);
    buf_free(&a);
    buf_free(&b);
}

static void state_mode(const uint8_t *p, size_t n, bool fix)
{
    char *s = malloc(n ? n : 1);
    if (n)
        memcpy(s, p, n);
    if (fix && n >= 4)
        le_put32(s + n - 4, crc32c(s, n - 4));
    struct arbiter_core *c = arbiter_core_new(NULL);
    if (arbiter_core_load(c, s, n, 1000) == 0) {
        struct buf b;
        buf_init(&b);
        arbiter_core_save(c, &b);
        if (b.len != n || memcmp(b.p, s, n) != 0)
            abort();
        buf_free(&b);
        check_round_trip(c, 5000);
    }
    arbiter_core_free(c);
    free(s);
}

static const char *const keys[] = {"/a", "/a/b", "/b", "/c/leader", "/c/term", "/c/members/x",
                                   "/d", "/"};

static void script_mode(const uint8_t *p, size_t n)
{
    struct arbiter_limits lim;
    arbiter_limits_defaults(&lim);
    lim.max_keys = 6;
    lim.max_leases = 4;
    lim.max_value_bytes = 8;
    lim.max_txn_ops = 4;
    struct arbiter_core *c = arbiter_core_new(&lim);
    uint64_t now = 0, last_rev = 0, last_lease = 0, leases[8] = {0};
    size_t i = 0;
    while (i + 2 <= n) {
        uint8_t op = p[i] % 6, arg = p[i + 1];
        i += 2;
        uint64_t out = 0;
        switch (op) {
        case 0:
            if (arbiter_core_grant(c, now, (uint64_t)(arg % 50), &out) == 0) {
                if (out <= last_lease)
                    abort();
                last_lease = out;
                leases[out % 8] = out;
            }
            break;
        case 1:
            arbiter_core_keepalive(c, now, leases[arg % 8] + (arg >> 7), &out);
            break;
        case 2:
            arbiter_core_revoke(c, now, leases[arg % 8]);
            break;
        case 3: {
            struct dcs_cmp cmp[4];
            struct dcs_put put[4];
            size_t ncmp = arg % 3, nput = (arg >> 2) % 5;
            if (i + ncmp + nput > n)
                goto done;
            for (size_t k = 0; k < ncmp; k++, i++)
                cmp[k] = (struct dcs_cmp){slice_cstr(keys[p[i] % 8]), (uint64_t)(p[i] >> 3) % 4};
            for (size_t k = 0; k < nput; k++, i++) {
                uint8_t b = p[i];
                put[k] = (struct dcs_put){slice_cstr(keys[b % 8]), slice_of("0123456789", b % 11),
                                          (b & 0x80) ? leases[(b >> 3) % 8] : 0, (b & 0x40) != 0};
            }
            size_t nk = arbiter_core_nkeys(c);
            uint64_t before = arbiter_core_rev(c), rev = 0;
            int rc = arbiter_core_txn(c, now, cmp, ncmp, put, nput, &rev);
            if (rc != 0 && (arbiter_core_rev(c) != before || arbiter_core_nkeys(c) != nk))
                abort();
            if (rc == 0 && rev != arbiter_core_rev(c))
                abort();
            if (arbiter_core_nkeys(c) > lim.max_keys)
                abort();
            break;
        }
        case 4:
            now += arg;
            arbiter_core_expire(c, now, NULL, NULL);
            if (arbiter_core_next_expiry(c) <= now)
                abort();
            break;
        case 5:
            check_round_trip(c, now);
            break;
        }
        if (arbiter_core_rev(c) < last_rev)
            abort();
        last_rev = arbiter_core_rev(c);
    }
done:
    check_round_trip(c, now);
    arbiter_core_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        script_mode(data + 1, size - 1);
    else
        state_mode(data + 1, size - 1, (data[0] & 2) != 0);
    return 0;
}
