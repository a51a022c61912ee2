//! Share groups seen from the admin side (ShareGroupDescribe, ListGroups and DeleteGroups
//! beside the classic groups, DescribeShareGroupOffsets, AlterShareGroupOffsets,
//! DeleteShareGroupOffsets), and the dead-letter topic writer.

use std::sync::Arc;

use kafka_protocol::messages::share_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::*;

use super::{catalog, sb};
use crate::context::BrokerContext;
use crate::share::codes;

/// Kafka's value of `authorized_operations` when they were not asked for.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

/// A share group's state as Kafka names it.
fn state_name(members: usize) -> &'static str {
    if members == 0 {
        "Empty"
    } else {
        "Stable"
    }
}

pub async fn describe(
    ctx: Arc<BrokerContext>,
    req: ShareGroupDescribeRequest,
) -> ShareGroupDescribeResponse {
    super::share_store::ensure_loaded(&ctx).await;
    let mut resp = ShareGroupDescribeResponse::default();
    for id in &req.group_ids {
        let name = id.to_string();
        let mut g = DescribedGroup::default()
            .with_group_id(id.clone())
            .with_authorized_operations(OPERATIONS_NOT_ASKED);
        match catalog::coordinator(&ctx, &name).await {
            Ok(b) if b.id == ctx.node_id => {}
            Ok(_) => {
                resp.groups
                    .push(g.with_error_code(super::codes::NOT_COORDINATOR));
                continue;
            }
            Err(e) => {
                resp.groups.push(g.with_error_code(e.kafka_code()));
                continue;
            }
        }
        let Some(summary) = ctx.shares.group(&name) else {
            resp.groups.push(
                g.with_error_code(codes::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(sb(&format!("share group {name} does not exist"))))
                    .with_group_state(sb("Dead")),
            );
            continue;
        };
        g = g
            .with_group_state(sb(state_name(summary.members.len())))
            .with_group_epoch(summary.epoch)
            .with_assignment_epoch(summary.epoch)
            .with_assignor_name(sb("simple"));
        for m in summary.members {
            let topic_partitions = m
                .assigned
                .iter()
                .map(|(tid, parts)| {
                    let name = catalog::topic_by_id(&ctx, *tid)
                        .map(|t| t.name)
                        .unwrap_or_default();
                    TopicPartitions::default()
                        .with_topic_id(*tid)
                        .with_topic_name(sb(&name).into())
                        .with_partitions(parts.clone())
                })
                .collect();
            g.members.push(
                Member::default()
                    .with_member_id(sb(&m.member_id))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(sb(&m.client_id))
                    .with_client_host(sb(&m.client_host))
                    .with_subscribed_topic_names(
                        m.subscribed.iter().map(|t| sb(t).into()).collect(),
                    )
                    .with_assignment(Assignment::default().with_topic_partitions(topic_partitions)),
            );
        }
        resp.groups.push(g);
    }
    resp
}

/// Header names on a dead-lettered record (beside the record's own headers).
pub const DLQ_HEADERS: [&str; 6] = [
    "sluice.dlq.source.topic",
    "sluice.dlq.source.partition",
    "sluice.dlq.source.offset",
    "sluice.dlq.group",
    "sluice.dlq.reason",
    "sluice.dlq.delivery.count",
];

/// Writes the records archived since the last call to their topics' dead-letter topics
/// (`errors.deadletterqueue.topic.name`), each a copy of the record (key, value, headers,
/// timestamp) with [`DLQ_HEADERS`] added. A source partition's letters go to the dead-letter
/// partition of the same number modulo its partition count. Best effort: a letter that cannot
/// be written is logged; the record stays archived in its own topic either way.
pub async fn dead_letters(ctx: &Arc<BrokerContext>) {
    for letter in ctx.shares.take_dead_letters() {
        if let Err(why) = dead_letter(ctx, &letter).await {
            tracing::warn!(group = %letter.group, topic_id = %letter.topic_id,
                partition = letter.partition, offset = letter.archived.offset,
                reason = letter.archived.reason.label(), error = %why,
                "archived share record not dead-lettered");
        }
    }
}

