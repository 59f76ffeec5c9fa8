# SPDX-License-Identifier: MIT
"""The etcd coordinator backend against a real single-node etcd (Debian's etcd-server), driven
through `tandem coord`: leases, transactions, reads, watches, and what happens when etcd dies.
Skipped when /usr/bin/etcd is not installed."""
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import TANDEM, free_port, wait_for

ETCD = "/usr/bin/etcd"

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(not os.path.exists(ETCD), reason="etcd-server is not installed"),
]


def etcd_healthy(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
        return r.status == 200 and b'"true"' in r.read()


def start_etcd(procs, tmp_path, name="etcd", ports=None):
    port, peer = ports or (free_port(), free_port())
    data = tmp_path / "etcd.data" if ports else tmp_path / f"{name}.data"
    p = procs.start(name, [
        ETCD, "--name", "t", "--data-dir", str(data),
        "--listen-client-urls", f"http://127.0.0.1:{port}",
        "--advertise-client-urls", f"http://127.0.0.1:{port}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"t=http://127.0.0.1:{peer}",
        "--log-level", "warn",
    ])
    wait_for(lambda: etcd_healthy(port), timeout=30, what="etcd to become healthy")
    p.ports = (port, peer)
    return p, port


@pytest.fixture
def etcd(procs, tmp_path):
    p, port = start_etcd(procs, tmp_path, ports=(free_port(), free_port()))
    p.url = f"etcd://127.0.0.1:{port}"
    p.port = port
    return p


def coord(url, *args, timeout="2s", check=None):
    """Runs `tandem coord` once; returns (exit code, stdout, stderr)."""
    r = subprocess.run([TANDEM, "coord", "--coordinator", url, "--timeout", timeout, *args],
                       capture_output=True, text=True, timeout=60)
    if check is not None:
        assert r.returncode == check, (r.returncode, r.stdout, r.stderr)
    return r.returncode, r.stdout, r.stderr


def grant(url, ttl_ms):
    _, out, _ = coord(url, "grant", str(ttl_ms), check=0)
    m = re.fullmatch(r"lease=(\d+) ttl_ms=(\d+)\n", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def read(url, prefix):
    """Returns (rev, {key: (rev, lease, value)}) as printed by `tandem coord read`."""
    _, out, _ = coord(url, "read", prefix, check=0)
    lines = out.splitlines()
    m = re.fullmatch(r"rev=(\d+) count=(\d+)", lines[0])
    assert m, out
    kvs = {}
    for line in lines[1:]:
        k = re.fullmatch(r"key=(\S+) rev=(\d+) lease=(\d+) value=(.*)", line)
        assert k, line
        kvs[k.group(1)] = (int(k.group(2)), int(k.group(3)), k.group(4))
    assert len(kvs) == int(m.group(2))
    return int(m.group(1)), kvs


def txn_rev(out):
    m = re.fullmatch(r"ok rev=(\d+)\n", out)
    assert m, out
    return int(m.group(1))


def test_lease_grant_keepalive_revoke(etcd):
    lease, ttl = grant(etcd.url, 2500)
    assert ttl == 3000  # rounded up to whole seconds, never shorter than asked
    _, out, _ = coord(etcd.url, "keepalive", str(lease), check=0)
    m = re.fullmatch(r"lease=(\d+) ttl_ms=(\d+)\n", out)
    assert m and int(m.group(1)) == lease and 0 < int(m.group(2)) <= 3000
    _, out, _ = coord(etcd.url, "revoke", str(lease), check=0)
    assert out == f"revoked lease={lease}\n"
    rc, out, err = coord(etcd.url, "keepalive", str(lease))
    assert rc == 4 and "lease not found" in err
    rc, _, err = coord(etcd.url, "revoke", str(lease))
    assert rc == 4 and "lease not found" in err


def test_txn_compare_and_read_revisions(etcd):
    u = etcd.url
    # create-if-absent succeeds once
    _, out, _ = coord(u, "txn", "--cmp", "/tandem/c/term=0", "--put", "/tandem/c/term=1",
                      "--put", "/tandem/c/sync=a b", check=0)
    rev1 = txn_rev(out)
    rc, out, err = coord(u, "txn", "--cmp", "/tandem/c/term=0", "--put", "/tandem/c/term=9")
    assert rc == 3 and out == "" and "compare failed" in err
    rev, kvs = read(u, "/tandem/c/")
    assert rev == rev1
    assert kvs == {"/tandem/c/term": (rev1, 0, "1"), "/tandem/c/sync": (rev1, 0, '"a b"')}
    # compare on the mod revision read back: the first writer wins, a stale one fails
    _, out, _ = coord(u, "txn", "--cmp", f"/tandem/c/term={rev1}", "--put", "/tandem/c/term=2",
                      "--del", "/tandem/c/sync", check=0)
    rev2 = txn_rev(out)
    assert rev2 > rev1
    rc, _, _ = coord(u, "txn", "--cmp", f"/tandem/c/term={rev1}", "--put", "/tandem/c/term=3")
    assert rc == 3
    rev, kvs = read(u, "/tandem/c/")
    assert rev == rev2 and kvs == {"/tandem/c/term": (rev2, 0, "2")}
    # the prefix is exact: a sibling with a longer name is not under it
    coord(u, "txn", "--put", "/tandem/cc/x=1", check=0)
    assert set(read(u, "/tandem/c/")[1]) == {"/tandem/c/term"}


def test_put_with_lease_then_revoke_deletes(etcd):
    u = etcd.url
    lease, _ = grant(u, 10000)
    _, out, _ = coord(u, "txn", "--cmp", "/tandem/c/leader=0",
                      "--put", f"/tandem/c/leader=name=a,term=1@{lease}", check=0)
    rev = txn_rev(out)
    assert read(u, "/tandem/c/")[1] == {"/tandem/c/leader": (rev, lease, "name=a,term=1")}
    coord(u, "revoke", str(lease), check=0)
    assert read(u, "/tandem/c/")[1] == {}
    # a put naming the revoked lease fails as a whole
    rc, _, err = coord(u, "txn", "--put", f"/tandem/c/leader=b@{lease}", "--put", "/tandem/c/x=1")
    assert rc == 4 and "lease not found" in err
    assert read(u, "/tandem/c/")[1] == {}


def test_lease_expiry_deletes_keys(etcd):
    u = etcd.url
    lease, ttl = grant(u, 2000)  # etcd's minimum TTL here
    assert ttl == 2000
    coord(u, "txn", "--put", f"/tandem/c/members/a=role=primary@{lease}", check=0)
    t0 = time.monotonic()
    assert "/tandem/c/members/a" in read(u, "/tandem/c/")[1]
    wait_for(lambda: read(u, "/tandem/c/")[1] == {}, timeout=15, interval=0.2,
             what="the leased key to go with its lease")
    assert time.monotonic() - t0 >= 1.5  # not early (a margin for the read's own time)
    rc, _, _ = coord(u, "keepalive", str(lease))
    assert rc == 4


def test_watch_prints_changes(etcd, procs):
    u = etcd.url
    w = procs.tandem("watch", "coord", "--coordinator", u, "watch", "/tandem/w/")
    wait_for(lambda: "watching prefix=/tandem/w/" in w.log(), timeout=10, what="the watch")
    _, out, _ = coord(u, "txn", "--put", "/tandem/w/members/a=x", check=0)
    rev = txn_rev(out)
    wait_for(lambda: f"changed rev={rev} keys=1" in w.log(), timeout=10, what="a change line")
    coord(u, "txn", "--put", "/tandem/other=1", check=0)  # outside the prefix
    _, out, _ = coord(u, "txn", "--del", "/tandem/w/members/a", check=0)
    rev2 = txn_rev(out)
    wait_for(lambda: f"changed rev={rev2} keys=0" in w.log(), timeout=10, what="a delete line")
    assert w.stop() == 0
    lines = [l for l in w.log().splitlines() if not l.startswith("ts=")]
    assert lines[0].startswith("watching prefix=/tandem/w/ rev=")
    assert lines[1:] == [f"changed rev={rev} keys=1", f"changed rev={rev2} keys=0"]


def test_watch_survives_etcd_restart(etcd, procs, tmp_path):
    u = etcd.url
    w = procs.tandem("watch", "coord", "--coordinator", u, "--log-level", "notice", "watch",
                     "/tandem/r/")
    wait_for(lambda: "watching prefix=/tandem/r/" in w.log(), timeout=10, what="the watch")
    etcd.kill9()
    wait_for(lambda: "watch stream ended" in w.log(), timeout=10, what="the stream to end")
    start_etcd(procs, tmp_path, name="etcd-again", ports=etcd.ports)
    # the watch comes back by itself (with backoff); a write before or after that is reported:
    # the re-established stream counts as a change hint, and the read then shows the write
    _, out, _ = coord(u, "txn", "--put", "/tandem/r/k=v", check=0)
    rev = txn_rev(out)
    wait_for(lambda: f"changed rev={rev} keys=1" in w.log(), timeout=10,
             what="a change after the restart")
    assert w.stop() == 0


def test_etcd_killed_is_unavailable_not_a_hang(etcd, tmp_path, procs):
    u = etcd.url
    coord(u, "read", "/", check=0)
    etcd.kill9()
    t0 = time.monotonic()
    rc, out, err = coord(u, "read", "/tandem/", timeout="1s")
    took = time.monotonic() - t0
    assert rc == 1 and out == "" and "unavailable" in err
    assert took < 5, took
    # a stalled etcd (SIGSTOP: connects, never answers) times out within the timeout too
    p2, port2 = start_etcd(procs, tmp_path, name="etcd2")
    try:
        p2.signal(signal.SIGSTOP)
        t0 = time.monotonic()
        rc, _, err = coord(f"etcd://127.0.0.1:{port2}", "grant", "2000", timeout="500ms")
        took = time.monotonic() - t0
        assert rc == 1 and "unavailable" in err
        assert 0.4 < took < 4, took
    finally:
        p2.signal(signal.SIGCONT)


def test_second_endpoint_used_when_first_is_dead(etcd):
    dead = free_port()  # nothing listens there
    u = f"etcd://127.0.0.1:{dead},127.0.0.1:{etcd.port}"
    _, out, err = coord(u, "txn", "--put", "/tandem/e/k=v", check=0)
    rev = txn_rev(out)
    assert f"127.0.0.1:{dead}" in err  # the failover is logged (at warn)
    assert read(u, "/tandem/e/")[1] == {"/tandem/e/k": (rev, 0, "v")}


def test_usage_errors(etcd):
    rc, _, err = coord(etcd.url, "txn")
    assert rc == 2 and "needs --cmp" in err
    rc, _, err = coord(etcd.url, "keepalive", "abc")
    assert rc == 2
    rc, _, err = coord("etcd://nope", "read", "/")
    assert rc == 2 and "HOST:PORT" in err
    rc, _, err = coord("zookeeper://127.0.0.1:1", "read", "/")
    assert rc == 2 and "unknown scheme" in err
    r = subprocess.run([TANDEM, "coord", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "txn [--cmp KEY=REV]" in r.stdout
