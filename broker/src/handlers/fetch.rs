//! Fetch (with long poll), ListOffsets and OffsetForLeaderEpoch.
//!
//! Fetch returns whole stored batches (the one containing the requested offset first; clients
//! skip the records before their offset). The response `records` are `Bytes` from the log,
//! copied once into the response frame by the encoder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use tokio::sync::watch;

use super::{catalog, codes, Reply};
use crate::context::BrokerContext;
use crate::error::BrokerError;
use crate::log::{LogError, PartitionLog};
use crate::protocol::codec::{respond, RawHeader};

/// One requested partition, resolved once per request.
struct Want {
    topic: usize,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    log: Result<Arc<PartitionLog>, i16>,
}

struct Plan {
    max_bytes: usize,
    skeleton: FetchResponse,
    wants: Vec<Want>,
}

/// Builds the response from the logs' current state; returns it and the record bytes in it.
fn read(plan: &Plan) -> (FetchResponse, usize, bool) {
    let mut resp = plan.skeleton.clone();
    let mut used = 0usize;
    let mut any_error = false;
    for w in &plan.wants {
        let mut pd = PartitionData::default()
            .with_partition_index(w.partition)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_aborted_transactions(None)
            .with_records(Some(bytes::Bytes::new()));
        match &w.log {
            Err(code) => {
                pd.error_code = *code;
                any_error = true;
            }
            Ok(log) => {
                let remaining = plan.max_bytes.saturating_sub(used);
                let limit = w.max_bytes.min(remaining);
                if used > 0 && limit == 0 {
                    // Response full: report the position only.
                    let hw = log.high_watermark();
                    pd = pd
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(log.log_start_offset());
                } else {
                    match log.read(w.fetch_offset, limit.max(1)) {
                        Ok(out) => {
                            pd = pd
                                .with_high_watermark(out.high_watermark)
                                .with_last_stable_offset(out.high_watermark)
                                .with_log_start_offset(out.log_start_offset);
                            // The first batch of the response may exceed the limits (so
                            // consumers always progress); later ones may not.
                            if used == 0 || out.records.len() <= limit {
                                used += out.records.len();
                                pd.records = Some(out.records);
                            }
                        }
                        Err(e) => {
                            pd.error_code = e.kafka_code();
                            any_error = true;
                            let (start, hw) = match &e {
                                LogError::OffsetOutOfRange { start, end, .. } => (*start, *end),
                                _ => (log.log_start_offset(), log.high_watermark()),
                            };
                            pd = pd
                                .with_high_watermark(hw)
                                .with_last_stable_offset(hw)
                                .with_log_start_offset(start);
                        }
                    }
                }
            }
        }
        if let Some(t) = resp.responses.get_mut(w.topic) {
            t.partitions.push(pd);
        }
    }
    (resp, used, any_error)
}

/// The local log of a partition this broker leads, or the error code telling the client where
/// to go: another broker leads it (NOT_LEADER_OR_FOLLOWER), or the client's leader epoch
/// (`-1`: not given) is older (FENCED_LEADER_EPOCH) or newer (UNKNOWN_LEADER_EPOCH) than ours.
pub fn local_partition(
    ctx: &BrokerContext,
    topic: &str,
    partition: i32,
    client_epoch: i32,
) -> Result<Arc<PartitionLog>, i16> {
    match catalog::ownership(ctx, topic, partition) {
        catalog::Ownership::Unknown => Err(codes::UNKNOWN_TOPIC_OR_PARTITION),
        catalog::Ownership::Elsewhere(_) => Err(catalog::NOT_LEADER_OR_FOLLOWER),
        catalog::Ownership::Here(epoch) if client_epoch >= 0 && client_epoch < epoch => {
            Err(codes::FENCED_LEADER_EPOCH)
        }
        catalog::Ownership::Here(epoch) if client_epoch > epoch => Err(codes::UNKNOWN_LEADER_EPOCH),
        // Owned here but not yet created locally: the topology task is about to; retriable.
        catalog::Ownership::Here(_) => ctx
            .logs
            .partition(topic, partition)
            .ok_or(catalog::NOT_LEADER_OR_FOLLOWER),
    }
}

