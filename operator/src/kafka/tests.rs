//! The client against a scripted broker on 127.0.0.1:0 that decodes the real requests with
//! the broker side of the codec and answers like a Kafka broker would.

use super::*;
use crate::scale::TopicPartition;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    describe_quorum_response, AlterPartitionReassignmentsRequest, BrokerId, CreateTopicsRequest,
    DescribeLogDirsRequest, DescribeQuorumRequest, DescribeQuorumResponse, MetadataRequest,
    TopicName, UnregisterBrokerRequest,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsResponse, ApiKey, ApiVersionsResponse, CreateTopicsResponse,
    DescribeLogDirsResponse, ListPartitionReassignmentsResponse, MetadataResponse,
    UnregisterBrokerResponse,
};
use kafka_protocol::protocol::decode_request_header_from_buffer;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

type Seen = Arc<Mutex<Vec<CreateTopicsRequest>>>;

fn frame(key: ApiKey, version: i16, correlation_id: i32, body: BytesMut) -> Vec<u8> {
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, key.response_header_version(version))
        .expect("response header");
    out.extend_from_slice(&body);
    let mut frame = u32::try_from(out.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&out);
    frame
}

async fn scripted_broker() -> (String, Seen) {
    scripted_broker_with(false).await
}

/// `cluster`: also serve the partition-move APIs, like a broker of a cluster.
async fn scripted_broker_with(cluster: bool) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        loop {
            let mut len = [0u8; 4];
            if sock.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
            sock.read_exact(&mut buf).await.expect("frame");
            let mut buf = bytes::Bytes::from(buf);
            let header = decode_request_header_from_buffer(&mut buf).expect("header");
            let key = ApiKey::try_from(header.request_api_key).expect("key");
            let version = header.request_api_version;
            let mut body = BytesMut::new();
            match key {
                ApiKey::ApiVersions => ApiVersionsResponse::default()
                    .with_api_keys(
                        [
                            (3, 0, 13),
                            (19, 2, 7),
                            (20, 1, 6),
                            (32, 1, 4),
                            (37, 0, 3),
                            (44, 0, 1),
                            (18, 0, 4),
                        ]
                        .iter()
                        .chain(if cluster {
                            &[(45, 0, 1), (46, 0, 0), (64, 0, 0), (35, 1, 4), (55, 0, 2)][..]
                        } else {
                            &[][..]
                        })
                        .map(|(k, lo, hi)| {
                            ApiVersion::default()
                                .with_api_key(*k)
                                .with_min_version(*lo)
                                .with_max_version(*hi)
                        })
                        .collect(),
                    )
                    .encode(&mut body, version)
                    .expect("encode"),
                ApiKey::Metadata => {
                    MetadataRequest::decode(&mut buf, version).expect("metadata request");
                    MetadataResponse::default()
                        .with_topics(vec![MetadataResponseTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
                            .with_partitions(
                                (0..3)
                                    .map(|p| {
                                        // three copies each; broker 2 fell out of
                                        // partition 1's in-sync replicas
                                        let replicas = [p % 2, (p % 2 + 1) % 3, (p % 2 + 2) % 3];
                                        MetadataResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_leader_id(BrokerId(p % 2))
                                            .with_replica_nodes(
                                                replicas.iter().map(|b| BrokerId(*b)).collect(),
                                            )
                                            .with_isr_nodes(
                                                replicas
                                                    .iter()
                                                    .filter(|b| p != 1 || **b != 2)
                                                    .map(|b| BrokerId(*b))
                                                    .collect(),
                                            )
                                    })
                                    .collect(),
                            )])
                        .encode(&mut body, version)
                        .expect("encode")
                }
                ApiKey::CreateTopics => {
                    let req =
                        CreateTopicsRequest::decode(&mut buf, version).expect("create request");
                    CreateTopicsResponse::default()
                        .with_topics(
                            req.topics
                                .iter()
                                .map(|t| {
                                    let code = match t.name.0.as_str() {
                                        "exists" => ResponseError::TopicAlreadyExists.code(),
                                        "bad" => ResponseError::InvalidConfig.code(),
                                        _ => 0,
                                    };
                                    CreatableTopicResult::default()
                                        .with_name(t.name.clone())
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                        .encode(&mut body, version)
                        .expect("encode");
                    seen2.lock().expect("lock").push(req);
                }
                ApiKey::AlterPartitionReassignments => {
                    let req = AlterPartitionReassignmentsRequest::decode(&mut buf, version)
                        .expect("alter request");
                    AlterPartitionReassignmentsResponse::default()
                        .with_responses(
                            req.topics
                                .iter()
                                .map(|t| {
                                    ReassignableTopicResponse::default()
                                        .with_name(t.name.clone())
                                        .with_partitions(
                                            t.partitions
                                                .iter()
                                                .map(|p| {
                                                    // moves to broker 9 are refused
                                                    let bad = p
                                                        .replicas
                                                        .as_ref()
                                                        .is_some_and(|r| r.contains(&BrokerId(9)));
                                                    ReassignablePartitionResponse::default()
                                                        .with_partition_index(p.partition_index)
                                                        .with_error_code(if bad {
                                                            ResponseError::InvalidReplicaAssignment
                                                                .code()
                                                        } else {
                                                            0
                                                        })
                                                        .with_error_message(bad.then(|| {
                                                            StrBytes::from_static_str("no broker 9")
                                                        }))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                        .encode(&mut body, version)
                        .expect("encode")
                }
                ApiKey::ListPartitionReassignments => ListPartitionReassignmentsResponse::default()
                    .with_topics(vec![OngoingTopicReassignment::default()
                        .with_name(TopicName(StrBytes::from_static_str("orders")))
                        .with_partitions(vec![OngoingPartitionReassignment::default()
                            .with_partition_index(2)
                            .with_replicas(vec![BrokerId(2), BrokerId(0)])
                            .with_adding_replicas(vec![BrokerId(0)])
                            .with_removing_replicas(vec![BrokerId(2)])])])
                    .encode(&mut body, version)
                    .expect("encode"),
                ApiKey::DescribeQuorum => {
                    let req = DescribeQuorumRequest::decode(&mut buf, version)
                        .expect("describe quorum request");
                    let asked = &req.topics[0];
                    assert_eq!(asked.topic_name.0.as_str(), "__cluster_metadata");
                    assert_eq!(asked.partitions[0].partition_index, 0);
                    let replica = |id: i32| {
                        describe_quorum_response::ReplicaState::default()
                            .with_replica_id(BrokerId(id))
                    };
                    DescribeQuorumResponse::default()
                        .with_topics(vec![describe_quorum_response::TopicData::default()
                            .with_topic_name(asked.topic_name.clone())
                            .with_partitions(vec![
                                describe_quorum_response::PartitionData::default()
                                    .with_leader_id(BrokerId(0))
                                    .with_current_voters(vec![replica(0), replica(1), replica(3)])
                                    .with_observers(vec![replica(2)]),
                            ])])
                        .encode(&mut body, version)
                        .expect("encode")
                }
                ApiKey::UnregisterBroker => {
                    let req = UnregisterBrokerRequest::decode(&mut buf, version)
                        .expect("unregister request");
                    let refuse = req.broker_id.0 == 2;
                    UnregisterBrokerResponse::default()
                        .with_error_code(if refuse {
                            ResponseError::InvalidRequest.code()
                        } else {
                            0
                        })
                        .with_error_message(refuse.then(|| {
                            StrBytes::from_static_str("broker 2 still coordinates group billing")
                        }))
                        .encode(&mut body, version)
                        .expect("encode")
                }
                ApiKey::DescribeLogDirs => {
                    use kafka_protocol::messages::describe_log_dirs_response::{
                        DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
                    };
                    let req = DescribeLogDirsRequest::decode(&mut buf, version)
                        .expect("log dirs request");
                    assert!(req.topics.is_none(), "every partition is asked for");
                    let part = |p: i32, size: i64| {
                        DescribeLogDirsPartition::default()
                            .with_partition_index(p)
                            .with_partition_size(size)
                    };
                    let orders = |parts| {
                        DescribeLogDirsTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str("orders")))
                            .with_partitions(parts)
                    };
                    DescribeLogDirsResponse::default()
                        .with_results(vec![
                            DescribeLogDirsResult::default()
                                .with_log_dir(StrBytes::from_static_str("/data/a"))
                                .with_topics(vec![orders(vec![part(0, 1000), part(2, 50)])])
                                .with_total_bytes(10_000)
                                .with_usable_bytes(4_000),
                            // partition 2 moving between directories: its larger copy counts
                            DescribeLogDirsResult::default()
                                .with_log_dir(StrBytes::from_static_str("/data/b"))
                                .with_topics(vec![orders(vec![part(2, 300)])])
                                .with_total_bytes(5_000)
                                .with_usable_bytes(-1),
                            DescribeLogDirsResult::default()
                                .with_log_dir(StrBytes::from_static_str("/data/c"))
                                .with_error_code(ResponseError::KafkaStorageError.code()),
                        ])
                        .encode(&mut body, version)
                        .expect("encode")
                }
                other => panic!("unexpected request {other:?}"),
            }
            let out = frame(key, version, header.correlation_id, body);
            sock.write_all(&out).await.expect("write");
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn metadata_reports_partition_leaders_replicas_and_in_sync_replicas() {
    let (addr, _) = scripted_broker().await;
    let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let md = client.metadata().await.expect("metadata");
    assert_eq!(
        md.topics["orders"],
        BTreeMap::from([(0, 0), (1, 1), (2, 0)])
    );
    let led: Vec<String> = md.led_by(0).iter().map(ToString::to_string).collect();
    assert_eq!(led, ["orders-0", "orders-2"]);
    assert_eq!(md.replicas["orders"][&1], vec![1, 2, 0]);
    assert_eq!(md.isr["orders"][&1], vec![1, 0]);
    assert_eq!(md.isr["orders"][&0], vec![0, 1, 2]);
    let health = crate::replication::PartitionHealth::of(&md, &BTreeMap::new());
    let lagging: Vec<String> = health
        .under_replicated
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(lagging, ["orders-1"]);
}

#[tokio::test]
async fn create_topic_sends_partitions_and_configs_and_maps_errors() {
    let (addr, seen) = scripted_broker().await;
    let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
    client
        .create_topic("orders", 6, 1, &configs)
        .await
        .expect("created");
    client
        .create_topic("exists", 1, 1, &BTreeMap::new())
        .await
        .expect("already exists is fine");
    let err = client
        .create_topic("bad", 1, 1, &BTreeMap::new())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("topic bad"), "{err}");
    let seen = seen.lock().expect("lock");
    let req = &seen[0];
    assert_eq!(req.topics[0].num_partitions, 6);
    assert_eq!(req.topics[0].configs[0].name.as_str(), "retention.ms");
    assert_eq!(
        req.topics[0].configs[0].value.as_ref().map(|v| v.as_str()),
        Some("1000")
    );
}

#[tokio::test]
async fn a_single_node_broker_serves_no_partition_moves() {
    let (addr, _) = scripted_broker().await;
    let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
        .await
        .expect("connect");
    assert!(!client.supports(ALTER_PARTITION_REASSIGNMENTS));
    assert!(!client.supports(UNREGISTER_BROKER));
    assert!(client.supports(3));
    let err = client.unregister_broker(1).await.expect_err("not served");
    let text = err.to_string();
    assert!(text.contains("UnregisterBroker"), "{text}");
    assert!(text.contains("does not support this API"), "{text}");
}

#[tokio::test]
async fn partition_moves_and_broker_removal_map_every_outcome() {
    let (addr, _) = scripted_broker_with(true).await;
    let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
        .await
        .expect("connect");
    for key in [
        ALTER_PARTITION_REASSIGNMENTS,
        LIST_PARTITION_REASSIGNMENTS,
        UNREGISTER_BROKER,
    ] {
        assert!(client.supports(key), "{}", api_name(key));
    }
    let tp = |p| TopicPartition {
        topic: "orders".into(),
        partition: p,
    };
    let outcome = client
        .alter_partition_reassignments(&[(tp(0), vec![1]), (tp(1), vec![9])])
        .await
        .expect("answered");
    assert_eq!(outcome[0], (tp(0), Ok(())));
    let refused = outcome[1].1.clone().expect_err("refused");
    assert!(refused.contains("no broker 9"), "{refused}");

    let ongoing = client.list_partition_reassignments().await.expect("list");
    assert_eq!(ongoing.len(), 1);
    assert_eq!(ongoing[&tp(2)].target(), vec![0]);

    client.unregister_broker(1).await.expect("unregistered");
    let err = client.unregister_broker(2).await.expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("broker 2") && text.contains("still coordinates group billing"),
        "{text}"
    );
}

#[tokio::test]
async fn the_quorum_voters_are_read_from_describe_quorum_not_its_observers() {
    let (addr, _) = scripted_broker_with(true).await;
    let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
        .await
        .expect("connect");
    assert!(client.supports(DESCRIBE_QUORUM));
    assert_eq!(
        client.quorum_voters().await.expect("described"),
        vec![0, 1, 3]
    );

    let (addr, _) = scripted_broker().await;
    let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
        .await
        .expect("connect");
    assert!(!client.supports(DESCRIBE_QUORUM));
    let err = client.quorum_voters().await.expect_err("not served");
    assert!(err.to_string().contains("DescribeQuorum"), "{err}");
}

#[tokio::test]
async fn log_dirs_give_partition_sizes_and_the_volumes_free_space() {
    let (addr, _) = scripted_broker_with(true).await;
    let mut client = AdminClient::connect(&addr, Duration::from_secs(5))
        .await
        .expect("connect");
    assert!(client.supports(DESCRIBE_LOG_DIRS));
    let usage = client.describe_log_dirs().await.expect("described");
    let tp = |p| TopicPartition {
        topic: "orders".into(),
        partition: p,
    };
    assert_eq!(
        usage.partitions,
        BTreeMap::from([(tp(0), 1000), (tp(2), 300)])
    );
    assert_eq!(usage.used_bytes(), 1300);
    assert_eq!(usage.total_bytes, Some(15_000), "both healthy directories");
    assert_eq!(
        usage.usable_bytes,
        Some(4_000),
        "unknown (-1) is not summed"
    );
    assert_eq!(usage.failed.len(), 1);
    assert!(
        usage.failed[0].starts_with("/data/c: "),
        "{:?}",
        usage.failed
    );

    let (plain, _) = scripted_broker().await;
    let mut single = AdminClient::connect(&plain, Duration::from_secs(5))
        .await
        .expect("connect");
    assert!(!single.supports(DESCRIBE_LOG_DIRS));
    let err = single.describe_log_dirs().await.expect_err("not served");
    assert!(err.to_string().contains("DescribeLogDirs"), "{err}");
}

#[tokio::test]
async fn connecting_to_nothing_fails_with_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let err = AdminClient::connect(&addr, Duration::from_secs(2))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains(&addr));
}

#[tokio::test]
async fn readyz_probe_reads_the_status_line() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        for answer in [
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\n\r\n",
        ] {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            s.write_all(answer.as_bytes()).await.expect("write");
        }
    });
    assert!(probe_readyz(&addr, Duration::from_secs(2)).await);
    assert!(!probe_readyz(&addr, Duration::from_secs(2)).await);
}
