//! Protocol-level tests of the broker over raw TCP, using `kafka-protocol`'s client-side
//! encoding: framing, ApiVersions, malformed input, Produce/Fetch round trips, long poll,
//! pipelining, shutdown, and the binary's start-up / signal behaviour.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use common::{encode_records, record_at};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};
use sluice_broker::config::Config;
use sluice_broker::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

async fn start(dir: &std::path::Path) -> Broker {
    let config = Config::parse_from(common::broker_args(dir, &[]));
    Broker::start(config).await.expect("broker starts")
}

/// A broker on a fresh data directory (which lives as long as the returned guard) and a
/// connection to it.
async fn broker_and_conn() -> (tempfile::TempDir, Broker, Conn) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let c = Conn::connect(broker.kafka_addr()).await;
    (dir, broker, c)
}

struct Conn {
    s: TcpStream,
    next: i32,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).await.expect("connect");
        Conn { s, next: 1 }
    }

    fn frame<R: Encodable>(&mut self, key: ApiKey, version: i16, req: &R) -> (i32, Bytes) {
        let corr = self.next;
        self.next += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(StrBytes::from_static_str("protocol-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, key.request_header_version(version))
            .expect("encode header");
        req.encode(&mut body, version).expect("encode body");
        let mut out = BytesMut::new();
        out.put_i32(body.len() as i32);
        out.put_slice(&body);
        (corr, out.freeze())
    }

    async fn send<R: Encodable>(&mut self, key: ApiKey, version: i16, req: &R) -> i32 {
        let (corr, bytes) = self.frame(key, version, req);
        self.s.write_all(&bytes).await.expect("write");
        corr
    }

    async fn recv_frame(&mut self) -> Bytes {
        tokio::time::timeout(IO_TIMEOUT, async {
            let len = self.s.read_i32().await.expect("response length");
            let mut buf = vec![0u8; len as usize];
            self.s.read_exact(&mut buf).await.expect("response body");
            Bytes::from(buf)
        })
        .await
        .expect("response within the timeout")
    }

    async fn recv<S: Decodable>(&mut self, key: ApiKey, version: i16) -> (i32, S) {
        let mut frame = self.recv_frame().await;
        let hv = key.response_header_version(version);
        let header = ResponseHeader::decode(&mut frame, hv).expect("response header");
        let body = S::decode(&mut frame, version).expect("response body");
        (header.correlation_id, body)
    }

    async fn call<R: Encodable, S: Decodable>(&mut self, key: ApiKey, version: i16, req: &R) -> S {
        let corr = self.send(key, version, req).await;
        let (got, body) = self.recv(key, version).await;
        assert_eq!(got, corr, "correlation id");
        body
    }

    async fn api_versions(&mut self) -> ApiVersionsResponse {
        self.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await
    }

    /// Produce v9 of one batch of `values` to `topic`-`partition`: that partition's answer.
    async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        acks: i16,
        values: &[&str],
    ) -> PartitionProduceResponse {
        let r: ProduceResponse = self
            .call(
                ApiKey::Produce,
                9,
                &produce_req(topic, partition, acks, batch(values)),
            )
            .await;
        r.responses[0].partition_responses[0].clone()
    }

    /// Fetch v12 of `topic`-`partition` from `offset`: that partition's answer.
    async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> PartitionData {
        let r: FetchResponse = self
            .call(
                ApiKey::Fetch,
                12,
                &fetch_req(topic, partition, offset, max_wait_ms),
            )
            .await;
        r.responses[0].partitions[0].clone()
    }

    /// The id of topic `name`, per Metadata v12.
    async fn topic_id(&mut self, name: &str) -> uuid::Uuid {
        let meta: MetadataResponse = self
            .call(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default(
                )
                .with_name(Some(tn(name)))])),
            )
            .await;
        meta.topics[0].topic_id
    }

    /// Metadata v12 of every topic.
    async fn all_topics(&mut self) -> MetadataResponse {
        self.call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await
    }

    /// Waits until the broker closes the connection (read returns EOF or reset).
    async fn expect_closed(&mut self) {
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(IO_TIMEOUT, self.s.read(&mut buf))
            .await
            .expect("connection closed within the timeout");
        match r {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("expected the connection to close, got {n} bytes"),
        }
    }
}

fn batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            // offset - sequence constant keeps all records in one batch
            sequence: i as i32,
            key: Some(Bytes::from(format!("k{i}"))),
            ..record_at(i as i64, 1_700_000_000_000 + i as i64, v.as_bytes())
        })
        .collect();
    encode_records(&records, Compression::None)
}

fn lists_topic(m: &MetadataResponse, name: &str) -> bool {
    m.topics
        .iter()
        .any(|t| t.name.as_ref().map(|n| n.as_str()) == Some(name))
}

/// The (offset, value) of every record a Fetch answered for one partition.
fn values_in(p: &PartitionData) -> Vec<(i64, String)> {
    values_of(p.records.clone().expect("records"))
}

fn values_of(mut records: Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    while !records.is_empty() {
        let set = RecordBatchDecoder::decode(&mut records).expect("decode batch");
        for r in set.records {
            let v = r
                .value
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            out.push((r.offset, v));
        }
    }
    out
}

fn tn(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn create_topic(c: &mut Conn, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(tn(name))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)])
        .with_timeout_ms(5000);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

fn produce_req(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(tn(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// A consumer's ListOffsets of `topic` at (partition, timestamp) pairs (-1 latest, -2
/// earliest, -3 max timestamp).
fn list_offsets_req(topic: &str, at: &[(i32, i64)]) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(tn(topic))
            .with_partitions(
                at.iter()
                    .map(|(partition, ts)| {
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(*partition)
                            .with_timestamp(*ts)
                    })
                    .collect(),
            )])
}

