//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! metadata of its last [`MAX_CACHED_BATCHES`] batches, so a retried batch is recognised and
//! answered with the offsets it got the first time; and the snapshot file that carries it
//! across restarts.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;
use super::txn::{AbortedTxn, Marker};
use super::LogError;

/// Kafka keeps the metadata of the last five batches per producer (a producer has at most
/// five requests in flight with idempotence on).
pub const MAX_CACHED_BATCHES: usize = 5;
/// A producer that appended nothing for this long is forgotten (Kafka's
/// `producer.id.expiration.ms` default), so state does not grow with every producer ever seen.
pub const PRODUCER_EXPIRATION_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// The LogAppendTime given to the batch, or -1.
    pub append_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// When the producer last appended (wall clock; the batch timestamp during recovery).
    #[serde(default)]
    pub last_ms: i64,
    /// The first offset of the producer's open transaction on this partition: what the last
    /// stable offset may not pass until its marker is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_first: Option<i64>,
    /// The epoch of the coordinator that wrote the producer's last marker here: a marker of
    /// an older one (a coordinator that lost its role, late) is refused.
    #[serde(default = "no_epoch", skip_serializing_if = "is_no_epoch")]
    pub coordinator_epoch: i32,
}

fn no_epoch() -> i32 {
    -1
}

fn is_no_epoch(e: &i32) -> bool {
    *e == -1
}

/// What the sequence check decided for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// Append it.
    Append,
    /// Already in the log with this metadata.
    Duplicate(BatchMeta),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStates {
    pub producers: BTreeMap<i64, ProducerEntry>,
    /// Every aborted transaction still in the log, by the offset of its ABORT marker
    /// (`read_committed` fetches are told which records to skip). Trimmed as the log start
    /// moves past them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aborted: Vec<AbortedTxn>,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

/// First line of a producer snapshot, before its CRC-32C (8 hex digits) and a newline; the
/// JSON of [`ProducerStates`] follows. The checksum is what makes the file trustworthy: JSON
/// alone still parses after many single-byte flips (a digit of a sequence number, or the name
/// of the defaulted `last_ms` field), and a wrong state either fences a producer's next batch
/// or lets its retry be appended twice.
const SNAPSHOT_MAGIC: &[u8] = b"sluice-producers v1 crc32c ";

/// Why a snapshot file cannot be used (recovery then rebuilds the state from batch headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Plain JSON written by versions before the checksum: it cannot be verified.
    Unverified,
    /// Cut, flipped, extended or emptied.
    Damaged(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Unverified => {
                f.write_str("a snapshot of an earlier version, without a checksum")
            }
            SnapshotError::Damaged(why) => f.write_str(why),
        }
    }
}

impl ProducerStates {
    /// The snapshot file's bytes: the header line with the CRC-32C of the JSON, then the JSON.
    pub fn to_snapshot(&self) -> Result<Vec<u8>, serde_json::Error> {
        let json = serde_json::to_vec(self)?;
        let mut out = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 9 + json.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(format!("{:08x}\n", crc32c::crc32c(&json)).as_bytes());
        out.extend_from_slice(&json);
        Ok(out)
    }

