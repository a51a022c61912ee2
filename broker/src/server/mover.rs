//! Partition moves (AlterPartitionReassignments), with one copy per partition.
//!
//! The move's target drives it:
//! 1. the topology task creates an empty local log as soon as the quorum records the move;
//! 2. the target copies the owner's committed batches ([`Request::FetchPartition`]) exactly as
//!    they are (offsets, epochs, producer ids), starting where its copy ends;
//! 3. once it has caught up, it asks the owner to hand over ([`Request::Handover`]): the owner
//!    fences the partition (appends are refused with NOT_LEADER_OR_FOLLOWER from then on, and
//!    one in progress finishes first) and answers its final log end;
//! 4. the target copies up to that end, waits until its copy is durable, and proposes
//!    `CompleteReassignment` at the leader epoch it started from: the quorum makes it the
//!    owner with the next epoch. Producers that got NOT_LEADER_OR_FOLLOWER refresh metadata
//!    and retry there; an idempotent producer's retry of a batch the old owner had already
//!    written is recognised as a duplicate, because the copy carries its producer state.
//!
//! A fenced partition stays read-only until the move completes or is cancelled (the owner
//! unfences when the quorum shows the move gone), so no acknowledged write is ever left behind
//! on the old owner.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::Instrument;

use crate::cluster::network::{PartitionChunk, Request, Response};
use crate::cluster::state::{code, BrokerState, Command, Outcome};
use crate::cluster::PartitionService;
use crate::context::BrokerContext;
use crate::group::offsets::StoredOffset;

/// Bytes asked for per copy round trip.
const COPY_CHUNK: u32 = 8 << 20;
/// Pause between copy rounds when the owner had nothing new, and after an error.
const IDLE: Duration = Duration::from_millis(50);
const BACKOFF: Duration = Duration::from_millis(500);
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The owner's side of the partition RPCs, on this broker's local logs.
pub struct LogPartitions {
    pub ctx: Arc<BrokerContext>,
}

impl PartitionService for LogPartitions {
    fn fetch(
        &self,
        topic: String,
        partition: i32,
        offset: i64,
        max_bytes: u32,
    ) -> BoxFuture<'static, Result<PartitionChunk, String>> {
        let ctx = Arc::clone(&self.ctx);
        async move {
            let log = ctx.logs.partition(&topic, partition).ok_or_else(|| {
                format!(
                    "{topic}-{partition} is not stored on broker {}",
                    ctx.node_id
                )
            })?;
            let log_start = log.log_start_offset();
            if offset < log_start {
                // The copy must start later: the older records are gone here.
                return Ok(PartitionChunk {
                    records: Vec::new(),
                    log_start,
                    high_watermark: log.high_watermark(),
                });
            }
            let read = tokio::task::spawn_blocking(move || log.read(offset, max_bytes as usize))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{topic}-{partition}: {e}"))?;
            Ok(PartitionChunk {
                records: read.records.to_vec(),
                log_start: read.log_start_offset,
                high_watermark: read.high_watermark,
            })
        }
        .boxed()
    }

    fn handover(
        &self,
        topic: String,
        partition: i32,
        leader_epoch: i32,
    ) -> BoxFuture<'static, Result<i64, String>> {
        let ctx = Arc::clone(&self.ctx);
        async move {
            let state = ctx.cluster.state();
            let rec = state
                .partition(&topic, partition)
                .ok_or_else(|| format!("{topic}-{partition} does not exist"))?;
            if rec.owner != ctx.node_id || rec.leader_epoch != leader_epoch || rec.moving_to.is_none()
            {
                return Err(format!(
                    "{topic}-{partition}: no move from broker {} at epoch {leader_epoch} (owner {}, epoch {}, moving to {:?})",
                    ctx.node_id, rec.owner, rec.leader_epoch, rec.moving_to
                ));
            }
            let log = ctx
                .logs
                .partition(&topic, partition)
                .ok_or_else(|| format!("{topic}-{partition} is not stored here"))?;
            let end = log.fence();
            tracing::info!(topic = %topic, partition, end, to = ?rec.moving_to, "partition fenced for handover");
            Ok(end)
        }
        .boxed()
    }

    fn adopt_group(
        &self,
        group: String,
        offsets: Vec<(String, i32, StoredOffset)>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let ctx = Arc::clone(&self.ctx);
        async move {
            let n = offsets.len();
            let g = group.clone();
            let groups = Arc::clone(&ctx.groups);
            tokio::task::spawn_blocking(move || groups.import_offsets(&g, offsets))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("group {group}: {e}"))?;
            tracing::info!(group = %group, offsets = n, "took over the group's committed offsets");
            Ok(())
        }
        .boxed()
    }
}

/// How often a draining broker looks for group coordinator roles to hand over.
const GROUP_DRAIN_EVERY: Duration = Duration::from_secs(1);

