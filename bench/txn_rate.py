#!/usr/bin/env python3
"""Transactions one after the other with confluent-kafka (librdkafka): begin, one record (or
--records), commit, and again. Prints the mean, p50 and p99 milliseconds a transaction took
from begin to the end of commit: the round trips a short transaction costs (AddPartitionsToTxn,
Produce, EndTxn) and any back-off the client is sent into (CONCURRENT_TRANSACTIONS while the
previous transaction's markers are written).

Usage: bench/txn_rate.py --bootstrap HOST:PORT [--transactions 300] [--records 1]
                         [--replication-factor 1] [--topic txn-rate]
Needs confluent-kafka (the venv scripts/clients.sh prepares). Creates the topic (one
partition) if it does not exist.
"""
import argparse
import statistics
import sys
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--transactions", type=int, default=300)
    ap.add_argument("--records", type=int, default=1)
    ap.add_argument("--replication-factor", type=int, default=1)
    ap.add_argument("--topic", default="txn-rate")
    a = ap.parse_args()

    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for topic, f in admin.create_topics([NewTopic(a.topic, 1, a.replication_factor)]).items():
        try:
            f.result(30)
        except KafkaException as e:
            if "already exists" not in str(e).lower():
                print(f"txn_rate: create {topic}: {e}", file=sys.stderr)
                return 2
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "transactional.id": f"txn-rate-{time.time_ns()}",
        "linger.ms": 0,
    })
    p.init_transactions(30)
    took = []
    for _ in range(a.transactions):
        t0 = time.perf_counter()
        p.begin_transaction()
        for _ in range(a.records):
            p.produce(a.topic, value=b"x" * 100, partition=0)
        p.commit_transaction(30)
        took.append((time.perf_counter() - t0) * 1000)
    took.sort()
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    print(f"{len(took)} transactions of {a.records} record(s): mean {statistics.mean(took):.2f} ms, "
          f"p50 {statistics.median(took):.2f} ms, p99 {p99:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
