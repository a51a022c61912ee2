//! The admin client against a real Kafka-wire broker (Apache Kafka 4.x, or sluice-broker once it
//! serves the admin APIs): the queue diff's actions applied and read back.
//!
//! Ignored by default because it needs a broker:
//! `SLUICE_TEST_KAFKA=127.0.0.1:9092 cargo test -p sluice-operator --test kafka_admin -- --ignored`.
//!
//! The replication tests need a cluster of at least three brokers with node ids 0, 1, 2
//! (`operator/scripts/kafka-admin-tests.sh` starts one); they say so and pass without one
//! unless `SLUICE_TEST_KAFKA_CLUSTER` is set, which makes a missing cluster a failure. The test
//! that stops a broker runs only when `SLUICE_TEST_KAFKA_STOP` names the `bench/kafka` work dir
//! of broker 2, and last: it leaves that broker stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sluice_operator::crd::{Queue, QueueDeletionPolicy};
use sluice_operator::drain::{self, ClusterView, DrainPlan};
use sluice_operator::kafka::{
    quota_changes, AdminClient, ClusterMetadata, QuotasByUser, CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
};
use sluice_operator::queue_counts::{queue_counts, CountsSeen, QueueCounts};
use sluice_operator::queues::{diff_queues, queue_statuses, Capacity};
use sluice_operator::replication::PartitionHealth;
use sluice_operator::scale::TopicPartition;

/// Queues without a replication factor get one copy: the single brokers these tests also run
/// against have no more.
const ONE_COPY: Capacity = Capacity {
    live_brokers: 1,
    default_replication_factor: 1,
};

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
    let plan = diff_queues(desired, &observed, managed, policy, ONE_COPY);
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
        if diff_queues(desired, &observed, managed, policy, ONE_COPY)
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

#[tokio::test]
#[ignore = "needs a Kafka-wire broker: SLUICE_TEST_KAFKA=host:port"]
async fn an_empty_work_queue_counts_no_messages_no_backlog_and_nothing_in_flight() {
    let mut admin = client().await;
    let name = format!("sluice-op-counts-{}", std::process::id());
    let desired: Vec<Queue> =
        serde_yaml::from_str(&format!("- {{name: {name}, type: queue, partitions: 2}}"))
            .expect("queue");
    let managed = BTreeSet::from([name.clone()]);
    converge(&mut admin, &desired, &managed, QueueDeletionPolicy::Delete).await;

    // A single broker leads both partitions: ListOffsets answers for each.
    let parts: Vec<(String, i32)> = (0..2).map(|p| (name.clone(), p)).collect();
    let offsets = admin.log_offsets(&parts).await.expect("ListOffsets");
    assert_eq!(
        offsets,
        parts.iter().map(|p| (p.clone(), (0, 0))).collect(),
        "a new queue starts and ends at 0"
    );
    // A partition that does not exist is left out, not reported as empty.
    let missing = admin
        .log_offsets(&[(name.clone(), 7)])
        .await
        .expect("ListOffsets");
    assert!(missing.is_empty(), "{missing:?}");

    // ListGroups (type share) and DescribeShareGroupOffsets are served; no group reads it yet.
    let starts = admin.share_group_starts().await.expect("share groups");
    assert!(
        !starts.values().any(|s| s.keys().any(|(t, _)| *t == name)),
        "{starts:?}"
    );
    // ListGroups (classic) and OffsetFetch are served; no consumer group reads it either.
    let groups = admin
        .consumer_group_offsets()
        .await
        .expect("consumer groups");
    assert!(
        !groups.values().any(|o| o.keys().any(|(t, _)| *t == name)),
        "{groups:?}"
    );
    let seen = CountsSeen {
        offsets,
        share_starts: Some(starts),
        in_flight: parts.iter().map(|p| (p.clone(), BTreeMap::new())).collect(),
        group_offsets: Some(groups),
    };
    assert_eq!(
        queue_counts(&desired[0], 2, &seen),
        QueueCounts {
            messages: Some(0),
            backlog: Some(0),
            in_flight: Some(0),
            share_groups: Some(0),
            ..QueueCounts::default()
        }
    );
    // Read as a stream: no consumer group, so no lag.
    let mut stream = desired[0].clone();
    stream.type_ = sluice_operator::crd::QueueType::Stream;
    assert_eq!(
        queue_counts(&stream, 2, &seen),
        QueueCounts {
            messages: Some(0),
            consumer_groups: Some(0),
            ..QueueCounts::default()
        }
    );

    // A work queue starts at the log start unless its config says otherwise; KIP-1106's
    // by_duration form reaches the broker as written (the broker validates it too).
    let start_only = |value: &str| {
        Some(BTreeMap::from([(
            "share.auto.offset.reset".to_string(),
            value.to_string(),
        )]))
    };
    let (_, overrides) = topic_state(&mut admin, &name).await;
    assert_eq!(overrides, start_only("earliest"));
    let recent: Vec<Queue> = serde_yaml::from_str(&format!(
        "- {{name: {name}, type: queue, partitions: 2, config: {{share.auto.offset.reset: 'by_duration:PT1H'}}}}"
    ))
    .expect("queue");
    converge(&mut admin, &recent, &managed, QueueDeletionPolicy::Delete).await;
    let (_, overrides) = topic_state(&mut admin, &name).await;
    assert_eq!(overrides, start_only("by_duration:PT1H"));
    converge(&mut admin, &[], &managed, QueueDeletionPolicy::Delete).await;
}

