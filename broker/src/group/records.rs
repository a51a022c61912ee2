//! The internal topic `__consumer_offsets` as the coordinator writes and reads it (pure):
//! which of its partitions holds a group, and the records in it, in Kafka's own formats.
//!
//! - **Partition of a group**: `abs(java_string_hash(group)) % partitions`, with Kafka's
//!   `Utils.abs` (`Integer.MIN_VALUE` → 0), so Kafka's tools and Sluice agree on where a group
//!   lives.
//! - **Records**: one per committed offset, keyed by Kafka's `OffsetCommitKey` (version 1:
//!   group, topic, partition) with an `OffsetCommitValue` (version 3: offset, leader epoch,
//!   metadata, commit timestamp) as value; a null value is a tombstone (the offset is gone: a
//!   deleted group or topic). Kafka's format rather than one of our own because it is already
//!   versioned (a key and a value version each), compact, and readable by Kafka's tools
//!   (`kafka-console-consumer --formatter ...OffsetsMessageFormatter`); `kafka-protocol` does
//!   not ship these two schemas, so they are encoded here (non-flexible versions: big-endian
//!   integers, `int16`-length strings).
//! - **Membership**: a classic group's last stable generation (its members, their
//!   subscriptions and assignments) as Kafka's `GroupMetadataKey` (version 2: group) with a
//!   `GroupMetadataValue` (version 3), a null value once the group has no members. The next
//!   coordinator of the group restores it, so a failover does not make every member rejoin
//!   (see `persist.rs`). Membership is advisory: a record that does not parse is skipped with
//!   a warning (its members rejoin, as they would without it), never a failed load.
//! - **Batches**: plain v2 record batches (uncompressed, no producer id), built with
//!   `kafka-protocol`'s encoder. Reading them back does not use its decoder: stored bytes are
//!   input, and that decoder reserves memory from counts inside the batch. The reader here
//!   checks every length against the bytes it has.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::offsets::StoredOffset;

/// Kafka's name for the internal topic of committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The internal topic of share-partition state (Kafka's name).
pub const SHARE_STATE_TOPIC: &str = "__share_group_state";

/// Whether `topic` is one the cluster manages itself (clients may read it but not write,
/// delete or resize it).
pub fn is_internal_topic(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == SHARE_STATE_TOPIC
}

/// Java's `String.hashCode`: `s[0]*31^(n-1) + … + s[n-1]` over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The partition of `__consumer_offsets` that holds `group` (Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`). `partitions` must be positive.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// One change to a partition's committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetRecord {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        value: StoredOffset,
    },
    /// The offset of `group` for `topic`-`partition` is gone.
    Tombstone {
        group: String,
        topic: String,
        partition: i32,
    },
    /// `group`'s membership as of its last stable generation; `None` once it has no members.
    Membership {
        group: String,
        membership: Option<Box<Membership>>,
    },
}

impl OffsetRecord {
    pub fn group(&self) -> &str {
        match self {
            OffsetRecord::Commit { group, .. }
            | OffsetRecord::Tombstone { group, .. }
            | OffsetRecord::Membership { group, .. } => group,
        }
    }
}

/// A classic group at a stable generation (Kafka's `GroupMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub protocol_type: String,
    pub generation: i32,
    /// The protocol (assignor) chosen for the generation.
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered this state (ms since the epoch).
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberRecord>,
}

/// One member of a [`Membership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the chosen protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// The key version Kafka writes for offset commits (0 and 1 share one layout).
const KEY_OFFSET_COMMIT: i16 = 1;
/// The key version of Kafka's group metadata records (membership).
const KEY_GROUP_METADATA: i16 = 2;
/// The value version written: the newest non-flexible one (with the leader epoch).
const VALUE_VERSION: i16 = 3;
/// The `GroupMetadataValue` version written: the newest non-flexible one (with static
/// members' instance ids).
const MEMBERSHIP_VERSION: i16 = 3;

/// Why a record cannot be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("{what} of {len} bytes does not fit an int16-length string")]
    TooLong { what: &'static str, len: usize },
    #[error("corrupt __consumer_offsets data at offset {offset}: {reason}")]
    Corrupt { offset: i64, reason: String },
}

