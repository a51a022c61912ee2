//! The committed offsets of one `__consumer_offsets` partition, in memory (pure).
//!
//! The log is the truth; this map is its replay. Records reach it two ways:
//! - **load** (a broker becomes the partition's leader): every record from the log start to the
//!   log end, applied in order ([`OffsetMap::apply`]);
//! - **commits** (this broker leads): the records are appended to the log, *staged* here under
//!   the offset of their last record ([`OffsetMap::stage`]), and applied once the high
//!   watermark passed them ([`OffsetMap::materialize`]), always in log order: two commits of
//!   the same partition whose replication completes out of order still end with the later
//!   one, and OffsetFetch never shows an offset that is not on every in-sync replica.
//!
//! Compaction ([`compaction_due`], [`OffsetMap::snapshot`]): once the log holds many more
//! records than live offsets, the coordinator appends every live offset again and moves the
//! log start to the first of them.
//!
//! Beside the offsets the map keeps each classic group's last membership record (replayed
//! the same way), which the next coordinator restores and a compaction writes again.

use std::collections::BTreeMap;

use super::records::{Membership, OffsetRecord};

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One group's offsets, by (topic, partition).
pub type GroupOffsets = BTreeMap<(String, i32), StoredOffset>;

/// Compact only once the log holds at least this many records since its start, so a small
/// partition is never rewritten (and the rewrite cost stays amortised).
pub const COMPACT_MIN_RECORDS: i64 = 10_000;

/// Whether a partition whose log holds `log_end - log_start` records for `live` live offsets
/// should be compacted: at least `min_records` of them, and more than twice the live ones
/// (so a compaction at least halves what a reload reads).
pub fn compaction_due(log_start: i64, log_end: i64, live: usize, min_records: i64) -> bool {
    let held = log_end.saturating_sub(log_start);
    let live = i64::try_from(live).unwrap_or(i64::MAX);
    held >= min_records && held > live.saturating_mul(2)
}

/// The committed offsets of one partition's groups, plus the commits appended but not yet
/// replicated.
#[derive(Debug, Default, Clone)]
pub struct OffsetMap {
    groups: BTreeMap<String, GroupOffsets>,
    live: usize,
    /// Appended, not yet below the high watermark: by the offset of each batch's last record.
    pending: BTreeMap<i64, Vec<OffsetRecord>>,
    /// Offsets of transactions not ended yet, by producer id (TxnOffsetCommit): applied when
    /// the COMMIT marker is written, dropped at an ABORT.
    txns: BTreeMap<i64, Vec<OffsetRecord>>,
    /// Each classic group's last membership record, by group.
    memberships: BTreeMap<String, Membership>,
}

