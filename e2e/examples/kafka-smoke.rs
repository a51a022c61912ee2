//! Sends one message to a Kafka bootstrap address and reads it back (used by `demo.sh`).
//!
//!   cargo run -p sluice-e2e --example kafka-smoke -- <host:port> [topic]

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: kafka-smoke <host:port> [topic]"))?;
    let topic = args.next().unwrap_or_else(|| "events".to_string());
    let text = format!("hello from sluice at {:?}", std::time::SystemTime::now());
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "20000")
        .create()?;
    let rdkafka::producer::future_producer::Delivery {
        partition, offset, ..
    } = producer
        .send(
            FutureRecord::to(&topic).payload(&text).key("demo"),
            Duration::from_secs(20),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("produce to {bootstrap} topic {topic}: {e}"))?;
    println!("produced  {text:?} -> {topic}[{partition}]@{offset}");

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "sluice-demo")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
    consumer.assign(&tpl)?;
    let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .map_err(|_| anyhow::anyhow!("no message read back from {bootstrap} in 20s"))??;
    let got = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
    println!(
        "consumed  {got:?} <- {topic}[{}]@{}",
        m.partition(),
        m.offset()
    );
    anyhow::ensure!(got == text, "read back {got:?}, expected {text:?}");
    Ok(())
}