fn fetch_req(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(tn(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_advertises_produce_from_zero_and_answers_unknown_versions_in_v0() {
    let (_dir, broker, mut c) = broker_and_conn().await;

    let resp: ApiVersionsResponse = c
        .call(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("t"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        )
        .await;
    assert_eq!(resp.error_code, 0);
    let produce = resp
        .api_keys
        .iter()
        .find(|a| a.api_key == 0)
        .expect("Produce listed");
    assert_eq!((produce.min_version, produce.max_version), (0, 13));
    let fetch = resp
        .api_keys
        .iter()
        .find(|a| a.api_key == 1)
        .expect("Fetch listed");
    assert_eq!(fetch.min_version, 4);
    assert!(
        resp.api_keys.iter().all(|a| a.api_key != 63),
        "BrokerHeartbeat is between brokers (the cluster listener here), so not advertised"
    );

    // A version from the future: v0 body with error 35 and the list, header v0.
    let mut frame = BytesMut::new();
    frame.put_i32(0); // patched below
    frame.put_i16(18);
    frame.put_i16(99);
    frame.put_i32(77);
    frame.put_i16(-1); // null client id
    frame.put_u8(0); // empty tagged fields
    let len = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&len.to_be_bytes());
    c.s.write_all(&frame).await.expect("write");
    let mut resp = c.recv_frame().await;
    let header = ResponseHeader::decode(&mut resp, 0).expect("header v0");
    assert_eq!(header.correlation_id, 77);
    let body = ApiVersionsResponse::decode(&mut resp, 0).expect("v0 body");
    assert_eq!(body.error_code, 35);
    assert!(body
        .api_keys
        .iter()
        .any(|a| a.api_key == 18 && a.max_version == 4));

    // The connection is still usable.
    let again: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await;
    assert_eq!(again.error_code, 0);
    broker.shutdown().await.expect("shutdown");
}

/// Sends `bytes` on a new connection, which the broker must close, while `healthy` still gets
/// its answers.
async fn closes_only_its_connection(
    addr: SocketAddr,
    healthy: &mut Conn,
    bytes: &[u8],
    what: &str,
) {
    let mut bad = Conn::connect(addr).await;
    bad.s.write_all(bytes).await.expect("write");
    bad.expect_closed().await;
    let ok = healthy.api_versions().await;
    assert_eq!(ok.error_code, 0, "after {what}");
}

/// Each malformed input closes its own connection; a connection opened before keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_cost_only_their_connection() {
    let (_dir, broker, mut healthy) = broker_and_conn().await;

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("huge length", (i32::MAX).to_be_bytes().to_vec()),
        ("truncated header", {
            let mut v = 3i32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0, 3, 0]);
            v
        }),
        ("unknown api key", {
            let mut v = 10i32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
            v
        }),
    ];
    // Garbage body: a Metadata v12 header followed by bytes that are not a request
    // (a compact string length pointing past the end of the frame).
    let mut garbage = Conn::connect(broker.kafka_addr()).await;
    let (_, mut frame) = garbage.frame(ApiKey::Metadata, 12, &MetadataRequest::default());
    let mut bytes = frame.split_to(frame.len() - 3).to_vec();
    bytes.extend_from_slice(&[0x02, 0xff, 0xff, 0x7f, 0x00]);
    let len = (bytes.len() - 4) as i32;
    bytes[0..4].copy_from_slice(&len.to_be_bytes());
    cases.push(("garbage body", bytes));
    drop(garbage);

    for (what, bytes) in cases {
        closes_only_its_connection(broker.kafka_addr(), &mut healthy, &bytes, what).await;
    }
    broker.shutdown().await.expect("shutdown");
}

/// APIs the broker does not serve get their API's error response when it has a top-level error
/// code, and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_apis_get_an_error_response_not_a_dropped_connection() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    let sasl: SaslHandshakeResponse = c
        .call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        )
        .await;
    assert_eq!(sasl.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let telemetry: GetTelemetrySubscriptionsResponse = c
        .call(
            ApiKey::GetTelemetrySubscriptions,
            0,
            &GetTelemetrySubscriptionsRequest::default(),
        )
        .await;
    assert_eq!(telemetry.error_code, 35, "UNSUPPORTED_VERSION");
    // Served (with no quota ever set): answered, not refused.
    let quotas: DescribeClientQuotasResponse = c
        .call(
            ApiKey::DescribeClientQuotas,
            1,
            &DescribeClientQuotasRequest::default(),
        )
        .await;
    assert_eq!((quotas.error_code, quotas.entries), (0, Some(vec![])));
    let ok = c.api_versions().await;
    assert_eq!(ok.error_code, 0);
    broker.shutdown().await.expect("shutdown");
}

/// A topic asking for two in-sync replicas cannot take acks=all on a single broker; acks=1 works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_refused_when_min_insync_replicas_exceeds_one() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(tn("isr2"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("min.insync.replicas"))
            .with_value(Some(StrBytes::from_static_str("2")))])]);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    let all = c.produce("isr2", 0, -1, &["x"]).await;
    assert_eq!(all.error_code, 19);
    let one = c.produce("isr2", 0, 1, &["x"]).await;
    assert_eq!(one.error_code, 0);
    assert_eq!(one.base_offset, 0, "the refused batch was not appended");
    broker.shutdown().await.expect("shutdown");
}

/// Produce v13 and Fetch v13+ address topics by id (Kafka 4.x Java clients use them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_fetch_by_topic_id() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "by-id", 1).await;
    let id = c.topic_id("by-id").await;

    let mut req = produce_req("", 0, -1, batch(&["one", "two"]));
    req.topic_data[0].topic_id = id;
    let r: ProduceResponse = c.call(ApiKey::Produce, 13, &req).await;
    assert_eq!(r.responses[0].topic_id, id);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);

    let mut f = fetch_req("", 0, 0, 0);
    f.topics[0].topic_id = id;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 16, &f).await;
    assert_eq!(resp.responses[0].topic_id, id);
    let vals = values_in(&resp.responses[0].partitions[0]);
    assert_eq!(vals, vec![(0, "one".to_string()), (1, "two".to_string())]);

    let mut unknown = fetch_req("", 0, 0, 0);
    unknown.topics[0].topic_id = uuid::Uuid::from_u128(42);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 16, &unknown).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );
    broker.shutdown().await.expect("shutdown");
}

