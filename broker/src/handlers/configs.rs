//! Topic, broker and group configs: DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs.
//! Which configs exist and which values they take is the storage engine's (one place for the
//! rules); this module maps requests, Kafka's config ids and errors.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ListConfigResourcesRequest,
    ListConfigResourcesResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{catalog, codes, err_msg, opt_sb, sb};
use crate::context::BrokerContext;
use crate::group::configs::broker_synonym as group_broker_synonym;
use crate::log::{AlterOp, ConfigEntry, ConfigSource, REPLICATION_THROTTLE_CONFIGS};

/// Kafka's config resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
const RESOURCE_BROKER_LOGGER: i8 = 8;
const RESOURCE_CLIENT_METRICS: i8 = 16;
/// What ListConfigResources v1 lists (Kafka 4.1's set).
const LISTED_RESOURCES: [i8; 5] = [
    RESOURCE_TOPIC,
    RESOURCE_BROKER,
    RESOURCE_BROKER_LOGGER,
    RESOURCE_CLIENT_METRICS,
    RESOURCE_GROUP,
];

/// Kafka's `ConfigSource` ids (DescribeConfigs v1+ / CreateTopics v5+).
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
const SOURCE_DEFAULT_CONFIG: i8 = 5;
const SOURCE_GROUP_CONFIG: i8 = 8;

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
        | "broker.id"
        | "consumer.session.timeout.ms"
        | "consumer.heartbeat.interval.ms"
        | "share.session.timeout.ms"
        | "share.heartbeat.interval.ms"
        | "share.record.lock.duration.ms"
        | "share.delivery.count.limit" => TYPE_INT,
        "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
        _ => match value {
            Some("true") | Some("false") => TYPE_BOOLEAN,
            Some(v) if v.parse::<i64>().is_ok() => TYPE_LONG,
            _ => TYPE_STRING,
        },
    }
}

/// Kafka's id of a config's source (a broker's defaults are its static config).
pub fn source_id(source: ConfigSource, broker: bool) -> i8 {
    match (source, broker) {
        (ConfigSource::TopicOverride, _) => SOURCE_TOPIC_CONFIG,
        (ConfigSource::Default, true) => SOURCE_STATIC_BROKER_CONFIG,
        (ConfigSource::Default, false) => SOURCE_DEFAULT_CONFIG,
    }
}

/// What a DescribeConfigs request asks to be told beside each value.
#[derive(Clone, Copy)]
struct Detail {
    version: i16,
    /// Synonyms (v1+, `include_synonyms`): where the value could come from, most specific
    /// first, as `kafka-configs.sh --describe` prints them.
    synonyms: bool,
}

fn describe_entries(
    entries: Vec<ConfigEntry>,
    keys: Option<&Vec<StrBytes>>,
    broker: bool,
    detail: Detail,
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
            if detail.version >= 3 {
                r.config_type = config_type(&e.name, e.value.as_deref());
            }
            if detail.synonyms && detail.version >= 1 {
                r.synonyms = e
                    .synonyms
                    .iter()
                    .map(|s| {
                        DescribeConfigsSynonym::default()
                            .with_name(sb(&s.name))
                            .with_value((!e.sensitive).then(|| sb(&s.value)))
                            .with_source(source_id(s.source, broker))
                    })
                    .collect();
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
    let detail = Detail {
        version,
        synonyms: req.include_synonyms,
    };
    for res in req.resources {
        let mut r = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let name = res.resource_name.as_str().to_string();
        match res.resource_type {
            RESOURCE_TOPIC => match catalog::describe_topic_configs(ctx, &name) {
                Ok(entries) => {
                    r.configs =
                        describe_entries(entries, res.configuration_keys.as_ref(), false, detail)
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
                    detail,
                );
            }
            RESOURCE_BROKER => {
                r.error_code = codes::INVALID_REQUEST;
                r.error_message =
                    Some(sb(&format!("this is broker {}, not {name:?}", ctx.node_id)));
            }
            RESOURCE_GROUP => {
                let keys = res.configuration_keys.as_ref();
                let overrides = catalog::group_configs(ctx, &name);
                r.configs = catalog::group_defaults(ctx)
                    .entries(&overrides)
                    .into_iter()
                    .filter(|e| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == e.name)))
                    .map(|e| {
                        let mut c = DescribeConfigsResourceResult::default()
                            .with_name(sb(e.name))
                            .with_value(Some(sb(&e.value)))
                            .with_config_source(if e.overridden {
                                SOURCE_GROUP_CONFIG
                            } else {
                                SOURCE_DEFAULT_CONFIG
                            });
                        if version >= 3 {
                            c.config_type = config_type(e.name, Some(&e.value));
                        }
                        if detail.synonyms && version >= 1 {
                            let synonym = |name: &str, value: &str, source| {
                                DescribeConfigsSynonym::default()
                                    .with_name(sb(name))
                                    .with_value(Some(sb(value)))
                                    .with_source(source)
                            };
                            let default = synonym(
                                &group_broker_synonym(e.name),
                                &e.default,
                                SOURCE_DEFAULT_CONFIG,
                            );
                            c.synonyms = if e.overridden {
                                vec![synonym(e.name, &e.value, SOURCE_GROUP_CONFIG), default]
                            } else {
                                vec![default]
                            };
                        }
                        c
                    })
                    .collect();
            }
            other => {
                r.error_code = codes::INVALID_REQUEST;
                r.error_message = Some(sb(&unsupported_resource(other)));
            }
        }
        ctx.metrics.error_code("DescribeConfigs", r.error_code);
        resp.results.push(r);
    }
    resp
}

