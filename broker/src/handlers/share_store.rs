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
//! - Single partition, led by one broker: the share groups of a multi-broker cluster would need
//!   the state partitioned and loaded on leadership changes as the group coordinator does.

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
use crate::share::coordinator::Changed;
use crate::share::SharePartition;

/// Records written beyond the live states before the topic is compacted.
const COMPACT_AFTER: u64 = 10_000;
/// Records per batch of a compaction's rewrite.
const REWRITE_BATCH: usize = 100;
/// The longest a write waits to be replicated before the request is answered anyway.
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Records appended since the last compaction (and at load: all read).
static APPENDED: AtomicU64 = AtomicU64::new(0);

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
/// A state topic this broker does not lead (yet: moments after a start) is tried again by the
/// next request.
pub async fn ensure_loaded(ctx: &Arc<BrokerContext>) {
    let _ = ctx.shares.loaded.get_or_try_init(|| load(ctx)).await;
}

async fn load(ctx: &Arc<BrokerContext>) -> Result<(), i16> {
    let Some(meta) = catalog::topic(ctx, SHARE_STATE_TOPIC) else {
        return Ok(());
    };
    let log = match catalog::local_partition(ctx, &meta.name, 0, -1) {
        Ok(log) => log,
        Err(code) => {
            tracing::debug!(
                code,
                "share-partition state not loaded yet: its topic is not led here"
            );
            return Err(code);
        }
    };
    let loaded = super::blocking(ctx, move |_| {
        let mut states: BTreeMap<(String, Uuid, i32), Option<SharePartition>> = BTreeMap::new();
        let mut offset = log.log_start_offset();
        let mut count = 0u64;
        let end = log.high_watermark();
        while offset < end {
            let read = log.read(offset, 1 << 20).map_err(|e| e.to_string())?;
            let records = crate::log::all_records(&read.records).map_err(|e| e.to_string())?;
            let Some(last) = records.last().map(|(o, _)| *o) else {
                break;
            };
            for (o, r) in records {
                if o < offset {
                    continue;
                }
                count += 1;
                let Some(key) = r.key.as_deref().and_then(parse_key) else {
                    continue;
                };
                let state = match r.value {
                    None => None,
                    Some(v) => Some(serde_json::from_slice::<SharePartition>(&v).map_err(|e| {
                        format!("the state of {key:?} at offset {o} does not parse: {e}")
                    })?),
                };
                states.insert(key, state);
            }
            offset = last + 1;
        }
        Ok::<_, String>((states, count))
    })
    .await;
    match loaded {
        Ok((states, count)) => {
            APPENDED.store(count, Ordering::Relaxed);
            let mut saved: BTreeMap<String, BTreeMap<(Uuid, i32), SharePartition>> =
                BTreeMap::new();
            for ((g, t, p), state) in states {
                if let Some(state) = state {
                    saved.entry(g).or_default().insert((t, p), state);
                }
            }
            let partitions: usize = saved.values().map(BTreeMap::len).sum();
            tracing::info!(records = count, partitions, "share-partition state loaded");
            ctx.shares.restore(saved, &|id| limits_for(ctx, id));
        }
        Err(e) => tracing::error!(error = %e, "share-partition state could not be loaded"),
    }
    Ok(())
}

fn encode(changes: &[Changed]) -> Result<Bytes, String> {
    let records = changes
        .iter()
        .map(|(g, t, p, state)| {
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
                offset: 0,
                sequence: -1,
                timestamp: now_ms(),
                key: Some(Bytes::from(key_of(g, *t, *p))),
                value,
                headers: Default::default(),
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
pub async fn persist(ctx: &Arc<BrokerContext>) {
    let guard = ctx.shares.persisting.lock().await;
    let changes = ctx.shares.take_dirty();
    if changes.is_empty() {
        return;
    }
    let written = append(ctx, &changes).await;
    let last = match written {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(error = %e, partitions = changes.len(),
                "share-partition state not persisted; retried with the next change");
            ctx.shares.mark_dirty(&changes);
            return;
        }
    };
    APPENDED.fetch_add(changes.len() as u64, Ordering::Relaxed);
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

type Written = Option<(Arc<crate::log::PartitionLog>, i64)>;

async fn append(ctx: &Arc<BrokerContext>, changes: &[Changed]) -> Result<Written, String> {
    catalog::ensure_share_state_topic(ctx)
        .await
        .map_err(|e| e.to_string())?;
    let (log, epoch) = catalog::leader_partition(ctx, SHARE_STATE_TOPIC, 0, -1)
        .map_err(|code| format!("{SHARE_STATE_TOPIC}-0 is not led here (error {code})"))?;
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

/// Rewrites every live state and deletes what came before, once enough has piled up.
async fn compact_if_due(ctx: &Arc<BrokerContext>) -> Result<(), String> {
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
