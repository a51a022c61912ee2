//! A producer and a consumer on the project's Kafka codec (`kafka-protocol`) whose own cost is
//! a small fraction of the broker's, so that a throughput figure measures the broker and not
//! the client.
//!
//! librdkafka spends 1.2-1.3 CPU-seconds per GiB producing 1 KiB records on this machine's two
//! shared cores (docs/benchmarks.md): against a sink that stores nothing it reaches about
//! 1.3 GiB/s, so it cannot show a broker doing better than that. What a real producer does per
//! byte (copy the record into a batch, CRC it, encode varints) is done here once, before the
//! measured window:
//!
//! - `raw-produce` encodes `--variants` distinct batches of `--batch-bytes` (incompressible
//!   values, one record batch of format v2 each, no producer id, so the broker appends every
//!   copy it is sent), and per partition the request head (header, acks, topic, partition,
//!   records length). A request is one head and one batch written with one `writev`, the
//!   partition advancing by one per request (librdkafka's sticky partitioner sends one
//!   partition's batch per request the same way). Up to `--in-flight` requests are outstanding
//!   per connection, as `max.in.flight.requests.per.connection`; a reader thread checks every
//!   answer's correlation id and every partition's error code.
//! - `raw-consume` reads a topic from offset 0 with Fetch requests as a consumer does (one
//!   in flight per connection, Kafka's defaults of 50 MiB per fetch and 1 MiB per partition),
//!   walking every batch and every record to count records and value bytes, without copying
//!   them or checking CRCs (librdkafka's default `check.crcs=false` does not either).
//!
//! Both brokers receive the same bytes; the broker's work per record (validate the batch,
//! assign offsets, write, replicate, serve) is unchanged.

use std::io::{IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::admin::resolve;
use crate::hist::Histogram;
use crate::procfs::Watched;
use crate::report::Report;
use crate::wire;

/// Produce v8: understood by every Kafka 3.x/4.x broker and by Sluice, with plain topic names;
/// its last field is the partition's records, so a request is `head | batch`.
const PRODUCE_VERSION: i16 = 8;
/// Fetch v11: topic names (not ids), no flexible fields, served by Kafka 4.x and Sluice.
const FETCH_VERSION: i16 = 11;
/// Bytes of a record batch's header (format v2) before its first record.
const BATCH_HEADER: usize = 61;

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

#[derive(Debug, Clone, clap::Args)]
pub struct RawConsumeArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long)]
    pub topic: String,
    /// Partitions of the topic, all read from offset 0.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Stop after this many bytes of record values; absent: read to the high watermarks.
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Fetch max_bytes (Kafka's fetch.max.bytes default).
    #[arg(long, default_value_t = 52_428_800)]
    pub fetch_max_bytes: i32,
    /// Per-partition max_bytes (Kafka's max.partition.fetch.bytes default).
    #[arg(long, default_value_t = 1_048_576)]
    pub partition_max_bytes: i32,
    #[arg(long, default_value_t = 300.0)]
    pub timeout_seconds: f64,
    #[arg(long = "watch-pid")]
    pub watch: Vec<u32>,
}

/// Incompressible bytes from a seed (xorshift64).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One record batch of `records` values of `size` bytes, distinct per `seed`, timestamped now
/// (Kafka refuses timestamps far from its clock).
fn batch(records: usize, size: usize, seed: u64) -> Result<Bytes> {
    let data = Bytes::from(noise(seed, records * size));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let rs: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch wherever offset - sequence changes; one batch
            // per request is what Kafka accepts, so the sequence follows the offset (base -1).
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: None,
            value: Some(data.slice(i * size..(i + 1) * size)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &rs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

/// The request up to its records (length prefix, header, acks, timeout, topic, partition,
/// records length) for a batch of `batch_len` bytes: the encoded request minus the batch.
fn produce_head(topic: &str, partition: i32, acks: i16, batch: &Bytes) -> Result<Vec<u8>> {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.clone()))])]);
    let frame = wire::request_frame(ApiKey::Produce, PRODUCE_VERSION, 0, &req)?;
    let head = frame.len() - batch.len();
    ensure!(
        frame[head..] == batch[..],
        "Produce v{PRODUCE_VERSION} does not end with its records"
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

/// Reads one response frame into `buf` (length prefix excluded).
fn read_frame(s: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).context("reading a response")?;
    let len = i32::from_be_bytes(len);
    ensure!(
        (0..=256 << 20).contains(&len),
        "response of {len} bytes announced"
    );
    buf.resize(len as usize, 0);
    s.read_exact(&mut buf[..])
        .context("reading a response body")?;
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

pub fn produce(a: RawProduceArgs) -> Result<()> {
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
                        wire::decode_response(Bytes::copy_from_slice(&buf), PRODUCE_VERSION)?;
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

/// What walking a fetched record set found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Walked {
    records: u64,
    value_bytes: u64,
    /// The offset after the last whole batch, if there was one.
    next_offset: Option<i64>,
}

/// A zigzag varint (Kafka's record fields) at `*at`, advancing it.
fn varint(buf: &[u8], at: &mut usize) -> Result<i64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).context("record ends inside a varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    bail!("varint longer than 10 bytes")
}

