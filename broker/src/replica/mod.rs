//! Replication: each partition has copies on several brokers; one leads, the others follow.
//!
//! Kafka's protocol on Kafka's wire (see `README.md` here):
//! - the quorum's metadata says, per partition, its replicas, the in-sync replicas (ISR), the
//!   leader and the leader epoch ([`crate::cluster::partition`]);
//! - after every metadata change, [`ReplicaManager::sync_roles`] makes this broker lead the
//!   partitions the metadata says it leads and follow the others it holds a copy of;
//! - a leader tracks its followers' fetches ([`isr::Replicas`]): the high watermark (what
//!   consumers may read, what `acks=all` waits for) is the lowest offset every in-sync replica
//!   has, and followers that fall behind leave the ISR (and rejoin when caught up) through
//!   `AlterPartition` proposals;
//! - a follower fetches from its leader with the Fetch API and a replica id
//!   ([`fetcher`]), truncating first to where its log and the leader's agree
//!   (OffsetForLeaderEpoch).
//!
//! May import: `cluster`, `log`, `metrics`, `error`. Imported by `context`, `topology`,
//! `handlers` and `server`.

pub mod client;
pub mod fetcher;
pub mod isr;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::state::{ClusterState, Command, Outcome, NO_LEADER};
use crate::cluster::Cluster;
use crate::log::{LogManager, PartitionLog};
use crate::metrics::Metrics;

use self::fetcher::{FetcherSet, Follow};
use self::isr::Replicas;

/// A partition by name and number.
pub type TopicPartition = (String, i32);

/// Replication settings (broker flags).
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// `--replica-lag-time-max-ms`: an in-sync follower not caught up for this long leaves the
    /// ISR.
    pub lag_time_max: Duration,
    /// `--replica-fetch-wait-max-ms`: how long a follower's fetch waits at the leader for data.
    pub fetch_wait_max: Duration,
    /// `--replica-fetch-max-bytes`: per partition and fetch.
    pub fetch_max_bytes: i32,
    /// How long a broker stopping on purpose waits for its followers to catch up before it
    /// hands leadership over.
    pub shutdown_catch_up: Duration,
    /// How often the quorum leader runs preferred-leader elections (`None`: never).
    pub leader_rebalance_every: Option<Duration>,
    /// TLS to the leaders' inter-broker listener (`None`: it is PLAINTEXT).
    pub peer_tls: Option<Arc<crate::security::tls::TlsContext>>,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            lag_time_max: Duration::from_secs(30),
            fetch_wait_max: Duration::from_millis(500),
            fetch_max_bytes: 4 << 20,
            shutdown_catch_up: Duration::from_secs(5),
            leader_rebalance_every: Some(Duration::from_secs(300)),
            peer_tls: None,
        }
    }
}

/// A partition this broker leads.
#[derive(Debug)]
struct Led {
    log: Arc<PartitionLog>,
    replicas: Replicas,
    /// Cancelled when this broker stops leading it: waiting `acks=all` producers answer
    /// NOT_LEADER_OR_FOLLOWER instead of timing out.
    tenure: CancellationToken,
}

/// A leadership change, announced to the listener after the role sync.
enum Event {
    Led(String, i32, i32, Arc<PartitionLog>),
    Resigned(String, i32),
}

/// Why a follower's fetch was refused (the Kafka error code for that partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRefused(pub i16);

/// What a follower's fetch of a partition gets.
#[derive(Debug)]
pub enum ReplicaFetch {
    /// Read from its fetch offset.
    Read(Arc<PartitionLog>),
    /// Its log diverged: it should truncate to `end` (the end of `epoch` on this log).
    Diverged {
        log: Arc<PartitionLog>,
        epoch: i32,
        end: i64,
    },
}

/// Told when this broker starts or stops leading a partition (for example the group
/// coordinator, whose groups live in the partitions of an internal topic it leads). Called from
/// the role sync, on a blocking thread, outside the replica manager's locks: implementations
/// should hand long work to a task.
pub trait LeadershipListener: Send + Sync + std::fmt::Debug {
    /// This broker leads `topic`-`partition` from `leader_epoch` on; `log` is its log.
    fn became_leader(&self, topic: &str, partition: i32, leader_epoch: i32, log: Arc<PartitionLog>);
    /// This broker no longer leads `topic`-`partition`.
    fn resigned(&self, topic: &str, partition: i32);
}

