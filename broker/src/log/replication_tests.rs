//! What replication asks of the log: the leader-epoch cache, the high-watermark bound, reads
//! up to the log end, truncation and restart of a follower's copy. Real files, real fsync.

use super::*;

/// A batch of `n` records as a leader at `epoch` stored it at `base`.
fn stored(base: i64, epoch: i32, n: usize, tag: &str) -> Bytes {
    let tag = format!("{tag}{}", "-".repeat(100));
    let mut b = BytesMut::from(&B::new(n).tag(&tag).build()[..]);
    batch::rewrite_offset_and_epoch(&mut b, base, epoch);
    b.freeze()
}

fn stored_idem(base: i64, epoch: i32, pid: i64, seq: i32, n: usize) -> Bytes {
    let big = "x".repeat(150);
    let mut b = BytesMut::from(&B::idem(pid, 0, seq, n).tag(&big).build()[..]);
    batch::rewrite_offset_and_epoch(&mut b, base, epoch);
    b.freeze()
}

fn all_up_to_end(log: &PartitionLog) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut off = log.log_start_offset();
    while off < log.log_end_offset() {
        let r = log.read_for_replica(off, 1 << 20).expect("read");
        let recs = decode_all(&r.records);
        let last = recs.last().expect("records").0;
        out.extend(recs.into_iter().filter(|(o, _)| *o >= off));
        off = last + 1;
    }
    out
}

#[test]
fn follower_appends_keep_offsets_and_epochs_and_fill_the_epoch_cache() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = PartitionLog::open(dir.path().join("t-0"), cfg()).expect("open");
    log.append_replicated(stored(0, 0, 3, "a"))
        .expect("epoch 0");
    log.append_replicated(stored(3, 2, 2, "b"))
        .expect("epoch 2");
    log.append_replicated(stored(5, 2, 1, "c"))
        .expect("epoch 2 again");
    log.append_replicated(stored(6, 5, 4, "d"))
        .expect("epoch 5");
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 3), (5, 6)]);
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(0), (0, 3));
    assert_eq!(log.end_offset_for_epoch(1), (0, 3));
    assert_eq!(log.end_offset_for_epoch(2), (2, 6));
    assert_eq!(log.end_offset_for_epoch(5), (5, 10));
    // A batch that does not start at the log end is refused and changes nothing.
    assert!(log.append_replicated(stored(12, 5, 1, "x")).is_err());
    assert_eq!(log.log_end_offset(), 10);
    drop(log);
    let log = PartitionLog::open(dir.path().join("t-0"), cfg()).expect("reopen");
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 3), (5, 6)]);
}

#[test]
fn a_new_leader_records_where_its_epoch_starts_and_stamps_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = PartitionLog::open(dir.path().join("t-0"), cfg()).expect("open");
    log.append(B::new(2).build()).expect("epoch 0 append");
    assert_eq!(log.epoch_entries(), vec![(0, 0)]);
    log.become_leader(3).expect("leader at 3");
    log.append(B::new(1).build()).expect("epoch 3 append");
    assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 2)]);
    let r = log.read_for_replica(2, 1 << 20).expect("read");
    let h = batch::parse_header(&r.records).expect("header");
    assert_eq!((h.base_offset, h.partition_leader_epoch), (2, 3));
    // Becoming leader at an older epoch records nothing.
    log.become_leader(1).expect("older epoch");
    assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 2)]);
}

