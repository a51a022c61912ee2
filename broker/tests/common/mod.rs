//! Shared harness of the broker integration tests: brokers in process and as a child process,
//! the deterministic test records, librdkafka helpers, a raw Kafka-protocol client and polling
//! with deadlines; [`drivers`] runs the clients that are processes of their own (Python, Java,
//! Go), [`java`] the Java driver and Apache Kafka's command-line tools.
//!
//! Every wait here is bounded by a deadline; nothing sleeps in place of checking a condition.
#![allow(dead_code)]

mod corrupt;
mod drivers;
mod java;
mod share;
mod txn;
// Each test binary compiles this harness whole; some use nothing of `drivers` or `java`.
#[allow(unused_imports)]
pub use corrupt::*;
#[allow(unused_imports)]
pub use drivers::*;
#[allow(unused_imports)]
pub use java::*;
#[allow(unused_imports)]
pub use share::*;
#[allow(unused_imports)]
pub use txn::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

// ---------------------------------------------------------------------------------------------
// Deadlines

/// Polls `cond` until it returns `Some`, at most `attempts` times and until `timeout` passes,
/// pausing `every` between attempts. Panics naming `what` when the condition never held.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    let max_attempts = (timeout.as_millis() / every.as_millis().max(1)) as usize + 2;
    for _ in 0..max_attempts {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(every);
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

// ---------------------------------------------------------------------------------------------
// Seeded trials

/// splitmix64: a small, well-mixed generator; the same seed gives the same trial.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A loopback network `127.<a>.<b>` (its `a` drawn from `first_octets`) whose ports 9092 and
/// 9093 are free on its first `n` addresses (checked by binding them), so a restarted broker
/// comes back where its clients and peers know it. Each test file draws from its own
/// `first_octets` (127.0.x.x is left to the tests that bind 127.0.0.1), and `salt` (the pid
/// and a per-process counter) keeps two clusters of one run apart.
pub fn free_network(n: usize, first_octets: std::ops::Range<u64>, salt: u64) -> String {
    let mut rng = Rng(salt);
    let span = first_octets.end - first_octets.start;
    for _ in 0..100 {
        let net = format!(
            "127.{}.{}",
            first_octets.start + rng.below(span),
            rng.below(256)
        );
        let free = (1..=n).all(|h| {
            ["9092", "9093"]
                .iter()
                .all(|port| std::net::TcpListener::bind(format!("{net}.{h}:{port}")).is_ok())
        });
        if free {
            return net;
        }
    }
    panic!("no free loopback network in 127.{first_octets:?}.x.x for {n} brokers");
}

/// The number in environment variable `name` (`SLUICE_SEED`, `SLUICE_TRIALS`), if set.
pub fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
    )
}

// ---------------------------------------------------------------------------------------------
// Test records

/// One record as produced and as it must come back byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The i-th test record. `broker/tests/python/records.py` builds exactly the same records.
/// Keys are sometimes null, values sometimes null (tombstones), values are binary (every byte
/// value occurs) and compressible, headers repeat keys and hold binary values. Never both key
/// and value null (kafka-python refuses to send that).
pub fn test_record(i: u64) -> TestRecord {
    let key = if i % 5 == 4 {
        None
    } else {
        Some(format!("key-{i}").into_bytes())
    };
    let value = if i % 11 == 10 && key.is_some() {
        None
    } else {
        let len = (i * 97 % 1500 + 1) as usize;
        Some(
            (0..len)
                .map(|j| ((i * 131 + j as u64 * 7) % 256) as u8)
                .collect(),
        )
    };
    let mut headers = vec![("idx".to_string(), Some(i.to_string().into_bytes()))];
    if i % 3 != 0 {
        headers.push(("bin".into(), Some(vec![0, 255, (i % 256) as u8])));
        headers.push(("dup".into(), Some(b"a".to_vec())));
        headers.push(("dup".into(), Some(b"b".to_vec())));
    }
    TestRecord {
        key,
        value,
        headers,
    }
}

/// A record read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub record: TestRecord,
}

impl Consumed {
    /// The index carried in the `idx` header.
    pub fn index(&self) -> u64 {
        let raw = self
            .record
            .headers
            .iter()
            .find(|(k, _)| k == "idx")
            .and_then(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("record at offset {} has no idx header", self.offset));
        String::from_utf8_lossy(&raw)
            .parse()
            .unwrap_or_else(|_| panic!("record at offset {} has a bad idx header", self.offset))
    }
}

