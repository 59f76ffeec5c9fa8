# SPDX-License-Identifier: MIT
"""bench/repl_probe.py -- replication measurements for bench/repl.sh (redis-py, any RESP server).

  repl_probe.py fill PORT N
      load N keys (16-byte "k" + 15 digits, 32-byte values) with pipelined SETs (10,000 per round
      trip); checks DBSIZE == N. Prints the seconds it took.

  repl_probe.py lag PRIMARY_PORT REPLICA_PORT SECONDS [RATE]
      replication lag while something else loads the primary: RATE times a second (default 50)
      SET lag:probe <n> on the primary, then poll GET lag:probe on the replica (no pause) until it
      returns n. Lag = time the replica first shows the value - time the primary acknowledged it
      (0 when the replica already had it at the first poll). Prints
      "samples p50_ms p99_ms max_ms" (nearest rank).

  repl_probe.py resync PRIMARY_PORT REPLICA_PORT N [--verify]
      full resync: sends REPLICAOF 127.0.0.1 PRIMARY_PORT to the (empty) replica and polls every
      5 ms until INFO replication says master_link_status:up and DBSIZE answers N. Prints
      "seconds_to_link_up seconds_to_all_keys". --verify then compares every key's value on both
      sides (not timed) and fails on any difference.
"""
import math
import sys
import time

import redis


def key(i):
    return b"k%015d" % i


def val(i):
    return b"v%031d" % i


def conn(port, timeout=60):
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout)


def fill(port, n):
    r = conn(port)
    t0 = time.monotonic()
    batch = 10000
    for start in range(0, n, batch):
        p = r.pipeline(transaction=False)
        for i in range(start, min(start + batch, n)):
            p.set(key(i), val(i))
        p.execute()
    got = r.dbsize()
    if got != n:
        raise SystemExit(f"fill: DBSIZE {got}, wanted {n}")
    print(f"{time.monotonic() - t0:.2f}")


def quantile(v, q):
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    v = sorted(v)
    return v[max(0, math.ceil(q * len(v)) - 1)] if v else float("nan")


def lag(pport, rport, seconds, rate=50.0):
    p = conn(pport, 5)
    r = conn(rport, 5)
    lags = []
    end = time.monotonic() + seconds
    n = 0
    period = 1.0 / rate
    nxt = time.monotonic()
    while time.monotonic() < end:
        n += 1
        tag = b"%d" % n
        p.set(b"lag:probe", tag)
        acked = time.monotonic()
        deadline = acked + 10.0
        while True:
            v = r.get(b"lag:probe")
            now = time.monotonic()
            if v == tag:
                lags.append(now - acked)
                break
            if now > deadline:
                raise SystemExit("lag: the replica did not show a write within 10 s")
        nxt += period
        pause = nxt - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    ms = [x * 1000 for x in lags]
    print(f"{len(ms)} {quantile(ms, .5):.3f} {quantile(ms, .99):.3f} {max(ms):.3f}")


def info_field(r, section, field):
    try:
        return r.info(section).get(field)
    except redis.ResponseError:
        return None


def resync(pport, rport, n, verify):
    r = conn(rport, 5)
    t0 = time.monotonic()
    r.execute_command("REPLICAOF", "127.0.0.1", str(pport))
    t_up = None
    while True:
        now = time.monotonic()
        if now - t0 > 600:
            raise SystemExit("resync: not done within 600 s")
        try:
            if t_up is None and info_field(r, "replication", "master_link_status") == "up":
                t_up = now - t0
            if t_up is not None and r.dbsize() == n:
                t_all = now - t0
                break
        except (redis.BusyLoadingError, redis.ResponseError):
            pass
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        time.sleep(0.005)
    print(f"{t_up:.3f} {t_all:.3f}")
    if verify:
        p = conn(pport)
        rr = conn(rport)
        for start in range(0, n, 10000):
            ks = [key(i) for i in range(start, min(start + 10000, n))]
            a, b = p.mget(ks), rr.mget(ks)
            if a != b:
                bad = next(k for k, x, y in zip(ks, a, b) if x != y)
                raise SystemExit(f"resync: replica differs from the primary at {bad!r}")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd = argv[1]
    if cmd == "fill" and len(argv) == 4:
        fill(int(argv[2]), int(argv[3]))
    elif cmd == "lag" and len(argv) in (5, 6):
        lag(int(argv[2]), int(argv[3]), float(argv[4]), float(argv[5]) if len(argv) == 6 else 50.0)
    elif cmd == "resync" and len(argv) in (5, 6):
        resync(int(argv[2]), int(argv[3]), int(argv[4]), len(argv) == 6 and argv[5] == "--verify")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
