//! What every fuzz binary shares: an allocator that aborts on an allocation larger than
//! `SLUICE_FUZZ_MAX_ALLOC_MB` (256 MiB by default), and the scratch directory of the targets
//! that build files.
//!
//! libFuzzer's own `-malloc_limit_mb` needs a sanitizer's allocator hooks, which stable Rust
//! does not have, and its RSS limit misses an allocation that is reserved but never touched
//! (a `calloc` of a length a peer claims). So the binaries' global allocator checks each
//! request itself: a path that allocates what its input claims rather than what it holds
//! aborts, and libFuzzer reports the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The limit in bytes; 0 until first read from the environment.
static LIMIT: AtomicUsize = AtomicUsize::new(0);

fn limit() -> usize {
    let l = LIMIT.load(Ordering::Relaxed);
    if l != 0 {
        return l;
    }
    // Reading the environment allocates: set a provisional limit first so the nested
    // allocations pass.
    LIMIT.store(usize::MAX, Ordering::Relaxed);
    let mb = std::env::var("SLUICE_FUZZ_MAX_ALLOC_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(256);
    let l = mb.saturating_mul(1 << 20).max(1);
    LIMIT.store(l, Ordering::Relaxed);
    l
}

fn check(size: usize) {
    if size > limit() {
        // No allocation from here on: abort is what libFuzzer treats as a crash.
        eprintln!("==sluice-fuzz== allocation of {size} bytes exceeds the limit");
        std::process::abort();
    }
}

/// [`System`] with a size check in front.
pub struct Bounded;

// SAFETY: every method forwards to `System` with the caller's own arguments, unchanged, after
// a size check that either passes or aborts the process; `System` upholds `GlobalAlloc`'s
// contract, so this does too.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: forwarded unchanged (see the impl's comment).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// A directory of this process for the targets that build files: under
/// `SLUICE_FUZZ_SCRATCH`, else `/dev/shm` (tmpfs: fsync costs nothing), else the temp dir.
pub fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::var_os("SLUICE_FUZZ_SCRATCH")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let shm = PathBuf::from("/dev/shm");
                if shm.is_dir() {
                    shm
                } else {
                    std::env::temp_dir()
                }
            });
        let dir = root.join(format!("sluice-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// Writes the seeds of target `name` into `dir` (`seed-<n>`), built by the broker's own
/// encoders (`sluice_broker::fuzzing::seeds`), so they follow its formats without binary files
/// in the repository.
pub fn write_seeds(name: &str, dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let seeds = sluice_broker::fuzzing::seeds(name, scratch());
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), s)?;
    }
    Ok(seeds.len())
}

/// Declares a fuzz binary for one of `sluice_broker::fuzzing::TARGETS`. Started with
/// `SLUICE_FUZZ_WRITE_SEEDS=<dir>`, it writes its seeds there and exits instead of fuzzing (a
/// separate binary would need its own uninstrumented build of every dependency).
#[macro_export]
macro_rules! target {
    ($name:literal) => {
        #[global_allocator]
        static ALLOC: $crate::Bounded = $crate::Bounded;

        libfuzzer_sys::fuzz_target!(
            init: {
                if let Some(dir) = std::env::var_os("SLUICE_FUZZ_WRITE_SEEDS") {
                    let dir = std::path::PathBuf::from(dir);
                    match $crate::write_seeds($name, &dir) {
                        Ok(n) => {
                            println!("{}: {n} seeds in {}", $name, dir.display());
                            std::process::exit(0);
                        }
                        Err(e) => {
                            eprintln!("{}: writing seeds to {}: {e}", $name, dir.display());
                            std::process::exit(1);
                        }
                    }
                }
            },
            |data: &[u8]| {
                sluice_broker::fuzzing::run($name, data, $crate::scratch());
            }
        );
    };
}
