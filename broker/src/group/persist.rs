//! Classic groups' membership written to `__consumer_offsets`, so that the next coordinator
//! of a group (after a failover, a partition move or a rolling restart) restores it instead
//! of answering every member UNKNOWN_MEMBER_ID and making the whole group rejoin.
//!
//! What is written: a group's membership record ([`Group::membership`]) each time it becomes
//! stable at a new generation or with other members (a static member replaced), and a
//! tombstone once it has no members. Kafka writes the same records (`GroupMetadataKey` /
//! `GroupMetadataValue`), and its tools read ours.
//!
//! How: unlike Kafka, a SyncGroup is not held until its record is replicated; records queue
//! here in order and one task appends them, batched per partition. A record that is lost (the
//! coordinator dies first, or the write fails) leaves the previous one, which describes a
//! generation the group really had: its members that moved on hear ILLEGAL_GENERATION or
//! UNKNOWN_MEMBER_ID from the next coordinator and rejoin, as every member did before this
//! existed. So the records may lag the group; they never describe a group that did not exist.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::records::OffsetRecord;
use super::state::{Group, GroupState};
use super::{now_ms, GroupCoordinator};

/// Membership records waiting to be appended, in the order they were made.
#[derive(Debug, Default)]
pub(super) struct Queue {
    pending: Mutex<Vec<OffsetRecord>>,
    wake: Notify,
}

impl Queue {
    fn push(&self, record: OffsetRecord) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<OffsetRecord> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Queues the record `group` needs now (see [`record_for`]).
    pub(super) fn note(&self, group: &Group, written: &mut Option<Fingerprint>) {
        if let Some(r) = record_for(group, written) {
            self.push(r);
        }
    }

    /// Queues a tombstone for a group that leaves this coordinator's classic groups while it
    /// had a record (it became a consumer group).
    pub(super) fn forget(&self, group: &str, written: &mut Option<Fingerprint>) {
        if written.take().is_some() {
            self.push(tombstone(group));
        }
    }
}

/// What a group's last membership record says, cheaply comparable: its generation and a hash
/// of its leader and member ids (a static member replaced keeps the generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    generation: i32,
    members: u64,
}

impl Fingerprint {
    pub(super) fn of(group: &Group) -> Fingerprint {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        group.leader.hash(&mut h);
        for id in group.member_ids() {
            id.hash(&mut h);
        }
        Fingerprint {
            generation: group.generation,
            members: h.finish(),
        }
    }
}

/// The record `group` needs now, if any, given the fingerprint of the last one written
/// (`None`: no record, or a tombstone); `written` is updated to match.
fn record_for(group: &Group, written: &mut Option<Fingerprint>) -> Option<OffsetRecord> {
    if group.state == GroupState::Stable {
        let now = Fingerprint::of(group);
        if *written == Some(now) {
            return None;
        }
        let membership = group.membership(now_ms())?;
        *written = Some(now);
        return Some(OffsetRecord::Membership {
            group: group.id.clone(),
            membership: Some(Box::new(membership)),
        });
    }
    if !group.has_members() && written.take().is_some() {
        return Some(tombstone(&group.id));
    }
    None
}

fn tombstone(group: &str) -> OffsetRecord {
    OffsetRecord::Membership {
        group: group.to_string(),
        membership: None,
    }
}

impl GroupCoordinator {
    /// Starts the task that appends queued membership records. Stops at `shutdown`.
    pub(super) fn spawn_membership_writer(self: &Arc<Self>, shutdown: CancellationToken) {
        let this = Arc::clone(self);
        let task = async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = this.memberships.wake.notified() => {}
                }
                this.write_memberships().await;
            }
        };
        tokio::spawn(tracing::Instrument::instrument(
            task,
            tracing::info_span!("group_membership_writer"),
        ));
    }

    /// Appends every queued record to the partition of its group led here, one batch per
    /// partition, in queue order; records of partitions led elsewhere are dropped (their
    /// groups were dropped here too).
    async fn write_memberships(&self) {
        let mut by_partition: BTreeMap<i32, Vec<OffsetRecord>> = BTreeMap::new();
        for r in self.memberships.take() {
            if let Some(p) = self.partition_of(r.group()) {
                by_partition.entry(p).or_default().push(r);
            }
        }
        for (partition, records) in by_partition {
            let Some(tenure) = self.tenure_of_partition(partition) else {
                continue;
            };
            for batch in super::tenure::chunks(records) {
                let count = batch.len();
                if let Err(e) = tenure
                    .write(move |_| batch, self.config.commit_timeout)
                    .await
                {
                    tracing::warn!(partition, records = count, error = %e, "group membership not written; those groups' members rejoin after a coordinator change");
                }
            }
        }
    }
}
