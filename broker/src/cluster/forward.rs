//! Proposals: `Member::propose` commits a command through the leader. On the leader it is a
//! local `client_write`; on a follower the command goes to the leader as
//! [`Request::Forward`], which the leader answers with `Member::accept_forward`. Retries
//! until the deadline, except when the leader may have committed the command already
//! ([`ClusterError::Ambiguous`]).

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::time::Instant;

use super::network::{self, CallError, Forwarded, LeaderInfo, Refusal, Request, Response};
use super::state::Command;
use super::{ClusterError, Member};

impl Member {
    async fn wait_applied(&self, index: u64, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .raft
            .wait(Some(left.max(Duration::from_millis(1))))
            .applied_index_at_least(Some(index), "proposal applied locally")
            .await;
    }

    /// Commits `cmd` (locally when leader, else forwarded to the leader), retrying until
    /// `deadline`; on success the command is applied on this member too.
    pub(super) async fn propose(
        &self,
        cmd: Command,
        deadline: Instant,
    ) -> Result<Forwarded, ClusterError> {
        let started = Instant::now();
        let mut last: (Option<LeaderInfo>, String);
        // The last leader a forward was sent to (kept when later attempts know no leader).
        let mut tried: Option<LeaderInfo> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(ClusterError::ShuttingDown);
            }
            let seen_leader = self.raft.metrics().borrow().current_leader;
            match self.raft.client_write(cmd.clone()).await {
                Ok(r) => {
                    return Ok(Forwarded {
                        index: r.log_id.index,
                        outcome: r.data,
                    })
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(id), Some(node)) if self.cluster_addr.is_some() => {
                            let l = LeaderInfo {
                                id: id as i32,
                                addr: node.addr,
                            };
                            let left = deadline.saturating_duration_since(Instant::now());
                            let req = Request::Forward(cmd.clone());
                            match network::call(
                                &self.transport,
                                &l.addr,
                                &req,
                                left.max(Duration::from_millis(100)),
                            )
                            .await
                            {
                                Ok(Response::Forward(Ok(fw))) => {
                                    self.wait_applied(fw.index, deadline).await;
                                    return Ok(fw);
                                }
                                Ok(Response::Forward(Err(r))) => last = (Some(l), r.to_string()),
                                Ok(other) => {
                                    last = (Some(l), format!("unexpected answer {other:?}"))
                                }
                                Err(e @ CallError::Connect { .. }) => {
                                    last = (Some(l), e.to_string())
                                }
                                Err(e) => {
                                    return Err(ClusterError::Ambiguous {
                                        leader: l.id,
                                        addr: l.addr,
                                        error: e.to_string(),
                                    })
                                }
                            }
                        }
                        (id, _) => {
                            last = (
                                None,
                                format!("no reachable leader known (leader id {id:?})"),
                            )
                        }
                    }
                }
                Err(RaftError::APIError(e)) => last = (None, e.to_string()),
                Err(RaftError::Fatal(e)) => {
                    return Err(if self.cancel.is_cancelled() {
                        ClusterError::ShuttingDown
                    } else {
                        ClusterError::Raft(e.to_string())
                    })
                }
            }
            if last.0.is_some() {
                tried.clone_from(&last.0);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClusterError::Deadline {
                    leader: match &tried {
                        Some(l) => format!("node {} at {}", l.id, l.addr),
                        None => "none".to_string(),
                    },
                    error: last.1,
                    waited: now - started,
                });
            }
            // Wait (bounded) for a leader change before the next attempt.
            let pause = (deadline - now).min(Duration::from_millis(200));
            let _ = self
                .raft
                .wait(Some(pause))
                .metrics(
                    |m| m.current_leader.is_some() && m.current_leader != seen_leader,
                    "leader change",
                )
                .await;
        }
    }

    /// Leader side of [`Request::Forward`]: commits a command another member proposed.
    pub(super) async fn accept_forward(&self, cmd: Command) -> Result<Forwarded, Refusal> {
        match self.raft.client_write(cmd).await {
            Ok(r) => Ok(Forwarded {
                index: r.log_id.index,
                outcome: r.data,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(Refusal::NotLeader {
                    leader: self.leader_info(),
                })
            }
            Err(e) => Err(Refusal::Failed(e.to_string())),
        }
    }
}
