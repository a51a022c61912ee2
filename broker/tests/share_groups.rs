//! Share groups (KIP-932) with the Java `KafkaShareConsumer` (kafka-clients 4.x): competing
//! consumers on one partition, per-record acknowledgement, redelivery after a consumer dies,
//! REJECT and the delivery limit with a dead-letter topic, and share-partition state across a
//! restart of the broker binary.
//!
//! The driver is `tests/java/SluiceShareClient.java` (see its header for the commands).

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn five_share_consumers_on_one_partition_all_get_work_and_process_each_message_once() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let (topic, group) = one_partition_topic(&java, "share-five");
    let extra = [
        "--max-poll",
        "5",
        "--process-ms",
        "15",
        "--idle-ms",
        "5000",
        "--timeout-ms",
        "100000",
    ];
    let members: Vec<Running> = (0..5)
        .map(|_| consumer(&b, &topic, &group, &extra))
        .collect();
    // A share group starts at the log end (share.auto.offset.reset=latest): produce once
    // every member is in.
    wait_members(&b, &group, 5);
    let total = 300;
    share(
        &b,
        &["produce", "--topic", &topic, "--count", &total.to_string()],
    );
    let outs: Vec<String> = members
        .into_iter()
        .map(|m| m.finish(Duration::from_secs(110)))
        .collect();
    let per: Vec<Vec<Got>> = outs.iter().map(|o| got(o)).collect();
    for (i, g) in per.iter().enumerate() {
        assert!(
            !g.is_empty(),
            "consumer {i} got no work: {:?}",
            per.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    let all: Vec<Got> = per.concat();
    let counts = count_values(&all);
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>().len(),
        total,
        "distinct messages"
    );
    for v in expected(total) {
        assert_eq!(
            counts.get(&v),
            Some(&1),
            "{v} processed {:?} times",
            counts.get(&v)
        );
    }
    assert!(
        all.iter().all(|g| g.delivery_count == 1),
        "a redelivery with all accepting"
    );
}

#[test]
fn a_queue_that_starts_at_earliest_delivers_messages_sent_before_its_first_consumer() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let topic = topic_name("share-earliest");
    // What the operator sets on a `type: queue`.
    java.admin(&[
        "create-topic",
        "--topic",
        &topic,
        "--partitions",
        "1",
        "--set",
        "share.auto.offset.reset=earliest",
    ]);
    let total = 40;
    share(
        &b,
        &["produce", "--topic", &topic, "--count", &total.to_string()],
    );
    // Only now does any consumer join; with the default (latest) it would see none of them.
    reads_each_once(&b, &topic, &format!("{topic}-g"), 0..total);
}

/// A share consumer over its `consumer_byte_rate` (1 byte/s: the first records are past it)
/// is throttled through ShareFetch like a consumer, and still gets every record once.
#[test]
fn a_share_consumer_over_its_byte_rate_is_throttled_and_gets_every_record() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    java.admin(&[
        "create-topic",
        "--topic",
        "share-quota",
        "--partitions",
        "1",
        "--set",
        "share.auto.offset.reset=earliest",
    ]);
    let (ok, out) = try_kafka_tool(
        "kafka.admin.ConfigCommand",
        &[
            "--bootstrap-server",
            &b,
            "--alter",
            "--entity-type",
            "clients",
            "--entity-name",
            "share-slow",
            "--add-config",
            "consumer_byte_rate=1",
        ],
    );
    assert!(ok, "{}{}", out.stdout, out.stderr);
    let total = 30;
    share(
        &b,
        &[
            "produce",
            "--topic",
            "share-quota",
            "--count",
            &total.to_string(),
        ],
    );
    let out = consumer(
        &b,
        "share-quota",
        "share-quota-g",
        &[
            "--max-poll",
            "10",
            "--idle-ms",
            "15000",
            "--timeout-ms",
            "90000",
            "--prop",
            "client.id=share-slow",
            "--prop",
            "max.partition.fetch.bytes=512",
        ],
    )
    .finish(Duration::from_secs(120));
    let counts = count_values(&got(&out));
    assert_eq!(counts.len(), total, "{out}");
    assert!(counts.values().all(|n| *n == 1), "each once: {counts:?}");
    let held = metric_sum(
        broker.http_addr(),
        "sluice_client_throttle_ms_total",
        "consumer_byte_rate",
    );
    assert!(held > 0.0, "no ShareFetch throttled: {out}");
}

