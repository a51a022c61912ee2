//! [`ShareCoordinator`]: share groups, members, share sessions and share partitions of one
//! broker, behind one lock. No clock and no I/O: callers pass the time and what they read
//! from the log and the cluster metadata.
//!
//! Assignment: every member is given every partition of the topics it subscribes to, since a
//! share partition is consumed by all members at once (records, not partitions, are handed
//! out). Membership: the group epoch rises when a member joins, leaves or changes its
//! subscription; a member's epoch follows the group epoch on its next heartbeat. A member not
//! heard from for the session timeout is removed, and whatever it held is released.
//!
//! Share sessions (KIP-932): keyed by (group, member). Epoch 0 opens a session (replacing one
//! the member had), each later request carries the next epoch, -1 closes it: its
//! acknowledgements are applied, then the member's acquired records are released.
//!
//! In a cluster the group's coordinator knows the members; a partition's leader, which serves
//! ShareFetch and ShareAcknowledge, may be another broker. There, as in Kafka's
//! SharePartitionManager, a share session is opened for whatever member id asks
//! ([`ShareCoordinator::admit`] with `check_members` false): only the coordinator can fence a
//! member (its heartbeat answers UNKNOWN_MEMBER_ID and the client rejoins under a new id), and
//! a member that vanished loses its records when their locks run out or its idle session
//! expires. Each share partition is taken up ([`ShareCoordinator::adopt`]) at the leader
//! epoch this broker leads it at, from its persisted state; only partitions owned at the
//! current epoch are persisted from here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use uuid::Uuid;

use super::codes;
use super::partition::{AckError, Acquired, Archived, Limits, Outcome, SharePartition};

/// The share settings that may differ per group or per topic: a group's configs over its
/// topic's over the broker's (`handlers/share.rs`). A plain `Fn(Uuid) -> Limits` serves
/// where only topics differ.
pub trait ShareConfigs {
    /// The lock, the delivery limit and the start of `topic`'s partitions for `group`.
    fn limits(&self, group: &str, topic: Uuid) -> Limits;
    /// The group's member session timeout; `None`: the broker's.
    fn session_timeout_ms(&self, _group: &str) -> Option<i64> {
        None
    }
}

impl<F: Fn(Uuid) -> Limits> ShareConfigs for F {
    fn limits(&self, _group: &str, topic: Uuid) -> Limits {
        self(topic)
    }
}

/// Broker-wide share-group settings (topic configs may override the lock and the limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareSettings {
    pub record_lock_ms: i64,
    pub delivery_count_limit: i16,
    pub heartbeat_interval_ms: i32,
    pub session_timeout_ms: i64,
    pub max_in_flight: i64,
}

impl Default for ShareSettings {
    /// Kafka 4.x's defaults.
    fn default() -> Self {
        ShareSettings {
            record_lock_ms: 30_000,
            delivery_count_limit: 5,
            heartbeat_interval_ms: 5_000,
            session_timeout_ms: 45_000,
            max_in_flight: 2_000,
        }
    }
}

impl ShareSettings {
    pub fn limits(&self) -> Limits {
        Limits {
            lock_ms: self.record_lock_ms,
            delivery_limit: self.delivery_count_limit,
            max_in_flight: self.max_in_flight,
        }
    }
}

/// A subscribed topic as the metadata has it: its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedTopic {
    pub id: Uuid,
    pub partitions: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub error: i16,
    pub member_id: String,
    pub member_epoch: i32,
    /// Sent when it differs from what the member was last given.
    pub assignment: Option<Vec<(Uuid, Vec<i32>)>>,
}

/// A record archived by REJECT or the delivery limit, to be written to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub group: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub archived: Archived,
}

/// A share session after a request was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub partitions: Vec<(Uuid, i32)>,
    /// Epoch -1: the last request of the session.
    pub closing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub assigned: Vec<(Uuid, Vec<i32>)>,
}

