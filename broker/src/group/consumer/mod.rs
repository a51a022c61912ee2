//! One consumer group of the KIP-848 protocol (`group.protocol=consumer`): members heartbeat
//! (ConsumerGroupHeartbeat) and the coordinator assigns the partitions. A pure state machine:
//! no I/O, no lock, `now` and the subscribed topics' metadata passed in.
//!
//! The protocol, as Kafka's coordinator runs it:
//! - The **group epoch** rises whenever what the assignment depends on changes: a member joins
//!   or leaves, a subscription or the assignor changes, a subscribed topic appears, disappears
//!   or gains partitions. The **target assignment** is then computed anew by the group's
//!   assignor (`uniform`, sticky; or `range`) and stamped with that epoch.
//! - Each member moves towards its target on its own heartbeats (reconciliation). A partition
//!   another member still owns is never given out: first the owner is told to revoke it (its
//!   assignment shrinks, its epoch stays), and it acknowledges by heartbeating without it
//!   (`topic_partitions`, after committing its offsets). A member with nothing to revoke takes
//!   the target epoch and the free partitions of its target at once; partitions still held
//!   by others follow on a later heartbeat, once released.
//! - A heartbeat carries the member's epoch: a newer one than the coordinator gave, or an older
//!   one that is not the member's previous epoch, is FENCED_MEMBER_EPOCH (the member gives up
//!   its partitions and rejoins at epoch 0). A member not heard from for the session timeout,
//!   or that does not revoke within its rebalance timeout, is removed.
//! - Offset commits carry the member epoch: a newer one is FENCED_MEMBER_EPOCH; an older one is
//!   accepted when the member owned every committed partition since that epoch (KIP-1251;
//!   Kafka before 4.3 answers STALE_MEMBER_EPOCH there, a race the clients cannot handle),
//!   else STALE_MEMBER_EPOCH.
//!
//! Not kept: the membership is in memory on the coordinator; a coordinator move (or restart)
//! answers UNKNOWN_MEMBER_ID and the members rejoin (their committed offsets are in
//! `__consumer_offsets` like every group's). Kafka persists members and assignments there too.

mod assign;
mod classic;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::codes;
pub use assign::{assign, Assignor};
#[cfg(test)]
pub(crate) use classic::decode_assignment;
pub(crate) use classic::decode_subscription;
pub use classic::{ClassicMember, MigrationPolicy};

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The subscribed topics as the cluster has them: name -> (id, partition count).
pub type TopicsMeta = BTreeMap<String, (Uuid, i32)>;

/// A member's epoch in a heartbeat that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// A static member's leave: its partitions stay reserved for its instance id until the session
/// timeout (a restart under the same `group.instance.id` takes them over).
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Error codes of this protocol (besides those in `codes`).
pub const INVALID_REQUEST: i16 = 42;
pub const FENCED_MEMBER_EPOCH: i16 = 110;
pub const UNRELEASED_INSTANCE_ID: i16 = 111;
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
pub const STALE_MEMBER_EPOCH: i16 = 113;
pub const INVALID_REGULAR_EXPRESSION: i16 = 128;

/// The coordinator's settings for consumer groups (Kafka's `group.consumer.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSettings {
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Largest number of members (`group.consumer.max.size`).
    pub max_size: usize,
    /// Whether a group with members may change protocol (`group.consumer.migration.policy`).
    pub migration: MigrationPolicy,
}

impl Default for ConsumerSettings {
    /// Kafka 4.x's defaults.
    fn default() -> Self {
        ConsumerSettings {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(5),
            max_size: i32::MAX as usize,
            migration: MigrationPolicy::Bidirectional,
        }
    }
}

