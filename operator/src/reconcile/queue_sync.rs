//! The queue phase: `spec.queues` created, grown, reconfigured and (under
//! `queueDeletionPolicy: Delete`) deleted through the brokers' admin API, and the state of each
//! queue for status.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::observe::{pod_ip, pod_ready};
use super::{Context, PassResult};
use crate::builders::Names;
use crate::crd::{MessageQueue, MessageQueueStatus, QueueStatus};
use crate::queues::{self, Capacity, ObservedTopic, QueueAction};

/// Applies `queues[]` through every ready broker. The brokers form one cluster, so the first
/// one does the work and the rest find nothing to do; asking each still reports a broker
/// whose view of the metadata lags or that cannot be reached.
pub(super) async fn sync_queues(
    mq: &MessageQueue,
    ctx: &Context,
    pods: &[Pod],
    previous: &MessageQueueStatus,
    pass: &mut PassResult,
) {
    let Ok(names) = Names::of(mq) else { return };
    let desired = &mq.spec.queues;
    let managed: BTreeSet<String> = previous.managed_queues.iter().cloned().collect();
    let mut created = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    let mut problems: BTreeMap<String, String> = BTreeMap::new();
    let mut waiting: BTreeMap<String, String> = BTreeMap::new();
    let mut observed_for_status: Option<Vec<ObservedTopic>> = None;
    let mut ready_pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    ready_pods.sort_by_key(|p| p.name_any());
    let policy = mq.spec.queue_deletion_policy;
    let any_ready = !ready_pods.is_empty();

    for pod in ready_pods {
        let Some(ip) = pod_ip(pod) else { continue };
        let mut admin = match ctx.admin(&names, &pod.name_any(), &ip).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "broker not reachable for queue sync");
                continue;
            }
        };
        let (metadata, observed) = match admin.observe_topics().await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "reading topics failed");
                continue;
            }
        };
        let capacity = Capacity {
            live_brokers: metadata.brokers.len(),
            default_replication_factor: mq.spec.default_replication_factor(),
        };
        let plan = queues::diff_queues(desired, &observed, &managed, policy, capacity);
        for (name, problem) in plan.problems {
            problems.insert(name, problem);
        }
        for (name, why) in plan.waiting {
            waiting.entry(name).or_insert(why);
        }
        let mut changed = false;
        for action in &plan.actions {
            match admin.apply_queue_action(action).await {
                Ok(()) => {
                    match action {
                        QueueAction::Create { name, .. } => created.insert(name.clone()),
                        QueueAction::Delete { name } => deleted.insert(name.clone()),
                        QueueAction::AddPartitions { .. } | QueueAction::AlterConfigs { .. } => {
                            false
                        }
                    };
                    changed = true;
                    let note = applied_note(action, &pod.name_any());
                    ctx.publish(mq, EventType::Normal, "QueueApplied", "Queue", note)
                        .await;
                }
                Err(e) => {
                    problems.insert(action.name().to_string(), e.to_string());
                    ctx.publish(
                        mq,
                        EventType::Warning,
                        "QueueFailed",
                        "Queue",
                        e.to_string(),
                    )
                    .await;
                }
            }
        }
        if observed_for_status.is_none() {
            let after = if changed {
                admin
                    .observe_topics()
                    .await
                    .map(|(_, o)| o)
                    .unwrap_or(observed)
            } else {
                observed
            };
            observed_for_status = Some(after);
        }
    }

    match observed_for_status {
        Some(observed) => {
            pass.queue_statuses = queues::queue_statuses(desired, &observed, &problems, &waiting);
            pass.managed_queues =
                queues::next_managed(desired, &managed, &created, &deleted, policy)
                    .into_iter()
                    .collect();
        }
        None => {
            // no broker answered: keep what was known, say why
            pass.managed_queues = previous.managed_queues.clone();
            pass.queue_statuses = desired
                .iter()
                .map(|q| {
                    let last = previous.queues.iter().find(|s| s.name == q.name);
                    QueueStatus {
                        name: q.name.clone(),
                        ready: last.is_some_and(|s| s.ready),
                        partitions: last.and_then(|s| s.partitions),
                        replication_factor: last.and_then(|s| s.replication_factor),
                        message: Some(if any_ready {
                            "no ready broker answered; state from the last successful check".into()
                        } else {
                            "waiting for a ready broker".into()
                        }),
                    }
                })
                .collect();
        }
    }
    pass.observation.queues_waiting = pass
        .queue_statuses
        .iter()
        .any(|q| !q.ready && waiting.contains_key(&q.name));
    pass.observation.queue_problems = pass
        .queue_statuses
        .iter()
        .filter(|q| !q.ready)
        .filter_map(|q| problems.get(&q.name).map(|p| format!("{}: {p}", q.name)))
        .collect();
}

/// The Event note of a queue plan step carried out through broker pod `pod`.
fn applied_note(action: &QueueAction, pod: &str) -> String {
    match action {
        QueueAction::Create {
            name,
            partitions,
            replication_factor,
            ..
        } => {
            let copies = match replication_factor {
                1 => "1 copy".to_string(),
                n => format!("{n} copies"),
            };
            format!("created queue {name} with {partitions} partitions, {copies} each, on {pod}")
        }
        QueueAction::AddPartitions { name, total } => {
            format!("queue {name} now has {total} partitions on {pod}")
        }
        QueueAction::AlterConfigs { name, set, delete } => {
            format!("updated configs of queue {name} on {pod} (set {set:?}, reset {delete:?})")
        }
        QueueAction::Delete { name } => {
            format!("deleted queue {name} from {pod} (queueDeletionPolicy Delete)")
        }
    }
}
