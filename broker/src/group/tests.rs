//! Coordinator tests: requests as the dispatcher passes them (decoded at a version), timers
//! under a paused tokio clock, the partitions of `__consumer_offsets` as real logs in a
//! temporary directory, led by this coordinator (a one-broker cluster, replication factor 1)
//! unless a test says otherwise.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio_util::sync::CancellationToken;

use super::codes;
use super::*;

const INITIAL_DELAY_MS: i32 = 3_000;
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Partitions of `__consumer_offsets` in these tests (several, so groups land in different
/// ones).
const OFFSETS_PARTITIONS: i32 = 3;

fn config() -> GroupConfig {
    GroupConfig {
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 300_000,
        initial_rebalance_delay_ms: INITIAL_DELAY_MS,
        ..GroupConfig::default()
    }
}

/// The topics the coordinator sees: the offsets topic, and either any topic (`only_t` off) or
/// just `t` (2 partitions, id 7); deleted topics are gone.
#[derive(Default)]
struct Topics {
    only_t: bool,
    deleted: Mutex<BTreeSet<String>>,
    /// In-sync replicas below min.insync.replicas for the offsets topic.
    short: Mutex<bool>,
    /// Group config overrides by group.
    group_configs: BTreeMap<String, BTreeMap<String, String>>,
}

impl TopicDirectory for Topics {
    fn partitions(&self, topic: &str) -> Option<i32> {
        if topic == OFFSETS_TOPIC {
            return Some(OFFSETS_PARTITIONS);
        }
        if self.deleted.lock().unwrap().contains(topic) {
            return None;
        }
        match self.only_t {
            true => (topic == "t").then_some(2),
            false => Some(i32::MAX),
        }
    }
    fn topic_name(&self, id: Uuid) -> Option<String> {
        (self.only_t && id == Uuid::from_u128(7)).then(|| "t".to_string())
    }
    fn topic_id(&self, name: &str) -> Option<Uuid> {
        (self.only_t && name == "t").then_some(Uuid::from_u128(7))
    }
    fn in_sync_shortfall(&self, _topic: &str, partition: i32) -> Option<String> {
        (*self.short.lock().unwrap()).then(|| format!("partition {partition}: 1 of 2 in sync"))
    }
    fn group_configs(&self, group: &str) -> BTreeMap<String, String> {
        self.group_configs.get(group).cloned().unwrap_or_default()
    }
}

/// The log of offsets partition `p` under `dir` (reopened as a restarted broker does), led at
/// `epoch`.
fn offsets_log(dir: &std::path::Path, p: i32, epoch: i32) -> Arc<crate::log::PartitionLog> {
    let log = crate::log::PartitionLog::open(
        dir.join(format!("{OFFSETS_TOPIC}-{p}")),
        crate::log::LogConfig::default(),
    )
    .unwrap();
    log.become_leader(epoch).unwrap();
    Arc::new(log)
}

/// Waits until no partition led here is loading (loads run on blocking threads).
async fn loaded(c: &GroupCoordinator) {
    while c.loading() {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A coordinator over `topics` leading `partitions` of the offsets topic stored under `dir`
/// (a broker (re)starting on that volume), loaded.
async fn start_leading(
    dir: &std::path::Path,
    topics: Arc<Topics>,
    partitions: &[i32],
) -> (Arc<GroupCoordinator>, CancellationToken) {
    let c = Arc::new(GroupCoordinator::new(config()).unwrap());
    c.set_topic_directory(topics);
    for p in partitions {
        c.became_leader(*p, 1, offsets_log(dir, *p, 1));
    }
    loaded(&c).await;
    let shutdown = CancellationToken::new();
    c.spawn_expiry(shutdown.clone());
    (c, shutdown)
}

/// A coordinator leading every offsets partition under `dir`, any topic known.
async fn start(dir: &std::path::Path) -> (Arc<GroupCoordinator>, CancellationToken) {
    start_leading(dir, Arc::default(), &[0, 1, 2]).await
}

/// What the dispatcher would hand us: the request as the client encodes it at `version`,
/// decoded at `version` (fields the version lacks come back as defaults).
fn at_version<T: Encodable + Decodable>(req: T, version: i16) -> T {
    let mut buf = BytesMut::new();
    req.encode(&mut buf, version).unwrap();
    let mut bytes = buf.freeze();
    T::decode(&mut bytes, version).unwrap()
}

/// The server must be able to encode whatever we answer at the request's version.
fn encodes<T: Encodable>(resp: &T, version: i16) {
    let mut buf = BytesMut::new();
    if let Err(e) = resp.encode(&mut buf, version) {
        panic!("response does not encode at v{version}: {e}");
    }
}

fn join_req(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))])
}

fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assign: &[(&str, &str)],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation)
        .with_assignments(
            assign
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        )
}

fn heartbeat_req(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation)
}

fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(Some(s(&format!("m{offset}"))));
        match topics.iter_mut().find(|t| t.name.0.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(topics)
}

fn commit_codes(resp: &OffsetCommitResponse) -> Vec<i16> {
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// Offsets of `topic` from an OffsetFetch v1-7 answer.
fn fetched_v7(resp: &OffsetFetchResponse, topic: &str) -> Vec<(i32, i64, String)> {
    resp.topics
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    p.partition_index,
                    p.committed_offset,
                    p.metadata.as_deref().unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

/// A new member joins with JoinGroup v5: MEMBER_ID_REQUIRED, then the real join, which waits
/// for the rebalance; returns its id and the pending answer.
async fn join_new(
    c: &Arc<GroupCoordinator>,
    group: &str,
) -> (String, tokio::task::JoinHandle<JoinGroupResponse>) {
    let first = c.join_group(5, at_version(join_req(group, ""), 5)).await;
    assert_eq!(first.error_code, codes::MEMBER_ID_REQUIRED);
    let id = first.member_id.to_string();
    assert!(!id.is_empty());
    let c2 = Arc::clone(c);
    let req = at_version(join_req(group, &id), 5);
    let handle = tokio::spawn(async move { c2.join_group(5, req).await });
    // Let the join register before anything else happens.
    tokio::task::yield_now().await;
    (id, handle)
}

fn rejoin(
    c: &Arc<GroupCoordinator>,
    group: &str,
    id: &str,
) -> tokio::task::JoinHandle<JoinGroupResponse> {
    let c2 = Arc::clone(c);
    let req = at_version(join_req(group, id), 5);
    tokio::spawn(async move { c2.join_group(5, req).await })
}

/// `member`'s SyncGroup (v5) at `generation` without assignments, sent ahead so that it waits
/// for the leader's.
async fn sync_waiting(
    c: &Arc<GroupCoordinator>,
    group: &str,
    member: &str,
    generation: i32,
) -> tokio::task::JoinHandle<SyncGroupResponse> {
    let c2 = Arc::clone(c);
    let req = sync_req(group, member, generation, &[]);
    let handle = tokio::spawn(async move { c2.sync_group(5, req).await });
    tokio::task::yield_now().await;
    handle
}

/// Two new members in generation 1 of `group`, synced (the leader, returned first, assigns
/// "x" to itself and "y" to the other).
async fn stable_pair(c: &Arc<GroupCoordinator>, group: &str) -> (String, String) {
    let (a, ja) = join_new(c, group).await;
    let (b, jb) = join_new(c, group).await;
    ja.await.unwrap();
    jb.await.unwrap();
    let sb = sync_waiting(c, group, &b, 1).await;
    c.sync_group(5, sync_req(group, &a, 1, &[(&a, "x"), (&b, "y")]))
        .await;
    assert_eq!(sb.await.unwrap().error_code, 0);
    (a, b)
}

/// LeaveGroup v0-2: one member by id.
fn leave_req(group: &str, member: &str) -> LeaveGroupRequest {
    LeaveGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
}

/// OffsetFetch v1-7 of `partitions` of `topic`, or of every committed partition.
fn offset_fetch_req(group: &str, wanted: Option<(&str, Vec<i32>)>) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(wanted.map(|(topic, partitions)| {
            vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(partitions)]
        }))
}

