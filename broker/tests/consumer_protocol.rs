//! The KIP-848 consumer group protocol (`group.protocol=consumer`: ConsumerGroupHeartbeat with
//! the assignment computed by the broker, ConsumerGroupDescribe, OffsetCommit and OffsetFetch
//! with member epochs) with three client implementations of their own: the Java client
//! (kafka-clients 4.4, `java/SluiceJavaClient.java`), librdkafka 2.12 (the rdkafka crate, in
//! this process) and franz-go 1.22 (`kgo.ServerSideBalancer`, `go/main.go`); and Kafka 4.2's
//! `kafka-consumer-groups.sh` and `kafka-groups.sh` showing such a group.
//!
//! What each client shows: one member reads every record of a multi-partition topic once and
//! commits, and the group's next member resumes from the commits; members split the partitions
//! between them (disjoint, all covered), and the partitions of a member that joins or leaves
//! while records keep coming change hands, every record read exactly once (each member commits
//! what it read before it polls again, so nothing it gave up is read twice). The Java client
//! also: a member SIGKILLed is removed once its session times out and the survivor takes its
//! partitions; one frozen (SIGSTOP) past its session timeout rejoins when thawed; a static
//! member (`group.instance.id`) that restarts gets its own partitions back; the AdminClient
//! changes and deletes the group only once it is empty. librdkafka also: a regular-expression
//! subscription resolved by the broker, and partitions added to a topic. The three clients also
//! share one group, which the tools describe (offsets, lag, members, assignments, epochs, state),
//! list by type, and reset once it is empty. A running group moves between the classic and the
//! consumer protocol as its Java or librdkafka members are rolled over, and back (Kafka 4.x's
//! online migration).
//!
//! `SLUICE_TEST_BOOTSTRAP=host:port` runs the same tests against another broker, to check the
//! tests themselves against Apache Kafka (4.2, started by `bench/kafka/start-cluster.sh DIR 1`
//! with `group.consumer.session.timeout.ms` of 10 s, which the SIGKILL and SIGSTOP tests give
//! Sluice with `--group-consumer-session-timeout-ms`) (about 90 s).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

/// How long a test waits for a group to settle after a member joins or leaves, which takes
/// about two heartbeat intervals (5 s by default, Kafka's and Sluice's): one for the member
/// giving partitions up, one for the member taking them (plus a new member's start).
const SETTLE: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// The broker under test

/// A Sluice broker in this process, or the broker at `SLUICE_TEST_BOOTSTRAP`.
struct Target {
    _broker: Option<TestBroker>,
    bootstrap: String,
}

impl Target {
    /// The broker under test; a Sluice broker is started with the flags `sluice_flags`.
    fn start(sluice_flags: &[&str]) -> Target {
        if let Ok(bootstrap) = std::env::var("SLUICE_TEST_BOOTSTRAP") {
            return Target {
                _broker: None,
                bootstrap,
            };
        }
        let broker = TestBroker::start(sluice_flags);
        Target {
            bootstrap: broker.bootstrap(),
            _broker: Some(broker),
        }
    }
}

/// A topic of `partitions` partitions (one copy each), created with librdkafka's admin API.
fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let created = broker_runtime()
        .block_on(rd_admin(bootstrap).create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &admin_opts(),
        ))
        .expect("create_topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Per partition, the offset after the last record acknowledged: where a group that read
/// everything has committed.
fn ends(acked: &[(u64, i32, i64)]) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for (_, p, o) in acked {
        let e = ends.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    ends
}

/// The partitions that `got` came from.
fn partitions_of(got: &[Consumed]) -> BTreeSet<i32> {
    got.iter().map(|c| c.partition).collect()
}

/// Whether `owned` (one set per member) are non-empty, disjoint and together `0..partitions`.
fn is_split(owned: &[BTreeSet<i32>], partitions: i32) -> bool {
    let total: usize = owned.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = owned.iter().flatten().copied().collect();
    owned.iter().all(|o| !o.is_empty())
        && total == union.len()
        && union == (0..partitions).collect()
}

/// Whether `got` holds every record of `want` (by index).
fn has_all(got: &[Consumed], want: std::ops::Range<u64>) -> bool {
    let seen: BTreeSet<u64> = got.iter().map(Consumed::index).collect();
    want.into_iter().all(|i| seen.contains(&i))
}

// ---------------------------------------------------------------------------------------------
// Members that are processes of their own (the Java and Go drivers)

/// A group member running alongside the test as a process of its own: its output goes to a
/// file the test reads as it comes; it stops (commits, prints its committed offsets, leaves the
/// group) once its stop file exists, or is SIGKILLed. Killed when dropped.
struct Member {
    name: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Member {
    /// Spawns `cmd` (a driver's `consume` command) with `--stop-file` added.
    fn spawn(name: &str, mut cmd: Command) -> Member {
        let dir = tempfile::tempdir().expect("member dir");
        let file = |n: &str| std::fs::File::create(dir.path().join(n)).expect("member output");
        let child = cmd
            .arg("--stop-file")
            .arg(dir.path().join("stop"))
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn member {name}: {e}"));
        Member {
            name: name.to_string(),
            child,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Its output so far, complete lines only.
    fn output(&self) -> Finished {
        let read = |n: &str| std::fs::read_to_string(self.path(n)).unwrap_or_default();
        let mut stdout = read("stdout");
        stdout.truncate(stdout.rfind('\n').map_or(0, |n| n + 1));
        Finished {
            stdout,
            stderr: read("stderr"),
        }
    }

    /// Panics with its output when it has exited: a member still running is asked for.
    fn check_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait on member") {
            let out = self.output();
            panic!(
                "member {} exited with {status}\nstdout:\n{}\nstderr:\n{}",
                self.name, out.stdout, out.stderr
            );
        }
    }

    /// The records it printed so far.
    fn records(&self) -> Vec<Consumed> {
        parse_consumed_lines(&self.output().stdout)
    }

    /// The partitions it owns per its last `#owns` line; empty before the first.
    fn owns(&self) -> BTreeSet<i32> {
        let out = self.output();
        tagged(&out, "owns")
            .last()
            .map(|l| owned_partitions(l))
            .unwrap_or_default()
    }

    /// Its member id, per its `#owns` lines.
    fn member_id(&self) -> String {
        let out = self.output();
        let line = tagged(&out, "owns")
            .last()
            .copied()
            .unwrap_or_else(|| panic!("member {} printed no #owns line", self.name));
        line.split(' ').nth(1).expect("member id").to_string()
    }

    /// Creates its stop file and waits for it to exit 0; its whole output.
    fn stop(mut self) -> Finished {
        self.check_running();
        std::fs::write(self.path("stop"), b"").expect("create stop file");
        let child = &mut self.child;
        let status = wait_for(
            &format!("member {} to stop", self.name),
            Duration::from_secs(30),
            Duration::from_millis(50),
            || child.try_wait().expect("try_wait on member"),
        );
        let out = self.output();
        assert!(
            status.success(),
            "member {} exited with {status}\nstdout:\n{}\nstderr:\n{}",
            self.name,
            out.stdout,
            out.stderr
        );
        out
    }

    /// Sends `signal` (a `kill -<signal>` name: `STOP`, `CONT`).
    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{signal} {pid} failed");
    }

    /// SIGKILL (no leave, no last commit), then reap.
    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the member");
        self.child.wait().expect("reap the member");
    }
}

