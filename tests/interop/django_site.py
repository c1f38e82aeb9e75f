"""One "request" of a Django site whose cache and sessions live in memcache (run as a subprocess:
each site's web server talks to its own node, as in a web farm).

    python3 django_site.py HOST:PORT ACTION [ARGS...]     (prints one JSON line)

Actions: cache-set KEY JSON | cache-get KEY | cache-incr KEY | session-new JSON |
session-read SESSION_KEY | session-update SESSION_KEY JSON.
"""

import json
import sys

import django
from django.conf import settings


def main(location, action, *args):
    settings.configure(
        SECRET_KEY="repcached-webfarm-test",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.sessions"],
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": location,
                "OPTIONS": {"connect_timeout": 2, "timeout": 2},
            }
        },
        SESSION_ENGINE="django.contrib.sessions.backends.cache",
    )
    django.setup()
    from django.contrib.sessions.backends.cache import SessionStore
    from django.core.cache import cache

    if action == "cache-set":
        cache.set(args[0], json.loads(args[1]), timeout=600)
        return {"ok": True}
    if action == "cache-get":
        return {"value": cache.get(args[0])}
    if action == "cache-incr":
        return {"value": cache.incr(args[0])}
    if action == "session-new":
        s = SessionStore()
        s.update(json.loads(args[0]))
        s.save()
        return {"session_key": s.session_key}
    if action == "session-read":
        s = SessionStore(session_key=args[0])
        # exists() asks the cache; load() would silently start a new empty session on a miss.
        return {"exists": s.exists(args[0]), "data": dict(s.items())}
    if action == "session-update":
        s = SessionStore(session_key=args[0])
        if not s.exists(args[0]):
            return {"exists": False}
        s.update(json.loads(args[1]))
        s.save(must_create=False)
        return {"exists": True, "data": dict(s.items())}
    raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:]), sort_keys=True))
