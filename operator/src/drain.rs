//! Draining brokers before a scale-down: which partitions move where. Pure.
//!
//! Brokers that form one cluster hold each partition on its owner broker (replicas = [owner]).
//! Before the StatefulSet shrinks, every partition on a broker being removed (ordinals >=
//! the new replica count) is moved with AlterPartitionReassignments to the remaining broker that
//! holds the fewest partitions, counting the moves already planned and in flight. The reconciler
//! asks again every pass (Metadata + ListPartitionReassignments) until nothing is left on the
//! removed brokers; then it unregisters them and shrinks the StatefulSet.

use std::collections::{BTreeMap, BTreeSet};

use crate::kafka::{ClusterMetadata, OngoingReassignment};
use crate::scale::TopicPartition;

/// What the cluster says, from one broker: partitions, brokers, moves in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Registered broker ids (fenced ones included when the broker says).
    pub brokers: BTreeSet<i32>,
    /// Registered but fenced (unreachable) brokers: they get no partitions.
    pub fenced: BTreeSet<i32>,
    /// Each partition's replicas (empty when the broker did not say) and leader (-1: none).
    pub partitions: BTreeMap<TopicPartition, (Vec<i32>, i32)>,
    /// Moves in flight: partition → replicas once done.
    pub ongoing: BTreeMap<TopicPartition, Vec<i32>>,
}

impl ClusterView {
    /// The view from Metadata and ListPartitionReassignments.
    pub fn new(
        metadata: &ClusterMetadata,
        ongoing: &BTreeMap<TopicPartition, OngoingReassignment>,
    ) -> ClusterView {
        let mut partitions = BTreeMap::new();
        for (topic, leaders) in &metadata.topics {
            for (partition, leader) in leaders {
                let replicas = metadata
                    .replicas
                    .get(topic)
                    .and_then(|r| r.get(partition))
                    .cloned()
                    .unwrap_or_default();
                partitions.insert(
                    TopicPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    (replicas, *leader),
                );
            }
        }
        ClusterView {
            brokers: metadata.brokers.keys().copied().collect(),
            fenced: BTreeSet::new(),
            partitions,
            ongoing: ongoing
                .iter()
                .map(|(tp, o)| (tp.clone(), o.target()))
                .collect(),
        }
    }

    /// Takes the registered brokers from DescribeCluster (id → fenced), which also lists fenced
    /// brokers that Metadata leaves out.
    pub fn with_registered(mut self, registered: &BTreeMap<i32, bool>) -> ClusterView {
        self.brokers = registered.keys().copied().collect();
        self.fenced = registered
            .iter()
            .filter(|(_, fenced)| **fenced)
            .map(|(id, _)| *id)
            .collect();
        self
    }

    /// The brokers that hold `tp` now: its replicas, or its leader when no replicas are known.
    fn holders(&self, tp: &TopicPartition) -> Vec<i32> {
        match self.partitions.get(tp) {
            Some((replicas, _)) if !replicas.is_empty() => replicas.clone(),
            Some((_, leader)) if *leader >= 0 => vec![*leader],
            _ => Vec::new(),
        }
    }
}

/// What to do next for a scale-down to `keep` brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainPlan {
    /// Nothing is on the brokers being removed and nothing moves there: unregister them.
    Drained,
    /// Partitions are still on the brokers being removed.
    Moving {
        /// Moves to request now: partition → target broker.
        requests: Vec<(TopicPartition, i32)>,
        /// Partitions still on the removed brokers.
        remaining: usize,
        /// Of those, how many are moving (requested now or earlier).
        moving: usize,
    },
    /// Some partitions cannot be moved.
    Blocked {
        /// Why, and what to do about it.
        reason: String,
        /// The partitions that cannot move.
        blocking: Vec<TopicPartition>,
    },
}

