//! Log compaction's pure half: the records of a stored batch as the cleaner sees them (offset,
//! timestamp, key, tombstone or not), the digest a key is remembered by, and the rewrite of a
//! batch that keeps only some of its records. No I/O; `partition/compaction.rs` reads the
//! segments and swaps the cleaned ones in.
//!
//! A rewritten batch keeps its header's offsets (base offset, last offset delta), producer
//! fields and timestamps, so offsets stay contiguous from batch to batch, a producer's
//! sequence numbers still line up and the epoch cache still holds; only the record count,
//! the length and the CRC change, as in Kafka's cleaner. A batch with none of its records
//! left stays as an empty batch (61 bytes) rather than leaving a gap in the offsets. Its
//! records are written uncompressed: each record is copied byte for byte (its offset and
//! timestamp deltas are relative to the header, which is kept), and recompressing would cost
//! the cleaner a codec per batch for the few bytes a compacted batch has left.
//!
//! Emptied batches that follow each other join into one empty batch spanning all their
//! offsets ([`joins_empty_run`], [`extend_empty_run`]) when nothing they carry apart from
//! their offsets differs: same producer id and epoch, consecutive sequence numbers (or no
//! producer id), same leader epoch and attributes, not transactional. The joined batch still
//! says what the producer state needs (its last sequence is where the last one ended), offsets
//! stay contiguous, and a key updated over and over costs one empty batch per run between the
//! batches that still hold something, instead of 61 bytes for every batch it was ever
//! written in.
//!
//! Transactions ([`TxnView`]): the records of a committed transaction are compacted like any
//! others (a Kafka Streams changelog written exactly-once is such a topic); those of an aborted
//! one are all removed, leaving empty transactional batches; markers stay whole. Only what lies
//! below the last stable offset is cleaned, as in Kafka, so an open transaction holds the
//! cleaner back until it ends.

use ring::digest;

use super::batch::{self, BatchHeader, HEADER_LEN};
use super::txn::AbortedTxn;
use super::LogError;

/// The attributes' compression bits (0: none).
const CODEC_MASK: i16 = 0x7;
/// The attributes' control-batch bit.
const ATTR_CONTROL: i16 = 1 << 5;
/// The attributes' transactional bit.
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
/// The attributes' timestamp-type bit (set: LogAppendTime, the header's max timestamp is the
/// append time and stands for every record).
const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;

/// A record of a stored batch, as the cleaner judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerRecord<'a> {
    pub offset: i64,
    pub timestamp: i64,
    /// `None`: a record without a key (only in a topic that was not always compacted).
    pub key: Option<&'a [u8]>,
    /// The value is null: a delete marker for its key.
    pub tombstone: bool,
}

/// What the cleaner remembers a key by: the first 16 bytes of its SHA-256 (Kafka's cleaner
/// keeps an MD5, 16 bytes, for the same reason: a bounded entry per key, however long the
/// key).
pub type KeyDigest = [u8; 16];

pub fn key_digest(key: &[u8]) -> KeyDigest {
    let d = digest::digest(&digest::SHA256, key);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

/// Whether a batch is plain: neither a transaction marker nor transactional. Only plain empty
/// batches are joined into runs ([`joins_empty_run`]), since a transactional one's producer
/// fields are what recovery rebuilds the transaction's start from.
pub fn is_cleanable(h: &BatchHeader) -> bool {
    h.attributes & (ATTR_CONTROL | ATTR_TRANSACTIONAL) == 0
}

/// What the cleaner does with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleaning {
    /// Its records are judged by key: a plain batch, or one of a committed transaction.
    ByKey,
    /// Every record goes (the batch stays, empty, for its offsets and producer fields): a
    /// batch of an aborted transaction, which no read_committed reader may ever see and which
    /// must never stand for its key's latest value.
    Aborted,
    /// Kept as it is: a transaction marker (Kafka removes markers once the transaction's
    /// records are gone and `delete.retention.ms` passed; not done here), or a batch at or
    /// past the last stable offset (its transaction may still be open).
    Whole,
}

/// The transactions of a partition as one compaction sees them: the aborted ones (from the
/// producer state) and the last stable offset. The offset is read before the list, so every
/// transaction that ended below it has its abort, if it was aborted, in the list.
#[derive(Debug, Default)]
pub struct TxnView {
    /// Per producer id, the aborted transactions' (first offset, ABORT marker offset).
    aborted: std::collections::HashMap<i64, Vec<(i64, i64)>>,
    last_stable: i64,
}

