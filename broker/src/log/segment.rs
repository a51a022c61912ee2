//! One segment: `<base>.log` (batches as stored), `<base>.index` (sparse offset index) and
//! `<base>.timeindex` (sparse time index), plus the batch scanner used by recovery.
//!
//! Index formats (big-endian, fixed width, append-only):
//! - `.index`: 8-byte entries `(relative offset u32, file position u32)`; an entry says "the
//!   batch whose base offset is `base + rel` starts at `position`".
//! - `.timeindex`: 12-byte entries `(timestamp i64, relative offset u32)`; an entry says "every
//!   batch before offset `base + rel` has a max timestamp `<= timestamp`". Timestamps strictly
//!   increase. When a segment is closed a last entry with the segment's largest timestamp and
//!   `rel = next offset - base` is added, so a reopened closed segment knows its largest
//!   timestamp without a scan.
//!
//! Index files are never fsynced on the append path: they can always be rebuilt from the log,
//! and recovery validates them before use.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_LEN};
use super::files::io_err;
use super::region::Verified;
use super::LogError;

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;
/// Read size of the recovery scanner.
const SCAN_CHUNK: usize = 1 << 20;

pub fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

fn open_rw(path: &Path, truncate: bool) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .map_err(io_err(path))
}

#[derive(Debug)]
pub struct Segment {
    pub base: i64,
    pub log_path: PathBuf,
    pub log: Arc<File>,
    pub index: Arc<File>,
    pub timeindex: Arc<File>,
    /// Bytes of valid batches in the log file (appends go here).
    pub size: u64,
    /// Offset after the last record of the segment.
    pub next_offset: i64,
    /// Largest batch max timestamp, -1 when the segment is empty.
    pub max_timestamp: i64,
    /// Wall-clock time the segment got its first batch (roll by `segment.ms`).
    pub first_append_ms: Option<i64>,
    /// In-memory indexes of the active segment.
    offsets: Vec<(u32, u32)>,
    times: Vec<(i64, u32)>,
    /// Closed segments keep their indexes only in the files (entries: offset, time) and
    /// binary-search them with `pread`, so memory does not grow with retained data.
    on_disk: Option<(usize, usize)>,
    bytes_since_index: u64,
    /// Byte ranges checked in this process, which may be served as file regions
    /// (`region.rs`): appended here, or read and checked since the segment was opened.
    pub verified: Verified,
}

