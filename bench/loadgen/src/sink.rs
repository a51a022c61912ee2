//! A Kafka-speaking no-op sink: it answers ApiVersions, Metadata (every topic asked for exists,
//! with `--partitions` partitions led by the sink itself), InitProducerId and Produce, and
//! stores nothing. A producer pointed at it runs at its own ceiling, which tells whether a
//! figure against a real broker is bounded by the broker or by the client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::wire;

#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Address to listen on; port 0 picks one (printed as `listening HOST:PORT` on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Partitions every topic has.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Worker threads of the sink's runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// API versions the sink serves. Produce stops at v12 so that clients send topic names (v13
/// sends topic ids).
const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::InitProducerId, 0, 5),
];

struct Sink {
    advertised: SocketAddr,
    partitions: i32,
    next_producer_id: AtomicI64,
    /// Next offset of every (topic, partition), so producers see offsets move as they would.
    offsets: std::sync::Mutex<HashMap<(Bytes, i32), i64>>,
}

pub fn run(args: SinkArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: SinkArgs) -> Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let advertised = listener.local_addr()?;
    println!("listening {advertised}");
    let sink = Arc::new(Sink {
        advertised,
        partitions: args.partitions.max(1),
        next_producer_id: AtomicI64::new(1000),
        offsets: Default::default(),
    });
    loop {
        let (stream, peer) = listener.accept().await?;
        let sink = sink.clone();
        tokio::spawn(async move {
            if let Err(e) = sink.connection(stream).await {
                eprintln!("[sink] {peer}: {e:#}");
            }
        });
    }
}

impl Sink {
    async fn connection(&self, mut stream: TcpStream) -> Result<()> {
        stream.set_nodelay(true)?;
        let mut buf = BytesMut::with_capacity(1 << 20);
        loop {
            while let Some(frame) = wire::take_frame(&mut buf, 256 << 20)? {
                if let Some(reply) = self.handle(frame)? {
                    stream.write_all(&reply).await?;
                }
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
    }

    fn handle(&self, frame: Bytes) -> Result<Option<Bytes>> {
        let p = wire::peek(&frame)?;
        let key = ApiKey::try_from(p.api_key)
            .map_err(|()| anyhow::anyhow!("unknown api key {}", p.api_key))?;
        let served = APIS
            .iter()
            .find(|(k, _, _)| *k == key)
            .filter(|(_, lo, hi)| (*lo..=*hi).contains(&p.api_version));
        if key == ApiKey::ApiVersions {
            // An unknown version is answered at v0 with error 35 and the list, as brokers do.
            let (v, code) = if served.is_some() {
                (p.api_version, 0)
            } else {
                (0, 35)
            };
            let body = api_versions().with_error_code(code);
            return Ok(Some(wire::response_frame(p.correlation_id, 0, v, &body)?));
        }
        if served.is_none() {
            anyhow::bail!("{key:?} v{} is not served by the sink", p.api_version);
        }
        let v = p.api_version;
        let reply = match key {
            ApiKey::Metadata => {
                let req: MetadataRequest = wire::decode_request(key, p, frame)?;
                respond(p, &self.metadata(&req))?
            }
            ApiKey::InitProducerId => {
                let _req: InitProducerIdRequest = wire::decode_request(key, p, frame)?;
                let id = self.next_producer_id.fetch_add(1, Ordering::Relaxed);
                let body = InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0);
                respond(p, &body)?
            }
            ApiKey::Produce => {
                let req: ProduceRequest = wire::decode_request(key, p, frame)?;
                if req.acks == 0 {
                    return Ok(None);
                }
                respond(p, &self.produce(&req))?
            }
            _ => anyhow::bail!("{key:?} v{v} is not served by the sink"),
        };
        Ok(Some(reply))
    }

    fn metadata(&self, req: &MetadataRequest) -> MetadataResponse {
        let broker = MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_string(self.advertised.ip().to_string()))
            .with_port(i32::from(self.advertised.port()));
        let topics = req
            .topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.clone())
            .map(|name| {
                let partitions = (0..self.partitions)
                    .map(|i| {
                        MetadataResponsePartition::default()
                            .with_partition_index(i)
                            .with_leader_id(BrokerId(0))
                            .with_replica_nodes(vec![BrokerId(0)])
                            .with_isr_nodes(vec![BrokerId(0)])
                    })
                    .collect();
                let id = uuid::Uuid::from_u128(fnv(name.0.as_bytes()));
                MetadataResponseTopic::default()
                    .with_name(Some(name))
                    .with_topic_id(id)
                    .with_partitions(partitions)
                    .with_topic_authorized_operations(i32::MIN)
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_cluster_id(Some(StrBytes::from_static_str("sluice-loadgen-sink")))
            .with_controller_id(BrokerId(0))
            .with_topics(topics)
            .with_cluster_authorized_operations(i32::MIN)
    }

    fn produce(&self, req: &ProduceRequest) -> ProduceResponse {
        let mut offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        let responses = req
            .topic_data
            .iter()
            .map(|t| {
                let name = t.name.0.clone().into_bytes();
                let partitions = t
                    .partition_data
                    .iter()
                    .map(|p| {
                        let n = p.records.as_deref().map(wire::record_count).unwrap_or(0);
                        let next = offsets.entry((name.clone(), p.index)).or_insert(0);
                        let base = *next;
                        *next += n;
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_base_offset(base)
                            .with_log_append_time_ms(-1)
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(partitions)
            })
            .collect();
        ProduceResponse::default().with_responses(responses)
    }
}

fn respond<R: kafka_protocol::protocol::Encodable + HeaderVersion>(
    p: wire::Peeked,
    body: &R,
) -> Result<Bytes> {
    wire::response_frame(
        p.correlation_id,
        R::header_version(p.api_version),
        p.api_version,
        body,
    )
}

fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        APIS.iter()
            .map(|(k, lo, hi)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*lo)
                    .with_max_version(*hi)
            })
            .collect(),
    )
}

