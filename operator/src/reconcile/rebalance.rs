//! The rebalance phase (`spec.autoRebalance`): once the brokers are settled and every partition
//! is in sync, move partition copies a batch at a time until every broker holds within one
//! replica of the others.

use crate::events::EventType;
use k8s_openapi::api::core::v1::Pod;

use super::brokers::{broker_disks, cluster_view, first_ready_broker, move_partitions, MovesAsked};
use super::Context;
use crate::builders::Names;
use crate::crd::MessageQueue;
use crate::drain::{self, RebalancePlan};
use crate::kafka::ALTER_PARTITION_REASSIGNMENTS;

/// One pass of `spec.autoRebalance` once the brokers are settled: the next batch of moves that
/// brings their replica counts within one of each other. Returns the progress message while
/// moves are requested or in flight, None when balanced (or when the brokers cannot move
/// partitions, which is logged).
pub(super) async fn rebalance(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
) -> Option<String> {
    let brokers = mq.spec.replicas;
    let (node, pod, mut admin) = first_ready_broker(ctx, names, pods, brokers).await?;
    if !admin.supports(ALTER_PARTITION_REASSIGNMENTS) {
        tracing::warn!(pod = %pod, "autoRebalance: the brokers do not serve AlterPartitionReassignments");
        return None;
    }
    let (metadata, mut view) = match cluster_view(&mut admin).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(pod = %pod, node, error = %e, "autoRebalance: cannot read the cluster");
            return None;
        }
    };
    let mut plan = drain::plan_rebalance(&view, brokers);
    if matches!(plan, RebalancePlan::Move { .. }) {
        let disks = broker_disks(ctx, names, &metadata, &view).await;
        if !disks.is_empty() {
            view = view.with_disks(disks);
            plan = drain::plan_rebalance(&view, brokers);
        }
    }
    match plan {
        RebalancePlan::Balanced => None,
        RebalancePlan::Waiting { moving } => Some(format!(
            "rebalancing: waiting for {moving} partition moves to finish"
        )),
        RebalancePlan::Move { requests, load } => {
            let asked = move_partitions(&mut admin, &requests).await;
            let MovesAsked { accepted, refused } = match asked {
                Ok(asked) => asked,
                Err(e) => {
                    tracing::warn!(pod = %pod, error = %e, "autoRebalance: moves refused");
                    return None;
                }
            };
            for (tp, _, e) in &refused {
                tracing::warn!(partition = %tp, error = %e, "autoRebalance: move refused");
            }
            if accepted.is_empty() {
                return None;
            }
            let counts: Vec<String> = load
                .iter()
                .map(|(b, n)| format!("broker {b}: {n}"))
                .collect();
            let message = format!(
                "rebalancing partitions over {brokers} brokers ({}): moving {}",
                counts.join(", "),
                accepted.join(", ")
            );
            ctx.publish(
                mq,
                EventType::Normal,
                "Rebalancing",
                "Rebalance",
                message.clone(),
            )
            .await;
            Some(message)
        }
    }
}