/// Checks that `got` holds exactly the records `expected` (as indexes), once each, byte for byte,
/// and that offsets within each partition are strictly increasing.
pub fn assert_records_exact(got: &[Consumed], expected: impl IntoIterator<Item = u64>) {
    let expected: BTreeSet<u64> = expected.into_iter().collect();
    let mut seen = BTreeSet::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for c in got {
        let i = c.index();
        assert!(
            expected.contains(&i),
            "unexpected record idx {i} at p{} offset {}",
            c.partition,
            c.offset
        );
        assert!(
            seen.insert(i),
            "record idx {i} delivered twice (p{} offset {})",
            c.partition,
            c.offset
        );
        assert_eq!(
            c.record,
            test_record(i),
            "record idx {i} at p{} offset {} differs from what was produced",
            c.partition,
            c.offset
        );
        if let Some(prev) = last_offset.insert(c.partition, c.offset) {
            assert!(
                c.offset > prev,
                "offsets not increasing in p{}: {prev} then {}",
                c.partition,
                c.offset
            );
        }
    }
    let missing: Vec<u64> = expected.difference(&seen).copied().take(20).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records missing, e.g. {missing:?}",
        expected.len() - seen.len(),
        expected.len()
    );
}

/// Checks that each record of `got` sits at the offset equal to its index (records `0..`
/// written in order into one partition).
pub fn assert_each_at_its_index(got: &[Consumed]) {
    for c in got {
        assert_eq!(c.offset, c.index() as i64, "record {} offset", c.index());
    }
}

// ---------------------------------------------------------------------------------------------
// Brokers

/// The command-line arguments of a test broker on loopback ports chosen by the OS.
pub fn broker_args(data_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "sluice-broker".to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--http-listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Opt-in diagnostics for a failing test: `SLUICE_TEST_LOG=<filter>` (e.g. `debug` or
/// `sluice_broker=trace`) prints the in-process broker's tracing, and librdkafka's own log
/// lines (`SLUICE_TEST_RDKAFKA_DEBUG=<contexts>`, e.g. `all` or `fetch,protocol`) with it.
/// Off by default: the captured output of a passing run stays short.
pub fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("SLUICE_TEST_LOG") {
            // `try_init` also routes the `log` crate (which rust-rdkafka logs through).
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Adds librdkafka's `debug` setting when `SLUICE_TEST_RDKAFKA_DEBUG` asks for it.
pub fn rd_debug(cfg: &mut ClientConfig) {
    if let Ok(contexts) = std::env::var("SLUICE_TEST_RDKAFKA_DEBUG") {
        init_test_logging();
        cfg.set("debug", contexts);
    }
}

/// The runtime of one in-process broker: its own, so test code can block freely.
pub fn broker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build tokio runtime")
}

/// A broker running in this process, on its own tokio runtime so test code can block freely.
pub struct TestBroker {
    rt: tokio::runtime::Runtime,
    broker: Option<sluice_broker::Broker>,
    data_dir: PathBuf,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestBroker {
    /// Starts a broker on a fresh temporary data directory.
    pub fn start(extra: &[&str]) -> TestBroker {
        let tmp = tempfile::tempdir().expect("create temp data dir");
        let dir = tmp.path().to_path_buf();
        let mut b = TestBroker::start_in(&dir, extra);
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker on `data_dir` (kept by the caller).
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> TestBroker {
        init_test_logging();
        let mut b = TestBroker {
            rt: broker_runtime(),
            broker: None,
            data_dir: data_dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: None,
        };
        b.boot();
        b
    }

    fn boot(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let config = sluice_broker::config::Config::parse_from(broker_args(&self.data_dir, &extra));
        let broker = self
            .rt
            .block_on(sluice_broker::Broker::start(config))
            .unwrap_or_else(|e| panic!("Broker::start on {}: {e}", self.data_dir.display()));
        self.broker = Some(broker);
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn kafka_addr(&self) -> SocketAddr {
        self.broker
            .as_ref()
            .expect("broker is running")
            .kafka_addr()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.broker.as_ref().expect("broker is running").http_addr()
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.kafka_addr().to_string()
    }

    /// The running broker's shared state (cluster tests look at the quorum's view).
    pub fn ctx(&self) -> &std::sync::Arc<sluice_broker::context::BrokerContext> {
        self.broker.as_ref().expect("broker is running").context()
    }

    /// Runs a future on the broker's runtime (for rdkafka's admin futures).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Clean shutdown (stop accepting, finish in-flight requests, fsync).
    pub fn stop(&mut self) {
        if let Some(b) = self.broker.take() {
            shutdown_broker(&self.rt, b);
        }
    }

    /// Clean shutdown, then a new broker on the same data directory (new ports).
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }

    /// Starts again after [`TestBroker::stop`].
    pub fn start_again(&mut self) {
        assert!(self.broker.is_none(), "start_again on a running broker");
        self.boot();
    }
}

fn shutdown_broker(rt: &tokio::runtime::Runtime, b: sluice_broker::Broker) {
    rt.block_on(async move {
        let deadline = Duration::from_secs(30);
        match tokio::time::timeout(deadline, b.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("broker shutdown failed: {e}"),
            Err(_) => panic!("broker shutdown did not finish within {deadline:?}"),
        }
    });
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                shutdown_broker(&self.rt, b)
            }));
        }
    }
}

