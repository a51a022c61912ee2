//! `raw-consume`: Fetch requests from offset 0, every record walked in place (see [`super`]).

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::BytesMut;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::read_frame;
use crate::admin::resolve;
use crate::procfs::Watched;
use crate::report::Report;
use crate::wire;

/// Fetch v11: topic names (not ids), no flexible fields, served by Kafka 4.x and Sluice.
const FETCH_VERSION: i16 = 11;
/// Bytes of a record batch's header (format v2) before its first record.
const BATCH_HEADER: usize = 61;

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

pub fn run(a: RawConsumeArgs) -> Result<()> {
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
    use super::super::batch;
    use super::*;

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
