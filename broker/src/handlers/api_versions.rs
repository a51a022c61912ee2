//! ApiVersions: the advertised table of [`crate::protocol::versions`], always answered with
//! response header v0; a version this broker does not know gets error 35 and the list in the
//! v0 format, so that the client can pick a version and retry.

use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

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
    let req = ApiVersionsRequest::decode(body, raw.api_version).map_err(|e| {
        BrokerError::Undecodable {
            peer,
            api: api_name(raw.api_key),
            api_key: raw.api_key,
            api_version: raw.api_version,
            reason: format!("{e:#}"),
        }
    })?;
    codec::encode_response(raw, 0, raw.api_version, &handle(&req))
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
    fn unimplemented_apis_are_not_advertised() {
        assert_eq!(advertised(ApiKey::CreateDelegationToken), None);
        assert_eq!(advertised(ApiKey::BrokerHeartbeat), None);
        let listed: Vec<i16> = handle(&ApiVersionsRequest::default())
            .api_keys
            .iter()
            .map(|a| a.api_key)
            .collect();
        assert_eq!(listed.len(), SUPPORTED_APIS.len());
        assert!(!listed.contains(&(ApiKey::BrokerHeartbeat as i16)));
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