/// The broker binary run as a child process (for signals).
pub struct BinaryBroker {
    pub child: Child,
    pub kafka_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub log_path: PathBuf,
}

/// The broker binary as a command, without the test's own `SLUICE_*` variables (e.g.
/// `SLUICE_PYTHON`), which the broker would refuse as unknown settings, and without `RUST_LOG`
/// (`SLUICE_TEST_BROKER_LOG=<filter>`, e.g. `sluice_broker=debug`, is its `RUST_LOG` instead,
/// for diagnosing a failure from the brokers' logs).
pub fn scrubbed_broker_command() -> Command {
    let mut cmd = Command::new(broker_binary());
    cmd.env_remove("RUST_LOG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLUICE_") {
            cmd.env_remove(k);
        }
    }
    if let Ok(filter) = std::env::var("SLUICE_TEST_BROKER_LOG") {
        cmd.env("RUST_LOG", filter);
    }
    cmd
}

/// Path of the broker binary that cargo built for these tests.
pub fn broker_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice-broker"))
}

impl BinaryBroker {
    /// Spawns the binary and waits for its `listening kafka=… http=…` line and `/readyz` 200.
    pub fn spawn(data_dir: &Path, extra: &[&str], log_path: &Path) -> BinaryBroker {
        std::fs::File::create(log_path).expect("create broker log file");
        BinaryBroker::spawn_args(&broker_args(data_dir, extra)[1..], log_path)
    }

    /// Spawns the binary with exactly `args` (no defaults), its output appended to `log_path`
    /// (a restart keeps the earlier runs' lines), and waits for this run's
    /// `listening kafka=… http=…` line and `/readyz` 200.
    pub fn spawn_args(args: &[String], log_path: &Path) -> BinaryBroker {
        BinaryBroker::launch(args, log_path).ready()
    }

    /// Spawns the binary like [`BinaryBroker::spawn_args`] without waiting: brokers that are
    /// only ready together (a quorum that needs both) are launched first, then waited for.
    pub fn launch(args: &[String], log_path: &Path) -> Launched {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("open broker log file");
        let earlier = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let log2 = log.try_clone().expect("clone log file handle");
        let child = scrubbed_broker_command()
            .args(args)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .expect("spawn sluice-broker binary");
        Launched {
            child,
            log_path: log_path.to_path_buf(),
            earlier,
        }
    }

    pub fn bootstrap(&self) -> String {
        self.kafka_addr.to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        self.child.kill().expect("send SIGKILL to the broker");
        self.child.wait().expect("reap the killed broker");
    }

    /// Sends `signal` (a `kill -<signal>` name: `STOP`, `CONT`, …).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{signal} {pid} failed");
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn sigterm_and_wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        assert!(st.success(), "kill -TERM {pid} failed");
        let child = &mut self.child;
        wait_for(
            "the broker to exit after SIGTERM",
            timeout,
            Duration::from_millis(50),
            || child.try_wait().expect("try_wait on broker"),
        )
    }
}

/// A broker binary started by [`BinaryBroker::launch`], not yet known to be ready.
pub struct Launched {
    child: Child,
    log_path: PathBuf,
    /// Bytes of the log file written by earlier runs.
    earlier: usize,
}

impl Launched {
    /// SIGKILL before it was ready, then reap.
    pub fn kill9(mut self) {
        self.child.kill().expect("send SIGKILL to the broker");
        self.child.wait().expect("reap the killed broker");
    }

    /// Waits for this run's `listening kafka=… http=…` line and `/readyz` 200.
    pub fn ready(mut self) -> BinaryBroker {
        let (log_path, earlier) = (self.log_path.clone(), self.earlier);
        let this_run = || {
            let out = std::fs::read(&log_path).unwrap_or_default();
            String::from_utf8_lossy(out.get(earlier..).unwrap_or_default()).into_owned()
        };
        let child = &mut self.child;
        let (kafka_addr, http_addr) = wait_for(
            "the broker's 'listening kafka=… http=…' line",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("broker exited early with {status}:\n{}", this_run());
                }
                parse_listening_line(&this_run())
            },
        );
        let b = BinaryBroker {
            child: self.child,
            kafka_addr,
            http_addr,
            log_path,
        };
        wait_for(
            "GET /readyz to answer 200",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || (http_get(b.http_addr, "/readyz").ok()?.0 == 200).then_some(()),
        );
        b
    }
}

impl Drop for BinaryBroker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Several `sluice-broker` processes forming one cluster on loopback, for tests that kill
/// brokers with signals. Each broker's cluster listener has a fixed address of its own
/// (`127.0.<net>.<id + 1>:9093`, so a restarted broker comes back where its peers know it; a
/// test picks a `net` no other test of its binary uses); Kafka ports are chosen by the OS.
/// Broker 0 founds the cluster, the others join through it. Data directories live under a
/// temporary directory removed at the end.
pub struct ProcessCluster {
    tmp: tempfile::TempDir,
    net: u8,
    extra: Vec<String>,
    brokers: Vec<Option<BinaryBroker>>,
}

