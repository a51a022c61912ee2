//! One share partition's delivery state (KIP-932), pure: no clock, no I/O. Times are
//! milliseconds passed in by the caller.
//!
//! Every offset from the share-partition start offset (SPSO) up to the end offset (SPEO, the
//! next offset never acquired yet) has a state: available, acquired by one member until a
//! deadline, acknowledged or archived. The start offset moves past the finished offsets at the
//! front, so the map only holds the in-flight window. A record is acquired with its delivery
//! count raised by one; when one that was delivered `delivery_limit` times is released (by the
//! member, its lock running out or its member leaving) it is archived instead of offered again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Acknowledgement types of ShareFetch / ShareAcknowledge.
pub const ACK_GAP: i8 = 0;
pub const ACK_ACCEPT: i8 = 1;
pub const ACK_RELEASE: i8 = 2;
pub const ACK_REJECT: i8 = 3;
/// Only in ShareFetch / ShareAcknowledge v2 (Kafka 4.2); accepted here when the caller allows.
pub const ACK_RENEW: i8 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordState {
    Available,
    Acquired { member: String, deadline_ms: i64 },
    Acknowledged,
    Archived,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub state: RecordState,
    pub delivery_count: i16,
}

/// Why a record was archived rather than acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveReason {
    Rejected,
    DeliveryLimit,
}

impl ArchiveReason {
    pub fn label(self) -> &'static str {
        match self {
            ArchiveReason::Rejected => "rejected",
            ArchiveReason::DeliveryLimit => "delivery-limit",
        }
    }
}

/// A record archived by an operation: what dead-lettering needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Archived {
    pub offset: i64,
    pub delivery_count: i16,
    pub reason: ArchiveReason,
}

/// A run of consecutive offsets acquired with one delivery count (AcquiredRecords on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub first: i64,
    pub last: i64,
    pub delivery_count: i16,
}

/// What an operation changed, for metrics and dead-lettering.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: u64,
    /// Records made available again (to be redelivered).
    pub released: u64,
    pub archived: Vec<Archived>,
}

impl Outcome {
    pub fn merge(&mut self, other: Outcome) {
        self.accepted += other.accepted;
        self.released += other.released;
        self.archived.extend(other.archived);
    }
}

/// Why an acknowledgement was refused (nothing of it was applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("offsets {first}..={last}: {why}")]
    InvalidRecordState { first: i64, last: i64, why: String },
    #[error("offsets {first}..={last}: {why}")]
    InvalidRequest { first: i64, last: i64, why: String },
}

/// The settings an operation needs (per topic, they may change between calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub lock_ms: i64,
    pub delivery_limit: i16,
    /// The most offsets in flight between the start and the end offset: no new offsets are
    /// acquired beyond it (Kafka's group.share.partition.max.record.locks).
    pub max_in_flight: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharePartition {
    start: i64,
    end: i64,
    records: BTreeMap<i64, InFlight>,
}

impl SharePartition {
    /// A share partition whose first record to deliver is `start`.
    pub fn new(start: i64) -> SharePartition {
        SharePartition {
            start,
            end: start,
            records: BTreeMap::new(),
        }
    }

    pub fn start_offset(&self) -> i64 {
        self.start
    }

    pub fn end_offset(&self) -> i64 {
        self.end
    }

    /// Offsets currently acquired by some member.
    pub fn acquired_count(&self) -> usize {
        self.records
            .values()
            .filter(|r| matches!(r.state, RecordState::Acquired { .. }))
            .count()
    }

    pub fn record(&self, offset: i64) -> Option<&InFlight> {
        self.records.get(&offset)
    }

    /// Records below the log start offset are gone from the log (retention, DeleteRecords):
    /// they leave the share partition too.
    pub fn follow_log_start(&mut self, log_start: i64) {
        if log_start <= self.start {
            return;
        }
        self.records = self.records.split_off(&log_start);
        self.start = log_start;
        self.end = self.end.max(log_start);
    }

    /// Where the next fetch for a member should read from: the first available record, else
    /// the end offset; `None` when the in-flight window is full and nothing is available.
    pub fn next_fetch_offset(&self, limits: &Limits) -> Option<i64> {
        let available = self
            .records
            .iter()
            .find(|(_, r)| r.state == RecordState::Available)
            .map(|(o, _)| *o);
        match available {
            Some(o) => Some(o),
            None if self.end - self.start >= limits.max_in_flight => None,
            None => Some(self.end),
        }
    }

    /// Acquires for `member`, among the offsets `from..to` (which the caller read from the log,
    /// all present there), the available ones and the new ones, at most `max_records`.
    pub fn acquire(
        &mut self,
        member: &str,
        from: i64,
        to: i64,
        max_records: usize,
        now_ms: i64,
        limits: &Limits,
    ) -> Vec<Acquired> {
        let mut out: Vec<Acquired> = Vec::new();
        let mut taken = 0usize;
        let deadline_ms = now_ms.saturating_add(limits.lock_ms);
        let mut o = from.max(self.start);
        while o < to && taken < max_records {
            let count = if o < self.end {
                match self.records.get_mut(&o) {
                    Some(r) if r.state == RecordState::Available => {
                        r.delivery_count = r.delivery_count.saturating_add(1);
                        r.state = RecordState::Acquired {
                            member: member.to_string(),
                            deadline_ms,
                        };
                        Some(r.delivery_count)
                    }
                    _ => None,
                }
            } else if o == self.end && self.end - self.start < limits.max_in_flight {
                self.records.insert(
                    o,
                    InFlight {
                        state: RecordState::Acquired {
                            member: member.to_string(),
                            deadline_ms,
                        },
                        delivery_count: 1,
                    },
                );
                self.end = o + 1;
                Some(1)
            } else {
                break;
            };
            if let Some(count) = count {
                taken += 1;
                match out.last_mut() {
                    Some(run) if run.last + 1 == o && run.delivery_count == count => run.last = o,
                    _ => out.push(Acquired {
                        first: o,
                        last: o,
                        delivery_count: count,
                    }),
                }
            }
            o += 1;
        }
        out
    }

