//! The Kafka v2 record batch header: parsing and validation (pure functions, no I/O).
//!
//! Layout (big-endian), as stored on disk and on the wire:
//!
//! ```text
//!  0 base offset        i64   rewritten by the broker
//!  8 batch length       i32   bytes after this field
//! 12 leader epoch       i32   rewritten by the broker
//! 16 magic              i8    must be 2
//! 17 crc                u32   CRC-32C of bytes 21..end
//! 21 attributes         i16   bit 3: timestamp type, bit 4: transactional, bit 5: control
//! 23 last offset delta  i32
//! 27 first timestamp    i64
//! 35 max timestamp      i64
//! 43 producer id        i64
//! 51 producer epoch     i16
//! 53 base sequence      i32
//! 57 record count       i32
//! 61 records...
//! ```

use super::LogError;

/// Bytes before the records.
pub const HEADER_LEN: usize = 61;
/// Bytes before the batch-length field's payload (base offset + length).
pub const LOG_OVERHEAD: usize = 12;
const MAGIC_POS: usize = 16;
pub(super) const CRC_POS: usize = 17;
pub(super) const ATTR_POS: usize = 21;
const MAX_TS_POS: usize = 35;
const ATTR_TIMESTAMP_TYPE: i16 = 1 << 3;
const ATTR_CONTROL: i16 = 1 << 5;

/// The header fields of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, including the 12-byte offset/length prefix.
    pub size: usize,
    /// The leader epoch of the broker that appended it (set by the broker, not covered by the
    /// CRC).
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Saturating: a stored header's base offset is not covered by the CRC, and damage near
    /// i64::MAX must not overflow (the same class of finding as `peek` in `partition::read`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Last sequence number of an idempotent batch (sequences wrap at `i32::MAX`).
    pub fn last_sequence(&self) -> i32 {
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }

    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

pub(super) fn corrupt(reason: String) -> LogError {
    LogError::CorruptBatch { reason }
}

/// The total size (prefix included) that the 12-byte prefix at the start of `b` announces.
/// `b` must hold at least [`LOG_OVERHEAD`] bytes.
pub fn announced_size(b: &[u8]) -> Result<usize, LogError> {
    let len = be_i32(b, 8);
    if len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(corrupt(format!(
            "batch length {len} is shorter than a batch header"
        )));
    }
    Ok(LOG_OVERHEAD + len as usize)
}

/// Parses the header fields of a batch (`b` holds at least [`HEADER_LEN`] bytes) and checks the
/// header alone: length, magic, and a record count that the batch's offsets can hold. A stored
/// batch may hold fewer records than offsets, down to none: compaction removes records and
/// keeps the batch's offsets (its base offset and last offset delta), as Kafka's cleaner does,
/// so that offsets stay contiguous from batch to batch. What a producer sends is held to the
/// strict form by [`validate_payload`].
pub fn parse_header(b: &[u8]) -> Result<BatchHeader, LogError> {
    if b.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes is shorter than a batch header",
            b.len()
        )));
    }
    let size = announced_size(b)?;
    let magic = b[MAGIC_POS] as i8;
    if magic != 2 {
        return Err(corrupt(format!("magic {magic} is not supported (only 2)")));
    }
    let h = BatchHeader {
        base_offset: be_i64(b, 0),
        size,
        partition_leader_epoch: be_i32(b, 12),
        attributes: be_i16(b, ATTR_POS),
        last_offset_delta: be_i32(b, 23),
        first_timestamp: be_i64(b, 27),
        max_timestamp: be_i64(b, MAX_TS_POS),
        producer_id: be_i64(b, 43),
        producer_epoch: be_i16(b, 51),
        base_sequence: be_i32(b, 53),
        record_count: be_i32(b, 57),
    };
    if h.last_offset_delta < 0 {
        return Err(corrupt(format!(
            "last offset delta {} is negative",
            h.last_offset_delta
        )));
    }
    if h.record_count < 0 || i64::from(h.record_count) > i64::from(h.last_offset_delta) + 1 {
        return Err(corrupt(format!(
            "record count {} does not fit the batch's {} offsets",
            h.record_count,
            i64::from(h.last_offset_delta) + 1
        )));
    }
    Ok(h)
}

