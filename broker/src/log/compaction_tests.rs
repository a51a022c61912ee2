//! Compaction (`partition/compaction.rs`) on real files: what it keeps (the latest record of
//! each key in the closed segments below the high watermark, the active segment whole, every
//! offset), tombstones after `delete.retention.ms`, keyless records refused, a restart over
//! compacted segments, and the leftover of an interrupted compaction.

use super::*;

type Row = (i64, Option<String>, Option<String>);

/// One lz4 batch of (key, value) records, stamped from `ts`.
fn keyed(records: &[(Option<&str>, Option<&str>)], ts: i64) -> Bytes {
    B {
        compression: Compression::Lz4,
        ..B::keyed(records).ts(ts)
    }
    .build()
}

fn compacted() -> LogConfig {
    LogConfig {
        cleanup: CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..small_segments()
    }
}

/// Every record the log serves, by reads that move on by batch headers (a compacted log has
/// batches with fewer records than offsets, and empty ones); checks that batches follow each
/// other offset for offset and that each CRC holds.
fn served(log: &PartitionLog) -> Vec<Row> {
    let mut out = Vec::new();
    let mut off = log.log_start_offset();
    while off < log.high_watermark() {
        let r = log.read(off, 1 << 20).expect("read");
        let mut pos = 0;
        let mut next = None;
        while pos < r.records.len() {
            let h = batch::parse_header(&r.records[pos..]).expect("header");
            batch::check_crc(&r.records[pos..pos + h.size]).expect("crc");
            if let Some(n) = next {
                assert_eq!(h.base_offset, n, "batches follow each other");
            }
            next = Some(h.next_offset());
            pos += h.size;
        }
        for (o, rec) in all_records(&r.records).expect("records") {
            if o >= off {
                let s = |v: Option<Vec<u8>>| v.map(|v| String::from_utf8(v).unwrap());
                out.push((o, s(rec.key), s(rec.value)));
            }
        }
        off = next.expect("a read below the high watermark returns a batch");
    }
    out
}

/// What compaction must leave of `rows`: below `clean_end` the latest record of each key
/// (a tombstone only if `tombstones_kept`), and everything from `clean_end` on.
fn model(rows: &[Row], clean_end: i64, tombstones_kept: bool) -> Vec<Row> {
    let mut latest = std::collections::HashMap::new();
    for (o, k, _) in rows.iter().filter(|r| r.0 < clean_end) {
        latest.insert(k.clone(), *o);
    }
    rows.iter()
        .filter(|(o, k, v)| {
            *o >= clean_end || (latest.get(k) == Some(o) && (v.is_some() || tombstones_kept))
        })
        .cloned()
        .collect()
}

/// 60 batches of two records: keys a0..a3 and b0..b2 over and over, every tenth `a` a
/// tombstone, and a key deleted for good. Returns every record appended.
fn fill(log: &PartitionLog, ts: i64) -> Vec<Row> {
    let mut rows = Vec::new();
    for i in 0..60 {
        // Key `gone` is written at 10 and deleted at 20, never to come back.
        let a = match i {
            10 | 20 => "gone".to_string(),
            _ => format!("a{}", i % 4),
        };
        let b = format!("b{}", i % 3);
        let va = (i % 10 != 7 && i != 20).then(|| format!("v{i}"));
        let vb = format!("w{i}");
        let info = appended(
            log.append(keyed(
                &[(Some(&a), va.as_deref()), (Some(&b), Some(&vb))],
                ts,
            ))
            .unwrap(),
        );
        rows.push((info.base_offset, Some(a), va));
        rows.push((info.base_offset + 1, Some(b), Some(vb)));
    }
    rows
}

