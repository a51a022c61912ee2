//! `sluice-broker`: a Kafka-wire-compatible message broker.
//!
//! Module layout (data flows top to bottom):
//!
//! - [`config`]: the command line / `SLUICE_*` environment settings, validated at start.
//! - [`server`]: the Kafka listener: framing, request size limits, per-connection tasks,
//!   dispatch by API key, graceful shutdown.
//! - [`handlers`]: one function per Kafka API; decode → act → encode, no socket I/O.
//! - [`group`]: the classic consumer-group coordinator and the committed-offset store.
//! - [`log`]: the storage engine: one directory per partition, segment files, indexes,
//!   recovery, retention and the fsync policy (group commit).
//! - [`http`]: `/healthz`, `/readyz` and `/metrics` on a separate port.
//!
//! The binary (`src/main.rs`) only parses the configuration, installs the tracing subscriber
//! and calls [`run`].

pub mod group;
pub mod log;
