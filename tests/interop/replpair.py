"""Replicated repcached pairs for the web-farm and sharding tests.

A node is a real repcached process listening on a loopback address with its own replication port
(`-X`) and its partner as peer (`-x`); replication stays on loopback, so no secret is needed unless
clients must authenticate (-S, -Y: then pass one in `extra_args`). Every wait polls with a
deadline; callers stop nodes through `Pair.stop()` (a fixture finalizer).
"""

import socket
import time

from pymemcache.client.base import Client

from conftest import SUT_BIN, Server, free_port

LINK_DEADLINE = 20.0
REPL_DEADLINE = 15.0


class Node(Server):
    """One replicating node. `client_port` 0 lets it pick (-p -1); `restart()` keeps both ports."""

    def __init__(self, name, host, repl_port, peer, client_port=0, extra_args=()):
        # Replication always listens on 127.0.0.1, whatever address the client port uses: a link
        # dialled to 127.0.0.21 leaves from source 127.0.0.1, and repcached today files a link whose
        # source is not the configured peer's address as a second, unconfigured peer (same node
        # id) while the configured one stays `connecting` (see the report of this change).
        self.repl_port = repl_port
        self.peer = peer
        self.wanted_client_port = client_port
        super().__init__(SUT_BIN, ["-m", "64", *extra_args], name, host=host)
        self.base_args = self._base()

    def _base(self):
        peer_host, peer_port = self.peer
        return [
            "-p", str(self.wanted_client_port or -1), "-U", "0", "-l", self.host,
            "-X", str(self.repl_port), "--repl-listen", "127.0.0.1",
            "-x", f"{peer_host}:{peer_port}",
        ]

    def kill9(self):
        """SIGKILL: no goodbye to the peer, no flush; the site is simply gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self):
        # Same client port (the web servers' configuration does not change) and same replication
        # port (the peer keeps dialling it).
        self.wanted_client_port = self.port
        self.base_args = self._base()
        return self.start()

    def client(self, timeout=3.0):
        return Client(self.address, connect_timeout=timeout, timeout=timeout)

    def stats(self, what=""):
        with socket.create_connection(self.address, timeout=5) as s:
            s.sendall(f"stats {what}\r\n".encode())
            buf = b""
            deadline = time.monotonic() + 5
            while not buf.endswith(b"END\r\n"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"stats {what}: got {buf[:200]!r}")
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        out = {}
        for line in buf.decode().splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
        return out


class Pair:
    """Two nodes replicating to each other: `a` (site A) and `b` (site B)."""

    def __init__(self, host_a="127.0.0.1", host_b="127.0.0.1", client_port=0, names=("A", "B"),
                 extra_args=()):
        xa, xb = free_port(), free_port()
        self.a = Node(names[0], host_a, xa, ("127.0.0.1", xb), client_port, extra_args)
        self.b = Node(names[1], host_b, xb, ("127.0.0.1", xa), client_port, extra_args)
        # With -S the client port speaks binary only, after a login: the text `stats replication`
        # of wait_linked cannot be read there, and callers wait for their data instead.
        self.text_port = "-S" not in extra_args

    def start(self):
        try:
            self.a.start()
            self.b.start()
            if self.text_port:
                self.wait_linked()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for n in (self.a, self.b):
            n.stop()

    def wait_linked(self, deadline=LINK_DEADLINE):
        """Both ends report their peer `synced` (or the test fails with both states)."""
        end = time.monotonic() + deadline
        while True:
            states = [n.stats("replication").get("peer0:state") for n in (self.a, self.b)]
            if states == ["synced", "synced"]:
                return
            if time.monotonic() > end:
                raise AssertionError(f"pair not linked after {deadline}s: states {states}")
            time.sleep(0.05)


def wait_for(what, probe, deadline=REPL_DEADLINE, interval=0.05):
    """Polls `probe()` until it returns a truthy value; returns it or fails after `deadline`."""
    end = time.monotonic() + deadline
    last = None
    while True:
        try:
            last = probe()
        except Exception as e:  # noqa: BLE001 - a node restarting refuses connections
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not true after {deadline}s (last: {last!r})")
        time.sleep(interval)
