# SPDX-License-Identifier: MIT
"""tandem lb, TCP pools for the store: routing by role (resp-role checks), connections to a
demoted node closed, connect failures retried on another server."""
import redis

from conftest import free_port, port_open, wait_for
from lbutil import server_status, start_lb, status


def start_redis(procs, name, replicaof=None):
    port = free_port()
    argv = ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no"]
    if replicaof:
        argv += ["--replicaof", "127.0.0.1", str(replicaof)]
    p = procs.start(name, argv)
    wait_for(lambda: port_open(port), 10, what=f"redis {name}")
    p.port = port
    return p


def active(lb):
    p = status(lb)["pools"][0]
    return [s["name"] for s in p["servers"] if s["usable"]]


def test_routes_to_primary_and_follows_role_change(procs):
    r1 = start_redis(procs, "r1")
    r2 = start_redis(procs, "r2", replicaof=r1.port)
    lb = start_lb(procs, [("r1", r1.port), ("r2", r2.port)], "--protocol", "tcp",
                  "--mode", "active-passive", "--check", "resp-role", "--inter", "100ms",
                  "--rise", "1", "--fall", "1")
    wait_for(lambda: active(lb) == ["r1"], 10, what="r1 usable as primary")
    assert server_status(lb, "r2")["role"] == "replica"
    c = redis.Redis(host="127.0.0.1", port=lb.port, socket_timeout=5)
    assert c.set("k", "v1")
    assert c.get("k") == b"v1"
    # switch roles by hand: r2 becomes primary, r1 its replica
    direct2 = redis.Redis(port=r2.port)
    direct1 = redis.Redis(port=r1.port)
    direct2.execute_command("REPLICAOF", "NO", "ONE")
    direct1.execute_command("REPLICAOF", "127.0.0.1", str(r2.port))
    wait_for(lambda: active(lb) == ["r2"], 10, what="r2 usable as primary")
    assert 'msg="closed client connections of server" pool=default server=r1' in lb.log()
    # the old connection was closed; a new one lands on the new primary and may write
    c2 = redis.Redis(host="127.0.0.1", port=lb.port, socket_timeout=5)
    assert c2.set("k", "v2")
    assert direct2.get("k") == b"v2"
    c.close()
    c2.close()


def test_connect_failure_goes_to_next_server(procs):
    r1 = start_redis(procs, "r1")
    r2 = start_redis(procs, "r2")
    lb = start_lb(procs, [("r1", r1.port), ("r2", r2.port)], "--protocol", "tcp",
                  "--check", "tcp", "--inter", "10s")
    r1.kill9()
    for _ in range(6):
        c = redis.Redis(host="127.0.0.1", port=lb.port, socket_timeout=5)
        assert c.ping()
        c.close()
    assert server_status(lb, "r1")["state"] == "down"
