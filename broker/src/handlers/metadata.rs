//! Metadata (with topic ids and auto-creation), DescribeTopicPartitions, DescribeCluster and
//! FindCoordinator, answered for the whole cluster from the quorum's state: every live broker,
//! every topic, each
//! partition's leader and leader epoch, replicas, in-sync replicas and offline replicas (those
//! on brokers that are fenced or stopping), each group's coordinator (the leader of its
//! `__consumer_offsets` partition). The quorum leader is reported as the controller.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use uuid::Uuid;

use super::authz::{self, Access, Operation};
use super::{catalog, codes, sb, Caller};
use crate::cluster::state::{BrokerRecord, ClusterState, PartitionRecord};
use crate::context::BrokerContext;
use crate::group::is_internal_topic;
use crate::log::{validate_topic_name, TopicMeta};

/// "Not provided" for the authorized-operations fields.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's LEADER_NOT_AVAILABLE: no live in-sync replica leads the partition.
const LEADER_NOT_AVAILABLE: i16 = 5;

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

/// One partition as Metadata (and DescribeTopicPartitions) report it.
pub fn partition_entry(
    state: &ClusterState,
    index: i32,
    p: &PartitionRecord,
) -> MetadataResponsePartition {
    let alive = |id: &i32| state.brokers.get(id).is_some_and(|b| b.state.is_alive());
    let led = p.has_leader() && alive(&p.leader);
    let offline: Vec<i32> = p.replicas.iter().copied().filter(|r| !alive(r)).collect();
    MetadataResponsePartition::default()
        .with_error_code(if led {
            codes::NONE
        } else {
            LEADER_NOT_AVAILABLE
        })
        .with_partition_index(index)
        .with_leader_id(BrokerId(if led { p.leader } else { -1 }))
        .with_leader_epoch(p.leader_epoch)
        .with_replica_nodes(ids(&p.replicas))
        .with_isr_nodes(ids(&p.isr))
        .with_offline_replicas(ids(&offline))
}

/// The most partitions one DescribeTopicPartitions answer carries (Kafka's
/// `max.request.partition.size.limit` default); the rest come with the next cursor.
const DESCRIBE_PARTITIONS_LIMIT: i32 = 2000;

/// DescribeTopicPartitions (`Admin.describeTopics` from Kafka 3.8 clients on, so
/// `kafka-topics.sh --describe`): the named topics, or all, sorted by name, their partitions'
/// leaders, replicas, in-sync and offline replicas, paged by `response_partition_limit` with a
/// cursor (topic, first partition) as Kafka does.
pub fn describe_topic_partitions(
    ctx: &BrokerContext,
    req: DescribeTopicPartitionsRequest,
    access: &Access,
) -> DescribeTopicPartitionsResponse {
    use kafka_protocol::messages::describe_topic_partitions_response::{
        Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
    };
    let state = ctx.cluster.state();
    let all = req.topics.is_empty();
    let mut names: Vec<String> = if all {
        state
            .topics
            .keys()
            .filter(|n| access.topic(Operation::Describe, n))
            .cloned()
            .collect()
    } else {
        req.topics
            .iter()
            .map(|t| t.name.as_str().to_string())
            .collect()
    };
    names.sort();
    names.dedup();
    let (from_topic, from_partition) = match &req.cursor {
        Some(c) => (
            Some(c.topic_name.as_str().to_string()),
            c.partition_index.max(0),
        ),
        None => (None, 0),
    };
    let mut budget = if req.response_partition_limit > 0 {
        req.response_partition_limit.min(DESCRIBE_PARTITIONS_LIMIT)
    } else {
        DESCRIBE_PARTITIONS_LIMIT
    };
    let mut resp = DescribeTopicPartitionsResponse::default();
    for name in names {
        if from_topic.as_ref().is_some_and(|f| name < *f) {
            continue;
        }
        if !all && !access.topic(Operation::Describe, &name) {
            resp.topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(authz::TOPIC_AUTHORIZATION_FAILED)
                    .with_name(Some(TopicName(sb(&name))))
                    .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
            );
            continue;
        }
        let Some(topic) = state.topics.get(&name) else {
            resp.topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_name(Some(TopicName(sb(&name))))
                    .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
            );
            continue;
        };
        if budget == 0 {
            resp.next_cursor = Some(Cursor::default().with_topic_name(TopicName(sb(&name))));
            break;
        }
        let first = if from_topic.as_deref() == Some(name.as_str()) {
            from_partition
        } else {
            0
        };
        let mut partitions = Vec::new();
        for (i, p) in topic.partitions.iter().enumerate().skip(first as usize) {
            if budget == 0 {
                resp.next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(TopicName(sb(&name)))
                        .with_partition_index(i as i32),
                );
                break;
            }
            budget -= 1;
            let m = partition_entry(&state, i as i32, p);
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(m.error_code)
                    .with_partition_index(m.partition_index)
                    .with_leader_id(m.leader_id)
                    .with_leader_epoch(m.leader_epoch)
                    .with_replica_nodes(m.replica_nodes)
                    .with_isr_nodes(m.isr_nodes)
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![]))
                    .with_offline_replicas(m.offline_replicas),
            );
        }
        resp.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(codes::NONE)
                .with_name(Some(TopicName(sb(&name))))
                .with_topic_id(topic.id)
                .with_is_internal(is_internal_topic(&name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
        );
        if resp.next_cursor.is_some() {
            break;
        }
    }
    for t in &resp.topics {
        ctx.metrics
            .error_code("DescribeTopicPartitions", t.error_code);
    }
    resp
}

