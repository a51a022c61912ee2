//! The read path: whole batches from an offset (index lookup under the lock, `pread` without
//! it), and the timestamp lookups of ListOffsets (time index, then one batch decoded). Only
//! data below the high watermark is ever returned.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::{lock, PartitionLog, ReadBound};
use crate::log::batch::{self, BatchHeader, HEADER_LEN};
use crate::log::compaction;
use crate::log::files::io_err;
use crate::log::region::{FileRegion, Records, REGION_MAX, REGION_MIN};
use crate::log::{LogError, ReadOutcome};

/// How many more reads (each an index lookup and a `pread`, of a segment or `max_bytes` of
/// one) one read that found only empty batches makes to get past them, and how many bytes of
/// empty batches it returns at most; a consumer's next fetch goes on from where it ended.
const MAX_EMPTY_READS: usize = 1000;
const EMPTY_BATCHES_MAX: usize = 4 << 20;

/// When the whole batches `b` hold no record at all (batches compaction emptied), the offset
/// after the last; `None` if one has a record or `b` is empty.
fn emptied_only(b: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut next = None;
    while pos < b.len() {
        let h = batch::parse_header(&b[pos..]).ok()?;
        if h.record_count != 0 {
            return None;
        }
        next = Some(h.next_offset());
        pos += h.size;
    }
    next
}

/// A segment a timestamp lookup may search: (file, path, `Segment::time_lookup`, end).
type TimeCandidate = (Arc<File>, PathBuf, (u64, i64), u64);
/// A segment that may hold the maximum timestamp: (max timestamp, scan start, file, path, end,
/// base offset).
type MaxCandidate = (i64, (u64, i64), Arc<File>, PathBuf, u64, i64);