#[test]
fn compaction_keeps_the_latest_record_of_each_key_and_every_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let ts = now();
    let rows;
    let end;
    {
        let log = PartitionLog::open(dir.clone(), compacted()).unwrap();
        // Only what the in-sync replicas have may be compacted: hold the high watermark in
        // the middle first.
        log.set_hw_bound(40);
        rows = fill(&log, ts);
        end = log.log_end_offset();
        let bases = log.segment_bases();
        assert!(bases.len() >= 6, "several closed segments: {bases:?}");
        assert!(log.compaction_due());
        let c = log.compact(now()).unwrap();
        // Segments end where the next begins: those whose next base is 40 or below.
        let below = bases.windows(2).filter(|w| w[1] <= 40).count();
        assert!(below > 0, "{bases:?}");
        assert!(below < bases.len() - 1, "{bases:?}");
        assert_eq!(
            c.segments_read, below,
            "{c:?}: segments up to offset 40 of {bases:?}"
        );
        assert!(c.segments_rewritten > 0, "{c:?}");
        log.set_hw_bound(i64::MAX);
        assert_eq!(log.high_watermark(), end);

        // Now everything closed is below the high watermark.
        let c = log.compact(now()).unwrap();
        assert_eq!(c.segments_read, bases.len() - 1, "{c:?}");
        let active = *log.segment_bases().last().unwrap();
        assert_eq!(log.log_end_offset(), end, "compaction moves no offset");
        let got = served(&log);
        assert_eq!(got, model(&rows, active, true));
        assert!(
            got.len() < rows.len() / 2,
            "{} of {} records left",
            got.len(),
            rows.len()
        );
        assert!(c.bytes_after < c.bytes_before, "{c:?}");
        // Nothing is left to remove until more is written.
        assert!(!log.compaction_due());
        assert_eq!(log.compact(now()).unwrap().segments_rewritten, 0);
        log.flush().unwrap();
    }
    // A restart reads the compacted segments as they are (recovery checks that offsets follow
    // each other from batch to batch and segment to segment).
    let log = PartitionLog::open(dir.clone(), compacted()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    let active = *log.segment_bases().last().unwrap();
    assert_eq!(served(&log), model(&rows, active, true));
    // After the first compaction in this process there is nothing more to remove.
    assert_eq!(log.compact(now()).unwrap().segments_rewritten, 0);

    // A day later, the tombstones that are the latest of their key go too.
    let day = 25 * 3600 * 1000;
    let c = log.compact(now() + day).unwrap();
    assert!(c.segments_rewritten > 0 && c.records_removed > 0, "{c:?}");
    assert_eq!(served(&log), model(&rows, active, false));
    // Appends go on at the end, with the same offsets as without compaction.
    let info = appended(
        log.append(keyed(&[(Some("a0"), Some("late"))], ts))
            .unwrap(),
    );
    assert_eq!(info.base_offset, end);
}

#[test]
fn a_compacted_topic_refuses_records_without_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("orders-3"), compacted()).unwrap();
    let err = log
        .append(keyed(&[(Some("k"), Some("v")), (None, Some("v"))], now()))
        .unwrap_err();
    assert_eq!(err.kafka_code(), 87, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("record 1")
            && text.contains("orders-3")
            && text.contains("cleanup.policy=compact"),
        "{text}"
    );
    assert_eq!(log.log_end_offset(), 0, "nothing of the batch was written");
    // A topic that only deletes takes them.
    let plain = PartitionLog::open(tmp.path().join("t-0"), small_segments()).unwrap();
    plain.append(keyed(&[(None, Some("v"))], now())).unwrap();
}

#[test]
fn retention_by_time_and_size_leaves_a_compact_only_topic_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(
        tmp.path().join("t-0"),
        LogConfig {
            retention_ms: 1,
            retention_bytes: 1,
            ..compacted()
        },
    )
    .unwrap();
    fill(&log, now() - 3_600_000);
    let segments = log.segment_count();
    assert_eq!(log.enforce_retention(now()).unwrap(), 0);
    assert_eq!(log.segment_count(), segments);
    // With `compact,delete` retention applies as well.
    let mut both = log.config();
    both.cleanup.delete = true;
    log.set_config(both);
    assert_eq!(log.enforce_retention(now()).unwrap(), segments - 1);
}

