//! The share-group APIs (KIP-932) on the wire: ShareGroupHeartbeat (to the group's
//! coordinator), ShareFetch and ShareAcknowledge (to the partitions' leader). The state lives
//! in [`crate::share::ShareCoordinator`]; here the requests are decoded, the log is read and
//! the cluster metadata consulted.
//!
//! In a cluster, the group's coordinator answers heartbeats and the leader of each partition
//! serves its ShareFetch / ShareAcknowledge; a leader that does not coordinate the group takes
//! the member id of a share session on trust (see [`crate::share::coordinator`]), and takes a
//! share partition up from its persisted state when it becomes its leader
//! (`share_store::adopt`).
//!
//! A ShareFetch that acquires nothing waits up to its `max_wait_ms` for new records (the high
//! watermark moving), released ones (the coordinator's signal) or a lock running out (looked
//! at every [`RECHECK`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, NodeEndpoint, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use uuid::Uuid;

use super::catalog::{self, local_partition, Ownership};
use super::{codes, sb};
use crate::context::BrokerContext;
use crate::group::configs;
use crate::log::{PartitionLog, ShareStart};
use crate::share::{AssignedTopic, Limits, ShareConfigs};

/// How often a waiting ShareFetch looks for locks that ran out.
const RECHECK: Duration = Duration::from_millis(200);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A share setting of `group` on a topic: the group's configs (`kafka-configs.sh
/// --entity-type groups`) over the topic's `share.*` configs (what a `MessageQueue` sets);
/// `None` leaves the broker's flag.
fn share_config<T>(
    ctx: &BrokerContext,
    group: &str,
    topic_id: Uuid,
    read: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> T,
) -> T {
    let state = ctx.cluster.state();
    let topic = catalog::topic_by_id(ctx, topic_id).map(|meta| meta.configs);
    let overrides = [state.group_configs.get(group), topic.as_ref()];
    read(&|k: &str| overrides.iter().flatten().find_map(|c| c.get(k)).cloned())
}

/// The lock duration and delivery limit of `group`'s share partitions of a topic
/// ([`share_config`] over the broker's flags).
pub fn limits_for(ctx: &BrokerContext, group: &str, topic_id: Uuid) -> Limits {
    let mut limits = ctx.shares.settings().limits();
    share_config(ctx, group, topic_id, |get| {
        let number = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
        if let Some(ms) = number(crate::log::SHARE_RECORD_LOCK_DURATION_MS) {
            limits.lock_ms = ms;
        }
        if let Some(n) = number(crate::log::SHARE_DELIVERY_COUNT_LIMIT) {
            limits.delivery_limit = i16::try_from(n).unwrap_or(limits.delivery_limit);
        }
    });
    limits
}

/// Where `group` starts a share partition of a topic it reads for the first time
/// (`share.auto.offset.reset`, [`share_config`]; Kafka's default `latest`).
fn share_start(ctx: &BrokerContext, group: &str, topic_id: Uuid) -> ShareStart {
    share_config(ctx, group, topic_id, |get| {
        get(crate::log::SHARE_AUTO_OFFSET_RESET)
            .and_then(|v| ShareStart::parse(&v).ok())
            .unwrap_or(ShareStart::Latest)
    })
}

/// The offset a new share partition of `log` starts at: the log start, the high watermark, or
/// the first record at most the duration old (the high watermark when every record is older,
/// or when the log cannot be read: Kafka's fallback to `latest`).
fn start_offset(start: ShareStart, log: &PartitionLog, now_ms: i64) -> i64 {
    let hw = log.high_watermark();
    match start {
        ShareStart::Earliest => log.log_start_offset(),
        ShareStart::Latest => hw,
        ShareStart::ByDuration(back) => {
            let back_ms = i64::try_from(back.as_millis()).unwrap_or(i64::MAX);
            match log.offset_for_timestamp(now_ms.saturating_sub(back_ms)) {
                Ok(found) => found.map_or(hw, |(offset, _)| offset),
                Err(e) => {
                    tracing::warn!(partition = %log.dir().display(), error = %e,
                        "share partition starts at the log end: its time index could not be read");
                    hw
                }
            }
        }
    }
}

