//! The queue phase: `spec.queues` created, grown, reconfigured and (under
//! `queueDeletionPolicy: Delete`) deleted through the brokers' admin API, and the state of each
//! queue for status, with its message counts (`queue_counts`) read on the same connections at
//! most every `Context::counts_interval`.

use std::collections::{BTreeMap, BTreeSet};

use crate::events::EventType;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::observe::{host_port, pod_ip, pod_ready};
use super::{Context, PassResult};
use crate::builders::{Names, HTTP_PORT};
use crate::crd::{MessageQueue, MessageQueueStatus, QueueStatus, QueueType};
use crate::kafka::{
    fetch_metrics, AdminClient, DESCRIBE_SHARE_GROUP_OFFSETS, LIST_GROUPS, LIST_OFFSETS,
    OFFSET_FETCH,
};
use crate::queue_counts::{self, CountsSeen, Partition};
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
    let counts_due = ctx.counts_due(&names) && !desired.is_empty();
    let mut counts = CountsRead::default();

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
        if counts_due {
            let ip_port = host_port(&ip, HTTP_PORT);
            read_counts(ctx, &mut admin, &ip_port, desired, &observed, &mut counts).await;
            counts.brokers = counts.brokers.max(metadata.brokers.len());
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
            if counts_due {
                let seen = counts.seen();
                for (status, q) in pass.queue_statuses.iter_mut().zip(desired) {
                    let Some(partitions) = status.partitions else {
                        continue;
                    };
                    let c = queue_counts::queue_counts(q, partitions, &seen);
                    status.messages = c.messages;
                    status.backlog = c.backlog;
                    status.in_flight = c.in_flight;
                    status.share_groups = c.share_groups;
                    status.lag = c.lag;
                    status.consumer_groups = c.consumer_groups;
                }
                ctx.counts_read(&names, true);
            } else if ctx.counts_interval.is_some() {
                // read by an earlier pass less than the interval ago
                for status in &mut pass.queue_statuses {
                    if let Some(last) = previous.queues.iter().find(|s| s.name == status.name) {
                        status.messages = last.messages;
                        status.backlog = last.backlog;
                        status.in_flight = last.in_flight;
                        status.share_groups = last.share_groups;
                        status.lag = last.lag;
                        status.consumer_groups = last.consumer_groups;
                    }
                }
            }
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
                        // no counts: not read, so unknown
                        ..QueueStatus::default()
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

/// What the brokers answered for the queue counts so far in one pass.
#[derive(Debug, Default)]
struct CountsRead {
    seen: CountsSeen,
    /// Share groups as listed by the brokers that answered.
    share_starts: BTreeMap<String, BTreeMap<Partition, i64>>,
    /// Brokers that listed and described their share groups.
    share_answers: usize,
    /// A broker did not answer for its share groups.
    share_failed: bool,
    /// Consumer groups as listed by the brokers that answered.
    group_offsets: BTreeMap<String, BTreeMap<Partition, i64>>,
    /// Brokers that listed their consumer groups and fetched their offsets.
    group_answers: usize,
    /// A broker did not answer for its consumer groups.
    group_failed: bool,
    /// Brokers in the cluster, as Metadata says.
    brokers: usize,
}

impl CountsRead {
    /// The answers, with the share groups (and the consumer groups) only when every broker of
    /// the cluster listed its own (each lists the groups it coordinates).
    fn seen(mut self) -> CountsSeen {
        let complete = !self.share_failed && self.share_answers >= self.brokers;
        self.seen.share_starts = complete.then_some(self.share_starts);
        let complete = !self.group_failed && self.group_answers >= self.brokers;
        self.seen.group_offsets = complete.then_some(self.group_offsets);
        self.seen
    }
}

/// Reads through one broker what it knows for the queue counts: the log start and end of the
/// declared queues' partitions it leads; for `type: queue` queues also the share groups it
/// coordinates and, from its `/metrics` at `metrics_addr`, the records in flight of the
/// partitions it leads; for `type: stream` queues the consumer groups it coordinates and their
/// committed offsets. What fails is left out (and so reported as unknown).
async fn read_counts(
    ctx: &Context,
    admin: &mut AdminClient,
    metrics_addr: &str,
    desired: &[crate::crd::Queue],
    observed: &[ObservedTopic],
    counts: &mut CountsRead,
) {
    let partitions_of = |q: &crate::crd::Queue| -> Vec<Partition> {
        observed
            .iter()
            .find(|t| t.name == q.name)
            .map(|t| (0..t.partitions).map(|p| (q.name.clone(), p)).collect())
            .unwrap_or_default()
    };
    let all: Vec<Partition> = desired.iter().flat_map(partitions_of).collect();
    if all.is_empty() || !admin.supports(LIST_OFFSETS) {
        return;
    }
    let led = match admin.log_offsets(&all).await {
        Ok(led) => led,
        Err(e) => {
            tracing::warn!(addr = %admin.addr(), error = %e, "cannot read the queues' log offsets");
            return;
        }
    };
    if desired.iter().any(|q| q.type_ != QueueType::Queue) {
        if admin.supports(LIST_GROUPS) && admin.supports(OFFSET_FETCH) {
            match admin.consumer_group_offsets().await {
                Ok(offsets) => {
                    counts.group_answers += 1;
                    counts.group_offsets.extend(offsets);
                }
                Err(e) => {
                    tracing::warn!(addr = %admin.addr(), error = %e, "cannot read the consumer groups");
                    counts.group_failed = true;
                }
            }
        } else {
            counts.group_failed = true;
        }
    }
    let work: Vec<Partition> = desired
        .iter()
        .filter(|q| q.type_ == QueueType::Queue)
        .flat_map(partitions_of)
        .collect();
    if !work.is_empty() {
        if admin.supports(LIST_GROUPS) && admin.supports(DESCRIBE_SHARE_GROUP_OFFSETS) {
            match admin.share_group_starts().await {
                Ok(starts) => {
                    counts.share_answers += 1;
                    counts.share_starts.extend(starts);
                }
                Err(e) => {
                    tracing::warn!(addr = %admin.addr(), error = %e, "cannot read the share groups");
                    counts.share_failed = true;
                }
            }
        } else {
            counts.share_failed = true;
        }
        let led_work: Vec<&Partition> = work.iter().filter(|p| led.contains_key(*p)).collect();
        if !led_work.is_empty() {
            match fetch_metrics(metrics_addr, ctx.broker_timeout).await {
                Ok(text) => {
                    let mut in_flight = queue_counts::parse_in_flight(&text);
                    for p in led_work {
                        let by_group = in_flight.remove(p).unwrap_or_default();
                        counts.seen.in_flight.insert(p.clone(), by_group);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the records in flight");
                }
            }
        }
    }
    counts.seen.offsets.extend(led);
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
