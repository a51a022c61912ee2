//! What replication needs of a partition's log (the protocol itself is the broker's `replica` module):
//!
//! - the leader-epoch cache: which offset each leader epoch starts at (recovered at open,
//!   extended when this broker becomes leader or a follower appends a batch of a newer epoch,
//!   trimmed by truncation and retention), and OffsetForLeaderEpoch's answer from it;
//! - the high-watermark bound (`set_hw_bound`): the leader sets what every in-sync replica has,
//!   a follower what its leader's answer said;
//! - reads for followers up to the log end, and a log-end channel their fetches wait on;
//! - truncation to an offset (a follower's log that diverged from its new leader's) and a
//!   restart of an empty copy at an offset (a follower behind the leader's log start).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

use super::open::{list_bases, producer_state};
use super::retention::write_log_start;
use super::{lock, snapshot_path, state_err, PartitionLog, ReadBound};
use crate::log::batch::{self, HEADER_LEN};
use crate::log::epochs::EpochCache;
use crate::log::files::{io_err, remove_if_exists, sync_dir};
use crate::log::producer::ProducerStates;
use crate::log::segment::{self, Segment};
use crate::log::{LogError, ReadOutcome, Records};

/// The epoch cache of a just-recovered log: the file if it is sound, trimmed to the recovered
/// log; otherwise rebuilt from the batch headers (and rewritten).
/// `active_epoch` is the epoch of the active segment's last batch (recovery scanned it).
pub(super) fn recover_epochs(
    dir: &Path,
    segments: &[Segment],
    log_start: i64,
    log_end: i64,
    active_epoch: Option<i32>,
) -> EpochCache {
    let newest_batch_epoch = active_epoch.or_else(|| {
        segments
            .iter()
            .rev()
            .find(|s| s.size > 0)
            .and_then(|s| last_epoch_of(&s.log, s.size))
    });
    // A file that misses the newest batch's epoch (its write failed after the append) is
    // rebuilt like a missing one.
    let loaded = EpochCache::load(dir)
        .filter(|c| newest_batch_epoch.is_none_or(|e| c.latest_epoch().is_some_and(|l| l >= e)));
    let mut cache = match loaded {
        Some(c) => c,
        None => {
            let rebuilt = rebuild_epochs(segments, newest_batch_epoch);
            let had_file = EpochCache::path(dir).exists();
            if had_file || !rebuilt.is_empty() {
                if had_file {
                    tracing::warn!(path = %EpochCache::path(dir).display(), entries = rebuilt.entries().len(), "leader-epoch cache rebuilt from the log");
                    crate::recovery::count(crate::recovery::Action::EpochCacheRebuilt);
                }
                if let Err(e) = rebuilt.store(dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot write the rebuilt leader-epoch cache");
                }
            }
            rebuilt
        }
    };
    let trimmed_end = cache.truncate_from_end(log_end);
    let trimmed_start = log_end > log_start && cache.truncate_from_start(log_start);
    if trimmed_end || trimmed_start {
        tracing::info!(path = %dir.display(), log_start, log_end, "leader-epoch cache trimmed to the recovered log");
        if let Err(e) = cache.store(dir) {
            tracing::warn!(path = %dir.display(), error = %e, "cannot write the leader-epoch cache");
        }
    }
    cache
}

/// The epochs of the batches in `segments`, by scanning their headers. Cheap when the whole
/// log has one epoch (the first and last batch agree: only those two headers are read).
fn rebuild_epochs(segments: &[Segment], last_epoch: Option<i32>) -> EpochCache {
    let mut cache = EpochCache::default();
    let first = segments
        .iter()
        .find(|s| s.size > 0)
        .and_then(|s| first_header(&s.log, s.size));
    let Some(first) = first else {
        return cache;
    };
    if last_epoch == Some(first.partition_leader_epoch) {
        cache.assign(first.partition_leader_epoch, first.base_offset);
        return cache;
    }
    for s in segments.iter().filter(|s| s.size > 0) {
        let _ = segment::scan_headers(&s.log, s.size, |_, h| {
            cache.assign(h.partition_leader_epoch, h.base_offset);
        });
    }
    cache
}

