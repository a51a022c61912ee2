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
//!
//! [`produce`] and [`consume`] are the two clients; this module holds what both use.

use std::io::Read;
use std::net::TcpStream;

use anyhow::{ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub mod consume;
pub mod produce;

/// Incompressible bytes from a seed (xorshift64).
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
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
pub(crate) fn batch(records: usize, size: usize, seed: u64) -> Result<Bytes> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;
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
}
