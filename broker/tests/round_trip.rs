//! Records come back byte for byte (keys, null keys, null values, binary values, repeated
//! headers) whichever client produced them, for every compression codec; consumers that wait
//! are woken by a produce (long poll).

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use rdkafka::message::Message;
use rdkafka::Offset;

const N: u64 = 240;
const LONG: Duration = Duration::from_secs(60);

#[test]
fn rdkafka_round_trip_is_byte_exact_for_every_codec() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    for codec in CODECS {
        let topic = topic_name(&format!("rd-{codec}"));
        let acked = rd_produce_all(&bs, &topic, Some(0), 0..N, &[("compression.type", codec)]);
        assert_eq!(
            sorted_offsets(&acked),
            (0..N as i64).collect::<Vec<_>>(),
            "{codec}: acknowledged offsets are not 0..{N}"
        );
        let got = rd_consume_from_start(&bs, &topic, &[0], N as usize, LONG);
        assert_records_exact(&got, 0..N);
        for c in &got {
            let (_, _, off) = acked
                .iter()
                .find(|a| a.0 == c.index())
                .expect("acked record");
            assert_eq!(*off, c.offset, "{codec}: record {} offset", c.index());
        }
    }
}

#[test]
fn kafka_python_produces_every_codec_and_rdkafka_reads_it_byte_exact() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("kp-codecs");
    // One topic, one stretch of records per codec, so batches of every codec sit side by side.
    for (codec, records) in codec_stretches(N) {
        let out = py_produce(
            "kafka_python_client.py",
            &bs,
            &topic,
            records,
            &["--codec", codec, "--partition", "0"],
        );
        let acked = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("acked "))
            .count();
        assert_eq!(
            acked as u64, N,
            "kafka-python {codec}: acknowledged records"
        );
    }
    let total = N * CODECS.len() as u64;
    let got = rd_consume_from_start(&bs, &topic, &[0], total as usize, LONG);
    assert_records_exact(&got, 0..total);
}

#[test]
fn rdkafka_produced_codecs_are_read_byte_exact_by_kafka_python_and_confluent_kafka() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("rd-to-py");
    for (codec, records) in codec_stretches(N) {
        rd_produce_all(
            &bs,
            &topic,
            Some(0),
            records,
            &[("compression.type", codec)],
        );
    }
    let total = N * CODECS.len() as u64;
    for script in ["kafka_python_client.py", "confluent_client.py"] {
        assert_records_exact(&py_consume(script, &bs, &topic, total), 0..total);
    }
}

#[test]
fn confluent_kafka_round_trip_is_byte_exact_for_every_codec() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("ck-codecs");
    for (codec, records) in codec_stretches(N) {
        py_produce(
            "confluent_client.py",
            &bs,
            &topic,
            records,
            &["--codec", codec, "--partition", "0"],
        );
    }
    let total = N * CODECS.len() as u64;
    let got = rd_consume_from_start(&bs, &topic, &[0], total as usize, LONG);
    assert_records_exact(&got, 0..total);
}

/// The stored batches of partition 0 from offset 0 (raw Fetch), as decoded by kafka-protocol.
fn stored_batch_codecs(addr: std::net::SocketAddr, topic: &str) -> Vec<Compression> {
    let mut c = RawClient::connect(addr);
    let f = raw_fetch(&mut c, topic, 0, 0, 100, 1);
    assert_eq!(f.error_code, 0, "fetch {topic}");
    let mut buf = f.records.clone();
    RecordBatchDecoder::decode_batch_info(&mut buf)
        .expect("decode stored batches")
        .into_iter()
        .map(|b| b.compression)
        .collect()
}

#[test]
fn kcat_with_librdkafka_2_0_2_still_compresses_and_reads_back() {
    // Debian's kcat links librdkafka 2.0.2, which silently stops compressing when the broker
    // advertises a Produce minimum version above 0 (kafka-wire.md trap 1).
    // scripts/clients.sh (run by python() unless SLUICE_PYTHON is set) installs kcat.
    python();
    let kcat = std::env::var("SLUICE_KCAT").unwrap_or_else(|_| "kcat".into());
    let found = std::process::Command::new(&kcat).arg("-V").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "kcat is needed: run scripts/clients.sh (installs Debian's kcat) or set SLUICE_KCAT"
    );
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("kcat");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.txt");
    let lines: Vec<String> = (0..200)
        .map(|i| format!("kcat-{i}-{}", "x".repeat(i % 50)))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("write kcat input");
    let mut produce = std::process::Command::new(&kcat);
    produce.args(["-b", &bs, "-t", &topic, "-P", "-z", "snappy", "-p", "0"]);
    produce.args(["-X", "broker.address.family=v4", "-X", "linger.ms=50", "-l"]);
    produce.arg(&input);
    run_bounded(produce, "kcat -P", LONG);

    let codecs = stored_batch_codecs(broker.kafka_addr(), &topic);
    assert!(!codecs.is_empty(), "no batches stored for kcat's records");
    // librdkafka sends a batch uncompressed when snappy does not make it smaller (a small batch
    // cut short by linger.ms), so a few plain batches are fine; none compressed is the trap.
    assert!(
        codecs.contains(&Compression::Snappy)
            && codecs
                .iter()
                .all(|c| matches!(c, Compression::Snappy | Compression::None)),
        "kcat (librdkafka 2.0.2) asked for snappy but the stored batches are {codecs:?}: \
         the broker's ApiVersions probably advertises a Produce minimum above 0"
    );

    let mut consume = std::process::Command::new(&kcat);
    consume.args([
        "-b",
        &bs,
        "-t",
        &topic,
        "-C",
        "-p",
        "0",
        "-o",
        "beginning",
        "-e",
        "-q",
    ]);
    consume.args(["-X", "broker.address.family=v4", "-f", "%s\n"]);
    let out = run_bounded(consume, "kcat -C", LONG);
    let got: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(got, lines, "kcat read back different records");
}

