//! A small Kafka admin client: just what the operator needs from its brokers (ApiVersions,
//! Metadata, DescribeConfigs, CreateTopics, CreatePartitions, IncrementalAlterConfigs,
//! DeleteTopics, and for draining brokers AlterPartitionReassignments, ListPartitionReassignments,
//! DescribeLogDirs and UnregisterBroker), on one TCP connection, with the `kafka-protocol` codec.
//!
//! Versions are negotiated with ApiVersions: for each API the client uses the highest version both
//! sides support within the range this code fills correctly.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiVersionsRequest, BrokerId, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest,
    MetadataRequest, RequestHeader, ResponseHeader, TopicName, UnregisterBrokerRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::queues::ObservedTopic;
use crate::scale::TopicPartition;

/// Largest response frame accepted (a metadata answer of many topics fits easily).
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Kafka's resource type for topics in the config APIs.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs source of a value set on the topic itself.
const SOURCE_TOPIC_OVERRIDE: i8 = 1;
/// Broker-side timeout of topic operations.
const OP_TIMEOUT_MS: i32 = 30_000;

/// Version range this client fills correctly, per API key.
const OUR_VERSIONS: &[(i16, i16, i16)] = &[
    (3, 1, 12), // Metadata
    (19, 2, 7), // CreateTopics
    (20, 1, 5), // DeleteTopics (v6 switches to topic states)
    (32, 1, 4), // DescribeConfigs
    (37, 0, 3), // CreatePartitions
    (44, 0, 1), // IncrementalAlterConfigs
    (45, 0, 1), // AlterPartitionReassignments
    (46, 0, 0), // ListPartitionReassignments
    (35, 1, 4), // DescribeLogDirs (v4: total and usable bytes; Kafka 4 dropped v0)
    (60, 0, 2), // DescribeCluster (v2: fenced brokers too)
    (64, 0, 0), // UnregisterBroker
];

/// API key of DescribeCluster.
pub const DESCRIBE_CLUSTER: i16 = 60;

/// API key of AlterPartitionReassignments.
pub const ALTER_PARTITION_REASSIGNMENTS: i16 = 45;
/// API key of ListPartitionReassignments.
pub const LIST_PARTITION_REASSIGNMENTS: i16 = 46;
/// API key of UnregisterBroker.
pub const UNREGISTER_BROKER: i16 = 64;
/// API key of DescribeLogDirs.
pub const DESCRIBE_LOG_DIRS: i16 = 35;

/// Name of an API key, for messages.
pub fn api_name(key: i16) -> &'static str {
    match key {
        3 => "Metadata",
        19 => "CreateTopics",
        20 => "DeleteTopics",
        32 => "DescribeConfigs",
        37 => "CreatePartitions",
        44 => "IncrementalAlterConfigs",
        ALTER_PARTITION_REASSIGNMENTS => "AlterPartitionReassignments",
        LIST_PARTITION_REASSIGNMENTS => "ListPartitionReassignments",
        DESCRIBE_CLUSTER => "DescribeCluster",
        UNREGISTER_BROKER => "UnregisterBroker",
        DESCRIBE_LOG_DIRS => "DescribeLogDirs",
        _ => "unknown API",
    }
}

/// A reassignment the cluster is still carrying out (ListPartitionReassignments).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OngoingReassignment {
    /// The replica set during the move (old and new replicas).
    pub replicas: Vec<i32>,
    /// Replicas being added: the move's targets.
    pub adding: Vec<i32>,
    /// Replicas being removed.
    pub removing: Vec<i32>,
}

impl OngoingReassignment {
    /// The replica set once the move is done.
    pub fn target(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }
}

/// What one broker's log directories hold (DescribeLogDirs of the broker asked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogDirUsage {
    /// Bytes of each partition stored on the broker (the largest copy when a partition is in
    /// more than one directory, as during a move between directories).
    pub partitions: BTreeMap<TopicPartition, u64>,
    /// Size of the volumes holding the directories, when the broker says (v4 and later).
    pub total_bytes: Option<u64>,
    /// Free bytes on those volumes, when the broker says (v4 and later).
    pub usable_bytes: Option<u64>,
    /// Directories the broker reported as failed (offline), with their error.
    pub failed: Vec<String>,
}

impl LogDirUsage {
    /// Bytes of every partition stored on the broker.
    pub fn used_bytes(&self) -> u64 {
        self.partitions.values().sum()
    }
}

