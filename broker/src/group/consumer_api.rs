//! ConsumerGroupHeartbeat and ConsumerGroupDescribe (KIP-848): requests mapped onto the
//! [`consumer`](super::consumer) state machine of the group, and the checks the classic APIs
//! make against a group id that is a consumer group.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member as DescribedMember,
    TopicPartitions as DescribedTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName,
};
use tokio::time::Instant;
use uuid::Uuid;

use super::consumer::{self, ConsumerGroup, Heartbeat, Resolve, TopicsMeta};
use super::state::{JoinArgs, JoinResult};
use super::{codes, configs, s, ClientInfo, GroupCoordinator, Slot, TopicDirectory, TopicFilter};

/// ConsumerGroupDescribe `authorized_operations` when not asked for.
const AUTHORIZED_OPS_OMITTED: i32 = i32::MIN;
/// READ | DELETE | DESCRIBE, as for classic groups (no authorizer here).
const GROUP_AUTHORIZED_OPS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// The subscribed topics as the topic directory has them; `visible` (with an authorizer)
/// says which topics the member asking may DESCRIBE.
pub(super) struct DirectoryTopics {
    pub(super) directory: Option<Arc<dyn TopicDirectory>>,
    pub(super) visible: Option<TopicFilter>,
}

impl Resolve for DirectoryTopics {
    fn topics(&self, names: &BTreeSet<String>) -> TopicsMeta {
        let Some(d) = &self.directory else {
            return TopicsMeta::new();
        };
        names
            .iter()
            .filter_map(|name| Some((name.clone(), (d.topic_id(name)?, d.partitions(name)?))))
            .collect()
    }

    fn matching(&self, regex: &regex::Regex) -> BTreeSet<String> {
        let Some(d) = &self.directory else {
            return BTreeSet::new();
        };
        d.topic_names()
            .into_iter()
            .filter(|n| regex.is_match(n))
            .filter(|n| self.visible.as_ref().is_none_or(|may| may(n)))
            .collect()
    }
}

