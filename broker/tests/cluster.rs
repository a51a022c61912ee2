//! Several brokers forming one cluster, driven by real Kafka clients (librdkafka and
//! kafka-python): partitions spread over all brokers and reachable from any bootstrap broker,
//! admin requests through a broker that is not the quorum leader, a consumer group coordinated
//! by a broker other than the one the client bootstrapped from, a client quota set through a
//! broker that is not the quorum leader (refused while a broker of an older version is live),
//! and a stopped broker (the quorum leader, too) that takes away only its own partitions and
//! brings them back.
//!
//! Brokers run in this process, each on its own runtime, on loopback with their own data
//! directories; a restarted broker comes back on the same ports, as a pod does.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::*;
use kafka_protocol::messages::{
    describe_quorum_request, elect_leaders_request, DescribeQuorumRequest, ElectLeadersRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use sluice_broker::cluster::state::{BrokerState, ClusterState, Command};
use sluice_broker::group::{partition_for, OFFSETS_TOPIC};

/// One broker of the test cluster.
struct Node {
    id: i32,
    /// More broker flags (benchmarks).
    extra: Vec<String>,
    rt: tokio::runtime::Runtime,
    broker: Option<sluice_broker::Broker>,
    dir: PathBuf,
    seeds: Vec<String>,
    /// This node's own loopback address: ports it frees on a stop cannot be taken by another
    /// test's listener in the meantime (they bind 127.0.0.1), so a restart gets them back.
    host: String,
    /// Fixed after the first start, so a restart keeps its addresses.
    kafka: Option<SocketAddr>,
    cluster: Option<SocketAddr>,
}

/// A loopback address no other node of this process uses (all of 127.0.0.0/8 is loopback).
fn unique_loopback() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("127.91.{}.{}", n / 250, n % 250 + 1)
}

impl Node {
    fn start(id: i32, dir: &Path, seeds: Vec<String>) -> Node {
        let mut n = Node {
            id,
            extra: Vec::new(),
            rt: broker_runtime(),
            broker: None,
            dir: dir.to_path_buf(),
            seeds,
            host: unique_loopback(),
            kafka: None,
            cluster: None,
        };
        n.boot();
        n
    }

    fn boot(&mut self) {
        let any_port = format!("{}:0", self.host);
        let kafka = self.kafka.map_or(any_port.clone(), |a| a.to_string());
        let cluster = self.cluster.map_or(any_port.clone(), |a| a.to_string());
        let mut args = vec![
            "sluice-broker".to_string(),
            "--data-dir".into(),
            self.dir.display().to_string(),
            "--listen".into(),
            kafka,
            "--http-listen".into(),
            any_port,
            "--node-id".into(),
            self.id.to_string(),
            "--cluster-listen".into(),
            cluster,
        ];
        if !self.seeds.is_empty() {
            args.push("--seeds".into());
            args.push(self.seeds.join(","));
        }
        args.extend(self.extra.iter().cloned());
        let config = sluice_broker::config::Config::parse_from(args);
        let broker = self
            .rt
            .block_on(sluice_broker::Broker::start(config))
            .unwrap_or_else(|e| panic!("broker {} start: {e}", self.id));
        self.kafka = Some(broker.kafka_addr());
        self.cluster = broker.context().cluster.cluster_addr();
        self.broker = Some(broker);
    }

    fn ctx(&self) -> &Arc<sluice_broker::context::BrokerContext> {
        self.broker
            .as_ref()
            .unwrap_or_else(|| panic!("broker {} is stopped", self.id))
            .context()
    }

    fn state(&self) -> Arc<ClusterState> {
        self.ctx().cluster.state()
    }

    fn bootstrap(&self) -> String {
        self.kafka.expect("started once").to_string()
    }

    /// A raw Kafka-protocol connection to it.
    fn raw(&self) -> RawClient {
        RawClient::connect(self.kafka.expect("started once"))
    }

    fn cluster_addr(&self) -> String {
        self.cluster.expect("cluster listener").to_string()
    }

    fn running(&self) -> bool {
        self.broker.is_some()
    }

    fn stop(&mut self) {
        if let Some(b) = self.broker.take() {
            self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), b.shutdown())
                    .await
                    .unwrap_or_else(|_| panic!("broker {} shutdown timed out", self.id))
                    .unwrap_or_else(|e| panic!("broker {} shutdown: {e}", self.id));
            });
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), b.shutdown()).await
            });
        }
    }
}

