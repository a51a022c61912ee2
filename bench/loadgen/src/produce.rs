//! Producing with librdkafka: as fast as the client and broker allow, or at a fixed rate with
//! latency measured from each record's *intended* send time (so a stall on either side shows up
//! in the percentiles instead of silently lowering the rate: no coordinated omission), and
//! optionally end to end, from that intended time to the moment a consumer in this process
//! receives the record.
//!
//! Only a steady window is measured: `--warmup-seconds` of the same load first, then
//! `--seconds` in which acknowledgements (by arrival time) count toward throughput and records
//! (by intended send time) toward latency; CPU of this process and of the watched processes is
//! read at the window's edges.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer, PARTITION_UA,
};
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{partition_count, ClientArgs};
use crate::hist::Histogram;
use crate::procfs::Watched;
use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Partitioning {
    /// librdkafka's default for records without a key: one partition per batch, switching
    /// every `sticky.partitioning.linger.ms` (as the Java client's sticky partitioner).
    Sticky,
    /// Record i to partition i mod N: every partition gets every batch-window's share.
    RoundRobin,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Value size of every record, bytes (no key; at least 8 with --e2e).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// linger.ms.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u32,
    /// batch.size, bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_bytes: u32,
    /// max.in.flight.requests.per.connection.
    #[arg(long, default_value_t = 5)]
    pub in_flight: u32,
    /// enable.idempotence (needs acks=all).
    #[arg(long)]
    pub idempotent: bool,
    /// Client-side buffer (queue.buffering.max.kbytes), KiB: bounds the records waiting in the
    /// client, as the Java client's buffer.memory (32 MiB) does.
    #[arg(long, default_value_t = 32 * 1024)]
    pub buffer_kib: u32,
    #[arg(long, value_enum, default_value_t = Partitioning::Sticky)]
    pub partitioner: Partitioning,
    /// Records per second, paced from the intended send times; absent: as fast as possible.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Unmeasured seconds of the same load before the window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    /// Length of the measured window.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Instead of a timed window: produce exactly this many payload bytes, all measured (for
    /// filling a log).
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Also consume in this process and report end-to-end latency (intended send time to
    /// receipt); the record's first 8 bytes carry the intended time.
    #[arg(long)]
    pub e2e: bool,
}

/// What the delivery callback tallies.
struct Tally {
    acked: u64,
    acked_in_window: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram,
    last_ack_ns: u64,
}

struct Ctx {
    base: Instant,
    window_start: AtomicU64,
    window_end: AtomicU64,
    tally: Mutex<Tally>,
}

impl Ctx {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.window_start.load(Ordering::Relaxed)
            && t < self.window_end.load(Ordering::Relaxed)
    }
}

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    /// The intended send time, ns since `base`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, intended: usize) {
        let now = self.now_ns();
        let intended = intended as u64;
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => {
                t.acked += 1;
                t.last_ack_ns = now;
                if self.in_window(now) {
                    t.acked_in_window += 1;
                }
                if self.in_window(intended) {
                    t.latency.record(now.saturating_sub(intended));
                }
            }
            Err((e, _)) => {
                t.errors += 1;
                if t.first_error.is_none() {
                    t.first_error = Some(e.to_string());
                }
            }
        }
    }
}

/// A payload that does not compress (a compressing broker or client path would otherwise
/// flatter the figures).
fn payload(size: usize) -> Vec<u8> {
    crate::raw::noise(1, size)
}

