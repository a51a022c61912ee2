//! Broker settings: command-line flags, each with a matching `SLUICE_*` environment variable.
//!
//! Defaults live here and only here. [`Config::validate`] runs at start and names the setting
//! and what is allowed when a value is out of range; [`check_environment`] refuses any
//! `SLUICE_*` variable that is not one of these settings (a typo in an operator ConfigMap must
//! stop the broker, not be silently ignored).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

use crate::error::BrokerError;
use crate::group::OffsetsTopicSettings;
use crate::log::{FsyncPolicy, LogConfig, TimestampType};
use crate::replica::ReplicaConfig;

mod limits;
mod security;

pub use limits::{Limits, LimitsConfig};
pub use security::{AuthorizerKind, ClusterSecurity, Listener, SecurityConfig, DEFAULT_LISTENER};

/// When appended data is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncMode {
    /// `acks=all` is answered only once the data is on disk; concurrent requests share one fsync.
    Always,
    /// Fsync in the background every `--fsync-interval-ms`; a machine crash can lose that window.
    Interval,
}

/// Which way a consumer group may change protocol while it has members (Kafka's
/// group.consumer.migration.policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MigrationPolicy {
    /// Both ways: a classic group becomes a consumer group when a group.protocol=consumer
    /// member joins, and back when the last such member leaves.
    Bidirectional,
    /// Classic to consumer only.
    Upgrade,
    /// Consumer to classic only.
    Downgrade,
    /// Neither: a group with members keeps its protocol.
    Disabled,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sluice's Kafka-wire-compatible message broker.
///
/// Every flag can also be given as an environment variable (shown as [env: ...]); any other
/// environment variable starting with SLUICE_ stops the broker at start.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-broker", version)]
pub struct Config {
    /// Directory holding topics, partition logs, committed offsets, the cluster id and the
    /// producer-id counter. Created if missing.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "/var/lib/sluice")]
    pub data_dir: PathBuf,

    /// Kafka listener, host:port (port 0 picks a free port).
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:9092")]
    pub listen: String,

    /// Listeners, TLS, SASL and the authorizer (`config/security.rs`).
    #[command(flatten)]
    pub security: SecurityConfig,

    /// HTTP listener for /healthz, /readyz and /metrics, host:port.
    #[arg(long, env = "SLUICE_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    pub http_listen: String,

    /// host:port given to clients in Metadata / FindCoordinator responses. Default: the bound
    /// Kafka address, with the machine's hostname when bound to 0.0.0.0.
    #[arg(long, env = "SLUICE_ADVERTISE")]
    pub advertise: Option<String>,

    /// This broker's node id (>= 0), reported as broker and controller id.
    #[arg(long, env = "SLUICE_NODE_ID", default_value_t = 0)]
    pub node_id: i32,

    /// The rack (or zone) this broker runs in, as Kafka's `broker.rack`: a new partition's
    /// replicas go to brokers of different racks first, and Metadata reports it to clients.
    /// At most 255 characters.
    #[arg(long, env = "SLUICE_RACK")]
    pub rack: Option<String>,

    /// Inter-broker (metadata quorum) listener, host:port. Absent: a single node with no
    /// inter-broker listener. The host must resolve when the broker starts.
    #[arg(long, env = "SLUICE_CLUSTER_LISTEN")]
    pub cluster_listen: Option<String>,

    /// How other brokers reach this broker's cluster listener, host:port. Default: the
    /// advertised Kafka host with the --cluster-listen port. In Kubernetes give the pod's stable
    /// DNS name: pod IPs change when pods are recreated, and the quorum stores this address.
    #[arg(long, env = "SLUICE_CLUSTER_ADVERTISE")]
    pub cluster_advertise: Option<String>,

    /// Other brokers' cluster listeners, comma-separated host:port (DNS names or IPs,
    /// re-resolved on every retry; may include this broker). Needs --cluster-listen. A broker
    /// with a fresh volume joins the cluster a seed knows, or founds one when no seed knows one
    /// and it has no other seeds or its node id is 0.
    #[arg(long, env = "SLUICE_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,

