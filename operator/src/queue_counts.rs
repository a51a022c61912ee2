//! The message counts of each declared queue on status (`status.queues[].messages`,
//! `.backlog`, `.inFlight`, `.shareGroups`), computed from what the brokers answered. Pure.
//!
//! Sources (read by `reconcile::queue_sync`, at most every `--queue-counts-interval-secs` per
//! MessageQueue):
//! - each partition's log start and end: ListOffsets (earliest, latest) asked of every ready
//!   broker; only the partition's leader answers, the others say NOT_LEADER_OR_FOLLOWER;
//! - each share group's start offset per share partition: ListGroups (type `share`) on every
//!   broker, then DescribeShareGroupOffsets on the broker that listed the group (its
//!   coordinator);
//! - each consumer group's committed offsets: ListGroups (types `classic` and `consumer`) on
//!   every broker, then OffsetFetch on the broker that listed the group (its coordinator);
//! - records in flight: not on the Kafka wire; the broker's `/metrics` exports
//!   `sluice_share_partition_records_in_flight{group,topic,partition}`, and a partition's count
//!   is taken only from the broker that answered ListOffsets for it as its leader (a former
//!   leader may still hold a stale share partition).
//!
//! Meanings:
//! - `messages`: records stored, the sum over partitions of log end − log start;
//! - `backlog` (`type: queue` only): records not yet acknowledged by a share group, per group
//!   the sum over partitions of log end − the share partition's start offset (clamped to the
//!   log; a partition the group never read counts from the log start, as the operator sets
//!   `share.auto.offset.reset: earliest`), the largest over the groups reading the queue; with
//!   no share group yet, every stored record waits for the first consumer, so it equals
//!   `messages`;
//! - `inFlight` (`type: queue` only): records acquired by share consumers and not yet
//!   acknowledged, summed over the groups reading the queue;
//! - `shareGroups` (`type: queue` only): how many share groups read the queue;
//! - `lag` (`type: stream` only): records the consumer group furthest behind has not committed
//!   past, per group the sum over partitions of log end − its committed offset (clamped to the
//!   log; a partition it has not committed counts from the log start, all of it unread); unset
//!   when no consumer group reads the stream;
//! - `consumerGroups` (`type: stream` only): how many consumer groups have committed offsets
//!   of the stream.
//!
//! Any count that could not be read in full (a partition without an answer, a broker that does
//! not serve an API) is unset, never 0, so "unknown" is not mistaken for "empty".

use std::collections::BTreeMap;

use crate::crd::{Queue, QueueType};

/// A topic partition, by name.
pub type Partition = (String, i32);

/// What one refresh read from the brokers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountsSeen {
    /// (log start, log end) of each partition whose leader answered.
    pub offsets: BTreeMap<Partition, (i64, i64)>,
    /// Share group → its start offset per share partition (−1: not started), or None when
    /// the share groups could not be listed or described on every broker.
    pub share_starts: Option<BTreeMap<String, BTreeMap<Partition, i64>>>,
    /// Partition → (group → records in flight), for each partition whose leader's metrics
    /// were read (a partition no group holds records of maps to an empty map).
    pub in_flight: BTreeMap<Partition, BTreeMap<String, i64>>,
    /// Consumer group → its committed offset per partition, or None when the consumer groups
    /// could not be listed or fetched on every broker.
    pub group_offsets: Option<BTreeMap<String, BTreeMap<Partition, i64>>>,
}

/// The counts of one queue; None where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Records stored.
    pub messages: Option<i64>,
    /// Records not yet acknowledged by the share group furthest behind.
    pub backlog: Option<i64>,
    /// Records acquired by share consumers and not yet acknowledged.
    pub in_flight: Option<i64>,
    /// Share groups reading the queue.
    pub share_groups: Option<i32>,
    /// Records not yet committed past by the consumer group furthest behind.
    pub lag: Option<i64>,
    /// Consumer groups with committed offsets of the stream.
    pub consumer_groups: Option<i32>,
}

