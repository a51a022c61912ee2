//! Consumer groups: two librdkafka members split the partitions, rebalance when one leaves,
//! commit offsets, and a new member resumes from the commits after a broker restart; the same
//! resume check with kafka-python's group implementation. Each stable generation's membership
//! record in `__consumer_offsets` is read back with Kafka 4.2's own formatter.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const LONG: Duration = Duration::from_secs(60);

fn member(bootstrap: &str, group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Long enough that a prompt rebalance after a member leaves proves LeaveGroup works
        // (rather than session expiry).
        .set("session.timeout.ms", "30000")
        .set("heartbeat.interval.ms", "500")
        .set("check.crcs", "true")
        .set("broker.address.family", "v4")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("create group member");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// The membership records of `group` in its partition of `__consumer_offsets`, oldest first,
/// as Kafka 4.2's console consumer prints them with its `GroupMetadataMessageFormatter`
/// (read by partition, so the tool joins no group).
fn membership_records(bs: &str, group: &str) -> Vec<serde_json::Value> {
    let partitions = rd_partition_count(bs, "__consumer_offsets").expect("__consumer_offsets");
    let partitions = i32::try_from(partitions).expect("partition count");
    let p = sluice_broker::group::partition_for(group, partitions).to_string();
    let out = kafka_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            bs,
            "--topic",
            "__consumer_offsets",
            "--partition",
            &p,
            "--offset",
            "earliest",
            "--timeout-ms",
            "2000",
            "--formatter",
            "org.apache.kafka.tools.consumer.GroupMetadataMessageFormatter",
        ],
    );
    // The formatter writes one JSON object per record, without separators; the tool's own log
    // line about its timeout follows them on stdout.
    serde_json::Deserializer::from_str(&out.stdout)
        .into_iter::<serde_json::Value>()
        .map_while(Result::ok)
        .filter(|v| v["key"]["data"]["group"] == group)
        .collect()
}

/// Waits until the last membership record of `group` lists `members` members; returns it.
fn membership_with(bs: &str, group: &str, members: usize) -> serde_json::Value {
    wait_for(
        &format!("a membership record of {group} with {members} members"),
        LONG,
        Duration::from_millis(500),
        || {
            membership_records(bs, group)
                .pop()
                .filter(|r| r["value"]["data"]["members"].as_array().map(Vec::len) == Some(members))
        },
    )
}

fn assigned(c: &BaseConsumer) -> Vec<i32> {
    let mut v: Vec<i32> = c
        .assignment()
        .map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Polls each member once (short), collecting records per member.
fn poll_all(members: &[&BaseConsumer], got: &mut [Vec<Consumed>]) {
    for (i, c) in members.iter().enumerate() {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => got[i].push(to_consumed(&m)),
            Some(Err(e)) => panic!("group member {i}: {e}"),
            None => {}
        }
    }
}

/// Keeps polling for `extra` after the expected records arrived, to catch redeliveries.
fn drain_extra(members: &[&BaseConsumer], got: &mut [Vec<Consumed>], extra: Duration) {
    let end = Instant::now() + extra;
    while Instant::now() < end {
        poll_all(members, got);
    }
}

/// Polls `members` (collecting what each reads into `got`) until `done` holds.
fn poll_until(
    what: &str,
    timeout: Duration,
    members: &[&BaseConsumer],
    got: &mut [Vec<Consumed>],
    done: impl Fn(&[Vec<Consumed>]) -> bool,
) {
    wait_for(what, timeout, Duration::from_millis(1), || {
        poll_all(members, got);
        done(got).then_some(())
    });
}

fn committed(c: &BaseConsumer, topic: &str, partitions: &[i32]) -> BTreeMap<i32, Offset> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .expect("fetch committed offsets")
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect()
}