/// A group for describe, list and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group: String,
    pub epoch: i32,
    pub members: Vec<MemberSummary>,
    /// (topic id, partition, start offset, records acquired now).
    pub partitions: Vec<(Uuid, i32, i64, usize)>,
    pub acknowledged: u64,
    pub redelivered: u64,
    pub dead_lettered: u64,
}

#[derive(Debug, Clone)]
struct Member {
    epoch: i32,
    subscribed: Vec<String>,
    last_seen_ms: i64,
    assigned: Vec<(Uuid, Vec<i32>)>,
    client_id: String,
    client_host: String,
}

#[derive(Debug, Default)]
struct Group {
    epoch: i32,
    members: BTreeMap<String, Member>,
    partitions: BTreeMap<(Uuid, i32), SharePartition>,
    acknowledged: u64,
    redelivered: u64,
    dead_lettered: u64,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: BTreeSet<(Uuid, i32)>,
    last_used_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<String, Group>,
    sessions: HashMap<(String, String), Session>,
    dead_letters: Vec<DeadLetter>,
    /// Share partitions changed since their state was last taken for persistence.
    dirty: BTreeSet<(String, Uuid, i32)>,
    /// The leader epoch each share partition was taken up at (see [`ShareCoordinator::adopt`]).
    owned: HashMap<(String, Uuid, i32), i32>,
}

/// A share partition: (topic id, partition).
pub type Key = (Uuid, i32);

/// A share partition's state to persist; `None`: it is gone (its group was deleted).
pub type Changed = (String, Uuid, i32, Option<SharePartition>);

#[derive(Debug, Default)]
pub struct ShareCoordinator {
    settings: ShareSettings,
    state: Mutex<State>,
    /// Woken when records become available again, so waiting ShareFetches look again.
    released: Notify,
    /// Set once the persisted state was loaded (the store does it before the first request).
    pub loaded: tokio::sync::OnceCell<()>,
    /// Held while changes are taken and written, so they reach the log in the order made.
    pub persisting: tokio::sync::Mutex<()>,
}