impl ProcessCluster {
    /// `n` brokers with the broker flags `extra`; returns once each sees all `n` in Metadata.
    pub fn start(n: i32, net: u8, extra: &[&str]) -> ProcessCluster {
        let mut c = ProcessCluster {
            tmp: tempfile::tempdir().expect("tempdir"),
            net,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            brokers: Vec::new(),
        };
        for id in 0..n {
            c.brokers.push(None);
            c.spawn(id);
        }
        for id in 0..n {
            let bootstrap = c.broker(id).bootstrap();
            wait_for(
                "every broker in the metadata",
                Duration::from_secs(60),
                Duration::from_millis(100),
                || {
                    let md = rd_consumer(&bootstrap, &[])
                        .fetch_metadata(None, Duration::from_secs(5))
                        .ok()?;
                    (md.brokers().len() == n as usize).then_some(())
                },
            );
        }
        c
    }

    fn cluster_addr(&self, id: i32) -> String {
        format!("127.0.{}.{}:9093", self.net, id + 1)
    }

    /// Broker `id`'s data directory.
    pub fn data_dir(&self, id: i32) -> PathBuf {
        self.tmp.path().join(format!("b{id}"))
    }

    /// (Re)starts broker `id` on its data directory and cluster address.
    pub fn spawn(&mut self, id: i32) {
        let node = id.to_string();
        let listen = self.cluster_addr(id);
        let founding = id == 0 && self.brokers.iter().all(Option::is_none);
        let seeds = (0..self.brokers.len() as i32)
            .filter(|other| *other != id && (id != 0 || self.brokers[*other as usize].is_some()))
            .map(|other| self.cluster_addr(other))
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec![
            "--node-id",
            node.as_str(),
            "--cluster-listen",
            listen.as_str(),
        ];
        if !founding {
            args.extend(["--seeds", seeds.as_str()]);
        }
        args.extend(self.extra.iter().map(String::as_str));
        let log = self.tmp.path().join(format!("b{id}.log"));
        let b = BinaryBroker::spawn(&self.data_dir(id), &args, &log);
        self.brokers[id as usize] = Some(b);
    }

    /// Stops broker `id` with SIGTERM (a controlled shutdown: it hands its leaderships over)
    /// and waits for it to exit 0.
    pub fn terminate(&mut self, id: i32) {
        if let Some(mut b) = self.brokers[id as usize].take() {
            let status = b.sigterm_and_wait(Duration::from_secs(60));
            assert!(
                status.success(),
                "broker {id} exited with {status} after SIGTERM"
            );
        }
    }

    /// SIGKILLs broker `id` (no shutdown, no final fsync).
    pub fn kill9(&mut self, id: i32) {
        if let Some(mut b) = self.brokers[id as usize].take() {
            b.kill9();
        }
    }

    pub fn broker(&self, id: i32) -> &BinaryBroker {
        self.brokers[id as usize]
            .as_ref()
            .unwrap_or_else(|| panic!("broker {id} is not running"))
    }

    /// The ids of the running brokers.
    pub fn running(&self) -> Vec<i32> {
        (0..self.brokers.len() as i32)
            .filter(|id| self.brokers[*id as usize].is_some())
            .collect()
    }

