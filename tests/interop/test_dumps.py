"""Key dumps (`stats cachedump`, `lru_crawler metadump`): the tools of the memcached ecosystem list
the keys (memcdump from libmemcached-tools, php-memcached's getAllKeys()), and the replies have
memcached 1.6.18's shape. Times, CAS ids and item sizes differ by design between the two servers,
so lines are compared after those fields are masked; error replies are compared byte for byte.
"""

import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import start_reference

KEYS = ["alpha", "beta", "with%20escape", "k-._~", "n" * 250]


def raw(server, data, end=b"END\r\n", timeout=5.0):
    """Sends `data` on a fresh connection and reads until the reply ends with `end`."""
    with socket.create_connection(server.address, timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(end):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete reply to {data[:80]!r}: got {buf[-200:]!r}")
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


def line_reply(server, data):
    with socket.create_connection(server.address, timeout=5.0) as s:
        s.sendall(data)
        buf = b""
        while not buf.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf


def fill(server):
    for i, key in enumerate(KEYS):
        exptime = 1000 if i % 2 else 0
        assert raw(server, f"set {key} 0 {exptime} {i + 1}\r\n{'v' * (i + 1)}\r\n".encode(),
                   end=b"STORED\r\n") == b"STORED\r\n"
    # fetched: yes for this one
    raw(server, b"get alpha\r\n")


CACHEDUMP_LINE = re.compile(rb"^ITEM (\S+) \[(\d+) b; (\d+) s\]$")
METADUMP_LINE = re.compile(
    rb"^key=(\S+) exp=(-1|\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) size=(\d+)$")


def cachedump_shape(reply):
    assert reply.endswith(b"END\r\n"), reply
    rows = {}
    for line in reply[:-5].split(b"\r\n")[:-1]:
        m = CACHEDUMP_LINE.match(line)
        assert m, line
        key, nbytes, exp = m.groups()
        rows[key] = (int(nbytes), "never" if exp == b"0" else "at")
    return rows


def metadump_shape(reply):
    assert reply.endswith(b"END\r\n"), reply
    body = reply[:-5]
    assert b"\r" not in body, "metadump lines end with a bare \\n"
    rows = {}
    for line in body.split(b"\n")[:-1]:
        m = METADUMP_LINE.match(line)
        assert m, line
        key, exp, _la, _cas, fetch, cls, _size = m.groups()
        # memcached's class depends on the item's size; repcached's is always 1.
        rows[key] = ("never" if exp == b"-1" else "at", fetch, int(cls) >= 1)
    return rows


def all_classes(server):
    """Every class's cachedump, merged, as memcdump walks them (repcached has only class 1;
    memcached puts the 250-byte key in a larger class)."""
    rows = {}
    for cls in range(1, 64):
        rows.update(cachedump_shape(raw(server, f"stats cachedump {cls} 0\r\n".encode())))
    return rows


def wait_cachedump(server, want):
    # memcached lists only its COLD LRU: new items reach it once its LRU maintainer moves them.
    deadline = time.monotonic() + 10
    while True:
        rows = all_classes(server)
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


@pytest.fixture(scope="module")
def reference():
    ref = start_reference()
    yield ref
    ref.stop()


def test_cachedump_and_metadump_shapes_match_memcached(server, reference):
    reference.flush()
    fill(server)
    fill(reference)
    ours = wait_cachedump(server, len(KEYS))
    theirs = wait_cachedump(reference, len(KEYS))
    assert ours == theirs
    assert ours == cachedump_shape(raw(server, b"stats cachedump 1 0\r\n"))
    assert set(ours) == {k.encode() for k in KEYS}
    ours = metadump_shape(raw(server, b"lru_crawler metadump all\r\n"))
    theirs = metadump_shape(raw(reference, b"lru_crawler metadump all\r\n"))
    assert ours == theirs
    assert ours[b"with%2520escape"] == ("never", b"no", True)
    assert all(b" cls=1 " in line for line in raw(server, b"lru_crawler metadump all\r\n").split(b"\n")[:-2])
    assert ours[b"alpha"][1] == b"yes"
    for scope in [b"hash", b"1", b"1,2", b"+1"]:
        ours = metadump_shape(raw(server, b"lru_crawler metadump " + scope + b"\r\n"))
        assert ours == theirs, scope


# Answers observed on memcached 1.6.18 (compared live below as well).
ERROR_TABLE = [
    (b"stats cachedump 2 0\r\n", b"END\r\n"),
    (b"stats cachedump 0 0\r\n", b"END\r\n"),
    (b"stats cachedump 63 5\r\n", b"END\r\n"),
    (b"stats cachedump 64 0\r\n", b"CLIENT_ERROR Illegal slab id\r\n"),
    (b"stats cachedump\r\n", b"CLIENT_ERROR bad command line\r\n"),
    (b"stats cachedump 1\r\n", b"CLIENT_ERROR bad command line\r\n"),
    (b"stats cachedump x 0\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"stats cachedump 1 -1\r\n", b"CLIENT_ERROR bad command line format\r\n"),
    (b"lru_crawler metadump 2\r\n", b"END\r\n"),
    (b"lru_crawler metadump 0\r\n", b"BADCLASS invalid class id\r\n"),
    (b"lru_crawler metadump 64\r\n", b"BADCLASS invalid class id\r\n"),
    (b"lru_crawler metadump 1,x\r\n", b"BADCLASS invalid class id\r\n"),
    (b"lru_crawler metadump foo\r\n", b"BADCLASS invalid class id\r\n"),
    (b"lru_crawler metadump\r\n", b"ERROR\r\n"),
    (b"lru_crawler metadump all extra\r\n", b"ERROR\r\n"),
    (b"version\r\nlru_crawler metadump all\r\n", None),
]


@pytest.mark.parametrize("request_bytes,want", ERROR_TABLE)
def test_dump_replies_byte_for_byte(server, reference, request_bytes, want):
    if want is None:
        # A pipelined metadump behind a queued reply: memcached refuses it.
        tail = b"ERROR cannot pipeline other commands before metadump\r\n"
        ours = raw(server, request_bytes, end=tail)
        theirs = raw(reference, request_bytes, end=tail)
        assert ours.endswith(tail) and theirs.endswith(tail)
        return
    ours = line_reply(server, request_bytes)
    theirs = line_reply(reference, request_bytes)
    assert theirs == want
    assert ours == want


def test_cachedump_limit(server):
    fill(server)
    rows = cachedump_shape(raw(server, b"stats cachedump 1 2\r\n"))
    assert len(rows) == 2


@pytest.mark.skipif(shutil.which("memcdump") is None, reason="memcdump (libmemcached-tools) is not installed")
def test_memcdump_lists_the_keys(server):
    fill(server)
    proc = subprocess.run(["memcdump", f"--servers=127.0.0.1:{server.port}"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == sorted(KEYS)


def php_has_memcached():
    if shutil.which("php") is None:
        return False
    out = subprocess.run(["php", "-m"], capture_output=True, text=True).stdout
    return "memcached" in out.split()


@pytest.mark.skipif(not php_has_memcached(), reason="php-cli with the memcached extension is not installed")
def test_php_get_all_keys(server):
    fill(server)
    script = r"""
$m = new Memcached();
$m->addServer('127.0.0.1', (int)$argv[1]);
$keys = $m->getAllKeys();
sort($keys);
echo implode("\n", $keys), "\n";
"""
    proc = subprocess.run(["php", "-r", script, str(server.port)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == sorted(KEYS)


def test_large_dump_is_bounded_and_keeps_the_connection(server):
    # 30 000 keys of ~100 bytes: cachedump stops under 2 MB, metadump lists them all.
    key = "x" * 90
    with socket.create_connection(server.address, timeout=10) as s:
        batch = b"".join(f"set {key}{i} 0 0 1 noreply\r\nv\r\n".encode() for i in range(30000))
        s.sendall(batch + b"mn\r\n")
        buf = b""
        while not buf.endswith(b"MN\r\n"):
            buf += s.recv(65536)
    dump = raw(server, b"stats cachedump 1 0\r\n", timeout=20)
    assert len(dump) <= 2 * 1024 * 1024
    assert 15000 < len(cachedump_shape(dump)) < 30000
    meta = raw(server, b"lru_crawler metadump all\r\nversion\r\n", end=b"\r\n", timeout=20)
    # The reply ends with the version line after END.
    assert b"END\r\nVERSION " in meta
    assert meta.count(b"\n") == 30000 + 2