/// A tiny request claiming billions of array elements must be a decode error for that
/// connection, not an allocation abort of the whole broker.
///
/// `kafka-protocol` 0.18 (used as is) pre-allocates arrays from the peer-supplied count, so a
/// 13-byte Metadata request claiming 2^31-1 topics would abort the process on a ~150 GB
/// allocation; `protocol::guard` walks every body before the crate decodes it and refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_array_counts_cost_only_their_connection() {
    let (_dir, broker, mut healthy) = broker_and_conn().await;
    // Metadata v0 (classic array, i32 count) and v12 (compact array, varint count + 1).
    let classic: Vec<u8> = [
        &[0u8, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff][..],
        &0x7fff_ffffi32.to_be_bytes(),
    ]
    .concat();
    let compact: Vec<u8> = [
        &[0u8, 3, 0, 12, 0, 0, 0, 2, 0xff, 0xff, 0][..],
        &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
    ]
    .concat();
    for body in [classic, compact] {
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        closes_only_its_connection(broker.kafka_addr(), &mut healthy, &frame, "a huge count").await;
    }
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v2_is_refused_with_unsupported_version() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "old", 1).await;

    // A v2 request is a v3 request without the transactional id.
    let req = produce_req("old", 0, 1, batch(&["x"]));
    let mut v3 = BytesMut::new();
    req.encode(&mut v3, 3).expect("encode");
    let body = v3.split_off(2); // drop the null transactional id (i16 -1)
    let header = RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(2)
        .with_correlation_id(5);
    let mut frame = BytesMut::new();
    header.encode(&mut frame, 1).expect("header");
    frame.put_slice(&body);
    let mut out = BytesMut::new();
    out.put_i32(frame.len() as i32);
    out.put_slice(&frame);
    c.s.write_all(&out).await.expect("write");
    let (corr, resp): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 3).await;
    assert_eq!(corr, 5);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 35);

    // Nothing was appended.
    let f = c.fetch("old", 0, 0, 0).await;
    assert_eq!(f.high_watermark, 0);
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_fetch_returns_the_same_records_at_assigned_offsets() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "orders", 2).await;

    for (acks, vals) in [(-1i16, vec!["a", "b", "c"]), (1, vec!["d"])] {
        let p = c.produce("orders", 1, acks, &vals).await;
        assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    }
    let resp = c.produce("orders", 1, -1, &["e"]).await;
    assert_eq!(resp.base_offset, 4);

    let p = c.fetch("orders", 1, 0, 0).await;
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 5);
    let got = values_in(&p);
    let want: Vec<(i64, String)> = ["a", "b", "c", "d", "e"]
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v.to_string()))
        .collect();
    assert_eq!(got, want);

    // Fetch from the middle of the first batch returns that whole batch first.
    let got = values_in(&c.fetch("orders", 1, 1, 0).await);
    assert_eq!(got.first().map(|g| g.0), Some(0));

    // Out of range: error 1 with the log start offset.
    let p = c.fetch("orders", 1, 99, 0).await;
    assert_eq!(p.error_code, 1);
    assert_eq!(p.log_start_offset, 0);

    // Unknown topic on produce.
    let resp = c.produce("nope", 0, 1, &["x"]).await;
    assert_eq!(resp.error_code, 3);

    // acks=0 to an unknown topic: no response can carry the error, so the connection closes.
    let mut fire_and_forget = Conn::connect(broker.kafka_addr()).await;
    let _ = fire_and_forget
        .send(
            ApiKey::Produce,
            9,
            &produce_req("nope", 0, 0, batch(&["x"])),
        )
        .await;
    fire_and_forget.expect_closed().await;

    // acks=0 gets no response: the next request's answer is the next frame.
    let _ = c
        .send(
            ApiKey::Produce,
            9,
            &produce_req("orders", 0, 0, batch(&["z"])),
        )
        .await;
    let v = c.api_versions().await;
    assert_eq!(v.error_code, 0);

    // ListOffsets earliest / latest.
    let lo = list_offsets_req("orders", &[(1, -2), (1, -1)]);
    // Every version from Kafka 4's floor (1) answers, including the v1-v3 responses that have
    // no leader epoch (librdkafka 2.0 asks with v2).
    for version in 1..=7 {
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, version, &lo).await;
        let offs: Vec<i64> = r.topics[0].partitions.iter().map(|p| p.offset).collect();
        assert_eq!(offs, vec![0, 5], "ListOffsets v{version}");
    }
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_auto_creates_topics_with_ids_and_advertises_this_node() {
    let (dir, broker, mut c) = broker_and_conn().await;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(tn("auto")))
        ]))
        .with_allow_auto_topic_creation(true);
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].port, i32::from(broker.kafka_addr().port()));
    assert_eq!(m.controller_id, m.brokers[0].node_id);
    let t = &m.topics[0];
    assert_eq!(t.error_code, 0);
    assert!(!t.topic_id.is_nil());
    assert_eq!(t.partitions.len(), 1);
    let cluster = m.cluster_id.clone();

    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(tn("not-created")))
        ]))
        .with_allow_auto_topic_creation(false);
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
    assert_eq!(m.topics[0].error_code, 3);
    broker.shutdown().await.expect("shutdown");

    // The cluster id survives a restart.
    let broker = start(dir.path()).await;
    let mut c = Conn::connect(broker.kafka_addr()).await;
    let m = c.all_topics().await;
    assert_eq!(m.cluster_id, cluster);
    assert!(lists_topic(&m, "auto"));
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_wakes_when_data_arrives_and_times_out_without() {
    let (_dir, broker, mut admin) = broker_and_conn().await;
    create_topic(&mut admin, "lp", 1).await;

    // No data: answered empty after about max_wait.
    let t0 = Instant::now();
    let f = admin.fetch("lp", 0, 0, 300).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(280),
        "answered after {waited:?}"
    );
    assert_eq!(f.records.as_ref().map(|r| r.len()), Some(0));

    // Data arriving during the wait wakes the fetch long before its 20 s max wait.
    let mut consumer = Conn::connect(broker.kafka_addr()).await;
    let corr = consumer
        .send(ApiKey::Fetch, 12, &fetch_req("lp", 0, 0, 20_000))
        .await;
    let t0 = Instant::now();
    let r = admin.produce("lp", 0, -1, &["wake"]).await;
    assert_eq!(r.error_code, 0);
    let (got, f): (i32, FetchResponse) = consumer.recv(ApiKey::Fetch, 12).await;
    assert_eq!(got, corr);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "woke after {:?}",
        t0.elapsed()
    );
    let vals = values_in(&f.responses[0].partitions[0]);
    assert_eq!(vals, vec![(0, "wake".to_string())]);
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "pipe", 1).await;
    let mut burst = BytesMut::new();
    let mut expected = Vec::new();
    for i in 0..20 {
        let (corr, frame) = if i % 2 == 0 {
            let v = format!("v{i}");
            c.frame(
                ApiKey::Produce,
                9,
                &produce_req("pipe", 0, -1, batch(&[v.as_str()])),
            )
        } else {
            c.frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        };
        expected.push(corr);
        burst.put_slice(&frame);
    }
    c.s.write_all(&burst).await.expect("write burst");
    let mut offsets = Vec::new();
    for (i, want) in expected.iter().enumerate() {
        if i % 2 == 0 {
            let (corr, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
            assert_eq!(corr, *want);
            offsets.push(r.responses[0].partition_responses[0].base_offset);
        } else {
            let (corr, _): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 3).await;
            assert_eq!(corr, *want);
        }
    }
    assert_eq!(
        offsets,
        (0..10).collect::<Vec<i64>>(),
        "appends happen in request order"
    );
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_in_flight_long_polls_and_stops_accepting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start(dir.path()).await;
    let addr = broker.kafka_addr();
    let mut c = Conn::connect(addr).await;
    create_topic(&mut c, "drain", 1).await;
    let corr = c
        .send(ApiKey::Fetch, 12, &fetch_req("drain", 0, 0, 30_000))
        .await;
    // Make sure the fetch is being served before shutting down: a request behind it on the
    // same connection is only answered after it, so use a second connection as a barrier.
    let mut other = Conn::connect(addr).await;
    let _ = other.api_versions().await;

    let t0 = Instant::now();
    let stopping = tokio::spawn(broker.shutdown());
    let (got, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    assert_eq!(got, corr);
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    stopping.await.expect("join").expect("clean shutdown");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        t0.elapsed()
    );
    c.expect_closed().await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_string(&mut out))
        .await
        .expect("http response in time")
        .expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reports_health_readiness_and_metrics() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "m", 1).await;
    let _ = c.produce("m", 0, -1, &["x"]).await;
    let _ = c.produce("missing", 0, -1, &["x"]).await;

    assert_eq!(http_get(broker.http_addr(), "/healthz").await.0, 200);
    assert_eq!(http_get(broker.http_addr(), "/readyz").await.0, 200);
    let (status, body) = http_get(broker.http_addr(), "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "sluice_requests_total{api=\"Produce\"} 2",
        "sluice_request_errors_total{api=\"Produce\",error_code=\"3\"} 1",
        "sluice_produce_latency_seconds_count",
        "sluice_log_size_bytes{topic=\"m\",partition=\"0\"}",
        "sluice_connections 1",
        "sluice_log_fsyncs_total",
        "sluice_log_fsync_seconds_total",
    ] {
        assert!(body.contains(needle), "missing {needle} in\n{body}");
    }
    let fsyncs: f64 = body
        .lines()
        .find_map(|l| l.strip_prefix("sluice_log_fsyncs_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("fsync counter");
    assert!(
        fsyncs >= 1.0,
        "an acks=all produce under fsync=always fsyncs"
    );
    broker.shutdown().await.expect("shutdown");
}

/// The binary: one "listening" line, exit 0 on SIGTERM, exit 2 naming a bad setting.
#[test]
fn binary_refuses_bad_settings_and_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let exe = env!("CARGO_BIN_EXE_sluice-broker");
    let dir = tempfile::tempdir().expect("tempdir");

    let out = Command::new(exe)
        .env("SLUICE_RETENTION_MSS", "5")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLUICE_RETENTION_MSS"));

    let out = Command::new(exe)
        .args(["--segment-bytes", "5", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--segment-bytes"));

    let mut child = Command::new(exe)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).expect("read log") == 0 {
            break;
        }
        if line.contains("listening") {
            break;
        }
    }
    assert!(
        line.contains("INFO sluice_broker: listening kafka=127.0.0.1:")
            && line.contains("advertise=127.0.0.1:"),
        "{line}"
    );
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// Admin APIs at the wire level: bad config values and replication factors are refused per
/// resource with the Kafka error code and a message naming the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_refuse_bad_input_per_resource() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "cfg", 1).await;
    let alter = |value: &'static str, validate_only: bool| {
        AlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("cfg"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str(value)))])])
    };
    let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, 2, &alter("soon", false)).await;
    assert_eq!(r.responses[0].error_code, 40);
    let msg = r.responses[0]
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("retention.ms") && msg.contains("soon"),
        "{msg}"
    );
    let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, 2, &alter("5000", false)).await;
    assert_eq!(r.responses[0].error_code, 0);

    let describe = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("cfg"))
            .with_configuration_keys(None),
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("0"))
            .with_configuration_keys(None),
    ]);
    let d: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &describe).await;
    let topic = &d.results[0];
    assert_eq!(topic.error_code, 0);
    let retention = topic
        .configs
        .iter()
        .find(|e| e.name.as_str() == "retention.ms")
        .expect("retention.ms");
    assert_eq!(retention.value.as_ref().map(|v| v.as_str()), Some("5000"));
    assert_eq!(retention.config_source, 1, "topic override");
    let segment = topic
        .configs
        .iter()
        .find(|e| e.name.as_str() == "segment.bytes")
        .expect("segment.bytes default");
    assert_eq!(segment.config_source, 5, "default");
    assert_eq!(d.results[1].error_code, 0);
    assert!(!d.results[1].configs.is_empty(), "broker configs");

    let create = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(tn("rf3"))
            .with_num_partitions(1)
            .with_replication_factor(3),
        CreatableTopic::default()
            .with_name(tn("cfg"))
            .with_num_partitions(1)
            .with_replication_factor(1),
        CreatableTopic::default()
            .with_name(tn("bad/name"))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &create).await;
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![38, 36, 17]);

    // DeleteTopics by id (v6).
    let id = c.topic_id("cfg").await;
    let del = DeleteTopicsRequest::default().with_topics(vec![
        delete_topics_request::DeleteTopicState::default().with_topic_id(id),
    ]);
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 6, &del).await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        r.responses[0].name.as_ref().map(|n| n.as_str()),
        Some("cfg")
    );
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 6, &del).await;
    assert_eq!(r.responses[0].error_code, 100, "unknown topic id");
    broker.shutdown().await.expect("shutdown");
}

