//! Group coordinator roles leaving a draining broker: per group, new commits are refused
//! (NOT_COORDINATOR) and in-flight ones finish, the committed offsets are copied to the least
//! loaded active broker ([`Request::AdoptGroup`]), and the quorum moves the role there.
//! Members rediscover the coordinator and rejoin.
//!
//! (Partition data does not move here: a reassignment adds replicas, which copy the partition
//! by following its leader, see `crate::replica`.)

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::Instrument;

use crate::cluster::network::{Request, Response};
use crate::cluster::state::{BrokerState, Command, Outcome};
use crate::cluster::PartitionService;
use crate::context::BrokerContext;
use crate::group::offsets::StoredOffset;

const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// This broker's side of the inter-broker RPCs: taking over a group's committed offsets.
pub struct GroupAdoption {
    pub ctx: Arc<BrokerContext>,
}

impl PartitionService for GroupAdoption {
    fn adopt_group(
        &self,
        group: String,
        offsets: Vec<(String, i32, StoredOffset)>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let ctx = Arc::clone(&self.ctx);
        async move {
            let n = offsets.len();
            let g = group.clone();
            let groups = Arc::clone(&ctx.groups);
            tokio::task::spawn_blocking(move || groups.import_offsets(&g, offsets))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("group {group}: {e}"))?;
            tracing::info!(group = %group, offsets = n, "took over the group's committed offsets");
            Ok(())
        }
        .boxed()
    }
}

/// How often a draining broker looks for group coordinator roles to hand over.
const GROUP_DRAIN_EVERY: Duration = Duration::from_secs(1);

/// Spawns the task that hands this broker's group coordinator roles to other brokers while it
/// is draining (marked for removal): per group, new commits are refused (NOT_COORDINATOR) and
/// in-flight ones finish, the committed offsets are copied to the least loaded active broker,
/// and the quorum moves the role there. Members rediscover the coordinator and rejoin.
pub fn spawn_group_drain(ctx: Arc<BrokerContext>) {
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(GROUP_DRAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let state = ctx.cluster.state();
                let draining = state
                    .brokers
                    .get(&ctx.node_id)
                    .is_some_and(|b| b.state == BrokerState::Draining);
                if !draining || !ctx.cluster.is_ready() {
                    continue;
                }
                for group in state.groups_of(ctx.node_id) {
                    if let Err(e) = hand_over_group(&ctx, &group).await {
                        tracing::warn!(group = %group, error = %e, "could not hand the group's coordinator role over; retrying");
                    }
                }
            }
        }
        .instrument(tracing::info_span!("group_drain")),
    );
}

async fn hand_over_group(ctx: &Arc<BrokerContext>, group: &str) -> Result<(), String> {
    let state = ctx.cluster.state();
    let target = state
        .active_brokers()
        .filter(|b| b.id != ctx.node_id)
        .map(|b| (state.groups_of(b.id).len(), b.id, b.cluster_addr.clone()))
        .min()
        .ok_or("no active broker to take the group")?;
    let (_, to, addr) = target;
    // From here on this broker refuses the group's requests; the write lock waits for
    // commits already in progress.
    ctx.group_handover.write().await.insert(group.to_string());
    let result = async {
        let offsets = ctx.groups.export_offsets(group);
        let n = offsets.len();
        let req = Request::AdoptGroup {
            group: group.to_string(),
            offsets,
        };
        match ctx.cluster.call(&addr, req, RPC_TIMEOUT).await {
            Ok(Response::AdoptGroup(Ok(()))) => {}
            Ok(other) => {
                return Err(format!(
                    "broker {to} refused the offsets: {}",
                    short(&other)
                ))
            }
            Err(e) => return Err(e.to_string()),
        }
        match ctx
            .cluster
            .propose(Command::MoveGroup {
                group: group.to_string(),
                to,
            })
            .await
        {
            Ok(Outcome::Coordinator(_)) => {}
            Ok(other) => return Err(format!("the quorum refused the move: {other:?}")),
            Err(e) => return Err(e.to_string()),
        }
        tracing::info!(group, to, offsets = n, "group coordinator role handed over");
        if let Err(e) = ctx.groups.forget_offsets(group) {
            tracing::warn!(group, error = %e, "could not drop the moved group's offsets here");
        }
        Ok(())
    }
    .await;
    ctx.group_handover.write().await.remove(group);
    result
}

fn short(r: &Response) -> String {
    let s = format!("{r:?}");
    s.chars().take(200).collect()
}
