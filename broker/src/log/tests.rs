//! Storage engine tests: real files in a temp dir, real fsync, real v2 batches built with the
//! kafka-protocol encoder, and a crash test that SIGKILLs a child process.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as KTimestampType,
};

use super::*;
use super::{batch, segment};

fn now() -> i64 {
    super::now_ms()
}

fn cfg() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        ..LogConfig::default()
    }
}

struct B {
    pid: i64,
    epoch: i16,
    seq: i32,
    n: usize,
    ts: i64,
    tag: String,
    compression: Compression,
    /// (key, value) of each record when set; otherwise `k{i}` and `{tag}-{i}`.
    kv: Vec<(Option<String>, Option<String>)>,
    /// A batch of a transaction.
    txn: bool,
}

impl B {
    fn new(n: usize) -> Self {
        B {
            pid: -1,
            epoch: -1,
            seq: -1,
            n,
            ts: now(),
            tag: "r".into(),
            compression: Compression::None,
            kv: Vec::new(),
            txn: false,
        }
    }
    /// One batch of these (key, value) records.
    fn keyed(records: &[(Option<&str>, Option<&str>)]) -> Self {
        let own = |s: &Option<&str>| s.map(str::to_string);
        B {
            kv: records.iter().map(|(k, v)| (own(k), own(v))).collect(),
            ..B::new(records.len())
        }
    }
    fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Self {
        B {
            pid,
            epoch,
            seq,
            ..B::new(n)
        }
    }
    fn ts(mut self, ts: i64) -> Self {
        self.ts = ts;
        self
    }
    fn tag(mut self, tag: &str) -> Self {
        self.tag = tag.into();
        self
    }
    fn build(&self) -> Bytes {
        let records: Vec<Record> = (0..self.n)
            .map(|i| Record {
                transactional: self.txn,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: self.pid,
                producer_epoch: self.epoch,
                timestamp_type: KTimestampType::Creation,
                offset: i as i64,
                // Non-idempotent batches carry base sequence -1; the encoder keeps records in
                // one batch while offset - sequence stays constant.
                sequence: self.seq + i as i32,
                timestamp: self.ts + i as i64,
                key: match self.kv.get(i) {
                    Some((k, _)) => k.clone().map(Bytes::from),
                    None => Some(Bytes::from(format!("k{i}"))),
                },
                value: match self.kv.get(i) {
                    Some((_, v)) => v.clone().map(Bytes::from),
                    None => Some(Bytes::from(format!("{}-{i}", self.tag))),
                },
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: self.compression,
            },
        )
        .expect("encode");
        buf.freeze()
    }
}

fn appended(o: AppendOutcome) -> AppendInfo {
    match o {
        AppendOutcome::Appended(i) => i,
        AppendOutcome::Duplicate(i) => panic!("unexpected duplicate {i:?}"),
    }
}

/// Decodes every record of `bytes` (checking CRCs), returning (offset, value).
fn decode_all(bytes: &Bytes) -> Vec<(i64, String)> {
    let mut b = bytes.clone();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = batch::parse_header(&bytes[pos..]).expect("header");
        batch::check_crc(&bytes[pos..pos + h.size]).expect("crc");
        pos += h.size;
    }
    for set in RecordBatchDecoder::decode_all(&mut b).expect("decode") {
        for r in set.records {
            let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
            out.push((r.offset, v.unwrap_or_default()));
        }
    }
    out
}

fn read_all(log: &PartitionLog) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut off = log.log_start_offset();
    while off < log.high_watermark() {
        let r = log.read(off, 1 << 20).expect("read");
        assert!(!r.records.is_empty(), "empty read at {off}");
        let recs = decode_all(&r.records);
        let last = recs.last().expect("records").0;
        out.extend(recs.into_iter().filter(|(o, _)| *o >= off));
        off = last + 1;
    }
    out
}

#[test]
fn round_trip_assigns_offsets_across_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    let original = B::new(3).tag("a").build();
    let a = appended(log.append(original.clone()).unwrap());
    let b = appended(log.append(B::new(2).tag("b").build()).unwrap());
    assert_eq!((a.base_offset, a.last_offset), (0, 2));
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.high_watermark(), 5);
    let got = read_all(&log);
    let want: Vec<(i64, String)> = vec![
        (0, "a-0".into()),
        (1, "a-1".into()),
        (2, "a-2".into()),
        (3, "b-0".into()),
        (4, "b-1".into()),
    ];
    assert_eq!(got, want);
    // Stored as received apart from the base offset and leader epoch.
    let r = log.read(0, 1).unwrap();
    let first = &r.records[..original.len()];
    assert_eq!(&first[16..], &original[16..]);
}

#[test]
fn a_multi_batch_append_stores_each_batch_as_received_but_its_offset_and_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    log.append(B::new(2).tag("x").build()).unwrap();
    let batches = [
        B::new(3).tag("a").build(),
        B::new(1).tag("b").build(),
        B::new(4).tag("c").build(),
    ];
    let payload: Vec<u8> = batches.iter().flat_map(|b| b.iter().copied()).collect();
    let i = appended(log.append(Bytes::from(payload)).unwrap());
    assert_eq!((i.base_offset, i.last_offset), (2, 9));
    let stored = log.read(2, 1 << 20).unwrap().records;
    let mut pos = 0;
    for (b, base) in batches.iter().zip([2i64, 5, 6]) {
        let s = &stored[pos..pos + b.len()];
        assert_eq!(
            &s[16..],
            &b[16..],
            "batch at {base}: only the first 16 bytes change"
        );
        let h = batch::parse_header(s).unwrap();
        assert_eq!(h.base_offset, base);
        assert!(batch::check_crc(s).is_ok());
        pos += b.len();
    }
    assert_eq!(pos, stored.len());
    let values: Vec<String> = read_all(&log).into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        ["x-0", "x-1", "a-0", "a-1", "a-2", "b-0", "c-0", "c-1", "c-2", "c-3"]
    );
}

#[tokio::test]
async fn a_segment_starts_writing_back_what_was_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seg = segment::Segment::create(tmp.path(), 0).unwrap();
    let records = B::new(3).tag("w").build();
    let headers = batch::validate_payload(&records, u32::MAX).unwrap();
    seg.append(&[&records[..]], &headers, 4096, 0).unwrap();
    // From the start, from the middle of the batch, and from the end (nothing to write).
    for from in [0, 10, seg.size] {
        seg.start_writeback(from)
            .unwrap_or_else(|e| panic!("writeback from {from}: {e}"));
    }
    // The log under `fsync: always` takes the same path on every append.
    let log = PartitionLog::open(
        tmp.path().join("t-0"),
        LogConfig {
            fsync: FsyncPolicy::Always,
            ..cfg()
        },
    )
    .unwrap();
    log.append(B::new(2).tag("a").build()).unwrap();
    let last = appended(log.append(B::new(2).tag("b").build()).unwrap()).last_offset;
    tokio::time::timeout(Duration::from_secs(10), log.wait_durable(last))
        .await
        .expect("the group commit fsyncs")
        .unwrap();
    let values: Vec<String> = read_all(&log).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, ["a-0", "a-1", "b-0", "b-1"]);
}

#[test]
fn nothing_becomes_durable_after_a_failed_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    // `interval` with a ticker that never comes: what is appended waits for a flush.
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    log.append(B::new(2).tag("a").build()).unwrap();
    assert_eq!(log.durable_offset(), 0);
    log.fail_for_test();
    assert!(log.has_failed());
    let refused = log.append(B::new(1).tag("b").build()).unwrap_err();
    assert!(refused.to_string().contains("fsync failed"), "{refused}");
    // A later flush (the shutdown's) may find the file clean after the kernel dropped what
    // it could not write: it must not call the records durable.
    let err = log.flush().unwrap_err();
    assert!(err.to_string().contains("earlier fsync failed"), "{err}");
    assert_eq!(
        log.durable_offset(),
        0,
        "records became durable after a failed fsync"
    );
}

#[test]
fn compressed_batches_are_stored_as_received() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    let codecs = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut sent = Vec::new();
    for (i, c) in codecs.iter().enumerate() {
        let b = B {
            compression: *c,
            ..B::new(5).tag(&format!("z{i}")).ts(1_000 * (i as i64 + 1))
        }
        .build();
        sent.push(b.clone());
        appended(log.append(b).unwrap());
    }
    let r = log.read(0, 1 << 20).unwrap();
    let mut pos = 0;
    for b in &sent {
        assert_eq!(&r.records[pos + 16..pos + b.len()], &b[16..]);
        pos += b.len();
    }
    let all = decode_all(&r.records);
    assert_eq!(all.len(), 20);
    assert_eq!(all[17], (17, "z3-2".to_string()));
    // The timestamp lookup decompresses the batch to find the exact record, for every codec.
    for i in 0..4i64 {
        let ts = 1_000 * (i + 1) + 2;
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            Some((5 * i + 2, ts)),
            "{:?}",
            codecs[i as usize]
        );
    }
}

