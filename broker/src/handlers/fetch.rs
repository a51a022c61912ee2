//! Fetch, with long poll, from consumers and from followers.
//!
//! Fetch returns whole stored batches (the one containing the requested offset first; clients
//! skip the records before their offset). The response `records` are the `Bytes` the log read
//! them into (one `pread` per partition), kept by reference in the response frame and written
//! to the socket from there with the encoded fields around them in one vectored write
//! (`protocol::frame`), not copied into an encoded buffer first. A read of bytes this broker
//! process already checked (a consumer's, or a follower's of what this leader appended) comes
//! as a file region instead (`log::region`): the response carries a stand-in of its length and
//! the writer sends the region with `sendfile`.
//!
//! A fetch with a replica id (a follower of a partition this broker leads) reads up to the log
//! end instead of the high watermark, waits for the log end to move instead of the high
//! watermark, tells the replica manager how far the follower has come (which may raise the high
//! watermark and admit it to the ISR), and answers `diverging_epoch` instead of records when
//! the follower's last epoch ends earlier on this log than its fetch offset.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tokio::sync::watch;

use super::authz::{self, Access, Operation};
use super::catalog;
use super::fetch_sessions::{self, Begin, Sent, SessionPart, TopicKey};
use super::{codes, Metered, Reply};
use crate::context::BrokerContext;
use crate::error::BrokerError;
use crate::log::{FileRegion, LogError, PartitionLog, Records};
use crate::protocol::codec::{respond_spliced, RawHeader};
use crate::protocol::frame::{placeholder, Frame, Splice};
use crate::replica::{FetchRefused, ReplicaFetch};
use crate::security::Principal;

/// A response built from the logs' current state.
struct Answer {
    resp: FetchResponse,
    /// File regions by (topic, partition) index in `resp`, whose records hold stand-ins.
    regions: Vec<((usize, usize), FileRegion)>,
    /// Record bytes in the response.
    used: usize,
    any_error: bool,
    /// The want (index in the plan) of each partition in `resp`, in order.
    included: Vec<usize>,
}

/// The response frame, its record sets kept by reference and its file regions as such (in
/// the encoder's order: topics, then their partitions).
fn encode(raw: RawHeader, a: &Answer) -> Result<Frame, BrokerError> {
    let splice = |resp: &FetchResponse, regions: &[((usize, usize), FileRegion)]| {
        let mut out = Vec::new();
        for (t, topic) in resp.responses.iter().enumerate() {
            for (p, pd) in topic.partitions.iter().enumerate() {
                let Some(b) = pd.records.clone() else {
                    continue;
                };
                out.push(match regions.iter().find(|(at, _)| *at == (t, p)) {
                    Some((_, region)) => Splice::File {
                        stand_in: b,
                        region: region.clone(),
                    },
                    None => Splice::Keep(b),
                });
            }
        }
        out
    };
    match respond_spliced(raw, &a.resp, splice(&a.resp, &a.regions)) {
        Err(e) if !a.regions.is_empty() => {
            // Never expected (the encoder writes each record set once, in order); the regions
            // are read and the response encoded without them rather than failing the fetch.
            tracing::warn!(error = %e, "fetch response with file regions did not encode; reading them");
            let mut resp = a.resp.clone();
            for ((t, p), region) in &a.regions {
                let bytes = region.read_all().map_err(|e| BrokerError::Encode {
                    api: "Fetch".into(),
                    api_version: raw.api_version,
                    reason: format!("reading {}: {e}", region.path.display()),
                })?;
                if let Some(pd) = resp
                    .responses
                    .get_mut(*t)
                    .and_then(|x| x.partitions.get_mut(*p))
                {
                    pd.records = Some(bytes);
                }
            }
            respond_spliced(raw, &resp, splice(&resp, &[]))
        }
        r => r,
    }
}

/// The bytes a partition's records carry in the response: the bytes read, or the stand-in
/// of a file region (noted in `regions` at `at`, its place in the response).
fn place(
    records: Records,
    at: (usize, usize),
    regions: &mut Vec<((usize, usize), FileRegion)>,
) -> std::io::Result<bytes::Bytes> {
    match records {
        Records::Bytes(b) => Ok(b),
        Records::File(region) => match placeholder(region.len) {
            Some(stand_in) => {
                regions.push((at, region));
                Ok(stand_in)
            }
            // Longer than any stand-in (reads are at most REGION_MAX): read.
            None => region.read_all(),
        },
    }
}