impl ShareCoordinator {
    pub fn new(settings: ShareSettings) -> ShareCoordinator {
        ShareCoordinator {
            settings,
            state: Mutex::default(),
            released: Notify::new(),
            loaded: tokio::sync::OnceCell::new(),
            persisting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn settings(&self) -> ShareSettings {
        self.settings
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completes when some record is released after this call (or after `enable` on it).
    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }

    /// Serves one ShareGroupHeartbeat. `resolve` gives the subscribed topics' partitions;
    /// `start_of` the offset a share partition the group does not have yet starts at
    /// (`share.auto.offset.reset`), asked only for those, `None` where this broker does not
    /// know it (it is then started by its first fetch). `start_of` runs under the lock every
    /// share request takes, so it must not do I/O: the handler works the starts out before,
    /// for the partitions [`Self::unstarted`] names.
    #[allow(clippy::too_many_arguments)]
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        subscribed: Option<Vec<String>>,
        client: (&str, &str),
        now_ms: i64,
        limits: &dyn ShareConfigs,
        resolve: &dyn Fn(&[String]) -> Vec<AssignedTopic>,
        start_of: &dyn Fn(Uuid, i32) -> Option<i64>,
    ) -> HeartbeatReply {
        let mut guard = self.lock();
        let st = &mut *guard;
        self.expire_members(st, now_ms, limits);
        let reply = |error: i16, epoch: i32| HeartbeatReply {
            error,
            member_id: member_id.to_string(),
            member_epoch: epoch,
            assignment: None,
        };
        if member_epoch == -1 {
            let left = st
                .groups
                .get(group_id)
                .is_some_and(|g| g.members.contains_key(member_id));
            if left {
                self.remove_member(st, group_id, member_id, limits);
                tracing::info!(group = group_id, member = member_id, "share member left");
            }
            return reply(codes::NONE, -1);
        }
        let member_id = if member_id.is_empty() {
            Uuid::new_v4().simple().to_string()
        } else {
            member_id.to_string()
        };
        let group = st.groups.entry(group_id.to_string()).or_default();
        match group.members.get(&member_id) {
            None if member_epoch != 0 => {
                return HeartbeatReply {
                    member_id,
                    ..reply(codes::UNKNOWN_MEMBER_ID, member_epoch)
                }
            }
            Some(m) if member_epoch != 0 && member_epoch != m.epoch => {
                return HeartbeatReply {
                    member_id,
                    ..reply(codes::FENCED_MEMBER_EPOCH, member_epoch)
                }
            }
            None => {
                group.epoch += 1;
                tracing::info!(group = group_id, member = %member_id, epoch = group.epoch,
                    "share member joined");
                group.members.insert(
                    member_id.clone(),
                    Member {
                        epoch: group.epoch,
                        subscribed: Vec::new(),
                        last_seen_ms: now_ms,
                        assigned: Vec::new(),
                        client_id: client.0.to_string(),
                        client_host: client.1.to_string(),
                    },
                );
            }
            Some(_) => {}
        }
        let rejoin = member_epoch == 0;
        let group_epoch = group.epoch;
        let Some(member) = group.members.get_mut(&member_id) else {
            return reply(codes::UNKNOWN_MEMBER_ID, member_epoch);
        };
        member.last_seen_ms = now_ms;
        let mut bump = false;
        if let Some(mut topics) = subscribed {
            topics.sort();
            topics.dedup();
            if topics != member.subscribed {
                member.subscribed = topics;
                bump = true;
            }
        }
        let resolved = resolve(&member.subscribed);
        let assignment: Vec<(Uuid, Vec<i32>)> = resolved
            .iter()
            .map(|t| (t.id, t.partitions.clone()))
            .collect();
        let changed = rejoin || assignment != member.assigned;
        member.assigned = assignment.clone();
        if bump {
            group.epoch += 1;
        }
        let epoch = if bump { group.epoch } else { group_epoch };
        if let Some(member) = group.members.get_mut(&member_id) {
            member.epoch = epoch;
        }
        // A share partition starts when its group first gets it (where, by its
        // `share.auto.offset.reset`).
        for t in &resolved {
            for p in &t.partitions {
                if let std::collections::btree_map::Entry::Vacant(e) =
                    group.partitions.entry((t.id, *p))
                {
                    if let Some(start) = start_of(t.id, *p) {
                        e.insert(SharePartition::new(start));
                        st.dirty.insert((group_id.to_string(), t.id, *p));
                    }
                }
            }
        }
        HeartbeatReply {
            error: codes::NONE,
            member_id,
            member_epoch: epoch,
            assignment: changed.then_some(assignment),
        }
    }

    /// Admits a ShareFetch / ShareAcknowledge on the member's share session: opens it (epoch
    /// 0, `fetch` only), checks and advances its epoch, adds `add` and drops `forget`.
    pub fn session(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        fetch: bool,
        add: &[(Uuid, i32)],
        forget: &[(Uuid, i32)],
    ) -> Result<SessionView, i16> {
        self.admit(group_id, member_id, epoch, fetch, (add, forget), true, 0)
    }

    /// [`Self::session`] on a broker that may not coordinate the group: `check_members`
    /// false opens a session for any member id (the coordinator is elsewhere).
    #[allow(clippy::too_many_arguments)]
    pub fn admit(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        fetch: bool,
        (add, forget): (&[Key], &[Key]),
        check_members: bool,
        now_ms: i64,
    ) -> Result<SessionView, i16> {
        let mut st = self.lock();
        let known = st
            .groups
            .get(group_id)
            .is_some_and(|g| g.members.contains_key(member_id));
        let key = (group_id.to_string(), member_id.to_string());
        if epoch == 0 {
            if !fetch {
                return Err(codes::INVALID_SHARE_SESSION_EPOCH);
            }
            if check_members && !known {
                return Err(codes::UNKNOWN_MEMBER_ID);
            }
            st.groups.entry(group_id.to_string()).or_default();
            st.sessions.insert(
                key.clone(),
                Session {
                    next_epoch: 1,
                    partitions: BTreeSet::new(),
                    last_used_ms: now_ms,
                },
            );
        }
        let Some(session) = st.sessions.get_mut(&key) else {
            return Err(codes::SHARE_SESSION_NOT_FOUND);
        };
        session.last_used_ms = session.last_used_ms.max(now_ms);
        let closing = epoch == -1;
        if !closing && epoch != 0 {
            if epoch != session.next_epoch {
                return Err(codes::INVALID_SHARE_SESSION_EPOCH);
            }
            session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        }
        session.partitions.extend(add.iter().copied());
        for f in forget {
            session.partitions.remove(f);
        }
        let partitions = session.partitions.iter().copied().collect();
        Ok(SessionView {
            partitions,
            closing,
        })
    }

    /// Ends the member's share session: what it holds is released.
    pub fn close_session(&self, group_id: &str, member_id: &str, limits: &dyn ShareConfigs) {
        let mut st = self.lock();
        st.sessions
            .remove(&(group_id.to_string(), member_id.to_string()));
        self.release_member(&mut st, group_id, member_id, limits);
    }

    /// Applies one acknowledgement batch; the Kafka error code of the partition.
    #[allow(clippy::too_many_arguments)]
    pub fn acknowledge(
        &self,
        group_id: &str,
        member_id: &str,
        (topic_id, partition): (Uuid, i32),
        (first, last): (i64, i64),
        types: &[i8],
        allow_renew: bool,
        now_ms: i64,
        limits: &Limits,
    ) -> i16 {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(group) = st.groups.get_mut(group_id) else {
            return codes::INVALID_RECORD_STATE;
        };
        let Some(sp) = group.partitions.get_mut(&(topic_id, partition)) else {
            return codes::INVALID_RECORD_STATE;
        };
        match sp.acknowledge(member_id, (first, last), types, allow_renew, now_ms, limits) {
            Ok(outcome) => {
                let released = outcome.released > 0;
                st.dirty.insert((group_id.to_string(), topic_id, partition));
                record(st, group_id, (topic_id, partition), outcome);
                if released {
                    self.released.notify_waiters();
                }
                codes::NONE
            }
            Err(e) => {
                tracing::debug!(group = group_id, member = member_id, %topic_id, partition,
                    error = %e, "share acknowledgement refused");
                match e {
                    AckError::InvalidRecordState { .. } => codes::INVALID_RECORD_STATE,
                    AckError::InvalidRequest { .. } => codes::INVALID_REQUEST,
                }
            }
        }
    }

    /// The share partitions of `keys` that `group_id` has not started (all of them for a group
    /// this coordinator does not have): those whose start a caller works out before a
    /// [`Self::heartbeat`] or a fetch, outside the lock.
    pub fn unstarted(&self, group_id: &str, keys: &[Key]) -> Vec<Key> {
        let st = self.lock();
        let started = st.groups.get(group_id).map(|g| &g.partitions);
        keys.iter()
            .filter(|k| !started.is_some_and(|p| p.contains_key(k)))
            .copied()
            .collect()
    }

    /// Where to read for an acquisition in one share partition, after expiring its locks and
    /// following the log start; a new share partition starts at `start()` (its
    /// `share.auto.offset.reset`, asked only then). `None`: nothing can be acquired now.
    pub fn fetch_offset(
        &self,
        group_id: &str,
        key: (Uuid, i32),
        (log_start, log_end): (i64, i64),
        start: &dyn Fn() -> i64,
        now_ms: i64,
        limits: &Limits,
    ) -> Option<i64> {
        // `start()` may read the partition's time index (`by_duration:`): it runs outside the
        // lock, which every share request of every group on this broker takes. Another
        // request may start the partition meanwhile; its start is then kept.
        let fresh = (!self.unstarted(group_id, &[key]).is_empty()).then(start);
        let mut guard = self.lock();
        let st = &mut *guard;
        let group = st.groups.get_mut(group_id)?;
        let created = !group.partitions.contains_key(&key);
        let sp = group.partitions.entry(key).or_insert_with(|| {
            let start = fresh.unwrap_or_else(start);
            SharePartition::new(start.min(log_end).max(log_start))
        });
        let before = sp.start_offset();
        sp.follow_log_start(log_start);
        let expired = sp.expire_locks(now_ms, limits);
        let next = sp.next_fetch_offset(limits);
        if created || expired != Outcome::default() || sp.start_offset() != before {
            st.dirty.insert((group_id.to_string(), key.0, key.1));
        }
        record(st, group_id, key, expired);
        next.filter(|o| *o < log_end)
    }

    /// Acquires records `from..to` (read from the log) for the member.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire(
        &self,
        group_id: &str,
        member_id: &str,
        key: (Uuid, i32),
        (from, to): (i64, i64),
        max_records: usize,
        now_ms: i64,
        limits: &Limits,
    ) -> Vec<Acquired> {
        let mut st = self.lock();
        // Only members of the group acquire: one that was removed lost its records already
        // (and its session). Where the coordinator is another broker, the share session
        // stands for the membership.
        let in_session = st
            .sessions
            .contains_key(&(group_id.to_string(), member_id.to_string()));
        let Some(group) = st.groups.get_mut(group_id) else {
            return Vec::new();
        };
        if !group.members.contains_key(member_id) && !in_session {
            return Vec::new();
        }
        let Some(sp) = group.partitions.get_mut(&key) else {
            return Vec::new();
        };
        let got = sp.acquire(member_id, from, to, max_records, now_ms, limits);
        if !got.is_empty() {
            st.dirty.insert((group_id.to_string(), key.0, key.1));
        }
        let Some(group) = st.groups.get_mut(group_id) else {
            return got;
        };
        group.redelivered += got
            .iter()
            .filter(|a| a.delivery_count > 1)
            .map(|a| u64::try_from(a.last - a.first + 1).unwrap_or(0))
            .sum::<u64>();
        got
    }

