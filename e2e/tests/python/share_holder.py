"""A confluent-kafka ShareConsumer that takes one batch of records and holds it, for
e2e/tests/work_queue.rs to see records in flight on the MessageQueue's status.

    share_holder.py BOOTSTRAP TOPIC GROUP WANT TIMEOUT_S

Polls until it holds WANT records (or TIMEOUT_S passed), printing "got <partition> <offset>
<value>" per record, then "#holding <n>"; the records stay acquired (implicit acknowledgement
happens only at the next poll) until a line arrives on stdin (or stdin closes). Then it polls
once more, which accepts them (and may take and print more records, which the close releases:
closing alone releases what was not acknowledged, it does not accept it), closes, and prints
"#closed"."""

import sys
import time

from confluent_kafka import ShareConsumer


def main():
    bootstrap, topic, group = sys.argv[1:4]
    want, timeout = int(sys.argv[4]), float(sys.argv[5])
    c = ShareConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "broker.address.family": "v4",
    })
    c.subscribe([topic])
    held = 0
    start = time.time()
    while held < want and time.time() - start < timeout:
        for m in c.poll(0.5):
            if m.error():
                print("#error " + str(m.error()), flush=True)
                continue
            held += 1
            print("got %d %d %s" % (m.partition(), m.offset(), m.value().decode()), flush=True)
    print("#holding %d" % held, flush=True)
    sys.stdin.readline()
    for m in c.poll(0.5):
        if not m.error():
            print("got %d %d %s" % (m.partition(), m.offset(), m.value().decode()), flush=True)
    c.close()
    print("#closed", flush=True)


if __name__ == "__main__":
    main()