/// Serves Fetch v4+ (topic names up to v12, topic ids from v13).
pub fn handle(
    ctx: &Arc<BrokerContext>,
    raw: RawHeader,
    req: FetchRequest,
) -> Result<Reply, BrokerError> {
    let started = Instant::now();
    let version = raw.api_version;
    let by_id = version >= 13;
    let mut skeleton = FetchResponse::default()
        .with_error_code(codes::NONE)
        .with_session_id(0);
    let mut wants = Vec::new();
    for t in &req.topics {
        let meta = if by_id {
            catalog::topic_by_id(ctx, t.topic_id)
        } else {
            catalog::topic(ctx, t.topic.as_str())
        };
        let mut tr = FetchableTopicResponse::default();
        if by_id {
            tr.topic_id = t.topic_id;
        } else {
            tr.topic = t.topic.clone();
        }
        let topic = skeleton.responses.len();
        skeleton.responses.push(tr);
        for p in &t.partitions {
            let log = match &meta {
                None if by_id => Err(codes::UNKNOWN_TOPIC_ID),
                None => Err(codes::UNKNOWN_TOPIC_OR_PARTITION),
                Some(m) => local_partition(ctx, &m.name, p.partition, p.current_leader_epoch),
            };
            wants.push(Want {
                topic,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                log,
            });
        }
    }
    let plan = Plan {
        max_bytes: usize::try_from(req.max_bytes).unwrap_or(0),
        skeleton,
        wants,
    };
    let min_bytes = usize::try_from(req.min_bytes.max(0)).unwrap_or(0);
    let max_wait = Duration::from_millis(u64::try_from(req.max_wait_ms.max(0)).unwrap_or(0));

    // Subscribe before the first read, so data appended between the read and the wait
    // still wakes us.
    let mut rxs: Vec<watch::Receiver<i64>> = plan
        .wants
        .iter()
        .filter_map(|w| w.log.as_ref().ok().map(|l| l.subscribe_high_watermark()))
        .collect();
    for rx in &mut rxs {
        rx.borrow_and_update();
    }
    let (resp, used, any_error) = read(&plan);
    if used >= min_bytes.max(1)
        || any_error
        || max_wait.is_zero()
        || rxs.is_empty()
        || min_bytes == 0
    {
        finish(ctx, &resp, used, started);
        return Ok(Reply::Now(Some(respond(raw, &resp)?)));
    }

    let ctx = Arc::clone(ctx);
    Ok(Reply::Later(
        async move {
            let deadline = tokio::time::Instant::now() + max_wait;
            let mut last = resp;
            let mut last_used = used;
            loop {
                let any_change =
                    futures::future::select_all(rxs.iter_mut().map(|rx| Box::pin(rx.changed())));
                tokio::select! {
                    (res, _, _) = any_change => {
                        if res.is_err() {
                            // A partition went away (topic deleted): answer with what we have.
                            let (r, u, _) = read(&plan);
                            last = r;
                            last_used = u;
                            break;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = ctx.shutdown.cancelled() => break,
                }
                for rx in &mut rxs {
                    rx.borrow_and_update();
                }
                let (r, u, err) = read(&plan);
                last = r;
                last_used = u;
                if u >= min_bytes || err {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline || ctx.shutdown.is_cancelled() {
                // Re-read at the end so the response carries the newest high watermarks.
                let (r, u, _) = read(&plan);
                last = r;
                last_used = u;
            }
            finish(&ctx, &last, last_used, started);
            respond(raw, &last).map(Some)
        }
        .boxed(),
    ))
}

fn finish(ctx: &BrokerContext, resp: &FetchResponse, used: usize, started: Instant) {
    for t in &resp.responses {
        for p in &t.partitions {
            ctx.metrics.error_code("Fetch", p.error_code);
        }
    }
    ctx.metrics.fetched_bytes(used);
    ctx.metrics.fetch_latency(started.elapsed());
}

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
    use crate::log::{FsyncPolicy, LogConfig, LogDefaults, LogManager};
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(n: usize, value_len: usize) -> bytes::Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(bytes::Bytes::from(vec![b'x'; value_len])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
        buf.freeze()
    }

    /// Two partitions with three ~1 KiB batches each, fsync interval (high watermark = end).
    fn setup() -> (tempfile::TempDir, LogManager, usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = LogDefaults {
            log: LogConfig {
                fsync: FsyncPolicy::Interval(Duration::from_secs(60)),
                ..LogConfig::default()
            },
            ..LogDefaults::default()
        };
        let logs = LogManager::open(dir.path(), defaults).expect("open");
        logs.create_topic("t", 2, Default::default(), false)
            .expect("create");
        let b = batch(1, 1000);
        for p in 0..2 {
            let log = logs.partition("t", p).expect("partition");
            for _ in 0..3 {
                log.append(b.clone()).expect("append");
            }
        }
        (dir, logs, b.len())
    }

    fn plan(logs: &LogManager, max_bytes: usize, partition_max: usize, offsets: &[i64]) -> Plan {
        let mut skeleton = FetchResponse::default();
        skeleton.responses.push(FetchableTopicResponse::default());
        let wants = offsets
            .iter()
            .enumerate()
            .map(|(p, off)| Want {
                topic: 0,
                partition: p as i32,
                fetch_offset: *off,
                max_bytes: partition_max,
                log: logs
                    .partition("t", p as i32)
                    .ok_or(codes::UNKNOWN_TOPIC_OR_PARTITION),
            })
            .collect();
        Plan {
            max_bytes,
            skeleton,
            wants,
        }
    }

    fn sizes(resp: &FetchResponse) -> Vec<usize> {
        resp.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .collect()
    }

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

    #[test]
    fn whole_batches_within_the_partition_limit() {
        let (_d, logs, len) = setup();
        let (resp, used, err) = read(&plan(&logs, 1 << 20, 2 * len + 10, &[0, 0]));
        assert!(!err);
        assert_eq!(sizes(&resp), vec![2 * len, 2 * len]);
        assert_eq!(used, 4 * len);
        assert_eq!(resp.responses[0].partitions[0].high_watermark, 3);
    }

    #[test]
    fn first_batch_is_returned_even_when_larger_than_the_limits() {
        let (_d, logs, len) = setup();
        let (resp, used, _) = read(&plan(&logs, 10, 10, &[0, 0]));
        // The first partition's first batch goes out whole; the response is then full.
        assert_eq!(sizes(&resp), vec![len, 0]);
        assert_eq!(used, len);
        assert_eq!(
            resp.responses[0].partitions[1].high_watermark, 3,
            "position still reported"
        );
    }

    #[test]
    fn response_limit_stops_later_partitions() {
        let (_d, logs, len) = setup();
        let (resp, _, _) = read(&plan(&logs, 3 * len + 5, 1 << 20, &[0, 0]));
        assert_eq!(sizes(&resp), vec![3 * len, 0]);
    }

    #[test]
    fn out_of_range_reports_log_start_and_high_watermark() {
        let (_d, logs, _) = setup();
        let (resp, _, err) = read(&plan(&logs, 1 << 20, 1 << 20, &[7, 3]));
        assert!(err);
        let p0 = &resp.responses[0].partitions[0];
        assert_eq!(
            (p0.error_code, p0.log_start_offset, p0.high_watermark),
            (1, 0, 3)
        );
        let p1 = &resp.responses[0].partitions[1];
        assert_eq!(p1.error_code, 0, "the log end is a valid, empty position");
        assert_eq!(sizes(&resp)[1], 0);
    }
}
