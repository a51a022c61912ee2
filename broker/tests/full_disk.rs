//! A full disk costs only the writes that do not fit: the broker binary runs with its data
//! directory on a 4 MiB tmpfs, a librdkafka producer (acks=all) fills it, and the test checks
//! that the overflowing produces are answered KAFKA_STORAGE_ERROR, that every acknowledged
//! record is still there byte for byte (also after a restart), that the broker keeps serving
//! and logs the path and the error, and that producing works again once space is freed.
//!
//! Needs root (or CAP_SYS_ADMIN) to mount the tmpfs; the test says so and fails otherwise
//! rather than pretending to have tested something.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "full-disk";
/// Large values fill the 4 MiB quickly (about 500 records).
const VALUE_LEN: usize = 8 * 1024;

/// A tmpfs of `size` mounted on a fresh temporary directory; unmounted on drop (also when
/// the test fails), before the directory itself is removed.
struct TmpfsMount {
    dir: tempfile::TempDir,
}

impl TmpfsMount {
    fn mount(size: &str) -> TmpfsMount {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "this test needs to mount a {size} tmpfs (root or CAP_SYS_ADMIN): `mount -t tmpfs` \
             on {} exited with {}: {}",
            dir.path().display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        TmpfsMount { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file open: detach it so nothing stays mounted.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

fn value_of(idx: u64) -> Vec<u8> {
    (0..VALUE_LEN)
        .map(|j| ((idx * 31 + j as u64 * 7) % 251) as u8)
        .collect()
}

fn producer(bootstrap: &str) -> TestProducer {
    // No retries: each delivery report is the broker's answer to exactly one Produce request.
    // One record per batch, so every append the broker tries has the same size.
    rd_producer(
        bootstrap,
        &[
            ("acks", "all"),
            ("enable.idempotence", "false"),
            ("retries", "0"),
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
            ("message.timeout.ms", "20000"),
            ("request.timeout.ms", "15000"),
        ],
    )
}

/// Sends records `range` and waits for their delivery reports: per record, `Ok(offset)` or
/// `Err(error text)`, in index order.
fn produce(p: &TestProducer, range: std::ops::Range<u64>) -> Vec<(u64, Result<i64, String>)> {
    for idx in range.clone() {
        let value = value_of(idx);
        let key = format!("k{idx}");
        let rec: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(TOPIC, idx as usize)
                .partition(0)
                .key(key.as_bytes())
                .payload(&value);
        p.send(rec)
            .map_err(|(e, _)| format!("enqueue record {idx}: {e}"))
            .expect("enqueue");
    }
    // A hang is a failure: every report must come well within the request timeout.
    p.flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no delivery reports for {range:?} within 30 s: {e}"));
    let ctx = p.context();
    let acked = ctx.acked.lock().expect("lock");
    let failed = ctx.failed.lock().expect("lock");
    range
        .map(|idx| {
            if let Some((_, _, off)) = acked.iter().find(|(i, _, _)| *i == idx) {
                (idx, Ok(*off))
            } else if let Some((_, e)) = failed.iter().find(|(i, _)| *i == idx) {
                (idx, Err(e.clone()))
            } else {
                panic!("record {idx}: neither acked nor failed after flush")
            }
        })
        .collect()
}

/// Reads partition 0 from the start up to `end` and returns (offset, key, value) per record.
fn read_all(bootstrap: &str, end: i64) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
    let c = rd_consumer(bootstrap, &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("add partition");
    c.assign(&tpl).expect("assign");
    let got = rd_poll_n(&c, end as usize, Duration::from_secs(60));
    let _ = c.unassign();
    got.into_iter()
        .map(|m| {
            (
                m.offset,
                m.record.key.unwrap_or_default(),
                m.record.value.unwrap_or_default(),
            )
        })
        .collect()
}

/// Every acknowledged (idx, offset) is read back at its offset with its exact key and value,
/// and nothing else is in the log.
fn assert_exactly(bootstrap: &str, acked: &[(u64, i64)]) {
    let (low, high) = rd_watermarks(bootstrap, TOPIC, 0);
    assert_eq!(
        (low, high),
        (0, acked.len() as i64),
        "watermarks: only acknowledged records are in the log"
    );
    let got = read_all(bootstrap, high);
    assert_eq!(got.len(), acked.len(), "records read back");
    for ((idx, off), (got_off, key, value)) in acked.iter().zip(&got) {
        assert_eq!(got_off, off, "offset of record {idx}");
        assert_eq!(key, format!("k{idx}").as_bytes(), "key of record {idx}");
        assert!(*value == value_of(*idx), "value of record {idx} differs");
    }
}

#[test]
fn a_full_disk_refuses_writes_keeps_acknowledged_data_and_recovers_when_space_is_freed() {
    let mount = TmpfsMount::mount("4m");
    let logs = tempfile::tempdir().expect("log dir");
    // Placed first, deleted later to free space.
    let filler: PathBuf = mount.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024]).expect("write filler file");
    let data = mount.path().join("data");
    // Small segments: the disk also fills up in the middle of rolls.
    let args = ["--segment-bytes", "262144"];
    let log1 = logs.path().join("broker-1.log");
    let mut broker = BinaryBroker::spawn(&data, &args, &log1);
    let bs = broker.bootstrap();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("broker.address.family", "v4")
        .create()
        .expect("admin client");
    let created = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("create topic");
    assert!(created[0].is_ok(), "create {TOPIC}: {:?}", created[0]);

    // Fill the disk until five records in a row are refused. A record may still be taken after
    // a refusal: on a nearly full filesystem whether an append fits also depends on the pages
    // the index files and the segment's tail happen to take, and a refused append gives back
    // what it had allocated. What must hold is checked below: every refusal is a storage error
    // and the log holds exactly the acknowledged records.
    let p = producer(&bs);
    let started = Instant::now();
    let mut acked: Vec<(u64, i64)> = Vec::new();
    let mut refusals: Vec<(u64, String)> = Vec::new();
    let mut in_a_row = 0;
    let mut acked_after_a_refusal = 0;
    let mut idx = 0u64;
    while in_a_row < 5 {
        assert!(idx < 2000, "4 MiB never filled up after {idx} records");
        for (i, r) in produce(&p, idx..idx + 8) {
            match r {
                Ok(off) => {
                    acked_after_a_refusal += usize::from(!refusals.is_empty());
                    in_a_row = 0;
                    acked.push((i, off));
                }
                Err(e) => {
                    in_a_row += 1;
                    refusals.push((i, e));
                }
            }
        }
        idx += 8;
    }
    eprintln!(
        "{} records ({} KiB) acknowledged ({acked_after_a_refusal} of them after the first refusal), {} refused, in {:?}",
        acked.len(),
        acked.len() * VALUE_LEN / 1024,
        refusals.len(),
        started.elapsed()
    );
    assert!(
        acked.len() > 100,
        "only {} records fit in about 3 MiB",
        acked.len()
    );
    for (i, e) in &refusals {
        assert!(
            e.contains("KafkaStorageError"),
            "record {i} refused with {e}, expected KAFKA_STORAGE_ERROR"
        );
    }

    // Still up, still serving, and every acknowledged record is intact.
    assert!(
        broker.child.try_wait().expect("try_wait").is_none(),
        "broker exited on a full disk:\n{}",
        broker.log()
    );
    let (status, _) = http_get(broker.http_addr, "/healthz").expect("GET /healthz");
    assert_eq!(status, 200, "healthz on a full disk");
    assert_exactly(&bs, &acked);

    // The log names the path and the error.
    let log = strip_ansi(&broker.log());
    let line = log
        .lines()
        .find(|l| l.contains("No space left on device"))
        .unwrap_or_else(|| panic!("no log line with the error:\n{log}"));
    eprintln!("broker log: {line}");
    assert!(
        line.contains(&data.join("topics").display().to_string()),
        "the log line names the partition path: {line}"
    );

    // Free space: producing works again and continues at the log end.
    std::fs::remove_file(&filler).expect("remove filler");
    for (i, r) in produce(&p, idx..idx + 5) {
        let off = r.unwrap_or_else(|e| panic!("record {i} after freeing space: {e}"));
        assert_eq!(
            off,
            acked.len() as i64,
            "offset of record {i} after freeing space"
        );
        acked.push((i, off));
    }
    assert_exactly(&bs, &acked);
    drop(p);
    drop(admin);

    // A restart finds a consistent log: nothing to cut, everything acknowledged still there.
    let status = broker.sigterm_and_wait(Duration::from_secs(30));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let log2 = logs.path().join("broker-2.log");
    let broker = BinaryBroker::spawn(&data, &args, &log2);
    assert_exactly(&broker.bootstrap(), &acked);
    let log = strip_ansi(&broker.log());
    assert!(
        !log.contains("WARN"),
        "recovery after a full disk had to repair something:\n{log}"
    );
}
