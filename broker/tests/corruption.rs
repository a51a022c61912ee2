//! The corruption matrix: a stopped broker's data folder is damaged one way per test (torn,
//! flipped and zero-filled segment bytes, missing and garbled indexes, stray segment files,
//! damaged topic metadata, leader-epoch checkpoint, log start, Raft log and its side files),
//! then the broker binary starts on it. Each test checks what the broker must do: start (or
//! refuse, naming the file, where serving would be wrong), log a WARN naming the file it
//! dropped or rebuilt and count it in `sluice_recovery_actions_total{kind}`, never serve a
//! batch whose CRC fails, and serve the healthy partition whole. `docs/reliability.md` lists
//! the cases and outcomes.
//!
//! One folder is written once (two topics of one partition, 60 single-record batches each,
//! 1 KiB segments: six segments per partition) and copied for each test.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::records::Compression;

const HEALTHY: &str = "healthy";
const VICTIM: &str = "victim";
const RECORDS: i64 = 60;
const ARGS: &[&str] = &["--segment-bytes", "1024"];

fn value(topic: &str, offset: i64) -> Vec<u8> {
    format!("{topic}-{offset:04}-{}", "x".repeat(40)).into_bytes()
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
        for topic in [HEALTHY, VICTIM] {
            let req = CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(tname(topic))
                    .with_num_partitions(1)
                    .with_replication_factor(-1)])
                .with_timeout_ms(10_000);
            let resp: CreateTopicsResponse = c.send(&req, 7);
            assert_eq!(resp.topics[0].error_code, 0, "create {topic}");
            for i in 0..RECORDS {
                let batch = encode_batch(&[&value(topic, i)], Compression::None, None);
                assert_eq!(
                    raw_produce(&mut c, topic, 0, batch, -1),
                    (0, i),
                    "{topic} {i}"
                );
            }
        }
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

/// The records of `topic` are exactly its values at their offsets, for `offsets`.
fn assert_values(got: &[(i64, Vec<u8>)], topic: &str, offsets: std::ops::Range<i64>) {
    let want: Vec<(i64, Vec<u8>)> = offsets.map(|o| (o, value(topic, o))).collect();
    assert_eq!(got, want.as_slice(), "{topic}: records read");
}

/// The healthy topic is served whole.
fn assert_healthy(broker: &BinaryBroker) {
    let (got, err) = read_all(broker, HEALTHY);
    assert_eq!(err, None, "healthy topic: fetch error");
    assert_values(&got, HEALTHY, 0..RECORDS);
}

#[test]
fn template_has_several_segments_per_partition() {
    let case = case();
    assert!(
        case.segments(VICTIM).len() >= 4,
        "{:?}",
        case.segments(VICTIM)
    );
    let broker = case.start();
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
    for action in [
        "segment_truncated",
        "index_rebuilt",
        "corrupt_batch_refused",
    ] {
        assert_eq!(
            recovery_count(&broker, action),
            0,
            "{action} on a clean folder"
        );
    }
}

#[test]
fn truncated_tail_is_cut_to_the_last_whole_batch() {
    let case = case();
    let active = case.segments(VICTIM).pop().expect("active segment");
    let (pos, size) = *batches(&active).last().expect("a batch");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .expect("open");
    f.set_len((pos + size / 2) as u64).expect("truncate");
    drop(f);
    let broker = case.start();
    assert_reported(&broker, &active, "segment_truncated");
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS - 1);
}

#[test]
fn zero_filled_tail_is_cut() {
    let case = case();
    let active = case.segments(VICTIM).pop().expect("active segment");
    append(&active, &[0u8; 4096]);
    let broker = case.start();
    assert_reported(&broker, &active, "segment_truncated");
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
    // Appends continue at the old end.
    let mut c = RawClient::connect(broker.kafka_addr);
    let batch = encode_batch(&[b"after"], Compression::None, None);
    assert_eq!(raw_produce(&mut c, VICTIM, 0, batch, -1), (0, RECORDS));
}

#[test]
fn flipped_byte_in_the_last_batch_is_cut_like_a_torn_write() {
    let case = case();
    let active = case.segments(VICTIM).pop().expect("active segment");
    let (pos, size) = *batches(&active).last().expect("a batch");
    flip(&active, pos + size - 3);
    let broker = case.start();
    assert_reported(&broker, &active, "segment_truncated");
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS - 1);
}