#[test]
fn the_leftover_of_an_interrupted_compaction_is_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let rows;
    {
        let log = PartitionLog::open(dir.clone(), compacted()).unwrap();
        rows = fill(&log, now());
        log.flush().unwrap();
    }
    // A copy written but never swapped in (the process died in between).
    let scratch = dir.join("compacting.tmp");
    std::fs::create_dir(&scratch).unwrap();
    std::fs::write(scratch.join("00000000000000000000.log"), b"half a copy").unwrap();
    let removed = crate::recovery::total(crate::recovery::Action::LeftoverRemoved);
    let log = PartitionLog::open(dir, compacted()).unwrap();
    assert!(!scratch.exists());
    assert!(crate::recovery::total(crate::recovery::Action::LeftoverRemoved) > removed);
    assert_eq!(served(&log), rows);
}

/// The header of every batch the log holds, in order, as a follower reads them (a consumer
/// gets runs of empty batches as one).
fn batch_headers(log: &PartitionLog) -> Vec<batch::BatchHeader> {
    let mut out: Vec<batch::BatchHeader> = Vec::new();
    let mut off = log.log_start_offset();
    while off < log.high_watermark() {
        let r = log.read_for_replica(off, 1 << 20).expect("read");
        let mut pos = 0;
        while pos < r.records.len() {
            let h = batch::parse_header(&r.records[pos..]).expect("header");
            if out.last().is_none_or(|l| h.base_offset > l.base_offset) {
                out.push(h);
            }
            pos += h.size;
        }
        off = out.last().expect("a batch").next_offset();
    }
    out
}

#[test]
fn emptied_batches_in_a_row_join_into_one_that_keeps_the_producer_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut rows: Vec<Row> = Vec::new();
    let end;
    {
        let log = PartitionLog::open(dir.clone(), compacted()).unwrap();
        // Idempotent producer 5 writes keys k0..k2 in 120 one-record batches (sequences
        // 0..=119), then a plain producer overwrites all three: every batch of producer 5 is
        // left empty.
        for s in 0..120 {
            let (k, v) = (format!("k{}", s % 3), format!("v{s}"));
            let b = B {
                kv: vec![(Some(k.clone()), Some(v.clone()))],
                ..B::idem(5, 0, s, 1)
            };
            let info = appended(log.append(b.build()).unwrap());
            rows.push((info.base_offset, Some(k), Some(v)));
        }
        let overwrite = [
            (Some("k0"), Some("x")),
            (Some("k1"), Some("y")),
            (Some("k2"), Some("z")),
        ];
        // Stamped a second ago: a record stamped after the compaction's `now` is too young.
        let info = appended(log.append(keyed(&overwrite, now() - 1000)).unwrap());
        for (i, (k, v)) in overwrite.iter().enumerate() {
            let s = |x: &Option<&str>| x.map(str::to_string);
            rows.push((info.base_offset + i as i64, s(k), s(v)));
        }
        // Plain one-record batches of one key until the segment holding the overwrite closes.
        let mut i = 0;
        while *log.segment_bases().last().unwrap() <= info.base_offset {
            let v = format!("f{i}");
            let info = appended(
                log.append(keyed(&[(Some("f"), Some(&v))], now() - 1000))
                    .unwrap(),
            );
            rows.push((info.base_offset, Some("f".into()), Some(v)));
            i += 1;
        }
        end = log.log_end_offset();
        log.set_hw_bound(i64::MAX);
        assert_eq!(log.high_watermark(), end);
        let c = log.compact(now()).unwrap();
        assert!(c.segments_rewritten > 0, "{c:?}");
        let active = *log.segment_bases().last().unwrap();
        assert_eq!(served(&log), model(&rows, active, true));
        let ours: Vec<batch::BatchHeader> = batch_headers(&log)
            .into_iter()
            .filter(|h| h.producer_id == 5)
            .collect();
        let closed = log.segment_count() - 1;
        // One joined empty batch per segment (each segment is rewritten on its own).
        assert!(
            ours.len() <= closed && ours.iter().all(|h| h.record_count == 0),
            "{} batches of producer 5 left in {closed} closed segments: {ours:?}",
            ours.len()
        );
        assert_eq!(
            ours.first().map(|h| (h.base_offset, h.base_sequence)),
            Some((0, 0))
        );
        let last = ours.last().unwrap();
        assert_eq!(
            (
                last.last_offset(),
                last.base_sequence + last.last_offset_delta
            ),
            (119, 119),
            "the last joined batch ends at producer 5's last offset and sequence"
        );
        // One read from the start goes through the segments left with nothing but an empty
        // batch to the first record (clients that take a fetch without records for trouble
        // would stop there), a small one too (empty batches do not count against its size).
        let first_kept = model(&rows, active, true)[0].0;
        let r = log.read(0, 1 << 20).unwrap();
        let got = all_records(&r.records).unwrap();
        assert_eq!(got.first().map(|(o, _)| *o), Some(first_kept));
        let small = log.read(0, 100).unwrap();
        let got = all_records(&small.records).unwrap();
        assert_eq!(got.first().map(|(o, _)| *o), Some(first_kept));
        // Compacting again has nothing more to join or remove.
        assert_eq!(log.compact(now()).unwrap().segments_rewritten, 0);
        log.flush().unwrap();
    }
    // The producer state rebuilt from the segments alone (no snapshot) knows producer 5's
    // next sequence from the joined batch; recovery accepts the joined batches.
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "snapshot") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let log = PartitionLog::open(dir, compacted()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    let active = *log.segment_bases().last().unwrap();
    assert_eq!(served(&log), model(&rows, active, true));
    let next = B {
        kv: vec![(Some("k0".into()), Some("again".into()))],
        ..B::idem(5, 0, 120, 1)
    };
    assert_eq!(appended(log.append(next.build()).unwrap()).base_offset, end);
    let gap = B {
        kv: vec![(Some("k0".into()), Some("gap".into()))],
        ..B::idem(5, 0, 122, 1)
    };
    assert!(matches!(
        log.append(gap.build()),
        Err(LogError::OutOfOrderSequence { expected: 121, .. })
    ));
}

