//! More operator scenarios against the real control plane with real broker processes: queue
//! settings and `queueDeletionPolicy` on the brokers, operator failover in the middle of a config
//! roll, a broker pod whose node is gone, a scale-down that does not fit on the brokers that
//! stay, a broker that cannot start in the middle of a roll, `autoRebalance` after a
//! scale-up, and a broker whose volume is lost.
//!
//! One scenario per namespace; run.sh runs the tests one at a time. Each test makes sure a live
//! operator is running (`e2e/scripts/operator.sh start` when `e2e/.work/operator.pid` names no
//! live process), so the tests do not depend on one another.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::{Client, ResourceExt};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_e2e::harness::{self, kubectl};
use sluice_e2e::mq::{
    self, apply_yaml, condition, operator_pid, pod_ip, pod_is_ready, wait_available, work,
};
use sluice_operator::crd::MessageQueue;

const OPERATOR_NS: &str = "sluice-system";
const CONFIG_HASH: &str = "sluice.dev/config-hash";

mod kafka;

/// Topic names a broker reports.
fn topics_of(bootstrap: &str) -> Result<BTreeSet<String>, String> {
    let md = kafka::metadata(bootstrap)?;
    Ok(md.topics().iter().map(|t| t.name().to_string()).collect())
}

async fn topics_at(bootstrap: &str) -> Result<BTreeSet<String>, String> {
    let b = bootstrap.to_string();
    tokio::task::spawn_blocking(move || topics_of(&b))
        .await
        .map_err(|e| e.to_string())?
}

/// Produces the `n` records `read_back` checks to partition 0.
async fn produce(bootstrap: &str, topic: &str, n: usize) {
    kafka::produce(bootstrap, topic, 0, &kafka::numbered("more", n)).await;
}

/// Reads the first `n` records of partition 0 and checks they are the ones `produce` wrote.
async fn read_back(bootstrap: &str, topic: &str, n: usize, what: &str) {
    let got = kafka::read_partition0(bootstrap, topic, n, what).await;
    assert_eq!(
        got,
        kafka::numbered("more", n),
        "{what}: the records of {topic} at {bootstrap}"
    );
}

