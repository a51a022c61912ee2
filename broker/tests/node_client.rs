//! The Node.js Kafka client kafkajs (pure JavaScript, its own protocol code; pinned in
//! `scripts/node-clients.sh`) works unchanged against the broker: its idempotent producer writes
//! gzip and plain batches byte-exact, its group consumer commits and resumes across a broker
//! restart, and it reads a compacted topic from the start through segments compaction left
//! with nothing but an empty batch (a fetch without a record makes kafkajs 2 fetch the same
//! offset forever, so the broker reads on to the next record).
//!
//! The driver is `broker/tests/node/kafkajs_client.js`, run with `node` and `NODE_PATH` pointing
//! into the install of `scripts/node-clients.sh`. Every run is bounded in time.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};

const RUN: Duration = Duration::from_secs(120);

/// The `node_modules` of `scripts/node-clients.sh` (env `SLUICE_NODE_CLIENTS_DIR`, else the
/// script's last stdout line).
fn node_modules() -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| client_setup_dir("node-clients.sh", "SLUICE_NODE_CLIENTS_DIR", "node_modules"))
        .clone()
        .unwrap_or_else(|e| {
            panic!("kafkajs is needed: {e}. Run scripts/node-clients.sh (needs node and npm; or set SLUICE_NODE_CLIENTS_DIR)")
        })
        .join("node_modules")
}

/// Runs the driver with `args`; panics with its output unless it exits 0 within `RUN`.
fn kafkajs(args: &[&str]) -> Finished {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/kafkajs_client.js");
    let mut cmd = Command::new("node");
    cmd.arg(script).args(args).env("NODE_PATH", node_modules());
    run_bounded(cmd, &format!("kafkajs {}", args.join(" ")), RUN)
}

/// Produces the test records `records` to partition `p` of `topic` with kafkajs.
fn produce(bs: &str, topic: &str, p: i32, records: Range<u64>, codec: &str) -> Finished {
    let (from, to, p) = (
        records.start.to_string(),
        records.end.to_string(),
        p.to_string(),
    );
    kafkajs(&[
        "produce",
        "--brokers",
        bs,
        "--topic",
        topic,
        "--from",
        &from,
        "--to",
        &to,
        "--partition",
        &p,
        "--compression",
        codec,
        "--idempotent",
        "true",
    ])
}

/// A kafkajs group member reading `count` records of `topic` in `group` and committing them:
/// the records and the offsets committed (partitions without a commit left out).
fn consume(bs: &str, topic: &str, group: &str, count: u64) -> (Vec<Consumed>, BTreeMap<i32, i64>) {
    let count = count.to_string();
    let out = kafkajs(&[
        "consume",
        "--brokers",
        bs,
        "--topic",
        topic,
        "--group",
        group,
        "--count",
        &count,
    ]);
    let mut committed = partition_offsets(&out, "committed");
    committed.retain(|_, o| *o >= 0);
    (parse_consumed_lines(&out.stdout), committed)
}

#[test]
fn kafkajs_produces_byte_exact_and_its_group_commits_and_resumes_across_a_restart() {
    let mut broker = TestBroker::start(&[]);
    let topic = topic_name("kafkajs");
    let created = broker
        .block_on(rd_admin(&broker.bootstrap()).create_topics(
            [&NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &admin_opts(),
        ))
        .expect("create_topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // 150 records into each partition, gzip and plain, every one acknowledged at its offset.
    let bs = broker.bootstrap();
    let stretches = [
        (0, 0..150, "gzip"),
        (1, 150..300, "none"),
        (2, 300..450, "gzip"),
    ];
    for (p, records, codec) in stretches.clone() {
        let acked = acknowledged(&produce(&bs, &topic, p, records.clone(), codec));
        let want: Vec<(u64, i32, i64)> = records
            .clone()
            .map(|i| (i, p, (i - records.start) as i64))
            .collect();
        assert_eq!(acked, want, "kafkajs acknowledgements into partition {p}");
    }
    // librdkafka reads kafkajs's batches byte for byte.
    let rd = rd_consume_from_start(&bs, &topic, &[0, 1, 2], 450, Duration::from_secs(60));
    assert_records_exact(&rd, 0..450);

    let group = format!("{topic}-g");
    let (got1, committed1) = consume(&bs, &topic, &group, 200);
    assert_eq!(got1.len(), 200, "first member's records");
    let indexes: Vec<u64> = got1.iter().map(Consumed::index).collect();
    assert_records_exact(&got1, indexes);
    assert_eq!(
        committed1,
        next_offsets(&got1),
        "committed after the first member"
    );

    // The group's offsets outlive a broker restart; the next member goes on from them.
    broker.restart();
    let bs = broker.bootstrap();
    let (got2, committed2) = consume(&bs, &topic, &group, 250);
    assert_resumed_after(&got2, &committed1);
    let mut all = got1;
    all.extend(got2);
    assert_records_exact(&all, 0..450);
    let ends: BTreeMap<i32, i64> = stretches.iter().map(|(p, _, _)| (*p, 150)).collect();
    assert_eq!(committed2, ends, "committed after the second member");
}

#[test]
fn kafkajs_reads_a_compacted_topic_through_segments_left_empty() {
    CompactedTable::read_by("kafkajs", |bs, topic, through| {
        kafkajs(&[
            "latest",
            "--brokers",
            bs,
            "--topic",
            topic,
            "--through",
            through,
        ])
    });
}

/// kafkajs's transactional producer commits and aborts against the broker's coordinator, and
/// librdkafka's read_committed consumer reads exactly the committed transactions.
#[test]
fn kafkajs_transactions_commit_and_abort() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("kafkajs-txn");
    let created = broker
        .block_on(rd_admin(&bs).create_topics(
            [&NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &admin_opts(),
        ))
        .expect("create_topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let mut args = vec!["txn".to_string(), "--brokers".into(), bs.clone()];
    args.extend(txn_options(&topic, "sluice-kafkajs-txn", 9, 3, 3, 2));
    let out = kafkajs(&args.iter().map(String::as_str).collect::<Vec<_>>()).stdout;
    assert_txns_read(&bs, &topic, 2, &out, (9, 3, 3));
}