/// Spawns the task that hands this broker's group coordinator roles to other brokers while it
/// is draining (marked for removal): per group, new commits are refused (NOT_COORDINATOR) and
/// in-flight ones finish, the committed offsets are copied to the least loaded active broker,
/// and the quorum moves the role there. Members rediscover the coordinator and rejoin.
pub fn spawn_group_drain(ctx: Arc<BrokerContext>) {
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(GROUP_DRAIN_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let state = ctx.cluster.state();
                let draining = state
                    .brokers
                    .get(&ctx.node_id)
                    .is_some_and(|b| b.state == BrokerState::Draining);
                if !draining || !ctx.cluster.is_ready() {
                    continue;
                }
                for group in state.groups_of(ctx.node_id) {
                    if let Err(e) = hand_over_group(&ctx, &group).await {
                        tracing::warn!(group = %group, error = %e, "could not hand the group's coordinator role over; retrying");
                    }
                }
            }
        }
        .instrument(tracing::info_span!("group_drain")),
    );
}

async fn hand_over_group(ctx: &Arc<BrokerContext>, group: &str) -> Result<(), String> {
    let state = ctx.cluster.state();
    let target = state
        .active_brokers()
        .filter(|b| b.id != ctx.node_id)
        .map(|b| (state.groups_of(b.id).len(), b.id, b.cluster_addr.clone()))
        .min()
        .ok_or("no active broker to take the group")?;
    let (_, to, addr) = target;
    // From here on this broker refuses the group's requests; the write lock waits for
    // commits already in progress.
    ctx.group_handover.write().await.insert(group.to_string());
    let result = async {
        let offsets = ctx.groups.export_offsets(group);
        let n = offsets.len();
        let req = Request::AdoptGroup {
            group: group.to_string(),
            offsets,
        };
        match ctx.cluster.call(&addr, req, RPC_TIMEOUT).await {
            Ok(Response::AdoptGroup(Ok(()))) => {}
            Ok(other) => {
                return Err(format!(
                    "broker {to} refused the offsets: {}",
                    short(&other)
                ))
            }
            Err(e) => return Err(e.to_string()),
        }
        match ctx
            .cluster
            .propose(Command::MoveGroup {
                group: group.to_string(),
                to,
            })
            .await
        {
            Ok(Outcome::Coordinator(_)) => {}
            Ok(other) => return Err(format!("the quorum refused the move: {other:?}")),
            Err(e) => return Err(e.to_string()),
        }
        tracing::info!(group, to, offsets = n, "group coordinator role handed over");
        if let Err(e) = ctx.groups.forget_offsets(group) {
            tracing::warn!(group, error = %e, "could not drop the moved group's offsets here");
        }
        Ok(())
    }
    .await;
    ctx.group_handover.write().await.remove(group);
    result
}

/// Spawns the task that starts a copy job for every move to this broker, unfences partitions
/// whose move was cancelled and stamps owned partitions with their leader epoch.
pub fn spawn(ctx: Arc<BrokerContext>) {
    let running: Arc<Mutex<BTreeSet<(String, i32)>>> = Arc::default();
    let mut rx = ctx.cluster.watch();
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => break,
                    changed = rx.changed() => if changed.is_err() { break },
                }
                if !ctx.cluster.is_ready() {
                    continue;
                }
                let state = ctx.cluster.state();
                for (name, topic) in &state.topics {
                    for (i, p) in topic.partitions.iter().enumerate() {
                        let i = i as i32;
                        if p.owner == ctx.node_id {
                            if let Some(log) = ctx.logs.partition(name, i) {
                                if log.leader_epoch() != p.leader_epoch {
                                    log.set_leader_epoch(p.leader_epoch);
                                }
                                if p.moving_to.is_none() && log.is_fenced() {
                                    tracing::info!(topic = %name, partition = i, "move cancelled; partition writable again");
                                    log.unfence();
                                }
                            }
                        }
                        if p.moving_to == Some(ctx.node_id) {
                            let key = (name.clone(), i);
                            let fresh = running
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(key.clone());
                            if fresh {
                                let (ctx, running) = (Arc::clone(&ctx), Arc::clone(&running));
                                tokio::spawn(
                                    async move {
                                        copy(&ctx, &key.0, key.1).await;
                                        running
                                            .lock()
                                            .unwrap_or_else(|e| e.into_inner())
                                            .remove(&key);
                                    }
                                    .instrument(tracing::info_span!("move", topic = %name, partition = i)),
                                );
                            }
                        }
                    }
                }
            }
        }
        .instrument(tracing::info_span!("mover")),
    );
}

