//! The group state machine driven directly: `now` chosen by each test, effects inspected.

#![allow(clippy::unwrap_used)]

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn limits(initial_delay_ms: u64) -> Limits {
    Limits {
        min_session_timeout: Duration::from_millis(6_000),
        max_session_timeout: Duration::from_millis(300_000),
        initial_rebalance_delay: Duration::from_millis(initial_delay_ms),
    }
}

fn args(member_id: &str, protocols: &[&str]) -> JoinArgs {
    JoinArgs {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta:{p}"))))
            .collect(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        require_known_member_id: false,
    }
}

fn joins(fx: &[Effect]) -> Vec<&JoinResult> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Join(r) => Some(r),
            Effect::Sync { .. } => None,
        })
        .collect()
}

fn syncs(fx: &[Effect]) -> Vec<(&str, &SyncResult)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Sync { member_id, result } => Some((member_id.as_str(), result)),
            Effect::Join(_) => None,
        })
        .collect()
}

/// A group with members `ids` (joined in that order, no initial delay), Stable, with each
/// member assigned its own id as bytes.
fn stable_group(ids: &[&str], now: Instant) -> Group {
    let l = limits(0);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    for id in ids {
        let (step, _) = g.join(args("", &["range"]), id.to_string(), &l, now);
        assert!(matches!(step, JoinStep::Wait { .. }));
    }
    // Later joiners made the group wait for the first one to rejoin; let them all rejoin.
    let mut fx = Vec::new();
    if g.state == GroupState::PreparingRebalance {
        for id in ids {
            let (_, f) = g.join(args(id, &["range"]), String::new(), &l, now);
            fx.extend(f);
        }
    }
    assert_eq!(g.state, GroupState::CompletingRebalance);
    let leader = g.leader.clone().unwrap();
    let assignments = ids
        .iter()
        .map(|id| (id.to_string(), Bytes::from(id.to_string())))
        .collect();
    let (_, fx) = g.sync(&leader, None, g.generation, None, None, assignments, now);
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(syncs(&fx).len(), 1);
    g
}

#[test]
fn first_member_waits_for_the_initial_delay_and_becomes_leader() {
    let now = Instant::now();
    let l = limits(3_000);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    let (step, fx) = g.join(args("", &["range"]), "m1".into(), &l, now);
    assert_eq!(
        step,
        JoinStep::Wait {
            member_id: "m1".into()
        }
    );
    assert!(fx.is_empty());
    assert_eq!(g.state, GroupState::PreparingRebalance);
    // Nothing before the delay...
    assert!(g.tick(now + Duration::from_millis(2_999)).is_empty());
    assert_eq!(g.next_deadline(), Some(now + Duration::from_millis(3_000)));
    // ...then the join completes with m1 as leader of generation 1.
    let fx = g.tick(now + Duration::from_millis(3_000));
    let j = joins(&fx);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].error, codes::NONE);
    assert_eq!(j[0].generation, 1);
    assert_eq!(j[0].leader, "m1");
    assert_eq!(j[0].protocol_name.as_deref(), Some("range"));
    assert_eq!(j[0].protocol_type.as_deref(), Some("consumer"));
    assert_eq!(j[0].members.len(), 1);
    assert_eq!(j[0].members[0].metadata, Bytes::from("meta:range"));
    assert_eq!(g.state, GroupState::CompletingRebalance);
}

#[test]
fn initial_delay_is_extended_while_members_keep_arriving() {
    let now = Instant::now();
    let l = limits(3_000);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    g.join(args("", &["range"]), "m1".into(), &l, now);
    g.join(
        args("", &["range"]),
        "m2".into(),
        &l,
        now + Duration::from_millis(2_000),
    );
    // m2 arrived during the first delay: another round.
    assert!(g.tick(now + Duration::from_millis(3_000)).is_empty());
    let fx = g.tick(now + Duration::from_millis(6_000));
    let j = joins(&fx);
    assert_eq!(j.len(), 2);
    assert!(j.iter().all(|r| r.generation == 1 && r.leader == "m1"));
    let leader = j.iter().find(|r| r.member_id == "m1").unwrap();
    assert_eq!(leader.members.len(), 2);
    let follower = j.iter().find(|r| r.member_id == "m2").unwrap();
    assert!(follower.members.is_empty());
}

