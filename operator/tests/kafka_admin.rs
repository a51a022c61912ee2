//! The admin client against a real Kafka-wire broker (Apache Kafka 4.x, or sluice-broker once it
//! serves the admin APIs): the queue diff's actions applied and read back.
//!
//! Ignored by default because it needs a broker:
//! `SLUICE_TEST_KAFKA=127.0.0.1:9092 cargo test -p sluice-operator --test kafka_admin -- --ignored`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice_operator::crd::{Queue, QueueDeletionPolicy};
use sluice_operator::kafka::AdminClient;
use sluice_operator::queues::diff_queues;

async fn client() -> AdminClient {
    let addr = std::env::var("SLUICE_TEST_KAFKA").expect("SLUICE_TEST_KAFKA=host:port of a broker");
    AdminClient::connect(&addr, Duration::from_secs(10))
        .await
        .expect("connect")
}

async fn apply(
    admin: &mut AdminClient,
    desired: &[Queue],
    managed: &BTreeSet<String>,
    policy: QueueDeletionPolicy,
) -> usize {
    let (_, observed) = admin.observe_topics().await.expect("observe");
    let plan = diff_queues(desired, &observed, managed, policy);
    assert!(plan.problems.is_empty(), "{:?}", plan.problems);
    for action in &plan.actions {
        admin
            .apply_queue_action(action)
            .await
            .unwrap_or_else(|e| panic!("{action:?}: {e}"));
    }
    plan.actions.len()
}

