//! The guard's table against the crate, at every version of every API, and its refusals.

use super::schema::{parse, schema, Field, Schema, Ty};
use super::table::SCHEMA;
use super::walk::join_path;
use super::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Request;

use crate::protocol::versions;

/// Every request type the broker decodes: the served APIs (protocol::versions) and
/// the ones answered with an error (handlers::unserved).
macro_rules! for_each_request {
    ($m:ident) => {
        $m!(ProduceRequest);
        $m!(FetchRequest);
        $m!(ListOffsetsRequest);
        $m!(MetadataRequest);
        $m!(OffsetCommitRequest);
        $m!(OffsetFetchRequest);
        $m!(FindCoordinatorRequest);
        $m!(JoinGroupRequest);
        $m!(HeartbeatRequest);
        $m!(LeaveGroupRequest);
        $m!(SyncGroupRequest);
        $m!(DescribeGroupsRequest);
        $m!(ListGroupsRequest);
        $m!(SaslHandshakeRequest);
        $m!(ApiVersionsRequest);
        $m!(CreateTopicsRequest);
        $m!(DeleteTopicsRequest);
        $m!(DeleteRecordsRequest);
        $m!(InitProducerIdRequest);
        $m!(OffsetForLeaderEpochRequest);
        $m!(AddPartitionsToTxnRequest);
        $m!(AddOffsetsToTxnRequest);
        $m!(EndTxnRequest);
        $m!(WriteTxnMarkersRequest);
        $m!(TxnOffsetCommitRequest);
        $m!(DescribeAclsRequest);
        $m!(CreateAclsRequest);
        $m!(DeleteAclsRequest);
        $m!(DescribeConfigsRequest);
        $m!(AlterConfigsRequest);
        $m!(AlterReplicaLogDirsRequest);
        $m!(DescribeLogDirsRequest);
        $m!(SaslAuthenticateRequest);
        $m!(CreatePartitionsRequest);
        $m!(CreateDelegationTokenRequest);
        $m!(RenewDelegationTokenRequest);
        $m!(ExpireDelegationTokenRequest);
        $m!(DescribeDelegationTokenRequest);
        $m!(DeleteGroupsRequest);
        $m!(ElectLeadersRequest);
        $m!(IncrementalAlterConfigsRequest);
        $m!(AlterPartitionReassignmentsRequest);
        $m!(ListPartitionReassignmentsRequest);
        $m!(OffsetDeleteRequest);
        $m!(DescribeClientQuotasRequest);
        $m!(AlterClientQuotasRequest);
        $m!(DescribeUserScramCredentialsRequest);
        $m!(AlterUserScramCredentialsRequest);
        $m!(DescribeQuorumRequest);
        $m!(UpdateFeaturesRequest);
        $m!(DescribeClusterRequest);
        $m!(DescribeProducersRequest);
        $m!(UnregisterBrokerRequest);
        $m!(DescribeTransactionsRequest);
        $m!(ListTransactionsRequest);
        $m!(ConsumerGroupHeartbeatRequest);
        $m!(ConsumerGroupDescribeRequest);
        $m!(GetTelemetrySubscriptionsRequest);
        $m!(PushTelemetryRequest);
        $m!(ListConfigResourcesRequest);
        $m!(DescribeTopicPartitionsRequest);
        $m!(ShareGroupHeartbeatRequest);
        $m!(ShareGroupDescribeRequest);
        $m!(ShareFetchRequest);
        $m!(ShareAcknowledgeRequest);
        $m!(DescribeShareGroupOffsetsRequest);
        $m!(AlterShareGroupOffsetsRequest);
        $m!(DeleteShareGroupOffsetsRequest);
    };
}

/// Writes a request of the table's structure: every array with two elements, every
/// string and bytes value `"ab"`, every number 1, every optional struct and every known
/// tagged field present. The `poison`-th length prefix (in write order) instead claims
/// far more than the frame holds; its field path is recorded.
struct Gen<'s> {
    schema: &'s Schema,
    version: i16,
    flexible: bool,
    poison: Option<usize>,
    seen: usize,
    path: Vec<String>,
    poisoned: Option<String>,
}

