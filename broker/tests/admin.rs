//! Topic administration through two admin clients (librdkafka's AdminClient and kafka-python's
//! KafkaAdminClient), auto-creation of topics on first use, and config synonyms as
//! `kafka-configs.sh` prints them. (Client quotas: `quotas.rs`.)

mod common;

use std::time::Duration;

use common::*;
use rdkafka::admin::{
    AdminClient, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;

const LONG: Duration = Duration::from_secs(60);

/// The topic's configs per DescribeConfigs, as (name, value).
fn describe(
    broker: &TestBroker,
    a: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Vec<(String, Option<String>, bool)> {
    let res = broker
        .block_on(a.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_opts()))
        .expect("describe_configs request");
    let r = res
        .into_iter()
        .next()
        .expect("one resource")
        .unwrap_or_else(|e| panic!("describe_configs {topic}: {e}"));
    r.entries
        .into_iter()
        .map(|e| (e.name, e.value, e.is_default))
        .collect()
}

fn value_of(cfg: &[(String, Option<String>, bool)], key: &str) -> Option<String> {
    cfg.iter()
        .find(|(k, _, _)| k == key)
        .and_then(|(_, v, _)| v.clone())
}

#[test]
fn rdkafka_admin_creates_describes_alters_grows_and_deletes_topics() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let a = rd_admin(&bs);
    let topic = topic_name("admin-rd");
    let create = |new: &NewTopic| {
        broker
            .block_on(a.create_topics([new], &admin_opts()))
            .expect("create_topics request")
    };
    let alter = |alter: &AlterConfig| {
        broker
            .block_on(a.alter_configs([alter], &admin_opts()))
            .expect("alter_configs request")
    };
    let grow = |to: usize| {
        broker
            .block_on(a.create_partitions([&NewPartitions::new(&topic, to)], &admin_opts()))
            .expect("create_partitions request")
    };
    let delete = || {
        broker
            .block_on(a.delete_topics(&[&topic], &admin_opts()))
            .expect("delete_topics request")
    };

    let new = NewTopic::new(&topic, 3, TopicReplication::Fixed(1))
        .set("retention.ms", "3600000")
        .set("segment.bytes", "1048576");
    let res = create(&new);
    assert!(
        res.iter().all(Result::is_ok),
        "create_topics {topic}: {res:?}"
    );
    assert_eq!(
        rd_partition_count(&bs, &topic),
        Some(3),
        "partitions after create"
    );

    // Creating it again is refused with TOPIC_ALREADY_EXISTS.
    let res = create(&new);
    assert!(
        matches!(
            res.first(),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists)))
        ),
        "second create of {topic}: {res:?}"
    );

    // Unknown config keys are refused with INVALID_CONFIG; bad names with INVALID_TOPIC.
    let bad_cfg_name = format!("{topic}-badcfg");
    let bad_cfg =
        NewTopic::new(&bad_cfg_name, 1, TopicReplication::Fixed(1)).set("no.such.config", "1");
    let res = create(&bad_cfg);
    assert!(
        matches!(res.first(), Some(Err((_, RDKafkaErrorCode::InvalidConfig)))),
        "create with an unknown config: {res:?}"
    );
    let bad_name = NewTopic::new("bad/name", 1, TopicReplication::Fixed(1));
    let res = create(&bad_name);
    assert!(
        matches!(res.first(), Some(Err((_, RDKafkaErrorCode::InvalidTopic)))),
        "create with an invalid name: {res:?}"
    );

    // DescribeConfigs returns the overrides and every default.
    let cfg = describe(&broker, &a, &topic);
    assert_eq!(value_of(&cfg, "retention.ms").as_deref(), Some("3600000"));
    assert_eq!(value_of(&cfg, "segment.bytes").as_deref(), Some("1048576"));
    for key in [
        "retention.bytes",
        "max.message.bytes",
        "cleanup.policy",
        "segment.ms",
        "message.timestamp.type",
        "min.insync.replicas",
    ] {
        assert!(
            cfg.iter().any(|(k, _, is_default)| k == key && *is_default),
            "DescribeConfigs lacks default {key}: {cfg:?}"
        );
    }
    assert!(
        cfg.iter()
            .any(|(k, _, is_default)| k == "retention.ms" && !*is_default),
        "retention.ms override reported as a default"
    );

    // AlterConfigs (non-incremental): replaces all overrides.
    let retention =
        AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "7200000");
    let res = alter(&retention);
    assert!(res.iter().all(Result::is_ok), "alter_configs: {res:?}");
    let cfg = describe(&broker, &a, &topic);
    assert_eq!(value_of(&cfg, "retention.ms").as_deref(), Some("7200000"));
    assert!(
        cfg.iter()
            .any(|(k, _, is_default)| k == "segment.bytes" && *is_default),
        "AlterConfigs must reset overrides it does not name (segment.bytes): {cfg:?}"
    );
    // An invalid value is not applied. (rdkafka 0.39's alter_configs reports every resource as
    // Ok, ignoring the per-resource error code, so the refusal itself is checked through
    // kafka-python in kafka_python_admin_creates_describes_alters_grows_and_deletes_topics.)
    let bad = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "soon");
    alter(&bad);
    let after = value_of(&describe(&broker, &a, &topic), "retention.ms");
    assert_eq!(
        after.as_deref(),
        Some("7200000"),
        "AlterConfigs retention.ms=soon changed the topic"
    );

    // CreatePartitions grows the topic; producing to the new partition works.
    let res = grow(5);
    assert!(res.iter().all(Result::is_ok), "create_partitions: {res:?}");
    assert_eq!(rd_partition_count(&bs, &topic), Some(5));
    rd_produce_all(&bs, &topic, Some(4), 0..10, &[]);
    let got = rd_consume_from_start(&bs, &topic, &[4], 10, LONG);
    assert_records_exact(&got, 0..10);
    let res = grow(2);
    assert!(
        matches!(res.first(), Some(Err(_))),
        "shrinking to 2 partitions accepted: {res:?}"
    );

    // DeleteTopics removes it (and it stays gone across a restart).
    let res = delete();
    assert!(res.iter().all(Result::is_ok), "delete_topics: {res:?}");
    assert_eq!(rd_partition_count(&bs, &topic), None, "topic still listed");
    let res = delete();
    assert!(
        matches!(
            res.first(),
            Some(Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)))
        ),
        "deleting a deleted topic: {res:?}"
    );
    drop(a);
    let mut broker = broker;
    broker.restart();
    assert_eq!(
        rd_partition_count(&broker.bootstrap(), &topic),
        None,
        "deleted topic came back after a restart"
    );
}

