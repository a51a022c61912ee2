//! The table of API version ranges this broker advertises and serves.
//!
//! The ranges are those of Kafka 4.1 (the message definitions `kafka-protocol` 0.18 is generated
//! from), for exactly the APIs implemented here, so clients that guess the broker release from
//! the ranges (kafka-python) see one consistent release. The one deliberate difference from the
//! request floors is Produce: advertised from v0, because librdkafka before 2.11.1 stops
//! compressing when the advertised minimum is above 0; v0–v2 requests are still refused with
//! UNSUPPORTED_VERSION by the Produce handler (as Kafka 4.0 does).
//!
//! The ApiVersions answer built from it is `handlers::api_versions`; the pre-decode guard's
//! tests check that every served version has a request structure.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

/// APIs served by this broker.
pub const SUPPORTED_APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::SyncGroup,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DeleteRecords,
    ApiKey::InitProducerId,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::CreatePartitions,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::UnregisterBroker,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
    ApiKey::DescribeLogDirs,
    ApiKey::DescribeProducers,
    ApiKey::ElectLeaders,
    ApiKey::DescribeQuorum,
    ApiKey::DescribeTopicPartitions,
    ApiKey::ShareGroupHeartbeat,
    ApiKey::ShareGroupDescribe,
    ApiKey::ShareFetch,
    ApiKey::ShareAcknowledge,
    ApiKey::DescribeShareGroupOffsets,
    ApiKey::AlterShareGroupOffsets,
    ApiKey::DeleteShareGroupOffsets,
    ApiKey::DescribeAcls,
    ApiKey::CreateAcls,
    ApiKey::DeleteAcls,
    ApiKey::SaslHandshake,
    ApiKey::SaslAuthenticate,
    ApiKey::DescribeUserScramCredentials,
    ApiKey::AlterUserScramCredentials,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::DescribeTransactions,
    ApiKey::ListTransactions,
    ApiKey::WriteTxnMarkers,
    ApiKey::ListConfigResources,
    ApiKey::DescribeClientQuotas,
    ApiKey::AlterClientQuotas,
];

/// Served with `--authorizer acl`; without an authorizer advertised and answered
/// SECURITY_DISABLED, as Kafka does (see `handlers::unserved`).
pub const ACL_APIS: &[ApiKey] = &[ApiKey::DescribeAcls, ApiKey::CreateAcls, ApiKey::DeleteAcls];

/// Served on SASL listeners before authentication (`handlers::sasl`); advertised everywhere
/// (as Kafka does), and answered with an error on other listeners and after authentication
/// (see `handlers::unserved`).
pub const SASL_APIS: &[ApiKey] = &[ApiKey::SaslHandshake, ApiKey::SaslAuthenticate];

/// The smallest Produce version actually served (Kafka 4.x floor).
pub const PRODUCE_MIN_SERVED: i16 = 3;