/// A producer can send a batch whose CRC is right but whose record count is absurd (the count
/// is only checked against the last offset delta). Looking into it must cost its bytes, not an
/// allocation of 2^31 records (`kafka-protocol`'s decoder reserves the count up front).
#[test]
fn a_batch_claiming_billions_of_records_is_looked_into_without_allocating_them() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    let mut b = BytesMut::from(&B::new(2).ts(5_000).build()[..]);
    b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes()); // last offset delta
    b[57..61].copy_from_slice(&i32::MAX.to_be_bytes()); // record count
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let info = appended(log.append(b.freeze()).unwrap());
    assert_eq!(info.last_offset, i64::from(i32::MAX) - 1);
    // The two real records are found; past them the walk stops at the batch end.
    assert_eq!(log.offset_for_timestamp(5_001).unwrap(), Some((1, 5_001)));
    assert_eq!(
        log.offset_for_timestamp(5_002).unwrap(),
        None,
        "max timestamp is 5_001"
    );
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((1, 5_001)));
}

#[test]
fn reads_return_whole_batches_and_at_least_one() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    let sizes: Vec<usize> = (0..5)
        .map(|i| {
            let b = B::new(4).tag(&format!("b{i}")).build();
            let n = b.len();
            log.append(b).unwrap();
            n
        })
        .collect();
    // Offset in the middle of batch 1 starts at batch 1's first record.
    let r = log.read(6, 1).unwrap();
    assert_eq!(
        r.records.len(),
        sizes[1],
        "one whole batch even though max_bytes=1"
    );
    assert_eq!(decode_all(&r.records)[0].0, 4);
    // max_bytes fitting two and a half batches returns two.
    let r = log.read(4, sizes[1] + sizes[2] + sizes[3] / 2).unwrap();
    assert_eq!(r.records.len(), sizes[1] + sizes[2]);
    // At the log end: empty. Past it: out of range.
    assert!(log.read(20, 100).unwrap().records.is_empty());
    assert!(matches!(
        log.read(21, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(-1, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn invalid_payloads_are_refused_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        tmp.path().join("t-0"),
        LogConfig {
            max_message_bytes: 200,
            ..cfg()
        },
    )
    .unwrap();
    let good = B::new(1).build();
    // Bad CRC.
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(matches!(
        log.append(Bytes::from(bad)),
        Err(LogError::CorruptBatch { .. })
    ));
    // Partial batch.
    assert!(matches!(
        log.append(good.slice(..good.len() - 3)),
        Err(LogError::CorruptBatch { .. })
    ));
    // Trailing garbage after a whole batch.
    let mut tail = good.to_vec();
    tail.extend_from_slice(&[0u8; 10]);
    assert!(log.append(Bytes::from(tail)).is_err());
    // Wrong magic.
    let mut m = good.to_vec();
    m[16] = 1;
    assert!(log.append(Bytes::from(m)).is_err());
    // Too large.
    assert!(matches!(
        log.append(B::new(20).build()),
        Err(LogError::MessageTooLarge { .. })
    ));
    assert!(log.append(Bytes::new()).is_err());
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    appended(log.append(good).unwrap());
}

#[test]
fn restart_keeps_data_and_continues_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    {
        let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
        for i in 0..10 {
            log.append(B::new(3).tag(&format!("x{i}")).build()).unwrap();
        }
        log.flush().unwrap();
    }
    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(log.high_watermark(), 30);
    let all = read_all(&log);
    assert_eq!(all.len(), 30);
    assert_eq!(all[29], (29, "x9-2".to_string()));
    let i = appended(log.append(B::new(1).build()).unwrap());
    assert_eq!(i.base_offset, 30);
}

/// Damages one byte of a file in place (as a disk could).
fn flip_byte(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x55], at).unwrap();
}

fn active_log_file(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn torn_tail_is_truncated_to_the_committed_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let committed;
    {
        let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
        for i in 0..3 {
            log.append(B::new(2).tag(&format!("c{i}")).build()).unwrap();
        }
        log.flush().unwrap();
        committed = read_all(&log);
    }
    let path = active_log_file(&dir);
    let good_len = std::fs::metadata(&path).unwrap().len();
    // Half of a real next batch (as a crash mid-write leaves it), then garbage.
    let mut next = B::new(2).tag("torn").build().to_vec();
    next[0..8].copy_from_slice(&6i64.to_be_bytes());
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&next[..next.len() / 2], good_len).unwrap();
    drop(f);

    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(log.log_end_offset(), 6);
    assert_eq!(read_all(&log), committed);
    assert_eq!(
        appended(log.append(B::new(1).build()).unwrap()).base_offset,
        6
    );
    drop(log);

    // Pure garbage after the good data (e.g. zeroed blocks) is cut too.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = f.metadata().unwrap().len();
    f.write_all_at(&[0u8; 4096], len).unwrap();
    drop(f);
    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 7);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
}

#[test]
fn corrupt_crc_in_the_middle_of_the_active_segment_is_kept_but_never_served() {
    // Intact batches after the damaged one mean it was damaged after it was written, not
    // torn: cutting there would drop them (maybe acknowledged), so it stays, and reads refuse it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut sizes = Vec::new();
    {
        let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
        for i in 0..5 {
            let b = B::new(2).tag(&format!("m{i}")).build();
            sizes.push(b.len() as u64);
            log.append(b).unwrap();
        }
        log.flush().unwrap();
    }
    let path = active_log_file(&dir);
    // Flip one byte inside batch 2's records.
    let at = sizes[0] + sizes[1] + 70;
    flip_byte(&path, at);

    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        sizes.iter().sum::<u64>()
    );
    // A read from before it stops before it; a read at it is CORRUPT_MESSAGE; after it, served.
    let head = log.read(0, 1 << 20).unwrap().records;
    let vals: Vec<String> = decode_all(&head).into_iter().map(|r| r.1).collect();
    assert_eq!(vals, ["m0-0", "m0-1", "m1-0", "m1-1"]);
    let err = log.read(4, 1 << 20).unwrap_err();
    assert!(matches!(err, LogError::CorruptBatch { .. }), "{err:?}");
    assert_eq!(err.kafka_code(), 2);
    let tail = log.read(6, 1 << 20).unwrap().records;
    let vals: Vec<String> = decode_all(&tail).into_iter().map(|r| r.1).collect();
    assert_eq!(vals, ["m3-0", "m3-1", "m4-0", "m4-1"]);
    // Appends go on after the last batch.
    assert_eq!(
        appended(log.append(B::new(1).build()).unwrap()).base_offset,
        10
    );
}

#[test]
fn corrupt_crc_in_the_last_batch_is_cut_like_a_torn_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut sizes = Vec::new();
    {
        let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
        for i in 0..3 {
            let b = B::new(2).tag(&format!("m{i}")).build();
            sizes.push(b.len() as u64);
            log.append(b).unwrap();
        }
        log.flush().unwrap();
    }
    let path = active_log_file(&dir);
    let at = sizes[0] + sizes[1] + 70;
    flip_byte(&path, at);

    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    let vals: Vec<String> = read_all(&log).into_iter().map(|r| r.1).collect();
    assert_eq!(vals, ["m0-0", "m0-1", "m1-0", "m1-1"]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), sizes[0] + sizes[1]);
}

#[test]
fn torn_closed_segment_drops_everything_after_it() {
    // A crash right after a roll, before the roll's queued fsync, can leave the closed
    // segment short while the new one already exists.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    {
        let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
        for i in 0..40 {
            log.append(B::new(2).tag(&format!("c{i}")).build()).unwrap();
        }
        log.flush().unwrap();
        assert!(log.segment_count() >= 3);
    }
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    let victim = &logs[logs.len() - 2];
    let len = std::fs::metadata(victim).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(victim)
        .unwrap();
    f.set_len(len - 10).unwrap();
    drop(f);

    let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
    assert!(!logs[logs.len() - 1].exists(), "later segment removed");
    assert_eq!(log.segment_count(), logs.len() - 1);
    let all = read_all(&log);
    assert_eq!(all.len() as i64, log.log_end_offset());
    for (i, (o, _)) in all.iter().enumerate() {
        assert_eq!(*o, i as i64);
    }
    // The cut segment is the active one now and takes new appends.
    let info = appended(log.append(B::new(1).build()).unwrap());
    assert_eq!(info.base_offset, all.len() as i64);
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1000,
        index_interval_bytes: 150,
        ..cfg()
    }
}

#[test]
fn segments_roll_by_size_with_20_digit_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
    for i in 0..40 {
        log.append(B::new(2).tag(&format!("s{i}")).build()).unwrap();
    }
    assert!(log.segment_count() > 3, "{}", log.segment_count());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"00000000000000000000.log".to_string()));
    for n in names.iter().filter(|n| n.ends_with(".log")) {
        let size = std::fs::metadata(dir.join(n)).unwrap().len();
        assert!(size <= 1000, "{n} is {size} bytes");
        assert_eq!(n.len(), 24);
    }
    assert_eq!(read_all(&log).len(), 80);
    // Every offset reads back from the right segment.
    for off in 0..80 {
        let r = log.read(off, 1).unwrap();
        let recs = decode_all(&r.records);
        assert!(recs.iter().any(|(o, _)| *o == off), "offset {off}");
    }
}

