//! Share-partition state in the internal topic `__share_group_state`, kept like group offsets
//! are kept in `__consumer_offsets`: records in a replicated, fsynced internal topic, the last
//! record of a key wins, read back when the broker starts serving share groups.
//!
//! - **Record**: key `<group>\n<topic id>\n<partition>`, value the share partition's state as
//!   JSON (start and end offset, each in-flight record's state and delivery count); a null value
//!   is a tombstone (the group was deleted).
//! - **When**: every request that changed a share partition (an acquisition, an
//!   acknowledgement, a release, a lock that ran out) writes the changed partitions before it is
//!   answered, so an acknowledged record is not offered again after a restart. Records that were
//!   acquired when the broker stopped come back available, with their delivery counts.
//! - **Compaction**: once the topic holds [`COMPACT_AFTER`] records more than the live states,
//!   every live state is written again and everything before those copies is deleted
//!   (DeleteRecords on the internal topic): last-wins reading stays correct at every step.
//! - **Cluster**: one partition, written by the leader of each share partition: locally
//!   where it leads `__share_group_state-0` too, else as a Produce (acks=all) to that leader
//!   under the inter-broker client id, which the Produce handler lets through to this one
//!   internal topic. Each record carries the leader epoch it was written at (header
//!   [`EPOCH_HEADER`]); a broker that becomes a partition's leader takes up its state
//!   ([`adopt`]) from its own copy of the topic, or through its leader when it holds none,
//!   the highest epoch winning, so a write of a deposed leader that lands late cannot
//!   overwrite its successor's. Only states of partitions led
//!   here at the epoch they were taken up at are written.
//! - Compaction rewrites live states from memory, which on a cluster holds only the partitions
//!   led here: it runs on a single broker only (on a cluster the topic grows by one record per
//!   change).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use uuid::Uuid;

use super::catalog;
use super::share::{limits_for, now_ms};
use crate::context::BrokerContext;
use crate::group::SHARE_STATE_TOPIC;
use crate::replica::client::PeerConnection;
use crate::share::coordinator::Changed;
use crate::share::SharePartition;

/// Records written beyond the live states before the topic is compacted.
const COMPACT_AFTER: u64 = 10_000;
/// Records per batch of a compaction's rewrite.
const REWRITE_BATCH: usize = 100;
/// The longest a write waits to be replicated before the request is answered anyway.
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Connecting to the state topic's leader, and the margin over [`WRITE_WAIT`] of its answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// The Produce version of a write through the state topic's leader (topic names, flexible).
const PRODUCE_VERSION: i16 = 9;
/// The Fetch version of a read through the state topic's leader (topic names, flexible).
const FETCH_VERSION: i16 = 12;

/// Records appended since the last compaction (and at load: all read).
static APPENDED: AtomicU64 = AtomicU64::new(0);

/// The header holding the leader epoch of the share partition a state was written at.
pub const EPOCH_HEADER: &str = "sluice.leader.epoch";

/// The latest state of each key: (leader epoch written at, state; `None`: deleted).
type Latest = BTreeMap<(String, Uuid, i32), (i32, Option<SharePartition>)>;

fn key_of(group: &str, topic_id: Uuid, partition: i32) -> String {
    format!("{group}\n{topic_id}\n{partition}")
}

fn parse_key(k: &[u8]) -> Option<(String, Uuid, i32)> {
    let s = std::str::from_utf8(k).ok()?;
    let mut parts = s.rsplitn(3, '\n');
    let partition = parts.next()?.parse().ok()?;
    let topic_id = parts.next()?.parse().ok()?;
    let group = parts.next()?.to_string();
    Some((group, topic_id, partition))
}

/// Loads the persisted states once, before the first share request is served.
/// A state topic this broker has no copy of (yet: moments after a start) is tried again by
/// the next request.
pub async fn ensure_loaded(ctx: &Arc<BrokerContext>) {
    let _ = ctx.shares.loaded.get_or_try_init(|| load(ctx)).await;
}