impl TxnView {
    pub fn new(aborted: &[AbortedTxn], last_stable: i64) -> TxnView {
        let mut by_producer: std::collections::HashMap<i64, Vec<(i64, i64)>> =
            std::collections::HashMap::new();
        for a in aborted {
            by_producer
                .entry(a.producer_id)
                .or_default()
                .push((a.first_offset, a.last_offset));
        }
        TxnView {
            aborted: by_producer,
            last_stable,
        }
    }

    pub fn cleaning(&self, h: &BatchHeader) -> Cleaning {
        if h.attributes & ATTR_CONTROL != 0 || h.last_offset() >= self.last_stable {
            return Cleaning::Whole;
        }
        if h.attributes & ATTR_TRANSACTIONAL == 0 {
            return Cleaning::ByKey;
        }
        // Below the last stable offset a transaction has ended: aborted if a listed abort of
        // its producer spans the batch, committed otherwise.
        let aborted = self.aborted.get(&h.producer_id).is_some_and(|spans| {
            spans
                .iter()
                .any(|&(first, marker)| first <= h.base_offset && h.base_offset < marker)
        });
        if aborted {
            Cleaning::Aborted
        } else {
            Cleaning::ByKey
        }
    }
}

/// Calls `visit` with each record of the whole batch `b` (header `h`) and the record's bytes
/// (its length prefix included), in order. Every length is checked against the batch, so a
/// damaged batch is an error, never a panic.
pub fn for_each_record(
    b: &[u8],
    h: &BatchHeader,
    mut visit: impl FnMut(CleanerRecord<'_>, &[u8]),
) -> Result<(), LogError> {
    let records = b
        .get(HEADER_LEN..h.size)
        .ok_or_else(|| batch::corrupt("batch shorter than its header".into()))?;
    let plain = batch::decompress(h.attributes & CODEC_MASK, records)?;
    let mut pos = 0;
    for _ in 0..h.record_count {
        let start = pos;
        let len = batch::zigzag(&plain, &mut pos, 5)
            .ok_or_else(|| batch::corrupt("record length".into()))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|e| *e <= plain.len())
            .ok_or_else(|| batch::corrupt(format!("record of {len} bytes past the batch end")))?;
        let body = &plain[pos..end];
        let mut p = 1; // attributes
        let ts_delta = batch::zigzag(body, &mut p, 10)
            .ok_or_else(|| batch::corrupt("timestamp delta".into()))?;
        let off_delta =
            batch::zigzag(body, &mut p, 5).ok_or_else(|| batch::corrupt("offset delta".into()))?;
        if !(0..=i64::from(h.last_offset_delta)).contains(&off_delta) {
            return Err(batch::corrupt(format!(
                "record offset delta {off_delta} outside the batch's 0..={}",
                h.last_offset_delta
            )));
        }
        let key = batch::field(body, &mut p)?;
        let value_len =
            batch::zigzag(body, &mut p, 5).ok_or_else(|| batch::corrupt("value length".into()))?;
        visit(
            CleanerRecord {
                offset: h.base_offset.saturating_add(off_delta),
                timestamp: h.first_timestamp.saturating_add(ts_delta),
                key,
                tombstone: value_len < 0,
            },
            &plain[start..end],
        );
        pos = end;
    }
    Ok(())
}

