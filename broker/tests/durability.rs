//! What was acknowledged stays: clean restarts, torn tails written by the test, retention that
//! removes only old segments, and idempotent producers whose retries are not duplicated.

mod common;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use kafka_protocol::messages::InitProducerIdRequest;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{BaseRecord, Producer};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn everything_produced_before_a_clean_restart_is_readable_after_it() {
    let data = tempfile::tempdir().expect("data dir");
    let mut broker = TestBroker::start_in(data.path(), &["--default-partitions", "3"]);
    let bs = broker.bootstrap();
    let plain = topic_name("restart-plain");
    let zstd = topic_name("restart-zstd");
    rd_produce_all(&bs, &plain, None, 0..300, &[]);
    rd_produce_all(&bs, &zstd, None, 300..500, &[("compression.type", "zstd")]);
    let before_plain = rd_consume_from_start(&bs, &plain, &[0, 1, 2], 300, LONG);
    let before_zstd = rd_consume_from_start(&bs, &zstd, &[0, 1, 2], 200, LONG);
    let marks: Vec<(i64, i64)> = (0..3).map(|p| rd_watermarks(&bs, &plain, p)).collect();

    broker.restart();
    let bs = broker.bootstrap();
    let after_marks: Vec<(i64, i64)> = (0..3).map(|p| rd_watermarks(&bs, &plain, p)).collect();
    assert_eq!(after_marks, marks, "watermarks changed across the restart");
    let mut after_plain = rd_consume_from_start(&bs, &plain, &[0, 1, 2], 300, LONG);
    let mut after_zstd = rd_consume_from_start(&bs, &zstd, &[0, 1, 2], 200, LONG);
    assert_records_exact(&after_plain, 0..300);
    assert_records_exact(&after_zstd, 300..500);
    let key = |c: &Consumed| (c.partition, c.offset);
    let (mut bp, mut bz) = (before_plain, before_zstd);
    for v in [&mut bp, &mut bz, &mut after_plain, &mut after_zstd] {
        v.sort_by_key(key);
    }
    assert_eq!(
        after_plain, bp,
        "records moved or changed across the restart"
    );
    assert_eq!(
        after_zstd, bz,
        "records moved or changed across the restart"
    );

    // New records continue at the old log end.
    let acked = rd_produce_all(&bs, &plain, Some(0), 500..501, &[]);
    assert_eq!(
        acked[0].2, marks[0].1,
        "offset of the first record after the restart"
    );
}

/// What the test appends to the active segment while the broker is stopped.
enum Tail {
    Garbage,
    HalfBatch,
    BatchWithBadCrc,
    Zeros,
}

