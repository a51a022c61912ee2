//! What zero-copy fetches ask of the log (`region.rs`): a consumer's read of bytes this
//! process checked is a file region of whole batches below the high watermark within the
//! limit, the same bytes a read returns; anything not checked in this process is read and
//! checked first, and a damaged batch is never part of a region.

use super::*;

/// 300 batches of ~330 bytes: ~100 KiB, an index entry every ~4 KiB.
fn filled(dir: &Path) -> PartitionLog {
    let log = PartitionLog::open(dir.to_path_buf(), cfg()).unwrap();
    for i in 0..300 {
        log.append(B::new(10).tag(&format!("m{i:03}")).build())
            .unwrap();
    }
    log
}

fn region(out: &ReadOutcome<Records>) -> &FileRegion {
    match &out.records {
        Records::File(r) => r,
        Records::Bytes(b) => panic!("{} bytes in memory, not a file region", b.len()),
    }
}

fn in_memory(out: &ReadOutcome<Records>) -> &Bytes {
    match &out.records {
        Records::Bytes(b) => b,
        Records::File(r) => panic!("a file region of {} bytes, not bytes", r.len),
    }
}

#[test]
fn appended_bytes_are_served_as_regions_of_whole_batches_within_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let log = filled(&tmp.path().join("t-0"));
    let batch_len = B::new(10).tag("m000").build().len();
    for (offset, max) in [(0, 1 << 20), (0, 20_000), (375, 30_000), (1234, 50_000)] {
        let out = log.read_for_send(offset, max).unwrap();
        let got = region(&out).read_all().unwrap();
        let want = log.read(offset, max).unwrap().records;
        assert!(got.len() <= max, "offset {offset}, max {max}");
        assert!(
            want.starts_with(&got),
            "offset {offset}: a prefix of the read"
        );
        // Cut at an indexed batch start: at most an index interval (and a batch) short.
        assert!(
            got.len() + 4096 + batch_len >= want.len(),
            "offset {offset}, max {max}: {} of {}",
            got.len(),
            want.len()
        );
        // Whole batches (decode_all checks every CRC and refuses a partial one), starting
        // with the batch that holds the offset.
        let recs = decode_all(&got);
        assert!(recs[0].0 <= offset && recs.iter().any(|r| r.0 == offset));
        assert_eq!((out.high_watermark, out.log_start_offset), (3000, 0));
    }
    // A read shorter than REGION_MIN is copied, the log end is empty.
    assert_eq!(
        in_memory(&log.read_for_send(0, 1000).unwrap()),
        &log.read(0, 1000).unwrap().records
    );
    assert!(in_memory(&log.read_for_send(3000, 1 << 20).unwrap()).is_empty());
}

#[test]
fn after_a_restart_bytes_become_regions_once_a_read_checked_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let whole = {
        let log = filled(&dir);
        log.flush().unwrap();
        log.read(0, 1 << 20).unwrap().records
    };
    let log = PartitionLog::open(dir, cfg()).unwrap();
    assert!(log.checked_ranges().is_empty(), "nothing checked at open");
    let first = log.read_for_send(0, 30_000).unwrap();
    let checked = in_memory(&first).clone();
    assert!(whole.starts_with(&checked));
    assert_eq!(log.checked_ranges(), [(0, checked.len() as u64)]);
    let again = log.read_for_send(0, 30_000).unwrap();
    assert!(checked.starts_with(&region(&again).read_all().unwrap()));
    // Past what was checked: read (and checked) first, then a region.
    let next = decode_all(&checked).last().unwrap().0 + 1;
    let beyond = in_memory(&log.read_for_send(next, 1 << 20).unwrap()).clone();
    assert_eq!(beyond, whole.slice(checked.len()..));
    assert_eq!(log.checked_ranges(), [(0, whole.len() as u64)]);
    let last = log.read_for_send(next, 1 << 20).unwrap();
    assert_eq!(region(&last).read_all().unwrap(), beyond);
    // The offset after a region's last batch, from its headers in the file, is the one the
    // same bytes in memory end at.
    let end = decode_all(&beyond).last().unwrap().0 + 1;
    assert!(matches!(last.records, Records::File(_)));
    assert_eq!(last.records.next_offset().unwrap(), Some(end));
    assert_eq!(Records::Bytes(beyond).next_offset().unwrap(), Some(end));
    assert_eq!(Records::Bytes(Bytes::new()).next_offset().unwrap(), None);
}

