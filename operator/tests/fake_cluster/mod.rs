//! A scripted Kafka-wire "cluster" of brokers for the operator's scale-down drain, served by one
//! TCP listener: it answers ApiVersions, Metadata, AlterPartitionReassignments,
//! ListPartitionReassignments, DescribeCluster and UnregisterBroker from a shared state, the way
//! Apache Kafka does: a requested move (a full replica list) shows up in
//! ListPartitionReassignments for `list_rounds` answers, with the old and new replicas and which
//! are added and removed, then the partition has its new replicas; UnregisterBroker is refused
//! while the broker holds a copy of a partition and `refusals` more times after that (standing
//! for group coordinators that still move), then the broker is gone from Metadata. Every
//! partition's first replica leads, and its replicas are in sync except those `lagging` names.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey,
    ApiVersionsResponse, BrokerId, DescribeClusterResponse, ListPartitionReassignmentsResponse,
    MetadataResponse, ResponseHeader, TopicName, UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The cluster's state, shared with the test for assertions.
#[derive(Debug, Default)]
pub struct State {
    /// Registered brokers.
    pub brokers: Vec<i32>,
    /// (topic, partition) → replicas, the leader first.
    pub replicas: BTreeMap<(String, i32), Vec<i32>>,
    /// Partitions whose last replica is not in sync.
    pub lagging: Vec<(String, i32)>,
    /// Moves in flight: (topic, partition) → (new replicas, List answers left before it is done).
    pub moving: BTreeMap<(String, i32), (Vec<i32>, u32)>,
    /// List answers a move stays in flight.
    pub list_rounds: u32,
    /// UnregisterBroker refusals left after the broker is empty.
    pub refusals: u32,
    /// Every request seen, by API name (for assertions).
    pub seen: Vec<&'static str>,
    /// API keys left out of the ApiVersions answer (a broker that does not serve them).
    pub unserved: Vec<i16>,
}

pub type Shared = Arc<Mutex<State>>;

/// Serves the cluster on `addr` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    state: Shared,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(connection(sock, state.clone()));
        }
    }))
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn connection(mut sock: TcpStream, state: Shared) {
    loop {
        let mut len = [0u8; 4];
        if sock.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        if sock.read_exact(&mut buf).await.is_err() {
            return;
        }
        let mut buf = Bytes::from(buf);
        let Ok(header) = decode_request_header_from_buffer(&mut buf) else {
            return;
        };
        let Ok(key) = ApiKey::try_from(header.request_api_key) else {
            return;
        };
        let version = header.request_api_version;
        let mut body = BytesMut::new();
        let encoded = {
            let Ok(mut st) = state.lock() else { return };
            answer(&mut st, key, version, &mut buf, &mut body)
        };
        if encoded.is_err() {
            return;
        }
        let mut out = BytesMut::new();
        if ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut out, key.response_header_version(version))
            .is_err()
        {
            return;
        }
        out.extend_from_slice(&body);
        let mut frame = (out.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&out);
        if sock.write_all(&frame).await.is_err() {
            return;
        }
    }
}