fn torn_tail_case(tail: Tail) {
    let data = tempfile::tempdir().expect("data dir");
    let mut broker = TestBroker::start_in(data.path(), &[]);
    let topic = topic_name("torn");
    rd_produce_all(
        &broker.bootstrap(),
        &topic,
        Some(0),
        0..100,
        &[("acks", "all")],
    );
    broker.stop();

    let segs = segment_files(data.path(), &topic, 0);
    let active = segs.last().expect("at least one segment file").clone();
    let good_len = std::fs::metadata(&active).expect("stat segment").len();
    let batch = encode_batch(&[b"torn-1", b"torn-2", b"torn-3"], Compression::None, None);
    let bytes: Vec<u8> = match tail {
        Tail::Garbage => (0..37u32).map(|i| (i * 89 + 13) as u8).collect(),
        Tail::HalfBatch => batch[..batch.len() / 2].to_vec(),
        Tail::BatchWithBadCrc => {
            let mut b = batch.to_vec();
            let last = b.len() - 2;
            b[last] ^= 0x5a;
            b
        }
        Tail::Zeros => vec![0; 4096],
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .expect("open active segment");
    f.write_all(&bytes).expect("append tail");
    f.sync_all().expect("fsync tail");
    drop(f);

    broker.start_again();
    let bs = broker.bootstrap();
    assert_eq!(
        rd_watermarks(&bs, &topic, 0),
        (0, 100),
        "watermarks after recovery"
    );
    let got = rd_consume_from_start(&bs, &topic, &[0], 100, LONG);
    assert_records_exact(&got, 0..100);
    let len_now = std::fs::metadata(&active).map(|m| m.len()).unwrap_or(0);
    assert!(
        len_now <= good_len,
        "the torn tail was not truncated: {} is {len_now} bytes, {good_len} before the tail",
        active.display()
    );

    // Appends continue right after the last good record, and survive another restart.
    let acked = rd_produce_all(&bs, &topic, Some(0), 100..110, &[]);
    assert_eq!(sorted_offsets(&acked), (100..110).collect::<Vec<i64>>());
    broker.restart();
    let got = rd_consume_from_start(&broker.bootstrap(), &topic, &[0], 110, LONG);
    assert_records_exact(&got, 0..110);
}

#[test]
fn recovery_truncates_a_garbage_tail_and_serves_every_acknowledged_record() {
    torn_tail_case(Tail::Garbage);
}

#[test]
fn recovery_truncates_half_a_batch_and_serves_every_acknowledged_record() {
    torn_tail_case(Tail::HalfBatch);
}

#[test]
fn recovery_drops_a_batch_with_a_bad_crc_and_serves_every_acknowledged_record() {
    torn_tail_case(Tail::BatchWithBadCrc);
}

#[test]
fn recovery_truncates_a_zero_filled_tail_and_serves_every_acknowledged_record() {
    torn_tail_case(Tail::Zeros);
}

fn create_topic(broker: &TestBroker, topic: &str, configs: &[(&str, &str)]) {
    let a = rd_admin(&broker.bootstrap());
    let mut nt = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        nt = nt.set(k, v);
    }
    let res = broker
        .block_on(a.create_topics([&nt], &AdminOptions::new()))
        .expect("create_topics request");
    assert!(res.iter().all(Result::is_ok), "create {topic}: {res:?}");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn retention_by_time_deletes_old_segments_and_moves_the_log_start() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("retention-ms");
    create_topic(
        &broker,
        &topic,
        &[("segment.bytes", "4096"), ("retention.ms", "3600000")],
    );
    // 100 records stamped two hours ago (past retention), then 10 stamped now.
    // Small batches, so that segment.bytes=4096 rolls many segments.
    let p = rd_producer(&bs, &[("linger.ms", "0"), ("batch.num.messages", "4")]);
    let old = now_ms() - 2 * 3600 * 1000;
    for i in 0..110u64 {
        let r = test_record(i);
        let ts = if i < 100 { old } else { now_ms() };
        let mut rec: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&topic, i as usize)
                .partition(0)
                .timestamp(ts);
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Err((e, _)) = p.send(rec) {
            panic!("enqueue {i}: {e}");
        }
        if i == 99 {
            p.flush(LONG).expect("flush old records");
        }
    }
    p.flush(LONG).expect("flush");
    assert!(p.context().failed.lock().expect("lock").is_empty());
    let segs_before = segment_files(broker.data_dir(), &topic, 0).len();
    assert!(
        segs_before > 3,
        "segment.bytes=4096 should have rolled; {segs_before} segments"
    );

    let low = wait_for(
        "retention to delete the old segments (retention check every few seconds)",
        Duration::from_secs(45),
        Duration::from_millis(250),
        || {
            let (low, _) = rd_watermarks(&bs, &topic, 0);
            (low > 0).then_some(low)
        },
    );
    let segs_after = segment_files(broker.data_dir(), &topic, 0).len();
    assert!(
        segs_after < segs_before,
        "log start moved to {low} but segment files went {segs_before} -> {segs_after}"
    );
    assert!(
        low <= 100,
        "retention deleted records newer than retention.ms (log start {low})"
    );
    let mut c = RawClient::connect(broker.kafka_addr());
    assert_eq!(
        raw_list_offset(&mut c, &topic, 0, -2),
        (0, low),
        "ListOffsets earliest"
    );
    assert_eq!(
        raw_list_offset(&mut c, &topic, 0, -1),
        (0, 110),
        "ListOffsets latest"
    );
    // Fetching below the log start is OFFSET_OUT_OF_RANGE (1); from the log start it works.
    assert_eq!(
        raw_fetch(&mut c, &topic, 0, 0, 0, 1).error_code,
        1,
        "fetch below log start"
    );
    let f = raw_fetch(&mut c, &topic, 0, low, 0, 1);
    assert_eq!(f.error_code, 0);
    assert_eq!(f.log_start_offset, low);
    let mut buf = f.records.clone();
    let first = RecordBatchDecoder::decode_batch_info(&mut buf).expect("decode");
    assert!(
        first.first().is_some_and(|b| b.min_offset <= low),
        "first served batch {first:?}"
    );
}

