//! Entry points of the fuzz targets in `fuzz/` (`fuzz/run.sh`; campaigns and figures in
//! `docs/reliability.md`). Each runs the broker's own code on bytes from a fuzzer and panics
//! only where that code broke a rule: a panic inside it, an allocation beyond its bounds (the
//! fuzz binaries' allocator aborts on those), a batch served whose CRC fails, a recovery that
//! a second open does not agree with. Also the seed inputs, built with the broker's own
//! encoders. Hidden from the docs; nothing in the broker calls it.
//!
//! The storage engine's entry points are `log::fuzzing`'s (re-exported here).
//!
//! The top of the import graph beside `server`: may import every module.

use std::net::SocketAddr;
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message};

use crate::cluster::logfile::LogFile;
use crate::cluster::network::{self, Request, Response};
use crate::cluster::store::{LogStore, StateMachineStore};
use crate::error::BrokerError;
use crate::handlers::{self, Routed};
use crate::protocol::codec::{self, RawHeader};
use crate::protocol::versions;

pub use crate::log::fuzzing::{
    epoch_cache, fix_crcs, image_files, pack_image, partition_dir, read_everything, record_batches,
    seed_epoch_caches, seed_partition_dirs, seed_record_batches,
};

/// The largest request frame the request target reads (the broker's default is larger; the
/// fuzzer's inputs are far smaller anyway).
const MAX_FRAME: usize = 1 << 20;

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9092))
}

thread_local! {
    /// The connection code's timeouts need a runtime with a timer; one per fuzzing thread.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("fuzzing runtime: {e}"));
}

/// Every API the broker serves with a handler, with its request type: what `dispatch`'s arms
/// decode (the unit test below checks that each served API is listed).
macro_rules! served_apis {
    ($m:ident) => {
        $m! {
            Produce => ProduceRequest,
            Fetch => FetchRequest,
            ListOffsets => ListOffsetsRequest,
            OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
            Metadata => MetadataRequest,
            DescribeCluster => DescribeClusterRequest,
            AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
            ListPartitionReassignments => ListPartitionReassignmentsRequest,
            DescribeLogDirs => DescribeLogDirsRequest,
            DescribeProducers => DescribeProducersRequest,
            ElectLeaders => ElectLeadersRequest,
            DescribeTopicPartitions => DescribeTopicPartitionsRequest,
            DescribeQuorum => DescribeQuorumRequest,
            UnregisterBroker => UnregisterBrokerRequest,
            FindCoordinator => FindCoordinatorRequest,
            InitProducerId => InitProducerIdRequest,
            CreateTopics => CreateTopicsRequest,
            DeleteTopics => DeleteTopicsRequest,
            DeleteRecords => DeleteRecordsRequest,
            CreatePartitions => CreatePartitionsRequest,
            DescribeConfigs => DescribeConfigsRequest,
            AlterConfigs => AlterConfigsRequest,
            IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
            JoinGroup => JoinGroupRequest,
            SyncGroup => SyncGroupRequest,
            Heartbeat => HeartbeatRequest,
            LeaveGroup => LeaveGroupRequest,
            OffsetCommit => OffsetCommitRequest,
            OffsetFetch => OffsetFetchRequest,
            ListGroups => ListGroupsRequest,
            ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
            ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
            DescribeGroups => DescribeGroupsRequest,
            DeleteGroups => DeleteGroupsRequest,
            OffsetDelete => OffsetDeleteRequest,
            ShareGroupHeartbeat => ShareGroupHeartbeatRequest,
            ShareGroupDescribe => ShareGroupDescribeRequest,
            ShareFetch => ShareFetchRequest,
            ShareAcknowledge => ShareAcknowledgeRequest,
            DescribeShareGroupOffsets => DescribeShareGroupOffsetsRequest,
            AlterShareGroupOffsets => AlterShareGroupOffsetsRequest,
            DeleteShareGroupOffsets => DeleteShareGroupOffsetsRequest,
            ApiVersions => ApiVersionsRequest,
            DescribeAcls => DescribeAclsRequest,
            CreateAcls => CreateAclsRequest,
            DeleteAcls => DeleteAclsRequest,
            SaslHandshake => SaslHandshakeRequest,
            SaslAuthenticate => SaslAuthenticateRequest,
            DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
            AlterUserScramCredentials => AlterUserScramCredentialsRequest,
            AddPartitionsToTxn => AddPartitionsToTxnRequest,
            AddOffsetsToTxn => AddOffsetsToTxnRequest,
            EndTxn => EndTxnRequest,
            TxnOffsetCommit => TxnOffsetCommitRequest,
            DescribeTransactions => DescribeTransactionsRequest,
            ListTransactions => ListTransactionsRequest,
            WriteTxnMarkers => WriteTxnMarkersRequest,
            ListConfigResources => ListConfigResourcesRequest,
            DescribeClientQuotas => DescribeClientQuotasRequest,
            AlterClientQuotas => AlterClientQuotasRequest,
        }
    };
}

