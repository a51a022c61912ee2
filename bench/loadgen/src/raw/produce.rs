//! `raw-produce`: pre-encoded batches, pipelined on each connection (see [`super`]).

use std::io::{IoSlice, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ProduceResponse;

use super::{batch, read_frame};
use crate::admin::resolve;
use crate::hist::Histogram;
use crate::procfs::Watched;
use crate::report::Report;
use crate::wire;

#[derive(Debug, Clone, clap::Args)]
pub struct RawProduceArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
    /// Partitions of the topic (requests go to 0, 1, ..., N-1, 0, ...).
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Value size of every record, bytes (no key).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Payload bytes per batch (librdkafka's batch.size of the `produce` mode): the records per
    /// batch are this divided by --record-size, at least one.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_bytes: usize,
    /// acks: 1 or all (-1).
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Requests outstanding per connection.
    #[arg(long, default_value_t = 5)]
    pub in_flight: usize,
    /// Connections, each with its own writer and reader thread.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Distinct batches encoded up front and sent in turn.
    #[arg(long, default_value_t = 8)]
    pub variants: usize,
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long = "watch-pid")]
    pub watch: Vec<u32>,
}

/// The request up to its records (length prefix, header, acks, timeout, topic, partition,
/// records length) for a batch of `batch_len` bytes: the encoded request minus the batch.
fn produce_head(topic: &str, partition: i32, acks: i16, batch: &Bytes) -> Result<Vec<u8>> {
    let frame = wire::produce_frame(topic, partition, acks, batch, 0)?;
    let head = frame.len() - batch.len();
    ensure!(
        frame[head..] == batch[..],
        "Produce v{} does not end with its records",
        wire::PRODUCE_VERSION
    );
    Ok(frame[..head].to_vec())
}

/// Writes `a` then `b` with as few `writev` calls as the socket allows.
fn write_both(s: &mut TcpStream, mut a: &[u8], mut b: &[u8]) -> std::io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let n = s.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

struct ProduceShared {
    stop: AtomicBool,
    measuring: AtomicBool,
    acked_records: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    latency: Mutex<Histogram>,
}

impl ProduceShared {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut e = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        e.get_or_insert(what);
    }
}

pub fn run(a: RawProduceArgs) -> Result<()> {
    let acks: i16 = match a.acks.as_str() {
        "1" => 1,
        "all" | "-1" => -1,
        other => bail!("--acks {other}: 1 or all (acks=0 has no answers to count)"),
    };
    ensure!(a.partitions >= 1, "--partitions must be at least 1");
    ensure!(a.in_flight >= 1, "--in-flight must be at least 1");
    ensure!(a.connections >= 1, "--connections must be at least 1");
    ensure!(a.record_size >= 1, "--record-size must be at least 1");
    let addr = resolve(&a.bootstrap)?;
    let watched = Watched::new(&a.watch);
    let per_batch = (a.batch_bytes / a.record_size).max(1);
    let batches: Vec<Bytes> = (0..a.variants.max(1) as u64)
        .map(|v| batch(per_batch, a.record_size, v + 1))
        .collect::<Result<_>>()?;
    ensure!(
        batches.iter().all(|b| b.len() == batches[0].len()),
        "batches of equal records encode to different lengths"
    );
    let heads: Vec<Vec<u8>> = (0..a.partitions)
        .map(|p| produce_head(&a.topic, p, acks, &batches[0]))
        .collect::<Result<_>>()?;
    let (heads, batches) = (Arc::new(heads), Arc::new(batches));
    let shared = Arc::new(ProduceShared {
        stop: AtomicBool::new(false),
        measuring: AtomicBool::new(false),
        acked_records: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        latency: Mutex::new(Histogram::new()),
    });
    let mut threads = Vec::new();
    for c in 0..a.connections {
        let (heads, batches, shared) = (heads.clone(), batches.clone(), shared.clone());
        let in_flight = a.in_flight;
        threads.push(
            thread::Builder::new()
                .name(format!("raw-produce-{c}"))
                .spawn(move || {
                    let r = produce_conn(c, addr, &heads, &batches, in_flight, per_batch, &shared);
                    if r.is_err() {
                        shared.stop.store(true, Ordering::SeqCst);
                    }
                    r
                })?,
        );
    }
    thread::sleep(Duration::from_secs_f64(a.warmup_seconds));
    let cpu0 = watched.start()?;
    let acked0 = shared.acked_records.load(Ordering::SeqCst);
    shared.measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs_f64(a.seconds));
    shared.measuring.store(false, Ordering::SeqCst);
    let records = shared.acked_records.load(Ordering::SeqCst) - acked0;
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = watched.mark()?;
    shared.stop.store(true, Ordering::SeqCst);
    let mut errors = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(_) => errors.push("a connection thread panicked".into()),
        }
    }
    let mut r = Report::new("raw-produce");
    r.set("topic", a.topic.as_str())
        .set("partitions", a.partitions)
        .set("record_size", a.record_size as u64)
        .set("acks", a.acks.as_str())
        .set("records_per_batch", per_batch as u64)
        .set("batch_wire_bytes", batches[0].len() as u64)
        .set("in_flight", a.in_flight as u64)
        .set("connections", a.connections as u64);
    r.throughput(
        records,
        records * a.record_size as u64,
        secs,
        (cpu0, cpu1),
        &watched,
    );
    r.set("failed_requests", shared.failed.load(Ordering::SeqCst));
    let first = shared
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    r.set("first_error", first.clone());
    let h = shared
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    r.latency("request", &h);
    r.emit();
    if let Some(e) = errors.first() {
        bail!("{} connections failed, the first: {e}", errors.len());
    }
    if let Some(e) = first {
        bail!(
            "{} requests refused, the first: {e}",
            shared.failed.load(Ordering::SeqCst)
        );
    }
    if records == 0 {
        bail!("no record acknowledged in the measured window");
    }
    Ok(())
}

