//! Resource floods against the broker binary: what one hostile or careless client can make the
//! broker hold, and that everybody else keeps being served meanwhile.
//!
//! - A client that pipelines 64 fetches of 50 MiB each and never reads a response: the broker
//!   stops reading its requests once 64 MiB of its responses wait (instead of building all
//!   64, over 3 GiB), its resident memory grows by about that much and no more, other clients
//!   fetch and produce meanwhile, and everything it held is released when it goes away.
//! - Ten thousand connections at once: the first `--max-connections` (4096 by default) are served, the
//!   rest are closed at once and counted, the broker stays up, and a real client works as soon
//!   as the flood is gone.
//!
//! - Smaller limits set by flags (`--max-connections`, `--fetch-max-bytes`) take effect.
//!
//! Memory figures are printed (`--nocapture`); docs/reliability.md lists the limits.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiVersionsRequest, CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::records::Compression;

const MIB: u64 = 1 << 20;

/// A counter or gauge from the broker's `/metrics` (0 when absent).
fn metric(broker: &BinaryBroker, name: &str) -> f64 {
    metric_sum(broker.http_addr, name, "")
}

/// Resident memory of the broker process, in MiB.
fn rss_mib(broker: &BinaryBroker) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.child.id()))
        .expect("read the broker's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc status")
        / 1024
}

fn create(c: &mut RawClient, topic: &str) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(tname(topic))
            .with_num_partitions(1)
            .with_replication_factor(-1)])
        .with_timeout_ms(10_000);
    let resp: CreateTopicsResponse = c.send(&req, 7);
    assert_eq!(resp.topics[0].error_code, 0, "create {topic}");
}

/// A librdkafka produce and consume on a topic of its own, and a raw fetch of `big`.
fn others_are_served(broker: &BinaryBroker, n: u64, big: &str) {
    let topic = topic_name("bystander");
    rd_produce_all(&broker.bootstrap(), &topic, Some(0), n..n + 5, &[]);
    let got = rd_consume_from_start(
        &broker.bootstrap(),
        &topic,
        &[0],
        5,
        Duration::from_secs(30),
    );
    assert_records_exact(&got, n..n + 5);
    let mut c = RawClient::connect(broker.kafka_addr);
    let f = raw_fetch(&mut c, big, 0, 8, 0, 1);
    assert_eq!(f.error_code, 0, "a bystander's fetch of {big}");
    assert!(
        !f.records.is_empty(),
        "a bystander's fetch of {big} got records"
    );
}

#[test]
fn a_client_that_pipelines_huge_fetches_and_never_reads_holds_bounded_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = BinaryBroker::spawn(
        &dir.path().join("data"),
        &["--max-message-bytes", "8388608", "--fsync", "interval"],
        &dir.path().join("broker.log"),
    );
    let mut c = RawClient::connect(broker.kafka_addr);
    let big = "backlog";
    create(&mut c, big);
    // 256 MiB: 64 batches of four 1 MiB records.
    let value = vec![b'v'; MIB as usize];
    for i in 0..64 {
        let batch = encode_batch(&[&value, &value, &value, &value], Compression::None, None);
        assert_eq!(
            raw_produce(&mut c, big, 0, batch, 1),
            (0, i * 4),
            "fill batch {i}"
        );
    }
    let before = rss_mib(&broker);

    // 64 fetches of up to 50 MiB each from offset 0, sent at once; nothing is read back.
    let mut hostile = RawClient::connect(broker.kafka_addr);
    let mut burst = Vec::new();
    for _ in 0..64 {
        let req = fetch_request(big, 0, 0, 0, 1)
            .with_max_bytes(50 << 20)
            .with_topics(vec![
                kafka_protocol::messages::fetch_request::FetchTopic::default()
                    .with_topic(tname(big))
                    .with_partitions(vec![
                        kafka_protocol::messages::fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(50 << 20),
                    ]),
            ]);
        burst.extend(hostile.frame(&req, 12));
    }
    hostile.stream.write_all(&burst).expect("send the burst");

    // The broker stops reading that client once its responses fill the connection's budget.
    wait_for(
        "the broker to hold back the client that does not read",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || (metric(&broker, "sluice_response_backpressure_total") >= 1.0).then_some(()),
    );
    let queued = metric(&broker, "sluice_queued_response_bytes") as u64;
    let during = rss_mib(&broker);
    eprintln!(
        "64 pipelined 50 MiB fetches, unread: {} MiB of responses queued, broker RSS {before} -> {during} MiB",
        queued / MIB
    );
    // Its own budget (64 MiB) plus the one response that crossed it (<= 50 MiB here).
    assert!(
        queued <= 64 * MIB + 50 * MIB,
        "{} MiB of responses queued for one client",
        queued / MIB
    );
    // The socket buffers hold a few MiB more of what was written; 3 GiB would mean no bound.
    assert!(
        during.saturating_sub(before) < 256,
        "broker RSS grew by {} MiB for one client that does not read",
        during.saturating_sub(before)
    );

    others_are_served(&broker, 0, big);

    // Gone: what it held is released.
    drop(hostile);
    wait_for(
        "the queued responses of the closed connection to be released",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || (metric(&broker, "sluice_queued_response_bytes") == 0.0).then_some(()),
    );
    others_are_served(&broker, 100, big);
    let status = broker.sigterm_and_wait(Duration::from_secs(30));
    assert!(status.success(), "broker exit: {status}");
}

