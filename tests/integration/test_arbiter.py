# SPDX-License-Identifier: MIT
"""tandem arbiter with real processes and real clients (redis-py, redis-cli): every command,
AUTH, WATCH pushes, restarts (SIGTERM and kill -9) that keep every acknowledged key, the
revision and the leases (restored with a full TTL from the restart, then expiring), a damaged
state file refused, and malformed input cut off while the arbiter keeps serving others."""
import os
import signal
import socket
import subprocess
import time

import pytest
import redis

from conftest import TANDEM, free_port, port_open, wait_for

REDIS_CLI = "/usr/bin/redis-cli"


class Arbiter:
    """Successive tandem arbiter processes on one state directory."""

    def __init__(self, procs, *args, name="arbiter"):
        self.procs = procs
        self.name = name
        self.dir = procs.tmp / "arbiter-data"
        self.args = list(args)
        self.n = 0
        self.p = None
        self.port = free_port()
        self.started_at = None

    def start(self, expect_up=True):
        self.n += 1
        self.started_at = time.monotonic()
        self.p = self.procs.tandem(f"{self.name}-{self.n}", "arbiter", "--listen",
                                   f"127.0.0.1:{self.port}", "--dir", str(self.dir), *self.args)
        wait_for(lambda: port_open(self.port) or not self.p.alive(), 30,
                 what="tandem arbiter listening or exited")
        if expect_up:
            assert self.p.alive(), self.p.log()
        return self.p

    def client(self, **kw):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, **kw)


def read(r, prefix):
    rev, kvs = r.execute_command("READ", prefix)
    return rev, {k.decode(): (v.decode(), mod, lease) for k, v, mod, lease in kvs}