async fn bootstraps(pods: &Api<Pod>, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        out.push(format!("{}:9092", pod_ip(pods, n).await));
    }
    out
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn queue_retention_reaches_brokers_and_deletion_policy_retain_keeps_delete_removes() {
    let (client, ns) = mq::setup("operator_more_queue_settings", "qset").await;
    let mq = |policy: &str, queues: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: s}}\n\
             spec: {{replicas: 2, storage: {{size: 1Gi}}, config: {{autoCreateTopics: false}}, \
             queueDeletionPolicy: {policy}, queues: [{queues}]}}\n"
        )
    };
    apply_yaml(
        &ns.name,
        &mq(
            "Retain",
            "{name: keep, retentionMs: 3600000}, {name: dropped}",
        ),
    );
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "s", 2, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let brokers = bootstraps(&pods, &["s-0", "s-1"]).await;
    let brokers = &brokers;

    // Waits until every broker reports retention.ms of `keep` = `want` and `check` holds for
    // its topic list.
    async fn converge(
        brokers: &[String],
        want: &str,
        what: &str,
        check: impl Fn(&BTreeSet<String>) -> bool + Copy,
    ) {
        harness::wait_for(what, Duration::from_secs(90), || async move {
            let mut seen = Vec::new();
            for b in brokers {
                let v = kafka::topic_config(b, "keep", "retention.ms").await?;
                let topics = topics_at(b).await?;
                seen.push((b.clone(), v.clone(), topics.clone()));
                if v.as_deref() != Some(want) || !check(&topics) {
                    return Err(format!("{seen:?}"));
                }
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    converge(
        brokers,
        "3600000",
        "keep retention.ms=3600000 and dropped on every broker",
        |t| t.contains("dropped"),
    )
    .await;

    // A retention change reaches every broker (IncrementalAlterConfigs from the operator).
    apply_yaml(
        &ns.name,
        &mq(
            "Retain",
            "{name: keep, retentionMs: 7200000}, {name: dropped}",
        ),
    );
    converge(
        brokers,
        "7200000",
        "keep retention.ms=7200000 on every broker",
        |_| true,
    )
    .await;

    // Retain: `dropped` leaves the spec; a later pass (proved by the next retention change
    // landing) has left the topic on every broker.
    apply_yaml(
        &ns.name,
        &mq("Retain", "{name: keep, retentionMs: 5400000}"),
    );
    converge(
        brokers,
        "5400000",
        "retention 5400000 applied after removing dropped under Retain",
        |_| true,
    )
    .await;
    for b in brokers {
        let t = topics_at(b).await.expect("metadata");
        assert!(
            t.contains("dropped"),
            "queueDeletionPolicy Retain kept topic dropped at {b}: {t:?}"
        );
    }

    // A topic the operator did not create (made here with the admin client, through one
    // broker: the brokers are one cluster, so every broker lists it).
    let b = &brokers[0];
    let a = kafka::admin(b).expect("admin");
    let res = a
        .create_topics(
            &[NewTopic::new("manual", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("CreateTopics");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("create {t} at {b}: {e:?}"));
    }

    // Delete: a queue the operator created is removed from every broker once it leaves the spec;
    // `dropped` (released under Retain) and `manual` (never the operator's) stay.
    apply_yaml(
        &ns.name,
        &mq("Delete", "{name: keep, retentionMs: 5400000}, {name: gone}"),
    );
    converge(
        brokers,
        "5400000",
        "queue gone created on every broker",
        |t| t.contains("gone"),
    )
    .await;
    apply_yaml(
        &ns.name,
        &mq("Delete", "{name: keep, retentionMs: 1800000}"),
    );
    converge(
        brokers,
        "1800000",
        "queue gone deleted from every broker under Delete",
        |t| !t.contains("gone"),
    )
    .await;
    for b in brokers {
        let t = topics_at(b).await.expect("metadata");
        assert!(
            t.contains("dropped") && t.contains("manual") && t.contains("keep"),
            "under Delete only the operator's own removed queue goes; at {b}: {t:?}"
        );
    }
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}

/// A second operator process; killed on drop unless handed over to operator.sh's pid file.
struct Standby {
    child: Option<Child>,
}

impl Drop for Standby {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

fn leader_gauge(addr: &str) -> Result<String, String> {
    let text = http_get(addr, "/metrics")?;
    text.lines()
        .find(|l| l.starts_with("sluice_operator_leader "))
        .map(|l| l.trim_start_matches("sluice_operator_leader ").to_string())
        .ok_or_else(|| format!("no sluice_operator_leader in {addr}/metrics"))
}

async fn lease(client: &Client) -> (String, Option<String>, i32) {
    let out = kubectl(
        &[
            "get",
            "sa",
            "-n",
            OPERATOR_NS,
            "-l",
            "app.kubernetes.io/instance=sluice",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
        None,
    )
    .expect("kubectl");
    let name = out.stdout.trim().to_string();
    assert!(!name.is_empty(), "chart ServiceAccount: {}", out.stderr);
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NS);
    let l = leases.get(&name).await.expect("the operator's Lease");
    let spec = l.spec.unwrap_or_default();
    (
        name,
        spec.holder_identity,
        spec.lease_transitions.unwrap_or(0),
    )
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn operator_failover_one_leader_acts_and_the_standby_finishes_a_roll() {
    let (client, ns) = mq::setup("operator_more_failover", "failover").await;
    let leader_pid = operator_pid().expect("operator pid");
    let (lease_name, holder, transitions) = lease(&client).await;
    let leader_id = holder.expect("the running operator holds the Lease");
    assert!(
        leader_id.starts_with("operator-host-"),
        "holder {leader_id}"
    );

    // The second instance: same kubeconfig (the chart ServiceAccount's token), same Lease.
    let bin = harness::repo_root().join("target/debug/sluice-operator");
    let log = std::fs::File::create(work().join("operator-standby.log")).expect("log");
    let log2 = log.try_clone().expect("log");
    let standby_id = "operator-standby-e2e";
    let standby_http = "127.0.2.2:8080";
    let mut standby = Standby {
        child: Some(
            Command::new(&bin)
                .args([
                    "run",
                    &format!("--http-listen={standby_http}"),
                    &format!("--lease-name={lease_name}"),
                ])
                .env("KUBECONFIG", work().join("operator.kubeconfig"))
                .env("POD_NAMESPACE", OPERATOR_NS)
                .env("POD_NAME", standby_id)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", bin.display())),
        ),
    };
    let standby_log =
        || std::fs::read_to_string(work().join("operator-standby.log")).unwrap_or_default();
    harness::wait_for(
        "standby waiting for the Lease and serving /metrics",
        Duration::from_secs(30),
        || async move {
            let l = standby_log();
            if !l.contains("waiting to become leader") {
                return Err(format!("standby log: {l}"));
            }
            leader_gauge(standby_http)
        },
    )
    .await
    .map(|g| assert_eq!(g, "0", "the standby is not leader"))
    .expect("standby up");

    let mq = |fsync: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: f}}\n\
             spec: {{replicas: 3, storage: {{size: 1Gi}}, config: {{fsync: {fsync}}}}}\n"
        )
    };
    apply_yaml(&ns.name, &mq("always"));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "f", 3, 240).await;

    // Exactly one holds the Lease and acts: the Lease names the first operator, its gauge is 1,
    // the standby's 0, and the standby never became leader.
    let (_, holder, _) = lease(&client).await;
    assert_eq!(holder.as_deref(), Some(leader_id.as_str()));
    assert_eq!(
        leader_gauge("127.0.2.1:8080").as_deref(),
        Ok("1"),
        "leader gauge of the first operator"
    );
    assert_eq!(leader_gauge(standby_http).as_deref(), Ok("0"));
    assert!(
        !standby_log().contains("became leader"),
        "the standby acted: {}",
        standby_log()
    );
    assert!(
        standby
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None))),
        "standby still running"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let names = ["f-0", "f-1", "f-2"];
    let mut uids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in names {
        let b = format!("{}:9092", pod_ip(&pods, p).await);
        produce(&b, "kept", 5).await;
        uids.insert(
            p.to_string(),
            vec![pods.get(p).await.expect("pod").uid().expect("uid")],
        );
    }
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let template_hash = |s: StatefulSet| {
        s.spec
            .and_then(|sp| sp.template.metadata)
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(CONFIG_HASH).cloned())
    };
    let old_hash = template_hash(sts.get("f").await.expect("sts")).expect("config hash");

    // The roll starts; once the first pod (f-2) has been replaced, SIGKILL the leader.
    apply_yaml(&ns.name, &mq("interval"));
    let mut killed_at: Option<tokio::time::Instant> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "roll not finished in 300 s (leader killed: {}); pod uids {uids:?}; see e2e/.work/operator-standby.log",
            killed_at.is_some()
        );
        let list = pods.list(&Default::default()).await.expect("pods").items;
        for p in &list {
            if let (Some(seen), Some(uid)) = (uids.get_mut(&p.name_any()), p.uid()) {
                if !seen.contains(&uid) {
                    seen.push(uid);
                }
            }
        }
        let replaced = |n: &str| uids.get(n).map_or(0, |v| v.len() - 1);
        if killed_at.is_none() && replaced("f-2") >= 1 {
            assert_eq!(
                (replaced("f-1"), replaced("f-0")),
                (0, 0),
                "the roll was already past its first pod when the leader was to be killed"
            );
            let out = Command::new("kill")
                .args(["-KILL", &leader_pid])
                .output()
                .expect("kill");
            assert!(out.status.success(), "kill -KILL {leader_pid}");
            killed_at = Some(tokio::time::Instant::now());
        }
        let new_hash = template_hash(sts.get("f").await.expect("sts"));
        let done = killed_at.is_some()
            && list.len() == 3
            && list.iter().all(|p| {
                pod_is_ready(p)
                    && p.annotations().get(CONFIG_HASH) == new_hash.as_ref()
                    && new_hash.as_deref() != Some(old_hash.as_str())
            })
            && names.iter().all(|n| replaced(n) >= 1);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (n, seen) in &uids {
        assert_eq!(seen.len(), 2, "{n} replaced exactly once: uids {seen:?}");
    }
    let (_, holder, transitions_after) = lease(&client).await;
    assert_eq!(
        holder.as_deref(),
        Some(standby_id),
        "the standby took the Lease"
    );
    assert!(transitions_after > transitions, "lease transitions counted");
    assert!(standby_log().contains("became leader"));
    assert_eq!(leader_gauge(standby_http).as_deref(), Ok("1"));
    wait_available(&mqs, "f", 3, 120).await;
    for p in names {
        let b = format!("{}:9092", pod_ip(&pods, p).await);
        read_back(&b, "kept", 5, &format!("{p} after the failover roll")).await;
    }
    // The standby is the operator now: operator.sh stop / cluster.sh down stop it by this file.
    if let Some(c) = standby.child.take() {
        std::fs::write(work().join("operator.pid"), c.id().to_string()).expect("pid file");
    }
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn stuck_pod_on_a_deleted_node_is_replaced_and_comes_back_with_its_data() {
    let (client, ns) = mq::setup("operator_more_node_gone", "nodegone").await;
    apply_yaml(
        &ns.name,
        "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {name: nd}\n\
         spec: {replicas: 2, storage: {size: 1Gi}}\n",
    );
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "nd", 2, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let b = format!("{}:9092", pod_ip(&pods, "nd-1").await);
    produce(&b, "kept", 5).await;
    let old = pods.get("nd-1").await.expect("pod");
    let old_uid = old.uid().expect("uid");
    let node = old
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .expect("nd-1 scheduled");
    let saved = kubectl(&["get", "node", &node, "-o", "json"], None).expect("kubectl");
    assert!(saved.ok, "{}", saved.stderr);

    let out = kubectl(&["delete", "node", &node, "--wait=false"], None).expect("kubectl");
    assert!(out.ok, "delete node {node}: {}", out.stderr);
    // What the node lifecycle controller does to the pods of a lost node: mark them not ready
    // (the pod runner keeps the local broker running and only rewrites Ready when /readyz
    // changes, so this sticks, like a kubelet that is gone).
    let lost = kubectl(
        &[
            "patch",
            "pod",
            "nd-1",
            "-n",
            &ns.name,
            "--subresource=status",
            "--type=strategic",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"NodeLost"}]}}"#,
        ],
        None,
    )
    .expect("kubectl");
    assert!(lost.ok, "mark nd-1 not ready: {}", lost.stderr);
    let (pods_ref, old_ref, node_ref) = (&pods, &old_uid, &node);
    let result = harness::wait_for(
        "nd-1 replaced on a live node and Ready",
        Duration::from_secs(35),
        || async move {
            let p = pods_ref.get_opt("nd-1").await.map_err(|e| e.to_string())?;
            let Some(p) = p else {
                return Err("nd-1 absent".to_string());
            };
            let on = p.spec.as_ref().and_then(|s| s.node_name.clone());
            if p.uid().as_ref() != Some(old_ref)
                && on.as_ref() != Some(node_ref)
                && pod_is_ready(&p)
            {
                Ok(on)
            } else {
                Err(format!(
                    "uid changed {} node {on:?} ready {}",
                    p.uid().as_ref() != Some(old_ref),
                    pod_is_ready(&p)
                ))
            }
        },
    )
    .await;

    // Put the node back for whatever runs next, whatever happened above.
    let mut manifest: serde_json::Value = serde_json::from_str(&saved.stdout).expect("node json");
    if let Some(m) = manifest.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
        ] {
            m.remove(k);
        }
    }
    if let Some(m) = manifest.as_object_mut() {
        m.remove("status");
    }
    let back = kubectl(&["create", "-f", "-"], Some(&manifest.to_string())).expect("kubectl");
    assert!(back.ok, "recreate node {node}: {}", back.stderr);

    let new_node = result.unwrap_or_else(|e| panic!("{e}"));
    wait_available(&mqs, "nd", 2, 120).await;
    let b = format!("{}:9092", pod_ip(&pods, "nd-1").await);
    read_back(
        &b,
        "kept",
        5,
        &format!("nd-1 after moving from {node} to {new_node:?}"),
    )
    .await;
    // The operator did it (not the pod garbage collector): its Warning Event names the node.
    let ev = kubectl(
        &["get", "events.events.k8s.io", "-n", &ns.name, "-o", "json"],
        None,
    )
    .expect("kubectl");
    assert!(ev.ok, "{}", ev.stderr);
    let events: serde_json::Value = serde_json::from_str(&ev.stdout).expect("events json");
    let replaced = events["items"].as_array().is_some_and(|items| {
        items.iter().any(|e| {
            e["reason"] == "PodReplaced"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("nd-1") && n.contains(node.as_str()))
        })
    });
    assert!(
        replaced,
        "a PodReplaced Event from the operator naming nd-1 and {node}: {}",
        ev.stdout
    );
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}