/// Three brokers: node 0 founds the cluster, 1 and 2 join through it. Returns once every
/// broker is ready and sees all three.
fn three_brokers(tmp: &Path) -> Vec<Node> {
    let n0 = Node::start(0, &tmp.join("b0"), vec![]);
    let seed = vec![n0.cluster_addr()];
    let n1 = Node::start(1, &tmp.join("b1"), seed.clone());
    let n2 = Node::start(2, &tmp.join("b2"), seed);
    let nodes = vec![n0, n1, n2];
    wait_for(
        "three brokers ready, each seeing all three",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            nodes
                .iter()
                .all(|n| {
                    let s = n.state();
                    n.ctx().cluster.is_ready()
                        && s.brokers.len() == 3
                        && s.brokers.values().all(|b| b.state == BrokerState::Active)
                })
                .then_some(())
        },
    );
    nodes
}

fn create_topic(node: &Node, name: &str, partitions: i32) {
    let admin = rd_admin(&node.bootstrap());
    let results = node
        .rt
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        ))
        .expect("create_topics request");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create {t} through broker {}: {e}", node.id));
    }
}

fn owners(state: &ClusterState, topic: &str) -> Vec<i32> {
    state.topics[topic]
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect()
}

/// A broker that is neither the quorum leader nor `except`.
fn non_leader(nodes: &[Node], except: i32) -> usize {
    let leader = nodes[0].ctx().cluster.leader();
    nodes
        .iter()
        .position(|n| Some(n.id) != leader && n.id != except && n.running())
        .expect("a non-leader broker")
}

#[test]
fn partitions_spread_over_three_brokers_and_any_broker_bootstraps_two_client_implementations() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let nodes = three_brokers(tmp.path());

    // Created through a broker that is not the quorum leader: forwarded and committed.
    let via = non_leader(&nodes, -1);
    create_topic(&nodes[via], "spread", 6);
    for n in &nodes {
        let s = wait_for(
            "every broker to know the topic",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let s = n.state();
                s.topics.contains_key("spread").then_some(s)
            },
        );
        assert_eq!(
            owners(&s, "spread").into_iter().collect::<BTreeSet<_>>(),
            BTreeSet::from([0, 1, 2]),
            "partitions placed on every broker"
        );
    }

    // librdkafka producer bootstrapped from broker 2 only: it learns every partition's
    // leader from Metadata and produces to all three brokers.
    let acked = rd_produce_all(
        &nodes[2].bootstrap(),
        "spread",
        None,
        0..90,
        &[("acks", "all")],
    );
    let partitions: BTreeSet<i32> = acked.iter().map(|(_, p, _)| *p).collect();
    let state = nodes[0].state();
    let brokers_written: BTreeSet<i32> = partitions
        .iter()
        .map(|p| state.topics["spread"].partitions[*p as usize].leader)
        .collect();
    assert_eq!(brokers_written, BTreeSet::from([0, 1, 2]));

    // Each broker stores only its own partitions.
    for n in &nodes {
        for (p, rec) in state.topics["spread"].partitions.iter().enumerate() {
            let local = n.ctx().logs.partition("spread", p as i32).is_some();
            assert_eq!(local, rec.leader == n.id, "broker {} partition {p}", n.id);
        }
    }

    // librdkafka reader bootstrapped from broker 0 reads everything back byte-exact.
    let all: Vec<i32> = (0..6).collect();
    let got = rd_consume_from_start(
        &nodes[0].bootstrap(),
        "spread",
        &all,
        90,
        Duration::from_secs(30),
    );
    assert_records_exact(&got, 0..90);

    // kafka-python consumer group: its coordinator is the leader of the group's partition of
    // __consumer_offsets, which the first FindCoordinator creates; the client bootstraps from
    // another broker and must be sent on.
    let coordinator = find_coordinator(&nodes[0], "spread-readers");
    let s = nodes[0].state();
    let p = partition_for(
        "spread-readers",
        s.topics[OFFSETS_TOPIC].partitions.len() as i32,
    );
    assert_eq!(
        coordinator,
        s.topics[OFFSETS_TOPIC].partitions[p as usize].leader
    );
    assert_eq!(
        s.topics[OFFSETS_TOPIC].replication_factor(),
        3,
        "min(3, three brokers) copies of the committed offsets"
    );
    let bootstrap = (coordinator + 1) % 3;
    let out = kp_group_consume(
        &nodes[bootstrap as usize].bootstrap(),
        "spread",
        "spread-readers",
        90,
        &["--linger", "0.5", "--timeout", "60"],
    );
    assert_records_exact(&parse_consumed_lines(&out.stdout), 0..90);
    assert_eq!(find_coordinator(&nodes[1], "spread-readers"), coordinator);
    assert_ne!(
        coordinator, bootstrap,
        "the coordinator is not the bootstrap broker"
    );
    // The commits are served by the coordinator.
    let committed: i64 = nodes[coordinator as usize]
        .ctx()
        .groups
        .committed_offsets()
        .iter()
        .filter(|c| c.group == "spread-readers")
        .map(|c| c.offset)
        .sum();
    assert_eq!(committed, 90, "committed offsets on the coordinator");
}

