//! A rebalance from start to the join answers: preparing (with the initial delay for a group
//! that was empty), completing the join phase (late dynamic members out, generation + 1, leader
//! and protocol chosen) and the answers each member gets for the new generation.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{codes, Effect, Fx, Group, GroupState, JoinResult, JoinedMember, Member, SyncResult};

impl Group {
    pub(super) fn rebalance(&mut self, now: Instant, reason: &str) -> Fx {
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

    pub(super) fn prepare(&mut self, now: Instant, from_empty: bool) {
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

    pub(super) fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    pub(super) fn maybe_complete_join(&mut self, now: Instant) -> Fx {
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

    pub(super) fn complete_join(&mut self, now: Instant) -> Fx {
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
        self.adopted.clear();
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
    pub(super) fn select_protocol(&self) -> String {
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
    pub(super) fn join_result(&self, member_id: &str) -> JoinResult {
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

    pub(super) fn sync_ok(&self, member_id: &str) -> SyncResult {
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
}