def test_help():
    r = subprocess.run([TANDEM, "arbiter", "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for flag in ("--listen", "--dir", "--requirepass"):
        assert flag in r.stdout
    assert "kill -9" in r.stdout


def test_commands(procs):
    a = Arbiter(procs)
    a.start()
    r = a.client()
    assert r.ping()
    lease, ttl = r.execute_command("GRANT", 5000)
    assert lease > 0 and ttl == 5000
    assert r.execute_command("KEEPALIVE", lease) == 5000
    with pytest.raises(redis.ResponseError, match="NOLEASE"):
        r.execute_command("KEEPALIVE", lease + 1000)
    # Take the leader key when absent, with the term, in one transaction.
    st = r.execute_command("TXN", 1, "/t/c/leader", 0, 2, "PUT", "/t/c/leader", "name=db1 term=1",
                           lease, "PUT", "/t/c/term", "1", 0)
    assert st == [0, 1]
    # The same compare fails now; nothing written.
    st = r.execute_command("TXN", 1, "/t/c/leader", 0, 1, "PUT", "/t/c/leader", "x", 0)
    assert st == [-1, 1]
    # A put attached to an unknown lease fails the whole transaction.
    st = r.execute_command("TXN", 0, 2, "PUT", "/t/c/a", "1", 0, "PUT", "/t/c/b", "2", 999)
    assert st == [-2, 1]
    assert r.get("/t/c/a") is None
    rev, kvs = read(r, "/t/c/")
    assert rev == 1
    assert kvs == {"/t/c/leader": ("name=db1 term=1", 1, lease), "/t/c/term": ("1", 1, 0)}
    assert r.get("/t/c/term") == b"1"
    # DEL in a transaction, compared on the mod revision.
    assert r.execute_command("TXN", 1, "/t/c/term", 1, 1, "DEL", "/t/c/term") == [0, 2]
    # REVOKE deletes the lease's keys.
    assert r.execute_command("REVOKE", lease) == b"OK"
    rev, kvs = read(r, "/t/")
    assert rev == 3 and kvs == {}
    with pytest.raises(redis.ResponseError, match="NOLEASE"):
        r.execute_command("REVOKE", lease)
    i = r.info()  # redis-py parses the INFO text
    assert i["revision"] == 3 and i["keys"] == 0 and i["leases"] == 0
    assert int(i["uptime_in_seconds"]) >= 0
    with pytest.raises(redis.ResponseError, match="unknown command"):
        r.execute_command("FLUSHALL")
    with pytest.raises(redis.ResponseError, match="syntax"):
        r.execute_command("TXN", 1, "/k")
    with pytest.raises(redis.ResponseError, match="invalid request"):
        r.execute_command("GRANT", 0)
    # redis-cli reads the nested reply as is.
    r.execute_command("TXN", 0, 1, "PUT", "/t/x", "hello", 0)
    out = subprocess.run([REDIS_CLI, "-p", str(a.port), "READ", "/t/"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0
    assert out.stdout.split() == ["4", "/t/x", "hello", "4", "0"]


def test_auth(procs):
    a = Arbiter(procs, "--requirepass", "s3cret")
    a.start()
    with pytest.raises(redis.AuthenticationError):
        a.client().execute_command("READ", "")
    with pytest.raises(redis.ResponseError, match="WRONGPASS"):
        a.client(password="nope").ping()
    r = a.client(password="s3cret")
    assert r.execute_command("READ", "") == [0, []]


def test_watch_pushes(procs):
    a = Arbiter(procs)
    a.start()
    w = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    w.sendall(b"WATCH /t/c/\r\n")
    buf = b""
    while not buf.endswith(b":0\r\n"):
        buf += w.recv(4096)
    assert buf == b"*3\r\n$8\r\nwatching\r\n$5\r\n/t/c/\r\n:0\r\n"
    r = a.client()
    r.execute_command("TXN", 0, 1, "PUT", "/other", "1", 0)  # not under the prefix
    r.execute_command("TXN", 0, 1, "PUT", "/t/c/leader", "x", 0)
    buf = b""
    while not buf.endswith(b"\r\n:2\r\n"):
        buf += w.recv(4096)
    assert buf == b"*2\r\n$7\r\nchanged\r\n:2\r\n"
    w.sendall(b"READ /\r\n")
    assert w.recv(4096).startswith(b"-ERR only PING and QUIT")
    w.close()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_restart_keeps_keys_revision_and_leases(procs, how):
    a = Arbiter(procs)
    a.start()
    r = a.client()
    ttl = 1500
    lease, _ = r.execute_command("GRANT", ttl)
    other, _ = r.execute_command("GRANT", 60000)
    assert r.execute_command("TXN", 1, "/t/c/leader", 0, 3, "PUT", "/t/c/leader",
                             "name=db1 term=7", lease, "PUT", "/t/c/term", "7", 0,
                             "PUT", "/t/c/members/db2", "lsn=9", other) == [0, 1]
    for i in range(20):  # some history: the revision moves on
        r.execute_command("TXN", 0, 1, "PUT", f"/t/n/{i}", str(i), 0)
    rev, before = read(r, "/t/")
    assert rev == 21
    if how == "kill9":
        a.p.kill9()
    else:
        assert a.p.stop() == 0, a.p.log()
    a.start()
    r = a.client()
    rev2, after = read(r, "/t/")
    # Every acknowledged key, with its mod revision and lease, and the revision itself.
    assert rev2 == rev and after == before
    assert "state loaded" in a.p.log()
    # The lease lives on with a full TTL from the restart: never early.
    start = a.started_at
    wait_for(lambda: r.get("/t/c/leader") is None, ttl / 1000 + 10, interval=0.02,
             what="the leader key to expire with its lease")
    gone = time.monotonic()
    assert gone - start >= ttl / 1000, (gone - start)
    rev3, kvs = read(r, "/t/c/")
    assert rev3 == rev + 1 and "/t/c/term" in kvs and "/t/c/members/db2" in kvs
    with pytest.raises(redis.ResponseError, match="NOLEASE"):
        r.execute_command("KEEPALIVE", lease)
    assert r.execute_command("KEEPALIVE", other) == 60000
    # Lease ids are not reused after a restart.
    new, _ = r.execute_command("GRANT", 1000)
    assert new > other
    assert "lease expired" in a.p.log()


def test_damaged_state_file_refuses_to_start(procs):
    a = Arbiter(procs)
    a.start()
    a.client().execute_command("TXN", 0, 1, "PUT", "/t/term", "3", 0)
    assert a.p.stop() == 0
    path = a.dir / "arbiter.state"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    p = a.start(expect_up=False)
    assert p.popen.wait(timeout=10) == 1
    assert "damaged" in p.log() and "refusing to start" in p.log()


def recv_all(s):
    out = b""
    while True:
        try:
            chunk = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        out += chunk
    return out


@pytest.mark.parametrize("payload,err", [
    (b"*1\r\n$abc\r\n", b"-ERR Protocol error"),
    (b"*2\r\n$4\r\nREAD\r\n$999999999\r\n", b"-ERR Protocol error"),
    (b"*99999999\r\n", b"-ERR Protocol error"),
    (b"\"unbalanced\r\n", b"-ERR Protocol error"),
])
def test_malformed_input_closes_only_that_client(procs, payload, err):
    a = Arbiter(procs)
    a.start()
    good = a.client()
    good.execute_command("TXN", 0, 1, "PUT", "/k", "v", 0)
    bad = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    bad.sendall(b"PING\r\n" + payload)
    got = recv_all(bad)
    assert got.startswith(b"+PONG\r\n" + err), got
    bad.close()
    assert good.get("/k") == b"v"
    assert good.execute_command("READ", "/") == [1, [[b"/k", b"v", 1, 0]]]
    assert a.p.alive()


def test_second_arbiter_on_same_dir_refused(procs):
    a = Arbiter(procs)
    a.start()
    b = Arbiter(procs, name="second")
    b.dir = a.dir
    p = b.start(expect_up=False)
    assert p.popen.wait(timeout=10) == 1
    assert "in use by another arbiter" in p.log()


def test_half_closed_client_gets_its_replies(procs):
    """A client that sends its commands and shuts down its side (like `nc -N`) still receives
    every reply, the durable ones included."""
    a = Arbiter(procs)
    a.start()
    s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    s.sendall(b"PING\r\nTXN 0 1 PUT /h v 0\r\nGET /h\r\n")
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s)
    assert got == b"+PONG\r\n*2\r\n:0\r\n:1\r\n$1\r\nv\r\n", got
    s.close()
    assert a.client().get("/h") == b"v"
