//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs. Validation of names and config values is the
//! storage engine's (one place for the rules); this module maps requests and errors.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, TopicName,
    UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{catalog, codes, sb};
use crate::cluster::state::{BrokerState, Command, Outcome};
use crate::context::BrokerContext;
use crate::log::{AlterOp, ConfigEntry, ConfigSource};

/// Kafka's config resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` ids (DescribeConfigs v1+ / CreateTopics v5+).
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// Kafka's `ConfigType` ids (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

/// The type a client should parse a config value as.
pub fn config_type(name: &str, value: Option<&str>) -> i8 {
    match name {
        "cleanup.policy" => TYPE_LIST,
        "index.interval.bytes"
        | "max.message.bytes"
        | "segment.bytes"
        | "segment.index.bytes"
        | "min.insync.replicas"
        | "num.partitions"
        | "node.id"
        | "broker.id" => TYPE_INT,
        "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
        _ => match value {
            Some("true") | Some("false") => TYPE_BOOLEAN,
            Some(v) if v.parse::<i64>().is_ok() => TYPE_LONG,
            _ => TYPE_STRING,
        },
    }
}

fn source_id(source: ConfigSource, broker: bool) -> i8 {
    match (source, broker) {
        (ConfigSource::TopicOverride, _) => SOURCE_TOPIC_CONFIG,
        (ConfigSource::Default, true) => SOURCE_STATIC_BROKER_CONFIG,
        (ConfigSource::Default, false) => SOURCE_DEFAULT_CONFIG,
    }
}

fn opt_sb(s: Option<&str>) -> Option<StrBytes> {
    s.map(sb)
}

fn err_msg(e: &impl std::fmt::Display) -> Option<StrBytes> {
    Some(sb(&e.to_string()))
}

/// CreateTopics: `num_partitions`/`replication_factor` -1 mean the broker defaults; manual
/// assignments are accepted only when every replica is this node.
pub async fn create_topics(
    ctx: &Arc<BrokerContext>,
    version: i16,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.as_str().to_string()))
        .map(|t| t.name.as_str().to_string())
        .collect();
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.as_str().to_string();
        let r = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_configs(None);
        let fail = |r: CreatableTopicResult, code: i16, msg: String| {
            r.with_error_code(code).with_error_message(Some(sb(&msg)))
        };
        let mut partitions = t.num_partitions;
        let r = if duplicates.contains(&name) {
            fail(
                r,
                codes::INVALID_REQUEST,
                format!("topic {name} appears more than once in the request"),
            )
        } else if !t.assignments.is_empty()
            && (t.num_partitions != -1 || t.replication_factor != -1)
        {
            fail(
                r,
                codes::INVALID_REQUEST,
                "with manual assignments, num_partitions and replication_factor must be -1".into(),
            )
        } else if !t.assignments.is_empty() && t.assignments.iter().any(|a| a.broker_ids.len() != 1)
        {
            fail(
                r,
                codes::INVALID_REPLICA_ASSIGNMENT,
                "each partition has exactly one replica (data replication is not available yet); \
                 give one broker id per partition"
                    .into(),
            )
        } else if !matches!(t.replication_factor, -1 | 1) {
            fail(
                r,
                codes::INVALID_REPLICATION_FACTOR,
                format!(
                    "replication factor {} is not available: each partition has exactly one copy \
                     (use 1 or -1)",
                    t.replication_factor
                ),
            )
        } else if partitions == 0 || partitions < -1 {
            fail(
                r,
                codes::INVALID_PARTITIONS,
                format!("{partitions} partitions requested: must be >= 1 or -1 for the default"),
            )
        } else if let Some(c) = t.configs.iter().find(|c| c.value.is_none()) {
            fail(
                r,
                codes::INVALID_CONFIG,
                format!("config {} has a null value", c.name.as_str()),
            )
        } else {
            if !t.assignments.is_empty() {
                partitions = i32::try_from(t.assignments.len()).unwrap_or(i32::MAX);
            }
            let configs: BTreeMap<String, String> = t
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str().to_string(),
                        c.value
                            .as_ref()
                            .map(|v| v.as_str().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            let validate_only = req.validate_only;
            let res = async {
                let meta =
                    catalog::create_topic(ctx, &name, partitions, configs, validate_only).await?;
                let described = if validate_only {
                    None
                } else {
                    Some(ctx.logs.describe_configs_of(&meta))
                };
                Ok::<_, catalog::MetaError>((meta, described))
            }
            .await;
            match res {
                Ok((meta, described)) => {
                    if !validate_only {
                        tracing::info!(topic = %meta.name, partitions = meta.partitions, "created topic");
                    }
                    let mut r = r
                        .with_error_code(codes::NONE)
                        .with_topic_id(if validate_only { Uuid::nil() } else { meta.id })
                        .with_num_partitions(meta.partitions)
                        .with_replication_factor(1);
                    if version >= 5 {
                        r.configs = described.map(|entries| {
                            entries
                                .iter()
                                .map(|e| {
                                    CreatableTopicConfigs::default()
                                        .with_name(sb(&e.name))
                                        .with_value(opt_sb(e.value.as_deref()))
                                        .with_read_only(e.read_only)
                                        .with_config_source(source_id(e.source, false))
                                        .with_is_sensitive(e.sensitive)
                                })
                                .collect()
                        });
                    }
                    r
                }
                Err(e) => fail(r, e.kafka_code(), e.to_string()),
            }
        };
        ctx.metrics.error_code("CreateTopics", r.error_code);
        resp.topics.push(r);
    }
    resp
}

