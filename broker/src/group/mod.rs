//! The classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat / LeaveGroup,
//! OffsetCommit / OffsetFetch, ListGroups / DescribeGroups / DeleteGroups) and the durable
//! committed-offset store.
//!
//! THIS FILE IS THE INTERFACE CONTRACT between the coordinator and the server's dispatcher.
//! The dispatcher decodes a request, calls the matching method with the request's API version,
//! and encodes what it returns (every response is built for that version).
//!
//! Layout:
//! - [`state`]: one group as a pure state machine (states, generations, protocol selection,
//!   leader election, rebalance deadlines, session expiry); no I/O, `now` is passed in.
//! - [`offsets`]: the append-only, CRC-framed, fsynced offsets log with torn-tail recovery and
//!   compaction.
//! - this file: the shared coordinator: one lock over all groups, reply channels for JoinGroup
//!   and SyncGroup requests that must wait, the timer task, and request/response mapping per
//!   API version.

pub(crate) mod codes;
pub mod offsets;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use offsets::{OffsetRecord, OffsetStore, StoredOffset};
use state::{
    Effect, Group, GroupState, JoinArgs, JoinResult, JoinStep, Limits, SyncResult, SyncStep,
};

/// Errors opening or persisting the coordinator's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid group setting {key}: {reason}")]
    InvalidConfig { key: &'static str, reason: String },
}

/// One committed offset, for metrics (consumer lag) and introspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Where committed offsets are persisted.
    pub dir: PathBuf,
    /// Smallest / largest session timeout a member may ask for (`group.min/max.session.timeout.ms`).
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Delay before the first rebalance of an empty group completes (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: i32,
}

/// Who sent a request, for DescribeGroups (`client_id`, `client_host`) and member ids.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_host: String,
}

/// What the coordinator may ask about topics. Optional: without one, commits to any topic are
/// accepted and topic IDs (OffsetCommit/OffsetFetch v10) cannot be resolved.
pub trait TopicDirectory: Send + Sync {
    /// Partition count of `topic`, `None` when it does not exist.
    fn partitions(&self, topic: &str) -> Option<i32>;
    fn topic_name(&self, id: Uuid) -> Option<String>;
    fn topic_id(&self, name: &str) -> Option<Uuid>;
}

/// Largest metadata string accepted with a commit (`offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;
/// DescribeGroups `authorized_operations` when the client did not ask for them.
const AUTHORIZED_OPS_OMITTED: i32 = i32::MIN;
/// READ | DELETE | DESCRIBE: every ACL operation that applies to a group (no authorizer here).
const GROUP_AUTHORIZED_OPS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// How long a group without members or offsets is kept (Kafka drops such groups at its next
/// offsets cleanup, every 10 minutes by default).
const IDLE_GROUP_TTL: Duration = Duration::from_secs(600);
/// The only group type this coordinator runs (ListGroups v5 `group_type`).
const GROUP_TYPE: &str = "classic";

/// One group plus the requests waiting on it.
#[derive(Debug)]
struct Slot {
    group: Group,
    joins: HashMap<String, oneshot::Sender<JoinResult>>,
    syncs: HashMap<String, oneshot::Sender<SyncResult>>,
    /// Since when the group has had no member, pending member or waiting request.
    idle_since: Option<Instant>,
}

impl Slot {
    fn new(id: &str, initial_delay: Duration) -> Slot {
        Slot {
            group: Group::new(id, initial_delay),
            joins: HashMap::new(),
            syncs: HashMap::new(),
            idle_since: None,
        }
    }

    fn is_idle(&self) -> bool {
        self.group.state == GroupState::Empty
            && self.group.is_empty()
            && self.joins.is_empty()
            && self.syncs.is_empty()
    }

