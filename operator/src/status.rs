//! Conditions and the summary phase, computed from what one reconcile observed. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::replication::PartitionHealth;

/// Condition types.
pub const AVAILABLE: &str = "Available";
/// Condition types.
pub const PROGRESSING: &str = "Progressing";
/// Condition types.
pub const DEGRADED: &str = "Degraded";
/// Condition types.
pub const PAUSED: &str = "ReconciliationPaused";
/// Condition types.
pub const REPLICATED: &str = "Replicated";

/// What a pass learnt about the partitions' replication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReplicationSeen {
    /// The pass did not ask (paused, invalid spec): the last status stands.
    #[default]
    NotAsked,
    /// No broker answered.
    NoAnswer,
    /// What a broker reported.
    Seen(PartitionHealth),
}

/// What the reconcile saw and decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// Desired brokers (spec.replicas).
    pub desired: i32,
    /// Broker pods that exist.
    pub existing: i32,
    /// Broker pods that are ready.
    pub ready: i32,
    /// spec.disruptionBudget.maxUnavailable.
    pub max_unavailable: i32,
    /// Roll in progress: what it waits for / does.
    pub rolling: Option<String>,
    /// Roll stopped: why.
    pub roll_stopped: Option<String>,
    /// The roll waits for under-replicated partitions before the next pod: what it waits for.
    pub waiting_for_replicas: Option<String>,
    /// That wait has lasted too long: why.
    pub roll_stalled: Option<String>,
    /// The partitions' replication.
    pub replication: ReplicationSeen,
    /// Scale-down refused: why.
    pub scale_refused: Option<String>,
    /// Scale-down under way: partitions moving off the brokers to remove, or waiting for them to
    /// leave the cluster.
    pub draining: Option<String>,
    /// `spec.autoRebalance` is moving partitions between the brokers.
    pub rebalancing: Option<String>,
    /// The spec is invalid: why.
    pub invalid_spec: Option<String>,
    /// Queues that are not in place, with why (name: message).
    pub queue_problems: Vec<String>,
    /// Queues wait to be created until as many brokers as their copies are live.
    pub queues_waiting: bool,
    /// Paused by spec or annotation.
    pub paused: bool,
}

/// One condition with the standard fields; lastTransitionTime is kept from `previous` when the
/// status did not change.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    condition_of(previous, type_, status, reason, message, generation, now)
}