/// A new one-partition topic named from `prefix` (created through the Java admin) and the name
/// of the share group its test reads it with.
fn one_partition_topic(java: &JavaDriver, prefix: &str) -> (String, String) {
    let topic = topic_name(prefix);
    java.admin(&["create-topic", "--topic", &topic, "--partitions", "1"]);
    let group = format!("{topic}-g");
    (topic, group)
}

/// A first consumer of `group` reads exactly the messages numbered `numbers` (`m-<i>`) of
/// those sent to `topic` before it joined, each once.
fn reads_each_once(b: &str, topic: &str, group: &str, numbers: std::ops::Range<usize>) {
    let out = consumer(
        b,
        topic,
        group,
        &["--idle-ms", "5000", "--timeout-ms", "60000"],
    )
    .finish(Duration::from_secs(90));
    let counts = count_values(&got(&out));
    let mut want: Vec<String> = numbers.map(|i| format!("m-{i}")).collect();
    want.sort();
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        want,
        "the messages sent before the group's first consumer that it starts at, once"
    );
    assert!(counts.values().all(|n| *n == 1), "each once: {counts:?}");
}

/// Kafka's own way to start a share group at the log start: `kafka-configs.sh --alter
/// --entity-type groups --add-config share.auto.offset.reset=earliest` (a group config), on a
/// topic without Sluice's per-queue setting; `--describe` shows it, and the list of every
/// group's configs has the group before any member joined.
#[test]
fn kafka_configs_starts_a_share_group_at_earliest_through_its_group_config() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let (topic, group) = one_partition_topic(&java, "share-group-config");
    let total = 40;
    share(
        &b,
        &["produce", "--topic", &topic, "--count", &total.to_string()],
    );
    let configs = |args: &[&str]| {
        let mut all = vec![
            "--bootstrap-server",
            b.as_str(),
            "--entity-type",
            "groups",
            "--entity-name",
            group.as_str(),
        ];
        all.extend_from_slice(args);
        kafka_tool("kafka.admin.ConfigCommand", &all).stdout
    };
    configs(&[
        "--alter",
        "--add-config",
        "share.auto.offset.reset=earliest",
    ]);
    let described = configs(&["--describe"]);
    assert!(
        described.contains("share.auto.offset.reset=earliest"),
        "{described}"
    );
    // Every group's configs (ListConfigResources): the group has no member yet, only configs.
    let all = kafka_tool(
        "kafka.admin.ConfigCommand",
        &[
            "--bootstrap-server",
            b.as_str(),
            "--entity-type",
            "groups",
            "--describe",
        ],
    )
    .stdout;
    assert!(
        all.contains(&format!("Dynamic configs for group {group} are:")),
        "{all}"
    );
    // kafka-client-metrics.sh lists no subscription (it asks ListConfigResources v0).
    let metrics = kafka_tool(
        "org.apache.kafka.tools.ClientMetricsCommand",
        &["--bootstrap-server", b.as_str(), "--list"],
    );
    assert_eq!(metrics.stdout.trim(), "", "{}", metrics.stderr);
    // The group's first consumer joins only now; with the default (latest) it would get none.
    reads_each_once(&b, &topic, &group, 0..total);
}