    /// Every running broker's Kafka address, comma separated.
    pub fn bootstrap(&self) -> String {
        self.running()
            .iter()
            .map(|id| self.broker(*id).bootstrap())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for ProcessCluster {
    /// A failing test shows the end of every broker's log (killed brokers' included): the
    /// temporary directory that holds them goes with the cluster.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for id in 0..self.brokers.len() {
            let path = self.tmp.path().join(format!("b{id}.log"));
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "==== broker {id} ({}), last {} lines\n{}",
                path.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// Removes ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Finds `listening kafka=<addr> http=<addr>` in the broker's output (colours tolerated here;
/// `sigterm_shuts_down_cleanly…` checks the plain line).
pub fn parse_listening_line(out: &str) -> Option<(SocketAddr, SocketAddr)> {
    let out = strip_ansi(out);
    let line = out.lines().find(|l| l.contains("listening kafka="))?;
    let field = |name: &str| -> Option<SocketAddr> {
        let start = line.find(name)? + name.len();
        let rest = &line[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"' || c == ',')
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    Some((field("kafka=")?, field("http=")?))
}

/// A minimal HTTP/1.1 GET; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, None)
}

/// A minimal HTTP/1.1 request, with a JSON `body` if given; returns (status, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = match json {
        Some(b) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => "\r\n".to_string(),
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{body}"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sum of a broker's `/metrics` samples of `name` whose line contains `filter` ("" for
/// all of them); 0 when there is none.
pub fn metric_sum(http: SocketAddr, name: &str, filter: &str) -> f64 {
    let (status, body) = http_get(http, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "/metrics: {body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && l.contains(filter))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// librdkafka (rdkafka crate)

pub const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

/// One stretch of `n` records per codec, back to back from record 0: (codec, records), so that
/// batches of every codec sit side by side in one partition.
pub fn codec_stretches(n: u64) -> impl Iterator<Item = (&'static str, std::ops::Range<u64>)> {
    (0u64..)
        .zip(CODECS)
        .map(move |(k, codec)| (codec, k * n..(k + 1) * n))
}

/// What the delivery reports said about each record (by index).
#[derive(Default)]
pub struct DeliveryLog {
    pub acked: Mutex<Vec<(u64, i32, i64)>>,
    pub failed: Mutex<Vec<(u64, String)>>,
    /// When each acknowledgement was seen (at the producer's poll).
    pub acked_at: Mutex<Vec<(u64, Instant)>>,
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, idx: usize) {
        match result {
            Ok(m) => {
                self.acked.lock().expect("delivery log lock").push((
                    idx as u64,
                    m.partition(),
                    m.offset(),
                ));
                self.acked_at
                    .lock()
                    .expect("delivery log lock")
                    .push((idx as u64, Instant::now()));
            }
            Err((e, _)) => self
                .failed
                .lock()
                .expect("delivery log lock")
                .push((idx as u64, e.to_string())),
        }
    }
}

pub type TestProducer = BaseProducer<DeliveryLog>;

/// A librdkafka producer with the given extra settings.
pub fn rd_producer(bootstrap: &str, extra: &[(&str, &str)]) -> TestProducer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .set("broker.address.family", "v4");
    rd_debug(&mut cfg);
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create_with_context(DeliveryLog::default())
        .expect("create rdkafka producer")
}

fn rd_headers(r: &TestRecord) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        h = h.insert(Header {
            key: k,
            value: v.as_deref(),
        });
    }
    h
}

/// Enqueues record `i` (to `partition` when given) without waiting.
pub fn rd_send(p: &TestProducer, topic: &str, partition: Option<i32>, i: u64) {
    let r = test_record(i);
    let mut rec: BaseRecord<'_, [u8], [u8], usize> =
        BaseRecord::with_opaque_to(topic, i as usize).headers(rd_headers(&r));
    if let Some(k) = &r.key {
        rec = rec.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        rec = rec.payload(v.as_slice());
    }
    if let Some(part) = partition {
        rec = rec.partition(part);
    }
    for _ in 0..1000 {
        match p.send(rec) {
            Ok(()) => return,
            Err((e, back)) => {
                assert!(
                    matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ),
                    "enqueue record {i} to {topic}: {e}"
                );
                rec = back;
                p.poll(Duration::from_millis(10));
            }
        }
    }
    panic!("producer queue stayed full while sending record {i}");
}

/// Produces records `range` to `topic` with librdkafka and waits for every delivery report;
/// panics when any failed. Returns (idx, partition, offset) per record.
pub fn rd_produce_all(
    bootstrap: &str,
    topic: &str,
    partition: Option<i32>,
    range: std::ops::Range<u64>,
    extra: &[(&str, &str)],
) -> Vec<(u64, i32, i64)> {
    let p = rd_producer(bootstrap, extra);
    for i in range.clone() {
        rd_send(&p, topic, partition, i);
    }
    p.flush(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("flush producer to {topic}: {e}"));
    let failed = p.context().failed.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "{} deliveries to {topic} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    let acked = p.context().acked.lock().expect("lock").clone();
    assert_eq!(
        acked.len() as u64,
        range.end - range.start,
        "delivery reports"
    );
    acked
}

/// A librdkafka consumer for manual assignment (librdkafka wants a group.id even then; it never
/// joins the group unless subscribed), checking CRCs.
pub fn rd_consumer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    rd_consumer_config(bootstrap, extra)
        .create()
        .expect("create rdkafka consumer")
}

/// The configuration [`rd_consumer`] creates its consumer from (for a consumer with a context
/// of the test's own).
pub fn rd_consumer_config(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-tests-reader")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .set("broker.address.family", "v4")
        .set("fetch.wait.max.ms", "100");
    rd_debug(&mut cfg);
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg
}

/// Converts an rdkafka message into a [`Consumed`].
pub fn to_consumed<M: Message>(m: &M) -> Consumed {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Consumed {
        partition: m.partition(),
        offset: m.offset(),
        record: TestRecord {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        },
    }
}

/// An [`rd_consumer`] assigned `partitions` of `topic`, each read from `from`.
pub fn rd_reader(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    from: Offset,
    extra: &[(&str, &str)],
) -> BaseConsumer {
    let c = rd_consumer(bootstrap, extra);
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, from)
            .expect("add partition");
    }
    c.assign(&tpl).expect("assign partitions");
    c
}

