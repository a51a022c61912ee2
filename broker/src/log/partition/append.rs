//! The write path of a partition: validation (sizes, magic, CRC-32C), idempotent-producer
//! sequence checks, offset assignment, segment roll, and the `pwrite`. Also the copy path of a
//! partition move (`append_replicated`: batches keep their offsets) and fencing at a handover.
//!
//! An append moves the log end only; making it durable and visible (the high watermark) is
//! `durability.rs`'s job, asked for at the end of each append.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::{lock, snapshot_path, state_err, Inner, PartitionLog};
use crate::log::batch;
use crate::log::files::remove_if_exists;
use crate::log::producer::{ProducerStates, SeqCheck};
use crate::log::segment::Segment;
use crate::log::txn;
use crate::log::{now_ms, AppendInfo, AppendOutcome, FsyncPolicy, LogError, TimestampType};

/// Who asks for an append: what it is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A producer: sequence checks, no control batch.
    Client,
    /// A transaction coordinator's marker, with the coordinator's epoch.
    Marker(txn::Marker, i32),
    /// A coordinator's transactional batch without sequences (a transaction's offsets).
    Coordinator,
}

/// The leading bytes of a batch that an append rewrites (base offset and partition leader
/// epoch, `batch::rewrite_offset_and_epoch`); a batch header is longer, so every batch has them.
const PATCHED: usize = 16;

/// For this long after this broker began to lead a partition, a batch of a producer it has no
/// state for must start at sequence 0. A producer's sequences are per partition, so its first
/// batch here starts at 0, and every producer that wrote before is known from the replicated
/// log. One that is not, with a later sequence, saw its earlier batches refused (the client
/// learned of the new leader from a broker that applied the change sooner than this one did,
/// and its first batches arrived while this broker still thought another led) and pipelined
/// the next ones behind them. Appending those would leave the refused batches' retries behind
/// the sequence, refused for good; OUT_OF_ORDER_SEQUENCE_NUMBER on a batch that does not come
/// next makes Kafka clients retry it after the earlier ones. Later in a tenure an unknown
/// producer may start anywhere, as on Kafka (its state expired, or retention removed its
/// batches).
pub(crate) const NEW_LEADER_SEQUENCE_WINDOW_MS: i64 = 10_000;
const _: () = assert!(PATCHED <= batch::HEADER_LEN);

impl PartitionLog {
    /// Validates `records` (one or more v2 record batches exactly as the producer sent them:
    /// sizes, magic, CRC-32C, idempotent-producer sequence), assigns offsets by rewriting each
    /// batch's base offset, and appends them. Returns once the bytes are written to the file
    /// (page cache), not fsynced.
    pub fn append(&self, records: Bytes) -> Result<AppendOutcome, LogError> {
        self.append_checked(records, None, Origin::Client)
    }

    /// Appends a transaction marker (`txn::build_marker`) that a transaction coordinator sends
    /// this partition's leader: the producer's open transaction here ends, and the last
    /// stable offset may pass it. Only while this log's leader epoch is `epoch`, as
    /// [`PartitionLog::append_in_epoch`]. A marker of an epoch older than the producer's is
    /// refused ([`LogError::InvalidProducerEpoch`]).
    pub fn append_marker(&self, marker: Bytes, epoch: i32) -> Result<AppendOutcome, LogError> {
        let h = batch::validate_marker(&marker)?;
        let (kind, coordinator_epoch) =
            txn::parse_marker(&marker).ok_or_else(|| LogError::CorruptBatch {
                reason: format!(
                    "the control batch of producer {} is no COMMIT or ABORT marker",
                    h.producer_id
                ),
            })?;
        self.append_checked(marker, Some(epoch), Origin::Marker(kind, coordinator_epoch))
    }

    /// Appends a transactional batch without sequence numbers that a coordinator writes for
    /// a producer (the offsets of a transaction, TxnOffsetCommit), while this log's leader
    /// epoch is `epoch`: the producer's transaction here is open from it until its marker.
    pub fn append_txn_batch(&self, batch: Bytes, epoch: i32) -> Result<AppendOutcome, LogError> {
        self.append_checked(batch, Some(epoch), Origin::Coordinator)
    }

    /// [`PartitionLog::append`], but only while this log's leader epoch is `epoch`: checked
    /// under the lock the append holds, so the batch is stamped with `epoch` or not written
    /// ([`LogError::Fenced`]). For a writer that must not append after its leadership ended
    /// (the group coordinator): a batch stamped with the next leader's epoch could survive
    /// follower truncation.
    pub fn append_in_epoch(&self, records: Bytes, epoch: i32) -> Result<AppendOutcome, LogError> {
        self.append_checked(records, Some(epoch), Origin::Client)
    }