    fn deliver(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Join(result) => {
                    if let Some(tx) = self.joins.remove(&result.member_id) {
                        // The requester may have disconnected; nothing to do then.
                        let _ = tx.send(result);
                    }
                }
                Effect::Sync { member_id, result } => {
                    if let Some(tx) = self.syncs.remove(&member_id) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }
}

/// The consumer-group coordinator. Shared behind an `Arc`; every method takes `&self`.
pub struct GroupCoordinator {
    config: GroupConfig,
    limits: Limits,
    groups: Mutex<HashMap<String, Slot>>,
    offsets: Arc<OffsetStore>,
    /// Wakes the timer task when deadlines may have moved earlier.
    wake: Notify,
    topics: RwLock<Option<Arc<dyn TopicDirectory>>>,
    /// Set at shutdown: nothing may wait for a rebalance any more (no timer drives it).
    closed: AtomicBool,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl GroupCoordinator {
    /// Opens the offset store under `config.dir` (creating it) and loads committed offsets.
    /// Blocking (replays the offsets log).
    pub fn open(config: GroupConfig) -> Result<GroupCoordinator, GroupError> {
        if config.min_session_timeout_ms <= 0 {
            return Err(GroupError::InvalidConfig {
                key: "min_session_timeout_ms",
                reason: format!("must be positive, got {}", config.min_session_timeout_ms),
            });
        }
        if config.max_session_timeout_ms < config.min_session_timeout_ms {
            return Err(GroupError::InvalidConfig {
                key: "max_session_timeout_ms",
                reason: format!(
                    "must be at least min_session_timeout_ms ({}), got {}",
                    config.min_session_timeout_ms, config.max_session_timeout_ms
                ),
            });
        }
        if config.initial_rebalance_delay_ms < 0 {
            return Err(GroupError::InvalidConfig {
                key: "initial_rebalance_delay_ms",
                reason: format!(
                    "must not be negative, got {}",
                    config.initial_rebalance_delay_ms
                ),
            });
        }
        let offsets = Arc::new(OffsetStore::open(&config.dir)?);
        Ok(GroupCoordinator {
            limits: Limits {
                min_session_timeout: ms(config.min_session_timeout_ms),
                max_session_timeout: ms(config.max_session_timeout_ms),
                initial_rebalance_delay: ms(config.initial_rebalance_delay_ms),
            },
            config,
            groups: Mutex::new(HashMap::new()),
            offsets,
            wake: Notify::new(),
            topics: RwLock::new(None),
            closed: AtomicBool::new(false),
        })
    }

    /// Lets the coordinator check topics (UNKNOWN_TOPIC_OR_PARTITION on commit) and resolve
    /// topic IDs. Replaces any earlier directory.
    pub fn set_topic_directory(&self, directory: Arc<dyn TopicDirectory>) {
        let mut guard = self.topics.write().unwrap_or_else(|e| e.into_inner());
        *guard = Some(directory);
    }

    fn directory(&self) -> Option<Arc<dyn TopicDirectory>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // Group transitions never leave a group half-updated across a panic point that matters
        // more than the broker staying up, so recover from poisoning.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the background task that expires members whose session timed out and completes
    /// rebalances whose deadline passed. Stops when `shutdown` is cancelled.
    pub fn spawn_expiry(
        self: &std::sync::Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let this = Arc::clone(self);
        let task = async move {
            loop {
                let next = this.tick(Instant::now());
                let sleep = tokio::time::sleep_until(
                    next.unwrap_or_else(|| Instant::now() + Duration::from_secs(60)),
                );
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        this.close();
                        break;
                    }
                    _ = this.wake.notified() => {}
                    _ = sleep => {}
                }
            }
            tracing::debug!("group expiry task stopped");
        };
        tokio::spawn(task.instrument(tracing::info_span!("group_expiry")));
    }