/// The coordinator of `group` as FindCoordinator through `via` answers it.
/// A client quota set through a broker that is not the quorum leader (Kafka's own tool) is
/// forwarded, reaches every broker's metadata, and is described by any broker.
#[test]
fn a_client_quota_set_through_any_broker_reaches_every_broker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let nodes = three_brokers(tmp.path());
    let via = non_leader(&nodes, -1);
    let configs = |node: &Node, args: &[&str]| kafka_configs(&node.bootstrap(), args);
    let set_app = [
        "--alter",
        "--entity-type",
        "clients",
        "--entity-name",
        "app",
        "--add-config",
        "producer_byte_rate=4096",
    ];
    // A live broker of a version from before client quotas (it answers Probe without
    // features): a quota entry would stop it following the metadata log, so none is proposed.
    let old = old_version_broker(&nodes[0]);
    let (ok, said) = configs(&nodes[via], &set_app);
    assert!(
        !ok && said.contains("not every broker can read client_quotas yet")
            && said.contains(&format!(
                "broker {OLD_ID} runs a version without client_quotas"
            )),
        "with an older broker live: {said}"
    );
    assert!(nodes.iter().all(|n| n.state().client_quotas.is_empty()));
    nodes[0]
        .rt
        .block_on(
            nodes[0]
                .ctx()
                .cluster
                .propose(Command::UnregisterBroker { id: OLD_ID }),
        )
        .expect("the older broker unregistered");
    drop(old);

    let (ok, said) = configs(&nodes[via], &set_app);
    assert!(ok, "through broker {}: {said}", nodes[via].id);
    wait_for(
        "every broker's metadata has the quota",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            nodes
                .iter()
                .all(|n| {
                    n.state()
                        .client_quotas
                        .iter()
                        .any(|q| q.values.get("producer_byte_rate") == Some(&4096))
                })
                .then_some(())
        },
    );
    let other = &nodes[(via + 1) % nodes.len()];
    let (ok, said) = configs(other, &["--describe", "--entity-type", "clients"]);
    assert!(
        ok && said.contains("producer_byte_rate=4096.0"),
        "described by broker {}: {said}",
        other.id
    );
}

/// The broker id [`old_version_broker`] registers.
const OLD_ID: i32 = 90;

/// Registers broker [`OLD_ID`] in the cluster's metadata through `node`, served by a task
/// that answers the inter-broker Probe as versions from before metadata features did (no
/// `features`); the task ends when the returned runtime is dropped.
fn old_version_broker(node: &Node) -> tokio::runtime::Runtime {
    use sluice_broker::cluster::network::{self, ProbeReply, Request, Response};
    use sluice_broker::cluster::state::BrokerRecord;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(body)) = network::read_frame(&mut stream).await {
                    let answer = match serde_json::from_slice::<Request>(&body) {
                        Ok(Request::Probe) => Response::Probe(ProbeReply {
                            node_id: OLD_ID,
                            member: true,
                            leader: None,
                            features: Vec::new(),
                        }),
                        _ => Response::Error("not served by this test broker".into()),
                    };
                    if network::write_frame(&mut stream, &answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let record = BrokerRecord {
        id: OLD_ID,
        host: "127.0.0.1".into(),
        port: 1,
        listeners: Vec::new(),
        cluster_addr: addr.to_string(),
        rack: None,
        state: BrokerState::Active,
        fresh_volume: false,
    };
    node.rt
        .block_on(node.ctx().cluster.propose(Command::RegisterBroker(record)))
        .expect("the older broker registered");
    rt
}

fn find_coordinator(via: &Node, group: &str) -> i32 {
    use kafka_protocol::messages::FindCoordinatorRequest;
    let mut c = via.raw();
    let resp = c.send(
        &FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())),
        3,
    );
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    resp.node_id.0
}

