# SPDX-License-Identifier: MIT
"""Recovery time of tandem db against redis-server with AOF, for N keys.

For each server and each scenario, a fresh data directory is filled with N keys (16-byte keys,
32-byte values, pipelined SETs through redis-py, 10,000 per round trip) with everysec
persistence, the server is killed with SIGKILL, and a new server is started on the same
directory. The time reported is from spawning the new process until it answers DBSIZE with N
(polled every 5 ms: Redis answers -LOADING while it loads, tandem listens only once recovered).

Scenarios:
  log       everything in the log: tandem --snapshot-growth 0 (no automatic snapshot);
            redis --auto-aof-rewrite-percentage 0 (its multi-part AOF: an empty base, then the
            incremental file with every SET)
  snapshot  compacted first: tandem SAVE, redis BGREWRITEAOF (an RDB base, aof-use-rdb-preamble)

Usage: store_recovery.py [--keys 1000000] [--runs 3] [--scenarios log,snapshot]
Prints raw results as comments and a markdown table of medians.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TANDEM = os.environ.get("TANDEM_BIN", os.path.join(ROOT, "build", "tandem"))
REDIS = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(kind, port, data, scenario, log):
    if kind == "tandem":
        argv = [TANDEM, "db", "--listen", f"127.0.0.1:{port}", "--dir", data, "--fsync",
                "everysec"]
        if scenario == "log":
            argv += ["--snapshot-growth", "0"]
    else:
        argv = [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", data, "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no"]
        if scenario == "log":
            argv += ["--auto-aof-rewrite-percentage", "0"]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def wait_keys(port, n, proc, timeout=600):
    """Seconds until the server at port answers DBSIZE == n."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60,
                            socket_connect_timeout=1)
            if r.dbsize() == n:
                r.close()
                return
            r.close()
        except (redis.ConnectionError, redis.BusyLoadingError, redis.ResponseError):
            pass
        time.sleep(0.005)
    raise RuntimeError("timed out waiting for the keys")


def load(port, n):
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=120)
    batch = 10000
    for start in range(0, n, batch):
        p = r.pipeline(transaction=False)
        for i in range(start, min(start + batch, n)):
            p.set(b"k%015d" % i, b"v%031d" % i)
        p.execute()
    assert r.dbsize() == n
    return r


def wait_persisted(kind, r):
    """Until the write-behind is on disk and no background job runs."""
    for _ in range(6000):
        info = r.info("persistence")
        if kind == "tandem":
            done = (info["tandem_written_lsn"] == info["tandem_last_lsn"]
                    and info["tandem_snapshot_in_progress"] == 0)
        else:
            done = (info["aof_rewrite_in_progress"] == 0 and info["aof_rewrite_scheduled"] == 0
                    and info.get("aof_buffer_length", 0) == 0)
        if done:
            return
        time.sleep(0.01)
    raise RuntimeError("persistence did not settle")


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def one(kind, scenario, n, tmp):
    data = tempfile.mkdtemp(prefix=f"{kind}-{scenario}-", dir=tmp)
    with open(os.path.join(data, "..", f"{os.path.basename(data)}.log"), "w") as log:
        port = free_port()
        p = spawn(kind, port, data, scenario, log)
        try:
            wait_keys(port, 0, p, 30)
            r = load(port, n)
            if scenario == "snapshot":
                # (an automatic rewrite may be running already: wait for it first)
                wait_persisted(kind, r)
                r.execute_command("SAVE" if kind == "tandem" else "BGREWRITEAOF")
            wait_persisted(kind, r)
            time.sleep(1.2)  # everysec: let the last fdatasync happen, as after a quiet second
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        size = dir_bytes(data)
        port = free_port()
        t0 = time.monotonic()
        p = spawn(kind, port, data, scenario, log)
        try:
            wait_keys(port, n, p)
            secs = time.monotonic() - t0
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait()
    shutil.rmtree(data)
    return secs, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scenarios", default="log,snapshot")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tandem-recovery-")
    res = {}
    try:
        for scenario in a.scenarios.split(","):
            for run in range(a.runs):
                order = ["tandem", "redis"] if run % 2 == 0 else ["redis", "tandem"]
                for kind in order:
                    secs, size = one(kind, scenario, a.keys, tmp)
                    res.setdefault((scenario, kind), []).append((secs, size))
                    print(f"# raw scenario={scenario} run={run + 1} {kind} "
                          f"restart_s={secs:.3f} disk_bytes={size}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("| data on disk | keys | tandem restart | redis restart | tandem/redis time | "
          "tandem disk | redis disk |")
    print("|---|---|---|---|---|---|---|")
    for scenario in a.scenarios.split(","):
        t = statistics.median(s for s, _ in res[(scenario, "tandem")])
        rd = statistics.median(s for s, _ in res[(scenario, "redis")])
        tb = statistics.median(b for _, b in res[(scenario, "tandem")])
        rb = statistics.median(b for _, b in res[(scenario, "redis")])
        what = "log only" if scenario == "log" else "snapshot (after SAVE / BGREWRITEAOF)"
        print(f"| {what} | {a.keys:,} | {t:.2f} s | {rd:.2f} s | {t / rd:.2f} | "
              f"{tb / 1e6:.1f} MB | {rb / 1e6:.1f} MB |")


if __name__ == "__main__":
    sys.exit(main())
