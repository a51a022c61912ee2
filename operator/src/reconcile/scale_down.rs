//! The scale-down phase: when `spec.replicas` drops below the StatefulSet's size, move every
//! partition off the brokers to remove and let them leave the cluster before the StatefulSet
//! shrinks; where partitions cannot move, let only empty brokers go; refuse (Degraded and a
//! Warning Event) what would lose data.

use std::collections::BTreeMap;

use crate::events::EventType;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::Api;

use super::brokers::{broker_disks, cluster_view, first_ready_broker, move_partitions, MovesAsked};
use super::observe::{pod_ip, pod_ordinal};
use super::Context;
use crate::builders::{self, BuildConfig, Children, Names};
use crate::crd::{MessageQueue, MessageQueueStatus};
use crate::drain::{self, DrainPlan};
use crate::kafka::{ALTER_PARTITION_REASSIGNMENTS, DESCRIBE_QUORUM, UNREGISTER_BROKER};
use crate::scale::{self, BrokerReport, ScaleDecision};
use crate::status;

/// What the scale-down phase leaves for the rest of the pass.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// The StatefulSet shrinks in this pass.
    pub(super) shrinking: bool,
    /// Partitions are moving off the brokers to remove, or they are waiting to leave.
    pub(super) draining: Option<String>,
    /// Why the scale-down is refused.
    pub(super) refused: Option<String>,
}

/// The scale-down phase of one pass, when `spec.replicas` is below `current`: one step of the
/// drain, and while it is not done, `children` keep the current size.
pub(super) async fn pass(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    previous: &MessageQueueStatus,
    current: i32,
    children: &mut Children,
) -> Outcome {
    if mq.spec.replicas >= current {
        return Outcome::default();
    }
    let (draining, refused) = match scale_down(mq, ctx, names, pods, previous, current).await {
        ScaleDown::Shrink => {
            return Outcome {
                shrinking: true,
                ..Outcome::default()
            }
        }
        ScaleDown::Hold { draining, refused } => (draining, refused),
    };
    keep_replicas(children, names, &ctx.build, current);
    if let Some(reason) = &refused {
        ctx.warn_unless_on_status(
            mq,
            previous,
            status::DEGRADED,
            "ScaleDownBlocked",
            "Scale",
            reason,
        )
        .await;
    }
    Outcome {
        shrinking: false,
        draining,
        refused,
    }
}

/// Keeps the StatefulSet at `replicas` (a scale-down that is not done yet), with the seeds of those
/// brokers.
fn keep_replicas(
    children: &mut builders::Children,
    names: &Names,
    build: &BuildConfig,
    replicas: i32,
) {
    if let Some(spec) = children.statefulset.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    children
        .configmap
        .data
        .get_or_insert_with(BTreeMap::new)
        .insert(
            builders::SEEDS_KEY.to_string(),
            builders::seeds(names, replicas, &build.cluster_domain),
        );
}

/// What a scale-down pass decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ScaleDown {
    /// Shrink the StatefulSet now.
    Shrink,
    /// Keep the current replicas: partitions are moving (`draining`) or something blocks
    /// (`refused`: Degraded + a Warning Event).
    Hold {
        draining: Option<String>,
        refused: Option<String>,
    },
}

fn hold_refused(reason: String) -> ScaleDown {
    ScaleDown::Hold {
        draining: None,
        refused: Some(reason),
    }
}

fn hold_draining(progress: String) -> ScaleDown {
    ScaleDown::Hold {
        draining: Some(progress),
        refused: None,
    }
}

/// The message for a broker that does not serve an API the drain needs.
fn unsupported(pod: &str, node: i32, addr: &str, key: i16, what: &str, current: i32) -> String {
    format!(
        "broker {pod} (node {node}, {addr}) does not serve {} (Kafka API key {key}), so {what}; \
         upgrade the brokers to a version that serves it, or set replicas back to {current}",
        crate::kafka::api_name(key)
    )
}