impl Gen<'_> {
    fn uvarint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Writes a length prefix of `n` (or a huge one when this is the poisoned prefix).
    fn length(&mut self, out: &mut Vec<u8>, n: u32, wide: bool) {
        let poisoned = self.poison == Some(self.seen);
        self.seen += 1;
        if poisoned {
            self.poisoned = Some(join_path(self.path.iter().map(String::as_str)));
        }
        match (self.flexible, wide, poisoned) {
            (true, _, false) => Self::uvarint(out, n + 1),
            (true, _, true) => Self::uvarint(out, u32::MAX),
            (false, true, false) => out.extend_from_slice(&(n as i32).to_be_bytes()),
            (false, true, true) => out.extend_from_slice(&i32::MAX.to_be_bytes()),
            (false, false, false) => out.extend_from_slice(&(n as i16).to_be_bytes()),
            (false, false, true) => out.extend_from_slice(&i16::MAX.to_be_bytes()),
        }
    }

    fn gen_struct(&mut self, idx: usize, out: &mut Vec<u8>) {
        let schema = self.schema;
        let version = self.version;
        let def = &schema.structs[idx];
        for f in def
            .fields
            .iter()
            .filter(|f| f.tag.is_none() && f.present(version))
        {
            self.path.push(f.name.to_string());
            self.gen_ty(&f.ty, out);
            self.path.pop();
        }
        if !self.flexible {
            return;
        }
        let mut tagged: Vec<&Field> = def
            .fields
            .iter()
            .filter(|f| f.tag.is_some() && f.present(version))
            .collect();
        tagged.sort_by_key(|f| f.tag);
        Self::uvarint(out, tagged.len() as u32);
        for f in tagged {
            let mut value = Vec::new();
            self.path.push(f.name.to_string());
            self.gen_ty(&f.ty, &mut value);
            self.path.pop();
            Self::uvarint(out, f.tag.unwrap_or_default());
            Self::uvarint(out, value.len() as u32);
            out.extend_from_slice(&value);
        }
    }

    fn gen_ty(&mut self, ty: &Ty, out: &mut Vec<u8>) {
        match ty {
            Ty::Fixed(n) => {
                out.extend(std::iter::repeat_n(0u8, n - 1));
                out.push(1);
            }
            Ty::Str | Ty::Bytes => {
                self.length(out, 2, *ty == Ty::Bytes);
                out.extend_from_slice(b"ab");
            }
            Ty::Array(elem) => {
                self.length(out, 2, true);
                for i in 0..2 {
                    self.path.push(format!("[{i}]"));
                    self.gen_ty(elem, out);
                    self.path.pop();
                }
            }
            Ty::Struct(idx) => self.gen_struct(*idx, out),
            Ty::OptStruct(idx) => {
                out.push(1);
                self.gen_struct(*idx, out);
            }
        }
    }
}

fn generate(key: i16, version: i16, poison: Option<usize>) -> (Vec<u8>, Option<String>) {
    let schema = schema();
    let api = schema.api(key, version).expect("api in table");
    let mut g = Gen {
        schema,
        version,
        flexible: api.flex.is_some_and(|f| version >= f),
        poison,
        seen: 0,
        path: Vec::new(),
        poisoned: None,
    };
    let mut out = Vec::new();
    g.gen_struct(api.root, &mut out);
    (out, g.poisoned)
}

/// Checks the table against the crate for every version `R` decodes; returns how many
/// poisoned frames were refused.
fn check_against_crate<R: Request + Default>() -> usize {
    let name = std::any::type_name::<R>();
    let key = R::KEY;
    let api = schema()
        .apis
        .get(&key)
        .unwrap_or_else(|| panic!("{name}: no table"));
    assert_eq!(
        (api.min, api.max),
        (R::VERSIONS.min, R::VERSIONS.max),
        "{name}: the table covers exactly the versions the crate decodes"
    );
    let mut refused = 0;
    for v in R::VERSIONS.min..=R::VERSIONS.max {
        // The crate's encoding of a default request.
        let mut buf = BytesMut::new();
        R::default()
            .encode(&mut buf, v)
            .unwrap_or_else(|e| panic!("{name} v{v}: encode default: {e:#}"));
        assert_eq!(
            check(key, v, &buf),
            Ok(buf.len()),
            "{name} v{v}: default request walked to its end"
        );

        // A populated request: the crate must read exactly these bytes and write them
        // back unchanged, so the table and the crate agree on every field at this version.
        let (populated, _) = generate(key, v, None);
        let mut bytes = Bytes::from(populated.clone());
        let decoded = R::decode(&mut bytes, v)
            .unwrap_or_else(|e| panic!("{name} v{v}: crate decodes the populated body: {e:#}"));
        assert!(
            bytes.is_empty(),
            "{name} v{v}: crate left {} bytes of the populated body",
            bytes.len()
        );
        let mut again = BytesMut::new();
        decoded
            .encode(&mut again, v)
            .unwrap_or_else(|e| panic!("{name} v{v}: re-encode: {e:#}"));
        assert_eq!(
            &again[..],
            &populated[..],
            "{name} v{v}: crate re-encodes the populated body byte for byte"
        );
        assert_eq!(
            check(key, v, &again),
            Ok(again.len()),
            "{name} v{v}: populated request walked to its end"
        );

        // Each length prefix in turn claims too much: refused, naming that field.
        for poison in 0.. {
            let (bad, path) = generate(key, v, Some(poison));
            let Some(path) = path else { break };
            match check(key, v, &bad) {
                Err(GuardError::TooLong { field, .. }) => {
                    assert_eq!(field, path, "{name} v{v}: refusal names the field")
                }
                other => panic!("{name} v{v}: huge length at {path}: {other:?}"),
            }
            refused += 1;
        }
    }
    refused
}

