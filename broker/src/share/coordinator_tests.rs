use super::*;
use crate::share::partition::ACK_ACCEPT;

const TOPIC: Uuid = Uuid::from_u128(7);

fn limits(_: Uuid) -> Limits {
    ShareSettings::default().limits()
}

fn resolve(topics: &[String]) -> Vec<AssignedTopic> {
    topics
        .iter()
        .filter(|t| t.as_str() == "q")
        .map(|_| AssignedTopic {
            id: TOPIC,
            partitions: vec![0, 1],
        })
        .collect()
}

/// A new share partition starts at offset 0 (this broker has the partition).
fn at_zero(_: Uuid, _: i32) -> Option<i64> {
    Some(0)
}

fn join(c: &ShareCoordinator, member: &str, now: i64) -> HeartbeatReply {
    join_starting(c, member, now, &at_zero)
}

/// A member joins subscribed to `q`; `start_of` gives where new share partitions start.
fn join_starting(
    c: &ShareCoordinator,
    member: &str,
    now: i64,
    start_of: &dyn Fn(Uuid, i32) -> Option<i64>,
) -> HeartbeatReply {
    c.heartbeat(
        "g",
        member,
        0,
        Some(vec!["q".to_string()]),
        ("client", "/127.0.0.1"),
        now,
        &limits,
        &resolve,
        start_of,
    )
}

#[test]
fn every_member_is_given_every_partition_of_its_topics() {
    let c = ShareCoordinator::default();
    let a = join(&c, "a", 0);
    let b = join(&c, "b", 0);
    assert_eq!(a.error, 0);
    assert_eq!(a.assignment, Some(vec![(TOPIC, vec![0, 1])]));
    assert_eq!(b.assignment, a.assignment);
    // A plain heartbeat at the member's epoch: no new assignment to send.
    let again = c.heartbeat(
        "g",
        "a",
        a.member_epoch,
        None,
        ("c", "h"),
        1,
        &limits,
        &resolve,
        &at_zero,
    );
    assert_eq!((again.error, again.assignment), (0, None));
    let stale = c.heartbeat(
        "g",
        "a",
        99,
        None,
        ("c", "h"),
        1,
        &limits,
        &resolve,
        &at_zero,
    );
    assert_eq!(stale.error, codes::FENCED_MEMBER_EPOCH);
    let unknown = c.heartbeat(
        "g",
        "x",
        3,
        None,
        ("c", "h"),
        1,
        &limits,
        &resolve,
        &at_zero,
    );
    assert_eq!(unknown.error, codes::UNKNOWN_MEMBER_ID);
}

#[test]
fn share_session_epochs_follow_kip_932() {
    let c = ShareCoordinator::default();
    join(&c, "a", 0);
    let p = [(TOPIC, 0)];
    assert_eq!(
        c.session("g", "a", 1, true, &p, &[]),
        Err(codes::SHARE_SESSION_NOT_FOUND)
    );
    assert_eq!(
        c.session("g", "a", 0, false, &p, &[]),
        Err(codes::INVALID_SHARE_SESSION_EPOCH)
    );
    assert_eq!(
        c.session("g", "nobody", 0, true, &p, &[]),
        Err(codes::UNKNOWN_MEMBER_ID)
    );
    let s = c.session("g", "a", 0, true, &p, &[]).expect("open");
    assert_eq!(s.partitions, vec![(TOPIC, 0)]);
    assert!(c.session("g", "a", 1, true, &[], &[]).is_ok());
    assert_eq!(
        c.session("g", "a", 1, true, &[], &[]),
        Err(codes::INVALID_SHARE_SESSION_EPOCH)
    );
    let s = c.session("g", "a", 2, true, &[], &p).expect("forget");
    assert!(s.partitions.is_empty());
    assert!(
        c.session("g", "a", -1, false, &[], &[])
            .expect("close")
            .closing
    );
}