async fn load(ctx: &Arc<BrokerContext>) -> Result<(), i16> {
    if catalog::topic(ctx, SHARE_STATE_TOPIC).is_none() {
        return Ok(());
    }
    // Any copy will do (or its leader's): states here are for describing and listing until a
    // partition's leader takes its state up (`adopt`).
    match scan(ctx, None).await {
        Ok((states, count)) => {
            APPENDED.store(count, Ordering::Relaxed);
            let mut saved: BTreeMap<String, BTreeMap<(Uuid, i32), SharePartition>> =
                BTreeMap::new();
            for ((g, t, p), (_, state)) in states {
                if let Some(state) = state {
                    saved.entry(g).or_default().insert((t, p), state);
                }
            }
            let partitions: usize = saved.values().map(BTreeMap::len).sum();
            tracing::info!(records = count, partitions, "share-partition state loaded");
            ctx.shares
                .restore(saved, &super::share::GroupShareConfigs(ctx));
        }
        Err(e) => {
            // Moments after a start the topic may have no leader yet: the next request tries
            // again.
            tracing::warn!(error = %e, "share-partition state not loaded yet");
            return Err(super::codes::UNKNOWN_TOPIC_OR_PARTITION);
        }
    }
    Ok(())
}

/// Reads the state topic: this broker's copy (to its log end: a follower's high watermark lags
/// its leader's), else through the topic's leader (to its high watermark, which every
/// acknowledged write passed). The latest state of each key (of `group` only, when given) and
/// the number of records read.
async fn scan(ctx: &Arc<BrokerContext>, group: Option<&str>) -> Result<(Latest, u64), String> {
    let group = group.map(str::to_string);
    let Some(log) = ctx.logs.partition(SHARE_STATE_TOPIC, 0) else {
        return scan_remote(ctx, group.as_deref()).await;
    };
    super::blocking(ctx, move |_| {
        let mut states = Latest::new();
        let mut offset = log.log_start_offset();
        let mut count = 0u64;
        let end = log.log_end_offset();
        while offset < end {
            let read = log
                .read_for_replica(offset, 1 << 20)
                .map_err(|e| e.to_string())?;
            match fold(&mut states, group.as_deref(), offset, &read.records)? {
                Some((next, n)) => {
                    offset = next;
                    count += n;
                }
                None => break,
            }
        }
        Ok::<_, String>((states, count))
    })
    .await
}

/// [`scan`] through the leader of the state topic, for a broker that holds no copy of it.
async fn scan_remote(
    ctx: &Arc<BrokerContext>,
    group: Option<&str>,
) -> Result<(Latest, u64), String> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    let catalog::Ownership::Elsewhere(leader) = catalog::ownership(ctx, SHARE_STATE_TOPIC, 0)
    else {
        return Err(format!("{SHARE_STATE_TOPIC}-0 has no leader to read from"));
    };
    let b = catalog::broker(ctx, leader).ok_or_else(|| {
        format!("broker {leader}, the leader of {SHARE_STATE_TOPIC}-0, is not registered")
    })?;
    let addr = format!("{}:{}", b.host, b.port);
    let tls = ctx.replicas.config().peer_tls.as_deref();
    // Its own connection: a scan is rare and must not wait behind writes.
    let mut conn = PeerConnection::connect(ctx.node_id, leader, &addr, PEER_TIMEOUT, tls)
        .await
        .map_err(|e| e.to_string())?
        .with_client_id(super::quorum::FORWARD_CLIENT_ID);
    let mut states = Latest::new();
    let mut count = 0u64;
    let mut offset = 0i64;
    loop {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(
                    kafka_protocol::protocol::StrBytes::from_static_str(SHARE_STATE_TOPIC),
                ))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let resp = conn
            .call(&req, FETCH_VERSION, "Fetch", WRITE_WAIT)
            .await
            .map_err(|e| e.to_string())?;
        let Some(part) = resp.responses.first().and_then(|t| t.partitions.first()) else {
            return Err(format!("broker {leader} answered the read with nothing"));
        };
        match part.error_code {
            0 => {}
            // Compacted since: start again at its log start.
            1 if offset < part.log_start_offset => {
                offset = part.log_start_offset;
                continue;
            }
            code => return Err(format!("broker {leader} refused the read (error {code})")),
        }
        if offset < part.log_start_offset {
            offset = part.log_start_offset;
        }
        let records = part.records.clone().unwrap_or_default();
        match fold(&mut states, group, offset, &records)? {
            Some((next, n)) => {
                offset = next;
                count += n;
            }
            None if offset < part.high_watermark => {
                return Err(format!(
                    "broker {leader} returned no records below its high watermark"
                ))
            }
            None => return Ok((states, count)),
        }
    }
}