#[test]
fn v4_join_without_member_id_gets_member_id_required() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    let mut a = args("", &["range"]);
    a.require_known_member_id = true;
    let (step, _) = g.join(a.clone(), "m1".into(), &l, now);
    assert_eq!(
        step,
        JoinStep::Reply(JoinResult::error(codes::MEMBER_ID_REQUIRED, "m1"))
    );
    assert!(g.has_pending("m1"));
    assert_eq!(g.state, GroupState::Empty);
    // Rejoining with the id completes at once (no initial delay configured).
    a.member_id = "m1".into();
    let (step, fx) = g.join(a, "unused".into(), &l, now);
    assert_eq!(
        step,
        JoinStep::Wait {
            member_id: "m1".into()
        }
    );
    assert_eq!(joins(&fx)[0].generation, 1);
    assert!(!g.has_pending("m1"));
}

#[test]
fn pending_member_that_never_returns_expires() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    let mut a = args("", &["range"]);
    a.require_known_member_id = true;
    g.join(a.clone(), "m1".into(), &l, now);
    g.tick(now + Duration::from_millis(SESSION as u64));
    assert!(!g.has_pending("m1"));
    a.member_id = "m1".into();
    let (step, _) = g.join(a, String::new(), &l, now);
    assert_eq!(
        step,
        JoinStep::Reply(JoinResult::error(codes::UNKNOWN_MEMBER_ID, "m1"))
    );
}

#[test]
fn session_timeout_outside_limits_is_refused() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    for bad in [5_999, 300_001, -1] {
        let mut a = args("", &["range"]);
        a.session_timeout_ms = bad;
        let (step, _) = g.join(a, "m".into(), &l, now);
        assert_eq!(
            step,
            JoinStep::Reply(JoinResult::error(codes::INVALID_SESSION_TIMEOUT, ""))
        );
    }
    assert!(g.is_empty());
}

#[test]
fn protocol_is_the_common_one_most_members_prefer() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    g.join(
        args("", &["range", "roundrobin", "sticky"]),
        "a".into(),
        &l,
        now,
    );
    g.join(args("", &["sticky", "roundrobin"]), "b".into(), &l, now);
    g.join(args("", &["roundrobin", "sticky"]), "c".into(), &l, now);
    // a rejoins (its first join was answered when it was alone)
    let (_, fx) = g.join(
        args("a", &["range", "roundrobin", "sticky"]),
        String::new(),
        &l,
        now,
    );
    let j = joins(&fx);
    assert_eq!(j.len(), 3);
    // Common: roundrobin, sticky. Votes: a→roundrobin, b→sticky, c→roundrobin.
    assert_eq!(j[0].protocol_name.as_deref(), Some("roundrobin"));
    let leader = j.iter().find(|r| r.member_id == r.leader).unwrap();
    let b = leader.members.iter().find(|m| m.member_id == "b").unwrap();
    assert_eq!(b.metadata, Bytes::from("meta:roundrobin"));
}

#[test]
fn member_without_a_common_protocol_is_refused() {
    let now = Instant::now();
    let g0 = stable_group(&["a"], now);
    let mut g = g0.clone();
    let (step, _) = g.join(args("", &["sticky"]), "b".into(), &limits(0), now);
    assert_eq!(
        step,
        JoinStep::Reply(JoinResult::error(codes::INCONSISTENT_GROUP_PROTOCOL, ""))
    );
    let mut other_type = args("", &["range"]);
    other_type.protocol_type = "connect".into();
    let (step, _) = g.join(other_type, "b".into(), &limits(0), now);
    assert_eq!(
        step,
        JoinStep::Reply(JoinResult::error(codes::INCONSISTENT_GROUP_PROTOCOL, ""))
    );
}

