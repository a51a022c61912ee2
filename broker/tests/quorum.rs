//! The metadata quorum (`sluice_broker::cluster`): in-process `Cluster` members on real TCP
//! (127.0.0.1), each with its own real files in a temporary directory. Every wait polls a
//! condition with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_broker::cluster::state::{BrokerRecord, BrokerState, Command, Outcome};
use sluice_broker::cluster::{Cluster, ClusterConfig, ClusterError};
use tokio_util::sync::CancellationToken;

const READY: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// A port nobody listens on right now (bound, then released for the member to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn record(id: i32, cluster_addr: String) -> BrokerRecord {
    BrokerRecord {
        id,
        host: "127.0.0.1".to_string(),
        port: 19092 + id,
        cluster_addr,
        rack: None,
        state: BrokerState::Active,
        listeners: Vec::new(),
        fresh_volume: false,
    }
}

/// Polls `cond` every POLL until it returns `Some` or `timeout` passes (then panics naming
/// `what`).
async fn until<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn within<F: Future>(what: &str, timeout: Duration, f: F) -> F::Output {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {timeout:?}: {what}"))
}

/// One member: its volume and port survive restarts.
struct Member {
    id: i32,
    dir: PathBuf,
    port: u16,
    seeds: Vec<String>,
    cluster: Option<Arc<Cluster>>,
}

impl Member {
    fn new(root: &Path, id: i32, port: u16, seeds: Vec<String>) -> Member {
        Member {
            id,
            dir: root.join(format!("node-{id}")).join("cluster"),
            port,
            seeds,
            cluster: None,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) -> Arc<Cluster> {
        let cfg = ClusterConfig {
            node_id: self.id,
            dir: self.dir.clone(),
            listen: Some(self.addr().parse().expect("socket address")),
            seeds: self.seeds.clone(),
            me: record(self.id, self.addr()),
            transport: Default::default(),
        };
        let c = Cluster::start(cfg, CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("node {} start: {e}", self.id));
        self.cluster = Some(c.clone());
        c
    }

    fn c(&self) -> &Arc<Cluster> {
        self.cluster.as_ref().expect("member running")
    }

    async fn stop(&mut self) {
        if let Some(c) = self.cluster.take() {
            within("shutdown", Duration::from_secs(10), c.shutdown()).await;
        }
    }
}

/// A topic as a restart must keep it: name, id, configs, each partition's replicas.
type TopicLayout = (String, uuid::Uuid, BTreeMap<String, String>, Vec<Vec<i32>>);

/// What a restart must keep of the topics: ids, configs and replica sets. Leader epochs move:
/// a broker that registers again after a restart gives up and retakes its leaderships.
fn layout(
    topics: &BTreeMap<String, sluice_broker::cluster::state::TopicRecord>,
) -> Vec<TopicLayout> {
    topics
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.id,
                t.configs.clone(),
                t.partitions.iter().map(|p| p.replicas.clone()).collect(),
            )
        })
        .collect()
}

fn create_topic(name: &str, partitions: i32) -> Command {
    Command::CreateTopic {
        name: name.to_string(),
        id: uuid::Uuid::new_v4(),
        partitions,
        configs: BTreeMap::new(),
        replication_factor: 1,
        assignment: None,
    }
}

fn assert_created(o: &Outcome, name: &str) {
    assert!(
        matches!(o, Outcome::Topic { name: n, .. } if n == name),
        "creating {name}: {o:?}"
    );
}

/// Proposes creating topic `name` through `c` (`what` names the step if it fails) and checks
/// that it was created.
async fn create_via(c: &Cluster, name: &str, partitions: i32, what: &str) {
    let o = c
        .propose(create_topic(name, partitions))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    assert_created(&o, name);
}

/// Every member, for the helpers that take a chosen few.
fn all(members: &[Member]) -> Vec<&Member> {
    members.iter().collect()
}

async fn stop_all(members: &mut [Member]) {
    for x in members.iter_mut() {
        x.stop().await;
    }
}

