//! Known APIs this broker does not serve (and does not advertise) whose responses carry their
//! errors per item (per partition, per ACL, ...) rather than at the top level: each item of the
//! request is answered with the error, at the request's version, so a client that sends one
//! anyway gets a response and keeps its connection.
//!
//! The codes follow what Kafka answers when the feature is off: ACL requests get
//! SECURITY_DISABLED (no authorizer is configured); transactional requests get
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as InitProducerId does for a transactional id here;
//! everything else (AlterReplicaLogDirs, quotas, SCRAM credentials, the KIP-848 / share group
//! describes, share group offsets, DescribeTopicPartitions) UNSUPPORTED_VERSION. The ACL
//! requests are also advertised (see `protocol::versions::ACL_APIS`). APIs that only controllers or
//! other brokers send (Raft votes, broker registration, Envelope, WriteTxnMarkers, share-group
//! state, ...) still close the connection, as Kafka does for an API not exposed on a listener.

use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, StrBytes};

use super::codes;
use crate::error::BrokerError;
use crate::protocol::codec::{self, respond, RawHeader};

/// Kafka's SECURITY_DISABLED.
pub const SECURITY_DISABLED: i16 = 54;

fn msg(s: &'static str) -> Option<StrBytes> {
    Some(StrBytes::from_static_str(s))
}

