//! Incremental fetch sessions (KIP-227): the broker remembers what a consumer (or follower)
//! fetches, so that its next requests name only the partitions whose fetch position changed,
//! and the responses carry only the partitions with something new (records, an error, or a
//! moved high watermark, last stable offset or log start). With many partitions that are mostly
//! idle, a full fetch request and response list every partition every time; in a session they
//! list the few that moved.
//!
//! The rules are Kafka's (`FetchSession.scala`), because the clients implement that side:
//! - epoch -1 (or a request before v7): a full fetch with no session; a session id given with
//!   it closes that session.
//! - epoch 0: a full fetch that asks for a new session (closing the one named, if any); the
//!   response carries the new session's id, or 0 when the cache has no room.
//! - epoch > 0: an incremental fetch of session `session_id`, whose epoch must be the one this
//!   broker expects next (else INVALID_FETCH_SESSION_EPOCH; an unknown id is
//!   FETCH_SESSION_ID_NOT_FOUND). The request's partitions update or join the session, its
//!   forgotten topics leave it, and the fetch covers every partition in the session. A session
//!   left with no partitions is closed and answered as a sessionless fetch (session id 0).
//! - A session created with topic ids (v13+) takes incremental requests with topic ids only,
//!   and one created with names only names (FETCH_SESSION_TOPIC_ID_ERROR).
//!
//! Partitions that returned records move to the end of the session, so that a fetch whose
//! response limit is reached by the first partitions starts with the others next time.
//!
//! A session belongs to the principal that created it: another principal naming its id is told
//! the id is not found. Every fetch is still authorized partition by partition (`fetch.rs`).
//! The cache holds at most `--fetch-session-cache-slots` sessions (Kafka's
//! `max.incremental.fetch.session.cache.slots`; 0 turns sessions off); when it is full, a new
//! session takes the slot of the least recently used one idle for [`EVICTABLE_AFTER`], or is
//! not created (the client then keeps sending full fetches, which always work).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::codes;
use crate::security::Principal;

/// The epoch of a full fetch that wants no session (and closes the one it names).
pub const FINAL_EPOCH: i32 = -1;
/// The epoch of a full fetch that asks for a new session.
pub const INITIAL_EPOCH: i32 = 0;
/// How long a session must have been unused before a new one may take its slot in a full
/// cache (Kafka's `min.incremental.fetch.session.eviction.ms` default).
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(120);

/// Partitions all sessions together may hold (about 130 bytes each: some 30 MiB), whatever
/// the requests name; a session that would pass it is not created, or is closed.
pub const MAX_CACHED_PARTITIONS: usize = 250_000;

pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
pub const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;

/// How a request names a topic: by name up to Fetch v12, by id from v13.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Name(StrBytes),
    Id(Uuid),
}

/// What a fetch asks of one partition: the request's, or what a session remembers of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartReq {
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    pub last_fetched_epoch: i32,
}

/// What the last response of a session said of a partition. A partition is left out of an
/// incremental response when none of it changed and it has no records or error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

/// One partition of a fetch, as the fetch handler reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPart {
    pub topic: TopicKey,
    pub req: PartReq,
    /// What the session's last response said of it; `None` for a partition that just joined
    /// (always answered) or outside incremental fetches.
    pub sent: Option<Sent>,
}

/// What a request's session fields ask of the handler.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// A full fetch of the request's partitions; the response's session id is 0.
    Sessionless,
    /// A full fetch of the request's partitions that asks for a new session: once answered,
    /// [`FetchSessions::create`] it from what was sent.
    New,
    /// An incremental fetch: every partition of session `id`, in the session's order.
    Incremental { id: i32, parts: Vec<SessionPart> },
}

#[derive(Debug)]
struct Session {
    owner: Principal,
    by_id: bool,
    /// The epoch the session's next request must carry.
    next_epoch: i32,
    last_used: Instant,
    parts: IndexMap<(TopicKey, i32), (PartReq, Option<Sent>)>,
}

/// The broker's fetch sessions (see the module documentation).
#[derive(Debug)]
pub struct FetchSessions {
    slots: usize,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    sessions: HashMap<i32, Session>,
    /// Partitions in all sessions together (at most [`MAX_CACHED_PARTITIONS`]).
    partitions: usize,
}

impl Cache {
    fn remove(&mut self, id: i32) {
        if let Some(s) = self.sessions.remove(&id) {
            self.partitions -= s.parts.len();
        }
    }

