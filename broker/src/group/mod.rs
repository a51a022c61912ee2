//! The classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat / LeaveGroup,
//! OffsetCommit / OffsetFetch, ListGroups / DescribeGroups / DeleteGroups), its groups'
//! committed offsets kept in the replicated internal topic `__consumer_offsets`.
//!
//! [`GroupCoordinator`] IS THE INTERFACE CONTRACT between the coordinator and the server's
//! dispatcher. The dispatcher decodes a request, calls the matching method with the request's
//! API version, and encodes what it returns (every response is built for that version).
//!
//! A group belongs to one partition of `__consumer_offsets` ([`partition_for`], Kafka's rule)
//! and is coordinated by that partition's leader: the replica layer tells this coordinator
//! when this broker starts leading one ([`GroupCoordinator::became_leader`]: the partition's
//! log is loaded, then its groups are served) and when it stops
//! ([`GroupCoordinator::resigned`]: its groups are dropped; members rediscover the
//! coordinator). A request for a group of a partition led elsewhere is answered
//! NOT_COORDINATOR, one still loading COORDINATOR_LOAD_IN_PROGRESS.
//!
//! Layout (README.md has the import rules):
//! - this file: the coordinator itself: the partitions it leads, one lock over all groups,
//!   the reply channels of JoinGroup and SyncGroup requests that must wait, the timer task,
//!   and its wiring (leadership changes, close, topic directory, deleted topics, lag metrics,
//!   the import of a pre-replication offsets file).
//! - `membership.rs`, `offset_api.rs`, `admin.rs`: the request/response mapping per API family
//!   (JoinGroup/SyncGroup/Heartbeat/LeaveGroup; OffsetCommit/OffsetFetch;
//!   ListGroups/DescribeGroups/DeleteGroups), one `impl GroupCoordinator` block each.
//! - `tenure.rs`: one leadership of one offsets partition: its load, its writes (appended,
//!   acknowledged once replicated), its compaction.
//! - `persist.rs`: classic groups' membership records, written as groups become stable and
//!   restored by the next coordinator.
//! - [`records`]: the partition of a group and the records of `__consumer_offsets` (Kafka's
//!   formats), pure. [`offsets`]: one partition's committed offsets in memory, pure.
//! - [`state`]: one group as a pure state machine (states, generations, protocol selection,
//!   leader election, rebalance deadlines, session expiry); no I/O, `now` is passed in.
//! - [`legacy`]: the per-broker offsets file of earlier versions, read once at upgrade.

mod admin;
pub(crate) mod codes;
pub mod configs;
pub mod consumer;
mod consumer_api;
pub mod legacy;
mod membership;
mod offset_api;
pub mod offsets;
mod persist;
pub mod records;
pub mod state;
mod tenure;
mod txn_api;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::protocol::StrBytes;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::log::PartitionLog;
pub use consumer::ConsumerSettings;
use offsets::{StoredOffset, COMPACT_MIN_RECORDS};
use records::OffsetRecord;
pub use records::{is_internal_topic, partition_for, OFFSETS_TOPIC, SHARE_STATE_TOPIC};
use state::{Effect, Group, GroupState, JoinResult, Limits, SyncResult};
use tenure::Tenure;

/// Errors of the coordinator's settings and of the legacy offsets file.
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
    /// Smallest / largest session timeout a member may ask for (`group.min/max.session.timeout.ms`).
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Delay before the first rebalance of an empty group completes (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: i32,
    /// How long an OffsetCommit waits for its records to reach every in-sync replica
    /// (Kafka's `offsets.commit.timeout.ms`).
    pub commit_timeout: Duration,
    /// A partition of `__consumer_offsets` is compacted once it holds at least this many
    /// records and more than twice its live offsets.
    pub compact_min_records: i64,
    /// Consumer groups of the KIP-848 protocol.
    pub consumer: ConsumerSettings,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            commit_timeout: Duration::from_secs(5),
            compact_min_records: COMPACT_MIN_RECORDS,
            consumer: ConsumerSettings::default(),
        }
    }
}

