#!/usr/bin/env python3
"""Records memcached's exact replies to a table of binary-protocol requests.

Regenerate the table (it is committed; the Rust unit tests in src/protocol/binary/tests/
replay it through the codec and a small reference executor and compare byte for byte):

    python3 tests/interop/binary_reference.py > tests/data/binary_reference.txt

The reference is /usr/bin/memcached (or $MEMCACHED_BIN), started fresh with SERVER_ARGS so that
CAS values, which count stores from 1, are the same on every run. A case is one connection; each
step is sent in one write followed by a NOOP with opaque 0xfeedface (except the first part
of a request split in two), and the replies are read
until that NOOP's reply, a close, or a short silence (when the NOOP was swallowed or is waiting
for bytes that never come). The output lists per step the bytes sent and received, in hex, and per
case whether memcached closed the connection.
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

MEMCACHED = os.environ.get("MEMCACHED_BIN", "/usr/bin/memcached")
# A 1 KiB item limit keeps the "Too large." cases small enough to record in full.
SERVER_ARGS = ["-B", "binary", "-U", "0", "-m", "64", "-I", "1024", "-o", "slab_chunk_max=512"]
SENTINEL_OPAQUE = 0xFEEDFACE
SILENCE = 0.3

GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ, NOOP, VERSION = range(12)
GETK, GETKQ, APPEND, PREPEND, STAT, SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ = range(12, 23)
QUITQ, FLUSHQ, APPENDQ, PREPENDQ, VERBOSITY, TOUCH, GAT, GATQ = range(23, 31)
SASL_LIST, SASL_AUTH, SASL_STEP, GATK, GATKQ = 0x20, 0x21, 0x22, 0x23, 0x24


def req(op, key=b"", ext=b"", val=b"", cas=0, opaque=0x01020304, magic=0x80,
        key_len=None, ext_len=None, body_len=None, data_type=0, vbucket=0):
    kl = len(key) if key_len is None else key_len
    el = len(ext) if ext_len is None else ext_len
    bl = len(key) + len(ext) + len(val) if body_len is None else body_len
    head = struct.pack(">BBHBBHIIQ", magic, op, kl, el, data_type, vbucket, bl, opaque, cas)
    return head + ext + key + val


def store_ext(flags=0, exptime=0):
    return struct.pack(">II", flags, exptime)


def incr_ext(delta, initial=0, exptime=0):
    return struct.pack(">QQI", delta, initial, exptime)


def exp_ext(exptime=0):
    return struct.pack(">I", exptime)


SENTINEL = req(NOOP, opaque=SENTINEL_OPAQUE)


class Partial:
    """A step sent without the trailing NOOP (the first part of a request split in two)."""

    def __init__(self, data):
        self.data = data


def first_cas(reply):
    """CAS of the first response frame in `reply`."""
    return struct.unpack(">Q", reply[16:24])[0]


def cases():
    """(name, [step, ...]); a step is bytes, or a function of the replies so far."""
    E8 = store_ext(7, 0)
    return [
        ("noop", [b""]),
        ("version", [req(VERSION)]),
        ("version ignores cas, vbucket and data type",
         [req(VERSION, cas=99, vbucket=3, data_type=1)]),
        ("misses", [req(GET, b"nokey"), req(GETK, b"nokey"), req(GETQ, b"nokey"),
                    req(GETKQ, b"nokey"), req(TOUCH, b"nokey", exp_ext(10)),
                    req(GAT, b"nokey", exp_ext()), req(GATK, b"nokey", exp_ext()),
                    req(GATQ, b"nokey", exp_ext()), req(GATKQ, b"nokey", exp_ext())]),
        ("set and the get family", [
            req(SET, b"k1", E8, b"hello"),
            req(GET, b"k1", opaque=1), req(GETK, b"k1", opaque=2), req(GETQ, b"k1", opaque=3),
            req(GETKQ, b"k1", opaque=4), req(TOUCH, b"k1", exp_ext(100)),
            req(GAT, b"k1", exp_ext()), req(GATQ, b"k1", exp_ext()),
            req(GATK, b"k1", exp_ext()), req(GATKQ, b"k1", exp_ext())]),
        ("get with cas and vbucket in the header", [req(GET, b"k1", cas=12345, vbucket=9)]),
        ("pipelined quiet gets answered at the noop", [
            req(GETQ, b"k1", opaque=1) + req(GETKQ, b"missing", opaque=2)
            + req(GETKQ, b"k1", opaque=3) + req(GETQ, b"missing", opaque=4)]),
        ("setq silent, errors of quiet commands sent", [
            req(SETQ, b"k2", store_ext(0, 0), b"v2"),
            req(ADDQ, b"k2", store_ext(), b"x"),
            req(REPLACEQ, b"nokey", store_ext(), b"x"),
            req(DELETEQ, b"nokey"), req(APPENDQ, b"nokey", val=b"x"),
            req(INCRQ, b"k2", incr_ext(1)),
            req(GET, b"k2")]),
        ("add and replace", [
            req(ADD, b"k3", store_ext(1), b"a"), req(ADD, b"k3", store_ext(1), b"b"),
            req(REPLACE, b"k3", store_ext(2), b"c"), req(REPLACE, b"nokey", store_ext(), b"d"),
            req(ADDQ, b"k3q", store_ext(), b"e"), req(REPLACEQ, b"k3q", store_ext(), b"f"),
            req(GET, b"k3"), req(GET, b"k3q")]),
        ("cas on set and delete", [
            req(SET, b"k4", store_ext(), b"one"),
            lambda r: req(SET, b"k4", store_ext(), b"two", cas=first_cas(r[-1]) + 1000),
            lambda r: req(SET, b"k4", store_ext(), b"two", cas=first_cas(r[-2])),
            req(SET, b"nokey4", store_ext(), b"x", cas=5),
            req(ADD, b"k4", store_ext(), b"x", cas=5),
            lambda r: req(DELETE, b"k4", cas=first_cas(r[2]) + 1000),
            lambda r: req(DELETE, b"k4", cas=first_cas(r[2])),
            req(GET, b"k4")]),
        ("delete", [req(SET, b"k5", store_ext(), b"x"), req(DELETE, b"k5"), req(DELETE, b"k5"),
                    req(SET, b"k5", store_ext(), b"x"), req(DELETEQ, b"k5"), req(GET, b"k5")]),
        ("counters", [
            req(INCR, b"c1", incr_ext(5, 10, 0)), req(INCR, b"c1", incr_ext(5)),
            req(DECR, b"c1", incr_ext(100)), req(GET, b"c1"),
            req(INCR, b"c2", incr_ext(1, 7, 0xFFFFFFFF)),
            req(DECR, b"c2", incr_ext(1, 7, 0xFFFFFFFF)),
            req(SET, b"c3", store_ext(), b"18446744073709551615"),
            req(INCR, b"c3", incr_ext(2)), req(GET, b"c3"),
            req(SET, b"c4", store_ext(), b"100"), req(DECR, b"c4", incr_ext(91)),
            req(GET, b"c4"),
            req(SET, b"c5", store_ext(), b"abc"), req(INCR, b"c5", incr_ext(1)),
            req(INCRQ, b"c4", incr_ext(1)), req(DECRQ, b"c4", incr_ext(1)),
            req(INCRQ, b"c6", incr_ext(1, 3)), req(GET, b"c6"),
            lambda r: req(INCR, b"c6", incr_ext(1), cas=first_cas(r[-1]) + 1000)]),
        ("append and prepend", [
            req(SET, b"k7", store_ext(3), b"mid"), req(APPEND, b"k7", val=b">>"),
            req(PREPEND, b"k7", val=b"<<"), req(APPENDQ, b"k7", val=b"!"),
            req(PREPENDQ, b"k7", val=b""), req(GET, b"k7"),
            req(APPEND, b"nokey", val=b"x"), req(PREPEND, b"nokey", val=b"x")]),
        ("flush", [req(SET, b"k8", store_ext(), b"x"), req(FLUSH), req(GET, b"k8"),
                   req(SET, b"k8", store_ext(), b"x"), req(FLUSHQ, ext=exp_ext(0)),
                   req(GET, b"k8")]),
        ("stat of an unknown group", [req(STAT, b"nosuchgroup")]),
        ("stat reads only the key, the rest is the next request",
         [req(STAT, b"nosuch", val=req(NOOP, opaque=7))]),
        ("touch reads only extras and key", [req(TOUCH, b"nokey", exp_ext(), val=req(NOOP, opaque=7))]),
        ("quit", [req(GET, b"nokey") + req(QUIT)]),
        ("quitq", [req(QUITQ)]),
        ("quit with a body is a protocol error", [req(QUIT, val=b"x")]),
        ("sasl is an unknown command without -S", [
            req(SASL_LIST), req(SASL_AUTH, b"PLAIN", val=b"\0u\0p"), req(SASL_STEP, b"PLAIN")]),
        ("verbosity is an unknown command", [req(VERBOSITY, ext=exp_ext(1))]),
        ("unknown opcode without body", [req(0x50)]),
        ("unknown opcode swallows its body length after extras and key",
         [req(0x50, b"kk", b"ee", b"vvv") + b"\x80\x0a\x00\x00\x00\x00\x00"]),
        ("bad magic closes silently", [req(GET, b"x", magic=0x81)]),
        ("text on a binary connection closes", [b"get foo\r\n"]),
        ("a miss reply is flushed before the close", [req(GET, b"nokey") + req(GET, b"x", magic=0)]),
        ("a getk miss is not flushed before the close",
         [req(GETK, b"nokey") + req(GET, b"x", magic=0)]),
        ("key longer than the body", [req(GET, b"abc", body_len=2)]),
        ("extras and key longer than the body", [req(SET, b"abc", store_ext(), body_len=10)]),
        ("key of 250 bytes", [req(GET, b"k" * 250)]),
        ("key of 251 bytes", [req(GET, b"k" * 251)]),
        ("unknown opcode with a 251-byte key", [req(0x50, b"k" * 251)]),
        ("get with extras", [req(GET, b"k", b"e")]),
        ("get without key", [req(GETQ)]),
        ("get with a value", [req(GETK, b"k", val=b"v")]),
        ("set without extras", [req(SET, b"k", val=b"v")]),
        ("set with 4 bytes of extras", [req(SETQ, b"k", exp_ext(), b"v")]),
        ("set without key", [req(SET, ext=store_ext(), val=b"v")]),
        ("delete with a value", [req(DELETE, b"k", val=b"v")]),
        ("incr with 8 bytes of extras", [req(INCR, b"k", store_ext())]),
        ("incr with a value", [req(DECR, b"k", incr_ext(1), b"v")]),
        ("append with extras", [req(APPEND, b"k", exp_ext(), b"v")]),
        ("touch without extras", [req(TOUCH, b"k")]),
        ("gat without key", [req(GATK, ext=exp_ext())]),
        ("flush with 8 bytes of extras", [req(FLUSH, ext=store_ext())]),
        ("flush with a key", [req(FLUSHQ, b"k")]),
        ("noop with a body", [req(NOOP, val=b"x")]),
        ("version with a key", [req(VERSION, b"k")]),
        ("stat with extras", [req(STAT, ext=exp_ext())]),
        ("value at the item size limit", [
            req(SET, b"k", store_ext(0), b"x" * 964), req(SET, b"k", store_ext(1), b"x" * 960),
            req(APPEND, b"big", val=b"x" * 964)]),
        ("value over the item size limit: too large, value swallowed", [
            req(SET, b"k9", store_ext(), b"small"), req(GET, b"k9"),
            req(SETQ, b"k9", store_ext(0), b"x" * 965), req(GET, b"k9"),
            req(ADD, b"k10", store_ext(1), b"x" * 961),
            req(APPENDQ, b"k10", val=b"x" * 965)]),
        ("replace too large keeps the old item", [
            req(SET, b"k11", store_ext(), b"keep"),
            req(REPLACE, b"k11", store_ext(), b"x" * 2000), req(GET, b"k11")]),
        ("a too-large value split across writes",
         [Partial(req(SET, b"k12", store_ext(), b"x" * 965)[:100]),
          req(SET, b"k12", store_ext(), b"x" * 965)[100:]]),
        ("a request split across writes", [Partial(req(SET, b"k13", E8, b"abc")[:30]),
                                           req(SET, b"k13", E8, b"abc")[30:], req(GET, b"k13")]),
        ("pipelined mix", [
            req(SETQ, b"p1", store_ext(), b"1") + req(SETQ, b"p2", store_ext(), b"2")
            + req(GETKQ, b"p1") + req(GETKQ, b"p3") + req(GETK, b"p2") + req(INCRQ, b"p1", incr_ext(4))
            + req(GET, b"p1") + req(DELETEQ, b"p2") + req(DELETE, b"p2")]),
    ]


def sasl_cases():
    """Run against a server started with -S: nothing but SASL and version before auth.

    The recorded server has no valid credentials (Debian's memcached has no password-file
    support), so every authentication attempt fails; the table pins the framing and errors.
    """
    return [
        ("sasl: list mechanisms", [req(SASL_LIST)]),
        ("sasl: version before auth, then noop refused", [req(VERSION)]),
        ("sasl: get before auth", [req(GET, b"k")]),
        ("sasl: unknown opcode before auth", [req(0x50, b"k", val=b"v")]),
        ("sasl: key too long before auth is an auth error", [req(GET, b"k" * 251)]),
        ("sasl: failed auth keeps the connection", [
            req(SASL_AUTH, b"PLAIN", val=b"\0nobody\0wrong") + req(SASL_LIST)]),
        ("sasl: step without auth", [req(SASL_STEP, b"PLAIN", val=b"x") + req(VERSION)]),
        ("sasl: unknown mechanism", [req(SASL_AUTH, b"FOO", val=b"abcd") + req(VERSION)]),
        ("sasl: mechanism name of 33 bytes", [req(SASL_AUTH, b"P" * 33, val=b"abcd") + req(VERSION)]),
        ("sasl: auth without mechanism", [req(SASL_AUTH, val=b"abcd")]),
        ("sasl: list mechanisms with a key", [req(SASL_LIST, b"k")]),
    ]


SERVERS = [
    ("plain", [], cases),
    ("sasl", ["-S"], sasl_cases),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(extra, env):
    for _ in range(5):
        port = free_port()
        args = [MEMCACHED, "-p", str(port), "-l", "127.0.0.1", *SERVER_ARGS, *extra]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, port
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        proc.kill()
    sys.exit("memcached did not start")


def read_step(sock):
    """Replies until the sentinel's reply, a close, or silence. Returns (bytes, closed)."""
    out = b""
    sock.settimeout(SILENCE)
    while True:
        if out.endswith(struct.pack(">I", SENTINEL_OPAQUE) + b"\0" * 8) and len(out) >= 24:
            tail = out[-24:]
            if tail[0] == 0x81 and tail[1] == NOOP:
                return out, False
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return out, False
        if not data:
            return out, True
        out += data