/// The share settings of groups as this broker's metadata has them ([`limits_for`], and each
/// group's `share.session.timeout.ms`).
pub struct GroupShareConfigs<'a>(pub &'a BrokerContext);

impl ShareConfigs for GroupShareConfigs<'_> {
    fn limits(&self, group: &str, topic: Uuid) -> Limits {
        limits_for(self.0, group, topic)
    }

    fn session_timeout_ms(&self, group: &str) -> Option<i64> {
        group_number(self.0, group, configs::SHARE_SESSION_TIMEOUT_MS)
    }
}

/// A numeric group config of `group`, when it has that override.
fn group_number(ctx: &BrokerContext, group: &str, key: &str) -> Option<i64> {
    ctx.cluster
        .state()
        .group_configs
        .get(group)?
        .get(key)?
        .parse()
        .ok()
}

/// Whether this broker coordinates `group`; else the error code to answer with.
async fn coordinates(ctx: &Arc<BrokerContext>, group: &str) -> Result<(), i16> {
    match catalog::coordinator(ctx, group).await {
        Ok(b) if b.id == ctx.node_id => Ok(()),
        Ok(_) => Err(codes::NOT_COORDINATOR),
        Err(e) => Err(e.kafka_code()),
    }
}

/// The partitions of the subscribed topics that exist.
fn resolve(ctx: &BrokerContext, topics: &[String]) -> Vec<AssignedTopic> {
    topics
        .iter()
        .filter_map(|name| catalog::topic(ctx, name))
        .map(|meta| AssignedTopic {
            id: meta.id,
            partitions: (0..meta.partitions).collect(),
        })
        .collect()
}

/// The offset a new share partition of `group` starts at ([`start_offset`]), where this
/// broker has the partition.
fn start_of(ctx: &BrokerContext, group: &str, topic_id: Uuid, partition: i32) -> Option<i64> {
    let meta = catalog::topic_by_id(ctx, topic_id)?;
    let log = local_partition(ctx, &meta.name, partition, -1).ok()?;
    Some(start_offset(
        share_start(ctx, group, topic_id),
        &log,
        now_ms(),
    ))
}

pub async fn heartbeat(
    ctx: Arc<BrokerContext>,
    req: ShareGroupHeartbeatRequest,
    client: (String, String),
) -> ShareGroupHeartbeatResponse {
    let group = req.group_id.to_string();
    let interval = group_number(&ctx, &group, configs::SHARE_HEARTBEAT_INTERVAL_MS)
        .and_then(|ms| i32::try_from(ms).ok())
        .unwrap_or(ctx.shares.settings().heartbeat_interval_ms);
    let mut resp = ShareGroupHeartbeatResponse::default().with_heartbeat_interval_ms(interval);
    if group.is_empty() {
        return resp.with_error_code(codes::INVALID_REQUEST);
    }
    if let Err(code) = coordinates(&ctx, &group).await {
        return resp.with_error_code(code);
    }
    super::share_store::ensure_loaded(&ctx).await;
    let subscribed: Option<Vec<String>> = req
        .subscribed_topic_names
        .map(|v| v.iter().map(|t| t.to_string()).collect());
    // The share partitions a new member may start here are taken up first, so one that was
    // persisted is not started afresh.
    let topics: Vec<String> = match &subscribed {
        Some(t) => t.clone(),
        None => ctx
            .shares
            .group(&group)
            .map(|g| g.members.into_iter().flat_map(|m| m.subscribed).collect())
            .unwrap_or_default(),
    };
    let keys: Vec<(Uuid, i32)> = resolve(&ctx, &topics)
        .into_iter()
        .flat_map(|t| t.partitions.into_iter().map(move |p| (t.id, p)))
        .collect();
    if let Err(e) = super::share_store::adopt(&ctx, &group, &keys).await {
        tracing::warn!(group, error = %e, "share partitions not taken up");
    }
    // Where the partitions the group has not started would start, worked out here: a
    // `by_duration:` start reads the partition's time index, which must not happen under the
    // coordinator's lock. A partition that is not among them (another member's subscription
    // changed meanwhile) is started by its first fetch.
    let starts: HashMap<(Uuid, i32), i64> = ctx
        .shares
        .unstarted(&group, &keys)
        .into_iter()
        .filter_map(|(id, p)| Some(((id, p), start_of(&ctx, &group, id, p)?)))
        .collect();
    let limits = GroupShareConfigs(&ctx);
    let reply = ctx.shares.heartbeat(
        &group,
        req.member_id.as_str(),
        req.member_epoch,
        subscribed,
        (&client.0, &client.1),
        now_ms(),
        &limits,
        &|topics: &[String]| resolve(&ctx, topics),
        &|topic_id, partition| starts.get(&(topic_id, partition)).copied(),
    );
    super::share_admin::dead_letters(&ctx).await;
    super::share_store::persist(&ctx).await;
    resp.error_code = reply.error;
    resp.member_id = Some(sb(&reply.member_id));
    resp.member_epoch = reply.member_epoch;
    resp.assignment = reply.assignment.map(|a| {
        Assignment::default().with_topic_partitions(
            a.into_iter()
                .map(|(id, partitions)| {
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(partitions)
                })
                .collect(),
        )
    });
    resp
}

