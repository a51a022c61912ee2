//! DeleteRecords (API key 21) through librdkafka's admin client and the raw protocol: the log
//! start offset moves (also into the middle of a segment), whole segments below it are
//! deleted, Fetch and ListOffsets earliest reflect it, it survives a restart, and bad offsets
//! or unknown partitions get their Kafka errors.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

const LONG: Duration = Duration::from_secs(60);

/// Base offsets of the segment files of a partition directory, sorted.
fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// librdkafka's DeleteRecords: (partition, low watermark or error code) per partition.
fn rd_delete(
    broker: &TestBroker,
    a: &AdminClient<DefaultClientContext>,
    topic: &str,
    offsets: &[(i32, Offset)],
) -> Vec<(i32, Result<i64, RDKafkaErrorCode>)> {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, *o)
            .expect("add partition offset");
    }
    let res = broker
        .block_on(a.delete_records(&tpl, &admin_opts()))
        .unwrap_or_else(|e| panic!("delete_records on {topic}: {e}"));
    res.elements()
        .iter()
        .map(|e| {
            let r = match e.error() {
                Ok(()) => match e.offset() {
                    Offset::Offset(o) => Ok(o),
                    other => panic!("low watermark of {topic}/{}: {other:?}", e.partition()),
                },
                Err(err) => Err(err
                    .rdkafka_error_code()
                    .unwrap_or_else(|| panic!("no error code in {err}"))),
            };
            (e.partition(), r)
        })
        .collect()
}

fn fetch_at(c: &mut RawClient, topic: &str, offset: i64) -> (i16, i64, i64) {
    let f = raw_fetch(c, topic, 0, offset, 0, 1);
    (f.error_code, f.log_start_offset, f.high_watermark)
}

#[test]
fn delete_records_moves_the_log_start_durably_and_refuses_bad_offsets() {
    let data = tempfile::tempdir().expect("data dir");
    // Small segments, so a deletion spans several whole segments and ends inside one.
    let mut broker = TestBroker::start_in(data.path(), &["--segment-bytes", "16384"]);
    let bs = broker.bootstrap();
    let a = rd_admin(&bs);
    let topic = topic_name("delrec");
    let created = broker
        .block_on(a.create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &admin_opts(),
        ))
        .expect("create_topics");
    assert!(created[0].is_ok(), "{:?}", created[0]);
    // Small batches (a segment holds whole batches).
    let small = [("batch.num.messages", "10"), ("linger.ms", "0")];
    rd_produce_all(&bs, &topic, Some(0), 0..200, &small);
    rd_produce_all(&bs, &topic, Some(1), 200..250, &small);
    let p0 = broker.data_dir().join("topics").join(format!("{topic}-0"));
    let before = segment_bases(&p0);
    assert!(before.len() > 3, "segments before: {before:?}");

    // Versions: advertised as the decoder accepts them.
    let mut raw = RawClient::connect(broker.kafka_addr());
    let v = raw.send(&ApiVersionsRequest::default(), 3);
    let dr = v
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::DeleteRecords as i16)
        .expect("DeleteRecords advertised");
    assert_eq!((dr.min_version, dr.max_version), (0, 2));

    // Partition 0 up to 120 (inside a segment), partition 1 to its end (Offset::End = -1).
    let got = rd_delete(
        &broker,
        &a,
        &topic,
        &[(0, Offset::Offset(120)), (1, Offset::End)],
    );
    assert_eq!(got, vec![(0, Ok(120)), (1, Ok(50))]);
    let after = segment_bases(&p0);
    assert!(
        after.len() < before.len() && after[0] <= 120 && after.get(1).is_none_or(|b| *b > 120),
        "whole segments below 120 are deleted, the one holding 120 stays: {before:?} -> {after:?}"
    );

    // ListOffsets earliest / latest, and the consumer starts at the new log start.
    assert_eq!(rd_watermarks(&bs, &topic, 0), (120, 200));
    assert_eq!(rd_watermarks(&bs, &topic, 1), (50, 50));
    let got = rd_consume_from_start(&bs, &topic, &[0], 80, LONG);
    assert_eq!(got[0].offset, 120, "first record after the deletion");
    assert_records_exact(&got, 120..200);

    // Fetch below the start is out of range and names the new start.
    assert_eq!(fetch_at(&mut raw, &topic, 119), (1, 120, 200));
    assert_eq!(fetch_at(&mut raw, &topic, 120).0, 0);

    // Beyond the high watermark: OFFSET_OUT_OF_RANGE; lower than the start: no change.
    let got = rd_delete(&broker, &a, &topic, &[(0, Offset::Offset(201))]);
    assert_eq!(got, vec![(0, Err(RDKafkaErrorCode::OffsetOutOfRange))]);
    let got = rd_delete(&broker, &a, &topic, &[(0, Offset::Offset(10))]);
    assert_eq!(got, vec![(0, Ok(120))]);

    // Unknown partition and unknown topic, at every version, through the raw protocol.
    for version in 0..=2 {
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![
                        DeleteRecordsPartition::default()
                            .with_partition_index(7)
                            .with_offset(1),
                        DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(-7),
                    ]),
                DeleteRecordsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("no-such-topic")))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(1)]),
            ]);
        let r = raw.send(&req, version);
        let codes: Vec<(String, i32, i16, i64)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.as_str().to_string(),
                        p.partition_index,
                        p.error_code,
                        p.low_watermark,
                    )
                })
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                (topic.clone(), 7, 3, -1),
                (topic.clone(), 0, 1, -1),
                ("no-such-topic".to_string(), 0, 3, -1),
            ],
            "v{version}: UNKNOWN_TOPIC_OR_PARTITION, OFFSET_OUT_OF_RANGE"
        );
    }
    drop(raw);
    drop(a);

    // The log start survives a restart.
    broker.restart();
    let bs = broker.bootstrap();
    assert_eq!(rd_watermarks(&bs, &topic, 0), (120, 200));
    assert_eq!(rd_watermarks(&bs, &topic, 1), (50, 50));
    let got = rd_consume_from_start(&bs, &topic, &[0], 80, LONG);
    assert_records_exact(&got, 120..200);
    // Producing continues at the end.
    let acked = rd_produce_all(&bs, &topic, Some(1), 250..251, &[]);
    assert_eq!(acked[0].2, 50);
}
