//! The classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat / LeaveGroup,
//! OffsetCommit / OffsetFetch, ListGroups / DescribeGroups / DeleteGroups) and the durable
//! committed-offset store.
//!
//! [`GroupCoordinator`] IS THE INTERFACE CONTRACT between the coordinator and the server's
//! dispatcher. The dispatcher decodes a request, calls the matching method with the request's
//! API version, and encodes what it returns (every response is built for that version).
//!
//! Layout (README.md has the import rules):
//! - this file: the coordinator itself: one lock over all groups, the reply channels of
//!   JoinGroup and SyncGroup requests that must wait, the timer task, and its wiring (open,
//!   close, flush, topic directory, deleted topics, lag metrics).
//! - `membership.rs`, `offset_api.rs`, `admin.rs`: the request/response mapping per API family
//!   (JoinGroup/SyncGroup/Heartbeat/LeaveGroup; OffsetCommit/OffsetFetch;
//!   ListGroups/DescribeGroups/DeleteGroups), one `impl GroupCoordinator` block each.
//! - `handover.rs`: a group's committed offsets moving to the broker that takes over its
//!   coordinator role.
//! - [`state`]: one group as a pure state machine (states, generations, protocol selection,
//!   leader election, rebalance deadlines, session expiry); no I/O, `now` is passed in.
//! - [`offsets`]: the append-only, CRC-framed, fsynced offsets log with torn-tail recovery and
//!   compaction.

mod admin;
pub(crate) mod codes;
mod handover;
mod membership;
mod offset_api;
pub mod offsets;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::protocol::StrBytes;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use offsets::{OffsetRecord, OffsetStore};
use state::{Effect, Group, GroupState, JoinResult, Limits, SyncResult};

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

/// How long a group without members or offsets is kept (Kafka drops such groups at its next
/// offsets cleanup, every 10 minutes by default).
const IDLE_GROUP_TTL: Duration = Duration::from_secs(600);

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

    /// Every committed offset (for consumer-lag metrics).
    pub fn committed_offsets(&self) -> Vec<CommittedOffset> {
        self.offsets.all()
    }

    /// Persists everything (shutdown).
    pub fn flush(&self) -> Result<(), GroupError> {
        self.offsets.sync()
    }
}

#[cfg(test)]
mod tests;