#[test]
fn a_new_leader_wants_an_unknown_producers_first_batch_before_its_later_ones() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = PartitionLog::open(dir.path().join("t-0"), cfg()).expect("open");
    // Never led here: an unknown producer may start anywhere (its state expired), as on Kafka.
    log.append(B::idem(7, 0, 40, 2).build())
        .expect("an unknown producer at sequence 40");
    // A producer that wrote before the leadership moved is known from the replicated log.
    log.append_replicated(stored_idem(2, 1, 8, 0, 3))
        .expect("producer 8's batch, replicated");
    log.become_leader(2).expect("leader at 2");
    let e = log.append(B::idem(9, 0, 5, 1).build()).unwrap_err();
    assert!(
        matches!(
            e,
            LogError::SequenceBeforeFirst {
                producer_id: 9,
                got: 5
            }
        ),
        "{e}"
    );
    assert_eq!(e.kafka_code(), 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    assert_eq!(log.log_end_offset(), 5, "nothing appended");
    // Its first batch, then the one refused, in sequence.
    log.append(B::idem(9, 0, 0, 5).build()).expect("sequence 0");
    log.append(B::idem(9, 0, 5, 1).build()).expect("sequence 5");
    // Known producers go on where they were.
    log.append(B::idem(8, 0, 3, 1).build())
        .expect("producer 8 at 3");
    log.append(B::idem(7, 0, 42, 1).build())
        .expect("producer 7 at 42");
    assert!(matches!(
        log.append(B::idem(8, 0, 9, 1).build()),
        Err(LogError::OutOfOrderSequence { expected: 4, .. })
    ));
}

#[test]
fn a_lost_or_damaged_epoch_file_is_rebuilt_from_the_batches() {
    let dir = tempfile::tempdir().expect("tmp");
    let pdir = dir.path().join("t-0");
    let log = PartitionLog::open(pdir.clone(), small_segments()).expect("open");
    let mut base = 0;
    for epoch in [0, 0, 1, 1, 4, 4, 4] {
        log.append_replicated(stored(base, epoch, 3, "x"))
            .expect("append");
        base += 3;
    }
    let expected = log.epoch_entries();
    assert_eq!(expected, vec![(0, 0), (1, 6), (4, 12)]);
    drop(log);
    let file = pdir.join(EpochCache::path(&pdir).file_name().expect("name"));
    std::fs::write(&file, "garbage").expect("damage");
    let log = PartitionLog::open(pdir.clone(), small_segments()).expect("reopen");
    assert_eq!(log.epoch_entries(), expected);
    drop(log);
    std::fs::remove_file(&file).expect("remove");
    let log = PartitionLog::open(pdir.clone(), small_segments()).expect("reopen");
    assert_eq!(log.epoch_entries(), expected);
    drop(log);
    // A file that misses the newest epoch (its write failed) is rebuilt too.
    std::fs::write(&file, "0\n1\n0 0\n").expect("stale");
    let log = PartitionLog::open(pdir, small_segments()).expect("reopen");
    assert_eq!(log.epoch_entries(), expected);
}

#[test]
fn the_high_watermark_stops_at_the_bound_but_followers_read_to_the_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = PartitionLog::open(dir.path().join("t-0"), cfg()).expect("open");
    log.set_hw_bound(2);
    log.append(B::new(2).build()).expect("append");
    log.append(B::new(3).build()).expect("append");
    assert_eq!((log.log_end_offset(), log.high_watermark()), (5, 2));
    assert_eq!(
        read_all(&log).len(),
        2,
        "consumers stop at the high watermark"
    );
    assert_eq!(
        all_up_to_end(&log).len(),
        5,
        "followers read to the log end"
    );
    log.set_hw_bound(4);
    assert_eq!(log.high_watermark(), 4);
    // The bound never lowers it.
    log.set_hw_bound(1);
    assert_eq!(log.high_watermark(), 4);
    log.set_hw_bound(2);
    log.set_hw_bound(i64::MAX);
    assert_eq!(log.high_watermark(), 5);
}

#[test]
fn the_bound_and_durability_both_hold_the_high_watermark_under_fsync_always() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        let config = LogConfig {
            fsync: FsyncPolicy::Always,
            ..cfg()
        };
        let log = Arc::new(PartitionLog::open(dir.path().join("t-0"), config).expect("open"));
        log.set_hw_bound(0);
        let info = appended(log.append(B::new(3).build()).expect("append"));
        log.wait_durable(info.last_offset).await.expect("durable");
        assert_eq!(log.high_watermark(), 0, "durable but not replicated");
        let waiter = {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.wait_high_watermark(info.last_offset).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        log.set_hw_bound(3);
        waiter.await.expect("join").expect("replicated");
        assert_eq!(log.high_watermark(), 3);
    });
}

