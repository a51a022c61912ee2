//! The handlers' view of the cluster metadata: topics, partition owners, group coordinators
//! (the leaders of `__consumer_offsets`' partitions) and producer ids come from the quorum's
//! state ([`crate::cluster`]); changes are validated here (names, configs, counts: anything
//! that depends on this binary's rules) and then proposed to the quorum, which every broker
//! applies in the same order. The internal topic `__consumer_offsets` is created here, by the
//! cluster itself, the first time a group needs a coordinator; clients cannot create, delete
//! or grow it.
//!
//! After a change this broker has proposed, its own local logs are brought in line before the
//! client gets its answer, so a CreateTopics followed by a Produce to the same broker works.
//! Other brokers follow within moments (their topology task watches the state).

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::codes;
use crate::cluster::state::{BrokerRecord, Command, ConfigChange, Outcome, PartitionRecord};
use crate::context::BrokerContext;
use crate::group::{configs, is_internal_topic, partition_for, OFFSETS_TOPIC, SHARE_STATE_TOPIC};
use crate::log::{
    altered_configs, check_partition_count, validate_topic_configs, validate_topic_name, AlterOp,
    ConfigEntry, LogError, PartitionLog, TopicMeta,
};
use crate::topology::{self, topic_meta};

/// Kafka's NOT_CONTROLLER: retriable, clients refresh metadata and try again.
pub(super) const NOT_CONTROLLER: i16 = 41;
/// Kafka's COORDINATOR_NOT_AVAILABLE.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// Kafka's NOT_LEADER_OR_FOLLOWER.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// Producer ids reserved from the quorum at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// A refused metadata change or lookup: the Kafka error code and a message naming the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MetaError {
    pub code: i16,
    pub message: String,
}

impl MetaError {
    pub fn kafka_code(&self) -> i16 {
        self.code
    }
}

impl From<LogError> for MetaError {
    fn from(e: LogError) -> Self {
        MetaError {
            code: e.kafka_code(),
            message: e.to_string(),
        }
    }
}

/// Who leads a partition, seen from this broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// This broker leads it, at this leader epoch.
    Here(i32),
    /// Another broker leads it (`NO_LEADER`, -1: none does, it is offline).
    Elsewhere(i32),
    /// No such topic or partition.
    Unknown,
}

/// Every topic of the cluster, sorted by name.
pub fn topics(ctx: &BrokerContext) -> Vec<TopicMeta> {
    let state = ctx.cluster.state();
    state
        .topics
        .iter()
        .map(|(name, t)| topic_meta(name, t))
        .collect()
}

pub fn topic(ctx: &BrokerContext, name: &str) -> Option<TopicMeta> {
    let state = ctx.cluster.state();
    state.topics.get(name).map(|t| topic_meta(name, t))
}

pub fn topic_by_id(ctx: &BrokerContext, id: Uuid) -> Option<TopicMeta> {
    let state = ctx.cluster.state();
    state.topic_by_id(id).map(|(name, t)| topic_meta(name, t))
}

/// The partition records of a topic (owners and leader epochs), if it exists.
pub fn partitions(ctx: &BrokerContext, name: &str) -> Option<Vec<PartitionRecord>> {
    ctx.cluster
        .state()
        .topics
        .get(name)
        .map(|t| t.partitions.clone())
}

pub fn ownership(ctx: &BrokerContext, topic: &str, partition: i32) -> Ownership {
    owner(ctx.node_id, ctx.cluster.state().partition(topic, partition))
}

fn owner(me: i32, record: Option<&PartitionRecord>) -> Ownership {
    match record {
        None => Ownership::Unknown,
        Some(p) if p.leader == me => Ownership::Here(p.leader_epoch),
        Some(p) => Ownership::Elsewhere(p.leader),
    }
}