/// Folds the state records of `batches` at or after `offset` into `states`: a key's state
/// written at a higher leader epoch wins, then the later one; a tombstone starts the key
/// afresh. The next offset to read and the records read; `None` when there were none.
fn fold(
    states: &mut Latest,
    group: Option<&str>,
    offset: i64,
    batches: &[u8],
) -> Result<Option<(i64, u64)>, String> {
    let records = crate::log::all_records(batches).map_err(|e| e.to_string())?;
    let Some(last) = records.last().map(|(o, _)| *o) else {
        return Ok(None);
    };
    let mut count = 0u64;
    for (o, r) in records {
        if o < offset {
            continue;
        }
        count += 1;
        let Some(key) = r.key.as_deref().and_then(parse_key) else {
            continue;
        };
        if group.is_some_and(|g| g != key.0) {
            continue;
        }
        let epoch = record_epoch(&r.headers);
        let Some(v) = r.value else {
            // A deleted group or offsets: whatever is written after starts afresh.
            states.insert(key, (-1, None));
            continue;
        };
        if states.get(&key).is_some_and(|(e, _)| *e > epoch) {
            continue;
        }
        let state = serde_json::from_slice::<SharePartition>(&v)
            .map_err(|e| format!("the state of {key:?} at offset {o} does not parse: {e}"))?;
        states.insert(key, (epoch, Some(state)));
    }
    Ok(Some((last + 1, count)))
}

/// The persisted start offset of each share partition of `group` (from this broker's copy of
/// the state topic: on a cluster the partitions' leaders write there, and memory here holds
/// only what is led here). `None` when there is no copy here.
pub async fn persisted_starts(
    ctx: &Arc<BrokerContext>,
    group: &str,
) -> Option<BTreeMap<(Uuid, i32), i64>> {
    catalog::topic(ctx, SHARE_STATE_TOPIC)?;
    match scan(ctx, Some(group)).await {
        Ok((states, _)) => Some(
            states
                .into_iter()
                .filter_map(|((_, t, p), (_, s))| Some(((t, p), s?.start_offset())))
                .collect(),
        ),
        Err(e) => {
            tracing::debug!(group, error = %e, "persisted share state not read");
            None
        }
    }
}

