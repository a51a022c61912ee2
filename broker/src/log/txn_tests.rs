//! Transactions on real files: the last stable offset held by open transactions, markers
//! ending them, aborted transactions listed for `read_committed` reads, all of it rebuilt
//! after a restart (from the snapshot, and from every segment without one) and by a
//! follower copying the log.

use super::txn::{build_marker, Marker};
use super::*;

fn txn(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    B {
        txn: true,
        ..B::idem(pid, epoch, seq, n)
    }
    .build()
}

fn marker(pid: i64, epoch: i16, m: Marker) -> Bytes {
    Bytes::from(build_marker(pid, epoch, m, 0, now()))
}

/// The offsets a `read_committed` consumer is given, and the aborted transactions named for
/// them, read from `from` by batch headers up to the last stable offset.
fn committed_batches(log: &PartitionLog, from: i64) -> Vec<(i64, i64, bool)> {
    let mut out = Vec::new();
    let mut off = from;
    while off < log.last_stable_offset() {
        let r = log.read_committed(off, 1 << 20).expect("read");
        assert!(
            !r.records.is_empty(),
            "a read below the LSO returns a batch"
        );
        let mut pos = 0;
        while pos < r.records.len() {
            let h = batch::parse_header(&r.records[pos..]).expect("header");
            assert!(h.next_offset() <= log.last_stable_offset());
            out.push((h.base_offset, h.producer_id, h.is_control()));
            off = h.next_offset();
            pos += h.size;
        }
    }
    out
}

/// Writes the transactions of two producers interleaved with plain batches:
///
/// ```text
/// 0..=2 plain   3..=4 txn p10   5..=6 txn p11   7 plain   8 ABORT p10   9 COMMIT p11
/// ```
fn two_transactions(log: &PartitionLog) {
    appended(log.append(B::new(3).build()).unwrap());
    appended(log.append(txn(10, 0, 0, 2)).unwrap());
    assert_eq!(log.last_stable_offset(), 3, "held at p10's first offset");
    assert_eq!(log.high_watermark(), 5);
    appended(log.append(txn(11, 0, 0, 2)).unwrap());
    appended(log.append(B::new(1).build()).unwrap());
    assert_eq!(log.last_stable_offset(), 3);
    let abort = appended(log.append_marker(marker(10, 0, Marker::Abort), 0).unwrap());
    assert_eq!(abort.base_offset, 8);
    assert_eq!(log.last_stable_offset(), 5, "now held by p11");
    appended(log.append_marker(marker(11, 0, Marker::Commit), 0).unwrap());
}

#[test]
fn open_transactions_hold_the_last_stable_offset_and_aborts_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    appended(log.append(B::new(3).build()).unwrap());
    appended(log.append(txn(10, 0, 0, 2)).unwrap());
    // read_committed stops before the open transaction; read_uncommitted does not.
    assert_eq!(committed_batches(&log, 0), vec![(0, -1, false)]);
    assert!(!log.read(3, 1 << 20).unwrap().records.is_empty());
    assert!(log.read_committed(3, 1 << 20).unwrap().records.is_empty());
    drop(log);
    std::fs::remove_dir_all(tmp.path().join("t-0")).unwrap();

    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    two_transactions(&log);
    assert_eq!(log.last_stable_offset(), 10);
    assert_eq!(log.high_watermark(), 10);
    assert_eq!(
        committed_batches(&log, 0),
        vec![
            (0, -1, false),
            (3, 10, false),
            (5, 11, false),
            (7, -1, false),
            (8, 10, true),
            (9, 11, true)
        ]
    );
    assert_eq!(log.aborted_transactions(0, 10), vec![(10, 3)]);
    // Only the aborted transactions with records in the range read.
    assert_eq!(log.aborted_transactions(9, 10), vec![]);
    assert_eq!(log.aborted_transactions(0, 3), vec![]);
    assert_eq!(log.aborted_transactions(4, 5), vec![(10, 3)]);
}

#[test]
fn markers_from_an_older_epoch_are_refused_and_a_newer_one_fences_the_producer() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    appended(log.append(txn(10, 1, 0, 2)).unwrap());
    let stale = log.append_marker(marker(10, 0, Marker::Commit), 0);
    assert!(
        matches!(stale, Err(LogError::InvalidProducerEpoch { .. })),
        "{stale:?}"
    );
    assert_eq!(log.last_stable_offset(), 0);
    // The coordinator aborts a timed-out transaction with the next epoch: the producer's
    // late batch of the old epoch is refused.
    appended(log.append_marker(marker(10, 2, Marker::Abort), 0).unwrap());
    assert_eq!(log.last_stable_offset(), 3);
    let late = log.append(txn(10, 1, 2, 1));
    assert!(
        matches!(late, Err(LogError::InvalidProducerEpoch { .. })),
        "{late:?}"
    );
    // A marker from a leader epoch this log is not in is refused whole.
    let fenced = log.append_marker(marker(10, 2, Marker::Abort), 5);
    assert!(matches!(fenced, Err(LogError::Fenced { .. })), "{fenced:?}");
    // A client may not produce a control batch.
    let produced = log.append(marker(10, 2, Marker::Commit));
    assert!(produced.is_err());
    // A marker is one control batch: a data batch is no marker.
    assert!(log.append_marker(txn(10, 2, 0, 1), 0).is_err());
}