#[test]
fn retention_by_bytes_keeps_the_partition_near_its_limit() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("retention-bytes");
    create_topic(
        &broker,
        &topic,
        &[("segment.bytes", "4096"), ("retention.bytes", "16384")],
    );
    rd_produce_all(
        &bs,
        &topic,
        Some(0),
        0..200,
        &[("linger.ms", "0"), ("batch.num.messages", "4")],
    );
    let size = |b: &TestBroker| -> u64 {
        segment_files(b.data_dir(), &topic, 0)
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    };
    let before = size(&broker);
    assert!(
        before > 3 * 16384,
        "200 records should take more than 48 KiB, took {before}"
    );
    let low = wait_for(
        "retention.bytes to delete old segments",
        Duration::from_secs(45),
        Duration::from_millis(250),
        || {
            let (low, _) = rd_watermarks(&bs, &topic, 0);
            (low > 0 && size(&broker) <= 16384 + 2 * 4096 + 2048).then_some(low)
        },
    );
    let got = rd_consume_from_start(&bs, &topic, &[0], (200 - low) as usize, LONG);
    assert_records_exact(&got, low as u64..200);
}

fn init_producer_id(c: &mut RawClient) -> (i64, i16) {
    let resp = c.send(
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1),
        4,
    );
    assert_eq!(resp.error_code, 0, "InitProducerId v4 error");
    assert!(
        resp.producer_id.0 >= 0,
        "InitProducerId gave producer id {:?}",
        resp.producer_id
    );
    (resp.producer_id.0, resp.producer_epoch)
}

fn offsets_from(c: &mut RawClient, topic: &str, from: i64) -> Vec<(i64, Vec<u8>)> {
    let f = raw_fetch(c, topic, 0, from, 0, 1);
    assert_eq!(f.error_code, 0);
    decoded_records(&f.records)
        .into_iter()
        .filter(|r| r.offset >= from)
        .map(|r| (r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()))
        .collect()
}

