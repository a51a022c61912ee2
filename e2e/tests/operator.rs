//! The operator itself, installed by the chart and running with the chart's ServiceAccount token
//! (`e2e/scripts/operator.sh start`), against the real control plane with real broker processes.
//!
//! One scenario per namespace; the tests run one at a time (run.sh passes --test-threads=1) and
//! share one operator process, started by the first test that needs it and stopped at the end of
//! the run by `cluster.sh down`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use rdkafka::consumer::BaseConsumer;
use rdkafka::Message;
use sluice_e2e::harness::{self, kubectl};
use sluice_e2e::mq::{self, apply_yaml, pod_ip, wait_available};
use sluice_operator::crd::MessageQueue;

mod kafka;

/// Partition counts of every topic a broker reports.
fn topic_partitions(bootstrap: &str) -> BTreeMap<String, usize> {
    let md = kafka::metadata(bootstrap).expect("metadata");
    md.topics()
        .iter()
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect()
}

/// host:port of every broker a broker's metadata lists.
fn advertised_brokers(bootstrap: &str) -> Vec<String> {
    let md = kafka::metadata(bootstrap).expect("metadata");
    md.brokers()
        .iter()
        .map(|b| format!("{}:{}", b.host(), b.port()))
        .collect()
}

/// Produces `n` records to partition 0 and reads them back from the start.
async fn produce_consume(bootstrap: &str, topic: &str, n: usize) {
    let records = kafka::numbered("op", n);
    kafka::produce(bootstrap, topic, 0, &records).await;
    let got = kafka::read_partition0(bootstrap, topic, n, "produce_consume").await;
    assert_eq!(got, records);
}

/// Produces `n` records ("p<partition>-<i>") to each of the first `partitions` partitions.
async fn produce_each(bootstrap: &str, topic: &str, partitions: i32, n: usize) {
    for p in 0..partitions {
        kafka::produce(bootstrap, topic, p, &kafka::numbered(&format!("p{p}"), n)).await;
    }
}

/// Reads every record of `topic`'s partitions from the start until `expected` arrived (30 s
/// at most); returns the payloads, each once.
fn read_all(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> BTreeSet<String> {
    let c: BaseConsumer = kafka::reader(bootstrap, topic, partitions);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut got = BTreeSet::new();
    let mut count = 0;
    while count < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            got.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            count += 1;
        }
    }
    assert_eq!(
        count, expected,
        "records read from {topic} at {bootstrap}: {got:?}"
    );
    got
}

/// (topic-partition, leader id) of every partition a broker's metadata lists.
fn partition_leaders(bootstrap: &str) -> Vec<(String, i32)> {
    let md = kafka::metadata(bootstrap).expect("metadata");
    md.topics()
        .iter()
        .flat_map(|t| {
            t.partitions()
                .iter()
                .map(move |p| (format!("{}-{}", t.name(), p.id()), p.leader()))
        })
        .collect()
}