#[test]
fn kafka_python_admin_creates_describes_alters_grows_and_deletes_topics() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("admin-kp");
    let out = run_python(
        "kafka_python_client.py",
        &["admin", "--bootstrap", &bs, "--topic", &topic],
        Duration::from_secs(90),
    );
    assert!(out.stdout.lines().any(|l| l == "OK"), "{}", out.stdout);
}

#[test]
fn topics_are_auto_created_with_default_partitions_when_enabled() {
    let broker = TestBroker::start(&["--default-partitions", "3"]);
    let bs = broker.bootstrap();

    // librdkafka: producing to an unknown topic creates it.
    let topic = topic_name("auto-rd");
    rd_produce_all(&bs, &topic, None, 0..30, &[]);
    assert_eq!(rd_partition_count(&bs, &topic), Some(3));
    let got = rd_consume_from_start(&bs, &topic, &[0, 1, 2], 30, LONG);
    assert_records_exact(&got, 0..30);

    // kafka-python: a Metadata request for an unknown topic creates it.
    let topic = topic_name("auto-kp");
    let out = run_python(
        "kafka_python_client.py",
        &["auto-create", "--bootstrap", &bs, "--topic", &topic],
        LONG,
    );
    assert!(out.stdout.contains("partitions 3"), "{}", out.stdout);
    assert_eq!(rd_partition_count(&bs, &topic), Some(3));
}

/// Many topics created at the same moment from many connections: every change of the cluster
/// metadata makes the broker bring its local logs in line, and those syncs overlap. One that
/// acted on an older view deleted a partition a newer one had just created, together with the
/// records acknowledged into it (seen as "got 0 of 5 records" in CI). Every record must stay.
#[test]
fn topics_created_concurrently_keep_every_acknowledged_record() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topics: Vec<String> = (0..12).map(|i| topic_name(&format!("burst{i}"))).collect();
    std::thread::scope(|s| {
        for topic in &topics {
            let bs = &bs;
            s.spawn(move || rd_produce_all(bs, topic, Some(0), 0..5, &[("acks", "all")]));
        }
    });
    for topic in &topics {
        assert_eq!(
            rd_watermarks(&bs, topic, 0),
            (0, 5),
            "{topic}: every acknowledged record is still there"
        );
        let got = rd_consume_from_start(&bs, topic, &[0], 5, LONG);
        assert_records_exact(&got, 0..5);
    }
}

