//! The queue diff: declared `queues[]` against the topics a broker reports, as a list of Kafka
//! admin actions. Pure; `reconcile` sends the actions with the admin client.

use std::collections::{BTreeMap, BTreeSet};

use crate::crd::{Queue, QueueDeletionPolicy, QueueStatus};

/// A topic as a broker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTopic {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Configs set on the topic itself (not defaults). None when they could not be read.
    pub overrides: Option<BTreeMap<String, String>>,
    /// Copies of each partition: the fewest any partition reports, since a partition in the
    /// middle of a move lists its old and its new replicas. None when not reported.
    pub replication_factor: Option<i32>,
}

/// One admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// CreateTopics.
    Create {
        /// Topic.
        name: String,
        /// Partitions.
        partitions: i32,
        /// Replication factor.
        replication_factor: i16,
        /// Topic configs.
        configs: BTreeMap<String, String>,
    },
    /// CreatePartitions up to `total`.
    AddPartitions {
        /// Topic.
        name: String,
        /// New partition count.
        total: i32,
    },
    /// IncrementalAlterConfigs.
    AlterConfigs {
        /// Topic.
        name: String,
        /// Keys to set.
        set: BTreeMap<String, String>,
        /// Keys to remove (back to the broker default).
        delete: Vec<String>,
    },
    /// DeleteTopics (only under queueDeletionPolicy Delete, only for managed queues).
    Delete {
        /// Topic.
        name: String,
    },
}

impl QueueAction {
    /// The topic the action is about.
    pub fn name(&self) -> &str {
        match self {
            QueueAction::Create { name, .. }
            | QueueAction::AddPartitions { name, .. }
            | QueueAction::AlterConfigs { name, .. }
            | QueueAction::Delete { name } => name,
        }
    }
}

/// The actions plus the per-queue problems no action can fix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueuePlan {
    /// Actions to send, in order.
    pub actions: Vec<QueueAction>,
    /// Queue name → what a person must change.
    pub problems: BTreeMap<String, String>,
    /// Queue name → what it waits for before it can be created (not a problem: it resolves
    /// itself, as when the brokers of a new MessageQueue are still joining).
    pub waiting: BTreeMap<String, String>,
}

/// What the brokers offer a new queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Live (registered, unfenced) brokers: a queue needs one per copy of a partition.
    pub live_brokers: usize,
    /// The replication factor of a queue that declares none.
    pub default_replication_factor: i32,
}

/// Computes what to send to a broker. `managed` are the queues the operator created (status).
pub fn diff_queues(
    desired: &[Queue],
    observed: &[ObservedTopic],
    managed: &BTreeSet<String>,
    policy: QueueDeletionPolicy,
    capacity: Capacity,
) -> QueuePlan {
    let mut plan = QueuePlan::default();
    let observed_by_name: BTreeMap<&str, &ObservedTopic> =
        observed.iter().map(|t| (t.name.as_str(), t)).collect();
    for q in desired {
        let configs = q.desired_configs();
        match observed_by_name.get(q.name.as_str()) {
            None => {
                let rf = q
                    .replication_factor
                    .unwrap_or(capacity.default_replication_factor);
                // The brokers refuse more copies than live brokers (INVALID_REPLICATION_FACTOR);
                // while brokers are still joining, waiting is not a failure worth a Warning.
                if usize::try_from(rf).unwrap_or(0) > capacity.live_brokers {
                    plan.waiting.insert(
                        q.name.clone(),
                        format!(
                            "waiting for {rf} live brokers to create it with replication factor \
                             {rf} ({} live)",
                            capacity.live_brokers
                        ),
                    );
                    continue;
                }
                plan.actions.push(QueueAction::Create {
                    name: q.name.clone(),
                    partitions: q.partitions,
                    replication_factor: i16::try_from(rf).unwrap_or(i16::MAX),
                    configs,
                })
            }
            Some(topic) => {
                if topic.partitions < q.partitions {
                    plan.actions.push(QueueAction::AddPartitions {
                        name: q.name.clone(),
                        total: q.partitions,
                    });
                } else if topic.partitions > q.partitions {
                    plan.problems.insert(
                        q.name.clone(),
                        format!(
                            "queue has {} partitions on the brokers, more than the declared {}; \
                             partitions cannot be removed: set partitions to {}",
                            topic.partitions, q.partitions, topic.partitions
                        ),
                    );
                }
                // Only a declared one is compared: an unset replicationFactor means "the default
                // when created", and the default follows replicas.
                if let Some((rf, declared)) = topic
                    .replication_factor
                    .zip(q.replication_factor)
                    .filter(|(rf, declared)| rf != declared)
                {
                    let text = format!(
                        "queue has {rf} copies of each partition on the brokers, not the declared \
                         replicationFactor {declared}; a queue's replication factor cannot change \
                         after it is created: set replicationFactor to {rf}"
                    );
                    plan.problems
                        .entry(q.name.clone())
                        .and_modify(|p| *p = format!("{p}; {text}"))
                        .or_insert(text);
                }
                if let Some(current) = &topic.overrides {
                    let set: BTreeMap<String, String> = configs
                        .iter()
                        .filter(|(k, v)| current.get(*k) != Some(*v))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let delete: Vec<String> = current
                        .keys()
                        .filter(|k| !configs.contains_key(*k))
                        .cloned()
                        .collect();
                    if !set.is_empty() || !delete.is_empty() {
                        plan.actions.push(QueueAction::AlterConfigs {
                            name: q.name.clone(),
                            set,
                            delete,
                        });
                    }
                }
            }
        }
    }
    if policy == QueueDeletionPolicy::Delete {
        let declared: BTreeSet<&str> = desired.iter().map(|q| q.name.as_str()).collect();
        for topic in observed {
            if managed.contains(&topic.name) && !declared.contains(topic.name.as_str()) {
                plan.actions.push(QueueAction::Delete {
                    name: topic.name.clone(),
                });
            }
        }
    }
    plan
}

