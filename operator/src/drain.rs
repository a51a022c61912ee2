//! Draining brokers before a scale-down: which partitions move where. Pure.
//!
//! Brokers that form one cluster hold each partition on its replicas (the first one the
//! preferred leader). Before the StatefulSet shrinks, every copy on a broker being removed
//! (ordinals >= the new replica count) is moved with AlterPartitionReassignments to the
//! remaining broker that holds the fewest replicas and no copy of that partition yet, counting
//! the moves already planned and in flight; the partition's other copies stay where they are,
//! so it keeps its replication factor throughout. The reconciler asks again every pass
//! (Metadata + ListPartitionReassignments) until nothing is left on the removed brokers; then it
//! unregisters them and shrinks the StatefulSet.
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
        /// Moves to request now: partition → its full new replica list.
        requests: Vec<(TopicPartition, Vec<i32>)>,
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

/// A move for messages: "orders-3 → broker 1" for one copy, "orders-3 → brokers 1,0,2" for
/// several (the new replica list, preferred leader first).
pub fn move_text(tp: &TopicPartition, replicas: &[i32]) -> String {
    match replicas {
        [one] => format!("{tp} → broker {one}"),
        many => format!("{tp} → brokers {}", id_list(many)),
    }
}

/// Plans the drain of brokers `keep..` (`removed`) onto the brokers `0..keep` that are registered
/// and not fenced. Each partition with a copy on a removed broker gets a new replica list in
/// which only the removed brokers are replaced, each by the staying broker with the fewest
/// replicas that holds no copy of the partition yet and has room for it; the other replicas
/// keep their places, so the leader stays unless it is leaving. A partition with more copies
/// than brokers would stay refuses the whole scale-down before anything moves: it would lose
/// a copy.
pub fn plan_drain(view: &ClusterView, keep: i32, removed: &[i32]) -> DrainPlan {
    let removed_set: BTreeSet<i32> = removed.iter().copied().collect();
    let targets: Vec<i32> = view
        .brokers
        .iter()
        .copied()
        .filter(|b| (0..keep).contains(b) && !view.fenced.contains(b))
        .collect();
    // Replicas each target holds once every move in flight is done.
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

    let mut remaining = 0;
    let mut moving = 0;
    // (partition, on a removed broker now, the replica list to rewrite)
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
        // A move in flight towards a removed broker is redirected from where it was going.
        let base = in_flight.cloned().unwrap_or_else(|| view.holders(tp));
        to_place.push((tp, on_removed, base));
    }

    let too_wide: Vec<(&TopicPartition, usize)> = to_place
        .iter()
        .map(|(tp, _, base)| (*tp, base.len()))
        .filter(|(_, rf)| *rf > usize::try_from(keep).unwrap_or(0))
        .collect();
    if !too_wide.is_empty() {
        let widest = too_wide.iter().map(|(_, rf)| *rf).max().unwrap_or(0);
        let (noun, verb) = if too_wide.len() == 1 {
            ("partition", "has")
        } else {
            ("partitions", "have")
        };
        return DrainPlan::Blocked {
            reason: format!(
                "{noun} {} {verb} more copies than the {keep} brokers that would stay: a \
                 partition keeps its replication factor and each copy needs a broker of its \
                 own; set replicas back to at least {widest}",
                name_some(
                    too_wide
                        .iter()
                        .map(|(tp, rf)| format!("{tp} (replication factor {rf})"))
                ),
            ),
            blocking: too_wide.into_iter().map(|(tp, _)| tp.clone()).collect(),
        };
    }

    // Largest first: they have the fewest places to go. Equal sizes (and unknown ones) keep the
    // partitions' order.
    to_place.sort_by_key(|(tp, _, _)| std::cmp::Reverse(view.size_of(tp)));
    let mut requests = Vec::new();
    let mut stuck = Vec::new();
    let mut too_big = Vec::new();
    for (tp, on_removed, base) in to_place {
        let size = view.size_of(tp);
        let mut replicas = base;
        let mut taken = Vec::new();
        let mut failed = None;
        for slot in 0..replicas.len() {
            if !removed_set.contains(&replicas[slot]) {
                continue;
            }
            let free: Vec<i32> = load
                .keys()
                .copied()
                .filter(|b| !replicas.contains(b))
                .collect();
            let fits = |b: &i32| room.get(b).is_none_or(|r| *r >= size);
            let Some(target) = free
                .iter()
                .copied()
                .filter(fits)
                .min_by_key(|b| (load.get(b).copied().unwrap_or(0), *b))
            else {
                failed = Some(free.is_empty());
                break;
            };
            replicas[slot] = target;
            taken.push(target);
            if let Some(n) = load.get_mut(&target) {
                *n += 1;
            }
            if let Some(r) = room.get_mut(&target) {
                *r -= size;
            }
        }
        match failed {
            None => {
                requests.push((tp.clone(), replicas));
                if on_removed {
                    moving += 1;
                }
            }
            Some(no_broker) => {
                // Undo this partition's places: the others may still fit.
                for b in taken {
                    if let Some(n) = load.get_mut(&b) {
                        *n -= 1;
                    }
                    if let Some(r) = room.get_mut(&b) {
                        *r += size;
                    }
                }
                if no_broker {
                    stuck.push(tp.clone());
                } else {
                    too_big.push((tp.clone(), size));
                }
            }
        }
    }
    if !stuck.is_empty() {
        let known: Vec<i32> = view.brokers.iter().copied().collect();
        let membership = format!(
            "registered: {}{}",
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
        );
        let why = if targets.is_empty() {
            format!(
                "none of the remaining brokers 0..{} is a live member of the cluster",
                keep - 1
            )
        } else {
            format!(
                "each copy needs a live remaining broker that holds no copy of the partition \
                 yet, and of the remaining brokers 0..{} only {} are live members of the cluster",
                keep - 1,
                id_list(&targets)
            )
        };
        return DrainPlan::Blocked {
            reason: format!(
                "partitions {} on brokers {} cannot be moved: {why} ({membership}); wait for \
                 them to join or set replicas back",
                name_some(stuck.iter().map(ToString::to_string)),
                id_list(removed),
            ),
            blocking: stuck,
        };
    }
    if !too_big.is_empty() {
        let needed: u64 = view
            .partitions
            .keys()
            .map(|tp| {
                let copies = view
                    .holders(tp)
                    .iter()
                    .filter(|b| removed_set.contains(b))
                    .count();
                view.size_of(tp) * copies as u64
            })
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
    /// Every live broker holds within one replica of every other (or nothing can move).
    Balanced,
    /// Moves are in flight; nothing new until they are done.
    Waiting {
        /// How many.
        moving: usize,
    },
    /// Moves to request now: partition → its full new replica list, one copy moving from the
    /// most loaded broker to the least.
    Move {
        /// The moves.
        requests: Vec<(TopicPartition, Vec<i32>)>,
        /// Replicas per live broker before these moves, for messages.
        load: BTreeMap<i32, usize>,
    },
}