/// Where a member stands towards its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// It has its target (or all of it that is free) at the target epoch.
    Stable,
    /// It must give up partitions first; its epoch stays until it does.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    /// What the member owns now (what it was last told to own).
    pub assigned: Assignment,
    /// What it was told to give up and has not confirmed yet; still owned meanwhile.
    pub revoking: Assignment,
    /// The epoch at which each owned partition was given (commit checks, KIP-1251).
    given_at: BTreeMap<(Uuid, i32), i32>,
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<String>,
    /// `subscribed_regex` compiled (once, when it changes).
    regex: Option<regex::Regex>,
    /// The topics `regex` matched that this member may see (DESCRIBE), as of its last
    /// heartbeat: each member's expression is resolved with its own permissions, so one
    /// member's pattern never hands it a topic only another member may read.
    regex_topics: BTreeSet<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout: Duration,
    last_heard: Instant,
    /// Set when it was asked to revoke: it must have done so by then.
    revoke_by: Option<Instant>,
    /// A static member that left (epoch -2): kept until the session timeout.
    static_left: bool,
    /// The assignment last sent to the member (sent again only when it changes).
    sent: Option<Assignment>,
    /// Set for a member that speaks the classic protocol (JoinGroup, SyncGroup, Heartbeat)
    /// in this group: during an online migration (`classic.rs`).
    pub classic: Option<ClassicMember>,
}

impl Member {
    /// A member that just joined: epoch 0, nothing assigned, no subscription yet.
    fn joining(
        id: &str,
        instance_id: Option<String>,
        client: (&str, &str),
        rebalance_timeout: Duration,
        now: Instant,
    ) -> Member {
        Member {
            id: id.to_string(),
            instance_id,
            rack_id: None,
            client_id: client.0.to_string(),
            client_host: client.1.to_string(),
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            given_at: BTreeMap::new(),
            subscribed_names: Vec::new(),
            subscribed_regex: None,
            regex: None,
            regex_topics: BTreeSet::new(),
            server_assignor: None,
            rebalance_timeout,
            last_heard: now,
            revoke_by: None,
            static_left: false,
            sent: None,
            classic: None,
        }
    }

    /// How long the member may stay silent: a classic member's own session timeout, else
    /// the coordinator's.
    fn session_timeout(&self, settings: &ConsumerSettings) -> Duration {
        self.classic
            .as_ref()
            .map_or(settings.session_timeout, |c| c.session_timeout)
    }

    fn owns(&self, topic: Uuid, partition: i32) -> bool {
        let has = |a: &Assignment| a.get(&topic).is_some_and(|p| p.contains(&partition));
        has(&self.assigned) || has(&self.revoking)
    }
}

/// A consumer group's state as Kafka names it (ListGroups, ConsumerGroupDescribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// One ConsumerGroupHeartbeat, decoded.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged.
    pub subscribed_names: Option<Vec<String>>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member owns, when it says (`None`: unchanged since its last heartbeat).
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// v0 lets the coordinator choose the member id; from v1 the member sends its own.
    pub member_id_from_client: bool,
}

/// The answer to one heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    /// Sent when it differs from what the member was last given.
    pub assignment: Option<Assignment>,
}

impl HeartbeatReply {
    fn error(code: i16, member_id: &str, epoch: i32, message: String) -> HeartbeatReply {
        HeartbeatReply {
            error: code,
            message: Some(message),
            member_id: member_id.to_string(),
            member_epoch: epoch,
            assignment: None,
        }
    }
}

/// What a heartbeat needs from the cluster: the topics a subscription (names, or a regular
/// expression over every topic) resolves to.
pub trait Resolve {
    /// The named topics that exist, with their ids and partition counts.
    fn topics(&self, names: &BTreeSet<String>) -> TopicsMeta;
    /// The names of the topics `regex` matches that the member asking may see (Kafka checks
    /// DESCRIBE with the permissions of the member whose heartbeat resolved the expression).
    fn matching(&self, regex: &regex::Regex) -> BTreeSet<String>;
}

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub id: String,
    pub epoch: i32,
    /// The epoch the target assignment was computed at.
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, Member>,
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics the target was computed from.
    topics: TopicsMeta,
    pub assignor: Assignor,
}

