"""Client TLS (-Z) with a real client library: pymemcache over Python's ssl module.

Certificates (a CA, a server certificate for localhost/127.0.0.1 and a client certificate) are made
by the openssl command line tool in a temporary directory. The same tests pass against memcached
1.6 built with TLS (REPCACHED_BIN=/usr/bin/memcached), which is how they were checked.
"""

import socket
import ssl
import subprocess
import time

import pytest
from pymemcache.client.base import Client

from conftest import start_sut

TIMEOUT = 5


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(d, name, ca, extensions):
    """NAME.key and NAME.pem signed by CA (ca.pem/ca.key in d)."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=repcached test {name}",
            cwd=d)
    (d / f"{name}.ext").write_text(extensions)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
            cwd=d)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN=repcached test {name}", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    make_ca(d, "ca")
    issue(d, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
          "extendedKeyUsage=serverAuth\n")
    issue(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    make_ca(d, "other-ca")
    issue(d, "intruder", "other-ca", "extendedKeyUsage=clientAuth\n")
    return d


def server_args(pki, extra=""):
    opts = f"ssl_chain_cert={pki / 'server.pem'},ssl_key={pki / 'server.key'}"
    return ["-Z", "-o", opts + ("," + extra if extra else "")]


def context(pki, cert=None):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return ctx


def client(server, ctx):
    return Client(server.address, connect_timeout=TIMEOUT, timeout=TIMEOUT,
                  default_noreply=False, tls_context=ctx)


@pytest.fixture(scope="module")
def tls_server(pki):
    server = start_sut(server_args(pki), ssl_context=context(pki))
    yield server
    server.stop()


def test_pymemcache_over_tls(pki, tls_server):
    mc = client(tls_server, context(pki))
    try:
        assert mc.set("tls-k", b"secret value") is True
        assert mc.get("tls-k") == b"secret value"
        values = {f"many{i}": f"v{i}".encode() for i in range(50)}
        assert mc.set_many(values) == []
        assert mc.get_many(list(values)) == values
        assert mc.incr("ctr", 1) is None
        mc.set("ctr", b"10")
        assert mc.incr("ctr", 5) == 15
        big = b"b" * (512 * 1024)
        assert mc.set("big", big) is True
        assert mc.get("big") == big
        assert mc.delete("tls-k") is True
        assert mc.get("tls-k") is None
        settings = mc.stats("settings")
        assert settings[b"ssl_enabled"] is True or settings[b"ssl_enabled"] == b"yes"
        assert b"ssl_handshake_errors" in mc.stats()
    finally:
        mc.close()


def test_plaintext_client_on_tls_port_fails_fast(tls_server):
    plain = Client(tls_server.address, connect_timeout=TIMEOUT, timeout=TIMEOUT,
                   default_noreply=False)
    started = time.monotonic()
    with pytest.raises(Exception):
        plain.get("x")
    plain.close()
    # Refused on the first bytes, not left to a timeout.
    assert time.monotonic() - started < TIMEOUT - 1


def test_raw_plaintext_gets_alert_or_close(tls_server):
    with socket.create_connection(tls_server.address, timeout=TIMEOUT) as s:
        s.sendall(b"version\r\n")
        data = b""
        while True:
            try:
                chunk = s.recv(1024)
            except ConnectionResetError:  # memcached resets; also a clean refusal
                break
            if not chunk:
                break
            data += chunk
    assert b"VERSION" not in data
    assert data == b"" or data[0] == 0x15  # a TLS alert record


def test_verify_mode_require(pki):
    server = start_sut(server_args(pki, f"ssl_verify_mode=2,ssl_ca_cert={pki / 'ca.pem'}"),
                       ssl_context=context(pki, "client"))
    try:
        good = client(server, context(pki, "client"))
        assert good.set("mtls", b"ok") is True
        assert good.get("mtls") == b"ok"
        good.close()
        for ctx in (context(pki), context(pki, "intruder")):
            bad = client(server, ctx)
            with pytest.raises((ssl.SSLError, OSError, Exception)):
                bad.get("mtls")
            bad.close()
    finally:
        server.stop()
