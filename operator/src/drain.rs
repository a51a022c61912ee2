//! Draining brokers before a scale-down: which partitions move where. Pure.
//!
//! Brokers that form one cluster hold each partition on its owner broker (replicas = [owner]).
//! Before the StatefulSet shrinks, every partition on a broker being removed (ordinals >=
//! the new replica count) is moved with AlterPartitionReassignments to the remaining broker that
//! holds the fewest partitions, counting the moves already planned and in flight. The reconciler
//! asks again every pass (Metadata + ListPartitionReassignments) until nothing is left on the
//! removed brokers; then it unregisters them and shrinks the StatefulSet.
//!
//! When the brokers report their disks (DescribeLogDirs), a partition only goes to a broker with
//! room for it: the free space on its volume, counted against the volume's claimed size as well
//! as what its file system reports, less a reserve. Partitions are placed largest first, and a
//! scale-down whose partitions do not all fit is refused before anything moves: moving half of
//! them and then stopping would only fill the staying brokers.

use std::collections::{BTreeMap, BTreeSet};

use crate::kafka::{ClusterMetadata, LogDirUsage, OngoingReassignment};
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
    /// Disk use and room of the brokers that reported it; a broker missing here is not limited.
    pub disks: BTreeMap<i32, BrokerDisk>,
}

/// What one broker stores and how much more it can take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerDisk {
    /// Bytes of each partition stored on the broker.
    pub partitions: BTreeMap<TopicPartition, u64>,
    /// Bytes of partitions the broker can still take (see [`room`]).
    pub room: u64,
}

/// Share of a broker's volume kept free after the moves: a broker whose volume is full refuses
/// every write, so a drain must never fill one to the brim.
pub const RESERVE_PERCENT: u64 = 10;

/// The disk of a broker from its DescribeLogDirs answer and `claimed`, the size of its volume
/// (the PVC's capacity) when known. The room is the free space, less [`RESERVE_PERCENT`] of the
/// volume: free space is the smaller of what the file system reports and the claim less what
/// the broker stores, because a file system larger than its claim (hostPath, local volumes,
/// some CSI drivers) must still not be filled beyond the claim. `None` when neither the claim
/// nor the volume size is known.
pub fn broker_disk(usage: &LogDirUsage, claimed: Option<u64>) -> Option<BrokerDisk> {
    let size = claimed.or(usage.total_bytes)?;
    let by_claim = claimed.map(|c| c.saturating_sub(usage.used_bytes()));
    let free = match (by_claim, usage.usable_bytes) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => size.saturating_sub(usage.used_bytes()),
    };
    Some(BrokerDisk {
        partitions: usage.partitions.clone(),
        room: free.saturating_sub(size / 100 * RESERVE_PERCENT),
    })
}