impl Drop for Member {
    /// A failing test shows what the member said besides its records (its assignments, its
    /// errors): its files go with it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let out = self.output();
            let records = self.records();
            let said: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with('#')).collect();
            let stderr: Vec<&str> = out.stderr.lines().collect();
            eprintln!(
                "==== member {}: {} records from partitions {:?}\n{}\n---- stderr (last 40 lines)\n{}",
                self.name,
                records.len(),
                partitions_of(&records),
                said.join("\n"),
                stderr[stderr.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// The partitions of an `#owns <p,p,...|-> <member id>` line (without its tag).
fn owned_partitions(line: &str) -> BTreeSet<i32> {
    let list = line.split(' ').next().unwrap_or("-");
    list.split(',')
        .filter(|p| *p != "-")
        .map(|p| p.parse().expect("partition in an #owns line"))
        .collect()
}

/// Waits until `members` split the `partitions` between them; returns what each owns.
fn wait_split(members: &mut [Member], partitions: i32) -> Vec<BTreeSet<i32>> {
    wait_for(
        &format!("{} members to split {partitions} partitions", members.len()),
        SETTLE,
        Duration::from_millis(200),
        || {
            members.iter_mut().for_each(Member::check_running);
            let owned: Vec<BTreeSet<i32>> = members.iter().map(Member::owns).collect();
            is_split(&owned, partitions).then_some(owned)
        },
    )
}

/// Waits until `members` have read (printed) every record of `want` between them, counting
/// those in `earlier` (read by members gone since) as read.
fn wait_read(members: &mut [Member], earlier: &[Consumed], want: std::ops::Range<u64>) {
    wait_for(
        &format!("the members to read records {want:?}"),
        SETTLE,
        Duration::from_millis(200),
        || {
            members.iter_mut().for_each(Member::check_running);
            let mut got: Vec<Consumed> = members.iter().flat_map(Member::records).collect();
            got.extend_from_slice(earlier);
            has_all(&got, want.clone()).then_some(())
        },
    )
}

/// A Java member of `group` (group.protocol=consumer) reading `topic`. A commit that races a
/// heartbeat bumping the member's epoch is refused (STALE_MEMBER_EPOCH, which Kafka before 4.3
/// answers too: KIP-1251) and the Java client gives up on it (CommitFailedException), so the
/// member commits those offsets again with its next commit, or before it gives their
/// partitions up (`--retry-commits`): exactly once still.
fn java_member(bootstrap: &str, topic: &str, group: &str) -> Command {
    JavaDriver::at(bootstrap).consuming(
        topic,
        group,
        1_000_000_000,
        &[
            "--timeout-ms",
            "100000",
            "--retry-commits",
            "true",
            "--prop",
            "group.protocol=consumer",
        ],
        java_cmd,
    )
}

/// A franz-go member of `group` (kgo.ServerSideBalancer) reading `topic`.
fn go_member(bootstrap: &str, topic: &str, group: &str) -> Command {
    let mut cmd = Command::new(go_client());
    cmd.args(["consume", "--brokers", bootstrap, "--topic", topic])
        .args(["--group", group, "--count", "1000000000"])
        .args(["--timeout-ms", "100000", "--server-side"]);
    cmd
}

/// Runs a driver's `consume` command to its end (its `--count` records); its output.
fn run_member(cmd: Command, what: &str) -> Finished {
    run_bounded(cmd, what, Duration::from_secs(60))
}

/// Sends records `range` to `topic` a few at a time over about `over`, so that they keep
/// coming while the group changes; returns the acknowledgements.
fn produce_paced(
    bootstrap: &str,
    topic: &str,
    range: std::ops::Range<u64>,
    over: Duration,
) -> Vec<(u64, i32, i64)> {
    let p = rd_producer(bootstrap, &[("acks", "all")]);
    let steps = 20;
    let per = (range.end - range.start).div_ceil(steps);
    for i in range.clone() {
        rd_send(&p, topic, None, i);
        if (i - range.start) % per == per - 1 {
            p.poll(Duration::ZERO);
            std::thread::sleep(over / steps as u32);
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush producer");
    let failed = p.context().failed.lock().expect("lock").clone();
    assert!(failed.is_empty(), "deliveries failed: {failed:?}");
    let acked = p.context().acked.lock().expect("lock").clone();
    assert_eq!(
        acked.len() as u64,
        range.end - range.start,
        "delivery reports"
    );
    acked
}

// ---------------------------------------------------------------------------------------------
// librdkafka members (in this process)

/// A librdkafka member of `group` with group.protocol=consumer, subscribed to `topic`. (The
/// classic protocol's settings — session.timeout.ms, heartbeat.interval.ms,
/// partition.assignment.strategy — are the broker's business here; librdkafka refuses them.)
fn rd_member(bootstrap: &str, group: &str, topic: &str, client_id: &str) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .set("broker.address.family", "v4")
        .set("fetch.wait.max.ms", "100");
    rd_debug(&mut cfg);
    let c: BaseConsumer = cfg.create().expect("create librdkafka member");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// The partitions `c` owns.
fn rd_owns(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Polls `c` (up to 100 ms for the first record, then what is ready) and commits synchronously
/// exactly the offsets after the records it got, before it polls again: a revocation, which
/// librdkafka carries out inside a poll, finds everything read committed.
fn rd_poll_commit(c: &BaseConsumer, who: &str, got: &mut Vec<Consumed>) {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut wait = Duration::from_millis(100);
    while let Some(r) = c.poll(wait) {
        let m = r.unwrap_or_else(|e| panic!("{who}: consumer error: {e}"));
        next.insert((m.topic().to_string(), m.partition()), m.offset() + 1);
        got.push(to_consumed(&m));
        wait = Duration::ZERO;
    }
    if next.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, p), o) in &next {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .expect("add partition offset");
    }
    c.commit(&tpl, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("{who}: commit of {tpl:?}: {e}"));
}

// ---------------------------------------------------------------------------------------------
// Java

/// One Java member reads the records of four partitions exactly once and commits; the group,
/// listed as a Consumer group, is empty once it left; the next run reads only what came after.
#[test]
fn java_consumer_member_reads_everything_once_and_the_next_run_resumes() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let java = JavaDriver::at(bs);
    let topic = topic_name("cp-java-resume");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 4);
    let mut acked = rd_produce_all(bs, &topic, None, 0..400, &[("acks", "all")]);
    assert_eq!(ends(&acked).len(), 4, "records on every partition");
    let consumer = ["--prop", "group.protocol=consumer"];

    let out = java.consume(&topic, &group, 400, &consumer);
    assert_records_exact(&parse_consumed_lines(&out.stdout), 0..400);
    assert_eq!(
        partition_offsets(&out, "committed"),
        ends(&acked),
        "committed offsets (read back by the member)"
    );
    let owns = tagged(&out, "owns");
    assert!(
        owns.first().is_some_and(|o| o.starts_with("0,1,2,3 ")),
        "the lone member owns every partition: {owns:?}"
    );
    let assignment = tagged(&out, "assignment");
    let epoch: i32 = assignment
        .first()
        .and_then(|l| l.split(' ').nth(2))
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no member epoch in {assignment:?}"));
    assert!(epoch > 0, "member epoch {epoch} while a member");

    let groups = java.admin(&["list-groups"]);
    assert!(
        tagged(&groups, "group").contains(&format!("{group} Consumer Empty").as_str()),
        "listGroups shows the group as an empty Consumer group:\n{}",
        groups.stdout
    );
    let described = java.admin(&["describe-group", "--group", &group]);
    let line = tagged(&described, "group");
    assert!(
        line.first()
            .is_some_and(|l| l.starts_with(&format!("{group} state Empty members 0 "))),
        "describeConsumerGroups:\n{}",
        described.stdout
    );
    let kind = tagged(&described, "group-type");
    assert!(
        kind.first()
            .is_some_and(|l| l.starts_with("Consumer epoch ")),
        "describeConsumerGroups type and epochs:\n{}",
        described.stdout
    );

    acked.extend(rd_produce_all(
        bs,
        &topic,
        None,
        400..500,
        &[("acks", "all")],
    ));
    let out = java.consume(&topic, &group, 100, &consumer);
    let got = parse_consumed_lines(&out.stdout);
    assert_records_exact(&got, 400..500);
    assert_eq!(partition_offsets(&out, "committed"), ends(&acked));
}

/// Three Java members split six partitions; one leaves while records keep coming and the two
/// others take its partitions over from its commits: every record read exactly once.
#[test]
fn java_members_split_the_partitions_and_take_over_those_of_a_member_that_leaves() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-java-split");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 6);
    let mut members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| Member::spawn(n, java_member(bs, &topic, &group)))
        .collect();
    let split = wait_split(&mut members, 6);

    let mut acked = rd_produce_all(bs, &topic, None, 0..600, &[("acks", "all")]);
    wait_read(&mut members, &[], 0..600);
    for (m, owned) in members.iter().zip(&split) {
        let read = partitions_of(&m.records());
        assert!(
            read.is_subset(owned),
            "member {} read partitions {read:?}, owns {owned:?}",
            m.name
        );
    }

    let leaver = members.remove(0);
    let (left, more) = std::thread::scope(|s| {
        let producer = s.spawn(|| produce_paced(bs, &topic, 600..1200, Duration::from_secs(6)));
        let left = leaver.stop();
        let owned = wait_split(&mut members, 6);
        let more = producer.join().expect("producer thread");
        wait_read(&mut members, &parse_consumed_lines(&left.stdout), 600..1200);
        for (m, owned) in members.iter().zip(&owned) {
            eprintln!("member {} owns {owned:?} after a left", m.name);
        }
        (left, more)
    });
    acked.extend(more);
    let mut all = parse_consumed_lines(&left.stdout);
    let mut retried = tagged(&left, "commit-retry");
    let outs: Vec<Finished> = members.into_iter().map(Member::stop).collect();
    for out in &outs {
        all.extend(parse_consumed_lines(&out.stdout));
        retried.extend(tagged(out, "commit-retry"));
    }
    eprintln!("commits refused and carried by a later one: {retried:?}");
    assert_records_exact(&all, 0..1200);
    assert_eq!(rd_committed(bs, &group, &topic, 6), ends(&acked));
}

