//! Broker liveness, decided by the quorum leader: it probes every registered broker's cluster
//! listener once a second; a broker that misses [`MISSES_TO_FENCE`] probes in a row is fenced
//! (the quorum moves its leaderships to other in-sync replicas and takes it out of every ISR;
//! new partitions and groups go elsewhere), and a fenced broker that answers again is made
//! active (it rejoins the ISRs once its copies caught up). Only the leader acts, so brokers
//! never race each other over one peer's state; a new leader starts counting from zero.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::network::Request;
use crate::cluster::state::{BrokerState, ClusterState, Command};
use crate::cluster::Cluster;

/// How often the leader probes each broker.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// Consecutive failed probes before a broker is fenced (about three seconds).
pub const MISSES_TO_FENCE: u32 = 3;

/// The state changes the leader should propose, given consecutive misses per broker. Pure.
pub fn decisions(
    state: &ClusterState,
    me: i32,
    misses: &BTreeMap<i32, u32>,
) -> Vec<(i32, BrokerState)> {
    state
        .brokers
        .values()
        .filter(|b| b.id != me)
        .filter_map(|b| {
            let missed = misses.get(&b.id).copied().unwrap_or(0);
            match b.state {
                BrokerState::Active if missed >= MISSES_TO_FENCE => {
                    Some((b.id, BrokerState::Fenced))
                }
                BrokerState::Fenced if missed == 0 => Some((b.id, BrokerState::Active)),
                _ => None,
            }
        })
        .collect()
}

/// Spawns the leader's probe loop.
pub fn spawn(cluster: Arc<Cluster>, me: i32, shutdown: CancellationToken) {
    tokio::spawn(
        async move {
            let mut misses: BTreeMap<i32, u32> = BTreeMap::new();
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if cluster.leader() != Some(me) {
                    misses.clear();
                    continue;
                }
                let state = cluster.state();
                let peers: Vec<(i32, String)> = state
                    .brokers
                    .values()
                    .filter(|b| b.id != me && !b.cluster_addr.is_empty())
                    .map(|b| (b.id, b.cluster_addr.clone()))
                    .collect();
                let probes = peers.iter().map(|(id, addr)| {
                    let cluster = &cluster;
                    async move {
                        let ok = cluster.call(addr, Request::Probe, PROBE_TIMEOUT).await.is_ok();
                        (*id, ok)
                    }
                });
                for (id, ok) in futures::future::join_all(probes).await {
                    let m = misses.entry(id).or_default();
                    *m = if ok { 0 } else { m.saturating_add(1) };
                }
                misses.retain(|id, _| state.brokers.contains_key(id));
                for (id, next) in decisions(&state, me, &misses) {
                    match next {
                        BrokerState::Fenced => tracing::warn!(
                            broker = id,
                            missed = misses.get(&id).copied().unwrap_or(0),
                            "broker unreachable; fencing it: its leaderships move to in-sync replicas (partitions with no other copy are offline until it returns)"
                        ),
                        _ => tracing::info!(broker = id, "fenced broker answers again; active"),
                    }
                    if let Err(e) = cluster
                        .propose(Command::SetBrokerState { id, state: next })
                        .await
                    {
                        tracing::warn!(broker = id, error = %e, "could not change the broker's state");
                        continue;
                    }
                }
            }
        }
        .instrument(tracing::info_span!("liveness")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::BrokerRecord;

    fn state(states: &[(i32, BrokerState)]) -> ClusterState {
        let mut s = ClusterState::default();
        for (id, st) in states {
            s.brokers.insert(
                *id,
                BrokerRecord {
                    id: *id,
                    host: "h".into(),
                    port: 1,
                    cluster_addr: "h:2".into(),
                    rack: None,
                    state: *st,
                    listeners: Vec::new(),
                    fresh_volume: false,
                },
            );
        }
        s
    }

    #[test]
    fn fences_after_consecutive_misses_and_unfences_on_an_answer() {
        let s = state(&[
            (0, BrokerState::Active),
            (1, BrokerState::Active),
            (2, BrokerState::Fenced),
            (3, BrokerState::Draining),
        ]);
        let misses = BTreeMap::from([(1, MISSES_TO_FENCE), (2, 0), (3, 10)]);
        assert_eq!(
            decisions(&s, 0, &misses),
            vec![(1, BrokerState::Fenced), (2, BrokerState::Active)]
        );
        // Fewer misses than the threshold: nothing yet. The leader never fences itself.
        let misses = BTreeMap::from([(0, 99), (1, MISSES_TO_FENCE - 1), (2, 1)]);
        assert_eq!(decisions(&s, 0, &misses), vec![]);
    }
}
