"""The deterministic test records, identical to `test_record` in broker/tests/common/mod.rs."""


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