/// Produces `n` records of `size` bytes to one partition, all in flight at once (acks=all).
async fn produce_bulk(bootstrap: &str, topic: &str, partition: i32, n: usize, size: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let payload = vec![b'x'; size];
    let sends = (0..n).map(|i| {
        let key = i.to_string();
        let producer = &producer;
        let payload = &payload;
        async move {
            producer
                .send(
                    FutureRecord::to(topic)
                        .payload(payload)
                        .key(&key)
                        .partition(partition),
                    Duration::from_secs(60),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| format!("produce {i} to {topic}-{partition} at {bootstrap}: {e}"))
        }
    });
    for r in futures::future::join_all(sends).await {
        r.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// (leader, high watermark) of each partition of `topic`, as the broker at `bootstrap` says.
fn leaders_and_ends(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64)>, String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata from {bootstrap}: {e}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| format!("{topic} not listed"))?;
    let mut out = Vec::new();
    for p in t.partitions() {
        let (_, high) = c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .map_err(|e| format!("watermarks of {topic}-{}: {e}", p.id()))?;
        out.push((p.leader(), high));
    }
    Ok(out)
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn scale_down_whose_partitions_do_not_fit_on_the_remaining_brokers_is_refused() {
    let (client, ns) = mq::setup("operator_no_room", "noroom").await;
    // 4 MiB volumes. The queue is declared once all three brokers are in the cluster, so its
    // three partitions land one per broker (the least loaded broker gets each new partition).
    // One copy each: the refusal under test is for room, not for the replication factor.
    let mq = |replicas: i32, queues: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: nr}}\n\
             spec: {{replicas: {replicas}, storage: {{size: 4Mi}}, config: {{defaultReplicationFactor: 1}}, \
             queues: [{queues}]}}\n"
        )
    };
    apply_yaml(&ns.name, &mq(3, ""));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "nr", 3, 240).await;
    apply_yaml(&ns.name, &mq(3, "{name: big, partitions: 3}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let b0 = format!("{}:9092", pod_ip(&pods, "nr-0").await);
    let b0_ref = &b0;
    let leaders = harness::wait_for(
        "queue big with a leader for each of its 3 partitions",
        Duration::from_secs(90),
        || async move {
            let b = b0_ref.clone();
            let parts = tokio::task::spawn_blocking(move || leaders_and_ends(&b, "big"))
                .await
                .map_err(|e| e.to_string())??;
            if parts.len() == 3 && parts.iter().all(|(l, _)| *l >= 0) {
                Ok(parts.iter().map(|(l, _)| *l).collect::<Vec<i32>>())
            } else {
                Err(format!("{parts:?}"))
            }
        },
    )
    .await
    .expect("the operator creates the queue");
    let spread: BTreeSet<i32> = leaders.iter().copied().collect();
    assert_eq!(
        spread,
        BTreeSet::from([0, 1, 2]),
        "one partition per broker: {leaders:?}"
    );

    // 2.5 MiB into every partition: each broker holds 2.5 of its 4 MiB, so the 2.5 MiB on nr-2
    // fit on neither nr-0 nor nr-1 (1.1 MiB free less the 0.4 MiB reserve).
    const RECORDS: usize = 2560;
    for p in 0..3 {
        produce_bulk(&b0, "big", p, RECORDS, 1000).await;
    }

    apply_yaml(&ns.name, &mq(2, "{name: big, partitions: 3}"));
    let mqs_ref = &mqs;
    let (reason, message) = mq::wait_condition(mqs_ref, "nr", "Degraded", "True", 90)
        .await
        .expect("the scale-down is refused");
    assert_eq!(reason, "ScaleDownBlocked", "{message}");
    let stuck = format!(
        "big-{}",
        leaders.iter().position(|l| *l == 2).expect("on 2")
    );
    for want in [
        stuck.as_str(),
        "do not fit on the remaining brokers",
        "grow storage.size",
    ] {
        assert!(message.contains(want), "{want:?} not in {message:?}");
    }
    let warned = sluice_e2e::mq::events(&ns.name)
        .into_iter()
        .any(|(t, r, m)| t == "Warning" && r == "ScaleDownBlocked" && m.contains(&stuck));
    assert!(warned, "a Warning Event ScaleDownBlocked naming {stuck}");
    // Nothing moved, nothing shrank, the spec is as written.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let s = sts.get("nr").await.expect("sts");
    assert_eq!(s.spec.and_then(|s| s.replicas), Some(3));
    let b = b0.clone();
    let now = tokio::task::spawn_blocking(move || leaders_and_ends(&b, "big"))
        .await
        .expect("task")
        .expect("metadata");
    assert_eq!(
        now,
        leaders
            .iter()
            .map(|l| (*l, RECORDS as i64))
            .collect::<Vec<_>>(),
        "every partition on its broker with every record"
    );

    // Setting replicas back clears the refusal.
    apply_yaml(&ns.name, &mq(3, "{name: big, partitions: 3}"));
    mq::wait_condition(mqs_ref, "nr", "Degraded", "False", 90)
        .await
        .expect("the refusal clears when replicas is set back");
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}

/// The `node.id` file in the volume of `claim` (the pod runner keeps PVCs under
/// `e2e/.work/pods/pvc/<namespace>/<claim>`; the broker's data dir is somewhere below).
fn node_id_file(ns: &str, claim: &str) -> PathBuf {
    fn find(dir: &std::path::Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "node.id") {
                return Some(path);
            }
            if path.is_dir() {
                if let Some(found) = find(&path) {
                    return Some(found);
                }
            }
        }
        None
    }
    let root = work().join("pods/pvc").join(ns).join(claim);
    find(&root).unwrap_or_else(|| panic!("no node.id under {}", root.display()))
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn a_broker_that_cannot_start_stops_the_roll_and_the_roll_resumes_once_it_is_fixed() {
    let (client, ns) = mq::setup("operator_roll_stopped", "crash").await;
    let mq = |fsync: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: c}}\n\
             spec: {{replicas: 3, storage: {{size: 1Gi}}, config: {{fsync: {fsync}}}}}\n"
        )
    };
    apply_yaml(&ns.name, &mq("always"));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "c", 3, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let b1 = format!("{}:9092", pod_ip(&pods, "c-1").await);
    produce(&b1, "kept", 5).await;
    let uid = |p: &Pod| p.uid().unwrap_or_default();
    let c0 = uid(&pods.get("c-0").await.expect("pod"));
    let c1 = uid(&pods.get("c-1").await.expect("pod"));

    // c-1's volume now claims to belong to node 7: the broker refuses to start on it (as with
    // volumes swapped between pods). The running broker does not notice until the roll restarts it.
    let id_file = node_id_file(&ns.name, "data-c-1");
    let original = std::fs::read_to_string(&id_file).expect("node.id");
    assert_eq!(original.trim(), "1", "{}", id_file.display());
    std::fs::write(&id_file, "7").expect("write node.id");

    apply_yaml(&ns.name, &mq("interval"));
    let mqs_ref = &mqs;
    let stopped = harness::wait_for(
        "Degraded RollStopped naming c-1",
        Duration::from_secs(180),
        || async move {
            let m = mqs_ref.get("c").await.map_err(|e| e.to_string())?;
            match condition(&m, "Degraded") {
                Some((s, r, message)) if s == "True" && r == "RollStopped" => Ok(message),
                other => Err(format!("Degraded {other:?}")),
            }
        },
    )
    .await
    .expect("the roll stops at the broker that cannot start");
    for want in ["pod c-1", "CrashLoopBackOff", "last exit code"] {
        assert!(stopped.contains(want), "{want:?} not in {stopped:?}");
    }
    let c1_now = pods.get("c-1").await.expect("pod");
    assert_ne!(uid(&c1_now), c1, "c-1 was restarted by the roll");
    let warned = sluice_e2e::mq::events(&ns.name)
        .into_iter()
        .any(|(t, r, m)| t == "Warning" && r == "RollStopped" && m.contains("c-1"));
    assert!(warned, "a Warning Event RollStopped naming c-1");
    let log = work().join(format!("pods/logs/{}_c-1.log", ns.name));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("belongs to node 7"),
        "the broker's log says why it cannot start ({})",
        log.display()
    );
    // While c-1 cannot start, no other broker goes down: c-0 keeps running and ready.
    let pods_ref = &pods;
    let c0_ref = &c0;
    let moved_on = harness::wait_for(
        "the roll moving on to c-0 while c-1 is broken",
        Duration::from_secs(10),
        || async move {
            let p = pods_ref.get("c-0").await.map_err(|e| e.to_string())?;
            if uid(&p) != *c0_ref || !pod_is_ready(&p) {
                Ok(())
            } else {
                Err("c-0 untouched".to_string())
            }
        },
    )
    .await;
    assert!(
        moved_on.is_err(),
        "c-0 was taken down during a stopped roll"
    );

    // Fixed: the next restart of c-1 succeeds, the roll goes on to c-0 and finishes.
    std::fs::write(&id_file, original).expect("restore node.id");
    harness::wait_for(
        "c-0 replaced once c-1 is ready",
        Duration::from_secs(180),
        || async move {
            let p = pods_ref.get("c-0").await.map_err(|e| e.to_string())?;
            if uid(&p) != *c0_ref {
                Ok(())
            } else {
                Err("c-0 not replaced yet".to_string())
            }
        },
    )
    .await
    .expect("the roll resumes");
    wait_available(&mqs, "c", 3, 180).await;
    mq::wait_condition(mqs_ref, "c", "Degraded", "False", 60)
        .await
        .expect("Degraded clears when the roll is done");
    let b1 = format!("{}:9092", pod_ip(&pods, "c-1").await);
    read_back(&b1, "kept", 5, "c-1 after its failed starts").await;
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}

