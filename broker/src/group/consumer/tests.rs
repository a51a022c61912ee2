//! The consumer-group state machine driven directly: heartbeats in, replies out, `now` chosen
//! by each test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::*;

/// A fixed set of topics, every one visible.
pub(super) struct Topics(pub(super) TopicsMeta);

impl Resolve for Topics {
    fn topics(&self, names: &BTreeSet<String>) -> TopicsMeta {
        self.0
            .iter()
            .filter(|(n, _)| names.contains(*n))
            .map(|(n, v)| (n.clone(), *v))
            .collect()
    }

    fn matching(&self, regex: &regex::Regex) -> BTreeSet<String> {
        self.0
            .keys()
            .filter(|n| regex.is_match(n))
            .cloned()
            .collect()
    }
}

fn topic_id(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

fn topics(list: &[(&str, u8, i32)]) -> Topics {
    Topics(
        list.iter()
            .map(|(n, id, p)| (n.to_string(), (topic_id(*id), *p)))
            .collect(),
    )
}

fn join(member: &str, subscribed: &[&str]) -> Heartbeat {
    Heartbeat {
        member_id: member.to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 60_000,
        subscribed_names: Some(subscribed.iter().map(|s| s.to_string()).collect()),
        owned: Some(Assignment::new()),
        member_id_from_client: true,
        ..Heartbeat::default()
    }
}

/// A steady-state heartbeat: the member's epoch and what it owns.
fn beat(member: &str, epoch: i32, owned: &Assignment) -> Heartbeat {
    Heartbeat {
        member_id: member.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        member_id_from_client: true,
        ..Heartbeat::default()
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(|p| p.len()).sum()
}

/// A client: what it owns and its epoch, updated from each reply like a real consumer.
#[derive(Debug, Clone)]
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
}

impl Client {
    fn apply(&mut self, r: &HeartbeatReply) {
        assert_eq!(r.error, 0, "{r:?}");
        self.epoch = r.member_epoch;
        if let Some(a) = &r.assignment {
            self.owned = a.clone();
        }
    }
}

/// No partition is owned by two clients.
fn assert_disjoint(clients: &[Client]) {
    let mut seen = BTreeSet::new();
    for c in clients {
        for (t, ps) in &c.owned {
            for p in ps {
                assert!(seen.insert((*t, *p)), "{t}-{p} owned twice: {clients:?}");
            }
        }
    }
}

#[test]
fn two_members_split_the_partitions_and_never_own_one_twice() {
    let s = ConsumerSettings::default();
    let topics = topics(&[("orders", 1, 6)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let r = g.heartbeat(join("a", &["orders"]), &s, &topics, now);
    let mut a = Client {
        id: "a".into(),
        epoch: 0,
        owned: Assignment::new(),
    };
    a.apply(&r);
    assert_eq!(count(&a.owned), 6, "a lone member gets everything");
    assert_eq!(
        (g.epoch, a.epoch),
        (1, 1),
        "a join, its subscription and its topics are one epoch"
    );
    assert_eq!(g.state(), ConsumerGroupState::Stable);

    let r = g.heartbeat(join("b", &["orders"]), &s, &topics, now);
    let mut b = Client {
        id: "b".into(),
        epoch: 0,
        owned: Assignment::new(),
    };
    b.apply(&r);
    // b is at the new epoch but gets nothing yet: a still owns every partition.
    assert_eq!(count(&b.owned), 0);
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);
    let mut clients = vec![a, b];
    for _ in 0..4 {
        for i in 0..clients.len() {
            let c = &clients[i];
            let r = g.heartbeat(beat(&c.id, c.epoch, &c.owned), &s, &topics, now);
            clients[i].apply(&r);
            assert_disjoint(&clients);
        }
    }
    assert_eq!(count(&clients[0].owned), 3);
    assert_eq!(count(&clients[1].owned), 3);
    assert_eq!(clients[0].epoch, g.epoch);
    assert_eq!(clients[1].epoch, g.epoch);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn a_member_asked_to_revoke_keeps_its_epoch_until_it_has() {
    let s = ConsumerSettings::default();
    let topics = topics(&[("t", 1, 2)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let r = g.heartbeat(join("a", &["t"]), &s, &topics, now);
    let owned_before = r.assignment.clone().expect("an assignment");
    let epoch_a = r.member_epoch;
    g.heartbeat(join("b", &["t"]), &s, &topics, now);
    // a is told to give one up: its assignment shrinks, its epoch stays.
    let r = g.heartbeat(beat("a", epoch_a, &owned_before), &s, &topics, now);
    assert_eq!(r.member_epoch, epoch_a);
    let kept = r.assignment.clone().expect("an assignment");
    assert_eq!(count(&kept), 1);
    // Still owning both (not yet confirmed): nothing changes.
    let r = g.heartbeat(beat("a", epoch_a, &owned_before), &s, &topics, now);
    assert_eq!(r.member_epoch, epoch_a);
    // Confirmed: it moves to the group epoch.
    let r = g.heartbeat(beat("a", epoch_a, &kept), &s, &topics, now);
    assert_eq!(r.member_epoch, g.epoch);
}

#[test]
fn epochs_that_do_not_match_are_fenced_but_a_missed_answer_is_not() {
    let s = ConsumerSettings::default();
    let topics = topics(&[("t", 1, 2)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let r = g.heartbeat(join("a", &["t"]), &s, &topics, now);
    let e = r.member_epoch;
    let owned = r.assignment.expect("an assignment");
    let r = g.heartbeat(beat("a", e + 5, &owned), &s, &topics, now);
    assert_eq!(r.error, FENCED_MEMBER_EPOCH);
    assert!(r.message.expect("a message").contains("fenced"));
    let r = g.heartbeat(beat("nobody", 3, &owned), &s, &topics, now);
    assert_eq!(r.error, codes::UNKNOWN_MEMBER_ID);
    // A topic grows: a's epoch moves on; a heartbeat at the previous epoch that owns a
    // subset of what it has is an answer it missed, not a fence.
    let grown = self::topics(&[("t", 1, 4)]);
    let r = g.heartbeat(beat("a", e, &owned), &s, &grown, now);
    assert_eq!(r.error, 0);
    assert!(r.member_epoch > e);
    let r2 = g.heartbeat(beat("a", e, &owned), &s, &grown, now);
    assert_eq!(
        r2.error, 0,
        "the previous epoch with a subset of the assignment"
    );
    assert_eq!(count(&r.assignment.expect("an assignment")), 4);
}

#[test]
fn a_silent_member_is_removed_after_its_session_and_its_partitions_move() {
    let s = ConsumerSettings {
        session_timeout: Duration::from_secs(10),
        ..ConsumerSettings::default()
    };
    let topics = topics(&[("t", 1, 4)]);
    let t0 = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let mut a = Client {
        id: "a".into(),
        epoch: 0,
        owned: Assignment::new(),
    };
    let mut b = a.clone();
    b.id = "b".into();
    a.apply(&g.heartbeat(join("a", &["t"]), &s, &topics, t0));
    b.apply(&g.heartbeat(join("b", &["t"]), &s, &topics, t0));
    for _ in 0..3 {
        a.apply(&g.heartbeat(beat("a", a.epoch, &a.owned), &s, &topics, t0));
        b.apply(&g.heartbeat(beat("b", b.epoch, &b.owned), &s, &topics, t0));
    }
    assert_eq!((count(&a.owned), count(&b.owned)), (2, 2));
    // b goes silent; a keeps heartbeating.
    let t1 = t0 + Duration::from_secs(6);
    a.apply(&g.heartbeat(beat("a", a.epoch, &a.owned), &s, &topics, t1));
    let next = g.tick(&s, t1).expect("a deadline");
    assert_eq!(next, t0 + Duration::from_secs(10), "b's session ends first");
    assert!(g.members.contains_key("b"));
    g.tick(&s, next);
    assert!(!g.members.contains_key("b"));
    a.apply(&g.heartbeat(beat("a", a.epoch, &a.owned), &s, &topics, next));
    assert_eq!(count(&a.owned), 4);
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_removed() {
    let s = ConsumerSettings::default();
    let topics = topics(&[("t", 1, 2)]);
    let t0 = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let mut j = join("a", &["t"]);
    j.rebalance_timeout_ms = 5_000;
    let r = g.heartbeat(j, &s, &topics, t0);
    let (e, owned) = (r.member_epoch, r.assignment.expect("an assignment"));
    g.heartbeat(join("b", &["t"]), &s, &topics, t0);
    g.heartbeat(beat("a", e, &owned), &s, &topics, t0);
    assert_eq!(
        g.members["a"].state,
        MemberState::UnrevokedPartitions,
        "a was asked to revoke"
    );
    let t1 = t0 + Duration::from_secs(5);
    // b heartbeats (its session is fine); a never confirms.
    g.heartbeat(
        beat("b", g.members["b"].epoch, &Assignment::new()),
        &s,
        &topics,
        t1,
    );
    g.tick(&s, t1);
    assert!(!g.members.contains_key("a"));
}

#[test]
fn commits_check_the_member_epoch_and_accept_older_epochs_for_partitions_owned_since() {
    let s = ConsumerSettings::default();
    let topics = topics(&[("t", 1, 2), ("u", 2, 1)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let r = g.heartbeat(join("a", &["t"]), &s, &topics, now);
    let e1 = r.member_epoch;
    let owned = r.assignment.expect("an assignment");
    let t0 = (topic_id(1), 0);
    assert_eq!(g.check_commit("a", e1, &[t0]), Ok(()));
    assert_eq!(g.check_commit("a", e1 + 1, &[t0]), Err(FENCED_MEMBER_EPOCH));
    assert_eq!(
        g.check_commit("x", e1, &[t0]),
        Err(codes::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        g.check_commit("", -1, &[t0]),
        Err(codes::UNKNOWN_MEMBER_ID),
        "no commits from outside while the group has members"
    );
    // The subscription grows: a new epoch, t-0 still owned since e1.
    let mut more = beat("a", e1, &owned);
    more.subscribed_names = Some(vec!["t".into(), "u".into()]);
    let r = g.heartbeat(more, &s, &topics, now);
    let e2 = r.member_epoch;
    assert!(e2 > e1);
    assert_eq!(g.check_commit("a", e1, &[t0]), Ok(()), "KIP-1251");
    assert_eq!(
        g.check_commit("a", e1, &[(topic_id(2), 0)]),
        Err(STALE_MEMBER_EPOCH),
        "u-0 was given at the newer epoch"
    );
    g.remove("a", "test");
    assert_eq!(g.check_commit("", -1, &[t0]), Ok(()));
}

#[test]
fn an_offset_fetch_needs_the_members_current_epoch_or_no_member_at_all() {
    let s = ConsumerSettings::default();
    let topics = topics(&[("t", 1, 2)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let r = g.heartbeat(join("a", &["t"]), &s, &topics, now);
    let e1 = r.member_epoch;
    assert_eq!(g.check_offset_fetch(Some("a"), e1), Ok(()));
    assert_eq!(g.check_offset_fetch(None, -1), Ok(()), "admin tools");
    assert_eq!(
        g.check_offset_fetch(Some("a"), e1 - 1),
        Err(STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        g.check_offset_fetch(Some("a"), e1 + 1),
        Err(STALE_MEMBER_EPOCH)
    );
    assert_eq!(
        g.check_offset_fetch(Some("x"), e1),
        Err(codes::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        g.check_offset_fetch(None, e1),
        Err(codes::UNKNOWN_MEMBER_ID),
        "an epoch without a member"
    );
    assert_eq!(
        g.check_offset_fetch(Some(""), -1),
        Err(codes::UNKNOWN_MEMBER_ID),
        "an empty id is a member id (Kafka's rule is a null one)"
    );
}

#[test]
fn range_gives_contiguous_ranges_and_uniform_keeps_what_it_can() {
    let subs: BTreeMap<String, BTreeSet<Uuid>> = ["a", "b", "c"]
        .iter()
        .map(|m| (m.to_string(), [topic_id(1)].into_iter().collect()))
        .collect();
    let parts: BTreeMap<Uuid, i32> = [(topic_id(1), 7)].into_iter().collect();
    let names: BTreeMap<Uuid, &str> = [(topic_id(1), "t")].into_iter().collect();
    let r = assign(Assignor::Range, &subs, &parts, &names, &BTreeMap::new());
    let got = |m: &str, out: &BTreeMap<String, Assignment>| -> Vec<i32> {
        out[m]
            .get(&topic_id(1))
            .into_iter()
            .flatten()
            .copied()
            .collect()
    };
    assert_eq!(got("a", &r), vec![0, 1, 2]);
    assert_eq!(got("b", &r), vec![3, 4]);
    assert_eq!(got("c", &r), vec![5, 6]);

    let first = assign(Assignor::Uniform, &subs, &parts, &names, &BTreeMap::new());
    let sizes: Vec<usize> = first.values().map(count).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 7);
    assert!(sizes.iter().all(|n| (2..=3).contains(n)), "{sizes:?}");
    // c leaves: a and b keep everything they had and share c's.
    let mut two = subs.clone();
    two.remove("c");
    let second = assign(Assignor::Uniform, &two, &parts, &names, &first);
    for m in ["a", "b"] {
        let before: BTreeSet<i32> = got(m, &first).into_iter().collect();
        let after: BTreeSet<i32> = got(m, &second).into_iter().collect();
        assert!(before.is_subset(&after), "{m}: {before:?} -> {after:?}");
    }
    let sizes: Vec<usize> = second.values().map(count).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 7);
    assert!(sizes.iter().all(|n| (3..=4).contains(n)), "{sizes:?}");
}

#[test]
fn uniform_balances_members_with_different_subscriptions() {
    // a reads t and u, b only u: b gets u, a gets t.
    let subs: BTreeMap<String, BTreeSet<Uuid>> = [
        (
            "a".to_string(),
            [topic_id(1), topic_id(2)].into_iter().collect(),
        ),
        ("b".to_string(), [topic_id(2)].into_iter().collect()),
    ]
    .into_iter()
    .collect();
    let parts: BTreeMap<Uuid, i32> = [(topic_id(1), 2), (topic_id(2), 2)].into_iter().collect();
    let names: BTreeMap<Uuid, &str> = [(topic_id(1), "t"), (topic_id(2), "u")]
        .into_iter()
        .collect();
    let out = assign(Assignor::Uniform, &subs, &parts, &names, &BTreeMap::new());
    assert_eq!(count(&out["a"]), 2);
    assert_eq!(count(&out["b"]), 2);
    assert!(out["b"].keys().all(|t| *t == topic_id(2)));
}

#[test]
fn bad_assignors_and_regexes_are_refused_with_their_names() {
    let s = ConsumerSettings::default();
    let topics = topics(&[("t", 1, 1)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let mut j = join("a", &["t"]);
    j.server_assignor = Some("sticky-ish".into());
    let r = g.heartbeat(j, &s, &topics, now);
    assert_eq!(r.error, UNSUPPORTED_ASSIGNOR);
    assert!(r.message.expect("a message").contains("sticky-ish"));
    let mut j = join("a", &[]);
    j.subscribed_names = None;
    j.subscribed_regex = Some("(unclosed".into());
    let r = g.heartbeat(j, &s, &topics, now);
    assert_eq!(r.error, INVALID_REGULAR_EXPRESSION);
    assert!(r.message.expect("a message").contains("(unclosed"));
    let mut j = join("", &["t"]);
    j.member_id_from_client = true;
    assert_eq!(g.heartbeat(j, &s, &topics, now).error, INVALID_REQUEST);
    assert!(g.members.is_empty());
}

#[test]
fn a_regex_subscription_follows_the_topics_that_match() {
    let s = ConsumerSettings::default();
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let mut j = join("a", &[]);
    j.subscribed_names = None;
    j.subscribed_regex = Some("logs-.*".into());
    let one = topics(&[("logs-a", 1, 1), ("other", 2, 3)]);
    let r = g.heartbeat(j, &s, &one, now);
    assert_eq!(r.error, 0);
    let owned = r.assignment.expect("an assignment");
    assert_eq!(owned.keys().copied().collect::<Vec<_>>(), vec![topic_id(1)]);
    let two = topics(&[("logs-a", 1, 1), ("other", 2, 3), ("logs-b", 3, 2)]);
    let r = g.heartbeat(beat("a", r.member_epoch, &owned), &s, &two, now);
    assert_eq!(count(&r.assignment.expect("an assignment")), 3);
}

/// The topics of a [`Topics`] as one member sees them: its regular expression matches only
/// `visible` (its DESCRIBE permission).
struct SeenBy<'a>(&'a Topics, &'a [&'a str]);

impl Resolve for SeenBy<'_> {
    fn topics(&self, names: &BTreeSet<String>) -> TopicsMeta {
        self.0.topics(names)
    }

    fn matching(&self, regex: &regex::Regex) -> BTreeSet<String> {
        let mut m = self.0.matching(regex);
        m.retain(|n| self.1.contains(&n.as_str()));
        m
    }
}

#[test]
fn a_regex_resolves_to_the_topics_its_own_member_may_see() {
    let s = ConsumerSettings::default();
    let now = Instant::now();
    let all = topics(&[("logs-a", 1, 2), ("logs-secret", 2, 2)]);
    let (for_a, for_b) = (
        SeenBy(&all, &["logs-a", "logs-secret"]),
        SeenBy(&all, &["logs-a"]),
    );
    let by_regex = |id: &str| {
        let mut j = join(id, &[]);
        j.subscribed_names = None;
        j.subscribed_regex = Some("logs-.*".into());
        j
    };
    let mut g = ConsumerGroup::new("g");
    let mut b = Client {
        id: "b".into(),
        epoch: 0,
        owned: Assignment::new(),
    };
    b.apply(&g.heartbeat(by_regex("b"), &s, &for_b, now));
    assert_eq!(
        b.owned.keys().copied().collect::<Vec<_>>(),
        vec![topic_id(1)],
        "alone, b gets only what it may see"
    );
    let mut a = Client {
        id: "a".into(),
        epoch: 0,
        owned: Assignment::new(),
    };
    a.apply(&g.heartbeat(by_regex("a"), &s, &for_a, now));
    // Both heartbeat until the group settles; a's permissions never widen b's subscription.
    for _ in 0..6 {
        b.apply(&g.heartbeat(beat("b", b.epoch, &b.owned), &s, &for_b, now));
        a.apply(&g.heartbeat(beat("a", a.epoch, &a.owned), &s, &for_a, now));
        assert_disjoint(&[a.clone(), b.clone()]);
        assert!(
            !b.owned.contains_key(&topic_id(2)),
            "b got a topic it may not see: {b:?}"
        );
    }
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    assert_eq!(a.owned.get(&topic_id(2)).map(|p| p.len()), Some(2), "{a:?}");
    assert_eq!(count(&a.owned) + count(&b.owned), 4);
    // Once b may see the topic, its next heartbeat subscribes it: a new group epoch.
    let before = g.epoch;
    b.apply(&g.heartbeat(beat("b", b.epoch, &b.owned), &s, &for_a, now));
    assert_eq!(g.epoch, before + 1, "a wider match is a new subscription");
}

#[test]
fn a_static_member_that_restarts_takes_over_its_partitions() {
    let s = ConsumerSettings::default();
    let topics = topics(&[("t", 1, 2)]);
    let now = Instant::now();
    let mut g = ConsumerGroup::new("g");
    let mut j = join("a1", &["t"]);
    j.instance_id = Some("pod-0".into());
    let r = g.heartbeat(j.clone(), &s, &topics, now);
    let epoch = g.epoch;
    let owned = r.assignment.expect("an assignment");
    // A second process with the same instance id while the first is active.
    let mut dup = j.clone();
    dup.member_id = "a2".into();
    assert_eq!(
        g.heartbeat(dup.clone(), &s, &topics, now).error,
        UNRELEASED_INSTANCE_ID
    );
    // The first leaves for now (-2), the second takes its place without a new epoch.
    let mut leave = beat("a1", r.member_epoch, &owned);
    leave.member_epoch = STATIC_LEAVE_EPOCH;
    leave.instance_id = Some("pod-0".into());
    g.heartbeat(leave, &s, &topics, now);
    let r = g.heartbeat(dup, &s, &topics, now);
    assert_eq!(r.error, 0);
    assert_eq!(r.assignment.expect("an assignment"), owned);
    assert_eq!(g.epoch, epoch, "no rebalance");
    assert!(g.members.contains_key("a2") && !g.members.contains_key("a1"));
}
