//! Kafka framing with `kafka-protocol`: request frames for the raw clients (`ready`, `conns`)
//! and request decoding / response frames for the no-op sink. A frame is a 4-byte big-endian
//! length and then the header and body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// `length | request header | body` for `req` at `version`.
pub fn request_frame<R: Encodable + HeaderVersion>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    req: &R,
) -> Result<Bytes> {
    let hv = R::header_version(version);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-loadgen")));
    let size = header.compute_size(hv)? + req.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size).context("request too large")?);
    header.encode(&mut buf, hv)?;
    req.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Produce v8: understood by every Kafka 3.x/4.x broker and by Sluice, with plain topic names;
/// its last field is the partition's records.
pub const PRODUCE_VERSION: i16 = 8;

/// A Produce v8 frame carrying `records` for one partition (no transaction, 30 s timeout).
pub fn produce_frame(
    topic: &str,
    partition: i32,
    acks: i16,
    records: &Bytes,
    correlation_id: i32,
) -> Result<Bytes> {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records.clone()))])]);
    request_frame(ApiKey::Produce, PRODUCE_VERSION, correlation_id, &req)
}

/// Decodes a response frame body (without its length prefix): correlation id and body.
pub fn decode_response<R: Decodable + HeaderVersion>(
    mut frame: Bytes,
    version: i16,
) -> Result<(i32, R)> {
    let header = ResponseHeader::decode(&mut frame, R::header_version(version))?;
    let body = R::decode(&mut frame, version)?;
    Ok((header.correlation_id, body))
}

/// `length | response header | body`; `header_version` is the API's (0 for ApiVersions).
pub fn response_frame<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    body: &R,
) -> Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size).context("response too large")?);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// The fixed fields every request header starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peeked {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

pub fn peek(frame: &[u8]) -> Result<Peeked> {
    if frame.len() < 8 {
        bail!("request of {} bytes has no header", frame.len());
    }
    Ok(Peeked {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes the request header and body of a whole request frame (without length prefix).
pub fn decode_request<R: Decodable>(key: ApiKey, p: Peeked, mut frame: Bytes) -> Result<R> {
    RequestHeader::decode(&mut frame, key.request_header_version(p.api_version))?;
    R::decode(&mut frame, p.api_version)
}

/// Records in a record-batch blob (format v2), read from the batch headers: the records count
/// sits at byte 57 of each batch, the batch length at byte 8.
pub fn record_count(records: &[u8]) -> i64 {
    let mut rest = records;
    let mut n = 0i64;
    while rest.len() >= 61 {
        let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        n += i64::from(i32::from_be_bytes([rest[57], rest[58], rest[59], rest[60]]));
        let whole = 12 + len.max(0) as usize;
        if whole > rest.len() {
            break;
        }
        rest = &rest[whole..];
    }
    n
}

/// A blocking connection for one request at a time.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    next_id: i32,
}

impl Conn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, next_id: 1 })
    }

    pub fn call<Q, A>(&mut self, key: ApiKey, version: i16, req: &Q) -> Result<A>
    where
        Q: Encodable + HeaderVersion,
        A: Decodable + HeaderVersion,
    {
        let id = self.next_id;
        self.next_id += 1;
        self.stream
            .write_all(&request_frame(key, version, id, req)?)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        if !(0..=256 << 20).contains(&len) {
            bail!("{key:?} answer of {len} bytes");
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        let (got, resp) = decode_response::<A>(Bytes::from(body), version)?;
        if got != id {
            bail!("{key:?}: correlation id {got}, sent {id}");
        }
        Ok(resp)
    }
}

/// Reads one frame (length prefix excluded) from a byte buffer being filled from a socket;
/// `None` until a whole frame is there.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 || len as usize > max {
        bail!("frame of {len} bytes");
    }
    let len = len as usize;
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(v: &'static [u8]) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(v)),
            headers: Default::default(),
        }
    }

    #[test]
    fn request_frames_round_trip_through_the_sink_decoder() {
        let req = MetadataRequest::default().with_allow_auto_topic_creation(false);
        let frame = request_frame(ApiKey::Metadata, 12, 7, &req).expect("frame");
        let mut buf = BytesMut::from(&frame[..]);
        let body = take_frame(&mut buf, 1 << 20).expect("ok").expect("whole");
        assert!(buf.is_empty());
        let p = peek(&body).expect("peek");
        assert_eq!((p.api_key, p.api_version, p.correlation_id), (3, 12, 7));
        let back: MetadataRequest = decode_request(ApiKey::Metadata, p, body).expect("decode");
        assert!(!back.allow_auto_topic_creation);
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 10, 1, 2][..]);
        assert!(take_frame(&mut buf, 100).expect("ok").is_none());
        let mut bad = BytesMut::from(&[0xffu8, 0, 0, 0][..]);
        assert!(take_frame(&mut bad, 100).is_err());
    }

    #[test]
    fn response_frames_decode_with_their_correlation_id() {
        let frame = response_frame(9, 1, 12, &MetadataResponse::default()).expect("frame");
        let (id, _m): (i32, MetadataResponse) =
            decode_response(frame.slice(4..), 12).expect("decode");
        assert_eq!(id, 9);
    }

    #[test]
    fn record_count_reads_every_batch_header() {
        let opts = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, &[record(b"a"), record(b"b"), record(b"c")], &opts)
            .expect("encode");
        RecordBatchEncoder::encode(&mut buf, &[record(b"d")], &opts).expect("encode");
        assert_eq!(record_count(&buf), 4);
        assert_eq!(record_count(&[]), 0);
    }
}
