//! ListOffsets and OffsetForLeaderEpoch: where a partition's log starts and ends, which
//! offset a timestamp falls at, and where a leader epoch ends. Answered by the partition's
//! owner from its local log.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use super::catalog::local_partition;
use super::codes;
use crate::context::BrokerContext;

/// Earliest (-2), latest (-1), max timestamp (-3: the first record carrying the partition's
/// largest timestamp), earliest-local (-4: the log start, every record being local), latest
/// tiered (-5, KIP-1005: no offset, -1, as Kafka answers without remote storage) or by
/// timestamp (>= 0).
pub fn list_offsets(
    ctx: &Arc<BrokerContext>,
    version: i16,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    // leader_epoch exists from v4; below that it must stay at its default (-1) or the response
    // cannot be encoded (librdkafka 2.0, e.g. Debian's kcat, asks with v2).
    let with_epoch = version >= 4;
    // READ_COMMITTED (isolation level 1, v2+): "latest" is the last stable offset.
    let committed = version >= 2 && req.isolation_level == 1;
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default().with_name(t.name.clone());
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            match local_partition(
                ctx,
                t.name.as_str(),
                p.partition_index,
                p.current_leader_epoch,
            ) {
                Err(code) => pr.error_code = code,
                Ok(log) => match p.timestamp {
                    -2 | -4 => pr.offset = log.log_start_offset(),
                    // Nothing is tiered: offset and timestamp stay -1.
                    -5 => {}
                    -1 if committed => pr.offset = log.last_stable_offset(),
                    -1 => pr.offset = log.high_watermark(),
                    // MAX_TIMESTAMP (v7+): the first record carrying the largest timestamp.
                    -3 => match log.max_timestamp_offset() {
                        Ok(Some((offset, found_ts))) => {
                            pr.offset = offset;
                            pr.timestamp = found_ts;
                        }
                        Ok(None) => {}
                        Err(e) => pr.error_code = e.kafka_code(),
                    },
                    ts if ts >= 0 => match log.offset_for_timestamp(ts) {
                        Ok(Some((offset, found_ts))) => {
                            pr.offset = offset;
                            pr.timestamp = found_ts;
                        }
                        Ok(None) => {}
                        Err(e) => pr.error_code = e.kafka_code(),
                    },
                    _ => pr.error_code = codes::UNSUPPORTED_VERSION,
                },
            }
            if with_epoch && pr.error_code == codes::NONE && pr.offset >= 0 {
                // The epoch of the record at the answer (the current one for "latest"), which
                // clients keep to validate their position after a leader change.
                if let Ok(log) = local_partition(ctx, t.name.as_str(), p.partition_index, -1) {
                    pr.leader_epoch = if p.timestamp == -1 {
                        log.latest_epoch().unwrap_or(-1)
                    } else {
                        log.epoch_at(pr.offset).unwrap_or(-1)
                    };
                }
            }
            ctx.metrics.error_code("ListOffsets", pr.error_code);
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

/// Kafka's `UNDEFINED_EPOCH` / `UNDEFINED_EPOCH_OFFSET`.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// OffsetForLeaderEpoch (v2+): consumers validate their position after a leader change, and
/// followers find where their log diverged from their new leader's. Answered by the leader
/// from its leader-epoch cache (Kafka's rules, see `EpochCache::end_offset_for`), after the
/// request's current leader epoch is checked (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH).
pub fn offset_for_leader_epoch(
    ctx: &Arc<BrokerContext>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default().with_topic(t.topic.clone());
        for p in t.partitions {
            let (error, epoch, end) =
                match local_partition(ctx, t.topic.as_str(), p.partition, p.current_leader_epoch) {
                    Err(code) => (code, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
                    Ok(log) => {
                        let (epoch, end) = log.end_offset_for_epoch(p.leader_epoch);
                        (codes::NONE, epoch, end)
                    }
                };
            ctx.metrics.error_code("OffsetForLeaderEpoch", error);
            tr.partitions.push(
                EpochEndOffset::default()
                    .with_error_code(error)
                    .with_partition(p.partition)
                    .with_leader_epoch(epoch)
                    .with_end_offset(end),
            );
        }
        resp.topics.push(tr);
    }
    resp
}
