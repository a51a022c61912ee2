//! Broker pods that really run, without the operator's reconcile loop: a MessageQueue is created
//! on the API server, its children are built by the operator's own pure builders and applied with
//! server-side apply, and then the real control plane does the rest — the StatefulSet controller
//! creates pods, the scheduler puts them on kwok nodes, kwok binds the PVCs and gives pod IPs, the
//! pod runner starts real `sluice-broker` processes and reports /readyz as pod readiness.
//!
//! Proves: the built children are accepted by a real API server; pods become Ready only when the
//! broker serves; a real Kafka client (librdkafka) produces to and consumes from a broker at its
//! pod IP; a deleted pod comes back with its data (same PVC folder); deleting the MessageQueue
//! garbage-collects every child through owner references and stops the brokers; the namespace
//! deletes without hanging.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use sluice_e2e::harness::{self, TestNamespace};
use sluice_operator::builders::{build_children, BuildConfig};
use sluice_operator::crd::MessageQueue;

const MANAGER: &str = "sluice-e2e";

mod kafka;

async fn apply<K>(client: &Client, ns: &str, obj: &K)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + serde::Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {} {name}: {e}", K::kind(&Default::default())));
}

async fn pod_ip_when_ready(pods: &Api<Pod>, name: &str, not_uid: Option<&str>) -> (String, String) {
    harness::wait_for(
        &format!("pod {name} Ready"),
        Duration::from_secs(120),
        || async move {
            let p = pods
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("pod absent")?;
            let uid = p.uid().unwrap_or_default();
            if not_uid == Some(uid.as_str()) {
                return Err("still the old pod".into());
            }
            let st = p.status.clone().unwrap_or_default();
            let ready = st
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            match (ready, st.pod_ip) {
                (true, Some(ip)) => Ok((ip, uid)),
                (_, ip) => Err(format!("phase {:?} ip {ip:?} ready {ready}", st.phase)),
            }
        },
    )
    .await
    .expect("pod becomes Ready (is the pod runner running? see e2e/.work/pod-runner.log)")
}

async fn gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    harness::wait_for(
        &format!("{name} garbage-collected"),
        Duration::from_secs(60),
        || async move {
            match api.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err("still present".into()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .expect("child removed through its owner reference");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn broker_pods_run_serve_kafka_and_keep_data_across_restarts() {
    let client = harness::connect("broker_pods").await;
    harness::ensure_crd(&client)
        .await
        .expect("CRD installed and Established");
    let ns = TestNamespace::create(&client, "brokers")
        .await
        .expect("namespace");

    // 1. The MessageQueue object (for a real uid: the owner of every child).
    let mq: MessageQueue = serde_yaml::from_str(&format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: demo, namespace: {}}}\n\
         spec: {{replicas: 3, storage: {{size: 1Gi}}, config: {{fsync: always}}}}\n",
        ns.name
    ))
    .expect("manifest");
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    let mq = mqs
        .create(&PostParams::default(), &mq)
        .await
        .expect("MessageQueue created");

    // 2. Children from the operator's builders, applied as the operator would.
    let children = build_children(&mq, &BuildConfig::default(), None).expect("children build");
    apply(&client, &ns.name, &children.configmap).await;
    apply(&client, &ns.name, &children.headless_service).await;
    apply(&client, &ns.name, &children.client_service).await;
    apply(&client, &ns.name, &children.pdb).await;
    apply(&client, &ns.name, &children.statefulset).await;
    let sts_name = children.statefulset.name_any();

    // 3. The StatefulSet controller, scheduler, kwok and the pod runner bring 3 brokers up.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let (sts_ref, sts_name_ref) = (&sts_api, &sts_name);
    harness::wait_for("3 ready brokers", Duration::from_secs(180), || async move {
        let s = sts_ref.get(sts_name_ref).await.map_err(|e| e.to_string())?;
        let ready = s
            .status
            .as_ref()
            .and_then(|st| st.ready_replicas)
            .unwrap_or(0);
        if ready == 3 {
            Ok(())
        } else {
            Err(format!("readyReplicas {ready}"))
        }
    })
    .await
    .expect("StatefulSet becomes ready");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns.name);
    for i in 0..3 {
        let name = format!("data-{sts_name}-{i}");
        let pvc = pvcs.get(&name).await.expect("PVC exists");
        let phase = pvc.status.and_then(|s| s.phase);
        assert_eq!(phase.as_deref(), Some("Bound"), "PVC {name}");
    }

    // 4. A real Kafka client against broker 0 at its pod IP.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod0 = format!("{sts_name}-0");
    let (ip, uid) = pod_ip_when_ready(&pods, &pod0, None).await;
    assert!(
        ip.starts_with("127.1."),
        "pod IP {ip} is in the loopback pod CIDR"
    );
    let bootstrap = format!("{ip}:9092");
    let want = kafka::numbered("message", 20);
    kafka::produce(&bootstrap, "e2e-orders", 0, &want).await;
    let got = kafka::read_partition0(&bootstrap, "e2e-orders", 20, "read back").await;
    assert_eq!(got, want);

    // 5. Delete the pod: the StatefulSet recreates it, the runner restarts the broker on the same
    //    PVC folder, and the data is still there.
    pods.delete(&pod0, &DeleteParams::default())
        .await
        .expect("pod deleted");
    let (ip2, _) = pod_ip_when_ready(&pods, &pod0, Some(&uid)).await;
    let bootstrap2 = format!("{ip2}:9092");
    let got = kafka::read_partition0(&bootstrap2, "e2e-orders", 20, "after the restart").await;
    assert_eq!(got, want, "messages survive the pod's replacement");

    // 6. Delete the MessageQueue: owner references make the garbage collector remove every child;
    //    the brokers stop with their pods.
    mqs.delete("demo", &DeleteParams::foreground())
        .await
        .expect("MessageQueue deleted");
    gone(&sts_api, &sts_name).await;
    gone(
        &Api::<ConfigMap>::namespaced(client.clone(), &ns.name),
        &children.configmap.name_any(),
    )
    .await;
    gone(
        &Api::<Service>::namespaced(client.clone(), &ns.name),
        &children.client_service.name_any(),
    )
    .await;
    gone(
        &Api::<Service>::namespaced(client.clone(), &ns.name),
        &children.headless_service.name_any(),
    )
    .await;
    gone(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns.name),
        &children.pdb.name_any(),
    )
    .await;
    gone(&pods, &pod0).await;
    let ip2_ref = &ip2;
    harness::wait_for("broker 0 stopped", Duration::from_secs(60), || async move {
        match tokio::net::TcpStream::connect(format!("{ip2_ref}:9092")).await {
            Err(_) => Ok(()),
            Ok(_) => Err("kafka port still accepting".to_string()),
        }
    })
    .await
    .expect("the pod runner stops the broker of a deleted pod");

    ns.delete_and_wait(&client, Duration::from_secs(90))
        .await
        .expect("namespace deleted");
}
