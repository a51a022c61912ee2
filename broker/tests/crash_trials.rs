//! Seeded crash trials (issue 13): the `sluice-broker` binary (real process, real files,
//! `fsync: always`) SIGKILLed at a moment drawn from a seed, restarted on the same data
//! directory and address, and checked:
//!
//! - every acknowledged record is read back once, byte-exact, at the offset its acknowledgement
//!   named; nothing in the log is a duplicate or a record nobody sent;
//! - an idempotent producer that goes on across the restart (retrying what was in flight) ends
//!   with every record acknowledged, once each, in order;
//! - committed consumer-group offsets never go backwards, and the group skips no record;
//! - with tiny segments, every roll is a kill candidate;
//! - retention deletes only whole old segments: the log start is a segment's base, never past a
//!   record retention may not delete yet (by time: one not yet expired; by size: the partition
//!   kept at least `retention.bytes`);
//! - three brokers: a partition moved to another pair of brokers, any of the three killed during
//!   the move: the move completes and the idempotent producer's records are all there, in order;
//! - a fourth broker joining the metadata quorum, any of the four killed around the join: four
//!   voters in the end, the producer's records all there (its own test and seeds:
//!   `SLUICE_JOIN_SEED`, `SLUICE_JOIN_TRIALS`);
//! - a voter removed from the quorum (UnregisterBroker, as the operator scales down), any of the
//!   four killed around the removal: three voters in the end, the removed broker in no role,
//!   the producer's records all there (its own test and seeds: `SLUICE_LEAVE_SEED`,
//!   `SLUICE_LEAVE_TRIALS`);
//! - transactions (librdkafka's transactional producer) to two topics, some aborted, some
//!   committing a group offset, with one broker or any of three killed: every committed
//!   transaction read whole read_committed, no aborted record, never a part of one, the group's
//!   offset the last committed transaction's (its own test and seeds: `SLUICE_TXN_SEED`,
//!   `SLUICE_TXN_TRIALS`).
//!
//! Each trial prints `crash trial: seed N scenario S (replay: SLUICE_SEED=N)`; the seed picks the
//! scenario (`seed % 6`) and everything else (kill moment and victim, batch sizes, commit
//! cadence, limits). The default test runs 20 trials (every scenario three or four times);
//! `SLUICE_SEED=<n>` replays one, `SLUICE_TRIALS=<n>` runs n, and the ignored `crash_campaign`
//! runs `SLUICE_TRIALS` (500 by default) and prints the totals. Figures: `docs/reliability.md`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const LONG: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// Seeds

/// `SLUICE_SEED` alone, else `SLUICE_TRIALS` (or `trials`) fresh seeds, the k-th of scenario
/// `k % SCENARIOS.len()`, so that a short run covers every scenario alike.
fn seeds(trials: u64) -> Vec<u64> {
    if let Some(seed) = env_number("SLUICE_SEED") {
        return vec![seed];
    }
    let trials = env_number("SLUICE_TRIALS").unwrap_or(trials);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut rng = Rng(now ^ u64::from(std::process::id()) << 32);
    let n = SCENARIOS.len() as u64;
    // Short enough to type back in.
    (0..trials)
        .map(|k| rng.below(1_000_000 / n) * n + k % n)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Scenarios and figures

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// acks=all, no idempotence, no retries: what was in flight at the kill fails.
    Produce,
    /// acks=all, idempotent, kept running across the restart: its retries are not duplicated.
    Idempotent,
    /// A group member committing synchronously while the kill comes.
    GroupCommits,
    /// segment.bytes 1 KiB: nearly every batch rolls a segment.
    SegmentRoll,
    /// Small segments and retention by size or by time, checked every 100 ms.
    Retention,
    /// Three brokers: a partition's two copies moved to another pair, any broker killed.
    Move,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario::Produce,
    Scenario::Idempotent,
    Scenario::GroupCommits,
    Scenario::SegmentRoll,
    Scenario::Retention,
    Scenario::Move,
];

/// What the trials proved, summed.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    trials: u64,
    /// Records whose acks=all acknowledgement came back (each checked after the restart).
    acked: u64,
    /// Acknowledged records not read back at their offset (any makes the trial fail).
    lost: u64,
    /// Records read back more than once (any makes the trial fail).
    duplicates: u64,
    /// Acknowledged records retention deleted, as it may.
    retained_away: u64,
    /// Acknowledged group commits.
    commits: u64,
}

impl Figures {
    fn add(&mut self, o: Figures) {
        self.trials += o.trials;
        self.acked += o.acked;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.retained_away += o.retained_away;
        self.commits += o.commits;
    }
}

// ---------------------------------------------------------------------------------------------
// One broker process at a fixed address, restartable

/// A loopback network for `n` brokers (`common::free_network`) in 127.250-254.x.x, apart from
/// 127.0.x.x and the networks replication.rs picks from.
fn free_network(n: i32) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let salt = u64::from(std::process::id()) << 20 | NEXT.fetch_add(1, Ordering::Relaxed);
    common::free_network(usize::try_from(n).unwrap_or(0), 250..255, salt)
}

/// One broker process (`Node::start`), or several forming a cluster (`Node::cluster`), each at
/// `<net>.<id + 1>`, with data directories that outlive restarts.
struct Node {
    tmp: tempfile::TempDir,
    net: String,
    /// Cluster members (node ids, cluster listeners, seeds) rather than a single broker.
    clustered: bool,
    flags: Vec<String>,
    brokers: Vec<Option<BinaryBroker>>,
}

impl Node {
    /// A single broker (no cluster flags).
    fn start(flags: &[&str]) -> Node {
        let mut n = Node::new(1, false, flags);
        n.spawn();
        n
    }

    /// `n` brokers; broker 0 founds the cluster, the others join; returns once each lists all.
    fn cluster(n: i32, flags: &[&str]) -> Node {
        let mut c = Node::new(n, true, flags);
        for id in 0..n {
            c.spawn_id(id);
        }
        for id in 0..n {
            wait_for("every broker in the metadata", LONG, POLL, || {
                let md = rd_consumer(&c.kafka(id), &[])
                    .fetch_metadata(None, Duration::from_secs(5))
                    .ok()?;
                (md.brokers().len() == n as usize).then_some(())
            });
        }
        c
    }

    fn new(n: i32, clustered: bool, flags: &[&str]) -> Node {
        Node {
            tmp: tempfile::tempdir().expect("trial temp dir"),
            net: free_network(n),
            clustered,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            brokers: (0..n).map(|_| None).collect(),
        }
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

    fn data_dir_of(&self, id: i32) -> PathBuf {
        self.tmp.path().join(format!("data{id}"))
    }

    fn log_path_of(&self, id: i32) -> PathBuf {
        self.tmp.path().join(format!("broker{id}.log"))
    }

    fn data_dir(&self) -> PathBuf {
        self.data_dir_of(0)
    }

    /// Every running broker's Kafka address (a client errors on a bootstrap address that
    /// refuses connections, such as a broker removed for good).
    fn bootstrap(&self) -> String {
        self.ids()
            .filter(|id| self.brokers[*id as usize].is_some())
            .map(|id| self.kafka(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self) {
        self.spawn_id(0);
    }

    fn spawn_id(&mut self, id: i32) {
        let b = self.launch_id(id).ready();
        self.brokers[id as usize] = Some(b);
    }

    /// Starts broker `id` without waiting for it to be ready.
    fn launch_id(&self, id: i32) -> Launched {
        assert!(
            self.brokers[id as usize].is_none(),
            "broker {id} is running"
        );
        let ip = format!("{}.{}", self.net, id + 1);
        let mut args = vec![
            "--data-dir".to_string(),
            self.data_dir_of(id).display().to_string(),
            "--listen".into(),
            self.kafka(id),
            "--http-listen".into(),
            format!("{ip}:0"),
            "--fsync".into(),
            "always".into(),
        ];
        if self.clustered {
            // Every broker gets every seed, as the operator does.
            let seeds: Vec<String> = self.ids().map(|i| self.cluster_addr(i)).collect();
            args.extend([
                "--node-id".into(),
                id.to_string(),
                "--cluster-listen".into(),
                self.cluster_addr(id),
                "--seeds".into(),
                seeds.join(","),
            ]);
        }
        args.extend(self.flags.iter().cloned());
        BinaryBroker::launch(&args, &self.log_path_of(id))
    }

    /// SIGKILL: no shutdown, no last fsync; the page cache survives, as it does when only the
    /// process dies.
    fn kill(&mut self) {
        self.kill_id(0);
    }

    fn kill_id(&mut self, id: i32) {
        self.brokers[id as usize]
            .take()
            .unwrap_or_else(|| panic!("broker {id} is not running"))
            .kill9();
    }

    fn create_topic(&self, topic: &str, configs: &[(String, String)]) {
        self.create_topic_on(topic, &[0], configs);
    }

    /// Creates `topic` with one partition on `replicas` (the first leads).
    fn create_topic_on(&self, topic: &str, replicas: &[i32], configs: &[(String, String)]) {
        let a = rd_admin(&self.bootstrap());
        let assignment = [replicas];
        let mut nt = if self.clustered {
            NewTopic::new(topic, 1, TopicReplication::Variable(&assignment))
        } else {
            NewTopic::new(topic, 1, TopicReplication::Fixed(1))
        };
        for (k, v) in configs {
            nt = nt.set(k, v);
        }
        let rt = broker_runtime();
        let res = rt
            .block_on(a.create_topics([&nt], &admin_opts()))
            .expect("create_topics request");
        assert!(res.iter().all(Result::is_ok), "create {topic}: {res:?}");
    }

    /// The partition's segment files: (base offset, bytes), oldest first.
    fn segments(&self, topic: &str) -> Vec<(i64, u64)> {
        segment_files(&self.data_dir(), topic, 0)
            .iter()
            .map(|p| {
                let base = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("segment file name {}", p.display()));
                (base, std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            })
            .collect()
    }
}

impl Drop for Node {
    /// A failing trial shows the end of each broker's log (every run).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for id in self.ids() {
            let log = std::fs::read_to_string(self.log_path_of(id)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(200)..];
            eprintln!(
                "==== broker {id} log, last {} lines\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load: a producer on a thread of its own

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How the producer thread writes.
#[derive(Clone)]
struct ProducerSpec {
    idempotent: bool,
    linger_ms: u64,
    /// librdkafka's batch.num.messages: small batches make many segments of the tiny ones.
    batch_records: u64,
    /// Records below this index carry a timestamp two hours old (retention by time).
    old_below: u64,
}

struct ProducerLoad {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<ProducerOutcome>>,
}

struct ProducerOutcome {
    sent: u64,
    acked: Vec<(u64, i32, i64)>,
    failed: Vec<(u64, String)>,
}

/// Enqueues record `i` to partition 0 with its timestamp.
fn send_at(p: &TestProducer, topic: &str, i: u64, ts: i64) {
    let r = test_record(i);
    let mut h = rdkafka::message::OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        h = h.insert(rdkafka::message::Header {
            key: k,
            value: v.as_deref(),
        });
    }
    let mut rec: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, i as usize)
        .partition(0)
        .timestamp(ts)
        .headers(h);
    if let Some(k) = &r.key {
        rec = rec.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        rec = rec.payload(v.as_slice());
    }
    for _ in 0..1000 {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, back)) => {
                // Queue full: let delivery reports drain it.
                rec = back;
                p.poll(Duration::from_millis(10));
            }
        }
    }
    panic!("producer queue stayed full while sending record {i}");
}