/// The broker reported as the controller: the quorum leader (this broker while unknown).
fn controller(ctx: &BrokerContext) -> i32 {
    ctx.cluster.leader().unwrap_or(ctx.node_id)
}

fn topic_entry(ctx: &BrokerContext, meta: &TopicMeta) -> MetadataResponseTopic {
    let state = ctx.cluster.state();
    let partitions = state
        .topics
        .get(&meta.name)
        .map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .map(|(i, p)| partition_entry(&state, i as i32, p))
                .collect()
        })
        .unwrap_or_default();
    MetadataResponseTopic::default()
        .with_error_code(codes::NONE)
        .with_name(Some(TopicName(sb(&meta.name))))
        .with_topic_id(meta.id)
        .with_is_internal(is_internal_topic(&meta.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn topic_error(name: Option<&str>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(sb(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// Serves Metadata v0+. A `null` topic list (or an empty one at v0) means all topics (those
/// the caller may describe). Unknown topics are created with the default partition count when
/// `--auto-create-topics` is on, the request allows it (always at v0–v3) and the caller may
/// create it. Brokers are given at their addresses of the caller's listener.
pub async fn metadata(
    ctx: &Arc<BrokerContext>,
    version: i16,
    req: MetadataRequest,
    caller: &Caller,
    access: &Access,
) -> MetadataResponse {
    // Fenced brokers are left out, as Kafka does: clients should not dial a dead broker.
    // So are brokers without the caller's listener.
    let brokers = ctx
        .cluster
        .state()
        .brokers
        .values()
        .filter(|b| b.state.is_alive())
        .filter_map(|b| {
            let (host, port) = b.endpoint(&caller.listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(sb(host))
                    .with_port(port)
                    .with_rack(b.rack.as_deref().map(sb)),
            )
        })
        .collect();
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(sb(&ctx.cluster_id())))
        .with_controller_id(BrokerId(controller(ctx)))
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    if all {
        let topics = catalog::topics(ctx);
        resp.topics = topics
            .iter()
            .filter(|m| access.topic(Operation::Describe, &m.name))
            .map(|m| topic_entry(ctx, m))
            .collect();
        return resp;
    }
    let allow_create = ctx.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    for t in req.topics.unwrap_or_default() {
        // From v10 a topic may be named by id; the Java client then sends an empty name (not
        // null) beside the id, so a non-nil id wins, as in Kafka.
        let by_name = if t.topic_id.is_nil() { t.name } else { None };
        let entry = match by_name {
            Some(name) if !access.topic(Operation::Describe, name.as_str()) => topic_error(
                Some(name.as_str()),
                Uuid::nil(),
                authz::TOPIC_AUTHORIZATION_FAILED,
            ),
            Some(name) => {
                let name = name.as_str().to_string();
                let may_create =
                    || access.cluster(Operation::Create) || access.topic(Operation::Create, &name);
                match catalog::topic(ctx, &name) {
                    Some(meta) => topic_entry(ctx, &meta),
                    None => match validate_topic_name(&name) {
                        Err(_) => {
                            topic_error(Some(&name), Uuid::nil(), codes::INVALID_TOPIC_EXCEPTION)
                        }
                        Ok(()) if !allow_create => {
                            topic_error(Some(&name), Uuid::nil(), codes::UNKNOWN_TOPIC_OR_PARTITION)
                        }
                        Ok(()) if !may_create() => {
                            topic_error(Some(&name), Uuid::nil(), authz::TOPIC_AUTHORIZATION_FAILED)
                        }
                        // Created the cluster's way, as Kafka's metadata path does.
                        Ok(()) if is_internal_topic(&name) => {
                            match catalog::ensure_offsets_topic(ctx).await {
                                Ok(_) => match catalog::topic(ctx, &name) {
                                    Some(meta) => topic_entry(ctx, &meta),
                                    None => topic_error(
                                        Some(&name),
                                        Uuid::nil(),
                                        codes::UNKNOWN_TOPIC_OR_PARTITION,
                                    ),
                                },
                                Err(e) => topic_error(Some(&name), Uuid::nil(), e.kafka_code()),
                            }
                        }
                        Ok(()) => {
                            let created = catalog::create_topic(
                                ctx,
                                catalog::NewTopic {
                                    name: name.clone(),
                                    partitions: -1,
                                    replication_factor: -1,
                                    ..Default::default()
                                },
                                false,
                            )
                            .await;
                            match created {
                                Ok((meta, _)) => {
                                    tracing::info!(topic = %meta.name, partitions = meta.partitions, "auto-created topic");
                                    topic_entry(ctx, &meta)
                                }
                                // Created concurrently by another request: describe it.
                                Err(e) if e.code == codes::TOPIC_ALREADY_EXISTS => {
                                    match catalog::topic(ctx, &name) {
                                        Some(meta) => topic_entry(ctx, &meta),
                                        None => topic_error(
                                            Some(&name),
                                            Uuid::nil(),
                                            codes::UNKNOWN_TOPIC_OR_PARTITION,
                                        ),
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(topic = %name, error = %e, "auto-create failed");
                                    topic_error(Some(&name), Uuid::nil(), e.kafka_code())
                                }
                            }
                        }
                    },
                }
            }
            None => match catalog::topic_by_id(ctx, t.topic_id) {
                Some(meta) if !access.topic(Operation::Describe, &meta.name) => {
                    topic_error(None, t.topic_id, authz::TOPIC_AUTHORIZATION_FAILED)
                }
                Some(meta) => topic_entry(ctx, &meta),
                None => topic_error(None, t.topic_id, codes::UNKNOWN_TOPIC_ID),
            },
        };
        ctx.metrics.error_code("Metadata", entry.error_code);
        resp.topics.push(entry);
    }
    resp
}

/// DescribeCluster: every registered broker (at its address of the caller's listener); the
/// quorum leader as controller.
pub fn describe_cluster(
    ctx: &BrokerContext,
    version: i16,
    req: DescribeClusterRequest,
    caller: &Caller,
) -> DescribeClusterResponse {
    let resp = DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(sb(&ctx.cluster_id()))
        .with_controller_id(BrokerId(controller(ctx)))
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    if req.endpoint_type != 1 {
        return resp
            .with_error_code(codes::UNSUPPORTED_ENDPOINT_TYPE)
            .with_error_message(Some(sb("only broker endpoints (type 1) are served")));
    }
    let brokers = ctx
        .cluster
        .state()
        .brokers
        .values()
        // `is_fenced` exists from v2; older versions list live brokers only.
        .filter(|b| version >= 2 || b.state.is_alive())
        .filter_map(|b| {
            let (host, port) = b.endpoint(&caller.listener)?;
            let r = DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(sb(host))
                .with_port(port)
                .with_rack(b.rack.as_deref().map(sb));
            Some(if version >= 2 {
                r.with_is_fenced(!b.state.is_alive())
            } else {
                r
            })
        })
        .collect();
    resp.with_brokers(brokers)
}

/// One coordinator lookup: (error code, message, broker). A group's coordinator is the leader of
/// its `__consumer_offsets` partition (the topic is created on the first lookup), and so is a
/// transactional id's (key type 1).
async fn lookup(
    ctx: &Arc<BrokerContext>,
    key_type: i8,
    key: &str,
    caller: &Caller,
    access: &Access,
) -> (
    i16,
    Option<kafka_protocol::protocol::StrBytes>,
    Option<(i32, String, i32)>,
) {
    if key_type == 0 && !access.group(Operation::Describe, key) {
        return (authz::GROUP_AUTHORIZATION_FAILED, None, None);
    }
    if key_type == 1 && !access.transactional_id(Operation::Describe, key) {
        return (codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, None, None);
    }
    if key_type > 1 {
        // Share coordinators (key type 2) are found through the share-group APIs here.
        return (
            codes::INVALID_REQUEST,
            Some(sb(&format!(
                "coordinator key type {key_type} is not served"
            ))),
            None,
        );
    }
    match catalog::coordinator(ctx, key).await {
        Ok(b) => match endpoint_of(&b, caller) {
            Some(e) => (codes::NONE, None, Some(e)),
            None => (
                COORDINATOR_NOT_AVAILABLE,
                Some(sb(&format!(
                    "broker {} coordinates the group but has no listener {}",
                    b.id, caller.listener
                ))),
                None,
            ),
        },
        Err(e) => (e.code, Some(sb(&e.message)), None),
    }
}

/// Kafka's COORDINATOR_NOT_AVAILABLE.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// A broker's id and address on the caller's listener.
fn endpoint_of(b: &BrokerRecord, caller: &Caller) -> Option<(i32, String, i32)> {
    b.endpoint(&caller.listener)
        .map(|(host, port)| (b.id, host.to_string(), port))
}

/// FindCoordinator (v0–v3 one key, v4+ a batch of keys).
pub async fn find_coordinator(
    ctx: &Arc<BrokerContext>,
    version: i16,
    req: FindCoordinatorRequest,
    caller: &Caller,
    access: &Access,
) -> FindCoordinatorResponse {
    if version < 4 {
        let (code, msg, b) = lookup(ctx, req.key_type, req.key.as_str(), caller, access).await;
        ctx.metrics.error_code("FindCoordinator", code);
        let mut r = FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_node_id(BrokerId(b.as_ref().map_or(-1, |b| b.0)))
            .with_host(sb(b.as_ref().map_or("", |b| b.1.as_str())))
            .with_port(b.as_ref().map_or(-1, |b| b.2));
        if version >= 1 {
            r.error_message = msg;
        }
        return r;
    }
    let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
    for k in &req.coordinator_keys {
        let (code, msg, b) = lookup(ctx, req.key_type, k.as_str(), caller, access).await;
        ctx.metrics.error_code("FindCoordinator", code);
        coordinators.push(
            Coordinator::default()
                .with_key(k.clone())
                .with_node_id(BrokerId(b.as_ref().map_or(-1, |b| b.0)))
                .with_host(sb(b.as_ref().map_or("", |b| b.1.as_str())))
                .with_port(b.as_ref().map_or(-1, |b| b.2))
                .with_error_code(code)
                .with_error_message(msg),
        );
    }
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
