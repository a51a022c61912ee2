//! librdkafka helpers the scenarios share: the cluster's metadata as one broker reports it,
//! numbered records produced to a partition, reading them back from the start, and a topic's
//! config as a broker describes it.
//!
//! Each test binary includes this module (`mod kafka;`) and uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, FromClientConfig};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

/// How long one record may take to be acknowledged, or to arrive when read back.
const RECORD_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster as the broker at `bootstrap` describes it (a metadata request, 10 s at most).
/// Blocking: from async code, call it through `spawn_blocking`.
pub fn metadata(bootstrap: &str) -> Result<Metadata, String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("client for {bootstrap}: {e}"))?;
    c.fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| format!("metadata from {bootstrap}: {e}"))
}

/// The payloads `<prefix>-0` … `<prefix>-<n-1>`.
pub fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Produces `payloads` in order to `partition` of `topic` with acks=all, each acknowledged
/// before the next is sent.
pub async fn produce(bootstrap: &str, topic: &str, partition: i32, payloads: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", RECORD_TIMEOUT.as_millis().to_string())
        .create()
        .expect("producer");
    for payload in payloads {
        producer
            .send(
                FutureRecord::to(topic)
                    .payload(payload)
                    .key("k")
                    .partition(partition),
                RECORD_TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| {
                panic!("produce {payload} to {topic}-{partition} at {bootstrap}: {e}")
            });
    }
}

/// A consumer assigned to partitions `0..partitions` of `topic` from their start; it joins no
/// group and commits nothing.
pub fn reader<C>(bootstrap: &str, topic: &str, partitions: i32) -> C
where
    C: FromClientConfig + Consumer,
{
    let consumer: C = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "sluice-e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&tpl).expect("assign");
    consumer
}

/// The first `n` payloads of partition 0 of `topic`, read from its start; `what` names the
/// check in the failure message.
pub async fn read_partition0(bootstrap: &str, topic: &str, n: usize, what: &str) -> Vec<String> {
    let consumer: StreamConsumer = reader(bootstrap, topic, 1);
    let mut got = Vec::new();
    while got.len() < n {
        let m = tokio::time::timeout(RECORD_TIMEOUT, consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: record {} of {n} of {topic} not readable at {bootstrap}; read {got:?}",
                    got.len()
                )
            })
            .unwrap_or_else(|e| panic!("{what}: consuming {topic} at {bootstrap}: {e}"));
        got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
    }
    got
}

/// An admin client of the broker at `bootstrap`.
pub fn admin(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("admin client for {bootstrap}: {e}"))
}

/// The value of one topic config as the broker's DescribeConfigs reports it.
pub async fn topic_config(
    bootstrap: &str,
    topic: &str,
    key: &str,
) -> Result<Option<String>, String> {
    let a = admin(bootstrap)?;
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let res = a
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await
        .map_err(|e| format!("DescribeConfigs {topic} at {bootstrap}: {e}"))?;
    let first = res
        .into_iter()
        .next()
        .ok_or_else(|| format!("DescribeConfigs {topic} at {bootstrap}: no result"))?;
    let resource =
        first.map_err(|e| format!("DescribeConfigs {topic} at {bootstrap}: error {e:?}"))?;
    Ok(resource.get(key).and_then(|e| e.value.clone()))
}

/// Commits `offset` of `topic`-`partition` for consumer group `group` (synchronously, without
/// joining the group: a group that only stores offsets, as `kafka-consumer-groups.sh
/// --reset-offsets` leaves one). Blocking: from async code, call it through `spawn_blocking`.
pub fn commit(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| format!("consumer for {bootstrap}: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(|e| format!("offset: {e}"))?;
    c.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .map_err(|e| format!("commit {topic}-{partition} at {offset} for {group}: {e}"))
}