#[test]
fn a_stopped_broker_takes_away_only_its_partitions_and_a_new_leader_keeps_admin_working() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = three_brokers(tmp.path());
    create_topic(&nodes[0], "t", 3);
    let s = nodes[0].state();
    let owner_of: Vec<i32> = owners(&s, "t");
    assert_eq!(
        owner_of.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1, 2])
    );
    for p in 0..3 {
        rd_produce_all(
            &nodes[0].bootstrap(),
            "t",
            Some(p),
            (p as u64 * 100)..(p as u64 * 100 + 10),
            &[("acks", "all")],
        );
    }

    // Stop the quorum leader: the other two elect a new one.
    let old_leader = nodes[0].ctx().cluster.leader().expect("a leader");
    let gone = nodes
        .iter()
        .position(|n| n.id == old_leader)
        .expect("leader node");
    nodes[gone].stop();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != gone).collect();
    let new_leader = wait_for(
        "a new quorum leader among the survivors",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let l = nodes[survivors[0]].ctx().cluster.leader()?;
            (l != old_leader && nodes[survivors[1]].ctx().cluster.leader() == Some(l)).then_some(l)
        },
    );
    // The stopped broker is out: it handed its leaderships over as it stopped (controlled
    // shutdown), or the new quorum leader fenced it. Metadata reports its one-copy partition
    // offline.
    wait_for(
        "the stopped broker shut down or fenced",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            (!nodes[survivors[0]].state().brokers[&old_leader]
                .state
                .is_alive())
            .then_some(())
        },
    );
    tracing_free_note(old_leader, new_leader);

    // kafka-leader-election: the stopped broker, the preferred (and only) replica, is gone, so
    // there is nobody to elect.
    let lost = owner_of
        .iter()
        .position(|o| *o == old_leader)
        .expect("the stopped broker owned a partition") as i32;
    let mut raw = nodes[survivors[0]].raw();
    let el = raw.send(
        &ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            elect_leaders_request::TopicPartitions::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![lost]),
        ])),
        2,
    );
    let r = &el.replica_election_results[0].partition_result[0];
    assert_eq!(
        r.error_code, 80,
        "PREFERRED_LEADER_NOT_AVAILABLE: {:?}",
        r.error_message
    );
    // kafka-metadata-quorum asked of the follower: passed on to the new leader, which knows
    // how far both survivors' logs reach (a follower alone would report -1 for the other).
    let follower = survivors
        .iter()
        .copied()
        .find(|i| nodes[*i].id != new_leader)
        .expect("a follower survivor");
    let mut raw = nodes[follower].raw();
    let q = raw.send(
        &DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
                .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
        ]),
        2,
    );
    let qp = &q.topics[0].partitions[0];
    assert_eq!(qp.leader_id.0, new_leader);
    let leo: BTreeMap<i32, i64> = qp
        .current_voters
        .iter()
        .map(|v| (v.replica_id.0, v.log_end_offset))
        .collect();
    assert_eq!(leo.len(), 3, "{leo:?}");
    for i in &survivors {
        assert!(leo[&nodes[*i].id] > 0, "{leo:?}");
    }

    // The survivors' partitions take writes and serve reads, bootstrapped from a survivor.
    let bootstrap = nodes[survivors[0]].bootstrap();
    for (p, owner) in owner_of.iter().enumerate() {
        if *owner == old_leader {
            continue;
        }
        rd_produce_all(
            &bootstrap,
            "t",
            Some(p as i32),
            (p as u64 * 100 + 10)..(p as u64 * 100 + 15),
            &[("acks", "all")],
        );
        let got = rd_consume_from_start(&bootstrap, "t", &[p as i32], 15, Duration::from_secs(30));
        assert_records_exact(&got, (p as u64 * 100)..(p as u64 * 100 + 15));
    }
    // Admin through the survivors: a new topic lands only on live brokers.
    create_topic(&nodes[survivors[1]], "during", 4);
    // The other survivor applies the creation a few milliseconds after the one that proposed it.
    let s = wait_for(
        "the other survivor to know the new topic",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let s = nodes[survivors[0]].state();
            s.topics.contains_key("during").then_some(s)
        },
    );
    assert!(
        !owners(&s, "during").contains(&old_leader),
        "no partition placed on the stopped broker: {:?}",
        owners(&s, "during")
    );

    // The stopped broker returns with its volume: its partition is back with its records.
    nodes[gone].boot();
    wait_for(
        "the returning broker active again",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            (nodes[gone].ctx().cluster.is_ready()
                && nodes[survivors[0]].state().brokers[&old_leader].state == BrokerState::Active)
                .then_some(())
        },
    );
    let p = owner_of
        .iter()
        .position(|o| *o == old_leader)
        .expect("the stopped broker owned a partition") as i32;
    let base = p as u64 * 100;
    rd_produce_all(
        &nodes[survivors[0]].bootstrap(),
        "t",
        Some(p),
        (base + 10)..(base + 15),
        &[("acks", "all")],
    );
    let got = rd_consume_from_start(
        &nodes[survivors[1]].bootstrap(),
        "t",
        &[p],
        15,
        Duration::from_secs(30),
    );
    assert_records_exact(&got, base..(base + 15));
    // It learns the topic created while it was away, too.
    wait_for(
        "the returned broker to know the topic created while it was away",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            nodes[gone]
                .state()
                .topics
                .contains_key("during")
                .then_some(())
        },
    );
}