impl Segment {
    fn paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base, "log")),
            dir.join(file_name(base, "index")),
            dir.join(file_name(base, "timeindex")),
        )
    }

    /// Creates an empty segment (truncating leftovers with the same name).
    /// On failure no file of the segment is left behind.
    pub fn create(dir: &Path, base: i64) -> Result<Segment, LogError> {
        let (lp, ip, tp) = Self::paths(dir, base);
        let open_all = || -> Result<(File, File, File), LogError> {
            Ok((
                open_rw(&lp, true)?,
                open_rw(&ip, true)?,
                open_rw(&tp, true)?,
            ))
        };
        let (log, index, timeindex) = open_all().inspect_err(|_| {
            for p in [&lp, &ip, &tp] {
                let _ = std::fs::remove_file(p);
            }
        })?;
        Ok(Segment::unread(base, [log, index, timeindex], lp))
    }

    /// A segment over these files (log, index, time index) before anything is read from them:
    /// empty in memory, which is all a new segment holds and where recovery starts.
    fn unread(base: i64, [log, index, timeindex]: [File; 3], log_path: PathBuf) -> Segment {
        Segment {
            base,
            log: Arc::new(log),
            index: Arc::new(index),
            timeindex: Arc::new(timeindex),
            log_path,
            size: 0,
            next_offset: base,
            max_timestamp: -1,
            first_append_ms: None,
            offsets: Vec::new(),
            times: Vec::new(),
            on_disk: None,
            bytes_since_index: 0,
            verified: Verified::default(),
        }
    }

    /// Opens an existing segment's files without validating anything (see [`recover`]).
    fn open_files(dir: &Path, base: i64) -> Result<(Segment, u64), LogError> {
        let (lp, ip, tp) = Self::paths(dir, base);
        let log = open_rw(&lp, false)?;
        let len = log.metadata().map_err(io_err(&lp))?.len();
        let files = [log, open_rw(&ip, false)?, open_rw(&tp, false)?];
        Ok((Segment::unread(base, files, lp), len))
    }

    fn index_path(&self) -> PathBuf {
        self.log_path.with_extension("index")
    }

    fn timeindex_path(&self) -> PathBuf {
        self.log_path.with_extension("timeindex")
    }

    /// Updates the in-memory indexes for a batch stored at `pos`; returns how many entries
    /// each index gained (0 or 1).
    fn note_batch(&mut self, pos: u64, h: &BatchHeader, interval: u32) -> (usize, usize) {
        let mut added = (0, 0);
        if pos > 0 && self.bytes_since_index >= u64::from(interval) {
            let rel = (h.base_offset - self.base) as u32;
            self.offsets.push((rel, pos as u32));
            added.0 = 1;
            if self.max_timestamp > self.times.last().map_or(i64::MIN, |t| t.0) {
                self.times.push((self.max_timestamp, rel));
                added.1 = 1;
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size as u64;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        self.next_offset = h.next_offset();
        added
    }

    /// Appends already-validated batches: `parts`, written back to back, are the batches
    /// (`headers` carry the assigned offsets and each batch's position in the concatenation).
    /// In parts so that a produce request's bytes are written from the request buffer with
    /// only each batch's patched header prefix beside them (`partition/append.rs`).
    pub fn append(
        &mut self,
        parts: &[&[u8]],
        headers: &[(usize, BatchHeader)],
        interval: u32,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let start = self.size;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if let Err(e) = write_all_vectored_at(&self.log, parts, start) {
            // Leave no partial batch behind for the next append to build on.
            let _ = self.log.set_len(start);
            return Err(LogError::Io {
                path: self.log_path.clone(),
                source: e,
            });
        }
        self.size += len as u64;
        self.first_append_ms.get_or_insert(now_ms);
        for (pos, h) in headers {
            let (o, t) = self.note_batch(start + *pos as u64, h, interval);
            // Index writes are best effort: a lost entry only makes a lookup scan further, and
            // recovery rebuilds the files.
            if o == 1 {
                let n = self.offsets.len() - 1;
                let _ = self
                    .index
                    .write_all_at(&encode_offset(self.offsets[n]), (n * OFFSET_ENTRY) as u64);
            }
            if t == 1 {
                let n = self.times.len() - 1;
                let _ = self
                    .timeindex
                    .write_all_at(&encode_time(self.times[n]), (n * TIME_ENTRY) as u64);
            }
        }
        // Callers validated every batch (CRC included) before this write.
        self.verified.insert(start, self.size);
        Ok(())
    }

    /// Starts writing the log file's dirty pages from `from` to its end to disk, without
    /// waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Under `fsync: always` an
    /// append calls it, so the disk writes begin while the previous group-commit `fdatasync`
    /// is still running and the next one finds most of its data already written
    /// (docs/benchmarks.md: +9-17% produce throughput). A hint: durability still comes from
    /// the `fdatasync` alone.
    pub fn start_writeback(&self, from: u64) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let from = i64::try_from(from).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: `sync_file_range` takes integers only (no memory is passed), and the file
        // descriptor is this segment's log file, which `&self` keeps open during the call.
        #[allow(unsafe_code)]
        let r = unsafe {
            libc::sync_file_range(self.log.as_raw_fd(), from, 0, libc::SYNC_FILE_RANGE_WRITE)
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Adds the closing time-index entry in memory; true if one was added.
    fn seal_in_memory(&mut self) -> bool {
        let rel = (self.next_offset - self.base) as u32;
        let last = self.times.last().copied();
        if self.times.is_empty() || last.is_some_and(|(ts, _)| self.max_timestamp > ts) {
            self.times.push((self.max_timestamp, rel));
            true
        } else {
            false
        }
    }

    /// Closes the segment: adds the closing time-index entry (the segment's largest
    /// timestamp), makes sure the index files hold every entry, and drops the in-memory copy.
    pub fn seal(&mut self) -> Result<(), LogError> {
        if self.seal_in_memory() {
            let n = self.times.len() - 1;
            let p = self.timeindex_path();
            self.timeindex
                .write_all_at(&encode_time(self.times[n]), (n * TIME_ENTRY) as u64)
                .map_err(io_err(&p))?;
        }
        self.spill();
        Ok(())
    }

    /// Moves the indexes to their files only (closed segments). If the files cannot be made
    /// to match, the in-memory copy stays.
    fn spill(&mut self) {
        if self.on_disk.is_none() && self.write_indexes_if_changed().is_ok() {
            self.on_disk = Some((self.offsets.len(), self.times.len()));
            self.offsets = Vec::new();
            self.times = Vec::new();
        }
    }

    fn n_offsets(&self) -> usize {
        self.on_disk.map_or(self.offsets.len(), |d| d.0)
    }

    fn n_times(&self) -> usize {
        self.on_disk.map_or(self.times.len(), |d| d.1)
    }

    /// Offset-index entry `i` (a failed read is `None`: callers then scan from further back,
    /// which is slower but still correct).
    fn offset_at(&self, i: usize) -> Option<(u32, u32)> {
        if self.on_disk.is_none() {
            return self.offsets.get(i).copied();
        }
        let mut b = [0u8; OFFSET_ENTRY];
        self.index
            .read_exact_at(&mut b, (i * OFFSET_ENTRY) as u64)
            .ok()?;
        Some((
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ))
    }

    fn time_at(&self, i: usize) -> Option<(i64, u32)> {
        if self.on_disk.is_none() {
            return self.times.get(i).copied();
        }
        let mut b = [0u8; TIME_ENTRY];
        self.timeindex
            .read_exact_at(&mut b, (i * TIME_ENTRY) as u64)
            .ok()?;
        Some(decode_time(&b))
    }

    /// Position to start scanning from for `offset`: the last indexed batch at or below it.
    pub fn lookup(&self, offset: i64) -> u64 {
        self.lookup_entry(offset).0
    }

    /// [`Segment::lookup`] with the base offset of the batch at that position.
    pub fn lookup_entry(&self, offset: i64) -> (u64, i64) {
        let rel = (offset - self.base).clamp(0, i64::from(u32::MAX)) as u32;
        let i = partition_point(self.n_offsets(), |i| {
            self.offset_at(i).is_some_and(|e| e.0 <= rel)
        });
        let entry = if i == 0 { None } else { self.offset_at(i - 1) };
        entry.map_or((0, self.base), |e| {
            (u64::from(e.1), self.base + i64::from(e.0))
        })
    }

    /// The last indexed batch start at or before position `limit` whose base offset is at most
    /// `hw`, as `(position, base offset)`: everything before it is whole batches below `hw`
    /// (the index is in position and offset order, so one binary search finds it).
    pub fn indexed_start_before(&self, limit: u64, hw: i64) -> Option<(u64, i64)> {
        let fits = |e: (u32, u32)| u64::from(e.1) <= limit && self.base + i64::from(e.0) <= hw;
        let i = partition_point(self.n_offsets(), |i| self.offset_at(i).is_some_and(fits));
        let e = self.offset_at(i.checked_sub(1)?)?;
        Some((u64::from(e.1), self.base + i64::from(e.0)))
    }

    /// Position to start scanning from for the first batch with max timestamp `>= ts`, with
    /// the base offset of the batch there (so a walk from it can tell a batch whose stored
    /// base offset is out of sequence, as reads do).
    pub fn time_lookup(&self, ts: i64) -> (u64, i64) {
        let i = partition_point(self.n_times(), |i| {
            self.time_at(i).is_some_and(|e| e.0 < ts)
        });
        if i == 0 {
            (0, self.base)
        } else {
            self.time_at(i - 1).map_or((0, self.base), |e| {
                self.lookup_entry(self.base + i64::from(e.1))
            })
        }
    }

    /// Bytes of the two index files.
    pub fn index_bytes(&self) -> u64 {
        (self.n_offsets() * OFFSET_ENTRY + self.n_times() * TIME_ENTRY) as u64
    }

    /// Fsyncs the log file (data only) and then the index files.
    pub fn files(&self) -> [Arc<File>; 3] {
        [
            Arc::clone(&self.log),
            Arc::clone(&self.index),
            Arc::clone(&self.timeindex),
        ]
    }

    /// Removes the segment's files.
    pub fn remove_files(&self) -> Result<(), LogError> {
        for p in [
            self.log_path.clone(),
            self.index_path(),
            self.timeindex_path(),
        ] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::Io { path: p, source: e }),
            }
        }
        Ok(())
    }

    /// Rewrites both index files from the in-memory indexes if they differ; returns whether
    /// it rewrote one.
    fn write_indexes_if_changed(&self) -> Result<bool, LogError> {
        let off: Vec<u8> = self
            .offsets
            .iter()
            .flat_map(|e| encode_offset(*e))
            .collect();
        let tim: Vec<u8> = self.times.iter().flat_map(|e| encode_time(*e)).collect();
        let mut rewrote = false;
        for (file, bytes, path) in [
            (&self.index, off, self.index_path()),
            (&self.timeindex, tim, self.timeindex_path()),
        ] {
            let mut cur = Vec::new();
            read_whole(file, &mut cur).map_err(io_err(&path))?;
            if cur != bytes {
                file.set_len(0).map_err(io_err(&path))?;
                file.write_all_at(&bytes, 0).map_err(io_err(&path))?;
                tracing::info!(path = %path.display(), bytes = bytes.len(), "index rewritten");
                rewrote = true;
            }
        }
        Ok(rewrote)
    }
}

