//! [`PartitionLog`]: the on-disk log of one partition (segments, producer state, group commit).
//!
//! Concurrency: one mutex (`inner`) guards the segment list, the producer state and the config.
//! Appends hold it while they check sequences and `pwrite` the batch; reads hold it only to
//! look up a position and clone the segment's file handle, then `pread` without it. No fsync
//! ever runs under it: fsyncs run on a blocking thread (the group-commit loop in
//! `durability.rs`) on file handles cloned out of the lock, so writers keep appending while an
//! fsync is in flight and the next fsync covers everything they wrote meanwhile.
//!
//! This file holds the partition's state and its small accessors; each concern has its own file,
//! and every file works on the state defined here:
//!
//! - `open.rs`: open and recovery (torn tails, indexes, producer state, the log start).
//! - `append.rs`: the write path: validation, idempotent-sequence checks, offset assignment,
//!   segment roll, copies of another broker's batches (`append_replicated`), fencing.
//! - `durability.rs`: group commit, the durable offset and the high watermark, `wait_durable`,
//!   `flush`.
//! - `read.rs`: reads and the offset / timestamp index lookups.
//! - `retention.rs`: the head of the log: retention, DeleteRecords, the persisted log start.
//! - `replication.rs`: what replication needs of a log: leader epochs (the epoch cache),
//!   becoming leader or follower, the high-watermark bound, reads up to the log end for
//!   followers, truncation to an offset, and restarting a copy at an offset.
//!
//! The log end (`next_offset`, published as `log_end` and on `end_tx`) and the high watermark
//! (`hw_tx`) are separate values: the append path moves the first; the second rises, through
//! `Shared::raise_hw` (`durability.rs`), once what it covers may be read: it is durable (or
//! written, under `fsync: interval`) *and* below `hw_bound`, which replication sets to what every
//! in-sync replica has (`i64::MAX` for a partition without other in-sync replicas). Only
//! truncation (`replication.rs`) lowers it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::epochs::EpochCache;
use super::files::io_err;
use super::producer::ProducerStates;
use super::segment::{self, Segment};
use super::{FsyncPolicy, LogConfig, LogError};

mod append;
mod compaction;
pub use compaction::{Compacted, DEFAULT_KEY_MAP_ENTRIES};
mod durability;
mod open;
mod read;
mod replication;
mod retention;

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadBound {
    /// Consumers (`read_uncommitted`).
    HighWatermark,
    /// `read_committed` consumers: not into a transaction still open.
    LastStable,
    /// Followers copy everything written.
    LogEnd,
}

/// Durable end of the log as published to `wait_durable` callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Durable {
    /// Every offset below this is fsynced.
    offset: i64,
    /// An fsync failed: nothing more will become durable.
    failed: bool,
}

#[derive(Debug)]
struct Inner {
    config: LogConfig,
    /// First offset still in the log: the first segment's base, or higher after DeleteRecords
    /// (persisted in `log-start-offset`, see `retention.rs`).
    log_start: i64,
    /// Sorted by base offset; the last one is the active segment. Never empty.
    segments: Vec<Segment>,
    producers: ProducerStates,
    next_offset: i64,
    /// Files of closed segments written since the last fsync.
    unsynced: Vec<Arc<File>>,
    /// A segment was created or deleted since the last directory fsync.
    dir_dirty: bool,
    /// Where each leader epoch starts (persisted in `leader-epoch-checkpoint`).
    epochs: EpochCache,
}

impl Inner {
    fn active(&mut self) -> &mut Segment {
        let n = self.segments.len() - 1;
        &mut self.segments[n]
    }
}

