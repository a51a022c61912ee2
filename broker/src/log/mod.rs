//! The storage engine: one [`PartitionLog`] per partition directory.
//!
//! THIS FILE IS THE INTERFACE CONTRACT between the storage engine and the rest of the broker.
//! The body below is a temporary in-memory stand-in so the server can be built and tested
//! while the on-disk engine (segments, indexes, recovery, retention, group commit) is written
//! behind the same signatures. Callers must only rely on what the doc comments promise.

mod manager;

pub use manager::{
    partition_dir, validate_topic_config, validate_topic_configs, validate_topic_name, AlterOp,
    ConfigEntry, ConfigSource, LogDefaults, LogManager, TopicMeta, MAX_PARTITIONS,
    TOPIC_CONFIG_KEYS,
};

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

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
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    #[error("offset {requested} is outside the log range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: i64,
        start: i64,
        end: i64,
    },
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
}

impl LogError {
    /// The Kafka protocol error code that reports this error to a client.
    pub fn kafka_code(&self) -> i16 {
        match self {
            LogError::Io { .. } => 56,                   // KAFKA_STORAGE_ERROR
            LogError::CorruptBatch { .. } => 2,          // CORRUPT_MESSAGE
            LogError::MessageTooLarge { .. } => 10,      // MESSAGE_TOO_LARGE
            LogError::OffsetOutOfRange { .. } => 1,      // OFFSET_OUT_OF_RANGE
            LogError::OutOfOrderSequence { .. } => 45,   // OUT_OF_ORDER_SEQUENCE_NUMBER
            LogError::InvalidProducerEpoch { .. } => 47, // INVALID_PRODUCER_EPOCH
            LogError::TopicAlreadyExists { .. } => 36,   // TOPIC_ALREADY_EXISTS
            LogError::UnknownTopic { .. } => 3,          // UNKNOWN_TOPIC_OR_PARTITION
            LogError::InvalidTopicName { .. } => 17,     // INVALID_TOPIC_EXCEPTION
            LogError::InvalidConfig { .. } => 40,        // INVALID_CONFIG
            LogError::InvalidPartitions { .. } => 37,    // INVALID_PARTITIONS
            LogError::Metadata { .. } => 56,             // KAFKA_STORAGE_ERROR
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

/// The result of [`PartitionLog::read`].
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    /// Whole record batches starting with the one that contains the requested offset; empty
    /// when the offset is the log end. Never ends in a partial batch, except that the first
    /// batch is returned whole even if it alone is larger than `max_bytes` (Kafka's rule, so
    /// consumers always make progress).
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// One partition's log.
///
/// All methods take `&self`; the type is meant to be shared behind an `Arc`.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: Mutex<LogConfig>,
    state: Mutex<MemState>,
    end_tx: watch::Sender<i64>,
}

#[derive(Debug, Default)]
struct MemState {
    batches: Vec<(i64, Bytes)>,
    next_offset: i64,
}

impl PartitionLog {
    /// Opens (creating if needed) the partition directory `dir` and recovers it: a torn tail is
    /// truncated, damaged indexes rebuilt. Blocking: call from `spawn_blocking` at start-up.
    pub fn open(dir: PathBuf, config: LogConfig) -> Result<PartitionLog, LogError> {
        std::fs::create_dir_all(&dir).map_err(|source| LogError::Io {
            path: dir.clone(),
            source,
        })?;
        let (end_tx, _) = watch::channel(0);
        Ok(PartitionLog {
            dir,
            config: Mutex::new(config),
            state: Mutex::new(MemState::default()),
            end_tx,
        })
    }

    /// The partition directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Validates `records` (one or more v2 record batches exactly as the producer sent them:
    /// sizes, magic, CRC-32C, idempotent-producer sequence), assigns offsets by rewriting each
    /// batch's base offset, and appends them. Returns once the bytes are written to the file
    /// (page cache), not fsynced.
    pub fn append(&self, records: Bytes) -> Result<AppendOutcome, LogError> {
        let max = self
            .config
            .lock()
            .map(|c| c.max_message_bytes)
            .unwrap_or(u32::MAX);
        if records.len() > max as usize {
            return Err(LogError::MessageTooLarge {
                size: records.len(),
                max,
            });
        }
        if records.len() < 61 {
            return Err(LogError::CorruptBatch {
                reason: format!("{} bytes is shorter than a batch header", records.len()),
            });
        }
        let count = i32::from_be_bytes([records[57], records[58], records[59], records[60]]);
        let mut st = self.state.lock().map_err(|_| LogError::CorruptBatch {
            reason: "poisoned".into(),
        })?;
        let base = st.next_offset;
        let mut owned = records.to_vec();
        owned[0..8].copy_from_slice(&base.to_be_bytes());
        st.batches.push((base, Bytes::from(owned)));
        st.next_offset = base + i64::from(count.max(1));
        let end = st.next_offset;
        drop(st);
        self.end_tx.send_replace(end);
        Ok(AppendOutcome::Appended(AppendInfo {
            base_offset: base,
            last_offset: end - 1,
            log_append_time: -1,
            log_start_offset: 0,
        }))
    }

    /// Resolves once everything up to and including `offset` is fsynced (group commit: many
    /// waiters share one fsync). Under [`FsyncPolicy::Interval`] it resolves at once.
    pub async fn wait_durable(&self, _offset: i64) -> Result<(), LogError> {
        Ok(())
    }

    /// Reads whole batches from `offset` (see [`ReadOutcome`]). Only data below the high
    /// watermark is returned. `offset` outside `[log_start_offset, high_watermark]` is
    /// [`LogError::OffsetOutOfRange`].
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadOutcome, LogError> {
        let st = self.state.lock().map_err(|_| LogError::CorruptBatch {
            reason: "poisoned".into(),
        })?;
        if offset < 0 || offset > st.next_offset {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                start: 0,
                end: st.next_offset,
            });
        }
        let mut out = Vec::new();
        for (base, b) in &st.batches {
            let count = i32::from_be_bytes([b[57], b[58], b[59], b[60]]);
            if base + i64::from(count) <= offset {
                continue;
            }
            if !out.is_empty() && out.len() + b.len() > max_bytes {
                break;
            }
            out.extend_from_slice(b);
        }
        Ok(ReadOutcome {
            records: Bytes::from(out),
            high_watermark: st.next_offset,
            log_start_offset: 0,
        })
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        0
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.state.lock().map(|s| s.next_offset).unwrap_or(0)
    }

