//! The corruption matrix, continued: the consumer groups' committed offsets (the segment of a
//! `__consumer_offsets` partition that holds them) and the idempotent-producer snapshot. Each
//! file is cut mid-record, has a byte flipped in the middle, gets garbage appended, is emptied
//! or removed; then the broker binary starts on the folder. A group must resume at every
//! acknowledged commit that is intact, or not be served at all (never an older or newer offset
//! without a WARN/ERROR naming the file); an idempotent producer's retry must be deduplicated
//! and its next batch accepted, whatever happened to the snapshot, since the state is rebuilt
//! from the batch headers as Kafka does. `docs/reliability.md` lists the cases and outcomes.
//!
//! One folder is written once and copied for each test: topic `idem` (1 KiB segments) with 20
//! single-record batches of one idempotent producer then 15 plain ones (so the producer's
//! state before the active segment is known only from its snapshot or from a scan of the
//! closed segments), group `victim-group` committing offsets 10, 20 and 30 of `idem` in three
//! requests, and `healthy-group` (another `__consumer_offsets` partition) committing 7.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, GroupId, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

const TOPIC: &str = "idem";
const ARGS: &[&str] = &["--segment-bytes", "1024"];
const PRODUCER: (i64, i16) = (4242, 0);
/// Batches of the idempotent producer (sequences 0..19, offsets 0..19), then plain ones.
const IDEMPOTENT: i64 = 20;
const PLAIN: i64 = 15;
const VICTIM_GROUP: &str = "victim-group";
const HEALTHY_GROUP: &str = "healthy-group";
const COMMITS: [i64; 3] = [10, 20, 30];
const HEALTHY_COMMIT: i64 = 7;

const COORDINATOR_NOT_AVAILABLE: i16 = 15;

fn value(i: i64) -> Vec<u8> {
    format!("{TOPIC}-{i:04}-{}", "x".repeat(40)).into_bytes()
}

fn idempotent_batch(seq: i32) -> bytes::Bytes {
    encode_batch(
        &[&value(i64::from(seq))],
        Compression::None,
        Some((PRODUCER.0, PRODUCER.1, seq)),
    )
}

/// The `__consumer_offsets` partition of a group (Kafka's `abs(hashCode) % 8`).
fn offsets_partition(group: &str) -> i32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % 8
}

fn commit(addr: std::net::SocketAddr, group: &str, offset: i64) -> i16 {
    let mut c = RawClient::connect(addr);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(tname(TOPIC))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::from_static_str("")))])]);
    let resp = c.send(&req, 8);
    resp.topics[0].partitions[0].error_code
}

/// A group's committed offset of `idem`-0 once its coordinator answers something other than
/// "still loading": `Ok(offset)` (-1: none) or `Err(error code)`.
fn committed(addr: std::net::SocketAddr, group: &str) -> Result<i64, i16> {
    wait_for(
        "the coordinator to finish loading",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let mut c = RawClient::connect(addr);
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(tname(TOPIC))
                    .with_partition_indexes(vec![0])]));
            let resp = c.send(&req, 7);
            match resp.error_code {
                // COORDINATOR_LOAD_IN_PROGRESS, or the partition not led yet.
                14 | 16 => None,
                0 => {
                    let p = &resp.topics[0].partitions[0];
                    Some(if p.error_code == 0 {
                        Ok(p.committed_offset)
                    } else {
                        Err(p.error_code)
                    })
                }
                e => Some(Err(e)),
            }
        },
    )
}

/// The folder every test starts from: written by a broker that was then stopped cleanly.
fn template() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("template dir");
        let log = dir.path().join("template.log");
        let data = dir.path().join("data");
        let mut broker = BinaryBroker::spawn(&data, ARGS, &log);
        let mut c = RawClient::connect(broker.kafka_addr);
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(tname(TOPIC))
                .with_num_partitions(1)
                .with_replication_factor(-1)])
            .with_timeout_ms(10_000);
        let resp: CreateTopicsResponse = c.send(&req, 7);
        assert_eq!(resp.topics[0].error_code, 0, "create {TOPIC}");
        for seq in 0..IDEMPOTENT as i32 {
            let got = raw_produce(&mut c, TOPIC, 0, idempotent_batch(seq), -1);
            assert_eq!(got, (0, i64::from(seq)), "idempotent batch {seq}");
        }
        for i in IDEMPOTENT..IDEMPOTENT + PLAIN {
            let batch = encode_batch(&[&value(i)], Compression::None, None);
            assert_eq!(
                raw_produce(&mut c, TOPIC, 0, batch, -1),
                (0, i),
                "plain {i}"
            );
        }
        assert_ne!(
            offsets_partition(VICTIM_GROUP),
            offsets_partition(HEALTHY_GROUP)
        );
        find_coordinator(broker.kafka_addr, VICTIM_GROUP);
        for offset in COMMITS {
            assert_eq!(commit(broker.kafka_addr, VICTIM_GROUP, offset), 0);
        }
        assert_eq!(commit(broker.kafka_addr, HEALTHY_GROUP, HEALTHY_COMMIT), 0);
        let status = broker.sigterm_and_wait(Duration::from_secs(30));
        assert!(status.success(), "template broker exit: {status}");
        dir
    })
    .path()
    .join("data")
}