#[derive(Debug, Default)]
struct SyncCtl {
    /// A group-commit loop is running.
    running: bool,
    /// Data was written since the running loop last looked.
    dirty: bool,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Serializes DeleteRecords: the log start file is written and fsynced under it, never
    /// under `inner`.
    start_file: Mutex<()>,
    sync_ctl: Mutex<SyncCtl>,
    /// Held through each fsync round (the group-commit loop's and `flush`'s): a round
    /// publishes everything up to its target as durable, which holds only if no earlier
    /// round is still syncing files this one did not take (a rolled segment's).
    round: Mutex<()>,
    /// Serializes compactions (`compaction.rs`).
    cleaning: Mutex<()>,
    /// `config.cleanup.compact`, for reads, which otherwise do not need the config (set with
    /// it under `inner`).
    compacted: AtomicBool,
    /// The offset the last compaction's key map reached: every record below it is the latest
    /// of its key below it (or was removed), so the next compaction maps keys from here on
    /// only, and closed segments reaching past it are "dirty" (`min.cleanable.dirty.ratio`).
    /// In memory only: after a restart the first compaction maps from the start again. A
    /// truncation lowers it to the new end (records written after it are not compacted yet).
    cleaned_to: AtomicI64,
    /// Truncations so far (changed under `inner`): a compaction that began before one does
    /// not raise `cleaned_to` over records it never saw.
    truncations: AtomicU64,
    durable_tx: watch::Sender<Durable>,
    hw_tx: watch::Sender<i64>,
    /// What `hw_tx` holds, stored under its lock by every change: readers that only want the
    /// value (a fetch checks it for each of up to thousands of partitions) load one atomic
    /// instead of taking the channel's lock.
    hw: AtomicI64,
    /// The high watermark never rises above this (replication: what the in-sync replicas
    /// have; `i64::MAX` when no other replica bounds it).
    hw_bound: AtomicI64,
    /// The first offset of the earliest transaction open on this partition (`i64::MAX` for
    /// none), changed under `inner` with the producer state: the last stable offset stays
    /// below it.
    open_txn: AtomicI64,
    /// Some aborted transaction may still be in the log (set with `open_txn`; may stay set
    /// after retention dropped the last one): without one, a read_committed fetch does not
    /// take the lock to look for them.
    any_aborted: AtomicBool,
    /// The log end, for followers' fetches waiting for new records.
    end_tx: watch::Sender<i64>,
    log_end: AtomicI64,
    log_start: AtomicI64,
    leader_epoch: AtomicI32,
    /// When this broker last began to lead the partition (ms since the epoch; `i64::MIN`:
    /// never): for a while after, see `append::NEW_LEADER_SEQUENCE_WINDOW_MS`.
    tenure_began_ms: AtomicI64,
    failed: AtomicBool,
    /// Handed over to another broker (a partition move's last step): appends are refused.
    fenced: AtomicBool,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    /// Open removed the clean-shutdown record without fsyncing the directory (see
    /// `PartitionLog::open`): it must be made durable before the log end may go down.
    end_record_unsynced: AtomicBool,
    /// Open read the active segment by its indexes and the clean shutdown's producer state
    /// instead of scanning it whole (logged; tests check it).
    #[cfg_attr(not(test), allow(dead_code))]
    active_by_index: bool,
    /// Shared with the topic's other partitions on this broker; told of every move of the log
    /// end and the high watermark.
    wake: Arc<TopicWake>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.wake.partitions.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Publishes where the earliest open transaction starts (under `inner`).
    fn note_open_txns(&self, producers: &ProducerStates) {
        self.open_txn.store(
            producers.first_open_txn().unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
        self.any_aborted
            .store(!producers.aborted.is_empty(), Ordering::SeqCst);
    }

    /// Publishes a new log end.
    fn publish_end(&self, end: i64) {
        self.end_tx.send_replace(end);
        TopicWake::bump(&self.wake.end);
    }

    /// Changes the high watermark when `f` says it changed it.
    fn update_hw(&self, f: impl FnOnce(&mut i64) -> bool) {
        let changed = self.hw_tx.send_if_modified(|hw| {
            let changed = f(hw);
            self.hw.store(*hw, Ordering::SeqCst);
            changed
        });
        if changed {
            TopicWake::bump(&self.wake.hw);
        }
    }
}

/// What a fetch that follows many partitions of one topic waits on instead of each
/// partition's own watermark: one subscription instead of one per partition (a consumer
/// following 1,000 partitions in a fetch session would otherwise subscribe to 1,000 channels
/// every time its fetch finds nothing new). Every partition of the topic stored here bumps it
/// when its log end or high watermark moves, so a waiter is also woken for partitions it does
/// not follow; the fetch path uses it only when it follows at least half of them.
#[derive(Debug)]
pub struct TopicWake {
    /// A counter, moved whenever some partition's high watermark moves.
    hw: watch::Sender<u64>,
    /// A counter, moved whenever some partition's log end moves.
    end: watch::Sender<u64>,
    /// The open partitions sharing it.
    partitions: std::sync::atomic::AtomicUsize,
}

impl Default for TopicWake {
    fn default() -> TopicWake {
        TopicWake {
            hw: watch::channel(0).0,
            end: watch::channel(0).0,
            partitions: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl TopicWake {
    fn join(wake: Arc<TopicWake>) -> Arc<TopicWake> {
        wake.partitions.fetch_add(1, Ordering::SeqCst);
        wake
    }

    fn bump(counter: &watch::Sender<u64>) {
        counter.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever the high watermark of one of the topic's partitions moves.
    pub fn subscribe_high_watermarks(&self) -> watch::Receiver<u64> {
        self.hw.subscribe()
    }

    /// Changes whenever the log end of one of the topic's partitions moves.
    pub fn subscribe_log_ends(&self) -> watch::Receiver<u64> {
        self.end.subscribe()
    }

    /// How many of the topic's partitions are open on this broker.
    pub fn partitions(&self) -> usize {
        self.partitions.load(Ordering::SeqCst)
    }
}

/// One partition's log.
///
/// All methods take `&self`; the type is meant to be shared behind an `Arc`.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    shared: Arc<Shared>,
}

/// One idempotent producer as a partition remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    /// The sequence number of the last record written, or -1.
    pub last_sequence: i32,
    /// When it last wrote (ms since the epoch).
    pub last_timestamp: i64,
    /// The first offset of its transaction open on this partition, or -1.
    pub txn_start_offset: i64,
}

/// An error of the partition's state rather than of a system call (a failed or deleted
/// partition, a closed log), reported as I/O on its directory: `what` says which.
fn state_err(dir: &Path, what: &'static str) -> LogError {
    LogError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(what),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the log half-updated in a way later calls
    // would misread (file state is re-derived from sizes), so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn snapshot_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(segment::file_name(base, "snapshot"))
}

impl PartitionLog {
    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.shared.log_start.load(Ordering::SeqCst)
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.shared.log_end.load(Ordering::SeqCst)
    }

    /// Offset up to which consumers may read: with `fsync: always` the durable end of the log,
    /// otherwise the log end offset; with other in-sync replicas, no more than they all have.
    pub fn high_watermark(&self) -> i64 {
        self.shared.hw.load(Ordering::SeqCst)
    }

    /// Offset up to which `read_committed` consumers may read: the high watermark, or the
    /// first offset of the earliest transaction still open here if that comes first.
    pub fn last_stable_offset(&self) -> i64 {
        self.high_watermark()
            .min(self.shared.open_txn.load(Ordering::SeqCst))
    }

    /// The aborted transactions with records between `from` and `to` (exclusive), for a
    /// `read_committed` fetch: (producer id, first offset).
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        if !self.shared.any_aborted.load(Ordering::SeqCst) {
            return Vec::new();
        }
        lock(&self.shared.inner)
            .producers
            .aborted_between(from, to)
            .iter()
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    /// Every offset below this one is fsynced.
    pub fn durable_offset(&self) -> i64 {
        self.shared.durable_tx.borrow().offset
    }

    /// An fsync failed (or the partition was deleted): appends are refused and nothing more
    /// becomes durable.
    pub fn has_failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Puts the log in the state a failed fsync leaves it in (tests: a real fsync failure
    /// needs a failing disk).
    #[cfg(test)]
    pub(crate) fn fail_for_test(&self) {
        self.shared
            .fail(&state_err(&self.dir, "injected fsync failure"));
    }

    /// A receiver that changes whenever the high watermark moves (fetch long-poll waits on it).
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.shared.hw_tx.subscribe()
    }

    /// What this partition shares with the topic's other partitions here (see [`TopicWake`]).
    pub fn topic_wake(&self) -> &Arc<TopicWake> {
        &self.shared.wake
    }

    /// Replaces the config (topic config change); takes effect for the next append / roll.
    pub fn set_config(&self, config: LogConfig) {
        let to_interval = matches!(config.fsync, FsyncPolicy::Interval(_));
        let mut inner = lock(&self.shared.inner);
        self.shared
            .compacted
            .store(config.cleanup.compact, Ordering::SeqCst);
        inner.config = config;
        drop(inner);
        if to_interval {
            // Readers may now see everything written (that the replicas have).
            self.shared.raise_hw(self.log_end_offset());
        }
    }

    /// The byte ranges of the active segment checked in this process (`region.rs`).
    #[cfg(test)]
    pub(crate) fn checked_ranges(&self) -> Vec<(u64, u64)> {
        let mut inner = lock(&self.shared.inner);
        inner.active().verified.ranges()
    }

    /// The current config.
    pub fn config(&self) -> LogConfig {
        lock(&self.shared.inner).config.clone()
    }

    /// The leader epoch stamped on appended batches (0 on a single node).
    pub fn leader_epoch(&self) -> i32 {
        self.shared.leader_epoch.load(Ordering::Relaxed)
    }

    /// Sets the partition leader epoch stamped into appended batches.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.shared.leader_epoch.store(epoch, Ordering::Relaxed);
    }

