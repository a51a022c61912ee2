//! Log compaction seen by real clients: a topic created with `cleanup.policy=compact` through
//! librdkafka's admin API, keyed records produced by librdkafka, the broker's own ticker
//! compacting the closed segments, then librdkafka and the Java client reading the compacted
//! log from the beginning (batches with fewer records than offsets, empty ones), and a record
//! without a key refused.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;

const KEYS: usize = 40;

const ROUNDS: usize = 6;

/// Partition 0 of `topic` read by librdkafka from its start through offset `last` (a record
/// known to be there: offsets before it may have been compacted away).
fn read_through(bootstrap: &str, topic: &str, last: i64) -> Vec<Consumed> {
    let reader = rd_reader(bootstrap, topic, &[0], Offset::Beginning, &[]);
    let mut got: Vec<Consumed> = Vec::new();
    wait_for(
        &format!("librdkafka to read {topic} through offset {last}"),
        Duration::from_secs(60),
        Duration::from_millis(1),
        || {
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
                got.push(to_consumed(&m));
            }
            got.last().is_some_and(|c| c.offset >= last).then_some(())
        },
    );
    got
}

#[test]
fn a_compacted_topic_keeps_the_latest_value_of_each_key_for_librdkafka_and_java() {
    let broker = TestBroker::start(&["--retention-check-interval-ms", "100"]);
    let bs = broker.bootstrap();
    let topic = topic_name("table");
    create_compacted_topic(&bs, &topic);

    // Rounds of every key, each round's value naming it; key k5 is deleted in the last round.
    let p = rd_producer(&bs, &[("acks", "all"), ("linger.ms", "0")]);
    let value = |round: usize, k: usize| format!("round {round} of k{k} {}", "x".repeat(40));
    for round in 0..ROUNDS {
        for k in 0..KEYS {
            let key = format!("k{k}");
            let v = value(round, k);
            let mut rec = BaseRecord::with_opaque_to(&topic, round * KEYS + k)
                .partition(0)
                .key(key.as_bytes());
            if !(round == ROUNDS - 1 && k == 5) {
                rec = rec.payload(v.as_bytes());
            }
            p.send(rec).expect("queue a record");
        }
        p.flush(Duration::from_secs(30)).expect("flush");
    }
    let acked = p.context().acked.lock().expect("lock").len();
    assert_eq!(acked, ROUNDS * KEYS, "every keyed record acknowledged");
    let produced = (ROUNDS * KEYS) as i64;

    // A record without a key has no place in a compacted topic.
    p.send(
        BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, 9999)
            .partition(0)
            .payload(b"no key".as_slice()),
    )
    .expect("queue");
    p.flush(Duration::from_secs(30)).expect("flush");
    let failed = p.context().failed.lock().expect("lock").clone();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].1.contains("InvalidRecord"), "{failed:?}");

    // The broker's ticker compacts the closed segments.
    let log = wait_compacted(&broker, &topic);
    assert_eq!(log.log_end_offset(), produced, "compaction moves no offset");

    // What a reader from the beginning must see: offsets rising, fewer records than were
    // produced, and for every key its last value (k5: the tombstone, null).
    let check = |who: &str, got: &[Consumed]| {
        assert!(
            got.windows(2).all(|w| w[0].offset < w[1].offset),
            "{who}: offsets rise"
        );
        assert!(
            (got.len() as i64) < produced - KEYS as i64,
            "{who}: {} records of {produced} left after compaction",
            got.len()
        );
        let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
        for c in got {
            let k = String::from_utf8(c.record.key.clone().expect("a key")).expect("utf-8");
            let v = c
                .record
                .value
                .clone()
                .map(|v| String::from_utf8(v).expect("utf-8"));
            last.insert(k, v);
        }
        assert_eq!(last.len(), KEYS, "{who}: every key is still there");
        for k in 0..KEYS {
            let want = (k != 5).then(|| value(ROUNDS - 1, k));
            assert_eq!(last[&format!("k{k}")], want, "{who}: last value of k{k}");
        }
    };
    let n_left = {
        let got = read_through(&bs, &topic, produced - 1);
        check("librdkafka", &got);
        got.len()
    };
    let java = JavaDriver::at(&bs);
    let out = java.consume(&topic, &format!("{topic}-java"), n_left as u64, &[]);
    let got = parse_consumed_lines(&out.stdout);
    assert_eq!(got.len(), n_left, "the Java client reads the same records");
    check("java", &got);
}

