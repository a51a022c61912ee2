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
//!
//! This file holds the types and the transitions a request or the timer makes; `members.rs`
//! holds who is in the group (fencing, compatibility, adding and removing members) and
//! `rebalance.rs` the rebalance itself (prepare, complete the join, choose leader and protocol).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::codes;
use super::records::{MemberRecord, Membership};

mod members;
#[cfg(test)]
pub(crate) use members::subscription_topics;
mod rebalance;

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

/// A member handed over from a consumer group ([`Group::adopt`]).
#[derive(Debug, Clone)]
pub struct AdoptedMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// A ConsumerProtocolAssignment.
    pub assignment: Bytes,
    /// Its member epoch in the consumer group (the generation it knows).
    pub generation: i32,
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
    /// Members handed over from a consumer group ([`Group::adopt`]) with the generation
    /// (member epoch) each had there: accepted until the rebalance that follows completes.
    adopted: HashMap<String, i32>,
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
            adopted: HashMap::new(),
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        let mut v: Vec<&Member> = self.members.values().collect();
        v.sort_by_key(|m| m.seq);
        v.into_iter()
    }

    /// Member ids, in id order (no allocation, unlike [`Group::members`]).
    pub fn member_ids(&self) -> impl Iterator<Item = &String> {
        self.members.keys()
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
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

    /// A classic group made from the members of a consumer group that only classic members
    /// are left in (the online downgrade, see `consumer/classic.rs`): at `generation`, each
    /// member with the assignment it has, and a rebalance started at once, so every member
    /// rejoins and the leader's assignor takes over from the coordinator's.
    pub fn adopt(
        id: &str,
        generation: i32,
        members: Vec<AdoptedMember>,
        initial_delay: Duration,
        now: Instant,
    ) -> Group {
        let mut g = Group::new(id, initial_delay);
        // The newest member epoch: members reconciled to it heartbeat on at their generation
        // (and hear REBALANCE_IN_PROGRESS); the others' epochs are accepted until the
        // rebalance completes, so none is refused as being of an illegal generation.
        g.generation = members
            .iter()
            .map(|m| m.generation)
            .max()
            .unwrap_or(generation);
        g.protocol_type = Some("consumer".to_string());
        for a in members {
            g.adopted.insert(a.id.clone(), a.generation);
            if let Some(instance) = &a.instance_id {
                g.static_members.insert(instance.clone(), a.id.clone());
            }
            let seq = g.next_seq;
            g.next_seq += 1;
            g.members.insert(
                a.id.clone(),
                Member {
                    id: a.id,
                    instance_id: a.instance_id,
                    client_id: a.client_id,
                    client_host: a.client_host,
                    protocol_type: "consumer".to_string(),
                    protocols: a.protocols,
                    session_timeout: a.session_timeout,
                    rebalance_timeout: a.rebalance_timeout,
                    assignment: a.assignment,
                    awaiting_join: false,
                    awaiting_sync: false,
                    last_heartbeat: now,
                    seq,
                },
            );
        }
        let leader = g.members().next().map(|m| m.id.clone());
        g.leader = leader;
        g.protocol_name = Some(g.select_protocol());
        g.state = GroupState::Stable;
        // Nobody waits on this group yet, so the rebalance answers nothing.
        let _ = g.rebalance(now, "converted from a consumer group");
        g
    }

    /// The group's membership record while it is stable with members (what the next
    /// coordinator restores); `None` otherwise.
    pub fn membership(&self, now_ms: i64) -> Option<Membership> {
        if self.state != GroupState::Stable || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol_name.clone();
        Some(Membership {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: now_ms,
            members: self
                .members()
                .map(|m| MemberRecord {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: i32::try_from(m.rebalance_timeout.as_millis())
                        .unwrap_or(i32::MAX),
                    session_timeout_ms: i32::try_from(m.session_timeout.as_millis())
                        .unwrap_or(i32::MAX),
                    subscription: m.metadata_for(protocol.as_deref().unwrap_or_default()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// A group as a previous coordinator left it ([`Group::membership`]): stable at its
    /// generation, every member with its assignment, each session counted from `now` (the
    /// members find this coordinator and heartbeat on without rejoining; one that does not
    /// come back expires, and the group rebalances as usual).
    pub fn restore(id: &str, m: &Membership, initial_delay: Duration, now: Instant) -> Group {
        let mut g = Group::new(id, initial_delay);
        g.generation = m.generation;
        g.protocol_type = Some(m.protocol_type.clone());
        g.protocol_name = m.protocol.clone();
        g.leader = m.leader.clone();
        for r in &m.members {
            if let Some(instance) = &r.instance_id {
                g.static_members
                    .insert(instance.clone(), r.member_id.clone());
            }
            let seq = g.next_seq;
            g.next_seq += 1;
            g.members.insert(
                r.member_id.clone(),
                Member {
                    id: r.member_id.clone(),
                    instance_id: r.instance_id.clone(),
                    client_id: r.client_id.clone(),
                    client_host: r.client_host.clone(),
                    protocol_type: m.protocol_type.clone(),
                    protocols: vec![(
                        m.protocol.clone().unwrap_or_default(),
                        r.subscription.clone(),
                    )],
                    session_timeout: Duration::from_millis(r.session_timeout_ms.max(0) as u64),
                    rebalance_timeout: Duration::from_millis(r.rebalance_timeout_ms.max(0) as u64),
                    assignment: r.assignment.clone(),
                    awaiting_join: false,
                    awaiting_sync: false,
                    last_heartbeat: now,
                    seq,
                },
            );
        }
        let leader_known = g.leader.as_ref().is_some_and(|l| g.members.contains_key(l));
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            if !leader_known {
                let oldest = g.members().next().map(|x| x.id.clone());
                g.leader = oldest;
            }
            GroupState::Stable
        };
        g
    }

    /// Whether `generation` is `member_id`'s: the group's, or the one it had in the consumer
    /// group this group was made from, until the rebalance that followed completes.
    fn generation_ok(&self, member_id: &str, generation: i32) -> bool {
        generation == self.generation
            || (self.state == GroupState::PreparingRebalance
                && self.adopted.get(member_id) == Some(&generation))
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
        if !self.generation_ok(member_id, generation) {
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
        if !self.generation_ok(member_id, generation) {
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
        if !self.generation_ok(member_id, generation) {
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
}

#[cfg(test)]
mod tests;
