//! Pacing of the passes: whether the brokers are settled (so autoRebalance may move partitions)
//! and how soon to look again. Pure.

use std::time::Duration;

use crate::roll::RollStep;
use crate::status::{Observation, ReplicationSeen};

/// While brokers or partitions are moving (or queues wait for brokers to join): each pass takes
/// the next step.
const WHILE_MOVING: Duration = Duration::from_secs(5);
/// While pods start (or one is not ready) and nothing else moves: the pod watch wakes a pass
/// whenever one of them changes, so this is only the fallback. Polling every `WHILE_MOVING`
/// here cost 500 starting MessageQueues ~100 passes a second, each with its API reads, on the
/// API server that the new MessageQueues were waiting for (docs/benchmarks.md).
const WHILE_PODS_START: Duration = Duration::from_secs(30);
/// While something needs a person (a queue not applied, a refused scale-down): retry now and
/// then, in case the cause went away by itself.
const WHILE_BLOCKED: Duration = Duration::from_secs(30);
/// Settled: re-check queues and brokers now and then even when nothing changes.
const WHILE_SETTLED: Duration = Duration::from_secs(120);

/// True when nothing moves the brokers or their partitions: no roll step pending, the
/// StatefulSet at the spec's size (`current` before this pass and `applied` by it), every broker
/// ready, and no scale-down draining or refused. Only then may autoRebalance move partitions.
pub(super) fn settled(step: &RollStep, obs: &Observation, current: i32, applied: i32) -> bool {
    matches!(step, RollStep::UpToDate)
        && !lagging(obs)
        && obs.desired == applied
        && current == applied
        && obs.ready == obs.desired
        && obs.draining.is_none()
        && obs.scale_refused.is_none()
}

/// A broker reported partitions that are not fully replicated: no partition moves start (they
/// would add copying to catching up), and the passes follow the recovery closely, as no
/// Kubernetes object changes when a replica is back in sync.
fn lagging(obs: &Observation) -> bool {
    matches!(&obs.replication, ReplicationSeen::Seen(h) if !h.in_sync())
}

/// How long until the next pass after one that took `step` and observed `obs`.
pub(super) fn requeue_after(step: &RollStep, obs: &Observation) -> Duration {
    if step.in_progress()
        || obs.draining.is_some()
        || obs.rebalancing.is_some()
        || lagging(obs)
        || obs.queues_waiting
    {
        WHILE_MOVING
    } else if obs.ready < obs.desired {
        WHILE_PODS_START
    } else if !obs.queue_problems.is_empty() || obs.scale_refused.is_some() {
        WHILE_BLOCKED
    } else {
        WHILE_SETTLED
    }
}

/// `after`, or sooner when a time-based check of the pods is due (`due`: a Pending pod
/// becomes stuck, see `pods::heal_pods`), which no watch event would announce.
pub(super) fn with_due(after: Duration, due: Option<Duration>) -> Duration {
    due.map_or(after, |due| after.min(due))
}

