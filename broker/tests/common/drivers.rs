//! The clients that run as processes of their own: the Python scripts (kafka-python,
//! confluent-kafka), the Java and Go programs built at test time and cached, and what they
//! print. Every run is bounded in time.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Consumed, TestRecord};

// ---------------------------------------------------------------------------------------------
// Running a process

/// Output of a finished helper process.
#[derive(Debug)]
pub struct Finished {
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with stdout/stderr captured in files; kills it after `timeout`. The status is
/// `None` when it had to be killed.
pub fn run_within(
    mut cmd: Command,
    what: &str,
    timeout: Duration,
) -> (Option<std::process::ExitStatus>, Finished) {
    let dir = tempfile::tempdir().expect("temp dir for process output");
    let out_p = dir.path().join("stdout");
    let err_p = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_p).expect("stdout file"))
        .stderr(std::fs::File::create(&err_p).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Finished {
        stdout: std::fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_p).unwrap_or_default(),
    };
    (status, out)
}

/// Runs `cmd` as [`run_within`] does; panics (with its output) unless it exits 0 in time.
pub fn run_bounded(cmd: Command, what: &str, timeout: Duration) -> Finished {
    let (status, Finished { stdout, stderr }) = run_within(cmd, what, timeout);
    match status {
        None => {
            panic!("{what} did not finish within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
        }
        Some(st) if !st.success() => {
            panic!("{what} failed with {st}\nstdout:\n{stdout}\nstderr:\n{stderr}")
        }
        Some(_) => Finished { stdout, stderr },
    }
}

/// What a setup script installed: `$<env_override>` when set, else the last stdout line of
/// `<script>` (a path from the repository root, e.g. `scripts/clients.sh`; it runs it, and the
/// scripts cache what they install), checked to exist with `expect` inside it (`""`: the path
/// itself).
pub(super) fn installed_path(
    script: &str,
    env_override: &str,
    expect: &str,
) -> Result<PathBuf, String> {
    if let Ok(d) = std::env::var(env_override) {
        return Ok(PathBuf::from(d));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed with {}", script.display(), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("").trim().to_string();
    let installed = Path::new(&last);
    let found = if expect.is_empty() {
        installed.exists()
    } else {
        installed.join(expect).exists()
    };
    if last.is_empty() || !found {
        return Err(format!(
            "{} printed no path holding {expect:?} (got {last:?})",
            script.display()
        ));
    }
    Ok(PathBuf::from(last))
}

// ---------------------------------------------------------------------------------------------
// Python clients

/// The venv python with kafka-python and confluent-kafka: env `SLUICE_PYTHON`, else the last line
/// printed by `scripts/clients.sh` (which installs them, cached).
pub fn python() -> PathBuf {
    static PY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PY.get_or_init(|| installed_path("scripts/clients.sh", "SLUICE_PYTHON", ""))
    .clone()
    .unwrap_or_else(|e| {
        panic!("the Python Kafka clients are needed: {e}. Run scripts/clients.sh (or set SLUICE_PYTHON to a python with kafka-python and confluent-kafka)")
    })
}

/// The path of `broker/tests/python/<script>`.
pub fn python_script(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script)
}

/// Runs `broker/tests/python/<script>` with `args`; panics (with its output) unless it exits 0
/// within `timeout`.
pub fn run_python(script: &str, args: &[&str], timeout: Duration) -> Finished {
    let mut cmd = Command::new(python());
    cmd.arg(python_script(script)).args(args);
    run_bounded(cmd, &format!("python {script} {}", args.join(" ")), timeout)
}

/// Produces the test records `records` to `topic` with one of the Python clients (`script`),
/// with `extra` options (`--partition`, `--codec`, `--idempotent`), within 60 s.
pub fn py_produce(
    script: &str,
    bootstrap: &str,
    topic: &str,
    records: Range<u64>,
    extra: &[&str],
) -> Finished {
    let (start, count) = (
        records.start.to_string(),
        (records.end - records.start).to_string(),
    );
    let mut args = vec![
        "produce",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--start",
        &start,
        "--count",
        &count,
    ];
    args.extend_from_slice(extra);
    run_python(script, &args, Duration::from_secs(60))
}

/// A kafka-python group member that reads `count` records of `topic` in `group` and commits
/// them, with `extra` options (`--linger`, `--timeout`), within 90 s.
pub fn kp_group_consume(
    bootstrap: &str,
    topic: &str,
    group: &str,
    count: u64,
    extra: &[&str],
) -> Finished {
    let count = count.to_string();
    let mut args = vec![
        "group-consume",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--count",
        &count,
    ];
    args.extend_from_slice(extra);
    run_python("kafka_python_client.py", &args, Duration::from_secs(90))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex from python"))
        .collect()
}

/// Parses the JSON lines `{"p":…,"o":…,"k":hex|null,"v":hex|null,"h":[[key,hex|null],…]}`
/// that the Python, Java and Go consumers print (other lines are ignored).
pub fn parse_consumed_lines(stdout: &str) -> Vec<Consumed> {
    let mut out = Vec::new();
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("bad JSON line from python {line:?}: {e}"));
        let bytes = |x: &serde_json::Value| x.as_str().map(unhex);
        let headers = v["h"]
            .as_array()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h[0].as_str().expect("header key").to_string(), bytes(&h[1])))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Consumed {
            partition: v["p"].as_i64().expect("p") as i32,
            offset: v["o"].as_i64().expect("o"),
            record: TestRecord {
                key: bytes(&v["k"]),
                value: bytes(&v["v"]),
                headers,
            },
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Client drivers built at test time (Java, Go)

/// 64-bit FNV-1a: a stable content hash for cache keys (not security relevant).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// `$SLUICE_CACHE`, else `~/.cache/sluice`.
pub fn cache_root() -> PathBuf {
    if let Ok(d) = std::env::var("SLUICE_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    Path::new(&home).join(".cache/sluice")
}

/// The directory a client setup script installs into: `$<env_override>` when set, else the
/// last stdout line of `scripts/<script>` (which it runs), checked to contain `expect`.
pub fn client_setup_dir(script: &str, env_override: &str, expect: &str) -> Result<PathBuf, String> {
    installed_path(&format!("scripts/{script}"), env_override, expect)
}

/// A driver built once per content hash `key` into `<cache root>/<name>-<key>/`, which holds
/// `marker` once built: `build` fills a fresh temporary directory in the cache root, which then
/// takes that name.
pub fn cached_build(
    name: &str,
    key: u64,
    marker: &str,
    build: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let dir = cache_root().join(format!("{name}-{key:016x}"));
    if !dir.join(marker).is_file() {
        std::fs::create_dir_all(cache_root())
            .map_err(|e| format!("create {}: {e}", cache_root().display()))?;
        let tmp = tempfile::tempdir_in(cache_root())
            .map_err(|e| format!("temp dir in {}: {e}", cache_root().display()))?;
        build(tmp.path())?;
        // Another test process may have won the race; its result is identical.
        let tmp_path = tmp.keep();
        if std::fs::rename(&tmp_path, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp_path);
        }
    }
    Ok(dir)
}

/// Runs a compiler (`what` names it in errors); its stderr is the error when it fails.
pub fn run_build(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The module directory of `scripts/go-clients.sh` (env `SLUICE_GO_CLIENTS_DIR`, else the
/// script's last stdout line): its go.mod/go.sum pin franz-go.
fn go_module_dir() -> Result<PathBuf, String> {
    client_setup_dir("go-clients.sh", "SLUICE_GO_CLIENTS_DIR", "go.mod")
}

/// The Go driver (`broker/tests/go/main.go`, franz-go, kafka-go and sarama) built with `go build`
/// (GOFLAGS=-mod=mod) in a generated module under `$SLUICE_CACHE/go-prog-<hash of the source and
/// go.mod>/`, building it when that cache is cold.
pub fn go_client() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let module = go_module_dir()?;
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
        let src_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/main.go");
        let src = read(&src_path)?;
        let go_mod = read(&module.join("go.mod"))?;
        let go_sum = read(&module.join("go.sum"))?;
        let key = fnv1a(&[&src, &go_mod, &go_sum]);
        let dir = cached_build("go-prog", key, "sluice-go-client", |out| {
            for (name, bytes) in [("main.go", &src), ("go.mod", &go_mod), ("go.sum", &go_sum)] {
                std::fs::write(out.join(name), bytes).map_err(|e| format!("write {name}: {e}"))?;
            }
            run_build(
                Command::new("go")
                    .args(["build", "-o", "sluice-go-client", "."])
                    .current_dir(out)
                    .env("GOFLAGS", "-mod=mod"),
                &format!("go build of {}", src_path.display()),
            )
        })?;
        Ok(dir.join("sluice-go-client"))
    })
    .clone()
    .unwrap_or_else(|e| {
        panic!("the Go Kafka client (franz-go) is needed: {e}. Run scripts/go-clients.sh (needs go; or set SLUICE_GO_CLIENTS_DIR)")
    })
}