/// [`condition`] with any status, "Unknown" included.
fn condition_of(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = status.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The `Replicated` condition: True when every partition has all its replicas in sync, False
/// naming a count and an example (offline partitions first: they take no reads or writes),
/// Unknown when no broker answered; the previous one when the pass did not ask.
fn replicated(
    previous: &[Condition],
    seen: &ReplicationSeen,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let (status, reason, message) = match seen {
        ReplicationSeen::NotAsked => {
            if let Some(c) = previous.iter().find(|c| c.type_ == REPLICATED) {
                return c.clone();
            }
            (
                "Unknown",
                "NotChecked",
                "the brokers have not been asked yet".to_string(),
            )
        }
        ReplicationSeen::NoAnswer => (
            "Unknown",
            "NoBrokerAnswered",
            "no ready broker reported the partitions' replicas".to_string(),
        ),
        ReplicationSeen::Seen(h) if !h.offline.is_empty() => {
            ("False", "OfflinePartitions", h.summary())
        }
        ReplicationSeen::Seen(h) if !h.in_sync() => ("False", "UnderReplicated", h.summary()),
        ReplicationSeen::Seen(h) => ("True", "AllInSync", h.summary()),
    };
    condition_of(
        previous, REPLICATED, status, reason, message, generation, now,
    )
}

/// The five conditions and the phase.
pub fn conditions(
    previous: &[Condition],
    obs: &Observation,
    generation: Option<i64>,
    now: Timestamp,
) -> (Vec<Condition>, String) {
    let min_ready = (obs.desired - obs.max_unavailable).max(1);
    let available = obs.ready >= min_ready;
    let available_c = condition(
        previous,
        AVAILABLE,
        available,
        if available {
            "BrokersReady"
        } else {
            "BrokersNotReady"
        },
        format!(
            "{} of {} brokers ready (at least {min_ready} needed to serve)",
            obs.ready, obs.desired
        ),
        generation,
        now,
    );

    let (progressing, p_reason, p_message) = if obs.paused {
        (false, "Paused", "reconciliation is paused".to_string())
    } else if let Some(why) = &obs.draining {
        (true, "Draining", why.clone())
    } else if let Some(why) = &obs.waiting_for_replicas {
        (true, "WaitingForReplicas", why.clone())
    } else if let Some(why) = &obs.rolling {
        (true, "RollingUpdate", why.clone())
    } else if let Some(why) = &obs.rebalancing {
        (true, "Rebalancing", why.clone())
    } else if obs.existing < obs.desired {
        (
            true,
            "ScalingUp",
            format!("{} of {} broker pods exist", obs.existing, obs.desired),
        )
    } else if obs.ready < obs.desired {
        (
            true,
            "WaitingForBrokers",
            format!("{} of {} brokers ready", obs.ready, obs.desired),
        )
    } else {
        (
            false,
            "ReconcileComplete",
            "every broker runs the desired spec".to_string(),
        )
    };
    let progressing_c = condition(
        previous,
        PROGRESSING,
        progressing,
        p_reason,
        p_message,
        generation,
        now,
    );

    let degraded_cause: Option<(&str, String)> = if let Some(why) = &obs.invalid_spec {
        Some(("InvalidSpec", why.clone()))
    } else if let Some(why) = &obs.roll_stopped {
        Some(("RollStopped", why.clone()))
    } else if let Some(why) = &obs.roll_stalled {
        Some(("RollStalled", why.clone()))
    } else if let Some(why) = &obs.scale_refused {
        Some(("ScaleDownBlocked", why.clone()))
    } else if !obs.queue_problems.is_empty() {
        Some(("QueuesNotApplied", obs.queue_problems.join("; ")))
    } else {
        None
    };
    let degraded_c = match &degraded_cause {
        Some((reason, message)) => condition(
            previous,
            DEGRADED,
            true,
            reason,
            message.clone(),
            generation,
            now,
        ),
        None => condition(
            previous,
            DEGRADED,
            false,
            "AsExpected",
            "nothing is blocked".to_string(),
            generation,
            now,
        ),
    };

    let paused_c = condition(
        previous,
        PAUSED,
        obs.paused,
        if obs.paused { "Paused" } else { "Reconciling" },
        if obs.paused {
            "spec.paused or the sluice.dev/paused annotation is set; no changes are made"
                .to_string()
        } else {
            "the operator reconciles this MessageQueue".to_string()
        },
        generation,
        now,
    );

    let phase = if obs.paused {
        "Paused"
    } else if degraded_cause.is_some() {
        "Degraded"
    } else if obs.ready == 0 && obs.desired > 0 {
        "Creating"
    } else if progressing {
        "Progressing"
    } else {
        "Running"
    };
    let replicated_c = replicated(previous, &obs.replication, generation, now);
    (
        vec![
            available_c,
            progressing_c,
            degraded_c,
            replicated_c,
            paused_c,
        ],
        phase.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("valid")
    }

    fn get<'a>(cs: &'a [Condition], t: &str) -> &'a Condition {
        cs.iter().find(|c| c.type_ == t).expect("condition present")
    }

    fn steady() -> Observation {
        Observation {
            desired: 3,
            existing: 3,
            ready: 3,
            max_unavailable: 1,
            ..Observation::default()
        }
    }

    #[test]
    fn steady_cluster_is_available_and_running() {
        let (cs, phase) = conditions(&[], &steady(), Some(4), now());
        assert_eq!(get(&cs, AVAILABLE).status, "True");
        assert_eq!(get(&cs, PROGRESSING).status, "False");
        assert_eq!(get(&cs, DEGRADED).status, "False");
        assert_eq!(get(&cs, PAUSED).status, "False");
        assert!(cs.iter().all(|c| c.observed_generation == Some(4)));
        assert_eq!(phase, "Running");
    }

    #[test]
    fn new_cluster_is_creating_and_progressing() {
        let obs = Observation {
            existing: 0,
            ready: 0,
            ..steady()
        };
        let (cs, phase) = conditions(&[], &obs, Some(1), now());
        assert_eq!(get(&cs, AVAILABLE).status, "False");
        assert_eq!(get(&cs, PROGRESSING).reason, "ScalingUp");
        assert_eq!(phase, "Creating");
    }

    #[test]
    fn roll_in_progress_keeps_available_with_one_broker_down() {
        let obs = Observation {
            ready: 2,
            rolling: Some("restarting pod mq-2".into()),
            ..steady()
        };
        let (cs, phase) = conditions(&[], &obs, None, now());
        assert_eq!(get(&cs, AVAILABLE).status, "True");
        assert_eq!(get(&cs, PROGRESSING).reason, "RollingUpdate");
        assert_eq!(phase, "Progressing");
    }

    #[test]
    fn refused_scale_down_is_degraded_with_the_reason() {
        let obs = Observation {
            scale_refused: Some("brokers 2..2 still hold partitions orders-1".into()),
            ..steady()
        };
        let (cs, phase) = conditions(&[], &obs, None, now());
        let d = get(&cs, DEGRADED);
        assert_eq!(d.status, "True");
        assert_eq!(d.reason, "ScaleDownBlocked");
        assert!(d.message.contains("orders-1"));
        assert_eq!(phase, "Degraded");
    }

    #[test]
    fn draining_is_progress_not_degradation() {
        let obs = Observation {
            draining: Some("moving 7 of 12 partitions off brokers 3,4".into()),
            ..steady()
        };
        let (cs, phase) = conditions(&[], &obs, None, now());
        let p = get(&cs, PROGRESSING);
        assert_eq!((p.status.as_str(), p.reason.as_str()), ("True", "Draining"));
        assert!(p.message.contains("7 of 12"));
        assert_eq!(get(&cs, DEGRADED).status, "False");
        assert_eq!(phase, "Progressing");
    }

    #[test]
    fn rebalancing_is_progress_and_the_brokers_stay_available() {
        let obs = Observation {
            rebalancing: Some("rebalancing partitions over 3 brokers".into()),
            ..steady()
        };
        let (cs, phase) = conditions(&[], &obs, None, now());
        let p = get(&cs, PROGRESSING);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "Rebalancing")
        );
        assert_eq!(get(&cs, AVAILABLE).status, "True");
        assert_eq!(phase, "Progressing");
    }

    #[test]
    fn stopped_roll_and_invalid_spec_are_degraded() {
        let obs = Observation {
            roll_stopped: Some("pod mq-2 CrashLoopBackOff".into()),
            ..steady()
        };
        assert_eq!(
            get(&conditions(&[], &obs, None, now()).0, DEGRADED).reason,
            "RollStopped"
        );
        let obs = Observation {
            invalid_spec: Some("replicas is 0".into()),
            ..steady()
        };
        assert_eq!(
            get(&conditions(&[], &obs, None, now()).0, DEGRADED).reason,
            "InvalidSpec"
        );
    }

    #[test]
    fn paused_sets_reconciliation_paused() {
        let obs = Observation {
            paused: true,
            ..steady()
        };
        let (cs, phase) = conditions(&[], &obs, None, now());
        assert_eq!(get(&cs, PAUSED).status, "True");
        assert_eq!(get(&cs, PROGRESSING).reason, "Paused");
        assert_eq!(phase, "Paused");
    }

    #[test]
    fn transition_time_changes_only_when_status_changes() {
        let (first, _) = conditions(&[], &steady(), None, now());
        let later = Timestamp::from_second(1_800_000_100).expect("valid");
        let (same, _) = conditions(&first, &steady(), None, later);
        assert_eq!(get(&same, AVAILABLE).last_transition_time, Time(now()));
        let down = Observation {
            ready: 0,
            ..steady()
        };
        let (changed, _) = conditions(&first, &down, None, later);
        assert_eq!(get(&changed, AVAILABLE).last_transition_time, Time(later));
    }

    fn lagging(offline: bool) -> PartitionHealth {
        let tp = |partition| crate::scale::TopicPartition {
            topic: "orders".into(),
            partition,
        };
        PartitionHealth {
            under_replicated: vec![tp(1), tp(2)],
            offline: if offline { vec![tp(2)] } else { vec![] },
        }
    }

    #[test]
    fn replicated_says_in_sync_under_replicated_or_offline_with_a_count_and_an_example() {
        let seen = |h| Observation {
            replication: ReplicationSeen::Seen(h),
            ..steady()
        };
        let (cs, phase) = conditions(&[], &seen(PartitionHealth::default()), None, now());
        let r = get(&cs, REPLICATED);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "AllInSync")
        );
        assert_eq!(phase, "Running");
        let (cs, phase) = conditions(&[], &seen(lagging(false)), None, now());
        let r = get(&cs, REPLICATED);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "UnderReplicated")
        );
        assert_eq!(r.message, "2 under-replicated partitions (e.g. orders-1)");
        assert_eq!(phase, "Running", "a lagging replica alone degrades nothing");
        let (cs, _) = conditions(&[], &seen(lagging(true)), None, now());
        let r = get(&cs, REPLICATED);
        assert_eq!(r.reason, "OfflinePartitions");
        assert!(
            r.message.contains("1 of them offline (e.g. orders-2)"),
            "{}",
            r.message
        );
    }

    #[test]
    fn replicated_is_unknown_without_an_answer_and_kept_when_not_asked() {
        let none = Observation {
            replication: ReplicationSeen::NoAnswer,
            ..steady()
        };
        let (cs, _) = conditions(&[], &none, None, now());
        let r = get(&cs, REPLICATED);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("Unknown", "NoBrokerAnswered")
        );
        let lag = Observation {
            replication: ReplicationSeen::Seen(lagging(false)),
            ..steady()
        };
        let (before, _) = conditions(&[], &lag, None, now());
        let paused = Observation {
            paused: true,
            ..steady()
        };
        let later = Timestamp::from_second(1_800_000_100).expect("valid");
        let (after, _) = conditions(&before, &paused, None, later);
        assert_eq!(get(&after, REPLICATED), get(&before, REPLICATED));
    }

    #[test]
    fn a_roll_waiting_for_replicas_is_progress_until_it_stalls() {
        let waiting = Observation {
            waiting_for_replicas: Some("waiting for 2 under-replicated partitions".into()),
            rolling: Some("waiting for 2 under-replicated partitions".into()),
            ..steady()
        };
        let (cs, phase) = conditions(&[], &waiting, None, now());
        assert_eq!(get(&cs, PROGRESSING).reason, "WaitingForReplicas");
        assert_eq!(get(&cs, DEGRADED).status, "False");
        assert_eq!(phase, "Progressing");
        let stalled = Observation {
            roll_stalled: Some("the roll has waited 10 minutes".into()),
            ..waiting
        };
        let (cs, phase) = conditions(&[], &stalled, None, now());
        let d = get(&cs, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "RollStalled")
        );
        assert_eq!(phase, "Degraded");
    }
}
