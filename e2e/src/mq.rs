//! Helpers the operator scenarios share: the operator process under test, `kubectl apply`, a
//! MessageQueue's conditions, readiness and replication (under-replicated and offline
//! partitions), pods and their IPs, Events. Everything waits through
//! [`harness::wait_for`] under a deadline.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Client;

use crate::harness::{self, kubectl, HarnessError, TestNamespace};
use sluice_operator::crd::MessageQueue;

/// The e2e state folder (`e2e/.work`): kubeconfig, logs, the operator's pid file.
pub fn work() -> PathBuf {
    harness::repo_root().join("e2e/.work")
}

/// True when `pid` names a live (not zombie) process.
pub fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The pid of the operator under test, from `e2e/.work/operator.pid`.
pub fn operator_pid() -> Option<String> {
    std::fs::read_to_string(work().join("operator.pid"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Makes sure an operator process runs: `e2e/scripts/operator.sh start` (helm install, a token
/// of the chart's ServiceAccount, the operator as a host process) when no live one is recorded.
/// So every scenario can start first, and none depends on another having run.
pub fn ensure_operator() {
    if operator_pid().is_some_and(|p| alive(&p)) {
        return;
    }
    start_operator(None);
}

/// `e2e/scripts/operator.sh start` (stopping a running operator first), with the operator's
/// kubeconfig pointing at `api_server` when given instead of the cluster's own address.
pub fn start_operator(api_server: Option<&str>) {
    let script = harness::repo_root().join("e2e/scripts/operator.sh");
    let mut cmd = Command::new(&script);
    cmd.arg("start");
    if let Some(server) = api_server {
        cmd.env("SLUICE_OPERATOR_API_SERVER", server);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "operator.sh start failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The start of every operator scenario: the suite is enabled, a client, a live operator
/// ([`ensure_operator`]) and the scenario's own namespace (`e2e-<scenario>-…`).
pub async fn setup(test: &str, scenario: &str) -> (Client, TestNamespace) {
    let client = harness::connect(test).await;
    ensure_operator();
    let ns = TestNamespace::create(&client, scenario)
        .await
        .expect("namespace");
    (client, ns)
}

/// `kubectl apply -n <ns> -f -` of `yaml`; panics with kubectl's message when refused.
pub fn apply_yaml(ns: &str, yaml: &str) {
    let out = kubectl(&["apply", "-n", ns, "-f", "-"], Some(yaml)).expect("kubectl");
    assert!(out.ok, "kubectl apply: {}", out.stderr);
}

/// (status, reason, message) of a condition of the MessageQueue's status.
pub fn condition(mq: &MessageQueue, type_: &str) -> Option<(String, String, String)> {
    let v = serde_json::to_value(mq.status.as_ref()?).ok()?;
    v.get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// `status.readyReplicas`, 0 when absent.
pub fn ready_replicas(mq: &MessageQueue) -> i64 {
    serde_json::to_value(mq.status.as_ref())
        .ok()
        .and_then(|v| v.get("readyReplicas").and_then(|r| r.as_i64()))
        .unwrap_or(0)
}

/// Waits until the MessageQueue is `Available` with `replicas` ready brokers, and its pods agree:
/// exactly `replicas` of them, each Ready and none being deleted.
///
/// The pods are checked as well because status can lag them: just after a pod is deleted (a
/// roll, a heal) the MessageQueue still says Available with every replica ready until the
/// operator's next status write, and a client sent to the replacement then finds nothing
/// listening.
pub async fn wait_available(
    mqs: &Api<MessageQueue>,
    name: &str,
    replicas: i64,
    secs: u64,
) -> MessageQueue {
    let pods: Api<Pod> = match mqs.namespace() {
        Some(ns) => Api::namespaced(mqs.clone().into_client(), ns),
        None => Api::default_namespaced(mqs.clone().into_client()),
    };
    let selector = format!("app.kubernetes.io/instance={name}");
    let (pods, selector) = (&pods, &selector);
    harness::wait_for(
        &format!("MessageQueue {name} Available with {replicas} ready"),
        Duration::from_secs(secs),
        || async move {
            let mq = mqs.get(name).await.map_err(|e| e.to_string())?;
            let avail = condition(&mq, "Available");
            let ready = ready_replicas(&mq);
            if !matches!(&avail, Some((s, _, _)) if s == "True") || ready != replicas {
                return Err(format!("Available {avail:?} readyReplicas {ready}"));
            }
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?
                .items;
            let serving = list
                .iter()
                .filter(|p| pod_is_ready(p) && p.metadata.deletion_timestamp.is_none())
                .count();
            if list.len() as i64 == replicas && serving as i64 == replicas {
                Ok(mq)
            } else {
                Err(format!(
                    "status says Available with {ready} ready, but {serving} of {} pods serve",
                    list.len()
                ))
            }
        },
    )
    .await
    .expect("MessageQueue becomes Available (see e2e/.work/operator.log and pod-runner.log)")
}

/// Waits until condition `type_` of MessageQueue `name` has `status` ("True" or "False");
/// returns its (reason, message).
pub async fn wait_condition(
    mqs: &Api<MessageQueue>,
    name: &str,
    type_: &str,
    status: &str,
    secs: u64,
) -> Result<(String, String), HarnessError> {
    harness::wait_for(
        &format!("MessageQueue {name}: {type_} {status}"),
        Duration::from_secs(secs),
        || async move {
            let mq = mqs.get(name).await.map_err(|e| e.to_string())?;
            match condition(&mq, type_) {
                Some((s, reason, message)) if s == status => Ok((reason, message)),
                other => Err(format!("{type_} {other:?}")),
            }
        },
    )
    .await
}

/// `status.underReplicatedPartitions`: partitions with a replica out of sync or no leader;
/// None while no broker answered the operator.
pub fn under_replicated(mq: &MessageQueue) -> Option<i32> {
    mq.status.as_ref()?.under_replicated_partitions
}

/// `status.offlinePartitions`: partitions with no leader; None while no broker answered.
pub fn offline_partitions(mq: &MessageQueue) -> Option<i32> {
    mq.status.as_ref()?.offline_partitions
}

/// Waits until the operator reports under-replicated partitions on MessageQueue `name` (after
/// a broker pod or its volume is lost); returns the count and the `Replicated` condition's
/// (reason, message), which name an example.
pub async fn wait_under_replicated(
    mqs: &Api<MessageQueue>,
    name: &str,
    secs: u64,
) -> Result<(i32, String, String), HarnessError> {
    harness::wait_for(
        &format!("MessageQueue {name}: under-replicated partitions reported"),
        Duration::from_secs(secs),
        || async move {
            let mq = mqs.get(name).await.map_err(|e| e.to_string())?;
            let count = under_replicated(&mq);
            match (count, condition(&mq, "Replicated")) {
                (Some(n), Some((s, reason, message))) if n > 0 && s == "False" => {
                    Ok((n, reason, message))
                }
                (count, replicated) => Err(format!(
                    "underReplicatedPartitions {count:?}, Replicated {replicated:?}"
                )),
            }
        },
    )
    .await
}

/// Waits until every partition of MessageQueue `name` has all its replicas in sync again:
/// `status.underReplicatedPartitions` and `status.offlinePartitions` are 0 and `Replicated` is
/// True. A status written before the last spec change does not count.
pub async fn wait_in_sync(
    mqs: &Api<MessageQueue>,
    name: &str,
    secs: u64,
) -> Result<MessageQueue, HarnessError> {
    harness::wait_for(
        &format!("MessageQueue {name}: every partition in sync"),
        Duration::from_secs(secs),
        || async move {
            let mq = mqs.get(name).await.map_err(|e| e.to_string())?;
            let current =
                mq.status.as_ref().and_then(|s| s.observed_generation) == mq.metadata.generation;
            let (urp, offline) = (under_replicated(&mq), offline_partitions(&mq));
            match condition(&mq, "Replicated") {
                Some((s, _, _))
                    if s == "True" && current && urp == Some(0) && offline == Some(0) =>
                {
                    Ok(mq)
                }
                replicated => Err(format!(
                    "underReplicatedPartitions {urp:?}, offlinePartitions {offline:?}, \
                     Replicated {replicated:?}, status of the current generation: {current}"
                )),
            }
        },
    )
    .await
}

/// Waits until StatefulSet `name` asks for `replicas` pods.
pub async fn wait_statefulset_replicas(
    sts: &Api<StatefulSet>,
    name: &str,
    replicas: i32,
    secs: u64,
) -> Result<(), HarnessError> {
    harness::wait_for(
        &format!("StatefulSet {name} at {replicas} replicas"),
        Duration::from_secs(secs),
        || async move {
            match sts.get(name).await {
                Ok(s) if s.spec.as_ref().and_then(|sp| sp.replicas) == Some(replicas) => Ok(()),
                Ok(s) => Err(format!("replicas {:?}", s.spec.and_then(|sp| sp.replicas))),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

/// The pod's IP (broker pods' IPs are loopback addresses reachable from the host).
pub async fn pod_ip(pods: &Api<Pod>, name: &str) -> String {
    let p = pods.get(name).await.expect("pod");
    p.status.and_then(|s| s.pod_ip).expect("pod IP")
}

/// The pod's `Ready` condition is `True`.
pub fn pod_is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Events of a namespace as (type, reason, message), from `kubectl get events`.
pub fn events(ns: &str) -> Vec<(String, String, String)> {
    let out = kubectl(&["get", "events", "-n", ns, "-o", "json"], None).expect("kubectl");
    assert!(out.ok, "kubectl get events: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("events JSON");
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|e| {
                    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (s("type"), s("reason"), s("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}