async fn dead_letter(
    ctx: &Arc<BrokerContext>,
    letter: &crate::share::DeadLetter,
) -> Result<(), String> {
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let Some(source) = catalog::topic_by_id(ctx, letter.topic_id) else {
        return Ok(());
    };
    let dlq = match source.configs.get(crate::log::DEAD_LETTER_TOPIC) {
        Some(d) if !d.is_empty() => d.clone(),
        _ => return Ok(()),
    };
    let offset = letter.archived.offset;
    let log = catalog::local_partition(ctx, &source.name, letter.partition, -1)
        .map_err(|code| format!("source partition not readable here (error {code})"))?;
    let read = log.read(offset, 1).map_err(|e| e.to_string())?;
    let stored = crate::log::record_at(&read.records, offset)
        .map_err(|e| e.to_string())?
        .ok_or("the record is no longer in the log")?;
    let target =
        catalog::topic(ctx, &dlq).ok_or(format!("dead-letter topic {dlq} does not exist"))?;
    let partition = letter.partition % target.partitions.max(1);
    let mut headers = kafka_protocol::indexmap::IndexMap::new();
    for (k, v) in stored.headers {
        headers.insert(StrBytes::from_string(k), v.map(bytes::Bytes::from));
    }
    let values = [
        source.name.clone(),
        letter.partition.to_string(),
        offset.to_string(),
        letter.group.clone(),
        letter.archived.reason.label().to_string(),
        letter.archived.delivery_count.to_string(),
    ];
    for (k, v) in DLQ_HEADERS.iter().zip(values) {
        headers.insert(sb(k), Some(bytes::Bytes::from(v)));
    }
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: stored.timestamp,
        key: stored.key.map(bytes::Bytes::from),
        value: stored.value.map(bytes::Bytes::from),
        headers,
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| format!("encode: {e}"))?;
    match catalog::leader_partition(ctx, &dlq, partition, -1) {
        Ok((target_log, epoch)) => {
            target_log
                .append_in_epoch(buf.freeze(), epoch)
                .map_err(|e| e.to_string())?;
        }
        // On a cluster the dead-letter partition may be led by another broker.
        Err(code) => match catalog::ownership(ctx, &dlq, partition) {
            catalog::Ownership::Elsewhere(leader) if leader >= 0 => {
                super::share_store::produce_through(ctx, leader, (&dlq, partition), buf.freeze())
                    .await?
            }
            _ => {
                return Err(format!(
                    "dead-letter partition {dlq}-{partition} has no leader (error {code})"
                ))
            }
        },
    }
    tracing::info!(group = %letter.group, topic = %source.name, partition = letter.partition,
        offset, reason = letter.archived.reason.label(), dlq = %dlq, "share record dead-lettered");
    Ok(())
}

/// ListGroups: the classic groups' answer with the share groups added (type `share`, state
/// Empty or Stable), filtered by the request's states and types as Kafka does.
pub async fn list_groups(
    ctx: Arc<BrokerContext>,
    version: i16,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    use kafka_protocol::messages::list_groups_response::ListedGroup;
    let lower = |v: &[kafka_protocol::protocol::StrBytes]| -> Vec<String> {
        v.iter().map(|s| s.to_ascii_lowercase()).collect()
    };
    let states = if version >= 4 {
        lower(&req.states_filter)
    } else {
        Vec::new()
    };
    let types = if version >= 5 {
        lower(&req.types_filter)
    } else {
        Vec::new()
    };
    super::share_store::ensure_loaded(&ctx).await;
    let mut resp = ctx.groups.list_groups(version, req).await;
    if !types.is_empty() && !types.iter().any(|t| t == "share") {
        return resp;
    }
    for g in ctx.shares.groups() {
        // On a cluster the leaders of a group's partitions know of it too: only its
        // coordinator lists it.
        if coordinated_here(&ctx, &g.group).await.is_err() {
            continue;
        }
        let state = state_name(g.members.len());
        if !states.is_empty() && !states.iter().any(|s| *s == state.to_ascii_lowercase()) {
            continue;
        }
        let mut listed = ListedGroup::default()
            .with_group_id(GroupId(sb(&g.group)))
            .with_protocol_type(sb("share"));
        if version >= 4 {
            listed = listed.with_group_state(sb(state));
        }
        if version >= 5 {
            listed = listed.with_group_type(sb("share"));
        }
        resp.groups.push(listed);
    }
    resp
}

