//! One declared queue (`spec.queues[]`): a Kafka topic, its topic configs, and whether it is
//! consumed as a stream or as a work queue.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::default_one;

/// Topic config: how long a share consumer holds a delivered record before it is offered again.
pub const LOCK_DURATION_CONFIG: &str = "share.record.lock.duration.ms";
/// Topic config: deliveries of one record before it is archived (and dead-lettered).
pub const DELIVERY_LIMIT_CONFIG: &str = "share.delivery.count.limit";
/// Topic config: where a share group starts on the queue when it first consumes it.
pub const START_CONFIG: &str = "share.auto.offset.reset";
/// Topic config: where archived records go (the name of KIP-1191's group config).
pub const DEAD_LETTER_CONFIG: &str = "errors.deadletterqueue.topic.name";

/// One declared queue (a Kafka topic).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.delivery) || (has(self.type) && self.type == 'queue')",
        "message": "delivery settings apply only to a work queue: set type: queue, or remove delivery",
        "fieldPath": ".delivery"
    },
    {
        "rule": "!has(self.delivery) || !has(self.delivery.deadLetterQueue) || self.delivery.deadLetterQueue != self.name",
        "message": "a queue cannot be its own dead-letter queue: name another queue",
        "fieldPath": ".delivery.deadLetterQueue"
    }
]))]
pub struct Queue {
    /// Topic name: 1 to 249 characters of letters, digits, '.', '_' and '-'; not "." or "..";
    /// names starting with "__" are reserved for the broker.
    #[schemars(length(min = 1, max = 249))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.matches('^[a-zA-Z0-9._-]+$')", "message": "queue name may only contain letters, digits, '.', '_' and '-'"},
        {"rule": "self != '.' && self != '..'", "message": "queue name cannot be '.' or '..'"},
        {"rule": "!self.startsWith('__')", "message": "queue names starting with '__' are reserved for the broker; choose another name"}
    ]))]
    pub name: String,

    /// Number of partitions. May be raised, never lowered (Kafka cannot remove partitions).
    #[serde(default = "default_one")]
    #[schemars(range(max = 10000))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self >= 1", "message": "partitions must be at least 1"},
        {"rule": "self >= oldSelf", "message": "partitions cannot decrease (Kafka cannot remove partitions); set it to at least the current value"}
    ]))]
    pub partitions: i32,

    /// Copies of each partition, on distinct brokers; at most `spec.replicas`. Fixed after the
    /// queue is created. When unset the queue is created with the default replication factor
    /// (`config.defaultReplicationFactor`, or 3 with 3 or more replicas, else `replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 16))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self >= 1", "message": "replicationFactor must be at least 1"}
    ]))]
    pub replication_factor: Option<i32>,

    /// Retention time of this queue in milliseconds (`retention.ms`); -1 keeps records forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub retention_ms: Option<i64>,

    /// Retention size per partition in bytes (`retention.bytes`); -1 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub retention_bytes: Option<i64>,

    /// How the queue is consumed: `stream` (a replayable log read by consumer groups, each
    /// consumer owning whole partitions) or `queue` (a work queue read by share groups: any
    /// number of consumers on any number of partitions, each message acknowledged on its own,
    /// redelivered when its consumer fails or releases it, and moved aside after `delivery.limit`
    /// tries). Consumer groups can still read a `queue`, and share groups a `stream`; the type
    /// decides which settings apply.
    #[serde(default, rename = "type")]
    pub type_: QueueType,

    /// Work-queue delivery settings (only with `type: queue`); unset fields keep the brokers'
    /// defaults (30 s lock, 5 deliveries, no dead-letter queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,

    /// Other topic configs, e.g. {"max.message.bytes": "2097152", "sluice.fsync": "interval"}.
    /// Unknown keys are refused. retentionMs / retentionBytes win over the same key here.
    #[serde(default, skip_serializing_if = "QueueConfig::is_empty")]
    pub config: QueueConfig,
}

