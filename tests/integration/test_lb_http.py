# SPDX-License-Identifier: MIT
"""tandem lb, HTTP pools: balancing, retries, passive and active health, admin, reload."""
import http.client
import json
import os
import signal
import time

import pytest

from conftest import free_port, wait_for
from lbutil import (admin_post, count, raw_exchange, request, server_status, start_backend,
                    start_lb, status)


@pytest.fixture
def two(procs):
    a = start_backend(procs, "a")
    b = start_backend(procs, "b")
    return a, b


def test_active_active_spreads_and_rewrites_headers(procs, two, tmp_path):
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)])
    seen = set()
    conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=5)
    for _ in range(10):
        st, hdrs, body = request(lb.port, headers={"Connection": "keep-alive",
                                                   "X-Forwarded-For": "10.9.9.9"}, conn=conn)
        assert st == 200
        info = json.loads(body)
        seen.add(hdrs["x-server"])
        assert info["headers"]["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"
        assert "connection" not in info["headers"]  # hop-by-hop, not forwarded
    conn.close()
    assert seen == {"a", "b"}
    assert count(tmp_path, "a") == 5 and count(tmp_path, "b") == 5
    # a body goes through intact, chunked or not
    st, _, body = request(lb.port, "POST", "/echo", body=b"x" * 100000)
    assert st == 200 and json.loads(body)["body"] == "x" * 100000


def test_active_passive_backup_idles(procs, two, tmp_path):
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--mode", "active-passive")
    for _ in range(20):
        st, hdrs, _ = request(lb.port, path="/whoami")
        assert st == 200 and hdrs["x-server"] == "a"
    assert count(tmp_path, "b") == 0
    s = status(lb)["pools"][0]
    assert s["mode"] == "active-passive" and s["active"] == "a"


def test_connect_refused_marks_down_and_retries(procs, two):
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--inter", "10s")
    a.kill9()
    # checks are slow (10s): only live traffic can notice, and no GET may fail
    for _ in range(10):
        st, hdrs, _ = request(lb.port, path="/whoami")
        assert st == 200 and hdrs["x-server"] == "b"
    sa = server_status(lb, "a")
    assert sa["state"] == "down" and not sa["usable"]
    assert sa["last_change_reason"].startswith("passive: connect")
    assert 'msg="server not usable" pool=default server=a' in lb.log()


def test_retry_rules_for_non_idempotent_requests(procs, two, tmp_path):
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--mode", "active-passive",
                  "--inter", "100ms", "--fastinter", "50ms")
    (tmp_path / "a.reset").write_text("")  # a now resets every request it reads
    # a POST with an Idempotency-Key that reached a server which reset is retried elsewhere
    st, hdrs, _ = request(lb.port, "POST", "/echo", body=b"{}",
                          headers={"Idempotency-Key": "k1"})
    assert st == 200 and hdrs["x-server"] == "b"
    assert count(tmp_path, "a") == 1  # it did reach a
    # a comes back (its TCP check passes) and takes traffic again (failback auto)
    wait_for(lambda: status(lb)["pools"][0]["active"] == "a", 10, what="failback to a")
    # a plain POST that may have reached the server is not replayed: 502
    st, _, _ = request(lb.port, "POST", "/echo", body=b"{}")
    assert st == 502
    assert count(tmp_path, "b") == 1
    # an idempotent method is retried
    wait_for(lambda: status(lb)["pools"][0]["active"] == "a", 10, what="failback to a")
    st, hdrs, _ = request(lb.port, "PUT", "/echo", body=b"{}")
    assert st == 200 and hdrs["x-server"] == "b"


def test_http_check_rise_fall_and_failback(procs, two, tmp_path):
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--mode", "active-passive",
                  "--check", "http:/healthz", "--inter", "100ms", "--fall", "2", "--rise", "2",
                  "--failback", "manual")
    (tmp_path / "a.sick").write_text("")
    wait_for(lambda: server_status(lb, "a")["state"] == "down", 10, what="a down by check")
    assert "check: HTTP 503 (2 in a row)" in server_status(lb, "a")["last_change_reason"]
    st, hdrs, _ = request(lb.port, path="/whoami")
    assert hdrs["x-server"] == "b"
    os.unlink(tmp_path / "a.sick")
    wait_for(lambda: server_status(lb, "a")["state"] == "up", 10, what="a up again")
    # manual failback: b keeps the traffic until the admin says otherwise
    for _ in range(5):
        assert request(lb.port, path="/whoami")[1]["x-server"] == "b"
    assert admin_post(lb, "/pools/default/failback") == (200, {"ok": "failback"})
    assert request(lb.port, path="/whoami")[1]["x-server"] == "a"
    assert 'msg="active server changed" pool=default from=b to=a cause="admin: failback"' in lb.log()


