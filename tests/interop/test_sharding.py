"""Sharding over several replicated pairs with engines that exist already.

Two pairs: site A holds A1 and A2, site B holds B1 and B2; A1<->B1 and A2<->B2 replicate. Each site
shards its keys over its own two nodes, and both sites must pick the same pair for a key, or a key
written at site A is looked for at site B on the wrong pair. Both engines below hash *server
names* onto a ketama continuum, so both sites name their servers identically:

- nutcracker (twemproxy), one per site, with `host:port:weight name` servers: the continuum is
  built from the names (pair1, pair2), the addresses can differ per site
  (packaging/nutcracker.yml is the example);
- client-side ketama (pylibmc/libmemcached, = php-memcached's OPT_LIBKETAMA_COMPATIBLE): the
  continuum is built from the `host:port` strings as written in the client's server list, so both
  sites list the same host names and port (cache1:PORT, cache2:PORT) and each site resolves them
  to its own nodes (per-site DNS or /etc/hosts). Here each site's client runs in a private mount
  namespace with its own /etc/hosts, the nodes on their own loopback addresses with one port.
  The last test shows what goes wrong when the two sites list their nodes by address instead.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from pymemcache.client.base import Client

from conftest import free_port
from replpair import Pair, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
KETAMA_CLIENT = os.path.join(HERE, "ketama_client.py")
NKEYS = 300
RUN_TIMEOUT = 60
START_DEADLINE = 20.0

try:
    import pylibmc

    HAVE_PYLIBMC = True
except ImportError:
    HAVE_PYLIBMC = False


@pytest.fixture
def two_pairs():
    pairs = []
    try:
        pairs.append(Pair(names=("A1", "B1")).start())
        pairs.append(Pair(names=("A2", "B2")).start())
        yield pairs
    finally:
        for p in pairs:
            p.stop()


def present(node, keys):
    """The keys of `keys` that `node` holds (asked directly, not through any proxy)."""
    c = node.client()
    try:
        found = {}
        keys = list(keys)
        for i in range(0, len(keys), 100):
            found.update(c.get_many(keys[i:i + 100]))
        return {k for k, v in found.items() if v == value_of(k).encode()}
    finally:
        c.close()


def value_of(key):
    return f"value of {key}"


# ---- nutcracker ----


EXAMPLE_CONF = os.path.join(HERE, "..", "..", "packaging", "nutcracker.yml")
SERVER_LINE = re.compile(r"^(\s*- )(\S+):(\d+):(\d+) (\S+)\s*$")


def site_config(listen_port, nodes_by_name):
    """The example file for one site: its listen port and each named server's address replaced."""
    out, seen = [], set()
    for line in open(EXAMPLE_CONF):
        m = SERVER_LINE.match(line)
        if m:
            name = m.group(5)
            node = nodes_by_name[name]
            seen.add(name)
            line = f"{m.group(1)}127.0.0.1:{node.port}:{m.group(4)} {name}\n"
        elif line.strip().startswith("listen:"):
            line = line.split("listen:")[0] + f"listen: 127.0.0.1:{listen_port}\n"
        out.append(line)
    assert seen == set(nodes_by_name), f"{EXAMPLE_CONF} names {sorted(seen)}"
    return "".join(out)


