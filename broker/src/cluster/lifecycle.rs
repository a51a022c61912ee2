//! How a member gets into the quorum and out of it (bootstrap rule in `README.md`).
//!
//! The member's own side: `Member::bootstrap` on a fresh volume (probe the seeds, JoinEmpty
//! through the leader, or found a cluster), `Member::rejoin` after a restart with persisted
//! state, then `Member::register` until its `RegisterBroker` is applied here (ready).
//!
//! The leader's side: Join (learner, catch-up, voter while there are fewer than
//! [`MAX_VOTERS`]), JoinEmpty (the member a lost volume leaves behind is removed first),
//! RemoveNode, and the keeper task that promotes caught-up learners.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use tokio::time::Instant;

use super::network::{self, ProbeReply, Refusal, Request, Response, UNDECODABLE};
use super::state::{BrokerRecord, Command};
use super::{ClusterError, Member, NodeId, MAX_VOTERS, PROPOSE_DEADLINE};

/// How long the leader waits for a joining broker to catch up before answering Join.
const JOIN_CATCH_UP: Duration = Duration::from_secs(20);
/// Bootstrap: pause between rounds of probing the seeds.
const BOOTSTRAP_RETRY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Leader-side voter maintenance period.
const KEEPER_PERIOD: Duration = Duration::from_millis(500);
/// A learner within this many entries of the leader's log counts as caught up.
const CAUGHT_UP_LAG: u64 = 16;

