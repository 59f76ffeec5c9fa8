/* SPDX-License-Identifier: MIT */
/* base/parse.h -- parsing of user-supplied values: durations, sizes, integers, addresses.
 * All return 0 on success or -EINVAL/-ERANGE, and never read past the NUL. */
#ifndef TD_BASE_PARSE_H
#define TD_BASE_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "250ms", "2s", "1m", "1h"; a bare number is milliseconds. */
int parse_duration_ms(const char *s, uint64_t *out);
/* "512", "64kb", "16mb", "1gb" (powers of 1024, case-insensitive, "k"/"m"/"g" also accepted). */
int parse_size_bytes(const char *s, uint64_t *out);
/* A decimal integer in [min, max]. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "HOST:PORT", "[V6]:PORT" or ":PORT" (meaning 127.0.0.1). HOST may be a name, resolved with
 * getaddrinfo (blocking: config time only). On failure writes a reason into err. */
int parse_addr(const char *s, struct sockaddr_storage *out, char *err, size_t errlen);
/* Formats an IPv4/IPv6 address as "HOST:PORT" / "[HOST]:PORT" into out (>= 64 bytes). */
void addr_format(const struct sockaddr *sa, char *out, size_t outlen);
/* Port of an AF_INET/AF_INET6 address in host order; 0 otherwise. */
int addr_port(const struct sockaddr *sa);

#endif
