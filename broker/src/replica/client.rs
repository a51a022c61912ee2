//! A broker's Kafka connection to another broker's inter-broker listener: the same wire
//! protocol, framing and codec clients use, one request at a time. Followers fetch from their
//! leader with it (Fetch with a replica id, OffsetForLeaderEpoch); a broker passes a
//! DescribeQuorum on to the quorum leader with it. TLS when the inter-broker listener is SSL,
//! with this broker's certificate as the client certificate.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::BrokerError;
use crate::security::tls::{Stream, TlsContext};

/// The largest response a follower accepts (a fetch asks for far less).
const MAX_RESPONSE: usize = 256 << 20;

/// One connection to the leader's Kafka listener.
#[derive(Debug)]
pub struct PeerConnection {
    leader: i32,
    addr: String,
    stream: Stream,
    correlation_id: i32,
    client_id: StrBytes,
}

impl PeerConnection {
    /// Connects to broker `leader` at `addr` (its advertised inter-broker address), with TLS
    /// when `tls` is given; the handshake counts against `timeout`.
    pub async fn connect(
        me: i32,
        leader: i32,
        addr: &str,
        timeout: Duration,
        tls: Option<&TlsContext>,
    ) -> Result<PeerConnection, BrokerError> {
        let connect = async {
            let tcp = TcpStream::connect(addr).await?;
            // Fetch requests and their answers are small and latency-bound.
            let _ = tcp.set_nodelay(true);
            Stream::over(tcp, addr, tls).await
        };
        let stream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(peer_error(leader, addr, "connect", e.to_string())),
            Err(_) => {
                return Err(peer_error(
                    leader,
                    addr,
                    "connect",
                    format!("no connection within {timeout:?}"),
                ))
            }
        };
        Ok(PeerConnection {
            leader,
            addr: addr.to_string(),
            stream,
            correlation_id: 0,
            client_id: StrBytes::from_string(format!("sluice-replica-{me}")),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A client id other than `sluice-replica-<id>` (a forwarded request names itself).
    pub fn with_client_id(mut self, client_id: &str) -> PeerConnection {
        self.client_id = StrBytes::from_string(client_id.to_string());
        self
    }

    fn err(&self, request: &'static str, reason: impl Into<String>) -> BrokerError {
        peer_error(self.leader, &self.addr, request, reason.into())
    }

    /// Sends `request` at `version` and reads its response, within `timeout`. Any error
    /// leaves the connection unusable (the caller reconnects).
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        name: &'static str,
        timeout: Duration,
    ) -> Result<R::Response, BrokerError> {
        match tokio::time::timeout(timeout, self.roundtrip(request, version, name)).await {
            Ok(r) => r,
            Err(_) => Err(self.err(name, format!("no answer within {timeout:?}"))),
        }
    }

    async fn roundtrip<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        name: &'static str,
    ) -> Result<R::Response, BrokerError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::with_capacity(256);
        body.put_u32(0);
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| self.err(name, format!("encoding: {e}")))?;
        let len = u32::try_from(body.len() - 4).map_err(|_| self.err(name, "request too large"))?;
        body[..4].copy_from_slice(&len.to_be_bytes());
        self.stream
            .write_all(&body)
            .await
            .map_err(|e| self.err(name, format!("write: {e}")))?;

        let mut len_buf = [0u8; 4];
        self.stream
            .read_exact(&mut len_buf)
            .await
            .map_err(|e| self.err(name, format!("read: {e}")))?;
        let len = u32::from_be_bytes(len_buf) as usize;
        if len > MAX_RESPONSE {
            return Err(self.err(name, format!("response of {len} bytes is too large")));
        }
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .await
            .map_err(|e| self.err(name, format!("read: {e}")))?;
        let mut buf = Bytes::from(payload);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| self.err(name, format!("decoding the response header: {e}")))?;
        if header.correlation_id != self.correlation_id {
            return Err(self.err(
                name,
                format!(
                    "correlation id {} answers request {}",
                    header.correlation_id, self.correlation_id
                ),
            ));
        }
        let response = R::Response::decode(&mut buf, version)
            .map_err(|e| self.err(name, format!("decoding the response: {e}")))?;
        if buf.has_remaining() {
            tracing::debug!(leader = self.leader, addr = %self.addr, request = name, extra = buf.remaining(), "response has trailing bytes");
        }
        Ok(response)
    }
}

fn peer_error(leader: i32, addr: &str, request: &'static str, reason: String) -> BrokerError {
    BrokerError::Peer {
        broker: leader,
        addr: addr.to_string(),
        request,
        reason,
    }
}