impl ConsumerGroup {
    pub fn new(id: &str) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics: TopicsMeta::new(),
            assignor: Assignor::Uniform,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The topics the members subscribe to: named ones, and those a regular expression
    /// matched at the last heartbeat (OffsetDelete keeps their offsets).
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.topics.keys().cloned().collect();
        for m in self.members.values() {
            out.extend(m.subscribed_names.iter().cloned());
        }
        out
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.assignment_epoch < self.epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Serves one heartbeat at `now`.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        settings: &ConsumerSettings,
        resolve: &dyn Resolve,
        now: Instant,
    ) -> HeartbeatReply {
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&hb);
        }
        if let Some(a) = &hb.server_assignor {
            if Assignor::parse(a).is_none() {
                return HeartbeatReply::error(
                    UNSUPPORTED_ASSIGNOR,
                    &hb.member_id,
                    hb.member_epoch,
                    format!("Assignor {a} is not supported: the assignors are uniform and range."),
                );
            }
        }
        let mut compiled = None;
        if let Some(r) = hb.subscribed_regex.as_ref().filter(|r| !r.is_empty()) {
            match compile(r) {
                Ok(re) => compiled = Some(re),
                Err(e) => {
                    return HeartbeatReply::error(
                        INVALID_REGULAR_EXPRESSION,
                        &hb.member_id,
                        hb.member_epoch,
                        format!(
                            "SubscribedTopicRegex {r:?} is not a valid regular expression: {e}"
                        ),
                    );
                }
            }
        }
        // Whatever changes in one heartbeat (a join, a subscription, the topics it resolves
        // to) is one new group epoch.
        let base = self.epoch;
        let member_id = match self.admit(&hb, settings, now) {
            Ok(id) => id,
            Err(reply) => return reply,
        };
        let Some(member) = self.members.get_mut(&member_id) else {
            return HeartbeatReply::error(
                codes::UNKNOWN_MEMBER_ID,
                &member_id,
                hb.member_epoch,
                format!("Member {member_id} is not a member of group {}.", self.id),
            );
        };
        member.last_heard = now;
        member.client_id = hb.client_id.clone();
        member.client_host = hb.client_host.clone();
        if hb.rack_id.is_some() {
            member.rack_id = hb.rack_id.clone();
        }
        if hb.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms as u64);
        }
        let mut changed = false;
        if let Some(mut names) = hb.subscribed_names.clone() {
            names.sort();
            names.dedup();
            changed |= names != member.subscribed_names;
            member.subscribed_names = names;
        }
        if let Some(r) = &hb.subscribed_regex {
            let r = (!r.is_empty()).then(|| r.clone());
            changed |= r != member.subscribed_regex;
            member.subscribed_regex = r;
            member.regex = compiled;
        }
        // Topics created (or permissions granted) since the last heartbeat join the
        // subscription now.
        let matched = member
            .regex
            .as_ref()
            .map(|r| resolve.matching(r))
            .unwrap_or_default();
        changed |= matched != member.regex_topics;
        member.regex_topics = matched;
        if let Some(a) = &hb.server_assignor {
            let a = Some(a.clone());
            changed |= a != member.server_assignor;
            member.server_assignor = a;
        }
        if changed {
            self.epoch = base + 1;
        }
        self.refresh_target(resolve, base);
        let full = hb.member_epoch == 0;
        self.reconcile(&member_id, hb.owned.as_ref(), now);
        let Some(member) = self.members.get_mut(&member_id) else {
            return HeartbeatReply::error(
                codes::UNKNOWN_MEMBER_ID,
                &member_id,
                hb.member_epoch,
                format!("Member {member_id} is not a member of group {}.", self.id),
            );
        };
        // The assignment goes out when it changed, on a join, and when the member says it
        // owns something else (it missed an answer).
        let send = full
            || member.sent.as_ref() != Some(&member.assigned)
            || hb
                .owned
                .as_ref()
                .is_some_and(|o| strip(o) != strip(&member.assigned));
        let assignment = send.then(|| member.assigned.clone());
        if send {
            member.sent = Some(member.assigned.clone());
        }
        HeartbeatReply {
            error: codes::NONE,
            message: None,
            member_id,
            member_epoch: member.epoch,
            assignment,
        }
    }

    /// A member leaving (epoch -1), or a static member leaving for now (-2).
    fn leave(&mut self, hb: &Heartbeat) -> HeartbeatReply {
        let id = self
            .members
            .get(&hb.member_id)
            .map(|m| m.id.clone())
            .or_else(|| {
                // A static member may leave by its instance id alone.
                let instance = hb.instance_id.as_ref()?;
                self.members
                    .values()
                    .find(|m| m.instance_id.as_ref() == Some(instance))
                    .map(|m| m.id.clone())
            });
        if let Some(id) = id {
            let static_leave = hb.member_epoch == STATIC_LEAVE_EPOCH
                && self
                    .members
                    .get(&id)
                    .is_some_and(|m| m.instance_id.is_some());
            if static_leave {
                if let Some(m) = self.members.get_mut(&id) {
                    m.static_left = true;
                }
                tracing::info!(group = %self.id, member = %id, "static consumer-group member left for now");
            } else {
                self.remove(&id, "left");
            }
        }
        HeartbeatReply {
            error: codes::NONE,
            message: None,
            member_id: hb.member_id.clone(),
            member_epoch: hb.member_epoch,
            assignment: None,
        }
    }

    /// Checks the member's epoch and adds a joining member; the member id to serve.
    fn admit(
        &mut self,
        hb: &Heartbeat,
        settings: &ConsumerSettings,
        now: Instant,
    ) -> Result<String, HeartbeatReply> {
        if hb.member_epoch == 0 {
            return self.join(hb, settings, now);
        }
        if hb.member_epoch < 0 {
            return Err(HeartbeatReply::error(
                INVALID_REQUEST,
                &hb.member_id,
                hb.member_epoch,
                format!("MemberEpoch {} is invalid.", hb.member_epoch),
            ));
        }
        let Some(member) = self.members.get(&hb.member_id) else {
            return Err(HeartbeatReply::error(
                codes::UNKNOWN_MEMBER_ID,
                &hb.member_id,
                hb.member_epoch,
                format!(
                    "Member {} is not a member of group {} (it may have timed out, or the coordinator moved); rejoin with epoch 0.",
                    hb.member_id, self.id
                ),
            ));
        };
        if member.static_left {
            return Err(HeartbeatReply::error(
                codes::UNKNOWN_MEMBER_ID,
                &hb.member_id,
                hb.member_epoch,
                format!("Member {} left the group.", hb.member_id),
            ));
        }
        if hb.member_epoch != member.epoch {
            // An answer the member missed: it is one epoch behind and owns what it had then.
            let missed_answer = hb.member_epoch == member.previous_epoch
                && hb
                    .owned
                    .as_ref()
                    .is_some_and(|o| is_subset(o, &member.assigned));
            if !missed_answer {
                return Err(HeartbeatReply::error(
                    FENCED_MEMBER_EPOCH,
                    &hb.member_id,
                    hb.member_epoch,
                    format!(
                        "The member's epoch {} is fenced: the coordinator has {} for member {}.",
                        hb.member_epoch, member.epoch, hb.member_id
                    ),
                ));
            }
        }
        Ok(hb.member_id.clone())
    }

    fn join(
        &mut self,
        hb: &Heartbeat,
        settings: &ConsumerSettings,
        now: Instant,
    ) -> Result<String, HeartbeatReply> {
        let reject =
            |code, message: String| Err(HeartbeatReply::error(code, &hb.member_id, 0, message));
        if let Some(refused) = join_refusal(hb) {
            return Err(refused);
        }
        let id = if hb.member_id.is_empty() {
            Uuid::new_v4().to_string()
        } else {
            hb.member_id.clone()
        };
        if let Some(existing) = self.members.get_mut(&id) {
            // The same member rejoining (after it was fenced): it gave up what it had.
            existing.assigned.clear();
            existing.revoking.clear();
            existing.given_at.clear();
            existing.epoch = 0;
            existing.previous_epoch = 0;
            existing.state = MemberState::Stable;
            existing.static_left = false;
            existing.sent = None;
            existing.revoke_by = None;
            return Ok(id);
        }
        let mut inherited = None;
        if let Some(instance) = &hb.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance))
                .map(|m| (m.id.clone(), m.static_left));
            match holder {
                Some((_, false)) => {
                    return reject(
                        UNRELEASED_INSTANCE_ID,
                        format!(
                            "Static member with instance id {instance} is still active in group {}; it must leave first.",
                            self.id
                        ),
                    );
                }
                Some((old, true)) => inherited = self.members.remove(&old),
                None => {}
            }
        }
        if inherited.is_none() && self.members.len() >= settings.max_size {
            return reject(
                codes::GROUP_MAX_SIZE_REACHED,
                format!(
                    "The consumer group {} has reached its maximum size of {} members.",
                    self.id, settings.max_size
                ),
            );
        }
        let member = match inherited {
            // A static member restarting takes over its predecessor's place and partitions.
            Some(mut old) => {
                if let Some(t) = self.target.remove(&old.id) {
                    self.target.insert(id.clone(), t);
                }
                old.id = id.clone();
                old.static_left = false;
                old.sent = None;
                old
            }
            None => {
                self.epoch += 1; // the caller's base + 1: the first change of this heartbeat
                let mut m = Member::joining(
                    &id,
                    hb.instance_id.clone(),
                    (&hb.client_id, &hb.client_host),
                    Duration::from_millis(hb.rebalance_timeout_ms as u64),
                    now,
                );
                m.rack_id = hb.rack_id.clone();
                m
            }
        };
        tracing::info!(group = %self.id, member = %id, epoch = self.epoch, "consumer-group member joined");
        self.members.insert(id.clone(), member);
        Ok(id)
    }

    /// Removes a member; its partitions are free for the others.
    pub fn remove(&mut self, id: &str, why: &str) {
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            self.epoch += 1;
            tracing::info!(group = %self.id, member = %id, epoch = self.epoch, reason = why, "consumer-group member removed");
        }
    }

    /// Recomputes the target assignment when the group epoch moved or the subscribed topics
    /// changed.
    fn refresh_target(&mut self, resolve: &dyn Resolve, base: i32) {
        let mut names = BTreeSet::new();
        for m in self.members.values() {
            names.extend(m.subscribed_names.iter().cloned());
            names.extend(m.regex_topics.iter().cloned());
        }
        let topics = resolve.topics(&names);
        if topics != self.topics {
            self.topics = topics;
            self.epoch = self.epoch.max(base + 1);
        }
        if self.assignment_epoch == self.epoch {
            return;
        }
        self.assignor = self.chosen_assignor();
        let subscriptions: BTreeMap<String, BTreeSet<Uuid>> = self
            .members
            .values()
            .map(|m| (m.id.clone(), self.subscribed_ids(m)))
            .collect();
        let partitions: BTreeMap<Uuid, i32> = self.topics.values().copied().collect();
        let names: BTreeMap<Uuid, &str> = self
            .topics
            .iter()
            .map(|(n, (id, _))| (*id, n.as_str()))
            .collect();
        self.target = assign(
            self.assignor,
            &subscriptions,
            &partitions,
            &names,
            &self.target,
        );
        self.assignment_epoch = self.epoch;
        tracing::debug!(group = %self.id, epoch = self.epoch, assignor = self.assignor.name(), "consumer-group target assignment computed");
    }

    fn subscribed_ids(&self, m: &Member) -> BTreeSet<Uuid> {
        self.topics
            .iter()
            .filter(|(name, _)| {
                m.subscribed_names.iter().any(|n| n == *name) || m.regex_topics.contains(*name)
            })
            .map(|(_, (id, _))| *id)
            .collect()
    }

    /// The assignor most members asked for (ties by name); `uniform` when none asked.
    fn chosen_assignor(&self) -> Assignor {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for a in self
            .members
            .values()
            .filter_map(|m| m.server_assignor.as_deref())
        {
            *votes.entry(a).or_default() += 1;
        }
        votes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .and_then(|(a, _)| Assignor::parse(a))
            .unwrap_or(Assignor::Uniform)
    }

    /// Moves the member towards its target: revocations first, then the free partitions.
    fn reconcile(&mut self, id: &str, owned: Option<&Assignment>, now: Instant) {
        let Some(member) = self.members.get(id) else {
            return;
        };
        match member.state {
            MemberState::UnrevokedPartitions => {
                let confirmed = owned.is_some_and(|o| !overlaps(o, &member.revoking));
                if !confirmed {
                    return;
                }
                if let Some(m) = self.members.get_mut(id) {
                    m.revoking.clear();
                    m.revoke_by = None;
                }
            }
            MemberState::Stable if member.epoch == self.assignment_epoch => return,
            _ => {}
        }
        let target = self.target.get(id).cloned().unwrap_or_default();
        let Some(member) = self.members.get(id) else {
            return;
        };
        let kept = intersect(&member.assigned, &target);
        let revoke = difference(&member.assigned, &target);
        if !revoke.is_empty() {
            let deadline = now + member.rebalance_timeout;
            if let Some(m) = self.members.get_mut(id) {
                for (t, ps) in &revoke {
                    for p in ps {
                        m.given_at.remove(&(*t, *p));
                    }
                }
                m.assigned = kept;
                m.revoking = revoke;
                m.state = MemberState::UnrevokedPartitions;
                m.revoke_by = Some(deadline);
            }
            return;
        }
        let wanted = difference(&target, &member.assigned);
        let mut free = Assignment::new();
        let mut held = false;
        for (t, ps) in &wanted {
            for p in ps {
                let taken = self.members.values().any(|o| o.id != id && o.owns(*t, *p));
                if taken {
                    held = true;
                } else {
                    free.entry(*t).or_default().insert(*p);
                }
            }
        }
        let epoch = self.assignment_epoch;
        if let Some(m) = self.members.get_mut(id) {
            for (t, ps) in &free {
                for p in ps {
                    m.given_at.insert((*t, *p), epoch);
                    m.assigned.entry(*t).or_default().insert(*p);
                }
            }
            if m.epoch != epoch {
                m.previous_epoch = m.epoch;
                m.epoch = epoch;
            }
            m.state = if held {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
        }
    }

    /// Whether `member_id` may commit offsets of `partitions` at `epoch`: `Err` with the error
    /// code. `epoch < 0` without a member id: a commit from outside the group (admin tools),
    /// allowed while the group has no members.
    pub fn check_commit(
        &self,
        member_id: &str,
        epoch: i32,
        partitions: &[(Uuid, i32)],
    ) -> Result<(), i16> {
        if member_id.is_empty() && epoch < 0 {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(codes::UNKNOWN_MEMBER_ID)
            };
        }
        let Some(member) = self.members.get(member_id) else {
            return Err(codes::UNKNOWN_MEMBER_ID);
        };
        if member.classic.is_some() {
            // A classic member commits at its generation, its member epoch, exactly.
            return if epoch == member.epoch {
                Ok(())
            } else {
                Err(codes::ILLEGAL_GENERATION)
            };
        }
        if epoch > member.epoch {
            return Err(FENCED_MEMBER_EPOCH);
        }
        if epoch < member.epoch {
            // KIP-1251: an older epoch is fine for partitions owned since then.
            let owned_since = partitions.iter().all(|k| {
                member.owns(k.0, k.1) && member.given_at.get(k).is_some_and(|e| *e <= epoch)
            });
            if partitions.is_empty() || !owned_since {
                return Err(STALE_MEMBER_EPOCH);
            }
        }
        Ok(())
    }

    /// Whether `member_id` at `epoch` may read the group's committed offsets (OffsetFetch v9+,
    /// Kafka's rule): without a member id and epoch (admin tools, and librdkafka, which sends
    /// neither) always; else the member must exist at exactly that epoch (a classic member at
    /// its generation). Unlike a commit, no older epoch is accepted: the client refetches with
    /// the one its next heartbeat gives it.
    pub fn check_offset_fetch(&self, member_id: Option<&str>, epoch: i32) -> Result<(), i16> {
        if member_id.is_none() && epoch < 0 {
            return Ok(());
        }
        let Some(member) = member_id.and_then(|id| self.members.get(id)) else {
            return Err(codes::UNKNOWN_MEMBER_ID);
        };
        match (epoch == member.epoch, member.classic.is_some()) {
            (true, _) => Ok(()),
            (false, true) => Err(codes::ILLEGAL_GENERATION),
            (false, false) => Err(STALE_MEMBER_EPOCH),
        }
    }

    /// Removes members whose session expired or who did not revoke in time; the next deadline.
    pub fn tick(&mut self, settings: &ConsumerSettings, now: Instant) -> Option<Instant> {
        let expired: Vec<(String, &'static str)> = self
            .members
            .values()
            .filter_map(|m| {
                if now >= m.last_heard + m.session_timeout(settings) {
                    Some((m.id.clone(), "session timed out"))
                } else if m.revoke_by.is_some_and(|d| now >= d) {
                    Some((
                        m.id.clone(),
                        "did not revoke its partitions within its rebalance timeout",
                    ))
                } else {
                    m.classic
                        .as_ref()
                        .and_then(|c| c.expired(now))
                        .map(|why| (m.id.clone(), why))
                }
            })
            .collect();
        for (id, why) in expired {
            self.remove(&id, why);
        }
        self.members
            .values()
            .map(|m| {
                let session = m.last_heard + m.session_timeout(settings);
                let revoke = m.revoke_by.map_or(session, |d| d.min(session));
                m.classic
                    .as_ref()
                    .and_then(ClassicMember::deadline)
                    .map_or(revoke, |d| d.min(revoke))
            })
            .min()
    }
}

