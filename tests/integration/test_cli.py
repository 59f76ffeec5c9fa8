# SPDX-License-Identifier: MIT
"""The binary's dispatch and help: the documented CLI forms exist."""
import subprocess

from conftest import TANDEM


def run(*args):
    return subprocess.run([TANDEM, *args], capture_output=True, text=True, timeout=10)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    assert "usage: tandem COMMAND" in r.stdout
    assert "version" in r.stdout


def test_unknown_command_is_usage_error():
    r = run("frobnicate")
    assert r.returncode == 2
    assert "unknown command 'frobnicate'" in r.stderr


def test_version():
    r = run("version")
    assert r.returncode == 0
    assert r.stdout.startswith("tandem ")
    assert "libuv" in r.stdout
