use anyhow::Result;
use clap::{Parser, Subcommand};
use sluice_loadgen::{admin, conns, consume, machine, produce, raw, sink};

/// Load generator and machine probes for bench/suite.sh. Every mode prints one JSON object on
/// stdout and a readable summary on stderr.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Produce with librdkafka: max throughput, or --rate with latency from intended send times.
    Produce(produce::ProduceArgs),
    /// Read a topic's backlog from the first offset.
    Consume(consume::ConsumeArgs),
    /// Produce pre-encoded batches on the project's codec, pipelined: a producer whose own CPU
    /// cost is small beside the broker's.
    RawProduce(raw::produce::RawProduceArgs),
    /// Read a topic from offset 0 with plain Fetch requests, walking every record.
    RawConsume(raw::consume::RawConsumeArgs),
    /// Many connections, each producing in a closed loop.
    Conns(conns::ConnsArgs),
    /// A Kafka-speaking sink that acknowledges Produce and stores nothing.
    Sink(sink::SinkArgs),
    /// Create a topic and wait until it is served.
    CreateTopic(admin::CreateTopicArgs),
    /// Delete a topic.
    DeleteTopic(admin::DeleteTopicArgs),
    /// Wait until a broker serves (a topic), reporting the time since --since-ns.
    Ready(admin::ReadyArgs),
    /// Sequential write bandwidth, with fdatasync after each write or once at the end.
    Disk(machine::DiskArgs),
    /// Loopback TCP bandwidth of one stream.
    Loopback(machine::LoopbackArgs),
    /// A group commit without a broker: appends to a file at a fixed rate (or with a window of
    /// appends waiting), one or more threads fdatasync what is written; latency to the flush
    /// that covers each append, and throughput.
    Commit(machine::CommitArgs),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Produce(a) => produce::run(a),
        Cmd::Consume(a) => consume::run(a).map(drop),
        Cmd::RawProduce(a) => raw::produce::run(a),
        Cmd::RawConsume(a) => raw::consume::run(a),
        Cmd::Conns(a) => conns::run(a),
        Cmd::Sink(a) => sink::run(a),
        Cmd::CreateTopic(a) => admin::create_topic(a),
        Cmd::DeleteTopic(a) => admin::delete_topic(a),
        Cmd::Ready(a) => admin::ready(a),
        Cmd::Disk(a) => machine::disk(a),
        Cmd::Loopback(a) => machine::loopback(a),
        Cmd::Commit(a) => machine::commit(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