/// A Java member SIGKILLed (no leave) keeps its partitions until its session times out; then
/// the survivor owns all of them and reads what comes next. Records the killed member printed
/// but had not committed yet may be read again by the survivor (at least once).
#[test]
fn java_member_killed_without_leaving_is_removed_after_its_session_timeout() {
    let target = Target::start(&["--group-consumer-session-timeout-ms", "10000"]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-java-kill");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 4);
    let mut members: Vec<Member> = ["doomed", "survivor"]
        .iter()
        .map(|n| Member::spawn(n, java_member(bs, &topic, &group)))
        .collect();
    let split = wait_split(&mut members, 4);
    let mut acked = rd_produce_all(bs, &topic, None, 0..400, &[("acks", "all")]);
    wait_read(&mut members, &[], 0..400);

    let mut doomed = members.remove(0);
    let mut survivor = members.remove(0);
    doomed.kill9();
    let killed = Instant::now();
    wait_for(
        "the survivor to own every partition",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            survivor.check_running();
            (survivor.owns() == (0..4).collect()).then_some(())
        },
    );
    eprintln!(
        "the killed member's partitions {:?} went to the survivor after {:?}",
        split[0],
        killed.elapsed()
    );
    acked.extend(rd_produce_all(
        bs,
        &topic,
        None,
        400..600,
        &[("acks", "all")],
    ));
    wait_read(std::slice::from_mut(&mut survivor), &[], 400..600);

    let mut all = doomed.records();
    let dead_partitions = split[0].clone();
    all.extend(parse_consumed_lines(&survivor.stop().stdout));
    let mut seen = BTreeSet::new();
    all.retain(|c| {
        let first = seen.insert((c.partition, c.offset));
        assert!(
            first || dead_partitions.contains(&c.partition),
            "p{} offset {} read twice, not a partition of the killed member",
            c.partition,
            c.offset
        );
        first
    });
    assert_records_exact(&all, 0..600);
    assert_eq!(rd_committed(bs, &group, &topic, 4), ends(&acked));
}

/// A Java member frozen (SIGSTOP) past its session timeout is removed and the other member
/// takes its partitions; thawed (SIGCONT), it learns it is no longer a member, gives up what it
/// held, rejoins and gets partitions again. Every record is read; only what the frozen member
/// printed after it thawed may be read twice (records it had fetched before it froze, whose
/// partitions were taken over meanwhile), and its late commits do not end up in the group's
/// offsets.
#[test]
fn java_member_frozen_past_its_session_timeout_rejoins_and_the_group_reads_on() {
    let target = Target::start(&["--group-consumer-session-timeout-ms", "10000"]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-java-frozen");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 4);
    let mut members: Vec<Member> = ["frozen", "other"]
        .iter()
        .map(|n| Member::spawn(n, java_member(bs, &topic, &group)))
        .collect();
    wait_split(&mut members, 4);
    let mut acked = rd_produce_all(bs, &topic, None, 0..400, &[("acks", "all")]);
    wait_read(&mut members, &[], 0..400);

    members[0].signal("STOP");
    let printed_before = members[0].records().len();
    wait_for(
        "the other member to own every partition",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            members[1].check_running();
            (members[1].owns() == (0..4).collect()).then_some(())
        },
    );
    acked.extend(rd_produce_all(
        bs,
        &topic,
        None,
        400..800,
        &[("acks", "all")],
    ));
    wait_read(&mut members[1..], &[], 400..800);

    members[0].signal("CONT");
    wait_split(&mut members, 4);
    acked.extend(rd_produce_all(
        bs,
        &topic,
        None,
        800..1000,
        &[("acks", "all")],
    ));
    wait_read(&mut members, &[], 800..1000);
    let frozen = members.remove(0).stop();
    let other = members.remove(0).stop();
    eprintln!(
        "the thawed member's assignments: {:?}; its refused commits: {:?}",
        tagged(&frozen, "owns"),
        tagged(&frozen, "commit-retry"),
    );

    let frozen_records = parse_consumed_lines(&frozen.stdout);
    let after_thaw: BTreeSet<(i32, i64)> = frozen_records[printed_before..]
        .iter()
        .map(|c| (c.partition, c.offset))
        .collect();
    let mut all = frozen_records;
    all.extend(parse_consumed_lines(&other.stdout));
    let mut seen = BTreeSet::new();
    all.retain(|c| {
        let first = seen.insert((c.partition, c.offset));
        assert!(
            first || after_thaw.contains(&(c.partition, c.offset)),
            "p{} offset {} read twice, not by the thawed member",
            c.partition,
            c.offset
        );
        first
    });
    // In offset order: a partition's records came from both members, in turns.
    all.sort_by_key(|c| (c.partition, c.offset));
    assert_records_exact(&all, 0..1000);
    assert_eq!(rd_committed(bs, &group, &topic, 4), ends(&acked));
}

