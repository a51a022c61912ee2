//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions and DeleteRecords.
//! Validation of names and counts is the storage engine's and the catalog's (one place for the
//! rules); this module maps requests, answers and errors.

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
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    TopicName,
};
use uuid::Uuid;

use super::configs::source_id;
use super::{catalog, codes, err_msg, opt_sb, sb};
use crate::context::BrokerContext;

/// CreateTopics: `num_partitions`/`replication_factor` -1 mean the broker defaults; manual
/// assignments give each partition's replicas (leader first).
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
        } else if t.replication_factor == 0 || t.replication_factor < -1 {
            fail(
                r,
                codes::INVALID_REPLICATION_FACTOR,
                format!(
                    "replication factor {} requested: must be >= 1 or -1 for the default",
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
            let assignment = (!t.assignments.is_empty()).then(|| {
                let mut a: Vec<_> = t.assignments.iter().collect();
                a.sort_by_key(|x| x.partition_index);
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>())
                    .collect::<Vec<_>>()
            });
            if let Some(a) = &assignment {
                partitions = i32::try_from(a.len()).unwrap_or(i32::MAX);
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
            let new = catalog::NewTopic {
                name: name.clone(),
                partitions,
                replication_factor: i32::from(t.replication_factor),
                assignment,
                configs,
            };
            let res = async {
                let (meta, rf) = catalog::create_topic(ctx, new, validate_only).await?;
                let described = if validate_only {
                    None
                } else {
                    Some(ctx.logs.describe_configs_of(&meta))
                };
                Ok::<_, catalog::MetaError>((meta, rf, described))
            }
            .await;
            match res {
                Ok((meta, rf, described)) => {
                    if !validate_only {
                        tracing::info!(topic = %meta.name, partitions = meta.partitions, "created topic");
                    }
                    let mut r = r
                        .with_error_code(codes::NONE)
                        .with_topic_id(if validate_only { Uuid::nil() } else { meta.id })
                        .with_num_partitions(meta.partitions)
                        .with_replication_factor(i16::try_from(rf).unwrap_or(i16::MAX));
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
        } else {
            let assignment = t.assignments.as_ref().map(|a| {
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect::<Vec<i32>>())
                    .collect::<Vec<_>>()
            });
            match catalog::create_partitions(ctx, &name, t.count, assignment, req.validate_only)
                .await
            {
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
            // Only the partition's leader deletes; others send the client there. An internal
            // topic's head belongs to its coordinator (Kafka refuses it too).
            let local = catalog::refuse_internal(t.name.as_str(), "trimmed by DeleteRecords")
                .map_err(|e| e.code)
                .and_then(|()| catalog::local_partition(ctx, t.name.as_str(), index, -1));
            let outcome = match local {
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
