//! The roll planner: which broker pod to restart next during an upgrade or config change.
//!
//! The StatefulSet uses `updateStrategy: OnDelete`, so the StatefulSet controller only creates
//! pods from the new template once the operator deletes the old ones. The operator deletes one
//! out-of-date pod at a time, highest ordinal first, and moves on only when every updated pod is
//! Ready and answers `/readyz`. A pod of the new revision that crash-loops stops the roll: going
//! on would take down the next broker for a version that does not start.

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
    match outdated.iter().max_by_key(|p| p.ordinal) {
        Some(p) => RollStep::Delete {
            pod: p.name.clone(),
            reason: format!(
                "restarting pod {} on the new revision ({} of {} out of date)",
                p.name,
                outdated.len(),
                pods.len()
            ),
        },
        None => RollStep::UpToDate,
    }
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
                }
            })
            .collect()
    }

    fn plan(spec: &[&str]) -> RollStep {
        let pods = pods(spec);
        plan_roll(&RollInput {
            update_revision: Some("new"),
            statefulset_observed: true,
            replicas: i32::try_from(pods.len()).expect("small"),
            pods: &pods,
        })
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
            update_revision: Some("new"),
            statefulset_observed: true,
            replicas: 3,
            pods: &two,
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
        let step = plan_roll(&RollInput {
            update_revision: Some("new"),
            statefulset_observed: false,
            replicas: 1,
            pods: &pods,
        });
        assert!(matches!(step, RollStep::Wait { .. }));
        let step = plan_roll(&RollInput {
            update_revision: None,
            statefulset_observed: true,
            replicas: 1,
            pods: &pods,
        });
        assert!(matches!(step, RollStep::Wait { .. }));
    }

    #[test]
    fn pods_beyond_replicas_are_ignored() {
        let pods = pods(&["newr", "oldr"]);
        let step = plan_roll(&RollInput {
            update_revision: Some("new"),
            statefulset_observed: true,
            replicas: 1,
            pods: &pods,
        });
        assert_eq!(step, RollStep::UpToDate);
    }
}
