//! The Java Kafka client (`org.apache.kafka:kafka-clients` 4.x, fetched by
//! `scripts/java-clients.sh`) works unchanged against the broker: its idempotent producer
//! (acks=all, the 4.x default) with every codec, its group consumer with commits and resume (also
//! across a broker restart, and across the death of its coordinator in a cluster of three
//! broker processes), and its AdminClient (topics, configs, partitions, cluster, groups).
//!
//! The driver is `broker/tests/java/SluiceJavaClient.java`, compiled with javac at test time into
//! `$SLUICE_CACHE/java-prog-<hash of the source and the jar set>/` (`SLUICE_CACHE` defaults to
//! `~/.cache/sluice`, as in the scripts) by `common::java`. Every run is bounded in time.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use common::*;

/// The producer id of the first batch stored at `offset` (bytes 43..51 of a v2 batch).
fn stored_producer_id(bootstrap: &str, topic: &str, partition: i32, offset: i64) -> i64 {
    let mut c = RawClient::connect(bootstrap.parse().expect("bootstrap address"));
    let f = raw_fetch(&mut c, topic, partition, offset, 0, 1);
    assert_eq!(f.error_code, 0, "raw fetch of {topic}-{partition}");
    assert!(f.records.len() > 61, "no batch stored at {offset}");
    assert_eq!(f.records[16], 2, "stored batch magic");
    i64::from_be_bytes(f.records[43..51].try_into().expect("8 bytes"))
}

// ---------------------------------------------------------------------------------------------
// Tests

const N: u64 = 200;

#[test]
fn java_idempotent_producer_every_codec_round_trips_byte_exact() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let java = JavaDriver::at(&bs);
    let topic = topic_name("java-codecs");
    // One stretch of records per codec into one partition (auto-created by the producer's
    // Metadata request), so batches of every codec sit side by side.
    for (codec, records) in codec_stretches(N) {
        let from = records.start;
        let out = java.produce(
            &topic,
            records,
            &["--compression", codec, "--partition", "0"],
        );
        assert_acked_at_their_index(codec, &acknowledged(&out), N);
        // The 4.x producer is idempotent by default: the stored batches carry its producer id.
        let pid = stored_producer_id(&bs, &topic, 0, from as i64);
        assert!(
            pid >= 0,
            "{codec}: batch at {from} has producer id {pid}; idempotence was not in effect"
        );
    }
    let total = CODECS.len() as u64 * N;
    // The Java group consumer reads everything back byte for byte, at the acknowledged offsets.
    let out = java.consume(&topic, "java-codecs", total, &[]);
    let got = parse_consumed_lines(&out.stdout);
    assert_records_exact(&got, 0..total);
    assert_each_at_its_index(&got);
    assert_eq!(
        partition_offsets(&out, "committed"),
        BTreeMap::from([(0, total as i64)]),
        "committed offsets"
    );
    // librdkafka reads the Java client's batches (every codec) the same.
    let rd = rd_consume_from_start(&bs, &topic, &[0], total as usize, Duration::from_secs(60));
    assert_records_exact(&rd, 0..total);
}