/// The local log of a partition this broker leads, or the error code telling the client where
/// to go: another broker leads it (NOT_LEADER_OR_FOLLOWER), or the client's leader epoch
/// (`-1`: not given) is older (FENCED_LEADER_EPOCH) or newer (UNKNOWN_LEADER_EPOCH) than ours.
/// The metadata and this broker's replication role must agree: a leadership the replica
/// manager has not taken up yet (moments after the metadata changed) is NOT_LEADER_OR_FOLLOWER,
/// which clients retry (Produce waits for it instead: `produce::taken_up`).
pub fn local_partition(
    ctx: &BrokerContext,
    topic: &str,
    partition: i32,
    client_epoch: i32,
) -> Result<Arc<PartitionLog>, i16> {
    leader_partition(ctx, topic, partition, client_epoch).map(|(log, _)| log)
}

/// [`local_partition`] with the leader epoch this broker leads it at (an append checks it
/// under the log's lock: `PartitionLog::append_in_epoch`).
pub fn leader_partition(
    ctx: &BrokerContext,
    topic: &str,
    partition: i32,
    client_epoch: i32,
) -> Result<(Arc<PartitionLog>, i32), i16> {
    led_here(ownership(ctx, topic, partition), client_epoch, || {
        ctx.replicas.leader_log(topic, partition)
    })
}

/// [`local_partition`] of many partitions of one topic (`(partition, client epoch)`), with
/// one look at the metadata and, for more than a few, one at the replica manager: a fetch
/// of a thousand partitions resolves them all on every request.
pub fn local_partitions(
    ctx: &BrokerContext,
    topic: &str,
    wanted: &[(i32, i32)],
) -> Vec<Result<Arc<PartitionLog>, i16>> {
    let state = ctx.cluster.state();
    let records = state.topics.get(topic).map(|t| t.partitions.as_slice());
    let record = |p: i32| records.and_then(|r| r.get(usize::try_from(p).ok()?));
    if wanted.len() < 8 {
        return wanted
            .iter()
            .map(|&(p, client_epoch)| {
                led_here(owner(ctx.node_id, record(p)), client_epoch, || {
                    ctx.replicas.leader_log(topic, p)
                })
                .map(|(log, _)| log)
            })
            .collect();
    }
    // Each log is moved out of the replica manager's list rather than cloned (one reference
    // count change per partition fewer, on a cache line of its own); a partition asked for
    // twice is looked up again.
    let mut led: Vec<(i32, Option<Arc<PartitionLog>>, i32)> = ctx
        .replicas
        .leader_logs(topic)
        .into_iter()
        .map(|(p, log, epoch)| (p, Some(log), epoch))
        .collect();
    wanted
        .iter()
        .map(|&(p, client_epoch)| {
            led_here(owner(ctx.node_id, record(p)), client_epoch, || {
                // Led partitions are usually all of them: partition p at index p.
                let at = match usize::try_from(p)
                    .ok()
                    .filter(|&i| led.get(i).is_some_and(|e| e.0 == p))
                {
                    Some(i) => i,
                    None => led.binary_search_by_key(&p, |(q, _, _)| *q).ok()?,
                };
                let (_, slot, epoch) = led.get_mut(at)?;
                match slot.take() {
                    Some(log) => Some((log, *epoch)),
                    None => ctx.replicas.leader_log(topic, p),
                }
            })
            .map(|(log, _)| log)
        })
        .collect()
}

/// The log of a partition the metadata says this broker leads, when the replica manager
/// leads it at that epoch too (`led`) and the client's epoch agrees.
fn led_here(
    ownership: Ownership,
    client_epoch: i32,
    led: impl FnOnce() -> Option<(Arc<PartitionLog>, i32)>,
) -> Result<(Arc<PartitionLog>, i32), i16> {
    match ownership {
        Ownership::Unknown => Err(codes::UNKNOWN_TOPIC_OR_PARTITION),
        Ownership::Elsewhere(_) => Err(NOT_LEADER_OR_FOLLOWER),
        Ownership::Here(epoch) if client_epoch >= 0 && client_epoch < epoch => {
            Err(codes::FENCED_LEADER_EPOCH)
        }
        Ownership::Here(epoch) if client_epoch > epoch => Err(codes::UNKNOWN_LEADER_EPOCH),
        Ownership::Here(epoch) => match led() {
            Some((log, led)) if led == epoch => Ok((log, led)),
            _ => Err(NOT_LEADER_OR_FOLLOWER),
        },
    }
}