/// How the cluster creates `__consumer_offsets` (this broker's flags; the broker that creates
/// it decides, `handlers::catalog::ensure_offsets_topic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetsTopicSettings {
    /// `--offsets-topic-num-partitions`.
    pub partitions: i32,
    /// `--offsets-topic-replication-factor`: capped at the brokers available.
    pub replication_factor: i16,
}

impl Default for OffsetsTopicSettings {
    fn default() -> Self {
        OffsetsTopicSettings {
            partitions: 8,
            replication_factor: 3,
        }
    }
}

/// Who sent a request, for DescribeGroups (`client_id`, `client_host`) and member ids.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_host: String,
}

/// Whether the client asking may see a topic (DESCRIBE), for what the coordinator resolves
/// on its behalf: a consumer-group member's regular expression.
pub type TopicFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What the coordinator may ask about topics. Set once at start
/// ([`GroupCoordinator::set_topic_directory`]); without one no group is served (the
/// partition count of `__consumer_offsets` is unknown).
pub trait TopicDirectory: Send + Sync {
    /// Partition count of `topic`, `None` when it does not exist.
    fn partitions(&self, topic: &str) -> Option<i32>;
    fn topic_name(&self, id: Uuid) -> Option<String>;
    fn topic_id(&self, name: &str) -> Option<Uuid>;
    /// Why a write to `topic`-`partition` would not reach `min.insync.replicas` copies (too
    /// few in-sync replicas), `None` when it would.
    fn in_sync_shortfall(&self, _topic: &str, _partition: i32) -> Option<String> {
        None
    }
    /// Every topic clients may subscribe to (not the internal ones), for subscriptions by
    /// regular expression.
    fn topic_names(&self) -> Vec<String> {
        Vec::new()
    }
    /// A group's config overrides ([`configs`]), empty when it has none.
    fn group_configs(&self, _group: &str) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

/// How long a group without members or offsets is kept (Kafka drops such groups at its next
/// offsets cleanup, every 10 minutes by default).
const IDLE_GROUP_TTL: Duration = Duration::from_secs(600);

/// How long a request for a group whose partition is still loading waits for the load before
/// it is answered COORDINATOR_LOAD_IN_PROGRESS. Loading a partition usually takes
/// milliseconds; waiting spares the client a retry round (a first request right after the
/// cluster created `__consumer_offsets`).
const LOAD_WAIT: Duration = Duration::from_secs(1);

/// One group plus the requests waiting on it.
#[derive(Debug)]
struct Slot {
    group: Group,
    joins: HashMap<String, oneshot::Sender<JoinResult>>,
    syncs: HashMap<String, oneshot::Sender<SyncResult>>,
    /// Since when the group has had no member, pending member or waiting request.
    idle_since: Option<Instant>,
    /// The group's last membership record queued (`None`: none, or a tombstone).
    written: Option<persist::Fingerprint>,
    memberships: Arc<persist::Queue>,
}

impl Slot {
    fn new(id: &str, initial_delay: Duration, memberships: &Arc<persist::Queue>) -> Slot {
        Slot {
            group: Group::new(id, initial_delay),
            joins: HashMap::new(),
            syncs: HashMap::new(),
            idle_since: None,
            written: None,
            memberships: Arc::clone(memberships),
        }
    }

    /// A group restored from its membership record (which is then its last one written).
    fn restored(group: Group, memberships: &Arc<persist::Queue>) -> Slot {
        Slot {
            written: Some(persist::Fingerprint::of(&group)),
            group,
            joins: HashMap::new(),
            syncs: HashMap::new(),
            idle_since: None,
            memberships: Arc::clone(memberships),
        }
    }

    /// This group is about to leave the classic groups here (it becomes a consumer group): its
    /// membership record goes.
    fn forget_membership(&mut self) {
        self.memberships.forget(&self.group.id, &mut self.written);
    }

    fn is_idle(&self) -> bool {
        self.group.state == GroupState::Empty
            && self.group.is_empty()
            && self.joins.is_empty()
            && self.syncs.is_empty()
    }