#[test]
fn sole_member_may_change_its_protocols() {
    let now = Instant::now();
    let mut g = stable_group(&["a"], now);
    let (step, fx) = g.join(args("a", &["sticky"]), String::new(), &limits(0), now);
    assert_eq!(
        step,
        JoinStep::Wait {
            member_id: "a".into()
        }
    );
    assert_eq!(joins(&fx)[0].protocol_name.as_deref(), Some("sticky"));
}

#[test]
fn follower_sync_waits_for_the_leader_assignment() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    g.join(args("", &["range"]), "a".into(), &l, now);
    g.join(args("", &["range"]), "b".into(), &l, now);
    let (_, fx) = g.join(args("a", &["range"]), String::new(), &l, now);
    assert_eq!(joins(&fx).len(), 2);
    let generation = g.generation;
    let (step, fx) = g.sync("b", None, generation, None, None, vec![], now);
    assert_eq!(step, SyncStep::Wait);
    assert!(fx.is_empty());
    let assignments = vec![
        ("a".to_string(), Bytes::from_static(b"A")),
        ("b".to_string(), Bytes::from_static(b"B")),
    ];
    let (step, fx) = g.sync(
        "a",
        None,
        generation,
        Some("consumer"),
        Some("range"),
        assignments,
        now,
    );
    assert_eq!(step, SyncStep::Wait);
    let s = syncs(&fx);
    assert_eq!(s.len(), 2);
    let b = s.iter().find(|(m, _)| *m == "b").unwrap().1;
    assert_eq!(b.assignment, Bytes::from_static(b"B"));
    assert_eq!(b.protocol_name.as_deref(), Some("range"));
    assert_eq!(g.state, GroupState::Stable);
    // A late SyncGroup in Stable gets the stored assignment at once.
    let (step, _) = g.sync("a", None, generation, None, None, vec![], now);
    match step {
        SyncStep::Reply(r) => assert_eq!(r.assignment, Bytes::from_static(b"A")),
        SyncStep::Wait => panic!("stable group must answer at once"),
    }
}

#[test]
fn sync_errors() {
    let now = Instant::now();
    let mut g = stable_group(&["a"], now);
    let gen = g.generation;
    let err = |step: SyncStep| match step {
        SyncStep::Reply(r) => r.error,
        SyncStep::Wait => 0,
    };
    assert_eq!(
        err(g.sync("zz", None, gen, None, None, vec![], now).0),
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        err(g.sync("a", None, gen + 1, None, None, vec![], now).0),
        codes::ILLEGAL_GENERATION
    );
    assert_eq!(
        err(g
            .sync(
                "a",
                None,
                gen,
                Some("consumer"),
                Some("sticky"),
                vec![],
                now
            )
            .0),
        codes::INCONSISTENT_GROUP_PROTOCOL
    );
}

#[test]
fn heartbeat_errors_follow_the_group_state() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = stable_group(&["a", "b"], now);
    let gen = g.generation;
    assert_eq!(g.heartbeat("a", None, gen, now), codes::NONE);
    assert_eq!(g.heartbeat("zz", None, gen, now), codes::UNKNOWN_MEMBER_ID);
    assert_eq!(
        g.heartbeat("a", None, gen - 1, now),
        codes::ILLEGAL_GENERATION
    );
    // A new member triggers a rebalance: the others learn it from their heartbeat.
    g.join(args("", &["range"]), "c".into(), &l, now);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat("a", None, gen, now),
        codes::REBALANCE_IN_PROGRESS
    );
}