/// The counts of `queue` with `partitions` partitions (as the brokers report it) from `seen`.
pub fn queue_counts(queue: &Queue, partitions: i32, seen: &CountsSeen) -> QueueCounts {
    let parts: Vec<Partition> = (0..partitions.max(0))
        .map(|p| (queue.name.clone(), p))
        .collect();
    let logs: Option<Vec<(i64, i64)>> =
        parts.iter().map(|p| seen.offsets.get(p).copied()).collect();
    let messages = logs.as_ref().map(|logs| {
        logs.iter()
            .map(|(start, end)| end.saturating_sub(*start).max(0))
            .fold(0i64, i64::saturating_add)
    });
    if queue.type_ != QueueType::Queue {
        return stream_counts(queue, &parts, logs.as_deref(), messages, seen);
    }
    let Some(starts) = &seen.share_starts else {
        return QueueCounts {
            messages,
            ..QueueCounts::default()
        };
    };
    let groups: Vec<(&String, &BTreeMap<Partition, i64>)> = starts
        .iter()
        .filter(|(_, s)| s.keys().any(|(t, _)| *t == queue.name))
        .collect();
    let backlog = logs.as_ref().map(|logs| {
        groups
            .iter()
            .map(|(_, s)| {
                parts
                    .iter()
                    .zip(logs)
                    .map(|(p, (log_start, end))| {
                        let start = s
                            .get(p)
                            .copied()
                            .filter(|s| *s >= 0)
                            .unwrap_or(*log_start)
                            .clamp(*log_start, (*end).max(*log_start));
                        end.saturating_sub(start).max(0)
                    })
                    .fold(0i64, i64::saturating_add)
            })
            .max()
            // no share group yet: everything stored waits for the first consumer
            .unwrap_or_else(|| messages.unwrap_or(0))
    });
    let in_flight: Option<i64> = parts
        .iter()
        .map(|p| {
            seen.in_flight.get(p).map(|by_group| {
                by_group
                    .iter()
                    .filter(|(g, _)| groups.iter().any(|(name, _)| name == g))
                    .map(|(_, n)| (*n).max(0))
                    .fold(0i64, i64::saturating_add)
            })
        })
        .try_fold(0i64, |total, n| n.map(|n| total.saturating_add(n)));
    QueueCounts {
        messages,
        backlog,
        in_flight,
        share_groups: Some(i32::try_from(groups.len()).unwrap_or(i32::MAX)),
        ..QueueCounts::default()
    }
}

/// The counts of a stream: its consumer groups and the lag of the one furthest behind.
fn stream_counts(
    queue: &Queue,
    parts: &[Partition],
    logs: Option<&[(i64, i64)]>,
    messages: Option<i64>,
    seen: &CountsSeen,
) -> QueueCounts {
    let Some(all) = &seen.group_offsets else {
        return QueueCounts {
            messages,
            ..QueueCounts::default()
        };
    };
    let groups: Vec<&BTreeMap<Partition, i64>> = all
        .values()
        .filter(|offsets| offsets.keys().any(|(t, _)| *t == queue.name))
        .collect();
    let lag = logs.and_then(|logs| {
        groups
            .iter()
            .map(|offsets| {
                parts
                    .iter()
                    .zip(logs)
                    .map(|(p, (log_start, end))| {
                        let at = offsets
                            .get(p)
                            .copied()
                            .unwrap_or(*log_start)
                            .clamp(*log_start, (*end).max(*log_start));
                        end.saturating_sub(at).max(0)
                    })
                    .fold(0i64, i64::saturating_add)
            })
            .max()
    });
    QueueCounts {
        messages,
        lag,
        consumer_groups: Some(i32::try_from(groups.len()).unwrap_or(i32::MAX)),
        ..QueueCounts::default()
    }
}

/// The `sluice_share_partition_records_in_flight` samples of a broker's `/metrics` text:
/// (topic, partition) → group → count. Lines that do not parse are skipped (an exporter
/// change must not break the operator; the counts then stay unset or partial for those
/// partitions only through `CountsSeen::in_flight`, which the caller fills per leader).
pub fn parse_in_flight(text: &str) -> BTreeMap<Partition, BTreeMap<String, i64>> {
    const NAME: &str = "sluice_share_partition_records_in_flight{";
    let mut out: BTreeMap<Partition, BTreeMap<String, i64>> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(NAME) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Some(count) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
        else {
            continue;
        };
        let labels = parse_labels(labels);
        let (Some(group), Some(topic), Some(partition)) = (
            labels.get("group"),
            labels.get("topic"),
            labels.get("partition").and_then(|p| p.parse::<i32>().ok()),
        ) else {
            continue;
        };
        // A gauge of whole records: the float text is exact below 2^53.
        #[allow(clippy::cast_possible_truncation)]
        let count = count as i64;
        out.entry((topic.clone(), partition))
            .or_default()
            .insert(group.clone(), count);
    }
    out
}

