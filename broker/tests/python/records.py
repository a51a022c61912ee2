"""What both Python clients share: the deterministic test records (identical to `test_record`
in broker/tests/common/mod.rs), the JSON line of a consumed record, and the command line."""

import argparse


def test_record(i):
    """Returns (key, value, headers) of record i; headers is a list of (str, bytes) pairs."""
    key = None if i % 5 == 4 else b"key-%d" % i
    if i % 11 == 10 and key is not None:
        value = None
    else:
        n = i * 97 % 1500 + 1
        value = bytes((i * 131 + j * 7) % 256 for j in range(n))
    headers = [("idx", str(i).encode())]
    if i % 3 != 0:
        headers += [("bin", bytes([0, 255, i % 256])), ("dup", b"a"), ("dup", b"b")]
    return key, value, headers


def consumed_json(partition, offset, key, value, headers):
    """One JSON line in the format parse_consumed_lines() in common/mod.rs reads."""
    import json

    def hx(b):
        return None if b is None else bytes(b).hex()

    return json.dumps(
        {
            "p": partition,
            "o": offset,
            "k": hx(key),
            "v": hx(value),
            "h": [[k, hx(v)] for k, v in (headers or [])],
        }
    )


def client_arguments(commands):
    """The command line both clients take (`py_produce` and `run_python` in
    broker/tests/common/drivers.rs write it); each client adds its own options."""
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=commands)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--codec", default="none")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--partition", type=int, default=None)
    ap.add_argument("--partitions", default="0")
    ap.add_argument("--idempotent", action="store_true")
    ap.add_argument("--timeout", type=float, default=30.0)
    # client settings on top of the script's own (security.protocol=SASL_SSL, ...)
    ap.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    return ap


def extra_config(a):
    """The `--config KEY=VALUE` settings as a dict (split at the first '=')."""
    out = {}
    for kv in a.config:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit("--config %r is not KEY=VALUE" % kv)
        out[key] = value
    return out