/// Kafka's `share.auto.offset.reset=by_duration:<ISO-8601 duration>` (KIP-1106), set as a
/// group config: the group's first consumer starts at the first record at most that old, so
/// it reads the 20 messages stamped a minute ago and none of the 20 stamped two hours ago.
/// A malformed duration is refused naming what is allowed.
#[test]
fn a_share_group_started_by_duration_reads_only_the_recent_messages() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let (topic, group) = one_partition_topic(&java, "share-by-duration");
    let hours_two = (2 * 3_600_000).to_string();
    share(
        &b,
        &[
            "produce", "--topic", &topic, "--count", "20", "--age-ms", &hours_two,
        ],
    );
    share(
        &b,
        &[
            "produce", "--topic", &topic, "--count", "20", "--first", "20", "--age-ms", "60000",
        ],
    );
    let alter = |value: &str| {
        let add = format!("share.auto.offset.reset={value}");
        try_kafka_tool(
            "kafka.admin.ConfigCommand",
            &[
                "--bootstrap-server",
                b.as_str(),
                "--entity-type",
                "groups",
                "--entity-name",
                group.as_str(),
                "--alter",
                "--add-config",
                add.as_str(),
            ],
        )
    };
    let (ok, refused) = alter("by_duration:1h");
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(!ok && said.contains("by_duration:<ISO-8601"), "{said}");
    let (ok, set) = alter("by_duration:PT1H");
    assert!(ok, "{}{}", set.stdout, set.stderr);
    // Only the messages of the last hour.
    reads_each_once(&b, &topic, &group, 20..40);
}

#[test]
fn a_killed_share_consumer_has_its_unacknowledged_messages_redelivered_to_the_others() {
    let broker = TestBroker::start(&["--share-record-lock-duration-ms", "2000"]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let (topic, group) = one_partition_topic(&java, "share-kill");
    let victim = consumer(
        &b,
        &topic,
        &group,
        &[
            "--max-poll",
            "10",
            "--hang",
            "true",
            "--timeout-ms",
            "100000",
        ],
    );
    wait_members(&b, &group, 1);
    let total = 60;
    share(
        &b,
        &["produce", "--topic", &topic, "--count", &total.to_string()],
    );
    wait_for(
        "the victim to hold a batch",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || victim.stdout().contains("#hang").then_some(()),
    );
    let held = got(&victim.kill9());
    assert!(!held.is_empty(), "the victim held nothing");
    // One of the two may find nothing left: it gives up after 20 s without a record.
    let extra = [
        "--max-poll",
        "10",
        "--idle-ms",
        "5000",
        "--give-up-ms",
        "20000",
        "--timeout-ms",
        "100000",
    ];
    let others: Vec<Running> = (0..2)
        .map(|_| consumer(&b, &topic, &group, &extra))
        .collect();
    let all: Vec<Got> = others
        .into_iter()
        .flat_map(|o| got(&o.finish(Duration::from_secs(110))))
        .collect();
    let counts = count_values(&all);
    for v in expected(total) {
        assert_eq!(
            counts.get(&v),
            Some(&1),
            "{v} processed {:?} times by the others",
            counts.get(&v)
        );
    }
    for h in &held {
        let again = all
            .iter()
            .find(|g| g.offset == h.offset)
            .expect("redelivered");
        assert!(
            again.delivery_count >= 2,
            "offset {} came back with delivery count {}",
            h.offset,
            again.delivery_count
        );
    }
}

#[test]
fn records_a_share_consumer_holds_are_in_flight_per_partition_in_the_metrics() {
    // The default lock (30 s) keeps the held records acquired while the test looks.
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let (topic, group) = one_partition_topic(&java, "share-inflight");
    let holder = consumer(
        &b,
        &topic,
        &group,
        &[
            "--max-poll",
            "5",
            "--hang",
            "true",
            "--timeout-ms",
            "100000",
        ],
    );
    wait_members(&b, &group, 1);
    share(&b, &["produce", "--topic", &topic, "--count", "20"]);
    wait_for(
        "the consumer to hold a batch",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || holder.stdout().contains("#hang").then_some(()),
    );
    let series = format!(
        "sluice_share_partition_records_in_flight{{group=\"{group}\",topic=\"{topic}\",partition=\"0\"}} "
    );
    let in_flight: i64 = wait_for(
        "the held records in the per-partition in-flight gauge",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let (status, body) = http_get(broker.http_addr(), "/metrics").ok()?;
            if status != 200 {
                return None;
            }
            let n: i64 = body
                .lines()
                .find_map(|l| l.strip_prefix(&series))?
                .trim()
                .parse()
                .ok()?;
            (n > 0).then_some(n)
        },
    );
    let held = got(&holder.kill9());
    let held = i64::try_from(held.len()).expect("small");
    assert!(
        (held..=20).contains(&in_flight),
        "{in_flight} in flight: at least the {held} records the consumer got, at most the 20 sent"
    );
}

