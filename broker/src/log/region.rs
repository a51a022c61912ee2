//! Zero-copy reads: a fetch's record bytes named as a range of a segment file, for the
//! connection writer to send with `sendfile` from the page cache, instead of read into a
//! buffer, CRC-checked and copied again into the socket.
//!
//! A read checks the CRC-32C of every batch it serves (`partition/read.rs`), because recovery
//! checks closed segments only by their index and tail and damage found later must never be
//! served. A file region is not read by the broker, so it is only served where that check has
//! already held *in this process*: bytes this process appended (validated on arrival, CRC
//! included, by produce and by replication) or read and checked before. [`Verified`] keeps
//! those ranges per segment. Damage that happens to a file while the broker runs is outside
//! what the broker can see either way (as for Kafka, which checks nothing on fetch); clients
//! can check CRCs on their side (the Java client does by default, librdkafka with
//! `check.crcs=true`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

/// Regions shorter than this are read and copied: the `sendfile` and the extra parts of the
/// response cost more than copying a few kilobytes.
pub const REGION_MIN: usize = 16 * 1024;
/// The largest region one partition of a fetch is served as (the response encoder needs a
/// stand-in of the same length, see `protocol::frame::placeholder`).
pub const REGION_MAX: usize = 64 << 20;
/// Verified ranges kept per segment: consumers that start at many different places after a
/// restart leave separate ranges until their reads meet; past this many, new ones are not
/// remembered (those reads keep going through the checked path, which stays correct).
const MAX_RANGES: usize = 32;

/// `len` bytes of an open segment file from `pos`: whole batches below the high watermark,
/// each checked in this process.
#[derive(Debug, Clone)]
pub struct FileRegion {
    pub file: Arc<File>,
    pub path: Arc<PathBuf>,
    pub pos: u64,
    pub len: usize,
}

impl PartialEq for FileRegion {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file) && self.pos == other.pos && self.len == other.len
    }
}

impl Eq for FileRegion {}

impl FileRegion {
    /// The region's bytes, read into memory (a TLS connection, which cannot `sendfile`).
    /// A file shorter than the region (cut since: a follower's truncation) is an error, never
    /// fewer bytes than the response announced.
    pub fn read_all(&self) -> std::io::Result<Bytes> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.pos)?;
        Ok(Bytes::from(buf))
    }
}

/// A read's record bytes: in memory, or a file region to be sent from the page cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Records {
    Bytes(Bytes),
    File(FileRegion),
}