impl Member {
    /// Fresh volume: join a cluster a seed knows, or found one (README: bootstrap rule).
    pub(super) async fn bootstrap(&self) {
        if self.cluster_addr.is_none() {
            self.found().await;
            return;
        }
        let mut round = 0u64;
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            // No early return once initialized: the leader of a cluster that still lists our id
            // (our volume was lost) replicates to us before we ask anything, and only
            // JoinEmpty makes it forget the member we were. A repeated JoinEmpty (its answer
            // lost) removes and adds us again, which is slow but safe.
            let mut others = 0usize;
            let mut leader = None;
            let mut member_seen = false;
            let mut errors = Vec::new();
            for seed in &self.seeds {
                match network::call(&self.transport, seed, &Request::Probe, PROBE_TIMEOUT).await {
                    Ok(Response::Probe(p)) if p.node_id == self.node_id => {}
                    Ok(Response::Probe(ProbeReply {
                        member, leader: l, ..
                    })) => {
                        others += 1;
                        member_seen |= member;
                        if member && leader.is_none() {
                            leader = l;
                        }
                    }
                    Ok(other) => {
                        others += 1;
                        errors.push(format!("{seed}: unexpected answer {other:?}"));
                    }
                    Err(e) => {
                        others += 1;
                        errors.push(e.to_string());
                    }
                }
            }
            if let Some(l) = leader {
                tracing::info!(node_id = self.node_id, leader = l.id, addr = %l.addr,
                    "joining the cluster");
                // Removal and re-adding wait for a catch-up each.
                let timeout = 2 * JOIN_CATCH_UP + Duration::from_secs(5);
                let mut answer = network::call(
                    &self.transport,
                    &l.addr,
                    &Request::JoinEmpty(self.me.clone()),
                    timeout,
                )
                .await;
                if matches!(&answer, Ok(Response::Error(e)) if e.starts_with(UNDECODABLE)) {
                    // A leader from before JoinEmpty (a version roll in progress).
                    answer = network::call(
                        &self.transport,
                        &l.addr,
                        &Request::Join(self.me.clone()),
                        timeout,
                    )
                    .await;
                }
                match answer {
                    Ok(Response::Join(Ok(()))) => {
                        tracing::info!(node_id = self.node_id, leader = l.id, "joined the cluster");
                        self.voting.store(true, Ordering::SeqCst);
                        return;
                    }
                    Ok(other) => errors.push(format!("join via {}: {other:?}", l.addr)),
                    Err(e) => errors.push(format!("join: {e}")),
                }
            } else if !member_seen && (others == 0 || self.node_id == 0) {
                self.found().await;
                return;
            }
            if round % 10 == 0 {
                tracing::info!(
                    node_id = self.node_id,
                    round,
                    member_seen,
                    ?errors,
                    "no cluster to join yet; retrying the seeds"
                );
            }
            round += 1;
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(BOOTSTRAP_RETRY) => {}
            }
        }
    }

    async fn found(&self) {
        self.voting.store(true, Ordering::SeqCst);
        let members = BTreeMap::from([(
            self.my_id(),
            BasicNode {
                addr: self.me.cluster_addr.clone(),
            },
        )]);
        match self.raft.initialize(members).await {
            Ok(()) => tracing::info!(node_id = self.node_id, "founded a cluster of one"),
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                tracing::info!(node_id = self.node_id, reason = %e, "already initialized")
            }
            Err(e) => tracing::error!(node_id = self.node_id, error = %e, "cannot found a cluster"),
        }
    }

    /// Registers this broker (RegisterBroker(me)) once a member; ready when applied locally.
    pub(super) async fn register(&self) {
        let mut metrics = self.raft.metrics();
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            if !self.is_member() {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = metrics.changed() => continue,
                }
            }
            let cmd = Command::RegisterBroker(BrokerRecord {
                fresh_volume: self.fresh_volume.load(Ordering::SeqCst),
                ..self.me.clone()
            });
            match self.propose(cmd, Instant::now() + PROPOSE_DEADLINE).await {
                Ok(f) if !self.applied_locally(f.index) => {
                    tracing::warn!(
                        node_id = self.node_id,
                        index = f.index,
                        "registration committed but not replicated here yet; retrying"
                    )
                }
                Ok(f) => {
                    tracing::info!(
                        node_id = self.node_id,
                        index = f.index,
                        "broker registered; cluster member ready"
                    );
                    self.ready_tx.send_replace(true);
                    return;
                }
                Err(ClusterError::ShuttingDown) => return,
                Err(e) => {
                    tracing::warn!(node_id = self.node_id, error = %e, "registering the broker; retrying")
                }
            }
        }
    }

    fn applied_locally(&self, index: u64) -> bool {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .is_some_and(|l| l.index >= index)
    }

    /// Restart with persisted state: `rejoin_once` until it succeeds (or shutdown).
    pub(super) async fn rejoin(&self) {
        if self.cluster_addr.is_none() {
            return;
        }
        let mut round = 0u64;
        while !self.rejoin_once(round % 10 == 0).await {
            round += 1;
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(BOOTSTRAP_RETRY) => {}
            }
        }
    }

    /// A restarted member sends Join(me) to the leader, found through the membership's other
    /// members and the seeds: a no-op for a current voter; updates its address when it
    /// restarted at another one (the old address is unreachable, so it may never hear from
    /// the leader otherwise); adds it back when it was removed (a scaled-down broker whose
    /// volume was kept). True once the leader answered OK.
    async fn rejoin_once(&self, log: bool) -> bool {
        let m = self.metrics().membership_config;
        let recorded = m
            .membership()
            .get_node(&self.my_id())
            .map(|n| n.addr.clone());
        if self.is_leader() {
            return self.join(self.me.clone()).await.is_ok();
        }
        let mut candidates: Vec<String> = m
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.my_id())
            .map(|(_, n)| n.addr.clone())
            .collect();
        candidates.extend(self.seeds.iter().cloned());
        let mut leader = self.leader_info().filter(|l| l.id != self.node_id);
        for c in &candidates {
            if leader.is_some() {
                break;
            }
            if let Ok(Response::Probe(p)) =
                network::call(&self.transport, c, &Request::Probe, PROBE_TIMEOUT).await
            {
                leader = p.leader.filter(|l| l.id != self.node_id);
            }
        }
        let Some(l) = leader else {
            if log {
                tracing::info!(node_id = self.node_id, recorded = ?recorded,
                    "restarted member: no leader found yet to rejoin through");
            }
            return false;
        };
        let timeout = JOIN_CATCH_UP + Duration::from_secs(5);
        match network::call(
            &self.transport,
            &l.addr,
            &Request::Join(self.me.clone()),
            timeout,
        )
        .await
        {
            Ok(Response::Join(Ok(()))) => {
                tracing::info!(node_id = self.node_id, recorded = ?recorded,
                    addr = %self.me.cluster_addr, leader = l.id, "restarted member rejoined");
                true
            }
            other => {
                if log {
                    tracing::info!(node_id = self.node_id, leader = l.id, answer = ?other,
                        "rejoining; retrying");
                }
                false
            }
        }
    }

    pub(super) async fn remove_node(&self, id: i32) -> Result<(), ClusterError> {
        let started = Instant::now();
        let deadline = started + PROPOSE_DEADLINE;
        let mut last: String;
        loop {
            if self.cancel.is_cancelled() {
                return Err(ClusterError::ShuttingDown);
            }
            if self.is_leader() {
                match self.remove_local(id).await {
                    Ok(()) => return Ok(()),
                    Err(Refusal::Failed(reason)) => {
                        return Err(ClusterError::RemoveRefused { node: id, reason })
                    }
                    Err(r) => last = r.to_string(),
                }
            } else if let (Some(l), true) = (self.leader_info(), self.cluster_addr.is_some()) {
                let left = deadline.saturating_duration_since(Instant::now());
                match network::call(&self.transport, &l.addr, &Request::RemoveNode(id), left).await
                {
                    Ok(Response::RemoveNode(Ok(()))) => return Ok(()),
                    Ok(Response::RemoveNode(Err(Refusal::Failed(reason)))) => {
                        return Err(ClusterError::RemoveRefused { node: id, reason })
                    }
                    Ok(other) => last = format!("leader {} at {}: {other:?}", l.id, l.addr),
                    Err(e) => last = e.to_string(),
                }
            } else {
                last = "no leader known".to_string();
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Deadline {
                    leader: self
                        .leader_info()
                        .map(|l| format!("node {} at {}", l.id, l.addr))
                        .unwrap_or_else(|| "none".to_string()),
                    error: last,
                    waited: started.elapsed(),
                });
            }
            let _ = self
                .raft
                .wait(Some(Duration::from_millis(200)))
                .metrics(|m| m.current_leader.is_some(), "leader")
                .await;
        }
    }

    /// Leader side of remove_node.
    pub(super) async fn remove_local(&self, id: i32) -> Result<(), Refusal> {
        let _g = self.membership_lock.lock().await;
        let nid = id as NodeId;
        let m = self.metrics().membership_config;
        let membership = m.membership();
        if membership.get_node(&nid).is_none() {
            return Ok(());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&nid) {
            if voters.len() == 1 {
                return Err(Refusal::Failed(format!("node {id} is the last voter")));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([nid]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([nid]))
        };
        match self.raft.change_membership(change, false).await {
            Ok(_) => {
                tracing::info!(
                    node_id = self.node_id,
                    removed = id,
                    "node removed from the membership"
                );
                Ok(())
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Refusal::NotLeader {
                    leader: self
                        .leader_info()
                        .filter(|l| Some(l.id as NodeId) == f.leader_id),
                })
            }
            Err(e) => Err(Refusal::Failed(e.to_string())),
        }
    }

    /// Leader side of JoinEmpty. A member id coming back with an empty volume (a deleted PVC,
    /// a replaced disk) is not the member it was: Raft's safety rests on every member
    /// remembering its log and the votes it gave, so the old member is removed before the empty
    /// one joins as a new learner that votes only once it has caught up.
    pub(super) async fn join_empty(&self, rec: BrokerRecord) -> Result<(), Refusal> {
        if !self.is_leader() {
            return Err(Refusal::NotLeader {
                leader: self.leader_info(),
            });
        }
        let nid = rec.id as NodeId;
        if self
            .metrics()
            .membership_config
            .membership()
            .get_node(&nid)
            .is_some()
        {
            tracing::warn!(node_id = self.node_id, member = rec.id, addr = %rec.cluster_addr,
                "a member came back with an empty volume; removing the member it was before it joins again");
            self.remove_local(rec.id).await?;
        }
        self.join(rec).await
    }

    /// Leader side of Join: learner, caught up, then voter while fewer than MAX_VOTERS.
    pub(super) async fn join(&self, rec: BrokerRecord) -> Result<(), Refusal> {
        if !self.is_leader() {
            return Err(Refusal::NotLeader {
                leader: self.leader_info(),
            });
        }
        let _g = self.membership_lock.lock().await;
        let nid = rec.id as NodeId;
        let node = BasicNode {
            addr: rec.cluster_addr.clone(),
        };
        let m = self.metrics().membership_config;
        let membership = m.membership();
        let existing = membership.get_node(&nid).cloned();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let not_leader =
            |f: openraft::error::ForwardToLeader<NodeId, BasicNode>| Refusal::NotLeader {
                leader: self
                    .leader_info()
                    .filter(|l| Some(l.id as NodeId) == f.leader_id),
            };
        if let Some(old) = existing.as_ref().filter(|n| **n != node) {
            // A member that restarted at another address: update it in place.
            tracing::info!(node_id = self.node_id, member = rec.id, old = %old.addr,
                new = %rec.cluster_addr, "member address changed");
            match self
                .raft
                .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(nid, node)])), true)
                .await
            {
                Ok(_) => {}
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    return Err(not_leader(f))
                }
                Err(e) => return Err(Refusal::Failed(e.to_string())),
            }
        } else if existing.is_none() {
            tracing::info!(node_id = self.node_id, joining = rec.id, addr = %rec.cluster_addr,
                "adding a learner");
            match tokio::time::timeout(JOIN_CATCH_UP, self.raft.add_learner(nid, node, true)).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    return Err(not_leader(f))
                }
                Ok(Err(e)) => return Err(Refusal::Failed(e.to_string())),
                Err(_) => {
                    return Err(Refusal::Failed(format!(
                        "node {} did not catch up within {JOIN_CATCH_UP:?}",
                        rec.id
                    )))
                }
            }
        }
        if !voters.contains(&nid) && voters.len() < MAX_VOTERS {
            match self
                .raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([nid])), true)
                .await
            {
                Ok(_) => tracing::info!(node_id = self.node_id, promoted = rec.id, "voter added"),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    return Err(not_leader(f))
                }
                Err(e) => return Err(Refusal::Failed(e.to_string())),
            }
        }
        Ok(())
    }
}