#[test]
fn rejected_and_over_the_limit_share_records_are_archived_to_the_dead_letter_topic() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let topic = topic_name("share-dlq");
    let dlq = format!("{topic}-dlq");
    let group = format!("{topic}-g");
    java.admin(&["create-topic", "--topic", &dlq, "--partitions", "1"]);
    java.admin(&[
        "create-topic",
        "--topic",
        &topic,
        "--partitions",
        "1",
        "--set",
        &format!("errors.deadletterqueue.topic.name={dlq}"),
        "--set",
        "share.delivery.count.limit=2",
    ]);
    // Messages 0, 5, 10, 15 are "poison-<i>", rejected; "m-3" is released every time.
    let c = consumer(
        &b,
        &topic,
        &group,
        &[
            "--reject-prefix",
            "poison-",
            "--release-prefix",
            "m-3",
            "--idle-ms",
            "5000",
            "--timeout-ms",
            "100000",
        ],
    );
    wait_members(&b, &group, 1);
    share(
        &b,
        &[
            "produce",
            "--topic",
            &topic,
            "--count",
            "20",
            "--poison-every",
            "5",
        ],
    );
    let all = got(&c.finish(Duration::from_secs(110)));
    let counts = count_values(&all);
    for i in [0, 5, 10, 15] {
        assert_eq!(
            counts.get(&format!("poison-{i}")),
            Some(&1),
            "a rejected record came back"
        );
    }
    assert_eq!(
        counts.get("m-3"),
        Some(&2),
        "released up to the delivery limit of 2"
    );
    let out = share(&b, &["dump", "--topic", &dlq, "--count", "5"]);
    let letters: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("dlq "))
        .collect();
    assert_eq!(letters.len(), 5, "dead letters:\n{}", out.stdout);
    for i in [0, 5, 10, 15] {
        let want = format!("dlq poison-{i} ");
        let l = letters
            .iter()
            .find(|l| l.starts_with(&want))
            .expect("poison letter");
        assert!(
            l.contains(&format!("sluice.dlq.source.topic={topic}")),
            "{l}"
        );
        assert!(l.contains(&format!("sluice.dlq.source.offset={i}")), "{l}");
        assert!(l.contains(&format!("sluice.dlq.group={group}")), "{l}");
        assert!(l.contains("sluice.dlq.reason=rejected"), "{l}");
        assert!(l.contains("sluice.dlq.delivery.count=1"), "{l}");
    }
    let limit = letters
        .iter()
        .find(|l| l.starts_with("dlq m-3 "))
        .expect("m-3 letter");
    assert!(
        limit.contains("sluice.dlq.reason=delivery-limit"),
        "{limit}"
    );
    assert!(limit.contains("sluice.dlq.delivery.count=2"), "{limit}");
}

