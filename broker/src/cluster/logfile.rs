//! The Raft log file: one append-only file of records, each `len u32 | crc32c u32 | index u64 |
//! payload` (big-endian; `len` counts index + payload, the CRC covers the same bytes).
//!
//! - `append` writes a batch and fsyncs before returning (openraft is told "flushed" only then).
//! - `truncate(index)` drops `index..` with `set_len` + fsync (a follower's conflicting suffix).
//! - `purge(upto)` drops `..=upto` by copying the kept tail to `raft.log.tmp`, fsync, rename,
//!   fsync the directory (the purged prefix is small: the log is purged after snapshots).
//! - `open` scans every record; the first one that is short, too long, fails its CRC or breaks
//!   the index sequence ends the log: it and everything after it are cut off (a torn append
//!   from a crash). A crashed append therefore never stops the restart; Raft re-replicates
//!   anything un-acknowledged. But when a valid record follows the bad one, the damage is not
//!   a torn append (appends are fsynced one after the other, so only the last can be torn):
//!   cutting there would drop entries this member acknowledged, which Raft's safety relies
//!   on, so `open` refuses with [`LogFileError::Damaged`] instead.
//!
//! This layer knows nothing about openraft: records are opaque bytes with an index.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// `len` + `crc`.
const HEADER: usize = 8;
/// Largest record accepted (index + payload); anything larger is treated as a torn header.
pub const MAX_RECORD: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("raft log file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("raft log file {path}: append of index {index} would leave a hole (next is {next})")]
    Hole {
        path: PathBuf,
        index: u64,
        next: u64,
    },
    #[error("raft log file {path}: record of {len} bytes exceeds the {MAX_RECORD}-byte limit")]
    TooLarge { path: PathBuf, len: usize },
    #[error(
        "raft log file {path} is damaged at byte {position} (after index {last_good:?}) but a \
         valid record follows at byte {valid_at}: not a torn append, so acknowledged entries \
         would be lost by cutting it; restore the volume, or remove the cluster directory so \
         that this broker rejoins its cluster with an empty metadata volume"
    )]
    Damaged {
        path: PathBuf,
        position: u64,
        last_good: Option<u64>,
        valid_at: u64,
    },
}

