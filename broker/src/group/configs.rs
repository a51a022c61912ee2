//! Group configs: Kafka's per-group overrides (config resource type GROUP, what
//! `kafka-configs.sh --entity-type groups --entity-name <group>` describes and alters) of the
//! coordinator's session and heartbeat settings and of a share group's record handling.
//!
//! Pure: the keys, their validation and the values a group gets. The overrides live in the
//! metadata quorum (`ClusterState::group_configs`), so every broker, and the next coordinator
//! of the group, sees the same ones. A group with no override gets the broker's flags; for a
//! share group's record settings the queue's topic config comes between the two (a group
//! override wins over the topic's, which wins over the broker's): Sluice's `MessageQueue`
//! sets them per queue, Kafka's tools per group, and both work.
//!
//! Decided here where Kafka has more: `share.isolation.level` only `read_uncommitted` (share groups
//! read uncommitted records here), and the `streams.*` configs are refused since streams
//! groups (KIP-1071) are not served. A session timeout must lie within the coordinator's
//! session-timeout bounds (Kafka's `group.min/max.session.timeout.ms`, 6 s .. 30 min) and a
//! heartbeat interval below its session timeout, checked on the values the group would end up
//! with.

use std::collections::BTreeMap;

use crate::log::{
    AlterOp, ShareStart, SHARE_AUTO_OFFSET_RESET, SHARE_DELIVERY_COUNT_LIMIT,
    SHARE_RECORD_LOCK_DURATION_MS,
};

pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";
pub const SHARE_SESSION_TIMEOUT_MS: &str = "share.session.timeout.ms";
pub const SHARE_HEARTBEAT_INTERVAL_MS: &str = "share.heartbeat.interval.ms";
pub const SHARE_ISOLATION_LEVEL: &str = "share.isolation.level";

/// Every group config served, in the order DescribeConfigs lists them.
pub const GROUP_CONFIG_KEYS: [&str; 8] = [
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    SHARE_AUTO_OFFSET_RESET,
    SHARE_DELIVERY_COUNT_LIMIT,
    SHARE_HEARTBEAT_INTERVAL_MS,
    SHARE_ISOLATION_LEVEL,
    SHARE_RECORD_LOCK_DURATION_MS,
    SHARE_SESSION_TIMEOUT_MS,
];

/// The broker's values: what a group without an override gets, and the session-timeout
/// bounds an override must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupDefaults {
    pub consumer_session_timeout_ms: i64,
    pub consumer_heartbeat_interval_ms: i64,
    pub share_session_timeout_ms: i64,
    pub share_heartbeat_interval_ms: i64,
    pub share_record_lock_duration_ms: i64,
    pub share_delivery_count_limit: i64,
    pub min_session_timeout_ms: i64,
    pub max_session_timeout_ms: i64,
}

impl GroupDefaults {
    /// The broker's value of `key` (one of [`GROUP_CONFIG_KEYS`]).
    fn value(&self, key: &str) -> String {
        match key {
            CONSUMER_SESSION_TIMEOUT_MS => self.consumer_session_timeout_ms.to_string(),
            CONSUMER_HEARTBEAT_INTERVAL_MS => self.consumer_heartbeat_interval_ms.to_string(),
            SHARE_SESSION_TIMEOUT_MS => self.share_session_timeout_ms.to_string(),
            SHARE_HEARTBEAT_INTERVAL_MS => self.share_heartbeat_interval_ms.to_string(),
            SHARE_RECORD_LOCK_DURATION_MS => self.share_record_lock_duration_ms.to_string(),
            SHARE_DELIVERY_COUNT_LIMIT => self.share_delivery_count_limit.to_string(),
            SHARE_AUTO_OFFSET_RESET => "latest".to_string(),
            SHARE_ISOLATION_LEVEL => "read_uncommitted".to_string(),
            _ => String::new(),
        }
    }

    /// Every group config as a group with `overrides` sees it: (key, value, overridden).
    pub fn entries(&self, overrides: &BTreeMap<String, String>) -> Vec<GroupConfigEntry> {
        GROUP_CONFIG_KEYS
            .iter()
            .map(|k| {
                let default = self.value(k);
                GroupConfigEntry {
                    name: k,
                    value: overrides.get(*k).unwrap_or(&default).clone(),
                    overridden: overrides.contains_key(*k),
                    default,
                }
            })
            .collect()
    }

