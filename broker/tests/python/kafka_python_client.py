"""kafka-python (pure Python Kafka client) driven by the Rust integration tests.

Subcommands print JSON lines for consumed records (see records.consumed_json) and
'acked <idx> <partition> <offset>' lines for produced ones; any failure exits non-zero with
the reason on stderr. Every wait is bounded by --timeout.
"""

import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka import errors as Errors

from records import client_arguments, consumed_json, test_record


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def produce(a):
    codec = None if a.codec == "none" else a.codec
    p = KafkaProducer(
        bootstrap_servers=a.bootstrap,
        compression_type=codec,
        acks="all",
        linger_ms=5,
        enable_idempotence=a.idempotent,
        request_timeout_ms=30000,
    )
    futures = []
    for i in range(a.start, a.start + a.count):
        key, value, headers = test_record(i)
        futures.append((i, p.send(a.topic, key=key, value=value, headers=headers, partition=a.partition)))
    p.flush(timeout=a.timeout)
    for i, f in futures:
        md = f.get(timeout=a.timeout)
        print("acked %d %d %d" % (i, md.partition, md.offset))
    p.close(timeout=10)


def dump(records):
    for r in records:
        headers = [(k, v) for k, v in (r.headers or [])]
        print(consumed_json(r.partition, r.offset, r.key, r.value, headers))


def consume(a):
    c = KafkaConsumer(
        bootstrap_servers=a.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        check_crcs=True,
        fetch_max_wait_ms=100,
    )
    tps = [TopicPartition(a.topic, int(p)) for p in a.partitions.split(",")]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = []
    deadline = time.time() + a.timeout
    while len(got) < a.count and time.time() < deadline:
        for _tp, recs in c.poll(timeout_ms=200).items():
            got.extend(recs)
    dump(got)
    c.close()
    if len(got) < a.count:
        fail("got %d of %d records within %ss" % (len(got), a.count, a.timeout))


def group_consume(a):
    """Joins group --group, reads --count records, waits --linger seconds more for any extra
    (which the Rust test then rejects), commits synchronously and leaves the group."""
    c = KafkaConsumer(
        a.topic,
        bootstrap_servers=a.bootstrap,
        group_id=a.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        check_crcs=True,
        fetch_max_wait_ms=100,
        session_timeout_ms=a.session_timeout_ms,
        heartbeat_interval_ms=1000,
    )
    got = []
    deadline = time.time() + a.timeout
    announced = False
    while len(got) < a.count and time.time() < deadline:
        for _tp, recs in c.poll(timeout_ms=200).items():
            got.extend(recs)
        if not announced and c.assignment():
            print("assigned " + ",".join(str(tp.partition) for tp in sorted(c.assignment())), flush=True)
            announced = True
    linger_end = time.time() + a.linger
    while time.time() < linger_end:
        for _tp, recs in c.poll(timeout_ms=200).items():
            got.extend(recs)
    dump(got)
    if got:
        c.commit()
    committed = {p: c.committed(TopicPartition(a.topic, p)) for p in c.partitions_for_topic(a.topic) or []}
    print("committed " + " ".join("%d=%s" % kv for kv in sorted(committed.items())))
    c.close()
    if len(got) < a.count:
        fail("group %s got %d of %d records within %ss" % (a.group, len(got), a.count, a.timeout))


def wait_until(what, timeout, cond):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.1)
    fail("timed out waiting for %s (last: %r)" % (what, last))


def admin(a):
    t = a.topic
    adm = KafkaAdminClient(bootstrap_servers=a.bootstrap, request_timeout_ms=30000)
    adm.create_topics({t: {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "3600000"}}})
    wait_until("topic %s listed" % t, a.timeout, lambda: t in adm.list_topics())
    parts = {t2["name"]: len(t2["partitions"]) for t2 in adm.describe_topics([t])}
    if parts.get(t) != 2:
        fail("describe_topics after create: %r" % parts)
    print("created %s with 2 partitions" % t)

    try:
        adm.create_topics({t: {"num_partitions": 1, "replication_factor": 1}})
        fail("creating %s twice succeeded" % t)
    except Errors.TopicAlreadyExistsError:
        print("second create refused with TopicAlreadyExistsError")

    try:
        adm.create_topics({t + "-bad": {"num_partitions": 1, "replication_factor": 1, "configs": {"no.such.config": "1"}}})
        fail("a topic with config no.such.config was created")
    except Errors.InvalidConfigurationError as e:
        print("unknown config refused: %s" % e)

    def configs():
        res = adm.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)], config_filter="all")
        by_type = res.get("topic") or res.get("TOPIC") or res.get(ConfigResourceType.TOPIC) or {}
        if t not in by_type:
            fail("describe_configs answer has no %s: %r" % (t, res))
        return by_type[t]

    cfg = configs()
    if cfg.get("retention.ms", {}).get("value") != "3600000":
        fail("retention.ms after create: %r" % cfg.get("retention.ms"))
    for default_key in ("segment.bytes", "cleanup.policy", "max.message.bytes"):
        if default_key not in cfg:
            fail("describe_configs lacks default %s (got keys %s)" % (default_key, sorted(cfg)))
    print("describe_configs: %d configs, retention.ms=3600000" % len(cfg))

    for incremental in (True, False):
        value = "7200000" if incremental else "10800000"
        res = adm.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": value})],
            incremental=incremental,
            raise_on_unknown=False,
        )
        print("alter_configs(incremental=%s) -> %r" % (incremental, res))
        got = configs().get("retention.ms", {}).get("value")
        if got != value:
            fail("retention.ms after alter_configs(incremental=%s): %r, wanted %s" % (incremental, got, value))

    for incremental in (True, False):
        res = adm.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": "soon"})],
            incremental=incremental,
            raise_on_unknown=False,
        )
        outcome = str(res)
        if "InvalidConfiguration" not in outcome and "Error 40" not in outcome:
            fail("alter_configs(incremental=%s) retention.ms=soon: %s" % (incremental, outcome))
        got = configs().get("retention.ms", {}).get("value")
        if got != "10800000":
            fail("retention.ms after a refused alter: %r" % got)
    print("invalid alter_configs refused with INVALID_CONFIG")

    adm.create_partitions({t: 4})
    wait_until(
        "4 partitions of %s" % t,
        a.timeout,
        lambda: {x["name"]: len(x["partitions"]) for x in adm.describe_topics([t])}.get(t) == 4,
    )
    print("create_partitions -> 4")

    adm.delete_topics([t])
    wait_until("%s gone from list_topics" % t, a.timeout, lambda: t not in adm.list_topics())
    print("deleted")
    adm.close()
    print("OK")


def auto_create(a):
    p = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all")
    parts = wait_until("partitions of auto-created %s" % a.topic, a.timeout, lambda: p.partitions_for(a.topic))
    print("partitions %d" % len(parts))
    md = p.send(a.topic, value=b"auto").get(timeout=a.timeout)
    print("acked %d %d" % (md.partition, md.offset))
    p.close(timeout=10)


def main():
    ap = client_arguments(["produce", "consume", "group-consume", "admin", "auto-create"])
    ap.add_argument("--group", default=None)
    ap.add_argument("--linger", type=float, default=1.0)
    ap.add_argument("--session-timeout-ms", type=int, default=10000)
    a = ap.parse_args()
    if a.config:
        fail("--config is read only by confluent_client.py")
    {
        "produce": produce,
        "consume": consume,
        "group-consume": group_consume,
        "admin": admin,
        "auto-create": auto_create,
    }[a.command](a)


if __name__ == "__main__":
    main()
