//! One partition's replication metadata and its pure transitions: leader elections, ISR
//! changes proposed by the leader, and replica-set changes (reassignments).
//!
//! The rules are Kafka's (KRaft controller):
//! - the leader is always an in-sync replica; a new leader is chosen only from the ISR among
//!   live brokers, in replica order, unless the topic enables unclean election;
//! - every change of leader bumps the leader epoch, every change of leader, ISR or replicas
//!   bumps the partition epoch, so a proposal made from an older view is refused;
//! - a partition whose last in-sync replica is lost keeps that replica in its ISR with no
//!   leader (offline) and elects it again when it returns: its copy is the one with every
//!   acknowledged record;
//! - a reassignment adds the new replicas, waits until every one of them is in the ISR, then
//!   drops the replicas that are not wanted (moving leadership if the leader is one of them).
//!
//! Nothing here does I/O; [`super::state::ClusterState::apply`] calls these with the set of
//! live brokers it knows.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// `leader` of a partition that has no live in-sync replica.
pub const NO_LEADER: i32 = -1;

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PartitionWire")]
pub struct PartitionRecord {
    /// Brokers that hold a copy, the preferred leader first. During a reassignment this is the
    /// union of the old and the new set.
    pub replicas: Vec<i32>,
    /// In-sync replicas: the copies that have every record the leader acknowledged. Always a
    /// subset of `replicas`; contains the leader when there is one. Empty only when the last
    /// in-sync copy's volume was lost while the other replicas were down: the first replica
    /// to return leads then (see [`PartitionRecord::volume_lost`]).
    pub isr: Vec<i32>,
    /// The broker serving reads and writes, or [`NO_LEADER`] (offline).
    pub leader: i32,
    /// Bumped on every change of leader, so a client or broker holding an older view is
    /// fenced (FENCED_LEADER_EPOCH) instead of writing to the wrong place.
    pub leader_epoch: i32,
    /// Bumped on every change of leader, ISR or replicas: an ISR change proposed from an
    /// older view of the partition is refused.
    pub partition_epoch: i32,
    /// Replicas a reassignment in progress adds (already in `replicas`).
    pub adding: Vec<i32>,
    /// Replicas a reassignment in progress drops once the added ones are in sync.
    pub removing: Vec<i32>,
}

/// The serialized form, which also reads metadata written before replication existed
/// (`owner`, `moving_to`, one copy per partition).
#[derive(Deserialize)]
struct PartitionWire {
    #[serde(default)]
    replicas: Vec<i32>,
    #[serde(default)]
    isr: Vec<i32>,
    #[serde(default, alias = "owner")]
    leader: i32,
    #[serde(default)]
    leader_epoch: i32,
    #[serde(default)]
    partition_epoch: i32,
    #[serde(default)]
    adding: Vec<i32>,
    #[serde(default)]
    removing: Vec<i32>,
    /// Pre-replication: the broker a one-copy partition was being moved to.
    #[serde(default)]
    moving_to: Option<i32>,
}

impl From<PartitionWire> for PartitionRecord {
    fn from(w: PartitionWire) -> Self {
        if !w.replicas.is_empty() {
            return PartitionRecord {
                replicas: w.replicas,
                isr: w.isr,
                leader: w.leader,
                leader_epoch: w.leader_epoch,
                partition_epoch: w.partition_epoch,
                adding: w.adding,
                removing: w.removing,
            };
        }
        // A one-copy partition from before replication: its owner is its only replica and
        // leader; a move in progress becomes a reassignment to the target.
        let mut p = PartitionRecord::new(vec![w.leader], w.leader_epoch);
        if let Some(target) = w.moving_to.filter(|t| *t != w.leader) {
            p.replicas.push(target);
            p.adding = vec![target];
            p.removing = vec![w.leader];
        }
        p
    }
}

/// Why a proposed ISR change was refused (the Kafka error code and a message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i16,
    pub message: String,
}