    /// Removes the least recently used session unused for [`EVICTABLE_AFTER`]; whether there
    /// was one.
    fn evict_one(&mut self, now: Instant) -> bool {
        let idle = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_used) >= EVICTABLE_AFTER)
            .min_by_key(|(_, s)| s.last_used)
            .map(|(id, _)| *id);
        match idle {
            Some(id) => {
                self.remove(id);
                true
            }
            None => false,
        }
    }
}

fn next_epoch(epoch: i32) -> i32 {
    // Kafka's `nextEpoch`: 1 after i32::MAX (0 and -1 are taken).
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// The request's partitions, in its order, each under its topic's key.
pub fn request_parts(version: i16, req: &FetchRequest) -> Vec<SessionPart> {
    let mut out = Vec::new();
    for t in &req.topics {
        let topic = if version >= 13 {
            TopicKey::Id(t.topic_id)
        } else {
            TopicKey::Name(t.topic.0.clone())
        };
        for p in &t.partitions {
            out.push(SessionPart {
                topic: topic.clone(),
                req: PartReq {
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: p.last_fetched_epoch,
                },
                sent: None,
            });
        }
    }
    out
}

impl FetchSessions {
    /// A cache of at most `slots` sessions (0: no sessions; every fetch is sessionless).
    pub fn new(slots: usize) -> FetchSessions {
        FetchSessions {
            slots,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Every change keeps the cache consistent before anything that could panic, so a
        // poisoned lock is still usable.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sessions in the cache (a gauge).
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether the cache holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Partitions in all sessions together.
    pub fn partitions(&self) -> usize {
        self.lock().partitions
    }

    /// Reads the request's session fields: what kind of fetch it is, or the top-level error
    /// code of a request naming a session it cannot use. An incremental request's partition
    /// changes are applied to the session here, and its expected epoch moves on.
    pub fn begin(
        &self,
        version: i16,
        req: &FetchRequest,
        owner: &Principal,
        now: Instant,
    ) -> Result<Begin, i16> {
        if version < 7 {
            return Ok(Begin::Sessionless);
        }
        let (id, epoch) = (req.session_id, req.session_epoch);
        if id == 0 && epoch == FINAL_EPOCH {
            // The common sessionless fetch (librdkafka's, followers'): no lock taken.
            return Ok(Begin::Sessionless);
        }
        let mut cache = self.lock();
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            // A full fetch closes the session it names (when it is the caller's).
            if id != 0 && cache.sessions.get(&id).is_some_and(|s| s.owner == *owner) {
                cache.remove(id);
            }
            return Ok(if epoch == FINAL_EPOCH || self.slots == 0 {
                Begin::Sessionless
            } else {
                Begin::New
            });
        }
        if epoch < FINAL_EPOCH {
            return Err(INVALID_FETCH_SESSION_EPOCH);
        }
        let by_id = version >= 13;
        let Cache {
            sessions,
            partitions,
        } = &mut *cache;
        let Some(session) = sessions.get_mut(&id).filter(|s| s.owner == *owner) else {
            return Err(FETCH_SESSION_ID_NOT_FOUND);
        };
        if session.by_id != by_id {
            return Err(FETCH_SESSION_TOPIC_ID_ERROR);
        }
        if session.next_epoch != epoch {
            return Err(INVALID_FETCH_SESSION_EPOCH);
        }
        let before = session.parts.len();
        for p in request_parts(version, req) {
            let key = (p.topic, p.req.partition);
            match session.parts.get_mut(&key) {
                Some((r, _)) => *r = p.req,
                None => {
                    session.parts.insert(key, (p.req, None));
                }
            }
        }
        for t in &req.forgotten_topics_data {
            let topic = if by_id {
                TopicKey::Id(t.topic_id)
            } else {
                TopicKey::Name(t.topic.0.clone())
            };
            for &partition in &t.partitions {
                session.parts.shift_remove(&(topic.clone(), partition));
            }
        }
        let after = session.parts.len();
        *partitions = *partitions - before + after;
        if after == 0 {
            cache.remove(id);
            return Ok(Begin::Sessionless);
        }
        if *partitions > MAX_CACHED_PARTITIONS {
            // It grew past what the cache may hold: closed. The client's next fetch is a full
            // one, which works, with a session if there is room for it then.
            cache.remove(id);
            return Err(FETCH_SESSION_ID_NOT_FOUND);
        }
        session.next_epoch = next_epoch(epoch);
        session.last_used = now;
        let parts = session
            .parts
            .iter()
            .map(|((topic, _), (req, sent))| SessionPart {
                topic: topic.clone(),
                req: req.clone(),
                sent: *sent,
            })
            .collect();
        Ok(Begin::Incremental { id, parts })
    }

    /// Creates a session of the partitions a full fetch was answered with (and what it said of
    /// each); its id, or 0 when sessions are off, there are no partitions, or the cache has no
    /// room (all slots or [`MAX_CACHED_PARTITIONS`] taken by sessions used in the last
    /// [`EVICTABLE_AFTER`]).
    pub fn create(
        &self,
        owner: &Principal,
        by_id: bool,
        parts: Vec<(SessionPart, Sent)>,
        now: Instant,
    ) -> i32 {
        if self.slots == 0 || parts.is_empty() || parts.len() > MAX_CACHED_PARTITIONS {
            return 0;
        }
        let mut cache = self.lock();
        while cache.sessions.len() >= self.slots
            || cache.partitions + parts.len() > MAX_CACHED_PARTITIONS
        {
            if !cache.evict_one(now) {
                return 0;
            }
        }
        let id = loop {
            // Random, positive and unused: an id is not a counter another client could guess
            // from its own (the owner check is what keeps it private).
            let candidate = (Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32;
            if candidate != 0 && !cache.sessions.contains_key(&candidate) {
                break candidate;
            }
        };
        let parts: IndexMap<_, _> = parts
            .into_iter()
            .map(|(p, sent)| ((p.topic, p.req.partition), (p.req, Some(sent))))
            .collect();
        cache.partitions += parts.len();
        cache.sessions.insert(
            id,
            Session {
                owner: owner.clone(),
                by_id,
                next_epoch: next_epoch(INITIAL_EPOCH),
                last_used: now,
                parts,
            },
        );
        id
    }

    /// Records what an incremental response of session `id` said of the partitions it
    /// carried (`true`: with records, which moves that partition to the end of the session).
    pub fn answered(&self, id: i32, carried: Vec<(TopicKey, i32, Sent, bool)>) {
        let mut cache = self.lock();
        let Some(session) = cache.sessions.get_mut(&id) else {
            // Closed or evicted while the fetch waited: nothing to remember.
            return;
        };
        for (topic, partition, sent, with_records) in carried {
            let key = (topic, partition);
            if with_records {
                if let Some((req, _)) = session.parts.shift_remove(&key) {
                    session.parts.insert(key, (req, Some(sent)));
                }
            } else if let Some((_, s)) = session.parts.get_mut(&key) {
                *s = Some(sent);
            }
        }
    }
}

/// Whether an incremental response must carry a partition: anything new about it, or it just
/// joined the session.
pub fn must_answer(part: &SessionPart, now: Sent, records: usize, error_code: i16) -> bool {
    records > 0 || error_code != codes::NONE || part.sent != Some(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::messages::TopicName;

    fn part(partition: i32, fetch_offset: i64) -> FetchPartition {
        FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(fetch_offset)
            .with_partition_max_bytes(1 << 20)
    }

    fn request(id: i32, epoch: i32, topics: &[(&str, Vec<FetchPartition>)]) -> FetchRequest {
        FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(name, parts)| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                            .with_partitions(parts.clone())
                    })
                    .collect(),
            )
    }

    fn sent(hw: i64) -> Sent {
        Sent {
            high_watermark: hw,
            last_stable_offset: hw,
            log_start_offset: 0,
        }
    }

    fn user_x() -> Principal {
        Principal::user("x")
    }

    fn user_y() -> Principal {
        Principal::user("y")
    }

    /// A full fetch that asked for a session, answered with high watermark 10 everywhere.
    fn created(s: &FetchSessions, owner: &Principal, req: &FetchRequest, now: Instant) -> i32 {
        assert_eq!(s.begin(12, req, owner, now), Ok(Begin::New));
        let parts = request_parts(12, req)
            .into_iter()
            .map(|p| (p, sent(10)))
            .collect();
        s.create(owner, false, parts, now)
    }

    fn parts_of(b: &Begin) -> Vec<(String, i32, i64, Option<Sent>)> {
        match b {
            Begin::Incremental { parts, .. } => parts
                .iter()
                .map(|p| {
                    let TopicKey::Name(n) = &p.topic else {
                        panic!("by name")
                    };
                    (n.to_string(), p.req.partition, p.req.fetch_offset, p.sent)
                })
                .collect(),
            other => panic!("not incremental: {other:?}"),
        }
    }

    #[test]
    fn a_session_remembers_its_partitions_and_takes_changes_and_forgets() {
        let s = FetchSessions::new(10);
        let now = Instant::now();
        let full = request(
            0,
            0,
            &[("a", vec![part(0, 5), part(1, 7)]), ("b", vec![part(0, 0)])],
        );
        let id = created(&s, &user_x(), &full, now);
        assert!(id > 0);

        // Epoch 1 names only what changed: a-1 moved on, b-0 is forgotten, c-0 joins.
        let mut inc = request(id, 1, &[("a", vec![part(1, 9)]), ("c", vec![part(0, 3)])]);
        inc.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("b")))
            .with_partitions(vec![0])];
        let b = s.begin(12, &inc, &user_x(), now).expect("incremental");
        assert_eq!(
            parts_of(&b),
            vec![
                ("a".into(), 0, 5, Some(sent(10))),
                ("a".into(), 1, 9, Some(sent(10))),
                ("c".into(), 0, 3, None),
            ]
        );
        // The same epoch again is refused: the session expects 2 now.
        assert_eq!(
            s.begin(12, &inc, &user_x(), now),
            Err(INVALID_FETCH_SESSION_EPOCH)
        );
        let next = request(id, 2, &[]);
        assert!(matches!(
            s.begin(12, &next, &user_x(), now),
            Ok(Begin::Incremental { .. })
        ));
    }

    #[test]
    fn unknown_foreign_and_mismatched_sessions_are_refused_with_kafkas_codes() {
        let s = FetchSessions::new(10);
        let now = Instant::now();
        let id = created(
            &s,
            &user_x(),
            &request(0, 0, &[("a", vec![part(0, 0)])]),
            now,
        );
        let inc = request(id, 1, &[]);
        assert_eq!(
            s.begin(
                12,
                &request(id.wrapping_add(1).max(1), 1, &[]),
                &user_x(),
                now
            ),
            Err(FETCH_SESSION_ID_NOT_FOUND)
        );
        assert_eq!(
            s.begin(12, &inc, &user_y(), now),
            Err(FETCH_SESSION_ID_NOT_FOUND),
            "another principal's session is not found"
        );
        assert_eq!(
            s.begin(13, &inc, &user_x(), now),
            Err(FETCH_SESSION_TOPIC_ID_ERROR),
            "created with names, asked with ids"
        );
        assert_eq!(
            s.begin(12, &request(id, -2, &[]), &user_x(), now),
            Err(INVALID_FETCH_SESSION_EPOCH)
        );
        // None of the refusals moved the epoch.
        assert!(matches!(
            s.begin(12, &inc, &user_x(), now),
            Ok(Begin::Incremental { .. })
        ));
    }

    #[test]
    fn full_fetches_close_the_session_they_name_and_old_versions_have_none() {
        let s = FetchSessions::new(10);
        let now = Instant::now();
        let full = request(0, 0, &[("a", vec![part(0, 0)])]);
        let id = created(&s, &user_x(), &full, now);
        // Another principal's full fetch naming it does not close it.
        assert_eq!(
            s.begin(12, &request(id, -1, &[]), &user_y(), now),
            Ok(Begin::Sessionless)
        );
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.begin(12, &request(id, -1, &[]), &user_x(), now),
            Ok(Begin::Sessionless)
        );
        assert!(s.is_empty(), "epoch -1 closed it");
        let id = created(&s, &user_x(), &full, now);
        assert_eq!(
            s.begin(12, &request(id, 0, &[]), &user_x(), now),
            Ok(Begin::New)
        );
        assert!(s.is_empty(), "epoch 0 closed it before asking for another");
        assert_eq!(
            s.begin(6, &request(5, 3, &[]), &user_x(), now),
            Ok(Begin::Sessionless)
        );
    }

    #[test]
    fn forgetting_every_partition_closes_the_session() {
        let s = FetchSessions::new(10);
        let now = Instant::now();
        let id = created(
            &s,
            &user_x(),
            &request(0, 0, &[("a", vec![part(0, 0)])]),
            now,
        );
        let mut inc = request(id, 1, &[]);
        inc.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("a")))
            .with_partitions(vec![0])];
        assert_eq!(s.begin(12, &inc, &user_x(), now), Ok(Begin::Sessionless));
        assert!(s.is_empty());
    }

    #[test]
    fn a_full_cache_evicts_only_sessions_idle_long_enough_and_zero_slots_keep_none() {
        let s = FetchSessions::new(2);
        let t0 = Instant::now();
        let full = request(0, 0, &[("a", vec![part(0, 0)])]);
        let first = created(&s, &user_x(), &full, t0);
        let second = created(&s, &user_x(), &full, t0 + Duration::from_secs(1));
        assert!(first > 0 && second > 0 && first != second);
        assert_eq!(
            created(&s, &user_x(), &full, t0 + Duration::from_secs(2)),
            0,
            "full, and nothing idle long enough"
        );
        let later = t0 + EVICTABLE_AFTER + Duration::from_millis(500);
        let third = created(&s, &user_x(), &full, later);
        assert!(third > 0);
        assert_eq!(
            s.begin(12, &request(first, 1, &[]), &user_x(), later),
            Err(FETCH_SESSION_ID_NOT_FOUND),
            "the least recently used one made room"
        );
        assert!(s
            .begin(12, &request(second, 1, &[]), &user_x(), later)
            .is_ok());

        let off = FetchSessions::new(0);
        assert_eq!(off.begin(12, &full, &user_x(), t0), Ok(Begin::Sessionless));
        assert_eq!(
            off.create(&user_x(), false, vec![], t0),
            0,
            "nothing is ever created"
        );
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_partitions() {
        let s = FetchSessions::new(10);
        let now = Instant::now();
        let many =
            |n: usize| -> Vec<FetchPartition> { (0..n as i32).map(|p| part(p, 0)).collect() };
        let half = MAX_CACHED_PARTITIONS / 2;
        let first = created(&s, &user_x(), &request(0, 0, &[("a", many(half))]), now);
        assert!(first > 0);
        let second = created(&s, &user_x(), &request(0, 0, &[("b", many(half))]), now);
        assert!(second > 0);
        assert_eq!(s.partitions(), 2 * half);
        // No room for one more partition in a new session while both are in use...
        assert_eq!(
            created(&s, &user_x(), &request(0, 0, &[("c", many(10))]), now),
            0
        );
        // ...nor for a session to grow past the bound: it is closed, and the client will
        // fetch in full.
        let grow = request(
            first,
            1,
            &[("d", many(MAX_CACHED_PARTITIONS - 2 * half + 1))],
        );
        assert_eq!(
            s.begin(12, &grow, &user_x(), now),
            Err(FETCH_SESSION_ID_NOT_FOUND)
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s.partitions(), half);
        // Forgetting counts too.
        let mut forget = request(second, 1, &[]);
        forget.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("b")))
            .with_partitions((0..10).collect())];
        assert!(s.begin(12, &forget, &user_x(), now).is_ok());
        assert_eq!(s.partitions(), half - 10);
    }

    #[test]
    fn partitions_that_returned_records_move_to_the_end() {
        let s = FetchSessions::new(10);
        let now = Instant::now();
        let full = request(0, 0, &[("a", vec![part(0, 0), part(1, 0), part(2, 0)])]);
        let id = created(&s, &user_x(), &full, now);
        let name = || TopicKey::Name(StrBytes::from_static_str("a"));
        s.answered(
            id,
            vec![(name(), 0, sent(12), true), (name(), 1, sent(11), false)],
        );
        let b = s
            .begin(12, &request(id, 1, &[]), &user_x(), now)
            .expect("inc");
        assert_eq!(
            parts_of(&b),
            vec![
                ("a".into(), 1, 0, Some(sent(11))),
                ("a".into(), 2, 0, Some(sent(10))),
                ("a".into(), 0, 0, Some(sent(12))),
            ]
        );
    }

    #[test]
    fn an_incremental_response_carries_only_what_changed() {
        let p = SessionPart {
            topic: TopicKey::Id(Uuid::nil()),
            req: PartReq {
                partition: 0,
                fetch_offset: 0,
                max_bytes: 1,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
            },
            sent: Some(sent(10)),
        };
        assert!(!must_answer(&p, sent(10), 0, codes::NONE));
        assert!(must_answer(&p, sent(11), 0, codes::NONE), "watermark moved");
        assert!(must_answer(&p, sent(10), 1, codes::NONE), "records");
        assert!(
            must_answer(&p, sent(10), 0, codes::OFFSET_OUT_OF_RANGE),
            "error"
        );
        let new = SessionPart { sent: None, ..p };
        assert!(must_answer(&new, sent(10), 0, codes::NONE), "just joined");
    }

    #[test]
    fn epochs_wrap_past_the_largest_to_one() {
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}
