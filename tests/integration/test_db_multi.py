# SPDX-License-Identifier: MIT
"""tandem db transactions (MULTI/EXEC/DISCARD/WATCH/UNWATCH) with real processes: replies
byte-identical to redis-server 7 (two connections, so WATCH sees another client's write),
redis-py's transactional pipeline and optimistic `transaction()` retry loop under concurrent
writers, crash atomicity (kill -9 with fsync=always: an EXEC's writes are all there or none,
and every acknowledged EXEC is), a TXN record torn at the log tail is cut whole, and replication
(a replica applies an EXEC's record at once; WATCH on a replica is dirtied by applied records;
EXEC of writes on a replica is aborted as Redis aborts it)."""
import glob
import os
import random
import struct
import threading
import time

import pytest
import redis

from conftest import wait_for
from dbutil import REDIS_SERVER, Raw, start_db, start_redis
from test_db_durability import Db, records
from test_repl import SLOW, Node, linked


# --- byte-for-byte against redis-server ----------------------------------------------------------

# (connection, command): connection "a" runs the transactions, "b" plays the other client.
MULTI_SCRIPT = [
    ("a", ["FLUSHALL"]),
    ("a", ["EXEC"]), ("a", ["DISCARD"]), ("a", ["EXEC", "x"]), ("a", ["MULTI", "x"]),
    ("a", ["WATCH"]), ("a", ["UNWATCH", "x"]), ("a", ["UNWATCH"]),
    ("a", ["MULTI"]), ("a", ["MULTI"]), ("a", ["SET", "k", "v"]), ("a", ["GET", "k"]),
    ("a", ["INCR", "n"]), ("a", ["HSET", "k", "f", "v"]), ("a", ["INCR", "k"]),
    ("a", ["WATCH", "k"]), ("a", ["MSET", "m1", "1", "m2", "2"]), ("a", ["DEL", "m1", "zz"]),
    ("a", ["EXPIRE", "m2", "100"]), ("a", ["PING"]), ("a", ["ECHO", "e"]), ("a", ["EXEC"]),
    ("a", ["EXEC"]),
    ("a", ["MULTI"]), ("a", ["EXEC"]),
    ("a", ["MULTI"]), ("a", ["SET", "d", "1"]), ("a", ["DISCARD"]), ("a", ["GET", "d"]),
    # unknown command / wrong arity inside MULTI: EXECABORT, nothing runs
    ("a", ["MULTI"]), ("a", ["SET", "u", "1"]), ("a", ["NOSUCH", "x"]), ("a", ["EXEC"]),
    ("a", ["GET", "u"]),
    ("a", ["MULTI"]), ("a", ["GET"]), ("a", ["EXEC"]),
    ("a", ["MULTI"]), ("a", ["SET", "k"]), ("a", ["SET", "u", "1"]), ("a", ["EXEC"]),
    ("a", ["MULTI"]), ("a", ["SHUTDOWN"]), ("a", ["EXEC"]),
    ("a", ["MULTI"]), ("a", ["SAVE"]), ("a", ["EXEC"]),
    ("a", ["MULTI"]), ("a", ["SET", "u", "1"]), ("a", ["EXEC", "x"]), ("a", ["EXEC"]),
    ("a", ["GET", "u"]),
    # WATCH: another client's write aborts (null array), an unrelated one does not
    ("a", ["SET", "w", "0"]), ("a", ["WATCH", "w"]), ("b", ["SET", "w", "1"]),
    ("a", ["MULTI"]), ("a", ["SET", "w", "a"]), ("a", ["EXEC"]), ("a", ["GET", "w"]),
    ("a", ["WATCH", "w", "w2"]), ("b", ["SET", "other", "1"]), ("b", ["SET", "w", "1", "NX"]),
    ("a", ["GET", "w"]), ("a", ["MULTI"]), ("a", ["SET", "w", "a"]), ("a", ["EXEC"]),
    ("a", ["WATCH", "w"]), ("a", ["SET", "w", "self"]), ("a", ["MULTI"]), ("a", ["EXEC"]),
    ("a", ["WATCH", "w"]), ("b", ["DEL", "w"]), ("a", ["UNWATCH"]), ("a", ["MULTI"]),
    ("a", ["EXEC"]),
    ("a", ["WATCH", "h"]), ("b", ["HSET", "h", "f", "1"]), ("a", ["MULTI"]), ("a", ["EXEC"]),
    ("a", ["WATCH", "h"]), ("b", ["EXPIRE", "h", "100"]), ("a", ["MULTI"]), ("a", ["EXEC"]),
    ("a", ["WATCH", "h"]), ("a", ["MULTI"]), ("a", ["DISCARD"]), ("b", ["DEL", "h"]),
    ("a", ["MULTI"]), ("a", ["EXEC"]),
    ("a", ["SET", "f", "1"]), ("a", ["WATCH", "f"]), ("b", ["FLUSHALL"]), ("a", ["MULTI"]),
    ("a", ["EXEC"]),
    ("a", ["WATCH", "f"]), ("b", ["FLUSHALL"]), ("a", ["MULTI"]), ("a", ["EXEC"]),
    ("a", ["SET", "f", "1"]), ("a", ["SET", "g", "1", "PX", "1"]), ("a", ["WATCH", "f", "g", "n"]),
    ("b", ["FLUSHDB"]), ("a", ["MULTI"]), ("a", ["EXEC"]),
    ("a", ["MULTI"]), ("a", ["WATCH", "x"]), ("a", ["SET", "x", "1"]), ("a", ["EXEC"]),
    ("a", ["DBSIZE"]),
]