#[test]
fn closed_segment_lookups_from_index_files_match_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seg = segment::Segment::create(tmp.path(), 100).unwrap();
    let mut off = 100;
    for i in 0..50 {
        let b = B::new(3).ts(1_000 + 10 * i).build();
        let mut buf = b.to_vec();
        let mut h = batch::parse_header(&buf).unwrap();
        h.base_offset = off;
        batch::rewrite_offset_and_epoch(&mut buf, off, 0);
        seg.append(&[&buf[..]], &[(0, h)], 200, now()).unwrap();
        off = h.next_offset();
    }
    let probe = |seg: &segment::Segment| -> Vec<u64> {
        (90..off + 5)
            .map(|o| seg.lookup(o))
            .chain((900..1_600).step_by(7).map(|t| seg.time_lookup(t).0))
            .collect()
    };
    let in_memory = probe(&seg);
    assert!(in_memory.iter().any(|p| *p > 0));
    seg.seal().unwrap();
    assert_eq!(probe(&seg), in_memory);
    assert!(seg.index_bytes() > 0);
}

#[test]
fn segments_roll_by_age() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        tmp.path().join("t-0"),
        LogConfig {
            segment_ms: 0,
            ..cfg()
        },
    )
    .unwrap();
    for _ in 0..3 {
        log.append(B::new(1).build()).unwrap();
    }
    assert_eq!(log.segment_count(), 3);
}

#[test]
fn damaged_or_missing_indexes_are_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    {
        let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
        for i in 0..40 {
            log.append(B::new(2).tag(&format!("i{i}")).ts(1000 * i).build())
                .unwrap();
        }
        log.flush().unwrap();
    }
    let index_files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "index" || e == "timeindex")
        })
        .collect();
    let before: Vec<Vec<u8>> = index_files
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(before.iter().any(|b| !b.is_empty()));
    // Delete the first segment's index, garble the second's, truncate the third's time index.
    let mut sorted = index_files.clone();
    sorted.sort();
    std::fs::remove_file(&sorted[0]).unwrap();
    std::fs::write(&sorted[2], b"garbage").unwrap();
    std::fs::write(&sorted[5], b"").unwrap();

    let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
    for (p, b) in index_files.iter().zip(&before) {
        assert_eq!(&std::fs::read(p).unwrap(), b, "{} rebuilt", p.display());
    }
    for off in 0..80 {
        let recs = decode_all(&log.read(off, 1).unwrap().records);
        assert!(recs.iter().any(|(o, _)| *o == off), "offset {off}");
    }
    assert_eq!(
        log.offset_for_timestamp(20_000).unwrap(),
        Some((40, 20_000))
    );
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), small_segments()).unwrap();
    for i in 0..30 {
        // Batch i: records at 10_000 + 100*i and +1.
        log.append(B::new(2).ts(10_000 + 100 * i).build()).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 10_000)));
    assert_eq!(
        log.offset_for_timestamp(10_501).unwrap(),
        Some((11, 10_501))
    );
    assert_eq!(
        log.offset_for_timestamp(10_502).unwrap(),
        Some((12, 10_600))
    );
    assert_eq!(
        log.offset_for_timestamp(12_901).unwrap(),
        Some((59, 12_901))
    );
    assert_eq!(log.offset_for_timestamp(12_902).unwrap(), None);
}

fn log_file_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log").and_then(|b| b.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    bases
}

#[test]
fn delete_records_moves_the_log_start_durably_and_drops_whole_segments_below_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
    for i in 0..30 {
        // Batch i: offsets 2i and 2i+1, timestamps 10_000 + 100*i and +1.
        log.append(B::new(2).ts(10_000 + 100 * i).build()).unwrap();
    }
    assert_eq!(log.high_watermark(), 60);
    let before = log_file_bases(&dir);
    assert!(before.len() >= 3, "{before:?}");

    // Above the high watermark, or negative other than -1: refused, nothing changes.
    for bad in [61, -2] {
        assert!(
            matches!(
                log.delete_records(bad),
                Err(LogError::OffsetOutOfRange {
                    start: 0,
                    end: 60,
                    ..
                })
            ),
            "{bad}"
        );
    }
    assert_eq!(log.log_start_offset(), 0);

    // Into the middle of a batch: the start is exactly there.
    assert_eq!(log.delete_records(25).unwrap(), 25);
    assert_eq!(log.log_start_offset(), 25);
    let after = log_file_bases(&dir);
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    assert!(
        after[0] <= 25 && after[1] > 25,
        "only whole segments below 25 go: {after:?}"
    );
    assert!(matches!(
        log.read(24, 1 << 20),
        Err(LogError::OffsetOutOfRange { start: 25, .. })
    ));
    let left = read_all(&log);
    assert_eq!(left.len(), 35);
    assert_eq!(left[0].0, 25);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((25, 11_201)));
    // A lower offset changes nothing.
    assert_eq!(log.delete_records(3).unwrap(), 25);

    // Durable: a reopened log starts at 25 too.
    drop(log);
    let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
    assert_eq!(log.log_start_offset(), 25);
    assert_eq!(read_all(&log).len(), 35);

    // -1 is the high watermark: everything goes; appends continue at the end.
    assert_eq!(log.delete_records(-1).unwrap(), 60);
    assert_eq!(
        log_file_bases(&dir).len(),
        1,
        "only the active segment is left"
    );
    let info = appended(log.append(B::new(1).tag("after").build()).unwrap());
    assert_eq!((info.base_offset, info.log_start_offset), (60, 60));
    assert_eq!(read_all(&log), vec![(60, "after-0".to_string())]);
    // Once the active segment has rolled, retention removes the one wholly below the start.
    for _ in 0..20 {
        log.append(B::new(2).build()).unwrap();
    }
    assert!(log_file_bases(&dir).len() > 1);
    let first = log_file_bases(&dir)[0];
    assert!(first < 60);
    assert!(log.enforce_retention(now()).unwrap() >= 1);
    assert!(log_file_bases(&dir)[0] >= 60);
    assert_eq!(log.log_start_offset(), 60);
}

/// One batch whose records carry exactly `timestamps`.
fn batch_with_timestamps(timestamps: &[i64]) -> Bytes {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, ts)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: KTimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: *ts,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

#[test]
fn max_timestamp_offset_is_the_first_record_carrying_the_largest_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
    assert_eq!(log.max_timestamp_offset().unwrap(), None, "empty log");
    // 40 batches of 3 records over several 1000-byte segments. Batch 17 holds the maximum
    // (90_000) in its middle record, and batch 31 (a later segment) carries it again: the
    // first one wins. Other timestamps are out of order on purpose.
    let mut base = 0i64;
    let mut expected = None;
    for i in 0..40i64 {
        let ts = match i {
            17 => vec![50_000, 90_000, 90_000],
            31 => vec![90_000, 1, 2],
            _ => vec![10_000 + (i * 7919) % 5000, 20_000 - i, 30_000 + i],
        };
        if i == 17 {
            expected = Some((base + 1, 90_000));
        }
        appended(log.append(batch_with_timestamps(&ts)).unwrap());
        base += 3;
    }
    assert!(log.segment_count() >= 4, "{} segments", log.segment_count());
    assert_eq!(log.max_timestamp_offset().unwrap(), expected);
    drop(log);
    // The per-segment maximum is rebuilt at recovery.
    let log = PartitionLog::open(dir, small_segments()).unwrap();
    assert_eq!(log.max_timestamp_offset().unwrap(), expected);
    // A new, larger timestamp in the active segment takes over.
    appended(log.append(batch_with_timestamps(&[5, 95_000])).unwrap());
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((121, 95_000)));
}

#[test]
fn log_append_time_restamps_and_keeps_crc_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        tmp.path().join("t-0"),
        LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..cfg()
        },
    )
    .unwrap();
    let before = now();
    let i = appended(log.append(B::new(3).ts(5).build()).unwrap());
    assert!(i.log_append_time >= before);
    let r = log.read(0, 1 << 20).unwrap();
    let h = batch::parse_header(&r.records).unwrap();
    assert_eq!(h.max_timestamp, i.log_append_time);
    assert_ne!(h.attributes & (1 << 3), 0);
    batch::check_crc(&r.records).unwrap();
    let mut b = r.records.clone();
    let set = RecordBatchDecoder::decode(&mut b).unwrap();
    assert!(set
        .records
        .iter()
        .all(|r| r.timestamp_type == KTimestampType::LogAppend));
}