/// Leader-side task: while there are fewer than MAX_VOTERS voters, promote caught-up learners.
pub(super) async fn keep_voters(member: Arc<Member>) {
    let mut tick = tokio::time::interval(KEEPER_PERIOD);
    loop {
        tokio::select! {
            _ = member.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !member.is_leader() {
            continue;
        }
        let m = member.metrics();
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() > 1 {
            continue;
        }
        let voters = membership.voter_ids().count();
        if voters >= MAX_VOTERS {
            continue;
        }
        let last = m.last_log_index.unwrap_or(0);
        let caught_up: BTreeSet<NodeId> = membership
            .learner_ids()
            .filter(|l| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(l).copied().flatten())
                    .is_some_and(|matched| matched.index + CAUGHT_UP_LAG >= last)
            })
            .take(MAX_VOTERS - voters)
            .collect();
        if caught_up.is_empty() {
            continue;
        }
        let _g = member.membership_lock.lock().await;
        match member
            .raft
            .change_membership(ChangeMembers::AddVoterIds(caught_up.clone()), true)
            .await
        {
            Ok(_) => tracing::info!(node_id = member.node_id, promoted = ?caught_up,
                "learners promoted to voters"),
            Err(e) => tracing::warn!(node_id = member.node_id, error = %e, "promoting learners"),
        }
    }
}
