//! The roll planner: which broker pod to restart next during an upgrade or config change.
//!
//! The StatefulSet uses `updateStrategy: OnDelete`, so the StatefulSet controller only creates
//! pods from the new template once the operator deletes the old ones. The operator deletes one
//! out-of-date pod at a time, highest ordinal first, and moves on only when every updated pod is
//! Ready and answers `/readyz`. A pod of the new revision that crash-loops stops the roll: going
//! on would take down the next broker for a version that does not start.
//!
//! A broker hands its leaderships to other in-sync replicas when it gets SIGTERM (controlled
//! shutdown) and catches up when it is back, so a restarted broker is Ready before its replicas
//! are in sync again. Before it restarts a serving broker, the planner also waits until no
//! partition is under-replicated or offline: restarting a second replica of a partition whose
//! first is still catching up could leave it below `min.insync.replicas`, or with no copy at
//! all. A wait that lasts longer than [`REPLICA_WAIT_LIMIT`] is reported as stalled; the roll
//! still restarts nothing until the partitions are in sync.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::replication::PartitionHealth;

/// How long the roll waits for under-replicated partitions before it reports itself stalled.
pub const REPLICA_WAIT_LIMIT: Duration = Duration::from_secs(600);

/// What the planner needs to know about one broker pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// StatefulSet ordinal.
    pub ordinal: i32,
    /// The `controller-revision-hash` label.
    pub revision: Option<String>,
    /// The pod's Ready condition is True.
    pub ready: bool,
    /// The pod has a deletionTimestamp.
    pub terminating: bool,
    /// Why the pod cannot start, when it keeps failing (CrashLoopBackOff, ImagePullBackOff, ...).
    pub failing: Option<String>,
    /// Result of the operator's own `/readyz` probe; None when not probed.
    pub readyz: Option<bool>,
    /// When the pod last became Ready (its Ready condition's transition time), if known.
    pub ready_since: Option<Timestamp>,
}