/// InitProducerId hands out fresh ids that survive restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_producer_id_never_reuses_ids_across_restarts() {
    let (dir, broker, mut c) = broker_and_conn().await;
    let req = InitProducerIdRequest::default()
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let a: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req).await;
    let b: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req).await;
    assert_eq!((a.error_code, b.error_code), (0, 0));
    assert_ne!(a.producer_id, b.producer_id);
    let bump: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &req.clone()
                .with_producer_id(a.producer_id)
                .with_producer_epoch(0),
        )
        .await;
    assert_eq!((bump.producer_id, bump.producer_epoch), (a.producer_id, 1));
    broker.shutdown().await.expect("shutdown");

    let broker = start(dir.path()).await;
    let mut c = Conn::connect(broker.kafka_addr()).await;
    let after: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &req).await;
    assert!(
        after.producer_id.0 > b.producer_id.0,
        "{:?} reused after restart",
        after.producer_id
    );

    // FindCoordinator: batched (v4+) and single-key (v3) forms point at this node.
    let f: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![
                StrBytes::from_static_str("g1"),
                StrBytes::from_static_str("g2"),
            ]),
        )
        .await;
    assert_eq!(f.coordinators.len(), 2);
    assert!(f
        .coordinators
        .iter()
        .all(|k| k.error_code == 0 && k.port == i32::from(broker.kafka_addr().port())));
    let f: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g1")),
        )
        .await;
    assert_eq!((f.error_code, f.node_id.0), (0, 0));
    broker.shutdown().await.expect("shutdown");
}

