//! Helpers shared by the e2e tests: finding the cluster `e2e/scripts/cluster.sh` started, a
//! namespace per scenario, kubectl, and polling with a deadline.
//!
//! The e2e tests are `#[ignore]`d: a plain `cargo test --workspace` lists them as ignored.
//! `e2e/scripts/run.sh` starts the cluster and runs them with `--include-ignored` and
//! `SLUICE_E2E=1`; a missing or broken cluster then fails them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;

/// Errors of the harness itself (not of the system under test).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("timed out after {secs}s waiting for {what}; last observation: {last}")]
    Timeout {
        what: String,
        secs: u64,
        last: String,
    },
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The repository root (this crate lives in `<root>/e2e`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// True when the e2e suite is asked to run. The e2e tests are `#[ignore]`d so a plain
/// `cargo test` reports them as ignored instead of passing; `run.sh` runs them with
/// `--include-ignored` and `SLUICE_E2E=1`. Run by hand without the cluster, they fail here.
pub fn enabled(test: &str) -> bool {
    assert!(
        std::env::var("SLUICE_E2E").as_deref() == Ok("1"),
        "{test}: SLUICE_E2E is not 1: start the cluster and run the suite with e2e/scripts/run.sh"
    );
    true
}

/// The start of every scenario: the suite is enabled (see [`enabled`]) and the cluster answers.
pub async fn connect(test: &str) -> Client {
    enabled(test);
    client().await.expect("cluster reachable")
}

/// The kubeconfig of the e2e cluster.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("e2e/.work/kubeconfig"))
}

/// The kubectl built by tools.sh (`KUBECTL`), else the one on PATH.
pub fn kubectl_bin() -> PathBuf {
    std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// A kube client for the e2e cluster.
pub async fn client() -> Result<Client, HarnessError> {
    let path = kubeconfig_path();
    let kc =
        kube::config::Kubeconfig::read_from(&path).map_err(|source| HarnessError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|source| HarnessError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    Ok(Client::try_from(cfg)?)
}

/// Result of one kubectl run.
#[derive(Debug)]
pub struct KubectlOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs kubectl against the e2e cluster, feeding `stdin` when given.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<KubectlOutput, HarnessError> {
    let bin = kubectl_bin();
    let mut cmd = Command::new(&bin);
    cmd.arg("--kubeconfig").arg(kubeconfig_path()).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let spawn_err = |source| HarnessError::Spawn {
        program: bin.display().to_string(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().map_err(spawn_err)?;
    Ok(KubectlOutput {
        ok: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Polls `check` every 250 ms until it yields `Some`, or fails after `timeout` with the last
/// observation `check` reported through `Err`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(obs) => obs,
        };
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_string(),
                secs: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A namespace owned by one scenario; deleted (without waiting) when dropped.
#[derive(Debug)]
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// Creates `e2e-<scenario>-<suffix>` (the suffix keeps reruns from colliding with a namespace
    /// still terminating).
    pub async fn create(client: &Client, scenario: &str) -> Result<TestNamespace, HarnessError> {
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 100_000)
            .unwrap_or(0);
        let name = format!("e2e-{scenario}-{suffix}");
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"sluice.dev/e2e": "true"}}
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(TestNamespace { name })
    }

    /// Deletes the namespace and waits until it is gone (namespace deletion must never hang).
    pub async fn delete_and_wait(
        &self,
        client: &Client,
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let api = Api::<Namespace>::all(client.clone());
        match api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let (api, name) = (&api, &self.name);
        wait_for(
            &format!("namespace {name} deleted"),
            timeout,
            || async move {
                match api.get_opt(name).await {
                    Ok(None) => Ok(()),
                    Ok(Some(ns)) => Err(format!("phase {:?}", ns.status.and_then(|s| s.phase))),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Best effort for a test that failed half-way; cluster.sh down removes everything anyway.
        let _ = kubectl(
            &[
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// The MessageQueue CRD's name.
pub const CRD: &str = "messagequeues.sluice.dev";

/// Makes sure the MessageQueue CRD is installed and Established: kept when present (installed by
/// the chart), else applied from `crds/` (the same YAML the chart ships).
pub async fn ensure_crd(client: &Client) -> Result<CustomResourceDefinition, HarnessError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    if api.get_opt(CRD).await?.is_none() {
        let path = repo_root().join("crds").join(format!("{CRD}.yaml"));
        let out = kubectl(
            &["apply", "--server-side", "-f", &path.display().to_string()],
            None,
        )?;
        if !out.ok {
            return Err(HarnessError::Timeout {
                what: format!("kubectl apply {}", path.display()),
                secs: 0,
                last: out.stderr,
            });
        }
    }
    let api = &api;
    wait_for("CRD Established", Duration::from_secs(30), || async move {
        let crd = api.get(CRD).await.map_err(|e| e.to_string())?;
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            Ok(crd)
        } else {
            Err(format!(
                "conditions {:?}",
                crd.status.and_then(|s| s.conditions)
            ))
        }
    })
    .await
}
