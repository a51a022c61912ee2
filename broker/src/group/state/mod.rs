//! The classic consumer group as a pure state machine.
//!
//! No I/O and no clock of its own: every transition takes `now` and returns what must be
//! answered. A JoinGroup or SyncGroup that cannot be answered at once returns `Wait`; its answer
//! comes later as an [`Effect`] from another member's request or from [`Group::tick`] (rebalance
//! deadline, session expiry). The coordinator keeps one waiting reply channel per member and
//! routes effects to them.
//!
//! States, as in Kafka:
//!
//! ```text
//!   Empty ──join──▶ PreparingRebalance ──all joined / deadline──▶ CompletingRebalance
//!     ▲                  ▲      │                                       │ leader's SyncGroup
//!     │                  │      └──no member left──▶ Empty               ▼
//!     │                  └────── join / leave / expiry ───────────── Stable
//!   Dead: the group was deleted (only ever reported, never stored).
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::codes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses on the wire (DescribeGroups, ListGroups).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Session and delay limits (the broker's `group.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    pub initial_rebalance_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub assignment: Bytes,
    /// A JoinGroup of this member is waiting for the rebalance to complete.
    pub awaiting_join: bool,
    /// A SyncGroup of this member is waiting for the leader's assignment.
    pub awaiting_sync: bool,
    pub last_heartbeat: Instant,
    /// Order of joining; the oldest member becomes leader when one must be chosen.
    seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// A member whose JoinGroup or SyncGroup is in flight is alive by definition (its request is
    /// what it is doing instead of heartbeating).
    fn session_deadline(&self) -> Option<Instant> {
        if self.awaiting_join || self.awaiting_sync {
            None
        } else {
            Some(self.last_heartbeat + self.session_timeout)
        }
    }
}

