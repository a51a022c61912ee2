//! The topic calls behind the queue sync: Metadata, DescribeConfigs, CreateTopics,
//! CreatePartitions, IncrementalAlterConfigs and DeleteTopics.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_response::MetadataResponsePartition;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{code_text, str_bytes, AdminClient, OP_TIMEOUT_MS};
use crate::error::Result;
use crate::queues::{ObservedTopic, QueueAction};
use crate::scale::TopicPartition;

/// Kafka's resource type for topics in the config APIs.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs source of a value set on the topic itself.
const SOURCE_TOPIC_OVERRIDE: i8 = 1;

/// What Metadata says about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Topic → partition → leader node id.
    pub topics: BTreeMap<String, BTreeMap<i32, i32>>,
    /// Topic → partition → replica node ids, the preferred leader first (during a
    /// reassignment: the old and the new replicas).
    pub replicas: BTreeMap<String, BTreeMap<i32, Vec<i32>>>,
    /// Topic → partition → in-sync replica node ids.
    pub isr: BTreeMap<String, BTreeMap<i32, Vec<i32>>>,
    /// Registered brokers: node id → advertised host:port.
    pub brokers: BTreeMap<i32, String>,
}

impl ClusterMetadata {
    /// Partitions led by `node_id`.
    pub fn led_by(&self, node_id: i32) -> Vec<TopicPartition> {
        self.topics
            .iter()
            .flat_map(|(topic, parts)| {
                parts
                    .iter()
                    .filter(move |(_, leader)| **leader == node_id)
                    .map(move |(p, _)| TopicPartition {
                        topic: topic.clone(),
                        partition: *p,
                    })
            })
            .collect()
    }
}