    /// A millisecond (or count) setting of a group with `overrides`: its override, else the
    /// broker's value.
    pub fn number(&self, overrides: &BTreeMap<String, String>, key: &str) -> i64 {
        overrides
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| self.value(key).parse().unwrap_or(0))
    }
}

/// One group config as DescribeConfigs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfigEntry {
    pub name: &'static str,
    pub value: String,
    /// Set for the group (Kafka's source GROUP_CONFIG), else the broker's default.
    pub overridden: bool,
    /// The broker's default, which the group has without its override.
    pub default: String,
}

/// The broker-wide config a group config falls back to, by Kafka's name for it
/// (`consumer.session.timeout.ms` falls back to `group.consumer.session.timeout.ms`); a key
/// with no broker-wide name in Kafka is its own.
pub fn broker_synonym(key: &str) -> String {
    match key {
        CONSUMER_SESSION_TIMEOUT_MS
        | CONSUMER_HEARTBEAT_INTERVAL_MS
        | SHARE_SESSION_TIMEOUT_MS
        | SHARE_HEARTBEAT_INTERVAL_MS
        | SHARE_RECORD_LOCK_DURATION_MS
        | SHARE_DELIVERY_COUNT_LIMIT => format!("group.{key}"),
        other => other.to_string(),
    }
}

/// A group's overrides after `ops` (AlterConfigs replaces them all, IncrementalAlterConfigs
/// changes the ones named), each value checked and the result checked as a whole; `Err`
/// names the config and says what is allowed.
pub fn altered(
    current: &BTreeMap<String, String>,
    ops: Vec<AlterOp>,
    incremental: bool,
    d: &GroupDefaults,
) -> Result<BTreeMap<String, String>, String> {
    let mut configs = if incremental {
        current.clone()
    } else {
        BTreeMap::new()
    };
    for op in ops {
        match op {
            AlterOp::Set(k, v) => {
                validate(&k, &v, d)?;
                configs.insert(k, v);
            }
            AlterOp::Delete(k) => {
                known(&k)?;
                configs.remove(&k);
            }
        }
    }
    for (heartbeat, session) in [
        (CONSUMER_HEARTBEAT_INTERVAL_MS, CONSUMER_SESSION_TIMEOUT_MS),
        (SHARE_HEARTBEAT_INTERVAL_MS, SHARE_SESSION_TIMEOUT_MS),
    ] {
        let (h, s) = (d.number(&configs, heartbeat), d.number(&configs, session));
        if h >= s {
            return Err(format!(
                "{heartbeat} ({h}) must be less than {session} ({s})"
            ));
        }
    }
    Ok(configs)
}

fn known(key: &str) -> Result<(), String> {
    if GROUP_CONFIG_KEYS.contains(&key) {
        return Ok(());
    }
    if key.starts_with("streams.") {
        return Err(format!(
            "{key}: streams groups (KIP-1071) are not supported by this broker"
        ));
    }
    Err(format!(
        "{key} is not a group config (known: {})",
        GROUP_CONFIG_KEYS.join(", ")
    ))
}

