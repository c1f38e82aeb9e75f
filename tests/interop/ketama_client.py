"""A web server's cache client with client-side ketama (pylibmc / libmemcached), run as its own
process so that it can see its own site's /etc/hosts (test_sharding.py runs it in a private mount
namespace).

    python3 ketama_client.py SERVER,SERVER,... set|get COUNT PREFIX    (prints one JSON line)
"""

import json
import sys

import pylibmc


def main(servers, action, count, prefix):
    # "ketama": libmemcached's MEMCACHED_BEHAVIOR_KETAMA (consistent ketama distribution, MD5),
    # the same continuum as php-memcached's Memcached::OPT_LIBKETAMA_COMPATIBLE.
    mc = pylibmc.Client(servers.split(","), behaviors={"ketama": True, "connect_timeout": 2000})
    keys = [f"{prefix}{i}" for i in range(int(count))]
    if action == "set":
        failed = mc.set_multi({k: f"value of {k}" for k in keys})
        return {"failed": sorted(failed)}
    if action == "get":
        got = mc.get_multi(keys)
        wrong = [k for k in keys if got.get(k) != f"value of {k}"]
        return {"found": len(keys) - len(wrong), "missing": wrong[:10]}
    raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
