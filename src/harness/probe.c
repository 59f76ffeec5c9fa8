/* SPDX-License-Identifier: MIT */
/* harness/probe.c -- blocking loopback probes (see probe.h). HTTP responses are parsed with
 * proto/http1; Redis-protocol commands go through hiredis's synchronous API. */
#include "harness/probe.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "proto/http1.h"

static struct sockaddr_in loopback(unsigned port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    return a;
}

bool probe_port_open(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return false;
    struct sockaddr_in a = loopback(port);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

unsigned probe_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return 0;
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof(a);
    unsigned port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int probe_http_get(unsigned port, const char *path, uint64_t timeout_ms, struct buf *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = loopback(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == -1) {
        int e = -errno;
        close(fd);
        return e;
    }
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
    if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -EIO;
    }
    struct buf raw;
    buf_init(&raw);
    for (;;) {
        buf_reserve(&raw, 4096);
        ssize_t r = read(fd, raw.p + raw.len, raw.cap - raw.len);
        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        raw.len += (size_t)r;
        if (raw.len > (4u << 20))
            break;
    }
    close(fd);
    struct http1_parser p;
    http1_init(&p, HTTP1_RESPONSE, NULL);
    size_t used = 0;
    int rc = -EPROTO;
    int ev = raw.len ? http1_feed(&p, raw.p, 0, raw.len, &used) : 0;
    /* Connection: close and no chunked decoding here: the body is what follows the head */
    if (ev == HTTP1_HEAD_DONE && p.msg.status >= 200 && p.msg.status < 300 && !p.msg.chunked) {
        buf_append(out, raw.p + used, raw.len - used);
        rc = 0;
    }
    buf_free(&raw);
    return rc;
}

static void reply_text(const redisReply *r, struct buf *out, int depth)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        buf_append(out, r->str, r->len);
        break;
    case REDIS_REPLY_ERROR:
        buf_append_str(out, "-");
        buf_append(out, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        buf_printf(out, "%lld", r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < r->elements && depth < 4; i++) {
            if (i)
                buf_append_str(out, "\n");
            reply_text(r->element[i], out, depth + 1);
        }
        break;
    default:
        break;
    }
}

int probe_resp(unsigned port, int argc, const char **argv, uint64_t timeout_ms, struct buf *out)
{
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", (int)port, tv);
    if (c == NULL)
        return -ENOMEM;
    if (c->err) {
        redisFree(c);
        return -ECONNREFUSED;
    }
    redisSetTimeout(c, tv);
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    int rc = -ETIMEDOUT;
    if (r) {
        reply_text(r, out, 0);
        freeReplyObject(r);
        rc = 0;
    }
    redisFree(c);
    return rc;
}

bool probe_info_get(const char *info, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    for (const char *l = info; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len > kl && strncmp(l, key, kl) == 0 && l[kl] == ':') {
            size_t vl = len - kl - 1;
            if (vl && l[kl + 1 + vl - 1] == '\r')
                vl--;
            if (outlen) {
                size_t n = vl < outlen - 1 ? vl : outlen - 1;
                memcpy(out, l + kl + 1, n);
                out[n] = '\0';
            }
            return true;
        }
        l = nl ? nl + 1 : NULL;
    }
    return false;
}

uint64_t probe_info_u64(const char *info, const char *key, uint64_t def)
{
    char v[32];
    if (!probe_info_get(info, key, v, sizeof(v)) || v[0] < '0' || v[0] > '9')
        return def;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    return *end ? def : (uint64_t)n;
}
