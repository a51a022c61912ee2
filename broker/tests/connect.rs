//! Kafka Connect in distributed mode (Apache Kafka 4.2's `ConnectDistributed` worker and its
//! FileStream connectors, fetched by `bench/kafka/setup.sh`) works unchanged against the broker:
//! the worker creates its compacted config, offset and status topics through the AdminClient,
//! joins its group with the `connect` protocol, runs a source connector (a file into a topic)
//! and a sink connector (the topic into a file); stopped, with the broker restarted meanwhile,
//! a new worker gets both connectors back from the config topic and each task resumes from the
//! offsets it stored: the lines added while it was down arrive, and none twice. Run twice: as
//! is, and with exactly-once source support (the source's lines and offsets in transactions,
//! zombie fencing through the AdminClient, the sink reading read_committed).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// Lines in the file before the first worker starts, and added while it is stopped.
const FIRST: u32 = 300;
const SECOND: u32 = 200;

/// A `ConnectDistributed` worker process (SIGKILLed when dropped; its log is shown when the test
/// fails).
struct Worker {
    child: Child,
    rest: SocketAddr,
    log: PathBuf,
}

impl Worker {
    /// Starts a worker of group `connect-<tag>` against `bootstrap`, its REST API on a free
    /// port, and waits until the API answers.
    fn start(dir: &Path, bootstrap: &str, tag: &str, run: u32, extra: &str) -> Worker {
        let rest = {
            let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("its address")
        };
        let props = dir.join(format!("worker-{run}.properties"));
        let text = format!(
            "bootstrap.servers={bootstrap}\n\
             group.id=connect-{tag}\n\
             config.storage.topic={tag}-configs\n\
             offset.storage.topic={tag}-offsets\n\
             status.storage.topic={tag}-status\n\
             config.storage.replication.factor=1\n\
             offset.storage.replication.factor=1\n\
             status.storage.replication.factor=1\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             listeners=http://{rest}\n\
             offset.flush.interval.ms=200\n\
             {extra}"
        );
        std::fs::write(&props, text).expect("write worker properties");
        let log = dir.join(format!("worker-{run}.log"));
        let out = std::fs::File::create(&log).expect("worker log");
        let child = kafka_tool_cmd(
            "org.apache.kafka.connect.cli.ConnectDistributed",
            &[props.to_str().expect("utf-8 path")],
        )
        .stdout(Stdio::from(out.try_clone().expect("clone log handle")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start the Connect worker");
        let mut w = Worker { child, rest, log };
        wait_for(
            "the Connect worker's REST API",
            Duration::from_secs(90),
            Duration::from_millis(200),
            || {
                if let Some(status) = w.child.try_wait().expect("try_wait") {
                    panic!("the Connect worker exited ({status}):\n{}", w.log_text());
                }
                matches!(http_get(w.rest, "/connectors"), Ok((200, _))).then_some(())
            },
        );
        w
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Creates connector `name` with the JSON config `config`.
    fn create(&self, name: &str, config: &str) {
        let body = format!(r#"{{"name":"{name}","config":{config}}}"#);
        let (status, reply) =
            http_request(self.rest, "POST", "/connectors", Some(&body)).expect("POST /connectors");
        assert_eq!(status, 201, "create connector {name}: {reply}");
    }

    /// Waits until connector `name` and its one task are RUNNING.
    fn wait_running(&self, name: &str) {
        wait_for(
            &format!("connector {name} and its task to run"),
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let (status, body) =
                    http_get(self.rest, &format!("/connectors/{name}/status")).ok()?;
                assert!(
                    !body.contains("FAILED"),
                    "connector {name}: {body}\n{}",
                    self.log_text()
                );
                (status == 200 && body.matches(r#""state":"RUNNING""#).count() == 2).then_some(())
            },
        );
    }

    /// SIGTERM (the worker stops its tasks and stores their offsets), then wait for the exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -TERM {pid}");
        let child = &mut self.child;
        wait_for(
            "the Connect worker to exit after SIGTERM",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || child.try_wait().expect("try_wait"),
        );
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- Connect worker log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn lines(range: std::ops::RangeInclusive<u32>) -> String {
    range.map(|i| format!("line {i} of the file\n")).collect()
}

/// Waits until the sink's file holds exactly `want` (no line missing, none twice).
fn wait_for_sink(path: &Path, want: &str, worker: &Worker) {
    let mut last = String::new();
    let got = wait_for(
        "the sink connector to write every line",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            last = std::fs::read_to_string(path).unwrap_or_default();
            (last.lines().count() >= want.lines().count()).then(|| last.clone())
        },
    );
    assert_eq!(
        got,
        want,
        "the sink's file is the source's, line for line\n{}",
        worker.log_text()
    );
}

#[test]
fn kafka_connect_runs_file_connectors_and_resumes_them_after_a_restart() {
    file_connectors_across_a_restart(false);
}

/// The same with exactly-once source support (KIP-618): the worker's leader writes the config
/// topic in transactions and fences the source task's earlier producers (the AdminClient's
/// fenceProducers: InitProducerId by transactional id), the source task writes each poll's
/// lines and its offsets in one transaction, and the sink reads read_committed.
#[test]
fn kafka_connect_with_exactly_once_source_support_writes_in_transactions() {
    file_connectors_across_a_restart(true);
}

fn file_connectors_across_a_restart(exactly_once: bool) {
    let mut broker = TestBroker::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (source, sink) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    let tag = topic_name(if exactly_once {
        "connect-eos"
    } else {
        "connect"
    });
    let topic = format!("{tag}-lines");
    std::fs::write(&source, lines(1..=FIRST)).expect("write the source file");
    // Exactly-once: the worker's own setting, and the connectors' clients may be overridden
    // (the sink's consumer reads read_committed).
    let (worker_extra, source_extra, sink_extra) = if exactly_once {
        (
            "exactly.once.source.support=enabled\nconnector.client.config.override.policy=All\n",
            r#","exactly.once.support":"required","transaction.boundary":"poll""#,
            r#","consumer.override.isolation.level":"read_committed""#,
        )
    } else {
        ("", "", "")
    };

    let worker = Worker::start(dir.path(), &broker.bootstrap(), &tag, 1, worker_extra);
    worker.create(
        "file-source",
        &format!(
            r#"{{"connector.class":"org.apache.kafka.connect.file.FileStreamSourceConnector","tasks.max":"1","file":"{}","topic":"{topic}"{source_extra}}}"#,
            source.display()
        ),
    );
    worker.create(
        "file-sink",
        &format!(
            r#"{{"connector.class":"org.apache.kafka.connect.file.FileStreamSinkConnector","tasks.max":"1","file":"{}","topics":"{topic}"{sink_extra}}}"#,
            sink.display()
        ),
    );
    worker.wait_running("file-source");
    worker.wait_running("file-sink");
    wait_for_sink(&sink, &lines(1..=FIRST), &worker);

    // The worker's own topics were created compacted, as Connect requires.
    for kind in ["configs", "offsets", "status"] {
        let name = format!("{tag}-{kind}");
        let log = broker
            .ctx()
            .logs
            .partition(&name, 0)
            .unwrap_or_else(|| panic!("{name} here"));
        assert!(log.config().cleanup.compact, "{name} is compacted");
    }
    if exactly_once {
        // The lines went in transactions, every one ended: the topic holds markers (offsets
        // that are not records) and nothing holds its last stable offset back.
        let log = broker
            .ctx()
            .logs
            .partition(&topic, 0)
            .expect("the lines' partition here");
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        assert!(
            log.high_watermark() > i64::from(FIRST),
            "{} offsets for {FIRST} lines: no transaction markers",
            log.high_watermark()
        );
        let committed = rd_read(&broker.bootstrap(), &topic, 1, "read_committed");
        assert_eq!(committed.values().sum::<usize>(), FIRST as usize);
    }

    // Down: the worker (cleanly, storing offsets) and then the broker; lines come meanwhile.
    worker.stop();
    broker.restart();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&source)
        .expect("open the source file");
    std::io::Write::write_all(&mut f, lines(FIRST + 1..=FIRST + SECOND).as_bytes())
        .expect("append lines");
    drop(f);

    // A new worker finds both connectors in the config topic and each task its offsets.
    let worker = Worker::start(dir.path(), &broker.bootstrap(), &tag, 2, worker_extra);
    worker.wait_running("file-source");
    worker.wait_running("file-sink");
    wait_for_sink(&sink, &lines(1..=FIRST + SECOND), &worker);
}