/// A producer's batch whose header claims a larger max timestamp than its records carry (its
/// CRC computed over that claim, as a client would send it) is accepted; ListOffsets
/// MAX_TIMESTAMP then answers with that batch (the header taken at its word) instead of
/// searching the segment again and again, forever (found by the `partition_dir` fuzz target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_timestamp_answers_when_a_header_claims_more_than_its_records() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "lying", 1).await;
    let resp = c.produce("lying", 0, -1, &["a"]).await;
    assert_eq!(resp.error_code, 0);
    let claimed = 1_700_000_009_999i64;
    let mut b = batch(&["b", "c"]).to_vec();
    b[35..43].copy_from_slice(&claimed.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req("lying", 0, -1, bytes::Bytes::from(b)),
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let lo = list_offsets_req("lying", &[(0, -3)]);
    let r: ListOffsetsResponse = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        c.call(ApiKey::ListOffsets, 7, &lo),
    )
    .await
    .expect("ListOffsets MAX_TIMESTAMP answers");
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.timestamp), (0, 1, claimed));
    broker.shutdown().await.expect("shutdown");
}

/// ListOffsets MAX_TIMESTAMP (-3) finds the first record carrying the largest timestamp, and
/// OffsetForLeaderEpoch (advertised) answers the end offset of the current epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_timestamp_and_leader_epoch_end_offsets() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "epochs", 1).await;
    // Offsets 0..=2 with timestamps base+0..=2, then offset 3 with base+0 and 4..=5 with
    // base+0..=1: the maximum (base+2) is carried first by offset 2.
    for vals in [vec!["a", "b", "c"], vec!["d"], vec!["e", "f"]] {
        let resp = c.produce("epochs", 0, -1, &vals).await;
        assert_eq!(resp.error_code, 0);
    }
    let lo = list_offsets_req("epochs", &[(0, -3)]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &lo).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(
        (p.error_code, p.offset, p.timestamp),
        (0, 2, 1_700_000_000_002)
    );
    // Earliest-local (-4) is the log start; latest-tiered (-5, KIP-1005) has no offset when
    // nothing is in remote storage, as Kafka answers (`kafka-get-offsets.sh --time -5`).
    let lo = list_offsets_req("epochs", &[(0, -4)]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 9, &lo).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset), (0, 0));
    let lo = list_offsets_req("epochs", &[(0, -5)]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 9, &lo).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.timestamp), (0, -1, -1));

    let versions = c.api_versions().await;
    let range = versions
        .api_keys
        .iter()
        .find(|a| a.api_key == ApiKey::OffsetForLeaderEpoch as i16)
        .map(|a| (a.min_version, a.max_version));
    assert_eq!(range, Some((2, 4)), "OffsetForLeaderEpoch advertised");

    let part = |p: i32, current: i32, epoch: i32| {
        OffsetForLeaderPartition::default()
            .with_partition(p)
            .with_current_leader_epoch(current)
            .with_leader_epoch(epoch)
    };
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(tn("epochs"))
                .with_partitions(vec![
                    part(0, 0, 0),
                    part(0, -1, 0),
                    part(0, 0, 5),
                    part(0, 1, 0),
                    part(7, 0, 0),
                ]),
            OffsetForLeaderTopic::default()
                .with_topic(tn("no-such-topic"))
                .with_partitions(vec![part(0, -1, 0)]),
        ]);
    for v in 2..=4 {
        let r: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, v, &req).await;
        let got: Vec<(i16, i32, i64)> = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0, 6),
                (0, 0, 6),
                (0, -1, -1),
                (76, -1, -1), // UNKNOWN_LEADER_EPOCH
                (3, -1, -1),
                (3, -1, -1),
            ],
            "v{v}"
        );
    }
    broker.shutdown().await.expect("shutdown");
}

/// Unserved APIs whose errors are per item get each item answered, and the connection stays
/// usable afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_per_item_apis_answer_each_item_and_keep_the_connection() {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "items", 2).await;

    let ca = CreateAclsRequest::default().with_creations(vec![AclCreation::default(); 3]);
    let r: CreateAclsResponse = c.call(ApiKey::CreateAcls, 3, &ca).await;
    assert_eq!(
        r.results.iter().map(|x| x.error_code).collect::<Vec<_>>(),
        vec![54; 3],
        "SECURITY_DISABLED"
    );
    let da = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default(); 2]);
    let r: DeleteAclsResponse = c.call(ApiKey::DeleteAcls, 3, &da).await;
    assert_eq!(
        r.filter_results
            .iter()
            .map(|x| x.error_code)
            .collect::<Vec<_>>(),
        vec![54; 2]
    );
    let r: DescribeAclsResponse = c
        .call(ApiKey::DescribeAcls, 3, &DescribeAclsRequest::default())
        .await;
    assert_eq!(r.error_code, 54);

    let r: CreateDelegationTokenResponse = c
        .call(
            ApiKey::CreateDelegationToken,
            3,
            &CreateDelegationTokenRequest::default(),
        )
        .await;
    assert_eq!(r.error_code, 64, "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED");

    // None of them is advertised but the ACL requests (Kafka without an authorizer advertises
    // them too), and the connection still serves requests.
    let v = c.api_versions().await;
    assert_eq!(v.error_code, 0);
    for key in [ApiKey::CreateAcls, ApiKey::DeleteAcls, ApiKey::DescribeAcls] {
        assert!(
            v.api_keys.iter().any(|a| a.api_key == key as i16),
            "{key:?} not advertised"
        );
    }
    for key in [ApiKey::AlterReplicaLogDirs, ApiKey::CreateDelegationToken] {
        assert!(
            v.api_keys.iter().all(|a| a.api_key != key as i16),
            "{key:?} advertised"
        );
    }
    assert!(lists_topic(&c.all_topics().await, "items"));
    broker.shutdown().await.expect("shutdown");
}

