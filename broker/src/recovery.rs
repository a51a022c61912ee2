//! Recovery actions: what the broker did to files it found damaged or left behind by a crash
//! (a torn segment tail cut, an index rebuilt, a leftover removed) and the stored batches it
//! refused to serve because their CRC failed. The code that acts logs a WARN naming the file
//! and counts the action here by kind; `/metrics` exports the counts as
//! `sluice_recovery_actions_total{kind}` (see `docs/reliability.md`).
//!
//! The counters are per process, not per broker: recovery runs in `log`, `cluster` and
//! `group`, which import nothing of the broker but this, before the metrics registry exists;
//! and outside tests one process runs one broker.
//!
//! May import nothing of the broker.

use std::sync::atomic::{AtomicU64, Ordering};

/// One kind of recovery action (the metric's `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// A segment's torn or corrupt tail was cut off.
    SegmentTruncated,
    /// A segment after a torn or misaligned one was removed.
    SegmentRemoved,
    /// An empty segment file that did not fit the sequence of segments was removed.
    StraySegmentRemoved,
    /// A damaged, missing or stale offset or time index was rebuilt from its log.
    IndexRebuilt,
    /// A file left by an interrupted write or delete was removed (`*.tmp`, an index without
    /// its log).
    LeftoverRemoved,
    /// The leader-epoch checkpoint was damaged or stale and was rebuilt from the batches.
    EpochCacheRebuilt,
    /// A damaged `log-start-offset` file was ignored (the log starts at its first segment).
    LogStartIgnored,
    /// A damaged producer snapshot was ignored (the state was rebuilt from batch headers).
    ProducerSnapshotIgnored,
    /// A partition directory of a topic the broker no longer has was removed.
    OrphanPartitionRemoved,
    /// The Raft log's torn tail was cut off.
    RaftLogTruncated,
    /// A damaged Raft hint file (`committed.json`) was ignored.
    RaftHintIgnored,
    /// A log ended before where the last clean shutdown left it (a segment emptied, removed
    /// or cut while the broker was stopped): records that were durable are gone. Reported
    /// only; nothing can bring them back from this copy.
    LogEndLost,
    /// A stored batch failed its CRC when read and was not served.
    CorruptBatchRefused,
    /// A batch failed its CRC at recovery but intact batches follow it: it stays in place
    /// (cutting there would drop them) and reads refuse it.
    CorruptBatchKept,
}

impl Action {
    /// Every kind, in the order of the counters.
    pub const ALL: [Action; 14] = [
        Action::SegmentTruncated,
        Action::SegmentRemoved,
        Action::StraySegmentRemoved,
        Action::IndexRebuilt,
        Action::LeftoverRemoved,
        Action::EpochCacheRebuilt,
        Action::LogStartIgnored,
        Action::ProducerSnapshotIgnored,
        Action::OrphanPartitionRemoved,
        Action::RaftLogTruncated,
        Action::RaftHintIgnored,
        Action::LogEndLost,
        Action::CorruptBatchRefused,
        Action::CorruptBatchKept,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Action::SegmentTruncated => "segment_truncated",
            Action::SegmentRemoved => "segment_removed",
            Action::StraySegmentRemoved => "stray_segment_removed",
            Action::IndexRebuilt => "index_rebuilt",
            Action::LeftoverRemoved => "leftover_removed",
            Action::EpochCacheRebuilt => "epoch_cache_rebuilt",
            Action::LogStartIgnored => "log_start_ignored",
            Action::ProducerSnapshotIgnored => "producer_snapshot_ignored",
            Action::OrphanPartitionRemoved => "orphan_partition_removed",
            Action::RaftLogTruncated => "raft_log_truncated",
            Action::RaftHintIgnored => "raft_hint_ignored",
            Action::LogEndLost => "log_end_lost",
            Action::CorruptBatchRefused => "corrupt_batch_refused",
            Action::CorruptBatchKept => "corrupt_batch_kept",
        }
    }

    fn index(self) -> usize {
        Action::ALL.iter().position(|a| *a == self).unwrap_or(0)
    }
}

static COUNTS: [AtomicU64; Action::ALL.len()] = [const { AtomicU64::new(0) }; Action::ALL.len()];

std::thread_local! {
    /// The same counts for the current thread only: a partition opens (and recovers) on the
    /// thread that calls `PartitionLog::open`, so a check of what one open did is not
    /// disturbed by others running at the same time (tests run in parallel in one process).
    static HERE: [std::cell::Cell<u64>; Action::ALL.len()] =
        const { [const { std::cell::Cell::new(0) }; Action::ALL.len()] };
}

/// Counts one action (its WARN line is the caller's, with the file and the details).
pub fn count(action: Action) {
    COUNTS[action.index()].fetch_add(1, Ordering::Relaxed);
    HERE.with(|h| {
        let c = &h[action.index()];
        c.set(c.get() + 1);
    });
}

/// The count of one kind on the calling thread since it started.
pub fn total_on_this_thread(action: Action) -> u64 {
    HERE.with(|h| h[action.index()].get())
}

/// The count of one kind since the process started.
pub fn total(action: Action) -> u64 {
    COUNTS[action.index()].load(Ordering::Relaxed)
}

/// Every kind with its count since the process started.
pub fn totals() -> [(Action, u64); Action::ALL.len()] {
    Action::ALL.map(|a| (a, total(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_counter_and_label() {
        let labels: std::collections::BTreeSet<_> = Action::ALL.iter().map(|a| a.label()).collect();
        assert_eq!(labels.len(), Action::ALL.len());
        let before = total(Action::RaftHintIgnored);
        count(Action::RaftHintIgnored);
        assert!(total(Action::RaftHintIgnored) > before);
        assert_eq!(totals().len(), Action::ALL.len());
    }
}
