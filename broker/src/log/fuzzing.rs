//! The storage engine's fuzz entry points (the targets are in `fuzz/`; see
//! `docs/reliability.md`). Each runs the engine's own code on bytes from a fuzzer and panics
//! only when that code broke one of its rules: a panic inside it, a batch served whose CRC
//! fails, a recovery that a second open does not agree with. Also the seed inputs, built with
//! the engine itself, and helpers the regression tests use.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as KTimestampType,
};

use super::batch::{self, HEADER_LEN};
use super::segment;
use super::{AppendOutcome, EpochCache, FsyncPolicy, LogConfig, LogError, PartitionLog};

/// The largest batch the batch target accepts (`max.message.bytes`).
const MAX_BATCH: u32 = 1 << 20;

/// Recomputes the CRC of every batch in `b` whose length fits, so a fuzzer (which cannot
/// forge a CRC-32C) also reaches the checks that come after it.
pub fn fix_crcs(b: &mut [u8]) {
    let mut pos = 0;
    while b.len() - pos >= HEADER_LEN {
        let Ok(size) = batch::announced_size(&b[pos..]) else {
            return;
        };
        let Some(end) = pos.checked_add(size).filter(|e| *e <= b.len()) else {
            return;
        };
        let crc = crc32c::crc32c(&b[pos + 21..end]);
        b[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

/// The record-batch validator and the record walk of a timestamp lookup. Input: a mode byte
/// (bit 0: fix the CRCs first), then a producer's payload.
pub fn record_batches(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut payload = rest.to_vec();
    if mode & 1 != 0 {
        fix_crcs(&mut payload);
    }
    if let Ok(batches) = batch::validate_payload(&payload, MAX_BATCH) {
        let mut next = 0;
        for (pos, h) in &batches {
            assert_eq!(*pos, next, "batches are contiguous");
            let whole = &payload[*pos..*pos + h.size];
            batch::check_crc(whole).expect("a validated batch has a good CRC");
            assert!(h.record_count >= 1 && h.size >= HEADER_LEN && h.size <= MAX_BATCH as usize);
            next = pos + h.size;
        }
        assert_eq!(next, payload.len(), "the batches cover the payload");
    }
    // Stored batches reach the record walk with only their header checked (closed segments
    // are not CRC-checked at open), so it must stand any bytes after a parsable header.
    if let Ok(h) = batch::parse_header(&payload) {
        if h.size <= payload.len() {
            let mut seen = 0u64;
            let _ = batch::find_record(&payload[..h.size], &h, |_, _| {
                seen += 1;
                false
            });
            assert!(seen <= h.record_count as u64);
        }
    }
}

/// The leader-epoch checkpoint parser: whatever it accepts is ordered and round-trips.
pub fn epoch_cache(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let Some(cache) = EpochCache::decode(&text) else {
        return;
    };
    let e = cache.entries();
    assert!(e.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
    assert_eq!(EpochCache::decode(&cache.encode()).as_ref(), Some(&cache));
    let end = e.last().map_or(0, |x| x.1.saturating_add(10));
    for (epoch, start) in e {
        let (found, offset) = cache.end_offset_for(*epoch, end);
        assert_eq!(found, *epoch);
        assert!(offset >= *start && offset <= end);
    }
    let mut cut = cache.clone();
    cut.truncate_from_end(end / 2);
    cut.truncate_from_start(end / 4);
    let c = cut.entries();
    assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
}

/// The files of a partition directory image (see [`partition_dir`]).
const IMAGE_KINDS: u8 = 8;

fn image_name(kind: u8, base: u32) -> String {
    let base = i64::from(base);
    match kind % IMAGE_KINDS {
        0 => segment::file_name(base, "log"),
        1 => segment::file_name(base, "index"),
        2 => segment::file_name(base, "timeindex"),
        3 => segment::file_name(base, "snapshot"),
        4 => super::epochs::EPOCH_FILE.to_string(),
        5 => "log-start-offset".to_string(),
        6 => format!("{}.tmp", segment::file_name(base, "snapshot")),
        _ => segment::file_name(base, "log"),
    }
}

fn has_base(kind: u8) -> bool {
    !matches!(kind % IMAGE_KINDS, 4 | 5)
}

/// Splits a partition directory image into `(file name, bytes)`. An image is a sequence of
/// `kind u8 | base u32 (segment files only) | len u16 | bytes`; kind (mod 8) is 0 `.log`,
/// 1 `.index`, 2 `.timeindex`, 3 `.snapshot`, 4 `leader-epoch-checkpoint`,
/// 5 `log-start-offset`, 6 a `.snapshot.tmp` leftover, 7 a `.log` whose batches get their
/// CRCs fixed. Later entries with the same name replace earlier ones.
pub fn image_files(mut input: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some((&kind, rest)) = input.split_first() {
        input = rest;
        let mut base = 0u32;
        if has_base(kind) {
            let Some(b) = input.get(..4) else { break };
            base = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            input = &input[4..];
        }
        let Some(l) = input.get(..2) else { break };
        let len = (usize::from(u16::from_be_bytes([l[0], l[1]]))).min(input.len() - 2);
        let mut bytes = input[2..2 + len].to_vec();
        input = &input[2 + len..];
        if kind % IMAGE_KINDS == 7 {
            fix_crcs(&mut bytes);
        }
        let name = image_name(kind, base);
        files.retain(|(n, _)| *n != name);
        files.push((name, bytes));
    }
    files
}

/// Packs files into the image format [`image_files`] reads (the seeds; names not in it are
/// skipped).
pub fn pack_image(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let kind_of = |ext: &str| match ext {
            "log" => Some(0u8),
            "index" => Some(1),
            "timeindex" => Some(2),
            "snapshot" => Some(3),
            _ => None,
        };
        let (kind, base) = if name == super::epochs::EPOCH_FILE {
            (4, None)
        } else if name == "log-start-offset" {
            (5, None)
        } else if let Some((stem, ext)) = name.split_once('.') {
            match (kind_of(ext), stem.parse::<u32>()) {
                (Some(k), Ok(b)) => (k, Some(b)),
                _ => continue,
            }
        } else {
            continue;
        };
        let bytes = &bytes[..bytes.len().min(u16::MAX as usize)];
        out.push(kind);
        if let Some(b) = base {
            out.extend_from_slice(&b.to_be_bytes());
        }
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The config the partition target opens with: small segments and index intervals, so small
/// images have several segments and index entries; no fsync waits.
pub fn fuzz_config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        ..LogConfig::default()
    }
}

fn clear_dir(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for ent in rd.flatten() {
            let p = ent.path();
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// Every batch a consumer could read from `log`, checked: each read returns whole batches
/// whose CRC holds, starting with the one holding the requested offset, contiguous, until the
/// log end. A read may refuse a damaged batch (CORRUPT_MESSAGE); the walk then stops.
/// Returns the `(base offset, last offset)` of the batches read.
pub fn read_everything(log: &PartitionLog) -> Vec<(i64, i64)> {
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    assert!(start <= end, "log start {start} after log end {end}");
    assert!(log.high_watermark() <= end);
    let mut out = Vec::new();
    let mut offset = start;
    while offset < log.high_watermark() {
        let r = match log.read(offset, 4096) {
            Ok(r) => r,
            Err(LogError::CorruptBatch { .. }) => break,
            Err(e) => panic!("read at {offset} in [{start}, {end}): {e}"),
        };
        assert!(
            !r.records.is_empty(),
            "read at {offset} in [{start}, {end}) returned nothing"
        );
        let b = &r.records[..];
        let mut pos = 0;
        let mut first = true;
        while pos < b.len() {
            let h = batch::parse_header(&b[pos..]).expect("served batch has a valid header");
            assert!(pos + h.size <= b.len(), "served batch is whole");
            batch::check_crc(&b[pos..pos + h.size]).expect("served batch has a good CRC");
            if first {
                assert!(h.base_offset <= offset.max(start) && h.last_offset() >= offset);
                first = false;
            } else {
                assert_eq!(h.base_offset, offset, "served batches are contiguous");
            }
            out.push((h.base_offset, h.last_offset()));
            offset = h.next_offset();
            pos += h.size;
        }
    }
    out
}

/// Segment and index recovery: a partition directory built from `input` (see
/// [`image_files`]) in `scratch` (emptied first) is opened with [`PartitionLog::open`]. It
/// must not panic; if it opens, everything it serves has good CRCs, a new batch appends at the
/// log end and reads back, and a second open agrees with the first and cuts nothing more.
pub fn partition_dir(input: &[u8], scratch: &Path) {
    clear_dir(scratch);
    for (name, bytes) in image_files(input) {
        let _ = std::fs::write(scratch.join(name), bytes);
    }
    let Ok(log) = PartitionLog::open(scratch.to_path_buf(), fuzz_config()) else {
        return;
    };
    let served = read_everything(&log);
    let end = log.log_end_offset();
    let _ = log.offset_for_timestamp(i64::MIN);
    let _ = log.offset_for_timestamp(0);
    if let Ok(Some((offset, _))) = log.max_timestamp_offset() {
        assert!(
            offset >= 0 && offset < end,
            "max timestamp offset {offset} outside the log"
        );
    }
    let appended = log.append(batch_of(3, 1_700_000_000_000, Compression::None, "fuzz"));
    let (base, last) = match appended {
        Ok(AppendOutcome::Appended(info)) => (info.base_offset, info.last_offset),
        Ok(AppendOutcome::Duplicate(_)) => panic!("a non-idempotent batch is never a duplicate"),
        // A partition whose files cannot be written (a directory where a file should be).
        Err(LogError::Io { .. }) => return,
        Err(e) => panic!("append after recovery: {e}"),
    };
    assert_eq!(base, end, "the next batch starts at the recovered log end");
    let back = log.read(base, 1 << 16).expect("read the appended batch");
    let h = batch::parse_header(&back.records).expect("appended batch header");
    assert_eq!((h.base_offset, h.last_offset()), (base, last));
    let start = log.log_start_offset();
    drop(log);

    let truncations =
        crate::recovery::total_on_this_thread(crate::recovery::Action::SegmentTruncated);
    let removals = crate::recovery::total_on_this_thread(crate::recovery::Action::SegmentRemoved);
    let again = PartitionLog::open(scratch.to_path_buf(), fuzz_config())
        .expect("a log that opened once opens again");
    assert_eq!(
        (again.log_start_offset(), again.log_end_offset()),
        (start, last + 1),
        "the second open agrees with the first"
    );
    assert_eq!(
        crate::recovery::total_on_this_thread(crate::recovery::Action::SegmentTruncated),
        truncations,
        "the second open cut a segment the first had kept"
    );
    assert_eq!(
        crate::recovery::total_on_this_thread(crate::recovery::Action::SegmentRemoved),
        removals,
        "the second open removed a segment the first had kept"
    );
    let served_again = read_everything(&again);
    assert!(
        served_again.len() >= served.len(),
        "the second open serves less than the first"
    );

    // After a clean shutdown the active segment opens by its indexes when they validate
    // (nothing scanned before the last entry): it must answer what a whole-segment scan
    // answers, here the second open's and the scan of the open after a crash.
    let ends = (again.log_start_offset(), again.log_end_offset());
    if again.flush_at_shutdown().is_err() {
        return;
    }
    drop(again);
    let clean = PartitionLog::open(scratch.to_path_buf(), fuzz_config())
        .expect("a log opens again after a clean shutdown");
    assert_eq!(
        (clean.log_start_offset(), clean.log_end_offset()),
        ends,
        "the open after a clean shutdown agrees with the one before it"
    );
    let served_clean = read_everything(&clean);
    assert_eq!(
        served_clean, served_again,
        "the open after a clean shutdown serves what the one before it served"
    );
    drop(clean);
    let scanned = PartitionLog::open(scratch.to_path_buf(), fuzz_config())
        .expect("a log opens again after a crash");
    assert_eq!(
        read_everything(&scanned),
        served_clean,
        "a whole-segment scan serves what the open by the indexes served"
    );
}

/// A v2 batch of `n` records (non-idempotent) built with the kafka-protocol encoder.
pub fn batch_of(n: usize, ts: i64, compression: Compression, tag: &str) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: KTimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence stays constant.
            sequence: -1 + i as i32,
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    // The encoder only fails on a writer error, which a BytesMut never has.
    let _ = RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    );
    buf.freeze()
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Seeds of the batch target: one batch per codec, and several batches back to back.
pub fn seed_record_batches() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, c) in CODECS.into_iter().enumerate() {
        let mut s = vec![0u8];
        s.extend_from_slice(&batch_of(1 + i, 1_700_000_000_000, c, "seed"));
        seeds.push(s);
    }
    let mut many = vec![1u8];
    for n in 1..4 {
        many.extend_from_slice(&batch_of(
            n,
            1_700_000_000_000 + n as i64,
            Compression::None,
            "m",
        ));
    }
    seeds.push(many);
    seeds
}

/// Seeds of the partition target: real partition directories written by the engine (one and
/// several segments, compressed batches, a DeleteRecords start, an epoch cache), packed as
/// images. `scratch` is a directory the seeds may be built in.
pub fn seed_partition_dirs(scratch: &Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (segments, deleted) in [(1usize, false), (3, false), (4, true)] {
        clear_dir(scratch);
        let config = LogConfig {
            segment_bytes: if segments == 1 { 1 << 20 } else { 400 },
            ..fuzz_config()
        };
        let Ok(log) = PartitionLog::open(scratch.to_path_buf(), config) else {
            continue;
        };
        let _ = log.become_leader(1);
        for i in 0..(segments * 3) {
            let codec = CODECS[i % CODECS.len()];
            let _ = log.append(batch_of(
                1 + i % 3,
                1_700_000_000_000 + i as i64 * 10,
                codec,
                "s",
            ));
        }
        if deleted {
            let _ = log.delete_records(2);
        }
        let _ = log.flush();
        drop(log);
        let mut files = Vec::new();
        if let Ok(rd) = std::fs::read_dir(scratch) {
            for ent in rd.flatten() {
                if let Ok(bytes) = std::fs::read(ent.path()) {
                    files.push((ent.file_name().to_string_lossy().into_owned(), bytes));
                }
            }
        }
        files.sort();
        seeds.push(pack_image(&files));
    }
    clear_dir(scratch);
    seeds
}

/// Seeds of the epoch-cache target.
pub fn seed_epoch_caches() -> Vec<Vec<u8>> {
    vec![
        b"0\n0\n".to_vec(),
        b"0\n1\n0 0\n".to_vec(),
        b"0\n3\n1 0\n4 17\n9 250\n".to_vec(),
    ]
}
