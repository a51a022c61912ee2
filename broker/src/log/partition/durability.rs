//! Making appended data durable and visible: the group-commit loop (one fsync covers every
//! append that landed before it started), the durable offset `wait_durable` waits on, the high
//! watermark readers stop at, and the failure rule (after a failed fsync nothing more becomes
//! durable). Under `fsync: always` the high watermark is the durable offset; under `interval`
//! it follows the log end at once (`Shared::appended`).

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{lock, state_err, PartitionLog, Shared};
use crate::log::files::{io_err, sync_dir, write_atomic};
use crate::log::{FsyncPolicy, LogError};

/// Where the log's durable end was at the last clean shutdown (decimal text, one line), then
/// the producer state at that end (a snapshot, [`crate::log::producer::ProducerStates`]).
pub(super) const CLEAN_END_FILE: &str = "clean-shutdown-end";

impl Shared {
    fn publish_durable(&self, offset: i64) {
        self.durable_tx.send_if_modified(|d| {
            if offset > d.offset {
                d.offset = offset;
                true
            } else {
                false
            }
        });
    }

    /// Publishes the log end an append reached (called outside the partition lock) and sees
    /// to it that readers get to see it: under `always` once a group-commit round fsynced it,
    /// under `interval` at once.
    pub(super) fn appended(self: &Arc<Self>, log_end: i64, fsync: FsyncPolicy) {
        self.log_end.store(log_end, Ordering::SeqCst);
        self.publish_end(log_end);
        match fsync {
            FsyncPolicy::Always => self.request_sync(),
            FsyncPolicy::Interval(_) => self.raise_hw(log_end),
        }
    }

    /// Lets readers see up to `offset`, capped by the replication bound (never lowers the
    /// high watermark).
    pub(super) fn raise_hw(&self, offset: i64) {
        let offset = offset.min(self.hw_bound.load(Ordering::SeqCst));
        self.update_hw(|hw| {
            if offset > *hw {
                *hw = offset;
                true
            } else {
                false
            }
        });
    }

    pub(super) fn fail(&self, e: &LogError) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(path = %self.dir.display(), error = %e, "fsync failed; partition stops accepting writes");
        }
        self.durable_tx.send_modify(|d| d.failed = true);
    }

    /// Takes everything that needs an fsync to make the current log end durable.
    fn take_sync_work(&self, with_indexes: bool) -> (i64, Vec<Arc<File>>, bool, bool) {
        let mut inner = lock(&self.inner);
        let target = inner.next_offset;
        let always = inner.config.fsync == FsyncPolicy::Always;
        if target <= self.durable_tx.borrow().offset
            && inner.unsynced.is_empty()
            && !inner.dir_dirty
        {
            // Nothing written since the last round (an idle partition under the interval
            // flusher): no fsync at all.
            return (target, Vec::new(), false, always);
        }
        let mut files = std::mem::take(&mut inner.unsynced);
        let [log, index, timeindex] = inner.active().files();
        files.push(log);
        if with_indexes {
            files.push(index);
            files.push(timeindex);
        }
        let dir_dirty = std::mem::take(&mut inner.dir_dirty);
        (target, files, dir_dirty, always)
    }

    /// One fsync round: syncs the files, then publishes the new durable offset.
    fn sync_round(&self, with_indexes: bool) -> Result<(), LogError> {
        // One round at a time: `flush` (shutdown) may come while the loop's round is still
        // syncing a rolled segment that this round would not take, and must not publish past
        // it before that fsync is done.
        let _round = lock(&self.round);
        if self.failed.load(Ordering::SeqCst) {
            // After a failed fsync the kernel may have dropped the pages it could not write
            // and a later fsync succeed without them: nothing more becomes durable.
            return Err(state_err(&self.dir, "an earlier fsync failed (or the partition was deleted); nothing more becomes durable"));
        }
        let (target, files, dir_dirty, always) = self.take_sync_work(with_indexes);
        let t0 = Instant::now();
        let mut n = 0;
        for f in &files {
            f.sync_data().map_err(io_err(&self.dir))?;
            n += 1;
        }
        if dir_dirty {
            sync_dir(&self.dir)?;
            n += 1;
        }
        self.fsyncs.fetch_add(n, Ordering::Relaxed);
        self.fsync_nanos
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        // Readers first, then the producers' waiters: an acks=all producer that was answered
        // can immediately read its own record back.
        if always {
            self.raise_hw(target);
        }
        self.publish_durable(target);
        Ok(())
    }

    /// Marks data as written and makes sure a group-commit loop will fsync it.
    fn request_sync(self: &Arc<Self>) {
        {
            let mut ctl = lock(&self.sync_ctl);
            ctl.dirty = true;
            if ctl.running {
                return;
            }
            ctl.running = true;
        }
        let me = Arc::clone(self);
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(move || run_sync(&me))),
            Err(_) => drop(std::thread::spawn(move || run_sync(&me))),
        }
    }
}