/// DeleteTopics by name (v1–v5) or by name or id (v6+).
pub async fn delete_topics(
    ctx: &Arc<BrokerContext>,
    version: i16,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.as_str().to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.as_str().to_string()), Uuid::nil()))
            .collect()
    };
    let mut resp = DeleteTopicsResponse::default();
    for (name, id) in targets {
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => catalog::topic_by_id(ctx, id).map(|m| m.name),
        };
        let mut r = DeletableTopicResult::default()
            .with_name(name.as_deref().map(|n| TopicName(sb(n))))
            .with_topic_id(if version >= 6 { id } else { Uuid::nil() });
        match resolved {
            None => {
                r.error_code = codes::UNKNOWN_TOPIC_ID;
                r.error_message = Some(sb(&format!("no topic with id {id}")));
            }
            Some(n) => match catalog::delete_topic(ctx, &n).await {
                Ok(meta) => {
                    ctx.metrics.forget_topic(&meta.name);
                    r.name = Some(TopicName(sb(&meta.name)));
                    if version >= 6 {
                        r.topic_id = meta.id;
                    }
                }
                Err(e) => {
                    r.error_code = e.kafka_code();
                    r.error_message = err_msg(&e);
                    r.name = Some(TopicName(sb(&n)));
                }
            },
        }
        if version < 5 {
            r.error_message = None;
        }
        ctx.metrics.error_code("DeleteTopics", r.error_code);
        resp.responses.push(r);
    }
    resp
}

/// CreatePartitions: grows a topic to `count` partitions.
pub async fn create_partitions(
    ctx: &Arc<BrokerContext>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen = HashSet::new();
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.as_str().to_string();
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let r = if !seen.insert(name.clone()) {
            r.with_error_code(codes::INVALID_REQUEST)
                .with_error_message(Some(sb(&format!("topic {name} appears more than once"))))
        } else if t
            .assignments
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x.broker_ids.len() != 1))
        {
            r.with_error_code(codes::INVALID_REPLICA_ASSIGNMENT)
                .with_error_message(Some(sb(
                    "each partition has exactly one replica; give one broker id per partition",
                )))
        } else {
            match catalog::create_partitions(ctx, &name, t.count, req.validate_only).await {
                Ok(_) => r.with_error_code(codes::NONE),
                Err(e) => r
                    .with_error_code(e.kafka_code())
                    .with_error_message(err_msg(&e)),
            }
        };
        ctx.metrics.error_code("CreatePartitions", r.error_code);
        resp.results.push(r);
    }
    resp
}

/// DeleteRecords: moves each partition's log start offset up to the requested offset (-1: the
/// high watermark) and deletes the segments wholly below it; the answer carries the new low
/// watermark. Offsets above the high watermark are OFFSET_OUT_OF_RANGE.
pub async fn delete_records(
    ctx: &Arc<BrokerContext>,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default().with_name(t.name.clone());
        for p in t.partitions {
            let (index, offset) = (p.partition_index, p.offset);
            // Only the partition's leader deletes; others send the client there.
            let outcome = match super::fetch::local_partition(ctx, t.name.as_str(), index, -1) {
                Err(code) => Err(code),
                Ok(log) => Ok(
                    tokio::task::spawn_blocking(move || log.delete_records(offset))
                        .await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
                ),
            };
            let r = DeleteRecordsPartitionResult::default().with_partition_index(index);
            let r = match outcome {
                Err(code) => r.with_low_watermark(-1).with_error_code(code),
                Ok(Ok(low)) => r.with_low_watermark(low).with_error_code(codes::NONE),
                Ok(Err(e)) => {
                    tracing::debug!(topic = %t.name.as_str(), partition = index, offset, error = %e, "delete records refused");
                    r.with_low_watermark(-1).with_error_code(e.kafka_code())
                }
            };
            ctx.metrics.error_code("DeleteRecords", r.error_code);
            tr.partitions.push(r);
        }
        resp.topics.push(tr);
    }
    resp
}

