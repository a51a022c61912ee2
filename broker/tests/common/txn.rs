//! What the transaction tests share (`transactions.rs`, and the other clients' files that
//! write transactions): the values of the drivers' transactions and reading them back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::rd_consumer;

/// Every value librdkafka reads from the start of `topic` with `isolation.level`, by count.
pub fn rd_read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> BTreeMap<String, usize> {
    let c = rd_consumer(bootstrap, &[("isolation.level", isolation)]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("add partition");
    }
    c.assign(&tpl).expect("assign");
    let mut values = Vec::new();
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(3) {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("librdkafka read");
            values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            idle = Instant::now();
        }
    }
    counted(values.iter().map(String::as_str))
}

pub fn counted<'a>(values: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in values {
        *m.entry(v.to_string()).or_insert(0) += 1;
    }
    m
}

/// The values of transactions `txns` of `per` records each, once each.
pub fn values_of(txns: impl IntoIterator<Item = usize>, per: usize) -> BTreeMap<String, usize> {
    txns.into_iter()
        .flat_map(|i| (0..per).map(move |j| (format!("t{i}-{j}"), 1)))
        .collect()
}

/// The options of every transactions driver's produce command (Java's `produce`, librdkafka's
/// and kafka-python's `produce`, kafkajs's and franz-go's `txn`): `txns` transactions of `per`
/// records over `partitions` partitions, every `abort_every`-th aborted (0: none).
pub fn txn_options(
    topic: &str,
    id: &str,
    txns: usize,
    per: usize,
    abort_every: usize,
    partitions: i32,
) -> Vec<String> {
    [
        ("--topic", topic.to_string()),
        ("--id", id.to_string()),
        ("--txns", txns.to_string()),
        ("--per", per.to_string()),
        ("--abort-every", abort_every.to_string()),
        ("--partitions", partitions.to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect()
}

/// The transactions a driver run with `abort_every` committed (`i % abort_every != abort_every - 1`).
pub fn committed_txns(txns: usize, abort_every: usize) -> Vec<usize> {
    (0..txns)
        .filter(|i| abort_every == 0 || i % abort_every != abort_every - 1)
        .collect()
}

/// Checks a driver's produce output (`out`: one "#committed <i>" per committed transaction)
/// and what librdkafka reads of `topic` back: read_committed exactly the committed
/// transactions' records, read_uncommitted every record once.
pub fn assert_txns_read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    out: &str,
    (txns, per, abort_every): (usize, usize, usize),
) {
    let committed = committed_txns(txns, abort_every);
    assert_eq!(out.matches("#committed").count(), committed.len(), "{out}");
    assert_eq!(
        rd_read(bootstrap, topic, partitions, "read_committed"),
        values_of(committed, per)
    );
    assert_eq!(
        rd_read(bootstrap, topic, partitions, "read_uncommitted"),
        values_of(0..txns, per)
    );
}