/// The replication state of this broker's partitions.
#[derive(Debug)]
pub struct ReplicaManager {
    me: i32,
    config: ReplicaConfig,
    cluster: Arc<Cluster>,
    logs: Arc<LogManager>,
    metrics: Arc<Metrics>,
    led: Mutex<BTreeMap<TopicPartition, Led>>,
    /// Held while roles are synced, so concurrent syncs apply states in order.
    sync: Mutex<()>,
    listener: std::sync::OnceLock<Arc<dyn LeadershipListener>>,
    fetchers: FetcherSet,
    /// Bumped after every role sync: what [`ReplicaManager::await_lead`] waits on.
    synced: tokio::sync::watch::Sender<u64>,
    shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent across a panic elsewhere (each update is one insert/remove).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReplicaManager {
    pub fn new(
        me: i32,
        config: ReplicaConfig,
        cluster: Arc<Cluster>,
        logs: Arc<LogManager>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<ReplicaManager> {
        Arc::new(ReplicaManager {
            me,
            fetchers: FetcherSet::new(me, config.clone(), Arc::clone(&metrics), shutdown.clone()),
            config,
            cluster,
            logs,
            metrics,
            led: Mutex::new(BTreeMap::new()),
            sync: Mutex::new(()),
            listener: std::sync::OnceLock::new(),
            synced: tokio::sync::watch::channel(0).0,
            shutdown,
        })
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    /// Registers the one listener told about leadership changes (later calls are ignored).
    /// Partitions already led are announced to it at once.
    pub fn set_listener(&self, listener: Arc<dyn LeadershipListener>) {
        if self.listener.set(Arc::clone(&listener)).is_err() {
            return;
        }
        let led: Vec<(TopicPartition, i32, Arc<PartitionLog>)> = lock(&self.led)
            .iter()
            .map(|(k, l)| (k.clone(), l.replicas.leader_epoch, Arc::clone(&l.log)))
            .collect();
        for ((topic, partition), epoch, log) in led {
            listener.became_leader(&topic, partition, epoch, log);
        }
    }

    /// Brings this broker's roles in line with the current metadata: leads what it says this
    /// broker leads, follows the rest of what it holds a copy of, forgets what it no longer
    /// holds. The state is read under a lock, so concurrent calls apply states in order.
    /// Blocking (a new leadership writes the leader-epoch cache): call off the async workers.
    pub fn sync_roles(&self) {
        let _serial = lock(&self.sync);
        let state = self.cluster.state();
        self.apply_roles(&state);
        self.synced.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits, until `deadline`, for this broker to lead `topic`-`partition` at `epoch`, which
    /// the metadata already says it does: the role sync that takes the leadership up (a
    /// leader-epoch cache write, with its fsyncs) runs moments after the metadata changed.
    /// True once it leads; false at the deadline, or as soon as the metadata moves the
    /// leadership on.
    pub async fn await_lead(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
        deadline: tokio::time::Instant,
    ) -> bool {
        // Subscribed before looking, so a sync that ends in between still wakes us.
        let mut synced = self.synced.subscribe();
        loop {
            if self
                .leader_log(topic, partition)
                .is_some_and(|(_, led)| led == epoch)
            {
                return true;
            }
            let still_ours = self
                .cluster
                .state()
                .partition(topic, partition)
                .is_some_and(|p| p.leader == self.me && p.leader_epoch == epoch);
            if !still_ours {
                return false;
            }
            match tokio::time::timeout_at(deadline, synced.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }

    fn apply_roles(&self, state: &ClusterState) {
        let mut events = Vec::new();
        self.apply_roles_collecting(state, &mut events);
        if let Some(l) = self.listener.get() {
            for e in events {
                match e {
                    Event::Led(topic, partition, epoch, log) => {
                        l.became_leader(&topic, partition, epoch, log)
                    }
                    Event::Resigned(topic, partition) => l.resigned(&topic, partition),
                }
            }
        }
    }

    fn apply_roles_collecting(&self, state: &ClusterState, events: &mut Vec<Event>) {
        let now = Instant::now();
        self.record_new_tenures(state);
        let mut follow: BTreeMap<i32, BTreeMap<TopicPartition, Follow>> = BTreeMap::new();
        let mut still_led = BTreeSet::new();
        for (topic, partition, rec) in state.all_partitions() {
            if !rec.replicas.contains(&self.me) {
                continue;
            }
            let Some(log) = self.logs.partition(topic, partition) else {
                // Not created locally yet: the next reconcile does, and calls again.
                continue;
            };
            let key = (topic.clone(), partition);
            if rec.leader == self.me {
                still_led.insert(key.clone());
                if let Some(epoch) = self.lead(key.clone(), Arc::clone(&log), rec, now) {
                    events.push(Event::Led(key.0, key.1, epoch, log));
                }
            } else if rec.leader != NO_LEADER {
                follow.entry(rec.leader).or_default().insert(
                    key,
                    Follow {
                        log,
                        leader_epoch: rec.leader_epoch,
                    },
                );
            }
        }
        {
            let mut led = lock(&self.led);
            let gone: Vec<TopicPartition> = led
                .keys()
                .filter(|k| !still_led.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                if let Some(l) = led.remove(&key) {
                    tracing::info!(topic = %key.0, partition = key.1, epoch = l.replicas.leader_epoch, "no longer the leader");
                    l.tenure.cancel();
                    // No client append from here on (one that passed the leadership check
                    // just before is refused under the append lock); a new tenure unfences.
                    l.log.fence();
                    events.push(Event::Resigned(key.0, key.1));
                }
            }
        }
        let addrs = state
            .brokers
            .values()
            .map(|b| (b.id, format!("{}:{}", b.host, b.port)))
            .collect();
        self.fetchers.assign(follow, addrs);
    }

    /// Records the epoch of every partition this broker starts to lead and did not lead
    /// before (after a start: all of them), a few at a time: each is an atomic replace of the
    /// leader-epoch cache with its fsyncs, and one after the other they took most of a start
    /// with 1,000 partitions. `lead` then finds the epoch recorded (`become_leader` writes
    /// nothing for an epoch it already has) and reports a failure, as before. Partitions led
    /// at another epoch are left to `lead`, which ends the old tenure first.
    fn record_new_tenures(&self, state: &ClusterState) {
        let new: Vec<(Arc<PartitionLog>, i32)> = {
            let led = lock(&self.led);
            state
                .all_partitions()
                .filter(|(topic, partition, rec)| {
                    rec.leader == self.me && !led.contains_key(&((*topic).clone(), *partition))
                })
                .filter_map(|(topic, partition, rec)| {
                    let log = self.logs.partition(topic, partition)?;
                    Some((log, rec.leader_epoch))
                })
                .collect()
        };
        if new.len() > 1 {
            crate::log::map_bounded(new, crate::log::OPEN_THREADS, |(log, epoch)| {
                // A failure is reported by `lead`, which tries again.
                let _ = log.become_leader(epoch);
            });
        }
    }

    /// Leads `key` at the record's epoch. Returns the epoch when a new tenure began.
    fn lead(
        &self,
        key: TopicPartition,
        log: Arc<PartitionLog>,
        rec: &crate::cluster::state::PartitionRecord,
        now: Instant,
    ) -> Option<i32> {
        let mut led = lock(&self.led);
        if let Some(l) = led.get_mut(&key) {
            if l.replicas.leader_epoch == rec.leader_epoch {
                if l.replicas.partition_epoch != rec.partition_epoch {
                    l.replicas.update_view(
                        rec.partition_epoch,
                        rec.replicas.clone(),
                        rec.isr.clone(),
                        now,
                    );
                    l.log.set_hw_bound(l.replicas.replica_bound());
                }
                return None;
            }
            l.tenure.cancel();
        }
        // A new tenure: stamp the new epoch on appends and record where it starts.
        if let Err(e) = log.become_leader(rec.leader_epoch) {
            tracing::error!(topic = %key.0, partition = key.1, epoch = rec.leader_epoch, error = %e, "cannot record the new leader epoch; not serving the partition");
            led.remove(&key);
            return None;
        }
        let replicas = Replicas::new(
            self.me,
            rec.leader_epoch,
            rec.partition_epoch,
            rec.replicas.clone(),
            rec.isr.clone(),
            log.log_end_offset(),
            now,
        );
        log.set_hw_bound(replicas.replica_bound());
        log.unfence();
        tracing::info!(topic = %key.0, partition = key.1, epoch = rec.leader_epoch, isr = ?rec.isr, "leading");
        led.insert(
            key,
            Led {
                log,
                replicas,
                tenure: CancellationToken::new(),
            },
        );
        Some(rec.leader_epoch)
    }

    /// A follower's fetch of a partition this broker leads, at `fetch_offset` with the leader
    /// epoch it believes current and the newest epoch in its log (`last_fetched_epoch`, -1:
    /// not given). A follower whose log diverged from this one is told where to truncate and
    /// its position is not counted; otherwise its position is recorded (the high watermark
    /// may advance) and an ISR expansion proposed when it caught up.
    pub fn on_replica_fetch(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        replica: i32,
        fetch_offset: i64,
        current_leader_epoch: i32,
        last_fetched_epoch: i32,
    ) -> Result<ReplicaFetch, FetchRefused> {
        use crate::cluster::state::code;
        let mut led = lock(&self.led);
        let key = (topic.to_string(), partition);
        let Some(l) = led.get_mut(&key) else {
            return Err(FetchRefused(code::NOT_LEADER_OR_FOLLOWER));
        };
        if current_leader_epoch >= 0 && current_leader_epoch < l.replicas.leader_epoch {
            return Err(FetchRefused(code::FENCED_LEADER_EPOCH));
        }
        if current_leader_epoch > l.replicas.leader_epoch {
            return Err(FetchRefused(UNKNOWN_LEADER_EPOCH));
        }
        if !l.replicas.followers.contains_key(&replica) {
            return Err(FetchRefused(code::NOT_LEADER_OR_FOLLOWER));
        }
        if last_fetched_epoch >= 0 {
            let (epoch, end) = l.log.end_offset_for_epoch(last_fetched_epoch);
            // An undefined answer (-1): this log starts after that epoch; the fetch offset
            // then lies before our log start, which the read answers OFFSET_OUT_OF_RANGE.
            if epoch >= 0 && (epoch != last_fetched_epoch || end < fetch_offset) {
                return Ok(ReplicaFetch::Diverged {
                    log: Arc::clone(&l.log),
                    epoch,
                    end,
                });
            }
        }
        let end = l.log.log_end_offset();
        if fetch_offset > end {
            // Ahead of this log (it lost unsynced writes, or the follower's diverged): the
            // read answers OFFSET_OUT_OF_RANGE and the follower truncates; not a position.
            return Ok(ReplicaFetch::Read(Arc::clone(&l.log)));
        }
        l.replicas
            .on_fetch(replica, fetch_offset, end, Instant::now());
        l.log.set_hw_bound(l.replicas.replica_bound());
        let log = Arc::clone(&l.log);
        self.maybe_alter_isr(&key, l);
        Ok(ReplicaFetch::Read(log))
    }

    /// Proposes the ISR change the leader's view calls for, if any (one in flight at a time).
    fn maybe_alter_isr(self: &Arc<Self>, key: &TopicPartition, l: &mut Led) {
        let state = self.cluster.state();
        let alive = state.alive_brokers();
        let hw = l.log.high_watermark();
        let Some(isr) = l
            .replicas
            .isr_change(hw, self.config.lag_time_max, Instant::now(), |b| {
                alive.contains(&b)
            })
        else {
            return;
        };
        l.replicas.pending = Some(isr.clone());
        // An addition counts towards the high watermark from now on.
        l.log.set_hw_bound(l.replicas.replica_bound());
        let shrink = isr.len() < l.replicas.isr.len();
        let cmd = Command::AlterPartition {
            topic: key.0.clone(),
            partition: key.1,
            leader: self.me,
            leader_epoch: l.replicas.leader_epoch,
            partition_epoch: l.replicas.partition_epoch,
            isr: isr.clone(),
        };
        let from = l.replicas.isr.clone();
        // This change completes a reassignment that drops this broker: leadership moves with
        // it. Like a controlled shutdown, stop taking writes and let the new replicas reach
        // this log's end first, so no acknowledged write (acks=1 included) stays behind.
        let handover = state
            .partition(&key.0, key.1)
            .filter(|p| {
                p.is_reassigning()
                    && p.removing.contains(&self.me)
                    && p.adding.iter().all(|r| isr.contains(r))
            })
            .map(|p| p.target_replicas());
        let log = Arc::clone(&l.log);
        let me = Arc::clone(self);
        let key = key.clone();
        let span = tracing::info_span!("alter_isr", topic = %key.0, partition = key.1);
        tokio::spawn(
            async move {
                if let Some(targets) = &handover {
                    let end = log.fence();
                    tracing::info!(end, to = ?targets, "leadership leaves with the reassignment; writes paused until the new replicas have everything");
                    me.wait_caught_up(&key, targets, end).await;
                }
                let result = me.cluster.propose(cmd).await;
                let applied = match &result {
                    Ok(Outcome::Partition(_)) => true,
                    Ok(Outcome::Refused { code, message }) => {
                        tracing::info!(code, message = %message, "ISR change refused; waiting for the next metadata");
                        false
                    }
                    Ok(other) => {
                        tracing::warn!(outcome = ?other, "unexpected answer to an ISR change");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ISR change not committed; retrying later");
                        false
                    }
                };
                if applied {
                    if shrink {
                        me.metrics.isr_shrink();
                        tracing::warn!(from = ?from, to = ?isr, "ISR shrank");
                    } else {
                        me.metrics.isr_expand();
                        tracing::info!(from = ?from, to = ?isr, "ISR expanded");
                    }
                }
                // The applied state reaches `sync_roles` (which resets `pending`); after a
                // refusal or an error, allow the next attempt.
                if !applied {
                    if handover.is_some() {
                        log.unfence();
                    }
                    if let Some(l) = lock(&me.led).get_mut(&key) {
                        l.replicas.pending = None;
                        l.log.set_hw_bound(l.replicas.replica_bound());
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Waits (at most the controlled-shutdown wait) until every one of `replicas` other than
    /// this broker has fetched up to `end` of a partition this broker leads.
    async fn wait_caught_up(&self, key: &TopicPartition, replicas: &[i32], end: i64) {
        let deadline = tokio::time::Instant::now() + self.config.shutdown_catch_up;
        loop {
            let behind: Vec<i32> = match lock(&self.led).get(key) {
                None => return,
                Some(l) => replicas
                    .iter()
                    .copied()
                    .filter(|r| *r != self.me)
                    .filter(|r| {
                        l.replicas
                            .followers
                            .get(r)
                            .is_none_or(|f| f.fetch_offset < end)
                    })
                    .collect(),
            };
            if behind.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(behind = ?behind, end, "replicas did not reach the log end in time; handing over anyway (acks=1 writes they lack may be lost)");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The periodic check: in-sync followers that stopped catching up leave the ISR.
    pub fn spawn_isr_check(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let every = (self.config.lag_time_max / 2).max(Duration::from_millis(50));
        tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = me.shutdown.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let mut led = lock(&me.led);
                    let keys: Vec<TopicPartition> = led.keys().cloned().collect();
                    for key in keys {
                        if let Some(l) = led.get_mut(&key) {
                            me.maybe_alter_isr(&key, l);
                        }
                    }
                    let (under, lags) = led.values().fold((0, Vec::new()), |(u, mut lags), l| {
                        let end = l.log.log_end_offset();
                        lags.extend(l.replicas.lags(end).map(|(_, lag)| lag));
                        (
                            u + usize::from(l.replicas.isr.len() < l.replicas.replicas.len()),
                            lags,
                        )
                    });
                    drop(led);
                    let offline = (me.cluster.leader() == Some(me.me))
                        .then(|| me.cluster.state().offline_partitions());
                    me.metrics
                        .set_replication(under, lags.into_iter().max().unwrap_or(0), offline);
                }
            }
            .instrument(tracing::info_span!("isr_check")),
        );
    }

    /// The log of a partition this broker leads, with the leader epoch it leads at.
    pub fn leader_log(&self, topic: &str, partition: i32) -> Option<(Arc<PartitionLog>, i32)> {
        lock(&self.led)
            .get(&(topic.to_string(), partition))
            .map(|l| (Arc::clone(&l.log), l.replicas.leader_epoch))
    }

    /// [`ReplicaManager::leader_log`] of every partition of `topic` this broker leads, by
    /// partition (sorted): one lock for a fetch of many partitions.
    pub fn leader_logs(&self, topic: &str) -> Vec<(i32, Arc<PartitionLog>, i32)> {
        let from = (topic.to_string(), i32::MIN);
        let to = (topic.to_string(), i32::MAX);
        lock(&self.led)
            .range(from..=to)
            .map(|((_, p), l)| (*p, Arc::clone(&l.log), l.replicas.leader_epoch))
            .collect()
    }

    /// What an `acks=all` producer of this partition waits on: `Some(tenure)` while this
    /// broker leads it.
    pub fn tenure(&self, topic: &str, partition: i32) -> Option<CancellationToken> {
        lock(&self.led)
            .get(&(topic.to_string(), partition))
            .map(|l| l.tenure.clone())
    }

    /// Controlled shutdown: stop taking writes on the partitions this broker leads with other
    /// live in-sync replicas, wait (bounded) until those replicas have everything, then ask
    /// the quorum to move leadership away and take this broker out of every ISR.
    pub async fn hand_over_leadership(&self) {
        let state = self.cluster.state();
        if state.brokers.len() <= 1 {
            return;
        }
        let alive = state.alive_brokers();
        // (log, partition, fenced log end, the live in-sync replicas that must catch up)
        type Fenced = (Arc<PartitionLog>, TopicPartition, i64, Vec<i32>);
        let fenced: Vec<Fenced> = {
            let led = lock(&self.led);
            led.iter()
                .filter_map(|(k, l)| {
                    let others: Vec<i32> = l
                        .replicas
                        .isr
                        .iter()
                        .copied()
                        .filter(|r| *r != self.me && alive.contains(r))
                        .collect();
                    (!others.is_empty())
                        .then(|| (Arc::clone(&l.log), k.clone(), l.log.fence(), others))
                })
                .collect()
        };
        futures::future::join_all(
            fenced
                .iter()
                .map(|(_, key, end, others)| self.wait_caught_up(key, others, *end)),
        )
        .await;
        match self
            .cluster
            .propose(Command::ControlledShutdown { id: self.me })
            .await
        {
            Ok(_) => tracing::info!(
                partitions = fenced.len(),
                "leadership handed over for shutdown"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not hand leadership over; the quorum will fence this broker");
                for (log, _, _, _) in &fenced {
                    log.unfence();
                }
            }
        }
    }

    /// Stops the follower fetchers.
    pub fn stop(&self) {
        self.fetchers.stop();
    }
}

/// The partitions whose first (preferred) replica is alive and in sync but does not lead.
pub fn preferred_elections_due(state: &ClusterState) -> Vec<TopicPartition> {
    let alive = state.alive_brokers();
    state
        .all_partitions()
        .filter(|(_, _, p)| {
            p.replicas.first().is_some_and(|first| {
                *first != p.leader && alive.contains(first) && p.isr.contains(first)
            })
        })
        .map(|(t, i, _)| (t.clone(), i))
        .collect()
}

/// Spawns the periodic preferred-leader election: on the metadata quorum's leader only, every
/// `every`, partitions led by another replica than their first get it back once it is in sync
/// (Kafka's auto.leader.rebalance.enable), so leadership spreads again after restarts.
pub fn spawn_leader_rebalance(
    cluster: Arc<Cluster>,
    me: i32,
    every: Option<Duration>,
    shutdown: CancellationToken,
) {
    let Some(every) = every else {
        return;
    };
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if cluster.leader() != Some(me) {
                    continue;
                }
                let due = preferred_elections_due(&cluster.state());
                if due.is_empty() {
                    continue;
                }
                let n = due.len();
                match cluster
                    .propose(Command::ElectLeaders {
                        kind: crate::cluster::state::ElectionKind::Preferred,
                        partitions: due,
                    })
                    .await
                {
                    Ok(Outcome::Elections(results)) => {
                        let moved = results.iter().filter(|r| r.code == 0).count();
                        tracing::info!(candidates = n, moved, "preferred leaders restored");
                    }
                    Ok(other) => tracing::warn!(outcome = ?other, "unexpected answer to a preferred-leader election"),
                    Err(e) => tracing::warn!(error = %e, "preferred-leader election not committed"),
                }
            }
        }
        .instrument(tracing::info_span!("leader_rebalance")),
    );
}

/// Kafka's UNKNOWN_LEADER_EPOCH.
pub const UNKNOWN_LEADER_EPOCH: i16 = 76;