    /// Answers the requests `effects` complete, and queues the membership record the group's
    /// new state needs (every transition of a classic group ends here).
    fn deliver(&mut self, effects: Vec<Effect>) {
        self.memberships.note(&self.group, &mut self.written);
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

    /// Answers every waiting JoinGroup / SyncGroup with `code` (the group is going away here).
    fn release(&mut self, code: i16) {
        for (member_id, tx) in self.joins.drain() {
            let _ = tx.send(JoinResult::error(code, &member_id));
        }
        for (_, tx) in self.syncs.drain() {
            let _ = tx.send(SyncResult::error(code));
        }
    }
}

/// This broker's role for one partition of `__consumer_offsets` it leads.
#[derive(Debug)]
enum Lead {
    /// Reading the partition's log; its groups are not served yet.
    Loading {
        epoch: i32,
    },
    Ready(Arc<Tenure>),
    /// The log could not be read; its groups are not served until the next leadership.
    Failed,
}

/// The consumer-group coordinator. Shared behind an `Arc`; every method takes `&self`.
///
/// Lock order: `groups`, then `consumer_groups`, then `partitions`, then a tenure's offsets; none is held across I/O
/// or an `.await`.
pub struct GroupCoordinator {
    config: GroupConfig,
    limits: Limits,
    groups: Mutex<HashMap<String, Slot>>,
    /// Consumer groups of the KIP-848 protocol (a group id is of one kind at a time).
    consumer_groups: Mutex<HashMap<String, consumer::ConsumerGroup>>,
    /// The offsets partitions this broker leads, by partition.
    partitions: Mutex<HashMap<i32, Lead>>,
    /// Wakes requests waiting for a partition's load.
    loaded: Notify,
    /// Wakes the timer task when deadlines may have moved earlier.
    wake: Notify,
    topics: RwLock<Option<Arc<dyn TopicDirectory>>>,
    /// Set at shutdown: nothing may wait for a rebalance any more (no timer drives it).
    closed: AtomicBool,
    /// Classic groups' membership records waiting to be written (`persist.rs`).
    memberships: Arc<persist::Queue>,
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

/// Runs `f` on a blocking thread of the current runtime, or right here without one.
fn run_blocking(f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => drop(h.spawn_blocking(f)),
        Err(_) => f(),
    }
}

impl GroupCoordinator {
    /// A coordinator that leads no partition yet. Checks the settings.
    pub fn new(config: GroupConfig) -> Result<GroupCoordinator, GroupError> {
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
        Ok(GroupCoordinator {
            limits: Limits {
                min_session_timeout: ms(config.min_session_timeout_ms),
                max_session_timeout: ms(config.max_session_timeout_ms),
                initial_rebalance_delay: ms(config.initial_rebalance_delay_ms),
            },
            config,
            groups: Mutex::new(HashMap::new()),
            consumer_groups: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
            loaded: Notify::new(),
            wake: Notify::new(),
            topics: RwLock::new(None),
            closed: AtomicBool::new(false),
            memberships: Arc::default(),
        })
    }

    /// Lets the coordinator find `__consumer_offsets`' partition count, check topics
    /// (UNKNOWN_TOPIC_OR_PARTITION on commit) and resolve topic IDs. Replaces any earlier
    /// directory.
    pub fn set_topic_directory(&self, directory: Arc<dyn TopicDirectory>) {
        let mut guard = self.topics.write().unwrap_or_else(|e| e.into_inner());
        *guard = Some(directory);
    }

