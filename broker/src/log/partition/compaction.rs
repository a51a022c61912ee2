//! Log compaction (`cleanup.policy=compact`): closed segments keep only the latest record of
//! each key, the way Kafka's log cleaner does, so a topic used as a table (Kafka Connect's
//! config and offset topics, Kafka Streams changelogs, a schema registry) stays the size of
//! its live keys.
//!
//! One compaction (`PartitionLog::compact`, blocking, on the retention ticker's thread):
//!
//! 1. Takes the closed segments that lie wholly below the last stable offset (below the high
//!    watermark, never an offset a follower's truncation could still take back, and below
//!    every open transaction, so each transactional batch taken is committed or aborted) and
//!    whose newest batch is older than `min.compaction.lag.ms`. The active segment is neither
//!    compacted nor read for keys.
//! 2. Reads them once for the latest offset of every key (remembered by a 16-byte digest),
//!    in plain batches and committed transactions' batches (never an aborted one's).
//! 3. Reads them again and, per segment with something to remove, writes a cleaned copy into
//!    the partition's `compacting.tmp/` folder: every batch is kept, with only the records that
//!    are the latest of their key (tombstones only while their batch is younger than
//!    `delete.retention.ms`; records without a key always; an aborted transaction's records
//!    never; markers whole), and emptied batches in a row of
//!    one producer joined into one empty batch, see `log/compaction.rs`. The copy's files are
//!    fdatasynced. A segment with nothing to remove and nothing to join is not rewritten.
//! 4. Swaps each copy in under the partition lock, if the segment is still the one it read
//!    (retention or a follower's truncation may have removed or cut it meanwhile): the old
//!    index files are removed and the directory fsynced, then the copy's log and index files
//!    are renamed over the old names. A crash at any point leaves either the old log or the
//!    new one under the segment's name, with its own indexes or none (recovery rebuilds
//!    missing indexes); a leftover `compacting.tmp/` is removed at open.
//!
//! A segment holding a batch whose CRC does not hold is left as it is (reads refuse that
//! batch; compaction does not make damage look intact).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{lock, PartitionLog};
use crate::log::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use crate::log::compaction::{self as pure, CleanerRecord, Cleaning, KeyDigest};
use crate::log::files::{io_err, sync_dir};
use crate::log::segment::{file_name, Segment};
use crate::log::LogError;

/// Where a compaction writes its cleaned copies (inside the partition directory).
pub(super) const COMPACTING_DIR: &str = "compacting.tmp";

/// How much of a segment one read brings in.
const READ_CHUNK: usize = 1 << 20;

/// What one compaction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Closed segments read.
    pub segments_read: usize,
    /// Segments replaced by a cleaned copy.
    pub segments_rewritten: usize,
    /// Records removed.
    pub records_removed: u64,
    /// Bytes of the rewritten segments before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Distinct keys in the key map (at most the limit it was given).
    pub keys: usize,
    /// The offset the key map reached: what comes after it is left for the next compaction.
    pub mapped_to: i64,
}

/// The default bound of the key map (`--compaction-key-map-entries`): about 48 bytes of memory
/// per entry at most, so some 48 MiB.
pub const DEFAULT_KEY_MAP_ENTRIES: usize = 1_000_000;

/// A closed segment as compaction saw it under the lock.
struct Closed {
    base: i64,
    /// The offset after its last batch.
    end: i64,
    log: Arc<File>,
    path: PathBuf,
    size: u64,
}

impl PartitionLog {
    /// Whether a compaction is due: the topic compacts, and the closed segments written since
    /// the last compaction are at least `min.cleanable.dirty.ratio` of all closed segments.
    pub fn compaction_due(&self) -> bool {
        let inner = lock(&self.shared.inner);
        if !inner.config.cleanup.compact || inner.segments.len() < 2 {
            return false;
        }
        let cleaned_to = self.shared.cleaned_to.load(Ordering::SeqCst);
        let closed = &inner.segments[..inner.segments.len() - 1];
        let total: u64 = closed.iter().map(|s| s.size).sum();
        // A segment the last key map did not reach to the end of is dirty.
        let dirty: u64 = closed
            .iter()
            .filter(|s| s.next_offset > cleaned_to)
            .map(|s| s.size)
            .sum();
        total > 0 && dirty as f64 >= inner.config.min_cleanable_dirty_ratio * total as f64
    }