/// Decodes the body of a served request as its handler's arm does (through the pre-decode
/// guard); `None` when no arm serves `key`.
fn decode_served(key: ApiKey, raw: RawHeader, body: &mut Bytes) -> Option<Result<(), BrokerError>> {
    macro_rules! decode {
        ($($k:ident => $t:ty),* $(,)?) => {
            match key {
                $(ApiKey::$k => Some(codec::decode_body::<$t>(peer(), raw, body).map(|_| ())),)*
                _ => None,
            }
        };
    }
    served_apis!(decode)
}

/// One request frame through everything the broker does before a handler acts on it: the
/// header peek, the API key, the APIs answered without a handler (ApiVersions, Produce
/// v0–v2, the unserved ones), the version check, the header decode, the pre-decode guard and
/// the body decode. `Err` is the error that closes the connection.
pub fn kafka_request(frame: Bytes) -> Result<(), BrokerError> {
    let raw = codec::peek_header(peer(), &frame)?;
    let key = handlers::api_key(peer(), raw)?;
    match handlers::route(peer(), key, raw, frame, false)? {
        Routed::Answered(reply) => {
            assert!(
                reply.len() >= 8,
                "a response frame has a length and a header"
            );
            Ok(())
        }
        Routed::Serve { mut body, .. } => match decode_served(key, raw, &mut body) {
            Some(r) => r,
            None => panic!(
                "{key:?} v{} passed the version check but no arm decodes it",
                raw.api_version
            ),
        },
    }
}

/// Request framing and decoding: `input` is what a client sends on a connection, read by the
/// connection's own framing code; each frame goes through [`kafka_request`] until one would
/// close the connection.
pub fn kafka_requests(input: &[u8]) {
    RUNTIME.with(|rt| {
        rt.block_on(crate::server::read_frames(
            input,
            peer(),
            MAX_FRAME,
            kafka_request,
        ))
    });
}

/// The cluster RPC decoder: `input` is what a peer sends on the cluster listener, read with
/// the RPC framing; each frame is decoded as a request (what the RPC server does) and as a
/// response (what the caller does). Whatever decodes must encode again.
pub fn cluster_rpc(input: &[u8]) {
    let mut rd = input;
    loop {
        let frame = futures::executor::block_on(network::read_frame(&mut rd));
        let Ok(Some(body)) = frame else {
            return;
        };
        if let Ok(req) = serde_json::from_slice::<Request>(&body) {
            assert!(
                serde_json::to_vec(&req).is_ok(),
                "a decoded request encodes"
            );
        }
        if let Ok(resp) = serde_json::from_slice::<Response>(&body) {
            assert!(
                serde_json::to_vec(&resp).is_ok(),
                "a decoded response encodes"
            );
        }
    }
}

const RAFT_FILES: [&str; 5] = [
    "raft.log",
    "vote.json",
    "purged.json",
    "committed.json",
    "snapshot.json",
];