/// A registered broker.
pub fn broker(ctx: &BrokerContext, id: i32) -> Option<BrokerRecord> {
    ctx.cluster.state().brokers.get(&id).cloned()
}

/// Proposes `cmd`; a refusal becomes the error the client sees. Then applies the new state to
/// this broker's logs.
async fn propose(ctx: &Arc<BrokerContext>, cmd: Command) -> Result<Outcome, MetaError> {
    let outcome = ctx.cluster.propose(cmd).await.map_err(|e| MetaError {
        code: NOT_CONTROLLER,
        message: format!("the metadata quorum did not accept the change: {e}"),
    })?;
    if let Outcome::Refused { code, message } = outcome {
        return Err(MetaError { code, message });
    }
    topology::sync_now(&ctx.topology()).await;
    Ok(outcome)
}

fn expect_topic(outcome: Outcome, name: &str) -> Result<TopicMeta, MetaError> {
    match outcome {
        Outcome::Topic { name, topic } => Ok(topic_meta(&name, &topic)),
        other => Err(MetaError {
            code: codes::UNKNOWN_SERVER_ERROR,
            message: format!("topic {name}: unexpected answer from the metadata quorum: {other:?}"),
        }),
    }
}

fn unknown_topic(name: &str) -> MetaError {
    LogError::UnknownTopic {
        name: name.to_string(),
    }
    .into()
}

/// A topic to create: `partitions` and `replication_factor` -1 mean the broker defaults;
/// `assignment` (one replica list per partition, leader first) places it by hand.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub assignment: Option<Vec<Vec<i32>>>,
    pub configs: BTreeMap<String, String>,
}

/// Checks a replication factor against the brokers that take new partitions.
fn check_replication_factor(ctx: &BrokerContext, name: &str, rf: i32) -> Result<(), MetaError> {
    let available = ctx.cluster.state().active_brokers().count();
    if rf < 1 || rf > i32::from(i16::MAX) {
        return Err(MetaError {
            code: codes::INVALID_REPLICATION_FACTOR,
            message: format!("topic '{name}': replication factor {rf}; must be 1..=32767"),
        });
    }
    if usize::try_from(rf).unwrap_or(usize::MAX) > available {
        return Err(MetaError {
            code: codes::INVALID_REPLICATION_FACTOR,
            message: format!(
                "topic '{name}': replication factor {rf} is larger than the {available} broker(s) \
                 available for new partitions"
            ),
        });
    }
    Ok(())
}

/// Checks hand-made replica lists: the same number of distinct, registered brokers each.
fn check_assignment(ctx: &BrokerContext, name: &str, lists: &[Vec<i32>]) -> Result<(), MetaError> {
    let state = ctx.cluster.state();
    let bad = |message: String| MetaError {
        code: codes::INVALID_REPLICA_ASSIGNMENT,
        message: format!("topic '{name}': {message}"),
    };
    let rf = lists.first().map_or(0, Vec::len);
    for (i, l) in lists.iter().enumerate() {
        let distinct: std::collections::BTreeSet<i32> = l.iter().copied().collect();
        if l.is_empty() || l.len() != rf || distinct.len() != l.len() {
            return Err(bad(format!(
                "partition {i}: replicas {l:?} must be {rf} distinct broker id(s)"
            )));
        }
        if let Some(b) = l.iter().find(|b| !state.brokers.contains_key(b)) {
            return Err(bad(format!("partition {i}: broker {b} is not registered")));
        }
    }
    Ok(())
}

