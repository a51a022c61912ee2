"""confluent-kafka (librdkafka bundled in the PyPI wheel, a newer librdkafka than the rdkafka
crate's) driven by the Rust integration tests. Output format as kafka_python_client.py."""

import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING

from records import client_arguments, consumed_json, extra_config, test_record


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def produce(a):
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "compression.type": a.codec,
        "acks": "all",
        "linger.ms": 5,
        "enable.idempotence": a.idempotent,
        "broker.address.family": "v4",
        "message.timeout.ms": int(a.timeout * 1000),
        **extra_config(a),
    })
    acked, failed = [], []

    def report(i):
        def cb(err, msg):
            if err is not None:
                failed.append((i, str(err)))
            else:
                acked.append((i, msg.partition(), msg.offset()))
        return cb

    for i in range(a.start, a.start + a.count):
        key, value, headers = test_record(i)
        kw = {} if a.partition is None else {"partition": a.partition}
        while True:
            try:
                p.produce(a.topic, key=key, value=value, headers=headers, on_delivery=report(i), **kw)
                break
            except BufferError:
                p.poll(0.05)
    left = p.flush(a.timeout)
    if left or failed:
        fail("%d undelivered, failures: %r" % (left, failed[:5]))
    for i, part, off in sorted(acked):
        print("acked %d %d %d" % (i, part, off))


def consume(a):
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "confluent-reader",
        "enable.auto.commit": False,
        "check.crcs": True,
        "broker.address.family": "v4",
        "fetch.wait.max.ms": 100,
        **extra_config(a),
    })
    c.assign([TopicPartition(a.topic, int(p), OFFSET_BEGINNING) for p in a.partitions.split(",")])
    got = 0
    deadline = time.time() + a.timeout
    while got < a.count and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail("consumer error: %s" % m.error())
        print(consumed_json(m.partition(), m.offset(), m.key(), m.value(), m.headers()))
        got += 1
    c.close()
    if got < a.count:
        fail("got %d of %d records within %ss" % (got, a.count, a.timeout))


def main():
    a = client_arguments(["produce", "consume"]).parse_args()
    {"produce": produce, "consume": consume}[a.command](a)


if __name__ == "__main__":
    main()