#[test]
fn flipped_byte_mid_active_segment_is_kept_in_place_and_never_served() {
    let case = case();
    let active = case.segments(VICTIM).pop().expect("active segment");
    let base = base_of(&active);
    let all = batches(&active);
    assert!(all.len() >= 3, "the active segment has several batches");
    let (pos, size) = all[1];
    flip(&active, pos + size - 3);
    let broker = case.start();
    assert_reported(&broker, &active, "corrupt_batch_kept");
    assert_eq!(
        recovery_count(&broker, "segment_truncated"),
        0,
        "nothing is cut"
    );
    let (got, err) = read_all(&broker, VICTIM);
    assert_values(&got, VICTIM, 0..base + 1);
    assert_eq!(
        err,
        Some((base + 1, 2)),
        "the damaged batch is CORRUPT_MESSAGE"
    );
    assert!(recovery_count(&broker, "corrupt_batch_refused") >= 1);
    // The batches after it are served, and appends go on at the old end.
    let mut c = RawClient::connect(broker.kafka_addr);
    let f = raw_fetch(&mut c, VICTIM, 0, base + 2, 0, 1);
    assert_eq!(f.error_code, 0);
    assert_crcs(&f.records);
    let after: Vec<i64> = decoded_records(&f.records)
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(after.first(), Some(&(base + 2)));
    let batch = encode_batch(&[b"after"], Compression::None, None);
    assert_eq!(raw_produce(&mut c, VICTIM, 0, batch, -1), (0, RECORDS));
    assert_healthy(&broker);
}

#[test]
fn flipped_byte_in_a_closed_segment_is_never_served() {
    let case = case();
    let first = case.segments(VICTIM)[0].clone();
    let (pos, size) = batches(&first)[2];
    flip(&first, pos + size - 3);
    let broker = case.start();
    let (got, err) = read_all(&broker, VICTIM);
    // Offsets 0 and 1 are served, offset 2 is refused as corrupt (CORRUPT_MESSAGE), never
    // handed out.
    assert_values(&got, VICTIM, 0..2);
    assert_eq!(
        err,
        Some((2, 2)),
        "the damaged batch is refused with CORRUPT_MESSAGE"
    );
    assert_reported(&broker, &first, "corrupt_batch_refused");
    // Everything after it is still served.
    let mut c = RawClient::connect(broker.kafka_addr);
    let f = raw_fetch(&mut c, VICTIM, 0, 3, 0, 1);
    assert_eq!(f.error_code, 0);
    assert_crcs(&f.records);
    assert_eq!(decoded_records(&f.records)[0].offset, 3);
    assert_healthy(&broker);
}

#[test]
fn missing_indexes_of_a_closed_segment_are_rebuilt() {
    let case = case();
    let first = case.segments(VICTIM)[0].clone();
    std::fs::remove_file(first.with_extension("index")).expect("remove index");
    std::fs::remove_file(first.with_extension("timeindex")).expect("remove time index");
    let broker = case.start();
    assert_reported(&broker, &first, "index_rebuilt");
    assert!(
        first.with_extension("timeindex").exists(),
        "time index rewritten"
    );
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
}

#[test]
fn garbled_index_of_a_closed_segment_is_rebuilt() {
    let case = case();
    let second = case.segments(VICTIM)[1].clone();
    std::fs::write(second.with_extension("index"), b"not an index!").expect("garble");
    std::fs::write(second.with_extension("timeindex"), [0xffu8; 24]).expect("garble");
    let broker = case.start();
    assert_reported(&broker, &second, "index_rebuilt");
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
}

#[test]
fn stray_empty_segment_in_the_middle_is_removed_and_nothing_else() {
    let case = case();
    let stray = case.partition(VICTIM).join("00000000000000000001.log");
    std::fs::write(&stray, b"").expect("stray");
    let broker = case.start();
    assert_reported(&broker, &stray, "stray_segment_removed");
    assert!(!stray.exists());
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
}