/// A producer's batch holds one record per offset, at least one: the form every client
/// writes. Only stored batches (compacted ones) may hold fewer.
fn check_produced_count(h: &BatchHeader) -> Result<(), LogError> {
    if h.record_count < 1 {
        return Err(corrupt(format!(
            "record count {} is below 1",
            h.record_count
        )));
    }
    if h.last_offset_delta != h.record_count - 1 {
        return Err(corrupt(format!(
            "last offset delta {} does not match record count {}",
            h.last_offset_delta, h.record_count
        )));
    }
    Ok(())
}

/// Reads a zigzag varint (Kafka's record fields) of at most `max_bytes` bytes at `*pos`.
pub(super) fn zigzag(b: &[u8], pos: &mut usize, max_bytes: usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let byte = *b.get(*pos)?;
        *pos += 1;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Most bytes the records of one batch may decompress to when a lookup reads them.
///
/// Producers bound a batch by its uncompressed size (Kafka's `batch.size`, 16 KiB by default,
/// and `max.request.size`, 1 MiB), so a real batch stays far below this; a crafted one (a few
/// KiB of zstd, gzip or a snappy length prefix can claim gigabytes, and its CRC only proves
/// the producer wrote it) is refused instead of taking the broker's memory.
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// The largest zstd window accepted (2^24 = 16 MiB): producers compress batches of at most a
/// few MiB, whose frames never need more, and the window is memory the decoder reserves.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// The magic that starts Kafka's (xerial's) framed snappy: then a version and a compatible
/// version (i32 each), then blocks of `length i32 | raw snappy`.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER: usize = 16;

fn too_big() -> LogError {
    corrupt(format!(
        "the records decompress to more than {MAX_DECOMPRESSED} bytes"
    ))
}

/// Decompresses the records of a batch compressed with `codec` (the attributes' low 3 bits),
/// refusing output beyond [`MAX_DECOMPRESSED`] before allocating it.
pub(super) fn decompress(codec: i16, src: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, LogError> {
    use std::io::Read;
    let bad = |what: &str, e: std::io::Error| {
        corrupt(format!("cannot decompress the {what} records: {e}"))
    };
    // One byte more than allowed tells "exactly the limit" from "more".
    let cap = MAX_DECOMPRESSED as u64 + 1;
    let mut out = Vec::new();
    match codec {
        0 => return Ok(src.into()),
        1 => {
            flate2::read::MultiGzDecoder::new(src)
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| bad("gzip", e))?;
        }
        2 => return snappy(src).map(Into::into),
        3 => {
            lz4::Decoder::new(src)
                .and_then(|d| d.take(cap).read_to_end(&mut out))
                .map_err(|e| bad("lz4", e))?;
        }
        4 => {
            zstd::stream::read::Decoder::with_buffer(src)
                .and_then(|mut d| {
                    d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                    d.take(cap).read_to_end(&mut out)
                })
                .map_err(|e| bad("zstd", e))?;
        }
        c => return Err(corrupt(format!("unknown compression codec {c}"))),
    }
    if out.len() > MAX_DECOMPRESSED {
        return Err(too_big());
    }
    Ok(out.into())
}

/// Kafka's snappy: xerial's framing when the magic is there, else one raw snappy block (what
/// librdkafka sends). Each block announces its decompressed length, which is checked against
/// [`MAX_DECOMPRESSED`] before anything is allocated.
fn snappy(src: &[u8]) -> Result<Vec<u8>, LogError> {
    let bad = |e: snap::Error| corrupt(format!("cannot decompress the snappy records: {e}"));
    let mut out = Vec::new();
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), LogError> {
        let n = snap::raw::decompress_len(raw).map_err(bad)?;
        let start = out.len();
        if n > MAX_DECOMPRESSED - start {
            return Err(too_big());
        }
        out.resize(start + n, 0);
        let written = snap::raw::Decoder::new()
            .decompress(raw, &mut out[start..])
            .map_err(bad)?;
        out.truncate(start + written);
        Ok(())
    };
    if !(src.len() >= XERIAL_HEADER && src.starts_with(XERIAL_MAGIC)) {
        block(src, &mut out)?;
        return Ok(out);
    }
    let mut pos = XERIAL_HEADER;
    while pos < src.len() {
        let len = src
            .get(pos..pos + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| corrupt("snappy block length cut short".into()))?;
        pos += 4;
        let raw = pos
            .checked_add(len)
            .and_then(|end| src.get(pos..end))
            .ok_or_else(|| corrupt(format!("snappy block of {len} bytes past the batch end")))?;
        block(raw, &mut out)?;
        pos += len;
    }
    Ok(out)
}

