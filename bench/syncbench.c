// SPDX-License-Identifier: MIT
// bench/syncbench.c -- closed-loop write driver for synchronous-replication benchmarks.
//
// C clients (one connection each, read when epoll says so, one epoll loop, hiredis's reply reader) each
// send one write, wait for its whole answer, then send the next, for a fixed time:
//   --mode set       SET key value                      (tandem --sync-replicas: the SET is sync)
//   --mode set-wait  SET key value + WAIT n timeout     (Redis's closest: both sent in one
//                    packet, the write counts when both replies are in and WAIT said >= n)
//   --mode ping      PING                               (the driver's own ceiling)
// Keys are 16 bytes ("k" + 15 digits, spread over --keyspace), values 32 bytes.
// Prints one line: ops=N secs=S rps=R p50_us=P p99_us=Q errors=E short=W
// (errors: error replies; short: WAIT answered fewer than n). Built by bench/repl.sh:
//   cc -O2 -o syncbench bench/syncbench.c $(pkg-config --cflags --libs hiredis)
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    int idx;
    redisReader *rd;
    char out[256];
    size_t outlen, outoff;
    int pending;        // replies still expected for the current write
    int wait_short;     // WAIT answered fewer than n
    int had_error;
    uint64_t t0_ns;
    uint64_t seq;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "syncbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static const char *mode = "set-wait";
static int wait_n = 1;
static int wait_timeout_ms = 0;
static unsigned long keyspace = 1000000;

// Formats the next request of c into c->out; sets c->pending.
static void next_request(struct conn *c)
{
    if (strcmp(mode, "ping") == 0) {
        c->outlen = (size_t)snprintf(c->out, sizeof(c->out), "*1\r\n$4\r\nPING\r\n");
        c->pending = 1;
    } else {
        unsigned long k = ((unsigned long)c->idx * 1000003ul + c->seq) % keyspace;
        int n = snprintf(c->out, sizeof(c->out),
                         "*3\r\n$3\r\nSET\r\n$16\r\nk%015lu\r\n$32\r\n%032lu\r\n", k, c->seq);
        c->pending = 1;
        if (strcmp(mode, "set-wait") == 0) {
            char a[24], b[24];
            int la = snprintf(a, sizeof(a), "%d", wait_n);
            int lb = snprintf(b, sizeof(b), "%d", wait_timeout_ms);
            n += snprintf(c->out + n, sizeof(c->out) - (size_t)n,
                          "*3\r\n$4\r\nWAIT\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", la, a, lb, b);
            c->pending = 2;
        }
        c->outlen = (size_t)n;
    }
    c->outoff = 0;
    c->wait_short = 0;
    c->had_error = 0;
    c->seq++;
}

