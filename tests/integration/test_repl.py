# SPDX-License-Identifier: MIT
"""tandem db replication with real processes and redis-py: a replica converges to the primary's
exact keyspace under load and refuses writes; full resync after the primary compacted its log,
partial resync after a replica restart; kill -9 drills (sync mode: no acknowledged write lost
over 20 rounds; async mode: the loss is measured and a rejoining old primary audits exactly the
records that were not replicated in DIR/discarded-<term>.log); divergence and rejoin; WAIT,
FAILOVER, the term rule, sync-strict, the degraded sync state; hostile REPLSYNC input."""
import glob
import os
import random
import signal
import socket
import struct
import threading
import time

import pytest
import redis

from conftest import free_port, port_open, wait_for
from dbutil import Raw, encode

REC_HEADER = 32  # proto/walrec: magic, payload length, lsn, term, payload CRC, header CRC
SLOW = 60.0 if os.environ.get("TANDEM_SANITIZER") else 30.0  # generous deadlines


# --- nodes ----------------------------------------------------------------------------------

class Node:
    """Successive `tandem db` processes on one data directory (a new port each start)."""

    def __init__(self, procs, name, *args):
        self.procs = procs
        self.name = name
        self.dir = procs.tmp / f"{name}-data"
        self.args = list(args)
        self.n = 0
        self.p = None
        self.port = None
        self.password = args[args.index("--requirepass") + 1] if "--requirepass" in args else None

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self, *extra, replicaof=None):
        self.n += 1
        self.port = free_port()
        more = ["--replicaof", replicaof.addr] if replicaof is not None else []
        self.p = self.procs.tandem(f"{self.name}-{self.n}", "db", "--listen", self.addr, "--dir",
                                   str(self.dir), *self.args, *more, *extra)
        wait_for(lambda: port_open(self.port) or not self.p.alive(), SLOW,
                 what=f"tandem db {self.name}-{self.n} listening")
        assert self.p.alive(), self.p.log()
        return self

    def client(self, **kw):
        kw.setdefault("password", self.password)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=20, **kw)

    def info(self):
        with self.client() as r:
            return r.info("replication")

    def role(self):
        with self.client() as r:
            return r.execute_command("ROLE")

    def last_lsn(self):
        return self.info()["master_repl_offset"]

    def kill9(self):
        self.p.kill9()

    def stop(self):
        assert self.p.stop() == 0, self.p.log()


def linked(replica):
    i = replica.info()
    return i["role"] == "slave" and i["master_link_status"] == "up"


def caught_up(primary, replica):
    """The replica holds the primary's whole log, written to its own log (a replica applies
    records as they arrive and acknowledges them once its log has them)."""
    pi, ri = primary.info(), replica.info()
    return (ri["role"] == "slave" and ri["master_link_status"] == "up"
            and ri["master_repl_offset"] == pi["master_repl_offset"]
            and ri["tandem_acked_lsn"] == ri["master_repl_offset"])


def dump(node):
    """Every key: type, value, and whether it has a TTL."""
    out = {}
    with node.client() as r:
        keys = list(r.scan_iter(count=1000))
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            pipe = r.pipeline(transaction=False)
            for k in chunk:
                pipe.type(k)
                pipe.pttl(k)
            meta = pipe.execute()
            pipe = r.pipeline(transaction=False)
            for j, k in enumerate(chunk):
                t = meta[2 * j]
                if t == b"string":
                    pipe.get(k)
                elif t == b"hash":
                    pipe.hgetall(k)
                else:
                    raise AssertionError(f"unexpected type {t!r} of {k!r}")
            vals = pipe.execute()
            for j, k in enumerate(chunk):
                ttl = meta[2 * j + 1]
                assert ttl == -1 or ttl > 0, (k, ttl)
                out[k] = (meta[2 * j], vals[j], ttl > 0)
    return out


def converge(primary, replica, timeout=SLOW):
    """Waits until the replica holds the primary's log, then compares full dumps."""
    wait_for(lambda: caught_up(primary, replica), timeout,
             what=f"{replica.name} caught up with {primary.name}")
    a, b = dump(primary), dump(replica)
    if a != b:
        only_a = sorted(set(a) - set(b))[:5]
        only_b = sorted(set(b) - set(a))[:5]
        diff = [k for k in a if k in b and a[k] != b[k]][:5]
        pytest.fail(f"dumps differ: only on {primary.name} {only_a}, only on {replica.name} "
                    f"{only_b}, different {[(k, a[k], b[k]) for k in diff]}")
    return a


# --- WAL files (proto/walrec) ------------------------------------------------------------

def parse_records(data, strict=False):
    """Records of a segment or audit file: (lsn, term, argv, raw). A segment may end in zero
    padding (space written ahead of the log); strict: every byte must be a record."""
    out, off = [], 0
    while off + REC_HEADER <= len(data) and data[off:off + 4] == b"TWR1":
        n, lsn, term = struct.unpack_from("<IQQ", data, off + 4)
        payload = data[off + REC_HEADER:off + REC_HEADER + n]
        argc = struct.unpack_from("<I", payload, 0)[0]
        argv, p = [], 4
        for _ in range(argc):
            ln = struct.unpack_from("<I", payload, p)[0]
            argv.append(payload[p + 4:p + 4 + ln])
            p += 4 + ln
        out.append((lsn, term, argv, data[off:off + REC_HEADER + n]))
        off += REC_HEADER + n
    rest = data[off:]
    if strict:
        assert off == len(data), f"{len(data) - off} bytes after the last record"
    elif rest[:4] == b"TWR1":
        # a record torn by kill -9 in the middle of its write (recovery cuts it): its header or
        # its payload runs past the end of the file
        n = struct.unpack_from("<I", rest, 4)[0] if len(rest) >= 8 else 0
        assert len(rest) < REC_HEADER or REC_HEADER + n > len(rest), "garbage after a record"
    else:
        assert rest.count(0) == len(rest), "garbage after the last record"
    return out


