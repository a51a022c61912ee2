//! Transaction markers (KIP-98) as they are stored: the control batch a transaction
//! coordinator appends to every partition of a transaction to end it, and the aborted
//! transactions a partition remembers for `read_committed` consumers. Pure functions, no I/O.
//!
//! A marker is a v2 batch with the transactional and control attributes, the producer's id
//! and epoch, base sequence -1 and one record whose key is (version 0: i16, type: i16, 0 for
//! ABORT and 1 for COMMIT) and whose value is (version 0: i16, coordinator epoch: i32).

use serde::{Deserialize, Serialize};

use super::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};

/// The attributes' transactional bit.
pub const ATTR_TRANSACTIONAL: i16 = 1 << 4;
/// The attributes' control bit.
pub const ATTR_CONTROL: i16 = 1 << 5;

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Marker {
    Abort,
    Commit,
}

impl Marker {
    fn control_type(self) -> i16 {
        match self {
            Marker::Abort => 0,
            Marker::Commit => 1,
        }
    }
}

/// One aborted transaction of one producer on a partition: its records lie between
/// `first_offset` and `last_offset` (the ABORT marker's offset), and `read_committed`
/// consumers skip them (Fetch's `aborted_transactions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl BatchHeader {
    /// A batch of a transaction (its records count only once a COMMIT marker follows).
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// A control batch (a transaction marker, or another control record).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The marker batch that ends `producer_id`'s transaction (base offset 0: the append assigns
/// it), with its CRC.
pub fn build_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Vec<u8> {
    let mut record = Vec::with_capacity(20);
    record.push(0); // attributes
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, 4);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&marker.control_type().to_be_bytes());
    put_varint(&mut record, 6);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    put_varint(&mut record, 0); // headers
    let mut b = Vec::with_capacity(HEADER_LEN + record.len() + 2);
    b.resize(HEADER_LEN, 0);
    put_varint(&mut b, record.len() as i64);
    b.extend_from_slice(&record);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[16] = 2;
    b[21..23].copy_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    // last offset delta 0
    b[27..35].copy_from_slice(&timestamp_ms.to_be_bytes());
    b[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    b[57..61].copy_from_slice(&1i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[batch::ATTR_POS..]);
    b[batch::CRC_POS..batch::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The marker a control batch holds (`b` is the whole batch) and the epoch of the coordinator
/// that wrote it, or `None` for anything else: another control record type (KRaft's
/// leader-change records), a compressed or damaged one.
pub fn parse_marker(b: &[u8]) -> Option<(Marker, i32)> {
    let h = batch::parse_header(b).ok()?;
    if !h.is_control() || h.attributes & 0x7 != 0 || h.record_count < 1 {
        return None;
    }
    let mut pos = HEADER_LEN;
    let _len = batch::zigzag(b, &mut pos, 5)?;
    pos += 1; // attributes
    let _ts = batch::zigzag(b, &mut pos, 10)?;
    let _off = batch::zigzag(b, &mut pos, 5)?;
    let key_len = batch::zigzag(b, &mut pos, 5)?;
    if key_len < 4 {
        return None;
    }
    let key = b.get(pos..pos + 4)?;
    let marker = match i16::from_be_bytes([key[2], key[3]]) {
        0 => Marker::Abort,
        1 => Marker::Commit,
        _ => return None,
    };
    pos += usize::try_from(key_len).ok()?;
    // The value: version (i16), coordinator epoch (i32); a marker without one counts as
    // written by the oldest coordinator.
    let coordinator_epoch = match batch::zigzag(b, &mut pos, 5) {
        Some(6..) => b
            .get(pos + 2..pos + 6)
            .map(|e| i32::from_be_bytes([e[0], e[1], e[2], e[3]]))
            .unwrap_or(-1),
        _ => -1,
    };
    Some((marker, coordinator_epoch))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_and_kafka_protocol_reads_it_as_a_control_batch() {
        for m in [Marker::Abort, Marker::Commit] {
            let b = build_marker(42, 3, m, 7, 1_700_000_000_000);
            let h = batch::parse_header(&b).unwrap();
            assert_eq!(h.size, b.len());
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.record_count),
                (42, 3, 1)
            );
            batch::check_crc(&b).unwrap();
            assert_eq!(parse_marker(&b), Some((m, 7)));
            // The crate the broker trusts for the wire format decodes it as Kafka's marker.
            let mut buf = bytes::Bytes::from(b.clone());
            let batches =
                kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).unwrap();
            let r = &batches[0].records[0];
            assert!(r.control && r.transactional);
            let key = r.key.as_ref().unwrap();
            assert_eq!(&key[..], &[0, 0, 0, m.control_type() as u8]);
            let value = r.value.as_ref().unwrap();
            assert_eq!(&value[..], &[0, 0, 0, 0, 0, 7]);
        }
    }

    #[test]
    fn other_batches_are_not_markers() {
        let mut b = build_marker(1, 0, Marker::Commit, 0, 0);
        // Control type 2 (a KRaft leader change record) is no transaction marker.
        let at = b.len() - 1 - 6 - 1 - 2;
        b[at..at + 2].copy_from_slice(&2i16.to_be_bytes());
        assert_eq!(parse_marker(&b), None);
        assert_eq!(parse_marker(&b[..40]), None);
        let mut plain = build_marker(1, 0, Marker::Commit, 0, 0);
        plain[21..23].copy_from_slice(&ATTR_TRANSACTIONAL.to_be_bytes());
        assert_eq!(parse_marker(&plain), None);
    }
}