#[test]
fn share_partition_state_survives_a_sigkill_and_restart_of_the_broker_binary() {
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let mut broker = BinaryBroker::spawn(data.path(), &[], &logs.path().join("first.log"));
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let (topic, group) = one_partition_topic(&java, "share-restart");
    let first = consumer(
        &b,
        &topic,
        &group,
        &[
            "--max-poll",
            "5",
            "--max-records",
            "10",
            "--timeout-ms",
            "100000",
        ],
    );
    wait_members(&b, &group, 1);
    let total = 40;
    share(
        &b,
        &["produce", "--topic", &topic, "--count", &total.to_string()],
    );
    let accepted = got(&first.finish(Duration::from_secs(110)));
    assert!(
        accepted.len() >= 10,
        "the first consumer processed {accepted:?}"
    );
    // A second consumer acquires a batch and holds it when the broker dies.
    let victim = consumer(
        &b,
        &topic,
        &group,
        &[
            "--max-poll",
            "5",
            "--hang",
            "true",
            "--timeout-ms",
            "100000",
        ],
    );
    wait_for(
        "the victim to hold a batch",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || victim.stdout().contains("#hang").then_some(()),
    );
    broker.kill9();
    let held = got(&victim.kill9());
    assert!(!held.is_empty(), "the victim held nothing");

    let broker = BinaryBroker::spawn(data.path(), &[], &logs.path().join("second.log"));
    let b = broker.bootstrap();
    let rest = got(&consumer(
        &b,
        &topic,
        &group,
        &[
            "--max-poll",
            "10",
            "--idle-ms",
            "5000",
            "--timeout-ms",
            "100000",
        ],
    )
    .finish(Duration::from_secs(110)));
    let before: BTreeMap<String, usize> = count_values(&accepted);
    let after = count_values(&rest);
    for v in expected(total) {
        let n = before.get(&v).copied().unwrap_or(0) + after.get(&v).copied().unwrap_or(0);
        assert_eq!(n, 1, "{v} processed {n} times across the restart");
    }
    for h in &held {
        let again = rest
            .iter()
            .find(|g| g.offset == h.offset)
            .expect("held record redelivered");
        assert!(
            again.delivery_count > h.delivery_count,
            "offset {} held with delivery count {} came back with {}",
            h.offset,
            h.delivery_count,
            again.delivery_count
        );
    }
}

const SHARE_TOOL: &str = "org.apache.kafka.tools.consumer.group.ShareGroupCommand";

#[test]
fn kafka_share_groups_tool_lists_describes_and_deletes_a_share_group() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let (topic, group) = one_partition_topic(&java, "share-tool");
    let c = consumer(
        &b,
        &topic,
        &group,
        &["--idle-ms", "4000", "--timeout-ms", "100000"],
    );
    wait_members(&b, &group, 1);
    let tool = |args: &[&str]| {
        let mut all = vec!["--bootstrap-server", b.as_str()];
        all.extend_from_slice(args);
        kafka_tool(SHARE_TOOL, &all).stdout
    };
    let members = tool(&["--describe", "--group", &group, "--members"]);
    assert!(
        members
            .lines()
            .any(|l| l.starts_with(&group) && l.contains(&format!("{topic}:0"))),
        "--members:\n{members}"
    );
    let state = tool(&["--describe", "--group", &group, "--state"]);
    assert!(
        state
            .lines()
            .any(|l| l.starts_with(&group) && l.contains("Stable")),
        "--state:\n{state}"
    );
    assert!(tool(&["--list"]).lines().any(|l| l == group));
    share(&b, &["produce", "--topic", &topic, "--count", "10"]);
    assert_eq!(got(&c.finish(Duration::from_secs(110))).len(), 10);
    // Every record accepted: the share partition starts after the last one.
    let offsets = tool(&["--describe", "--group", &group]);
    let row: Vec<&str> = offsets
        .lines()
        .find(|l| l.starts_with(&group))
        .unwrap_or_else(|| panic!("no offsets row:\n{offsets}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[1..4], &[topic.as_str(), "0", "10"], "{offsets}");
    let deleted = tool(&["--delete", "--group", &group]);
    assert!(deleted.contains("successful"), "--delete:\n{deleted}");
    assert!(!tool(&["--list"]).lines().any(|l| l == group));
}

#[test]
fn kafka_share_groups_tool_resets_and_deletes_the_offsets_of_an_empty_share_group() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let topic = topic_name("share-reset");
    let group = format!("{topic}-g");
    java.admin(&[
        "create-topic",
        "--topic",
        &topic,
        "--partitions",
        "1",
        "--set",
        "share.auto.offset.reset=earliest",
    ]);
    share(&b, &["produce", "--topic", &topic, "--count", "10"]);
    let drain = || {
        let out = consumer(
            &b,
            &topic,
            &group,
            &[
                "--idle-ms",
                "3000",
                "--give-up-ms",
                "8000",
                "--timeout-ms",
                "60000",
            ],
        )
        .finish(Duration::from_secs(90));
        let mut values: Vec<String> = got(&out).into_iter().map(|g| g.value).collect();
        values.sort_by_key(|v| v[2..].parse::<u32>().unwrap_or(u32::MAX));
        values
    };
    let tool = |args: &[&str]| {
        let mut all = vec!["--bootstrap-server", b.as_str()];
        all.extend_from_slice(args);
        kafka_tool(SHARE_TOOL, &all).stdout
    };
    let start = || {
        let offsets = tool(&["--describe", "--group", &group]);
        offsets
            .lines()
            .find(|l| l.starts_with(&group))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            .unwrap_or_else(|| panic!("no offsets row:\n{offsets}"))
    };
    assert_eq!(drain(), expected(10));
    assert_eq!(start(), "10");
    // The consumer closed: the group is empty, so its offsets may be changed.
    let reset = tool(&[
        "--reset-offsets",
        "--group",
        &group,
        "--topic",
        &topic,
        "--to-earliest",
        "--execute",
    ]);
    assert!(reset.contains(&topic), "--reset-offsets:\n{reset}");
    assert_eq!(start(), "0");
    assert_eq!(drain(), expected(10));
    let deleted = tool(&["--delete-offsets", "--group", &group, "--topic", &topic]);
    assert!(deleted.contains(&topic), "--delete-offsets:\n{deleted}");
    // Started again as with a new topic: from the earliest record.
    assert_eq!(drain(), expected(10));
}

