//! The Go Kafka client `github.com/twmb/franz-go` (kgo + kadm, pinned in `scripts/go-clients.sh`)
//! works unchanged against the broker: kadm creates topics and lists offsets, kgo's idempotent
//! producer writes every codec byte-exact, and a kgo group consumer commits and resumes. The other
//! Go client, `github.com/segmentio/kafka-go`, reads a compacted topic through segments left
//! with one empty batch each (it panics on two empty batches in a row). Both franz-go's and
//! `github.com/IBM/sarama`'s transactional producers commit and abort; sarama's commits a
//! group's offsets in its transactions.
//!
//! The driver is `broker/tests/go/main.go`, built at test time with `go build` (GOFLAGS=-mod=mod)
//! in a generated module under `$SLUICE_CACHE/go-prog-<hash of the source and go.mod>/`
//! (`SLUICE_CACHE` defaults to `~/.cache/sluice`, as in the scripts).
//! Every run is bounded in time.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::process::Command;
use std::time::Duration;

use common::*;

const RUN: Duration = Duration::from_secs(120);

/// Runs the driver; panics with its output unless it exits 0 within `RUN`.
fn go(args: &[&str]) -> Finished {
    let mut cmd = Command::new(go_client());
    cmd.args(args);
    run_bounded(cmd, &format!("sluice-go-client {}", args.join(" ")), RUN)
}

/// The driver's commands against the broker at `brokers` (flags after the command, and after
/// the operation of `admin`, as Go's flag package wants them).
struct GoDriver {
    brokers: String,
}

impl GoDriver {
    fn at(brokers: &str) -> GoDriver {
        GoDriver {
            brokers: brokers.to_string(),
        }
    }

    /// One kadm operation with `args`.
    fn admin(&self, op: &str, args: &[&str]) -> Finished {
        let mut all = vec!["admin", op, "--brokers", self.brokers.as_str()];
        all.extend_from_slice(args);
        go(&all)
    }

    /// Produces the test records `records` to `topic` with kgo, with `extra` options.
    fn produce(&self, topic: &str, records: Range<u64>, extra: &[&str]) -> Finished {
        let (from, to) = (records.start.to_string(), records.end.to_string());
        let mut all = vec![
            "produce",
            "--brokers",
            self.brokers.as_str(),
            "--topic",
            topic,
            "--from",
            &from,
            "--to",
            &to,
        ];
        all.extend_from_slice(extra);
        go(&all)
    }

    /// A kgo group consumer that reads `count` records of `topic` in `group` and commits them.
    fn consume(&self, topic: &str, group: &str, count: u64, extra: &[&str]) -> Finished {
        let count = count.to_string();
        let mut all = vec![
            "consume",
            "--brokers",
            self.brokers.as_str(),
            "--topic",
            topic,
            "--group",
            group,
            "--count",
            &count,
        ];
        all.extend_from_slice(extra);
        go(&all)
    }
}

const N: u64 = 200;

#[test]
fn franz_go_kadm_creates_and_kgo_produces_every_codec_byte_exact() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let go = GoDriver::at(&bs);
    let topic = topic_name("go-codecs");
    let out = go.admin(
        "create-topic",
        &[
            "--topic",
            &topic,
            "--partitions",
            "1",
            "--configs",
            "retention.ms=3600000",
        ],
    );
    assert!(
        out.stdout
            .contains(&format!("#created {topic} partitions 1 rf 1 id ")),
        "kadm CreateTopics (replication factor -1 = broker default):\n{}",
        out.stdout
    );
    for (codec, records) in codec_stretches(N) {
        let out = go.produce(
            &topic,
            records,
            &["--compression", codec, "--partition", "0"],
        );
        assert_acked_at_their_index(codec, &acknowledged(&out), N);
    }
    let total = CODECS.len() as u64 * N;
    let out = go.admin("list-offsets", &["--topic", &topic]);
    assert_eq!(partition_offsets(&out, "start"), BTreeMap::from([(0, 0)]));
    assert_eq!(
        partition_offsets(&out, "end"),
        BTreeMap::from([(0, total as i64)])
    );
    // librdkafka reads franz-go's batches (every codec) byte for byte.
    let rd = rd_consume_from_start(&bs, &topic, &[0], total as usize, Duration::from_secs(60));
    assert_records_exact(&rd, 0..total);
    assert_each_at_its_index(&rd);
}

#[test]
fn franz_go_producer_auto_creates_a_topic_when_it_asks_to() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("go-auto");
    let out = GoDriver::at(&bs).produce(&topic, 0..50, &["--compression", "zstd", "--auto-create"]);
    assert_eq!(acknowledged(&out).len(), 50, "acknowledgements");
    let rd = rd_consume_from_start(&bs, &topic, &[0], 50, Duration::from_secs(60));
    assert_records_exact(&rd, 0..50);
}

#[test]
fn franz_go_consumer_group_commits_and_resumes() {
    group_commits_and_resumes(&[]);
}

