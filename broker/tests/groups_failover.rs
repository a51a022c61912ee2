//! Consumer groups outlive their coordinator: three `sluice-broker` processes
//! (`--default-replication-factor 3`, `--min-insync-replicas 2`, `fsync: always`), a librdkafka
//! group committing synchronously, and the broker coordinating the group SIGKILLed. The group
//! goes on with the leader of its `__consumer_offsets` partition on another broker: no
//! acknowledged commit goes backwards, no record is skipped, and the member is not even
//! rebalanced (no partition revoked or assigned again): the new coordinator restores the
//! group's membership from its record in `__consumer_offsets`. The killed broker then comes back
//! on an empty volume, gets the committed offsets back by replication and coordinates the
//! group again from its own copy.
//!
//! A member answered SyncGroup has its generation on the group's partition already: the
//! coordinator SIGKILLed the moment the answer arrives, the next one knows the member at that
//! generation (its heartbeat is answered, not ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID).
//!
//! The same kill under the KIP-848 protocol (`group.protocol=consumer`): the member, unknown to
//! the new coordinator (membership is in memory), rejoins there and reads on from its commits.
//!
//! The Java client's group across a coordinator kill is in `java_client.rs` (its driver lives
//! there); the single-broker group behaviour in `groups.rs`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::{
    elect_leaders_request, join_group_request, sync_group_request, ElectLeadersRequest,
    HeartbeatRequest, JoinGroupRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{Offset, TopicPartitionList};
use sluice_broker::group::{partition_for, OFFSETS_TOPIC};

const FLAGS: &[&str] = &[
    "--default-replication-factor",
    "3",
    "--min-insync-replicas",
    "2",
    "--fsync",
    "always",
];
const TOPIC: &str = "orders";
const GROUP: &str = "orders-readers";
const PARTITIONS: i32 = 3;

/// (leader, replicas, in-sync replicas) of each partition of `topic`, per Metadata.
fn layout(bootstrap: &str, topic: &str) -> Vec<(i32, Vec<i32>, Vec<i32>)> {
    let md = rd_consumer(bootstrap, &[("allow.auto.create.topics", "false")])
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut parts: Vec<_> = md
        .topics()
        .first()
        .map(|t| {
            t.partitions()
                .iter()
                .map(|p| {
                    (
                        p.id(),
                        (p.leader(), p.replicas().to_vec(), p.isr().to_vec()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    parts.sort_by_key(|(id, _)| *id);
    parts.into_iter().map(|(_, p)| p).collect()
}

/// The group's coordinator as FindCoordinator answers it through broker `via`.
fn coordinator(cluster: &ProcessCluster, via: i32) -> i32 {
    find_coordinator(cluster.broker(via).kafka_addr, GROUP)
}

/// The group's committed offsets of every partition of the topic (-1: none).
fn committed(bootstrap: &str) -> BTreeMap<i32, i64> {
    rd_committed(bootstrap, GROUP, TOPIC, PARTITIONS)
}

/// Counts the member's rebalances as librdkafka reports them.
#[derive(Default)]
struct Rebalances {
    assigned: AtomicUsize,
    revoked: AtomicUsize,
}

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(_) => self.assigned.fetch_add(1, Ordering::SeqCst),
            Rebalance::Revoke(_) => self.revoked.fetch_add(1, Ordering::SeqCst),
            Rebalance::Error(_) => 0,
        };
    }
}

/// A member of the group that reads and commits synchronously after every poll, and checks
/// as it goes that no record is skipped (a partition never jumps past the next offset it has
/// not read) and that every acknowledged commit moves forward.
struct Member {
    consumer: BaseConsumer<Rebalances>,
    /// Per partition: the offset after the highest record read.
    next: BTreeMap<i32, i64>,
    /// Every record read, first reads only.
    records: BTreeMap<(i32, i64), Consumed>,
    /// Per partition: the last commit the coordinator acknowledged.
    acked: BTreeMap<i32, i64>,
    refused_commits: usize,
}

impl Member {
    /// Joins the group; `resuming`: the committed offsets it should start from (none yet:
    /// from the beginning).
    fn join(bootstrap: &str, resuming: &BTreeMap<i32, i64>) -> Member {
        Member::join_with(
            bootstrap,
            resuming,
            &[
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "500"),
            ],
        )
    }

    /// [`Member::join`] with the KIP-848 protocol (the broker sets the session timeout and
    /// the heartbeat interval there).
    fn join_consumer_protocol(bootstrap: &str) -> Member {
        Member::join_with(
            bootstrap,
            &BTreeMap::new(),
            &[("group.protocol", "consumer")],
        )
    }

    fn join_with(bootstrap: &str, resuming: &BTreeMap<i32, i64>, extra: &[(&str, &str)]) -> Member {
        let mut config = vec![("group.id", GROUP), ("auto.offset.reset", "earliest")];
        config.extend_from_slice(extra);
        let consumer: BaseConsumer<Rebalances> = rd_consumer_config(bootstrap, &config)
            .create_with_context(Rebalances::default())
            .expect("create rdkafka consumer");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        Member {
            consumer,
            next: resuming.clone(),
            records: BTreeMap::new(),
            acked: BTreeMap::new(),
            refused_commits: 0,
        }
    }

    /// (assignments, revocations) so far.
    fn rebalances(&self) -> (usize, usize) {
        let c = self.consumer.context();
        (
            c.assigned.load(Ordering::SeqCst),
            c.revoked.load(Ordering::SeqCst),
        )
    }

    /// Reads until `want` distinct records were read and the last of them committed.
    fn read_until(&mut self, want: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut polled = false;
            while let Some(m) = self.consumer.poll(Duration::from_millis(200)) {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        eprintln!("consumer: {e}");
                        continue;
                    }
                };
                let c = to_consumed(&m);
                let next = self.next.entry(c.partition).or_insert(0);
                assert!(
                    c.offset <= *next,
                    "partition {} jumped to offset {} before reading {}: a record was skipped",
                    c.partition,
                    c.offset,
                    next
                );
                *next = (*next).max(c.offset + 1);
                self.records.entry((c.partition, c.offset)).or_insert(c);
                polled = true;
            }
            let done = self.records.len() >= want;
            if polled || done {
                self.commit();
            }
            if done && self.acked == self.next {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "read {} of {want} records within {timeout:?} (committed {:?}, read up to {:?})",
                self.records.len(),
                self.acked,
                self.next
            );
        }
    }

    /// Commits the offsets after the records read; a refusal (the coordinator moving, the
    /// member rejoining) is retried at the next call, as an at-least-once application does.
    fn commit(&mut self) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &self.next {
            tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
                .expect("offset");
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                for (p, o) in &self.next {
                    let before = self.acked.insert(*p, *o).unwrap_or(-1);
                    assert!(*o >= before, "partition {p}: commit {o} after {before}");
                }
            }
            Err(e) => {
                self.refused_commits += 1;
                eprintln!("commit refused (retried): {e}");
            }
        }
    }
}