#[test]
fn ten_thousand_connections_at_once_are_served_up_to_the_limit_and_the_rest_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = BinaryBroker::spawn(
        &dir.path().join("data"),
        &[],
        &dir.path().join("broker.log"),
    );
    let before = rss_mib(&broker);
    let t0 = std::time::Instant::now();
    let mut open = Vec::new();
    for i in 0..10_000 {
        match TcpStream::connect(broker.kafka_addr) {
            Ok(s) => {
                open.push(s);
                if i % 2500 == 2499 {
                    eprintln!("{:?}: {} connected", t0.elapsed(), i + 1);
                }
            }
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
    // Every connection beyond the limit is closed by the broker and counted.
    wait_for(
        "the broker to refuse the connections beyond its limit",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            (metric(&broker, "sluice_connections_rejected_total") >= 10_000.0 - 4096.0)
                .then_some(())
        },
    );
    eprintln!("{:?}: 10000 connected, refusals counted", t0.elapsed());
    let served = metric(&broker, "sluice_connections");
    let during = rss_mib(&broker);
    eprintln!(
        "10000 connections: {served} served, {} refused, broker RSS {before} -> {during} MiB",
        metric(&broker, "sluice_connections_rejected_total")
    );
    assert_eq!(served, 4096.0, "connections served at the limit");
    // One served connection answers, so the broker is not wedged by the flood.
    {
        let s = open.swap_remove(0);
        drop(s);
        // The freed slot is reused once the broker noticed the close: retry until then.
        let resp = wait_for(
            "a connection to be served after one of the flood left",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                RawClient::try_connect(broker.kafka_addr, Duration::from_secs(10))
                    .ok()?
                    .try_send(&ApiVersionsRequest::default(), 3)
                    .ok()
            },
        );
        assert_eq!(resp.error_code, 0, "ApiVersions during the flood");
    }
    eprintln!("{:?}: a freed slot served", t0.elapsed());
    drop(open);
    wait_for(
        "the flood's connections to be closed",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (metric(&broker, "sluice_connections") <= 1.0).then_some(()),
    );
    eprintln!("{:?}: the flood closed", t0.elapsed());
    let mut c = RawClient::connect(broker.kafka_addr);
    create(&mut c, "after-flood");
    let batch = encode_batch(&[b"still here"], Compression::None, None);
    assert_eq!(raw_produce(&mut c, "after-flood", 0, batch, -1), (0, 0));
    let status = broker.sigterm_and_wait(Duration::from_secs(30));
    assert!(status.success(), "broker exit: {status}");
}

/// A fetch of everything from `offset` asking for up to 50 MiB, on `c`.
fn fetch_all(c: &mut RawClient, topic: &str, offset: i64) -> RawFetch {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let req = fetch_request(topic, 0, offset, 0, 1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(tname(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(50 << 20)])]);
    let resp: kafka_protocol::messages::FetchResponse = c.send(&req, 12);
    let p = &resp.responses[0].partitions[0];
    RawFetch {
        error_code: p.error_code,
        high_watermark: p.high_watermark,
        log_start_offset: p.log_start_offset,
        records: p.records.clone().unwrap_or_default(),
    }
}

#[test]
fn smaller_configured_limits_take_effect() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = BinaryBroker::spawn(
        &dir.path().join("data"),
        &[
            "--max-connections",
            "3",
            "--fetch-max-bytes",
            "4096",
            "--fsync",
            "interval",
        ],
        &dir.path().join("broker.log"),
    );
    // Three connections are served (each answers, so each holds a slot)...
    let mut served: Vec<RawClient> = (0..3)
        .map(|_| RawClient::connect(broker.kafka_addr))
        .collect();
    for c in &mut served {
        let resp = c.send(&ApiVersionsRequest::default(), 3);
        assert_eq!(resp.error_code, 0, "ApiVersions under the limit");
    }
    // ...the fourth is closed at once and counted.
    let mut fourth = RawClient::connect(broker.kafka_addr);
    let refused = fourth.try_send(&ApiVersionsRequest::default(), 3);
    assert!(
        refused.is_err(),
        "the fourth connection was served: {refused:?}"
    );
    assert_eq!(metric(&broker, "sluice_connections_rejected_total"), 1.0);
    assert_eq!(metric(&broker, "sluice_connections"), 3.0);

    // The three go on being served; fetches stop at 4096 record bytes, except that a first
    // batch larger than that comes whole.
    let c = &mut served[0];
    let topic = "capped";
    create(c, topic);
    let value = vec![b'v'; 1500];
    for i in 0..8 {
        let batch = encode_batch(&[&value], Compression::None, None);
        assert_eq!(raw_produce(c, topic, 0, batch, 1), (0, i), "batch {i}");
    }
    let large = vec![b'L'; 10_000];
    let batch = encode_batch(&[&large], Compression::None, None);
    assert_eq!(
        raw_produce(c, topic, 0, batch, 1),
        (0, 8),
        "the large batch"
    );

    let f = fetch_all(&mut served[1], topic, 0);
    assert_eq!((f.error_code, f.high_watermark), (0, 9));
    let n = f.records.len();
    eprintln!("--fetch-max-bytes 4096: a fetch asking for 50 MiB of ~13 KiB got {n} bytes");
    assert!(
        (1500..=4096).contains(&n),
        "{n} record bytes in a fetch capped at 4096"
    );
    let f = fetch_all(&mut served[2], topic, 8);
    assert!(
        f.records.len() > 10_000,
        "a first batch over the cap comes whole: {} bytes",
        f.records.len()
    );
    drop(served);
    drop(fourth);
    let mut broker = broker;
    let status = broker.sigterm_and_wait(Duration::from_secs(30));
    assert!(status.success(), "broker exit: {status}");
}