impl GroupCoordinator {
    pub async fn consumer_heartbeat(
        &self,
        version: i16,
        req: ConsumerGroupHeartbeatRequest,
        client: ClientInfo,
        visible: Option<TopicFilter>,
    ) -> ConsumerGroupHeartbeatResponse {
        let group_id = req.group_id.0.to_string();
        let settings = self.consumer_settings(&group_id);
        let interval = i32::try_from(settings.heartbeat_interval.as_millis()).unwrap_or(i32::MAX);
        let fail = |code: i16, message: String| {
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(s(&message)))
                .with_member_epoch(req.member_epoch)
                .with_heartbeat_interval_ms(interval)
        };
        if group_id.is_empty() {
            return fail(
                codes::INVALID_GROUP_ID,
                "GroupId can't be empty.".to_string(),
            );
        }
        let hb = Heartbeat {
            member_id: req.member_id.to_string(),
            member_epoch: req.member_epoch,
            instance_id: req.instance_id.as_ref().map(|v| v.to_string()),
            rack_id: req.rack_id.as_ref().map(|v| v.to_string()),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed_names: req
                .subscribed_topic_names
                .as_ref()
                .map(|v| v.iter().map(|t| t.0.to_string()).collect()),
            subscribed_regex: req.subscribed_topic_regex.as_ref().map(|v| v.to_string()),
            server_assignor: req.server_assignor.as_ref().map(|v| v.to_string()),
            owned: req.topic_partitions.as_ref().map(|tps| {
                tps.iter()
                    .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
                    .collect()
            }),
            client_id: client.client_id,
            client_host: client.client_host,
            member_id_from_client: version >= 1,
        };
        self.wait_loaded(&group_id).await;
        let resolve = DirectoryTopics {
            directory: self.directory(),
            visible,
        };
        let reply = {
            let mut groups = self.lock();
            if let Err(code) = self.status(&group_id) {
                return fail(code, format!("Group {group_id} is not coordinated here."));
            }
            if groups.get(&group_id).is_some_and(|slot| !slot.is_idle()) {
                if req.member_epoch != 0 {
                    return fail(
                        codes::GROUP_ID_NOT_FOUND,
                        format!("Group {group_id} is not a consumer group."),
                    );
                }
                // The first consumer-protocol member of a classic group: the online upgrade,
                // once its request is known to be a valid join.
                if let Some(refused) = consumer::join_refusal(&hb) {
                    return fail(refused.error, refused.message.unwrap_or_default());
                }
                if let Err(message) = self.upgrade(&mut groups, &group_id, &resolve) {
                    tracing::info!(group = %group_id, reason = %message, "ConsumerGroupHeartbeat refused: the classic group cannot be upgraded");
                    return fail(codes::GROUP_ID_NOT_FOUND, message);
                }
            }
            let mut consumer = self.consumer_lock();
            let joining = req.member_epoch == 0;
            if !joining && !consumer.contains_key(&group_id) {
                return fail(
                    codes::UNKNOWN_MEMBER_ID,
                    format!(
                        "Group {group_id} has no member {} (the coordinator may have moved); rejoin with epoch 0.",
                        req.member_id.as_str()
                    ),
                );
            }
            let group = consumer
                .entry(group_id.clone())
                .or_insert_with(|| ConsumerGroup::new(&group_id));
            let leaving = hb.member_epoch == consumer::LEAVE_EPOCH;
            let reply = group.heartbeat(hb, &settings, &resolve, Instant::now());
            drop(consumer);
            if leaving {
                self.maybe_downgrade(&mut groups, &group_id, Instant::now());
            }
            reply
        };
        // A join or a new epoch may bring a deadline earlier than the timer's (a new member's
        // session, a revocation's); other heartbeats only move deadlines later.
        if reply.member_epoch != req.member_epoch || req.member_epoch == 0 {
            self.wake.notify_one();
        }
        if reply.error != codes::NONE {
            tracing::debug!(group = %group_id, member = %reply.member_id, code = reply.error,
                message = reply.message.as_deref().unwrap_or(""), "consumer-group heartbeat refused");
        }
        let mut resp = ConsumerGroupHeartbeatResponse::default()
            .with_error_code(reply.error)
            .with_error_message(reply.message.as_deref().map(s))
            .with_member_id(Some(s(&reply.member_id)))
            .with_member_epoch(reply.member_epoch)
            .with_heartbeat_interval_ms(interval);
        if let Some(a) = reply.assignment {
            resp = resp.with_assignment(Some(
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(t, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(t)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                ),
            ));
        }
        resp
    }

    pub async fn consumer_group_describe(
        &self,
        _version: i16,
        req: ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let ops = if req.include_authorized_operations {
            GROUP_AUTHORIZED_OPS
        } else {
            AUTHORIZED_OPS_OMITTED
        };
        for gid in &req.group_ids {
            self.wait_loaded(gid.0.as_str()).await;
        }
        let directory = self.directory();
        let name_of = |t: Uuid| {
            directory
                .as_ref()
                .and_then(|d| d.topic_name(t))
                .unwrap_or_default()
        };
        let described = req
            .group_ids
            .iter()
            .map(|gid| {
                let id = gid.0.as_str();
                let base = DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_authorized_operations(ops);
                if let Err(code) = self.status(id) {
                    return base.with_error_code(code).with_group_state(s("Dead"));
                }
                let consumer = self.consumer_lock();
                let Some(g) = consumer.get(id) else {
                    // As Kafka: the admin client then asks DescribeGroups (a classic group).
                    return base
                        .with_error_code(codes::GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(s(&format!(
                            "Group {id} is not a consumer group."
                        ))))
                        .with_group_state(s("Dead"));
                };
                let wire = |a: &consumer::Assignment| {
                    DescribedAssignment::default().with_topic_partitions(
                        a.iter()
                            .map(|(t, ps)| {
                                DescribedTopicPartitions::default()
                                    .with_topic_id(*t)
                                    .with_topic_name(TopicName(s(&name_of(*t))))
                                    .with_partitions(ps.iter().copied().collect())
                            })
                            .collect(),
                    )
                };
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        DescribedMember::default()
                            .with_member_id(s(&m.id))
                            .with_instance_id(m.instance_id.as_deref().map(s))
                            .with_rack_id(m.rack_id.as_deref().map(s))
                            .with_member_epoch(m.epoch)
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host))
                            .with_subscribed_topic_names(
                                m.subscribed_names.iter().map(|n| TopicName(s(n))).collect(),
                            )
                            .with_subscribed_topic_regex(m.subscribed_regex.as_deref().map(s))
                            .with_assignment(wire(&m.assigned))
                            .with_target_assignment(wire(
                                &g.target.get(&m.id).cloned().unwrap_or_default(),
                            ))
                            // v1's field: 0 a classic member (a migration), 1 the consumer
                            // protocol.
                            .with_member_type(if m.classic.is_some() { 0 } else { 1 })
                    })
                    .collect();
                base.with_group_state(s(g.state().as_str()))
                    .with_group_epoch(g.epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(s(g.assignor.name()))
                    .with_members(members)
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(described)
    }

    /// Turns the classic group `group_id` (with members) into a consumer group, as the
    /// migration policy allows; `Err` with the reason, answered GROUP_ID_NOT_FOUND. Requests
    /// waiting on the classic group are answered REBALANCE_IN_PROGRESS: they rejoin the
    /// consumer group as its classic members.
    fn upgrade(
        &self,
        groups: &mut HashMap<String, Slot>,
        group_id: &str,
        resolve: &dyn Resolve,
    ) -> Result<(), String> {
        let settings = &self.config.consumer;
        let Some(slot) = groups.get_mut(group_id) else {
            return Ok(());
        };
        if !settings.migration.upgrades() {
            return Err(format!(
                "Cannot upgrade classic group {group_id} to consumer group because online upgrade is disabled (--group-consumer-migration-policy {}).",
                settings.migration.name()
            ));
        }
        if slot.group.members().count() > settings.max_size {
            return Err(format!(
                "Cannot upgrade classic group {group_id} to consumer group because the group size exceeds the consumer group maximum size."
            ));
        }
        let converted = ConsumerGroup::from_classic(&slot.group, resolve, Instant::now())?;
        slot.release(codes::REBALANCE_IN_PROGRESS);
        slot.forget_membership();
        groups.remove(group_id);
        self.consumer_lock().insert(group_id.to_string(), converted);
        Ok(())
    }

    /// Turns the consumer group `group_id` back into a classic group when only classic
    /// members are left in it and the migration policy allows (called after members left).
    pub(super) fn maybe_downgrade(
        &self,
        groups: &mut HashMap<String, Slot>,
        group_id: &str,
        now: Instant,
    ) {
        if !self.config.consumer.migration.downgrades() {
            return;
        }
        let mut consumer = self.consumer_lock();
        let Some(g) = consumer.get(group_id).filter(|g| g.only_classic_members()) else {
            return;
        };
        let delay = self.limits.initial_rebalance_delay;
        let classic = g.to_classic(delay, now);
        consumer.remove(group_id);
        let slot = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Slot::new(group_id, delay, &self.memberships));
        slot.release(codes::REBALANCE_IN_PROGRESS);
        slot.group = classic;
        slot.idle_since = None;
    }

    /// Before a classic JoinGroup with `instance` as its static id: when that id's holder is
    /// the consumer group's only consumer-protocol member, the holder is replaced (removed)
    /// and the group downgraded as the migration policy allows, as when the last
    /// consumer-protocol member leaves (Kafka does the same for a static replacement).
    pub(super) fn downgrade_for_static_replacement(
        &self,
        groups: &mut HashMap<String, Slot>,
        group_id: &str,
        instance: &str,
    ) {
        if !self.config.consumer.migration.downgrades() {
            return;
        }
        {
            let mut consumer = self.consumer_lock();
            let Some(g) = consumer.get_mut(group_id) else {
                return;
            };
            let Some(holder) = g.last_consumer_member(instance) else {
                return;
            };
            g.remove(
                &holder,
                "replaced by a static member on the classic protocol",
            );
        }
        self.maybe_downgrade(groups, group_id, Instant::now());
    }

    /// A classic member's JoinGroup on a consumer group with members.
    pub(super) fn classic_join_consumer_group(
        &self,
        group_id: &str,
        args: JoinArgs,
        fresh_id: String,
    ) -> JoinResult {
        let session_ok = (self.config.min_session_timeout_ms..=self.config.max_session_timeout_ms)
            .contains(&args.session_timeout_ms);
        if !session_ok {
            return JoinResult::error(codes::INVALID_SESSION_TIMEOUT, &args.member_id);
        }
        // A classic member's subscription is by names: nothing to filter.
        let resolve = DirectoryTopics {
            directory: self.directory(),
            visible: None,
        };
        let mut consumer = self.consumer_lock();
        let Some(g) = consumer.get_mut(group_id) else {
            return JoinResult::error(codes::UNKNOWN_MEMBER_ID, &args.member_id);
        };
        g.classic_join(
            args,
            &fresh_id,
            &self.consumer_settings(group_id),
            &resolve,
            Instant::now(),
        )
    }

    /// The consumer-group settings of `group_id`: the broker's, with the group's
    /// `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms` overrides.
    pub(super) fn consumer_settings(&self, group_id: &str) -> consumer::ConsumerSettings {
        let mut settings = self.config.consumer;
        let Some(d) = self.directory() else {
            return settings;
        };
        let overrides = d.group_configs(group_id);
        let ms = |k: &str| {
            overrides
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        if let Some(t) = ms(configs::CONSUMER_SESSION_TIMEOUT_MS) {
            settings.session_timeout = t;
        }
        if let Some(t) = ms(configs::CONSUMER_HEARTBEAT_INTERVAL_MS) {
            settings.heartbeat_interval = t;
        }
        settings
    }

    /// Whether `group_id` is a consumer group with members (classic requests for it are
    /// served by it).
    pub(super) fn consumer_group_active(&self, group_id: &str) -> bool {
        self.consumer_lock()
            .get(group_id)
            .is_some_and(|g| !g.is_empty())
    }

    /// The OffsetFetch (v9+) check of a consumer group's member: `Ok` for a group that is not
    /// a consumer group here or whose classic group of the same id is in use (Kafka checks
    /// nothing for classic groups), and for a group not known here at all (membership is in
    /// memory, so after a coordinator move the member learns it from its next heartbeat).
    pub(super) fn consumer_offset_fetch_check(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), i16> {
        let classic_active = self
            .lock()
            .get(group_id)
            .is_some_and(|slot| !slot.is_idle());
        if classic_active {
            return Ok(());
        }
        match self.consumer_lock().get(group_id) {
            Some(g) => g.check_offset_fetch(member_id, epoch),
            None => Ok(()),
        }
    }

    /// The commit check of a consumer group (`None`: `group_id` is not one). `partitions`
    /// by topic name.
    pub(super) fn consumer_commit_check(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        partitions: &[(String, i32)],
    ) -> Option<Result<(), i16>> {
        let directory = self.directory();
        let keys: Vec<(Uuid, i32)> = partitions
            .iter()
            .map(|(t, p)| {
                let id = directory
                    .as_ref()
                    .and_then(|d| d.topic_id(t))
                    .unwrap_or_default();
                (id, *p)
            })
            .collect();
        let consumer = self.consumer_lock();
        let g = consumer.get(group_id)?;
        Some(g.check_commit(member_id, epoch, &keys))
    }
}