impl ProducerLoad {
    fn start(bootstrap: String, topic: String, spec: ProducerSpec) -> ProducerLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, acked2, sent2) = (Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&sent));
        let thread = std::thread::spawn(move || {
            let linger = spec.linger_ms.to_string();
            let batch = spec.batch_records.to_string();
            let mut cfg = vec![
                ("acks", "all"),
                ("linger.ms", linger.as_str()),
                ("batch.num.messages", batch.as_str()),
            ];
            if spec.idempotent {
                // Longer than any restart: nothing may fail for want of time.
                cfg.extend([
                    ("enable.idempotence", "true"),
                    ("message.timeout.ms", "60000"),
                ]);
            } else {
                // Without idempotence a retry may duplicate a record the dead broker had
                // written; with none, what was in flight at the kill fails instead.
                cfg.extend([
                    ("enable.idempotence", "false"),
                    ("retries", "0"),
                    ("message.timeout.ms", "10000"),
                ]);
            }
            let p = rd_producer(&bootstrap, &cfg);
            let old = now_ms() - 2 * 3600 * 1000;
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let ts = if i < spec.old_below { old } else { now_ms() };
                send_at(&p, &topic, i, ts);
                i += 1;
                sent2.store(i, Ordering::Relaxed);
                p.poll(Duration::ZERO);
                if i % 10 == 0 {
                    // Pacing, not waiting: keeps the load steady.
                    std::thread::sleep(Duration::from_millis(5));
                }
                // At most a few hundred records unacknowledged, so that the run ends soon
                // after it is stopped whatever the broker's pace (or its absence).
                while p.in_flight_count() > 300 && !stop2.load(Ordering::Relaxed) {
                    p.poll(Duration::from_millis(10));
                }
                let n = p.context().acked.lock().expect("lock").len();
                acked2.store(n as u64, Ordering::Relaxed);
            }
            let _ = p.flush(LONG);
            let log = p.context();
            let outcome = ProducerOutcome {
                sent: i,
                acked: log.acked.lock().expect("lock").clone(),
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

    fn wait_acked(&self, n: u64, what: &str) {
        wait_for(what, LONG, POLL, || (self.acked() >= n).then_some(()));
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

// ---------------------------------------------------------------------------------------------
// Checks

/// Everything the partition holds from its log start, read with a CRC-checking consumer.
fn read_all(node: &Node, topic: &str) -> (i64, Vec<Consumed>) {
    let bs = node.bootstrap();
    let (low, high) = rd_watermarks(&bs, topic, 0);
    if high == low {
        return (low, Vec::new());
    }
    let got = rd_consume_from_start(&bs, topic, &[0], (high - low) as usize, LONG);
    (low, got)
}

/// Checks the log read back from `log_start` against the acknowledgements: every record is one
/// that was sent, byte-exact, at most once, at increasing offsets; every acknowledged record at
/// or above the log start is there at its acknowledged offset. Returns figures (acknowledged
/// records below the log start count as retained away: the caller judges whether retention
/// could delete them).
fn check_log(
    seed: u64,
    log_start: i64,
    got: &[Consumed],
    acked: &[(u64, i32, i64)],
    sent: u64,
) -> Figures {
    let mut at: BTreeMap<u64, i64> = BTreeMap::new();
    for (i, _, o) in acked {
        assert!(
            at.insert(*i, *o).is_none(),
            "seed {seed}: record {i} acknowledged twice"
        );
    }
    let mut seen: BTreeMap<u64, i64> = BTreeMap::new();
    let mut by_offset: BTreeMap<i64, u64> = BTreeMap::new();
    let mut f = Figures {
        trials: 1,
        acked: acked.len() as u64,
        ..Figures::default()
    };
    let mut last = log_start - 1;
    for c in got {
        let i = c.index();
        assert!(
            i < sent,
            "seed {seed}: offset {} holds record {i}, never sent",
            c.offset
        );
        assert_eq!(
            c.record,
            test_record(i),
            "seed {seed}: record {i} at offset {} differs from what was sent",
            c.offset
        );
        assert!(
            c.offset > last,
            "seed {seed}: offsets not increasing: {last} then {}",
            c.offset
        );
        last = c.offset;
        if seen.insert(i, c.offset).is_some() {
            f.duplicates += 1;
        }
        by_offset.insert(c.offset, i);
    }
    let mut lost = Vec::new();
    for (i, o) in &at {
        if *o < log_start {
            f.retained_away += 1;
        } else if by_offset.get(o) != Some(i) {
            lost.push((*i, *o, by_offset.get(o).copied()));
        }
    }
    f.lost = lost.len() as u64;
    assert!(
        lost.is_empty(),
        "seed {seed}: {} acknowledged records lost (idx, acknowledged offset, record there now), e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(
        f.duplicates, 0,
        "seed {seed}: records read back more than once"
    );
    f
}

// ---------------------------------------------------------------------------------------------
// Trials

/// The kill moment: after `after` acknowledgements (of records or commits) and `delay_ms`.
struct KillAt {
    after: u64,
    delay_ms: u64,
}

impl KillAt {
    fn draw(rng: &mut Rng, most: u64) -> KillAt {
        KillAt {
            after: rng.below(most),
            delay_ms: rng.below(30),
        }
    }
}

fn trial(seed: u64) -> Figures {
    let scenario = SCENARIOS[(seed % SCENARIOS.len() as u64) as usize];
    println!("crash trial: seed {seed} scenario {scenario:?} (replay: SLUICE_SEED={seed})");
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    let f = match scenario {
        Scenario::Produce => produce_trial(seed, &mut rng, false, &[]),
        Scenario::Idempotent => produce_trial(seed, &mut rng, true, &[]),
        Scenario::SegmentRoll => {
            let idempotent = rng.chance(50);
            produce_trial(seed, &mut rng, idempotent, &[("segment.bytes", "1024")])
        }
        Scenario::GroupCommits => group_trial(seed, &mut rng),
        Scenario::Retention => retention_trial(seed, &mut rng),
        Scenario::Move => move_trial(seed, &mut rng),
    };
    println!(
        "seed {seed}: {} acknowledged, {} lost, {} duplicates, {} retained away, {} commits ({:?})",
        f.acked,
        f.lost,
        f.duplicates,
        f.retained_away,
        f.commits,
        t0.elapsed()
    );
    f
}

fn topic_configs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A producer writes; the broker is killed at the drawn moment and restarted at once; the
/// producer goes on until some records are acknowledged by the new process, then everything is
/// read back.
fn produce_trial(seed: u64, rng: &mut Rng, idempotent: bool, configs: &[(&str, &str)]) -> Figures {
    let spec = ProducerSpec {
        idempotent,
        linger_ms: rng.below(6),
        batch_records: [1, 4, 16, 500][rng.below(4) as usize],
        old_below: 0,
    };
    let kill = KillAt::draw(rng, 600);
    let mut node = Node::start(&[]);
    let topic = topic_name("crash");
    node.create_topic(&topic, &topic_configs(configs));
    let (outcome, _) = produce_across_a_kill(seed, &mut node, &topic, spec, &kill);
    let (log_start, got) = read_all(&node, &topic);
    assert_eq!(log_start, 0, "seed {seed}: log start without retention");
    let f = check_log(seed, log_start, &got, &outcome.acked, outcome.sent);
    if idempotent {
        // Every record was acknowledged once, in order: offset = index, nothing else in the log.
        assert!(
            outcome.failed.is_empty(),
            "seed {seed}: {} idempotent deliveries failed, first {:?}",
            outcome.failed.len(),
            outcome.failed.first()
        );
        assert_eq!(
            outcome.acked.len() as u64,
            outcome.sent,
            "seed {seed}: acknowledgements"
        );
        assert_eq!(
            got.len() as u64,
            outcome.sent,
            "seed {seed}: records in the log"
        );
        assert_each_at_its_index(&got);
    }
    if configs.iter().any(|(k, _)| *k == "segment.bytes") {
        let segs = node.segments(&topic);
        assert!(
            segs.len() > 2,
            "seed {seed}: only {} segments with segment.bytes 1024",
            segs.len()
        );
    }
    f
}

/// Runs the producer, kills the broker at `kill`, restarts it, and lets the producer go on until
/// 100 records more are acknowledged. Returns the outcome and the acknowledgements counted at
/// the kill.
fn produce_across_a_kill(
    seed: u64,
    node: &mut Node,
    topic: &str,
    spec: ProducerSpec,
    kill: &KillAt,
) -> (ProducerOutcome, u64) {
    let producer = ProducerLoad::start(node.bootstrap(), topic.to_string(), spec);
    producer.wait_acked(kill.after, "acknowledgements before the kill");
    std::thread::sleep(Duration::from_millis(kill.delay_ms));
    node.kill();
    let at_kill = producer.acked();
    let unacked = producer.sent.load(Ordering::Relaxed) - at_kill;
    println!("seed {seed}: killed after {at_kill} acknowledgements, {unacked} records sent and not yet acknowledged");
    node.spawn();
    producer.wait_acked(at_kill + 100, "acknowledgements after the restart");
    let outcome = producer.finish();
    (outcome, at_kill)
}

/// segment.bytes of the retention trials: a few batches each.
const RETENTION_SEGMENT: u64 = 8192;

/// Small segments and retention checked every 100 ms, by size or by time (records of the first
/// stretch stamped two hours ago), with the kill drawn anywhere in it.
fn retention_trial(seed: u64, rng: &mut Rng) -> Figures {
    let by_time = rng.chance(50);
    let retention_bytes = (3 + rng.below(6)) * RETENTION_SEGMENT;
    let old_below = if by_time { 100 + rng.below(300) } else { 0 };
    let spec = ProducerSpec {
        idempotent: rng.chance(50),
        linger_ms: rng.below(6),
        batch_records: 1 + rng.below(8),
        old_below,
    };
    let kill = KillAt::draw(rng, 600);
    let mut node = Node::start(&["--retention-check-interval-ms", "100"]);
    let topic = topic_name("crash-retention");
    let mut configs = vec![("segment.bytes".to_string(), RETENTION_SEGMENT.to_string())];
    if by_time {
        configs.push(("retention.ms".into(), "3600000".into()));
    } else {
        configs.push(("retention.bytes".into(), retention_bytes.to_string()));
    }
    node.create_topic(&topic, &configs);
    let (outcome, _) = produce_across_a_kill(seed, &mut node, &topic, spec, &kill);
    let acked_at: BTreeMap<u64, i64> = outcome.acked.iter().map(|(i, _, o)| (*i, *o)).collect();

    // Let retention finish what it may delete before reading (a read racing a deletion would
    // see its start move): by time, until the first segment holds an unexpired record; by
    // size, until deleting the first segment would leave less than retention.bytes.
    let expired_before = now_ms() - 3_600_000;
    wait_for(
        "retention to settle",
        LONG,
        Duration::from_millis(100),
        || {
            let segs = node.segments(&topic);
            if segs.len() < 2 {
                return Some(());
            }
            if by_time {
                let (code, recs) = first_segment_records(&node, &topic, segs[0].0)?;
                (code == 0
                    && recs
                        .iter()
                        .any(|(o, ts)| *o < segs[1].0 && *ts > expired_before))
                .then_some(())
            } else {
                let total: u64 = segs.iter().map(|s| s.1).sum();
                (total - segs[0].1 < retention_bytes).then_some(())
            }
        },
    );
    let (log_start, got) = read_all(&node, &topic);
    let segs = node.segments(&topic);
    assert_eq!(
        segs.first().map(|s| s.0),
        Some(log_start),
        "seed {seed}: the log start is not the first segment's base: only whole segments go"
    );
    if by_time {
        // Nothing stamped now is older than retention.ms: every such record stays.
        for (i, o) in acked_at.range(old_below..) {
            assert!(
                *o >= log_start,
                "seed {seed}: unexpired record {i} at offset {o} deleted (log start {log_start})"
            );
        }
    } else if log_start > 0 {
        // A segment goes only while the rest is at least retention.bytes.
        let kept: u64 = segs.iter().map(|s| s.1).sum();
        assert!(
            kept >= retention_bytes,
            "seed {seed}: {kept} bytes kept, retention.bytes {retention_bytes}"
        );
    }
    let f = check_log(seed, log_start, &got, &outcome.acked, outcome.sent);
    if every_record_acked(&outcome) {
        let offsets: Vec<i64> = got.iter().map(|c| c.offset).collect();
        assert_eq!(
            offsets,
            (log_start..log_start + got.len() as i64).collect::<Vec<_>>(),
            "seed {seed}: gaps in the retained log"
        );
    }
    f
}

/// (offset, timestamp) of the records a Fetch at `offset` answers, and its error code; None
/// when the broker did not answer.
fn first_segment_records(node: &Node, topic: &str, offset: i64) -> Option<(i16, Vec<(i64, i64)>)> {
    let addr = node.bootstrap().parse().expect("broker address");
    let mut c = RawClient::try_connect(addr, Duration::from_secs(5)).ok()?;
    let f = raw_fetch(&mut c, topic, 0, offset, 0, 1);
    if f.error_code != 0 {
        return Some((f.error_code, Vec::new()));
    }
    let recs = decoded_records(&f.records)
        .iter()
        .map(|r| (r.offset, r.timestamp))
        .collect();
    Some((0, recs))
}

/// Every record sent was acknowledged (always so for the idempotent producer): the log then has
/// no gap either.
fn every_record_acked(o: &ProducerOutcome) -> bool {
    o.failed.is_empty() && o.acked.len() as u64 == o.sent
}

/// What the group member saw.
#[derive(Default)]
struct GroupLog {
    consumed: BTreeSet<u64>,
    /// Offsets of acknowledged synchronous commits, in order.
    commits: Vec<i64>,
    /// Committed offsets read back (OffsetFetch), in order.
    read_back: Vec<i64>,
    errors: Vec<String>,
    done: bool,
}

/// A group member reads `total` records and commits synchronously every `every` records (and
/// at the end), until it has committed `total`.
fn group_member(
    bootstrap: String,
    topic: String,
    group: String,
    total: i64,
    every: u64,
    log: Arc<Mutex<GroupLog>>,
    stop: Arc<AtomicBool>,
) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .set("broker.address.family", "v4")
        .set("fetch.wait.max.ms", "100")
        // The broker's minimum: a JoinGroup answered MEMBER_ID_REQUIRED just before the kill
        // leaves a pending member the next rebalance waits for until its session ends.
        .set("session.timeout.ms", "6000")
        .create()
        .expect("create the group consumer");
    c.subscribe(&[&topic]).expect("subscribe");
    let mut since_commit = 0u64;
    let mut next = 0i64;
    while !stop.load(Ordering::Relaxed) {
        match c.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let got = to_consumed(&m);
                assert_eq!(
                    got.record,
                    test_record(got.index()),
                    "group read record altered"
                );
                log.lock().expect("lock").consumed.insert(got.index());
                next = got.offset + 1;
                since_commit += 1;
                // Pacing, not waiting: spreads the commits over a second or two, so that the
                // drawn kill falls among them.
                std::thread::sleep(Duration::from_millis(2));
            }
            Some(Err(e)) => log.lock().expect("lock").errors.push(e.to_string()),
            None => {}
        }
        if since_commit >= every || (next == total && since_commit > 0) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Offset(next))
                .expect("add partition");
            match c.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    log.lock().expect("lock").commits.push(next);
                    since_commit = 0;
                }
                Err(e) => log.lock().expect("lock").errors.push(e.to_string()),
            }
            if let Ok(tpl) = c.committed(Duration::from_secs(2)) {
                if let Some(Offset::Offset(o)) = tpl.find_partition(&topic, 0).map(|p| p.offset()) {
                    log.lock().expect("lock").read_back.push(o);
                }
            }
        }
        let mut l = log.lock().expect("lock");
        if l.commits.last() == Some(&total) {
            l.done = true;
            break;
        }
    }
}