/// Java members with a `group.instance.id` (static membership): one that stops (leaving as a
/// static member, epoch -2) and starts again well within its session timeout gets its own
/// partitions back, the other member never owns them meanwhile, and the restarted member reads
/// what came in its absence from its commits: every record exactly once.
#[test]
fn java_static_member_that_restarts_gets_its_own_partitions_back() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-java-static");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 4);
    let static_member = |name: &str, instance: &str| {
        let mut cmd = java_member(bs, &topic, &group);
        cmd.args(["--prop", &format!("group.instance.id={group}-{instance}")]);
        Member::spawn(name, cmd)
    };
    let mut members = vec![static_member("a", "a"), static_member("b", "b")];
    let split = wait_split(&mut members, 4);
    let mut acked = rd_produce_all(bs, &topic, None, 0..200, &[("acks", "all")]);
    wait_read(&mut members, &[], 0..200);

    let first = members.remove(0).stop();
    acked.extend(rd_produce_all(
        bs,
        &topic,
        None,
        200..400,
        &[("acks", "all")],
    ));
    members.insert(0, static_member("a-again", "a"));
    let again = wait_split(&mut members, 4);
    assert_eq!(again, split, "the restarted static member's partitions");
    wait_read(&mut members, &parse_consumed_lines(&first.stdout), 0..400);

    let mut all = parse_consumed_lines(&first.stdout);
    let restarted = members.remove(0).stop();
    let other = members.remove(0).stop();
    // From the split on (before it, b may have owned everything while a was joining).
    let history = tagged(&other, "owns");
    for line in history
        .iter()
        .skip_while(|l| owned_partitions(l) != split[1])
    {
        let owned = owned_partitions(line);
        assert!(
            owned.is_subset(&split[1]),
            "member b owned {owned:?} (its own: {:?}), while a was away",
            split[1]
        );
    }
    all.extend(parse_consumed_lines(&restarted.stdout));
    all.extend(parse_consumed_lines(&other.stdout));
    assert_records_exact(&all, 0..400);
    assert_eq!(rd_committed(bs, &group, &topic, 4), ends(&acked));
}

/// The Java AdminClient may not change the offsets of a consumer group that has members
/// (UnknownMemberIdException: the commit comes from outside the group) nor delete it
/// (GroupNotEmptyException); once its member left it may, and a deleted group is gone.
#[test]
fn java_admin_changes_and_deletes_a_consumer_group_only_once_it_is_empty() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let java = JavaDriver::at(bs);
    let topic = topic_name("cp-java-admin");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 2);
    let acked = rd_produce_all(bs, &topic, None, 0..100, &[("acks", "all")]);
    let mut members = vec![Member::spawn("franz-go", go_member(bs, &topic, &group))];
    wait_split(&mut members, 2);
    wait_read(&mut members, &[], 0..100);
    let alter = [
        "alter-group-offsets",
        "--group",
        &group,
        "--topic",
        &topic,
        "--partition",
        "0",
        "--offset",
        "1",
    ];
    let err = java.admin_fails(&alter);
    assert!(err.contains("UnknownMemberIdException"), "{err}");
    let err = java.admin_fails(&["delete-group", "--group", &group]);
    assert!(err.contains("GroupNotEmptyException"), "{err}");
    assert_eq!(rd_committed(bs, &group, &topic, 2), ends(&acked));

    members.remove(0).stop();
    java.admin(&alter);
    let mut want = ends(&acked);
    want.insert(0, 1);
    assert_eq!(rd_committed(bs, &group, &topic, 2), want);
    java.admin(&["delete-group", "--group", &group]);
    let groups = java.admin(&["list-groups"]);
    assert!(
        !tagged(&groups, "group")
            .iter()
            .any(|l| l.split(' ').next() == Some(group.as_str())),
        "the deleted group is still listed:\n{}",
        groups.stdout
    );
    let none: BTreeMap<i32, i64> = (0..2).map(|p| (p, -1)).collect();
    assert_eq!(
        rd_committed(bs, &group, &topic, 2),
        none,
        "offsets of the deleted group"
    );
}

// ---------------------------------------------------------------------------------------------
// librdkafka

/// A librdkafka member reads three partitions once and commits; a new member of the group
/// resumes from those commits and reads only what came after.
#[test]
fn rdkafka_consumer_member_reads_everything_once_and_the_next_member_resumes() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-rd-resume");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 3);
    let mut acked = rd_produce_all(bs, &topic, None, 0..300, &[("acks", "all")]);

    let first = rd_member(bs, &group, &topic, "cp-rd-first");
    let mut got = Vec::new();
    wait_for(
        "the first member to read 300 records",
        SETTLE,
        Duration::from_millis(1),
        || {
            rd_poll_commit(&first, "first", &mut got);
            has_all(&got, 0..300).then_some(())
        },
    );
    assert_eq!(
        rd_owns(&first),
        (0..3).collect(),
        "the lone member's assignment"
    );
    drop(first);
    assert_records_exact(&got, 0..300);
    assert_eq!(rd_committed(bs, &group, &topic, 3), ends(&acked));

    acked.extend(rd_produce_all(
        bs,
        &topic,
        None,
        300..400,
        &[("acks", "all")],
    ));
    let second = rd_member(bs, &group, &topic, "cp-rd-second");
    let mut got = Vec::new();
    wait_for(
        "the second member to read the 100 new records",
        SETTLE,
        Duration::from_millis(1),
        || {
            rd_poll_commit(&second, "second", &mut got);
            has_all(&got, 300..400).then_some(())
        },
    );
    // Anything older would come right behind: a poll of a second finds nothing more.
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        rd_poll_commit(&second, "second", &mut got);
    }
    assert_records_exact(&got, 300..400);
    drop(second);
    assert_eq!(rd_committed(bs, &group, &topic, 3), ends(&acked));
}

/// A librdkafka member owning four partitions gives some up to a second member that joins
/// (revocation first, then assignment), and the second takes them all when the first leaves,
/// while records keep coming: every record read exactly once.
#[test]
fn rdkafka_members_hand_partitions_over_when_one_joins_and_when_one_leaves() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-rd-handover");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 4);
    let p = rd_producer(bs, &[("acks", "all")]);
    let mut next = 0u64;
    // Sends ten more records (up to `until`) each time the test polls.
    let mut trickle = |until: u64| {
        for i in next..(next + 10).min(until) {
            rd_send(&p, &topic, None, i);
        }
        next = (next + 10).min(until);
        p.poll(Duration::ZERO);
    };

    let a = rd_member(bs, &group, &topic, "cp-rd-a");
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    wait_for(
        "member a to own the four partitions",
        SETTLE,
        Duration::from_millis(1),
        || {
            rd_poll_commit(&a, "a", &mut got_a);
            (rd_owns(&a).len() == 4).then_some(())
        },
    );
    wait_for(
        "member a to read 200 records",
        SETTLE,
        Duration::from_millis(1),
        || {
            trickle(200);
            rd_poll_commit(&a, "a", &mut got_a);
            has_all(&got_a, 0..200).then_some(())
        },
    );

    let b = rd_member(bs, &group, &topic, "cp-rd-b");
    let split = wait_for(
        "a and b to split the partitions and read 400 records",
        SETTLE,
        Duration::from_millis(1),
        || {
            trickle(400);
            rd_poll_commit(&a, "a", &mut got_a);
            rd_poll_commit(&b, "b", &mut got_b);
            let owned = [rd_owns(&a), rd_owns(&b)];
            let all = [got_a.as_slice(), got_b.as_slice()].concat();
            (is_split(&owned, 4) && has_all(&all, 0..400)).then_some(owned)
        },
    );
    eprintln!("after b joined: a owns {:?}, b {:?}", split[0], split[1]);
    let b_read_before = got_b.len();

    drop(a);
    wait_for(
        "b to own every partition and read 600 records",
        SETTLE,
        Duration::from_millis(1),
        || {
            trickle(600);
            rd_poll_commit(&b, "b", &mut got_b);
            let all = [got_a.as_slice(), got_b.as_slice()].concat();
            (rd_owns(&b).len() == 4 && has_all(&all, 0..600)).then_some(())
        },
    );
    assert!(
        partitions_of(&got_b[b_read_before..]).len() > split[1].len(),
        "b read from a's former partitions after a left"
    );
    drop(b);
    p.flush(Duration::from_secs(30)).expect("flush producer");
    let acked = p.context().acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), 600, "delivery reports");
    let all = [got_a, got_b].concat();
    assert_records_exact(&all, 0..600);
    assert_eq!(rd_committed(bs, &group, &topic, 4), ends(&acked));
}