/// Comma-separated broker ids, for messages.
pub fn id_list(ids: &[i32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Plans the drain of brokers `keep..` (`removed`) onto the brokers `0..keep` that are registered
/// and not fenced.
pub fn plan_drain(view: &ClusterView, keep: i32, removed: &[i32]) -> DrainPlan {
    let removed_set: BTreeSet<i32> = removed.iter().copied().collect();
    let targets: Vec<i32> = view
        .brokers
        .iter()
        .copied()
        .filter(|b| (0..keep).contains(b) && !view.fenced.contains(b))
        .collect();
    // Load of each target once every move in flight is done.
    let mut load: BTreeMap<i32, usize> = targets.iter().map(|t| (*t, 0)).collect();
    for tp in view.partitions.keys() {
        let placed = view
            .ongoing
            .get(tp)
            .cloned()
            .unwrap_or_else(|| view.holders(tp));
        for b in placed {
            if let Some(n) = load.get_mut(&b) {
                *n += 1;
            }
        }
    }

    let mut requests = Vec::new();
    let mut remaining = 0;
    let mut moving = 0;
    let mut stuck = Vec::new();
    for tp in view.partitions.keys() {
        let on_removed = view.holders(tp).iter().any(|b| removed_set.contains(b));
        let in_flight = view.ongoing.get(tp);
        let heading_off =
            in_flight.is_some_and(|t| !t.is_empty() && t.iter().all(|b| !removed_set.contains(b)));
        let heading_to_removed =
            in_flight.is_some_and(|t| t.iter().any(|b| removed_set.contains(b)));
        if !on_removed && !heading_to_removed {
            continue;
        }
        if on_removed {
            remaining += 1;
        }
        if heading_off {
            moving += 1;
            continue;
        }
        let Some(target) = load.iter().min_by_key(|(b, n)| (**n, **b)).map(|(b, _)| *b) else {
            stuck.push(tp.clone());
            continue;
        };
        if let Some(n) = load.get_mut(&target) {
            *n += 1;
        }
        requests.push((tp.clone(), target));
        if on_removed {
            moving += 1;
        }
    }
    if !stuck.is_empty() {
        let known: Vec<i32> = view.brokers.iter().copied().collect();
        let named: Vec<String> = stuck.iter().take(10).map(|p| p.to_string()).collect();
        let more = if stuck.len() > 10 {
            format!(" and {} more", stuck.len() - 10)
        } else {
            String::new()
        };
        return DrainPlan::Blocked {
            reason: format!(
                "partitions {}{more} on brokers {} cannot be moved: none of the remaining brokers \
                 0..{} is a live member of the cluster (registered: {}{}); wait for them to \
                 join or set replicas back",
                named.join(", "),
                id_list(removed),
                keep - 1,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    id_list(&known)
                },
                if view.fenced.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", fenced: {}",
                        id_list(&view.fenced.iter().copied().collect::<Vec<_>>())
                    )
                }
            ),
            blocking: stuck,
        };
    }
    if remaining == 0 && requests.is_empty() {
        return DrainPlan::Drained;
    }
    DrainPlan::Moving {
        requests,
        remaining,
        moving,
    }
}