/// Counts the records and value bytes of the whole batches in `set` (a fetch may end with a
/// partial batch, which is left for the next fetch).
fn walk(set: &[u8]) -> Result<Walked> {
    let mut w = Walked::default();
    let mut rest = set;
    while rest.len() >= BATCH_HEADER {
        let base = i64::from_be_bytes(rest[0..8].try_into()?);
        let len = i32::from_be_bytes(rest[8..12].try_into()?);
        ensure!(len >= 49, "batch at offset {base} of length {len}");
        let whole = 12 + len as usize;
        if whole > rest.len() {
            break;
        }
        ensure!(rest[16] == 2, "batch at offset {base}: magic {}", rest[16]);
        let attributes = i16::from_be_bytes(rest[21..23].try_into()?);
        ensure!(
            attributes & 0x7 == 0,
            "batch at offset {base} is compressed (codec {}); raw-consume reads uncompressed topics",
            attributes & 0x7
        );
        let last_delta = i32::from_be_bytes(rest[23..27].try_into()?);
        let count = i32::from_be_bytes(rest[57..61].try_into()?);
        let control = attributes & 0x20 != 0;
        let body = &rest[BATCH_HEADER..whole];
        let mut at = 0;
        for _ in 0..count.max(0) {
            let rec_len = varint(body, &mut at)?;
            let end = at + usize::try_from(rec_len).context("negative record length")?;
            ensure!(end <= body.len(), "record overruns batch at offset {base}");
            let mut f = at + 1; // attributes
            varint(body, &mut f)?; // timestamp delta
            varint(body, &mut f)?; // offset delta
            let key = varint(body, &mut f)?;
            f += key.max(0) as usize;
            let value = varint(body, &mut f)?;
            if !control {
                w.records += 1;
                w.value_bytes += value.max(0) as u64;
            }
            at = end;
        }
        w.next_offset = Some(base + i64::from(last_delta) + 1);
        rest = &rest[whole..];
    }
    Ok(w)
}