impl OffsetMap {
    /// Applies one record (log order).
    pub fn apply(&mut self, record: OffsetRecord) {
        match record {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                value,
            } => {
                if self
                    .groups
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), value)
                    .is_none()
                {
                    self.live += 1;
                }
            }
            OffsetRecord::Tombstone {
                group,
                topic,
                partition,
            } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    if g.remove(&(topic, partition)).is_some() {
                        self.live -= 1;
                    }
                    if g.is_empty() {
                        self.groups.remove(&group);
                    }
                }
            }
            OffsetRecord::Membership {
                group,
                membership: Some(m),
            } => {
                self.memberships.insert(group, *m);
            }
            OffsetRecord::Membership {
                group,
                membership: None,
            } => {
                self.memberships.remove(&group);
            }
        }
    }

    /// Each classic group's last membership record (what a new coordinator restores).
    pub fn memberships(&self) -> impl Iterator<Item = (&String, &Membership)> {
        self.memberships.iter()
    }

    /// Live records: offsets plus membership records (what a compaction writes again).
    pub fn live_records(&self) -> usize {
        self.live + self.memberships.len()
    }

    /// Offsets written in producer `producer_id`'s transaction, until its marker.
    pub fn add_txn(&mut self, producer_id: i64, records: impl IntoIterator<Item = OffsetRecord>) {
        self.txns.entry(producer_id).or_default().extend(records);
    }

    /// The offsets of producer `producer_id`'s transaction, which ends.
    pub fn take_txn(&mut self, producer_id: i64) -> Vec<OffsetRecord> {
        self.txns.remove(&producer_id).unwrap_or_default()
    }

    /// The partitions of `group` whose offsets some transaction holds, not committed yet.
    pub fn txn_partitions(&self, group: &str) -> std::collections::BTreeSet<(String, i32)> {
        self.txns
            .values()
            .flatten()
            .filter_map(|r| match r {
                OffsetRecord::Commit {
                    group: g,
                    topic,
                    partition,
                    ..
                } if g == group => Some((topic.clone(), *partition)),
                _ => None,
            })
            .collect()
    }

    /// Whether some transaction holds offsets not committed yet.
    pub fn has_open_txns(&self) -> bool {
        !self.txns.is_empty()
    }

    /// Records appended to the log in one batch ending at `last_offset`, applied once the high
    /// watermark passes it.
    pub fn stage(&mut self, last_offset: i64, records: Vec<OffsetRecord>) {
        self.pending.insert(last_offset, records);
    }

    /// Applies, in log order, every staged batch below `high_watermark`.
    pub fn materialize(&mut self, high_watermark: i64) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() >= high_watermark {
                break;
            }
            for r in entry.remove() {
                self.apply(r);
            }
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&StoredOffset> {
        self.groups
            .get(group)
            .and_then(|g| g.get(&(topic.to_string(), partition)))
    }

    /// The newest value of an offset, staged commits included (what a record appended now
    /// would follow).
    pub fn latest(&self, group: &str, topic: &str, partition: i32) -> Option<&StoredOffset> {
        for records in self.pending.values().rev() {
            for r in records.iter().rev() {
                match r {
                    OffsetRecord::Commit {
                        group: g,
                        topic: t,
                        partition: p,
                        value,
                    } if g == group && t == topic && *p == partition => return Some(value),
                    OffsetRecord::Tombstone {
                        group: g,
                        topic: t,
                        partition: p,
                    } if g == group && t == topic && *p == partition => return None,
                    _ => {}
                }
            }
        }
        self.get(group, topic, partition)
    }

    /// Every offset of `group`, ordered by topic and partition.
    pub fn group(&self, group: &str) -> Option<&GroupOffsets> {
        self.groups.get(group)
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Groups with at least one committed offset.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &GroupOffsets)> {
        self.groups.iter()
    }

    /// The (topic, partition) keys `select` picks among committed and staged offsets of
    /// `group`: what tombstones must cover so that nothing of it comes back.
    fn keys_where(&self, select: impl Fn(&str, &str) -> bool) -> Vec<(String, String, i32)> {
        let mut keys = std::collections::BTreeSet::new();
        for (g, offsets) in &self.groups {
            for (t, p) in offsets.keys() {
                if select(g, t) {
                    keys.insert((g.clone(), t.clone(), *p));
                }
            }
        }
        for r in self.pending.values().flatten() {
            if let OffsetRecord::Commit {
                group,
                topic,
                partition,
                ..
            } = r
            {
                if select(group, topic) {
                    keys.insert((group.clone(), topic.clone(), *partition));
                }
            }
        }
        keys.into_iter().collect()
    }

    /// Tombstones for every offset of `group` (DeleteGroups), and for its membership record
    /// if one is left.
    pub fn group_tombstones(&self, group: &str) -> Vec<OffsetRecord> {
        let mut out = tombstones(self.keys_where(|g, _| g == group));
        let staged = self.pending.values().flatten().rev().find_map(|r| match r {
            OffsetRecord::Membership {
                group: g,
                membership,
            } if g == group => Some(membership.is_some()),
            _ => None,
        });
        if staged.unwrap_or_else(|| self.memberships.contains_key(group)) {
            out.push(OffsetRecord::Membership {
                group: group.to_string(),
                membership: None,
            });
        }
        out
    }

    /// Tombstones for the offsets `group` holds of the `wanted` (topic, partition) pairs, committed
    /// or still replicating (OffsetDelete); pairs without an offset get none.
    pub fn partition_tombstones(
        &self,
        group: &str,
        wanted: &std::collections::BTreeSet<(String, i32)>,
    ) -> Vec<OffsetRecord> {
        let mut keys = self.keys_where(|g, t| g == group && wanted.iter().any(|(w, _)| w == t));
        keys.retain(|(_, t, p)| wanted.contains(&(t.clone(), *p)));
        tombstones(keys)
    }

    /// Tombstones for every offset of a topic not in the metadata any more (a deleted topic).
    pub fn tombstones_for_topics(&self, exists: impl Fn(&str) -> bool) -> Vec<OffsetRecord> {
        tombstones(self.keys_where(|_, t| !exists(t)))
    }

    /// How many offsets are live.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Every live offset as of the log end (staged commits applied), as commit records, and
    /// every membership record: what a compaction writes.
    pub fn snapshot(&self) -> Vec<OffsetRecord> {
        let mut view = self.clone();
        view.materialize(i64::MAX);
        let memberships = view
            .memberships
            .into_iter()
            .map(|(group, m)| OffsetRecord::Membership {
                group,
                membership: Some(Box::new(m)),
            });
        view.groups
            .into_iter()
            .flat_map(|(group, offsets)| {
                offsets
                    .into_iter()
                    .map(move |((topic, partition), value)| OffsetRecord::Commit {
                        group: group.clone(),
                        topic,
                        partition,
                        value,
                    })
            })
            .chain(memberships)
            .collect()
    }
}