    /// Partitions of a topic created without a partition count (auto-created or
    /// CreateTopics with -1). Range 1..=100000.
    #[arg(long, env = "SLUICE_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: i32,

    /// Replication factor of topics created without one (auto-created, or CreateTopics with
    /// -1): copies of each partition on distinct brokers. Range 1..=32767; creating a topic
    /// with more copies than live brokers is refused (INVALID_REPLICATION_FACTOR).
    #[arg(long, env = "SLUICE_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    pub default_replication_factor: i16,

    /// Default min.insync.replicas of topics (>= 1): an acks=all write is refused
    /// (NOT_ENOUGH_REPLICAS) while fewer replicas than this are in sync.
    #[arg(long, env = "SLUICE_MIN_INSYNC_REPLICAS", default_value_t = 1)]
    pub min_insync_replicas: i32,

    /// Partitions of the internal topic `__consumer_offsets`, which holds the consumer groups'
    /// committed offsets; each group lives in one of them and is coordinated by its leader.
    /// Read by the broker that creates the topic (the first time a group needs a coordinator)
    /// and fixed from then on. Range 1..=1000. The default suits small clusters: enough
    /// partitions to spread coordinators over up to 8 brokers, few enough that their files,
    /// fetchers and loads after a failover stay cheap (Kafka's 50 targets large clusters).
    #[arg(long, env = "SLUICE_OFFSETS_TOPIC_NUM_PARTITIONS", default_value_t = 8)]
    pub offsets_topic_num_partitions: i32,