#[test]
fn retention_by_time_deletes_old_closed_segments_only() {
    let tmp = tempfile::tempdir().unwrap();
    let day = 24 * 3600 * 1000;
    let c = LogConfig {
        retention_ms: 7 * day,
        ..small_segments()
    };
    let log = PartitionLog::open(tmp.path().join("t-0"), c).unwrap();
    let t = now();
    for _ in 0..20 {
        log.append(B::new(2).ts(t - 10 * day).build()).unwrap();
    }
    let old_segments = log.segment_count();
    for _ in 0..20 {
        log.append(B::new(2).ts(t).build()).unwrap();
    }
    let total = log.segment_count();
    let deleted = log.enforce_retention(t).unwrap();
    // The segment holding both old and new records is kept.
    assert!(
        deleted >= old_segments - 1 && deleted < old_segments,
        "{deleted}"
    );
    assert_eq!(log.segment_count(), total - deleted);
    let start = log.log_start_offset();
    assert!(start > 0);
    assert!(matches!(
        log.read(start - 1, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log).first().unwrap().0, start);
    // Everything old, but the active segment survives.
    assert!(log.enforce_retention(t + 100 * day).unwrap() > 0);
    assert_eq!(log.segment_count(), 1);
    assert!(!read_all(&log).is_empty());
    // The new start offset survives a restart.
    let start = log.log_start_offset();
    drop(log);
    let log = PartitionLog::open(tmp.path().join("t-0"), small_segments()).unwrap();
    assert_eq!(log.log_start_offset(), start);
}

#[test]
fn retention_by_bytes_keeps_the_newest_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let c = LogConfig {
        retention_bytes: 2500,
        retention_ms: -1,
        ..small_segments()
    };
    let log = PartitionLog::open(tmp.path().join("t-0"), c).unwrap();
    for _ in 0..60 {
        log.append(B::new(2).build()).unwrap();
    }
    assert!(log.enforce_retention(now()).unwrap() > 0);
    let seg_bytes: u64 = std::fs::read_dir(log.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(seg_bytes <= 2500 + 1000, "{seg_bytes}");
    assert!(seg_bytes > 1500, "{seg_bytes}");
    assert_eq!(log.log_end_offset(), 120);
    assert_eq!(log.enforce_retention(now()).unwrap(), 0);
}

#[test]
fn idempotent_producer_duplicate_gap_and_fencing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    let first = appended(log.append(B::idem(7, 0, 0, 3).build()).unwrap());
    let second = appended(log.append(B::idem(7, 0, 3, 2).build()).unwrap());
    assert_eq!(second.base_offset, 3);
    // A retry of either batch: nothing written, original offsets.
    assert_eq!(
        log.append(B::idem(7, 0, 0, 3).build()).unwrap(),
        AppendOutcome::Duplicate(first)
    );
    assert_eq!(
        log.append(B::idem(7, 0, 3, 2).build()).unwrap(),
        AppendOutcome::Duplicate(second)
    );
    assert_eq!(log.log_end_offset(), 5);
    // A gap.
    assert!(matches!(
        log.append(B::idem(7, 0, 6, 1).build()),
        Err(LogError::OutOfOrderSequence {
            producer_id: 7,
            expected: 5,
            got: 6
        })
    ));
    // Another producer is independent.
    appended(log.append(B::idem(8, 0, 0, 1).build()).unwrap());
    // A new epoch must start at 0; then the old epoch is fenced.
    assert!(matches!(
        log.append(B::idem(7, 1, 5, 1).build()),
        Err(LogError::OutOfOrderSequence { expected: 0, .. })
    ));
    appended(log.append(B::idem(7, 1, 0, 1).build()).unwrap());
    let e = log.append(B::idem(7, 0, 5, 1).build()).unwrap_err();
    assert!(matches!(
        e,
        LogError::InvalidProducerEpoch {
            current: 1,
            got: 0,
            ..
        }
    ));
    assert_eq!(e.kafka_code(), 47);
    let end = log.log_end_offset();
    drop(log);

    // State is rebuilt from the log after a restart.
    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert!(matches!(
        log.append(B::idem(7, 1, 0, 1).build()).unwrap(),
        AppendOutcome::Duplicate(AppendInfo { base_offset: 6, .. })
    ));
    assert!(log.append(B::idem(7, 0, 5, 1).build()).is_err());
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn producer_state_survives_roll_and_restart_with_or_without_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut infos = Vec::new();
    {
        let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
        for s in 0..40 {
            infos.push(appended(
                log.append(B::idem(3, 2, s * 2, 2).build()).unwrap(),
            ));
        }
        assert!(log.segment_count() > 2);
        log.flush().unwrap();
    }
    for remove_snapshots in [false, true] {
        if remove_snapshots {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|e| e == "snapshot") {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
        let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
        assert_eq!(
            log.append(B::idem(3, 2, 78, 2).build()).unwrap(),
            AppendOutcome::Duplicate(infos[39])
        );
        assert!(matches!(
            log.append(B::idem(3, 2, 81, 1).build()),
            Err(LogError::OutOfOrderSequence { expected: 80, .. })
        ));
    }
}

fn always() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_serves_many_waiters_with_fewer_fsyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(PartitionLog::open(tmp.path().join("t-0"), always()).unwrap());
    let waiters = 64;
    let before = log.fsync_count();
    let barrier = Arc::new(tokio::sync::Barrier::new(waiters));
    let mut tasks = Vec::new();
    for i in 0..waiters {
        let log = Arc::clone(&log);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let info = appended(log.append(B::new(1).tag(&format!("w{i}")).build()).unwrap());
            log.wait_durable(info.last_offset).await.unwrap();
            assert!(log.durable_offset() > info.last_offset);
            assert!(log.high_watermark() > info.last_offset);
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for t in tasks {
        tokio::time::timeout_at(deadline.into(), t)
            .await
            .expect("waiters finish")
            .unwrap();
    }
    let fsyncs = log.fsync_count() - before;
    println!(
        "group commit: {waiters} concurrent waiters, {fsyncs} fsyncs, {:?} total fsync time",
        log.fsync_time()
    );
    assert!(fsyncs >= 1);
    assert!(
        fsyncs < waiters as u64,
        "{fsyncs} fsyncs for {waiters} waiters"
    );
    assert_eq!(log.high_watermark(), waiters as i64);
}

#[tokio::test]
async fn with_fsync_always_readers_only_see_durable_data() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), always()).unwrap();
    let mut hw = log.subscribe_high_watermark();
    let info = appended(log.append(B::new(2).build()).unwrap());
    // Whatever the high watermark is, reads never go beyond it.
    let r = log.read(0, 1 << 20).unwrap();
    assert_eq!(r.records.is_empty(), log.high_watermark() == 0);
    // It moves without anyone waiting (acks=1 producers must become visible too).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while *hw.borrow_and_update() <= info.last_offset {
        tokio::time::timeout_at(deadline, hw.changed())
            .await
            .expect("high watermark moves")
            .unwrap();
    }
    log.wait_durable(info.last_offset).await.unwrap();
    assert!(log.durable_offset() > info.last_offset);
    assert_eq!(decode_all(&log.read(0, 1 << 20).unwrap().records).len(), 2);
}

#[tokio::test]
async fn interval_policy_exposes_the_log_end_and_flushes_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    let info = appended(log.append(B::new(2).build()).unwrap());
    assert_eq!(log.high_watermark(), 2);
    log.wait_durable(info.last_offset).await.unwrap();
    let n = log.fsync_count();
    log.flush().unwrap();
    assert!(log.fsync_count() > n);
    assert_eq!(log.durable_offset(), 2);
    // An idle partition costs the interval flusher nothing.
    let n = log.fsync_count();
    log.flush().unwrap();
    assert_eq!(log.fsync_count(), n);
}