#[test]
fn rdkafka_group_of_two_rebalances_on_leave_and_resumes_from_commits_after_restart() {
    let data = tempfile::tempdir().expect("data dir");
    let mut broker = TestBroker::start_in(data.path(), &["--default-partitions", "2"]);
    let bs = broker.bootstrap();
    let topic = topic_name("group-rd");
    let group = topic_name("g");
    rd_produce_all(&bs, &topic, Some(0), 1000..1001, &[]); // creates the topic (2 partitions)
    assert_eq!(rd_partition_count(&bs, &topic), Some(2));

    let a = member(&bs, &group, &topic);
    let b = member(&bs, &group, &topic);
    let mut got = vec![Vec::new(), Vec::new()];
    poll_until(
        "both members to be assigned one partition each",
        LONG,
        &[&a, &b],
        &mut got,
        |_| {
            let (pa, pb) = (assigned(&a), assigned(&b));
            pa.len() == 1 && pb.len() == 1 && pa != pb
        },
    );
    let (pa, pb) = (assigned(&a)[0], assigned(&b)[0]);
    // The stable generation is in __consumer_offsets, in Kafka's format: both members, each
    // with its client id, subscription and assignment.
    let two = membership_with(&bs, &group, 2);
    let data = &two["value"]["data"];
    assert_eq!(data["protocolType"], "consumer", "{two}");
    assert_eq!(data["protocol"], "range", "{two}");
    let generation = data["generation"].as_i64().expect("generation");
    for m in data["members"].as_array().expect("members") {
        assert_eq!(m["clientId"], "rdkafka", "{m}");
        assert!(
            m["sessionTimeout"] == 30000 && m["rebalanceTimeout"] == 300000,
            "{m}"
        );
        assert!(
            !m["assignment"].as_str().unwrap_or_default().is_empty(),
            "{m}"
        );
    }

    rd_produce_all(&bs, &topic, Some(0), 0..20, &[]);
    rd_produce_all(&bs, &topic, Some(1), 20..40, &[]);
    poll_until(
        "the two members to read the 41 records",
        LONG,
        &[&a, &b],
        &mut got,
        |got| got[0].len() + got[1].len() >= 41,
    );
    drain_extra(&[&a, &b], &mut got, Duration::from_secs(1));
    assert!(
        got[0].iter().all(|c| c.partition == pa),
        "member A read outside p{pa}"
    );
    assert!(
        got[1].iter().all(|c| c.partition == pb),
        "member B read outside p{pb}"
    );
    let all: Vec<Consumed> = got
        .concat()
        .into_iter()
        .filter(|c| c.index() != 1000)
        .collect();
    assert_records_exact(&all, 0..40);
    a.commit_consumer_state(CommitMode::Sync)
        .expect("A commits");
    b.commit_consumer_state(CommitMode::Sync)
        .expect("B commits");
    assert_eq!(
        committed(&a, &topic, &[0, 1]),
        BTreeMap::from([(0, Offset::Offset(21)), (1, Offset::Offset(20))]),
        "committed offsets of p0 and p1"
    );

    // B leaves: A must get both partitions well before the 30 s session timeout.
    let left = Instant::now();
    drop(b);
    let mut got = vec![Vec::new()];
    poll_until(
        "member A to be assigned both partitions after B left",
        Duration::from_secs(25),
        &[&a],
        &mut got,
        |_| assigned(&a) == vec![0, 1],
    );
    eprintln!("rebalance after LeaveGroup took {:?}", left.elapsed());
    let one = membership_with(&bs, &group, 1);
    assert!(
        one["value"]["data"]["generation"].as_i64() > Some(generation),
        "a later generation: {one}"
    );

    // A reads only what is new on both partitions: on B's old one it resumes from B's commit.
    rd_produce_all(&bs, &topic, Some(0), 40..50, &[]);
    rd_produce_all(&bs, &topic, Some(1), 50..60, &[]);
    poll_until("A to read 20 new records", LONG, &[&a], &mut got, |got| {
        got[0].len() >= 20
    });
    drain_extra(&[&a], &mut got, Duration::from_secs(1));
    assert_records_exact(&got[0], 40..60);
    a.commit_consumer_state(CommitMode::Sync)
        .expect("A commits");
    drop(a);

    // Restart the broker: the commits survive and a new member resumes from them.
    broker.restart();
    let bs = broker.bootstrap();
    rd_produce_all(&bs, &topic, Some(0), 60..65, &[]);
    rd_produce_all(&bs, &topic, Some(1), 65..70, &[]);
    let c = member(&bs, &group, &topic);
    assert_eq!(
        committed(&c, &topic, &[0, 1]),
        BTreeMap::from([(0, Offset::Offset(31)), (1, Offset::Offset(30))]),
        "commits of p0 and p1 after the restart"
    );
    let mut got = vec![Vec::new()];
    poll_until(
        "the new member to read the 10 records produced after the restart",
        LONG,
        &[&c],
        &mut got,
        |got| got[0].len() >= 10,
    );
    drain_extra(&[&c], &mut got, Duration::from_secs(1));
    assert_records_exact(&got[0], 60..70);
}

#[test]
fn kafka_python_group_resumes_from_committed_offsets_after_restart() {
    let data = tempfile::tempdir().expect("data dir");
    let mut broker = TestBroker::start_in(data.path(), &["--default-partitions", "2"]);
    let topic = topic_name("group-kp");
    let group = topic_name("gkp");
    rd_produce_all(&broker.bootstrap(), &topic, None, 0..50, &[]);

    let consume =
        |bs: &str, count: u64| kp_group_consume(bs, &topic, &group, count, &["--linger", "2"]);
    let first = consume(&broker.bootstrap(), 50);
    assert_records_exact(&parse_consumed_lines(&first.stdout), 0..50);

    broker.restart();
    rd_produce_all(&broker.bootstrap(), &topic, None, 50..80, &[]);
    let second = consume(&broker.bootstrap(), 30);
    assert_records_exact(&parse_consumed_lines(&second.stdout), 50..80);
}