/// Why a config resource type is refused.
fn unsupported_resource(resource_type: i8) -> String {
    match resource_type {
        RESOURCE_CLIENT_METRICS => "client-metrics subscriptions (KIP-714) are not supported: \
             this broker does not collect client telemetry"
            .to_string(),
        RESOURCE_BROKER_LOGGER => "broker loggers cannot be changed at run time: \
             the level comes from RUST_LOG in the broker's environment"
            .to_string(),
        other => format!(
            "config resource type {other} is not supported (2 topics, 4 brokers, 32 groups)"
        ),
    }
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
        RESOURCE_GROUP => {
            let ops = match ops {
                Ok(ops) => ops,
                Err(msg) => return (codes::INVALID_CONFIG, Some(sb(&msg))),
            };
            return match catalog::alter_group_configs(ctx, name, ops, incremental, validate_only)
                .await
            {
                Ok(()) => (codes::NONE, None),
                Err(e) => (e.kafka_code(), err_msg(&e)),
            };
        }
        RESOURCE_BROKER => {
            // kafka-reassign-partitions --verify clears replication throttles on every broker;
            // there are none to clear.
            let only_throttle_deletes = ops.as_ref().is_ok_and(|ops| {
                ops.iter().all(|op| {
                    matches!(op, AlterOp::Delete(k) if REPLICATION_THROTTLE_CONFIGS.contains(&k.as_str()))
                })
            });
            if only_throttle_deletes {
                return (codes::NONE, None);
            }
            return (
                codes::INVALID_REQUEST,
                Some(sb(
                    "broker configs are static: set them with flags or SLUICE_* variables \
                     (replication throttles are not supported)",
                )),
            );
        }
        other => {
            return (
                codes::INVALID_REQUEST,
                Some(sb(&unsupported_resource(other))),
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

/// ListConfigResources (KIP-1142; v0 was KIP-714's ListClientMetricsResources): the
/// resources of the asked types that have configs to describe. Topics and brokers of the
/// cluster; groups with configs or coordinated here (Kafka lists its own coordinator's too);
/// client-metrics subscriptions and broker loggers, which this broker does not keep, none.
/// An empty list of types means v0's client metrics, or every type from v1. A type Kafka does
/// not list is refused UNSUPPORTED_VERSION, as Kafka does.
pub async fn list_config_resources(
    ctx: &Arc<BrokerContext>,
    version: i16,
    req: ListConfigResourcesRequest,
) -> ListConfigResourcesResponse {
    use kafka_protocol::messages::list_config_resources_response::ConfigResource;
    let types = match (req.resource_types.is_empty(), version) {
        (true, 0) => vec![RESOURCE_CLIENT_METRICS],
        (true, _) => LISTED_RESOURCES.to_vec(),
        (false, _) => req.resource_types.clone(),
    };
    if let Some(t) = types.iter().find(|t| !LISTED_RESOURCES.contains(t)) {
        // The response has no message: the reason goes to the log.
        tracing::info!(resource_type = t, "ListConfigResources refused: a type that cannot be listed (2 topics, 4 brokers, 8 broker loggers, 16 client metrics, 32 groups)");
        return ListConfigResourcesResponse::default().with_error_code(codes::UNSUPPORTED_VERSION);
    }
    let state = ctx.cluster.state();
    let mut listed: Vec<(i8, String)> = Vec::new();
    for t in types {
        match t {
            RESOURCE_TOPIC => listed.extend(state.topics.keys().map(|n| (t, n.clone()))),
            RESOURCE_BROKER => listed.extend(state.brokers.keys().map(|id| (t, id.to_string()))),
            RESOURCE_GROUP => {
                let mut groups: std::collections::BTreeSet<String> =
                    state.group_configs.keys().cloned().collect();
                let here = super::share_admin::list_groups(
                    Arc::clone(ctx),
                    5,
                    kafka_protocol::messages::ListGroupsRequest::default(),
                )
                .await;
                groups.extend(here.groups.iter().map(|g| g.group_id.to_string()));
                listed.extend(groups.into_iter().map(|g| (t, g)));
            }
            _ => {}
        }
    }
    listed.sort();
    listed.dedup();
    ListConfigResourcesResponse::default().with_config_resources(
        listed
            .into_iter()
            .map(|(t, name)| {
                ConfigResource::default()
                    .with_resource_type(t)
                    .with_resource_name(sb(&name))
            })
            .collect(),
    )
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