impl AdminClient {
    /// Every topic with its partitions' leaders, replicas and in-sync replicas.
    pub async fn metadata(&mut self) -> Result<ClusterMetadata> {
        let version = self.version_for::<MetadataRequest>("Metadata")?;
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let response = self.send(&request, version, "Metadata").await?;
        let mut out = ClusterMetadata::default();
        for topic in response.topics {
            let Some(name) = topic.name else { continue };
            if topic.error_code != 0 {
                continue;
            }
            let parts = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            let ids = |pick: fn(&MetadataResponsePartition) -> &Vec<BrokerId>| {
                topic
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, pick(p).iter().map(|r| r.0).collect()))
                    .collect()
            };
            let name = name.0.as_str().to_string();
            out.replicas.insert(name.clone(), ids(|p| &p.replica_nodes));
            out.isr.insert(name.clone(), ids(|p| &p.isr_nodes));
            out.topics.insert(name, parts);
        }
        out.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        Ok(out)
    }

    /// Configs set on each topic itself. A topic whose configs cannot be read maps to None.
    pub async fn topic_overrides(
        &mut self,
        topics: &[String],
    ) -> Result<BTreeMap<String, Option<BTreeMap<String, String>>>> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        let version = self.version_for::<DescribeConfigsRequest>("DescribeConfigs")?;
        let request = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(str_bytes(t))
                        .with_configuration_keys(None)
                })
                .collect(),
        );
        let response = self.send(&request, version, "DescribeConfigs").await?;
        let mut out = BTreeMap::new();
        for result in response.results {
            let name = result.resource_name.as_str().to_string();
            if result.error_code != 0 {
                out.insert(name, None);
                continue;
            }
            let overrides = result
                .configs
                .iter()
                .filter(|c| c.config_source == SOURCE_TOPIC_OVERRIDE)
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.as_str().to_string(), v.as_str().to_string()))
                })
                .collect();
            out.insert(name, Some(overrides));
        }
        Ok(out)
    }

    /// Metadata plus overrides, as the queue diff wants it. A partition being moved lists its
    /// old and new replicas; the ones being removed (ListPartitionReassignments, when the broker
    /// serves it) are not counted in the replication factor.
    pub async fn observe_topics(&mut self) -> Result<(ClusterMetadata, Vec<ObservedTopic>)> {
        let moving = if self.supports(super::LIST_PARTITION_REASSIGNMENTS) {
            self.list_partition_reassignments()
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "ListPartitionReassignments failed; replication factors from Metadata alone"))
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        let metadata = self.metadata().await?;
        let names: Vec<String> = metadata.topics.keys().cloned().collect();
        let mut overrides = match self.topic_overrides(&names).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "DescribeConfigs failed; configs are left alone this pass");
                BTreeMap::new()
            }
        };
        let observed = metadata
            .topics
            .iter()
            .map(|(name, parts)| ObservedTopic {
                name: name.clone(),
                partitions: i32::try_from(parts.len()).unwrap_or(i32::MAX),
                overrides: overrides.remove(name).flatten(),
                replication_factor: metadata
                    .replicas
                    .get(name)
                    .and_then(|r| {
                        r.iter()
                            .map(|(p, replicas)| {
                                let tp = TopicPartition {
                                    topic: name.clone(),
                                    partition: *p,
                                };
                                let leaving = moving.get(&tp).map_or(0, |m| m.removing.len());
                                replicas.len().saturating_sub(leaving)
                            })
                            // the fewest: a move Metadata shows before ListPartitionReassignments
                            // did still lists its old and new replicas
                            .min()
                    })
                    .filter(|n| *n > 0)
                    .and_then(|n| i32::try_from(n).ok()),
            })
            .collect();
        Ok((metadata, observed))
    }

    /// Carries out one step of a queue plan (`queues::diff_queues`).
    pub async fn apply_queue_action(&mut self, action: &QueueAction) -> Result<()> {
        match action {
            QueueAction::Create {
                name,
                partitions,
                replication_factor,
                configs,
            } => {
                self.create_topic(name, *partitions, *replication_factor, configs)
                    .await
            }
            QueueAction::AddPartitions { name, total } => {
                self.create_partitions(name, *total).await
            }
            QueueAction::AlterConfigs { name, set, delete } => {
                self.alter_topic_configs(name, set, delete).await
            }
            QueueAction::Delete { name } => self.delete_topic(name).await,
        }
    }

    /// CreateTopics for one topic. TOPIC_ALREADY_EXISTS counts as success (another broker of the
    /// cluster, or an earlier pass, created it).
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<()> {
        let version = self.version_for::<CreateTopicsRequest>("CreateTopics")?;
        let topic = CreatableTopic::default()
            .with_name(TopicName(str_bytes(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(str_bytes(k))
                            .with_value(Some(str_bytes(v)))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(OP_TIMEOUT_MS);
        let response = self.send(&request, version, "CreateTopics").await?;
        let errors = response
            .topics
            .iter()
            .map(|t| (t.error_code, t.error_message.as_ref()));
        self.topic_outcome(
            "CreateTopics",
            name,
            errors,
            Some(ResponseError::TopicAlreadyExists),
        )
    }

    /// CreatePartitions up to `total`.
    pub async fn create_partitions(&mut self, name: &str, total: i32) -> Result<()> {
        let version = self.version_for::<CreatePartitionsRequest>("CreatePartitions")?;
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_count(total)
                .with_assignments(None)])
            .with_timeout_ms(OP_TIMEOUT_MS);
        let response = self.send(&request, version, "CreatePartitions").await?;
        let errors = response
            .results
            .iter()
            .map(|r| (r.error_code, r.error_message.as_ref()));
        self.topic_outcome("CreatePartitions", name, errors, None)
    }

    /// IncrementalAlterConfigs: set and delete topic configs.
    pub async fn alter_topic_configs(
        &mut self,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<()> {
        let version =
            self.version_for::<IncrementalAlterConfigsRequest>("IncrementalAlterConfigs")?;
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(0) // SET
                    .with_value(Some(str_bytes(v)))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(str_bytes(k))
                .with_config_operation(1) // DELETE
                .with_value(None)
        }));
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(name))
                .with_configs(configs),
        ]);
        let response = self
            .send(&request, version, "IncrementalAlterConfigs")
            .await?;
        let errors = response
            .responses
            .iter()
            .map(|r| (r.error_code, r.error_message.as_ref()));
        self.topic_outcome("IncrementalAlterConfigs", name, errors, None)
    }

    /// DeleteTopics for one topic. UNKNOWN_TOPIC_OR_PARTITION counts as success.
    pub async fn delete_topic(&mut self, name: &str) -> Result<()> {
        let version = self.version_for::<DeleteTopicsRequest>("DeleteTopics")?;
        let request = DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(str_bytes(name))])
            .with_timeout_ms(OP_TIMEOUT_MS);
        let response = self.send(&request, version, "DeleteTopics").await?;
        let errors = response
            .responses
            .iter()
            .map(|r| (r.error_code, r.error_message.as_ref()));
        self.topic_outcome(
            "DeleteTopics",
            name,
            errors,
            Some(ResponseError::UnknownTopicOrPartition),
        )
    }

    /// The outcome of a request about topic `name` from the (error code, message) pairs of its
    /// answer: the first error, naming the topic, except `done`, the error that says the work
    /// was done already (by another broker of the cluster or an earlier pass).
    fn topic_outcome<'a>(
        &self,
        request: &'static str,
        name: &str,
        errors: impl IntoIterator<Item = (i16, Option<&'a StrBytes>)>,
        done: Option<ResponseError>,
    ) -> Result<()> {
        for (code, message) in errors {
            if done.is_some_and(|done| code == done.code()) {
                continue;
            }
            if let Some(err) = code_text(code, message) {
                return Err(self.err(request, format!("topic {name}: {err}")));
            }
        }
        Ok(())
    }
}
