//! Prometheus metrics (`/metrics`), all prefixed `sluice_`. Counters and histograms are updated
//! on the request path; per-partition sizes, consumer-group lag and the share groups' counts
//! are computed at scrape time from the log manager and the group and share coordinators.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::group::GroupCoordinator;
use crate::log::LogManager;
use crate::share::ShareCoordinator;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    api: String,
    error_code: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    quota: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    group: String,
    topic: String,
    partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShareGroupLabels {
    group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SharePartitionLabels {
    group: String,
    topic: String,
    partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MechanismLabels {
    mechanism: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The outcomes `sluice_transactions_total` counts.
pub const TXN_OUTCOMES: [&str; 3] = ["committed", "aborted", "timed_out"];

/// Every metric the broker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<ApiLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    bytes_in: Counter,
    bytes_out: Counter,
    produced_bytes: Counter,
    fetched_bytes: Counter,
    sendfile_bytes: Counter,
    produce_latency: Histogram,
    fetch_latency: Histogram,
    connections: Gauge,
    connections_total: Counter,
    connections_rejected: Counter,
    /// Response bytes built but not yet written to their clients, all connections together.
    queued_response_bytes: Gauge,
    /// Times a connection stopped reading requests until its client took its responses.
    response_backpressure: Counter,
    /// Milliseconds connections were held for being over a client quota, by quota.
    throttle_ms: Family<QuotaLabels, Counter>,
    protocol_errors: Family<ReasonLabels, Counter>,
    tls_handshake_failures: Family<ReasonLabels, Counter>,
    sasl_failures: Family<MechanismLabels, Counter>,
    sasl_successes: Family<MechanismLabels, Counter>,
    log_size: Family<PartitionLabels, Gauge>,
    log_start: Family<PartitionLabels, Gauge>,
    high_watermark: Family<PartitionLabels, Gauge>,
    group_lag: Family<LagLabels, Gauge>,
    fsyncs: Counter,
    compacted_records: Counter,
    fsync_seconds: Counter<f64, AtomicU64>,
    under_replicated: Gauge,
    offline: Gauge,
    fetch_sessions: Gauge,
    fetch_incremental: Counter,
    isr_shrinks: Counter,
    isr_expands: Counter,
    max_follower_lag: Gauge,
    replicated_bytes: Counter,
    fetch_lag: Family<PartitionLabels, Gauge>,
    /// The storage engine's totals at the previous scrape (its counters are the source).
    fsync_seen: Mutex<(u64, Duration)>,
    /// `crate::recovery`'s counts (the source), copied at scrape time under `recovery_sync`.
    recovery_actions: Family<KindLabels, Counter>,
    recovery_sync: Mutex<()>,
    /// Transactions this broker ended as their coordinator, by outcome.
    transactions: Family<KindLabels, Counter>,
    /// Transactions open now among those this broker coordinates.
    transactions_open: Gauge,
    share_in_flight: Family<ShareGroupLabels, Gauge>,
    /// The same per share partition, so a reader (the operator's queue status) can take each
    /// partition's count from its current leader only.
    share_partition_in_flight: Family<SharePartitionLabels, Gauge>,
    share_acknowledged: Family<ShareGroupLabels, Counter>,
    share_redelivered: Family<ShareGroupLabels, Counter>,
    share_dead_lettered: Family<ShareGroupLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~6.5 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sluice");
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            errors: Family::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            produced_bytes: Counter::default(),
            fetched_bytes: Counter::default(),
            sendfile_bytes: Counter::default(),
            produce_latency: latency_histogram(),
            fetch_latency: latency_histogram(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            connections_rejected: Counter::default(),
            queued_response_bytes: Gauge::default(),
            response_backpressure: Counter::default(),
            throttle_ms: Family::default(),
            protocol_errors: Family::default(),
            tls_handshake_failures: Family::default(),
            sasl_failures: Family::default(),
            sasl_successes: Family::default(),
            log_size: Family::default(),
            log_start: Family::default(),
            high_watermark: Family::default(),
            group_lag: Family::default(),
            share_in_flight: Family::default(),
            share_partition_in_flight: Family::default(),
            share_acknowledged: Family::default(),
            share_redelivered: Family::default(),
            share_dead_lettered: Family::default(),
            fsyncs: Counter::default(),
            compacted_records: Counter::default(),
            fsync_seconds: Counter::default(),
            under_replicated: Gauge::default(),
            offline: Gauge::default(),
            fetch_sessions: Gauge::default(),
            fetch_incremental: Counter::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            max_follower_lag: Gauge::default(),
            replicated_bytes: Counter::default(),
            fetch_lag: Family::default(),
            fsync_seen: Mutex::new((0, Duration::ZERO)),
            recovery_actions: Family::default(),
            recovery_sync: Mutex::new(()),
            transactions: Family::default(),
            transactions_open: Gauge::default(),
        };
        registry.register(
            "requests",
            "Kafka requests received, by API",
            m.requests.clone(),
        );
        registry.register(
            "request_errors",
            "Non-zero Kafka error codes returned (per partition / resource), by API and code",
            m.errors.clone(),
        );
        registry.register(
            "network_received_bytes",
            "Request bytes read from clients",
            m.bytes_in.clone(),
        );
        registry.register(
            "network_sent_bytes",
            "Response bytes written to clients",
            m.bytes_out.clone(),
        );
        registry.register(
            "produced_bytes",
            "Record batch bytes received in Produce requests",
            m.produced_bytes.clone(),
        );
        registry.register(
            "fetched_bytes",
            "Record batch bytes returned in Fetch responses",
            m.fetched_bytes.clone(),
        );
        registry.register(
            "fetch_sendfile_bytes",
            "Record batch bytes of Fetch responses sent with sendfile from the page cache (checked \
             earlier by this process); the rest of fetched_bytes was read, checked and written",
            m.sendfile_bytes.clone(),
        );
        registry.register(
            "produce_latency_seconds",
            "Produce request handling time, including the fsync wait for acks=all",
            m.produce_latency.clone(),
        );
        registry.register(
            "fetch_latency_seconds",
            "Fetch request handling time, including the long-poll wait",
            m.fetch_latency.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            m.connections_total.clone(),
        );
        registry.register(
            "connections_rejected",
            "Client connections refused because the connection limit was reached",
            m.connections_rejected.clone(),
        );
        registry.register(
            "queued_response_bytes",
            "Response bytes built but not yet written to their clients (bounded; see docs/reliability.md)",
            m.queued_response_bytes.clone(),
        );
        registry.register(
            "response_backpressure",
            "Times a connection stopped reading requests until its client took its responses",
            m.response_backpressure.clone(),
        );
        registry.register(
            "client_throttle_ms",
            "Milliseconds client connections were told to wait (and held) for exceeding a client quota, by quota",
            m.throttle_ms.clone(),
        );
        registry.register(
            "protocol_errors",
            "Connections closed for a protocol violation, by reason",
            m.protocol_errors.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out (the connection closed), by reason",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "sasl_authentication_failures",
            "SASL authentications that failed or did not finish (the connection closed), by mechanism",
            m.sasl_failures.clone(),
        );
        registry.register(
            "sasl_authentications",
            "Successful SASL authentications, by mechanism",
            m.sasl_successes.clone(),
        );
        registry.register(
            "log_size_bytes",
            "Bytes on disk per partition",
            m.log_size.clone(),
        );
        registry.register(
            "log_start_offset",
            "First offset still in the log, per partition",
            m.log_start.clone(),
        );
        registry.register(
            "high_watermark",
            "High watermark per partition",
            m.high_watermark.clone(),
        );
        registry.register(
            "consumer_group_lag",
            "High watermark minus the group's committed offset, per group and partition",
            m.group_lag.clone(),
        );
        registry.register(
            "share_group_records_in_flight",
            "Records acquired by a share group's members and not yet acknowledged",
            m.share_in_flight.clone(),
        );
        registry.register(
            "share_partition_records_in_flight",
            "Records of one share partition acquired by a share group's members and not yet \
             acknowledged, on the broker that holds the share partition (its leader)",
            m.share_partition_in_flight.clone(),
        );
        registry.register(
            "share_group_acknowledged_records",
            "Records a share group's members accepted",
            m.share_acknowledged.clone(),
        );
        registry.register(
            "share_group_redelivered_records",
            "Records delivered again to a share group (after a release, a lock time-out or a \
             member leaving)",
            m.share_redelivered.clone(),
        );
        registry.register(
            "share_group_dead_lettered_records",
            "Records a share group archived: rejected, or released at the delivery limit (copied \
             to the dead-letter topic when the queue names one)",
            m.share_dead_lettered.clone(),
        );
        registry.register(
            "log_fsyncs",
            "fsync / fdatasync calls made by the storage engine",
            m.fsyncs.clone(),
        );
        registry.register(
            "log_compacted_records",
            "Records removed by log compaction (topics with cleanup.policy=compact): older \
             records of a key, and tombstones past delete.retention.ms",
            m.compacted_records.clone(),
        );
        registry.register(
            "log_fsync_seconds",
            "Time spent in fsync / fdatasync (divide by sluice_log_fsyncs_total for the mean latency)",
            m.fsync_seconds.clone(),
        );
        registry.register(
            "fetch_sessions",
            "Incremental fetch sessions (KIP-227) the broker keeps (at most \
             --fetch-session-cache-slots)",
            m.fetch_sessions.clone(),
        );
        registry.register(
            "fetch_incremental",
            "Fetch requests answered in an incremental fetch session (naming only the \
             partitions that moved)",
            m.fetch_incremental.clone(),
        );
        registry.register(
            "replica_under_replicated_partitions",
            "Partitions this broker leads whose in-sync replicas are fewer than their replicas",
            m.under_replicated.clone(),
        );
        registry.register(
            "replica_offline_partitions",
            "Partitions without a leader (no live in-sync replica); reported by the metadata \
             quorum's leader only, 0 elsewhere",
            m.offline.clone(),
        );
        registry.register(
            "replica_isr_shrinks",
            "Followers this broker, as leader, removed from an ISR",
            m.isr_shrinks.clone(),
        );
        registry.register(
            "replica_isr_expands",
            "Followers this broker, as leader, added to an ISR",
            m.isr_expands.clone(),
        );
        registry.register(
            "replica_max_follower_lag_records",
            "The largest number of records any follower of a partition this broker leads is behind",
            m.max_follower_lag.clone(),
        );
        registry.register(
            "replica_fetched_bytes",
            "Record bytes this broker copied from leaders as a follower",
            m.replicated_bytes.clone(),
        );
        registry.register(
            "replica_fetch_lag_records",
            "Per partition this broker follows: the leader's high watermark minus this copy's end",
            m.fetch_lag.clone(),
        );
        registry.register(
            "recovery_actions",
            "Damaged or leftover files dropped or rebuilt, and stored batches refused because \
             their CRC failed, since the process started, by kind (each also logged at WARN \
             with the file)",
            m.recovery_actions.clone(),
        );
        registry.register(
            "transactions",
            "Transactions this broker ended as their coordinator, by outcome: committed, \
             aborted (every abort: by the producer, for a new producer of its transactional \
             id, or at its timeout), and timed_out (those of the aborts the coordinator began \
             after transaction.timeout.ms)",
            m.transactions.clone(),
        );
        for kind in TXN_OUTCOMES {
            let _ = m.transactions.get_or_create(&KindLabels { kind });
        }
        registry.register(
            "transactions_open",
            "Transactions open now among those this broker coordinates",
            m.transactions_open.clone(),
        );
        // Every kind is exported from the start, at 0.
        for action in crate::recovery::Action::ALL {
            let _ = m.recovery_actions.get_or_create(&KindLabels {
                kind: action.label(),
            });
        }
        Metrics { registry, ..m }
    }

    /// A transaction this broker coordinates ended: `kind` is one of [`TXN_OUTCOMES`].
    pub fn transaction_ended(&self, kind: &'static str) {
        self.transactions.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn transactions_open(&self, n: usize) {
        self.transactions_open
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn isr_shrink(&self) {
        self.isr_shrinks.inc();
    }

    pub fn isr_expand(&self) {
        self.isr_expands.inc();
    }

    /// The leader side's periodic figures: under-replicated partitions led here, the largest
    /// follower lag, and the cluster's offline partitions (`None`: not the quorum leader).
    pub fn set_replication(&self, under_replicated: usize, max_lag: i64, offline: Option<usize>) {
        self.under_replicated
            .set(i64::try_from(under_replicated).unwrap_or(i64::MAX));
        self.max_follower_lag.set(max_lag);
        self.offline
            .set(offline.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)));
    }

    pub fn replicated_bytes(&self, n: usize) {
        self.replicated_bytes.inc_by(n as u64);
    }

    /// A follower's lag behind its leader's high watermark, per partition.
    pub fn replica_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.fetch_lag
            .get_or_create(&PartitionLabels {
                topic: topic.to_string(),
                partition,
            })
            .set(lag);
    }

    /// Drops a partition's follower lag (it is no longer followed here).
    pub fn forget_replica_lag(&self, topic: &str, partition: i32) {
        self.fetch_lag.remove(&PartitionLabels {
            topic: topic.to_string(),
            partition,
        });
    }

    pub fn request(&self, key: ApiKey) {
        self.requests
            .get_or_create(&ApiLabels {
                api: format!("{key:?}"),
            })
            .inc();
    }

    /// Counts a non-zero error code returned by `api`.
    pub fn error_code(&self, api: &str, code: i16) {
        if code != 0 {
            self.errors
                .get_or_create(&ErrorLabels {
                    api: api.to_string(),
                    error_code: i32::from(code),
                })
                .inc();
        }
    }

    pub fn bytes_in(&self, n: usize) {
        self.bytes_in.inc_by(n as u64);
    }
    /// A response of `n` bytes is waiting for its client; returns the new total of all such.
    pub fn response_queued(&self, n: usize) -> usize {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        usize::try_from(self.queued_response_bytes.inc_by(n).saturating_add(n)).unwrap_or(0)
    }
    /// A queued response of `n` bytes was written (or dropped with its connection).
    pub fn response_unqueued(&self, n: usize) {
        self.queued_response_bytes
            .dec_by(i64::try_from(n).unwrap_or(i64::MAX));
    }
    /// Response bytes waiting for their clients, all connections together.
    pub fn queued_response_bytes(&self) -> usize {
        usize::try_from(self.queued_response_bytes.get()).unwrap_or(0)
    }
    pub fn throttled(&self, quota: &str, ms: i64) {
        self.throttle_ms
            .get_or_create(&QuotaLabels {
                quota: quota.to_string(),
            })
            .inc_by(u64::try_from(ms).unwrap_or(0));
    }
    pub fn response_backpressure(&self) {
        self.response_backpressure.inc();
    }
    pub fn bytes_out(&self, n: usize) {
        self.bytes_out.inc_by(n as u64);
    }
    pub fn produced_bytes(&self, n: usize) {
        self.produced_bytes.inc_by(n as u64);
    }
    pub fn fetch_sessions(&self, n: usize) {
        self.fetch_sessions
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    pub fn fetch_incremental(&self) {
        self.fetch_incremental.inc();
    }
    pub fn fetched_bytes(&self, n: usize) {
        self.fetched_bytes.inc_by(n as u64);
    }
    pub fn sendfile_bytes(&self, n: usize) {
        self.sendfile_bytes.inc_by(n as u64);
    }
    pub fn produce_latency(&self, d: Duration) {
        self.produce_latency.observe(d.as_secs_f64());
    }
    pub fn fetch_latency(&self, d: Duration) {
        self.fetch_latency.observe(d.as_secs_f64());
    }
    pub fn connection_opened(&self) {
        self.connections.inc();
        self.connections_total.inc();
    }
    pub fn connection_closed(&self) {
        self.connections.dec();
    }
    pub fn connection_rejected(&self) {
        self.connections_rejected.inc();
    }
    pub fn tls_handshake_failure(&self, reason: &str) {
        self.tls_handshake_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
    pub fn sasl_authentication_failure(&self, mechanism: &str) {
        self.sasl_failures
            .get_or_create(&MechanismLabels {
                mechanism: mechanism.to_string(),
            })
            .inc();
    }
    pub fn sasl_authenticated(&self, mechanism: &str) {
        self.sasl_successes
            .get_or_create(&MechanismLabels {
                mechanism: mechanism.to_string(),
            })
            .inc();
    }
    pub fn protocol_error(&self, reason: &str) {
        self.protocol_errors
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Drops the per-partition series of a deleted topic.
    pub fn forget_topic(&self, _topic: &str) {
        // Scrape-time families are rebuilt from scratch on every scrape.
    }

    /// Refreshes the scrape-time gauges and renders everything in the Prometheus text format.
    /// `topic_name` names a topic by its id (share partitions are keyed by topic id); a share
    /// partition of a topic it does not know (deleted) has no per-partition series.
    pub fn render(
        &self,
        logs: &LogManager,
        groups: &GroupCoordinator,
        shares: &ShareCoordinator,
        topic_name: &dyn Fn(uuid::Uuid) -> Option<String>,
    ) -> String {
        self.log_size.clear();
        self.log_start.clear();
        self.high_watermark.clear();
        self.group_lag.clear();
        let mut hw = std::collections::HashMap::new();
        for (topic, partition, log) in logs.all_partitions() {
            let l = PartitionLabels {
                topic: topic.clone(),
                partition,
            };
            let h = log.high_watermark();
            self.log_size
                .get_or_create(&l)
                .set(i64::try_from(log.size_bytes()).unwrap_or(i64::MAX));
            self.log_start.get_or_create(&l).set(log.log_start_offset());
            self.high_watermark.get_or_create(&l).set(h);
            hw.insert((topic, partition), h);
        }
        for c in groups.committed_offsets() {
            if let Some(h) = hw.get(&(c.topic.clone(), c.partition)) {
                self.group_lag
                    .get_or_create(&LagLabels {
                        group: c.group,
                        topic: c.topic,
                        partition: c.partition,
                    })
                    .set((h - c.offset).max(0));
            }
        }
        self.share_in_flight.clear();
        self.share_partition_in_flight.clear();
        for g in shares.groups() {
            for (topic_id, partition, _, acquired) in &g.partitions {
                let Some(topic) = topic_name(*topic_id) else {
                    continue;
                };
                self.share_partition_in_flight
                    .get_or_create(&SharePartitionLabels {
                        group: g.group.clone(),
                        topic,
                        partition: *partition,
                    })
                    .set(i64::try_from(*acquired).unwrap_or(i64::MAX));
            }
            let l = ShareGroupLabels { group: g.group };
            let in_flight: usize = g.partitions.iter().map(|p| p.3).sum();
            self.share_in_flight
                .get_or_create(&l)
                .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
            // The coordinator's totals are the source; a counter only follows them upwards.
            for (family, total) in [
                (&self.share_acknowledged, g.acknowledged),
                (&self.share_redelivered, g.redelivered),
                (&self.share_dead_lettered, g.dead_lettered),
            ] {
                let c = family.get_or_create(&l);
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
        let compacted = logs.compacted_records();
        self.compacted_records
            .inc_by(compacted.saturating_sub(self.compacted_records.get()));
        let (count, time) = logs.fsync_stats();
        if let Ok(mut seen) = self.fsync_seen.lock() {
            // Deleted partitions are folded into the engine's totals, so they only grow.
            self.fsyncs.inc_by(count.saturating_sub(seen.0));
            self.fsync_seconds
                .inc_by(time.saturating_sub(seen.1).as_secs_f64());
            *seen = (count.max(seen.0), time.max(seen.1));
        }
        if let Ok(_sync) = self.recovery_sync.lock() {
            for (action, total) in crate::recovery::totals() {
                let c = self.recovery_actions.get_or_create(&KindLabels {
                    kind: action.label(),
                });
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
