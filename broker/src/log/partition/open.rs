//! Opening a partition: recovery of its segments (a torn tail is cut, damaged indexes are
//! rebuilt, segments after a torn closed one are removed), of the idempotent-producer state
//! (snapshot plus the active segment, or every segment's headers) and of the log start; then
//! everything that survived is fsynced before anyone may read it.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::durability::CLEAN_END_FILE;
use super::retention::{read_log_start, write_log_start};
use super::{snapshot_path, Durable, Inner, PartitionLog, Shared, SyncCtl, TopicWake};
use crate::log::batch::BatchHeader;
use crate::log::files::{io_err, remove_if_exists, sync_dir};
use crate::log::producer::{ProducerStates, SnapshotError};
use crate::log::segment::{self, Segment};
use crate::log::{LogConfig, LogError};
use crate::recovery::{self, Action};

impl PartitionLog {
    /// Opens (creating if needed) the partition directory `dir` and recovers it: a torn tail is
    /// truncated, damaged indexes rebuilt. Blocking: call from `spawn_blocking` at start-up.
    pub fn open(dir: PathBuf, config: LogConfig) -> Result<PartitionLog, LogError> {
        PartitionLog::open_in(dir, config, Arc::default())
    }

    /// [`PartitionLog::open`] for a partition of a topic whose partitions share `wake` (what
    /// a fetch following many of them waits on).
    pub fn open_in(
        dir: PathBuf,
        config: LogConfig,
        wake: Arc<TopicWake>,
    ) -> Result<PartitionLog, LogError> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut bases = list_bases(&dir, "log")?;
        let listed = bases.len();
        remove_empty_strays(&dir, &mut bases)?;
        // Whether recovery changed a file or the directory (then everything is fsynced below).
        let mut changed = bases.len() != listed;
        // Leftovers of an interrupted compaction: copies never swapped in.
        let scratch = dir.join(super::compaction::COMPACTING_DIR);
        if scratch.exists() {
            tracing::warn!(path = %scratch.display(), "removing the leftover of an interrupted compaction");
            recovery::count(Action::LeftoverRemoved);
            std::fs::remove_dir_all(&scratch).map_err(io_err(&scratch))?;
        }
        // Leftovers of an interrupted atomic replace (snapshot, epoch cache, log start).
        for ent in std::fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            if ent.file_name().to_string_lossy().ends_with(".tmp") {
                let path = ent.path();
                tracing::warn!(path = %path.display(), "removing the leftover of an interrupted write");
                recovery::count(Action::LeftoverRemoved);
                remove_if_exists(&path);
                changed = true;
            }
        }
        let interval = config.index_interval_bytes;
        let mut record = CleanRecord::read(&dir);
        let mut segments: Vec<Segment> = Vec::new();
        let mut active_headers: Vec<(u64, BatchHeader)> = Vec::new();
        // After a clean shutdown that recorded its producer state: that state, and the epoch
        // of the active segment's last batch, when the active segment opened by its indexes.
        let mut by_index: Option<(ProducerStates, Option<i32>)> = None;
        let mut cut_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let rec = if is_last {
                match open_active_by_index(&dir, base, interval, &mut record)? {
                    Some((rec, producers, epoch)) => {
                        by_index = Some((producers, epoch));
                        rec
                    }
                    None => segment::recover(&dir, base, true, interval, |pos, h| {
                        active_headers.push((pos, *h))
                    })?,
                }
            } else {
                segment::recover(&dir, base, false, interval, |_, _| {})?
            };
            changed |= rec.indexes_rebuilt || rec.truncated.is_some();
            if rec.indexes_rebuilt {
                tracing::warn!(path = %rec.segment.log_path.display(), "segment indexes rebuilt from the log");
                recovery::count(Action::IndexRebuilt);
            }
            let next_base = bases.get(i + 1).copied();
            let seg = rec.segment;
            let inconsistent = next_base.is_some_and(|nb| seg.next_offset != nb);
            segments.push(seg);
            if !is_last && (rec.truncated.is_some() || inconsistent) {
                // A closed segment that is torn (its roll's fsync never finished) or does not
                // end where the next begins: everything after it was never acknowledged as
                // durable, and cannot be trusted to line up.
                cut_at = Some(i);
                if rec.truncated.is_none() {
                    tracing::warn!(path = %dir.display(), base, "segment does not end where the next one starts");
                }
                break;
            }
        }
        if let Some(i) = cut_at {
            changed = true;
            for &base in &bases[i + 1..] {
                tracing::warn!(path = %dir.join(segment::file_name(base, "log")).display(), "removing segment after a torn or misaligned one");
                recovery::count(Action::SegmentRemoved);
                for ext in ["log", "index", "timeindex", "snapshot"] {
                    remove_if_exists(&dir.join(segment::file_name(base, ext)));
                }
            }
            bases.truncate(i + 1);
            // The last kept segment becomes active: rescan it fully for the producer state.
            let base = bases[i];
            segments.pop();
            active_headers.clear();
            by_index = None;
            let rec = segment::recover(&dir, base, true, interval, |pos, h| {
                active_headers.push((pos, *h))
            })?;
            segments.push(rec.segment);
        }
        if segments.is_empty() {
            changed = true;
            segments.push(Segment::create(&dir, 0)?);
            sync_dir(&dir)?;
        }

        let active_base = segments[segments.len() - 1].base;
        let active_by_index = by_index.is_some();
        let (producers, active_epoch) = match by_index {
            Some(found) => found,
            None => (
                producer_state(&dir, &segments, &active_headers)?,
                active_headers.last().map(|(_, h)| h.partition_leader_epoch),
            ),
        };
        for b in list_bases(&dir, "snapshot")? {
            if b != active_base {
                remove_if_exists(&snapshot_path(&dir, b));
                changed = true;
            }
        }
        // Index files whose log is gone (a deletion interrupted between unlinks).
        for ext in ["index", "timeindex"] {
            for b in list_bases(&dir, ext)? {
                if !segments.iter().any(|s| s.base == b) {
                    let path = dir.join(segment::file_name(b, ext));
                    tracing::warn!(path = %path.display(), "removing an index file without its log");
                    recovery::count(Action::LeftoverRemoved);
                    remove_if_exists(&path);
                    changed = true;
                }
            }
        }

        let next_offset = segments[segments.len() - 1].next_offset;
        let clean = record.check(&dir, &segments[segments.len() - 1].log_path, next_offset);
        // A start set by DeleteRecords beyond what recovery kept (a torn tail was cut) can only
        // have hidden records that are gone anyway.
        let stored_start = read_log_start(&dir);
        let log_start = stored_start
            .map_or(segments[0].base, |s| s.min(next_offset))
            .max(segments[0].base);
        if stored_start.is_some_and(|s| s > log_start) {
            // Written back: the next records appended land between the log start kept here and
            // the stored one, and the next open would otherwise hide them, acknowledged or not
            // (the partition_dir fuzz target found it).
            tracing::warn!(path = %dir.display(), stored = stored_start, log_start, "the log start offset was past the recovered log end; lowered to it");
            write_log_start(&dir, log_start)?;
            changed = true;
        }
        // Whatever survived is on disk now (maybe only in the page cache, after a process
        // crash): make it durable before anyone may read it as committed.
        // Closed segments too: a crash right after a roll can leave the closed segment's last
        // writes unsynced (the roll queues its fsync).
        //
        // Skipped after a clean shutdown that recovery found intact (`trusted`): the record
        // is written only after `flush_at_shutdown` fsynced every segment and the directory,
        // and every open removes it, so a record that matches the recovered end means no
        // broker wrote here since that fsync; recovery changed nothing either. What is read
        // is what was made durable. Index files may have been created by the open, but they
        // are never needed for durability: recovery validates them and rebuilds them from
        // the log.
        //
        // The directory fsync is skipped too: the only change to the directory is the
        // record's removal. Until that is durable a crash can bring the record back, which
        // is harmless while the log end is at least the recorded one (appends only raise it);
        // `end_record_unsynced` makes everything that lowers the end (truncation, a restart
        // at an offset) fsync the directory first.
        let trusted = clean && !changed;
        if !trusted {
            for seg in &segments {
                seg.log.sync_data().map_err(io_err(&seg.log_path))?;
            }
            sync_dir(&dir)?;
        }

        let (durable_tx, _) = watch::channel(Durable {
            offset: next_offset,
            failed: false,
        });
        let (hw_tx, _) = watch::channel(next_offset);
        let (end_tx, _) = watch::channel(next_offset);
        let epochs = super::replication::recover_epochs(
            &dir,
            &segments,
            log_start,
            next_offset,
            active_epoch,
        );
        tracing::debug!(path = %dir.display(), log_start, next_offset, segments = segments.len(), active_by_index, trusted, "partition recovered");
        let compacted = AtomicBool::new(config.cleanup.compact);
        let open_txn = producers.first_open_txn().unwrap_or(i64::MAX);
        let producers_aborted_empty = producers.aborted.is_empty();
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            compacted,
            inner: Mutex::new(Inner {
                config,
                log_start,
                segments,
                producers,
                next_offset,
                unsynced: Vec::new(),
                dir_dirty: false,
                epochs,
            }),
            start_file: Mutex::new(()),
            sync_ctl: Mutex::new(SyncCtl::default()),
            round: Mutex::new(()),
            cleaning: Mutex::new(()),
            cleaned_to: AtomicI64::new(0),
            truncations: AtomicU64::new(0),
            durable_tx,
            hw_tx,
            hw: AtomicI64::new(next_offset),
            hw_bound: AtomicI64::new(i64::MAX),
            open_txn: AtomicI64::new(open_txn),
            any_aborted: AtomicBool::new(!producers_aborted_empty),
            end_tx,
            log_end: AtomicI64::new(next_offset),
            log_start: AtomicI64::new(log_start),
            leader_epoch: AtomicI32::new(0),
            tenure_began_ms: AtomicI64::new(i64::MIN),
            failed: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
            fsync_nanos: AtomicU64::new(0),
            end_record_unsynced: AtomicBool::new(trusted),
            active_by_index,
            wake: TopicWake::join(wake),
        });
        Ok(PartitionLog { dir, shared })
    }
}

