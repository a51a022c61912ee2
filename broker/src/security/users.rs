//! The bootstrap users file (`--sasl-users-file`): users that exist before the metadata quorum
//! holds any, so the first administrator can authenticate and create the others with
//! AlterUserScramCredentials. The operator writes it from a Secret.
//!
//! One user per line, `name:password` (split at the first `:`, so a password may contain
//! one); empty lines and lines starting with `#` are skipped. The passwords are turned into
//! SCRAM credentials (both mechanisms, a random salt, 4096 iterations) when the file is read
//! and then forgotten. A user of the file wins over a user of the same name in the quorum: the
//! operator's administrator credential cannot be changed through the Kafka API.
//!
//! The file is read again when it changes (same check as the TLS files), so rotating the
//! Secret rotates the password without a restart.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::scram::{ScramCredential, MIN_ITERATIONS};
use super::Mechanism;

/// Why the users file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path} line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
}

type Creds = BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>;

/// The users of the file, reloadable.
#[derive(Debug)]
pub struct BootstrapUsers {
    path: PathBuf,
    users: RwLock<Arc<Creds>>,
    seen: Mutex<Option<(u64, u64, i64)>>,
}

fn stamp(path: &Path) -> Option<(u64, u64, i64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.mtime() * 1_000_000_000 + m.mtime_nsec()))
}

/// Parses the file's text into (name, password) pairs.
fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, UsersError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let err = |reason| UsersError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let (name, password) = line.split_once(':').ok_or(err("expected name:password"))?;
        let name = name.trim();
        if name.is_empty() || password.is_empty() {
            return Err(err("empty user name or password"));
        }
        out.push((name.to_string(), password.to_string()));
    }
    Ok(out)
}

fn load(path: &Path) -> Result<Creds, UsersError> {
    let text = std::fs::read_to_string(path).map_err(|e| UsersError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut users = Creds::new();
    for (name, password) in parse(path, &text)? {
        let creds = Mechanism::SCRAM
            .iter()
            .map(|m| {
                (
                    *m,
                    ScramCredential::derive(*m, password.as_bytes(), MIN_ITERATIONS),
                )
            })
            .collect();
        users.insert(name, creds);
    }
    Ok(users)
}

impl BootstrapUsers {
    /// Reads the file; an error names it (and the line).
    pub fn open(path: PathBuf) -> Result<Arc<BootstrapUsers>, UsersError> {
        let seen = stamp(&path);
        let users = load(&path)?;
        Ok(Arc::new(BootstrapUsers {
            path,
            users: RwLock::new(Arc::new(users)),
            seen: Mutex::new(seen),
        }))
    }

    fn current(&self) -> Arc<Creds> {
        match self.users.read() {
            Ok(u) => Arc::clone(&u),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// The credential of `user` for `mechanism`, if the file names the user.
    pub fn scram(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.current().get(user)?.get(&mechanism).cloned()
    }

    /// The users of the file.
    pub fn names(&self) -> Vec<String> {
        self.current().keys().cloned().collect()
    }

    /// Reads the file again if it changed: `Ok(true)` when new users are in use, `Err` (the
    /// old ones stay) when the new file is invalid.
    pub fn reload_if_changed(&self) -> Result<bool, UsersError> {
        let now = stamp(&self.path);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let users = load(&self.path)?;
        match self.users.write() {
            Ok(mut u) => *u = Arc::new(users),
            Err(p) => *p.into_inner() = Arc::new(users),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_gives_scram_credentials_for_both_mechanisms() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("users");
        std::fs::write(&path, "# admins\nadmin:pa:ss word\n\n  \nops:x\n").expect("write");
        let users = BootstrapUsers::open(path.clone()).expect("open");
        assert_eq!(users.names(), vec!["admin".to_string(), "ops".to_string()]);
        for m in Mechanism::SCRAM {
            let c = users.scram("admin", m).expect("admin");
            assert!(c.matches_password(m, b"pa:ss word"));
        }
        assert!(users.scram("nobody", Mechanism::ScramSha512).is_none());

        assert!(!users.reload_if_changed().expect("unchanged"));
        std::fs::write(&path, "admin:new\n").expect("write");
        assert!(users.reload_if_changed().expect("changed"));
        let c = users.scram("admin", Mechanism::ScramSha256).expect("admin");
        assert!(c.matches_password(Mechanism::ScramSha256, b"new"));
        assert!(users.scram("ops", Mechanism::ScramSha256).is_none());

        std::fs::write(&path, "broken line\n").expect("write");
        let e = users.reload_if_changed().expect_err("invalid").to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(users.scram("admin", Mechanism::ScramSha256).is_some());
    }

    #[test]
    fn bad_lines_are_named() {
        let p = Path::new("/x");
        assert!(parse(p, "a:b\n:c\n").is_err());
        assert!(parse(p, "a:\n").is_err());
        let ok = parse(p, "a:b:c\r\n").expect("ok");
        assert_eq!(ok, vec![("a".to_string(), "b:c".to_string())]);
    }
}
