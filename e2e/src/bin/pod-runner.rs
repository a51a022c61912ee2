//! The e2e pod runner: makes broker pods on kwok nodes real processes on this host.
//!
//! kwok schedules pods onto fake nodes and gives them an IP from a loopback CIDR, but runs nothing.
//! This program watches the pods that match `--selector`, and for each running pod starts the
//! locally built broker binary with the pod's resolved args and env (see `sluice_e2e::podspec`),
//! listening on the pod IP, with its data directory on a host folder per PVC. It stops the process
//! (SIGTERM, then SIGKILL after the pod's grace period) when the pod goes away, restarts it with
//! back-off when it exits on its own (reporting `restartCount`, the last exit code and a
//! `CrashLoopBackOff` waiting state meanwhile, as the kubelet does), and mirrors the broker's `/readyz` into the pod's `Ready`
//! condition (kwok's broker stage leaves brokers not-ready; see `e2e/scripts/cluster.sh`).
//! There is no cluster DNS, so it also keeps a marked block of `/etc/hosts` that maps each running
//! pod's headless-Service names to its pod IP (see `sluice_e2e::hosts`), removed when it stops.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;
use sluice_e2e::hosts;
use sluice_e2e::podspec::{self, LaunchSpec, Sources};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tracing::{info, warn};

#[derive(Debug, Parser)]
#[command(about = "Runs the local sluice-broker binary for every broker pod on kwok nodes")]
struct Args {
    /// Label selector of the pods to run.
    #[arg(long, default_value = "app.kubernetes.io/name=sluice-broker")]
    selector: String,
    /// Container whose args/env are used (falls back to the first container).
    #[arg(long, default_value = "broker")]
    container: String,
    /// The broker binary to start for each pod.
    #[arg(long)]
    broker_bin: PathBuf,
    /// Folder for per-PVC data folders and per-pod logs.
    #[arg(long)]
    work_dir: PathBuf,
    /// Do not touch pod status (leave readiness to kwok's stages).
    #[arg(long)]
    no_readiness: bool,
    /// Seconds to wait after SIGTERM when the pod does not say (terminationGracePeriodSeconds).
    #[arg(long, default_value_t = 30)]
    default_grace_seconds: u64,
    /// Hosts file whose marked block maps pod DNS names to pod IPs (there is no cluster DNS).
    #[arg(long, default_value = "/etc/hosts")]
    hosts_file: PathBuf,
    /// Leave the hosts file alone.
    #[arg(long)]
    no_hosts: bool,
    /// Cluster DNS domain of the pod names written to the hosts file.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

/// Keeps the managed block of the hosts file equal to the running pods' names.
struct HostsBlock {
    path: Option<PathBuf>,
    last_error: Option<String>,
}

impl HostsBlock {
    fn sync(&mut self, entries: &BTreeMap<String, Vec<String>>) {
        let Some(path) = &self.path else { return };
        let result = hosts::sync_file(path, entries);
        match result {
            Ok(true) => {
                info!(file = %path.display(), pods = entries.len(), "hosts block updated");
                self.last_error = None;
            }
            Ok(false) => self.last_error = None,
            Err(e) => {
                let e = e.to_string();
                if self.last_error.as_deref() != Some(e.as_str()) {
                    warn!(file = %path.display(), error = %e, "cannot update the hosts block; pod DNS names will not resolve");
                    self.last_error = Some(e);
                }
            }
        }
    }
}

/// One broker process standing for one pod.
struct Proc {
    key: String,
    uid: String,
    spec: LaunchSpec,
    child: Option<Child>,
    restarts: i32,
    next_start: Instant,
    ready: Option<bool>,
    grace: Duration,
    stop_deadline: Option<Instant>,
    log_path: PathBuf,
}

fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

fn wanted(p: &Pod) -> bool {
    let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let has_ip = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|i| !i.is_empty());
    running && has_ip && p.metadata.deletion_timestamp.is_none()
}