#[test]
fn truncation_cuts_at_a_batch_boundary_and_everything_follows() {
    let dir = tempfile::tempdir().expect("tmp");
    let pdir = dir.path().join("t-0");
    let log = PartitionLog::open(pdir.clone(), small_segments()).expect("open");
    // Idempotent batches: the producer state must forget what truncation removes.
    let mut base = 0;
    let mut seq = 0;
    for epoch in [0, 0, 0, 2, 2, 2, 3, 3] {
        log.append_replicated(stored_idem(base, epoch, 7, seq, 2))
            .expect("append");
        base += 2;
        seq += 2;
    }
    assert!(log.segment_count() > 2, "the test needs several segments");
    log.set_hw_bound(i64::MAX);
    assert_eq!(log.high_watermark(), 16);
    // Offset 9 is inside the batch 8..=9: the log is cut to 8.
    assert_eq!(log.truncate_to(9).expect("truncate"), 8);
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.high_watermark(), 8);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (2, 6)]);
    assert_eq!(all_up_to_end(&log).len(), 8);
    // The producer's next sequence is 8 again (10.. were cut).
    let info = appended(
        log.append(B::idem(7, 0, 8, 2).build())
            .expect("sequence 8 continues"),
    );
    assert_eq!(info.base_offset, 8);
    // Truncating at or past the end changes nothing.
    assert_eq!(log.truncate_to(100).expect("no-op"), 10);
    drop(log);
    let log = PartitionLog::open(pdir, small_segments()).expect("reopen");
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(all_up_to_end(&log).len(), 10);
}

#[test]
fn truncation_to_the_log_start_leaves_an_empty_log_that_takes_appends() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = PartitionLog::open(dir.path().join("t-0"), small_segments()).expect("open");
    for i in 0..6 {
        log.append_replicated(stored(i * 3, 1, 3, "x"))
            .expect("append");
    }
    assert_eq!(log.truncate_to(0).expect("truncate"), 0);
    assert_eq!((log.log_end_offset(), log.segment_count()), (0, 1));
    assert!(log.epoch_entries().is_empty());
    log.append_replicated(stored(0, 4, 2, "y")).expect("append");
    assert_eq!(log.epoch_entries(), vec![(4, 0)]);
}

#[test]
fn a_copy_restarts_empty_at_the_leaders_log_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let pdir = dir.path().join("t-0");
    let log = PartitionLog::open(pdir.clone(), small_segments()).expect("open");
    for i in 0..4 {
        log.append_replicated(stored(i * 3, 1, 3, "x"))
            .expect("append");
    }
    log.reset_to(500).expect("reset");
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (500, 500, 500)
    );
    assert!(log.epoch_entries().is_empty());
    log.append_replicated(stored(500, 2, 3, "y"))
        .expect("append at 500");
    drop(log);
    let log = PartitionLog::open(pdir, small_segments()).expect("reopen");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 503));
    assert_eq!(log.epoch_entries(), vec![(2, 500)]);
    assert_eq!(all_up_to_end(&log).len(), 3);
}

#[test]
fn a_follower_moves_its_log_start_with_the_leader() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = PartitionLog::open(dir.path().join("t-0"), small_segments()).expect("open");
    for (i, epoch) in [1, 1, 2, 2].into_iter().enumerate() {
        log.append_replicated(stored(i as i64 * 3, epoch, 3, "x"))
            .expect("append");
    }
    // The follower's own high watermark may lag; the leader's start still applies.
    assert_eq!(log.follow_log_start(7).expect("move"), 7);
    assert_eq!(log.log_start_offset(), 7);
    assert_eq!(log.epoch_entries(), vec![(2, 7)]);
    // Never past the copy's own end.
    assert_eq!(log.follow_log_start(50).expect("move"), 12);
}

#[test]
fn becoming_a_follower_holds_the_high_watermark_until_the_leader_reports_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = PartitionLog::open(dir.path().join("t-0"), cfg()).expect("open");
    log.append(B::new(5).build()).expect("append");
    assert_eq!(log.high_watermark(), 5);
    log.become_follower(1);
    assert_eq!(log.high_watermark(), 0);
    log.append_replicated(stored(5, 1, 2, "y"))
        .expect("follower append");
    assert_eq!(
        log.high_watermark(),
        0,
        "a follower's own writes do not raise it"
    );
    log.set_hw_bound(6);
    assert_eq!(log.high_watermark(), 6);
}
