//! The storage engine: one [`PartitionLog`] per partition directory.
//!
//! This module's public items are the interface contract between the storage engine and the
//! rest of the broker: [`LogManager`] (topics) and [`PartitionLog`] (one partition). Callers
//! must only rely on what the doc comments promise. Layout and write path: `README.md` here.
//!
//! - `batch`: v2 batch header parsing and validation (pure).
//! - `segment`: one segment's files, sparse indexes, the recovery scanner.
//! - `producer`: idempotent-producer sequence state.
//! - `partition/`: [`PartitionLog`]: open and recovery, append, group commit, reads, retention
//!   and DeleteRecords (one file each).
//! - `config`: topic-config rules: validation, [`LogDefaults`], effective values, DescribeConfigs
//!   entries (pure).
//! - `catalog`: [`LogManager`]: the topics, `topics.json`, reconcile with the cluster metadata.
//! - `upkeep`: [`LogManager`]'s background tasks: retention ticker, interval flusher, shutdown
//!   flush.
//! - `epochs`: the leader-epoch cache (which offset each leader epoch starts at), its file.
//! - `files`: file helpers (atomic replace, directory fsync).
//!
//! Imports go one way: `catalog` and `upkeep` use `partition` and `config`; `partition` uses
//! `segment`, `producer`, `batch`; everything may use `files` and this module's types. Nothing
//! here imports from the rest of the broker.

mod batch;
mod catalog;
mod compaction;
mod config;
mod epochs;
mod files;
#[doc(hidden)]
pub mod fuzzing;
mod partition;
mod producer;
mod region;
mod segment;
pub mod txn;
mod upkeep;

pub use batch::{all_records, record_at, StoredRecord};
pub(crate) use catalog::{map_bounded, OPEN_THREADS};
pub use catalog::{partition_dir, DesiredTopic, LogManager, Reconciled, TopicMeta};
pub use config::{
    altered_configs, check_partition_count, validate_topic_config, validate_topic_configs,
    validate_topic_name, AlterOp, ConfigEntry, ConfigSource, LogDefaults, ShareStart,
    DEAD_LETTER_TOPIC, MAX_PARTITIONS, REPLICATION_THROTTLE_CONFIGS, SHARE_AUTO_OFFSET_RESET,
    SHARE_DELIVERY_COUNT_LIMIT, SHARE_RECORD_LOCK_DURATION_MS, TOPIC_CONFIG_KEYS,
};
pub use epochs::{EpochCache, UNDEFINED_EPOCH, UNDEFINED_OFFSET};
pub use partition::{Compacted, PartitionLog, ProducerSummary, TopicWake, DEFAULT_KEY_MAP_ENTRIES};
pub use region::{FileRegion, Records, REGION_MAX, REGION_MIN};

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// When appended data is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `acks=all` is answered only after the data is fsynced. Concurrent waiters share one
    /// fsync (group commit).
    Always,
    /// Data is fsynced in the background every `Duration`; a crash of the machine (not just the
    /// process) can lose up to that window of acknowledged writes.
    Interval(Duration),
}

/// Whether the broker or the producer stamps record timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Per-partition settings (the topic's effective config).
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll the active segment once it reaches this many bytes (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll the active segment once its first batch is this old (`segment.ms`).
    pub segment_ms: i64,
    /// Delete closed segments whose newest record is older than this; -1 = forever (`retention.ms`).
    pub retention_ms: i64,
    /// Delete the oldest closed segments while the partition is larger than this; -1 = unbounded
    /// (`retention.bytes`).
    pub retention_bytes: i64,
    /// Largest record batch accepted (`max.message.bytes`).
    pub max_message_bytes: u32,
    /// Durability policy.
    pub fsync: FsyncPolicy,
    /// Add an index entry every this many bytes (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `cleanup.policy`.
    pub cleanup: CleanupPolicy,
    /// A compacted topic's tombstone (a record with a null value) is removed once it is the
    /// latest of its key and its batch is older than this (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// Compaction starts once the closed segments not yet compacted make up at least this
    /// share of the closed segments (`min.cleanable.dirty.ratio`).
    pub min_cleanable_dirty_ratio: f64,
    /// A record younger than this is never removed by compaction (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
}

/// `cleanup.policy`: which of retention (`delete`) and compaction (`compact`) shorten the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Closed segments past `retention.ms` / `retention.bytes` are deleted.
    pub delete: bool,
    /// Closed segments keep only the latest record of each key (see `compaction.rs`).
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };

    /// Kafka's spelling: `delete`, `compact` or both, comma-separated in either order.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for word in value.split(',').map(str::trim) {
            let seen = match word {
                "delete" => std::mem::replace(&mut p.delete, true),
                "compact" => std::mem::replace(&mut p.compact, true),
                _ => return None,
            };
            if seen {
                return None;
            }
        }
        Some(p)
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            fsync: FsyncPolicy::Always,
            index_interval_bytes: 4096,
            timestamp_type: TimestampType::CreateTime,
            cleanup: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
        }
    }
}