/// Declares `QueueConfig` from one table: each field is an optional string serialised under its
/// Kafka topic-config name, and `to_map` lists the same names, so the schema, the serde names
/// and the map sent to the brokers cannot disagree.
macro_rules! topic_configs {
    (
        $(#[$struct_attr:meta])*
        pub struct $name:ident {
            $( $(#[$attr:meta])* $field:ident: $key:literal, )+
        }
    ) => {
        $(#[$struct_attr])*
        pub struct $name {
            $(
                $(#[$attr])*
                #[serde(rename = $key, default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<String>,
            )+
        }

        impl $name {
            /// The set keys as a Kafka config map.
            pub fn to_map(&self) -> BTreeMap<String, String> {
                [$( ($key, &self.$field) ),+]
                    .into_iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
                    .collect()
            }
        }
    };
}

/// `share.auto.offset.reset` as the brokers parse it (`ShareStart::parse`): Java's
/// `Duration.parse` form without signs, so "by_duration:P" and "by_duration:PT" (no unit) are
/// refused by the API server rather than by every broker. RE2 has no look-ahead, so "at least
/// one unit after T" is spelled out as alternatives.
const SHARE_START_RULE: &str = concat!(
    "self in ['earliest', 'latest'] || self.matches('^by_duration:[Pp](",
    "[0-9]+[Dd]([Tt](",
    "[0-9]+[Hh]([0-9]+[Mm])?([0-9]+([.,][0-9]{1,9})?[Ss])?",
    "|[0-9]+[Mm]([0-9]+([.,][0-9]{1,9})?[Ss])?",
    "|[0-9]+([.,][0-9]{1,9})?[Ss]",
    "))?",
    "|[Tt](",
    "[0-9]+[Hh]([0-9]+[Mm])?([0-9]+([.,][0-9]{1,9})?[Ss])?",
    "|[0-9]+[Mm]([0-9]+([.,][0-9]{1,9})?[Ss])?",
    "|[0-9]+([.,][0-9]{1,9})?[Ss]",
    "))$')"
);

topic_configs! {
    /// Topic configs of one queue, with Kafka's names. Values are strings, as in Kafka.
    /// Modelled as named fields rather than a free map so the API server itself refuses unknown keys
    /// (and no CEL rule has to iterate over unbounded map keys).
    #[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
    pub struct QueueConfig {
        /// How long records are kept, in milliseconds; "-1" keeps them forever.
        #[schemars(length(max = 32))]
        retention_ms: "retention.ms",
        /// Maximum bytes kept per partition; "-1" means no limit.
        #[schemars(length(max = 32))]
        retention_bytes: "retention.bytes",
        /// Size of one segment file in bytes.
        #[schemars(length(max = 32))]
        segment_bytes: "segment.bytes",
        /// Age after which a segment is rolled, in milliseconds.
        #[schemars(length(max = 32))]
        segment_ms: "segment.ms",
        /// Largest record batch accepted, in bytes.
        #[schemars(length(max = 32))]
        max_message_bytes: "max.message.bytes",
        /// Minimum in-sync replicas for acks=all.
        #[schemars(length(max = 32))]
        min_insync_replicas: "min.insync.replicas",
        /// CreateTime or LogAppendTime.
        #[schemars(extend("enum" = ["CreateTime", "LogAppendTime"]))]
        message_timestamp_type: "message.timestamp.type",
        /// "delete" (retention by time and size), "compact" (keep the latest record of each
        /// key: a table; records need a key) or both.
        #[schemars(extend("enum" = ["delete", "compact", "compact,delete", "delete,compact"]))]
        cleanup_policy: "cleanup.policy",
        /// With "compact": how long a tombstone (a null value) is kept once it is the latest
        /// record of its key, in milliseconds.
        #[schemars(length(max = 32))]
        delete_retention_ms: "delete.retention.ms",
        /// With "compact": the share of the closed segments not yet compacted at which
        /// compaction starts, from "0" to "1".
        #[schemars(length(max = 32))]
        min_cleanable_dirty_ratio: "min.cleanable.dirty.ratio",
        /// With "compact": records younger than this (milliseconds) are never compacted away.
        #[schemars(length(max = 32))]
        min_compaction_lag_ms: "min.compaction.lag.ms",
        /// Bytes between offset index entries.
        #[schemars(length(max = 32))]
        index_interval_bytes: "index.interval.bytes",
        /// Per-queue fsync override: "always" or "interval".
        #[schemars(extend("enum" = ["always", "interval"]))]
        sluice_fsync: "sluice.fsync",
        /// Where a share group starts reading this queue when it first consumes it: "earliest"
        /// (every message still kept; the default of a `type: queue`), "latest" (only
        /// messages sent after it joined; Kafka's default) or "by_duration:<ISO-8601
        /// duration>" (KIP-1106: from the first message at most that old, e.g.
        /// "by_duration:PT1H" or "by_duration:P7D"; the log end when every message is older).
        #[schemars(length(max = 64), extend("x-kubernetes-validations" = [{
            "rule": SHARE_START_RULE,
            "message": "share.auto.offset.reset must be earliest, latest or by_duration:<ISO-8601 duration> (days, then T and hours, minutes, seconds, each at most once and in that order), e.g. by_duration:PT1H, by_duration:P7D or by_duration:P1DT12H"
        }]))]
        share_auto_offset_reset: "share.auto.offset.reset",
    }
}