/// Keeps the leader ids in the test output (useful when the test fails later on).
fn tracing_free_note(old: i32, new: i32) {
    eprintln!("quorum leader {old} stopped; new leader {new}");
}

/// Moves `topic`-`partition` to `target` with Kafka's AlterPartitionReassignments, sent to
/// broker `via`.
fn reassign(via: &Node, topic: &str, partition: i32, target: Option<i32>) -> i16 {
    reassign_replicas(via, topic, partition, target.map(|t| vec![t]))
}

/// Gives a partition the replica list `replicas` (`None`: cancels its reassignment).
fn reassign_replicas(via: &Node, topic: &str, partition: i32, replicas: Option<Vec<i32>>) -> i16 {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId, TopicName};
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                topic.to_string(),
            )))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(
                    replicas.map(|r| r.into_iter().map(BrokerId).collect()),
                )])]);
    let mut c = via.raw();
    let resp = c.send(&req, 0);
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    resp.responses[0].partitions[0].error_code
}

/// The partitions being moved, as ListPartitionReassignments reports them.
fn reassignments(via: &Node) -> Vec<(String, i32, Vec<i32>)> {
    use kafka_protocol::messages::ListPartitionReassignmentsRequest;
    let mut c = via.raw();
    let resp = c.send(
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
        0,
    );
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.as_str().to_string(),
                    p.partition_index,
                    p.replicas.iter().map(|b| b.0).collect(),
                )
            })
        })
        .collect()
}

#[test]
fn a_partition_moves_under_continuous_acks_all_produce_with_every_acknowledged_record_exactly_once()
{
    let tmp = tempfile::tempdir().expect("tempdir");
    let nodes = three_brokers(tmp.path());
    create_topic(&nodes[0], "moving", 1);
    let from = owners(&nodes[0].state(), "moving")[0];
    let to = (from + 1) % 3;

    // An idempotent acks=all producer writes without pause, bootstrapped from a third broker.
    let bootstrap = nodes[((from + 2) % 3) as usize].bootstrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let producer = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || {
            let p = rd_producer(
                &bootstrap,
                &[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    ("linger.ms", "2"),
                    ("message.timeout.ms", "60000"),
                ],
            );
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < 200_000 {
                rd_send(&p, "moving", Some(0), i);
                i += 1;
                sent.store(i, std::sync::atomic::Ordering::SeqCst);
                p.poll(Duration::from_millis(1));
            }
            use rdkafka::producer::Producer;
            p.flush(Duration::from_secs(60))
                .expect("flush the producer");
            let acked = p.context().acked.lock().expect("lock").clone();
            let failed = p.context().failed.lock().expect("lock").clone();
            (i, acked, failed)
        })
    };
    let acked_before = |n: u64| {
        wait_for(
            "records sent before the move",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || (sent.load(std::sync::atomic::Ordering::SeqCst) >= n).then_some(()),
        )
    };
    acked_before(300);

    assert_eq!(reassign(&nodes[0], "moving", 0, Some(to)), 0);
    let listed = reassignments(&nodes[1]);
    // Either still in progress (listed with both brokers, the target first, as Kafka lists
    // them) or already finished.
    assert!(
        listed.is_empty() || listed == vec![("moving".to_string(), 0, vec![to, from])],
        "{listed:?}"
    );
    let epoch = wait_for(
        "the move to finish",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let p = nodes[0].state().topics["moving"].partitions[0].clone();
            (p.leader == to && !p.is_reassigning()).then_some(p.leader_epoch)
        },
    );
    assert_eq!(epoch, 1, "the takeover bumps the leader epoch");
    // Each broker answers the listing from its own copy of the metadata, which follows the
    // quorum by a few milliseconds: the third broker stops listing the move once it applies
    // the end.
    wait_for(
        "the third broker to stop listing the move",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || reassignments(&nodes[2]).is_empty().then_some(()),
    );
    let moved_at = sent.load(std::sync::atomic::Ordering::SeqCst);
    acked_before(moved_at + 300);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (total, acked, failed) = producer.join().expect("producer thread");
    assert!(
        failed.is_empty(),
        "{} failed, first {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(acked.len() as u64, total, "every record acknowledged");

    // Every acknowledged record is in the new owner's log exactly once, at the offset its
    // acknowledgement named.
    let got = rd_consume_from_start(
        &nodes[from as usize].bootstrap(),
        "moving",
        &[0],
        total as usize,
        Duration::from_secs(60),
    );
    assert_records_exact(&got, 0..total);
    let by_offset: std::collections::BTreeMap<i64, u64> =
        got.iter().map(|c| (c.offset, c.index())).collect();
    for (idx, _, offset) in &acked {
        assert_eq!(
            by_offset.get(offset),
            Some(idx),
            "acknowledged offset {offset}"
        );
    }
    // The old owner dropped its copy; the new one stores it.
    wait_for(
        "the old owner to drop its copy",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            nodes[from as usize]
                .ctx()
                .logs
                .partition("moving", 0)
                .is_none()
                .then_some(())
        },
    );
    assert!(nodes[to as usize]
        .ctx()
        .logs
        .partition("moving", 0)
        .is_some());
    eprintln!("moved with {total} records produced, {moved_at} sent when the move finished");
}