def test_admin_drain_disable_enable(procs, two, tmp_path):
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)])
    assert admin_post(lb, "/servers/default/b/drain") == (200, {"ok": "drain"})
    for _ in range(6):
        assert request(lb.port, path="/whoami")[1]["x-server"] == "a"
    assert admin_post(lb, "/servers/default/a/disable")[0] == 200
    st, _, body = request(lb.port, path="/whoami")
    assert st == 503 and b"no server available" in body
    assert admin_post(lb, "/servers/default/b/enable")[0] == 200
    assert request(lb.port, path="/whoami")[1]["x-server"] == "b"
    assert admin_post(lb, "/servers/default/nope/enable")[0] == 404
    assert request(lb.admin, "GET", "/servers/default/a/enable")[0] == 405
    st, _, body = request(lb.admin, "GET", "/metrics")
    text = body.decode()
    assert st == 200
    assert 'tandem_lb_server_requests_total{pool="default",server="a"} 6' in text
    assert 'tandem_lb_pool_no_server_total{pool="default"} 1' in text


def test_sighup_reload_keeps_connections(procs, two, tmp_path):
    a, b = two
    port, admin = free_port(), free_port()
    conf = tmp_path / "lb.ini"
    conf.write_text(f"[lb]\nadmin = 127.0.0.1:{admin}\n[pool web]\nlisten = 127.0.0.1:{port}\n"
                    f"server = a=127.0.0.1:{a.port}\n")
    lb = procs.tandem("lb", "lb", "--config", str(conf))
    from conftest import port_open
    wait_for(lambda: port_open(port) and port_open(admin), 10, what="lb up")
    lb.port, lb.admin = port, admin
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    assert request(port, path="/whoami", conn=conn)[1]["x-server"] == "a"
    conf.write_text(f"[lb]\nadmin = 127.0.0.1:{admin}\n[pool web]\nlisten = 127.0.0.1:{port}\n"
                    f"mode = active-passive\nserver = b=127.0.0.1:{b.port}\n"
                    f"server = a=127.0.0.1:{a.port}\n")
    lb.signal(signal.SIGHUP)
    wait_for(lambda: 'msg="configuration reloaded"' in lb.log(), 10, what="reload logged")
    # the established keep-alive connection still works and follows the new config
    assert request(port, path="/whoami", conn=conn)[1]["x-server"] == "b"
    conn.close()
    p = status(lb)["pools"][0]
    assert p["mode"] == "active-passive" and [s["name"] for s in p["servers"]] == ["b", "a"]
    # a broken file is refused and the running config stays
    conf.write_text("[pool web]\nmode = sideways\n")
    lb.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, keeping the running configuration" in lb.log(), 10,
             what="reload refused")
    assert request(port, path="/whoami")[1]["x-server"] == "b"


def test_hung_server_requests_time_out_and_retry(procs, two):
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--timeout-server", "500ms",
                  "--inter", "200ms", "--fall", "2", "--check", "http:/healthz")
    a.signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        for _ in range(6):
            st, hdrs, _ = request(lb.port, path="/whoami")
            assert st == 200 and hdrs["x-server"] == "b"
        wait_for(lambda: server_status(lb, "a")["state"] == "down", 5, what="a down")
        # marked down within timeout + fall x inter (+ scheduling slack on a loaded machine)
        assert time.monotonic() - t0 < 0.5 + 2 * 0.2 + 1.0
    finally:
        a.signal(signal.SIGCONT)