#[test]
fn long_poll_fetch_waits_for_data_and_a_produce_wakes_it() {
    let broker = TestBroker::start(&[]);
    let addr = broker.kafka_addr();
    let topic = topic_name("long-poll");
    rd_produce_all(&broker.bootstrap(), &topic, Some(0), 0..1, &[]);

    // Nothing arrives: the fetch is held for about max_wait, then answered empty.
    let mut c = RawClient::connect(addr);
    let t0 = Instant::now();
    let f = raw_fetch(&mut c, &topic, 0, 1, 1000, 1);
    let held = t0.elapsed();
    assert_eq!(f.error_code, 0);
    assert!(f.records.is_empty(), "fetch at the end returned data");
    assert_eq!(f.high_watermark, 1);
    assert!(
        held >= Duration::from_millis(800) && held < Duration::from_secs(5),
        "an empty fetch with max_wait 1000 ms was answered after {held:?}"
    );

    // A fetch waiting with max_wait 20 s is answered as soon as a produce lands.
    let (tx, rx) = mpsc::channel();
    let t = topic.clone();
    let waiter = std::thread::spawn(move || {
        let mut c = RawClient::connect(addr);
        let t0 = Instant::now();
        let f = raw_fetch(&mut c, &t, 0, 1, 20_000, 1);
        tx.send((f, t0.elapsed())).expect("send fetch result");
    });
    // The fetch must still be waiting after 700 ms (no data yet).
    assert!(
        rx.recv_timeout(Duration::from_millis(700)).is_err(),
        "a fetch with min_bytes 1 at the log end returned before any data arrived"
    );
    let produced_at = Instant::now();
    rd_produce_all(&broker.bootstrap(), &topic, Some(0), 1..2, &[]);
    let (f, total) = rx
        .recv_timeout(Duration::from_secs(25))
        .expect("the waiting fetch never returned");
    waiter.join().expect("fetch thread");
    let after_produce = produced_at.elapsed();
    assert_eq!(f.error_code, 0);
    assert!(
        total < Duration::from_secs(10),
        "the waiting fetch was answered only after {total:?} (max_wait 20 s): the produce did not wake it"
    );
    assert!(after_produce < Duration::from_secs(5));
    let offsets: Vec<i64> = decoded_records(&f.records)
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(
        offsets,
        vec![1],
        "the woken fetch returned offsets {offsets:?}"
    );

    // The same through librdkafka: a consumer already waiting at the end gets the new record.
    let consumer = rd_reader(
        &broker.bootstrap(),
        &topic,
        &[0],
        Offset::End,
        &[
            ("fetch.wait.max.ms", "10000"),
            ("enable.partition.eof", "true"),
        ],
    );
    // Partition EOF means the consumer has reached the end and now waits in a long poll.
    wait_for(
        "the consumer to report partition EOF",
        Duration::from_secs(20),
        Duration::from_millis(1),
        || match consumer.poll(Duration::from_millis(200)) {
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(0))) => Some(()),
            Some(Ok(m)) => panic!("unexpected record at offset {}", m.offset()),
            _ => None,
        },
    );
    rd_produce_all(&broker.bootstrap(), &topic, Some(0), 2..3, &[]);
    let got = rd_poll_n(&consumer, 1, Duration::from_secs(20));
    assert_records_exact(&got, 2..3);
}

#[test]
fn consumers_starting_inside_a_compressed_batch_get_exactly_the_records_from_there() {
    // Fetch returns whole stored batches; clients drop the records before their offset.
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("mid-batch");
    rd_produce_all(
        &bs,
        &topic,
        Some(0),
        0..100,
        &[("compression.type", "zstd"), ("linger.ms", "50")],
    );
    let codecs = stored_batch_codecs(broker.kafka_addr(), &topic);
    assert!(
        codecs.len() < 50,
        "expected a few large batches, the broker stored {} batches",
        codecs.len()
    );
    for start in [1i64, 37, 99] {
        let c = rd_reader(&bs, &topic, &[0], Offset::Offset(start), &[]);
        let got = rd_poll_n(&c, (100 - start) as usize, LONG);
        assert_eq!(got.first().map(|r| r.offset), Some(start), "first offset");
        assert_records_exact(&got, start as u64..100);
    }
}

