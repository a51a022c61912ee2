//! The Go Kafka client `github.com/twmb/franz-go` (kgo + kadm, pinned in `scripts/go-clients.sh`)
//! works unchanged against the broker: kadm creates topics and lists offsets, kgo's idempotent
//! producer writes every codec byte-exact, and a kgo group consumer commits and resumes.
//!
//! The driver is `broker/tests/go/main.go`, built at test time with `go build` (GOFLAGS=-mod=mod)
//! in a generated module under `$SLUICE_CACHE/go-prog-<hash of the source and go.mod>/`
//! (`SLUICE_CACHE` defaults to `~/.cache/sluice`, as in the scripts).
//! Every run is bounded in time.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

const RUN: Duration = Duration::from_secs(120);

/// The module directory of `scripts/go-clients.sh` (env `SLUICE_GO_CLIENTS_DIR`, else the
/// script's last stdout line): its go.mod/go.sum pin franz-go.
fn module_dir() -> Result<PathBuf, String> {
    client_setup_dir("go-clients.sh", "SLUICE_GO_CLIENTS_DIR", "go.mod")
}

/// The built driver binary, building it when its cache is cold.
fn go_client() -> PathBuf {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let module = module_dir()?;
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
        let src_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/main.go");
        let src = read(&src_path)?;
        let go_mod = read(&module.join("go.mod"))?;
        let go_sum = read(&module.join("go.sum"))?;
        let key = fnv1a(&[&src, &go_mod, &go_sum]);
        let dir = cache_root().join(format!("go-prog-{key:016x}"));
        let bin = dir.join("sluice-go-client");
        if !bin.is_file() {
            std::fs::create_dir_all(cache_root())
                .map_err(|e| format!("create {}: {e}", cache_root().display()))?;
            let tmp = tempfile::tempdir_in(cache_root())
                .map_err(|e| format!("temp dir in {}: {e}", cache_root().display()))?;
            for (name, bytes) in [("main.go", &src), ("go.mod", &go_mod), ("go.sum", &go_sum)] {
                std::fs::write(tmp.path().join(name), bytes)
                    .map_err(|e| format!("write {name}: {e}"))?;
            }
            let out = Command::new("go")
                .args(["build", "-o", "sluice-go-client", "."])
                .current_dir(tmp.path())
                .env("GOFLAGS", "-mod=mod")
                .output()
                .map_err(|e| format!("cannot run go build: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "go build of {} failed:\n{}",
                    src_path.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            // Another test process may have won the race; its result is identical.
            let tmp_path = tmp.keep();
            if std::fs::rename(&tmp_path, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp_path);
            }
        }
        Ok(bin)
    })
    .clone()
    .unwrap_or_else(|e| {
        panic!("the Go Kafka client (franz-go) is needed: {e}. Run scripts/go-clients.sh (needs go; or set SLUICE_GO_CLIENTS_DIR)")
    })
}

/// Runs the driver; panics with its output unless it exits 0 within `RUN`.
fn go(args: &[&str]) -> Finished {
    let mut cmd = Command::new(go_client());
    cmd.args(args);
    run_bounded(cmd, &format!("sluice-go-client {}", args.join(" ")), RUN)
}

/// The `{"i":…,"p":…,"o":…}` acknowledgement lines of `produce`.
fn acks(out: &Finished) -> Vec<(u64, i32, i64)> {
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

/// Lines `#<tag> <partition> <offset>` as partition → offset.
fn partition_offsets(out: &Finished, tag: &str) -> BTreeMap<i32, i64> {
    let prefix = format!("#{tag} ");
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().expect("partition"),
                f[1].parse().expect("offset"),
            )
        })
        .collect()
}

const N: u64 = 200;