/// Calls `visit(offset, timestamp)` for each record of the whole batch `b` (header `h`) in
/// order until it returns true, and returns that record. Compressed batches are decompressed
/// first (at most [`MAX_DECOMPRESSED`] bytes). Only the record length, timestamp delta and
/// offset delta are read, and nothing is allocated per record: a batch whose record count or
/// header counts are absurd (its CRC only proves the producer wrote it) costs no more than its
/// bytes.
///
/// `kafka-protocol`'s `RecordBatchDecoder` is deliberately not used on stored data: it
/// reserves the peer-supplied record count and header count up front, which a crafted batch
/// turns into an allocation abort; its decompressors likewise trust the lengths they read.
pub fn find_record(
    b: &[u8],
    h: &BatchHeader,
    mut visit: impl FnMut(i64, i64) -> bool,
) -> Result<Option<(i64, i64)>, LogError> {
    let records = b
        .get(HEADER_LEN..h.size)
        .ok_or_else(|| corrupt("batch shorter than its header".into()))?;
    let plain = decompress(h.attributes & 0x7, records)?;
    let mut pos = 0;
    for _ in 0..h.record_count {
        let len = zigzag(&plain, &mut pos, 5).ok_or_else(|| corrupt("record length".into()))?;
        let len = usize::try_from(len).map_err(|_| corrupt(format!("record length {len}")))?;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= plain.len())
            .ok_or_else(|| corrupt(format!("record of {len} bytes past the batch end")))?;
        let mut p = pos + 1; // attributes
        let ts_delta =
            zigzag(&plain[..end], &mut p, 10).ok_or_else(|| corrupt("timestamp delta".into()))?;
        let off_delta =
            zigzag(&plain[..end], &mut p, 5).ok_or_else(|| corrupt("offset delta".into()))?;
        // A record outside its batch's offsets (the partition_dir fuzz target stored one
        // with a good CRC) would make a lookup answer an offset the log does not have.
        if !(0..=i64::from(h.last_offset_delta)).contains(&off_delta) {
            return Err(corrupt(format!(
                "record offset delta {off_delta} outside the batch's 0..={}",
                h.last_offset_delta
            )));
        }
        let rec = (
            h.base_offset.saturating_add(off_delta),
            h.first_timestamp.saturating_add(ts_delta),
        );
        if visit(rec.0, rec.1) {
            return Ok(Some(rec));
        }
        pos = end;
    }
    Ok(None)
}

/// One stored record's fields: what a dead-letter copy of it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The record at `offset` among the whole batches `records` (as a read returns them). Every
/// length is checked against the bytes there, so a damaged record is an error, not a panic or
/// a large allocation.
pub fn record_at(records: &[u8], offset: i64) -> Result<Option<StoredRecord>, LogError> {
    let mut rest = records;
    while rest.len() >= HEADER_LEN {
        let h = parse_header(rest)?;
        if h.size > rest.len() {
            break;
        }
        if h.base_offset <= offset && offset <= h.last_offset() {
            let mut found = None;
            records_in(&rest[..h.size], &h, |o, r| {
                if o == offset {
                    found = Some(r);
                }
                o >= offset
            })?;
            return Ok(found);
        }
        rest = &rest[h.size..];
    }
    Ok(None)
}

