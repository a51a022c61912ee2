//! The MessageQueue CRD on a real API server: installed (by the chart in run.sh, or from `crds/`),
//! Established, documented for `kubectl explain`, and refusing bad manifests with messages that
//! say what to fix (OpenAPI schema, enums and CEL rules, including transition rules).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use sluice_e2e::harness::{self, kubectl, TestNamespace};

async fn ensure_crd(client: &kube::Client) -> CustomResourceDefinition {
    harness::ensure_crd(client)
        .await
        .expect("CRD installed and Established")
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn crd_is_established_with_scale_and_status_subresources() {
    let client = harness::connect("crd_is_established").await;
    let crd = ensure_crd(&client).await;
    assert_eq!(crd.spec.group, "sluice.dev");
    assert_eq!(crd.spec.names.kind, "MessageQueue");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["mq".to_string()][..])
    );
    let v = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1alpha1")
        .expect("v1alpha1 served");
    assert!(v.served && v.storage);
    let sub = v.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some(), "status subresource");
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");

    // Discovery knows the short name (what `kubectl get mq` needs).
    let out = kubectl(
        &["api-resources", "--api-group=sluice.dev", "-o", "wide"],
        None,
    )
    .expect("kubectl");
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("messagequeues") && out.stdout.contains("mq"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn kubectl_explain_documents_the_spec() {
    let client = harness::connect("kubectl_explain").await;
    ensure_crd(&client).await;
    // Explain reads the published OpenAPI, which lags CRD establishment by a moment.
    let text = harness::wait_for(
        "kubectl explain messagequeue.spec",
        Duration::from_secs(30),
        || async move {
            let out =
                kubectl(&["explain", "messagequeue.spec"], None).map_err(|e| e.to_string())?;
            if out.ok {
                Ok(out.stdout)
            } else {
                Err(out.stderr)
            }
        },
    )
    .await
    .expect("explain works");
    for field in [
        "replicas",
        "version",
        "storage",
        "queues",
        "queueDeletionPolicy",
        "paused",
        "config",
    ] {
        assert!(
            text.contains(field),
            "explain output lacks {field}:\n{text}"
        );
    }
    let out = kubectl(&["explain", "mq.spec.queues.partitions"], None).expect("kubectl");
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.to_lowercase().contains("partition"),
        "{}",
        out.stdout
    );
}

fn manifest(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
    )
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn invalid_manifests_are_refused_with_a_message_saying_what_to_fix() {
    let client = harness::connect("invalid_manifests").await;
    ensure_crd(&client).await;
    let ns = TestNamespace::create(&client, "invalid")
        .await
        .expect("namespace");

    // (spec, words the refusal must contain)
    let cases: &[(&str, &[&str])] = &[
        ("  replicas: 0\n", &["replicas must be at least 1"]),
        (
            "  queues:\n  - name: \"bad name!\"\n",
            &["queue name may only contain"],
        ),
        (
            "  queues:\n  - name: ok\n    partitions: 0\n",
            &["partitions must be at least 1"],
        ),
        (
            "  replicas: 1\n  queues:\n  - name: ok\n    replicationFactor: 3\n",
            &["replicationFactor must be at most spec.replicas"],
        ),
        (
            "  queueDeletionPolicy: Sometimes\n",
            &["queueDeletionPolicy", "Retain", "Delete"],
        ),
        (
            "  config:\n    fsync: sometimes\n",
            &["fsync", "always", "interval"],
        ),
        (
            "  storage:\n    size: lots\n",
            &["storage.size must be a Kubernetes quantity"],
        ),
        (
            "  disruptionBudget:\n    maxUnavailable: 0\n",
            &["maxUnavailable must be at least 1"],
        ),
        ("  replicas: \"three\"\n", &["replicas", "integer"]),
        (
            "  config:\n    segmentBytes: 4294967296\n",
            &["segmentBytes", "2147483647"],
        ),
        (
            "  replicas: 3\n  config:\n    defaultReplicationFactor: 2\n    minInsyncReplicas: 3\n",
            &["config.minInsyncReplicas must be at most the default replication factor"],
        ),
        (
            "  replicas: 2\n  config:\n    minInsyncReplicas: 3\n",
            &["config.minInsyncReplicas must be at most the default replication factor"],
        ),
        (
            "  replicas: 2\n  config:\n    defaultReplicationFactor: 3\n",
            &["config.defaultReplicationFactor must be at most spec.replicas"],
        ),
    ];
    for (i, (spec, words)) in cases.iter().enumerate() {
        let m = manifest(&ns.name, &format!("bad-{i}"), spec);
        let out = kubectl(&["apply", "-f", "-"], Some(&m)).expect("kubectl runs");
        assert!(
            !out.ok,
            "manifest {i} was accepted but must be refused:\n{m}"
        );
        for w in *words {
            assert!(
                out.stderr.contains(w),
                "refusal of manifest {i} lacks {w:?}:\n{m}\n{}",
                out.stderr
            );
        }
    }

    // Replication up to the broker count is valid, and `kubectl get mq` has a column for the
    // under-replicated partitions.
    let replicated = manifest(
        &ns.name,
        "replicated",
        "  replicas: 3\n  config:\n    defaultReplicationFactor: 3\n    minInsyncReplicas: 2\n  queues:\n  - name: orders\n    replicationFactor: 3\n  - name: audit\n",
    );
    let out = kubectl(&["apply", "-f", "-"], Some(&replicated)).expect("kubectl runs");
    assert!(
        out.ok,
        "three copies on three brokers refused: {}",
        out.stderr
    );
    let out = kubectl(&["get", "mq", "replicated", "-n", &ns.name], None).expect("kubectl runs");
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("UNDER-REPLICATED"),
        "kubectl get mq columns:\n{}",
        out.stdout
    );

    // Transition rules: a valid object, then updates that shrink storage / drop partitions.
    let good = manifest(
        &ns.name,
        "good",
        "  replicas: 1\n  storage:\n    size: 2Gi\n  queues:\n  - name: orders\n    partitions: 4\n",
    );
    let out = kubectl(&["apply", "-f", "-"], Some(&good)).expect("kubectl runs");
    assert!(out.ok, "valid manifest refused: {}", out.stderr);
    let updates: &[(&str, &str)] = &[
        (
            "  replicas: 1\n  storage:\n    size: 1Gi\n  queues:\n  - name: orders\n    partitions: 4\n",
            "storage.size cannot shrink",
        ),
        (
            "  replicas: 1\n  storage:\n    size: 2Gi\n  queues:\n  - name: orders\n    partitions: 2\n",
            "partitions cannot decrease",
        ),
    ];
    for (spec, words) in updates {
        let m = manifest(&ns.name, "good", spec);
        let out = kubectl(&["apply", "-f", "-"], Some(&m)).expect("kubectl runs");
        assert!(!out.ok, "update was accepted but must be refused:\n{m}");
        assert!(
            out.stderr.contains(words),
            "refusal lacks {words:?}: {}",
            out.stderr
        );
    }
    ns.delete_and_wait(&client, Duration::from_secs(60))
        .await
        .expect("namespace deleted");
}