/// Creates the topic with a copy on each of the three brokers.
fn create_topic(cluster: &ProcessCluster) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let admin = rd_admin(&cluster.bootstrap());
    for r in rt
        .block_on(admin.create_topics(
            &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))],
            &admin_opts(),
        ))
        .expect("create_topics")
    {
        r.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
    }
}

/// Asserts every acknowledged commit is still there (or superseded by a later one).
fn assert_not_behind(now: &BTreeMap<i32, i64>, acked: &BTreeMap<i32, i64>, when: &str) {
    for (p, o) in acked {
        let got = now.get(p).copied().unwrap_or(-1);
        assert!(
            got >= *o,
            "{when}: partition {p} committed at {got}, but {o} was acknowledged"
        );
    }
}

#[test]
fn a_group_continues_on_a_new_coordinator_and_a_wiped_broker_gets_its_offsets_back() {
    let mut cluster = ProcessCluster::start(3, 4, FLAGS);
    create_topic(&cluster);
    rd_produce_all(
        &cluster.bootstrap(),
        TOPIC,
        None,
        0..300,
        &[("acks", "all")],
    );

    let mut member = Member::join(&cluster.bootstrap(), &BTreeMap::new());
    member.read_until(150, Duration::from_secs(60));
    let old = coordinator(&cluster, 0);
    // The coordinator is the leader of the group's partition of the internal topic, which
    // has a copy on every broker.
    let offsets = layout(&cluster.bootstrap(), OFFSETS_TOPIC);
    let p = partition_for(GROUP, offsets.len() as i32) as usize;
    assert_eq!(offsets[p].0, old, "{OFFSETS_TOPIC}-{p}: {:?}", offsets[p]);
    assert_eq!(
        offsets[p].1.len(),
        3,
        "{OFFSETS_TOPIC}-{p}: {:?}",
        offsets[p]
    );
    let acked_before = member.acked.clone();
    let rebalances_before = member.rebalances();
    assert_eq!(
        rebalances_before,
        (1, 0),
        "one assignment when the member joined"
    );

    cluster.kill9(old);
    let survivors = cluster.bootstrap();
    let killed_at = Instant::now();
    // The producers go on with the survivors (two in-sync copies: acks=all still succeeds).
    rd_produce_all(&survivors, TOPIC, None, 300..600, &[("acks", "all")]);
    member.read_until(600, Duration::from_secs(120));
    let survivor = cluster.running()[0];
    let new = coordinator(&cluster, survivor);
    eprintln!(
        "coordinator {old} killed; broker {new} coordinates, the group read everything {:?} \
         after the kill ({} commits refused meanwhile)",
        killed_at.elapsed(),
        member.refused_commits
    );
    assert_ne!(new, old);
    assert_eq!(
        member.rebalances(),
        rebalances_before,
        "(assignments, revocations): the group was not rebalanced by the failover"
    );
    assert_eq!(
        member.refused_commits, 0,
        "no commit of the generation refused"
    );
    let after = committed(&survivors);
    assert_not_behind(&after, &acked_before, "after the failover");
    assert_eq!(after, member.acked, "the last commits, as acknowledged");
    let got: Vec<Consumed> = member.records.values().cloned().collect();
    assert_records_exact(&got, 0..600);
    let final_offsets = member.acked.clone();
    assert_eq!(final_offsets.values().sum::<i64>(), 600);
    drop(member);

    // The killed broker returns on an empty volume: it refills its copies from the leaders.
    std::fs::remove_dir_all(cluster.data_dir(old)).expect("wipe the data directory");
    cluster.spawn(old);
    wait_for(
        "the wiped broker back in sync on the group's offsets partition",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            let parts = layout(&survivors, OFFSETS_TOPIC);
            parts[p].2.contains(&old).then_some(())
        },
    );
    // It is that partition's first replica: a preferred election makes it the coordinator
    // again, serving the offsets from its own, replicated, copy.
    assert_eq!(layout(&survivors, OFFSETS_TOPIC)[p].1[0], old);
    wait_for(
        "the wiped broker to lead the offsets partition again",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let mut c = RawClient::connect(cluster.broker(survivor).kafka_addr);
            c.send(
                &ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                    elect_leaders_request::TopicPartitions::default()
                        .with_topic(TopicName(StrBytes::from_static_str(OFFSETS_TOPIC)))
                        .with_partitions(vec![p as i32]),
                ])),
                1,
            );
            (coordinator(&cluster, survivor) == old).then_some(())
        },
    );
    let bootstrap = cluster.bootstrap();
    assert_eq!(
        committed(&bootstrap),
        final_offsets,
        "offsets served by the broker whose volume was wiped"
    );

    // And the group continues there from exactly where it committed.
    rd_produce_all(&bootstrap, TOPIC, None, 600..630, &[("acks", "all")]);
    let mut member = Member::join(&bootstrap, &final_offsets);
    member.read_until(30, Duration::from_secs(60));
    let got: Vec<Consumed> = member.records.values().cloned().collect();
    assert_records_exact(&got, 600..630);
    assert_eq!(coordinator(&cluster, 0), old);

    // A rolling restart's step: the coordinator stopped with SIGTERM (it hands its
    // leaderships over) and started again. The member is not rebalanced either.
    let rebalances = member.rebalances();
    cluster.terminate(old);
    let survivors = cluster.bootstrap();
    rd_produce_all(&survivors, TOPIC, None, 630..660, &[("acks", "all")]);
    member.read_until(60, Duration::from_secs(60));
    let moved_to = coordinator(&cluster, cluster.running()[0]);
    assert_ne!(moved_to, old);
    cluster.spawn(old);
    rd_produce_all(
        &cluster.bootstrap(),
        TOPIC,
        None,
        660..690,
        &[("acks", "all")],
    );
    member.read_until(90, Duration::from_secs(60));
    let got: Vec<Consumed> = member.records.values().cloned().collect();
    assert_records_exact(&got, 600..690);
    assert_eq!(
        member.rebalances(),
        rebalances,
        "(assignments, revocations): not rebalanced by the coordinator's restart"
    );
}