pub fn consume(a: RawConsumeArgs) -> Result<()> {
    ensure!(a.partitions >= 1, "--partitions must be at least 1");
    let addr = resolve(&a.bootstrap)?;
    let watched = Watched::new(&a.watch);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let want = a.bytes.unwrap_or(u64::MAX);
    let mut offsets = vec![0i64; a.partitions as usize];
    let mut done = vec![false; a.partitions as usize];
    let (mut records, mut bytes, mut fetches) = (0u64, 0u64, 0u64);
    let mut buf = BytesMut::new();
    let cpu0 = watched.start()?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(a.timeout_seconds);
    while bytes < want && done.iter().any(|d| !d) {
        if Instant::now() > deadline {
            bail!(
                "timed out after {:.0} s with {records} records, {bytes} bytes",
                a.timeout_seconds
            );
        }
        let parts: Vec<FetchPartition> = (0..a.partitions)
            .filter(|p| !done[*p as usize])
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(offsets[p as usize])
                    .with_partition_max_bytes(a.partition_max_bytes)
            })
            .collect();
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(a.fetch_max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(a.topic.clone())))
                .with_partitions(parts)]);
        fetches += 1;
        let id = fetches as i32 & i32::MAX;
        s.write_all(&wire::request_frame(
            ApiKey::Fetch,
            FETCH_VERSION,
            id,
            &req,
        )?)?;
        read_frame(&mut s, &mut buf)?;
        // The record sets are slices of the answer as read (no copy); once they are dropped
        // the buffer is the only reference again and is read into next time.
        let frame = std::mem::take(&mut buf).freeze();
        let (got, resp): (i32, FetchResponse) =
            wire::decode_response(frame.clone(), FETCH_VERSION)?;
        ensure!(got == id, "answer to fetch {got} where {id} was sent");
        ensure!(
            resp.error_code == 0,
            "fetch refused: error code {}",
            resp.error_code
        );
        for t in &resp.responses {
            for p in &t.partitions {
                let i = usize::try_from(p.partition_index)
                    .ok()
                    .filter(|i| *i < offsets.len())
                    .with_context(|| format!("answer for partition {}", p.partition_index))?;
                ensure!(
                    p.error_code == 0,
                    "partition {i} at offset {}: error code {}",
                    offsets[i],
                    p.error_code
                );
                let w = walk(p.records.as_deref().unwrap_or(&[]))?;
                records += w.records;
                bytes += w.value_bytes;
                if let Some(next) = w.next_offset {
                    offsets[i] = offsets[i].max(next);
                }
                if offsets[i] >= p.high_watermark {
                    done[i] = true;
                }
            }
        }
        drop(resp);
        buf = frame.try_into_mut().unwrap_or_default();
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = watched.mark()?;
    let mut r = Report::new("raw-consume");
    r.set("topic", a.topic.as_str())
        .set("partitions", a.partitions)
        .set("fetches", fetches);
    r.throughput(records, bytes, secs, (cpu0, cpu1), &watched);
    r.emit();
    ensure!(records > 0, "{} is empty", a.topic);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn variants_differ_and_hold_the_records_asked_for() {
        let a = batch(100, 1024, 1).expect("batch");
        let b = batch(100, 1024, 2).expect("batch");
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
        assert_eq!(wire::record_count(&a), 100);
        let len = i32::from_be_bytes([a[8], a[9], a[10], a[11]]) as usize;
        assert_eq!(len + 12, a.len(), "one batch covers the blob");
        let decoded = RecordBatchDecoder::decode(&mut a.clone()).expect("decodes, CRC checked");
        let values: Vec<_> = decoded
            .records
            .iter()
            .map(|r| r.value.clone().expect("value"))
            .collect();
        assert_eq!(values.len(), 100);
        assert_ne!(values[0], values[1], "records are not copies of each other");
    }

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
        assert_eq!((p.api_key, p.api_version), (0, PRODUCE_VERSION));
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
        produce(RawProduceArgs {
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
        let e = produce(bad).expect_err("acks=0 refused").to_string();
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

    #[test]
    fn varints_decode_zigzag() {
        for (bytes, want) in [
            (&[0x00][..], 0i64),
            (&[0x01], -1),
            (&[0x02], 1),
            (&[0x80, 0x10], 1024),
            (&[0xff, 0x0f], -1024),
        ] {
            let mut at = 0;
            assert_eq!(varint(bytes, &mut at).expect("varint"), want);
            assert_eq!(at, bytes.len());
        }
        assert!(varint(&[0x80], &mut 0).is_err());
    }

    #[test]
    fn walking_counts_whole_batches_and_leaves_a_partial_one() {
        let a = batch(7, 100, 1).expect("batch");
        let b = batch(3, 100, 2).expect("batch");
        let mut set = a.to_vec();
        set.extend_from_slice(&b);
        // the second batch as a broker would store it: base offset 7
        set[a.len()..a.len() + 8].copy_from_slice(&7i64.to_be_bytes());
        let w = walk(&set).expect("walk");
        assert_eq!(
            w,
            Walked {
                records: 10,
                value_bytes: 1000,
                next_offset: Some(10)
            }
        );
        let cut = walk(&set[..set.len() - 1]).expect("walk");
        assert_eq!((cut.records, cut.next_offset), (7, Some(7)));
        assert_eq!(walk(&[]).expect("walk"), Walked::default());
    }

    #[test]
    fn compressed_or_broken_batches_are_named() {
        let mut a = batch(2, 10, 1).expect("batch").to_vec();
        a[22] |= 1; // gzip
        let e = walk(&a).expect_err("compressed").to_string();
        assert!(e.contains("compressed"), "{e}");
        let mut bad = batch(2, 10, 1).expect("batch").to_vec();
        bad[16] = 1;
        assert!(walk(&bad).expect_err("magic").to_string().contains("magic"));
    }
}
