//! The committed-offset store of Sluice before `__consumer_offsets` (one file per broker,
//! `<data-dir>/groups/offsets.log`), kept to read such a file once at upgrade: the broker that
//! has one hands its offsets to each group's coordinator (`server::groups`), then renames it
//! `offsets.log.imported`. Nothing writes this format in a running broker any more; the writer
//! stays because it defines the format and the tests build files with it.
//!
//! One append-only file, `offsets.log`, under the coordinator's directory. Every change is one
//! framed record:
//!
//! ```text
//! u32 payload length (big endian) | u32 CRC-32C of the payload | payload
//! ```
//!
//! A payload is a commit (group, topic, partition → offset, leader epoch, metadata, timestamp), the
//! deletion of a whole group, or the deletion of a topic's offsets in every group. An append is
//! written and `fdatasync`ed before the caller is answered, so an acknowledged OffsetCommit
//! survives a crash. Opening replays the file in order; a record that is cut short or fails its
//! CRC ends the replay and the file is truncated there (a torn tail from a crash mid-write; no
//! acknowledged record can lie behind it because every append is synced before the next).
//!
//! When the file has grown well past the live data it is compacted: the live offsets are written
//! to `offsets.log.compact`, synced, renamed over `offsets.log` and the directory is synced, so a
//! crash at any point leaves either the old or the new file whole. A leftover `.compact` file at
//! open is an unfinished compaction and is removed.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::offsets::StoredOffset;
use super::{CommittedOffset, GroupError};

/// The legacy log's file name under the group directory.
pub const LOG_FILE: &str = "offsets.log";
/// What the log is renamed to once its offsets were handed to the coordinators.
pub const IMPORTED_FILE: &str = "offsets.log.imported";
const COMPACT_FILE: &str = "offsets.log.compact";
/// Frame header: payload length + CRC.
const HEADER_LEN: usize = 8;
/// No legitimate record comes near this (group and topic names are wire strings, metadata is
/// capped by the coordinator); a larger length field can only be garbage.
const MAX_PAYLOAD: usize = 1 << 20;
/// Compact once the file is at least this big and more than twice the live data.
pub const DEFAULT_COMPACT_THRESHOLD: u64 = 8 << 20;

const KIND_COMMIT: u8 = 1;
const KIND_DELETE_GROUP: u8 = 2;
const KIND_DELETE_TOPIC: u8 = 3;

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetRecord {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        value: StoredOffset,
    },
    DeleteGroup {
        group: String,
    },
    DeleteTopic {
        topic: String,
    },
}

type GroupOffsets = BTreeMap<(String, i32), StoredOffset>;

#[derive(Debug)]
struct Inner {
    file: File,
    file_len: u64,
    /// Bytes the live offsets would take if rewritten (what compaction would leave).
    live_bytes: u64,
    offsets: BTreeMap<String, GroupOffsets>,
}

/// The committed offsets of every group, in memory and on disk.
#[derive(Debug)]
pub struct OffsetStore {
    dir: PathBuf,
    path: PathBuf,
    compact_threshold: u64,
    inner: Mutex<Inner>,
    /// Group commit: appends queue here; one of them writes and syncs everything queued.
    queue: Mutex<CommitQueue>,
    flushed: Condvar,
    syncs: AtomicU64,
}

/// Outcome of a queued append, shareable among the appends of one batch.
type SharedResult = Result<(), (std::io::ErrorKind, String)>;