#[test]
fn a_consumer_protocol_group_rejoins_on_a_new_coordinator_without_skipping_a_record() {
    let mut flags = FLAGS.to_vec();
    flags.extend([
        "--group-consumer-heartbeat-interval-ms",
        "500",
        "--group-consumer-session-timeout-ms",
        "10000",
    ]);
    // Its own cluster addresses (127.0.6.x): the other test of this file runs beside it.
    let mut cluster = ProcessCluster::start(3, 6, &flags);
    create_topic(&cluster);
    rd_produce_all(
        &cluster.bootstrap(),
        TOPIC,
        None,
        0..200,
        &[("acks", "all")],
    );
    let mut member = Member::join_consumer_protocol(&cluster.bootstrap());
    member.read_until(100, Duration::from_secs(60));
    let old = coordinator(&cluster, 0);
    let acked_before = member.acked.clone();
    assert!(
        !acked_before.is_empty(),
        "commits were acknowledged before the kill"
    );

    cluster.kill9(old);
    let survivors = cluster.bootstrap();
    rd_produce_all(&survivors, TOPIC, None, 200..400, &[("acks", "all")]);
    member.read_until(400, Duration::from_secs(120));
    let survivor = cluster.running()[0];
    let new = coordinator(&cluster, survivor);
    assert_ne!(new, old);
    let after = committed(&survivors);
    assert_not_behind(&after, &acked_before, "after the failover");
    assert_eq!(after, member.acked, "the last commits, as acknowledged");
    let got: Vec<Consumed> = member.records.values().cloned().collect();
    assert_records_exact(&got, 0..400);
    // The new coordinator knows the member as a consumer-protocol group.
    let listed = kafka_tool(
        "org.apache.kafka.tools.GroupsCommand",
        &["--bootstrap-server", &survivors, "--list"],
    );
    let line = listed
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(GROUP))
        .unwrap_or_else(|| panic!("{GROUP} not listed:\n{}", listed.stdout));
    assert!(
        line.split_whitespace().nth(1) == Some("Consumer"),
        "listed as a consumer group: {line}"
    );
}

