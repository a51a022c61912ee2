//! Replication (issue 9) across real `sluice-broker` processes, driven by real clients:
//!
//! - the leader of an RF=3 partition (min.insync.replicas=2) SIGKILLed at a seeded moment while a
//!   librdkafka idempotent producer writes with acks=all and a consumer group reads and commits:
//!   every acknowledged record is read once, byte-exact, at its acknowledged offset, from the new
//!   leader; committed offsets never go back; the killed broker returns and the ISR is whole again;
//! - followers stopped (SIGSTOP): the ISR shrinks, acks=all still works with two of three copies
//!   and is refused with NOT_ENOUGH_REPLICAS with one; back (SIGCONT), the ISR expands again;
//! - truncation: a former leader holding records no follower got (acks=1) rejoins and ends with
//!   exactly the new leader's log, byte for byte;
//! - an idempotent producer's pipelined batches sent to a new leader the moment its metadata
//!   names it (while it is still taking up the leaderships of a killed broker) are all
//!   appended, in sequence;
//! - the Java client across a leader kill, and Apache Kafka's `kafka-topics.sh` (TopicCommand) and
//!   `kafka-reassign-partitions.sh` (ReassignPartitionsCommand) on replica sets.
//!
//! Seeds: the leader-kill test runs 3 trials with fresh seeds and prints each;
//! `SLUICE_SEED=<n>` replays one, `SLUICE_TRIALS=<n>` runs n, and
//! `cargo test -p sluice-broker --test replication -- --ignored` runs 20.
//!
//! On a failure each broker's last log lines are printed; `SLUICE_TEST_KEEP_LOGS=<dir>` keeps
//! the whole logs and `SLUICE_TEST_BROKER_LOG=<filter>` (e.g. `info,sluice_broker::replica=debug`)
//! is the brokers' `RUST_LOG`.
//!
//! Each cluster has a loopback network of its own (`127.x.y.1..`, Kafka on :9092, cluster on
//! :9093), so a restarted broker comes back at the address its peers and clients know. The tests
//! take turns (one lock): each runs three to five brokers, and side by side on two busy cores a
//! starved broker could miss the liveness probes and be fenced for no fault of its own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::{
    metadata_request, produce_request, FindCoordinatorRequest, FindCoordinatorResponse,
    InitProducerIdRequest, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ResponseHeader,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::protocol::{Decodable, HeaderVersion};
use kafka_protocol::records::Compression;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

/// Kafka's NOT_ENOUGH_REPLICAS.
const NOT_ENOUGH_REPLICAS: i16 = 19;

const POLL: Duration = Duration::from_millis(100);

/// One test at a time (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Seeds

/// `SLUICE_SEED` alone, else `SLUICE_TRIALS` (or `trials`) fresh seeds.
fn seeds(trials: u64) -> Vec<u64> {
    if let Some(seed) = env_number("SLUICE_SEED") {
        return vec![seed];
    }
    let trials = env_number("SLUICE_TRIALS").unwrap_or(trials);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut rng = Rng(now ^ u64::from(std::process::id()) << 32);
    // Short enough to type back in.
    (0..trials).map(|_| rng.next() % 1_000_000).collect()
}

// ---------------------------------------------------------------------------------------------
// A cluster of broker processes

/// What one broker's Metadata says about a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionView {
    error: i16,
    leader: i32,
    epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    offline: Vec<i32>,
}

impl PartitionView {
    fn isr_set(&self) -> BTreeSet<i32> {
        self.isr.iter().copied().collect()
    }

    fn followers(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| *r != self.leader)
            .collect()
    }
}

fn set(ids: &[i32]) -> BTreeSet<i32> {
    ids.iter().copied().collect()
}

fn joined(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// A loopback network for a cluster of `n` (`common::free_network`) in 127.10-249.x.x, drawn
/// with a seed of its own for each cluster of this process.
fn free_network(n: usize) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut rng = Rng(u64::from(std::process::id()) << 16);
    for _ in 0..NEXT.fetch_add(1, Ordering::Relaxed) {
        rng.next();
    }
    common::free_network(n, 10..250, rng.next())
}

/// Brokers `0..n` as child processes, each on `<net>.<id + 1>`, with data in a temporary
/// directory that outlives restarts.
struct Cluster {
    tmp: tempfile::TempDir,
    net: String,
    flags: Vec<String>,
    brokers: Vec<Option<BinaryBroker>>,
}

impl Cluster {
    /// Starts `n` brokers with `flags` (broker 0 founds the cluster, the others join it) and
    /// waits until every one of them lists all `n` as live.
    fn start(n: usize, flags: &[&str]) -> Cluster {
        let mut c = Cluster {
            tmp: tempfile::tempdir().expect("cluster temp dir"),
            net: free_network(n),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            brokers: (0..n).map(|_| None).collect(),
        };
        for id in 0..n as i32 {
            c.spawn(id);
        }
        for id in 0..n as i32 {
            c.wait_live_brokers(id, n);
        }
        c
    }

    fn ids(&self) -> std::ops::Range<i32> {
        0..self.brokers.len() as i32
    }

    fn kafka(&self, id: i32) -> String {
        format!("{}.{}:9092", self.net, id + 1)
    }

    fn cluster_addr(&self, id: i32) -> String {
        format!("{}.{}:9093", self.net, id + 1)
    }