/// One requested partition, resolved once per request.
struct Want {
    /// Its topic's index in the response.
    topic: usize,
    /// What the request (or its fetch session) asks of it.
    part: SessionPart,
    max_bytes: usize,
    log: Result<Arc<PartitionLog>, i16>,
    /// A follower whose log diverged: the epoch and end offset to truncate to.
    diverging: Option<(i32, i64)>,
}

struct Plan {
    max_bytes: usize,
    skeleton: FetchResponse,
    wants: Vec<Want>,
    /// A follower's fetch: reads go to the log end.
    replica: bool,
    /// A `read_committed` consumer's (isolation level 1): reads stop at the last stable
    /// offset, and name the aborted transactions in what they return.
    committed: bool,
    /// An incremental fetch session's: partitions with nothing new are left out.
    incremental: bool,
}

/// What a partition's entry in a response says of its position.
fn sent(pd: &PartitionData) -> Sent {
    Sent {
        high_watermark: pd.high_watermark,
        last_stable_offset: pd.last_stable_offset,
        log_start_offset: pd.log_start_offset,
    }
}

/// Builds the response from the logs' current state.
fn read(plan: &Plan) -> Answer {
    let mut resp = plan.skeleton.clone();
    let mut regions = Vec::new();
    let mut used = 0usize;
    let mut any_error = false;
    let mut included = Vec::new();
    for (i, w) in plan.wants.iter().enumerate() {
        if plan.incremental && nothing_new(plan, w) {
            // Most partitions of a session that follows many: left out without a read.
            continue;
        }
        let mut pd = PartitionData::default()
            .with_partition_index(w.part.req.partition)
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
            Ok(log) if w.diverging.is_some() => {
                let (epoch, end) = w.diverging.unwrap_or((-1, -1));
                let hw = log.high_watermark();
                pd = pd
                    .with_high_watermark(hw)
                    .with_last_stable_offset(log.last_stable_offset())
                    .with_log_start_offset(log.log_start_offset());
                pd.diverging_epoch.epoch = epoch;
                pd.diverging_epoch.end_offset = end;
                any_error = true;
            }
            Ok(log) => {
                let remaining = plan.max_bytes.saturating_sub(used);
                let limit = w.max_bytes.min(remaining);
                if used > 0 && limit == 0 {
                    // Response full: report the position only.
                    pd = pd
                        .with_high_watermark(log.high_watermark())
                        .with_last_stable_offset(log.last_stable_offset())
                        .with_log_start_offset(log.log_start_offset());
                } else {
                    let offset = w.part.req.fetch_offset;
                    let read = if plan.replica {
                        log.read_for_replica_send(offset, limit.max(1))
                    } else if plan.committed {
                        log.read_committed_for_send(offset, limit.max(1))
                    } else {
                        log.read_for_send(offset, limit.max(1))
                    };
                    // Read after the records: it is at least as far as they go, so the
                    // aborted transactions named cover them all.
                    let lso = log.last_stable_offset();
                    match read {
                        Ok(out) => {
                            pd = pd
                                .with_high_watermark(out.high_watermark)
                                .with_last_stable_offset(lso)
                                .with_log_start_offset(out.log_start_offset);
                            if plan.committed {
                                pd.aborted_transactions =
                                    Some(aborted(log, offset, lso, &out.records));
                            }
                            // The first batch of the response may exceed the limits (so
                            // consumers always progress); later ones may not.
                            if used == 0 || out.records.len() <= limit {
                                used += out.records.len();
                                let at = resp
                                    .responses
                                    .get(w.topic)
                                    .map_or(0, |t| t.partitions.len());
                                match place(out.records, (w.topic, at), &mut regions) {
                                    Ok(b) => pd.records = Some(b),
                                    Err(e) => {
                                        tracing::warn!(partition = w.part.req.partition, error = %e, "fetch read failed");
                                        pd.error_code = codes::KAFKA_STORAGE_ERROR;
                                        any_error = true;
                                    }
                                }
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
                                .with_last_stable_offset(lso.min(hw))
                                .with_log_start_offset(start);
                        }
                    }
                }
            }
        }
        let records = pd.records.as_ref().map_or(0, |r| r.len());
        if plan.incremental
            && w.diverging.is_none()
            && !fetch_sessions::must_answer(&w.part, sent(&pd), records, pd.error_code)
        {
            continue;
        }
        if let Some(t) = resp.responses.get_mut(w.topic) {
            t.partitions.push(pd);
            included.push(i);
        }
    }
    if plan.incremental {
        drop_empty_topics(&mut resp, &mut regions);
    }
    Answer {
        resp,
        regions,
        used,
        any_error,
        included,
    }
}

