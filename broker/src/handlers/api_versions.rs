//! ApiVersions, and the table of API version ranges this broker advertises.
//!
//! The ranges are those of Kafka 4.1 (the message definitions `kafka-protocol` 0.18 is generated
//! from), for exactly the APIs implemented here, so clients that guess the broker release from
//! the ranges (kafka-python) see one consistent release. The one deliberate difference from the
//! request floors is Produce: advertised from v0, because librdkafka before 2.11.1 stops
//! compressing when the advertised minimum is above 0; v0–v2 requests are still refused with
//! UNSUPPORTED_VERSION by the Produce handler (as Kafka 4.0 does).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

use super::codes;

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
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DeleteRecords,
    ApiKey::InitProducerId,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::CreatePartitions,
    ApiKey::DeleteGroups,
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
    ApiKey::DescribeAcls,
    ApiKey::CreateAcls,
    ApiKey::DeleteAcls,
];

/// Advertised and answered SECURITY_DISABLED: no authorizer is configured (see
/// `handlers::unserved`).
pub const ACL_APIS: &[ApiKey] = &[ApiKey::DescribeAcls, ApiKey::CreateAcls, ApiKey::DeleteAcls];

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
        ApiKey::ApiVersions => range!(ApiVersionsRequest),
        ApiKey::CreateTopics => range!(CreateTopicsRequest),
        ApiKey::DeleteTopics => range!(DeleteTopicsRequest),
        ApiKey::DeleteRecords => range!(DeleteRecordsRequest),
        ApiKey::InitProducerId => range!(InitProducerIdRequest),
        ApiKey::DescribeConfigs => range!(DescribeConfigsRequest),
        ApiKey::AlterConfigs => range!(AlterConfigsRequest),
        ApiKey::CreatePartitions => range!(CreatePartitionsRequest),
        ApiKey::DeleteGroups => range!(DeleteGroupsRequest),
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
        ApiKey::DescribeAcls => range!(DescribeAclsRequest),
        ApiKey::CreateAcls => range!(CreateAclsRequest),
        ApiKey::DeleteAcls => range!(DeleteAclsRequest),
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
    let min = if key == ApiKey::Produce {
        0
    } else {
        listed.min.max(decodable.min)
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

fn api_list() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .filter_map(|k| {
            advertised(*k).map(|(min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
        })
        .collect()
}

/// Answer to a request of a version this broker does not know: error 35 and the list, to be
/// encoded at v0 so any client can read it.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(codes::UNSUPPORTED_VERSION)
        .with_api_keys(api_list())
}

/// Answer to a decodable request.
pub fn handle(_req: &ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(codes::NONE)
        .with_api_keys(api_list())
        .with_throttle_time_ms(0)
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
        // Produce 13 is what kafka-python reads as Kafka 4.1.
        assert_eq!(advertised(ApiKey::Produce), Some((0, 13)));
        for key in SUPPORTED_APIS {
            let (min, max) = advertised(*key).expect("served");
            assert!(min <= max && request_versions(*key).is_some(), "{key:?}");
        }
    }

    #[test]
    fn unimplemented_apis_are_not_advertised() {
        assert_eq!(advertised(ApiKey::SaslHandshake), None);
        assert_eq!(advertised(ApiKey::EndTxn), None);
        let listed: Vec<i16> = handle(&ApiVersionsRequest::default())
            .api_keys
            .iter()
            .map(|a| a.api_key)
            .collect();
        assert_eq!(listed.len(), SUPPORTED_APIS.len());
        assert!(!listed.contains(&(ApiKey::EndTxn as i16)));
    }

    #[test]
    fn unknown_version_answer_carries_error_35_and_the_list() {
        let r = unsupported_version_response();
        assert_eq!(r.error_code, 35);
        assert!(r
            .api_keys
            .iter()
            .any(|a| a.api_key == 18 && a.max_version == 4));
    }
}