/// The versions the crate can decode requests of `key` at. `ApiKey::valid_versions()` also
/// lists versions Kafka 4.1 marked unstable (OffsetCommit / OffsetFetch v10, InitProducerId v6),
/// whose request decoders the crate does not generate; advertising them would make a client
/// that picks them lose its connection.
fn request_versions(key: ApiKey) -> Option<VersionRange> {
    macro_rules! range {
        ($t:ty) => {
            Some(<$t as Message>::VERSIONS)
        };
    }
    match key {
        ApiKey::Produce => range!(ProduceRequest),
        ApiKey::Fetch => range!(FetchRequest),
        ApiKey::ListOffsets => range!(ListOffsetsRequest),
        ApiKey::Metadata => range!(MetadataRequest),
        ApiKey::OffsetCommit => range!(OffsetCommitRequest),
        ApiKey::OffsetFetch => range!(OffsetFetchRequest),
        ApiKey::FindCoordinator => range!(FindCoordinatorRequest),
        ApiKey::JoinGroup => range!(JoinGroupRequest),
        ApiKey::Heartbeat => range!(HeartbeatRequest),
        ApiKey::LeaveGroup => range!(LeaveGroupRequest),
        ApiKey::SyncGroup => range!(SyncGroupRequest),
        ApiKey::DescribeGroups => range!(DescribeGroupsRequest),
        ApiKey::ListGroups => range!(ListGroupsRequest),
        ApiKey::ConsumerGroupHeartbeat => range!(ConsumerGroupHeartbeatRequest),
        ApiKey::ConsumerGroupDescribe => range!(ConsumerGroupDescribeRequest),
        ApiKey::ApiVersions => range!(ApiVersionsRequest),
        ApiKey::CreateTopics => range!(CreateTopicsRequest),
        ApiKey::DeleteTopics => range!(DeleteTopicsRequest),
        ApiKey::DeleteRecords => range!(DeleteRecordsRequest),
        ApiKey::InitProducerId => range!(InitProducerIdRequest),
        ApiKey::DescribeConfigs => range!(DescribeConfigsRequest),
        ApiKey::AlterConfigs => range!(AlterConfigsRequest),
        ApiKey::CreatePartitions => range!(CreatePartitionsRequest),
        ApiKey::DeleteGroups => range!(DeleteGroupsRequest),
        ApiKey::OffsetDelete => range!(OffsetDeleteRequest),
        ApiKey::IncrementalAlterConfigs => range!(IncrementalAlterConfigsRequest),
        ApiKey::DescribeCluster => range!(DescribeClusterRequest),
        ApiKey::OffsetForLeaderEpoch => range!(OffsetForLeaderEpochRequest),
        ApiKey::UnregisterBroker => range!(UnregisterBrokerRequest),
        ApiKey::AlterPartitionReassignments => range!(AlterPartitionReassignmentsRequest),
        ApiKey::ListPartitionReassignments => range!(ListPartitionReassignmentsRequest),
        ApiKey::DescribeLogDirs => range!(DescribeLogDirsRequest),
        ApiKey::DescribeProducers => range!(DescribeProducersRequest),
        ApiKey::ElectLeaders => range!(ElectLeadersRequest),
        ApiKey::DescribeQuorum => range!(DescribeQuorumRequest),
        ApiKey::DescribeTopicPartitions => range!(DescribeTopicPartitionsRequest),
        ApiKey::ShareGroupHeartbeat => range!(ShareGroupHeartbeatRequest),
        ApiKey::ShareGroupDescribe => range!(ShareGroupDescribeRequest),
        ApiKey::ShareFetch => range!(ShareFetchRequest),
        ApiKey::ShareAcknowledge => range!(ShareAcknowledgeRequest),
        ApiKey::DescribeShareGroupOffsets => range!(DescribeShareGroupOffsetsRequest),
        ApiKey::AlterShareGroupOffsets => range!(AlterShareGroupOffsetsRequest),
        ApiKey::DeleteShareGroupOffsets => range!(DeleteShareGroupOffsetsRequest),
        ApiKey::DescribeAcls => range!(DescribeAclsRequest),
        ApiKey::CreateAcls => range!(CreateAclsRequest),
        ApiKey::DeleteAcls => range!(DeleteAclsRequest),
        ApiKey::SaslHandshake => range!(SaslHandshakeRequest),
        ApiKey::SaslAuthenticate => range!(SaslAuthenticateRequest),
        ApiKey::DescribeUserScramCredentials => range!(DescribeUserScramCredentialsRequest),
        ApiKey::AlterUserScramCredentials => range!(AlterUserScramCredentialsRequest),
        ApiKey::AddPartitionsToTxn => range!(AddPartitionsToTxnRequest),
        ApiKey::AddOffsetsToTxn => range!(AddOffsetsToTxnRequest),
        ApiKey::EndTxn => range!(EndTxnRequest),
        ApiKey::TxnOffsetCommit => range!(TxnOffsetCommitRequest),
        ApiKey::DescribeTransactions => range!(DescribeTransactionsRequest),
        ApiKey::ListTransactions => range!(ListTransactionsRequest),
        ApiKey::WriteTxnMarkers => range!(WriteTxnMarkersRequest),
        ApiKey::ListConfigResources => range!(ListConfigResourcesRequest),
        ApiKey::DescribeClientQuotas => range!(DescribeClientQuotasRequest),
        ApiKey::AlterClientQuotas => range!(AlterClientQuotasRequest),
        _ => None,
    }
}

/// The advertised (min, max) versions of `key`, or `None` when the API is not served.
pub fn advertised(key: ApiKey) -> Option<(i16, i16)> {
    if !SUPPORTED_APIS.contains(&key) {
        return None;
    }
    let listed = key.valid_versions();
    let decodable = request_versions(key)?;
    let min = match key {
        ApiKey::Produce => 0,
        // From v0, as Kafka advertises it: librdkafka before the fix of its issue #4983 (2.0.2
        // in Debian bookworm's kcat; 2.12 is fixed) turns SASL on only when the range includes
        // v0, then sends v1. A v0 request itself (SASL tokens without Kafka framing would
        // follow) is refused in handlers/sasl.rs.
        ApiKey::SaslHandshake => 0,
        _ => listed.min.max(decodable.min),
    };
    Some((min, listed.max.min(decodable.max)))
}

/// Whether requests of `key` at `version` are decoded and served.
pub fn is_served(key: ApiKey, version: i16) -> bool {
    match advertised(key) {
        Some((min, max)) => version >= min && version <= max,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_is_advertised_from_zero_but_served_from_three() {
        assert_eq!(advertised(ApiKey::Produce).map(|r| r.0), Some(0));
        assert_eq!(PRODUCE_MIN_SERVED, 3);
    }

    #[test]
    fn kafka_4_floors_are_kept() {
        assert_eq!(advertised(ApiKey::Fetch).map(|r| r.0), Some(4));
        assert_eq!(advertised(ApiKey::ListOffsets).map(|r| r.0), Some(1));
        assert_eq!(advertised(ApiKey::CreateTopics).map(|r| r.0), Some(2));
        assert_eq!(advertised(ApiKey::ApiVersions), Some((0, 4)));
    }

    #[test]
    fn only_versions_with_request_decoders_are_advertised() {
        assert_eq!(advertised(ApiKey::OffsetCommit), Some((2, 9)));
        assert_eq!(advertised(ApiKey::OffsetFetch), Some((1, 9)));
        assert_eq!(advertised(ApiKey::InitProducerId), Some((0, 5)));
        assert_eq!(advertised(ApiKey::DeleteRecords), Some((0, 2)));
        assert_eq!(advertised(ApiKey::SaslHandshake), Some((0, 1)));
        assert_eq!(advertised(ApiKey::SaslAuthenticate), Some((0, 2)));
        // Produce 13 is what kafka-python reads as Kafka 4.1.
        assert_eq!(advertised(ApiKey::Produce), Some((0, 13)));
        for key in SUPPORTED_APIS {
            let (min, max) = advertised(*key).expect("served");
            assert!(min <= max && request_versions(*key).is_some(), "{key:?}");
        }
    }
}