/// Records first, then a group member consuming and committing; the broker is killed after the
/// drawn number of acknowledged commits, restarted, and the member goes on to the end.
fn group_trial(seed: u64, rng: &mut Rng) -> Figures {
    let total = 300 + rng.below(500) as i64;
    let every = 1 + rng.below(8);
    let kill = KillAt::draw(rng, (total as u64 / every).max(2) - 1);
    let mut node = Node::start(&[]);
    let topic = topic_name("crash-group");
    let group = format!("{topic}-g");
    node.create_topic(&topic, &[]);
    let acked = rd_produce_all(
        &node.bootstrap(),
        &topic,
        Some(0),
        0..total as u64,
        &[("acks", "all")],
    );

    let log = Arc::new(Mutex::new(GroupLog::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let member = {
        let (bs, t, g, l, s) = (
            node.bootstrap(),
            topic.clone(),
            group.clone(),
            Arc::clone(&log),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || group_member(bs, t, g, total, every, l, s))
    };
    let commits = || log.lock().expect("lock").commits.len() as u64;
    wait_for("commits before the kill", LONG, POLL, || {
        (commits() >= kill.after).then_some(())
    });
    std::thread::sleep(Duration::from_millis(kill.delay_ms));
    node.kill();
    let (acked_before, last_before) = {
        let l = log.lock().expect("lock");
        (l.commits.len(), l.commits.last().copied().unwrap_or(-1))
    };
    println!("seed {seed}: killed after {acked_before} acknowledged commits (last {last_before})");
    node.spawn();
    // What the coordinator holds now, read by a client outside the group.
    let now = rd_committed(&node.bootstrap(), &group, &topic, 1);
    let after = now.get(&0).copied().unwrap_or(-1);
    println!("seed {seed}: committed offset {after} after the restart");
    assert!(
        after >= last_before,
        "seed {seed}: committed offset {after} after the restart, {last_before} was acknowledged before the kill"
    );
    wait_for("the group to commit every record", LONG, POLL, || {
        log.lock().expect("lock").done.then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    member
        .join()
        .unwrap_or_else(|_| panic!("seed {seed}: the group member panicked"));
    let l = log.lock().expect("lock");
    for w in l.commits.windows(2) {
        assert!(
            w[0] <= w[1],
            "seed {seed}: acknowledged commits went back from {} to {}",
            w[0],
            w[1]
        );
    }
    for w in l.read_back.windows(2) {
        assert!(
            w[0] <= w[1],
            "seed {seed}: committed offset read back went from {} to {}",
            w[0],
            w[1]
        );
    }
    let everything: BTreeSet<u64> = (0..total as u64).collect();
    assert_eq!(
        l.consumed, everything,
        "seed {seed}: records the group read"
    );
    let commits_acked = l.commits.len() as u64;
    drop(l);
    let (log_start, got) = read_all(&node, &topic);
    let mut f = check_log(seed, log_start, &got, &acked, total as u64);
    f.commits = commits_acked;
    f
}

/// (leader, replicas, in-sync replicas) of partition 0 of `topic` per Metadata from any broker.
fn layout(node: &Node, topic: &str) -> Option<(i32, Vec<i32>, BTreeSet<i32>)> {
    let md = rd_consumer(&node.bootstrap(), &[("allow.auto.create.topics", "false")])
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let p = md.topics().first()?.partitions().first()?;
    Some((
        p.leader(),
        p.replicas().to_vec(),
        p.isr().iter().copied().collect(),
    ))
}

/// Led by one of `want`, which are the replicas, in that order, all in sync.
fn settled_on(want: &[i32], layout: &(i32, Vec<i32>, BTreeSet<i32>)) -> bool {
    let (leader, replicas, isr) = layout;
    let want_set: BTreeSet<i32> = want.iter().copied().collect();
    want.contains(leader) && replicas.as_slice() == want && *isr == want_set
}

/// AlterPartitionReassignments of partition 0 of `topic` to `replicas`, through any broker that
/// takes it (the quorum may be electing a leader).
fn reassign(node: &Node, topic: &str, replicas: &[i32]) {
    reassign_partition(node, topic, 0, replicas)
}

/// AlterPartitionReassignments of partition `partition` of `topic` to `replicas`, as
/// [`reassign`].
fn reassign_partition(node: &Node, topic: &str, partition: i32, replicas: &[i32]) {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId};
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(tname(topic))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(Some(
                    replicas.iter().copied().map(BrokerId).collect(),
                ))])]);
    wait_for(
        "the reassignment to be accepted",
        LONG,
        Duration::from_millis(200),
        || {
            node.ids().find_map(|id| {
                let addr = node.kafka(id).parse().expect("broker address");
                let mut c = RawClient::try_connect(addr, Duration::from_secs(5)).ok()?;
                let resp = c.try_send(&req, 0).ok()?;
                let code = resp.responses.first()?.partitions.first()?.error_code;
                (resp.error_code == 0 && code == 0).then_some(())
            })
        },
    );
}

