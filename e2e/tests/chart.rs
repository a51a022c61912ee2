//! `helm install charts/sluice` on the real API server, and the identity the operator runs with:
//! a token of the chart's ServiceAccount (`kubectl create token`) is allowed exactly what the
//! operator needs (its RBAC), and refused what it must not do.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use sluice_e2e::harness::{self, kubectl, TestNamespace};
use sluice_operator::crd::MessageQueue;

fn helm(args: &[&str]) -> (bool, String) {
    let bin = std::env::var("HELM").unwrap_or_else(|_| "helm".into());
    let out = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(harness::kubeconfig_path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e} (set HELM to scripts/helm.sh's output)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A client that authenticates with `token` only (no client certificate).
async fn client_with_token(token: &str) -> Client {
    let kc = Kubeconfig::read_from(harness::kubeconfig_path()).expect("kubeconfig");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    cfg.auth_info = AuthInfo {
        token: Some(token.to_string().into()),
        ..AuthInfo::default()
    };
    Client::try_from(cfg).expect("token client")
}

fn is_forbidden<T>(r: Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(e)) if e.code == 403)
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn chart_installs_and_its_service_account_has_exactly_the_operator_rights() {
    let client = harness::connect("chart_installs").await;
    let ns = TestNamespace::create(&client, "chart")
        .await
        .expect("namespace");
    let release = "sluice";
    let chart = harness::repo_root().join("charts/sluice");

    // Start without the CRD so the chart's copy is the one installed (tests run one at a time).
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    if crds.get_opt(harness::CRD).await.expect("CRDs").is_some() {
        crds.delete(harness::CRD, &Default::default())
            .await
            .expect("deleting the CRD");
        let crds = &crds;
        harness::wait_for("CRD removed", Duration::from_secs(60), || async move {
            match crds.get_opt(harness::CRD).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err("still present".to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .expect("CRD removed before the install");
    }
    // API timestamps have second precision.
    let installed_after = k8s_openapi::jiff::Timestamp::now()
        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(1))
        .expect("time");
    let (ok, text) = helm(&[
        "install",
        release,
        &chart.display().to_string(),
        "--namespace",
        &ns.name,
        "--wait",
        "--timeout",
        "3m",
    ]);
    assert!(ok, "helm install failed:\n{text}");

    // The CRD came with the chart.
    let crd = harness::ensure_crd(&client).await.expect("CRD Established");
    let helm_installed =
        crd.metadata.creation_timestamp.as_ref().map(|t| t.0) >= Some(installed_after);
    assert!(helm_installed, "the CRD was created by this helm install");

    // The operator Deployment was accepted (non-root, read-only root fs, ...) and rolled out on a
    // kwok node. No operator process runs behind it: kwok fakes the container.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let d = deploys
        .list(&ListParams::default())
        .await
        .expect("deployments");
    assert_eq!(d.items.len(), 1, "one operator Deployment");
    let ctr = &d.items[0]
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod spec")
        .containers[0];
    let sc = ctr
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));

    // The ServiceAccount's token.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    let sa = sas
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
        .await
        .expect("service accounts")
        .items
        .into_iter()
        .next()
        .expect("the chart creates a ServiceAccount");
    let out = kubectl(
        &[
            "create",
            "token",
            &sa.name_any(),
            "-n",
            &ns.name,
            "--duration=10m",
        ],
        None,
    )
    .expect("kubectl");
    assert!(out.ok, "kubectl create token: {}", out.stderr);
    let op = client_with_token(out.stdout.trim()).await;

    // Allowed: what the reconciler does.
    Api::<MessageQueue>::all(op.clone())
        .list(&ListParams::default())
        .await
        .expect("list MessageQueues");
    Api::<StatefulSet>::all(op.clone())
        .list(&ListParams::default())
        .await
        .expect("list StatefulSets");
    Api::<k8s_openapi::api::core::v1::Pod>::all(op.clone())
        .list(&ListParams::default())
        .await
        .expect("list pods");
    // Secrets: the CA, certificates and users' passwords of `tls` and `authentication`.
    Api::<Secret>::all(op.clone())
        .list(&ListParams::default())
        .await
        .expect("list Secrets");
    // Refused: what it never needs.
    assert!(
        is_forbidden(
            Api::<Deployment>::all(op.clone())
                .list(&ListParams::default())
                .await
        ),
        "other workloads (Deployments) must be refused"
    );
    assert!(
        is_forbidden(
            Api::<Node>::all(op.clone())
                .delete("kwok-node-0", &Default::default())
                .await
        ),
        "deleting nodes must be refused"
    );
    assert!(
        is_forbidden(
            Api::<ServiceAccount>::namespaced(op.clone(), &ns.name)
                .delete(&sa.name_any(), &Default::default())
                .await
        ),
        "deleting its own ServiceAccount must be refused"
    );

    let (ok, text) = helm(&[
        "uninstall",
        release,
        "--namespace",
        &ns.name,
        "--wait",
        "--timeout",
        "2m",
    ]);
    assert!(ok, "helm uninstall failed:\n{text}");
    ns.delete_and_wait(&client, Duration::from_secs(90))
        .await
        .expect("namespace deleted");
}
