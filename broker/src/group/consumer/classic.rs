//! Classic members inside a consumer group: Kafka 4.x's online migration between the classic
//! protocol (JoinGroup / SyncGroup / Heartbeat / LeaveGroup, the client's assignor) and the
//! consumer protocol (ConsumerGroupHeartbeat, the coordinator's assignor) within one group id,
//! so an application can roll its consumers from one protocol to the other (and back)
//! without stopping the group.
//!
//! - **Upgrade**: the first consumer-protocol member of a classic `consumer` group with members
//!   turns it into a consumer group ([`ConsumerGroup::from_classic`]): the group epoch is the
//!   generation, every classic member keeps its assignment at that epoch and stays a classic
//!   member. Its requests are then served here.
//! - A **classic member of a consumer group** gets its partitions from the coordinator's
//!   assignor like any member. Its JoinGroup is its heartbeat with a subscription: the
//!   subscription and the partitions it still owns come from its ConsumerProtocolSubscription
//!   metadata, it is answered at once (as a follower, no member list to assign), and SyncGroup
//!   hands it its assignment as a ConsumerProtocolAssignment. The generation is its member
//!   epoch. It learns that its assignment must change from REBALANCE_IN_PROGRESS on Heartbeat,
//!   and revokes the classic way: a cooperative member gives up what SyncGroup no longer lists
//!   and rejoins, an eager member gives up everything before it rejoins; either way a
//!   partition is handed to another member only once its JoinGroup no longer claims it.
//! - **Downgrade**: when the last consumer-protocol member leaves, the classic members left
//!   become a classic group again ([`ConsumerGroup::to_classic`]) that rebalances at once, so
//!   their own assignor takes over.
//!
//! Kafka's error codes and messages for each step are kept, since clients act on them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use tokio::time::Instant;

use super::super::codes;
use super::super::state::{AdoptedMember, Group, JoinArgs, JoinResult, SyncResult};
use super::{
    intersect, Assignment, ConsumerGroup, ConsumerSettings, Member, MemberState, Resolve,
    TopicsMeta,
};

const PROTOCOL_TYPE: &str = "consumer";

/// Which way a group id may change protocol while it has members (Kafka's
/// `group.consumer.migration.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    Bidirectional,
    Upgrade,
    Downgrade,
    Disabled,
}

impl MigrationPolicy {
    pub fn parse(s: &str) -> Option<MigrationPolicy> {
        match s.to_ascii_lowercase().as_str() {
            "bidirectional" => Some(MigrationPolicy::Bidirectional),
            "upgrade" => Some(MigrationPolicy::Upgrade),
            "downgrade" => Some(MigrationPolicy::Downgrade),
            "disabled" => Some(MigrationPolicy::Disabled),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MigrationPolicy::Bidirectional => "bidirectional",
            MigrationPolicy::Upgrade => "upgrade",
            MigrationPolicy::Downgrade => "downgrade",
            MigrationPolicy::Disabled => "disabled",
        }
    }

    pub fn upgrades(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Upgrade
        )
    }

    pub fn downgrades(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Bidirectional | MigrationPolicy::Downgrade
        )
    }
}

/// What a classic member brings: its protocols and session timeout, and the two deadlines of
/// the classic protocol (the consumer protocol's revocation deadline does not apply to it).
#[derive(Debug, Clone)]
pub struct ClassicMember {
    pub session_timeout: Duration,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// Told REBALANCE_IN_PROGRESS: it must send JoinGroup by then.
    join_by: Option<Instant>,
    /// Answered its JoinGroup: it must send SyncGroup by then.
    sync_by: Option<Instant>,
}

impl ClassicMember {
    fn new(session_timeout: Duration, protocols: Vec<(String, Bytes)>) -> ClassicMember {
        ClassicMember {
            session_timeout,
            protocols,
            join_by: None,
            sync_by: None,
        }
    }

