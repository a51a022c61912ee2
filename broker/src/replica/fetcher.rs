//! Followers: one fetcher task per leader broker (Kafka's replica fetcher thread), fetching
//! every partition this broker follows from that leader over one Kafka connection.
//!
//! Per partition, whenever the leader epoch it follows changes (and at start), the fetcher
//! first truncates the local log to where it agrees with the leader's (OffsetForLeaderEpoch
//! with the newest epoch of the local leader-epoch cache), so a former leader drops records
//! the new leader never had. Then it fetches from its log end with the Fetch API and a replica
//! id, appends what comes back exactly as the leader has it, and, for `fsync: always`
//! partitions, fetches again only once that is on disk: the leader counts a follower's fetch
//! offset as "this replica has it durably". The leader's answer also moves the follower's high
//! watermark and log start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::PeerConnection;
use super::{ReplicaConfig, TopicPartition};
use crate::error::BrokerError;
use crate::log::{FsyncPolicy, PartitionLog, UNDEFINED_EPOCH};
use crate::metrics::Metrics;

/// The Fetch version followers send: topic names, `last_fetched_epoch` / `diverging_epoch`.
const FETCH_VERSION: i16 = 12;
/// The OffsetForLeaderEpoch version followers send (replica id field from v3).
const EPOCH_VERSION: i16 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a partition the leader refused waits before it is tried again. The leader applies
/// metadata moments after this broker may have (it may not know yet that it leads).
const STALL: Duration = Duration::from_millis(300);
/// First and largest pause after a failed round (doubling in between).
const BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Kafka error codes a fetcher acts on.
mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
}

/// One partition to follow.
#[derive(Debug, Clone)]
pub struct Follow {
    pub log: Arc<PartitionLog>,
    pub leader_epoch: i32,
}

/// A partition as its fetcher tracks it.
#[derive(Debug)]
struct Tracked {
    log: Arc<PartitionLog>,
    leader_epoch: i32,
    /// Truncated for this epoch already.
    truncated: bool,
    /// The leader refused the partition (not the leader yet, stale epoch) or a local step
    /// failed: left alone until this moment (or new metadata), then tried again.
    stalled_until: Option<tokio::time::Instant>,
}

/// The fetchers of this broker, one per leader.
#[derive(Debug)]
pub struct FetcherSet {
    me: i32,
    config: ReplicaConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    running: Mutex<BTreeMap<i32, Fetcher>>,
}

#[derive(Debug)]
struct Fetcher {
    assignment: watch::Sender<Assignment>,
    stop: CancellationToken,
}

#[derive(Debug, Clone, Default)]
struct Assignment {
    addr: String,
    partitions: BTreeMap<TopicPartition, Follow>,
}

impl FetcherSet {
    pub fn new(
        me: i32,
        config: ReplicaConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> FetcherSet {
        FetcherSet {
            me,
            config,
            metrics,
            shutdown,
            running: Mutex::new(BTreeMap::new()),
        }
    }

    /// Which partitions to follow from which leader; `addrs` gives every broker's Kafka
    /// address. Fetchers of leaders with nothing left stop; new ones start.
    pub fn assign(
        &self,
        by_leader: BTreeMap<i32, BTreeMap<TopicPartition, Follow>>,
        addrs: BTreeMap<i32, String>,
    ) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|leader, f| {
            let keep = by_leader.contains_key(leader);
            if !keep {
                f.stop.cancel();
            }
            keep
        });
        for (leader, partitions) in by_leader {
            let assignment = Assignment {
                addr: addrs.get(&leader).cloned().unwrap_or_default(),
                partitions,
            };
            match running.get(&leader) {
                Some(f) => {
                    // Only a real change wakes the fetcher (it drops an in-flight fetch).
                    f.assignment.send_if_modified(|current| {
                        let same = current.addr == assignment.addr
                            && current.partitions.len() == assignment.partitions.len()
                            && current.partitions.iter().all(|(k, a)| {
                                assignment.partitions.get(k).is_some_and(|b| {
                                    a.leader_epoch == b.leader_epoch && Arc::ptr_eq(&a.log, &b.log)
                                })
                            });
                        if !same {
                            *current = assignment;
                        }
                        !same
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(assignment);
                    let stop = self.shutdown.child_token();
                    let task = FetchTask {
                        me: self.me,
                        leader,
                        config: self.config.clone(),
                        metrics: Arc::clone(&self.metrics),
                        assignment: rx,
                        stop: stop.clone(),
                        tracked: BTreeMap::new(),
                        conn: None,
                    };
                    tokio::spawn(
                        task.run()
                            .instrument(tracing::info_span!("fetcher", leader)),
                    );
                    running.insert(
                        leader,
                        Fetcher {
                            assignment: tx,
                            stop,
                        },
                    );
                }
            }
        }
    }

    pub fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for f in running.values() {
            f.stop.cancel();
        }
        running.clear();
    }
}