impl LogFileError {
    pub fn into_io(self) -> std::io::Error {
        match self {
            LogFileError::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogFileError + '_ {
    move |source| LogFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fsyncs a directory so a rename or creation in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically and durably: `<path>.tmp`, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads `path`, `None` when it does not exist.
pub fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn encode(index: u64, payload: &[u8], out: &mut Vec<u8>) -> Result<(), usize> {
    let len = 8 + payload.len();
    if len > MAX_RECORD {
        return Err(len);
    }
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(&index.to_be_bytes());
    body.extend_from_slice(payload);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// The record at `pos`, if one starts there: `(index, payload)`, the CRC checked.
fn record_at(bytes: &[u8], pos: usize) -> Option<(u64, &[u8])> {
    let head = bytes.get(pos..pos.checked_add(HEADER)?)?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if !(8..=MAX_RECORD).contains(&len) {
        return None;
    }
    let body = bytes.get(pos + HEADER..(pos + HEADER).checked_add(len)?)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let mut ix = [0u8; 8];
    ix.copy_from_slice(&body[..8]);
    Some((u64::from_be_bytes(ix), &body[8..]))
}

/// The position of a valid record after the bad one at `bad`, if any: one whose CRC holds and
/// whose index comes after `last_good` (so it belongs to this log, not to leftover bytes of a
/// purge). Only a few candidates get their CRC computed: the length and index must fit first.
fn valid_record_after(bytes: &[u8], bad: usize, last_good: Option<u64>) -> Option<usize> {
    let floor = last_good.map_or(0, |l| l.saturating_add(1));
    // At most one record per 16 bytes can follow.
    let ceiling = floor.saturating_add((bytes.len() / 16) as u64);
    (bad + 1..bytes.len().saturating_sub(HEADER + 8)).find(|&p| {
        let ix = u64::from_be_bytes(
            bytes[p + HEADER..p + HEADER + 8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        (floor..=ceiling).contains(&ix) && record_at(bytes, p).is_some()
    })
}

/// What `open` found.
#[derive(Debug)]
pub struct Recovered {
    /// Every valid record, in order: `(index, payload)`.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Bytes cut off the tail (0 when the file was clean).
    pub cut_bytes: u64,
}

#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Index → file position of its record.
    positions: BTreeMap<u64, u64>,
    size: u64,
}

impl LogFile {
    /// Opens (or creates) the log file, recovering from a torn tail.
    pub fn open(path: &Path) -> Result<(LogFile, Recovered), LogFileError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io(path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(path))?;
        let mut records = Vec::new();
        let mut positions = BTreeMap::new();
        let mut pos = 0usize;
        let mut prev: Option<u64> = None;
        while bytes.len() - pos >= HEADER {
            let len =
                u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
                    as usize;
            let crc = u32::from_be_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]);
            if !(8..=MAX_RECORD).contains(&len) || bytes.len() - pos - HEADER < len {
                break;
            }
            let body = &bytes[pos + HEADER..pos + HEADER + len];
            if crc32c::crc32c(body) != crc {
                break;
            }
            let mut ix = [0u8; 8];
            ix.copy_from_slice(&body[..8]);
            let index = u64::from_be_bytes(ix);
            if prev.is_some_and(|p| p.checked_add(1) != Some(index)) {
                break;
            }
            prev = Some(index);
            positions.insert(index, pos as u64);
            records.push((index, body[8..].to_vec()));
            pos += HEADER + len;
        }
        let cut_bytes = (bytes.len() - pos) as u64;
        if let Some(valid_at) = valid_record_after(&bytes, pos, prev) {
            return Err(LogFileError::Damaged {
                path: path.to_path_buf(),
                position: pos as u64,
                last_good: prev,
                valid_at: valid_at as u64,
            });
        }
        if cut_bytes > 0 {
            crate::recovery::count(crate::recovery::Action::RaftLogTruncated);
            tracing::warn!(
                path = %path.display(),
                valid_bytes = pos,
                cut_bytes,
                "raft log: cutting off a torn or corrupt tail"
            );
            file.set_len(pos as u64).map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
        }
        file.seek(SeekFrom::Start(pos as u64)).map_err(io(path))?;
        Ok((
            LogFile {
                path: path.to_path_buf(),
                file,
                positions,
                size: pos as u64,
            },
            Recovered { records, cut_bytes },
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn first_index(&self) -> Option<u64> {
        self.positions.keys().next().copied()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.positions.keys().next_back().copied()
    }

    /// Appends consecutive records after the last one (any first index if the file is empty)
    /// and fsyncs. Nothing is written if the batch is invalid.
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = (u64, &'a [u8])>,
    ) -> Result<(), LogFileError> {
        let mut buf = Vec::new();
        let mut next = self.last_index().map(|l| l + 1);
        let mut new_positions = Vec::new();
        for (index, payload) in records {
            if let Some(n) = next {
                if n != index {
                    return Err(LogFileError::Hole {
                        path: self.path.clone(),
                        index,
                        next: n,
                    });
                }
            }
            new_positions.push((index, self.size + buf.len() as u64));
            encode(index, payload, &mut buf).map_err(|len| LogFileError::TooLarge {
                path: self.path.clone(),
                len,
            })?;
            next = Some(index + 1);
        }
        if buf.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let res = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = res {
            // Leave the file as it was before this append (best effort; `open` would cut a
            // partial record anyway).
            let _ = self.file.set_len(self.size);
            let _ = self.file.seek(SeekFrom::Start(self.size));
            return Err(io(&path)(e));
        }
        self.size += buf.len() as u64;
        self.positions.extend(new_positions);
        Ok(())
    }

    /// Drops every record with index `>= from`, durably.
    pub fn truncate(&mut self, from: u64) -> Result<(), LogFileError> {
        let Some((&first, &pos)) = self.positions.range(from..).next() else {
            return Ok(());
        };
        let path = self.path.clone();
        self.file.set_len(pos).map_err(io(&path))?;
        self.file.sync_all().map_err(io(&path))?;
        self.file.seek(SeekFrom::Start(pos)).map_err(io(&path))?;
        self.size = pos;
        self.positions.split_off(&first);
        Ok(())
    }

    /// Drops every record with index `<= upto`, durably (rewrites the kept tail).
    pub fn purge(&mut self, upto: u64) -> Result<(), LogFileError> {
        if self.first_index().is_none_or(|f| f > upto) {
            return Ok(());
        }
        let path = self.path.clone();
        let kept = self.positions.split_off(&(upto + 1));
        let start = kept.values().next().copied().unwrap_or(self.size);
        let mut tail = Vec::with_capacity((self.size - start) as usize);
        self.file.seek(SeekFrom::Start(start)).map_err(io(&path))?;
        (&mut self.file)
            .take(self.size - start)
            .read_to_end(&mut tail)
            .map_err(io(&path))?;
        write_atomic(&path, &tail).map_err(io(&path))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        self.file = file;
        self.size = tail.len() as u64;
        self.positions = kept.into_iter().map(|(i, p)| (i, p - start)).collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Vec<u8> {
        format!("entry-{i}-{}", "x".repeat((i % 7) as usize)).into_bytes()
    }

    fn append_range(log: &mut LogFile, r: std::ops::RangeInclusive<u64>) {
        let p: Vec<(u64, Vec<u8>)> = r.map(|i| (i, payload(i))).collect();
        log.append(p.iter().map(|(i, b)| (*i, b.as_slice())))
            .expect("append");
    }

    fn indexes(rec: &Recovered) -> Vec<u64> {
        rec.records.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn append_read_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, rec) = LogFile::open(&path).expect("open");
        assert!(rec.records.is_empty());
        append_range(&mut log, 1..=10);
        append_range(&mut log, 11..=12);
        drop(log);
        let (log, rec) = LogFile::open(&path).expect("reopen");
        assert_eq!(indexes(&rec), (1..=12).collect::<Vec<_>>());
        assert_eq!(rec.cut_bytes, 0);
        for (i, p) in &rec.records {
            assert_eq!(p, &payload(*i));
        }
        assert_eq!((log.first_index(), log.last_index()), (Some(1), Some(12)));
    }

    #[test]
    fn refuses_holes_and_keeps_file_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = LogFile::open(&path).expect("open");
        append_range(&mut log, 5..=6);
        let err = log
            .append([(8u64, b"z".as_slice())])
            .expect_err("hole must be refused");
        assert!(err.to_string().contains("index 8"), "{err}");
        append_range(&mut log, 7..=7);
        drop(log);
        let (_, rec) = LogFile::open(&path).expect("reopen");
        assert_eq!(indexes(&rec), vec![5, 6, 7]);
    }

    #[test]
    fn truncate_then_append_then_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = LogFile::open(&path).expect("open");
        append_range(&mut log, 1..=10);
        log.truncate(6).expect("truncate");
        assert_eq!(log.last_index(), Some(5));
        log.append([(6u64, b"new-6".as_slice())]).expect("append");
        log.truncate(100).expect("truncate past the end is a no-op");
        drop(log);
        let (_, rec) = LogFile::open(&path).expect("reopen");
        assert_eq!(indexes(&rec), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(rec.records[5].1, b"new-6");
    }

    #[test]
    fn purge_then_append_then_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = LogFile::open(&path).expect("open");
        append_range(&mut log, 1..=10);
        log.purge(4).expect("purge");
        assert_eq!(log.first_index(), Some(5));
        append_range(&mut log, 11..=11);
        log.truncate(9)
            .expect("truncate after purge uses rebased positions");
        drop(log);
        let (mut log, rec) = LogFile::open(&path).expect("reopen");
        assert_eq!(indexes(&rec), vec![5, 6, 7, 8]);
        // Purging everything leaves an empty file that accepts any next index.
        log.purge(8).expect("purge all");
        assert_eq!(log.first_index(), None);
        append_range(&mut log, 20..=21);
        drop(log);
        let (_, rec) = LogFile::open(&path).expect("reopen");
        assert_eq!(indexes(&rec), vec![20, 21]);
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = LogFile::open(&path).expect("open");
        append_range(&mut log, 1..=5);
        drop(log);
        let clean = std::fs::metadata(&path).expect("meta").len();
        // A crashed append: half a record's header and body.
        let mut half = Vec::new();
        encode(6, b"never-acknowledged", &mut half).expect("encode");
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&half[..half.len() / 2]).expect("write");
        drop(f);
        let (mut log, rec) = LogFile::open(&path).expect("recover");
        assert_eq!(indexes(&rec), vec![1, 2, 3, 4, 5]);
        assert!(rec.cut_bytes > 0);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), clean);
        append_range(&mut log, 6..=6);
        drop(log);
        let (_, rec) = LogFile::open(&path).expect("reopen");
        assert_eq!(indexes(&rec), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(rec.cut_bytes, 0);
    }

    /// Byte position of the record with 0-based position `n` in the file.
    fn record_pos(bytes: &[u8], n: usize) -> usize {
        let mut pos = 0usize;
        for _ in 0..n {
            let len =
                u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
            pos += HEADER + len as usize;
        }
        pos
    }

    #[test]
    fn corrupt_last_record_is_cut_like_a_torn_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = LogFile::open(&path).expect("open");
        append_range(&mut log, 1..=4);
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        // Flip a payload byte of the last record: CRC mismatch, nothing valid after it.
        let pos = record_pos(&bytes, 3);
        bytes[pos + HEADER + 9] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let (_, rec) = LogFile::open(&path).expect("recover");
        assert_eq!(indexes(&rec), vec![1, 2, 3]);
        // Garbage length header at the tail.
        std::fs::write(&path, [0xffu8; 12]).expect("write");
        let (_, rec) = LogFile::open(&path).expect("recover");
        assert!(rec.records.is_empty());
        assert_eq!(rec.cut_bytes, 12);
    }