    pub(super) fn expired(&self, now: Instant) -> Option<&'static str> {
        if self.join_by.is_some_and(|d| now >= d) {
            Some("did not rejoin (JoinGroup) within its rebalance timeout")
        } else if self.sync_by.is_some_and(|d| now >= d) {
            Some("did not send SyncGroup within its rebalance timeout")
        } else {
            None
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        match (self.join_by, self.sync_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The protocol (client-side assignor name) the member is answered with: its first,
    /// which it supports by definition.
    fn protocol_name(&self) -> &str {
        self.protocols.first().map_or("", |(n, _)| n.as_str())
    }

    /// The ConsumerProtocol version the member speaks (of its first protocol's metadata).
    fn version(&self) -> i16 {
        self.protocols
            .first()
            .and_then(|(_, m)| decode_subscription(m))
            .map_or(0, |s| s.version)
    }
}

/// Partitions by topic name, as the classic protocol's messages carry them.
pub(crate) type NamedPartitions = Vec<(String, Vec<i32>)>;

/// A ConsumerProtocolSubscription, the metadata of a classic consumer's protocols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub version: i16,
    pub topics: Vec<String>,
    /// By topic name (v1+; an older member owns nothing when it joins: it is eager).
    pub owned: NamedPartitions,
    pub rack: Option<String>,
}

/// The version (i16) that starts an embedded consumer-protocol message, capped at `max`, and
/// the bytes after it; `None` when there is no valid version.
fn versioned(bytes: &Bytes, max: i16) -> Option<(i16, Bytes)> {
    let mut buf = bytes.clone();
    if buf.len() < 2 {
        return None;
    }
    let version = buf.get_i16();
    (version >= 0).then(|| (version.min(max), buf))
}

/// Reads a ConsumerProtocolSubscription: a version (i16), then the subscription at that
/// version. A newer version than the codec knows is read as the newest it knows, as Kafka's
/// `ConsumerProtocol` does (later versions only add fields at the end).
pub(crate) fn decode_subscription(metadata: &Bytes) -> Option<Subscription> {
    let (version, mut buf) = versioned(metadata, ConsumerProtocolSubscription::VERSIONS.max)?;
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(Subscription {
        version,
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned: sub
            .owned_partitions
            .iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions.clone()))
            .collect(),
        rack: sub.rack_id.as_ref().map(|r| r.to_string()),
    })
}

/// Reads a ConsumerProtocolAssignment: the partitions by topic name, and whether it carries
/// user data (a client-side assignor's own state, which the coordinator's assignor cannot
/// keep). Empty bytes are an empty assignment (a member that has not synced yet).
pub(crate) fn decode_assignment(bytes: &Bytes) -> Option<(NamedPartitions, bool)> {
    if bytes.is_empty() {
        return Some((Vec::new(), false));
    }
    let (version, mut buf) = versioned(bytes, ConsumerProtocolAssignment::VERSIONS.max)?;
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).ok()?;
    let parts = a
        .assigned_partitions
        .iter()
        .map(|tp| (tp.topic.0.to_string(), tp.partitions.clone()))
        .collect();
    Some((parts, a.user_data.is_some_and(|d| !d.is_empty())))
}