def test_bad_requests_are_refused_and_service_continues(procs, two):
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--timeout-request", "500ms",
                  "--max-head", "4kb")
    cases = [
        (b"GARBAGE\r\n\r\n", b"HTTP/1.1 400"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 8000 + b"\r\n\r\n", b"HTTP/1.1 431"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"0\r\n\r\n", b"HTTP/1.1 400"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
         b"HTTP/1.1 400"),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"HTTP/1.1 400"),
        (b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 501"),
    ]
    for data, want in cases:
        got = raw_exchange(lb.port, data)
        assert got.startswith(want), (data[:40], got[:80])
    # slowloris: a head that never ends gets 408 after timeout-request, then a close
    got = raw_exchange(lb.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", timeout=5)
    assert got.startswith(b"HTTP/1.1 408")
    # nothing above reached a server, and normal traffic still flows
    assert request(lb.port, path="/whoami")[0] == 200
    st, _, body = request(lb.admin, "GET", "/metrics")
    assert 'tandem_lb_pool_bad_requests_total{pool="default"} 7' in body.decode()


def test_max_conns(procs, two):
    import socket
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--max-conns", "2")
    # the readiness probes were connections too: wait until they are gone
    wait_for(lambda: status(lb)["pools"][0]["client_connections"] == 0, 5, what="no conns")
    s1 = socket.create_connection(("127.0.0.1", lb.port))
    s2 = socket.create_connection(("127.0.0.1", lb.port))
    wait_for(lambda: status(lb)["pools"][0]["client_connections"] == 2, 5, what="2 conns")
    s3 = socket.create_connection(("127.0.0.1", lb.port), timeout=5)
    assert s3.recv(10) == b""  # closed at once
    for s in (s1, s2, s3):
        s.close()
    wait_for(lambda: request(lb.port, path="/whoami")[0] == 200, 5, what="service back")


def test_cli_errors(procs):
    import subprocess
    from conftest import TANDEM

    def run(*a):
        return subprocess.run([TANDEM, "lb", *a], capture_output=True, text=True, timeout=10)
    r = run("--listen", "127.0.0.1:1")
    assert r.returncode == 2 and "has no server" in r.stderr
    r = run("--server", "a=nowhere")
    assert r.returncode == 2 and "expected HOST:PORT" in r.stderr
    r = run("--server", "a=127.0.0.1:1", "--mode", "sideways")
    assert r.returncode == 2 and "active-active|active-passive" in r.stderr
    r = run("--server", "a=127.0.0.1:1", "--check", "icmp")
    assert r.returncode == 2 and "bad check" in r.stderr
    r = run("--server", "a=127.0.0.1:1", "--inter", "fast")
    assert r.returncode == 2 and "duration" in r.stderr
    r = run("--server", "a=127.0.0.1:1", "--dump-config")
    assert r.returncode == 0 and "server = a=127.0.0.1:1" in r.stdout and "inter = 1000ms" in r.stdout
    r = run("--help")
    assert r.returncode == 0 and "--failback" in r.stdout


def test_clients_vanishing_mid_response_do_not_hurt(procs, two):
    """Clients that close before reading their (large) response: the balancer must get EPIPE
    or ECONNRESET on its writes, never die of SIGPIPE, and keep serving."""
    import socket
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)])
    body = b"y" * 300000
    req = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", lb.port))
        s.sendall(req)
        s.close()
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", lb.port))
        s.sendall(req)
        s.recv(100)  # the response started; leave with most of it unread
        s.close()
    assert lb.alive()
    assert request(lb.port, path="/whoami")[0] == 200


def test_pipelined_flood_with_no_server(procs, two):
    """Thousands of pipelined requests answered 503 one after the other: bounded stack and
    memory, every one answered in order."""
    import socket
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)])
    assert admin_post(lb, "/servers/default/a/disable")[0] == 200
    assert admin_post(lb, "/servers/default/b/disable")[0] == 200
    n = 5000
    s = socket.create_connection(("127.0.0.1", lb.port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * n)
    got = b""
    while got.count(b"HTTP/1.1 503") < n:
        chunk = s.recv(1 << 16)
        assert chunk, "connection closed early"
        got += chunk
    s.close()
    assert lb.alive()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_memory_stays_bounded_under_header_floods(procs, two):
    """Hundreds of clients sending endless or oversized heads: each is cut at max-head, the
    balancer's memory stays within max-conns x (max-head + one read buffer)."""
    import socket
    a, b = two
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--timeout-request", "5s")
    base = rss_kb(lb.pid)
    socks = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", lb.port))
        s.sendall(b"GET / HTTP/1.1\r\nX-Pad: " + b"p" * 12000)  # under 16kb: held
        socks.append(s)
    wait_for(lambda: status(lb)["pools"][0]["client_connections"] >= 200, 10, what="200 conns")
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", lb.port))
        try:
            s.sendall(b"GET / HTTP/1.1\r\nX-Pad: " + b"p" * 200000)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused at the limit while we were still sending
        socks.append(s)
    grown_mb = (rss_kb(lb.pid) - base) / 1024
    assert grown_mb < 64, grown_mb
    for s in socks:
        s.close()
    wait_for(lambda: status(lb)["pools"][0]["client_connections"] == 0, 10, what="all closed")
    assert request(lb.port, path="/whoami")[0] == 200