/// `after`, or sooner when the queue counts on status are due again (`counts_every`: the
/// counts interval when the MessageQueue declares queues and counts are on).
pub(super) fn with_counts(after: Duration, counts_every: Option<Duration>) -> Duration {
    counts_every.map_or(after, |every| after.min(every))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::PartitionHealth;
    use crate::scale::TopicPartition;

    /// Three brokers, all ready, nothing under way.
    fn calm() -> Observation {
        Observation {
            desired: 3,
            ready: 3,
            ..Observation::default()
        }
    }

    fn wait() -> RollStep {
        RollStep::Wait {
            reason: "pod mq-2 is not ready yet".into(),
        }
    }

    fn stop() -> RollStep {
        RollStep::Stop {
            pod: "mq-2".into(),
            reason: "pod mq-2 is failing".into(),
        }
    }

    /// (case, roll step, observation, StatefulSet size before / after the apply, settled,
    /// seconds to the next pass)
    type Case = (&'static str, RollStep, Observation, (i32, i32), bool, u64);

    fn cases() -> Vec<Case> {
        let up = RollStep::UpToDate;
        vec![
            ("calm", up.clone(), calm(), (3, 3), true, 120),
            ("roll waits", wait(), calm(), (3, 3), false, 5),
            ("roll stopped", stop(), calm(), (3, 3), false, 5),
            (
                "scaled up in this pass",
                up.clone(),
                calm(),
                (2, 3),
                false,
                120,
            ),
            (
                "scale-down held at 4",
                up.clone(),
                calm(),
                (4, 4),
                false,
                120,
            ),
            (
                "a broker not ready",
                up.clone(),
                Observation { ready: 2, ..calm() },
                (3, 3),
                false,
                30,
            ),
            (
                "a broker not ready while the roll waits",
                wait(),
                Observation { ready: 2, ..calm() },
                (3, 3),
                false,
                5,
            ),
            (
                "draining",
                up.clone(),
                Observation {
                    draining: Some("moving 2 partitions off broker 3".into()),
                    ..calm()
                },
                (3, 3),
                false,
                5,
            ),
            (
                "rebalancing",
                up.clone(),
                Observation {
                    rebalancing: Some("rebalancing: waiting for 1 partition moves".into()),
                    ..calm()
                },
                (3, 3),
                true,
                5,
            ),
            (
                "scale-down refused",
                up.clone(),
                Observation {
                    scale_refused: Some("broker 3 leads orders-0".into()),
                    ..calm()
                },
                (4, 4),
                false,
                30,
            ),
            (
                "queue problems",
                up.clone(),
                Observation {
                    queue_problems: vec!["orders: not enough brokers".into()],
                    ..calm()
                },
                (3, 3),
                true,
                30,
            ),
            (
                "partitions catching up",
                up.clone(),
                Observation {
                    replication: ReplicationSeen::Seen(PartitionHealth {
                        under_replicated: vec![TopicPartition {
                            topic: "orders".into(),
                            partition: 0,
                        }],
                        offline: vec![],
                    }),
                    ..calm()
                },
                (3, 3),
                false,
                5,
            ),
            (
                "a queue waits for brokers to join",
                up.clone(),
                Observation {
                    queues_waiting: true,
                    ..calm()
                },
                (3, 3),
                true,
                5,
            ),
            (
                "every partition in sync",
                up,
                Observation {
                    replication: ReplicationSeen::Seen(PartitionHealth::default()),
                    ..calm()
                },
                (3, 3),
                true,
                120,
            ),
            (
                "queue problems while a roll waits",
                wait(),
                Observation {
                    queue_problems: vec!["orders: not enough brokers".into()],
                    ..calm()
                },
                (3, 3),
                false,
                5,
            ),
        ]
    }

    #[test]
    fn only_a_ready_cluster_at_its_size_with_nothing_moving_is_settled() {
        for (case, step, obs, (current, applied), want, _) in cases() {
            assert_eq!(settled(&step, &obs, current, applied), want, "{case}");
        }
    }

    #[test]
    fn moving_brokers_are_followed_closely_blocked_ones_now_and_then_calm_ones_rarely() {
        for (case, step, obs, _, _, secs) in cases() {
            assert_eq!(
                requeue_after(&step, &obs),
                Duration::from_secs(secs),
                "{case}"
            );
        }
    }

    #[test]
    fn declared_queues_are_looked_at_again_when_their_counts_are_due() {
        let calm = Duration::from_secs(120);
        let every = Some(Duration::from_secs(60));
        assert_eq!(with_counts(calm, every), Duration::from_secs(60));
        assert_eq!(
            with_counts(Duration::from_secs(5), every),
            Duration::from_secs(5),
            "a closer follow-up wins"
        );
        assert_eq!(with_counts(calm, None), calm, "counts off or no queues");
    }

    #[test]
    fn a_pending_pod_is_looked_at_again_when_it_would_count_as_stuck() {
        let starting = Duration::from_secs(30);
        assert_eq!(
            with_due(starting, Some(Duration::from_secs(12))),
            Duration::from_secs(12)
        );
        assert_eq!(with_due(starting, Some(Duration::from_secs(40))), starting);
        assert_eq!(with_due(starting, None), starting, "no pod pending");
    }
}