#[test]
fn transaction_state_survives_a_restart_with_and_without_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
    two_transactions(&log);
    // Rolls segments (1,000 bytes each), so the state is in snapshots and scanned segments.
    for i in 0..20 {
        appended(
            log.append(B::new(5).tag(&format!("fill{i}")).build())
                .unwrap(),
        );
    }
    let open_at = log.log_end_offset();
    appended(log.append(txn(12, 0, 0, 3)).unwrap());
    appended(log.append(B::new(2).build()).unwrap());
    let end = log.log_end_offset();
    assert!(log.segment_count() > 3);
    let want = (log.aborted_transactions(0, end), log.last_stable_offset());
    assert_eq!(want, (vec![(10, 3)], open_at));
    let before = committed_batches(&log, 0);
    // A crash: no clean shutdown record.
    log.flush().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
    assert_eq!(
        (log.aborted_transactions(0, end), log.last_stable_offset()),
        want
    );
    assert_eq!(committed_batches(&log, 0), before);
    // Without any producer snapshot: every segment's batches are replayed, markers read.
    log.flush_at_shutdown().unwrap();
    drop(log);
    let mut removed = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(e.path()).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0);
    // Without the clean shutdown's record too (it carries the producer state).
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".log")
            && !name.ends_with("index")
            && !name.contains("epoch")
            && !name.contains("log-start")
            && e.path().is_file()
        {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let log = PartitionLog::open(dir.clone(), small_segments()).unwrap();
    assert_eq!(
        (log.aborted_transactions(0, end), log.last_stable_offset()),
        want
    );
    // The open transaction ends; everything is stable.
    appended(log.append_marker(marker(12, 0, Marker::Commit), 0).unwrap());
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}

#[test]
fn a_follower_copying_markers_rebuilds_the_same_transaction_state() {
    let tmp = tempfile::tempdir().unwrap();
    let leader = PartitionLog::open(tmp.path().join("l-0"), cfg()).unwrap();
    let follower = PartitionLog::open(tmp.path().join("f-0"), cfg()).unwrap();
    two_transactions(&leader);
    appended(leader.append(txn(12, 0, 0, 1)).unwrap());
    let mut off = 0;
    while off < leader.log_end_offset() {
        let r = leader.read_for_replica(off, 100).unwrap();
        off = follower.append_replicated(r.records).unwrap();
    }
    assert_eq!(follower.aborted_transactions(0, 20), vec![(10, 3)]);
    assert_eq!(follower.last_stable_offset(), 10);
    assert_eq!(
        committed_batches(&follower, 0),
        committed_batches(&leader, 0)
    );
}

#[test]
fn a_late_marker_of_a_former_coordinator_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    let marker_of = |coordinator_epoch| {
        Bytes::from(build_marker(
            10,
            0,
            Marker::Commit,
            coordinator_epoch,
            now(),
        ))
    };
    appended(log.append(txn(10, 0, 0, 2)).unwrap());
    // The transaction's markers, written by the coordinator of epoch 5 (a coordinator that
    // took over from the one of epoch 3).
    appended(log.append_marker(marker_of(5), 0).unwrap());
    // The producer's next transaction is open here...
    appended(log.append(txn(10, 0, 2, 2)).unwrap());
    assert_eq!(log.last_stable_offset(), 3);
    // ...when the former coordinator's marker for the first one arrives: refused, so it
    // cannot end the second one.
    let late = log.append_marker(marker_of(3), 0);
    assert!(
        matches!(
            late,
            Err(LogError::CoordinatorFenced {
                current: 5,
                got: 3,
                ..
            })
        ),
        "{late:?}"
    );
    assert_eq!(log.last_stable_offset(), 3);
    // The coordinator epoch survives a restart with the producer state.
    log.flush().unwrap();
    drop(log);
    let log = PartitionLog::open(tmp.path().join("t-0"), cfg()).unwrap();
    assert!(matches!(
        log.append_marker(marker_of(4), 0),
        Err(LogError::CoordinatorFenced { .. })
    ));
    appended(log.append_marker(marker_of(5), 0).unwrap());
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}