/// Inputs of one planning step.
#[derive(Debug, Clone)]
pub struct RollInput<'a> {
    /// `status.updateRevision` of the StatefulSet.
    pub update_revision: Option<&'a str>,
    /// The StatefulSet controller has observed the current spec
    /// (`status.observedGeneration == metadata.generation`).
    pub statefulset_observed: bool,
    /// Desired replicas (pods with a higher ordinal are being removed and are ignored).
    pub replicas: i32,
    /// The broker pods.
    pub pods: &'a [PodView],
    /// The partitions' replication as a broker reported it in this pass; None when none
    /// answered.
    pub replication: Option<&'a PartitionHealth>,
    /// Since when the partitions have not been known to be in sync (the last status's
    /// `Replicated` condition, when it was not True); None when they were.
    pub out_of_sync_since: Option<Timestamp>,
    /// The time of this pass.
    pub now: Timestamp,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollStep {
    /// Every pod runs the current template.
    UpToDate,
    /// A roll is in progress; check again later.
    Wait {
        /// What is awaited, for status and logs.
        reason: String,
    },
    /// The next pod waits until every partition is in sync again.
    WaitForReplicas {
        /// The pod to restart next.
        pod: String,
        /// What is awaited: the partitions, counted, with an example.
        reason: String,
        /// The wait has lasted longer than [`REPLICA_WAIT_LIMIT`].
        stalled: bool,
    },
    /// Delete this pod so the StatefulSet controller recreates it from the new template.
    Delete {
        /// Pod name.
        pod: String,
        /// Why this one.
        reason: String,
    },
    /// The roll cannot continue; a person must look.
    Stop {
        /// The pod that blocks.
        pod: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl RollStep {
    /// True while pods still have to be restarted.
    pub fn in_progress(&self) -> bool {
        !matches!(self, RollStep::UpToDate)
    }
}

/// Decides the next roll step.
pub fn plan_roll(input: &RollInput<'_>) -> RollStep {
    let Some(update_revision) = input.update_revision else {
        return RollStep::Wait {
            reason: "the StatefulSet controller has not computed the update revision yet".into(),
        };
    };
    let pods: Vec<&PodView> = input
        .pods
        .iter()
        .filter(|p| p.ordinal < input.replicas)
        .collect();
    let is_current = |p: &PodView| p.revision.as_deref() == Some(update_revision);
    let outdated: Vec<&PodView> = pods.iter().copied().filter(|p| !is_current(p)).collect();
    if outdated.is_empty() && input.statefulset_observed {
        return RollStep::UpToDate;
    }
    if !input.statefulset_observed {
        return RollStep::Wait {
            reason: "the StatefulSet controller has not observed the new template yet".into(),
        };
    }
    // A pod of the new revision that keeps failing: stop and report.
    if let Some(bad) = pods
        .iter()
        .filter(|p| is_current(p))
        .find(|p| p.failing.is_some())
    {
        return RollStep::Stop {
            pod: bad.name.clone(),
            reason: format!(
                "pod {} of the new revision is failing ({}); the roll is stopped so no other broker \
                 goes down. `kubectl logs {} --previous` says why; fix the version, the config or \
                 the broker's volume, and the roll resumes once the pod is ready",
                bad.name,
                bad.failing.as_deref().unwrap_or_default(),
                bad.name
            ),
        };
    }
    if let Some(p) = pods.iter().find(|p| p.terminating) {
        return RollStep::Wait {
            reason: format!("waiting for pod {} to terminate", p.name),
        };
    }
    for ordinal in 0..input.replicas {
        if !pods.iter().any(|p| p.ordinal == ordinal) {
            return RollStep::Wait {
                reason: format!("waiting for pod of ordinal {ordinal} to be created"),
            };
        }
    }
    // Out-of-date pods that are not serving anyway go first: restarting them costs nothing and is
    // how a roll that stopped on a bad version recovers once the spec is fixed.
    if let Some(p) = outdated
        .iter()
        .filter(|p| !p.ready)
        .max_by_key(|p| p.ordinal)
    {
        return RollStep::Delete {
            pod: p.name.clone(),
            reason: format!("pod {} is out of date and not ready", p.name),
        };
    }
    if let Some(p) = pods.iter().find(|p| is_current(p) && !p.ready) {
        return RollStep::Wait {
            reason: format!("waiting for updated pod {} to become ready", p.name),
        };
    }
    if let Some(p) = pods
        .iter()
        .find(|p| is_current(p) && p.readyz == Some(false))
    {
        return RollStep::Wait {
            reason: format!("waiting for updated pod {} to answer /readyz", p.name),
        };
    }
    let Some(next) = outdated.iter().max_by_key(|p| p.ordinal) else {
        return RollStep::UpToDate;
    };
    if let Some(wait) = wait_for_replicas(input, &pods, &next.name, is_current) {
        return wait;
    }
    RollStep::Delete {
        pod: next.name.clone(),
        reason: format!(
            "restarting pod {} on the new revision ({} of {} out of date)",
            next.name,
            outdated.len(),
            pods.len()
        ),
    }
}

/// The wait before restarting the serving pod `next`, unless every partition is in sync. The
/// wait is counted from the later of the partitions falling out of sync and the last updated
/// pod becoming Ready, so a broker that took long to start does not count against the time
/// its replicas get to catch up.
fn wait_for_replicas(
    input: &RollInput<'_>,
    pods: &[&PodView],
    next: &str,
    is_current: impl Fn(&PodView) -> bool,
) -> Option<RollStep> {
    let what = match input.replication {
        Some(health) if health.in_sync() => return None,
        Some(health) => health.summary(),
        None => "a broker to report the partitions' replicas".to_string(),
    };
    // Not out of sync in the last status: it is since this pass.
    let since = pods
        .iter()
        .filter(|p| is_current(p))
        .filter_map(|p| p.ready_since)
        .fold(input.out_of_sync_since.unwrap_or(input.now), Timestamp::max);
    let waited = input.now.duration_since(since);
    let waited = if waited.is_negative() {
        Duration::ZERO
    } else {
        waited.unsigned_abs()
    };
    let stalled = waited >= REPLICA_WAIT_LIMIT;
    let reason = if input.replication.is_some() {
        format!("waiting for {what} to be back in sync before restarting pod {next}")
    } else {
        format!("waiting for {what} before restarting pod {next}")
    };
    let reason = if stalled {
        format!(
            "the roll has waited {} minutes: {reason}; it restarts no other broker until then, \
             as that could leave a partition without an in-sync copy. Look for the brokers \
             missing from the in-sync replicas (kafka-topics.sh --describe \
             --under-replicated-partitions) and their logs",
            waited.as_secs() / 60
        )
    } else {
        reason
    };
    Some(RollStep::WaitForReplicas {
        pod: next.to_string(),
        reason,
        stalled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spec` is one entry per pod: "<revision><flags>" with flags r (ready), t (terminating),
    /// c (crash-looping), z (readyz fails).
    fn pods(spec: &[&str]) -> Vec<PodView> {
        spec.iter()
            .enumerate()
            .map(|(i, s)| {
                let (rev, flags) = s.split_at(3);
                PodView {
                    name: format!("mq-{i}"),
                    ordinal: i32::try_from(i).expect("small"),
                    revision: Some(rev.to_string()),
                    ready: flags.contains('r'),
                    terminating: flags.contains('t'),
                    failing: flags.contains('c').then(|| "CrashLoopBackOff".to_string()),
                    readyz: Some(!flags.contains('z')),
                    ready_since: None,
                }
            })
            .collect()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("valid")
    }

    /// Every partition in sync.
    fn in_sync() -> PartitionHealth {
        PartitionHealth::default()
    }

    /// The input for `pods` at their full count with `replication`.
    fn input<'a>(pods: &'a [PodView], replication: Option<&'a PartitionHealth>) -> RollInput<'a> {
        RollInput {
            update_revision: Some("new"),
            statefulset_observed: true,
            replicas: i32::try_from(pods.len()).expect("small"),
            pods,
            replication,
            out_of_sync_since: None,
            now: now(),
        }
    }

    fn plan(spec: &[&str]) -> RollStep {
        let pods = pods(spec);
        plan_roll(&input(&pods, Some(&in_sync())))
    }

    fn deletes(step: &RollStep) -> &str {
        match step {
            RollStep::Delete { pod, .. } => pod,
            other => panic!("expected a delete, got {other:?}"),
        }
    }

    #[test]
    fn nothing_to_do_when_every_pod_is_current() {
        assert_eq!(plan(&["newr", "newr", "newr"]), RollStep::UpToDate);
    }

    #[test]
    fn roll_starts_with_the_highest_ordinal() {
        assert_eq!(deletes(&plan(&["oldr", "oldr", "oldr"])), "mq-2");
    }

    #[test]
    fn roll_moves_down_once_the_restarted_pod_is_ready() {
        assert_eq!(deletes(&plan(&["oldr", "oldr", "newr"])), "mq-1");
        assert_eq!(deletes(&plan(&["oldr", "newr", "newr"])), "mq-0");
    }

    #[test]
    fn roll_waits_while_the_restarted_pod_is_not_ready() {
        assert!(
            matches!(plan(&["oldr", "oldr", "new"]), RollStep::Wait { reason } if reason.contains("mq-2"))
        );
    }

    #[test]
    fn roll_waits_until_readyz_answers() {
        assert!(
            matches!(plan(&["oldr", "oldr", "newrz"]), RollStep::Wait { reason } if reason.contains("/readyz"))
        );
    }

    #[test]
    fn roll_waits_for_a_terminating_pod() {
        assert!(
            matches!(plan(&["oldr", "oldr", "oldt"]), RollStep::Wait { reason } if reason.contains("terminate"))
        );
    }

    #[test]
    fn roll_waits_for_a_missing_pod() {
        let all = pods(&["oldr", "oldr", "oldr"]);
        let two: Vec<PodView> = all.into_iter().filter(|p| p.ordinal != 2).collect();
        let step = plan_roll(&RollInput {
            replicas: 3,
            ..input(&two, Some(&in_sync()))
        });
        assert!(matches!(step, RollStep::Wait { reason } if reason.contains("ordinal 2")));
    }

    #[test]
    fn crash_looping_updated_pod_stops_the_roll() {
        let step = plan(&["oldr", "oldr", "newc"]);
        assert!(
            matches!(&step, RollStep::Stop { pod, reason } if pod == "mq-2" && reason.contains("CrashLoopBackOff"))
        );
    }

    #[test]
    fn a_fixed_spec_replaces_the_failing_pod_first() {
        // mq-2 crash-loops on the bad revision "bad"; the spec is fixed to "new": mq-2 is out of
        // date and not ready, so it is restarted first.
        assert_eq!(deletes(&plan(&["oldr", "oldr", "badc"])), "mq-2");
    }

    #[test]
    fn out_of_date_unready_pods_go_before_higher_ready_ones() {
        assert_eq!(deletes(&plan(&["oldr", "old", "oldr"])), "mq-1");
    }

    #[test]
    fn roll_waits_until_the_statefulset_controller_catches_up() {
        let pods = pods(&["oldr"]);
        let health = in_sync();
        let step = plan_roll(&RollInput {
            statefulset_observed: false,
            ..input(&pods, Some(&health))
        });
        assert!(matches!(step, RollStep::Wait { .. }));
        let step = plan_roll(&RollInput {
            update_revision: None,
            ..input(&pods, Some(&health))
        });
        assert!(matches!(step, RollStep::Wait { .. }));
    }

    #[test]
    fn pods_beyond_replicas_are_ignored() {
        let pods = pods(&["newr", "oldr"]);
        let health = in_sync();
        let step = plan_roll(&RollInput {
            replicas: 1,
            ..input(&pods, Some(&health))
        });
        assert_eq!(step, RollStep::UpToDate);
    }

    fn lagging() -> PartitionHealth {
        let tp = |topic: &str, partition| crate::scale::TopicPartition {
            topic: topic.into(),
            partition,
        };
        PartitionHealth {
            under_replicated: vec![tp("orders", 1), tp("orders", 4), tp("audit", 0)],
            offline: vec![],
        }
    }

    #[test]
    fn roll_waits_for_under_replicated_partitions_before_the_next_pod() {
        let pods = pods(&["oldr", "oldr", "newr"]);
        let health = lagging();
        match plan_roll(&input(&pods, Some(&health))) {
            RollStep::WaitForReplicas {
                pod,
                reason,
                stalled,
            } => {
                assert_eq!(pod, "mq-1");
                assert_eq!(
                    reason,
                    "waiting for 3 under-replicated partitions (e.g. orders-1) to be back in \
                     sync before restarting pod mq-1"
                );
                assert!(!stalled);
            }
            other => panic!("expected a wait, got {other:?}"),
        }
        // in sync again: the next pod goes
        assert_eq!(deletes(&plan(&["oldr", "oldr", "newr"])), "mq-1");
        // the first restart is held back too: a cluster that is not in sync loses no broker
        let untouched = self::pods(&["oldr", "oldr", "oldr"]);
        assert!(matches!(
            plan_roll(&input(&untouched, Some(&health))),
            RollStep::WaitForReplicas { .. }
        ));
    }

    #[test]
    fn roll_waits_when_no_broker_reports_the_replicas() {
        let pods = pods(&["oldr", "newr"]);
        match plan_roll(&input(&pods, None)) {
            RollStep::WaitForReplicas { reason, .. } => assert_eq!(
                reason,
                "waiting for a broker to report the partitions' replicas before restarting pod mq-0"
            ),
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn an_out_of_date_pod_that_is_not_ready_goes_even_while_partitions_lag() {
        // it is not serving, so restarting it costs no replica; it is also how a stalled
        // roll recovers
        let pods = pods(&["oldr", "old", "newr"]);
        let health = lagging();
        assert!(matches!(
            plan_roll(&input(&pods, Some(&health))),
            RollStep::Delete { pod, .. } if pod == "mq-1"
        ));
    }

    #[test]
    fn a_wait_longer_than_the_limit_is_stalled_counted_from_the_last_ready_pod() {
        let minutes = |m: i64| now() - k8s_openapi::jiff::SignedDuration::from_secs(m * 60);
        let health = lagging();
        let mut pods = pods(&["oldr", "oldr", "newr"]);
        // out of sync for 30 minutes, but mq-2 became Ready only 4 minutes ago
        pods[2].ready_since = Some(minutes(4));
        let waiting = RollInput {
            out_of_sync_since: Some(minutes(30)),
            ..input(&pods, Some(&health))
        };
        assert!(matches!(
            plan_roll(&waiting),
            RollStep::WaitForReplicas { stalled: false, .. }
        ));
        pods[2].ready_since = Some(minutes(11));
        let stalled = RollInput {
            out_of_sync_since: Some(minutes(30)),
            ..input(&pods, Some(&health))
        };
        match plan_roll(&stalled) {
            RollStep::WaitForReplicas {
                stalled: true,
                reason,
                ..
            } => {
                assert!(
                    reason.starts_with(
                        "the roll has waited 11 minutes: waiting for 3 under-replicated"
                    ),
                    "{reason}"
                );
                assert!(reason.contains("restarts no other broker"), "{reason}");
            }
            other => panic!("expected a stalled wait, got {other:?}"),
        }
        // the last status said in sync: the wait starts now
        let fresh = RollInput {
            out_of_sync_since: None,
            ..input(&pods, Some(&health))
        };
        assert!(matches!(
            plan_roll(&fresh),
            RollStep::WaitForReplicas { stalled: false, .. }
        ));
        // the partitions fell out of sync only 2 minutes ago
        let recent = RollInput {
            out_of_sync_since: Some(minutes(2)),
            ..input(&pods, Some(&health))
        };
        assert!(matches!(
            plan_roll(&recent),
            RollStep::WaitForReplicas { stalled: false, .. }
        ));
    }
}
