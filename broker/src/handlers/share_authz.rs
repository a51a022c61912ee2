//! Authorization of the share-group APIs, with Kafka's rules: consuming (ShareGroupHeartbeat,
//! ShareFetch, ShareAcknowledge) needs READ on the group and READ on each topic (DESCRIBE on a
//! subscribed topic for the heartbeat); ShareGroupDescribe and DescribeShareGroupOffsets need
//! DESCRIBE on the group. ListGroups and DeleteGroups are checked by [`super::authz`] as for
//! classic groups. Unlike Kafka, an unauthorized topic in a ShareFetch / ShareAcknowledge
//! refuses the whole request (TOPIC_AUTHORIZATION_FAILED at the top), not only its partitions.

use kafka_protocol::messages::*;
use uuid::Uuid;

use super::authz::{Access, Operation, GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};
use super::catalog;
use crate::context::BrokerContext;

/// The error a consuming request gets, if any.
fn consuming(
    ctx: &BrokerContext,
    a: &Access,
    group: &str,
    topics: impl Iterator<Item = Uuid>,
) -> Option<i16> {
    if !a.on() {
        return None;
    }
    if !a.group(Operation::Read, group) {
        return Some(GROUP_AUTHORIZATION_FAILED);
    }
    for id in topics {
        if let Some(meta) = catalog::topic_by_id(ctx, id) {
            if !a.topic(Operation::Read, &meta.name) {
                return Some(TOPIC_AUTHORIZATION_FAILED);
            }
        }
    }
    None
}

pub fn heartbeat(
    a: &Access,
    req: &ShareGroupHeartbeatRequest,
) -> Option<ShareGroupHeartbeatResponse> {
    if !a.on() {
        return None;
    }
    let code = if !a.group(Operation::Read, req.group_id.as_str()) {
        GROUP_AUTHORIZATION_FAILED
    } else if req
        .subscribed_topic_names
        .iter()
        .flatten()
        .any(|t| !a.topic(Operation::Describe, t.as_str()))
    {
        TOPIC_AUTHORIZATION_FAILED
    } else {
        return None;
    };
    Some(ShareGroupHeartbeatResponse::default().with_error_code(code))
}

pub fn fetch(
    ctx: &BrokerContext,
    a: &Access,
    req: &ShareFetchRequest,
) -> Option<ShareFetchResponse> {
    let group = req.group_id.as_ref().map(|g| g.as_str()).unwrap_or("");
    consuming(ctx, a, group, req.topics.iter().map(|t| t.topic_id))
        .map(|code| ShareFetchResponse::default().with_error_code(code))
}

pub fn acknowledge(
    ctx: &BrokerContext,
    a: &Access,
    req: &ShareAcknowledgeRequest,
) -> Option<ShareAcknowledgeResponse> {
    let group = req.group_id.as_ref().map(|g| g.as_str()).unwrap_or("");
    consuming(ctx, a, group, req.topics.iter().map(|t| t.topic_id))
        .map(|code| ShareAcknowledgeResponse::default().with_error_code(code))
}

/// Takes the groups the caller may not describe out of the request; their answers.
pub fn describe(
    a: &Access,
    req: &mut ShareGroupDescribeRequest,
) -> Vec<share_group_describe_response::DescribedGroup> {
    use share_group_describe_response::DescribedGroup;
    if !a.on() {
        return Vec::new();
    }
    let (ok, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.group_ids)
        .into_iter()
        .partition(|g| a.group(Operation::Describe, g.as_str()));
    req.group_ids = ok;
    refused
        .into_iter()
        .map(|g| {
            DescribedGroup::default()
                .with_group_id(g)
                .with_error_code(GROUP_AUTHORIZATION_FAILED)
                .with_authorized_operations(i32::MIN)
        })
        .collect()
}

/// Takes the groups the caller may not describe out of the request; their answers.
pub fn describe_offsets(
    a: &Access,
    req: &mut DescribeShareGroupOffsetsRequest,
) -> Vec<describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup> {
    use describe_share_group_offsets_response::DescribeShareGroupOffsetsResponseGroup as Group;
    if !a.on() {
        return Vec::new();
    }
    let (ok, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.groups)
        .into_iter()
        .partition(|g| a.group(Operation::Describe, g.group_id.as_str()));
    req.groups = ok;
    refused
        .into_iter()
        .map(|g| {
            Group::default()
                .with_group_id(g.group_id)
                .with_error_code(GROUP_AUTHORIZATION_FAILED)
        })
        .collect()
}
