//! Classic groups' membership written to `__consumer_offsets`, so that the next coordinator
//! of a group (after a failover, a partition move or a rolling restart) restores it instead
//! of answering every member UNKNOWN_MEMBER_ID and making the whole group rejoin.
//!
//! What is written: a group's membership record ([`Group::membership`]) each time it becomes
//! stable at a new generation or with other members (a static member replaced), and a
//! tombstone once it has no members. Kafka writes the same records (`GroupMetadataKey` /
//! `GroupMetadataValue`), and its tools read ours.
//!
//! How: records queue here in order and one task appends them, batched per partition (many
//! groups stabilizing at once share a write). As on Kafka, a successful SyncGroup is answered
//! only once the records queued before it are written (every in-sync replica has them), so a
//! member never works at a generation a failover could forget. A write that fails (or takes
//! longer than the commit timeout) still lets the SyncGroup through: the previous record then
//! describes a generation the group really had, and its members that moved on hear
//! ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID from the next coordinator and rejoin, as every
//! member did before this existed. So a record never describes a group that did not exist.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::records::OffsetRecord;
use super::state::{Group, GroupState};
use super::{now_ms, GroupCoordinator};

/// Membership records waiting to be appended, in the order they were made.
#[derive(Debug)]
pub(super) struct Queue {
    pending: Mutex<Pending>,
    wake: Notify,
    /// How many records were ever queued and then written (or given up on): what
    /// [`Queue::flushed`] waits on.
    done: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct Pending {
    records: Vec<OffsetRecord>,
    /// How many records were ever queued.
    queued: u64,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            pending: Mutex::default(),
            wake: Notify::new(),
            done: watch::channel(0).0,
        }
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, record: OffsetRecord) {
        let mut p = self.lock();
        p.records.push(record);
        p.queued += 1;
        drop(p);
        self.wake.notify_one();
    }

    /// The queued records, and the count of records ever queued up to the last of them.
    fn take(&self) -> (Vec<OffsetRecord>, u64) {
        let mut p = self.lock();
        (std::mem::take(&mut p.records), p.queued)
    }

    /// Waits (at most `timeout`) until every record queued so far has been written or given
    /// up on.
    pub(super) async fn flushed(&self, timeout: Duration) {
        let target = self.lock().queued;
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(timeout, done.wait_for(|d| *d >= target)).await;
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
        let (records, through) = self.memberships.take();
        for r in records {
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
        self.memberships
            .done
            .send_modify(|d| *d = (*d).max(through));
    }
}
