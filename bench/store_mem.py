# SPDX-License-Identifier: MIT
"""Loads N keys into a Redis-protocol server and prints one markdown row of its memory use.

Keys are exactly 16 bytes ("k" + 15 digits), values exactly 32 bytes, sent with pipelined SETs
(10,000 per round trip) through redis-py. Usage: store_mem.py PORT N PID LABEL
"""
import sys

import redis


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    port, n, pid, label = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)
    r.flushall()
    before = r.info("memory")["used_memory"]
    batch = 10000
    for start in range(0, n, batch):
        p = r.pipeline(transaction=False)
        for i in range(start, min(start + batch, n)):
            key = b"k%015d" % i
            p.set(key, b"v%031d" % i)
        p.execute()
    assert r.dbsize() == n, r.dbsize()
    assert len(b"k%015d" % 0) == 16 and len(b"v%031d" % 0) == 32
    used = r.info("memory")["used_memory"]
    rss = rss_bytes(pid)
    print(f"| {label} | {n:,} | {used / 1e6:.1f} MB | {rss / 1e6:.1f} MB | "
          f"{(used - before) / n:.1f} |")


if __name__ == "__main__":
    main()