#[test]
fn a_bounded_key_map_compacts_in_steps_to_the_same_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), compacted()).unwrap();
    // Eight keys (a0..a3, b0..b2, gone), stamped a second ago.
    let rows = fill(&log, now() - 1000);
    log.set_hw_bound(i64::MAX);
    let active = *log.segment_bases().last().unwrap();
    let mut steps = Vec::new();
    loop {
        let c = log.compact_bounded(now(), 3).unwrap();
        assert!(c.keys <= 3, "the map holds at most 3 keys: {c:?}");
        let before = steps.last().map_or(0, |c: &Compacted| c.mapped_to);
        assert!(
            c.mapped_to > before,
            "each step maps further: {steps:?} then {c:?}"
        );
        steps.push(c);
        if c.mapped_to == active {
            break;
        }
        assert!(steps.len() < 50, "{steps:?}");
    }
    assert!(
        steps.len() > 2,
        "eight keys take several maps of three: {steps:?}"
    );
    // What one unbounded compaction leaves.
    assert_eq!(served(&log), model(&rows, active, true));
    assert!(!log.compaction_due());
}

#[test]
fn records_written_after_a_truncation_below_the_compacted_end_are_compacted_too() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), compacted()).unwrap();
    fill(&log, now() - 1000);
    log.set_hw_bound(i64::MAX);
    let compacted_end = log.compact(now()).unwrap().mapped_to;
    // A truncation to below where that compaction's map ended (a diverged log; it cuts at the
    // start of the batch holding the offset), then new records there: a new value of the key
    // deleted at offset 20 (in what the old map covered), then one record each of new keys
    // past the old end.
    let cut = log.truncate_to(compacted_end - 10).unwrap();
    assert!(cut <= compacted_end - 10, "{cut}");
    let mut rows: Vec<Row> = served(&log);
    let ts = now() - 1000;
    let info = appended(
        log.append(keyed(&[(Some("gone"), Some("late"))], ts))
            .unwrap(),
    );
    rows.push((info.base_offset, Some("gone".into()), Some("late".into())));
    for i in 0..30 {
        let k = format!("f{i}");
        let info = appended(log.append(keyed(&[(Some(&k), Some("v"))], ts)).unwrap());
        rows.push((info.base_offset, Some(k), Some("v".into())));
    }
    let active = *log.segment_bases().last().unwrap();
    assert!(
        active > compacted_end,
        "the new records reach past the old end"
    );
    let gone = rows
        .iter()
        .filter(|r| r.1.as_deref() == Some("gone"))
        .count();
    assert_eq!(gone, 2, "the tombstone and the new value: {rows:?}");
    // The new value is mapped, so the tombstone goes.
    log.compact(now()).unwrap();
    assert_eq!(served(&log), model(&rows, active, true));
}