/// The batch `b` (header `h`) with only the records `keep` chooses: `None` when it keeps
/// them all (the batch stays as it is), otherwise the rewritten batch (see the module
/// comment), possibly empty.
pub fn retain(
    b: &[u8],
    h: &BatchHeader,
    mut keep: impl FnMut(&CleanerRecord<'_>) -> bool,
) -> Result<Option<Vec<u8>>, LogError> {
    let mut kept: Vec<u8> = Vec::new();
    let mut count: i32 = 0;
    let mut dropped = false;
    // A CreateTime batch's max timestamp is that of its newest record, which may be gone:
    // the rewritten header claims the newest kept one, and an empty batch none (-1, what a
    // batch without timestamps carries), so a timestamp lookup never lands on a batch without
    // the record it looks for.
    let mut max_timestamp = -1;
    for_each_record(b, h, |r, raw| {
        if keep(&r) {
            kept.extend_from_slice(raw);
            count += 1;
            max_timestamp = max_timestamp.max(r.timestamp);
        } else {
            dropped = true;
        }
    })?;
    if !dropped {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + kept.len());
    out.extend_from_slice(&b[..HEADER_LEN]);
    out.extend_from_slice(&kept);
    let length = (out.len() - batch::LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = h.attributes & !CODEC_MASK;
    out[batch::ATTR_POS..batch::ATTR_POS + 2].copy_from_slice(&attributes.to_be_bytes());
    out[57..61].copy_from_slice(&count.to_be_bytes());
    if h.attributes & ATTR_LOG_APPEND_TIME == 0 {
        out[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[batch::ATTR_POS..]);
    out[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(out))
}

/// Whether the batch `next`, left empty by the cleaner, may join the empty batch `run` that
/// ends just before it (see the module comment).
pub fn joins_empty_run(run: &BatchHeader, next: &BatchHeader) -> bool {
    let attrs = |h: &BatchHeader| h.attributes & !CODEC_MASK;
    let span = next.last_offset() - run.base_offset;
    let sequences_follow = run.producer_id < 0
        || (i64::from(next.base_sequence)
            == i64::from(run.base_sequence) + i64::from(run.last_offset_delta) + 1
            // No wrap of the sequence inside the joined batch.
            && i64::from(run.base_sequence) + span <= i64::from(i32::MAX));
    run.record_count == 0
        && next.record_count == 0
        && is_cleanable(run)
        && is_cleanable(next)
        && attrs(run) & ATTR_TRANSACTIONAL == 0
        && attrs(run) == attrs(next)
        && next.base_offset == run.last_offset().saturating_add(1)
        && span <= i64::from(i32::MAX)
        && run.producer_id == next.producer_id
        && run.producer_epoch == next.producer_epoch
        && run.partition_leader_epoch == next.partition_leader_epoch
        && sequences_follow
}

/// Extends the empty batch `run` (its bytes) over the empty batch `next`, which must join it
/// ([`joins_empty_run`]): its last offset delta reaches `next`'s last offset, a LogAppendTime
/// batch takes the later append time, and the CRC is made again.
pub fn extend_empty_run(run: &mut [u8], next: &BatchHeader) -> Result<(), LogError> {
    let h = batch::parse_header(run)?;
    if !joins_empty_run(&h, next) || run.len() != HEADER_LEN {
        return Err(batch::corrupt(format!(
            "the batch at {} cannot join the empty batch at {}",
            next.base_offset, h.base_offset
        )));
    }
    let delta = i32::try_from(next.last_offset() - h.base_offset)
        .map_err(|_| batch::corrupt("joined empty batch spans too many offsets".into()))?;
    run[23..27].copy_from_slice(&delta.to_be_bytes());
    if h.attributes & ATTR_LOG_APPEND_TIME != 0 {
        let max = h.max_timestamp.max(next.max_timestamp);
        run[35..43].copy_from_slice(&max.to_be_bytes());
    }
    let crc = crc32c::crc32c(&run[batch::ATTR_POS..]);
    run[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// The batches `b` as a consumer of a compacted topic is served them: each run of two or more
/// empty batches in a row (nothing but offsets left in them) becomes one empty batch spanning
/// the run (no producer, the run's first timestamp, the last one's leader epoch), because
/// some clients cannot read two empty batches in a row (kafka-go up to 0.4.51 panics,
/// "markRead: negative count"). `None` when there is no such run. Only for consumers: a
/// follower copies batches exactly as they are.
pub fn collapse_empty_runs(b: &[u8]) -> Option<Vec<u8>> {
    let mut spans: Vec<(usize, BatchHeader)> = Vec::new();
    let mut pos = 0;
    while pos + HEADER_LEN <= b.len() {
        let h = batch::parse_header(&b[pos..]).ok()?;
        if pos + h.size > b.len() {
            return None;
        }
        spans.push((pos, h));
        pos += h.size;
    }
    // An emptied transactional batch joins the run too: a reader has nothing to take from it,
    // and a read_committed one skips an aborted transaction by its producer id in the batches
    // that hold records and by its marker, neither of which is in a run.
    let empty = |h: &BatchHeader| h.record_count == 0 && h.attributes & ATTR_CONTROL == 0;
    let runs = spans.windows(2).any(|w| empty(&w[0].1) && empty(&w[1].1));
    if !runs {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < spans.len() {
        let (at, h) = spans[i];
        let mut j = i;
        while j + 1 < spans.len() && empty(&spans[j].1) && empty(&spans[j + 1].1) {
            j += 1;
        }
        if j == i {
            out.extend_from_slice(&b[at..at + h.size]);
        } else {
            let last = spans[j].1;
            out.extend_from_slice(&empty_batch(&h, &last));
        }
        i = j + 1;
    }
    out.extend_from_slice(&b[pos..]);
    Some(out)
}

/// An empty batch from `first`'s base offset through `last`'s last offset.
fn empty_batch(first: &BatchHeader, last: &BatchHeader) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let delta = i32::try_from(last.last_offset() - first.base_offset).unwrap_or(i32::MAX);
    h[0..8].copy_from_slice(&first.base_offset.to_be_bytes());
    h[8..12].copy_from_slice(&((HEADER_LEN - batch::LOG_OVERHEAD) as i32).to_be_bytes());
    h[12..16].copy_from_slice(&last.partition_leader_epoch.to_be_bytes());
    h[16] = 2;
    // attributes 0: uncompressed, CreateTime, neither transactional nor control
    h[23..27].copy_from_slice(&delta.to_be_bytes());
    h[27..35].copy_from_slice(&first.first_timestamp.to_be_bytes());
    h[35..43].copy_from_slice(&(-1i64).to_be_bytes());
    h[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    h[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    h[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    // record count 0
    let crc = crc32c::crc32c(&h[batch::ATTR_POS..]);
    h[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::*;

    /// One batch at `base` of (key, value) records, offsets base.., timestamps 1000 + i.
    fn batch_of(
        base: i64,
        records: &[(Option<&str>, Option<&str>)],
        compression: Compression,
    ) -> Vec<u8> {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: 40 + i as i32,
                timestamp: 1000 + i as i64,
                key: k.map(|k| bytes::Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| bytes::Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    /// (offset, key, value) of every record of the stored batches `b`, by the engine's own
    /// reader (which checks the CRC-free fields) after a CRC check of each batch.
    fn read_back(b: &[u8]) -> Vec<(i64, Option<String>, Option<String>)> {
        let mut rest = b;
        while rest.len() >= HEADER_LEN {
            let h = batch::parse_header(rest).unwrap();
            batch::check_crc(&rest[..h.size]).unwrap();
            rest = &rest[h.size..];
        }
        batch::all_records(b)
            .unwrap()
            .into_iter()
            .map(|(o, r)| {
                let s = |v: Option<Vec<u8>>| v.map(|v| String::from_utf8(v).unwrap());
                (o, s(r.key), s(r.value))
            })
            .collect()
    }

    #[test]
    fn a_batch_is_cleaned_by_key_dropped_as_aborted_or_kept_whole_by_its_transaction() {
        let h = |pid: i64, base: i64, attributes: i16| BatchHeader {
            base_offset: base,
            size: HEADER_LEN,
            partition_leader_epoch: 0,
            attributes,
            last_offset_delta: 1,
            first_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: 0,
            record_count: 2,
        };
        // Producer 5 aborted a transaction over 10..20 (its ABORT marker at 20); the last
        // stable offset is 40.
        let aborted = [AbortedTxn {
            producer_id: 5,
            first_offset: 10,
            last_offset: 20,
        }];
        let view = TxnView::new(&aborted, 40);
        let txn = ATTR_TRANSACTIONAL;
        assert_eq!(view.cleaning(&h(-1, 0, 0)), Cleaning::ByKey, "plain");
        assert_eq!(view.cleaning(&h(5, 10, txn)), Cleaning::Aborted);
        assert_eq!(view.cleaning(&h(5, 18, txn)), Cleaning::Aborted);
        // The same producer's later transaction, and another producer's at the same offsets,
        // committed.
        assert_eq!(view.cleaning(&h(5, 22, txn)), Cleaning::ByKey);
        assert_eq!(view.cleaning(&h(6, 12, txn)), Cleaning::ByKey);
        // The marker itself, and anything reaching the last stable offset, stay whole.
        assert_eq!(
            view.cleaning(&h(5, 20, txn | ATTR_CONTROL)),
            Cleaning::Whole
        );
        assert_eq!(view.cleaning(&h(6, 39, txn)), Cleaning::Whole);
        assert_eq!(view.cleaning(&h(-1, 39, 0)), Cleaning::Whole);
        assert_eq!(
            TxnView::new(&[], 40).cleaning(&h(5, 10, txn)),
            Cleaning::ByKey
        );
    }

    #[test]
    fn a_batch_keeps_the_chosen_records_with_their_offsets_and_a_good_crc() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            let b = batch_of(
                100,
                &[
                    (Some("a"), Some("1")),
                    (Some("b"), Some("2")),
                    (Some("a"), None),
                    (None, Some("x")),
                ],
                compression,
            );
            let h = batch::parse_header(&b).unwrap();
            let mut seen = Vec::new();
            for_each_record(&b, &h, |r, _| {
                seen.push((
                    r.offset,
                    r.timestamp,
                    r.key.map(<[u8]>::to_vec),
                    r.tombstone,
                ))
            })
            .unwrap();
            assert_eq!(
                seen,
                vec![
                    (100, 1000, Some(b"a".to_vec()), false),
                    (101, 1001, Some(b"b".to_vec()), false),
                    (102, 1002, Some(b"a".to_vec()), true),
                    (103, 1003, None, false),
                ],
                "{compression:?}"
            );
            // Everything kept: the batch stays as it is.
            assert_eq!(retain(&b, &h, |_| true).unwrap(), None);
            // Keep offsets 101 and 103.
            let out = retain(&b, &h, |r| r.offset % 2 == 1).unwrap().unwrap();
            let nh = batch::parse_header(&out).unwrap();
            assert_eq!(
                (
                    nh.base_offset,
                    nh.last_offset_delta,
                    nh.record_count,
                    nh.size
                ),
                (100, 3, 2, out.len()),
                "{compression:?}"
            );
            assert_eq!(
                (
                    nh.producer_id,
                    nh.producer_epoch,
                    nh.base_sequence,
                    nh.first_timestamp
                ),
                (
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    h.first_timestamp
                )
            );
            assert_eq!((h.max_timestamp, nh.max_timestamp), (1003, 1003));
            // Without the newest record the header claims the newest one kept.
            let older = retain(&b, &h, |r| r.offset < 102).unwrap().unwrap();
            assert_eq!(batch::parse_header(&older).unwrap().max_timestamp, 1001);
            assert_eq!(nh.attributes & CODEC_MASK, 0, "rewritten uncompressed");
            assert_eq!(
                read_back(&out),
                vec![
                    (101, Some("b".into()), Some("2".into())),
                    (103, None, Some("x".into()))
                ]
            );
            // Nothing kept: an empty batch that still spans the offsets.
            let empty = retain(&b, &h, |_| false).unwrap().unwrap();
            let eh = batch::parse_header(&empty).unwrap();
            assert_eq!(
                (
                    eh.base_offset,
                    eh.last_offset(),
                    eh.record_count,
                    empty.len()
                ),
                (100, 103, 0, HEADER_LEN)
            );
            assert_eq!(eh.max_timestamp, -1);
            assert!(read_back(&empty).is_empty());
        }
    }

    #[test]
    fn emptied_batches_of_one_producer_in_a_row_join_into_one() {
        let empty = |base: i64, n: usize, seq: i32| {
            let b = batch_of(base, &vec![(Some("k"), Some("v")); n], Compression::Lz4);
            let h = batch::parse_header(&b).unwrap();
            let mut out = retain(&b, &h, |_| false).unwrap().unwrap();
            // batch_of numbers records from sequence 40: move the batch to `seq`.
            out[53..57].copy_from_slice(&seq.to_be_bytes());
            let crc = crc32c::crc32c(&out[batch::ATTR_POS..]);
            out[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
            out
        };
        let hdr = |b: &[u8]| batch::parse_header(b).unwrap();
        let mut run = empty(100, 2, 10);
        let next = empty(102, 3, 12);
        assert!(joins_empty_run(&hdr(&run), &hdr(&next)));
        extend_empty_run(&mut run, &hdr(&next)).unwrap();
        let joined = hdr(&run);
        assert_eq!(
            (
                joined.base_offset,
                joined.last_offset(),
                joined.base_sequence,
                joined.record_count,
                run.len()
            ),
            (100, 104, 10, 0, HEADER_LEN)
        );
        batch::check_crc(&run).unwrap();
        assert!(read_back(&run).is_empty());

        // What keeps batches apart: a gap in offsets or sequences, another producer or
        // epoch, another leader epoch, records left, a control or transactional batch.
        let j = hdr(&run);
        let n = hdr(&empty(105, 1, 15));
        assert!(joins_empty_run(&j, &n));
        let apart = |f: &dyn Fn(&mut BatchHeader)| {
            let mut m = n;
            f(&mut m);
            !joins_empty_run(&j, &m)
        };
        assert!(apart(&|m| m.base_offset = 106));
        assert!(apart(&|m| m.base_sequence = 16));
        assert!(apart(&|m| m.producer_id = 8));
        assert!(apart(&|m| m.producer_epoch = 2));
        assert!(apart(&|m| m.partition_leader_epoch = 3));
        assert!(apart(&|m| m.record_count = 1));
        assert!(apart(&|m| m.attributes |= ATTR_CONTROL));
        let mut txn = j;
        txn.attributes |= ATTR_TRANSACTIONAL;
        let mut txn_next = n;
        txn_next.attributes |= ATTR_TRANSACTIONAL;
        assert!(!joins_empty_run(&txn, &txn_next));
        // No producer id: sequences do not matter.
        let (mut a, mut b) = (j, n);
        (
            a.producer_id,
            b.producer_id,
            a.base_sequence,
            b.base_sequence,
        ) = (-1, -1, -1, -1);
        assert!(joins_empty_run(&a, &b));
        // A sequence that would wrap inside the joined batch keeps them apart.
        let (mut a, mut b) = (j, n);
        a.base_sequence = i32::MAX - 4;
        b.base_sequence = 0;
        assert!(!joins_empty_run(&a, &b));
        // Extending with a batch that does not join is an error, not a wrong batch.
        let mut stays = run.clone();
        assert!(extend_empty_run(&mut stays, &hdr(&empty(200, 1, 15))).is_err());
        assert_eq!(stays, run);
    }

    #[test]
    fn runs_of_empty_batches_are_served_as_one() {
        let full = |base: i64| batch_of(base, &[(Some("k"), Some("v"))], Compression::None);
        let empty = |base: i64, n: usize| {
            let b = batch_of(base, &vec![(Some("k"), Some("v")); n], Compression::Gzip);
            retain(&b, &batch::parse_header(&b).unwrap(), |_| false)
                .unwrap()
                .unwrap()
        };
        // [full 0] [empty 1..=2] [empty 3..=5] [empty 6] [full 7] [empty 8] [full 9]
        let parts = [
            full(0),
            empty(1, 2),
            empty(3, 3),
            empty(6, 1),
            full(7),
            empty(8, 1),
            full(9),
        ];
        let b: Vec<u8> = parts.concat();
        let out = collapse_empty_runs(&b).unwrap();
        let mut spans = Vec::new();
        let mut rest = out.as_slice();
        while !rest.is_empty() {
            let h = batch::parse_header(rest).unwrap();
            batch::check_crc(&rest[..h.size]).unwrap();
            spans.push((h.base_offset, h.last_offset(), h.record_count));
            rest = &rest[h.size..];
        }
        assert_eq!(
            spans,
            vec![(0, 0, 1), (1, 6, 0), (7, 7, 1), (8, 8, 0), (9, 9, 1)],
            "one empty batch for the run of three, the lone one as it was"
        );
        assert_eq!(read_back(&out), read_back(&b), "the same records");
        // Nothing to collapse: None, and a cut tail is left alone.
        let single = [full(0), empty(1, 2), full(3)].concat();
        assert_eq!(collapse_empty_runs(&single), None);
        assert_eq!(collapse_empty_runs(&b[..b.len() - 3]), None);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let b = batch_of(
            0,
            &[(Some("k"), Some("v")), (Some("k2"), Some("v2"))],
            Compression::None,
        );
        let h = batch::parse_header(&b).unwrap();
        for cut in HEADER_LEN..b.len() {
            let mut short = b[..cut].to_vec();
            short.resize(b.len(), 0xff);
            let _ = retain(&short, &h, |_| false);
        }
        let mut wild = b.clone();
        wild[HEADER_LEN] = 0x7f; // a record length far past the batch
        assert!(retain(&wild, &h, |_| true).is_err());
    }

    #[test]
    fn key_digests_tell_keys_apart() {
        assert_eq!(key_digest(b"a"), key_digest(b"a"));
        assert_ne!(key_digest(b"a"), key_digest(b"b"));
        assert_ne!(key_digest(b""), key_digest(b"\0"));
    }
}