impl PartitionLog {
    /// Reads whole batches from `offset` (see [`ReadOutcome`]). Only data below the high
    /// watermark is returned. `offset` below the log start or above the log end is
    /// [`LogError::OffsetOutOfRange`]; between the high watermark and the log end the result is
    /// empty (as in Kafka).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome, LogError> {
        self.read_up_to(offset, max_bytes, ReadBound::HighWatermark)
    }

    /// [`PartitionLog::read`] for a `read_committed` consumer: only data below the last stable
    /// offset (no batch of a transaction still open).
    pub fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome, LogError> {
        self.read_up_to(offset, max_bytes, ReadBound::LastStable)
    }

    /// [`PartitionLog::read`] for a consumer's fetch on a connection that can `sendfile`: a
    /// run of whole batches of at least [`REGION_MIN`] bytes that this process already checked
    /// comes back as a [`FileRegion`] instead of bytes (`region.rs`). Anything else is read and
    /// checked as [`PartitionLog::read`] does, and remembered as checked, so the next read of
    /// the same bytes can be a region.
    pub fn read_for_send(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadOutcome<Records>, LogError> {
        self.read_checked(offset, max_bytes, ReadBound::HighWatermark, true)
    }

    /// [`PartitionLog::read_for_send`] for a `read_committed` consumer: only data below the
    /// last stable offset.
    pub fn read_committed_for_send(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadOutcome<Records>, LogError> {
        self.read_checked(offset, max_bytes, ReadBound::LastStable, true)
    }

    /// A read bounded by the high watermark or the last stable offset (consumers) or the log
    /// end (followers). The answer reports the high watermark either way.
    pub(super) fn read_up_to(
        &self,
        offset: i64,
        max_bytes: usize,
        bound: ReadBound,
    ) -> Result<ReadOutcome, LogError> {
        let out = self.read_checked(offset, max_bytes, bound, false)?;
        let records = match out.records {
            Records::Bytes(b) => b,
            // Not asked for (`region: false`), but correct either way.
            Records::File(r) => r.read_all().map_err(io_err(&r.path))?,
        };
        Ok(ReadOutcome {
            records,
            high_watermark: out.high_watermark,
            log_start_offset: out.log_start_offset,
        })
    }

    /// The read behind all of them: a file region only when `region` is set.
    ///
    /// One segment's batches, except when all it found are empty batches (what compaction
    /// leaves of batches whose every record is gone): the read then goes on, in that segment
    /// and the next ones, until it has a batch with records, with empty batches not counted
    /// against `max_bytes` (up to [`EMPTY_BATCHES_MAX`] of them; a `sendfile` region that
    /// starts with an empty batch is read as bytes for that). Clients that take a
    /// fetch without a record for a sign of trouble would otherwise stop at a run of compacted
    /// segments: kafkajs 2 fetches the same offset again forever, librdkafka before 2.1 doubles
    /// its fetch size on every such answer and then reports the partition's data as too large.
    pub(super) fn read_checked(
        &self,
        offset: i64,
        max_bytes: usize,
        bound: ReadBound,
        region: bool,
    ) -> Result<ReadOutcome<Records>, LogError> {
        // A follower copies the log exactly as it is.
        if bound == ReadBound::LogEnd {
            return self.read_segment(offset, max_bytes, bound, region);
        }
        // A compacted topic is served as bytes: runs of empty batches in it are collapsed.
        let compacted = self.shared.compacted.load(Ordering::Relaxed);
        let first = self.read_segment(offset, max_bytes, bound, region && !compacted)?;
        let bytes = match &first.records {
            Records::Bytes(b) => b,
            // A region that starts with an empty batch (a topic compacted before its policy
            // changed) may hold nothing else: read it as bytes, which goes on past them.
            Records::File(r) => {
                let mut hdr = [0u8; HEADER_LEN];
                r.file
                    .read_exact_at(&mut hdr, r.pos)
                    .map_err(io_err(r.path.as_path()))?;
                if batch::parse_header(&hdr).is_ok_and(|h| h.record_count == 0) {
                    return self.read_checked(offset, max_bytes, bound, false);
                }
                return Ok(first);
            }
        };
        let mut out: Option<Vec<u8>> = None;
        if let Some(mut next) = emptied_only(bytes) {
            // Empty batches do not count against `max_bytes` (they are what the client must
            // get past), up to EMPTY_BATCHES_MAX bytes of them.
            let mut all = bytes.to_vec();
            for _ in 0..MAX_EMPTY_READS {
                if all.len() >= EMPTY_BATCHES_MAX {
                    break;
                }
                let more = match self.read_segment(next, max_bytes, bound, false) {
                    Ok(m) => m,
                    // Retention or a truncation moved the log meanwhile: what was read stands.
                    Err(LogError::OffsetOutOfRange { .. }) => break,
                    Err(e) => return Err(e),
                };
                let Records::Bytes(m) = more.records else {
                    break;
                };
                if m.is_empty() {
                    break;
                }
                all.extend_from_slice(&m);
                match emptied_only(&m) {
                    Some(n) => next = n,
                    None => break,
                }
            }
            out = Some(all);
        }
        if compacted {
            if let Some(c) = compaction::collapse_empty_runs(out.as_deref().unwrap_or(bytes)) {
                out = Some(c);
            }
        }
        Ok(match out {
            Some(b) => ReadOutcome {
                records: Records::Bytes(Bytes::from(b)),
                ..first
            },
            None => first,
        })
    }

    /// One segment's whole batches from `offset` (see [`PartitionLog::read_checked`]).
    fn read_segment(
        &self,
        offset: i64,
        max_bytes: usize,
        bound: ReadBound,
        region: bool,
    ) -> Result<ReadOutcome<Records>, LogError> {
        let sh = &self.shared;
        let hw = self.high_watermark();
        let limit = match bound {
            ReadBound::LogEnd => self.log_end_offset(),
            ReadBound::HighWatermark => hw,
            ReadBound::LastStable => hw.min(sh.open_txn.load(Ordering::SeqCst)),
        };
        let (file, path, (start_pos, expect), seg_end, log_start, base) = {
            let inner = lock(&sh.inner);
            let log_start = inner.log_start;
            if offset < log_start || offset > inner.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    requested: offset,
                    start: log_start,
                    end: hw,
                });
            }
            if offset >= limit {
                return Ok(ReadOutcome {
                    records: Records::Bytes(Bytes::new()),
                    high_watermark: hw,
                    log_start_offset: log_start,
                });
            }
            let i = inner.segments.partition_point(|s| s.base <= offset).max(1) - 1;
            let seg = &inner.segments[i];
            (
                Arc::clone(&seg.log),
                seg.log_path.clone(),
                seg.lookup_entry(offset),
                seg.size,
                log_start,
                seg.base,
            )
        };
        let damaged = |(at, why): (u64, String)| {
            tracing::warn!(path = %path.display(), position = at, offset, reason = %why,
                "not serving a stored batch that is damaged");
            crate::recovery::count(crate::recovery::Action::CorruptBatchRefused);
            LogError::CorruptBatch {
                reason: format!("{}: the batch at position {at}: {why}", path.display()),
            }
        };
        let first = locate(&file, start_pos, expect, seg_end, offset, limit)
            .map_err(io_err(&path))?
            .map_err(damaged)?;
        let done = |records| ReadOutcome {
            records,
            high_watermark: hw,
            log_start_offset: log_start,
        };
        let Some(first) = first else {
            return Ok(done(Records::Bytes(Bytes::new())));
        };
        if region {
            if let Some(r) = self.checked_region(base, &file, &path, first, max_bytes, limit)? {
                return Ok(done(Records::File(r)));
            }
        }
        let records = read_from(&file, first, seg_end, limit, max_bytes).map_err(io_err(&path))?;
        let records = keep_intact(records, &path)?;
        if region && !records.is_empty() {
            self.note_checked(base, &file, first.pos, first.pos + records.len() as u64);
        }
        Ok(done(Records::Bytes(records)))
    }

    /// The longest run of whole batches from `first` within `max_bytes` (the first batch
    /// always) and below `hw` whose bytes this process checked, as a region, if it is at least
    /// [`REGION_MIN`] long. The run ends at the segment's end, at an indexed batch start (the
    /// index lists batch starts every `index.interval.bytes`, so the run is at most that much
    /// and a batch shorter than a read's) or where the checked bytes end.
    fn checked_region(
        &self,
        base: i64,
        file: &Arc<File>,
        path: &std::path::Path,
        first: First,
        max_bytes: usize,
        hw: i64,
    ) -> Result<Option<FileRegion>, LogError> {
        if first.size > REGION_MAX {
            return Ok(None);
        }
        let want_end = first.pos + first.size.max(max_bytes.min(REGION_MAX)) as u64;
        let (end, indexed) = {
            let inner = lock(&self.shared.inner);
            let Ok(i) = inner.segments.binary_search_by_key(&base, |s| s.base) else {
                return Ok(None);
            };
            let seg = &inner.segments[i];
            if !Arc::ptr_eq(&seg.log, file) {
                return Ok(None);
            }
            // (end, the base offset of an indexed batch there to confirm)
            let mut end = (first.pos + first.size as u64, None);
            if seg.next_offset <= hw && seg.size <= want_end {
                end = (seg.size, None);
            } else if let Some((p, o)) = seg.indexed_start_before(want_end, hw) {
                if p > end.0 {
                    end = (p, Some(o));
                }
            }
            // Cut at the end of what was checked (a batch boundary too), if that comes first.
            match seg.verified.end_from(first.pos) {
                Some(checked) if checked < end.0 => (checked, None),
                Some(_) => end,
                None => return Ok(None),
            }
        };
        if end < first.pos + first.size as u64 {
            return Ok(None);
        }
        let len = (end - first.pos) as usize;
        if !(REGION_MIN..=REGION_MAX).contains(&len) {
            return Ok(None);
        }
        // An index entry is trusted as a batch start only when the header there says so (an
        // index file damaged on disk could point anywhere).
        if let Some(o) = indexed {
            let mut hdr = [0u8; HEADER_LEN];
            match file.read_exact_at(&mut hdr, end) {
                Ok(()) if peek(&hdr).is_ok_and(|h| h.0 == o) => {}
                _ => return Ok(None),
            }
        }
        Ok(Some(FileRegion {
            file: Arc::clone(file),
            path: Arc::new(path.to_path_buf()),
            pos: first.pos,
            len,
        }))
    }

    /// Remembers `[start, end)` of the segment at `base` as checked, if it is still the same
    /// file (a follower's truncation reopens it) and still that long.
    fn note_checked(&self, base: i64, file: &Arc<File>, start: u64, end: u64) {
        let mut inner = lock(&self.shared.inner);
        if let Ok(i) = inner.segments.binary_search_by_key(&base, |s| s.base) {
            let seg = &mut inner.segments[i];
            if Arc::ptr_eq(&seg.log, file) && end <= seg.size {
                seg.verified.insert(start, end);
            }
        }
    }

    /// The earliest offset whose timestamp is `>= timestamp_ms`, with that timestamp, or `None`
    /// when every record is older (ListOffsets by timestamp). Only data below the high
    /// watermark is considered.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>, LogError> {
        let hw = self.high_watermark();
        let (from, candidates) = {
            let inner = lock(&self.shared.inner);
            let from = inner.log_start;
            let c: Vec<TimeCandidate> = inner
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
        for (file, path, start, end) in candidates {
            if let Some(hit) =
                find_timestamp(&file, start, end, timestamp_ms, from, hw).map_err(io_err(&path))?
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
        // (max timestamp, scan start, file, path, end, base offset)
        let mut cands: Vec<MaxCandidate> = {
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
                        s.base,
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
            let (ts, start, file, path, end, base) = &cands[b];
            if let Some(hit) =
                find_timestamp(file, *start, *end, *ts, 0, hw).map_err(io_err(path))?
            {
                return Ok(Some(hit));
            }
            match max_timestamp_below(file, *base, *end, hw).map_err(io_err(path))? {
                // A header below the high watermark claims `ts`, the whole segment was read
                // and no record carries it: the header's max timestamp is larger than its
                // records' (a producer's header that lies, CRC and all, or damage on disk).
                // Searching again would find the same nothing forever (it did: a ListOffsets
                // MAX_TIMESTAMP spun a core until the broker stopped), so the header is taken
                // at its word, as for a batch whose records cannot be read.
                Some(m) if m >= *ts && start.0 == 0 => {
                    match first_batch_claiming(file, *base, *end, m, hw).map_err(io_err(path))? {
                        Some(hit) => return Ok(Some(hit)),
                        None => {
                            cands.remove(b);
                        }
                    }
                }
                Some(m) => {
                    cands[b].0 = m;
                    cands[b].1 = (0, cands[b].5);
                }
                None => {
                    cands.remove(b);
                }
            }
        }
    }
}