fn case() -> Case {
    Case::new(template(), ARGS)
}

/// The segment holding `group`'s commits (the offsets topic's segments are 16 MiB: one).
fn offsets_segment(case: &Case, group: &str) -> PathBuf {
    let p = offsets_partition(group);
    let segs = segment_files(&case.data, "__consumer_offsets", p);
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs[0].clone()
}

/// The producer snapshot of `idem`'s active segment.
fn producer_snapshot(case: &Case) -> PathBuf {
    let active = case.segments(TOPIC).pop().expect("active segment");
    let snap = active.with_extension("snapshot");
    assert!(snap.exists(), "{} exists", snap.display());
    snap
}

fn cut_in_half(file: &std::path::Path) {
    let len = std::fs::metadata(file).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
}

/// The healthy group resumes at its commit.
fn assert_healthy_group(broker: &BinaryBroker) {
    assert_eq!(
        committed(broker.kafka_addr, HEALTHY_GROUP),
        Ok(HEALTHY_COMMIT)
    );
}

/// The idempotent producer after recovery: its retried last batch is answered with the
/// offset it got the first time and appended nowhere, its next batch is accepted at the log
/// end, and the topic holds every record once.
fn assert_producer_recovered(broker: &BinaryBroker) {
    let mut c = RawClient::connect(broker.kafka_addr);
    let last = IDEMPOTENT as i32 - 1;
    assert_eq!(
        raw_produce(&mut c, TOPIC, 0, idempotent_batch(last), -1),
        (0, i64::from(last)),
        "the retried batch is deduplicated"
    );
    let end = IDEMPOTENT + PLAIN;
    assert_eq!(
        raw_produce(&mut c, TOPIC, 0, idempotent_batch(last + 1), -1),
        (0, end),
        "the next sequence is accepted, not fenced"
    );
    let (got, err) = read_all(broker, TOPIC);
    assert_eq!(err, None);
    let text = |r: &ReadRecords| -> Vec<(i64, String)> {
        r.iter()
            .map(|(o, v)| (*o, String::from_utf8_lossy(v).into_owned()))
            .collect()
    };
    let mut want: ReadRecords = (0..end).map(|i| (i, value(i))).collect();
    want.push((end, value(IDEMPOTENT)));
    assert_eq!(text(&got), text(&want), "every record once, at its offset");
}

#[test]
fn template_commits_and_producer_state_survive_a_clean_restart() {
    let case = case();
    let broker = case.start();
    assert_eq!(committed(broker.kafka_addr, VICTIM_GROUP), Ok(30));
    assert_healthy_group(&broker);
    assert_producer_recovered(&broker);
    for kind in [
        "producer_snapshot_ignored",
        "segment_truncated",
        "log_end_lost",
    ] {
        assert_eq!(recovery_count(&broker, kind), 0, "{kind} on a clean folder");
    }
}

// ---------------------------------------------------------------------------------------------
// Committed offsets: the `__consumer_offsets` segment

#[test]
fn offsets_segment_cut_mid_commit_resumes_at_the_previous_commit() {
    let case = case();
    let file = offsets_segment(&case, VICTIM_GROUP);
    let (pos, size) = *batches(&file).last().expect("a commit batch");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    f.set_len((pos + size / 2) as u64).expect("truncate");
    drop(f);
    let broker = case.start();
    assert_reported(&broker, &file, "segment_truncated");
    // The commit was acknowledged and on disk at the clean shutdown: its loss is reported.
    assert!(recovery_count(&broker, "log_end_lost") >= 1);
    assert_eq!(committed(broker.kafka_addr, VICTIM_GROUP), Ok(20));
    assert_healthy_group(&broker);
}

#[test]
fn offsets_segment_with_a_flipped_byte_mid_log_is_not_served() {
    let case = case();
    let file = offsets_segment(&case, VICTIM_GROUP);
    let all = batches(&file);
    assert_eq!(all.len(), COMMITS.len(), "one batch per commit");
    let (pos, size) = all[1];
    flip(&file, pos + size - 3);
    let broker = case.start();
    assert_reported(&broker, &file, "corrupt_batch_kept");
    // The damaged commit may hold offsets no later batch supersedes: the group is not served
    // rather than resumed from a guess.
    assert_eq!(
        committed(broker.kafka_addr, VICTIM_GROUP),
        Err(COORDINATOR_NOT_AVAILABLE)
    );
    let log = strip_ansi(&broker.log());
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("cannot load the offsets partition")
            && l.contains(&file.display().to_string())),
        "no ERROR naming {}:\n{log}",
        file.display()
    );
    assert_healthy_group(&broker);
}

