//! Known APIs this broker does not serve, answered with an error instead of a closed
//! connection: a client that sends one anyway gets a response at the request's version and
//! keeps its connection. `UNSERVED` lists them, one line each with the error it gets.
//!
//! The codes follow what Kafka answers when the feature is off: SASL requests on a listener
//! without SASL (or after authentication) get UNSUPPORTED_SASL_MECHANISM / ILLEGAL_SASL_STATE
//! (on SASL listeners `handlers::sasl` serves them); delegation tokens
//! DELEGATION_TOKEN_REQUEST_NOT_ALLOWED (Kafka refuses them on a plaintext listener); ACL
//! requests SECURITY_DISABLED without `--authorizer acl` (they are also advertised, see
//! `protocol::versions::ACL_APIS`); the lines of APIs that are served (reassignments, SCRAM
//! credentials, ACLs with an authorizer) are used only when a client sends a version the
//! broker does not serve; everything else UNSUPPORTED_VERSION. A response with a top-level error code carries it
//! there; one whose errors are per item (per partition, per ACL, per group, ...) has every
//! item of the request answered with it.
//!
//! APIs that only controllers or other brokers send (Raft votes, broker registration,
//! Envelope, share-group state, ...) are not listed and still close the
//! connection, as Kafka does for an API not exposed on a listener; so does a version the
//! crate does not decode.

use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};

use super::codes::UNSUPPORTED_VERSION;
use crate::error::BrokerError;
use crate::protocol::codec::{self, respond, RawHeader};

use super::sasl::{ILLEGAL_SASL_STATE, UNSUPPORTED_SASL_MECHANISM};
/// Kafka's SECURITY_DISABLED.
pub const SECURITY_DISABLED: i16 = 54;
/// Kafka's DELEGATION_TOKEN_REQUEST_NOT_ALLOWED.
const DELEGATION_TOKEN_REQUEST_NOT_ALLOWED: i16 = 64;

/// Every API answered with an error, and the error.
const UNSERVED: &[Unserved] = &[
    refuse::<SaslHandshakeRequest>(UNSUPPORTED_SASL_MECHANISM),
    refuse::<SaslAuthenticateRequest>(ILLEGAL_SASL_STATE),
    refuse::<CreateDelegationTokenRequest>(DELEGATION_TOKEN_REQUEST_NOT_ALLOWED),
    refuse::<RenewDelegationTokenRequest>(DELEGATION_TOKEN_REQUEST_NOT_ALLOWED),
    refuse::<ExpireDelegationTokenRequest>(DELEGATION_TOKEN_REQUEST_NOT_ALLOWED),
    refuse::<DescribeDelegationTokenRequest>(DELEGATION_TOKEN_REQUEST_NOT_ALLOWED),
    refuse::<DescribeAclsRequest>(SECURITY_DISABLED),
    refuse::<CreateAclsRequest>(SECURITY_DISABLED),
    refuse::<DeleteAclsRequest>(SECURITY_DISABLED),
    refuse::<DescribeClientQuotasRequest>(UNSUPPORTED_VERSION),
    refuse::<AlterClientQuotasRequest>(UNSUPPORTED_VERSION),
    refuse::<DescribeUserScramCredentialsRequest>(UNSUPPORTED_VERSION),
    refuse::<AlterUserScramCredentialsRequest>(UNSUPPORTED_VERSION),
    refuse::<AlterReplicaLogDirsRequest>(UNSUPPORTED_VERSION),
    refuse::<ListPartitionReassignmentsRequest>(UNSUPPORTED_VERSION),
    refuse::<AlterPartitionReassignmentsRequest>(UNSUPPORTED_VERSION),
    refuse::<ShareGroupHeartbeatRequest>(UNSUPPORTED_VERSION),
    refuse::<ShareGroupDescribeRequest>(UNSUPPORTED_VERSION),
    refuse::<ShareFetchRequest>(UNSUPPORTED_VERSION),
    refuse::<ShareAcknowledgeRequest>(UNSUPPORTED_VERSION),
    refuse::<DescribeShareGroupOffsetsRequest>(UNSUPPORTED_VERSION),
    refuse::<AlterShareGroupOffsetsRequest>(UNSUPPORTED_VERSION),
    refuse::<DeleteShareGroupOffsetsRequest>(UNSUPPORTED_VERSION),
    refuse::<GetTelemetrySubscriptionsRequest>(UNSUPPORTED_VERSION),
    refuse::<PushTelemetryRequest>(UNSUPPORTED_VERSION),
    refuse::<UpdateFeaturesRequest>(UNSUPPORTED_VERSION),
    refuse::<ListConfigResourcesRequest>(UNSUPPORTED_VERSION),
];

