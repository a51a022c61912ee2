//! Who is in the group: fencing of old static incarnations, protocol compatibility, members
//! added, updated, replaced and removed. Each change that needs a new generation starts one
//! through `rebalance.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{
    codes, Effect, Fx, Group, GroupState, JoinArgs, JoinResult, JoinStep, Member, SyncResult,
};

impl Group {
    pub(super) fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        let instance = instance_id?;
        match self.static_members.get(instance) {
            Some(current) if current != member_id => Some(codes::FENCED_INSTANCE_ID),
            _ => None,
        }
    }

    /// Whether a member (`member_id`, empty for a new one) with these protocols fits the
    /// group: same protocol type, and at least one protocol every *other* member supports (a
    /// sole member may change its protocols freely).
    pub(super) fn supports(
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

    pub(super) fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
    }

    pub(super) fn add_member_and_rebalance(
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

    pub(super) fn update_member(&mut self, a: JoinArgs, now: Instant) {
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
    pub(super) fn replace_static_member(
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
    pub(super) fn drop_member(&mut self, id: &str) -> Option<Member> {
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
    pub(super) fn remove_member(&mut self, id: &str, now: Instant) -> Fx {
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

impl Group {
    /// The topics the members of a `consumer` group subscribe to, read from every protocol's
    /// metadata of every member (Kafka's ConsumerProtocolSubscription). `None` when one of them
    /// cannot be read: the caller must then take every topic as subscribed, since deleting
    /// the offsets of a topic a live member reads would rewind it at its next start.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            for (_, metadata) in &m.protocols {
                topics.extend(subscription_topics(metadata)?);
            }
        }
        Some(topics)
    }
}

/// The topics of one ConsumerProtocolSubscription (see `consumer::decode_subscription`).
pub(crate) fn subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    crate::group::consumer::decode_subscription(metadata).map(|s| s.topics)
}
