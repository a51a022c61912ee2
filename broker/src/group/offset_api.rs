//! OffsetCommit and OffsetFetch: the group's partition must be served here and the member
//! known (for OffsetFetch from v9, a consumer group's member at its current epoch), then its
//! offsets are written to `__consumer_offsets` (answered once every in-sync replica has them)
//! or read from the partition's committed offsets; responses built per version.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::offsets::StoredOffset;
use super::records::OffsetRecord;
use super::{codes, now_ms, s, GroupCoordinator, OFFSETS_TOPIC};

/// The (topic, partition) pairs of a commit, for the member checks.
pub(super) fn listed<'a, P: Iterator<Item = i32>>(
    topics: impl Iterator<Item = (&'a TopicName, P)>,
) -> Vec<(String, i32)> {
    topics
        .flat_map(|(name, partitions)| partitions.map(move |p| (name.0.to_string(), p)))
        .collect()
}

/// Kafka's UNSTABLE_OFFSET_COMMIT: a transaction holds offsets of the partition not yet
/// committed (the client retries, KIP-447).
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

/// Largest metadata string accepted with a commit (`offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;

impl GroupCoordinator {
    pub async fn offset_commit(
        &self,
        version: i16,
        req: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        let group_id = req.group_id.0.to_string();
        let directory = self.directory();
        if !group_id.is_empty() {
            self.wait_loaded(&group_id).await;
        }
        // Group-level verdict first: it applies to every partition.
        let committed = listed(
            req.topics
                .iter()
                .map(|t| (&t.name, t.partitions.iter().map(|p| p.partition_index))),
        );
        let (tenure, group_error) = self.commit_verdict(
            &group_id,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id_or_member_epoch,
            version >= 9,
            &committed,
        );
        if let Some(code) = group_error {
            tracing::debug!(group = %group_id, member = %req.member_id.as_str(), code, "offset commit refused");
        }

        let commit_ts = now_ms();
        let mut records = Vec::new();
        /// Per partition: index, error code, whether a record was written for it.
        type PartitionOutcome = (i32, i16, bool);
        let mut out: Vec<(OffsetCommitResponseTopic, Vec<PartitionOutcome>)> = Vec::new();
        for topic in &req.topics {
            let mut name = topic.name.0.to_string();
            let mut topic_code = None;
            if version >= 10 && name.is_empty() {
                match directory
                    .as_ref()
                    .and_then(|d| d.topic_name(topic.topic_id))
                {
                    Some(n) => name = n,
                    None => topic_code = Some(codes::UNKNOWN_TOPIC_ID),
                }
            }
            let known_partitions = match (&directory, topic_code) {
                (Some(d), None) => Some(d.partitions(&name)),
                _ => None,
            };
            let mut parts = Vec::new();
            for p in &topic.partitions {
                let metadata = p.committed_metadata.as_deref().unwrap_or("");
                let code = if let Some(c) = group_error.or(topic_code) {
                    c
                } else if known_partitions.is_some_and(|n| {
                    n.is_none_or(|n| p.partition_index < 0 || p.partition_index >= n)
                }) {
                    codes::UNKNOWN_TOPIC_OR_PARTITION
                } else if metadata.len() > MAX_METADATA_BYTES {
                    codes::OFFSET_METADATA_TOO_LARGE
                } else {
                    codes::NONE
                };
                if code == codes::NONE {
                    records.push(OffsetRecord::Commit {
                        group: group_id.clone(),
                        topic: name.clone(),
                        partition: p.partition_index,
                        value: StoredOffset {
                            offset: p.committed_offset,
                            leader_epoch: if version >= 6 {
                                p.committed_leader_epoch
                            } else {
                                -1
                            },
                            metadata: metadata.to_string(),
                            commit_timestamp_ms: commit_ts,
                        },
                    });
                }
                parts.push((p.partition_index, code, code == codes::NONE));
            }
            let resp_topic = OffsetCommitResponseTopic::default()
                .with_name(TopicName(s(&name)))
                .with_topic_id(topic.topic_id);
            out.push((resp_topic, parts));
        }

        let storage_error = match tenure {
            _ if records.is_empty() => None,
            None => Some(codes::COORDINATOR_NOT_AVAILABLE),
            Some(t) => self.write_commit(&group_id, &t, records).await,
        };

        OffsetCommitResponse::default().with_topics(
            out.into_iter()
                .map(|(topic, parts)| {
                    topic.with_partitions(
                        parts
                            .into_iter()
                            .map(|(index, code, stored)| {
                                let code = match (stored, storage_error) {
                                    (true, Some(e)) => e,
                                    _ => code,
                                };
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
                })
                .collect(),
        )
    }

    /// Whether a member may commit offsets for `group_id`: the group's tenure here, and the
    /// error every partition of the commit gets instead (group-level). `v9`: an unknown
    /// member of a group not known here is UNKNOWN_MEMBER_ID rather than ILLEGAL_GENERATION.
    pub(super) fn commit_verdict(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        v9: bool,
        partitions: &[(String, i32)],
    ) -> (Option<Arc<super::Tenure>>, Option<i16>) {
        let mut tenure = None;
        let group_error = if group_id.is_empty() {
            Some(codes::INVALID_GROUP_ID)
        } else {
            let mut groups = self.lock();
            match self.status(group_id) {
                Err(code) => Some(code),
                Ok(t) => {
                    tenure = Some(t);
                    None
                }
            }
            .or_else(|| {
                // A consumer group (KIP-848) checks the member epoch, unless a classic group
                // of the same id is in use.
                let classic_active = groups.get(group_id).is_some_and(|slot| !slot.is_idle());
                if !classic_active {
                    if let Some(verdict) =
                        self.consumer_commit_check(group_id, member_id, generation, partitions)
                    {
                        return verdict.err();
                    }
                }
                self.classic_commit_verdict(
                    &mut groups,
                    group_id,
                    member_id,
                    group_instance_id,
                    generation,
                    v9,
                )
            })
        };
        (tenure, group_error)
    }

    fn classic_commit_verdict(
        &self,
        groups: &mut std::collections::HashMap<String, super::Slot>,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
        v9: bool,
    ) -> Option<i16> {
        {
            match groups.get_mut(group_id) {
                Some(slot) => slot
                    .group
                    .check_commit(member_id, group_instance_id, generation, Instant::now())
                    .err(),
                // A standalone consumer (generation -1) needs no group.
                None if generation < 0 => None,
                // A member of a group we do not know: membership is not persisted, so this is
                // a consumer from before a restart and it must rejoin. Kafka answers
                // ILLEGAL_GENERATION before v9 and GROUP_ID_NOT_FOUND from v9, but librdkafka
                // only rejoins on ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID, and "unknown member"
                // is the truth here.
                None if v9 => Some(codes::UNKNOWN_MEMBER_ID),
                None => Some(codes::ILLEGAL_GENERATION),
            }
        }
    }

    /// Writes a commit's records to the group's partition; the error code every written
    /// partition gets if it is not acknowledged. Kafka's rules: fewer in-sync replicas than
    /// `min.insync.replicas` (nothing written) or not replicated in time:
    /// COORDINATOR_NOT_AVAILABLE; leadership lost: NOT_COORDINATOR; too large:
    /// INVALID_COMMIT_OFFSET_SIZE.
    async fn write_commit(
        &self,
        group: &str,
        tenure: &Arc<super::Tenure>,
        records: Vec<OffsetRecord>,
    ) -> Option<i16> {
        let shortfall = self
            .directory()
            .and_then(|d| d.in_sync_shortfall(OFFSETS_TOPIC, tenure.partition));
        if let Some(why) = shortfall {
            tracing::warn!(group, partition = tenure.partition, reason = %why, "offset commit refused");
            return Some(codes::COORDINATOR_NOT_AVAILABLE);
        }
        match tenure.write(|_| records, self.config.commit_timeout).await {
            Ok(_) => {
                self.maybe_compact(tenure);
                None
            }
            Err(e) => {
                tracing::warn!(group, partition = tenure.partition, error = %e, "offset commit not acknowledged");
                Some(e.code())
            }
        }
    }

    pub async fn offset_fetch(&self, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
        let directory = self.directory();
        if version < 8 {
            let wanted = req.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            let (code, mut topics) = self.fetch_group(&req.group_id.0, wanted).await;
            if version >= 2 && code != codes::NONE {
                // From v2 a group-level error stands alone (v0/v1 carry it per partition).
                topics.clear();
            }
            let unstable = self.unstable(&req.group_id.0, version >= 7 && req.require_stable);
            let partition_code = |c: i16| if version < 2 { code.max(c) } else { c };
            let resp_topics = topics
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(s(&name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(index, v)| {
                                    let r = OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(v.offset)
                                        .with_committed_leader_epoch(v.leader_epoch)
                                        .with_metadata(Some(s(&v.metadata)))
                                        .with_error_code(partition_code(codes::NONE));
                                    if unstable.contains(&(name.clone(), index)) {
                                        r.with_committed_offset(-1)
                                            .with_error_code(UNSTABLE_OFFSET_COMMIT)
                                    } else {
                                        r
                                    }
                                })
                                .collect(),
                        )
                })
                .collect();
            let mut resp = OffsetFetchResponse::default().with_topics(resp_topics);
            if version >= 2 {
                resp = resp.with_error_code(code);
            }
            return resp;
        }
        let mut groups = Vec::new();
        for g in &req.groups {
            let mut unknown_ids = Vec::new();
            let wanted = g.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .filter_map(|t| {
                        let name = if version >= 10 && t.name.is_empty() {
                            match directory.as_ref().and_then(|d| d.topic_name(t.topic_id)) {
                                Some(n) => n,
                                None => {
                                    unknown_ids.push((t.topic_id, t.partition_indexes.clone()));
                                    return None;
                                }
                            }
                        } else {
                            t.name.0.to_string()
                        };
                        Some((name, t.partition_indexes.clone()))
                    })
                    .collect::<Vec<_>>()
            });
            let (mut code, mut topics) = self.fetch_group(&g.group_id.0, wanted).await;
            if code == codes::NONE && version >= 9 {
                let member = g.member_id.as_deref();
                if let Err(refused) =
                    self.consumer_offset_fetch_check(&g.group_id.0, member, g.member_epoch)
                {
                    tracing::debug!(group = %g.group_id.0.as_str(), member = ?member, epoch = g.member_epoch, code = refused, "offset fetch refused");
                    code = refused;
                }
            }
            if code != codes::NONE {
                topics.clear();
                unknown_ids.clear();
            }
            let unstable = self.unstable(&g.group_id.0, req.require_stable);
            let mut resp_topics: Vec<OffsetFetchResponseTopics> = topics
                .into_iter()
                .map(|(name, parts)| {
                    let id = directory
                        .as_ref()
                        .and_then(|d| d.topic_id(&name))
                        .unwrap_or_default();
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(s(&name)))
                        .with_topic_id(id)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(index, v)| {
                                    let r = OffsetFetchResponsePartitions::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(v.offset)
                                        .with_committed_leader_epoch(v.leader_epoch)
                                        .with_metadata(Some(s(&v.metadata)))
                                        .with_error_code(codes::NONE);
                                    if unstable.contains(&(name.clone(), index)) {
                                        r.with_committed_offset(-1)
                                            .with_error_code(UNSTABLE_OFFSET_COMMIT)
                                    } else {
                                        r
                                    }
                                })
                                .collect(),
                        )
                })
                .collect();
            for (id, parts) in unknown_ids {
                resp_topics.push(
                    OffsetFetchResponseTopics::default()
                        .with_topic_id(id)
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|index| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_metadata(Some(StrBytes::default()))
                                        .with_error_code(codes::UNKNOWN_TOPIC_ID)
                                })
                                .collect(),
                        ),
                );
            }
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(resp_topics)
                    .with_error_code(code),
            );
        }
        OffsetFetchResponse::default().with_groups(groups)
    }

    /// With `require_stable` (a read_committed consumer, KIP-447): the partitions of `group`
    /// whose offsets an open transaction is about to change, which must not be read yet.
    fn unstable(
        &self,
        group: &str,
        require_stable: bool,
    ) -> std::collections::BTreeSet<(String, i32)> {
        if !require_stable {
            return Default::default();
        }
        match self.status(group) {
            Ok(t) => t.view(|m| m.txn_partitions(group)),
            Err(_) => Default::default(),
        }
    }

    /// Committed offsets of `group`: for the listed partitions (-1 where nothing is committed)
    /// or, when `wanted` is `None`, every committed partition. Returns the group-level error;
    /// with one (the group is not served here), the listed partitions at -1.
    #[allow(clippy::type_complexity)]
    async fn fetch_group(
        &self,
        group: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> (i16, Vec<(String, Vec<(i32, StoredOffset)>)>) {
        if group.is_empty() {
            return (codes::INVALID_GROUP_ID, Vec::new());
        }
        let none = || StoredOffset {
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: -1,
        };
        let tenure = match self.serving(group).await {
            Ok(t) => t,
            Err(code) => {
                let listed = wanted
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(topic, parts)| (topic, parts.into_iter().map(|p| (p, none())).collect()))
                    .collect();
                return (code, listed);
            }
        };
        tenure.view(|m| match wanted {
            Some(topics) => (
                codes::NONE,
                topics
                    .into_iter()
                    .map(|(topic, parts)| {
                        let values = parts
                            .into_iter()
                            .map(|p| (p, m.get(group, &topic, p).cloned().unwrap_or_else(none)))
                            .collect();
                        (topic, values)
                    })
                    .collect(),
            ),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, StoredOffset)>> = BTreeMap::new();
                for ((topic, partition), value) in m.group(group).into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, value.clone()));
                }
                (codes::NONE, by_topic.into_iter().collect())
            }
        })
    }
}
