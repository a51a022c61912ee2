//! Topic creation (librdkafka's admin client) and readiness: how long after a broker process
//! was started it serves a topic, seen from a client.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::client::parse_kv;
use crate::report::Report;
use crate::wire::Conn;

#[derive(Debug, Clone, clap::Args)]
pub struct CreateTopicArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long, default_value = "bench")]
    pub topic: String,
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// A topic config, key=value (repeatable), e.g. min.insync.replicas=2.
    #[arg(long = "config", value_parser = parse_kv)]
    pub configs: Vec<(String, String)>,
}

pub fn create_topic(a: CreateTopicArgs) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("broker.address.family", "v4")
        .create()
        .context("creating the admin client")?;
    let mut topic = NewTopic::new(
        &a.topic,
        a.partitions,
        TopicReplication::Fixed(a.replication_factor),
    );
    for (k, v) in &a.configs {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let t0 = Instant::now();
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts))
        .context("CreateTopics")?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("creating {name}: {code:?}");
        }
    }
    // Creation is answered before every broker knows the topic: wait until it is served.
    let addr = resolve(&a.bootstrap)?;
    wait_served(
        addr,
        &a.topic,
        Some(a.partitions),
        t0 + Duration::from_secs(120),
    )?;
    let mut r = Report::new("create-topic");
    r.set("topic", a.topic.as_str())
        .set("partitions", a.partitions)
        .set("replication_factor", a.replication_factor);
    r.num("seconds", t0.elapsed().as_secs_f64(), 3);
    r.emit();
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct DeleteTopicArgs {
    #[arg(long)]
    pub bootstrap: String,
    #[arg(long, default_value = "bench")]
    pub topic: String,
}

/// Deletes a topic, so that a long run of benchmarks does not keep every byte it wrote.
pub fn delete_topic(a: DeleteTopicArgs) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &a.bootstrap)
        .set("broker.address.family", "v4")
        .create()
        .context("creating the admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let results = futures::executor::block_on(admin.delete_topics(&[a.topic.as_str()], &opts))
        .context("DeleteTopics")?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("deleting {name}: {code:?}");
        }
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReadyArgs {
    #[arg(long)]
    pub bootstrap: String,
    /// Topic that must be served (Metadata with a leader for every partition and ListOffsets
    /// answered for each); absent: Metadata answered.
    #[arg(long)]
    pub topic: Option<String>,
    /// Expected partition count of --topic.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Brokers that Metadata must list (a cluster whose members have all joined).
    #[arg(long, default_value_t = 1)]
    pub brokers: usize,
    /// The broker's start, ns since the Unix epoch (`date +%s%N` just before starting it);
    /// the report gives the time from then to ready.
    #[arg(long)]
    pub since_ns: Option<u128>,
    #[arg(long, default_value_t = 300.0)]
    pub timeout_seconds: f64,
}

pub fn ready(a: ReadyArgs) -> Result<()> {
    let addr = resolve(&a.bootstrap)?;
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout_seconds);
    match &a.topic {
        Some(t) => wait_served(addr, t, a.partitions, deadline)?,
        None => loop {
            if let Ok(mut c) = Conn::connect(addr, Duration::from_millis(500)) {
                let req = MetadataRequest::default().with_topics(Some(vec![]));
                if let Ok(md) = c.call::<_, MetadataResponse>(ApiKey::Metadata, 12, &req) {
                    if md.brokers.len() >= a.brokers {
                        break;
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{addr} not answering Metadata after {} s",
                    a.timeout_seconds
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        },
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let mut r = Report::new("ready");
    r.set("bootstrap", a.bootstrap.as_str());
    if let Some(since) = a.since_ns {
        r.num("ready_ms", now.saturating_sub(since) as f64 / 1e6, 1);
    }
    r.emit();
    Ok(())
}

pub fn resolve(hostport: &str) -> Result<SocketAddr> {
    hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {hostport}"))?
        .next()
        .with_context(|| format!("{hostport} resolves to nothing"))
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// Polls until `topic` has a leader for every partition and ListOffsets (latest) answers
/// without error for each, i.e. its logs are open; every 5 ms, reconnecting as needed.
pub fn wait_served(
    addr: SocketAddr,
    topic: &str,
    partitions: Option<i32>,
    deadline: Instant,
) -> Result<()> {
    let mut last = String::from("no connection yet");
    let mut conn: Option<Conn> = None;
    loop {
        if conn.is_none() {
            conn = Conn::connect(addr, Duration::from_millis(500)).ok();
        }
        if let Some(c) = conn.as_mut() {
            match check_served(c, topic, partitions) {
                Ok(None) => return Ok(()),
                Ok(Some(why)) => last = why,
                Err(e) => {
                    last = format!("{e:#}");
                    conn = None;
                }
            }
        }
        if Instant::now() > deadline {
            bail!("{topic} not served by {addr}: {last}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `None` when served, else why not.
fn check_served(c: &mut Conn, topic: &str, partitions: Option<i32>) -> Result<Option<String>> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let md: MetadataResponse = c.call(ApiKey::Metadata, 12, &req)?;
    let Some(t) = md.topics.first() else {
        return Ok(Some("no topic in Metadata".into()));
    };
    if t.error_code != 0 {
        return Ok(Some(format!("Metadata error {}", t.error_code)));
    }
    if let Some(n) = partitions {
        if t.partitions.len() != n as usize {
            return Ok(Some(format!("{} of {n} partitions", t.partitions.len())));
        }
    }
    if t.partitions.is_empty()
        || t.partitions
            .iter()
            .any(|p| p.error_code != 0 || p.leader_id.0 < 0)
    {
        return Ok(Some("a partition without a leader".into()));
    }
    // Ask each leader for its partitions' end offsets: a broker answers only for open logs.
    let mut by_leader: std::collections::BTreeMap<i32, Vec<i32>> = Default::default();
    for p in &t.partitions {
        by_leader
            .entry(p.leader_id.0)
            .or_default()
            .push(p.partition_index);
    }
    for (leader, parts) in by_leader {
        let Some(b) = md.brokers.iter().find(|b| b.node_id.0 == leader) else {
            return Ok(Some(format!("leader {leader} not among the brokers")));
        };
        let addr = resolve(&format!("{}:{}", b.host, b.port))?;
        let mut lc = Conn::connect(addr, Duration::from_millis(500))?;
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(-1)
                        })
                        .collect(),
                )]);
        let lo: ListOffsetsResponse = lc.call(ApiKey::ListOffsets, 7, &req)?;
        for t in &lo.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Ok(Some(format!(
                        "ListOffsets of partition {}: error {}",
                        p.partition_index, p.error_code
                    )));
                }
            }
        }
    }
    Ok(None)
}
