//! The metadata quorum and its members as Kafka's tools see them: DescribeQuorum
//! (`kafka-metadata-quorum.sh`, the Raft quorum as the `__cluster_metadata` partition) and
//! UnregisterBroker (decommission: a broker leaves the cluster metadata and the quorum).

use std::sync::Arc;

use kafka_protocol::messages::*;

use super::{codes, sb};
use crate::cluster::state::{Command, Outcome};
use crate::context::BrokerContext;
use crate::replica::client::PeerConnection;

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
                ask_leader(&ctx, leader, &addr, v, &req),
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

/// Sends `req` to broker `leader` at `addr` (its inter-broker listener, over TLS when that
/// listener is SSL) and decodes its answer.
async fn ask_leader(
    ctx: &BrokerContext,
    leader: i32,
    addr: &str,
    v: i16,
    req: &DescribeQuorumRequest,
) -> Result<DescribeQuorumResponse, String> {
    let timeout = std::time::Duration::from_secs(3);
    let tls = ctx.replicas.config().peer_tls.as_deref();
    let mut conn = PeerConnection::connect(ctx.node_id, leader, addr, timeout, tls)
        .await
        .map_err(|e| e.to_string())?
        .with_client_id(FORWARD_CLIENT_ID);
    conn.call(req, v, "DescribeQuorum", timeout)
        .await
        .map_err(|e| e.to_string())
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

/// UnregisterBroker: removes a broker from the cluster for good (decommission). Refused while it
/// holds a replica of any partition (`__consumer_offsets`' included, whose leaders coordinate
/// the groups): move them off first.
///
/// The broker leaves the metadata quorum first, then the cluster metadata. The other order
/// left a voter behind for good when the broker answering was killed between the two (the
/// voter-removal crash trials found it): the metadata no longer listed the broker, so the
/// operator, which retries while Metadata lists it, shrank the StatefulSet and the quorum kept
/// a dead voter. Now a request cut short leaves the broker listed, and the retry finishes the
/// job (leaving a quorum it already left is a no-op). The refusal is checked first on this
/// broker's copy of the metadata, so a broker that must not go stays in the quorum; the
/// quorum checks again when it applies the change.
pub async fn unregister_broker(
    ctx: &Arc<BrokerContext>,
    req: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let id = req.broker_id.0;
    let resp = UnregisterBrokerResponse::default();
    let command = Command::UnregisterBroker { id };
    let precheck = (*ctx.cluster.state()).clone().apply(&command);
    let (code, message) = if let Outcome::Refused { code, message } = precheck {
        (code, Some(message))
    } else {
        match ctx.cluster.remove_node(id).await {
            Err(e) => (
                codes::UNKNOWN_SERVER_ERROR,
                Some(format!(
                    "broker {id} could not leave the metadata quorum (it is still registered; \
                     retry): {e}"
                )),
            ),
            Ok(()) => match ctx.cluster.propose(command).await {
                Err(e) => (
                    41, // NOT_CONTROLLER: retriable
                    Some(format!(
                        "broker {id} left the metadata quorum but the metadata did not take \
                         its removal (retry): {e}"
                    )),
                ),
                Ok(Outcome::Refused { code, message }) => (code, Some(message)),
                Ok(_) => {
                    tracing::info!(
                        broker = id,
                        "broker removed from the quorum and unregistered"
                    );
                    (codes::NONE, None)
                }
            },
        }
    };
    ctx.metrics.error_code("UnregisterBroker", code);
    resp.with_error_code(code)
        .with_error_message(message.as_deref().map(sb))
}
