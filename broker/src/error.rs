//! The broker's error type. Storage and group errors keep their own enums
//! ([`crate::log::LogError`], [`crate::group::GroupError`]) and are wrapped here with the input
//! that caused them.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::group::GroupError;
use crate::log::LogError;

/// Everything that can go wrong in the broker outside a single Kafka request's error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A setting is out of range. `setting` is the flag name (`--retention-ms`).
    #[error("invalid setting {setting} = {value:?}: allowed is {allowed}")]
    InvalidConfig {
        setting: String,
        value: String,
        allowed: String,
    },
    /// An environment variable starts with `SLUICE_` but is not a setting.
    #[error("unknown environment variable {name}: not a Sluice broker setting (known: {known})")]
    UnknownEnvironmentVariable { name: String, known: String },
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Opening / recovering the data directory failed.
    #[error("cannot open the topic logs in {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: LogError,
    },
    /// Opening or flushing the consumer-group store failed.
    #[error("consumer-group store: {0}")]
    Group(#[from] GroupError),
    /// A file of the broker's own (cluster id, producer-id counter) could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the broker's own holds something it cannot parse.
    #[error("{path} is corrupt: {reason}")]
    CorruptFile { path: PathBuf, reason: String },
    /// TLS certificate files or the SASL users file cannot be used (the message names the
    /// file and why).
    #[error("security settings: {reason}")]
    Security { reason: String },
    /// A request other than ApiVersions, SaslHandshake and SaslAuthenticate on a SASL
    /// listener before the client authenticated.
    #[error("{peer}: {api} before SASL authentication")]
    Unauthenticated { peer: SocketAddr, api: String },
    /// The SASL exchange failed (already answered with the error); the connection closes.
    #[error("{peer}: {reason}")]
    AuthenticationFailed { peer: SocketAddr, reason: String },
    /// The metadata quorum could not start (its files, its listener).
    #[error("cluster metadata quorum: {reason}")]
    Cluster { reason: String },
    /// Another broker did not answer a replication request as expected (`request`: the Kafka
    /// API or step).
    #[error("broker {broker} at {addr}: {request}: {reason}")]
    Peer {
        broker: i32,
        addr: String,
        request: &'static str,
        reason: String,
    },
    /// A background task panicked or was cancelled.
    #[error("background task {task} failed: {reason}")]
    Task { task: &'static str, reason: String },

    // --- per-connection protocol errors: each closes only the connection it names ---
    /// The 4-byte frame length is negative.
    #[error("{peer}: negative frame length {len}")]
    NegativeFrameLength { peer: SocketAddr, len: i32 },
    /// The frame is larger than `--max-request-bytes`; refused before it is read.
    #[error("{peer}: frame of {len} bytes exceeds --max-request-bytes {max}")]
    FrameTooLarge {
        peer: SocketAddr,
        len: usize,
        max: usize,
    },
    /// The frame is too short to hold a request header.
    #[error("{peer}: truncated request header ({len} bytes)")]
    TruncatedHeader { peer: SocketAddr, len: usize },
    /// The API key is not one Kafka defines.
    #[error("{peer}: unknown API key {api_key} (version {api_version})")]
    UnknownApiKey {
        peer: SocketAddr,
        api_key: i16,
        api_version: i16,
    },
    /// The API is known but this broker neither implements nor advertises it.
    #[error("{peer}: unsupported API {api} (key {api_key}) version {api_version}")]
    UnsupportedApi {
        peer: SocketAddr,
        api: String,
        api_key: i16,
        api_version: i16,
    },
    /// The header or body does not decode at the given version.
    #[error("{peer}: cannot decode {api} (key {api_key}) v{api_version}: {reason}")]
    Undecodable {
        peer: SocketAddr,
        api: String,
        api_key: i16,
        api_version: i16,
        reason: String,
    },
    /// The request version is outside the range this broker advertises.
    #[error("{peer}: {api} (key {api_key}) version {api_version} is not supported")]
    UnsupportedVersion {
        peer: SocketAddr,
        api: String,
        api_key: i16,
        api_version: i16,
    },
    /// A Produce with `acks=0` failed: there is no response to carry the error, so the
    /// connection is closed (as Kafka does) and the client refreshes its metadata.
    #[error("Produce with acks=0 failed for {topic}-{partition} with error code {code}; closing the connection so the client notices")]
    UnacknowledgedProduceFailed {
        topic: String,
        partition: i32,
        code: i16,
    },
    /// Building the response failed (a bug: the handler produced something unencodable).
    #[error("cannot encode the {api} v{api_version} response: {reason}")]
    Encode {
        api: String,
        api_version: i16,
        reason: String,
    },
}
