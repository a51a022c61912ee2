//! The leader's view of its followers (pure: time is passed in): how far each has fetched,
//! when it was last caught up, what the high watermark may be, and which ISR change to
//! propose. Kafka's rules (`Partition`, `Replica` in the Kafka broker):
//!
//! - a follower's fetch at offset `o` means it has every record below `o` (on its disk, when
//!   the topic is `fsync: always`: a follower fetches again only after its previous append is
//!   durable);
//! - it is *caught up* at the time of a fetch at or past the leader's log end, or, when it
//!   fetched at least up to the log end the leader had at the previous fetch, at the time of
//!   that previous fetch;
//! - an in-sync follower not caught up for `replica.lag.time.max.ms` leaves the ISR; a follower
//!   outside the ISR that reached the high watermark and the start of the current leader epoch
//!   joins it;
//! - the high watermark is bounded by the smallest fetch offset among the in-sync followers and
//!   those being added (a follower counts from the moment its addition is proposed, before it
//!   is committed, so the high watermark never runs ahead of a member of the ISR to be).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// No follower bounds the high watermark (the leader is the only in-sync replica).
pub const UNBOUNDED: i64 = i64::MAX;

/// One follower, as its fetches show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    /// The offset of its last fetch (-1: none since this broker became leader).
    pub fetch_offset: i64,
    pub last_fetch: Option<Instant>,
    /// The leader's log end when it answered that fetch.
    pub leader_end_at_last_fetch: i64,
    pub last_caught_up: Instant,
}

/// The replicas of a partition this broker leads.
#[derive(Debug, Clone)]
pub struct Replicas {
    pub me: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The first offset of the current leader epoch (the log end when leadership began).
    pub epoch_start: i64,
    /// An ISR change proposed to the quorum and not yet applied.
    pub pending: Option<Vec<i32>>,
    pub followers: BTreeMap<i32, Follower>,
}