    /// Offset up to which consumers may read: with `fsync: always` the durable end of the log,
    /// otherwise the log end offset.
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }

    /// A receiver that changes whenever the high watermark moves (fetch long-poll waits on it).
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.end_tx.subscribe()
    }

    /// The earliest offset whose timestamp is `>= timestamp_ms`, with that timestamp, or `None`
    /// when every record is older (ListOffsets by timestamp).
    pub fn offset_for_timestamp(&self, _timestamp_ms: i64) -> Result<Option<(i64, i64)>, LogError> {
        Ok(None)
    }

    /// Deletes closed segments that retention (time, then size) no longer keeps. Returns the
    /// number of segments deleted.
    pub fn enforce_retention(&self, _now_ms: i64) -> Result<usize, LogError> {
        Ok(0)
    }

    /// Replaces the config (topic config change); takes effect for the next append / roll.
    pub fn set_config(&self, config: LogConfig) {
        if let Ok(mut c) = self.config.lock() {
            *c = config;
        }
    }

    /// The current config.
    pub fn config(&self) -> LogConfig {
        self.config
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Removes the partition's directory while other handles may still exist (DeleteTopics
    /// through the [`LogManager`]).
    pub fn remove_files(&self) -> Result<(), LogError> {
        std::fs::remove_dir_all(&self.dir).map_err(|source| LogError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    /// Bytes on disk (all segments and indexes).
    pub fn size_bytes(&self) -> u64 {
        self.state
            .lock()
            .map(|s| s.batches.iter().map(|(_, b)| b.len() as u64).sum())
            .unwrap_or(0)
    }

    /// Fsyncs everything written so far (shutdown, interval ticker).
    pub fn flush(&self) -> Result<(), LogError> {
        Ok(())
    }

    /// Closes the log and removes its directory (DeleteTopics).
    pub fn delete(self) -> Result<(), LogError> {
        std::fs::remove_dir_all(&self.dir).map_err(|source| LogError::Io {
            path: self.dir.clone(),
            source,
        })
    }
}