    /// Reads a snapshot file written by [`ProducerStates::to_snapshot`]; anything else, or a
    /// checksum that does not match, is refused.
    pub fn from_snapshot(bytes: &[u8]) -> Result<ProducerStates, SnapshotError> {
        let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC) else {
            if bytes.first() == Some(&b'{')
                && serde_json::from_slice::<ProducerStates>(bytes).is_ok()
            {
                return Err(SnapshotError::Unverified);
            }
            return Err(SnapshotError::Damaged("no snapshot header".into()));
        };
        let (crc, json) = match (rest.get(..8), rest.get(8), rest.get(9..)) {
            (Some(crc), Some(b'\n'), Some(json)) => (crc, json),
            _ => return Err(SnapshotError::Damaged("header cut short".into())),
        };
        let stored = std::str::from_utf8(crc)
            .ok()
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .ok_or_else(|| SnapshotError::Damaged("checksum is not hexadecimal".into()))?;
        let actual = crc32c::crc32c(json);
        if stored != actual {
            return Err(SnapshotError::Damaged(format!(
                "checksum {actual:08x} does not match the stored {stored:08x}"
            )));
        }
        serde_json::from_slice(json).map_err(|e| SnapshotError::Damaged(e.to_string()))
    }

    /// Checks an idempotent batch against the producer's state without changing it.
    pub fn check(&self, h: &BatchHeader) -> Result<SeqCheck, LogError> {
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its state expired with retention): accept any sequence,
            // as Kafka does.
            return Ok(SeqCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                current: entry.epoch,
                got: h.producer_epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            if h.base_sequence != 0 {
                return Err(LogError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            return Ok(SeqCheck::Append);
        }
        let last_seq = h.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(SeqCheck::Duplicate(*dup));
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if entry.batches.is_empty() || h.base_sequence == expected {
            Ok(SeqCheck::Append)
        } else {
            Err(LogError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected,
                got: h.base_sequence,
            })
        }
    }

    /// Records an appended (or recovered) idempotent batch whose base offset is assigned.
    pub fn record(&mut self, h: &BatchHeader, append_time: i64, now_ms: i64) {
        if h.base_sequence < 0 {
            // No sequence: a transactional batch a coordinator wrote (offsets of a
            // transaction), which no retry can repeat.
            self.begin_txn(h, now_ms);
            return;
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            append_time,
        };
        let entry = self.entry(h, now_ms);
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(meta);
        if h.is_transactional() && entry.txn_first.is_none() {
            entry.txn_first = Some(h.base_offset);
        }
    }

    fn entry(&mut self, h: &BatchHeader, now_ms: i64) -> &mut ProducerEntry {
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_ms: now_ms,
                txn_first: None,
                coordinator_epoch: -1,
            });
        entry.last_ms = entry.last_ms.max(now_ms);
        entry
    }

    /// Records a transactional batch without a sequence that a coordinator appended: the
    /// producer's transaction on this partition is open from it.
    pub fn begin_txn(&mut self, h: &BatchHeader, now_ms: i64) {
        let entry = self.entry(h, now_ms);
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if h.is_transactional() && entry.txn_first.is_none() {
            entry.txn_first = Some(h.base_offset);
        }
    }

    /// Checks a batch a coordinator asks to append (a marker, with the epoch of the
    /// coordinator that wrote it, or a transaction's offsets): it may not come from a producer
    /// epoch older than the producer's here, nor a marker from a coordinator older than the one
    /// that wrote the producer's last marker (a coordinator that lost its role, whose late
    /// marker could otherwise end the producer's next transaction).
    pub fn check_marker(
        &self,
        h: &BatchHeader,
        coordinator_epoch: Option<i32>,
    ) -> Result<(), LogError> {
        let Some(e) = self.producers.get(&h.producer_id) else {
            return Ok(());
        };
        if h.producer_epoch < e.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                current: e.epoch,
                got: h.producer_epoch,
            });
        }
        match coordinator_epoch {
            Some(c) if c < e.coordinator_epoch => Err(LogError::CoordinatorFenced {
                producer_id: h.producer_id,
                current: e.coordinator_epoch,
                got: c,
            }),
            _ => Ok(()),
        }
    }

    /// Records an appended (or recovered) marker at `h.base_offset`: the producer's open
    /// transaction on this partition ends; an aborted one is remembered. A marker of a newer
    /// epoch (the coordinator aborted a transaction that timed out, fencing the producer)
    /// moves the producer to it, so the fenced producer's next batch is refused.
    pub fn record_marker(
        &mut self,
        h: &BatchHeader,
        marker: Marker,
        coordinator_epoch: i32,
        now_ms: i64,
    ) {
        let entry = self.entry(h, now_ms);
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(coordinator_epoch);
        if let (Some(first), Marker::Abort) = (entry.txn_first.take(), marker) {
            self.aborted.push(AbortedTxn {
                producer_id: h.producer_id,
                first_offset: first,
                last_offset: h.base_offset,
            });
        }
    }

    /// The first offset of the earliest transaction still open on this partition.
    pub fn first_open_txn(&self) -> Option<i64> {
        self.producers.values().filter_map(|e| e.txn_first).min()
    }

    /// The aborted transactions with records between `from` and `to` (exclusive).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let i = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[i..]
            .iter()
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly before the log start (retention removed them).
    pub fn trim_aborted(&mut self, log_start: i64) {
        let i = self.aborted.partition_point(|a| a.last_offset < log_start);
        self.aborted.drain(..i);
    }

    /// Forgets producers idle for longer than [`PRODUCER_EXPIRATION_MS`]; returns how many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        let cutoff = now_ms.saturating_sub(PRODUCER_EXPIRATION_MS);
        // A producer with an open transaction stays: it holds the last stable offset back
        // until its coordinator ends the transaction.
        self.producers
            .retain(|_, e| e.last_ms >= cutoff || e.txn_first.is_some());
        before - self.producers.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, count: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            size: 100,
            partition_leader_epoch: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn snapshot_round_trips_and_refuses_any_damage() {
        let mut s = ProducerStates::default();
        s.record(&h(7, 2, 10, 3, 40), -1, 1_700_000_000_000);
        let bytes = s.to_snapshot().unwrap();
        assert_eq!(ProducerStates::from_snapshot(&bytes).unwrap(), s);
        // Every single-byte change is caught, including the ones JSON alone would accept (a
        // digit of a sequence, the name of the defaulted `last_ms`).
        for i in 0..bytes.len() {
            for bit in [0x01, 0x40] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                assert!(
                    ProducerStates::from_snapshot(&b).is_err(),
                    "byte {i} ^ {bit:#x} accepted"
                );
            }
        }
        for cut in 0..bytes.len() {
            assert!(
                ProducerStates::from_snapshot(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"garbage");
        assert!(ProducerStates::from_snapshot(&longer).is_err());
        // The plain JSON of earlier versions is recognised but not trusted.
        let legacy = serde_json::to_vec(&s).unwrap();
        assert_eq!(
            ProducerStates::from_snapshot(&legacy),
            Err(SnapshotError::Unverified)
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut s = ProducerStates::default();
        s.record(&h(1, 0, i32::MAX - 1, 2, 0), -1, 0);
        assert_eq!(s.check(&h(1, 0, 0, 1, 2)).unwrap(), SeqCheck::Append);
        assert!(s.check(&h(1, 0, 1, 1, 2)).is_err());
    }

    #[test]
    fn only_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..6 {
            s.record(&h(1, 0, i, 1, i64::from(i)), -1, 0);
        }
        assert!(matches!(
            s.check(&h(1, 0, 5, 1, 0)).unwrap(),
            SeqCheck::Duplicate(_)
        ));
        assert!(matches!(
            s.check(&h(1, 0, 1, 1, 0)).unwrap(),
            SeqCheck::Duplicate(_)
        ));
        // Older than the cache: no longer recognised, and not the next sequence either.
        assert!(s.check(&h(1, 0, 0, 1, 0)).is_err());
    }

    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerStates::default();
        s.record(&h(1, 0, 0, 1, 0), -1, 1_000);
        s.record(&h(2, 0, 0, 1, 1), -1, PRODUCER_EXPIRATION_MS + 5_000);
        assert_eq!(s.expire(PRODUCER_EXPIRATION_MS + 2_000), 1);
        assert!(!s.producers.contains_key(&1));
        // Forgotten: any sequence is accepted again, as for a new producer.
        assert_eq!(s.check(&h(1, 0, 7, 1, 2)).unwrap(), SeqCheck::Append);
    }
}
