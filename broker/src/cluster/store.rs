//! openraft storage on the broker's volume (`ClusterConfig::dir`):
//!
//! - `raft.log`: the log entries ([`super::logfile`]), JSON payloads.
//! - `vote.json`: the last vote (atomic write-rename + fsync before openraft is answered).
//! - `purged.json`: the last purged log id (written before the log file's prefix is dropped, so
//!   a crash in between only leaves entries that `open` ignores).
//! - `committed.json`: the last committed log id (a hint: lets a restarted node re-apply its
//!   committed entries before it hears from a leader).
//! - `snapshot.json`: the last snapshot: metadata (last applied log id, membership) and the
//!   serialized [`ClusterState`] (atomic write).
//!
//! The state machine is rebuilt at start from the snapshot plus the committed log entries that
//! follow it; every applied state is published on a `watch` channel.
//!
//! File I/O runs inline on the calling task: metadata writes are small and rare, and openraft
//! requires them to be serialized anyway.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::logfile::{self, LogFile};
use super::state::{ClusterState, Outcome};
use super::{NodeId, TypeConfig};

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote.json";
const PURGED_FILE: &str = "purged.json";
const COMMITTED_FILE: &str = "committed.json";
const SNAPSHOT_FILE: &str = "snapshot.json";

type SError = StorageError<NodeId>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match logfile::read_optional(path)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    let b = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    logfile::write_atomic(path, &b)
}