/// What the last clean shutdown recorded ([`CLEAN_END_FILE`]), read before recovery: the
/// log's durable end on the first line and, after it, the producer state at that end (a
/// snapshot as [`ProducerStates::to_snapshot`] writes it; records of earlier versions hold the
/// end only).
enum CleanRecord {
    Missing,
    Unreadable,
    Recorded {
        end: i64,
        producers: Option<ProducerStates>,
    },
}

impl CleanRecord {
    fn read(dir: &Path) -> CleanRecord {
        let path = dir.join(CLEAN_END_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            return CleanRecord::Missing;
        };
        let (line, rest) = match bytes.iter().position(|&b| b == b'\n') {
            Some(n) => (&bytes[..n], &bytes[n + 1..]),
            None => (&bytes[..], &[][..]),
        };
        let Some(end) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.trim().parse::<i64>().ok())
        else {
            return CleanRecord::Unreadable;
        };
        let producers = if rest.is_empty() {
            None
        } else {
            match ProducerStates::from_snapshot(rest) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring the producer state of the clean-shutdown record; scanning the active segment instead");
                    None
                }
            }
        };
        CleanRecord::Recorded { end, producers }
    }

    /// Compares the recovered end with the recorded one, then removes the record: it
    /// describes that shutdown only (see `open` for when the removal is fsynced). Returns
    /// whether the record was there and names exactly the recovered end: the log is as that
    /// shutdown left it.
    fn check(&self, dir: &Path, last_segment: &Path, next_offset: i64) -> bool {
        let path = dir.join(CLEAN_END_FILE);
        let clean = match self {
            CleanRecord::Missing => return false,
            CleanRecord::Unreadable => {
                tracing::warn!(path = %path.display(), "ignoring an unreadable clean-shutdown end");
                false
            }
            CleanRecord::Recorded { end, .. } if *end > next_offset => {
                tracing::warn!(path = %last_segment.display(), recovered_end = next_offset, clean_shutdown_end = end, "the log ends before where the last clean shutdown left it: records that were durable are gone");
                recovery::count(Action::LogEndLost);
                false
            }
            CleanRecord::Recorded { end, .. } => *end == next_offset,
        };
        remove_if_exists(&path);
        clean
    }
}