/// Header fields needed to walk batches: (base offset, size, last offset), from the whole
/// header ([`HEADER_LEN`] bytes). `Err(why)` for a header that does not parse: a magic byte
/// other than 2 (like the base offset it is not covered by the CRC, and a client cannot decode
/// a batch of another magic: the `partition_dir` fuzz target found one served), and a record
/// count below 1 or that disagrees with the last offset delta. Those two are covered by the
/// CRC, so a batch can carry them with a good one; Kafka never writes such a batch, recovery
/// cuts one it scans like any header that does not parse, and a read must refuse it (the
/// fuzz target found a count of 0 served when only the first 27 bytes were looked at).
fn peek(b: &[u8]) -> Result<(i64, usize, i64), String> {
    let h = batch::parse_header(b).map_err(|e| e.to_string())?;
    // A damaged base offset near i64::MAX overflowed here (the partition_dir fuzz target).
    let last = h
        .base_offset
        .checked_add(i64::from(h.last_offset_delta))
        .ok_or_else(|| format!("base offset {} is too large", h.base_offset))?;
    Ok((h.base_offset, h.size, last))
}

/// Where a read starts: the batch that contains the requested offset.
#[derive(Debug, Clone, Copy)]
struct First {
    pos: u64,
    size: usize,
    base: i64,
}