async fn exists<K>(api: &Api<K>, name: &str, secs: u64) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    harness::wait_for(
        &format!("{name} exists"),
        Duration::from_secs(secs),
        || async move {
            api.get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "absent".to_string())
        },
    )
    .await
    .expect("object (re)created by the operator")
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn example_becomes_available_serves_kafka_heals_pauses_and_deletes() {
    let (client, ns) = mq::setup("operator_example", "example").await;
    let example = std::fs::read_to_string(harness::repo_root().join("examples/minimal.yaml"))
        .expect("example");
    apply_yaml(&ns.name, &example);

    // Children appear, each owned by the MessageQueue.
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    let mq = wait_available(&mqs, "demo", 3, 240).await;
    let uid = mq.uid().expect("uid");
    // The queue is in place with every copy of its partitions in sync, and status says so.
    let in_sync = mq::wait_in_sync(&mqs, "demo", 120)
        .await
        .expect("status reports every partition in sync");
    let status = in_sync.status.expect("status");
    assert_eq!(status.under_replicated_partitions, Some(0));
    let events = status
        .queues
        .iter()
        .find(|q| q.name == "events")
        .expect("queue events in status");
    assert!(events.ready, "{events:?}");
    assert_eq!(
        events.replication_factor,
        Some(in_sync.spec.default_replication_factor()),
        "a queue without replicationFactor has the MessageQueue's default"
    );
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns.name);
    let owned =
        |refs: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
            refs.unwrap_or_default()
                .iter()
                .any(|r| r.uid == uid && r.kind == "MessageQueue")
        };
    let s = sts.get("demo").await.expect("StatefulSet demo");
    assert!(
        owned(s.metadata.owner_references.clone()),
        "StatefulSet owned by the MessageQueue"
    );
    let all_svcs = svcs
        .list(&Default::default())
        .await
        .expect("services")
        .items;
    assert!(
        all_svcs.len() >= 2,
        "client and headless Services: {:?}",
        all_svcs.iter().map(|s| s.name_any()).collect::<Vec<_>>()
    );
    assert!(all_svcs
        .iter()
        .all(|s| owned(s.metadata.owner_references.clone())));
    let all_cms: Vec<ConfigMap> = cms
        .list(&Default::default())
        .await
        .expect("configmaps")
        .items
        .into_iter()
        .filter(|c| owned(c.metadata.owner_references.clone()))
        .collect();
    assert_eq!(
        all_cms.len(),
        1,
        "one broker ConfigMap owned by the MessageQueue"
    );
    let cm_name = all_cms[0].name_any();
    let all_pdbs = pdbs.list(&Default::default()).await.expect("pdbs").items;
    assert!(
        all_pdbs
            .iter()
            .any(|p| owned(p.metadata.owner_references.clone())),
        "PodDisruptionBudget"
    );

    // The declared queue exists on the brokers with its partitions; a real client uses it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let ip = pod_ip(&pods, "demo-0").await;
    let bootstrap = format!("{ip}:9092");
    let b = bootstrap.clone();
    let topics = tokio::task::spawn_blocking(move || topic_partitions(&b))
        .await
        .expect("metadata task");
    assert_eq!(
        topics.get("events"),
        Some(&3),
        "queue events with 3 partitions on demo-0: {topics:?}"
    );
    produce_consume(&bootstrap, "events", 10).await;

    // The broker pod holding events-0 is deleted: the StatefulSet brings it back on its volume,
    // the MessageQueue is Available again and the records are still there.
    let b = bootstrap.clone();
    let leaders = tokio::task::spawn_blocking(move || partition_leaders(&b))
        .await
        .expect("metadata task");
    let owner = leaders
        .iter()
        .find(|(tp, _)| tp == "events-0")
        .map(|(_, l)| format!("demo-{l}"))
        .unwrap_or_else(|| panic!("no leader of events-0 in {leaders:?}"));
    let old_uid = pods.get(&owner).await.expect("pod").uid();
    pods.delete(&owner, &DeleteParams::default())
        .await
        .expect("delete broker pod");
    let (pods_ref, owner_ref, old_ref) = (&pods, &owner, &old_uid);
    harness::wait_for(
        &format!("{owner} recreated and Ready"),
        Duration::from_secs(120),
        || async move {
            let p = pods_ref
                .get_opt(owner_ref)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("absent")?;
            if p.uid() != *old_ref && sluice_e2e::mq::pod_is_ready(&p) {
                Ok(())
            } else {
                Err("old or not ready".to_string())
            }
        },
    )
    .await
    .expect("a deleted broker pod comes back");
    wait_available(&mqs, "demo", 3, 120).await;
    let b = format!("{}:9092", pod_ip(&pods, "demo-0").await);
    let got = tokio::task::spawn_blocking(move || read_all(&b, "events", 1, 10))
        .await
        .expect("read task");
    let want: BTreeSet<String> = (0..10).map(|i| format!("op-{i}")).collect();
    assert_eq!(got, want, "events-0 after {owner} came back");

    // Heal: a deleted ConfigMap and Service come back; a hand-edited StatefulSet is put back.
    cms.delete(&cm_name, &DeleteParams::default())
        .await
        .expect("delete ConfigMap");
    let client_svc = all_svcs
        .iter()
        .find(|s| s.spec.as_ref().and_then(|x| x.cluster_ip.as_deref()) != Some("None"));
    let client_svc = client_svc.expect("client Service").name_any();
    svcs.delete(&client_svc, &DeleteParams::default())
        .await
        .expect("delete Service");
    exists(&cms, &cm_name, 60).await;
    exists(&svcs, &client_svc, 60).await;
    // A hand edit of a field the operator owns is put back (server-side apply re-asserts its
    // fields; fields added by other managers are theirs and stay, by design of SSA).
    let pdb_name = all_pdbs
        .iter()
        .find(|p| owned(p.metadata.owner_references.clone()))
        .expect("owned PDB")
        .name_any();
    let edit = serde_json::json!({"spec": {"maxUnavailable": 3}});
    pdbs.patch(&pdb_name, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("hand edit");
    let (pdbs_ref, pdb_ref) = (&pdbs, &pdb_name);
    harness::wait_for(
        "hand edit reverted",
        Duration::from_secs(60),
        || async move {
            let p = pdbs_ref.get(pdb_ref).await.map_err(|e| e.to_string())?;
            let mu = p.spec.and_then(|sp| sp.max_unavailable);
            match mu {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)) => Ok(()),
                other => Err(format!("maxUnavailable {other:?}")),
            }
        },
    )
    .await
    .expect("the operator puts a hand-edited child back");
    let sts_ref = &sts;

    // Pause: nothing is changed until unpaused.
    let pause = serde_json::json!({"spec": {"paused": true}});
    mqs.patch("demo", &PatchParams::default(), &Patch::Merge(&pause))
        .await
        .expect("pause");
    let mqs_ref = &mqs;
    mq::wait_condition(mqs_ref, "demo", "ReconciliationPaused", "True", 60)
        .await
        .expect("paused condition");
    cms.delete(&cm_name, &DeleteParams::default())
        .await
        .expect("delete ConfigMap while paused");
    // Bounded observation: the operator heals within seconds when active (above); paused, the
    // ConfigMap must stay absent for this whole window.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        assert!(
            cms.get_opt(&cm_name).await.expect("get").is_none(),
            "a paused MessageQueue was reconciled"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let resume = serde_json::json!({"spec": {"paused": false}});
    mqs.patch("demo", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .expect("unpause");
    exists(&cms, &cm_name, 60).await;

    // Delete: children go, the finalizer does not block, the namespace deletes.
    mqs.delete("demo", &DeleteParams::default())
        .await
        .expect("delete MessageQueue");
    harness::wait_for(
        "MessageQueue gone",
        Duration::from_secs(90),
        || async move {
            match mqs_ref.get_opt("demo").await {
                Ok(None) => Ok(()),
                Ok(Some(m)) => Err(format!("finalizers {:?}", m.metadata.finalizers)),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .expect("MessageQueue deleted without a stuck finalizer");
    harness::wait_for("StatefulSet gone", Duration::from_secs(90), || async move {
        match sts_ref.get_opt("demo").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("present".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .expect("children garbage-collected");
    // storage.deleteClaim defaults to false: the brokers' volumes outlive the MessageQueue, so
    // applying it again finds their data; an Event says so.
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &ns.name);
    let kept: BTreeSet<String> = pvcs
        .list(&Default::default())
        .await
        .expect("pvcs")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    for i in 0..3 {
        assert!(
            kept.contains(&format!("data-demo-{i}")),
            "PVC data-demo-{i} kept after the MessageQueue was deleted (deleteClaim false): {kept:?}"
        );
    }
    let retained = mq::events(&ns.name)
        .into_iter()
        .any(|(_, reason, _)| reason == "ClaimsRetained");
    assert!(
        retained,
        "a ClaimsRetained Event: {:?}",
        mq::events(&ns.name)
    );
    ns.delete_and_wait(&client, Duration::from_secs(90))
        .await
        .expect("namespace deleted");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn kubectl_scale_adds_brokers_and_namespace_delete_never_hangs() {
    let (client, ns) = mq::setup("operator_scale", "scale").await;
    apply_yaml(
        &ns.name,
        "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {name: grow}\nspec: {replicas: 3, storage: {size: 1Gi}}\n",
    );
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "grow", 3, 240).await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let revision_before = sts
        .get("grow")
        .await
        .expect("sts")
        .status
        .and_then(|s| s.update_revision);
    let uid_before = pods.get("grow-0").await.expect("pod grow-0").uid();

    let out =
        kubectl(&["scale", "-n", &ns.name, "mq/grow", "--replicas=5"], None).expect("kubectl");
    assert!(out.ok, "kubectl scale: {}", out.stderr);
    wait_available(&mqs, "grow", 5, 240).await;
    let s = sts.get("grow").await.expect("sts");
    assert_eq!(s.spec.as_ref().and_then(|sp| sp.replicas), Some(5));
    assert_eq!(
        s.status.and_then(|st| st.update_revision),
        revision_before,
        "a scale leaves the pod template alone (the seeds live in the ConfigMap)"
    );
    assert_eq!(
        pods.get("grow-0").await.expect("pod grow-0").uid(),
        uid_before,
        "a scale restarts no broker"
    );
    // The seeds: every replica by its stable name, each resolving to its pod (the pod runner's
    // hosts block stands in for cluster DNS).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let seeds = cms
        .get("grow-config")
        .await
        .expect("ConfigMap")
        .data
        .and_then(|d| d.get("SLUICE_SEEDS").cloned())
        .expect("SLUICE_SEEDS in the ConfigMap");
    assert_eq!(seeds.split(',').count(), 5, "{seeds}");
    for (i, seed) in seeds.split(',').enumerate() {
        let ip = pod_ip(&pods, &format!("grow-{i}")).await;
        let seed = seed.to_string();
        let want = ip.clone();
        harness::wait_for(
            &format!("{seed} resolves to {ip}"),
            Duration::from_secs(30),
            || {
                let seed = seed.clone();
                let want = want.clone();
                async move {
                    let got = tokio::task::spawn_blocking(move || {
                        std::net::ToSocketAddrs::to_socket_addrs(seed.as_str())
                            .map(|a| a.map(|a| a.ip().to_string()).collect::<Vec<_>>())
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                    if got.contains(&want) {
                        Ok(())
                    } else {
                        Err(format!("{got:?}"))
                    }
                }
            },
        )
        .await
        .expect("seed resolves to its pod");
    }
    let ip = pod_ip(&pods, "grow-4").await;
    let b = format!("{ip}:9092");
    let advertised = tokio::task::spawn_blocking(move || advertised_brokers(&b))
        .await
        .expect("task");
    assert!(
        advertised.contains(&format!("{ip}:9092")),
        "the new broker serves Kafka and advertises its pod IP: {advertised:?}"
    );

    // Delete the namespace with the MessageQueue (and its finalizer) still in it.
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deletion never hangs");
}

async fn metadata_of(pods: &Api<Pod>, pod: &str) -> BTreeMap<String, usize> {
    let b = format!("{}:9092", pod_ip(pods, pod).await);
    tokio::task::spawn_blocking(move || topic_partitions(&b))
        .await
        .expect("metadata task")
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn queue_changes_take_effect_and_scale_down_drains_a_broker_keeping_every_record() {
    let (client, ns) = mq::setup("operator_queues", "queues").await;
    // One copy per partition: the drain below moves every partition off broker 2, which three
    // copies on two staying brokers could not do (that refusal is a test of its own).
    let mq = |replicas: i32, queues: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: q}}\n\
             spec: {{replicas: {replicas}, storage: {{size: 1Gi}}, config: {{defaultReplicationFactor: 1}}, \
             queues: [{queues}]}}\n"
        )
    };
    apply_yaml(&ns.name, &mq(3, "{name: orders, partitions: 2}"));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "q", 3, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    assert_eq!(metadata_of(&pods, "q-0").await.get("orders"), Some(&2));

    // Add a queue and raise the partitions of the existing one.
    apply_yaml(
        &ns.name,
        &mq(
            3,
            "{name: orders, partitions: 5}, {name: audit, partitions: 1}",
        ),
    );
    let pods_ref = &pods;
    harness::wait_for(
        "orders=5 and audit=1 on every broker",
        Duration::from_secs(90),
        || async move {
            let mut seen = Vec::new();
            for p in ["q-0", "q-1", "q-2"] {
                let t = metadata_of(pods_ref, p).await;
                seen.push((p, t.get("orders").copied(), t.get("audit").copied()));
            }
            if seen.iter().all(|(_, o, a)| *o == Some(5) && *a == Some(1)) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    )
    .await
    .expect("queue changes applied to the brokers");

    // Records on every partition of both queues, so the broker that goes (q-2) holds some.
    let q0 = format!("{}:9092", pod_ip(&pods, "q-0").await);
    produce_each(&q0, "orders", 5, 4).await;
    produce_each(&q0, "audit", 1, 4).await;

    // Scale 3 -> 2: the operator drains q-2 first (its partitions move to q-0 and q-1 with
    // AlterPartitionReassignments, it is unregistered), then shrinks the StatefulSet; every
    // record is still there afterwards.
    apply_yaml(
        &ns.name,
        &mq(
            2,
            "{name: orders, partitions: 5}, {name: audit, partitions: 1}",
        ),
    );
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let sts_ref = &sts;
    mq::wait_statefulset_replicas(sts_ref, "q", 2, 180)
        .await
        .expect("the scale-down drains and proceeds");
    wait_available(&mqs, "q", 2, 180).await;
    let leaders = partition_leaders(&q0);
    assert!(
        leaders
            .iter()
            .all(|(_, leader)| *leader == 0 || *leader == 1),
        "every partition led by a staying broker: {leaders:?}"
    );
    assert_eq!(read_all(&q0, "orders", 5, 20).len(), 20, "orders kept");
    assert_eq!(read_all(&q0, "audit", 1, 4).len(), 4, "audit kept");
    let out = kubectl(&["get", "events", "-n", &ns.name, "-o", "json"], None).expect("kubectl");
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("Draining"),
        "a Draining event told what the scale-down did"
    );
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn config_change_and_version_upgrade_roll_one_pod_at_a_time_highest_first_and_keep_data() {
    let (client, ns) = mq::setup("operator_roll", "roll").await;
    let mq = |fsync: &str| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: r}}\n\
             spec: {{replicas: 3, storage: {{size: 1Gi}}, config: {{fsync: {fsync}}}}}\n"
        )
    };
    apply_yaml(&ns.name, &mq("always"));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "r", 3, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    // Data on every broker before the roll.
    let mut before = BTreeMap::new();
    for p in ["r-0", "r-1", "r-2"] {
        let ip = pod_ip(&pods, p).await;
        produce_consume(&format!("{ip}:9092"), "kept", 5).await;
        before.insert(
            p.to_string(),
            pods.get(p).await.expect("pod").uid().expect("uid"),
        );
    }

    apply_yaml(&ns.name, &mq("interval"));
    // Watch the replacements: record the order in which pods get a new uid, and that at no
    // moment more than one broker is not ready.
    let mut order: Vec<String> = Vec::new();
    let mut max_unready = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while order.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "roll not finished in 240 s; replaced so far {order:?}"
        );
        let list = pods.list(&Default::default()).await.expect("pods").items;
        let mut unready = 3 - list.len();
        for p in &list {
            let name = p.name_any();
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if !ready {
                unready += 1;
            }
            if before.get(&name) != p.uid().as_ref() && !order.contains(&name) {
                order.push(name);
            }
        }
        max_unready = max_unready.max(unready);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        order,
        vec!["r-2", "r-1", "r-0"],
        "highest ordinal first, one at a time"
    );
    assert!(
        max_unready <= 1,
        "at most one broker down during the roll (saw {max_unready})"
    );
    wait_available(&mqs, "r", 3, 120).await;
    for p in ["r-0", "r-1", "r-2"] {
        let b = format!("{}:9092", pod_ip(&pods, p).await);
        let what = format!("{p}: the records produced before the roll, read after it");
        let got = kafka::read_partition0(&b, "kept", 5, &what).await;
        assert_eq!(got, kafka::numbered("op", 5), "{what}");
    }

    // A version upgrade is the same roll: every pod gets the new image and version label, and
    // status says which version runs. (The pod runner starts the local broker whatever the image
    // says, so this proves the operator's side: template, roll, status.)
    let status_versions = |m: &MessageQueue| {
        let v = serde_json::to_value(m.status.as_ref()).unwrap_or_default();
        (
            v["currentVersion"].as_str().map(str::to_string),
            v["targetVersion"].as_str().map(str::to_string),
        )
    };
    let before = mqs.get("r").await.expect("mq");
    let (current, _) = status_versions(&before);
    assert!(
        current.as_deref().is_some_and(|v| v != "9.9.9"),
        "a current version before the upgrade: {current:?}"
    );
    let upgrade = serde_json::json!({"spec": {"version": "9.9.9"}});
    mqs.patch("r", &PatchParams::default(), &Patch::Merge(&upgrade))
        .await
        .expect("upgrade");
    let (mqs_ref, pods_ref) = (&mqs, &pods);
    harness::wait_for(
        "every broker on 9.9.9 and status.currentVersion 9.9.9",
        Duration::from_secs(240),
        || async move {
            let m = mqs_ref.get("r").await.map_err(|e| e.to_string())?;
            let list = pods_ref
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let images: Vec<String> = list
                .iter()
                .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter()))
                .filter_map(|c| c.image.clone())
                .collect();
            let labelled = list.iter().all(|p| {
                p.labels()
                    .get("app.kubernetes.io/version")
                    .map(String::as_str)
                    == Some("9.9.9")
            });
            let versions = status_versions(&m);
            let upgraded = list.len() == 3
                && images.iter().all(|i| i.ends_with(":9.9.9"))
                && labelled
                && list.iter().all(sluice_e2e::mq::pod_is_ready);
            if upgraded && versions == (Some("9.9.9".into()), Some("9.9.9".into())) {
                Ok(())
            } else {
                Err(format!(
                    "images {images:?}, status (current, target) {versions:?}"
                ))
            }
        },
    )
    .await
    .expect("the version upgrade rolls every broker");
    wait_available(&mqs, "r", 3, 120).await;
    let events = sluice_e2e::mq::events(&ns.name);
    for p in ["r-0", "r-1", "r-2"] {
        assert!(
            events
                .iter()
                .any(|(_, r, m)| r == "RollingRestart"
                    && m.contains(&format!("restarting pod {p} "))),
            "a RollingRestart Event for {p}: {events:?}"
        );
    }
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn deleted_statefulset_returns_safe_scale_down_proceeds_and_delete_claim_removes_pvcs() {
    let (client, ns) = mq::setup("operator_sts_heal", "heal").await;
    // The replication defaults pinned, so the scale from 3 to 2 below changes no broker setting
    // (unset, they follow replicas and that scale would also roll the brokers).
    let mq = |replicas: i32| {
        format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: h}}\n\
             spec: {{replicas: {replicas}, storage: {{size: 1Gi, deleteClaim: true}}, \
             config: {{autoCreateTopics: false, defaultReplicationFactor: 1}}}}\n"
        )
    };
    apply_yaml(&ns.name, &mq(3));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "h", 3, 240).await;

    // The StatefulSet is deleted: it comes back and the brokers are ready again.
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let old_uid = sts.get("h").await.expect("sts").uid();
    sts.delete("h", &DeleteParams::default())
        .await
        .expect("delete sts");
    let sts_ref = &sts;
    let old = old_uid.as_deref();
    harness::wait_for(
        "StatefulSet recreated",
        Duration::from_secs(90),
        || async move {
            match sts_ref.get_opt("h").await {
                Ok(Some(s)) if s.uid().as_deref() != old => Ok(()),
                Ok(_) => Err("old or absent".to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .expect("the operator recreates a deleted StatefulSet");
    wait_available(&mqs, "h", 3, 240).await;

    // No queue lives on the broker that goes: the scale-down proceeds. (Wait for the StatefulSet
    // itself: readyReplicas can read 2 of 3 while the recreated StatefulSet's pods come back.)
    apply_yaml(&ns.name, &mq(2));
    mq::wait_statefulset_replicas(sts_ref, "h", 2, 120)
        .await
        .expect("the safe scale-down proceeds");
    wait_available(&mqs, "h", 2, 180).await;

    // deleteClaim: true — the PVCs go with the MessageQueue.
    mqs.delete("h", &DeleteParams::default())
        .await
        .expect("delete MessageQueue");
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &ns.name);
    let pvcs_ref = &pvcs;
    harness::wait_for("PVCs deleted", Duration::from_secs(120), || async move {
        let left = pvcs_ref
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                left.iter().map(|p| p.name_any()).collect::<Vec<_>>()
            ))
        }
    })
    .await
    .expect("deleteClaim removes the PVCs");
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}