/// The APIs Kafka's tools use to look at a cluster: DescribeLogDirs (sizes of what this broker
/// stores), DescribeProducers (idempotent producer state), ElectLeaders (one copy per partition:
/// never needed while the owner serves) and DescribeQuorum (the metadata quorum of one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_apis_describe_log_dirs_producers_elections_and_the_quorum() {
    let (dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "ops", 2).await;
    let init: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transaction_timeout_ms(-1)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await;
    assert_eq!(init.error_code, 0);
    // An idempotent batch of three records (sequences 0..=2) to partition 1.
    let mut records = BytesMut::from(&batch(&["a", "b", "c"])[..]);
    records[43..51].copy_from_slice(&init.producer_id.0.to_be_bytes()); // producerId
    records[51..53].copy_from_slice(&init.producer_epoch.to_be_bytes()); // producerEpoch
    records[53..57].copy_from_slice(&0i32.to_be_bytes()); // baseSequence
    let crc = crc32c::crc32c(&records[21..]);
    records[17..21].copy_from_slice(&crc.to_be_bytes());
    let p: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce_req("ops", 1, -1, records.freeze()),
        )
        .await;
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);

    // DescribeLogDirs: the data directory, both partitions, partition 1 larger, the volume size.
    let d: DescribeLogDirsResponse = c
        .call(
            ApiKey::DescribeLogDirs,
            4,
            &DescribeLogDirsRequest::default().with_topics(None),
        )
        .await;
    assert_eq!(d.error_code, 0);
    assert_eq!(d.results.len(), 1);
    let r = &d.results[0];
    assert_eq!(r.log_dir.as_str(), dir.path().display().to_string());
    assert!(r.total_bytes > 0 && r.usable_bytes > 0 && r.usable_bytes <= r.total_bytes);
    let t = r
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == "ops")
        .expect("ops described");
    let sizes: Vec<(i32, i64)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.partition_size))
        .collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert!(sizes[1].1 > sizes[0].1, "{sizes:?}");
    // Asking for one partition describes only that one.
    let one: DescribeLogDirsResponse = c
        .call(
            ApiKey::DescribeLogDirs,
            4,
            &DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(tn("ops"))
                    .with_partitions(vec![1]),
            ])),
        )
        .await;
    let parts: Vec<i32> = one.results[0]
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
        .collect();
    assert_eq!(parts, vec![1]);

    // DescribeProducers: the producer, its epoch and last sequence 2; unknown partition named.
    let dp: DescribeProducersResponse = c
        .call(
            ApiKey::DescribeProducers,
            0,
            &DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(tn("ops"))
                    .with_partition_indexes(vec![1, 0, 7]),
            ]),
        )
        .await;
    let ps = &dp.topics[0].partitions;
    assert_eq!(ps[0].error_code, 0);
    let active = &ps[0].active_producers;
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].producer_id, init.producer_id);
    assert_eq!(active[0].producer_epoch, i32::from(init.producer_epoch));
    assert_eq!(active[0].last_sequence, 2);
    assert!(ps[1].error_code == 0 && ps[1].active_producers.is_empty());
    assert_eq!(ps[2].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");

    // ElectLeaders: the owner serves, so no election is needed; nothing for "all".
    let el: ElectLeadersResponse = c
        .call(
            ApiKey::ElectLeaders,
            2,
            &ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(tn("ops"))
                    .with_partitions(vec![0, 5]),
            ])),
        )
        .await;
    let codes: Vec<i16> = el.replica_election_results[0]
        .partition_result
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![84, 3],
        "ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PARTITION"
    );
    let all: ElectLeadersResponse = c
        .call(
            ApiKey::ElectLeaders,
            2,
            &ElectLeadersRequest::default().with_topic_partitions(None),
        )
        .await;
    assert!(all.replica_election_results.is_empty());

    // DescribeQuorum: a quorum of one, led by this broker, which is its only voter.
    let q: DescribeQuorumResponse = c
        .call(
            ApiKey::DescribeQuorum,
            2,
            &DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(tn("__cluster_metadata"))
                    .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
            ]),
        )
        .await;
    assert_eq!(q.error_code, 0);
    let qp = &q.topics[0].partitions[0];
    assert_eq!(qp.leader_id, BrokerId(0));
    assert!(qp.leader_epoch >= 1 && qp.high_watermark > 0);
    let voters: Vec<(i32, i64)> = qp
        .current_voters
        .iter()
        .map(|v| (v.replica_id.0, v.log_end_offset))
        .collect();
    assert_eq!(voters.len(), 1);
    assert_eq!(voters[0].0, 0);
    assert!(
        voters[0].1 >= qp.high_watermark,
        "{voters:?} hw {}",
        qp.high_watermark
    );
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_topic_partitions_pages_with_a_cursor_and_names_unknown_topics() {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "dtp-a", 3).await;
    create_topic(&mut c, "dtp-b", 2).await;
    let ask = |names: &[&str], limit: i32, cursor: Option<(&str, i32)>| {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                names
                    .iter()
                    .map(|n| TopicRequest::default().with_name(tn(n)))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                Cursor::default()
                    .with_topic_name(tn(t))
                    .with_partition_index(p)
            }))
    };
    let seen = |r: &DescribeTopicPartitionsResponse| -> Vec<(String, i32, i32, Vec<i32>)> {
        r.topics
            .iter()
            .flat_map(|t| {
                let name = t.name.as_ref().map_or("", |n| n.as_str()).to_string();
                t.partitions.iter().map(move |p| {
                    (
                        name.clone(),
                        p.partition_index,
                        p.leader_id.0,
                        p.isr_nodes.iter().map(|b| b.0).collect(),
                    )
                })
            })
            .collect()
    };
    // Four of five partitions, then the rest from the cursor.
    let first: DescribeTopicPartitionsResponse = c
        .call(
            ApiKey::DescribeTopicPartitions,
            0,
            &ask(&["dtp-b", "dtp-a"], 4, None),
        )
        .await;
    assert_eq!(
        seen(&first),
        vec![
            ("dtp-a".to_string(), 0, 0, vec![0]),
            ("dtp-a".to_string(), 1, 0, vec![0]),
            ("dtp-a".to_string(), 2, 0, vec![0]),
            ("dtp-b".to_string(), 0, 0, vec![0]),
        ]
    );
    let cursor = first.next_cursor.as_ref().expect("a cursor");
    assert_eq!(
        (cursor.topic_name.as_str(), cursor.partition_index),
        ("dtp-b", 1)
    );
    let rest: DescribeTopicPartitionsResponse = c
        .call(
            ApiKey::DescribeTopicPartitions,
            0,
            &ask(&["dtp-b", "dtp-a"], 4, Some(("dtp-b", 1))),
        )
        .await;
    assert_eq!(seen(&rest), vec![("dtp-b".to_string(), 1, 0, vec![0])]);
    assert!(rest.next_cursor.is_none());
    // An unknown topic is answered by name with UNKNOWN_TOPIC_OR_PARTITION.
    let unknown: DescribeTopicPartitionsResponse = c
        .call(
            ApiKey::DescribeTopicPartitions,
            0,
            &ask(&["nope"], 10, None),
        )
        .await;
    assert_eq!(unknown.topics.len(), 1);
    assert_eq!(unknown.topics[0].error_code, 3);
    broker.shutdown().await.expect("shutdown");
}

/// A fetch of `parts` (partition, fetch offset) of `topic` in fetch session `id` at `epoch`.
fn session_fetch(topic: &str, id: i32, epoch: i32, parts: &[(i32, i64)]) -> FetchRequest {
    let mut f = fetch_req(topic, 0, 0, 0)
        .with_session_id(id)
        .with_session_epoch(epoch);
    f.topics[0].partitions = parts
        .iter()
        .map(|&(p, offset)| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    if parts.is_empty() {
        f.topics.clear();
    }
    f
}

/// (partition, its records' values) of every partition a fetch response carries.
fn carried(resp: &FetchResponse) -> Vec<(i32, Vec<String>)> {
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            let values = values_in(p).into_iter().map(|(_, v)| v).collect();
            (p.partition_index, values)
        })
        .collect()
}