/// Answers `key` when `UNSERVED` lists it and `raw.api_version` is one the crate decodes;
/// `None` otherwise (the caller closes the connection).
pub fn answer(
    peer: SocketAddr,
    key: ApiKey,
    raw: RawHeader,
    body: &mut Bytes,
) -> Result<Option<Bytes>, BrokerError> {
    match UNSERVED.iter().find(|u| u.key == key as i16) {
        Some(u) => (u.answer)(peer, key, raw, body, u.code),
        None => Ok(None),
    }
}

/// One line of [`UNSERVED`]: requests of API `key` are answered `code` by `answer`.
struct Unserved {
    key: i16,
    code: i16,
    answer: Answer,
}

type Answer =
    fn(SocketAddr, ApiKey, RawHeader, &mut Bytes, i16) -> Result<Option<Bytes>, BrokerError>;

/// The line for requests of `R`: answered with `code`, as `R`'s [`Refuse`] impl shapes it.
const fn refuse<R: Refuse>(code: i16) -> Unserved {
    Unserved {
        key: R::KEY,
        code,
        answer: answer_with::<R>,
    }
}

/// Decodes a request of `R` (when its version is one the crate decodes) and answers it with
/// `code`.
fn answer_with<R: Refuse>(
    peer: SocketAddr,
    key: ApiKey,
    raw: RawHeader,
    body: &mut Bytes,
    code: i16,
) -> Result<Option<Bytes>, BrokerError> {
    let range = R::VERSIONS;
    if raw.api_version < range.min || raw.api_version > range.max {
        return Ok(None);
    }
    codec::decode_header(peer, key, raw, body)?;
    let req: R = codec::decode_body(peer, raw, body)?;
    respond(raw, &req.refuse(code, raw.api_version)).map(Some)
}

/// A request this broker answers with one error code: at the top level of the response, or
/// on every item of the request.
trait Refuse: Request {
    fn refuse(self, code: i16, version: i16) -> Self::Response;
}

/// Requests whose response has a top-level error code: the default response with it set.
macro_rules! refused_as_a_whole {
    ($($req:ty),* $(,)?) => {$(
        impl Refuse for $req {
            fn refuse(self, code: i16, _: i16) -> Self::Response {
                <$req as Request>::Response::default().with_error_code(code)
            }
        }
    )*};
}

refused_as_a_whole!(
    SaslHandshakeRequest,
    SaslAuthenticateRequest,
    CreateDelegationTokenRequest,
    RenewDelegationTokenRequest,
    ExpireDelegationTokenRequest,
    DescribeDelegationTokenRequest,
    DescribeClientQuotasRequest,
    DescribeUserScramCredentialsRequest,
    ListPartitionReassignmentsRequest,
    AlterPartitionReassignmentsRequest,
    ConsumerGroupHeartbeatRequest,
    ShareGroupHeartbeatRequest,
    ShareFetchRequest,
    ShareAcknowledgeRequest,
    AlterShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsRequest,
    GetTelemetrySubscriptionsRequest,
    PushTelemetryRequest,
    UpdateFeaturesRequest,
    ListConfigResourcesRequest,
);

fn msg(s: &'static str) -> Option<StrBytes> {
    Some(StrBytes::from_static_str(s))
}