#[test]
fn java_consumer_group_commits_and_resumes_across_a_broker_restart() {
    let mut broker = TestBroker::start(&[]);
    let java = JavaDriver::at(&broker.bootstrap());
    let topic = topic_name("java-group");
    let group = format!("{topic}-g");
    let total = 300u64;
    let first = 120u64;
    java.admin(&["create-topic", "--topic", &topic, "--partitions", "3"]);
    // Default partitioner: keyed records hash over the three partitions, null keys stick.
    let out = java.produce(&topic, 0..total, &["--compression", "lz4"]);
    let acked = acknowledged(&out);
    assert_eq!(acked.len() as u64, total, "acknowledgements");
    let mut per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    for (_, p, _) in &acked {
        *per_partition.entry(*p).or_insert(0) += 1;
    }
    assert!(
        per_partition.len() > 1,
        "the default partitioner used only {per_partition:?}"
    );

    // First member: consumes `first` records, commits exactly after them, leaves.
    let out1 = java.consume(&topic, &group, first, &[]);
    let got1 = parse_consumed_lines(&out1.stdout);
    assert_eq!(got1.len() as u64, first, "first consumer record count");
    let mut want_committed = next_offsets(&got1);
    let c1 = partition_offsets(&out1, "committed");
    for (p, o) in &c1 {
        // A partition assigned but not read from has no committed offset (-1).
        let want = want_committed.get(p).copied().unwrap_or(-1);
        assert_eq!(
            *o, want,
            "partition {p}: committed offset after the first run"
        );
    }

    // The commit survives a clean broker restart (new port).
    broker.restart();
    let java = JavaDriver::at(&broker.bootstrap());
    let offsets = java.admin(&["list-group-offsets", "--group", &group]);
    let listed: BTreeMap<i32, i64> = tagged(&offsets, "offset")
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[0], topic, "offset line topic");
            (f[1].parse().expect("p"), f[2].parse().expect("o"))
        })
        .collect();
    assert_eq!(
        listed, want_committed,
        "group offsets after the restart (AdminClient listConsumerGroupOffsets)"
    );

    // Second member of the same group resumes exactly where the first stopped.
    let rest = total - first;
    let out2 = java.consume(&topic, &group, rest, &[]);
    let got2 = parse_consumed_lines(&out2.stdout);
    assert_resumed_after(&got2, &want_committed);
    let mut all = got1.clone();
    all.extend(got2.iter().cloned());
    assert_records_exact(&all, 0..total);
    want_committed = per_partition.clone();
    assert_eq!(
        partition_offsets(&out2, "committed"),
        want_committed,
        "committed offsets after the second run = partition ends"
    );

    // The group is now empty (both members left) and listed as a classic consumer group.
    let groups = java.admin(&["list-groups"]);
    let line = tagged(&groups, "group")
        .into_iter()
        .find(|l| l.split_whitespace().next() == Some(group.as_str()))
        .unwrap_or_else(|| panic!("list-groups lacks {group}:\n{}", groups.stdout));
    assert_eq!(line, format!("{group} Classic Empty"), "listGroups entry");
    let desc = java.admin(&["describe-group", "--group", &group]);
    let d = tagged(&desc, "group");
    assert_eq!(d.len(), 1, "describe-group output:\n{}", desc.stdout);
    assert!(
        d[0].starts_with(&format!("{group} state Empty members 0 ")),
        "describeConsumerGroups: {}",
        d[0]
    );

    // OffsetDelete: the AdminClient removes one partition's offset, then Kafka's own
    // `kafka-consumer-groups.sh --delete-offsets` the rest of the topic's.
    let listed_offsets = |java: &JavaDriver| -> BTreeMap<i32, i64> {
        tagged(
            &java.admin(&["list-group-offsets", "--group", &group]),
            "offset",
        )
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].parse().expect("p"), f[2].parse().expect("o"))
        })
        .collect()
    };
    let (&gone, _) = want_committed.iter().next().expect("a committed partition");
    java.admin(&[
        "delete-group-offsets",
        "--group",
        &group,
        "--topic",
        &topic,
        "--partitions",
        &gone.to_string(),
    ]);
    want_committed.remove(&gone);
    assert_eq!(
        listed_offsets(&java),
        want_committed,
        "offsets after deleteConsumerGroupOffsets of partition {gone}"
    );
    let cli = kafka_tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--bootstrap-server",
            &broker.bootstrap(),
            "--delete-offsets",
            "--group",
            &group,
            "--topic",
            &topic,
        ],
    );
    assert!(
        cli.stdout.contains("Successful") && !cli.stdout.contains("Error"),
        "kafka-consumer-groups --delete-offsets:\n{}",
        cli.stdout
    );
    assert_eq!(
        listed_offsets(&java),
        BTreeMap::new(),
        "offsets after kafka-consumer-groups --delete-offsets"
    );
}

