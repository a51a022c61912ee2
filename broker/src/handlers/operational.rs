//! The per-partition operational APIs Kafka's own tools and the common UIs call to look at a
//! cluster: DescribeLogDirs (`kafka-log-dirs.sh`, disk usage per partition), DescribeProducers
//! (`kafka-transactions.sh describe-producers`) and ElectLeaders (`kafka-leader-election.sh`).
//! Each answer is built from what this broker already knows: its own log directory and the
//! cluster metadata. DescribeQuorum is in `quorum`.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::catalog::{self, Ownership};
use super::codes;
use crate::cluster::state::BrokerState;
use crate::context::BrokerContext;

/// Kafka's ELIGIBLE_LEADERS_NOT_AVAILABLE.
const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
/// Kafka's ELECTION_NOT_NEEDED.
const ELECTION_NOT_NEEDED: i16 = 84;

fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Total and available bytes of the file system holding `path` (-1, -1 when unknown, which is
/// Kafka's own "unknown volume" value).
fn volume_bytes(path: &std::path::Path) -> (i64, i64) {
    match rustix::fs::statvfs(path) {
        Ok(s) => {
            let unit = s.f_frsize.max(1);
            let total = s.f_blocks.saturating_mul(unit);
            let usable = s.f_bavail.saturating_mul(unit);
            (
                i64::try_from(total).unwrap_or(i64::MAX),
                i64::try_from(usable).unwrap_or(i64::MAX),
            )
        }
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "statvfs failed");
            (-1, -1)
        }
    }
}

/// DescribeLogDirs: this broker's one log directory (`--data-dir`) with the size of every
/// partition stored here, optionally only the requested ones. As in Kafka, each broker describes
/// itself; admin clients ask every broker.
pub fn describe_log_dirs(
    ctx: &BrokerContext,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut topics = Vec::new();
    for meta in ctx.logs.topics() {
        let partitions: Vec<DescribeLogDirsPartition> = (0..meta.partitions)
            .filter(|p| match &wanted {
                None => true,
                Some(w) => w.iter().any(|(t, ps)| *t == meta.name && ps.contains(p)),
            })
            .filter_map(|p| ctx.logs.partition(&meta.name, p).map(|log| (p, log)))
            .map(|(p, log)| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(p)
                    .with_partition_size(i64::try_from(log.size_bytes()).unwrap_or(i64::MAX))
                    // One copy, written here: nothing to catch up with.
                    .with_offset_lag(0)
                    .with_is_future_key(false)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(sb(meta.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    let dir = ctx.logs.data_dir();
    let (total, usable) = volume_bytes(dir);
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_error_code(codes::NONE)
        .with_log_dir(sb(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)])
}

/// DescribeProducers: the idempotent producers a partition owned here remembers (id, epoch,
/// last sequence, last write). Transactions are not supported, so there is never an open
/// transaction (coordinator epoch and transaction start offset are -1).
pub fn describe_producers(
    ctx: &BrokerContext,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    use kafka_protocol::messages::describe_producers_response::{
        PartitionResponse, ProducerState, TopicResponse,
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partition_indexes
                .into_iter()
                .map(|p| {
                    let resp = PartitionResponse::default().with_partition_index(p);
                    let log = match catalog::ownership(ctx, &name, p) {
                        Ownership::Here(_) => ctx.logs.partition(&name, p),
                        Ownership::Elsewhere(owner) => {
                            return resp
                                .with_error_code(catalog::NOT_LEADER_OR_FOLLOWER)
                                .with_error_message(Some(sb(format!(
                                    "{name}-{p} is served by broker {owner}"
                                ))));
                        }
                        Ownership::Unknown => None,
                    };
                    let Some(log) = log else {
                        return resp
                            .with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_error_message(Some(sb(format!("no partition {name}-{p}"))));
                    };
                    let producers = log
                        .producers()
                        .into_iter()
                        .map(|s| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(s.producer_id))
                                .with_producer_epoch(i32::from(s.epoch))
                                .with_last_sequence(s.last_sequence)
                                .with_last_timestamp(s.last_timestamp)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(-1)
                        })
                        .collect();
                    resp.with_error_code(codes::NONE)
                        .with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// What a preferred (or unclean) leader election can do for one partition: each partition has
/// one copy, so its owner is already the preferred leader. An election is "not needed" while
/// the owner is live; when it is fenced there is no other copy to elect.
fn election_result(ctx: &BrokerContext, topic: &str, p: i32) -> (i16, Option<String>) {
    let state = ctx.cluster.state();
    let Some(record) = state.partition(topic, p) else {
        return (
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            Some(format!("no partition {topic}-{p}")),
        );
    };
    let fenced = state
        .brokers
        .get(&record.owner)
        .is_none_or(|b| b.state == BrokerState::Fenced);
    if fenced {
        (
            ELIGIBLE_LEADERS_NOT_AVAILABLE,
            Some(format!(
                "{topic}-{p} has one copy, on broker {}, which is unreachable; it is served again when that broker returns",
                record.owner
            )),
        )
    } else {
        (
            ELECTION_NOT_NEEDED,
            Some(format!(
                "broker {} owns the only copy of {topic}-{p} and is serving it",
                record.owner
            )),
        )
    }
}

/// ElectLeaders. For "all partitions" (a null list) Kafka reports only the partitions it
/// tried to elect for; here that is the ones whose only copy is unreachable.
pub fn elect_leaders(ctx: &BrokerContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    use kafka_protocol::messages::elect_leaders_response::{
        PartitionResult, ReplicaElectionResult,
    };
    let (asked, all): (Vec<(String, Vec<i32>)>, bool) = match req.topic_partitions {
        Some(ts) => (
            ts.into_iter()
                .map(|t| (t.topic.0.to_string(), t.partitions))
                .collect(),
            false,
        ),
        None => (
            ctx.cluster
                .state()
                .topics
                .iter()
                .map(|(name, t)| (name.clone(), (0..t.partitions.len() as i32).collect()))
                .collect(),
            true,
        ),
    };
    let results = asked
        .into_iter()
        .filter_map(|(topic, partitions)| {
            let partition_result: Vec<PartitionResult> = partitions
                .into_iter()
                .map(|p| {
                    let (code, message) = election_result(ctx, &topic, p);
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(code)
                        .with_error_message(message.map(sb))
                })
                .filter(|r| !all || r.error_code != ELECTION_NOT_NEEDED)
                .collect();
            (!partition_result.is_empty()).then(|| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(sb(topic)))
                    .with_partition_result(partition_result)
            })
        })
        .collect();
    ElectLeadersResponse::default()
        .with_error_code(codes::NONE)
        .with_replica_election_results(results)
}