#[test]
fn manager_spreads_configs_to_partitions_and_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
    let mut c = std::collections::BTreeMap::new();
    c.insert("sluice.fsync".to_string(), "interval".to_string());
    m.create_topic("events", 2, c, false).unwrap();
    let p = m.partition("events", 1).unwrap();
    assert!(matches!(p.config().fsync, FsyncPolicy::Interval(_)));
    p.append(B::new(4).build()).unwrap();
    m.flush_all().unwrap();
    drop(p);
    drop(m);
    let m = LogManager::open(tmp.path(), LogDefaults::default()).unwrap();
    assert_eq!(m.partition("events", 1).unwrap().log_end_offset(), 4);
    assert_eq!(m.partition("events", 0).unwrap().log_end_offset(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_fsyncs_for_steady_concurrent_producers() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(PartitionLog::open(tmp.path().join("t-0"), always()).unwrap());
    let (producers, rounds) = (8, 50);
    let before = log.fsync_count();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            for r in 0..rounds {
                let b = B::new(1).tag(&format!("p{p}r{r}")).build();
                let info = appended(log.append(b).unwrap());
                log.wait_durable(info.last_offset).await.unwrap();
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for t in tasks {
        tokio::time::timeout_at(deadline.into(), t)
            .await
            .expect("producers finish")
            .unwrap();
    }
    let waits = (producers * rounds) as u64;
    let fsyncs = log.fsync_count() - before;
    println!(
        "group commit: {producers} producers x {rounds} acks=all appends = {waits} waits, {fsyncs} fsyncs, {:?} total fsync time",
        log.fsync_time()
    );
    assert!(fsyncs < waits, "{fsyncs} fsyncs for {waits} waits");
    assert_eq!(read_all(&log).len(), producers * rounds);
}

/// Rough append throughput with fsync=always and concurrent acks=all producers (1 KiB
/// records, 16 per batch). Not a benchmark: run by hand with
/// `cargo test -p sluice-broker --lib log::tests::append_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
async fn append_throughput() {
    let secs: u64 = std::env::var("SLUICE_LOG_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .min(20);
    let policy = match std::env::var("SLUICE_LOG_BENCH_FSYNC").as_deref() {
        Ok("interval") => cfg(),
        _ => always(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(PartitionLog::open(tmp.path().join("t-0"), policy.clone()).unwrap());
    let value = "x".repeat(1024);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let log = Arc::clone(&log);
        let batch = B::new(16).tag(&value).build();
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0u64;
            while Instant::now() < deadline {
                let info = appended(log.append(batch.clone()).unwrap());
                log.wait_durable(info.last_offset).await.unwrap();
                bytes += batch.len() as u64;
            }
            bytes
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.unwrap();
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "append throughput ({:?}, 8 producers, 16 x 1 KiB records per batch): {:.1} MB/s, {:.0} records/s, {} fsyncs ({:?} in fsync), {} segments",
        policy.fsync,
        bytes as f64 / el / 1e6,
        log.log_end_offset() as f64 / el,
        log.fsync_count(),
        log.fsync_time(),
        log.segment_count()
    );
}

#[tokio::test]
async fn manager_background_tasks_enforce_retention_and_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let defaults = LogDefaults {
        retention_check_interval: Duration::from_millis(20),
        fsync_interval: Duration::from_millis(20),
        ..LogDefaults::default()
    };
    let m = Arc::new(LogManager::open(tmp.path(), defaults).unwrap());
    let c: std::collections::BTreeMap<String, String> = [
        ("segment.bytes", "1000"),
        ("retention.ms", "60000"),
        ("sluice.fsync", "interval"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    m.create_topic("old", 1, c, false).unwrap();
    let p = m.partition("old", 0).unwrap();
    for _ in 0..30 {
        p.append(B::new(2).ts(now() - 3_600_000).build()).unwrap();
    }
    assert!(p.segment_count() > 2);
    let fsyncs = p.fsync_count();
    let stop = tokio_util::sync::CancellationToken::new();
    m.spawn_background(stop.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.segment_count() > 1 || p.fsync_count() == fsyncs {
        assert!(Instant::now() < deadline, "background tasks did not run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(p.log_start_offset() > 0);
    assert!(m.fsync_stats().0 > 0);
    stop.cancel();
}

// ---- crash test -------------------------------------------------------------------------

const CRASH_ENV: &str = "SLUICE_LOG_CRASH_CHILD_DIR";

/// The child side of `sigkill_never_loses_an_offset_reported_durable`: appends forever with
/// fsync=always from four tasks and prints `durable <base> <last> <tag>` once each batch is
/// durable. Does nothing unless the env var is set.
#[test]
fn crash_child_main() {
    let Ok(dir) = std::env::var(CRASH_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = Arc::new(
            PartitionLog::open(
                dir.into(),
                LogConfig {
                    segment_bytes: 64 * 1024,
                    ..always()
                },
            )
            .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut tasks = Vec::new();
        for task in 0..4 {
            let log = Arc::clone(&log);
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    let tag = format!("t{task}n{n}");
                    let info = appended(log.append(B::new(5).tag(&tag).build()).unwrap());
                    log.wait_durable(info.last_offset).await.unwrap();
                    println!("durable {} {} {tag}", info.base_offset, info.last_offset);
                    n += 1;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

#[test]
fn sigkill_never_loses_an_offset_reported_durable() {
    let exe = std::env::current_exe().unwrap();
    for round in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("crash-0");
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "log::tests::crash_child_main",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_ENV, &dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("durable ") && tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill at a random moment after the first durable report (50..550 ms later).
        let mut reported = Vec::new();
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child reports");
        reported.push(first);
        let kill_at = Instant::now() + Duration::from_millis(50 + random_u64() % 500);
        while let Some(left) = kill_at.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(l) => reported.push(l),
                Err(_) => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines already in the pipe when the child died were also reported.
        reported.extend(rx.try_iter());

        let log = PartitionLog::open(
            dir,
            LogConfig {
                segment_bytes: 64 * 1024,
                ..always()
            },
        )
        .unwrap();
        let recovered = read_all(&log);
        // Every record CRC-checked (decode_all) and offsets contiguous from 0 to the log end.
        assert_eq!(recovered.len() as i64, log.log_end_offset());
        assert!(recovered
            .iter()
            .enumerate()
            .all(|(i, (o, _))| *o == i as i64));
        let all: std::collections::HashMap<i64, String> = recovered.into_iter().collect();
        for line in &reported {
            let parts: Vec<&str> = line.split(' ').collect();
            let (base, last, tag): (i64, i64, &str) = (
                parts[1].parse().unwrap(),
                parts[2].parse().unwrap(),
                parts[3],
            );
            for (i, off) in (base..=last).enumerate() {
                assert_eq!(
                    all.get(&off).map(String::as_str),
                    Some(format!("{tag}-{i}").as_str()),
                    "round {round}: offset {off} was reported durable"
                );
            }
        }
        println!(
            "crash round {round}: {} durable batches reported, {} records recovered, {} segments",
            reported.len(),
            all.len(),
            log.segment_count()
        );
        assert!(all.len() >= reported.len() * 5);
    }
}

#[path = "replication_tests.rs"]
mod replication;

#[path = "region_tests.rs"]
mod region;

#[path = "compaction_tests.rs"]
mod compaction;

#[path = "txn_tests.rs"]
mod txn_tests;

/// Found by the `partition_dir` fuzz target: the base offset (bytes 0..8) is not covered by
/// the CRC, so a batch of a closed segment whose base offset was damaged passed the index
/// check, and a read at an offset before it stopped there with nothing (a consumer stuck
/// forever); a full scan cut the segment there and dropped every later one. Now the batch is
/// kept in place, a read at it is CORRUPT_MESSAGE, and everything else is served.
#[test]
fn damaged_base_offset_in_a_closed_segment_is_refused_not_skipped_nor_cut() {
    for drop_indexes in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut sizes = Vec::new();
        {
            let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
            for i in 0..40 {
                let b = B::new(2).tag(&format!("d{i}")).build();
                sizes.push(b.len() as u64);
                log.append(b).unwrap();
            }
            log.flush().unwrap();
            assert!(log.segment_count() >= 3);
        }
        let mut logs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        let first = &logs[0];
        if drop_indexes {
            std::fs::remove_file(first.with_extension("index")).unwrap();
        }
        // Batch 1 (offsets 2 and 3) now claims base offset 12545.
        let f = std::fs::OpenOptions::new().write(true).open(first).unwrap();
        f.write_all_at(&12545i64.to_be_bytes(), sizes[0]).unwrap();
        drop(f);

        let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
        assert_eq!(log.log_end_offset(), 80, "nothing cut ({drop_indexes})");
        let head = log.read(0, 1 << 20).unwrap().records;
        let vals: Vec<String> = decode_all(&head).into_iter().map(|r| r.1).collect();
        assert_eq!(vals, ["d0-0", "d0-1"]);
        for at in [2, 3] {
            let err = log.read(at, 1 << 20).unwrap_err();
            assert!(matches!(err, LogError::CorruptBatch { .. }), "{err:?}");
        }
        let after = log.read(4, 1 << 20).unwrap().records;
        assert_eq!(decode_all(&after)[0], (4, "d2-0".to_string()));
        assert_eq!(fuzzing::read_everything(&log), vec![(0, 1)]);
    }
}

/// The minimal input of that fuzz finding, as the target reads it: a partition image (see
/// `fuzzing::image_files`) of two segments whose first has a batch with a damaged base
/// offset, built here rather than checked in as a binary file.
#[test]
fn fuzz_finding_partition_dir_damaged_base_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let seg0: Vec<u8> = [
        B::new(1).tag("a").build(),
        B::new(2).tag("b").build(),
        B::new(1).tag("c").build(),
    ]
    .iter()
    .enumerate()
    .fold((Vec::new(), 0i64), |(mut out, next), (i, b)| {
        let mut b = b.to_vec();
        let n = i64::from(batch::parse_header(&b).unwrap().last_offset_delta) + 1;
        let base = if i == 1 { 12545 } else { next };
        b[..8].copy_from_slice(&base.to_be_bytes());
        out.extend_from_slice(&b);
        (out, next + n)
    })
    .0;
    let mut seg1 = B::new(1).tag("d").build().to_vec();
    seg1[..8].copy_from_slice(&4i64.to_be_bytes());
    let image = fuzzing::pack_image(&[
        (segment::file_name(0, "log"), seg0),
        (segment::file_name(4, "log"), seg1),
        ("log-start-offset".to_string(), b"1\n".to_vec()),
    ]);
    fuzzing::partition_dir(&image, tmp.path());
}

/// Found by the `partition_dir` fuzz target: a closed segment whose first batch header was
/// damaged (record count 0) still passed its index and tail check, and a read at an offset
/// before the first index entry answered nothing instead of refusing the damaged batch.
#[test]
fn damaged_batch_header_before_the_first_index_entry_is_refused_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    {
        let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
        for i in 0..40 {
            log.append(B::new(2).tag(&format!("h{i}")).build()).unwrap();
        }
        log.flush().unwrap();
    }
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    // Record count (bytes 57..61) of the first batch: 0.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&logs[0])
        .unwrap();
    f.write_all_at(&0i32.to_be_bytes(), 57).unwrap();
    drop(f);
    let log = PartitionLog::open(dir, small_segments()).unwrap();
    for at in [0, 1] {
        let err = log.read(at, 1 << 20).unwrap_err();
        assert!(matches!(err, LogError::CorruptBatch { .. }), "{err:?}");
    }
    assert_eq!(log.log_end_offset(), 80);
}

/// Found by the `partition_dir` fuzz target: a closed segment's batch whose magic byte was
/// damaged (not covered by the CRC, like the base offset) was served; a client cannot decode
/// it. It is refused (CORRUPT_MESSAGE) like any header that does not parse, and a read that
/// starts before it stops short of it.
#[test]
fn a_damaged_magic_byte_is_refused_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    {
        let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
        for i in 0..40 {
            log.append(B::new(2).tag(&format!("m{i}")).build()).unwrap();
        }
        log.flush().unwrap();
    }
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let first = std::fs::read(&logs[0]).unwrap();
    let second_at = batch::parse_header(&first).unwrap().size as u64;
    // Magic (byte 16) of the first batch and of the second.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&logs[0])
        .unwrap();
    f.write_all_at(&[91], 16).unwrap();
    f.write_all_at(&[91], second_at + 16).unwrap();
    drop(f);
    let log = PartitionLog::open(dir, small_segments()).unwrap();
    for at in [0, 1, 2] {
        let err = log.read(at, 1 << 20).unwrap_err();
        assert!(
            matches!(err, LogError::CorruptBatch { .. }),
            "{at}: {err:?}"
        );
    }
    assert_eq!(log.log_end_offset(), 80);
    fuzzing::read_everything(&log);
}

#[test]
fn an_end_below_the_clean_shutdown_record_is_reported_once() {
    use crate::recovery::{total, Action};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let marker = dir.join("clean-shutdown-end");
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    log.append(B::new(3).build()).unwrap();
    log.flush_at_shutdown().unwrap();
    drop(log);
    let record = std::fs::read(&marker).unwrap();
    assert!(record.starts_with(b"3\n"), "{record:?}");

    // Intact: nothing reported, and the record is used once.
    let before = total(Action::LogEndLost);
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(total(Action::LogEndLost), before);
    assert!(!marker.exists());
    log.flush_at_shutdown().unwrap();
    drop(log);

    // The only segment emptied while stopped: three durable records are gone.
    std::fs::write(dir.join(segment::file_name(0, "log")), b"").unwrap();
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert!(total(Action::LogEndLost) > before);
    assert!(!marker.exists());
    drop(log);
    // Without a clean shutdown since (a crash), a shorter log is a torn tail, not a loss.
    let after = total(Action::LogEndLost);
    PartitionLog::open(dir, cfg()).unwrap();
    assert_eq!(total(Action::LogEndLost), after);
}

#[test]
fn open_trusts_a_clean_shutdown_only_when_recovery_finds_the_log_as_it_left_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let marker = dir.join("clean-shutdown-end");
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert!(!log.end_record_unsynced(), "a new partition is not trusted");
    log.append(B::new(3).build()).unwrap();
    log.flush_at_shutdown().unwrap();
    drop(log);

    // Clean: open fsyncs nothing and leaves the record's removal to be synced later.
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert!(log.end_record_unsynced());
    assert!(!marker.exists());
    assert_eq!(log.log_end_offset(), 3);
    // Dropped without a clean shutdown (a crash): the next open fsyncs everything.
    drop(log);
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert!(!log.end_record_unsynced());
    log.flush_at_shutdown().unwrap();
    drop(log);

    // The record matches, but recovery cut a torn tail: not trusted.
    let seg = dir.join(segment::file_name(0, "log"));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0xAB; 30]);
    std::fs::write(&seg, &bytes).unwrap();
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert!(!log.end_record_unsynced());
    log.flush_at_shutdown().unwrap();
    drop(log);

    // A record that names another end (here a higher one: records lost) is not trusted.
    std::fs::write(&marker, b"5\n").unwrap();
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert!(!log.end_record_unsynced());
}

/// What a partition answers: every record read back (offset, value), then one time lookup
/// per batch.
type Answers = (Vec<(i64, String)>, Vec<Option<(i64, i64)>>);

/// [`Answers`] of `log`, whose `batches` batches were stamped `t0 + 10 * i`.
fn answers(log: &PartitionLog, batches: i64, t0: i64) -> Answers {
    let times = (0..batches + 1)
        .map(|i| log.offset_for_timestamp(t0 + 10 * i).unwrap())
        .collect();
    (read_all(log), times)
}

#[test]
fn a_clean_shutdown_lets_the_next_open_read_the_active_segment_by_its_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let config = LogConfig {
        index_interval_bytes: 150,
        ..cfg()
    };
    let index_files = |dir: &std::path::Path| {
        ["index", "timeindex"].map(|e| std::fs::read(dir.join(segment::file_name(0, e))).unwrap())
    };
    // An hour ago: the segment is not old enough to roll by `segment.ms` at the next append.
    let t0 = now() - 3_600_000;
    let log = PartitionLog::open(dir.clone(), config.clone()).unwrap();
    let mut infos = Vec::new();
    for s in 0..30 {
        let b = B::idem(3, 2, s * 2, 2).ts(t0 + 10 * i64::from(s));
        infos.push(appended(log.append(b.build()).unwrap()));
    }
    let before = answers(&log, 30, t0);
    assert!(
        index_files(&dir)[0].len() >= 8 * 5,
        "the active segment has index entries"
    );
    log.flush_at_shutdown().unwrap();
    drop(log);

    // By the indexes: the same answers, the producer state from the record.
    let log = PartitionLog::open(dir.clone(), config.clone()).unwrap();
    assert!(log.active_opened_by_index());
    assert!(log.end_record_unsynced(), "still a trusted clean open");
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(answers(&log, 30, t0), before);
    assert_eq!(
        log.append(B::idem(3, 2, 58, 2).build()).unwrap(),
        AppendOutcome::Duplicate(infos[29])
    );
    assert!(matches!(
        log.append(B::idem(3, 2, 61, 1).build()),
        Err(LogError::OutOfOrderSequence { expected: 60, .. })
    ));
    // Appends go on extending the indexes loaded into memory as a full scan would have
    // built them: after a crash (no clean shutdown), the whole-segment scan finds the files
    // matching and rewrites nothing.
    for s in 30..60 {
        let b = B::idem(3, 2, s * 2, 2).ts(t0 + 10 * i64::from(s));
        infos.push(appended(log.append(b.build()).unwrap()));
    }
    let before = answers(&log, 60, t0);
    log.flush().unwrap();
    let files = index_files(&dir);
    drop(log);
    let log = PartitionLog::open(dir.clone(), config.clone()).unwrap();
    assert!(!log.active_opened_by_index(), "no clean shutdown: scanned");
    assert_eq!(index_files(&dir), files);
    assert_eq!(answers(&log, 60, t0), before);
    assert_eq!(log.segment_count(), 1, "one active segment throughout");
    log.flush_at_shutdown().unwrap();
    drop(log);

    // A record of an earlier version (the end only) or an index file gone: scanned whole,
    // and the answers are the same.
    let marker = dir.join("clean-shutdown-end");
    std::fs::write(&marker, b"120\n").unwrap();
    let log = PartitionLog::open(dir.clone(), config.clone()).unwrap();
    assert!(!log.active_opened_by_index());
    assert!(
        log.end_record_unsynced(),
        "the end alone still trusts the fsyncs"
    );
    assert_eq!(answers(&log, 60, t0), before);
    log.flush_at_shutdown().unwrap();
    drop(log);
    std::fs::remove_file(dir.join(segment::file_name(0, "index"))).unwrap();
    let log = PartitionLog::open(dir.clone(), config.clone()).unwrap();
    assert!(!log.active_opened_by_index());
    assert_eq!(answers(&log, 60, t0), before);
    assert_eq!(index_files(&dir), files, "rebuilt as they were");
    log.flush_at_shutdown().unwrap();
    drop(log);

    // A batch damaged on disk after the clean shutdown, before the last index entry (so not
    // in the tail the open checks): never served, the batches around it still are.
    let seg = dir.join(segment::file_name(0, "log"));
    let mut bytes = std::fs::read(&seg).unwrap();
    let (_, pos) = (0..)
        .map_while(|i| {
            let e = files[0].get(i * 8..i * 8 + 8)?;
            Some((
                u32::from_be_bytes(e[..4].try_into().unwrap()),
                u32::from_be_bytes(e[4..].try_into().unwrap()),
            ))
        })
        .nth(2)
        .unwrap();
    let h = batch::parse_header(&bytes[pos as usize..]).unwrap();
    bytes[pos as usize + h.size - 1] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let log = PartitionLog::open(dir.clone(), config).unwrap();
    assert!(log.active_opened_by_index());
    assert_eq!(log.log_end_offset(), 120);
    assert!(matches!(
        log.read(h.base_offset, 1 << 20),
        Err(LogError::CorruptBatch { .. })
    ));
    let next = log.read(h.next_offset(), 1 << 20).unwrap();
    assert_eq!(decode_all(&next.records)[0].0, h.next_offset());
    let upto = log.read(0, 1 << 20).unwrap();
    assert_eq!(
        decode_all(&upto.records).last().unwrap().0,
        h.base_offset - 1,
        "a read from before it stops short of it"
    );
}

#[test]
fn lowering_the_end_first_syncs_the_removal_of_a_trusted_clean_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    log.append(B::new(2).build()).unwrap();
    log.append(B::new(2).build()).unwrap();
    log.flush_at_shutdown().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert!(log.end_record_unsynced());
    assert_eq!(log.truncate_to(2).unwrap(), 2);
    assert!(!log.end_record_unsynced());
    log.flush_at_shutdown().unwrap();
    drop(log);
    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert!(log.end_record_unsynced());
    log.reset_to(10).unwrap();
    assert!(!log.end_record_unsynced());
    assert_eq!(log.log_end_offset(), 10);
}

#[test]
fn a_garbled_clean_shutdown_end_is_ignored_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    log.append(B::new(2).build()).unwrap();
    log.flush().unwrap();
    drop(log);
    let marker = dir.join("clean-shutdown-end");
    std::fs::write(&marker, b"two\n").unwrap();
    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    assert!(!marker.exists());
}

/// Found by the `partition_dir` fuzz target (an input that ran past libFuzzer's 20 s
/// timeout): a batch whose header claims a larger max timestamp than any of its records
/// carries made the MAX_TIMESTAMP lookup (ListOffsets -3) search the same segment again and
/// again, forever. Such a batch needs no damage: a producer can send it, CRC and all.
#[test]
fn max_timestamp_lookup_ends_when_a_header_claims_more_than_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap());
    appended(log.append(B::new(2).ts(50).build()).unwrap());
    let mut lying = B::new(2).ts(100).build().to_vec();
    lying[35..43].copy_from_slice(&999i64.to_be_bytes());
    fuzzing::fix_crcs(&mut lying);
    appended(log.append(Bytes::from(lying)).unwrap());
    appended(log.append(B::new(1).ts(70).build()).unwrap());

    let (tx, rx) = std::sync::mpsc::channel();
    let l = Arc::clone(&log);
    std::thread::spawn(move || {
        let _ = tx.send(l.max_timestamp_offset());
    });
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the MAX_TIMESTAMP lookup answers instead of spinning")
        .unwrap();
    // The header is taken at its word, as for a batch whose records cannot be read.
    assert_eq!(got, Some((2, 999)));

    // The same from the fuzzer's image: a closed segment of that shape, reopened.
    drop(log);
    std::fs::create_dir(tmp.path().join("image")).unwrap();
    fuzzing::partition_dir(
        &fuzzing::pack_image(&[(
            segment::file_name(0, "log"),
            std::fs::read(tmp.path().join("t-0").join(segment::file_name(0, "log"))).unwrap(),
        )]),
        &tmp.path().join("image"),
    );

    // The same lie in the first batch of a closed segment whose base offset is damaged too
    // (-231: out of sequence, not covered by the CRC; kept in place since intact batches
    // follow): the answer stays inside the log (the fuzz target checks it).
    let with_base = |b: Bytes, base: i64| {
        let mut b = b.to_vec();
        b[..8].copy_from_slice(&base.to_be_bytes());
        b
    };
    let mut lying = B::new(1).ts(100).build().to_vec();
    lying[35..43].copy_from_slice(&999i64.to_be_bytes());
    fuzzing::fix_crcs(&mut lying);
    let mut seg0 = with_base(Bytes::from(lying), -231);
    seg0.extend(with_base(B::new(2).ts(50).build(), 1));
    seg0.extend(with_base(B::new(1).ts(60).build(), 3));
    let seg1 = with_base(B::new(1).ts(70).build(), 4);
    std::fs::create_dir(tmp.path().join("image2")).unwrap();
    fuzzing::partition_dir(
        &fuzzing::pack_image(&[
            (segment::file_name(0, "log"), seg0),
            (segment::file_name(4, "log"), seg1),
        ]),
        &tmp.path().join("image2"),
    );
}

