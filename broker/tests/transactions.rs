//! Transactions (KIP-98) with real clients: the Java client's transactional producer
//! (`tests/java/SluiceTxnClient.java`) commits and aborts, and `read_committed` consumers of
//! two implementations (the Java client and librdkafka through rust-rdkafka) see exactly the
//! committed records, before and after a broker restart; a producer that dies inside a
//! transaction holds the last stable offset only until its timeout; a second producer with
//! the same transactional id fences the first; and a consume-transform-produce loop
//! (`sendOffsetsToTransaction`) copies every record exactly once across a crash in the middle
//! of a transaction.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};

fn create_topic(broker: &TestBroker, name: &str, partitions: i32) {
    let created = broker
        .block_on(rd_admin(&broker.bootstrap()).create_topics(
            [&NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &admin_opts(),
        ))
        .expect("create_topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// A broker with a topic of one partition: the broker, the topic, the bootstrap address.
fn broker_with_topic(prefix: &str) -> (TestBroker, String, String) {
    let broker = TestBroker::start(&[]);
    let topic = topic_name(prefix);
    create_topic(&broker, &topic, 1);
    let b = broker.bootstrap();
    (broker, topic, b)
}

/// A producer that halts with a transaction of `count` records open (`timeout_ms` its
/// transaction timeout) on partition 0 of `topic`.
fn hang(bootstrap: &str, topic: &str, id: &str, count: usize, timeout_ms: u64) {
    let (count, timeout) = (count.to_string(), timeout_ms.to_string());
    let out = txn(&[
        "hang",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--id",
        id,
        "--count",
        &count,
        "--timeout-ms",
        &timeout,
    ]);
    assert!(out.contains("#open"), "{out}");
}

/// Three broker processes on loopback network `net` (min.insync.replicas 2) and a topic of
/// three partitions at three copies.
fn cluster_with_topic(net: u8, prefix: &str) -> (ProcessCluster, String) {
    let cluster = ProcessCluster::start(3, net, &["--min-insync-replicas", "2"]);
    let topic = topic_name(prefix);
    let created = broker_runtime()
        .block_on(rd_admin(&cluster.bootstrap()).create_topics(
            [&NewTopic::new(&topic, 3, TopicReplication::Fixed(3))],
            &admin_opts(),
        ))
        .expect("create_topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    (cluster, topic)
}

/// Runs the transactions driver to its end; its stdout.
fn txn(args: &[&str]) -> String {
    run_bounded(
        txn_cmd(args),
        &format!("java SluiceTxnClient {}", args.join(" ")),
        RUN,
    )
    .stdout
}

/// The Java driver's transactions (see [`txn_options`]); its output.
fn java_txns(
    bootstrap: &str,
    topic: &str,
    id: &str,
    (txns, per, abort_every): (usize, usize, usize),
    partitions: i32,
) -> String {
    let mut args = vec![
        "produce".to_string(),
        "--bootstrap".into(),
        bootstrap.into(),
    ];
    args.extend(txn_options(topic, id, txns, per, abort_every, partitions));
    txn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Every value a Java consumer of `isolation` reads from the start of `topic`, by count.
fn java_read(bootstrap: &str, topic: &str, isolation: &str) -> BTreeMap<String, usize> {
    let out = txn(&[
        "consume",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--isolation",
        isolation,
        "--idle-ms",
        "3000",
    ]);
    assert!(out.contains("#end"), "{out}");
    counted(out.lines().filter_map(|l| l.strip_prefix("v ")))
}

#[test]
fn committed_transactions_are_read_and_aborted_ones_are_not_by_java_and_librdkafka() {
    let mut broker = TestBroker::start(&[]);
    let topic = topic_name("txn");
    create_topic(&broker, &topic, 2);
    let out = java_txns(&broker.bootstrap(), &topic, "sluice-txn-1", (12, 5, 3), 2);
    assert_eq!(out.matches("#committed").count(), 8, "{out}");
    assert_eq!(out.matches("#aborted").count(), 4, "{out}");
    let want = values_of(committed_txns(12, 3), 5);
    let everything = values_of(0..12, 5);

    for round in ["before", "after a restart"] {
        let b = broker.bootstrap();
        assert_eq!(
            java_read(&b, &topic, "read_committed"),
            want,
            "Java read_committed {round}"
        );
        assert_eq!(
            rd_read(&b, &topic, 2, "read_committed"),
            want,
            "librdkafka read_committed {round}"
        );
        // read_uncommitted sees the aborted records too (the markers are never records).
        assert_eq!(
            java_read(&b, &topic, "read_uncommitted"),
            everything,
            "Java read_uncommitted {round}"
        );
        // Nothing is open: the last stable offset is the high watermark.
        for p in 0..2 {
            let log = broker.ctx().logs.partition(&topic, p).expect("partition");
            assert_eq!(log.last_stable_offset(), log.high_watermark(), "{round}");
        }
        broker.restart();
    }
}

#[test]
fn a_producer_dead_inside_a_transaction_holds_the_lso_until_its_timeout_aborts_it() {
    let (broker, topic, b) = broker_with_topic("txn-hung");
    hang(&b, &topic, "sluice-txn-hung", 4, 4000);
    let log = broker.ctx().logs.partition(&topic, 0).expect("partition");
    // The open transaction starts at offset 0: read_committed readers stop there.
    assert_eq!((log.last_stable_offset(), log.high_watermark()), (0, 4));
    // Another producer's transaction commits behind it.
    java_txns(&b, &topic, "sluice-txn-other", (1, 3, 0), 1);
    assert!(log.high_watermark() > 4);
    assert_eq!(log.last_stable_offset(), 0, "held by the dead producer");
    // The coordinator aborts the dead producer's transaction once its 4 s are up.
    wait_for(
        "the timed-out transaction to be aborted",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || (log.last_stable_offset() == log.high_watermark()).then_some(()),
    );
    assert_eq!(
        java_read(&b, &topic, "read_committed"),
        values_of([0], 3),
        "the dead producer's records are aborted"
    );
    // The coordinator counts it: one timeout, one commit, one abort; nothing open.
    let http = broker.http_addr();
    wait_for(
        "the transaction metrics",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let n = |kind: &str| {
                metric_sum(
                    http,
                    "sluice_transactions_total",
                    &format!("kind=\"{kind}\""),
                )
            };
            (n("timed_out") == 1.0
                && n("committed") == 1.0
                && n("aborted") == 1.0
                && metric_sum(http, "sluice_transactions_open", "") == 0.0)
                .then_some(())
        },
    );
    assert_eq!(rd_read(&b, &topic, 1, "read_committed"), values_of([0], 3));
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let (_broker, topic, b) = broker_with_topic("txn-fence");
    let out = txn(&[
        "fence",
        "--bootstrap",
        &b,
        "--topic",
        &topic,
        "--id",
        "sluice-txn-fence",
    ]);
    assert!(
        out.contains("#fenced ProducerFencedException")
            || out.contains("#fenced InvalidProducerEpochException"),
        "the first producer's commit must fail as fenced: {out}"
    );
    let got = java_read(&b, &topic, "read_committed");
    let want: BTreeMap<String, usize> = (0..3).map(|j| (format!("winner-{j}"), 1)).collect();
    assert_eq!(got, want, "only the second producer's transaction counts");
}

#[test]
fn consume_transform_produce_copies_each_record_exactly_once_across_a_crash() {
    let broker = TestBroker::start(&[]);
    let (input, output) = (topic_name("txn-in"), topic_name("txn-out"));
    create_topic(&broker, &input, 2);
    create_topic(&broker, &output, 2);
    let b = broker.bootstrap();
    // The input: 20 committed transactions of 10 records (200 records over 2 partitions).
    java_txns(&b, &input, "sluice-txn-source", (20, 10, 0), 2);
    let copy = |crash: Option<&str>| {
        let mut args = vec![
            "copy",
            "--bootstrap",
            &b,
            "--in",
            &input,
            "--out",
            &output,
            "--group",
            "sluice-txn-copier",
            "--id",
            "sluice-txn-copier",
            "--idle-ms",
            "4000",
        ];
        if let Some(k) = crash {
            args.extend(["--crash-after", k]);
        }
        txn(&args)
    };
    // The first copier commits twice, then dies with a transaction open (records sent, offsets
    // sent, no commit); the second fences it, its transaction is aborted, and it copies on
    // from the offsets the first committed.
    let first = copy(Some("2"));
    assert!(first.contains("#crash"), "{first}");
    assert_eq!(first.matches("#txn").count(), 2, "{first}");
    let second = copy(None);
    assert!(second.matches("#txn").count() >= 1, "{second}");
    let want: BTreeMap<String, usize> = values_of(0..20, 10)
        .into_keys()
        .map(|v| (format!("copy:{v}"), 1))
        .collect();
    assert_eq!(
        java_read(&b, &output, "read_committed"),
        want,
        "each input record copied exactly once"
    );
    assert_eq!(rd_read(&b, &output, 2, "read_committed"), want);
}

/// On three broker processes, with every partition at three copies and their leaders spread,
/// the markers of each transaction go to the other brokers over the cluster listener; a
/// broker SIGKILLed between two producers' runs (the coordinator, a partition leader, or
/// both) leaves every committed record readable and no aborted one.
#[test]
fn transactions_on_three_brokers_survive_a_killed_broker() {
    let (mut cluster, topic) = cluster_with_topic(43, "txn3");
    let produce =
        |bootstrap: &str, id: &str, txns| java_txns(bootstrap, &topic, id, (txns, 6, 4), 3);
    let out = produce(&cluster.bootstrap(), "sluice-txn-3a", 10);
    assert_eq!(out.matches("#committed").count(), 8, "{out}");
    let mut want = values_of(committed_txns(10, 4), 6);
    let b = cluster.bootstrap();
    assert_eq!(java_read(&b, &topic, "read_committed"), want);
    assert_eq!(rd_read(&b, &topic, 3, "read_committed"), want);

    cluster.kill9(0);
    let survivors = cluster.bootstrap();
    // The same transactional id (its state is in the quorum: the next epoch) and a new one.
    let out = produce(&survivors, "sluice-txn-3a", 6);
    assert_eq!(out.matches("#committed").count(), 5, "{out}");
    for (k, n) in values_of(committed_txns(6, 4), 6) {
        *want.entry(k).or_insert(0) += n;
    }
    assert_eq!(java_read(&survivors, &topic, "read_committed"), want);
    assert_eq!(rd_read(&survivors, &topic, 3, "read_committed"), want);
}

/// librdkafka's (confluent-kafka) and kafka-python's transactional producers against the
/// same coordinator: their commits and aborts are read exactly by the Java client, and by the
/// same Python client's read_committed consumer.
#[test]
fn librdkafka_and_kafka_python_transactions_commit_and_abort() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    for client in ["confluent-kafka", "kafka-python"] {
        let topic = topic_name("txn-py");
        create_topic(&broker, &topic, 2);
        let mut args = vec!["produce".to_string(), "--client".into(), client.into()];
        args.extend(["--bootstrap".to_string(), b.clone()]);
        args.extend(txn_options(
            &topic,
            &format!("sluice-txn-{client}"),
            9,
            4,
            3,
            2,
        ));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_python("txn_client.py", &args, Duration::from_secs(120)).stdout;
        assert_eq!(out.matches("#committed").count(), 6, "{client}: {out}");
        let want = values_of(committed_txns(9, 3), 4);
        assert_eq!(java_read(&b, &topic, "read_committed"), want, "{client}");
        let py = run_python(
            "txn_client.py",
            &[
                "consume",
                "--client",
                client,
                "--bootstrap",
                &b,
                "--topic",
                &topic,
                "--partitions",
                "2",
            ],
            Duration::from_secs(60),
        )
        .stdout;
        assert!(py.contains("#end"), "{client}: {py}");
        assert_eq!(
            counted(py.lines().filter_map(|l| l.strip_prefix("v "))),
            want,
            "{client} read_committed"
        );
    }
}

/// Kafka's own `kafka-transactions.sh` (its `TransactionsCommand`) on a transaction left open
/// by a dead producer: `list` and `describe` show it Ongoing on its partition,
/// `describe-producers` names its start offset, `find-hanging` runs through and finds none (it
/// is younger than the timeout), and `abort` (WriteTxnMarkers to the partition's leader) ends
/// it, so read_committed readers go on at once.
#[test]
fn kafka_transactions_tool_lists_describes_and_aborts_an_open_transaction() {
    const TOOL: &str = "org.apache.kafka.tools.TransactionsCommand";
    let (broker, topic, b) = broker_with_topic("txn-tool");
    hang(&b, &topic, "sluice-txn-tool", 3, 600000);
    let log = broker.ctx().logs.partition(&topic, 0).expect("partition");
    assert_eq!((log.last_stable_offset(), log.high_watermark()), (0, 3));

    let listed = kafka_tool(TOOL, &["--bootstrap-server", &b, "list"]).stdout;
    let line = listed
        .lines()
        .find(|l| l.contains("sluice-txn-tool"))
        .unwrap_or_else(|| panic!("the transaction is listed:\n{listed}"));
    assert!(line.contains("Ongoing"), "{listed}");
    let described = kafka_tool(
        TOOL,
        &[
            "--bootstrap-server",
            &b,
            "describe",
            "--transactional-id",
            "sluice-txn-tool",
        ],
    )
    .stdout;
    assert!(
        described.contains("Ongoing") && described.contains(&format!("{topic}-0")),
        "{described}"
    );
    let producers = kafka_tool(
        TOOL,
        &[
            "--bootstrap-server",
            &b,
            "describe-producers",
            "--topic",
            &topic,
            "--partition",
            "0",
        ],
    )
    .stdout;
    // ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp
    // CurrentTransactionStartOffset: the last column is the open transaction's start.
    let row: Vec<&str> = producers
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("a producer row:\n{producers}"))
        .split_whitespace()
        .collect();
    assert_eq!(row.last(), Some(&"0"), "{producers}");
    // find-hanging looks at every partition the broker leads (DescribeProducers) and asks the
    // coordinator about each open transaction older than the timeout (a minute at least):
    // this one is younger, and known to its coordinator besides.
    let hanging = kafka_tool(
        TOOL,
        &[
            "--bootstrap-server",
            &b,
            "find-hanging",
            "--broker-id",
            "0",
            "--max-transaction-timeout",
            "1",
        ],
    )
    .stdout;
    assert!(
        hanging.starts_with("Topic") && hanging.trim().lines().count() == 1,
        "a header and no hanging transaction:\n{hanging}"
    );

    kafka_tool(
        TOOL,
        &[
            "--bootstrap-server",
            &b,
            "abort",
            "--topic",
            &topic,
            "--partition",
            "0",
            "--start-offset",
            "0",
        ],
    );
    assert_eq!(log.last_stable_offset(), log.high_watermark(), "aborted");
    assert!(java_read(&b, &topic, "read_committed").is_empty());
    assert_eq!(java_read(&b, &topic, "read_uncommitted").len(), 3);
}

/// The transaction coordinator SIGKILLed while a producer commits and aborts transactions in
/// a loop: the producer goes on with the coordinator that takes over (the transactions'
/// states are in the quorum; a prepared one's markers are written by the new coordinator),
/// and read_committed sees every committed transaction whole and nothing of the aborted ones.
#[test]
fn transactions_go_on_when_their_coordinator_is_killed() {
    let (mut cluster, topic) = cluster_with_topic(44, "txn-coord");
    let id = "sluice-txn-coordinator-kill";
    let coordinator = find_coordinator(cluster.broker(0).kafka_addr, id);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out_path = out_dir.path().join("producer.out");
    let bootstrap = cluster.bootstrap();
    let mut args = vec![
        "produce".to_string(),
        "--bootstrap".into(),
        bootstrap.clone(),
    ];
    args.extend(txn_options(&topic, id, 120, 3, 5, 3));
    let mut producer = txn_cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(std::fs::File::create(&out_path).expect("output file"))
        .stderr(std::fs::File::create(out_dir.path().join("producer.err")).expect("error file"))
        .spawn()
        .expect("start the Java producer");
    let printed = || std::fs::read_to_string(&out_path).unwrap_or_default();
    wait_for(
        "20 transactions before the kill",
        Duration::from_secs(90),
        Duration::from_millis(50),
        || printed().contains("#committed 20").then_some(()),
    );
    cluster.kill9(coordinator);
    let status = wait_for(
        "the producer to finish",
        Duration::from_secs(180),
        Duration::from_millis(200),
        || producer.try_wait().expect("wait"),
    );
    let err = std::fs::read_to_string(out_dir.path().join("producer.err")).unwrap_or_default();
    let out = printed();
    assert!(status.success(), "the producer failed:\n{out}\n{err}");
    assert_eq!(out.matches("#committed").count(), 96, "{out}");
    let want = values_of(committed_txns(120, 5), 3);
    let survivors = cluster.bootstrap();
    assert_eq!(java_read(&survivors, &topic, "read_committed"), want);
    assert_eq!(rd_read(&survivors, &topic, 3, "read_committed"), want);
}

/// A compacted topic written in transactions (a Kafka Streams changelog under exactly-once is
/// one): the broker's compaction keeps each key's latest committed value, removes the
/// committed values it supersedes and every aborted record; librdkafka and the Java client
/// read the same committed values, and even read_uncommitted finds no aborted record in the
/// compacted segments.
#[test]
fn a_compacted_topic_written_in_transactions_keeps_committed_values_and_drops_aborted_ones() {
    use rdkafka::producer::{BaseRecord, Producer};
    const KEYS: usize = 20;
    const ROUNDS: usize = 9;
    let aborted = |round: usize| round % 3 == 1;
    let value = |round: usize, k: usize| format!("k{k} r{round} {}", "x".repeat(40));

    let broker = TestBroker::start(&["--retention-check-interval-ms", "100"]);
    let bs = broker.bootstrap();
    let topic = topic_name("txn-table");
    create_compacted_topic(&bs, &topic);
    let p = rd_producer(
        &bs,
        &[
            ("transactional.id", topic.as_str()),
            ("acks", "all"),
            ("linger.ms", "0"),
        ],
    );
    p.init_transactions(RUN).expect("init_transactions");
    // One transaction per round of every key; rounds 1, 4 and 7 aborted, the last committed.
    for round in 0..ROUNDS {
        p.begin_transaction().expect("begin_transaction");
        for k in 0..KEYS {
            let (key, v) = (format!("k{k}"), value(round, k));
            p.send(
                BaseRecord::with_opaque_to(&topic, round * KEYS + k)
                    .partition(0)
                    .key(key.as_bytes())
                    .payload(v.as_bytes()),
            )
            .expect("queue a record");
        }
        // Flushed first: rust-rdkafka's producer takes delivery reports as events, which only
        // its own poll consumes, and librdkafka's abort waits for them.
        p.flush(RUN).expect("flush");
        if aborted(round) {
            p.abort_transaction(RUN).expect("abort_transaction");
        } else {
            p.commit_transaction(RUN).expect("commit_transaction");
        }
    }
    let log = wait_compacted(&broker, &topic);
    eprintln!(
        "compacted: {} records removed, log end {}",
        broker.ctx().logs.compacted_records(),
        log.log_end_offset()
    );

    let committed_rounds: Vec<usize> = (0..ROUNDS).filter(|r| !aborted(*r)).collect();
    let check = |who: &str, read: &BTreeMap<String, usize>| {
        for k in 0..KEYS {
            assert_eq!(
                read.get(&value(ROUNDS - 1, k)),
                Some(&1),
                "{who}: the latest committed value of k{k}"
            );
        }
        let stray: Vec<&String> = read
            .keys()
            .filter(|v| (0..ROUNDS).any(|r| aborted(r) && v.contains(&format!(" r{r} "))))
            .collect();
        assert!(stray.is_empty(), "{who}: aborted records read: {stray:?}");
        let total: usize = read.values().sum();
        assert!(
            total <= (committed_rounds.len() - 2) * KEYS,
            "{who}: {total} of {} committed records left after compaction",
            committed_rounds.len() * KEYS
        );
    };
    let rd = rd_read(&bs, &topic, 1, "read_committed");
    check("librdkafka read_committed", &rd);
    let java = java_read(&bs, &topic, "read_committed");
    check("java read_committed", &java);
    assert_eq!(java, rd, "both clients read the same records");
    // read_uncommitted: rounds 1 and 4 lie in compacted segments, so their records are gone
    // for every reader (round 7's may still be in the segment being written).
    let all = rd_read(&bs, &topic, 1, "read_uncommitted");
    let early_aborts: Vec<&String> = all
        .keys()
        .filter(|v| v.contains(" r1 ") || v.contains(" r4 "))
        .collect();
    assert!(early_aborts.is_empty(), "{early_aborts:?}");
}
