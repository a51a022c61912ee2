//! Background upkeep of every partition: the retention ticker, the `fsync: interval` flusher,
//! and the final flush at shutdown. Uses only [`LogManager`]'s public view of its partitions.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{now_ms, FsyncPolicy, LogError, LogManager};

impl LogManager {
    /// Spawns the retention ticker and the fsync-interval flusher on the current tokio runtime;
    /// both stop when `shutdown` is cancelled. The blocking work runs on `spawn_blocking`.
    pub fn spawn_background(self: &Arc<Self>, shutdown: CancellationToken) {
        let retention = self.defaults().retention_check_interval;
        self.spawn_ticker(retention, shutdown.clone(), |m| {
            m.enforce_retention_all();
            m.compact_due();
        });
        let flush = self.defaults().fsync_interval;
        self.spawn_ticker(flush, shutdown, LogManager::flush_interval_partitions);
    }

    /// Every `period` until `stop`, runs `job` on a blocking thread; a run that overruns the
    /// period delays the next one rather than piling up.
    fn spawn_ticker(
        self: &Arc<Self>,
        period: Duration,
        stop: CancellationToken,
        job: fn(&LogManager),
    ) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let m = Arc::clone(&me);
                let _ = tokio::task::spawn_blocking(move || job(&m)).await;
            }
        });
    }

    /// Runs retention on every partition now (the ticker's body; also handy in tests).
    pub fn enforce_retention_all(&self) -> usize {
        let now = now_ms();
        let mut deleted = 0;
        for (topic, p, log) in self.all_partitions() {
            match log.enforce_retention(now) {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(topic = %topic, partition = p, error = %e, "retention failed")
                }
            }
        }
        deleted
    }

    /// Compacts every partition of a compacted topic that is due (the ticker's second job;
    /// see `partition/compaction.rs`). Internal topics (`__consumer_offsets`, the share-group
    /// state) are compacted by their own coordinators, never here. Returns how many
    /// partitions were compacted.
    pub fn compact_due(&self) -> usize {
        let mut n = 0;
        for (topic, p, log) in self.all_partitions() {
            if topic.starts_with("__") || !log.compaction_due() {
                continue;
            }
            match log.compact_bounded(now_ms(), self.defaults().compaction_key_map_entries) {
                Ok(c) => {
                    n += 1;
                    self.compacted_records
                        .fetch_add(c.records_removed, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, partition = p, error = %e, "compaction failed")
                }
            }
        }
        n
    }

    /// Records removed by compaction since this manager opened.
    pub fn compacted_records(&self) -> u64 {
        self.compacted_records
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn flush_interval_partitions(&self) {
        for (topic, p, log) in self.all_partitions() {
            // A failed partition makes nothing durable any more (and said so once).
            if matches!(log.config().fsync, FsyncPolicy::Interval(_)) && !log.has_failed() {
                if let Err(e) = log.flush() {
                    tracing::warn!(topic = %topic, partition = p, error = %e, "interval fsync failed");
                }
            }
        }
    }

    /// Fsyncs every partition and records its end for the next start (shutdown:
    /// `PartitionLog::flush_at_shutdown`). Tries all of them; returns the first error.
    pub fn flush_all(&self) -> Result<(), LogError> {
        let mut first = None;
        for (topic, p, log) in self.all_partitions() {
            if let Err(e) = log.flush_at_shutdown() {
                tracing::error!(topic = %topic, partition = p, error = %e, "fsync at shutdown failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