/// Found by the `partition_dir` fuzz target: a log start (DeleteRecords) past the end recovery
/// kept (the tail it had passed was torn off: a machine crash under `fsync: interval`, or
/// damage) was lowered to the end in memory only; records appended after that restart landed
/// below the stored start, and the next restart hid them.
#[test]
fn a_log_start_past_a_torn_tail_is_lowered_on_disk_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let cut;
    {
        let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
        appended(log.append(B::new(2).tag("a").build()).unwrap());
        cut = std::fs::metadata(dir.join(segment::file_name(0, "log")))
            .unwrap()
            .len();
        appended(log.append(B::new(2).tag("b").build()).unwrap());
        assert_eq!(log.delete_records(3).unwrap(), 3);
        log.flush().unwrap();
    }
    // The second batch (offsets 2 and 3) torn off.
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(segment::file_name(0, "log")))
        .unwrap()
        .set_len(cut + 10)
        .unwrap();
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 2));
    let i = appended(log.append(B::new(3).tag("c").build()).unwrap());
    assert_eq!((i.base_offset, i.last_offset), (2, 4));
    drop(log);
    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (2, 5),
        "the records appended after the first restart stay visible"
    );
    let r = log.read(2, 1 << 20).unwrap();
    assert_eq!(batch::parse_header(&r.records).unwrap().base_offset, 2);
}