/// One connection: this thread writes, a second one reads the answers in order. The channel
/// between them holds the requests in flight, so its bound is the in-flight limit.
fn produce_conn(
    index: usize,
    addr: SocketAddr,
    heads: &[Vec<u8>],
    batches: &[Bytes],
    in_flight: usize,
    per_batch: usize,
    shared: &Arc<ProduceShared>,
) -> Result<()> {
    let mut w = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connection {index} to {addr}"))?;
    w.set_nodelay(true)?;
    w.set_read_timeout(Some(Duration::from_secs(60)))?;
    w.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut r = w.try_clone()?;
    let (tx, rx) = sync_channel::<(i32, Instant, i32)>(in_flight);
    let reader = {
        let shared = shared.clone();
        thread::Builder::new()
            .name(format!("raw-produce-{index}-read"))
            .spawn(move || -> Result<()> {
                let mut buf = BytesMut::new();
                let mut local = Histogram::new();
                while let Ok((id, sent, partition)) = rx.recv() {
                    read_frame(&mut r, &mut buf)?;
                    let (got, resp): (i32, ProduceResponse) =
                        wire::decode_response(Bytes::copy_from_slice(&buf), wire::PRODUCE_VERSION)?;
                    ensure!(got == id, "answer to request {got} where {id} was next");
                    let refused = resp
                        .responses
                        .iter()
                        .flat_map(|t| &t.partition_responses)
                        .find(|p| p.error_code != 0);
                    match refused {
                        Some(p) => shared.fail(format!(
                            "partition {partition}: error code {} ({:?})",
                            p.error_code, p.error_message
                        )),
                        None => {
                            shared
                                .acked_records
                                .fetch_add(per_batch as u64, Ordering::Relaxed);
                            if shared.measuring.load(Ordering::Relaxed) {
                                local.record(sent.elapsed().as_nanos() as u64);
                            }
                        }
                    }
                }
                shared
                    .latency
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .merge(&local);
                Ok(())
            })?
    };
    let mut head = Vec::new();
    let mut n: usize = 0;
    let written = loop {
        if shared.stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let p = (index + n) % heads.len();
        let id = n as i32 & i32::MAX;
        head.clear();
        head.extend_from_slice(&heads[p]);
        // length(4) api_key(2) api_version(2) correlation_id(4)
        head[8..12].copy_from_slice(&id.to_be_bytes());
        if tx.send((id, Instant::now(), p as i32)).is_err() {
            break Ok(()); // the reader failed; its error is the one to report
        }
        if let Err(e) = write_both(&mut w, &head, &batches[n % batches.len()]) {
            break Err(e).with_context(|| format!("writing request {n} on connection {index}"));
        }
        n += 1;
    };
    drop(tx);
    if written.is_err() {
        let _ = w.shutdown(std::net::Shutdown::Both);
    }
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    read.and(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiKey, ProduceRequest};

    #[test]
    fn a_request_is_its_head_then_its_batch() {
        let b = batch(3, 10, 1).expect("batch");
        let head = produce_head("t", 5, -1, &b).expect("head");
        let mut frame = head.clone();
        frame.extend_from_slice(&b);
        let mut buf = BytesMut::from(&frame[..]);
        let body = wire::take_frame(&mut buf, 1 << 20)
            .expect("ok")
            .expect("whole");
        let p = wire::peek(&body).expect("peek");
        assert_eq!((p.api_key, p.api_version), (0, wire::PRODUCE_VERSION));
        let req: ProduceRequest = wire::decode_request(ApiKey::Produce, p, body).expect("decode");
        assert_eq!(req.acks, -1);
        let part = &req.topic_data[0].partition_data[0];
        assert_eq!(part.index, 5);
        assert_eq!(part.records.as_deref(), Some(&b[..]));
    }

    /// The whole producer (heads, `writev`, pipelining, answers in order) against the no-op
    /// sink, a Kafka-speaking server in this process.
    #[test]
    fn the_raw_producer_runs_against_a_kafka_speaking_sink() {
        let listen = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listen.local_addr().expect("addr");
        drop(listen);
        let sink = crate::sink::SinkArgs {
            listen: addr,
            partitions: 4,
            threads: 1,
        };
        thread::spawn(move || crate::sink::run(sink));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the sink never listened on {addr}"
            );
            thread::yield_now();
        }
        run(RawProduceArgs {
            partitions: 4,
            batch_bytes: 10_000,
            acks: "all".into(),
            in_flight: 3,
            connections: 2,
            variants: 2,
            warmup_seconds: 0.05,
            seconds: 0.2,
            ..test_args(addr)
        })
        .expect("every request answered without error");
        let bad = RawProduceArgs {
            acks: "0".into(),
            ..test_args(addr)
        };
        let e = run(bad).expect_err("acks=0 refused").to_string();
        assert!(e.contains("acks"), "{e}");
    }

    fn test_args(addr: SocketAddr) -> RawProduceArgs {
        RawProduceArgs {
            bootstrap: addr.to_string(),
            topic: "t".into(),
            partitions: 1,
            record_size: 100,
            batch_bytes: 1000,
            acks: "1".into(),
            in_flight: 1,
            connections: 1,
            variants: 1,
            warmup_seconds: 0.0,
            seconds: 0.1,
            watch: vec![],
        }
    }
}
