//! The transaction coordinator's background work (KIP-98): writing the COMMIT or ABORT
//! markers of every prepared transaction this broker coordinates, then completing it in the
//! quorum; and aborting transactions open longer than their timeout. The state itself lives
//! in the metadata quorum (`cluster::state::txns`); the requests that change it are
//! `handlers::txn`.
//!
//! The coordinator of a transactional id is the leader of its `__consumer_offsets` partition
//! (hash of the id, as for a group). Only the coordinator drives markers and timeouts; after a
//! coordinator move the new one finds the prepared transactions in the quorum and writes
//! their markers again (a second marker for a transaction already ended on a partition is
//! harmless: it ends nothing).
//!
//! Markers go to each partition's leader: appended here when this broker leads it, otherwise
//! over the cluster listener ([`crate::cluster::network::Request::WriteTxnMarker`]). A marker
//! counts as written once the partition's high watermark passes it (every in-sync replica has
//! it, durably under `fsync: always`), as for an `acks=all` produce.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::cluster::network::{Request, Response};
use crate::cluster::state::{ClusterState, Command, Outcome, TxnCommand, TxnRecord, TxnState};
use crate::context::BrokerContext;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::handlers::catalog;
use crate::log::txn::{build_marker, Marker};
use crate::log::{AppendOutcome, LogError};

/// How often the coordinator looks for timed-out transactions and markers still to write
/// (an EndTxn wakes it at once).
const TICK: Duration = Duration::from_secs(1);
/// A marker not replicated within this is tried again on the next round.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);
/// Kafka's `transactional.id.expiration.ms` default: an id without a transaction for this
/// long is forgotten (its next producer gets a new producer id).
pub const ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Kafka's `transaction.max.timeout.ms` default: a producer may not ask for more.
pub const MAX_TIMEOUT_MS: i32 = 15 * 60 * 1000;

/// Kafka's error codes of the coordinator lookup.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;

/// One marker to write: on `topic`-`partition`, ending producer `producer_id`'s transaction
/// (COMMIT when `commit`), from the coordinator of `coordinator_epoch`. What
/// [`Request::WriteTxnMarker`] carries to a partition's leader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MarkerWrite {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Wakes the coordinator's loop, and knows which transactions it is working on.
#[derive(Debug, Default)]
pub struct TxnCoordinator {
    wake: Notify,
    /// Transactional ids whose markers (or timeout abort) a task is writing now: each id is
    /// worked on by one task at a time, and a slow partition leader delays only its own
    /// transactions.
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl TxnCoordinator {
    /// A transaction was prepared (or needs another look): run a round now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Whether `node` coordinates `id` in `state`: the coordinator epoch (the leader epoch of the
/// id's `__consumer_offsets` partition, written into markers), or the Kafka error a client
/// gets (NOT_COORDINATOR: look it up again).
pub fn coordinator_epoch(state: &ClusterState, node: i32, id: &str) -> Result<i32, i16> {
    let Some(topic) = state.topics.get(OFFSETS_TOPIC) else {
        return Err(COORDINATOR_NOT_AVAILABLE);
    };
    let n = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if n == 0 {
        return Err(COORDINATOR_NOT_AVAILABLE);
    }
    let p = partition_for(id, n);
    match state.partition(OFFSETS_TOPIC, p) {
        Some(rec) if rec.leader == node => Ok(rec.leader_epoch),
        Some(rec) if rec.leader < 0 => Err(COORDINATOR_NOT_AVAILABLE),
        _ => Err(NOT_COORDINATOR),
    }
}

/// Runs the coordinator's rounds until shutdown.
pub fn spawn(ctx: Arc<BrokerContext>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = ctx.txns.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            round(&ctx).await;
        }
    });
}

/// One look at every transaction this broker coordinates: a task for each one to complete
/// or to expire that no task works on yet.
async fn round(ctx: &Arc<BrokerContext>) {
    let state = ctx.cluster.state();
    let now = crate::log::now_ms();
    let mut open = 0;
    for (id, r) in &state.transactions {
        let Ok(epoch) = coordinator_epoch(&state, ctx.node_id, id) else {
            continue;
        };
        open += usize::from(r.state == TxnState::Ongoing);
        let preparing = r.state.is_preparing();
        let expired = r.state == TxnState::Ongoing
            && r.started_ms >= 0
            && now.saturating_sub(r.started_ms) > i64::from(r.timeout_ms);
        let idle = matches!(
            r.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        ) && now.saturating_sub(r.updated_ms) > ID_EXPIRATION_MS;
        if idle {
            let cmd = Command::Txn(TxnCommand::Forget {
                id: id.clone(),
                updated_ms: r.updated_ms,
            });
            match ctx.cluster.propose(cmd).await {
                Ok(_) => {
                    tracing::info!(transactional_id = %id, "transactional id unused for 7 days forgotten")
                }
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "cannot forget an unused transactional id")
                }
            }
            continue;
        }
        if !(preparing || expired) {
            continue;
        }
        {
            let mut busy = ctx.txns.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.insert(id.clone()) {
                continue;
            }
        }
        let (ctx, id, r) = (Arc::clone(ctx), id.clone(), r.clone());
        tokio::spawn(async move {
            if preparing {
                complete(&ctx, &id, &r, epoch).await;
            } else {
                expire(&ctx, &id, &r).await;
            }
            ctx.txns
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }
    ctx.metrics.transactions_open(open);
}

