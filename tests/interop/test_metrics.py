"""Monitoring: memcached_exporter v0.11's metric names (tests/data/memcached_exporter_v0.11_names.txt,
taken from its pkg/exporter/exporter.go) against repcached.

(a) the built-in endpoint (--metrics-listen) serves every one of the 67 names, plus replication
    metrics; (b) `stats`, `stats slabs`, `stats items` and `stats settings` hold every field the
    exporter reads, so that a real exporter scraping the cache port yields a name set that is a
    superset of the one it yields for memcached 1.6.18 (its parsing re-implemented below and run
    on both servers); (c) the HTTP endpoint refuses bad input without touching the cache port.
"""

import os
import json
import re
import socket
import time

import pytest

from conftest import ROOT, SUT_BIN, Server, COMMON_ARGS, is_memcached, start_reference

NAMES_FILE = os.path.join(ROOT, "tests", "data", "memcached_exporter_v0.11_names.txt")
EXPORTER_NAMES = {l.strip() for l in open(NAMES_FILE) if l.strip() and not l.startswith("#")}
METRICS_RE = re.compile(r"repcached: metrics on http://([0-9.]+):(\d+)/metrics")

pytestmark = pytest.mark.skipif(is_memcached(SUT_BIN), reason="repcached-only feature")


@pytest.fixture(scope="module")
def node():
    srv = Server(SUT_BIN, COMMON_ARGS + ["--metrics-listen", "127.0.0.1:0"], "SUT").start()
    deadline = time.monotonic() + 10
    addr = None
    while addr is None and time.monotonic() < deadline:
        for line in list(srv.stderr_tail):
            m = METRICS_RE.search(line)
            if m:
                addr = (m.group(1), int(m.group(2)))
        time.sleep(0.05)
    assert addr, "no metrics line on stderr"
    srv.metrics_addr = addr
    yield srv
    srv.stop()


def http(addr, data, timeout=10.0):
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return buf
            buf += chunk