/// The active segment opened by its indexes ([`segment::recover_active_by_index`]) with the
/// producer state the clean shutdown recorded, when that record has one and the segment ends
/// exactly where it says: the whole-segment scan a start otherwise makes (CRC of every batch,
/// to rebuild the producer state and find a torn tail) is what made a start on a large log
/// slow. `None`: scan it whole.
fn open_active_by_index(
    dir: &Path,
    base: i64,
    interval: u32,
    record: &mut CleanRecord,
) -> Result<Option<(segment::Recovered, ProducerStates, Option<i32>)>, LogError> {
    let CleanRecord::Recorded {
        end,
        producers: producers @ Some(_),
    } = record
    else {
        return Ok(None);
    };
    let Some((rec, last)) = segment::recover_active_by_index(dir, base, interval)? else {
        return Ok(None);
    };
    let Some(producers) = producers.take().filter(|_| rec.segment.next_offset == *end) else {
        return Ok(None);
    };
    Ok(Some((
        rec,
        producers,
        last.map(|h| h.partition_leader_epoch),
    )))
}

/// Producer state: the snapshot taken when the active segment was created, plus the active
/// segment's batches (`active_headers`); without a usable snapshot, every segment's headers.
pub(super) fn producer_state(
    dir: &Path,
    segments: &[Segment],
    active_headers: &[(u64, BatchHeader)],
) -> Result<ProducerStates, LogError> {
    let active_base = segments.last().map_or(0, |s| s.base);
    let path = snapshot_path(dir, active_base);
    // A missing snapshot is not damage: its write at a roll is best effort, and truncation
    // removes it. Rebuilding from the headers gives the same state, only slower.
    let snap = std::fs::read(&path)
        .ok()
        .and_then(|b| match ProducerStates::from_snapshot(&b) {
            Ok(s) => Some(s),
            Err(SnapshotError::Unverified) => {
                tracing::info!(path = %path.display(), "producer snapshot without a checksum (earlier version); scanning every segment instead");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a damaged producer snapshot; scanning every segment instead");
                recovery::count(Action::ProducerSnapshotIgnored);
                None
            }
        });
    let mut producers = match snap {
        Some(s) => s,
        None => {
            let mut s = ProducerStates::default();
            for seg in &segments[..segments.len().saturating_sub(1)] {
                segment::scan_headers(&seg.log, seg.size, |pos, h| {
                    if h.is_idempotent() {
                        replay(&mut s, seg, pos, h, -1);
                    }
                })
                .map_err(io_err(&seg.log_path))?;
            }
            s
        }
    };
    if let Some(active) = segments.last() {
        for (pos, h) in active_headers.iter().filter(|(_, h)| h.is_idempotent()) {
            let append_time = if h.attributes & (1 << 3) != 0 {
                h.max_timestamp
            } else {
                -1
            };
            replay(&mut producers, active, *pos, h, append_time);
        }
    }
    Ok(producers)
}