#[test]
fn schema_table_parses() {
    let s = parse(SCHEMA).expect("parses");
    assert_eq!(s.apis.len(), 68);
}

#[test]
fn table_matches_the_crate_at_every_version_and_refuses_every_huge_length() {
    let mut apis = 0;
    let mut refused = 0;
    macro_rules! one {
        ($t:ty) => {
            refused += check_against_crate::<$t>();
            apis += 1;
        };
    }
    for_each_request!(one);
    eprintln!("{apis} APIs checked, {refused} poisoned frames refused");
    assert_eq!(apis, schema().apis.len(), "every table entry is checked");
    assert!(refused > 1000, "{refused} poisoned frames refused");
}

#[test]
fn every_served_version_has_a_table() {
    for key in versions::SUPPORTED_APIS {
        let (min, max) = versions::advertised(*key).expect("served");
        // Produce v0-v2 are refused without decoding (v2 is decoded as v3).
        let min = if *key == ApiKey::Produce {
            versions::PRODUCE_MIN_SERVED
        } else {
            min
        };
        for v in min..=max {
            assert!(schema().api(*key as i16, v).is_some(), "{key:?} v{v}");
        }
    }
}

#[test]
fn huge_metadata_topic_counts_are_refused_classic_and_compact() {
    let classic = [0x7f, 0xff, 0xff, 0xff];
    let e = check(3, 0, &classic).expect_err("classic");
    assert_eq!(
        e.to_string(),
        "Metadata v0: topics claims 2147483647 elements but only 0 bytes remain"
    );
    // v12: compact count 0xffffffff - 1, then the request's other fields.
    let compact = [0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0, 0];
    let e = check(3, 12, &compact).expect_err("compact");
    assert!(
        matches!(&e, GuardError::TooLong { field, claimed: 4294967294, remaining: 3, .. } if field == "topics"),
        "{e}"
    );
}

#[test]
fn nested_huge_counts_name_the_path() {
    // Produce v3: transactional id null, acks, timeout, one topic "t" whose partition
    // array claims a billion elements.
    let mut body = vec![0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b't'];
    body.extend_from_slice(&1_000_000_000i32.to_be_bytes());
    let e = check(0, 3, &body).expect_err("nested");
    assert_eq!(
        e.to_string(),
        "Produce v3: topic_data[0].partition_data claims 1000000000 elements but only 0 bytes remain"
    );
}

#[test]
fn truncated_and_unknown_bodies_are_refused() {
    assert!(matches!(
        check(3, 0, &[0, 0, 0, 1, 0]),
        Err(GuardError::Truncated { .. })
    ));
    assert_eq!(
        check(9999, 0, &[]),
        Err(GuardError::NoSchema {
            api_key: 9999,
            version: 0
        })
    );
    assert!(matches!(
        check(3, 12, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        Err(GuardError::BadVarint { .. })
    ));
}

#[test]
fn known_tagged_fields_must_fill_their_declared_size() {
    // Fetch v12 with tagged field 0 (cluster id) declaring 5 bytes but holding a
    // 1-byte string and 4 bytes of something else.
    let mut body = vec![0u8; 17]; // replica id, max wait, min bytes, max bytes, isolation
    body.extend_from_slice(&[0; 8]); // session id, epoch
    body.extend_from_slice(&[1, 1, 1]); // topics, forgotten, rack id: empty
    body.extend_from_slice(&[1, 0, 5, 2, b'x', 0, 0, 0]);
    let e = check(1, 12, &body).expect_err("tag size");
    assert!(
        matches!(
            e,
            GuardError::TagSize {
                declared: 5,
                used: 2,
                ..
            }
        ),
        "{e}"
    );
}
