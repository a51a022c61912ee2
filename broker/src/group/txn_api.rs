//! Offsets in a transaction (KIP-98, KIP-447): TxnOffsetCommit writes a consumer's offsets
//! as a transactional batch of the producer to the group's `__consumer_offsets` partition,
//! where they wait; the transaction coordinator's marker on that partition makes them the
//! group's committed offsets (COMMIT) or drops them (ABORT). A coordinator that loads the
//! partition replays the same: offsets of a transaction count only after its COMMIT marker.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use tokio::time::Instant;

use super::offsets::StoredOffset;
use super::records::OffsetRecord;
use super::{codes, now_ms, GroupCoordinator, Lead, LOAD_WAIT};
use crate::log::txn::Marker;

/// Largest metadata string accepted with a commit (`offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;

impl GroupCoordinator {
    /// TxnOffsetCommit: the member is checked as for OffsetCommit (a producer sending the
    /// group's generation, KIP-447, is fenced when the group moved on); then the offsets are
    /// written in the producer's transaction.
    pub async fn txn_offset_commit(
        &self,
        version: i16,
        req: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        let group_id = req.group_id.0.to_string();
        if !group_id.is_empty() {
            self.wait_loaded(&group_id).await;
        }
        // Before v3 a producer sends no member: only the group's partition is checked.
        let generation = if version >= 3 { req.generation_id } else { -1 };
        let committed = super::offset_api::listed(
            req.topics
                .iter()
                .map(|t| (&t.name, t.partitions.iter().map(|p| p.partition_index))),
        );
        let (tenure, group_error) = self.commit_verdict(
            &group_id,
            &req.member_id,
            req.group_instance_id.as_deref(),
            generation,
            true,
            &committed,
        );
        let ts = now_ms();
        let mut records = Vec::new();
        let mut out: Vec<(TxnOffsetCommitResponseTopic, Vec<(i32, i16)>)> = Vec::new();
        for t in &req.topics {
            let mut parts = Vec::new();
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_deref().unwrap_or("");
                let code = match group_error {
                    Some(c) => c,
                    None if metadata.len() > MAX_METADATA_BYTES => codes::OFFSET_METADATA_TOO_LARGE,
                    None => codes::NONE,
                };
                if code == codes::NONE {
                    records.push(OffsetRecord::Commit {
                        group: group_id.clone(),
                        topic: t.name.0.to_string(),
                        partition: p.partition_index,
                        value: StoredOffset {
                            offset: p.committed_offset,
                            leader_epoch: if version >= 2 {
                                p.committed_leader_epoch
                            } else {
                                -1
                            },
                            metadata: metadata.to_string(),
                            commit_timestamp_ms: ts,
                        },
                    });
                }
                parts.push((p.partition_index, code));
            }
            out.push((
                TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()),
                parts,
            ));
        }
        let storage_error = match tenure {
            _ if records.is_empty() => None,
            None => Some(codes::COORDINATOR_NOT_AVAILABLE),
            Some(t) => {
                match t
                    .write_txn(
                        req.producer_id.0,
                        req.producer_epoch,
                        records,
                        self.config.commit_timeout,
                    )
                    .await
                {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::warn!(group = %group_id, producer_id = req.producer_id.0, error = %e, "transactional offset commit not acknowledged");
                        Some(e.code())
                    }
                }
            }
        };
        TxnOffsetCommitResponse::default().with_topics(
            out.into_iter()
                .map(|(topic, parts)| {
                    topic.with_partitions(
                        parts
                            .into_iter()
                            .map(|(index, code)| {
                                let code = match storage_error {
                                    Some(e) if code == codes::NONE => e,
                                    _ => code,
                                };
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
                })
                .collect(),
        )
    }

    /// Writes a transaction coordinator's marker to offsets partition `partition` (this
    /// broker leads it): the producer's offsets there are committed or dropped with it.
    /// Errors are for the coordinator's log; it tries again.
    pub async fn end_txn(
        &self,
        partition: i32,
        producer_id: i64,
        marker: Marker,
        bytes: Bytes,
    ) -> Result<(), String> {
        let deadline = Instant::now() + LOAD_WAIT;
        let tenure = loop {
            let notified = self.loaded.notified();
            match self.leads().get(&partition) {
                Some(Lead::Ready(t)) => break Arc::clone(t),
                Some(Lead::Loading { .. }) => {}
                Some(Lead::Failed) => {
                    return Err(format!("offsets partition {partition} could not be loaded"))
                }
                None => {
                    return Err(format!(
                        "offsets partition {partition} is not coordinated here"
                    ))
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!("offsets partition {partition} is still loading"));
            }
        };
        tenure
            .end_txn(
                producer_id,
                marker == Marker::Commit,
                bytes,
                self.config.commit_timeout,
            )
            .await
            .map_err(|e| format!("offsets partition {partition}: {e}"))
    }
}