#[test]
fn stray_segment_of_garbage_past_the_end_is_dropped() {
    let case = case();
    let stray = case.partition(VICTIM).join("00000000000000009999.log");
    std::fs::write(&stray, [0x5au8; 300]).expect("stray");
    let broker = case.start();
    assert_reported(&broker, &stray, "segment_removed");
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
    let mut c = RawClient::connect(broker.kafka_addr);
    let batch = encode_batch(&[b"after"], Compression::None, None);
    assert_eq!(raw_produce(&mut c, VICTIM, 0, batch, -1), (0, RECORDS));
}

#[test]
fn leftover_tmp_file_is_removed() {
    let case = case();
    let tmp = case.partition(VICTIM).join("leader-epoch-checkpoint.tmp");
    std::fs::write(&tmp, b"0\n1\n").expect("leftover");
    let broker = case.start();
    assert_reported(&broker, &tmp, "leftover_removed");
    assert!(!tmp.exists());
    assert_healthy(&broker);
}

#[test]
fn garbled_leader_epoch_checkpoint_is_rebuilt_from_the_batches() {
    let case = case();
    let file = case.partition(VICTIM).join("leader-epoch-checkpoint");
    std::fs::write(&file, b"0\n2\nbanana\n").expect("garble");
    let broker = case.start();
    assert_reported(&broker, &file, "epoch_cache_rebuilt");
    let text = std::fs::read_to_string(&file).expect("rewritten");
    assert!(text.starts_with("0\n"), "{text}");
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
}

#[test]
fn garbled_log_start_offset_is_ignored() {
    let case = case();
    let file = case.partition(VICTIM).join("log-start-offset");
    std::fs::write(&file, b"twelve\n").expect("garble");
    let broker = case.start();
    assert_reported(&broker, &file, "log_start_ignored");
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
}

#[test]
fn damaged_topics_json_refuses_to_start_naming_it() {
    let case = case();
    let file = case.data.join("topics.json");
    let mut b = std::fs::read(&file).expect("read");
    b.truncate(b.len() / 2);
    std::fs::write(&file, b).expect("damage");
    case.refused(&file);
}

#[test]
fn missing_topics_json_refuses_to_start_rather_than_delete_the_partitions() {
    let case = case();
    let file = case.data.join("topics.json");
    std::fs::remove_file(&file).expect("remove");
    case.refused(&file);
    assert!(
        case.segments(VICTIM).len() >= 4,
        "the partitions are still there"
    );
}

#[test]
fn torn_append_at_the_end_of_the_raft_log_is_cut() {
    let case = case();
    let file = case.cluster("raft.log");
    // Half a record: a length, a CRC and some of its bytes, as a crash mid-append leaves it.
    let mut half = 200u32.to_be_bytes().to_vec();
    half.extend_from_slice(&[0x11; 60]);
    append(&file, &half);
    let broker = case.start();
    assert_reported(&broker, &file, "raft_log_truncated");
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
}

#[test]
fn damaged_raft_log_record_followed_by_valid_ones_refuses_to_start() {
    let case = case();
    let file = case.cluster("raft.log");
    let b = std::fs::read(&file).expect("read");
    // The second record's payload: records after it are intact, so this is not a torn append.
    let first_len = u32::from_be_bytes(b[0..4].try_into().expect("4 bytes")) as usize;
    flip(&file, 8 + first_len + 8 + 10);
    let text = case.refused(&file);
    assert!(text.contains("not a torn append"), "{text}");
}

#[test]
fn garbled_raft_side_files_refuse_to_start_naming_them() {
    for name in ["vote.json", "snapshot.json"] {
        let case = case();
        let file = case.cluster(name);
        std::fs::write(&file, b"{\"garbled").expect("garble");
        case.refused(&file);
    }
}

#[test]
fn garbled_raft_commit_hint_is_ignored() {
    let case = case();
    let file = case.cluster("committed.json");
    std::fs::write(&file, b"{\"garbled").expect("garble");
    let broker = case.start();
    assert_reported(&broker, &file, "raft_hint_ignored");
    assert_healthy(&broker);
    let (got, err) = read_all(&broker, VICTIM);
    assert_eq!(err, None);
    assert_values(&got, VICTIM, 0..RECORDS);
}