fn any(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

// ----------------------------------------------------------------------------------------
// Log store

#[derive(Debug)]
struct LogInner {
    dir: PathBuf,
    file: LogFile,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

/// The durable Raft log + vote; cheap to clone (the clones are openraft's log readers).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens the files under `dir` (created if missing), recovering a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let last_purged: Option<LogId<NodeId>> = read_json(&dir.join(PURGED_FILE))?;
        let vote = read_json(&dir.join(VOTE_FILE))?;
        // Only a hint (a restart re-applies committed entries before a leader says so): a
        // damaged one is dropped rather than stopping the broker.
        let committed_path = dir.join(COMMITTED_FILE);
        let committed = read_json(&committed_path).unwrap_or_else(|e| {
            tracing::warn!(path = %committed_path.display(), error = %e, "ignoring a damaged raft commit hint");
            crate::recovery::count(crate::recovery::Action::RaftHintIgnored);
            None
        });
        let path = dir.join(LOG_FILE);
        let (mut file, rec) = LogFile::open(&path).map_err(|e| e.into_io())?;
        let mut entries = BTreeMap::new();
        for (index, payload) in rec.records {
            if last_purged.is_some_and(|p| index <= p.index) {
                continue;
            }
            match serde_json::from_slice::<Entry<TypeConfig>>(&payload) {
                Ok(e) if e.log_id.index == index => {
                    entries.insert(index, e);
                }
                other => {
                    // CRC-valid but undecodable: written by something else. Cut it like a
                    // torn tail rather than refuse to start; Raft re-replicates.
                    tracing::warn!(path = %path.display(), index, error = ?other.err(),
                        "raft log: undecodable entry, cutting the log there");
                    crate::recovery::count(crate::recovery::Action::RaftLogTruncated);
                    file.truncate(index).map_err(|e| e.into_io())?;
                    break;
                }
            }
        }
        // A purge that crashed before rewriting the file: finish it.
        if let Some(p) = last_purged {
            file.purge(p.index).map_err(|e| e.into_io())?;
        }
        tracing::info!(dir = %dir.display(), entries = entries.len(),
            first = ?entries.keys().next(), last = ?entries.keys().next_back(),
            purged = ?last_purged.map(|l| l.index), "raft log opened");
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                entries,
                last_purged,
                vote,
                committed,
            })),
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SError> {
        let g = lock(&self.inner);
        Ok(g.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SError> {
        let g = lock(&self.inner);
        let last = g
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(g.last_purged);
        Ok(LogState {
            last_purged_log_id: g.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SError> {
        let mut g = lock(&self.inner);
        write_json(&g.dir.join(VOTE_FILE), vote).map_err(|e| StorageIOError::write_vote(any(e)))?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SError> {
        Ok(lock(&self.inner).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SError> {
        let mut g = lock(&self.inner);
        if g.committed == committed {
            return Ok(());
        }
        write_json(&g.dir.join(COMMITTED_FILE), &committed)
            .map_err(|e| StorageIOError::write(any(e)))?;
        g.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SError> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), SError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let mut encoded = Vec::with_capacity(entries.len());
        for e in &entries {
            let b = serde_json::to_vec(e)
                .map_err(|err| StorageIOError::write_log_entry(e.log_id, any(err)))?;
            encoded.push((e.log_id.index, b));
        }
        let mut g = lock(&self.inner);
        let res = g
            .file
            .append(encoded.iter().map(|(i, b)| (*i, b.as_slice())));
        match res {
            Ok(()) => {
                for e in entries {
                    g.entries.insert(e.log_id.index, e);
                }
                drop(g);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                drop(g);
                callback.log_io_completed(Err(std::io::Error::other(msg.clone())));
                Err(StorageIOError::write_logs(any(msg)).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SError> {
        let mut g = lock(&self.inner);
        g.file
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(any(e)))?;
        g.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SError> {
        let mut g = lock(&self.inner);
        write_json(&g.dir.join(PURGED_FILE), &log_id)
            .map_err(|e| StorageIOError::write_logs(any(e)))?;
        g.last_purged = Some(log_id);
        g.file
            .purge(log_id.index)
            .map_err(|e| StorageIOError::write_logs(any(e)))?;
        let kept = g.entries.split_off(&(log_id.index + 1));
        g.entries = kept;
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------
// State machine

/// `snapshot.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    state: ClusterState,
}

#[derive(Debug)]
struct SmInner {
    dir: PathBuf,
    state: ClusterState,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    snapshot: Option<SnapshotFile>,
    snapshot_seq: u64,
}

/// `ClusterState` + last applied log id + membership, with file snapshots.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<SmInner>>,
    tx: Arc<watch::Sender<Arc<ClusterState>>>,
}

impl StateMachineStore {
    /// Loads the last snapshot under `dir`, if any.
    pub fn open(dir: &Path) -> std::io::Result<StateMachineStore> {
        std::fs::create_dir_all(dir)?;
        let snapshot: Option<SnapshotFile> = read_json(&dir.join(SNAPSHOT_FILE))?;
        let (state, last_applied, membership) = match &snapshot {
            Some(s) => (
                s.state.clone(),
                s.meta.last_log_id,
                s.meta.last_membership.clone(),
            ),
            None => Default::default(),
        };
        let (tx, _) = watch::channel(Arc::new(state.clone()));
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(SmInner {
                dir: dir.to_path_buf(),
                state,
                last_applied,
                membership,
                snapshot,
                snapshot_seq: 0,
            })),
            tx: Arc::new(tx),
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.tx.subscribe()
    }

    fn publish(&self, state: &ClusterState) {
        self.tx.send_replace(Arc::new(state.clone()));
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SError> {
        let mut g = lock(&self.inner);
        g.snapshot_seq += 1;
        let id = match g.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, g.snapshot_seq),
            None => format!("none-{}", g.snapshot_seq),
        };
        let file = SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: g.last_applied,
                last_membership: g.membership.clone(),
                snapshot_id: id,
            },
            state: g.state.clone(),
        };
        let data = serde_json::to_vec(&file.state)
            .map_err(|e| StorageIOError::write_snapshot(None, any(e)))?;
        write_json(&g.dir.join(SNAPSHOT_FILE), &file)
            .map_err(|e| StorageIOError::write_snapshot(None, any(e)))?;
        let meta = file.meta.clone();
        g.snapshot = Some(file);
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "raft snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        SError,
    > {
        let g = lock(&self.inner);
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, SError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut g = lock(&self.inner);
        let mut out = Vec::new();
        for e in entries {
            g.last_applied = Some(e.log_id);
            let o = match &e.payload {
                EntryPayload::Blank => Outcome::Done,
                EntryPayload::Normal(cmd) => g.state.apply(cmd),
                EntryPayload::Membership(m) => {
                    g.membership = StoredMembership::new(Some(e.log_id), m.clone());
                    Outcome::Done
                }
            };
            out.push(o);
        }
        self.publish(&g.state);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SError> {
        let state: ClusterState = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), any(e)))?;
        let file = SnapshotFile {
            meta: meta.clone(),
            state,
        };
        let mut g = lock(&self.inner);
        write_json(&g.dir.join(SNAPSHOT_FILE), &file)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), any(e)))?;
        g.state = file.state.clone();
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        g.snapshot = Some(file);
        self.publish(&g.state);
        tracing::info!(last_log_id = ?meta.last_log_id, "raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SError> {
        let g = lock(&self.inner);
        let Some(s) = &g.snapshot else {
            return Ok(None);
        };
        let data = serde_json::to_vec(&s.state)
            .map_err(|e| StorageIOError::read_snapshot(None, any(e)))?;
        Ok(Some(Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), SError> {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(any(e)))?;
            let log = LogStore::open(dir.path()).map_err(|e| StorageIOError::write(any(e)))?;
            let sm =
                StateMachineStore::open(dir.path()).map_err(|e| StorageIOError::write(any(e)))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for RaftLogStorage + RaftStateMachine.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("openraft storage suite");
    }
}
