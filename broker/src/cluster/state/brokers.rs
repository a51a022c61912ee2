//! The state machine's broker lifecycle: a broker's state changes (fenced, draining, shutting
//! down, back), the elections and ISR changes they cause, a lost volume, and unregistering.

use super::*;
use crate::cluster::partition::Electorate;

impl ClusterState {
    pub(super) fn set_broker_state(&mut self, id: i32, state: BrokerState) -> Outcome {
        let Some(b) = self.brokers.get_mut(&id) else {
            return refused(
                code::BROKER_ID_NOT_REGISTERED,
                format!("broker {id} is not registered"),
            );
        };
        let was_alive = b.state.is_alive();
        b.state = state;
        match (was_alive, state.is_alive()) {
            (true, false) => self.broker_stopped(id),
            (false, true) => self.broker_returned(id),
            _ => {}
        }
        Outcome::Done
    }

    /// Every partition led by `id` gets a new leader (or goes offline); `id` leaves every ISR
    /// where it is not the last member.
    pub(super) fn broker_stopped(&mut self, id: i32) {
        let alive = self.alive_brokers();
        for t in self.topics.values_mut() {
            let unclean = t.unclean_election();
            for p in &mut t.partitions {
                p.broker_stopped(
                    id,
                    Electorate {
                        alive: &alive,
                        unclean,
                    },
                );
            }
        }
    }

    /// Broker `id` came back on an empty volume: its copies are gone, so it is in sync nowhere
    /// and leads nothing until it caught up again (see [`PartitionRecord::volume_lost`]).
    pub(super) fn volume_lost(&mut self, id: i32) {
        let alive = self.alive_brokers();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                p.volume_lost(id, &alive);
            }
        }
    }

    /// Offline partitions whose in-sync copy is on `id` are led by it again.
    pub(super) fn broker_returned(&mut self, id: i32) {
        let alive = self.alive_brokers();
        for t in self.topics.values_mut() {
            let unclean = t.unclean_election();
            for p in &mut t.partitions {
                p.broker_returned(
                    id,
                    Electorate {
                        alive: &alive,
                        unclean,
                    },
                );
            }
        }
    }

    pub(super) fn unregister(&mut self, id: i32) -> Outcome {
        if !self.brokers.contains_key(&id) {
            return refused(
                code::BROKER_ID_NOT_REGISTERED,
                format!("broker {id} is not registered"),
            );
        }
        // Group coordinators are the leaders of `__consumer_offsets`' partitions: a broker
        // that holds none of their replicas coordinates nothing. (The group records of earlier
        // versions are history, not a reason to refuse.)
        let partitions = self.partitions_of(id);
        if let Some((t, p)) = partitions.first() {
            return refused(
                code::INVALID_REQUEST,
                format!(
                    "broker {id} still holds {} partition replica(s) (e.g. {t}-{p}); move them \
                     off first",
                    partitions.len(),
                ),
            );
        }
        self.brokers.remove(&id);
        Outcome::Done
    }
}