#[test]
fn java_admin_client_manages_topics_configs_and_cluster() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let java = JavaDriver::at(&bs);
    let topic = topic_name("java-admin");
    let configs = |name: &str| -> BTreeMap<String, (String, String)> {
        let out = java.admin(&["describe-configs", "--name", name]);
        tagged(&out, "config")
            .iter()
            .map(|l| {
                let (kv, rest) = l.split_once(" source ").expect("config line");
                let (k, v) = kv.split_once('=').expect("k=v");
                let source = rest.split_whitespace().next().expect("source");
                (k.to_string(), (v.to_string(), source.to_string()))
            })
            .collect()
    };

    // Create with an override; the result carries the partition count and a topic id.
    let out = java.admin(&[
        "create-topic",
        "--topic",
        &topic,
        "--partitions",
        "3",
        "--set",
        "retention.ms=3600000",
    ]);
    let created = tagged(&out, "created");
    assert_eq!(created.len(), 1, "{}", out.stdout);
    assert!(
        created[0].starts_with(&format!("{topic} partitions 3 id ")),
        "createTopics result: {}",
        created[0]
    );
    let id = created[0].rsplit(' ').next().expect("topic id").to_string();
    assert_ne!(id, "AAAAAAAAAAAAAAAAAAAAAA", "topic id is zero");

    // Describe: three partitions, each led by node 0 with one in-sync replica; same id.
    let out = java.admin(&["describe-topic", "--topic", &topic]);
    assert_eq!(
        tagged(&out, "topic"),
        vec![format!("{topic} id {id} internal false partitions 3")],
        "describeTopics"
    );
    assert_eq!(
        tagged(&out, "partition"),
        (0..3)
            .map(|p| format!("{p} leader 0 replicas 1 isr 1"))
            .collect::<Vec<_>>()
    );

    // describeConfigs: the override as a dynamic topic config, the defaults as defaults.
    let c = configs(&topic);
    assert_eq!(
        c.get("retention.ms"),
        Some(&("3600000".to_string(), "DYNAMIC_TOPIC_CONFIG".to_string()))
    );
    assert_eq!(
        c.get("segment.bytes"),
        Some(&("1073741824".to_string(), "DEFAULT_CONFIG".to_string()))
    );
    assert_eq!(
        c.get("cleanup.policy").map(|v| v.0.as_str()),
        Some("delete")
    );

    // incrementalAlterConfigs: set one, delete the override of another.
    java.admin(&[
        "alter-configs",
        "--topic",
        &topic,
        "--set",
        "segment.bytes=2000000",
        "--delete",
        "retention.ms",
    ]);
    let c = configs(&topic);
    assert_eq!(
        c.get("segment.bytes"),
        Some(&("2000000".to_string(), "DYNAMIC_TOPIC_CONFIG".to_string()))
    );
    assert_eq!(
        c.get("retention.ms"),
        Some(&("604800000".to_string(), "DEFAULT_CONFIG".to_string()))
    );

    // createPartitions 3 → 5.
    java.admin(&["create-partitions", "--topic", &topic, "--total", "5"]);
    let out = java.admin(&["describe-topic", "--topic", &topic]);
    assert_eq!(tagged(&out, "partition").len(), 5, "{}", out.stdout);

    // describeCluster: one node, reachable at the bootstrap address, also the controller.
    let out = java.admin(&["describe-cluster"]);
    assert_eq!(tagged(&out, "node"), vec![format!("0 {bs}")]);
    let cl = tagged(&out, "cluster");
    assert!(
        cl.len() == 1 && cl[0].ends_with(" controller 0"),
        "describeCluster: {cl:?}"
    );

    // Refusals arrive as the matching Java exceptions.
    let err = java.admin_fails(&["create-topic", "--topic", &topic]);
    assert!(err.contains("TopicExistsException"), "{err}");
    let err = java.admin_fails(&[
        "create-topic",
        "--topic",
        &format!("{topic}-x"),
        "--set",
        "no.such.config=1",
    ]);
    assert!(
        err.contains("InvalidConfigurationException") && err.contains("no.such.config"),
        "{err}"
    );

    // deleteTopics by topic id (DeleteTopics v6 with ids).
    let other = format!("{topic}-byid");
    let out = java.admin(&["create-topic", "--topic", &other]);
    let other_id = created_topic_id(&out);
    java.admin(&["delete-topic-by-id", "--id", &other_id]);
    let out = java.admin(&["list-topics"]);
    assert!(
        !tagged(&out, "topic").contains(&other.as_str()),
        "{}",
        out.stdout
    );

    // listTopics, deleteTopics, listTopics.
    let out = java.admin(&["list-topics"]);
    assert!(tagged(&out, "topic").contains(&topic.as_str()));
    java.admin(&["delete-topic", "--topic", &topic]);
    let out = java.admin(&["list-topics"]);
    assert!(!tagged(&out, "topic").contains(&topic.as_str()));
    let err = java.admin_fails(&["describe-topic", "--topic", &topic]);
    assert!(err.contains("UnknownTopicOrPartitionException"), "{err}");
}

