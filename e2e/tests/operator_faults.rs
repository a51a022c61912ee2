//! Operator faults on the real control plane: a hundred spec edits in a burst end in the last
//! one; a change made while etcd stalls (SIGSTOP) and the API server is SIGKILLed and started
//! again still lands, and every acknowledged record is still readable. What exits on purpose
//! after such faults (kube-controller-manager, kube-scheduler and the operator leave when they
//! lose their leader Lease) is started again by the test, as a node's init system and the
//! operator's Deployment would. Five edits in a row, each cut short by a SIGKILLed API server at
//! a different moment, end in the last one with every queue they added. Network partitions
//! between the operator and the API server (a proxy that silences every connection): a change
//! made during a short one lands once it heals; in a long one the operator steps down and exits
//! before its Lease could pass to another replica, and the change lands after it heals.
//!
//! (Hand edits of the operator's children and a deleted StatefulSet are in `operator.rs`; the
//! operator's own failover mid-roll is in `operator_more.rs`.)

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sluice_e2e::mq::{
    self, alive, apply_yaml, condition, operator_pid, pod_ip, wait_available, work,
};
use sluice_e2e::{harness, partition};
use sluice_operator::crd::MessageQueue;

mod kafka;

/// One broker, one queue `work` with the given retention.
fn manifest(retention_ms: i64, extra_queues: &str) -> String {
    format!(
        "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {{name: f}}\n\
         spec: {{replicas: 1, storage: {{size: 1Gi}}, config: {{autoCreateTopics: false}}, \
         queues: [{{name: work, partitions: 1, retentionMs: {retention_ms}}}{extra_queues}]}}\n"
    )
}