/// Starts a member from `cfg` and waits until it is ready.
async fn start_ready(cfg: ClusterConfig, token: CancellationToken, what: &str) -> Arc<Cluster> {
    let c = Cluster::start(cfg, token)
        .await
        .unwrap_or_else(|e| panic!("{what}: start: {e}"));
    within(what, READY, c.ready()).await;
    c
}

async fn all_ready(members: &[&Member]) {
    for m in members {
        within(&format!("node {} ready", m.id), READY, m.c().ready()).await;
    }
}

/// Waits until every running member has applied topic `name`.
async fn topic_everywhere(members: &[&Member], name: &str) {
    for m in members {
        let c = m.c().clone();
        until(
            &format!("topic {name} applied on node {}", m.id),
            Duration::from_secs(10),
            || c.state().topics.contains_key(name).then_some(()),
        )
        .await;
    }
}

/// Waits until all `members` agree on one leader (among them) and returns it.
async fn agreed_leader(members: &[&Member], timeout: Duration) -> i32 {
    let ids: BTreeSet<i32> = members.iter().map(|m| m.id).collect();
    agreed_leader_where(members, "an agreed leader", timeout, |l| ids.contains(&l)).await
}

/// Waits until all `members` agree on one leader for which `accept` holds, and returns it.
async fn agreed_leader_where(
    members: &[&Member],
    what: &str,
    timeout: Duration,
    accept: impl Fn(i32) -> bool,
) -> i32 {
    until(what, timeout, || {
        let leaders: BTreeSet<Option<i32>> = members.iter().map(|m| m.c().leader()).collect();
        match leaders.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(l)] if accept(*l) => Some(*l),
            _ => None,
        }
    })
    .await
}

/// Waits until the voters and learners `c` knows satisfy `ok`, and returns them.
async fn membership_until(
    c: &Cluster,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&BTreeSet<i32>, &BTreeSet<i32>) -> bool,
) -> (BTreeSet<i32>, BTreeSet<i32>) {
    until(what, timeout, || {
        let (voters, learners) = c.members();
        ok(&voters, &learners).then_some((voters, learners))
    })
    .await
}

/// The log index of the membership configuration `c` applies (grows with each change).
fn membership_index(c: &Cluster) -> Option<u64> {
    c.raft_metrics()
        .borrow()
        .membership_config
        .log_id()
        .as_ref()
        .map(|l| l.index)
}