/// A librdkafka member subscribed with a regular expression (librdkafka sends it for the broker
/// to resolve: SubscribedTopicRegex) is assigned the partitions of the topics it matches, and
/// of a matching topic created while it is a member, and none of a topic it does not match.
#[test]
fn rdkafka_member_subscribed_by_regex_is_assigned_the_topics_it_matches() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let prefix = topic_name("cp-rd-regex");
    let (first, second, later) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}-c"),
    );
    let other = format!("{prefix}x-other");
    for t in [&first, &second, &other] {
        create_topic(bs, t, 2);
    }
    let c = rd_member(
        bs,
        &format!("{prefix}-g"),
        &format!("^{prefix}-.*"),
        "cp-rd-regex",
    );
    let owned = |c: &BaseConsumer| -> BTreeSet<(String, i32)> {
        c.assignment()
            .expect("assignment")
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect()
    };
    let want = |topics: &[&String]| -> BTreeSet<(String, i32)> {
        topics
            .iter()
            .flat_map(|t| (0..2).map(move |p| (t.to_string(), p)))
            .collect()
    };
    let mut got = Vec::new();
    wait_for(
        "the member to own the partitions of the two matching topics",
        SETTLE,
        Duration::from_millis(1),
        || {
            rd_poll_commit(&c, "regex member", &mut got);
            (owned(&c) == want(&[&first, &second])).then_some(())
        },
    );
    create_topic(bs, &later, 2);
    wait_for(
        "the member to own the partitions of the matching topic created since",
        Duration::from_secs(60),
        Duration::from_millis(1),
        || {
            rd_poll_commit(&c, "regex member", &mut got);
            (owned(&c) == want(&[&first, &second, &later])).then_some(())
        },
    );
    drop(c);
}

/// A librdkafka member is assigned the partitions added to its topic (CreatePartitions) and
/// reads the records written to them.
#[test]
fn rdkafka_member_is_assigned_partitions_added_to_its_topic() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-rd-grow");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 2);
    let c = rd_member(bs, &group, &topic, "cp-rd-grow");
    let mut got = Vec::new();
    wait_for(
        "the member to own both partitions",
        SETTLE,
        Duration::from_millis(1),
        || {
            rd_poll_commit(&c, "member", &mut got);
            (rd_owns(&c).len() == 2).then_some(())
        },
    );
    let grown = broker_runtime()
        .block_on(rd_admin(bs).create_partitions(
            [&rdkafka::admin::NewPartitions::new(&topic, 4)],
            &admin_opts(),
        ))
        .expect("create_partitions");
    assert!(grown.iter().all(Result::is_ok), "{grown:?}");
    wait_for(
        "the member to own the four partitions",
        Duration::from_secs(60),
        Duration::from_millis(1),
        || {
            rd_poll_commit(&c, "member", &mut got);
            (rd_owns(&c) == (0..4).collect()).then_some(())
        },
    );
    for p in 0..4 {
        rd_produce_all(bs, &topic, Some(p), p as u64 * 10..(p as u64 + 1) * 10, &[]);
    }
    wait_for(
        "the member to read 40 records",
        SETTLE,
        Duration::from_millis(1),
        || {
            rd_poll_commit(&c, "member", &mut got);
            has_all(&got, 0..40).then_some(())
        },
    );
    assert_records_exact(&got, 0..40);
}

// ---------------------------------------------------------------------------------------------
// franz-go

/// A franz-go member (kgo.ServerSideBalancer) reads four partitions once and commits while
/// ConsumerGroupDescribe shows it as the group's one member owning them all; the next run reads
/// only what came after.
#[test]
fn franz_go_server_side_balanced_member_reads_everything_once_and_the_next_run_resumes() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-go-resume");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 4);
    let mut acked = rd_produce_all(bs, &topic, None, 0..400, &[("acks", "all")]);
    let run = |count: &str| {
        let mut cmd = go_member(bs, &topic, &group);
        cmd.args(["--count", count]);
        run_member(cmd, "franz-go member")
    };

    let out = run("400");
    assert_records_exact(&parse_consumed_lines(&out.stdout), 0..400);
    assert_eq!(partition_offsets(&out, "committed"), ends(&acked));
    let owns = tagged(&out, "owns");
    let member = owns
        .first()
        .and_then(|l| l.strip_prefix("0,1,2,3 "))
        .unwrap_or_else(|| panic!("the lone member owns every partition: {owns:?}"));
    let described = tagged(&out, "described");
    assert!(
        described.len() == 1
            && described[0].starts_with("Stable epoch ")
            && described[0].ends_with(" members 1"),
        "ConsumerGroupDescribe of the group:\n{}",
        out.stdout
    );
    let described_member = tagged(&out, "described-member");
    assert!(
        described_member.len() == 1
            && described_member[0].starts_with(&format!("{member} epoch "))
            && described_member[0].ends_with(" assigned 0,1,2,3"),
        "ConsumerGroupDescribe of the member:\n{}",
        out.stdout
    );

    acked.extend(rd_produce_all(
        bs,
        &topic,
        None,
        400..500,
        &[("acks", "all")],
    ));
    let out = run("100");
    assert_records_exact(&parse_consumed_lines(&out.stdout), 400..500);
    assert_eq!(partition_offsets(&out, "committed"), ends(&acked));
}

/// Two franz-go members split four partitions; one leaves while records keep coming and the
/// other takes its partitions over from its commits: every record read exactly once (franz-go
/// holds revocations off while the member prints and commits what it polled).
#[test]
fn franz_go_members_split_the_partitions_and_take_over_those_of_a_member_that_leaves() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-go-split");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 4);
    let mut members: Vec<Member> = ["a", "b"]
        .iter()
        .map(|n| Member::spawn(n, go_member(bs, &topic, &group)))
        .collect();
    let split = wait_split(&mut members, 4);
    let mut acked = rd_produce_all(bs, &topic, None, 0..400, &[("acks", "all")]);
    wait_read(&mut members, &[], 0..400);
    for (m, owned) in members.iter().zip(&split) {
        let read = partitions_of(&m.records());
        assert!(
            read.is_subset(owned),
            "member {} read partitions {read:?}, owns {owned:?}",
            m.name
        );
    }

    let leaver = members.remove(0);
    let left = std::thread::scope(|s| {
        let producer = s.spawn(|| produce_paced(bs, &topic, 400..800, Duration::from_secs(6)));
        let left = leaver.stop();
        wait_split(&mut members, 4);
        acked.extend(producer.join().expect("producer thread"));
        wait_read(&mut members, &parse_consumed_lines(&left.stdout), 400..800);
        left
    });
    let mut all = parse_consumed_lines(&left.stdout);
    let stayer = members.remove(0);
    all.extend(parse_consumed_lines(&stayer.stop().stdout));
    assert_records_exact(&all, 0..800);
    assert_eq!(rd_committed(bs, &group, &topic, 4), ends(&acked));
}

