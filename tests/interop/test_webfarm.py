"""A two-site web farm over one replicated pair, with the real frameworks' session handlers.

Site A's web servers talk to node A, site B's to node B; A and B replicate to each other on
loopback. Each test runs the same story with one framework:

1. a session (and cache keys) written through A is read through B;
2. A is SIGKILLed: B still serves the session and takes writes;
3. A restarts on the same ports: reads through A see what was written to B while A was down
   (A finishes its initial sync before it serves), and writes through A reach B again.

PHP runs as separate `php` processes (one per "request", tests/interop/php/session.php) with a
fixed session id, so that the other site's process opens the same session; Django runs the same way
(tests/interop/django_site.py, settings.configure, PyMemcacheCache + cached sessions).
"""

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from replpair import Pair, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SESSION_PHP = os.path.join(HERE, "php", "session.php")
DJANGO_SITE = os.path.join(HERE, "django_site.py")
RUN_TIMEOUT = 60


def php_modules():
    if shutil.which("php") is None:
        return set()
    out = subprocess.run(["php", "-m"], capture_output=True, text=True, timeout=RUN_TIMEOUT).stdout
    return set(out.split())


PHP_MODULES = php_modules()
needs_memcache = pytest.mark.skipif(
    "memcache" not in PHP_MODULES,
    reason="php-cli with the pecl memcache extension (Debian php-memcache) is not installed",
)
needs_memcached = pytest.mark.skipif(
    "memcached" not in PHP_MODULES,
    reason="php-cli with the memcached extension (Debian php-memcached) is not installed",
)

try:
    import django  # noqa: F401

    HAVE_DJANGO = True
except ImportError:
    HAVE_DJANGO = False


@pytest.fixture
def pair():
    p = Pair().start()
    yield p
    p.stop()


# ---- PHP ----

COMMON_PHP_INI = [
    "-d", "display_errors=stderr",
    "-d", "session.use_strict_mode=0",  # accept the fixed id we hand to session_id()
    "-d", "session.use_cookies=0",
    "-d", "session.gc_probability=0",
]


def ini_memcache(port):
    # pecl memcache: save_path is a URL list.
    return ["-d", "session.save_handler=memcache", "-d", f"session.save_path=tcp://127.0.0.1:{port}"]


def ini_memcached_text(port):
    # php-memcached's session handler speaks the *binary* protocol unless told otherwise
    # (memcached.sess_binary_protocol defaults to On), and repcached does not serve the binary
    # protocol yet (issue 11): switch the handler to the text protocol explicitly.
    return [
        "-d", "session.save_handler=memcached",
        "-d", f"session.save_path=127.0.0.1:{port}",
        "-d", "memcached.sess_binary_protocol=0",
    ]


def ini_memcached_default(port):
    # Only what a php.ini must name; everything else php-memcached's defaults (binary protocol).
    return ["-d", "session.save_handler=memcached", "-d", f"session.save_path=127.0.0.1:{port}"]


def php_argv(ini, sid, *kv, hold=False):
    return (
        ["php"] + COMMON_PHP_INI + ini + [SESSION_PHP] + (["--hold"] if hold else []) + [sid]
        + list(kv)
    )