/// The topic id at the end of create-topic's `#created` line.
fn created_topic_id(out: &Finished) -> String {
    tagged(out, "created")[0]
        .rsplit(' ')
        .next()
        .expect("topic id")
        .to_string()
}

#[test]
fn java_admin_lists_offsets_earliest_and_latest() {
    let broker = TestBroker::start(&[]);
    let java = JavaDriver::at(&broker.bootstrap());
    let topic = topic_name("java-offsets");
    java.produce(&topic, 0..37, &["--partition", "0"]);
    let out = java.admin(&["list-offsets", "--topic", &topic]);
    assert_eq!(
        tagged(&out, "list-offsets"),
        vec!["earliest 0", "latest 37"],
        "{}",
        out.stdout
    );
}

#[test]
fn java_admin_lists_the_max_timestamp_offset() {
    let broker = TestBroker::start(&[]);
    let java = JavaDriver::at(&broker.bootstrap());
    let topic = topic_name("java-maxts");
    java.produce(&topic, 0..10, &["--partition", "0"]);
    let out = java.admin(&["list-offsets", "--topic", &topic, "--max-timestamp", "true"]);
    let lines = tagged(&out, "list-offsets");
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[2].starts_with("max-timestamp "), "{}", out.stdout);
}

#[test]
fn java_admin_describes_a_topic_by_id() {
    let broker = TestBroker::start(&[]);
    let java = JavaDriver::at(&broker.bootstrap());
    let topic = topic_name("java-byid");
    let out = java.admin(&["create-topic", "--topic", &topic, "--partitions", "2"]);
    let id = created_topic_id(&out);
    let out = java.admin(&["describe-topic-by-id", "--id", &id]);
    assert_eq!(
        tagged(&out, "topic"),
        vec![format!("{topic} id {id} partitions 2")]
    );
}

/// The driver's produce with a `transactional.id`: the test records with their keys, null
/// values and headers go in one committed transaction, and a read_committed consumer of a
/// group gets them all (transactions.rs tests commits, aborts and fencing in depth).
#[test]
fn java_transactional_producer_commits_the_test_records() {
    let broker = TestBroker::start(&[]);
    let java = JavaDriver::at(&broker.bootstrap());
    let topic = topic_name("java-txn");
    let acked = acknowledged(&java.produce(
        &topic,
        0..50,
        &[
            "--prop",
            "transactional.id=sluice-test-txn",
            "--partition",
            "0",
        ],
    ));
    assert_eq!(acked.len(), 50);
    let out = java.consume(
        &topic,
        "java-txn-readers",
        50,
        &["--prop", "isolation.level=read_committed"],
    );
    let got = parse_consumed_lines(&out.stdout);
    assert_records_exact(&got, 0..50);
}

/// Two Java members of one group split the partitions (JoinGroup/SyncGroup with the range
/// assignor), each reads only its own partitions, and together they read everything once.
#[test]
fn java_two_group_members_split_partitions_and_read_everything_once() {
    let broker = TestBroker::start(&[]);
    let java = JavaDriver::at(&broker.bootstrap());
    let topic = topic_name("java-split");
    let group = format!("{topic}-g");
    let total = 400u64;
    java.admin(&["create-topic", "--topic", &topic, "--partitions", "4"]);
    let member = || {
        java.consume(
            &topic,
            &group,
            total,
            &["--idle-ms", "6000", "--timeout-ms", "100000"],
        )
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(member);
        let b = s.spawn(member);
        // Produce only once both members are in the group, so both get partitions.
        wait_for(
            "the group to be Stable with two members",
            Duration::from_secs(90),
            Duration::from_millis(200),
            || {
                // Fails (GroupIdNotFound) until the first member joined.
                let (_, out) = java.try_admin(&["describe-group", "--group", &group]);
                let line = format!("{group} state Stable members 2 assignor range ");
                tagged(&out, "group")
                    .iter()
                    .any(|l| l.starts_with(&line))
                    .then_some(())
            },
        );
        let acked = acknowledged(&java.produce(&topic, 0..total, &["--compression", "gzip"]));
        assert_eq!(acked.len() as u64, total, "acknowledgements");
        (
            a.join().expect("member a thread"),
            b.join().expect("member b thread"),
        )
    });
    let got_a = parse_consumed_lines(&a.stdout);
    let got_b = parse_consumed_lines(&b.stdout);
    let parts = |g: &[Consumed]| -> std::collections::BTreeSet<i32> {
        g.iter().map(|c| c.partition).collect()
    };
    let (pa, pb) = (parts(&got_a), parts(&got_b));
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "one member got nothing: a={} b={}",
        got_a.len(),
        got_b.len()
    );
    assert!(
        pa.is_disjoint(&pb),
        "both members read partitions {:?}",
        pa.intersection(&pb).collect::<Vec<_>>()
    );
    let mut all = got_a;
    all.extend(got_b);
    assert_records_exact(&all, 0..total);
}

