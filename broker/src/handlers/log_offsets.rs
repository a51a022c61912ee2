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
/// largest timestamp), earliest-local (-4) or by timestamp (>= 0).
pub fn list_offsets(
    ctx: &Arc<BrokerContext>,
    version: i16,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    // leader_epoch exists from v4; below that it must stay at its default (-1) or the response
    // cannot be encoded (librdkafka 2.0, e.g. Debian's kcat, asks with v2).
    let leader_epoch = if version >= 4 { 0 } else { -1 };
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default().with_name(t.name.clone());
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(leader_epoch);
            match local_partition(
                ctx,
                t.name.as_str(),
                p.partition_index,
                p.current_leader_epoch,
            ) {
                Err(code) => pr.error_code = code,
                Ok(log) => match p.timestamp {
                    -2 | -4 | -5 => pr.offset = log.log_start_offset(),
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

/// The answer for one partition whose leader epoch is `current` and log end offset `log_end`:
/// `(error, leader_epoch, end_offset)`, following Kafka's leader-epoch cache rules.
///
/// A single node never changes leader, so each partition has one epoch, `current`, starting at
/// the log start: the requested current epoch must match it (older: FENCED_LEADER_EPOCH,
/// newer: UNKNOWN_LEADER_EPOCH; -1 skips the check); the end offset of the current epoch is
/// the log end offset; an epoch above every known one is UNDEFINED (-1, -1). An older epoch
/// than `current` is also answered UNDEFINED because no epoch history is kept (it cannot occur
/// while the epoch stays 0, the only value a single node uses).
pub fn epoch_end_offset(
    current: i32,
    log_end: i64,
    current_leader_epoch: i32,
    requested: i32,
) -> (i16, i32, i64) {
    if current_leader_epoch != -1 && current_leader_epoch < current {
        return (
            codes::FENCED_LEADER_EPOCH,
            UNDEFINED_EPOCH,
            UNDEFINED_EPOCH_OFFSET,
        );
    }
    if current_leader_epoch > current {
        return (
            codes::UNKNOWN_LEADER_EPOCH,
            UNDEFINED_EPOCH,
            UNDEFINED_EPOCH_OFFSET,
        );
    }
    if requested == current {
        (codes::NONE, current, log_end)
    } else {
        (codes::NONE, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
    }
}

/// OffsetForLeaderEpoch (v2+): consumers validate their position after a metadata change.
pub fn offset_for_leader_epoch(
    ctx: &Arc<BrokerContext>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default().with_topic(t.topic.clone());
        for p in t.partitions {
            // The epoch check is epoch_end_offset's own (it answers per Kafka's rules).
            let (error, epoch, end) = match local_partition(ctx, t.topic.as_str(), p.partition, -1)
            {
                Err(code) => (code, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
                Ok(log) => epoch_end_offset(
                    log.leader_epoch(),
                    log.log_end_offset(),
                    p.current_leader_epoch,
                    p.leader_epoch,
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_end_offsets_follow_kafkas_rules() {
        // current epoch 0, log end 42
        assert_eq!(epoch_end_offset(0, 42, -1, 0), (codes::NONE, 0, 42));
        assert_eq!(epoch_end_offset(0, 42, 0, 0), (codes::NONE, 0, 42));
        assert_eq!(epoch_end_offset(0, 42, 0, 3), (codes::NONE, -1, -1));
        assert_eq!(epoch_end_offset(0, 42, -1, -1), (codes::NONE, -1, -1));
        assert_eq!(
            epoch_end_offset(0, 42, 1, 0),
            (codes::UNKNOWN_LEADER_EPOCH, -1, -1)
        );
        assert_eq!(
            epoch_end_offset(2, 42, 1, 1),
            (codes::FENCED_LEADER_EPOCH, -1, -1)
        );
    }
}