def php_session(ini, sid, *kv):
    """One request: opens session `sid`, adds the key=value pairs, returns $_SESSION."""
    proc = subprocess.run(php_argv(ini, sid, *kv), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, f"php exited {proc.returncode}: {proc.stdout}{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def php_session_flow(pair, ini_for):
    sid = "webfarm" + uuid.uuid4().hex[:16]
    a, b = pair.a, pair.b

    # 1. A user logs in at site A; site B's next request sees the session.
    assert php_session(ini_for(a.port), sid, "user=alice") == {"user": "alice"}
    wait_for(
        "session written through A readable through B",
        lambda: php_session(ini_for(b.port), sid) == {"user": "alice"},
    )

    # 2. Site A dies; the user carries on at site B with the session, which still takes writes.
    a.kill9()
    assert php_session(ini_for(b.port), sid) == {"user": "alice"}
    assert php_session(ini_for(b.port), sid, "cart=3") == {"cart": "3", "user": "alice"}
    assert php_session(ini_for(b.port), sid) == {"cart": "3", "user": "alice"}

    # 3. A comes back (same ports): it has caught up before it serves its first request.
    a.restart()
    assert php_session(ini_for(a.port), sid) == {"cart": "3", "user": "alice"}, (
        "restarted node A serves a session without the write made to B while A was down"
    )
    assert php_session(ini_for(a.port), sid, "step=4") == {"cart": "3", "step": "4", "user": "alice"}
    wait_for(
        "write through restarted A readable through B",
        lambda: php_session(ini_for(b.port), sid) == {"cart": "3", "step": "4", "user": "alice"},
    )


@needs_memcache
def test_php_memcache_sessions_survive_a_site(pair):
    """pecl memcache (`session.save_handler=memcache`): A -> B, A killed, A restarted caught up."""
    php_session_flow(pair, ini_memcache)


@needs_memcached
def test_php_memcached_sessions_survive_a_site(pair):
    """php-memcached (`session.save_handler=memcached`, text protocol): same story."""
    php_session_flow(pair, ini_memcached_text)


@needs_memcached
def test_php_memcached_sessions_default_settings(pair):
    """php-memcached with its default ini (binary protocol, issue 11): a session written at site
    A is read at site B."""
    php_session_flow(pair, ini_memcached_default)


@needs_memcached
def test_php_memcached_session_lock_holds_across_sites(pair):
    """php-memcached's session lock (an `add`ed lock key) is replicated: a request at site B for a
    session that a request at site A holds waits for it, then sees A's write; no lost update."""
    sid = "weblock" + uuid.uuid4().hex[:16]
    a, b = pair.a, pair.b
    # Short lock polls, many retries: B's request may wait a few seconds without giving up.
    lock_ini = [
        "-d", "memcached.sess_locking=1",
        "-d", "memcached.sess_lock_wait_min=20",
        "-d", "memcached.sess_lock_wait_max=100",
        "-d", "memcached.sess_lock_retries=400",
    ]
    ini_a = ini_memcached_text(a.port) + lock_ini
    ini_b = ini_memcached_text(b.port) + lock_ini
    assert php_session(ini_a, sid, "n=0") == {"n": "0"}
    wait_for("session on B", lambda: php_session(ini_b, sid) == {"n": "0"})

    holder = subprocess.Popen(
        php_argv(ini_a, sid, "from=A", hold=True),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    waiter = None
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        lock_key = f"memc.sess.key.lock.{sid}"  # php-memcached 3.x: prefix + "lock." + id
        cb = b.client()
        try:
            wait_for("A's session lock replicated to B", lambda: cb.get(lock_key) is not None)
        finally:
            cb.close()
        waiter = subprocess.Popen(
            php_argv(ini_b, sid, "from=B"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            # While A holds the lock, B's request must not get through session_start().
            waiter.wait(timeout=1.0)
        out_a, err_a = holder.communicate("\n", timeout=RUN_TIMEOUT)
        assert holder.returncode == 0, err_a
        assert json.loads(out_a.strip()) == {"from": "A", "n": "0"}
        out_b, err_b = waiter.communicate(timeout=RUN_TIMEOUT)
        assert waiter.returncode == 0, err_b
        # B opened the session only after A wrote it back: A's write is in, and B's is added.
        assert json.loads(out_b.strip()) == {"from": "B", "n": "0"}
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
    wait_for("B's write back on A", lambda: php_session(ini_a, sid) == {"from": "B", "n": "0"})


# ---- Django ----


def django_request(node, action, *args):
    proc = subprocess.run(
        [sys.executable, DJANGO_SITE, f"127.0.0.1:{node.port}", action, *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, f"django_site {action} exited {proc.returncode}: {proc.stderr}"
    return json.loads(proc.stdout)


@pytest.mark.skipif(not HAVE_DJANGO, reason="Django is not installed (tests/interop/requirements.txt)")
def test_django_cache_and_sessions_survive_a_site(pair):
    """Django's cache framework (PyMemcacheCache) and cache-backed sessions over the pair."""
    a, b = pair.a, pair.b

    assert django_request(a, "cache-set", "greeting", '"hello"')["ok"]
    assert django_request(a, "cache-set", "hits", "1")  # JSON: the int 1["ok"]
    key = django_request(a, "session-new", json.dumps({"user": "alice"}))["session_key"]
    wait_for(
        "Django session written through A readable through B",
        lambda: django_request(b, "session-read", key) == {"data": {"user": "alice"}, "exists": True},
    )
    assert django_request(b, "cache-get", "greeting") == {"value": "hello"}

    a.kill9()
    assert django_request(b, "session-read", key) == {"data": {"user": "alice"}, "exists": True}
    assert django_request(b, "session-update", key, json.dumps({"cart": 3})) == {
        "data": {"cart": 3, "user": "alice"}, "exists": True,
    }
    assert django_request(b, "cache-incr", "hits") == {"value": 2}
    assert django_request(b, "cache-set", "greeting", '"hello again"')["ok"]

    a.restart()
    assert django_request(a, "session-read", key) == {
        "data": {"cart": 3, "user": "alice"}, "exists": True,
    }, "restarted node A serves a session without the write made to B while A was down"
    assert django_request(a, "cache-get", "greeting") == {"value": "hello again"}
    assert django_request(a, "cache-incr", "hits") == {"value": 3}
    wait_for("incr through restarted A seen by B", lambda: django_request(b, "cache-get", "hits") == {"value": 3})