// ---------------------------------------------------------------------------------------------
// Moving a running group between the classic and the consumer protocol (online migration)

/// A Java member of `group` on the classic protocol (JoinGroup; its own assignor), with
/// `assignors` as its partition.assignment.strategy. `--retry-commits`: a commit refused
/// because the group moved on is carried by the member's next commit.
fn java_classic_member(bootstrap: &str, topic: &str, group: &str, assignors: &str) -> Command {
    let strategy = format!("partition.assignment.strategy={assignors}");
    JavaDriver::at(bootstrap).consuming(
        topic,
        group,
        1_000_000_000,
        &[
            "--timeout-ms",
            "150000",
            "--retry-commits",
            "true",
            "--prop",
            "group.protocol=classic",
            "--prop",
            &strategy,
            "--prop",
            "session.timeout.ms=10000",
            "--prop",
            "heartbeat.interval.ms=1000",
        ],
        java_cmd,
    )
}

/// What `describeConsumerGroups` says of `group`: its `#group-type` line.
fn group_type(java: &JavaDriver, group: &str) -> String {
    let described = java.admin(&["describe-group", "--group", group]);
    tagged(&described, "group-type")
        .first()
        .map(|l| l.to_string())
        .unwrap_or_else(|| panic!("no #group-type line:\n{}", described.stdout))
}

/// A group of Java members rolls from the classic protocol to the consumer protocol member by
/// member while records keep coming, and back: two classic members (one eager, on the range
/// assignor, one cooperative) are joined by a consumer-protocol member, which turns the group
/// into a consumer group in which the classic members keep their partitions and give up
/// some to it; the classic members then leave and a second consumer-protocol member joins;
/// then a classic member joins again and the consumer-protocol members leave, which turns the
/// group back into a classic group that the classic member has to itself. At every step the
/// members split the six partitions between them, and together they read every record
/// (at least once: when the group turns back, a classic member's old generation is refused and
/// it rejoins, as on Kafka) and commit up to the end.
#[test]
fn java_group_rolls_from_the_classic_to_the_consumer_protocol_and_back_while_it_reads() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let java = JavaDriver::at(bs);
    let topic = topic_name("cp-migrate");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 6);
    let eager = "org.apache.kafka.clients.consumer.RangeAssignor,org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
    let cooperative = "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
    let mut gone: Vec<Finished> = Vec::new();

    // A classic group.
    let mut members = vec![
        Member::spawn(
            "classic-eager",
            java_classic_member(bs, &topic, &group, eager),
        ),
        Member::spawn(
            "classic-cooperative",
            java_classic_member(bs, &topic, &group, cooperative),
        ),
    ];
    wait_split(&mut members, 6);
    assert!(
        group_type(&java, &group).starts_with("Classic "),
        "before the upgrade"
    );
    let mut acked = rd_produce_all(bs, &topic, None, 0..600, &[("acks", "all")]);
    wait_read(&mut members, &[], 0..600);

    // A consumer-protocol member joins while records keep coming: the group upgrades and the
    // three split the partitions.
    std::thread::scope(|s| {
        let producer = s.spawn(|| produce_paced(bs, &topic, 600..1200, Duration::from_secs(8)));
        members.push(Member::spawn("consumer-1", java_member(bs, &topic, &group)));
        wait_split(&mut members, 6);
        acked.extend(producer.join().expect("producer thread"));
    });
    let kind = group_type(&java, &group);
    assert!(
        kind.starts_with("Consumer epoch "),
        "after the upgrade: {kind}"
    );
    wait_read(&mut members, &[], 600..1200);

    // The classic members leave one by one, a second consumer-protocol member joins.
    std::thread::scope(|s| {
        let producer = s.spawn(|| produce_paced(bs, &topic, 1200..1800, Duration::from_secs(10)));
        gone.push(members.remove(0).stop());
        wait_split(&mut members, 6);
        members.push(Member::spawn("consumer-2", java_member(bs, &topic, &group)));
        wait_split(&mut members, 6);
        gone.push(members.remove(0).stop());
        wait_split(&mut members, 6);
        acked.extend(producer.join().expect("producer thread"));
    });
    let earlier: Vec<Consumed> = gone
        .iter()
        .flat_map(|f| parse_consumed_lines(&f.stdout))
        .collect();
    wait_read(&mut members, &earlier, 0..1800);

    // And back: a classic member joins the consumer group, the consumer-protocol members
    // leave, and the group is a classic group again, all of it the classic member's.
    members.push(Member::spawn(
        "classic-again",
        java_classic_member(bs, &topic, &group, eager),
    ));
    wait_split(&mut members, 6);
    std::thread::scope(|s| {
        let producer = s.spawn(|| produce_paced(bs, &topic, 1800..2400, Duration::from_secs(8)));
        gone.push(members.remove(0).stop());
        gone.push(members.remove(0).stop());
        wait_split(&mut members, 6);
        acked.extend(producer.join().expect("producer thread"));
    });
    let kind = group_type(&java, &group);
    assert!(kind.starts_with("Classic "), "after the downgrade: {kind}");
    let earlier: Vec<Consumed> = gone
        .iter()
        .flat_map(|f| parse_consumed_lines(&f.stdout))
        .collect();
    wait_read(&mut members, &earlier, 0..2400);
    gone.push(members.remove(0).stop());

    let all: Vec<Consumed> = gone
        .iter()
        .flat_map(|f| parse_consumed_lines(&f.stdout))
        .collect();
    assert!(has_all(&all, 0..2400), "every record read");
    let read_twice = all.len()
        - all
            .iter()
            .map(Consumed::index)
            .collect::<BTreeSet<_>>()
            .len();
    let retried: Vec<&str> = gone
        .iter()
        .flat_map(|f| tagged(f, "commit-retry"))
        .collect();
    eprintln!("records read twice: {read_twice}; commits refused and carried: {retried:?}");
    assert_eq!(rd_committed(bs, &group, &topic, 6), ends(&acked));
}

/// A librdkafka member of `group` on the classic protocol with the cooperative-sticky
/// assignor, subscribed to `topic`.
fn rd_classic_member(bootstrap: &str, group: &str, topic: &str, client_id: &str) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", "classic")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("broker.address.family", "v4")
        .set("fetch.wait.max.ms", "100");
    rd_debug(&mut cfg);
    let c: BaseConsumer = cfg.create().expect("create librdkafka classic member");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// librdkafka's classic members (cooperative-sticky) and its consumer-protocol members in one
