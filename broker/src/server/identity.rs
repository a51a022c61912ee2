//! The broker's own small durable state in the data directory: the cluster id (stable across
//! restarts) and the producer-id counter (a restart must never hand out an id twice).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::BrokerError;

const CLUSTER_ID_FILE: &str = "cluster.id";
const PRODUCER_ID_FILE: &str = "producer-id.next";
/// Producer ids are reserved on disk this many at a time, so only one allocation in this many
/// pays for an fsync.
const PRODUCER_ID_BLOCK: i64 = 1000;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError + '_ {
    move |source| BrokerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` atomically and durably: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), BrokerError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(contents).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = ((n >> (18 - 6 * i)) & 63) as usize;
            out.push(char::from(ALPHABET[idx]));
        }
    }
    out
}

/// Reads the cluster id from `data_dir`, creating it on first start.
pub fn load_or_create_cluster_id(data_dir: &Path) -> Result<String, BrokerError> {
    let path = data_dir.join(CLUSTER_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(BrokerError::CorruptFile {
                    path,
                    reason: format!("not a cluster id: {id:?}"),
                });
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = base64url(uuid::Uuid::new_v4().as_bytes());
            write_atomic(&path, id.as_bytes())?;
            Ok(id)
        }
        Err(source) => Err(BrokerError::Io { path, source }),
    }
}

#[derive(Debug)]
struct IdState {
    next: i64,
    reserved_until: i64,
}

/// Allocates producer ids; the reserved high-water mark is persisted before an id below it
/// is handed out, so ids are unique across restarts (some are skipped after a restart).
#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    state: Mutex<IdState>,
}

impl ProducerIds {
    /// Loads the counter from `data_dir` (starting at 0 on a new directory).
    pub fn open(data_dir: &Path) -> Result<ProducerIds, BrokerError> {
        let path = data_dir.join(PRODUCER_ID_FILE);
        let next = match fs::read_to_string(&path) {
            Ok(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|e| BrokerError::CorruptFile {
                    path: path.clone(),
                    reason: format!("not a producer id: {e}"),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(BrokerError::Io { path, source }),
        };
        if next < 0 {
            return Err(BrokerError::CorruptFile {
                path,
                reason: format!("negative producer id {next}"),
            });
        }
        Ok(ProducerIds {
            path,
            state: Mutex::new(IdState {
                next,
                reserved_until: next,
            }),
        })
    }

    /// A producer id never handed out before. Blocking (may fsync): call off the async workers.
    pub fn allocate(&self) -> Result<i64, BrokerError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.next >= st.reserved_until {
            let until = st.next + PRODUCER_ID_BLOCK;
            write_atomic(&self.path, until.to_string().as_bytes())?;
            st.reserved_until = until;
        }
        let id = st.next;
        st.next += 1;
        Ok(id)
    }

    /// Whether `id` was handed out by this counter (now or before a restart).
    pub fn was_issued(&self, id: i64) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        id >= 0 && id < st.next.max(st.reserved_until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_is_stable_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_cluster_id(dir.path()).expect("create");
        let b = load_or_create_cluster_id(dir.path()).expect("load");
        assert_eq!(a, b);
        assert_eq!(a.len(), 22);
    }

    #[test]
    fn corrupt_cluster_id_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(CLUSTER_ID_FILE), "not valid!").expect("write");
        let e = load_or_create_cluster_id(dir.path()).expect_err("corrupt");
        assert!(e.to_string().contains(CLUSTER_ID_FILE), "{e}");
    }

    #[test]
    fn producer_ids_are_never_reused_after_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = ProducerIds::open(dir.path()).expect("open");
        let first: Vec<i64> = (0..5).map(|_| ids.allocate().expect("alloc")).collect();
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        drop(ids);
        let ids = ProducerIds::open(dir.path()).expect("reopen");
        let next = ids.allocate().expect("alloc");
        assert!(next > 4, "reused {next}");
        assert!(ids.was_issued(next) && !ids.was_issued(-1));
    }

    #[test]
    fn base64url_of_16_bytes_is_22_chars() {
        assert_eq!(base64url(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(base64url(&[0xff, 0xff, 0xff]), "____");
    }
}