/// Copies one partition to this broker and takes it over; returns when the move is complete,
/// cancelled, or the broker shuts down.
async fn copy(ctx: &Arc<BrokerContext>, topic: &str, partition: i32) {
    let me = ctx.node_id;
    let mut final_end: Option<(i32, i64)> = None;
    tracing::info!("copying partition to this broker");
    loop {
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let state = ctx.cluster.state();
        let Some(rec) = state.partition(topic, partition).copied() else {
            return;
        };
        if rec.moving_to != Some(me) {
            if rec.owner == me {
                tracing::info!(epoch = rec.leader_epoch, "partition moved here");
            } else {
                tracing::info!("move cancelled");
            }
            return;
        }
        let Some(owner_addr) = state
            .brokers
            .get(&rec.owner)
            .map(|b| b.cluster_addr.clone())
        else {
            pause(ctx, BACKOFF).await;
            continue;
        };
        let Some(log) = ctx.logs.partition(topic, partition) else {
            // The topology task creates the local log right after the move is recorded.
            pause(ctx, IDLE).await;
            continue;
        };
        // A handover belongs to one epoch; a new epoch (not expected while moving) restarts.
        if final_end.is_some_and(|(epoch, _)| epoch != rec.leader_epoch) {
            final_end = None;
        }
        let end = log.log_end_offset();
        if let Some((epoch, target_end)) = final_end {
            if end >= target_end {
                let durable = log.wait_durable(end - 1).await;
                if let Err(e) = durable {
                    tracing::warn!(error = %e, "copy not durable; retrying");
                    pause(ctx, BACKOFF).await;
                    continue;
                }
                let done = ctx
                    .cluster
                    .propose(Command::CompleteReassignment {
                        topic: topic.to_string(),
                        partition,
                        target: me,
                        leader_epoch: epoch,
                    })
                    .await;
                match done {
                    Ok(Outcome::Done) => {
                        tracing::info!(end, epoch = epoch + 1, "took over the partition");
                        return;
                    }
                    Ok(Outcome::Refused { code: c, message }) => {
                        // Cancelled or completed meanwhile: the loop re-reads the state.
                        tracing::info!(code = c, %message, "completion refused");
                        if c != code::NO_REASSIGNMENT_IN_PROGRESS {
                            pause(ctx, BACKOFF).await;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not commit the takeover; retrying");
                        pause(ctx, BACKOFF).await;
                    }
                }
                continue;
            }
        }
        let req = Request::FetchPartition {
            topic: topic.to_string(),
            partition,
            offset: end,
            max_bytes: COPY_CHUNK,
        };
        let chunk = match ctx.cluster.call(&owner_addr, req, RPC_TIMEOUT).await {
            Ok(Response::FetchPartition(Ok(c))) => c,
            Ok(other) => {
                tracing::warn!(owner = rec.owner, answer = ?short(&other), "copy fetch refused");
                pause(ctx, BACKOFF).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(owner = rec.owner, error = %e, "copy fetch failed");
                pause(ctx, BACKOFF).await;
                continue;
            }
        };
        if end < chunk.log_start {
            let (log2, start) = (Arc::clone(&log), chunk.log_start);
            let reset = tokio::task::spawn_blocking(move || log2.start_empty_at(start)).await;
            if !matches!(reset, Ok(Ok(()))) {
                tracing::error!(
                    start,
                    ?reset,
                    "cannot start the copy at the owner's log start"
                );
                pause(ctx, BACKOFF).await;
            }
            continue;
        }
        let got = chunk.records.len();
        if got > 0 {
            let (log2, records) = (Arc::clone(&log), Bytes::from(chunk.records));
            match tokio::task::spawn_blocking(move || log2.append_replicated(records)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot append the copied batches");
                    pause(ctx, BACKOFF).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "copy append task failed");
                    return;
                }
            }
        }
        let end = log.log_end_offset();
        if final_end.is_none() && end >= chunk.high_watermark {
            let req = Request::Handover {
                topic: topic.to_string(),
                partition,
                leader_epoch: rec.leader_epoch,
            };
            match ctx.cluster.call(&owner_addr, req, RPC_TIMEOUT).await {
                Ok(Response::Handover(Ok(owner_end))) => {
                    tracing::info!(
                        owner_end,
                        copied_to = end,
                        "owner fenced the partition; copying the rest"
                    );
                    final_end = Some((rec.leader_epoch, owner_end));
                }
                Ok(other) => {
                    tracing::warn!(answer = ?short(&other), "handover refused");
                    pause(ctx, BACKOFF).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "handover failed");
                    pause(ctx, BACKOFF).await;
                }
            }
            continue;
        }
        if got == 0 {
            pause(ctx, IDLE).await;
        }
    }
}

fn short(r: &Response) -> String {
    let s = format!("{r:?}");
    s.chars().take(200).collect()
}

async fn pause(ctx: &BrokerContext, d: Duration) {
    tokio::select! {
        _ = ctx.shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