/// Every record of the whole batches `records`, with its offset, in order.
pub fn all_records(records: &[u8]) -> Result<Vec<(i64, StoredRecord)>, LogError> {
    let mut out = Vec::new();
    let mut rest = records;
    while rest.len() >= HEADER_LEN {
        let h = parse_header(rest)?;
        if h.size > rest.len() {
            break;
        }
        records_in(&rest[..h.size], &h, |o, r| {
            out.push((o, r));
            false
        })?;
        rest = &rest[h.size..];
    }
    Ok(out)
}

/// Calls `visit` with each record of the whole batch `b` until it returns true.
fn records_in(
    b: &[u8],
    h: &BatchHeader,
    mut visit: impl FnMut(i64, StoredRecord) -> bool,
) -> Result<(), LogError> {
    let records = b
        .get(HEADER_LEN..h.size)
        .ok_or_else(|| corrupt("batch shorter than its header".into()))?;
    let plain = decompress(h.attributes & 0x7, records)?;
    let mut pos = 0;
    for _ in 0..h.record_count {
        let len = zigzag(&plain, &mut pos, 5).ok_or_else(|| corrupt("record length".into()))?;
        let len = usize::try_from(len).map_err(|_| corrupt(format!("record length {len}")))?;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= plain.len())
            .ok_or_else(|| corrupt(format!("record of {len} bytes past the batch end")))?;
        let body = &plain[pos..end];
        let mut p = 1; // attributes
        let ts_delta = zigzag(body, &mut p, 10).ok_or_else(|| corrupt("timestamp delta".into()))?;
        let off_delta = zigzag(body, &mut p, 5).ok_or_else(|| corrupt("offset delta".into()))?;
        {
            let key = bytes_field(body, &mut p)?;
            let value = bytes_field(body, &mut p)?;
            let count = zigzag(body, &mut p, 5).ok_or_else(|| corrupt("header count".into()))?;
            let mut headers = Vec::new();
            // Each header takes at least one byte, so the record's size bounds the loop.
            for _ in 0..count.max(0) {
                let k = bytes_field(body, &mut p)?.unwrap_or_default();
                let v = bytes_field(body, &mut p)?;
                headers.push((String::from_utf8_lossy(&k).into_owned(), v));
            }
            let record = StoredRecord {
                timestamp: h.first_timestamp.saturating_add(ts_delta),
                key,
                value,
                headers,
            };
            if visit(h.base_offset.saturating_add(off_delta), record) {
                return Ok(());
            }
        }
        pos = end;
    }
    Ok(())
}

/// A varint-length-prefixed byte field (-1: null), copied.
fn bytes_field(b: &[u8], p: &mut usize) -> Result<Option<Vec<u8>>, LogError> {
    Ok(field(b, p)?.map(<[u8]>::to_vec))
}

/// A varint-length-prefixed byte field (-1: null), borrowed from the record.
pub(super) fn field<'a>(b: &'a [u8], p: &mut usize) -> Result<Option<&'a [u8]>, LogError> {
    let len = zigzag(b, p, 5).ok_or_else(|| corrupt("field length".into()))?;
    if len < 0 {
        return Ok(None);
    }
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| p.checked_add(l))
        .filter(|e| *e <= b.len())
        .ok_or_else(|| corrupt(format!("field of {len} bytes past the record end")))?;
    let v = &b[*p..end];
    *p = end;
    Ok(Some(v))
}

