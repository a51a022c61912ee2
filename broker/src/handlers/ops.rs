//! The operational APIs Kafka's own tools and the common UIs call to look at a cluster:
//! DescribeLogDirs (`kafka-log-dirs.sh`, disk usage per partition), DescribeProducers
//! (`kafka-transactions.sh describe-producers`), ElectLeaders (`kafka-leader-election.sh`) and
//! DescribeQuorum (`kafka-metadata-quorum.sh`). Each answer is built from what this broker
//! already knows: its own log directory, the cluster metadata and the Raft metrics.

use std::sync::Arc;

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

/// The client id a broker uses when it passes a DescribeQuorum on to the quorum leader; the
/// leader answers such a request itself, so a request is passed on at most once even while
/// two brokers disagree about who leads.
pub const FORWARD_CLIENT_ID: &str = "sluice-broker-forward";

/// DescribeQuorum, answered by the quorum leader: only it knows how far each replica has
/// replicated. Any other broker passes the request on to the leader's Kafka listener, and
/// answers from its own view when the leader cannot be reached.
pub async fn describe_quorum(
    ctx: Arc<BrokerContext>,
    v: i16,
    client_id: Option<String>,
    req: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let leader = ctx.cluster.leader();
    let forwarded = client_id.as_deref() == Some(FORWARD_CLIENT_ID);
    if let Some(leader) = leader.filter(|l| *l != ctx.node_id && !forwarded) {
        if let Some(b) = ctx.cluster.state().brokers.get(&leader).cloned() {
            let addr = format!("{}:{}", b.host, b.port);
            let asked = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                ask_leader(&addr, v, &req),
            )
            .await
            .unwrap_or_else(|_| Err("no answer within 3s".to_string()));
            match asked {
                Ok(resp) => return resp,
                Err(e) => tracing::debug!(
                    leader,
                    addr = %addr,
                    error = %e,
                    "could not ask the quorum leader; describing the quorum from here"
                ),
            }
        }
    }
    describe_quorum_here(&ctx, v, req)
}

/// Sends `req` to the broker at `addr` (its Kafka listener) and decodes its answer.
async fn ask_leader(
    addr: &str,
    v: i16,
    req: &DescribeQuorumRequest,
) -> Result<DescribeQuorumResponse, String> {
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(ApiKey::DescribeQuorum as i16)
        .with_request_api_version(v)
        .with_correlation_id(1)
        .with_client_id(Some(sb(FORWARD_CLIENT_ID)))
        .encode(&mut frame, DescribeQuorumRequest::header_version(v))
        .map_err(|e| format!("encode header: {e}"))?;
    req.encode(&mut frame, v)
        .map_err(|e| format!("encode request: {e}"))?;
    let len = i32::try_from(frame.len() - 4).map_err(|_| "request too large".to_string())?;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.write_all(&frame)
        .await
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let len = s
        .read_i32()
        .await
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= 1 << 20)
        .ok_or_else(|| format!("{addr} answered a frame of {len} bytes"))?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)
        .await
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let mut body = bytes::Bytes::from(body);
    ResponseHeader::decode(&mut body, DescribeQuorumResponse::header_version(v))
        .map_err(|e| format!("decode header from {addr}: {e}"))?;
    let resp = DescribeQuorumResponse::decode(&mut body, v)
        .map_err(|e| format!("decode answer from {addr}: {e}"))?;
    if body.has_remaining() {
        return Err(format!(
            "{} stray bytes after the answer of {addr}",
            body.remaining()
        ));
    }
    Ok(resp)
}

/// DescribeQuorum from this broker's view: the metadata quorum as Kafka's
/// `__cluster_metadata` partition: its leader, term (as the leader epoch), applied index (as
/// the high watermark), voters and observers (learners). On the leader every replica's log end
/// is known; elsewhere only this broker's own (-1 for the others).
fn describe_quorum_here(
    ctx: &Arc<BrokerContext>,
    v: i16,
    req: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    use kafka_protocol::messages::describe_quorum_response::{
        Listener, Node, PartitionData, ReplicaState, TopicData,
    };
    let asked_metadata = req.topics.iter().any(|t| {
        t.topic_name.0.as_str() == "__cluster_metadata"
            && t.partitions.iter().any(|p| p.partition_index == 0)
    });
    if !asked_metadata {
        return DescribeQuorumResponse::default()
            .with_error_code(codes::INVALID_REQUEST)
            .with_error_message(Some(sb(
                "DescribeQuorum describes partition 0 of __cluster_metadata only",
            )));
    }
    let m = ctx.cluster.raft_metrics().borrow().clone();
    let membership = m.membership_config.membership().clone();
    let me = ctx.node_id;
    let replica = |id: u64| -> ReplicaState {
        let end = if id as i32 == me {
            m.last_log_index.map_or(0, |i| i as i64 + 1)
        } else {
            m.replication
                .as_ref()
                .and_then(|rep| rep.get(&id))
                .map_or(-1, |l| l.map_or(0, |l| l.index as i64 + 1))
        };
        ReplicaState::default()
            .with_replica_id(BrokerId(id as i32))
            .with_log_end_offset(end)
            .with_last_fetch_timestamp(-1)
            .with_last_caught_up_timestamp(-1)
    };
    let voters: Vec<ReplicaState> = membership.voter_ids().map(replica).collect();
    let observers: Vec<ReplicaState> = membership.learner_ids().map(replica).collect();
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_error_code(codes::NONE)
        .with_leader_id(BrokerId(m.current_leader.map_or(-1, |l| l as i32)))
        .with_leader_epoch(i32::try_from(m.current_term).unwrap_or(i32::MAX))
        .with_high_watermark(m.last_applied.map_or(0, |l| l.index as i64 + 1))
        .with_current_voters(voters)
        .with_observers(observers);
    let mut resp = DescribeQuorumResponse::default()
        .with_error_code(codes::NONE)
        .with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(sb("__cluster_metadata")))
            .with_partitions(vec![partition])]);
    if v >= 2 {
        // The voters' inter-broker listeners.
        let state = ctx.cluster.state();
        resp.nodes = membership
            .voter_ids()
            .filter_map(|id| state.brokers.get(&(id as i32)))
            .filter_map(|b| {
                let (host, port) = b.cluster_addr.rsplit_once(':')?;
                Some(Node::default().with_node_id(BrokerId(b.id)).with_listeners(
                    vec![Listener::default()
                            .with_name(sb("CLUSTER"))
                            .with_host(sb(host))
                            .with_port(port.parse().ok()?)],
                ))
            })
            .collect();
    }
    resp
}
