//! This machine's own limits, measured in the same run as the brokers: sequential writes with
//! fdatasync (what a broker that syncs before answering can at best reach) and one loopback TCP
//! stream (what any broker on loopback can at best move).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::hist::Histogram;
use crate::procfs::Watched;
use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fdatasync after every write (a broker fsyncing each acks=all answer).
    Each,
    /// One fsync at the end (page-cache bandwidth plus one flush).
    End,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DiskArgs {
    /// Directory to write the test file in (removed afterwards).
    #[arg(long)]
    pub dir: PathBuf,
    /// Bytes per write.
    #[arg(long, default_value_t = 1 << 20)]
    pub block_bytes: usize,
    /// Bytes in all.
    #[arg(long, default_value_t = 512 << 20)]
    pub total_bytes: u64,
    #[arg(long, value_enum, default_value_t = SyncMode::Each)]
    pub sync: SyncMode,
    /// Stop early after this long (slow disks with small blocks).
    #[arg(long, default_value_t = 30.0)]
    pub max_seconds: f64,
}

pub fn disk(a: DiskArgs) -> Result<()> {
    let path = a
        .dir
        .join(format!("sluice-loadgen-disk-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let block: Vec<u8> = (0..a.block_bytes).map(|i| (i * 31 % 251) as u8).collect();
    let mut lat = Histogram::new();
    let t0 = Instant::now();
    let mut written = 0u64;
    let result = (|| -> Result<()> {
        while written < a.total_bytes && t0.elapsed().as_secs_f64() < a.max_seconds {
            let t = Instant::now();
            f.write_all(&block)?;
            if a.sync == SyncMode::Each {
                f.sync_data()?;
            }
            lat.record(t.elapsed().as_nanos() as u64);
            written += block.len() as u64;
        }
        f.sync_all()?;
        Ok(())
    })();
    let secs = t0.elapsed().as_secs_f64();
    drop(f);
    let _ = fs::remove_file(&path);
    result.with_context(|| format!("writing {}", path.display()))?;
    let mut r = Report::new("disk");
    r.set("dir", a.dir.display().to_string())
        .set("block_bytes", a.block_bytes as u64)
        .set("sync", format!("{:?}", a.sync).to_lowercase())
        .set("bytes", written);
    r.num("seconds", secs, 3);
    r.num("mib_s", written as f64 / 1048576.0 / secs, 1);
    r.num("writes_s", lat.count() as f64 / secs, 0);
    r.latency("write", &lat);
    r.emit();
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct CommitArgs {
    /// Directory to write the test file in (removed afterwards).
    #[arg(long)]
    pub dir: PathBuf,
    /// Appends per second, on schedule (open loop: latency from each append's intended time).
    #[arg(long, default_value_t = 10_000.0, conflicts_with = "window")]
    pub rate: f64,
    /// Instead of a rate, keep this many appends waiting for their flush at all times (closed
    /// loop, like a producer with this many requests in flight): throughput.
    #[arg(long)]
    pub window: Option<usize>,
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Bytes per append (default: a 1 KiB record and its batch overhead).
    #[arg(long, default_value_t = 1100)]
    pub append_bytes: usize,
    /// fdatasync calls allowed in flight at once: 1 is a serial group commit (an append that
    /// lands during a flush waits for it and then for its own); more start a flush for new
    /// appends while earlier ones are still running.
    #[arg(long, default_value_t = 1)]
    pub syncers: usize,
}

fn lock(m: &std::sync::Mutex<CommitState>) -> std::sync::MutexGuard<'_, CommitState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the appender and the syncers of a [`commit`] run share.
struct CommitState {
    /// Appends written to the file.
    written: usize,
    /// The highest append count a flush was started for.
    started: usize,
    /// Appends covered by a completed flush.
    durable: usize,
    done: bool,
    /// When each append was due (open loop) or made (closed loop).
    due: Vec<Instant>,
    lat: Histogram,
}

/// A group commit without a broker or a client: one thread appends to a file (on schedule, or
/// keeping `window` appends waiting), `syncers` threads each take everything written so far and
/// `fdatasync` it. An append's latency runs to the end of the first flush that covers it: what
/// an `fsync: always` broker adds to a produce answer on this disk.
pub fn commit(a: CommitArgs) -> Result<()> {
    let run = run_commit(&a)?;
    let bytes = (run.appends * a.append_bytes) as u64;
    let mut r = Report::new("commit");
    r.set("dir", a.dir.display().to_string())
        .set("append_bytes", a.append_bytes as u64)
        .set("syncers", a.syncers as u64)
        .set("appends", run.appends as u64)
        .set("flushes", run.flushes)
        .set("bytes", bytes);
    match a.window {
        Some(w) => r.set("window", w as u64),
        None => r.num("rate", a.rate, 0),
    };
    r.num("seconds", run.secs, 3);
    r.num("mib_s", bytes as f64 / 1048576.0 / run.secs, 1);
    r.latency("commit", &run.lat);
    r.emit();
    Ok(())
}

/// What a [`commit`] run measured.
struct CommitRun {
    /// Appends written, every one covered by a completed flush.
    appends: usize,
    flushes: u64,
    secs: f64,
    /// Each append's latency to its flush.
    lat: Histogram,
}

fn run_commit(a: &CommitArgs) -> Result<CommitRun> {
    use std::os::unix::fs::FileExt;
    use std::sync::{Arc, Condvar, Mutex};

    anyhow::ensure!(
        a.rate > 0.0 && a.syncers > 0 && a.window != Some(0),
        "--rate, --window and --syncers must be positive"
    );
    let path = a
        .dir
        .join(format!("sluice-loadgen-commit-{}", std::process::id()));
    let file = Arc::new(
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?,
    );
    // (state, "written" for the syncers, "durable" for a closed-loop appender)
    let shared = Arc::new((
        Mutex::new(CommitState {
            written: 0,
            started: 0,
            durable: 0,
            done: false,
            due: Vec::new(),
            lat: Histogram::new(),
        }),
        Condvar::new(),
        Condvar::new(),
    ));
    let syncers: Vec<_> = (0..a.syncers)
        .map(|_| {
            let (shared, file) = (Arc::clone(&shared), Arc::clone(&file));
            thread::spawn(move || -> std::io::Result<u64> {
                let (m, written, durable) = &*shared;
                let mut flushes = 0;
                loop {
                    let target = {
                        let mut g = lock(m);
                        while g.written <= g.started && !g.done {
                            g = written.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                        if g.written <= g.started {
                            return Ok(flushes);
                        }
                        g.started = g.written;
                        g.written
                    };
                    file.sync_data()?;
                    flushes += 1;
                    let now = Instant::now();
                    let mut g = lock(m);
                    for i in g.durable..target.max(g.durable) {
                        let took = now.duration_since(g.due[i]).as_nanos() as u64;
                        g.lat.record(took);
                    }
                    g.durable = g.durable.max(target);
                    durable.notify_all();
                }
            })
        })
        .collect();
    let append = vec![0xa5u8; a.append_bytes];
    let gap = Duration::from_secs_f64(1.0 / a.rate);
    let until = Duration::from_secs_f64(a.seconds);
    let t0 = Instant::now();
    let mut appended = Ok(());
    let (m, written, durable) = &*shared;
    for i in 0usize.. {
        let due = match a.window {
            Some(window) => {
                let mut g = lock(m);
                while g.written - g.durable >= window {
                    g = durable.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                Instant::now()
            }
            None => {
                // Spin to the intended time: a sleep's wake-up jitter would count as latency.
                let at = t0 + gap.mul_f64(i as f64);
                while Instant::now() < at {
                    std::hint::spin_loop();
                }
                at
            }
        };
        if due.duration_since(t0) >= until {
            break;
        }
        if let Err(e) = file.write_all_at(&append, (i * a.append_bytes) as u64) {
            appended = Err(e);
            break;
        }
        let mut g = lock(m);
        g.due.push(due);
        g.written = i + 1;
        written.notify_one();
    }
    lock(m).done = true;
    written.notify_all();
    let mut flushes = 0;
    for s in syncers {
        flushes += s
            .join()
            .map_err(|_| anyhow::anyhow!("a syncer thread panicked"))?
            .with_context(|| format!("fdatasync of {}", path.display()))?;
    }
    let secs = t0.elapsed().as_secs_f64();
    drop(file);
    let _ = fs::remove_file(&path);
    appended.with_context(|| format!("writing {}", path.display()))?;
    let mut g = lock(m);
    anyhow::ensure!(
        g.durable == g.written,
        "{} appends written, {} flushed",
        g.written,
        g.durable
    );
    Ok(CommitRun {
        appends: g.durable,
        flushes,
        secs,
        lat: std::mem::take(&mut g.lat),
    })
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoopbackArgs {
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Bytes per write and per read.
    #[arg(long, default_value_t = 256 << 10)]
    pub block_bytes: usize,
}

/// One TCP stream over 127.0.0.1, a writer thread and a reader thread in this process.
pub fn loopback(a: LoopbackArgs) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let block = a.block_bytes;
    let reader = thread::spawn(move || -> Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; block];
        let mut n = 0u64;
        loop {
            let got = s.read(&mut buf)?;
            if got == 0 {
                return Ok(n);
            }
            n += got as u64;
        }
    });
    let watched = Watched::default();
    let mut s = TcpStream::connect(addr)?;
    let buf = vec![0xa5u8; block];
    let cpu0 = watched.mark()?;
    let t0 = Instant::now();
    let until = Duration::from_secs_f64(a.seconds);
    while t0.elapsed() < until {
        s.write_all(&buf)?;
    }
    drop(s);
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = watched.mark()?;
    let mut r = Report::new("loopback");
    r.set("block_bytes", block as u64);
    r.throughput(0, received, secs, (cpu0, cpu1), &watched);
    r.emit();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &std::path::Path, window: Option<usize>, syncers: usize) -> CommitArgs {
        CommitArgs {
            dir: dir.to_path_buf(),
            rate: 2_000.0,
            window,
            seconds: 0.3,
            append_bytes: 4096,
            syncers,
        }
    }

    #[test]
    fn a_commit_run_flushes_every_append_and_times_each_once() {
        let tmp = tempfile::tempdir().expect("temp dir");
        for (window, syncers) in [(None, 1), (None, 2), (Some(3), 1), (Some(3), 2)] {
            let run = run_commit(&args(tmp.path(), window, syncers)).expect("a run");
            assert!(run.appends > 0, "{window:?}/{syncers}: no appends");
            // The open loop stops at its last due time: never more than rate x seconds.
            if window.is_none() {
                assert!(run.appends <= 600, "{} appends", run.appends);
            }
            assert!(run.flushes >= 1 && run.flushes <= run.appends as u64);
            assert_eq!(run.lat.count(), run.appends as u64);
        }
        // The test file is removed after each run.
        assert_eq!(fs::read_dir(tmp.path()).expect("listed").count(), 0);
    }

    #[test]
    fn a_missing_directory_is_named() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let gone = tmp.path().join("gone");
        let err = run_commit(&args(&gone, Some(1), 1))
            .err()
            .expect("no directory");
        assert!(format!("{err:#}").contains("gone"), "{err:#}");
    }
}