fn unregister(via: &Node, broker: i32) -> (i16, Option<String>) {
    use kafka_protocol::messages::{BrokerId, UnregisterBrokerRequest};
    let mut c = via.raw();
    let resp = c.send(
        &UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker)),
        0,
    );
    (
        resp.error_code,
        resp.error_message.map(|m| m.as_str().to_string()),
    )
}

fn group_consume(bootstrap: &str, topic: &str, group: &str, count: u64) -> Vec<Consumed> {
    let out = kp_group_consume(
        bootstrap,
        topic,
        group,
        count,
        &["--linger", "1", "--timeout", "60"],
    );
    parse_consumed_lines(&out.stdout)
}

#[test]
fn a_broker_is_drained_then_unregistered_and_a_new_broker_joins_and_gets_partitions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut nodes = three_brokers(tmp.path());
    create_topic(&nodes[0], "d", 3);
    rd_produce_all(&nodes[0].bootstrap(), "d", None, 0..30, &[("acks", "all")]);
    // The group's coordinator (the leader of its offsets partition) is the broker we remove.
    let got = group_consume(&nodes[0].bootstrap(), "d", "drainers", 30);
    assert_records_exact(&got, 0..30);
    let gone = find_coordinator(&nodes[0], "drainers");
    let stay: Vec<i32> = (0..3).filter(|i| *i != gone).collect();

    // Refused while it owns partitions; the message says what is left.
    let (code, msg) = unregister(&nodes[stay[0] as usize], gone);
    assert_ne!(code, 0);
    assert!(
        msg.as_deref().unwrap_or("").contains("partition"),
        "{msg:?}"
    );

    // Move its partitions off, as the operator does before a scale-down.
    let moving: Vec<i32> = owners(&nodes[0].state(), "d")
        .iter()
        .enumerate()
        .filter(|(_, o)| **o == gone)
        .map(|(p, _)| p as i32)
        .collect();
    assert!(!moving.is_empty());
    for p in &moving {
        assert_eq!(
            reassign(&nodes[stay[0] as usize], "d", *p, Some(stay[1])),
            0
        );
    }
    wait_for(
        "the topic's partitions moved off",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            nodes[0]
                .state()
                .partitions_of(gone)
                .iter()
                .all(|(t, _)| t == OFFSETS_TOPIC)
                .then_some(())
        },
    );

    // Now only its copies of __consumer_offsets keep it (and with them its coordinator
    // role): refused, naming them; once they move to the two brokers that stay, it can go.
    let (code, msg) = unregister(&nodes[stay[0] as usize], gone);
    assert_ne!(code, 0, "still holds offsets replicas");
    assert!(
        msg.as_deref().unwrap_or("").contains(OFFSETS_TOPIC),
        "{msg:?}"
    );
    for (p, rec) in nodes[0].state().topics[OFFSETS_TOPIC]
        .partitions
        .iter()
        .enumerate()
    {
        if rec.replicas.contains(&gone) {
            let code = reassign_replicas(
                &nodes[stay[0] as usize],
                OFFSETS_TOPIC,
                p as i32,
                Some(stay.clone()),
            );
            assert_eq!(code, 0);
        }
    }
    wait_for(
        "UnregisterBroker to succeed once the offsets partitions moved",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || (unregister(&nodes[stay[1] as usize], gone).0 == 0).then_some(()),
    );
    let s = nodes[stay[0] as usize].state();
    assert!(!s.brokers.contains_key(&gone));
    assert!(stay.contains(&find_coordinator(&nodes[stay[0] as usize], "drainers")));
    wait_for(
        "the removed broker to leave the quorum",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let (voters, learners) = nodes[stay[0] as usize].ctx().cluster.members();
            (!voters.contains(&gone) && !learners.contains(&gone)).then_some(())
        },
    );
    nodes[gone as usize].stop();

    // The group resumes from the offsets it committed at its old coordinator.
    rd_produce_all(
        &nodes[stay[0] as usize].bootstrap(),
        "d",
        None,
        30..40,
        &[("acks", "all")],
    );
    let got = group_consume(&nodes[stay[1] as usize].bootstrap(), "d", "drainers", 10);
    assert_records_exact(&got, 30..40);

    // A new broker joins through a seed and receives new partitions.
    let seed = vec![nodes[stay[0] as usize].cluster_addr()];
    let newcomer = Node::start(3, &tmp.path().join("b3"), seed);
    wait_for(
        "the new broker ready and registered",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            (newcomer.ctx().cluster.is_ready()
                && nodes[stay[0] as usize].state().brokers.contains_key(&3))
            .then_some(())
        },
    );
    create_topic(&newcomer, "after", 3);
    let s = newcomer.state();
    assert!(
        owners(&s, "after").contains(&3),
        "{:?}",
        owners(&s, "after")
    );
    assert!(!owners(&s, "after").contains(&gone));
    rd_produce_all(
        &newcomer.bootstrap(),
        "after",
        None,
        0..30,
        &[("acks", "all")],
    );
    let got = rd_consume_from_start(
        &nodes[stay[0] as usize].bootstrap(),
        "after",
        &[0, 1, 2],
        30,
        Duration::from_secs(30),
    );
    assert_records_exact(&got, 0..30);
}