/// A stable 128-bit id from a topic name (FNV-1a), so a topic keeps its id across requests.
fn fnv(bytes: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in bytes {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    fn sink() -> Sink {
        Sink {
            advertised: "127.0.0.1:9999".parse().expect("addr"),
            partitions: 3,
            next_producer_id: AtomicI64::new(1),
            offsets: Default::default(),
        }
    }

    #[test]
    fn every_topic_asked_for_exists_and_is_led_by_the_sink() {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))]));
        let m = sink().metadata(&req);
        assert_eq!(m.brokers[0].port, 9999);
        assert_eq!(m.topics.len(), 1);
        assert_eq!(m.topics[0].partitions.len(), 3);
        assert!(m.topics[0]
            .partitions
            .iter()
            .all(|p| p.leader_id == BrokerId(0)));
    }

    #[test]
    fn produce_offsets_advance_by_the_records_received() {
        let s = sink();
        let frame = {
            let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(2)
                        .with_records(Some(Bytes::from_static(&[0u8; 4])))]),
            ]);
            wire::request_frame(ApiKey::Produce, 9, 5, &req).expect("frame")
        };
        let reply = s
            .handle(frame.slice(4..))
            .expect("handled")
            .expect("acks=1 answers");
        let (id, resp): (i32, ProduceResponse) =
            wire::decode_response(reply.slice(4..), 9).expect("decode");
        assert_eq!(id, 5);
        assert_eq!(resp.responses[0].partition_responses[0].index, 2);
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }

    #[test]
    fn acks_zero_gets_no_answer_and_unknown_versions_get_error_35() {
        let s = sink();
        let req = ProduceRequest::default().with_acks(0);
        let frame = wire::request_frame(ApiKey::Produce, 9, 1, &req).expect("frame");
        assert!(s.handle(frame.slice(4..)).expect("handled").is_none());
        let req = ApiVersionsRequest::default();
        let frame = wire::request_frame(ApiKey::ApiVersions, 4, 2, &req).expect("frame");
        // v4 is served; pretend a v9 by patching the version bytes.
        let mut raw = frame.slice(4..).to_vec();
        raw[2..4].copy_from_slice(&9i16.to_be_bytes());
        let reply = s
            .handle(Bytes::from(raw))
            .expect("handled")
            .expect("answer");
        let (_, resp): (i32, ApiVersionsResponse) =
            wire::decode_response(reply.slice(4..), 0).expect("decode");
        assert_eq!(resp.error_code, 35);
    }
}
