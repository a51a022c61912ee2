//! Operator figures on the e2e control plane (issue 12): run by `bench/operator.sh`, never by the
//! test command.
//!
//! 1. Paced: `--count` MessageQueues (`replicas: 1`, no queues) created one by one at `--rate`
//!    per second in one namespace; for each, the time from the create request to the first
//!    sight of its StatefulSet (a watch started before the first create). Reported for the first
//!    `--measure` creations and for the last `--measure` (with the others already there).
//! 2. The time until every one of them is Available with its broker ready (the pod runner starts
//!    a real broker process per pod).
//! 3. The operator's RSS and CPU over `--idle-seconds` with all of them Available.
//! 4. With `--burst`: the same count created as fast as the API server takes them, in a second
//!    namespace after the first is deleted: create-to-StatefulSet and time to all Available.
//!
//! Every figure is one JSON line on stdout, in bench/suite.sh's results format.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use sluice_e2e::harness::{self, TestNamespace};
use sluice_e2e::mq;
use sluice_operator::crd::MessageQueue;

#[derive(Debug, Parser)]
struct Args {
    /// MessageQueues per phase.
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// Creations whose create-to-StatefulSet latency is reported (first and last this many).
    #[arg(long, default_value_t = 200)]
    measure: usize,
    /// Creations per second in the paced phase.
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Seconds to wait for all to be Available.
    #[arg(long, default_value_t = 1800)]
    available_timeout: u64,
    /// Also run the burst phase.
    #[arg(long)]
    burst: bool,
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(-1.0)
}

fn emit(label: &str, mut body: serde_json::Value) {
    let mut line = json!({
        "section": "operator", "target": "operator", "round": 1, "label": label, "load1": load1(),
    });
    if let (Some(l), Some(b)) = (line.as_object_mut(), body.as_object_mut()) {
        l.append(b);
    }
    println!("{line}");
    eprintln!("[operator-bench] {line}");
}

/// utime + stime of `pid`, seconds (USER_HZ is 100 on Linux).
fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).context("stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok((f[11].parse::<f64>()? + f[12].parse::<f64>()?) / 100.0)
}

fn status_mib(pid: &str, key: &str) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .with_context(|| format!("{key} of {pid}"))?;
    let kib: f64 = line.split_whitespace().nth(1).context("value")?.parse()?;
    Ok(kib / 1024.0)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn latency_line(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    emit(
        label,
        json!({
            "mode": "op-latency", "count": ms.len(),
            "p50_ms": quantile(&ms, 0.5), "p99_ms": quantile(&ms, 0.99),
            "max_ms": ms.last().copied().unwrap_or(f64::NAN),
        }),
    );
}

/// First sight of each StatefulSet in `ns`, keyed by its owning MessageQueue.
fn watch_statefulsets(client: &Client, ns: &str) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(ev) = stream.next().await {
            let Ok(sts) = ev else { continue };
            let now = Instant::now();
            let owner = sts
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .map(|o| o.name.clone());
            if let Some(owner) = owner {
                seen2
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(owner)
                    .or_insert(now);
            }
        }
    });
    seen
}

fn mq_named(name: &str) -> Result<MessageQueue> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "MessageQueue",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "storage": {"size": "256Mi"}, "config": {"fsync": "interval"}},
    }))?)
}

/// Creates `count` MessageQueues (paced at `rate` per second, or back to back); returns each
/// one's name and the instant its create request was sent.
async fn create_all(
    mqs: &Api<MessageQueue>,
    count: usize,
    rate: Option<f64>,
) -> Result<Vec<(String, Instant)>> {
    let start = Instant::now();
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        if let Some(r) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / r);
            tokio::time::sleep_until(due.into()).await;
        }
        let name = format!("mq-{i:04}");
        let t = Instant::now();
        mqs.create(&PostParams::default(), &mq_named(&name)?)
            .await
            .with_context(|| format!("creating {name}"))?;
        sent.push((name, t));
    }
    Ok(sent)
}