/// JoinGroup v5 of one dynamic member (`member`: empty on the first join) of `group`:
/// (error, generation, member id, leader id).
fn raw_join(c: &mut RawClient, group: &str, member: &str) -> (i16, i32, String, String) {
    let req = JoinGroupRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(StrBytes::from_string(
            group.to_string(),
        )))
        .with_session_timeout_ms(60_000)
        .with_rebalance_timeout_ms(60_000)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(bytes::Bytes::from_static(b"subscription"))]);
    let r = c.send(&req, 5);
    (
        r.error_code,
        r.generation_id,
        r.member_id.to_string(),
        r.leader.to_string(),
    )
}

#[test]
fn a_member_answered_sync_group_is_known_to_the_next_coordinator() {
    const GROUP: &str = "synced-then-killed";
    let mut cluster = ProcessCluster::start(3, 7, FLAGS);
    let coord = find_coordinator(cluster.broker(0).kafka_addr, GROUP);
    // `__consumer_offsets` at three copies, all in sync, before the member joins.
    wait_for(
        "the group's offsets partition in sync on three brokers",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let parts = layout(&cluster.bootstrap(), OFFSETS_TOPIC);
            let partition = partition_for(GROUP, parts.len() as i32) as usize;
            let (leader, _, isr) = parts.get(partition)?.clone();
            (leader == coord && isr.len() == 3).then_some(())
        },
    );
    let mut c = RawClient::connect(cluster.broker(coord).kafka_addr);
    let (code, _, member, _) = raw_join(&mut c, GROUP, "");
    assert_eq!(
        code, 79,
        "the first JoinGroup v5 asks for a member id (MEMBER_ID_REQUIRED)"
    );
    let (code, generation, member2, leader) = raw_join(&mut c, GROUP, &member);
    assert_eq!(code, 0, "JoinGroup with the member id");
    assert_eq!(
        (member2.as_str(), leader.as_str()),
        (member.as_str(), member.as_str())
    );
    let sync = SyncGroupRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(
            StrBytes::from_static_str(GROUP),
        ))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member.clone()))
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_assignment(bytes::Bytes::from_static(b"assignment")),
        ]);
    let r = c.send(&sync, 3);
    assert_eq!(r.error_code, 0, "SyncGroup");
    assert_eq!(&r.assignment[..], b"assignment");
    cluster.kill9(coord);

    let survivor = cluster.running()[0];
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(kafka_protocol::messages::GroupId(
            StrBytes::from_static_str(GROUP),
        ))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(member.clone()));
    let answered = wait_for(
        "a heartbeat answered by the group's next coordinator",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let next = find_coordinator(cluster.broker(survivor).kafka_addr, GROUP);
            if next == coord {
                return None;
            }
            let mut c =
                RawClient::try_connect(cluster.broker(next).kafka_addr, Duration::from_secs(10))
                    .ok()?;
            let code = c.try_send(&heartbeat, 3).ok()?.error_code;
            // NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE: not yet.
            (![16, 14, 15].contains(&code)).then_some((next, code))
        },
    );
    assert_eq!(
        answered.1, 0,
        "broker {} answered the heartbeat of {member} at generation {generation} with error {} \
         (22: ILLEGAL_GENERATION, 25: UNKNOWN_MEMBER_ID, 27: REBALANCE_IN_PROGRESS)",
        answered.0, answered.1
    );
}