/// Checks the CRC-32C of a whole batch (`b.len() == header.size`).
pub fn check_crc(b: &[u8]) -> Result<(), LogError> {
    let stored = be_i32(b, CRC_POS) as u32;
    let computed = crc32c::crc32c(&b[ATTR_POS..]);
    if stored != computed {
        return Err(corrupt(format!(
            "CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    Ok(())
}

/// Validates a producer's payload (one or more whole batches, nothing else) and returns the
/// header and start position of each batch. `max_batch` is `max.message.bytes`.
pub fn validate_payload(b: &[u8], max_batch: u32) -> Result<Vec<(usize, BatchHeader)>, LogError> {
    let headers = validate_batches(b, max_batch, false)?;
    for (_, h) in &headers {
        check_produced_count(h)?;
    }
    Ok(headers)
}

/// Validates batches copied from another broker's log (a follower's fetch, a partition
/// move): whole batches with good CRCs, which may be compacted ones (fewer records than
/// offsets) and transaction markers.
pub fn validate_copied(b: &[u8]) -> Result<Vec<(usize, BatchHeader)>, LogError> {
    validate_batches(b, u32::MAX, true)
}

/// Validates one transaction marker a coordinator asks this leader to append.
pub fn validate_marker(b: &[u8]) -> Result<BatchHeader, LogError> {
    let headers = validate_batches(b, u32::MAX, true)?;
    match headers.as_slice() {
        [(_, h)] if h.is_control() && h.is_transactional() && h.record_count == 1 => Ok(*h),
        _ => Err(corrupt(
            "a transaction marker is one control batch of one record".into(),
        )),
    }
}

fn validate_batches(
    b: &[u8],
    max_batch: u32,
    control: bool,
) -> Result<Vec<(usize, BatchHeader)>, LogError> {
    let mut out = Vec::with_capacity(1);
    let mut pos = 0;
    if b.is_empty() {
        return Err(corrupt("empty record set".into()));
    }
    while pos < b.len() {
        let rest = &b[pos..];
        if rest.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "{} trailing bytes at position {pos} are shorter than a batch header",
                rest.len()
            )));
        }
        let h = parse_header(rest)?;
        if h.size > rest.len() {
            return Err(corrupt(format!(
                "batch at position {pos} announces {} bytes but only {} remain",
                h.size,
                rest.len()
            )));
        }
        if h.size > max_batch as usize {
            return Err(LogError::MessageTooLarge {
                size: h.size,
                max: max_batch,
            });
        }
        if !control && h.attributes & ATTR_CONTROL != 0 {
            return Err(corrupt("control batches may not be produced".into()));
        }
        check_crc(&rest[..h.size])?;
        out.push((pos, h));
        pos += h.size;
    }
    Ok(out)
}

