/* SPDX-License-Identifier: MIT */
/* base/parse.c -- value parsers for config files and flags. */
#include "base/parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parses a leading unsigned decimal; *end points past it. */
static int leading_uint(const char *s, uint64_t *out, const char **end)
{
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    *end = p;
    return 0;
}

static int scale(uint64_t v, uint64_t mul, uint64_t *out)
{
    if (mul != 0 && v > UINT64_MAX / mul)
        return -ERANGE;
    *out = v * mul;
    return 0;
}

int parse_duration_ms(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *unit;
    int rc = leading_uint(s, &v, &unit);
    if (rc)
        return rc;
    if (*unit == '\0' || strcmp(unit, "ms") == 0)
        return scale(v, 1, out);
    if (strcmp(unit, "s") == 0)
        return scale(v, 1000, out);
    if (strcmp(unit, "m") == 0 || strcmp(unit, "min") == 0)
        return scale(v, 60000, out);
    if (strcmp(unit, "h") == 0)
        return scale(v, 3600000, out);
    return -EINVAL;
}

int parse_size_bytes(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *unit;
    int rc = leading_uint(s, &v, &unit);
    if (rc)
        return rc;
    if (*unit == '\0' || strcasecmp(unit, "b") == 0)
        return scale(v, 1, out);
    if (strcasecmp(unit, "k") == 0 || strcasecmp(unit, "kb") == 0)
        return scale(v, 1024, out);
    if (strcasecmp(unit, "m") == 0 || strcasecmp(unit, "mb") == 0)
        return scale(v, 1024 * 1024, out);
    if (strcasecmp(unit, "g") == 0 || strcasecmp(unit, "gb") == 0)
        return scale(v, 1024ull * 1024 * 1024, out);
    return -EINVAL;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    const char *end;
    int rc = leading_uint(s, &v, &end);
    if (rc)
        return rc;
    if (*end != '\0')
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

int parse_addr(const char *s, struct sockaddr_storage *out, char *err, size_t errlen)
{
    char host[256];
    const char *colon;
    const char *port_s;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "bad address '%s': expected [IPV6]:PORT", s);
            return -EINVAL;
        }
        size_t hl = (size_t)(close - s - 1);
        if (hl == 0 || hl >= sizeof(host)) {
            snprintf(err, errlen, "bad address '%s': empty or long host", s);
            return -EINVAL;
        }
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        port_s = close + 2;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "bad address '%s': expected HOST:PORT", s);
            return -EINVAL;
        }
        size_t hl = (size_t)(colon - s);
        if (hl >= sizeof(host)) {
            snprintf(err, errlen, "bad address '%s': host too long", s);
            return -EINVAL;
        }
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (hl == 0)
            memcpy(host, "127.0.0.1", sizeof("127.0.0.1"));
        port_s = colon + 1;
    }
    uint64_t port;
    if (parse_uint(port_s, 0, 65535, &port) != 0) {
        snprintf(err, errlen, "bad address '%s': port must be 0-65535", s);
        return -EINVAL;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, NULL, &hints, &res);
    if (gai != 0 || res == NULL) {
        snprintf(err, errlen, "bad address '%s': cannot resolve '%s': %s", s, host,
                 gai_strerror(gai));
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (out->ss_family == AF_INET)
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
    else if (out->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
    else {
        snprintf(err, errlen, "bad address '%s': unsupported family", s);
        return -EINVAL;
    }
    return 0;
}

void addr_format(const struct sockaddr *sa, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, outlen, "%s:%d", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, outlen, "[%s]:%d", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "?");
    }
}

int addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}