/// One pass of a scale-down from `current` to `spec.replicas` brokers: when the brokers form one
/// cluster, move every partition off the brokers to remove (AlterPartitionReassignments, watched
/// through Metadata and ListPartitionReassignments), then unregister them (UnregisterBroker), then
/// shrink. Brokers that run as independent single nodes cannot move partitions, so there only
/// empty brokers may go ([`let_only_empty_brokers_go`]).
async fn scale_down(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    previous: &MessageQueueStatus,
    current: i32,
) -> ScaleDown {
    let desired = mq.spec.replicas;
    let removed: Vec<i32> = (desired..current).collect();
    let removed_text = drain::id_list(&removed);

    // Ask the lowest ready remaining broker about the cluster.
    let asked = first_ready_broker(ctx, names, pods, desired).await;
    let Some((node, pod, mut admin)) = asked else {
        let unmovable = format!(
            "no remaining broker (0..{}) is ready to take them",
            desired - 1
        );
        return let_only_empty_brokers_go(ctx, names, pods, desired, current, &unmovable).await;
    };
    let addr = admin.addr().to_string();
    let metadata = match admin.metadata().await {
        Ok(m) => m,
        Err(e) => {
            return hold_refused(format!(
                "scale-down from {current} to {desired} waits: cannot read the cluster from broker {pod}: {e}"
            ))
        }
    };
    let clustered = metadata.brokers.keys().any(|b| *b != node)
        || admin.supports(ALTER_PARTITION_REASSIGNMENTS)
        || admin.supports(UNREGISTER_BROKER);
    if !clustered {
        let unmovable = format!(
            "the brokers run as independent single nodes (broker {pod} knows no other broker \
             and serves no partition moves)"
        );
        return let_only_empty_brokers_go(ctx, names, pods, desired, current, &unmovable).await;
    }

    let (metadata, mut view) = match cluster_view(&mut admin).await {
        Ok(v) => v,
        Err(e) => {
            return hold_refused(format!(
                "scale-down from {current} to {desired} waits: broker {pod} (node {node}): {e}"
            ))
        }
    };
    let mut plan = drain::plan_drain(&view, desired, &removed);
    if matches!(&plan, DrainPlan::Moving { requests, .. } if !requests.is_empty()) {
        // Before anything moves: does it fit? (Asked only then, as it means a connection to
        // every broker.)
        let disks = broker_disks(ctx, names, &metadata, &view).await;
        if !disks.is_empty() {
            view = view.with_disks(disks);
            plan = drain::plan_drain(&view, desired, &removed);
        }
    }
    match plan {
        DrainPlan::Blocked { reason, .. } => hold_refused(format!(
            "scale-down from {current} to {desired} refused: {reason}"
        )),
        DrainPlan::Moving {
            requests,
            remaining,
            moving,
        } => {
            let mut draining = drain::progress(remaining, moving, &removed);
            if requests.is_empty() {
                return hold_draining(draining);
            }
            if !admin.supports(ALTER_PARTITION_REASSIGNMENTS) {
                return hold_refused(unsupported(
                    &pod,
                    node,
                    &addr,
                    ALTER_PARTITION_REASSIGNMENTS,
                    &format!(
                        "the {remaining} partitions on brokers {removed_text} cannot be moved"
                    ),
                    current,
                ));
            }
            let asked = move_partitions(&mut admin, &requests).await;
            let MovesAsked { accepted, refused } = match asked {
                Ok(asked) => asked,
                Err(e) => {
                    return hold_refused(format!(
                        "scale-down from {current} to {desired} waits: broker {pod} (node {node}) \
                         refused to move the partitions off brokers {removed_text}: {e}"
                    ))
                }
            };
            let failed: Vec<String> = refused
                .iter()
                .map(|(tp, replicas, e)| format!("{}: {e}", drain::move_text(tp, replicas)))
                .collect();
            if !accepted.is_empty() {
                ctx.publish(
                    mq,
                    EventType::Normal,
                    "Draining",
                    "Scale",
                    format!(
                        "moving {} partitions off brokers {removed_text} before scaling from \
                         {current} to {desired}: {}",
                        accepted.len(),
                        accepted.join(", ")
                    ),
                )
                .await;
            }
            if !failed.is_empty() {
                draining.push_str(&format!(
                    "; broker {pod} refused {} moves (retrying): {}",
                    failed.len(),
                    failed.join("; ")
                ));
                ctx.warn_unless_on_status(
                    mq,
                    previous,
                    status::PROGRESSING,
                    "PartitionMoveRefused",
                    "Scale",
                    &draining,
                )
                .await;
            }
            hold_draining(draining)
        }
        DrainPlan::Drained => {
            let members: Vec<i32> = removed
                .iter()
                .copied()
                .filter(|id| view.brokers.contains(id))
                .collect();
            if members.is_empty() {
                return shrink_once_out_of_the_quorum(&mut admin, &pod, &removed, current, desired)
                    .await;
            }
            if !admin.supports(UNREGISTER_BROKER) {
                return hold_refused(unsupported(
                    &pod,
                    node,
                    &addr,
                    UNREGISTER_BROKER,
                    &format!(
                        "brokers {} cannot leave the cluster (their partitions are moved)",
                        drain::id_list(&members)
                    ),
                    current,
                ));
            }
            let mut refused = Vec::new();
            for id in members {
                match admin.unregister_broker(id).await {
                    Ok(()) => {
                        ctx.publish(
                            mq,
                            EventType::Normal,
                            "BrokerUnregistered",
                            "Scale",
                            format!(
                                "broker {id} (pod {}) holds no partition any more and left the cluster",
                                names.pod(id)
                            ),
                        )
                        .await;
                    }
                    Err(e) => refused.push(e.to_string()),
                }
            }
            if refused.is_empty() {
                return shrink_once_out_of_the_quorum(&mut admin, &pod, &removed, current, desired)
                    .await;
            }
            let draining = format!(
                "partitions moved off brokers {removed_text}; waiting for them to leave the \
                 cluster (retrying): {}",
                refused.join("; ")
            );
            ctx.warn_unless_on_status(
                mq,
                previous,
                status::PROGRESSING,
                "BrokerRemovalRefused",
                "Scale",
                &draining,
            )
            .await;
            hold_draining(draining)
        }
    }
}