    /// The append behind all of them.
    fn append_checked(
        &self,
        records: Bytes,
        expected_epoch: Option<i32>,
        origin: Origin,
    ) -> Result<AppendOutcome, LogError> {
        let sh = &self.shared;
        if sh.failed.load(Ordering::SeqCst) {
            return Err(state_err(
                &self.dir,
                "the partition is closed (deleted, or an earlier fsync failed)",
            ));
        }
        let (max, compacted) = {
            let inner = lock(&sh.inner);
            (inner.config.max_message_bytes, inner.config.cleanup.compact)
        };
        let mut headers = match origin {
            Origin::Marker(..) => batch::validate_copied(&records)?,
            Origin::Client | Origin::Coordinator => batch::validate_payload(&records, max)?,
        };
        if origin == Origin::Coordinator
            && headers
                .iter()
                .any(|(_, h)| !h.is_transactional() || h.producer_id < 0)
        {
            return Err(LogError::CorruptBatch {
                reason: "a coordinator's batch must be transactional with a producer id".into(),
            });
        }
        if compacted && origin == Origin::Client {
            self.check_keys(&records, &headers)?;
        }
        let now = now_ms();

        let mut inner = lock(&sh.inner);
        // Checked under the lock that `fence` takes: no append slips past a handover.
        if sh.fenced.load(Ordering::SeqCst) {
            return Err(LogError::Fenced {
                path: self.dir.clone(),
            });
        }
        let epoch = sh.leader_epoch.load(Ordering::SeqCst);
        if expected_epoch.is_some_and(|e| e != epoch) {
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
            if let Origin::Marker(kind, coordinator_epoch) = origin {
                scratch.check_marker(h, Some(coordinator_epoch))?;
                scratch.record_marker(h, kind, coordinator_epoch, now);
            } else if origin == Origin::Coordinator {
                scratch.check_marker(h, None)?;
                scratch.begin_txn(h, now);
            } else if h.is_idempotent() {
                if h.base_sequence > 0
                    && !scratch.producers.contains_key(&h.producer_id)
                    && now.saturating_sub(sh.tenure_began_ms.load(Ordering::SeqCst))
                        < NEW_LEADER_SEQUENCE_WINDOW_MS
                {
                    return Err(LogError::SequenceBeforeFirst {
                        producer_id: h.producer_id,
                        got: h.base_sequence,
                    });
                }
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

        self.maybe_roll(&mut inner, records.len() as u64, count, now)
            .map_err(|e| self.write_failed(e))?;

        // The assigned base offset and leader epoch go into a copy of each batch's first 16
        // bytes; the rest is written from the request buffer as it came (neither field is
        // covered by the CRC). Only LogAppendTime, which changes CRC-covered fields, copies
        // the whole payload.
        let stamped = (append_time >= 0).then(|| {
            let mut buf = BytesMut::from(&records[..]);
            for (pos, h) in headers.iter_mut() {
                let b = &mut buf[*pos..*pos + h.size];
                batch::rewrite_offset_and_epoch(b, h.base_offset, epoch);
                batch::stamp_log_append_time(b, append_time);
                h.max_timestamp = append_time;
            }
            buf
        });
        let prefixes: Vec<[u8; PATCHED]> = match stamped {
            Some(_) => Vec::new(),
            None => headers
                .iter()
                .map(|(pos, h)| {
                    let mut p = [0u8; PATCHED];
                    p.copy_from_slice(&records[*pos..*pos + PATCHED]);
                    batch::rewrite_offset_and_epoch(&mut p, h.base_offset, epoch);
                    p
                })
                .collect(),
        };
        let parts: Vec<&[u8]> = match &stamped {
            Some(buf) => vec![&buf[..]],
            None => headers
                .iter()
                .zip(&prefixes)
                .flat_map(|((pos, h), p)| [&p[..], &records[*pos + PATCHED..*pos + h.size]])
                .collect(),
        };
        let interval = inner.config.index_interval_bytes;
        let written_from = inner.active().size;
        inner
            .active()
            .append(&parts, &headers, interval, now)
            .map_err(|e| self.write_failed(e))?;
        if inner.config.fsync == FsyncPolicy::Always {
            // Best effort: if the hint fails, the group commit's fdatasync writes it all.
            if let Err(e) = inner.active().start_writeback(written_from) {
                tracing::debug!(path = %self.dir.display(), error = %e, "sync_file_range failed");
            }
        }

        let base_offset = inner.next_offset;
        inner.next_offset = offset;
        for (k, v) in scratch.producers {
            inner.producers.producers.insert(k, v);
        }
        inner.producers.aborted.append(&mut scratch.aborted);
        if headers.iter().any(|(_, h)| h.is_transactional()) {
            sh.note_open_txns(&inner.producers);
        }
        // Normally recorded when leadership began (`become_leader`); a log used without a
        // leadership (a single node's first epoch) records it with its first batch.
        let epochs = inner
            .epochs
            .assign(epoch, base_offset)
            .then(|| inner.epochs.clone());
        let fsync = inner.config.fsync;
        drop(inner);
        if let Some(e) = epochs {
            self.store_epochs(&e);
        }
        sh.appended(offset, fsync);
        Ok(AppendOutcome::Appended(AppendInfo {
            base_offset,
            last_offset: offset - 1,
            log_append_time: append_time,
            log_start_offset: log_start,
        }))
    }

    /// A compacted topic keeps the latest record of each key, so a record without a key has
    /// no place in it: refused (INVALID_RECORD), as Kafka does.
    fn check_keys(
        &self,
        records: &[u8],
        headers: &[(usize, batch::BatchHeader)],
    ) -> Result<(), LogError> {
        for (pos, h) in headers {
            let mut keyless = None;
            crate::log::compaction::for_each_record(&records[*pos..*pos + h.size], h, |r, _| {
                if r.key.is_none() && keyless.is_none() {
                    keyless = Some(r.offset - h.base_offset);
                }
            })?;
            if let Some(i) = keyless {
                return Err(LogError::InvalidRecord {
                    reason: format!(
                        "record {i} of a batch has no key, and partition {} is of a compacted topic (cleanup.policy=compact), which keeps the latest record of each key",
                        self.dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Appends batches copied from the leader's log of this partition (a follower), exactly as
    /// they are there: offsets, leader epochs and timestamps are kept, the idempotent-producer
    /// state is rebuilt from them (so a producer's retry after a leader change is still
    /// recognised as a duplicate) and the epoch cache extended. The first batch must start at
    /// this log's end.
    pub fn append_replicated(&self, records: Bytes) -> Result<i64, LogError> {
        let sh = &self.shared;
        let headers = batch::validate_copied(&records)?;
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
            .append(&[&records[..]], &headers, interval, now)
            .map_err(|e| self.write_failed(e))?;
        let log_append_time = inner.config.timestamp_type == TimestampType::LogAppendTime;
        for (pos, h) in headers.iter().filter(|(_, h)| h.is_idempotent()) {
            if h.is_control() {
                if let Some((kind, epoch)) = txn::parse_marker(&records[*pos..*pos + h.size]) {
                    inner.producers.record_marker(h, kind, epoch, now);
                }
                continue;
            }
            let append_time = if log_append_time { h.max_timestamp } else { -1 };
            inner.producers.record(h, append_time, now);
        }
        if headers.iter().any(|(_, h)| h.is_transactional()) {
            sh.note_open_txns(&inner.producers);
        }
        let mut epochs_changed = false;
        for (_, h) in &headers {
            epochs_changed |= inner.epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        let epochs = epochs_changed.then(|| inner.epochs.clone());
        inner.next_offset = expected;
        let fsync = inner.config.fsync;
        drop(inner);
        if let Some(e) = epochs {
            self.store_epochs(&e);
        }
        sh.appended(expected, fsync);
        Ok(expected)
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
        // Saturating: the first append time of a recovered segment is its first batch's
        // timestamp, which a producer or damage may set to anything (i64::MIN overflowed).
        let old = a
            .first_append_ms
            .is_some_and(|t| now.saturating_sub(t) >= seg_ms);
        let overflow =
            next + count - a.base > i64::from(u32::MAX) || a.size + incoming > u64::from(u32::MAX);
        if !(full || old || overflow) {
            return Ok(());
        }
        // Everything that can fail (a full disk) comes before the active segment is sealed: a
        // failed roll must leave it active and unchanged, since a sealed segment keeps its
        // indexes only in files and must never be appended to.
        let snap = inner
            .producers
            .to_snapshot()
            .map_err(|e| LogError::Metadata {
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
}