fn tombstones(keys: Vec<(String, String, i32)>) -> Vec<OffsetRecord> {
    keys.into_iter()
        .map(|(group, topic, partition)| OffsetRecord::Tombstone {
            group,
            topic,
            partition,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.into(),
            topic: topic.into(),
            partition,
            value: StoredOffset {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: offset,
            },
        }
    }

    fn offset(m: &OffsetMap, g: &str, t: &str, p: i32) -> Option<i64> {
        m.get(g, t, p).map(|v| v.offset)
    }

    #[test]
    fn replay_applies_commits_and_tombstones_in_order() {
        let mut m = OffsetMap::default();
        for r in [
            commit("g", "t", 0, 1),
            commit("g", "t", 0, 2),
            commit("g", "t", 1, 7),
            commit("h", "t", 0, 3),
            OffsetRecord::Tombstone {
                group: "h".into(),
                topic: "t".into(),
                partition: 0,
            },
            // A tombstone for something never committed changes nothing.
            OffsetRecord::Tombstone {
                group: "x".into(),
                topic: "t".into(),
                partition: 0,
            },
        ] {
            m.apply(r);
        }
        assert_eq!(offset(&m, "g", "t", 0), Some(2));
        assert_eq!(offset(&m, "g", "t", 1), Some(7));
        assert_eq!(offset(&m, "h", "t", 0), None);
        assert!(!m.has_group("h"), "a group whose last offset went is gone");
        assert_eq!(m.live(), 2);
    }

    #[test]
    fn staged_commits_apply_in_log_order_once_replicated() {
        let mut m = OffsetMap::default();
        m.stage(10, vec![commit("g", "t", 0, 5)]);
        m.stage(11, vec![commit("g", "t", 0, 6)]);
        // Not replicated yet: not visible, but what the next record follows.
        assert_eq!(offset(&m, "g", "t", 0), None);
        assert_eq!(m.latest("g", "t", 0).map(|v| v.offset), Some(6));
        // The later commit's wait finishing first still applies both, in order.
        m.materialize(12);
        assert_eq!(offset(&m, "g", "t", 0), Some(6));
        m.stage(12, vec![commit("g", "t", 0, 7)]);
        m.materialize(12);
        assert_eq!(
            offset(&m, "g", "t", 0),
            Some(6),
            "offset 12 is not below 12"
        );
        m.materialize(13);
        assert_eq!(offset(&m, "g", "t", 0), Some(7));
    }

    #[test]
    fn group_and_topic_tombstones_cover_staged_commits_too() {
        let mut m = OffsetMap::default();
        m.apply(commit("g", "t", 0, 1));
        m.apply(commit("g", "gone", 0, 1));
        m.apply(commit("h", "gone", 2, 1));
        m.stage(5, vec![commit("g", "t", 1, 2)]);
        let keys = |rs: Vec<OffsetRecord>| -> Vec<(String, String, i32)> {
            rs.into_iter()
                .map(|r| match r {
                    OffsetRecord::Tombstone {
                        group,
                        topic,
                        partition,
                    } => (group, topic, partition),
                    other => panic!("not a tombstone: {other:?}"),
                })
                .collect()
        };
        assert_eq!(
            keys(m.group_tombstones("g")),
            vec![
                ("g".into(), "gone".into(), 0),
                ("g".into(), "t".into(), 0),
                ("g".into(), "t".into(), 1)
            ]
        );
        assert_eq!(
            keys(m.tombstones_for_topics(|t| t != "gone")),
            vec![
                ("g".into(), "gone".into(), 0),
                ("h".into(), "gone".into(), 2)
            ]
        );
        assert!(m.group_tombstones("nobody").is_empty());
    }

    #[test]
    fn a_snapshot_replays_to_the_same_offsets() {
        let mut m = OffsetMap::default();
        for i in 0..100 {
            m.apply(commit("g", "t", (i % 3) as i32, i));
        }
        m.apply(commit("h", "u", 0, 1));
        m.stage(200, vec![commit("h", "u", 0, 2)]);
        let snap = m.snapshot();
        assert_eq!(snap.len(), 4);
        let mut replayed = OffsetMap::default();
        for r in snap {
            replayed.apply(r);
        }
        assert_eq!(offset(&replayed, "g", "t", 0), Some(99));
        assert_eq!(offset(&replayed, "g", "t", 2), Some(98));
        assert_eq!(offset(&replayed, "h", "u", 0), Some(2));
        assert_eq!(replayed.live(), 4);
    }

    fn membership(group: &str, generation: Option<i32>) -> OffsetRecord {
        OffsetRecord::Membership {
            group: group.into(),
            membership: generation.map(|generation| {
                Box::new(Membership {
                    protocol_type: "consumer".into(),
                    generation,
                    protocol: None,
                    leader: None,
                    state_timestamp_ms: 0,
                    members: Vec::new(),
                })
            }),
        }
    }

    fn generations(m: &OffsetMap) -> Vec<(String, i32)> {
        m.memberships()
            .map(|(g, x)| (g.clone(), x.generation))
            .collect()
    }

    #[test]
    fn memberships_replay_last_wins_and_are_snapshotted_and_tombstoned() {
        let mut m = OffsetMap::default();
        for r in [
            membership("g", Some(1)),
            commit("g", "t", 0, 1),
            membership("g", Some(2)),
            membership("h", Some(5)),
            membership("h", None),
            membership("k", Some(1)),
        ] {
            m.apply(r);
        }
        assert_eq!(generations(&m), vec![("g".into(), 2), ("k".into(), 1)]);
        assert_eq!((m.live(), m.live_records()), (1, 3));
        let mut replayed = OffsetMap::default();
        for r in m.snapshot() {
            replayed.apply(r);
        }
        assert_eq!(generations(&replayed), generations(&m));
        assert_eq!(offset(&replayed, "g", "t", 0), Some(1));
        // DeleteGroups: the offsets and the membership record go.
        let t = m.group_tombstones("g");
        assert_eq!(t.len(), 2);
        assert!(t.contains(&membership("g", None)));
        assert_eq!(m.group_tombstones("k"), vec![membership("k", None)]);
        // A membership already tombstoned (staged) needs no second tombstone.
        m.stage(10, vec![membership("k", None)]);
        assert!(m.group_tombstones("k").is_empty());
    }

    #[test]
    fn compaction_is_due_only_when_the_log_is_large_and_mostly_dead() {
        // Small logs are left alone, whatever their ratio.
        assert!(!compaction_due(0, 9_999, 1, COMPACT_MIN_RECORDS));
        assert!(compaction_due(0, 10_000, 1, COMPACT_MIN_RECORDS));
        // Mostly live: a rewrite would gain little.
        assert!(!compaction_due(0, 30_000, 15_000, COMPACT_MIN_RECORDS));
        assert!(compaction_due(0, 30_001, 15_000, COMPACT_MIN_RECORDS));
        // Counted from the log start, not from zero.
        assert!(!compaction_due(50_000, 55_000, 10, COMPACT_MIN_RECORDS));
        assert!(!compaction_due(10, 5, 0, COMPACT_MIN_RECORDS));
    }
}