    /// Bytes on disk (all segments and indexes).
    pub fn size_bytes(&self) -> u64 {
        lock(&self.shared.inner)
            .segments
            .iter()
            .map(|s| s.size + s.index_bytes())
            .sum()
    }

    /// The idempotent producers this partition remembers, by producer id (DescribeProducers).
    pub fn producers(&self) -> Vec<ProducerSummary> {
        lock(&self.shared.inner)
            .producers
            .producers
            .iter()
            .map(|(id, e)| ProducerSummary {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_ms,
                txn_start_offset: e.txn_first.unwrap_or(-1),
            })
            .collect()
    }

    /// Number of segments (metrics, tests).
    /// The base offset of every segment, the active one last (tests).
    #[cfg(test)]
    pub(crate) fn segment_bases(&self) -> Vec<i64> {
        lock(&self.shared.inner)
            .segments
            .iter()
            .map(|s| s.base)
            .collect()
    }

    pub fn segment_count(&self) -> usize {
        lock(&self.shared.inner).segments.len()
    }

    /// Number of fsync calls made so far (data files and directory).
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Total time spent in fsync calls.
    pub fn fsync_time(&self) -> Duration {
        Duration::from_nanos(self.shared.fsync_nanos.load(Ordering::Relaxed))
    }

    /// Removes the partition's directory while other handles may still exist (DeleteTopics
    /// through the [`LogManager`](super::LogManager)). Later appends fail.
    pub fn remove_files(&self) -> Result<(), LogError> {
        self.shared.failed.store(true, Ordering::SeqCst);
        std::fs::remove_dir_all(&self.dir).map_err(io_err(&self.dir))
    }

    /// Closes the log and removes its directory (DeleteTopics).
    pub fn delete(self) -> Result<(), LogError> {
        self.remove_files()
    }
}
