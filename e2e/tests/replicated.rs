//! Replication on the real control plane: a MessageQueue of three brokers whose queue has three
//! copies (the defaults for `replicas: 3`: replicationFactor 3, minInsyncReplicas 2), under a
//! continuous `acks=all` load, through a deleted broker pod, a deleted broker volume (PVC and
//! pod) and a version roll. Every acknowledged record must be readable afterwards, once, at the
//! offset its acknowledgement named; the status must report the under-replicated partitions and
//! then recover; the roll must never leave a partition without a leader.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sluice_e2e::harness::{self, kubectl};
use sluice_e2e::mq::{
    self, apply_yaml, pod_ip, pod_is_ready, under_replicated, wait_available, wait_in_sync,
};
use sluice_operator::crd::MessageQueue;

mod kafka;

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;

/// What the producer learnt: record index → (partition, offset) for every acknowledgement,
/// and every delivery that failed.
#[derive(Default)]
struct Deliveries {
    acked: Mutex<BTreeMap<u64, (i32, i64)>>,
    failed: Mutex<Vec<(u64, String)>>,
}

struct Tracker(Arc<Deliveries>);

impl ClientContext for Tracker {}

impl ProducerContext for Tracker {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Self::DeliveryOpaque) {
        match result {
            Ok(m) => {
                let prev = self
                    .0
                    .acked
                    .lock()
                    .expect("lock")
                    .insert(*index, (m.partition(), m.offset()));
                assert!(prev.is_none(), "record {index} acknowledged twice");
            }
            Err((e, _)) => self
                .0
                .failed
                .lock()
                .expect("lock")
                .push((*index, e.to_string())),
        }
    }
}

/// An idempotent `acks=all` producer sending `r-<i>` round-robin to the queue's partitions, about
/// 200 records a second, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    deliveries: Arc<Deliveries>,
    thread: Option<JoinHandle<u64>>,
}