/// Found by the `partition_dir` fuzz target: a stored batch of one record (offsets 0..=0)
/// whose record said offset delta 2, with a good CRC, made the MAX_TIMESTAMP lookup answer
/// offset 2 of a log that ends at 1. A record outside its batch's offsets is corrupt; the
/// lookup then takes the batch header's word, as for any batch whose records cannot be read.
#[test]
fn a_record_outside_its_batch_is_corrupt_and_lookups_stay_in_the_log() {
    let mut b = fuzzing::batch_of(1, 1_700_000_000_000, Compression::None, "x").to_vec();
    // Record length, attributes, timestamp delta, then the offset delta (zigzag 2 = 4).
    assert_eq!(b[batch::HEADER_LEN + 3], 0, "the record's offset delta");
    b[batch::HEADER_LEN + 3] = 4;
    fuzzing::fix_crcs(&mut b);
    let h = batch::parse_header(&b).unwrap();
    let err = batch::find_record(&b, &h, |_, _| true).unwrap_err();
    assert!(err.to_string().contains("offset delta 2"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(segment::file_name(0, "log")), &b).unwrap();
    let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(
        log.max_timestamp_offset().unwrap(),
        Some((0, 1_700_000_000_000))
    );
    assert_eq!(
        log.offset_for_timestamp(0).unwrap().map(|(o, _)| o),
        Some(0)
    );
    drop(log);
    std::fs::create_dir(tmp.path().join("image")).unwrap();
    fuzzing::partition_dir(
        &fuzzing::pack_image(&[(segment::file_name(0, "log"), b)]),
        &tmp.path().join("image"),
    );
}

/// Found by the `partition_dir` fuzz target: a recovered segment's first append time is its
/// first batch's timestamp, and one of i64::MIN made the segment.ms check overflow at the next
/// append (a panic with overflow checks, a wrapped age that never rolls without). Such a
/// segment is as old as can be: the next append rolls.
#[test]
fn a_recovered_segment_stamped_i64_min_rolls_instead_of_overflowing() {
    let mut b = fuzzing::batch_of(1, 1_700_000_000_000, Compression::None, "x").to_vec();
    b[35..43].copy_from_slice(&i64::MIN.to_be_bytes());
    fuzzing::fix_crcs(&mut b);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(segment::file_name(0, "log")), &b).unwrap();
    let log = PartitionLog::open(dir, cfg()).unwrap();
    let i = appended(log.append(B::new(1).build()).unwrap());
    assert_eq!(i.base_offset, 1);
    assert_eq!(log.segment_count(), 2, "the ancient segment was rolled");
}

