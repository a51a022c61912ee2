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