struct FetchTask {
    me: i32,
    leader: i32,
    config: ReplicaConfig,
    metrics: Arc<Metrics>,
    assignment: watch::Receiver<Assignment>,
    stop: CancellationToken,
    tracked: BTreeMap<TopicPartition, Tracked>,
    conn: Option<PeerConnection>,
}

/// Runs blocking log work (truncation, appends that roll segments, fsync waits) off the
/// async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Task {
            task: "replica fetch",
            reason: e.to_string(),
        })
}

impl FetchTask {
    async fn run(mut self) {
        let mut backoff = BACKOFF;
        let mut failures = 0u32;
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            self.refresh_assignment();
            match self.round().await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "replica fetches from the leader work again");
                    }
                    failures = 0;
                    backoff = BACKOFF;
                }
                Err(e) => {
                    if self.stop.is_cancelled() {
                        break;
                    }
                    failures += 1;
                    // The first failure and then every 20th: a dead leader is normal for the
                    // few seconds until the quorum elects a new one.
                    if failures == 1 || failures % 20 == 0 {
                        tracing::warn!(error = %e, failures, retry_in = ?backoff, "replica fetch failed; retrying");
                    } else {
                        tracing::debug!(error = %e, failures, "replica fetch failed; retrying");
                    }
                    self.conn = None;
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = self.assignment.changed() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::debug!("fetcher stopped");
    }

    /// Takes the newest assignment: new partitions and new epochs need truncation first.
    fn refresh_assignment(&mut self) {
        let a = self.assignment.borrow_and_update().clone();
        let metrics = &self.metrics;
        self.tracked.retain(|k, _| {
            let keep = a.partitions.contains_key(k);
            if !keep {
                metrics.forget_replica_lag(&k.0, k.1);
            }
            keep
        });
        for (k, f) in a.partitions {
            match self.tracked.get_mut(&k) {
                Some(t) if t.leader_epoch == f.leader_epoch && Arc::ptr_eq(&t.log, &f.log) => {}
                _ => {
                    // A new leader or epoch: the high watermark waits for its first answer.
                    f.log.become_follower(f.leader_epoch);
                    self.tracked.insert(
                        k,
                        Tracked {
                            log: f.log,
                            leader_epoch: f.leader_epoch,
                            truncated: false,
                            stalled_until: None,
                        },
                    );
                }
            }
        }
        if self.conn.as_ref().is_some_and(|c| c.addr() != a.addr) {
            self.conn = None;
        }
    }

    async fn connection(&mut self) -> Result<&mut PeerConnection, BrokerError> {
        if self.conn.is_none() {
            let addr = self.assignment.borrow().addr.clone();
            let tls = self.config.peer_tls.as_deref();
            let c =
                PeerConnection::connect(self.me, self.leader, &addr, CONNECT_TIMEOUT, tls).await?;
            tracing::info!(addr = %addr, "connected to the leader");
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or_else(|| BrokerError::Task {
            task: "replica fetch",
            reason: "no connection".into(),
        })
    }

    /// One round: truncate what needs it, then one fetch (or, when every partition is
    /// stalled, wait for the first to be due again or for new metadata).
    async fn round(&mut self) -> Result<(), BrokerError> {
        let now = tokio::time::Instant::now();
        for t in self.tracked.values_mut() {
            if t.stalled_until.is_some_and(|u| u <= now) {
                t.stalled_until = None;
            }
        }
        self.truncate_pending().await?;
        let active: Vec<TopicPartition> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.truncated && t.stalled_until.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if active.is_empty() {
            let next_due = self
                .tracked
                .values()
                .filter_map(|t| t.stalled_until)
                .min()
                .unwrap_or(now + Duration::from_secs(1));
            tokio::select! {
                _ = self.stop.cancelled() => {}
                _ = self.assignment.changed() => {}
                _ = tokio::time::sleep_until(next_due) => {}
            }
            return Ok(());
        }
        self.fetch(&active).await
    }

    /// OffsetForLeaderEpoch for every partition not yet truncated for its current epoch, then
    /// truncation to the answer (KIP-101 / KIP-279).
    async fn truncate_pending(&mut self) -> Result<(), BrokerError> {
        let pending: Vec<(TopicPartition, Arc<PartitionLog>, i32, Option<i32>)> = self
            .tracked
            .iter()
            .filter(|(_, t)| !t.truncated && t.stalled_until.is_none())
            .map(|(k, t)| {
                (
                    k.clone(),
                    Arc::clone(&t.log),
                    t.leader_epoch,
                    t.log.latest_epoch(),
                )
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut topics: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        for ((topic, partition), _, epoch, latest) in &pending {
            match latest {
                // An empty copy has nothing to truncate.
                None => {}
                Some(latest) => topics.entry(topic.clone()).or_default().push(
                    OffsetForLeaderPartition::default()
                        .with_partition(*partition)
                        .with_current_leader_epoch(*epoch)
                        .with_leader_epoch(*latest),
                ),
            }
        }
        let mut answers: BTreeMap<TopicPartition, (i16, i32, i64)> = BTreeMap::new();
        if !topics.is_empty() {
            let req = OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(self.me))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            OffsetForLeaderTopic::default()
                                .with_topic(TopicName(StrBytes::from_string(t)))
                                .with_partitions(ps)
                        })
                        .collect(),
                );
            let timeout = Duration::from_secs(10);
            let resp = self
                .connection()
                .await?
                .call(&req, EPOCH_VERSION, "OffsetForLeaderEpoch", timeout)
                .await?;
            for t in resp.topics {
                for p in t.partitions {
                    answers.insert(
                        (t.topic.as_str().to_string(), p.partition),
                        (p.error_code, p.leader_epoch, p.end_offset),
                    );
                }
            }
        }
        for (key, log, _, latest) in pending {
            let Some(t) = self.tracked.get_mut(&key) else {
                continue;
            };
            if latest.is_none() {
                t.truncated = true;
                continue;
            }
            match answers.get(&key) {
                Some((code::NONE, epoch, end)) => {
                    let target = if *epoch == UNDEFINED_EPOCH {
                        // The leader has no epoch as old as ours (its log starts later):
                        // keep only what the high watermark says was committed.
                        log.high_watermark()
                    } else {
                        (*end).min(log.log_end_offset())
                    };
                    if target < log.log_end_offset() {
                        let l = Arc::clone(&log);
                        let before = log.log_end_offset();
                        let cut = blocking(move || l.truncate_to(target)).await?;
                        match cut {
                            Ok(end) => {
                                tracing::warn!(topic = %key.0, partition = key.1, from = before, to = end, leader_epoch = epoch, "truncated to the leader's log")
                            }
                            Err(e) => {
                                tracing::error!(topic = %key.0, partition = key.1, error = %e, "truncation failed");
                                t.stalled_until = Some(tokio::time::Instant::now() + STALL);
                                continue;
                            }
                        }
                    }
                    t.truncated = true;
                }
                Some((code, _, _)) => {
                    tracing::debug!(topic = %key.0, partition = key.1, code, "leader refused OffsetForLeaderEpoch; trying again shortly");
                    t.stalled_until = Some(tokio::time::Instant::now() + STALL);
                }
                None => t.stalled_until = Some(tokio::time::Instant::now() + STALL),
            }
        }
        Ok(())
    }

    async fn fetch(&mut self, active: &[TopicPartition]) -> Result<(), BrokerError> {
        let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
        for key in active {
            let Some(t) = self.tracked.get(key) else {
                continue;
            };
            topics.entry(key.0.clone()).or_default().push(
                FetchPartition::default()
                    .with_partition(key.1)
                    .with_current_leader_epoch(t.leader_epoch)
                    .with_fetch_offset(t.log.log_end_offset())
                    .with_last_fetched_epoch(t.log.latest_epoch().unwrap_or(UNDEFINED_EPOCH))
                    .with_log_start_offset(t.log.log_start_offset())
                    .with_partition_max_bytes(self.config.fetch_max_bytes),
            );
        }
        let wait = self.config.fetch_wait_max;
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(self.me))
            .with_max_wait_ms(i32::try_from(wait.as_millis()).unwrap_or(i32::MAX))
            .with_min_bytes(1)
            .with_max_bytes(self.config.fetch_max_bytes.saturating_mul(4))
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let timeout = wait + Duration::from_secs(10);
        let mut changed = self.assignment.clone();
        self.connection().await?;
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let resp = tokio::select! {
            r = conn.call(&req, FETCH_VERSION, "Fetch", timeout) => r?,
            _ = self.stop.cancelled() => return Ok(()),
            // New metadata while the leader holds our fetch: drop the connection (its answer
            // would be read as the next request's) and start over with the new assignment.
            _ = changed.changed() => return Ok(()),
        };
        self.conn = Some(conn);
        let mut durable_waits = Vec::new();
        for t in resp.responses {
            let topic = t.topic.as_str().to_string();
            for p in t.partitions {
                let key = (topic.clone(), p.partition_index);
                let Some(tracked) = self.tracked.get_mut(&key) else {
                    continue;
                };
                let log = Arc::clone(&tracked.log);
                match p.error_code {
                    code::NONE => {}
                    code::OFFSET_OUT_OF_RANGE if log.log_end_offset() < p.log_start_offset => {
                        // Our copy ends before the leader's log starts (retention or
                        // DeleteRecords went past it): start over from the leader's start.
                        let start = p.log_start_offset;
                        let l = Arc::clone(&log);
                        match blocking(move || l.reset_to(start)).await? {
                            Ok(()) => {
                                tracing::warn!(topic = %key.0, partition = key.1, start, "copy restarted at the leader's log start")
                            }
                            Err(e) => {
                                tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot restart the copy");
                                tracked.stalled_until = Some(tokio::time::Instant::now() + STALL);
                            }
                        }
                        continue;
                    }
                    code::OFFSET_OUT_OF_RANGE => {
                        // Our log runs past the leader's: find the divergence again.
                        tracked.truncated = false;
                        continue;
                    }
                    other => {
                        tracing::debug!(topic = %key.0, partition = key.1, code = other, "leader refused the fetch; trying again shortly");
                        tracked.stalled_until = Some(tokio::time::Instant::now() + STALL);
                        continue;
                    }
                }
                if p.diverging_epoch.epoch >= 0 {
                    let target = p.diverging_epoch.end_offset.min(log.log_end_offset());
                    let l = Arc::clone(&log);
                    let before = log.log_end_offset();
                    match blocking(move || l.truncate_to(target)).await? {
                        Ok(end) => {
                            tracing::warn!(topic = %key.0, partition = key.1, from = before, to = end, "diverged from the leader; truncated")
                        }
                        Err(e) => {
                            tracing::error!(topic = %key.0, partition = key.1, error = %e, "truncation failed");
                            tracked.stalled_until = Some(tokio::time::Instant::now() + STALL);
                        }
                    }
                    continue;
                }
                let records = p.records.unwrap_or_default();
                if !records.is_empty() {
                    let n = records.len();
                    match append(&log, records).await? {
                        Ok(end) => {
                            self.metrics.replicated_bytes(n);
                            if log.config().fsync == FsyncPolicy::Always {
                                durable_waits.push((Arc::clone(&log), end));
                            }
                        }
                        Err(e) => {
                            tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot append the leader's records");
                            // Truncation may fix a mismatch; otherwise the next round retries.
                            tracked.truncated = false;
                            continue;
                        }
                    }
                }
                if p.log_start_offset > log.log_start_offset() {
                    let start = p.log_start_offset;
                    let l = Arc::clone(&log);
                    if let Err(e) = blocking(move || l.delete_records(start)).await? {
                        tracing::warn!(topic = %key.0, partition = key.1, error = %e, "cannot move the log start with the leader's");
                    }
                }
                log.set_hw_bound(p.high_watermark.min(log.log_end_offset()));
                self.metrics.replica_lag(
                    key.0.as_str(),
                    key.1,
                    (p.high_watermark - log.log_end_offset()).max(0),
                );
            }
        }
        // Fetch again only when what this round appended is on disk: the leader takes our
        // next fetch offset as "durable here".
        for (log, end) in durable_waits {
            if let Err(e) = log.wait_durable(end - 1).await {
                return Err(BrokerError::Task {
                    task: "replica fetch",
                    reason: format!("fsync of {}: {e}", log.dir().display()),
                });
            }
        }
        Ok(())
    }
}

async fn append(
    log: &Arc<PartitionLog>,
    records: Bytes,
) -> Result<Result<i64, crate::log::LogError>, BrokerError> {
    let l = Arc::clone(log);
    blocking(move || l.append_replicated(records)).await
}