fn group_names(r: &ListGroupsResponse) -> Vec<String> {
    r.groups.iter().map(|g| g.group_id.0.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn two_members_rebalance_when_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let t0 = tokio::time::Instant::now();

    let (a, ja) = join_new(&c, "g").await;
    let (b, jb) = join_new(&c, "g").await;
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    // The first rebalance of an empty group waited for the initial delay.
    assert!(t0.elapsed() >= Duration::from_millis(INITIAL_DELAY_MS as u64));
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!(ra.generation_id, 1);
    assert_eq!(rb.generation_id, 1);
    assert_eq!(ra.leader.as_str(), a);
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty());
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));

    // b syncs first and waits; the leader's assignment releases it.
    let sb = sync_waiting(&c, "g", &b, 1).await;
    let sa = c
        .sync_group(5, sync_req("g", &a, 1, &[(&a, "p0,p1"), (&b, "p2,p3")]))
        .await;
    let sb = sb.await.unwrap();
    assert_eq!(sa.error_code, 0);
    assert_eq!(&sa.assignment[..], b"p0,p1");
    assert_eq!(&sb.assignment[..], b"p2,p3");
    assert_eq!(sb.protocol_name.as_deref(), Some("range"));
    assert_eq!(sb.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(
        c.heartbeat(4, heartbeat_req("g", &a, 1)).await.error_code,
        0
    );

    // b leaves (LeaveGroup v3+: batched members).
    let leave = c
        .leave_group(
            3,
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&b))]),
        )
        .await;
    encodes(&leave, 3);
    assert_eq!(leave.error_code, 0);
    assert_eq!(leave.members.len(), 1);
    assert_eq!(leave.members[0].error_code, 0);

    // a learns about the rebalance from its heartbeat, rejoins, and is alone in generation 2.
    assert_eq!(
        c.heartbeat(4, heartbeat_req("g", &a, 1)).await.error_code,
        codes::REBALANCE_IN_PROGRESS
    );
    let r2 = rejoin(&c, "g", &a).await.unwrap();
    assert_eq!(r2.error_code, 0);
    assert_eq!(r2.generation_id, 2);
    assert_eq!(r2.leader.as_str(), a);
    assert_eq!(r2.members.len(), 1);
    let s2 = c
        .sync_group(5, sync_req("g", &a, 2, &[(&a, "p0,p1,p2,p3")]))
        .await;
    assert_eq!(&s2.assignment[..], b"p0,p1,p2,p3");
    assert_eq!(
        c.heartbeat(4, heartbeat_req("g", &a, 2)).await.error_code,
        0
    );
    assert_eq!(
        c.heartbeat(4, heartbeat_req("g", &b, 2)).await.error_code,
        codes::UNKNOWN_MEMBER_ID
    );

    let d = c
        .describe_groups(
            5,
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        )
        .await;
    encodes(&d, 5);
    let g = &d.groups[0];
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.protocol_data.as_str(), "range");
    assert_eq!(g.members.len(), 1);
    assert_eq!(&g.members[0].member_assignment[..], b"p0,p1,p2,p3");
    assert_eq!(g.authorized_operations, i32::MIN);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn member_that_stops_heartbeating_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let (a, b) = stable_pair(&c, "g").await;

    // a heartbeats every 3 s; b says nothing. Within a session timeout (plus a heartbeat
    // interval) a is told to rebalance.
    let started = tokio::time::Instant::now();
    let mut code = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        code = c.heartbeat(4, heartbeat_req("g", &a, 1)).await.error_code;
        if code != 0 {
            break;
        }
    }
    assert_eq!(code, codes::REBALANCE_IN_PROGRESS);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(SESSION_MS as u64),
        "{waited:?}"
    );
    assert!(
        waited <= Duration::from_millis(SESSION_MS as u64 + 3_000),
        "{waited:?}"
    );
    assert_eq!(
        c.heartbeat(4, heartbeat_req("g", &b, 1)).await.error_code,
        codes::UNKNOWN_MEMBER_ID
    );
    let r = rejoin(&c, "g", &a).await.unwrap();
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.members.len(), 1);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn join_completes_at_the_rebalance_timeout_without_the_silent_member() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let (a, b) = stable_pair(&c, "g").await;

    // a rejoins; b keeps heartbeating but never rejoins.
    let started = tokio::time::Instant::now();
    let ja = rejoin(&c, "g", &a);
    let c3 = Arc::clone(&c);
    let b2 = b.clone();
    let beats = tokio::spawn(async move {
        let mut codes_seen = Vec::new();
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(3_000)).await;
            codes_seen.push(c3.heartbeat(4, heartbeat_req("g", &b2, 1)).await.error_code);
        }
        codes_seen
    });
    let r = ja.await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(REBALANCE_MS as u64),
        "{waited:?}"
    );
    assert!(
        waited < Duration::from_millis(REBALANCE_MS as u64 + 1_000),
        "{waited:?}"
    );
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.members.len(), 1);
    let seen = beats.await.unwrap();
    assert!(seen.contains(&codes::REBALANCE_IN_PROGRESS));
    assert_eq!(seen.last(), Some(&codes::UNKNOWN_MEMBER_ID));
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn join_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let r = c.join_group(5, join_req("g", "nobody")).await;
    assert_eq!(r.error_code, codes::UNKNOWN_MEMBER_ID);
    let r = c.join_group(5, join_req("", "")).await;
    assert_eq!(r.error_code, codes::INVALID_GROUP_ID);
    let r = c
        .join_group(5, join_req("g", "").with_session_timeout_ms(1_000))
        .await;
    assert_eq!(r.error_code, codes::INVALID_SESSION_TIMEOUT);
    let r = c
        .join_group(5, join_req("g", "").with_session_timeout_ms(400_000))
        .await;
    assert_eq!(r.error_code, codes::INVALID_SESSION_TIMEOUT);
    let r = c
        .join_group(5, join_req("g", "").with_protocols(vec![]))
        .await;
    assert_eq!(r.error_code, codes::INCONSISTENT_GROUP_PROTOCOL);
    // Before v4 a new member is admitted at once, no MEMBER_ID_REQUIRED round trip.
    let r = c.join_group(3, at_version(join_req("old", ""), 3)).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1);
    assert!(!r.member_id.is_empty());
    encodes(&r, 3);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn every_response_encodes_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    for v in 0..=9 {
        let group = format!("join-v{v}");
        // An error answer and a successful one.
        let r = c
            .join_group(v, at_version(join_req(&group, "ghost"), v))
            .await;
        assert_eq!(r.error_code, codes::UNKNOWN_MEMBER_ID);
        encodes(&r, v);
        let mut r = c.join_group(v, at_version(join_req(&group, ""), v)).await;
        if v >= 4 {
            assert_eq!(r.error_code, codes::MEMBER_ID_REQUIRED, "v{v}");
            encodes(&r, v);
            let id = r.member_id.to_string();
            r = c.join_group(v, at_version(join_req(&group, &id), v)).await;
        }
        assert_eq!(r.error_code, 0, "v{v}");
        encodes(&r, v);
        let id = r.member_id.to_string();
        let gen = r.generation_id;
        for sv in 0..=5 {
            let req = sync_req(&group, &id, gen, &[(&id, "a")]);
            let req = if sv >= 5 {
                req.with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")))
            } else {
                req
            };
            let r = c.sync_group(sv, at_version(req, sv)).await;
            assert_eq!(r.error_code, 0, "sync v{sv}");
            assert_eq!(&r.assignment[..], b"a");
            encodes(&r, sv);
        }
        for hv in 0..=4 {
            let r = c
                .heartbeat(hv, at_version(heartbeat_req(&group, &id, gen), hv))
                .await;
            assert_eq!(r.error_code, 0);
            encodes(&r, hv);
        }
        for cv in 2..=9 {
            let r = c
                .offset_commit(
                    cv,
                    at_version(commit_req(&group, &id, gen, &[("t", 0, 5)]), cv),
                )
                .await;
            assert_eq!(commit_codes(&r), vec![0], "commit v{cv}");
            encodes(&r, cv);
        }
        for fv in 1..=7 {
            let req = offset_fetch_req(&group, Some(("t", vec![0, 1])));
            let r = c.offset_fetch(fv, at_version(req, fv)).await;
            encodes(&r, fv);
            assert_eq!(
                fetched_v7(&r, "t"),
                vec![(0, 5, "m5".to_string()), (1, -1, String::new())]
            );
        }
        for fv in 8..=9 {
            let req =
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_topics(None)]);
            let r = c.offset_fetch(fv, at_version(req, fv)).await;
            encodes(&r, fv);
            assert_eq!(r.groups.len(), 1);
            assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 5);
        }
        for lv in 0..=5 {
            let r = c
                .list_groups(lv, at_version(ListGroupsRequest::default(), lv))
                .await;
            encodes(&r, lv);
            let g = r
                .groups
                .iter()
                .find(|g| g.group_id.0.as_str() == group)
                .unwrap();
            assert_eq!(g.protocol_type.as_str(), "consumer");
            if lv >= 4 {
                assert_eq!(g.group_state.as_str(), "Stable");
            }
        }
        for dv in 0..=6 {
            let req = DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s(&group)), GroupId(s("no-such-group"))])
                .with_include_authorized_operations(dv >= 3);
            let r = c.describe_groups(dv, at_version(req, dv)).await;
            encodes(&r, dv);
            assert_eq!(r.groups[0].members.len(), 1);
            if dv >= 4 {
                assert_eq!(r.groups[0].members[0].group_instance_id, None);
            }
            assert_eq!(r.groups[1].group_state.as_str(), "Dead");
            let missing = if dv >= 6 {
                codes::GROUP_ID_NOT_FOUND
            } else {
                0
            };
            assert_eq!(r.groups[1].error_code, missing);
        }
        let leave = if v % 6 >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&id))])
        } else {
            leave_req(&group, &id)
        };
        let lv = v % 6;
        let r = c.leave_group(lv, at_version(leave, lv)).await;
        assert_eq!(r.error_code, 0);
        encodes(&r, lv);
        for dv in 0..=2 {
            let r = c
                .delete_groups(
                    dv,
                    at_version(
                        DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&group))]),
                        dv,
                    ),
                )
                .await;
            encodes(&r, dv);
            let expected = if dv == 0 {
                0
            } else {
                codes::GROUP_ID_NOT_FOUND
            };
            assert_eq!(r.results[0].error_code, expected, "delete v{dv}");
        }
    }
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn leave_group_errors_per_version() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let r = c.leave_group(1, leave_req("none", "x")).await;
    assert_eq!(r.error_code, codes::UNKNOWN_MEMBER_ID);
    let r = c
        .leave_group(
            4,
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("none")))
                .with_members(vec![
                    MemberIdentity::default().with_member_id(s("x")),
                    MemberIdentity::default()
                        .with_member_id(s(""))
                        .with_group_instance_id(Some(s("i"))),
                ]),
        )
        .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(
        r.members.iter().map(|m| m.error_code).collect::<Vec<_>>(),
        vec![codes::UNKNOWN_MEMBER_ID, codes::UNKNOWN_MEMBER_ID]
    );
    encodes(&r, 4);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn offsets_are_committed_fetched_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (c, shutdown) = start(dir.path()).await;
        // Standalone consumer: generation -1, no membership.
        let r = c
            .offset_commit(
                8,
                commit_req("solo", "", -1, &[("t", 0, 10), ("t", 1, 20), ("u", 0, 7)]),
            )
            .await;
        assert_eq!(commit_codes(&r), vec![0, 0, 0]);
        let r = c
            .offset_commit(8, commit_req("solo", "", -1, &[("t", 0, 11)]))
            .await;
        assert_eq!(commit_codes(&r), vec![0]);
        // Metadata over the limit is refused, the rest of the request still lands.
        let mut big = commit_req("solo", "", -1, &[("t", 2, 1), ("t", 3, 1)]);
        big.topics[0].partitions[0].committed_metadata = Some(s(&"x".repeat(5000)));
        let r = c.offset_commit(8, big).await;
        assert_eq!(commit_codes(&r), vec![codes::OFFSET_METADATA_TOO_LARGE, 0]);
        shutdown.cancel();
    }
    let (c, shutdown) = start(dir.path()).await;
    let r = c
        .offset_fetch(
            7,
            offset_fetch_req("solo", Some(("t", vec![0, 1, 2, 3, 9]))),
        )
        .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(
        fetched_v7(&r, "t"),
        vec![
            (0, 11, "m11".to_string()),
            (1, 20, "m20".to_string()),
            (2, -1, String::new()),
            (3, 1, "m1".to_string()),
            (9, -1, String::new()),
        ]
    );
    // All topics (null list), batched groups (v8+), an unknown group gives nothing.
    let r = c
        .offset_fetch(
            8,
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("solo")))
                    .with_topics(None),
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("nobody")))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0])])),
            ]),
        )
        .await;
    encodes(&r, 8);
    let solo = &r.groups[0];
    assert_eq!(solo.error_code, 0);
    let names: Vec<&str> = solo.topics.iter().map(|t| t.name.0.as_str()).collect();
    assert_eq!(names, vec!["t", "u"]);
    assert_eq!(solo.topics[0].partitions.len(), 3);
    assert_eq!(solo.topics[1].partitions[0].committed_offset, 7);
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, -1);
    let lag: Vec<CommittedOffset> = c.committed_offsets();
    assert_eq!(lag.len(), 4);
    assert!(lag.contains(&CommittedOffset {
        group: "solo".into(),
        topic: "u".into(),
        partition: 0,
        offset: 7
    }));
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn group_commits_are_checked_against_membership() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    // A group we do not know (e.g. after a restart): members must rejoin.
    let r = c
        .offset_commit(8, commit_req("g", "m", 3, &[("t", 0, 1)]))
        .await;
    assert_eq!(commit_codes(&r), vec![codes::ILLEGAL_GENERATION]);
    let r = c
        .offset_commit(9, commit_req("g", "m", 3, &[("t", 0, 1)]))
        .await;
    assert_eq!(commit_codes(&r), vec![codes::UNKNOWN_MEMBER_ID]);

    let (a, ja) = join_new(&c, "g").await;
    let r = ja.await.unwrap();
    let gen = r.generation_id;
    c.sync_group(3, sync_req("g", &a, gen, &[(&a, "x")])).await;
    let r = c
        .offset_commit(8, commit_req("g", &a, gen, &[("t", 0, 1)]))
        .await;
    assert_eq!(commit_codes(&r), vec![0]);
    let r = c
        .offset_commit(8, commit_req("g", &a, gen + 1, &[("t", 0, 2)]))
        .await;
    assert_eq!(commit_codes(&r), vec![codes::ILLEGAL_GENERATION]);
    let r = c
        .offset_commit(8, commit_req("g", "stranger", gen, &[("t", 0, 2)]))
        .await;
    assert_eq!(commit_codes(&r), vec![codes::UNKNOWN_MEMBER_ID]);
    // A standalone commit into a group with live members is refused.
    let r = c
        .offset_commit(8, commit_req("g", "", -1, &[("t", 0, 2)]))
        .await;
    assert_eq!(commit_codes(&r), vec![codes::UNKNOWN_MEMBER_ID]);
    let r = c.offset_fetch(5, offset_fetch_req("g", None)).await;
    assert_eq!(fetched_v7(&r, "t"), vec![(0, 1, "m1".to_string())]);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn commits_to_unknown_topics_are_refused_when_topics_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = leading_all_with_t(dir.path()).await;
    let r = c
        .offset_commit(
            8,
            commit_req("solo", "", -1, &[("t", 0, 1), ("t", 2, 1), ("nope", 0, 1)]),
        )
        .await;
    assert_eq!(
        commit_codes(&r),
        vec![
            0,
            codes::UNKNOWN_TOPIC_OR_PARTITION,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        ]
    );
    // v10 addresses topics by id.
    let mut req = commit_req("solo", "", -1, &[("", 1, 4)]);
    req.topics[0].topic_id = Uuid::from_u128(7);
    let r = c.offset_commit(10, req).await;
    encodes(&r, 10);
    assert_eq!(commit_codes(&r), vec![0]);
    assert_eq!(r.topics[0].topic_id, Uuid::from_u128(7));
    let r = c
        .offset_fetch(
            10,
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("solo")))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_topic_id(Uuid::from_u128(7))
                        .with_partition_indexes(vec![0, 1]),
                    OffsetFetchRequestTopics::default()
                        .with_topic_id(Uuid::from_u128(8))
                        .with_partition_indexes(vec![0]),
                ]))]),
        )
        .await;
    encodes(&r, 10);
    let topics = &r.groups[0].topics;
    assert_eq!(topics[0].topic_id, Uuid::from_u128(7));
    let offsets: Vec<i64> = topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(offsets, vec![1, 4]);
    assert_eq!(topics[1].partitions[0].error_code, codes::UNKNOWN_TOPIC_ID);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn delete_groups_only_deletes_empty_groups_and_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (c, shutdown) = start(dir.path()).await;
        let (a, ja) = join_new(&c, "busy").await;
        let gen = ja.await.unwrap().generation_id;
        c.offset_commit(8, commit_req("busy", &a, gen, &[("t", 0, 1)]))
            .await;
        c.offset_commit(8, commit_req("idle", "", -1, &[("t", 0, 1)]))
            .await;
        c.offset_commit(8, commit_req("keep", "", -1, &[("t", 0, 3)]))
            .await;
        let r = c
            .delete_groups(
                2,
                DeleteGroupsRequest::default().with_groups_names(vec![
                    GroupId(s("busy")),
                    GroupId(s("idle")),
                    GroupId(s("never")),
                ]),
            )
            .await;
        let got: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            got,
            vec![codes::NON_EMPTY_GROUP, 0, codes::GROUP_ID_NOT_FOUND]
        );
        // Once its member leaves, the group can go too.
        c.leave_group(0, leave_req("busy", &a)).await;
        let r = c
            .delete_groups(
                2,
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("busy"))]),
            )
            .await;
        assert_eq!(r.results[0].error_code, 0);
        shutdown.cancel();
    }
    let (c, shutdown) = start(dir.path()).await;
    let groups = group_names(&c.list_groups(3, ListGroupsRequest::default()).await);
    assert_eq!(groups, vec!["keep".to_string()]);
    shutdown.cancel();
}