def log_records(node):
    """Every record in the node's log segments, in lsn order."""
    recs = []
    for path in sorted(glob.glob(str(node.dir / "wal-*.log"))):
        with open(path, "rb") as f:
            recs += parse_records(f.read())
    for a, b in zip(recs, recs[1:]):
        assert b[0] == a[0] + 1, "lsn gap in the log"
    return recs


def discarded_files(node):
    return sorted(glob.glob(str(node.dir / "discarded-*.log")))


# --- writers with an acknowledged-write log ----------------------------------------------

class Model:
    """What writers attempted and what the server acknowledged, over every round."""

    def __init__(self):
        self.lock = threading.Lock()
        self.attempted = {}   # key -> value of every SET sent (keys are unique)
        self.acked = set()    # keys whose SET was acknowledged
        self.seen = set()     # keys found on a promoted node: they must stay
        self.ctr_attempted = {}
        self.ctr_acked = {}
        self.acked_ops = 0


def writer(port, model, wid, rnd, stop, seed, pipeline=4):
    """Unique SETs and INCRs of this writer's own counter until the connection fails or stop
    is set. Odd writers pipeline `pipeline` commands per round trip. A write that got no reply, or an
    error reply, is attempted but not acknowledged."""
    rng = random.Random(seed)
    ctr = f"ctr:{wid}"
    with model.lock:
        model.ctr_attempted.setdefault(ctr, 0)
        model.ctr_acked.setdefault(ctr, 0)
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=20)
    seq, batch = 0, (pipeline if wid % 2 else 1)
    try:
        while not stop.is_set():
            ops = []
            for _ in range(batch):
                seq += 1
                if rng.random() < 0.3:
                    ops.append(("incr", ctr, None))
                else:
                    ops.append(("set", f"k:{rnd}:{wid}:{seq}", f"v{seq}:" + "x" * rng.randrange(20)))
            with model.lock:
                for kind, k, v in ops:
                    if kind == "set":
                        model.attempted[k] = v
                    else:
                        model.ctr_attempted[k] += 1
            pipe = r.pipeline(transaction=False)
            for kind, k, v in ops:
                pipe.set(k, v) if kind == "set" else pipe.incr(k)
            res = pipe.execute(raise_on_error=False)
            with model.lock:
                for (kind, k, v), reply in zip(ops, res):
                    if isinstance(reply, Exception):
                        continue
                    if kind == "set":
                        assert reply is True
                        model.acked.add(k)
                    else:
                        model.ctr_acked[k] += 1
                    model.acked_ops += 1
            if any(isinstance(x, Exception) for x in res):
                return  # refused (READONLY during a failover): this writer is done
    except (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError):
        pass  # the server died: whatever was in flight is not acknowledged
    finally:
        r.close()


def run_writers(node, model, rnd, rng, nthreads=4, min_acked=30, kill=None, pipeline=4):
    """Starts writers on node, waits for min_acked more acknowledged writes, calls kill() at a
    random moment shortly after, and waits for the writers to end."""
    stop = threading.Event()
    ws = [threading.Thread(target=writer, args=(node.port, model, w, rnd, stop,
                                                rng.randrange(1 << 30), pipeline))
          for w in range(nthreads)]
    before = model.acked_ops
    for t in ws:
        t.start()
    wait_for(lambda: model.acked_ops >= before + min_acked, SLOW, interval=0.002,
             what="writes acknowledged")
    time.sleep(rng.uniform(0.0, 0.1))  # a random kill point, not a wait for a condition
    if kill:
        kill()
    stop.set()
    for t in ws:
        t.join(SLOW)
        assert not t.is_alive()


def check_model(node, model, rnd):
    """On a promoted node: every acknowledged write is there, nothing unknown, values intact,
    counters between acknowledged and attempted. Returns the acknowledged SETs missing."""
    with node.client() as r:
        keys = set(k.decode() for k in r.scan_iter(count=1000))
        unknown = [k for k in keys if k not in model.attempted and k not in model.ctr_attempted]
        assert not unknown, f"round {rnd}: unknown keys {unknown[:5]}"
        gone = [k for k in model.seen if k not in keys]
        assert not gone, f"round {rnd}: keys present on an earlier primary are gone: {gone[:5]}"
        names = sorted(k for k in keys if k in model.attempted)
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            for k, v in zip(chunk, r.mget(chunk)):
                assert v is not None and v.decode() == model.attempted[k], f"round {rnd}: {k}"
        model.seen |= set(names)
        ctr_low = {}
        for c in model.ctr_attempted:
            v = int(r.get(c) or 0)
            assert v <= model.ctr_attempted[c], f"round {rnd}: {c}={v} > attempted"
            if v < model.ctr_acked[c]:
                ctr_low[c] = model.ctr_acked[c] - v
    lost = sorted(k for k in model.acked if k not in keys)
    return lost, ctr_low


# --- 1. convergence, read-only replicas -------------------------------------------------

def mixed_load(port, wid, nops, seed):
    rng = random.Random(seed)
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=20)
    for i in range(nops):
        k = f"s:{rng.randrange(200)}"
        h = f"h:{rng.randrange(50)}"
        op = rng.random()
        pipe = r.pipeline(transaction=False)
        if op < 0.3:
            pipe.set(k, f"{wid}:{i}")
        elif op < 0.45:
            pipe.incr(f"c:{rng.randrange(10)}")
        elif op < 0.65:
            pipe.hset(h, f"f{rng.randrange(8)}", i)
        elif op < 0.72:
            pipe.delete(k)
        elif op < 0.77:
            pipe.hdel(h, f"f{rng.randrange(8)}")
        elif op < 0.87:
            pipe.expire(k if rng.random() < 0.5 else h, 1000 + rng.randrange(1000))
        elif op < 0.92:
            pipe.persist(k)
        else:
            pipe.set(k, "ttl", ex=500 + rng.randrange(500))
        pipe.execute()
    r.close()