    /// Applies one acknowledgement batch of `member`: `types` holds one type for the whole
    /// range or one per offset. Every offset must be acquired by `member`, else nothing is
    /// applied.
    pub fn acknowledge(
        &mut self,
        member: &str,
        (first, last): (i64, i64),
        types: &[i8],
        allow_renew: bool,
        now_ms: i64,
        limits: &Limits,
    ) -> Result<Outcome, AckError> {
        let invalid = |why: &str| AckError::InvalidRequest {
            first,
            last,
            why: why.to_string(),
        };
        if last < first {
            return Err(invalid("the last offset is before the first"));
        }
        let span = last - first + 1;
        if types.len() != 1 && i64::try_from(types.len()).ok() != Some(span) {
            return Err(invalid(
                "one acknowledge type, or one per offset, is expected",
            ));
        }
        let max_type = if allow_renew { ACK_RENEW } else { ACK_REJECT };
        if types.iter().any(|t| !(ACK_GAP..=max_type).contains(t)) {
            return Err(invalid("unknown acknowledge type"));
        }
        if first < self.start || last >= self.end {
            return Err(AckError::InvalidRecordState {
                first,
                last,
                why: format!("outside the in-flight offsets {}..{}", self.start, self.end),
            });
        }
        let held = self.records.range(first..=last).all(
            |(_, r)| matches!(&r.state, RecordState::Acquired { member: m, .. } if m == member),
        );
        if !held || i64::try_from(self.records.range(first..=last).count()).ok() != Some(span) {
            return Err(AckError::InvalidRecordState {
                first,
                last,
                why: "not acquired by this member".to_string(),
            });
        }
        let mut outcome = Outcome::default();
        for (i, (offset, r)) in self.records.range_mut(first..=last).enumerate() {
            let t = if types.len() == 1 { types[0] } else { types[i] };
            match t {
                ACK_ACCEPT => {
                    r.state = RecordState::Acknowledged;
                    outcome.accepted += 1;
                }
                ACK_RELEASE => release(*offset, r, limits, &mut outcome),
                ACK_REJECT => {
                    r.state = RecordState::Archived;
                    outcome.archived.push(Archived {
                        offset: *offset,
                        delivery_count: r.delivery_count,
                        reason: ArchiveReason::Rejected,
                    });
                }
                ACK_RENEW => {
                    r.state = RecordState::Acquired {
                        member: member.to_string(),
                        deadline_ms: now_ms.saturating_add(limits.lock_ms),
                    }
                }
                // ACK_GAP: an offset with no record (compacted, control record).
                _ => r.state = RecordState::Archived,
            }
        }
        self.advance_start();
        Ok(outcome)
    }

    /// Releases the records whose lock has run out.
    pub fn expire_locks(&mut self, now_ms: i64, limits: &Limits) -> Outcome {
        self.release_where(limits, |_, deadline| deadline <= now_ms)
    }

    /// Releases the records `member` holds (it left, or closed its share session).
    pub fn release_member(&mut self, member: &str, limits: &Limits) -> Outcome {
        self.release_where(limits, |m, _| m == member)
    }

    /// The earliest lock deadline, to know when to look again.
    pub fn next_deadline(&self) -> Option<i64> {
        self.records
            .values()
            .filter_map(|r| match r.state {
                RecordState::Acquired { deadline_ms, .. } => Some(deadline_ms),
                _ => None,
            })
            .min()
    }

    fn release_where(&mut self, limits: &Limits, hit: impl Fn(&str, i64) -> bool) -> Outcome {
        let mut outcome = Outcome::default();
        for (offset, r) in self.records.iter_mut() {
            let matched = matches!(&r.state,
                RecordState::Acquired { member, deadline_ms } if hit(member, *deadline_ms));
            if matched {
                release(*offset, r, limits, &mut outcome);
            }
        }
        self.advance_start();
        outcome
    }

    /// Moves the start offset past the finished records at the front.
    fn advance_start(&mut self) {
        while let Some(entry) = self.records.first_entry() {
            if matches!(
                entry.get().state,
                RecordState::Acknowledged | RecordState::Archived
            ) {
                self.start = *entry.key() + 1;
                entry.remove();
            } else {
                break;
            }
        }
        if self.records.is_empty() {
            self.start = self.end;
        }
    }
}

/// An acquired record given back: available again, or archived when it has been delivered as
/// often as allowed.
fn release(offset: i64, r: &mut InFlight, limits: &Limits, outcome: &mut Outcome) {
    if r.delivery_count >= limits.delivery_limit {
        r.state = RecordState::Archived;
        outcome.archived.push(Archived {
            offset,
            delivery_count: r.delivery_count,
            reason: ArchiveReason::DeliveryLimit,
        });
    } else {
        r.state = RecordState::Available;
        outcome.released += 1;
    }
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;
