//! [`PartitionLog`]: the on-disk log of one partition (segments, producer state, group commit).
//!
//! Concurrency: one mutex (`inner`) guards the segment list, the producer state and the config.
//! Appends hold it while they check sequences and `pwrite` the batch; reads hold it only to
//! look up a position and clone the segment's file handle, then `pread` without it. No fsync
//! ever runs under it: fsyncs run on a blocking thread (the group-commit loop, [`run_sync`])
//! on file handles cloned out of the lock, so writers keep appending while an fsync is in
//! flight and the next fsync covers everything they wrote meanwhile.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::batch::{self, BatchHeader, HEADER_LEN};
use super::manager::{now_ms, sync_dir};
use super::producer::{ProducerStates, SeqCheck};
use super::segment::{self, io_err, Segment};
use super::{
    AppendInfo, AppendOutcome, FsyncPolicy, LogConfig, LogError, ReadOutcome, TimestampType,
};

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
    /// (persisted in [`LOG_START_FILE`]).
    log_start: i64,
    /// Sorted by base offset; the last one is the active segment. Never empty.
    segments: Vec<Segment>,
    producers: ProducerStates,
    next_offset: i64,
    /// Files of closed segments written since the last fsync.
    unsynced: Vec<Arc<File>>,
    /// A segment was created or deleted since the last directory fsync.
    dir_dirty: bool,
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
    durable_tx: watch::Sender<Durable>,
    hw_tx: watch::Sender<i64>,
    log_end: AtomicI64,
    log_start: AtomicI64,
    leader_epoch: AtomicI32,
    failed: AtomicBool,
    /// Handed over to another broker (a partition move's last step): appends are refused.
    fenced: AtomicBool,
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the log half-updated in a way later calls
    // would misread (file state is re-derived from sizes), so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The log start offset set by DeleteRecords, as decimal text (absent: the first segment's
/// base). Replaced atomically: tmp, fsync, rename, directory fsync.
pub const LOG_START_FILE: &str = "log-start-offset";

/// The persisted log start offset, if any. An unreadable file is ignored with a warning: the
/// log then starts at its first segment, which only shows records DeleteRecords had hidden.
fn read_log_start(dir: &Path) -> Option<i64> {
    let path = dir.join(LOG_START_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the log start offset");
            return None;
        }
    };
    match text.trim().parse::<i64>() {
        Ok(v) if v >= 0 => Some(v),
        _ => {
            tracing::warn!(path = %path.display(), content = %text.trim(), "ignoring an invalid log start offset");
            None
        }
    }
}

fn write_log_start(dir: &Path, offset: i64) -> Result<(), LogError> {
    use std::io::Write;
    let path = dir.join(LOG_START_FILE);
    let tmp = dir.join(format!("{LOG_START_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{offset}\n").as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write() {
        remove_if_exists(&tmp);
        return Err(LogError::Io {
            path: tmp,
            source: e,
        });
    }
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}

fn snapshot_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(segment::file_name(base, "snapshot"))
}

