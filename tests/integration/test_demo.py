# SPDX-License-Identifier: MIT
"""`tandem demo`: runs end to end when `tandem app` and `tandem lb` exist, fails cleanly when a
server cannot start, and leaves no process behind after SIGINT."""
import os
import re
import signal
import stat
import subprocess

import pytest

from conftest import TANDEM, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def has_command(name):
    r = subprocess.run([TANDEM, name, "--help"], capture_output=True, text=True, timeout=10)
    return r.returncode == 0


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(d))
    return kids


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def test_demo_usage():
    r = subprocess.run([TANDEM, "demo", "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--kill-at" in r.stdout
    r = subprocess.run([TANDEM, "demo", "--kill-at", "3s", "--restart-at", "2s"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--kill-at" in r.stderr


def test_demo_fails_cleanly_when_a_server_cannot_start(tmp_path):
    logs = tmp_path / "logs"
    r = subprocess.run([TANDEM, "demo", "--exe", "/bin/false", "--log-dir", str(logs)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "exited with status 1" in r.stdout
    assert "demo failed; logs kept in" in r.stdout
    assert (logs / "A-1.log").exists()


def test_demo_sigint_stops_every_child(procs, tmp_path):
    # a stand-in binary: `app` is the Python test server, `lb` never listens, so the demo is
    # waiting for the balancer when the signal arrives
    fake = tmp_path / "fake-tandem"
    fake.write_text(f"""#!/bin/sh
cmd=$1; shift
case "$cmd" in
app) while [ $# -gt 0 ]; do case $1 in --listen) l=$2;; --name) n=$2;; esac; shift; done
     exec /usr/bin/python3 {HERE}/xserver.py "${{l##*:}}" "$n";;
lb)  exec sleep 60;;
esac
exit 2
""")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    demo = procs.start("demo", [TANDEM, "demo", "--exe", str(fake), "--log-dir",
                                str(tmp_path / "logs")])
    wait_for(lambda: "$ tandem lb" in demo.log(), 30, what="the demo to start the balancer")
    kids = wait_for(lambda: len(children_of(demo.pid)) == 3 and children_of(demo.pid), 10,
                    what="three children")
    demo.signal(signal.SIGINT)
    demo.popen.wait(timeout=20)
    assert demo.popen.returncode == 0, demo.log()
    assert "stopping the demo" in demo.log()
    for pid in kids:
        assert not alive(pid), f"child {pid} still running after the demo exited"


@pytest.mark.slow
def test_demo_end_to_end(procs, tmp_path):
    if not (has_command("app") and has_command("lb")):
        pytest.skip("tandem app / tandem lb not in this build yet")
    # through procs: if the test fails or times out, the demo gets SIGTERM and stops its
    # children (a SIGKILL would orphan them)
    demo = procs.start("demo", [TANDEM, "demo", "--run", "3s", "--kill-at", "1s",
                                "--restart-at", "1800ms", "--store-run", "5s",
                                "--log-dir", str(tmp_path / "logs")])
    demo.popen.wait(timeout=120)
    out = demo.log()
    assert demo.popen.returncode == 0, out
    assert "what was measured" in out
    row = r"\s+(\S+)\s+(\d+)\s+([\d.]+) / ([\d.]+)\s+(\d+)% / (\d+)%"
    aa = re.search(r"^  active-active" + row, out, re.M)
    ap = re.search(r"^  active-passive" + row, out, re.M)
    assert aa and ap, out
    assert aa.group(1) == "yes" and int(aa.group(5)) > 0 and int(aa.group(6)) > 0
    assert ap.group(1) == "no" and ap.group(6) == "0"
    # the gap across the kill is part of the run's gaps
    for m in (aa, ap):
        assert float(m.group(3)) <= float(m.group(4))
        assert int(m.group(2)) >= 0
    assert "(B idle)" in out
    # the store: promotion, re-routing, a provisioned replica, nothing acknowledged lost
    new = re.search(r">>> (\S+) is the primary now, ([\d.]+) s after the kill", out)
    assert new, out
    assert f"the store pool sends to {new.group(1)}" in out
    assert re.search(r">>> redundancy restored: (\S+) in sync with " + new.group(1), out), out
    store = re.search(r"^  store\s+active-passive\s+no\s+([\d.]+)\s+(\d+)\s+(\d+)\s+"
                      r"(\S+) (\d+) writes", out, re.M)
    assert store, out
    assert int(store.group(3)) == 0  # writes lost
    assert int(store.group(5)) > 0 and float(store.group(1)) > 0
    app = re.search(r"^  app\s+active-active\s+yes\s+[\d.]+\s+\d+\s+-\s+A \d+ \+ B \d+$",
                    out, re.M)
    assert app, out
    pids = [int(p) for p in re.findall(r"\bpid (\d+)", out)]
    assert pids
    for pid in pids:
        assert not alive(pid)


def test_demo_sigint_during_the_store_part_stops_everything(procs, tmp_path):
    demo = procs.start("demo", [TANDEM, "demo", "--mode", "store", "--log-dir",
                                str(tmp_path / "logs")])
    wait_for(lambda: "kill -9" in demo.log() and "primary now" in demo.log(), 60,
             what="the demo to kill the store primary and promote the replica")
    kids = children_of(demo.pid)
    pids = [int(p) for p in re.findall(r"\bpid (\d+)", demo.log())]
    assert len(pids) >= 7, demo.log()  # arbiter, db1, db2, lb, A, B, killed db1 again
    demo.signal(signal.SIGINT)
    demo.popen.wait(timeout=30)
    assert demo.popen.returncode == 0, demo.log()
    assert "stopping the demo" in demo.log()
    for pid in set(kids + pids):
        assert not alive(pid), f"process {pid} still running after the demo exited"