def sasl_env(tmp):
    """Cyrus SASL needs a config naming the mechanisms; PLAIN is what repcached offers."""
    os.chmod(tmp, 0o755)
    with open(os.path.join(tmp, "memcached.conf"), "w") as f:
        f.write("mech_list: plain\n")
    return dict(os.environ, SASL_CONF_PATH=tmp)


def record(port, name, steps):
    sock = socket.create_connection(("127.0.0.1", port))
    replies = []
    closed = False
    print(f"case {name}")
    for step in steps:
        if isinstance(step, Partial):
            data = step.data
        else:
            data = (step(replies) if callable(step) else step) + SENTINEL
        if not closed:
            try:
                sock.sendall(data)
                reply, closed = read_step(sock)
            except (BrokenPipeError, ConnectionResetError):
                reply, closed = b"", True
        replies.append(reply)
        print(f"send {data.hex()}")
        print(f"recv {reply.hex()}")
        if closed:
            break
    print("end closed" if closed else "end open")
    sock.close()


def main():
    version = subprocess.run([MEMCACHED, "-V"], capture_output=True, text=True).stdout.strip()
    print("# memcached binary protocol reference: request bytes and the exact replies of")
    print(f"# {version} started with: {' '.join(SERVER_ARGS)} (plus -S for the sasl server)")
    print("# Regenerate: python3 tests/interop/binary_reference.py > tests/data/binary_reference.txt")
    print("# Each step is sent in one write and ends with a NOOP (opaque 0xfeedface) unless it is")
    print("# the first part of a split request. Each `server` line starts a fresh server.")
    print("item_size_max 1024")
    with tempfile.TemporaryDirectory() as tmp:
        for server, extra, table in SERVERS:
            env = sasl_env(tmp) if "-S" in extra else None
            proc, port = start(extra, env)
            try:
                print(f"server {server}")
                for name, steps in table():
                    record(port, name, steps)
            finally:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