fn validate(key: &str, value: &str, d: &GroupDefaults) -> Result<(), String> {
    known(key)?;
    let number = |lo: i64, hi: i64| -> Result<(), String> {
        match value.parse::<i64>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => Err(format!(
                "{key}: {value:?} is not allowed (a whole number from {lo} to {hi})"
            )),
        }
    };
    match key {
        CONSUMER_SESSION_TIMEOUT_MS | SHARE_SESSION_TIMEOUT_MS => {
            number(d.min_session_timeout_ms, d.max_session_timeout_ms)
        }
        CONSUMER_HEARTBEAT_INTERVAL_MS | SHARE_HEARTBEAT_INTERVAL_MS => {
            number(1, d.max_session_timeout_ms)
        }
        // The same bounds as the topic configs of the same names.
        SHARE_RECORD_LOCK_DURATION_MS => number(1_000, 3_600_000),
        SHARE_DELIVERY_COUNT_LIMIT => number(2, 10),
        SHARE_AUTO_OFFSET_RESET => ShareStart::parse(value)
            .map(drop)
            .map_err(|why| format!("{key}: {why}")),
        SHARE_ISOLATION_LEVEL => match value {
            "read_uncommitted" => Ok(()),
            _ => Err(format!(
                "{key}: {value:?} is not allowed (share groups read uncommitted records here: read_uncommitted)"
            )),
        },
        _ => known(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> GroupDefaults {
        GroupDefaults {
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            share_session_timeout_ms: 45_000,
            share_heartbeat_interval_ms: 5_000,
            share_record_lock_duration_ms: 30_000,
            share_delivery_count_limit: 5,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
        }
    }

    fn set(k: &str, v: &str) -> AlterOp {
        AlterOp::Set(k.to_string(), v.to_string())
    }

    #[test]
    fn overrides_are_checked_value_by_value_and_as_a_whole() {
        let d = defaults();
        let none = BTreeMap::new();
        let c = altered(
            &none,
            vec![
                set(SHARE_AUTO_OFFSET_RESET, "by_duration:PT1H"),
                set(CONSUMER_SESSION_TIMEOUT_MS, "10000"),
            ],
            true,
            &d,
        )
        .expect("valid");
        assert_eq!(c.len(), 2);
        // Each refusal names the config and what it takes.
        for (op, words) in [
            (
                set(CONSUMER_SESSION_TIMEOUT_MS, "1000"),
                "from 6000 to 1800000",
            ),
            (
                set(SHARE_AUTO_OFFSET_RESET, "by_duration:1h"),
                "earliest, latest, by_duration:<ISO-8601",
            ),
            (
                set(SHARE_ISOLATION_LEVEL, "read_committed"),
                "read_uncommitted",
            ),
            (set(SHARE_DELIVERY_COUNT_LIMIT, "x"), "whole number"),
            (set("streams.num.standby.replicas", "1"), "KIP-1071"),
            (set("retention.ms", "1"), "not a group config"),
            (AlterOp::Delete("nope".into()), "not a group config"),
        ] {
            let err = altered(&c, vec![op], true, &d).expect_err("refused");
            assert!(err.contains(words), "{err}");
        }
        // A heartbeat interval at or above the session timeout the group would have.
        let err = altered(
            &c,
            vec![set(CONSUMER_HEARTBEAT_INTERVAL_MS, "10000")],
            true,
            &d,
        )
        .expect_err("refused");
        assert!(err.contains("must be less than"), "{err}");
        assert!(altered(
            &c,
            vec![set(CONSUMER_HEARTBEAT_INTERVAL_MS, "9999")],
            true,
            &d
        )
        .is_ok());
        // AlterConfigs replaces every override; a delete goes back to the broker's value.
        let replaced = altered(&c, vec![set(SHARE_DELIVERY_COUNT_LIMIT, "3")], false, &d);
        assert_eq!(replaced.map(|c| c.len()), Ok(1));
        let back = altered(
            &c,
            vec![AlterOp::Delete(CONSUMER_SESSION_TIMEOUT_MS.into())],
            true,
            &d,
        )
        .expect("valid");
        assert_eq!(d.number(&back, CONSUMER_SESSION_TIMEOUT_MS), 45_000);
        assert_eq!(d.number(&c, CONSUMER_SESSION_TIMEOUT_MS), 10_000);
    }

    #[test]
    fn a_group_sees_every_config_with_its_overrides_marked() {
        let d = defaults();
        let mut o = BTreeMap::new();
        o.insert(
            SHARE_RECORD_LOCK_DURATION_MS.to_string(),
            "15000".to_string(),
        );
        let e = d.entries(&o);
        assert_eq!(e.len(), GROUP_CONFIG_KEYS.len());
        let lock = e.iter().find(|e| e.name == SHARE_RECORD_LOCK_DURATION_MS);
        assert_eq!(
            lock.map(|e| (e.value.as_str(), e.overridden)),
            Some(("15000", true))
        );
        let reset = e.iter().find(|e| e.name == SHARE_AUTO_OFFSET_RESET);
        assert_eq!(
            reset.map(|e| (e.value.as_str(), e.overridden)),
            Some(("latest", false))
        );
    }
}