    /// Copies of each `__consumer_offsets` partition, capped at the brokers available when the
    /// topic is created. Range 1..=32767.
    #[arg(
        long,
        env = "SLUICE_OFFSETS_TOPIC_REPLICATION_FACTOR",
        default_value_t = 3
    )]
    pub offsets_topic_replication_factor: i16,

    /// A follower that has not caught up with its leader for this many milliseconds leaves
    /// the in-sync replicas (Kafka's replica.lag.time.max.ms). A broker that stops altogether
    /// leaves them sooner, when the quorum fences it (about 3 s). Range 100..=3600000.
    #[arg(long, env = "SLUICE_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000)]
    pub replica_lag_time_max_ms: i64,

    /// How long a follower's fetch waits at its leader for new records (ms, 1..=60000).
    #[arg(long, env = "SLUICE_REPLICA_FETCH_WAIT_MAX_MS", default_value_t = 500)]
    pub replica_fetch_wait_max_ms: i64,

    /// Bytes a follower asks for per partition and fetch (1024..=1073741824).
    #[arg(
        long,
        env = "SLUICE_REPLICA_FETCH_MAX_BYTES",
        default_value_t = 4_194_304
    )]
    pub replica_fetch_max_bytes: i64,

    /// Seconds between preferred-leader elections run by the metadata quorum's leader: a
    /// partition whose first replica is alive and in sync but does not lead gets it back as
    /// leader (after a restart moved leaderships away). 0 turns it off. Range 0..=86400.
    #[arg(
        long,
        env = "SLUICE_LEADER_REBALANCE_INTERVAL_SECONDS",
        default_value_t = 300
    )]
    pub leader_rebalance_interval_seconds: i64,

    /// On SIGTERM, the longest a broker waits (ms) for its followers to catch up before it
    /// hands its leaderships over, so writes acknowledged with acks=1 are not lost by a planned
    /// restart. Range 0..=600000.
    #[arg(
        long,
        env = "SLUICE_CONTROLLED_SHUTDOWN_WAIT_MS",
        default_value_t = 5_000
    )]
    pub controlled_shutdown_wait_ms: i64,

    /// Default retention.ms: closed segments whose newest record is older than this many
    /// milliseconds are deleted. -1 keeps data forever.
    #[arg(
        long,
        env = "SLUICE_RETENTION_MS",
        default_value_t = 604_800_000,
        allow_negative_numbers = true
    )]
    pub retention_ms: i64,

    /// Default retention.bytes: the oldest closed segments are deleted while a partition is
    /// larger than this many bytes. -1 = no size limit.
    #[arg(long, env = "SLUICE_RETENTION_BYTES", default_value_t = -1, allow_negative_numbers = true)]
    pub retention_bytes: i64,

    /// Milliseconds between retention checks (Kafka's log.retention.check.interval.ms): how
    /// late past retention.ms or retention.bytes an old segment may still be on disk.
    /// Range 1..=86400000.
    #[arg(
        long,
        env = "SLUICE_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub retention_check_interval_ms: i64,

    /// Most distinct keys one compaction of a partition remembers (Kafka's
    /// log.cleaner.dedupe.buffer.size, counted in keys): each costs up to about 48 bytes while
    /// a compaction runs, one at a time. A partition with more keys written since its last
    /// compaction is compacted in steps, up to where the map filled each time.
    /// Range 1000..=100000000.
    #[arg(
        long,
        env = "SLUICE_COMPACTION_KEY_MAP_ENTRIES",
        default_value_t = 1_000_000
    )]
    pub compaction_key_map_entries: u64,

    /// How long a consumer group's first rebalance waits for more members to join before it
    /// completes (Kafka's group.initial.rebalance.delay.ms): fewer rebalances when a group's
    /// consumers start together, at the price of that much delay for a lone consumer's first
    /// poll. Range 0..=300000.
    #[arg(
        long,
        env = "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3_000
    )]
    pub group_initial_rebalance_delay_ms: i32,

    /// Session timeout of consumer groups of the KIP-848 protocol (`group.protocol=consumer`;
    /// Kafka's group.consumer.session.timeout.ms): a member not heard from for this long is
    /// removed and its partitions go to the others. Range 1000..=1800000.
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
        default_value_t = 45_000
    )]
    pub group_consumer_session_timeout_ms: i32,

    /// How often members of KIP-848 consumer groups heartbeat (Kafka's
    /// group.consumer.heartbeat.interval.ms): also how soon a member hears of a new
    /// assignment. Must be below the session timeout. Range 100..=60000.
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub group_consumer_heartbeat_interval_ms: i32,

    /// Whether a consumer group's members can move between the classic protocol (JoinGroup)
    /// and the KIP-848 consumer protocol (group.protocol=consumer) while the group runs, so
    /// an application can roll its consumers over (Kafka's group.consumer.migration.policy).
    #[arg(
        long,
        env = "SLUICE_GROUP_CONSUMER_MIGRATION_POLICY",
        value_enum,
        default_value_t = MigrationPolicy::Bidirectional
    )]
    pub group_consumer_migration_policy: MigrationPolicy,

    /// Default share.record.lock.duration.ms: how long a share-group member holds a record
    /// it acquired before it is offered again. Range 1000..=3600000.
    #[arg(
        long,
        env = "SLUICE_SHARE_RECORD_LOCK_DURATION_MS",
        default_value_t = 30_000
    )]
    pub share_record_lock_duration_ms: i64,

    /// Default share.delivery.count.limit: deliveries of a record to share-group members
    /// before it is archived (and dead-lettered). Range 2..=10.
    #[arg(long, env = "SLUICE_SHARE_DELIVERY_COUNT_LIMIT", default_value_t = 5)]
    pub share_delivery_count_limit: i16,

    /// Default segment.bytes: roll to a new segment file at this size in bytes.
    /// Range 1024..=2147483647.
    #[arg(long, env = "SLUICE_SEGMENT_BYTES", default_value_t = 1_073_741_824)]
    pub segment_bytes: i64,

    /// Default segment.ms: roll to a new segment file once the active one is this many
    /// milliseconds old (>= 1).
    #[arg(long, env = "SLUICE_SEGMENT_MS", default_value_t = 604_800_000)]
    pub segment_ms: i64,

    /// Default max.message.bytes: the largest record batch accepted, in bytes.
    /// Range 1..=--max-request-bytes.
    #[arg(long, env = "SLUICE_MAX_MESSAGE_BYTES", default_value_t = 1_048_588)]
    pub max_message_bytes: i32,

    /// Default fsync policy: `always` answers acks=all only after fsync (group commit);
    /// `interval` fsyncs every --fsync-interval-ms and can lose that window on a machine crash.
    #[arg(long, env = "SLUICE_FSYNC", value_enum, default_value_t = FsyncMode::Always)]
    pub fsync: FsyncMode,

    /// Milliseconds between background fsyncs under `--fsync interval` (>= 1).
    #[arg(long, env = "SLUICE_FSYNC_INTERVAL_MS", default_value_t = 1000)]
    pub fsync_interval_ms: i64,

    /// Create a topic when a client asks for its metadata and it does not exist
    /// (`true` or `false`).
    #[arg(long, env = "SLUICE_AUTO_CREATE_TOPICS", default_value_t = true, action = ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Largest request frame accepted, in bytes; a larger one is refused before it is read
    /// and its connection closed. Range 1024..=2147483647.
    #[arg(long, env = "SLUICE_MAX_REQUEST_BYTES", default_value_t = 104_857_600)]
    pub max_request_bytes: i64,

    /// Connection, response-buffer and fetch limits (`config/limits.rs`).
    #[command(flatten)]
    pub limits: LimitsConfig,

    /// Log line format: `text` or `json`. The level comes from RUST_LOG (default info).
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn invalid(setting: &str, value: impl ToString, allowed: &str) -> BrokerError {
    BrokerError::InvalidConfig {
        setting: setting.to_string(),
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

/// Checks that `s` looks like `host:port` with a numeric port.
fn check_host_port(setting: &str, s: &str) -> Result<(), BrokerError> {
    let allowed = "host:port, e.g. 0.0.0.0:9092 or [::1]:9092, with a port in 0..=65535";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(invalid(setting, s, allowed));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid(setting, s, allowed));
    }
    Ok(())
}

