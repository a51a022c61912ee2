//! `sluice-loadgen`: the load generator and machine probes behind `bench/suite.sh`.
//!
//! It is a benchmark tool, not part of the product: it exists so that a figure measured against
//! a broker can be told apart from the cost of the client that produced it. Every mode prints
//! one JSON object on stdout (the suite collects those) and a readable line on stderr, and
//! reports its own CPU time beside the watched broker's.
//!
//! Modules:
//! - [`produce`]: librdkafka producer, max-throughput or fixed-rate, latency from the intended
//!   send time, optional end-to-end latency through a consumer in the same process;
//! - [`consume`]: librdkafka consumer reading a backlog from the first offset;
//! - [`conns`]: many raw connections each producing in a closed loop;
//! - [`raw`]: a producer and a consumer on the project's codec that cost the client little CPU
//!   (pre-encoded batches, pipelined requests; fetches walked without copying records);
//! - [`sink`]: a Kafka-speaking server that acknowledges Produce without storing anything;
//! - [`admin`]: topic creation and start-to-ready timing;
//! - [`machine`]: fdatasync write bandwidth and loopback TCP bandwidth;
//! - [`hist`], [`procfs`], [`report`], [`wire`], [`client`]: the shared pieces.

pub mod admin;
pub mod client;
pub mod conns;
pub mod consume;
pub mod hist;
pub mod machine;
pub mod procfs;
pub mod produce;
pub mod raw;
pub mod report;
pub mod sink;
pub mod wire;
