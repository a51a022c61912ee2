//! Client quotas: Kafka's `producer_byte_rate` and `consumer_byte_rate`, set with
//! `kafka-configs.sh --entity-type users|clients` (AlterClientQuotas), kept in the metadata
//! quorum (`ClusterState::client_quotas`) and enforced by every broker on its own traffic, as
//! Kafka enforces them (a quota is per broker).
//!
//! Which quota applies to a request, and whose bytes count against it, follow Kafka's rules:
//! the most specific entity that has the key wins, in the order user + client id, user +
//! default client, user, default user + client id, default user + default client, default
//! user, client id, default client. The bytes are counted per the entity's *kinds* with the
//! caller's real names: a quota on the default client limits every client id on its own; a
//! quota on a user limits all of that user's clients together.
//!
//! The rate is measured as Kafka measures it: bytes in the last [`SAMPLES`] windows of
//! [`WINDOW_MS`] over the time they span, at least `SAMPLES - 1` windows (so a new client may
//! send a burst of about ten seconds' worth before it is held). Over the quota, the caller is
//! told to wait the time that brings its rate back to the quota (`throttle_time_ms` in the
//! response), at most one full span of windows, and its connection reads nothing more for that
//! long (KIP-219: a client that honours the field waits anyway; one that does not is held by
//! the broker). A produce that exceeds its quota is still appended and acknowledged, and a
//! fetch still returns its records: the throttle delays the next request, never loses one.
//!
//! Not enforced (setting one is refused, saying so): `request_percentage`,
//! `controller_mutation_rate`, `connection_creation_rate`.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";

/// Kafka's `quota.window.num` and `quota.window.size.seconds` defaults.
pub const SAMPLES: usize = 11;
pub const WINDOW_MS: i64 = 1000;

/// One part of a quota entity's name: the default of its kind, or a name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    /// As the wire carries it (`None` for the default).
    pub fn wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }

    pub fn from_wire(name: Option<&str>) -> EntityName {
        name.map_or(EntityName::Default, |n| EntityName::Named(n.to_string()))
    }
}

/// What a quota is set on: a user, a client id, or both (each named or the default).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
}

/// The quotas set on one entity (key to bytes per second).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuota {
    pub entity: QuotaEntity,
    pub values: std::collections::BTreeMap<String, i64>,
}

/// Whose bytes a quota counts: the caller's user and/or client id, per the entity's kinds
/// (empty where the entity has no such part).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SensorKey {
    pub user: String,
    pub client_id: String,
}

/// The quota `key` that applies to `user`'s client `client_id`, and whose bytes it counts.
pub fn applicable(
    quotas: &[ClientQuota],
    key: &str,
    user: &str,
    client_id: &str,
) -> Option<(SensorKey, i64)> {
    if quotas.is_empty() {
        return None;
    }
    let named = |s: &str| Some(EntityName::Named(s.to_string()));
    let default = || Some(EntityName::Default);
    let order = [
        (named(user), named(client_id)),
        (named(user), default()),
        (named(user), None),
        (default(), named(client_id)),
        (default(), default()),
        (default(), None),
        (None, named(client_id)),
        (None, default()),
    ];
    order.into_iter().find_map(|(u, c)| {
        let q = quotas
            .iter()
            .find(|q| q.entity.user == u && q.entity.client_id == c)?;
        let limit = *q.values.get(key)?;
        let sensor = SensorKey {
            user: if u.is_some() { user } else { "" }.to_string(),
            client_id: if c.is_some() { client_id } else { "" }.to_string(),
        };
        Some((sensor, limit))
    })
}

/// Bytes in fixed windows of [`WINDOW_MS`], the last [`SAMPLES`] of them.
#[derive(Debug, Clone, Default)]
pub struct Sensor {
    /// (window start ms, bytes), oldest first.
    windows: std::collections::VecDeque<(i64, u64)>,
}

impl Sensor {
    /// Counts `bytes` at `now_ms`.
    pub fn record(&mut self, bytes: u64, now_ms: i64) {
        let start = now_ms - now_ms.rem_euclid(WINDOW_MS);
        self.expire(now_ms);
        match self.windows.back_mut() {
            Some((s, b)) if *s == start => *b += bytes,
            _ => self.windows.push_back((start, bytes)),
        }
    }

    fn expire(&mut self, now_ms: i64) {
        let oldest = now_ms - WINDOW_MS * SAMPLES as i64;
        while self
            .windows
            .front()
            .is_some_and(|(s, _)| *s + WINDOW_MS <= oldest)
        {
            self.windows.pop_front();
        }
    }

    /// The time the rate is taken over: from the oldest window kept to now, at least
    /// `SAMPLES - 1` windows.
    fn span_ms(&self, now_ms: i64) -> i64 {
        let elapsed = self.windows.front().map_or(0, |(s, _)| (now_ms - s).max(0));
        elapsed.max(WINDOW_MS * (SAMPLES as i64 - 1))
    }

    /// Bytes counted in the windows kept at `now_ms`.
    fn bytes(&self, now_ms: i64) -> u64 {
        let oldest = now_ms - WINDOW_MS * SAMPLES as i64;
        self.windows
            .iter()
            .filter(|(s, _)| s + WINDOW_MS > oldest)
            .map(|(_, b)| *b)
            .sum()
    }

    /// Bytes per second at `now_ms`.
    pub fn rate(&self, now_ms: i64) -> f64 {
        self.bytes(now_ms) as f64 * 1000.0 / self.span_ms(now_ms) as f64
    }

