"""Transactions with confluent-kafka (librdkafka) or kafka-python (`--client kafka-python`) for
broker/tests/transactions.rs, the same commands and output as the Java driver's
(tests/java/SluiceTxnClient.java):

  produce --bootstrap B --topic T --id TID --txns N --per M [--abort-every K] [--partitions P]
      N transactions of M records (key "k<i>-<j>", value "t<i>-<j>" on partition (i + j) % P);
      every K-th (i % K == K - 1) aborted, the others committed; prints "#committed <i>" or
      "#aborted <i>" after each.
  consume --bootstrap B --topic T --partitions P --isolation read_committed|read_uncommitted
      [--idle-ms MS]
      reads every partition from the start; prints "v <value>" per record, then "#end" once
      nothing new came for MS.
"""

import argparse
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING


def produce_kafka_python(a):
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=a.bootstrap, transactional_id=a.id, linger_ms=5)
    p.init_transactions()
    for i in range(a.txns):
        p.begin_transaction()
        for j in range(a.per):
            p.send(a.topic, key=f"k{i}-{j}".encode(), value=f"t{i}-{j}".encode(),
                   partition=(i + j) % a.partitions)
        if a.abort_every > 0 and i % a.abort_every == a.abort_every - 1:
            p.flush()
            p.abort_transaction()
            print(f"#aborted {i}", flush=True)
        else:
            p.commit_transaction()
            print(f"#committed {i}", flush=True)
    p.close()


def consume_kafka_python(a):
    from kafka import KafkaConsumer, TopicPartition as TP

    c = KafkaConsumer(bootstrap_servers=a.bootstrap, isolation_level=a.isolation,
                      enable_auto_commit=False, consumer_timeout_ms=a.idle_ms)
    tps = [TP(a.topic, p) for p in range(a.partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    for m in c:
        print("v " + m.value.decode(), flush=True)
    c.close()
    print("#end", flush=True)


def produce(a):
    if a.client == "kafka-python":
        return produce_kafka_python(a)
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "transactional.id": a.id,
        "broker.address.family": "v4",
        "linger.ms": 5,
    })
    p.init_transactions(60)
    for i in range(a.txns):
        p.begin_transaction()
        for j in range(a.per):
            p.produce(a.topic, key=f"k{i}-{j}", value=f"t{i}-{j}", partition=(i + j) % a.partitions)
        if a.abort_every > 0 and i % a.abort_every == a.abort_every - 1:
            p.flush(60)
            p.abort_transaction(60)
            print(f"#aborted {i}", flush=True)
        else:
            p.commit_transaction(60)
            print(f"#committed {i}", flush=True)


def consume(a):
    if a.client == "kafka-python":
        return consume_kafka_python(a)
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "sluice-txn-python-reader",
        "enable.auto.commit": False,
        "isolation.level": a.isolation,
        "broker.address.family": "v4",
    })
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in range(a.partitions)])
    last = time.monotonic()
    while time.monotonic() - last < a.idle_ms / 1000:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            print(f"FAIL: {m.error()}", file=sys.stderr)
            sys.exit(1)
        print("v " + m.value().decode(), flush=True)
        last = time.monotonic()
    c.close()
    print("#end", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["produce", "consume"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--id", default="")
    ap.add_argument("--txns", type=int, default=0)
    ap.add_argument("--per", type=int, default=0)
    ap.add_argument("--abort-every", type=int, default=0)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--isolation", default="read_committed")
    ap.add_argument("--idle-ms", type=int, default=3000)
    ap.add_argument("--client", choices=["confluent-kafka", "kafka-python"], default="confluent-kafka")
    a = ap.parse_args()
    {"produce": produce, "consume": consume}[a.command](a)


if __name__ == "__main__":
    main()