#[test]
fn a_batch_damaged_before_a_restart_is_never_part_of_a_region() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let batch_len = {
        let log = filled(&dir);
        log.flush().unwrap();
        B::new(10).tag("m000").build().len() as u64
    };
    // Flip a byte inside the records of batch 100 (offsets 1000..1010).
    let path = active_log_file(&dir);
    let at = 100 * batch_len + 70;
    flip_byte(&path, at);

    let log = PartitionLog::open(dir, cfg()).unwrap();
    for round in 0..3 {
        let out = log.read_for_send(0, 1 << 20).unwrap();
        let got = out.records.clone().into_bytes().unwrap();
        let last = decode_all(&got).last().unwrap().0;
        assert_eq!(last, 999, "round {round}: stops before the damaged batch");
        let err = log.read_for_send(1000, 1 << 20).unwrap_err();
        assert!(matches!(err, LogError::CorruptBatch { .. }), "{err:?}");
        // After it, served (and a region once checked).
        let tail = log.read_for_send(1010, 1 << 20).unwrap();
        let got = tail.records.clone().into_bytes().unwrap();
        assert_eq!(decode_all(&got)[0].0, 1010);
        if round > 0 {
            // Checked by the first round's read, then served from the file.
            region(&out);
            region(&tail);
        }
    }
    // Nothing checked covers the damaged batch.
    let damaged = (100 * batch_len, 101 * batch_len);
    assert!(log
        .checked_ranges()
        .iter()
        .all(|r| r.1 <= damaged.0 || r.0 >= damaged.1));
}

#[test]
fn a_followers_truncation_forgets_what_was_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let log = filled(&tmp.path().join("t-0"));
    region(&log.read_for_send(0, 1 << 20).unwrap());
    log.truncate_to(2000).unwrap();
    // The reopened segment was checked by recovery's scan, not by a read of this process:
    // read and checked again, then a region that ends at the new log end.
    let out = log.read_for_send(0, 1 << 20).unwrap();
    let got = in_memory(&out).clone();
    assert_eq!(decode_all(&got).last().unwrap().0, 1999);
    let again = log.read_for_send(0, 1 << 20).unwrap();
    assert_eq!(region(&again).read_all().unwrap(), got);
}

#[test]
fn a_followers_read_is_a_region_up_to_the_log_end_and_a_consumers_stops_at_the_high_watermark() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    // As a leader whose followers have only the first 1,000 records.
    log.set_hw_bound(1000);
    for i in 0..300 {
        log.append(B::new(10).tag(&format!("m{i:03}")).build())
            .unwrap();
    }
    assert_eq!((log.high_watermark(), log.log_end_offset()), (1000, 3000));

    let follower = log.read_for_replica_send(0, 1 << 20).unwrap();
    let got = region(&follower).read_all().unwrap();
    assert_eq!(got, log.read_for_replica(0, 1 << 20).unwrap().records);
    let recs = decode_all(&got);
    assert_eq!((recs[0].0, recs.last().unwrap().0), (0, 2999));
    assert_eq!(
        follower.high_watermark, 1000,
        "the high watermark is reported as it is"
    );

    let consumer = log.read_for_send(0, 1 << 20).unwrap();
    let got = region(&consumer).read_all().unwrap();
    assert_eq!(decode_all(&got).last().unwrap().0, 999);
    // Past the high watermark only a follower reads anything.
    assert!(in_memory(&log.read_for_send(1000, 1 << 20).unwrap()).is_empty());
    let above = log.read_for_replica_send(1000, 1 << 20).unwrap();
    assert_eq!(decode_all(&region(&above).read_all().unwrap())[0].0, 1000);
}