/// A `consumer` protocol subscription to `topics`, encoded as a client does (version, then the
/// subscription at that version).
fn subscription(version: i16, topics: &[&str]) -> Bytes {
    let mut buf = BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, version);
    ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| s(t)).collect())
        .encode(&mut buf, version.min(3))
        .unwrap();
    buf.freeze()
}

/// One member joins `group` (v5, protocol type `kind`, one protocol with `metadata`) and is
/// alone and synced in generation 1; returns its id.
async fn sole_member(
    c: &Arc<GroupCoordinator>,
    group: &str,
    kind: &str,
    metadata: Bytes,
) -> String {
    let req = |member: &str| {
        let mut r = join_req(group, member).with_protocol_type(s(kind));
        r.protocols[0].metadata = metadata.clone();
        at_version(r, 5)
    };
    let first = c.join_group(5, req("")).await;
    assert_eq!(first.error_code, codes::MEMBER_ID_REQUIRED);
    let id = first.member_id.to_string();
    let joined = c.join_group(5, req(&id)).await;
    assert_eq!(joined.error_code, 0);
    let synced = c
        .sync_group(5, sync_req(group, &id, joined.generation_id, &[(&id, "x")]))
        .await;
    assert_eq!(synced.error_code, 0);
    id
}

fn offset_delete_req(group: &str, topics: &[(&str, &[i32])]) -> OffsetDeleteRequest {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    OffsetDeleteRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(
            topics
                .iter()
                .map(|(t, ps)| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(
                            ps.iter()
                                .map(|p| {
                                    OffsetDeleteRequestPartition::default().with_partition_index(*p)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// (topic, partition, error code) of an OffsetDelete answer, in answer order.
fn deleted(r: &OffsetDeleteResponse) -> Vec<(String, i32, i16)> {
    encodes(r, 0);
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

fn offsets_of(c: &GroupCoordinator, group: &str) -> Vec<(String, i32, i64)> {
    let mut v: Vec<(String, i32, i64)> = c
        .committed_offsets()
        .into_iter()
        .filter(|o| o.group == group)
        .map(|o| (o.topic, o.partition, o.offset))
        .collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn offset_delete_spares_what_live_members_subscribe_to_and_lasts_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (c, shutdown) = start(dir.path()).await;
        // A live consumer group subscribed to t (subscription v1; a v9 one reads the same).
        let a = sole_member(&c, "live", "consumer", subscription(1, &["t"])).await;
        let r = c
            .offset_commit(
                8,
                commit_req("live", &a, 1, &[("t", 0, 5), ("u", 0, 6), ("u", 1, 7)]),
            )
            .await;
        assert_eq!(commit_codes(&r), vec![0, 0, 0]);
        let r = c
            .delete_offsets(offset_delete_req("live", &[("t", &[0]), ("u", &[0, -1])]))
            .await;
        assert_eq!(r.error_code, 0);
        assert_eq!(
            deleted(&r),
            vec![
                ("t".into(), 0, codes::GROUP_SUBSCRIBED_TO_TOPIC),
                ("u".into(), 0, 0),
                ("u".into(), -1, codes::UNKNOWN_TOPIC_OR_PARTITION),
            ]
        );
        assert_eq!(
            offsets_of(&c, "live"),
            vec![("t".into(), 0, 5), ("u".into(), 1, 7)]
        );
        assert_eq!(
            subscription_topics_of(&subscription(9, &["x", "y"])),
            Some(vec!["x".to_string(), "y".to_string()])
        );

        // Members whose subscription cannot be read keep every topic's offsets.
        let b = sole_member(&c, "opaque", "consumer", Bytes::from_static(b"\x00")).await;
        c.offset_commit(8, commit_req("opaque", &b, 1, &[("u", 0, 1)]))
            .await;
        let r = c
            .delete_offsets(offset_delete_req("opaque", &[("u", &[0])]))
            .await;
        assert_eq!(
            deleted(&r),
            vec![("u".into(), 0, codes::GROUP_SUBSCRIBED_TO_TOPIC)]
        );

        // Another protocol type with members: refused whole.
        sole_member(&c, "workers", "connect", Bytes::from_static(b"x")).await;
        let r = c
            .delete_offsets(offset_delete_req("workers", &[("u", &[0])]))
            .await;
        assert_eq!(r.error_code, codes::NON_EMPTY_GROUP);
        assert!(r.topics.is_empty());

        // A group known only by its offsets (a standalone consumer) loses what is asked.
        c.offset_commit(8, commit_req("solo", "", -1, &[("t", 0, 3), ("t", 1, 4)]))
            .await;
        let r = c
            .delete_offsets(offset_delete_req("solo", &[("t", &[0, 5])]))
            .await;
        assert_eq!(deleted(&r), vec![("t".into(), 0, 0), ("t".into(), 5, 0)]);
        assert_eq!(offsets_of(&c, "solo"), vec![("t".into(), 1, 4)]);

        let r = c
            .delete_offsets(offset_delete_req("never", &[("t", &[0])]))
            .await;
        assert_eq!(r.error_code, codes::GROUP_ID_NOT_FOUND);
        let r = c
            .delete_offsets(offset_delete_req("", &[("t", &[0])]))
            .await;
        assert_eq!(r.error_code, codes::INVALID_GROUP_ID);
        shutdown.cancel();
    }
    // The deletions were written to the offsets log, not just forgotten in memory.
    let (c, shutdown) = start(dir.path()).await;
    assert_eq!(
        offsets_of(&c, "live"),
        vec![("t".into(), 0, 5), ("u".into(), 1, 7)]
    );
    assert_eq!(offsets_of(&c, "solo"), vec![("t".into(), 1, 4)]);
    shutdown.cancel();
}

fn subscription_topics_of(metadata: &Bytes) -> Option<Vec<String>> {
    super::state::subscription_topics(metadata)
}

/// Waits (virtual time) until `c` holds `n` committed offsets; tombstones are written by
/// background tasks.
async fn until_offsets(c: &GroupCoordinator, n: usize) -> Vec<CommittedOffset> {
    for _ in 0..1000 {
        if c.committed_offsets().len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    c.committed_offsets()
}

#[tokio::test(start_paused = true)]
async fn forgetting_a_topic_drops_its_offsets_durably() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Arc::new(Topics::default());
    {
        let (c, shutdown) = start_leading(dir.path(), Arc::clone(&topics), &[0, 1, 2]).await;
        for g in ["g", "h"] {
            let r = c
                .offset_commit(8, commit_req(g, "", -1, &[("gone", 0, 1), ("kept", 0, 2)]))
                .await;
            assert_eq!(commit_codes(&r), vec![0, 0]);
        }
        // Nothing is deleted: nothing happens.
        c.forget_deleted_topics();
        assert_eq!(c.committed_offsets().len(), 4);
        topics.deleted.lock().unwrap().insert("gone".into());
        c.forget_deleted_topics();
        // Tombstones are written in the background, one task per offsets partition.
        assert_eq!(until_offsets(&c, 2).await.len(), 2);
        shutdown.cancel();
    }
    // The topic comes back under the same name: its old offsets do not.
    topics.deleted.lock().unwrap().clear();
    let (c, shutdown) = start_leading(dir.path(), topics, &[0, 1, 2]).await;
    let offsets = c.committed_offsets();
    assert_eq!(offsets.len(), 2);
    assert!(offsets.iter().all(|o| o.topic == "kept"));
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn offsets_of_topics_deleted_meanwhile_go_when_a_partition_loads_or_imports() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Arc::new(Topics::default());
    {
        let (c, shutdown) = start_leading(dir.path(), Arc::clone(&topics), &[0, 1, 2]).await;
        let r = c
            .offset_commit(
                8,
                commit_req("g", "", -1, &[("gone", 0, 1), ("kept", 0, 2)]),
            )
            .await;
        assert_eq!(commit_codes(&r), vec![0, 0]);
        shutdown.cancel();
    }
    // Deleted while no broker led these partitions: no metadata change reaches the next
    // leader, its load alone has to notice.
    topics.deleted.lock().unwrap().insert("gone".into());
    let (c, shutdown) = start_leading(dir.path(), Arc::clone(&topics), &[0, 1, 2]).await;
    let offsets = until_offsets(&c, 1).await;
    assert!(offsets.iter().all(|o| o.topic == "kept"), "{offsets:?}");
    // An imported file naming a deleted topic: written, then dropped the same way.
    let old = StoredOffset {
        offset: 9,
        leader_epoch: -1,
        metadata: "old".into(),
        commit_timestamp_ms: 1000,
    };
    let n = c
        .import_legacy(
            "h",
            vec![("gone".into(), 0, old.clone()), ("kept".into(), 1, old)],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let offsets = until_offsets(&c, 2).await;
    assert!(offsets.iter().all(|o| o.topic == "kept"), "{offsets:?}");
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn list_groups_filters_by_state_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let (_, ja) = join_new(&c, "active").await;
    ja.await.unwrap();
    c.offset_commit(8, commit_req("idle", "", -1, &[("t", 0, 1)]))
        .await;
    let list = |states: &[&str], types: &[&str]| {
        ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|x| s(x)).collect())
            .with_types_filter(types.iter().map(|x| s(x)).collect())
    };
    let r = c.list_groups(5, list(&[], &[])).await;
    assert_eq!(group_names(&r), vec!["active", "idle"]);
    assert_eq!(r.groups[0].group_state.as_str(), "CompletingRebalance");
    assert_eq!(r.groups[0].group_type.as_str(), "classic");
    let r = c.list_groups(4, list(&["empty"], &[])).await;
    assert_eq!(group_names(&r), vec!["idle"]);
    let r = c.list_groups(5, list(&["Stable"], &[])).await;
    assert!(r.groups.is_empty());
    let r = c.list_groups(5, list(&[], &["consumer"])).await;
    assert!(r.groups.is_empty());
    let r = c.list_groups(5, list(&[], &["Classic"])).await;
    assert_eq!(group_names(&r).len(), 2);

    let d = c
        .describe_groups(
            5,
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s("idle")), GroupId(s("active"))])
                .with_include_authorized_operations(true),
        )
        .await;
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    assert_eq!(d.groups[0].error_code, 0);
    assert_eq!(d.groups[1].group_state.as_str(), "CompletingRebalance");
    assert_eq!(d.groups[1].protocol_type.as_str(), "consumer");
    // Not Stable: no protocol or assignment to show yet.
    assert_eq!(d.groups[1].protocol_data.as_str(), "");
    assert_ne!(d.groups[1].authorized_operations, i32::MIN);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn static_member_rejoin_through_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let req = |member: &str| {
        at_version(
            join_req("g", member).with_group_instance_id(Some(s("pod-0"))),
            5,
        )
    };
    // Static members get their id without the MEMBER_ID_REQUIRED round trip.
    let r = c.join_group(5, req("")).await;
    assert_eq!(r.error_code, 0);
    let first = r.member_id.to_string();
    assert!(first.starts_with("pod-0-"));
    let gen = r.generation_id;
    let s1 = c
        .sync_group(
            5,
            sync_req("g", &first, gen, &[(&first, "all")]).with_group_instance_id(Some(s("pod-0"))),
        )
        .await;
    assert_eq!(&s1.assignment[..], b"all");
    // The pod restarts: same instance id, no member id. It leads, so it rebalances, and the
    // old incarnation is fenced.
    let r = c.join_group(5, req("")).await;
    assert_eq!(r.error_code, 0);
    let second = r.member_id.to_string();
    assert_ne!(first, second);
    let hb = c
        .heartbeat(
            4,
            heartbeat_req("g", &first, r.generation_id).with_group_instance_id(Some(s("pod-0"))),
        )
        .await;
    assert_eq!(hb.error_code, codes::FENCED_INSTANCE_ID);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_requests_waiting_for_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let (_, ja) = join_new(&c, "g").await;
    let (_, jb) = join_new(&c, "g").await;
    shutdown.cancel();
    let started = tokio::time::Instant::now();
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    // Answered at shutdown, not at the end of the initial delay.
    assert!(started.elapsed() < Duration::from_millis(INITIAL_DELAY_MS as u64));
    assert_eq!(ra.error_code, codes::COORDINATOR_NOT_AVAILABLE);
    assert_eq!(rb.error_code, codes::COORDINATOR_NOT_AVAILABLE);
    // Nothing waits after shutdown either.
    let r = c
        .join_group(5, at_version(join_req("g", &ra.member_id), 5))
        .await;
    assert_eq!(r.error_code, codes::COORDINATOR_NOT_AVAILABLE);
    encodes(&r, 5);
}

#[tokio::test(start_paused = true)]
async fn idle_groups_without_offsets_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    for g in ["idle", "with-offsets"] {
        let (a, ja) = join_new(&c, g).await;
        ja.await.unwrap();
        c.leave_group(0, leave_req(g, &a)).await;
        if g == "with-offsets" {
            let r = c
                .offset_commit(8, commit_req(g, "", -1, &[("t", 0, 1)]))
                .await;
            assert_eq!(commit_codes(&r), vec![0]);
        }
    }
    let listed = || async { group_names(&c.list_groups(4, ListGroupsRequest::default()).await) };
    assert_eq!(listed().await, vec!["idle", "with-offsets"]);
    tokio::time::sleep(Duration::from_secs(590)).await;
    assert_eq!(listed().await.len(), 2);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let listed = listed().await;
    assert_eq!(listed, vec!["with-offsets"]);
    shutdown.cancel();
}

#[test]
fn bad_settings_are_refused_at_open() {
    let mut cfg = config();
    cfg.max_session_timeout_ms = 1;
    let err = GroupCoordinator::new(cfg).unwrap_err();
    assert!(err.to_string().contains("max_session_timeout_ms"), "{err}");
}

/// A coordinator leading every offsets partition under `dir`, the cluster holding only `t`.
async fn leading_all_with_t(dir: &std::path::Path) -> (Arc<GroupCoordinator>, CancellationToken) {
    let topics = Arc::new(Topics {
        only_t: true,
        ..Topics::default()
    });
    start_leading(dir, topics, &[0, 1, 2]).await
}

/// A group name that lands in offsets partition `p` (of [`OFFSETS_PARTITIONS`]).
fn group_in(p: i32, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|g| partition_for(g, OFFSETS_PARTITIONS) == p)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn groups_of_partitions_led_elsewhere_are_answered_not_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    // This broker leads partitions 0 and 1; another broker leads 2.
    let (c, shutdown) = start_leading(dir.path(), Arc::default(), &[0, 1]).await;
    let here = group_in(0, "here");
    let there = group_in(2, "there");
    let r = c.join_group(5, at_version(join_req(&there, ""), 5)).await;
    assert_eq!(r.error_code, codes::NOT_COORDINATOR);
    encodes(&r, 5);
    let r = c.heartbeat(4, heartbeat_req(&there, "m", 1)).await;
    assert_eq!(r.error_code, codes::NOT_COORDINATOR);
    let r = c.sync_group(5, sync_req(&there, "m", 1, &[])).await;
    assert_eq!(r.error_code, codes::NOT_COORDINATOR);
    let r = c.leave_group(3, leave_req(&there, "m")).await;
    assert_eq!(r.error_code, codes::NOT_COORDINATOR);
    let r = c
        .offset_commit(8, commit_req(&there, "", -1, &[("t", 0, 1), ("t", 1, 1)]))
        .await;
    assert_eq!(
        commit_codes(&r),
        vec![codes::NOT_COORDINATOR, codes::NOT_COORDINATOR]
    );
    // OffsetFetch: v1 per partition, v2-7 top level, v8+ per group (a batch may mix).
    let r = c
        .offset_fetch(1, offset_fetch_req(&there, Some(("t", vec![0, 1]))))
        .await;
    encodes(&r, 1);
    let codes_v1: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes_v1, vec![codes::NOT_COORDINATOR; 2]);
    let r = c
        .offset_fetch(5, offset_fetch_req(&there, Some(("t", vec![0]))))
        .await;
    assert_eq!(r.error_code, codes::NOT_COORDINATOR);
    assert!(r.topics.is_empty());
    c.offset_commit(8, commit_req(&here, "", -1, &[("t", 0, 4)]))
        .await;
    let r = c
        .offset_fetch(
            8,
            OffsetFetchRequest::default().with_groups(
                [&here, &there]
                    .iter()
                    .map(|g| {
                        OffsetFetchRequestGroup::default()
                            .with_group_id(GroupId(s(g)))
                            .with_topics(None)
                    })
                    .collect(),
            ),
        )
        .await;
    encodes(&r, 8);
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 4);
    assert_eq!(r.groups[1].error_code, codes::NOT_COORDINATOR);
    let d = c
        .describe_groups(
            5,
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s(&there))]),
        )
        .await;
    assert_eq!(d.groups[0].error_code, codes::NOT_COORDINATOR);
    let r = c
        .delete_groups(
            2,
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(&there))]),
        )
        .await;
    assert_eq!(r.results[0].error_code, codes::NOT_COORDINATOR);
    // ListGroups lists what is coordinated here only.
    let listed = group_names(&c.list_groups(3, ListGroupsRequest::default()).await);
    assert_eq!(listed, vec![here]);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_resigned_partition_drops_its_groups_and_its_next_leader_loads_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let moving = group_in(1, "moving");
    let staying = group_in(0, "staying");
    for g in [&moving, &staying] {
        let r = c
            .offset_commit(8, commit_req(g, "", -1, &[("t", 0, 7), ("t", 1, 8)]))
            .await;
        assert_eq!(commit_codes(&r), vec![0, 0]);
    }
    // A member waiting in the initial rebalance delay of each group.
    let (_, waiting) = join_new(&c, &moving).await;
    let (_, other) = join_new(&c, &staying).await;
    c.resigned(1);
    let r = waiting.await.unwrap();
    assert_eq!(r.error_code, codes::NOT_COORDINATOR, "released at once");
    let r = c.heartbeat(4, heartbeat_req(&moving, "x", 1)).await;
    assert_eq!(r.error_code, codes::NOT_COORDINATOR);
    assert!(c
        .committed_offsets()
        .iter()
        .all(|o| o.group == staying.as_str()));
    // The other partition's group did not notice.
    assert_eq!(other.await.unwrap().error_code, 0);
    // Led here again at a later epoch: the offsets come back from the log.
    c.became_leader(1, 2, offsets_log(dir.path(), 1, 2));
    loaded(&c).await;
    let r = c
        .offset_fetch(5, offset_fetch_req(&moving, Some(("t", vec![0, 1]))))
        .await;
    assert_eq!(
        fetched_v7(&r, "t"),
        vec![(0, 7, "m7".to_string()), (1, 8, "m8".to_string())]
    );
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn requests_for_a_loading_partition_wait_briefly_then_get_load_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    let g = group_in(2, "slow");
    // As if partition 2's log were still being read.
    c.leads().insert(2, Lead::Loading { epoch: 5 });
    let started = Instant::now();
    let r = c.join_group(5, at_version(join_req(&g, ""), 5)).await;
    assert_eq!(r.error_code, codes::COORDINATOR_LOAD_IN_PROGRESS);
    assert!(started.elapsed() >= LOAD_WAIT);
    let r = c.list_groups(3, ListGroupsRequest::default()).await;
    assert_eq!(r.error_code, codes::COORDINATOR_LOAD_IN_PROGRESS);
    // A load that finishes while a request waits lets it through.
    let c2 = Arc::clone(&c);
    let g2 = g.clone();
    let waiting = tokio::spawn(async move {
        c2.offset_commit(8, commit_req(&g2, "", -1, &[("t", 0, 1)]))
            .await
    });
    tokio::task::yield_now().await;
    c.became_leader(2, 5, offsets_log(dir.path(), 2, 5));
    assert_eq!(commit_codes(&waiting.await.unwrap()), vec![0]);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn commits_without_enough_in_sync_replicas_are_refused_and_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let topics = Arc::new(Topics::default());
    let (c, shutdown) = start_leading(dir.path(), Arc::clone(&topics), &[0, 1, 2]).await;
    *topics.short.lock().unwrap() = true;
    let r = c
        .offset_commit(8, commit_req("solo", "", -1, &[("t", 0, 3)]))
        .await;
    assert_eq!(commit_codes(&r), vec![codes::COORDINATOR_NOT_AVAILABLE]);
    assert!(c.committed_offsets().is_empty());
    *topics.short.lock().unwrap() = false;
    let r = c
        .offset_commit(8, commit_req("solo", "", -1, &[("t", 0, 3)]))
        .await;
    assert_eq!(commit_codes(&r), vec![0]);
    shutdown.cancel();
    // Only the accepted commit is in the log.
    let p = partition_for("solo", OFFSETS_PARTITIONS);
    assert_eq!(offsets_log(dir.path(), p, 1).log_end_offset(), 1);
}