/// group: a consumer-protocol member joining a classic group upgrades it, and the classic
/// members hand it partitions the cooperative way (they give up what their SyncGroup no
/// longer lists and rejoin); once they have left it owns every partition and the group reads
/// on. Every record is read once and committed (each member commits what it read before it
/// polls again).
#[test]
fn rdkafka_classic_members_hand_a_running_group_over_to_a_consumer_protocol_member() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let java = JavaDriver::at(bs);
    let topic = topic_name("cp-rd-migrate");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 4);
    let p = rd_producer(bs, &[("acks", "all")]);
    let mut next = 0u64;
    let mut trickle = |until: u64| {
        for i in next..(next + 10).min(until) {
            rd_send(&p, &topic, None, i);
        }
        next = (next + 10).min(until);
        p.poll(Duration::ZERO);
    };
    let a = rd_classic_member(bs, &group, &topic, "cp-rd-classic-a");
    let b = rd_classic_member(bs, &group, &topic, "cp-rd-classic-b");
    let (mut got_a, mut got_b, mut got_c) = (Vec::new(), Vec::new(), Vec::new());
    wait_for(
        "the classic members to split the partitions and read 200 records",
        SETTLE,
        Duration::from_millis(1),
        || {
            trickle(200);
            rd_poll_commit(&a, "a", &mut got_a);
            rd_poll_commit(&b, "b", &mut got_b);
            let all = [got_a.as_slice(), got_b.as_slice()].concat();
            (is_split(&[rd_owns(&a), rd_owns(&b)], 4) && has_all(&all, 0..200)).then_some(())
        },
    );
    assert!(group_type(&java, &group).starts_with("Classic "));

    let c = rd_member(bs, &group, &topic, "cp-rd-consumer-c");
    let split = wait_for(
        "a, b and c to split the partitions and read 400 records",
        SETTLE,
        Duration::from_millis(1),
        || {
            trickle(400);
            rd_poll_commit(&a, "a", &mut got_a);
            rd_poll_commit(&b, "b", &mut got_b);
            rd_poll_commit(&c, "c", &mut got_c);
            let owned = [rd_owns(&a), rd_owns(&b), rd_owns(&c)];
            let all = [got_a.as_slice(), got_b.as_slice(), got_c.as_slice()].concat();
            (is_split(&owned, 4) && has_all(&all, 0..400)).then_some(owned)
        },
    );
    eprintln!(
        "after c joined: a owns {:?}, b {:?}, c {:?}",
        split[0], split[1], split[2]
    );
    let kind = group_type(&java, &group);
    assert!(
        kind.starts_with("Consumer epoch "),
        "after the upgrade: {kind}"
    );

    drop(a);
    drop(b);
    wait_for(
        "c to own every partition and read 600 records",
        SETTLE,
        Duration::from_millis(1),
        || {
            trickle(600);
            rd_poll_commit(&c, "c", &mut got_c);
            let all = [got_a.as_slice(), got_b.as_slice(), got_c.as_slice()].concat();
            (rd_owns(&c).len() == 4 && has_all(&all, 0..600)).then_some(())
        },
    );
    drop(c);
    p.flush(Duration::from_secs(30)).expect("flush producer");
    let acked = p.context().acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), 600, "delivery reports");
    let mut all = [got_a, got_b, got_c].concat();
    all.sort_by_key(|c| (c.partition, c.offset));
    assert_records_exact(&all, 0..600);
    assert_eq!(rd_committed(bs, &group, &topic, 4), ends(&acked));
}

/// franz-go's classic member (its default cooperative-sticky balancer) and its
/// consumer-protocol member (kgo.ServerSideBalancer) in one group: the second upgrades the
/// group and takes half the partitions; when it leaves, the group is a classic group again and
/// the classic member, which was never told its generation is illegal (its generation is kept
/// through the rebalance that follows), reads on. Every record read once.
#[test]
fn franz_go_classic_member_reads_on_through_an_upgrade_and_a_downgrade() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-go-migrate");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 4);
    let mut classic_cmd = Command::new(go_client());
    classic_cmd
        .args(["consume", "--brokers", bs, "--topic", &topic])
        .args(["--group", &group, "--count", "1000000000"])
        .args(["--timeout-ms", "150000"]);
    let mut acked = rd_produce_all(bs, &topic, None, 0..400, &[("acks", "all")]);
    let mut classic = vec![Member::spawn("go-classic", classic_cmd)];
    wait_read(&mut classic, &[], 0..400);

    let mut consumer = vec![Member::spawn("go-consumer", go_member(bs, &topic, &group))];
    wait_for(
        "the consumer-protocol member to own partitions beside the classic one",
        SETTLE,
        Duration::from_millis(200),
        || {
            classic[0].check_running();
            consumer[0].check_running();
            (consumer[0].owns().len() == 2).then_some(())
        },
    );
    acked.extend(rd_produce_all(
        bs,
        &topic,
        None,
        400..800,
        &[("acks", "all")],
    ));
    let mut both: Vec<Member> = classic.into_iter().chain(consumer).collect();
    wait_read(&mut both, &[], 400..800);
    let left = both.pop().expect("the consumer-protocol member").stop();
    let mut classic = both;
    // The group turns classic and rebalances; the classic member rejoins (it must not be
    // refused on the way: the driver stops at any error).
    let java = JavaDriver::at(bs);
    wait_for(
        "the group to be a stable classic group of one member",
        SETTLE,
        Duration::from_millis(500),
        || {
            classic[0].check_running();
            let described = java.admin(&["describe-group", "--group", &group]);
            let kind = tagged(&described, "group-type");
            let state = tagged(&described, "group");
            let classic_kind = kind.first().is_some_and(|k| k.starts_with("Classic "));
            let stable = state
                .first()
                .is_some_and(|l| l.contains(" state Stable members 1 "));
            (classic_kind && stable).then_some(())
        },
    );
    acked.extend(rd_produce_all(
        bs,
        &topic,
        None,
        800..1200,
        &[("acks", "all")],
    ));
    wait_read(&mut classic, &parse_consumed_lines(&left.stdout), 800..1200);
    // A few heartbeats later it is still a member, reading.
    std::thread::sleep(Duration::from_secs(4));
    classic[0].check_running();
    let stayed = classic.pop().expect("the classic member").stop();
    let mut all = parse_consumed_lines(&left.stdout);
    all.extend(parse_consumed_lines(&stayed.stdout));
    // Partitions went back and forth between the two: each partition's records in log order
    // (a record read twice would repeat an offset).
    all.sort_by_key(|c| (c.partition, c.offset));
    assert_records_exact(&all, 0..1200);
    assert_eq!(rd_committed(bs, &group, &topic, 4), ends(&acked));
}

// ---------------------------------------------------------------------------------------------
// The three clients in one group, and Kafka's tools

