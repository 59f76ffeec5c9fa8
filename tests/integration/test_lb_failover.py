# SPDX-License-Identifier: MIT
"""Issue 2's acceptance drills: two `tandem app` behind `tandem lb`, 8 keep-alive clients
(`tandem load`), one app killed (or hung) mid-run. Measured by the client: failed requests,
the longest gap without a successful response, and who served what, before and after."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import TANDEM, free_port, port_open, wait_for
from lbutil import server_status, start_lb, status

# Timing bounds are the targets; sanitizer builds run several times slower, so their
# bounds are scaled (the targets themselves are measured on the normal build).
SLOW = 4 if os.environ.get("TANDEM_SANITIZER") else 1
GAP_MS = 50 * SLOW


def start_app(procs, name, port=None):
    port = port or free_port()
    p = procs.tandem(name, "app", "--listen", f"127.0.0.1:{port}", "--name", name)
    wait_for(lambda: port_open(port), 10, what=f"app {name}")
    p.port = port
    return p


def start_load(lb, seconds, path="/whoami"):
    return subprocess.Popen([TANDEM, "load", "--url", f"http://127.0.0.1:{lb.port}{path}",
                             "--connections", "8", "--duration", f"{seconds}s",
                             "--timeout", "2s", "--timeline", "50ms", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def mark(p):
    """Splits the load report at this instant (tandem load's SIGUSR1 phases)."""
    p.send_signal(signal.SIGUSR1)


def finish_load(p):
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return json.loads(out)


def served(lb, name):
    return server_status(lb, name)["requests"]


def windows(report, t_from_ms, t_to_ms=None):
    """Per-server OK counts summed over timeline windows in [t_from, t_to)."""
    tot = {}
    for w in report["timeline"]:
        if w["t_ms"] >= t_from_ms and (t_to_ms is None or w["t_ms"] < t_to_ms):
            for k, v in w["servers"].items():
                tot[k] = tot.get(k, 0) + v
    return tot


def lb_args():
    return ["--check", "http:/healthz", "--inter", "100ms", "--fall", "2", "--rise", "2"]


def test_active_active_kill9_is_invisible(procs):
    a, b = start_app(procs, "a"), start_app(procs, "b")
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], *lb_args())
    t0 = time.monotonic()
    load = start_load(lb, 3)
    wait_for(lambda: served(lb, "a") > 200 and served(lb, "b") > 200, 10, what="both serving")
    mark(load)
    a.kill9()
    t_kill_ms = (time.monotonic() - t0) * 1000
    wait_for(lambda: server_status(lb, "a")["state"] == "down", 5, what="a marked down")
    mark(load)
    r = finish_load(load)
    assert r["failed"] == 0, r["errors"]
    assert r["ok"] == r["requests"] > 1000
    # the gap across the kill (phase 1: from the kill until a is marked down and beyond)
    assert len(r["phases"]) == 3
    assert r["phases"][1]["longest_gap_ms"] <= GAP_MS, r["phases"]
    assert r["servers"].get("a", 0) > 0 and r["servers"].get("b", 0) > 0
    # from shortly after the kill, the survivor has all the traffic
    after = windows(r, t_kill_ms + 100)
    assert after.get("a", 0) == 0 and after.get("b", 0) > 0, after
    assert server_status(lb, "a")["state"] == "down"


@pytest.mark.parametrize("failback", ["auto", "manual"])
def test_active_passive_kill9_and_failback(procs, failback):
    a, b = start_app(procs, "a"), start_app(procs, "b")
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--mode", "active-passive",
                  "--failback", failback, *lb_args())
    load = start_load(lb, 3)
    wait_for(lambda: served(lb, "a") > 500, 10, what="primary serving")
    assert served(lb, "b") == 0  # the backup idles
    mark(load)
    a.kill9()
    wait_for(lambda: status(lb)["pools"][0]["active"] == "b", 5, what="switch to backup")
    mark(load)
    r = finish_load(load)
    assert r["failed"] == 0, r["errors"]
    assert r["phases"][0]["servers"].get("b", 0) == 0  # idle before the kill
    assert r["phases"][1]["longest_gap_ms"] <= GAP_MS, r["phases"]
    assert r["servers"]["b"] > 0
    # the primary comes back on the same address
    a2 = start_app(procs, "a", port=a.port)
    wait_for(lambda: server_status(lb, "a")["state"] == "up", 10, what="a up again")
    load = start_load(lb, 1)
    r2 = finish_load(load)
    assert r2["failed"] == 0
    if failback == "auto":
        assert status(lb)["pools"][0]["active"] == "a"
        assert set(windows(r2, 0)) == {"a"}
    else:
        assert status(lb)["pools"][0]["active"] == "b"
        assert set(windows(r2, 0)) == {"b"}
    a2.stop()