    /// `bootstrap.servers` naming `ids`.
    fn bootstrap(&self, ids: &[i32]) -> String {
        ids.iter()
            .map(|id| self.kafka(*id))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn all(&self) -> Vec<i32> {
        self.ids().collect()
    }

    fn data_dir(&self, id: i32) -> PathBuf {
        self.tmp.path().join(format!("b{id}"))
    }

    fn log_path(&self, id: i32) -> PathBuf {
        self.tmp.path().join(format!("b{id}.log"))
    }

    /// Starts broker `id` (again) on its data directory and addresses.
    fn spawn(&mut self, id: i32) {
        self.spawn_together(&[id]);
    }

    /// Starts brokers `ids` (again) at once, then waits until each is ready (a quorum that lost
    /// its majority is ready only once enough of its members are back).
    fn spawn_together(&mut self, ids: &[i32]) {
        let launched: Vec<(i32, Launched)> = ids.iter().map(|id| (*id, self.launch(*id))).collect();
        for (id, l) in launched {
            self.brokers[id as usize] = Some(l.ready());
        }
    }

    fn launch(&self, id: i32) -> Launched {
        assert!(
            self.brokers[id as usize].is_none(),
            "broker {id} is running"
        );
        let ip = format!("{}.{}", self.net, id + 1);
        let seeds: Vec<String> = self.ids().map(|i| self.cluster_addr(i)).collect();
        let mut args = vec![
            "--data-dir".to_string(),
            self.data_dir(id).display().to_string(),
            "--listen".into(),
            self.kafka(id),
            "--http-listen".into(),
            format!("{ip}:0"),
            "--node-id".into(),
            id.to_string(),
            "--cluster-listen".into(),
            self.cluster_addr(id),
        ];
        // Every broker gets every seed, as the operator does: broker 0 founds the cluster on its
        // first start (no seed answers yet), and on an empty volume later it must find the
        // cluster instead of founding a second one.
        args.extend(["--seeds".into(), seeds.join(",")]);
        args.extend(self.flags.iter().cloned());
        BinaryBroker::launch(&args, &self.log_path(id))
    }

    fn broker(&self, id: i32) -> &BinaryBroker {
        self.brokers[id as usize]
            .as_ref()
            .unwrap_or_else(|| panic!("broker {id} is not running"))
    }

    /// SIGKILL: no shutdown, no last fsync.
    fn kill(&mut self, id: i32) {
        let mut b = self.brokers[id as usize]
            .take()
            .unwrap_or_else(|| panic!("broker {id} is not running"));
        b.kill9();
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing answers.
    fn pause(&self, id: i32) {
        self.broker(id).signal("STOP");
    }

    fn resume(&self, id: i32) {
        self.broker(id).signal("CONT");
    }

    /// Metadata v12 of `topic` from broker `from`; None when it does not answer within 5 s.
    fn metadata(&self, from: i32, topic: Option<&str>) -> Option<MetadataResponse> {
        let addr = self.kafka(from).parse().expect("broker address");
        let mut c = RawClient::try_connect(addr, Duration::from_secs(5)).ok()?;
        let req = MetadataRequest::default()
            .with_topics(topic.map(|t| {
                vec![metadata_request::MetadataRequestTopic::default().with_name(Some(tname(t)))]
            }))
            .with_allow_auto_topic_creation(false);
        c.try_send(&req, 12).ok()
    }

    /// Partition `partition` of `topic` as broker `from` reports it.
    fn partition(&self, from: i32, topic: &str, partition: i32) -> Option<PartitionView> {
        let md = self.metadata(from, Some(topic))?;
        let t = md.topics.first()?;
        let p = t
            .partitions
            .iter()
            .find(|p| p.partition_index == partition)?;
        let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
        Some(PartitionView {
            error: p.error_code,
            leader: p.leader_id.0,
            epoch: p.leader_epoch,
            replicas: ids(&p.replica_nodes),
            isr: ids(&p.isr_nodes),
            offline: ids(&p.offline_replicas),
        })
    }

    /// Polls broker `from`'s Metadata until `cond` holds for the partition; panics with the last
    /// view after `timeout`.
    fn wait_partition(
        &self,
        from: i32,
        topic: &str,
        partition: i32,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&PartitionView) -> bool,
    ) -> PartitionView {
        let mut last = None;
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, timeout, POLL, || {
                let v = self.partition(from, topic, partition)?;
                let ok = cond(&v);
                last = Some(v.clone());
                ok.then_some(v)
            })
        }));
        found.unwrap_or_else(|_| {
            panic!("{topic}-{partition} per broker {from}: not {what} within {timeout:?}; last seen {last:?}")
        })
    }

    fn wait_live_brokers(&self, from: i32, n: usize) {
        wait_for(
            &format!("broker {from} to list {n} live brokers"),
            Duration::from_secs(60),
            POLL,
            || (self.metadata(from, None)?.brokers.len() == n).then_some(()),
        );
    }

    /// Creates `topic` with one partition, `rf` copies and min.insync.replicas=2 through broker
    /// `via`, and waits until its whole replica set is in sync.
    fn create_topic(&self, via: i32, topic: &str, rf: i32) -> PartitionView {
        self.create(via, NewTopic::new(topic, 1, TopicReplication::Fixed(rf)))
    }

    /// Like [`Cluster::create_topic`], on exactly `replicas` (the first is the preferred leader).
    fn create_topic_on(&self, via: i32, topic: &str, replicas: &[i32]) -> PartitionView {
        let assignment = [replicas];
        let v = self.create(
            via,
            NewTopic::new(topic, 1, TopicReplication::Variable(&assignment)),
        );
        assert_eq!(v.replicas, replicas, "{topic}: replicas as assigned");
        v
    }

    fn create(&self, via: i32, new: NewTopic<'_>) -> PartitionView {
        let topic = new.name;
        let want = match &new.replication {
            TopicReplication::Fixed(n) => *n as usize,
            TopicReplication::Variable(a) => a[0].len(),
        };
        let admin = rd_admin(&self.kafka(via));
        let rt = broker_runtime();
        let new = new.set("min.insync.replicas", "2");
        for r in rt
            .block_on(admin.create_topics(&[new], &admin_opts()))
            .expect("CreateTopics")
        {
            r.unwrap_or_else(|(t, e)| panic!("create {t} with {want} replicas: {e}"));
        }
        self.wait_partition(
            via,
            topic,
            0,
            &format!("led, with {want} replicas all in sync"),
            Duration::from_secs(30),
            |v| v.leader >= 0 && v.replicas.len() == want && v.isr_set() == set(&v.replicas),
        )
    }

    /// The group's coordinator, per FindCoordinator v3 to broker `from`.
    fn coordinator(&self, from: i32, group: &str) -> i32 {
        let mut c = RawClient::connect(self.kafka(from).parse().expect("broker address"));
        let resp: FindCoordinatorResponse = c.send(
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(group.to_string()))
                .with_key_type(0),
            3,
        );
        assert_eq!(resp.error_code, 0, "FindCoordinator {group}");
        resp.node_id.0
    }

    /// The bytes of a partition's segment files, in order, on broker `id`'s volume.
    fn log_bytes(&self, id: i32, topic: &str, partition: i32) -> Option<Vec<u8>> {
        partition_dir(&self.data_dir(id), topic, partition)?;
        let mut all = Vec::new();
        for f in segment_files(&self.data_dir(id), topic, partition) {
            all.extend(std::fs::read(&f).ok()?);
        }
        Some(all)
    }

    /// Waits until every broker in `ids` holds the same bytes for the partition; returns them.
    fn wait_identical_logs(&self, ids: &[i32], topic: &str, partition: i32) -> Vec<u8> {
        let sizes = || -> Vec<(i32, Option<usize>)> {
            ids.iter()
                .map(|id| (*id, self.log_bytes(*id, topic, partition).map(|b| b.len())))
                .collect()
        };
        let same = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(
                "identical partition logs",
                Duration::from_secs(30),
                POLL,
                || {
                    let first = self.log_bytes(ids[0], topic, partition)?;
                    ids[1..]
                        .iter()
                        .all(|id| self.log_bytes(*id, topic, partition).as_ref() == Some(&first))
                        .then_some(first)
                },
            )
        }));
        same.unwrap_or_else(|_| {
            panic!(
                "{topic}-{partition}: the replicas' segment files never became identical; (broker, bytes): {:?}",
                sizes()
            )
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // The brokers' own account of a failure: the end of each log here, the whole logs in
        // `SLUICE_TEST_KEEP_LOGS=<dir>` (with `SLUICE_TEST_BROKER_LOG=<filter>` for more).
        let keep = std::env::var("SLUICE_TEST_KEEP_LOGS").ok();
        for id in self.ids() {
            if let Some(dir) = &keep {
                let to = Path::new(dir).join(format!("{}-b{id}.log", self.net));
                let copied = std::fs::create_dir_all(dir)
                    .and_then(|_| std::fs::copy(self.log_path(id), &to));
                eprintln!("broker {id}'s log: {} ({copied:?})", to.display());
            }
            let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
            // openraft's own lines (votes, retries to a dead peer) would crowd out the rest.
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains(" openraft::")).collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "----- broker {id} ({}), last lines of its log:\n{}",
                self.kafka(id),
                strip_ansi(&tail)
            );
        }
    }
}

