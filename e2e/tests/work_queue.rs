//! A work queue declared in a MessageQueue (`type: queue` with delivery settings) reaches the
//! broker as its topic configs, and share consumers (confluent-kafka's `ShareConsumer`, a
//! second client implementation beside the broker tests' Java one) read it: messages sent before
//! the first consumer started are delivered (the operator sets `share.auto.offset.reset`
//! earliest), each once. The queue's status counts follow: the backlog is every job while no
//! consumer ran, records a consumer holds unacknowledged are in flight, and both are 0 once
//! everything is processed. A stream declared beside it shows its consumer groups' lag: unset
//! with no group, then what the group has not committed past.
//!
//! Clients reach the broker at its pod IP: the e2e test bed has no kube-proxy, so a Service's
//! cluster IP routes nowhere (the bootstrap Service is checked to select the broker pod).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use sluice_e2e::harness;
use sluice_e2e::mq::{self, apply_yaml, pod_ip, wait_available};
use sluice_operator::crd::{MessageQueue, QueueStatus};

mod kafka;

/// The counts of queue `queue` on MessageQueue `mq`'s status: (messages, backlog, inFlight,
/// shareGroups), each None while unset.
type Counts = (Option<i64>, Option<i64>, Option<i64>, Option<i32>);

/// Waits until the counts of `queue` satisfy `ok`, and returns them.
async fn wait_counts(
    mqs: &Api<MessageQueue>,
    mq: &str,
    queue: &str,
    what: &str,
    ok: impl Fn(&Counts) -> bool,
) -> Counts {
    let ok = &ok;
    harness::wait_for(what, Duration::from_secs(120), || async move {
        let got = mqs.get(mq).await.map_err(|e| e.to_string())?;
        let status: Option<QueueStatus> = got
            .status
            .and_then(|s| s.queues.into_iter().find(|q| q.name == queue));
        let Some(q) = status else {
            return Err(format!("no status of queue {queue}"));
        };
        let counts = (q.messages, q.backlog, q.in_flight, q.share_groups);
        if ok(&counts) {
            Ok(counts)
        } else {
            Err(format!(
                "messages {:?}, backlog {:?}, inFlight {:?}, shareGroups {:?}",
                counts.0, counts.1, counts.2, counts.3
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the stream counts of `queue` (messages, lag, consumerGroups) are `want`.
async fn wait_stream_counts(
    mqs: &Api<MessageQueue>,
    mq: &str,
    queue: &str,
    what: &str,
    want: (Option<i64>, Option<i64>, Option<i32>),
) {
    harness::wait_for(what, Duration::from_secs(120), || async move {
        let got = mqs.get(mq).await.map_err(|e| e.to_string())?;
        let q = got
            .status
            .and_then(|s| s.queues.into_iter().find(|q| q.name == queue))
            .ok_or_else(|| format!("no status of queue {queue}"))?;
        let counts = (q.messages, q.lag, q.consumer_groups);
        if counts == want {
            Ok(())
        } else {
            Err(format!(
                "messages {:?}, lag {:?}, consumerGroups {:?}",
                counts.0, counts.1, counts.2
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The values of the "got <partition> <offset> <value>" lines of a consumer's output.
fn got_values(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("got "))
        .map(|l| l.splitn(3, ' ').nth(2).unwrap_or_default().to_string())
        .collect()
}

/// The Python with confluent-kafka that `scripts/clients.sh` installs (its last line), or
/// `SLUICE_PYTHON`.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_PYTHON") {
        return PathBuf::from(p);
    }
    let root = harness::repo_root();
    let out = Command::new("bash")
        .arg(root.join("scripts/clients.sh"))
        .current_dir(&root)
        .env("SLUICE_SKIP_KCAT", "1")
        .output()
        .expect("run scripts/clients.sh");
    assert!(
        out.status.success(),
        "scripts/clients.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("clients.sh prints the python path")
            .trim(),
    )
}

#[tokio::test]
#[ignore = "needs the e2e control plane: run e2e/scripts/run.sh"]
async fn a_declared_work_queue_is_consumed_by_share_consumers_each_message_once() {
    let (client, ns) = mq::setup("work_queue", "wq").await;
    apply_yaml(
        &ns.name,
        "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\nmetadata: {name: wq}\n\
         spec:\n  replicas: 1\n  storage: {size: 1Gi}\n  queues:\n\
         \x20 - {name: jobs, type: queue, partitions: 1, delivery: {lockDurationMs: 60000, limit: 3, deadLetterQueue: jobs-dead}}\n\
         \x20 - {name: jobs-dead, partitions: 1}\n\
         \x20 - {name: events, partitions: 1}\n",
    );
    let mqs: Api<MessageQueue> = Api::namespaced(client.clone(), &ns.name);
    wait_available(&mqs, "wq", 1, 240).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let ip = pod_ip(&pods, "wq-0").await;
    let bootstrap = format!("{ip}:9092");

    // The bootstrap Service selects the broker pod.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let selector = services
        .get("wq")
        .await
        .expect("bootstrap Service wq")
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default();
    let labels = pods
        .get("wq-0")
        .await
        .expect("pod wq-0")
        .metadata
        .labels
        .unwrap_or_default();
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "Service wq selects {selector:?}; pod wq-0 has {labels:?}"
    );

    // The delivery settings are the queue's topic configs on the broker.
    let want = BTreeMap::from([
        ("share.auto.offset.reset", "earliest"),
        ("share.record.lock.duration.ms", "60000"),
        ("share.delivery.count.limit", "3"),
        ("errors.deadletterqueue.topic.name", "jobs-dead"),
    ]);
    let bs = bootstrap.clone();
    harness::wait_for(
        "the work queue's delivery settings on the broker",
        Duration::from_secs(90),
        || {
            let b = bs.clone();
            let want = want.clone();
            async move {
                for (k, v) in &want {
                    let got = kafka::topic_config(&b, "jobs", k).await?;
                    if got.as_deref() != Some(*v) {
                        return Err(format!("{k} is {got:?}, want {v}"));
                    }
                }
                Ok(())
            }
        },
    )
    .await
    .expect("topic configs");

    // A stream's lag: none while no consumer group reads it, then what the group has not
    // committed past.
    kafka::produce(&bootstrap, "events", 0, &kafka::numbered("event", 20)).await;
    wait_stream_counts(
        &mqs,
        "wq",
        "events",
        "status counts 20 events and no consumer group",
        (Some(20), None, Some(0)),
    )
    .await;
    let bs = bootstrap.clone();
    tokio::task::spawn_blocking(move || kafka::commit(&bs, "event-readers", "events", 0, 12))
        .await
        .expect("commit task")
        .expect("commit offset 12");
    wait_stream_counts(
        &mqs,
        "wq",
        "events",
        "status counts the lag of the group that committed offset 12",
        (Some(20), Some(8), Some(1)),
    )
    .await;

    // Work sent before any consumer exists, then two share consumers in one group.
    let n = 30;
    kafka::produce(&bootstrap, "jobs", 0, &kafka::numbered("job", n)).await;
    // Nobody consumed yet: every job is backlog, nothing is in flight, no share group reads it.
    let want = Some(i64::try_from(n).expect("small"));
    wait_counts(
        &mqs,
        "wq",
        "jobs",
        "status counts every job as backlog before any consumer",
        |c| *c == (want, want, Some(0), Some(0)),
    )
    .await;
    let script = harness::repo_root().join("broker/tests/python/share_consumer.py");
    let py = python();
    // Two at once: every job goes to one of them.
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&py)
                .arg(&script)
                .args([bootstrap.as_str(), "jobs", "workers", "5", "40"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start share_consumer.py")
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|c| c.wait_with_output().expect("share_consumer.py output"))
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for out in &consumers {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "share consumer failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for value in got_values(&stdout) {
            *seen.entry(value).or_default() += 1;
        }
    }
    let mut expected = kafka::numbered("job", n);
    expected.sort();
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        expected,
        "every job, including those sent before the consumers started"
    );
    assert!(
        seen.values().all(|c| *c == 1),
        "each job once when every one is accepted: {seen:?}"
    );
    // Everything processed: nothing left, nothing in flight; the records stay stored.
    wait_counts(
        &mqs,
        "wq",
        "jobs",
        "status counts no backlog and nothing in flight once every job is processed",
        |c| *c == (want, Some(0), Some(0), Some(1)),
    )
    .await;

    // Records a consumer holds without acknowledging them are in flight, and backlog.
    let late = kafka::numbered("late", 5);
    kafka::produce(&bootstrap, "jobs", 0, &late).await;
    let holder_script = harness::repo_root().join("e2e/tests/python/share_holder.py");
    let mut holder = Command::new(&py)
        .arg(&holder_script)
        .args([bootstrap.as_str(), "jobs", "workers", "1", "60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start share_holder.py");
    let mut holder_out = BufReader::new(holder.stdout.take().expect("holder stdout"));
    let mut held: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let read = holder_out.read_line(&mut line).expect("holder output");
        assert!(read > 0, "share_holder.py ended before holding records");
        if let Some(n) = line.trim().strip_prefix("#holding ") {
            assert_ne!(n, "0", "share_holder.py got no record within 60 s");
            break;
        }
        held.extend(got_values(&line));
    }
    let (_, _, in_flight, _) = wait_counts(
        &mqs,
        "wq",
        "jobs",
        "status counts the held records in flight",
        |c| c.0 == Some(35) && c.1 == Some(5) && c.2.is_some_and(|f| f > 0),
    )
    .await;
    let held_n = i64::try_from(held.len()).expect("small");
    assert!(
        in_flight.is_some_and(|f| (held_n..=5).contains(&f)),
        "in flight {in_flight:?}: at least the {held_n} records held, at most the 5 sent"
    );
    // Let go: its next poll accepts what it held (a close alone releases unacknowledged
    // records: the first run of this test saw backlog 5 and nothing in flight after it); a
    // worker takes whatever is left.
    writeln!(holder.stdin.as_mut().expect("holder stdin")).expect("signal holder");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut holder_out, &mut rest).expect("holder output");
    let status = holder.wait().expect("holder exit");
    assert!(
        status.success() && rest.contains("#closed"),
        "share_holder.py: {rest}"
    );
    let mut late_seen = held.clone();
    late_seen.extend(got_values(&rest));
    if held.len() < late.len() {
        let out = Command::new(&py)
            .arg(&script)
            .args([bootstrap.as_str(), "jobs", "workers", "5", "40"])
            .output()
            .expect("share_consumer.py");
        late_seen.extend(got_values(&String::from_utf8_lossy(&out.stdout)));
    }
    // A record the holder's last poll took and its close released comes again: at least once.
    late_seen.sort();
    late_seen.dedup();
    assert_eq!(late_seen, late, "every late job, held or taken after");
    wait_counts(
        &mqs,
        "wq",
        "jobs",
        "status counts nothing in flight once the held records are accepted",
        |c| *c == (Some(35), Some(0), Some(0), Some(1)),
    )
    .await;
    ns.delete_and_wait(&client, Duration::from_secs(120))
        .await
        .expect("namespace deleted");
}