def test_replica_converges_and_is_read_only(procs):
    p = Node(procs, "p").start()
    rep = Node(procs, "r").start(replicaof=p)
    wait_for(lambda: linked(rep), SLOW, what="replica linked")
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    ts = [threading.Thread(target=mixed_load, args=(p.port, w, 400, seed + w)) for w in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
        assert not t.is_alive()
    d = converge(p, rep)
    types = {v[0] for v in d.values()}
    assert types == {b"string", b"hash"} and any(v[2] for v in d.values()), d
    assert len(d) > 100
    # Reads on the replica; writes refused as Redis refuses them.
    with rep.client() as r:
        some = next(k for k, v in d.items() if v[0] == b"string")
        assert r.get(some) == d[some][1]
        assert r.dbsize() == len(d)
        for write in (lambda: r.set("x", 1), lambda: r.incr("c:0"), lambda: r.hset("h:0", "a", 1),
                      lambda: r.delete(some), lambda: r.expire(some, 5)):
            with pytest.raises(redis.exceptions.ReadOnlyError):
                write()
    assert dump(rep) == d
    # ROLE in Redis's shapes (the primary learns the replica's position from its acks).
    wait_for(lambda: p.role()[2][0][2] == str(p.last_lsn()).encode(), SLOW, what="ack seen")
    role = p.role()
    assert role[0] == b"master" and role[1] == p.last_lsn()
    assert role[2] == [[b"127.0.0.1", str(rep.port).encode(), str(role[1]).encode()]]
    role = rep.role()
    assert role[:4] == [b"slave", b"127.0.0.1", p.port, b"connected"] and role[4] == role[4]
    info = p.info()
    assert info["connected_slaves"] == 1 and info["slave0"]["state"] == "online"
    assert info["slave0"]["port"] == rep.port and info["slave0"]["offset"] == info[
        "master_repl_offset"]
    ri = rep.info()
    assert ri["master_port"] == p.port and ri["tandem_lag_records"] == 0
    assert ri["tandem_full_syncs"] == 0 and ri["tandem_writable"] == 0


# --- 2. full and partial resync ---------------------------------------------------------

def test_full_resync_after_compaction_and_partial_after_restart(procs):
    p = Node(procs, "p", "--wal-segment-size", "4kb").start()
    rep = Node(procs, "r").start(replicaof=p)
    with p.client() as r:
        for i in range(200):
            r.set(f"a:{i}", i)
    converge(p, rep)
    # Partial resync: the replica restarts, the primary's log still reaches back.
    rep.stop()
    with p.client() as r:
        for i in range(200):
            r.set(f"b:{i}", i)
        r.hset("h", mapping={"x": 1, "y": 2})
    rep.start(replicaof=p)
    converge(p, rep)
    pi, ri = p.info(), rep.info()
    assert pi["tandem_full_syncs"] == 0 and ri["tandem_full_syncs"] == 0, (pi, ri)
    assert ri["tandem_truncations"] == 0 and ri["tandem_connects"] >= 1
    assert "answer=continue" in rep.p.log()
    # Full resync: the replica is away while the primary takes writes and compacts its log.
    stopped_at = rep.last_lsn()
    rep.stop()
    with p.client() as r:
        pipe = r.pipeline(transaction=False)
        for i in range(600):
            pipe.set(f"c:{i % 300}", "v" * 30 + str(i))
        pipe.execute()
        assert r.execute_command("SAVE") is True
        for i in range(20):
            r.set(f"d:{i}", i)
        r.expire("d:0", 1000)
    first = sorted(glob.glob(str(p.dir / "wal-*.log")))[0]
    assert int(os.path.basename(first)[4:24]) > stopped_at + 1, "old segments still there"
    rep.start(replicaof=p)
    converge(p, rep)
    pi, ri = p.info(), rep.info()
    assert pi["tandem_full_syncs"] == 1 and ri["tandem_full_syncs"] == 1, (pi, ri)
    assert "answer=full" in p.p.log()
    # After the snapshot the replica resumes with a partial resync again.
    rep.stop()
    with p.client() as r:
        r.set("e", 1)
    rep.start(replicaof=p)
    converge(p, rep)
    assert p.info()["tandem_full_syncs"] == 1 and rep.info()["tandem_full_syncs"] == 0


# --- 3 and 4. kill -9 drills ----------------------------------------------------------------

def wait_sync_ok(primary):
    def ok():
        i = primary.info()
        return (i["tandem_sync_state"] == "ok" and i["tandem_unsynced_recorded"] == 0
                and i["tandem_writable"] == 1)
    wait_for(ok, SLOW, what=f"{primary.name} in sync with a replica")


def promote(node):
    with node.client() as r:
        assert r.execute_command("REPLICAOF", "NO", "ONE") == b"OK"
    wait_for(lambda: node.info()["tandem_writable"] == 1, SLOW, what="promoted")


def drill(procs, sync, rounds, seed, pipeline=4):
    """Two nodes; each round: writers on the primary, kill -9 it mid-load, promote the replica,
    check, restart the old primary as a replica of the new one, check its audit of the records
    it had to discard. Yields per-round facts."""
    rng = random.Random(seed)
    extra = ["--sync-replicas", "1", "--repl-max-lag", "20s"] if sync else []
    a = Node(procs, "a", *extra).start()
    b = Node(procs, "b", *extra).start(replicaof=a)
    primary, replica = a, b
    model = Model()
    for rnd in range(rounds):
        wait_for(lambda: caught_up(primary, replica), SLOW, what="caught up")
        if sync:
            wait_sync_ok(primary)
        run_writers(primary, model, rnd, rng, kill=primary.kill9, pipeline=pipeline)
        # The replica keeps what it received; its last lsn is the common prefix.
        wait_for(lambda: replica.info()["master_link_status"] == "down", SLOW, what="link down")
        kept = replica.last_lsn()
        old_log = [rec for rec in log_records(primary) if rec[0] > kept]
        old_term = primary_term = log_records(primary)[-1][1]
        promote(replica)
        assert replica.info()["tandem_term"] > primary_term
        lost, ctr_low = check_model(replica, model, rnd)
        before = discarded_files(primary)
        primary.start(replicaof=replica)
        facts = dict(rnd=rnd, lost=lost, ctr_low=ctr_low, unreplicated=old_log, model=model,
                     old=primary, new=replica, old_term=old_term, before=before)
        facts["audit"] = check_audit(facts)
        yield facts
        primary, replica = replica, primary
    converge(primary, replica)


def check_audit(r):
    """The rejoined old primary cut exactly the records the new primary never received, wrote
    them to DIR/discarded-<term>.log and counts them in INFO. Returns the audited SETs."""
    old, new, m, expect = r["old"], r["new"], r["model"], r["unreplicated"]
    wait_for(lambda: caught_up(new, old), SLOW, what="old primary rejoined")
    info = old.info()
    assert info["tandem_discarded_records"] == len(expect), (info, len(expect))
    assert info["tandem_truncations"] == (1 if expect else 0), info
    new_files = [f for f in discarded_files(old) if f not in r["before"]]
    if not expect:
        assert not new_files
        return {}
    assert [os.path.basename(f) for f in new_files] == [f"discarded-{r['old_term']}.log"]
    with open(new_files[0], "rb") as f:
        audit = parse_records(f.read(), strict=True)
    assert [x[3] for x in audit] == [x[3] for x in expect]
    # INCR is logged in resolved form: SET ctr:N <value>.
    sets, ctrs = {}, {}
    for lsn, term, argv, raw in audit:
        assert term == r["old_term"] and argv and argv[0].upper() == b"SET", argv
        k, v = argv[1].decode(), argv[2].decode()
        (ctrs if k in m.ctr_attempted else sets)[k] = v
    # Key by key against the writers' log: every acknowledged SET that is lost is in the audit
    # with its value, nothing in the audit is on the new primary, every audited SET was sent;
    # an audited counter value is above the new primary's and no more than was attempted.
    for k in r["lost"]:
        assert sets.get(k) == m.attempted[k], f"lost {k} not in the audit"
    with new.client() as c:
        if sets:
            assert c.exists(*sets) == 0
        for k, v in ctrs.items():
            assert int(c.get(k) or 0) < int(v) <= m.ctr_attempted[k], k
    for k, v in sets.items():
        assert m.attempted[k] == v
    return sets


def test_sync_replicas_kill9_promote_loses_no_acknowledged_write(procs):
    seed = int(os.environ.get("TANDEM_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed={seed}")
    t0 = time.monotonic()
    rounds = discarded = 0
    for r in drill(procs, True, 20, seed):
        discarded += len(r["unreplicated"])
        assert not r["lost"], f"round {r['rnd']}: acknowledged SETs lost {r['lost'][:5]}"
        assert not r["ctr_low"], f"round {r['rnd']}: counters below acknowledged {r['ctr_low']}"
        rounds += 1
    m = r["model"]
    print(f"sync drill: {rounds} rounds, {m.acked_ops} acknowledged writes, "
          f"{len(m.attempted)} SETs attempted, {discarded} unacknowledged records discarded "
          f"on rejoin, {time.monotonic() - t0:.1f}s")
    assert rounds == 20 and len(m.acked) > 200


def test_async_kill9_measures_loss_and_audits_discarded_records(procs):
    seed = int(os.environ.get("TANDEM_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed={seed}")
    total_lost = total_acked_sets = total_discarded = 0
    per_round = []
    for r in drill(procs, False, 8, seed, pipeline=16):
        expect = r["unreplicated"]
        m = r["model"]
        total_lost += len(r["lost"])
        total_discarded += len(expect)
        per_round.append((len(r["lost"]), len(expect)))
        # The lost writes are lost for good: drop them from the model.
        for k in r["lost"]:
            m.acked.discard(k)
        for c, n in r["ctr_low"].items():
            m.ctr_acked[c] -= n
    total_acked_sets = len(m.acked) + total_lost
    print(f"async drill: {len(per_round)} rounds, acknowledged SETs {total_acked_sets}, "
          f"acknowledged SETs lost {total_lost}, records discarded on rejoin {total_discarded}, "
          f"per round (lost, discarded) {per_round}")


# --- 5. divergence ----------------------------------------------------------------------

@pytest.mark.parametrize("how", ["crash", "split"])
def test_divergent_suffix_is_discarded_and_audited(procs, how):
    """crash: the replica dies (kill -9), the primary writes, then dies too; the replica
    restarts (still configured to follow the dead primary), is promoted and writes; the old
    primary restarts as its replica. split: the replica is promoted while the primary still
    takes writes; then the old primary is told REPLICAOF at runtime."""
    p = Node(procs, "p", "--fsync", "always").start()
    rep = Node(procs, "r", "--fsync", "always").start(replicaof=p)
    with p.client() as r:
        for i in range(50):
            r.set(f"base:{i}", i)
    converge(p, rep)
    common = rep.last_lsn()
    if how == "crash":
        rep.kill9()
    else:
        promote(rep)
    with p.client() as r:
        for i in range(20):
            r.set(f"div:{i}", f"old{i}")
        r.hset("hdiv", "f", "old")
        r.incr("base:0")
    ours = [rec for rec in log_records(p) if rec[0] > common]
    assert len(ours) == 22
    old_term = ours[0][1]
    if how == "crash":
        p.kill9()
        rep.start(replicaof=p)
        promote(rep)
    with rep.client() as r:
        for i in range(0, 20, 2):
            r.set(f"div:{i}", f"new{i}")
        r.set("fresh", 1)
    assert rep.info()["tandem_term"] > old_term
    if how == "crash":
        p.start(replicaof=rep)
    else:
        with p.client() as r:
            assert r.execute_command("REPLICAOF", "127.0.0.1", rep.port) == b"OK"
    d = converge(rep, p)
    info = p.info()
    assert info["tandem_truncations"] == 1 and info["tandem_discarded_records"] == 22, info
    assert discarded_files(p) == [str(p.dir / f"discarded-{old_term}.log")]
    with open(discarded_files(p)[0], "rb") as f:
        audit = parse_records(f.read(), strict=True)
    assert [x[3] for x in audit] == [x[3] for x in ours]
    assert [x[2][:2] for x in audit[:2]] == [[b"SET", b"div:0"], [b"SET", b"div:1"]]
    assert d[b"div:0"][1] == b"new0" and b"div:1" not in d and b"hdiv" not in d
    assert d[b"base:0"][1] == b"0" and d[b"fresh"][1] == b"1"
    assert "log truncated" in p.p.log()


def test_replica_restarted_as_primary_takes_a_new_term(procs):
    """An operator's failover by restart: the replica dies, the primary writes more and dies,
    the replica is restarted on its own (no --replicaof) and takes writes, the old primary
    rejoins it. The restarted replica must not resume in the old primary's term: both logs
    would then hold different records under (term 1, same lsns), log matching would keep the
    old primary's records, and the two datasets would differ without a word."""
    p = Node(procs, "p").start()
    rep = Node(procs, "r").start(replicaof=p)
    with p.client() as r:
        for i in range(5):
            r.set(f"base:{i}", i)
    converge(p, rep)
    rep.kill9()
    with p.client() as r:
        for i in range(5):
            r.set(f"old:{i}", i)
    p.kill9()
    rep.start()
    assert rep.info()["tandem_term"] == 2
    assert "taking a new term" in rep.p.log()
    with rep.client() as r:
        for i in range(3):
            r.set(f"new:{i}", i)
    p.start(replicaof=rep)
    d = converge(rep, p)
    assert sorted(d) == sorted([f"base:{i}".encode() for i in range(5)]
                               + [f"new:{i}".encode() for i in range(3)])
    assert p.info()["tandem_discarded_records"] == 5
    # The primary it became resumes its own term on a plain restart.
    rep.stop()
    rep.start()
    assert rep.info()["tandem_term"] == 2 and "taking a new term" not in rep.p.log()


def test_divergent_records_in_a_snapshot_are_not_lost_silently(procs):
    """Like the split case, but the old primary compacted (SAVE) after diverging: its divergent
    records are folded into its snapshot and cannot be cut out one by one, so the new primary
    answers FULL -- with the common prefix, which it proves from the term boundaries it kept
    when it compacted. The old primary keeps its snapshot (a hard link) as the audit of the
    records folded into it, and cuts and audits its log after the snapshot as a truncation
    does, before installing the new primary's snapshot."""
    p = Node(procs, "p").start()
    rep = Node(procs, "r").start(replicaof=p)
    with p.client() as r:
        r.set("a", 1)
    converge(p, rep)
    promote(rep)
    with p.client() as r:
        r.set("div:1", "x")
        r.set("div:2", "x")
        assert r.execute_command("SAVE") is True
        r.set("div:3", "x")
    old_term = p.info()["tandem_term"]
    with rep.client() as r:
        r.set("new", 1)
        assert r.execute_command("SAVE") is True  # a FULL answer needs a snapshot
    assert (rep.dir / "term-history").exists()
    with p.client() as r:
        assert r.execute_command("REPLICAOF", "127.0.0.1", rep.port) == b"OK"
    converge(rep, p)
    info = p.info()
    assert info["tandem_full_syncs"] == 1, info
    # 1 record in common (a); div:1, div:2 (lsns 2..3) folded into the kept snapshot, div:3
    # (lsn 4) cut from the log.
    assert info["tandem_discarded_records"] == 3, info
    assert "common=1" in rep.p.log()
    kept = sorted(glob.glob(str(p.dir / "discarded-*.snap")))
    assert [os.path.basename(f) for f in kept] == [f"discarded-{old_term}-3.snap"]
    snap = open(kept[0], "rb").read()
    assert b"div:1" in snap and b"div:2" in snap and b"div:3" not in snap
    assert discarded_files(p) == [str(p.dir / f"discarded-{old_term}.log")]
    txt = open(p.dir / f"discarded-{old_term}.txt").read()
    assert f"lsn=4 term={old_term} SET div:3 x" in txt, txt
    assert f"discarded-{old_term}-3.snap" in txt and "div:1" not in txt
    log = p.p.log()
    assert "divergent records audited before the full resync" in log
    assert f"discarded-{old_term}-3.snap" in log
    # The node's data is the new primary's.
    with p.client() as r:
        assert r.get("div:1") is None and r.get("div:3") is None and r.get("new") == b"1"


def test_full_resync_of_a_lagging_replica_audits_nothing(procs):
    """A replica that is merely behind a compacted primary gets FULL with a common prefix equal
    to its last lsn: nothing diverged, so nothing is audited and no snapshot is kept."""
    p = Node(procs, "p").start()
    rep = Node(procs, "r").start(replicaof=p)
    with p.client() as r:
        r.set("a", 1)
        assert r.execute_command("SAVE") is True
    converge(p, rep)
    with rep.client() as r:
        assert r.execute_command("SAVE") is True
    rep.stop()
    with p.client() as r:
        for i in range(20):
            r.set(f"k{i}", i)
        assert r.execute_command("SAVE") is True
    rep.start(replicaof=p)
    converge(p, rep)
    info = rep.info()
    assert info["tandem_full_syncs"] == 1 and info["tandem_discarded_records"] == 0, info
    assert glob.glob(str(rep.dir / "discarded-*")) == []
    assert "common=" in p.p.log() and "unaudited" not in rep.p.log()


class OldPrimary:
    """A fake primary from before REPLSYNC V2: it refuses a hello with V2 exactly as such a
    primary does, and answers a plain one with CONTINUE (an empty log in term 1), then
    heartbeats. Records the hellos it saw."""

    def __init__(self):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.hellos = []
        self.stop = threading.Event()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(8)
        self.srv.settimeout(0.2)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    @staticmethod
    def read_command(f):
        line = f.readline()
        assert line.startswith(b"*"), line
        argv = []
        for _ in range(int(line[1:])):
            n = int(f.readline()[1:])
            argv.append(f.read(n + 2)[:n])
        return argv

    def run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            with c, c.makefile("rb") as f:
                argv = self.read_command(f)
                self.hellos.append(argv)
                if (len(argv) - 6) % 2:
                    c.sendall(b"-ERR wrong number of arguments for 'replsync' command\r\n")
                    continue
                c.sendall(b"+CONTINUE 0 1\r\n")
                plain = sum(1 for h in self.hellos if (len(h) - 6) % 2 == 0)
                hb = b"H" + struct.pack("<QQQ", 1, 0, 0)
                c.settimeout(0.1)
                # The first plain link is dropped after a moment (the replica then tries V2
                # again); the second one stays up.
                deadline = time.monotonic() + (0.3 if plain == 1 else 3600)
                while not self.stop.is_set() and time.monotonic() < deadline:
                    try:
                        c.sendall(b"$%d\r\n%s\r\n" % (len(hb), hb))
                        c.recv(4096)
                    except socket.timeout:
                        pass
                    except OSError:
                        break

    def close(self):
        self.stop.set()
        self.t.join()
        self.srv.close()


def test_replica_falls_back_to_a_plain_hello_for_an_old_primary(procs):
    """Mixing versions degrades to the old behaviour: a V2 hello refused by an older primary
    is retried without V2 (and the link comes up); the next connection tries V2 again."""
    old = OldPrimary()
    try:
        rep = Node(procs, "r").start(replicaof=old)
        wait_for(lambda: len(old.hellos) >= 3, SLOW, what="three hellos")
        assert old.hellos[0][-1] == b"V2" and old.hellos[0][0] == b"REPLSYNC"
        assert old.hellos[1][-1] != b"V2" and len(old.hellos[1]) == 6
        assert old.hellos[2][-1] == b"V2"
        wait_for(lambda: len(old.hellos) >= 4, SLOW, what="plain hello again")
        assert old.hellos[3][-1] != b"V2"
        wait_for(lambda: rep.info()["master_link_status"] == "up", SLOW, what="linked")
        assert "does not understand REPLSYNC V2" in rep.p.log()
    finally:
        old.close()


# --- 6. WAIT, FAILOVER, terms, sync mode ----------------------------------------------------

def test_wait_counts_replicas_and_times_out(procs):
    p = Node(procs, "p").start()
    r1 = Node(procs, "r1").start(replicaof=p)
    r2 = Node(procs, "r2").start(replicaof=p)
    wait_for(lambda: linked(r1) and linked(r2), SLOW, what="replicas linked")
    with p.client() as r:
        r.set("a", 1)
        assert r.execute_command("WAIT", 2, 10000) == 2
        assert r.execute_command("WAIT", 1, 0) >= 1
        r2.p.signal(signal.SIGSTOP)
        try:
            r.set("b", 2)
            t0 = time.monotonic()
            assert r.execute_command("WAIT", 2, 300) == 1
            assert time.monotonic() - t0 >= 0.29
        finally:
            r2.p.signal(signal.SIGCONT)
        assert r.execute_command("WAIT", 2, 20000) == 2
    with r1.client() as r:
        assert r.execute_command("WAIT", 1, 10) == 0  # a replica has no replicas


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_failover_swaps_roles_and_loses_nothing(procs, mode):
    extra = ["--sync-replicas", "1"] if mode == "sync" else []
    p = Node(procs, "p", *extra).start()
    rep = Node(procs, "r", *extra).start(replicaof=p)
    converge(p, rep)
    if mode == "sync":
        wait_sync_ok(p)
    term0 = p.info()["tandem_term"]
    model = Model()
    rng = random.Random(1)

    def do_failover():
        with p.client() as r:
            assert r.execute_command("FAILOVER", "TO", "127.0.0.1", rep.port,
                                     "TIMEOUT", 20000) == b"OK"
        wait_for(lambda: rep.info()["role"] == "master" and linked(p), SLOW,
                 what="roles swapped")
    run_writers(p, model, 0, rng, kill=do_failover)
    lost, ctr_low = check_model(rep, model, 0)
    assert not lost and not ctr_low
    pi, ri = p.info(), rep.info()
    assert ri["tandem_term"] > term0 and pi["tandem_term"] == ri["tandem_term"]
    assert ri["tandem_writable"] == 1 and pi["tandem_writable"] == 0
    assert pi["master_port"] == rep.port
    assert p.role()[0] == b"slave" and rep.role()[0] == b"master"
    with p.client() as r:
        with pytest.raises(redis.exceptions.ReadOnlyError):
            r.set("x", 1)
    with rep.client() as r:
        r.set("after", 1)
    converge(rep, p)
    assert "failover done" in p.p.log()
    # A failover with no replica is refused.
    q = Node(procs, "q").start()
    with q.client() as r:
        with pytest.raises(redis.ResponseError, match="replicas"):
            r.execute_command("FAILOVER")


def test_term_rule_stale_primary_steps_down(procs):
    """a (primary, term t) with replicas b and c; b is promoted (term t+1); c follows b and
    adopts t+1; then c is pointed back at a: c must not follow a lower term, and a, learning
    of the higher term from c's hello, stops taking writes at once and says so."""
    a = Node(procs, "a").start()
    b = Node(procs, "b").start(replicaof=a)
    c = Node(procs, "c").start(replicaof=a)
    with a.client() as r:
        r.set("k", "a1")
    converge(a, b)
    converge(a, c)
    t = a.info()["tandem_term"]
    promote(b)
    with b.client() as r:
        r.set("k", "b1")
    assert b.info()["tandem_term"] == t + 1
    with a.client() as r:
        r.set("k", "a2")   # a does not know yet: split brain until someone tells it
    with c.client() as r:
        assert r.execute_command("REPLICAOF", "127.0.0.1", b.port) == b"OK"
    wait_for(lambda: c.info()["tandem_term"] == t + 1 and caught_up(b, c), SLOW,
             what="c follows b")
    with c.client() as r:
        assert r.get("k") == b"b1"
        assert r.execute_command("REPLICAOF", "127.0.0.1", a.port) == b"OK"
    wait_for(lambda: a.info()["tandem_writable"] == 0, SLOW, what="a stepped down")
    with a.client() as r:
        with pytest.raises(redis.exceptions.ReadOnlyError, match="stepped down"):
            r.set("k", "a3")
        assert r.execute_command("ROLE")[0] != b"master"
    assert "a higher term exists" in a.p.log()
    ci = c.info()
    assert ci["master_link_status"] == "down" and ci["tandem_term"] == t + 1, ci
    with c.client() as r:
        assert r.get("k") == b"b1"  # nothing from the stale primary
    # The stale primary rejoins the new one: its term-t write is discarded.
    with a.client() as r:
        assert r.execute_command("REPLICAOF", "127.0.0.1", b.port) == b"OK"
    converge(b, a)
    with a.client() as r:
        assert r.get("k") == b"b1"
    assert a.info()["tandem_discarded_records"] == 1


def test_sync_strict_refuses_without_replica(procs):
    p = Node(procs, "p", "--sync-replicas", "1", "--sync-strict", "--repl-max-lag", "5s")
    p.start()
    with p.client() as r:
        with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
            r.set("a", 1)
        assert r.get("a") is None
    i = p.info()
    assert i["tandem_sync_state"] == "degraded" and i["tandem_sync_strict"] == 1
    rep = Node(procs, "r").start(replicaof=p)
    wait_sync_ok(p)
    with p.client() as r:
        assert r.set("a", 1) is True
    with rep.client() as r:
        assert r.get("a") == b"1"  # acknowledged means the replica has it
    rep.stop()
    wait_for(lambda: p.info()["tandem_sync_state"] == "degraded", SLOW, what="degraded")
    with p.client() as r:
        with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
            r.set("b", 1)


def test_sync_degraded_is_visible_and_recovers(procs):
    p = Node(procs, "p", "--sync-replicas", "1", "--repl-max-lag", "5s").start()
    rep = Node(procs, "r").start(replicaof=p)
    wait_sync_ok(p)
    with p.client() as r:
        assert r.set("a", 1) is True
    with rep.client() as r:
        assert r.get("a") == b"1"
    rep.stop()
    with p.client() as r:
        assert r.set("b", 1) is True  # goes on alone, and says so
    wait_for(lambda: p.info()["tandem_sync_state"] == "degraded", SLOW, what="degraded")
    i = p.info()
    assert i["tandem_unsynced_recorded"] == 1 and i["tandem_sync_in_sync"] == 0
    assert "no replica in sync" in p.p.log()
    rep.start(replicaof=p)
    wait_sync_ok(p)
    assert p.info()["tandem_sync_in_sync"] == 1
    assert "replicas in sync again" in p.p.log()
    with rep.client() as r:
        assert r.get("b") == b"1"


# --- 7. hostile input on the replication path -----------------------------------------------

def refused(port, *cmds):
    """Sends the commands on a fresh connection; returns (replies, closed)."""
    c = Raw(port, timeout=10)
    out = []
    for cmd in cmds:
        c.send(encode(cmd) if isinstance(cmd, (list, tuple)) else cmd)
        try:
            out.append(c.reply())
        except ConnectionError:
            break
    closed = c.closed(10)
    c.close()
    return out, closed


def test_bad_replication_input_is_refused_and_primary_keeps_serving(procs):
    p = Node(procs, "p", "--requirepass", "s3cret").start()
    hello = ["REPLSYNC", "s3cret", "evil", "0", "0", "0"]
    auth = ["AUTH", "s3cret"]
    cases = [
        [["REPLSYNC", "s3cret"]],                                   # unauthenticated
        [auth, hello[:3]],                                          # too short
        [auth, ["REPLSYNC", "wrong", "evil", "0", "0", "0"]],       # wrong secret
        [auth, ["REPLSYNC", "s3cret", "evil", "1" * 30, "1", "0"]],  # overflow
        [auth, ["REPLSYNC", "s3cret", "evil", "5", "1", "9"]],      # base beyond last
        [auth, ["REPLSYNC", "s3cret", "evil", "1", str(2**64 - 1), "0"]],  # absurd term
        [auth, ["REPLSYNC", "s3cret", "evil", str(2**63), "1", "0"]],  # absurd lsn
        [auth, ["REPLSYNC", "s3cret", "evil", "05", "1", "0"]],     # not canonical
        [auth, ["REPLSYNC", "s3cret", "evil", "5", "1", "0", "2", "1", "1", "3"]],  # history
        [auth, ["REPLSYNC", "s3cret", "evil", "9", "1", "0"] + ["1", "1"] * 33],    # too long
        [auth, ["REPLSYNC", "s3cret", "", "0", "0", "0"]],          # empty name
        [auth, ["REPLSYNC", "s3cret", "n" * 300, "0", "0", "0"]],   # long name
        [auth, hello, ["REPLACK", "x", "1"]],                       # garbage ack
        [auth, hello, ["GET", "a"]],                                # not a replication command
        [auth, hello, b"\x00\x01garbage\r\n"],                      # not RESP
        [auth, hello, ["REPLACK", "99999999", "1"]],                # ack beyond what was sent
        [auth, hello, ["REPLACK", "0", str(2**64 - 1)]],            # absurd term
    ]
    with p.client() as r:
        r.set("a", 1)
    for cmds in cases:
        out, closed = refused(p.port, *cmds)
        answer = out[1] if cmds[0] is auth else out[0]
        if len(cmds) > 1 and cmds[1] is hello:
            assert answer.startswith(b"+CONTINUE "), (cmds, out)
        else:
            assert answer.startswith(b"-"), (cmds, out)
        assert closed, (cmds, out)
        with p.client() as r:
            assert r.ping() and r.get("a") == b"1"
            assert r.info("replication")["tandem_writable"] == 1, cmds
    # A real replica with the wrong secret never links; with the right one it does.
    bad = Node(procs, "bad", "--repl-secret", "nope").start(replicaof=p)
    good = Node(procs, "good", "--requirepass", "s3cret").start(replicaof=p)
    wait_for(lambda: linked(good), SLOW, what="good replica linked")
    with bad.client() as r:
        wait_for(lambda: "secret" in str(r.info("replication")["tandem_last_error"]), SLOW,
                 what="bad replica refused")
        assert r.info("replication")["master_link_status"] == "down"
    with good.client() as r:
        assert r.get("a") == b"1"
    assert p.p.alive()


# --- more: full resync under load, failover edge cases, cascading ------------------------------

def test_full_resync_under_write_load(procs):
    """A new replica of a primary with a compacted log gets the snapshot (in chunks, while the
    primary keeps serving writes) and then the log; it ends identical."""
    p = Node(procs, "p", "--wal-segment-size", "64kb").start()
    with p.client() as r:
        pipe = r.pipeline(transaction=False)
        for i in range(5000):
            pipe.set(f"big:{i}", "z" * 100)
            if i % 1000 == 999:
                pipe.execute()
        pipe.hset("h", mapping={f"f{i}": i for i in range(100)})
        pipe.execute()
        assert r.execute_command("SAVE") is True
    stop = threading.Event()
    done = []

    def load():
        with p.client() as r:
            i = 0
            while not stop.is_set():
                r.set(f"live:{i % 500}", i)
                r.incr("live:n")
                i += 1
            done.append(i)
    t = threading.Thread(target=load)
    t.start()
    try:
        rep = Node(procs, "r").start(replicaof=p)
        wait_for(lambda: rep.info()["tandem_full_syncs"] == 1 and linked(rep), SLOW,
                 what="full resync done")
        with p.client() as r:
            n0 = int(r.get("live:n"))
        wait_for(lambda: int(p.client().get("live:n")) > n0 + 50, SLOW, what="writes go on")
    finally:
        stop.set()
        t.join(SLOW)
    d = converge(p, rep)
    assert len(d) == 5000 + 1 + min(done[0], 500) + 1 and done[0] > 50
    assert p.info()["tandem_full_syncs"] == 1
    assert not glob.glob(str(rep.dir / "incoming.snap.partial"))


def test_failover_edge_cases(procs):
    p = Node(procs, "p").start()
    rep = Node(procs, "r").start(replicaof=p)
    converge(p, rep)
    with p.client() as r:
        # A target that is not a replica: the failover times out and writes resume here.
        assert r.execute_command("FAILOVER", "TO", "127.0.0.1", free_port(),
                                 "TIMEOUT", 300) == b"OK"
        wait_for(lambda: p.info()["master_failover_state"] == "no-failover", SLOW,
                 what="failover aborted")
        assert r.set("a", 1) is True
        assert "failover aborted" in p.p.log()
        # A replica that cannot catch up (paused): refused writes meanwhile, then resumed.
        rep.p.signal(signal.SIGSTOP)
        try:
            r.set("b", 1)
            assert r.execute_command("FAILOVER", "TIMEOUT", 1500) == b"OK"
            with pytest.raises(redis.exceptions.ReadOnlyError):
                r.set("c", 1)
            wait_for(lambda: p.info()["master_failover_state"] == "no-failover", SLOW,
                     what="failover timed out")
            assert r.set("c", 1) is True
        finally:
            rep.p.signal(signal.SIGCONT)
        with pytest.raises(redis.ResponseError):
            r.execute_command("FAILOVER", "ABORT")
        # No target named: the best in-sync replica.
        converge(p, rep)
        assert r.execute_command("FAILOVER") == b"OK"
    wait_for(lambda: rep.info()["role"] == "master" and caught_up(rep, p), SLOW,
             what="roles swapped")
    with rep.client() as r:
        assert r.get("c") == b"1"
        t1 = rep.info()["tandem_term"]
        # And back again.
        assert r.execute_command("FAILOVER", "TO", "127.0.0.1", p.port) == b"OK"
    wait_for(lambda: p.info()["role"] == "master" and caught_up(p, rep), SLOW,
             what="roles swapped back")
    assert p.info()["tandem_term"] == t1 + 1
    with p.client() as r:
        assert r.set("d", 1) is True
    converge(p, rep)


def test_replica_of_a_replica_is_refused_and_retried(procs):
    p = Node(procs, "p").start()
    rep = Node(procs, "r").start(replicaof=p)
    sub = Node(procs, "s").start(replicaof=rep)
    with p.client() as r:
        r.set("a", 1)
    converge(p, rep)
    wait_for(lambda: "not a primary" in str(sub.info()["tandem_last_error"]), SLOW,
             what="cascading refused")
    assert sub.info()["master_link_status"] == "down"
    # Once its upstream is promoted, the same link succeeds.
    promote(rep)
    wait_for(lambda: caught_up(rep, sub), SLOW, what="sub follows the promoted node")
    with sub.client() as r:
        assert r.get("a") == b"1"
