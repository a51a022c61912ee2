//! Metadata (with topic ids and auto-creation), DescribeCluster and FindCoordinator. This node
//! is the only broker, the controller and every group's coordinator.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, TopicName,
};
use uuid::Uuid;

use super::{blocking, codes, sb, Ctx};
use crate::log::{validate_topic_name, LogError, TopicMeta};

/// "Not provided" for the authorized-operations fields.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

fn topic_entry(ctx: &Ctx, meta: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(ctx.node_id);
    let partitions = (0..meta.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_error_code(codes::NONE)
                .with_partition_index(p)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
                .with_offline_replicas(vec![])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(codes::NONE)
        .with_name(Some(TopicName(sb(&meta.name))))
        .with_topic_id(meta.id)
        .with_is_internal(false)
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

/// Serves Metadata v0+. A `null` topic list (or an empty one at v0) means all topics.
/// Unknown topics are created with the default partition count when `--auto-create-topics`
/// is on and the request allows it (always at v0–v3).
pub async fn metadata(ctx: &Arc<Ctx>, version: i16, req: MetadataRequest) -> MetadataResponse {
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(ctx.node_id))
            .with_host(sb(&ctx.advertised_host))
            .with_port(ctx.advertised_port)
            .with_rack(None)])
        .with_cluster_id(Some(sb(&ctx.cluster_id)))
        .with_controller_id(BrokerId(ctx.node_id))
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    if all {
        let mut topics = ctx.logs.topics();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        resp.topics = topics.iter().map(|m| topic_entry(ctx, m)).collect();
        return resp;
    }
    let allow_create = ctx.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    for t in req.topics.unwrap_or_default() {
        let entry = match t.name {
            Some(name) => {
                let name = name.as_str().to_string();
                match ctx.logs.topic(&name) {
                    Some(meta) => topic_entry(ctx, &meta),
                    None => match validate_topic_name(&name) {
                        Err(_) => {
                            topic_error(Some(&name), Uuid::nil(), codes::INVALID_TOPIC_EXCEPTION)
                        }
                        Ok(()) if !allow_create => {
                            topic_error(Some(&name), Uuid::nil(), codes::UNKNOWN_TOPIC_OR_PARTITION)
                        }
                        Ok(()) => {
                            let n = name.clone();
                            let created = blocking(ctx, move |logs| {
                                logs.create_topic(&n, -1, Default::default(), false)
                            })
                            .await;
                            match created {
                                Ok(meta) => {
                                    tracing::info!(topic = %meta.name, partitions = meta.partitions, "auto-created topic");
                                    topic_entry(ctx, &meta)
                                }
                                // Created concurrently by another request: describe it.
                                Err(LogError::TopicAlreadyExists { .. }) => {
                                    match ctx.logs.topic(&name) {
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
            None => match ctx.logs.topic_by_id(t.topic_id) {
                Some(meta) => topic_entry(ctx, &meta),
                None => topic_error(None, t.topic_id, codes::UNKNOWN_TOPIC_ID),
            },
        };
        ctx.metrics.error_code("Metadata", entry.error_code);
        resp.topics.push(entry);
    }
    resp
}

/// DescribeCluster: this node, as broker and controller.
pub fn describe_cluster(
    ctx: &Ctx,
    _version: i16,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let resp = DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(sb(&ctx.cluster_id))
        .with_controller_id(BrokerId(ctx.node_id))
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    if req.endpoint_type != 1 {
        return resp
            .with_error_code(codes::UNSUPPORTED_ENDPOINT_TYPE)
            .with_error_message(Some(sb("only broker endpoints (type 1) are served")));
    }
    resp.with_brokers(vec![DescribeClusterBroker::default()
        .with_broker_id(BrokerId(ctx.node_id))
        .with_host(sb(&ctx.advertised_host))
        .with_port(ctx.advertised_port)
        .with_rack(None)
        .with_is_fenced(false)])
}

/// FindCoordinator: this node coordinates every group. Transaction coordinators (key type 1)
/// are refused with a fatal error until transactions exist.
pub fn find_coordinator(
    ctx: &Ctx,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let answer = |key: &str| {
        if req.key_type == 0 {
            (codes::NONE, None)
        } else {
            let _ = key;
            (
                codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                Some(sb("transactions are not supported by this broker yet")),
            )
        }
    };
    if version < 4 {
        let (code, msg) = answer(req.key.as_str());
        ctx.metrics.error_code("FindCoordinator", code);
        let mut r = FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_node_id(BrokerId(if code == 0 { ctx.node_id } else { -1 }))
            .with_host(sb(if code == 0 { &ctx.advertised_host } else { "" }))
            .with_port(if code == 0 { ctx.advertised_port } else { -1 });
        if version >= 1 {
            r.error_message = msg;
        }
        return r;
    }
    let coordinators = req
        .coordinator_keys
        .iter()
        .map(|k| {
            let (code, msg) = answer(k.as_str());
            ctx.metrics.error_code("FindCoordinator", code);
            Coordinator::default()
                .with_key(k.clone())
                .with_node_id(BrokerId(if code == 0 { ctx.node_id } else { -1 }))
                .with_host(sb(if code == 0 { &ctx.advertised_host } else { "" }))
                .with_port(if code == 0 { ctx.advertised_port } else { -1 })
                .with_error_code(code)
                .with_error_message(msg)
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
