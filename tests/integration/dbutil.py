# SPDX-License-Identifier: MIT
"""Helpers for store tests: start `tandem db` or a reference redis-server on a free loopback port,
and a raw RESP2 client that returns replies as the exact bytes the server sent."""
import os
import socket

from conftest import free_port, port_open, wait_for

REDIS_SERVER = "/usr/bin/redis-server"


def start_db(procs, name="db", *extra):
    port = free_port()
    data = procs.tmp / f"{name}-data"
    p = procs.tandem(name, "db", "--listen", f"127.0.0.1:{port}", "--dir", str(data), *extra)
    wait_for(lambda: port_open(port) or not p.alive(), 10, what=f"tandem db {name} listening")
    assert p.alive(), p.log()
    p.port = port
    return p


def start_redis(procs, name="redis", appendonly="no", *extra):
    """redis-server on a free port; with appendonly="yes" its AOF lives under the test's tmp."""
    port = free_port()
    data = procs.tmp / f"{name}-data"
    data.mkdir(exist_ok=True)
    p = procs.start(name, [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", appendonly, "--dir", str(data), "--daemonize", "no",
                           *extra])
    wait_for(lambda: port_open(port), 10, what="redis-server listening")
    p.port = port
    return p


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Raw:
    """A blocking RESP2 connection returning each reply as raw bytes."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("connection closed")
        t = line[:1]
        if t in b"+-:":
            return line
        if t == b"$":
            n = int(line[1:-2])
            return line if n < 0 else line + self.f.read(n + 2)
        if t == b"*":
            n = int(line[1:-2])
            out = line
            for _ in range(max(n, 0)):
                out += self.reply()
            return out
        raise AssertionError(f"not a RESP reply: {line!r}")

    def call(self, *args):
        self.send(encode(args))
        return self.reply()

    def closed(self, timeout=5):
        """True once the server closed the connection (after any pending bytes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.f.read(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.f.close()
        self.sock.close()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
