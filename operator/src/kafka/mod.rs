//! A small Kafka admin client: just what the operator needs from its brokers (ApiVersions,
//! Metadata, DescribeConfigs, CreateTopics, CreatePartitions, IncrementalAlterConfigs,
//! DeleteTopics, and for draining brokers AlterPartitionReassignments, ListPartitionReassignments,
//! DescribeLogDirs and UnregisterBroker; for the queue counts on status ListOffsets, ListGroups
//! and DescribeShareGroupOffsets (and the broker's `/metrics`); for secured clusters SaslHandshake, SaslAuthenticate, the
//! ACL APIs and the SCRAM user APIs), on one connection (TCP, or TLS over TCP), with the
//! `kafka-protocol` codec.
//!
//! Versions are negotiated with ApiVersions: for each API the client uses the highest version both
//! sides support within the range this code fills correctly.
//!
//! This file holds the connection (framing, version negotiation, errors); `security.rs` TLS and
//! the SASL exchanges; `topics.rs` the topic calls the queue sync makes, `cluster.rs` the calls
//! that move partitions and brokers, `acls.rs` ACLs and SCRAM users, `offsets.rs` the reads
//! behind the queue counts. It imports only the pure types it returns (`queues::ObservedTopic`,
//! `scale::TopicPartition`, `queue_counts::Partition`).

mod acls;
mod cluster;
mod offsets;
mod quotas;
mod security;
mod topics;

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

pub use acls::{
    acl_changes, AclBinding, AclOperation, AclPatternType, AclPermission, AclResourceType,
};
pub use cluster::{LogDirUsage, OngoingReassignment};
pub use offsets::{fetch_metrics, GroupOffsets, ShareStarts};
pub use quotas::{
    quota_changes, QuotaChange, QuotasByUser, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE,
};
pub use security::{
    plain_message, random_bytes, salted_password, tls_config, ClientSecurity, SaslCredentials,
    SaslMechanism, ScramClient, ScramClientError,
};
pub use topics::ClusterMetadata;

/// Largest response frame accepted (a metadata answer of many topics fits easily).
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Broker-side timeout of topic operations.
const OP_TIMEOUT_MS: i32 = 30_000;

/// Version range this client fills correctly, per API key.
const OUR_VERSIONS: &[(i16, i16, i16)] = &[
    (3, 1, 12), // Metadata
    (19, 2, 7), // CreateTopics
    (20, 1, 5), // DeleteTopics (v6 switches to topic states)
    (32, 1, 4), // DescribeConfigs
    (37, 0, 3), // CreatePartitions
    (44, 0, 1), // IncrementalAlterConfigs
    (45, 0, 1), // AlterPartitionReassignments
    (46, 0, 0), // ListPartitionReassignments
    (35, 1, 4), // DescribeLogDirs (v4: total and usable bytes; Kafka 4 dropped v0)
    (60, 0, 2), // DescribeCluster (v2: fenced brokers too)
    (64, 0, 0), // UnregisterBroker
    (55, 0, 2), // DescribeQuorum
    (17, 1, 1), // SaslHandshake (v1: the SASL bytes travel in SaslAuthenticate)
    (36, 0, 2), // SaslAuthenticate
    (29, 1, 3), // DescribeAcls (v1: pattern types)
    (30, 1, 3), // CreateAcls
    (31, 1, 3), // DeleteAcls
    (50, 0, 0), // DescribeUserScramCredentials
    (51, 0, 0), // AlterUserScramCredentials
    (2, 1, 10), // ListOffsets
    (16, 5, 5), // ListGroups (v5: the types filter, to list share groups)
    (90, 0, 0), // DescribeShareGroupOffsets
    (9, 8, 9),  // OffsetFetch (v8: several groups in one request; v10 names topics by id)
    (48, 0, 1), // DescribeClientQuotas
    (49, 0, 1), // AlterClientQuotas
];

/// API key of DescribeClientQuotas.
pub const DESCRIBE_CLIENT_QUOTAS: i16 = 48;
/// API key of ListOffsets.
pub const LIST_OFFSETS: i16 = 2;
/// API key of ListGroups.
pub const LIST_GROUPS: i16 = 16;
/// API key of DescribeShareGroupOffsets.
pub const DESCRIBE_SHARE_GROUP_OFFSETS: i16 = 90;
/// API key of OffsetFetch.
pub const OFFSET_FETCH: i16 = 9;

/// API key of DescribeCluster.
pub const DESCRIBE_CLUSTER: i16 = 60;

/// API key of AlterPartitionReassignments.
pub const ALTER_PARTITION_REASSIGNMENTS: i16 = 45;
/// API key of ListPartitionReassignments.
pub const LIST_PARTITION_REASSIGNMENTS: i16 = 46;
/// API key of UnregisterBroker.
pub const UNREGISTER_BROKER: i16 = 64;
/// API key of DescribeLogDirs.
pub const DESCRIBE_LOG_DIRS: i16 = 35;
/// API key of DescribeQuorum.
pub const DESCRIBE_QUORUM: i16 = 55;