async fn three(root: &Path) -> Vec<Member> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let seeds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member::new(root, i, ports[i as usize], seeds.clone()))
        .collect();
    // Start them in reverse: 1 and 2 must wait for 0 to found the cluster.
    for m in members.iter_mut().rev() {
        m.start().await;
    }
    all_ready(&all(&members)).await;
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_without_network_proposes_and_restarts_with_its_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ClusterConfig {
        node_id: 0,
        dir: dir.path().join("cluster"),
        listen: None,
        seeds: vec![],
        me: record(0, String::new()),
        transport: Default::default(),
    };
    let c = Cluster::start(cfg.clone(), CancellationToken::new())
        .await
        .expect("start");
    assert_eq!(c.cluster_addr(), None);
    within("single node ready", READY, c.ready()).await;
    assert!(c.is_ready());
    assert_eq!(c.leader(), Some(0));
    assert_eq!(c.state().brokers.get(&0), Some(&cfg.me));
    let o = c
        .propose(Command::InitCluster {
            cluster_id: "one".to_string(),
        })
        .await
        .expect("propose");
    assert_eq!(o, Outcome::ClusterId("one".to_string()));
    let mut watch = c.watch();
    create_via(&c, "t1", 3, "propose").await;
    // propose returns after the command is applied locally, and the watch saw it.
    assert!(c.state().topics.contains_key("t1"));
    assert!(watch.borrow_and_update().topics.contains_key("t1"));
    // The last voter cannot be removed.
    match c.remove_node(0).await {
        Err(ClusterError::RemoveRefused { node: 0, reason }) => {
            assert!(reason.contains("last voter"), "{reason}")
        }
        other => panic!("removing the last voter: {other:?}"),
    }
    let before = c.state();
    c.shutdown().await;
    c.shutdown().await; // idempotent
    assert!(matches!(
        c.propose(create_topic("late", 1)).await,
        Err(ClusterError::ShuttingDown)
    ));

    // Restart on the same volume: the state comes back, nothing is re-founded.
    let started = Instant::now();
    let c = start_ready(
        cfg.clone(),
        CancellationToken::new(),
        "restarted single node ready",
    )
    .await;
    eprintln!("single node: ready {:?} after restart", started.elapsed());
    let after = c.state();
    assert_eq!(after.cluster_id, before.cluster_id);
    assert_eq!(layout(&after.topics), layout(&before.topics));
    create_via(&c, "t2", 1, "propose").await;
    // The caller's token stops it too.
    let token = CancellationToken::new();
    c.shutdown().await;
    let cfg_again = cfg.clone();
    let c = start_ready(cfg, token.clone(), "ready again").await;
    assert!(c.state().topics.contains_key("t2"));
    token.cancel();
    let res = within(
        "propose after the token was cancelled",
        Duration::from_secs(10),
        c.propose(create_topic("cancelled", 1)),
    )
    .await;
    assert!(matches!(res, Err(ClusterError::ShuttingDown)), "{res:?}");
    // The volume is released: a new member opens it.
    c.shutdown().await;
    let c = start_ready(cfg_again, CancellationToken::new(), "ready after the token").await;
    assert!(!c.state().topics.contains_key("cancelled"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_leader_loss_a_down_node_and_a_full_restart() {
    let root = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut m = three(root.path()).await;
    eprintln!("three nodes: all ready after {:?}", started.elapsed());
    {
        let c = m[0].c();
        let (voters, learners) = c.members();
        assert_eq!(voters, BTreeSet::from([0, 1, 2]));
        assert!(learners.is_empty());
        let brokers: Vec<i32> = c.state().brokers.keys().copied().collect();
        assert_eq!(brokers, vec![0, 1, 2]);
    }

    // A command proposed on a follower is applied on all three.
    let leader = agreed_leader(&all(&m), Duration::from_secs(10)).await;
    let follower = (0..3).find(|&i| i != leader).expect("a follower") as usize;
    create_via(m[follower].c(), "from-follower", 2, "propose on a follower").await;
    assert!(m[follower].c().state().topics.contains_key("from-follower"));
    topic_everywhere(&all(&m), "from-follower").await;

    // Kill (shut down) the leader: a new one is elected and proposals succeed.
    m[leader as usize].stop().await;
    let killed = Instant::now();
    let rest: Vec<&Member> = m.iter().filter(|x| x.id != leader).collect();
    let new_leader = agreed_leader_where(&rest, "a new leader", Duration::from_secs(15), |l| {
        l != leader
    })
    .await;
    eprintln!(
        "three nodes: leader {leader} shut down; node {new_leader} elected after {:?}",
        killed.elapsed()
    );
    let t = Instant::now();
    create_via(rest[0].c(), "one-down", 1, "propose with one node down").await;
    create_via(rest[1].c(), "one-down-2", 1, "propose with one node down").await;
    eprintln!(
        "three nodes: two proposals with one down took {:?}",
        t.elapsed()
    );
    topic_everywhere(&rest, "one-down-2").await;

    // The returning node catches up from its volume, even though its last append was torn
    // by a crash (half a record at the end of raft.log, a leftover vote.json.tmp).
    let torn = [0u8, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3];
    let clean_len = std::fs::metadata(m[leader as usize].dir.join("raft.log"))
        .expect("raft.log")
        .len() as usize;
    {
        use std::io::Write;
        let dir = &m[leader as usize].dir;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("raft.log"))
            .expect("raft.log");
        f.write_all(&torn).expect("torn append");
        std::fs::write(dir.join("vote.json.tmp"), b"{\"leader_id\":").expect("torn vote");
    }
    let back = Instant::now();
    m[leader as usize].start().await;
    within(
        "returning node ready",
        READY,
        m[leader as usize].c().ready(),
    )
    .await;
    eprintln!(
        "three nodes: returning node ready after {:?}",
        back.elapsed()
    );
    let log = std::fs::read(m[leader as usize].dir.join("raft.log")).expect("raft.log");
    assert!(
        log.get(clean_len..clean_len + torn.len()) != Some(&torn[..]),
        "the torn append was cut off before new entries were appended"
    );
    topic_everywhere(&all(&m), "one-down-2").await;
    assert_eq!(
        m[leader as usize].c().members().0,
        BTreeSet::from([0, 1, 2]),
        "the returning node rejoined, it did not found a new cluster"
    );

    // All three restarted keep their state.
    let before = m[0].c().state();
    stop_all(&mut m).await;
    let restart = Instant::now();
    for x in m.iter_mut() {
        x.start().await;
    }
    all_ready(&all(&m)).await;
    eprintln!(
        "three nodes: full restart ready after {:?}",
        restart.elapsed()
    );
    for x in &m {
        let s = x.c().state();
        assert_eq!(
            layout(&s.topics),
            layout(&before.topics),
            "node {} topics after restart",
            x.id
        );
        assert_eq!(
            s.brokers, before.brokers,
            "node {} brokers after restart",
            x.id
        );
    }
    create_via(m[2].c(), "after-restart", 1, "propose after restart").await;

    // A member restarting with its volume at another address is reached there.
    m[2].stop().await;
    m[2].port = free_port();
    let moved = Instant::now();
    m[2].start().await;
    within("moved node ready", READY, m[2].c().ready()).await;
    eprintln!(
        "three nodes: node 2 at a new address ready after {:?}",
        moved.elapsed()
    );
    create_via(m[0].c(), "after-move", 1, "propose after the move").await;
    topic_everywhere(&all(&m), "after-move").await;
    let addr = m[0]
        .c()
        .raft_metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&2)
        .map(|n| n.addr.clone());
    assert_eq!(addr, Some(m[2].addr()));
    assert_eq!(m[0].c().state().brokers[&2].cluster_addr, m[2].addr());
    stop_all(&mut m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_up_to_five_voters_then_learners_and_removal() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut m = three(root.path()).await;
    let seeds: Vec<String> = m.iter().map(|x| x.addr()).collect();

    // A fourth node joins from the seeds as a voter.
    let mut fourth = Member::new(root.path(), 3, free_port(), seeds.clone());
    fourth.start().await;
    within("node 3 ready", READY, fourth.c().ready()).await;
    let c0 = m[0].c().clone();
    membership_until(&c0, "node 3 is a voter", Duration::from_secs(10), |v, _| {
        *v == BTreeSet::from([0, 1, 2, 3])
    })
    .await;
    assert!(fourth.c().state().brokers.contains_key(&3));
    m.push(fourth);

    // Two more: five voters, the sixth stays a learner.
    for id in [4, 5] {
        let mut x = Member::new(root.path(), id, free_port(), seeds.clone());
        x.start().await;
        within(&format!("node {id} ready"), READY, x.c().ready()).await;
        m.push(x);
    }
    let (voters, learners) = membership_until(
        &c0,
        "5 voters + 1 learner",
        Duration::from_secs(10),
        |v, l| v.len() == 5 && l.len() == 1,
    )
    .await;
    eprintln!("six nodes: voters {voters:?}, learners {learners:?}");
    assert_eq!(voters, BTreeSet::from([0, 1, 2, 3, 4]));
    assert_eq!(learners, BTreeSet::from([5]));
    create_via(m[5].c(), "from-learner", 1, "propose on a learner").await;
    topic_everywhere(&all(&m), "from-learner").await;

    // Remove a voter (through a non-leader): the learner is promoted to keep five voters.
    let leader = agreed_leader(&all(&m), Duration::from_secs(10)).await;
    let victim = (1..5).find(|&i| i != leader).expect("a non-leader voter");
    let via = (0..5)
        .find(|&i| i != leader && i != victim)
        .expect("another node");
    m[via as usize]
        .c()
        .remove_node(victim)
        .await
        .expect("remove a voter");
    m[victim as usize].stop().await;
    let survivors: Vec<&Member> = m.iter().filter(|x| x.id != victim).collect();
    let c = survivors[0].c().clone();
    let (voters, learners) = membership_until(
        &c,
        "victim gone, learner promoted",
        Duration::from_secs(15),
        |v, l| !v.contains(&victim) && !l.contains(&victim) && v.len() == 5,
    )
    .await;
    eprintln!("after removing node {victim}: voters {voters:?}, learners {learners:?}");
    assert!(voters.contains(&5));
    assert!(learners.is_empty());
    // Removing a learner-less, non-member id is a no-op; removal of a learner works too.
    survivors[0]
        .c()
        .remove_node(victim)
        .await
        .expect("removing a non-member is a no-op");
    create_via(
        survivors[1].c(),
        "after-removal",
        1,
        "propose after removal",
    )
    .await;

    // Removing the leader itself: the others elect a new one among themselves.
    let old = agreed_leader(&survivors, Duration::from_secs(10)).await;
    let asker = survivors
        .iter()
        .find(|x| x.id != old)
        .expect("a non-leader")
        .c()
        .clone();
    asker.remove_node(old).await.expect("remove the leader");
    let rest: Vec<&Member> = survivors.into_iter().filter(|x| x.id != old).collect();
    let new = agreed_leader_where(
        &rest,
        "a leader other than the removed one",
        Duration::from_secs(15),
        |l| l != old && !asker.members().0.contains(&old),
    )
    .await;
    eprintln!(
        "removed leader {old}; new leader {new}; members {:?}",
        asker.members()
    );
    create_via(
        &asker,
        "after-leader-removal",
        1,
        "propose after removing the leader",
    )
    .await;

    // The removed (and stopped) voter restarts with its volume: it is added back.
    let t = Instant::now();
    m[victim as usize].start().await;
    within("removed node back", READY, m[victim as usize].c().ready()).await;
    membership_until(
        &asker,
        "removed node a voter again",
        Duration::from_secs(10),
        |v, _| v.contains(&victim),
    )
    .await;
    eprintln!(
        "removed node {victim} back as a voter after {:?}",
        t.elapsed()
    );
    assert!(m[victim as usize]
        .c()
        .state()
        .topics
        .contains_key("after-leader-removal"));
    stop_all(&mut m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_given_as_a_dns_name_is_resolved() {
    let root = tempfile::tempdir().expect("tempdir");
    let (p0, p1) = (free_port(), free_port());
    let seeds = vec![format!("localhost:{p0}"), format!("localhost:{p1}")];
    let mut a = Member::new(root.path(), 0, p0, seeds.clone());
    let mut b = Member::new(root.path(), 1, p1, seeds);
    b.start().await;
    a.start().await;
    all_ready(&[&a, &b]).await;
    assert_eq!(b.c().members().0, BTreeSet::from([0, 1]));
    create_via(b.c(), "dns", 1, "propose").await;
    topic_everywhere(&[&a, &b], "dns").await;

    // Without a quorum, propose gives up after its deadline naming the leader it tried.
    let leader = agreed_leader(&[&a, &b], Duration::from_secs(10)).await;
    let (gone, left) = if leader == 0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let gone_addr = gone.addr();
    gone.stop().await;
    let t = Instant::now();
    let res = within(
        "propose without a quorum",
        Duration::from_secs(20),
        left.c().propose(create_topic("no-quorum", 1)),
    )
    .await;
    let msg = match res {
        Err(e @ ClusterError::Deadline { .. }) => e.to_string(),
        other => panic!("propose without a quorum: {other:?}"),
    };
    eprintln!("no quorum: gave up after {:?}: {msg}", t.elapsed());
    assert!(msg.contains(&gone_addr), "{msg}");
    left.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_then_restart_and_a_new_member_gets_a_snapshot() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut m = three(root.path()).await;
    for i in 0..20 {
        create_via(m[i % 3].c(), &format!("c{i}"), 1, "propose").await;
    }
    topic_everywhere(&all(&m), "c19").await;
    for x in &m {
        let upto = x.c().compact().await.expect("compact").expect("a snapshot");
        let metrics = x.c().raft_metrics();
        until(
            &format!("node {} purged its log", x.id),
            Duration::from_secs(15),
            || {
                metrics
                    .borrow()
                    .purged
                    .is_some_and(|p| p.index >= upto)
                    .then_some(())
            },
        )
        .await;
        assert!(x.dir.join("snapshot.json").is_file());
    }
    // The log file holds only what follows the snapshot.
    let log_len = std::fs::metadata(m[0].dir.join("raft.log"))
        .expect("raft.log")
        .len();
    assert!(
        log_len < 4096,
        "raft.log still {log_len} bytes after compaction"
    );

    // A new member can no longer be sent the log from the start: it installs a snapshot.
    let seeds: Vec<String> = m.iter().map(|x| x.addr()).collect();
    let mut late = Member::new(root.path(), 3, free_port(), seeds);
    late.start().await;
    within("late node ready", READY, late.c().ready()).await;
    assert!(late.c().state().topics.contains_key("c19"));
    assert!(
        late.c().raft_metrics().borrow().snapshot.is_some(),
        "the late node installed a snapshot"
    );
    m.push(late);

    // Everyone restarts from snapshot + log.
    let before = m[0].c().state();
    stop_all(&mut m).await;
    for x in m.iter_mut() {
        x.start().await;
    }
    all_ready(&all(&m)).await;
    for x in &m {
        assert_eq!(
            layout(&x.c().state().topics),
            layout(&before.topics),
            "node {} after restart",
            x.id
        );
    }
    stop_all(&mut m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_volume_was_lost_is_removed_then_joins_again_with_the_same_id() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut m = three(root.path()).await;
    create_via(m[0].c(), "before-loss", 3, "propose").await;
    topic_everywhere(&all(&m), "before-loss").await;

    // Lose a follower's volume: stop it, delete its directory, start it with the same id and
    // seeds (what a StatefulSet does after its PVC was deleted).
    let leader = agreed_leader(&all(&m), Duration::from_secs(10)).await;
    let lost = (0..3).find(|&i| i != leader).expect("a follower") as usize;
    let membership_before = membership_index(m[leader as usize].c());
    m[lost].stop().await;
    std::fs::remove_dir_all(&m[lost].dir).expect("delete the lost volume");
    m[lost].start().await;
    all_ready(&[&m[lost]]).await;

    // The empty member is a voter again and has the whole state...
    let leader_c = m[leader as usize].c().clone();
    membership_until(
        &leader_c,
        "the member with the new volume is a voter again",
        Duration::from_secs(20),
        |v, _| *v == BTreeSet::from([0, 1, 2]),
    )
    .await;
    assert!(m[lost].c().state().topics.contains_key("before-loss"));
    // ...because the leader removed the member it was and added it anew: two membership
    // changes were committed. Without them the empty volume would have been taken for the old
    // member, with its votes forgotten.
    let membership_after = membership_index(&leader_c);
    assert!(
        membership_after > membership_before,
        "membership unchanged ({membership_before:?} -> {membership_after:?}): the lost member was taken back as it was"
    );

    // And the cluster goes on: a command proposed on the renewed member is applied everywhere.
    create_via(
        m[lost].c(),
        "after-loss",
        1,
        "propose on the renewed member",
    )
    .await;
    topic_everywhere(&all(&m), "after-loss").await;
    stop_all(&mut m).await;
}

#[tokio::test]
async fn bad_configs_are_refused_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ClusterConfig {
        node_id: 0,
        dir: dir.path().join("cluster"),
        listen: Some("0.0.0.0:0".parse().expect("addr")),
        seeds: vec![],
        me: record(0, String::new()),
        transport: Default::default(),
    };
    let err = Cluster::start(cfg.clone(), CancellationToken::new())
        .await
        .expect_err("an unspecified address cannot be advertised");
    assert!(
        err.to_string().contains("advertised cluster address"),
        "{err}"
    );
    let err = Cluster::start(
        ClusterConfig {
            node_id: -1,
            me: record(-1, "127.0.0.1:1".to_string()),
            ..cfg.clone()
        },
        CancellationToken::new(),
    )
    .await
    .expect_err("negative node id");
    assert!(err.to_string().contains("-1"), "{err}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = Cluster::start(
        ClusterConfig {
            listen: Some(addr),
            me: record(0, addr.to_string()),
            ..cfg
        },
        CancellationToken::new(),
    )
    .await
    .expect_err("port in use");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