fn put_str(buf: &mut BytesMut, what: &'static str, s: &str) -> Result<(), RecordError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordError::TooLong { what, len: s.len() })?;
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// A nullable `int16`-length string (-1: null).
fn put_nullable_str(
    buf: &mut BytesMut,
    what: &'static str,
    s: Option<&str>,
) -> Result<(), RecordError> {
    match s {
        Some(s) => put_str(buf, what, s),
        None => {
            buf.put_i16(-1);
            Ok(())
        }
    }
}

/// `int32`-length bytes.
fn put_bytes(buf: &mut BytesMut, what: &'static str, b: &[u8]) -> Result<(), RecordError> {
    let len = i32::try_from(b.len()).map_err(|_| RecordError::TooLong { what, len: b.len() })?;
    buf.put_i32(len);
    buf.put_slice(b);
    Ok(())
}

/// The key of `record` (`OffsetCommitKey` v1, or `GroupMetadataKey` v2 for a membership).
pub fn encode_key(record: &OffsetRecord) -> Result<Bytes, RecordError> {
    let (group, topic, partition) = match record {
        OffsetRecord::Membership { group, .. } => {
            let mut buf = BytesMut::with_capacity(4 + group.len());
            buf.put_i16(KEY_GROUP_METADATA);
            put_str(&mut buf, "group id", group)?;
            return Ok(buf.freeze());
        }
        OffsetRecord::Commit {
            group,
            topic,
            partition,
            ..
        }
        | OffsetRecord::Tombstone {
            group,
            topic,
            partition,
        } => (group, topic, *partition),
    };
    let mut buf = BytesMut::with_capacity(10 + group.len() + topic.len());
    buf.put_i16(KEY_OFFSET_COMMIT);
    put_str(&mut buf, "group id", group)?;
    put_str(&mut buf, "topic name", topic)?;
    buf.put_i32(partition);
    Ok(buf.freeze())
}

/// The value of `record` (`OffsetCommitValue` v3 or `GroupMetadataValue` v3), `None` for a
/// tombstone.
pub fn encode_value(record: &OffsetRecord) -> Result<Option<Bytes>, RecordError> {
    if let OffsetRecord::Membership { membership, .. } = record {
        return membership.as_deref().map(encode_membership).transpose();
    }
    let OffsetRecord::Commit { value, .. } = record else {
        return Ok(None);
    };
    let mut buf = BytesMut::with_capacity(24 + value.metadata.len());
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    put_str(&mut buf, "offset metadata", &value.metadata)?;
    buf.put_i64(value.commit_timestamp_ms);
    Ok(Some(buf.freeze()))
}

fn encode_membership(m: &Membership) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::with_capacity(membership_size(m));
    buf.put_i16(MEMBERSHIP_VERSION);
    put_str(&mut buf, "protocol type", &m.protocol_type)?;
    buf.put_i32(m.generation);
    put_nullable_str(&mut buf, "protocol name", m.protocol.as_deref())?;
    put_nullable_str(&mut buf, "leader id", m.leader.as_deref())?;
    buf.put_i64(m.state_timestamp_ms);
    let count = i32::try_from(m.members.len()).map_err(|_| RecordError::TooLong {
        what: "member list",
        len: m.members.len(),
    })?;
    buf.put_i32(count);
    for member in &m.members {
        put_str(&mut buf, "member id", &member.member_id)?;
        put_nullable_str(&mut buf, "group instance id", member.instance_id.as_deref())?;
        put_str(&mut buf, "client id", &member.client_id)?;
        put_str(&mut buf, "client host", &member.client_host)?;
        buf.put_i32(member.rebalance_timeout_ms);
        buf.put_i32(member.session_timeout_ms);
        put_bytes(&mut buf, "subscription", &member.subscription)?;
        put_bytes(&mut buf, "assignment", &member.assignment)?;
    }
    Ok(buf.freeze())
}