#[test]
fn franz_go_kadm_creates_and_kgo_produces_every_codec_byte_exact() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("go-codecs");
    let out = go(&[
        "admin",
        "create-topic",
        "--brokers",
        &bs,
        "--topic",
        &topic,
        "--partitions",
        "1",
        "--configs",
        "retention.ms=3600000",
    ]);
    assert!(
        out.stdout
            .contains(&format!("#created {topic} partitions 1 rf 1 id ")),
        "kadm CreateTopics (replication factor -1 = broker default):\n{}",
        out.stdout
    );
    for (k, codec) in CODECS.iter().enumerate() {
        let (from, to) = (k as u64 * N, (k as u64 + 1) * N);
        let out = go(&[
            "produce",
            "--brokers",
            &bs,
            "--topic",
            &topic,
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
            "--compression",
            codec,
            "--partition",
            "0",
        ]);
        let acked = acks(&out);
        assert_eq!(acked.len() as u64, N, "{codec}: acknowledgements");
        for (i, p, o) in &acked {
            assert_eq!(
                (*p, *o),
                (0, *i as i64),
                "{codec}: record {i} acknowledged at the wrong place"
            );
        }
    }
    let total = CODECS.len() as u64 * N;
    let out = go(&["admin", "list-offsets", "--brokers", &bs, "--topic", &topic]);
    assert_eq!(partition_offsets(&out, "start"), BTreeMap::from([(0, 0)]));
    assert_eq!(
        partition_offsets(&out, "end"),
        BTreeMap::from([(0, total as i64)])
    );
    // librdkafka reads franz-go's batches (every codec) byte for byte.
    let rd = rd_consume_from_start(&bs, &topic, &[0], total as usize, Duration::from_secs(60));
    assert_records_exact(&rd, 0..total);
    for c in &rd {
        assert_eq!(c.offset, c.index() as i64, "record {} offset", c.index());
    }
}

#[test]
fn franz_go_producer_auto_creates_a_topic_when_it_asks_to() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("go-auto");
    let out = go(&[
        "produce",
        "--brokers",
        &bs,
        "--topic",
        &topic,
        "--from",
        "0",
        "--to",
        "50",
        "--compression",
        "zstd",
        "--auto-create",
    ]);
    assert_eq!(acks(&out).len(), 50, "acknowledgements");
    let rd = rd_consume_from_start(&bs, &topic, &[0], 50, Duration::from_secs(60));
    assert_records_exact(&rd, 0..50);
}

#[test]
fn franz_go_consumer_group_commits_and_resumes() {
    group_commits_and_resumes(&[]);
}

/// The same with franz-go told not to use OffsetCommit (key 8) and OffsetFetch (key 9) above v9:
/// everything else of the group protocol at the versions franz-go picks.
#[test]
fn franz_go_consumer_group_commits_and_resumes_with_offset_apis_capped_at_v9() {
    group_commits_and_resumes(&["--max-versions", "8=9,9=9"]);
}

fn group_commits_and_resumes(client_opts: &[&str]) {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let topic = topic_name("go-group");
    let group = format!("{topic}-g");
    let (total, first) = (300u64, 120u64);
    go(&[
        "admin",
        "create-topic",
        "--brokers",
        &bs,
        "--topic",
        &topic,
        "--partitions",
        "3",
    ]);
    let acked = acks(&go(&[
        "produce",
        "--brokers",
        &bs,
        "--topic",
        &topic,
        "--from",
        "0",
        "--to",
        &total.to_string(),
        "--compression",
        "snappy",
    ]));
    assert_eq!(acked.len() as u64, total, "acknowledgements");
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for (_, p, o) in &acked {
        let e = ends.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    assert!(ends.len() > 1, "the default partitioner used only {ends:?}");

    let consume = |count: u64| {
        let count = count.to_string();
        let mut args = vec![
            "consume",
            "--brokers",
            &bs,
            "--topic",
            &topic,
            "--group",
            &group,
            "--count",
            &count,
        ];
        args.extend_from_slice(client_opts);
        go(&args)
    };
    let out1 = consume(first);
    let got1 = parse_consumed_lines(&out1.stdout);
    assert_eq!(got1.len() as u64, first, "first consumer record count");
    let mut want: BTreeMap<i32, i64> = BTreeMap::new();
    for c in &got1 {
        let e = want.entry(c.partition).or_insert(0);
        *e = (*e).max(c.offset + 1);
    }
    assert_eq!(
        partition_offsets(&out1, "committed"),
        want,
        "committed offsets after the first run (kadm FetchOffsets)"
    );

    let out2 = consume(total - first);
    let got2 = parse_consumed_lines(&out2.stdout);
    for c in &got2 {
        let resume = want.get(&c.partition).copied().unwrap_or(0);
        assert!(
            c.offset >= resume,
            "p{} offset {} re-delivered (committed {resume})",
            c.partition,
            c.offset
        );
    }
    let mut all = got1;
    all.extend(got2);
    assert_records_exact(&all, 0..total);
    assert_eq!(
        partition_offsets(&out2, "committed"),
        ends,
        "committed offsets after the second run = partition ends"
    );
    let mut args = vec![
        "admin",
        "describe-group",
        "--brokers",
        &bs,
        "--group",
        &group,
    ];
    args.extend_from_slice(client_opts);
    let out = go(&args);
    assert!(
        out.stdout
            .contains(&format!("#group {group} state Empty members 0")),
        "kadm DescribeGroups after both members left:\n{}",
        out.stdout
    );
}