    /// Answers every waiting JoinGroup / SyncGroup with COORDINATOR_NOT_AVAILABLE and refuses
    /// new waits, so the server's drain of in-flight requests at shutdown does not hang on a
    /// rebalance. Clients look for the coordinator again and rejoin once it is back.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut groups = self.lock();
        for slot in groups.values_mut() {
            for (member_id, tx) in slot.joins.drain() {
                let _ = tx.send(JoinResult::error(
                    codes::COORDINATOR_NOT_AVAILABLE,
                    &member_id,
                ));
            }
            for (_, tx) in slot.syncs.drain() {
                let _ = tx.send(SyncResult::error(codes::COORDINATOR_NOT_AVAILABLE));
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Runs every group's timers at `now`; returns the next deadline.
    fn tick(&self, now: Instant) -> Option<Instant> {
        // Read before taking the groups lock (never nest the two).
        let with_offsets: BTreeSet<String> = self.offsets.groups().into_iter().collect();
        let mut groups = self.lock();
        let mut next: Option<Instant> = None;
        let mut earliest = |d: Instant| next = Some(next.map_or(d, |n: Instant| n.min(d)));
        groups.retain(|id, slot| {
            let fx = slot.group.tick(now);
            slot.deliver(fx);
            if let Some(d) = slot.group.next_deadline() {
                earliest(d);
            }
            // A group with no members and no committed offsets is forgotten once it has been
            // idle for a while, as Kafka's offsets cleanup does, so group-id churn does not
            // grow memory forever. A group with offsets stays (ListGroups shows it Empty).
            if !slot.is_idle() || with_offsets.contains(id) {
                slot.idle_since = None;
                return true;
            }
            let since = *slot.idle_since.get_or_insert(now);
            if now >= since + IDLE_GROUP_TTL {
                tracing::debug!(group = %id, "forgetting idle group");
                return false;
            }
            earliest(since + IDLE_GROUP_TTL);
            true
        });
        next
    }

    pub async fn join_group(&self, version: i16, req: JoinGroupRequest) -> JoinGroupResponse {
        self.join_group_from(version, req, ClientInfo::default())
            .await
    }

    /// [`GroupCoordinator::join_group`] with the requesting client's id and address, which
    /// DescribeGroups reports and member ids are derived from.
    pub async fn join_group_from(
        &self,
        version: i16,
        req: JoinGroupRequest,
        client: ClientInfo,
    ) -> JoinGroupResponse {
        let group_id = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        if group_id.is_empty() {
            return join_response(
                version,
                JoinResult::error(codes::INVALID_GROUP_ID, &member_id),
            );
        }
        let instance_id = req.group_instance_id.as_ref().map(|s| s.to_string());
        let prefix = match (&instance_id, client.client_id.is_empty()) {
            (Some(i), _) => i.clone(),
            (None, false) => client.client_id.clone(),
            (None, true) => "member".to_string(),
        };
        let fresh_id = format!("{prefix}-{}", Uuid::new_v4());
        let args = JoinArgs {
            member_id: member_id.clone(),
            instance_id,
            client_id: client.client_id,
            client_host: client.client_host,
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            session_timeout_ms: req.session_timeout_ms,
            // v0 has no rebalance timeout; Kafka uses the session timeout for it.
            rebalance_timeout_ms: if version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            require_known_member_id: version >= 4,
        };
        let rx = {
            let mut groups = self.lock();
            if self.is_closed() {
                return join_response(
                    version,
                    JoinResult::error(codes::COORDINATOR_NOT_AVAILABLE, &member_id),
                );
            }
            if !groups.contains_key(&group_id) && !member_id.is_empty() {
                return join_response(
                    version,
                    JoinResult::error(codes::UNKNOWN_MEMBER_ID, &member_id),
                );
            }
            let slot = groups
                .entry(group_id.clone())
                .or_insert_with(|| Slot::new(&group_id, self.limits.initial_rebalance_delay));
            let (step, fx) = slot
                .group
                .join(args, fresh_id, &self.limits, Instant::now());
            let rx = match step {
                JoinStep::Reply(result) => {
                    slot.deliver(fx);
                    drop(groups);
                    self.wake.notify_one();
                    return join_response(version, result);
                }
                JoinStep::Wait { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    if let Some(old) = slot.joins.insert(member_id.clone(), tx) {
                        // The member sent JoinGroup again (a retry); the older request ends.
                        let _ =
                            old.send(JoinResult::error(codes::REBALANCE_IN_PROGRESS, &member_id));
                    }
                    rx
                }
            };
            slot.deliver(fx);
            rx
        };
        self.wake.notify_one();
        match rx.await {
            Ok(result) => join_response(version, result),
            // The coordinator went away (shutdown): the client finds the coordinator again.
            Err(_) => join_response(
                version,
                JoinResult::error(codes::COORDINATOR_NOT_AVAILABLE, &member_id),
            ),
        }
    }

    pub async fn sync_group(&self, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
        let group_id = req.group_id.0.to_string();
        if group_id.is_empty() {
            return sync_response(version, SyncResult::error(codes::INVALID_GROUP_ID));
        }
        let member_id = req.member_id.to_string();
        let rx = {
            let mut groups = self.lock();
            if self.is_closed() {
                return sync_response(version, SyncResult::error(codes::COORDINATOR_NOT_AVAILABLE));
            }
            let Some(slot) = groups.get_mut(&group_id) else {
                return sync_response(version, SyncResult::error(codes::UNKNOWN_MEMBER_ID));
            };
            let assignments = req
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect();
            let (step, fx) = slot.group.sync(
                &member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
                req.protocol_type.as_deref(),
                req.protocol_name.as_deref(),
                assignments,
                Instant::now(),
            );
            let rx = match step {
                SyncStep::Reply(result) => {
                    slot.deliver(fx);
                    drop(groups);
                    self.wake.notify_one();
                    return sync_response(version, result);
                }
                SyncStep::Wait => {
                    let (tx, rx) = oneshot::channel();
                    if let Some(old) = slot.syncs.insert(member_id.clone(), tx) {
                        let _ = old.send(SyncResult::error(codes::REBALANCE_IN_PROGRESS));
                    }
                    rx
                }
            };
            slot.deliver(fx);
            rx
        };
        self.wake.notify_one();
        match rx.await {
            Ok(result) => sync_response(version, result),
            Err(_) => sync_response(version, SyncResult::error(codes::COORDINATOR_NOT_AVAILABLE)),
        }
    }

    pub async fn heartbeat(&self, _version: i16, req: HeartbeatRequest) -> HeartbeatResponse {
        let group_id = req.group_id.0.to_string();
        let code = if group_id.is_empty() {
            codes::INVALID_GROUP_ID
        } else {
            let mut groups = self.lock();
            match groups.get_mut(&group_id) {
                None => codes::UNKNOWN_MEMBER_ID,
                Some(slot) => slot.group.heartbeat(
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                    Instant::now(),
                ),
            }
        };
        HeartbeatResponse::default().with_error_code(code)
    }

    pub async fn leave_group(&self, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
        let group_id = req.group_id.0.to_string();
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let (top, results): (i16, Vec<i16>) = if group_id.is_empty() {
            (codes::INVALID_GROUP_ID, Vec::new())
        } else {
            let reasons: Vec<String> = req
                .members
                .iter()
                .map(|m| m.reason.as_deref().unwrap_or("").to_string())
                .collect();
            let mut groups = self.lock();
            match groups.get_mut(&group_id) {
                None => (
                    codes::NONE,
                    leaving.iter().map(|_| codes::UNKNOWN_MEMBER_ID).collect(),
                ),
                Some(slot) => {
                    let now = Instant::now();
                    let mut results = Vec::new();
                    for (i, (member_id, instance_id)) in leaving.iter().enumerate() {
                        let (code, fx) = slot.group.leave(member_id, instance_id.as_deref(), now);
                        if code == codes::NONE {
                            let reason = reasons.get(i).map(String::as_str).unwrap_or("");
                            tracing::info!(group = %group_id, member = %member_id, instance = ?instance_id, reason, "member left");
                        }
                        slot.deliver(fx);
                        results.push(code);
                    }
                    (codes::NONE, results)
                }
            }
        };
        self.wake.notify_one();
        if version >= 3 {
            LeaveGroupResponse::default()
                .with_error_code(top)
                .with_members(
                    leaving
                        .into_iter()
                        .zip(results)
                        .map(|((member_id, instance_id), code)| {
                            MemberResponse::default()
                                .with_member_id(s(&member_id))
                                .with_group_instance_id(instance_id.map(StrBytes::from_string))
                                .with_error_code(code)
                        })
                        .collect(),
                )
        } else {
            let member_error = results.first().copied().unwrap_or(codes::NONE);
            let code = if top != codes::NONE {
                top
            } else {
                member_error
            };
            LeaveGroupResponse::default().with_error_code(code)
        }
    }

    pub async fn offset_commit(
        &self,
        version: i16,
        req: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        let group_id = req.group_id.0.to_string();
        let directory = self.directory();
        // Group-level verdict first: it applies to every partition.
        let group_error = if group_id.is_empty() {
            Some(codes::INVALID_GROUP_ID)
        } else {
            let mut groups = self.lock();
            match groups.get_mut(&group_id) {
                Some(slot) => slot
                    .group
                    .check_commit(
                        &req.member_id,
                        req.group_instance_id.as_deref(),
                        req.generation_id_or_member_epoch,
                        Instant::now(),
                    )
                    .err(),
                // A standalone consumer (generation -1) needs no group.
                None if req.generation_id_or_member_epoch < 0 => None,
                // A member of a group we do not know: membership is not persisted, so this is
                // a consumer from before a restart and it must rejoin. Kafka answers
                // ILLEGAL_GENERATION before v9 and GROUP_ID_NOT_FOUND from v9, but librdkafka
                // only rejoins on ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID, and "unknown member"
                // is the truth here.
                None if version >= 9 => Some(codes::UNKNOWN_MEMBER_ID),
                None => Some(codes::ILLEGAL_GENERATION),
            }
        };
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

        let storage_error = if records.is_empty() {
            None
        } else {
            let store = Arc::clone(&self.offsets);
            match tokio::task::spawn_blocking(move || store.append(records)).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => {
                    tracing::error!(group = %group_id, error = %e, "offset commit not persisted");
                    Some(codes::COORDINATOR_NOT_AVAILABLE)
                }
                Err(e) => {
                    tracing::error!(group = %group_id, error = %e, "offset commit task failed");
                    Some(codes::COORDINATOR_NOT_AVAILABLE)
                }
            }
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

    pub async fn offset_fetch(&self, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
        let directory = self.directory();
        if version < 8 {
            let wanted = req.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            let (code, topics) = self.fetch_group(&req.group_id.0, wanted);
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
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(v.offset)
                                        .with_committed_leader_epoch(v.leader_epoch)
                                        .with_metadata(Some(s(&v.metadata)))
                                        .with_error_code(partition_code(codes::NONE))
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
            let (code, topics) = self.fetch_group(&g.group_id.0, wanted);
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
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(v.offset)
                                        .with_committed_leader_epoch(v.leader_epoch)
                                        .with_metadata(Some(s(&v.metadata)))
                                        .with_error_code(codes::NONE)
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

    /// Committed offsets of `group`: for the listed partitions (-1 where nothing is committed)
    /// or, when `wanted` is `None`, every committed partition. Returns the group-level error.
    #[allow(clippy::type_complexity)]
    fn fetch_group(
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
        match wanted {
            Some(topics) => (
                codes::NONE,
                topics
                    .into_iter()
                    .map(|(topic, parts)| {
                        let values = parts
                            .into_iter()
                            .map(|p| (p, self.offsets.get(group, &topic, p).unwrap_or_else(none)))
                            .collect();
                        (topic, values)
                    })
                    .collect(),
            ),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, StoredOffset)>> = BTreeMap::new();
                for (topic, partition, value) in self.offsets.group_offsets(group) {
                    by_topic.entry(topic).or_default().push((partition, value));
                }
                (codes::NONE, by_topic.into_iter().collect())
            }
        }
    }

    pub async fn list_groups(&self, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
        let states: Vec<String> = if version >= 4 {
            req.states_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if version >= 5 {
            req.types_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        if !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE) {
            return ListGroupsResponse::default();
        }
        let mut listed: BTreeMap<String, (GroupState, String)> = BTreeMap::new();
        for g in self.offsets.groups() {
            listed.insert(g, (GroupState::Empty, String::new()));
        }
        {
            let groups = self.lock();
            for (id, slot) in groups.iter() {
                let g = &slot.group;
                listed.insert(
                    id.clone(),
                    (g.state, g.protocol_type.clone().unwrap_or_default()),
                );
            }
        }
        let groups = listed
            .into_iter()
            .filter(|(_, (state, _))| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| *s == state.as_str().to_ascii_lowercase())
            })
            .map(|(id, (state, protocol_type))| {
                let mut g = ListedGroup::default()
                    .with_group_id(GroupId(s(&id)))
                    .with_protocol_type(s(&protocol_type));
                if version >= 4 {
                    g = g.with_group_state(s(state.as_str()));
                }
                if version >= 5 {
                    g = g.with_group_type(s(GROUP_TYPE));
                }
                g
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    pub async fn describe_groups(
        &self,
        version: i16,
        req: DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let ops = if version >= 3 && req.include_authorized_operations {
            GROUP_AUTHORIZED_OPS
        } else {
            AUTHORIZED_OPS_OMITTED
        };
        // Read the offsets store before taking the groups lock: never hold one while waiting
        // on the other (the store's lock is held across an fsync).
        let with_offsets: BTreeSet<String> = self.offsets.groups().into_iter().collect();
        let groups = self.lock();
        let described = req
            .groups
            .iter()
            .map(|gid| {
                let id = gid.0.as_str();
                let base = DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_authorized_operations(ops);
                if id.is_empty() {
                    return base
                        .with_error_code(codes::INVALID_GROUP_ID)
                        .with_group_state(s(GroupState::Dead.as_str()));
                }
                match groups.get(id) {
                    Some(slot) => describe_group(&slot.group, version, base),
                    None if with_offsets.contains(id) => {
                        base.with_group_state(s(GroupState::Empty.as_str()))
                    }
                    None => {
                        let base = base.with_group_state(s(GroupState::Dead.as_str()));
                        if version >= 6 {
                            base.with_error_code(codes::GROUP_ID_NOT_FOUND)
                                .with_error_message(Some(s(&format!("Group {id} not found."))))
                        } else {
                            base
                        }
                    }
                }
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(described)
    }

    pub async fn delete_groups(
        &self,
        _version: i16,
        req: DeleteGroupsRequest,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::new();
        let mut seen = BTreeSet::new();
        for gid in &req.groups_names {
            let id = gid.0.to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            let code = self.delete_group(&id).await;
            if code == codes::NONE {
                tracing::info!(group = %id, "group deleted");
            }
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(gid.clone())
                    .with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    async fn delete_group(&self, id: &str) -> i16 {
        if id.is_empty() {
            return codes::INVALID_GROUP_ID;
        }
        let has_offsets = self.offsets.has_group(id);
        {
            let groups = self.lock();
            match groups.get(id) {
                Some(slot) if slot.group.state != GroupState::Empty => {
                    return codes::NON_EMPTY_GROUP
                }
                Some(_) => {}
                None if !has_offsets => return codes::GROUP_ID_NOT_FOUND,
                None => {}
            }
        }
        if has_offsets {
            let store = Arc::clone(&self.offsets);
            let group = id.to_string();
            let result = tokio::task::spawn_blocking(move || {
                store.append(vec![OffsetRecord::DeleteGroup { group }])
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(group = %id, error = %e, "group deletion not persisted");
                    return codes::COORDINATOR_NOT_AVAILABLE;
                }
                Err(e) => {
                    tracing::error!(group = %id, error = %e, "group deletion task failed");
                    return codes::COORDINATOR_NOT_AVAILABLE;
                }
            }
        }
        let mut groups = self.lock();
        // A member may have joined while the deletion was written; it keeps its (new) group.
        if groups
            .get(id)
            .is_some_and(|slot| slot.group.state == GroupState::Empty)
        {
            groups.remove(id);
        }
        codes::NONE
    }

    /// Drops committed offsets of a deleted topic.
    pub fn forget_topic(&self, topic: &str) {
        if !self.offsets.has_topic(topic) {
            return;
        }
        if let Err(e) = self.offsets.append(vec![OffsetRecord::DeleteTopic {
            topic: topic.to_string(),
        }]) {
            tracing::error!(topic, error = %e, "could not persist the removal of a deleted topic's offsets");
        }
    }

    /// A group's committed offsets (its coordinator role moving to another broker).
    pub fn export_offsets(&self, group: &str) -> Vec<(String, i32, offsets::StoredOffset)> {
        self.offsets.group_offsets(group)
    }

    /// Takes over a group's committed offsets from its previous coordinator: whatever this
    /// broker had stored for the group before is replaced. Durable when it returns.
    pub fn import_offsets(
        &self,
        group: &str,
        committed: Vec<(String, i32, offsets::StoredOffset)>,
    ) -> Result<(), GroupError> {
        let mut records = vec![OffsetRecord::DeleteGroup {
            group: group.to_string(),
        }];
        records.extend(committed.into_iter().map(|(topic, partition, value)| {
            OffsetRecord::Commit {
                group: group.to_string(),
                topic,
                partition,
                value,
            }
        }));
        self.offsets.append(records)
    }

    /// Forgets a group's committed offsets here (its coordinator role moved away).
    pub fn forget_offsets(&self, group: &str) -> Result<(), GroupError> {
        if !self.offsets.has_group(group) {
            return Ok(());
        }
        self.offsets.append(vec![OffsetRecord::DeleteGroup {
            group: group.to_string(),
        }])
    }

    /// Every committed offset (for consumer-lag metrics).
    pub fn committed_offsets(&self) -> Vec<CommittedOffset> {
        self.offsets.all()
    }

    /// Persists everything (shutdown).
    pub fn flush(&self) -> Result<(), GroupError> {
        self.offsets.sync()
    }
}

fn describe_group(g: &Group, version: i16, base: DescribedGroup) -> DescribedGroup {
    let stable = g.state == GroupState::Stable;
    let protocol = g.protocol_name.clone().unwrap_or_default();
    let members = g
        .members()
        .map(|m| {
            let mut d = DescribedGroupMember::default()
                .with_member_id(s(&m.id))
                .with_client_id(s(&m.client_id))
                .with_client_host(s(&m.client_host));
            if version >= 4 {
                d = d.with_group_instance_id(m.instance_id.as_deref().map(s));
            }
            if stable {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                d = d
                    .with_member_metadata(metadata)
                    .with_member_assignment(m.assignment.clone());
            }
            d
        })
        .collect();
    base.with_group_state(s(g.state.as_str()))
        .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or("")))
        .with_protocol_data(s(if stable { &protocol } else { "" }))
        .with_members(members)
}

fn join_response(version: i16, r: JoinResult) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable on the wire.
    let protocol_name = match r.protocol_name {
        None if version < 7 => Some(StrBytes::default()),
        other => other.map(StrBytes::from_string),
    };
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_name(protocol_name)
        .with_leader(StrBytes::from_string(r.leader))
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(if version >= 5 {
                            m.instance_id.map(StrBytes::from_string)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    if version >= 7 {
        resp = resp.with_protocol_type(r.protocol_type.map(StrBytes::from_string));
    }
    resp
}

fn sync_response(version: i16, r: SyncResult) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_assignment(r.assignment);
    if version >= 5 {
        resp = resp
            .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(r.protocol_name.map(StrBytes::from_string));
    }
    resp
}

#[cfg(test)]
mod tests;