/// `f` applied to every item: one answer per item of the request.
fn each<T, U>(items: Vec<T>, f: impl FnMut(T) -> U) -> Vec<U> {
    items.into_iter().map(f).collect()
}

impl Refuse for DescribeAclsRequest {
    fn refuse(self, code: i16, _: i16) -> DescribeAclsResponse {
        DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(msg("No Authorizer is configured."))
    }
}

impl Refuse for CreateAclsRequest {
    fn refuse(self, code: i16, _: i16) -> CreateAclsResponse {
        use create_acls_response::AclCreationResult;
        CreateAclsResponse::default().with_results(each(self.creations, |_| {
            AclCreationResult::default()
                .with_error_code(code)
                .with_error_message(msg("No Authorizer is configured."))
        }))
    }
}

impl Refuse for DeleteAclsRequest {
    fn refuse(self, code: i16, _: i16) -> DeleteAclsResponse {
        use delete_acls_response::DeleteAclsFilterResult;
        DeleteAclsResponse::default().with_filter_results(each(self.filters, |_| {
            DeleteAclsFilterResult::default()
                .with_error_code(code)
                .with_error_message(msg("No Authorizer is configured."))
        }))
    }
}

impl Refuse for AlterReplicaLogDirsRequest {
    fn refuse(self, code: i16, _: i16) -> AlterReplicaLogDirsResponse {
        use alter_replica_log_dirs_response::{
            AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
        };
        let topics = self.dirs.into_iter().flat_map(|d| d.topics).collect();
        AlterReplicaLogDirsResponse::default().with_results(each(topics, |t| {
            AlterReplicaLogDirTopicResult::default()
                .with_topic_name(t.name)
                .with_partitions(each(t.partitions, |p| {
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code)
                }))
        }))
    }
}

impl Refuse for AlterClientQuotasRequest {
    fn refuse(self, code: i16, _: i16) -> AlterClientQuotasResponse {
        use alter_client_quotas_response::{EntityData, EntryData};
        AlterClientQuotasResponse::default().with_entries(each(self.entries, |e| {
            EntryData::default()
                .with_error_code(code)
                .with_entity(each(e.entity, |d| {
                    EntityData::default()
                        .with_entity_type(d.entity_type)
                        .with_entity_name(d.entity_name)
                }))
        }))
    }
}

impl Refuse for AlterUserScramCredentialsRequest {
    fn refuse(self, code: i16, _: i16) -> AlterUserScramCredentialsResponse {
        use alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
        let mut users: Vec<StrBytes> = self.deletions.into_iter().map(|d| d.name).collect();
        users.extend(self.upsertions.into_iter().map(|u| u.name));
        users.dedup();
        AlterUserScramCredentialsResponse::default().with_results(each(users, |u| {
            AlterUserScramCredentialsResult::default()
                .with_user(u)
                .with_error_code(code)
        }))
    }
}

impl Refuse for ShareGroupDescribeRequest {
    fn refuse(self, code: i16, _: i16) -> ShareGroupDescribeResponse {
        use share_group_describe_response::DescribedGroup;
        ShareGroupDescribeResponse::default().with_groups(each(self.group_ids, |g| {
            DescribedGroup::default()
                .with_group_id(g)
                .with_error_code(code)
        }))
    }
}

