"""Rough throughput of a Kafka-wire broker, rdkafka_performance style, with confluent-kafka
(the librdkafka bundled in its wheel, built optimised, unlike the debug rdkafka of the tests).

Produces --count records of --size bytes with acks=all to a fresh topic, then consumes them all,
and prints one line per phase: records/s, MB/s (10^6 bytes of record values) and seconds.
"""

import argparse
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", default="bench-%d" % os.getpid())
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--max-seconds", type=float, default=25.0)
    a = ap.parse_args()

    value = bytes((i * 7) % 251 for i in range(a.size))
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1000000,
        "compression.type": a.compression,
        "queue.buffering.max.messages": 500000,
        "broker.address.family": "v4",
    })
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(str(err))

    t0 = time.time()
    sent = 0
    deadline = t0 + a.max_seconds
    while sent < a.count and time.time() < deadline:
        try:
            p.produce(a.topic, value=value, partition=sent % a.partitions, on_delivery=cb)
            sent += 1
        except BufferError:
            p.poll(0.01)
        if sent % 10000 == 0:
            p.poll(0)
    left = p.flush(60)
    dt = time.time() - t0
    if left or errors:
        print("produce FAILED: %d undelivered, %d errors, first: %s" % (left, len(errors), errors[:1]))
        sys.exit(1)
    mb = sent * a.size / 1e6
    print("produce acks=all: %d records x %d B in %.2f s = %.0f records/s, %.1f MB/s" % (sent, a.size, dt, sent / dt, mb / dt))

    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "bench",
        "enable.auto.commit": False,
        "broker.address.family": "v4",
        "fetch.max.bytes": 52428800,
        "max.partition.fetch.bytes": 10485760,
    })
    c.assign([TopicPartition(a.topic, i, OFFSET_BEGINNING) for i in range(a.partitions)])
    got = 0
    t0 = time.time()
    deadline = t0 + a.max_seconds
    while got < sent and time.time() < deadline:
        msgs = c.consume(10000, 0.5)
        for m in msgs:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                print("consume FAILED: %s" % m.error())
                sys.exit(1)
            got += 1
    dt = time.time() - t0
    c.close()
    if got < sent:
        print("consume FAILED: %d of %d records in %.1f s" % (got, sent, dt))
        sys.exit(1)
    print("consume: %d records x %d B in %.2f s = %.0f records/s, %.1f MB/s" % (got, a.size, dt, got / dt, got * a.size / 1e6 / dt))


if __name__ == "__main__":
    main()