/// Splits a cluster directory image: `kind u8 | len u16 | bytes` entries; kind (mod 6) picks
/// [`RAFT_FILES`], 5 is `raft.log` with its record CRCs fixed (so the fuzzer reaches the entry
/// decoder).
pub fn raft_files(mut input: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut files: Vec<(&'static str, Vec<u8>)> = Vec::new();
    while let Some((&kind, rest)) = input.split_first() {
        input = rest;
        let Some(l) = input.get(..2) else { break };
        let len = usize::from(u16::from_be_bytes([l[0], l[1]])).min(input.len() - 2);
        let mut bytes = input[2..2 + len].to_vec();
        input = &input[2 + len..];
        let kind = usize::from(kind % 6);
        if kind == 5 {
            fix_raft_crcs(&mut bytes);
        }
        let name = RAFT_FILES[kind % RAFT_FILES.len()];
        files.retain(|(n, _)| *n != name);
        files.push((name, bytes));
    }
    files
}

/// Recomputes the CRC of every record of a raft log file whose length fits.
fn fix_raft_crcs(b: &mut [u8]) {
    let mut pos = 0usize;
    while b.len() - pos >= 8 {
        let len = u32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]) as usize;
        let Some(end) = (pos + 8).checked_add(len).filter(|e| *e <= b.len()) else {
            return;
        };
        let crc = crc32c::crc32c(&b[pos + 8..end]);
        b[pos + 4..pos + 8].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

/// Packs a cluster directory's files as an image for [`raft_dir`].
pub fn pack_raft_image(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let Some(kind) = RAFT_FILES.iter().position(|n| n == name) else {
            continue;
        };
        let bytes = &bytes[..bytes.len().min(u16::MAX as usize)];
        out.push(kind as u8);
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The metadata log reader: a cluster directory built from `input` ([`raft_files`]) in
/// `scratch` is opened as a restarting broker does (the Raft log file, the log store with its
/// vote and hints, the state machine with its snapshot). Must not panic; a log file that opens
/// opens again the same, with nothing more cut.
pub fn raft_dir(input: &[u8], scratch: &Path) {
    if let Ok(rd) = std::fs::read_dir(scratch) {
        for ent in rd.flatten() {
            let _ = std::fs::remove_file(ent.path());
        }
    }
    for (name, bytes) in raft_files(input) {
        let _ = std::fs::write(scratch.join(name), bytes);
    }
    let path = scratch.join("raft.log");
    if let Ok((log, rec)) = LogFile::open(&path) {
        drop(log);
        let (_, again) = LogFile::open(&path).expect("a log file that opened once opens again");
        assert_eq!(again.cut_bytes, 0, "the second open cut more");
        assert_eq!(
            again.records, rec.records,
            "the second open read other records"
        );
        let ix: Vec<u64> = rec.records.iter().map(|(i, _)| *i).collect();
        assert!(
            ix.windows(2).all(|w| w[0] + 1 == w[1]),
            "indexes follow each other"
        );
    }
    let _ = LogStore::open(scratch);
    let _ = StateMachineStore::open(scratch);
}

/// A request frame (length prefix included) for `key` at `version` with a default body.
fn frame_of<T: Encodable + Default>(key: ApiKey, version: i16) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(handlers::sb("fuzz")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .ok()?;
    T::default().encode(&mut buf, version).ok()?;
    let mut framed = BytesMut::with_capacity(buf.len() + 4);
    framed.put_i32(i32::try_from(buf.len()).ok()?);
    framed.put_slice(&buf);
    Some(framed.to_vec())
}

/// Seeds of the request target: a default request of every served API at every served version
/// (one frame each), and ApiVersions then Metadata on one connection.
pub fn seed_kafka_requests() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    macro_rules! seed {
        ($($k:ident => $t:ty),* $(,)?) => {$(
            if let Some((min, max)) = versions::advertised(ApiKey::$k) {
                let decodable = <$t as Message>::VERSIONS;
                for v in min.max(decodable.min)..=max.min(decodable.max) {
                    seeds.extend(frame_of::<$t>(ApiKey::$k, v));
                }
            }
        )*};
    }
    served_apis!(seed);
    let mut two = frame_of::<ApiVersionsRequest>(ApiKey::ApiVersions, 3).unwrap_or_default();
    two.extend(frame_of::<MetadataRequest>(ApiKey::Metadata, 12).unwrap_or_default());
    seeds.push(two);
    seeds
}

/// Seeds of the cluster RPC target: one framed request of several kinds.
pub fn seed_cluster_rpc() -> Vec<Vec<u8>> {
    use crate::cluster::state::{BrokerRecord, BrokerState, Command};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    let broker = BrokerRecord {
        id: 1,
        host: "b1".into(),
        port: 9092,
        listeners: Vec::new(),
        cluster_addr: "b1:9093".into(),
        rack: None,
        state: BrokerState::Active,
        fresh_volume: false,
    };
    let entry = Entry::<crate::cluster::TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(2, 0), 5),
        payload: EntryPayload::Normal(Command::InitCluster {
            cluster_id: "c".into(),
        }),
    };
    let requests = [
        Request::Probe,
        Request::Join(broker.clone()),
        Request::JoinEmpty(broker),
        Request::RemoveNode(3),
        Request::Vote(openraft::raft::VoteRequest::new(Vote::new(2, 0), None)),
        Request::AppendEntries(openraft::raft::AppendEntriesRequest {
            vote: Vote::new_committed(2, 0),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 0), 4)),
            entries: vec![entry],
            leader_commit: None,
        }),
        Request::Forward(Command::SetBrokerState {
            id: 1,
            state: BrokerState::Active,
        }),
    ];
    requests
        .iter()
        .filter_map(|r| serde_json::to_vec(r).ok())
        .map(|body| {
            let mut f = (body.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            f
        })
        .collect()
}

