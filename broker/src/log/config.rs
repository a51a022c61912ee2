//! Topic-config rules: which topic configs exist and what values they accept, the broker-wide
//! defaults ([`LogDefaults`]), the effective [`LogConfig`] of a topic, and the entries
//! DescribeConfigs reports for a topic or the broker.
//!
//! Pure: no files, no locks. Imports only the storage engine's types from `mod.rs`; the
//! catalog (`catalog.rs`) and the handlers call it.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{CleanupPolicy, FsyncPolicy, LogConfig, LogError, TimestampType};

/// Most partitions one topic may have (bounds the directories one request can create).
pub const MAX_PARTITIONS: i32 = 10_000;
/// Longest topic name Kafka accepts.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// Broker-wide defaults (from the command-line flags).
#[derive(Debug, Clone, PartialEq)]
pub struct LogDefaults {
    /// The log config of a topic without overrides.
    pub log: LogConfig,
    /// `--default-partitions`: partitions of an auto-created topic or a CreateTopics with -1.
    pub default_partitions: i32,
    /// `--default-replication-factor`.
    pub default_replication_factor: i16,
    /// `--min-insync-replicas`.
    pub min_insync_replicas: i32,
    /// `--fsync-interval-ms`: the interval used when a topic overrides `sluice.fsync=interval`
    /// (and by the background flusher).
    pub fsync_interval: Duration,
    /// `--auto-create-topics` (reported in the broker configs).
    pub auto_create_topics: bool,
    /// How often the retention ticker runs.
    pub retention_check_interval: Duration,
    /// `--compaction-key-map-entries`: most distinct keys one compaction remembers.
    pub compaction_key_map_entries: usize,
    /// `--share-record-lock-duration-ms`: default `share.record.lock.duration.ms`.
    pub share_record_lock_ms: i64,
    /// `--share-delivery-count-limit`: default `share.delivery.count.limit`.
    pub share_delivery_count_limit: i16,
}

impl Default for LogDefaults {
    fn default() -> Self {
        Self {
            log: LogConfig::default(),
            default_partitions: 1,
            default_replication_factor: 1,
            min_insync_replicas: 1,
            fsync_interval: Duration::from_millis(1000),
            auto_create_topics: true,
            retention_check_interval: Duration::from_secs(10),
            compaction_key_map_entries: super::partition::DEFAULT_KEY_MAP_ENTRIES,
            share_record_lock_ms: 30_000,
            share_delivery_count_limit: 5,
        }
    }
}

/// Where a described config value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    Default,
    TopicOverride,
}

/// One config as reported by DescribeConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    /// Where the value could come from, most specific first (DescribeConfigs' synonyms): the
    /// first is where it does come from; after a topic's override, the broker-wide default
    /// the topic falls back to without it.
    pub synonyms: Vec<ConfigSynonym>,
}

/// One place a config's value can come from, by the name it has there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

/// The broker-wide config a topic config falls back to, by Kafka's name for it
/// (`retention.ms` falls back to `log.retention.ms`); a key with no broker-wide name in Kafka
/// (Sluice's own, the share-group keys) is its own.
pub fn broker_synonym(key: &str) -> &str {
    match key {
        "cleanup.policy" => "log.cleanup.policy",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        "index.interval.bytes" => "log.index.interval.bytes",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.after.max.ms" => "log.message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms" => "log.message.timestamp.before.max.ms",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "preallocate" => "log.preallocate",
        "retention.bytes" => "log.retention.bytes",
        "retention.ms" => "log.retention.ms",
        "segment.bytes" => "log.segment.bytes",
        "segment.index.bytes" => "log.index.size.max.bytes",
        "segment.jitter.ms" => "log.roll.jitter.ms",
        "segment.ms" => "log.roll.ms",
        other => other,
    }
}

/// One change of AlterConfigs / IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterOp {
    Set(String, String),
    Delete(String),
}

/// Kafka's replication throttles (topic and broker level). Sluice does not throttle
/// replication; `kafka-reassign-partitions --verify` clears them after every reassignment, so
/// deleting one is accepted (there is nothing to clear) and setting one is refused.
pub const REPLICATION_THROTTLE_CONFIGS: &[&str] = &[
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

/// Topic config keys a client may set, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "delete.retention.ms",
    DEAD_LETTER_TOPIC,
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    SHARE_AUTO_OFFSET_RESET,
    SHARE_DELIVERY_COUNT_LIMIT,
    SHARE_RECORD_LOCK_DURATION_MS,
    "sluice.fsync",
    "unclean.leader.election.enable",
];