/// One acknowledgement batch as both request types carry it.
struct Ack {
    first: i64,
    last: i64,
    types: Vec<i8>,
}

/// Applies the acknowledgements of one partition; its error code.
fn acknowledge(
    ctx: &BrokerContext,
    group: &str,
    member: &str,
    key: (Uuid, i32),
    acks: &[Ack],
) -> i16 {
    // Only the leader that took the share partition up acknowledges in it: elsewhere the
    // change would not be persisted.
    let led = catalog::topic_by_id(ctx, key.0)
        .and_then(|meta| catalog::leader_partition(ctx, &meta.name, key.1, -1).ok())
        .map(|(_, epoch)| epoch);
    if led.is_none() || led != ctx.shares.owned_epoch(group, key) {
        return catalog::NOT_LEADER_OR_FOLLOWER;
    }
    let limits = limits_for(ctx, group, key.0);
    let now = now_ms();
    let mut code = codes::NONE;
    for a in acks {
        let c = ctx.shares.acknowledge(
            group,
            member,
            key,
            (a.first, a.last),
            &a.types,
            false,
            now,
            &limits,
        );
        if c != codes::NONE {
            code = c;
        }
    }
    code
}

/// What one partition of a ShareFetch answer holds.
#[derive(Default)]
struct Part {
    error: i16,
    ack_error: Option<i16>,
    leader: (i32, i32),
    records: Option<Bytes>,
    acquired: Vec<AcquiredRecords>,
}