fn describe_entries(
    entries: Vec<ConfigEntry>,
    keys: Option<&Vec<StrBytes>>,
    broker: bool,
    version: i16,
) -> Vec<DescribeConfigsResourceResult> {
    entries
        .into_iter()
        .filter(|e| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == e.name)))
        .map(|e| {
            let mut r = DescribeConfigsResourceResult::default()
                .with_name(sb(&e.name))
                .with_value(if e.sensitive {
                    None
                } else {
                    opt_sb(e.value.as_deref())
                })
                .with_read_only(e.read_only)
                .with_config_source(source_id(e.source, broker))
                .with_is_sensitive(e.sensitive);
            if version >= 3 {
                r.config_type = config_type(&e.name, e.value.as_deref());
            }
            r
        })
        .collect()
}

/// DescribeConfigs for topics (every config, defaults included) and this broker.
pub async fn describe_configs(
    ctx: &Arc<BrokerContext>,
    version: i16,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let name = res.resource_name.as_str().to_string();
        match res.resource_type {
            RESOURCE_TOPIC => match catalog::describe_topic_configs(ctx, &name) {
                Ok(entries) => {
                    r.configs =
                        describe_entries(entries, res.configuration_keys.as_ref(), false, version)
                }
                Err(e) => {
                    r.error_code = e.kafka_code();
                    r.error_message = err_msg(&e);
                }
            },
            RESOURCE_BROKER if name.is_empty() || name == ctx.node_id.to_string() => {
                r.configs = describe_entries(
                    ctx.logs.describe_broker_configs(),
                    res.configuration_keys.as_ref(),
                    true,
                    version,
                );
            }
            RESOURCE_BROKER => {
                r.error_code = codes::INVALID_REQUEST;
                r.error_message =
                    Some(sb(&format!("this is broker {}, not {name:?}", ctx.node_id)));
            }
            other => {
                r.error_code = codes::INVALID_REQUEST;
                r.error_message = Some(sb(&format!(
                    "config resource type {other} is not supported"
                )));
            }
        }
        ctx.metrics.error_code("DescribeConfigs", r.error_code);
        resp.results.push(r);
    }
    resp
}

/// The outcome of altering one resource: (error code, message).
async fn alter_resource(
    ctx: &Arc<BrokerContext>,
    resource_type: i8,
    name: &str,
    ops: Result<Vec<AlterOp>, String>,
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<StrBytes>) {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return (
                codes::INVALID_REQUEST,
                Some(sb(
                    "broker configs are static: set them with flags or SLUICE_* variables",
                )),
            )
        }
        other => {
            return (
                codes::INVALID_REQUEST,
                Some(sb(&format!(
                    "config resource type {other} is not supported"
                ))),
            )
        }
    }
    let ops = match ops {
        Ok(ops) => ops,
        Err(msg) => return (codes::INVALID_CONFIG, Some(sb(&msg))),
    };
    match catalog::alter_topic_configs(ctx, name, ops, incremental, validate_only).await {
        Ok(_) => (codes::NONE, None),
        Err(e) => (e.kafka_code(), err_msg(&e)),
    }
}

/// AlterConfigs: replaces all of a topic's overrides.
pub async fn alter_configs(
    ctx: &Arc<BrokerContext>,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let ops = Ok(res
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(v) => AlterOp::Set(c.name.as_str().to_string(), v.as_str().to_string()),
                None => AlterOp::Delete(c.name.as_str().to_string()),
            })
            .collect());
        let (code, msg) = alter_resource(
            ctx,
            res.resource_type,
            res.resource_name.as_str(),
            ops,
            false,
            req.validate_only,
        )
        .await;
        ctx.metrics.error_code("AlterConfigs", code);
        resp.responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    resp
}

