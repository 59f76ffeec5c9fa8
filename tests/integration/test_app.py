# SPDX-License-Identifier: MIT
"""`tandem app`: every endpoint through http.client against two real instances sharing one real
redis-server; idempotency, keep-alive, bad input, store outages and clean shutdown."""
import http.client
import json
import signal
import socket
import subprocess
import threading
import time

import pytest
import redis

from conftest import TANDEM, free_port, port_open, wait_for

REDIS_SERVER = "/usr/bin/redis-server"


# ---- helpers ----

def start_redis(procs, port=None, name="redis"):
    port = port or free_port()
    p = procs.start(name, [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no"])
    wait_for(lambda: port_open(port), 10, what="redis-server to listen")
    return p, port


def request(port, method, path, body=None, headers=None, conn=None, timeout=10):
    """One request; returns (status, headers dict (lower-case names), parsed JSON body)."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        c.request(method, path, body=data, headers=headers or {})
        r = c.getresponse()
        raw = r.read()
        h = {k.lower(): v for k, v in r.getheaders()}
        return r.status, h, (json.loads(raw) if raw else None)
    finally:
        if own:
            c.close()


def start_app(procs, name, store_port=None, *extra, wait_store=True):
    port = free_port()
    args = ["app", "--listen", f"127.0.0.1:{port}", "--name", name, *extra]
    if store_port is not None:
        args += ["--store", f"127.0.0.1:{store_port}"]
    p = procs.tandem(name, *args)
    wait_for(lambda: request(port, "GET", "/healthz", timeout=1)[0] == 200, 10,
             what=f"{name} to serve /healthz")
    if store_port is not None and wait_store:
        wait_for(lambda: request(port, "GET", "/users/probe/balance", timeout=2)[0] == 200, 10,
                 what=f"{name} to reach the store")
    p.port = port
    return p


def raw_exchange(port, data, timeout=10):
    """Sends raw bytes, reads until the server closes; returns everything received."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_to_eof(s)


def split_responses(data):
    """Splits concatenated HTTP/1.1 responses (Content-Length framed) into (status, headers,
    body bytes) tuples."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\r\n\r\n", pos)
        lines = data[pos:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        out.append((status, hdrs, data[end + 4:end + 4 + n]))
        pos = end + 4 + n
    return out


def read_to_eof(s):
    chunks = []
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.fixture
def env(procs):
    """redis-server plus two app instances, a1 and a2, on it."""
    rproc, rport = start_redis(procs)
    a1 = start_app(procs, "a1", rport)
    a2 = start_app(procs, "a2", rport)
    return {"procs": procs, "redis": rproc, "redis_port": rport, "a1": a1, "a2": a2,
            "r": redis.Redis(host="127.0.0.1", port=rport, socket_timeout=5)}


# ---- endpoints ----

def test_healthz_and_whoami_name_the_instance(env):
    for app in (env["a1"], env["a2"]):
        st, h, body = request(app.port, "GET", "/healthz")
        assert st == 200
        assert body == {"status": "ok", "name": app.name}
        assert h["x-server"] == app.name
        assert h["content-type"] == "application/json"
        assert int(h["content-length"]) == len(json.dumps(body, separators=(",", ":")))
        st, h, body = request(app.port, "GET", "/whoami")
        assert (st, body, h["x-server"]) == (200, {"name": app.name}, app.name)
    # HEAD: same headers, no body
    st, h, body = request(env["a1"].port, "HEAD", "/healthz")
    assert st == 200 and body is None and int(h["content-length"]) > 0


def test_users_put_get_delete_across_instances(env):
    a1, a2 = env["a1"].port, env["a2"].port
    st, h, body = request(a1, "PUT", "/users/ann", {"name": "Ann", "tags": ["x", 1]})
    assert st == 201
    assert body == {"name": "Ann", "tags": ["x", 1]}
    assert h["x-server"] == "a1"
    # any instance serves any request: nothing lives in the app
    st, h, body = request(a2, "GET", "/users/ann")
    assert (st, body, h["x-server"]) == (200, {"name": "Ann", "tags": ["x", 1]}, "a2")
    st, _, body = request(a2, "PUT", "/users/ann", {"name": "Ann B"})
    assert st == 200
    assert request(a1, "GET", "/users/ann")[2] == {"name": "Ann B"}
    assert env["r"].get("user:ann") == b'{"name":"Ann B"}'
    st, _, body = request(a1, "GET", "/users/nobody")
    assert st == 404 and body["error"] == "user not found"
    st, _, body = request(a1, "DELETE", "/users/ann")
    assert st == 200 and body == {"id": "ann", "deleted": True}
    assert request(a2, "GET", "/users/ann")[0] == 404
    assert request(a2, "DELETE", "/users/ann")[0] == 404


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b'"x"', b"{\"a\":1} trailing",
                                  b"{\"a\":\xff}", b"null"])
def test_users_put_rejects_bad_json(env, body):
    st, h, resp = request(env["a1"].port, "PUT", "/users/bob", body,
                          {"Content-Type": "application/json"})
    assert st == 400
    assert resp["error"] == "invalid user document" and resp["detail"]
    assert h["x-server"] == "a1"
    assert env["r"].exists("user:bob") == 0


@pytest.mark.parametrize("path", ["/users/a.b", "/users/" + "x" * 65, "/users/a%20b/balance",
                                  "/users//balance"])
def test_bad_ids_are_400(env, path):
    st, _, body = request(env["a1"].port, "GET", path)
    assert st == 400 and "invalid user id" in body["error"]


def test_balance_read_and_change(env):
    a1, a2 = env["a1"].port, env["a2"].port
    assert request(a1, "GET", "/users/carl/balance")[2] == {"id": "carl", "balance": 0}
    st, h, body = request(a1, "POST", "/users/carl/balance", {"delta": 40})
    assert (st, body) == (200, {"id": "carl", "balance": 40})
    st, h, body = request(a2, "POST", "/users/carl/balance", {"delta": -15})
    assert (st, body, h["x-server"]) == (200, {"id": "carl", "balance": 25}, "a2")
    assert request(a1, "GET", "/users/carl/balance")[2] == {"id": "carl", "balance": 25}
    # balances are exact int64 in the store, not doubles
    env["r"].set("balance:big", 2**62)
    st, _, body = request(a2, "POST", "/users/big/balance", {"delta": 1})
    assert body["balance"] == 2**62 + 1
    # a result out of int64 range is refused and changes nothing
    env["r"].set("balance:edge", 2**63 - 1)
    st, _, body = request(a1, "POST", "/users/edge/balance", {"delta": 1})
    assert st == 409 and body["error"] == "balance out of range"
    assert int(env["r"].get("balance:edge")) == 2**63 - 1


@pytest.mark.parametrize("body", [b"{}", b'{"delta": 1.5}', b'{"delta": "5"}', b'{"delta": null}',
                                  b"not json", b"", b'{"delta": 1e400}',
                                  b'{"delta": 9007199254740993}', b'{"delta":1,"delta":2}'])
def test_balance_rejects_bad_delta(env, body):
    st, _, resp = request(env["a1"].port, "POST", "/users/dan/balance", body)
    assert st == 400 and resp["error"] == "invalid balance change" and resp["detail"]
    assert env["r"].get("balance:dan") is None


# ---- idempotency ----

def test_idempotency_same_key_applies_once(env):
    a1, a2 = env["a1"].port, env["a2"].port
    key = {"Idempotency-Key": "pay-7f3a"}
    st1, h1, b1 = request(a1, "POST", "/users/eve/balance", {"delta": 30}, key)
    # the retry lands on the other instance, as it would behind the balancer
    st2, h2, b2 = request(a2, "POST", "/users/eve/balance", {"delta": 30}, key)
    assert (st1, b1) == (200, {"id": "eve", "balance": 30})
    assert (st2, b2) == (st1, b1)
    assert h2.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in h1
    assert request(a1, "GET", "/users/eve/balance")[2]["balance"] == 30
    assert 0 < env["r"].ttl("idem:pay-7f3a") <= 86400
    # different keys are different requests
    request(a1, "POST", "/users/eve/balance", {"delta": 30}, {"Idempotency-Key": "pay-2"})
    request(a2, "POST", "/users/eve/balance", {"delta": 30}, {"Idempotency-Key": "pay-3"})
    assert request(a2, "GET", "/users/eve/balance")[2]["balance"] == 90
    # a key reused for another request is refused, not replayed
    st, _, body = request(a1, "POST", "/users/eve/balance", {"delta": 31}, key)
    assert st == 422 and "different request" in body["error"]
    st, _, body = request(a1, "POST", "/users/frank/balance", {"delta": 30}, key)
    assert st == 422
    assert request(a1, "GET", "/users/eve/balance")[2]["balance"] == 90
    assert request(a1, "GET", "/users/frank/balance")[2]["balance"] == 0


def test_idempotency_record_and_balance_are_one_write(env):
    # the balance and the record are written by one MULTI/EXEC: a record found means the
    # balance has it, and an unreadable record is never taken for "not applied"
    st, _, body = request(env["a1"].port, "POST", "/users/gil/balance", {"delta": 5},
                          {"Idempotency-Key": "one-write"})
    assert (st, body) == (200, {"id": "gil", "balance": 5})
    assert int(env["r"].get("balance:gil")) == 5
    assert json.loads(env["r"].get("idem:one-write"))["status"] == 200
    env["r"].set("idem:garbled", "pending", ex=60)
    st, h, body = request(env["a1"].port, "POST", "/users/gil/balance", {"delta": 5},
                          {"Idempotency-Key": "garbled"})
    assert st == 500 and "unreadable" in body["error"]
    assert h["content-type"] == "application/json"
    assert int(env["r"].get("balance:gil")) == 5


def test_idempotency_concurrent_keys_on_one_balance_all_apply(env):
    # distinct keys racing on one balance through two instances: their WATCHes conflict and
    # retry, every update lands exactly once
    ports = [env["a1"].port, env["a2"].port]
    results = []
    lock = threading.Lock()

    def post(i):
        for j in range(10):
            r = request(ports[i % 2], "POST", "/users/ike/balance", {"delta": 1},
                        {"Idempotency-Key": "ike-%d-%d" % (i, j)})
            with lock:
                results.append(r[0])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 80
    assert int(env["r"].get("balance:ike")) == 80
    assert request(ports[0], "GET", "/users/ike/balance")[2]["balance"] == 80


def test_idempotency_concurrent_duplicates_apply_once(env):
    ports = [env["a1"].port, env["a2"].port]
    results = []
    lock = threading.Lock()

    def post(i):
        r = request(ports[i % 2], "POST", "/users/hal/balance", {"delta": 3},
                    {"Idempotency-Key": "storm"})
        with lock:
            results.append(r)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 16
    # the first applies, every duplicate (same instance or not) replays its answer
    assert all(st == 200 and b == {"id": "hal", "balance": 3} for st, _, b in results), results
    replayed = [h for _, h, _ in results if h.get("idempotent-replayed") == "true"]
    assert len(replayed) == 15
    assert int(env["r"].get("balance:hal")) == 3


def test_bad_idempotency_key_is_400(env):
    st, _, body = request(env["a1"].port, "POST", "/users/ida/balance", {"delta": 1},
                          {"Idempotency-Key": "x" * 256})
    assert st == 400 and "Idempotency-Key" in body["error"]
    assert env["r"].get("balance:ida") is None


# ---- HTTP behaviour ----

def test_unknown_path_and_wrong_method(env):
    port = env["a1"].port
    st, h, body = request(port, "GET", "/nope")
    assert (st, body, h["x-server"]) == (404, {"error": "not found"}, "a1")
    st, h, body = request(port, "DELETE", "/users/x/balance")
    assert st == 405 and body == {"error": "method not allowed"}
    assert h["allow"] == "GET, HEAD, POST"
    st, h, _ = request(port, "POST", "/healthz", b"{}")
    assert st == 405 and h["allow"] == "GET, HEAD"


def test_keep_alive_serves_many_requests_on_one_connection(env):
    port = env["a1"].port
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.connect()
    sock = c.sock
    for i in range(200):
        path = ["/healthz", "/whoami", "/users/kim/balance"][i % 3]
        st, h, _ = request(port, "POST" if i == 100 else "GET",
                           "/users/kim/balance" if i == 100 else path,
                           {"delta": 1} if i == 100 else None, conn=c)
        assert st == 200 and h["x-server"] == "a1" and "connection" not in h
    assert c.sock is sock  # http.client reconnects silently; it never had to
    c.close()
    # pipelined requests are answered in order on the same connection
    reqs = (b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /users/kim/balance HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n"
            b'{"delta": 1}'
            b"GET /users/kim/balance HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    resps = split_responses(raw_exchange(port, reqs))
    assert [r[0] for r in resps] == [200, 200, 200]
    assert json.loads(resps[1][2]) == {"id": "kim", "balance": 2}
    assert json.loads(resps[2][2]) == {"id": "kim", "balance": 2}
    assert resps[2][1]["connection"] == "close"


def test_http10_closes_unless_keep_alive(env):
    port = env["a1"].port
    resps = split_responses(raw_exchange(port, b"GET /whoami HTTP/1.0\r\n\r\n"))
    assert len(resps) == 1 and resps[0][0] == 200 and resps[0][1]["connection"] == "close"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /whoami HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = b""
        while b"}" not in data:
            data += s.recv(4096)
        assert b"Connection: keep-alive\r\n" in data
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert split_responses(read_to_eof(s))[0][0] == 200


@pytest.mark.parametrize("data,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", 431),
])
def test_bad_input_gets_error_and_close(env, data, status):
    port = env["a1"].port
    # keep a healthy connection open across the attack
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    assert request(port, "GET", "/whoami", conn=c)[0] == 200
    resps = split_responses(raw_exchange(port, data))  # returns only once the server closed
    assert len(resps) == 1
    st, h, body = resps[0]
    assert st == status and h["x-server"] == "a1" and h["connection"] == "close"
    assert "error" in json.loads(body)
    assert request(port, "GET", "/whoami", conn=c)[0] == 200
    assert request(port, "GET", "/healthz")[0] == 200
    c.close()


def test_body_limit_is_413(env):
    port = env["a1"].port
    big = json.dumps({"pad": "x" * 70000}).encode()
    resps = split_responses(raw_exchange(
        port, b"PUT /users/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big) + big))
    assert resps[0][0] == 413 and resps[0][1]["connection"] == "close"
    # chunked bodies are counted as they arrive
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 8000]), big[i:i + 8000])
                       for i in range(0, len(big), 8000)) + b"0\r\n\r\n"
    resps = split_responses(raw_exchange(
        port, b"PUT /users/big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked))
    assert resps[0][0] == 413
    assert env["r"].exists("user:big") == 0
    # just under the limit is fine, chunked too
    ok = json.dumps({"pad": "y" * 60000}).encode()
    resps = split_responses(raw_exchange(
        port, b"PUT /users/big HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(ok), ok)))
    assert resps[0][0] == 201
    assert request(port, "GET", "/users/big")[2] == {"pad": "y" * 60000}


def test_request_and_idle_timeouts(procs):
    _, rport = start_redis(procs)
    app = start_app(procs, "t1", rport, "--request-timeout", "300ms", "--idle-timeout", "400ms")
    # a request that never finishes gets 408 and the connection ends
    t0 = time.monotonic()
    resps = split_responses(raw_exchange(app.port, b"GET /healthz HTTP/1.1\r\nHost: x"))
    assert resps[0][0] == 408 and time.monotonic() - t0 < 5
    # an idle keep-alive connection is closed by the server
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        data = b""
        while b"}" not in data:
            data += s.recv(4096)
        t0 = time.monotonic()
        assert s.recv(4096) == b""
        assert 0.2 < time.monotonic() - t0 < 5


def test_pipelined_flood_without_reading_is_served_in_full(procs):
    """A client that pipelines more answers than the kernel buffers and does not read them gets
    the app to pause (it stops reading and serving that client), and then every answer, in
    order, once it reads."""
    _, rport = start_redis(procs)
    app = start_app(procs, "p1", rport, "--log-level", "debug")
    doc = {"pad": "z" * 60000}
    assert request(app.port, "PUT", "/users/wide", doc)[0] == 201
    n = 300  # about 18 MB of answers
    with socket.socket() as s:
        s.settimeout(20)
        s.connect(("127.0.0.1", app.port))
        s.sendall(b"GET /users/wide HTTP/1.1\r\n\r\n" * (n - 1) +
                  b"GET /users/wide HTTP/1.1\r\nConnection: close\r\n\r\n")
        wait_for(lambda: "client not reading its answers, pausing" in app.log(), 20,
                 what="the app to pause the client")
        data = read_to_eof(s)
    resps = split_responses(data)
    assert len(resps) == n
    assert all(r[0] == 200 and json.loads(r[2]) == doc for r in resps)
    assert request(app.port, "GET", "/healthz")[0] == 200


def test_expect_100_continue(env):
    port = env["a1"].port
    body = json.dumps({"delta": 4}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /users/lee/balance HTTP/1.1\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        data = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        s.sendall(body)
        while b"}" not in data:
            data += s.recv(4096)
    assert json.loads(split_responses(data)[0][2]) == {"id": "lee", "balance": 4}


def test_clients_vanishing_mid_request_do_not_disturb(env):
    """Clients that close while their store op is in flight: the op finishes alone and the
    server keeps serving (under ASan this also checks nothing is touched after free)."""
    port = env["a1"].port
    env["redis"].signal(signal.SIGSTOP)
    try:
        for i in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"POST /users/max/balance HTTP/1.1\r\nIdempotency-Key: v%d\r\n"
                          b"Content-Length: 12\r\n\r\n{\"delta\": 1}" % i)
                # closes at once, answer unread
        assert request(port, "GET", "/healthz")[0] == 200
    finally:
        env["redis"].signal(signal.SIGCONT)
    wait_for(lambda: request(port, "GET", "/users/max/balance", timeout=2)[0] == 200, 10,
             what="the store to answer again")
    assert 0 <= request(port, "GET", "/users/max/balance")[2]["balance"] <= 20


def test_max_conns(procs):
    app = start_app(procs, "m1", None, "--max-conns", "2")
    held = []
    for _ in range(2):
        c = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
        assert request(app.port, "GET", "/whoami", conn=c)[0] == 200
        held.append(c)
    # the third is accepted and closed at once, without an answer
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as s:
        try:
            s.sendall(b"GET /whoami HTTP/1.1\r\n\r\n")
            assert s.recv(4096) == b""
        except ConnectionResetError:
            pass
    wait_for(lambda: "too many connections" in app.log(), 5, what="the refusal to be logged")
    held.pop().close()
    wait_for(lambda: request(app.port, "GET", "/whoami", timeout=2)[0] == 200, 5,
             what="a slot to free up")
    assert request(app.port, "GET", "/whoami", conn=held[0])[0] == 200
    held[0].close()


# ---- the store ----

def test_no_store_configured_is_503(procs):
    app = start_app(procs, "solo")
    st, h, body = request(app.port, "GET", "/users/u1")
    assert st == 503 and body["error"] == "store unavailable"
    assert "--store" in body["detail"] and h["x-server"] == "solo"
    assert request(app.port, "POST", "/users/u1/balance", {"delta": 1})[0] == 503
    assert request(app.port, "GET", "/healthz")[0] == 200


def test_store_down_is_503_fast_then_recovers(env):
    procs, a1 = env["procs"], env["a1"]
    assert request(a1.port, "POST", "/users/ivy/balance", {"delta": 5})[0] == 200
    c = http.client.HTTPConnection("127.0.0.1", a1.port, timeout=10)
    assert request(a1.port, "GET", "/whoami", conn=c)[0] == 200
    env["redis"].kill9()
    for path, method, body in [("/users/ivy/balance", "GET", None),
                               ("/users/ivy", "PUT", {"a": 1}),
                               ("/users/ivy/balance", "POST", {"delta": 1})]:
        t0 = time.monotonic()
        st, h, resp = request(a1.port, method, path, body)
        took = time.monotonic() - t0
        assert st == 503 and resp["error"] == "store unavailable" and resp["detail"]
        assert took < 1.5, f"{method} {path} took {took:.2f}s"  # the store timeout is 500ms
    # the app itself stays healthy, keep-alive connections too
    assert request(a1.port, "GET", "/healthz", conn=c)[0] == 200
    wait_for(lambda: "store disconnected" in a1.log(), 5, what="the disconnect to be logged")
    # the store comes back on the same address: the app reconnects by itself
    start_redis(procs, env["redis_port"], name="redis2")
    wait_for(lambda: request(a1.port, "GET", "/users/ivy/balance", timeout=2)[0] == 200, 10,
             what="a1 to reconnect")
    assert request(a1.port, "POST", "/users/ivy/balance", {"delta": 2})[2]["balance"] == 2
    assert "store connected" in a1.log()
    c.close()


def test_stalled_store_times_out_never_hangs(env):
    a1 = env["a1"]
    env["redis"].signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        st, _, body = request(a1.port, "GET", "/users/jo/balance")
        took = time.monotonic() - t0
        assert st == 503 and "500ms" in body["detail"]
        assert 0.4 < took < 2.0, took
        # an Idempotency-Key request that timed out is not applied twice by its retry
        key = {"Idempotency-Key": "slow-1"}
        assert request(a1.port, "POST", "/users/jo/balance", {"delta": 9}, key)[0] == 503
    finally:
        env["redis"].signal(signal.SIGCONT)
    wait_for(lambda: request(a1.port, "GET", "/users/jo/balance", timeout=2)[0] == 200, 10,
             what="the store to answer again")
    # The timed-out op finished in the background (its retry is a replay) or never ran (its
    # retry applies it): either way the retry succeeds and the balance changed once.
    st, _, body = request(a1.port, "POST", "/users/jo/balance", {"delta": 9}, key)
    assert (st, body) == (200, {"id": "jo", "balance": 9})
    assert int(env["r"].get("balance:jo")) == 9


# ---- command line and lifecycle ----

def test_sigterm_exits_zero_with_connections_open(env):
    a2 = env["a2"]
    idle = http.client.HTTPConnection("127.0.0.1", a2.port, timeout=10)
    assert request(a2.port, "GET", "/whoami", conn=idle)[0] == 200
    # A request in flight when SIGTERM arrives still gets its answer. Pipelined behind a quick
    # one, so that reading the quick answer proves the app has taken the slow one in hand.
    env["redis"].signal(signal.SIGSTOP)
    try:
        with socket.create_connection(("127.0.0.1", a2.port), timeout=10) as s:
            s.sendall(b"GET /whoami HTTP/1.1\r\n\r\nGET /users/kay/balance HTTP/1.1\r\n\r\n")
            data = b""
            while b"}" not in data:
                data += s.recv(4096)
            t0 = time.monotonic()
            a2.signal(signal.SIGTERM)
            data += read_to_eof(s)
        assert a2.popen.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
    finally:
        env["redis"].signal(signal.SIGCONT)
    resps = split_responses(data)
    assert [r[0] for r in resps] == [200, 503]
    assert resps[1][1]["connection"] == "close"
    log = a2.log()
    assert "shutting down" in log and 'msg="stopped"' in log
    assert not port_open(a2.port)
    idle.close()


def test_sigint_exits_zero(procs):
    app = start_app(procs, "s1")
    app.signal(signal.SIGINT)
    assert app.popen.wait(timeout=10) == 0


def test_cli_usage_errors():
    def run(*args):
        return subprocess.run([TANDEM, "app", *args], capture_output=True, text=True, timeout=10)

    r = run("--help")
    assert r.returncode == 0 and "--store-timeout" in r.stdout and "--name" in r.stdout
    r = run("--listen", "127.0.0.1:1")
    assert r.returncode == 2 and "--name is required" in r.stderr
    r = run("--name", "bad name")
    assert r.returncode == 2
    r = run("--name", "a", "--listen", "nowhere")
    assert r.returncode == 2
    r = run("--name", "a", "--store-timeout", "soon")
    assert r.returncode == 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = run("--name", "a", "--listen", f"127.0.0.1:{s.getsockname()[1]}")
        assert r.returncode == 1 and "cannot listen" in r.stderr