/// The leader epoch a state record was written at; -1 for records written before it was kept.
fn record_epoch(headers: &[(String, Option<Vec<u8>>)]) -> i32 {
    headers
        .iter()
        .find(|(k, _)| k == EPOCH_HEADER)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// Takes up the share partitions among `keys` that this broker leads at an epoch it has not
/// taken them up at yet, from the persisted state: before anything is served from them.
/// An error (no copy of the state topic here) leaves them not taken up, so nothing is
/// persisted from here for them and the next request tries again.
pub async fn adopt(
    ctx: &Arc<BrokerContext>,
    group: &str,
    keys: &[(Uuid, i32)],
) -> Result<(), String> {
    let keys: std::collections::BTreeSet<(Uuid, i32)> = keys.iter().copied().collect();
    let stale = |ctx: &Arc<BrokerContext>| -> Vec<((Uuid, i32), i32)> {
        keys.iter()
            .filter_map(|key| {
                let meta = catalog::topic_by_id(ctx, key.0)?;
                match catalog::ownership(ctx, &meta.name, key.1) {
                    catalog::Ownership::Here(epoch)
                        if ctx.shares.owned_epoch(group, *key) != Some(epoch) =>
                    {
                        Some((*key, epoch))
                    }
                    _ => None,
                }
            })
            .collect()
    };
    if stale(ctx).is_empty() {
        return Ok(());
    }
    // Under the persistence lock: what this broker wrote is in its copy before it is read
    // (the write waited for replication), and two requests do not take a partition up twice.
    let _guard = ctx.shares.persisting.lock().await;
    let stale = stale(ctx);
    if stale.is_empty() {
        return Ok(());
    }
    let (states, _) = if catalog::topic(ctx, SHARE_STATE_TOPIC).is_some() {
        scan(ctx, Some(group)).await?
    } else {
        (Latest::new(), 0)
    };
    for (key, epoch) in stale {
        let state = states
            .get(&(group.to_string(), key.0, key.1))
            .and_then(|(_, s)| s.clone());
        tracing::info!(group, topic_id = %key.0, partition = key.1, epoch,
            start = state.as_ref().map(SharePartition::start_offset),
            "share partition taken up by its leader");
        ctx.shares
            .adopt(group, key, epoch, state, &limits_for(ctx, group, key.0));
    }
    Ok(())
}

fn encode(changes: &[(Changed, i32)]) -> Result<Bytes, String> {
    let records = changes
        .iter()
        .enumerate()
        .map(|(i, ((g, t, p, state), epoch))| {
            let value = match state {
                Some(s) => Some(Bytes::from(
                    serde_json::to_vec(s).map_err(|e| e.to_string())?,
                )),
                None => None,
            };
            Ok(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                // Consecutive offset deltas: a Produce to the state topic's leader checks them.
                offset: i64::try_from(i).unwrap_or(i64::MAX),
                sequence: -1,
                timestamp: now_ms(),
                key: Some(Bytes::from(key_of(g, *t, *p))),
                value,
                headers: [(
                    kafka_protocol::protocol::StrBytes::from_static_str(EPOCH_HEADER),
                    Some(Bytes::from(epoch.to_string())),
                )]
                .into_iter()
                .collect(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| format!("encode: {e}"))?;
    Ok(buf.freeze())
}

/// Writes the share partitions changed since the last write; waits until the write is
/// replicated (at most [`WRITE_WAIT`]). A failed write is logged and retried with the next.
/// Changes to partitions this broker does not lead at the epoch it took them up at are
/// dropped: their leader is elsewhere now and writes its own.
pub async fn persist(ctx: &Arc<BrokerContext>) {
    let guard = ctx.shares.persisting.lock().await;
    let changes: Vec<(Changed, i32)> = ctx
        .shares
        .take_dirty()
        .into_iter()
        .filter_map(|c| {
            if c.3.is_none() {
                return Some((c, -1));
            }
            let meta = catalog::topic_by_id(ctx, c.1)?;
            match catalog::ownership(ctx, &meta.name, c.2) {
                catalog::Ownership::Here(epoch)
                    if ctx.shares.owned_epoch(&c.0, (c.1, c.2)) == Some(epoch) =>
                {
                    Some((c, epoch))
                }
                _ => {
                    tracing::debug!(group = %c.0, topic = %meta.name, partition = c.2,
                        "share-partition change not persisted: not led here at the epoch it was taken up at");
                    None
                }
            }
        })
        .collect();
    if changes.is_empty() {
        ctx.shares.forget_idle();
        return;
    }
    let written = append(ctx, &changes).await;
    let last = match written {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(error = %e, partitions = changes.len(),
                "share-partition state not persisted; retried with the next change");
            let changed: Vec<Changed> = changes.into_iter().map(|(c, _)| c).collect();
            ctx.shares.mark_dirty(&changed);
            return;
        }
    };
    APPENDED.fetch_add(changes.len() as u64, Ordering::Relaxed);
    ctx.shares.forget_idle();
    if let Err(e) = compact_if_due(ctx).await {
        tracing::warn!(error = %e, "share-partition state not compacted");
    }
    drop(guard);
    if let Some((log, offset)) = last {
        match tokio::time::timeout(WRITE_WAIT, log.wait_high_watermark(offset)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "share-partition state write failed"),
            Err(_) => tracing::warn!(offset, "share-partition state write not replicated in time"),
        }
    }
}

/// Writes states set by the coordinator (altered or deleted offsets), each at the leader
/// epoch its partition has now, so the leader's next take-up reads them; waits until they are
/// replicated.
pub async fn write_states(
    ctx: &Arc<BrokerContext>,
    changes: &[(Changed, i32)],
) -> Result<(), String> {
    let guard = ctx.shares.persisting.lock().await;
    let last = append(ctx, changes).await?;
    APPENDED.fetch_add(changes.len() as u64, Ordering::Relaxed);
    drop(guard);
    if let Some((log, offset)) = last {
        tokio::time::timeout(WRITE_WAIT, log.wait_high_watermark(offset))
            .await
            .map_err(|_| "the write was not replicated in time".to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

type Written = Option<(Arc<crate::log::PartitionLog>, i64)>;

/// Appends `changes` to the state topic: locally when this broker leads it, else through its
/// leader (then replicated when this returns: the Produce asks for acks=all).
async fn append(ctx: &Arc<BrokerContext>, changes: &[(Changed, i32)]) -> Result<Written, String> {
    catalog::ensure_share_state_topic(ctx)
        .await
        .map_err(|e| e.to_string())?;
    let (log, epoch) = match catalog::leader_partition(ctx, SHARE_STATE_TOPIC, 0, -1) {
        Ok(led) => led,
        Err(code) => {
            return match catalog::ownership(ctx, SHARE_STATE_TOPIC, 0) {
                catalog::Ownership::Elsewhere(leader) if leader >= 0 => {
                    for chunk in changes.chunks(REWRITE_BATCH) {
                        produce_at(ctx, leader, encode(chunk)?).await?;
                    }
                    Ok(None)
                }
                _ => Err(format!(
                    "{SHARE_STATE_TOPIC}-0 is not led here and has no leader (error {code})"
                )),
            }
        }
    };
    let mut last = None;
    for chunk in changes.chunks(REWRITE_BATCH) {
        let batch = encode(chunk)?;
        let info = match log
            .append_in_epoch(batch, epoch)
            .map_err(|e| e.to_string())?
        {
            crate::log::AppendOutcome::Appended(i) | crate::log::AppendOutcome::Duplicate(i) => i,
        };
        last = Some((Arc::clone(&log), info.last_offset));
    }
    Ok(last)
}

/// Sends one batch of states to broker `leader`, the leader of the state topic.
async fn produce_at(ctx: &Arc<BrokerContext>, leader: i32, batch: Bytes) -> Result<(), String> {
    produce_through(ctx, leader, (SHARE_STATE_TOPIC, 0), batch).await
}

/// Appends `batch` to `partition` of `topic` through broker `leader`, its leader, as a Produce
/// with acks=all under the inter-broker client id, over a kept connection (dropped on any
/// error, so the next write reconnects).
pub async fn produce_through(
    ctx: &Arc<BrokerContext>,
    leader: i32,
    (topic, partition): (&str, i32),
    batch: Bytes,
) -> Result<(), String> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    let b = catalog::broker(ctx, leader).ok_or_else(|| {
        format!("broker {leader}, the leader of {topic}-{partition}, is not registered")
    })?;
    let addr = format!("{}:{}", b.host, b.port);
    let mut peers = ctx.share_peers.lock().await;
    if peers.get(&leader).is_some_and(|c| c.addr() != addr) {
        peers.remove(&leader);
    }
    let conn = match peers.entry(leader) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            let tls = ctx.replicas.config().peer_tls.as_deref();
            let conn = PeerConnection::connect(ctx.node_id, leader, &addr, PEER_TIMEOUT, tls)
                .await
                .map_err(|e| e.to_string())?
                .with_client_id(super::quorum::FORWARD_CLIENT_ID);
            e.insert(conn)
        }
    };
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(i32::try_from(WRITE_WAIT.as_millis()).unwrap_or(i32::MAX))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                topic.to_string(),
            )))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let resp = match conn
        .call(&req, PRODUCE_VERSION, "Produce", WRITE_WAIT + PEER_TIMEOUT)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            peers.remove(&leader);
            return Err(e.to_string());
        }
    };
    let code = resp
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| p.error_code)
        .find(|c| *c != 0)
        .unwrap_or(0);
    if code != 0 {
        return Err(format!(
            "broker {leader} refused the write to {topic}-{partition} (error {code})"
        ));
    }
    if resp.responses.is_empty() {
        return Err(format!("broker {leader} answered the write with nothing"));
    }
    Ok(())
}