def run_pairs(port, script):
    conns = {"a": Raw(port), "b": Raw(port)}
    out = [conns[c].call(*cmd) for c, cmd in script]
    for r in conns.values():
        r.close()
    return out


def test_transaction_replies_byte_identical_to_redis(procs):
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed")
    db = start_db(procs)
    ref = start_redis(procs)
    ours = run_pairs(db.port, MULTI_SCRIPT)
    theirs = run_pairs(ref.port, MULTI_SCRIPT)
    diffs = [(s, a, b) for s, a, b in zip(MULTI_SCRIPT, ours, theirs) if a != b]
    assert not diffs, "\n".join(f"{s!r}:\n  tandem {a!r}\n  redis  {b!r}" for s, a, b in diffs)
    # the script exercised what it claims
    assert b"*-1\r\n" in ours and any(x.startswith(b"-EXECABORT") for x in ours)


# --- redis-py ----------------------------------------------------------------------------------

def test_redis_py_pipeline_and_watch_retry_loop(procs):
    db = start_db(procs)
    r = redis.Redis(host="127.0.0.1", port=db.port, socket_timeout=20)
    with r.pipeline(transaction=True) as p:
        p.set("a", 1).incr("a").get("a").hset("h", "f", "v").hget("h", "f")
        assert p.execute() == [True, 2, b"2", 1, b"v"]
    # A watched key changed by someone else: WatchError, nothing written.
    with r.pipeline() as p:
        p.watch("a")
        r.set("a", 10)
        p.multi()
        p.set("x", 1)
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("x") is None
    p = r.pipeline()
    p.watch("a", "b")
    assert r.info("stats")["tandem_watched_keys"] == 2
    p.reset()  # UNWATCH
    assert r.info("stats")["tandem_watched_keys"] == 0
    # The optimistic retry loop: N threads add to one counter with WATCH/GET/MULTI/SET/EXEC.
    r.set("ctr", 0)
    threads, per = 6, 60
    retries = [0]
    lock = threading.Lock()

    def add_one():
        c = redis.Redis(host="127.0.0.1", port=db.port, socket_timeout=20)
        for _ in range(per):
            def fn(pipe):
                v = int(pipe.get("ctr"))
                pipe.multi()
                pipe.set("ctr", v + 1)
            tries = [0]

            def counted(pipe):
                tries[0] += 1
                fn(pipe)
            c.transaction(counted, "ctr")
            with lock:
                retries[0] += tries[0] - 1
        c.close()

    ts = [threading.Thread(target=add_one) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
        assert not t.is_alive()
    assert int(r.get("ctr")) == threads * per
    print(f"retries {retries[0]}")
    info = r.info("persistence")
    assert info["rdb_changes_since_last_save"] >= threads * per


# --- crash atomicity ----------------------------------------------------------------------------

def txn_writer(port, acked, lock, stop):
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=20)
    try:
        while not stop.is_set():
            with r.pipeline(transaction=True) as p:
                p.incr("a").incr("b").set("last", "x")
                res = p.execute()
            assert res[0] == res[1], res
            with lock:
                acked[0] += 1
    except (redis.ConnectionError, redis.TimeoutError):
        pass


