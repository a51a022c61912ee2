//! One leadership of one `__consumer_offsets` partition by this broker: the partition's log,
//! its committed offsets in memory, and the write path of commits.
//!
//! - **Load** ([`Tenure::load`]): a broker that becomes the partition's leader reads its log
//!   from the log start to the log end and replays it before it serves any of its groups.
//! - **Write** ([`Tenure::write`]): records are encoded into one batch and appended with the
//!   leader epoch of this tenure (an append after the leadership moved on is refused by the
//!   log), staged in the map, and acknowledged once the high watermark passed them: every
//!   in-sync replica has them, on disk (the topic is `sluice.fsync=always`). Appends of one
//!   partition are serialised (one async lock), which also keeps a compaction's snapshot
//!   consistent with the records around it.
//! - **Compaction** ([`Tenure::compact`]): when the log holds many more records than live
//!   offsets, every live offset is appended again, and once that is replicated the log start
//!   moves to its first record (followers follow the leader's log start).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::offsets::{compaction_due, OffsetMap};
use super::records::{self, Logged, OffsetRecord, RecordError};
use super::{codes, now_ms};
use crate::log::{AppendOutcome, LogError, PartitionLog};

/// Bytes read from the log per step of a load.
const LOAD_CHUNK: usize = 4 << 20;
/// Records of a compaction's snapshot are written in batches of about this many bytes, well
/// under `max.message.bytes`.
const SNAPSHOT_BATCH_BYTES: usize = 256 << 10;

/// Why a write was not acknowledged; each maps to the code Kafka's coordinator answers.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This broker no longer leads the partition (or never got to append): NOT_COORDINATOR.
    #[error("this broker no longer leads the partition")]
    NotLeader,
    /// Not replicated to every in-sync replica in time: COORDINATOR_NOT_AVAILABLE (Kafka maps
    /// the append's REQUEST_TIMED_OUT to it).
    #[error("not replicated within {0:?}")]
    Timeout(Duration),
    /// Larger than the topic's `max.message.bytes`: INVALID_COMMIT_OFFSET_SIZE.
    #[error("{0}")]
    TooLarge(String),
    /// The log failed: NOT_COORDINATOR (Kafka's mapping of KAFKA_STORAGE_ERROR).
    #[error("{0}")]
    Storage(String),
    /// A transaction's producer was fenced by a newer epoch: PRODUCER_FENCED.
    #[error("{0}")]
    Fenced(String),
}

impl WriteError {
    pub fn code(&self) -> i16 {
        match self {
            WriteError::NotLeader | WriteError::Storage(_) => codes::NOT_COORDINATOR,
            WriteError::Timeout(_) => codes::COORDINATOR_NOT_AVAILABLE,
            WriteError::TooLarge(_) => codes::INVALID_COMMIT_OFFSET_SIZE,
            WriteError::Fenced(_) => crate::cluster::state::PRODUCER_FENCED,
        }
    }
}

impl From<RecordError> for WriteError {
    fn from(e: RecordError) -> Self {
        WriteError::TooLarge(e.to_string())
    }
}

/// One leadership of one offsets partition.
#[derive(Debug)]
pub struct Tenure {
    pub partition: i32,
    pub epoch: i32,
    log: Arc<PartitionLog>,
    /// Cancelled when the leadership ends: waiting writes answer NOT_COORDINATOR.
    ended: CancellationToken,
    /// Serialises appends (and a compaction's snapshot with them).
    write: tokio::sync::Mutex<()>,
    offsets: Mutex<OffsetMap>,
    compacting: AtomicBool,
}

impl Tenure {
    /// Reads the partition's log from its start to its end and replays it. Blocking.
    pub fn load(partition: i32, epoch: i32, log: Arc<PartitionLog>) -> Result<Tenure, String> {
        let mut map = OffsetMap::default();
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        let mut at = start;
        let mut records = 0usize;
        while at < end {
            let read = log
                .read_for_replica(at, LOAD_CHUNK)
                .map_err(|e| format!("reading from offset {at}: {e}"))?;
            if read.records.is_empty() {
                return Err(format!("the log ends at {at}, before its end offset {end}"));
            }
            let decoded = records::decode_log(&read.records, at).map_err(|e| e.to_string())?;
            let next = next_offset(&read.records).ok_or("a read returned no whole batch")?;
            for e in decoded {
                match e {
                    Logged::Record {
                        record, txn: None, ..
                    } => map.apply(record),
                    Logged::Record {
                        record,
                        txn: Some(pid),
                        ..
                    } => map.add_txn(pid, [record]),
                    Logged::Marker {
                        producer_id,
                        commit,
                    } => {
                        let txn = map.take_txn(producer_id);
                        if commit {
                            txn.into_iter().for_each(|r| map.apply(r));
                        }
                    }
                }
                records += 1;
            }
            at = next.max(at + 1);
        }
        tracing::info!(
            partition,
            epoch,
            log_start = start,
            log_end = end,
            records,
            offsets = map.live(),
            groups = map.groups().count(),
            "offsets partition loaded"
        );
        Ok(Tenure {
            partition,
            epoch,
            log,
            ended: CancellationToken::new(),
            write: tokio::sync::Mutex::new(()),
            offsets: Mutex::new(map),
            compacting: AtomicBool::new(false),
        })
    }