/// What Metadata says about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Topic → partition → leader node id.
    pub topics: BTreeMap<String, BTreeMap<i32, i32>>,
    /// Topic → partition → replica node ids (the owner of a one-copy partition).
    pub replicas: BTreeMap<String, BTreeMap<i32, Vec<i32>>>,
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

/// One admin connection to one broker.
#[derive(Debug)]
pub struct AdminClient {
    addr: String,
    stream: TcpStream,
    correlation_id: i32,
    timeout: Duration,
    versions: HashMap<i16, (i16, i16)>,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn code_text(code: i16, message: Option<&StrBytes>) -> Option<String> {
    let err = ResponseError::try_from_code(code)?;
    Some(match message {
        Some(m) if !m.as_str().is_empty() => format!("{err}: {}", m.as_str()),
        _ => err.to_string(),
    })
}

impl AdminClient {
    /// Connects and negotiates API versions. Every step is bounded by `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<AdminClient> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Kafka {
                addr: addr.to_string(),
                request: "connect",
                reason: format!("no connection within {timeout:?}"),
            })?
            .map_err(|e| Error::Kafka {
                addr: addr.to_string(),
                request: "connect",
                reason: e.to_string(),
            })?;
        let mut client = AdminClient {
            addr: addr.to_string(),
            stream,
            correlation_id: 0,
            timeout,
            versions: HashMap::new(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-operator"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = client.send(&request, 3, "ApiVersions").await?;
        if let Some(err) = code_text(response.error_code, None) {
            return Err(client.err("ApiVersions", err));
        }
        client.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(client)
    }

    fn err(&self, request: &'static str, reason: impl Into<String>) -> Error {
        Error::Kafka {
            addr: self.addr.clone(),
            request,
            reason: reason.into(),
        }
    }

    fn version_for<R: Request>(&self, name: &'static str) -> Result<i16> {
        let (_, ours_min, ours_max) = OUR_VERSIONS
            .iter()
            .copied()
            .find(|(k, _, _)| *k == R::KEY)
            .ok_or_else(|| self.err(name, "API not used by this client"))?;
        let (theirs_min, theirs_max) = self
            .versions
            .get(&R::KEY)
            .copied()
            .ok_or_else(|| self.err(name, "the broker does not support this API"))?;
        let version = ours_max.min(theirs_max);
        if version < ours_min.max(theirs_min) {
            return Err(self.err(
                name,
                format!("no common version (broker {theirs_min}..={theirs_max}, client {ours_min}..={ours_max})"),
            ));
        }
        Ok(version)
    }

    async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        name: &'static str,
    ) -> Result<R::Response> {
        match tokio::time::timeout(self.timeout, self.roundtrip(request, version, name)).await {
            Ok(result) => result,
            Err(_) => Err(self.err(name, format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn roundtrip<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        name: &'static str,
    ) -> Result<R::Response> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-operator")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| self.err(name, format!("encoding: {e}")))?;
        let len = u32::try_from(body.len()).map_err(|_| self.err(name, "request too large"))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(len);
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| self.err(name, format!("write: {e}")))?;

        let mut len_buf = [0u8; 4];
        self.stream
            .read_exact(&mut len_buf)
            .await
            .map_err(|e| self.err(name, format!("read: {e}")))?;
        let len = usize::try_from(u32::from_be_bytes(len_buf)).unwrap_or(usize::MAX);
        if len > MAX_FRAME {
            return Err(self.err(name, format!("response frame of {len} bytes is too large")));
        }
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .await
            .map_err(|e| self.err(name, format!("read: {e}")))?;
        let mut buf = bytes::Bytes::from(payload);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| self.err(name, format!("decoding response header: {e}")))?;
        if header.correlation_id != self.correlation_id {
            return Err(self.err(
                name,
                format!(
                    "correlation id {} does not match request {}",
                    header.correlation_id, self.correlation_id
                ),
            ));
        }
        let response = R::Response::decode(&mut buf, version)
            .map_err(|e| self.err(name, format!("decoding response: {e}")))?;
        if buf.has_remaining() {
            tracing::debug!(addr = %self.addr, request = name, extra = buf.remaining(), "response has trailing bytes");
        }
        Ok(response)
    }

    /// Every topic with its partitions' leaders.
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
            let replicas = topic
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        p.replica_nodes.iter().map(|r| r.0).collect(),
                    )
                })
                .collect();
            out.topics.insert(name.0.as_str().to_string(), parts);
            out.replicas.insert(name.0.as_str().to_string(), replicas);
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

    /// Metadata plus overrides, as the queue diff wants it.
    pub async fn observe_topics(&mut self) -> Result<(ClusterMetadata, Vec<ObservedTopic>)> {
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
                    // the fewest: a partition being moved lists its old and new replicas
                    .and_then(|r| r.values().map(Vec::len).min())
                    .filter(|n| *n > 0)
                    .and_then(|n| i32::try_from(n).ok()),
            })
            .collect();
        Ok((metadata, observed))
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
        for t in response.topics {
            if t.error_code == ResponseError::TopicAlreadyExists.code() {
                continue;
            }
            if let Some(err) = code_text(t.error_code, t.error_message.as_ref()) {
                return Err(self.err("CreateTopics", format!("topic {name}: {err}")));
            }
        }
        Ok(())
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
        for r in response.results {
            if let Some(err) = code_text(r.error_code, r.error_message.as_ref()) {
                return Err(self.err("CreatePartitions", format!("topic {name}: {err}")));
            }
        }
        Ok(())
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
        for r in response.responses {
            if let Some(err) = code_text(r.error_code, r.error_message.as_ref()) {
                return Err(self.err("IncrementalAlterConfigs", format!("topic {name}: {err}")));
            }
        }
        Ok(())
    }

    /// DeleteTopics for one topic. UNKNOWN_TOPIC_OR_PARTITION counts as success.
    pub async fn delete_topic(&mut self, name: &str) -> Result<()> {
        let version = self.version_for::<DeleteTopicsRequest>("DeleteTopics")?;
        let request = DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(str_bytes(name))])
            .with_timeout_ms(OP_TIMEOUT_MS);
        let response = self.send(&request, version, "DeleteTopics").await?;
        for r in response.responses {
            if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
                continue;
            }
            if let Some(err) = code_text(r.error_code, r.error_message.as_ref()) {
                return Err(self.err("DeleteTopics", format!("topic {name}: {err}")));
            }
        }
        Ok(())
    }

    /// Whether this client and the broker share a version of API `key`.
    pub fn supports(&self, key: i16) -> bool {
        let Some((_, ours_min, ours_max)) =
            OUR_VERSIONS.iter().copied().find(|(k, _, _)| *k == key)
        else {
            return false;
        };
        self.versions
            .get(&key)
            .is_some_and(|(lo, hi)| ours_max.min(*hi) >= ours_min.max(*lo))
    }

    /// The broker's address, for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// AlterPartitionReassignments: move each partition to the given replicas. A request-level
    /// error is an `Err`; the per-partition outcomes come back in request order, an `Err` naming
    /// the Kafka error and the broker's message.
    pub async fn alter_partition_reassignments(
        &mut self,
        moves: &[(TopicPartition, Vec<i32>)],
    ) -> Result<Vec<(TopicPartition, std::result::Result<(), String>)>> {
        const NAME: &str = "AlterPartitionReassignments";
        let version = self.version_for::<AlterPartitionReassignmentsRequest>(NAME)?;
        let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for (tp, replicas) in moves {
            by_topic.entry(tp.topic.as_str()).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(tp.partition)
                    .with_replicas(Some(replicas.iter().map(|r| BrokerId(*r)).collect())),
            );
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(OP_TIMEOUT_MS)
            // replicas = [target] may shrink a partition that has more than one replica
            .with_allow_replication_factor_change(true)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ReassignableTopic::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = self.send(&request, version, NAME).await?;
        if let Some(err) = code_text(response.error_code, response.error_message.as_ref()) {
            return Err(self.err(NAME, err));
        }
        let mut outcome: HashMap<(String, i32), std::result::Result<(), String>> = HashMap::new();
        for topic in &response.responses {
            for p in &topic.partitions {
                let result = match code_text(p.error_code, p.error_message.as_ref()) {
                    Some(err) => Err(err),
                    None => Ok(()),
                };
                outcome.insert(
                    (topic.name.0.as_str().to_string(), p.partition_index),
                    result,
                );
            }
        }
        Ok(moves
            .iter()
            .map(|(tp, _)| {
                let result = outcome
                    .remove(&(tp.topic.clone(), tp.partition))
                    .unwrap_or_else(|| Err("the broker did not answer for this partition".into()));
                (tp.clone(), result)
            })
            .collect())
    }

    /// ListPartitionReassignments of every partition: the moves still in progress.
    pub async fn list_partition_reassignments(
        &mut self,
    ) -> Result<BTreeMap<TopicPartition, OngoingReassignment>> {
        const NAME: &str = "ListPartitionReassignments";
        let version = self.version_for::<ListPartitionReassignmentsRequest>(NAME)?;
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(OP_TIMEOUT_MS)
            .with_topics(None);
        let response = self.send(&request, version, NAME).await?;
        if let Some(err) = code_text(response.error_code, response.error_message.as_ref()) {
            return Err(self.err(NAME, err));
        }
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        Ok(response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    (
                        TopicPartition {
                            topic: t.name.0.as_str().to_string(),
                            partition: p.partition_index,
                        },
                        OngoingReassignment {
                            replicas: ids(&p.replicas),
                            adding: ids(&p.adding_replicas),
                            removing: ids(&p.removing_replicas),
                        },
                    )
                })
            })
            .collect())
    }

    /// DescribeCluster: every registered broker, id → fenced (from v2 fenced brokers are listed
    /// too; older versions list live brokers only, all reported as not fenced).
    pub async fn describe_cluster(&mut self) -> Result<BTreeMap<i32, bool>> {
        const NAME: &str = "DescribeCluster";
        let version = self.version_for::<DescribeClusterRequest>(NAME)?;
        let mut request = DescribeClusterRequest::default();
        if version >= 1 {
            request = request.with_endpoint_type(1); // brokers
        }
        if version >= 2 {
            request = request.with_include_fenced_brokers(true);
        }
        let response = self.send(&request, version, NAME).await?;
        if let Some(err) = code_text(response.error_code, response.error_message.as_ref()) {
            return Err(self.err(NAME, err));
        }
        Ok(response
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.is_fenced))
            .collect())
    }

    /// UnregisterBroker: remove broker `id` from the cluster. A refusal (for example while the
    /// broker still owns partitions or coordinators) is an `Err` with the broker's message.
    pub async fn unregister_broker(&mut self, id: i32) -> Result<()> {
        const NAME: &str = "UnregisterBroker";
        let version = self.version_for::<UnregisterBrokerRequest>(NAME)?;
        let request = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
        let response = self.send(&request, version, NAME).await?;
        if let Some(err) = code_text(response.error_code, response.error_message.as_ref()) {
            return Err(self.err(NAME, format!("broker {id}: {err}")));
        }
        Ok(())
    }

    /// DescribeLogDirs of the broker this client is connected to (each broker describes only
    /// its own directories): every partition's size and, from v4, the volumes' size and free
    /// space (Kafka's -1, "unknown", becomes `None`).
    pub async fn describe_log_dirs(&mut self) -> Result<LogDirUsage> {
        const NAME: &str = "DescribeLogDirs";
        let version = self.version_for::<DescribeLogDirsRequest>(NAME)?;
        let request = DescribeLogDirsRequest::default().with_topics(None);
        let response = self.send(&request, version, NAME).await?;
        if let Some(err) = code_text(response.error_code, None) {
            return Err(self.err(NAME, err));
        }
        let known = |v: i64| u64::try_from(v).ok();
        let mut usage = LogDirUsage::default();
        for dir in &response.results {
            if let Some(err) = code_text(dir.error_code, None) {
                usage
                    .failed
                    .push(format!("{}: {err}", dir.log_dir.as_str()));
                continue;
            }
            for topic in &dir.topics {
                for p in &topic.partitions {
                    let size = known(p.partition_size).unwrap_or(0);
                    let entry = usage
                        .partitions
                        .entry(TopicPartition {
                            topic: topic.name.0.as_str().to_string(),
                            partition: p.partition_index,
                        })
                        .or_default();
                    *entry = (*entry).max(size);
                }
            }
            let add = |sum: Option<u64>, v: Option<u64>| match (sum, v) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (None, v) | (v, None) => v,
            };
            if version >= 4 {
                usage.total_bytes = add(usage.total_bytes, known(dir.total_bytes));
                usage.usable_bytes = add(usage.usable_bytes, known(dir.usable_bytes));
            }
        }
        Ok(usage)
    }
}

