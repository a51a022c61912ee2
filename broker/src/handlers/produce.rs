//! Produce and InitProducerId.
//!
//! The produce path does no per-record work: each partition's `records` is a `Bytes` slice of
//! the request frame, handed as is to [`PartitionLog::append`] (which validates the batch and
//! rewrites its base offset). Appends happen here, in request order, before the handler
//! returns; only the wait for durability (`acks=-1`) is deferred, so pipelined requests on one
//! connection and concurrent requests from many connections share one fsync.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::FutureExt;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};

use super::authz::{self, Access};
use super::{catalog, codes, sb, Reply};
use crate::context::BrokerContext;
use crate::error::BrokerError;
use crate::group::{is_internal_topic, SHARE_STATE_TOPIC};
use crate::log::{AppendInfo, AppendOutcome, PartitionLog};
use crate::protocol::codec::{self, api_name, respond, RawHeader};

fn partition_error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(|m| sb(&m)))
}

fn partition_ok(index: i32, info: &AppendInfo) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(codes::NONE)
        .with_base_offset(info.base_offset)
        .with_log_append_time_ms(info.log_append_time)
        .with_log_start_offset(info.log_start_offset)
}

/// A partition whose `acks=-1` answer waits until every in-sync replica has the records
/// (durably, under `fsync: always`): the high watermark passing `last_offset`.
struct ReplicatedWait {
    topic: usize,
    partition: usize,
    name: String,
    index: i32,
    log: Arc<PartitionLog>,
    last_offset: i64,
    min_isr: i32,
    /// Cancelled if this broker stops leading the partition meanwhile.
    tenure: Option<tokio_util::sync::CancellationToken>,
}

/// The longest a produce request waits for this broker to take up a leadership the metadata
/// already gives it (bounded by the request's own `timeout_ms` too).
const TAKE_UP_WAIT: Duration = Duration::from_secs(5);

/// A partition the metadata says this broker leads, but whose leadership the replica manager
/// is still taking up, is waited for rather than refused. The connection reads its next
/// request only once this one's appends are done, so a producer's pipelined batches still
/// arrive in sequence: refusing this batch while the next one, read a moment later, is
/// appended would leave an idempotent producer retrying a sequence the new leader has gone
/// past (the first batch of a producer the leader has no state for may carry any sequence,
/// as on Kafka), and it would retry it forever.
async fn taken_up(
    ctx: &BrokerContext,
    topic: &str,
    partition: i32,
    timeout_ms: i32,
) -> Result<(Arc<PartitionLog>, i32), i16> {
    let catalog::Ownership::Here(epoch) = catalog::ownership(ctx, topic, partition) else {
        return Err(catalog::NOT_LEADER_OR_FOLLOWER);
    };
    let wait = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0)).min(TAKE_UP_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    if ctx
        .replicas
        .await_lead(topic, partition, epoch, deadline)
        .await
    {
        tracing::debug!(
            topic,
            partition,
            epoch,
            "produce waited for the leadership to be taken up"
        );
        catalog::leader_partition(ctx, topic, partition, -1)
    } else {
        Err(catalog::NOT_LEADER_OR_FOLLOWER)
    }
}

/// The in-sync replicas of a partition, by the metadata.
fn in_sync(ctx: &BrokerContext, topic: &str, partition: i32) -> Vec<i32> {
    ctx.cluster
        .state()
        .partition(topic, partition)
        .map(|p| p.isr.clone())
        .unwrap_or_default()
}

/// Serves Produce v3+; a topic `access` does not allow WRITE on is refused
/// TOPIC_AUTHORIZATION_FAILED (before its existence is looked at, so nothing is disclosed).
/// Internal topics are refused, but for `__share_group_state` when `cluster_write` (another
/// broker writing share-partition state).
/// The record bytes a produce request carries (what `producer_byte_rate` counts).
pub fn bytes_of(req: &ProduceRequest) -> usize {
    req.topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.as_ref())
        .map(|r| r.len())
        .sum()
}