/// Kafka error codes of partition changes.
pub mod code {
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_REQUEST: i16 = 42;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    pub const INVALID_UPDATE_VERSION: i16 = 95;
    pub const INELIGIBLE_REPLICA: i16 = 107;
}

fn refusal(code: i16, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// What an election looked at: which brokers are alive, and whether the topic allows electing
/// a replica that is not in sync.
#[derive(Debug, Clone, Copy)]
pub struct Electorate<'a> {
    pub alive: &'a BTreeSet<i32>,
    pub unclean: bool,
}

impl PartitionRecord {
    /// A new partition on `replicas` (preferred leader first), led by the first.
    pub fn new(replicas: Vec<i32>, leader_epoch: i32) -> PartitionRecord {
        let leader = replicas.first().copied().unwrap_or(NO_LEADER);
        PartitionRecord {
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    /// The replica set the partition ends with (the target of a reassignment in progress).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    /// The replica set before the reassignment in progress.
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// Fewer in-sync replicas than replicas the partition should end with.
    pub fn is_under_replicated(&self) -> bool {
        let target = self.target_replicas();
        target.iter().any(|r| !self.isr.contains(r))
    }

    fn set_leader(&mut self, leader: i32) {
        self.leader = leader;
        self.leader_epoch = self.leader_epoch.saturating_add(1);
    }

    fn bump(&mut self) {
        self.partition_epoch = self.partition_epoch.saturating_add(1);
    }

    /// The first replica (in preference order) that is in sync, alive and not `except`.
    fn in_sync_candidate(&self, alive: &BTreeSet<i32>, except: i32) -> Option<i32> {
        self.replicas
            .iter()
            .copied()
            .find(|r| *r != except && alive.contains(r) && self.isr.contains(r))
    }

    /// Broker `id` stopped (fenced by the quorum leader, or shutting down): it leads nothing
    /// and leaves the ISR, unless it is the last in-sync replica, which stays in the ISR so
    /// that it, the only complete copy, is elected again when it returns. Returns whether the
    /// partition changed.
    pub fn broker_stopped(&mut self, id: i32, e: Electorate<'_>) -> bool {
        if !self.replicas.contains(&id) {
            return false;
        }
        if self.leader == id {
            match self.in_sync_candidate(e.alive, id) {
                Some(next) => {
                    self.isr.retain(|r| *r != id);
                    self.set_leader(next);
                }
                None => match self.unclean_candidate(e, id) {
                    Some(next) => {
                        self.isr = vec![next];
                        self.set_leader(next);
                    }
                    None => self.set_leader(NO_LEADER),
                },
            }
            self.bump();
            return true;
        }
        if self.isr.contains(&id) && self.isr.len() > 1 {
            self.isr.retain(|r| *r != id);
            self.bump();
            return true;
        }
        false
    }

    fn unclean_candidate(&self, e: Electorate<'_>, except: i32) -> Option<i32> {
        if !e.unclean {
            return None;
        }
        self.replicas
            .iter()
            .copied()
            .find(|r| *r != except && e.alive.contains(r))
    }

    /// Broker `id` is alive again: an offline partition whose in-sync copy it holds is led by
    /// it (or, with unclean election, any offline partition it holds a copy of). Returns
    /// whether the partition changed.
    pub fn broker_returned(&mut self, id: i32, e: Electorate<'_>) -> bool {
        if self.has_leader() || !self.replicas.contains(&id) {
            return false;
        }
        if self.isr.contains(&id) {
            self.set_leader(id);
        } else if self.isr.is_empty() {
            // The last in-sync copy was lost with its volume: any returning replica has more
            // than nothing.
            self.isr = vec![id];
            self.set_leader(id);
        } else if e.unclean {
            self.isr = vec![id];
            self.set_leader(id);
        } else {
            return false;
        }
        self.bump();
        true
    }

    /// Broker `id` came back on an empty volume (a lost disk, a deleted PVC): whatever copy it
    /// had is gone. It leaves the ISR and gives up the leadership. When it was the last
    /// in-sync replica, the best copy left is one of the others, even out of sync: the first
    /// live one leads (what it lacks was only on the lost volume). With no other live replica
    /// the partition waits, leaderless with an empty ISR, for the first replica to return;
    /// with no other replica at all (one copy) it is served again, empty. Returns whether the
    /// partition changed.
    pub fn volume_lost(&mut self, id: i32, alive: &BTreeSet<i32>) -> bool {
        if !self.replicas.contains(&id) {
            return false;
        }
        if !self.isr.contains(&id) && self.leader != id {
            return false;
        }
        self.isr.retain(|r| *r != id);
        if self.isr.is_empty() {
            let other = self
                .replicas
                .iter()
                .copied()
                .find(|r| *r != id && alive.contains(r));
            match other {
                Some(o) => {
                    self.isr = vec![o];
                    self.set_leader(o);
                }
                None if self.replicas.len() == 1 => {
                    self.isr = vec![id];
                    self.set_leader(id);
                }
                None => self.set_leader(NO_LEADER),
            }
        } else if self.leader == id || !self.has_leader() {
            match self.in_sync_candidate(alive, id) {
                Some(l) => self.set_leader(l),
                None => self.set_leader(NO_LEADER),
            }
        }
        self.bump();
        true
    }

    /// An ISR change proposed by the leader (Kafka's AlterPartition), checked against the
    /// view it was made from. Completes a reassignment whose new replicas are all in sync.
    pub fn alter_isr(
        &mut self,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
        alive: &BTreeSet<i32>,
    ) -> Result<(), Refusal> {
        if leader != self.leader {
            return Err(refusal(
                code::NOT_LEADER_OR_FOLLOWER,
                format!(
                    "broker {leader} is not the leader (the leader is {})",
                    self.leader
                ),
            ));
        }
        if leader_epoch != self.leader_epoch {
            return Err(refusal(
                code::FENCED_LEADER_EPOCH,
                format!(
                    "leader epoch {leader_epoch} is stale (the partition is at {})",
                    self.leader_epoch
                ),
            ));
        }
        if partition_epoch != self.partition_epoch {
            return Err(refusal(
                code::INVALID_UPDATE_VERSION,
                format!(
                    "partition epoch {partition_epoch} is stale (the partition is at {})",
                    self.partition_epoch
                ),
            ));
        }
        let distinct: BTreeSet<i32> = isr.iter().copied().collect();
        if !isr.contains(&leader) || distinct.len() != isr.len() {
            return Err(refusal(
                code::INVALID_REQUEST,
                format!("ISR {isr:?} must hold the leader {leader} once and no broker twice"),
            ));
        }
        if let Some(r) = isr.iter().find(|r| !self.replicas.contains(r)) {
            return Err(refusal(
                code::INVALID_REQUEST,
                format!("broker {r} is not a replica ({:?})", self.replicas),
            ));
        }
        if let Some(r) = isr
            .iter()
            .find(|r| !self.isr.contains(r) && !alive.contains(r))
        {
            return Err(refusal(
                code::INELIGIBLE_REPLICA,
                format!("broker {r} is not alive and cannot join the ISR"),
            ));
        }
        // Keep replica order, so the ISR reads like the replica list.
        self.isr = self
            .replicas
            .iter()
            .copied()
            .filter(|r| distinct.contains(r))
            .collect();
        self.bump();
        self.maybe_complete_reassignment(alive);
        Ok(())
    }

    /// Finishes a reassignment once every added replica is in sync: the replica set becomes
    /// the target and a leader that is being removed hands over to an in-sync target replica.
    fn maybe_complete_reassignment(&mut self, alive: &BTreeSet<i32>) -> bool {
        if !self.is_reassigning() {
            return false;
        }
        let target = self.target_replicas();
        if target.is_empty() || !self.adding.iter().all(|r| self.isr.contains(r)) {
            return false;
        }
        let isr: Vec<i32> = target
            .iter()
            .copied()
            .filter(|r| self.isr.contains(r))
            .collect();
        let next_leader = if target.contains(&self.leader) {
            None
        } else {
            // Prefer a live replica; every one in `isr` is in sync.
            isr.iter()
                .copied()
                .find(|r| alive.contains(r))
                .or_else(|| isr.first().copied())
        };
        self.replicas = target;
        self.isr = isr;
        self.adding.clear();
        self.removing.clear();
        if let Some(l) = next_leader {
            self.set_leader(l);
        }
        self.bump();
        true
    }

    /// Starts (or replaces) a reassignment to `target`, or cancels the one in progress
    /// (`None`). Returns whether the partition changed.
    pub fn reassign(
        &mut self,
        target: Option<&[i32]>,
        alive: &BTreeSet<i32>,
    ) -> Result<bool, Refusal> {
        let original = self.original_replicas();
        let Some(target) = target else {
            if !self.is_reassigning() {
                return Err(refusal(
                    code::NO_REASSIGNMENT_IN_PROGRESS,
                    "no reassignment is in progress",
                ));
            }
            self.revert_to(original, alive);
            return Ok(true);
        };
        let distinct: BTreeSet<i32> = target.iter().copied().collect();
        if target.is_empty() || distinct.len() != target.len() {
            return Err(refusal(
                code::INVALID_REPLICA_ASSIGNMENT,
                format!("replicas {target:?} must name at least one broker, none twice"),
            ));
        }
        if target == original.as_slice() {
            // Kafka: assigning the current replicas cancels a reassignment in progress.
            if self.is_reassigning() {
                self.revert_to(original, alive);
                return Ok(true);
            }
            return Ok(false);
        }
        let adding: Vec<i32> = target
            .iter()
            .copied()
            .filter(|r| !original.contains(r))
            .collect();
        let removing: Vec<i32> = original
            .iter()
            .copied()
            .filter(|r| !distinct.contains(r))
            .collect();
        let mut replicas = target.to_vec();
        replicas.extend(removing.iter().copied());
        self.isr.retain(|r| replicas.contains(r));
        self.replicas = replicas;
        self.adding = adding;
        self.removing = removing;
        if !self.maybe_complete_reassignment(alive) {
            self.bump();
        }
        Ok(true)
    }

    /// Cancels a reassignment: back to `original`, the added replicas dropped.
    fn revert_to(&mut self, original: Vec<i32>, alive: &BTreeSet<i32>) {
        self.isr.retain(|r| original.contains(r));
        self.replicas = original;
        self.adding.clear();
        self.removing.clear();
        if self.has_leader() && !self.replicas.contains(&self.leader) {
            match self.in_sync_candidate(alive, NO_LEADER) {
                Some(l) => self.set_leader(l),
                None => self.set_leader(NO_LEADER),
            }
        }
        if self.isr.is_empty() {
            // The added replicas were the only in-sync ones left (the originals fell out
            // while the reassignment ran): keep the original leader's claim to its copy.
            self.isr = self.replicas.iter().take(1).copied().collect();
        }
        self.bump();
    }

    /// Preferred-leader election: the first replica leads again if it is alive and in sync.
    pub fn elect_preferred(&mut self, alive: &BTreeSet<i32>) -> Result<(), Refusal> {
        let Some(preferred) = self.replicas.first().copied() else {
            return Err(refusal(
                code::PREFERRED_LEADER_NOT_AVAILABLE,
                "the partition has no replicas",
            ));
        };
        if self.leader == preferred {
            return Err(refusal(
                code::ELECTION_NOT_NEEDED,
                format!("broker {preferred} already leads"),
            ));
        }
        if !alive.contains(&preferred) || !self.isr.contains(&preferred) {
            return Err(refusal(
                code::PREFERRED_LEADER_NOT_AVAILABLE,
                format!(
                    "the preferred leader {preferred} is {}",
                    if alive.contains(&preferred) {
                        "not in sync"
                    } else {
                        "not alive"
                    }
                ),
            ));
        }
        self.set_leader(preferred);
        self.bump();
        Ok(())
    }

    /// Unclean election of an offline partition: an in-sync replica if one is alive, else any
    /// live replica, which may lack acknowledged records (the ISR becomes that replica).
    pub fn elect_unclean(&mut self, alive: &BTreeSet<i32>) -> Result<(), Refusal> {
        if self.has_leader() {
            return Err(refusal(
                code::ELECTION_NOT_NEEDED,
                format!("broker {} leads", self.leader),
            ));
        }
        if let Some(l) = self.in_sync_candidate(alive, NO_LEADER) {
            self.set_leader(l);
        } else if let Some(l) = self.replicas.iter().copied().find(|r| alive.contains(r)) {
            self.isr = vec![l];
            self.set_leader(l);
        } else {
            return Err(refusal(
                code::ELIGIBLE_LEADERS_NOT_AVAILABLE,
                format!("no replica of {:?} is alive", self.replicas),
            ));
        }
        self.bump();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    fn clean(a: &BTreeSet<i32>) -> Electorate<'_> {
        Electorate {
            alive: a,
            unclean: false,
        }
    }

    #[test]
    fn a_stopped_leader_hands_over_to_the_next_in_sync_replica_in_order() {
        let mut p = PartitionRecord::new(vec![0, 1, 2], 0);
        p.isr = vec![0, 2];
        let a = alive(&[1, 2]);
        assert!(p.broker_stopped(0, clean(&a)));
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (2, 1, vec![2]));
        assert_eq!(p.partition_epoch, 1);
    }

    #[test]
    fn the_last_in_sync_replica_stays_in_the_isr_and_leads_again_when_it_returns() {
        let mut p = PartitionRecord::new(vec![0, 1], 3);
        p.isr = vec![0];
        let a = alive(&[1]);
        assert!(p.broker_stopped(0, clean(&a)));
        assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![0]));
        assert_eq!(
            p.leader_epoch, 4,
            "going offline fences the old leader's epoch"
        );
        // Broker 1 is alive but out of sync: it must not be elected.
        assert!(!p.broker_returned(1, clean(&a)));
        let a = alive(&[0, 1]);
        assert!(p.broker_returned(0, clean(&a)));
        assert_eq!((p.leader, p.leader_epoch), (0, 5));
    }

    #[test]
    fn unclean_election_takes_any_live_replica_when_allowed() {
        let mut p = PartitionRecord::new(vec![0, 1], 0);
        p.isr = vec![0];
        let a = alive(&[1]);
        let e = Electorate {
            alive: &a,
            unclean: true,
        };
        assert!(p.broker_stopped(0, e));
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
    }

    #[test]
    fn a_stopped_follower_leaves_the_isr() {
        let mut p = PartitionRecord::new(vec![0, 1, 2], 0);
        let a = alive(&[0, 2]);
        assert!(p.broker_stopped(1, clean(&a)));
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (0, 0, vec![0, 2])
        );
        // Not a replica: nothing changes.
        assert!(!p.broker_stopped(7, clean(&a)));
    }

    #[test]
    fn isr_changes_are_checked_against_the_leaders_view() {
        let mut p = PartitionRecord::new(vec![0, 1, 2], 0);
        let a = alive(&[0, 1, 2]);
        let code_of = |r: Result<(), Refusal>| r.map_err(|e| e.code).err();
        assert_eq!(
            code_of(p.clone().alter_isr(1, 0, 0, &[1], &a)),
            Some(code::NOT_LEADER_OR_FOLLOWER)
        );
        assert_eq!(
            code_of(p.clone().alter_isr(0, 1, 0, &[0], &a)),
            Some(code::FENCED_LEADER_EPOCH)
        );
        assert_eq!(
            code_of(p.clone().alter_isr(0, 0, 5, &[0], &a)),
            Some(code::INVALID_UPDATE_VERSION)
        );
        assert_eq!(
            code_of(p.clone().alter_isr(0, 0, 0, &[1, 2], &a)),
            Some(code::INVALID_REQUEST),
            "the leader must stay in the ISR"
        );
        assert_eq!(
            code_of(p.clone().alter_isr(0, 0, 0, &[0, 9], &a)),
            Some(code::INVALID_REQUEST)
        );
        p.alter_isr(0, 0, 0, &[2, 0], &a).expect("shrink");
        assert_eq!((p.isr.clone(), p.partition_epoch), (vec![0, 2], 1));
        // A dead broker cannot join; a live one can.
        let only = alive(&[0, 2]);
        assert_eq!(
            code_of(p.clone().alter_isr(0, 0, 1, &[0, 1, 2], &only)),
            Some(code::INELIGIBLE_REPLICA)
        );
        p.alter_isr(0, 0, 1, &[0, 1, 2], &a).expect("expand");
        assert_eq!(p.isr, vec![0, 1, 2]);
    }

    #[test]
    fn a_reassignment_adds_replicas_then_drops_the_old_ones_once_in_sync() {
        let mut p = PartitionRecord::new(vec![0, 1], 0);
        let a = alive(&[0, 1, 2, 3]);
        assert_eq!(p.reassign(Some(&[2, 3]), &a), Ok(true));
        assert_eq!(p.replicas, vec![2, 3, 0, 1]);
        assert_eq!(
            (p.adding.clone(), p.removing.clone()),
            (vec![2, 3], vec![0, 1])
        );
        assert_eq!(
            p.leader, 0,
            "the old leader serves until the new replicas are in sync"
        );
        let pe = p.partition_epoch;
        p.alter_isr(0, 0, pe, &[0, 1, 2], &a).expect("2 joins");
        assert!(p.is_reassigning(), "3 is not in sync yet");
        let pe = p.partition_epoch;
        p.alter_isr(0, 0, pe, &[0, 1, 2, 3], &a).expect("3 joins");
        assert!(!p.is_reassigning());
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![2, 3], vec![2, 3])
        );
        assert_eq!(
            (p.leader, p.leader_epoch),
            (2, 1),
            "leadership moved to the new set"
        );
    }

    #[test]
    fn cancelling_a_reassignment_restores_the_original_replicas() {
        let mut p = PartitionRecord::new(vec![0], 2);
        let a = alive(&[0, 1]);
        p.reassign(Some(&[1]), &a).expect("start");
        assert_eq!(p.replicas, vec![1, 0]);
        assert_eq!(p.reassign(None, &a), Ok(true));
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![0], vec![0], 0)
        );
        assert_eq!(p.leader_epoch, 2);
        assert_eq!(
            p.reassign(None, &a).map_err(|e| e.code),
            Err(code::NO_REASSIGNMENT_IN_PROGRESS)
        );
        // Assigning the current replicas is a no-op, and cancels one in progress.
        assert_eq!(p.reassign(Some(&[0]), &a), Ok(false));
        p.reassign(Some(&[1]), &a).expect("start");
        assert_eq!(p.reassign(Some(&[0]), &a), Ok(true));
        assert!(!p.is_reassigning());
    }

    #[test]
    fn shrinking_the_replica_set_completes_at_once() {
        let mut p = PartitionRecord::new(vec![0, 1, 2], 0);
        let a = alive(&[0, 1, 2]);
        assert_eq!(p.reassign(Some(&[1, 2]), &a), Ok(true));
        assert_eq!(
            (p.replicas.clone(), p.isr.clone()),
            (vec![1, 2], vec![1, 2])
        );
        assert_eq!((p.leader, p.leader_epoch), (1, 1));
        assert!(!p.is_reassigning());
    }

    #[test]
    fn invalid_replica_sets_are_refused() {
        let mut p = PartitionRecord::new(vec![0], 0);
        let a = alive(&[0, 1]);
        for bad in [&[][..], &[1, 1][..]] {
            assert_eq!(
                p.reassign(Some(bad), &a).map_err(|e| e.code),
                Err(code::INVALID_REPLICA_ASSIGNMENT)
            );
        }
        assert_eq!(p, PartitionRecord::new(vec![0], 0));
    }

    #[test]
    fn preferred_election_only_moves_to_a_live_in_sync_first_replica() {
        let mut p = PartitionRecord::new(vec![0, 1, 2], 0);
        let a = alive(&[0, 1, 2]);
        assert_eq!(
            p.elect_preferred(&a).map_err(|e| e.code),
            Err(code::ELECTION_NOT_NEEDED)
        );
        p.broker_stopped(0, clean(&alive(&[1, 2])));
        assert_eq!(p.leader, 1);
        assert_eq!(
            p.elect_preferred(&a).map_err(|e| e.code),
            Err(code::PREFERRED_LEADER_NOT_AVAILABLE),
            "0 left the ISR"
        );
        let pe = p.partition_epoch;
        p.alter_isr(1, 1, pe, &[0, 1, 2], &a)
            .expect("0 back in sync");
        p.elect_preferred(&a).expect("elect 0");
        assert_eq!((p.leader, p.leader_epoch), (0, 2));
    }

    #[test]
    fn unclean_election_by_request() {
        let mut p = PartitionRecord::new(vec![0, 1], 0);
        p.isr = vec![0];
        p.broker_stopped(0, clean(&alive(&[1])));
        assert_eq!(p.leader, NO_LEADER);
        assert_eq!(
            p.elect_unclean(&alive(&[])).map_err(|e| e.code),
            Err(code::ELIGIBLE_LEADERS_NOT_AVAILABLE)
        );
        p.elect_unclean(&alive(&[1])).expect("unclean");
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
    }

    #[test]
    fn a_lost_volume_gives_up_its_copies_and_the_best_remaining_one_leads() {
        let a = alive(&[0, 1, 2]);
        // In sync with others: it just leaves the ISR (and the leadership).
        let mut p = PartitionRecord::new(vec![0, 1, 2], 0);
        assert!(p.volume_lost(0, &a));
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch),
            (1, vec![1, 2], 1)
        );
        // The last in-sync copy: an out-of-sync live replica has more than nothing.
        let mut p = PartitionRecord::new(vec![0, 1, 2], 0);
        p.isr = vec![0];
        assert!(p.volume_lost(0, &a));
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
        // ... and with the others down, the first to return leads.
        let mut p = PartitionRecord::new(vec![0, 1], 0);
        p.isr = vec![0];
        assert!(p.volume_lost(0, &alive(&[0])));
        assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![]));
        let e = Electorate {
            alive: &a,
            unclean: false,
        };
        assert!(p.broker_returned(1, e));
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
        // One copy: served again, empty, by the same broker.
        let mut p = PartitionRecord::new(vec![0], 4);
        assert!(p.volume_lost(0, &a));
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (0, vec![0], 5));
        // Not in sync and not leading: nothing to give up.
        let mut p = PartitionRecord::new(vec![0, 1], 0);
        p.isr = vec![1];
        p.leader = 1;
        assert!(!p.volume_lost(0, &a));
    }

    #[test]
    fn metadata_from_before_replication_reads_as_one_replica() {
        let p: PartitionRecord =
            serde_json::from_str(r#"{"owner":2,"leader_epoch":5,"moving_to":null}"#)
                .expect("old record");
        assert_eq!(p, PartitionRecord::new(vec![2], 5));
        let moving: PartitionRecord =
            serde_json::from_str(r#"{"owner":2,"leader_epoch":5,"moving_to":0}"#)
                .expect("old record with a move");
        assert_eq!(moving.replicas, vec![2, 0]);
        assert_eq!(
            (moving.adding.clone(), moving.removing.clone()),
            (vec![0], vec![2])
        );
        let json = serde_json::to_string(&moving).expect("encode");
        let back: PartitionRecord = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, moving);
    }
}