/// DeleteGroups: classic groups as before; a name the classic coordinator does not know is
/// deleted as a share group if there is one (GROUP_NOT_EMPTY while it has members).
pub async fn delete_groups(
    ctx: Arc<BrokerContext>,
    version: i16,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    super::share_store::ensure_loaded(&ctx).await;
    let mut resp = ctx.groups.delete_groups(version, req).await;
    let mut deleted = Vec::new();
    for r in &mut resp.results {
        let id = r.group_id.to_string();
        if r.error_code == codes::GROUP_ID_NOT_FOUND && ctx.shares.has_group(&id) {
            r.error_code = ctx.shares.delete_group(&id);
            if r.error_code == codes::NONE {
                tracing::info!(group = %id, "share group deleted");
                deleted.push(id);
            }
        }
    }
    super::share_store::persist(&ctx).await;
    // On a cluster the partitions' leaders persisted states this coordinator never held.
    for id in deleted {
        let Some(starts) = super::share_store::persisted_starts(&ctx, &id).await else {
            continue;
        };
        let tombstones: Vec<_> = starts
            .into_keys()
            .map(|(t, p)| ((id.clone(), t, p, None), -1))
            .collect();
        if tombstones.is_empty() {
            continue;
        }
        if let Err(e) = super::share_store::write_states(&ctx, &tombstones).await {
            tracing::warn!(group = %id, error = %e, "deleted share group's state not removed");
        }
    }
    resp
}

/// DescribeShareGroupOffsets: each share partition's start offset (where the group's
/// unfinished records begin) as persisted by the partitions' leaders, for the asked topics or
/// all of the group's.
pub async fn describe_offsets(
    ctx: Arc<BrokerContext>,
    req: DescribeShareGroupOffsetsRequest,
) -> DescribeShareGroupOffsetsResponse {
    use kafka_protocol::messages::describe_share_group_offsets_response::{
        DescribeShareGroupOffsetsResponseGroup as Group,
        DescribeShareGroupOffsetsResponsePartition as Partition,
        DescribeShareGroupOffsetsResponseTopic as Topic,
    };
    super::share_store::ensure_loaded(&ctx).await;
    let mut resp = DescribeShareGroupOffsetsResponse::default();
    for g in &req.groups {
        let name = g.group_id.to_string();
        let mut out = Group::default().with_group_id(g.group_id.clone());
        if let Err(code) = coordinated_here(&ctx, &name).await {
            resp.groups.push(out.with_error_code(code));
            continue;
        }
        let Some(summary) = ctx.shares.group(&name) else {
            resp.groups
                .push(out.with_error_code(codes::GROUP_ID_NOT_FOUND));
            continue;
        };
        let mut by_topic: std::collections::BTreeMap<uuid::Uuid, Vec<(i32, i64)>> =
            Default::default();
        match super::share_store::persisted_starts(&ctx, &name).await {
            Some(starts) => {
                for ((t, p), start) in starts {
                    by_topic.entry(t).or_default().push((p, start));
                }
            }
            None => {
                for (t, p, start, _) in &summary.partitions {
                    by_topic.entry(*t).or_default().push((*p, *start));
                }
            }
        }
        let wanted: Option<Vec<(String, Vec<i32>)>> = g.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.topic_name.to_string(), t.partitions.clone()))
                .collect()
        });
        let topics: Vec<(String, uuid::Uuid, Vec<i32>)> = match wanted {
            Some(w) => w
                .into_iter()
                .map(|(n, parts)| {
                    let id = catalog::topic(&ctx, &n).map(|m| m.id).unwrap_or_default();
                    (n, id, parts)
                })
                .collect(),
            None => by_topic
                .iter()
                .filter_map(|(id, parts)| {
                    let meta = catalog::topic_by_id(&ctx, *id)?;
                    Some((meta.name, *id, parts.iter().map(|(p, _)| *p).collect()))
                })
                .collect(),
        };
        for (n, id, parts) in topics {
            let known = by_topic.get(&id);
            let mut t = Topic::default()
                .with_topic_name(sb(&n).into())
                .with_topic_id(id);
            for p in parts {
                let start = known
                    .and_then(|v| v.iter().find(|(q, _)| *q == p))
                    .map(|(_, s)| *s)
                    .unwrap_or(-1);
                t.partitions.push(
                    Partition::default()
                        .with_partition_index(p)
                        .with_start_offset(start)
                        .with_leader_epoch(-1),
                );
            }
            out.topics.push(t);
        }
        resp.groups.push(out);
    }
    resp
}