/// Name of an API key, for messages.
pub fn api_name(key: i16) -> &'static str {
    match key {
        3 => "Metadata",
        19 => "CreateTopics",
        20 => "DeleteTopics",
        32 => "DescribeConfigs",
        37 => "CreatePartitions",
        44 => "IncrementalAlterConfigs",
        ALTER_PARTITION_REASSIGNMENTS => "AlterPartitionReassignments",
        LIST_PARTITION_REASSIGNMENTS => "ListPartitionReassignments",
        DESCRIBE_CLUSTER => "DescribeCluster",
        UNREGISTER_BROKER => "UnregisterBroker",
        DESCRIBE_LOG_DIRS => "DescribeLogDirs",
        DESCRIBE_QUORUM => "DescribeQuorum",
        17 => "SaslHandshake",
        36 => "SaslAuthenticate",
        29 => "DescribeAcls",
        30 => "CreateAcls",
        31 => "DeleteAcls",
        50 => "DescribeUserScramCredentials",
        51 => "AlterUserScramCredentials",
        LIST_OFFSETS => "ListOffsets",
        LIST_GROUPS => "ListGroups",
        DESCRIBE_SHARE_GROUP_OFFSETS => "DescribeShareGroupOffsets",
        OFFSET_FETCH => "OffsetFetch",
        _ => "unknown API",
    }
}

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One admin connection to one broker.
pub struct AdminClient {
    addr: String,
    stream: Box<dyn Io>,
    correlation_id: i32,
    timeout: Duration,
    versions: HashMap<i16, (i16, i16)>,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn code_text(code: i16, message: Option<&StrBytes>) -> Option<String> {
    let err = ResponseError::try_from_code(code)?;
    Some(match message {
        Some(m) if !m.as_str().is_empty() => format!("{err}: {}", m.as_str()),
        _ => err.to_string(),
    })
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// Connects over plain TCP without SASL and negotiates API versions. Every step is bounded
    /// by `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<AdminClient> {
        AdminClient::connect_secure(addr, "", timeout, &ClientSecurity::default()).await
    }

