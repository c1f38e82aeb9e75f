"""pylibmc (libmemcached) with binary=True against repcached on its default -B auto port: the
binary protocol as a real client drives it (get_multi as pipelined getkq + noop, set_multi as
setq, CAS, counters with initial values, append/prepend, touch, delete, flush), and what it
writes is read back in text by pymemcache."""

import pytest

pylibmc = pytest.importorskip("pylibmc")
from pymemcache.client.base import Client as TextClient  # noqa: E402


@pytest.fixture
def mc(server):
    c = pylibmc.Client(
        [f"{server.host}:{server.port}"], binary=True, behaviors={"cas": True, "connect_timeout": 2000}
    )
    yield c
    c.disconnect_all()


@pytest.fixture
def text(server):
    c = TextClient(server.address, connect_timeout=2, timeout=5)
    yield c
    c.close()


def test_set_get_delete(mc):
    assert mc.set("k", b"v1")
    assert mc.get("k") == b"v1"
    assert mc.get("missing") is None
    assert mc.delete("k")
    assert mc.get("k") is None
    assert not mc.delete("k")


def test_add_replace(mc):
    assert mc.add("a", b"1")
    assert not mc.add("a", b"2")
    assert mc.get("a") == b"1"
    assert mc.replace("a", b"3")
    # Binary replace of a missing key is "Not found" (memcached's complete_update_bin).
    with pytest.raises(pylibmc.NotFound):
        mc.replace("nobody", b"3")
    assert mc.get("a") == b"3"


def test_multi(mc):
    data = {f"m{i}": f"value{i}".encode() * (i + 1) for i in range(50)}
    assert mc.set_multi(data) == []
    got = mc.get_multi(list(data) + ["absent1", "absent2"])
    assert got == data
    mc.delete_multi(list(data)[:10])
    assert mc.get_multi(list(data)[:10]) == {}


def test_cas(mc):
    mc.set("c", b"x")
    value, cas = mc.gets("c")
    assert value == b"x"
    assert mc.cas("c", b"y", cas)
    assert not mc.cas("c", b"z", cas)
    assert mc.get("c") == b"y"


def test_counters(mc):
    mc.set("n", b"10")
    assert mc.incr("n", 5) == 15
    assert mc.decr("n", 20) == 0
    with pytest.raises(pylibmc.NotFound):
        mc.incr("nothing")
    with pytest.raises(pylibmc.Error):
        mc.set("s", b"abc")
        mc.incr("s")


def test_append_prepend(mc):
    mc.set("ap", b"mid")
    assert mc.append("ap", b">")
    assert mc.prepend("ap", b"<")
    assert mc.get("ap") == b"<mid>"
    assert not mc.append("nothere", b"x")


def test_types_and_large_value(mc):
    mc.set("int", 42)
    mc.set("obj", {"a": [1, 2]})
    assert mc.get("int") == 42
    assert mc.get("obj") == {"a": [1, 2]}
    big = b"x" * 900_000
    assert mc.set("big", big)
    assert mc.get("big") == big


def test_touch_and_expiry(mc):
    mc.set("t", b"v", time=100)
    assert mc.touch("t", 200)
    assert not mc.touch("gone", 10)
    assert mc.get("t") == b"v"


def test_flush_all(mc):
    mc.set("f", b"v")
    assert mc.flush_all()
    assert mc.get("f") is None


def test_stats(mc):
    (_, stats), = mc.get_stats()
    assert int(stats["cmd_get"]) >= 0
    assert "version" in stats



def binary_stats(server, group=b""):
    """`stat <group>` over a raw binary connection: {name: value} until the empty frame."""
    import socket
    import struct

    with socket.create_connection(server.address, timeout=5) as s:
        s.sendall(struct.pack(">BBHBBHIIQ", 0x80, 0x10, len(group), 0, 0, 0, len(group), 7, 0) + group)
        buf, stats = b"", {}
        while True:
            while len(buf) < 24 or len(buf) < 24 + struct.unpack(">I", buf[8:12])[0]:
                chunk = s.recv(65536)
                assert chunk, "closed"
                buf += chunk
            _, op, klen, elen, _, status, blen, opaque, _ = struct.unpack(">BBHBBHIIQ", buf[:24])
            assert (op, status, opaque) == (0x10, 0, 7)
            body, buf = buf[24:24 + blen], buf[24 + blen:]
            if klen == 0:
                return stats
            stats[body[elen:elen + klen].decode()] = body[elen + klen:].decode()


def test_binary_stat_groups(server):
    assert binary_stats(server, b"settings")["binding_protocol"] == "auto-negotiate"
    general = binary_stats(server)
    assert int(general["curr_connections"]) >= 1


def test_binary_write_read_in_text(mc, text):
    mc.set("cross", b"from-binary")
    assert text.get("cross") == b"from-binary"
    text.set("cross2", b"from-text", flags=0)
    assert mc.get("cross2") == b"from-text"
    mc.set("cnt", b"1")
    text.incr("cnt", 2)
    assert mc.incr("cnt", 1) == 4
