# SPDX-License-Identifier: MIT
"""Helpers for balancer tests: backends, a balancer, and small HTTP clients."""
import http.client
import json
import os
import socket
import sys

from conftest import free_port, port_open, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def start_backend(procs, name, port=None):
    port = port or free_port()
    p = procs.start(name, [sys.executable if sys.executable.startswith("/usr/bin") else
                           "/usr/bin/python3", os.path.join(HERE, "httpbackend.py"), name,
                           str(port)])
    wait_for(lambda: port_open(port), 10, what=f"backend {name} on {port}")
    p.port = port
    return p


def start_lb(procs, servers, *args, name="lb"):
    """servers: list of (name, port). Returns the process with .port and .admin set."""
    port, admin = free_port(), free_port()
    argv = ["lb", "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"]
    for n, p in servers:
        argv += ["--server", f"{n}=127.0.0.1:{p}"]
    argv += list(args)
    p = procs.tandem(name, *argv)
    wait_for(lambda: port_open(port) and port_open(admin), 10, what="balancer listening")
    p.port, p.admin = port, admin
    return p


def request(port, method="GET", path="/echo", headers=None, body=None, conn=None, timeout=5):
    """One request; returns (status, headers dict lower-cased, body bytes)."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        if own:
            c.close()


def status(lb):
    s, _, body = request(lb.admin, "GET", "/status")
    assert s == 200
    return json.loads(body)


def server_status(lb, name, pool="default"):
    for p in status(lb)["pools"]:
        if p["name"] == pool:
            for s in p["servers"]:
                if s["name"] == name:
                    return s
    raise KeyError(name)


def admin_post(lb, path):
    s, _, body = request(lb.admin, "POST", path)
    return s, json.loads(body)


def raw_exchange(port, data, timeout=5.0):
    """Sends raw bytes, reads until the balancer closes; returns everything received."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def count(tmp_path, name):
    try:
        with open(tmp_path / f"{name}.count") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