#[test]
fn a_read_of_a_long_run_of_empty_batches_goes_on_to_a_record_zero_copy_or_not() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 40 * 1024,
        ..compacted()
    };
    let log = PartitionLog::open(tmp.path().join("t-0"), config).unwrap();
    // One-record batches of key k, from a plain producer and producer 9 in turn (so the
    // emptied batches do not join), until a second segment has begun.
    let ts = now() - 1000;
    let mut i = 0;
    while log.segment_count() < 3 {
        let v = format!("v{i}");
        let b = if i % 2 == 0 {
            B::new(1)
        } else {
            B::idem(9, 0, i / 2, 1)
        };
        let b = B {
            kv: vec![(Some("k".into()), Some(v))],
            ..b.ts(ts)
        };
        appended(log.append(b.build()).unwrap());
        i += 1;
    }
    log.set_hw_bound(i64::MAX);
    log.compact(now()).unwrap();
    // The first segment: hundreds of 61-byte empty batches, no record.
    let first_record = served(&log)[0].0;
    assert!(first_record > 400, "{first_record}");
    // Reads smaller than the run still bring the first record, with the run served as one
    // empty batch (some clients cannot read two in a row).
    let check = |bytes: &[u8], what: &str| {
        let got = all_records(bytes).unwrap();
        assert_eq!(got.first().map(|(o, _)| *o), Some(first_record), "{what}");
        let mut pos = 0;
        let mut empties_in_a_row = 0;
        while pos < bytes.len() {
            let h = batch::parse_header(&bytes[pos..]).unwrap();
            batch::check_crc(&bytes[pos..pos + h.size]).unwrap();
            empties_in_a_row = if h.record_count == 0 {
                empties_in_a_row + 1
            } else {
                0
            };
            assert!(
                empties_in_a_row < 2,
                "{what}: two empty batches in a row at {pos}"
            );
            pos += h.size;
        }
    };
    let as_bytes = |r: ReadOutcome<Records>| match r.records {
        Records::Bytes(b) => b,
        Records::File(f) => f.read_all().unwrap(),
    };
    for _ in 0..2 {
        check(&log.read(0, 20_000).unwrap().records, "read");
        check(
            &as_bytes(log.read_for_send(0, 20_000).unwrap()),
            "zero-copy read",
        );
    }
    // A follower gets the batches as they are.
    let raw = log.read_for_replica(0, 20_000).unwrap().records;
    assert_eq!(batch::parse_header(&raw).unwrap().last_offset(), 0);
    // Once the topic is no longer compacted its empty batches are served as they are, but a
    // read that would be a file region starting with one is read as bytes, to get past them.
    let mut plain = log.config();
    plain.cleanup = CleanupPolicy::DELETE;
    log.set_config(plain);
    let served_raw = log.read(0, 20_000).unwrap().records;
    let second = batch::parse_header(&served_raw[batch::HEADER_LEN..]).unwrap();
    assert_eq!(second.record_count, 0, "runs are served as they are again");
    for _ in 0..2 {
        let z = as_bytes(log.read_for_send(0, 20_000).unwrap());
        let got = all_records(&z).unwrap();
        assert_eq!(got.first().map(|(o, _)| *o), Some(first_record));
    }
}

/// A transactional batch of producer `pid` with these (key, value) records.
fn txn_keyed(pid: i64, seq: i32, records: &[(Option<&str>, Option<&str>)]) -> Bytes {
    B {
        pid,
        epoch: 0,
        seq,
        txn: true,
        ..B::keyed(records)
    }
    .build()
}

fn end_txn(log: &PartitionLog, pid: i64, m: super::txn::Marker) {
    let marker = super::txn::build_marker(pid, 0, m, 0, now());
    appended(log.append_marker(Bytes::from(marker), 0).unwrap());
}

