"""Every command pymemcache (text protocol) offers, against the system under test."""

import time

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheError,
    MemcacheIllegalInputError,
    MemcacheServerError,
)

from conftest import start_sut

MAX_VALUE = 1024 * 1024


@pytest.fixture
def mc(server):
    client = Client(server.address, connect_timeout=5, timeout=5, default_noreply=False)
    yield client
    client.close()


def test_set_get(mc):
    assert mc.set("k", b"v") is True
    assert mc.get("k") == b"v"
    assert mc.get("missing") is None
    assert mc.get("missing", default=b"d") == b"d"


def test_set_overwrites_and_flags(mc):
    mc.set("k", b"one", flags=0)
    mc.set("k", b"two", flags=0)
    assert mc.get("k") == b"two"
    # flags are opaque 32-bit values kept by the server; raw get shows them.
    mc.set("f", b"x", flags=4294967295)
    assert mc.raw_command(b"get f", b"END") == b"VALUE f 4294967295 1\r\nx\r\n"


def test_set_many_get_many(mc):
    values = {f"key{i}": f"value{i}".encode() for i in range(100)}
    assert mc.set_many(values) == []
    got = mc.get_many(list(values) + ["nope"])
    assert got == values


def test_get_many_empty(mc):
    assert mc.get_many([]) == {}


def test_gets_cas(mc):
    mc.set("c", b"1")
    value, token = mc.gets("c")
    assert value == b"1" and token is not None
    assert mc.cas("c", b"2", token) is True
    assert mc.get("c") == b"2"
    # the token is now stale
    assert mc.cas("c", b"3", token) is False
    assert mc.get("c") == b"2"
    # cas on a missing key
    assert mc.cas("nope", b"x", token) is None


def test_gets_many(mc):
    mc.set("a", b"1")
    mc.set("b", b"2")
    got = mc.gets_many(["a", "b", "c"])
    assert set(got) == {"a", "b"}
    assert got["a"][0] == b"1" and got["b"][0] == b"2"
    assert got["a"][1] != got["b"][1]


def test_cas_tokens_change_on_every_write(mc):
    mc.set("k", b"1")
    _, t1 = mc.gets("k")
    mc.set("k", b"1")
    _, t2 = mc.gets("k")
    mc.append("k", b"2")
    _, t3 = mc.gets("k")
    assert len({t1, t2, t3}) == 3


def test_add(mc):
    assert mc.add("a", b"1") is True
    assert mc.add("a", b"2") is False
    assert mc.get("a") == b"1"


def test_replace(mc):
    assert mc.replace("r", b"1") is False
    assert mc.get("r") is None
    mc.set("r", b"0")
    assert mc.replace("r", b"1") is True
    assert mc.get("r") == b"1"


def test_append_prepend(mc):
    assert mc.append("ap", b"x") is False
    assert mc.prepend("ap", b"x") is False
    mc.set("ap", b"mid")
    assert mc.append("ap", b"-end") is True
    assert mc.prepend("ap", b"start-") is True
    assert mc.get("ap") == b"start-mid-end"


def test_delete(mc):
    mc.set("d", b"1")
    assert mc.delete("d") is True
    assert mc.delete("d") is False
    assert mc.get("d") is None


def test_delete_many(mc):
    mc.set_many({"x": b"1", "y": b"2"})
    assert mc.delete_many(["x", "y", "z"]) is True
    assert mc.get_many(["x", "y"]) == {}


def test_incr_decr(mc):
    assert mc.incr("n", 1) is None
    mc.set("n", b"10")
    assert mc.incr("n", 5) == 15
    assert mc.decr("n", 3) == 12
    assert mc.decr("n", 100) == 0  # decr clamps at zero
    # incr wraps at 2**64. (Not from a stored value >= 2**63: memcached 1.6.18 reads past such a
    # value looking for a '-' and randomly calls it non-numeric.)
    mc.set("n", b"2")
    assert mc.incr("n", 18446744073709551615) == 1
    assert mc.decr("missing", 1) is None


def test_incr_length_change(mc):
    mc.set("n", b"99")
    assert mc.incr("n", 1) == 100
    assert mc.get("n") == b"100"
    assert mc.decr("n", 91) == 9
    # memcached keeps the old length when a decr shrinks the number (pads with spaces).
    assert mc.get("n").rstrip(b" ") == b"9"


def test_incr_non_numeric(mc):
    mc.set("s", b"abc")
    with pytest.raises(MemcacheClientError, match="cannot increment or decrement non-numeric value"):
        mc.incr("s", 1)


def test_touch(mc):
    assert mc.touch("t", 100) is False
    mc.set("t", b"1", expire=100)
    assert mc.touch("t", 0) is True
    assert mc.get("t") == b"1"
    # a negative TTL expires the item at once
    assert mc.touch("t", -1) is True
    assert mc.get("t") is None


def test_expire_immediately(mc):
    mc.set("e", b"1", expire=-1)
    assert mc.get("e") is None


def test_expire_after_ttl(mc):
    mc.set("e", b"1", expire=1)
    assert mc.get("e") == b"1"
    deadline = time.monotonic() + 5
    while mc.get("e") is not None:
        assert time.monotonic() < deadline, "item with a 1 s TTL still there after 5 s"
        time.sleep(0.1)


