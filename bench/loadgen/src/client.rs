//! What every librdkafka-based mode shares: the bootstrap address, the topic, pass-through
//! librdkafka properties, and the processes to watch.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::ClientConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Broker (or sink) address, host:port.
    #[arg(long)]
    pub bootstrap: String,
    /// Topic to write to or read from.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// A librdkafka property, key=value, applied after the mode's own settings (repeatable).
    #[arg(short = 'X', value_parser = parse_kv)]
    pub props: Vec<(String, String)>,
    /// A process whose CPU time and RSS are reported with the run (the broker; repeatable,
    /// summed: three brokers of a cluster).
    #[arg(long = "watch-pid")]
    pub watch: Vec<u32>,
}

pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{s}' is not key=value"))
}

impl ClientArgs {
    /// The base librdkafka configuration; `own` are the mode's settings, which `-X` overrides.
    pub fn config(&self, own: &[(&str, String)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("broker.address.family", "v4")
            .set("client.id", "sluice-loadgen");
        for (k, v) in own {
            c.set(*k, v);
        }
        for (k, v) in &self.props {
            c.set(k, v);
        }
        c
    }
}

/// The partition count of `topic`, from a metadata request.
pub fn partition_count<C: ClientContext>(client: &Client<C>, topic: &str) -> Result<i32> {
    let md = client
        .fetch_metadata(Some(topic), Duration::from_secs(15))
        .with_context(|| format!("metadata of {topic}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("{topic} not in metadata"))?;
    if let Some(e) = t.error() {
        bail!("metadata of {topic}: {e:?}");
    }
    if t.partitions().is_empty() {
        bail!("{topic} has no partitions");
    }
    Ok(t.partitions().len() as i32)
}