/// Reads `count` records from the start of `partitions` of `topic`, within `timeout`.
pub fn rd_consume_from_start(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    count: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    let c = rd_reader(bootstrap, topic, partitions, Offset::Beginning, &[]);
    rd_poll_n(&c, count, timeout)
}

/// Polls until `count` records arrived or `timeout` passed; errors fail the test.
pub fn rd_poll_n(c: &BaseConsumer, count: usize, timeout: Duration) -> Vec<Consumed> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(to_consumed(&m)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => panic!("consumer error after {} records: {e}", out.len()),
            None => {}
        }
    }
    assert!(
        out.len() >= count,
        "got {} of {count} records within {timeout:?}",
        out.len()
    );
    out
}

/// The offsets the delivery reports of [`rd_produce_all`] named, in order.
pub fn sorted_offsets(acked: &[(u64, i32, i64)]) -> Vec<i64> {
    let mut offsets: Vec<i64> = acked.iter().map(|a| a.2).collect();
    offsets.sort_unstable();
    offsets
}

/// (low, high) watermarks of a partition.
pub fn rd_watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let c = rd_consumer(bootstrap, &[]);
    c.fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("watermarks of {topic}/{partition}: {e}"))
}

/// A librdkafka admin client.
pub fn rd_admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .create()
        .expect("create rdkafka admin client")
}

/// Admin options with a 30 s operation timeout.
pub fn admin_opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Number of partitions of `topic` per Metadata, or None when the broker does not know it.
pub fn rd_partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let c = rd_consumer(bootstrap, &[("allow.auto.create.topics", "false")]);
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("fetch metadata");
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
}

/// The committed offsets of `group` for partitions `0..partitions` of `topic` (-1: none), read
/// through `bootstrap` by a consumer that does not join the group. Retried while the
/// coordinator is moving (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS: a new leader of the
/// group's `__consumer_offsets` partition is taking up its role), which librdkafka's
/// `committed()` reports instead of retrying.
pub fn rd_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let c = rd_consumer(bootstrap, &[("group.id", group)]);
    wait_for(
        "OffsetFetch of the group's committed offsets",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(topic, p);
            }
            let got = c
                .committed_offsets(tpl, Duration::from_secs(10))
                .map_err(|e| eprintln!("OffsetFetch of {group} through {bootstrap}: {e}"))
                .ok()?;
            let offsets = got
                .elements()
                .iter()
                .map(|e| {
                    let o = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => -1,
                    };
                    (e.partition(), o)
                })
                .collect();
            Some(offsets)
        },
    )
}

/// The coordinator of `group` as FindCoordinator (v3) to the broker at `addr` names it once
/// it has one.
pub fn find_coordinator(addr: SocketAddr, group: &str) -> i32 {
    use kafka_protocol::messages::FindCoordinatorRequest;
    wait_for(
        "FindCoordinator to name a coordinator",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let mut c = RawClient::connect(addr);
            let r = c.send(
                &FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(group.to_string())),
                3,
            );
            (r.error_code == 0).then_some(r.node_id.0)
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Raw Kafka protocol over TCP

/// A blocking Kafka-protocol connection using `kafka-protocol`'s client-side encoding.
pub struct RawClient {
    pub stream: TcpStream,
    correlation: i32,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set read timeout");
        stream.set_nodelay(true).expect("set nodelay");
        RawClient {
            stream,
            correlation: 0,
        }
    }

    /// A connection that gives up after `timeout` (connecting, and waiting for each answer).
    pub fn try_connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<RawClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            correlation: 0,
        })
    }

    /// Like [`RawClient::send`], but an I/O error, a closed connection or an undecodable answer
    /// is an `Err` (for polling a broker that may be stopped or restarting).
    pub fn try_send<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, String> {
        let frame = self.frame(req, version);
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("write: {e}"))?;
        let payload = self
            .read_frame()
            .map_err(|e| format!("read: {e}"))?
            .ok_or("connection closed")?;
        let mut buf = Bytes::from(payload);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(|e| format!("response header: {e}"))?;
        if header.correlation_id != self.correlation {
            return Err(format!("correlation id {}", header.correlation_id));
        }
        R::Response::decode(&mut buf, version).map_err(|e| format!("response: {e}"))
    }

    /// Encodes a request frame.
    pub fn frame<R: Request>(&mut self, req: &R, version: i16) -> Vec<u8> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("sluice-tests")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .expect("encode request header");
        req.encode(&mut body, version).expect("encode request");
        let mut out = Vec::with_capacity(body.len() + 4);
        out.put_i32(body.len() as i32);
        out.extend_from_slice(&body);
        out
    }

    /// Sends `req` at `version` and decodes the response.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        let frame = self.frame(req, version);
        self.stream.write_all(&frame).expect("write request");
        let payload = self
            .read_frame()
            .expect("read response")
            .unwrap_or_else(|| {
                panic!(
                    "broker closed the connection instead of answering API key {} v{version}",
                    R::KEY
                )
            });
        let mut buf = Bytes::from(payload);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .expect("decode response header");
        assert_eq!(header.correlation_id, self.correlation, "correlation id");
        let resp = R::Response::decode(&mut buf, version)
            .unwrap_or_else(|e| panic!("decode response of API key {} v{version}: {e}", R::KEY));
        assert!(
            !buf.has_remaining(),
            "{} trailing bytes after response of API key {} v{version}",
            buf.remaining(),
            R::KEY
        );
        resp
    }

    /// Reads one frame; Ok(None) on a clean EOF.
    pub fn read_frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let n = i32::from_be_bytes(len);
        assert!(
            (0..=64 << 20).contains(&n),
            "broker sent a frame length of {n}"
        );
        let mut payload = vec![0u8; n as usize];
        self.stream.read_exact(&mut payload)?;
        Ok(Some(payload))
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// The directory of one partition's files: `<topic>-<partition>` anywhere under the data dir.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> Option<PathBuf> {
    find_dir(data_dir, &format!("{topic}-{partition}"), 4)
}