/// IncrementalAlterConfigs: SET and DELETE; APPEND / SUBTRACT are refused (the only list
/// config, `cleanup.policy`, has a single allowed value).
pub async fn incremental_alter_configs(
    ctx: &Arc<BrokerContext>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let ops: Result<Vec<AlterOp>, String> = res
            .configs
            .iter()
            .map(|c| {
                let key = c.name.as_str().to_string();
                match (c.config_operation, &c.value) {
                    (0, Some(v)) => Ok(AlterOp::Set(key, v.as_str().to_string())),
                    (0, None) => Err(format!("SET of {key} needs a value")),
                    (1, _) => Ok(AlterOp::Delete(key)),
                    (2, _) | (3, _) => Err(format!(
                        "APPEND/SUBTRACT of {key} is not supported; use SET"
                    )),
                    (op, _) => Err(format!("unknown config operation {op} for {key}")),
                }
            })
            .collect();
        let (code, msg) = alter_resource(
            ctx,
            res.resource_type,
            res.resource_name.as_str(),
            ops,
            true,
            req.validate_only,
        )
        .await;
        ctx.metrics.error_code("IncrementalAlterConfigs", code);
        resp.responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    resp
}

/// UnregisterBroker: removes a broker from the cluster for good (decommission). Refused while it
/// owns partitions, is receiving one, or coordinates groups: move them off first. Then the
/// broker also leaves the metadata quorum.
pub async fn unregister_broker(
    ctx: &Arc<BrokerContext>,
    req: UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let id = req.broker_id.0;
    let resp = UnregisterBrokerResponse::default();
    // A broker that owns no partitions any more but still coordinates groups is on its way
    // out: mark it draining, so it hands its coordinator roles over (server::mover) and the
    // next UnregisterBroker succeeds.
    let state = ctx.cluster.state();
    let on_the_way_out = state
        .brokers
        .get(&id)
        .is_some_and(|b| b.state == BrokerState::Active)
        && state.partitions_of(id).is_empty()
        && !state.groups_of(id).is_empty();
    if on_the_way_out {
        match ctx
            .cluster
            .propose(Command::SetBrokerState {
                id,
                state: BrokerState::Draining,
            })
            .await
        {
            Ok(_) => tracing::info!(
                broker = id,
                groups = state.groups_of(id).len(),
                "broker marked draining: its group coordinator roles move to other brokers"
            ),
            Err(e) => tracing::warn!(broker = id, error = %e, "could not mark the broker draining"),
        }
    }
    let outcome = ctx.cluster.propose(Command::UnregisterBroker { id }).await;
    let (code, message) = match outcome {
        Err(e) => (
            41, // NOT_CONTROLLER: retriable
            Some(format!(
                "the metadata quorum did not accept the change: {e}"
            )),
        ),
        Ok(Outcome::Refused { code, message }) => (code, Some(message)),
        Ok(_) => match ctx.cluster.remove_node(id).await {
            Ok(()) => {
                tracing::info!(
                    broker = id,
                    "broker unregistered and removed from the quorum"
                );
                (codes::NONE, None)
            }
            Err(e) => (
                codes::UNKNOWN_SERVER_ERROR,
                Some(format!(
                    "broker {id} is unregistered but could not leave the metadata quorum: {e}"
                )),
            ),
        },
    };
    ctx.metrics.error_code("UnregisterBroker", code);
    resp.with_error_code(code)
        .with_error_message(message.as_deref().map(sb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_types_follow_kafka() {
        assert_eq!(config_type("cleanup.policy", Some("delete")), TYPE_LIST);
        assert_eq!(config_type("retention.ms", Some("-1")), TYPE_LONG);
        assert_eq!(config_type("segment.bytes", Some("1024")), TYPE_INT);
        assert_eq!(config_type("preallocate", Some("false")), TYPE_BOOLEAN);
        assert_eq!(config_type("sluice.fsync", Some("always")), TYPE_STRING);
    }

    #[test]
    fn config_sources_distinguish_overrides_and_defaults() {
        assert_eq!(
            source_id(ConfigSource::TopicOverride, false),
            SOURCE_TOPIC_CONFIG
        );
        assert_eq!(
            source_id(ConfigSource::Default, false),
            SOURCE_DEFAULT_CONFIG
        );
        assert_eq!(
            source_id(ConfigSource::Default, true),
            SOURCE_STATIC_BROKER_CONFIG
        );
    }
}