/// A Java consumer waiting at the end of six partitions fetches in an incremental fetch
/// session (KIP-227): each request names only the partitions whose position moved, each
/// response carries only the partitions with news, and every record arrives once.
#[test]
fn java_consumer_reads_everything_once_in_an_incremental_fetch_session() {
    let broker = TestBroker::start(&[]);
    let java = JavaDriver::at(&broker.bootstrap());
    let topic = topic_name("java-session");
    let group = format!("{topic}-g");
    let total = 600u64;
    java.admin(&["create-topic", "--topic", &topic, "--partitions", "6"]);
    let consumed = std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            java.consume(
                &topic,
                &group,
                total,
                &["--idle-ms", "6000", "--timeout-ms", "100000"],
            )
        });
        wait_for(
            "the consumer to be in its group",
            Duration::from_secs(90),
            Duration::from_millis(200),
            || {
                let (_, out) = java.try_admin(&["describe-group", "--group", &group]);
                let line = format!("{group} state Stable members 1 ");
                tagged(&out, "group")
                    .iter()
                    .any(|l| l.starts_with(&line))
                    .then_some(())
            },
        );
        // In small stretches, so the consumer's session sees partitions move a few at a time.
        let acked = acknowledged(&java.produce(&topic, 0..total, &["--pause-ms", "5"]));
        assert_eq!(acked.len() as u64, total, "acknowledgements");
        consumer.join().expect("consumer thread")
    });
    assert_records_exact(&parse_consumed_lines(&consumed.stdout), 0..total);
    let incremental = metric_sum(broker.http_addr(), "sluice_fetch_incremental_total", "");
    assert!(
        incremental >= 5.0,
        "{incremental} incremental fetches: the Java consumer did not fetch in a session"
    );
}

/// A Java group consumer goes on after the broker coordinating its group is SIGKILLed (three
/// broker processes, replication factor 3, min.insync.replicas 2): the group's offsets
/// partition gets a new leader, the consumer finds it, rejoins and reads every record, and
/// every commit acknowledged before the kill is still there (or later ones).
#[test]
fn java_consumer_group_continues_after_its_coordinator_is_killed() {
    let mut cluster = ProcessCluster::start(
        3,
        5,
        &[
            "--default-replication-factor",
            "3",
            "--min-insync-replicas",
            "2",
            "--fsync",
            "always",
        ],
    );
    let topic = "java-failover";
    let group = "java-failover-g";
    let java = JavaDriver::at(&cluster.bootstrap());
    java.admin(&["create-topic", "--topic", topic, "--partitions", "3"]);
    let acked = acknowledged(&java.produce(topic, 0..300, &[]));
    assert_eq!(acked.len(), 300, "acknowledgements");
    let out = std::thread::scope(|s| {
        let member = s.spawn(|| {
            java.consume(
                topic,
                group,
                600,
                &[
                    "--distinct",
                    "true",
                    "--retry-commits",
                    "true",
                    "--timeout-ms",
                    "100000",
                ],
            )
        });
        let before = wait_for(
            "the member's first commits",
            Duration::from_secs(90),
            Duration::from_millis(300),
            || {
                let c = rd_committed(&cluster.bootstrap(), group, topic, 3);
                (c.values().sum::<i64>() > 0).then_some(c)
            },
        );
        let coordinator = find_coordinator(cluster.broker(0).kafka_addr, group);
        cluster.kill9(coordinator);
        let survivors = cluster.bootstrap();
        rd_produce_all(&survivors, topic, None, 300..600, &[("acks", "all")]);
        let out = member.join().expect("member thread");
        let after = rd_committed(&survivors, group, topic, 3);
        for (p, o) in &before {
            assert!(
                after[p] >= *o,
                "partition {p}: committed {} after the kill, {o} before",
                after[p]
            );
        }
        let new = find_coordinator(cluster.broker(cluster.running()[0]).kafka_addr, group);
        assert_ne!(new, coordinator);
        eprintln!(
            "coordinator {coordinator} killed, {new} took over; {} commit(s) retried",
            tagged(&out, "commit-retry").len()
        );
        out
    });
    // Re-reads after the rejoin are allowed (at least once); every record is read.
    let mut seen = BTreeSet::new();
    let mut got = parse_consumed_lines(&out.stdout);
    got.retain(|c| seen.insert((c.partition, c.offset)));
    assert_records_exact(&got, 0..600);
    let committed = partition_offsets(&out, "committed");
    assert_eq!(committed.values().sum::<i64>(), 600, "{committed:?}");
}