impl Load {
    fn start(bootstrap: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let deliveries = Arc::new(Deliveries::default());
        let (stop2, d2) = (Arc::clone(&stop), Arc::clone(&deliveries));
        let thread = std::thread::spawn(move || {
            let p: ThreadedProducer<Tracker> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                // Longer than any failover or roll step: nothing may fail for want of time.
                .set("message.timeout.ms", "180000")
                .create_with_context(Tracker(d2))
                .expect("producer");
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let payload = format!("r-{i}");
                let partition = (i % PARTITIONS as u64) as i32;
                let rec = BaseRecord::with_opaque_to(TOPIC, Box::new(i))
                    .payload(&payload)
                    .key("k")
                    .partition(partition);
                if p.send(rec).is_err() {
                    // The local queue is full (a failover in progress): try again shortly.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            p.flush(Duration::from_secs(180))
                .expect("every record delivered or failed within 180 s");
            i
        });
        Load {
            stop,
            deliveries,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> usize {
        self.deliveries.acked.lock().expect("lock").len()
    }

    /// Waits until `more` records beyond those acknowledged now are acknowledged.
    async fn wait_progress(&self, more: usize, what: &str) {
        let target = self.acked() + more;
        harness::wait_for(what, Duration::from_secs(120), || async move {
            let n = self.acked();
            if n >= target {
                Ok(())
            } else {
                Err(format!("{n} of {target} acknowledged"))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn finish(mut self) -> (u64, Arc<Deliveries>) {
        self.stop.store(true, Ordering::Relaxed);
        let sent = self
            .thread
            .take()
            .expect("thread")
            .join()
            .expect("producer thread");
        (sent, Arc::clone(&self.deliveries))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Watches the cluster while the test runs: the most under-replicated and offline partitions
/// the MessageQueue's status reported, and the partitions Metadata showed without a leader.
#[derive(Default)]
struct Watch {
    max_under_replicated: AtomicI32,
    max_offline_status: AtomicI32,
    leaderless: Mutex<Vec<String>>,
}

async fn watch(
    watch: Arc<Watch>,
    mqs: Api<MessageQueue>,
    bootstrap: String,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(m) = mqs.get("rq").await {
            if let Some(n) = under_replicated(&m) {
                watch.max_under_replicated.fetch_max(n, Ordering::Relaxed);
            }
            if let Some(n) = mq::offline_partitions(&m) {
                watch.max_offline_status.fetch_max(n, Ordering::Relaxed);
            }
        }
        let b = bootstrap.clone();
        if let Ok(Ok(md)) = tokio::task::spawn_blocking(move || kafka::metadata(&b)).await {
            for t in md.topics().iter().filter(|t| t.name() == TOPIC) {
                for p in t.partitions() {
                    if p.leader() < 0 {
                        watch.leaderless.lock().expect("lock").push(format!(
                            "{TOPIC}-{} ({:?})",
                            p.id(),
                            p.error()
                        ));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every record of every partition of the queue, read from the start: (partition, offset,
/// payload).
fn read_all(bootstrap: &str, expected: usize) -> Vec<(i32, i64, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "replication-e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("offset");
    }
    c.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while got.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            got.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    // A little longer: anything beyond the acknowledged records would show up too.
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            got.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    got
}

async fn bootstrap(pods: &Api<Pod>) -> String {
    let mut addrs = Vec::new();
    for p in ["rq-0", "rq-1", "rq-2"] {
        addrs.push(format!("{}:9092", pod_ip(pods, p).await));
    }
    addrs.join(",")
}

/// The broker leading partition 0 of the queue, by Metadata.
async fn leader_of_partition0(bootstrap: &str) -> i32 {
    let b = bootstrap.to_string();
    harness::wait_for("partition 0 led", Duration::from_secs(60), || {
        let b = b.clone();
        async move {
            let md = tokio::task::spawn_blocking(move || kafka::metadata(&b))
                .await
                .map_err(|e| e.to_string())??;
            md.topics()
                .iter()
                .find(|t| t.name() == TOPIC)
                .and_then(|t| t.partitions().iter().find(|p| p.id() == 0))
                .map(|p| p.leader())
                .filter(|l| *l >= 0)
                .ok_or_else(|| "no leader yet".to_string())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_pod_replaced(pods: &Api<Pod>, name: &str, old_uid: &str) {
    harness::wait_for(
        &format!("{name} replaced and Ready"),
        Duration::from_secs(180),
        || async move {
            let p = pods.get_opt(name).await.map_err(|e| e.to_string())?;
            match p {
                Some(p) if p.uid().as_deref() != Some(old_uid) && pod_is_ready(&p) => Ok(()),
                Some(p) => Err(format!(
                    "same pod {}, ready {}",
                    p.uid().as_deref() == Some(old_uid),
                    pod_is_ready(&p)
                )),
                None => Err("no pod".into()),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

fn delete(ns: &str, kind: &str, name: &str) {
    let out = kubectl(&["delete", kind, name, "-n", ns, "--wait=false"], None).expect("kubectl");
    assert!(out.ok, "delete {kind} {name}: {}", out.stderr);
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn three_copies_keep_every_acknowledged_record_through_a_lost_pod_a_lost_volume_and_a_roll() {
    let (client, ns) = mq::setup("replication", "replicated").await;
    // The defaults for three brokers: replicationFactor 3, minInsyncReplicas 2.
    apply_yaml(
        &ns.name,
        &format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: rq}}\n\
             spec: {{replicas: 3, storage: {{size: 1Gi}}, \
             queues: [{{name: {TOPIC}, partitions: {PARTITIONS}}}]}}\n"
        ),
    );
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "rq", 3, 240).await;
    let settled = wait_in_sync(&mqs, "rq", 120)
        .await
        .expect("the queue's partitions in sync");
    let queue = settled
        .status
        .as_ref()
        .and_then(|s| s.queues.iter().find(|q| q.name == TOPIC).cloned())
        .expect("the queue in status");
    let v = serde_json::to_value(&queue).expect("queue status");
    assert_eq!(v["replicationFactor"], 3, "three copies by default: {v}");

    let boot = bootstrap(&pods).await;
    let load = Load::start(boot.clone());
    load.wait_progress(300, "records acknowledged before anything is lost")
        .await;
    let stop_watch = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Watch::default());
    let watcher = tokio::spawn(watch(
        Arc::clone(&seen),
        mqs.clone(),
        boot.clone(),
        Arc::clone(&stop_watch),
    ));

    // 1. The pod of partition 0's leader is deleted: it hands over, the StatefulSet brings it
    //    back, it catches up.
    let leader = leader_of_partition0(&boot).await;
    let victim = format!("rq-{leader}");
    let uid = pods.get(&victim).await.expect("pod").uid().expect("uid");
    delete(&ns.name, "pod", &victim);
    wait_pod_replaced(&pods, &victim, &uid).await;
    load.wait_progress(300, "records acknowledged after the pod loss")
        .await;
    wait_in_sync(&mqs, "rq", 180)
        .await
        .expect("in sync again after the pod loss");

    // 2. Another broker loses its volume: PVC and pod deleted, back on a new empty volume, it
    //    refills its copies from the leaders.
    let other = (leader + 1) % 3;
    let (name, claim) = (format!("rq-{other}"), format!("data-rq-{other}"));
    let uid = pods.get(&name).await.expect("pod").uid().expect("uid");
    let pvc_uid = pvcs.get(&claim).await.expect("pvc").uid().expect("uid");
    delete(&ns.name, "pvc", &claim);
    delete(&ns.name, "pod", &name);
    wait_pod_replaced(&pods, &name, &uid).await;
    let new_pvc = pvcs.get(&claim).await.expect("new pvc").uid();
    assert_ne!(new_pvc.as_deref(), Some(pvc_uid.as_str()), "a new volume");
    load.wait_progress(300, "records acknowledged after the volume loss")
        .await;
    wait_in_sync(&mqs, "rq", 180)
        .await
        .expect("in sync again after the volume loss");
    assert!(
        seen.max_under_replicated.load(Ordering::Relaxed) > 0,
        "the status reported under-replicated partitions while a broker was gone"
    );

    // 3. A version roll under load: brokers restart one at a time, each handing its
    //    leaderships over first; no partition is ever without a leader.
    seen.leaderless.lock().expect("lock").clear();
    seen.max_offline_status.store(0, Ordering::Relaxed);
    let upgrade = serde_json::json!({"spec": {"version": "9.9.9"}});
    mqs.patch("rq", &PatchParams::default(), &Patch::Merge(&upgrade))
        .await
        .expect("upgrade");
    let mqs_ref = &mqs;
    harness::wait_for(
        "every broker rolled onto 9.9.9",
        Duration::from_secs(300),
        || async move {
            let m = mqs_ref.get("rq").await.map_err(|e| e.to_string())?;
            let v = serde_json::to_value(m.status.as_ref()).unwrap_or_default();
            if v["currentVersion"] == "9.9.9" && mq::ready_replicas(&m) == 3 {
                Ok(())
            } else {
                Err(format!(
                    "currentVersion {}, ready {}",
                    v["currentVersion"],
                    mq::ready_replicas(&m)
                ))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    load.wait_progress(300, "records acknowledged after the roll")
        .await;
    wait_in_sync(&mqs, "rq", 180)
        .await
        .expect("in sync after the roll");
    stop_watch.store(true, Ordering::Relaxed);
    watcher.await.expect("watcher");
    let leaderless = seen.leaderless.lock().expect("lock").clone();
    assert!(
        leaderless.is_empty(),
        "partitions without a leader during the roll: {leaderless:?}"
    );
    assert_eq!(
        seen.max_offline_status.load(Ordering::Relaxed),
        0,
        "status.offlinePartitions during the roll"
    );

    // Every acknowledged record, once, at its acknowledged offset.
    let (sent, deliveries) = load.finish();
    let failed = deliveries.failed.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "{} deliveries failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let acked = deliveries.acked.lock().expect("lock").clone();
    assert_eq!(
        acked.len() as u64,
        sent,
        "every record sent was acknowledged"
    );
    let boot = bootstrap(&pods).await;
    let b = boot.clone();
    let n = acked.len();
    let got = tokio::task::spawn_blocking(move || read_all(&b, n))
        .await
        .expect("reader");
    let mut at: BTreeMap<u64, (i32, i64)> = BTreeMap::new();
    for (partition, offset, payload) in &got {
        let i: u64 = payload
            .strip_prefix("r-")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected payload {payload:?}"));
        assert!(
            at.insert(i, (*partition, *offset)).is_none(),
            "record {i} read twice"
        );
    }
    assert_eq!(at.len(), acked.len(), "records read vs acknowledged");
    for (i, place) in &acked {
        assert_eq!(
            at.get(i),
            Some(place),
            "record {i} read where its acknowledgement said"
        );
    }
    eprintln!(
        "replication e2e: {} records acknowledged, most under-replicated partitions reported {}",
        acked.len(),
        seen.max_under_replicated.load(Ordering::Relaxed)
    );
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}