#[test]
fn a_member_that_leaves_or_times_out_gives_its_records_back() {
    let c = ShareCoordinator::default();
    join(&c, "a", 0);
    join(&c, "b", 0);
    let l = limits(TOPIC);
    let key = (TOPIC, 0);
    assert_eq!(c.fetch_offset("g", key, (0, 10), &|| 10, 0, &l), Some(0));
    let got = c.acquire("g", "a", key, (0, 10), 4, 0, &l);
    assert_eq!(got.len(), 1);
    assert_eq!(
        c.acknowledge("g", "a", key, (0, 1), &[ACK_ACCEPT], false, 0, &l),
        0
    );
    // `a` leaves: 2..=3 are offered again, to `b`, with delivery count 2.
    let left = c.heartbeat(
        "g",
        "a",
        -1,
        None,
        ("c", "h"),
        1,
        &limits,
        &resolve,
        &at_zero,
    );
    assert_eq!(left.member_epoch, -1);
    assert_eq!(c.fetch_offset("g", key, (0, 10), &|| 10, 1, &l), Some(2));
    let got = c.acquire("g", "b", key, (2, 10), 2, 1, &l);
    assert_eq!(got[0].delivery_count, 2);
    // `b` is not heard from for the session timeout: removed, its records released.
    let timeout = ShareSettings::default().session_timeout_ms;
    c.tick(timeout + 10, &limits);
    let g = c.group("g").expect("group");
    assert!(g.members.is_empty());
    assert_eq!((g.acknowledged, g.redelivered), (2, 2));
    assert_eq!(c.delete_group("g"), codes::NONE);
}

#[test]
fn a_new_share_partition_starts_at_the_log_end_or_with_earliest_at_the_log_start() {
    let c = ShareCoordinator::default();
    // A member of a group on a topic whose partitions the heartbeat could not place (this
    // broker does not lead them): the first fetch creates the share partition.
    join_starting(&c, "a", 0, &|_, _| None);
    let l = ShareSettings::default().limits();
    assert_eq!(
        c.fetch_offset("g", (TOPIC, 0), (5, 40), &|| 40, 0, &l),
        None,
        "latest: nothing before the log end is handed out"
    );
    assert_eq!(
        c.fetch_offset("g", (TOPIC, 1), (5, 40), &|| 5, 0, &l),
        Some(5),
        "earliest: from the log start"
    );
    // A start outside the log (a time lookup racing retention) is brought inside it.
    c.adopt("g", (TOPIC, 1), 1, None, &l);
    assert_eq!(
        c.fetch_offset("g", (TOPIC, 1), (5, 40), &|| 2, 0, &l),
        Some(5)
    );
    c.adopt("g", (TOPIC, 1), 2, None, &l);
    assert_eq!(
        c.fetch_offset("g", (TOPIC, 1), (5, 40), &|| 60, 0, &l),
        None
    );
    assert_eq!(
        c.fetch_offset("g", (TOPIC, 1), (5, 41), &|| 60, 0, &l),
        Some(40),
        "started at the log end it had then"
    );
}