    /// How long the caller must wait for its rate to come back to `limit` bytes per second:
    /// the wait after which the bytes counted, over their span and the wait, would be at the
    /// quota (Kafka's `(rate - quota) / quota * span`, in whole numbers); 0 within the quota,
    /// at most the whole span of windows.
    pub fn throttle_ms(&self, limit: i64, now_ms: i64) -> i64 {
        let limit = i128::from(limit.max(1));
        let over = i128::from(self.bytes(now_ms)) * 1000 - limit * i128::from(self.span_ms(now_ms));
        if over <= 0 {
            return 0;
        }
        let wait = (over + limit - 1) / limit;
        i64::try_from(wait).map_or(WINDOW_MS * SAMPLES as i64, |w| {
            w.min(WINDOW_MS * SAMPLES as i64)
        })
    }
}

/// The sensors of one kind of quota (produce or fetch bytes) on this broker.
#[derive(Debug, Default)]
pub struct Throttles {
    sensors: Mutex<HashMap<SensorKey, Sensor>>,
}

impl Throttles {
    /// Counts `bytes` for the caller against the quota `key` that applies to it, if any, and
    /// answers how long it must now wait (0: not throttled).
    pub fn record(
        &self,
        quotas: &[ClientQuota],
        key: &str,
        (user, client_id): (&str, &str),
        bytes: u64,
        now_ms: i64,
    ) -> i64 {
        let Some((sensor, limit)) = applicable(quotas, key, user, client_id) else {
            return 0;
        };
        let mut sensors = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        // Sensors of callers gone quiet for a whole span are dropped, so client ids that come
        // and go do not pile up.
        if sensors.len() > 1024 {
            sensors.retain(|_, s| {
                s.windows
                    .back()
                    .is_some_and(|(start, _)| now_ms - start < WINDOW_MS * SAMPLES as i64)
            });
        }
        let s = sensors.entry(sensor).or_default();
        s.record(bytes, now_ms);
        s.throttle_ms(limit, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(user: Option<EntityName>, client: Option<EntityName>, limit: i64) -> ClientQuota {
        ClientQuota {
            entity: QuotaEntity {
                user,
                client_id: client,
            },
            values: [(PRODUCER_BYTE_RATE.to_string(), limit)].into(),
        }
    }

    fn named(s: &str) -> Option<EntityName> {
        Some(EntityName::Named(s.to_string()))
    }

    #[test]
    fn the_most_specific_entity_with_the_key_applies_and_sets_whose_bytes_count() {
        let all = vec![
            quota(None, Some(EntityName::Default), 10),
            quota(None, named("app"), 20),
            quota(Some(EntityName::Default), None, 30),
            quota(named("alice"), None, 40),
            quota(named("alice"), named("app"), 50),
        ];
        let got = |u: &str, c: &str| applicable(&all, PRODUCER_BYTE_RATE, u, c);
        let key = |u: &str, c: &str| SensorKey {
            user: u.to_string(),
            client_id: c.to_string(),
        };
        assert_eq!(got("alice", "app"), Some((key("alice", "app"), 50)));
        assert_eq!(got("alice", "other"), Some((key("alice", ""), 40)));
        // Any other user: the default user's quota, counted per user.
        assert_eq!(got("bob", "app"), Some((key("bob", ""), 30)));
        let no_users = &all[..2];
        let got = |c: &str| applicable(no_users, PRODUCER_BYTE_RATE, "bob", c);
        assert_eq!(got("app"), Some((key("", "app"), 20)));
        // The default client's quota holds each client id on its own.
        assert_eq!(got("x"), Some((key("", "x"), 10)));
        assert_eq!(applicable(no_users, CONSUMER_BYTE_RATE, "bob", "x"), None);
        assert_eq!(applicable(&[], PRODUCER_BYTE_RATE, "bob", "x"), None);
    }

    #[test]
    fn a_burst_of_ten_windows_passes_then_the_wait_brings_the_rate_back_to_the_quota() {
        let mut s = Sensor::default();
        // 1,000 B/s: ten seconds' worth at once is within the quota (span at least 10 s).
        s.record(10_000, 0);
        assert_eq!(s.throttle_ms(1000, 0), 0);
        // 5,000 more: 15,000 B over 10 s is 1,500 B/s, half again the quota: wait 5 s.
        s.record(5_000, 0);
        assert_eq!(s.throttle_ms(1000, 0), 5_000);
        // 15,000 B over 15 s would be the quota; the windows kept reach back 11 s, so at 11 s
        // 4 s are still owed, and once the window has aged out nothing is.
        assert_eq!(s.throttle_ms(1000, 11_000), 4_000);
        assert_eq!(s.throttle_ms(1000, 12_000), 0);
        // Windows older than the span are forgotten.
        s.record(1, 40_000);
        assert_eq!(s.windows.len(), 1);
        // A huge overshoot waits at most the whole span.
        s.record(u32::MAX as u64, 40_000);
        assert_eq!(s.throttle_ms(1, 40_000), WINDOW_MS * SAMPLES as i64);
    }

    #[test]
    fn throttles_count_each_caller_per_its_quota() {
        let t = Throttles::default();
        let quotas = vec![quota(None, Some(EntityName::Default), 100)];
        // 1,500 B against 100 B/s over the 10 s minimum span: 5 s owed.
        assert_eq!(
            t.record(&quotas, PRODUCER_BYTE_RATE, ("u", "a"), 1500, 0),
            5000
        );
        // Another client id has its own sensor under the default client's quota.
        assert_eq!(t.record(&quotas, PRODUCER_BYTE_RATE, ("u", "b"), 500, 0), 0);
        // No quota for the key: nothing counted, no wait.
        assert_eq!(
            t.record(&quotas, CONSUMER_BYTE_RATE, ("u", "a"), 1 << 30, 0),
            0
        );
    }
}