#[test]
fn idempotent_producer_retried_batch_is_not_duplicated() {
    let data = tempfile::tempdir().expect("data dir");
    let mut broker = TestBroker::start_in(data.path(), &[]);
    let topic = topic_name("idem-raw");
    rd_produce_all(&broker.bootstrap(), &topic, Some(0), 0..1, &[]); // creates it; offset 0
    let mut c = RawClient::connect(broker.kafka_addr());
    let (pid, epoch) = init_producer_id(&mut c);

    let b0 = encode_batch(
        &[b"s0", b"s1", b"s2"],
        Compression::None,
        Some((pid, epoch, 0)),
    );
    assert_eq!(
        raw_produce(&mut c, &topic, 0, b0.clone(), -1),
        (0, 1),
        "first send"
    );
    // The retry of the same batch (same producer id, epoch, sequence) succeeds without a copy.
    let (err, base) = raw_produce(&mut c, &topic, 0, b0.clone(), -1);
    assert!(
        err == 0 || err == 46,
        "retried batch: error {err} (want NONE, or DUPLICATE_SEQUENCE_NUMBER 46)"
    );
    if err == 0 {
        assert_eq!(
            base, 1,
            "a deduplicated retry must report the original base offset"
        );
    }
    assert_eq!(
        raw_list_offset(&mut c, &topic, 0, -1),
        (0, 4),
        "log end after the retry"
    );

    let b1 = encode_batch(&[b"s3", b"s4"], Compression::Zstd, Some((pid, epoch, 3)));
    assert_eq!(
        raw_produce(&mut c, &topic, 0, b1.clone(), -1),
        (0, 4),
        "next sequence"
    );
    // A gap in the sequence is OUT_OF_ORDER_SEQUENCE_NUMBER (45) and appends nothing.
    let gap = encode_batch(&[b"gap"], Compression::None, Some((pid, epoch, 10)));
    assert_eq!(
        raw_produce(&mut c, &topic, 0, gap, -1).0,
        45,
        "sequence gap"
    );
    assert_eq!(raw_list_offset(&mut c, &topic, 0, -1), (0, 6));
    let values: Vec<(i64, Vec<u8>)> = offsets_from(&mut c, &topic, 1);
    let want: Vec<(i64, Vec<u8>)> = [b"s0", b"s1", b"s2", b"s3", b"s4"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64 + 1, v.to_vec()))
        .collect();
    assert_eq!(values, want, "records stored for the idempotent producer");

    // Producer state is rebuilt on restart: the retry of the last batch is still a duplicate.
    drop(c);
    broker.restart();
    let mut c = RawClient::connect(broker.kafka_addr());
    let (err, _) = raw_produce(&mut c, &topic, 0, b1, -1);
    assert!(err == 0 || err == 46, "retry after restart: error {err}");
    assert_eq!(
        raw_list_offset(&mut c, &topic, 0, -1),
        (0, 6),
        "a retry after a restart was appended again (producer state not recovered)"
    );
}

#[test]
fn idempotent_clients_write_each_record_exactly_once() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("idem-clients");
    rd_produce_all(
        &bs,
        &topic,
        Some(0),
        0..400,
        &[("enable.idempotence", "true"), ("compression.type", "lz4")],
    );
    py_produce(
        "kafka_python_client.py",
        &bs,
        &topic,
        400..600,
        &["--partition", "0", "--idempotent", "--codec", "gzip"],
    );
    py_produce(
        "confluent_client.py",
        &bs,
        &topic,
        600..800,
        &["--partition", "0", "--idempotent", "--codec", "snappy"],
    );
    assert_eq!(rd_watermarks(&bs, &topic, 0), (0, 800));
    let got = rd_consume_from_start(&bs, &topic, &[0], 800, LONG);
    assert_records_exact(&got, 0..800);
}

#[test]
fn shutdown_answers_or_closes_a_waiting_long_poll_promptly() {
    let mut broker = TestBroker::start(&[]);
    let topic = topic_name("shutdown-poll");
    rd_produce_all(&broker.bootstrap(), &topic, Some(0), 0..1, &[]);
    let addr = broker.kafka_addr();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = topic.clone();
    let waiter = std::thread::spawn(move || {
        let mut c = RawClient::connect(addr);
        let frame = c.frame(&fetch_request(&t, 0, 1, 30_000, 1), 12);
        c.stream.write_all(&frame).expect("send fetch");
        tx.send(()).expect("signal sent");
        // Either an (empty) answer or a closed connection; never a 30 s wait.
        let t0 = std::time::Instant::now();
        let _ = c.read_frame();
        t0.elapsed()
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("fetch sent");
    // Give the request a moment to reach the broker (it may or may not be parked yet; either
    // way neither shutdown nor the client may wait out the 30 s).
    std::thread::sleep(Duration::from_millis(200));
    let stopped = std::time::Instant::now();
    broker.stop();
    let shutdown_took = stopped.elapsed();
    let waited = waiter.join().expect("fetch thread");
    assert!(
        shutdown_took < Duration::from_secs(10),
        "shutdown took {shutdown_took:?} with a long poll (max_wait 30 s) pending"
    );
    assert!(
        waited < Duration::from_secs(15),
        "the pending long poll was left hanging for {waited:?} after shutdown"
    );
}