#[tokio::test(start_paused = true)]
async fn offsets_of_an_old_offsets_file_are_imported_unless_a_newer_commit_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = start(dir.path()).await;
    c.offset_commit(8, commit_req("g", "", -1, &[("t", 0, 50)]))
        .await;
    let old = |offset: i64, ts: i64| StoredOffset {
        offset,
        leader_epoch: -1,
        metadata: "old".into(),
        commit_timestamp_ms: ts,
    };
    // t-0 was committed after the file's value (now vs. 1000); t-1 only exists in the file.
    let n = c
        .import_legacy(
            "g",
            vec![
                ("t".into(), 0, old(10, 1000)),
                ("t".into(), 1, old(20, 1000)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let r = c
        .offset_fetch(5, offset_fetch_req("g", Some(("t", vec![0, 1]))))
        .await;
    assert_eq!(
        fetched_v7(&r, "t"),
        vec![(0, 50, "m50".to_string()), (1, 20, "old".to_string())]
    );
    // Importing the same file again changes nothing.
    let n = c
        .import_legacy("g", vec![("t".into(), 1, old(20, 1000))])
        .await
        .unwrap();
    assert_eq!(n, 0);
    shutdown.cancel();
}

/// A ConsumerProtocolAssignment of `partitions` of `t`, as a client leader sends it.
fn assignment_of_t(partitions: &[i32]) -> Bytes {
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    let mut buf = BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, 0);
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![TopicPartition::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(partitions.to_vec())])
        .encode(&mut buf, 0)
        .unwrap();
    buf.freeze()
}

