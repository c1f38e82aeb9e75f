"""libmemcached's memccapable conformance checker, ASCII (-a) and binary (-b) protocols."""

import shutil
import subprocess

import pytest


@pytest.mark.skipif(shutil.which("memccapable") is None, reason="libmemcached-tools is not installed")
def test_memccapable_ascii(server):
    proc = subprocess.run(
        ["memccapable", "-a", "-t", "10", "-h", server.host, "-p", str(server.port)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "All tests passed" in out, out
    assert "[FAIL]" not in out, out


@pytest.mark.skipif(shutil.which("memccapable") is None, reason="libmemcached-tools is not installed")
def test_memccapable_binary(server):
    """The binary protocol (-b), served on the default -B auto port."""
    proc = subprocess.run(
        ["memccapable", "-b", "-t", "10", "-h", server.host, "-p", str(server.port)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "All tests passed" in out, out
    assert "[FAIL]" not in out, out
