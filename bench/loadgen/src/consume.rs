//! Reading a backlog with librdkafka: every partition from its first offset, until `--bytes`
//! of payload or every partition's end (as it was at the start) is reached.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{partition_count, ClientArgs};
use crate::procfs::Watched;
use crate::report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Stop after this many bytes of record values; absent: read to the end.
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Give up after this long.
    #[arg(long, default_value_t = 300.0)]
    pub timeout_seconds: f64,
}

pub fn run(a: ConsumeArgs) -> Result<()> {
    let watched = Watched::new(&a.client.watch);
    let consumer: BaseConsumer = a
        .client
        .config(&[
            ("group.id", "sluice-loadgen-consume".into()),
            ("enable.auto.commit", "false".into()),
            ("enable.partition.eof", "false".into()),
        ])
        .create()
        .context("creating the consumer")?;
    let topic = &a.client.topic;
    let partitions = partition_count(consumer.client(), topic)?;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(15))
            .with_context(|| format!("offsets of partition {p}"))?;
        if high > low {
            ends.insert(p, high);
        }
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    if ends.is_empty() {
        bail!("{topic} is empty");
    }
    let want = a.bytes.unwrap_or(u64::MAX);
    let cpu0 = watched.start()?;
    let t0 = Instant::now();
    consumer.assign(&tpl)?;
    let deadline = t0 + Duration::from_secs_f64(a.timeout_seconds);
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last = t0;
    while !ends.is_empty() && bytes < want {
        if Instant::now() > deadline {
            bail!(
                "timed out after {:.0} s with {records} records, {bytes} bytes; partitions left: {:?}",
                a.timeout_seconds,
                ends.keys().collect::<Vec<_>>()
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(e)) => bail!("consume: {e}"),
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len() as u64;
                last = Instant::now();
                if let Some(end) = ends.get(&m.partition()) {
                    if m.offset() + 1 >= *end {
                        ends.remove(&m.partition());
                    }
                }
            }
        }
    }
    let cpu1 = watched.mark()?;
    let secs = (last - t0).as_secs_f64();
    let mut r = Report::new("consume");
    r.set("topic", topic.as_str()).set("partitions", partitions);
    r.throughput(records, bytes, secs, (cpu0, cpu1), &watched);
    r.emit();
    Ok(())
}