static void flush_out(struct conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            die("write"); // blocking socket: a request of < 256 bytes always fits
        }
        c->outoff += (size_t)w;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 6379, nconn = 50;
    double duration = 10.0, warmup = 1.0;
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'h'}, {"port", required_argument, NULL, 'p'},
        {"clients", required_argument, NULL, 'c'}, {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'W'}, {"mode", required_argument, NULL, 'm'},
        {"wait", required_argument, NULL, 'n'}, {"wait-timeout", required_argument, NULL, 't'},
        {"keyspace", required_argument, NULL, 'k'}, {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h:p:c:d:W:m:n:t:k:", opts, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = (int)strtol(optarg, NULL, 10); break;
        case 'c': nconn = (int)strtol(optarg, NULL, 10); break;
        case 'd': duration = strtod(optarg, NULL); break;
        case 'W': warmup = strtod(optarg, NULL); break;
        case 'm': mode = optarg; break;
        case 'n': wait_n = (int)strtol(optarg, NULL, 10); break;
        case 't': wait_timeout_ms = (int)strtol(optarg, NULL, 10); break;
        case 'k': keyspace = strtoul(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: syncbench --port P [--host H] [--clients 50] [--duration 10]"
                            " [--warmup 1] [--mode set|set-wait|ping] [--wait 1]"
                            " [--wait-timeout 0] [--keyspace 1000000]\n");
            return 2;
        }
    }
    if (nconn < 1 || keyspace == 0 ||
        (strcmp(mode, "set") && strcmp(mode, "set-wait") && strcmp(mode, "ping"))) {
        fprintf(stderr, "syncbench: bad arguments\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "syncbench: bad host %s\n", host);
        return 2;
    }
    int ep = epoll_create1(0);
    if (ep == -1)
        die("epoll_create1");
    struct conn *cs = calloc((size_t)nconn, sizeof(*cs));
    if (cs == NULL)
        die("calloc");
    for (int i = 0; i < nconn; i++) {
        struct conn *c = &cs[i];
        c->idx = i;
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd == -1)
            die("socket");
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1)
            die("connect");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->rd = redisReaderCreate();
        if (c->rd == NULL)
            die("redisReaderCreate");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) == -1)
            die("epoll_ctl");
    }

    size_t cap = 1u << 20, nlat = 0;
    uint32_t *lat = malloc(cap * sizeof(*lat));
    if (lat == NULL)
        die("malloc");
    uint64_t ops = 0, errors = 0, shorts = 0;
    uint64_t start = now_ns();
    uint64_t t_measure = start + (uint64_t)(warmup * 1e9);
    uint64_t t_end = t_measure + (uint64_t)(duration * 1e9);
    for (int i = 0; i < nconn; i++) {
        next_request(&cs[i]);
        cs[i].t0_ns = now_ns();
        flush_out(&cs[i]);
    }
    int active = nconn;
    struct epoll_event evs[64];
    char buf[16384];
    while (active > 0) {
        int n = epoll_wait(ep, evs, 64, 1000);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = evs[e].data.ptr;
            ssize_t r = read(c->fd, buf, sizeof(buf));
            if (r == -1 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                fprintf(stderr, "syncbench: connection %d closed by the server\n", c->idx);
                return 1;
            }
            if (redisReaderFeed(c->rd, buf, (size_t)r) != REDIS_OK) {
                fprintf(stderr, "syncbench: protocol error\n");
                return 1;
            }
            void *reply;
            for (;;) {
                if (redisReaderGetReply(c->rd, &reply) != REDIS_OK) {
                    fprintf(stderr, "syncbench: protocol error: %s\n", c->rd->errstr);
                    return 1;
                }
                if (reply == NULL)
                    break;
                redisReply *rp = reply;
                if (rp->type == REDIS_REPLY_ERROR) {
                    if (errors == 0)
                        fprintf(stderr, "syncbench: first error reply: %.*s\n", (int)rp->len, rp->str);
                    c->had_error = 1;
                } else if (c->pending == 1 && strcmp(mode, "set-wait") == 0 &&
                           rp->type == REDIS_REPLY_INTEGER && rp->integer < wait_n) {
                    c->wait_short = 1;
                }
                c->rd->fn->freeObject(reply);
                if (--c->pending > 0)
                    continue;
                uint64_t t = now_ns();
                if (c->t0_ns >= t_measure && t <= t_end) {
                    ops++;
                    errors += (uint64_t)c->had_error;
                    shorts += (uint64_t)c->wait_short;
                    if (nlat == cap) {
                        cap *= 2;
                        lat = realloc(lat, cap * sizeof(*lat));
                        if (lat == NULL)
                            die("realloc");
                    }
                    uint64_t us = (t - c->t0_ns) / 1000u;
                    lat[nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
                }
                if (t >= t_end) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    active--;
                    break;
                }
                next_request(c);
                c->t0_ns = t;
                flush_out(c);
            }
        }
    }
    double secs = duration;
    qsort(lat, nlat, sizeof(*lat), cmp_u32);
    uint32_t p50 = nlat ? lat[(size_t)((double)nlat * 0.50)] : 0;
    uint32_t p99 = nlat ? lat[(size_t)((double)nlat * 0.99)] : 0;
    printf("ops=%llu secs=%.3f rps=%.0f p50_us=%u p99_us=%u errors=%llu short=%llu\n",
           (unsigned long long)ops, secs, (double)ops / secs, p50, p99,
           (unsigned long long)errors, (unsigned long long)shorts);
    for (int i = 0; i < nconn; i++) {
        redisReaderFree(cs[i].rd);
        close(cs[i].fd);
    }
    free(cs);
    free(lat);
    close(ep);
    return 0;
}
