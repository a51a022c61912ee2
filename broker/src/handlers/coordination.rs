//! Answers for group requests that reached a broker which does not coordinate the group:
//! NOT_COORDINATOR, so the client asks FindCoordinator again and goes to the right broker.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};

use super::{catalog, codes};
use crate::context::BrokerContext;

/// OffsetCommit for a group coordinated elsewhere: every partition gets NOT_COORDINATOR.
pub fn offset_commit_elsewhere(req: &OffsetCommitRequest) -> OffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes::NOT_COORDINATOR)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// OffsetFetch naming any group this broker does not coordinate: the full answer when none
/// of them is here (v0–v7: the one group; v8+: NOT_COORDINATOR per group). `None` when every
/// named group is coordinated here. A v8+ request mixing groups here and elsewhere is answered
/// NOT_COORDINATOR for all of them (clients send one coordinator's groups per request).
pub fn offset_fetch_elsewhere(
    ctx: &BrokerContext,
    version: i16,
    req: &OffsetFetchRequest,
) -> Option<OffsetFetchResponse> {
    if version < 8 {
        if catalog::coordinates(ctx, req.group_id.as_str()) {
            return None;
        }
        if version >= 2 {
            return Some(OffsetFetchResponse::default().with_error_code(codes::NOT_COORDINATOR));
        }
        // v1 has no top-level error code: report it on every requested partition.
        let topics = req
            .topics
            .iter()
            .flatten()
            .map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_error_code(codes::NOT_COORDINATOR)
                            })
                            .collect(),
                    )
            })
            .collect();
        return Some(OffsetFetchResponse::default().with_topics(topics));
    }
    if req
        .groups
        .iter()
        .all(|g| catalog::coordinates(ctx, g.group_id.as_str()))
    {
        return None;
    }
    let groups = req
        .groups
        .iter()
        .map(|g| {
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(codes::NOT_COORDINATOR)
        })
        .collect();
    Some(OffsetFetchResponse::default().with_groups(groups))
}