/// Seeds of the metadata log target: a cluster directory with a few entries, a vote and hints,
/// written with the broker's own log file and JSON formats, and one with a snapshot.
pub fn seed_raft_dirs(scratch: &Path) -> Vec<Vec<u8>> {
    use crate::cluster::state::Command;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Vote};
    let mut seeds = Vec::new();
    for with_snapshot in [false, true] {
        if let Ok(rd) = std::fs::read_dir(scratch) {
            for ent in rd.flatten() {
                let _ = std::fs::remove_file(ent.path());
            }
        }
        let log_id = |i| LogId::new(CommittedLeaderId::new(1, 0), i);
        let Ok((mut file, _)) = LogFile::open(&scratch.join("raft.log")) else {
            continue;
        };
        let entries: Vec<(u64, Vec<u8>)> = (1..=3u64)
            .filter_map(|i| {
                let e = Entry::<crate::cluster::TypeConfig> {
                    log_id: log_id(i),
                    payload: if i == 1 {
                        EntryPayload::Blank
                    } else {
                        EntryPayload::Normal(Command::InitCluster {
                            cluster_id: format!("c{i}"),
                        })
                    },
                };
                serde_json::to_vec(&e).ok().map(|b| (i, b))
            })
            .collect();
        let _ = file.append(entries.iter().map(|(i, b)| (*i, b.as_slice())));
        drop(file);
        let _ = crate::cluster::logfile::write_atomic(
            &scratch.join("vote.json"),
            &serde_json::to_vec(&Vote::new_committed(1, 0)).unwrap_or_default(),
        );
        let _ = crate::cluster::logfile::write_atomic(
            &scratch.join("committed.json"),
            &serde_json::to_vec(&Some(log_id(3))).unwrap_or_default(),
        );
        if with_snapshot {
            if let Ok(mut sm) = StateMachineStore::open(scratch) {
                let _ = futures::executor::block_on(sm.build_snapshot());
            }
        }
        let files: Vec<(&str, Vec<u8>)> = RAFT_FILES
            .iter()
            .filter_map(|n| std::fs::read(scratch.join(n)).ok().map(|b| (*n, b)))
            .collect();
        seeds.push(pack_raft_image(&files));
    }
    seeds
}