/// A Java, a franz-go and a librdkafka member share one group of six partitions: the broker's
/// assignment gives each of them its own partitions and together they read every record once.
/// Kafka's `kafka-consumer-groups.sh` then describes the group (offsets, lag, members, state)
/// and lists it among the consumer groups, and `kafka-groups.sh` lists it as a Consumer group.
#[test]
fn java_franz_go_and_rdkafka_members_share_a_group_that_kafka_tools_describe() {
    let target = Target::start(&[]);
    let bs = target.bootstrap.as_str();
    let topic = topic_name("cp-mixed");
    let group = format!("{topic}-g");
    create_topic(bs, &topic, 6);
    let mut members = vec![
        Member::spawn("java", java_member(bs, &topic, &group)),
        Member::spawn("franz-go", go_member(bs, &topic, &group)),
    ];
    let rd = rd_member(bs, &group, &topic, "cp-mixed-rdkafka");
    let mut got_rd = Vec::new();
    let split = wait_for(
        "the three members to split six partitions",
        SETTLE,
        Duration::from_millis(20),
        || {
            rd_poll_commit(&rd, "rdkafka", &mut got_rd);
            members.iter_mut().for_each(Member::check_running);
            let mut owned: Vec<BTreeSet<i32>> = members.iter().map(Member::owns).collect();
            owned.push(rd_owns(&rd));
            is_split(&owned, 6).then_some(owned)
        },
    );
    eprintln!(
        "java owns {:?}, franz-go {:?}, rdkafka {:?}",
        split[0], split[1], split[2]
    );

    let acked = rd_produce_all(bs, &topic, None, 0..600, &[("acks", "all")]);
    wait_for(
        "the three members to read 600 records",
        SETTLE,
        Duration::from_millis(20),
        || {
            rd_poll_commit(&rd, "rdkafka", &mut got_rd);
            members.iter_mut().for_each(Member::check_running);
            let mut all: Vec<Consumed> = members.iter().flat_map(Member::records).collect();
            all.extend(got_rd.iter().cloned());
            has_all(&all, 0..600).then_some(())
        },
    );
    let mut all = got_rd.clone();
    for (m, owned) in members.iter().zip(&split) {
        let got = m.records();
        let read = partitions_of(&got);
        assert!(
            read.is_subset(owned),
            "{} read {read:?}, owns {owned:?}",
            m.name
        );
        all.extend(got);
    }
    assert!(
        partitions_of(&got_rd).is_subset(&split[2]),
        "rdkafka read outside its partitions"
    );
    assert_records_exact(&all, 0..600);

    // Everything is committed: lag 0 on every partition, each row naming its member.
    let ids: BTreeMap<i32, String> = members
        .iter()
        .zip(&split)
        .flat_map(|(m, owned)| owned.iter().map(move |p| (*p, m.member_id())))
        .collect();
    let want_offsets = ends(&acked);
    let rows = describe_offsets(bs, &group, &topic);
    assert_eq!(rows.len(), 6, "one row per partition: {rows:?}");
    for (p, row) in &rows {
        assert_eq!(
            (row.current, row.end, row.lag),
            (want_offsets[p], want_offsets[p], 0),
            "partition {p}: {row:?}"
        );
        match ids.get(p) {
            Some(id) => assert_eq!(&row.consumer_id, id, "partition {p}: {row:?}"),
            None => assert_eq!(row.client_id, "cp-mixed-rdkafka", "partition {p}: {row:?}"),
        }
    }
    // Each member as the tools name it (librdkafka's by its client id) and what it owns.
    let mut want: BTreeMap<String, BTreeSet<i32>> = members
        .iter()
        .zip(&split)
        .map(|(m, owned)| (m.member_id(), owned.clone()))
        .collect();
    want.insert("cp-mixed-rdkafka".to_string(), split[2].clone());
    kafka_tools_show_the_group(bs, &group, &topic, &want);

    // Offsets are reset only while the group has no members.
    let reset = [
        "--bootstrap-server",
        bs,
        "--reset-offsets",
        "--to-earliest",
        "--execute",
        "--group",
        &group,
        "--topic",
        &topic,
    ];
    let (_, refused) = try_kafka_tool(CONSUMER_GROUP_COMMAND, &reset);
    assert!(
        refused.stdout.contains("can only be reset if the group")
            && refused.stdout.contains("is inactive"),
        "--reset-offsets of a Stable group:\n{}{}",
        refused.stdout,
        refused.stderr
    );
    assert_eq!(rd_committed(bs, &group, &topic, 6), want_offsets);
    drop(rd);
    for m in members {
        m.stop();
    }
    kafka_tool(CONSUMER_GROUP_COMMAND, &reset);
    let zero: BTreeMap<i32, i64> = (0..6).map(|p| (p, 0)).collect();
    assert_eq!(
        rd_committed(bs, &group, &topic, 6),
        zero,
        "offsets after --reset-offsets"
    );
}

/// One row of `kafka-consumer-groups.sh --describe --group G` (a partition of the group).
#[derive(Debug)]
struct OffsetRow {
    current: i64,
    end: i64,
    lag: i64,
    consumer_id: String,
    client_id: String,
}

const CONSUMER_GROUP_COMMAND: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";

/// `kafka-consumer-groups.sh --describe --group <group>`: its rows of `topic` by partition.
fn describe_offsets(bootstrap: &str, group: &str, topic: &str) -> BTreeMap<i32, OffsetRow> {
    let out = kafka_tool(
        CONSUMER_GROUP_COMMAND,
        &[
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--group",
            group,
        ],
    );
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 9 && f[0] == group && f[1] == topic)
        .map(|f| {
            let n = |s: &str| s.parse::<i64>().unwrap_or(-1);
            (
                f[2].parse().expect("partition"),
                OffsetRow {
                    current: n(f[3]),
                    end: n(f[4]),
                    lag: n(f[5]),
                    consumer_id: f[6].to_string(),
                    client_id: f[8].to_string(),
                },
            )
        })
        .collect()
}

/// Kafka's tools show `group` as a Stable consumer-protocol group whose members (by consumer
/// id or client id) own the partitions of `topic` in `want`, and list it as such.
fn kafka_tools_show_the_group(
    bootstrap: &str,
    group: &str,
    topic: &str,
    want: &BTreeMap<String, BTreeSet<i32>>,
) {
    let tool = |args: &[&str]| {
        let mut all = vec!["--bootstrap-server", bootstrap];
        all.extend_from_slice(args);
        kafka_tool(CONSUMER_GROUP_COMMAND, &all).stdout
    };
    let rows = |out: &str| -> Vec<Vec<String>> {
        out.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.first().map(String::as_str) == Some(group))
            .collect()
    };
    let row = |out: &str| -> Vec<String> {
        rows(out)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no row of {group} in:\n{out}"))
    };

    // GROUP COORDINATOR (ID) ASSIGNMENT-STRATEGY STATE #MEMBERS
    let state = tool(&["--describe", "--group", group, "--state"]);
    let r = row(&state);
    assert_eq!(
        r[r.len() - 2..],
        ["Stable".to_string(), want.len().to_string()],
        "--describe --state:\n{state}"
    );
    // GROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS CURRENT-EPOCH CURRENT-ASSIGNMENT TARGET-EPOCH
    // TARGET-ASSIGNMENT, the assignments as <topic>:<p>,<p>,...
    let listed = tool(&["--describe", "--group", group, "--members", "--verbose"]);
    let members = rows(&listed);
    assert_eq!(members.len(), want.len(), "--describe --members:\n{listed}");
    for f in &members {
        assert_eq!(f.len(), 9, "--describe --members --verbose:\n{listed}");
        let owned = want
            .get(&f[1])
            .or_else(|| want.get(&f[3]))
            .unwrap_or_else(|| panic!("unknown member {} ({}):\n{listed}", f[1], f[3]));
        let list = owned
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let assignment = format!("{topic}:{list}");
        assert_eq!(
            (f[4].as_str(), f[6].as_str(), f[8].as_str()),
            (
                owned.len().to_string().as_str(),
                assignment.as_str(),
                assignment.as_str()
            ),
            "member {}: #partitions, current and target assignment:\n{listed}",
            f[1]
        );
        assert_eq!(
            f[5], f[7],
            "member {}: current and target epoch:\n{listed}",
            f[1]
        );
    }

    let consumer_groups = tool(&["--list", "--type", "consumer"]);
    assert!(
        consumer_groups
            .lines()
            .any(|l| l.split_whitespace().next() == Some(group)),
        "--list --type consumer:\n{consumer_groups}"
    );
    let classic_groups = tool(&["--list", "--type", "classic"]);
    assert!(
        !classic_groups
            .lines()
            .any(|l| l.split_whitespace().next() == Some(group)),
        "--list --type classic lists it too:\n{classic_groups}"
    );
    // kafka-groups.sh --list: GROUP TYPE PROTOCOL
    let out = kafka_tool(
        "org.apache.kafka.tools.GroupsCommand",
        &["--bootstrap-server", bootstrap, "--list"],
    );
    let r = row(&out.stdout);
    assert_eq!(
        r[1..],
        ["Consumer".to_string(), "consumer".to_string()],
        "kafka-groups.sh --list:\n{}",
        out.stdout
    );
}
