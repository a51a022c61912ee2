//! The transaction coordinator's requests (KIP-98, transaction version 1: the client adds
//! each partition explicitly): InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn, and the admin side, DescribeTransactions and ListTransactions.
//!
//! Each request that changes a transaction is one command of the metadata quorum
//! (`cluster::state::txns`), answered once committed there. EndTxn is answered when the
//! transaction is prepared; the markers follow from the coordinator's loop (`crate::txn`),
//! and the next transaction of the id waits for them: its first AddPartitionsToTxn or
//! AddOffsetsToTxn is held here up to a second, then answered CONCURRENT_TRANSACTIONS
//! (retriable).
//! Only the coordinator of an id (the leader of its `__consumer_offsets` partition) serves
//! it; another broker answers NOT_COORDINATOR so the client looks it up again.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::*;

use super::authz::{Access, Operation, GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED};
use super::{catalog, codes, sb};
use crate::cluster::state::{Command, Outcome, TxnCommand, TxnRecord, TxnState};
use crate::context::BrokerContext;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::log::now_ms;
use crate::txn::{coordinator_epoch, COORDINATOR_NOT_AVAILABLE, MAX_TIMEOUT_MS};

const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const OPERATION_NOT_ATTEMPTED: i16 = 55;

/// How long AddPartitionsToTxn and AddOffsetsToTxn wait here for the previous transaction of
/// the same producer to complete (its markers written) before answering CONCURRENT_TRANSACTIONS.
/// A client that gets it backs off (librdkafka for about 20 ms here, the p99 of a short
/// transaction on three brokers: `docs/benchmarks.md`) while the completion takes a few
/// milliseconds; waiting for it here saves the back-off to a transaction that begins right
/// after the one before was committed.
const COMPLETION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits at most [`COMPLETION_WAIT`] while the transaction of `id` by this producer (id and
/// epoch) is being completed; returns at once otherwise.
async fn await_completion(ctx: &BrokerContext, id: &str, producer_id: i64, epoch: i16) {
    let completing = |s: &crate::cluster::state::ClusterState| {
        s.transactions.get(id).is_some_and(|r| {
            (r.producer_id, r.epoch) == (producer_id, epoch)
                && matches!(r.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
        })
    };
    let mut rx = ctx.cluster.watch();
    if !completing(&rx.borrow()) {
        return;
    }
    let _ = tokio::time::timeout(COMPLETION_WAIT, rx.wait_for(|s| !completing(s))).await;
}

/// This broker coordinates `id` (or the error for the client).
fn check_coordinator(ctx: &BrokerContext, id: &str) -> Result<(), i16> {
    if id.is_empty() {
        return Err(codes::INVALID_REQUEST);
    }
    coordinator_epoch(&ctx.cluster.state(), ctx.node_id, id).map(drop)
}

/// Commits one transaction command: the transactional id's state after it, or the error.
async fn propose(ctx: &Arc<BrokerContext>, cmd: TxnCommand) -> Result<TxnRecord, (i16, String)> {
    let id = cmd.id().to_string();
    match ctx.cluster.propose(Command::Txn(cmd)).await {
        Ok(Outcome::Txn(r)) => Ok(r),
        Ok(Outcome::Refused { code, message }) => {
            tracing::debug!(transactional_id = %id, code, %message, "transaction request refused");
            Err((code, message))
        }
        Ok(other) => Err((
            codes::UNKNOWN_SERVER_ERROR,
            format!("unexpected answer from the metadata quorum: {other:?}"),
        )),
        Err(e) => Err((
            COORDINATOR_NOT_AVAILABLE,
            format!("the metadata quorum did not accept the change: {e}"),
        )),
    }
}

/// InitProducerId with a transactional id: a producer id and epoch for it, fencing every
/// earlier producer of the same id (an open transaction of theirs is aborted first).
pub async fn init_producer_id(
    ctx: &Arc<BrokerContext>,
    req: InitProducerIdRequest,
    access: &Access,
) -> InitProducerIdResponse {
    let id = req
        .transactional_id
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_default();
    let answer = |code: i16, pid: i64, epoch: i16| {
        ctx.metrics.error_code("InitProducerId", code);
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
    };
    if !access.transactional_id(Operation::Write, &id) {
        return answer(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1, -1);
    }
    if let Err(code) = check_coordinator(ctx, &id) {
        return answer(code, -1, -1);
    }
    if req.transaction_timeout_ms <= 0 || req.transaction_timeout_ms > MAX_TIMEOUT_MS {
        return answer(INVALID_TRANSACTION_TIMEOUT, -1, -1);
    }
    // A new producer id only when the id has none, or its epoch is about to overflow.
    let needs_id = ctx
        .cluster
        .state()
        .transactions
        .get(&id)
        .is_none_or(|r| r.epoch >= i16::MAX - 2);
    let new_producer_id = if needs_id {
        match catalog::allocate_producer_id(ctx).await {
            Ok(pid) => pid,
            Err(e) => return answer(e.code, -1, -1),
        }
    } else {
        -1
    };
    let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    match propose(
        ctx,
        TxnCommand::Init {
            id: id.clone(),
            timeout_ms: req.transaction_timeout_ms,
            new_producer_id,
            expected,
            now_ms: now_ms(),
        },
    )
    .await
    {
        Ok(r) if r.state.is_preparing() => {
            // The previous transaction is being ended (aborted now if it was open): retry.
            ctx.txns.wake();
            answer(CONCURRENT_TRANSACTIONS, -1, -1)
        }
        Ok(r) => {
            tracing::debug!(transactional_id = %id, producer_id = r.producer_id, epoch = r.epoch, "transactional producer initialised");
            answer(codes::NONE, r.producer_id, r.epoch)
        }
        Err((code, _)) => answer(code, -1, -1),
    }
}

/// A partition of a transaction, with the error it gets.
type PartitionCode = (String, i32, i16);

/// The partitions of one AddPartitionsToTxn transaction, each with the error it gets; `None`
/// when every partition may be added.
fn check_partitions(
    ctx: &BrokerContext,
    topics: &[AddPartitionsToTxnTopic],
    access: &Access,
) -> (Vec<(String, i32)>, Option<Vec<PartitionCode>>) {
    let state = ctx.cluster.state();
    let mut wanted = Vec::new();
    let mut errors = Vec::new();
    for t in topics {
        let name = t.name.0.to_string();
        let denied = !access.topic(Operation::Write, &name);
        for &p in &t.partitions {
            let code = if denied {
                TOPIC_AUTHORIZATION_FAILED
            } else if state.partition(&name, p).is_none() {
                codes::UNKNOWN_TOPIC_OR_PARTITION
            } else {
                codes::NONE
            };
            errors.push((name.clone(), p, code));
            wanted.push((name.clone(), p));
        }
    }
    if errors.iter().all(|(_, _, c)| *c == codes::NONE) {
        return (wanted, None);
    }
    // As Kafka: the partitions without an error of their own were not attempted.
    for e in &mut errors {
        if e.2 == codes::NONE {
            e.2 = OPERATION_NOT_ATTEMPTED;
        }
    }
    (wanted, Some(errors))
}

fn topic_results(results: Vec<PartitionCode>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (name, p, code) in results {
        let r = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(p)
            .with_partition_error_code(code);
        match out.iter_mut().find(|t| t.name.0.as_str() == name) {
            Some(t) => t.results_by_partition.push(r),
            None => out.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(sb(&name)))
                    .with_results_by_partition(vec![r]),
            ),
        }
    }
    out
}