#[test]
fn offsets_segment_with_garbage_appended_keeps_every_commit() {
    let case = case();
    let file = offsets_segment(&case, VICTIM_GROUP);
    append(&file, &[0x5a; 333]);
    let broker = case.start();
    assert_reported(&broker, &file, "segment_truncated");
    assert_eq!(committed(broker.kafka_addr, VICTIM_GROUP), Ok(30));
    assert_healthy_group(&broker);
    assert_eq!(commit(broker.kafka_addr, VICTIM_GROUP, 40), 0);
    assert_eq!(committed(broker.kafka_addr, VICTIM_GROUP), Ok(40));
}

/// Nothing in a segment says it once held more: the end recorded at the clean shutdown
/// (`clean-shutdown-end`) is what shows the commits were there. One copy cannot bring them
/// back; the broker says so rather than serve the group as if it had never committed.
#[test]
fn offsets_segment_emptied_is_reported_as_lost_commits() {
    let case = case();
    let file = offsets_segment(&case, VICTIM_GROUP);
    std::fs::write(&file, b"").expect("empty");
    let broker = case.start();
    assert_reported(&broker, &file, "log_end_lost");
    assert_eq!(committed(broker.kafka_addr, VICTIM_GROUP), Ok(-1));
    assert_healthy_group(&broker);
    assert_eq!(commit(broker.kafka_addr, VICTIM_GROUP, 40), 0);
    assert_eq!(committed(broker.kafka_addr, VICTIM_GROUP), Ok(40));
}

#[test]
fn offsets_segment_missing_is_reported_as_lost_commits() {
    let case = case();
    let file = offsets_segment(&case, VICTIM_GROUP);
    std::fs::remove_file(&file).expect("remove");
    let broker = case.start();
    assert_reported(&broker, &file, "log_end_lost");
    assert_eq!(committed(broker.kafka_addr, VICTIM_GROUP), Ok(-1));
    assert_healthy_group(&broker);
}

// ---------------------------------------------------------------------------------------------
// Idempotent-producer state: the active segment's `.snapshot`

#[test]
fn producer_snapshot_cut_mid_record_is_ignored_and_rebuilt() {
    let case = case();
    let snap = producer_snapshot(&case);
    cut_in_half(&snap);
    let broker = case.start();
    assert_reported(&broker, &snap, "producer_snapshot_ignored");
    assert_producer_recovered(&broker);
}

#[test]
fn producer_snapshot_with_a_flipped_byte_is_ignored_and_rebuilt() {
    let case = case();
    let snap = producer_snapshot(&case);
    let len = std::fs::read(&snap).expect("read").len();
    flip(&snap, len / 2);
    let broker = case.start();
    assert_reported(&broker, &snap, "producer_snapshot_ignored");
    assert_producer_recovered(&broker);
}

/// Regression: the snapshot was plain JSON, and a changed digit still parsed. With the last
/// batch's sequence read as 18 instead of 19, the retry of batch 19 was appended a second
/// time (a duplicate the producer was promised would not happen).
#[test]
fn producer_snapshot_with_a_changed_sequence_digit_is_not_trusted() {
    let case = case();
    let snap = producer_snapshot(&case);
    let mut b = std::fs::read(&snap).expect("read");
    let text = String::from_utf8_lossy(&b).to_string();
    let key = "\"last_seq\":19";
    let at = text.rfind(key).expect("the last batch's sequence") + key.len() - 1;
    b[at] = b'8';
    std::fs::write(&snap, b).expect("write");
    let broker = case.start();
    assert_reported(&broker, &snap, "producer_snapshot_ignored");
    assert_producer_recovered(&broker);
}

#[test]
fn producer_snapshot_with_garbage_appended_is_ignored_and_rebuilt() {
    let case = case();
    let snap = producer_snapshot(&case);
    append(&snap, b"}garbage");
    let broker = case.start();
    assert_reported(&broker, &snap, "producer_snapshot_ignored");
    assert_producer_recovered(&broker);
}

#[test]
fn producer_snapshot_emptied_is_ignored_and_rebuilt() {
    let case = case();
    let snap = producer_snapshot(&case);
    std::fs::write(&snap, b"").expect("empty");
    let broker = case.start();
    assert_reported(&broker, &snap, "producer_snapshot_ignored");
    assert_producer_recovered(&broker);
}

#[test]
fn producer_snapshot_missing_is_rebuilt_from_the_batch_headers() {
    let case = case();
    let snap = producer_snapshot(&case);
    std::fs::remove_file(&snap).expect("remove");
    let broker = case.start();
    // Not damage: the snapshot is written best effort at a roll and removed by truncation.
    assert_eq!(recovery_count(&broker, "producer_snapshot_ignored"), 0);
    assert_producer_recovered(&broker);
}