    /// The coordinator's settings (its broker's flags).
    pub fn config(&self) -> &GroupConfig {
        &self.config
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

    fn consumer_lock(&self) -> MutexGuard<'_, HashMap<String, consumer::ConsumerGroup>> {
        self.consumer_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn leads(&self) -> MutexGuard<'_, HashMap<i32, Lead>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The partition of `__consumer_offsets` holding `group`; `None` while the topic does
    /// not exist (or no directory is set).
    fn partition_of(&self, group: &str) -> Option<i32> {
        let n = self.directory()?.partitions(OFFSETS_TOPIC)?;
        (n > 0).then(|| partition_for(group, n))
    }

    /// The tenure serving `group`, or the error code the request gets: NOT_COORDINATOR (led
    /// elsewhere), COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE (no offsets topic,
    /// an unreadable partition, or shut down).
    fn status(&self, group: &str) -> Result<Arc<Tenure>, i16> {
        if self.is_closed() {
            return Err(codes::COORDINATOR_NOT_AVAILABLE);
        }
        let p = self
            .partition_of(group)
            .ok_or(codes::COORDINATOR_NOT_AVAILABLE)?;
        match self.leads().get(&p) {
            Some(Lead::Ready(t)) => Ok(Arc::clone(t)),
            Some(Lead::Loading { .. }) => Err(codes::COORDINATOR_LOAD_IN_PROGRESS),
            Some(Lead::Failed) => Err(codes::COORDINATOR_NOT_AVAILABLE),
            None => Err(codes::NOT_COORDINATOR),
        }
    }

    /// The tenure of `partition` if it is ready here.
    fn tenure_of_partition(&self, partition: i32) -> Option<Arc<Tenure>> {
        match self.leads().get(&partition) {
            Some(Lead::Ready(t)) => Some(Arc::clone(t)),
            _ => None,
        }
    }

    /// Waits (at most [`LOAD_WAIT`]) while `group`'s partition is loading here. The caller
    /// then takes the answer from [`GroupCoordinator::status`].
    async fn wait_loaded(&self, group: &str) {
        let deadline = Instant::now() + LOAD_WAIT;
        loop {
            let notified = self.loaded.notified();
            if !matches!(self.status(group), Err(codes::COORDINATOR_LOAD_IN_PROGRESS)) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// `group`'s tenure once loaded (see [`GroupCoordinator::wait_loaded`]).
    async fn serving(&self, group: &str) -> Result<Arc<Tenure>, i16> {
        self.wait_loaded(group).await;
        self.status(group)
    }

    /// The tenures serving groups now.
    fn ready(&self) -> Vec<Arc<Tenure>> {
        self.leads()
            .values()
            .filter_map(|l| match l {
                Lead::Ready(t) => Some(Arc::clone(t)),
                _ => None,
            })
            .collect()
    }

    /// Whether a partition this broker leads is still loading (ListGroups says so).
    fn loading(&self) -> bool {
        self.leads()
            .values()
            .any(|l| matches!(l, Lead::Loading { .. }))
    }

    /// This broker leads `partition` of `__consumer_offsets` from `epoch` on: its log is
    /// loaded (on a blocking thread) and its groups served once that is done. A previous
    /// tenure of the same partition ends first.
    pub fn became_leader(self: &Arc<Self>, partition: i32, epoch: i32, log: Arc<PartitionLog>) {
        self.unload(partition, Some(Lead::Loading { epoch }));
        tracing::info!(partition, epoch, "loading the offsets partition");
        let this = Arc::clone(self);
        run_blocking(move || {
            let loaded = Tenure::load(partition, epoch, log);
            this.finish_load(partition, epoch, loaded);
        });
    }

    fn finish_load(&self, partition: i32, epoch: i32, loaded: Result<Tenure, String>) {
        let mut ready = None;
        {
            // Held throughout: `unload` takes it first, so the partition's role cannot change
            // between the check below and the insert.
            let mut groups = self.lock();
            let current = matches!(
                self.leads().get(&partition),
                Some(Lead::Loading { epoch: e }) if *e == epoch
            );
            match loaded {
                Ok(t) if current => {
                    let t = Arc::new(t);
                    // The groups a previous coordinator left are restored before the partition
                    // is served, so no request of theirs finds them missing.
                    self.restore_groups(&mut groups, partition, &t);
                    self.leads().insert(partition, Lead::Ready(Arc::clone(&t)));
                    ready = Some(t);
                }
                Ok(t) => t.end(), // superseded meanwhile
                Err(e) => {
                    tracing::error!(partition, epoch, error = %e, "cannot load the offsets partition; its groups are not served");
                    if current {
                        self.leads().insert(partition, Lead::Failed);
                    }
                }
            }
        }
        self.loaded.notify_waiters();
        if let Some(t) = ready {
            self.forget_deleted_in(t);
        }
    }

    /// Restores the classic groups of `partition` from their membership records (a group
    /// already here, of either kind, is left as it is).
    fn restore_groups(&self, groups: &mut HashMap<String, Slot>, partition: i32, t: &Tenure) {
        let memberships: Vec<(String, records::Membership)> = t.view(|m| {
            m.memberships()
                .map(|(g, x)| (g.clone(), x.clone()))
                .collect()
        });
        let now = Instant::now();
        let mut restored = 0usize;
        let mut members = 0usize;
        for (id, m) in memberships {
            if groups.contains_key(&id) || self.consumer_lock().contains_key(&id) {
                continue;
            }
            let group = Group::restore(&id, &m, self.limits.initial_rebalance_delay, now);
            restored += 1;
            members += m.members.len();
            tracing::debug!(group = %id, generation = m.generation, members = m.members.len(), "group restored");
            groups.insert(id, Slot::restored(group, &self.memberships));
        }
        if restored > 0 {
            tracing::info!(partition, groups = restored, members, "classic groups restored from their membership records; their members go on without rejoining");
            self.wake.notify_one();
        }
    }

    /// This broker no longer leads `partition` of `__consumer_offsets`: its groups are
    /// dropped here (waiting JoinGroup / SyncGroup requests answer NOT_COORDINATOR).
    pub fn resigned(&self, partition: i32) {
        self.unload(partition, None);
    }

    /// Ends the current role for `partition` (its tenure, its groups) and puts `next` in its
    /// place.
    fn unload(&self, partition: i32, next: Option<Lead>) {
        let count = self
            .directory()
            .and_then(|d| d.partitions(OFFSETS_TOPIC))
            .filter(|n| *n > 0);
        let mut groups = self.lock();
        let previous = {
            let mut leads = self.leads();
            match next {
                Some(l) => leads.insert(partition, l),
                None => leads.remove(&partition),
            }
        };
        if let Some(Lead::Ready(t)) = &previous {
            t.end();
        }
        let mut dropped = 0;
        groups.retain(|id, slot| {
            let here = count.is_some_and(|n| partition_for(id, n) == partition);
            if here {
                slot.release(codes::NOT_COORDINATOR);
                dropped += 1;
            }
            !here
        });
        self.consumer_lock().retain(|id, _| {
            let here = count.is_some_and(|n| partition_for(id, n) == partition);
            if here {
                dropped += 1;
            }
            !here
        });
        drop(groups);
        if previous.is_some() {
            tracing::info!(
                partition,
                groups = dropped,
                "no longer coordinating the offsets partition's groups"
            );
        }
        self.loaded.notify_waiters();
    }

    /// Starts the background task that expires members whose session timed out and completes
    /// rebalances whose deadline passed. Stops when `shutdown` is cancelled.
    pub fn spawn_expiry(
        self: &std::sync::Arc<Self>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        self.spawn_membership_writer(shutdown.clone());
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
            slot.release(codes::COORDINATOR_NOT_AVAILABLE);
        }
        drop(groups);
        for t in self.ready() {
            t.end();
        }
        self.loaded.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Groups with committed offsets in the partitions served here.
    fn groups_with_offsets(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for t in self.ready() {
            t.view(|m| out.extend(m.groups().map(|(g, _)| g.clone())));
        }
        out
    }

    /// Runs every group's timers at `now`; returns the next deadline.
    fn tick(&self, now: Instant) -> Option<Instant> {
        // Read before taking the groups lock (it reads each tenure's offsets).
        let with_offsets = self.groups_with_offsets();
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
        let mut shrunk = Vec::new();
        self.consumer_lock().retain(|id, g| {
            let before = g.members.len();
            if let Some(d) = g.tick(&self.consumer_settings(id), now) {
                earliest(d);
            }
            if g.members.len() < before {
                shrunk.push(id.clone());
            }
            // An empty consumer group with offsets stays (listed Empty, of its type); one
            // without goes, as an idle classic group does.
            !g.is_empty() || with_offsets.contains(id)
        });
        for id in shrunk {
            self.maybe_downgrade(&mut groups, &id, now);
            if let Some(d) = groups.get(&id).and_then(|slot| slot.group.next_deadline()) {
                earliest(d);
            }
        }
        next
    }

    /// Drops the committed offsets of topics the directory no longer knows (deleted topics):
    /// each partition led here appends tombstones for them, in the background. Run after
    /// every metadata change, and for one partition when it becomes ready or imports offsets
    /// (a topic deleted while it was loading, or named only in an imported file, would
    /// otherwise wait for the next metadata change).
    pub fn forget_deleted_topics(&self) {
        for t in self.ready() {
            self.forget_deleted_in(t);
        }
    }

    fn forget_deleted_in(&self, t: Arc<Tenure>) {
        let Some(directory) = self.directory() else {
            return;
        };
        let gone: BTreeSet<String> = t.view(|m| {
            m.groups()
                .flat_map(|(_, offsets)| offsets.keys().map(|(topic, _)| topic))
                .filter(|topic| directory.partitions(topic).is_none())
                .cloned()
                .collect()
        });
        if gone.is_empty() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let timeout = self.config.commit_timeout;
        handle.spawn(async move {
            let written = t
                .write(|m| m.tombstones_for_topics(|topic| !gone.contains(topic)), timeout)
                .await;
            match written {
                Ok(n) => tracing::info!(partition = t.partition, topics = ?gone, offsets = n, "dropped the committed offsets of deleted topics"),
                Err(e) => tracing::warn!(partition = t.partition, topics = ?gone, error = %e, "could not drop the committed offsets of deleted topics; retried at the next metadata change"),
            }
        });
    }

    /// Every committed offset of the groups served here (for consumer-lag metrics).
    pub fn committed_offsets(&self) -> Vec<CommittedOffset> {
        let mut out = Vec::new();
        for t in self.ready() {
            t.view(|m| {
                for (group, offsets) in m.groups() {
                    for ((topic, partition), v) in offsets {
                        out.push(CommittedOffset {
                            group: group.clone(),
                            topic: topic.clone(),
                            partition: *partition,
                            offset: v.offset,
                        });
                    }
                }
            });
        }
        out.sort_by(|a, b| {
            (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition))
        });
        out
    }

    /// Compacts `tenure`'s partition in the background when its log has grown well past its
    /// live offsets.
    fn maybe_compact(&self, tenure: &Arc<Tenure>) {
        if !tenure.compaction_due(self.config.compact_min_records) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let t = Arc::clone(tenure);
        let timeout = self.config.commit_timeout;
        handle.spawn(async move { t.compact(timeout).await });
    }

    /// Takes over offsets of `group` from a pre-replication offsets file (the upgrade of a
    /// broker that coordinated it, see [`legacy`]): each is written unless the group already
    /// has a newer commit for that partition. Durable (replicated) when it returns `Ok` with
    /// the number written.
    pub async fn import_legacy(
        &self,
        group: &str,
        offsets: Vec<(String, i32, StoredOffset)>,
    ) -> Result<usize, String> {
        let tenure = self
            .serving(group)
            .await
            .map_err(|code| format!("group {group}: not served here (error {code})"))?;
        let group = group.to_string();
        let written = tenure
            .write(
                |m| {
                    offsets
                        .into_iter()
                        .filter(|(topic, partition, v)| {
                            m.latest(&group, topic, *partition)
                                .is_none_or(|c| c.commit_timestamp_ms < v.commit_timestamp_ms)
                        })
                        .map(|(topic, partition, value)| OffsetRecord::Commit {
                            group: group.clone(),
                            topic,
                            partition,
                            value,
                        })
                        .collect()
                },
                self.config.commit_timeout,
            )
            .await
            .map_err(|e| e.to_string())?;
        // An earlier version may have kept offsets of topics deleted since.
        self.forget_deleted_in(tenure);
        Ok(written)
    }
}

#[cfg(test)]
mod tests;