/// Replays one stored batch of a producer into its state; a transaction marker is read from
/// the segment for its type (COMMIT or ABORT is not in the header).
fn replay(s: &mut ProducerStates, seg: &Segment, pos: u64, h: &BatchHeader, append_time: i64) {
    if !h.is_control() {
        s.record(h, append_time, h.max_timestamp);
        return;
    }
    let mut b = vec![0u8; h.size];
    match seg.log.read_exact_at(&mut b, pos) {
        Ok(()) => {
            if let Some((kind, epoch)) = crate::log::txn::parse_marker(&b) {
                s.record_marker(h, kind, epoch, h.max_timestamp);
            }
        }
        Err(e) => {
            tracing::warn!(path = %seg.log_path.display(), position = pos, error = %e, "cannot read a transaction marker; its transaction stays open");
        }
    }
}

/// Removes empty segment files other than the last: the broker never leaves one (a roll writes
/// the new segment's first batch under the same lock that created it), so one is a stray; left
/// in place it would look like a segment that does not end where the next one starts, and
/// recovery would drop every segment after it.
fn remove_empty_strays(dir: &Path, bases: &mut Vec<i64>) -> Result<(), LogError> {
    let Some(&last) = bases.last() else {
        return Ok(());
    };
    let mut kept = Vec::with_capacity(bases.len());
    for &base in bases.iter() {
        let path = dir.join(segment::file_name(base, "log"));
        let empty = std::fs::metadata(&path).map_err(io_err(&path))?.len() == 0;
        if base != last && empty {
            tracing::warn!(path = %path.display(), "removing an empty segment file that is not the last");
            recovery::count(Action::StraySegmentRemoved);
            for ext in ["log", "index", "timeindex", "snapshot"] {
                remove_if_exists(&dir.join(segment::file_name(base, ext)));
            }
        } else {
            kept.push(base);
        }
    }
    *bases = kept;
    Ok(())
}

pub(super) fn list_bases(dir: &Path, ext: &str) -> Result<Vec<i64>, LogError> {
    let mut bases = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let ent = ent.map_err(io_err(dir))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(ext).and_then(|s| s.strip_suffix('.')) {
            if stem.len() == 20 {
                if let Ok(b) = stem.parse::<i64>() {
                    bases.push(b);
                }
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}