/// Reads every partition of `topic` from the start until `expected` records arrived (60 s at
/// most) and returns how many did.
fn count_records(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> usize {
    let c: BaseConsumer = kafka::reader(bootstrap, topic, partitions);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut count = 0;
    while count < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(200)) {
            count += 1;
        }
    }
    count
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn auto_rebalance_moves_partitions_onto_new_brokers_after_a_scale_up() {
    let (client, ns) = mq::setup("operator_rebalance", "rebalance").await;
    apply_yaml(
        &ns.name,
        // one copy per partition, pinned so the scale from 2 to 3 changes no broker setting:
        // the rebalance under test moves whole partitions
        "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {name: rb}\n\
         spec: {replicas: 2, autoRebalance: true, storage: {size: 1Gi}, \
         config: {defaultReplicationFactor: 1}, queues: [{name: spread, partitions: 6}]}\n",
    );
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "rb", 2, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let b0 = format!("{}:9092", pod_ip(&pods, "rb-0").await);
    const PER_PARTITION: usize = 50;
    let b0_ref = &b0;
    // The queue exists once its six partitions have leaders.
    harness::wait_for(
        "queue spread with 6 led partitions",
        Duration::from_secs(90),
        || async move {
            let b = b0_ref.clone();
            let parts = tokio::task::spawn_blocking(move || leaders_and_ends(&b, "spread"))
                .await
                .map_err(|e| e.to_string())??;
            if parts.len() == 6 && parts.iter().all(|(l, _)| *l >= 0) {
                Ok(())
            } else {
                Err(format!("{parts:?}"))
            }
        },
    )
    .await
    .expect("the operator creates the queue");
    for p in 0..6 {
        produce_bulk(&b0, "spread", p, PER_PARTITION, 100).await;
    }

    let out =
        kubectl(&["scale", "mq", "rb", "-n", &ns.name, "--replicas=3"], None).expect("kubectl");
    assert!(out.ok, "kubectl scale: {}", out.stderr);
    let spread = harness::wait_for(
        "two partitions on each of the three brokers, every record in place",
        Duration::from_secs(240),
        || async move {
            let b = b0_ref.clone();
            let parts = tokio::task::spawn_blocking(move || leaders_and_ends(&b, "spread"))
                .await
                .map_err(|e| e.to_string())??;
            let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
            for (leader, _) in &parts {
                *per_broker.entry(*leader).or_default() += 1;
            }
            let balanced = per_broker == BTreeMap::from([(0, 2), (1, 2), (2, 2)]);
            if balanced && parts.iter().all(|(_, end)| *end == PER_PARTITION as i64) {
                Ok(per_broker)
            } else {
                Err(format!("(leader, end) {parts:?}"))
            }
        },
    )
    .await
    .expect("autoRebalance fills the new broker");
    wait_available(&mqs, "rb", 3, 120).await;
    mq::wait_condition(&mqs, "rb", "Progressing", "False", 60)
        .await
        .expect("the rebalance reports that it is done");
    let events = sluice_e2e::mq::events(&ns.name);
    assert!(
        events
            .iter()
            .any(|(_, r, m)| r == "Rebalancing" && m.contains("→ broker 2")),
        "a Rebalancing Event naming the moves onto broker 2: {events:?}"
    );
    let b = b0.clone();
    let read =
        tokio::task::spawn_blocking(move || count_records(&b, "spread", 6, 6 * PER_PARTITION))
            .await
            .expect("read task");
    assert_eq!(
        read,
        6 * PER_PARTITION,
        "every record readable after {spread:?}"
    );
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}