/// The segment files (`*.log`) of one partition, sorted by name (= base offset). The partition
/// directory is found anywhere under the data dir, named `<topic>-<partition>`.
pub fn segment_files(data_dir: &Path, topic: &str, partition: i32) -> Vec<PathBuf> {
    let dir = partition_dir(data_dir, topic, partition).unwrap_or_else(|| {
        panic!(
            "no directory {topic}-{partition} under {}",
            data_dir.display()
        )
    });
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read partition dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

fn find_dir(root: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    let mut subdirs = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == name) {
                return Some(p);
            }
            subdirs.push(p);
        }
    }
    if depth == 0 {
        return None;
    }
    subdirs
        .into_iter()
        .find_map(|d| find_dir(&d, name, depth - 1))
}

/// A unique topic name per test.
pub fn topic_name(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Raw requests used by several tests

use kafka_protocol::messages::{
    fetch_request, list_offsets_request, produce_request, FetchRequest, ListOffsetsRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

pub fn tname(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Encodes a v2 record batch of `values` (offsets 0..n relative), optionally idempotent.
pub fn encode_batch(
    values: &[&[u8]],
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
) -> Bytes {
    let (pid, epoch, base_seq) = producer.unwrap_or((-1, -1, -1));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            producer_id: pid,
            producer_epoch: epoch,
            sequence: if base_seq < 0 {
                -1
            } else {
                base_seq + i as i32
            },
            ..record_at(i as i64, now, v)
        })
        .collect();
    encode_records(&records, compression)
}

/// The record at relative `offset` of a batch: `value`, no key, no headers, created at
/// `timestamp` (ms), from no idempotent producer.
pub fn record_at(offset: i64, timestamp: i64, value: &[u8]) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key: None,
        value: Some(Bytes::copy_from_slice(value)),
        headers: Default::default(),
    }
}

/// `records` as one v2 batch.
pub fn encode_records(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// Produce v9 of one batch to one partition: (error code, base offset).
pub fn raw_produce(
    c: &mut RawClient,
    topic: &str,
    partition: i32,
    batch: Bytes,
    acks: i16,
) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(tname(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch)),
            ])]);
    let resp = c.send(&req, 9);
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .expect("produce response has a partition");
    (p.error_code, p.base_offset)
}

/// What a raw Fetch returned for one partition.
#[derive(Debug)]
pub struct RawFetch {
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Bytes,
}

/// A consumer's Fetch of one partition from `offset`, without a fetch session.
pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(8 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(tname(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(4 << 20)])])
}

/// Fetch v12 of one partition from `offset`.
pub fn raw_fetch(
    c: &mut RawClient,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> RawFetch {
    let req = fetch_request(topic, partition, offset, max_wait_ms, min_bytes);
    let resp = c.send(&req, 12);
    assert_eq!(resp.error_code, 0, "fetch top-level error");
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .expect("fetch response has a partition");
    RawFetch {
        error_code: p.error_code,
        high_watermark: p.high_watermark,
        log_start_offset: p.log_start_offset,
        records: p.records.clone().unwrap_or_default(),
    }
}

/// The records of the v2 batches in `records` (a Fetch answer's record set), in order.
pub fn decoded_records(records: &Bytes) -> Vec<Record> {
    let mut buf = records.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("decode fetched batches")
        .into_iter()
        .flat_map(|s| s.records)
        .collect()
}

/// ListOffsets v7 (-2 = earliest, -1 = latest, else a timestamp): (error code, offset).
pub fn raw_list_offset(c: &mut RawClient, topic: &str, partition: i32, ts: i64) -> (i16, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(tname(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(ts),
            ])]);
    let resp = c.send(&req, 7);
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .expect("list offsets response has a partition");
    (p.error_code, p.offset)
}