/// Finds the batch of one segment containing `offset`, walking headers from `pos` where the
/// batch with base offset `expect` starts; `None` when it starts at or above `hw`.
/// `Ok(Err((position, why)))`: a batch on the way is damaged (a header that does not parse, or
/// a base offset out of sequence: the base offset is not covered by the CRC, so damage there
/// is caught here), or the segment ends before `offset`; nothing is served, nothing skipped.
fn locate(
    file: &File,
    mut pos: u64,
    mut expect: i64,
    seg_end: u64,
    offset: i64,
    hw: i64,
) -> std::io::Result<Result<Option<First>, (u64, String)>> {
    let mut hdr = [0u8; HEADER_LEN];
    loop {
        if pos + HEADER_LEN as u64 > seg_end {
            return Ok(Err((
                pos,
                format!("the segment ends before offset {offset}"),
            )));
        }
        file.read_exact_at(&mut hdr, pos)?;
        let (base, size, last) = match peek(&hdr) {
            Ok(p) if pos + p.1 as u64 <= seg_end => p,
            Ok((_, size, _)) => {
                return Ok(Err((
                    pos,
                    format!("the batch announces {size} bytes, past the segment's end"),
                )))
            }
            Err(why) => {
                return Ok(Err((
                    pos,
                    format!("the batch header does not parse: {why}"),
                )))
            }
        };
        if base != expect {
            return Ok(Err((
                pos,
                format!("base offset {base} where {expect} was expected"),
            )));
        }
        if base >= hw {
            return Ok(Ok(None));
        }
        if last >= offset {
            return Ok(Ok(Some(First { pos, size, base })));
        }
        expect = last + 1;
        pos += size as u64;
    }
}