/// A ConsumerProtocolSubscription v1 to `t` that says the member owns `owned` of it.
fn subscription_owning(owned: &[i32]) -> Bytes {
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
    let mut buf = BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, 1);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![s("t")])
        .with_owned_partitions(vec![TopicPartition::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(owned.to_vec())])
        .encode(&mut buf, 1)
        .unwrap();
    buf.freeze()
}

fn consumer_hb(member: &str, epoch: i32, owned: &[i32]) -> ConsumerGroupHeartbeatRequest {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic_id(Uuid::from_u128(7))
            .with_partitions(owned.to_vec())]))
}

fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .flat_map(|t| t.partitions.clone())
            .collect()
    })
}

/// A JoinGroup v5 of a classic consumer of group `g` subscribed to `t`, owning `owned`.
fn classic_join(member: &str, owned: &[i32]) -> JoinGroupRequest {
    let mut r = join_req("g", member);
    r.protocols[0].metadata = subscription_owning(owned);
    at_version(r, 5)
}

/// A classic consumer joins group `g` alone and is given both partitions of `t` (generation
/// 1); its member id.
async fn classic_owner_of_t(c: &GroupCoordinator) -> String {
    let first = c.join_group(5, classic_join("", &[])).await;
    let classic = first.member_id.to_string();
    let joined = c.join_group(5, classic_join(&classic, &[])).await;
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    let mut sync = sync_req("g", &classic, 1, &[]);
    sync.assignments = vec![SyncGroupRequestAssignment::default()
        .with_member_id(s(&classic))
        .with_assignment(assignment_of_t(&[0, 1]))];
    assert_eq!(c.sync_group(5, sync).await.error_code, 0);
    classic
}

