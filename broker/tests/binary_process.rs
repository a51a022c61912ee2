//! The `sluice-broker` binary as a process: SIGKILL mid-produce loses no acknowledged record
//! (fsync=always), SIGTERM exits 0 after a clean shutdown, bad settings stop it with a message
//! naming them.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::{Producer, PurgeConfig};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn sigkill_mid_produce_with_fsync_always_loses_no_acknowledged_record() {
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let mut broker = BinaryBroker::spawn(
        data.path(),
        &["--fsync", "always"],
        &logs.path().join("first.log"),
    );
    let topic = topic_name("sigkill");
    let p = rd_producer(
        &broker.bootstrap(),
        &[
            ("acks", "all"),
            ("linger.ms", "1"),
            ("message.timeout.ms", "5000"),
            ("retries", "0"),
        ],
    );
    // Keep many requests in flight, and kill once enough have been acknowledged.
    let t0 = Instant::now();
    let mut sent = 0u64;
    while t0.elapsed() < Duration::from_secs(20) {
        for _ in 0..500 {
            rd_send(&p, &topic, Some(0), sent);
            sent += 1;
        }
        p.poll(Duration::from_millis(1));
        if p.context().acked.lock().expect("lock").len() >= 5000 {
            break;
        }
    }
    broker.kill9();
    let killed_at = Instant::now();
    // Delivery reports already received (or in the socket) still count as acknowledged.
    while killed_at.elapsed() < Duration::from_millis(500) {
        p.poll(Duration::from_millis(50));
    }
    p.purge(PurgeConfig::default().queue().inflight());
    p.poll(Duration::from_millis(100));
    let acked: BTreeMap<i64, u64> = p
        .context()
        .acked
        .lock()
        .expect("lock")
        .iter()
        .map(|(idx, _, off)| (*off, *idx))
        .collect();
    drop(p);
    assert!(
        acked.len() >= 100,
        "only {} records acknowledged before the kill ({sent} sent); the test proves little",
        acked.len()
    );
    eprintln!(
        "{sent} sent, {} acknowledged before SIGKILL, {} failed (unacknowledged in flight)",
        acked.len(),
        sent as usize - acked.len()
    );

    let broker2 = BinaryBroker::spawn(
        data.path(),
        &["--fsync", "always"],
        &logs.path().join("second.log"),
    );
    let bs = broker2.bootstrap();
    let (_, high) = rd_watermarks(&bs, &topic, 0);
    let max_acked = *acked.keys().last().expect("acked");
    assert!(
        high > max_acked,
        "log end {high} after the restart, but offset {max_acked} was acknowledged"
    );
    let got = rd_consume_from_start(&bs, &topic, &[0], high as usize, LONG);
    let by_offset: BTreeMap<i64, &Consumed> = got.iter().map(|c| (c.offset, c)).collect();
    for (off, idx) in &acked {
        let c = by_offset
            .get(off)
            .unwrap_or_else(|| panic!("acknowledged record {idx} at offset {off} is gone"));
        assert_eq!(c.index(), *idx, "offset {off} holds another record");
        assert_eq!(
            c.record,
            test_record(*idx),
            "record {idx} at offset {off} changed"
        );
    }
    for c in &got {
        assert_eq!(
            c.record,
            test_record(c.index()),
            "corrupt record at offset {}",
            c.offset
        );
    }
    drop(broker);
}

#[test]
fn sigterm_shuts_down_cleanly_with_exit_0_and_keeps_the_data() {
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let mut broker = BinaryBroker::spawn(data.path(), &[], &logs.path().join("a.log"));
    assert!(
        strip_ansi(&broker.log()).contains("INFO sluice_broker: listening kafka="),
        "startup line: {}",
        broker.log()
    );
    assert!(
        !broker.log().contains('\u{1b}'),
        "the broker writes ANSI colour codes to a log that is not a terminal: {:?}",
        broker.log().lines().next()
    );
    let (health, _) = http_get(broker.http_addr, "/healthz").expect("GET /healthz");
    assert_eq!(health, 200);
    let topic = topic_name("sigterm");
    rd_produce_all(
        &broker.bootstrap(),
        &topic,
        Some(0),
        0..50,
        &[("acks", "all")],
    );
    let (code, metrics) = http_get(broker.http_addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "GET /metrics");
    assert!(
        metrics.contains("# TYPE"),
        "/metrics is not Prometheus text: {metrics:.200}"
    );
    let status = broker.sigterm_and_wait(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGTERM; log:\n{}",
        broker.log()
    );

    let broker = BinaryBroker::spawn(data.path(), &[], &logs.path().join("b.log"));
    let got = rd_consume_from_start(&broker.bootstrap(), &topic, &[0], 50, LONG);
    assert_records_exact(&got, 0..50);
}

/// Runs the binary expecting it to refuse to start; returns its combined output.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().expect("data dir");
    let mut all = broker_args(data.path(), args);
    all.remove(0);
    let mut cmd = scrubbed_broker_command();
    cmd.args(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn broker");
    let status = wait_for(
        "the broker to refuse its settings and exit",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || child.try_wait().expect("try_wait"),
    );
    let out = child.wait_with_output().expect("collect output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !status.success(),
        "broker started with {args:?} {env:?}:\n{text}"
    );
    text
}

#[test]
fn bad_settings_stop_the_binary_with_a_message_naming_them() {
    let out = refused(&[], &[("SLUICE_NO_SUCH_SETTING", "1")]);
    assert!(out.contains("SLUICE_NO_SUCH_SETTING"), "message: {out}");
    let out = refused(&["--fsync", "sometimes"], &[]);
    assert!(out.contains("fsync"), "message: {out}");
    let out = refused(&[], &[("SLUICE_RETENTION_MS", "soon")]);
    assert!(out.to_lowercase().contains("retention"), "message: {out}");
}