#[test]
fn produce_with_acks_0_and_acks_1_is_stored_too() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("acks");
    rd_produce_all(&bs, &topic, Some(0), 0..50, &[("acks", "1")]);
    // With acks=0 there is no response; the delivery report comes without an offset.
    rd_produce_all(&bs, &topic, Some(0), 50..100, &[("acks", "0")]);
    let (_, high) = wait_for(
        "the acks=0 records to land",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let m = rd_watermarks(&bs, &topic, 0);
            (m.1 >= 100).then_some(m)
        },
    );
    assert_eq!(high, 100);
    let got = rd_consume_from_start(&bs, &topic, &[0], 100, LONG);
    assert_records_exact(&got, 0..100);
}

#[test]
fn list_offsets_by_timestamp_finds_the_first_record_at_or_after_it() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("by-time");
    let p = rd_producer(&bs, &[("linger.ms", "0")]);
    let base = 1_700_000_000_000i64;
    for i in 0..20u64 {
        let v = format!("t{i}");
        let rec: rdkafka::producer::BaseRecord<'_, [u8], [u8], usize> =
            rdkafka::producer::BaseRecord::with_opaque_to(&topic, i as usize)
                .partition(0)
                .payload(v.as_bytes())
                .timestamp(base + i as i64 * 1000);
        if let Err((e, _)) = p.send(rec) {
            panic!("enqueue {i}: {e}");
        }
        rdkafka::producer::Producer::flush(&p, Duration::from_secs(30)).expect("flush");
    }
    let mut c = RawClient::connect(broker.kafka_addr());
    for (ts, want) in [
        (base - 1, 0),
        (base, 0),
        (base + 1, 1),
        (base + 7000, 7),
        (base + 19_000, 19),
    ] {
        assert_eq!(
            raw_list_offset(&mut c, &topic, 0, ts),
            (0, want),
            "ListOffsets at timestamp base+{}",
            ts - base
        );
    }
    // Past the newest timestamp: no offset (-1), no error.
    assert_eq!(raw_list_offset(&mut c, &topic, 0, base + 60_000), (0, -1));
    assert_eq!(raw_list_offset(&mut c, &topic, 0, -2), (0, 0), "earliest");
    assert_eq!(raw_list_offset(&mut c, &topic, 0, -1), (0, 20), "latest");
}

/// `count` records of `topic` read from its start by one of the Python clients' scripts.
fn py_consume(script: &str, bootstrap: &str, topic: &str, count: u64) -> Vec<Consumed> {
    let out = run_python(
        script,
        &[
            "consume",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--count",
            &count.to_string(),
        ],
        LONG,
    );
    parse_consumed_lines(&out.stdout)
}

/// The broker's counter of record bytes sent with `sendfile`.
fn sendfile_bytes(broker: &TestBroker) -> f64 {
    metric_sum(broker.http_addr(), "sluice_fetch_sendfile_bytes_total", "")
}

/// Fetches of bytes the broker process appended, or read and checked before, go out with
/// `sendfile` from the page cache (`log::region`); librdkafka, kafka-python and
/// confluent-kafka read them byte for byte, and again after a restart (where a first read
/// checks the bytes).
#[test]
fn records_sent_with_sendfile_are_byte_exact_for_every_client() {
    const MANY: u64 = 3000; // ~2.2 MiB: values up to 1.5 KiB
    let mut broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("sendfile");
    rd_produce_all(&bs, &topic, Some(0), 0..MANY, &[("linger.ms", "20")]);
    assert_eq!(sendfile_bytes(&broker), 0.0);
    let got = rd_consume_from_start(&bs, &topic, &[0], MANY as usize, LONG);
    assert_records_exact(&got, 0..MANY);
    let after_rd = sendfile_bytes(&broker);
    assert!(
        after_rd >= 1e6,
        "librdkafka's fetches went out with sendfile: {after_rd}"
    );
    for script in ["kafka_python_client.py", "confluent_client.py"] {
        assert_records_exact(&py_consume(script, &bs, &topic, MANY), 0..MANY);
    }
    assert!(
        sendfile_bytes(&broker) >= after_rd + 2e6,
        "the Python clients' too"
    );

    broker.restart();
    let bs = broker.bootstrap();
    // A log written before the restart: the first read checks what it serves (read, CRC)...
    let got = rd_consume_from_start(&bs, &topic, &[0], MANY as usize, LONG);
    assert_records_exact(&got, 0..MANY);
    assert_eq!(
        sendfile_bytes(&broker),
        0.0,
        "nothing checked yet in this process"
    );
    // ...and the next read of the same bytes is sent from the file.
    let got = rd_consume_from_start(&bs, &topic, &[0], MANY as usize, LONG);
    assert_records_exact(&got, 0..MANY);
    assert!(
        sendfile_bytes(&broker) >= 1e6,
        "bytes checked by the first read go out with sendfile: {}",
        sendfile_bytes(&broker)
    );
}