// ---------------------------------------------------------------------------------------------
// What the Java and Go drivers print

/// The `{"i":…,"p":…,"o":…}` acknowledgement lines of `produce`: (index, partition, offset).
pub fn acknowledged(out: &Finished) -> Vec<(u64, i32, i64)> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("{\"i\""))
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad ack line {l:?}: {e}"));
            (
                v["i"].as_u64().expect("i"),
                v["p"].as_i64().expect("p") as i32,
                v["o"].as_i64().expect("o"),
            )
        })
        .collect()
}

/// The lines starting with `#<tag> `, without the tag.
pub fn tagged<'a>(out: &'a Finished, tag: &str) -> Vec<&'a str> {
    let prefix = format!("#{tag} ");
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// Lines `#<tag> <partition> <offset> …` as partition → offset.
pub fn partition_offsets(out: &Finished, tag: &str) -> BTreeMap<i32, i64> {
    tagged(out, tag)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().expect("partition"),
                f[1].parse().expect("offset"),
            )
        })
        .collect()
}

/// Checks `count` acknowledgements of records written in order into partition 0 from offset 0
/// (record `i` at offset `i`).
pub fn assert_acked_at_their_index(what: &str, acked: &[(u64, i32, i64)], count: u64) {
    assert_eq!(acked.len() as u64, count, "{what}: acknowledgements");
    for (i, p, o) in acked {
        assert_eq!(
            (*p, *o),
            (0, *i as i64),
            "{what}: record {i} acknowledged at the wrong place"
        );
    }
}

/// Per partition, the offset after the last record read: what a consumer that read `got`
/// commits.
pub fn next_offsets(got: &[Consumed]) -> BTreeMap<i32, i64> {
    let mut m = BTreeMap::new();
    for c in got {
        let e = m.entry(c.partition).or_insert(0);
        *e = (*e).max(c.offset + 1);
    }
    m
}

/// Checks that a group member resuming from `committed` was given no record below it.
pub fn assert_resumed_after(got: &[Consumed], committed: &BTreeMap<i32, i64>) {
    for c in got {
        let resume = committed.get(&c.partition).copied().unwrap_or(0);
        assert!(
            c.offset >= resume,
            "p{} offset {} re-delivered (committed {resume})",
            c.partition,
            c.offset
        );
    }
}
