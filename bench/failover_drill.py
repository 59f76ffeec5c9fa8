# SPDX-License-Identifier: MIT
"""bench/failover_drill.py -- kill the store's primary under write load and measure what a client sees.

N writer threads (redis-py, one connection each) write as fast as they can: `INCR` on a counter
of their own (--op incr) or `SET` of a new unique key each time (--op set), optionally followed by
`WAIT n timeout` (--wait, Redis's closest thing to synchronous replication: a write counts as
acknowledged only when WAIT reports n replicas). Every acknowledged write is logged. At --kill-at
seconds the fault injector (a callback; the command line one sends SIGKILL to whichever --node
answers ROLE `master`) kills the primary. The writers reconnect on their own: on every reconnect
they ask the target discovery where the primary is now --

  --sentinel HOST:PORT[,HOST:PORT...] --master NAME   ask each Sentinel in turn
                                                      SENTINEL get-master-addr-by-name NAME
  --addr HOST:PORT                                    a fixed address (a balancer in front of
                                                      the nodes, as tandem clients use)

-- and keep writing until --after seconds past the first acknowledged write after the kill. Then
every counter/key is read back from the (new) primary.

Per run it prints one JSON object:
  kill_to_first_ack_ms   kill -> first acknowledged write whose request was sent after the kill
                         (client side, time.monotonic); null when writes never resumed
  all_threads_back_ms    kill -> every thread has had such an acknowledged write
  failed_requests        writes sent on an open connection that got no acknowledgement (error
                         reply, reset, timeout, WAIT short of n): their outcome is unknown
  refused_connects       connection attempts that failed (nothing was sent)
  errors                 failed requests and refused connects by kind
  acked, attempted       acknowledged writes, and writes sent (acked + failed)
  lost_writes            acknowledged writes not on the new primary: for a counter, acked - value
                         when the value is below the number of acknowledged INCRs (the integration
                         tests' definition); for --op set, acknowledged keys that are missing
  over_count             counters above the number of INCRs sent (must be 0: a bug if not)
  threads_with_loss      how many counters/threads lost something
  old_primary, new_primary, kill_wall (epoch seconds of the kill, to match server logs)

Used by bench/failover.sh; runs on its own too:
  /usr/bin/python3 bench/failover_drill.py --sentinel 127.0.0.1:26379 --master mymaster \\
      --node 127.0.0.1:6379=PID1 --node 127.0.0.1:6380=PID2 --threads 8 --kill-at 2 --after 2
"""
import argparse
import json
import os
import signal
import sys
import threading
import time

import redis