/// The (key, value) rows served, without the markers' control records (keys not UTF-8 text of
/// a letter).
fn data_rows(log: &PartitionLog) -> Vec<(String, String)> {
    served(log)
        .into_iter()
        .filter_map(|(_, k, v)| {
            let k = k.filter(|k| k.starts_with(|c: char| c.is_ascii_alphabetic()))?;
            Some((k, v.unwrap_or_default()))
        })
        .collect()
}

#[test]
fn compaction_removes_aborted_records_compacts_committed_ones_and_waits_for_open_ones() {
    use super::txn::Marker;
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), compacted()).unwrap();
    // Uncompressed, so that the padding rolls segments of 1,000 bytes.
    let plain = |k: &str, v: &str| B::keyed(&[(Some(k), Some(v))]).build();
    let pad = "p".repeat(300);
    // Producer 10 commits k0 and k1; producer 11 writes k0 and k2 and aborts. The aborted k0
    // is later than the committed one but must never stand for k0's latest value.
    appended(
        log.append(txn_keyed(
            10,
            0,
            &[(Some("k0"), Some("c")), (Some("k1"), Some("c"))],
        ))
        .unwrap(),
    );
    appended(
        log.append(txn_keyed(
            11,
            0,
            &[(Some("k0"), Some("aborted")), (Some("k2"), Some("aborted"))],
        ))
        .unwrap(),
    );
    end_txn(&log, 10, Marker::Commit);
    end_txn(&log, 11, Marker::Abort);
    // A plain write supersedes the committed k1; padding rolls segments.
    appended(log.append(plain("k1", "plain")).unwrap());
    for i in 0..6 {
        let key = format!("pad{i}");
        appended(log.append(plain(&key, &pad)).unwrap());
    }
    // Producer 12 opens a transaction and leaves it open: nothing from its first offset on may
    // be compacted, not even plain records with a later value of their key.
    appended(
        log.append(txn_keyed(12, 0, &[(Some("k3"), Some("open"))]))
            .unwrap(),
    );
    let open_at = log.log_end_offset() - 1;
    for v in ["z1", "z2"] {
        appended(log.append(plain("z", v)).unwrap());
        for i in 0..3 {
            let key = format!("pad{i}");
            appended(log.append(plain(&key, &pad)).unwrap());
        }
    }
    assert_eq!(log.last_stable_offset(), open_at);
    let bases = log.segment_bases();
    assert!(
        bases.iter().filter(|b| **b > open_at).count() >= 2,
        "{bases:?}"
    );

    let c = log.compact(now()).unwrap();
    assert!(c.records_removed > 0, "{c:?}");
    let rows = data_rows(&log);
    let values = |k: &str| -> Vec<String> {
        rows.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(
        values("k0"),
        ["c"],
        "the committed k0 stays, the aborted one goes"
    );
    assert_eq!(values("k1"), ["plain"], "the committed k1 is superseded");
    assert!(
        values("k2").is_empty(),
        "an aborted record goes even as its key's only one"
    );
    assert_eq!(values("k3"), ["open"]);
    assert_eq!(
        values("z"),
        ["z1", "z2"],
        "nothing past the open transaction is compacted"
    );
    // read_committed still skips the (now empty) aborted transaction.
    assert_eq!(log.aborted_transactions(0, open_at), vec![(11, 2)]);

    // Once the transaction commits, the rest is compacted too.
    end_txn(&log, 12, Marker::Commit);
    for i in 0..6 {
        let key = format!("pad{i}");
        appended(log.append(plain(&key, &pad)).unwrap());
    }
    log.compact(now()).unwrap();
    let rows = data_rows(&log);
    let z: Vec<&str> = rows
        .iter()
        .filter(|(k, _)| k == "z")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(z, ["z2"]);
    assert!(rows.iter().any(|(k, v)| k == "k3" && v == "open"));
    let end = log.log_end_offset();
    drop(log);

    // A restart rebuilds the same transaction state from the compacted segments (the emptied
    // aborted batch still opens producer 11's transaction, its marker still ends it).
    let log = PartitionLog::open(tmp.path().join("t-0"), compacted()).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.last_stable_offset(), end);
    assert_eq!(log.aborted_transactions(0, end), vec![(11, 2)]);
    assert!(data_rows(&log).iter().all(|(k, _)| k != "k2"));
}