    /// Expires locks everywhere and members not heard from; call now and then.
    pub fn tick(&self, now_ms: i64, limits: &dyn ShareConfigs) {
        let mut guard = self.lock();
        let st = &mut *guard;
        self.expire_members(st, now_ms, limits);
        self.expire_sessions(st, now_ms, limits);
        let mut outcomes = Vec::new();
        for (name, g) in st.groups.iter_mut() {
            for (key, sp) in g.partitions.iter_mut() {
                let out = sp.expire_locks(now_ms, &limits.limits(name, key.0));
                if out != Outcome::default() {
                    outcomes.push((name.clone(), *key, out));
                }
            }
        }
        let released = outcomes.iter().any(|(_, _, o)| o.released > 0);
        for (name, key, out) in outcomes {
            st.dirty.insert((name.clone(), key.0, key.1));
            record(st, &name, key, out);
        }
        if released {
            self.released.notify_waiters();
        }
    }

    /// The share partitions changed since the last call, with their current state.
    pub fn take_dirty(&self) -> Vec<Changed> {
        let mut guard = self.lock();
        let st = &mut *guard;
        std::mem::take(&mut st.dirty)
            .into_iter()
            .map(|(g, t, p)| {
                let state = st
                    .groups
                    .get(&g)
                    .and_then(|grp| grp.partitions.get(&(t, p)))
                    .cloned();
                (g, t, p, state)
            })
            .collect()
    }