/// Three brokers, a partition of two copies, an idempotent acks=all producer; the partition is
/// moved to another pair (one copy stays, one is new) and a drawn broker (the leader, the copy
/// that stays, the new one or the one leaving, as the draw falls) is SIGKILLed at a drawn moment
/// of the move, then restarted. The move completes, and every acknowledged record is read back
/// once at its offset from the new replica set.
fn move_trial(seed: u64, rng: &mut Rng) -> Figures {
    let first = rng.below(3) as i32;
    let from = [first, (first + 1) % 3];
    let to = if rng.chance(50) {
        [(first + 1) % 3, (first + 2) % 3]
    } else {
        [(first + 2) % 3, first]
    };
    let victim = rng.below(3) as i32;
    let spec = ProducerSpec {
        idempotent: true,
        linger_ms: rng.below(6),
        batch_records: [1, 4, 16, 500][rng.below(4) as usize],
        old_below: 0,
    };
    // A longer log before the move makes a longer copy. The kill is timed from the move's
    // start: acknowledgements come in bursts too coarse for a move that takes a fraction of a
    // second.
    let before_move = 100 + rng.below(1000);
    let kill_ms = rng.below(400);
    let mut node = Node::cluster(3, &[]);
    let topic = topic_name("crash-move");
    node.create_topic_on(&topic, &from, &[]);
    wait_for("the partition led, both copies in sync", LONG, POLL, || {
        layout(&node, &topic)
            .filter(|l| settled_on(&from, l))
            .map(|_| ())
    });
    let producer = ProducerLoad::start(node.bootstrap(), topic.clone(), spec);
    producer.wait_acked(before_move, "records before the move");
    reassign(&node, &topic, &to);
    let moving = Instant::now();
    let before = layout(&node, &topic);
    std::thread::sleep(Duration::from_millis(kill_ms).saturating_sub(moving.elapsed()));
    node.kill_id(victim);
    let at_kill = producer.acked();
    let done = before.as_ref().is_some_and(|l| settled_on(&to, l));
    println!(
        "seed {seed}: moving {from:?} to {to:?}; killed broker {victim} {kill_ms} ms into the move, after {at_kill} acknowledgements, {} (leader, replicas, ISR just before: {before:?})",
        if done { "the move complete" } else { "the move under way" }
    );
    node.spawn_id(victim);
    wait_for(
        "the move to complete, the new copies in sync",
        LONG,
        POLL,
        || {
            layout(&node, &topic)
                .filter(|l| settled_on(&to, l))
                .map(|_| ())
        },
    );
    println!(
        "seed {seed}: move complete {:?} after it began",
        moving.elapsed()
    );
    producer.wait_acked(at_kill + 100, "acknowledgements after the restart");
    let outcome = producer.finish();
    assert!(
        outcome.failed.is_empty(),
        "seed {seed}: {} idempotent deliveries failed, first {:?}",
        outcome.failed.len(),
        outcome.failed.first()
    );
    assert_eq!(
        outcome.acked.len() as u64,
        outcome.sent,
        "seed {seed}: acknowledgements"
    );
    let (log_start, got) = read_all(&node, &topic);
    assert_eq!(log_start, 0, "seed {seed}: log start");
    let f = check_log(seed, log_start, &got, &outcome.acked, outcome.sent);
    assert_eq!(
        got.len() as u64,
        outcome.sent,
        "seed {seed}: records in the log"
    );
    assert_each_at_its_index(&got);
    f
}