#[test]
fn a_member_killed_without_leaving_is_expired_after_its_session_timeout() {
    let broker = TestBroker::start(&["--default-partitions", "2"]);
    let bs = broker.bootstrap();
    let topic = topic_name("group-expiry");
    let group = topic_name("gexp");
    rd_produce_all(&bs, &topic, Some(0), 0..1, &[]); // creates the topic (2 partitions)

    // A kafka-python member with a 6 s session joins first, then is SIGKILLed (no LeaveGroup).
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("member.out");
    let mut py = std::process::Command::new(python())
        .arg(python_script("kafka_python_client.py"))
        .args([
            "group-consume",
            "--bootstrap",
            &bs,
            "--topic",
            &topic,
            "--group",
            &group,
        ])
        .args([
            "--count",
            "1000000",
            "--timeout",
            "120",
            "--session-timeout-ms",
            "6000",
        ])
        .stdout(std::fs::File::create(&out).expect("member stdout"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn kafka-python member");
    let mut killer = scopeguard(&mut py);
    wait_for(
        "the kafka-python member to be assigned",
        LONG,
        Duration::from_millis(50),
        || {
            std::fs::read_to_string(&out)
                .ok()?
                .contains("assigned ")
                .then_some(())
        },
    );
    let a = member(&bs, &group, &topic);
    let mut got = vec![Vec::new()];
    poll_until(
        "the rdkafka member to share the partitions with the kafka-python one",
        LONG,
        &[&a],
        &mut got,
        |_| assigned(&a).len() == 1,
    );
    killer.kill();
    let killed = Instant::now();
    poll_until(
        "the rdkafka member to get both partitions once the dead member's session expired",
        Duration::from_secs(40),
        &[&a],
        &mut got,
        |_| assigned(&a) == vec![0, 1],
    );
    eprintln!(
        "dead member expired and partitions reassigned after {:?}",
        killed.elapsed()
    );
}

/// Kills the child when dropped (or when asked), so a failing test leaves no process behind.
struct Killer<'a>(&'a mut std::process::Child);

fn scopeguard(c: &mut std::process::Child) -> Killer<'_> {
    Killer(c)
}

impl Killer<'_> {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killer<'_> {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A broker upgraded from the version that kept committed offsets in its own file
/// (`groups/offsets.log`) hands them to the groups' coordinators in `__consumer_offsets` once,
/// then keeps the file as `offsets.log.imported`: the group resumes where it committed.
#[test]
fn offsets_of_the_pre_replication_offsets_file_are_imported_once() {
    use sluice_broker::group::legacy::{OffsetRecord, OffsetStore};
    use sluice_broker::group::offsets::StoredOffset;
    let mut broker = TestBroker::start(&[]);
    let topic = topic_name("legacy");
    let group = format!("{topic}-g");
    rd_produce_all(
        &broker.bootstrap(),
        &topic,
        Some(0),
        0..10,
        &[("acks", "all")],
    );
    broker.stop();
    // What the earlier version left: offset 4 committed for partition 0, plus a commit of a
    // topic deleted since (it is imported, then dropped like any deleted topic's offsets).
    let dir = broker.data_dir().join("groups");
    {
        let store = OffsetStore::open(&dir).expect("legacy store");
        let commit = |topic: &str, offset: i64| OffsetRecord::Commit {
            group: group.clone(),
            topic: topic.to_string(),
            partition: 0,
            value: StoredOffset {
                offset,
                leader_epoch: -1,
                metadata: "before the upgrade".into(),
                commit_timestamp_ms: 1_700_000_000_000,
            },
        };
        store
            .append(vec![commit(&topic, 4), commit("long-gone", 9)])
            .expect("legacy commit");
    }
    broker.start_again();
    wait_for(
        "the legacy offsets file imported and renamed",
        LONG,
        Duration::from_millis(100),
        || dir.join("offsets.log.imported").exists().then_some(()),
    );
    assert!(!dir.join("offsets.log").exists());
    let committed = |b: &TestBroker| rd_committed(&b.bootstrap(), &group, &topic, 1);
    assert_eq!(committed(&broker), BTreeMap::from([(0, 4)]));
    // A member resumes there.
    let c = member(&broker.bootstrap(), &group, &topic);
    let got = rd_poll_n(&c, 6, LONG);
    assert_records_exact(&got, 4..10);
    drop(c);
    // Served from __consumer_offsets from now on; the file is not read again.
    broker.restart();
    assert_eq!(committed(&broker), BTreeMap::from([(0, 4)]));
    // The deleted topic's offset is dropped (tombstones written in the background once the
    // import is durable; a restarted coordinator drops any left when it loads).
    wait_for(
        "the deleted topic's imported offset dropped",
        LONG,
        Duration::from_millis(100),
        || {
            let offsets = broker.ctx().groups.committed_offsets();
            (!offsets.is_empty() && offsets.iter().all(|o| o.topic != "long-gone")).then_some(())
        },
    );
}