/// The brokers to remove left the cluster metadata; the StatefulSet shrinks once none of them
/// is a voter of the metadata quorum either (DescribeQuorum, answered by the quorum leader). A
/// pod deleted while still a voter takes its vote and its copy of the quorum log with it: one
/// such vote lost of three leaves no room for another failure, two lose the quorum and every
/// change after it. Sluice brokers leave the quorum before the metadata, so this holds only when
/// that went wrong; it is checked rather than trusted because the volume is deleted next. A
/// broker that does not serve DescribeQuorum (an older Sluice) is not asked.
async fn shrink_once_out_of_the_quorum(
    admin: &mut crate::kafka::AdminClient,
    pod: &str,
    removed: &[i32],
    current: i32,
    desired: i32,
) -> ScaleDown {
    if !admin.supports(DESCRIBE_QUORUM) {
        return ScaleDown::Shrink;
    }
    match admin.quorum_voters().await {
        Ok(voters) => match still_voting(&voters, removed) {
            None => ScaleDown::Shrink,
            Some(reason) => hold_refused(format!(
                "scale-down from {current} to {desired} waits: {reason} (as broker {pod} reports); \
                 the StatefulSet keeps {current} pods and their volumes until they leave it"
            )),
        },
        Err(e) => hold_refused(format!(
            "scale-down from {current} to {desired} waits: cannot read the metadata quorum from \
             broker {pod}: {e}"
        )),
    }
}

/// Why brokers to remove cannot go yet: those of `removed` still among the quorum's `voters`.
fn still_voting(voters: &[i32], removed: &[i32]) -> Option<String> {
    let voting: Vec<i32> = removed
        .iter()
        .copied()
        .filter(|id| voters.contains(id))
        .collect();
    match voting.as_slice() {
        [] => None,
        [one] => Some(format!(
            "broker {one} left the cluster but is still a voter of the metadata quorum \
             (voters {})",
            drain::id_list(voters)
        )),
        _ => Some(format!(
            "brokers {} left the cluster but are still voters of the metadata quorum (voters {})",
            drain::id_list(&voting),
            drain::id_list(voters)
        )),
    }
}

/// Where partitions cannot be moved: the StatefulSet may shrink only when no broker to remove
/// leads a partition (or holds a volume it cannot be asked about); otherwise refuse, saying why
/// (`unmovable`) and which partitions would be lost.
async fn let_only_empty_brokers_go(
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    desired: i32,
    current: i32,
    unmovable: &str,
) -> ScaleDown {
    let reports = broker_reports(ctx, names, pods, desired, current).await;
    match scale::scale_down_guard(current, desired, &reports, unmovable) {
        ScaleDecision::Proceed => ScaleDown::Shrink,
        ScaleDecision::Refuse { reason, .. } => hold_refused(reason),
    }
}

/// Asks each broker to be removed which partitions it leads.
async fn broker_reports(
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    desired: i32,
    current: i32,
) -> Vec<BrokerReport> {
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let mut reports = Vec::new();
    for ordinal in desired..current {
        let pod = pods
            .iter()
            .find(|p| pod_ordinal(p, &names.statefulset()) == Some(ordinal));
        let leads = match pod.and_then(pod_ip) {
            Some(ip) => match ctx.admin(names, &names.pod(ordinal), &ip).await {
                Ok(mut admin) => admin
                    .metadata()
                    .await
                    .map(|m| m.led_by(ordinal))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            None => {
                // A broker that never got a volume never held data.
                match pvc_api.get_opt(&names.pvc(ordinal)).await {
                    Ok(None) => Ok(Vec::new()),
                    Ok(Some(_)) => Err(format!(
                        "pod {} is not running, but its volume exists",
                        names.pod(ordinal)
                    )),
                    Err(e) => Err(format!("cannot read PVC {}: {e}", names.pvc(ordinal))),
                }
            }
        };
        reports.push(BrokerReport {
            node_id: ordinal,
            leads,
        });
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::still_voting;

    #[test]
    fn a_broker_still_voting_holds_the_shrink_and_is_named() {
        assert_eq!(still_voting(&[0, 1, 2], &[3, 4]), None);
        assert_eq!(still_voting(&[], &[3]), None);
        let one = still_voting(&[0, 1, 2, 3], &[3, 4]).expect("3 votes");
        assert!(
            one.starts_with("broker 3 left the cluster but is still a voter"),
            "{one}"
        );
        assert!(one.contains("(voters 0,1,2,3)"), "{one}");
        let two = still_voting(&[0, 3, 4], &[3, 4]).expect("3 and 4 vote");
        assert!(two.starts_with("brokers 3,4 left the cluster"), "{two}");
    }
}