impl Records {
    pub fn len(&self) -> usize {
        match self {
            Records::Bytes(b) => b.len(),
            Records::File(r) => r.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The offset after the last whole batch (`None` for none), from the batches' headers: a
    /// region's are read from the file (27 bytes each). What a `read_committed` fetch names
    /// the aborted transactions up to.
    pub fn next_offset(&self) -> std::io::Result<Option<i64>> {
        const HEAD: usize = 27;
        let parse = |h: &[u8]| -> Option<(i64, usize, i64)> {
            let base = i64::from_be_bytes(h.get(0..8)?.try_into().ok()?);
            let len = i32::from_be_bytes(h.get(8..12)?.try_into().ok()?);
            let delta = i32::from_be_bytes(h.get(23..27)?.try_into().ok()?);
            let size = usize::try_from(len).ok()?.checked_add(12)?;
            Some((
                base,
                size,
                base.checked_add(i64::from(delta))?.checked_add(1)?,
            ))
        };
        let mut next = None;
        let mut pos = 0usize;
        while pos + HEAD <= self.len() {
            let step = match self {
                Records::Bytes(b) => parse(&b[pos..pos + HEAD]),
                Records::File(r) => {
                    let mut h = [0u8; HEAD];
                    r.file.read_exact_at(&mut h, r.pos + pos as u64)?;
                    parse(&h)
                }
            };
            let Some((_, size, after)) = step else {
                break;
            };
            if size == 0 || pos + size > self.len() {
                break;
            }
            next = Some(after);
            pos += size;
        }
        Ok(next)
    }

    /// The bytes in memory (a region is read).
    pub fn into_bytes(self) -> std::io::Result<Bytes> {
        match self {
            Records::Bytes(b) => Ok(b),
            Records::File(r) => r.read_all(),
        }
    }
}

/// Byte ranges of one segment file whose batches were checked in this process (CRC, header,
/// offsets in sequence), as sorted, disjoint, non-touching `[start, end)` pairs. Each range
/// starts and ends on a batch boundary.
#[derive(Debug, Default)]
pub struct Verified {
    ranges: Vec<(u64, u64)>,
}

impl Verified {
    /// Records `[start, end)` as checked, merging it with the ranges it touches.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // The first range that ends at or after `start` (it may touch or overlap).
        let i = self.ranges.partition_point(|r| r.1 < start);
        // Ranges from `i` that start at or before `end` all merge into one.
        let j = i + self.ranges[i..].partition_point(|r| r.0 <= end);
        if i == j {
            if self.ranges.len() < MAX_RANGES {
                self.ranges.insert(i, (start, end));
            }
            return;
        }
        let merged = (start.min(self.ranges[i].0), end.max(self.ranges[j - 1].1));
        self.ranges.drain(i + 1..j);
        self.ranges[i] = merged;
    }

    /// Whether all of `[start, end)` was checked.
    #[cfg(test)]
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 < end);
        self.ranges.get(i).is_some_and(|r| r.0 <= start)
    }

    /// The end of the checked range that holds `pos` (or ends there): a batch boundary.
    pub fn end_from(&self, pos: u64) -> Option<u64> {
        let i = self.ranges.partition_point(|r| r.1 < pos);
        self.ranges.get(i).filter(|r| r.0 <= pos).map(|r| r.1)
    }

    /// The checked ranges, as `[start, end)` pairs.
    #[cfg(test)]
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.ranges.clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn ranges_merge_when_they_touch_or_overlap_and_stay_apart_otherwise() {
        let mut v = Verified::default();
        v.insert(100, 200);
        v.insert(300, 400);
        assert_eq!(v.ranges(), [(100, 200), (300, 400)]);
        assert!(v.covers(100, 200) && v.covers(150, 160) && v.covers(300, 400));
        assert!(!v.covers(150, 350), "the gap 200..300 was never checked");
        assert!(!v.covers(0, 50) && !v.covers(390, 410));
        assert_eq!(v.end_from(150), Some(200));
        assert_eq!(v.end_from(200), Some(200), "at its end");
        assert_eq!(v.end_from(250), None);
        // Touching the first one extends it; bridging the gap makes one range.
        v.insert(200, 250);
        assert_eq!(v.ranges(), [(100, 250), (300, 400)]);
        v.insert(240, 310);
        assert_eq!(v.ranges(), [(100, 400)]);
        assert!(v.covers(100, 400));
        assert_eq!(v.end_from(120), Some(400), "the end of the merged range");
        // Inside or empty changes nothing; one spanning several swallows them.
        v.insert(120, 130);
        v.insert(500, 500);
        assert_eq!(v.ranges(), [(100, 400)]);
        assert_eq!(v.end_from(399), Some(400));
        v.insert(600, 700);
        v.insert(800, 900);
        v.insert(50, 1000);
        assert_eq!(v.ranges(), [(50, 1000)]);
        assert_eq!(v.end_from(50), Some(1000));
    }

    #[test]
    fn past_the_limit_new_ranges_are_not_remembered_but_extensions_are() {
        let mut v = Verified::default();
        for i in 0..MAX_RANGES as u64 {
            v.insert(i * 100, i * 100 + 10);
        }
        v.insert(10_000, 10_010);
        assert!(!v.covers(10_000, 10_010));
        assert_eq!(v.ranges.len(), MAX_RANGES);
        v.insert(10, 20);
        assert!(v.covers(0, 20));
    }

    #[test]
    fn a_region_reads_its_bytes_and_a_cut_file_is_an_error() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&(0..=255u8).collect::<Vec<_>>()).unwrap();
        let r = FileRegion {
            file: Arc::new(f),
            path: Arc::new("x.log".into()),
            pos: 10,
            len: 5,
        };
        assert_eq!(
            r.read_all().unwrap(),
            Bytes::from_static(&[10, 11, 12, 13, 14])
        );
        assert_eq!(Records::File(r.clone()).len(), 5);
        r.file.set_len(12).unwrap();
        assert_eq!(
            r.read_all().unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }
}
