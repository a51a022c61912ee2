//! The scale-down guard: a StatefulSet may only shrink when no partition would be lost.
//!
//! When the brokers form one cluster, the operator first moves the partitions off the brokers to
//! remove (`drain`). This guard covers what cannot be moved: brokers that run as independent single
//! nodes, or no remaining broker that can take the partitions. A broker that leads any partition
//! then holds the only copy of it, so removing it would drop data. Brokers that cannot be asked also
//! block: the guard fails safe.

/// A partition, for messages.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What one broker reported about the partitions it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerReport {
    /// Node id (= StatefulSet ordinal).
    pub node_id: i32,
    /// The partitions it leads, or why it could not be asked.
    pub leads: Result<Vec<TopicPartition>, String>,
}

/// Outcome of the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleDecision {
    /// Apply the desired replicas.
    Proceed,
    /// Keep the current replicas; `reason` names what blocks.
    Refuse {
        /// Message for the Degraded condition and the Warning event.
        reason: String,
        /// Partitions that block, for tests and logs.
        blocking: Vec<TopicPartition>,
    },
}

/// Most partitions named in one message; the rest are counted.
const MAX_NAMED: usize = 10;

/// Decides whether shrinking from `current` to `desired` brokers is safe without moving anything.
/// `reports` must cover the brokers being removed (ordinals `desired..current`); `unmovable` says
/// why their partitions cannot be moved first.
pub fn scale_down_guard(
    current: i32,
    desired: i32,
    reports: &[BrokerReport],
    unmovable: &str,
) -> ScaleDecision {
    if desired >= current {
        return ScaleDecision::Proceed;
    }
    let mut blocking = Vec::new();
    let mut unreachable = Vec::new();
    for node in desired..current {
        match reports.iter().find(|r| r.node_id == node).map(|r| &r.leads) {
            None => unreachable.push(format!("broker {node}: not asked")),
            Some(Err(why)) => unreachable.push(format!("broker {node}: {why}")),
            Some(Ok(parts)) => blocking.extend(parts.iter().cloned()),
        }
    }
    blocking.sort();
    blocking.dedup();
    if blocking.is_empty() && unreachable.is_empty() {
        return ScaleDecision::Proceed;
    }
    let mut reason = format!("scale-down from {current} to {desired} brokers refused: ");
    if !blocking.is_empty() {
        let named: Vec<String> = blocking
            .iter()
            .take(MAX_NAMED)
            .map(|p| p.to_string())
            .collect();
        reason.push_str(&format!(
            "brokers {}..{} still hold partitions {}{} and they cannot be moved: {unmovable}; \
             delete or move those queues, or set replicas back to {current}",
            desired,
            current - 1,
            named.join(", "),
            if blocking.len() > MAX_NAMED {
                format!(" and {} more", blocking.len() - MAX_NAMED)
            } else {
                String::new()
            }
        ));
    }
    if !unreachable.is_empty() {
        if !blocking.is_empty() {
            reason.push_str("; ");
        }
        reason.push_str(&format!(
            "cannot verify that the brokers to remove hold no partitions ({})",
            unreachable.join("; ")
        ));
    }
    ScaleDecision::Refuse { reason, blocking }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHY: &str = "the brokers run as independent single nodes";

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    fn report(node_id: i32, leads: &[(&str, i32)]) -> BrokerReport {
        BrokerReport {
            node_id,
            leads: Ok(leads.iter().map(|(t, p)| tp(t, *p)).collect()),
        }
    }

    #[test]
    fn scale_up_and_same_size_always_proceed() {
        assert_eq!(scale_down_guard(3, 5, &[], WHY), ScaleDecision::Proceed);
        assert_eq!(scale_down_guard(3, 3, &[], WHY), ScaleDecision::Proceed);
    }

    #[test]
    fn scale_down_refuses_to_drop_partitions() {
        let reports = [
            report(0, &[("orders", 0)]),
            report(1, &[]),
            report(2, &[("orders", 1), ("audit", 0)]),
        ];
        match scale_down_guard(3, 2, &reports, WHY) {
            ScaleDecision::Refuse { reason, blocking } => {
                assert_eq!(blocking, vec![tp("audit", 0), tp("orders", 1)]);
                assert!(reason.contains("audit-0, orders-1"), "{reason}");
                assert!(reason.contains("set replicas back to 3"), "{reason}");
                assert!(reason.contains(WHY), "{reason}");
            }
            other => panic!("expected refusal, got {other:?}"),
        }
    }

    #[test]
    fn scale_down_of_empty_brokers_proceeds() {
        let reports = [report(0, &[("orders", 0)]), report(1, &[]), report(2, &[])];
        assert_eq!(
            scale_down_guard(3, 1, &reports, WHY),
            ScaleDecision::Proceed
        );
    }

    #[test]
    fn unreachable_broker_blocks_scale_down() {
        let reports = [BrokerReport {
            node_id: 2,
            leads: Err("connection refused".into()),
        }];
        match scale_down_guard(3, 2, &reports, WHY) {
            ScaleDecision::Refuse { reason, blocking } => {
                assert!(blocking.is_empty());
                assert!(reason.contains("broker 2: connection refused"), "{reason}");
            }
            other => panic!("expected refusal, got {other:?}"),
        }
        assert!(matches!(
            scale_down_guard(3, 2, &[], WHY),
            ScaleDecision::Refuse { .. }
        ));
    }

    #[test]
    fn long_partition_lists_are_counted_not_listed() {
        let many: Vec<(&str, i32)> = (0..25).map(|p| ("big", p)).collect();
        let reports = [report(1, &many)];
        match scale_down_guard(2, 1, &reports, WHY) {
            ScaleDecision::Refuse { reason, .. } => {
                assert!(reason.contains("and 15 more"), "{reason}")
            }
            other => panic!("expected refusal, got {other:?}"),
        }
    }
}