/// The `sluice-broker` binary (`fsync: always`) compacting every 50 ms while a producer writes
/// keyed records, SIGKILLed at seeded moments four times and restarted on the same folder;
/// then read from the beginning: offsets rise, every record read is one that was sent (byte
/// for byte at an acknowledged offset), and for every key the last record read is at or after
/// its last acknowledged one: compaction, killed at any step, never takes the latest
/// acknowledged value of a key (only a later record, written before a kill even if not
/// acknowledged, may supersede it). `SLUICE_SEED=<n>` replays a run.
#[test]
fn compaction_killed_at_any_moment_keeps_the_latest_acknowledged_value_of_every_key() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let seed = env_number("SLUICE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
    });
    eprintln!("compaction crash: seed {seed} (replay: SLUICE_SEED={seed})");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("broker.log");
    let extra = ["--retention-check-interval-ms", "50", "--fsync", "always"];
    let mut broker = BinaryBroker::spawn(&data, &extra, &log_path);
    let topic = topic_name("crash-table");
    create_compacted_topic(&broker.bootstrap(), &topic);

    let keys = 3 + rng.below(30);
    let key = move |i: u64| format!("k{}", i % keys);
    let value = move |i: u64| format!("{} n{i} {}", key(i), "z".repeat((i % 50) as usize));
    // offset -> record index, for every acknowledged record.
    let mut acked: BTreeMap<i64, u64> = BTreeMap::new();
    let mut next = 0u64;
    for _ in 0..4 {
        let bs = broker.bootstrap();
        let stop = Arc::new(AtomicBool::new(false));
        let first = next;
        let producer = {
            let (stop, topic) = (Arc::clone(&stop), topic.clone());
            std::thread::spawn(move || {
                let p = rd_producer(
                    &bs,
                    &[
                        ("acks", "all"),
                        ("linger.ms", "0"),
                        ("message.timeout.ms", "1500"),
                    ],
                );
                let mut i = first;
                while !stop.load(Ordering::SeqCst) {
                    let (k, v) = (key(i), value(i));
                    let rec = BaseRecord::with_opaque_to(&topic, i as usize)
                        .partition(0)
                        .key(k.as_bytes())
                        .payload(v.as_bytes());
                    if p.send(rec).is_err() {
                        // The queue is full: let deliveries drain.
                        p.poll(Duration::from_millis(10));
                        continue;
                    }
                    i += 1;
                    if i % 50 == 0 {
                        p.poll(Duration::from_millis(1));
                    }
                }
                let _ = p.flush(Duration::from_secs(10));
                let delivered = p.context().acked.lock().expect("lock").clone();
                (i, delivered)
            })
        };
        std::thread::sleep(Duration::from_millis(150 + rng.below(600)));
        broker.kill9();
        stop.store(true, Ordering::SeqCst);
        let (sent_to, delivered) = producer.join().expect("producer thread");
        for (i, _, offset) in delivered {
            assert!(
                acked.insert(offset, i).is_none(),
                "offset {offset} acknowledged twice"
            );
        }
        next = sent_to;
        broker = BinaryBroker::spawn_args(&broker_args(&data, &extra)[1..], &log_path);
    }
    assert!(!acked.is_empty(), "records acknowledged");
    assert!(
        broker.log().contains("compacted"),
        "the broker compacted while the records came"
    );

    // One more record, acknowledged: the read below ends at it (the offsets before it may
    // all have been compacted away).
    let bs = broker.bootstrap();
    let p = rd_producer(&bs, &[("acks", "all")]);
    let (k, v) = (key(next), value(next));
    p.send(
        BaseRecord::with_opaque_to(&topic, next as usize)
            .partition(0)
            .key(k.as_bytes())
            .payload(v.as_bytes()),
    )
    .expect("queue the last record");
    p.flush(Duration::from_secs(30))
        .expect("flush the last record");
    let last = p.context().acked.lock().expect("lock").clone();
    assert_eq!(last.len(), 1, "the last record acknowledged");
    acked.insert(last[0].2, next);
    let end = last[0].2 + 1;

    // Read everything back.
    let got = read_through(&bs, &topic, end - 1);
    assert!(
        got.windows(2).all(|w| w[0].offset < w[1].offset),
        "seed {seed}: offsets rise"
    );
    let mut last_read: BTreeMap<String, i64> = BTreeMap::new();
    for c in &got {
        let k = String::from_utf8(c.record.key.clone().expect("a key")).expect("utf-8");
        let v = String::from_utf8(c.record.value.clone().expect("a value")).expect("utf-8");
        let i: u64 = v
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.strip_prefix('n'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("seed {seed}: a record nobody sent at {}: {v:?}", c.offset));
        assert_eq!(
            (k.clone(), v),
            (key(i), value(i)),
            "seed {seed}: record {i}"
        );
        if let Some(want) = acked.get(&c.offset) {
            assert_eq!(
                i, *want,
                "seed {seed}: offset {} holds another record",
                c.offset
            );
        }
        last_read.insert(k, c.offset);
    }
    let mut latest_acked: BTreeMap<String, i64> = BTreeMap::new();
    for (offset, i) in &acked {
        latest_acked.insert(key(*i), *offset);
    }
    for (k, offset) in &latest_acked {
        let read = last_read.get(k).copied().unwrap_or(-1);
        assert!(
            read >= *offset,
            "seed {seed}: the latest acknowledged record of {k} (offset {offset}) is gone; last read {read}"
        );
    }
    eprintln!(
        "compaction crash: seed {seed}: {} keys, {} records acknowledged, log end {end}, {} read back",
        keys,
        acked.len(),
        got.len()
    );
}