#[test]
fn rebalance_timeout_drops_members_that_did_not_rejoin() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = stable_group(&["a", "b"], now);
    let gen = g.generation;
    // a rejoins (e.g. subscription change) but b never does; b keeps heartbeating.
    let (step, _) = g.join(args("a", &["range", "roundrobin"]), String::new(), &l, now);
    assert!(matches!(step, JoinStep::Wait { .. }));
    let half = now + Duration::from_millis(5_000);
    assert_eq!(
        g.heartbeat("b", None, gen, half),
        codes::REBALANCE_IN_PROGRESS
    );
    assert!(g.tick(half).is_empty());
    let fx = g.tick(now + Duration::from_millis(REBALANCE as u64));
    let j = joins(&fx);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].member_id, "a");
    assert_eq!(j[0].generation, gen + 1);
    assert_eq!(j[0].members.len(), 1);
    assert!(g.member("b").is_none());
}

#[test]
fn expired_member_is_removed_and_the_rest_rebalance() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = stable_group(&["a", "b"], now);
    let gen = g.generation;
    // a heartbeats, b goes silent.
    let t1 = now + Duration::from_millis(6_000);
    assert_eq!(g.heartbeat("a", None, gen, t1), codes::NONE);
    assert_eq!(
        g.next_deadline(),
        Some(now + Duration::from_millis(SESSION as u64))
    );
    let t2 = now + Duration::from_millis(SESSION as u64);
    let fx = g.tick(t2);
    assert!(fx.is_empty());
    assert!(g.member("b").is_none());
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat("a", None, gen, t2),
        codes::REBALANCE_IN_PROGRESS
    );
    let (_, fx) = g.join(args("a", &["range"]), String::new(), &l, t2);
    let j = joins(&fx);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].generation, gen + 1);
    assert_eq!(j[0].leader, "a");
}

#[test]
fn leader_leaving_moves_leadership_and_empties_the_group_last() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = stable_group(&["a", "b"], now);
    let gen = g.generation;
    assert_eq!(g.leader.as_deref(), Some("a"));
    let (code, fx) = g.leave("a", None, now);
    assert_eq!(code, codes::NONE);
    assert!(fx.is_empty());
    let (_, fx) = g.join(args("b", &["range"]), String::new(), &l, now);
    let j = joins(&fx);
    assert_eq!(j[0].leader, "b");
    assert_eq!(j[0].generation, gen + 1);
    assert_eq!(g.leave("a", None, now).0, codes::UNKNOWN_MEMBER_ID);
    let (code, _) = g.leave("b", None, now);
    assert_eq!(code, codes::NONE);
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.generation, gen + 2);
    assert!(g.protocol_name.is_none());
    assert_eq!(g.protocol_type.as_deref(), Some("consumer"));
}

#[test]
fn rebalance_during_completing_fails_waiting_syncs() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    g.join(args("", &["range"]), "a".into(), &l, now);
    g.join(args("", &["range"]), "b".into(), &l, now);
    g.join(args("a", &["range"]), String::new(), &l, now);
    let gen = g.generation;
    let (step, _) = g.sync("b", None, gen, None, None, vec![], now);
    assert_eq!(step, SyncStep::Wait);
    let (_, fx) = g.leave("a", None, now);
    let s = syncs(&fx);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, "b");
    assert_eq!(s[0].1.error, codes::REBALANCE_IN_PROGRESS);
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn commit_checks() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = stable_group(&["a"], now);
    let gen = g.generation;
    assert_eq!(g.check_commit("a", None, gen, now), Ok(()));
    assert_eq!(
        g.check_commit("zz", None, gen, now),
        Err(codes::UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        g.check_commit("a", None, gen + 1, now),
        Err(codes::ILLEGAL_GENERATION)
    );
    assert_eq!(
        g.check_commit("", None, -1, now),
        Err(codes::UNKNOWN_MEMBER_ID)
    );
    // Allowed while preparing a rebalance (commit on revoke), refused while completing.
    g.join(args("", &["range"]), "b".into(), &l, now);
    assert_eq!(g.check_commit("a", None, gen, now), Ok(()));
    g.join(args("a", &["range"]), String::new(), &l, now);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(
        g.check_commit("a", None, g.generation, now),
        Err(codes::REBALANCE_IN_PROGRESS)
    );
    // Standalone commits only when nobody uses the group.
    let mut empty = Group::new("e", Duration::ZERO);
    assert_eq!(empty.check_commit("", None, -1, now), Ok(()));
}

