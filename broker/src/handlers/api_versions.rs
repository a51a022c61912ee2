//! ApiVersions: the advertised table of [`crate::protocol::versions`], always answered with
//! response header v0; a version this broker does not know gets error 35 and the list in the
//! v0 format, so that the client can pick a version and retry.

use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::codes;
use crate::error::BrokerError;
use crate::protocol::codec::{self, api_name, RawHeader};
use crate::protocol::versions::{advertised, SUPPORTED_APIS};

/// Answers an ApiVersions request frame (`body` still holds the request header).
pub fn reply(peer: SocketAddr, raw: RawHeader, body: &mut Bytes) -> Result<Bytes, BrokerError> {
    let (min, max) = advertised(ApiKey::ApiVersions).unwrap_or((0, 4));
    if raw.api_version < min || raw.api_version > max {
        return codec::encode_response(raw, 0, 0, &unsupported_version_response());
    }
    codec::decode_header(peer, ApiKey::ApiVersions, raw, body)?;
    // Decoded to refuse a malformed request; nothing in it changes the answer.
    ApiVersionsRequest::decode(body, raw.api_version).map_err(|e| BrokerError::Undecodable {
        peer,
        api: api_name(raw.api_key),
        api_key: raw.api_key,
        api_version: raw.api_version,
        reason: format!("{e:#}"),
    })?;
    codec::encode_response(raw, 0, raw.api_version, &handle(raw.api_version))
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

/// Features (KIP-584) this broker supports, `(name, min, max, finalized level)`: what
/// `kafka-features.sh describe` prints. Only features whose meaning Sluice implements, fixed by
/// the binary (no UpdateFeatures): the consumer group protocol (KIP-848) and share groups
/// (KIP-932) are on; `transaction.version` stays 0 (Kafka 4.2's producer uses the KIP-890
/// transaction protocol at 2, which this broker does not speak). `metadata.version` and
/// `kraft.version` describe Kafka's own metadata log, which Sluice does not have.
pub const FEATURES: &[(&str, i16, i16, i16)] = &[
    ("group.version", 0, 1, 1),
    ("share.version", 0, 1, 1),
    ("transaction.version", 0, 0, 0),
];

/// The finalized features' epoch: they never change while a broker runs.
const FEATURES_EPOCH: i64 = 0;

/// Answer to a decodable request of `version`.
pub fn handle(version: i16) -> ApiVersionsResponse {
    let supported = FEATURES
        .iter()
        // Before v4 a feature whose lowest version is 0 is left out (older clients refuse
        // such a range), as Kafka does.
        .filter(|(_, min, _, _)| version >= 4 || *min > 0)
        .map(|(name, min, max, _)| {
            api_versions_response::SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str(name))
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    // A feature finalized at 0 is off: Kafka lists only those above.
    let finalized = FEATURES
        .iter()
        .filter(|(_, _, _, level)| *level > 0)
        .map(|(name, _, _, level)| {
            api_versions_response::FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(name))
                .with_min_version_level(*level)
                .with_max_version_level(*level)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(codes::NONE)
        .with_api_keys(api_list())
        .with_throttle_time_ms(0)
        .with_supported_features(supported)
        .with_finalized_features_epoch(FEATURES_EPOCH)
        .with_finalized_features(finalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimplemented_apis_are_not_advertised() {
        assert_eq!(advertised(ApiKey::CreateDelegationToken), None);
        assert_eq!(advertised(ApiKey::BrokerHeartbeat), None);
        let listed: Vec<i16> = handle(4).api_keys.iter().map(|a| a.api_key).collect();
        assert_eq!(listed.len(), SUPPORTED_APIS.len());
        assert!(!listed.contains(&(ApiKey::BrokerHeartbeat as i16)));
    }

    #[test]
    fn features_are_listed_as_each_version_can_carry_them() {
        let r = handle(4);
        let supported: Vec<(String, i16, i16)> = r
            .supported_features
            .iter()
            .map(|f| (f.name.to_string(), f.min_version, f.max_version))
            .collect();
        assert_eq!(
            supported,
            vec![
                ("group.version".to_string(), 0, 1),
                ("share.version".to_string(), 0, 1),
                ("transaction.version".to_string(), 0, 0),
            ]
        );
        let finalized: Vec<(String, i16)> = r
            .finalized_features
            .iter()
            .map(|f| (f.name.to_string(), f.max_version_level))
            .collect();
        assert_eq!(
            finalized,
            vec![
                ("group.version".to_string(), 1),
                ("share.version".to_string(), 1)
            ],
            "transaction.version is off, so not finalized"
        );
        assert_eq!(r.finalized_features_epoch, 0);
        let v3 = handle(3);
        assert!(
            v3.supported_features.is_empty(),
            "v3 leaves out ranges from 0"
        );
        assert_eq!(v3.finalized_features.len(), 2);
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