/// `a="x",b="y"` → {a: x, b: y}, with the exposition format's escapes (`\"`, `\\`, `\n`).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if name.is_empty() || chars.next() != Some('=') || chars.next() != Some('"') {
            return out;
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return out,
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => return out,
                },
                Some(c) => value.push(c),
            }
        }
        out.insert(name.trim().to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(yaml: &str) -> Queue {
        serde_yaml::from_str(yaml).expect("queue parses")
    }

    fn part(topic: &str, p: i32) -> Partition {
        (topic.to_string(), p)
    }

    /// jobs: two partitions holding offsets 10..40 and 0..5.
    fn logs() -> BTreeMap<Partition, (i64, i64)> {
        BTreeMap::from([(part("jobs", 0), (10, 40)), (part("jobs", 1), (0, 5))])
    }

    fn starts(groups: &[(&str, &[(i32, i64)])]) -> BTreeMap<String, BTreeMap<Partition, i64>> {
        groups
            .iter()
            .map(|(g, s)| {
                (
                    g.to_string(),
                    s.iter().map(|(p, o)| (part("jobs", *p), *o)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn a_stream_reports_its_stored_records_only() {
        let q = queue("{name: jobs, partitions: 2}");
        let seen = CountsSeen {
            offsets: logs(),
            share_starts: Some(starts(&[("workers", &[(0, 12)])])),
            ..CountsSeen::default()
        };
        assert_eq!(
            queue_counts(&q, 2, &seen),
            QueueCounts {
                messages: Some(35),
                ..QueueCounts::default()
            }
        );
    }

    #[test]
    fn a_stream_s_lag_is_the_consumer_group_furthest_behind() {
        let q = queue("{name: jobs, partitions: 2}");
        let seen = CountsSeen {
            offsets: logs(),
            // caught-up: at the end of both partitions; behind: at 25 on p0 and nothing
            // committed on p1 (all 5 unread); other: reads another topic only
            group_offsets: Some(BTreeMap::from([
                (
                    "caught-up".to_string(),
                    BTreeMap::from([(part("jobs", 0), 40), (part("jobs", 1), 5)]),
                ),
                (
                    "behind".to_string(),
                    BTreeMap::from([(part("jobs", 0), 25)]),
                ),
                (
                    "other".to_string(),
                    BTreeMap::from([(part("orders", 0), 3)]),
                ),
            ])),
            ..CountsSeen::default()
        };
        assert_eq!(
            queue_counts(&q, 2, &seen),
            QueueCounts {
                messages: Some(35),
                lag: Some(15 + 5),
                consumer_groups: Some(2),
                ..QueueCounts::default()
            }
        );
        // A committed offset outside the log (before a deletion, past a truncation) is
        // clamped to it.
        let clamped = CountsSeen {
            group_offsets: Some(BTreeMap::from([(
                "old".to_string(),
                BTreeMap::from([(part("jobs", 0), 2), (part("jobs", 1), 9)]),
            )])),
            ..seen.clone()
        };
        assert_eq!(queue_counts(&q, 2, &clamped).lag, Some(30));
        // No consumer group: no lag, and zero groups; groups unknown: both unset.
        let none = CountsSeen {
            group_offsets: Some(BTreeMap::new()),
            ..seen.clone()
        };
        assert_eq!(queue_counts(&q, 2, &none).lag, None);
        assert_eq!(queue_counts(&q, 2, &none).consumer_groups, Some(0));
        let unknown = CountsSeen {
            group_offsets: None,
            ..seen
        };
        assert_eq!(queue_counts(&q, 2, &unknown).consumer_groups, None);
    }

    #[test]
    fn a_queue_no_group_read_yet_has_everything_as_backlog_and_nothing_in_flight() {
        let q = queue("{name: jobs, type: queue, partitions: 2}");
        let seen = CountsSeen {
            offsets: logs(),
            share_starts: Some(starts(&[("other-queue-readers", &[])])),
            in_flight: BTreeMap::from([
                (part("jobs", 0), BTreeMap::new()),
                (part("jobs", 1), BTreeMap::new()),
            ]),
            ..CountsSeen::default()
        };
        assert_eq!(
            queue_counts(&q, 2, &seen),
            QueueCounts {
                messages: Some(35),
                backlog: Some(35),
                in_flight: Some(0),
                share_groups: Some(0),
                ..QueueCounts::default()
            }
        );
    }

    #[test]
    fn backlog_is_the_group_furthest_behind_and_in_flight_the_sum_over_groups() {
        let q = queue("{name: jobs, type: queue, partitions: 2}");
        let seen = CountsSeen {
            offsets: logs(),
            // fast: done with p0, p1 never read (counts from the log start);
            // slow: at 20 on p0 and 3 on p1
            share_starts: Some(starts(&[
                ("fast", &[(0, 40)]),
                ("slow", &[(0, 20), (1, 3)]),
            ])),
            in_flight: BTreeMap::from([
                (
                    part("jobs", 0),
                    BTreeMap::from([("slow".to_string(), 4), ("fast".to_string(), 0)]),
                ),
                (part("jobs", 1), BTreeMap::from([("slow".to_string(), 1)])),
            ]),
            ..CountsSeen::default()
        };
        assert_eq!(
            queue_counts(&q, 2, &seen),
            QueueCounts {
                messages: Some(35),
                backlog: Some(20 + 2),
                in_flight: Some(5),
                share_groups: Some(2),
                ..QueueCounts::default()
            }
        );
    }

    #[test]
    fn start_offsets_outside_the_log_are_clamped_to_it() {
        let q = queue("{name: jobs, type: queue, partitions: 2}");
        let seen = CountsSeen {
            offsets: logs(),
            // behind the log start (retention deleted records), unset, past the end
            share_starts: Some(starts(&[("g", &[(0, 3), (1, -1)])])),
            ..CountsSeen::default()
        };
        assert_eq!(queue_counts(&q, 2, &seen).backlog, Some(30 + 5));
        let seen = CountsSeen {
            offsets: logs(),
            share_starts: Some(starts(&[("g", &[(0, 99), (1, 5)])])),
            ..CountsSeen::default()
        };
        assert_eq!(queue_counts(&q, 2, &seen).backlog, Some(0));
    }

    #[test]
    fn what_was_not_read_stays_unknown_not_zero() {
        let q = queue("{name: jobs, type: queue, partitions: 2}");
        // p1's leader did not answer ListOffsets; nothing in flight was read
        let seen = CountsSeen {
            offsets: BTreeMap::from([(part("jobs", 0), (10, 40))]),
            share_starts: Some(starts(&[("g", &[(0, 20)])])),
            in_flight: BTreeMap::from([(part("jobs", 0), BTreeMap::new())]),
            ..CountsSeen::default()
        };
        assert_eq!(
            queue_counts(&q, 2, &seen),
            QueueCounts {
                messages: None,
                backlog: None,
                in_flight: None,
                share_groups: Some(1),
                ..QueueCounts::default()
            }
        );
        // the share groups could not be read: only the stored records are known
        let seen = CountsSeen {
            offsets: logs(),
            share_starts: None,
            ..CountsSeen::default()
        };
        assert_eq!(
            queue_counts(&q, 2, &seen),
            QueueCounts {
                messages: Some(35),
                ..QueueCounts::default()
            }
        );
    }

    #[test]
    fn in_flight_samples_are_read_from_the_metrics_text() {
        let text = "# HELP sluice_share_partition_records_in_flight Records ...\n\
            # TYPE sluice_share_partition_records_in_flight gauge\n\
            sluice_share_partition_records_in_flight{group=\"workers\",topic=\"jobs\",partition=\"0\"} 7\n\
            sluice_share_partition_records_in_flight{group=\"we\\\"ird,\",topic=\"jobs\",partition=\"1\"} 2\n\
            sluice_share_partition_records_in_flight{group=\"x\",topic=\"jobs\"} 3\n\
            sluice_share_partition_records_in_flight{group=\"y\",topic=\"jobs\",partition=\"0\"} nope\n\
            sluice_share_group_records_in_flight{group=\"workers\"} 9\n";
        assert_eq!(
            parse_in_flight(text),
            BTreeMap::from([
                (
                    part("jobs", 0),
                    BTreeMap::from([("workers".to_string(), 7)])
                ),
                (
                    part("jobs", 1),
                    BTreeMap::from([("we\"ird,".to_string(), 2)])
                ),
            ])
        );
        assert!(parse_in_flight("").is_empty());
        assert!(parse_in_flight("sluice_share_partition_records_in_flight{group=\"a").is_empty());
    }
}