/// The progress message of a drain, e.g. "moving 7 of 12 partitions off brokers 3,4".
pub fn progress(remaining: usize, moving: usize, removed: &[i32]) -> String {
    format!(
        "moving {moving} of {remaining} partitions off brokers {} before the scale-down",
        id_list(removed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Brokers, and partitions as (topic, partition, owner).
    fn view(brokers: &[i32], parts: &[(&str, i32, i32)]) -> ClusterView {
        ClusterView {
            brokers: brokers.iter().copied().collect(),
            fenced: BTreeSet::new(),
            partitions: parts
                .iter()
                .map(|(t, p, owner)| (tp(t, *p), (vec![*owner], *owner)))
                .collect(),
            ongoing: BTreeMap::new(),
        }
    }

    #[test]
    fn fenced_brokers_get_nothing_and_registration_comes_from_describe_cluster() {
        // Metadata knows brokers 0 and 2; DescribeCluster adds broker 1, fenced
        let v = view(&[0, 2], &[("a", 0, 0), ("a", 1, 0), ("a", 2, 2)])
            .with_registered(&BTreeMap::from([(0, false), (1, true), (2, false)]));
        assert_eq!(v.brokers, BTreeSet::from([0, 1, 2]));
        match plan_drain(&v, 2, &[2]) {
            // broker 1 holds nothing but is fenced: everything goes to 0
            DrainPlan::Moving { requests, .. } => assert_eq!(requests, vec![(tp("a", 2), 0)]),
            other => panic!("expected a move, got {other:?}"),
        }
        let only_fenced =
            view(&[], &[("a", 0, 1)]).with_registered(&BTreeMap::from([(0, true), (1, false)]));
        match plan_drain(&only_fenced, 1, &[1]) {
            DrainPlan::Blocked { reason, .. } => {
                assert!(reason.contains("fenced: 0"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn nothing_on_the_removed_brokers_is_drained() {
        let v = view(&[0, 1, 2], &[("a", 0, 0), ("a", 1, 1)]);
        assert_eq!(plan_drain(&v, 2, &[2]), DrainPlan::Drained);
        assert_eq!(plan_drain(&view(&[0], &[]), 1, &[1, 2]), DrainPlan::Drained);
    }

    #[test]
    fn partitions_go_to_the_remaining_broker_with_the_fewest() {
        // broker 0 holds 3, broker 1 holds 1; brokers 2 and 3 go with 4 partitions between them
        let v = view(
            &[0, 1, 2, 3],
            &[
                ("a", 0, 0),
                ("a", 1, 0),
                ("a", 2, 0),
                ("a", 3, 1),
                ("b", 0, 2),
                ("b", 1, 3),
                ("b", 2, 2),
                ("b", 3, 3),
            ],
        );
        match plan_drain(&v, 2, &[2, 3]) {
            DrainPlan::Moving {
                requests,
                remaining,
                moving,
            } => {
                assert_eq!(
                    requests,
                    vec![
                        (tp("b", 0), 1),
                        (tp("b", 1), 1),
                        (tp("b", 2), 0),
                        (tp("b", 3), 1)
                    ]
                );
                assert_eq!((remaining, moving), (4, 4));
            }
            other => panic!("expected moves, got {other:?}"),
        }
    }

    #[test]
    fn moves_in_flight_are_counted_not_requested_again() {
        let mut v = view(&[0, 1, 2], &[("a", 0, 2), ("a", 1, 2), ("a", 2, 0)]);
        v.ongoing.insert(tp("a", 0), vec![1]);
        match plan_drain(&v, 2, &[2]) {
            DrainPlan::Moving {
                requests,
                remaining,
                moving,
            } => {
                // broker 1 will hold a-0, broker 0 holds a-2: a tie, the lower id wins
                assert_eq!(requests, vec![(tp("a", 1), 0)]);
                assert_eq!((remaining, moving), (2, 2));
                assert_eq!(
                    progress(remaining, moving, &[2]),
                    "moving 2 of 2 partitions off brokers 2 before the scale-down"
                );
            }
            other => panic!("expected moves, got {other:?}"),
        }
        // the move finished: a-0 is on 1 now, a-1 still in flight
        let mut v = view(&[0, 1, 2], &[("a", 0, 1), ("a", 1, 2), ("a", 2, 0)]);
        v.ongoing.insert(tp("a", 1), vec![0]);
        assert_eq!(
            plan_drain(&v, 2, &[2]),
            DrainPlan::Moving {
                requests: vec![],
                remaining: 1,
                moving: 1
            }
        );
    }

    #[test]
    fn a_move_towards_a_removed_broker_is_redirected() {
        let mut v = view(&[0, 1, 2], &[("a", 0, 0)]);
        v.ongoing.insert(tp("a", 0), vec![2]);
        match plan_drain(&v, 2, &[2]) {
            DrainPlan::Moving {
                requests,
                remaining,
                ..
            } => {
                // sent back to the least loaded remaining broker (here the one it is on)
                assert_eq!(requests, vec![(tp("a", 0), 0)]);
                assert_eq!(remaining, 0);
            }
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    #[test]
    fn no_registered_remaining_broker_blocks_naming_the_partitions() {
        let v = view(&[2], &[("a", 0, 2), ("a", 1, 2)]);
        match plan_drain(&v, 2, &[2]) {
            DrainPlan::Blocked { reason, blocking } => {
                assert_eq!(blocking, vec![tp("a", 0), tp("a", 1)]);
                assert!(reason.contains("a-0, a-1"), "{reason}");
                assert!(reason.contains("registered: 2"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn partitions_without_replicas_use_the_leader_and_leaderless_ones_are_ignored() {
        let mut v = view(&[0, 1], &[]);
        v.partitions.insert(tp("x", 0), (vec![], 1));
        v.partitions.insert(tp("x", 1), (vec![], -1));
        match plan_drain(&v, 1, &[1]) {
            DrainPlan::Moving { requests, .. } => assert_eq!(requests, vec![(tp("x", 0), 0)]),
            other => panic!("expected a move, got {other:?}"),
        }
    }

    #[test]
    fn view_is_built_from_metadata_and_ongoing_moves() {
        let md = ClusterMetadata {
            topics: BTreeMap::from([("a".to_string(), BTreeMap::from([(0, 3), (1, 0)]))]),
            replicas: BTreeMap::from([(
                "a".to_string(),
                BTreeMap::from([(0, vec![3]), (1, vec![0])]),
            )]),
            brokers: BTreeMap::from([(0, "h0:9092".to_string()), (3, "h3:9092".to_string())]),
        };
        let ongoing = BTreeMap::from([(
            tp("a", 0),
            OngoingReassignment {
                replicas: vec![3, 0],
                adding: vec![0],
                removing: vec![3],
            },
        )]);
        let v = ClusterView::new(&md, &ongoing);
        assert_eq!(v.brokers, BTreeSet::from([0, 3]));
        assert_eq!(v.partitions[&tp("a", 0)], (vec![3], 3));
        assert_eq!(v.ongoing[&tp("a", 0)], vec![0]);
    }
}
