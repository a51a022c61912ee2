//! The leader-epoch cache of one partition: at which offset each leader epoch's records start.
//!
//! Kafka's `leader-epoch-checkpoint`. It answers OffsetForLeaderEpoch ("where does my epoch
//! end on your log?") for consumers validating their position after a leader change and for
//! followers finding where their log diverged from the new leader's, so a former leader never
//! keeps records the new leader lacks.
//!
//! On disk: `leader-epoch-checkpoint` in the partition directory, text, a version line `0`,
//! a count line, then one `epoch start_offset` line per entry, replaced atomically (tmp,
//! fsync, rename, directory fsync). It changes only when an epoch starts or the log is
//! truncated, never per append. It is never trusted blindly: entries at or past the recovered
//! log end are dropped, and an unreadable file is rebuilt from the batch headers by the caller.

use std::path::{Path, PathBuf};

use super::files::write_atomic;
use super::LogError;

/// The file name in the partition directory.
pub const EPOCH_FILE: &str = "leader-epoch-checkpoint";

/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

/// `(epoch, start offset)` pairs, both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|(e, _)| *e)
    }

    /// The first offset of `epoch`, if the cache has it.
    pub fn start_of(&self, epoch: i32) -> Option<i64> {
        self.entries
            .iter()
            .find(|(e, _)| *e == epoch)
            .map(|(_, s)| *s)
    }

    /// Records that `epoch` starts at `start_offset`. Ignored (returns false) unless the
    /// epoch is newer than every known one; an older entry starting at or after
    /// `start_offset` is dropped first (it had no records). Returns whether anything changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|e| e >= epoch) {
            return false;
        }
        self.entries.retain(|(_, s)| *s < start_offset);
        self.entries.push((epoch, start_offset));
        true
    }

    /// OffsetForLeaderEpoch's answer for `requested` on a log ending at `log_end`, Kafka's
    /// rules (`LeaderEpochFileCache.endOffsetFor`): `(epoch, end offset)` where epoch is the
    /// largest known epoch <= `requested` (or `requested` itself when it is older than every
    /// known one) and end offset the start of the next larger epoch, or `log_end` when
    /// `requested` is the latest. `(UNDEFINED_EPOCH, UNDEFINED_OFFSET)` when `requested` is
    /// undefined or newer than every known epoch (including an empty cache).
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        if requested < 0 {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end);
        }
        let Some(higher) = self.entries.iter().find(|(e, _)| *e > requested) else {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        match self.entries.iter().rev().find(|(e, _)| *e <= requested) {
            Some((floor, _)) => (*floor, higher.1),
            None => (requested, higher.1),
        }
    }

    /// The log was cut back to end at `log_end`: epochs starting at or after it are gone.
    /// Returns whether anything changed.
    pub fn truncate_from_end(&mut self, log_end: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, s)| *s < log_end);
        self.entries.len() != before
    }

    /// The log now starts at `log_start`: epochs that ended before it are forgotten and the
    /// one it falls in starts there. Returns whether anything changed.
    pub fn truncate_from_start(&mut self, log_start: i64) -> bool {
        let keep_from = self
            .entries
            .iter()
            .rposition(|(_, s)| *s <= log_start)
            .unwrap_or(0);
        let mut changed = keep_from > 0;
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            if first.1 < log_start {
                first.1 = log_start;
                changed = true;
            }
        }
        changed
    }

    /// Drops everything (a follower that starts its copy over).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The file's text.
    pub fn encode(&self) -> String {
        let mut s = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {o}\n"));
        }
        s
    }

    /// Parses the file's text; `None` if it is not a well-formed cache (the caller rebuilds).
    pub fn decode(text: &str) -> Option<EpochCache> {
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut cache = EpochCache::default();
        for _ in 0..count {
            let mut parts = lines.next()?.split_whitespace();
            let epoch: i32 = parts.next()?.parse().ok()?;
            let start: i64 = parts.next()?.parse().ok()?;
            if parts.next().is_some() || epoch < 0 || start < 0 {
                return None;
            }
            let ordered = cache
                .entries
                .last()
                .is_none_or(|(e, s)| *e < epoch && *s < start);
            if !ordered {
                return None;
            }
            cache.entries.push((epoch, start));
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return None;
        }
        Some(cache)
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(EPOCH_FILE)
    }

    /// Reads the cache of the partition directory `dir`. `Ok(None)`: no file, or one that does
    /// not parse (logged); the caller rebuilds it from the log.
    pub fn load(dir: &Path) -> Option<EpochCache> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the leader-epoch cache; rebuilding it from the log");
                return None;
            }
        };
        let cache = Self::decode(&text);
        if cache.is_none() {
            tracing::warn!(path = %path.display(), "the leader-epoch cache is damaged; rebuilding it from the log");
        }
        cache
    }

    /// Writes the cache durably (atomic replace).
    pub fn store(&self, dir: &Path) -> Result<(), LogError> {
        write_atomic(&Self::path(dir), self.encode().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::default();
        for (e, s) in entries {
            assert!(c.assign(*e, *s));
        }
        c
    }

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let c = cache(&[(0, 0), (2, 100), (5, 250)]);
        assert_eq!(c.end_offset_for(0, 300), (0, 100));
        // An epoch the cache skipped answers with the largest epoch below it.
        assert_eq!(c.end_offset_for(1, 300), (0, 100));
        assert_eq!(c.end_offset_for(2, 300), (2, 250));
        assert_eq!(c.end_offset_for(5, 300), (5, 300));
        // Newer than every known epoch: undefined.
        assert_eq!(
            c.end_offset_for(9, 300),
            (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
        );
        assert_eq!(
            c.end_offset_for(-1, 300),
            (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
        );
        // Older than every known epoch: the requested epoch ends where the first known starts.
        assert_eq!(cache(&[(3, 10)]).end_offset_for(2, 20), (2, 10));
        assert_eq!(
            EpochCache::default().end_offset_for(0, 0),
            (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
        );
    }

    #[test]
    fn only_newer_epochs_are_assigned_and_empty_epochs_are_replaced() {
        let mut c = cache(&[(1, 0), (2, 50)]);
        assert!(!c.assign(2, 60));
        assert!(!c.assign(1, 70));
        // Epoch 2 never got a record (3 starts where 2 did): 2 is dropped.
        assert!(c.assign(3, 50));
        assert_eq!(c.entries(), &[(1, 0), (3, 50)]);
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(0, 0), (1, 10), (2, 20), (3, 30)]);
        assert!(c.truncate_from_end(20));
        assert_eq!(c.entries(), &[(0, 0), (1, 10)]);
        assert!(!c.truncate_from_end(25));
        let mut c = cache(&[(0, 0), (1, 10), (2, 20), (3, 30)]);
        assert!(c.truncate_from_start(15));
        assert_eq!(c.entries(), &[(1, 15), (2, 20), (3, 30)]);
        assert!(c.truncate_from_start(20));
        assert_eq!(c.entries(), &[(2, 20), (3, 30)]);
        assert!(!c.truncate_from_start(20));
    }

    #[test]
    fn the_file_round_trips_and_garbage_is_refused() {
        let c = cache(&[(0, 0), (4, 1234)]);
        assert_eq!(EpochCache::decode(&c.encode()), Some(c.clone()));
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0 0\n",
            "0\n2\n3 10\n2 20\n",
            "0\n2\n1 10\n2 5\n",
            "0\n1\n-1 0\n",
            "0\n1\nx y\n",
            "0\n1\n0 0\n9 9\n",
        ] {
            assert_eq!(EpochCache::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stored_and_loaded_from_the_partition_directory() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(EpochCache::load(dir.path()), None);
        let c = cache(&[(0, 0), (7, 99)]);
        c.store(dir.path()).expect("store");
        assert_eq!(EpochCache::load(dir.path()), Some(c));
        std::fs::write(EpochCache::path(dir.path()), "junk").expect("write");
        assert_eq!(EpochCache::load(dir.path()), None);
    }
}