/// Acquires records in one share partition for `member`; the batches read and what was acquired.
fn acquire_one(
    ctx: &BrokerContext,
    group: &str,
    member: &str,
    key: (Uuid, i32),
    budget: &mut (usize, usize),
    part: &mut Part,
) {
    let Some(meta) = catalog::topic_by_id(ctx, key.0) else {
        part.error = codes::UNKNOWN_TOPIC_ID;
        return;
    };
    let (log, epoch) = match catalog::leader_partition(ctx, &meta.name, key.1, -1) {
        Ok(led) => led,
        Err(code) => {
            part.error = code;
            if let Ownership::Elsewhere(leader) = catalog::ownership(ctx, &meta.name, key.1) {
                part.leader = (leader, -1);
            }
            return;
        }
    };
    part.leader = (ctx.node_id, log.leader_epoch());
    // Not taken up at this leadership (its persisted state could not be read yet): nothing is
    // handed out that could not be persisted; the next request tries again.
    if ctx.shares.owned_epoch(group, key) != Some(epoch) {
        return;
    }
    let (records_left, bytes_left) = *budget;
    if records_left == 0 || bytes_left == 0 {
        return;
    }
    let limits = limits_for(ctx, group, key.0);
    let now = now_ms();
    let hw = log.high_watermark();
    let start = || start_offset(share_start(ctx, group, key.0), &log, now);
    let Some(from) = ctx.shares.fetch_offset(
        group,
        key,
        (log.log_start_offset(), hw),
        &start,
        now,
        &limits,
    ) else {
        return;
    };
    let read = match log.read(from, bytes_left) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(group, topic = %meta.name, partition = key.1, offset = from,
                error = %e, "share fetch could not read the log");
            part.error = e.kafka_code();
            return;
        }
    };
    let spans = crate::log::batch_spans(&read.records);
    let Some(to) = spans.last().map(|s| s.1 + 1) else {
        return;
    };
    let got = ctx
        .shares
        .acquire(group, member, key, (from, to), records_left, now, &limits);
    if got.is_empty() {
        return;
    }
    let count: i64 = got.iter().map(|a| a.last - a.first + 1).sum();
    budget.0 = records_left.saturating_sub(usize::try_from(count).unwrap_or(usize::MAX));
    budget.1 = bytes_left.saturating_sub(read.records.len());
    // Only the batches that hold acquired offsets go out.
    let (lo, hi) = (got[0].first, got[got.len() - 1].last);
    let mut start = 0usize;
    let mut end = 0usize;
    let mut pos = 0usize;
    for (first, last) in &spans {
        let size = batch_size(&read.records[pos..]);
        if *last < lo {
            start = pos + size;
        }
        if *first <= hi {
            end = pos + size;
        }
        pos += size;
    }
    part.records = Some(read.records.slice(start.min(end)..end));
    part.acquired = got
        .into_iter()
        .map(|a| {
            AcquiredRecords::default()
                .with_first_offset(a.first)
                .with_last_offset(a.last)
                .with_delivery_count(a.delivery_count)
        })
        .collect();
}

/// The size of the whole batch at the start of `b` (already checked by `batch_spans`).
fn batch_size(b: &[u8]) -> usize {
    b.get(8..12)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(|l| 12 + usize::try_from(i32::from_be_bytes(l)).unwrap_or(0))
        .unwrap_or(b.len())
}

/// The record bytes a ShareFetch response carries (what `consumer_byte_rate` counts).
pub fn record_bytes(resp: &ShareFetchResponse) -> usize {
    resp.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.as_ref())
        .map(|r| r.len())
        .sum()
}