/// Answers `key` when it is one of the per-item APIs above and `raw.api_version` is one the
/// crate decodes; `None` otherwise (the caller closes the connection).
pub fn answer(
    peer: SocketAddr,
    key: ApiKey,
    raw: RawHeader,
    body: &mut Bytes,
) -> Result<Option<Bytes>, BrokerError> {
    let v = raw.api_version;
    macro_rules! decode {
        ($req:ty) => {{
            let range = <$req as Message>::VERSIONS;
            if v < range.min || v > range.max {
                return Ok(None);
            }
            codec::decode_header(peer, key, raw, body)?;
            let req: $req = codec::decode_body(peer, raw, body)?;
            req
        }};
    }
    let reply = match key {
        ApiKey::CreateAcls => {
            let req = decode!(CreateAclsRequest);
            let results = req
                .creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(SECURITY_DISABLED)
                        .with_error_message(msg("No Authorizer is configured."))
                })
                .collect();
            respond(raw, &CreateAclsResponse::default().with_results(results))?
        }
        ApiKey::DeleteAcls => {
            let req = decode!(DeleteAclsRequest);
            let results = req
                .filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(SECURITY_DISABLED)
                        .with_error_message(msg("No Authorizer is configured."))
                })
                .collect();
            respond(
                raw,
                &DeleteAclsResponse::default().with_filter_results(results),
            )?
        }
        ApiKey::AddPartitionsToTxn => {
            let req = decode!(AddPartitionsToTxnRequest);
            let topic_results =
                |topics: Vec<add_partitions_to_txn_request::AddPartitionsToTxnTopic>| {
                    topics
                        .into_iter()
                        .map(|t| {
                            AddPartitionsToTxnTopicResult::default()
                                .with_name(t.name)
                                .with_results_by_partition(
                                    t.partitions
                                        .into_iter()
                                        .map(|p| {
                                            AddPartitionsToTxnPartitionResult::default()
                                                .with_partition_index(p)
                                                .with_partition_error_code(
                                                    codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                                )
                                        })
                                        .collect(),
                                )
                        })
                        .collect::<Vec<_>>()
                };
            let resp = if v <= 3 {
                AddPartitionsToTxnResponse::default()
                    .with_results_by_topic_v3_and_below(topic_results(req.v3_and_below_topics))
            } else {
                AddPartitionsToTxnResponse::default().with_results_by_transaction(
                    req.transactions
                        .into_iter()
                        .map(|t| {
                            AddPartitionsToTxnResult::default()
                                .with_transactional_id(t.transactional_id)
                                .with_topic_results(topic_results(t.topics))
                        })
                        .collect(),
                )
            };
            respond(raw, &resp)?
        }
        ApiKey::TxnOffsetCommit => {
            let req = decode!(TxnOffsetCommitRequest);
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .into_iter()
                                .map(|p| {
                                    TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(
                                            codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(raw, &TxnOffsetCommitResponse::default().with_topics(topics))?
        }
        ApiKey::AlterReplicaLogDirs => {
            use kafka_protocol::messages::alter_replica_log_dirs_response::{
                AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
            };
            let req = decode!(AlterReplicaLogDirsRequest);
            let results = req
                .dirs
                .into_iter()
                .flat_map(|d| d.topics)
                .map(|t| {
                    AlterReplicaLogDirTopicResult::default()
                        .with_topic_name(t.name)
                        .with_partitions(
                            t.partitions
                                .into_iter()
                                .map(|p| {
                                    AlterReplicaLogDirPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_error_code(codes::UNSUPPORTED_VERSION)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                raw,
                &AlterReplicaLogDirsResponse::default().with_results(results),
            )?
        }
        ApiKey::AlterClientQuotas => {
            use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
            let req = decode!(AlterClientQuotasRequest);
            let entries = req
                .entries
                .into_iter()
                .map(|e| {
                    EntryData::default()
                        .with_error_code(codes::UNSUPPORTED_VERSION)
                        .with_entity(
                            e.entity
                                .into_iter()
                                .map(|d| {
                                    EntityData::default()
                                        .with_entity_type(d.entity_type)
                                        .with_entity_name(d.entity_name)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                raw,
                &AlterClientQuotasResponse::default().with_entries(entries),
            )?
        }
        ApiKey::AlterUserScramCredentials => {
            use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
            let req = decode!(AlterUserScramCredentialsRequest);
            let mut users: Vec<StrBytes> = req.deletions.into_iter().map(|d| d.name).collect();
            users.extend(req.upsertions.into_iter().map(|u| u.name));
            users.dedup();
            let results = users
                .into_iter()
                .map(|u| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(u)
                        .with_error_code(codes::UNSUPPORTED_VERSION)
                })
                .collect();
            respond(
                raw,
                &AlterUserScramCredentialsResponse::default().with_results(results),
            )?
        }
        ApiKey::DescribeTransactions => {
            use kafka_protocol::messages::describe_transactions_response::TransactionState;
            let req = decode!(DescribeTransactionsRequest);
            let states = req
                .transactional_ids
                .into_iter()
                .map(|id| {
                    TransactionState::default()
                        .with_transactional_id(id)
                        .with_error_code(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                })
                .collect();
            respond(
                raw,
                &DescribeTransactionsResponse::default().with_transaction_states(states),
            )?
        }
        ApiKey::ConsumerGroupDescribe => {
            use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
            let req = decode!(ConsumerGroupDescribeRequest);
            let groups = req
                .group_ids
                .into_iter()
                .map(|g| {
                    DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(codes::UNSUPPORTED_VERSION)
                })
                .collect();
            respond(
                raw,
                &ConsumerGroupDescribeResponse::default().with_groups(groups),
            )?
        }
        ApiKey::ShareGroupDescribe => {
            use kafka_protocol::messages::share_group_describe_response::DescribedGroup;
            let req = decode!(ShareGroupDescribeRequest);
            let groups = req
                .group_ids
                .into_iter()
                .map(|g| {
                    DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(codes::UNSUPPORTED_VERSION)
                })
                .collect();
            respond(
                raw,
                &ShareGroupDescribeResponse::default().with_groups(groups),
            )?
        }
        ApiKey::DescribeTopicPartitions => {
            use kafka_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic;
            let req = decode!(DescribeTopicPartitionsRequest);
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(t.name))
                        .with_error_code(codes::UNSUPPORTED_VERSION)
                })
                .collect();
            respond(
                raw,
                &DescribeTopicPartitionsResponse::default().with_topics(topics),
            )?
        }
        ApiKey::DescribeShareGroupOffsets => {
            use kafka_protocol::messages::describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup;
            let req = decode!(DescribeShareGroupOffsetsRequest);
            let groups = req
                .groups
                .into_iter()
                .map(|g| {
                    DescribeShareGroupOffsetsResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(codes::UNSUPPORTED_VERSION)
                })
                .collect();
            respond(
                raw,
                &DescribeShareGroupOffsetsResponse::default().with_groups(groups),
            )?
        }
        _ => return Ok(None),
    };
    Ok(Some(reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};

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
        answered_at_every_version::<_, AddPartitionsToTxnResponse>(
            ApiKey::AddPartitionsToTxn,
            &AddPartitionsToTxnRequest::default(),
        );
        answered_at_every_version::<_, TxnOffsetCommitResponse>(
            ApiKey::TxnOffsetCommit,
            &TxnOffsetCommitRequest::default(),
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
        let dt = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("tx"))]);
        for r in answered_at_every_version::<_, DescribeTransactionsResponse>(
            ApiKey::DescribeTransactions,
            &dt,
        ) {
            assert_eq!(r.transaction_states[0].error_code, 53);
        }
        let g = vec![GroupId(StrBytes::from_static_str("g"))];
        let cg = ConsumerGroupDescribeRequest::default().with_group_ids(g.clone());
        for r in answered_at_every_version::<_, ConsumerGroupDescribeResponse>(
            ApiKey::ConsumerGroupDescribe,
            &cg,
        ) {
            assert_eq!(r.groups[0].error_code, 35);
        }
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
        let tp = DescribeTopicPartitionsRequest::default().with_topics(vec![
            describe_topic_partitions_request::TopicRequest::default().with_name(tn("t")),
        ]);
        for r in answered_at_every_version::<_, DescribeTopicPartitionsResponse>(
            ApiKey::DescribeTopicPartitions,
            &tp,
        ) {
            assert_eq!(r.topics[0].error_code, 35);
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

    #[test]
    fn transactional_requests_answer_every_partition() {
        use kafka_protocol::messages::add_partitions_to_txn_request::*;
        use kafka_protocol::messages::txn_offset_commit_request::*;
        let topics = vec![AddPartitionsToTxnTopic::default()
            .with_name(tn("t"))
            .with_partitions(vec![0, 1])];
        let old = AddPartitionsToTxnRequest::default().with_v3_and_below_topics(topics.clone());
        let new = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
                .with_topics(topics),
        ]);
        for (i, r) in answered_at_each_version::<_, AddPartitionsToTxnResponse>(
            ApiKey::AddPartitionsToTxn,
            |v| if v <= 3 { &old } else { &new },
        )
        .into_iter()
        .enumerate()
        {
            let topic = if i <= 3 {
                &r.results_by_topic_v3_and_below[0]
            } else {
                &r.results_by_transaction[0].topic_results[0]
            };
            let got: Vec<(i32, i16)> = topic
                .results_by_partition
                .iter()
                .map(|p| (p.partition_index, p.partition_error_code))
                .collect();
            assert_eq!(got, vec![(0, 53), (1, 53)], "v{i}");
        }
        let req = TxnOffsetCommitRequest::default().with_topics(vec![
            TxnOffsetCommitRequestTopic::default()
                .with_name(tn("t"))
                .with_partitions(vec![
                    TxnOffsetCommitRequestPartition::default().with_partition_index(2)
                ]),
        ]);
        for r in
            answered_at_every_version::<_, TxnOffsetCommitResponse>(ApiKey::TxnOffsetCommit, &req)
        {
            let p = &r.topics[0].partitions[0];
            assert_eq!((p.partition_index, p.error_code), (2, 53));
        }
    }
}