def test_hung_server_under_load(procs):
    a, b = start_app(procs, "a"), start_app(procs, "b")
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--timeout-server", "500ms",
                  *lb_args())
    load = start_load(lb, 3)
    wait_for(lambda: served(lb, "a") > 200, 10, what="a serving")
    t_stop = time.monotonic()
    a.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: server_status(lb, "a")["state"] == "down", 5, what="a marked down")
        took = time.monotonic() - t_stop
        # timeout + fall x inter, plus slack for a loaded machine
        assert took <= (0.5 + 2 * 0.1) * SLOW + 0.5, took
        r = finish_load(load)
    finally:
        a.signal(signal.SIGCONT)
    assert r["failed"] == 0, r["errors"]
    assert r["ok"] > 1000


def test_hung_active_server_with_stall_detection(procs):
    """Active-passive, the serving app hangs (SIGSTOP). With --stall-timeout the balancer
    notices that nothing comes back, marks it down and re-sends the waiting requests to the
    backup: no failed request and a gap of about the stall timeout, not timeout-server."""
    a, b = start_app(procs, "a"), start_app(procs, "b")
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--mode", "active-passive",
                  "--stall-timeout", f"{50 * SLOW}ms", "--timeout-server", "5s", *lb_args())
    load = start_load(lb, 3)
    wait_for(lambda: served(lb, "a") > 500, 10, what="a serving")
    mark(load)
    a.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: status(lb)["pools"][0]["active"] == "b", 5, what="switch to b")
        mark(load)
        r = finish_load(load)
    finally:
        a.signal(signal.SIGCONT)
    assert r["failed"] == 0, r["errors"]
    # about the stall timeout plus one detector period, far below timeout-server (5 s); the
    # 50 ms target itself is measured by bench/lb-failover.sh on a quiet machine
    assert r["phases"][1]["longest_gap_ms"] <= 10 * GAP_MS, r["phases"]
    assert "stalled: nothing received for" in server_status(lb, "a")["last_change_reason"] or \
        "stalled" in lb.log()


def test_stall_detection_never_removes_the_last_server(procs):
    """With one server left, a stall (here: a hung backup after the primary died) must not take
    it out: requests wait for it or for timeout-server, they are not refused with 503."""
    a, b = start_app(procs, "a"), start_app(procs, "b")
    # A check of the hung b must not end (and fail) during the fault either: this test is about
    # stall detection alone, and on a loaded machine the fault can last longer than fall checks.
    lb = start_lb(procs, [("a", a.port), ("b", b.port)], "--mode", "active-passive",
                  "--stall-timeout", "50ms", "--timeout-server", "5s", *lb_args(),
                  "--timeout-check", "10s")
    a.kill9()
    wait_for(lambda: status(lb)["pools"][0]["active"] == "b", 5, what="b active")
    b.signal(signal.SIGSTOP)
    try:
        load = start_load(lb, 1)
        wait_for(lambda: server_status(lb, "b")["inflight"] > 0, 5, what="requests wait on b")
        time.sleep(0.3)  # the fault's duration: six stall periods with b hung
    finally:
        b.signal(signal.SIGCONT)
    r = finish_load(load)
    assert server_status(lb, "b")["usable"]
    assert r["errors"]["status_5xx"] == 0 and r["failed"] == 0, r["errors"]
    assert "stalled" not in lb.log()