pub async fn fetch(ctx: Arc<BrokerContext>, req: ShareFetchRequest) -> ShareFetchResponse {
    let group = req
        .group_id
        .as_ref()
        .map(|g| g.to_string())
        .unwrap_or_default();
    let member = req
        .member_id
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let mut resp = ShareFetchResponse::default().with_acquisition_lock_timeout_ms(
        i32::try_from(ctx.shares.settings().record_lock_ms).unwrap_or(i32::MAX),
    );
    if group.is_empty() || member.is_empty() {
        return resp.with_error_code(codes::INVALID_REQUEST);
    }
    super::share_store::ensure_loaded(&ctx).await;
    let add: Vec<(Uuid, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, p.partition_index)))
        .collect();
    let forget: Vec<(Uuid, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, *p)))
        .collect();
    if req.share_session_epoch == 0
        && req.topics.iter().any(|t| {
            t.partitions
                .iter()
                .any(|p| !p.acknowledgement_batches.is_empty())
        })
    {
        // KIP-932: an opening request carries no acknowledgements.
        return resp.with_error_code(codes::INVALID_REQUEST);
    }
    let check_members = coordinates(&ctx, &group).await.is_ok();
    let session = match ctx.shares.admit(
        &group,
        &member,
        req.share_session_epoch,
        true,
        (&add, &forget),
        check_members,
        now_ms(),
    ) {
        Ok(s) => s,
        Err(code) => return resp.with_error_code(code),
    };
    let mut keys = session.partitions.clone();
    keys.extend(add.iter().copied());
    if let Err(e) = super::share_store::adopt(&ctx, &group, &keys).await {
        tracing::warn!(group, error = %e, "share partitions not taken up");
    }
    // One value per response: the lock of the session's (first) topic, which clients use to
    // time out their own acknowledgements.
    if let Some((topic_id, _)) = session.partitions.first() {
        resp.acquisition_lock_timeout_ms =
            i32::try_from(limits_for(&ctx, &group, *topic_id).lock_ms).unwrap_or(i32::MAX);
    }
    let mut parts: std::collections::BTreeMap<(Uuid, i32), Part> = Default::default();
    for t in &req.topics {
        for p in &t.partitions {
            if p.acknowledgement_batches.is_empty() {
                continue;
            }
            let acks: Vec<Ack> = p
                .acknowledgement_batches
                .iter()
                .map(|b| Ack {
                    first: b.first_offset,
                    last: b.last_offset,
                    types: b.acknowledge_types.clone(),
                })
                .collect();
            let code = acknowledge(
                &ctx,
                &group,
                &member,
                (t.topic_id, p.partition_index),
                &acks,
            );
            parts
                .entry((t.topic_id, p.partition_index))
                .or_default()
                .ack_error = Some(code);
        }
    }
    if session.closing {
        ctx.shares
            .close_session(&group, &member, &GroupShareConfigs(&ctx));
    } else {
        if req.share_session_epoch == 0 {
            for key in &session.partitions {
                parts.entry(*key).or_default();
            }
        }
        acquire_all(&ctx, &req, &group, &member, &session.partitions, &mut parts).await;
    }
    super::share_admin::dead_letters(&ctx).await;
    super::share_store::persist(&ctx).await;
    let mut endpoints = std::collections::BTreeSet::new();
    for ((topic_id, partition), part) in parts {
        let i = match resp.responses.iter().position(|t| t.topic_id == topic_id) {
            Some(i) => i,
            None => {
                resp.responses
                    .push(ShareFetchableTopicResponse::default().with_topic_id(topic_id));
                resp.responses.len() - 1
            }
        };
        if part.error == catalog::NOT_LEADER_OR_FOLLOWER && part.leader.0 >= 0 {
            endpoints.insert(part.leader.0);
        }
        let mut pd = PartitionData::default()
            .with_partition_index(partition)
            .with_error_code(part.error)
            .with_acknowledge_error_code(part.ack_error.unwrap_or(codes::NONE))
            .with_records(Some(part.records.unwrap_or_default()))
            .with_acquired_records(part.acquired);
        pd.current_leader.leader_id = part.leader.0;
        pd.current_leader.leader_epoch = part.leader.1;
        if let Some(t) = resp.responses.get_mut(i) {
            t.partitions.push(pd);
        }
    }
    for id in endpoints {
        if let Some(b) = catalog::broker(&ctx, id) {
            resp.node_endpoints.push(
                NodeEndpoint::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(b.host))
                    .with_port(b.port)
                    .with_rack(b.rack.map(StrBytes::from_string)),
            );
        }
    }
    resp
}