#[test]
fn unknown_topics_are_refused_when_auto_creation_is_disabled() {
    let broker = TestBroker::start(&["--auto-create-topics", "false"]);
    let bs = broker.bootstrap();
    let topic = topic_name("no-auto");
    let p = rd_producer(&bs, &[("message.timeout.ms", "3000")]);
    rd_send(&p, &topic, None, 0);
    let _ = p.flush(Duration::from_secs(10));
    let failed = p.context().failed.lock().expect("lock").clone();
    let acked = p.context().acked.lock().expect("lock").clone();
    assert!(
        acked.is_empty(),
        "a record to an unknown topic was acknowledged"
    );
    assert_eq!(failed.len(), 1, "delivery report for the unknown topic");
    assert_eq!(
        rd_partition_count(&bs, &topic),
        None,
        "topic was created anyway"
    );
}

/// `kafka-configs.sh --describe` (Kafka 4.2's ConfigCommand) prints every config's synonyms:
/// where its value comes from, then what it falls back to without that.
#[test]
fn kafka_configs_describes_where_each_config_comes_from() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("synonyms");
    let configs = |args: &[&str]| {
        let (ok, said) = kafka_configs(&bs, args);
        assert!(ok, "kafka-configs.sh {args:?}: {said}");
        said
    };
    kafka_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            &topic,
            "--partitions",
            "1",
            "--config",
            "retention.ms=3600000",
        ],
    );
    let line = |out: &str, key: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}=")))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
    };
    let all = configs(&[
        "--describe",
        "--all",
        "--entity-type",
        "topics",
        "--entity-name",
        &topic,
    ]);
    let retention = line(&all, "retention.ms");
    assert!(
        retention.contains(
            "synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=3600000, \
             DEFAULT_CONFIG:log.retention.ms=604800000}"
        ),
        "{retention}"
    );
    let roll = line(&all, "segment.ms");
    assert!(
        roll.contains("synonyms={DEFAULT_CONFIG:log.roll.ms="),
        "{roll}"
    );
    // Without --all the tool shows the topic's own settings only, picked by their source.
    let own = configs(&[
        "--describe",
        "--entity-type",
        "topics",
        "--entity-name",
        &topic,
    ]);
    assert!(own.contains("retention.ms=3600000"), "{own}");
    assert!(!own.contains("segment.ms="), "{own}");

    configs(&[
        "--alter",
        "--entity-type",
        "groups",
        "--entity-name",
        "synonym-group",
        "--add-config",
        "consumer.session.timeout.ms=50000",
    ]);
    let group = configs(&[
        "--describe",
        "--all",
        "--entity-type",
        "groups",
        "--entity-name",
        "synonym-group",
    ]);
    let session = line(&group, "consumer.session.timeout.ms");
    assert!(
        session.contains(
            "synonyms={DYNAMIC_GROUP_CONFIG:consumer.session.timeout.ms=50000, \
             DEFAULT_CONFIG:group.consumer.session.timeout.ms=45000}"
        ),
        "{session}"
    );
}

/// `kafka-features.sh describe` (Kafka 4.2's FeatureCommand) lists what this broker supports
/// and has on: the consumer group protocol and share groups, and no KIP-890 transactions;
/// `upgrade` is refused (the features are fixed by the binary).
#[test]
fn kafka_features_describes_the_supported_and_finalized_features() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let out = kafka_tool(
        "org.apache.kafka.tools.FeatureCommand",
        &["--bootstrap-server", &bs, "describe"],
    );
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Feature:"))
        .map(|l| l.split('\t').map(str::trim).collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec![
                "Feature: group.version",
                "SupportedMinVersion: 0",
                "SupportedMaxVersion: 1",
                "FinalizedVersionLevel: 1",
                "Epoch: 0"
            ],
            vec![
                "Feature: share.version",
                "SupportedMinVersion: 0",
                "SupportedMaxVersion: 1",
                "FinalizedVersionLevel: 1",
                "Epoch: 0"
            ],
            vec![
                "Feature: transaction.version",
                "SupportedMinVersion: 0",
                "SupportedMaxVersion: 0",
                "FinalizedVersionLevel: 0",
                "Epoch: 0"
            ],
        ],
        "{}",
        out.stdout
    );
    let (ok, refused) = try_kafka_tool(
        "org.apache.kafka.tools.FeatureCommand",
        &[
            "--bootstrap-server",
            &bs,
            "upgrade",
            "--feature",
            "transaction.version=2",
        ],
    );
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        !ok && said.contains("does not support UPDATE_FEATURES"),
        "{said}"
    );
}