def test_kill9_transactions_are_all_or_nothing(procs):
    seed = int(os.environ.get("TANDEM_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed={seed}")
    rng = random.Random(seed)
    db = Db(procs, "txn-kill", "--fsync", "always")
    acked, lock = [0], threading.Lock()
    for rnd in range(6):
        db.start()
        r = db.client()
        a, b = int(r.get("a") or 0), int(r.get("b") or 0)
        assert a == b, (rnd, a, b)
        assert a >= acked[0], (rnd, a, acked[0])
        r.close()
        stop = threading.Event()
        ws = [threading.Thread(target=txn_writer, args=(db.port, acked, lock, stop))
              for _ in range(4)]
        for t in ws:
            t.start()
        before = acked[0]
        wait_for(lambda: acked[0] >= before + 20, 30, interval=0.002,
                 what="transactions acknowledged")
        time.sleep(rng.uniform(0.0, 0.2))
        db.kill9()
        stop.set()
        for t in ws:
            t.join(30)
            assert not t.is_alive()
    db.start()
    r = db.client()
    a, b = int(r.get("a")), int(r.get("b"))
    assert a == b and a >= acked[0] > 100, (a, b, acked[0])
    db.stop()


def test_torn_txn_record_is_cut_whole(procs):
    db = Db(procs, "txn-torn", "--fsync", "always")
    db.start()
    r = db.client()
    for i in range(20):
        r.set(f"k{i}", i)
    with r.pipeline(transaction=True) as p:
        p.set("t1", 1).set("t2", 2).hset("t3", "f", "v").delete("k0")
        assert p.execute() == [True, True, 1, 1]
    db.stop()
    segs = sorted(glob.glob(str(db.dir / "wal-*.log")))
    path = segs[-1]
    off, size = records(path)[-1]
    data = open(path, "rb").read()
    payload = data[off + 32:off + size]
    assert struct.unpack_from("<I", payload, 0)[0] == 1 + 4 + 3 + 3 + 4 + 2  # TXN + 4 records
    assert b"TXN" in payload and b"t3" in payload
    open(path, "wb").write(data[:off + size - 10])  # torn inside the TXN record
    db.start()
    assert "log tail truncated" in db.p.log()
    r = db.client()
    assert [r.exists(k) for k in ("t1", "t2", "t3")] == [0, 0, 0]
    assert r.get("k0") == b"0" and r.dbsize() == 20
    db.stop()


# --- replication ---------------------------------------------------------------------------------

def test_replica_applies_transactions_atomically_and_watch_sees_them(procs):
    p = Node(procs, "p").start()
    rep = Node(procs, "r").start(replicaof=p)
    wait_for(lambda: linked(rep), SLOW, what="replica linked")
    n = 300
    done = threading.Event()

    def writer():
        r = p.client()
        for _ in range(n):
            with r.pipeline(transaction=True) as pl:
                pl.incr("a").incr("b")
                pl.execute()
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    reads = 0
    rr = rep.client()
    while not done.is_set() or reads == 0:
        a, b = rr.mget("a", "b")
        assert a == b, (a, b)
        reads += 1
    t.join(60)
    wait_for(lambda: rr.mget("a", "b") == [str(n).encode()] * 2, SLOW, what="replica caught up")
    print(f"reads on the replica while writing: {reads}")
    # WATCH on the replica is dirtied by a record the replica applies.
    raw = Raw(rep.port)
    assert raw.call("WATCH", "a") == b"+OK\r\n"
    p.client().incr("a")
    wait_for(lambda: rr.get("a") == str(n + 1).encode(), SLOW, what="incr replicated")
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("GET", "a") == b"+QUEUED\r\n"
    assert raw.call("EXEC") == b"*-1\r\n"
    # Not dirtied: reads run.
    assert raw.call("WATCH", "a") == b"+OK\r\n"
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("GET", "a") == b"+QUEUED\r\n"
    assert raw.call("EXEC") == b"*1\r\n$3\r\n%d\r\n" % (n + 1)
    # Writes inside MULTI on a replica are refused as Redis refuses them, and flag the
    # transaction.
    assert raw.call("MULTI") == b"+OK\r\n"
    assert raw.call("SET", "x", "1") == b"-READONLY You can't write against a read only replica.\r\n"
    assert raw.call("EXEC") == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    raw.close()