/// Reads whole batches from `first` (the first always, then while they fit in `max_bytes`,
/// in sequence, below `hw`); their CRCs are checked by the caller.
fn read_from(
    file: &File,
    first: First,
    seg_end: u64,
    hw: i64,
    max_bytes: usize,
) -> std::io::Result<Bytes> {
    let avail = (seg_end - first.pos) as usize;
    let want = first.size.max(max_bytes).min(avail);
    let mut buf = Vec::new();
    read_exact_at_spare(file, &mut buf, want, first.pos)?;
    // Keep whole batches below the high watermark, in sequence: the first always, then while
    // they fit.
    let mut expect = first.base;
    let mut end = 0;
    while end < buf.len() {
        let Ok((base, size, last)) = peek(&buf[end..]) else {
            break;
        };
        if base != expect
            || base >= hw
            || end + size > buf.len()
            || (end > 0 && end + size > max_bytes)
        {
            break;
        }
        expect = last + 1;
        end += size;
    }
    buf.truncate(end);
    Ok(Bytes::from(buf))
}

/// Reads `len` bytes at `pos` into the spare capacity of `buf` (emptied first). Unlike
/// `read_exact_at` into `vec![0; len]`, the buffer is not zeroed first: the kernel's copy from
/// the page cache is its only write (zeroing a fetch's megabyte was 6.6% of the broker's CPU
/// serving a consumer, docs/benchmarks.md). `pread` sets the length to what it read, so no
/// byte that was not read is ever part of `buf`.
fn read_exact_at_spare(
    file: &File,
    buf: &mut Vec<u8>,
    len: usize,
    mut pos: u64,
) -> std::io::Result<()> {
    buf.clear();
    buf.reserve_exact(len);
    while buf.len() < len {
        // Reads into all of the spare capacity, which may exceed `len`: cut below.
        match rustix::io::pread(file, rustix::buffer::spare_capacity(buf), pos) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => pos += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(len);
    Ok(())
}

/// The leading batches of `records` whose CRC-32C holds. Recovery checks closed segments only
/// by their index and tail, so a batch damaged on disk later is found here: it is never
/// served, and a read that starts at it fails with CORRUPT_MESSAGE, naming the file.
fn keep_intact(records: Bytes, path: &std::path::Path) -> Result<Bytes, LogError> {
    let mut end = 0;
    while let Ok((base, size, _)) = peek(&records[end..]) {
        let Some(whole) = records.get(end..end + size) else {
            break;
        };
        if let Err(e) = batch::check_crc(whole) {
            tracing::warn!(path = %path.display(), offset = base, error = %e, "not serving a stored batch whose CRC fails");
            crate::recovery::count(crate::recovery::Action::CorruptBatchRefused);
            if end == 0 {
                return Err(LogError::CorruptBatch {
                    reason: format!("{}: the batch at offset {base}: {e}", path.display()),
                });
            }
            break;
        }
        end += size;
    }
    Ok(records.slice(..end))
}

/// Walks a segment file's batches that start below `hw`, from `pos` where the batch with base
/// offset `expect` starts, the way recovery framed them (`segment::scan`), calling `visit`
/// with each batch whose stored base offset is in sequence until it answers `Some`. A batch
/// whose stored base offset is out of sequence (it is not covered by the CRC: damage) is
/// passed over when its CRC holds (recovery kept it in place and reads refuse it), and ends
/// the walk when its CRC fails too, as it ends recovery's. A timestamp lookup that took such a
/// batch's offsets at their word answered an offset past the log end (the `partition_dir`
/// fuzz target).
fn walk_below<T>(
    file: &File,
    (mut pos, mut expect): (u64, i64),
    end: u64,
    hw: i64,
    mut visit: impl FnMut(u64, &BatchHeader) -> std::io::Result<Option<T>>,
) -> std::io::Result<Option<T>> {
    let mut hdr = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= end && expect < hw {
        file.read_exact_at(&mut hdr, pos)?;
        let Ok(h) = batch::parse_header(&hdr) else {
            return Ok(None);
        };
        if pos + h.size as u64 > end {
            return Ok(None);
        }
        if h.base_offset == expect {
            if let Some(hit) = visit(pos, &h)? {
                return Ok(Some(hit));
            }
        } else if !crc_holds(file, pos, &h)? {
            return Ok(None);
        }
        expect = BatchHeader {
            base_offset: expect,
            ..h
        }
        .next_offset();
        pos += h.size as u64;
    }
    Ok(None)
}

/// The whole batch at `pos` (of `h.size` bytes), read back, when its CRC-32C holds.
fn intact_batch(file: &File, pos: u64, h: &BatchHeader) -> std::io::Result<Option<Vec<u8>>> {
    let mut whole = vec![0u8; h.size];
    file.read_exact_at(&mut whole, pos)?;
    Ok(batch::check_crc(&whole).is_ok().then_some(whole))
}

fn crc_holds(file: &File, pos: u64, h: &BatchHeader) -> std::io::Result<bool> {
    Ok(intact_batch(file, pos, h)?.is_some())
}

/// Finds the first record with timestamp `>= ts` at or after offset `from`, walking from
/// `start` (a position and the base offset of the batch there). Batches whose CRC fails are
/// passed over, as reads refuse them.
fn find_timestamp(
    file: &File,
    start: (u64, i64),
    end: u64,
    ts: i64,
    from: i64,
    hw: i64,
) -> std::io::Result<Option<(i64, i64)>> {
    walk_below(file, start, end, hw, |pos, h| {
        if h.max_timestamp < ts || h.next_offset() <= from {
            return Ok(None);
        }
        Ok(intact_batch(file, pos, h)?
            .and_then(|whole| first_record_at_or_after(&whole, h, ts, from)))
    })
}

/// The largest batch max timestamp among the intact batches of a segment file (first batch
/// at offset `base`) that start below `hw`, or `None` when there is none with a timestamp.
fn max_timestamp_below(file: &File, base: i64, end: u64, hw: i64) -> std::io::Result<Option<i64>> {
    let mut max: Option<i64> = None;
    walk_below::<()>(file, (0, base), end, hw, |pos, h| {
        // Only a batch that would raise the maximum is read whole for its CRC.
        if h.max_timestamp >= 0
            && max.is_none_or(|m| h.max_timestamp > m)
            && crc_holds(file, pos, h)?
        {
            max = Some(h.max_timestamp);
        }
        Ok(None)
    })?;
    Ok(max)
}

/// The first batch starting below `hw` whose header claims a max timestamp of at least `ts`,
/// as `(base offset, that max timestamp)`, walking from the segment's first batch (`base`)
/// over the batches in sequence, as a read does.
fn first_batch_claiming(
    file: &File,
    base: i64,
    end: u64,
    ts: i64,
    hw: i64,
) -> std::io::Result<Option<(i64, i64)>> {
    walk_below(file, (0, base), end, hw, |pos, h| {
        Ok((h.max_timestamp >= ts && crc_holds(file, pos, h)?)
            .then_some((h.base_offset, h.max_timestamp)))
    })
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_spare_capacity_read_holds_exactly_the_bytes_read() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        // A buffer that held other bytes before: only what is read is visible after.
        let mut buf = vec![7u8; 50];
        read_exact_at_spare(&f, &mut buf, 4096, 1000).unwrap();
        assert_eq!(buf, data[1000..5096]);
        read_exact_at_spare(&f, &mut buf, 10, 99_990).unwrap();
        assert_eq!(buf, data[99_990..]);
        let e = read_exact_at_spare(&f, &mut buf, 11, 99_990).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        read_exact_at_spare(&f, &mut buf, 0, 0).unwrap();
        assert!(buf.is_empty());
    }
}