/// The online migration through the coordinator's request handlers: a classic member's group
/// is not touched by an invalid first ConsumerGroupHeartbeat, is upgraded by a valid one (the
/// classic member keeps its partitions, then hands one over through REBALANCE_IN_PROGRESS,
/// JoinGroup and SyncGroup), and goes back to a rebalancing classic group when the
/// consumer-protocol member leaves, the classic member's generation still good.
#[tokio::test(start_paused = true)]
async fn a_classic_group_is_upgraded_by_its_first_valid_consumer_heartbeat_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = leading_all_with_t(dir.path()).await;
    let classic = classic_owner_of_t(&c).await;

    // A first heartbeat without its rebalance timeout is refused and changes nothing.
    let invalid = consumer_hb("m", 0, &[]).with_rebalance_timeout_ms(-1);
    let r = c
        .consumer_heartbeat(1, invalid, ClientInfo::default(), None)
        .await;
    assert_eq!(r.error_code, consumer::INVALID_REQUEST);
    assert_eq!(
        c.heartbeat(4, heartbeat_req("g", &classic, 1))
            .await
            .error_code,
        0
    );
    let listed = c.list_groups(5, ListGroupsRequest::default()).await;
    assert_eq!(listed.groups[0].group_type.as_str(), "classic");

    // A valid one upgrades the group: the new member gets what is free (nothing yet).
    let r = c
        .consumer_heartbeat(1, consumer_hb("m", 0, &[]), ClientInfo::default(), None)
        .await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.member_epoch, 2, "the generation, plus one for the join");
    assert_eq!(assigned(&r), Some(vec![]));
    let listed = c.list_groups(5, ListGroupsRequest::default()).await;
    assert_eq!(listed.groups[0].group_type.as_str(), "consumer");

    // The classic member hears it, rejoins owning both, gives one up, rejoins again.
    let hb = c.heartbeat(4, heartbeat_req("g", &classic, 1)).await;
    assert_eq!(hb.error_code, codes::REBALANCE_IN_PROGRESS);
    let j = c.join_group(5, classic_join(&classic, &[0, 1])).await;
    assert_eq!(
        (j.error_code, j.generation_id),
        (0, 1),
        "its epoch until it revoked"
    );
    assert!(j.leader.is_empty() && j.members.is_empty(), "a follower");
    let sy = c.sync_group(5, sync_req("g", &classic, 1, &[])).await;
    assert_eq!(sy.error_code, 0);
    let (parts, _) = consumer::decode_assignment(&sy.assignment).expect("an assignment");
    let kept: Vec<i32> = parts.into_iter().flat_map(|(_, ps)| ps).collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let j = c.join_group(5, classic_join(&classic, &kept)).await;
    assert_eq!((j.error_code, j.generation_id), (0, 2));
    let r = c
        .consumer_heartbeat(1, consumer_hb("m", 2, &[]), ClientInfo::default(), None)
        .await;
    let theirs = assigned(&r).expect("an assignment");
    assert_eq!(theirs.len(), 1);
    assert_ne!(theirs, kept);

    // The consumer-protocol member leaves: a classic group again, rebalancing, in which the
    // classic member's generation still holds until it rejoined.
    let leave = consumer_hb("m", consumer::LEAVE_EPOCH, &[]);
    let r = c
        .consumer_heartbeat(1, leave, ClientInfo::default(), None)
        .await;
    assert_eq!(r.error_code, 0);
    let hb = c.heartbeat(4, heartbeat_req("g", &classic, 2)).await;
    assert_eq!(hb.error_code, codes::REBALANCE_IN_PROGRESS);
    let listed = c.list_groups(5, ListGroupsRequest::default()).await;
    assert_eq!(listed.groups[0].group_type.as_str(), "classic");
    assert_eq!(listed.groups[0].group_state.as_str(), "PreparingRebalance");
    shutdown.cancel();
}

