//! Classic members in a consumer group (the online migration), driven directly: a classic
//! group upgraded, classic clients (cooperative and eager) rejoining as the coordinator asks,
//! a consumer-protocol member beside them, and the way back.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
use kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::time::Instant;
use uuid::Uuid;

use super::classic::{decode_assignment, encode_assignment};
use super::tests::Topics;
use super::*;
use crate::group::state::{AdoptedMember, Group, GroupState, JoinArgs};

const TOPIC: &str = "orders";

fn orders() -> Topics {
    Topics(
        [(TOPIC.to_string(), (Uuid::from_bytes([1; 16]), 6))]
            .into_iter()
            .collect(),
    )
}

/// A ConsumerProtocolSubscription (v1: with the partitions the member owns) of `orders`.
fn subscription(owned: &[i32]) -> Bytes {
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str(TOPIC)])
        .with_owned_partitions(if owned.is_empty() {
            Vec::new()
        } else {
            vec![OwnedPartitions::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(owned.to_vec())]
        });
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    sub.encode(&mut buf, 1).expect("encodes");
    buf.freeze()
}

fn assignment_bytes(partitions: &[i32]) -> Bytes {
    encode_assignment(&[(TOPIC.to_string(), partitions.to_vec())], 1)
}

fn partitions_of(assignment: &Bytes) -> BTreeSet<i32> {
    let (parts, user_data) = decode_assignment(assignment).expect("an assignment");
    assert!(!user_data);
    parts.into_iter().flat_map(|(_, ps)| ps).collect()
}

/// A classic consumer: its member id, generation and what it owns, kept like a client.
#[derive(Debug, Clone)]
struct Classic {
    id: String,
    generation: i32,
    owned: BTreeSet<i32>,
    eager: bool,
}

impl Classic {
    fn join_args(&self, now_owned: &[i32]) -> JoinArgs {
        JoinArgs {
            member_id: self.id.clone(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            protocol_type: "consumer".into(),
            protocols: vec![("cooperative-sticky".into(), subscription(now_owned))],
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 60_000,
            require_known_member_id: true,
        }
    }

    /// Rejoins and syncs as a Java consumer does: an eager member first gives up everything;
    /// a cooperative one keeps what it owns and gives up what SyncGroup no longer lists.
    fn rejoin(&mut self, g: &mut ConsumerGroup, now: Instant) {
        if self.eager {
            self.owned.clear();
        }
        let owned: Vec<i32> = self.owned.iter().copied().collect();
        let s = ConsumerSettings::default();
        let j = g.classic_join(self.join_args(&owned), "fresh", &s, &orders(), now);
        assert_eq!(j.error, 0, "{j:?}");
        assert_eq!(
            j.leader, "",
            "a classic member of a consumer group is a follower"
        );
        assert!(j.members.is_empty());
        assert_eq!(j.protocol_name.as_deref(), Some("cooperative-sticky"));
        self.generation = j.generation;
        let r = g.classic_sync(
            &self.id,
            None,
            self.generation,
            Some("consumer"),
            Some("cooperative-sticky"),
            now,
        );
        assert_eq!(r.error, 0, "{r:?}");
        self.owned = partitions_of(&r.assignment);
    }
}

/// A stable classic group at generation 3: a owns 0-2, b owns 3-5.
fn classic_group(now: Instant) -> Group {
    let member = |id: &str, ps: &[i32]| AdoptedMember {
        id: id.into(),
        instance_id: None,
        client_id: id.into(),
        client_host: "/127.0.0.1".into(),
        protocols: vec![("cooperative-sticky".into(), subscription(ps))],
        session_timeout: Duration::from_secs(45),
        rebalance_timeout: Duration::from_secs(60),
        assignment: assignment_bytes(ps),
        generation: 3,
    };
    Group::adopt(
        "g",
        3,
        vec![member("a", &[0, 1, 2]), member("b", &[3, 4, 5])],
        Duration::ZERO,
        now,
    )
}

fn owned_ids(g: &ConsumerGroup, id: &str) -> BTreeSet<i32> {
    g.members[id].assigned.values().flatten().copied().collect()
}

/// No partition is owned by two members, counting what each is still revoking.
fn assert_disjoint(g: &ConsumerGroup) {
    let mut seen = BTreeSet::new();
    for m in g.members.values() {
        for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
            for p in ps {
                assert!(seen.insert((*t, *p)), "{t}-{p} owned twice: {g:?}");
            }
        }
    }
}

