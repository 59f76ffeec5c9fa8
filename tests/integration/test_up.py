# SPDX-License-Identifier: MIT
"""`tandem up`: the whole topology from a small config file on ephemeral ports (one fixed),
checked from outside with redis-py and HTTP; kill -9 of the db primary gives a new primary, the
store pool follows it, a replica is provisioned; `tandem status` shows it; SIGINT leaves no
process of the ones it printed."""
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time

import redis

from conftest import TANDEM, free_port, wait_for

SLOW = 3 if os.environ.get("TANDEM_SANITIZER") else 1
LINE = re.compile(r"^(\S+)\s+(arbiter|db|admin|app|new)\s+127\.0\.0\.1:(\d+)\s+pid (\d+)", re.M)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def info(port, timeout=0.5):
    try:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout,
                           socket_connect_timeout=timeout).info("replication")
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None


def request(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.getheader("X-Server"), r.read()
    finally:
        c.close()


def processes(out):
    """{name: (kind, port, pid)} from the lines tandem up printed."""
    return {m.group(1): (m.group(2), int(m.group(3)), int(m.group(4)))
            for m in LINE.finditer(out)}


def status(admin):
    r = subprocess.run([TANDEM, "status", "--admin", f"127.0.0.1:{admin}"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout


def start_up(procs, tmp_path):
    """Starts `tandem up` on a small config; returns once a replica is in sync with the
    primary: (up, processes, admin, web, store, dbs, primary, replica)."""
    admin = free_port()
    cfg = tmp_path / "up.ini"
    cfg.write_text(f"""; a small topology for the test
[up]
dir = {tmp_path / "run"}
cluster = t
lease-ttl = 1s
provision-after = 300ms

[admin]
listen = 127.0.0.1:{admin}
""")
    up = procs.tandem("up", "up", str(cfg))
    wait_for(lambda: "ready in" in up.log() and "primary: " in up.log(), 20 * SLOW,
             what="the topology to be ready with a primary")
    ps = processes(up.log())
    assert {"arbiter", "db1", "db2", "lb", "A", "B"} <= set(ps), up.log()
    assert ps["lb"][1] == admin  # the fixed port from the file
    web = int(re.search(r"web http://127\.0\.0\.1:(\d+)", up.log()).group(1))
    store = int(re.search(r"store 127\.0\.0\.1:(\d+)", up.log()).group(1))
    dbs = {n: ps[n][1] for n in ("db1", "db2")}

    # roles, seen by a real client: one primary, one replica following it, in sync
    def roles():
        r = {n: info(p) for n, p in dbs.items()}
        prim = [n for n, i in r.items() if i and i["role"] == "master"]
        repl = [n for n, i in r.items() if i and i["role"] == "slave"]
        return (prim[0], repl[0]) if len(prim) == 1 and len(repl) == 1 else None
    primary, replica = wait_for(roles, 15 * SLOW, what="a primary and a replica")
    wait_for(lambda: info(dbs[primary]).get("tandem_sync_state") == "ok", 15 * SLOW,
             what="the replica in sync")
    assert info(dbs[replica])["master_port"] == dbs[primary]
    return up, ps, admin, web, store, dbs, primary, replica


def test_up_failover_provisioning_and_clean_stop(procs, tmp_path):
    up, ps, admin, web, store, dbs, primary, replica = start_up(procs, tmp_path)

    # the store pool routes to the primary; the web pool spreads over A and B
    rs = redis.Redis(host="127.0.0.1", port=store, socket_timeout=2)
    wait_for(lambda: rs.set("k", "v"), 10 * SLOW, what="a write through the store pool")
    assert redis.Redis(host="127.0.0.1", port=dbs[replica]).get("k") == b"v"
    wait_for(lambda: request(web, "POST", "/users/ann/balance", b'{"delta":5}')[0] == 200,
             10 * SLOW, what="a balance update through the app tier")
    seen = {request(web, "GET", "/whoami")[1] for _ in range(20)}
    assert seen == {"A", "B"}

    st = status(admin)
    assert re.search(rf"^\s+{primary}\s+\S+\s+up\s+primary\s+\d+", st, re.M), st
    assert re.search(rf"^\s+{replica}\s+\S+\s+up\s+replica\s+\d+\s+\d+\s+\d+ rec\s+follows "
                     rf"{primary}", st, re.M), st
    assert re.search(r"^\s+A\s+\S+\s+up\s+\d+\s+[\d.]+%", st, re.M), st

    # kill -9 the primary: the replica is promoted, the store pool follows, a new node joins
    term = info(dbs[primary])["tandem_term"]
    os.kill(ps[primary][2], signal.SIGKILL)
    wait_for(lambda: (info(dbs[replica]) or {}).get("role") == "master", 15 * SLOW,
             what="the replica promoted")
    assert info(dbs[replica])["tandem_term"] > term

    def write_via_pool():
        try:
            return redis.Redis(host="127.0.0.1", port=store, socket_timeout=1).set("k2", "v2")
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False
    wait_for(write_via_pool, 10 * SLOW, what="writes re-routed through the store pool")
    wait_for(lambda: request(web, "POST", "/users/ann/balance", b'{"delta":1}')[0] == 200,
             10 * SLOW, what="the app tier writing again")

    def balance():
        st_, _, body = request(web, "GET", "/users/ann/balance")
        return json.loads(body)["balance"] if st_ == 200 else None
    # each app reconnects to the store pool on its own; once both did, every read answers
    wait_for(lambda: all(balance() == 6 for _ in range(4)), 10 * SLOW, what="the balance")

    new = wait_for(lambda: [n for n, v in processes(up.log()).items() if v[0] == "new"],
                   20 * SLOW, what="a db node provisioned")[0]
    newport = processes(up.log())[new][1]
    wait_for(lambda: (info(newport) or {}).get("master_port") == dbs[replica] and
             info(newport).get("master_link_status") == "up", 20 * SLOW,
             what="the provisioned node replicating from the new primary")
    wait_for(lambda: info(dbs[replica]).get("tandem_sync_state") == "ok", 20 * SLOW,
             what="redundancy restored (a replica in sync)")
    assert redis.Redis(host="127.0.0.1", port=newport).get("k2") == b"v2"
    st = wait_for(lambda: (lambda s: f"active: {replica}" in s and s)(status(admin)),
                  10 * SLOW, what="the store pool on the new primary in tandem status")
    assert re.search(rf"^\s+{primary}\s+\S+\s+down", st, re.M), st
    assert re.search(rf"^\s+{new}\s+\S+\s+up\s+replica", st, re.M), st

    # Ctrl-C: every process it printed is gone, and up exits 0
    pids = [v[2] for v in processes(up.log()).values()]
    up.signal(signal.SIGINT)
    assert up.popen.wait(timeout=30 * SLOW) == 0, up.log()
    assert "stopped; logs kept in" in up.log()
    for pid in pids:
        assert not alive(pid), f"pid {pid} still running after tandem up exited"


def keyed_post(port, user, key):
    """POST a delta of 1 with an Idempotency-Key: (status, replayed?, balance or None); a
    failed connection counts as status 0."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        c.request("POST", f"/users/{user}/balance", body=b'{"delta":1}',
                  headers={"Idempotency-Key": key})
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            return r.status, False, None
        return 200, r.getheader("Idempotent-Replayed") == "true", json.loads(body)["balance"]
    except (OSError, http.client.HTTPException):
        return 0, False, None
    finally:
        c.close()


def test_up_keyed_balance_updates_exactly_once_across_failover(procs, tmp_path):
    """Clients retry keyed balance updates through the whole stack (web pool, apps, store
    pool, sync replication) until each is answered, while the primary is killed -9: every
    update lands exactly once. Each client owns one user and sends keys in order, so the
    answer to its j-th key must say balance j+1, whether it was applied by that attempt or
    by an earlier one whose answer was lost (then it is replayed)."""
    up, ps, admin, web, store, dbs, primary, replica = start_up(procs, tmp_path)
    wait_for(lambda: keyed_post(web, "warm", "warm-1")[0] == 200, 10 * SLOW,
             what="a keyed update through the app tier")
    n_keys, users = 60, ["u0", "u1", "u2", "u3"]
    lock = threading.Lock()
    progress = {u: 0 for u in users}
    failed_attempts = {u: 0 for u in users}
    wrong = []

    def client(user):
        deadline = time.monotonic() + 60 * SLOW
        for j in range(n_keys):
            key = f"{user}-{j}"
            while True:
                st, replayed, balance = keyed_post(web, user, key)
                if st == 200:
                    break
                with lock:
                    failed_attempts[user] += 1
                if time.monotonic() > deadline:
                    return
            if balance != j + 1:
                wrong.append((key, balance, replayed))
            if j % 7 == 0:  # a duplicate of an answered request is replayed, not applied
                st, replayed, again = keyed_post(web, user, key)
                if st == 200 and (not replayed or again != j + 1):
                    wrong.append((key, "duplicate", again, replayed))
            with lock:
                progress[user] = j + 1

    threads = [threading.Thread(target=client, args=(u,)) for u in users]
    for t in threads:
        t.start()
    wait_for(lambda: min(progress.values()) >= 15, 30 * SLOW, what="updates before the kill")
    os.kill(ps[primary][2], signal.SIGKILL)
    wait_for(lambda: (info(dbs[replica]) or {}).get("role") == "master", 15 * SLOW,
             what="the replica promoted")
    for t in threads:
        t.join(90 * SLOW)
    assert not wrong, wrong
    assert progress == {u: n_keys for u in users}, (progress, failed_attempts)
    # the outage was real: clients saw failures and retried through it
    print("failed attempts retried per user:", failed_attempts)
    assert sum(failed_attempts.values()) > 0
    r = redis.Redis(host="127.0.0.1", port=dbs[replica], socket_timeout=2)
    assert [int(r.get(f"balance:{u}")) for u in users] == [n_keys] * len(users)
    assert all(r.exists(f"idem:{u}-{j}") for u in users for j in range(n_keys))


def test_up_killed_9_takes_its_children_with_it(procs, tmp_path):
    up, ps, *_ = start_up(procs, tmp_path)
    pids = [v[2] for v in ps.values()]
    assert pids and all(alive(p) for p in pids)
    up.signal(signal.SIGKILL)
    wait_for(lambda: not any(alive(p) for p in pids), 15 * SLOW,
             what="every process tandem up started to stop after it was killed -9")


def test_up_rejects_a_bad_config(tmp_path):
    cfg = tmp_path / "bad.ini"
    cfg.write_text("[db only]\nlisten = 10.1.2.3:7000\n")
    r = subprocess.run([TANDEM, "up", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "127.0.0.1 only" in r.stderr, r.stderr
    cfg.write_text("[db only]\nlisten = 0\n")  # sync-replicas 1 needs two nodes
    r = subprocess.run([TANDEM, "up", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "sync-replicas" in r.stderr, r.stderr
    r = subprocess.run([TANDEM, "status"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    r = subprocess.run([TANDEM, "status", "--admin", f"127.0.0.1:{free_port()}"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "no answer" in r.stderr