/// OffsetFetch v9 of group `g`'s offsets of `t` 0-1 as `member` at `epoch`: the group's error
/// code and the offsets it got.
async fn fetch_as(c: &GroupCoordinator, member: Option<&str>, epoch: i32) -> (i16, Vec<i64>) {
    let r = c
        .offset_fetch(
            9,
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(member.map(s))
                .with_member_epoch(epoch)
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1])]))]),
        )
        .await;
    encodes(&r, 9);
    let g = &r.groups[0];
    let offsets = g
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
        .collect();
    (g.error_code, offsets)
}

/// OffsetFetch from v9 names the member: a consumer group's member must be at its current
/// epoch (STALE_MEMBER_EPOCH otherwise) and known (UNKNOWN_MEMBER_ID), while a fetch naming
/// no member (admin tools, librdkafka) and any fetch of a classic group are served.
#[tokio::test(start_paused = true)]
async fn an_offset_fetch_of_a_consumer_group_is_checked_against_the_members_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = leading_all_with_t(dir.path()).await;
    let classic = classic_owner_of_t(&c).await;
    let committed = c
        .offset_commit(8, commit_req("g", &classic, 1, &[("t", 0, 5), ("t", 1, 7)]))
        .await;
    assert_eq!(commit_codes(&committed), vec![0, 0]);
    assert_eq!(
        fetch_as(&c, Some(&classic), 99).await,
        (0, vec![5, 7]),
        "a classic group checks nothing"
    );

    let r = c
        .consumer_heartbeat(1, consumer_hb("m", 0, &[]), ClientInfo::default(), None)
        .await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let epoch = r.member_epoch;
    assert_eq!(fetch_as(&c, Some("m"), epoch).await, (0, vec![5, 7]));
    assert_eq!(fetch_as(&c, None, -1).await, (0, vec![5, 7]));
    assert_eq!(
        fetch_as(&c, Some("m"), epoch - 1).await,
        (consumer::STALE_MEMBER_EPOCH, vec![])
    );
    assert_eq!(
        fetch_as(&c, Some("nobody"), epoch).await,
        (codes::UNKNOWN_MEMBER_ID, vec![])
    );
    assert_eq!(
        fetch_as(&c, Some(&classic), 99).await,
        (codes::ILLEGAL_GENERATION, vec![]),
        "the classic member of a consumer group, at a generation it does not have"
    );
    shutdown.cancel();
}