class Nutcracker:
    """One twemproxy per site with the ketama pool `sessions` over that site's two nodes."""

    def __init__(self, tmp_path, site, nodes):
        self.port = free_port()
        self.conf = tmp_path / f"nutcracker-{site}.yml"
        self.log = tmp_path / f"nutcracker-{site}.log"
        # packaging/nutcracker.yml itself, with this site's addresses put in: same pool, hash,
        # distribution and server *names* at both sites; only the addresses differ.
        self.conf.write_text(site_config(self.port, {f"pair{i}": n for i, n in enumerate(nodes, 1)}))
        self.argv = [
            "nutcracker", "-c", str(self.conf), "-o", str(self.log),
            "-s", str(free_port()), "-a", "127.0.0.1", "-i", "1000",
        ]
        self.proc = None

    def start(self):
        check = subprocess.run(
            ["nutcracker", "-t", "-c", str(self.conf)], capture_output=True, text=True,
            timeout=RUN_TIMEOUT,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_DEADLINE
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nutcracker exited {self.proc.returncode}: {self._log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nutcracker did not listen: {self._log()}")
                time.sleep(0.02)

    def _log(self):
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client(self):
        return Client(("127.0.0.1", self.port), connect_timeout=3, timeout=3)


@pytest.mark.skipif(shutil.which("nutcracker") is None, reason="nutcracker (Debian twemproxy) is not installed")
def test_nutcracker_per_site_same_ketama_pool(two_pairs, tmp_path):
    """A write through site A's nutcracker is read through site B's, for many keys; the keys are
    spread over both pairs, and each key lives on the same pair at both sites."""
    (p1, p2) = two_pairs
    proxies = []
    try:
        proxy_a = Nutcracker(tmp_path, "A", [p1.a, p2.a]).start()
        proxies.append(proxy_a)
        proxy_b = Nutcracker(tmp_path, "B", [p1.b, p2.b]).start()
        proxies.append(proxy_b)
        keys = [f"session:{i}" for i in range(NKEYS)]

        ca, cb = proxy_a.client(), proxy_b.client()
        try:
            for k in keys:
                assert ca.set(k, value_of(k), noreply=False), k
            on_a1, on_a2 = present(p1.a, keys), present(p2.a, keys)
            assert on_a1 and on_a2, f"ketama put {len(on_a1)} keys on A1 and {len(on_a2)} on A2"
            assert len(on_a1) + len(on_a2) == NKEYS and not on_a1 & on_a2

            def read_at_b():
                got = {}
                for i in range(0, NKEYS, 100):
                    got.update(cb.get_many(keys[i:i + 100]))
                return all(got.get(k) == value_of(k).encode() for k in keys)

            wait_for("every key written through proxy A readable through proxy B", read_at_b)
            # Same names, same continuum: B's proxy found each key on the partner of A's node.
            assert present(p1.b, keys) == on_a1 and present(p2.b, keys) == on_a2

            # And back: deletes through site B's proxy reach site A's.
            gone = keys[:50]
            for k in gone:
                assert cb.delete(k, noreply=False), k
            wait_for(
                "deletes through proxy B seen through proxy A",
                lambda: not any(ca.get(k) is not None for k in gone),
            )
        finally:
            ca.close()
            cb.close()
    finally:
        for p in proxies:
            p.stop()


# ---- client-side ketama ----


def can_unshare_mount():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"],
        capture_output=True, timeout=RUN_TIMEOUT,
    )
    return r.returncode == 0


def port_free_on(port, hosts):
    for h in hosts:
        with socket.socket() as s:
            try:
                s.bind((h, port))
            except OSError:
                return False
    return True


SITE_HOSTS = {"A": ("127.0.0.11", "127.0.0.12"), "B": ("127.0.0.21", "127.0.0.22")}


def ketama_at_site(tmp_path, site, servers, action, prefix):
    """Runs ketama_client.py as a web server of `site`: /etc/hosts says cache1/cache2 are that
    site's nodes (private mount namespace, nothing changes outside it)."""
    hosts = tmp_path / f"hosts-{site}"
    a1, a2 = SITE_HOSTS[site]
    hosts.write_text(f"127.0.0.1 localhost\n{a1} cache1\n{a2} cache2\n")
    proc = subprocess.run(
        [
            "unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts),
            sys.executable, KETAMA_CLIENT, servers, action, str(NKEYS), prefix,
        ],
        capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(not HAVE_PYLIBMC, reason="pylibmc is not installed (tests/interop/requirements.txt)")
@pytest.mark.skipif(
    not can_unshare_mount(),
    reason="needs root and `unshare -m` to give each site's client its own /etc/hosts",
)
def test_client_ketama_same_names_per_site(tmp_path):
    """pylibmc ketama with the server list `cache1:PORT,cache2:PORT` at both sites; cache1 and
    cache2 resolve to each site's own nodes. Keys written at site A are read at site B."""
    hosts = [h for site in ("A", "B") for h in SITE_HOSTS[site]]
    port = None
    for _ in range(50):
        candidate = free_port()
        if port_free_on(candidate, hosts):
            port = candidate
            break
    assert port is not None, "no client port free on all four loopback addresses"
    pairs = []
    try:
        for i, (ha, hb) in enumerate(zip(SITE_HOSTS["A"], SITE_HOSTS["B"]), start=1):
            pairs.append(Pair(host_a=ha, host_b=hb, client_port=port, names=(f"A{i}", f"B{i}")).start())
        servers = f"cache1:{port},cache2:{port}"
        assert ketama_at_site(tmp_path, "A", servers, "set", "user:") == {"failed": []}
        keys = [f"user:{i}" for i in range(NKEYS)]
        on_a1, on_a2 = present(pairs[0].a, keys), present(pairs[1].a, keys)
        assert on_a1 and on_a2, f"ketama put {len(on_a1)} keys on A1 and {len(on_a2)} on A2"
        wait_for(
            "every key written by site A's ketama client read by site B's",
            lambda: ketama_at_site(tmp_path, "B", servers, "get", "user:")["found"] == NKEYS,
        )
    finally:
        for p in pairs:
            p.stop()


@pytest.mark.skipif(not HAVE_PYLIBMC, reason="pylibmc is not installed (tests/interop/requirements.txt)")
def test_client_ketama_by_address_does_not_agree_across_sites(two_pairs):
    """The pitfall: listing each site's nodes by address ([A1, A2] vs [B1, B2], different ports)
    builds two different continuums, so site B looks for some of site A's keys on the wrong pair,
    although every key did replicate to its partner."""
    (p1, p2) = two_pairs
    behaviors = {"ketama": True, "connect_timeout": 2000}
    at_a = pylibmc.Client([f"127.0.0.1:{p1.a.port}", f"127.0.0.1:{p2.a.port}"], behaviors=behaviors)
    at_b = pylibmc.Client([f"127.0.0.1:{p1.b.port}", f"127.0.0.1:{p2.b.port}"], behaviors=behaviors)
    keys = [f"cart:{i}" for i in range(NKEYS)]
    assert at_a.set_multi({k: value_of(k) for k in keys}) == []
    on_a1, on_a2 = present(p1.a, keys), present(p2.a, keys)
    wait_for(
        "every key on its partner node",
        lambda: present(p1.b, keys) == on_a1 and present(p2.b, keys) == on_a2,
    )
    got = at_b.get_multi(keys)
    missing = [k for k in keys if k not in got]
    assert missing, "the two continuums agreed by chance on every key"