/// Waits until `name`'s pod and its PVC are both objects other than `old_pod`/`old_pvc` and the
/// pod is Ready.
async fn wait_replaced_with_new_volume(
    pods: &Api<Pod>,
    pvcs: &Api<PersistentVolumeClaim>,
    name: &str,
    claim: &str,
    old_pod: &str,
    old_pvc: &str,
) {
    harness::wait_for(
        &format!("{name} back Ready on a new PVC {claim}"),
        Duration::from_secs(180),
        || async move {
            let p = pods.get_opt(name).await.map_err(|e| e.to_string())?;
            let c = pvcs.get_opt(claim).await.map_err(|e| e.to_string())?;
            let pod_new = p
                .as_ref()
                .is_some_and(|p| p.uid().as_deref() != Some(old_pod));
            let pvc_new = c.as_ref().is_some_and(|c| {
                c.uid().as_deref() != Some(old_pvc) && c.metadata.deletion_timestamp.is_none()
            });
            let ready = p.as_ref().is_some_and(pod_is_ready);
            if pod_new && pvc_new && ready {
                Ok(())
            } else {
                Err(format!(
                    "pod replaced {pod_new}, PVC replaced {pvc_new}, ready {ready}, pod phase {:?}",
                    p.and_then(|p| p.status).and_then(|s| s.phase)
                ))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn a_broker_whose_volume_is_lost_comes_back_empty_and_rejoins_the_cluster() {
    let (client, ns) = mq::setup("operator_volume_lost", "volumelost").await;
    // The queue is declared once all three brokers are in the cluster, so its three
    // partitions land one per broker. One copy each: this is what a lost volume takes without
    // replication (with three copies the broker refills its copy from the others).
    let mq = |queues: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: lv}}\n\
             spec: {{replicas: 3, storage: {{size: 1Gi}}, config: {{defaultReplicationFactor: 1}}, \
             queues: [{queues}]}}\n"
        )
    };
    apply_yaml(&ns.name, &mq(""));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "lv", 3, 240).await;
    apply_yaml(&ns.name, &mq("{name: spread, partitions: 3}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    let b0 = format!("{}:9092", pod_ip(&pods, "lv-0").await);
    const PER_PARTITION: usize = 20;
    let b0_ref = &b0;
    let placed = harness::wait_for(
        "queue spread with one partition on each broker",
        Duration::from_secs(90),
        || async move {
            let b = b0_ref.clone();
            let parts = tokio::task::spawn_blocking(move || leaders_and_ends(&b, "spread"))
                .await
                .map_err(|e| e.to_string())??;
            let leaders: BTreeSet<i32> = parts.iter().map(|(l, _)| *l).collect();
            if parts.len() == 3 && leaders == BTreeSet::from([0, 1, 2]) {
                Ok(parts)
            } else {
                Err(format!("(leader, end) {parts:?}"))
            }
        },
    )
    .await
    .expect("the operator creates the queue");
    for p in 0..3 {
        produce_bulk(&b0, "spread", p, PER_PARTITION, 100).await;
    }
    let on_lost = placed
        .iter()
        .position(|(l, _)| *l == 2)
        .expect("a partition on broker 2") as i32;

    // Lose lv-2's volume: the PVC is deleted (kept by its protection finalizer while the pod
    // uses it), then the pod. The StatefulSet makes a new pod and a new, empty PVC (the pod
    // runner gives a recreated PVC an empty folder, as a provisioner gives a new volume).
    let old_pod = pods.get("lv-2").await.expect("pod").uid().expect("uid");
    let old_pvc = pvcs
        .get("data-lv-2")
        .await
        .expect("PVC")
        .uid()
        .expect("uid");
    for what in [["pvc", "data-lv-2"], ["pod", "lv-2"]] {
        let out = kubectl(
            &["delete", what[0], what[1], "-n", &ns.name, "--wait=false"],
            None,
        )
        .expect("kubectl");
        assert!(out.ok, "delete {} {}: {}", what[0], what[1], out.stderr);
    }
    wait_replaced_with_new_volume(&pods, &pvcs, "lv-2", "data-lv-2", &old_pod, &old_pvc).await;
    wait_available(&mqs, "lv", 3, 180).await;

    // The partitions of the other brokers kept every record; broker 2 serves its partition
    // again, empty: with one copy per partition, its records went with the volume.
    let placed_ref = &placed;
    let parts = harness::wait_for(
        "every partition led again, broker 2's one empty",
        Duration::from_secs(90),
        || async move {
            let b = b0_ref.clone();
            let parts = tokio::task::spawn_blocking(move || leaders_and_ends(&b, "spread"))
                .await
                .map_err(|e| e.to_string())??;
            let expected: Vec<(i32, i64)> = placed_ref
                .iter()
                .map(|(l, _)| (*l, if *l == 2 { 0 } else { PER_PARTITION as i64 }))
                .collect();
            if parts == expected {
                Ok(parts)
            } else {
                Err(format!("(leader, end) {parts:?}, expected {expected:?}"))
            }
        },
    )
    .await
    .expect("the brokers that kept their volumes keep their records");
    // It takes writes again, at its new pod IP, through any bootstrap broker.
    produce_bulk(&b0, "spread", on_lost, 5, 100).await;
    let b2 = format!("{}:9092", pod_ip(&pods, "lv-2").await);
    let topics = topics_at(&b2).await.expect("metadata from lv-2");
    assert!(
        topics.contains("spread"),
        "lv-2 lists the cluster's topics: {topics:?}"
    );
    let b = b2.clone();
    let read =
        tokio::task::spawn_blocking(move || count_records(&b, "spread", 3, 2 * PER_PARTITION + 5))
            .await
            .expect("read task");
    assert_eq!(
        read,
        2 * PER_PARTITION + 5,
        "records readable after {parts:?}"
    );

    // The metadata quorum did not take the empty volume for the member it was: the leader
    // removed that member and added the new one (broker log of lv-0 or lv-1).
    let logs: String = ["lv-0", "lv-1"]
        .iter()
        .map(|p| {
            std::fs::read_to_string(
                work()
                    .join("pods/logs")
                    .join(format!("{}_{p}.log", ns.name)),
            )
            .unwrap_or_default()
        })
        .collect();
    assert!(
        logs.contains("a member came back with an empty volume"),
        "the quorum leader's log says it replaced member 2"
    );
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}