/// Plans the next batch of moves that brings the replica counts of the live brokers among
/// `0..brokers` within one of each other: a copy moves from the broker holding the most
/// replicas to the one holding the fewest, taking its place in the partition's replica list
/// (so a leader moves only if it was the copy moved). From each overloaded broker the smallest
/// partitions go first (the cheapest to copy), only partitions the receiving broker holds no
/// copy of, only to a broker with room for them, and each partition at most once per batch.
/// With one copy per partition this balances partition counts.
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
    // Partitions whose every copy is on a live broker; others (a copy on a fenced or removed
    // broker) stay put.
    let mut replicas: BTreeMap<&TopicPartition, Vec<i32>> = BTreeMap::new();
    let mut on: BTreeMap<i32, Vec<&TopicPartition>> = live.iter().map(|b| (*b, vec![])).collect();
    for tp in view.partitions.keys() {
        let holders = view.holders(tp);
        if holders.is_empty() || !holders.iter().all(|b| on.contains_key(b)) {
            continue;
        }
        for b in &holders {
            if let Some(list) = on.get_mut(b) {
                list.push(tp);
            }
        }
        replicas.insert(tp, holders);
    }
    let load: BTreeMap<i32, usize> = on.iter().map(|(b, l)| (*b, l.len())).collect();
    let mut count = load.clone();
    let mut room: BTreeMap<i32, u64> = live
        .iter()
        .filter_map(|b| Some((*b, view.disks.get(b)?.room)))
        .collect();
    for list in on.values_mut() {
        // smallest last, so the search from the back finds it first; equal sizes: the highest
        // partition goes first
        list.sort_by_key(|tp| (std::cmp::Reverse(view.size_of(tp)), (*tp).clone()));
    }
    let mut requests: Vec<(TopicPartition, Vec<i32>)> = Vec::new();
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
        let moved = |tp: &TopicPartition| requests.iter().any(|(m, _)| m == tp);
        let Some(list) = on.get_mut(&src) else { break };
        let Some(at) = list
            .iter()
            .rposition(|tp| !moved(tp) && replicas.get(*tp).is_some_and(|r| !r.contains(&dst)))
        else {
            break;
        };
        let tp = list.remove(at);
        let size = view.size_of(tp);
        if room.get(&dst).is_some_and(|r| *r < size) {
            // The smallest partition of the fullest broker does not fit on the emptiest one:
            // nothing else will either.
            break;
        }
        if let Some(r) = room.get_mut(&dst) {
            *r -= size;
        }
        let new: Vec<i32> = replicas
            .get(tp)
            .map(|r| r.iter().map(|b| if *b == src { dst } else { *b }).collect())
            .unwrap_or_default();
        count.entry(src).and_modify(|n| *n -= 1);
        count.entry(dst).and_modify(|n| *n += 1);
        requests.push((tp.clone(), new));
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
#[path = "drain_tests.rs"]
mod tests;