/// A byte count for people: "512 B", "1.4 MiB", "3.0 GiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
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
            disks: BTreeMap::new(),
        }
    }

    /// Takes the disks the brokers reported (broker id → disk).
    pub fn with_disks(mut self, disks: BTreeMap<i32, BrokerDisk>) -> ClusterView {
        self.disks = disks;
        self
    }

    /// Bytes of `tp` where it is stored now (the largest copy its holders report); 0 when no
    /// holder reported its disk.
    fn size_of(&self, tp: &TopicPartition) -> u64 {
        self.holders(tp)
            .iter()
            .filter_map(|b| self.disks.get(b)?.partitions.get(tp).copied())
            .max()
            .unwrap_or(0)
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
    // Room left on each target that reported its disk, once the moves in flight have landed
    // (less what of them it already holds).
    let mut room: BTreeMap<i32, u64> = targets
        .iter()
        .filter_map(|t| Some((*t, view.disks.get(t)?.room)))
        .collect();
    for tp in view.partitions.keys() {
        let in_flight = view.ongoing.get(tp);
        let placed = in_flight.cloned().unwrap_or_else(|| view.holders(tp));
        for b in placed {
            if let Some(n) = load.get_mut(&b) {
                *n += 1;
            }
            if in_flight.is_some() && !view.holders(tp).contains(&b) {
                if let Some(r) = room.get_mut(&b) {
                    let copied = view
                        .disks
                        .get(&b)
                        .and_then(|d| d.partitions.get(tp))
                        .copied()
                        .unwrap_or(0);
                    *r = r.saturating_sub(view.size_of(tp).saturating_sub(copied));
                }
            }
        }
    }

    let mut requests = Vec::new();
    let mut remaining = 0;
    let mut moving = 0;
    let mut stuck = Vec::new();
    let mut too_big = Vec::new();
    let mut to_place = Vec::new();
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
        to_place.push((tp, on_removed));
    }
    // Largest first: they have the fewest places to go. Equal sizes (and unknown ones) keep the
    // partitions' order.
    to_place.sort_by_key(|(tp, _)| std::cmp::Reverse(view.size_of(tp)));
    for (tp, on_removed) in to_place {
        if load.is_empty() {
            stuck.push(tp.clone());
            continue;
        }
        let size = view.size_of(tp);
        let fits = |b: &i32| room.get(b).is_none_or(|r| *r >= size);
        let Some(target) = load
            .iter()
            .filter(|(b, _)| fits(b))
            .min_by_key(|(b, n)| (**n, **b))
            .map(|(b, _)| *b)
        else {
            too_big.push((tp.clone(), size));
            continue;
        };
        if let Some(n) = load.get_mut(&target) {
            *n += 1;
        }
        if let Some(r) = room.get_mut(&target) {
            *r -= size;
        }
        requests.push((tp.clone(), target));
        if on_removed {
            moving += 1;
        }
    }
    if !stuck.is_empty() {
        let known: Vec<i32> = view.brokers.iter().copied().collect();
        return DrainPlan::Blocked {
            reason: format!(
                "partitions {} on brokers {} cannot be moved: none of the remaining brokers \
                 0..{} is a live member of the cluster (registered: {}{}); wait for them to \
                 join or set replicas back",
                name_some(stuck.iter().map(ToString::to_string)),
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
    if !too_big.is_empty() {
        let needed: u64 = view
            .partitions
            .keys()
            .filter(|tp| view.holders(tp).iter().any(|b| removed_set.contains(b)))
            .map(|tp| view.size_of(tp))
            .sum();
        let rooms: Vec<String> = targets
            .iter()
            .filter_map(|t| Some((t, view.disks.get(t)?.room)))
            .map(|(t, r)| format!("broker {t} {}", human_bytes(r)))
            .collect();
        return DrainPlan::Blocked {
            reason: format!(
                "partitions {} on brokers {} do not fit on the remaining brokers: they hold {} \
                 in all, and the room left (free space on the volume less a \
                 {RESERVE_PERCENT}% reserve) is {}; grow storage.size, lower the queues' \
                 retention, or set replicas back",
                name_some(
                    too_big
                        .iter()
                        .map(|(tp, size)| format!("{tp} ({})", human_bytes(*size)))
                ),
                id_list(removed),
                human_bytes(needed),
                rooms.join(", "),
            ),
            blocking: too_big.into_iter().map(|(tp, _)| tp).collect(),
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

/// Largest number of moves a rebalance requests at once: each copies a partition between two
/// brokers, and the next batch waits until these are done.
pub const REBALANCE_BATCH: usize = 4;

/// What to do next to balance partitions over the brokers `0..brokers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalancePlan {
    /// Every live broker holds within one partition of every other (or nothing can move).
    Balanced,
    /// Moves are in flight; nothing new until they are done.
    Waiting {
        /// How many.
        moving: usize,
    },
    /// Moves to request now: partition → target, the most loaded broker to the least.
    Move {
        /// The moves.
        requests: Vec<(TopicPartition, i32)>,
        /// Partitions per live broker before these moves, for messages.
        load: BTreeMap<i32, usize>,
    },
}

/// Plans the next batch of moves that brings the partition counts of the live brokers among
/// `0..brokers` within one of each other. From each overloaded broker the smallest partitions
/// go first (the cheapest to copy), and only to a broker with room for them.
pub fn plan_rebalance(view: &ClusterView, brokers: i32) -> RebalancePlan {
    let live: Vec<i32> = view
        .brokers
        .iter()
        .copied()
        .filter(|b| (0..brokers).contains(b) && !view.fenced.contains(b))
        .collect();
    if live.len() < 2 {
        return RebalancePlan::Balanced;
    }
    if !view.ongoing.is_empty() {
        return RebalancePlan::Waiting {
            moving: view.ongoing.len(),
        };
    }
    // Partitions on exactly one live broker; others (on a fenced or removed broker) stay put.
    let mut on: BTreeMap<i32, Vec<&TopicPartition>> = live.iter().map(|b| (*b, vec![])).collect();
    for tp in view.partitions.keys() {
        if let [holder] = view.holders(tp).as_slice() {
            if let Some(list) = on.get_mut(holder) {
                list.push(tp);
            }
        }
    }
    let load: BTreeMap<i32, usize> = on.iter().map(|(b, l)| (*b, l.len())).collect();
    let mut count = load.clone();
    let mut room: BTreeMap<i32, u64> = live
        .iter()
        .filter_map(|b| Some((*b, view.disks.get(b)?.room)))
        .collect();
    for list in on.values_mut() {
        // smallest last, so `pop` takes it; equal sizes: the highest partition goes first
        list.sort_by_key(|tp| (std::cmp::Reverse(view.size_of(tp)), (*tp).clone()));
    }
    let mut requests = Vec::new();
    while requests.len() < REBALANCE_BATCH {
        let Some((&src, &most)) = count.iter().max_by_key(|(b, n)| (**n, **b)) else {
            break;
        };
        let Some((&dst, &fewest)) = count
            .iter()
            .min_by_key(|(b, n)| (**n, std::cmp::Reverse(**b)))
        else {
            break;
        };
        if most <= fewest + 1 {
            break;
        }
        let Some(tp) = on.get_mut(&src).and_then(|l| l.pop()) else {
            break;
        };
        let size = view.size_of(tp);
        if room.get(&dst).is_some_and(|r| *r < size) {
            // The smallest partition of the fullest broker does not fit on the emptiest one:
            // nothing else will either.
            break;
        }
        if let Some(r) = room.get_mut(&dst) {
            *r -= size;
        }
        count.entry(src).and_modify(|n| *n -= 1);
        count.entry(dst).and_modify(|n| *n += 1);
        requests.push((tp.clone(), dst));
    }
    if requests.is_empty() {
        RebalancePlan::Balanced
    } else {
        RebalancePlan::Move { requests, load }
    }
}

/// The first ten items, comma-separated, and how many more there are.
fn name_some(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    let mut text = items.take(10).collect::<Vec<_>>().join(", ");
    if total > 10 {
        text.push_str(&format!(" and {} more", total - 10));
    }
    text
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
            disks: BTreeMap::new(),
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

    const MIB: u64 = 1 << 20;

    /// A broker's disk: its partitions (topic, partition, bytes) and its room.
    fn disk(parts: &[(&str, i32, u64)], room: u64) -> BrokerDisk {
        BrokerDisk {
            partitions: parts.iter().map(|(t, p, n)| (tp(t, *p), *n)).collect(),
            room,
        }
    }

    #[test]
    fn room_is_the_free_space_of_the_claim_or_the_file_system_less_the_reserve() {
        let usage = LogDirUsage {
            partitions: BTreeMap::from([(tp("a", 0), 30 * MIB), (tp("a", 1), 10 * MIB)]),
            total_bytes: Some(1000 * MIB),
            usable_bytes: Some(900 * MIB),
            failed: vec![],
        };
        // A 100 MiB claim on a large file system: 60 MiB free by the claim, less 10 MiB reserve.
        let d = broker_disk(&usage, Some(100 * MIB)).expect("known");
        assert_eq!(d.room, 50 * MIB);
        assert_eq!(d.partitions.len(), 2);
        // The file system is fuller than the claim says: its free space counts.
        let full = LogDirUsage {
            usable_bytes: Some(15 * MIB),
            ..usage.clone()
        };
        assert_eq!(
            broker_disk(&full, Some(100 * MIB)).expect("known").room,
            5 * MIB
        );
        // No claim known: the volume as the broker reports it.
        assert_eq!(
            broker_disk(&usage, None).expect("known").room,
            800 * MIB,
            "900 MiB usable less 10% of 1000 MiB"
        );
        // Full beyond the reserve: no room, never an underflow.
        let brim = LogDirUsage {
            usable_bytes: Some(MIB),
            ..usage.clone()
        };
        assert_eq!(broker_disk(&brim, Some(100 * MIB)).expect("known").room, 0);
        // Nothing known about the volume (a broker before DescribeLogDirs v4, no claim).
        let unknown = LogDirUsage {
            total_bytes: None,
            usable_bytes: None,
            ..usage
        };
        assert_eq!(broker_disk(&unknown, None), None);
    }

    #[test]
    fn byte_counts_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * MIB / 2), "1.5 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn partitions_go_largest_first_to_brokers_with_room() {
        // brokers 0 and 1 stay; broker 2 holds a big and two small partitions
        let v = view(&[0, 1, 2], &[("a", 0, 2), ("a", 1, 2), ("a", 2, 2)]).with_disks(
            BTreeMap::from([
                (0, disk(&[], 5 * MIB)),
                (1, disk(&[], 12 * MIB)),
                (
                    2,
                    disk(&[("a", 0, MIB), ("a", 1, 10 * MIB), ("a", 2, MIB)], 0),
                ),
            ]),
        );
        match plan_drain(&v, 2, &[2]) {
            DrainPlan::Moving {
                requests,
                remaining,
                moving,
            } => {
                // a-1 (10 MiB) only fits on 1; then a-0 and a-2 balance the count onto 0
                assert_eq!(
                    requests,
                    vec![(tp("a", 1), 1), (tp("a", 0), 0), (tp("a", 2), 0)]
                );
                assert_eq!((remaining, moving), (3, 3));
            }
            other => panic!("expected moves, got {other:?}"),
        }
    }

    #[test]
    fn partitions_that_fit_nowhere_refuse_the_scale_down_before_anything_moves() {
        let v = view(&[0, 1, 2], &[("a", 0, 0), ("a", 1, 2), ("a", 2, 2)]).with_disks(
            BTreeMap::from([
                (0, disk(&[("a", 0, MIB)], 3 * MIB)),
                (1, disk(&[], 2 * MIB)),
                (2, disk(&[("a", 1, 4 * MIB), ("a", 2, MIB)], 0)),
            ]),
        );
        match plan_drain(&v, 2, &[2]) {
            DrainPlan::Blocked { reason, blocking } => {
                assert_eq!(
                    blocking,
                    vec![tp("a", 1)],
                    "a-2 would fit, a-1 fits nowhere"
                );
                assert!(reason.contains("a-1 (4.0 MiB)"), "{reason}");
                assert!(reason.contains("hold 5.0 MiB in all"), "{reason}");
                assert!(
                    reason.contains("broker 0 3.0 MiB, broker 1 2.0 MiB"),
                    "{reason}"
                );
                assert!(reason.contains("grow storage.size"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // A broker that did not report its disk is not held to a limit.
        let mut unknown = v.clone();
        unknown.disks.remove(&1);
        match plan_drain(&unknown, 2, &[2]) {
            DrainPlan::Moving { requests, .. } => {
                assert_eq!(requests, vec![(tp("a", 1), 1), (tp("a", 2), 0)])
            }
            other => panic!("expected moves, got {other:?}"),
        }
    }

    #[test]
    fn moves_in_flight_take_their_room_on_the_target() {
        // a-0 (4 MiB) is being copied to broker 0, 1 MiB of it already there
        let mut v = view(&[0, 1, 2], &[("a", 0, 2), ("a", 1, 2)]).with_disks(BTreeMap::from([
            (0, disk(&[("a", 0, MIB)], 5 * MIB)),
            (1, disk(&[], MIB)),
            (2, disk(&[("a", 0, 4 * MIB), ("a", 1, 2 * MIB)], 0)),
        ]));
        v.ongoing.insert(tp("a", 0), vec![0]);
        // 5 - (4 - 1) = 2 MiB left on 0: a-1 (2 MiB) fits there, not on 1
        match plan_drain(&v, 2, &[2]) {
            DrainPlan::Moving { requests, .. } => assert_eq!(requests, vec![(tp("a", 1), 0)]),
            other => panic!("expected a move, got {other:?}"),
        }
        v.disks.get_mut(&0).expect("disk").partitions.clear();
        // nothing copied yet: 1 MiB left on 0, and a-1 fits nowhere
        assert!(matches!(plan_drain(&v, 2, &[2]), DrainPlan::Blocked { .. }));
    }

    #[test]
    fn a_new_broker_gets_partitions_from_the_most_loaded_until_within_one() {
        // brokers 0 and 1 hold 3 each; broker 2 just joined
        let v = view(
            &[0, 1, 2],
            &[
                ("a", 0, 0),
                ("a", 1, 1),
                ("a", 2, 0),
                ("a", 3, 1),
                ("a", 4, 0),
                ("a", 5, 1),
            ],
        );
        match plan_rebalance(&v, 3) {
            RebalancePlan::Move { requests, load } => {
                // the highest-numbered partition of broker 1 (ties: the higher id gives), then
                // of broker 0; 2-2-2 afterwards
                assert_eq!(requests, vec![(tp("a", 5), 2), (tp("a", 4), 2)]);
                assert_eq!(load, BTreeMap::from([(0, 3), (1, 3), (2, 0)]));
            }
            other => panic!("expected moves, got {other:?}"),
        }
        let balanced = view(
            &[0, 1, 2],
            &[("a", 0, 0), ("a", 1, 1), ("a", 2, 0), ("b", 0, 2)],
        );
        assert_eq!(plan_rebalance(&balanced, 3), RebalancePlan::Balanced);
    }

    #[test]
    fn a_rebalance_waits_for_moves_in_flight_and_leaves_fenced_and_removed_brokers_alone() {
        let mut v = view(&[0, 1, 2], &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)]);
        v.ongoing.insert(tp("a", 0), vec![1]);
        assert_eq!(plan_rebalance(&v, 3), RebalancePlan::Waiting { moving: 1 });
        // broker 2 fenced, broker 3 beyond spec.replicas: only 0 and 1 take part
        let v = view(
            &[0, 1, 2, 3],
            &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0), ("b", 0, 3)],
        )
        .with_registered(&BTreeMap::from([
            (0, false),
            (1, false),
            (2, true),
            (3, false),
        ]));
        match plan_rebalance(&v, 3) {
            RebalancePlan::Move { requests, .. } => assert_eq!(requests, vec![(tp("a", 2), 1)]),
            other => panic!("expected a move, got {other:?}"),
        }
        assert_eq!(
            plan_rebalance(&view(&[0], &[("a", 0, 0)]), 1),
            RebalancePlan::Balanced
        );
    }

    #[test]
    fn a_rebalance_moves_the_smallest_partitions_and_only_where_they_fit() {
        let v = view(
            &[0, 1],
            &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0), ("a", 3, 0)],
        )
        .with_disks(BTreeMap::from([
            (
                0,
                disk(
                    &[
                        ("a", 0, 5 * MIB),
                        ("a", 1, MIB),
                        ("a", 2, 9 * MIB),
                        ("a", 3, 2 * MIB),
                    ],
                    0,
                ),
            ),
            (1, disk(&[], 4 * MIB)),
        ]));
        match plan_rebalance(&v, 2) {
            RebalancePlan::Move { requests, .. } => {
                // 1 MiB then 2 MiB; the next (5 MiB) would not fit, and 2-2 is balanced anyway
                assert_eq!(requests, vec![(tp("a", 1), 1), (tp("a", 3), 1)])
            }
            other => panic!("expected moves, got {other:?}"),
        }
        let mut tight = v.clone();
        tight.disks.get_mut(&1).expect("disk").room = MIB / 2;
        assert_eq!(
            plan_rebalance(&tight, 2),
            RebalancePlan::Balanced,
            "nothing fits"
        );
        // many partitions: one batch at a time
        let parts: Vec<(String, i32, i32)> = (0..20).map(|p| ("m".to_string(), p, 0)).collect();
        let refs: Vec<(&str, i32, i32)> =
            parts.iter().map(|(t, p, o)| (t.as_str(), *p, *o)).collect();
        match plan_rebalance(&view(&[0, 1], &refs), 2) {
            RebalancePlan::Move { requests, .. } => assert_eq!(requests.len(), REBALANCE_BATCH),
            other => panic!("expected moves, got {other:?}"),
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