fn list_bases(dir: &Path, ext: &str) -> Result<Vec<i64>, LogError> {
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

fn remove_if_exists(p: &Path) {
    if let Err(e) = std::fs::remove_file(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), error = %e, "could not remove file");
        }
    }
}

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

    fn raise_hw(&self, offset: i64) {
        self.hw_tx.send_if_modified(|hw| {
            if offset > *hw {
                *hw = offset;
                true
            } else {
                false
            }
        });
    }

    fn fail(&self, e: &LogError) {
        tracing::error!(path = %self.dir.display(), error = %e, "fsync failed; partition stops accepting writes");
        self.failed.store(true, Ordering::SeqCst);
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
    /// Opens (creating if needed) the partition directory `dir` and recovers it: a torn tail is
    /// truncated, damaged indexes rebuilt. Blocking: call from `spawn_blocking` at start-up.
    pub fn open(dir: PathBuf, config: LogConfig) -> Result<PartitionLog, LogError> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut bases = list_bases(&dir, "log")?;
        // Leftovers of an interrupted snapshot write.
        for ent in std::fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            if ent.file_name().to_string_lossy().ends_with(".tmp") {
                remove_if_exists(&ent.path());
            }
        }
        let interval = config.index_interval_bytes;
        let mut segments: Vec<Segment> = Vec::new();
        let mut active_headers: Vec<BatchHeader> = Vec::new();
        let mut cut_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let rec = if is_last {
                segment::recover(&dir, base, true, interval, |h| active_headers.push(*h))?
            } else {
                segment::recover(&dir, base, false, interval, |_| {})?
            };
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
            for &base in &bases[i + 1..] {
                tracing::warn!(path = %dir.display(), base, "removing segment after a torn one");
                for ext in ["log", "index", "timeindex", "snapshot"] {
                    remove_if_exists(&dir.join(segment::file_name(base, ext)));
                }
            }
            bases.truncate(i + 1);
            // The last kept segment becomes active: rescan it fully for the producer state.
            let base = bases[i];
            segments.pop();
            active_headers.clear();
            let rec = segment::recover(&dir, base, true, interval, |h| active_headers.push(*h))?;
            segments.push(rec.segment);
        }
        if segments.is_empty() {
            segments.push(Segment::create(&dir, 0)?);
            sync_dir(&dir)?;
        }

        // Producer state: the snapshot taken when the active segment was created, plus the
        // active segment's batches; without a usable snapshot, every segment's headers.
        let active_base = segments[segments.len() - 1].base;
        let snap = std::fs::read(snapshot_path(&dir, active_base))
            .ok()
            .and_then(|b| serde_json::from_slice::<ProducerStates>(&b).ok());
        let mut producers = match snap {
            Some(s) => s,
            None => {
                let mut s = ProducerStates::default();
                for seg in &segments[..segments.len() - 1] {
                    segment::scan_headers(&seg.log, seg.size, |h| {
                        if h.is_idempotent() {
                            s.record(h, -1, h.max_timestamp);
                        }
                    })
                    .map_err(io_err(&seg.log_path))?;
                }
                s
            }
        };
        for h in active_headers.iter().filter(|h| h.is_idempotent()) {
            let append_time = if h.attributes & (1 << 3) != 0 {
                h.max_timestamp
            } else {
                -1
            };
            producers.record(h, append_time, h.max_timestamp);
        }
        for b in list_bases(&dir, "snapshot")? {
            if b != active_base {
                remove_if_exists(&snapshot_path(&dir, b));
            }
        }
        // Index files whose log is gone (a deletion interrupted between unlinks).
        for ext in ["index", "timeindex"] {
            for b in list_bases(&dir, ext)? {
                if !segments.iter().any(|s| s.base == b) {
                    remove_if_exists(&dir.join(segment::file_name(b, ext)));
                }
            }
        }

        let next_offset = segments[segments.len() - 1].next_offset;
        // A start set by DeleteRecords beyond what recovery kept (a torn tail was cut) can only
        // have hidden records that are gone anyway.
        let log_start = read_log_start(&dir)
            .map_or(segments[0].base, |s| s.min(next_offset))
            .max(segments[0].base);
        // Whatever survived is on disk now (maybe only in the page cache, after a process
        // crash): make it durable before anyone may read it as committed.
        // Closed segments too: a crash right after a roll can leave the closed segment's last
        // writes unsynced (the roll queues its fsync). On clean files this is nearly free.
        for seg in &segments {
            seg.log.sync_data().map_err(io_err(&seg.log_path))?;
        }
        sync_dir(&dir)?;

        let (durable_tx, _) = watch::channel(Durable {
            offset: next_offset,
            failed: false,
        });
        let (hw_tx, _) = watch::channel(next_offset);
        tracing::debug!(path = %dir.display(), log_start, next_offset, segments = segments.len(), "partition recovered");
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            inner: Mutex::new(Inner {
                config,
                log_start,
                segments,
                producers,
                next_offset,
                unsynced: Vec::new(),
                dir_dirty: false,
            }),
            start_file: Mutex::new(()),
            sync_ctl: Mutex::new(SyncCtl::default()),
            durable_tx,
            hw_tx,
            log_end: AtomicI64::new(next_offset),
            log_start: AtomicI64::new(log_start),
            leader_epoch: AtomicI32::new(0),
            failed: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
            fsync_nanos: AtomicU64::new(0),
        });
        Ok(PartitionLog { dir, shared })
    }

    /// The partition directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Validates `records` (one or more v2 record batches exactly as the producer sent them:
    /// sizes, magic, CRC-32C, idempotent-producer sequence), assigns offsets by rewriting each
    /// batch's base offset, and appends them. Returns once the bytes are written to the file
    /// (page cache), not fsynced.
    pub fn append(&self, records: Bytes) -> Result<AppendOutcome, LogError> {
        let sh = &self.shared;
        if sh.failed.load(Ordering::SeqCst) {
            return Err(LogError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(
                    "the partition is closed (deleted, or an earlier fsync failed)",
                ),
            });
        }
        let max = lock(&sh.inner).config.max_message_bytes;
        let mut headers = batch::validate_payload(&records, max)?;
        // One copy at most: none when the caller hands over the only reference.
        let mut buf = records
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        let now = now_ms();
        let epoch = sh.leader_epoch.load(Ordering::Relaxed);

        let mut inner = lock(&sh.inner);
        // Checked under the lock that `fence` takes: no append slips past a handover.
        if sh.fenced.load(Ordering::SeqCst) {
            return Err(LogError::Fenced {
                path: self.dir.clone(),
            });
        }
        let log_start = sh.log_start.load(Ordering::SeqCst);

        // Idempotent-producer checks against a scratch copy of the producers involved, so a
        // payload is all-or-nothing.
        let mut scratch = ProducerStates::default();
        for (_, h) in headers.iter().filter(|(_, h)| h.is_idempotent()) {
            if let Some(e) = inner.producers.producers.get(&h.producer_id) {
                scratch
                    .producers
                    .entry(h.producer_id)
                    .or_insert_with(|| e.clone());
            }
        }
        let single = headers.len() == 1;
        let mut offset = inner.next_offset;
        let append_time = if inner.config.timestamp_type == TimestampType::LogAppendTime {
            now
        } else {
            -1
        };
        for (_, h) in headers.iter_mut() {
            h.base_offset = offset;
            if h.is_idempotent() {
                match scratch.check(h)? {
                    SeqCheck::Append => scratch.record(h, append_time, now),
                    SeqCheck::Duplicate(m) if single => {
                        return Ok(AppendOutcome::Duplicate(AppendInfo {
                            base_offset: m.base_offset,
                            last_offset: m.last_offset,
                            log_append_time: m.append_time,
                            log_start_offset: log_start,
                        }));
                    }
                    SeqCheck::Duplicate(_) => {
                        return Err(LogError::CorruptBatch {
                            reason: "a multi-batch append repeats an already appended batch".into(),
                        })
                    }
                }
            }
            offset = h.next_offset();
        }
        let count = offset - inner.next_offset;

        self.maybe_roll(&mut inner, buf.len() as u64, count, now)
            .map_err(|e| self.write_failed(e))?;

        for (pos, h) in &headers {
            let b = &mut buf[*pos..*pos + h.size];
            batch::rewrite_offset_and_epoch(b, h.base_offset, epoch);
            if append_time >= 0 {
                batch::stamp_log_append_time(b, append_time);
            }
        }
        if append_time >= 0 {
            for (_, h) in headers.iter_mut() {
                h.max_timestamp = append_time;
            }
        }
        let interval = inner.config.index_interval_bytes;
        inner
            .active()
            .append(&buf, &headers, interval, now)
            .map_err(|e| self.write_failed(e))?;

        let base_offset = inner.next_offset;
        inner.next_offset = offset;
        for (k, v) in scratch.producers {
            inner.producers.producers.insert(k, v);
        }
        let fsync = inner.config.fsync;
        drop(inner);
        sh.log_end.store(offset, Ordering::SeqCst);
        match fsync {
            FsyncPolicy::Always => sh.request_sync(),
            FsyncPolicy::Interval(_) => sh.raise_hw(offset),
        }
        Ok(AppendOutcome::Appended(AppendInfo {
            base_offset,
            last_offset: offset - 1,
            log_append_time: append_time,
            log_start_offset: log_start,
        }))
    }

    /// Appends batches copied from another broker's log of this partition (a partition move),
    /// exactly as they are there: offsets, leader epochs and timestamps are kept, and the
    /// idempotent-producer state is rebuilt from them so a producer's retry after the move is
    /// still recognised as a duplicate. The first batch must start at this log's end.
    pub fn append_replicated(&self, records: Bytes) -> Result<i64, LogError> {
        let sh = &self.shared;
        let headers = batch::validate_payload(&records, u32::MAX)?;
        let now = now_ms();
        let mut inner = lock(&sh.inner);
        let mut expected = inner.next_offset;
        for (_, h) in &headers {
            if h.base_offset != expected {
                return Err(LogError::CorruptBatch {
                    reason: format!(
                        "copied batch starts at offset {}, the log ends at {expected}",
                        h.base_offset
                    ),
                });
            }
            expected = h.next_offset();
        }
        let count = expected - inner.next_offset;
        if count == 0 {
            return Ok(inner.next_offset);
        }
        self.maybe_roll(&mut inner, records.len() as u64, count, now)
            .map_err(|e| self.write_failed(e))?;
        let interval = inner.config.index_interval_bytes;
        inner
            .active()
            .append(&records, &headers, interval, now)
            .map_err(|e| self.write_failed(e))?;
        let log_append_time = inner.config.timestamp_type == TimestampType::LogAppendTime;
        for (_, h) in headers.iter().filter(|(_, h)| h.is_idempotent()) {
            let append_time = if log_append_time { h.max_timestamp } else { -1 };
            inner.producers.record(h, append_time, now);
        }
        inner.next_offset = expected;
        let fsync = inner.config.fsync;
        drop(inner);
        sh.log_end.store(expected, Ordering::SeqCst);
        match fsync {
            FsyncPolicy::Always => sh.request_sync(),
            FsyncPolicy::Interval(_) => sh.raise_hw(expected),
        }
        Ok(expected)
    }

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
        write_log_start(&self.dir, offset)?;
        let seg = Segment::create(&self.dir, offset)?;
        let mut inner = lock(&sh.inner);
        let old = std::mem::replace(&mut inner.segments, vec![seg]);
        inner.next_offset = offset;
        inner.log_start = offset;
        inner.dir_dirty = true;
        drop(inner);
        for s in &old {
            if let Err(e) = s.remove_files() {
                tracing::warn!(path = %s.log_path.display(), error = %e, "cannot remove the empty segment");
            }
        }
        sh.log_start.store(offset, Ordering::SeqCst);
        sh.log_end.store(offset, Ordering::SeqCst);
        sh.raise_hw(offset);
        Ok(())
    }

    /// Refuses every later append (a partition move's handover) and returns the log end:
    /// every append that was accepted is below it. Waits for an append in progress.
    pub fn fence(&self) -> i64 {
        let inner = lock(&self.shared.inner);
        self.shared.fenced.store(true, Ordering::SeqCst);
        inner.next_offset
    }

    /// Accepts appends again (a cancelled move).
    pub fn unfence(&self) {
        self.shared.fenced.store(false, Ordering::SeqCst);
    }

    pub fn is_fenced(&self) -> bool {
        self.shared.fenced.load(Ordering::SeqCst)
    }

    /// Logs a failed write (a full disk, typically): nothing of the append is in the log, the
    /// log end did not move, and the next append may succeed once space is freed.
    fn write_failed(&self, e: LogError) -> LogError {
        tracing::error!(path = %self.dir.display(), error = %e, "append failed; nothing was written");
        e
    }

    /// Rolls to a new segment when the active one is full, too old, or the relative offsets
    /// would overflow. The closed segment's files are queued for the next fsync round (with
    /// the directory), never fsynced here under the lock.
    fn maybe_roll(
        &self,
        inner: &mut Inner,
        incoming: u64,
        count: i64,
        now: i64,
    ) -> Result<(), LogError> {
        let cfg = &inner.config;
        let (seg_bytes, seg_ms) = (cfg.segment_bytes, cfg.segment_ms);
        let next = inner.next_offset;
        let a = inner.active();
        if a.size == 0 {
            return Ok(());
        }
        let full = a.size + incoming > seg_bytes;
        let old = a.first_append_ms.is_some_and(|t| now - t >= seg_ms);
        let overflow =
            next + count - a.base > i64::from(u32::MAX) || a.size + incoming > u64::from(u32::MAX);
        if !(full || old || overflow) {
            return Ok(());
        }
        // Everything that can fail (a full disk) comes before the active segment is sealed: a
        // failed roll must leave it active and unchanged, since a sealed segment keeps its
        // indexes only in files and must never be appended to.
        let snap = serde_json::to_vec(&inner.producers).map_err(|e| LogError::Metadata {
            path: snapshot_path(&self.dir, next),
            reason: e.to_string(),
        })?;
        let seg = Segment::create(&self.dir, next)?;
        let a = inner.active();
        if let Err(e) = a.seal() {
            if let Err(rm) = seg.remove_files() {
                tracing::warn!(path = %self.dir.display(), base = next, error = %rm, "could not remove the segment of a failed roll");
            }
            return Err(e);
        }
        let closed = a.files();
        inner.unsynced.extend(closed);
        // Best effort (recovery falls back to scanning headers): tmp + rename, no fsync.
        let sp = snapshot_path(&self.dir, next);
        let tmp = sp.with_extension("snapshot.tmp");
        if std::fs::write(&tmp, &snap)
            .and_then(|()| std::fs::rename(&tmp, &sp))
            .is_err()
        {
            remove_if_exists(&tmp);
        }
        let prev_base = inner.segments[inner.segments.len() - 1].base;
        remove_if_exists(&snapshot_path(&self.dir, prev_base));
        tracing::debug!(path = %self.dir.display(), base = next, "rolled segment");
        inner.segments.push(seg);
        inner.dir_dirty = true;
        Ok(())
    }

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
                return Err(LogError::Io {
                    path: self.dir.clone(),
                    source: std::io::Error::other("fsync failed; the data may not be durable"),
                });
            }
            if !requested {
                // Normally the append already asked; this covers a policy switch.
                sh.request_sync();
                requested = true;
            }
            if rx.changed().await.is_err() {
                return Err(LogError::Io {
                    path: self.dir.clone(),
                    source: std::io::Error::other("log closed"),
                });
            }
        }
    }

    /// Reads whole batches from `offset` (see [`ReadOutcome`]). Only data below the high
    /// watermark is returned. `offset` below the log start or above the log end is
    /// [`LogError::OffsetOutOfRange`]; between the high watermark and the log end the result is
    /// empty (as in Kafka).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome, LogError> {
        let sh = &self.shared;
        let hw = self.high_watermark();
        let (file, path, start_pos, seg_end, log_start) = {
            let inner = lock(&sh.inner);
            let log_start = inner.log_start;
            if offset < log_start || offset > inner.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    requested: offset,
                    start: log_start,
                    end: hw,
                });
            }
            if offset >= hw {
                return Ok(ReadOutcome {
                    records: Bytes::new(),
                    high_watermark: hw,
                    log_start_offset: log_start,
                });
            }
            let i = inner.segments.partition_point(|s| s.base <= offset).max(1) - 1;
            let seg = &inner.segments[i];
            (
                Arc::clone(&seg.log),
                seg.log_path.clone(),
                seg.lookup(offset),
                seg.size,
                log_start,
            )
        };
        let records = read_batches(&file, start_pos, seg_end, offset, hw, max_bytes)
            .map_err(io_err(&path))?;
        Ok(ReadOutcome {
            records,
            high_watermark: hw,
            log_start_offset: log_start,
        })
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
    /// otherwise the log end offset.
    pub fn high_watermark(&self) -> i64 {
        *self.shared.hw_tx.borrow()
    }

    /// Every offset below this one is fsynced.
    pub fn durable_offset(&self) -> i64 {
        self.shared.durable_tx.borrow().offset
    }

    /// A receiver that changes whenever the high watermark moves (fetch long-poll waits on it).
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.shared.hw_tx.subscribe()
    }

    /// The earliest offset whose timestamp is `>= timestamp_ms`, with that timestamp, or `None`
    /// when every record is older (ListOffsets by timestamp). Only data below the high
    /// watermark is considered.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>, LogError> {
        let hw = self.high_watermark();
        let (from, candidates) = {
            let inner = lock(&self.shared.inner);
            let from = inner.log_start;
            let c: Vec<(Arc<File>, PathBuf, u64, u64)> = inner
                .segments
                .iter()
                .filter(|s| s.max_timestamp >= timestamp_ms && s.base < hw && s.next_offset > from)
                .map(|s| {
                    (
                        Arc::clone(&s.log),
                        s.log_path.clone(),
                        s.time_lookup(timestamp_ms),
                        s.size,
                    )
                })
                .collect();
            (from, c)
        };
        for (file, path, pos, end) in candidates {
            if let Some(hit) =
                find_timestamp(&file, pos, end, timestamp_ms, from, hw).map_err(io_err(&path))?
            {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    /// The first record carrying the largest timestamp of the partition, as `(offset,
    /// timestamp)`, or `None` when no record below the high watermark has a timestamp
    /// (ListOffsets with `MAX_TIMESTAMP`, -3). Only data below the high watermark is considered.
    ///
    /// Cheap: each segment knows its largest batch timestamp (kept at append, rebuilt at
    /// recovery), so only the segment holding the maximum is read, from its time-index entry
    /// for that timestamp, and only the one batch carrying it is decoded. Ties between segments
    /// go to the earliest. If the segment's maximum lies at or above the high watermark (an
    /// fsync round in flight), that segment's headers below the high watermark are scanned for
    /// its readable maximum instead.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, LogError> {
        let hw = self.high_watermark();
        // (max timestamp, scan start, file, path, end)
        let mut cands: Vec<(i64, u64, Arc<File>, PathBuf, u64)> = {
            let inner = lock(&self.shared.inner);
            inner
                .segments
                .iter()
                .filter(|s| s.max_timestamp >= 0 && s.base < hw)
                .map(|s| {
                    (
                        s.max_timestamp,
                        s.time_lookup(s.max_timestamp),
                        Arc::clone(&s.log),
                        s.log_path.clone(),
                        s.size,
                    )
                })
                .collect()
        };
        loop {
            let mut best: Option<usize> = None;
            for (i, c) in cands.iter().enumerate() {
                if best.is_none_or(|b| c.0 > cands[b].0) {
                    best = Some(i);
                }
            }
            let Some(b) = best else {
                return Ok(None);
            };
            let (ts, pos, file, path, end) = &cands[b];
            if let Some(hit) = find_timestamp(file, *pos, *end, *ts, 0, hw).map_err(io_err(path))? {
                return Ok(Some(hit));
            }
            match max_timestamp_below(file, *end, hw).map_err(io_err(path))? {
                Some(m) => {
                    cands[b].0 = m;
                    cands[b].1 = 0;
                }
                None => {
                    cands.remove(b);
                }
            }
        }
    }

    /// Deletes closed segments that retention (time, then size) no longer keeps. Returns the
    /// number of segments deleted. The active segment is never deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut inner = lock(&self.shared.inner);
        let expired = inner.producers.expire(now_ms);
        if expired > 0 {
            tracing::debug!(path = %self.dir.display(), expired, "idle producers forgotten");
        }
        let (ret_ms, ret_bytes) = (inner.config.retention_ms, inner.config.retention_bytes);
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
        self.shared.log_start.store(new_start, Ordering::SeqCst);
        drop(inner);
        let mut result = Ok(removed.len());
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
        let sh = &self.shared;
        let _serial = lock(&sh.start_file);
        let hw = self.high_watermark();
        let current = lock(&sh.inner).log_start;
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start: current,
                end: hw,
            });
        }
        if target <= current {
            return Ok(current);
        }
        write_log_start(&self.dir, target)?;

        let mut inner = lock(&sh.inner);
        inner.log_start = inner.log_start.max(target);
        let start = inner.log_start;
        sh.log_start.store(start, Ordering::SeqCst);
        let last = inner.segments.len() - 1;
        let doomed = inner.segments[..last]
            .iter()
            .take_while(|s| s.next_offset <= start)
            .count();
        let removed: Vec<Segment> = inner.segments.drain(..doomed).collect();
        drop(inner);
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

    /// Replaces the config (topic config change); takes effect for the next append / roll.
    pub fn set_config(&self, config: LogConfig) {
        let to_interval = matches!(config.fsync, FsyncPolicy::Interval(_));
        lock(&self.shared.inner).config = config;
        if to_interval {
            // Readers may now see everything written.
            self.shared.raise_hw(self.log_end_offset());
        }
    }

    /// The current config.
    pub fn config(&self) -> LogConfig {
        lock(&self.shared.inner).config.clone()
    }

    /// Sets the partition leader epoch stamped into appended batches (0 until clustering).
    /// The leader epoch stamped on appended batches (0 on a single node).
    pub fn leader_epoch(&self) -> i32 {
        self.shared.leader_epoch.load(Ordering::Relaxed)
    }

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
            })
            .collect()
    }

    /// Number of segments (metrics, tests).
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

    /// Fsyncs everything written so far (shutdown, interval ticker), indexes included.
    pub fn flush(&self) -> Result<(), LogError> {
        let r = self.shared.sync_round(true);
        if let Err(e) = &r {
            self.shared.fail(e);
        }
        r
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

fn file_mtime_ms(f: &File) -> Option<i64> {
    let m = f.metadata().ok()?.modified().ok()?;
    let d = m.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// Header fields needed to walk batches: (base offset, size, last offset).
fn peek(b: &[u8]) -> Option<(i64, usize, i64)> {
    if b.len() < 27 {
        return None;
    }
    let size = batch::announced_size(b).ok()?;
    let mut base = [0u8; 8];
    base.copy_from_slice(&b[..8]);
    let base = i64::from_be_bytes(base);
    let delta = i32::from_be_bytes([b[23], b[24], b[25], b[26]]);
    Some((base, size, base + i64::from(delta)))
}

/// Reads whole batches of one segment, starting with the one containing `offset`.
fn read_batches(
    file: &File,
    mut pos: u64,
    seg_end: u64,
    offset: i64,
    hw: i64,
    max_bytes: usize,
) -> std::io::Result<Bytes> {
    // Walk headers from the index position to the batch containing `offset`.
    let mut hdr = [0u8; 27];
    let first_size = loop {
        if pos + 27 > seg_end {
            return Ok(Bytes::new());
        }
        file.read_exact_at(&mut hdr, pos)?;
        let Some((base, size, last)) = peek(&hdr) else {
            return Ok(Bytes::new());
        };
        if base >= hw {
            return Ok(Bytes::new());
        }
        if last >= offset {
            break size;
        }
        pos += size as u64;
    };
    let avail = (seg_end - pos) as usize;
    let want = first_size.max(max_bytes).min(avail);
    let mut buf = vec![0u8; want];
    file.read_exact_at(&mut buf, pos)?;
    // Keep whole batches below the high watermark: the first always, then while they fit.
    let mut end = 0;
    while end < buf.len() {
        let Some((base, size, _)) = peek(&buf[end..]) else {
            break;
        };
        if base >= hw || end + size > buf.len() || (end > 0 && end + size > max_bytes) {
            break;
        }
        end += size;
    }
    buf.truncate(end);
    Ok(Bytes::from(buf))
}

/// Finds the first record with timestamp `>= ts` scanning batches from `pos`.
fn find_timestamp(
    file: &File,
    mut pos: u64,
    end: u64,
    ts: i64,
    from: i64,
    hw: i64,
) -> std::io::Result<Option<(i64, i64)>> {
    let mut hdr = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= end {
        file.read_exact_at(&mut hdr, pos)?;
        let Ok(h) = batch::parse_header(&hdr) else {
            return Ok(None);
        };
        if h.base_offset >= hw {
            return Ok(None);
        }
        if pos + h.size as u64 > end {
            return Ok(None);
        }
        if h.max_timestamp >= ts && h.next_offset() > from {
            let mut whole = vec![0u8; h.size];
            file.read_exact_at(&mut whole, pos)?;
            if let Some(hit) = first_record_at_or_after(&whole, &h, ts, from) {
                return Ok(Some(hit));
            }
        }
        pos += h.size as u64;
    }
    Ok(None)
}

/// The largest batch max timestamp among the batches of a segment file that start below `hw`,
/// or `None` when there is none with a timestamp.
fn max_timestamp_below(file: &File, end: u64, hw: i64) -> std::io::Result<Option<i64>> {
    let mut max: Option<i64> = None;
    let mut hdr = [0u8; HEADER_LEN];
    let mut pos = 0u64;
    while pos + HEADER_LEN as u64 <= end {
        file.read_exact_at(&mut hdr, pos)?;
        let Ok(h) = batch::parse_header(&hdr) else {
            break;
        };
        if h.base_offset >= hw || pos + h.size as u64 > end {
            break;
        }
        if h.max_timestamp >= 0 && max.is_none_or(|m| h.max_timestamp > m) {
            max = Some(h.max_timestamp);
        }
        pos += h.size as u64;
    }
    Ok(max)
}

/// Within one batch, the first record at or after offset `from` whose timestamp is `>= ts`
/// (the batch's max timestamp stands for every record under LogAppendTime, or if the records
/// cannot be read); `None` when every such record lies below `from`.
fn first_record_at_or_after(
    whole: &[u8],
    h: &BatchHeader,
    ts: i64,
    from: i64,
) -> Option<(i64, i64)> {
    let fallback = Some((h.base_offset.max(from), h.max_timestamp));
    if h.attributes & (1 << 3) != 0 {
        return fallback;
    }
    batch::find_record(whole, h, |offset, t| t >= ts && offset >= from).unwrap_or(fallback)
}
