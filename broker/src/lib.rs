//! `sluice-broker`: a Kafka-wire-compatible message broker.
//!
//! Module layout (data flows top to bottom):
//!
//! - [`cluster`]: the cluster metadata every broker agrees on (Raft quorum).
//! - [`config`]: the command line / `SLUICE_*` environment settings, validated at start.
//! - [`server`]: [`Broker::start`] / [`Broker::shutdown`], the accept loop, per-connection
//!   tasks (framing, size limits, in-order pipelining), and the broker's own small files
//!   (cluster id, producer-id counter).
//! - [`handlers`]: one function per Kafka API; decode → act → encode, no socket I/O.
//! - [`group`]: the classic consumer-group coordinator and the committed-offset store.
//! - [`log`]: the storage engine: one directory per partition, segment files, indexes,
//!   recovery, retention and the fsync policy (group commit).
//! - [`http`] and [`metrics`]: `/healthz`, `/readyz` and `/metrics` on a separate port.
//! - [`error`]: the broker's error enum.
//!
//! The binary (`src/main.rs`) only parses the configuration, installs the tracing subscriber,
//! starts a [`Broker`] and shuts it down on SIGTERM / SIGINT. See `docs/architecture.md`.

pub mod cluster;
pub mod config;
pub mod context;
pub mod error;
pub mod group;
pub mod handlers;
pub mod http;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod topology;

pub use error::BrokerError;
pub use server::Broker;
