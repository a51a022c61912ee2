//! Bad input over raw TCP costs only its own connection: the broker closes it (or answers with
//! an error) promptly, never hangs on it, and keeps serving real clients meanwhile.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BufMut;
use common::*;
use kafka_protocol::messages::ApiVersionsRequest;
use rdkafka::producer::Producer;

/// How the broker reacted to a bad frame.
#[derive(Debug, PartialEq)]
enum Reaction {
    Closed,
    Answered(Vec<u8>),
}

fn send_bad(addr: SocketAddr, bytes: &[u8], within: Duration) -> Reaction {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(within)).expect("timeout");
    s.write_all(bytes).expect("write bad bytes");
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => {
                return if buf.is_empty() {
                    Reaction::Closed
                } else {
                    Reaction::Answered(buf)
                }
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() >= 4 {
                    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    if len >= 0 && buf.len() >= 4 + len as usize {
                        return Reaction::Answered(buf);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Reaction::Closed,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "the broker neither closed the connection nor answered within {:?} after {} bad bytes {:02x?}",
                    t0.elapsed(),
                    bytes.len(),
                    &bytes[..bytes.len().min(16)]
                )
            }
            Err(e) => panic!("reading after bad bytes: {e}"),
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 4);
    v.put_i32(payload.len() as i32);
    v.extend_from_slice(payload);
    v
}

/// A request header v1 (api key, version, correlation id, null client id) followed by `body`.
fn header(api_key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.put_i16(api_key);
    v.put_i16(version);
    v.put_i32(correlation);
    v.put_i16(-1);
    v.extend_from_slice(body);
    v
}

/// A real client still works: a raw ApiVersions, and a librdkafka produce + consume.
fn assert_still_serving(broker: &TestBroker, n: u64) {
    let mut c = RawClient::connect(broker.kafka_addr());
    let resp = c.send(&ApiVersionsRequest::default(), 3);
    assert_eq!(resp.error_code, 0, "ApiVersions after bad input");
    let topic = topic_name("still-serving");
    rd_produce_all(&broker.bootstrap(), &topic, Some(0), n..n + 5, &[]);
    let got = rd_consume_from_start(
        &broker.bootstrap(),
        &topic,
        &[0],
        5,
        Duration::from_secs(30),
    );
    assert_records_exact(&got, n..n + 5);
}

#[test]
fn malformed_frames_cost_only_their_own_connection() {
    let broker = TestBroker::start(&[
        "--max-request-bytes",
        "1048576",
        "--max-message-bytes",
        "1000000",
    ]);
    let addr = broker.kafka_addr();
    // An idle client that never sends anything is open the whole time.
    let idle = TcpStream::connect(addr).expect("idle connection");
    // And a real producer keeps its connection across all of it.
    let producer = rd_producer(&broker.bootstrap(), &[]);
    let steady = topic_name("steady");

    let quick = Duration::from_secs(10);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("negative length", (-2i32).to_be_bytes().to_vec(), true),
        (
            "length i32::MAX, no body",
            i32::MAX.to_be_bytes().to_vec(),
            true,
        ),
        (
            "length above --max-request-bytes, body not sent",
            (2 * 1048576i32).to_be_bytes().to_vec(),
            true,
        ),
        ("truncated header (3 bytes)", frame(&[0, 18, 0]), true),
        (
            "unknown API key 9999",
            frame(&header(9999, 0, 7, &[])),
            false,
        ),
        (
            "garbage payload",
            frame(
                &(0..64u32)
                    .map(|i| 0xffu32.wrapping_sub(i * 37) as u8)
                    .collect::<Vec<u8>>(),
            ),
            false,
        ),
        (
            "Metadata v12 with a truncated body",
            frame(&header(3, 12, 8, &[0x02, 0x00])),
            false,
        ),
        ("zero-length frame", frame(&[]), true),
    ];
    for (i, (what, bytes, must_close)) in cases.iter().enumerate() {
        let reaction = send_bad(addr, bytes, quick);
        if *must_close {
            assert_eq!(
                reaction,
                Reaction::Closed,
                "{what}: the connection must be closed"
            );
        }
        eprintln!("{what}: {reaction:?}");
        rd_send(&producer, &steady, Some(0), i as u64);
        assert_still_serving(&broker, 100 * i as u64);
    }

    // A client that disconnects half way through a frame.
    {
        let mut s = TcpStream::connect(addr).expect("connect");
        let mut partial = 100i32.to_be_bytes().to_vec();
        partial.extend_from_slice(&[0, 18, 0, 3, 0]);
        s.write_all(&partial).expect("write partial frame");
    }
    assert_still_serving(&broker, 10_000);

    producer
        .flush(Duration::from_secs(30))
        .expect("flush the steady producer");
    let failed = producer.context().failed.lock().expect("lock").clone();
    assert!(
        failed.is_empty(),
        "steady producer deliveries failed: {failed:?}"
    );
    let got = rd_consume_from_start(
        &broker.bootstrap(),
        &steady,
        &[0],
        cases.len(),
        Duration::from_secs(30),
    );
    assert_records_exact(&got, 0..cases.len() as u64);
    drop(idle);
}