/// The group-commit loop: while appends keep arriving, fsync everything written so far, then
/// publish it. One fsync covers every append that landed before it started.
fn run_sync(shared: &Arc<Shared>) {
    loop {
        {
            let mut ctl = lock(&shared.sync_ctl);
            if !ctl.dirty || shared.failed.load(Ordering::SeqCst) {
                ctl.running = false;
                return;
            }
            ctl.dirty = false;
        }
        if let Err(e) = shared.sync_round(false) {
            shared.fail(&e);
            lock(&shared.sync_ctl).running = false;
            return;
        }
    }
}

impl PartitionLog {
    /// Resolves once everything up to and including `offset` is fsynced (group commit: many
    /// waiters share one fsync). Under [`FsyncPolicy::Interval`] it resolves at once.
    pub async fn wait_durable(&self, offset: i64) -> Result<(), LogError> {
        let sh = &self.shared;
        if matches!(lock(&sh.inner).config.fsync, FsyncPolicy::Interval(_)) {
            return Ok(());
        }
        let mut rx = sh.durable_tx.subscribe();
        let mut requested = false;
        loop {
            let d = *rx.borrow_and_update();
            if d.offset > offset {
                return Ok(());
            }
            if d.failed {
                return Err(state_err(
                    &self.dir,
                    "fsync failed; the data may not be durable",
                ));
            }
            if !requested {
                // Normally the append already asked; this covers a policy switch.
                sh.request_sync();
                requested = true;
            }
            if rx.changed().await.is_err() {
                return Err(state_err(&self.dir, "log closed"));
            }
        }
    }

    /// Fsyncs everything written so far (shutdown, interval ticker), indexes included.
    pub fn flush(&self) -> Result<(), LogError> {
        let r = self.shared.sync_round(true);
        if let Err(e) = &r {
            self.shared.fail(e);
        }
        r
    }

    /// Makes the removal of the clean-shutdown record durable if open left it unsynced: called
    /// before the log end goes down, which a record brought back by a crash would otherwise
    /// report as lost records at the next start.
    pub(super) fn sync_end_record_removal(&self) -> Result<(), LogError> {
        if self.shared.end_record_unsynced.load(Ordering::SeqCst) {
            sync_dir(&self.dir)?;
            self.shared
                .end_record_unsynced
                .store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Whether the last open trusted a clean shutdown's fsyncs and has not yet made the
    /// record's removal durable (tests).
    #[cfg(test)]
    pub(crate) fn end_record_unsynced(&self) -> bool {
        self.shared.end_record_unsynced.load(Ordering::SeqCst)
    }

    /// Whether the last open read the active segment by its indexes after a clean shutdown
    /// (tests).
    #[cfg(test)]
    pub(crate) fn active_opened_by_index(&self) -> bool {
        self.shared.active_by_index
    }

    /// [`PartitionLog::flush`], then records the durable end in [`CLEAN_END_FILE`], which the
    /// next open reads once and removes. Recovery alone cannot tell a segment emptied, removed
    /// or cut on a stopped broker from an unacknowledged torn tail left by a crash; an end
    /// lower than this record can only be records that were durable and are gone. The record
    /// is a hint: failing to write it (a full disk) is logged, not a failed shutdown.
    pub fn flush_at_shutdown(&self) -> Result<(), LogError> {
        self.flush()?;
        let end = self.shared.durable_tx.borrow().offset;
        let mut record = format!("{end}\n").into_bytes();
        // The producer state at that end lets the next start open the active segment by its
        // indexes instead of scanning it whole. Only when nothing was appended since the
        // flush (shutdown stops appends first), so that it describes exactly that end.
        {
            let inner = lock(&self.shared.inner);
            if inner.next_offset == end {
                match inner.producers.to_snapshot() {
                    Ok(snap) => record.extend_from_slice(&snap),
                    Err(e) => {
                        tracing::warn!(path = %self.dir.display(), error = %e, "cannot snapshot the producer state at shutdown; the next start scans the active segment");
                    }
                }
            }
        }
        let path = self.dir.join(CLEAN_END_FILE);
        if let Err(e) = write_atomic(&path, &record) {
            tracing::warn!(path = %path.display(), error = %e, "could not record the log end at shutdown; the next start cannot tell a lost tail from a torn one");
        }
        Ok(())
    }
}