impl QueueConfig {
    /// No key set.
    pub fn is_empty(&self) -> bool {
        self.to_map().is_empty()
    }
}

impl Queue {
    /// Every topic config this queue declares, with `retentionMs` / `retentionBytes` folded in.
    pub fn desired_configs(&self) -> BTreeMap<String, String> {
        let mut configs = self.config.to_map();
        if let Some(ms) = self.retention_ms {
            configs.insert("retention.ms".to_string(), ms.to_string());
        }
        if let Some(bytes) = self.retention_bytes {
            configs.insert("retention.bytes".to_string(), bytes.to_string());
        }
        if self.type_ == QueueType::Queue {
            // A work queue's messages sent before its first consumer joined are work too.
            configs
                .entry(START_CONFIG.to_string())
                .or_insert_with(|| "earliest".to_string());
        }
        if let Some(d) = &self.delivery {
            if let Some(ms) = d.lock_duration_ms {
                configs.insert(LOCK_DURATION_CONFIG.to_string(), ms.to_string());
            }
            if let Some(limit) = d.limit {
                configs.insert(DELIVERY_LIMIT_CONFIG.to_string(), limit.to_string());
            }
            if let Some(dlq) = &d.dead_letter_queue {
                configs.insert(DEAD_LETTER_CONFIG.to_string(), dlq.clone());
            }
        }
        configs
    }
}

/// How a queue is consumed.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum QueueType {
    /// A replayable log read by consumer groups (Kafka's topics as they are).
    #[default]
    Stream,
    /// A work queue read by share groups (KIP-932): per-message acknowledgement and redelivery.
    Queue,
}

/// Delivery settings of a work queue, applied as topic configs on the queue's topic.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Milliseconds a consumer holds a delivered message before it is offered to another
    /// consumer (`share.record.lock.duration.ms`), 1000 to 3600000. A consumer can renew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000, max = 3600000))]
    pub lock_duration_ms: Option<i64>,

    /// Deliveries of one message before it is given up on (`share.delivery.count.limit`), 2 to
    /// 10: released, rejected or timed-out deliveries all count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 10))]
    pub limit: Option<i32>,

    /// Queue that receives messages given up on (rejected, or over the delivery limit), with
    /// headers naming the source queue, partition, offset, share group, reason and delivery
    /// count. Declare it in `queues` too (the operator reports an undeclared one on status: the
    /// API server cannot check it, as a rule comparing every queue with every other one exceeds
    /// its cost budget at 512 queues); without a dead-letter queue such messages are only
    /// archived (skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub dead_letter_queue: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_settings_become_the_share_topic_configs() {
        let q: Queue = serde_yaml::from_str(
            "{name: jobs, type: queue, retentionMs: 1000, \
             delivery: {lockDurationMs: 60000, limit: 3, deadLetterQueue: jobs-dlq}}",
        )
        .expect("parses");
        assert_eq!(q.type_, QueueType::Queue);
        let configs = q.desired_configs();
        assert_eq!(configs[LOCK_DURATION_CONFIG], "60000");
        assert_eq!(configs[DELIVERY_LIMIT_CONFIG], "3");
        assert_eq!(configs[DEAD_LETTER_CONFIG], "jobs-dlq");
        assert_eq!(configs["retention.ms"], "1000");
        assert_eq!(
            configs[START_CONFIG], "earliest",
            "a work queue starts at the log start"
        );
        assert_eq!(configs.len(), 5);
        let latest: Queue = serde_yaml::from_str(
            "{name: jobs, type: queue, config: {share.auto.offset.reset: latest}}",
        )
        .expect("parses");
        assert_eq!(latest.desired_configs()[START_CONFIG], "latest");
    }

    #[test]
    fn a_queue_is_a_stream_unless_it_says_otherwise() {
        let q: Queue = serde_yaml::from_str("{name: orders}").expect("parses");
        assert_eq!(q.type_, QueueType::Stream);
        assert!(q.desired_configs().is_empty());
    }
}