/// How long a share-group member holds a record it acquired (per queue; Kafka has it per
/// group as `share.record.lock.duration.ms`, Sluice's queues set it on their topic).
pub const SHARE_RECORD_LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
/// Where a share group's partition of this topic starts when the group first gets it:
/// `latest` (the log end, Kafka's default) or `earliest` (the log start: a work queue's
/// messages sent before any consumer joined are delivered too). Kafka has it per group.
pub const SHARE_AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
/// Deliveries of a record to share-group members before it is archived.
pub const SHARE_DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";
/// The topic a queue's archived (rejected or over-the-limit) records are written to; empty
/// for none. The name Kafka Connect uses for its dead-letter queue.
pub const DEAD_LETTER_TOPIC: &str = "errors.deadletterqueue.topic.name";

/// Topic configs that Kafka clients expect to see described but that this broker does not let
/// anyone change: (name, fixed value).
const READ_ONLY_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("compression.type", "producer"),
    ("file.delete.delay.ms", "60000"),
    ("max.compaction.lag.ms", "9223372036854775807"),
    ("message.timestamp.after.max.ms", "9223372036854775807"),
    ("message.timestamp.before.max.ms", "9223372036854775807"),
    ("preallocate", "false"),
    ("segment.index.bytes", "10485760"),
    ("segment.jitter.ms", "0"),
];

/// Checks a topic name against Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let bad = |reason: &str| {
        Err(LogError::InvalidTopicName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("topic name is empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad("topic name is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return bad("topic name cannot be \".\" or \"..\"");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!(
            "character {c:?} is not allowed (only ASCII letters, digits, '.', '_' and '-')"
        ));
    }
    Ok(())
}

fn invalid(key: &str, reason: impl Into<String>) -> LogError {
    LogError::InvalidConfig {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn parse_i64_min(key: &str, value: &str, min: i64) -> Result<i64, LogError> {
    let v: i64 = value.trim().parse().map_err(|_| {
        invalid(
            key,
            format!("{value:?} is not an integer (allowed: >= {min})"),
        )
    })?;
    if v < min {
        return Err(invalid(key, format!("{v} is below the minimum {min}")));
    }
    Ok(v)
}

fn parse_i64_in(key: &str, value: &str, min: i64, max: i64) -> Result<i64, LogError> {
    let v = parse_i64_min(key, value, min)?;
    if v > max {
        return Err(invalid(key, format!("{v} is above the maximum {max}")));
    }
    Ok(v)
}

fn parse_i32_range(key: &str, value: &str, min: i32) -> Result<i32, LogError> {
    let v: i32 = value.trim().parse().map_err(|_| {
        invalid(
            key,
            format!(
                "{value:?} is not a 32-bit integer (allowed: {min}..={})",
                i32::MAX
            ),
        )
    })?;
    if v < min {
        return Err(invalid(key, format!("{v} is below the minimum {min}")));
    }
    Ok(v)
}

/// Validates one topic config key and value (the keys of [`TOPIC_CONFIG_KEYS`]).
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), LogError> {
    match key {
        "retention.ms" | "retention.bytes" => parse_i64_min(key, value, -1).map(drop),
        "segment.ms" => parse_i64_min(key, value, 1).map(drop),
        "segment.bytes" => parse_i32_range(key, value, 14).map(drop),
        "max.message.bytes" | "index.interval.bytes" => parse_i32_range(key, value, 0).map(drop),
        "min.insync.replicas" => parse_i32_range(key, value, 1).map(drop),
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(invalid(
                key,
                format!("{value:?} is not allowed (allowed: CreateTime, LogAppendTime)"),
            )),
        },
        "cleanup.policy" => match CleanupPolicy::parse(value) {
            Some(_) => Ok(()),
            None => Err(invalid(
                key,
                format!("{value:?} is not allowed (allowed: delete, compact, compact,delete)"),
            )),
        },
        "delete.retention.ms" | "min.compaction.lag.ms" => parse_i64_min(key, value, 0).map(drop),
        "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
            _ => Err(invalid(
                key,
                format!("{value:?} is not a number from 0 to 1"),
            )),
        },
        "unclean.leader.election.enable" => match value {
            "true" | "false" => Ok(()),
            _ => Err(invalid(
                key,
                format!("{value:?} is not allowed (allowed: true, false)"),
            )),
        },
        k if REPLICATION_THROTTLE_CONFIGS.contains(&k) => Err(invalid(
            key,
            "replication throttles are not supported: reassignments copy at full speed \
             (run kafka-reassign-partitions without --throttle)",
        )),
        SHARE_RECORD_LOCK_DURATION_MS => parse_i64_in(key, value, 1_000, 3_600_000).map(drop),
        SHARE_DELIVERY_COUNT_LIMIT => parse_i64_in(key, value, 2, 10).map(drop),
        SHARE_AUTO_OFFSET_RESET => ShareStart::parse(value)
            .map(drop)
            .map_err(|why| invalid(key, why)),
        DEAD_LETTER_TOPIC if value.is_empty() => Ok(()),
        DEAD_LETTER_TOPIC => validate_topic_name(value).map_err(|e| invalid(key, e.to_string())),
        "sluice.fsync" => match value {
            "always" | "interval" => Ok(()),
            _ => Err(invalid(
                key,
                format!("{value:?} is not allowed (allowed: always, interval)"),
            )),
        },
        _ => match READ_ONLY_TOPIC_CONFIGS.iter().find(|(k, _)| *k == key) {
            // Tools often set a fixed config to its only value (compression.type=producer).
            Some((_, fixed)) if *fixed == value => Ok(()),
            Some((_, fixed)) => Err(invalid(
                key,
                format!(
                    "{value:?} is not allowed: this config is fixed to {fixed:?} on this broker"
                ),
            )),
            None => Err(invalid(
                key,
                format!(
                    "unknown topic config (allowed: {})",
                    TOPIC_CONFIG_KEYS.join(", ")
                ),
            )),
        },
    }
}