/// Broker flags for replicated topics, with `lag_ms` as `--replica-lag-time-max-ms`.
fn replication_flags(lag_ms: u64) -> Vec<String> {
    [
        "--default-replication-factor",
        "3",
        "--min-insync-replicas",
        "2",
        "--fsync",
        "always",
        "--replica-lag-time-max-ms",
        &lag_ms.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start_cluster(n: usize, lag_ms: u64) -> Cluster {
    let flags = replication_flags(lag_ms);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Cluster::start(n, &flags)
}

/// Index → offset of acknowledgements, checking that each record was acknowledged once.
fn offsets_by_index(acked: &[(u64, i32, i64)]) -> BTreeMap<u64, i64> {
    let mut m = BTreeMap::new();
    for (i, _, o) in acked {
        assert!(m.insert(*i, *o).is_none(), "record {i} acknowledged twice");
    }
    m
}

/// Checks that `got` holds exactly the acknowledged records, byte for byte, each at the offset its
/// acknowledgement named.
fn assert_acknowledged_exactly(got: &[Consumed], acked: &[(u64, i32, i64)]) {
    let at = offsets_by_index(acked);
    assert_records_exact(got, at.keys().copied());
    for c in got {
        assert_eq!(
            Some(&c.offset),
            at.get(&c.index()),
            "record {} read at offset {}, acknowledged at another",
            c.index(),
            c.offset
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Load: a producer and a consumer group on threads of their own

/// A librdkafka idempotent acks=all producer sending records 0, 1, 2, … to partition 0 of a
/// topic (about 1000 a second at most) until stopped.
struct ProducerLoad {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    /// Records handed to the client so far.
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<ProducerOutcome>>,
}

struct ProducerOutcome {
    sent: u64,
    acked: Vec<(u64, i32, i64)>,
    acked_at: Vec<(u64, Instant)>,
    failed: Vec<(u64, String)>,
}

impl ProducerLoad {
    fn start(bootstrap: String, topic: String) -> ProducerLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, acked2, sent2) = (Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&sent));
        let thread = std::thread::spawn(move || {
            let p = rd_producer(
                &bootstrap,
                &[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    // Longer than any failover: nothing may fail for want of time.
                    ("message.timeout.ms", "60000"),
                ],
            );
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                rd_send(&p, &topic, Some(0), i);
                i += 1;
                sent2.store(i, Ordering::Relaxed);
                p.poll(Duration::ZERO);
                if i % 10 == 0 {
                    // Pacing, not waiting: keeps the load steady and the logs small.
                    std::thread::sleep(Duration::from_millis(10));
                }
                let n = p.context().acked.lock().expect("lock").len();
                acked2.store(n as u64, Ordering::Relaxed);
            }
            p.flush(Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("flush the producer to {topic}: {e}"));
            let log = p.context();
            let outcome = ProducerOutcome {
                sent: i,
                acked: log.acked.lock().expect("lock").clone(),
                acked_at: log.acked_at.lock().expect("lock").clone(),
                failed: log.failed.lock().expect("lock").clone(),
            };
            outcome
        });
        ProducerLoad {
            stop,
            acked,
            sent,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until `n` records have been acknowledged in all.
    fn wait_acked(&self, n: u64, what: &str) {
        wait_for(
            what,
            Duration::from_secs(60),
            Duration::from_millis(20),
            || (self.acked() >= n).then_some(()),
        );
    }

    fn finish(mut self) -> ProducerOutcome {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().expect("producer thread");
        t.join()
            .unwrap_or_else(|_| panic!("the producer thread panicked"))
    }
}

impl Drop for ProducerLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A librdkafka consumer-group member reading a topic from the start, committing as it goes
/// (asynchronously, every 100 ms) and reading its committed offset back every 300 ms.
struct GroupLoad {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<GroupState>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct GroupState {
    consumed: Vec<Consumed>,
    /// Committed offsets of partition 0 as read back from the coordinator, in order.
    committed: Vec<i64>,
    errors: Vec<String>,
}

impl GroupLoad {
    fn start(bootstrap: String, topic: String, group: String) -> GroupLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(GroupState::default()));
        let (stop2, state2) = (Arc::clone(&stop), Arc::clone(&state));
        let thread = std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("check.crcs", "true")
                .set("broker.address.family", "v4")
                .set("fetch.wait.max.ms", "100")
                .set("session.timeout.ms", "10000")
                .create()
                .expect("create the group consumer");
            c.subscribe(&[&topic]).expect("subscribe");
            let (mut last_commit, mut last_read) = (Instant::now(), Instant::now());
            let mut uncommitted = false;
            while !stop2.load(Ordering::Relaxed) {
                match c.poll(Duration::from_millis(50)) {
                    Some(Ok(m)) => {
                        state2.lock().expect("lock").consumed.push(to_consumed(&m));
                        uncommitted = true;
                    }
                    Some(Err(e)) => state2.lock().expect("lock").errors.push(e.to_string()),
                    None => {}
                }
                if uncommitted && last_commit.elapsed() > Duration::from_millis(100) {
                    if let Err(e) = c.commit_consumer_state(CommitMode::Async) {
                        state2.lock().expect("lock").errors.push(e.to_string());
                    }
                    uncommitted = false;
                    last_commit = Instant::now();
                }
                if last_read.elapsed() > Duration::from_millis(300) {
                    last_read = Instant::now();
                    if let Some(o) = committed_offset(&c, &topic, Duration::from_secs(2)) {
                        state2.lock().expect("lock").committed.push(o);
                    }
                }
            }
            // The last position, committed synchronously (explicitly: a commit of the consumer
            // state answers "no offset" when the last asynchronous one already had it) and read
            // back.
            let last = c
                .position()
                .and_then(|pos| c.commit(&pos, CommitMode::Sync));
            if let Err(e) = last {
                state2
                    .lock()
                    .expect("lock")
                    .errors
                    .push(format!("last commit: {e}"));
            }
            if let Some(o) = committed_offset(&c, &topic, Duration::from_secs(10)) {
                state2.lock().expect("lock").committed.push(o);
            }
        });
        GroupLoad {
            stop,
            state,
            thread: Some(thread),
        }
    }

    /// Distinct record indexes consumed so far.
    fn consumed_indexes(&self) -> BTreeSet<u64> {
        let s = self.state.lock().expect("lock");
        s.consumed.iter().map(Consumed::index).collect()
    }

    fn finish(mut self) -> GroupState {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().expect("consumer thread");
        t.join()
            .unwrap_or_else(|_| panic!("the consumer thread panicked"));
        std::mem::take(&mut *self.state.lock().expect("lock"))
    }
}

