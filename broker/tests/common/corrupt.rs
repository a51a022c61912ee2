//! The corruption matrix's harness (`corruption.rs`, `corruption_state.rs`): a copy of a
//! stopped broker's data folder per test, the byte-level damage, and the checks that the
//! broker reported what it did (a WARN naming the file, `sluice_recovery_actions_total{kind}`)
//! and never served a batch whose CRC fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A copy of the template folder for one test.
pub struct Case {
    _tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub log: PathBuf,
    args: &'static [&'static str],
}

impl Case {
    /// A copy of `template` (a stopped broker's data folder), started with `args`.
    pub fn new(template: PathBuf, args: &'static [&'static str]) -> Case {
        let tmp = tempfile::tempdir().expect("case dir");
        let data = tmp.path().join("data");
        let st = std::process::Command::new("cp")
            .args(["-a"])
            .arg(template)
            .arg(&data)
            .status()
            .expect("cp");
        assert!(st.success(), "copy the template folder");
        let log = tmp.path().join("broker.log");
        Case {
            _tmp: tmp,
            data,
            log,
            args,
        }
    }

    pub fn partition(&self, topic: &str) -> PathBuf {
        partition_dir(&self.data, topic, 0).expect("partition dir")
    }

    pub fn segments(&self, topic: &str) -> Vec<PathBuf> {
        segment_files(&self.data, topic, 0)
    }

    pub fn cluster(&self, file: &str) -> PathBuf {
        self.data.join("cluster").join(file)
    }

    pub fn start(&self) -> BinaryBroker {
        BinaryBroker::spawn(&self.data, self.args, &self.log)
    }

    /// Starts the broker expecting it to refuse: its output, which must name `file`.
    pub fn refused(&self, file: &Path) -> String {
        let mut cmd = scrubbed_broker_command();
        cmd.args(&broker_args(&self.data, self.args)[1..]);
        let (status, out) = run_within(cmd, "sluice-broker", Duration::from_secs(30));
        let text = strip_ansi(&format!("{}{}", out.stdout, out.stderr));
        let status = status.expect("the broker exits instead of serving");
        assert!(
            !status.success(),
            "the broker started on a damaged folder:\n{text}"
        );
        assert!(
            text.contains(&file.display().to_string()),
            "the refusal names {}:\n{text}",
            file.display()
        );
        text
    }
}

/// Records read: `(offset, value)`.
pub type ReadRecords = Vec<(i64, Vec<u8>)>;

/// Every record a consumer gets from `topic`, from its log start: `(offset, value)`, each
/// batch's CRC checked, and the first error answered (offset, code), if any.
pub fn read_all(broker: &BinaryBroker, topic: &str) -> (ReadRecords, Option<(i64, i16)>) {
    let mut c = RawClient::connect(broker.kafka_addr);
    let (_, start) = raw_list_offset(&mut c, topic, 0, -2);
    let (_, end) = raw_list_offset(&mut c, topic, 0, -1);
    let mut got = Vec::new();
    let mut offset = start;
    while offset < end {
        let f = raw_fetch(&mut c, topic, 0, offset, 0, 1);
        if f.error_code != 0 {
            return (got, Some((offset, f.error_code)));
        }
        assert!(
            !f.records.is_empty(),
            "{topic}: empty fetch at {offset} below {end}"
        );
        assert_crcs(&f.records);
        for r in decoded_records(&f.records) {
            got.push((r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()));
            offset = r.offset + 1;
        }
    }
    (got, None)
}

/// Every batch in a fetched record set has a good CRC-32C.
pub fn assert_crcs(records: &[u8]) {
    let mut pos = 0;
    while pos < records.len() {
        let len = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().expect("4 bytes"));
        let end = pos + 12 + len as usize;
        let stored = u32::from_be_bytes(records[pos + 17..pos + 21].try_into().expect("4 bytes"));
        assert_eq!(
            crc32c::crc32c(&records[pos + 21..end]),
            stored,
            "a batch with a bad CRC was served"
        );
        pos = end;
    }
}

/// `sluice_recovery_actions_total{kind}` as scraped now.
pub fn recovery_count(broker: &BinaryBroker, kind: &str) -> u64 {
    let (status, body) = http_get(broker.http_addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    let prefix = format!("sluice_recovery_actions_total{{kind=\"{kind}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

/// The broker logged a WARN naming `path` and counted `kind` at least once.
pub fn assert_reported(broker: &BinaryBroker, path: &Path, kind: &str) {
    let log = strip_ansi(&broker.log());
    let path = path.display().to_string();
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains(&path)),
        "no WARN line naming {path}:\n{log}"
    );
    assert!(recovery_count(broker, kind) >= 1, "{kind} not counted");
}

/// Positions and sizes of the batches of a segment file.
pub fn batches(file: &Path) -> Vec<(usize, usize)> {
    let b = std::fs::read(file).expect("read segment");
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 12 <= b.len() {
        let len = i32::from_be_bytes(b[pos + 8..pos + 12].try_into().expect("4 bytes")) as usize;
        out.push((pos, 12 + len));
        pos += 12 + len;
    }
    out
}

pub fn base_of(file: &Path) -> i64 {
    file.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("segment file name is its base offset")
}

pub fn append(file: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .expect("open for append");
    f.write_all(bytes).expect("append");
}

pub fn flip(file: &Path, at: usize) {
    let mut b = std::fs::read(file).expect("read");
    b[at] ^= 0x40;
    std::fs::write(file, b).expect("write");
}