/// Validates every override of a topic.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), LogError> {
    configs
        .iter()
        .try_for_each(|(k, v)| validate_topic_config(k, v))
}

/// Checks a partition count of CreateTopics / CreatePartitions (`1..=MAX_PARTITIONS`).
pub fn check_partition_count(topic: &str, partitions: i32) -> Result<(), LogError> {
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(LogError::InvalidPartitions {
            topic: topic.to_string(),
            reason: format!("{partitions} partitions requested (allowed: 1..={MAX_PARTITIONS})"),
        });
    }
    Ok(())
}

/// A topic's overrides after AlterConfigs (`incremental == false`: the `Set` ops replace every
/// override) or IncrementalAlterConfigs, each value validated.
pub fn altered_configs(
    current: &BTreeMap<String, String>,
    ops: Vec<AlterOp>,
    incremental: bool,
) -> Result<BTreeMap<String, String>, LogError> {
    let mut configs = if incremental {
        current.clone()
    } else {
        BTreeMap::new()
    };
    for op in ops {
        match op {
            AlterOp::Set(k, v) => {
                validate_topic_config(&k, &v)?;
                configs.insert(k, v);
            }
            AlterOp::Delete(k) => {
                let known = TOPIC_CONFIG_KEYS.contains(&k.as_str())
                    || READ_ONLY_TOPIC_CONFIGS.iter().any(|(r, _)| *r == k)
                    || REPLICATION_THROTTLE_CONFIGS.contains(&k.as_str());
                if !known {
                    validate_topic_config(&k, "")?;
                }
                configs.remove(&k);
            }
        }
    }
    Ok(configs)
}

fn fsync_name(p: FsyncPolicy) -> &'static str {
    match p {
        FsyncPolicy::Always => "always",
        FsyncPolicy::Interval(_) => "interval",
    }
}

fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