pub async fn handle(
    ctx: &Arc<BrokerContext>,
    raw: RawHeader,
    req: ProduceRequest,
    access: &Access,
    cluster_write: bool,
    throttle_ms: i32,
) -> Result<Reply, BrokerError> {
    let started = Instant::now();
    let version = raw.api_version;
    let acks = req.acks;
    let req_timeout_ms = req.timeout_ms;
    let by_id = version >= 13;
    let mut waits = Vec::new();
    let mut response = ProduceResponse::default().with_throttle_time_ms(throttle_ms);
    // A transactional producer needs WRITE on its transactional id (Kafka's rule); the
    // transaction itself is the coordinator's business, each batch is checked by the log.
    let txn_denied = req
        .transactional_id
        .as_ref()
        .is_some_and(|id| !access.transactional_id(authz::Operation::Write, id.as_str()));

    for topic in req.topic_data {
        let meta = if by_id {
            catalog::topic_by_id(ctx, topic.topic_id)
        } else {
            catalog::topic(ctx, topic.name.as_str())
        };
        let min_isr = meta
            .as_ref()
            .and_then(|m| m.configs.get("min.insync.replicas"))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(ctx.min_insync_replicas);
        let mut tr = TopicProduceResponse::default();
        if by_id {
            tr.topic_id = topic.topic_id;
        } else {
            tr.name = topic.name.clone();
        }
        let writable = match &meta {
            Some(m) => access.topic(authz::Operation::Write, &m.name),
            None if !by_id => access.topic(authz::Operation::Write, topic.name.as_str()),
            None => true,
        };
        for p in topic.partition_data {
            let pr = if !writable {
                partition_error(p.index, authz::TOPIC_AUTHORIZATION_FAILED, None)
            } else if let Some(m) = meta.as_ref().filter(|m| {
                is_internal_topic(&m.name) && !(cluster_write && m.name == SHARE_STATE_TOPIC)
            }) {
                // As Kafka: only the cluster writes its internal topics.
                partition_error(
                    p.index,
                    codes::INVALID_TOPIC_EXCEPTION,
                    Some(format!("Cannot append to internal topic {}", m.name)),
                )
            } else if txn_denied {
                partition_error(
                    p.index,
                    codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    Some("WRITE on the transactional id is not allowed".into()),
                )
            } else if !matches!(acks, -1..=1) {
                partition_error(
                    p.index,
                    codes::INVALID_REQUIRED_ACKS,
                    Some(format!("acks={acks}")),
                )
            } else if let Some((name, isr)) = meta
                .as_ref()
                .map(|m| (m.name.as_str(), in_sync(ctx, &m.name, p.index)))
                .filter(|(_, isr)| acks == -1 && (isr.len() as i64) < i64::from(min_isr))
            {
                // Nothing is appended: the write could not reach min.insync.replicas copies.
                partition_error(
                    p.index,
                    codes::NOT_ENOUGH_REPLICAS,
                    Some(format!(
                        "{name}-{}: min.insync.replicas={min_isr} but only {} replica(s) are in \
                         sync ({isr:?})",
                        p.index,
                        isr.len()
                    )),
                )
            } else {
                let log = match &meta {
                    None if by_id => Err(codes::UNKNOWN_TOPIC_ID),
                    None => Err(codes::UNKNOWN_TOPIC_OR_PARTITION),
                    Some(m) => match catalog::leader_partition(ctx, &m.name, p.index, -1) {
                        Err(catalog::NOT_LEADER_OR_FOLLOWER) => {
                            taken_up(ctx, &m.name, p.index, req_timeout_ms).await
                        }
                        found => found,
                    },
                };
                match log {
                    Err(code) => {
                        let message = (code == catalog::NOT_LEADER_OR_FOLLOWER).then(|| match meta
                            .as_ref()
                            .map(|m| catalog::ownership(ctx, &m.name, p.index))
                        {
                            Some(catalog::Ownership::Elsewhere(l)) if l >= 0 => {
                                format!("broker {l} leads this partition")
                            }
                            Some(catalog::Ownership::Elsewhere(_)) => {
                                "the partition has no leader (no in-sync replica is alive)"
                                    .to_string()
                            }
                            _ => format!(
                                "broker {} is taking up or handing over the leadership",
                                ctx.node_id
                            ),
                        });
                        partition_error(p.index, code, message)
                    }
                    Ok((log, epoch)) => match p.records {
                        None => partition_error(
                            p.index,
                            codes::INVALID_REQUEST,
                            Some("records are null".into()),
                        ),
                        Some(records) => {
                            ctx.metrics.produced_bytes(records.len());
                            // Stamped with the epoch this broker was found leading at, or
                            // refused if leadership changed in between.
                            match log.append_in_epoch(records, epoch) {
                                Ok(AppendOutcome::Appended(info))
                                | Ok(AppendOutcome::Duplicate(info)) => {
                                    if acks == -1 {
                                        let name = meta
                                            .as_ref()
                                            .map(|m| m.name.clone())
                                            .unwrap_or_default();
                                        waits.push(ReplicatedWait {
                                            topic: response.responses.len(),
                                            partition: tr.partition_responses.len(),
                                            tenure: ctx.replicas.tenure(&name, p.index),
                                            name,
                                            index: p.index,
                                            log,
                                            last_offset: info.last_offset,
                                            min_isr,
                                        });
                                    }
                                    partition_ok(p.index, &info)
                                }
                                Err(e) => {
                                    tracing::debug!(topic = %topic.name.as_str(), partition = p.index, error = %e, "append refused");
                                    partition_error(p.index, e.kafka_code(), Some(e.to_string()))
                                }
                            }
                        }
                    },
                }
            };
            ctx.metrics.error_code("Produce", pr.error_code);
            tr.partition_responses.push(pr);
        }
        response.responses.push(tr);
    }

    if acks == 0 {
        ctx.metrics.produce_latency(started.elapsed());
        let failed = response.responses.iter().find_map(|t| {
            t.partition_responses
                .iter()
                .find(|p| p.error_code != codes::NONE)
                .map(|p| (t.name.as_str().to_string(), p.index, p.error_code))
        });
        if let Some((topic, partition, code)) = failed {
            return Err(BrokerError::UnacknowledgedProduceFailed {
                topic,
                partition,
                code,
            });
        }
        return Ok(Reply::Now(None));
    }
    if waits.is_empty() {
        ctx.metrics.produce_latency(started.elapsed());
        return Ok(Reply::now(respond(raw, &response)?));
    }
    let metrics = Arc::clone(&ctx.metrics);
    let ctx2 = Arc::clone(ctx);
    // The producer's request timeout bounds the wait (a stuck disk or follower answers
    // REQUEST_TIMED_OUT instead of holding the connection forever).
    let timeout = Duration::from_millis(u64::try_from(req_timeout_ms).unwrap_or(0).max(1));
    Ok(Reply::Later(
        async move {
            let results = futures::future::join_all(waits.iter().map(|w| async {
                let lost = async {
                    match &w.tenure {
                        Some(t) => t.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                let waited = tokio::select! {
                    r = tokio::time::timeout(timeout, w.log.wait_high_watermark(w.last_offset)) => r,
                    () = lost => {
                        return Some((
                            catalog::NOT_LEADER_OR_FOLLOWER,
                            format!(
                                "broker {} stopped leading {}-{} before every in-sync replica had \
                                 the records; retry on the new leader",
                                ctx2.node_id, w.name, w.index
                            ),
                        ));
                    }
                };
                match waited {
                    Ok(Ok(())) => {
                        let isr = in_sync(&ctx2, &w.name, w.index);
                        ((isr.len() as i64) < i64::from(w.min_isr)).then(|| {
                            (
                                codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                                format!(
                                    "written, but only {} replica(s) are in sync ({isr:?}); \
                                     min.insync.replicas={}",
                                    isr.len(),
                                    w.min_isr
                                ),
                            )
                        })
                    }
                    Ok(Err(e)) => Some((e.kafka_code(), e.to_string())),
                    Err(_) => Some((
                        codes::REQUEST_TIMED_OUT,
                        format!(
                            "not replicated to every in-sync replica within timeout_ms={}",
                            timeout.as_millis()
                        ),
                    )),
                }
            }))
            .await;
            for (w, r) in waits.iter().zip(results) {
                if let Some((code, message)) = r {
                    if let Some(pr) = response
                        .responses
                        .get_mut(w.topic)
                        .and_then(|t| t.partition_responses.get_mut(w.partition))
                    {
                        *pr = partition_error(pr.index, code, Some(message));
                        metrics.error_code("Produce", pr.error_code);
                    }
                }
            }
            metrics.produce_latency(started.elapsed());
            respond(raw, &response).map(|b| Some(b.into()))
        }
        .boxed(),
    ))
}

/// Produce v0–v2: advertised (for old librdkafka, see `api_versions`) but refused with
/// UNSUPPORTED_VERSION per partition, as Kafka 4.x does.
///
/// The v0–v2 request body is the v3 body without the leading nullable `transactional_id`, so
/// it decodes as v3 after prefixing a null string; the v2 response is byte-identical to v3.
/// v0 and v1 responses have a different layout, so those connections are closed instead.
pub fn reject_old_version(
    peer: SocketAddr,
    raw: RawHeader,
    body: Bytes,
) -> Result<Bytes, BrokerError> {
    let unsupported = || BrokerError::UnsupportedVersion {
        peer,
        api: api_name(raw.api_key),
        api_key: raw.api_key,
        api_version: raw.api_version,
    };
    if raw.api_version != 2 {
        return Err(unsupported());
    }
    let mut v3 = BytesMut::with_capacity(body.len() + 2);
    v3.put_i16(-1);
    v3.put_slice(&body);
    let mut v3 = v3.freeze();
    let as_v3 = RawHeader {
        api_version: 3,
        ..raw
    };
    let req: ProduceRequest = codec::decode_body(peer, as_v3, &mut v3)?;
    let mut response = ProduceResponse::default();
    for t in req.topic_data {
        let mut tr = TopicProduceResponse::default().with_name(t.name);
        for p in t.partition_data {
            tr.partition_responses
                .push(partition_error(p.index, codes::UNSUPPORTED_VERSION, None));
        }
        response.responses.push(tr);
    }
    codec::encode_response(raw, 0, 3, &response)
}

/// InitProducerId for idempotent producers (a transactional id goes to
/// [`super::txn::init_producer_id`]).
pub async fn init_producer_id(
    ctx: &Arc<BrokerContext>,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let base = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_ongoing_txn_producer_id(ProducerId(-1))
        .with_ongoing_txn_producer_epoch(-1);
    let pid = req.producer_id.0;
    let epoch = req.producer_epoch;
    // KIP-360: an idempotent producer may ask to bump its epoch (after a timeout / sequence
    // error); keep the id and bump unless the epoch would overflow.
    if catalog::producer_id_was_issued(ctx, pid) && (0..i16::MAX - 1).contains(&epoch) {
        return base
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch + 1);
    }
    match catalog::allocate_producer_id(ctx).await {
        Ok(id) => base.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot reserve producer ids");
            ctx.metrics.error_code("InitProducerId", e.code);
            base.with_error_code(e.code)
        }
    }
}