/// GET `http://<addr>/readyz`: true on a 200 answer. A plain HTTP/1.1 request; the operator needs
/// nothing more and this keeps an HTTP client library out of the dependency tree.
pub async fn probe_readyz(addr: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        // "HTTP/1.1 200"
        Some(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    //! The client against a scripted broker on 127.0.0.1:0 that decodes the real requests with
    //! the broker side of the codec and answers like a Kafka broker would.

    use super::*;
    use kafka_protocol::messages::alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    };
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    use kafka_protocol::messages::list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    };
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsResponse, ApiKey, ApiVersionsResponse, CreateTopicsResponse,
        DescribeLogDirsResponse, ListPartitionReassignmentsResponse, MetadataResponse,
        UnregisterBrokerResponse,
    };
    use kafka_protocol::protocol::decode_request_header_from_buffer;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    type Seen = Arc<Mutex<Vec<CreateTopicsRequest>>>;

    fn frame(key: ApiKey, version: i16, correlation_id: i32, body: BytesMut) -> Vec<u8> {
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut out, key.response_header_version(version))
            .expect("response header");
        out.extend_from_slice(&body);
        let mut frame = u32::try_from(out.len())
            .expect("small")
            .to_be_bytes()
            .to_vec();
        frame.extend_from_slice(&out);
        frame
    }

    async fn scripted_broker() -> (String, Seen) {
        scripted_broker_with(false).await
    }

    /// `cluster`: also serve the partition-move APIs, like a broker of a cluster.
    async fn scripted_broker_with(cluster: bool) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen: Seen = Arc::default();
        let seen2 = seen.clone();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            loop {
                let mut len = [0u8; 4];
                if sock.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
                sock.read_exact(&mut buf).await.expect("frame");
                let mut buf = bytes::Bytes::from(buf);
                let header = decode_request_header_from_buffer(&mut buf).expect("header");
                let key = ApiKey::try_from(header.request_api_key).expect("key");
                let version = header.request_api_version;
                let mut body = BytesMut::new();
                match key {
                    ApiKey::ApiVersions => ApiVersionsResponse::default()
                        .with_api_keys(
                            [
                                (3, 0, 13),
                                (19, 2, 7),
                                (20, 1, 6),
                                (32, 1, 4),
                                (37, 0, 3),
                                (44, 0, 1),
                                (18, 0, 4),
                            ]
                            .iter()
                            .chain(if cluster {
                                &[(45, 0, 1), (46, 0, 0), (64, 0, 0), (35, 1, 4)][..]
                            } else {
                                &[][..]
                            })
                            .map(|(k, lo, hi)| {
                                ApiVersion::default()
                                    .with_api_key(*k)
                                    .with_min_version(*lo)
                                    .with_max_version(*hi)
                            })
                            .collect(),
                        )
                        .encode(&mut body, version)
                        .expect("encode"),
                    ApiKey::Metadata => {
                        MetadataRequest::decode(&mut buf, version).expect("metadata request");
                        MetadataResponse::default()
                            .with_topics(vec![MetadataResponseTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
                                .with_partitions(
                                    (0..3)
                                        .map(|p| {
                                            MetadataResponsePartition::default()
                                                .with_partition_index(p)
                                                .with_leader_id(BrokerId(p % 2))
                                        })
                                        .collect(),
                                )])
                            .encode(&mut body, version)
                            .expect("encode")
                    }
                    ApiKey::CreateTopics => {
                        let req =
                            CreateTopicsRequest::decode(&mut buf, version).expect("create request");
                        CreateTopicsResponse::default()
                            .with_topics(
                                req.topics
                                    .iter()
                                    .map(|t| {
                                        let code = match t.name.0.as_str() {
                                            "exists" => ResponseError::TopicAlreadyExists.code(),
                                            "bad" => ResponseError::InvalidConfig.code(),
                                            _ => 0,
                                        };
                                        CreatableTopicResult::default()
                                            .with_name(t.name.clone())
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                            .encode(&mut body, version)
                            .expect("encode");
                        seen2.lock().expect("lock").push(req);
                    }
                    ApiKey::AlterPartitionReassignments => {
                        let req = AlterPartitionReassignmentsRequest::decode(&mut buf, version)
                            .expect("alter request");
                        AlterPartitionReassignmentsResponse::default()
                            .with_responses(
                                req.topics
                                    .iter()
                                    .map(|t| {
                                        ReassignableTopicResponse::default()
                                            .with_name(t.name.clone())
                                            .with_partitions(
                                                t.partitions
                                                    .iter()
                                                    .map(|p| {
                                                        // moves to broker 9 are refused
                                                        let bad = p.replicas.as_ref().is_some_and(
                                                            |r| r.contains(&BrokerId(9)),
                                                        );
                                                        ReassignablePartitionResponse::default()
                                                            .with_partition_index(p.partition_index)
                                                            .with_error_code(if bad {
                                                                ResponseError::InvalidReplicaAssignment.code()
                                                            } else {
                                                                0
                                                            })
                                                            .with_error_message(bad.then(|| {
                                                                StrBytes::from_static_str(
                                                                    "no broker 9",
                                                                )
                                                            }))
                                                    })
                                                    .collect(),
                                            )
                                    })
                                    .collect(),
                            )
                            .encode(&mut body, version)
                            .expect("encode")
                    }
                    ApiKey::ListPartitionReassignments => {
                        ListPartitionReassignmentsResponse::default()
                            .with_topics(vec![OngoingTopicReassignment::default()
                                .with_name(TopicName(StrBytes::from_static_str("orders")))
                                .with_partitions(vec![OngoingPartitionReassignment::default()
                                    .with_partition_index(2)
                                    .with_replicas(vec![BrokerId(2), BrokerId(0)])
                                    .with_adding_replicas(vec![BrokerId(0)])
                                    .with_removing_replicas(vec![BrokerId(2)])])])
                            .encode(&mut body, version)
                            .expect("encode")
                    }
                    ApiKey::UnregisterBroker => {
                        let req = UnregisterBrokerRequest::decode(&mut buf, version)
                            .expect("unregister request");
                        let refuse = req.broker_id.0 == 2;
                        UnregisterBrokerResponse::default()
                            .with_error_code(if refuse {
                                ResponseError::InvalidRequest.code()
                            } else {
                                0
                            })
                            .with_error_message(refuse.then(|| {
                                StrBytes::from_static_str(
                                    "broker 2 still coordinates group billing",
                                )
                            }))
                            .encode(&mut body, version)
                            .expect("encode")
                    }
                    ApiKey::DescribeLogDirs => {
                        use kafka_protocol::messages::describe_log_dirs_response::{
                            DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
                        };
                        let req = DescribeLogDirsRequest::decode(&mut buf, version)
                            .expect("log dirs request");
                        assert!(req.topics.is_none(), "every partition is asked for");
                        let part = |p: i32, size: i64| {
                            DescribeLogDirsPartition::default()
                                .with_partition_index(p)
                                .with_partition_size(size)
                        };
                        let orders = |parts| {
                            DescribeLogDirsTopic::default()
                                .with_name(TopicName(StrBytes::from_static_str("orders")))
                                .with_partitions(parts)
                        };
                        DescribeLogDirsResponse::default()
                            .with_results(vec![
                                DescribeLogDirsResult::default()
                                    .with_log_dir(StrBytes::from_static_str("/data/a"))
                                    .with_topics(vec![orders(vec![part(0, 1000), part(2, 50)])])
                                    .with_total_bytes(10_000)
                                    .with_usable_bytes(4_000),
                                // partition 2 moving between directories: its larger copy counts
                                DescribeLogDirsResult::default()
                                    .with_log_dir(StrBytes::from_static_str("/data/b"))
                                    .with_topics(vec![orders(vec![part(2, 300)])])
                                    .with_total_bytes(5_000)
                                    .with_usable_bytes(-1),
                                DescribeLogDirsResult::default()
                                    .with_log_dir(StrBytes::from_static_str("/data/c"))
                                    .with_error_code(ResponseError::KafkaStorageError.code()),
                            ])
                            .encode(&mut body, version)
                            .expect("encode")
                    }
                    other => panic!("unexpected request {other:?}"),
                }
                let out = frame(key, version, header.correlation_id, body);
                sock.write_all(&out).await.expect("write");
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn metadata_reports_partition_leaders() {
        let (addr, _) = scripted_broker().await;
        let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
            .await
            .expect("connect");
        let md = client.metadata().await.expect("metadata");
        assert_eq!(
            md.topics["orders"],
            BTreeMap::from([(0, 0), (1, 1), (2, 0)])
        );
        let led: Vec<String> = md.led_by(0).iter().map(ToString::to_string).collect();
        assert_eq!(led, ["orders-0", "orders-2"]);
    }

    #[tokio::test]
    async fn create_topic_sends_partitions_and_configs_and_maps_errors() {
        let (addr, seen) = scripted_broker().await;
        let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
            .await
            .expect("connect");
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        client
            .create_topic("orders", 6, 1, &configs)
            .await
            .expect("created");
        client
            .create_topic("exists", 1, 1, &BTreeMap::new())
            .await
            .expect("already exists is fine");
        let err = client
            .create_topic("bad", 1, 1, &BTreeMap::new())
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("topic bad"), "{err}");
        let seen = seen.lock().expect("lock");
        let req = &seen[0];
        assert_eq!(req.topics[0].num_partitions, 6);
        assert_eq!(req.topics[0].configs[0].name.as_str(), "retention.ms");
        assert_eq!(
            req.topics[0].configs[0].value.as_ref().map(|v| v.as_str()),
            Some("1000")
        );
    }

    #[tokio::test]
    async fn a_single_node_broker_serves_no_partition_moves() {
        let (addr, _) = scripted_broker().await;
        let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
            .await
            .expect("connect");
        assert!(!client.supports(ALTER_PARTITION_REASSIGNMENTS));
        assert!(!client.supports(UNREGISTER_BROKER));
        assert!(client.supports(3));
        let err = client.unregister_broker(1).await.expect_err("not served");
        let text = err.to_string();
        assert!(text.contains("UnregisterBroker"), "{text}");
        assert!(text.contains("does not support this API"), "{text}");
    }

    #[tokio::test]
    async fn partition_moves_and_broker_removal_map_every_outcome() {
        let (addr, _) = scripted_broker_with(true).await;
        let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
            .await
            .expect("connect");
        for key in [
            ALTER_PARTITION_REASSIGNMENTS,
            LIST_PARTITION_REASSIGNMENTS,
            UNREGISTER_BROKER,
        ] {
            assert!(client.supports(key), "{}", api_name(key));
        }
        let tp = |p| TopicPartition {
            topic: "orders".into(),
            partition: p,
        };
        let outcome = client
            .alter_partition_reassignments(&[(tp(0), vec![1]), (tp(1), vec![9])])
            .await
            .expect("answered");
        assert_eq!(outcome[0], (tp(0), Ok(())));
        let refused = outcome[1].1.clone().expect_err("refused");
        assert!(refused.contains("no broker 9"), "{refused}");

        let ongoing = client.list_partition_reassignments().await.expect("list");
        assert_eq!(ongoing.len(), 1);
        assert_eq!(ongoing[&tp(2)].target(), vec![0]);

        client.unregister_broker(1).await.expect("unregistered");
        let err = client.unregister_broker(2).await.expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("broker 2") && text.contains("still coordinates group billing"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn log_dirs_give_partition_sizes_and_the_volumes_free_space() {
        let (addr, _) = scripted_broker_with(true).await;
        let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
            .await
            .expect("connect");
        assert!(client.supports(DESCRIBE_LOG_DIRS));
        let usage = client.describe_log_dirs().await.expect("described");
        let tp = |p| TopicPartition {
            topic: "orders".into(),
            partition: p,
        };
        assert_eq!(
            usage.partitions,
            BTreeMap::from([(tp(0), 1000), (tp(2), 300)])
        );
        assert_eq!(usage.used_bytes(), 1300);
        assert_eq!(usage.total_bytes, Some(15_000), "both healthy directories");
        assert_eq!(
            usage.usable_bytes,
            Some(4_000),
            "unknown (-1) is not summed"
        );
        assert_eq!(usage.failed.len(), 1);
        assert!(
            usage.failed[0].starts_with("/data/c: "),
            "{:?}",
            usage.failed
        );

        let (plain, _) = scripted_broker().await;
        let mut single = AdminClient::connect(&plain, Duration::from_secs(5))
            .await
            .expect("connect");
        assert!(!single.supports(DESCRIBE_LOG_DIRS));
        let err = single.describe_log_dirs().await.expect_err("not served");
        assert!(err.to_string().contains("DescribeLogDirs"), "{err}");
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_with_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let err = AdminClient::connect(&addr, Duration::from_secs(2))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains(&addr));
    }

    #[tokio::test]
    async fn readyz_probe_reads_the_status_line() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\n",
                "HTTP/1.1 503 Service Unavailable\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                s.write_all(answer.as_bytes()).await.expect("write");
            }
        });
        assert!(probe_readyz(&addr, Duration::from_secs(2)).await);
        assert!(!probe_readyz(&addr, Duration::from_secs(2)).await);
    }
}
