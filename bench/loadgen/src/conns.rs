//! Many connections at once: opens `--connections` sockets, each sending Produce requests of one
//! prepared batch in a closed loop (one request in flight per connection, as a fleet of small
//! producers would), and reports the broker's memory with the connections open and idle, and
//! under that load, with the throughput and request latency.
//!
//! The batch is encoded once and sent again and again (no producer id, so the broker appends
//! every copy); the client's per-request work is a write and a small decode.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ProduceResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::admin::resolve;
use crate::hist::Histogram;
use crate::procfs::Watched;
use crate::report::Report;
use crate::wire;

#[derive(Debug, Clone, clap::Args)]
pub struct ConnsArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Partitions of the topic; connection i writes to partition i mod this.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Records per request.
    #[arg(long, default_value_t = 16)]
    pub batch_records: usize,
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// acks of every request (1 or -1).
    #[arg(long, default_value_t = 1)]
    pub acks: i16,
    /// Seconds all connections stay open and idle before the load (the idle memory reading).
    #[arg(long, default_value_t = 3.0)]
    pub idle_seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long = "watch-pid")]
    pub watch: Vec<u32>,
}

struct Shared {
    go: AtomicBool,
    stop: AtomicBool,
    measuring: AtomicBool,
    acked: AtomicU64,
    failed: AtomicU64,
    latency: Mutex<Histogram>,
}

pub fn run(a: ConnsArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: ConnsArgs) -> Result<()> {
    let addr = resolve(&a.bootstrap)?;
    let watched = Watched::new(&a.watch);
    let blob = crate::raw::batch(a.batch_records, a.record_size, 1)?;
    let frames: Vec<Bytes> = (0..a.partitions.max(1))
        .map(|p| wire::produce_frame(&a.topic, p, a.acks, &blob, 1))
        .collect::<Result<_>>()?;
    let shared = Arc::new(Shared {
        go: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        measuring: AtomicBool::new(false),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new()),
    });
    let rss_before = watched.rss_mib().unwrap_or(f64::NAN);
    let t_open = Instant::now();
    let mut streams = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connection {i} of {}", a.connections))?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    let open_secs = t_open.elapsed().as_secs_f64();
    // Every connection proves it is served before the idle reading: one request each.
    let mut tasks = Vec::with_capacity(a.connections);
    for (i, s) in streams.into_iter().enumerate() {
        let frame = frames[i % frames.len()].clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(connection(s, frame, shared)));
    }
    tokio::time::sleep(Duration::from_secs_f64(a.idle_seconds)).await;
    let rss_idle = watched.rss_mib().unwrap_or(f64::NAN);
    shared.go.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs_f64(a.warmup_seconds)).await;
    let cpu0 = watched.start()?;
    let acked0 = shared.acked.load(Ordering::SeqCst);
    shared.measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.seconds)).await;
    shared.measuring.store(false, Ordering::SeqCst);
    let acked = shared.acked.load(Ordering::SeqCst) - acked0;
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = watched.mark()?;
    shared.stop.store(true, Ordering::SeqCst);
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(format!("task: {e}")),
        }
    }
    let records = acked * a.batch_records as u64;
    let mut r = Report::new("conns");
    r.set("topic", a.topic.as_str())
        .set("connections", a.connections as u64)
        .set("partitions", a.partitions)
        .set("batch_records", a.batch_records as u64)
        .set("record_size", a.record_size as u64)
        .set("acks", i64::from(a.acks));
    r.num("open_seconds", open_secs, 3);
    r.num("broker_rss_before_mib", rss_before, 1);
    r.num("broker_rss_idle_conns_mib", rss_idle, 1);
    r.throughput(
        records,
        records * a.record_size as u64,
        secs,
        (cpu0, cpu1),
        &watched,
    );
    r.set("failed_requests", shared.failed.load(Ordering::SeqCst));
    r.set("connection_errors", errors.len() as u64);
    r.set("first_error", errors.first().cloned());
    let h = shared
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    r.latency("request", &h);
    r.emit();
    if !errors.is_empty() {
        bail!(
            "{} connections failed, the first: {}",
            errors.len(),
            errors[0]
        );
    }
    Ok(())
}

async fn connection(mut s: TcpStream, frame: Bytes, shared: Arc<Shared>) -> Result<()> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut local = Histogram::new();
    let mut first = true;
    loop {
        if !first {
            while !shared.go.load(Ordering::Relaxed) {
                if shared.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let t = Instant::now();
        s.write_all(&frame).await?;
        let body = loop {
            if let Some(f) = wire::take_frame(&mut buf, 16 << 20)? {
                break f;
            }
            if s.read_buf(&mut buf).await? == 0 {
                bail!("connection closed by the broker");
            }
        };
        let (_, resp): (i32, ProduceResponse) = wire::decode_response(body, wire::PRODUCE_VERSION)?;
        let ok = resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .all(|p| p.error_code == 0);
        if first {
            first = false;
            if !ok {
                bail!("first produce refused: {resp:?}");
            }
            continue;
        }
        if ok {
            shared.acked.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        if shared.measuring.load(Ordering::Relaxed) {
            local.record(t.elapsed().as_nanos() as u64);
        }
    }
    shared
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .merge(&local);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prepared_batch_holds_the_records_asked_for() {
        let b = crate::raw::batch(16, 100, 1).expect("batch");
        assert_eq!(wire::record_count(&b), 16);
        // one batch: its length field covers the whole blob
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize;
        assert_eq!(len + 12, b.len());
        // base sequence -1: no producer id, no sequence
        assert_eq!(i32::from_be_bytes([b[53], b[54], b[55], b[56]]), -1);
        assert!(b.len() > 1600);
    }
}