/// Deadline of the polls below.
/// Users' quotas converge to the declared ones: set, changed, one rate dropped, and all of a
/// removed user's removed; another user's quota (an administrator's) stays.
#[tokio::test]
#[ignore = "needs a Kafka-wire broker: SLUICE_TEST_KAFKA=host:port"]
async fn user_quotas_converge_to_the_declared_ones_and_leave_other_users_alone() {
    let mut admin = client().await;
    let pid = std::process::id();
    let (app, other) = (
        format!("sluice-op-app-{pid}"),
        format!("sluice-op-admin-{pid}"),
    );
    let quotas = |entries: &[(&str, &[(&str, i64)])]| -> QuotasByUser {
        entries
            .iter()
            .map(|(u, kv)| {
                let values = kv.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                (u.to_string(), values)
            })
            .collect()
    };
    // An administrator's quota on a user the operator does not manage.
    let by_hand = quotas(&[(other.as_str(), &[(PRODUCER_BYTE_RATE, 7777)])]);
    let changes = quota_changes(
        &by_hand,
        &QuotasByUser::new(),
        &BTreeSet::from([other.clone()]),
    );
    admin
        .alter_user_quotas(&changes)
        .await
        .expect("AlterClientQuotas");

    let managed = BTreeSet::from([app.clone()]);
    let mine = |all: &QuotasByUser| all.get(&app).cloned().unwrap_or_default();
    for desired in [
        quotas(&[(
            app.as_str(),
            &[
                (PRODUCER_BYTE_RATE, 1_048_576),
                (CONSUMER_BYTE_RATE, 2_097_152),
            ],
        )]),
        quotas(&[(app.as_str(), &[(PRODUCER_BYTE_RATE, 524_288)])]),
        QuotasByUser::new(),
    ] {
        let present = admin
            .describe_user_quotas()
            .await
            .expect("DescribeClientQuotas");
        let changes = quota_changes(&desired, &present, &managed);
        admin
            .alter_user_quotas(&changes)
            .await
            .expect("AlterClientQuotas");
        // Kafka applies quota changes through its controller: read until they show.
        let start = std::time::Instant::now();
        loop {
            let present = admin
                .describe_user_quotas()
                .await
                .expect("DescribeClientQuotas");
            let want = desired.get(&app).cloned().unwrap_or_default();
            if mine(&present) == want {
                assert!(quota_changes(&desired, &present, &managed).is_empty());
                assert_eq!(present.get(&other), by_hand.get(&other), "{present:?}");
                break;
            }
            deadline_passed(start, &format!("user quotas of {app} {want:?}"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let clean = quota_changes(
        &QuotasByUser::new(),
        &by_hand,
        &BTreeSet::from([other.clone()]),
    );
    admin
        .alter_user_quotas(&clean)
        .await
        .expect("AlterClientQuotas");
}

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
    // three partitions: a cluster of up to three brokers puts at least one on each
    admin
        .create_topic(&name, 3, 1, &BTreeMap::new())
        .await
        .expect("create");
    let start = std::time::Instant::now();
    let md = loop {
        let md = admin.metadata().await.expect("metadata");
        if md
            .topics
            .get(&name)
            .is_some_and(|l| l.len() == 3 && l.values().all(|l| *l >= 0))
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

    // the disk of the broker asked: the partitions of the new topic it holds, and its volume
    assert!(
        admin.supports(DESCRIBE_LOG_DIRS),
        "broker serves DescribeLogDirs"
    );
    let asked = match md.brokers.iter().find(|(_, addr)| *addr == admin.addr()) {
        Some((id, _)) => *id,
        None if md.brokers.len() == 1 => *md.brokers.keys().next().expect("one broker"),
        None => panic!("{} is none of {:?}", admin.addr(), md.brokers),
    };
    let held = md.replicas[&name]
        .values()
        .filter(|r| r.contains(&asked))
        .count();
    assert!(
        held > 0,
        "broker {asked} holds a partition: {:?}",
        md.replicas[&name]
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
        if described == held {
            break usage;
        }
        deadline_passed(start, "the partitions it holds in DescribeLogDirs");
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

/// A client of a cluster of at least three brokers (ids 0, 1, 2), or None (after saying why)
/// when the broker under test is a single one and `SLUICE_TEST_KAFKA_CLUSTER` is not set.
async fn cluster_client(test: &str) -> Option<AdminClient> {
    let mut admin = client().await;
    let brokers = admin.metadata().await.expect("metadata").brokers;
    let three = [0, 1, 2].iter().all(|id| brokers.contains_key(id));
    if three {
        return Some(admin);
    }
    assert!(
        std::env::var_os("SLUICE_TEST_KAFKA_CLUSTER").is_none(),
        "{test}: SLUICE_TEST_KAFKA_CLUSTER is set but the cluster has brokers {:?}, not 0, 1, 2",
        brokers.keys().collect::<Vec<_>>()
    );
    println!("{test}: skipped, it needs brokers 0, 1 and 2 (the cluster has {brokers:?})");
    None
}

/// DescribeQuorum, asked before a scale-down lets a pod and its volume go: the voters are
/// brokers of the cluster, each once, and every broker asked gives the same voters (the
/// quorum leader's view; Kafka's brokers pass the request to the controllers, Sluice's to the
/// quorum leader).
#[tokio::test]
#[ignore = "needs a Kafka-wire broker: SLUICE_TEST_KAFKA=host:port"]
async fn every_broker_reports_the_same_metadata_quorum_voters() {
    let mut admin = client().await;
    let brokers = admin.metadata().await.expect("metadata").brokers;
    let voters = admin.quorum_voters().await.expect("DescribeQuorum");
    assert!(!voters.is_empty(), "a quorum without voters");
    let mut unique = voters.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        voters.len(),
        "a voter listed twice: {voters:?}"
    );
    for v in &voters {
        assert!(
            brokers.contains_key(v),
            "voter {v} is no broker of {brokers:?}"
        );
    }
    for (id, addr) in &brokers {
        let mut other = AdminClient::connect(addr, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("connect to broker {id} at {addr}: {e}"));
        let mut seen = other.quorum_voters().await.expect("DescribeQuorum");
        seen.sort_unstable();
        assert_eq!(seen, unique, "broker {id} reports other voters");
    }
}

/// Polls Metadata every 200 ms until `done` holds, for at most 60 s.
async fn metadata_until(
    admin: &mut AdminClient,
    what: &str,
    done: impl Fn(&ClusterMetadata) -> bool,
) -> ClusterMetadata {
    let start = std::time::Instant::now();
    loop {
        let md = admin.metadata().await.expect("metadata");
        if done(&md) {
            return md;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s; last metadata: {md:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every partition of `topic` has a leader and all its replicas in sync.
fn in_sync(md: &ClusterMetadata, topic: &str, partitions: usize) -> bool {
    let (Some(leaders), Some(replicas), Some(isr)) = (
        md.topics.get(topic),
        md.replicas.get(topic),
        md.isr.get(topic),
    ) else {
        return false;
    };
    leaders.len() == partitions
        && leaders.values().all(|l| *l >= 0)
        && replicas.iter().all(|(p, r)| {
            let mut want = r.clone();
            let mut have = isr.get(p).cloned().unwrap_or_default();
            want.sort_unstable();
            have.sort_unstable();
            want == have
        })
}

/// Only `topic`'s partitions in `md`: the cluster may hold what other tests left behind.
fn only(md: &ClusterMetadata, topic: &str) -> ClusterMetadata {
    let pick = |m: &BTreeMap<String, BTreeMap<i32, Vec<i32>>>| {
        m.iter()
            .filter(|(t, _)| t.as_str() == topic)
            .map(|(t, v)| (t.clone(), v.clone()))
            .collect()
    };
    ClusterMetadata {
        topics: md
            .topics
            .iter()
            .filter(|(t, _)| t.as_str() == topic)
            .map(|(t, v)| (t.clone(), v.clone()))
            .collect(),
        replicas: pick(&md.replicas),
        isr: pick(&md.isr),
        brokers: md.brokers.clone(),
    }
}

/// A queue without a replicationFactor is created with the default (3 on three brokers), and
/// Metadata's replicas and in-sync replicas of every partition read back as Kafka reports them.
#[tokio::test]
#[ignore = "needs a Kafka-wire broker: SLUICE_TEST_KAFKA=host:port"]
async fn replicated_queues_report_their_replicas_and_in_sync_replicas() {
    let Some(mut admin) = cluster_client("replicated_queues").await else {
        return;
    };
    let name = format!("sluice-op-rf3-{}", std::process::id());
    let desired: Vec<Queue> =
        serde_yaml::from_str(&format!("- {{name: {name}, partitions: 2}}")).expect("queues");
    let (md, observed) = admin.observe_topics().await.expect("observe");
    let capacity = Capacity {
        live_brokers: md.brokers.len(),
        default_replication_factor: 3,
    };
    let plan = diff_queues(
        &desired,
        &observed,
        &BTreeSet::new(),
        QueueDeletionPolicy::Retain,
        capacity,
    );
    assert_eq!(plan.actions.len(), 1, "{plan:?}");
    admin
        .apply_queue_action(&plan.actions[0])
        .await
        .expect("create");
    let md = metadata_until(&mut admin, "three copies in sync", |md| {
        in_sync(md, &name, 2)
    })
    .await;
    for (p, replicas) in &md.replicas[&name] {
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        assert_eq!(distinct.len(), 3, "partition {p}: {replicas:?}");
        assert_eq!(
            md.topics[&name][p], replicas[0],
            "the preferred replica leads"
        );
    }
    assert!(PartitionHealth::of(&only(&md, &name), &BTreeMap::new()).in_sync());
    let (_, observed) = admin.observe_topics().await.expect("observe");
    let statuses = queue_statuses(&desired, &observed, &BTreeMap::new(), &BTreeMap::new());
    assert_eq!(statuses[0].replication_factor, Some(3));
    assert!(statuses[0].ready, "{:?}", statuses[0]);
    // declared the same, nothing to do; declared otherwise, a problem naming Kafka's value
    let (_, observed) = admin.observe_topics().await.expect("observe");
    let other: Vec<Queue> = serde_yaml::from_str(&format!(
        "- {{name: {name}, partitions: 2, replicationFactor: 2}}"
    ))
    .expect("queues");
    let plan = diff_queues(
        &other,
        &observed,
        &BTreeSet::new(),
        QueueDeletionPolicy::Retain,
        capacity,
    );
    assert!(
        plan.problems[&name].contains("set replicationFactor to 3"),
        "{plan:?}"
    );
    admin.delete_topic(&name).await.expect("delete");
}

/// The drain planner against Kafka: a topic with two copies per partition leaves broker 2 by
/// full replica lists in which only broker 2 is replaced, every partition keeps two copies on
/// distinct brokers, and the copies on the staying brokers keep their places. A topic with three
/// copies cannot leave broker 2 at all.
#[tokio::test]
#[ignore = "needs a Kafka-wire broker: SLUICE_TEST_KAFKA=host:port"]
async fn a_drain_moves_whole_replica_lists_and_keeps_the_replication_factor() {
    let Some(mut admin) = cluster_client("drain_replica_lists").await else {
        return;
    };
    let name = format!("sluice-op-drain-{}", std::process::id());
    admin
        .create_topic(&name, 3, 2, &BTreeMap::new())
        .await
        .expect("create");
    let md = metadata_until(&mut admin, "two copies in sync", |md| in_sync(md, &name, 3)).await;
    let before = md.replicas[&name].clone();
    assert!(
        before.values().any(|r| r.contains(&2)),
        "Kafka spreads 3 partitions of 2 copies over 3 brokers: some on broker 2: {before:?}"
    );
    let ongoing = admin
        .list_partition_reassignments()
        .await
        .expect("list reassignments");
    let registered = admin.describe_cluster().await.expect("describe cluster");
    let view = ClusterView::new(&only(&md, &name), &ongoing).with_registered(&registered);
    let requests = match drain::plan_drain(&view, 2, &[2]) {
        DrainPlan::Moving { requests, .. } => requests,
        other => panic!("expected moves, got {other:?}"),
    };
    for (tp, replicas) in &requests {
        let old = &before[&tp.partition];
        assert_eq!(replicas.len(), 2, "{tp}: {replicas:?}");
        assert!(!replicas.contains(&2), "{tp}: {replicas:?}");
        for (slot, b) in old.iter().enumerate() {
            if *b != 2 {
                assert_eq!(replicas[slot], *b, "{tp}: {old:?} → {replicas:?}");
            }
        }
    }
    let outcome = admin
        .alter_partition_reassignments(&requests)
        .await
        .expect("alter reassignments");
    assert!(outcome.iter().all(|(_, r)| r.is_ok()), "{outcome:?}");
    let start = std::time::Instant::now();
    while admin
        .list_partition_reassignments()
        .await
        .expect("list")
        .keys()
        .any(|tp| tp.topic == name)
    {
        deadline_passed(start, "the moves are done");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let md = metadata_until(&mut admin, "off broker 2, in sync", |md| {
        in_sync(md, &name, 3)
            && md.replicas[&name]
                .values()
                .all(|r| r.len() == 2 && !r.contains(&2))
    })
    .await;
    for (tp, replicas) in &requests {
        assert_eq!(&md.replicas[&name][&tp.partition], replicas, "{tp}");
    }
    let view = ClusterView::new(&only(&md, &name), &BTreeMap::new()).with_registered(&registered);
    assert_eq!(drain::plan_drain(&view, 2, &[2]), DrainPlan::Drained);
    admin.delete_topic(&name).await.expect("delete");

    // three copies on three brokers: none can leave
    let wide = format!("sluice-op-wide-{}", std::process::id());
    admin
        .create_topic(&wide, 1, 3, &BTreeMap::new())
        .await
        .expect("create");
    let md = metadata_until(&mut admin, "three copies", |md| in_sync(md, &wide, 1)).await;
    let view = ClusterView::new(&only(&md, &wide), &BTreeMap::new()).with_registered(&registered);
    match drain::plan_drain(&view, 2, &[2]) {
        DrainPlan::Blocked { reason, blocking } => {
            assert_eq!(
                blocking,
                vec![TopicPartition {
                    topic: wide.clone(),
                    partition: 0
                }]
            );
            assert!(reason.contains("(replication factor 3)"), "{reason}");
            assert!(reason.contains("the 2 brokers that would stay"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    admin.delete_topic(&wide).await.expect("delete");
}

/// Broker 2 stopped (SIGTERM, Kafka's controlled shutdown): a partition with three copies is
/// under-replicated (2 left the in-sync replicas) but still led; a partition whose only copy was
/// on broker 2 is offline (leader -1). Runs last: broker 2 stays stopped.
#[tokio::test]
#[ignore = "needs a Kafka-wire broker: SLUICE_TEST_KAFKA=host:port"]
async fn zz_a_stopped_broker_leaves_partitions_under_replicated_or_offline() {
    let Some(stop_dir) = std::env::var_os("SLUICE_TEST_KAFKA_STOP") else {
        println!("skipped: SLUICE_TEST_KAFKA_STOP (the work dir of broker 2) is not set");
        return;
    };
    let Some(mut admin) = cluster_client("stopped_broker").await else {
        return;
    };
    let wide = format!("sluice-op-urp-{}", std::process::id());
    let lone = format!("sluice-op-lone-{}", std::process::id());
    admin
        .create_topic(&wide, 2, 3, &BTreeMap::new())
        .await
        .expect("create");
    admin
        .create_topic(&lone, 1, 1, &BTreeMap::new())
        .await
        .expect("create");
    let lone0 = TopicPartition {
        topic: lone.clone(),
        partition: 0,
    };
    let outcome = admin
        .alter_partition_reassignments(&[(lone0.clone(), vec![2])])
        .await
        .expect("move the one copy to broker 2");
    assert!(outcome[0].1.is_ok(), "{outcome:?}");
    metadata_until(&mut admin, "both topics in sync, the lone one on 2", |md| {
        in_sync(md, &wide, 2)
            && in_sync(md, &lone, 1)
            && md.replicas.get(&lone).and_then(|r| r.get(&0)) == Some(&vec![2])
    })
    .await;

    let stop = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/kafka/stop.sh");
    let status = std::process::Command::new(&stop)
        .arg(&stop_dir)
        .status()
        .expect("bench/kafka/stop.sh runs");
    assert!(status.success(), "stopping broker 2: {status}");

    let md = metadata_until(&mut admin, "broker 2 out of every ISR", |md| {
        md.isr
            .get(&wide)
            .is_some_and(|p| p.len() == 2 && p.values().all(|isr| !isr.contains(&2)))
            && md.topics.get(&lone).and_then(|p| p.get(&0)) == Some(&-1)
    })
    .await;
    let mut both = only(&md, &wide);
    let lone_md = only(&md, &lone);
    both.topics.extend(lone_md.topics);
    both.replicas.extend(lone_md.replicas);
    both.isr.extend(lone_md.isr);
    let health = PartitionHealth::of(&both, &BTreeMap::new());
    let names: Vec<String> = health
        .under_replicated
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        names,
        [lone0.to_string(), format!("{wide}-0"), format!("{wide}-1")]
    );
    assert_eq!(health.offline, vec![lone0]);
    assert!(
        md.topics[&wide].values().all(|l| *l >= 0 && *l != 2),
        "the three-copy partitions are led by a running broker: {:?}",
        md.topics[&wide]
    );
    println!("with broker 2 stopped: {}", health.summary());
}