/// KIP-227 as the Java client uses it: a full fetch at epoch 0 opens a session; incremental
/// fetches name only what changed and get only the partitions with news; stale epochs,
/// unknown ids and a switch to topic ids are refused with Kafka's codes; forgetting every
/// partition closes the session; a long poll in a session wakes for a partition it did not
/// name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sessions_carry_only_what_moved_and_refuse_stale_epochs() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "sess", 3).await;
    assert_eq!(c.produce("sess", 0, -1, &["a"]).await.error_code, 0);

    let all = [(0, 0), (1, 0), (2, 0)];
    let full: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch("sess", 0, 0, &all))
        .await;
    let id = full.session_id;
    assert!(id > 0, "epoch 0 opened a session");
    assert_eq!(
        carried(&full),
        vec![(0, vec!["a".into()]), (1, vec![]), (2, vec![])]
    );

    // Partition 0 read its record: the next request names only it; nothing moved anywhere.
    let r: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch("sess", id, 1, &[(0, 1)]))
        .await;
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert!(carried(&r).is_empty(), "nothing new: {:?}", carried(&r));

    // A record on partition 2, which the request does not name: only it comes back.
    assert_eq!(c.produce("sess", 2, -1, &["b"]).await.error_code, 0);
    let r: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch("sess", id, 2, &[]))
        .await;
    assert_eq!(carried(&r), vec![(2, vec!["b".into()])]);

    // The same epoch again, an unknown id, topic ids in a session of names: refused.
    let stale: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch("sess", id, 2, &[]))
        .await;
    assert_eq!((stale.error_code, stale.session_id), (71, 0));
    let other = if id == i32::MAX { 1 } else { id + 1 };
    let unknown: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch("sess", other, 1, &[]))
        .await;
    assert_eq!(unknown.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    let by_id: FetchResponse = c
        .call(ApiKey::Fetch, 16, &session_fetch("", id, 3, &[]))
        .await;
    assert_eq!(by_id.error_code, 106, "FETCH_SESSION_TOPIC_ID_ERROR");

    // A long poll in the session wakes for partition 1, named by no incremental request.
    let mut poll = session_fetch("sess", id, 3, &[(2, 1)]);
    poll.max_wait_ms = 20_000;
    let corr = c.send(ApiKey::Fetch, 12, &poll).await;
    let mut producer = Conn::connect(broker.kafka_addr()).await;
    assert_eq!(producer.produce("sess", 1, -1, &["c"]).await.error_code, 0);
    let (got, r): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 12).await;
    assert_eq!(got, corr);
    assert_eq!(carried(&r), vec![(1, vec!["c".into()])]);

    // Forgetting every partition closes the session: answered with session id 0, and the
    // id is gone.
    let mut forget = session_fetch("sess", id, 4, &[]);
    forget.forgotten_topics_data = vec![fetch_request::ForgottenTopic::default()
        .with_topic(tn("sess"))
        .with_partitions(vec![0, 1, 2])];
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &forget).await;
    assert_eq!((r.error_code, r.session_id), (0, 0));
    let gone: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch("sess", id, 5, &[]))
        .await;
    assert_eq!(gone.error_code, 70);

    // Topic ids from v13: a session opened with ids takes incremental requests with ids.
    let topic_id = c.topic_id("sess").await;
    let mut full = session_fetch("", 0, 0, &all);
    full.topics[0].topic_id = topic_id;
    let r: FetchResponse = c.call(ApiKey::Fetch, 16, &full).await;
    assert!(r.session_id > 0);
    assert_eq!(r.responses[0].topic_id, topic_id);
    assert_eq!(carried(&r).len(), 3);
    let id = r.session_id;
    // Every partition read what it had: the offsets move on, and nothing else is new.
    let mut moved = session_fetch("", id, 1, &[(0, 1), (1, 1), (2, 1)]);
    moved.topics[0].topic_id = topic_id;
    let r: FetchResponse = c.call(ApiKey::Fetch, 16, &moved).await;
    assert!(carried(&r).is_empty(), "{:?}", carried(&r));
    assert_eq!(c.produce("sess", 0, -1, &["d"]).await.error_code, 0);
    let r: FetchResponse = c
        .call(ApiKey::Fetch, 16, &session_fetch("", id, 2, &[]))
        .await;
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].topic_id, topic_id);
    assert_eq!(carried(&r), vec![(0, vec!["d".into()])]);
    broker.shutdown().await.expect("shutdown");
}

/// A fetch of many partitions of one topic (looked up together) answers every partition it
/// names with that partition's records, one it names twice both times, one the topic does not
/// have with UNKNOWN_TOPIC_OR_PARTITION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_of_many_partitions_answers_each_it_names() {
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "many", 10).await;
    for p in 0..10 {
        let value = format!("v{p}");
        assert_eq!(c.produce("many", p, -1, &[&value]).await.error_code, 0);
    }
    let mut parts: Vec<(i32, i64)> = (0..10).rev().map(|p| (p, 0)).collect();
    parts.push((3, 0));
    parts.push((10, 0));
    let r: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch("many", 0, -1, &parts))
        .await;
    assert_eq!(r.session_id, 0);
    let mut expected: Vec<(i32, Vec<String>)> =
        (0..10).rev().map(|p| (p, vec![format!("v{p}")])).collect();
    expected.push((3, vec!["v3".into()]));
    expected.push((10, vec![]));
    assert_eq!(carried(&r), expected);
    let codes: Vec<i16> = r.responses[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes[..11], [0; 11]);
    assert_eq!(codes[11], 3, "UNKNOWN_TOPIC_OR_PARTITION for partition 10");
    broker.shutdown().await.expect("shutdown");
}

/// `--fetch-session-cache-slots 0`: every fetch is answered without a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fetch_sessions_with_zero_slots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::parse_from(common::broker_args(
        dir.path(),
        &["--fetch-session-cache-slots", "0"],
    ));
    let broker = Broker::start(config).await.expect("broker starts");
    let mut c = Conn::connect(broker.kafka_addr()).await;
    create_topic(&mut c, "nosess", 1).await;
    let r: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch("nosess", 0, 0, &[(0, 0)]))
        .await;
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(carried(&r), vec![(0, vec![])]);
    broker.shutdown().await.expect("shutdown");
}