    /// Ends this tenure: waiting writes answer NOT_COORDINATOR, later ones are refused.
    pub fn end(&self) {
        self.ended.cancel();
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    fn lock(&self) -> MutexGuard<'_, OffsetMap> {
        // Every update of the map is a single apply/stage; a panic elsewhere leaves it whole.
        self.offsets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The committed offsets, with every replicated commit applied.
    pub fn view<R>(&self, f: impl FnOnce(&OffsetMap) -> R) -> R {
        let mut map = self.lock();
        map.materialize(self.log.high_watermark());
        f(&map)
    }

    /// Appends the records `build` chooses (it sees the offsets as of the log end, staged
    /// commits included, under the write lock: a read-modify-write such as "tombstone every
    /// offset of this group" cannot miss a commit appended meanwhile), then waits until they
    /// are replicated, at most `timeout`. Returns how many records were written (0: `build`
    /// chose none, nothing waited for).
    pub async fn write(
        &self,
        build: impl FnOnce(&OffsetMap) -> Vec<OffsetRecord>,
        timeout: Duration,
    ) -> Result<usize, WriteError> {
        let (last, n) = {
            let _serial = self.write.lock().await;
            if self.is_ended() {
                return Err(WriteError::NotLeader);
            }
            let records = build(&self.lock());
            if records.is_empty() {
                return Ok(0);
            }
            let n = records.len();
            let last = self.append(records)?;
            (last, n)
        };
        self.await_replicated(last, timeout).await?;
        Ok(n)
    }

    /// Appends the offsets of producer `producer_id`'s transaction (TxnOffsetCommit) as one
    /// transactional batch and waits until it is replicated; they count once the COMMIT
    /// marker follows ([`Tenure::end_txn`]).
    pub async fn write_txn(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        records: Vec<OffsetRecord>,
        timeout: Duration,
    ) -> Result<(), WriteError> {
        let last = {
            let _serial = self.write.lock().await;
            if self.is_ended() {
                return Err(WriteError::NotLeader);
            }
            let batch = records::encode_txn_batch(&records, now_ms(), producer_id, producer_epoch)?;
            let info = match self.log.append_txn_batch(batch, self.epoch) {
                Err(e @ LogError::InvalidProducerEpoch { .. }) => {
                    return Err(WriteError::Fenced(e.to_string()))
                }
                other => appended(other)?,
            };
            self.lock().add_txn(producer_id, records);
            info.last_offset
        };
        self.await_replicated(last, timeout).await
    }

    /// Appends a transaction coordinator's marker for producer `producer_id`: its offsets
    /// written in the transaction count from now (COMMIT, visible once the marker is
    /// replicated) or are dropped (ABORT).
    pub async fn end_txn(
        &self,
        producer_id: i64,
        commit: bool,
        marker: bytes::Bytes,
        timeout: Duration,
    ) -> Result<(), WriteError> {
        let last = {
            let _serial = self.write.lock().await;
            if self.is_ended() {
                return Err(WriteError::NotLeader);
            }
            let info = match self.log.append_marker(marker, self.epoch) {
                // A newer epoch of the producer, or a newer coordinator, wrote here: this
                // transaction ended already.
                Err(LogError::InvalidProducerEpoch { .. } | LogError::CoordinatorFenced { .. }) => {
                    return Ok(())
                }
                other => appended(other)?,
            };
            let mut map = self.lock();
            let txn = map.take_txn(producer_id);
            if commit {
                map.stage(info.last_offset, txn);
            }
            info.last_offset
        };
        self.await_replicated(last, timeout).await
    }

    /// Appends one batch and stages it. Under the write lock.
    fn append(&self, records: Vec<OffsetRecord>) -> Result<i64, WriteError> {
        let batch = records::encode_batch(&records, now_ms())?;
        let info = appended(self.log.append_in_epoch(batch, self.epoch))?;
        self.lock().stage(info.last_offset, records);
        Ok(info.last_offset)
    }

    async fn await_replicated(&self, last: i64, timeout: Duration) -> Result<(), WriteError> {
        tokio::select! {
            _ = self.ended.cancelled() => Err(WriteError::NotLeader),
            _ = tokio::time::sleep(timeout) => Err(WriteError::Timeout(timeout)),
            r = self.log.wait_high_watermark(last) => {
                r.map_err(|e| WriteError::Storage(e.to_string()))?;
                self.lock().materialize(self.log.high_watermark());
                Ok(())
            }
        }
    }

    /// Whether the log has grown well past the live offsets (see [`compaction_due`]).
    pub fn compaction_due(&self, min_records: i64) -> bool {
        let live = self.lock().live_records();
        compaction_due(
            self.log.log_start_offset(),
            self.log.log_end_offset(),
            live,
            min_records,
        )
    }

    /// Rewrites every live offset at the log end and, once that is replicated, moves the log
    /// start to it. One at a time per tenure; a failure leaves the log as it was (an extra
    /// copy of the live offsets at worst) and is retried at a later commit.
    pub async fn compact(self: &Arc<Self>, timeout: Duration) {
        if self.compacting.swap(true, Ordering::SeqCst) {
            return;
        }
        let result = self.compact_once(timeout).await;
        self.compacting.store(false, Ordering::SeqCst);
        match result {
            Ok((from, to)) => tracing::info!(
                partition = self.partition,
                log_start_before = from,
                log_start = to,
                "offsets partition compacted"
            ),
            Err(e) => {
                tracing::warn!(partition = self.partition, error = %e, "offsets partition compaction failed; retried later")
            }
        }
    }

    async fn compact_once(&self, timeout: Duration) -> Result<(i64, i64), WriteError> {
        let before = self.log.log_start_offset();
        let (first, last) = {
            let _serial = self.write.lock().await;
            if self.is_ended() {
                return Err(WriteError::NotLeader);
            }
            // The offsets of open transactions are only in their batches, which the new log
            // start would drop: wait until every transaction here has ended.
            if self.lock().has_open_txns() {
                return Ok((before, before));
            }
            let snapshot = self.lock().snapshot();
            let first = self.log.log_end_offset();
            let mut last = first - 1;
            for chunk in chunks(snapshot) {
                last = self.append(chunk)?;
            }
            (first, last)
        };
        if last < first {
            // Nothing is live: everything before the log end can go.
            self.await_replicated(first - 1, timeout).await?;
        } else {
            self.await_replicated(last, timeout).await?;
        }
        let log = Arc::clone(&self.log);
        let start = tokio::task::spawn_blocking(move || log.delete_records(first))
            .await
            .map_err(|e| WriteError::Storage(e.to_string()))?
            .map_err(|e| WriteError::Storage(e.to_string()))?;
        Ok((before, start))
    }
}

/// What an append to the offsets partition means for a write: where it landed, or the
/// write's error (a leadership lost since is NOT_COORDINATOR).
fn appended(r: Result<AppendOutcome, LogError>) -> Result<crate::log::AppendInfo, WriteError> {
    match r {
        Ok(AppendOutcome::Appended(info) | AppendOutcome::Duplicate(info)) => Ok(info),
        Err(LogError::Fenced { .. }) => Err(WriteError::NotLeader),
        Err(e @ LogError::MessageTooLarge { .. }) => Err(WriteError::TooLarge(e.to_string())),
        Err(e) => Err(WriteError::Storage(e.to_string())),
    }
}

/// Splits a snapshot into batches of about [`SNAPSHOT_BATCH_BYTES`].
pub(super) fn chunks(records: Vec<OffsetRecord>) -> Vec<Vec<OffsetRecord>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for r in records {
        let size = records::approximate_size(&r);
        if !current.is_empty() && bytes + size > SNAPSHOT_BATCH_BYTES {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(r);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The offset after the last whole batch of `bytes` (batches as the log returns them).
fn next_offset(bytes: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut next = None;
    while pos + 61 <= bytes.len() {
        let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().ok()?);
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().ok()?);
        let delta = i32::from_be_bytes(bytes[pos + 23..pos + 27].try_into().ok()?);
        let size = usize::try_from(len).ok()?.checked_add(12)?;
        if pos + size > bytes.len() {
            break;
        }
        next = Some(base + i64::from(delta) + 1);
        pos += size;
    }
    next
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::group::offsets::StoredOffset;
    use crate::log::LogConfig;

    fn commit(group: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.into(),
            topic: "t".into(),
            partition,
            value: StoredOffset {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: offset,
            },
        }
    }