/// The managed-queue set after a pass: queues the operator created are added; under `Retain` a
/// queue removed from the spec is released (never deleted later); under `Delete` it stays until
/// its deletion succeeded (`deleted`).
pub fn next_managed(
    desired: &[Queue],
    managed: &BTreeSet<String>,
    created: &BTreeSet<String>,
    deleted: &BTreeSet<String>,
    policy: QueueDeletionPolicy,
) -> BTreeSet<String> {
    let declared: BTreeSet<String> = desired.iter().map(|q| q.name.clone()).collect();
    let mut next: BTreeSet<String> = managed.union(created).cloned().collect();
    match policy {
        QueueDeletionPolicy::Retain => next.retain(|n| declared.contains(n)),
        QueueDeletionPolicy::Delete => next.retain(|n| !deleted.contains(n)),
    }
    next
}

/// Per-queue status from what the broker reported after the pass, the errors of the pass and
/// what queues not created yet wait for.
pub fn queue_statuses(
    desired: &[Queue],
    observed: &[ObservedTopic],
    problems: &BTreeMap<String, String>,
    waiting: &BTreeMap<String, String>,
) -> Vec<QueueStatus> {
    desired
        .iter()
        .map(|q| {
            let topic = observed.iter().find(|t| t.name == q.name);
            let configs_ok = topic
                .and_then(|t| t.overrides.as_ref())
                .is_none_or(|o| *o == q.desired_configs());
            let (ready, message) = match (topic, problems.get(&q.name)) {
                (_, Some(problem)) => (false, Some(problem.clone())),
                (None, None) => (
                    false,
                    Some(
                        waiting
                            .get(&q.name)
                            .cloned()
                            .unwrap_or_else(|| "not created yet".to_string()),
                    ),
                ),
                (Some(t), None) if t.partitions < q.partitions => (
                    false,
                    Some(format!("{} of {} partitions", t.partitions, q.partitions)),
                ),
                (Some(_), None) if !configs_ok => {
                    (false, Some("configs not applied yet".to_string()))
                }
                (Some(_), None) => (true, None),
            };
            QueueStatus {
                name: q.name.clone(),
                ready,
                partitions: topic.map(|t| t.partitions),
                replication_factor: topic.and_then(|t| t.replication_factor),
                message,
                ..QueueStatus::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(yaml: &str) -> Vec<Queue> {
        serde_yaml::from_str(yaml).expect("queues parse")
    }

    fn topic(name: &str, partitions: i32, overrides: &[(&str, &str)]) -> ObservedTopic {
        ObservedTopic {
            name: name.into(),
            partitions,
            replication_factor: Some(1),
            overrides: Some(
                overrides
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Three live brokers, default replication factor 3.
    fn three() -> Capacity {
        Capacity {
            live_brokers: 3,
            default_replication_factor: 3,
        }
    }

    /// The plan under `Retain` when the operator created none of the observed topics.
    fn diff_unmanaged(desired: &[Queue], observed: &[ObservedTopic]) -> QueuePlan {
        diff_queues(
            desired,
            observed,
            &set(&[]),
            QueueDeletionPolicy::Retain,
            three(),
        )
    }

    #[test]
    fn missing_queue_is_created_with_partitions_and_configs() {
        let desired = queues(
            r#"
- name: orders
  partitions: 6
  retentionMs: 3600000
  config: {max.message.bytes: "2097152"}
"#,
        );
        let plan = diff_unmanaged(&desired, &[]);
        assert_eq!(
            plan.actions,
            vec![QueueAction::Create {
                name: "orders".into(),
                partitions: 6,
                replication_factor: 3,
                configs: BTreeMap::from([
                    ("max.message.bytes".to_string(), "2097152".to_string()),
                    ("retention.ms".to_string(), "3600000".to_string()),
                ]),
            }]
        );
        // a declared replication factor wins over the default
        let one = queues("- {name: orders, replicationFactor: 1}");
        assert!(matches!(
            diff_unmanaged(&one, &[]).actions[..],
            [QueueAction::Create {
                replication_factor: 1,
                ..
            }]
        ));
    }

    #[test]
    fn a_queue_waits_for_as_many_live_brokers_as_copies_without_a_problem() {
        let desired = queues("- {name: orders}\n- {name: audit, replicationFactor: 1}");
        let joining = Capacity {
            live_brokers: 1,
            default_replication_factor: 3,
        };
        let plan = diff_queues(
            &desired,
            &[],
            &set(&[]),
            QueueDeletionPolicy::Retain,
            joining,
        );
        assert_eq!(plan.actions.len(), 1, "only audit fits: {:?}", plan.actions);
        assert_eq!(plan.actions[0].name(), "audit");
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        assert_eq!(
            plan.waiting["orders"],
            "waiting for 3 live brokers to create it with replication factor 3 (1 live)"
        );
        let st = queue_statuses(&desired, &[], &plan.problems, &plan.waiting);
        assert_eq!(
            st[0].message.as_deref(),
            Some(plan.waiting["orders"].as_str())
        );
        assert_eq!(st[1].message.as_deref(), Some("not created yet"));
    }

    #[test]
    fn queue_in_place_needs_nothing() {
        let desired = queues("- {name: orders, partitions: 3, retentionMs: 1000}");
        let observed = [topic("orders", 3, &[("retention.ms", "1000")])];
        let plan = diff_queues(
            &desired,
            &observed,
            &set(&["orders"]),
            QueueDeletionPolicy::Delete,
            three(),
        );
        assert_eq!(plan, QueuePlan::default());
    }

    #[test]
    fn raised_partitions_are_added() {
        let desired = queues("- {name: orders, partitions: 8}");
        let plan = diff_unmanaged(&desired, &[topic("orders", 3, &[])]);
        assert_eq!(
            plan.actions,
            vec![QueueAction::AddPartitions {
                name: "orders".into(),
                total: 8
            }]
        );
    }

    #[test]
    fn fewer_declared_partitions_than_existing_is_a_problem_not_an_action() {
        let desired = queues("- {name: orders, partitions: 2}");
        let plan = diff_unmanaged(&desired, &[topic("orders", 5, &[])]);
        assert!(plan.actions.is_empty());
        assert!(plan.problems["orders"].contains("set partitions to 5"));
    }

    #[test]
    fn a_changed_replication_factor_is_a_problem_named_with_the_actual_one() {
        let desired = queues("- {name: orders, partitions: 2, replicationFactor: 3}");
        let plan = diff_unmanaged(&desired, &[topic("orders", 5, &[])]);
        assert!(plan.actions.is_empty());
        let p = &plan.problems["orders"];
        assert!(p.contains("set partitions to 5"), "{p}");
        assert!(
            p.contains("set replicationFactor to 1"),
            "both problems named: {p}"
        );
        // Not declared: created with the default of its day, which follows replicas; nothing
        // to compare.
        let unset = queues("- {name: orders, partitions: 5}");
        assert!(diff_unmanaged(&unset, &[topic("orders", 5, &[])])
            .problems
            .is_empty());
        // Not reported by the broker: nothing to compare.
        let mut unknown = topic("orders", 2, &[]);
        unknown.replication_factor = None;
        let plan = diff_unmanaged(&desired, &[unknown]);
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    }

    #[test]
    fn changed_and_removed_configs_are_altered() {
        let desired =
            queues("- {name: orders, retentionMs: 2000, config: {sluice.fsync: interval}}");
        let observed = [topic(
            "orders",
            1,
            &[
                ("retention.ms", "1000"),
                ("segment.bytes", "1048576"),
                ("sluice.fsync", "interval"),
            ],
        )];
        let plan = diff_unmanaged(&desired, &observed);
        assert_eq!(
            plan.actions,
            vec![QueueAction::AlterConfigs {
                name: "orders".into(),
                set: BTreeMap::from([("retention.ms".to_string(), "2000".to_string())]),
                delete: vec!["segment.bytes".to_string()],
            }]
        );
    }

    #[test]
    fn unreadable_configs_are_left_alone() {
        let desired = queues("- {name: orders, retentionMs: 2000}");
        let observed = [ObservedTopic {
            name: "orders".into(),
            partitions: 1,
            overrides: None,
            replication_factor: None,
        }];
        let plan = diff_unmanaged(&desired, &observed);
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn removed_queue_is_kept_under_retain() {
        let plan = diff_queues(
            &[],
            &[topic("old", 1, &[])],
            &set(&["old"]),
            QueueDeletionPolicy::Retain,
            three(),
        );
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn removed_managed_queue_is_deleted_under_delete() {
        let plan = diff_queues(
            &[],
            &[topic("old", 1, &[])],
            &set(&["old"]),
            QueueDeletionPolicy::Delete,
            three(),
        );
        assert_eq!(
            plan.actions,
            vec![QueueAction::Delete { name: "old".into() }]
        );
    }

    #[test]
    fn topics_the_operator_did_not_create_are_never_deleted() {
        let observed = [
            topic("someone-elses", 1, &[]),
            topic("auto-created", 1, &[]),
        ];
        let plan = diff_queues(
            &[],
            &observed,
            &set(&[]),
            QueueDeletionPolicy::Delete,
            three(),
        );
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn managed_set_tracks_created_released_and_deleted_queues() {
        let desired = queues("- {name: a}\n- {name: b}");
        let next = next_managed(
            &desired,
            &set(&["a", "gone"]),
            &set(&["b"]),
            &set(&[]),
            QueueDeletionPolicy::Retain,
        );
        assert_eq!(
            next,
            set(&["a", "b"]),
            "retain releases queues no longer declared"
        );
        let next = next_managed(
            &desired,
            &set(&["a", "gone"]),
            &set(&["b"]),
            &set(&[]),
            QueueDeletionPolicy::Delete,
        );
        assert_eq!(
            next,
            set(&["a", "b", "gone"]),
            "delete keeps them until deleted"
        );
        let next = next_managed(
            &desired,
            &set(&["a", "gone"]),
            &set(&[]),
            &set(&["gone"]),
            QueueDeletionPolicy::Delete,
        );
        assert_eq!(next, set(&["a"]));
    }

    #[test]
    fn statuses_say_what_is_missing() {
        let desired = queues(
            "- {name: a, partitions: 3}\n- {name: b}\n- {name: c}\n- {name: d, retentionMs: 5}",
        );
        let observed = [topic("a", 2, &[]), topic("c", 1, &[]), topic("d", 1, &[])];
        let problems = BTreeMap::from([(
            "b".to_string(),
            "CreateTopics failed: POLICY_VIOLATION".to_string(),
        )]);
        let waiting = BTreeMap::new();
        let st = queue_statuses(&desired, &observed, &problems, &waiting);
        assert_eq!(st[0].message.as_deref(), Some("2 of 3 partitions"));
        assert!(!st[0].ready);
        assert_eq!(
            st[1].message.as_deref(),
            Some("CreateTopics failed: POLICY_VIOLATION")
        );
        assert!(st[2].ready);
        assert_eq!(st[2].partitions, Some(1));
        assert_eq!(
            st[2].replication_factor,
            Some(1),
            "as the brokers report it"
        );
        assert!(!st[3].ready);
    }
}
