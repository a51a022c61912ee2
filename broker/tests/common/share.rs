//! The share-consumer driver (`tests/java/SluiceShareClient.java`) run in the background,
//! and what its output says (share_groups.rs, share_cluster.rs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A share consumer JVM running in the background, its stdout in a file.
pub struct Running {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    pub fn start(args: &[&str]) -> Running {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("stdout");
        let err = dir.path().join("stderr");
        let child = share_cmd(args)
            .stdout(Stdio::from(
                std::fs::File::create(&out).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(&err).expect("stderr file"),
            ))
            .spawn()
            .expect("spawn java");
        Running {
            child,
            out,
            _dir: dir,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.out.with_file_name("stderr")).unwrap_or_default()
    }

    /// Waits for the JVM to exit 0 within `timeout`; its stdout.
    pub fn finish(mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait java") {
                assert!(
                    st.success(),
                    "share consumer failed ({st}):\n{}\n{}",
                    self.stdout(),
                    self.stderr()
                );
                return self.stdout();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "share consumer did not finish in {timeout:?}:\n{}\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill9(mut self) -> String {
        self.child.kill().expect("SIGKILL java");
        self.child.wait().expect("reap java");
        self.stdout()
    }
}

/// A `got <partition> <offset> <deliveryCount> <value>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub offset: i64,
    pub delivery_count: i16,
    pub value: String,
}

pub fn got(stdout: &str) -> Vec<Got> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            match f.as_slice() {
                ["got", _, o, c, v] => Some(Got {
                    offset: o.parse().ok()?,
                    delivery_count: c.parse().ok()?,
                    value: v.to_string(),
                }),
                _ => None,
            }
        })
        .collect()
}

pub fn share(bootstrap: &str, args: &[&str]) -> Finished {
    let mut all = vec![args[0], "--bootstrap", bootstrap];
    all.extend_from_slice(&args[1..]);
    run_bounded(share_cmd(&all), &format!("share {}", all.join(" ")), RUN)
}

pub fn consumer(bootstrap: &str, topic: &str, group: &str, extra: &[&str]) -> Running {
    let mut args = vec![
        "consume",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
    ];
    args.extend_from_slice(extra);
    Running::start(&args)
}

/// Waits until the share group has `n` members (ShareGroupDescribe through the Java Admin).
pub fn wait_members(bootstrap: &str, group: &str, n: usize) {
    let line = format!("#members {n}");
    wait_for(
        &format!("{n} members in share group {group}"),
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            let all = ["describe", "--bootstrap", bootstrap, "--group", group];
            let (_, out) = run_within(share_cmd(&all), "share describe", RUN);
            out.stdout.lines().any(|l| l == line).then_some(())
        },
    );
}

pub fn count_values(all: &[Got]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for g in all {
        *counts.entry(g.value.clone()).or_insert(0) += 1;
    }
    counts
}

pub fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m-{i}")).collect()
}