#[test]
fn a_classic_group_upgrades_keeping_every_assignment_then_shares_with_a_consumer_member() {
    let now = Instant::now();
    let s = ConsumerSettings::default();
    let topics = orders();
    let mut g = ConsumerGroup::from_classic(&classic_group(now), &topics, now).expect("upgrades");
    assert_eq!((g.epoch, g.assignment_epoch), (3, 3));
    assert_eq!(owned_ids(&g, "a"), BTreeSet::from([0, 1, 2]));
    assert_eq!(owned_ids(&g, "b"), BTreeSet::from([3, 4, 5]));
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    let mut a = Classic {
        id: "a".into(),
        generation: 3,
        owned: BTreeSet::from([0, 1, 2]),
        eager: false,
    };
    let mut b = Classic {
        id: "b".into(),
        generation: 3,
        owned: BTreeSet::from([3, 4, 5]),
        eager: true,
    };
    // Their generation still commits and heartbeats.
    let key = |p| (Uuid::from_bytes([1; 16]), p);
    assert_eq!(g.check_commit("a", 3, &[key(0)]), Ok(()));
    assert_eq!(g.classic_heartbeat("a", None, 3, now), 0);

    // A consumer-protocol member joins: a new epoch, nothing free for it yet.
    let hb = Heartbeat {
        member_id: "c".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 60_000,
        subscribed_names: Some(vec![TOPIC.into()]),
        owned: Some(Assignment::new()),
        member_id_from_client: true,
        ..Heartbeat::default()
    };
    let r = g.heartbeat(hb, &s, &topics, now);
    assert_eq!(r.error, 0);
    assert_eq!(g.epoch, 4);
    let mut c_epoch = r.member_epoch;
    let mut c_owned = r.assignment.unwrap_or_default();
    assert!(c_owned.values().all(|p| p.is_empty()));

    // The classic members hear it from Heartbeat and rejoin; the consumer member takes what
    // they release, and nobody ever owns a partition twice.
    assert_eq!(
        g.classic_heartbeat("a", None, 3, now),
        codes::REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        g.classic_heartbeat("b", None, 3, now),
        codes::REBALANCE_IN_PROGRESS
    );
    for _ in 0..3 {
        for m in [&mut a, &mut b] {
            if g.classic_heartbeat(&m.id, None, m.generation, now) == codes::REBALANCE_IN_PROGRESS {
                m.rejoin(&mut g, now);
                assert_disjoint(&g);
            }
        }
        let r = g.heartbeat(
            Heartbeat {
                member_id: "c".into(),
                member_epoch: c_epoch,
                rebalance_timeout_ms: -1,
                owned: Some(c_owned.clone()),
                member_id_from_client: true,
                ..Heartbeat::default()
            },
            &s,
            &topics,
            now,
        );
        assert_eq!(r.error, 0, "{r:?}");
        c_epoch = r.member_epoch;
        if let Some(x) = r.assignment {
            c_owned = x;
        }
        assert_disjoint(&g);
    }
    let c_count: usize = c_owned.values().map(|p| p.len()).sum();
    assert_eq!((a.owned.len(), b.owned.len(), c_count), (2, 2, 2));
    assert_eq!(a.generation, g.epoch);
    assert_eq!(b.generation, g.epoch);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    // A classic member commits at its generation only.
    assert_eq!(
        g.check_commit("a", 3, &[key(*a.owned.first().expect("a owns some"))]),
        Err(codes::ILLEGAL_GENERATION)
    );

    // The consumer member leaves: only classic members are left, and the group goes back to
    // the classic protocol, rebalancing so their own assignor takes over.
    g.heartbeat(
        Heartbeat {
            member_id: "c".into(),
            member_epoch: LEAVE_EPOCH,
            ..Heartbeat::default()
        },
        &s,
        &topics,
        now,
    );
    assert!(g.only_classic_members());
    let mut classic = g.to_classic(Duration::ZERO, now);
    assert_eq!(classic.state, GroupState::PreparingRebalance);
    // The members' own generation (the epoch before c left), not the epoch c's leave made:
    // their heartbeats hear REBALANCE_IN_PROGRESS, not ILLEGAL_GENERATION, and they rejoin.
    assert_eq!(classic.generation, a.generation);
    assert!(g.epoch > a.generation);
    assert_eq!(
        classic.heartbeat("a", None, a.generation, now),
        codes::REBALANCE_IN_PROGRESS
    );
    assert_eq!(classic.check_commit("b", None, b.generation, now), Ok(()));
    assert_eq!(classic.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(classic.protocol_name.as_deref(), Some("cooperative-sticky"));
    assert_eq!(classic.members().count(), 2);
    let kept = partitions_of(&classic.member("a").expect("a is in it").assignment);
    assert_eq!(kept, a.owned);
}

#[test]
fn a_classic_member_that_does_not_rejoin_or_sync_in_time_is_removed() {
    let t0 = Instant::now();
    let s = ConsumerSettings::default();
    let mut g = ConsumerGroup::from_classic(&classic_group(t0), &orders(), t0).expect("upgrades");
    let mut a = Classic {
        id: "a".into(),
        generation: 3,
        owned: BTreeSet::from([0, 1, 2]),
        eager: false,
    };
    // b goes silent; a keeps heartbeating.
    let t1 = t0 + Duration::from_secs(30);
    assert_eq!(g.classic_heartbeat("a", None, 3, t1), 0);
    // b's own session timeout (45 s), not the coordinator's, removes it.
    let t2 = t0 + Duration::from_secs(46);
    g.tick(&s, t2);
    assert!(!g.members.contains_key("b"));
    assert!(g.epoch > 3);
    // a must rejoin to take b's partitions; it is told so and then must rejoin within its
    // rebalance timeout (60 s).
    assert_eq!(
        g.classic_heartbeat("a", None, 3, t2),
        codes::REBALANCE_IN_PROGRESS
    );
    a.rejoin(&mut g, t2);
    assert_eq!(a.owned, (0..6).collect());
    // A join that is not followed by SyncGroup costs the member its place.
    let owned: Vec<i32> = a.owned.iter().copied().collect();
    let j = g.classic_join(a.join_args(&owned), "fresh", &s, &orders(), t2);
    assert_eq!(j.error, 0);
    let next = g.tick(&s, t2).expect("a deadline");
    assert_eq!(
        next,
        t2 + Duration::from_secs(45),
        "its session comes first"
    );
    let t3 = t2 + Duration::from_secs(40);
    assert_eq!(g.classic_heartbeat("a", None, a.generation, t3), 0);
    let next = g.tick(&s, t3).expect("a deadline");
    assert_eq!(
        next,
        t2 + Duration::from_secs(60),
        "then the SyncGroup it owes"
    );
    g.tick(&s, t2 + Duration::from_secs(61));
    assert!(g.members.is_empty(), "{g:?}");
}

#[test]
fn classic_requests_get_the_classic_errors() {
    let now = Instant::now();
    let s = ConsumerSettings::default();
    let topics = orders();
    let mut g = ConsumerGroup::from_classic(&classic_group(now), &topics, now).expect("upgrades");
    let a = Classic {
        id: "a".into(),
        generation: 3,
        owned: BTreeSet::new(),
        eager: false,
    };
    // A new dynamic member (JoinGroup v4+) first gets its id.
    let mut fresh = a.join_args(&[]);
    fresh.member_id = String::new();
    let j = g.classic_join(fresh.clone(), "fresh", &s, &topics, now);
    assert_eq!(
        (j.error, j.member_id.as_str()),
        (codes::MEMBER_ID_REQUIRED, "fresh")
    );
    assert!(!g.members.contains_key("fresh"));
    // Another protocol type, or metadata that is not a subscription.
    let mut other = a.join_args(&[]);
    other.protocol_type = "connect".into();
    assert_eq!(
        g.classic_join(other, "fresh", &s, &topics, now).error,
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
    let mut garbage = a.join_args(&[]);
    garbage.protocols = vec![("cooperative-sticky".into(), Bytes::from_static(b"\x00"))];
    assert_eq!(
        g.classic_join(garbage, "fresh", &s, &topics, now).error,
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
    // No protocol the other classic members support.
    let mut lone = a.join_args(&[]);
    lone.member_id = "z".into();
    lone.protocols = vec![("roundrobin".into(), subscription(&[]))];
    assert_eq!(
        g.classic_join(lone, "fresh", &s, &topics, now).error,
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
    // Generations and members.
    assert_eq!(
        g.classic_heartbeat("a", None, 2, now),
        codes::ILLEGAL_GENERATION
    );
    assert_eq!(
        g.classic_heartbeat("nobody", None, 3, now),
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        g.classic_sync("a", None, 3, Some("consumer"), Some("range"), now)
            .error,
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
    assert_eq!(
        g.classic_sync("a", None, 7, None, None, now).error,
        codes::ILLEGAL_GENERATION
    );
    assert_eq!(g.classic_leave("nobody", None), codes::UNKNOWN_MEMBER_ID);
    assert_eq!(g.classic_leave("b", None), 0);
    assert!(!g.members.contains_key("b"));
}

#[test]
fn an_upgrade_is_refused_for_a_custom_assignor_or_another_protocol_type() {
    let now = Instant::now();
    let topics = orders();
    let with_user_data = {
        let a = kafka_protocol::messages::ConsumerProtocolAssignment::default()
            .with_user_data(Some(Bytes::from_static(b"state")));
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        a.encode(&mut buf, 0).expect("encodes");
        buf.freeze()
    };
    let custom = Group::adopt(
        "g",
        3,
        vec![AdoptedMember {
            id: "a".into(),
            instance_id: None,
            client_id: "a".into(),
            client_host: "/127.0.0.1".into(),
            protocols: vec![("mine".into(), subscription(&[]))],
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            assignment: with_user_data,
            generation: 3,
        }],
        Duration::ZERO,
        now,
    );
    let err = ConsumerGroup::from_classic(&custom, &topics, now).expect_err("refused");
    assert!(err.contains("custom assignor"), "{err}");
    assert!(err.contains("group g"), "{err}");
    // A group of another protocol type (Kafka Connect workers) is not a consumer group.
    let mut connect = classic_group(now);
    connect.protocol_type = Some("connect".into());
    let err = ConsumerGroup::from_classic(&connect, &topics, now).expect_err("refused");
    assert!(
        err.contains("does not use the consumer embedded protocol"),
        "{err}"
    );
}

#[test]
fn members_handed_back_to_a_classic_group_keep_their_generation_until_it_rebalances() {
    let now = Instant::now();
    let member = |id: &str, generation: i32| AdoptedMember {
        id: id.into(),
        // Static: they stay members through the rebalance they do not rejoin.
        instance_id: Some(format!("{id}-instance")),
        client_id: id.into(),
        client_host: "/127.0.0.1".into(),
        protocols: vec![("range".into(), subscription(&[]))],
        session_timeout: Duration::from_secs(45),
        rebalance_timeout: Duration::from_secs(60),
        assignment: assignment_bytes(&[]),
        generation,
    };
    let mut g = Group::adopt(
        "g",
        9,
        vec![member("a", 5), member("b", 3)],
        Duration::ZERO,
        now,
    );
    assert_eq!(g.generation, 5, "the newest member epoch");
    // b's older epoch is still its generation while the group rebalances.
    assert_eq!(g.heartbeat("b", None, 3, now), codes::REBALANCE_IN_PROGRESS);
    assert_eq!(g.check_commit("b", None, 3, now), Ok(()));
    assert_eq!(g.heartbeat("b", None, 4, now), codes::ILLEGAL_GENERATION);
    assert_eq!(g.heartbeat("a", None, 3, now), codes::ILLEGAL_GENERATION);
    // Once the rebalance completed (its deadline passed; both heartbeat meanwhile), only the
    // new generation is.
    let later = now + Duration::from_secs(40);
    assert_eq!(
        g.heartbeat("a", None, 5, later),
        codes::REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        g.heartbeat("b", None, 3, later),
        codes::REBALANCE_IN_PROGRESS
    );
    g.tick(now + Duration::from_secs(61));
    assert_eq!(g.generation, 6);
    assert_eq!(
        g.heartbeat("b", None, 3, now + Duration::from_secs(62)),
        codes::ILLEGAL_GENERATION
    );
}
