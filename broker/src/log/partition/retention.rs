//! The head of the log: retention (closed segments past `retention.ms` / `retention.bytes`,
//! idle producers), DeleteRecords, an empty copy starting at another broker's log start, and
//! the persisted log start offset (`log-start-offset`) all three rely on.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{lock, PartitionLog};
use crate::log::files::write_atomic;
use crate::log::segment::Segment;
use crate::log::LogError;

/// The log start offset set by DeleteRecords, as decimal text (absent: the first segment's
/// base). Replaced atomically: tmp, fsync, rename, directory fsync.
const LOG_START_FILE: &str = "log-start-offset";

/// The persisted log start offset, if any. An unreadable file is ignored with a warning: the
/// log then starts at its first segment, which only shows records DeleteRecords had hidden.
pub(super) fn read_log_start(dir: &Path) -> Option<i64> {
    let path = dir.join(LOG_START_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the log start offset; the log starts at its first segment");
            crate::recovery::count(crate::recovery::Action::LogStartIgnored);
            return None;
        }
    };
    match text.trim().parse::<i64>() {
        Ok(v) if v >= 0 => Some(v),
        _ => {
            tracing::warn!(path = %path.display(), content = %text.trim(), "ignoring an invalid log start offset; the log starts at its first segment");
            crate::recovery::count(crate::recovery::Action::LogStartIgnored);
            None
        }
    }
}

pub(super) fn write_log_start(dir: &Path, offset: i64) -> Result<(), LogError> {
    write_atomic(&dir.join(LOG_START_FILE), format!("{offset}\n").as_bytes())
}

impl PartitionLog {
    /// Makes an empty log start at `offset` (a copy of a log whose older records were deleted
    /// by retention): the empty active segment is replaced by one based there, and the start
    /// is persisted. Refused unless the log is empty. Blocking (fsyncs).
    pub fn start_empty_at(&self, offset: i64) -> Result<(), LogError> {
        let sh = &self.shared;
        let _serial = lock(&sh.start_file);
        {
            let inner = lock(&sh.inner);
            if inner.next_offset == offset {
                return Ok(());
            }
            if inner.next_offset != inner.log_start || inner.segments.len() != 1 || offset < 0 {
                return Err(LogError::CorruptBatch {
                    reason: format!(
                        "cannot restart a non-empty log (end {}) at offset {offset}",
                        inner.next_offset
                    ),
                });
            }
        }
        self.sync_end_record_removal()?;
        write_log_start(&self.dir, offset)?;
        let seg = Segment::create(&self.dir, offset)?;
        let mut inner = lock(&sh.inner);
        let old = std::mem::replace(&mut inner.segments, vec![seg]);
        inner.next_offset = offset;
        inner.log_start = offset;
        sh.truncations.fetch_add(1, Ordering::SeqCst);
        sh.cleaned_to.fetch_min(offset, Ordering::SeqCst);
        inner.dir_dirty = true;
        drop(inner);
        for s in &old {
            if let Err(e) = s.remove_files() {
                tracing::warn!(path = %s.log_path.display(), error = %e, "cannot remove the empty segment");
            }
        }
        sh.log_start.store(offset, Ordering::SeqCst);
        sh.log_end.store(offset, Ordering::SeqCst);
        sh.publish_end(offset);
        sh.raise_hw(offset);
        Ok(())
    }