/// Binary search over `0..n`: the first index for which `pred` is false (`pred` must be true
/// on a prefix).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn decode_time(c: &[u8]) -> (i64, u32) {
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&c[..8]);
    (
        i64::from_be_bytes(ts),
        u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
    )
}

fn encode_offset((rel, pos): (u32, u32)) -> [u8; OFFSET_ENTRY] {
    let mut b = [0u8; OFFSET_ENTRY];
    b[..4].copy_from_slice(&rel.to_be_bytes());
    b[4..].copy_from_slice(&pos.to_be_bytes());
    b
}

fn encode_time((ts, rel): (i64, u32)) -> [u8; TIME_ENTRY] {
    let mut b = [0u8; TIME_ENTRY];
    b[..8].copy_from_slice(&ts.to_be_bytes());
    b[8..].copy_from_slice(&rel.to_be_bytes());
    b
}

fn read_whole(f: &File, out: &mut Vec<u8>) -> std::io::Result<()> {
    let len = f.metadata()?.len() as usize;
    out.resize(len, 0);
    f.read_exact_at(out, 0)
}

/// Loads an offset index, `None` if it is damaged (size, order, or a position past the log).
fn load_offsets(f: &File, log_len: u64) -> Option<Vec<(u32, u32)>> {
    let mut raw = Vec::new();
    read_whole(f, &mut raw).ok()?;
    if raw.len() % OFFSET_ENTRY != 0 {
        return None;
    }
    let v: Vec<(u32, u32)> = raw
        .chunks_exact(OFFSET_ENTRY)
        .map(|c| {
            (
                u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    let ordered = v.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
    let in_file = v.iter().all(|e| u64::from(e.1) < log_len && e.1 > 0);
    (ordered && in_file).then_some(v)
}

/// Loads a time index, `None` if damaged or empty.
fn load_times(f: &File) -> Option<Vec<(i64, u32)>> {
    let mut raw = Vec::new();
    read_whole(f, &mut raw).ok()?;
    if raw.is_empty() || raw.len() % TIME_ENTRY != 0 {
        return None;
    }
    let v: Vec<(i64, u32)> = raw.chunks_exact(TIME_ENTRY).map(decode_time).collect();
    v.windows(2)
        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        .then_some(v)
}

/// Why a scan stopped before the end of the file.
#[derive(Debug)]
pub struct ScanStop {
    pub position: u64,
    pub reason: String,
}

/// Walks the batches of `file` from `start` (where a batch with base offset `expect` must
/// begin) to `end`, checking each batch's header, offset continuity and CRC. Calls `f` for
/// each batch whose framing holds, with its CRC's verdict (`Err(reason)` when it fails): a
/// batch whose header and length hold but whose CRC fails does not stop the walk, so the
/// caller can tell a damaged batch with intact batches after it (kept, never served) from a
/// torn tail. Returns the position after the last framed batch and, if the framing broke
/// before `end`, where and why.
pub fn scan(
    file: &File,
    start: u64,
    end: u64,
    mut expect: i64,
    mut f: impl FnMut(u64, &BatchHeader, Result<(), String>),
) -> std::io::Result<(u64, Option<ScanStop>)> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = start;
    let mut pos = start;
    let stop = |pos: u64, reason: String| {
        Ok((
            pos,
            Some(ScanStop {
                position: pos,
                reason,
            }),
        ))
    };
    while pos < end {
        let remaining = end - pos;
        if remaining < HEADER_LEN as u64 {
            return stop(
                pos,
                format!("{remaining} trailing bytes (torn batch header)"),
            );
        }
        // Make sure the header is buffered.
        if pos + HEADER_LEN as u64 > buf_at + buf.len() as u64 {
            let n = (SCAN_CHUNK as u64).min(remaining) as usize;
            buf.resize(n, 0);
            file.read_exact_at(&mut buf, pos)?;
            buf_at = pos;
        }
        let off = (pos - buf_at) as usize;
        let h = match batch::parse_header(&buf[off..]) {
            Ok(h) => h,
            Err(e) => return stop(pos, e.to_string()),
        };
        if h.size as u64 > remaining {
            return stop(
                pos,
                format!(
                    "batch announces {} bytes but only {remaining} remain (torn write)",
                    h.size
                ),
            );
        }
        let crc_ok = if off + h.size <= buf.len() {
            batch::check_crc(&buf[off..off + h.size])
        } else if h.size <= SCAN_CHUNK {
            let n = (SCAN_CHUNK as u64).min(remaining) as usize;
            buf.resize(n, 0);
            file.read_exact_at(&mut buf, pos)?;
            buf_at = pos;
            batch::check_crc(&buf[..h.size])
        } else {
            let mut big = vec![0u8; h.size];
            file.read_exact_at(&mut big, pos)?;
            batch::check_crc(&big)
        };
        // The base offset is not covered by the CRC. A batch whose CRC holds but whose base
        // offset is out of sequence is damaged like one whose CRC fails (the caller keeps it
        // if intact batches follow, and reads refuse it); the walk goes on from where it
        // should have started. One whose CRC fails too is not a batch: the framing ends.
        let verdict = match (crc_ok, h.base_offset == expect) {
            (Ok(()), true) => Ok(()),
            (Ok(()), false) => Err(format!(
                "base offset {} where {expect} was expected",
                h.base_offset
            )),
            (Err(e), true) => Err(e.to_string()),
            (Err(_), false) => {
                return stop(
                    pos,
                    format!("base offset {} where {expect} was expected", h.base_offset),
                )
            }
        };
        let h = BatchHeader {
            base_offset: expect,
            ..h
        };
        f(pos, &h, verdict);
        expect = h.next_offset();
        pos += h.size as u64;
    }
    Ok((pos, None))
}

/// Walks batch headers only (no CRC), for rebuilding producer state from closed segments.
pub fn scan_headers(
    file: &File,
    end: u64,
    mut f: impl FnMut(u64, &BatchHeader),
) -> std::io::Result<()> {
    let mut pos = 0;
    let mut hdr = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= end {
        file.read_exact_at(&mut hdr, pos)?;
        let Ok(h) = batch::parse_header(&hdr) else {
            break;
        };
        f(pos, &h);
        pos += h.size as u64;
    }
    Ok(())
}

/// How one segment came out of recovery.
#[derive(Debug)]
pub struct Recovered {
    pub segment: Segment,
    /// Where the segment was cut, if it was.
    pub truncated: Option<ScanStop>,
    /// Whether an index file was rewritten because it did not match the log (damaged, missing
    /// entries, or entries past a cut).
    pub indexes_rebuilt: bool,
}

fn truncate_log(seg: &mut Segment, len: u64, stop: &ScanStop) -> Result<(), LogError> {
    crate::recovery::count(crate::recovery::Action::SegmentTruncated);
    tracing::warn!(
        path = %seg.log_path.display(),
        offset = seg.next_offset,
        position = stop.position,
        bytes = len - stop.position,
        reason = %stop.reason,
        "truncating log segment at the first bad batch"
    );
    seg.log
        .set_len(stop.position)
        .map_err(io_err(&seg.log_path))?;
    seg.log.sync_data().map_err(io_err(&seg.log_path))?;
    Ok(())
}

/// What the scan of a segment's tail, from its last offset-index entry to the end of the file,
/// found when the indexes agree with the log.
struct IndexedTail {
    /// Position after the last batch (the file's length).
    end: u64,
    next_offset: i64,
    /// Largest max timestamp of the tail's batches (-1 when there are none).
    max_timestamp: i64,
    /// Bytes from the last index entry to the end (where the next entry is due).
    since_entry: u64,
    /// The last batch's header.
    last: Option<BatchHeader>,
}

/// Checks a segment's offset index against its log: from the last entry, whole batches with
/// good CRCs, in offset sequence, must run to the end of the file, and no entry may be due
/// that the index lacks (a file deleted and recreated empty). `None`: they disagree.
fn check_tail(
    seg: &Segment,
    len: u64,
    offsets: &[(u32, u32)],
    interval: u32,
) -> Result<Option<IndexedTail>, LogError> {
    let (start, expect) = offsets.last().map_or((0, seg.base), |&(rel, pos)| {
        (u64::from(pos), seg.base + i64::from(rel))
    });
    let mut tail = IndexedTail {
        end: start,
        next_offset: expect,
        max_timestamp: -1,
        since_entry: 0,
        last: None,
    };
    let mut missing_entry = false;
    let mut damaged = false;
    let (end, stopped) = scan(&seg.log, start, len, expect, |pos, h, crc| {
        tail.max_timestamp = tail.max_timestamp.max(h.max_timestamp);
        tail.next_offset = h.next_offset();
        tail.last = Some(*h);
        damaged |= crc.is_err();
        missing_entry |= pos > 0 && tail.since_entry >= u64::from(interval);
        tail.since_entry += h.size as u64;
    })
    .map_err(io_err(&seg.log_path))?;
    tail.end = end;
    let agrees =
        stopped.is_none() && !damaged && !missing_entry && (tail.last.is_some() || start == 0);
    Ok(agrees.then_some(tail))
}

/// Opens the active segment by its indexes, like a closed one, instead of scanning it whole:
/// for a log that a clean shutdown left (its appends fsynced, index files included). Only
/// the tail after the last index entry is CRC-checked here; a batch damaged on disk before
/// it is refused by reads (`partition/read.rs`), as in a closed segment. The indexes stay
/// in memory, where appends extend them. Returns the last batch's header with it, or `None`
/// when the indexes do not agree with the log (the caller then scans it whole).
pub fn recover_active_by_index(
    dir: &Path,
    base: i64,
    interval: u32,
) -> Result<Option<(Recovered, Option<BatchHeader>)>, LogError> {
    let (mut seg, len) = Segment::open_files(dir, base)?;
    let Some((offsets, times)) = load_offsets(&seg.index, len).zip(load_times(&seg.timeindex))
    else {
        return Ok(None);
    };
    let Some(tail) = check_tail(&seg, len, &offsets, interval)? else {
        return Ok(None);
    };
    // The roll by `segment.ms` counts from the first batch, as a full scan finds it.
    let mut hdr = [0u8; HEADER_LEN];
    if len < HEADER_LEN as u64 {
        return Ok(None);
    }
    seg.log
        .read_exact_at(&mut hdr, 0)
        .map_err(io_err(&seg.log_path))?;
    let Ok(first) = batch::parse_header(&hdr) else {
        return Ok(None);
    };
    seg.first_append_ms = Some(first.max_timestamp);
    seg.max_timestamp = times.last().map_or(-1, |t| t.0).max(tail.max_timestamp);
    seg.offsets = offsets;
    seg.times = times;
    seg.bytes_since_index = tail.since_entry;
    seg.size = tail.end;
    seg.next_offset = tail.next_offset;
    Ok(Some((
        Recovered {
            segment: seg,
            truncated: None,
            indexes_rebuilt: false,
        },
        tail.last,
    )))
}

/// Recovers one segment. `full` scans every batch (the active segment); otherwise the indexes
/// are trusted if they validate and only the tail after the last index entry is scanned.
/// `on_batch` sees every batch scanned (producer state for the active segment).
pub fn recover(
    dir: &Path,
    base: i64,
    full: bool,
    interval: u32,
    mut on_batch: impl FnMut(u64, &BatchHeader),
) -> Result<Recovered, LogError> {
    let (mut seg, len) = Segment::open_files(dir, base)?;
    let indexes = if full {
        None
    } else {
        load_offsets(&seg.index, len).zip(load_times(&seg.timeindex))
    };

    if let Some((offsets, times)) = indexes {
        if let Some(tail) = check_tail(&seg, len, &offsets, interval)? {
            seg.max_timestamp = times.last().map_or(-1, |t| t.0).max(tail.max_timestamp);
            // The files were just validated: use them, keep nothing in memory.
            seg.on_disk = Some((offsets.len(), times.len()));
            seg.size = tail.end;
            seg.next_offset = tail.next_offset;
            seg.first_append_ms = Some(seg.max_timestamp);
            return Ok(Recovered {
                segment: seg,
                truncated: None,
                indexes_rebuilt: false,
            });
        }
        tracing::warn!(path = %seg.log_path.display(), "index does not match the log; rebuilding");
    }

    // Full scan from the start: CRC of every batch, indexes rebuilt as we go.
    let mut headers: Vec<(u64, BatchHeader, Result<(), String>)> = Vec::new();
    let (mut end, mut stopped) = scan(&seg.log, 0, len, base, |pos, h, crc| {
        headers.push((pos, *h, crc))
    })
    .map_err(io_err(&seg.log_path))?;
    // Damaged batches at the end are a torn write (the last bytes written never reached the
    // disk whole): cut them with the rest of the tail. One followed by intact batches was
    // damaged after it was written: cutting there would drop the intact ones, which may have
    // been acknowledged, so it stays in place; reads refuse it (`partition/read.rs`).
    while let Some((pos, _, Err(reason))) = headers.last() {
        stopped = Some(ScanStop {
            position: *pos,
            reason: reason.clone(),
        });
        end = *pos;
        headers.pop();
    }
    for (pos, h, crc) in &headers {
        seg.note_batch(*pos, h, interval);
        match crc {
            Ok(()) => on_batch(*pos, h),
            Err(reason) => {
                crate::recovery::count(crate::recovery::Action::CorruptBatchKept);
                tracing::warn!(
                    path = %seg.log_path.display(),
                    offset = h.base_offset,
                    position = pos,
                    %reason,
                    "a batch is damaged but intact batches follow it: kept in place, never served"
                );
            }
        }
    }
    seg.size = end;
    seg.first_append_ms = headers.first().map(|(_, h, _)| h.max_timestamp);
    if let Some(stop) = &stopped {
        truncate_log(&mut seg, len, stop)?;
    }
    if !full {
        // A closed segment keeps its closing time-index entry.
        seg.seal_in_memory();
    }
    let indexes_rebuilt = seg.write_indexes_if_changed()?;
    if !full {
        seg.spill();
    }
    Ok(Recovered {
        segment: seg,
        truncated: stopped,
        indexes_rebuilt,
    })
}

/// Writes `parts` back to back at `at`: one `pwritev` per [`MAX_IOV`] parts, continued after
/// a short write (`pwritev` may write less than asked, as `pwrite` may).
fn write_all_vectored_at(file: &File, parts: &[&[u8]], mut at: u64) -> std::io::Result<()> {
    if let [one] = parts {
        return file.write_all_at(one, at);
    }
    let mut slices: Vec<std::io::IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| std::io::IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = rest.len().min(MAX_IOV);
        let written = rustix::io::pwritev(file, &rest[..n], at)?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        at += written as u64;
        std::io::IoSlice::advance_slices(&mut rest, written);
    }
    Ok(())
}

/// Slices per `pwritev` (Linux's `IOV_MAX`).
const MAX_IOV: usize = 1024;