/// The committed-offsets decoders. Mode byte (mod 3), then: 0, the records of
/// `__consumer_offsets` batches as a coordinator loads them (`group::records::decode_batches`;
/// what decodes re-encodes to the same records); 1, one record (`decode_record`: a u16 key
/// length, the key, the value, empty = tombstone); 2, the per-broker `offsets.log` of older
/// versions, read for the upgrade import (`group::legacy::read_for_import`) from `scratch`.
pub fn group_offsets(input: &[u8], scratch: &Path) {
    use crate::group::{legacy, records};
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(recs) = records::decode_batches(rest, 0) else {
                return;
            };
            let plain: Vec<records::OffsetRecord> = recs.into_iter().map(|(_, r)| r).collect();
            if plain.is_empty() {
                return;
            }
            if let Ok(again) = records::encode_batch(&plain, 0) {
                let back: Vec<records::OffsetRecord> = records::decode_batches(&again, 0)
                    .expect("a batch the coordinator encodes decodes")
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect();
                assert_eq!(back, plain, "records round-trip");
            }
        }
        1 => {
            let Some(l) = rest.get(..2) else { return };
            let klen = usize::from(u16::from_be_bytes([l[0], l[1]])).min(rest.len() - 2);
            let (key, value) = rest[2..].split_at(klen);
            let value = (!value.is_empty()).then_some(value);
            let _ = records::decode_record(0, key, value);
        }
        _ => {
            if let Ok(rd) = std::fs::read_dir(scratch) {
                for ent in rd.flatten() {
                    let _ = std::fs::remove_file(ent.path());
                }
            }
            let _ = std::fs::write(scratch.join(legacy::LOG_FILE), rest);
            let _ = legacy::read_for_import(scratch);
        }
    }
}

/// Seeds of the group-offsets target: a batch of commits, tombstones and memberships, one record, and a
/// legacy `offsets.log` written by the legacy store.
pub fn seed_group_offsets(scratch: &Path) -> Vec<Vec<u8>> {
    use crate::group::offsets::StoredOffset;
    use crate::group::{legacy, records};
    let value = |o| StoredOffset {
        offset: o,
        leader_epoch: 3,
        metadata: "m".into(),
        commit_timestamp_ms: 1_700_000_000_000,
    };
    let recs = vec![
        records::OffsetRecord::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: value(42),
        },
        records::OffsetRecord::Tombstone {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
        },
        records::OffsetRecord::Membership {
            group: "g".into(),
            membership: Some(Box::new(records::Membership {
                protocol_type: "consumer".into(),
                generation: 3,
                protocol: Some("range".into()),
                leader: Some("m".into()),
                state_timestamp_ms: 1_700_000_000_000,
                members: vec![records::MemberRecord {
                    member_id: "m".into(),
                    instance_id: Some("i".into()),
                    client_id: "c".into(),
                    client_host: "/h".into(),
                    rebalance_timeout_ms: 1,
                    session_timeout_ms: 2,
                    subscription: bytes::Bytes::from_static(b"s"),
                    assignment: bytes::Bytes::from_static(b"a"),
                }],
            })),
        },
        records::OffsetRecord::Membership {
            group: "h".into(),
            membership: None,
        },
    ];
    let mut seeds = Vec::new();
    if let Ok(b) = records::encode_batch(&recs, 1_700_000_000_000) {
        let mut s = vec![0u8];
        s.extend_from_slice(&b);
        seeds.push(s);
    }
    if let (Ok(k), Ok(Some(v))) = (
        records::encode_key(&recs[0]),
        records::encode_value(&recs[0]),
    ) {
        let mut s = vec![1u8];
        s.extend_from_slice(&(k.len() as u16).to_be_bytes());
        s.extend_from_slice(&k);
        s.extend_from_slice(&v);
        seeds.push(s);
    }
    if let Ok(rd) = std::fs::read_dir(scratch) {
        for ent in rd.flatten() {
            let _ = std::fs::remove_file(ent.path());
        }
    }
    if let Ok(store) = legacy::OffsetStore::open(scratch) {
        let _ = store.append(vec![
            legacy::OffsetRecord::Commit {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                value: value(7),
            },
            legacy::OffsetRecord::DeleteTopic {
                topic: "old".into(),
            },
        ]);
        let _ = store.sync();
        drop(store);
        if let Ok(b) = std::fs::read(scratch.join(legacy::LOG_FILE)) {
            let mut s = vec![2u8];
            s.extend_from_slice(&b);
            seeds.push(s);
        }
    }
    seeds
}

