//! File helpers shared by the storage engine: error context, directory fsync, and the atomic
//! replacement of small metadata files (`topics.json`, `log-start-offset`).

use std::io::Write;
use std::path::Path;

use super::LogError;

/// Maps an I/O error to [`LogError::Io`] naming `path`.
pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync directory.
/// A temp file whose write failed is removed (a full disk gets its space back).
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(source) = write() {
        remove_if_exists(&tmp);
        return Err(LogError::Io { path: tmp, source });
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

/// Fsyncs a directory so renames, creations and deletions in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Removes a file that may not exist; any other failure is only logged (the callers clean up
/// leftovers that recovery ignores anyway).
pub(super) fn remove_if_exists(p: &Path) {
    if let Err(e) = std::fs::remove_file(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), error = %e, "could not remove file");
        }
    }
}