/// The same with franz-go told not to use OffsetCommit (key 8) and OffsetFetch (key 9) above v9:
/// everything else of the group protocol at the versions franz-go picks.
#[test]
fn franz_go_consumer_group_commits_and_resumes_with_offset_apis_capped_at_v9() {
    group_commits_and_resumes(&["--max-versions", "8=9,9=9"]);
}

fn group_commits_and_resumes(client_opts: &[&str]) {
    let broker = TestBroker::start(&[]);
    let go = GoDriver::at(&broker.bootstrap());
    let topic = topic_name("go-group");
    let group = format!("{topic}-g");
    let (total, first) = (300u64, 120u64);
    go.admin("create-topic", &["--topic", &topic, "--partitions", "3"]);
    let acked = acknowledged(&go.produce(&topic, 0..total, &["--compression", "snappy"]));
    assert_eq!(acked.len() as u64, total, "acknowledgements");
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (_, p, o) in &acked {
        let e = ends.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    assert!(ends.len() > 1, "the default partitioner used only {ends:?}");

    let out1 = go.consume(&topic, &group, first, client_opts);
    let got1 = parse_consumed_lines(&out1.stdout);
    assert_eq!(got1.len() as u64, first, "first consumer record count");
    let want = next_offsets(&got1);
    assert_eq!(
        partition_offsets(&out1, "committed"),
        want,
        "committed offsets after the first run (kadm FetchOffsets)"
    );

    let out2 = go.consume(&topic, &group, total - first, client_opts);
    let got2 = parse_consumed_lines(&out2.stdout);
    assert_resumed_after(&got2, &want);
    let mut all = got1;
    all.extend(got2);
    assert_records_exact(&all, 0..total);
    assert_eq!(
        partition_offsets(&out2, "committed"),
        ends,
        "committed offsets after the second run = partition ends"
    );
    let mut args = vec!["--group", group.as_str()];
    args.extend_from_slice(client_opts);
    let out = go.admin("describe-group", &args);
    assert!(
        out.stdout
            .contains(&format!("#group {group} state Empty members 0")),
        "kadm DescribeGroups after both members left:\n{}",
        out.stdout
    );
}

#[test]
fn kafka_go_reads_a_compacted_topic_through_segments_left_empty() {
    CompactedTable::read_by("kafka-go", |bs, topic, through| {
        go(&[
            "kafkago-latest",
            "--brokers",
            bs,
            "--topic",
            topic,
            "--through",
            through,
        ])
    });
}

/// A broker, its bootstrap address and a topic of two partitions created by kadm.
fn broker_with_two_partitions(prefix: &str) -> (TestBroker, String, String) {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name(prefix);
    go(&[
        "admin",
        "create-topic",
        "--brokers",
        &bs,
        "--topic",
        &topic,
        "--partitions",
        "2",
    ]);
    (broker, bs, topic)
}

/// franz-go's transactional producer (kgo) commits and aborts against the broker's
/// coordinator, and librdkafka's read_committed consumer reads exactly the committed ones.
#[test]
fn franz_go_transactions_commit_and_abort() {
    let (_broker, bs, topic) = broker_with_two_partitions("franz-txn");
    let mut args = vec!["txn".to_string(), "--brokers".into(), bs.clone()];
    args.extend(txn_options(&topic, "sluice-franz-txn", 9, 3, 3, 2));
    let out = go(&args.iter().map(String::as_str).collect::<Vec<_>>()).stdout;
    assert_txns_read(&bs, &topic, 2, &out, (9, 3, 3));
}

/// Sarama's transactional SyncProducer (its own transaction manager, request versions picked by
/// its configured Kafka version rather than ApiVersions) commits and aborts, and adds a group's
/// offsets to each transaction: read_committed sees exactly the committed transactions, and the
/// group's offset is the last committed transaction's, not the aborted last one's.
#[test]
fn sarama_transactions_commit_and_abort_with_group_offsets() {
    use rdkafka::consumer::Consumer;
    let (_broker, bs, topic) = broker_with_two_partitions("sarama-txn");
    let group = topic_name("sarama-txn-group");
    let mut args = vec!["sarama-txn".to_string(), "--brokers".into(), bs.clone()];
    args.extend(txn_options(&topic, "sluice-sarama-txn", 9, 3, 3, 2));
    args.extend(["--group".to_string(), group.clone()]);
    let out = go(&args.iter().map(String::as_str).collect::<Vec<_>>()).stdout;
    assert_txns_read(&bs, &topic, 2, &out, (9, 3, 3));

    // Transactions 0..9, every third aborted: the last committed is 7, which committed offset 8;
    // the aborted 8th's offset 9 never counts.
    let c = rd_consumer(&bs, &[("group.id", group.as_str())]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    assert_eq!(
        got.find_partition(&topic, 0).map(|e| e.offset()),
        Some(rdkafka::Offset::Offset(8))
    );
}