async fn fetch_sources(client: &Client, pod: &Pod, container: &str) -> Sources {
    let ns = pod.namespace().unwrap_or_default();
    let mut sources = Sources::default();
    let Some(c) = podspec::pick_container(pod, container) else {
        return sources;
    };
    let (cms, mut secrets) = podspec::referenced_sources(c);
    secrets.extend(podspec::secret_volume_names(pod, c));
    secrets.sort();
    secrets.dedup();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for name in cms {
        let data = match cm_api.get_opt(&name).await {
            Ok(Some(cm)) => Some(cm.data.unwrap_or_default()),
            Ok(None) => None,
            Err(e) => {
                warn!(configmap = %name, namespace = %ns, error = %e, "cannot read ConfigMap");
                None
            }
        };
        sources.config_maps.insert(name, data);
    }
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for name in secrets {
        let data = match secret_api.get_opt(&name).await {
            Ok(Some(s)) => Some(
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            Ok(None) => None,
            Err(e) => {
                warn!(secret = %name, namespace = %ns, error = %e, "cannot read Secret");
                None
            }
        };
        sources.secrets.insert(name, data);
    }
    sources
}

/// A PVC deleted and created again under the same name is a new, empty volume, as with a
/// real provisioner: the claim's folder is kept only while it belongs to the same PVC object
/// (its UID is recorded beside the folder).
async fn prepare_volume(
    client: &Client,
    pod: &Pod,
    spec: &LaunchSpec,
    work: &std::path::Path,
) -> anyhow::Result<()> {
    let Some(claim) = spec.data_dir.claim.as_deref() else {
        return Ok(());
    };
    let ns = pod.namespace().unwrap_or_default();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvc = pvcs
        .get_opt(claim)
        .await
        .with_context(|| format!("reading PVC {ns}/{claim}"))?
        .with_context(|| format!("PVC {ns}/{claim} does not exist"))?;
    let uid = pvc.metadata.uid.unwrap_or_default();
    let uid_file = podspec::claim_uid_file(work, &ns, claim);
    let stored = std::fs::read_to_string(&uid_file).ok();
    if let podspec::VolumeAction::Wipe { old_uid } = podspec::volume_action(stored.as_deref(), &uid)
    {
        let root = podspec::claim_root(work, &ns, claim);
        info!(pvc = %format!("{ns}/{claim}"), old_uid = %old_uid, new_uid = %uid, dir = %root.display(),
              "PVC was recreated: its new volume starts empty");
        match std::fs::remove_dir_all(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("emptying {}", root.display())),
        }
    }
    if stored.as_deref().map(str::trim) != Some(uid.as_str()) {
        if let Some(dir) = uid_file.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&uid_file, &uid)
            .with_context(|| format!("writing {}", uid_file.display()))?;
    }
    Ok(())
}

/// Writes the files of the pod's Secret volumes from `secrets` the way the kubelet keeps them
/// current: a changed file is replaced by a rename (a new inode, as the kubelet's symlink swap
/// gives), an unchanged one is left alone. Returns how many files changed.
fn write_secret_volumes(
    spec: &LaunchSpec,
    secrets: &BTreeMap<String, Option<BTreeMap<String, String>>>,
) -> anyhow::Result<usize> {
    let mut changed = 0;
    for v in &spec.secret_volumes {
        let Some(Some(data)) = secrets.get(&v.secret) else {
            continue;
        };
        std::fs::create_dir_all(&v.host_dir)
            .with_context(|| format!("creating {}", v.host_dir.display()))?;
        for (path, content) in podspec::secret_volume_files(v, data) {
            if std::fs::read(&path).ok().as_deref() == Some(content.as_bytes()) {
                continue;
            }
            let tmp = path.with_extension("sluice-tmp");
            std::fs::write(&tmp, content.as_bytes())
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("replacing {}", path.display()))?;
            changed += 1;
        }
    }
    Ok(changed)
}

