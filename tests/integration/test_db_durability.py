# SPDX-License-Identifier: MIT
"""tandem db durability, with real processes and redis-py: kill -9 at random points under load
(fsync=always: every acknowledged write survives, counters stay between acknowledged and
attempted increments, nothing unknown appears; fsync=everysec: a process crash loses nothing
acknowledged), damaged logs (a torn or bit-flipped tail is cut with a warning, damage in the
middle refuses to start until --wal-repair, which keeps the cut bytes), SAVE and automatic
snapshots (restart = snapshot + log tail, covered segments removed), and TTLs across restarts."""
import glob
import os
import random
import signal
import struct
import threading
import time

import pytest
import redis

from conftest import free_port, port_open, wait_for

COUNTERS = ["ctr:0", "ctr:1", "ctr:2"]
REC_HEADER = 32  # proto/walrec: magic, payload length, lsn, term, payload CRC, header CRC


class Db:
    """Successive tandem db processes on one data directory."""

    def __init__(self, procs, name, *args):
        self.procs = procs
        self.dir = procs.tmp / f"{name}-data"
        self.name = name
        self.args = list(args)
        self.n = 0
        self.p = None
        self.port = None

    def start(self, *extra, expect_up=True):
        self.n += 1
        self.port = free_port()
        self.p = self.procs.tandem(f"{self.name}-{self.n}", "db", "--listen",
                                   f"127.0.0.1:{self.port}", "--dir", str(self.dir),
                                   *self.args, *extra)
        wait_for(lambda: port_open(self.port) or not self.p.alive(), 30,
                 what=f"tandem db {self.name}-{self.n} listening or exited")
        if expect_up:
            assert self.p.alive(), self.p.log()
        return self.p

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=20)

    def kill9(self):
        self.p.kill9()

    def stop(self):
        assert self.p.stop() == 0, self.p.log()


# --- kill -9 under load -------------------------------------------------------------------------

class Model:
    """What the writers attempted and what the server acknowledged, over every round."""

    def __init__(self):
        self.lock = threading.Lock()
        self.attempted = {}      # key -> value, every SET sent
        self.acked = set()       # keys whose SET was acknowledged
        self.seen = set()        # keys found after some restart: they must stay
        self.incr_attempted = {c: 0 for c in COUNTERS}
        self.incr_acked = {c: 0 for c in COUNTERS}
        self.acked_ops = 0


def writer(port, model, wid, rnd, stop, rng_seed):
    """SETs unique keys and INCRs shared counters until the connection dies or stop is set.
    Odd writers pipeline 8 commands per round trip."""
    rng = random.Random(rng_seed)
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=20)
    seq = 0
    batch = 8 if wid % 2 else 1
    try:
        while not stop.is_set():
            ops = []
            for _ in range(batch):
                seq += 1
                if rng.random() < 0.3:
                    c = rng.choice(COUNTERS)
                    ops.append(("incr", c, None))
                else:
                    k = f"k:{rnd}:{wid}:{seq}"
                    ops.append(("set", k, f"v:{rnd}:{wid}:{seq}:" + "x" * rng.randrange(40)))
            with model.lock:
                for kind, k, v in ops:
                    if kind == "set":
                        model.attempted[k] = v
                    else:
                        model.incr_attempted[k] += 1
            pipe = r.pipeline(transaction=False)
            for kind, k, v in ops:
                if kind == "set":
                    pipe.set(k, v)
                else:
                    pipe.incr(k)
            res = pipe.execute()
            with model.lock:
                for (kind, k, v), reply in zip(ops, res):
                    if kind == "set":
                        assert reply is True
                        model.acked.add(k)
                    else:
                        assert isinstance(reply, int)
                        model.incr_acked[k] += 1
                    model.acked_ops += 1
    except (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError):
        pass  # the server was killed: whatever was in flight is not acknowledged
    finally:
        r.close()


def check(db, model, rnd):
    """After a restart: every acknowledged write is there, nothing unknown, values intact."""
    r = db.client()
    keys = set(k.decode() for k in r.scan_iter(count=1000))
    unknown = [k for k in keys if k not in model.attempted and k not in COUNTERS]
    assert not unknown, f"round {rnd}: unknown keys {unknown[:5]}"
    lost = [k for k in model.acked if k not in keys]
    assert not lost, f"round {rnd}: {len(lost)} acknowledged keys lost, e.g. {lost[:5]}"
    gone = [k for k in model.seen if k not in keys]
    assert not gone, f"round {rnd}: keys present after an earlier restart are gone: {gone[:5]}"
    names = sorted(k for k in keys if k not in COUNTERS)
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        for k, v in zip(chunk, r.mget(chunk)):
            assert v is not None and v.decode() == model.attempted[k], f"round {rnd}: {k}={v!r}"
    model.seen |= set(names)
    for c in COUNTERS:
        v = int(r.get(c) or 0)
        assert model.incr_acked[c] <= v <= model.incr_attempted[c], \
            f"round {rnd}: {c}={v}, acknowledged {model.incr_acked[c]}, " \
            f"attempted {model.incr_attempted[c]}"
    r.close()
    return len(keys)