/// Validates and creates a topic. Returns its metadata and replication factor.
pub async fn create_topic(
    ctx: &Arc<BrokerContext>,
    topic: NewTopic,
    validate_only: bool,
) -> Result<(TopicMeta, i32), MetaError> {
    let NewTopic {
        name,
        partitions,
        replication_factor,
        assignment,
        configs,
    } = topic;
    let name = name.as_str();
    validate_topic_name(name)?;
    refuse_internal(name, "created by clients (the cluster creates it when a consumer group first needs a coordinator)")?;
    let (partitions, rf) = match &assignment {
        Some(lists) => {
            check_assignment(ctx, name, lists)?;
            (
                i32::try_from(lists.len()).unwrap_or(i32::MAX),
                lists.first().map_or(0, |l| l.len() as i32),
            )
        }
        None => {
            let partitions = if partitions == -1 {
                ctx.logs.defaults().default_partitions
            } else {
                partitions
            };
            let rf = if replication_factor == -1 {
                i32::from(ctx.logs.defaults().default_replication_factor)
            } else {
                replication_factor
            };
            check_replication_factor(ctx, name, rf)?;
            (partitions, rf)
        }
    };
    check_partition_count(name, partitions)?;
    validate_topic_configs(&configs)?;
    if ctx.cluster.state().topics.contains_key(name) {
        return Err(LogError::TopicAlreadyExists {
            name: name.to_string(),
        }
        .into());
    }
    if validate_only {
        let meta = TopicMeta {
            name: name.to_string(),
            id: Uuid::nil(),
            partitions,
            configs,
        };
        return Ok((meta, rf));
    }
    let outcome = propose(
        ctx,
        Command::CreateTopic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
            replication_factor: rf,
            assignment,
        },
    )
    .await?;
    let meta = expect_topic(outcome, name)?;
    tracing::info!(topic = %meta.name, partitions = meta.partitions, replication_factor = rf, id = %meta.id, "topic created");
    Ok((meta, rf))
}

/// Refuses a client's change of an internal topic (Kafka's INVALID_TOPIC_EXCEPTION), naming
/// what is not allowed.
pub fn refuse_internal(name: &str, what: &str) -> Result<(), MetaError> {
    if !is_internal_topic(name) {
        return Ok(());
    }
    Err(MetaError {
        code: codes::INVALID_TOPIC_EXCEPTION,
        message: format!(
            "{name} is an internal topic holding consumer-group offsets or share-group state; it \
             cannot be {what}"
        ),
    })
}

pub async fn delete_topic(ctx: &Arc<BrokerContext>, name: &str) -> Result<TopicMeta, MetaError> {
    let meta = topic(ctx, name).ok_or_else(|| unknown_topic(name))?;
    refuse_internal(name, "deleted")?;
    propose(
        ctx,
        Command::DeleteTopic {
            name: name.to_string(),
        },
    )
    .await?;
    tracing::info!(topic = name, "topic deleted");
    Ok(meta)
}