    /// Found by the `raft_dir` fuzz target: a record with index u64::MAX followed by another
    /// overflowed the index-sequence check (a panic with overflow checks, a wrap without).
    #[test]
    fn the_largest_index_ends_the_sequence_without_overflow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let mut bytes = Vec::new();
        encode(u64::MAX, b"last", &mut bytes).expect("encode");
        encode(0, b"wrapped", &mut bytes).expect("encode");
        std::fs::write(&path, &bytes).expect("write");
        let (_, rec) = LogFile::open(&path).expect("open");
        assert_eq!(indexes(&rec), vec![u64::MAX]);
    }

    #[test]
    fn corrupt_record_followed_by_valid_ones_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.log");
        let (mut log, _) = LogFile::open(&path).expect("open");
        append_range(&mut log, 1..=4);
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        // Flip a payload byte of the third record: records 1, 2 and 4 are intact, so this is
        // damage, not a torn append, and record 4 was acknowledged.
        let pos = record_pos(&bytes, 2);
        bytes[pos + HEADER + 9] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let err = LogFile::open(&path).expect_err("damaged mid-log");
        assert!(
            matches!(err, LogFileError::Damaged { position, last_good: Some(2), .. } if position == pos as u64),
            "{err}"
        );
        assert!(err.to_string().contains("raft.log"), "{err}");
        // Nothing was cut: the file is as it was.
        assert_eq!(std::fs::read(&path).expect("read"), bytes);
    }
}