    fn open(dir: &std::path::Path) -> Arc<PartitionLog> {
        let log = PartitionLog::open(dir.to_path_buf(), LogConfig::default()).unwrap();
        log.become_leader(1).unwrap();
        Arc::new(log)
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn commits_written_are_loaded_back_by_the_next_leader() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path());
            let t = Tenure::load(0, 1, Arc::clone(&log)).unwrap();
            for i in 0..5 {
                let n = t
                    .write(|_| vec![commit("g", 0, i), commit("h", 1, i * 10)], T)
                    .await
                    .unwrap();
                assert_eq!(n, 2);
            }
            // Acknowledged means visible.
            assert_eq!(t.view(|m| m.get("g", "t", 0).unwrap().offset), 4);
            let n = t.write(|m| m.group_tombstones("h"), T).await.unwrap();
            assert_eq!(n, 1);
            assert_eq!(t.write(|_| Vec::new(), T).await.unwrap(), 0);
            log.flush().unwrap();
        }
        let log = open(dir.path());
        let t = Tenure::load(0, 2, log).unwrap();
        t.view(|m| {
            assert_eq!(m.get("g", "t", 0).unwrap().offset, 4);
            assert!(!m.has_group("h"));
            assert_eq!(m.live(), 1);
        });
    }

    #[tokio::test]
    async fn an_ended_tenure_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let t = Tenure::load(0, 1, Arc::clone(&log)).unwrap();
        t.end();
        let e = t.write(|_| vec![commit("g", 0, 1)], T).await.unwrap_err();
        assert_eq!(e.code(), codes::NOT_COORDINATOR);
        // The log moved to a later leader epoch: a stale tenure cannot append either.
        let stale = Tenure::load(0, 0, Arc::clone(&log)).unwrap();
        let e = stale
            .write(|_| vec![commit("g", 0, 1)], T)
            .await
            .unwrap_err();
        assert!(matches!(e, WriteError::NotLeader), "{e:?}");
        assert_eq!(log.log_end_offset(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_not_replicated_in_time_is_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        // A follower in the ISR that never fetches: the high watermark cannot pass.
        log.set_hw_bound(0);
        let t = Tenure::load(0, 1, Arc::clone(&log)).unwrap();
        let e = t.write(|_| vec![commit("g", 0, 1)], T).await.unwrap_err();
        assert_eq!(e.code(), codes::COORDINATOR_NOT_AVAILABLE);
        assert_eq!(t.view(|m| m.get("g", "t", 0).cloned()), None);
        // Replicated later: the next view applies it.
        log.set_hw_bound(i64::MAX);
        log.flush().unwrap();
        assert_eq!(t.view(|m| m.get("g", "t", 0).unwrap().offset), 1);
    }

    #[tokio::test]
    async fn compaction_moves_the_log_start_and_keeps_every_live_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let t = Arc::new(Tenure::load(0, 1, Arc::clone(&log)).unwrap());
        for i in 0..300 {
            t.write(|_| vec![commit("g", (i % 3) as i32, i)], T)
                .await
                .unwrap();
        }
        t.write(|_| vec![commit("gone", 0, 1)], T).await.unwrap();
        t.write(|m| m.group_tombstones("gone"), T).await.unwrap();
        assert!(t.compaction_due(100));
        assert!(!t.compaction_due(1_000));
        t.compact(T).await;
        assert_eq!(log.log_start_offset(), 302);
        assert_eq!(log.log_end_offset(), 305);
        assert!(!t.compaction_due(1));
        t.write(|_| vec![commit("g", 0, 1000)], T).await.unwrap();
        log.flush().unwrap();
        let reloaded = Tenure::load(0, 1, log).unwrap();
        reloaded.view(|m| {
            assert_eq!(m.live(), 3);
            assert_eq!(m.get("g", "t", 0).unwrap().offset, 1000);
            assert_eq!(m.get("g", "t", 1).unwrap().offset, 298);
            assert_eq!(m.get("g", "t", 2).unwrap().offset, 299);
        });
    }

    #[test]
    fn snapshots_are_split_into_bounded_batches() {
        let records: Vec<OffsetRecord> = (0..10_000).map(|i| commit("g", i, 1)).collect();
        let parts = chunks(records);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 10_000);
        for p in &parts {
            let bytes = records::encode_batch(p, 0).unwrap().len();
            assert!(bytes < 1 << 20, "{bytes} bytes");
        }
    }
}