fn membership_size(m: &Membership) -> usize {
    let strings = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    32 + m.protocol_type.len()
        + strings(&m.protocol)
        + strings(&m.leader)
        + m.members
            .iter()
            .map(|x| {
                24 + x.member_id.len()
                    + strings(&x.instance_id)
                    + x.client_id.len()
                    + x.client_host.len()
                    + x.subscription.len()
                    + x.assignment.len()
            })
            .sum::<usize>()
}

/// Bytes `record` takes in a batch, roughly (to keep batches under `max.message.bytes`).
pub fn approximate_size(record: &OffsetRecord) -> usize {
    let (group, topic, metadata) = match record {
        OffsetRecord::Membership { group, membership } => {
            return 48 + group.len() + membership.as_deref().map_or(0, membership_size)
        }
        OffsetRecord::Commit {
            group,
            topic,
            value,
            ..
        } => (group, topic, value.metadata.len()),
        OffsetRecord::Tombstone { group, topic, .. } => (group, topic, 0),
    };
    48 + group.len() + topic.len() + metadata
}

/// One uncompressed v2 batch holding `records` in order, stamped `timestamp_ms`.
pub fn encode_batch(records: &[OffsetRecord], timestamp_ms: i64) -> Result<Bytes, RecordError> {
    let mut encoded = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        encoded.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder puts records in one batch only while offset - sequence is constant;
            // the batch's base sequence is set back to -1 (no producer id) below.
            sequence: i as i32,
            timestamp: timestamp_ms,
            key: Some(encode_key(r)?),
            value: encode_value(r)?,
            headers: Default::default(),
        });
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        encoded.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    // Encoding uncompressed records into a buffer that grows cannot fail; the counts are
    // bounded by the caller's batch size.
    .map_err(|e| RecordError::Corrupt {
        offset: -1,
        reason: format!("cannot encode a batch: {e:#}"),
    })?;
    if buf.len() >= BATCH_HEADER_LEN {
        buf[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        let crc = crc32c::crc32c(&buf[21..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(buf.freeze())
}

/// [`encode_batch`] as offsets of producer `producer_id`'s transaction (TxnOffsetCommit):
/// the transactional attribute, the producer's id and epoch, no sequence.
pub fn encode_txn_batch(
    records: &[OffsetRecord],
    timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<Bytes, RecordError> {
    let mut buf = BytesMut::from(&encode_batch(records, timestamp_ms)?[..]);
    if buf.len() >= BATCH_HEADER_LEN {
        let attributes = i16::from_be_bytes([buf[21], buf[22]]) | (1 << 4);
        buf[21..23].copy_from_slice(&attributes.to_be_bytes());
        buf[43..51].copy_from_slice(&producer_id.to_be_bytes());
        buf[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
        let crc = crc32c::crc32c(&buf[21..]);
        buf[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(buf.freeze())
}

/// A bounds-checked reader over stored bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    /// A nullable string: `Some(None)` for length -1.
    fn nullable_string(&mut self) -> Option<Option<String>> {
        match self.i16()? {
            -1 => Some(None),
            n => {
                let len = usize::try_from(n).ok()?;
                Some(Some(String::from_utf8(self.take(len)?.to_vec()).ok()?))
            }
        }
    }
    /// `int32`-length bytes.
    fn bytes(&mut self) -> Option<Bytes> {
        let len = usize::try_from(self.i32()?).ok()?;
        Some(Bytes::copy_from_slice(self.take(len)?))
    }
    /// A zigzag varint of at most `max_bytes` bytes (5: int32, 10: int64).
    fn varint(&mut self, max_bytes: usize) -> Option<i64> {
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            let byte = *self.take(1)?.first()?;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }
    /// A varint-length byte string; `None` inside for length -1 (null).
    fn var_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varint(5)? {
            -1 => Some(None),
            n => Some(Some(self.take(usize::try_from(n).ok()?)?)),
        }
    }
    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

/// Decodes one record's key and value. `Ok(None)`: a membership record that does not parse
/// (skipped, see the module's notes).
pub fn decode_record(
    offset: i64,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<Option<OffsetRecord>, RecordError> {
    let corrupt = |reason: &str| RecordError::Corrupt {
        offset,
        reason: reason.to_string(),
    };
    let mut k = Reader::new(key);
    let version = k
        .i16()
        .ok_or_else(|| corrupt("key shorter than its version"))?;
    match version {
        0 | KEY_OFFSET_COMMIT => {}
        KEY_GROUP_METADATA => return Ok(decode_membership(offset, &mut k, value)),
        v => return Err(corrupt(&format!("unknown key version {v}"))),
    }
    let group = k.string().ok_or_else(|| corrupt("key: group id"))?;
    let topic = k.string().ok_or_else(|| corrupt("key: topic name"))?;
    let partition = k.i32().ok_or_else(|| corrupt("key: partition"))?;
    if !k.done() {
        return Err(corrupt("key: trailing bytes"));
    }
    let Some(value) = value else {
        return Ok(Some(OffsetRecord::Tombstone {
            group,
            topic,
            partition,
        }));
    };
    let mut v = Reader::new(value);
    let version = v
        .i16()
        .ok_or_else(|| corrupt("value shorter than its version"))?;
    if !(0..=VALUE_VERSION).contains(&version) {
        return Err(corrupt(&format!("unsupported value version {version}")));
    }
    let offset_value = v.i64().ok_or_else(|| corrupt("value: offset"))?;
    let leader_epoch = if version >= 3 {
        v.i32().ok_or_else(|| corrupt("value: leader epoch"))?
    } else {
        -1
    };
    let metadata = v.string().ok_or_else(|| corrupt("value: metadata"))?;
    let commit_timestamp_ms = v.i64().ok_or_else(|| corrupt("value: commit timestamp"))?;
    if version == 1 {
        v.i64().ok_or_else(|| corrupt("value: expire timestamp"))?;
    }
    if !v.done() {
        return Err(corrupt("value: trailing bytes"));
    }
    Ok(Some(OffsetRecord::Commit {
        group,
        topic,
        partition,
        value: StoredOffset {
            offset: offset_value,
            leader_epoch,
            metadata,
            commit_timestamp_ms,
        },
    }))
}

/// A `GroupMetadataKey`'s group (after its version) and its value: a membership record, or
/// `None` (with a warning) when it does not parse or is of a version not read here.
fn decode_membership(
    offset: i64,
    key: &mut Reader<'_>,
    value: Option<&[u8]>,
) -> Option<OffsetRecord> {
    let parsed = (|| {
        let group = key.string().ok_or("key: group id")?;
        if !key.done() {
            return Err("key: trailing bytes");
        }
        let Some(value) = value else {
            return Ok((group, None));
        };
        let mut v = Reader::new(value);
        let version = v.i16().ok_or("value shorter than its version")?;
        // Versions 0-3 share one non-flexible layout, each adding fields; 4+ is flexible.
        if !(0..=MEMBERSHIP_VERSION).contains(&version) {
            return Err("value version not read by this broker");
        }
        let protocol_type = v.string().ok_or("value: protocol type")?;
        let generation = v.i32().ok_or("value: generation")?;
        let protocol = v.nullable_string().ok_or("value: protocol")?;
        let leader = v.nullable_string().ok_or("value: leader")?;
        let state_timestamp_ms = if version >= 2 {
            v.i64().ok_or("value: state timestamp")?
        } else {
            -1
        };
        let count = v.i32().ok_or("value: member count")?;
        let mut members = Vec::new();
        for _ in 0..count.max(0) {
            let member_id = v.string().ok_or("value: member id")?;
            let instance_id = if version >= 3 {
                v.nullable_string().ok_or("value: group instance id")?
            } else {
                None
            };
            let client_id = v.string().ok_or("value: client id")?;
            let client_host = v.string().ok_or("value: client host")?;
            let session_timeout_ms;
            let rebalance_timeout_ms;
            if version >= 1 {
                rebalance_timeout_ms = v.i32().ok_or("value: rebalance timeout")?;
                session_timeout_ms = v.i32().ok_or("value: session timeout")?;
            } else {
                session_timeout_ms = v.i32().ok_or("value: session timeout")?;
                rebalance_timeout_ms = session_timeout_ms;
            }
            members.push(MemberRecord {
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription: v.bytes().ok_or("value: subscription")?,
                assignment: v.bytes().ok_or("value: assignment")?,
            });
        }
        if !v.done() {
            return Err("value: trailing bytes");
        }
        Ok((
            group,
            Some(Box::new(Membership {
                protocol_type,
                generation,
                protocol,
                leader,
                state_timestamp_ms,
                members,
            })),
        ))
    })();
    match parsed {
        Ok((group, membership)) => Some(OffsetRecord::Membership { group, membership }),
        Err(reason) => {
            tracing::warn!(
                offset,
                reason,
                "skipping a group membership record of __consumer_offsets; its members rejoin"
            );
            None
        }
    }
}

/// v2 batch layout: base offset (0..8), length (8..12), leader epoch, magic (16), CRC
/// (17..21), attributes (21..23), …, record count (57..61), records from 61.
const BATCH_HEADER_LEN: usize = 61;
const LOG_OVERHEAD: usize = 12;

/// The records of whole v2 batches as read from the log, each with its offset. Offsets
/// before `from` (the log start falling inside a batch) are left out. Control batches (never
/// written here) are skipped; anything that does not parse is an error: a coordinator must
/// not serve a partial view of its groups' offsets.
pub fn decode_batches(bytes: &[u8], from: i64) -> Result<Vec<(i64, OffsetRecord)>, RecordError> {
    Ok(decode_log(bytes, from)?
        .into_iter()
        .filter_map(|e| match e {
            Logged::Record { offset, record, .. } => Some((offset, record)),
            Logged::Marker { .. } => None,
        })
        .collect())
}

/// One entry of an offsets partition's log as a coordinator replays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    /// A record; `txn` names the producer when it is an offset of a transaction (counted
    /// only once that transaction's COMMIT marker follows).
    Record {
        offset: i64,
        record: OffsetRecord,
        txn: Option<i64>,
    },
    /// A transaction marker.
    Marker { producer_id: i64, commit: bool },
}

/// The records and transaction markers of whole batches (as the log returns them) from
/// offset `from` on; every batch's CRC is checked.
pub fn decode_log(bytes: &[u8], from: i64) -> Result<Vec<Logged>, RecordError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let mut h = Reader::new(rest);
        let corrupt = |offset: i64, reason: String| RecordError::Corrupt { offset, reason };
        let base = h
            .i64()
            .ok_or_else(|| corrupt(-1, "a batch shorter than its header".into()))?;
        let len = h
            .i32()
            .ok_or_else(|| corrupt(base, "batch length".into()))?;
        let size = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|s| *s >= BATCH_HEADER_LEN && *s <= rest.len())
            .ok_or_else(|| corrupt(base, format!("batch length {len}")))?;
        let batch = &rest[..size];
        if batch[16] != 2 {
            return Err(corrupt(base, format!("magic {}", batch[16])));
        }
        let crc = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
        if crc32c::crc32c(&batch[21..]) != crc {
            return Err(corrupt(base, "CRC-32C mismatch".into()));
        }
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let producer_id = i64::from_be_bytes(batch[43..51].try_into().unwrap_or([0xff; 8]));
        pos += size;
        if attributes & (1 << 5) != 0 {
            // A control batch: a transaction marker counts, anything else is skipped.
            if base >= from {
                if let Some((m, _)) = crate::log::txn::parse_marker(batch) {
                    out.push(Logged::Marker {
                        producer_id,
                        commit: m == crate::log::txn::Marker::Commit,
                    });
                }
            }
            continue;
        }
        let txn = (attributes & (1 << 4) != 0).then_some(producer_id);
        if attributes & 0x7 != 0 {
            return Err(corrupt(
                base,
                format!("compressed batch (codec {})", attributes & 0x7),
            ));
        }
        let count = i32::from_be_bytes([batch[57], batch[58], batch[59], batch[60]]);
        let mut r = Reader::new(&batch[BATCH_HEADER_LEN..]);
        for _ in 0..count.max(0) {
            let record = (|| {
                let len = usize::try_from(r.varint(5)?).ok()?;
                let body = r.take(len)?;
                let mut b = Reader::new(body);
                b.take(1)?; // attributes
                b.varint(10)?; // timestamp delta
                let delta = b.varint(5)?;
                let key = b.var_bytes()?;
                let value = b.var_bytes()?;
                Some((base.checked_add(delta)?, key, value))
            })()
            .ok_or_else(|| corrupt(base, "a record overruns its batch".into()))?;
            let (offset, key, value) = record;
            if offset < from {
                continue;
            }
            let key = key.ok_or_else(|| corrupt(offset, "a record without a key".into()))?;
            if let Some(record) = decode_record(offset, key, value)? {
                out.push(Logged::Record {
                    offset,
                    record,
                    txn,
                });
            }
        }
    }
    Ok(out)
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
                leader_epoch: 4,
                metadata: format!("m{offset}"),
                commit_timestamp_ms: 1_700_000_000_000 + offset,
            },
        }
    }

    #[test]
    fn group_partitions_follow_kafkas_hash() {
        // Values of Java's String.hashCode.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
        // Kafka's Utils.abs maps Integer.MIN_VALUE to 0, not to itself.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 8), 0);
        // Negative hashes use their absolute value.
        let h = java_string_hash("my-group");
        assert!(h < 0, "{h}");
        assert_eq!(partition_for("my-group", 50), (h.abs() % 50));
        // UTF-16 code units, as Java counts them: one astral character is two units.
        assert_eq!(
            java_string_hash("😀"),
            0xD83D_i32.wrapping_mul(31).wrapping_add(0xDE00)
        );
        for g in ["a", "orders", "x".repeat(300).as_str()] {
            assert!((0..8).contains(&partition_for(g, 8)));
        }
        assert_eq!(partition_for("anything", 1), 0);
    }

    #[test]
    fn keys_and_values_are_kafkas_offset_commit_schemas() {
        let key = encode_key(&commit("g", "t", 3, 9)).unwrap();
        assert_eq!(
            &key[..],
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3],
            "version 1, group, topic, partition"
        );
        let value = encode_value(&commit("g", "t", 3, 9)).unwrap().unwrap();
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&9i64.to_be_bytes());
        expected.extend_from_slice(&4i32.to_be_bytes());
        expected.extend_from_slice(&[0, 2, b'm', b'9']);
        expected.extend_from_slice(&1_700_000_000_009i64.to_be_bytes());
        assert_eq!(&value[..], &expected[..]);
        let tomb = OffsetRecord::Tombstone {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(encode_value(&tomb).unwrap(), None);
        assert_eq!(encode_key(&tomb).unwrap(), key);
        assert_eq!(
            decode_record(0, &key, Some(&value)).unwrap(),
            Some(commit("g", "t", 3, 9))
        );
        assert_eq!(decode_record(0, &key, None).unwrap(), Some(tomb));
    }

    #[test]
    fn older_value_versions_and_group_metadata_records_are_read() {
        let key = encode_key(&commit("g", "t", 0, 1)).unwrap();
        // v1 carries an expire timestamp and no leader epoch.
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&7i64.to_be_bytes());
        v1.extend_from_slice(&[0, 0]);
        v1.extend_from_slice(&5i64.to_be_bytes());
        v1.extend_from_slice(&(-1i64).to_be_bytes());
        let Some(OffsetRecord::Commit { value, .. }) = decode_record(0, &key, Some(&v1)).unwrap()
        else {
            panic!("not a commit")
        };
        assert_eq!((value.offset, value.leader_epoch), (7, -1));
        // Kafka's group metadata (key version 2) is not kept here.
        assert_eq!(
            decode_record(0, &[0, 2, 0, 1, b'g'], Some(b"x")).unwrap(),
            None
        );
        assert!(decode_record(0, &[0, 9], None).is_err());
        assert!(decode_record(0, &key[..key.len() - 1], None).is_err());
        assert!(decode_record(0, &key, Some(&v1[..v1.len() - 1])).is_err());
        // A string longer than its bytes, a negative length: errors, never panics.
        assert!(decode_record(0, &[0, 1, 0x7f, 0x7f, b'g'], None).is_err());
        assert!(decode_record(0, &[0, 1, 0xff, 0xff], None).is_err());
    }

    fn membership(generation: i32) -> OffsetRecord {
        OffsetRecord::Membership {
            group: "g".into(),
            membership: Some(Box::new(Membership {
                protocol_type: "consumer".into(),
                generation,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                state_timestamp_ms: 1_700_000_000_000,
                members: vec![
                    MemberRecord {
                        member_id: "m1".into(),
                        instance_id: None,
                        client_id: "c".into(),
                        client_host: "/10.0.0.1".into(),
                        rebalance_timeout_ms: 30_000,
                        session_timeout_ms: 10_000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"a1"),
                    },
                    MemberRecord {
                        member_id: "pod-0-x".into(),
                        instance_id: Some("pod-0".into()),
                        client_id: "c".into(),
                        client_host: "/10.0.0.2".into(),
                        rebalance_timeout_ms: 30_000,
                        session_timeout_ms: 45_000,
                        subscription: Bytes::new(),
                        assignment: Bytes::from_static(b"a2"),
                    },
                ],
            })),
        }
    }

    #[test]
    fn memberships_are_kafkas_group_metadata_schemas() {
        let r = membership(7);
        let key = encode_key(&r).unwrap();
        assert_eq!(&key[..], &[0, 2, 0, 1, b'g'], "version 2, group");
        let value = encode_value(&r).unwrap().unwrap();
        // Version 3, protocol type, generation, protocol, leader, state timestamp, 2 members.
        let mut head = vec![0, 3, 0, 8];
        head.extend_from_slice(b"consumer");
        head.extend_from_slice(&7i32.to_be_bytes());
        head.extend_from_slice(&[0, 5]);
        head.extend_from_slice(b"range");
        head.extend_from_slice(&[0, 2, b'm', b'1']);
        head.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        head.extend_from_slice(&2i32.to_be_bytes());
        // The first member: id, null instance id, client id, host, timeouts, bytes.
        head.extend_from_slice(&[0, 2, b'm', b'1', 0xff, 0xff, 0, 1, b'c']);
        assert_eq!(&value[..head.len()], &head[..]);
        assert_eq!(decode_record(3, &key, Some(&value)).unwrap(), Some(r));
        let gone = OffsetRecord::Membership {
            group: "g".into(),
            membership: None,
        };
        assert_eq!(encode_value(&gone).unwrap(), None);
        assert_eq!(decode_record(3, &key, None).unwrap(), Some(gone));
        // Advisory: a value that does not parse, or of a flexible version, is skipped.
        for cut in [1, 10, value.len() - 1] {
            assert_eq!(decode_record(3, &key, Some(&value[..cut])).unwrap(), None);
        }
        let mut v4 = value.to_vec();
        v4[1] = 4;
        assert_eq!(decode_record(3, &key, Some(&v4)).unwrap(), None);
        // In a batch beside offsets, in order.
        let records = vec![
            commit("g", "t", 0, 1),
            membership(8),
            commit("g", "t", 1, 2),
        ];
        let got = decode_batches(&encode_batch(&records, 0).unwrap(), 0).unwrap();
        assert_eq!(got.into_iter().map(|(_, r)| r).collect::<Vec<_>>(), records);
    }

    #[test]
    fn version_0_and_1_memberships_are_read() {
        // v0: no state timestamp, no instance ids, only a session timeout.
        let mut v0 = vec![0, 0, 0, 8];
        v0.extend_from_slice(b"consumer");
        v0.extend_from_slice(&3i32.to_be_bytes());
        v0.extend_from_slice(&[0, 5]);
        v0.extend_from_slice(b"range");
        v0.extend_from_slice(&[0, 1, b'm']);
        v0.extend_from_slice(&1i32.to_be_bytes());
        v0.extend_from_slice(&[0, 1, b'm', 0, 1, b'c', 0, 1, b'h']);
        v0.extend_from_slice(&6_000i32.to_be_bytes());
        v0.extend_from_slice(&[0, 0, 0, 1, b's', 0, 0, 0, 1, b'a']);
        let Some(OffsetRecord::Membership {
            membership: Some(m),
            ..
        }) = decode_record(0, &[0, 2, 0, 1, b'g'], Some(&v0)).unwrap()
        else {
            panic!("not a membership")
        };
        assert_eq!((m.generation, m.state_timestamp_ms), (3, -1));
        let member = &m.members[0];
        assert_eq!(
            (member.session_timeout_ms, member.rebalance_timeout_ms),
            (6_000, 6_000)
        );
        assert_eq!(&member.assignment[..], b"a");
    }

    #[test]
    fn batches_round_trip_and_skip_offsets_before_the_start() {
        let records = vec![
            commit("g", "t", 0, 5),
            OffsetRecord::Tombstone {
                group: "h".into(),
                topic: "u".into(),
                partition: 1,
            },
            commit("g", "t", 1, 6),
        ];
        let mut batch = BytesMut::from(&encode_batch(&records, 1).unwrap()[..]);
        // One batch, as a producer without an id writes it: base sequence -1.
        let len = i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize;
        assert_eq!(len + LOG_OVERHEAD, batch.len());
        assert_eq!(&batch[53..57], &(-1i32).to_be_bytes());
        assert_eq!(i32::from_be_bytes(batch[57..61].try_into().unwrap()), 3);
        // The log assigns the base offset; the CRC does not cover it.
        batch[0..8].copy_from_slice(&100i64.to_be_bytes());
        let mut two = batch.to_vec();
        let mut second = BytesMut::from(&encode_batch(&records[..1], 2).unwrap()[..]);
        second[0..8].copy_from_slice(&103i64.to_be_bytes());
        two.extend_from_slice(&second);
        let got = decode_batches(&two, 0).unwrap();
        let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, vec![100, 101, 102, 103]);
        assert_eq!(
            got.into_iter().map(|(_, r)| r).collect::<Vec<_>>()[..3],
            records[..]
        );
        let from = decode_batches(&two, 102).unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(from[0].0, 102);
    }

    #[test]
    fn damaged_batches_are_errors_not_panics() {
        let batch = encode_batch(&[commit("g", "t", 0, 5)], 1).unwrap().to_vec();
        for cut in [1, 20, 61, batch.len() - 1] {
            assert!(decode_batches(&batch[..cut], 0).is_err(), "cut at {cut}");
        }
        let mut flipped = batch.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(decode_batches(&flipped, 0).is_err());
        // A record count far beyond the bytes: an error, no allocation from the count.
        let mut huge = batch.clone();
        huge[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&huge[21..]);
        huge[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(decode_batches(&huge, 0).is_err());
        assert!(decode_batches(&[], 0).unwrap().is_empty());
    }

    #[test]
    fn names_too_long_for_the_schema_are_refused() {
        let long = commit(&"g".repeat(40_000), "t", 0, 1);
        assert!(matches!(
            encode_key(&long),
            Err(RecordError::TooLong {
                what: "group id",
                ..
            })
        ));
        assert!(encode_batch(&[long], 0).is_err());
    }

    /// Found by the `group_offsets` fuzz target: a batch whose base offset plus a record's
    /// offset delta overflows was a panic (with overflow checks) or a wrapped offset.
    #[test]
    fn an_offset_past_i64_max_is_corrupt_not_a_panic() {
        let mut b = encode_batch(&[commit("g", "t", 0, 1)], 0).unwrap().to_vec();
        b[..8].copy_from_slice(&i64::MAX.to_be_bytes());
        // The record's offset delta (after its length and attributes and timestamp delta).
        let rec = BATCH_HEADER_LEN;
        b[rec + 3] = 2; // zigzag 1
        assert!(matches!(
            decode_batches(&b, 0),
            Err(RecordError::Corrupt { .. })
        ));
    }
}