#[test]
fn a_leader_that_does_not_coordinate_the_group_serves_any_share_session() {
    let c = ShareCoordinator::default();
    let l = limits(TOPIC);
    let key = (TOPIC, 0);
    let p = [key];
    // No member is known here: the coordinator is another broker.
    assert_eq!(
        c.admit("g", "m", 0, true, (&p, &[]), true, 0),
        Err(codes::UNKNOWN_MEMBER_ID)
    );
    c.adopt("g", key, 4, None, &l);
    assert_eq!(c.owned_epoch("g", key), Some(4));
    let s = c
        .admit("g", "m", 0, true, (&p, &[]), false, 0)
        .expect("a session for any member id");
    assert_eq!(s.partitions, vec![key]);
    // Started here at the log end (latest): nothing to hand out yet.
    assert_eq!(c.fetch_offset("g", key, (0, 10), &|| 10, 0, &l), None);
    c.adopt("g", key, 5, None, &l);
    assert_eq!(c.fetch_offset("g", key, (0, 10), &|| 0, 0, &l), Some(0));
    let got = c.acquire("g", "m", key, (0, 10), 5, 0, &l);
    assert_eq!(got.iter().map(|a| a.last - a.first + 1).sum::<i64>(), 5);
    // A session idle for the session timeout goes, and what it held comes back.
    let idle = ShareSettings::default().session_timeout_ms + 1;
    c.tick(idle, &limits);
    assert_eq!(
        c.admit("g", "m", 1, true, (&[], &[]), false, idle),
        Err(codes::SHARE_SESSION_NOT_FOUND)
    );
    assert_eq!(c.fetch_offset("g", key, (0, 10), &|| 10, idle, &l), Some(0));
}

#[test]
fn a_share_partition_taken_up_again_resumes_from_its_persisted_state() {
    let c = ShareCoordinator::default();
    join(&c, "a", 0);
    let l = limits(TOPIC);
    let key = (TOPIC, 0);
    assert_eq!(c.fetch_offset("g", key, (0, 10), &|| 10, 0, &l), Some(0));
    c.acquire("g", "a", key, (0, 10), 10, 0, &l);
    assert_eq!(
        c.acknowledge("g", "a", key, (0, 3), &[ACK_ACCEPT], false, 0, &l),
        codes::NONE
    );
    let persisted = c.snapshot()["g"][&key].clone();
    // Another leader took over and moved on; this broker's memory is stale.
    c.acknowledge("g", "a", key, (4, 9), &[ACK_ACCEPT], false, 0, &l);
    c.take_dirty();
    c.adopt("g", key, 7, Some(persisted), &l);
    assert_eq!(c.owned_epoch("g", key), Some(7));
    assert!(c.take_dirty().is_empty(), "taking up is not a change");
    // The accepted records stay done; the ones held under the old leader come back.
    assert_eq!(c.fetch_offset("g", key, (0, 10), &|| 10, 1, &l), Some(4));
    let again = c.acquire("g", "a", key, (4, 10), 10, 1, &l);
    assert_eq!(
        again.first().map(|a| (a.first, a.delivery_count)),
        Some((4, 2))
    );
}

#[test]
fn a_start_is_worked_out_only_for_share_partitions_the_group_has_not_started() {
    let c = ShareCoordinator::default();
    assert_eq!(
        c.unstarted("g", &[(TOPIC, 0), (TOPIC, 1)]),
        vec![(TOPIC, 0), (TOPIC, 1)],
        "a group the coordinator does not have has started nothing"
    );
    // The heartbeat starts partition 0 only (the handler knew no start for partition 1).
    join_starting(&c, "a", 0, &|_, p| (p == 0).then_some(3));
    assert_eq!(
        c.unstarted("g", &[(TOPIC, 0), (TOPIC, 1)]),
        vec![(TOPIC, 1)]
    );
    let l = ShareSettings::default().limits();
    let asked = std::cell::Cell::new(0);
    let start = || {
        asked.set(asked.get() + 1);
        7
    };
    assert_eq!(
        c.fetch_offset("g", (TOPIC, 0), (0, 10), &start, 0, &l),
        Some(3)
    );
    assert_eq!(asked.get(), 0, "a started partition keeps its start");
    assert_eq!(
        c.fetch_offset("g", (TOPIC, 1), (0, 10), &start, 0, &l),
        Some(7)
    );
    assert_eq!(asked.get(), 1, "asked once, for the new partition");
    assert_eq!(
        c.fetch_offset("g", (TOPIC, 1), (0, 10), &start, 0, &l),
        Some(7)
    );
    assert_eq!(asked.get(), 1);
    assert!(c.unstarted("g", &[(TOPIC, 0), (TOPIC, 1)]).is_empty());
}