/// Writes the markers of a prepared transaction and completes it once all are written.
async fn complete(ctx: &Arc<BrokerContext>, id: &str, r: &TxnRecord, coordinator_epoch: i32) {
    let marker = match r.state {
        TxnState::PrepareCommit => Marker::Commit,
        _ => Marker::Abort,
    };
    let writes = r.partitions.iter().map(|(topic, p)| {
        write_marker(
            ctx,
            MarkerWrite {
                topic: topic.clone(),
                partition: *p,
                producer_id: r.producer_id,
                producer_epoch: r.epoch,
                commit: marker == Marker::Commit,
                coordinator_epoch,
            },
        )
    });
    let results = futures::future::join_all(writes).await;
    let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !failed.is_empty() {
        tracing::warn!(transactional_id = %id, producer_id = r.producer_id, ?marker, errors = ?failed, "transaction markers not written yet; retrying");
        return;
    }
    let cmd = Command::Txn(TxnCommand::Complete {
        id: id.to_string(),
        producer_id: r.producer_id,
        epoch: r.epoch,
        now_ms: crate::log::now_ms(),
    });
    match ctx.cluster.propose(cmd).await {
        Ok(Outcome::Txn(_)) => {
            ctx.metrics.transaction_ended(match marker {
                Marker::Commit => "committed",
                Marker::Abort => "aborted",
            });
            tracing::debug!(transactional_id = %id, producer_id = r.producer_id, ?marker, partitions = r.partitions.len(), "transaction completed")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(transactional_id = %id, error = %e, "cannot record a completed transaction; retrying")
        }
    }
}

/// Aborts a transaction open longer than its timeout (the markers follow on the next round).
async fn expire(ctx: &Arc<BrokerContext>, id: &str, r: &TxnRecord) {
    let cmd = Command::Txn(TxnCommand::Expire {
        id: id.to_string(),
        producer_id: r.producer_id,
        epoch: r.epoch,
        now_ms: crate::log::now_ms(),
    });
    match ctx.cluster.propose(cmd).await {
        Ok(Outcome::Txn(after)) => {
            ctx.metrics.transaction_ended("timed_out");
            tracing::info!(transactional_id = %id, producer_id = r.producer_id, timeout_ms = r.timeout_ms, new_epoch = after.epoch, "transaction timed out; aborting it and fencing its producer");
            ctx.txns.wake();
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(transactional_id = %id, error = %e, "cannot abort a timed-out transaction; retrying")
        }
    }
}

/// Writes one marker on the leader of its partition. A partition that no longer exists (its
/// topic was deleted) has nothing left to end.
async fn write_marker(ctx: &Arc<BrokerContext>, m: MarkerWrite) -> Result<(), String> {
    let state = ctx.cluster.state();
    let Some(rec) = state.partition(&m.topic, m.partition) else {
        return Ok(());
    };
    let leader = rec.leader;
    if leader == ctx.node_id {
        return write_local_marker(ctx, m).await;
    }
    let at = format!("{}-{}", m.topic, m.partition);
    let Some(b) = state.brokers.get(&leader) else {
        return Err(format!("{at}: no leader (broker {leader})"));
    };
    let timeout = MARKER_TIMEOUT + Duration::from_secs(5);
    match ctx
        .cluster
        .call(&b.cluster_addr, Request::WriteTxnMarker(m), timeout)
        .await
    {
        Ok(Response::WriteTxnMarker(r)) => r,
        Ok(other) => Err(format!(
            "{at}: unexpected answer from broker {leader}: {other:?}"
        )),
        Err(e) => Err(format!("{at}: broker {leader}: {e}")),
    }
}

/// Appends one marker to a partition this broker leads and waits until it is replicated
/// (this broker's side of [`Request::WriteTxnMarker`] too).
pub async fn write_local_marker(ctx: &Arc<BrokerContext>, m: MarkerWrite) -> Result<(), String> {
    let MarkerWrite {
        topic,
        partition,
        producer_id,
        producer_epoch,
        commit,
        coordinator_epoch,
    } = m;
    let marker = if commit {
        Marker::Commit
    } else {
        Marker::Abort
    };
    let (log, leader_epoch) = catalog::leader_partition(ctx, &topic, partition, -1)
        .map_err(|code| format!("{topic}-{partition}: not led here (error {code})"))?;
    let bytes = Bytes::from(build_marker(
        producer_id,
        producer_epoch,
        marker,
        coordinator_epoch,
        crate::log::now_ms(),
    ));
    if topic == OFFSETS_TOPIC {
        // The group coordinator applies (or drops) the transaction's offsets with it.
        return ctx
            .groups
            .end_txn(partition, producer_id, marker, bytes)
            .await;
    }
    let last = match log.append_marker(bytes, leader_epoch) {
        Ok(AppendOutcome::Appended(i) | AppendOutcome::Duplicate(i)) => i.last_offset,
        // The producer has a newer epoch here: a newer coordinator already ended this
        // transaction and the producer moved on.
        Err(LogError::InvalidProducerEpoch { current, got, .. }) => {
            tracing::info!(topic = %topic, partition, producer_id, current, got, "marker of an older producer epoch not written");
            return Ok(());
        }
        // A newer coordinator wrote this producer's markers here: this one's role is over.
        Err(e @ LogError::CoordinatorFenced { .. }) => {
            tracing::info!(topic = %topic, partition, error = %e, "marker of a former coordinator not written");
            return Ok(());
        }
        Err(e) => return Err(format!("{topic}-{partition}: {e}")),
    };
    match tokio::time::timeout(MARKER_TIMEOUT, log.wait_high_watermark(last)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{topic}-{partition}: {e}")),
        Err(_) => Err(format!(
            "{topic}-{partition}: marker at offset {last} not replicated within {MARKER_TIMEOUT:?}"
        )),
    }
}
