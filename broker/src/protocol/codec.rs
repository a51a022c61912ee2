//! Pure framing and header handling: no sockets here, so every rule is unit-tested.
//!
//! A Kafka frame is a 4-byte big-endian length followed by that many bytes: the request
//! header (API key, API version, correlation id, client id, tagged fields) and the body.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::frame::{Frame, Splice, SpliceBuf, SPLICE_MIN};
use super::guard;
use crate::error::BrokerError;

/// Validates a frame length prefix before anything is buffered.
pub fn check_frame_len(
    peer: SocketAddr,
    prefix: [u8; 4],
    max: usize,
) -> Result<usize, BrokerError> {
    let len = i32::from_be_bytes(prefix);
    if len < 0 {
        return Err(BrokerError::NegativeFrameLength { peer, len });
    }
    let len = len as usize;
    if len > max {
        return Err(BrokerError::FrameTooLarge { peer, len, max });
    }
    Ok(len)
}

/// The first fields of a request, read without decoding the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads the fixed-position fields every request header version starts with.
pub fn peek_header(peer: SocketAddr, frame: &[u8]) -> Result<RawHeader, BrokerError> {
    if frame.len() < 8 {
        return Err(BrokerError::TruncatedHeader {
            peer,
            len: frame.len(),
        });
    }
    Ok(RawHeader {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Human-readable API name for logs and metrics labels.
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(()) => format!("Unknown({key})"),
    }
}

/// Decodes the full request header; `frame` is left at the start of the body.
pub fn decode_header(
    peer: SocketAddr,
    key: ApiKey,
    raw: RawHeader,
    frame: &mut Bytes,
) -> Result<RequestHeader, BrokerError> {
    let header_version = key.request_header_version(raw.api_version);
    RequestHeader::decode(frame, header_version).map_err(|e| BrokerError::Undecodable {
        peer,
        api: api_name(raw.api_key),
        api_key: raw.api_key,
        api_version: raw.api_version,
        reason: format!("request header v{header_version}: {e:#}"),
    })
}

/// Decodes a request body of type `R` at `version`, after [`guard::check`] has walked its
/// structure: `kafka-protocol` pre-allocates arrays from the peer-supplied count, so a body
/// whose lengths claim more than the frame holds must never reach it.
pub fn decode_body<R: Decodable>(
    peer: SocketAddr,
    raw: RawHeader,
    body: &mut Bytes,
) -> Result<R, BrokerError> {
    guard::check(raw.api_key, raw.api_version, body).map_err(|e| BrokerError::Undecodable {
        peer,
        api: api_name(raw.api_key),
        api_key: raw.api_key,
        api_version: raw.api_version,
        reason: format!("refused before decoding: {e}"),
    })?;
    R::decode(body, raw.api_version).map_err(|e| BrokerError::Undecodable {
        peer,
        api: api_name(raw.api_key),
        api_key: raw.api_key,
        api_version: raw.api_version,
        reason: format!("{e:#}"),
    })
}

/// Encodes `length | response header | body` for a response to `raw`.
///
/// `header_version` is normally `ApiKey::response_header_version(version)`; ApiVersions always
/// answers with header v0.
pub fn encode_response<R: Encodable>(
    raw: RawHeader,
    header_version: i16,
    body_version: i16,
    body: &R,
) -> Result<Bytes, BrokerError> {
    encode_with(raw, header_version, body_version, body, |size| {
        BytesMut::with_capacity(4 + size)
    })
    .map(BytesMut::freeze)
}

/// Encodes the length prefix, header and body of a response into the buffer `make` returns
/// for the frame's size (without its 4-byte prefix).
fn encode_with<R: Encodable, B: ByteBufMut>(
    raw: RawHeader,
    header_version: i16,
    body_version: i16,
    body: &R,
    make: impl FnOnce(usize) -> B,
) -> Result<B, BrokerError> {
    let err = |e: anyhow::Error| BrokerError::Encode {
        api: api_name(raw.api_key),
        api_version: body_version,
        reason: format!("{e:#}"),
    };
    let header = ResponseHeader::default().with_correlation_id(raw.correlation_id);
    let size = header.compute_size(header_version).map_err(err)?
        + body.compute_size(body_version).map_err(err)?;
    let mut buf = make(size);
    buf.put_i32(i32::try_from(size).unwrap_or(i32::MAX));
    header.encode(&mut buf, header_version).map_err(err)?;
    body.encode(&mut buf, body_version).map_err(err)?;
    Ok(buf)
}

/// Encodes a response body for `raw` (its normal header version) into a [`Frame`] that keeps
/// `splice` by reference where the encoder writes it: record sets at least [`SPLICE_MIN`]
/// long (smaller ones are copied) and file regions (always). `splice` must be in the order
/// the encoder meets them (a fetch response: topics, then partitions, in order). Falls back
/// to one buffer if the encoder does something a spliced buffer cannot hold; with file
/// regions, whose stand-ins must never be sent, that is an error instead (the caller reads
/// the regions and encodes again).
pub fn respond_spliced<R: Encodable + HeaderVersion>(
    raw: RawHeader,
    body: &R,
    splice: impl IntoIterator<Item = Splice>,
) -> Result<Frame, BrokerError> {
    let splice: Vec<Splice> = splice
        .into_iter()
        .filter(|s| !matches!(s, Splice::Keep(b) if b.len() < SPLICE_MIN))
        .collect();
    if splice.is_empty() {
        return respond(raw, body).map(Frame::One);
    }
    let files = splice.iter().any(|s| matches!(s, Splice::File { .. }));
    let kept: usize = splice.iter().map(|s| s.bytes().len()).sum();
    let header_version = R::header_version(raw.api_version);
    let buf = encode_with(raw, header_version, raw.api_version, body, |size| {
        let copied = size - kept.min(size);
        SpliceBuf::new(4 + copied.min(64 * 1024), splice)
    })?;
    match buf.finish() {
        Some(frame) => Ok(frame),
        None if files => Err(BrokerError::Encode {
            api: api_name(raw.api_key),
            api_version: raw.api_version,
            reason: "the encoder wrote a file region's stand-in out of its place".into(),
        }),
        None => respond(raw, body).map(Frame::One),
    }
}

/// Encodes a response body for `raw` with the API's normal response header version.
pub fn respond<R: Encodable + HeaderVersion>(
    raw: RawHeader,
    body: &R,
) -> Result<Bytes, BrokerError> {
    let hv = R::header_version(raw.api_version);
    encode_response(raw, hv, raw.api_version, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1234))
    }

    #[test]
    fn negative_length_is_refused() {
        let e = check_frame_len(peer(), (-1i32).to_be_bytes(), 100).expect_err("negative");
        assert!(matches!(
            e,
            BrokerError::NegativeFrameLength { len: -1, .. }
        ));
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        let e = check_frame_len(peer(), 101i32.to_be_bytes(), 100).expect_err("too big");
        assert!(matches!(
            e,
            BrokerError::FrameTooLarge {
                len: 101,
                max: 100,
                ..
            }
        ));
        assert_eq!(
            check_frame_len(peer(), 100i32.to_be_bytes(), 100).expect("fits"),
            100
        );
        assert_eq!(
            check_frame_len(peer(), 0i32.to_be_bytes(), 100).expect("empty"),
            0
        );
    }

    #[test]
    fn short_frames_are_truncated_headers() {
        let e = peek_header(peer(), &[0, 18, 0, 3, 0, 0]).expect_err("short");
        assert!(matches!(e, BrokerError::TruncatedHeader { len: 6, .. }));
        let h = peek_header(peer(), &[0, 18, 0, 3, 0, 0, 0, 7]).expect("8 bytes");
        assert_eq!(
            h,
            RawHeader {
                api_key: 18,
                api_version: 3,
                correlation_id: 7
            }
        );
    }

    #[test]
    fn header_round_trips_and_body_follows() {
        let header = RequestHeader::default()
            .with_request_api_key(3)
            .with_request_api_version(12)
            .with_correlation_id(42)
            .with_client_id(Some("c".into()));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, 2).expect("encode");
        buf.put_slice(b"BODY");
        let mut frame = buf.freeze();
        let raw = peek_header(peer(), &frame).expect("peek");
        let decoded =
            decode_header(peer(), ApiKey::Metadata, raw, &mut frame).expect("decode header");
        assert_eq!(decoded.correlation_id, 42);
        assert_eq!(&frame[..], b"BODY");
    }

    #[test]
    fn response_frame_has_length_prefix_and_correlation_id() {
        let raw = RawHeader {
            api_key: 18,
            api_version: 0,
            correlation_id: 9,
        };
        let body = kafka_protocol::messages::ApiVersionsResponse::default();
        let frame = encode_response(raw, 0, 0, &body).expect("encode");
        let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(&frame[4..8], &9i32.to_be_bytes());
    }
}