fn spawn(bin: &PathBuf, p: &Proc) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&p.spec.data_dir.path)
        .with_context(|| format!("creating data dir {}", p.spec.data_dir.path.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.log_path)
        .with_context(|| format!("opening log {}", p.log_path.display()))?;
    let log2 = log.try_clone().context("cloning log handle")?;
    let mut cmd = Command::new(bin);
    cmd.args(&p.spec.args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "RUST_LOG",
            std::env::var("BROKER_RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .envs(&p.spec.env)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true);
    cmd.spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// GET /readyz over plain HTTP/1.0 with short timeouts; true on a 200.
async fn readyz(addr: &str) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET /readyz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        Some(head.split_whitespace().nth(1) == Some("200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(800), attempt).await,
        Ok(Some(true))
    )
}

/// What the container is doing, as the kubelet reports it in `containerStatuses[].state`.
enum Run {
    /// The broker process runs.
    Running,
    /// The broker exited on its own and waits `backoff` before the next start.
    BackOff { exit_code: i32, backoff: Duration },
}

async fn set_ready(
    client: &Client,
    key: &str,
    container: &str,
    ready: bool,
    restarts: i32,
    run: Run,
) {
    let Some((ns, name)) = key.split_once('/') else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let now = chrono_now();
    let status = if ready { "True" } else { "False" };
    // containerStatuses is an atomic list: send the whole entry for our container, keep others.
    let current = match api.get_status(name).await {
        Ok(p) => p,
        Err(e) => {
            warn!(pod = %key, error = %e, "cannot read pod status");
            return;
        }
    };
    let mut statuses: Vec<serde_json::Value> = Vec::new();
    for cs in current
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()
    {
        let mut v = serde_json::to_value(&cs).unwrap_or_default();
        if cs.name == container {
            v["ready"] = json!(ready);
            v["restartCount"] = json!(restarts);
            match &run {
                Run::Running => {
                    v["started"] = json!(true);
                    if v["state"].get("running").is_none() {
                        v["state"] = json!({"running": {"startedAt": now}});
                    }
                }
                // What the kubelet shows between the restarts of a crashing container, which
                // is what the operator's roll watches for.
                Run::BackOff { exit_code, backoff } => {
                    v["started"] = json!(false);
                    v["lastState"] = json!({"terminated": {
                        "exitCode": exit_code, "reason": "Error", "finishedAt": now}});
                    v["state"] = json!({"waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": format!("back-off {}s restarting failed container={container} pod={name}", backoff.as_secs()),
                    }});
                }
            }
        }
        statuses.push(v);
    }
    let reason = if ready {
        "BrokerReady"
    } else {
        "BrokerNotReady"
    };
    let patch = json!({"status": {
        "conditions": [
            {"type": "Ready", "status": status, "reason": reason, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": status, "reason": reason, "lastTransitionTime": now}
        ],
        "containerStatuses": statuses
    }});
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => info!(pod = %key, ready, "pod Ready condition set from /readyz"),
        Err(e) => warn!(pod = %key, error = %e, "cannot patch pod status"),
    }
}

fn chrono_now() -> String {
    // RFC 3339 UTC without pulling a date crate: seconds since the epoch, formatted by hand.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

fn send_term(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .init();
    let args = Args::parse();
    let bin = std::fs::canonicalize(&args.broker_bin)
        .with_context(|| format!("broker binary {}", args.broker_bin.display()))?;
    let work = args.work_dir.clone();
    std::fs::create_dir_all(work.join("logs"))
        .with_context(|| format!("work dir {}", work.display()))?;
    let work =
        std::fs::canonicalize(&work).with_context(|| format!("work dir {}", work.display()))?;
    let client = Client::try_default()
        .await
        .context("connecting to the API server (KUBECONFIG)")?;

    let pods: Api<Pod> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let cfg = watcher::Config::default().labels(&args.selector);
    let stream = reflector(writer, watcher(pods, cfg))
        .default_backoff()
        .touched_objects();
    let mut stream = Box::pin(stream);
    info!(selector = %args.selector, broker = %bin.display(), work = %work.display(), "pod runner started");

    let mut hosts_block = HostsBlock {
        path: (!args.no_hosts).then(|| args.hosts_file.clone()),
        last_error: None,
    };
    let mut procs: HashMap<String, Proc> = HashMap::new(); // by pod uid
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_secret_refresh = Instant::now();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(Ok(_)) => {}
                Some(Err(e)) => warn!(error = %e, "pod watch error (retrying)"),
                None => break,
            },
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
        let pods: HashMap<String, std::sync::Arc<Pod>> = store
            .state()
            .into_iter()
            .filter_map(|p| p.metadata.uid.clone().map(|u| (u, p)))
            .collect();

        // 1. Pods gone or terminating: stop their process.
        for (uid, p) in procs.iter_mut() {
            let keep = pods
                .get(uid)
                .is_some_and(|pod| pod.metadata.deletion_timestamp.is_none());
            if !keep && p.stop_deadline.is_none() {
                p.stop_deadline = Some(Instant::now() + p.grace);
                match &p.child {
                    Some(c) => {
                        info!(pod = %p.key, uid = %uid, pid = ?c.id(), grace = ?p.grace, "pod deleted: SIGTERM");
                        send_term(c);
                    }
                    None => info!(pod = %p.key, uid = %uid, "pod deleted (process not running)"),
                }
            }
        }
        // 2. Reap stopped processes; SIGKILL after the grace period; restart crashed ones.
        let mut finished = Vec::new();
        for (uid, p) in procs.iter_mut() {
            if let Some(c) = p.child.as_mut() {
                match c.try_wait() {
                    Ok(Some(status)) => {
                        if p.stop_deadline.is_some() {
                            info!(pod = %p.key, %status, "broker stopped");
                        } else {
                            p.restarts += 1;
                            let backoff = Duration::from_secs(1 << p.restarts.clamp(0, 5) as u32);
                            warn!(pod = %p.key, %status, restarts = p.restarts, ?backoff,
                                  log = %p.log_path.display(), "broker exited; restarting after back-off");
                            p.next_start = Instant::now() + backoff;
                            if !args.no_readiness {
                                let run = Run::BackOff {
                                    exit_code: status.code().unwrap_or(-1),
                                    backoff,
                                };
                                set_ready(
                                    &client,
                                    &p.key,
                                    &p.spec.container,
                                    false,
                                    p.restarts,
                                    run,
                                )
                                .await;
                            }
                            p.ready = Some(false);
                        }
                        p.child = None;
                    }
                    Ok(None) => {
                        if p.stop_deadline.is_some_and(|d| Instant::now() >= d) {
                            warn!(pod = %p.key, "grace period over: SIGKILL");
                            let _ = c.start_kill();
                        }
                    }
                    Err(e) => warn!(pod = %p.key, error = %e, "cannot poll broker process"),
                }
            }
            if p.child.is_none() && p.stop_deadline.is_some() {
                finished.push(uid.clone());
            }
        }
        for uid in finished {
            procs.remove(&uid);
        }
        // 3. Start processes for running pods (never two for one pod name or one data dir).
        for (uid, pod) in &pods {
            if !wanted(pod) || procs.contains_key(uid) {
                continue;
            }
            let key = pod_key(pod);
            let sources = fetch_sources(&client, pod, &args.container).await;
            let spec = match podspec::launch_spec(pod, &args.container, &sources, &work) {
                Ok(s) => s,
                Err(e) => {
                    warn!(pod = %key, error = %e, "cannot build launch (will retry)");
                    continue;
                }
            };
            if procs
                .values()
                .any(|o| o.key == key || o.spec.data_dir == spec.data_dir)
            {
                continue; // the previous incarnation is still stopping
            }
            if let Err(e) = prepare_volume(&client, pod, &spec, &work).await {
                warn!(pod = %key, error = %format!("{e:#}"), "cannot prepare the pod's volume (will retry)");
                continue;
            }
            if let Err(e) = write_secret_volumes(&spec, &sources.secrets) {
                warn!(pod = %key, error = %format!("{e:#}"), "cannot write the pod's Secret volumes (will retry)");
                continue;
            }
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .map(|g| Duration::from_secs(g.max(0) as u64))
                .unwrap_or(Duration::from_secs(args.default_grace_seconds));
            let log_path = work.join("logs").join(format!(
                "{}_{}.log",
                pod.namespace().unwrap_or_default(),
                pod.name_any()
            ));
            procs.insert(
                uid.clone(),
                Proc {
                    key,
                    uid: uid.clone(),
                    spec,
                    child: None,
                    restarts: 0,
                    next_start: Instant::now(),
                    ready: None,
                    grace,
                    stop_deadline: None,
                    log_path,
                },
            );
        }
        for p in procs.values_mut() {
            if p.child.is_some() || p.stop_deadline.is_some() || Instant::now() < p.next_start {
                continue;
            }
            match spawn(&bin, p) {
                Ok(c) => {
                    info!(pod = %p.key, uid = %p.uid, pid = ?c.id(), ip = %p.spec.pod_ip,
                          data = %p.spec.data_dir.path.display(), origin = %p.spec.data_dir.origin,
                          args = ?p.spec.args, log = %p.log_path.display(), "broker started");
                    p.child = Some(c);
                    if p.restarts > 0 {
                        // Report the restarted container as running (not ready yet) instead of
                        // leaving CrashLoopBackOff up until it becomes ready.
                        p.ready = None;
                    }
                }
                Err(e) => {
                    warn!(pod = %p.key, error = %format!("{e:#}"), "cannot start broker");
                    p.next_start = Instant::now() + Duration::from_secs(5);
                }
            }
        }
        // 3b. Secret volumes follow their Secrets (the kubelet refreshes them within a minute;
        // a few seconds here keeps rotation tests short).
        if last_secret_refresh.elapsed() >= Duration::from_secs(3) {
            last_secret_refresh = Instant::now();
            for p in procs.values() {
                if p.spec.secret_volumes.is_empty() || p.stop_deadline.is_some() {
                    continue;
                }
                let Some(pod) = pods.get(&p.uid) else {
                    continue;
                };
                let sources = fetch_sources(&client, pod, &args.container).await;
                match write_secret_volumes(&p.spec, &sources.secrets) {
                    Ok(0) => {}
                    Ok(n) => info!(pod = %p.key, files = n, "Secret volume files updated"),
                    Err(e) => {
                        warn!(pod = %p.key, error = %format!("{e:#}"), "cannot update Secret volume files")
                    }
                }
            }
        }
        // 4. Pod DNS: every running pod's names (ready or not, like publishNotReadyAddresses).
        let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pod in pods.values().filter(|p| wanted(p)) {
            let names = hosts::pod_names(pod, &args.cluster_domain);
            if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
                if !names.is_empty() {
                    entries.entry(ip).or_default().extend(names);
                }
            }
        }
        hosts_block.sync(&entries);
        // 5. Mirror /readyz into the pod's Ready condition.
        if !args.no_readiness {
            for p in procs.values_mut() {
                if p.child.is_none() || p.stop_deadline.is_some() {
                    continue;
                }
                let ok = readyz(&p.spec.http_addr).await;
                if p.ready != Some(ok) {
                    set_ready(
                        &client,
                        &p.key,
                        &p.spec.container,
                        ok,
                        p.restarts,
                        Run::Running,
                    )
                    .await;
                    p.ready = Some(ok);
                }
            }
        }
    }

    info!(
        count = procs.len(),
        "pod runner stopping: SIGTERM to every broker"
    );
    hosts_block.sync(&BTreeMap::new());
    for p in procs.values() {
        if let Some(c) = &p.child {
            send_term(c);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in procs.values_mut() {
        if let Some(c) = p.child.as_mut() {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, c.wait()).await.is_err() {
                warn!(pod = %p.key, "broker did not stop in time: SIGKILL");
                let _ = c.kill().await;
            }
        }
    }
    Ok(())
}