async fn converge(
    admin: &mut AdminClient,
    desired: &[Queue],
    managed: &BTreeSet<String>,
    policy: QueueDeletionPolicy,
) {
    // topic changes propagate asynchronously in KRaft; poll with a deadline until the diff is empty
    let start = std::time::Instant::now();
    apply(admin, desired, managed, policy).await;
    loop {
        let (_, observed) = admin.observe_topics().await.expect("observe");
        if diff_queues(desired, &observed, managed, policy)
            .actions
            .is_empty()
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "queues did not converge"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Topic `name` as the broker reports it: its partition count and the configs set on it.
async fn topic_state(
    admin: &mut AdminClient,
    name: &str,
) -> (usize, Option<BTreeMap<String, String>>) {
    let (md, observed) = admin.observe_topics().await.expect("observe");
    let topic = observed
        .iter()
        .find(|t| t.name == name)
        .expect("topic exists");
    (md.topics[name].len(), topic.overrides.clone())
}

#[tokio::test]
#[ignore = "needs a Kafka-wire broker: SLUICE_TEST_KAFKA=host:port"]
async fn queue_lifecycle_against_a_real_broker() {
    let mut admin = client().await;
    let name = format!("sluice-op-test-{}", std::process::id());
    let queues = |yaml: String| -> Vec<Queue> { serde_yaml::from_str(&yaml).expect("queues") };
    let managed = BTreeSet::from([name.clone()]);

    // create with partitions and configs
    let v1 = queues(format!("- {{name: {name}, partitions: 2, retentionMs: 3600000, config: {{max.message.bytes: '2097152'}}}}"));
    converge(&mut admin, &v1, &managed, QueueDeletionPolicy::Delete).await;
    let (partitions, overrides) = topic_state(&mut admin, &name).await;
    assert_eq!(partitions, 2);
    assert_eq!(
        overrides,
        Some(BTreeMap::from([
            ("max.message.bytes".to_string(), "2097152".to_string()),
            ("retention.ms".to_string(), "3600000".to_string()),
        ]))
    );

    // more partitions, changed retention, removed override
    let v2 = queues(format!(
        "- {{name: {name}, partitions: 5, retentionMs: 60000}}"
    ));
    converge(&mut admin, &v2, &managed, QueueDeletionPolicy::Delete).await;
    let (partitions, overrides) = topic_state(&mut admin, &name).await;
    assert_eq!(partitions, 5);
    assert_eq!(
        overrides,
        Some(BTreeMap::from([(
            "retention.ms".to_string(),
            "60000".to_string()
        )]))
    );

    // removed from the spec under Delete: deleted
    converge(&mut admin, &[], &managed, QueueDeletionPolicy::Delete).await;
    let md = admin.metadata().await.expect("metadata");
    assert!(!md.topics.contains_key(&name));
}

/// Deadline of the polls below.
fn deadline_passed(start: std::time::Instant, what: &str) -> bool {
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{what}: not within 30 s"
    );
    true
}

#[tokio::test]
#[ignore = "needs a Kafka-wire broker: SLUICE_TEST_KAFKA=host:port"]
async fn partition_reassignment_and_broker_removal_against_a_real_broker() {
    use sluice_operator::kafka::{
        ALTER_PARTITION_REASSIGNMENTS, DESCRIBE_LOG_DIRS, LIST_PARTITION_REASSIGNMENTS,
        UNREGISTER_BROKER,
    };
    use sluice_operator::scale::TopicPartition;

    let mut admin = client().await;
    for key in [
        ALTER_PARTITION_REASSIGNMENTS,
        LIST_PARTITION_REASSIGNMENTS,
        UNREGISTER_BROKER,
    ] {
        assert!(admin.supports(key), "broker supports API {key}");
    }
    let name = format!("sluice-op-move-{}", std::process::id());
    admin
        .create_topic(&name, 2, 1, &BTreeMap::new())
        .await
        .expect("create");
    let start = std::time::Instant::now();
    let md = loop {
        let md = admin.metadata().await.expect("metadata");
        if md
            .topics
            .get(&name)
            .is_some_and(|l| l.len() == 2 && l.values().all(|l| *l >= 0))
        {
            break md;
        }
        deadline_passed(start, "topic with leaders");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let owner = md.topics[&name][&0];
    assert!(md.brokers.contains_key(&owner), "{:?}", md.brokers);
    let registered = admin.describe_cluster().await.expect("describe cluster");
    assert_eq!(
        registered.get(&owner),
        Some(&false),
        "owner registered, not fenced"
    );
    assert_eq!(md.replicas[&name][&0], vec![owner]);

    // the disk of the broker asked: both partitions of the new topic, and its volume
    assert!(
        admin.supports(DESCRIBE_LOG_DIRS),
        "broker serves DescribeLogDirs"
    );
    // (Kafka may create a partition's log a moment after Metadata lists its leader.)
    let start = std::time::Instant::now();
    let usage = loop {
        let usage = admin.describe_log_dirs().await.expect("describe log dirs");
        assert!(usage.failed.is_empty(), "{:?}", usage.failed);
        let described = usage
            .partitions
            .keys()
            .filter(|tp| tp.topic == name)
            .count();
        if described == 2 {
            break usage;
        }
        deadline_passed(start, "both partitions in DescribeLogDirs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (total, usable) = (
        usage.total_bytes.expect("volume size (v4)"),
        usage.usable_bytes.expect("free space (v4)"),
    );
    assert!(usable > 0 && usable <= total, "usable {usable} of {total}");
    let disk = sluice_operator::drain::broker_disk(&usage, None).expect("room known");
    assert!(
        disk.room < usable,
        "the reserve is kept: {} of {usable}",
        disk.room
    );

    // nothing in flight
    let ongoing = admin
        .list_partition_reassignments()
        .await
        .expect("list reassignments");
    assert!(
        ongoing.keys().all(|tp| tp.topic != name),
        "no move of {name} in flight: {ongoing:?}"
    );

    // a move to the broker that already owns the partition is accepted and finishes at once
    let tp0 = TopicPartition {
        topic: name.clone(),
        partition: 0,
    };
    let outcome = admin
        .alter_partition_reassignments(&[(tp0.clone(), vec![owner])])
        .await
        .expect("alter reassignments");
    assert_eq!(outcome, vec![(tp0.clone(), Ok(()))]);
    let start = std::time::Instant::now();
    while admin
        .list_partition_reassignments()
        .await
        .expect("list reassignments")
        .contains_key(&tp0)
    {
        deadline_passed(start, "the move is done");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let md = admin.metadata().await.expect("metadata");
    assert_eq!(md.topics[&name][&0], owner);

    // a move to a broker that does not exist is refused for that partition, with Kafka's reason
    let ghost = 4242;
    let outcome = admin
        .alter_partition_reassignments(&[(tp0.clone(), vec![ghost])])
        .await
        .expect("alter reassignments answers");
    let err = outcome[0].1.clone().expect_err("refused");
    assert!(!err.is_empty(), "the refusal says why");
    println!("AlterPartitionReassignments to broker {ghost}: {err}");

    // unregistering a broker that was never registered: the error is mapped and names the broker
    let err = admin
        .unregister_broker(ghost)
        .await
        .expect_err("unknown broker");
    let text = err.to_string();
    assert!(text.contains("UnregisterBroker"), "{text}");
    assert!(text.contains(&format!("broker {ghost}")), "{text}");
    println!("UnregisterBroker {ghost}: {text}");

    admin.delete_topic(&name).await.expect("delete");
}