/// A second client implementation in the same group: librdkafka's share consumer
/// (confluent-kafka's `ShareConsumer`) beside a Java one; together they process every message
/// once.
#[test]
fn a_confluent_kafka_and_a_java_share_consumer_share_one_partition() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    let java = JavaDriver::at(&b);
    let (topic, group) = one_partition_topic(&java, "share-mixed");
    let dir = tempfile::tempdir().expect("temp dir");
    let py_out = dir.path().join("stdout");
    let mut py = std::process::Command::new(python())
        .arg(python_script("share_consumer.py"))
        .args([b.as_str(), &topic, &group, "5", "100"])
        .stdout(Stdio::from(
            std::fs::File::create(&py_out).expect("stdout file"),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("stderr")).expect("stderr file"),
        ))
        .spawn()
        .expect("spawn python");
    let j = consumer(
        &b,
        &topic,
        &group,
        &[
            "--max-poll",
            "5",
            "--process-ms",
            "10",
            "--idle-ms",
            "5000",
            "--timeout-ms",
            "100000",
        ],
    );
    wait_members(&b, &group, 2);
    let total = 200;
    share(
        &b,
        &["produce", "--topic", &topic, "--count", &total.to_string()],
    );
    let from_java = got(&j.finish(Duration::from_secs(110)));
    let deadline = Instant::now() + Duration::from_secs(110);
    let status = loop {
        if let Some(st) = py.try_wait().expect("wait python") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = py.kill();
            let _ = py.wait();
            panic!("the Python share consumer did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let py_stdout = std::fs::read_to_string(&py_out).unwrap_or_default();
    let py_stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    assert!(
        status.success(),
        "python share consumer: {status}\n{py_stdout}\n{py_stderr}"
    );
    let from_python: Vec<String> = py_stdout
        .lines()
        .filter_map(|l| l.strip_prefix("got "))
        .filter_map(|l| l.split(' ').nth(2).map(str::to_string))
        .collect();
    assert!(
        !from_python.is_empty() && !from_java.is_empty(),
        "python got {}, java got {}:\n{py_stdout}",
        from_python.len(),
        from_java.len()
    );
    let mut counts = count_values(&from_java);
    for v in from_python {
        *counts.entry(v).or_insert(0) += 1;
    }
    for v in expected(total) {
        assert_eq!(
            counts.get(&v),
            Some(&1),
            "{v} processed {:?} times",
            counts.get(&v)
        );
    }
}