pub fn run(a: ProduceArgs) -> Result<()> {
    if a.e2e && a.record_size < 8 {
        bail!("--e2e needs --record-size of at least 8 (the intended send time)");
    }
    let acks = match a.acks.as_str() {
        "0" | "1" | "all" | "-1" => a.acks.clone(),
        other => bail!("--acks {other}: 0, 1 or all"),
    };
    let watched = Watched::new(&a.client.watch);
    let ctx = Ctx {
        base: Instant::now(),
        window_start: AtomicU64::new(u64::MAX),
        window_end: AtomicU64::new(u64::MAX),
        tally: Mutex::new(Tally {
            acked: 0,
            acked_in_window: 0,
            errors: 0,
            first_error: None,
            latency: Histogram::new(),
            last_ack_ns: 0,
        }),
    };
    let config = a.client.config(&[
        ("acks", acks.clone()),
        ("linger.ms", a.linger_ms.to_string()),
        ("batch.size", a.batch_bytes.to_string()),
        (
            "max.in.flight.requests.per.connection",
            a.in_flight.to_string(),
        ),
        ("enable.idempotence", a.idempotent.to_string()),
        ("compression.type", "none".into()),
        ("queue.buffering.max.kbytes", a.buffer_kib.to_string()),
        ("queue.buffering.max.messages", "10000000".into()),
        ("message.timeout.ms", "60000".into()),
    ]);
    let producer: ThreadedProducer<Ctx> = config
        .create_with_context(ctx)
        .context("creating the producer")?;
    let partitions = partition_count(producer.client(), &a.client.topic)?;
    let ctx = producer.context().clone();

    let consumer = if a.e2e {
        Some(E2eConsumer::start(&a.client, partitions, ctx.clone())?)
    } else {
        None
    };

    let size = a.record_size;
    let mut value = payload(size);
    let interval_ns = match a.rate {
        Some(r) if r > 0.0 => Some(1e9 / r),
        Some(r) => bail!("--rate {r}: must be above 0"),
        None => None,
    };
    let start = ctx.now_ns();
    let (window_start, window_end) = match a.bytes {
        Some(_) => (start, u64::MAX),
        None => {
            let ws = start + (a.warmup_seconds.max(0.0) * 1e9) as u64;
            (ws, ws + (a.seconds * 1e9) as u64)
        }
    };
    let limit_records = a.bytes.map(|b| b.div_ceil(size as u64));
    let mut lag = Histogram::new();
    let mut cpu0 = None;
    let mut sent: u64 = 0;
    let mut sent_in_window: u64 = 0;
    let mut next_intended = start as f64;
    loop {
        let now = ctx.now_ns();
        if let Some(n) = limit_records {
            if sent >= n {
                break;
            }
        } else if now >= window_end {
            break;
        }
        if cpu0.is_none() && now >= window_start {
            ctx.window_start.store(window_start, Ordering::Relaxed);
            ctx.window_end.store(window_end, Ordering::Relaxed);
            cpu0 = Some(watched.start()?);
        }
        let intended = match interval_ns {
            Some(iv) => {
                let due = next_intended as u64;
                if due > now {
                    let wait = due - now;
                    if wait > 20_000 {
                        thread::sleep(Duration::from_nanos(wait - 10_000));
                    } else {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                next_intended += iv;
                due
            }
            None => now,
        };
        if a.e2e {
            value[..8].copy_from_slice(&intended.to_be_bytes());
        }
        let partition = match a.partitioner {
            Partitioning::Sticky => PARTITION_UA,
            Partitioning::RoundRobin => (sent % partitions as u64) as i32,
        };
        let mut record =
            BaseRecord::<(), [u8], usize>::with_opaque_to(&a.client.topic, intended as usize)
                .payload(&value[..])
                .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    thread::sleep(Duration::from_micros(100));
                }
                Err((e, _)) => bail!("send: {e}"),
            }
        }
        if interval_ns.is_some() && intended >= window_start {
            lag.record(ctx.now_ns().saturating_sub(intended));
        }
        if intended >= window_start && intended < window_end {
            sent_in_window += 1;
        }
        sent += 1;
    }
    let cpu0 = match cpu0 {
        Some(c) => c,
        None => watched.start()?,
    };
    let (cpu1, window_secs) = if a.bytes.is_some() {
        producer
            .flush(Duration::from_secs(120))
            .context("flushing the last records")?;
        let m = watched.mark()?;
        let last = ctx
            .tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_ack_ns;
        (m, last.saturating_sub(window_start) as f64 / 1e9)
    } else {
        // The window ends now: what is acknowledged after it is not counted.
        let m = watched.mark()?;
        producer
            .flush(Duration::from_secs(60))
            .context("flushing the last records")?;
        (m, a.seconds)
    };
    let e2e = consumer.map(|c| c.finish(sent_in_window)).transpose()?;

    let t = ctx.tally.lock().unwrap_or_else(|e| e.into_inner());
    let counted = if a.bytes.is_some() {
        t.acked
    } else {
        t.acked_in_window
    };
    let mut r = Report::new(if a.e2e { "e2e" } else { "produce" });
    r.set("topic", a.client.topic.as_str())
        .set("partitions", partitions)
        .set("record_size", size as u64)
        .set("acks", acks.as_str())
        .set("linger_ms", a.linger_ms)
        .set("in_flight", a.in_flight)
        .set("idempotent", a.idempotent)
        .set("partitioner", format!("{:?}", a.partitioner).to_lowercase());
    if let Some(rate) = a.rate {
        r.num("rate_target", rate, 0);
        r.num("rate_sent", sent_in_window as f64 / a.seconds, 0);
        r.latency("send_lag", &lag);
    }
    r.throughput(
        counted,
        counted * size as u64,
        window_secs,
        (cpu0, cpu1),
        &watched,
    );
    r.set("errors", t.errors)
        .set("first_error", t.first_error.clone());
    r.latency("lat", &t.latency);
    if let Some((h, got, missing)) = e2e {
        r.latency("e2e", &h)
            .set("e2e_received", got)
            .set("e2e_missing", missing);
    }
    r.emit();
    if t.errors > 0 {
        bail!(
            "{} records failed, the first with: {}",
            t.errors,
            t.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// The consumer half of `--e2e`: assigned to every partition at its end before the first
/// record is sent, it reads the intended send time out of each record.
struct E2eConsumer {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Result<(Histogram, u64)>>,
}

impl E2eConsumer {
    fn start(client: &ClientArgs, partitions: i32, ctx: Arc<Ctx>) -> Result<Self> {
        let consumer: BaseConsumer = client
            .config(&[
                ("group.id", "sluice-loadgen-e2e".into()),
                ("enable.auto.commit", "false".into()),
                ("enable.partition.eof", "false".into()),
            ])
            .create()
            .context("creating the e2e consumer")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            let (_, high) = consumer
                .fetch_watermarks(&client.topic, p, Duration::from_secs(15))
                .with_context(|| format!("end offset of partition {p}"))?;
            tpl.add_partition_offset(&client.topic, p, Offset::Offset(high))?;
        }
        consumer.assign(&tpl)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = thread::spawn(move || -> Result<(Histogram, u64)> {
            let mut h = Histogram::new();
            let mut got = 0u64;
            let mut stopped_at: Option<Instant> = None;
            loop {
                if stop2.load(Ordering::Relaxed) {
                    // Stragglers get a few seconds after the producer's flush.
                    let since = *stopped_at.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(5) {
                        break;
                    }
                }
                match consumer.poll(Duration::from_millis(100)) {
                    None => {
                        if stopped_at.is_some() {
                            break;
                        }
                    }
                    Some(Err(e)) => bail!("consume: {e}"),
                    Some(Ok(m)) => {
                        let now = ctx.now_ns();
                        let Some(v) = m.payload() else { continue };
                        if v.len() < 8 {
                            continue;
                        }
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&v[..8]);
                        let intended = u64::from_be_bytes(b);
                        if ctx.in_window(intended) {
                            h.record(now.saturating_sub(intended));
                            got += 1;
                        }
                    }
                }
            }
            Ok((h, got))
        });
        Ok(Self { stop, handle })
    }

    /// Stops after the stragglers; (histogram, received, missing of `expected`).
    fn finish(self, expected: u64) -> Result<(Histogram, u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let (h, got) = self
            .handle
            .join()
            .map_err(|_| anyhow::anyhow!("e2e consumer thread panicked"))??;
        Ok((h, got, expected.saturating_sub(got)))
    }
}