/// Grows a topic to `total` partitions; `assignment` places the new ones by hand.
pub async fn create_partitions(
    ctx: &Arc<BrokerContext>,
    name: &str,
    total: i32,
    assignment: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<TopicMeta, MetaError> {
    let current = topic(ctx, name).ok_or_else(|| unknown_topic(name))?;
    // Its partition count decides which partition holds each group.
    refuse_internal(
        name,
        "given more partitions (each group's place depends on the count)",
    )?;
    let rf = ctx
        .cluster
        .state()
        .topics
        .get(name)
        .map_or(1, |t| t.replication_factor());
    match &assignment {
        Some(lists) => {
            check_assignment(ctx, name, lists)?;
            let new = usize::try_from(total - current.partitions).unwrap_or(0);
            if lists.len() != new || lists.first().is_some_and(|l| l.len() != rf) {
                return Err(MetaError {
                    code: codes::INVALID_REPLICA_ASSIGNMENT,
                    message: format!(
                        "topic '{name}': {} replica list(s) for {new} new partition(s) of \
                         replication factor {rf}",
                        lists.len()
                    ),
                });
            }
        }
        None => check_replication_factor(ctx, name, i32::try_from(rf).unwrap_or(i32::MAX))?,
    }
    if total <= current.partitions {
        return Err(LogError::InvalidPartitions {
            topic: name.to_string(),
            reason: format!(
                "topic has {} partitions; the new total {total} must be larger",
                current.partitions
            ),
        }
        .into());
    }
    check_partition_count(name, total)?;
    if validate_only {
        return Ok(TopicMeta {
            partitions: total,
            ..current
        });
    }
    let outcome = propose(
        ctx,
        Command::CreatePartitions {
            name: name.to_string(),
            total,
            assignment,
        },
    )
    .await?;
    let meta = expect_topic(outcome, name)?;
    tracing::info!(
        topic = name,
        from = current.partitions,
        to = total,
        "partitions added"
    );
    Ok(meta)
}

/// AlterConfigs (`incremental == false`) or IncrementalAlterConfigs on one topic.
pub async fn alter_topic_configs(
    ctx: &Arc<BrokerContext>,
    name: &str,
    ops: Vec<AlterOp>,
    incremental: bool,
    validate_only: bool,
) -> Result<TopicMeta, MetaError> {
    let current = topic(ctx, name).ok_or_else(|| unknown_topic(name))?;
    let configs = altered_configs(&current.configs, ops.clone(), incremental)?;
    if validate_only {
        return Ok(TopicMeta { configs, ..current });
    }
    let changes = config_changes(ops);
    let outcome = propose(
        ctx,
        Command::AlterTopicConfigs {
            name: name.to_string(),
            changes,
            replace: !incremental,
        },
    )
    .await?;
    let meta = expect_topic(outcome, name)?;
    tracing::info!(topic = name, configs = ?meta.configs, "topic configs changed");
    Ok(meta)
}

/// Config alterations as the metadata entry carries them.
fn config_changes(ops: Vec<AlterOp>) -> Vec<ConfigChange> {
    ops.into_iter()
        .map(|op| match op {
            AlterOp::Set(k, v) => ConfigChange::Set(k, v),
            AlterOp::Delete(k) => ConfigChange::Delete(k),
        })
        .collect()
}

/// The broker's values of the group configs ([`configs`]): its flags.
pub fn group_defaults(ctx: &BrokerContext) -> configs::GroupDefaults {
    let g = ctx.groups.config();
    let share = ctx.shares.settings();
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    configs::GroupDefaults {
        consumer_session_timeout_ms: ms(g.consumer.session_timeout),
        consumer_heartbeat_interval_ms: ms(g.consumer.heartbeat_interval),
        share_session_timeout_ms: share.session_timeout_ms,
        share_heartbeat_interval_ms: i64::from(share.heartbeat_interval_ms),
        share_record_lock_duration_ms: share.record_lock_ms,
        share_delivery_count_limit: i64::from(share.delivery_count_limit),
        min_session_timeout_ms: i64::from(g.min_session_timeout_ms),
        max_session_timeout_ms: i64::from(g.max_session_timeout_ms),
    }
}

/// A group's config overrides (empty when it has none).
pub fn group_configs(ctx: &BrokerContext, group: &str) -> BTreeMap<String, String> {
    ctx.cluster
        .state()
        .group_configs
        .get(group)
        .cloned()
        .unwrap_or_default()
}

/// AlterConfigs (`incremental = false`: every override replaced) or IncrementalAlterConfigs
/// of a group's configs, checked against this broker's rules ([`configs::altered`]), then
/// proposed. The group need not exist yet (Kafka's tools set a share group's
/// `share.auto.offset.reset` before its first consumer starts).
pub async fn alter_group_configs(
    ctx: &Arc<BrokerContext>,
    group: &str,
    ops: Vec<AlterOp>,
    incremental: bool,
    validate_only: bool,
) -> Result<(), MetaError> {
    if group.is_empty() {
        return Err(MetaError {
            code: codes::INVALID_REQUEST,
            message: "a group config needs a group id".to_string(),
        });
    }
    let current = group_configs(ctx, group);
    configs::altered(&current, ops.clone(), incremental, &group_defaults(ctx)).map_err(
        |message| MetaError {
            code: codes::INVALID_CONFIG,
            message,
        },
    )?;
    if validate_only {
        return Ok(());
    }
    let changes = config_changes(ops);
    propose(
        ctx,
        Command::AlterGroupConfigs {
            group: group.to_string(),
            changes,
            replace: !incremental,
        },
    )
    .await?;
    tracing::info!(group, configs = ?group_configs(ctx, group), "group configs changed");
    Ok(())
}

/// Every config of a topic, defaults included.
pub fn describe_topic_configs(
    ctx: &BrokerContext,
    name: &str,
) -> Result<Vec<ConfigEntry>, MetaError> {
    let meta = topic(ctx, name).ok_or_else(|| unknown_topic(name))?;
    Ok(ctx.logs.describe_configs_of(&meta))
}

/// Segment size of `__consumer_offsets`: its compaction moves the log start, but space comes
/// back only one closed segment at a time, so segments are kept small.
const OFFSETS_SEGMENT_BYTES: &str = "16777216";

/// The topic configs `__consumer_offsets` is created with: kept until the coordinator
/// compacts it (no retention by time or size, which would drop live offsets), and fsynced
/// before an append counts as replicated, whatever the broker's default (an acknowledged
/// OffsetCommit is acknowledged data).
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    [
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("sluice.fsync", "always"),
        ("segment.bytes", OFFSETS_SEGMENT_BYTES),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Creates `__consumer_offsets` if the cluster has none yet: the configured partition count
/// and `min(replication factor, brokers available)` copies. Returns its partition count. A
/// concurrent creation by another broker counts as success.
pub async fn ensure_offsets_topic(ctx: &Arc<BrokerContext>) -> Result<i32, MetaError> {
    let count = |ctx: &BrokerContext| {
        ctx.cluster
            .state()
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX))
    };
    if let Some(n) = count(ctx) {
        return Ok(n);
    }
    let available = ctx.cluster.state().active_brokers().count();
    let settings = ctx.offsets_topic;
    let rf = usize::try_from(settings.replication_factor)
        .unwrap_or(1)
        .min(available)
        .max(1);
    let created = propose(
        ctx,
        Command::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            id: Uuid::new_v4(),
            partitions: settings.partitions,
            configs: offsets_topic_configs(),
            replication_factor: i32::try_from(rf).unwrap_or(1),
            assignment: None,
        },
    )
    .await;
    match created {
        Ok(_) => {
            tracing::info!(
                topic = OFFSETS_TOPIC,
                partitions = settings.partitions,
                replication_factor = rf,
                brokers = available,
                "created the internal topic of committed offsets"
            );
        }
        Err(e) if e.code == codes::TOPIC_ALREADY_EXISTS => {}
        Err(e) => {
            return Err(MetaError {
                code: COORDINATOR_NOT_AVAILABLE,
                message: format!("cannot create {OFFSETS_TOPIC}: {}", e.message),
            })
        }
    }
    count(ctx).ok_or_else(|| MetaError {
        code: COORDINATOR_NOT_AVAILABLE,
        message: format!("{OFFSETS_TOPIC} is not in this broker's metadata yet"),
    })
}