/// acks=0 and acks=1 producers (idempotence off, as 4.x does for acks != all) are stored as
/// acks=all ones are; a read_committed consumer reads them (no transactions: LSO = HW);
/// nearly-1-MiB records round-trip and a 2 MB one is refused as RecordTooLarge.
#[test]
fn java_acks_0_and_1_large_records_and_read_committed() {
    let broker = TestBroker::start(&[]);
    let java = JavaDriver::at(&broker.bootstrap());
    let topic = topic_name("java-acks");
    let produce = |records: Range<u64>, extra: &[&str]| {
        let mut args = vec!["--partition", "0"];
        args.extend_from_slice(extra);
        acknowledged(&java.produce(&topic, records, &args))
    };
    // acks=0: no offsets come back (-1), but the records are stored.
    let a0 = produce(0..30, &["--acks", "0"]);
    assert_eq!(a0.len(), 30);
    assert!(a0.iter().all(|a| a.2 == -1), "acks=0 reported offsets");
    // acks=1: offsets continue after the acks=0 records, so those were all stored in order.
    let a1 = produce(30..60, &["--acks", "1", "--compression", "snappy"]);
    assert_eq!(
        a1.iter().map(|a| a.2).collect::<Vec<_>>(),
        (30..60).collect::<Vec<i64>>(),
        "acks=1 offsets"
    );
    // Two records of 1,000,000-byte values (under max.message.bytes 1048588), zstd.
    let big = 1_000_000usize;
    let ab = produce(
        60..62,
        &["--value-bytes", &big.to_string(), "--compression", "zstd"],
    );
    assert_eq!(
        ab.iter().map(|a| a.2).collect::<Vec<_>>(),
        vec![60, 61],
        "large records' offsets"
    );
    // A 2,000,000-byte record: the broker refuses the batch (MESSAGE_TOO_LARGE).
    let err = java.produce_fails(
        &topic,
        62..63,
        &[
            "--partition",
            "0",
            "--value-bytes",
            "2000000",
            "--prop",
            "max.request.size=5000000",
        ],
    );
    assert!(err.contains("RecordTooLargeException"), "{err}");

    let out = java.consume(
        &topic,
        "java-acks",
        62,
        &["--prop", "isolation.level=read_committed"],
    );
    let got = parse_consumed_lines(&out.stdout);
    assert_eq!(got.len(), 62, "records read back");
    assert_records_exact(&got[..60], 0..60);
    for (k, c) in got[60..].iter().enumerate() {
        let i = 60 + k as u64;
        let mut want = test_record(i);
        want.value = Some(
            (0..big)
                .map(|j| ((i * 131 + j as u64 * 7) % 256) as u8)
                .collect(),
        );
        assert_eq!(
            (c.offset, c.index()),
            (i as i64, i),
            "large record position"
        );
        assert!(
            c.record == want,
            "large record {i} differs from what was produced"
        );
    }
    assert_eq!(
        partition_offsets(&out, "committed"),
        BTreeMap::from([(0, 62)])
    );
}