#[derive(Debug, Default)]
struct CommitQueue {
    next_seq: u64,
    pending: Vec<(u64, Vec<OffsetRecord>)>,
    results: HashMap<u64, SharedResult>,
    /// An append is writing a batch right now; the others wait for `flushed`.
    flushing: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GroupError + '_ {
    move |source| GroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl OffsetStore {
    /// Opens (creating) the store in `dir` and replays it.
    pub fn open(dir: &Path) -> Result<OffsetStore, GroupError> {
        Self::open_with_threshold(dir, DEFAULT_COMPACT_THRESHOLD)
    }

    pub fn open_with_threshold(
        dir: &Path,
        compact_threshold: u64,
    ) -> Result<OffsetStore, GroupError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOG_FILE);
        let compact = dir.join(COMPACT_FILE);
        if compact.exists() {
            tracing::warn!(path = %compact.display(), "removing unfinished offsets compaction");
            fs::remove_file(&compact).map_err(io_err(&compact))?;
        }
        let created = !path.exists();
        let bytes = if created {
            Vec::new()
        } else {
            fs::read(&path).map_err(io_err(&path))?
        };
        let (records, valid_len) = decode_all(&bytes);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if valid_len < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                valid_len,
                file_len = bytes.len(),
                "offsets log has a torn or corrupt tail; truncating it"
            );
            file.set_len(valid_len as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        if created {
            sync_dir(dir)?;
        }
        let mut inner = Inner {
            file,
            file_len: valid_len as u64,
            live_bytes: 0,
            offsets: BTreeMap::new(),
        };
        for record in records {
            inner.apply(record);
        }
        tracing::info!(
            path = %path.display(),
            groups = inner.offsets.len(),
            bytes = inner.file_len,
            "offsets log replayed"
        );
        Ok(OffsetStore {
            dir: dir.to_path_buf(),
            path,
            compact_threshold,
            inner: Mutex::new(inner),
            queue: Mutex::new(CommitQueue::default()),
            flushed: Condvar::new(),
            syncs: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated in a way that matters
        // more than losing the process would, so recover the guard rather than propagate poison.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `records` durably, then applies them in memory; returns once they are on disk.
    /// Blocking: call from `spawn_blocking` on a runtime.
    ///
    /// Group commit: concurrent appends are queued, and whichever finds no write in progress
    /// writes everything queued so far with one `write` and one `fdatasync`, then wakes the
    /// others with the shared outcome. So N simultaneous OffsetCommits cost about one fsync.
    pub fn append(&self, records: Vec<OffsetRecord>) -> Result<(), GroupError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut q = self.lock_queue();
        let seq = q.next_seq;
        q.next_seq += 1;
        q.pending.push((seq, records));
        loop {
            if let Some(result) = q.results.remove(&seq) {
                return result.map_err(|(kind, message)| GroupError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::new(kind, message),
                });
            }
            if q.flushing {
                q = self.flushed.wait(q).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Become the writer for everything queued, our own records included. `write_batch`
            // does not panic (encoding cannot fail), so `flushing` is always reset below.
            q.flushing = true;
            let batch = std::mem::take(&mut q.pending);
            drop(q);
            let seqs: Vec<u64> = batch.iter().map(|(s, _)| *s).collect();
            let records = batch.into_iter().flat_map(|(_, r)| r).collect();
            let outcome: SharedResult = self.write_batch(records).map_err(|e| match e {
                GroupError::Io { source, .. } => (source.kind(), source.to_string()),
                other => (std::io::ErrorKind::Other, other.to_string()),
            });
            q = self.lock_queue();
            for s in seqs {
                q.results.insert(s, outcome.clone());
            }
            q.flushing = false;
            self.flushed.notify_all();
        }
    }

    fn lock_queue(&self) -> MutexGuard<'_, CommitQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One write and one fdatasync for `records`, then applies them in memory.
    fn write_batch(&self, records: Vec<OffsetRecord>) -> Result<(), GroupError> {
        let mut buf = Vec::new();
        for record in &records {
            encode_frame(record, &mut buf);
        }
        let mut inner = self.lock();
        let result = inner
            .file
            .write_all(&buf)
            .and_then(|()| inner.file.sync_data());
        if let Err(source) = result {
            // Cut off whatever part of the write landed so the next append starts clean.
            let len = inner.file_len;
            if let Err(e) = inner.file.set_len(len) {
                tracing::error!(path = %self.path.display(), error = %e, "cannot truncate offsets log after a failed write");
            }
            return Err(GroupError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        inner.file_len += buf.len() as u64;
        for record in records {
            inner.apply(record);
        }
        if inner.file_len >= self.compact_threshold && inner.file_len > 2 * inner.live_bytes {
            if let Err(e) = self.compact(&mut inner) {
                // The log itself is intact; compaction is retried on a later append.
                tracing::warn!(error = %e, "offsets log compaction failed");
            }
        }
        Ok(())
    }

    /// How many fsyncs appends have cost so far (group commit makes this less than the number
    /// of appends under concurrency).
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn compact(&self, inner: &mut Inner) -> Result<(), GroupError> {
        let tmp = self.dir.join(COMPACT_FILE);
        let mut buf = Vec::with_capacity(inner.live_bytes as usize);
        for (group, offsets) in &inner.offsets {
            for ((topic, partition), value) in offsets {
                encode_frame(
                    &OffsetRecord::Commit {
                        group: group.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        value: value.clone(),
                    },
                    &mut buf,
                );
            }
        }
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&buf).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        sync_dir(&self.dir)?;
        inner.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        let before = inner.file_len;
        inner.file_len = buf.len() as u64;
        tracing::info!(before, after = inner.file_len, "offsets log compacted");
        Ok(())
    }

    /// Fsyncs the log (every append is already synced; this is for shutdown).
    pub fn sync(&self) -> Result<(), GroupError> {
        let inner = self.lock();
        inner.file.sync_all().map_err(io_err(&self.path))
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<StoredOffset> {
        let inner = self.lock();
        inner
            .offsets
            .get(group)
            .and_then(|g| g.get(&(topic.to_string(), partition)))
            .cloned()
    }

    /// Every offset of `group`, ordered by topic and partition.
    pub fn group_offsets(&self, group: &str) -> Vec<(String, i32, StoredOffset)> {
        let inner = self.lock();
        inner
            .offsets
            .get(group)
            .map(|g| {
                g.iter()
                    .map(|((t, p), v)| (t.clone(), *p, v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.lock().offsets.contains_key(group)
    }

    /// Groups that have at least one committed offset.
    pub fn groups(&self) -> Vec<String> {
        self.lock().offsets.keys().cloned().collect()
    }

    pub fn has_topic(&self, topic: &str) -> bool {
        self.lock()
            .offsets
            .values()
            .any(|g| g.keys().any(|(t, _)| t == topic))
    }

    pub fn all(&self) -> Vec<CommittedOffset> {
        let inner = self.lock();
        let mut out = Vec::new();
        for (group, offsets) in &inner.offsets {
            for ((topic, partition), v) in offsets {
                out.push(CommittedOffset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: v.offset,
                });
            }
        }
        out
    }

    /// Size of the log file in bytes (tests and metrics).
    pub fn file_len(&self) -> u64 {
        self.lock().file_len
    }
}

/// One group's offsets as the legacy store held them: (topic, partition, value).
pub type LegacyOffsets = Vec<(String, i32, StoredOffset)>;

/// The committed offsets of the legacy store in `dir`, by group, if there is one (`None`: no
/// `offsets.log`, e.g. already imported or never written). Replays it as opening does (a
/// torn tail is cut off).
pub fn read_for_import(dir: &Path) -> Result<Option<BTreeMap<String, LegacyOffsets>>, GroupError> {
    if !dir.join(LOG_FILE).exists() {
        return Ok(None);
    }
    let store = OffsetStore::open(dir)?;
    let groups = store
        .groups()
        .into_iter()
        .map(|g| {
            let offsets = store.group_offsets(&g);
            (g, offsets)
        })
        .collect();
    Ok(Some(groups))
}

/// Renames the legacy log to [`IMPORTED_FILE`] (durably), so it is not imported again.
pub fn mark_imported(dir: &Path) -> Result<(), GroupError> {
    let from = dir.join(LOG_FILE);
    let to = dir.join(IMPORTED_FILE);
    fs::rename(&from, &to).map_err(io_err(&from))?;
    sync_dir(dir)
}

impl Inner {
    fn apply(&mut self, record: OffsetRecord) {
        match record {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                value,
            } => {
                let new_len = commit_frame_len(&group, &topic, &value.metadata);
                let offsets = self.offsets.entry(group.clone()).or_default();
                if let Some(old) = offsets.insert((topic.clone(), partition), value) {
                    self.live_bytes = self.live_bytes.saturating_sub(commit_frame_len(
                        &group,
                        &topic,
                        &old.metadata,
                    ));
                }
                self.live_bytes += new_len;
            }
            OffsetRecord::DeleteGroup { group } => {
                if let Some(offsets) = self.offsets.remove(&group) {
                    for ((topic, _), v) in &offsets {
                        self.live_bytes = self.live_bytes.saturating_sub(commit_frame_len(
                            &group,
                            topic,
                            &v.metadata,
                        ));
                    }
                }
            }
            OffsetRecord::DeleteTopic { topic } => {
                let mut freed = 0;
                self.offsets.retain(|group, offsets| {
                    offsets.retain(|(t, _), v| {
                        let keep = *t != topic;
                        if !keep {
                            freed += commit_frame_len(group, t, &v.metadata);
                        }
                        keep
                    });
                    !offsets.is_empty()
                });
                self.live_bytes = self.live_bytes.saturating_sub(freed);
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), GroupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn commit_frame_len(group: &str, topic: &str, metadata: &str) -> u64 {
    (HEADER_LEN + 1 + 4 + group.len() + 4 + topic.len() + 4 + 8 + 4 + 8 + 4 + metadata.len()) as u64
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    // Names and metadata come from Kafka wire strings (at most 32767 bytes), far below u32.
    buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn encode_frame(record: &OffsetRecord, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    match record {
        OffsetRecord::Commit {
            group,
            topic,
            partition,
            value,
        } => {
            buf.push(KIND_COMMIT);
            put_str(buf, group);
            put_str(buf, topic);
            buf.extend_from_slice(&partition.to_be_bytes());
            buf.extend_from_slice(&value.offset.to_be_bytes());
            buf.extend_from_slice(&value.leader_epoch.to_be_bytes());
            buf.extend_from_slice(&value.commit_timestamp_ms.to_be_bytes());
            put_str(buf, &value.metadata);
        }
        OffsetRecord::DeleteGroup { group } => {
            buf.push(KIND_DELETE_GROUP);
            put_str(buf, group);
        }
        OffsetRecord::DeleteTopic { topic } => {
            buf.push(KIND_DELETE_TOPIC);
            put_str(buf, topic);
        }
    }
    let payload_len = (buf.len() - start - HEADER_LEN) as u32;
    let crc = crc32c::crc32c(&buf[start + HEADER_LEN..]);
    buf[start..start + 4].copy_from_slice(&payload_len.to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes records from the start of `bytes`; returns them and the length of the valid prefix.
fn decode_all(bytes: &[u8]) -> (Vec<OffsetRecord>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while let Some((record, next)) = decode_frame(bytes, pos) {
        records.push(record);
        pos = next;
    }
    (records, pos)
}

fn decode_frame(bytes: &[u8], pos: usize) -> Option<(OffsetRecord, usize)> {
    let header = bytes.get(pos..pos.checked_add(HEADER_LEN)?)?;
    let len = u32::from_be_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(header[4..8].try_into().ok()?);
    if len > MAX_PAYLOAD {
        return None;
    }
    let start = pos + HEADER_LEN;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let record = decode_payload(payload)?;
    Some((record, start + len))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn decode_payload(payload: &[u8]) -> Option<OffsetRecord> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let record = match r.u8()? {
        KIND_COMMIT => {
            let group = r.string()?;
            let topic = r.string()?;
            let partition = r.i32()?;
            let offset = r.i64()?;
            let leader_epoch = r.i32()?;
            let commit_timestamp_ms = r.i64()?;
            let metadata = r.string()?;
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                value: StoredOffset {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp_ms,
                },
            }
        }
        KIND_DELETE_GROUP => OffsetRecord::DeleteGroup { group: r.string()? },
        KIND_DELETE_TOPIC => OffsetRecord::DeleteTopic { topic: r.string()? },
        _ => return None,
    };
    // A payload with trailing bytes was not written by this code.
    (r.pos == payload.len()).then_some(record)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.into(),
            topic: topic.into(),
            partition,
            value: StoredOffset {
                offset,
                leader_epoch: 3,
                metadata: format!("meta-{offset}"),
                commit_timestamp_ms: 1_700_000_000_000 + offset,
            },
        }
    }

    #[test]
    fn commits_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = OffsetStore::open(dir.path()).unwrap();
            store
                .append(vec![commit("g", "t", 0, 5), commit("g", "t", 1, 7)])
                .unwrap();
            store.append(vec![commit("g", "t", 0, 9)]).unwrap();
            store.append(vec![commit("h", "u", 2, 1)]).unwrap();
        }
        let store = OffsetStore::open(dir.path()).unwrap();
        let g = store.get("g", "t", 0).unwrap();
        assert_eq!(g.offset, 9);
        assert_eq!(g.metadata, "meta-9");
        assert_eq!(g.leader_epoch, 3);
        assert_eq!(store.get("g", "t", 1).unwrap().offset, 7);
        assert_eq!(store.get("h", "u", 2).unwrap().offset, 1);
        assert_eq!(store.get("h", "u", 3), None);
        assert_eq!(store.groups(), vec!["g".to_string(), "h".to_string()]);
        assert_eq!(store.all().len(), 3);
    }

    /// The log under `dir` after two commits to g/t/0 (offset 5, then 6), its store closed.
    fn log_of_two_commits(dir: &Path) -> PathBuf {
        let store = OffsetStore::open(dir).unwrap();
        store.append(vec![commit("g", "t", 0, 5)]).unwrap();
        store.append(vec![commit("g", "t", 0, 6)]).unwrap();
        dir.join(LOG_FILE)
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_commits_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_of_two_commits(dir.path());
        let good_len = fs::metadata(&path).unwrap().len();
        // A third record cut in the middle, as a crash during write would leave it.
        let mut frame = Vec::new();
        encode_frame(&commit("g", "t", 0, 7), &mut frame);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&frame[..frame.len() / 2]).unwrap();
        drop(f);
        assert!(fs::metadata(&path).unwrap().len() > good_len);

        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g", "t", 0).unwrap().offset, 6);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
        // The log keeps working after the truncation, and a later reopen sees the new commit.
        store.append(vec![commit("g", "t", 0, 8)]).unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g", "t", 0).unwrap().offset, 8);
    }

    #[test]
    fn corrupt_record_ends_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_of_two_commits(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff; // flip a byte of the second record's metadata
        fs::write(&path, &bytes).unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g", "t", 0).unwrap().offset, 5);
    }

    #[test]
    fn huge_length_field_is_treated_as_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        fs::write(&path, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3]).unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        assert!(store.all().is_empty());
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn deletes_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = OffsetStore::open(dir.path()).unwrap();
            store
                .append(vec![
                    commit("g", "t", 0, 5),
                    commit("g", "gone", 0, 5),
                    commit("h", "gone", 1, 5),
                    commit("h", "t", 1, 5),
                    commit("x", "t", 0, 1),
                ])
                .unwrap();
            store
                .append(vec![OffsetRecord::DeleteTopic {
                    topic: "gone".into(),
                }])
                .unwrap();
            store
                .append(vec![OffsetRecord::DeleteGroup { group: "x".into() }])
                .unwrap();
            assert!(!store.has_topic("gone"));
        }
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.groups(), vec!["g".to_string(), "h".to_string()]);
        assert_eq!(store.get("g", "gone", 0), None);
        assert_eq!(store.get("h", "gone", 1), None);
        assert_eq!(store.get("h", "t", 1).unwrap().offset, 5);
        assert!(!store.has_group("x"));
    }

    #[test]
    fn log_is_compacted_and_reopens_to_the_same_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let store = OffsetStore::open_with_threshold(dir.path(), 4096).unwrap();
        for i in 0..500 {
            store
                .append(vec![commit("g", "t", (i % 3) as i32, i)])
                .unwrap();
        }
        let len = fs::metadata(&path).unwrap().len();
        assert!(len < 4096 * 2, "log was not compacted: {len} bytes");
        assert_eq!(store.file_len(), len);
        assert!(!dir.path().join(COMPACT_FILE).exists());
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g", "t", 0).unwrap().offset, 498);
        assert_eq!(store.get("g", "t", 1).unwrap().offset, 499);
        assert_eq!(store.get("g", "t", 2).unwrap().offset, 497);
        assert_eq!(store.all().len(), 3);
    }

    #[test]
    fn leftover_compaction_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = OffsetStore::open(dir.path()).unwrap();
            store.append(vec![commit("g", "t", 0, 5)]).unwrap();
        }
        // A crash between writing the compacted file and renaming it.
        let mut junk = Vec::new();
        encode_frame(&commit("g", "t", 0, 1), &mut junk);
        fs::write(dir.path().join(COMPACT_FILE), &junk).unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g", "t", 0).unwrap().offset, 5);
        assert!(!dir.path().join(COMPACT_FILE).exists());
    }

    #[test]
    fn concurrent_appends_share_fsyncs_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(OffsetStore::open(dir.path()).unwrap());
        const THREADS: i32 = 8;
        const EACH: i64 = 25;
        let handles: Vec<_> = (0..THREADS)
            .map(|p| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        store.append(vec![commit("g", "t", p, i)]).unwrap();
                        // Each append returned only once durable and visible.
                        assert_eq!(store.get("g", "t", p).unwrap().offset, i);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let appends = (THREADS as u64) * (EACH as u64);
        let syncs = store.sync_count();
        assert!(
            syncs >= 1 && syncs <= appends,
            "{syncs} fsyncs for {appends} appends"
        );
        eprintln!("{appends} concurrent appends cost {syncs} fsyncs");
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        for p in 0..THREADS {
            assert_eq!(store.get("g", "t", p).unwrap().offset, EACH - 1);
        }
        assert_eq!(store.all().len(), THREADS as usize);
    }

    const CRASH_DIR_ENV: &str = "SLUICE_OFFSETS_CRASH_DIR";

    /// The child half of `acknowledged_commits_survive_kill_9`: commits increasing offsets and
    /// prints each one once `append` returned (= fsynced). Does nothing in a normal run.
    #[test]
    fn crash_writer_child() {
        let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
            return;
        };
        // A small threshold so that kills also land in the middle of compactions.
        let store = OffsetStore::open_with_threshold(Path::new(&dir), 2048).unwrap();
        let start = store.get("g", "t", 0).map_or(0, |v| v.offset + 1);
        for i in start..start + 100_000 {
            store
                .append(vec![commit("g", "t", 0, i), commit("g", "u", 1, i)])
                .unwrap();
            println!("acked {i}");
        }
    }

    #[test]
    fn acknowledged_commits_survive_kill_9() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        for round in 0..4u32 {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "group::legacy::tests::crash_writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_DIR_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let kill_after = 5 + (seed.wrapping_mul(round + 7) % 150) as usize;
            let mut last_acked = None;
            let mut seen = 0;
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                if let Some(n) = line.strip_prefix("acked ") {
                    last_acked = Some(n.trim().parse::<i64>().unwrap());
                    seen += 1;
                    if seen >= kill_after {
                        break;
                    }
                }
            }
            child.kill().unwrap(); // SIGKILL: no destructor, no flush
            child.wait().unwrap();
            let last_acked = last_acked.expect("the writer acknowledged nothing");
            let store = OffsetStore::open(dir.path()).unwrap();
            let t = store.get("g", "t", 0).unwrap().offset;
            let u = store.get("g", "u", 1).unwrap().offset;
            assert!(
                t >= last_acked,
                "round {round}: acked {last_acked}, recovered {t}"
            );
            assert!(
                u >= last_acked,
                "round {round}: acked {last_acked}, recovered {u}"
            );
            // Records are framed one by one: a kill in the middle of a write may keep the first
            // commit of the last, unacknowledged append without the second.
            assert!((t - u).abs() <= 1, "round {round}: {t} vs {u}");
            assert_eq!(
                store.get("g", "t", 0).unwrap().metadata,
                format!("meta-{t}")
            );
        }
    }
}