/// Errors of the storage engine. Each maps to one Kafka error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt record batch: {reason}")]
    CorruptBatch { reason: String },
    /// A well-formed record this topic does not take (a record without a key in a
    /// compacted topic).
    #[error("invalid record: {reason}")]
    InvalidRecord { reason: String },
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("offset {requested} is outside the log range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: i64,
        start: i64,
        end: i64,
    },
    #[error(
        "producer {producer_id}: this broker began leading the partition moments ago and has \
         no batch of this producer, whose batch starts at sequence {got}: its earlier batches \
         must come first"
    )]
    SequenceBeforeFirst { producer_id: i64, got: i32 },
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id}: epoch {got} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error("producer {producer_id}: a marker of coordinator epoch {got}, older than the epoch {current} of the coordinator that wrote its last one")]
    CoordinatorFenced {
        producer_id: i64,
        current: i32,
        got: i32,
    },
    #[error("topic {name:?} already exists")]
    TopicAlreadyExists { name: String },
    #[error("unknown topic {name:?}")]
    UnknownTopic { name: String },
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("invalid config {key}: {reason}")]
    InvalidConfig { key: String, reason: String },
    #[error("invalid partitions for topic {topic:?}: {reason}")]
    InvalidPartitions { topic: String, reason: String },
    #[error("metadata file {path} is unreadable: {reason}")]
    Metadata { path: PathBuf, reason: String },
    #[error("partition {path} was handed over to another broker")]
    Fenced { path: PathBuf },
}

impl LogError {
    /// The Kafka protocol error code that reports this error to a client.
    pub fn kafka_code(&self) -> i16 {
        match self {
            LogError::Io { .. } => 56,                   // KAFKA_STORAGE_ERROR
            LogError::CorruptBatch { .. } => 2,          // CORRUPT_MESSAGE
            LogError::InvalidRecord { .. } => 87,        // INVALID_RECORD
            LogError::MessageTooLarge { .. } => 10,      // MESSAGE_TOO_LARGE
            LogError::OffsetOutOfRange { .. } => 1,      // OFFSET_OUT_OF_RANGE
            LogError::OutOfOrderSequence { .. } => 45,   // OUT_OF_ORDER_SEQUENCE_NUMBER
            LogError::SequenceBeforeFirst { .. } => 45,  // OUT_OF_ORDER_SEQUENCE_NUMBER
            LogError::InvalidProducerEpoch { .. } => 47, // INVALID_PRODUCER_EPOCH
            LogError::CoordinatorFenced { .. } => 52,    // TRANSACTION_COORDINATOR_FENCED
            LogError::TopicAlreadyExists { .. } => 36,   // TOPIC_ALREADY_EXISTS
            LogError::UnknownTopic { .. } => 3,          // UNKNOWN_TOPIC_OR_PARTITION
            LogError::InvalidTopicName { .. } => 17,     // INVALID_TOPIC_EXCEPTION
            LogError::InvalidConfig { .. } => 40,        // INVALID_CONFIG
            LogError::InvalidPartitions { .. } => 37,    // INVALID_PARTITIONS
            LogError::Metadata { .. } => 56,             // KAFKA_STORAGE_ERROR
            LogError::Fenced { .. } => 6,                // NOT_LEADER_OR_FOLLOWER
        }
    }
}

/// What one append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record of the appended data.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The broker's timestamp if the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
}

/// The result of [`PartitionLog::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The data was written (not necessarily fsynced yet: see [`PartitionLog::wait_durable`]).
    Appended(AppendInfo),
    /// An idempotent producer re-sent a batch that is already in the log: nothing was written
    /// and the info is that of the original append.
    Duplicate(AppendInfo),
}

/// The (first, last) offsets of each whole batch in `records` as [`PartitionLog::read`] returns
/// them (share groups hand out offsets of what was read). Stops at anything that is not a
/// whole batch.
pub fn batch_spans(records: &[u8]) -> Vec<(i64, i64)> {
    let mut spans = Vec::new();
    let mut rest = records;
    while let Ok(h) = batch::parse_header(rest) {
        if h.size == 0 || h.size > rest.len() {
            break;
        }
        spans.push((h.base_offset, h.last_offset()));
        rest = &rest[h.size..];
    }
    spans
}

/// The result of [`PartitionLog::read`].
#[derive(Debug, Clone)]
pub struct ReadOutcome<R = Bytes> {
    /// Whole record batches starting with the one that contains the requested offset; empty
    /// when the offset is the log end. Never ends in a partial batch, except that the first
    /// batch is returned whole even if it alone is larger than `max_bytes` (Kafka's rule, so
    /// consumers always make progress). [`Records`] for a read that may be a file region.
    pub records: R,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Wall-clock milliseconds since the Unix epoch (record timestamps, segment age, retention).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