#[test]
fn java_admin_moves_a_partition_between_two_brokers_with_partition_reassignments() {
    let first = TestBroker::start(&["--node-id", "0", "--cluster-listen", "127.0.0.1:0"]);
    let seed = first
        .ctx()
        .cluster
        .cluster_addr()
        .expect("cluster listener")
        .to_string();
    let second = TestBroker::start(&[
        "--node-id",
        "1",
        "--cluster-listen",
        "127.0.0.1:0",
        "--seeds",
        &seed,
    ]);
    wait_for(
        "two brokers in one cluster",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            (second.ctx().cluster.is_ready() && first.ctx().cluster.state().brokers.len() == 2)
                .then_some(())
        },
    );
    let bs = first.bootstrap();
    let java = JavaDriver::at(&bs);
    let topic = topic_name("java-move");
    java.admin(&["create-topic", "--topic", &topic, "--partitions", "2"]);
    rd_produce_all(&bs, &topic, Some(0), 0..20, &[("acks", "all")]);
    let leaders = || -> BTreeMap<i32, i32> {
        let out = java.admin(&["describe-partition-leaders", "--topic", &topic]);
        tagged(&out, "leader")
            .iter()
            .map(|l| {
                let (p, b) = l.split_once(' ').expect("leader line");
                (p.parse().expect("partition"), b.parse().expect("broker"))
            })
            .collect()
    };
    let before = leaders();
    assert_eq!(
        before.values().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1])
    );
    let to = if before[&0] == 0 { "1" } else { "0" };
    java.admin(&[
        "reassign",
        "--topic",
        &topic,
        "--partition",
        "0",
        "--to",
        to,
    ]);
    let moved = wait_for(
        "the Java admin client to see the move finished",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let l = leaders();
            (l[&0].to_string() == to).then_some(l)
        },
    );
    let listed = java.admin(&["list-reassignments"]);
    assert_eq!(tagged(&listed, "reassignments"), vec!["0"]);
    assert_eq!(moved[&1], before[&1], "the other partition stays");
    let got = rd_consume_from_start(&bs, &topic, &[0], 20, Duration::from_secs(30));
    assert_records_exact(&got, 0..20);
}

/// The Java Admin calls behind Kafka's inspection tools: describeLogDirs (kafka-log-dirs),
/// describeProducers (kafka-transactions describe-producers), describeMetadataQuorum
/// (kafka-metadata-quorum) and electLeaders (kafka-leader-election).
#[test]
fn java_admin_inspects_log_dirs_producers_the_quorum_and_elections() {
    let broker = TestBroker::start(&[]);
    let java = JavaDriver::at(&broker.bootstrap());
    let topic = topic_name("java-inspect");
    java.produce(&topic, 0..25, &["--partition", "0"]);

    let out = java.admin(&["describe-log-dirs", "--broker", "0"]);
    let dirs = tagged(&out, "log-dir");
    assert_eq!(dirs.len(), 1, "{}", out.stdout);
    let want = format!("{} total ", broker.data_dir().display());
    assert!(dirs[0].starts_with(&want), "{}", dirs[0]);
    let replica = tagged(&out, "log-dir-replica")
        .into_iter()
        .find(|l| l.starts_with(&format!("{topic} 0 size ")))
        .unwrap_or_else(|| panic!("{topic}-0 not described: {}", out.stdout));
    let size: u64 = replica
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no size in {replica:?}"));
    assert!(size > 25, "{replica}");

    let out = java.admin(&["describe-producers", "--topic", &topic, "--partition", "0"]);
    let producers = tagged(&out, "producer");
    assert_eq!(producers.len(), 1, "{}", out.stdout);
    assert!(producers[0].ends_with(" last-seq 24"), "{}", producers[0]);

    let out = java.admin(&["describe-quorum"]);
    assert_eq!(tagged(&out, "quorum-voter").len(), 1, "{}", out.stdout);
    assert!(
        tagged(&out, "quorum")[0].starts_with("leader 0 epoch "),
        "{}",
        out.stdout
    );

    let out = java.admin(&["elect-leaders", "--topic", &topic, "--partition", "0"]);
    assert_eq!(
        tagged(&out, "election"),
        vec![format!("{topic}-0 ElectionNotNeededException")],
        "{}",
        out.stdout
    );
}
