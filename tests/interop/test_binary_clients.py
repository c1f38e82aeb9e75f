"""Real binary-protocol clients of other languages against a replicating pair: memjs (Node,
binary only) and Dalli 3.0 (Debian ruby-dalli, binary by default). Each writes on site A and
reads on site B, creates a counter with an initial value, increments on both sites, deletes,
without and with SASL PLAIN (-S). The scenarios are tests/interop/node/memjs_pair.js and
tests/interop/ruby/dalli_pair.rb; each must fail against a text-only server (-B ascii), which
shows that it really speaks binary."""

import os
import shutil
import subprocess

import pytest

from conftest import SUT_BIN, Server
from replpair import Pair

HERE = os.path.dirname(os.path.abspath(__file__))
MEMJS = os.path.join(HERE, "node", "memjs_pair.js")
DALLI = os.path.join(HERE, "ruby", "dalli_pair.rb")
RUN_TIMEOUT = 60
USER, PASSWORD = "webfarm", "s3cret pass"


def have_memjs():
    return shutil.which("node") is not None and os.path.isdir(
        os.path.join(HERE, "node", "node_modules", "memjs"))


def have_dalli():
    if shutil.which("ruby") is None:
        return False
    return subprocess.run(["ruby", "-e", "require 'dalli'"], capture_output=True,
                          timeout=RUN_TIMEOUT).returncode == 0


CLIENTS = [
    pytest.param(["node", MEMJS], id="memjs", marks=pytest.mark.skipif(
        not have_memjs(), reason="node and tests/interop/node/node_modules (npm ci) are missing")),
    pytest.param(["ruby", DALLI], id="dalli", marks=pytest.mark.skipif(
        not have_dalli(), reason="ruby with Debian ruby-dalli is missing")),
]


def run(argv, a, b, creds=()):
    proc = subprocess.run(argv + [f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}", *creds],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def pair():
    p = Pair().start()
    yield p
    p.stop()


@pytest.fixture
def sasl_pair(tmp_path):
    pwdb = tmp_path / "pwdb"
    pwdb.write_text(f"{USER}:{PASSWORD}\n")
    # With -S the replication link must authenticate too, loopback or not.
    secret = tmp_path / "secret"
    secret.write_text(os.urandom(32).hex() + "\n")
    p = Pair(extra_args=("-S", "--sasl-pwdb", str(pwdb), "--repl-secret-file", str(secret))).start()
    yield p
    p.stop()


@pytest.mark.parametrize("client", CLIENTS)
def test_write_on_a_read_on_b(client, pair):
    code, out = run(client, pair.a.address, pair.b.address)
    assert code == 0 and out.strip().endswith("ok"), out


@pytest.mark.parametrize("client", CLIENTS)
def test_sasl_write_on_a_read_on_b(client, sasl_pair):
    code, out = run(client, sasl_pair.a.address, sasl_pair.b.address, (USER, PASSWORD))
    assert code == 0 and out.strip().endswith("ok"), out


@pytest.mark.parametrize("client", CLIENTS)
def test_sasl_wrong_password_fails(client, sasl_pair):
    code, out = run(client, sasl_pair.a.address, sasl_pair.b.address, (USER, "wrong"))
    assert code != 0, out


@pytest.mark.parametrize("client", CLIENTS)
def test_fails_on_a_text_only_server(client):
    """The same scenario against `-B ascii`: the client speaks binary, so it cannot work."""
    server = Server(SUT_BIN, ["-B", "ascii"], "ascii-only").start()
    try:
        code, out = run(client, server.address, server.address)
        assert code != 0, out
    finally:
        server.stop()
