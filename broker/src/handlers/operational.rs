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
use crate::cluster::state::{Command, ElectionKind, ElectionResult, Outcome};
use crate::context::BrokerContext;

/// Kafka's ELECTION_NOT_NEEDED.
const ELECTION_NOT_NEEDED: i16 = 84;
/// Kafka's NOT_CONTROLLER (retriable): the quorum did not take the request.
const NOT_CONTROLLER: i16 = 41;

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
                                .with_current_txn_start_offset(s.txn_start_offset)
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

/// ElectLeaders (`kafka-leader-election.sh`): preferred (type 0: the first replica leads
/// again if it is alive and in sync) or unclean (type 1: an offline partition is led by any
/// live replica, which may lack acknowledged records). The quorum decides per partition. For
/// "all partitions" (a null list) Kafka reports only the partitions it tried to elect for,
/// so ELECTION_NOT_NEEDED answers are left out there.
pub async fn elect_leaders(
    ctx: &BrokerContext,
    version: i16,
    req: ElectLeadersRequest,
) -> ElectLeadersResponse {
    use kafka_protocol::messages::elect_leaders_response::{
        PartitionResult, ReplicaElectionResult,
    };
    // v0 has no election type: preferred.
    let kind = if version >= 1 && req.election_type == 1 {
        ElectionKind::Unclean
    } else {
        ElectionKind::Preferred
    };
    let (asked, all): (Vec<(String, i32)>, bool) = match req.topic_partitions {
        Some(ts) => (
            ts.into_iter()
                .flat_map(|t| {
                    let name = t.topic.0.to_string();
                    t.partitions.into_iter().map(move |p| (name.clone(), p))
                })
                .collect(),
            false,
        ),
        None => (
            ctx.cluster
                .state()
                .all_partitions()
                .map(|(t, p, _)| (t.clone(), p))
                .collect(),
            true,
        ),
    };
    let outcome = ctx
        .cluster
        .propose(Command::ElectLeaders {
            kind,
            partitions: asked.clone(),
        })
        .await;
    let results: Vec<ElectionResult> = match outcome {
        Ok(Outcome::Elections(r)) => r,
        other => {
            let message = match other {
                Err(e) => format!("the metadata quorum did not take the election: {e}"),
                Ok(o) => format!("unexpected answer from the metadata quorum: {o:?}"),
            };
            asked
                .into_iter()
                .map(|(topic, partition)| ElectionResult {
                    topic,
                    partition,
                    code: NOT_CONTROLLER,
                    message: Some(message.clone()),
                })
                .collect()
        }
    };
    let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
    for r in results {
        if all && r.code == ELECTION_NOT_NEEDED {
            continue;
        }
        ctx.metrics.error_code("ElectLeaders", r.code);
        let pr = PartitionResult::default()
            .with_partition_id(r.partition)
            .with_error_code(r.code)
            .with_error_message(r.message.map(sb));
        match by_topic.iter_mut().find(|t| t.topic.0.as_str() == r.topic) {
            Some(t) => t.partition_result.push(pr),
            None => by_topic.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(sb(r.topic)))
                    .with_partition_result(vec![pr]),
            ),
        }
    }
    ElectLeadersResponse::default()
        .with_error_code(codes::NONE)
        .with_replica_election_results(by_topic)
}