/// Why a first heartbeat (epoch 0) is refused whatever the group: the fields a join must
/// carry (Kafka's request checks), a known assignor, a valid regular expression. The
/// coordinator asks before it turns a classic group into a consumer group for the member.
pub fn join_refusal(hb: &Heartbeat) -> Option<HeartbeatReply> {
    let refuse =
        |code, message: String| Some(HeartbeatReply::error(code, &hb.member_id, 0, message));
    if hb.member_id_from_client && hb.member_id.is_empty() {
        return refuse(INVALID_REQUEST, "MemberId can't be empty.".to_string());
    }
    if hb.rebalance_timeout_ms < 0 {
        return refuse(
            INVALID_REQUEST,
            "RebalanceTimeoutMs must be provided in the first request.".to_string(),
        );
    }
    let regex = hb.subscribed_regex.as_ref().filter(|r| !r.is_empty());
    if hb.subscribed_names.is_none() && regex.is_none() {
        return refuse(
            INVALID_REQUEST,
            "SubscribedTopicNames or SubscribedTopicRegex must be set in the first request."
                .to_string(),
        );
    }
    if let Some(a) = hb
        .server_assignor
        .as_ref()
        .filter(|a| Assignor::parse(a).is_none())
    {
        return refuse(
            UNSUPPORTED_ASSIGNOR,
            format!("Assignor {a} is not supported: the assignors are uniform and range."),
        );
    }
    if let Some(r) = regex {
        if let Err(e) = compile(r) {
            return refuse(
                INVALID_REGULAR_EXPRESSION,
                format!("SubscribedTopicRegex {r:?} is not a valid regular expression: {e}"),
            );
        }
    }
    None
}

/// A subscription's regular expression, matched against whole topic names (Kafka uses RE2J's
/// `matches`).
fn compile(r: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{r})$"))
}

fn strip(a: &Assignment) -> Assignment {
    a.iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(t, p)| (*t, p.clone()))
        .collect()
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        if let Some(other) = b.get(t) {
            let both: BTreeSet<i32> = ps.intersection(other).copied().collect();
            if !both.is_empty() {
                out.insert(*t, both);
            }
        }
    }
    out
}

fn difference(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(other) => ps.difference(other).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

fn overlaps(a: &Assignment, b: &Assignment) -> bool {
    !intersect(a, b).is_empty()
}

fn is_subset(a: &Assignment, b: &Assignment) -> bool {
    difference(a, b).is_empty()
}

#[cfg(test)]
mod classic_tests;
#[cfg(test)]
mod tests;