/// (leader, voters, observers) of the metadata quorum per DescribeQuorum to broker `from`.
fn quorum(node: &Node, from: i32) -> Option<(i32, BTreeSet<i32>, BTreeSet<i32>)> {
    use kafka_protocol::messages::{describe_quorum_request, DescribeQuorumRequest};
    let addr = node.kafka(from).parse().expect("broker address");
    let mut c = RawClient::try_connect(addr, Duration::from_secs(5)).ok()?;
    let req = DescribeQuorumRequest::default().with_topics(vec![
        describe_quorum_request::TopicData::default()
            .with_topic_name(tname("__cluster_metadata"))
            .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
    ]);
    let q = c.try_send(&req, 2).ok()?;
    let p = q.topics.first()?.partitions.first()?;
    (q.error_code == 0 && p.error_code == 0).then(|| {
        (
            p.leader_id.0,
            p.current_voters.iter().map(|v| v.replica_id.0).collect(),
            p.observers.iter().map(|v| v.replica_id.0).collect(),
        )
    })
}

/// A quorum membership change under SIGKILL: three brokers (all voters) serve a partition of
/// three copies under an idempotent acks=all producer; a fourth broker starts and joins (a
/// learner, caught up, then promoted to voter); a drawn broker of the four (the quorum's leader,
/// a voter, a partition replica, or the one joining) is SIGKILLed a drawn 0-120 ms after the
/// fourth was launched, and restarted. The quorum ends with four voters and a leader, every
/// broker is live, and the producer's records are all there once, in order.
fn join_trial(seed: u64) -> Figures {
    println!("crash trial: seed {seed} scenario Join (replay: SLUICE_JOIN_SEED={seed})");
    let t0 = Instant::now();
    let mut rng = Rng(seed);
    let victim = rng.below(4) as i32;
    // The join takes about 100 ms here (start, Join, catch up, promotion): the kill is drawn
    // around it.
    let kill_ms = rng.below(120);
    let spec = ProducerSpec {
        idempotent: true,
        linger_ms: rng.below(6),
        batch_records: [1, 4, 16, 500][rng.below(4) as usize],
        old_below: 0,
    };
    let before_join = 100 + rng.below(500);
    let mut node = Node::new(4, true, &[]);
    for id in 0..3 {
        node.spawn_id(id);
    }
    let live = |node: &Node, from: i32, n: usize| {
        let md = rd_consumer(&node.kafka(from), &[])
            .fetch_metadata(None, Duration::from_secs(5))
            .ok()?;
        (md.brokers().len() == n).then_some(())
    };
    for id in 0..3 {
        wait_for("three live brokers", LONG, POLL, || live(&node, id, 3));
    }
    let topic = topic_name("crash-join");
    let replicas = [0, 1, 2];
    node.create_topic_on(&topic, &replicas, &[]);
    wait_for("the partition led, its copies in sync", LONG, POLL, || {
        layout(&node, &topic)
            .filter(|l| settled_on(&replicas, l))
            .map(|_| ())
    });
    let producer = ProducerLoad::start(node.bootstrap(), topic.clone(), spec);
    producer.wait_acked(before_join, "records before the join");
    let before = quorum(&node, 0);
    let joining = node.launch_id(3);
    std::thread::sleep(Duration::from_millis(kill_ms));
    // The leader's view: broker 3 not yet a member, a learner (an observer), or a voter.
    let at_kill_quorum = quorum(&node, (victim + 1) % 3);
    let at_kill = producer.acked();
    let joining = if victim == 3 {
        joining.kill9();
        None
    } else {
        node.kill_id(victim);
        Some(joining)
    };
    println!(
        "seed {seed}: broker 3 joining; killed broker {victim} {kill_ms} ms after its launch, after {at_kill} acknowledgements (quorum before the launch: {before:?}; at the kill: {at_kill_quorum:?})"
    );
    node.spawn_id(victim);
    if let Some(joining) = joining {
        // Still joining, or joined while the victim was down.
        node.brokers[3] = Some(joining.ready());
    }
    let everyone: BTreeSet<i32> = (0..4).collect();
    for id in 0..4 {
        wait_for("four live brokers", LONG, POLL, || live(&node, id, 4));
    }
    let settled = wait_for("four voters and a leader", LONG, POLL, || {
        let (leader, voters, _) = quorum(&node, 0)?;
        (leader >= 0 && voters == everyone).then_some((leader, voters))
    });
    println!(
        "seed {seed}: quorum after: leader {} voters {:?} ({:?})",
        settled.0,
        settled.1,
        t0.elapsed()
    );
    wait_for("the partition's copies in sync again", LONG, POLL, || {
        layout(&node, &topic)
            .filter(|l| settled_on(&replicas, l))
            .map(|_| ())
    });
    producer.wait_acked(at_kill + 100, "acknowledgements after the restart");
    let outcome = producer.finish();
    assert!(
        outcome.failed.is_empty(),
        "seed {seed}: {} idempotent deliveries failed, first {:?}",
        outcome.failed.len(),
        outcome.failed.first()
    );
    assert_eq!(
        outcome.acked.len() as u64,
        outcome.sent,
        "seed {seed}: acknowledgements"
    );
    let (log_start, got) = read_all(&node, &topic);
    assert_eq!(log_start, 0, "seed {seed}: log start");
    let f = check_log(seed, log_start, &got, &outcome.acked, outcome.sent);
    assert_eq!(
        got.len() as u64,
        outcome.sent,
        "seed {seed}: records in the log"
    );
    assert_each_at_its_index(&got);
    f
}

/// UnregisterBroker(`broker`) sent to the broker at `addr`, as the operator's scale-down sends it:
/// `Err` with the answer's error code and message, or why no answer came (a killed broker, a
/// refused connection).
fn unregister(addr: &str, broker: i32) -> Result<(), String> {
    use kafka_protocol::messages::{BrokerId, UnregisterBrokerRequest};
    let addr = addr.parse().expect("broker address");
    let mut c = RawClient::try_connect(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let r = c.try_send(
        &UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker)),
        0,
    )?;
    match r.error_code {
        0 => Ok(()),
        code => Err(format!(
            "error {code}: {}",
            r.error_message.as_ref().map_or("", |m| m.as_str())
        )),
    }
}

/// Every partition, of every topic (`__consumer_offsets` too), with a copy on `broker`, per
/// Metadata: (topic, partition, replicas).
fn partitions_on(node: &Node, broker: i32) -> Option<Vec<(String, i32, Vec<i32>)>> {
    let md = rd_consumer(&node.bootstrap(), &[("allow.auto.create.topics", "false")])
        .fetch_metadata(None, Duration::from_secs(5))
        .ok()?;
    let mut out = Vec::new();
    for t in md.topics() {
        for p in t.partitions() {
            if p.replicas().contains(&broker) {
                out.push((t.name().to_string(), p.id(), p.replicas().to_vec()));
            }
        }
    }
    Some(out)
}

/// The broker ids Metadata from broker `from` lists.
fn registered(node: &Node, from: i32) -> Option<BTreeSet<i32>> {
    let md = rd_consumer(&node.kafka(from), &[])
        .fetch_metadata(None, Duration::from_secs(5))
        .ok()?;
    Some(md.brokers().iter().map(|b| b.id()).collect())
}

/// Who a leave trial killed, by its role at the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaveVictim {
    /// The metadata quorum's leader (not the leaving broker).
    QuorumLeader,
    /// A voter that stays, not the leader.
    OtherVoter,
    /// The broker being removed.
    Leaving,
}

/// What one leave trial saw, beside its figures.
struct LeaveFacts {
    victim: LeaveVictim,
    /// Broker 3 was still a voter in the quorum's view just before the kill.
    voter_at_kill: bool,
    /// The first UnregisterBroker's answer.
    first_answer: Result<(), String>,
    /// UnregisterBroker requests the operator's loop sent after the kill.
    retries: u64,
}

/// The leaving broker: the operator's scale-down removes the highest ordinals.
const LEAVING: i32 = 3;