/// One transaction's partitions added: the error of each.
async fn add_partitions(
    ctx: &Arc<BrokerContext>,
    id: &str,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    access: &Access,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let every = |code: i16| {
        topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.0.to_string(), *p, code))
            })
            .collect::<Vec<_>>()
    };
    let code = if !access.transactional_id(Operation::Write, id) {
        codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if let Err(code) = check_coordinator(ctx, id) {
        code
    } else {
        let (wanted, errors) = check_partitions(ctx, topics, access);
        if let Some(errors) = errors {
            return topic_results(errors);
        }
        await_completion(ctx, id, producer_id, epoch).await;
        match propose(
            ctx,
            TxnCommand::AddPartitions {
                id: id.to_string(),
                producer_id,
                epoch,
                partitions: wanted,
                now_ms: now_ms(),
            },
        )
        .await
        {
            Ok(_) => codes::NONE,
            Err((code, _)) => code,
        }
    };
    ctx.metrics.error_code("AddPartitionsToTxn", code);
    topic_results(every(code))
}

/// AddPartitionsToTxn: v0–v3 one transaction (a producer's), v4+ a batch of them.
pub async fn add_partitions_to_txn(
    ctx: &Arc<BrokerContext>,
    version: i16,
    req: AddPartitionsToTxnRequest,
    access: &Access,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let results = add_partitions(
            ctx,
            req.v3_and_below_transactional_id.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            access,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let results = add_partitions(
            ctx,
            t.transactional_id.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            access,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction, so its
/// marker commits (or drops) the offsets TxnOffsetCommit writes there.
pub async fn add_offsets_to_txn(
    ctx: &Arc<BrokerContext>,
    req: AddOffsetsToTxnRequest,
    access: &Access,
) -> AddOffsetsToTxnResponse {
    let id = req.transactional_id.to_string();
    let group = req.group_id.to_string();
    let code = if !access.transactional_id(Operation::Write, &id) {
        codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if !access.group(Operation::Read, &group) {
        GROUP_AUTHORIZATION_FAILED
    } else if let Err(code) = check_coordinator(ctx, &id) {
        code
    } else {
        match catalog::ensure_offsets_topic(ctx).await {
            Err(e) => e.code,
            Ok(n) => {
                await_completion(ctx, &id, req.producer_id.0, req.producer_epoch).await;
                let cmd = TxnCommand::AddPartitions {
                    id,
                    producer_id: req.producer_id.0,
                    epoch: req.producer_epoch,
                    partitions: vec![(OFFSETS_TOPIC.to_string(), partition_for(&group, n))],
                    now_ms: now_ms(),
                };
                match propose(ctx, cmd).await {
                    Ok(_) => codes::NONE,
                    Err((code, _)) => code,
                }
            }
        }
    };
    ctx.metrics.error_code("AddOffsetsToTxn", code);
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// EndTxn: the transaction is prepared for its COMMIT or ABORT markers, which the
/// coordinator's loop writes next.
pub async fn end_txn(
    ctx: &Arc<BrokerContext>,
    req: EndTxnRequest,
    access: &Access,
) -> EndTxnResponse {
    let id = req.transactional_id.to_string();
    let code = if !access.transactional_id(Operation::Write, &id) {
        codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    } else if let Err(code) = check_coordinator(ctx, &id) {
        code
    } else {
        match propose(
            ctx,
            TxnCommand::End {
                id: id.clone(),
                producer_id: req.producer_id.0,
                epoch: req.producer_epoch,
                commit: req.committed,
                now_ms: now_ms(),
            },
        )
        .await
        {
            Ok(r) => {
                if r.state.is_preparing() {
                    ctx.txns.wake();
                }
                tracing::debug!(transactional_id = %id, producer_id = r.producer_id, state = r.state.name(), "transaction ending");
                codes::NONE
            }
            Err((code, _)) => code,
        }
    };
    ctx.metrics.error_code("EndTxn", code);
    EndTxnResponse::default().with_error_code(code)
}

/// WriteTxnMarkers on the Kafka listener: what Kafka's admin `abortTransaction`
/// (`kafka-transactions.sh abort`) sends a partition's leader to end a hanging transaction (one
/// whose producer wrote to a partition its coordinator does not know of). Each marker is
/// appended on this broker, which must lead the partition, and answered once replicated.
/// Needs CLUSTER_ACTION on the cluster (checked by the dispatcher). Between brokers the
/// coordinator uses the cluster listener instead (`crate::txn`).
pub async fn write_txn_markers(
    ctx: &Arc<BrokerContext>,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    let mut out = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for p in t.partition_indexes {
                let name = t.name.0.to_string();
                let code = match catalog::leader_partition(ctx, &name, p, -1) {
                    Err(code) => code,
                    Ok(_) => match crate::txn::write_local_marker(
                        ctx,
                        crate::txn::MarkerWrite {
                            topic: name.clone(),
                            partition: p,
                            producer_id: m.producer_id.0,
                            producer_epoch: m.producer_epoch,
                            commit: m.transaction_result,
                            coordinator_epoch: m.coordinator_epoch,
                        },
                    )
                    .await
                    {
                        Ok(()) => {
                            tracing::info!(topic = %name, partition = p, producer_id = m.producer_id.0, commit = m.transaction_result, "transaction marker written on request");
                            codes::NONE
                        }
                        Err(e) => {
                            tracing::warn!(topic = %name, partition = p, error = %e, "transaction marker not written");
                            codes::KAFKA_STORAGE_ERROR
                        }
                    },
                };
                ctx.metrics.error_code("WriteTxnMarkers", code);
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        out.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(out)
}

/// Every partition of a WriteTxnMarkers answered `code`.
pub fn refuse_markers(req: WriteTxnMarkersRequest, code: i16) -> WriteTxnMarkersResponse {
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    WriteTxnMarkersResponse::default().with_markers(
        req.markers
            .into_iter()
            .map(|m| {
                WritableTxnMarkerResult::default()
                    .with_producer_id(m.producer_id)
                    .with_topics(
                        m.topics
                            .into_iter()
                            .map(|t| {
                                WritableTxnMarkerTopicResult::default()
                                    .with_name(t.name)
                                    .with_partitions(
                                        t.partition_indexes
                                            .iter()
                                            .map(|p| {
                                                WritableTxnMarkerPartitionResult::default()
                                                    .with_partition_index(*p)
                                                    .with_error_code(code)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Whether TxnOffsetCommit may write offsets in this transaction: the id's producer and
/// epoch, with the group's `__consumer_offsets` partition added (AddOffsetsToTxn). An older
/// epoch is PRODUCER_FENCED; anything else that does not match yet is answered
/// COORDINATOR_LOAD_IN_PROGRESS, which clients retry: this broker's copy of the metadata may
/// not have the AddOffsetsToTxn the coordinator just committed, and a request that never
/// matches (no such transaction) writes nothing.
pub fn check_txn_offsets(ctx: &BrokerContext, req: &TxnOffsetCommitRequest) -> Option<i16> {
    const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    let state = ctx.cluster.state();
    let n = state
        .topics
        .get(OFFSETS_TOPIC)
        .map_or(0, |t| t.partitions.len());
    let n = i32::try_from(n).unwrap_or(i32::MAX).max(1);
    let partition = (
        OFFSETS_TOPIC.to_string(),
        partition_for(req.group_id.as_str(), n),
    );
    match state.transactions.get(req.transactional_id.as_str()) {
        Some(r) if r.producer_id == req.producer_id.0 && r.epoch > req.producer_epoch => {
            Some(crate::cluster::state::PRODUCER_FENCED)
        }
        Some(r)
            if r.producer_id == req.producer_id.0
                && r.epoch == req.producer_epoch
                && r.state == TxnState::Ongoing
                && r.partitions.contains(&partition) =>
        {
            None
        }
        _ => Some(COORDINATOR_LOAD_IN_PROGRESS),
    }
}

/// Every partition of a TxnOffsetCommit answered `code`.
pub fn refuse_txn_offsets(req: TxnOffsetCommitRequest, code: i16) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        req.topics
            .into_iter()
            .map(|t| refuse_txn_offsets_topic(t, code))
            .collect(),
    )
}

/// Every partition of one topic of a TxnOffsetCommit answered `code`.
pub fn refuse_txn_offsets_topic(
    t: kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic,
    code: i16,
) -> kafka_protocol::messages::txn_offset_commit_response::TxnOffsetCommitResponseTopic {
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    TxnOffsetCommitResponseTopic::default()
        .with_name(t.name)
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect(),
        )
}

fn describe(id: &str, r: &TxnRecord) -> TransactionState {
    let mut topics: Vec<TopicData> = Vec::new();
    for (t, p) in &r.partitions {
        match topics.iter_mut().find(|d| d.topic.0.as_str() == t) {
            Some(d) => d.partitions.push(*p),
            None => topics.push(
                TopicData::default()
                    .with_topic(TopicName(sb(t)))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    TransactionState::default()
        .with_transactional_id(TransactionalId(sb(id)))
        .with_transaction_state(sb(r.state.name()))
        .with_transaction_timeout_ms(r.timeout_ms)
        .with_transaction_start_time_ms(if r.state == TxnState::Ongoing {
            r.started_ms
        } else {
            -1
        })
        .with_producer_id(ProducerId(r.producer_id))
        .with_producer_epoch(r.epoch)
        .with_topics(topics)
}

/// DescribeTransactions (`kafka-transactions.sh describe`), from the coordinator.
pub fn describe_transactions(
    ctx: &BrokerContext,
    req: DescribeTransactionsRequest,
    access: &Access,
) -> DescribeTransactionsResponse {
    let state = ctx.cluster.state();
    let out = req
        .transactional_ids
        .iter()
        .map(|id| {
            let name = id.as_str();
            let error = |code| {
                TransactionState::default()
                    .with_transactional_id(id.clone())
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1)
            };
            if !access.transactional_id(Operation::Describe, name) {
                return error(codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
            }
            if let Err(code) = coordinator_epoch(&state, ctx.node_id, name) {
                return error(code);
            }
            match state.transactions.get(name) {
                Some(r) => describe(name, r),
                // Kafka's TRANSACTIONAL_ID_NOT_FOUND.
                None => error(105),
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(out)
}

/// ListTransactions (`kafka-transactions.sh list`): the ids this broker coordinates, as
/// every Kafka broker answers for its own; filtered by state, producer id, duration (v1) and
/// id pattern (v2, a regular expression).
pub fn list_transactions(
    ctx: &BrokerContext,
    req: ListTransactionsRequest,
    access: &Access,
) -> ListTransactionsResponse {
    let state = ctx.cluster.state();
    let names = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];
    let mut unknown = Vec::new();
    let mut wanted_states = BTreeSet::new();
    for f in &req.state_filters {
        match names.iter().find(|s| s.name() == f.as_str()) {
            Some(s) => {
                wanted_states.insert(s.name());
            }
            None => unknown.push(f.clone()),
        }
    }
    let pattern = match req
        .transactional_id_pattern
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(r) => Some(r),
            Err(_) => {
                return ListTransactionsResponse::default()
                    .with_error_code(codes::INVALID_REQUEST)
                    .with_unknown_state_filters(unknown)
            }
        },
    };
    let now = now_ms();
    let listed = state
        .transactions
        .iter()
        .filter(|(id, _)| coordinator_epoch(&state, ctx.node_id, id).is_ok())
        .filter(|(id, _)| access.transactional_id(Operation::Describe, id))
        .filter(|(_, r)| wanted_states.is_empty() || wanted_states.contains(r.state.name()))
        .filter(|(_, r)| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == r.producer_id)
        })
        .filter(|(_, r)| {
            req.duration_filter < 0
                || (r.state == TxnState::Ongoing
                    && now.saturating_sub(r.started_ms) >= req.duration_filter)
        })
        .filter(|(id, _)| pattern.as_ref().is_none_or(|re| re.is_match(id)))
        .map(|(id, r)| {
            list_transactions_response::TransactionState::default()
                .with_transactional_id(TransactionalId(sb(id)))
                .with_producer_id(ProducerId(r.producer_id))
                .with_transaction_state(sb(r.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