def kill_rounds(procs, fsync, rounds, seed):
    rng = random.Random(seed)
    db = Db(procs, f"kill-{fsync}", "--fsync", fsync)
    model = Model()
    acked_total = 0
    for rnd in range(rounds):
        db.start()
        nkeys = check(db, model, rnd)
        stop = threading.Event()
        ws = [threading.Thread(target=writer, args=(db.port, model, w, rnd, stop,
                                                    rng.randrange(1 << 30)))
              for w in range(6)]
        for t in ws:
            t.start()
        before = model.acked_ops
        # Let writes flow (at least a few acknowledged), then kill at a random moment.
        wait_for(lambda: model.acked_ops >= before + 20, 20, interval=0.002,
                 what="writes acknowledged")
        time.sleep(rng.uniform(0.0, 0.25))
        db.kill9()
        stop.set()
        for t in ws:
            t.join(30)
            assert not t.is_alive()
        acked_total = model.acked_ops
    db.start()
    nkeys = check(db, model, rounds)
    db.stop()
    return model, acked_total, nkeys


def test_kill9_fsync_always_loses_no_acknowledged_write(procs):
    seed = int(os.environ.get("TANDEM_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed={seed}")
    model, acked, nkeys = kill_rounds(procs, "always", 20, seed)
    print(f"acknowledged operations {acked}, keys {nkeys}, attempted SETs {len(model.attempted)}")
    assert len(model.acked) > 200
    assert any(model.incr_acked[c] > 0 for c in COUNTERS)


def test_kill9_fsync_everysec_loses_no_acknowledged_write(procs):
    """A process crash (not a power loss): replies leave only after write(2), so everything
    acknowledged is in the kernel and survives the kill."""
    seed = int(os.environ.get("TANDEM_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed={seed}")
    model, acked, nkeys = kill_rounds(procs, "everysec", 6, seed)
    assert len(model.acked) > 200


def test_shutdown_and_sigterm_flush_fsync_no(procs):
    db = Db(procs, "flush", "--fsync", "no")
    db.start()
    r = db.client()
    for i in range(500):
        r.set(f"k{i}", i)
    assert r.info("persistence")["tandem_fsync"] == "no"
    db.stop()  # SIGTERM: exit 0 after a final write + fsync
    assert 'cause="SIGTERM"' in db.p.log()
    db.start()
    r = db.client()
    assert r.dbsize() == 500 and r.get("k499") == b"499"
    r.set("last", "1")
    try:
        r.execute_command("SHUTDOWN")
    except redis.ConnectionError:
        pass
    db.p.popen.wait(timeout=20)
    assert db.p.popen.returncode == 0
    db.start()
    assert db.client().get("last") == b"1"
    db.stop()


# --- damaged logs -------------------------------------------------------------------------------

def records(path):
    """Offsets and sizes of the records of a segment file (with fsync=always the file may end
    in zero padding: space written ahead of the log)."""
    data = open(path, "rb").read()
    out, off = [], 0
    while off + REC_HEADER <= len(data) and data[off:off + 4] == b"TWR1":
        n = struct.unpack_from("<I", data, off + 4)[0]
        out.append((off, REC_HEADER + n))
        off += REC_HEADER + n
    assert data[off:].count(0) == len(data) - off
    return out


def segment(db):
    segs = sorted(glob.glob(str(db.dir / "wal-*.log")))
    assert len(segs) == 1, segs
    return segs[0]


def fill(db, n):
    db.start()
    r = db.client()
    for i in range(1, n + 1):
        r.set(f"key:{i}", f"value:{i}")
    db.stop()


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_torn_tail_is_truncated_with_a_warning(procs, damage):
    db = Db(procs, f"torn-{damage}", "--fsync", "always")
    fill(db, 100)
    path = segment(db)
    off, size = records(path)[-1]
    data = bytearray(open(path, "rb").read())
    assert len(data) > off + size  # the preallocated padding: read as such, no warning
    if damage == "truncate":
        data = data[:off + size // 2]        # the last record, written halfway
    else:
        data[off + size - 3] ^= 0x10         # a bit flipped in the last record's payload
    open(path, "wb").write(bytes(data))
    db.start()
    log = db.p.log()
    line = [ln for ln in log.splitlines() if 'msg="log tail truncated"' in ln]
    assert line and "lvl=warn" in line[0], log
    assert "after_lsn=99" in line[0] and os.path.basename(path) in line[0]
    r = db.client()
    assert r.dbsize() == 99
    assert r.get("key:99") == b"value:99" and r.get("key:100") is None
    assert r.info("persistence")["tandem_recovered_truncated_bytes"] > 0
    assert os.path.exists(db.dir / "torn-99.bin")
    # The log continues cleanly after the cut.
    r.set("after", "1")
    db.stop()
    db.start()
    assert db.client().get("after") == b"1" and db.client().dbsize() == 100
    assert "log tail truncated" not in db.p.log()
    db.stop()


def test_corrupt_middle_refuses_then_repair_keeps_cut_bytes(procs):
    db = Db(procs, "middle", "--fsync", "always")
    fill(db, 100)
    path = segment(db)
    recs = records(path)
    off, size = recs[49]                     # record lsn 50; valid records follow
    data = bytearray(open(path, "rb").read())
    data[off + size - 5] ^= 0x01
    open(path, "wb").write(bytes(data))
    p = db.start(expect_up=False)
    p.popen.wait(timeout=30)
    assert p.popen.returncode == 1
    log = p.log()
    assert "refusing to start" in log and os.path.basename(path) in log, log
    assert "--wal-repair" in log
    assert open(path, "rb").read() == bytes(data)  # nothing changed on disk
    db.start("--wal-repair")
    r = db.client()
    assert r.dbsize() == 49
    assert r.get("key:49") == b"value:49" and r.get("key:50") is None
    kept = db.dir / "repaired-49.bin"
    assert kept.exists() and kept.read_bytes() == bytes(data[off:])
    assert "corrupt_repaired" in db.p.log()
    db.stop()


# --- snapshots ----------------------------------------------------------------------------------

def test_save_then_restart_loads_snapshot_and_tail(procs):
    db = Db(procs, "save", "--fsync", "everysec")
    db.start()
    r = db.client()
    for i in range(300):
        r.set(f"s{i}", i)
    r.hset("h", mapping={"a": 1, "b": 2})
    assert r.info("persistence")["rdb_changes_since_last_save"] == 301
    assert r.execute_command("SAVE") is True
    info = r.info("persistence")
    assert info["rdb_changes_since_last_save"] == 0 and info["rdb_saves"] == 1
    assert info["tandem_snapshot_lsn"] == 301 and info["rdb_last_bgsave_status"] == "ok"
    for i in range(300, 350):
        r.set(f"s{i}", i)
    r.delete("s0")
    db.kill9()
    db.start()
    r = db.client()
    info = r.info("persistence")
    assert info["tandem_recovered_snapshot_lsn"] == 301
    assert info["rdb_last_load_keys_loaded"] == 301
    assert info["tandem_recovered_records"] == 51
    assert r.dbsize() == 350 and r.get("s0") is None and r.get("s349") == b"349"
    assert r.hgetall("h") == {b"a": b"1", b"b": b"2"}
    assert 'snapshot_lsn=301' in db.p.log() and 'log_records=51' in db.p.log()
    db.stop()


def test_automatic_snapshot_compacts_the_log(procs):
    db = Db(procs, "auto", "--fsync", "no", "--wal-segment-size", "8kb", "--snapshot-min-log",
            "64kb", "--snapshot-growth", "50")
    db.start()
    r = db.client()
    pipe = r.pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"a{i % 400}", f"{i}-" + "y" * 40)
    pipe.execute()
    wait_for(lambda: r.info("persistence")["tandem_snapshots"] >= 1
             and r.info("persistence")["tandem_snapshot_in_progress"] == 0, 20,
             what="an automatic snapshot")
    info = r.info("persistence")
    assert info["tandem_snapshots_automatic"] >= 1 and info["tandem_last_snapshot_status"] == "ok"
    assert 'msg="automatic snapshot"' in db.p.log() and 'msg="snapshot saved"' in db.p.log()
    # ~3000 records of ~70 bytes made ~25 segments of 8 kB; those the snapshot covers are gone.
    segs = glob.glob(str(db.dir / "wal-*.log"))
    snaps = glob.glob(str(db.dir / "snap-*.snap"))
    assert len(snaps) == 1 and len(segs) <= 3, (segs, snaps)
    assert info["tandem_log_bytes"] < 64 * 1024
    r.set("tail", "1")
    db.kill9()
    db.start()
    r = db.client()
    assert r.info("persistence")["tandem_recovered_snapshot_lsn"] > 0
    assert r.dbsize() == 401 and r.get("a399") == b"2799-" + b"y" * 40
    db.stop()


# --- TTLs ---------------------------------------------------------------------------------------

def test_restart_keeps_ttls(procs):
    """Relative expiries are logged as absolute times (PXAT/PEXPIREAT): after a restart a key
    has the same deadline, not a fresh TTL, and a key whose deadline passed while the server
    was down is gone."""
    db = Db(procs, "ttl", "--fsync", "always")
    db.start()
    r = db.client()
    r.set("long", "v", ex=1000)
    r.set("short", "v", px=300)
    r.hset("h", "f", "v")
    r.expire("h", 2000)
    r.set("persisted", "v", ex=50)
    r.persist("persisted")
    r.execute_command("SAVE")                # half through the snapshot ...
    r.set("long2", "v", px=1000000)          # ... half through the log
    r.set("short2", "v", px=300)
    deadline = {k: time.time() * 1000 + r.pttl(k) for k in ("long", "h", "long2")}
    db.kill9()
    time.sleep(0.35)  # the short TTLs must pass while the server is down
    db.start()
    r = db.client()
    assert r.exists("short", "short2") == 0
    assert r.ttl("persisted") == -1
    for k, d in deadline.items():
        left = r.pttl(k)
        expect = d - time.time() * 1000
        assert abs(left - expect) < 2000, (k, left, expect)
    assert r.info("keyspace")["db0"]["expires"] == 3
    db.stop()