#[test]
fn unsupported_api_versions_version_is_answered_in_v0_with_the_supported_list() {
    let broker = TestBroker::start(&[]);
    let mut s = TcpStream::connect(broker.kafka_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(&frame(&header(18, 99, 42, &[])))
        .expect("write ApiVersions v99");
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .expect("an answer to ApiVersions v99, not a closed connection");
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("read body");
    let mut buf = bytes::Bytes::from(body);
    use bytes::Buf;
    assert_eq!(buf.get_i32(), 42, "correlation id");
    use kafka_protocol::protocol::Decodable;
    let resp = kafka_protocol::messages::ApiVersionsResponse::decode(&mut buf, 0)
        .expect("decode as ApiVersions v0");
    assert_eq!(resp.error_code, 35, "UNSUPPORTED_VERSION");
    let produce = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("Produce in the supported list");
    assert_eq!(
        produce.min_version, 0,
        "Produce must be advertised from v0 (librdkafka < 2.11.1 stops compressing otherwise)"
    );
}

#[test]
fn corrupt_or_oversized_batches_are_refused_and_not_stored() {
    let broker = TestBroker::start(&["--max-message-bytes", "100000"]);
    let bs = broker.bootstrap();
    let topic = topic_name("corrupt");
    rd_produce_all(&bs, &topic, Some(0), 0..3, &[]);
    let mut c = RawClient::connect(broker.kafka_addr());

    // A batch whose CRC does not match its bytes: CORRUPT_MESSAGE (2).
    let good = encode_batch(
        &[b"one", b"two"],
        kafka_protocol::records::Compression::None,
        None,
    );
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    let (err, _) = raw_produce(&mut c, &topic, 0, bytes::Bytes::from(bad), -1);
    assert_eq!(err, 2, "a batch with a bad CRC: want CORRUPT_MESSAGE (2)");
    // A batch whose length field disagrees with the bytes sent.
    let mut short = good.to_vec();
    short.truncate(good.len() - 5);
    let (err, _) = raw_produce(&mut c, &topic, 0, bytes::Bytes::from(short), -1);
    assert_ne!(err, 0, "a truncated batch was accepted");
    assert_eq!(
        raw_list_offset(&mut c, &topic, 0, -1),
        (0, 3),
        "log end after refusals"
    );

    // A record batch above --max-message-bytes: MESSAGE_TOO_LARGE, seen by librdkafka.
    let p = rd_producer(&bs, &[("message.max.bytes", "3000000")]);
    let big = vec![7u8; 200_000];
    let rec: rdkafka::producer::BaseRecord<'_, [u8], [u8], usize> =
        rdkafka::producer::BaseRecord::with_opaque_to(&topic, 999)
            .partition(0)
            .payload(&big);
    if let Err((e, _)) = p.send(rec) {
        panic!("enqueue the big record: {e}");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let failed = p.context().failed.lock().expect("lock").clone();
    assert_eq!(failed.len(), 1, "the 200 kB record was not refused");
    assert!(
        failed[0].1.contains("too large") || failed[0].1.contains("MessageSizeTooLarge"),
        "refusal of the 200 kB record: {failed:?}"
    );
    // The partition still takes normal records, and holds nothing of the refused ones.
    rd_produce_all(&bs, &topic, Some(0), 3..6, &[]);
    let got = rd_consume_from_start(&bs, &topic, &[0], 6, Duration::from_secs(30));
    assert_records_exact(&got, 0..6);
}

/// A batch with a valid CRC but a record count of 2^31-1 (checked only against the last offset
/// delta) is stored as received; a ListOffsets by timestamp that looks into it must not abort
/// the broker on a 378 GB allocation (`kafka-protocol`'s record decoder reserves the count),
/// and neither must ListOffsets MAX_TIMESTAMP.
#[test]
fn a_batch_claiming_billions_of_records_does_not_abort_timestamp_lookups() {
    let broker = TestBroker::start(&[]);
    let topic = topic_name("billions");
    rd_produce_all(&broker.bootstrap(), &topic, Some(0), 0..1, &[]);
    let mut c = RawClient::connect(broker.kafka_addr());
    // One record (a batch of one: the encoder splits non-idempotent records), stamped far in
    // the future so that a lookup by that timestamp has to look inside this batch.
    let mut b = encode_batch(&[b"one"], kafka_protocol::records::Compression::None, None).to_vec();
    let future: i64 = 4_000_000_000_000;
    b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes()); // last offset delta
    b[27..35].copy_from_slice(&future.to_be_bytes()); // first timestamp
    b[35..43].copy_from_slice(&future.to_be_bytes()); // max timestamp
    b[57..61].copy_from_slice(&i32::MAX.to_be_bytes()); // record count
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let (err, base) = raw_produce(&mut c, &topic, 0, bytes::Bytes::from(b), -1);
    assert_eq!((err, base), (0, 1), "stored as received");
    // By timestamp, then MAX_TIMESTAMP (-3): both find the one real record of the batch.
    assert_eq!(raw_list_offset(&mut c, &topic, 0, future), (0, 1));
    assert_eq!(raw_list_offset(&mut c, &topic, 0, -3), (0, 1));
    assert_still_serving(&broker, 10);
}