/// A JoinGroup, decoded and version-normalised by the coordinator.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// As requested, in ms (checked against the limits before use).
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED with its id.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol; only the leader gets it.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn error(error: i16, member_id: &str) -> JoinResult {
        JoinResult {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: i16) -> SyncResult {
        SyncResult {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer to a request that was waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Join(JoinResult),
    Sync {
        member_id: String,
        result: SyncResult,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinStep {
    Reply(JoinResult),
    /// Wait for an [`Effect::Join`] for this member id.
    Wait {
        member_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    Reply(SyncResult),
    /// Wait for an [`Effect::Sync`] for the requesting member.
    Wait,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and until when they may come back.
    pending: HashMap<String, Instant>,
    /// group.instance.id → current member id.
    static_members: HashMap<String, String>,
    rebalance_deadline: Option<Instant>,
    /// While set, the first rebalance of a group that was empty waits for more members
    /// (`group.initial.rebalance.delay.ms`); the value is the budget left for extensions.
    initial_delay_remaining: Option<Duration>,
    new_member_added: bool,
    /// `group.initial.rebalance.delay.ms`.
    initial_delay: Duration,
    next_seq: u64,
}

type Fx = Vec<Effect>;

impl Group {
    pub fn new(id: &str, initial_delay: Duration) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_remaining: None,
            new_member_added: false,
            initial_delay,
            next_seq: 0,
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        let mut v: Vec<&Member> = self.members.values().collect();
        v.sort_by_key(|m| m.seq);
        v.into_iter()
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    pub fn has_pending(&self, id: &str) -> bool {
        self.pending.contains_key(id)
    }

    /// Handles a JoinGroup. `fresh_id` is used if the member needs a new id.
    pub fn join(
        &mut self,
        a: JoinArgs,
        fresh_id: String,
        limits: &Limits,
        now: Instant,
    ) -> (JoinStep, Fx) {
        tracing::debug!(
            group = %self.id,
            member = %a.member_id,
            state = self.state.as_str(),
            generation = self.generation,
            "join"
        );
        let reply =
            |code: i16, id: &str| (JoinStep::Reply(JoinResult::error(code, id)), Vec::new());
        let session_ok = i64::from(a.session_timeout_ms)
            >= limits.min_session_timeout.as_millis() as i64
            && i64::from(a.session_timeout_ms) <= limits.max_session_timeout.as_millis() as i64;
        if !session_ok {
            return reply(codes::INVALID_SESSION_TIMEOUT, &a.member_id);
        }
        if a.protocol_type.is_empty() || a.protocols.is_empty() {
            return reply(codes::INCONSISTENT_GROUP_PROTOCOL, &a.member_id);
        }
        if self.state == GroupState::Dead {
            return reply(codes::COORDINATOR_NOT_AVAILABLE, &a.member_id);
        }
        if !self.supports(&a.member_id, &a.protocol_type, &a.protocols) {
            return reply(codes::INCONSISTENT_GROUP_PROTOCOL, &a.member_id);
        }

        if a.member_id.is_empty() {
            if let Some(instance) = a.instance_id.clone() {
                if let Some(old) = self.static_members.get(&instance).cloned() {
                    if self.members.contains_key(&old) {
                        return self.replace_static_member(&old, fresh_id, a, now);
                    }
                }
                return self.add_member_and_rebalance(fresh_id, a, now);
            }
            if a.require_known_member_id {
                let deadline = now + Duration::from_millis(a.session_timeout_ms.max(0) as u64);
                self.pending.insert(fresh_id.clone(), deadline);
                return reply(codes::MEMBER_ID_REQUIRED, &fresh_id);
            }
            return self.add_member_and_rebalance(fresh_id, a, now);
        }

        if let Some(code) = self.fenced(&a.member_id, a.instance_id.as_deref()) {
            return reply(code, &a.member_id);
        }
        if self.pending.remove(&a.member_id).is_some() {
            let id = a.member_id.clone();
            return self.add_member_and_rebalance(id, a, now);
        }
        let Some(member) = self.members.get(&a.member_id) else {
            return reply(codes::UNKNOWN_MEMBER_ID, &a.member_id);
        };
        let unchanged = member.same_protocols(&a.protocols);
        let is_leader = self.leader.as_deref() == Some(a.member_id.as_str());
        let id = a.member_id.clone();
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(a, now);
                let fx = self.maybe_complete_join(now);
                (JoinStep::Wait { member_id: id }, fx)
            }
            GroupState::CompletingRebalance if unchanged => {
                // The member lost our JoinGroup answer: send it again.
                (JoinStep::Reply(self.join_result(&id)), Vec::new())
            }
            GroupState::Stable if unchanged && !is_leader => {
                (JoinStep::Reply(self.join_result(&id)), Vec::new())
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let reason = if unchanged {
                    "leader rejoined"
                } else {
                    "member rejoined with new metadata"
                };
                self.update_member(a, now);
                let fx = self.rebalance(now, reason);
                (JoinStep::Wait { member_id: id }, fx)
            }
            GroupState::Empty | GroupState::Dead => reply(codes::UNKNOWN_MEMBER_ID, &id),
        }
    }

    /// Handles a SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (SyncStep, Fx) {
        let reply = |code: i16| (SyncStep::Reply(SyncResult::error(code)), Vec::new());
        if self.state == GroupState::Dead {
            return reply(codes::COORDINATOR_NOT_AVAILABLE);
        }
        if let Some(code) = self.fenced(member_id, instance_id) {
            return reply(code);
        }
        if !self.members.contains_key(member_id) {
            return reply(codes::UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return reply(codes::ILLEGAL_GENERATION);
        }
        let type_mismatch = protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref());
        let name_mismatch = protocol_name.is_some_and(|n| Some(n) != self.protocol_name.as_deref());
        if type_mismatch || name_mismatch {
            return reply(codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => reply(codes::UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => reply(codes::REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                let result = self.sync_ok(member_id);
                self.touch(member_id, now);
                (SyncStep::Reply(result), Vec::new())
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = true;
                    m.last_heartbeat = now;
                }
                let mut fx = Vec::new();
                if self.leader.as_deref() == Some(member_id) {
                    for (id, assignment) in assignments {
                        // Assignments for members that are gone are dropped, as Kafka does.
                        if let Some(m) = self.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    self.state = GroupState::Stable;
                    let waiting: Vec<String> = self
                        .members
                        .values()
                        .filter(|m| m.awaiting_sync)
                        .map(|m| m.id.clone())
                        .collect();
                    for id in waiting {
                        let result = self.sync_ok(&id);
                        if let Some(m) = self.members.get_mut(&id) {
                            m.awaiting_sync = false;
                            m.last_heartbeat = now;
                        }
                        fx.push(Effect::Sync {
                            member_id: id,
                            result,
                        });
                    }
                }
                (SyncStep::Wait, fx)
            }
        }
    }

    /// Handles a Heartbeat; returns the error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return codes::COORDINATOR_NOT_AVAILABLE;
        }
        if let Some(code) = self.fenced(member_id, instance_id) {
            return code;
        }
        if !self.members.contains_key(member_id) {
            return codes::UNKNOWN_MEMBER_ID;
        }
        if generation != self.generation {
            return codes::ILLEGAL_GENERATION;
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => codes::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => {
                self.touch(member_id, now);
                codes::REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch(member_id, now);
                codes::NONE
            }
        }
    }

    /// Handles one member of a LeaveGroup; returns the member's error code.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: Instant) -> (i16, Fx) {
        let id = match (member_id.is_empty(), instance_id) {
            (true, Some(instance)) => match self.static_members.get(instance) {
                Some(id) => id.clone(),
                None => return (codes::UNKNOWN_MEMBER_ID, Vec::new()),
            },
            _ => {
                if let Some(code) = self.fenced(member_id, instance_id) {
                    return (code, Vec::new());
                }
                member_id.to_string()
            }
        };
        if self.pending.remove(&id).is_some() {
            let fx = if self.state == GroupState::PreparingRebalance {
                self.maybe_complete_join(now)
            } else {
                Vec::new()
            };
            return (codes::NONE, fx);
        }
        if !self.members.contains_key(&id) {
            return (codes::UNKNOWN_MEMBER_ID, Vec::new());
        }
        (codes::NONE, self.remove_member(&id, now))
    }

    /// Checks whether `member_id` may commit offsets at `generation`.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(codes::COORDINATOR_NOT_AVAILABLE);
        }
        if generation < 0 && self.state == GroupState::Empty {
            // A standalone consumer that only uses the group to store offsets.
            return Ok(());
        }
        if self.pending.contains_key(member_id) {
            return Err(codes::UNKNOWN_MEMBER_ID);
        }
        if let Some(code) = self.fenced(member_id, instance_id) {
            return Err(code);
        }
        if !self.members.contains_key(member_id) {
            return Err(codes::UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return Err(codes::ILLEGAL_GENERATION);
        }
        match self.state {
            GroupState::CompletingRebalance => Err(codes::REBALANCE_IN_PROGRESS),
            // PreparingRebalance is allowed: consumers commit what they processed while
            // revoking partitions, before rejoining.
            _ => {
                self.touch(member_id, now);
                Ok(())
            }
        }
    }

    /// Expires pending members and sessions, and completes a rebalance whose deadline passed.
    pub fn tick(&mut self, now: Instant) -> Fx {
        let mut fx = Vec::new();
        let before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        if self.pending.len() != before && self.state == GroupState::PreparingRebalance {
            fx.extend(self.maybe_complete_join(now));
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.session_deadline().is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            fx.extend(self.remove_member(&id, now));
        }
        if self.state == GroupState::PreparingRebalance
            && self.rebalance_deadline.is_some_and(|d| d <= now)
        {
            match self.initial_delay_remaining {
                Some(remaining) if self.new_member_added && !remaining.is_zero() => {
                    // More members arrived during the initial delay: wait another round,
                    // within the rebalance timeout.
                    let step = remaining.min(self.initial_delay);
                    self.initial_delay_remaining = Some(remaining - step);
                    self.new_member_added = false;
                    self.rebalance_deadline = Some(now + step);
                }
                _ => fx.extend(self.complete_join(now)),
            }
        }
        fx
    }

    /// The earliest instant at which [`Group::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let rebalance = match self.state {
            GroupState::PreparingRebalance => self.rebalance_deadline,
            _ => None,
        };
        self.pending
            .values()
            .copied()
            .chain(rebalance)
            .chain(self.members.values().filter_map(Member::session_deadline))
            .min()
    }

    // ---- internals ----

    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        let instance = instance_id?;
        match self.static_members.get(instance) {
            Some(current) if current != member_id => Some(codes::FENCED_INSTANCE_ID),
            _ => None,
        }
    }

    /// Whether a member (`member_id`, empty for a new one) with these protocols fits the
    /// group: same protocol type, and at least one protocol every *other* member supports (a
    /// sole member may change its protocols freely).
    fn supports(
        &self,
        member_id: &str,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.id != member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == name))
        })
    }

    fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        a: JoinArgs,
        now: Instant,
    ) -> (JoinStep, Fx) {
        if self.members.is_empty() {
            self.protocol_type = Some(a.protocol_type.clone());
        }
        if let Some(instance) = &a.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: a.instance_id,
                client_id: a.client_id,
                client_host: a.client_host,
                protocol_type: a.protocol_type,
                protocols: a.protocols,
                session_timeout: Duration::from_millis(a.session_timeout_ms.max(0) as u64),
                rebalance_timeout: Duration::from_millis(a.rebalance_timeout_ms.max(0) as u64),
                assignment: Bytes::new(),
                awaiting_join: true,
                awaiting_sync: false,
                last_heartbeat: now,
                seq,
            },
        );
        self.new_member_added = true;
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        let fx = self.rebalance(now, "new member");
        (JoinStep::Wait { member_id: id }, fx)
    }

    fn update_member(&mut self, a: JoinArgs, now: Instant) {
        if let Some(m) = self.members.get_mut(&a.member_id) {
            m.protocols = a.protocols;
            m.protocol_type = a.protocol_type;
            m.session_timeout = Duration::from_millis(a.session_timeout_ms.max(0) as u64);
            m.rebalance_timeout = Duration::from_millis(a.rebalance_timeout_ms.max(0) as u64);
            m.client_id = a.client_id;
            m.client_host = a.client_host;
            m.awaiting_join = true;
            m.last_heartbeat = now;
        }
    }

    /// A static member came back with a new incarnation (empty member id, known instance id).
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        a: JoinArgs,
        now: Instant,
    ) -> (JoinStep, Fx) {
        let Some(mut member) = self.members.remove(old_id) else {
            return self.add_member_and_rebalance(new_id, a, now);
        };
        let mut fx = Vec::new();
        if member.awaiting_join {
            fx.push(Effect::Join(JoinResult::error(
                codes::FENCED_INSTANCE_ID,
                old_id,
            )));
        }
        if member.awaiting_sync {
            fx.push(Effect::Sync {
                member_id: old_id.to_string(),
                result: SyncResult::error(codes::FENCED_INSTANCE_ID),
            });
        }
        let unchanged = member.same_protocols(&a.protocols);
        member.id = new_id.clone();
        member.awaiting_join = false;
        member.awaiting_sync = false;
        member.last_heartbeat = now;
        if let Some(instance) = &a.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        let was_leader = self.leader.as_deref() == Some(old_id);
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        if self.state == GroupState::Stable && unchanged && !was_leader {
            // Same subscription: keep the current assignment, no rebalance (the point of
            // static membership). The member syncs and gets its old assignment back.
            return (JoinStep::Reply(self.join_result(&new_id)), fx);
        }
        let a = JoinArgs {
            member_id: new_id.clone(),
            ..a
        };
        self.update_member(a, now);
        fx.extend(self.rebalance(now, "static member rejoined"));
        (JoinStep::Wait { member_id: new_id }, fx)
    }

    /// Starts a rebalance if the state allows one, then completes the join if nobody is
    /// missing.
    fn rebalance(&mut self, now: Instant, reason: &str) -> Fx {
        if self.state != GroupState::PreparingRebalance {
            tracing::info!(group = %self.id, generation = self.generation, state = self.state.as_str(), reason, "rebalance");
        }
        let mut fx = Vec::new();
        match self.state {
            GroupState::CompletingRebalance => {
                // Members waiting for the old generation's assignment must rejoin.
                for m in self.members.values_mut() {
                    m.assignment = Bytes::new();
                    if m.awaiting_sync {
                        m.awaiting_sync = false;
                        m.last_heartbeat = now;
                        fx.push(Effect::Sync {
                            member_id: m.id.clone(),
                            result: SyncResult::error(codes::REBALANCE_IN_PROGRESS),
                        });
                    }
                }
                self.prepare(now, false);
            }
            GroupState::Stable => self.prepare(now, false),
            GroupState::Empty => self.prepare(now, true),
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
        fx.extend(self.maybe_complete_join(now));
        fx
    }

    fn prepare(&mut self, now: Instant, from_empty: bool) {
        let timeout = self.max_rebalance_timeout();
        let step = self.initial_delay.min(timeout);
        if from_empty && !step.is_zero() {
            self.initial_delay_remaining = Some(timeout.saturating_sub(step));
            self.new_member_added = false;
            self.rebalance_deadline = Some(now + step);
        } else {
            self.initial_delay_remaining = None;
            self.rebalance_deadline = Some(now + timeout);
        }
        tracing::debug!(group = %self.id, generation = self.generation, "preparing rebalance");
        self.state = GroupState::PreparingRebalance;
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    fn maybe_complete_join(&mut self, now: Instant) -> Fx {
        let all_joined = self.members.values().all(|m| m.awaiting_join) && self.pending.is_empty();
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay_remaining.is_none()
            && all_joined
        {
            self.complete_join(now)
        } else {
            Vec::new()
        }
    }

    fn complete_join(&mut self, now: Instant) -> Fx {
        // Dynamic members that did not rejoin in time are out. Static members stay: they are
        // expected back under the same instance id and keep their place until their session
        // expires.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time");
            self.drop_member(id);
        }
        self.rebalance_deadline = None;
        self.initial_delay_remaining = None;
        self.new_member_added = false;
        self.generation += 1;
        let leader_ok = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.awaiting_join);
        if !leader_ok {
            let leader = self
                .members()
                .find(|m| m.awaiting_join)
                .or_else(|| self.members().next())
                .map(|m| m.id.clone());
            self.leader = leader;
        }
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            tracing::info!(group = %self.id, generation = self.generation, "group is empty");
            return Vec::new();
        }
        self.protocol_name = Some(self.select_protocol());
        self.state = GroupState::CompletingRebalance;
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = ?self.protocol_name,
            leader = ?self.leader,
            "rebalance: join phase complete"
        );
        let joined: Vec<String> = self
            .members()
            .filter(|m| m.awaiting_join)
            .map(|m| m.id.clone())
            .collect();
        let mut fx = Vec::new();
        for id in joined {
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = Bytes::new();
                m.awaiting_join = false;
                m.last_heartbeat = now;
            }
            fx.push(Effect::Join(self.join_result(&id)));
        }
        fx
    }

    /// The protocol every member supports that most members prefer; ties go to the
    /// leader's preference order.
    fn select_protocol(&self) -> String {
        let ordered: Vec<&Member> = self.members().collect();
        let leader = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or(ordered.first().copied());
        let Some(leader) = leader else {
            return String::new();
        };
        let candidates: Vec<&str> = leader
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| {
                ordered
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect();
        let mut best: Option<(&str, usize)> = None;
        for c in &candidates {
            let votes = ordered
                .iter()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(p, _)| p.as_str())
                        .find(|p| candidates.contains(p))
                        == Some(*c)
                })
                .count();
            if best.is_none_or(|(_, v)| votes > v) {
                best = Some((c, votes));
            }
        }
        best.map(|(c, _)| c.to_string())
            .or_else(|| leader.protocols.first().map(|(n, _)| n.clone()))
            .unwrap_or_default()
    }

    /// The JoinGroup answer for `member_id` in the current generation.
    fn join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: codes::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    fn sync_ok(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: codes::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Removes a member without touching the group state.
    fn drop_member(&mut self, id: &str) -> Option<Member> {
        let m = self.members.remove(id)?;
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(id) {
            let next = self.members().next().map(|m| m.id.clone());
            self.leader = next;
        }
        Some(m)
    }

    /// Removes a member that left or expired and rebalances the rest.
    fn remove_member(&mut self, id: &str, now: Instant) -> Fx {
        let Some(m) = self.drop_member(id) else {
            return Vec::new();
        };
        let mut fx = Vec::new();
        if m.awaiting_join {
            fx.push(Effect::Join(JoinResult::error(
                codes::UNKNOWN_MEMBER_ID,
                id,
            )));
        }
        if m.awaiting_sync {
            fx.push(Effect::Sync {
                member_id: id.to_string(),
                result: SyncResult::error(codes::UNKNOWN_MEMBER_ID),
            });
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                fx.extend(self.rebalance(now, "member removed"))
            }
            GroupState::PreparingRebalance => fx.extend(self.maybe_complete_join(now)),
            GroupState::Empty | GroupState::Dead => {}
        }
        fx
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SESSION: i32 = 10_000;
    const REBALANCE: i32 = 30_000;

    fn limits(initial_delay_ms: u64) -> Limits {
        Limits {
            min_session_timeout: Duration::from_millis(6_000),
            max_session_timeout: Duration::from_millis(300_000),
            initial_rebalance_delay: Duration::from_millis(initial_delay_ms),
        }
    }

    fn args(member_id: &str, protocols: &[&str]) -> JoinArgs {
        JoinArgs {
            member_id: member_id.to_string(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta:{p}"))))
                .collect(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            require_known_member_id: false,
        }
    }

    fn joins(fx: &[Effect]) -> Vec<&JoinResult> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Join(r) => Some(r),
                Effect::Sync { .. } => None,
            })
            .collect()
    }

    fn syncs(fx: &[Effect]) -> Vec<(&str, &SyncResult)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Sync { member_id, result } => Some((member_id.as_str(), result)),
                Effect::Join(_) => None,
            })
            .collect()
    }

    /// A group with members `ids` (joined in that order, no initial delay), Stable, with each
    /// member assigned its own id as bytes.
    fn stable_group(ids: &[&str], now: Instant) -> Group {
        let l = limits(0);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        for id in ids {
            let (step, _) = g.join(args("", &["range"]), id.to_string(), &l, now);
            assert!(matches!(step, JoinStep::Wait { .. }));
        }
        // Later joiners made the group wait for the first one to rejoin; let them all rejoin.
        let mut fx = Vec::new();
        if g.state == GroupState::PreparingRebalance {
            for id in ids {
                let (_, f) = g.join(args(id, &["range"]), String::new(), &l, now);
                fx.extend(f);
            }
        }
        assert_eq!(g.state, GroupState::CompletingRebalance);
        let leader = g.leader.clone().unwrap();
        let assignments = ids
            .iter()
            .map(|id| (id.to_string(), Bytes::from(id.to_string())))
            .collect();
        let (_, fx) = g.sync(&leader, None, g.generation, None, None, assignments, now);
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(syncs(&fx).len(), 1);
        g
    }

    #[test]
    fn first_member_waits_for_the_initial_delay_and_becomes_leader() {
        let now = Instant::now();
        let l = limits(3_000);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        let (step, fx) = g.join(args("", &["range"]), "m1".into(), &l, now);
        assert_eq!(
            step,
            JoinStep::Wait {
                member_id: "m1".into()
            }
        );
        assert!(fx.is_empty());
        assert_eq!(g.state, GroupState::PreparingRebalance);
        // Nothing before the delay...
        assert!(g.tick(now + Duration::from_millis(2_999)).is_empty());
        assert_eq!(g.next_deadline(), Some(now + Duration::from_millis(3_000)));
        // ...then the join completes with m1 as leader of generation 1.
        let fx = g.tick(now + Duration::from_millis(3_000));
        let j = joins(&fx);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].error, codes::NONE);
        assert_eq!(j[0].generation, 1);
        assert_eq!(j[0].leader, "m1");
        assert_eq!(j[0].protocol_name.as_deref(), Some("range"));
        assert_eq!(j[0].protocol_type.as_deref(), Some("consumer"));
        assert_eq!(j[0].members.len(), 1);
        assert_eq!(j[0].members[0].metadata, Bytes::from("meta:range"));
        assert_eq!(g.state, GroupState::CompletingRebalance);
    }

    #[test]
    fn initial_delay_is_extended_while_members_keep_arriving() {
        let now = Instant::now();
        let l = limits(3_000);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        g.join(args("", &["range"]), "m1".into(), &l, now);
        g.join(
            args("", &["range"]),
            "m2".into(),
            &l,
            now + Duration::from_millis(2_000),
        );
        // m2 arrived during the first delay: another round.
        assert!(g.tick(now + Duration::from_millis(3_000)).is_empty());
        let fx = g.tick(now + Duration::from_millis(6_000));
        let j = joins(&fx);
        assert_eq!(j.len(), 2);
        assert!(j.iter().all(|r| r.generation == 1 && r.leader == "m1"));
        let leader = j.iter().find(|r| r.member_id == "m1").unwrap();
        assert_eq!(leader.members.len(), 2);
        let follower = j.iter().find(|r| r.member_id == "m2").unwrap();
        assert!(follower.members.is_empty());
    }

    #[test]
    fn v4_join_without_member_id_gets_member_id_required() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        let mut a = args("", &["range"]);
        a.require_known_member_id = true;
        let (step, _) = g.join(a.clone(), "m1".into(), &l, now);
        assert_eq!(
            step,
            JoinStep::Reply(JoinResult::error(codes::MEMBER_ID_REQUIRED, "m1"))
        );
        assert!(g.has_pending("m1"));
        assert_eq!(g.state, GroupState::Empty);
        // Rejoining with the id completes at once (no initial delay configured).
        a.member_id = "m1".into();
        let (step, fx) = g.join(a, "unused".into(), &l, now);
        assert_eq!(
            step,
            JoinStep::Wait {
                member_id: "m1".into()
            }
        );
        assert_eq!(joins(&fx)[0].generation, 1);
        assert!(!g.has_pending("m1"));
    }

    #[test]
    fn pending_member_that_never_returns_expires() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        let mut a = args("", &["range"]);
        a.require_known_member_id = true;
        g.join(a.clone(), "m1".into(), &l, now);
        g.tick(now + Duration::from_millis(SESSION as u64));
        assert!(!g.has_pending("m1"));
        a.member_id = "m1".into();
        let (step, _) = g.join(a, String::new(), &l, now);
        assert_eq!(
            step,
            JoinStep::Reply(JoinResult::error(codes::UNKNOWN_MEMBER_ID, "m1"))
        );
    }

    #[test]
    fn session_timeout_outside_limits_is_refused() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        for bad in [5_999, 300_001, -1] {
            let mut a = args("", &["range"]);
            a.session_timeout_ms = bad;
            let (step, _) = g.join(a, "m".into(), &l, now);
            assert_eq!(
                step,
                JoinStep::Reply(JoinResult::error(codes::INVALID_SESSION_TIMEOUT, ""))
            );
        }
        assert!(g.is_empty());
    }

    #[test]
    fn protocol_is_the_common_one_most_members_prefer() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        g.join(
            args("", &["range", "roundrobin", "sticky"]),
            "a".into(),
            &l,
            now,
        );
        g.join(args("", &["sticky", "roundrobin"]), "b".into(), &l, now);
        g.join(args("", &["roundrobin", "sticky"]), "c".into(), &l, now);
        // a rejoins (its first join was answered when it was alone)
        let (_, fx) = g.join(
            args("a", &["range", "roundrobin", "sticky"]),
            String::new(),
            &l,
            now,
        );
        let j = joins(&fx);
        assert_eq!(j.len(), 3);
        // Common: roundrobin, sticky. Votes: a→roundrobin, b→sticky, c→roundrobin.
        assert_eq!(j[0].protocol_name.as_deref(), Some("roundrobin"));
        let leader = j.iter().find(|r| r.member_id == r.leader).unwrap();
        let b = leader.members.iter().find(|m| m.member_id == "b").unwrap();
        assert_eq!(b.metadata, Bytes::from("meta:roundrobin"));
    }

    #[test]
    fn member_without_a_common_protocol_is_refused() {
        let now = Instant::now();
        let g0 = stable_group(&["a"], now);
        let mut g = g0.clone();
        let (step, _) = g.join(args("", &["sticky"]), "b".into(), &limits(0), now);
        assert_eq!(
            step,
            JoinStep::Reply(JoinResult::error(codes::INCONSISTENT_GROUP_PROTOCOL, ""))
        );
        let mut other_type = args("", &["range"]);
        other_type.protocol_type = "connect".into();
        let (step, _) = g.join(other_type, "b".into(), &limits(0), now);
        assert_eq!(
            step,
            JoinStep::Reply(JoinResult::error(codes::INCONSISTENT_GROUP_PROTOCOL, ""))
        );
    }

    #[test]
    fn sole_member_may_change_its_protocols() {
        let now = Instant::now();
        let mut g = stable_group(&["a"], now);
        let (step, fx) = g.join(args("a", &["sticky"]), String::new(), &limits(0), now);
        assert_eq!(
            step,
            JoinStep::Wait {
                member_id: "a".into()
            }
        );
        assert_eq!(joins(&fx)[0].protocol_name.as_deref(), Some("sticky"));
    }

    #[test]
    fn follower_sync_waits_for_the_leader_assignment() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        g.join(args("", &["range"]), "a".into(), &l, now);
        g.join(args("", &["range"]), "b".into(), &l, now);
        let (_, fx) = g.join(args("a", &["range"]), String::new(), &l, now);
        assert_eq!(joins(&fx).len(), 2);
        let generation = g.generation;
        let (step, fx) = g.sync("b", None, generation, None, None, vec![], now);
        assert_eq!(step, SyncStep::Wait);
        assert!(fx.is_empty());
        let assignments = vec![
            ("a".to_string(), Bytes::from_static(b"A")),
            ("b".to_string(), Bytes::from_static(b"B")),
        ];
        let (step, fx) = g.sync(
            "a",
            None,
            generation,
            Some("consumer"),
            Some("range"),
            assignments,
            now,
        );
        assert_eq!(step, SyncStep::Wait);
        let s = syncs(&fx);
        assert_eq!(s.len(), 2);
        let b = s.iter().find(|(m, _)| *m == "b").unwrap().1;
        assert_eq!(b.assignment, Bytes::from_static(b"B"));
        assert_eq!(b.protocol_name.as_deref(), Some("range"));
        assert_eq!(g.state, GroupState::Stable);
        // A late SyncGroup in Stable gets the stored assignment at once.
        let (step, _) = g.sync("a", None, generation, None, None, vec![], now);
        match step {
            SyncStep::Reply(r) => assert_eq!(r.assignment, Bytes::from_static(b"A")),
            SyncStep::Wait => panic!("stable group must answer at once"),
        }
    }

    #[test]
    fn sync_errors() {
        let now = Instant::now();
        let mut g = stable_group(&["a"], now);
        let gen = g.generation;
        let err = |step: SyncStep| match step {
            SyncStep::Reply(r) => r.error,
            SyncStep::Wait => 0,
        };
        assert_eq!(
            err(g.sync("zz", None, gen, None, None, vec![], now).0),
            codes::UNKNOWN_MEMBER_ID
        );
        assert_eq!(
            err(g.sync("a", None, gen + 1, None, None, vec![], now).0),
            codes::ILLEGAL_GENERATION
        );
        assert_eq!(
            err(g
                .sync(
                    "a",
                    None,
                    gen,
                    Some("consumer"),
                    Some("sticky"),
                    vec![],
                    now
                )
                .0),
            codes::INCONSISTENT_GROUP_PROTOCOL
        );
    }

    #[test]
    fn heartbeat_errors_follow_the_group_state() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = stable_group(&["a", "b"], now);
        let gen = g.generation;
        assert_eq!(g.heartbeat("a", None, gen, now), codes::NONE);
        assert_eq!(g.heartbeat("zz", None, gen, now), codes::UNKNOWN_MEMBER_ID);
        assert_eq!(
            g.heartbeat("a", None, gen - 1, now),
            codes::ILLEGAL_GENERATION
        );
        // A new member triggers a rebalance: the others learn it from their heartbeat.
        g.join(args("", &["range"]), "c".into(), &l, now);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat("a", None, gen, now),
            codes::REBALANCE_IN_PROGRESS
        );
    }

    #[test]
    fn rebalance_timeout_drops_members_that_did_not_rejoin() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = stable_group(&["a", "b"], now);
        let gen = g.generation;
        // a rejoins (e.g. subscription change) but b never does; b keeps heartbeating.
        let (step, _) = g.join(args("a", &["range", "roundrobin"]), String::new(), &l, now);
        assert!(matches!(step, JoinStep::Wait { .. }));
        let half = now + Duration::from_millis(5_000);
        assert_eq!(
            g.heartbeat("b", None, gen, half),
            codes::REBALANCE_IN_PROGRESS
        );
        assert!(g.tick(half).is_empty());
        let fx = g.tick(now + Duration::from_millis(REBALANCE as u64));
        let j = joins(&fx);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].member_id, "a");
        assert_eq!(j[0].generation, gen + 1);
        assert_eq!(j[0].members.len(), 1);
        assert!(g.member("b").is_none());
    }

    #[test]
    fn expired_member_is_removed_and_the_rest_rebalance() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = stable_group(&["a", "b"], now);
        let gen = g.generation;
        // a heartbeats, b goes silent.
        let t1 = now + Duration::from_millis(6_000);
        assert_eq!(g.heartbeat("a", None, gen, t1), codes::NONE);
        assert_eq!(
            g.next_deadline(),
            Some(now + Duration::from_millis(SESSION as u64))
        );
        let t2 = now + Duration::from_millis(SESSION as u64);
        let fx = g.tick(t2);
        assert!(fx.is_empty());
        assert!(g.member("b").is_none());
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat("a", None, gen, t2),
            codes::REBALANCE_IN_PROGRESS
        );
        let (_, fx) = g.join(args("a", &["range"]), String::new(), &l, t2);
        let j = joins(&fx);
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].generation, gen + 1);
        assert_eq!(j[0].leader, "a");
    }

    #[test]
    fn leader_leaving_moves_leadership_and_empties_the_group_last() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = stable_group(&["a", "b"], now);
        let gen = g.generation;
        assert_eq!(g.leader.as_deref(), Some("a"));
        let (code, fx) = g.leave("a", None, now);
        assert_eq!(code, codes::NONE);
        assert!(fx.is_empty());
        let (_, fx) = g.join(args("b", &["range"]), String::new(), &l, now);
        let j = joins(&fx);
        assert_eq!(j[0].leader, "b");
        assert_eq!(j[0].generation, gen + 1);
        assert_eq!(g.leave("a", None, now).0, codes::UNKNOWN_MEMBER_ID);
        let (code, _) = g.leave("b", None, now);
        assert_eq!(code, codes::NONE);
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(g.generation, gen + 2);
        assert!(g.protocol_name.is_none());
        assert_eq!(g.protocol_type.as_deref(), Some("consumer"));
    }

    #[test]
    fn rebalance_during_completing_fails_waiting_syncs() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        g.join(args("", &["range"]), "a".into(), &l, now);
        g.join(args("", &["range"]), "b".into(), &l, now);
        g.join(args("a", &["range"]), String::new(), &l, now);
        let gen = g.generation;
        let (step, _) = g.sync("b", None, gen, None, None, vec![], now);
        assert_eq!(step, SyncStep::Wait);
        let (_, fx) = g.leave("a", None, now);
        let s = syncs(&fx);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, "b");
        assert_eq!(s[0].1.error, codes::REBALANCE_IN_PROGRESS);
        assert_eq!(g.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn commit_checks() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = stable_group(&["a"], now);
        let gen = g.generation;
        assert_eq!(g.check_commit("a", None, gen, now), Ok(()));
        assert_eq!(
            g.check_commit("zz", None, gen, now),
            Err(codes::UNKNOWN_MEMBER_ID)
        );
        assert_eq!(
            g.check_commit("a", None, gen + 1, now),
            Err(codes::ILLEGAL_GENERATION)
        );
        assert_eq!(
            g.check_commit("", None, -1, now),
            Err(codes::UNKNOWN_MEMBER_ID)
        );
        // Allowed while preparing a rebalance (commit on revoke), refused while completing.
        g.join(args("", &["range"]), "b".into(), &l, now);
        assert_eq!(g.check_commit("a", None, gen, now), Ok(()));
        g.join(args("a", &["range"]), String::new(), &l, now);
        assert_eq!(g.state, GroupState::CompletingRebalance);
        assert_eq!(
            g.check_commit("a", None, g.generation, now),
            Err(codes::REBALANCE_IN_PROGRESS)
        );
        // Standalone commits only when nobody uses the group.
        let mut empty = Group::new("e", Duration::ZERO);
        assert_eq!(empty.check_commit("", None, -1, now), Ok(()));
    }

    #[test]
    fn static_member_restart_keeps_its_assignment_without_rebalance() {
        let now = Instant::now();
        let l = limits(0);
        let mut g = Group::new("g", l.initial_rebalance_delay);
        let mut a = args("", &["range"]);
        a.instance_id = Some("host-a".into());
        let mut b = args("", &["range"]);
        b.instance_id = Some("host-b".into());
        g.join(a.clone(), "a1".into(), &l, now);
        g.join(b.clone(), "b1".into(), &l, now);
        let mut a_again = a.clone();
        a_again.member_id = "a1".into();
        g.join(a_again, String::new(), &l, now);
        let gen = g.generation;
        g.sync("b1", None, gen, None, None, vec![], now);
        let assignments = vec![
            ("a1".to_string(), Bytes::from_static(b"A")),
            ("b1".to_string(), Bytes::from_static(b"B")),
        ];
        g.sync("a1", None, gen, None, None, assignments, now);
        assert_eq!(g.state, GroupState::Stable);

        // host-b restarts: new incarnation, empty member id, same instance id.
        let (step, fx) = g.join(b, "b2".into(), &l, now);
        assert!(fx.is_empty());
        let JoinStep::Reply(r) = step else {
            panic!("static rejoin must answer at once")
        };
        assert_eq!(r.member_id, "b2");
        assert_eq!(r.generation, gen);
        assert_eq!(g.state, GroupState::Stable);
        let (step, _) = g.sync("b2", Some("host-b"), gen, None, None, vec![], now);
        let SyncStep::Reply(s) = step else {
            panic!("stable group must answer at once")
        };
        assert_eq!(s.assignment, Bytes::from_static(b"B"));
        // The old incarnation is fenced.
        assert_eq!(
            g.heartbeat("b1", Some("host-b"), gen, now),
            codes::FENCED_INSTANCE_ID
        );
        assert_eq!(g.heartbeat("b2", Some("host-b"), gen, now), codes::NONE);
        // Leaving by instance id alone works.
        assert_eq!(g.leave("", Some("host-b"), now).0, codes::NONE);
        assert!(g.member("b2").is_none());
    }
}