/// A voter removed under SIGKILL, the way the operator scales down (`reconcile/scale_down.rs`):
/// four brokers, all voters; a partition of three copies, one of them on broker 3, is moved off
/// broker 3 first (the drain) under an idempotent acks=all producer; then UnregisterBroker(3)
/// goes to broker 0 (the operator asks the lowest remaining broker), and a drawn broker (the
/// quorum's leader, another voter, or broker 3) is SIGKILLed a drawn 0-80 ms after it was sent,
/// and restarted. Then the operator's loop: while Metadata lists broker 3, UnregisterBroker(3)
/// again (through the lowest remaining broker); once it does not, broker 3 is stopped for good
/// (the StatefulSet shrinks). Checks: the quorum ends with a leader and voters 0, 1 and 2 and no
/// broker 3 in any role, in each remaining broker's view; Metadata lists 0, 1 and 2; the
/// partition's copies are in sync; no delivery failed and the log holds exactly records
/// `0..sent`, record *i* at offset *i*.
fn leave_trial(seed: u64) -> (Figures, LeaveFacts) {
    println!("crash trial: seed {seed} scenario Leave (replay: SLUICE_LEAVE_SEED={seed})");
    let t0 = Instant::now();
    let mut rng = Rng(seed);
    let victim = rng.below(4) as i32;
    // UnregisterBroker takes a few tens of ms here (a metadata entry, then the two membership
    // changes of the quorum): the kill is drawn around it.
    let kill_ms = rng.below(80);
    let spec = ProducerSpec {
        idempotent: true,
        linger_ms: rng.below(6),
        batch_records: [1, 4, 16, 500][rng.below(4) as usize],
        old_below: 0,
    };
    let before_move = 100 + rng.below(500);
    // The partition's copies: broker 3 and two of the three that stay, in a drawn order (so
    // broker 3 leads it sometimes); moved to the same with broker 3 replaced by the third.
    let skip = rng.below(3) as i32;
    let mut from: Vec<i32> = (0..3).filter(|id| *id != skip).collect();
    from.insert(rng.below(3) as usize, LEAVING);
    let to: Vec<i32> = from
        .iter()
        .map(|id| if *id == LEAVING { skip } else { *id })
        .collect();

    let mut node = Node::new(4, true, &[]);
    for id in 0..4 {
        node.spawn_id(id);
    }
    let everyone: BTreeSet<i32> = (0..4).collect();
    wait_for("four voters and a leader", LONG, POLL, || {
        let (leader, voters, _) = quorum(&node, 0)?;
        (leader >= 0 && voters == everyone).then_some(())
    });
    for id in 0..4 {
        wait_for("four registered brokers", LONG, POLL, || {
            (registered(&node, id)? == everyone).then_some(())
        });
    }
    let topic = topic_name("crash-leave");
    node.create_topic_on(&topic, &from, &[]);
    wait_for("the partition led, its copies in sync", LONG, POLL, || {
        layout(&node, &topic)
            .filter(|l| settled_on(&from, l))
            .map(|_| ())
    });
    let producer = ProducerLoad::start(node.bootstrap(), topic.clone(), spec);
    producer.wait_acked(before_move, "records before the drain");
    // The drain moves every partition off broker 3, `__consumer_offsets`' too (created with
    // the cluster), as the operator's does: broker 3's copy goes to a broker without one.
    reassign(&node, &topic, &to);
    let offsets = partitions_on(&node, LEAVING)
        .unwrap_or_else(|| panic!("seed {seed}: no metadata to plan the drain with"));
    for (t, p, replicas) in offsets.iter().filter(|(t, ..)| *t != topic) {
        let free = (0..3)
            .find(|id| !replicas.contains(id))
            .unwrap_or_else(|| panic!("seed {seed}: {t}-{p} has four copies: {replicas:?}"));
        let moved: Vec<i32> = replicas
            .iter()
            .map(|id| if *id == LEAVING { free } else { *id })
            .collect();
        reassign_partition(&node, t, *p, &moved);
    }
    wait_for(
        "the drain: every partition moved off broker 3",
        LONG,
        POLL,
        || {
            let left = partitions_on(&node, LEAVING)?;
            let settled = layout(&node, &topic).is_some_and(|l| settled_on(&to, &l));
            (left.is_empty() && settled).then_some(())
        },
    );

    // The leader's view just before the request: who is which.
    let before = quorum(&node, (victim + 1) % 3);
    let request = {
        let addr = node.kafka(0);
        std::thread::spawn(move || unregister(&addr, LEAVING))
    };
    std::thread::sleep(Duration::from_millis(kill_ms));
    let at_kill_quorum = quorum(&node, (victim + 1) % 3);
    let at_kill = producer.acked();
    node.kill_id(victim);
    let first_answer = request
        .join()
        .unwrap_or_else(|_| panic!("seed {seed}: the UnregisterBroker thread panicked"));
    let leader_at_kill = at_kill_quorum
        .as_ref()
        .or(before.as_ref())
        .map_or(-1, |q| q.0);
    let role = if victim == LEAVING {
        LeaveVictim::Leaving
    } else if victim == leader_at_kill {
        LeaveVictim::QuorumLeader
    } else {
        LeaveVictim::OtherVoter
    };
    let voter_at_kill = at_kill_quorum
        .as_ref()
        .is_some_and(|q| q.1.contains(&LEAVING));
    println!(
        "seed {seed}: moved {from:?} to {to:?}; UnregisterBroker(3) to broker 0; killed broker {victim} ({role:?}) {kill_ms} ms after, after {at_kill} acknowledgements; first answer {first_answer:?} (quorum before: {before:?}; at the kill: {at_kill_quorum:?})"
    );
    node.spawn_id(victim);

    // The operator's loop: UnregisterBroker again while the metadata lists broker 3, through
    // the lowest remaining broker that answers; then the StatefulSet shrinks.
    let mut retries = 0u64;
    wait_for(
        "broker 3 out of the metadata (the operator's retries)",
        LONG,
        Duration::from_millis(200),
        || {
            let (via, brokers) = (0..3).find_map(|id| Some((id, registered(&node, id)?)))?;
            if !brokers.contains(&LEAVING) {
                return Some(());
            }
            retries += 1;
            let answer = unregister(&node.kafka(via), LEAVING);
            println!("seed {seed}: UnregisterBroker(3) again through broker {via}: {answer:?}");
            None
        },
    );
    let mut leaving = node.brokers[LEAVING as usize]
        .take()
        .unwrap_or_else(|| panic!("seed {seed}: broker 3 is not running"));
    leaving.sigterm_and_wait(LONG);

    let stay: BTreeSet<i32> = (0..3).collect();
    for id in 0..3 {
        let q = wait_for(
            "a leader and voters 0, 1 and 2, broker 3 in no role",
            LONG,
            POLL,
            || {
                let (leader, voters, observers) = quorum(&node, id)?;
                (leader >= 0 && voters == stay && !observers.contains(&LEAVING))
                    .then_some((leader, voters))
            },
        );
        if id == 0 {
            println!(
                "seed {seed}: quorum after: leader {} voters {:?} ({:?})",
                q.0,
                q.1,
                t0.elapsed()
            );
        }
        wait_for("brokers 0, 1 and 2 in the metadata", LONG, POLL, || {
            (registered(&node, id)? == stay).then_some(())
        });
    }
    wait_for("the partition's copies in sync again", LONG, POLL, || {
        layout(&node, &topic)
            .filter(|l| settled_on(&to, l))
            .map(|_| ())
    });
    producer.wait_acked(at_kill + 100, "acknowledgements after the restart");
    let outcome = producer.finish();
    assert!(
        outcome.failed.is_empty(),
        "seed {seed}: {} idempotent deliveries failed, first {:?}",
        outcome.failed.len(),
        outcome.failed.first()
    );
    assert_eq!(
        outcome.acked.len() as u64,
        outcome.sent,
        "seed {seed}: acknowledgements"
    );
    let (log_start, got) = read_all(&node, &topic);
    assert_eq!(log_start, 0, "seed {seed}: log start");
    let f = check_log(seed, log_start, &got, &outcome.acked, outcome.sent);
    assert_eq!(
        got.len() as u64,
        outcome.sent,
        "seed {seed}: records in the log"
    );
    assert_each_at_its_index(&got);
    (
        f,
        LeaveFacts {
            victim: role,
            voter_at_kill,
            first_answer,
            retries,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Transactions under SIGKILL

/// How a transaction ended, as its producer was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnEnd {
    /// commit_transaction returned Ok: a read_committed consumer must see every record.
    Committed,
    /// abort_transaction returned Ok (asked for, or after an abortable error): it must see none.
    Aborted,
    /// The producer failed fatally inside it and was replaced (its InitProducerId aborts what
    /// was open): all or none, never a part.
    Unknown,
}

/// One transaction: the record indexes it sent (even to topic 0, odd to topic 1), how it ended,
/// and the group offset it committed with its records, if any.
#[derive(Debug, Clone)]
struct Txn {
    records: std::ops::Range<u64>,
    end: TxnEnd,
    offset_commit: Option<(usize, i64)>,
}

/// What a transactional producer thread did.
struct TxnOutcome {
    sent: u64,
    txns: Vec<Txn>,
    acked: Vec<(u64, i32, i64)>,
    /// Producers replaced after a fatal error.
    replaced: u64,
}

/// How the transactional producer writes, drawn from the seed.
#[derive(Clone)]
struct TxnSpec {
    id: String,
    topics: [String; 2],
    /// Records per transaction: 1 to this many.
    most_records: u64,
    abort_percent: u64,
    linger_ms: u64,
    /// The group whose offsets each transaction commits (TxnOffsetCommit), if any.
    group: Option<String>,
    rng_seed: u64,
}

struct TxnLoad {
    stop: Arc<AtomicBool>,
    ended: Arc<AtomicU64>,
    thread: Option<JoinHandle<TxnOutcome>>,
}

fn txn_producer(bootstrap: &str, spec: &TxnSpec) -> TestProducer {
    let linger = spec.linger_ms.to_string();
    let p = rd_producer(
        bootstrap,
        &[
            ("transactional.id", spec.id.as_str()),
            ("acks", "all"),
            ("linger.ms", linger.as_str()),
            // Longer than any restart: a transaction fails only for a reason of the broker's.
            ("transaction.timeout.ms", "60000"),
            ("message.timeout.ms", "60000"),
        ],
    );
    retry_txn_call("init_transactions", || p.init_transactions(LONG));
    p
}

/// Commits or aborts the open transaction. Before an abort the producer is flushed: rust-rdkafka's
/// `BaseProducer` takes delivery reports as events, and librdkafka's abort waits for the reports
/// of the messages it purges to be consumed, which only this thread's poll does (a deadlock
/// until the timeout otherwise). The records are written, then aborted.
fn end_txn(p: &TestProducer, abort: bool) -> rdkafka::error::KafkaResult<()> {
    if abort {
        p.flush(LONG)?;
        p.abort_transaction(LONG)
    } else {
        p.commit_transaction(LONG)
    }
}

/// Calls a transactional API again while it fails with a retriable error (librdkafka lets the
/// application call again after those: the broker was away), for at most [`LONG`]; returns the
/// first other outcome.
fn retrying(
    mut call: impl FnMut() -> rdkafka::error::KafkaResult<()>,
) -> rdkafka::error::KafkaResult<()> {
    let deadline = Instant::now() + LONG;
    loop {
        match call() {
            Err(rdkafka::error::KafkaError::Transaction(e))
                if e.is_retriable() && Instant::now() < deadline =>
            {
                println!("retriable error, calling again: {e}");
            }
            other => return other,
        }
    }
}

/// [`retrying`] a call that must succeed.
fn retry_txn_call(what: &str, call: impl FnMut() -> rdkafka::error::KafkaResult<()>) {
    if let Err(e) = retrying(call) {
        panic!("{what}: {e}");
    }
}

/// Whether `SLUICE_TXN_TRACE` asks the transaction trials to print each transaction.
fn txn_trace() -> bool {
    std::env::var_os("SLUICE_TXN_TRACE").is_some()
}

impl TxnLoad {
    fn start(bootstrap: String, spec: TxnSpec) -> TxnLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicU64::new(0));
        let (stop2, ended2) = (Arc::clone(&stop), Arc::clone(&ended));
        let thread = std::thread::spawn(move || {
            let mut rng = Rng(spec.rng_seed);
            let group = spec.group.as_ref().map(|g| {
                rd_consumer(&bootstrap, &[("group.id", g.as_str())])
                    .group_metadata()
                    .expect("the group's metadata")
            });
            let mut p = txn_producer(&bootstrap, &spec);
            let mut old: Vec<TestProducer> = Vec::new();
            let (mut i, mut replaced) = (0u64, 0u64);
            let mut txns: Vec<Txn> = Vec::new();
            // Ends with a committed transaction, so that a read_committed consumer that stops
            // short of the log end (a transaction left open) misses records it must see.
            while !stop2.load(Ordering::Relaxed)
                || txns.last().map(|t| t.end) != Some(TxnEnd::Committed)
            {
                let k = txns.len();
                let abort = rng.chance(spec.abort_percent) && !stop2.load(Ordering::Relaxed);
                let n = 1 + rng.below(spec.most_records);
                p.begin_transaction().expect("begin_transaction");
                let first = i;
                if txn_trace() {
                    println!("transaction {k}: {n} records from {i}, abort {abort}");
                }
                for _ in 0..n {
                    send_at(&p, &spec.topics[(i % 2) as usize], i, now_ms());
                    i += 1;
                    p.poll(Duration::ZERO);
                }
                let mut offset_commit = None;
                let mut result = Ok(());
                if let Some(cgm) = &group {
                    let (q, value) = (k % 2, k as i64 + 1);
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(&spec.topics[q], 0, Offset::Offset(value))
                        .expect("offset to commit");
                    result = retrying(|| p.send_offsets_to_transaction(&tpl, cgm, LONG));
                    offset_commit = Some((q, value));
                }
                if result.is_ok() {
                    // A retriable failure of the commit or abort is called again.
                    result = retrying(|| end_txn(&p, abort));
                }
                // One that needs an abort is aborted; any other ends this producer.
                let end = match result {
                    Ok(()) if abort => Some(TxnEnd::Aborted),
                    Ok(()) => Some(TxnEnd::Committed),
                    Err(rdkafka::error::KafkaError::Transaction(ref e))
                        if e.txn_requires_abort() =>
                    {
                        println!("transaction {k}: {e}; aborting it");
                        retry_txn_call("abort_transaction", || end_txn(&p, true));
                        Some(TxnEnd::Aborted)
                    }
                    Err(ref e) => {
                        println!("transaction {k}: {e}; a new producer with the same id");
                        None
                    }
                };
                if txn_trace() {
                    println!("transaction {k}: ended {end:?}");
                }
                let end = end.unwrap_or_else(|| {
                    // Kept alive to the end: a dropped librdkafka producer flushes no more.
                    old.push(std::mem::replace(&mut p, txn_producer(&bootstrap, &spec)));
                    replaced += 1;
                    TxnEnd::Unknown
                });
                txns.push(Txn {
                    records: first..i,
                    end,
                    offset_commit,
                });
                ended2.fetch_add(1, Ordering::Relaxed);
            }
            let mut acked = p.context().acked.lock().expect("lock").clone();
            for o in &old {
                acked.extend(o.context().acked.lock().expect("lock").iter().copied());
            }
            TxnOutcome {
                sent: i,
                txns,
                acked,
                replaced,
            }
        });
        TxnLoad {
            stop,
            ended,
            thread: Some(thread),
        }
    }

    fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }

    fn wait_ended(&self, n: u64, what: &str) {
        wait_for(what, LONG, POLL, || (self.ended() >= n).then_some(()));
    }

    fn finish(mut self) -> TxnOutcome {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().expect("producer thread");
        t.join()
            .unwrap_or_else(|_| panic!("the transactional producer thread panicked"))
    }
}

