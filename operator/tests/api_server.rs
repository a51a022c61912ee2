//! Against a real kube-apiserver (no controller-manager needed): the CRD is accepted, every CEL
//! rule refuses its bad manifest with the message that says what to change, and the controller
//! creates, heals and finalizes a MessageQueue's children.
//!
//! Ignored by default because it needs a cluster. Run with a kubeconfig of an admin user:
//! `KUBECONFIG=... cargo test -p sluice-operator --test api_server -- --ignored --test-threads=1`.
//! The e2e suite runs the full product (pods, brokers, chart RBAC) on top of this.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, Resource};
use sluice_operator::builders::BuildConfig;
use sluice_operator::crd::MessageQueue;
use sluice_operator::metrics::Metrics;
use sluice_operator::reconcile::Context;

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` every 200 ms until it returns a value, for at most [`DEADLINE`].
async fn poll<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_for(what, DEADLINE.as_secs(), f).await
}

/// The operator's controller, run in this process against the test's namespace.
struct Controller {
    metrics: Arc<Metrics>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Controller {
    fn start(client: &Client, ns: &str) -> Controller {
        let events = Arc::new(sluice_operator::events::EventWriter::new(
            client.clone(),
            "sluice-operator",
            "test",
        ));
        let metrics = Arc::new(Metrics::default());
        let ctx = Arc::new(Context::new(
            client.clone(),
            events,
            metrics.clone(),
            BuildConfig::default(),
        ));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(sluice_operator::run_controller(
            client.clone(),
            Some(ns.to_string()),
            ctx,
            stop_rx,
        ));
        Controller {
            metrics,
            stop_tx,
            handle,
        }
    }

    async fn stop(self) {
        self.stop_tx.send(true).expect("stop");
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("controller stops")
            .expect("join");
    }
}

async fn setup(ns: &str) -> Client {
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG points at an API server");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition =
        serde_json::from_value(sluice_operator::crd::crd_value()).expect("crd");
    crds.patch(
        "messagequeues.sluice.dev",
        &PatchParams::apply("sluice-operator-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD accepted by the API server");
    poll("CRD established", || {
        let crds = crds.clone();
        async move {
            let crd = crds.get("messagequeues.sluice.dev").await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("ns");
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating namespace {ns}: {e}"),
    }
    // discovery of the new type can lag the Established condition
    let api: Api<MessageQueue> = Api::namespaced(client.clone(), ns);
    poll("MessageQueue API served", || {
        let api = api.clone();
        async move { api.list(&Default::default()).await.ok().map(|_| ()) }
    })
    .await;
    client
}

/// A fresh namespace per run: a bare API server has no namespace controller to finish deleting
/// an old one.
fn unique_namespace(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn dynamic(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<MessageQueue>(&()))
}

async fn apply(
    api: &Api<DynamicObject>,
    name: &str,
    spec: serde_json::Value,
) -> Result<(), String> {
    let obj: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "MessageQueue",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("object");
    api.patch(
        name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&obj),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

async fn refused(api: &Api<DynamicObject>, name: &str, spec: serde_json::Value, expected: &str) {
    let err = apply(api, name, spec.clone())
        .await
        .expect_err(&format!("spec {spec} must be refused"));
    assert!(
        err.contains(expected),
        "refusal of {spec} says {err:?}, expected {expected:?}"
    );
}

#[tokio::test]
#[ignore = "needs an API server: KUBECONFIG=... cargo test --test api_server -- --ignored"]
async fn api_server_refuses_invalid_manifests_with_actionable_messages() {
    let ns = &unique_namespace("sluice-op-cel");
    let client = setup(ns).await;
    let api = dynamic(&client, ns);
    use serde_json::json;
    // (object name, spec, what the refusal must say)
    let cases = [
        ("r0", json!({"replicas": 0}), "replicas must be at least 1"),
        (
            "n1",
            json!({"queues": [{"name": "a b"}]}),
            "may only contain letters, digits",
        ),
        (
            "n2",
            json!({"queues": [{"name": ".."}]}),
            "cannot be '.' or '..'",
        ),
        (
            "n3",
            json!({"queues": [{"name": "__x"}]}),
            "reserved for the broker",
        ),
        (
            "n4",
            json!({"queues": [{"name": "a"}, {"name": "a"}]}),
            "duplicate entries for key [name=\"a\"]",
        ),
        (
            "rf",
            json!({"replicas": 1, "queues": [{"name": "a", "replicationFactor": 2}]}),
            "replicationFactor must be at most spec.replicas",
        ),
        (
            "drf",
            json!({"replicas": 1, "config": {"defaultReplicationFactor": 3}}),
            "defaultReplicationFactor must be at most spec.replicas",
        ),
        (
            "mis",
            json!({"replicas": 3, "config": {"defaultReplicationFactor": 2, "minInsyncReplicas": 3}}),
            "config.minInsyncReplicas must be at most the default replication factor",
        ),
        (
            "mis2",
            json!({"replicas": 2, "config": {"minInsyncReplicas": 3}}),
            "config.minInsyncReplicas must be at most the default replication factor",
        ),
        (
            "st",
            json!({"storage": {"size": "lots"}}),
            "must be a Kubernetes quantity",
        ),
        (
            "ck",
            json!({"queues": [{"name": "a", "config": {"foo.bar": "1"}}]}),
            "field not declared in schema",
        ),
        (
            "fs",
            json!({"queues": [{"name": "a", "config": {"sluice.fsync": "sometimes"}}]}),
            "supported values: \"always\", \"interval\"",
        ),
        (
            "sr1",
            json!({"queues": [{"name": "a", "config": {"share.auto.offset.reset": "by_duration:PT"}}]}),
            "share.auto.offset.reset must be earliest, latest or by_duration:<ISO-8601 duration>",
        ),
        (
            "sr2",
            json!({"queues": [{"name": "a", "config": {"share.auto.offset.reset": "by_duration:1h"}}]}),
            "e.g. by_duration:PT1H",
        ),
        (
            "sr3",
            json!({"queues": [{"name": "a", "config": {"share.auto.offset.reset": "by_duration:PT1M2H"}}]}),
            "each at most once and in that order",
        ),
        (
            "sr4",
            json!({"queues": [{"name": "a", "config": {"share.auto.offset.reset": "oldest"}}]}),
            "share.auto.offset.reset must be earliest, latest or",
        ),
        (
            "pdb",
            json!({"disruptionBudget": {"maxUnavailable": 0}}),
            "maxUnavailable must be at least 1",
        ),
        (
            "wq1",
            json!({"queues": [{"name": "jobs", "delivery": {"limit": 3}}]}),
            "delivery settings apply only to a work queue: set type: queue",
        ),
        (
            "wq2",
            json!({"queues": [{"name": "jobs", "type": "queue", "delivery": {"deadLetterQueue": "jobs"}}]}),
            "a queue cannot be its own dead-letter queue",
        ),
        (
            "wq4",
            json!({"queues": [{"name": "jobs", "type": "queue", "delivery": {"limit": 11}}]}),
            "should be less than or equal to 10",
        ),
        (
            "wq5",
            json!({"queues": [{"name": "jobs", "type": "fifo"}]}),
            "supported values: \"stream\", \"queue\"",
        ),
        (
            "sec1",
            json!({"authentication": {"type": "plain"}}),
            "authentication type plain sends passwords as they are: set spec.tls",
        ),
        (
            "sec2",
            json!({"users": [{"name": "app"}]}),
            "users need authentication",
        ),
        (
            "sec3",
            json!({"authentication": {"type": "none"}, "users": [{"name": "app"}]}),
            "users need authentication",
        ),
        (
            "sec4",
            json!({"tls": {"secretName": "s", "issuerRef": {"name": "ca"}}}),
            "set secretName or issuerRef, not both",
        ),
        (
            "sec5",
            json!({"authentication": {"type": "scram-sha-512"},
                   "users": [{"name": "app", "acls": [{"queue": "a", "group": "g", "operations": ["read"]}]}]}),
            "each ACL names exactly one of queue, queuePrefix, group, groupPrefix, transactionalId or transactionalIdPrefix",
        ),
        (
            "sec6",
            json!({"authentication": {"type": "scram-sha-512"}, "users": [{"name": "sluice-operator"}]}),
            "the operator's own",
        ),
        (
            "sec7",
            json!({"authentication": {"type": "scram-sha-512"}, "users": [{"name": "App_1"}]}),
            "user name may only contain lower-case letters",
        ),
        (
            "sec8",
            json!({"authentication": {"type": "kerberos"}}),
            "supported values: \"none\", \"scram-sha-512\", \"plain\"",
        ),
        (
            "sec9",
            json!({"authentication": {"type": "scram-sha-512"},
                   "users": [{"name": "app", "acls": [{"queue": "a", "operations": ["fly"]}]}]}),
            "supported values",
        ),
        (
            "sec10",
            json!({"authentication": {"type": "scram-sha-512"},
                   "users": [{"name": "app", "quotas": {"producerByteRate": 0}}]}),
            "producerByteRate",
        ),
    ];
    for (name, spec, expected) in cases {
        refused(&api, name, spec, expected).await;
    }

    // a work queue with its dead-letter queue declared beside it is accepted
    apply(
        &api,
        "wq-ok",
        json!({"queues": [
            {"name": "jobs", "type": "queue",
             "delivery": {"lockDurationMs": 60000, "limit": 3, "deadLetterQueue": "jobs-dlq"}},
            {"name": "jobs-dlq"}]}),
    )
    .await
    .expect("a work queue and its dead-letter queue accepted");

    // every form of share.auto.offset.reset the brokers take is accepted
    apply(
        &api,
        "sr-ok",
        json!({"queues": [
            {"name": "a", "type": "queue", "config": {"share.auto.offset.reset": "latest"}},
            {"name": "b", "type": "queue", "config": {"share.auto.offset.reset": "by_duration:PT1H"}},
            {"name": "c", "config": {"share.auto.offset.reset": "by_duration:P7D"}},
            {"name": "d", "config": {"share.auto.offset.reset": "by_duration:p1dt12h30m"}},
            {"name": "e", "config": {"share.auto.offset.reset": "by_duration:PT0.5S"}}]}),
    )
    .await
    .expect("earliest, latest and by_duration starts accepted");

    // TLS with PLAIN, and a user with queue and group ACLs, are accepted
    apply(
        &api,
        "sec-ok",
        json!({"tls": {}, "authentication": {"type": "plain"},
               "networkPolicy": {"enabled": true, "clientSelector": {"matchLabels": {"app": "shop"}}},
               "users": [{"name": "app", "acls": [
                   {"queue": "orders", "operations": ["read", "write"]},
                   {"groupPrefix": "app-", "operations": ["read"]},
                   {"queuePrefix": "audit.", "operations": ["all"], "permission": "deny"}],
                   "quotas": {"producerByteRate": 1048576, "consumerByteRate": 2097152}}]}),
    )
    .await
    .expect("TLS, PLAIN and a user with ACLs and quotas accepted");

    // replication up to the broker count is accepted
    apply(
        &api,
        "rf3",
        json!({"replicas": 3, "config": {"defaultReplicationFactor": 3, "minInsyncReplicas": 2},
               "queues": [{"name": "a", "replicationFactor": 3}, {"name": "b"}]}),
    )
    .await
    .expect("three copies on three brokers accepted");
    apply(
        &api,
        "mis5",
        json!({"replicas": 5, "config": {"minInsyncReplicas": 3}}),
    )
    .await
    .expect("min.insync.replicas 3 of the default 3 copies accepted");

    // transition rules compare with the stored object
    let good = json!({"replicas": 3, "storage": {"size": "20Gi", "storageClassName": "fast"}, "queues": [{"name": "orders", "partitions": 4}]});
    apply(&api, "good", good)
        .await
        .expect("valid manifest accepted");
    refused(&api, "good", json!({"replicas": 3, "storage": {"size": "20Gi", "storageClassName": "fast"}, "queues": [{"name": "orders", "partitions": 2}]}), "partitions cannot decrease").await;
    refused(&api, "good", json!({"replicas": 3, "storage": {"size": "10Gi", "storageClassName": "fast"}, "queues": [{"name": "orders", "partitions": 4}]}), "storage.size cannot shrink").await;
    refused(&api, "good", json!({"replicas": 3, "storage": {"size": "20Gi", "storageClassName": "slow"}, "queues": [{"name": "orders", "partitions": 4}]}), "storageClassName cannot change").await;
    apply(&api, "good", json!({"replicas": 3, "storage": {"size": "30Gi", "storageClassName": "fast"}, "queues": [{"name": "orders", "partitions": 6}]}))
        .await
        .expect("growing storage and partitions is allowed");

    // defaults land in the stored object
    let typed: Api<MessageQueue> = Api::namespaced(client.clone(), ns);
    let stored = typed.get("good").await.expect("get");
    assert_eq!(stored.spec.service.port, 9092);
    assert_eq!(stored.spec.queues[0].partitions, 6);
    assert_eq!(
        stored.spec.queues[0].replication_factor, None,
        "no schema default: unset means the MessageQueue's default replication factor"
    );
    typed
        .delete("good", &DeleteParams::default())
        .await
        .expect("delete");
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// A MessageQueue with `tls: {}`, SCRAM and a user: the controller generates the CA, the
/// brokers' certificate, its own credentials and the user's Secret (no broker is needed for
/// those), mounts them in the StatefulSet, and keeps the CA and certificate across passes; the
/// NetworkPolicy comes and goes with `networkPolicy.enabled`. No secret reaches an Event.
#[tokio::test]
#[ignore = "needs an API server: KUBECONFIG=... cargo test --test api_server -- --ignored"]
async fn controller_generates_and_keeps_the_security_secrets() {
    let ns = &unique_namespace("sluice-op-secure");
    let client = setup(ns).await;
    let controller = Controller::start(&client, ns);
    let api: Api<MessageQueue> = Api::namespaced(client.clone(), ns);
    let manifest = |policy: bool| {
        serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "MessageQueue",
            "metadata": {"name": "sec"},
            "spec": {"replicas": 1, "tls": {}, "authentication": {"type": "scram-sha-512"},
                     "networkPolicy": {"enabled": policy},
                     "users": [{"name": "app", "acls": [{"queue": "orders", "operations": ["read"]}]}]}
        })
    };
    let mq: MessageQueue = serde_json::from_value(manifest(true)).expect("mq");
    api.create(&PostParams::default(), &mq)
        .await
        .expect("create");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let get = |name: &'static str| {
        let secrets = secrets.clone();
        async move { secrets.get_opt(name).await.ok().flatten() }
    };
    let ca = poll("Secret sec-ca", || get("sec-ca")).await;
    let tls = poll("Secret sec-tls", || get("sec-tls")).await;
    let creds = poll("Secret sec-operator-credentials", || {
        get("sec-operator-credentials")
    })
    .await;
    let user = poll("Secret sec-user-app", || get("sec-user-app")).await;
    assert!(secret_text(&ca, "ca.key").is_some_and(|k| k.contains("PRIVATE KEY")));
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(secret_text(&tls, "ca.crt"), secret_text(&ca, "ca.crt"));
    assert!(tls
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("sluice.dev/not-after")));
    let password = secret_text(&creds, "password").expect("operator password");
    assert_eq!(
        secret_text(&creds, "users").as_deref(),
        Some(format!("sluice-operator:{password}\n").as_str())
    );
    assert_eq!(
        secret_text(&user, "security.protocol").as_deref(),
        Some("SASL_SSL")
    );
    assert_eq!(secret_text(&user, "ca.crt"), secret_text(&ca, "ca.crt"));
    let user_password = secret_text(&user, "password").expect("user password");
    assert_eq!(user_password.len(), 32);
    for s in [&ca, &tls, &creds, &user] {
        assert_eq!(
            s.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].kind.as_str()),
            Some("MessageQueue")
        );
    }

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = poll("StatefulSet", || {
        let a = sts_api.clone();
        async move { a.get_opt("sec").await.ok().flatten() }
    })
    .await;
    let volumes: Vec<String> = sts
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.volumes)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.secret?.secret_name)
        .collect();
    assert_eq!(volumes, ["sec-tls", "sec-operator-credentials"]);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    poll("NetworkPolicy sec", || {
        let p = policies.clone();
        async move { p.get_opt("sec").await.ok().flatten() }
    })
    .await;

    // Later passes (the spec changes: networkPolicy off) keep the CA, the certificate and every
    // password, and remove the NetworkPolicy.
    let mq: MessageQueue = serde_json::from_value(manifest(false)).expect("mq");
    api.patch(
        "sec",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&mq),
    )
    .await
    .expect("disable the NetworkPolicy");
    poll("NetworkPolicy sec deleted", || {
        let p = policies.clone();
        async move {
            p.get_opt("sec")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        get("sec-ca").await.and_then(|s| secret_text(&s, "ca.key")),
        secret_text(&ca, "ca.key")
    );
    assert_eq!(
        get("sec-tls")
            .await
            .and_then(|s| secret_text(&s, "tls.key")),
        secret_text(&tls, "tls.key")
    );
    assert_eq!(
        get("sec-user-app")
            .await
            .and_then(|s| secret_text(&s, "password")),
        Some(user_password.clone())
    );

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let notes: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.note)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("Secret sec-tls")),
        "{notes:?}"
    );
    for note in &notes {
        assert!(
            !note.contains(&password)
                && !note.contains(&user_password)
                && !note.contains("PRIVATE")
        );
    }
    controller.stop().await;
    let _ = api.delete("sec", &DeleteParams::default()).await;
}

#[tokio::test]
#[ignore = "needs an API server: KUBECONFIG=... cargo test --test api_server -- --ignored"]
async fn controller_creates_heals_and_finalizes_children() {
    let ns = &unique_namespace("sluice-op-reconcile");
    let client = setup(ns).await;
    let controller = Controller::start(&client, ns);

    let api: Api<MessageQueue> = Api::namespaced(client.clone(), ns);
    let mq: MessageQueue = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "MessageQueue",
        "metadata": {"name": "orders"},
        // The replication defaults are pinned: unset, they follow replicas up to three, and the
        // scale from 2 to 4 below would roll the brokers to take them.
        "spec": {"replicas": 2, "config": {"retentionMs": 60000, "defaultReplicationFactor": 2, "minInsyncReplicas": 1},
                 "queues": [{"name": "orders", "partitions": 3}]}
    }))
    .expect("mq");
    api.create(&PostParams::default(), &mq)
        .await
        .expect("create");

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = poll("StatefulSet", || {
        let a = sts_api.clone();
        async move { a.get_opt("orders").await.ok().flatten() }
    })
    .await;
    assert_eq!(sts.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        sts.metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].kind.as_str()),
        Some("MessageQueue")
    );
    let managed = sts.metadata.managed_fields.unwrap_or_default();
    assert!(managed
        .iter()
        .any(|m| m.manager.as_deref() == Some("sluice-operator")
            && m.operation.as_deref() == Some("Apply")));

    let status = poll("status", || {
        let a = api.clone();
        async move {
            a.get("orders")
                .await
                .ok()?
                .status
                .filter(|s| s.observed_generation.is_some())
        }
    })
    .await;
    assert_eq!(
        status.bootstrap_servers.as_deref(),
        Some(format!("orders.{ns}.svc:9092").as_str())
    );
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=orders,app.kubernetes.io/name=sluice-broker")
    );
    assert_eq!(status.conditions.len(), 5);
    // no broker pod: nobody to ask about the partitions
    let replicated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Replicated")
        .expect("Replicated condition");
    assert_eq!(
        (replicated.status.as_str(), replicated.reason.as_str()),
        ("Unknown", "NoBrokerAnswered")
    );
    assert_eq!(status.under_replicated_partitions, None);
    let stored = api.get("orders").await.expect("get");
    assert!(stored
        .meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == "sluice.dev/cleanup")));

    // the passes after the first find every child as they applied it (the status write starts
    // one) and send no apply: the cache's copy covers what was applied, API server defaults and
    // all
    for kind in ["ConfigMap", "StatefulSet", "Service", "PodDisruptionBudget"] {
        let metrics = controller.metrics.clone();
        let line =
            format!("sluice_operator_child_writes_total{{kind=\"{kind}\",outcome=\"skipped\"}}");
        poll(&format!("an apply of the {kind} skipped"), || {
            let text = metrics.encode();
            let found = text.lines().any(|l| l.starts_with(&line));
            async move { found.then_some(()) }
        })
        .await;
    }

    // a deleted Service comes back; a hand edit of the ConfigMap is put back
    let svc: Api<Service> = Api::namespaced(client.clone(), ns);
    svc.delete("orders", &DeleteParams::default())
        .await
        .expect("delete svc");
    poll("Service recreated", || {
        let a = svc.clone();
        async move {
            a.get_opt("orders")
                .await
                .ok()
                .flatten()
                .filter(|s| s.metadata.deletion_timestamp.is_none())
        }
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.patch(
        "orders-config",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"SLUICE_RETENTION_MS": "1"}})),
    )
    .await
    .expect("hand edit");
    poll("ConfigMap restored", || {
        let a = cms.clone();
        async move {
            let cm = a.get("orders-config").await.ok()?;
            (cm.data?.get("SLUICE_RETENTION_MS").map(String::as_str) == Some("60000")).then_some(())
        }
    })
    .await;

    // kubectl scale goes through the scale subresource; a scale changes the seeds in the
    // ConfigMap, never the pod template (which would restart every broker)
    let template_before = serde_json::to_value(
        sts_api
            .get("orders")
            .await
            .expect("sts")
            .spec
            .expect("spec")
            .template,
    )
    .expect("json");
    api.patch_scale(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 4}})),
    )
    .await
    .expect("scale");
    poll("scaled StatefulSet", || {
        let a = sts_api.clone();
        async move { (a.get("orders").await.ok()?.spec?.replicas == Some(4)).then_some(()) }
    })
    .await;
    let template_after = serde_json::to_value(
        sts_api
            .get("orders")
            .await
            .expect("sts")
            .spec
            .expect("spec")
            .template,
    )
    .expect("json");
    assert_eq!(
        template_before, template_after,
        "a scale leaves the pod template alone"
    );
    poll("four seeds in the ConfigMap", || {
        let a = cms.clone();
        async move {
            let seeds = a
                .get("orders-config")
                .await
                .ok()?
                .data?
                .get("SLUICE_SEEDS")?
                .clone();
            (seeds.split(',').count() == 4
                && seeds.contains(&format!(
                    "orders-3.orders-brokers.{ns}.svc.cluster.local:9093"
                )))
            .then_some(())
        }
    })
    .await;

    // scale-down with no broker pod and no volume (nothing can hold data): proceeds
    api.patch_scale(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
    )
    .await
    .expect("scale down");
    poll("StatefulSet scaled down", || {
        let a = sts_api.clone();
        async move { (a.get("orders").await.ok()?.spec?.replicas == Some(2)).then_some(()) }
    })
    .await;

    // deletion runs the finalizer and removes it
    api.delete("orders", &DeleteParams::default())
        .await
        .expect("delete mq");
    poll("MessageQueue gone", || {
        let a = api.clone();
        async move {
            a.get_opt("orders")
                .await
                .ok()
                .and_then(|o| o.is_none().then_some(()))
        }
    })
    .await;

    controller.stop().await;
}

mod fake_cluster;

/// Polls `f` every 200 ms for at most `secs`.
async fn poll_for<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A running drain case: the controller, the scripted cluster, the API handles.
struct DrainCase {
    ns: String,
    client: Client,
    api: Api<MessageQueue>,
    sts_api: Api<StatefulSet>,
    controller: Controller,
    server: tokio::task::JoinHandle<()>,
}

impl DrainCase {
    async fn stop(self) {
        self.controller.stop().await;
        self.server.abort();
    }

    async fn event_notes(&self) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        events
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|ev| {
                ev.reason
                    .map(|r| format!("{r}: {}", ev.note.unwrap_or_default()))
            })
            .collect()
    }
}

/// A MessageQueue `q` of three brokers whose pod q-0 is ready at `ip`:9092, where the scripted
/// cluster with `state` answers, scaled down to two.
async fn start_drain_case(prefix: &str, ip: &str, state: fake_cluster::Shared) -> DrainCase {
    use k8s_openapi::api::core::v1::Pod;
    use sluice_operator::builders::selector_labels;

    let ns = &unique_namespace(prefix);
    let client = setup(ns).await;
    let server = fake_cluster::serve(format!("{ip}:9092").parse().expect("addr"), state.clone())
        .await
        .unwrap_or_else(|e| {
            panic!("the scripted cluster binds {ip}:9092 (is 0.0.0.0:9092 taken?): {e}")
        });
    let controller = Controller::start(&client, ns);

    let api: Api<MessageQueue> = Api::namespaced(client.clone(), ns);
    let mq: MessageQueue = serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "MessageQueue",
        "metadata": {"name": "q"}, "spec": {"replicas": 3}
    }))
    .expect("mq");
    api.create(&PostParams::default(), &mq)
        .await
        .expect("create");
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    poll("StatefulSet of 3", || {
        let a = sts_api.clone();
        async move { (a.get_opt("q").await.ok()??.spec?.replicas == Some(3)).then_some(()) }
    })
    .await;

    // The broker pods, as the StatefulSet controller and a kubelet would report them: q-0 ready
    // at the scripted cluster's address, q-1 and q-2 running but not asked.
    // a bare API server has no controller-manager to create the default ServiceAccount
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).expect("sa"),
    )
    .await
    .expect("default ServiceAccount");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for i in 0..3 {
        let mut labels = selector_labels("q");
        labels.insert("apps.kubernetes.io/pod-index".into(), i.to_string());
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("q-{i}"), "labels": labels},
            "spec": {"containers": [{"name": "broker", "image": "sluice-broker:test"}]}
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        let ready = if i == 0 { "True" } else { "False" };
        pods.patch_status(
            &format!("q-{i}"),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {
                "phase": "Running",
                "podIP": if i == 0 { ip.to_string() } else { format!("127.78.0.{}", 10 + i) },
                "conditions": [{"type": "Ready", "status": ready}]
            }})),
        )
        .await
        .expect("pod status");
    }

    // Scale 3 -> 2: broker 2 holds orders-2 and orders-3.
    api.patch_scale(
        "q",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
    )
    .await
    .expect("scale down");

    DrainCase {
        ns: ns.to_string(),
        client,
        api,
        sts_api,
        controller,
        server,
    }
}

/// The whole drain through a real API server: a MessageQueue of three brokers that form one
/// (scripted) cluster scales to two. The operator moves the partitions of broker 2 to brokers 0
/// and 1, reports progress, unregisters broker 2 (retrying while it is refused), and only then
/// shrinks the StatefulSet. Broker pod q-0 is a Pod object whose IP is the scripted cluster's
/// address (127.77.0.10:9092; there is no kubelet in this test).
#[tokio::test]
#[ignore = "needs an API server: run operator/scripts/apiserver-tests.sh"]
async fn scale_down_drains_unregisters_then_shrinks() {
    let state: fake_cluster::Shared = Arc::default();
    {
        let mut st = state.lock().expect("lock");
        st.brokers = vec![0, 1, 2];
        for (p, owner) in [(0, 0), (1, 1), (2, 2), (3, 2), (4, 0)] {
            st.replicas.insert(("orders".to_string(), p), vec![owner]);
        }
        // two copies: only the one on broker 2 moves
        st.replicas.insert(("orders".to_string(), 5), vec![2, 0]);
        st.replicas.insert(("orders".to_string(), 6), vec![1, 2]);
        st.list_rounds = 1;
        st.refusals = 1;
    }
    let case = start_drain_case("sluice-op-drain", "127.77.0.10", state.clone()).await;
    let (api, sts_api) = (case.api.clone(), case.sts_api.clone());

    // Progress shows while the moves run, and the StatefulSet keeps its three brokers.
    let message = poll_for("Progressing/Draining", 60, || {
        let a = api.clone();
        async move {
            let mq = a.get("q").await.ok()?;
            let c = mq
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Progressing" && c.reason == "Draining")?;
            Some(c.message)
        }
    })
    .await;
    println!("Progressing/Draining: {message}");
    assert!(
        message.contains("partitions off brokers 2") || message.contains("leave the cluster"),
        "{message}"
    );
    assert_eq!(
        sts_api
            .get("q")
            .await
            .expect("sts")
            .spec
            .and_then(|s| s.replicas),
        Some(3),
        "no shrink while draining"
    );

    // Done: the partitions live on 0 and 1, broker 2 left the cluster, the StatefulSet shrank.
    poll_for("StatefulSet of 2", 90, || {
        let a = sts_api.clone();
        async move { (a.get("q").await.ok()?.spec?.replicas == Some(2)).then_some(()) }
    })
    .await;
    {
        let st = state.lock().expect("lock");
        assert_eq!(st.brokers, vec![0, 1], "broker 2 unregistered");
        assert!(
            st.replicas.values().all(|r| r.iter().all(|b| *b < 2)),
            "{:?}",
            st.replicas
        );
        assert_eq!(
            st.replicas[&("orders".to_string(), 2)],
            vec![1],
            "fewest first"
        );
        assert_eq!(st.replicas[&("orders".to_string(), 3)], vec![0]);
        // the leaving leader's place goes to the broker with the fewest replicas and no copy
        assert_eq!(st.replicas[&("orders".to_string(), 5)], vec![1, 0]);
        // the staying leader keeps its place
        assert_eq!(st.replicas[&("orders".to_string(), 6)], vec![1, 0]);
        assert!(st.moving.is_empty());
        assert!(
            st.seen.contains(&"DescribeCluster"),
            "membership from DescribeCluster"
        );
        let unregister_calls = st.seen.iter().filter(|s| **s == "UnregisterBroker").count();
        assert!(
            unregister_calls >= 2,
            "refused once, then retried: {unregister_calls}"
        );
    }
    let mut reasons = Vec::new();
    for _ in 0..150 {
        reasons = case.event_notes().await;
        let all = [
            "Draining",
            "BrokerRemovalRefused",
            "BrokerUnregistered",
            "Scaled",
        ]
        .iter()
        .all(|r| reasons.iter().any(|x| x.starts_with(&format!("{r}: "))));
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for r in &reasons {
        println!("event {r}");
    }
    for r in [
        "Draining",
        "BrokerRemovalRefused",
        "BrokerUnregistered",
        "Scaled",
    ] {
        assert!(
            reasons.iter().any(|x| x.starts_with(&format!("{r}: "))),
            "event {r} recorded: {reasons:?}"
        );
    }
    assert!(
        !reasons
            .iter()
            .any(|r| r.starts_with("ScaleDownBlocked") || r.starts_with("DriftCorrected")),
        "the finished scale-down is neither blocked nor drift: {reasons:?}"
    );
    case.stop().await;
}

/// Brokers that know each other but do not serve AlterPartitionReassignments: the scale-down is
/// refused, and status and a Warning event name the broker and the API instead of a silent loop;
/// setting replicas back clears it.
#[tokio::test]
#[ignore = "needs an API server: run operator/scripts/apiserver-tests.sh"]
async fn scale_down_against_brokers_without_partition_moves_is_reported() {
    let state: fake_cluster::Shared = Arc::default();
    {
        let mut st = state.lock().expect("lock");
        st.brokers = vec![0, 1, 2];
        st.replicas.insert(("orders".to_string(), 0), vec![2]);
        st.unserved = vec![45, 46, 60, 64];
    }
    let case = start_drain_case("sluice-op-nomove", "127.77.0.20", state.clone()).await;
    let api = case.api.clone();
    let (reason, message) = poll_for("Degraded/ScaleDownBlocked", 60, || {
        let a = api.clone();
        async move {
            let c = a
                .get("q")
                .await
                .ok()?
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded" && c.status == "True")?;
            Some((c.reason, c.message))
        }
    })
    .await;
    println!("Degraded/{reason}: {message}");
    assert_eq!(reason, "ScaleDownBlocked");
    for words in [
        "q-0",
        "node 0",
        "AlterPartitionReassignments",
        "key 45",
        "set replicas back to 3",
    ] {
        assert!(message.contains(words), "{words:?} in {message}");
    }
    assert_eq!(
        case.sts_api
            .get("q")
            .await
            .expect("sts")
            .spec
            .and_then(|s| s.replicas),
        Some(3)
    );
    let mut notes = Vec::new();
    for _ in 0..150 {
        notes = case.event_notes().await;
        if notes
            .iter()
            .any(|n| n.starts_with("ScaleDownBlocked: ") && n.contains("key 45"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("ScaleDownBlocked: ") && n.contains("key 45")),
        "{notes:?}"
    );
    assert!(
        !state
            .lock()
            .expect("lock")
            .seen
            .contains(&"AlterPartitionReassignments"),
        "an API the broker does not list is never called"
    );

    // replicas back to 3: nothing blocks any more
    api.patch_scale(
        "q",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .expect("scale back");
    poll_for("Degraded cleared", 60, || {
        let a = api.clone();
        async move {
            let degraded = a
                .get("q")
                .await
                .ok()?
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded")?;
            (degraded.status == "False").then_some(())
        }
    })
    .await;
    case.stop().await;
}

/// A scale-down that would leave fewer brokers than a partition has copies: refused before
/// anything moves, with status and a Warning event naming the partition, its replication factor
/// and the broker count; `spec.replicas` stays as written. Status also counts the partition
/// whose last copy is out of sync, and the Replicated condition names it.
#[tokio::test]
#[ignore = "needs an API server: run operator/scripts/apiserver-tests.sh"]
async fn scale_down_below_a_partitions_replication_factor_is_refused() {
    let state: fake_cluster::Shared = Arc::default();
    {
        let mut st = state.lock().expect("lock");
        st.brokers = vec![0, 1, 2];
        st.replicas.insert(("orders".to_string(), 0), vec![2, 0, 1]);
        st.replicas.insert(("orders".to_string(), 1), vec![0, 1]);
        st.lagging = vec![("orders".to_string(), 1)];
    }
    let case = start_drain_case("sluice-op-rf", "127.77.0.30", state.clone()).await;
    let api = case.api.clone();
    let (reason, message) = poll_for("Degraded/ScaleDownBlocked", 60, || {
        let a = api.clone();
        async move {
            let c = a
                .get("q")
                .await
                .ok()?
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded" && c.status == "True")?;
            Some((c.reason, c.message))
        }
    })
    .await;
    println!("Degraded/{reason}: {message}");
    assert_eq!(reason, "ScaleDownBlocked");
    assert!(
        message.contains(
            "partition orders-0 (replication factor 3) has more copies than the 2 brokers that would stay"
        ),
        "{message}"
    );
    assert!(
        message.contains("set replicas back to at least 3"),
        "{message}"
    );
    let mq = api.get("q").await.expect("mq");
    assert_eq!(mq.spec.replicas, 2, "the spec is left as written");
    let status = mq.status.expect("status");
    assert_eq!(status.under_replicated_partitions, Some(1));
    assert_eq!(status.offline_partitions, Some(0));
    let replicated = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Replicated")
        .expect("Replicated condition");
    assert_eq!(
        (replicated.status.as_str(), replicated.reason.as_str()),
        ("False", "UnderReplicated")
    );
    assert_eq!(
        replicated.message,
        "1 under-replicated partition (orders-1)"
    );
    assert_eq!(
        case.sts_api
            .get("q")
            .await
            .expect("sts")
            .spec
            .and_then(|s| s.replicas),
        Some(3)
    );
    let notes = poll_for("the ScaleDownBlocked event", 30, || {
        let case = &case;
        async move {
            let notes = case.event_notes().await;
            notes
                .iter()
                .any(|n| n.starts_with("ScaleDownBlocked: ") && n.contains("replication factor 3"))
                .then_some(notes)
        }
    })
    .await;
    println!("events: {notes:?}");
    assert!(
        !state
            .lock()
            .expect("lock")
            .seen
            .contains(&"AlterPartitionReassignments"),
        "nothing moves"
    );
    case.stop().await;
}