/// Writes a ConsumerProtocolAssignment at `version` (clamped to what the codec knows).
pub(crate) fn encode_assignment(parts: &[(String, Vec<i32>)], version: i16) -> Bytes {
    let version = version.clamp(0, ConsumerProtocolAssignment::VERSIONS.max);
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        parts
            .iter()
            .map(|(t, ps)| {
                AssignedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding a message built here at a version the codec knows cannot fail.
    if a.encode(&mut buf, version).is_err() {
        return Bytes::new();
    }
    buf.freeze()
}

/// Partitions by topic name as partitions by topic id (topics the cluster does not know are
/// left out).
fn by_id(parts: &[(String, Vec<i32>)], topics: &TopicsMeta) -> Assignment {
    let mut out = Assignment::new();
    for (name, ps) in parts {
        if let Some((id, _)) = topics.get(name) {
            out.entry(*id).or_default().extend(ps.iter().copied());
        }
    }
    out.retain(|_, ps| !ps.is_empty());
    out
}

impl ConsumerGroup {
    /// The consumer group a classic `consumer` group with members becomes (the upgrade):
    /// `Err` with why it cannot (Kafka's wording), answered GROUP_ID_NOT_FOUND.
    pub fn from_classic(
        classic: &Group,
        resolve: &dyn Resolve,
        now: Instant,
    ) -> Result<ConsumerGroup, String> {
        let cannot = |why: &str| {
            format!(
                "Cannot upgrade classic group {} to consumer group because {why}.",
                classic.id
            )
        };
        if classic.protocol_type.as_deref() != Some(PROTOCOL_TYPE) {
            return Err(cannot(
                "the group does not use the consumer embedded protocol",
            ));
        }
        let generation = classic.generation;
        let mut found = Vec::new();
        let mut names = BTreeSet::new();
        for m in classic.members() {
            // The metadata of the protocol the group chose (the first before it chose one).
            let metadata = classic
                .protocol_name
                .as_ref()
                .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                .or(m.protocols.first())
                .map(|(_, md)| md.clone())
                .unwrap_or_default();
            let sub = decode_subscription(&metadata)
                .ok_or_else(|| cannot("the embedded consumer protocol is malformed"))?;
            let (parts, user_data) = decode_assignment(&m.assignment)
                .ok_or_else(|| cannot("the embedded consumer protocol is malformed"))?;
            if user_data {
                return Err(cannot("an unsupported custom assignor is in use (its assignment carries user data); switch to a built-in assignor before the upgrade"));
            }
            names.extend(sub.topics.iter().cloned());
            names.extend(parts.iter().map(|(t, _)| t.clone()));
            found.push((m, sub, parts));
        }
        let all = resolve.topics(&names);
        let subscribed: BTreeSet<String> = found
            .iter()
            .flat_map(|(_, sub, _)| sub.topics.iter().cloned())
            .collect();
        let topics: TopicsMeta = all
            .iter()
            .filter(|(n, _)| subscribed.contains(*n))
            .map(|(n, v)| (n.clone(), *v))
            .collect();
        let mut group = ConsumerGroup::new(&classic.id);
        group.epoch = generation;
        group.assignment_epoch = generation;
        group.topics = topics;
        for (m, sub, parts) in found {
            let assigned = by_id(&parts, &all);
            let given_at = assigned
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| ((*t, *p), generation)))
                .collect();
            let mut subscribed_names = sub.topics.clone();
            subscribed_names.sort();
            subscribed_names.dedup();
            group.target.insert(m.id.clone(), assigned.clone());
            let mut member = Member::joining(
                &m.id,
                m.instance_id.clone(),
                (&m.client_id, &m.client_host),
                m.rebalance_timeout,
                now,
            );
            member.rack_id = sub.rack.clone();
            member.epoch = generation;
            member.previous_epoch = generation;
            member.assigned = assigned;
            member.given_at = given_at;
            member.subscribed_names = subscribed_names;
            member.classic = Some(ClassicMember::new(m.session_timeout, m.protocols.clone()));
            group.members.insert(m.id.clone(), member);
        }
        tracing::info!(group = %group.id, epoch = generation, members = group.members.len(), "classic group upgraded to a consumer group");
        Ok(group)
    }

    /// Whether every member left speaks the classic protocol (the group may go back to
    /// being a classic group).
    pub fn only_classic_members(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.classic.is_some())
    }

    /// The id of the member holding static id `instance` when it is the group's only member
    /// of the consumer protocol (the others, if any, are classic).
    pub fn last_consumer_member(&self, instance: &str) -> Option<String> {
        let holder = self
            .members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))?;
        let others_classic = self
            .members
            .values()
            .filter(|m| m.id != holder.id)
            .all(|m| m.classic.is_some());
        (holder.classic.is_none() && others_classic).then(|| holder.id.clone())
    }

    /// The classic group the classic members left become (the downgrade), rebalancing.
    pub fn to_classic(&self, initial_delay: Duration, now: Instant) -> Group {
        let members = self
            .members
            .values()
            .filter_map(|m| {
                let c = m.classic.as_ref()?;
                Some(AdoptedMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    protocols: c.protocols.clone(),
                    session_timeout: c.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    assignment: encode_assignment(&self.by_name(&m.assigned), c.version()),
                    generation: m.epoch,
                })
            })
            .collect();
        tracing::info!(group = %self.id, epoch = self.epoch, members = self.members.len(), "consumer group downgraded to a classic group");
        Group::adopt(&self.id, self.epoch, members, initial_delay, now)
    }

    /// Partitions by topic id as partitions by name (topics no longer known are left out).
    fn by_name(&self, a: &Assignment) -> NamedPartitions {
        let names: BTreeMap<_, _> = self.topics.iter().map(|(n, (id, _))| (*id, n)).collect();
        a.iter()
            .filter_map(|(id, ps)| Some(((*names.get(id)?).clone(), ps.iter().copied().collect())))
            .collect()
    }

    /// The member a classic request names: UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID (another
    /// incarnation holds the instance id) or the member's id.
    fn classic_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<String, i16> {
        let id = match instance_id {
            Some(instance) => match self.holder(instance) {
                None => return Err(codes::UNKNOWN_MEMBER_ID),
                Some(h) if h != member_id => return Err(codes::FENCED_INSTANCE_ID),
                Some(h) => h,
            },
            None => member_id.to_string(),
        };
        match self.members.get(&id) {
            Some(m) if m.classic.is_some() => Ok(id),
            _ => Err(codes::UNKNOWN_MEMBER_ID),
        }
    }

    fn holder(&self, instance: &str) -> Option<String> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.clone())
    }

    /// A classic member's JoinGroup: answered at once with its assignment's generation.
    /// `fresh_id` is the id a new member gets. The timeouts were checked by the caller.
    pub fn classic_join(
        &mut self,
        j: JoinArgs,
        fresh_id: &str,
        settings: &ConsumerSettings,
        resolve: &dyn Resolve,
        now: Instant,
    ) -> JoinResult {
        let fail = |code: i16| JoinResult::error(code, &j.member_id);
        let session_timeout = millis(j.session_timeout_ms);
        let rebalance_timeout = millis(j.rebalance_timeout_ms);
        if j.protocol_type != PROTOCOL_TYPE || j.protocols.is_empty() {
            return fail(codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        // One of its protocols must be one every other classic member supports, so the group
        // can go back to the classic protocol.
        let fits = j.protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.id != j.member_id)
                .filter_map(|m| m.classic.as_ref())
                .all(|c| c.protocols.iter().any(|(p, _)| p == name))
        });
        if !fits {
            return fail(codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        let Some(sub) = j
            .protocols
            .first()
            .and_then(|(_, m)| decode_subscription(m))
        else {
            tracing::info!(group = %self.id, member = %j.member_id, "JoinGroup refused: its consumer protocol metadata cannot be read");
            return fail(codes::INCONSISTENT_GROUP_PROTOCOL);
        };
        let id = match (j.member_id.is_empty(), j.instance_id.as_deref()) {
            (true, None) if j.require_known_member_id => {
                return JoinResult::error(codes::MEMBER_ID_REQUIRED, fresh_id)
            }
            (true, None) => fresh_id.to_string(),
            (true, Some(instance)) => {
                // A new incarnation of a static member takes its predecessor's place.
                if let Some(old) = self.holder(instance) {
                    if let Some(mut m) = self.members.remove(&old) {
                        if let Some(t) = self.target.remove(&old) {
                            self.target.insert(fresh_id.to_string(), t);
                        }
                        m.id = fresh_id.to_string();
                        m.epoch = 0;
                        m.previous_epoch = 0;
                        m.static_left = false;
                        m.sent = None;
                        if m.classic.is_none() {
                            m.classic =
                                Some(ClassicMember::new(session_timeout, j.protocols.clone()));
                        }
                        self.members.insert(fresh_id.to_string(), m);
                    }
                }
                fresh_id.to_string()
            }
            (false, Some(instance)) => match self.holder(instance) {
                None => return fail(codes::UNKNOWN_MEMBER_ID),
                Some(h) if h != j.member_id => return fail(codes::FENCED_INSTANCE_ID),
                Some(h) => h,
            },
            (false, None) => j.member_id.clone(),
        };
        if self.members.get(&id).is_some_and(|m| m.classic.is_none()) {
            // The id of a member of the consumer protocol.
            return fail(codes::UNKNOWN_MEMBER_ID);
        }
        let base = self.epoch;
        if !self.members.contains_key(&id) {
            if self.members.len() >= settings.max_size {
                return fail(codes::GROUP_MAX_SIZE_REACHED);
            }
            self.epoch = base + 1;
            let member = Member::joining(
                &id,
                j.instance_id.clone(),
                (&j.client_id, &j.client_host),
                rebalance_timeout,
                now,
            );
            self.members.insert(id.clone(), member);
            tracing::info!(group = %self.id, member = %id, "classic member joined the consumer group");
        }
        let mut names = sub.topics.clone();
        names.sort();
        names.dedup();
        let owned_names: BTreeSet<String> = sub.owned.iter().map(|(t, _)| t.clone()).collect();
        // Owned partitions of any topic the cluster knows, subscribed or not any more.
        let owned = by_id(&sub.owned, &resolve.topics(&owned_names));
        let Some(m) = self.members.get_mut(&id) else {
            return fail(codes::UNKNOWN_MEMBER_ID);
        };
        m.last_heard = now;
        m.client_id = j.client_id.clone();
        m.client_host = j.client_host.clone();
        m.rack_id = sub.rack.clone();
        m.rebalance_timeout = rebalance_timeout;
        m.classic = Some(ClassicMember::new(session_timeout, j.protocols.clone()));
        if names != m.subscribed_names {
            m.subscribed_names = names;
            self.epoch = base + 1;
        }
        // What its JoinGroup no longer claims, it gave up: an eager member gives up everything
        // before it rejoins, a cooperative one what its last SyncGroup no longer listed.
        let kept = intersect(&m.assigned, &owned);
        if kept != m.assigned {
            m.given_at
                .retain(|(t, p), _| kept.get(t).is_some_and(|ps| ps.contains(p)));
            m.assigned = kept;
            if m.state == MemberState::Stable {
                // Still short of its target: the reconciliation gives back what is free.
                m.state = MemberState::UnreleasedPartitions;
            }
        }
        self.refresh_target(resolve, base);
        self.reconcile(&id, Some(&owned), now);
        let Some(m) = self.members.get_mut(&id) else {
            return fail(codes::UNKNOWN_MEMBER_ID);
        };
        // Classic members revoke by rejoining, watched by the join and sync deadlines.
        m.revoke_by = None;
        m.sent = Some(m.assigned.clone());
        let deadline = now + m.rebalance_timeout;
        let Some(c) = m.classic.as_mut() else {
            return fail(codes::UNKNOWN_MEMBER_ID);
        };
        c.sync_by = Some(deadline);
        let protocol = c.protocol_name().to_string();
        tracing::debug!(group = %self.id, member = %id, epoch = m.epoch, state = ?m.state, "classic member joined");
        JoinResult {
            error: codes::NONE,
            generation: m.epoch,
            protocol_type: Some(PROTOCOL_TYPE.to_string()),
            protocol_name: Some(protocol),
            leader: String::new(),
            member_id: id,
            members: Vec::new(),
        }
    }

    /// A classic member's SyncGroup: its assignment (assignments a "leader" sends are ignored:
    /// the coordinator assigns).
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        now: Instant,
    ) -> SyncResult {
        let id = match self.classic_member(member_id, instance_id) {
            Ok(id) => id,
            Err(code) => return SyncResult::error(code),
        };
        let group_epoch = self.epoch;
        let parts = match self.members.get(&id) {
            Some(m) => self.by_name(&m.assigned),
            None => return SyncResult::error(codes::UNKNOWN_MEMBER_ID),
        };
        let Some(m) = self.members.get_mut(&id) else {
            return SyncResult::error(codes::UNKNOWN_MEMBER_ID);
        };
        let (epoch, state, rebalance_timeout) = (m.epoch, m.state, m.rebalance_timeout);
        let Some(c) = m.classic.as_mut() else {
            return SyncResult::error(codes::UNKNOWN_MEMBER_ID);
        };
        if generation != epoch {
            return SyncResult::error(codes::ILLEGAL_GENERATION);
        }
        if protocol_type.is_some_and(|t| t != PROTOCOL_TYPE)
            || protocol_name.is_some_and(|n| n != c.protocol_name())
        {
            return SyncResult::error(codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        if group_epoch > epoch && state != MemberState::UnrevokedPartitions {
            // The group moved on since its JoinGroup: it must rejoin first.
            c.join_by.get_or_insert(now + rebalance_timeout);
            return SyncResult::error(codes::REBALANCE_IN_PROGRESS);
        }
        c.sync_by = None;
        let result = SyncResult {
            error: codes::NONE,
            protocol_type: Some(PROTOCOL_TYPE.to_string()),
            protocol_name: Some(c.protocol_name().to_string()),
            assignment: encode_assignment(&parts, c.version()),
        };
        m.last_heard = now;
        result
    }

    /// A classic member's Heartbeat: REBALANCE_IN_PROGRESS when it must rejoin, to give up
    /// partitions or to take new ones.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        let id = match self.classic_member(member_id, instance_id) {
            Ok(id) => id,
            Err(code) => return code,
        };
        let group_epoch = self.epoch;
        let pending_free = self
            .members
            .get(&id)
            .is_some_and(|m| m.state == MemberState::UnreleasedPartitions && self.free_pending(m));
        let Some(m) = self.members.get_mut(&id) else {
            return codes::UNKNOWN_MEMBER_ID;
        };
        if generation != m.epoch {
            return codes::ILLEGAL_GENERATION;
        }
        m.last_heard = now;
        let rejoin =
            m.epoch < group_epoch || m.state == MemberState::UnrevokedPartitions || pending_free;
        let deadline = now + m.rebalance_timeout;
        match m.classic.as_mut() {
            Some(c) if rejoin => {
                c.join_by.get_or_insert(deadline);
                codes::REBALANCE_IN_PROGRESS
            }
            _ => codes::NONE,
        }
    }

    /// Whether a partition of `m`'s target that it does not have yet is free now.
    fn free_pending(&self, m: &Member) -> bool {
        let target = self.target.get(&m.id).cloned().unwrap_or_default();
        super::difference(&target, &m.assigned)
            .iter()
            .any(|(t, ps)| {
                ps.iter().any(|p| {
                    !self
                        .members
                        .values()
                        .any(|o| o.id != m.id && o.owns(*t, *p))
                })
            })
    }

    /// One member of a classic LeaveGroup (any member, of either protocol, as an admin
    /// removing it): its error code.
    pub fn classic_leave(&mut self, member_id: &str, instance_id: Option<&str>) -> i16 {
        let id = match instance_id {
            Some(instance) => match self.holder(instance) {
                None => return codes::UNKNOWN_MEMBER_ID,
                Some(h) if !member_id.is_empty() && h != member_id => {
                    return codes::FENCED_INSTANCE_ID
                }
                Some(h) => h,
            },
            None if self.members.contains_key(member_id) => member_id.to_string(),
            None => return codes::UNKNOWN_MEMBER_ID,
        };
        self.remove(&id, "left the group (LeaveGroup)");
        codes::NONE
    }
}

/// A timeout from a request's milliseconds (a negative one as zero).
fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