    /// Puts changes back that could not be persisted (they go with the next write).
    pub fn mark_dirty(&self, changed: &[Changed]) {
        let mut st = self.lock();
        for (g, t, p, _) in changed {
            st.dirty.insert((g.clone(), *t, *p));
        }
    }

    /// The dead letters produced since the last call.
    pub fn take_dead_letters(&self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.lock().dead_letters)
    }

    pub fn groups(&self) -> Vec<GroupSummary> {
        let st = self.lock();
        st.groups
            .iter()
            .map(|(name, g)| GroupSummary {
                group: name.clone(),
                epoch: g.epoch,
                members: g
                    .members
                    .iter()
                    .map(|(id, m)| MemberSummary {
                        member_id: id.clone(),
                        member_epoch: m.epoch,
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        subscribed: m.subscribed.clone(),
                        assigned: m.assigned.clone(),
                    })
                    .collect(),
                partitions: g
                    .partitions
                    .iter()
                    .map(|((t, p), sp)| (*t, *p, sp.start_offset(), sp.acquired_count()))
                    .collect(),
                acknowledged: g.acknowledged,
                redelivered: g.redelivered,
                dead_lettered: g.dead_lettered,
            })
            .collect()
    }

    pub fn group(&self, group_id: &str) -> Option<GroupSummary> {
        self.groups().into_iter().find(|g| g.group == group_id)
    }

    /// Deletes an empty group and its share-partition state.
    pub fn delete_group(&self, group_id: &str) -> i16 {
        let mut st = self.lock();
        match st.groups.get(group_id) {
            None => codes::GROUP_ID_NOT_FOUND,
            Some(g) if !g.members.is_empty() => codes::GROUP_NOT_EMPTY,
            Some(_) => {
                if let Some(g) = st.groups.remove(group_id) {
                    for (t, p) in g.partitions.keys() {
                        st.dirty.insert((group_id.to_string(), *t, *p));
                    }
                }
                codes::NONE
            }
        }
    }

    pub fn has_group(&self, group_id: &str) -> bool {
        self.lock().groups.contains_key(group_id)
    }

    /// The share-partition states, for persistence.
    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<(Uuid, i32), SharePartition>> {
        let st = self.lock();
        st.groups
            .iter()
            .map(|(n, g)| (n.clone(), g.partitions.clone()))
            .collect()
    }

    /// Restores share-partition states (at start, before any request). Records that were
    /// acquired belong to members of a previous run: they become available again.
    pub fn restore(
        &self,
        saved: BTreeMap<String, BTreeMap<(Uuid, i32), SharePartition>>,
        limits: &dyn ShareConfigs,
    ) {
        let mut st = self.lock();
        for (name, partitions) in saved {
            let group = st.groups.entry(name.clone()).or_default();
            // A partition already here was taken up by its leader since: that state is newer.
            for (key, mut sp) in partitions {
                if let std::collections::btree_map::Entry::Vacant(e) = group.partitions.entry(key) {
                    sp.expire_locks(i64::MAX, &limits.limits(&name, key.0));
                    e.insert(sp);
                }
            }
        }
    }

    /// Sessions of members this broker does not know (their coordinator is elsewhere) that
    /// were not used for the session timeout: what they held is released.
    fn expire_sessions(&self, st: &mut State, now_ms: i64, limits: &dyn ShareConfigs) {
        let timeout = |g: &str| {
            limits
                .session_timeout_ms(g)
                .unwrap_or(self.settings.session_timeout_ms)
        };
        let idle: Vec<(String, String)> = st
            .sessions
            .iter()
            .filter(|((g, m), s)| {
                s.last_used_ms.saturating_add(timeout(g)) < now_ms
                    && !st
                        .groups
                        .get(g)
                        .is_some_and(|grp| grp.members.contains_key(m))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (g, m) in idle {
            tracing::info!(group = %g, member = %m, timeout_ms = timeout(&g),
                "share session expired: not used within the session timeout");
            st.sessions.remove(&(g.clone(), m.clone()));
            self.release_member(st, &g, &m, limits);
        }
    }

    /// The leader epoch this broker took up `key` of `group_id` at, if it did.
    pub fn owned_epoch(&self, group_id: &str, (topic_id, partition): (Uuid, i32)) -> Option<i32> {
        self.lock()
            .owned
            .get(&(group_id.to_string(), topic_id, partition))
            .copied()
    }

    /// Share partitions of groups with no share session open here and nothing left to
    /// persist are no longer held as taken up: the next session takes them up again from
    /// their persisted state, which is how offsets altered or deleted by the coordinator
    /// (AlterShareGroupOffsets, DeleteShareGroupOffsets, on an empty group) reach the
    /// partitions' leaders. Called after a write, with the persistence lock held.
    pub fn forget_idle(&self) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let busy: BTreeSet<&str> = st
            .sessions
            .keys()
            .map(|(g, _)| g.as_str())
            .chain(st.dirty.iter().map(|(g, _, _)| g.as_str()))
            .collect();
        let idle: Vec<(String, Uuid, i32)> = st
            .owned
            .keys()
            .filter(|(g, _, _)| !busy.contains(g.as_str()))
            .cloned()
            .collect();
        for k in idle {
            st.owned.remove(&k);
        }
    }

    /// Takes up a share partition as its leader at `epoch`, from its persisted `state`
    /// (`None`: nothing persisted, it starts when first fetched). Whatever this broker held of
    /// it from an earlier leadership is dropped; records acquired under the previous leader
    /// are available again, with their delivery counts.
    pub fn adopt(
        &self,
        group_id: &str,
        (topic_id, partition): (Uuid, i32),
        epoch: i32,
        state: Option<SharePartition>,
        limits: &Limits,
    ) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let name = group_id.to_string();
        st.dirty.remove(&(name.clone(), topic_id, partition));
        st.owned.insert((name.clone(), topic_id, partition), epoch);
        let group = st.groups.entry(name).or_default();
        match state {
            Some(mut sp) => {
                sp.expire_locks(i64::MAX, limits);
                group.partitions.insert((topic_id, partition), sp);
            }
            None => {
                group.partitions.remove(&(topic_id, partition));
            }
        }
        self.released.notify_waiters();
    }

    fn expire_members(&self, st: &mut State, now_ms: i64, limits: &dyn ShareConfigs) {
        let timeout = |g: &str| {
            limits
                .session_timeout_ms(g)
                .unwrap_or(self.settings.session_timeout_ms)
        };
        let gone: Vec<(String, String)> = st
            .groups
            .iter()
            .flat_map(|(g, grp)| {
                let timeout = timeout(g);
                grp.members
                    .iter()
                    .filter(move |(_, m)| m.last_seen_ms.saturating_add(timeout) < now_ms)
                    .map(|(id, _)| (g.clone(), id.clone()))
            })
            .collect();
        for (g, m) in gone {
            tracing::info!(group = %g, member = %m, timeout_ms = timeout(&g),
                "share member removed: no heartbeat within the session timeout");
            self.remove_member(st, &g, &m, limits);
        }
    }

    fn remove_member(
        &self,
        st: &mut State,
        group_id: &str,
        member_id: &str,
        limits: &dyn ShareConfigs,
    ) {
        if let Some(g) = st.groups.get_mut(group_id) {
            if g.members.remove(member_id).is_some() {
                g.epoch += 1;
            }
        }
        st.sessions
            .remove(&(group_id.to_string(), member_id.to_string()));
        self.release_member(st, group_id, member_id, limits);
    }

    fn release_member(
        &self,
        st: &mut State,
        group_id: &str,
        member_id: &str,
        limits: &dyn ShareConfigs,
    ) {
        let Some(g) = st.groups.get_mut(group_id) else {
            return;
        };
        let outcomes: Vec<((Uuid, i32), Outcome)> = g
            .partitions
            .iter_mut()
            .map(|(key, sp)| {
                let l = limits.limits(group_id, key.0);
                (*key, sp.release_member(member_id, &l))
            })
            .collect();
        let released = outcomes.iter().any(|(_, o)| o.released > 0);
        for (key, out) in outcomes {
            if out != Outcome::default() {
                st.dirty.insert((group_id.to_string(), key.0, key.1));
            }
            record(st, group_id, key, out);
        }
        if released {
            self.released.notify_waiters();
        }
    }
}

/// Counts an outcome and queues its dead letters.
fn record(st: &mut State, group_id: &str, (topic_id, partition): (Uuid, i32), out: Outcome) {
    if let Some(g) = st.groups.get_mut(group_id) {
        g.acknowledged += out.accepted;
        g.dead_lettered += out.archived.len() as u64;
    }
    st.dead_letters
        .extend(out.archived.into_iter().map(|archived| DeadLetter {
            group: group_id.to_string(),
            topic_id,
            partition,
            archived,
        }));
}

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;