fn first_header(file: &File, end: u64) -> Option<batch::BatchHeader> {
    if end < HEADER_LEN as u64 {
        return None;
    }
    let mut hdr = [0u8; HEADER_LEN];
    file.read_exact_at(&mut hdr, 0).ok()?;
    batch::parse_header(&hdr).ok()
}

fn last_epoch_of(file: &File, end: u64) -> Option<i32> {
    let mut last = None;
    let _ = segment::scan_headers(file, end, |_, h| last = Some(h.partition_leader_epoch));
    last
}

impl PartitionLog {
    /// Writes the epoch cache after an append added an epoch. The records are already in the
    /// log, so a failure (a full disk) is logged, not returned: recovery rebuilds a cache that
    /// misses the log's newest epoch from the batch headers.
    pub(super) fn store_epochs(&self, cache: &EpochCache) {
        if let Err(e) = cache.store(&self.dir) {
            tracing::warn!(path = %self.dir.display(), error = %e, "cannot write the leader-epoch cache; it is rebuilt from the log at the next start");
        }
    }

    /// The newest leader epoch of this log's records (or of its current leadership).
    pub fn latest_epoch(&self) -> Option<i32> {
        lock(&self.shared.inner).epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch: `(epoch, end offset)` for the requested epoch (see
    /// [`EpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let inner = lock(&self.shared.inner);
        inner.epochs.end_offset_for(epoch, inner.next_offset)
    }

    /// The leader epoch the record at `offset` was written in (by the cache).
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        lock(&self.shared.inner)
            .epochs
            .entries()
            .iter()
            .rev()
            .find(|(_, start)| *start <= offset)
            .map(|(e, _)| *e)
    }

