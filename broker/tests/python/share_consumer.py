"""A confluent-kafka ShareConsumer (librdkafka's KIP-932 share consumer) for share_groups.rs.

    share_consumer.py BOOTSTRAP TOPIC GROUP IDLE_S TIMEOUT_S

Prints "#subscribed", then "got <partition> <offset> <value>" per record (implicit
acknowledgement: accepted at the next poll, or at close); stops once no record came for IDLE_S
seconds after the first, or at TIMEOUT_S; closes (committing the acknowledgements)."""

import sys
import time

from confluent_kafka import ShareConsumer


def main():
    bootstrap, topic, group = sys.argv[1:4]
    idle, timeout = float(sys.argv[4]), float(sys.argv[5])
    c = ShareConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "broker.address.family": "v4",
    })
    c.subscribe([topic])
    print("#subscribed", flush=True)
    start = time.time()
    last = None
    while time.time() - start < timeout:
        got = False
        for m in c.poll(0.5):
            if m.error():
                print("#error " + str(m.error()), flush=True)
                continue
            got = True
            print("got %d %d %s" % (m.partition(), m.offset(), m.value().decode()), flush=True)
        if got:
            last = time.time()
        elif last is not None and time.time() - last > idle:
            break
    c.close()
    print("#closed", flush=True)


if __name__ == "__main__":
    main()