/// Waits until every StatefulSet of `sent` was seen; latencies in ms.
async fn statefulset_latencies(
    seen: &Mutex<HashMap<String, Instant>>,
    sent: &[(String, Instant)],
) -> Result<Vec<f64>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        {
            let s = seen.lock().unwrap_or_else(|e| e.into_inner());
            if sent.iter().all(|(n, _)| s.contains_key(n)) {
                return Ok(sent
                    .iter()
                    .map(|(n, t)| s[n].saturating_duration_since(*t).as_secs_f64() * 1e3)
                    .collect());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} of {} StatefulSets seen after 600 s",
                    s.len(),
                    sent.len()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_all_available(mqs: &Api<MessageQueue>, count: usize, secs: u64) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last_report = Instant::now();
    loop {
        let list = mqs.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|m| {
                mq::condition(m, "Available").is_some_and(|(s, _, _)| s == "True")
                    && mq::ready_replicas(m) == 1
            })
            .count();
        if ready >= count {
            return Ok(Instant::now());
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "[operator-bench] {ready} of {count} Available (load1 {})",
                load1()
            );
            last_report = Instant::now();
        }
        if Instant::now() > deadline {
            anyhow::bail!("{ready} of {count} Available after {secs} s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn phase(client: &Client, a: &Args, op: &str, rate: Option<f64>) -> Result<()> {
    let how = match rate {
        Some(r) => format!("paced {r}/s"),
        None => "burst".to_string(),
    };
    let ns = TestNamespace::create(client, "opbench").await?;
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    let seen = watch_statefulsets(client, &ns.name);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu0 = cpu_seconds(op)?;
    let t0 = Instant::now();
    let sent = create_all(&mqs, a.count, rate).await?;
    let last_create = sent.last().map(|(_, t)| *t).unwrap_or(t0);
    let lat = statefulset_latencies(&seen, &sent).await?;
    let m = a.measure.min(lat.len());
    if rate.is_some() {
        latency_line(
            &format!("create to StatefulSet, first {m} ({how})"),
            lat[..m].to_vec(),
        );
        latency_line(
            &format!(
                "create to StatefulSet, last {m} ({how}, {} to {} existing)",
                a.count - m,
                a.count - 1
            ),
            lat[lat.len() - m..].to_vec(),
        );
    } else {
        latency_line(
            &format!("create to StatefulSet, all {} ({how})", lat.len()),
            lat,
        );
    }
    let done = wait_all_available(&mqs, a.count, a.available_timeout).await?;
    let cpu1 = cpu_seconds(op)?;
    emit(
        &format!("{} MessageQueues to all Available ({how})", a.count),
        json!({
            "mode": "op-available",
            "seconds_from_first": (done - t0).as_secs_f64(),
            "seconds_from_last": (done - last_create).as_secs_f64(),
            "operator_cpu_s": cpu1 - cpu0,
        }),
    );
    if rate.is_some() {
        // Settle (status writes, requeues), then read an idle window.
        tokio::time::sleep(Duration::from_secs(30)).await;
        std::fs::write(format!("/proc/{op}/clear_refs"), "5").ok();
        let c0 = cpu_seconds(op)?;
        tokio::time::sleep(Duration::from_secs(a.idle_seconds)).await;
        let c1 = cpu_seconds(op)?;
        emit(
            &format!("operator idle with {} Available", a.count),
            json!({
                "mode": "op-idle",
                "mqs": a.count,
                "rss_mib": status_mib(op, "VmRSS")?,
                "peak_rss_mib": status_mib(op, "VmHWM")?,
                "idle_cores": (c1 - c0) / a.idle_seconds as f64,
            }),
        );
    }
    let t = Instant::now();
    ns.delete_and_wait(client, Duration::from_secs(1800))
        .await?;
    eprintln!(
        "[operator-bench] namespace {} deleted in {:.0} s",
        ns.name,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let client = harness::client().await?;
    harness::ensure_crd(&client).await?;
    mq::ensure_operator();
    let op = mq::operator_pid().context("no operator pid in e2e/.work/operator.pid")?;
    emit(
        "operator at start",
        json!({"mode": "op-idle", "mqs": 0, "rss_mib": status_mib(&op, "VmRSS")?,
               "peak_rss_mib": status_mib(&op, "VmHWM")?}),
    );
    phase(&client, &a, &op, Some(a.rate)).await?;
    if a.burst {
        phase(&client, &a, &op, None).await?;
    }
    Ok(())
}
