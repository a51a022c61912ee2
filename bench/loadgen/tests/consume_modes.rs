//! The librdkafka consume mode against a real broker (started in this process): a poll per
//! record and the batch call read the same records, stop at `--bytes`, and name a topic that
//! is empty. The suite's consume figures are only as good as this count.

use std::path::Path;
use std::time::Duration;

use clap::{Args, Command, FromArgMatches, Parser};
use sluice_loadgen::admin::{create_topic, CreateTopicArgs};
use sluice_loadgen::consume::{self, ConsumeArgs, Consumed};
use sluice_loadgen::produce::{self, ProduceArgs};

/// One mode's arguments, parsed the way the command line parses them.
fn parse<A: Args + FromArgMatches>(argv: &[&str]) -> A {
    let m = A::augment_args(Command::new("sluice-loadgen")).get_matches_from(argv);
    A::from_arg_matches(&m).expect("arguments")
}

struct Broker {
    rt: tokio::runtime::Runtime,
    broker: Option<sluice_broker::Broker>,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = sluice_broker::config::Config::parse_from(args(dir.path()));
        let broker = rt
            .block_on(sluice_broker::Broker::start(config))
            .expect("broker starts");
        Broker {
            rt,
            broker: Some(broker),
            _dir: dir,
        }
    }

    fn bootstrap(&self) -> String {
        self.broker
            .as_ref()
            .expect("running")
            .kafka_addr()
            .to_string()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), b.shutdown()).await
            });
        }
    }
}

fn args(dir: &Path) -> Vec<String> {
    [
        "sluice-broker",
        "--data-dir",
        &dir.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

const RECORDS: u64 = 3_000;
const SIZE: u64 = 100;

/// Creates the topic `backlog` with `partitions` partitions, as `sluice-loadgen create-topic`.
fn create_backlog(bootstrap: &str, partitions: u32) {
    let partitions = partitions.to_string();
    create_topic(parse::<CreateTopicArgs>(&[
        "t",
        "--bootstrap",
        bootstrap,
        "--topic",
        "backlog",
        "--partitions",
        &partitions,
    ]))
    .expect("create the topic");
}

/// A broker with `RECORDS` records of `SIZE` bytes over three partitions of `backlog`.
fn filled() -> Broker {
    let b = Broker::start();
    let bs = b.bootstrap();
    create_backlog(&bs, 3);
    let bytes = (RECORDS * SIZE).to_string();
    produce::run(parse::<ProduceArgs>(&[
        "t",
        "--bootstrap",
        &bs,
        "--topic",
        "backlog",
        "--record-size",
        "100",
        "--bytes",
        &bytes,
        "--partitioner",
        "round-robin",
        "--warmup-seconds",
        "0",
    ]))
    .expect("fill the topic");
    b
}

fn read(bs: &str, extra: &[&str]) -> anyhow::Result<Consumed> {
    let mut argv = vec![
        "t",
        "--bootstrap",
        bs,
        "--topic",
        "backlog",
        "--timeout-seconds",
        "60",
    ];
    argv.extend_from_slice(extra);
    consume::run(parse::<ConsumeArgs>(&argv))
}

#[test]
fn a_poll_per_record_and_the_batch_call_read_every_record_once() {
    let b = filled();
    let whole = Consumed {
        records: RECORDS,
        bytes: RECORDS * SIZE,
    };
    for batch in ["0", "1", "7", "1000"] {
        let got = read(&b.bootstrap(), &["--batch", batch]).expect("read");
        assert_eq!(got, whole, "--batch {batch}");
    }
}

#[test]
fn a_read_stops_on_the_record_that_reaches_its_bytes() {
    let b = filled();
    // 1,234 records' worth and a little more: the read ends on record 1,235.
    let limit = (1_234 * SIZE + 1).to_string();
    for batch in ["0", "1000"] {
        let got = read(&b.bootstrap(), &["--batch", batch, "--bytes", &limit]).expect("read");
        assert_eq!(
            got,
            Consumed {
                records: 1_235,
                bytes: 1_235 * SIZE
            },
            "--batch {batch}"
        );
    }
}

#[test]
fn an_empty_topic_is_named() {
    let b = Broker::start();
    let bs = b.bootstrap();
    create_backlog(&bs, 1);
    let err = read(&bs, &["--batch", "100"]).expect_err("an empty topic is refused");
    assert!(err.to_string().contains("backlog is empty"), "{err:#}");
}