/// Every target's name, entry point and seeds, for the fuzz binaries and the seed writer.
pub const TARGETS: [&str; 7] = [
    "kafka_requests",
    "record_batches",
    "partition_dir",
    "cluster_rpc",
    "raft_dir",
    "epoch_cache",
    "group_offsets",
];

/// The seeds of target `name` (a scratch directory for the ones built on disk).
pub fn seeds(name: &str, scratch: &Path) -> Vec<Vec<u8>> {
    match name {
        "kafka_requests" => seed_kafka_requests(),
        "record_batches" => seed_record_batches(),
        "partition_dir" => seed_partition_dirs(scratch),
        "cluster_rpc" => seed_cluster_rpc(),
        "raft_dir" => seed_raft_dirs(scratch),
        "epoch_cache" => seed_epoch_caches(),
        "group_offsets" => seed_group_offsets(scratch),
        _ => Vec::new(),
    }
}

/// Runs target `name` on one input (`scratch`: an empty directory the file targets may use).
pub fn run(name: &str, input: &[u8], scratch: &Path) {
    match name {
        "kafka_requests" => kafka_requests(input),
        "record_batches" => record_batches(input),
        "partition_dir" => partition_dir(input, scratch),
        "cluster_rpc" => cluster_rpc(input),
        "raft_dir" => raft_dir(input, scratch),
        "epoch_cache" => epoch_cache(input),
        "group_offsets" => group_offsets(input, scratch),
        _ => panic!("unknown fuzz target {name}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kafka_protocol::protocol::Decodable;

    use super::*;

    /// Every seed of every target runs clean: the targets' checks hold on real data, so a
    /// failure in a campaign is the fuzzer's finding, not a broken target.
    #[test]
    fn every_seed_passes_its_target() {
        let scratch = tempfile::tempdir().unwrap();
        for name in TARGETS {
            let seeds = seeds(name, scratch.path());
            assert!(!seeds.is_empty(), "{name} has seeds");
            for s in &seeds {
                run(name, s, scratch.path());
            }
        }
    }

    /// The request target decodes every API the broker serves, at every served version: an
    /// API added to `dispatch` without a line in `served_apis!` fails here.
    #[test]
    fn every_served_version_decodes_through_the_request_target() {
        for key in versions::SUPPORTED_APIS {
            let (min, max) = versions::advertised(*key).unwrap();
            for v in
                min.max(versions::PRODUCE_MIN_SERVED * i16::from(*key == ApiKey::Produce))..=max
            {
                let frames: Vec<Vec<u8>> = seed_kafka_requests()
                    .into_iter()
                    .filter(|f| {
                        f.len() >= 8
                            && f.len() == 4 + i32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize
                            && i16::from_be_bytes([f[4], f[5]]) == *key as i16
                            && i16::from_be_bytes([f[6], f[7]]) == v
                    })
                    .collect();
                assert_eq!(frames.len(), 1, "{key:?} v{v} has one seed");
                let frame = Bytes::copy_from_slice(&frames[0][4..]);
                kafka_request(frame).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
            }
        }
    }

    /// The raw bodies the request target decodes are those the crate decodes too.
    #[test]
    fn a_request_decodes_like_the_crate_decodes_it() {
        let frame = frame_of::<MetadataRequest>(ApiKey::Metadata, 12).unwrap();
        let mut body = Bytes::copy_from_slice(&frame[4..]);
        let raw = codec::peek_header(peer(), &body).unwrap();
        codec::decode_header(peer(), ApiKey::Metadata, raw, &mut body).unwrap();
        assert!(MetadataRequest::decode(&mut body, 12).is_ok());
    }
}