#[test]
fn reassignment_requests_are_checked_and_refused_with_kafka_errors() {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId, TopicName};
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = Node::start(0, &tmp.path().join("b0"), vec![]);
    wait_for(
        "a single-node cluster",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || node.ctx().cluster.is_ready().then_some(()),
    );
    create_topic(&node, "r", 1);
    let ask = |topic: &str, replicas: Option<Vec<i32>>| {
        let req = AlterPartitionReassignmentsRequest::default().with_topics(vec![
            ReassignableTopic::default()
                .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                    topic.to_string(),
                )))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))]),
        ]);
        let mut c = node.raw();
        let resp = c.send(&req, 0);
        let p = &resp.responses[0].partitions[0];
        (
            p.error_code,
            p.error_message
                .as_ref()
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
        )
    };
    // A replica on a broker that is not registered (this cluster has one broker).
    let (code, msg) = ask("r", Some(vec![0, 1]));
    assert_eq!(code, 39, "{msg}");
    assert!(msg.contains("broker 1 is not registered"), "{msg}");
    // The same broker twice.
    let (code, msg) = ask("r", Some(vec![0, 0]));
    assert_eq!(code, 39, "{msg}");
    assert!(msg.contains("none twice"), "{msg}");
    // A broker that does not exist.
    let (code, msg) = ask("r", Some(vec![7]));
    assert_eq!(code, 39, "{msg}");
    assert!(msg.contains("broker 7"), "{msg}");
    // An unknown topic.
    assert_eq!(ask("nope", Some(vec![0])).0, 3);
    // Cancelling when nothing moves.
    assert_eq!(ask("r", None).0, 85);
    // Assigning the current owner is accepted and moves nothing.
    assert_eq!(ask("r", Some(vec![0])).0, 0);
    assert!(reassignments(&node).is_empty());
    // A single-node cluster refuses to unregister its only broker while it owns partitions.
    let (code, msg) = unregister(&node, 0);
    assert_ne!(code, 0);
    assert!(msg.unwrap_or_default().contains("r-0"));
}

