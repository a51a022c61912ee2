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
    /// Take up to this many records per call with librdkafka's batch call
    /// (`rd_kafka_consume_batch_queue`, what confluent-kafka-python's `consume(n)` uses)
    /// instead of one `poll` per record; 0: one `poll` per record. A poll per record costs a
    /// lock and clock reads per record in the client, which the batch call pays once per batch.
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
}

/// What the loop needs of one record: the payload length and where it is.
#[derive(Debug, Clone, Copy)]
struct Taken {
    partition: i32,
    offset: i64,
    len: usize,
}

/// What a read took: records and bytes of record values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    pub records: u64,
    pub bytes: u64,
}

/// Reads the backlog, prints the report, and returns what it read.
pub fn run(a: ConsumeArgs) -> Result<Consumed> {
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
    let timed_out = |records: u64, bytes: u64, ends: &HashMap<i32, i64>| {
        anyhow::anyhow!(
            "timed out after {:.0} s with {records} records, {bytes} bytes; partitions left: {:?}",
            a.timeout_seconds,
            ends.keys().collect::<Vec<_>>()
        )
    };
    let mut take = |t: Taken, ends: &mut HashMap<i32, i64>| {
        records += 1;
        bytes += t.len as u64;
        if let Some(end) = ends.get(&t.partition) {
            if t.offset + 1 >= *end {
                ends.remove(&t.partition);
            }
        }
        ends.is_empty() || bytes >= want
    };
    // The clock is read when a call comes back empty and every 4,096 records (or batch), not
    // per record: per record it was an eighth of this loop's CPU (with librdkafka's own reads
    // of it), the client's cost, not the broker's. The loop ends on the record that completes
    // the read, so the time after it is that record's time.
    if a.batch == 0 {
        let mut polls = 0u64;
        loop {
            polls += 1;
            if polls % 4096 == 0 && Instant::now() > deadline {
                return Err(timed_out(records, bytes, &ends));
            }
            match consumer.poll(Duration::from_millis(200)) {
                None if Instant::now() > deadline => return Err(timed_out(records, bytes, &ends)),
                None => continue,
                Some(Err(e)) => bail!("consume: {e}"),
                Some(Ok(m)) => {
                    let t = Taken {
                        partition: m.partition(),
                        offset: m.offset(),
                        len: m.payload_len(),
                    };
                    if take(t, &mut ends) {
                        break;
                    }
                }
            }
        }
    } else {
        let mut queue = batch::ConsumerQueue::new(&consumer);
        let mut calls = 0u64;
        loop {
            calls += 1;
            if calls % 4096 == 0 && Instant::now() > deadline {
                return Err(timed_out(records, bytes, &ends));
            }
            let mut done = false;
            let n = queue.take(a.batch, Duration::from_millis(200), |t| {
                done = done || take(t, &mut ends);
            })?;
            if done {
                break;
            }
            if n == 0 && Instant::now() > deadline {
                return Err(timed_out(records, bytes, &ends));
            }
        }
    }
    let last = Instant::now();
    let cpu1 = watched.mark()?;
    let secs = (last - t0).as_secs_f64();
    let mut r = Report::new("consume");
    r.set("topic", topic.as_str())
        .set("partitions", partitions)
        .set("batch", a.batch);
    r.throughput(records, bytes, secs, (cpu0, cpu1), &watched);
    r.emit();
    Ok(Consumed { records, bytes })
}

/// librdkafka's batch call on the consumer's queue, which `rdkafka` does not wrap.
#[allow(unsafe_code)]
mod batch {
    use std::ptr;
    use std::time::Duration;

    use anyhow::{bail, Result};
    use rdkafka::bindings as rd;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::types::RDKafkaErrorCode;

    use super::Taken;

    /// The consumer's queue, borrowed for as long as the consumer lives.
    pub(super) struct ConsumerQueue<'c> {
        queue: *mut rd::rd_kafka_queue_t,
        slots: Vec<*mut rd::rd_kafka_message_t>,
        _consumer: &'c BaseConsumer,
    }

    impl<'c> ConsumerQueue<'c> {
        pub(super) fn new(consumer: &'c BaseConsumer) -> Self {
            // SAFETY: `native_ptr` is the live handle of `consumer`, which the borrow keeps
            // alive for as long as this value; librdkafka returns a new reference to the
            // consumer's queue, released in `Drop`.
            let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
            ConsumerQueue {
                queue,
                slots: Vec::new(),
                _consumer: consumer,
            }
        }

        /// Waits up to `timeout` for records, takes at most `max` of them, hands each to `f`
        /// and frees it; the number taken.
        pub(super) fn take(
            &mut self,
            max: usize,
            timeout: Duration,
            mut f: impl FnMut(Taken),
        ) -> Result<usize> {
            if self.queue.is_null() {
                bail!("the consumer has no queue (not a high-level consumer)");
            }
            self.slots.resize(max, ptr::null_mut());
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: `slots` has room for `max` pointers; librdkafka writes at most that many
            // and returns how many it wrote (or -1).
            let n = unsafe {
                rd::rd_kafka_consume_batch_queue(self.queue, ms, self.slots.as_mut_ptr(), max)
            };
            let Ok(n) = usize::try_from(n) else {
                bail!("rd_kafka_consume_batch_queue failed");
            };
            let mut error = None;
            for &m in &self.slots[..n] {
                // SAFETY: each of the first `n` slots is a message librdkafka handed over to us;
                // it is read here and destroyed once, right after.
                unsafe {
                    let msg = &*m;
                    if msg.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                        f(Taken {
                            partition: msg.partition,
                            offset: msg.offset,
                            len: msg.len,
                        });
                    } else if error.is_none() {
                        error = Some(RDKafkaErrorCode::from(msg.err));
                    }
                    rd::rd_kafka_message_destroy(m);
                }
            }
            if let Some(e) = error {
                bail!("consume: {e}");
            }
            Ok(n)
        }
    }

    impl Drop for ConsumerQueue<'_> {
        fn drop(&mut self) {
            if !self.queue.is_null() {
                // SAFETY: the reference taken in `new`, released once.
                unsafe { rd::rd_kafka_queue_destroy(self.queue) };
            }
        }
    }
}