    /// Compacts the closed segments (see the module comment) with a key map of at most
    /// [`DEFAULT_KEY_MAP_ENTRIES`] keys.
    pub fn compact(&self, now_ms: i64) -> Result<Compacted, LogError> {
        self.compact_bounded(now_ms, DEFAULT_KEY_MAP_ENTRIES)
    }

    /// Compacts the closed segments with a key map of at most `max_keys` distinct keys (see
    /// the module comment). Blocking: reads and writes whole segments and fsyncs; run it off
    /// the async runtime.
    pub fn compact_bounded(&self, now_ms: i64, max_keys: usize) -> Result<Compacted, LogError> {
        let max_keys = max_keys.max(1);
        let sh = &self.shared;
        let _serial = lock(&sh.cleaning);
        // The last stable offset (at most the high watermark) before the aborted transactions:
        // see `TxnView`.
        let stable = self.last_stable_offset();
        let (config, closed, truncations, txns) = {
            let inner = lock(&sh.inner);
            let last = inner.segments.len() - 1;
            let lag_limit = now_ms.saturating_sub(inner.config.min_compaction_lag_ms);
            let closed: Vec<Closed> = inner.segments[..last]
                .iter()
                .take_while(|s| s.next_offset <= stable && s.max_timestamp <= lag_limit)
                .map(|s| Closed {
                    base: s.base,
                    end: s.next_offset,
                    log: Arc::clone(&s.log),
                    path: s.log_path.clone(),
                    size: s.size,
                })
                .collect();
            let truncations = sh.truncations.load(Ordering::SeqCst);
            let txns = match (closed.first(), closed.last()) {
                (Some(first), Some(last)) if sh.any_aborted.load(Ordering::SeqCst) => {
                    pure::TxnView::new(
                        &inner.producers.aborted_between(first.base, last.end),
                        stable,
                    )
                }
                _ => pure::TxnView::new(&[], stable),
            };
            (inner.config.clone(), closed, truncations, txns)
        };
        let cleaning = |h: &BatchHeader| txns.cleaning(h);
        let mut done = Compacted {
            segments_read: closed.len(),
            ..Compacted::default()
        };
        if !config.cleanup.compact || closed.is_empty() {
            return Ok(done);
        }
        let end = closed[closed.len() - 1].end;

        // Pass 1: the latest offset of every key written since the last compaction's map
        // ended (`cleaned_to`; everything before it was compacted already, so a key found
        // only there has its latest record there), until the map holds `max_keys` keys.
        let cleaned_to = sh.cleaned_to.load(Ordering::SeqCst);
        let mut latest: HashMap<KeyDigest, i64> = HashMap::new();
        let mut mapped_to = end;
        for seg in closed.iter().filter(|s| s.end > cleaned_to) {
            let mut full = false;
            walk(seg, |b, h| {
                if full || cleaning(h) != Cleaning::ByKey || h.last_offset() < cleaned_to {
                    return Ok(());
                }
                pure::for_each_record(b, h, |r, _| {
                    let Some(k) = r.key.filter(|_| !full && r.offset >= cleaned_to) else {
                        return;
                    };
                    let d = pure::key_digest(k);
                    if latest.len() >= max_keys && !latest.contains_key(&d) {
                        full = true;
                        mapped_to = r.offset;
                    } else {
                        latest.insert(d, r.offset);
                    }
                })
            })?;
            if full {
                break;
            }
        }
        done.keys = latest.len();
        done.mapped_to = mapped_to;

        // Pass 2: a cleaned copy of each segment that has something to remove, swapped in.
        // A record is removed when the map knows a later record of its key, or when it is a
        // tombstone past `delete.retention.ms` that the map knows no later record for; nothing
        // from `mapped_to` on is touched (the map does not know what supersedes it).
        let tombstones_until = now_ms.saturating_sub(config.delete_retention_ms);
        let scratch = self.dir.join(COMPACTING_DIR);
        for seg in closed.iter().filter(|s| s.base < mapped_to) {
            let keep = |r: &CleanerRecord<'_>, h: &BatchHeader| match r.key {
                _ if r.offset >= mapped_to => true,
                _ if cleaning(h) == Cleaning::Aborted => false,
                None => true,
                Some(k) => {
                    latest
                        .get(&pure::key_digest(k))
                        .is_none_or(|&o| o == r.offset)
                        && !(r.tombstone && h.max_timestamp < tombstones_until)
                }
            };
            if let Some((copy, removed)) =
                self.clean_copy(seg, &scratch, &config, now_ms, cleaning, keep)?
            {
                let before = seg.size;
                let after = copy.size;
                if self.swap_in(seg, copy)? {
                    done.segments_rewritten += 1;
                    done.records_removed += removed;
                    done.bytes_before += before;
                    done.bytes_after += after;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&scratch);
        {
            let _inner = lock(&sh.inner);
            if sh.truncations.load(Ordering::SeqCst) == truncations {
                sh.cleaned_to.fetch_max(mapped_to, Ordering::SeqCst);
            }
        }
        if done.segments_rewritten > 0 {
            tracing::info!(
                path = %self.dir.display(),
                segments = done.segments_rewritten,
                records_removed = done.records_removed,
                bytes_before = done.bytes_before,
                bytes_after = done.bytes_after,
                keys = done.keys,
                mapped_to,
                end,
                "compacted"
            );
        }
        Ok(done)
    }

    /// Writes the cleaned copy of `seg` into `scratch` and returns it with the number of
    /// records removed; `None` when nothing would be removed or a batch of it is damaged.
    fn clean_copy(
        &self,
        seg: &Closed,
        scratch: &Path,
        config: &crate::log::LogConfig,
        now_ms: i64,
        cleaning: impl Fn(&BatchHeader) -> Cleaning,
        keep: impl Fn(&CleanerRecord<'_>, &BatchHeader) -> bool,
    ) -> Result<Option<(Segment, u64)>, LogError> {
        // First without writing: most segments of a compacted log, once cleaned, have
        // nothing left to remove and no empty batches left to join.
        let mut removed = 0u64;
        let mut joins = 0u64;
        let mut damaged = false;
        // The empty batch the emptied batches so far would join into (its header).
        let mut run: Option<BatchHeader> = None;
        walk(seg, |b, h| {
            if batch::check_crc(b).is_err() {
                damaged = true;
                return Ok(());
            }
            let (mut kept, mut gone) = (h.record_count, 0);
            if cleaning(h) != Cleaning::Whole {
                kept = 0;
                pure::for_each_record(b, h, |r, _| {
                    if keep(&r, h) {
                        kept += 1;
                    } else {
                        gone += 1;
                    }
                })?;
            }
            removed += gone;
            let after = BatchHeader {
                record_count: kept,
                ..*h
            };
            // As the copy will have it: an empty batch of header only (a rewritten one, or one
            // stored so).
            let emptied = kept == 0 && pure::is_cleanable(h) && (gone > 0 || h.size == HEADER_LEN);
            run = match run {
                Some(r) if emptied && pure::joins_empty_run(&r, &after) => {
                    joins += 1;
                    Some(BatchHeader {
                        last_offset_delta: after.last_offset_delta.saturating_add(
                            i32::try_from(after.base_offset - r.base_offset).unwrap_or(i32::MAX),
                        ),
                        ..r
                    })
                }
                _ => emptied.then_some(after),
            };
            Ok(())
        })?;
        if damaged {
            tracing::warn!(path = %seg.path.display(), "a batch of this segment fails its CRC; the segment is not compacted");
            return Ok(None);
        }
        if removed == 0 && joins == 0 {
            return Ok(None);
        }
        let _ = std::fs::remove_dir_all(scratch);
        std::fs::create_dir_all(scratch).map_err(io_err(scratch))?;
        let mut out = CopyWriter {
            copy: Segment::create(scratch, seg.base)?,
            pending: Vec::new(),
            headers: Vec::new(),
            index_interval_bytes: config.index_interval_bytes,
            now_ms,
        };
        // The bytes of the empty batch the emptied batches so far are joined into.
        let mut run: Option<Vec<u8>> = None;
        walk(seg, |b, h| {
            let cleaned = if cleaning(h) != Cleaning::Whole {
                pure::retain(b, h, |r| keep(r, h))?
            } else {
                None
            };
            let bytes: &[u8] = cleaned.as_deref().unwrap_or(b);
            let header = batch::parse_header(bytes)?;
            if let Some(r) = run.as_mut() {
                if pure::joins_empty_run(&batch::parse_header(r)?, &header) {
                    return pure::extend_empty_run(r, &header);
                }
            }
            if let Some(r) = run.take() {
                out.push(&r)?;
            }
            if header.record_count == 0 && pure::is_cleanable(&header) && bytes.len() == HEADER_LEN
            {
                run = Some(bytes.to_vec());
                Ok(())
            } else {
                out.push(bytes)
            }
        })?;
        if let Some(r) = run.take() {
            out.push(&r)?;
        }
        out.flush()?;
        let mut copy = out.copy;
        copy.seal()?;
        for f in copy.files() {
            f.sync_data().map_err(io_err(scratch))?;
        }
        Ok(Some((copy, removed)))
    }

    /// Replaces `seg` by `copy` if the partition still has `seg` as a closed segment (see the
    /// module comment for the order of the file operations). Returns whether it did.
    fn swap_in(&self, seg: &Closed, mut copy: Segment) -> Result<bool, LogError> {
        let sh = &self.shared;
        let mut inner = lock(&sh.inner);
        let last = inner.segments.len() - 1;
        let Some(i) = inner.segments[..last]
            .iter()
            .position(|s| s.base == seg.base && Arc::ptr_eq(&s.log, &seg.log))
        else {
            drop(inner);
            let _ = copy.remove_files();
            return Ok(false);
        };
        let dir = self.dir.clone();
        let named = |ext: &str| dir.join(file_name(seg.base, ext));
        for ext in ["index", "timeindex"] {
            let p = named(ext);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(LogError::Io { path: p, source: e })
                }
                _ => {}
            }
        }
        // The old indexes must be gone for good before the new log takes the name: the
        // new log beside the old indexes would be looked up at wrong positions.
        sync_dir(&dir)?;
        let from = copy.log_path.clone();
        for ext in ["log", "index", "timeindex"] {
            let src = from.with_extension(ext);
            std::fs::rename(&src, named(ext)).map_err(io_err(&src))?;
        }
        copy.log_path = named("log");
        let old = std::mem::replace(&mut inner.segments[i], copy);
        inner.dir_dirty = true;
        drop(inner);
        drop(old);
        Ok(true)
    }
}