/// A consumer group's own `consumer.heartbeat.interval.ms` and `consumer.session.timeout.ms`
/// (group configs) are what its members are told and held to; another group keeps the
/// broker's (5 s and 45 s).
#[tokio::test(start_paused = true)]
async fn a_consumer_group_is_held_to_its_own_session_and_heartbeat_configs() {
    let dir = tempfile::tempdir().unwrap();
    let overrides: BTreeMap<String, String> = [
        (configs::CONSUMER_SESSION_TIMEOUT_MS, "10000"),
        (configs::CONSUMER_HEARTBEAT_INTERVAL_MS, "2000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let topics = Arc::new(Topics {
        only_t: true,
        group_configs: [("g".to_string(), overrides)].into_iter().collect(),
        ..Topics::default()
    });
    let (c, shutdown) = start_leading(dir.path(), topics, &[0, 1, 2]).await;
    let join = |group: &str| consumer_hb("m", 0, &[]).with_group_id(GroupId(s(group)));
    let tuned = c
        .consumer_heartbeat(1, join("g"), ClientInfo::default(), None)
        .await;
    let plain = c
        .consumer_heartbeat(1, join("h"), ClientInfo::default(), None)
        .await;
    assert_eq!((tuned.error_code, plain.error_code), (0, 0));
    assert_eq!(
        (tuned.heartbeat_interval_ms, plain.heartbeat_interval_ms),
        (2_000, 5_000)
    );
    // Silent past 10 s: g's member is gone, h's stays (its session is 45 s).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let beat = |group: &str, epoch: i32| {
        consumer_hb("m", epoch, &[0, 1])
            .with_group_id(GroupId(s(group)))
            .with_rebalance_timeout_ms(-1)
            .with_subscribed_topic_names(None)
    };
    let g = c
        .consumer_heartbeat(
            1,
            beat("g", tuned.member_epoch),
            ClientInfo::default(),
            None,
        )
        .await;
    assert_eq!(
        g.error_code,
        codes::UNKNOWN_MEMBER_ID,
        "{:?}",
        g.error_message
    );
    let h = c
        .consumer_heartbeat(
            1,
            beat("h", plain.member_epoch),
            ClientInfo::default(),
            None,
        )
        .await;
    assert_eq!(h.error_code, 0, "{:?}", h.error_message);
    shutdown.cancel();
}

/// A static member back on the classic protocol in the place of a consumer group's last
/// consumer-protocol member turns the group back into a classic group first; its JoinGroup is
/// one of that group's rebalance, which the classic member already there rejoins.
#[tokio::test(start_paused = true)]
async fn a_static_classic_member_replacing_the_last_consumer_member_downgrades_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let (c, shutdown) = leading_all_with_t(dir.path()).await;
    let classic = classic_owner_of_t(&c).await;
    let static_hb = consumer_hb("m", 0, &[]).with_instance_id(Some(s("pod-0")));
    let r = c
        .consumer_heartbeat(1, static_hb, ClientInfo::default(), None)
        .await;
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let group_type = || async {
        c.list_groups(5, ListGroupsRequest::default()).await.groups[0]
            .group_type
            .to_string()
    };
    assert_eq!(group_type().await, "consumer");

    // pod-0 restarts on the classic protocol.
    let mut back = classic_join("", &[]);
    back.group_instance_id = Some(s("pod-0"));
    let waiting = tokio::spawn({
        let c = Arc::clone(&c);
        async move { c.join_group(5, back).await }
    });
    for _ in 0..1_000 {
        if group_type().await == "classic" {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        group_type().await,
        "classic",
        "downgraded by the replacement"
    );
    let hb = c.heartbeat(4, heartbeat_req("g", &classic, 1)).await;
    assert_eq!(hb.error_code, codes::REBALANCE_IN_PROGRESS);
    let rejoined = c.join_group(5, classic_join(&classic, &[0, 1])).await;
    let pod = waiting.await.unwrap();
    assert_eq!((rejoined.error_code, pod.error_code), (0, 0));
    assert_eq!(rejoined.generation_id, pod.generation_id);
    assert!(
        [&rejoined.leader, &pod.leader]
            .iter()
            .all(|l| !l.is_empty() && (**l == rejoined.member_id || **l == pod.member_id)),
        "one classic rebalance: {rejoined:?} {pod:?}"
    );
    // The replaced consumer-protocol member is gone.
    let r = c
        .consumer_heartbeat(
            1,
            consumer_hb("m", r.member_epoch, &[]),
            ClientInfo::default(),
            None,
        )
        .await;
    assert_ne!(r.error_code, 0);
    shutdown.cancel();
}

/// Waits until the membership record of `group` in its offsets partition (as replicated) is at
/// `generation` (`None`: no record, or a tombstone).
async fn membership_reaches(c: &GroupCoordinator, group: &str, generation: Option<i32>) {
    let p = partition_for(group, OFFSETS_PARTITIONS);
    let mut seen = None;
    for _ in 0..5_000 {
        seen = c.tenure_of_partition(p).and_then(|t| {
            t.view(|m| {
                m.memberships()
                    .find(|(g, _)| *g == group)
                    .map(|(_, x)| x.generation)
            })
        });
        if seen == generation {
            return;
        }
        // Real time, not the paused clock: the writer task runs meanwhile, no session expires.
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the membership record of {group} stayed at {seen:?}, expected {generation:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stable_group_is_restored_by_the_next_coordinator_and_goes_on_without_rejoining() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let (c, shutdown) = start(dir.path()).await;
        let (a, b) = stable_pair(&c, "g").await;
        membership_reaches(&c, "g", Some(1)).await;
        shutdown.cancel();
        (a, b)
    };
    // The next coordinator (a failover: the same log, read by a new leader).
    let (c, shutdown) = start(dir.path()).await;
    for m in [&a, &b] {
        let r = c.heartbeat(4, heartbeat_req("g", m, 1)).await;
        assert_eq!(r.error_code, 0, "{m} heartbeats on at generation 1");
    }
    // A member whose SyncGroup answer was lost in the failover gets its assignment again.
    let r = c.sync_group(5, sync_req("g", &b, 1, &[])).await;
    assert_eq!((r.error_code, &r.assignment[..]), (0, &b"y"[..]));
    let r = c
        .offset_commit(8, commit_req("g", &a, 1, &[("t", 0, 5)]))
        .await;
    assert_eq!(
        commit_codes(&r),
        vec![0],
        "a commit of generation 1 is valid"
    );
    let d = c
        .describe_groups(
            5,
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        )
        .await;
    let g = &d.groups[0];
    assert_eq!(
        (
            g.group_state.as_str(),
            g.protocol_type.as_str(),
            g.protocol_data.as_str()
        ),
        ("Stable", "consumer", "range")
    );
    let mut members: Vec<(String, Vec<u8>, Vec<u8>)> = g
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.member_metadata.to_vec(),
                m.member_assignment.to_vec(),
            )
        })
        .collect();
    members.sort();
    let mut expected = vec![
        (a.clone(), b"subscription".to_vec(), b"x".to_vec()),
        (b.clone(), b"subscription".to_vec(), b"y".to_vec()),
    ];
    expected.sort();
    assert_eq!(members, expected);
    // A restored member that never comes back expires after its session, as any member does:
    // b stays silent, a heartbeats, and the group rebalances once b's 10 s have passed.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        c.heartbeat(4, heartbeat_req("g", &a, 1)).await.error_code,
        0
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        c.heartbeat(4, heartbeat_req("g", &a, 1)).await.error_code,
        codes::REBALANCE_IN_PROGRESS
    );
    let r = rejoin(&c, "g", &a).await.unwrap();
    assert_eq!((r.error_code, r.generation_id), (0, 2));
    let r = c.sync_group(5, sync_req("g", &a, 2, &[(&a, "xy")])).await;
    assert_eq!(r.error_code, 0);
    membership_reaches(&c, "g", Some(2)).await;
    // The last member leaves: the record becomes a tombstone, and the next coordinator
    // restores nothing (the group's offsets stay).
    let r = c.leave_group(1, leave_req("g", &a)).await;
    assert_eq!(r.error_code, 0);
    membership_reaches(&c, "g", None).await;
    shutdown.cancel();
    let (c, shutdown) = start(dir.path()).await;
    assert_eq!(
        c.heartbeat(4, heartbeat_req("g", &a, 2)).await.error_code,
        codes::UNKNOWN_MEMBER_ID
    );
    let r = c
        .offset_fetch(5, offset_fetch_req("g", Some(("t", vec![0]))))
        .await;
    assert_eq!(fetched_v7(&r, "t")[0].1, 5);
    shutdown.cancel();
}