impl LogDefaults {
    /// The effective [`LogConfig`] of a topic with these overrides (already validated; an
    /// unparsable value falls back to the default).
    pub fn effective(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let mut c = self.log.clone();
        for (k, v) in overrides {
            let v = v.trim();
            match k.as_str() {
                "retention.ms" => c.retention_ms = v.parse().unwrap_or(c.retention_ms),
                "retention.bytes" => c.retention_bytes = v.parse().unwrap_or(c.retention_bytes),
                "segment.ms" => c.segment_ms = v.parse().unwrap_or(c.segment_ms),
                "cleanup.policy" => c.cleanup = CleanupPolicy::parse(v).unwrap_or(c.cleanup),
                "delete.retention.ms" => {
                    c.delete_retention_ms = v.parse().unwrap_or(c.delete_retention_ms)
                }
                "min.cleanable.dirty.ratio" => {
                    c.min_cleanable_dirty_ratio = v.parse().unwrap_or(c.min_cleanable_dirty_ratio)
                }
                "min.compaction.lag.ms" => {
                    c.min_compaction_lag_ms = v.parse().unwrap_or(c.min_compaction_lag_ms)
                }
                "segment.bytes" => c.segment_bytes = v.parse().unwrap_or(c.segment_bytes),
                "max.message.bytes" => {
                    c.max_message_bytes = v.parse().unwrap_or(c.max_message_bytes)
                }
                "index.interval.bytes" => {
                    c.index_interval_bytes = v.parse().unwrap_or(c.index_interval_bytes)
                }
                "message.timestamp.type" => {
                    c.timestamp_type = match v {
                        "LogAppendTime" => TimestampType::LogAppendTime,
                        _ => TimestampType::CreateTime,
                    }
                }
                "sluice.fsync" => {
                    c.fsync = match v {
                        "interval" => FsyncPolicy::Interval(self.fsync_interval),
                        _ => FsyncPolicy::Always,
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// Default values of the settable topic configs, as DescribeConfigs reports them.
    fn topic_default(&self, key: &str) -> String {
        let c = &self.log;
        match key {
            "cleanup.policy" => "delete".into(),
            "delete.retention.ms" => c.delete_retention_ms.to_string(),
            "min.cleanable.dirty.ratio" => c.min_cleanable_dirty_ratio.to_string(),
            "min.compaction.lag.ms" => c.min_compaction_lag_ms.to_string(),
            "index.interval.bytes" => c.index_interval_bytes.to_string(),
            "max.message.bytes" => c.max_message_bytes.to_string(),
            "message.timestamp.type" => timestamp_type_name(c.timestamp_type).into(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "retention.bytes" => c.retention_bytes.to_string(),
            "retention.ms" => c.retention_ms.to_string(),
            "segment.bytes" => c.segment_bytes.to_string(),
            "segment.ms" => c.segment_ms.to_string(),
            "sluice.fsync" => fsync_name(c.fsync).into(),
            "unclean.leader.election.enable" => "false".into(),
            SHARE_RECORD_LOCK_DURATION_MS => self.share_record_lock_ms.to_string(),
            SHARE_DELIVERY_COUNT_LIMIT => self.share_delivery_count_limit.to_string(),
            SHARE_AUTO_OFFSET_RESET => "latest".into(),
            _ => String::new(),
        }
    }

    /// Every config of a topic with these overrides (DescribeConfigs), sorted by name: the
    /// settable ones with their source, the fixed ones read-only.
    pub fn describe_topic(&self, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        let effective = self.effective(overrides);
        let mut out: Vec<ConfigEntry> = TOPIC_CONFIG_KEYS
            .iter()
            .map(|k| {
                let default = topic_default_entry(k, self.topic_default(k), false);
                match overrides.get(*k) {
                    Some(v) => {
                        let mut e = entry(k, v.clone(), ConfigSource::TopicOverride, false);
                        e.synonyms.extend(default.synonyms);
                        e
                    }
                    None => default,
                }
            })
            .collect();
        out.extend(
            READ_ONLY_TOPIC_CONFIGS
                .iter()
                .map(|(k, v)| topic_default_entry(k, v.to_string(), true)),
        );
        // Kafka's own flush settings, derived from the fsync policy so tools show the truth.
        let (flush_messages, flush_ms) = match effective.fsync {
            FsyncPolicy::Always => ("1".to_string(), "0".to_string()),
            FsyncPolicy::Interval(d) => (i64::MAX.to_string(), d.as_millis().to_string()),
        };
        out.push(topic_default_entry("flush.messages", flush_messages, true));
        out.push(topic_default_entry("flush.ms", flush_ms, true));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Broker-level configs (DescribeConfigs on the BROKER resource), sorted by name. All come
    /// from the flags and none can be altered, so each is a read-only default.
    pub fn describe_broker(&self) -> Vec<ConfigEntry> {
        let c = &self.log;
        let values: [(&str, String); 15] = [
            (
                "auto.create.topics.enable",
                self.auto_create_topics.to_string(),
            ),
            ("compression.type", "producer".into()),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
            ),
            ("log.cleanup.policy", "delete".into()),
            (
                "log.index.interval.bytes",
                c.index_interval_bytes.to_string(),
            ),
            (
                "log.message.timestamp.type",
                timestamp_type_name(c.timestamp_type).into(),
            ),
            ("log.retention.bytes", c.retention_bytes.to_string()),
            ("log.retention.ms", c.retention_ms.to_string()),
            ("log.roll.ms", c.segment_ms.to_string()),
            ("log.segment.bytes", c.segment_bytes.to_string()),
            ("message.max.bytes", c.max_message_bytes.to_string()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            ("num.partitions", self.default_partitions.to_string()),
            ("sluice.fsync", fsync_name(c.fsync).into()),
            (
                "sluice.fsync.interval.ms",
                self.fsync_interval.as_millis().to_string(),
            ),
        ];
        let mut out: Vec<ConfigEntry> = values
            .into_iter()
            .map(|(name, value)| entry(name, value, ConfigSource::Default, true))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// A topic config at its default, which comes from the broker-wide config of Kafka's name for
/// it (its one synonym).
fn topic_default_entry(key: &str, value: String, read_only: bool) -> ConfigEntry {
    ConfigEntry {
        synonyms: vec![ConfigSynonym {
            name: broker_synonym(key).to_string(),
            value: value.clone(),
            source: ConfigSource::Default,
        }],
        ..entry(key, value, ConfigSource::Default, read_only)
    }
}

/// A config whose only synonym is itself.
fn entry(name: &str, value: String, source: ConfigSource, read_only: bool) -> ConfigEntry {
    ConfigEntry {
        name: name.to_string(),
        synonyms: vec![ConfigSynonym {
            name: name.to_string(),
            value: value.clone(),
            source,
        }],
        value: Some(value),
        source,
        read_only,
        sensitive: false,
    }
}

/// Where a share group starts a partition it reads for the first time
/// (`share.auto.offset.reset`, as a topic config here and a group config as in Kafka).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareStart {
    /// The log start: every record still kept.
    Earliest,
    /// The log end: only records produced from then on (Kafka's default).
    Latest,
    /// The first record whose timestamp is at most this long before the moment the partition
    /// is first read; the log end when every record is older (Kafka's `by_duration:`, KIP-1106).
    ByDuration(Duration),
}

impl ShareStart {
    pub const ALLOWED: &'static str =
        "earliest, latest, by_duration:<ISO-8601 duration such as PT30M, PT12H or P7D>";

    /// Parses a `share.auto.offset.reset` value; the error says what is allowed.
    pub fn parse(value: &str) -> Result<ShareStart, String> {
        let refused =
            |why: &str| format!("{value:?} is not allowed{why} (allowed: {})", Self::ALLOWED);
        match value {
            "earliest" => Ok(ShareStart::Earliest),
            "latest" => Ok(ShareStart::Latest),
            _ => match value.strip_prefix("by_duration:") {
                Some(d) => parse_iso_duration(d)
                    .map(ShareStart::ByDuration)
                    .map_err(|why| refused(&format!(": {why}"))),
                None => Err(refused("")),
            },
        }
    }
}

/// A non-negative ISO-8601 duration as Java's `Duration.parse` reads it, `PnDTnHnMn.nS` (days,
/// hours, minutes, seconds with up to nine decimals; letters in either case), without the
/// signs Java also takes: a negative start would lie in the future.
fn parse_iso_duration(text: &str) -> Result<Duration, String> {
    let upper = text.to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix('P') else {
        return Err(format!("{text:?} does not start with P"));
    };
    let (days, time) = match rest.split_once('T') {
        Some((_, "")) => return Err(format!("{text:?} has nothing after T")),
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    if days.is_empty() && time.is_none() {
        return Err(format!("{text:?} names no days, hours, minutes or seconds"));
    }
    let mut total = Duration::ZERO;
    let mut add = |number: &str, unit: char, secs_per: u64| -> Result<(), String> {
        let bad = || format!("{text:?}: {number:?} before {unit} is not a whole number");
        let (whole, frac) = match number.split_once(['.', ',']) {
            Some((w, f))
                if unit == 'S' && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (w, f)
            }
            Some(_) => return Err(bad()),
            None => (number, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = whole.parse().map_err(|_| bad())?;
        let nanos: u32 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
        let part = n
            .checked_mul(secs_per)
            .map(|secs| Duration::new(secs, nanos))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{text:?} is too long"))?;
        Ok(())
    };
    // Each unit at most once and in order: D, then after T: H, M, S.
    let mut parse_units = |mut s: &str, units: &[(char, u64)]| -> Result<(), String> {
        for (unit, secs_per) in units {
            if let Some(i) = s.find(*unit) {
                add(&s[..i], *unit, *secs_per)?;
                s = &s[i + 1..];
            }
        }
        if s.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{text:?}: {s:?} is not a number followed by D, H, M or S in that order"
            ))
        }
    };
    parse_units(days, &[('D', 86_400)])?;
    if let Some(t) = time {
        parse_units(t, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "orders.v1", "A_b-9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            assert!(
                matches!(
                    validate_topic_name(bad),
                    Err(LogError::InvalidTopicName { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_share_start_is_earliest_latest_or_a_duration_back() {
        let back = |v: &str| match ShareStart::parse(v) {
            Ok(ShareStart::ByDuration(d)) => Ok(d),
            Ok(other) => panic!("{v}: {other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(ShareStart::parse("earliest"), Ok(ShareStart::Earliest));
        assert_eq!(ShareStart::parse("latest"), Ok(ShareStart::Latest));
        assert_eq!(back("by_duration:PT1H"), Ok(Duration::from_secs(3_600)));
        assert_eq!(back("by_duration:P7D"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(
            back("by_duration:p1dt2h3m4.5s"),
            Ok(Duration::new(86_400 + 7_200 + 180 + 4, 500_000_000))
        );
        assert_eq!(back("by_duration:PT0S"), Ok(Duration::ZERO));
        assert_eq!(back("by_duration:PT90M"), Ok(Duration::from_secs(5_400)));
        for bad in [
            "Earliest",
            "by_duration:",
            "by_duration:1h",
            "by_duration:P",
            "by_duration:PT",
            "by_duration:PT-1H",
            "by_duration:-PT1H",
            "by_duration:PT1M1H",
            "by_duration:P1H",
            "by_duration:PT1.5H",
            "by_duration:PT1.1234567891S",
            "by_duration:P1Y",
            "by_duration:PT1HX",
            "by_duration:P99999999999999999999D",
        ] {
            let e = ShareStart::parse(bad).expect_err(bad);
            assert!(
                e.contains(bad) && e.contains("by_duration:<ISO-8601"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn config_errors_name_key_and_allowed_values() {
        for ok in ["compact", "delete", "compact,delete", "delete, compact"] {
            assert!(validate_topic_config("cleanup.policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", "compact,compact", "archive", "delete,"] {
            let e = validate_topic_config("cleanup.policy", bad).unwrap_err();
            assert!(
                e.to_string().contains("cleanup.policy")
                    && e.to_string().contains("compact,delete"),
                "{e}"
            );
        }
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "0.1").is_ok());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_topic_config("delete.retention.ms", "-1").is_err());
        let e = validate_topic_config("retention.ms", "-2").unwrap_err();
        assert!(e.to_string().contains("retention.ms"), "{e}");
        let e = validate_topic_config("message.timestamp.type", "Now").unwrap_err();
        assert!(e.to_string().contains("LogAppendTime"), "{e}");
        let e = validate_topic_config("foo.bar", "1").unwrap_err();
        assert_eq!(e.kafka_code(), 40);
        assert!(e.to_string().contains("foo.bar"));
        assert!(validate_topic_config("compression.type", "gzip").is_err());
        assert!(validate_topic_config("compression.type", "producer").is_ok());
        assert!(validate_topic_config("sluice.fsync", "interval").is_ok());
        assert!(validate_topic_config("segment.bytes", "13").is_err());
        assert!(validate_topic_config("segment.bytes", "1048576").is_ok());
    }

    #[test]
    fn broker_configs_report_the_flags_read_only() {
        let d = LogDefaults {
            default_partitions: 3,
            ..LogDefaults::default()
        };
        let c = d.describe_broker();
        assert_eq!(c.len(), 15);
        assert!(
            c.windows(2).all(|w| w[0].name < w[1].name),
            "sorted by name"
        );
        assert!(c
            .iter()
            .all(|e| e.read_only && e.source == ConfigSource::Default && !e.sensitive));
        let get = |k: &str| c.iter().find(|e| e.name == k).unwrap().value.clone();
        assert_eq!(get("num.partitions").as_deref(), Some("3"));
        assert_eq!(get("log.roll.ms"), Some(d.log.segment_ms.to_string()));
        assert_eq!(get("sluice.fsync").as_deref(), Some("always"));
        assert_eq!(get("sluice.fsync.interval.ms").as_deref(), Some("1000"));
    }
}
