//! Replication health as the brokers report it: which partitions are under-replicated (a
//! replica missing from the in-sync replicas, or no leader) and which are offline (no leader).
//! Pure; the status counts, the `Replicated` condition and the roll's wait all read it.

use std::collections::BTreeMap;

use crate::kafka::{ClusterMetadata, OngoingReassignment};
use crate::scale::TopicPartition;

/// The partitions that are not fully replicated, in topic and partition order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionHealth {
    /// Partitions whose in-sync replicas lack one of their replicas, or that have no leader.
    pub under_replicated: Vec<TopicPartition>,
    /// Partitions with no leader: no in-sync replica is running.
    pub offline: Vec<TopicPartition>,
}

impl PartitionHealth {
    /// The health from Metadata (leader, replicas, ISR of each partition) and the moves in
    /// flight (ListPartitionReassignments). A replica being added by a move is not expected in
    /// the ISR yet: Kafka counts a moving partition against its replication factor, not against
    /// the union of its old and new replicas, and so does this.
    pub fn of(
        metadata: &ClusterMetadata,
        ongoing: &BTreeMap<TopicPartition, OngoingReassignment>,
    ) -> PartitionHealth {
        let mut health = PartitionHealth::default();
        for (topic, leaders) in &metadata.topics {
            for (partition, leader) in leaders {
                let tp = TopicPartition {
                    topic: topic.clone(),
                    partition: *partition,
                };
                let listed = |map: &BTreeMap<String, BTreeMap<i32, Vec<i32>>>| {
                    map.get(topic)
                        .and_then(|p| p.get(partition))
                        .cloned()
                        .unwrap_or_default()
                };
                let isr = listed(&metadata.isr);
                let adding = ongoing
                    .get(&tp)
                    .map(|m| m.adding.clone())
                    .unwrap_or_default();
                let missing = listed(&metadata.replicas)
                    .iter()
                    .any(|r| !adding.contains(r) && !isr.contains(r));
                if *leader < 0 {
                    health.offline.push(tp.clone());
                }
                if *leader < 0 || missing {
                    health.under_replicated.push(tp);
                }
            }
        }
        health
    }

    /// No partition is under-replicated (so none is offline either).
    pub fn in_sync(&self) -> bool {
        self.under_replicated.is_empty()
    }

    /// For people: "2 under-replicated partitions (e.g. orders-1), 1 of them offline (e.g.
    /// audit-0)"; "every partition is in sync" when nothing is wrong.
    pub fn summary(&self) -> String {
        if self.in_sync() {
            return "every partition has all its replicas in sync".to_string();
        }
        let mut text = count_with_example(&self.under_replicated, "under-replicated partition");
        if let Some(first) = self.offline.first() {
            text.push_str(&format!(
                ", {} of them offline (e.g. {first})",
                self.offline.len()
            ));
        }
        text
    }
}

/// "3 under-replicated partitions (e.g. orders-1)", "1 under-replicated partition (orders-1)".
fn count_with_example(parts: &[TopicPartition], noun: &str) -> String {
    match parts {
        [] => format!("no {noun}s"),
        [one] => format!("1 {noun} ({one})"),
        [first, ..] => format!("{} {noun}s (e.g. {first})", parts.len()),
    }
}

/// A count as the status stores it.
pub fn count(parts: &[TopicPartition]) -> i32 {
    i32::try_from(parts.len()).unwrap_or(i32::MAX)
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

    /// One partition: (topic, partition, leader, replicas, isr).
    type Part<'a> = (&'a str, i32, i32, &'a [i32], &'a [i32]);

    /// Metadata of the partitions.
    fn metadata(parts: &[Part<'_>]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for (t, p, leader, replicas, isr) in parts {
            md.topics
                .entry(t.to_string())
                .or_default()
                .insert(*p, *leader);
            md.replicas
                .entry(t.to_string())
                .or_default()
                .insert(*p, replicas.to_vec());
            md.isr
                .entry(t.to_string())
                .or_default()
                .insert(*p, isr.to_vec());
        }
        md
    }

    #[test]
    fn a_replica_missing_from_the_isr_or_no_leader_is_under_replicated() {
        let md = metadata(&[
            ("a", 0, 0, &[0, 1, 2], &[0, 1, 2]),
            ("a", 1, 1, &[1, 2, 0], &[1, 0]),
            ("b", 0, -1, &[2], &[]),
            ("b", 1, 2, &[2], &[2]),
        ]);
        let h = PartitionHealth::of(&md, &BTreeMap::new());
        assert_eq!(h.under_replicated, vec![tp("a", 1), tp("b", 0)]);
        assert_eq!(h.offline, vec![tp("b", 0)]);
        assert!(!h.in_sync());
        assert_eq!(
            h.summary(),
            "2 under-replicated partitions (e.g. a-1), 1 of them offline (e.g. b-0)"
        );
        assert_eq!(count(&h.under_replicated), 2);
    }

    #[test]
    fn a_replica_being_added_by_a_move_is_not_missing_yet() {
        // a-0 moves from [0,1,2] to [0,1,3]: Metadata lists all four, 3 still catching up
        let md = metadata(&[("a", 0, 0, &[0, 1, 2, 3], &[0, 1, 2])]);
        let moving = BTreeMap::from([(
            tp("a", 0),
            OngoingReassignment {
                replicas: vec![0, 1, 2, 3],
                adding: vec![3],
                removing: vec![2],
            },
        )]);
        assert!(PartitionHealth::of(&md, &moving).in_sync());
        assert!(!PartitionHealth::of(&md, &BTreeMap::new()).in_sync());
    }

    #[test]
    fn one_copy_partitions_with_a_leader_are_in_sync() {
        let md = metadata(&[("a", 0, 0, &[0], &[0]), ("a", 1, 1, &[1], &[1])]);
        let h = PartitionHealth::of(&md, &BTreeMap::new());
        assert!(h.in_sync());
        assert_eq!(h.summary(), "every partition has all its replicas in sync");
        let one = PartitionHealth {
            under_replicated: vec![tp("x", 3)],
            offline: vec![],
        };
        assert_eq!(one.summary(), "1 under-replicated partition (x-3)");
    }
}