impl Config {
    /// `--cluster-listen` resolved to the socket address to bind (the first one the host
    /// resolves to); `None` without the flag.
    pub fn cluster_listen_addr(&self) -> Result<Option<std::net::SocketAddr>, BrokerError> {
        use std::net::ToSocketAddrs;
        let Some(c) = &self.cluster_listen else {
            return Ok(None);
        };
        check_host_port("--cluster-listen", c)?;
        let allowed = "host:port whose host resolves to an address of this machine";
        c.to_socket_addrs()
            .map_err(|_| invalid("--cluster-listen", c, allowed))?
            .next()
            .map(Some)
            .ok_or_else(|| invalid("--cluster-listen", c, allowed))
    }

    /// Checks every setting's range; the error names the setting and what is allowed.
    pub fn validate(&self) -> Result<(), BrokerError> {
        check_host_port("--listen", &self.listen)?;
        self.validate_security()?;
        check_host_port("--http-listen", &self.http_listen)?;
        self.validate_limits()?;
        if let Some(a) = &self.advertise {
            check_host_port("--advertise", a)?;
            if a.rsplit_once(':').is_some_and(|(_, p)| p == "0") {
                return Err(invalid(
                    "--advertise",
                    a,
                    "a host:port clients can reach, port 1..=65535",
                ));
            }
        }
        if let Some(c) = &self.cluster_listen {
            check_host_port("--cluster-listen", c)?;
        }
        if let Some(a) = &self.cluster_advertise {
            check_host_port("--cluster-advertise", a)?;
            if self.cluster_listen.is_none() {
                return Err(invalid(
                    "--cluster-advertise",
                    a,
                    "only together with --cluster-listen",
                ));
            }
        }
        for s in &self.seeds {
            check_host_port("--seeds", s)?;
            if s.rsplit_once(':').is_some_and(|(_, p)| p == "0") {
                return Err(invalid(
                    "--seeds",
                    s,
                    "host:port of another broker's cluster listener, port 1..=65535",
                ));
            }
        }
        if !self.seeds.is_empty() && self.cluster_listen.is_none() {
            return Err(invalid(
                "--seeds",
                self.seeds.join(","),
                "only together with --cluster-listen (without it the broker is a single node)",
            ));
        }
        if let Some(r) = &self.rack {
            if r.is_empty() || r.len() > 255 || r.chars().any(char::is_control) {
                return Err(invalid(
                    "--rack",
                    r,
                    "1..=255 printable characters, e.g. a zone name like eu-west-1a",
                ));
            }
        }
        if self.node_id < 0 {
            return Err(invalid("--node-id", self.node_id, "an integer >= 0"));
        }
        if !(1..=100_000).contains(&self.default_partitions) {
            return Err(invalid(
                "--default-partitions",
                self.default_partitions,
                "1..=100000",
            ));
        }
        if self.default_replication_factor < 1 {
            return Err(invalid(
                "--default-replication-factor",
                self.default_replication_factor,
                "1..=32767",
            ));
        }
        let ranges: [(&str, i64, i64, i64); 7] = [
            (
                "--offsets-topic-num-partitions",
                i64::from(self.offsets_topic_num_partitions),
                1,
                1_000,
            ),
            (
                "--offsets-topic-replication-factor",
                i64::from(self.offsets_topic_replication_factor),
                1,
                i64::from(i16::MAX),
            ),
            (
                "--replica-lag-time-max-ms",
                self.replica_lag_time_max_ms,
                100,
                3_600_000,
            ),
            (
                "--replica-fetch-wait-max-ms",
                self.replica_fetch_wait_max_ms,
                1,
                60_000,
            ),
            (
                "--replica-fetch-max-bytes",
                self.replica_fetch_max_bytes,
                1024,
                1 << 30,
            ),
            (
                "--leader-rebalance-interval-seconds",
                self.leader_rebalance_interval_seconds,
                0,
                86_400,
            ),
            (
                "--controlled-shutdown-wait-ms",
                self.controlled_shutdown_wait_ms,
                0,
                600_000,
            ),
        ];
        for (setting, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(invalid(setting, value, &format!("{min}..={max}")));
            }
        }
        if self.min_insync_replicas < 1 {
            return Err(invalid(
                "--min-insync-replicas",
                self.min_insync_replicas,
                "an integer >= 1",
            ));
        }
        if self.retention_ms < -1 || self.retention_ms == 0 {
            return Err(invalid(
                "--retention-ms",
                self.retention_ms,
                "-1 (forever) or milliseconds >= 1",
            ));
        }
        if self.retention_bytes < -1 {
            return Err(invalid(
                "--retention-bytes",
                self.retention_bytes,
                "-1 (no limit) or bytes >= 0",
            ));
        }
        if !(1..=86_400_000).contains(&self.retention_check_interval_ms) {
            return Err(invalid(
                "--retention-check-interval-ms",
                self.retention_check_interval_ms,
                "1..=86400000",
            ));
        }
        if !(1000..=100_000_000).contains(&self.compaction_key_map_entries) {
            return Err(invalid(
                "--compaction-key-map-entries",
                self.compaction_key_map_entries,
                "1000..=100000000",
            ));
        }
        if !(0..=300_000).contains(&self.group_initial_rebalance_delay_ms) {
            return Err(invalid(
                "--group-initial-rebalance-delay-ms",
                self.group_initial_rebalance_delay_ms,
                "0..=300000",
            ));
        }
        if !(1_000..=1_800_000).contains(&self.group_consumer_session_timeout_ms) {
            return Err(invalid(
                "--group-consumer-session-timeout-ms",
                self.group_consumer_session_timeout_ms,
                "1000..=1800000",
            ));
        }
        if !(100..=60_000).contains(&self.group_consumer_heartbeat_interval_ms)
            || self.group_consumer_heartbeat_interval_ms >= self.group_consumer_session_timeout_ms
        {
            return Err(invalid(
                "--group-consumer-heartbeat-interval-ms",
                self.group_consumer_heartbeat_interval_ms,
                "100..=60000 and below --group-consumer-session-timeout-ms",
            ));
        }
        if !(1_000..=3_600_000).contains(&self.share_record_lock_duration_ms) {
            return Err(invalid(
                "--share-record-lock-duration-ms",
                self.share_record_lock_duration_ms,
                "1000..=3600000",
            ));
        }
        if !(2..=10).contains(&self.share_delivery_count_limit) {
            return Err(invalid(
                "--share-delivery-count-limit",
                self.share_delivery_count_limit,
                "2..=10",
            ));
        }
        if !(1024..=i64::from(i32::MAX)).contains(&self.segment_bytes) {
            return Err(invalid(
                "--segment-bytes",
                self.segment_bytes,
                "1024..=2147483647",
            ));
        }
        if self.segment_ms < 1 {
            return Err(invalid(
                "--segment-ms",
                self.segment_ms,
                "milliseconds >= 1",
            ));
        }
        if !(1024..=i64::from(i32::MAX)).contains(&self.max_request_bytes) {
            return Err(invalid(
                "--max-request-bytes",
                self.max_request_bytes,
                "1024..=2147483647",
            ));
        }
        if self.max_message_bytes < 1 || i64::from(self.max_message_bytes) > self.max_request_bytes
        {
            return Err(invalid(
                "--max-message-bytes",
                self.max_message_bytes,
                &format!(
                    "1..={} (at most --max-request-bytes)",
                    self.max_request_bytes
                ),
            ));
        }
        if self.fsync_interval_ms < 1 {
            return Err(invalid(
                "--fsync-interval-ms",
                self.fsync_interval_ms,
                "milliseconds >= 1",
            ));
        }
        Ok(())
    }

    /// The replication settings derived from the flags (validated to be in range).
    pub fn replica_config(&self) -> ReplicaConfig {
        let ms = |v: i64| Duration::from_millis(u64::try_from(v).unwrap_or(0));
        ReplicaConfig {
            lag_time_max: ms(self.replica_lag_time_max_ms),
            fetch_wait_max: ms(self.replica_fetch_wait_max_ms),
            fetch_max_bytes: i32::try_from(self.replica_fetch_max_bytes).unwrap_or(i32::MAX),
            shutdown_catch_up: ms(self.controlled_shutdown_wait_ms),
            leader_rebalance_every: (self.leader_rebalance_interval_seconds > 0)
                .then(|| Duration::from_secs(self.leader_rebalance_interval_seconds as u64)),
            // Set by the broker once the TLS files are read.
            peer_tls: None,
        }
    }

    /// How this broker creates `__consumer_offsets` (validated to be in range).
    pub fn offsets_topic(&self) -> OffsetsTopicSettings {
        OffsetsTopicSettings {
            partitions: self.offsets_topic_num_partitions,
            replication_factor: self.offsets_topic_replication_factor,
        }
    }

    /// The broker-wide default log settings derived from the flags.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: u64::try_from(self.segment_bytes).unwrap_or(1 << 30),
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            max_message_bytes: u32::try_from(self.max_message_bytes).unwrap_or(1_048_588),
            fsync: match self.fsync {
                FsyncMode::Always => FsyncPolicy::Always,
                FsyncMode::Interval => FsyncPolicy::Interval(Duration::from_millis(
                    u64::try_from(self.fsync_interval_ms).unwrap_or(1000),
                )),
            },
            timestamp_type: TimestampType::CreateTime,
            ..LogConfig::default()
        }
    }

    /// `--max-request-bytes` as a usize (validated to be in range).
    pub fn max_request_bytes(&self) -> usize {
        usize::try_from(self.max_request_bytes).unwrap_or(104_857_600)
    }
}

