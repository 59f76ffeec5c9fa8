# SPDX-License-Identifier: MIT
"""`tandem load` against real HTTP servers: the JSON contract, failure accounting when the server
dies mid-run, timeouts, 5xx, pacing, request options, early stop on SIGINT, usage errors.

The servers are tests/integration/xserver.py processes (a Python HTTP/1.1 keep-alive server that
sets X-Server, as `tandem app` does), so each can be killed on its own."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TANDEM, free_port, port_open, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def start_server(procs, name):
    port = free_port()
    p = procs.start(f"xserver-{name}", [PY, os.path.join(HERE, "xserver.py"), str(port), name])
    wait_for(lambda: port_open(port), 10, what=f"xserver {name} on {port}")
    return p, port


def load(*args, timeout=60):
    r = subprocess.run([TANDEM, "load", *args], capture_output=True, text=True, timeout=timeout)
    return r


def load_json(*args, timeout=60):
    r = load(*args, "--json", timeout=timeout)
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected exactly one JSON line on stdout, got: {r.stdout!r}"
    return json.loads(lines[0])


def check_schema(rep):
    """Every documented field is present and the numbers agree with each other."""
    for k in ("requests", "ok", "failed", "errors", "duration_s", "rps", "latency_ms",
              "longest_gap_ms", "first_ok_ms", "servers", "timeline"):
        assert k in rep, f"missing {k} in {rep}"
    for k in ("connect", "reset", "timeout", "status_5xx"):
        assert k in rep["errors"]
    for k in ("p50", "p99", "max"):
        assert k in rep["latency_ms"]
    assert rep["ok"] + rep["failed"] == rep["requests"]
    assert sum(rep["errors"].values()) == rep["failed"]
    assert sum(rep["servers"].values()) == rep["ok"]
    lat = rep["latency_ms"]
    if rep["ok"]:
        assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]
        assert rep["first_ok_ms"] is not None
        assert 0 <= rep["first_ok_ms"] <= rep["duration_s"] * 1000 + 1
    if rep["timeline"]:
        assert sum(w["ok"] for w in rep["timeline"]) == rep["ok"]
        assert sum(w["failed"] for w in rep["timeline"]) == rep["failed"]
        for w in rep["timeline"]:
            assert sum(w["servers"].values()) == w["ok"]
        ts = [w["t_ms"] for w in rep["timeline"]]
        assert ts == sorted(ts) and ts[0] == 0


def test_json_against_live_server(procs):
    _, port = start_server(procs, "A")
    rep = load_json("--url", f"http://127.0.0.1:{port}/whoami", "--connections", "4",
                    "--duration", "1s", "--timeline", "250ms")
    check_schema(rep)
    assert rep["failed"] == 0
    assert rep["ok"] > 50
    assert rep["servers"] == {"A": rep["ok"]}
    assert 0.9 <= rep["duration_s"] <= 1.5
    # four whole windows; a fifth, partial one only if a response landed after 1000 ms
    assert [w["t_ms"] for w in rep["timeline"]][:4] == [0, 250, 500, 750]
    assert len(rep["timeline"]) in (4, 5)
    assert rep["rps"] == pytest.approx(rep["ok"] / rep["duration_s"], rel=0.01)
    # with a healthy server the longest pause between successes is short
    assert rep["longest_gap_ms"] < 500


def test_text_report(procs):
    _, port = start_server(procs, "A")
    r = load("--url", f"http://127.0.0.1:{port}/whoami", "--duration", "300ms", "--connections",
             "2")
    assert r.returncode == 0, r.stderr
    assert "requests" in r.stdout and "longest gap" in r.stdout
    assert "A " in r.stdout and "(100.0%)" in r.stdout


def test_server_killed_mid_run_counts_failures(procs):
    srv, port = start_server(procs, "A")
    out = procs.tmp / "load.json"
    with open(out, "w") as f:
        lp = subprocess.Popen([TANDEM, "load", "--url", f"http://127.0.0.1:{port}/whoami",
                               "--connections", "8", "--duration", "3s", "--timeline", "100ms",
                               "--json"], stdout=f, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "served 100" in srv.log(), 10, what="traffic at the server")
        srv.kill9()
        _, err = lp.communicate(timeout=30)
    finally:
        if lp.poll() is None:
            lp.kill()
            lp.wait()
    assert lp.returncode == 0, err
    rep = json.loads(open(out).read())
    check_schema(rep)
    assert rep["ok"] > 0
    assert rep["failed"] > 0
    # after the kill every attempt is refused (connections in flight may also see a reset)
    assert rep["errors"]["connect"] > 0
    assert rep["errors"]["connect"] + rep["errors"]["reset"] == rep["failed"]
    # the tail after the last success is reported, and the failures all come after it
    assert rep["last_ok_ms"] < rep["duration_s"] * 1000
    tl = rep["timeline"]
    last_ok_window = max(i for i, w in enumerate(tl) if w["ok"])
    assert all(w["failed"] == 0 for w in tl[:last_ok_window])
    assert all(w["ok"] == 0 for w in tl[last_ok_window + 1:])
    assert sum(w["failed"] for w in tl[last_ok_window:]) == rep["failed"]


def test_timeout_and_5xx(procs):
    _, port = start_server(procs, "A")
    rep = load_json("--url", f"http://127.0.0.1:{port}/slow/400", "--connections", "2",
                    "--duration", "700ms", "--timeout", "100ms")
    check_schema(rep)
    assert rep["ok"] == 0
    assert rep["failed"] >= 2
    assert rep["errors"]["timeout"] == rep["failed"]
    assert rep["first_ok_ms"] is None

    rep = load_json("--url", f"http://127.0.0.1:{port}/status/503", "--connections", "2",
                    "--duration", "300ms")
    check_schema(rep)
    assert rep["ok"] == 0 and rep["failed"] > 0
    assert rep["errors"]["status_5xx"] == rep["failed"]

    # a 404 is an answer: ok
    rep = load_json("--url", f"http://127.0.0.1:{port}/status/404", "--connections", "2",
                    "--duration", "300ms")
    assert rep["failed"] == 0 and rep["ok"] > 0

    # a server that closes without answering: reset
    rep = load_json("--url", f"http://127.0.0.1:{port}/reset", "--connections", "2",
                    "--duration", "300ms")
    assert rep["ok"] == 0 and rep["failed"] > 0
    assert rep["errors"]["reset"] == rep["failed"]


def test_connection_close_and_missing_header(procs):
    _, port = start_server(procs, "A")
    rep = load_json("--url", f"http://127.0.0.1:{port}/close", "--connections", "2",
                    "--duration", "400ms")
    check_schema(rep)
    assert rep["failed"] == 0 and rep["ok"] > 5
    rep = load_json("--url", f"http://127.0.0.1:{port}/noheader", "--connections", "2",
                    "--duration", "300ms", "--method", "HEAD")
    check_schema(rep)
    assert rep["failed"] == 0
    assert rep["servers"] == {"(none)": rep["ok"]}


def test_method_headers_body(procs):
    _, port = start_server(procs, "A")
    url = f"http://127.0.0.1:{port}/check"
    rep = load_json("--url", url, "--method", "POST", "--header", "X-Test: 1", "--body", "hello",
                    "--duration", "300ms", "--connections", "2")
    assert rep["ok"] > 0 and rep["failed"] == 0
    rep = load_json("--url", url, "--method", "POST", "--body", "hello", "--duration", "300ms",
                    "--connections", "2")
    assert rep["ok"] == 0 and rep["errors"]["status_5xx"] == rep["failed"] > 0


def test_rate_limit(procs):
    _, port = start_server(procs, "A")
    rep = load_json("--url", f"http://127.0.0.1:{port}/whoami", "--connections", "4",
                    "--duration", "1s", "--rate", "100")
    check_schema(rep)
    assert rep["failed"] == 0
    assert 80 <= rep["requests"] <= 102


def test_sigint_stops_early_and_reports(procs):
    srv, port = start_server(procs, "A")
    lp = subprocess.Popen([TANDEM, "load", "--url", f"http://127.0.0.1:{port}/whoami",
                           "--duration", "0", "--json"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "served 100" in srv.log(), 10, what="traffic at the server")
        t0 = time.monotonic()
        lp.send_signal(signal.SIGINT)
        out, err = lp.communicate(timeout=10)
        assert time.monotonic() - t0 < 5
    finally:
        if lp.poll() is None:
            lp.kill()
            lp.wait()
    assert lp.returncode == 0, err
    rep = json.loads(out)
    check_schema(rep)
    assert rep["ok"] > 0


@pytest.mark.parametrize("args", [
    [],
    ["--url", "https://127.0.0.1:1/"],
    ["--url", "http://127.0.0.1:99999/"],
    ["--url", "http://127.0.0.1:1/", "--connections", "0"],
    ["--url", "http://127.0.0.1:1/", "--header", "no colon"],
    ["--url", "http://127.0.0.1:1/", "--frobnicate"],
    ["--url", "http://127.0.0.1:1/", "--duration", "soon"],
])
def test_usage_errors(args):
    r = load(*args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "tandem load" in r.stderr


def test_help():
    r = load("--help")
    assert r.returncode == 0
    for flag in ("--url", "--connections", "--duration", "--method", "--header", "--body",
                 "--timeout", "--rate", "--timeline", "--json"):
        assert flag in r.stdout


def test_lb_survives_clients_leaving_mid_request(procs):
    """Every load run ends by closing connections with requests in flight; the balancer must
    take EPIPE/ECONNRESET as an error, not die of SIGPIPE (regression: it did)."""
    _, port = start_server(procs, "A")
    lb_port = free_port()
    lb = procs.tandem("lb", "lb", "--listen", f"127.0.0.1:{lb_port}", "--server",
                      f"A=127.0.0.1:{port}", "--check", "tcp", "--inter", "100ms")
    wait_for(lambda: port_open(lb_port), 10, what="lb listening")
    for _ in range(15):
        rep = load_json("--url", f"http://127.0.0.1:{lb_port}/slow/20", "--connections", "8",
                        "--duration", "50ms")
        check_schema(rep)
        assert lb.alive(), f"lb exited with {lb.popen.returncode}:\n{lb.log()}"