impl Refuse for DescribeShareGroupOffsetsRequest {
    fn refuse(self, code: i16, _: i16) -> DescribeShareGroupOffsetsResponse {
        use describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup;
        DescribeShareGroupOffsetsResponse::default().with_groups(each(self.groups, |g| {
            DescribeShareGroupOffsetsResponseGroup::default()
                .with_group_id(g.group_id)
                .with_error_code(code)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable, Message};

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    /// Encodes `req` as a request frame of `key` at every version the crate knows, feeds it to
    /// [`answer`] and decodes the response at the same version.
    fn answered_at_every_version<R, S>(key: ApiKey, req: &R) -> Vec<S>
    where
        R: Encodable + Message,
        S: Decodable + Message,
    {
        answered_at_each_version(key, |_| req)
    }

    /// As [`answered_at_every_version`], with the request built for each version.
    fn answered_at_each_version<'a, R, S>(key: ApiKey, req: impl Fn(i16) -> &'a R) -> Vec<S>
    where
        R: Encodable + Message + 'a,
        S: Decodable + Message,
    {
        let mut out = Vec::new();
        for v in R::VERSIONS.min..=R::VERSIONS.max {
            let mut buf = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(v)
                .with_correlation_id(11)
                .encode(&mut buf, key.request_header_version(v))
                .expect("header");
            req(v).encode(&mut buf, v).expect("body");
            let bytes = buf.freeze();
            let raw = codec::peek_header(peer(), &bytes).expect("peek");
            let mut body = bytes;
            let reply = answer(peer(), key, raw, &mut body)
                .unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"))
                .unwrap_or_else(|| panic!("{key:?} v{v} not answered"));
            let mut frame = reply.slice(4..);
            let header = ResponseHeader::decode(&mut frame, key.response_header_version(v))
                .expect("response header");
            assert_eq!(header.correlation_id, 11, "{key:?} v{v}");
            out.push(S::decode(&mut frame, v).expect("response body"));
        }
        out
    }

    fn tn(s: &str) -> TopicName {
        TopicName(StrBytes::from_string(s.to_string()))
    }

    #[test]
    fn every_per_item_api_answers_at_every_version() {
        answered_at_every_version::<_, CreateAclsResponse>(
            ApiKey::CreateAcls,
            &CreateAclsRequest::default(),
        );
        answered_at_every_version::<_, DeleteAclsResponse>(
            ApiKey::DeleteAcls,
            &DeleteAclsRequest::default(),
        );
        let ar = AlterReplicaLogDirsRequest::default().with_dirs(vec![
            alter_replica_log_dirs_request::AlterReplicaLogDir::default().with_topics(vec![
                alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![4]),
            ]),
        ]);
        for r in answered_at_every_version::<_, AlterReplicaLogDirsResponse>(
            ApiKey::AlterReplicaLogDirs,
            &ar,
        ) {
            assert_eq!(r.results[0].partitions[0].error_code, 35);
        }
        let aq = AlterClientQuotasRequest::default()
            .with_entries(vec![alter_client_quotas_request::EntryData::default()]);
        for r in answered_at_every_version::<_, AlterClientQuotasResponse>(
            ApiKey::AlterClientQuotas,
            &aq,
        ) {
            assert_eq!(r.entries[0].error_code, 35);
        }
        let sc = AlterUserScramCredentialsRequest::default().with_deletions(vec![
            alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                .with_name(StrBytes::from_static_str("alice")),
        ]);
        for r in answered_at_every_version::<_, AlterUserScramCredentialsResponse>(
            ApiKey::AlterUserScramCredentials,
            &sc,
        ) {
            assert_eq!(
                (r.results[0].user.as_str(), r.results[0].error_code),
                ("alice", 35)
            );
        }
        let g = vec![GroupId(StrBytes::from_static_str("g"))];
        let sg = ShareGroupDescribeRequest::default().with_group_ids(g);
        for r in answered_at_every_version::<_, ShareGroupDescribeResponse>(
            ApiKey::ShareGroupDescribe,
            &sg,
        ) {
            assert_eq!(r.groups[0].error_code, 35);
        }
        let so = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("sg"))),
        ]);
        for r in answered_at_every_version::<_, DescribeShareGroupOffsetsResponse>(
            ApiKey::DescribeShareGroupOffsets,
            &so,
        ) {
            assert_eq!(
                (r.groups[0].group_id.as_str(), r.groups[0].error_code),
                ("sg", 35)
            );
        }
    }

    #[test]
    fn acl_changes_answer_security_disabled_per_item() {
        use kafka_protocol::messages::create_acls_request::AclCreation;
        use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
        let req = CreateAclsRequest::default()
            .with_creations(vec![AclCreation::default(), AclCreation::default()]);
        for r in answered_at_every_version::<_, CreateAclsResponse>(ApiKey::CreateAcls, &req) {
            let got: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
            assert_eq!(got, vec![SECURITY_DISABLED; 2]);
        }
        let req = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()]);
        for r in answered_at_every_version::<_, DeleteAclsResponse>(ApiKey::DeleteAcls, &req) {
            let got: Vec<i16> = r.filter_results.iter().map(|x| x.error_code).collect();
            assert_eq!(got, vec![SECURITY_DISABLED]);
        }
    }

    fn frame<R: Encodable + Message + Default>(key: ApiKey, version: i16) -> (RawHeader, Bytes) {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .encode(&mut buf, key.request_header_version(version))
            .expect("header");
        R::default().encode(&mut buf, version).expect("body");
        let bytes = buf.freeze();
        let raw = codec::peek_header(peer(), &bytes).expect("peek");
        (raw, bytes)
    }

    fn answered<R: Encodable + Message + Default>(key: ApiKey) {
        for v in R::VERSIONS.min..=R::VERSIONS.max {
            let (raw, mut body) = frame::<R>(key, v);
            let reply =
                answer(peer(), key, raw, &mut body).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
            let bytes = reply.unwrap_or_else(|| panic!("{key:?} v{v} not answered"));
            assert_eq!(
                &bytes[4..8],
                &7i32.to_be_bytes(),
                "{key:?} v{v} correlation id"
            );
        }
    }

    #[test]
    fn unserved_apis_with_a_top_level_error_code_are_answered_at_every_version() {
        answered::<SaslHandshakeRequest>(ApiKey::SaslHandshake);
        answered::<SaslAuthenticateRequest>(ApiKey::SaslAuthenticate);
        answered::<DescribeAclsRequest>(ApiKey::DescribeAcls);
        answered::<DescribeClientQuotasRequest>(ApiKey::DescribeClientQuotas);
        answered::<DescribeUserScramCredentialsRequest>(ApiKey::DescribeUserScramCredentials);
        answered::<ListPartitionReassignmentsRequest>(ApiKey::ListPartitionReassignments);
        answered::<AlterPartitionReassignmentsRequest>(ApiKey::AlterPartitionReassignments);
        answered::<ShareGroupHeartbeatRequest>(ApiKey::ShareGroupHeartbeat);
        answered::<GetTelemetrySubscriptionsRequest>(ApiKey::GetTelemetrySubscriptions);
        answered::<PushTelemetryRequest>(ApiKey::PushTelemetry);
        answered::<UpdateFeaturesRequest>(ApiKey::UpdateFeatures);
        answered::<CreateDelegationTokenRequest>(ApiKey::CreateDelegationToken);
        answered::<RenewDelegationTokenRequest>(ApiKey::RenewDelegationToken);
        answered::<ExpireDelegationTokenRequest>(ApiKey::ExpireDelegationToken);
        answered::<DescribeDelegationTokenRequest>(ApiKey::DescribeDelegationToken);
        answered::<ShareFetchRequest>(ApiKey::ShareFetch);
        answered::<ShareAcknowledgeRequest>(ApiKey::ShareAcknowledge);
        answered::<ListConfigResourcesRequest>(ApiKey::ListConfigResources);
        answered::<AlterShareGroupOffsetsRequest>(ApiKey::AlterShareGroupOffsets);
        answered::<DeleteShareGroupOffsetsRequest>(ApiKey::DeleteShareGroupOffsets);
    }

    #[test]
    fn other_unserved_apis_are_left_to_the_caller() {
        let (raw, mut body) = frame::<DeleteRecordsRequest>(ApiKey::DeleteRecords, 2);
        assert!(answer(peer(), ApiKey::DeleteRecords, raw, &mut body)
            .expect("no error")
            .is_none());
    }

    #[test]
    fn each_unserved_api_is_listed_once() {
        let mut keys: Vec<i16> = UNSERVED.iter().map(|u| u.key).collect();
        keys.sort_unstable();
        let listed = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), listed);
    }
}