/// Makes sure the internal topic of share-partition state exists (one partition, copies and
/// configs as `__consumer_offsets`: kept until the share store compacts it, fsynced).
pub async fn ensure_share_state_topic(ctx: &Arc<BrokerContext>) -> Result<(), MetaError> {
    if topic(ctx, SHARE_STATE_TOPIC).is_some() {
        return Ok(());
    }
    let available = ctx.cluster.state().active_brokers().count();
    let rf = usize::try_from(ctx.offsets_topic.replication_factor)
        .unwrap_or(1)
        .min(available)
        .max(1);
    let created = propose(
        ctx,
        Command::CreateTopic {
            name: SHARE_STATE_TOPIC.to_string(),
            id: Uuid::new_v4(),
            partitions: 1,
            configs: offsets_topic_configs(),
            replication_factor: i32::try_from(rf).unwrap_or(1),
            assignment: None,
        },
    )
    .await;
    match created {
        Ok(_) => {
            tracing::info!(
                topic = SHARE_STATE_TOPIC,
                replication_factor = rf,
                "created the internal topic of share-partition state"
            );
            Ok(())
        }
        Err(e) if e.code == codes::TOPIC_ALREADY_EXISTS => Ok(()),
        Err(e) => Err(e),
    }
}

/// The broker coordinating `group`: the leader of its partition of `__consumer_offsets`
/// (created the first time anyone asks). COORDINATOR_NOT_AVAILABLE while that partition has
/// no leader.
pub async fn coordinator(ctx: &Arc<BrokerContext>, group: &str) -> Result<BrokerRecord, MetaError> {
    let partitions = ensure_offsets_topic(ctx).await?;
    let p = partition_for(group, partitions);
    let unavailable = |why: String| MetaError {
        code: COORDINATOR_NOT_AVAILABLE,
        message: format!("group {group} ({OFFSETS_TOPIC}-{p}): {why}"),
    };
    let state = ctx.cluster.state();
    let leader = state
        .partition(OFFSETS_TOPIC, p)
        .map(|rec| rec.leader)
        .ok_or_else(|| unavailable("the partition is not in the metadata".into()))?;
    if leader < 0 {
        return Err(unavailable(
            "the partition has no leader (no in-sync replica is alive)".into(),
        ));
    }
    match state.brokers.get(&leader) {
        Some(b) if !b.state.is_alive() => Err(unavailable(format!(
            "its leader, broker {leader}, is unreachable"
        ))),
        Some(b) => Ok(b.clone()),
        None => Err(unavailable(format!(
            "its leader, broker {leader}, is not registered"
        ))),
    }
}