def test_gat_gats_raw(mc):
    # pymemcache has no gat helper: use raw_command (which strips the end token).
    mc.set("g", b"val", flags=3)
    assert mc.raw_command(b"gat 100 g nope", b"END") == b"VALUE g 3 3\r\nval\r\n"
    reply = mc.raw_command(b"gats 100 g", b"END")
    assert reply.startswith(b"VALUE g 3 3 ") and reply.endswith(b"\r\nval\r\n")


def test_stats(mc):
    mc.set("s", b"1")
    mc.get("s")
    mc.get("nope")
    stats = mc.stats()
    for name in (b"pid", b"uptime", b"curr_items", b"total_items", b"cmd_get", b"cmd_set",
                 b"get_hits", b"get_misses", b"curr_connections", b"bytes", b"limit_maxbytes"):
        assert name in stats, name
    assert stats[b"curr_items"] >= 1
    assert stats[b"get_hits"] >= 1
    assert stats[b"get_misses"] >= 1
    assert stats[b"limit_maxbytes"] == 64 * 1024 * 1024


def test_stats_settings(mc):
    settings = mc.stats("settings")
    assert settings[b"item_size_max"] == MAX_VALUE


def test_version(mc):
    version = mc.version()
    assert version and version[0:1].isdigit()


def test_flush_all(mc):
    mc.set_many({"a": b"1", "b": b"2"})
    assert mc.flush_all() is True
    assert mc.get_many(["a", "b"]) == {}
    # flushed keys can be set again at once
    mc.set("a", b"3")
    assert mc.get("a") == b"3"


def test_verbosity_and_memlimit(mc):
    assert mc.raw_command(b"verbosity 0") == b"OK"
    assert mc.cache_memlimit(64) is True


def test_quit_then_reconnect(mc):
    mc.set("q", b"1")
    mc.quit()
    # pymemcache reconnects on the next command
    assert mc.get("q") == b"1"


def test_noreply_variants(server):
    client = Client(server.address, timeout=5, default_noreply=True)
    try:
        assert client.set("n", b"1") is True
        assert client.add("n2", b"1") is True
        assert client.replace("n", b"2") is True
        assert client.append("n", b"3") is True
        assert client.prepend("n", b"0") is True
        assert client.set_many({"m1": b"1", "m2": b"2"}) == []
        client.set("num", b"5")
        assert client.incr("num", 1, noreply=True) is None
        assert client.decr("num", 2, noreply=True) is None
        assert client.touch("n", 100) is True
        assert client.delete("n2") is True
        assert client.flush_all(noreply=True) is True
        client.set("after", b"x")
        # a command with a reply right after the noreply ones sees only its own reply
        assert client.get_many(["n", "after"]) == {"after": b"x"}
        client.set("n", b"021")
        client.set("num", b"5")
        client.incr("num", 1, noreply=True)
        client.decr("num", 2, noreply=True)
        assert client.get_many(["n", "num"]) == {"n": b"021", "num": b"4"}
    finally:
        client.close()


def test_cas_noreply(server):
    client = Client(server.address, timeout=5, default_noreply=False)
    try:
        client.set("c", b"1")
        _, token = client.gets("c")
        assert client.cas("c", b"2", token, noreply=True) is True
        assert client.get("c") == b"2"
    finally:
        client.close()


@pytest.mark.parametrize("size", [0, 1, 4096, 500 * 1024, MAX_VALUE - 1024])
def test_large_values(mc, size):
    value = bytes(i % 251 for i in range(size))
    assert mc.set("big", value) is True
    assert mc.get("big") == value


def test_too_large_value(mc):
    with pytest.raises(MemcacheServerError, match="object too large for cache"):
        mc.set("big", b"x" * (MAX_VALUE + 1))
    # the connection stays in sync: the value was swallowed
    mc.set("small", b"ok")
    assert mc.get("small") == b"ok"


def test_binary_safe_values(mc):
    value = bytes(range(256)) * 4 + b"\r\nEND\r\n\0VALUE x 0 1\r\n"
    mc.set("bin", value)
    assert mc.get("bin") == value


def test_key_limits(mc):
    key = "k" * 250
    mc.set(key, b"1")
    assert mc.get(key) == b"1"
    with pytest.raises(MemcacheIllegalInputError):
        mc.set("k" * 251, b"1")


def test_unicode_key_rejected_by_client(mc):
    with pytest.raises(MemcacheIllegalInputError):
        mc.set("clé", b"1")


def test_unicode_keys_allowed(server):
    client = Client(server.address, timeout=5, allow_unicode_keys=True, encoding="utf-8")
    try:
        client.set("clé", b"1", noreply=False)
        assert client.get("clé") == b"1"
    finally:
        client.close()


def test_key_with_control_chars_rejected(mc):
    with pytest.raises(MemcacheIllegalInputError):
        mc.set("a b", b"1")
    with pytest.raises(MemcacheIllegalInputError):
        mc.set("a\nb", b"1")


def test_shutdown():
    """`shutdown` is refused unless -A is given, and with -A it stops the server."""
    server = start_sut()
    try:
        client = Client(server.address, timeout=5)
        with pytest.raises(MemcacheError):
            client.shutdown()
        client.close()
    finally:
        server.stop()
    server = start_sut(["-A"])
    try:
        client = Client(server.address, timeout=5)
        client.shutdown()
        client.close()
        deadline = time.monotonic() + 10
        while server.proc.poll() is None:
            assert time.monotonic() < deadline, "server with -A still running after shutdown"
            time.sleep(0.05)
    finally:
        server.stop()