// ---------------------------------------------------------------------------------------------
// A compacted topic for clients to read

/// A one-partition topic through librdkafka's admin API: compacted, 2 KiB segments, compacted
/// as soon as anything new is in a closed segment.
pub fn create_compacted_topic(bootstrap: &str, topic: &str) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let created = broker_runtime()
        .block_on(
            rd_admin(bootstrap).create_topics(
                [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))
                    .set("cleanup.policy", "compact")
                    .set("segment.bytes", "2048")
                    .set("min.cleanable.dirty.ratio", "0.01")],
                &admin_opts(),
            ),
        )
        .expect("create_topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Waits until the broker's ticker has compacted partition 0 of `topic` (something removed and
/// nothing more due); returns the partition.
pub fn wait_compacted(
    broker: &TestBroker,
    topic: &str,
) -> std::sync::Arc<sluice_broker::log::PartitionLog> {
    let log = broker
        .ctx()
        .logs
        .partition(topic, 0)
        .expect("partition 0 here");
    wait_for(
        "the closed segments to be compacted",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (broker.ctx().logs.compacted_records() > 0 && !log.compaction_due()).then_some(()),
    );
    log
}

/// A one-partition compacted topic whose first segments compaction left with one empty batch
/// each: 40 rounds over ten keys, a batch per round (librdkafka), 2 KiB segments, compacted by
/// the broker's ticker (start the broker with a short `--retention-check-interval-ms`).
pub struct CompactedTable {
    pub topic: String,
    /// Every key's latest value.
    pub latest: BTreeMap<String, String>,
    /// The last offset written.
    pub last: i64,
    pub sent: usize,
}

impl CompactedTable {
    /// A broker compacting every 100 ms, a table on it, read by a client: `read(bootstrap,
    /// topic, last offset)` runs it and returns its output, which [`CompactedTable::check_read`]
    /// then checks.
    pub fn read_by(who: &str, read: impl FnOnce(&str, &str, &str) -> Finished) {
        let broker = TestBroker::start(&["--retention-check-interval-ms", "100"]);
        let table = CompactedTable::fill(&broker, &format!("{who}-table"));
        let out = read(&broker.bootstrap(), &table.topic, &table.last.to_string());
        table.check_read(who, &out);
    }

    pub fn fill(broker: &TestBroker, prefix: &str) -> CompactedTable {
        use rdkafka::producer::{BaseRecord, Producer};
        let bs = broker.bootstrap();
        let topic = topic_name(prefix);
        create_compacted_topic(&bs, &topic);
        let p = rd_producer(&bs, &[("acks", "all"), ("linger.ms", "0")]);
        let mut latest = BTreeMap::new();
        let mut sent = 0;
        for round in 0..40 {
            for k in 0..10 {
                let key = format!("k{k}");
                let value = format!("round-{round}-of-k{k}-{}", "x".repeat(30));
                p.send(
                    BaseRecord::with_opaque_to(&topic, sent)
                        .partition(0)
                        .key(key.as_bytes())
                        .payload(value.as_bytes()),
                )
                .expect("queue a record");
                latest.insert(key, value);
                sent += 1;
            }
            p.flush(Duration::from_secs(30)).expect("flush");
        }
        assert_eq!(p.context().acked.lock().expect("lock").len(), sent);
        wait_compacted(broker, &topic);
        // The first segment holds one empty batch: a fetch there must still bring records, and
        // the next segments' empty batches must not reach a client two in a row.
        let seg0 = broker
            .data_dir()
            .join("topics")
            .join(format!("{topic}-0"))
            .join("00000000000000000000.log");
        let len = std::fs::metadata(&seg0).expect("first segment").len();
        assert_eq!(len, 61, "the first segment is compacted to one empty batch");
        CompactedTable {
            topic,
            latest,
            last: sent as i64 - 1,
            sent,
        }
    }

    /// Checks a client's `#read <records> <last offset>` and `#latest <key> <value>` lines: every
    /// key's latest value, fewer records than were written.
    pub fn check_read(&self, who: &str, out: &Finished) {
        let read = tagged(out, "read");
        let seen: BTreeMap<String, String> = tagged(out, "latest")
            .into_iter()
            .map(|l| {
                let (k, v) = l.split_once(' ').expect("key value");
                (k.to_string(), v.to_string())
            })
            .collect();
        assert_eq!(
            seen, self.latest,
            "{who} reads every key's latest value ({read:?})"
        );
        let n: usize = read
            .first()
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{who}: no #read line"));
        assert!(
            n < self.sent / 2,
            "{who}: {n} of {} records left after compaction",
            self.sent
        );
    }
}