/// A new producer id, unique in the whole cluster: handed out from a block of
/// `PRODUCER_ID_BLOCK` ids reserved from the quorum.
pub async fn allocate_producer_id(ctx: &Arc<BrokerContext>) -> Result<i64, MetaError> {
    ctx.producer_ids.next(|| reserve_producer_ids(ctx)).await
}

/// Reserves the next block of producer ids for this broker: `(first id, count)`.
async fn reserve_producer_ids(ctx: &BrokerContext) -> Result<(i64, i64), MetaError> {
    let outcome = ctx
        .cluster
        .propose(Command::AllocateProducerIds {
            broker: ctx.node_id,
            count: PRODUCER_ID_BLOCK,
        })
        .await
        .map_err(|e| MetaError {
            code: NOT_CONTROLLER,
            message: format!("could not reserve producer ids: {e}"),
        })?;
    match outcome {
        Outcome::ProducerIds { first, count } => Ok((first, count)),
        Outcome::Refused { code, message } => Err(MetaError { code, message }),
        other => Err(MetaError {
            code: codes::UNKNOWN_SERVER_ERROR,
            message: format!("unexpected answer to a producer id reservation: {other:?}"),
        }),
    }
}

/// Whether `id` was ever handed out by any broker of the cluster.
pub fn producer_id_was_issued(ctx: &BrokerContext, id: i64) -> bool {
    id >= 0 && id < ctx.cluster.state().next_producer_id
}