/// The aborted transactions a `read_committed` consumer must know of to skip their records
/// in what it reads from `from`: those with records before the end of `records` (at most
/// `lso`). Almost always none, found without looking at the records.
fn aborted(log: &PartitionLog, from: i64, lso: i64, records: &Records) -> Vec<AbortedTransaction> {
    if records.is_empty() {
        return Vec::new();
    }
    let mut found = log.aborted_transactions(from, lso);
    if !found.is_empty() {
        // A partition with many aborts: only those overlapping what is returned, so the
        // list stays as small as the read (the end is at most the LSO either way).
        if let Ok(Some(end)) = records.next_offset() {
            found.retain(|&(_, first)| first < end);
        }
    }
    found
        .into_iter()
        .map(|(pid, first)| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(pid))
                .with_first_offset(first)
        })
        .collect()
}

/// Whether an incremental fetch may leave this partition out without reading it: it is
/// read to the end (the high watermark, or the log end for a follower) and its position is
/// what the session's last response said.
fn nothing_new(plan: &Plan, w: &Want) -> bool {
    let (Ok(log), Some(sent), None) = (&w.log, w.part.sent, w.diverging) else {
        return false;
    };
    let hw = log.high_watermark();
    let lso = log.last_stable_offset();
    let end = if plan.replica {
        log.log_end_offset()
    } else if plan.committed {
        lso
    } else {
        hw
    };
    w.part.req.fetch_offset == end
        && sent
            == Sent {
                high_watermark: hw,
                last_stable_offset: lso,
                log_start_offset: log.log_start_offset(),
            }
}

/// Removes the topics an incremental response has nothing to say of, and renumbers the
/// regions' places to match.
fn drop_empty_topics(resp: &mut FetchResponse, regions: &mut [((usize, usize), FileRegion)]) {
    let mut new_index = Vec::with_capacity(resp.responses.len());
    let mut kept = 0;
    for t in &resp.responses {
        new_index.push(kept);
        kept += usize::from(!t.partitions.is_empty());
    }
    resp.responses.retain(|t| !t.partitions.is_empty());
    for ((t, _), _) in regions.iter_mut() {
        *t = new_index[*t];
    }
}