/// Acquires across the session's partitions; waits up to `max_wait_ms` while nothing comes.
async fn acquire_all(
    ctx: &Arc<BrokerContext>,
    req: &ShareFetchRequest,
    group: &str,
    member: &str,
    partitions: &[(Uuid, i32)],
    parts: &mut std::collections::BTreeMap<(Uuid, i32), Part>,
) {
    let max_records = usize::try_from(req.max_records).unwrap_or(0);
    let max_records = if max_records == 0 { 500 } else { max_records };
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(0).max(1);
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms.max(0)).unwrap_or(0));
    let deadline = tokio::time::Instant::now() + wait;
    let mut watches: Vec<watch::Receiver<i64>> = partitions
        .iter()
        .filter_map(|(id, p)| {
            let meta = catalog::topic_by_id(ctx, *id)?;
            local_partition(ctx, &meta.name, *p, -1)
                .ok()
                .map(|l| l.subscribe_high_watermark())
        })
        .collect();
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        let released = ctx.shares.released();
        tokio::pin!(released);
        // Registered before looking, so a release between the look and the wait wakes us.
        released.as_mut().enable();
        let mut budget = (max_records, max_bytes);
        let mut got = false;
        let mut failed = false;
        for key in partitions {
            let mut part = Part::default();
            acquire_one(ctx, group, member, *key, &mut budget, &mut part);
            if !part.acquired.is_empty() || part.error != codes::NONE {
                got |= !part.acquired.is_empty();
                failed |= part.error != codes::NONE;
                let slot = parts.entry(*key).or_default();
                slot.error = part.error;
                slot.leader = part.leader;
                slot.records = part.records;
                slot.acquired = part.acquired;
            } else if let Some(slot) = parts.get_mut(key) {
                slot.leader = part.leader;
            }
        }
        let now = tokio::time::Instant::now();
        if got
            || failed
            || !parts.is_empty() && parts.values().any(|p| p.ack_error.is_some())
            || now >= deadline
            || ctx.shutdown.is_cancelled()
        {
            return;
        }
        let nap = tokio::time::sleep(RECHECK.min(deadline - now));
        if watches.is_empty() {
            tokio::select! {
                _ = released => {}
                _ = nap => {}
                _ = ctx.shutdown.cancelled() => return,
            }
        } else {
            let high_watermarks =
                futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = high_watermarks => {}
                _ = released => {}
                _ = nap => {}
                _ = ctx.shutdown.cancelled() => return,
            }
        }
        ctx.shares.tick(now_ms(), &GroupShareConfigs(ctx));
    }
}

pub async fn acknowledge_request(
    ctx: Arc<BrokerContext>,
    req: ShareAcknowledgeRequest,
) -> ShareAcknowledgeResponse {
    use kafka_protocol::messages::share_acknowledge_response::{
        PartitionData, ShareAcknowledgeTopicResponse,
    };
    let group = req
        .group_id
        .as_ref()
        .map(|g| g.to_string())
        .unwrap_or_default();
    let member = req
        .member_id
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let mut resp = ShareAcknowledgeResponse::default();
    if group.is_empty() || member.is_empty() {
        return resp.with_error_code(codes::INVALID_REQUEST);
    }
    let check_members = coordinates(&ctx, &group).await.is_ok();
    let session = match ctx.shares.admit(
        &group,
        &member,
        req.share_session_epoch,
        false,
        (&[], &[]),
        check_members,
        now_ms(),
    ) {
        Ok(s) => s,
        Err(code) => return resp.with_error_code(code),
    };
    let keys: Vec<(Uuid, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, p.partition_index)))
        .collect();
    if let Err(e) = super::share_store::adopt(&ctx, &group, &keys).await {
        tracing::warn!(group, error = %e, "share partitions not taken up");
    }
    for t in &req.topics {
        let mut tr = ShareAcknowledgeTopicResponse::default().with_topic_id(t.topic_id);
        for p in &t.partitions {
            let acks: Vec<Ack> = p
                .acknowledgement_batches
                .iter()
                .map(|b| Ack {
                    first: b.first_offset,
                    last: b.last_offset,
                    types: b.acknowledge_types.clone(),
                })
                .collect();
            let code = acknowledge(
                &ctx,
                &group,
                &member,
                (t.topic_id, p.partition_index),
                &acks,
            );
            let mut pd = PartitionData::default()
                .with_partition_index(p.partition_index)
                .with_error_code(code);
            pd.current_leader.leader_id = ctx.node_id;
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    if session.closing {
        ctx.shares
            .close_session(&group, &member, &GroupShareConfigs(&ctx));
    }
    super::share_admin::dead_letters(&ctx).await;
    super::share_store::persist(&ctx).await;
    resp
}