/// Waits until the broker reports `retention.ms` = `want` for `work` and the MessageQueue's
/// status has observed its latest generation and says Available.
async fn wait_converged(mqs: &Api<MessageQueue>, bootstrap: &str, want: i64, what: &str) {
    harness::wait_for(what, Duration::from_secs(180), || async move {
        let mq = mqs.get("f").await.map_err(|e| e.to_string())?;
        let generation = mq.metadata.generation;
        let observed = mq.status.as_ref().and_then(|s| s.observed_generation);
        let available = condition(&mq, "Available");
        let at_broker = kafka::topic_config(bootstrap, "work", "retention.ms").await?;
        let want = want.to_string();
        if at_broker.as_deref() == Some(want.as_str())
            && observed == generation
            && available.as_ref().is_some_and(|(s, _, _)| s == "True")
        {
            Ok(())
        } else {
            Err(format!(
                "broker retention.ms {at_broker:?} (want {want}), generation {generation:?}, \
                 observed {observed:?}, Available {available:?}"
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn a_hundred_rapid_spec_edits_end_in_the_last_one() {
    let (client, ns) = mq::setup("operator_faults_edits", "edits").await;
    apply_yaml(&ns.name, &manifest(1_000_000, ""));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "f", 1, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let bootstrap = format!("{}:9092", pod_ip(&pods, "f-0").await);
    wait_converged(
        &mqs,
        &bootstrap,
        1_000_000,
        "the first retention at the broker",
    )
    .await;

    // A hundred edits back to back, each a new retention for `work`: the operator sees some of
    // them, skips others, and must end on the last.
    let last = 1_000_100;
    for retention in 1_000_001..=last {
        let patch = json!({"spec": {"queues": [
            {"name": "work", "partitions": 1, "retentionMs": retention}
        ]}});
        mqs.patch("f", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("edit to retentionMs {retention}: {e}"));
    }
    let generation = mqs.get("f").await.expect("mq").metadata.generation;
    println!("100 edits made; generation {generation:?}");
    wait_converged(
        &mqs,
        &bootstrap,
        last,
        "the broker and the status on the last of 100 edits",
    )
    .await;
}

/// The folder where kwokctl keeps one pid file per control-plane component.
fn pid_dir() -> PathBuf {
    work().join("kwok/clusters/sluice-e2e/pids")
}

fn component_pid_raw(component: &str) -> String {
    std::fs::read_to_string(pid_dir().join(format!("{component}.pid")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn component_pid(component: &str) -> String {
    let f = pid_dir().join(format!("{component}.pid"));
    let pid = std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        .trim()
        .to_string();
    assert!(alive(&pid), "{component} (pid {pid}) is not running");
    pid
}

fn signal(pid: &str, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

/// A control-plane component as it runs: enough to start it again the same way.
#[derive(Clone)]
struct Component {
    name: String,
    argv: Vec<String>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
}

fn nul_separated(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Every component kwokctl started (etcd, kube-apiserver, kube-controller-manager,
/// kube-scheduler, kwok-controller), read from /proc while they run.
fn control_plane() -> Vec<Component> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(pid_dir()).expect("pid dir") {
        let path = entry.expect("pid file").path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pid"))
        else {
            continue;
        };
        let pid = component_pid(name);
        let proc = PathBuf::from(format!("/proc/{pid}"));
        out.push(Component {
            name: name.to_string(),
            argv: nul_separated(&std::fs::read(proc.join("cmdline")).expect("cmdline")),
            cwd: std::fs::read_link(proc.join("cwd")).expect("cwd"),
            env: nul_separated(&std::fs::read(proc.join("environ")).expect("environ"))
                .into_iter()
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
                .collect(),
        });
    }
    out
}

/// Starts `c` again as it ran, recording the new pid where kwokctl keeps it so the suite's
/// teardown stops the new process.
// The process outlives the test on purpose (the teardown stops it through the pid file), so it
// is never waited on here.
#[allow(clippy::zombie_processes)]
fn respawn(c: &Component) -> String {
    let log = work().join(format!("{}-restarted.log", c.name));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Command::new(&c.argv[0])
        .args(&c.argv[1..])
        .current_dir(&c.cwd)
        .env_clear()
        .envs(c.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: the test harness's signals are not its.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("restart {} ({}): {e}", c.name, c.argv[0]));
    let pid = child.id().to_string();
    std::fs::write(pid_dir().join(format!("{}.pid", c.name)), &pid).expect("pid file");
    println!(
        "{}: started again as pid {pid} (log {})",
        c.name,
        log.display()
    );
    pid
}

/// What a node's init system and the operator's Deployment do: a control-plane component or
/// the operator that exits is started again. Kubernetes components and the operator exit on
/// purpose when they lose their leader Lease (kube-controller-manager and kube-scheduler after
/// a stalled etcd, the operator too: "lost the Lease; exiting so this replica restarts as a
/// standby"); nothing else restarts them on this test bed. Adds what it restarted to `restarted`.
fn supervise_once(components: &[Component], restarted: &mut Vec<String>, via: Option<&str>) {
    for c in components {
        if !alive(&component_pid_raw(&c.name)) {
            respawn(c);
            restarted.push(c.name.clone());
        }
    }
    if operator_pid().is_some_and(|p| !alive(&p)) {
        // Kept before operator.sh starts a new one over the log.
        let log = std::fs::read_to_string(work().join("operator.log")).unwrap_or_default();
        let _ = std::fs::write(work().join("operator-exited.log"), &log);
        assert!(
            log.contains("lost the Lease"),
            "the operator exited, and not for a lost Lease: see e2e/.work/operator-exited.log"
        );
        println!("operator: exited after losing its Lease; started again");
        mq::start_operator(via);
        restarted.push("operator".into());
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn a_change_lands_through_a_stalled_etcd_and_a_restarted_api_server() {
    let (client, ns) = mq::setup("operator_faults_control_plane", "cpfault").await;
    apply_yaml(&ns.name, &manifest(2_000_000, ""));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "f", 1, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let bootstrap = format!("{}:9092", pod_ip(&pods, "f-0").await);
    kafka::produce(&bootstrap, "work", 0, &kafka::numbered("cp", 50)).await;

    // The change: a new queue and a new retention, then etcd stalls (SIGSTOP: its sockets stay
    // open and nothing answers) while the operator works on it.
    apply_yaml(
        &ns.name,
        &manifest(2_000_001, ", {name: added, partitions: 2}"),
    );
    let components = control_plane();
    let etcd = component_pid("etcd");
    signal(&etcd, "STOP");
    // Resumes etcd even when the test fails below, so the suite's next scenarios have it.
    struct Resume(String);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-CONT", &self.0]).status();
        }
    }
    let resume = Resume(etcd.clone());
    // The fault's length, not a wait for a condition: 8 s without etcd, longer than the
    // operator's watch delay, so its reconcile of the change meets the stall.
    tokio::time::sleep(Duration::from_secs(8)).await;
    signal(&etcd, "CONT");
    drop(resume);

    // Then the API server dies (SIGKILL) and comes back.
    let mut restarted = Vec::new();
    kill_and_restart_api_server(&components, &mqs, &mut restarted).await;

    // Until the change has landed, and then until nothing has had to be restarted for 20 s
    // (longer than the components' 15 s Lease), whatever exits is started again.
    converge_supervised(
        &components,
        &mut restarted,
        wait_converged(
            &mqs,
            &bootstrap,
            2_000_001,
            "the change made before the faults at the broker, observed in status",
        ),
    )
    .await;
    println!("restarted after the faults: {restarted:?}");

    let topics = tokio::task::spawn_blocking({
        let b = bootstrap.clone();
        move || kafka::metadata(&b)
    })
    .await
    .expect("join")
    .expect("metadata");
    let added = topics
        .topics()
        .iter()
        .find(|t| t.name() == "added")
        .map(|t| t.partitions().len());
    assert_eq!(added, Some(2), "queue `added` with 2 partitions");
    let got = kafka::read_partition0(&bootstrap, "work", 50, "records after the faults").await;
    assert_eq!(got, kafka::numbered("cp", 50));
}

/// SIGKILLs the API server, waits until it is gone, starts it again as it ran and waits until
/// it answers; components that exit meanwhile (a lost Lease) are started again.
async fn kill_and_restart_api_server(
    components: &[Component],
    mqs: &Api<MessageQueue>,
    restarted: &mut Vec<String>,
) {
    let apiserver = components
        .iter()
        .find(|c| c.name == "kube-apiserver")
        .expect("kube-apiserver among the components");
    signal(&component_pid("kube-apiserver"), "KILL");
    harness::wait_for(
        "the killed API server to be gone",
        Duration::from_secs(30),
        || async {
            (!alive(&component_pid_raw("kube-apiserver")))
                .then_some(())
                .ok_or_else(|| "alive".to_string())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    respawn(apiserver);
    let answered = harness::wait_for(
        "the restarted API server to answer",
        Duration::from_secs(120),
        || async { mqs.get("f").await.map(|_| ()).map_err(|e| e.to_string()) },
    );
    tokio::pin!(answered);
    loop {
        tokio::select! {
            r = &mut answered => { r.unwrap_or_else(|e| panic!("{e}")); break; }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                supervise_once(components, restarted, None);
            }
        }
    }
}

/// Runs `converged` to its end while restarting whatever exits, then keeps supervising until
/// nothing has had to be restarted for 20 s (longer than the components' 15 s Lease).
async fn converge_supervised(
    components: &[Component],
    restarted: &mut Vec<String>,
    converged: impl std::future::Future<Output = ()>,
) {
    converge_supervised_via(components, restarted, None, converged).await
}

/// [`converge_supervised`], starting an operator that exits with its API traffic sent to
/// `via` when given.
async fn converge_supervised_via(
    components: &[Component],
    restarted: &mut Vec<String>,
    via: Option<&str>,
    converged: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(converged);
    loop {
        tokio::select! {
            _ = &mut converged => break,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                supervise_once(components, restarted, via);
            }
        }
    }
    let mut quiet_since = std::time::Instant::now();
    let mut seen = restarted.len();
    while quiet_since.elapsed() < Duration::from_secs(20) {
        supervise_once(components, restarted, via);
        if restarted.len() != seen {
            seen = restarted.len();
            quiet_since = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn five_edits_each_cut_short_by_a_killed_api_server_end_in_the_last_one() {
    let (client, ns) = mq::setup("operator_faults_api_server_loop", "cploop").await;
    apply_yaml(&ns.name, &manifest(3_000_000, ""));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "f", 1, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let bootstrap = format!("{}:9092", pod_ip(&pods, "f-0").await);
    kafka::produce(&bootstrap, "work", 0, &kafka::numbered("loop", 30)).await;

    let components = control_plane();
    let mut restarted = Vec::new();
    const ROUNDS: i64 = 5;
    let mut extra = String::new();
    for round in 0..ROUNDS {
        // Each edit adds a queue and changes the retention; the API server dies while the
        // operator works on it, at a different moment each round (0.3 s to 3.1 s after the
        // edit: the fault's timing, not a wait for a condition).
        extra.push_str(&format!(", {{name: loop{round}, partitions: 1}}"));
        apply_yaml(&ns.name, &manifest(3_000_001 + round, &extra));
        tokio::time::sleep(Duration::from_millis(300 + 700 * round as u64)).await;
        kill_and_restart_api_server(&components, &mqs, &mut restarted).await;
        println!("round {round}: the API server was killed and answers again");
    }
    converge_supervised(
        &components,
        &mut restarted,
        wait_converged(
            &mqs,
            &bootstrap,
            3_000_000 + ROUNDS,
            "the last of five edits cut short by a killed API server",
        ),
    )
    .await;
    println!("restarted during the loop: {restarted:?}");

    let topics = tokio::task::spawn_blocking({
        let b = bootstrap.clone();
        move || kafka::metadata(&b)
    })
    .await
    .expect("join")
    .expect("metadata");
    for round in 0..ROUNDS {
        let name = format!("loop{round}");
        assert!(
            topics.topics().iter().any(|t| t.name() == name),
            "queue {name} of round {round} at the broker"
        );
    }
    let got = kafka::read_partition0(&bootstrap, "work", 30, "records after the loop").await;
    assert_eq!(got, kafka::numbered("loop", 30));
}

/// The API server's address, from the e2e kubeconfig.
async fn api_server_addr() -> (String, std::net::SocketAddr) {
    let path = harness::kubeconfig_path();
    let config = kube::config::Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let server = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_else(|| panic!("{}: no cluster server", path.display()));
    let host_port = server
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("API server {server} is not https://"))
        .trim_end_matches('/');
    let addr = tokio::net::lookup_host(host_port)
        .await
        .unwrap_or_else(|e| panic!("{host_port}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{host_port}: no address"));
    (server, addr)
}

/// The operator's leader Lease (held by the host operator `operator.sh` starts).
async fn operator_lease(client: &kube::Client) -> (String, i64, i32) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "sluice-system");
    let list = leases
        .list(&Default::default())
        .await
        .expect("list Leases in sluice-system");
    list.items
        .into_iter()
        .filter_map(|l| l.spec)
        .find_map(|s| {
            let holder = s.holder_identity?;
            holder.starts_with("operator-host-").then_some(())?;
            let renewed = s.renew_time?.0.as_millisecond();
            Some((holder, renewed, s.lease_duration_seconds.unwrap_or(15)))
        })
        .expect("a Lease held by the host operator")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Starts the normal operator again when the scenario ends, passed or failed, so the next
/// scenarios do not inherit one talking through the scenario's proxy.
struct DirectOperatorAfterwards;

impl Drop for DirectOperatorAfterwards {
    fn drop(&mut self) {
        mq::start_operator(None);
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn changes_made_during_network_partitions_land_once_they_heal() {
    let (client, ns) = mq::setup("operator_faults_partition", "netpart").await;
    apply_yaml(&ns.name, &manifest(4_000_000, ""));
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "f", 1, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let bootstrap = format!("{}:9092", pod_ip(&pods, "f-0").await);
    kafka::produce(&bootstrap, "work", 0, &kafka::numbered("np", 40)).await;

    // The operator's API traffic (and only the operator's) goes through a proxy that can cut
    // it; the proxy listens on the API server's host, so the server certificate still fits.
    let (server, upstream) = api_server_addr().await;
    let proxy = partition::PartitionProxy::start((upstream.ip(), 0).into(), upstream)
        .await
        .expect("proxy");
    let via = format!("https://{}", proxy.addr);
    println!("operator's API server: {via} (relaying to {server})");
    let _afterwards = DirectOperatorAfterwards;
    mq::start_operator(Some(&via));
    apply_yaml(&ns.name, &manifest(4_000_001, ""));
    wait_converged(
        &mqs,
        &bootstrap,
        4_000_001,
        "a change through the proxy, before any partition",
    )
    .await;
    let components = control_plane();
    let mut restarted = Vec::new();

    // 1. A partition shorter than the Lease: a change made meanwhile lands once it heals,
    // although every connection the operator had (its watches too) is dead.
    let before = operator_pid();
    proxy.cut();
    apply_yaml(
        &ns.name,
        &manifest(4_000_002, ", {name: short, partitions: 1}"),
    );
    // The fault's length, not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.heal();
    converge_supervised_via(
        &components,
        &mut restarted,
        Some(&via),
        wait_converged(
            &mqs,
            &bootstrap,
            4_000_002,
            "a change made during a 4 s partition",
        ),
    )
    .await;
    println!(
        "short partition: operator {} (pid {before:?} -> {:?}); connections relayed/frozen so far {:?}",
        if operator_pid() == before { "stayed leader" } else { "was restarted" },
        operator_pid(),
        proxy.counts()
    );

    // 2. A partition longer than the Lease: the operator must stop acting before its Lease
    // can pass to another replica, i.e. exit before renewTime + leaseDuration.
    let pid = operator_pid().expect("operator pid");
    proxy.cut();
    let cut_at = now_ms();
    apply_yaml(
        &ns.name,
        &manifest(
            4_000_003,
            ", {name: short, partitions: 1}, {name: long, partitions: 2}",
        ),
    );
    harness::wait_for(
        "the partitioned operator to step down and exit",
        Duration::from_secs(40),
        || async {
            (!alive(&pid))
                .then_some(())
                .ok_or_else(|| format!("operator pid {pid} still running"))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let exited_at = now_ms();
    let (holder, renewed, lease_secs) = operator_lease(&client).await;
    let expires = renewed + i64::from(lease_secs) * 1000;
    println!(
        "long partition: the operator exited {} ms after the cut; its Lease ({holder}) was \
         renewed {} ms before the cut and could pass on {} ms after the exit was seen",
        exited_at - cut_at,
        cut_at - renewed,
        expires - exited_at
    );
    assert!(
        exited_at < expires,
        "the operator exited at {exited_at}, after its Lease could pass on at {expires} \
         (renewed {renewed}, {lease_secs} s): two operators could have acted at once"
    );
    let log = std::fs::read_to_string(work().join("operator.log")).unwrap_or_default();
    assert!(
        log.contains("lost the Lease"),
        "the operator exited, and not for a lost Lease: see e2e/.work/operator.log"
    );
    // The partition lasts on past the Lease; an operator started meanwhile cannot reach the
    // API server either (its attempts to lead time out and are tried again).
    mq::start_operator(Some(&via));
    restarted.push("operator".into());
    tokio::time::sleep(
        Duration::from_secs(25).saturating_sub(Duration::from_millis(
            u64::try_from(now_ms() - cut_at).unwrap_or(0),
        )),
    )
    .await;
    proxy.heal();
    converge_supervised_via(
        &components,
        &mut restarted,
        Some(&via),
        wait_converged(
            &mqs,
            &bootstrap,
            4_000_003,
            "a change made during a 25 s partition",
        ),
    )
    .await;
    println!(
        "restarted: {restarted:?}; connections relayed/frozen: {:?}",
        proxy.counts()
    );

    // Nothing was lost on the way: both queues are there, the records are intact.
    let topics = tokio::task::spawn_blocking({
        let b = bootstrap.clone();
        move || kafka::metadata(&b)
    })
    .await
    .expect("join")
    .expect("metadata");
    for (name, partitions) in [("short", 1), ("long", 2)] {
        let got = topics
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.partitions().len());
        assert_eq!(got, Some(partitions), "queue {name}");
    }
    let got = kafka::read_partition0(&bootstrap, "work", 40, "records after the partitions").await;
    assert_eq!(got, kafka::numbered("np", 40));
}
