//! Pacing of the passes: whether the brokers are settled (so autoRebalance may move partitions)
//! and how soon to look again. Pure.

use std::time::Duration;

use crate::roll::RollStep;
use crate::status::Observation;

/// While brokers or partitions are moving: each pass takes the next step.
const WHILE_MOVING: Duration = Duration::from_secs(5);
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
        && obs.desired == applied
        && current == applied
        && obs.ready == obs.desired
        && obs.draining.is_none()
        && obs.scale_refused.is_none()
}

/// How long until the next pass after one that took `step` and observed `obs`.
pub(super) fn requeue_after(step: &RollStep, obs: &Observation) -> Duration {
    if step.in_progress()
        || obs.ready < obs.desired
        || obs.draining.is_some()
        || obs.rebalancing.is_some()
    {
        WHILE_MOVING
    } else if !obs.queue_problems.is_empty() || obs.scale_refused.is_some() {
        WHILE_BLOCKED
    } else {
        WHILE_SETTLED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three brokers, all ready, nothing under way.
    fn calm() -> Observation {
        Observation {
            desired: 3,
            existing: 3,
            ready: 3,
            max_unavailable: 1,
            ..Observation::default()
        }
    }

    fn waiting() -> RollStep {
        RollStep::Wait {
            reason: "pod mq-2 is not ready yet".into(),
        }
    }

    #[test]
    fn a_ready_cluster_at_its_size_is_settled_and_checked_every_two_minutes() {
        assert!(settled(&RollStep::UpToDate, &calm(), 3, 3));
        assert_eq!(
            requeue_after(&RollStep::UpToDate, &calm()),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn a_roll_step_unsettles_and_brings_the_next_pass_closer() {
        assert!(!settled(&waiting(), &calm(), 3, 3));
        assert_eq!(requeue_after(&waiting(), &calm()), Duration::from_secs(5));
        let stop = RollStep::Stop {
            pod: "mq-2".into(),
            reason: "pod mq-2 is failing".into(),
        };
        assert!(!settled(&stop, &calm(), 3, 3));
        assert_eq!(requeue_after(&stop, &calm()), Duration::from_secs(5));
    }

    #[test]
    fn a_scale_in_this_pass_or_a_statefulset_off_the_spec_is_not_settled() {
        // scaled up from 2 in this pass
        assert!(!settled(&RollStep::UpToDate, &calm(), 2, 3));
        // a scale-down held at 4 brokers
        assert!(!settled(&RollStep::UpToDate, &calm(), 4, 4));
    }

    #[test]
    fn a_broker_not_ready_unsettles_and_is_awaited_closely() {
        let obs = Observation { ready: 2, ..calm() };
        assert!(!settled(&RollStep::UpToDate, &obs, 3, 3));
        assert_eq!(
            requeue_after(&RollStep::UpToDate, &obs),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_drain_unsettles_and_is_followed_closely() {
        let obs = Observation {
            draining: Some("moving 2 partitions off broker 3".into()),
            ..calm()
        };
        assert!(!settled(&RollStep::UpToDate, &obs, 3, 3));
        assert_eq!(
            requeue_after(&RollStep::UpToDate, &obs),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_rebalance_under_way_is_followed_closely_without_unsettling() {
        let obs = Observation {
            rebalancing: Some("rebalancing: waiting for 1 partition moves".into()),
            ..calm()
        };
        assert!(settled(&RollStep::UpToDate, &obs, 3, 3));
        assert_eq!(
            requeue_after(&RollStep::UpToDate, &obs),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_refused_scale_down_unsettles_and_is_retried_every_thirty_seconds() {
        let obs = Observation {
            scale_refused: Some("broker 3 leads orders-0".into()),
            ..calm()
        };
        assert!(!settled(&RollStep::UpToDate, &obs, 4, 4));
        assert_eq!(
            requeue_after(&RollStep::UpToDate, &obs),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn queue_problems_are_retried_every_thirty_seconds_but_moving_brokers_come_first() {
        let obs = Observation {
            queue_problems: vec!["orders: not enough brokers".into()],
            ..calm()
        };
        assert!(settled(&RollStep::UpToDate, &obs, 3, 3));
        assert_eq!(
            requeue_after(&RollStep::UpToDate, &obs),
            Duration::from_secs(30)
        );
        assert_eq!(requeue_after(&waiting(), &obs), Duration::from_secs(5));
    }
}