    /// Connects to `addr` (a pod IP and port), with TLS when `security` has a CA (the broker's
    /// certificate must name `server_name`, e.g. the pod's DNS name, since pod IPs are not in
    /// certificates), negotiates API versions, and authenticates when `security` has SASL
    /// credentials. Every step is bounded by `timeout`.
    pub async fn connect_secure(
        addr: &str,
        server_name: &str,
        timeout: Duration,
        security: &ClientSecurity,
    ) -> Result<AdminClient> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Kafka {
                addr: addr.to_string(),
                request: "connect",
                reason: format!("no connection within {timeout:?}"),
            })?
            .map_err(|e| Error::Kafka {
                addr: addr.to_string(),
                request: "connect",
                reason: e.to_string(),
            })?;
        // Admin requests are small and answered one at a time: no batching to wait for.
        let _ = tcp.set_nodelay(true);
        let fail = |request: &'static str, reason: String| Error::Kafka {
            addr: addr.to_string(),
            request,
            reason,
        };
        let stream: Box<dyn Io> = match &security.tls_ca_pem {
            None => Box::new(tcp),
            Some(ca) => {
                let config = tls_config(ca).map_err(|e| fail("TLS handshake", e))?;
                let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
                    fail("TLS handshake", format!("server name {server_name:?}: {e}"))
                })?;
                let connector = tokio_rustls::TlsConnector::from(config);
                let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| fail("TLS handshake", format!("not finished within {timeout:?}")))?
                    .map_err(|e| fail("TLS handshake", format!("with {server_name}: {e}")))?;
                Box::new(tls)
            }
        };
        let mut client = AdminClient {
            addr: addr.to_string(),
            stream,
            correlation_id: 0,
            timeout,
            versions: HashMap::new(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-operator"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = client.send(&request, 3, "ApiVersions").await?;
        if let Some(err) = code_text(response.error_code, None) {
            return Err(client.err("ApiVersions", err));
        }
        client.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(sasl) = &security.sasl {
            client.authenticate(sasl).await?;
        }
        Ok(client)
    }

    /// SaslHandshake, then the mechanism's SaslAuthenticate round trips.
    async fn authenticate(&mut self, sasl: &SaslCredentials) -> Result<()> {
        let name = "SaslHandshake";
        let version = self.version_for::<SaslHandshakeRequest>(name)?;
        let request =
            SaslHandshakeRequest::default().with_mechanism(str_bytes(sasl.mechanism.name()));
        let response = self.send(&request, version, name).await?;
        if response.error_code != 0 {
            let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
            let err = code_text(response.error_code, None).unwrap_or_default();
            return Err(self.err(
                name,
                format!(
                    "{err}: the broker offers {offered:?}, not {}",
                    sasl.mechanism.name()
                ),
            ));
        }
        match sasl.mechanism {
            SaslMechanism::Plain => {
                self.sasl_round(plain_message(&sasl.username, &sasl.password))
                    .await?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let nonce = random_bytes(24).map_err(|e| self.err("SaslAuthenticate", e))?;
                let nonce =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, nonce);
                let mut scram =
                    ScramClient::new(sasl.mechanism, &sasl.username, &sasl.password, &nonce);
                let server_first = self.sasl_round(scram.first()).await?;
                let answer = scram
                    .answer(&server_first)
                    .map_err(|e| self.err("SaslAuthenticate", e.to_string()))?;
                let server_final = self.sasl_round(answer).await?;
                scram
                    .check(&server_final)
                    .map_err(|e| self.err("SaslAuthenticate", e.to_string()))?;
            }
        }
        tracing::debug!(addr = %self.addr, user = %sasl.username, mechanism = sasl.mechanism.name(), "authenticated");
        Ok(())
    }

    /// One SaslAuthenticate round trip: our bytes out, the broker's back.
    async fn sasl_round(&mut self, bytes: Vec<u8>) -> Result<bytes::Bytes> {
        let name = "SaslAuthenticate";
        let version = self.version_for::<SaslAuthenticateRequest>(name)?;
        let request = SaslAuthenticateRequest::default().with_auth_bytes(bytes.into());
        let response = self.send(&request, version, name).await?;
        if let Some(err) = code_text(response.error_code, response.error_message.as_ref()) {
            return Err(self.err(name, err));
        }
        Ok(response.auth_bytes)
    }

    fn err(&self, request: &'static str, reason: impl Into<String>) -> Error {
        Error::Kafka {
            addr: self.addr.clone(),
            request,
            reason: reason.into(),
        }
    }

    fn version_for<R: Request>(&self, name: &'static str) -> Result<i16> {
        let (_, ours_min, ours_max) = OUR_VERSIONS
            .iter()
            .copied()
            .find(|(k, _, _)| *k == R::KEY)
            .ok_or_else(|| self.err(name, "API not used by this client"))?;
        let (theirs_min, theirs_max) = self
            .versions
            .get(&R::KEY)
            .copied()
            .ok_or_else(|| self.err(name, "the broker does not support this API"))?;
        let version = ours_max.min(theirs_max);
        if version < ours_min.max(theirs_min) {
            return Err(self.err(
                name,
                format!("no common version (broker {theirs_min}..={theirs_max}, client {ours_min}..={ours_max})"),
            ));
        }
        Ok(version)
    }

    async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        name: &'static str,
    ) -> Result<R::Response> {
        match tokio::time::timeout(self.timeout, self.roundtrip(request, version, name)).await {
            Ok(result) => result,
            Err(_) => Err(self.err(name, format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn roundtrip<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        name: &'static str,
    ) -> Result<R::Response> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-operator")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| self.err(name, format!("encoding: {e}")))?;
        let len = u32::try_from(body.len()).map_err(|_| self.err(name, "request too large"))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(len);
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| self.err(name, format!("write: {e}")))?;

        let mut len_buf = [0u8; 4];
        self.stream
            .read_exact(&mut len_buf)
            .await
            .map_err(|e| self.err(name, format!("read: {e}")))?;
        let len = usize::try_from(u32::from_be_bytes(len_buf)).unwrap_or(usize::MAX);
        if len > MAX_FRAME {
            return Err(self.err(name, format!("response frame of {len} bytes is too large")));
        }
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .await
            .map_err(|e| self.err(name, format!("read: {e}")))?;
        let mut buf = bytes::Bytes::from(payload);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| self.err(name, format!("decoding response header: {e}")))?;
        if header.correlation_id != self.correlation_id {
            return Err(self.err(
                name,
                format!(
                    "correlation id {} does not match request {}",
                    header.correlation_id, self.correlation_id
                ),
            ));
        }
        let response = R::Response::decode(&mut buf, version)
            .map_err(|e| self.err(name, format!("decoding response: {e}")))?;
        if buf.has_remaining() {
            tracing::debug!(addr = %self.addr, request = name, extra = buf.remaining(), "response has trailing bytes");
        }
        Ok(response)
    }

    /// Whether this client and the broker share a version of API `key`.
    pub fn supports(&self, key: i16) -> bool {
        let Some((_, ours_min, ours_max)) =
            OUR_VERSIONS.iter().copied().find(|(k, _, _)| *k == key)
        else {
            return false;
        };
        self.versions
            .get(&key)
            .is_some_and(|(lo, hi)| ours_max.min(*hi) >= ours_min.max(*lo))
    }

    /// The broker's address, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// GET `http://<addr>/readyz`: true on a 200 answer. A plain HTTP/1.1 request; the operator needs
/// nothing more and this keeps an HTTP client library out of the dependency tree.
pub async fn probe_readyz(addr: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        // "HTTP/1.1 200"
        Some(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests;