def parse_addr(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got {text!r}")
    return host, int(port)


# --- target discovery -----------------------------------------------------------------------------

class FixedTarget:
    """The primary is always behind one address (a balancer that routes by role)."""

    def __init__(self, addr):
        self.addr = addr

    def primary(self):
        return self.addr

    def describe(self):
        return f"fixed {self.addr[0]}:{self.addr[1]}"


class SentinelTarget:
    """Asks the Sentinels in turn (first that answers wins), as Sentinel-aware clients do."""

    def __init__(self, sentinels, master, timeout=0.2):
        self.sentinels = sentinels
        self.master = master
        self.timeout = timeout

    def primary(self):
        last = None
        for host, port in self.sentinels:
            c = redis.Connection(host=host, port=port, socket_timeout=self.timeout,
                                 socket_connect_timeout=self.timeout)
            try:
                c.connect()
                c.send_command("SENTINEL", "get-master-addr-by-name", self.master)
                r = c.read_response()
                if r:
                    return r[0].decode(), int(r[1])
            except (redis.RedisError, OSError) as e:
                last = e
            finally:
                c.disconnect()
        raise redis.ConnectionError(f"no Sentinel knows master {self.master}: {last}")

    def describe(self):
        return "sentinel " + ",".join(f"{h}:{p}" for h, p in self.sentinels) + f" {self.master}"


# --- fault injection ------------------------------------------------------------------------------

def role_of(addr, timeout=0.3):
    c = redis.Connection(host=addr[0], port=addr[1], socket_timeout=timeout,
                         socket_connect_timeout=timeout)
    try:
        c.connect()
        c.send_command("ROLE")
        r = c.read_response()
        return r[0].decode() if isinstance(r[0], bytes) else str(r[0])
    except (redis.RedisError, OSError):
        return None
    finally:
        c.disconnect()


def kill_primary_of(nodes):
    """Returns a fault callback: SIGKILL the node (ADDR -> PID) that answers ROLE master."""

    def kill():
        for addr, pid in nodes.items():
            if role_of(addr) == "master":
                t = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                return t, f"{addr[0]}:{addr[1]}", pid
        raise RuntimeError("no --node answers ROLE master: nothing to kill")

    return kill


# --- the writer -----------------------------------------------------------------------------------

def error_kind(e):
    if isinstance(e, redis.TimeoutError):
        return "timeout"
    if isinstance(e, redis.ResponseError):
        word = str(e).split(" ", 1)[0]
        return word.lower() if word.isupper() else "error-reply"
    if isinstance(e, (redis.ConnectionError, OSError)):
        return "connection"
    return type(e).__name__


class Writer(threading.Thread):
    def __init__(self, drill, idx):
        super().__init__(daemon=True)
        self.d = drill
        self.idx = idx
        self.key = f"{drill.prefix}:c:{idx}"
        self.acked = 0          # acknowledged writes
        self.attempted = 0      # writes sent (acknowledged or not)
        self.acked_keys = []    # --op set
        self.failed = 0
        self.refused = 0
        self.errors = {}
        self.first_ack_after_kill = None   # monotonic
        self.last_ack = None

    def err(self, kind):
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def run(self):
        d = self.d
        conn = None
        seq = 0
        while not d.stop.is_set():
            if conn is None:
                try:
                    host, port = d.target.primary()
                    conn = redis.Connection(host=host, port=port, socket_timeout=d.timeout,
                                            socket_connect_timeout=d.timeout)
                    conn.connect()
                except (redis.RedisError, OSError) as e:
                    conn = None
                    self.refused += 1
                    self.err("connect-" + error_kind(e))
                    d.stop.wait(d.backoff)
                    continue
            sent_at = time.monotonic()
            try:
                if d.op == "incr":
                    self.attempted += 1
                    conn.send_command("INCR", self.key)
                    conn.read_response()
                else:
                    seq += 1
                    key = f"{d.prefix}:k:{self.idx}:{seq}"
                    self.attempted += 1
                    conn.send_command("SET", key, "v")
                    conn.read_response()
                if d.wait:
                    conn.send_command("WAIT", d.wait, d.wait_timeout_ms)
                    n = conn.read_response()
                    if n < d.wait:
                        raise redis.ResponseError(f"WAITSHORT {n} of {d.wait} replicas")
            except (redis.RedisError, OSError) as e:
                self.failed += 1
                self.err(error_kind(e))
                try:
                    conn.disconnect()
                except (redis.RedisError, OSError):
                    pass
                conn = None
                d.stop.wait(d.backoff)
                continue
            self.acked += 1
            if d.op == "set":
                self.acked_keys.append(key)
            now = time.monotonic()
            self.last_ack = now
            if self.first_ack_after_kill is None and d.kill_t is not None and sent_at > d.kill_t:
                self.first_ack_after_kill = now
                d.resumed.set()
        if conn is not None:
            conn.disconnect()


class Drill:
    def __init__(self, target, kill, threads=8, op="incr", wait=0, wait_timeout_ms=1000,
                 timeout=1.0, backoff=0.02, prefix=None):
        self.target = target
        self.kill = kill
        self.threads = threads
        self.op = op
        self.wait = wait
        self.wait_timeout_ms = wait_timeout_ms
        self.timeout = timeout
        self.backoff = backoff
        self.prefix = prefix or f"drill:{os.getpid()}:{int(time.time() * 1000)}"
        self.stop = threading.Event()
        self.resumed = threading.Event()
        self.kill_t = None

    def run(self, kill_at=2.0, after=2.0, max_down=60.0):
        """Writes, kills at kill_at s, continues until after s past the first post-kill ack (or
        max_down s without one), then verifies. Returns the result dict."""
        old_primary = "%s:%d" % self.target.primary()
        ws = [Writer(self, i) for i in range(self.threads)]
        t0 = time.monotonic()
        for w in ws:
            w.start()
        ready_by = t0 + 10.0
        while any(w.acked == 0 for w in ws):
            if time.monotonic() > ready_by or self.stop.is_set():
                self.stop.set()
                raise RuntimeError("writers got no acknowledgement within 10 s")
            time.sleep(0.01)
        time.sleep(max(0.0, t0 + kill_at - time.monotonic()))
        acked_before = sum(w.acked for w in ws)
        rate_before = acked_before / (time.monotonic() - t0)
        failed_before = sum(w.failed for w in ws)
        kill_wall = time.time()
        self.kill_t, killed_addr, killed_pid = self.kill()
        resumed = self.resumed.wait(max_down)
        if resumed:
            time.sleep(after)
            deadline = time.monotonic() + max_down
            while (any(w.first_ack_after_kill is None for w in ws)
                   and time.monotonic() < deadline):
                time.sleep(0.02)
        self.stop.set()
        for w in ws:
            w.join(self.timeout * 3 + 1)
        firsts = [w.first_ack_after_kill for w in ws if w.first_ack_after_kill is not None]
        res = {
            "target": self.target.describe(),
            "op": self.op,
            "wait": self.wait,
            "threads": self.threads,
            "kill_wall": round(kill_wall, 3),
            "killed": killed_addr,
            "killed_pid": killed_pid,
            "old_primary": old_primary,
            "writes_per_s_before": round(rate_before),
            "failed_before_kill": failed_before,
            "kill_to_first_ack_ms": round((min(firsts) - self.kill_t) * 1000, 1) if firsts else None,
            "all_threads_back_ms": (round((max(firsts) - self.kill_t) * 1000, 1)
                                    if len(firsts) == len(ws) else None),
            "failed_requests": sum(w.failed for w in ws),
            "refused_connects": sum(w.refused for w in ws),
            "errors": {},
            "acked": sum(w.acked for w in ws),
            "attempted": sum(w.attempted for w in ws),
        }
        for w in ws:
            for k, v in w.errors.items():
                res["errors"][k] = res["errors"].get(k, 0) + v
        res.update(self.verify(ws))
        return res

    def verify(self, ws):
        """Reads every counter/key back from the current primary."""
        deadline = time.monotonic() + 30.0
        while True:
            try:
                host, port = self.target.primary()
                r = redis.Redis(host=host, port=port, socket_timeout=10)
                lost = over = with_loss = 0
                if self.op == "incr":
                    vals = r.mget([w.key for w in ws])
                    for w, v in zip(ws, vals):
                        n = int(v) if v is not None else 0
                        if n < w.acked:
                            lost += w.acked - n
                            with_loss += 1
                        if n > w.attempted:
                            over += n - w.attempted
                else:
                    for w in ws:
                        keys = w.acked_keys
                        missing = 0
                        for i in range(0, len(keys), 1000):
                            vals = r.mget(keys[i:i + 1000])
                            missing += sum(1 for v in vals if v is None)
                        lost += missing
                        with_loss += 1 if missing else 0
                r.close()
                return {"new_primary": f"{host}:{port}", "lost_writes": lost,
                        "over_count": over, "threads_with_loss": with_loss}
            except (redis.RedisError, OSError) as e:
                if time.monotonic() > deadline:
                    return {"new_primary": None, "lost_writes": None, "over_count": None,
                            "threads_with_loss": None, "verify_error": str(e)}
                time.sleep(0.1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--sentinel", help="HOST:PORT[,HOST:PORT...] of the Sentinels")
    g.add_argument("--addr", type=parse_addr, help="fixed HOST:PORT (a balancer)")
    ap.add_argument("--master", default="mymaster", help="Sentinel master name")
    ap.add_argument("--node", action="append", default=[], metavar="HOST:PORT=PID",
                    help="a store node and its PID (repeat); the one answering ROLE master is killed")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--op", choices=("incr", "set"), default="incr")
    ap.add_argument("--wait", type=int, default=0, help="WAIT for N replicas after each write")
    ap.add_argument("--wait-timeout-ms", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=1.0, help="client socket timeout, s")
    ap.add_argument("--backoff", type=float, default=0.02, help="pause after a failed attempt, s")
    ap.add_argument("--kill-at", type=float, default=2.0, help="s after the writers start")
    ap.add_argument("--after", type=float, default=2.0, help="s of writing after the first post-kill ack")
    ap.add_argument("--max-down", type=float, default=60.0, help="give up after s without an ack")
    a = ap.parse_args(argv)
    if a.sentinel:
        target = SentinelTarget([parse_addr(s) for s in a.sentinel.split(",")], a.master)
    else:
        target = FixedTarget(a.addr)
    nodes = {}
    for n in a.node:
        addr, _, pid = n.rpartition("=")
        nodes[parse_addr(addr)] = int(pid)
    if not nodes:
        ap.error("give the nodes to kill with --node HOST:PORT=PID")
    timeout = a.timeout
    if a.wait:
        timeout = max(timeout, a.wait_timeout_ms / 1000.0 + 1.0)
    d = Drill(target, kill_primary_of(nodes), threads=a.threads, op=a.op, wait=a.wait,
              wait_timeout_ms=a.wait_timeout_ms, timeout=timeout, backoff=a.backoff)
    try:
        res = d.run(kill_at=a.kill_at, after=a.after, max_down=a.max_down)
    except KeyboardInterrupt:
        d.stop.set()
        return 130
    print(json.dumps(res, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