/// Found by the `partition_dir` fuzz target: a read walking a closed segment whose batch had a
/// damaged base offset near i64::MAX overflowed computing its last offset (a panic with
/// overflow checks). Such a header does not parse: the read refuses it (CORRUPT_MESSAGE).
#[test]
fn a_base_offset_near_i64_max_is_refused_not_an_overflow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    {
        let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
        for i in 0..40 {
            log.append(B::new(2).tag(&format!("o{i}")).build()).unwrap();
        }
        log.flush().unwrap();
    }
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let first = std::fs::read(&logs[0]).unwrap();
    let second_at = batch::parse_header(&first).unwrap().size as u64;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&logs[0])
        .unwrap();
    f.write_all_at(&i64::MAX.to_be_bytes(), second_at).unwrap();
    drop(f);
    let log = PartitionLog::open(dir, small_segments()).unwrap();
    let r = log.read(0, 1 << 20).unwrap();
    let h = batch::parse_header(&r.records).unwrap();
    assert_eq!(
        (h.base_offset, r.records.len()),
        (0, h.size),
        "only the batch before it"
    );
    let err = log.read(2, 1 << 20).unwrap_err();
    assert!(matches!(err, LogError::CorruptBatch { .. }), "{err:?}");
    fuzzing::read_everything(&log);
}

/// Sets the record count (bytes 57..61) of the batch at `pos` of `path` to `count` and
/// recomputes its CRC-32C, which covers the count: a batch no Kafka client or broker writes,
/// stored with a good CRC.
fn store_record_count(path: &Path, pos: u64, count: i32) {
    let mut bytes = std::fs::read(path).unwrap();
    let pos = pos as usize;
    let size = batch::parse_header(&bytes[pos..]).unwrap().size;
    let whole = &mut bytes[pos..pos + size];
    whole[57..61].copy_from_slice(&count.to_be_bytes());
    fuzzing::fix_crcs(whole);
    assert!(batch::check_crc(whole).is_ok(), "the CRC holds");
    std::fs::write(path, bytes).unwrap();
}

/// Found by the `partition_dir` fuzz target (the 19:13 run of the campaign log; the input was
/// lost and is rebuilt here): a stored batch whose record count its offsets cannot hold, with
/// a good CRC (the count is covered by it), was served by a read, because the read path's
/// header walk looked at the first 27 bytes of each header only and never saw the count. A
/// read refuses it (CORRUPT_MESSAGE) and a read that starts before it stops short of it;
/// recovery, where it scans such a batch (an active segment, a closed segment's unindexed
/// tail), cuts it with the rest of the tail like any other header that does not parse.
///
/// A count of 0 was refused the same way until compaction: it is the empty batch Kafka's
/// cleaner (and Sluice's) leaves where every record of a batch was removed, and is served,
/// its offsets skipped by the reader.
#[test]
fn a_record_count_the_offsets_cannot_hold_is_refused_and_an_empty_batch_is_served() {
    // (record count, which batch of the first, closed segment) for each case. The fuzz
    // target's config, so the directory is also an input the target reads as written.
    for (count, victim) in [(0, 0usize), (0, 2), (5, 1)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        {
            let log = PartitionLog::open(dir.clone(), fuzzing::fuzz_config()).unwrap();
            for i in 0..40 {
                log.append(B::new(2).tag(&format!("z{i}")).build()).unwrap();
            }
            log.flush().unwrap();
            assert!(log.segment_count() >= 3);
        }
        let mut logs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        let first = std::fs::read(&logs[0]).unwrap();
        let mut pos = 0u64;
        for _ in 0..victim {
            pos += batch::parse_header(&first[pos as usize..]).unwrap().size as u64;
        }
        store_record_count(&logs[0], pos, count);
        let case = format!("count {count} in batch {victim}");

        // The fuzz target's own checks on the same directory, packed as its input.
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        let scratch = tmp.path().join("image");
        std::fs::create_dir(&scratch).unwrap();
        fuzzing::partition_dir(&fuzzing::pack_image(&files), &scratch);

        let log = PartitionLog::open(dir, fuzzing::fuzz_config()).unwrap();
        assert_eq!(log.log_end_offset(), 80, "nothing cut ({case})");
        let damaged = 2 * victim as i64;
        if count == 0 {
            // Served: the reader skips the two offsets the empty batch spans.
            let all: Vec<i64> = read_all(&log).into_iter().map(|r| r.0).collect();
            let want: Vec<i64> = (0..80)
                .filter(|o| *o != damaged && *o != damaged + 1)
                .collect();
            assert_eq!(all, want, "{case}");
            let served = fuzzing::read_everything(&log);
            assert_eq!(
                served.last().map(|&(_, last)| last),
                Some(79),
                "{case}: {served:?}"
            );
            continue;
        }
        for at in [damaged, damaged + 1] {
            let err = log.read(at, 1 << 20).unwrap_err();
            assert!(
                matches!(err, LogError::CorruptBatch { .. }),
                "{case}, read at {at}: {err:?}"
            );
        }
        if victim > 0 {
            let head = decode_all(&log.read(0, 1 << 20).unwrap().records);
            assert_eq!(
                head.last().map(|r| r.0),
                Some(damaged - 1),
                "{case}: a read from 0 stops short of the damaged batch"
            );
        }
        // Later segments are served as before (a read walking the first segment from before
        // its first index entry meets the damaged header and is refused, as for any header
        // that does not parse).
        let after = decode_all(&log.read(40, 1 << 20).unwrap().records);
        assert!(
            after.contains(&(40, "z20-0".to_string())),
            "{case}: {after:?}"
        );
        let served = fuzzing::read_everything(&log);
        assert!(
            served.iter().all(|&(_, last)| last < damaged),
            "{case}: {served:?}"
        );
    }

    // In the active segment, recovery scans every batch: one whose count its offsets cannot
    // hold is cut with everything after it, like any header that does not parse there; an
    // empty one is kept.
    for (count, end, records) in [(3, 4, vec![0, 1, 2, 3]), (0, 8, vec![0, 1, 2, 3, 6, 7])] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut sizes = Vec::new();
        {
            let log = PartitionLog::open(dir.clone(), cfg()).unwrap();
            for i in 0..4 {
                let b = B::new(2).tag(&format!("a{i}")).build();
                sizes.push(b.len() as u64);
                log.append(b).unwrap();
            }
            log.flush().unwrap();
        }
        let path = active_log_file(&dir);
        store_record_count(&path, sizes[0] + sizes[1], count);
        let cuts = crate::recovery::total(crate::recovery::Action::SegmentTruncated);
        let log = PartitionLog::open(dir, cfg()).unwrap();
        assert_eq!(log.log_end_offset(), end, "count {count}");
        assert_eq!(
            read_all(&log).into_iter().map(|r| r.0).collect::<Vec<_>>(),
            records,
            "count {count}"
        );
        if count != 0 {
            assert_eq!(std::fs::metadata(&path).unwrap().len(), sizes[0] + sizes[1]);
            assert!(crate::recovery::total(crate::recovery::Action::SegmentTruncated) > cuts);
            assert_eq!(fuzzing::read_everything(&log), vec![(0, 1), (2, 3)]);
        }
    }
}

/// Found by the `partition_dir` fuzz target: a batch whose stored base offset is out of
/// sequence (it is not covered by the CRC, so the CRC still holds) is kept in place by recovery
/// when intact batches follow, and reads refuse it; the timestamp lookups of ListOffsets took
/// its offsets at their word and answered offset 10 of a log ending at 10 (MAX_TIMESTAMP), or
/// offset 9 of another batch.
#[test]
fn a_timestamp_lookup_never_answers_from_a_batch_whose_base_offset_is_out_of_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let with_base = |b: Bytes, base: i64| {
        let mut b = b.to_vec();
        b[..8].copy_from_slice(&base.to_be_bytes());
        b
    };
    let mut seg0 = with_base(B::new(2).ts(100).build(), 0);
    seg0.extend(with_base(B::new(3).ts(200).build(), 2));
    // Offsets 5-6, stored as 9-10, carrying the partition's newest timestamps; then 7-9.
    let mut seg5 = with_base(B::new(2).ts(900).build(), 9);
    seg5.extend(with_base(B::new(3).ts(300).build(), 7));
    let files = [
        (segment::file_name(0, "log"), seg0),
        (segment::file_name(5, "log"), seg5),
    ];
    let dir = tmp.path().join("t-0");
    std::fs::create_dir(&dir).unwrap();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    assert!(matches!(
        log.read(5, 1 << 16),
        Err(LogError::CorruptBatch { .. })
    ));
    assert_eq!(log.max_timestamp_offset().unwrap(), Some((9, 302)));
    assert_eq!(log.offset_for_timestamp(900).unwrap(), None);
    assert_eq!(log.offset_for_timestamp(250).unwrap(), Some((7, 300)));
    assert_eq!(log.offset_for_timestamp(150).unwrap(), Some((2, 200)));
    drop(log);

    // The same as the fuzz target sees it, the segments closed behind a third.
    let mut files = files.to_vec();
    files.push((
        segment::file_name(10, "log"),
        with_base(B::new(1).ts(50).build(), 10),
    ));
    std::fs::create_dir(tmp.path().join("image")).unwrap();
    fuzzing::partition_dir(&fuzzing::pack_image(&files), &tmp.path().join("image"));
}