/// The transaction coordinator's answers to requests out of order, stale or malformed: each
/// gets Kafka's error, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_requests_out_of_order_get_kafkas_errors() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let (_dir, broker, mut c) = broker_and_conn().await;
    create_topic(&mut c, "items", 2).await;
    let tid = |s: &'static str| TransactionalId(StrBytes::from_static_str(s));

    // The coordinator of a transactional id is found like a group's (and the lookup creates
    // __consumer_offsets).
    let f: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_key(StrBytes::from_static_str("t")),
        )
        .await;
    assert_eq!((f.error_code, f.node_id.0), (0, 0));

    let add = |id: &'static str, pid: i64, epoch: i16, topic: &str, parts: Vec<i32>| {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(tid(id))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(tn(topic))
                .with_partitions(parts)])
    };
    let codes = |r: &AddPartitionsToTxnResponse| -> Vec<(i32, i16)> {
        r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| t.results_by_partition.iter())
            .map(|p| (p.partition_index, p.partition_error_code))
            .collect()
    };
    // Before any InitProducerId: no producer is mapped to the id.
    let r: AddPartitionsToTxnResponse = c
        .call(
            ApiKey::AddPartitionsToTxn,
            3,
            &add("t", 5, 0, "items", vec![0, 1]),
        )
        .await;
    assert_eq!(
        codes(&r),
        vec![(0, 49), (1, 49)],
        "INVALID_PRODUCER_ID_MAPPING"
    );

    let init = |timeout: i32, pid: i64, epoch: i16| {
        InitProducerIdRequest::default()
            .with_transactional_id(Some(tid("t")))
            .with_transaction_timeout_ms(timeout)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
    };
    for bad in [0, 15 * 60 * 1000 + 1] {
        let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &init(bad, -1, -1)).await;
        assert_eq!(r.error_code, 50, "INVALID_TRANSACTION_TIMEOUT for {bad}");
    }
    let a: InitProducerIdResponse = c
        .call(ApiKey::InitProducerId, 4, &init(60_000, -1, -1))
        .await;
    assert_eq!((a.error_code, a.producer_epoch), (0, 0));
    let pid = a.producer_id.0;
    // The same id again: same producer, next epoch (the first is fenced).
    let b: InitProducerIdResponse = c
        .call(ApiKey::InitProducerId, 4, &init(60_000, -1, -1))
        .await;
    assert_eq!(
        (b.error_code, b.producer_id.0, b.producer_epoch),
        (0, pid, 1)
    );
    // KIP-360: naming a producer that is not the id's current one is fenced.
    let r: InitProducerIdResponse = c
        .call(ApiKey::InitProducerId, 4, &init(60_000, pid + 1000, 0))
        .await;
    assert_eq!(r.error_code, 90, "PRODUCER_FENCED");

    // The fenced epoch may not add partitions; an unknown partition fails alone, the others
    // are not attempted.
    let r: AddPartitionsToTxnResponse = c
        .call(
            ApiKey::AddPartitionsToTxn,
            3,
            &add("t", pid, 0, "items", vec![0]),
        )
        .await;
    assert_eq!(codes(&r), vec![(0, 90)], "PRODUCER_FENCED");
    let mut two = add("t", pid, 1, "items", vec![0]);
    two.v3_and_below_topics.push(
        AddPartitionsToTxnTopic::default()
            .with_name(tn("no-such-topic"))
            .with_partitions(vec![3]),
    );
    let r: AddPartitionsToTxnResponse = c.call(ApiKey::AddPartitionsToTxn, 3, &two).await;
    assert_eq!(codes(&r), vec![(0, 55), (3, 3)]);

    let end = |commit: bool| {
        EndTxnRequest::default()
            .with_transactional_id(tid("t"))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(1)
            .with_committed(commit)
    };
    // Nothing added: nothing to commit; an abort of nothing is fine.
    let r: EndTxnResponse = c.call(ApiKey::EndTxn, 3, &end(true)).await;
    assert_eq!(r.error_code, 48, "INVALID_TXN_STATE");
    let r: EndTxnResponse = c.call(ApiKey::EndTxn, 3, &end(false)).await;
    assert_eq!(r.error_code, 0);

    // Offsets without AddOffsetsToTxn are not written (retriable: the metadata may lag).
    let offsets = |epoch: i16| {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(tid("t"))
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(tn("items"))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(7)])])
    };
    let r: TxnOffsetCommitResponse = c.call(ApiKey::TxnOffsetCommit, 3, &offsets(1)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 14);
    let r: TxnOffsetCommitResponse = c.call(ApiKey::TxnOffsetCommit, 3, &offsets(0)).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 90, "PRODUCER_FENCED");

    // The admin view.
    let r: DescribeTransactionsResponse = c
        .call(
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![tid("t"), tid("none")]),
        )
        .await;
    let s = &r.transaction_states[0];
    assert_eq!(
        (
            s.error_code,
            s.producer_id.0,
            s.producer_epoch,
            s.transaction_state.as_str()
        ),
        (0, pid, 1, "Empty")
    );
    assert_eq!(
        r.transaction_states[1].error_code, 105,
        "TRANSACTIONAL_ID_NOT_FOUND"
    );
    let r: ListTransactionsResponse = c
        .call(
            ApiKey::ListTransactions,
            1,
            &ListTransactionsRequest::default(),
        )
        .await;
    let listed: Vec<(&str, i64)> = r
        .transaction_states
        .iter()
        .map(|t| (t.transactional_id.as_str(), t.producer_id.0))
        .collect();
    assert_eq!(listed, vec![("t", pid)]);
    let r: ListTransactionsResponse = c
        .call(
            ApiKey::ListTransactions,
            1,
            &ListTransactionsRequest::default().with_state_filters(vec![
                StrBytes::from_static_str("Ongoing"),
                StrBytes::from_static_str("Bogus"),
            ]),
        )
        .await;
    assert!(r.transaction_states.is_empty());
    assert_eq!(
        r.unknown_state_filters,
        vec![StrBytes::from_static_str("Bogus")]
    );

    // Nothing of it reached the topic.
    let r: ListOffsetsResponse = c
        .call(
            ApiKey::ListOffsets,
            7,
            &ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(tn("items"))
                    .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1)]),
            ]),
        )
        .await;
    assert_eq!(r.topics[0].partitions[0].offset, 0);

    // A transaction committed, and the next one's first AddPartitionsToTxn sent at once: it
    // waits for the first one's marker rather than answering CONCURRENT_TRANSACTIONS, which
    // would send the client into its back-off.
    for round in 0..3 {
        let r: AddPartitionsToTxnResponse = c
            .call(
                ApiKey::AddPartitionsToTxn,
                3,
                &add("t", pid, 1, "items", vec![0]),
            )
            .await;
        assert_eq!(codes(&r), vec![(0, 0)], "round {round}");
        let r: EndTxnResponse = c.call(ApiKey::EndTxn, 3, &end(round != 1)).await;
        assert_eq!(r.error_code, 0, "round {round}");
    }
    broker.shutdown().await.expect("shutdown");
}