impl Drop for GroupLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn committed_offset(c: &BaseConsumer, topic: &str, timeout: Duration) -> Option<i64> {
    let tpl = c.committed(timeout).ok()?;
    match tpl.find_partition(topic, 0)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The leader killed under acks=all

/// One seeded trial: see the module docs.
fn leader_kill_trial(seed: u64) {
    println!("replication trial: seed {seed} (replay: SLUICE_SEED={seed})");
    let mut rng = Rng(seed);
    let mut c = start_cluster(3, 10_000);
    let topic = topic_name("failover");
    let group = format!("{topic}-g");
    // The seed picks the preferred leader too: broker 0 also founded the metadata quorum (and
    // leads it); the group's coordinator is the leader of its __consumer_offsets partition.
    let first = rng.below(3) as i32;
    let replicas: Vec<i32> = (0..3).map(|k| (first + k) % 3).collect();
    let before = c.create_topic_on(0, &topic, &replicas);
    let old = before.leader;
    let everyone = c.bootstrap(&c.all());

    let producer = ProducerLoad::start(everyone.clone(), topic.clone());
    let group_load = GroupLoad::start(everyone.clone(), topic.clone(), group.clone());
    let kill_after = 100 + rng.below(500);
    producer.wait_acked(kill_after, "acknowledgements before the kill");
    std::thread::sleep(Duration::from_millis(rng.below(40)));
    let coordinator = c.coordinator(before.followers()[0], &group);
    let acked_at_kill = producer.acked();
    c.kill(old);
    // Records handed to the client after the kill can only be acknowledged by a new leader
    // (the first acknowledgements after the kill may still be the dead leader's, read from its
    // socket): the first of those acknowledgements ends the failover.
    let killed_at = Instant::now();
    let sent_at_kill = producer.sent();
    println!(
        "seed {seed}: killed leader {old} (epoch {}) after {acked_at_kill} acknowledgements; group coordinator {coordinator}",
        before.epoch
    );

    let survivor = before.followers()[0];
    let after = c.wait_partition(
        survivor,
        &topic,
        0,
        "led by a surviving in-sync replica, the killed one out of the ISR",
        Duration::from_secs(30),
        |v| v.leader >= 0 && v.leader != old && !v.isr.contains(&old),
    );
    assert!(
        before.isr.contains(&after.leader),
        "new leader {} was not in the ISR {:?}",
        after.leader,
        before.isr
    );
    assert!(
        after.epoch > before.epoch,
        "leader epoch {} → {}",
        before.epoch,
        after.epoch
    );
    assert_eq!(after.replicas, before.replicas, "the replica set stays");
    assert_eq!(after.offline, vec![old], "offline replicas");
    producer.wait_acked(acked_at_kill + 200, "production to go on at the new leader");
    // The group goes on without the killed broker, even when it coordinated the group: the
    // group's __consumer_offsets partition gets a new leader, which takes the group over.
    wait_for(
        "the group to consume records acknowledged after the kill",
        Duration::from_secs(60),
        POLL,
        || {
            let got = group_load.consumed_indexes();
            (got.len() as u64 > acked_at_kill + 100).then_some(())
        },
    );
    if coordinator == old {
        let now = c.coordinator(survivor, &group);
        assert_ne!(now, old, "seed {seed}: the group's new coordinator");
        println!("seed {seed}: the group's coordinator was the killed broker; broker {now} took the group over");
    }

    c.spawn(old);
    let whole = c.wait_partition(
        after.leader,
        &topic,
        0,
        "whole again: the restarted broker back in the ISR",
        Duration::from_secs(60),
        |v| v.isr_set() == set(&v.replicas),
    );
    let out = producer.finish();
    assert!(
        out.failed.is_empty(),
        "seed {seed}: {} of {} records failed, first {:?}",
        out.failed.len(),
        out.sent,
        out.failed.first()
    );
    assert_eq!(
        out.acked.len() as u64,
        out.sent,
        "seed {seed}: acknowledgements"
    );
    // The outage as the producer saw it: the longest wait between two acknowledgements.
    let mut times: Vec<Instant> = out.acked_at.iter().map(|(_, t)| *t).collect();
    times.sort();
    let outage = times.windows(2).map(|w| w[1] - w[0]).max();
    let failover = out
        .acked_at
        .iter()
        .filter(|(i, _)| *i >= sent_at_kill)
        .map(|(_, t)| t.saturating_duration_since(killed_at))
        .min();

    // Every acknowledged record once, byte-exact, at its offset, from the new leader; and the
    // three copies are the same bytes.
    let leader_addr = c.kafka(whole.leader);
    assert_eq!(
        rd_watermarks(&leader_addr, &topic, 0),
        (0, out.sent as i64),
        "seed {seed}: watermarks"
    );
    let got = rd_consume_from_start(
        &leader_addr,
        &topic,
        &[0],
        out.sent as usize,
        Duration::from_secs(60),
    );
    assert_acknowledged_exactly(&got, &out.acked);
    // Printed only once every acknowledged record has been read back: "0 lost" is checked.
    println!(
        "seed {seed}: {} records acknowledged, 0 lost; failover (kill to the first acknowledgement of a record sent after it) {failover:?}; longest pause between acknowledgements {outage:?}",
        out.acked.len()
    );

    // The group read everything and committed it all, never moving back.
    let everything: BTreeSet<u64> = (0..out.sent).collect();
    wait_for(
        "the group to consume every acknowledged record",
        Duration::from_secs(60),
        POLL,
        || {
            group_load
                .consumed_indexes()
                .is_superset(&everything)
                .then_some(())
        },
    );
    let g = group_load.finish();
    for w in g.committed.windows(2) {
        assert!(
            w[0] <= w[1],
            "seed {seed}: committed offset went back from {} to {}",
            w[0],
            w[1]
        );
    }
    assert_eq!(
        g.committed.last(),
        Some(&(out.sent as i64)),
        "seed {seed}: the group's final committed offset (errors seen: {:?})",
        g.errors.iter().take(5).collect::<Vec<_>>()
    );
    for c in &g.consumed {
        assert_eq!(
            c.record,
            test_record(c.index()),
            "group read record {} altered",
            c.index()
        );
    }

    c.wait_identical_logs(&c.all(), &topic, 0);
}

#[test]
fn a_leader_killed_under_acks_all_loses_no_acknowledged_record() {
    let _serial = serial();
    for seed in seeds(3) {
        leader_kill_trial(seed);
    }
}

#[test]
#[ignore = "20 seeded trials, about 3 minutes: cargo test --test replication -- --ignored"]
fn many_seeded_leader_kills() {
    let _serial = serial();
    for seed in seeds(20) {
        leader_kill_trial(seed);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Followers stopped

/// Five brokers, so that with both followers of the partition stopped the metadata quorum still
/// has a majority (three of five) and can take them out of the ISR; with three brokers, two
/// stopped would freeze the metadata and the leader could only time out.
#[test]
fn stopped_followers_shrink_the_isr_and_acks_all_needs_min_insync_replicas() {
    let _serial = serial();
    let lag_ms = 2_000;
    let c = start_cluster(5, lag_ms);
    let topic = topic_name("followers");
    let v = c.create_topic(0, &topic, 3);
    let (leader, f) = (v.leader, v.followers());
    let bs = c.kafka(leader);
    let idempotent = [("acks", "all"), ("enable.idempotence", "true")];
    let mut acked = rd_produce_all(&bs, &topic, Some(0), 0..50, &idempotent);
    // Shrinking takes the lag time, or the fencing of the stopped broker (about 3 s), whichever
    // comes first; 20 s more for the two busy cores.
    let shrink = Duration::from_millis(lag_ms) + Duration::from_secs(23);

    // One follower stopped: the ISR loses it, acks=all still succeeds with two copies.
    c.pause(f[0]);
    let stopped_at = Instant::now();
    let one_out = c.wait_partition(
        leader,
        &topic,
        0,
        "without the stopped follower in the ISR",
        shrink,
        |v| v.isr_set() == set(&[leader, f[1]]),
    );
    println!(
        "ISR shrank to {:?} {:?} after the stop",
        one_out.isr,
        stopped_at.elapsed()
    );
    assert_eq!(one_out.leader, leader);
    assert_eq!(one_out.replicas, v.replicas, "the replica set stays");
    acked.extend(rd_produce_all(&bs, &topic, Some(0), 50..100, &idempotent));

    // Both stopped: the ISR is the leader alone, below min.insync.replicas=2.
    c.pause(f[1]);
    c.wait_partition(
        leader,
        &topic,
        0,
        "with the leader alone in the ISR",
        shrink,
        |v| v.isr == vec![leader],
    );
    // librdkafka, no retries: each record fails with the broker's NOT_ENOUGH_REPLICAS.
    let p = rd_producer(
        &bs,
        &[
            ("acks", "all"),
            ("enable.idempotence", "false"),
            ("retries", "0"),
        ],
    );
    for i in 100..110 {
        rd_send(&p, &topic, Some(0), i);
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    let failed = p.context().failed.lock().expect("lock").clone();
    assert!(
        p.context().acked.lock().expect("lock").is_empty(),
        "acks=all acknowledged with one in-sync replica"
    );
    assert_eq!(failed.len(), 10, "failed deliveries: {failed:?}");
    // Not NOT_ENOUGH_REPLICAS_AFTER_APPEND: Kafka refuses before it appends.
    let want = KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas).to_string();
    for (i, e) in &failed {
        assert_eq!(e, &want, "record {i}'s delivery error");
    }
    // The same on the wire, and nothing was appended (Kafka checks before it appends).
    let mut raw = RawClient::connect(bs.parse().expect("address"));
    let (code, _) = raw_produce(
        &mut raw,
        &topic,
        0,
        encode_batch(&[b"x"], Compression::None, None),
        -1,
    );
    assert_eq!(code, NOT_ENOUGH_REPLICAS, "raw Produce acks=-1 error code");
    let (code, end) = raw_list_offset(&mut raw, &topic, 0, -1);
    assert_eq!((code, end), (0, 100), "the log end after the refusals");

    // Both back: the ISR is whole again, acks=all works, nothing acknowledged was lost.
    c.resume(f[0]);
    c.resume(f[1]);
    let whole = c.wait_partition(
        leader,
        &topic,
        0,
        "whole again",
        Duration::from_secs(60),
        |v| v.isr_set() == set(&v.replicas) && v.offline.is_empty(),
    );
    assert_eq!(whole.leader, leader);
    acked.extend(rd_produce_all(&bs, &topic, Some(0), 110..160, &idempotent));
    let got = rd_consume_from_start(&bs, &topic, &[0], acked.len(), Duration::from_secs(60));
    assert_acknowledged_exactly(&got, &acked);
    c.wait_identical_logs(&v.replicas, &topic, 0);
}

// ---------------------------------------------------------------------------------------------
// 3. Truncation

#[test]
fn a_former_leader_drops_records_it_alone_had_and_ends_with_the_new_leaders_log() {
    let _serial = serial();
    // A long lag time: the stopped followers stay in the ISR, so either may be elected.
    let mut c = start_cluster(3, 60_000);
    let topic = topic_name("truncation");
    let v = c.create_topic(0, &topic, 3);
    let (old, f) = (v.leader, v.followers());
    let idempotent = [("acks", "all"), ("enable.idempotence", "true")];
    let mut acked = rd_produce_all(&c.kafka(old), &topic, Some(0), 0..40, &idempotent);

    // Both followers stopped (the metadata quorum, two of three gone, changes nothing; they
    // stay in the ISR), then acks=1 records, one batch at a time, that only the leader takes.
    // A fetch a follower sent just before it stopped is still answered into its socket
    // buffer, so it may take the first of them when it resumes; not the later ones.
    c.pause(f[0]);
    c.pause(f[1]);
    let mut lone = Vec::new();
    for i in 1000..1010 {
        lone.extend(rd_produce_all(
            &c.kafka(old),
            &topic,
            Some(0),
            i..i + 1,
            &[("acks", "1"), ("enable.idempotence", "false")],
        ));
    }
    assert_eq!(sorted_offsets(&lone), (40..50).collect::<Vec<_>>());
    c.kill(old);
    c.resume(f[0]);
    c.resume(f[1]);
    let after = c.wait_partition(
        f[0],
        &topic,
        0,
        "led by a former follower",
        Duration::from_secs(30),
        |v| f.contains(&v.leader) && !v.isr.contains(&old),
    );
    assert!(
        after.epoch > v.epoch,
        "leader epoch {} → {}",
        v.epoch,
        after.epoch
    );
    let more = rd_produce_all(&c.bootstrap(&f), &topic, Some(0), 40..80, &idempotent);
    // The new leader's log ended where its records start: it had `kept` of the acks=1 records.
    let kept = sorted_offsets(&more)[0] - 40;
    println!(
        "the new leader {} had {kept} of the 10 acks=1 records",
        after.leader
    );
    assert!(
        kept < 10,
        "the new leader had every acks=1 record: nothing left to truncate"
    );
    assert_eq!(
        sorted_offsets(&more),
        (40 + kept..80 + kept).collect::<Vec<_>>()
    );
    acked.extend(more);
    let (survived, dropped) = lone.split_at(kept as usize);
    acked.extend_from_slice(survived);

    // The former leader returns: it must cut the acks=1 records the new leader lacks and take
    // the new leader's records in their place.
    c.spawn(old);
    c.wait_partition(
        after.leader,
        &topic,
        0,
        "whole again",
        Duration::from_secs(60),
        |v| v.isr_set() == set(&v.replicas),
    );
    let log = c.wait_identical_logs(&c.all(), &topic, 0);
    for (i, _, _) in dropped {
        if let Some(key) = test_record(*i).key {
            assert!(
                !log.windows(key.len()).any(|w| w == key.as_slice()),
                "acks=1 record {i}, which the new leader never had, is still in the log"
            );
        }
    }
    let leader = c.kafka(after.leader);
    let got = rd_consume_from_start(&leader, &topic, &[0], acked.len(), Duration::from_secs(30));
    assert_acknowledged_exactly(&got, &acked);
    assert_eq!(rd_watermarks(&leader, &topic, 0), (0, acked.len() as i64));
}

// ---------------------------------------------------------------------------------------------
// 4. The Java client and Kafka's own tools

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const REASSIGN: &str = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";

/// `kafka-topics.sh --describe` lines of partition 0 (`extra`: e.g.
/// `--under-replicated-partitions`).
fn describe_partition_lines(bootstrap: &str, topic: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--bootstrap-server",
        bootstrap,
        "--describe",
        "--topic",
        topic,
    ];
    args.extend_from_slice(extra);
    let out = kafka_tool(TOPICS, &args);
    out.stdout
        .lines()
        .filter(|l| l.starts_with('\t'))
        .map(str::to_string)
        .collect()
}

/// The `Name: value` fields of a `kafka-topics.sh --describe` line.
fn described_fields(line: &str) -> BTreeMap<String, String> {
    line.split('\t')
        .filter_map(|f| f.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Checks that `kafka-topics.sh --describe` (with `extra` options) prints partition 0 as `v`
/// has it: the same leader and replicas (in order: the first is the preferred leader) and the
/// same ISR.
fn assert_described(bootstrap: &str, topic: &str, v: &PartitionView, extra: &[&str]) {
    let lines = describe_partition_lines(bootstrap, topic, extra);
    assert_eq!(
        lines.len(),
        1,
        "kafka-topics.sh --describe {extra:?}: {lines:?}"
    );
    let f = described_fields(&lines[0]);
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("(missing)");
    let isr: BTreeSet<i32> = field("Isr")
        .split(',')
        .filter_map(|id| id.parse().ok())
        .collect();
    assert!(
        field("Topic") == topic
            && field("Partition") == "0"
            && field("Leader") == v.leader.to_string()
            && field("Replicas") == joined(&v.replicas)
            && isr == v.isr_set(),
        "kafka-topics.sh --describe {extra:?}: {:?}, but Metadata says {v:?}",
        lines[0]
    );
}

#[test]
fn java_client_and_kafka_tools_work_across_a_leader_kill_and_a_reassignment() {
    let _serial = serial();
    let mut c = start_cluster(3, 10_000);
    let everyone = c.bootstrap(&c.all());

    // kafka-topics.sh --create with RF=3, then --describe shows replicas and ISR.
    let topic = topic_name("java-failover");
    let out = kafka_tool(
        TOPICS,
        &[
            "--bootstrap-server",
            &everyone,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "1",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
    );
    assert!(
        out.stdout.contains(&format!("Created topic {topic}.")),
        "{}",
        out.stdout
    );
    let v = c.wait_partition(0, &topic, 0, "in sync", Duration::from_secs(30), |v| {
        v.leader >= 0 && v.replicas.len() == 3 && v.isr_set() == set(&v.replicas)
    });
    let head = kafka_tool(
        TOPICS,
        &[
            "--bootstrap-server",
            &everyone,
            "--describe",
            "--topic",
            &topic,
        ],
    );
    assert!(
        head.stdout.contains("\tReplicationFactor: 3\t")
            && head.stdout.contains("min.insync.replicas=2"),
        "{}",
        head.stdout
    );
    assert_described(&everyone, &topic, &v, &[]);

    // The Java idempotent producer (acks=all) keeps going while the leader is killed.
    let old = v.leader;
    let total = 1500u64;
    let java = {
        let (bs, topic) = (everyone.clone(), topic.clone());
        std::thread::spawn(move || {
            JavaDriver::at(&bs).produce(&topic, 0..total, &["--partition", "0", "--pause-ms", "4"])
        })
    };
    wait_for(
        "the Java producer's first 200 records",
        Duration::from_secs(60),
        POLL,
        || {
            let mut raw = RawClient::connect(c.kafka(old).parse().expect("address"));
            let (code, end) = raw_list_offset(&mut raw, &topic, 0, -1);
            (code == 0 && end >= 200).then_some(())
        },
    );
    c.kill(old);
    let survivor = v.followers()[0];
    let after = c.wait_partition(
        survivor,
        &topic,
        0,
        "led by a survivor",
        Duration::from_secs(30),
        |v| v.leader >= 0 && v.leader != old && !v.isr.contains(&old),
    );
    // Under-replicated now: listed by --under-replicated-partitions, two in sync.
    let survivors: Vec<i32> = c.ids().filter(|id| *id != old).collect();
    assert_described(
        &c.bootstrap(&survivors),
        &topic,
        &after,
        &["--under-replicated-partitions"],
    );
    let out = java.join().expect("the Java producer thread");
    let acked = acknowledged(&out);
    assert_acked_at_their_index("Java producer across a leader kill", &acked, total);

    c.spawn(old);
    let whole = c.wait_partition(
        after.leader,
        &topic,
        0,
        "whole again",
        Duration::from_secs(60),
        |v| v.isr_set() == set(&v.replicas),
    );
    assert_described(&everyone, &topic, &whole, &[]);
    assert_eq!(
        describe_partition_lines(&everyone, &topic, &["--under-replicated-partitions"]),
        Vec::<String>::new(),
        "nothing under-replicated once the killed broker is back"
    );
    // The Java group consumer reads everything back once, at the acknowledged offsets.
    let out = JavaDriver::at(&everyone).consume(&topic, &format!("{topic}-g"), total, &[]);
    let got = parse_consumed_lines(&out.stdout);
    assert_acknowledged_exactly(&got, &acked);
    assert_eq!(
        partition_offsets(&out, "committed"),
        BTreeMap::from([(0, total as i64)])
    );

    // kafka-reassign-partitions.sh: RF=2 on brokers [0, 1] moved to [1, 2].
    let moved = topic_name("reassigned");
    kafka_tool(
        TOPICS,
        &[
            "--bootstrap-server",
            &everyone,
            "--create",
            "--topic",
            &moved,
            "--replica-assignment",
            "0:1",
        ],
    );
    let v = c.wait_partition(
        0,
        &moved,
        0,
        "in sync on [0, 1]",
        Duration::from_secs(30),
        |v| v.replicas == vec![0, 1] && v.isr_set() == set(&[0, 1]),
    );
    let mut acked = rd_produce_all(&everyone, &moved, Some(0), 0..100, &[("acks", "all")]);
    let plan = c.tmp.path().join("plan.json");
    std::fs::write(
        &plan,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"{moved}","partition":0,"replicas":[1,2]}}]}}"#
        ),
    )
    .expect("write the reassignment plan");
    let plan = plan.display().to_string();
    let reassign = |action: &[&str]| {
        let mut args = vec![
            "--bootstrap-server",
            everyone.as_str(),
            "--reassignment-json-file",
            plan.as_str(),
        ];
        args.extend_from_slice(action);
        try_kafka_tool(REASSIGN, &args)
    };
    let (ok, out) = reassign(&["--execute"]);
    assert!(
        ok && out.stdout.contains(&format!(
            "Successfully started partition reassignment for {moved}-0"
        )),
        "--execute:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    // --verify reports "still in progress" until the new replica set is in place. Polled with
    // --preserve-throttles here; the plain --verify, which also clears replication throttles,
    // comes last.
    let done = format!("Reassignment of partition {moved}-0 is completed.");
    let out = wait_for(
        "kafka-reassign-partitions.sh --verify to stop reporting progress",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let (ok, out) = reassign(&["--verify", "--preserve-throttles"]);
            (!out.stdout.contains("is still in progress")).then_some((ok, out))
        },
    );
    assert!(
        out.0 && out.1.stdout.contains(&done),
        "--verify --preserve-throttles: want exit 0 and {done:?}:\n{}\n{}",
        out.1.stdout,
        out.1.stderr
    );
    let now = c.wait_partition(
        1,
        &moved,
        0,
        "on [1, 2], both in sync",
        Duration::from_secs(30),
        |v| v.replicas == vec![1, 2] && v.isr_set() == set(&[1, 2]),
    );
    assert!(now.epoch >= v.epoch);
    wait_for(
        "broker 0 to drop its copy",
        Duration::from_secs(30),
        POLL,
        || {
            partition_dir(&c.data_dir(0), &moved, 0)
                .is_none()
                .then_some(())
        },
    );
    acked.extend(rd_produce_all(
        &everyone,
        &moved,
        Some(0),
        100..120,
        &[("acks", "all")],
    ));
    let got = rd_consume_from_start(&everyone, &moved, &[0], 120, Duration::from_secs(30));
    assert_acknowledged_exactly(&got, &acked);
    c.wait_identical_logs(&[1, 2], &moved, 0);

    // The documented way to finish: --verify, which also removes the throttle configs
    // (IncrementalAlterConfigs deleting the broker-level `*.replication.throttled.rate` and the
    // topic-level `*.replication.throttled.replicas`), must exit 0.
    let (ok, out) = reassign(&["--verify"]);
    assert!(
        ok && out.stdout.contains(&done),
        "kafka-reassign-partitions.sh --verify: want exit 0 and {done:?}:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// A broker that comes back on an empty volume (a deleted PVC) refills its copies from the
/// leaders and rejoins the ISR; nothing acknowledged is lost while another in-sync copy
/// remained, even when the lost copy was the leader's.
#[test]
fn a_broker_back_on_an_empty_volume_refills_its_copies_from_the_leaders() {
    let _serial = serial();
    let mut c = start_cluster(3, 30_000);
    let topic = "lost-volume";
    let v = c.create_topic_on(0, topic, &[0, 1, 2]);
    assert_eq!(v.leader, 0);
    let load = ProducerLoad::start(c.bootstrap(&[0, 1, 2]), topic.to_string());
    load.wait_acked(300, "records acknowledged before the volume is lost");

    // Broker 0, the leader, loses its process and its volume.
    c.kill(0);
    std::fs::remove_dir_all(c.data_dir(0)).expect("remove broker 0's volume");
    let during = c.wait_partition(
        1,
        topic,
        0,
        "led by a surviving in-sync replica",
        Duration::from_secs(30),
        |v| v.leader >= 1 && !v.isr.contains(&0),
    );
    let at_loss = load.acked();
    load.wait_acked(at_loss + 200, "records acknowledged with the volume gone");

    // Back, empty: it copies the whole partition from the new leader and rejoins the ISR.
    c.spawn(0);
    c.wait_partition(
        1,
        topic,
        0,
        "all three replicas in sync again",
        Duration::from_secs(60),
        |v| v.isr_set() == set(&[0, 1, 2]),
    );
    let outcome = load.finish();
    assert!(
        outcome.failed.is_empty(),
        "{} deliveries failed, first: {:?}",
        outcome.failed.len(),
        outcome.failed.first()
    );
    // Every copy, the refilled one included, holds the same bytes; every acknowledged record
    // is read once, at its offset.
    c.wait_identical_logs(&[0, 1, 2], topic, 0);
    let got = rd_consume_from_start(
        &c.bootstrap(&[0, 1, 2]),
        topic,
        &[0],
        outcome.acked.len(),
        Duration::from_secs(60),
    );
    assert_acknowledged_exactly(&got, &outcome.acked);
    assert!(
        during.epoch > v.epoch,
        "a new leader epoch after the loss: {v:?} then {during:?}"
    );
}

/// A follower's fetch of what its leader appended is sent from the leader's segment file with
/// `sendfile` (`log::region`), and the copies are the leader's bytes exactly.
#[test]
fn followers_are_sent_what_the_leader_appended_from_its_file() {
    let _serial = serial();
    let c = start_cluster(3, 30_000);
    let topic = "zero-copy-followers";
    let v = c.create_topic_on(0, topic, &[0, 1, 2]);
    let leader = c.broker(v.leader).http_addr;
    let sent = || metric_sum(leader, "sluice_fetch_sendfile_bytes_total", "");
    assert_eq!(sent(), 0.0, "nothing sent before the first record");

    let p = rd_producer(
        &c.bootstrap(&[0, 1, 2]),
        &[
            ("acks", "all"),
            ("linger.ms", "20"),
            ("batch.size", "262144"),
        ],
    );
    let value = vec![b'z'; 8 << 10];
    let records = 256;
    for i in 0..records {
        let rec: rdkafka::producer::BaseRecord<'_, [u8], [u8], usize> =
            rdkafka::producer::BaseRecord::with_opaque_to(topic, i)
                .partition(0)
                .payload(&value[..]);
        if let Err((e, _)) = p.send(rec) {
            panic!("queue record {i}: {e}");
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    let acked = p.context().acked.lock().expect("lock").len();
    let failed = p.context().failed.lock().expect("lock").clone();
    assert_eq!(
        (acked, failed.len()),
        (records, 0),
        "first failure: {:?}",
        failed.first()
    );

    let log = c.wait_identical_logs(&[0, 1, 2], topic, 0);
    assert!(log.len() >= records * value.len(), "{} bytes", log.len());
    // No consumer has read the partition: whatever went out with sendfile went to followers,
    // each of which took the log once.
    let sent = sent();
    assert!(sent > 0.0, "the followers' fetches were sent from the file");
    assert!(
        sent <= 2.0 * log.len() as f64,
        "{sent} bytes for {} bytes twice",
        log.len()
    );
}

/// Log compaction on a replicated topic: every replica compacts its own copy, and a broker
/// back on an empty volume copies the leader's compacted batches (fewer records than offsets,
/// empty ones) and ends with the same table: the latest value of every key, every offset.
#[test]
fn a_replica_refilled_from_a_compacted_leader_holds_the_latest_value_of_every_key() {
    let _serial = serial();
    let mut flags = replication_flags(30_000);
    flags.extend([
        "--retention-check-interval-ms".to_string(),
        "100".to_string(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut c = Cluster::start(3, &flags);
    let topic = "compacted-table";
    let all = [0, 1, 2];
    let v = c.create(
        0,
        NewTopic::new(topic, 1, TopicReplication::Variable(&[&all]))
            .set("cleanup.policy", "compact")
            .set("segment.bytes", "2048")
            .set("min.cleanable.dirty.ratio", "0.01"),
    );
    let (keys, rounds) = (30usize, 6usize);
    let p = rd_producer(&c.bootstrap(&all), &[("acks", "all"), ("linger.ms", "0")]);
    let value = |round: usize, k: usize| format!("round {round} of k{k} {}", "y".repeat(30));
    for round in 0..rounds {
        for k in 0..keys {
            let key = format!("k{k}");
            let v = value(round, k);
            p.send(
                rdkafka::producer::BaseRecord::with_opaque_to(topic, round * keys + k)
                    .partition(0)
                    .key(key.as_bytes())
                    .payload(v.as_bytes()),
            )
            .expect("queue a record");
        }
        p.flush(Duration::from_secs(30)).expect("flush");
    }
    assert_eq!(p.context().acked.lock().expect("lock").len(), keys * rounds);
    let produced = (keys * rounds) as i64;
    // Every replica compacts its own copy (each logs it).
    let dir_name = format!("{topic}-0");
    wait_for(
        "every replica to compact its copy",
        Duration::from_secs(60),
        POLL,
        || {
            all.iter()
                .all(|id| {
                    std::fs::read_to_string(c.log_path(*id)).is_ok_and(|l| {
                        l.lines()
                            .any(|line| line.contains("compacted") && line.contains(&dir_name))
                    })
                })
                .then_some(())
        },
    );

    // A follower loses its volume and copies the leader's compacted log.
    let f = *all.iter().find(|id| **id != v.leader).expect("a follower");
    c.kill(f);
    std::fs::remove_dir_all(c.data_dir(f)).expect("remove the follower's volume");
    c.spawn(f);
    c.wait_partition(
        v.leader,
        topic,
        0,
        "the refilled replica back in sync",
        Duration::from_secs(60),
        |v| v.isr_set() == set(&all),
    );
    c.kill(f);
    let log = sluice_broker::log::PartitionLog::open(
        partition_dir(&c.data_dir(f), topic, 0).expect("the refilled partition directory"),
        sluice_broker::log::LogConfig::default(),
    )
    .expect("open the refilled copy");
    assert_eq!(log.log_end_offset(), produced, "every offset copied");
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut count = 0;
    let mut off = 0;
    while off < log.high_watermark() {
        let r = log.read(off, 1 << 20).expect("read the copy");
        let records = sluice_broker::log::all_records(&r.records).expect("records");
        // The next read starts after the last batch returned (it may hold no record).
        let mut pos = 0;
        let mut next = off;
        while pos + 61 <= r.records.len() {
            let base = i64::from_be_bytes(r.records[pos..pos + 8].try_into().expect("8 bytes"));
            let len = i32::from_be_bytes(r.records[pos + 8..pos + 12].try_into().expect("4 bytes"));
            let delta = i32::from_be_bytes(r.records[pos + 23..pos + 27].try_into().expect("4"));
            next = base + i64::from(delta) + 1;
            pos += 12 + len as usize;
        }
        for (o, rec) in records.into_iter().filter(|(o, _)| *o >= off) {
            let k = String::from_utf8(rec.key.expect("a key")).expect("utf-8");
            let v = String::from_utf8(rec.value.expect("a value")).expect("utf-8");
            if let Some((prev, _)) = latest.get(&k) {
                assert!(o > *prev, "offsets rise");
            }
            latest.insert(k, (o, v));
            count += 1;
        }
        assert!(next > off, "a read at {off} moves on");
        off = next;
    }
    assert!(
        count < produced - keys as i64,
        "the copy is compacted: {count} of {produced} records"
    );
    assert_eq!(latest.len(), keys);
    for k in 0..keys {
        assert_eq!(latest[&format!("k{k}")].1, value(rounds - 1, k), "k{k}");
    }
}

/// The leader of many partitions is killed; a producer that learns the new leader from that
/// broker's own metadata sends it five pipelined idempotent batches at once (as clients with
/// `max.in.flight.requests.per.connection=5` do). The new leader may still be taking the
/// leaderships up then (a leader-epoch cache write each); every batch must be appended, in
/// sequence. A first batch refused while a later one is appended would leave the producer
/// retrying a sequence the leader has gone past, forever (the Kafka Streams exactly-once test
/// once hung on exactly that).
#[test]
fn pipelined_idempotent_batches_reach_a_new_leader_in_sequence() {
    const PARTITIONS: usize = 240;
    const BATCHES: i32 = 5;
    const RECORDS: i32 = 10;
    let _s = serial();
    let mut c = start_cluster(3, 10_000);
    let topic = topic_name("takeup");
    // Broker 1 leads every partition and broker 2 is next in line: killed, broker 1 hands
    // broker 2 all of them at once.
    let assignment: Vec<[i32; 3]> = (0..PARTITIONS).map(|_| [1, 2, 0]).collect();
    let assignment: Vec<&[i32]> = assignment.iter().map(|a| a.as_slice()).collect();
    c.create(
        0,
        NewTopic::new(
            &topic,
            PARTITIONS as i32,
            TopicReplication::Variable(&assignment),
        ),
    );
    let addr = c.kafka(2).parse().expect("broker address");
    let mut producer = RawClient::connect(addr);
    let resp = producer.send(
        &InitProducerIdRequest::default()
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1),
        4,
    );
    assert_eq!(resp.error_code, 0, "InitProducerId");
    let (pid, epoch) = (resp.producer_id.0, resp.producer_epoch);
    let mut poll = RawClient::connect(addr);
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(tname(&topic)))]))
        .with_allow_auto_topic_creation(false);

    c.kill(1);
    // As fast as broker 2 answers: the burst should land right after its metadata changed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let md = poll.send(&metadata, 12);
        let leader = md
            .topics
            .first()
            .and_then(|t| t.partitions.iter().find(|p| p.partition_index == 0))
            .map(|p| p.leader_id.0);
        if leader == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}-0: broker 2 did not name itself leader within 60 s (last: {leader:?})"
        );
    }
    let mut burst = Vec::new();
    for b in 0..BATCHES {
        let values: Vec<Vec<u8>> = (0..RECORDS)
            .map(|i| format!("batch {b} record {i}").into_bytes())
            .collect();
        let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let batch = encode_batch(&values, Compression::None, Some((pid, epoch, b * RECORDS)));
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(tname(&topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch)),
                ])]);
        burst.extend(producer.frame(&req, 9));
    }
    std::io::Write::write_all(&mut producer.stream, &burst).expect("write the burst");
    let answers: Vec<(i16, i64, Option<String>)> = (0..BATCHES)
        .map(|b| {
            let frame = producer
                .read_frame()
                .expect("read a produce answer")
                .unwrap_or_else(|| panic!("broker 2 closed the connection before answer {b}"));
            let mut buf = bytes::Bytes::from(frame);
            ResponseHeader::decode(&mut buf, ProduceResponse::header_version(9))
                .expect("produce response header");
            let resp = ProduceResponse::decode(&mut buf, 9).expect("produce response");
            let p = resp
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .expect("a partition in the produce answer");
            (
                p.error_code,
                p.base_offset,
                p.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect();
    let first = answers[0].1;
    for (b, (code, base, message)) in answers.iter().enumerate() {
        assert!(
            *code == 0 && *base == first + b as i64 * i64::from(RECORDS),
            "batch {b} (sequence {}): error {code} ({message:?}) at offset {base}; all answers: \
             {answers:?}",
            b as i32 * RECORDS
        );
    }
    let got = rd_consume_from_start(
        &c.bootstrap(&[0, 2]),
        &topic,
        &[0],
        (BATCHES * RECORDS) as usize,
        Duration::from_secs(60),
    );
    let read: Vec<(i64, String)> = got
        .iter()
        .map(|r| {
            let value = r.record.value.as_deref().unwrap_or_default();
            (r.offset, String::from_utf8_lossy(value).into_owned())
        })
        .collect();
    let sent: Vec<(i64, String)> = (0..BATCHES * RECORDS)
        .map(|n| {
            let value = format!("batch {} record {}", n / RECORDS, n % RECORDS);
            (first + i64::from(n), value)
        })
        .collect();
    assert_eq!(read, sent, "records read back, with their offsets");
}