impl Replicas {
    /// Leadership begins (or the replica set / ISR changed under the same leader): in-sync
    /// followers start as caught up now, so none is dropped before it had time to fetch.
    pub fn new(
        me: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        epoch_start: i64,
        now: Instant,
    ) -> Replicas {
        let followers = replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                (
                    *r,
                    Follower {
                        fetch_offset: -1,
                        last_fetch: None,
                        leader_end_at_last_fetch: -1,
                        last_caught_up: now,
                    },
                )
            })
            .collect();
        Replicas {
            me,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            epoch_start,
            pending: None,
            followers,
        }
    }

    /// A new view from the quorum with the same leader epoch (an ISR or replica-set change):
    /// keeps what the followers' fetches showed.
    pub fn update_view(
        &mut self,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        now: Instant,
    ) {
        let mut followers = std::mem::take(&mut self.followers);
        self.followers = replicas
            .iter()
            .filter(|r| **r != self.me)
            .map(|r| {
                let f = followers.remove(r).unwrap_or(Follower {
                    fetch_offset: -1,
                    last_fetch: None,
                    leader_end_at_last_fetch: -1,
                    last_caught_up: now,
                });
                (*r, f)
            })
            .collect();
        self.partition_epoch = partition_epoch;
        self.replicas = replicas;
        self.isr = isr;
        self.pending = None;
    }

    /// Records a follower's fetch at `fetch_offset` when the leader's log ends at `leader_end`.
    /// Returns false if `replica` is not a follower of this partition.
    pub fn on_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        leader_end: i64,
        now: Instant,
    ) -> bool {
        let Some(f) = self.followers.get_mut(&replica) else {
            return false;
        };
        if fetch_offset >= leader_end {
            f.last_caught_up = f.last_caught_up.max(now);
        } else if let Some(prev) = f.last_fetch {
            if fetch_offset >= f.leader_end_at_last_fetch {
                f.last_caught_up = f.last_caught_up.max(prev);
            }
        }
        f.fetch_offset = fetch_offset;
        f.last_fetch = Some(now);
        f.leader_end_at_last_fetch = leader_end;
        true
    }

    /// The members that bound the high watermark: the ISR and any proposed additions.
    fn maximal_isr(&self) -> impl Iterator<Item = i32> + '_ {
        let pending = self.pending.iter().flatten().copied();
        self.isr
            .iter()
            .copied()
            .chain(pending.filter(|r| !self.isr.contains(r)))
            .filter(|r| *r != self.me)
    }

    /// The highest offset every other member of the (maximal) ISR has reached, or
    /// [`UNBOUNDED`] when there is none.
    pub fn replica_bound(&self) -> i64 {
        self.maximal_isr()
            .map(|r| self.followers.get(&r).map_or(-1, |f| f.fetch_offset))
            .min()
            .unwrap_or(UNBOUNDED)
    }

    /// The in-sync followers, and how many in-sync replicas there are (leader included).
    pub fn isr_size(&self) -> usize {
        self.isr.len()
    }

    /// The ISR the leader should propose now, if it differs from the current one: laggards
    /// out, caught-up followers in. `alive` filters who may join.
    pub fn isr_change(
        &self,
        high_watermark: i64,
        lag_max: Duration,
        now: Instant,
        alive: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        if self.pending.is_some() {
            return None;
        }
        let mut isr: Vec<i32> =
            self.isr
                .iter()
                .copied()
                .filter(|r| {
                    *r == self.me
                        || self.followers.get(r).is_some_and(|f| {
                            now.saturating_duration_since(f.last_caught_up) <= lag_max
                        })
                })
                .collect();
        for (r, f) in &self.followers {
            if !isr.contains(r)
                && !self.isr.contains(r)
                && f.fetch_offset >= high_watermark
                && f.fetch_offset >= self.epoch_start
                && alive(*r)
            {
                isr.push(*r);
            }
        }
        let mut sorted_new = isr.clone();
        sorted_new.sort_unstable();
        let mut sorted_old = self.isr.clone();
        sorted_old.sort_unstable();
        (sorted_new != sorted_old).then(|| {
            // Replica order, so it reads like the replica list.
            self.replicas
                .iter()
                .copied()
                .filter(|r| isr.contains(r))
                .collect()
        })
    }

    /// How far each follower is behind `leader_end`, for metrics.
    pub fn lags(&self, leader_end: i64) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.followers
            .iter()
            .map(move |(r, f)| (*r, (leader_end - f.fetch_offset.max(0)).max(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: Duration = Duration::from_secs(30);

    fn three(now: Instant) -> Replicas {
        Replicas::new(0, 4, 7, vec![0, 1, 2], vec![0, 1, 2], 100, now)
    }

    #[test]
    fn the_bound_is_the_slowest_in_sync_follower_and_unknown_counts_as_nothing() {
        let t = Instant::now();
        let mut r = three(t);
        assert_eq!(r.replica_bound(), -1, "no follower fetched yet");
        r.on_fetch(1, 150, 160, t);
        assert_eq!(r.replica_bound(), -1);
        r.on_fetch(2, 120, 160, t);
        assert_eq!(r.replica_bound(), 120);
        r.isr = vec![0, 1];
        assert_eq!(r.replica_bound(), 150);
        r.isr = vec![0];
        assert_eq!(r.replica_bound(), UNBOUNDED);
        // A proposed addition bounds the high watermark before it is committed.
        r.pending = Some(vec![0, 2]);
        assert_eq!(r.replica_bound(), 120);
        assert!(!r.on_fetch(9, 1, 1, t), "not a replica");
    }

    #[test]
    fn a_follower_that_stops_fetching_leaves_the_isr_after_the_lag_time() {
        let t = Instant::now();
        let mut r = three(t);
        r.on_fetch(1, 160, 160, t);
        r.on_fetch(2, 160, 160, t);
        let alive = |_| true;
        assert_eq!(r.isr_change(160, LAG, t + LAG, alive), None);
        // Broker 1 keeps fetching at the end; broker 2 goes quiet.
        r.on_fetch(1, 160, 160, t + LAG);
        assert_eq!(
            r.isr_change(160, LAG, t + LAG + Duration::from_millis(1), alive),
            Some(vec![0, 1])
        );
    }

    #[test]
    fn a_slow_follower_is_caught_up_when_it_reaches_the_previous_end() {
        let t = Instant::now();
        let mut r = three(t);
        // Fetches that always trail the leader's current end, but reach the end of the
        // previous answer: caught up at the previous fetch.
        r.on_fetch(1, 100, 200, t + Duration::from_secs(20));
        r.on_fetch(1, 200, 300, t + Duration::from_secs(40));
        assert_eq!(r.followers[&1].last_caught_up, t + Duration::from_secs(20));
        // Falling further behind does not move it.
        r.on_fetch(1, 250, 400, t + Duration::from_secs(60));
        assert_eq!(r.followers[&1].last_caught_up, t + Duration::from_secs(20));
    }

    #[test]
    fn a_caught_up_follower_joins_once_past_the_high_watermark_and_the_epoch_start() {
        let t = Instant::now();
        let mut r = Replicas::new(0, 4, 7, vec![0, 1, 2], vec![0, 1], 100, t);
        r.on_fetch(1, 300, 300, t);
        r.on_fetch(2, 90, 300, t);
        assert_eq!(
            r.isr_change(90, LAG, t, |_| true),
            None,
            "below the epoch start"
        );
        r.on_fetch(2, 250, 300, t);
        assert_eq!(
            r.isr_change(260, LAG, t, |_| true),
            None,
            "below the high watermark"
        );
        assert_eq!(r.isr_change(250, LAG, t, |_| true), Some(vec![0, 1, 2]));
        assert_eq!(r.isr_change(250, LAG, t, |b| b != 2), None, "not alive");
        r.pending = Some(vec![0, 1, 2]);
        assert_eq!(
            r.isr_change(250, LAG, t, |_| true),
            None,
            "one change at a time"
        );
    }

    #[test]
    fn a_new_view_keeps_fetch_positions() {
        let t = Instant::now();
        let mut r = three(t);
        r.on_fetch(1, 150, 160, t);
        r.pending = Some(vec![0, 1]);
        r.update_view(8, vec![0, 1, 3], vec![0, 1], t);
        assert_eq!(r.followers[&1].fetch_offset, 150);
        assert_eq!(r.followers[&3].fetch_offset, -1);
        assert!(!r.followers.contains_key(&2));
        assert_eq!((r.pending.clone(), r.partition_epoch), (None, 8));
        assert_eq!(r.lags(160).collect::<Vec<_>>(), vec![(1, 10), (3, 160)]);
    }
}