def scrape(node):
    reply = http(node.metrics_addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert b"Content-Type: text/plain; version=0.0.4" in head
    return body.decode()


def metric_names(text):
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
    return names


def populate(server):
    with socket.create_connection(server.address, timeout=5) as s:
        s.sendall(b"set a 0 0 1\r\nx\r\nset b 0 100 2\r\nyy\r\nget a\r\nget nope\r\nincr a 1\r\n"
                  b"delete b\r\ntouch a 10\r\nmn\r\n")
        buf = b""
        while not buf.endswith(b"MN\r\n"):
            buf += s.recv(4096)


def test_endpoint_serves_every_exporter_name(node):
    populate(node)
    text = scrape(node)
    names = metric_names(text)
    missing = EXPORTER_NAMES - names
    assert not missing, sorted(missing)
    assert len(EXPORTER_NAMES) == 67
    assert 'memcached_commands_total{command="get",status="hit"} ' in text
    assert "memcached_up 1" in text
    assert re.search(r"^memcached_current_items \d", text, re.M)


# ---- (b) the exporter's own parsing, on the cache port ----------------------------------------

def stats_lines(server, cmd):
    with socket.create_connection(server.address, timeout=5) as s:
        s.sendall(cmd)
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
    return buf.decode().split("\r\n")


def gomemcache_stats(server):
    stats, slabs, items = {}, {}, {}
    for cmd in (b"stats\r\n", b"stats slabs\r\n", b"stats items\r\n"):
        for line in stats_lines(server, cmd):
            s = line.split(" ")
            if len(s) != 3 or s[0] != "STAT":
                continue
            f = s[1].split(":")
            if len(f) == 1:
                stats[s[1]] = s[2]
            elif len(f) == 2:
                slabs.setdefault(int(f[0]), {})[f[1]] = s[2]
            elif len(f) == 3:
                items.setdefault(int(f[1]), {})[f[2]] = s[2]
    settings = {}
    for line in stats_lines(server, b"stats settings\r\n"):
        s = line.split(" ")
        if len(s) == 3 and s[0] == "STAT":
            settings[s[1]] = s[2]
    return stats, slabs, items, settings


GENERAL = {
    "uptime": "uptime_seconds", "time": "time_seconds", "bytes": "current_bytes",
    "limit_maxbytes": "limit_bytes", "curr_items": "current_items", "total_items": "items_total",
    "bytes_read": "read_bytes_total", "bytes_written": "written_bytes_total",
    "curr_connections": "current_connections", "total_connections": "connections_total",
    "rejected_connections": "connections_rejected_total", "conn_yields": "connections_yielded_total",
    "listen_disabled_num": "connections_listener_disabled_total", "evictions": "items_evicted_total",
    "reclaimed": "items_reclaimed_total", "lru_crawler_starts": "lru_crawler_starts_total",
    "crawler_items_checked": "lru_crawler_items_checked_total",
    "crawler_reclaimed": "lru_crawler_reclaimed_total", "moves_to_cold": "lru_crawler_moves_to_cold_total",
    "moves_to_warm": "lru_crawler_moves_to_warm_total",
    "moves_within_lru": "lru_crawler_moves_within_lru_total", "total_malloced": "malloced_bytes",
    "accepting_conns": "accepting_connections", "rusage_user": "process_user_cpu_seconds_total",
    "rusage_system": "process_system_cpu_seconds_total", "version": "version",
}
ITEMS = {
    "number": "slab_current_items", "age": "slab_items_age_seconds",
    "hits_to_hot": "slab_lru_hits_total", "hits_to_warm": "slab_lru_hits_total",
    "hits_to_cold": "slab_lru_hits_total", "hits_to_temp": "slab_lru_hits_total",
    "crawler_reclaimed": "slab_items_crawler_reclaimed_total", "evicted": "slab_items_evicted_total",
    "evicted_nonzero": "slab_items_evicted_nonzero_total", "evicted_time": "slab_items_evicted_time_seconds",
    "evicted_unfetched": "slab_items_evicted_unfetched_total",
    "expired_unfetched": "slab_items_expired_unfetched_total", "outofmemory": "slab_items_outofmemory_total",
    "reclaimed": "slab_items_reclaimed_total", "tailrepairs": "slab_items_tailrepairs_total",
    "mem_requested": "slab_mem_requested_bytes", "moves_to_cold": "slab_items_moves_to_cold",
    "moves_to_warm": "slab_items_moves_to_warm", "moves_within_lru": "slab_items_moves_within_lru",
    "number_hot": "slab_hot_items", "number_warm": "slab_warm_items", "number_cold": "slab_cold_items",
    "number_temp": "slab_temporary_items", "age_hot": "slab_hot_age_seconds",
    "age_warm": "slab_warm_age_seconds",
}
SLABS = {
    "chunk_size": "slab_chunk_size_bytes", "chunks_per_page": "slab_chunks_per_page",
    "total_pages": "slab_current_pages", "total_chunks": "slab_current_chunks",
    "used_chunks": "slab_chunks_used", "free_chunks": "slab_chunks_free",
    "free_chunks_end": "slab_chunks_free_end", "mem_requested": "slab_mem_requested_bytes",
    "get_hits": "slab_commands_total", "cmd_set": "slab_commands_total",
}
LRU_SETTINGS = {
    "lru_crawler": "lru_crawler_enabled", "lru_crawler_sleep": "lru_crawler_sleep",
    "lru_crawler_tocrawl": "lru_crawler_to_crawl", "lru_maintainer_thread": "lru_crawler_maintainer_thread",
    "hot_lru_pct": "lru_crawler_hot_percent", "warm_lru_pct": "lru_crawler_warm_percent",
    "hot_max_factor": "lru_crawler_hot_max_factor", "warm_max_factor": "lru_crawler_warm_max_factor",
}


def exporter_names(server):
    """The names memcached_exporter v0.11 would export for this server (parseStats and
    parseStatsSettings: a name appears when its field is present and parses)."""
    stats, slabs, items, settings = gomemcache_stats(server)
    names = {"up"}
    for key, name in GENERAL.items():
        if key in stats:
            if key.startswith("rusage_"):
                assert re.fullmatch(r"\d+\.\d+", stats[key]), (key, stats[key])
            elif key != "version":
                float(stats[key])
            names.add(name)
    if any(f"{op}_hits" in stats for op in ("get", "delete", "incr", "decr", "cas", "touch")):
        names.add("commands_total")
    for u in items.values():
        for key, name in ITEMS.items():
            if key in u:
                float(u[key])
                names.add(name)
    for v in slabs.values():
        for key, name in SLABS.items():
            if key in v:
                float(v[key])
                names.add(name)
    if "maxconns" in settings:
        names.add("max_connections")
    if settings.get("lru_crawler") == "yes":
        for key, name in LRU_SETTINGS.items():
            if key in settings:
                names.add(name)
    return {"memcached_" + n for n in names}


def test_stats_hold_every_field_the_exporter_reads(node):
    populate(node)
    ours = exporter_names(node)
    # number_temp only exists in memcached with temp_lru on (ours: the endpoint serves it as 0).
    assert EXPORTER_NAMES - ours == {"memcached_slab_temporary_items"}, sorted(EXPORTER_NAMES - ours)


def test_exporter_names_superset_of_memcached():
    ref = start_reference()
    try:
        srv = Server(SUT_BIN, COMMON_ARGS, "SUT").start()
        try:
            populate(ref)
            populate(srv)
            time.sleep(1.5)  # memcached's LRU maintainer and crawler have run once
            theirs = exporter_names(ref)
            ours = exporter_names(srv)
            assert theirs - ours == set(), sorted(theirs - ours)
            assert theirs <= EXPORTER_NAMES
        finally:
            srv.stop()
    finally:
        ref.stop()


# ---- (c) HTTP bad input -----------------------------------------------------------------------

def status(reply):
    return reply.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("request_bytes,want", [
    (b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 Not Found"),
    (b"GET /metricsx HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 Not Found"),
    (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 405 Method Not Allowed"),
    (b"HEAD /metrics HTTP/1.1\r\n\r\n", b"HTTP/1.1 405 Method Not Allowed"),
    (b"garbage\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    (b"GET /metrics SPDY/3\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    (b"\x00\xff\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    (b"GET /metrics?x=1 HTTP/1.0\n\n", b"HTTP/1.1 200 OK"),
])
def test_http_bad_input(node, request_bytes, want):
    assert status(http(node.metrics_addr, request_bytes)) == want


def test_http_huge_request_is_refused(node):
    big = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
    with socket.create_connection(node.metrics_addr, timeout=10) as s:
        try:
            s.sendall(big)
        except OSError:
            pass
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
    assert status(buf) == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_http_slow_client_times_out_and_cache_port_is_unaffected(node):
    slow = socket.create_connection(node.metrics_addr, timeout=10)
    slow.sendall(b"GET /met")
    started = time.monotonic()
    # Meanwhile both the endpoint and the cache port answer.
    assert scrape(node)
    assert node.command(b"version\r\n").startswith(b"VERSION ")
    buf = b""
    while True:
        chunk = slow.recv(4096)
        if not chunk:
            break
        buf += chunk
    slow.close()
    assert status(buf) == b"HTTP/1.1 408 Request Timeout"
    assert 4 <= time.monotonic() - started < 9


def test_replication_metrics():
    from replpair import Pair, wait_for

    pair = Pair()
    pair.a.args = pair.a.args + ["--metrics-listen", "127.0.0.1:0"]
    pair.start()
    try:
        addr = None
        for line in list(pair.a.stderr_tail):
            m = METRICS_RE.search(line)
            if m:
                addr = (m.group(1), int(m.group(2)))
        assert addr
        pair.a.metrics_addr = addr
        pair.a.client().set("k", "v")
        wait_for("k on B", lambda: pair.b.client().get("k") == b"v")
        time.sleep(1.2)  # one lag sample
        text = scrape(pair.a)
        for name in [
            "repcached_repl_peer_state", "repcached_repl_peer_lag_records",
            "repcached_repl_peer_lag_milliseconds", "repcached_repl_peer_lag_sampled_milliseconds",
            "repcached_repl_peer_records_sent_total", "repcached_repl_peer_records_applied_total",
            "repcached_repl_peer_records_rejected_total", "repcached_repl_peer_full_syncs_total",
            "repcached_repl_peer_partial_syncs_total", "repcached_repl_peer_auth_failures_total",
            "repcached_repl_auth_failures_total", "repcached_repl_peers_synced",
        ]:
            assert name in metric_names(text), name
        assert re.search(r'^repcached_repl_peer_state\{peer="[^"]+",node_id="\d+",state="synced"\} 1$',
                         text, re.M), text
        assert re.search(r'^repcached_repl_peer_records_sent_total\{peer="[^"]+"\} [1-9]', text, re.M)
        assert re.search(r'^repcached_repl_peer_lag_sampled_milliseconds_bucket\{peer="[^"]+",le="\+Inf"\} [1-9]',
                         text, re.M)
        assert metric_names(text) >= EXPORTER_NAMES
        assert re.search(r'^repcached_repl_peer_sent_bytes_total\{peer="[^"]+"\} [1-9]', text, re.M), text
        # Every metric the shipped Grafana dashboard queries exists on a replicating node.
        dash = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..",
                                           "packaging", "grafana-repcached.json")))
        queried = set()
        for panel in dash["panels"]:
            for target in panel["targets"]:
                for name in re.findall(r"\b((?:memcached|repcached)_[a-z_]+)\{", target["expr"]):
                    queried.add(re.sub(r"_bucket$", "", name))
        assert queried and queried <= metric_names(text), queried - metric_names(text)
    finally:
        pair.stop()