/// Serves Fetch v4+ (topic names up to v12, topic ids from v13). A consumer needs READ on
/// each topic, a follower CLUSTER_ACTION on the cluster (a fetch with a replica id reads past
/// the high watermark and moves the ISR); refused partitions get TOPIC_AUTHORIZATION_FAILED.
pub fn handle(
    ctx: &Arc<BrokerContext>,
    raw: RawHeader,
    req: FetchRequest,
    access: &Access,
    metered: Option<Metered>,
) -> Result<Reply, BrokerError> {
    let started = Instant::now();
    let version = raw.api_version;
    let by_id = version >= 13;
    // The replica id moved into `replica_state` at v15.
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let replica = replica_id >= 0;
    // A follower's fetches are replication, not a client's consumption (Kafka exempts them).
    let metered = metered.filter(|_| !replica);
    let replica_allowed = !replica || access.cluster(Operation::ClusterAction);
    let begin = ctx
        .fetch_sessions
        .begin(version, &req, access.principal(), Instant::now());
    let (parts, session) = match begin {
        Ok(Begin::Incremental { id, parts }) => (parts, Session::Incremental(id)),
        Ok(Begin::New) => (
            fetch_sessions::request_parts(version, &req),
            Session::New {
                owner: access.principal().clone(),
                by_id,
            },
        ),
        Ok(Begin::Sessionless) => {
            if req.session_id != 0 {
                // It may have closed a session.
                ctx.metrics.fetch_sessions(ctx.fetch_sessions.len());
            }
            (fetch_sessions::request_parts(version, &req), Session::None)
        }
        Err(code) => {
            // A session this request cannot use: the client starts a new one.
            tracing::debug!(
                session_id = req.session_id,
                session_epoch = req.session_epoch,
                error_code = code,
                "fetch session refused"
            );
            ctx.metrics.error_code("Fetch", code);
            // The partition bound may have closed the session it named.
            ctx.metrics.fetch_sessions(ctx.fetch_sessions.len());
            let refused = Answer {
                resp: FetchResponse::default().with_error_code(code),
                regions: Vec::new(),
                used: 0,
                any_error: true,
                included: Vec::new(),
            };
            return Ok(Reply::Now(Some(encode(raw, &refused)?)));
        }
    };
    let mut skeleton = FetchResponse::default()
        .with_error_code(codes::NONE)
        .with_session_id(0);
    // Consecutive partitions of one topic share its entry in the response. The parts are
    // moved into the plan group by group, not copied into groups first (a session of 1,000
    // partitions is ~100 KiB of them, built for every fetch).
    let groups: Vec<(TopicKey, usize)> = parts
        .chunk_by(|a, b| a.topic == b.topic)
        .filter_map(|g| Some((g.first()?.topic.clone(), g.len())))
        .collect();
    let mut wants = Vec::with_capacity(parts.len());
    let mut rest = parts.into_iter();
    for (key, len) in groups {
        let (meta, tr) = match &key {
            TopicKey::Id(id) => (
                catalog::topic_by_id(ctx, *id),
                FetchableTopicResponse::default().with_topic_id(*id),
            ),
            TopicKey::Name(name) => (
                catalog::topic(ctx, name.as_str()),
                FetchableTopicResponse::default()
                    .with_topic(kafka_protocol::messages::TopicName(name.clone())),
            ),
        };
        let topic = skeleton.responses.len();
        skeleton.responses.push(tr);
        let allowed = replica_allowed
            && (replica
                || match (&meta, &key) {
                    (Some(m), _) => access.topic(Operation::Read, &m.name),
                    (None, TopicKey::Name(name)) => access.topic(Operation::Read, name.as_str()),
                    (None, TopicKey::Id(_)) => true,
                });
        // A consumer's partitions are looked up together (one look at the metadata and the
        // replica manager per topic, not per partition).
        let mut consumer_logs = match &meta {
            Some(m) if allowed && !replica => {
                let wanted: Vec<(i32, i32)> = rest
                    .as_slice()
                    .get(..len)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| (p.req.partition, p.req.current_leader_epoch))
                    .collect();
                catalog::local_partitions(ctx, &m.name, &wanted).into_iter()
            }
            _ => Vec::new().into_iter(),
        };
        for part in rest.by_ref().take(len) {
            let p = &part.req;
            let mut diverging = None;
            let log = match &meta {
                _ if !allowed => Err(authz::TOPIC_AUTHORIZATION_FAILED),
                None if by_id => Err(codes::UNKNOWN_TOPIC_ID),
                None => Err(codes::UNKNOWN_TOPIC_OR_PARTITION),
                Some(m) if replica => {
                    let last_epoch = if version >= 12 {
                        p.last_fetched_epoch
                    } else {
                        -1
                    };
                    match ctx.replicas.on_replica_fetch(
                        &m.name,
                        p.partition,
                        replica_id,
                        p.fetch_offset,
                        p.current_leader_epoch,
                        last_epoch,
                    ) {
                        Ok(ReplicaFetch::Read(log)) => Ok(log),
                        Ok(ReplicaFetch::Diverged { log, epoch, end }) => {
                            diverging = Some((epoch, end));
                            Ok(log)
                        }
                        Err(FetchRefused(code)) => Err(code),
                    }
                }
                Some(_) => consumer_logs
                    .next()
                    .unwrap_or(Err(codes::UNKNOWN_SERVER_ERROR)),
            };
            wants.push(Want {
                topic,
                max_bytes: usize::try_from(p.max_bytes).unwrap_or(0),
                part,
                log,
                diverging,
            });
        }
    }
    let plan = Plan {
        max_bytes: usize::try_from(req.max_bytes)
            .unwrap_or(0)
            // `--fetch-max-bytes` bounds the memory a single request can make the broker
            // fill; the first batch may still exceed it, so a consumer gets past a large batch.
            .min(ctx.limits.fetch_max_bytes),
        skeleton,
        wants,
        replica,
        committed: !replica && req.isolation_level == 1,
        incremental: matches!(session, Session::Incremental(_)),
    };
    let min_bytes = usize::try_from(req.min_bytes.max(0)).unwrap_or(0);
    let max_wait = Duration::from_millis(u64::try_from(req.max_wait_ms.max(0)).unwrap_or(0));

    let readable = plan.wants.iter().any(|w| w.log.is_ok());
    // A fetch that may wait subscribes before it reads: what is appended after the
    // subscription wakes the wait, what came before it is in the read. Subscribing costs a
    // couple of atomic operations per partition (one per topic for most sessions), far less
    // than the second read it saves; a fetch that is answered at once drops them unused.
    let may_wait = readable && !max_wait.is_zero() && min_bytes > 0;
    let answered_now = |a: &Answer| !may_wait || a.used >= min_bytes || a.any_error;
    let mut rxs = if may_wait {
        subscribe(&plan)
    } else {
        Vec::new()
    };
    let mut first = read(&plan);
    if answered_now(&first) {
        finish(ctx, &plan, &session, &mut first, started, metered.as_ref());
        return Ok(Reply::Now(Some(encode(raw, &first)?)));
    }

    let ctx = Arc::clone(ctx);
    Ok(Reply::Later(
        async move {
            let deadline = tokio::time::Instant::now() + max_wait;
            let mut last = first;
            loop {
                let any_change =
                    futures::future::select_all(rxs.iter_mut().map(|rx| Box::pin(rx.changed())));
                tokio::select! {
                    (res, _, _) = any_change => {
                        if res.is_err() {
                            // A partition went away (topic deleted): answer with what we have.
                            last = read(&plan);
                            break;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = ctx.shutdown.cancelled() => break,
                }
                for rx in &mut rxs {
                    rx.mark_seen();
                }
                last = read(&plan);
                if last.used >= min_bytes || last.any_error {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline || ctx.shutdown.is_cancelled() {
                // Re-read at the end so the response carries the newest high watermarks.
                last = read(&plan);
            }
            finish(&ctx, &plan, &session, &mut last, started, metered.as_ref());
            encode(raw, &last).map(Some)
        }
        .boxed(),
    ))
}

/// What a waiting fetch is woken by: one partition's watermark, or any of a topic's.
enum Wake {
    Partition(watch::Receiver<i64>),
    Topic(watch::Receiver<u64>),
}

impl Wake {
    /// Resolves at the next change (an error: the sender is gone).
    async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        match self {
            Wake::Partition(rx) => rx.changed().await,
            Wake::Topic(rx) => rx.changed().await,
        }
    }

    fn mark_seen(&mut self) {
        match self {
            Wake::Partition(rx) => rx.mark_unchanged(),
            Wake::Topic(rx) => rx.mark_unchanged(),
        }
    }
}

/// Subscribes to what moves when the plan's partitions may have something new: followers to
/// the log end, consumers to the high watermark. The partitions of one topic that make up at
/// least half of the topic's partitions here are waited on together (one subscription, see
/// [`crate::log::TopicWake`]); fewer are waited on one by one, so that the topic's other partitions do
/// not wake the fetch for nothing.
fn subscribe(plan: &Plan) -> Vec<Wake> {
    let replica = plan.replica;
    let mut wakes = Vec::new();
    for group in plan.wants.chunk_by(|a, b| a.topic == b.topic) {
        let logs: Vec<&Arc<PartitionLog>> =
            group.iter().filter_map(|w| w.log.as_ref().ok()).collect();
        let Some(first) = logs.first() else {
            continue;
        };
        let topic = first.topic_wake();
        let together = logs.len() > 1
            && logs.len() * 2 >= topic.partitions()
            && logs.iter().all(|l| Arc::ptr_eq(l.topic_wake(), topic));
        if together {
            wakes.push(Wake::Topic(if replica {
                topic.subscribe_log_ends()
            } else {
                topic.subscribe_high_watermarks()
            }));
        } else {
            wakes.extend(logs.iter().map(|l| {
                Wake::Partition(if replica {
                    l.subscribe_log_end()
                } else {
                    l.subscribe_high_watermark()
                })
            }));
        }
    }
    wakes
}

/// The fetch session a request is in.
enum Session {
    None,
    /// A full fetch asking for a new session, of this principal, naming topics by id or not.
    New {
        owner: Principal,
        by_id: bool,
    },
    Incremental(i32),
}

/// Ends a fetch with its final answer: creates or updates its session (and puts the session
/// id in the response), counts its records against the caller's `consumer_byte_rate` (the
/// throttle goes in the response), then counts it.
fn finish(
    ctx: &BrokerContext,
    plan: &Plan,
    session: &Session,
    a: &mut Answer,
    started: Instant,
    metered: Option<&Metered>,
) {
    if let Some(m) = metered {
        a.resp.throttle_time_ms = m.record(ctx, crate::quota::CONSUMER_BYTE_RATE, a.used);
    }
    let carried = a
        .resp
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .zip(&a.included)
        .filter_map(|(pd, &i)| plan.wants.get(i).map(|w| (w, pd)));
    match session {
        Session::None => {}
        Session::New { owner, by_id } => {
            let parts = carried.map(|(w, pd)| (w.part.clone(), sent(pd))).collect();
            a.resp.session_id = ctx
                .fetch_sessions
                .create(owner, *by_id, parts, Instant::now());
            ctx.metrics.fetch_sessions(ctx.fetch_sessions.len());
        }
        Session::Incremental(id) => {
            let carried = carried
                .map(|(w, pd)| {
                    let with_records = pd.records.as_ref().is_some_and(|r| !r.is_empty());
                    (
                        w.part.topic.clone(),
                        w.part.req.partition,
                        sent(pd),
                        with_records,
                    )
                })
                .collect();
            ctx.fetch_sessions.answered(*id, carried);
            a.resp.session_id = *id;
            ctx.metrics.fetch_incremental();
        }
    }
    for t in &a.resp.responses {
        for p in &t.partitions {
            ctx.metrics.error_code("Fetch", p.error_code);
        }
    }
    ctx.metrics.fetched_bytes(a.used);
    ctx.metrics.fetch_latency(started.elapsed());
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
                part: SessionPart {
                    topic: TopicKey::Name("t".into()),
                    req: fetch_sessions::PartReq {
                        partition: p as i32,
                        fetch_offset: *off,
                        max_bytes: i32::try_from(partition_max).unwrap_or(i32::MAX),
                        current_leader_epoch: -1,
                        last_fetched_epoch: -1,
                    },
                    sent: None,
                },
                max_bytes: partition_max,
                log: logs
                    .partition("t", p as i32)
                    .ok_or(codes::UNKNOWN_TOPIC_OR_PARTITION),
                diverging: None,
            })
            .collect();
        Plan {
            max_bytes,
            skeleton,
            wants,
            replica: false,
            committed: false,
            incremental: false,
        }
    }

    /// A consumer's plan for `partitions` of `topic`, each read from its end (so it waits).
    fn waiting_plan(logs: &LogManager, topic: &str, partitions: &[i32]) -> Plan {
        let mut skeleton = FetchResponse::default();
        skeleton.responses.push(FetchableTopicResponse::default());
        let wants = partitions
            .iter()
            .map(|&p| {
                let log = logs.partition(topic, p).expect("partition");
                Want {
                    topic: 0,
                    part: SessionPart {
                        topic: TopicKey::Name(topic.to_string().into()),
                        req: fetch_sessions::PartReq {
                            partition: p,
                            fetch_offset: log.log_end_offset(),
                            max_bytes: 1 << 20,
                            current_leader_epoch: -1,
                            last_fetched_epoch: -1,
                        },
                        sent: None,
                    },
                    max_bytes: 1 << 20,
                    log: Ok(log),
                    diverging: None,
                }
            })
            .collect();
        Plan {
            max_bytes: 1 << 20,
            skeleton,
            wants,
            replica: false,
            committed: false,
            incremental: false,
        }
    }

    fn woken(w: &Wake) -> bool {
        match w {
            Wake::Partition(rx) => rx.has_changed().expect("sender alive"),
            Wake::Topic(rx) => rx.has_changed().expect("sender alive"),
        }
    }

    #[test]
    fn a_fetch_following_most_of_a_topic_waits_on_the_topic_and_one_following_few_on_each() {
        let (_dir, logs, _) = setup();
        logs.create_topic("u", 4, Default::default(), false)
            .expect("create");
        let append = |topic: &str, p: i32| {
            logs.partition(topic, p)
                .expect("partition")
                .append(batch(1, 10))
                .expect("append");
        };

        let all_of_t = subscribe(&waiting_plan(&logs, "t", &[0, 1]));
        assert!(matches!(all_of_t.as_slice(), [Wake::Topic(_)]));
        let half_of_u = subscribe(&waiting_plan(&logs, "u", &[0, 1]));
        assert!(matches!(half_of_u.as_slice(), [Wake::Topic(_)]));
        let one_of_u = subscribe(&waiting_plan(&logs, "u", &[2]));
        assert!(matches!(one_of_u.as_slice(), [Wake::Partition(_)]));
        assert!(![&all_of_t[0], &half_of_u[0], &one_of_u[0]]
            .into_iter()
            .any(woken));

        // u/3: the topic's waiters wake (it is one of theirs), the single partition's does not,
        // nor does another topic's.
        append("u", 3);
        assert!(woken(&half_of_u[0]));
        assert!(!woken(&one_of_u[0]));
        assert!(!woken(&all_of_t[0]));
        append("u", 2);
        assert!(woken(&one_of_u[0]));
        append("t", 1);
        assert!(woken(&all_of_t[0]));

        // Two of six is no longer most of the topic: waited on one by one.
        logs.create_partitions("u", 6, false).expect("grow");
        let two_of_six = subscribe(&waiting_plan(&logs, "u", &[0, 1]));
        assert!(matches!(
            two_of_six.as_slice(),
            [Wake::Partition(_), Wake::Partition(_)]
        ));
        // And a deleted topic's partitions leave the count (the log's last handle dropped).
        let wake = Arc::clone(logs.partition("t", 0).expect("partition").topic_wake());
        assert_eq!(wake.partitions(), 2);
        drop(all_of_t);
        logs.delete_topic("t").expect("delete");
        assert_eq!(wake.partitions(), 0);
    }

    fn sizes(resp: &FetchResponse) -> Vec<usize> {
        resp.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .collect()
    }

    #[test]
    fn whole_batches_within_the_partition_limit() {
        let (_d, logs, len) = setup();
        let Answer {
            resp,
            used,
            any_error: err,
            ..
        } = read(&plan(&logs, 1 << 20, 2 * len + 10, &[0, 0]));
        assert!(!err);
        assert_eq!(sizes(&resp), vec![2 * len, 2 * len]);
        assert_eq!(used, 4 * len);
        assert_eq!(resp.responses[0].partitions[0].high_watermark, 3);
    }

    #[test]
    fn first_batch_is_returned_even_when_larger_than_the_limits() {
        let (_d, logs, len) = setup();
        let Answer { resp, used, .. } = read(&plan(&logs, 10, 10, &[0, 0]));
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
        let resp = read(&plan(&logs, 3 * len + 5, 1 << 20, &[0, 0])).resp;
        assert_eq!(sizes(&resp), vec![3 * len, 0]);
    }

    #[test]
    fn an_incremental_fetch_answers_only_the_partitions_with_news() {
        let (_d, logs, len) = setup();
        // Partition 0 is read up to its end and its position was sent last time; partition 1
        // has records to give.
        let mut plan = plan(&logs, 1 << 20, 1 << 20, &[3, 0]);
        plan.incremental = true;
        let at_end = Sent {
            high_watermark: 3,
            last_stable_offset: 3,
            log_start_offset: 0,
        };
        for w in &mut plan.wants {
            w.part.sent = Some(at_end);
        }
        let a = read(&plan);
        assert_eq!(a.included, vec![1]);
        assert_eq!(a.resp.responses[0].partitions.len(), 1);
        assert_eq!(a.resp.responses[0].partitions[0].partition_index, 1);
        assert_eq!(sizes(&a.resp), vec![3 * len]);

        // Nothing new anywhere: no topic at all.
        plan.wants[1].part.req.fetch_offset = 3;
        let a = read(&plan);
        assert!(a.resp.responses.is_empty() && a.included.is_empty());

        // A moved log start is news, and so is an error.
        logs.partition("t", 0)
            .expect("partition")
            .delete_records(1)
            .expect("delete records");
        plan.wants[1].part.req.fetch_offset = 7;
        let a = read(&plan);
        assert_eq!(a.included, vec![0, 1]);
        assert_eq!(a.resp.responses[0].partitions[0].log_start_offset, 1);
        assert_eq!(
            a.resp.responses[0].partitions[1].error_code,
            codes::OFFSET_OUT_OF_RANGE
        );
    }

    #[test]
    fn dropping_silent_topics_renumbers_the_regions_after_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, region) = file_region(&dir, 40_000, 0, 20_000);
        let mut resp = FetchResponse::default();
        for parts in [0, 2, 0, 1] {
            let mut t = FetchableTopicResponse::default();
            t.partitions = vec![PartitionData::default(); parts];
            resp.responses.push(t);
        }
        let mut regions = vec![((1, 1), region.clone()), ((3, 0), region)];
        drop_empty_topics(&mut resp, &mut regions);
        assert_eq!(resp.responses.len(), 2);
        let places: Vec<_> = regions.iter().map(|(at, _)| *at).collect();
        assert_eq!(places, vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn out_of_range_reports_log_start_and_high_watermark() {
        let (_d, logs, _) = setup();
        let Answer {
            resp,
            any_error: err,
            ..
        } = read(&plan(&logs, 1 << 20, 1 << 20, &[7, 3]));
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

    /// A file of `len` bytes that are not all alike (so a region read from the wrong place,
    /// or not at all, shows), and a region of it.
    fn file_region(
        dir: &tempfile::TempDir,
        len: usize,
        pos: u64,
        region_len: usize,
    ) -> (Vec<u8>, FileRegion) {
        let path = dir.path().join(format!("region-{len}-{pos}"));
        let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        let region = FileRegion {
            file: Arc::new(file),
            path: Arc::new(path),
            pos,
            len: region_len,
        };
        (content, region)
    }

    fn two_partitions(records: [bytes::Bytes; 2]) -> FetchResponse {
        let mut resp = FetchResponse::default();
        let mut topic = FetchableTopicResponse::default();
        for (i, r) in records.into_iter().enumerate() {
            topic.partitions.push(
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(r)),
            );
        }
        resp.responses.push(topic);
        resp
    }

    const RAW: RawHeader = RawHeader {
        api_key: 1,
        api_version: 12,
        correlation_id: 7,
    };

    /// An answer whose first partition carries `first` and whose second is `region` (its
    /// stand-in in the response), and that response encoded with the region's bytes in place:
    /// what must go out.
    fn answer_and_expected(
        first: bytes::Bytes,
        region: FileRegion,
        content: &[u8],
    ) -> (Answer, bytes::Bytes) {
        let (from, to) = (region.pos as usize, region.pos as usize + region.len);
        let stand_in = placeholder(region.len).expect("a stand-in");
        let answer = Answer {
            resp: two_partitions([first, stand_in]),
            regions: vec![((0, 1), region)],
            used: 0,
            any_error: false,
            included: vec![0, 1],
        };
        let mut expected = answer.resp.clone();
        expected.responses[0].partitions[1].records =
            Some(bytes::Bytes::copy_from_slice(&content[from..to]));
        let expected = crate::protocol::codec::respond(RAW, &expected).expect("respond");
        (answer, expected)
    }

    #[test]
    fn a_region_goes_out_as_a_file_piece_whose_bytes_are_the_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (content, region) = file_region(&dir, 40_000, 100, 32_000);
        let (answer, expected) =
            answer_and_expected(bytes::Bytes::from_static(b"small"), region, &content);
        let frame = encode(RAW, &answer).expect("encode");
        assert_eq!(frame.file_len(), 32_000, "sent from the file");
        assert_eq!(frame.to_bytes().expect("read the region"), expected);
    }

    #[test]
    fn a_stand_in_written_out_of_its_turn_makes_the_fetch_read_its_regions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (content, region) = file_region(&dir, 40_000, 100, 32_000);
        // The first partition carries a short stand-in that is no region of this answer (too
        // short to be kept by reference): the encoder writes zeros the splice list does not
        // expect there, which must never be sent as they are.
        let stray = placeholder(100).expect("a stand-in");
        let (answer, expected) = answer_and_expected(stray, region, &content);
        let frame = encode(RAW, &answer).expect("the fallback encodes");
        assert_eq!(
            frame.file_len(),
            0,
            "the regions were read, not sent from the file"
        );
        assert_eq!(frame.to_bytes().expect("bytes"), expected);
    }

    #[test]
    fn place_stands_in_for_a_region_and_reads_one_longer_than_any_stand_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut regions = Vec::new();
        let b = bytes::Bytes::from_static(b"read bytes");
        let got = place(Records::Bytes(b.clone()), (0, 0), &mut regions).expect("bytes");
        assert_eq!((got, regions.len()), (b, 0));

        let (_, small) = file_region(&dir, 30_000, 10, 20_000);
        let got = place(Records::File(small.clone()), (0, 1), &mut regions).expect("small");
        assert_eq!(got.len(), 20_000);
        assert!(
            got.iter().all(|&x| x == 0),
            "a stand-in, not the file's bytes"
        );
        assert_eq!(regions, vec![((0, 1), small)]);

        // A region past the largest stand-in: a sparse file with a mark near its end.
        let big_len = crate::log::REGION_MAX + 1;
        let path = dir.path().join("big");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("create");
        file.set_len(4096 + big_len as u64).expect("set_len");
        std::os::unix::fs::FileExt::write_all_at(&file, b"end", 4096 + big_len as u64 - 3)
            .expect("mark");
        let big = FileRegion {
            file: Arc::new(file),
            path: Arc::new(path),
            pos: 4096,
            len: big_len,
        };
        let got = place(Records::File(big), (1, 0), &mut regions).expect("read");
        assert_eq!(got.len(), big_len);
        assert_eq!(&got[big_len - 3..], b"end");
        assert_eq!(regions.len(), 1, "read, so not a region of the answer");
    }
}
