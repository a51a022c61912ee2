//! The calls that move partitions and brokers (a drain, a rebalance): AlterPartitionReassignments,
//! ListPartitionReassignments, DescribeCluster, UnregisterBroker, DescribeQuorum and
//! DescribeLogDirs.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    describe_quorum_request, AlterPartitionReassignmentsRequest, BrokerId, DescribeClusterRequest,
    DescribeLogDirsRequest, DescribeQuorumRequest, ListPartitionReassignmentsRequest, TopicName,
    UnregisterBrokerRequest,
};

use super::{code_text, str_bytes, AdminClient, OP_TIMEOUT_MS};
use crate::error::Result;
use crate::scale::TopicPartition;

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

impl AdminClient {
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

    /// DescribeQuorum of partition 0 of `__cluster_metadata`: the voters of the metadata
    /// quorum, as its leader reports them (a broker that is not the leader passes the request
    /// on). Kafka brokers with separate controllers answer with the controllers' ids.
    pub async fn quorum_voters(&mut self) -> Result<Vec<i32>> {
        const NAME: &str = "DescribeQuorum";
        let version = self.version_for::<DescribeQuorumRequest>(NAME)?;
        let request = DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(str_bytes("__cluster_metadata")))
                .with_partitions(vec![
                    describe_quorum_request::PartitionData::default().with_partition_index(0)
                ]),
        ]);
        let response = self.send(&request, version, NAME).await?;
        if let Some(err) = code_text(response.error_code, response.error_message.as_ref()) {
            return Err(self.err(NAME, err));
        }
        let partition = response
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == 0)
            .ok_or_else(|| self.err(NAME, "the answer holds no __cluster_metadata partition 0"))?;
        if let Some(err) = code_text(partition.error_code, partition.error_message.as_ref()) {
            return Err(self.err(NAME, err));
        }
        Ok(partition
            .current_voters
            .iter()
            .map(|v| v.replica_id.0)
            .collect())
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
