//! AlterPartitionReassignments and ListPartitionReassignments: Kafka's own APIs for changing
//! a partition's replica set, so standard admin tools (kafka-reassign-partitions, AdminClient,
//! kadm) drive them. The quorum adds the new replicas, which copy the partition by following
//! its leader (`crate::replica`); once every one of them is in sync the old ones are dropped
//! (leadership moving if the leader is one of them).

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{codes, sb};
use crate::cluster::state::{ClusterState, Command, Outcome};
use crate::context::BrokerContext;

/// Kafka's NOT_CONTROLLER (retriable): the quorum did not take the change.
const NOT_CONTROLLER: i16 = 41;

/// Starts (replicas = the new replica list, preferred leader first) or cancels
/// (replicas = null) reassignments.
pub async fn alter(
    ctx: &Arc<BrokerContext>,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = t.name.as_str().to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let cmd: Result<Command, (i16, String)> = Ok(Command::Reassign {
                topic: topic.clone(),
                partition: p.partition_index,
                replicas: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            });
            let result = match cmd {
                Err(e) => Err(e),
                Ok(cmd) => match ctx.cluster.propose(cmd).await {
                    Ok(Outcome::Refused { code, message }) => Err((code, message)),
                    Ok(_) => Ok(()),
                    Err(e) => Err((
                        NOT_CONTROLLER,
                        format!("the metadata quorum did not accept the change: {e}"),
                    )),
                },
            };
            let r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            let r = match result {
                Ok(()) => {
                    tracing::info!(topic = %topic, partition = p.partition_index, replicas = ?p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect::<Vec<_>>()), "reassignment accepted");
                    r.with_error_code(codes::NONE)
                }
                Err((code, message)) => r
                    .with_error_code(code)
                    .with_error_message(Some(sb(&message))),
            };
            ctx.metrics
                .error_code("AlterPartitionReassignments", r.error_code);
            partitions.push(r);
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(codes::NONE)
        .with_responses(responses)
}

fn ongoing(
    state: &ClusterState,
    topic: &str,
    partition: i32,
) -> Option<OngoingPartitionReassignment> {
    let p = state.partition(topic, partition)?;
    if !p.is_reassigning() {
        return None;
    }
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
    Some(
        OngoingPartitionReassignment::default()
            .with_partition_index(partition)
            .with_replicas(ids(&p.replicas))
            .with_adding_replicas(ids(&p.adding))
            .with_removing_replicas(ids(&p.removing)),
    )
}

/// The reassignments in progress (all, or of the named partitions).
pub fn list(
    ctx: &BrokerContext,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let state = ctx.cluster.state();
    let wanted: Vec<(String, Vec<i32>)> = match req.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.as_str().to_string(), t.partition_indexes))
            .collect(),
        None => state
            .topics
            .iter()
            .map(|(name, t)| (name.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    let topics = wanted
        .into_iter()
        .filter_map(|(name, partitions)| {
            let ongoing: Vec<_> = partitions
                .into_iter()
                .filter_map(|p| ongoing(&state, &name, p))
                .collect();
            (!ongoing.is_empty()).then(|| {
                OngoingTopicReassignment::default()
                    .with_name(kafka_protocol::messages::TopicName(sb(&name)))
                    .with_partitions(ongoing)
            })
        })
        .collect();
    ListPartitionReassignmentsResponse::default()
        .with_error_code(codes::NONE)
        .with_topics(topics)
}