/// What the coordinator checks before it alters or deletes a group's share offsets: that it
/// coordinates the group, the group exists and has no members. The top-level error if not.
async fn offsets_changeable(ctx: &Arc<BrokerContext>, group: &str) -> Result<(), i16> {
    coordinated_here(ctx, group).await?;
    super::share_store::ensure_loaded(ctx).await;
    match ctx.shares.group(group) {
        None => Err(codes::GROUP_ID_NOT_FOUND),
        Some(g) if !g.members.is_empty() => Err(codes::GROUP_NOT_EMPTY),
        Some(_) => Ok(()),
    }
}

/// The leader epoch of a partition now (-1: not in the metadata).
fn leader_epoch(ctx: &BrokerContext, topic: &str, partition: i32) -> i32 {
    ctx.cluster
        .state()
        .partition(topic, partition)
        .map_or(-1, |p| p.leader_epoch)
}

/// Where this broker leads `(topic, partition)`, takes the new state up at once (the leaders
/// elsewhere take it up when the group next opens a share session there).
fn take_up_here(
    ctx: &BrokerContext,
    group: &str,
    (topic, topic_id, partition): (&str, uuid::Uuid, i32),
    state: Option<crate::share::SharePartition>,
) {
    if let catalog::Ownership::Here(epoch) = catalog::ownership(ctx, topic, partition) {
        let limits = super::share::limits_for(ctx, group, topic_id);
        ctx.shares
            .adopt(group, (topic_id, partition), epoch, state, &limits);
    }
}