    /// Deletes closed segments that retention (time, then size) no longer keeps. Returns the
    /// number of segments deleted. The active segment is never deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut inner = lock(&self.shared.inner);
        let expired = inner.producers.expire(now_ms);
        if expired > 0 {
            tracing::debug!(path = %self.dir.display(), expired, "idle producers forgotten");
        }
        // A compacted topic without `delete` in its policy keeps its segments whatever their
        // age or size (compaction bounds it), as in Kafka.
        let (ret_ms, ret_bytes) = match inner.config.cleanup.delete {
            true => (inner.config.retention_ms, inner.config.retention_bytes),
            false => (-1, -1),
        };
        let mut total: u64 = inner.segments.iter().map(|s| s.size).sum();
        let mut doomed = 0;
        let log_start = inner.log_start;
        for s in &inner.segments[..inner.segments.len() - 1] {
            // Wholly below the start DeleteRecords set (the active segment has since rolled).
            let deleted = s.next_offset <= log_start;
            // Batches without timestamps (-1): judge by the file's modification time.
            let newest = if s.max_timestamp >= 0 {
                s.max_timestamp
            } else {
                file_mtime_ms(&s.log).unwrap_or(now_ms)
            };
            let by_time = ret_ms >= 0 && newest < now_ms.saturating_sub(ret_ms);
            let by_size = ret_bytes >= 0 && total.saturating_sub(s.size) >= ret_bytes as u64;
            if !(deleted || by_time || by_size) {
                break;
            }
            total -= s.size;
            doomed += 1;
        }
        if doomed == 0 {
            return Ok(0);
        }
        let removed: Vec<Segment> = inner.segments.drain(..doomed).collect();
        let new_start = inner.segments[0].base.max(inner.log_start);
        inner.log_start = new_start;
        inner.producers.trim_aborted(new_start);
        self.shared.log_start.store(new_start, Ordering::SeqCst);
        let epochs = inner
            .epochs
            .truncate_from_start(new_start)
            .then(|| inner.epochs.clone());
        drop(inner);
        let mut result = Ok(removed.len());
        if let Some(e) = epochs {
            if let Err(err) = e.store(&self.dir) {
                tracing::warn!(path = %self.dir.display(), error = %err, "cannot write the leader-epoch cache");
            }
        }
        for s in &removed {
            tracing::info!(path = %s.log_path.display(), base = s.base, next = s.next_offset, bytes = s.size, "retention deleted segment");
            if let Err(e) = s.remove_files() {
                result = Err(e);
            }
        }
        // After the unlinks, so the next fsync round's directory fsync covers them.
        lock(&self.shared.inner).dir_dirty = true;
        result
    }

    /// DeleteRecords: moves the log start offset up to `offset` (`-1`: the high watermark), so
    /// reads and ListOffsets earliest begin there, and deletes the closed segments wholly below
    /// it. Returns the new log start (the low watermark). The new start is fsynced before it is
    /// used, so it survives a restart. `offset` above the high watermark, or negative other
    /// than -1, is [`LogError::OffsetOutOfRange`]; at or below the current start nothing
    /// changes. Blocking (an fsync): call from `spawn_blocking`.
    pub fn delete_records(&self, offset: i64) -> Result<i64, LogError> {
        let hw = self.high_watermark();
        let current = self.log_start_offset();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start: current,
                end: hw,
            });
        }
        self.move_log_start(target)
    }

    /// Moves the log start up to `target` (persisted first), drops the closed segments wholly
    /// below it and trims the epoch cache. At or below the current start nothing changes.
    /// Blocking.
    pub(super) fn move_log_start(&self, target: i64) -> Result<i64, LogError> {
        let sh = &self.shared;
        let _serial = lock(&sh.start_file);
        let current = lock(&sh.inner).log_start;
        if target <= current {
            return Ok(current);
        }
        write_log_start(&self.dir, target)?;

        let mut inner = lock(&sh.inner);
        inner.log_start = inner.log_start.max(target);
        let start = inner.log_start;
        inner.producers.trim_aborted(start);
        sh.log_start.store(start, Ordering::SeqCst);
        let last = inner.segments.len() - 1;
        let doomed = inner.segments[..last]
            .iter()
            .take_while(|s| s.next_offset <= start)
            .count();
        let removed: Vec<Segment> = inner.segments.drain(..doomed).collect();
        let epochs = inner
            .epochs
            .truncate_from_start(start)
            .then(|| inner.epochs.clone());
        drop(inner);
        if let Some(e) = epochs {
            e.store(&self.dir)?;
        }
        tracing::info!(path = %self.dir.display(), log_start = start, segments_deleted = removed.len(), "records deleted");
        for s in &removed {
            // The start is already moved and durable; a file left behind is below it and is
            // removed again at the next open's retention check.
            if let Err(e) = s.remove_files() {
                tracing::warn!(path = %s.log_path.display(), error = %e, "cannot remove a segment below the log start");
            }
        }
        if !removed.is_empty() {
            // After the unlinks, so the next fsync round's directory fsync covers them.
            lock(&sh.inner).dir_dirty = true;
        }
        Ok(start)
    }
}

fn file_mtime_ms(f: &File) -> Option<i64> {
    let m = f.metadata().ok()?.modified().ok()?;
    let d = m.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}