impl Drop for TxnLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every record of partition 0 of `topic` a consumer with `isolation` reads from the start up
/// to its end (the high watermark read_uncommitted, the last stable offset read_committed).
fn read_isolated(bootstrap: &str, topic: &str, isolation: &str) -> Vec<Consumed> {
    let c = rd_reader(
        bootstrap,
        topic,
        &[0],
        Offset::Beginning,
        &[
            ("isolation.level", isolation),
            ("enable.partition.eof", "true"),
        ],
    );
    let deadline = Instant::now() + LONG;
    let mut out = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "{topic} {isolation}: no end of partition within {LONG:?}, {} records read",
            out.len()
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(to_consumed(&m)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!(
                "{topic} {isolation}: consumer error after {} records: {e}",
                out.len()
            ),
            None => {}
        }
    }
}

/// The offsets `group` has committed for partition 0 of each topic (-1: none), asked with
/// require_stable as a transactional consumer asks.
fn committed_offsets(bootstrap: &str, group: &str, topics: &[String; 2]) -> [i64; 2] {
    let c = rd_consumer(
        bootstrap,
        &[("group.id", group), ("isolation.level", "read_committed")],
    );
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        tpl.add_partition(t, 0);
    }
    let got = c.committed_offsets(tpl, LONG).expect("committed offsets");
    let of = |t: &String| match got.find_partition(t, 0).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => o,
        _ => -1,
    };
    [of(&topics[0]), of(&topics[1])]
}