/// Every environment variable name the broker reads.
pub fn known_env_vars() -> Vec<String> {
    Config::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// Refuses any `SLUICE_*` variable in `vars` that is not a setting.
pub fn check_environment<I, K>(vars: I) -> Result<(), BrokerError>
where
    I: IntoIterator<Item = K>,
    K: AsRef<str>,
{
    let known = known_env_vars();
    for name in vars {
        let name = name.as_ref();
        if name.starts_with("SLUICE_") && !known.iter().any(|k| k == name) {
            return Err(BrokerError::UnknownEnvironmentVariable {
                name: name.to_string(),
                known: known.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_contract_and_validate() {
        let c = Config::parse_from(["sluice-broker"]);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/sluice"));
        assert_eq!(c.listen, "0.0.0.0:9092");
        assert_eq!(c.http_listen, "0.0.0.0:8080");
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.retention_check_interval_ms, 10_000);
        assert_eq!(c.segment_bytes, 1_073_741_824);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.fsync, FsyncMode::Always);
        assert!(c.auto_create_topics);
        assert_eq!(c.max_request_bytes, 104_857_600);
        c.validate().expect("defaults are valid");
    }

    #[test]
    fn out_of_range_values_name_the_setting() {
        let c = Config::parse_from(["sluice-broker", "--retention-ms", "-5"]);
        let msg = c.validate().expect_err("-5 is invalid").to_string();
        assert!(
            msg.contains("--retention-ms") && msg.contains("-1"),
            "{msg}"
        );

        let c = Config::parse_from(["sluice-broker", "--retention-check-interval-ms", "0"]);
        let msg = c.validate().expect_err("0 is invalid").to_string();
        assert!(msg.contains("--retention-check-interval-ms"), "{msg}");

        let c = Config::parse_from(["sluice-broker", "--compaction-key-map-entries", "10"]);
        let msg = c.validate().expect_err("too small a map").to_string();
        assert!(msg.contains("--compaction-key-map-entries"), "{msg}");

        let c = Config::parse_from(["sluice-broker", "--listen", "nonsense"]);
        let msg = c.validate().expect_err("no port").to_string();
        assert!(msg.contains("--listen"), "{msg}");

        let c = Config::parse_from(["sluice-broker", "--max-message-bytes", "200000000"]);
        let msg = c.validate().expect_err("above max request").to_string();
        assert!(msg.contains("--max-message-bytes"), "{msg}");

        let c = Config::parse_from(["sluice-broker", "--default-replication-factor", "3"]);
        c.validate().expect("three copies are a valid default");
        let c = Config::parse_from(["sluice-broker", "--default-replication-factor", "0"]);
        let msg = c.validate().expect_err("no copies").to_string();
        assert!(msg.contains("--default-replication-factor"), "{msg}");
        let c = Config::parse_from(["sluice-broker", "--group-initial-rebalance-delay-ms", "0"]);
        c.validate().expect("no delay is valid");
        let c = Config::parse_from(["sluice-broker", "--group-initial-rebalance-delay-ms=-1"]);
        let msg = c.validate().expect_err("negative").to_string();
        assert!(msg.contains("--group-initial-rebalance-delay-ms"), "{msg}");
        let c = Config::parse_from(["sluice-broker", "--replica-lag-time-max-ms", "5"]);
        let msg = c.validate().expect_err("too short").to_string();
        assert!(
            msg.contains("--replica-lag-time-max-ms") && msg.contains("100..=3600000"),
            "{msg}"
        );
    }

    #[test]
    fn bad_enum_values_are_rejected_by_the_parser() {
        let e = Config::try_parse_from(["sluice-broker", "--fsync", "sometimes"])
            .expect_err("not a mode");
        let msg = e.to_string();
        assert!(msg.contains("--fsync") && msg.contains("always"), "{msg}");
        assert!(Config::try_parse_from(["sluice-broker", "--auto-create-topics", "yes"]).is_err());
        let c = Config::try_parse_from(["sluice-broker", "--auto-create-topics", "false"])
            .expect("false is valid");
        assert!(!c.auto_create_topics);
    }

    #[test]
    fn unknown_sluice_variables_are_refused() {
        check_environment(["SLUICE_DATA_DIR", "PATH", "SLUICE_FSYNC", "RUST_LOG"])
            .expect("all known");
        let msg = check_environment(["SLUICE_DATA_DIR", "SLUICE_RETENTION_MSS"])
            .expect_err("typo")
            .to_string();
        assert!(msg.contains("SLUICE_RETENTION_MSS"), "{msg}");
    }

    #[test]
    fn every_flag_has_an_env_var_and_help() {
        for a in Config::command().get_arguments() {
            if a.get_id() == "help" || a.get_id() == "version" {
                continue;
            }
            assert!(a.get_env().is_some(), "{} has no env var", a.get_id());
            assert!(a.get_help().is_some(), "{} has no help", a.get_id());
        }
    }

    #[test]
    fn cluster_advertise_needs_a_cluster_listener_and_a_host_port() {
        let c = Config::parse_from([
            "sluice-broker",
            "--cluster-listen",
            "0.0.0.0:9093",
            "--cluster-advertise",
            "q-0.q-brokers.ns.svc.cluster.local:9093",
        ]);
        assert!(c.validate().is_ok());
        let c = Config::parse_from(["sluice-broker", "--cluster-advertise", "a:9093"]);
        let e = c
            .validate()
            .expect_err("needs --cluster-listen")
            .to_string();
        assert!(e.contains("--cluster-advertise"), "{e}");
        let c = Config::parse_from([
            "sluice-broker",
            "--cluster-listen",
            "0.0.0.0:9093",
            "--cluster-advertise",
            "no-port",
        ]);
        assert!(c.validate().is_err());
    }

    #[test]
    fn seeds_are_comma_separated() {
        let c = Config::parse_from([
            "sluice-broker",
            "--cluster-listen",
            "0.0.0.0:9093",
            "--seeds",
            "a:1,b:2",
        ]);
        assert_eq!(c.seeds, vec!["a:1".to_string(), "b:2".to_string()]);
        c.validate().expect("valid");
    }

    #[test]
    fn cluster_flags_are_validated() {
        let c = Config::parse_from(["sluice-broker", "--seeds", "a:1"]);
        let msg = c.validate().expect_err("seeds alone").to_string();
        assert!(
            msg.contains("--seeds") && msg.contains("--cluster-listen"),
            "{msg}"
        );
        for bad in ["a:0", "a:", ":1", "a:1,"] {
            let c = Config::parse_from([
                "sluice-broker",
                "--cluster-listen",
                "127.0.0.1:0",
                "--seeds",
                bad,
            ]);
            let msg = c.validate().expect_err(bad).to_string();
            assert!(msg.contains("--seeds"), "{bad}: {msg}");
        }
        let c = Config::parse_from(["sluice-broker", "--cluster-listen", "nohost"]);
        assert!(c.validate().is_err());
        let c = Config::parse_from(["sluice-broker"]);
        assert_eq!(c.cluster_listen_addr().expect("none"), None);
        let c = Config::parse_from(["sluice-broker", "--cluster-listen", "127.0.0.1:9093"]);
        assert_eq!(
            c.cluster_listen_addr().expect("addr"),
            Some("127.0.0.1:9093".parse().expect("addr"))
        );
        let c = Config::parse_from(["sluice-broker", "--cluster-listen", "localhost:9093"]);
        let a = c
            .cluster_listen_addr()
            .expect("localhost resolves")
            .expect("addr");
        assert!(a.ip().is_loopback() && a.port() == 9093, "{a}");
        let c = Config::parse_from([
            "sluice-broker",
            "--cluster-listen",
            "no-such-host.invalid:1",
        ]);
        let msg = c
            .cluster_listen_addr()
            .expect_err("unresolvable")
            .to_string();
        assert!(msg.contains("no-such-host.invalid:1"), "{msg}");
    }
}
