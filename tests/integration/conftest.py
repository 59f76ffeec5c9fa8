# SPDX-License-Identifier: MIT
"""Shared fixtures for integration tests: real tandem processes on loopback.

Every process is started through `procs.start(...)`, gets ephemeral ports from `free_port()`,
logs to a file under the test's tmp dir, and is ended by PID when the test finishes. Tests wait
for conditions with `wait_for(cond, timeout)`, never with fixed sleeps.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

TANDEM = os.environ.get("TANDEM_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "tandem")
TANDEM = os.path.abspath(TANDEM)


def free_port():
    """A port the kernel just handed out on 127.0.0.1 (closed again, so it is free now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=10.0, interval=0.01, what="condition"):
    """Polls cond() until it returns a truthy value; returns that value or fails the test."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # the condition may raise while a server starts
            last_exc = e
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else ""))


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Proc:
    def __init__(self, name, argv, log_path, popen):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.popen = popen

    @property
    def pid(self):
        return self.popen.pid

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.popen.pid, sig)

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout=10):
        """SIGTERM, then wait; returns the exit code (SIGKILL after timeout)."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGCONT)
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


class Procs:
    """Starts processes and ends every one of them, by PID, when the test ends."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.items = []

    def start(self, name, argv, env=None):
        log_path = self.tmp / f"{name}.log"
        f = open(log_path, "w")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=full_env,
                             cwd=str(self.tmp))
        f.close()
        proc = Proc(name, argv, log_path, p)
        self.items.append(proc)
        return proc

    def tandem(self, name, *args, env=None):
        return self.start(name, [TANDEM, *args], env=env)

    def stop_all(self):
        bad = []
        for p in reversed(self.items):
            if p.alive():
                rc = p.stop()
                # a sanitizer report makes the process exit non-zero: surface it
                if rc not in (0, -signal.SIGTERM, 143):
                    bad.append((p.name, rc))
        return bad


@pytest.fixture
def procs(tmp_path, request):
    ps = Procs(tmp_path)
    yield ps
    bad = ps.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if (failed is not None and failed.failed) or bad:
        keep = os.environ.get("TANDEM_TEST_LOGS", "/tmp/tandem-test-logs")
        dst = os.path.join(keep, request.node.name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(tmp_path, dst, ignore=shutil.ignore_patterns("*.sock"))
    assert not bad, f"processes exited badly on SIGTERM: {bad} (logs kept under {keep})"


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