fn answer(
    st: &mut State,
    key: ApiKey,
    version: i16,
    buf: &mut Bytes,
    body: &mut BytesMut,
) -> anyhow::Result<()> {
    match key {
        ApiKey::ApiVersions => {
            st.seen.push("ApiVersions");
            ApiVersionsResponse::default()
                .with_api_keys(
                    [
                        (18, 0, 3),
                        (3, 0, 12),
                        (45, 0, 1),
                        (46, 0, 0),
                        (60, 0, 2),
                        (64, 0, 0),
                    ]
                    .iter()
                    .filter(|(k, _, _)| !st.unserved.contains(k))
                    .map(|(k, lo, hi)| {
                        ApiVersion::default()
                            .with_api_key(*k)
                            .with_min_version(*lo)
                            .with_max_version(*hi)
                    })
                    .collect(),
                )
                .encode(body, version)?;
        }
        ApiKey::Metadata => {
            st.seen.push("Metadata");
            let mut topics: BTreeMap<String, Vec<MetadataResponsePartition>> = BTreeMap::new();
            for ((topic, partition), replicas) in &st.replicas {
                let ids = |r: &[i32]| r.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
                let lagging = st.lagging.contains(&(topic.clone(), *partition));
                let isr = &replicas[..replicas.len() - usize::from(lagging)];
                topics.entry(topic.clone()).or_default().push(
                    MetadataResponsePartition::default()
                        .with_partition_index(*partition)
                        .with_leader_id(BrokerId(replicas.first().copied().unwrap_or(-1)))
                        .with_replica_nodes(ids(replicas))
                        .with_isr_nodes(ids(isr)),
                );
            }
            MetadataResponse::default()
                .with_brokers(
                    st.brokers
                        .iter()
                        .map(|b| {
                            MetadataResponseBroker::default()
                                .with_node_id(BrokerId(*b))
                                .with_host(StrBytes::from_string(format!("broker-{b}")))
                                .with_port(9092)
                        })
                        .collect(),
                )
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            MetadataResponseTopic::default()
                                .with_name(Some(topic_name(&name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
                .encode(body, version)?;
        }
        ApiKey::AlterPartitionReassignments => {
            st.seen.push("AlterPartitionReassignments");
            let req = AlterPartitionReassignmentsRequest::decode(buf, version)?;
            let rounds = st.list_rounds;
            let mut responses = Vec::new();
            for t in &req.topics {
                let mut partitions = Vec::new();
                for p in &t.partitions {
                    let target: Vec<i32> = p
                        .replicas
                        .as_ref()
                        .map(|r| r.iter().map(|b| b.0).collect())
                        .unwrap_or_default();
                    let known = !target.is_empty() && target.iter().all(|b| st.brokers.contains(b));
                    let code = if known {
                        st.moving
                            .insert((t.name.0.to_string(), p.partition_index), (target, rounds));
                        0
                    } else {
                        ResponseError::InvalidReplicaAssignment.code()
                    };
                    partitions.push(
                        ReassignablePartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code),
                    );
                }
                responses.push(
                    ReassignableTopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions),
                );
            }
            AlterPartitionReassignmentsResponse::default()
                .with_responses(responses)
                .encode(body, version)?;
        }
        ApiKey::ListPartitionReassignments => {
            st.seen.push("ListPartitionReassignments");
            let mut done = Vec::new();
            let mut ongoing: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
            for (tp, (target, left)) in st.moving.iter_mut() {
                if *left == 0 {
                    done.push((tp.clone(), target.clone()));
                    continue;
                }
                *left -= 1;
                let from = st.replicas.get(tp).cloned().unwrap_or_default();
                let ids = |r: &mut dyn Iterator<Item = &i32>| r.map(|b| BrokerId(*b)).collect();
                ongoing.entry(tp.0.clone()).or_default().push(
                    OngoingPartitionReassignment::default()
                        .with_partition_index(tp.1)
                        // Kafka's order: the new replicas, then the old ones leaving
                        .with_replicas(ids(&mut target
                            .iter()
                            .chain(from.iter().filter(|b| !target.contains(b)))))
                        .with_adding_replicas(ids(&mut target.iter().filter(|b| !from.contains(b))))
                        .with_removing_replicas(ids(&mut from
                            .iter()
                            .filter(|b| !target.contains(b)))),
                );
            }
            for (tp, target) in done {
                st.moving.remove(&tp);
                st.replicas.insert(tp, target);
            }
            ListPartitionReassignmentsResponse::default()
                .with_topics(
                    ongoing
                        .into_iter()
                        .map(|(name, partitions)| {
                            OngoingTopicReassignment::default()
                                .with_name(topic_name(&name))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
                .encode(body, version)?;
        }
        ApiKey::DescribeCluster => {
            st.seen.push("DescribeCluster");
            DescribeClusterResponse::default()
                .with_endpoint_type(1)
                .with_brokers(
                    st.brokers
                        .iter()
                        .map(|b| {
                            DescribeClusterBroker::default()
                                .with_broker_id(BrokerId(*b))
                                .with_host(StrBytes::from_string(format!("broker-{b}")))
                                .with_port(9092)
                        })
                        .collect(),
                )
                .encode(body, version)?;
        }
        ApiKey::UnregisterBroker => {
            st.seen.push("UnregisterBroker");
            let req = UnregisterBrokerRequest::decode(buf, version)?;
            let id = req.broker_id.0;
            let owns = st.replicas.values().filter(|r| r.contains(&id)).count();
            let refusal = if owns > 0 {
                Some(format!("broker {id} still owns {owns} partitions"))
            } else if st.refusals > 0 {
                st.refusals -= 1;
                Some(format!("broker {id} still coordinates group billing"))
            } else {
                st.brokers.retain(|b| *b != id);
                None
            };
            UnregisterBrokerResponse::default()
                .with_error_code(if refusal.is_some() {
                    ResponseError::InvalidRequest.code()
                } else {
                    0
                })
                .with_error_message(refusal.map(StrBytes::from_string))
                .encode(body, version)?;
        }
        other => anyhow::bail!("the fake cluster does not serve {other:?}"),
    }
    Ok(())
}