#[test]
fn a_volume_refuses_to_start_under_another_node_id() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("b");
    let mut node = Node::start(2, &dir, vec![]);
    node.stop();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let config = sluice_broker::config::Config::parse_from([
        "sluice-broker",
        "--data-dir",
        &dir.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--node-id",
        "5",
        "--cluster-listen",
        "127.0.0.1:0",
    ]);
    let err = rt
        .block_on(sluice_broker::Broker::start(config))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("--node-id") && err.contains("node 2"), "{err}");
    drop(rt);
    // Under its own id it starts again.
    node.boot();
}

/// Measurement, run by hand (release build recommended):
/// `SLUICE_MOVE_MIB=1024 cargo test --release -p sluice-broker --test cluster move_benchmark -- --ignored --nocapture`
///
/// Loads one partition with SLUICE_MOVE_MIB MiB (1 KiB records), then moves it to the other
/// broker while a probe producer (idempotent, acks=all) writes a record every 5 ms; reports the
/// move's duration and the probe's worst delivery latency (what clients see of the handover).
#[test]
#[ignore = "measurement, run by hand"]
fn move_benchmark() {
    use rdkafka::producer::Producer;
    let mib: u64 = std::env::var("SLUICE_MOVE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let tmp = tempfile::tempdir().expect("tempdir");
    let fast = |id: i32, seeds: Vec<String>| {
        let mut n = Node::start(id, &tmp.path().join(format!("b{id}")), seeds);
        n.stop();
        n.extra = vec!["--fsync".into(), "interval".into()];
        n.boot();
        n
    };
    let n0 = fast(0, vec![]);
    let n1 = fast(1, vec![n0.cluster_addr()]);
    wait_for(
        "two brokers",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (n1.ctx().cluster.is_ready() && n0.state().brokers.len() == 2).then_some(()),
    );
    create_topic(&n0, "big", 1);
    let from = owners(&n0.state(), "big")[0];
    let to = 1 - from;

    let load_started = std::time::Instant::now();
    let p = rd_producer(
        &n0.bootstrap(),
        &[
            ("acks", "1"),
            ("linger.ms", "20"),
            ("batch.size", "1000000"),
            ("queue.buffering.max.kbytes", "262144"),
        ],
    );
    let value = vec![b'v'; 1024];
    let records = mib * 1024;
    for i in 0..records {
        let key = i.to_be_bytes();
        let mut rec = rdkafka::producer::BaseRecord::with_opaque_to("big", i as usize)
            .key(&key[..])
            .payload(&value[..])
            .partition(0);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(600)).expect("flush the load");
    assert!(p.context().failed.lock().expect("lock").is_empty());
    let load_secs = load_started.elapsed().as_secs_f64();
    let size = n0
        .ctx()
        .logs
        .partition("big", 0)
        .expect("local")
        .size_bytes();
    eprintln!(
        "loaded {records} records, {:.0} MiB on disk, in {load_secs:.1} s",
        size as f64 / 1048576.0
    );

    // The probe: one acks=all record every 5 ms; delivery latency per record.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bootstrap = n1.bootstrap();
    let probe = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let p = rd_producer(
                &bootstrap,
                &[
                    ("acks", "all"),
                    ("enable.idempotence", "true"),
                    ("linger.ms", "0"),
                ],
            );
            let mut sent = Vec::new();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                rd_send(&p, "big", Some(0), 1_000_000_000 + i);
                sent.push(std::time::Instant::now());
                i += 1;
                p.poll(Duration::from_millis(5));
            }
            p.flush(Duration::from_secs(60)).expect("flush the probe");
            let failed = p.context().failed.lock().expect("lock").len();
            let acked_at = p.context().acked_at.lock().expect("lock").clone();
            (sent, acked_at, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let started = std::time::Instant::now();
    assert_eq!(reassign(&n0, "big", 0, Some(to)), 0);
    wait_for(
        "the move",
        Duration::from_secs(3600),
        Duration::from_millis(20),
        || (n0.state().topics["big"].partitions[0].leader == to).then_some(()),
    );
    let move_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, acked_at, failed) = probe.join().expect("probe");
    let worst = acked_at
        .iter()
        .filter_map(|(idx, at)| {
            let i = usize::try_from(idx - 1_000_000_000).ok()?;
            Some(at.duration_since(*sent.get(i)?))
        })
        .max()
        .unwrap_or_default();
    eprintln!(
        "moved {:.0} MiB in {move_secs:.1} s ({:.1} MiB/s); probe: {} records, {failed} failed, worst acks=all latency {:?}",
        size as f64 / 1048576.0,
        size as f64 / 1048576.0 / move_secs,
        sent.len(),
        worst
    );
    assert_eq!(failed, 0);
}
