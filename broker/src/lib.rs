//! `sluice-broker`: a Kafka-wire-compatible message broker.
//!
//! Module layout (each module imports only modules listed below it; see
//! `docs/architecture.md` for the exact import table):
//!
//! - [`server`]: [`Broker::start`] / [`Broker::shutdown`], the accept loop, per-connection
//!   tasks (size limits, in-order pipelining), partition moves, liveness, and the broker's own
//!   small files (cluster id, node id).
//! - [`handlers`]: one function per Kafka API; decode → act → encode, no socket I/O.
//! - [`http`]: `/healthz`, `/readyz` and `/metrics` on a separate port.
//! - [`context`]: [`context::BrokerContext`], the state every connection and handler shares.
//! - [`topology`]: the local logs follow the cluster metadata.
//! - [`metrics`]: the Prometheus registry and its scrape-time gauges.
//! - [`config`]: the command line / `SLUICE_*` environment settings, validated at start.
//! - [`protocol`]: the Kafka wire format: framing, the pre-decode guard, advertised versions.
//! - [`error`]: the broker's error enum.
//! - [`cluster`]: the cluster metadata every broker agrees on (Raft quorum).
//! - [`group`]: the classic consumer-group coordinator; committed offsets in `__consumer_offsets`.
//! - [`share`]: share groups (KIP-932): members, share sessions, per-record delivery state.
//! - [`log`]: the storage engine: one directory per partition, segment files, indexes,
//!   recovery, retention and the fsync policy (group commit).
//! - [`recovery`]: counts of what recovery dropped or rebuilt (the WARN lines' metric).
//!
//! The binary (`src/main.rs`) only parses the configuration, installs the tracing subscriber,
//! starts a [`Broker`] and shuts it down on SIGTERM / SIGINT. See `docs/architecture.md`.

pub mod cluster;
pub mod config;
pub mod context;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod handlers;
pub mod http;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod quota;
pub mod recovery;
pub mod replica;
pub mod security;
pub mod server;
pub mod share;
pub mod topology;
pub mod txn;

pub use error::BrokerError;
pub use server::Broker;