/// Rewrites every live state and deletes what came before, once enough has piled up.
async fn compact_if_due(ctx: &Arc<BrokerContext>) -> Result<(), String> {
    // Memory holds only the partitions led here: on a cluster it is not all there is.
    if ctx.cluster.state().brokers.len() > 1 {
        return Ok(());
    }
    let live: Vec<Changed> = ctx
        .shares
        .snapshot()
        .into_iter()
        .flat_map(|(g, parts)| {
            parts
                .into_iter()
                .map(move |((t, p), s)| (g.clone(), t, p, Some(s)))
        })
        .collect();
    if APPENDED.load(Ordering::Relaxed) < COMPACT_AFTER + live.len() as u64 {
        return Ok(());
    }
    let (log, epoch) = catalog::leader_partition(ctx, SHARE_STATE_TOPIC, 0, -1)
        .map_err(|code| format!("{SHARE_STATE_TOPIC}-0 is not led here (error {code})"))?;
    let first = log.log_end_offset();
    // Each copy at the epoch its partition was taken up at (-1: not since the start), so a
    // later write of the same leadership still wins.
    let live: Vec<(Changed, i32)> = live
        .into_iter()
        .map(|c| {
            let epoch = ctx.shares.owned_epoch(&c.0, (c.1, c.2)).unwrap_or(-1);
            (c, epoch)
        })
        .collect();
    for chunk in live.chunks(REWRITE_BATCH) {
        log.append_in_epoch(encode(chunk)?, epoch)
            .map_err(|e| e.to_string())?;
    }
    let end = log.log_end_offset();
    tokio::time::timeout(WRITE_WAIT, log.wait_high_watermark(end - 1))
        .await
        .map_err(|_| "the rewrite was not replicated in time".to_string())?
        .map_err(|e| e.to_string())?;
    let deleted = tokio::task::spawn_blocking(move || log.delete_records(first))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    APPENDED.store(live.len() as u64, Ordering::Relaxed);
    tracing::info!(
        live = live.len(),
        log_start = deleted,
        "share-partition state compacted"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_with_any_group_name() {
        let t = Uuid::from_u128(9);
        for g in ["g", "a\nb", ""] {
            assert_eq!(
                parse_key(key_of(g, t, 3).as_bytes()),
                Some((g.to_string(), t, 3))
            );
        }
        assert_eq!(parse_key(b"junk"), None);
    }
}