/// AlterShareGroupOffsets (`kafka-share-groups.sh --reset-offsets`): on an empty group, each
/// named share partition starts afresh at the given offset (nothing in flight). `readable`:
/// whether the caller may read a topic.
pub async fn alter_offsets(
    ctx: Arc<BrokerContext>,
    req: AlterShareGroupOffsetsRequest,
    readable: &(dyn Fn(&str) -> bool + Send + Sync),
) -> AlterShareGroupOffsetsResponse {
    use kafka_protocol::messages::alter_share_group_offsets_response::{
        AlterShareGroupOffsetsResponsePartition as Partition,
        AlterShareGroupOffsetsResponseTopic as Topic,
    };
    let group = req.group_id.to_string();
    let mut resp = AlterShareGroupOffsetsResponse::default();
    if let Err(code) = offsets_changeable(&ctx, &group).await {
        return resp.with_error_code(code);
    }
    let mut changes = Vec::new();
    let mut here = Vec::new();
    for t in &req.topics {
        let name = t.topic_name.to_string();
        let meta = catalog::topic(&ctx, &name);
        let mut out = Topic::default()
            .with_topic_name(t.topic_name.clone())
            .with_topic_id(meta.as_ref().map(|m| m.id).unwrap_or_default());
        for p in &t.partitions {
            let code = match &meta {
                _ if !readable(&name) => super::authz::TOPIC_AUTHORIZATION_FAILED,
                None => super::codes::UNKNOWN_TOPIC_OR_PARTITION,
                Some(m) if p.partition_index < 0 || p.partition_index >= m.partitions => {
                    super::codes::UNKNOWN_TOPIC_OR_PARTITION
                }
                Some(_) if p.start_offset < 0 => codes::INVALID_REQUEST,
                Some(m) => {
                    let state = crate::share::SharePartition::new(p.start_offset);
                    let epoch = leader_epoch(&ctx, &name, p.partition_index);
                    changes.push((
                        (group.clone(), m.id, p.partition_index, Some(state.clone())),
                        epoch,
                    ));
                    here.push((name.clone(), m.id, p.partition_index, state));
                    codes::NONE
                }
            };
            out.partitions.push(
                Partition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code),
            );
        }
        resp.responses.push(out);
    }
    if changes.is_empty() {
        return resp;
    }
    if let Err(e) = super::share_store::write_states(&ctx, &changes).await {
        tracing::warn!(group, error = %e, "share offsets not altered");
        return resp
            .with_error_code(codes::COORDINATOR_NOT_AVAILABLE)
            .with_error_message(Some(sb(&e)));
    }
    for (name, id, partition, state) in here {
        take_up_here(&ctx, &group, (&name, id, partition), Some(state));
    }
    tracing::info!(group, partitions = changes.len(), "share offsets altered");
    resp
}

/// DeleteShareGroupOffsets (`kafka-share-groups.sh --delete-offsets`): on an empty group, the
/// share state of every partition of the named topics is deleted; the group starts them again
/// as it would a new topic (`share.auto.offset.reset`).
pub async fn delete_offsets(
    ctx: Arc<BrokerContext>,
    req: DeleteShareGroupOffsetsRequest,
    readable: &(dyn Fn(&str) -> bool + Send + Sync),
) -> DeleteShareGroupOffsetsResponse {
    use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic as Topic;
    let group = req.group_id.to_string();
    let mut resp = DeleteShareGroupOffsetsResponse::default();
    if let Err(code) = offsets_changeable(&ctx, &group).await {
        return resp.with_error_code(code);
    }
    let mut changes = Vec::new();
    let mut here = Vec::new();
    for t in &req.topics {
        let name = t.topic_name.to_string();
        let meta = catalog::topic(&ctx, &name);
        let code = match &meta {
            _ if !readable(&name) => super::authz::TOPIC_AUTHORIZATION_FAILED,
            None => super::codes::UNKNOWN_TOPIC_OR_PARTITION,
            Some(m) => {
                for p in 0..m.partitions {
                    changes.push(((group.clone(), m.id, p, None), -1));
                    here.push((name.clone(), m.id, p));
                }
                codes::NONE
            }
        };
        resp.responses.push(
            Topic::default()
                .with_topic_name(t.topic_name.clone())
                .with_topic_id(meta.as_ref().map(|m| m.id).unwrap_or_default())
                .with_error_code(code),
        );
    }
    if changes.is_empty() {
        return resp;
    }
    if let Err(e) = super::share_store::write_states(&ctx, &changes).await {
        tracing::warn!(group, error = %e, "share offsets not deleted");
        return resp
            .with_error_code(codes::COORDINATOR_NOT_AVAILABLE)
            .with_error_message(Some(sb(&e)));
    }
    for (name, id, partition) in here {
        take_up_here(&ctx, &group, (&name, id, partition), None);
    }
    tracing::info!(group, partitions = changes.len(), "share offsets deleted");
    resp
}

async fn coordinated_here(ctx: &Arc<BrokerContext>, group: &str) -> Result<(), i16> {
    match catalog::coordinator(ctx, group).await {
        Ok(b) if b.id == ctx.node_id => Ok(()),
        Ok(_) => Err(super::codes::NOT_COORDINATOR),
        Err(e) => Err(e.kafka_code()),
    }
}