/// The cleaned copy of a segment being written: batches gather in `pending` and go to the
/// segment a chunk at a time.
struct CopyWriter {
    copy: Segment,
    pending: Vec<u8>,
    headers: Vec<(usize, BatchHeader)>,
    index_interval_bytes: u32,
    now_ms: i64,
}

impl CopyWriter {
    fn push(&mut self, batch: &[u8]) -> Result<(), LogError> {
        let header = batch::parse_header(batch)?;
        self.headers.push((self.pending.len(), header));
        self.pending.extend_from_slice(batch);
        if self.pending.len() >= READ_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let r = self.copy.append(
            &[self.pending.as_slice()],
            &self.headers,
            self.index_interval_bytes,
            self.now_ms,
        );
        self.pending.clear();
        self.headers.clear();
        r
    }
}

/// Calls `f` with each whole batch of the closed segment `seg` and its header, in order,
/// reading the file a chunk at a time. Stops at the first header that does not parse or a
/// batch cut short (a closed segment's end is where its last whole batch ends).
fn walk(
    seg: &Closed,
    mut f: impl FnMut(&[u8], &BatchHeader) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at: u64 = 0; // file position of buf[0]
    let mut pos: u64 = 0;
    while pos + HEADER_LEN as u64 <= seg.size {
        let need = |at: u64, len: usize, buf: &Vec<u8>, buf_at: u64| {
            at >= buf_at && at + len as u64 <= buf_at + buf.len() as u64
        };
        if !need(pos, HEADER_LEN, &buf, buf_at) {
            fill(seg, &mut buf, &mut buf_at, pos, HEADER_LEN)?;
        }
        let off = (pos - buf_at) as usize;
        let Ok(h) = batch::parse_header(&buf[off..]) else {
            break;
        };
        if h.size < LOG_OVERHEAD || pos + h.size as u64 > seg.size {
            break;
        }
        if !need(pos, h.size, &buf, buf_at) {
            fill(seg, &mut buf, &mut buf_at, pos, h.size)?;
        }
        let off = (pos - buf_at) as usize;
        f(&buf[off..off + h.size], &h)?;
        pos += h.size as u64;
    }
    Ok(())
}

/// Reads at least `len` bytes of `seg` from `at` (a chunk, or more for a larger batch) into
/// `buf`.
fn fill(
    seg: &Closed,
    buf: &mut Vec<u8>,
    buf_at: &mut u64,
    at: u64,
    len: usize,
) -> Result<(), LogError> {
    let want = len.max(READ_CHUNK).min((seg.size - at) as usize);
    buf.resize(want, 0);
    seg.log.read_exact_at(buf, at).map_err(io_err(&seg.path))?;
    *buf_at = at;
    Ok(())
}