    /// The leader-epoch cache's entries (diagnostics, tests).
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        lock(&self.shared.inner).epochs.entries().to_vec()
    }

    /// This broker leads the partition from `epoch` on: appends are stamped with it and the
    /// epoch is recorded as starting at the current log end. Blocking (writes the epoch file
    /// when it changed).
    pub fn become_leader(&self, epoch: i32) -> Result<(), LogError> {
        let sh = &self.shared;
        let snapshot = {
            let mut inner = lock(&sh.inner);
            sh.leader_epoch.store(epoch, Ordering::SeqCst);
            sh.tenure_began_ms
                .store(crate::log::now_ms(), Ordering::SeqCst);
            let end = inner.next_offset;
            inner
                .epochs
                .assign(epoch, end)
                .then(|| inner.epochs.clone())
        };
        if let Some(cache) = snapshot {
            cache.store(&self.dir)?;
        }
        Ok(())
    }

    /// This broker follows the partition's leader at `epoch`: the high watermark may be no
    /// higher than what the leader reports from now on (its first answer raises it again).
    pub fn become_follower(&self, epoch: i32) {
        let sh = &self.shared;
        sh.leader_epoch.store(epoch, Ordering::SeqCst);
        let start = self.log_start_offset();
        sh.hw_bound.store(start, Ordering::SeqCst);
        sh.update_hw(|hw| {
            let lower = (*hw).min(start);
            let changed = lower != *hw;
            *hw = lower;
            changed
        });
    }

    /// Caps the high watermark at `bound` and raises it as far as the log allows below it.
    /// The leader passes the smallest offset its in-sync followers have (`i64::MAX`: none
    /// bounds it); a follower the high watermark its leader reported. Never lowers it.
    pub fn set_hw_bound(&self, bound: i64) {
        let sh = &self.shared;
        sh.hw_bound.store(bound, Ordering::SeqCst);
        let always = lock(&sh.inner).config.fsync == crate::log::FsyncPolicy::Always;
        let visible = if always {
            sh.durable_tx.borrow().offset
        } else {
            sh.log_end.load(Ordering::SeqCst)
        };
        sh.raise_hw(visible);
    }

    /// A receiver that changes whenever the log end moves (followers' fetches wait on it).
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.shared.end_tx.subscribe()
    }

    /// Resolves once the high watermark passes `offset` (an `acks=all` producer: every
    /// in-sync replica has the record, durably under `fsync: always`). Fails when the log
    /// fails or is closed.
    pub async fn wait_high_watermark(&self, offset: i64) -> Result<(), LogError> {
        let sh = &self.shared;
        let mut rx = sh.hw_tx.subscribe();
        let mut durable = sh.durable_tx.subscribe();
        loop {
            if *rx.borrow_and_update() > offset {
                return Ok(());
            }
            if durable.borrow_and_update().failed {
                return Err(state_err(
                    &self.dir,
                    "fsync failed; the data may not be durable",
                ));
            }
            let closed = tokio::select! {
                r = rx.changed() => r.is_err(),
                r = durable.changed() => r.is_err(),
            };
            if closed {
                return Err(state_err(&self.dir, "log closed"));
            }
        }
    }

    /// Reads whole batches from `offset` up to the log end (not the high watermark): a
    /// follower's fetch. Otherwise as [`PartitionLog::read`].
    pub fn read_for_replica(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome, LogError> {
        self.read_up_to(offset, max_bytes, ReadBound::LogEnd)
    }

    /// [`PartitionLog::read_for_replica`] for a follower's fetch on a connection that can
    /// `sendfile`: as [`PartitionLog::read_for_send`] (a region of bytes this process checked,
    /// which is everything it appended), up to the log end.
    pub fn read_for_replica_send(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadOutcome<Records>, LogError> {
        self.read_checked(offset, max_bytes, ReadBound::LogEnd, true)
    }

    /// Cuts the log back so that it ends at `offset`, or at the start of the batch holding
    /// `offset`: what a follower does when its log diverged from its leader's. Segments after
    /// it go, the segment holding it is cut and becomes the active one (indexes rebuilt), the
    /// producer state and the epoch cache are rebuilt for the shorter log, and the high
    /// watermark and durable offset come down with it. Durable when it returns. Returns the
    /// new log end. Blocking.
    pub fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        let sh = &self.shared;
        let _serial = lock(&sh.start_file);
        self.sync_end_record_removal()?;
        let mut inner = lock(&sh.inner);
        if offset >= inner.next_offset {
            return Ok(inner.next_offset);
        }
        let target = offset.max(inner.log_start);
        let interval = inner.config.index_interval_bytes;
        let i = inner.segments.partition_point(|s| s.base <= target).max(1) - 1;
        let (cut_pos, new_end) = {
            let seg = &inner.segments[i];
            cut_point(&seg.log, seg.lookup(target), seg.size, target)
                .map_err(io_err(&seg.log_path))?
                .unwrap_or((seg.size, seg.next_offset))
        };
        // Later segments first (a crash in between leaves a shorter, consistent log).
        let later: Vec<Segment> = inner.segments.drain(i + 1..).collect();
        for s in &later {
            s.remove_files()?;
            remove_if_exists(&snapshot_path(&self.dir, s.base));
        }
        let seg = inner.segments.pop().ok_or_else(|| LogError::CorruptBatch {
            reason: "a log without segments".into(),
        })?;
        seg.log.set_len(cut_pos).map_err(io_err(&seg.log_path))?;
        seg.log.sync_data().map_err(io_err(&seg.log_path))?;
        let base = seg.base;
        drop(seg);
        let mut active_headers = Vec::new();
        let rec = segment::recover(&self.dir, base, true, interval, |pos, h| {
            active_headers.push((pos, *h))
        })?;
        inner.segments.push(rec.segment);
        inner.producers = producer_state(&self.dir, &inner.segments, &active_headers)?;
        sh.note_open_txns(&inner.producers);
        inner.next_offset = inner.segments[inner.segments.len() - 1].next_offset;
        let new_end = inner.next_offset.min(new_end.max(inner.log_start));
        inner.unsynced.clear();
        inner.dir_dirty = false;
        let end = inner.next_offset;
        sh.truncations.fetch_add(1, Ordering::SeqCst);
        sh.cleaned_to.fetch_min(end, Ordering::SeqCst);
        let epochs_changed = inner.epochs.truncate_from_end(end);
        let epochs = inner.epochs.clone();
        debug_assert_eq!(end, new_end);
        sh.log_end.store(end, Ordering::SeqCst);
        sh.publish_end(end);
        sh.update_hw(|hw| {
            let changed = *hw > end;
            *hw = (*hw).min(end);
            changed
        });
        sh.durable_tx.send_modify(|d| d.offset = d.offset.min(end));
        drop(inner);
        sync_dir(&self.dir)?;
        if epochs_changed {
            epochs.store(&self.dir)?;
        }
        tracing::info!(path = %self.dir.display(), requested = offset, log_end = end, "log truncated");
        Ok(end)
    }

    /// Drops the whole log and starts it again, empty, at `offset`: a follower whose copy ends
    /// before its leader's log starts. Durable when it returns. Blocking.
    pub fn reset_to(&self, offset: i64) -> Result<(), LogError> {
        let sh = &self.shared;
        if offset < 0 {
            return Err(LogError::CorruptBatch {
                reason: format!("cannot restart a log at offset {offset}"),
            });
        }
        let _serial = lock(&sh.start_file);
        self.sync_end_record_removal()?;
        write_log_start(&self.dir, offset)?;
        let seg = Segment::create(&self.dir, offset)?;
        let mut inner = lock(&sh.inner);
        let old = std::mem::replace(&mut inner.segments, vec![seg]);
        inner.next_offset = offset;
        inner.log_start = offset;
        inner.producers = ProducerStates::default();
        sh.note_open_txns(&inner.producers);
        inner.unsynced.clear();
        inner.dir_dirty = true;
        inner.epochs.clear();
        drop(inner);
        for s in &old {
            if s.base != offset {
                s.remove_files()?;
            }
        }
        for b in list_bases(&self.dir, "snapshot")? {
            remove_if_exists(&snapshot_path(&self.dir, b));
        }
        EpochCache::default().store(&self.dir)?;
        sync_dir(&self.dir)?;
        sh.log_start.store(offset, Ordering::SeqCst);
        sh.log_end.store(offset, Ordering::SeqCst);
        sh.publish_end(offset);
        sh.update_hw(|hw| {
            *hw = offset;
            true
        });
        sh.durable_tx.send_modify(|d| d.offset = offset);
        tracing::warn!(path = %self.dir.display(), log_start = offset, "log restarted empty");
        Ok(())
    }

    /// A follower moves its log start up to its leader's (retention or DeleteRecords on the
    /// leader), at most to its own log end. Blocking.
    pub fn follow_log_start(&self, offset: i64) -> Result<i64, LogError> {
        let target = offset.min(self.log_end_offset());
        self.move_log_start(target)
    }
}

/// Where to cut a segment so that the log ends at `target` or at the start of the batch
/// holding it: `(file position, new log end)`, scanning headers from `from` (an indexed
/// position at or below it). `None`: no batch at or after `target` (nothing to cut here).
fn cut_point(file: &File, from: u64, end: u64, target: i64) -> std::io::Result<Option<(u64, i64)>> {
    let mut pos = from;
    let mut hdr = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= end {
        file.read_exact_at(&mut hdr, pos)?;
        let Ok(h) = batch::parse_header(&hdr) else {
            // Unreadable from here on (recovery would have cut it): cut here too.
            return Ok(Some((pos, target)));
        };
        if h.next_offset() > target {
            return Ok(Some((pos, h.base_offset)));
        }
        pos += h.size as u64;
    }
    Ok(None)
}