#[test]
fn static_member_restart_keeps_its_assignment_without_rebalance() {
    let now = Instant::now();
    let l = limits(0);
    let mut g = Group::new("g", l.initial_rebalance_delay);
    let mut a = args("", &["range"]);
    a.instance_id = Some("host-a".into());
    let mut b = args("", &["range"]);
    b.instance_id = Some("host-b".into());
    g.join(a.clone(), "a1".into(), &l, now);
    g.join(b.clone(), "b1".into(), &l, now);
    let mut a_again = a.clone();
    a_again.member_id = "a1".into();
    g.join(a_again, String::new(), &l, now);
    let gen = g.generation;
    g.sync("b1", None, gen, None, None, vec![], now);
    let assignments = vec![
        ("a1".to_string(), Bytes::from_static(b"A")),
        ("b1".to_string(), Bytes::from_static(b"B")),
    ];
    g.sync("a1", None, gen, None, None, assignments, now);
    assert_eq!(g.state, GroupState::Stable);

    // host-b restarts: new incarnation, empty member id, same instance id.
    let (step, fx) = g.join(b, "b2".into(), &l, now);
    assert!(fx.is_empty());
    let JoinStep::Reply(r) = step else {
        panic!("static rejoin must answer at once")
    };
    assert_eq!(r.member_id, "b2");
    assert_eq!(r.generation, gen);
    assert_eq!(g.state, GroupState::Stable);
    let (step, _) = g.sync("b2", Some("host-b"), gen, None, None, vec![], now);
    let SyncStep::Reply(s) = step else {
        panic!("stable group must answer at once")
    };
    assert_eq!(s.assignment, Bytes::from_static(b"B"));
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat("b1", Some("host-b"), gen, now),
        codes::FENCED_INSTANCE_ID
    );
    assert_eq!(g.heartbeat("b2", Some("host-b"), gen, now), codes::NONE);
    // Leaving by instance id alone works.
    assert_eq!(g.leave("", Some("host-b"), now).0, codes::NONE);
    assert!(g.member("b2").is_none());
}

#[test]
fn a_stable_group_round_trips_through_its_membership_record() {
    let now = Instant::now();
    let g = stable_group(&["a", "b"], now);
    let m = g.membership(42).unwrap();
    assert_eq!((m.generation, m.state_timestamp_ms), (g.generation, 42));
    assert_eq!(m.protocol.as_deref(), Some("range"));
    assert_eq!(&m.members[1].subscription[..], b"meta:range");
    let later = now + Duration::from_secs(100);
    let mut r = Group::restore("g", &m, Duration::ZERO, later);
    assert_eq!(r.state, GroupState::Stable);
    assert_eq!(
        (r.generation, r.leader.clone()),
        (g.generation, g.leader.clone())
    );
    assert_eq!(r.membership(42), Some(m.clone()), "restored as it was");
    // Sessions count from the restore, not from the last heartbeat the old coordinator saw.
    assert!(r.tick(later + Duration::from_millis(9_999)).is_empty());
    assert_eq!(r.heartbeat("a", None, g.generation, later), codes::NONE);
    assert_eq!(
        r.heartbeat("zz", None, g.generation, later),
        codes::UNKNOWN_MEMBER_ID
    );
    // Not stable, or no members: no record.
    let (_, _) = r.leave("a", None, later);
    assert_eq!(r.membership(42), None);
    // A record whose leader is not among its members gets the oldest member as leader.
    let mut odd = m.clone();
    odd.leader = Some("gone".into());
    let r = Group::restore("g", &odd, Duration::ZERO, later);
    assert_eq!(r.leader.as_deref(), Some("a"));
    odd.members.clear();
    let r = Group::restore("g", &odd, Duration::ZERO, later);
    assert_eq!((r.state, r.generation), (GroupState::Empty, g.generation));
}