/// Transactions of random sizes to two topics, some aborted, some committing a group offset, a
/// broker SIGKILLed at a moment drawn from the seed (on one broker, or any of three with every
/// partition on three copies) and restarted; then, read back:
/// - read_uncommitted: every acknowledged record at its offset once, nothing else, in order;
/// - read_committed: every record of each committed transaction, none of an aborted one, all
///   or none of one whose producer failed fatally inside it, never a part;
/// - the group's committed offsets: the last committed transaction's, or a later one whose end
///   is unknown; never an aborted transaction's.
fn txn_trial(seed: u64) -> Figures {
    let cluster = seed % 2 == 1;
    println!(
        "transaction trial: seed {seed} on {} (replay: SLUICE_TXN_SEED={seed})",
        if cluster {
            "three brokers"
        } else {
            "one broker"
        }
    );
    let mut rng = Rng(seed);
    let t0 = Instant::now();
    let tiny_segments = !cluster && rng.chance(40);
    let spec_group = rng.chance(60);
    let kill_after = rng.below(30);
    let delay_ms = rng.below(150);
    // On three brokers the victim and the topics' leaders are drawn apart: it leads one of
    // them, or none (and is the transaction coordinator, or not, as the id falls).
    let (mut node, victim, first_leader) = if cluster {
        (
            Node::cluster(3, &[]),
            rng.below(3) as i32,
            rng.below(3) as i32,
        )
    } else {
        (Node::start(&[]), 0, 0)
    };
    let topics = [topic_name("crash-txn-a"), topic_name("crash-txn-b")];
    let configs = if tiny_segments {
        topic_configs(&[("segment.bytes", "1024")])
    } else {
        Vec::new()
    };
    for (n, t) in topics.iter().enumerate() {
        if cluster {
            let lead = (first_leader + n as i32) % 3;
            node.create_topic_on(t, &[lead, (lead + 1) % 3, (lead + 2) % 3], &configs);
        } else {
            node.create_topic(t, &configs);
        }
    }
    let spec = TxnSpec {
        id: topic_name("crash-txn-id"),
        topics: topics.clone(),
        most_records: [1, 5, 40][rng.below(3) as usize],
        abort_percent: 25,
        linger_ms: rng.below(6),
        group: spec_group.then(|| topic_name("crash-txn-group")),
        rng_seed: rng.next(),
    };
    let load = TxnLoad::start(node.bootstrap(), spec.clone());
    load.wait_ended(kill_after, "transactions before the kill");
    std::thread::sleep(Duration::from_millis(delay_ms));
    node.kill_id(victim);
    let at_kill = load.ended();
    println!(
        "seed {seed}: killed broker {victim} after {at_kill} transactions ended (+{delay_ms} ms; up to {} records each, tiny segments {tiny_segments}, offsets in transactions {spec_group})",
        spec.most_records
    );
    node.spawn_id(victim);
    load.wait_ended(at_kill + 10, "transactions after the restart");
    let outcome = load.finish();

    let bs = node.bootstrap();
    let mut f = Figures {
        trials: 1,
        ..Figures::default()
    };
    let mut committed_view: BTreeSet<u64> = BTreeSet::new();
    for (q, topic) in topics.iter().enumerate() {
        // The log as written: check_log's rules, with the acknowledgements of this topic.
        let acked: Vec<(u64, i32, i64)> = outcome
            .acked
            .iter()
            .filter(|a| a.0 % 2 == q as u64)
            .copied()
            .collect();
        let all = read_isolated(&bs, topic, "read_uncommitted");
        assert!(
            all.iter().all(|c| c.index() % 2 == q as u64),
            "seed {seed}: a record of the other topic in {topic}"
        );
        let g = check_log(seed, 0, &all, &acked, outcome.sent);
        f.acked += g.acked;
        assert_each_index_increasing(seed, topic, &all);
        let visible = read_isolated(&bs, topic, "read_committed");
        assert_each_index_increasing(seed, topic, &visible);
        for c in &visible {
            assert!(
                committed_view.insert(c.index()),
                "seed {seed}: record {} read committed twice",
                c.index()
            );
        }
    }
    let mut ends: BTreeMap<String, u64> = BTreeMap::new();
    for (k, t) in outcome.txns.iter().enumerate() {
        *ends.entry(format!("{:?}", t.end)).or_default() += 1;
        let seen = t
            .records
            .clone()
            .filter(|i| committed_view.contains(i))
            .count() as u64;
        let len = t.records.end - t.records.start;
        let ok = match t.end {
            TxnEnd::Committed => seen == len,
            TxnEnd::Aborted => seen == 0,
            TxnEnd::Unknown => seen == 0 || seen == len,
        };
        if !ok && t.end == TxnEnd::Committed {
            f.lost += len - seen;
        }
        assert!(
            ok,
            "seed {seed}: transaction {k} ({:?}, records {:?}) read committed {seen} of its {len} records",
            t.end, t.records
        );
    }
    assert!(
        committed_view.iter().all(|i| *i < outcome.sent),
        "seed {seed}: a record read committed that no transaction sent"
    );
    if let Some(group) = &spec.group {
        let got = committed_offsets(&bs, group, &topics);
        for (q, got) in got.iter().enumerate() {
            // The last committed transaction's offset for this topic, or that of a later one
            // whose end is unknown.
            let mut allowed = BTreeSet::new();
            for t in outcome.txns.iter().rev() {
                let Some((tq, value)) = t.offset_commit else {
                    continue;
                };
                if tq != q {
                    continue;
                }
                match t.end {
                    TxnEnd::Committed => {
                        allowed.insert(value);
                        break;
                    }
                    TxnEnd::Unknown => {
                        allowed.insert(value);
                    }
                    TxnEnd::Aborted => {}
                }
            }
            if allowed.is_empty() {
                allowed.insert(-1);
            }
            assert!(
                allowed.contains(got),
                "seed {seed}: group offset of {} is {got}, expected one of {allowed:?}",
                topics[q]
            );
            f.commits += 1;
        }
    }
    println!(
        "seed {seed}: {} transactions ({ends:?}), {} records sent, {} acknowledged, {} read committed, {} producers replaced ({:?})",
        outcome.txns.len(),
        outcome.sent,
        f.acked,
        committed_view.len(),
        outcome.replaced,
        t0.elapsed()
    );
    f
}

/// Record indexes increase along the partition (an idempotent producer's order).
fn assert_each_index_increasing(seed: u64, topic: &str, got: &[Consumed]) {
    for w in got.windows(2) {
        assert!(
            w[0].index() < w[1].index(),
            "seed {seed}: {topic}: record {} at offset {} before record {} at offset {}",
            w[0].index(),
            w[0].offset,
            w[1].index(),
            w[1].offset
        );
    }
}

/// Seeds of a trial kind with its own variables: `seed_var` alone, else `trials_var` (or
/// `trials`) fresh ones.
fn own_seeds(seed_var: &str, trials_var: &str, trials: u64, salt: u64) -> Vec<u64> {
    if let Some(seed) = env_number(seed_var) {
        return vec![seed];
    }
    let trials = env_number(trials_var).unwrap_or(trials);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut rng = Rng(now ^ salt);
    (0..trials).map(|_| rng.below(1_000_000)).collect()
}

fn run(trials: u64) -> Figures {
    let t0 = Instant::now();
    let mut all = Figures::default();
    for seed in seeds(trials) {
        all.add(trial(seed));
    }
    println!(
        "crash trials: {} trials, {} records acknowledged, {} lost, {} duplicates, {} retained away by retention, {} group commits acknowledged, in {:?}",
        all.trials,
        all.acked,
        all.lost,
        all.duplicates,
        all.retained_away,
        all.commits,
        t0.elapsed()
    );
    all
}

/// One test of this file at a time: the cluster trials run four brokers, and side by side on
/// two busy cores a starved broker could miss its liveness probes for no fault of its own.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn seeded_sigkills_lose_and_duplicate_no_acknowledged_record_nor_commit() {
    let _serial = serial();
    run(20);
}

/// Join trials: `SLUICE_JOIN_SEED=<n>` replays one, `SLUICE_JOIN_TRIALS=<n>` runs n (2 by
/// default; the campaign's command is this test with a larger count).
#[test]
fn a_broker_joining_the_quorum_under_sigkill_loses_nothing() {
    let _serial = serial();
    let seeds = own_seeds("SLUICE_JOIN_SEED", "SLUICE_JOIN_TRIALS", 2, 0x5eed);
    let mut all = Figures::default();
    for seed in seeds {
        all.add(join_trial(seed));
    }
    println!(
        "join trials: {} trials, {} records acknowledged, {} lost, {} duplicates",
        all.trials, all.acked, all.lost, all.duplicates
    );
}

/// Leave trials (a voter removed under SIGKILL): `SLUICE_LEAVE_SEED=<n>` replays one,
/// `SLUICE_LEAVE_TRIALS=<n>` runs n (2 by default; the campaign's command is this test with a
/// larger count).
#[test]
fn a_voter_removed_from_the_quorum_under_sigkill_loses_nothing() {
    let _serial = serial();
    let seeds = own_seeds("SLUICE_LEAVE_SEED", "SLUICE_LEAVE_TRIALS", 2, 0x1ea7e);
    let mut all = Figures::default();
    let mut victims: BTreeMap<String, u64> = BTreeMap::new();
    let (mut voter_at_kill, mut answered, mut retries) = (0, 0, 0);
    for seed in seeds {
        let (f, facts) = leave_trial(seed);
        all.add(f);
        *victims.entry(format!("{:?}", facts.victim)).or_default() += 1;
        voter_at_kill += u64::from(facts.voter_at_kill);
        answered += u64::from(facts.first_answer.is_ok());
        retries += facts.retries;
    }
    println!(
        "leave trials: {} trials, {} records acknowledged, {} lost, {} duplicates; killed {victims:?}; broker 3 still a voter at the kill {voter_at_kill} times; the first UnregisterBroker answered OK {answered} times; {retries} operator retries",
        all.trials, all.acked, all.lost, all.duplicates
    );
}

/// Transaction trials: `SLUICE_TXN_SEED=<n>` replays one, `SLUICE_TXN_TRIALS=<n>` runs n (2 by
/// default, one on a single broker and one on three; the campaign's command is this test with a
/// larger count); `SLUICE_TXN_TRACE=1` prints each transaction as it begins and ends.
#[test]
fn transactions_under_sigkill_are_all_or_nothing_and_lose_no_acknowledged_record() {
    let _serial = serial();
    let seeds = own_seeds("SLUICE_TXN_SEED", "SLUICE_TXN_TRIALS", 2, 0x7a7);
    let mut all = Figures::default();
    for (k, seed) in seeds.iter().enumerate() {
        // Alternating single broker and three, unless one seed is replayed.
        let seed = if seeds.len() == 1 {
            *seed
        } else {
            seed - seed % 2 + (k as u64 % 2)
        };
        all.add(txn_trial(seed));
    }
    println!(
        "transaction trials: {} trials, {} records acknowledged, {} lost, {} group offsets checked",
        all.trials, all.acked, all.lost, all.commits
    );
}

#[test]
#[ignore = "500 seeded trials (SLUICE_TRIALS), about 30 minutes: cargo test -p sluice-broker --test crash_trials crash_campaign -- --ignored --nocapture"]
fn crash_campaign() {
    let _serial = serial();
    run(500);
}