/// Assigns `base_offset` and `leader_epoch` to the batch at the start of `b` in place. The CRC
/// does not cover these fields.
pub fn rewrite_offset_and_epoch(b: &mut [u8], base_offset: i64, leader_epoch: i32) {
    b[0..8].copy_from_slice(&base_offset.to_be_bytes());
    b[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Stamps a LogAppendTime batch: sets the timestamp-type attribute, the max timestamp, and
/// recomputes the CRC (both fields are covered by it). `b` is exactly one batch.
pub fn stamp_log_append_time(b: &mut [u8], now_ms: i64) {
    let attrs = be_i16(b, ATTR_POS) | ATTR_TIMESTAMP_TYPE;
    b[ATTR_POS..ATTR_POS + 2].copy_from_slice(&attrs.to_be_bytes());
    b[MAX_TS_POS..MAX_TS_POS + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTR_POS..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A minimal valid batch: header only plus `extra` record bytes, CRC filled in.
    fn raw(count: i32, extra: usize) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN + extra];
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[MAGIC_POS] = 2;
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTR_POS..]);
        b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn reason(r: Result<Vec<(usize, BatchHeader)>, LogError>) -> String {
        match r {
            Err(LogError::CorruptBatch { reason }) => reason,
            other => panic!("expected CorruptBatch, got {other:?}"),
        }
    }

    #[test]
    fn several_whole_batches_are_accepted_with_positions() {
        let mut p = raw(1, 5);
        let first = p.len();
        p.extend(raw(3, 9));
        let v = validate_payload(&p, 1000).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].0, first);
        assert_eq!(v[1].1.record_count, 3);
        assert_eq!(v[1].1.last_offset(), 2);
    }

    #[test]
    fn header_fields_are_checked() {
        let mut b = raw(1, 0);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(reason(validate_payload(&b, 1000)).contains("batch length -5"));

        let b = raw(0, 0);
        assert!(reason(validate_payload(&b, 1000)).contains("last offset delta -1"));

        // A compacted batch (fewer records than offsets, down to none) is a stored form: it
        // parses and may be copied between brokers, but no producer may send one.
        for count in [0, 2] {
            let mut b = raw(count, 0);
            b[23..27].copy_from_slice(&5i32.to_be_bytes());
            let crc = crc32c::crc32c(&b[ATTR_POS..]);
            b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
            assert_eq!(parse_header(&b).unwrap().record_count, count);
            assert!(validate_copied(&b).is_ok());
            let why = reason(validate_payload(&b, 1000));
            assert!(
                why.contains("record count 0") || why.contains("last offset delta 5"),
                "{why}"
            );
        }
        // More records than offsets is no batch at all.
        let mut b = raw(7, 0);
        b[23..27].copy_from_slice(&5i32.to_be_bytes());
        assert!(reason(validate_copied(&b)).contains("record count 7 does not fit"));

        let mut b = raw(1, 0);
        b[ATTR_POS + 1] |= 1 << 5;
        let crc = crc32c::crc32c(&b[ATTR_POS..]);
        b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(reason(validate_payload(&b, 1000)).contains("control"));

        assert!(matches!(
            validate_payload(&raw(1, 100), 100),
            Err(LogError::MessageTooLarge {
                size: 161,
                max: 100
            })
        ));
    }

    /// Two records encoded by `kafka-protocol`, the second with a header, gzip-compressed.
    fn two_records() -> Vec<u8> {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let rec = |i: i64, header: bool| {
            let mut headers = kafka_protocol::indexmap::IndexMap::new();
            if header {
                headers.insert("h".to_string().into(), Some(bytes::Bytes::from("v")));
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: -1,
                timestamp: 1000 + i,
                key: (i == 0).then(|| bytes::Bytes::from("k")),
                value: Some(bytes::Bytes::from(format!("value-{i}"))),
                headers,
            }
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[rec(0, false), rec(1, true)],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::Gzip,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn a_stored_record_is_found_by_offset_with_its_key_value_and_headers() {
        let b = two_records();
        let r = record_at(&b, 1).unwrap().unwrap();
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"value-1"[..]));
        assert_eq!(r.headers, vec![("h".to_string(), Some(b"v".to_vec()))]);
        assert_eq!(r.timestamp, 1001);
        assert_eq!(
            record_at(&b, 0).unwrap().unwrap().key.as_deref(),
            Some(&b"k"[..])
        );
        assert_eq!(record_at(&b, 2).unwrap(), None);
        assert_eq!(all_records(&b).unwrap().len(), 2);
        let spans = crate::log::batch_spans(&b);
        assert_eq!((spans[0].0, spans[spans.len() - 1].1), (0, 1), "{spans:?}");
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let b = raw(1, 6);
        // Six zero bytes: a record of length 0, then garbage lengths inside nothing.
        assert!(record_at(&b, 0).is_err() || record_at(&b, 0).unwrap().is_none());
        let mut b = raw(1, 8);
        // A record claiming 63 bytes in an 8-byte body.
        b[HEADER_LEN] = 0x7e;
        assert!(record_at(&b, 0).is_err());
        for cut in [0, 10, HEADER_LEN, HEADER_LEN + 3] {
            let b = two_records();
            let _ = record_at(&b[..cut.min(b.len())], 1);
            let _ = all_records(&b[..cut.min(b.len())]);
        }
    }

    #[test]
    fn offset_and_epoch_rewrite_keeps_the_crc_and_log_append_time_recomputes_it() {
        let mut b = raw(1, 4);
        rewrite_offset_and_epoch(&mut b, 42, 7);
        check_crc(&b).unwrap();
        let h = parse_header(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        stamp_log_append_time(&mut b, 1234);
        check_crc(&b).unwrap();
        let h = parse_header(&b).unwrap();
        assert_eq!(h.max_timestamp, 1234);
        assert_ne!(h.attributes & ATTR_TIMESTAMP_TYPE, 0);
    }
}
