//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: each request mapped, at its version, onto
//! the group's state machine, with a reply channel for the JoinGroup / SyncGroup that must wait
//! for other members.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::state::{JoinArgs, JoinResult, JoinStep, SyncResult, SyncStep};
use super::{codes, s, ClientInfo, GroupCoordinator, Slot};

impl GroupCoordinator {
    pub async fn join_group(&self, version: i16, req: JoinGroupRequest) -> JoinGroupResponse {
        self.join_group_from(version, req, ClientInfo::default())
            .await
    }

    /// [`GroupCoordinator::join_group`] with the requesting client's id and address, which
    /// DescribeGroups reports and member ids are derived from.
    pub async fn join_group_from(
        &self,
        version: i16,
        req: JoinGroupRequest,
        client: ClientInfo,
    ) -> JoinGroupResponse {
        let group_id = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        if group_id.is_empty() {
            return join_response(
                version,
                JoinResult::error(codes::INVALID_GROUP_ID, &member_id),
            );
        }
        let instance_id = req.group_instance_id.as_ref().map(|s| s.to_string());
        let prefix = match (&instance_id, client.client_id.is_empty()) {
            (Some(i), _) => i.clone(),
            (None, false) => client.client_id.clone(),
            (None, true) => "member".to_string(),
        };
        let fresh_id = format!("{prefix}-{}", Uuid::new_v4());
        let args = JoinArgs {
            member_id: member_id.clone(),
            instance_id,
            client_id: client.client_id,
            client_host: client.client_host,
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            session_timeout_ms: req.session_timeout_ms,
            // v0 has no rebalance timeout; Kafka uses the session timeout for it.
            rebalance_timeout_ms: if version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            require_known_member_id: version >= 4,
        };
        self.wait_loaded(&group_id).await;
        let rx = {
            let mut groups = self.lock();
            if let Err(code) = self.status(&group_id) {
                return join_response(version, JoinResult::error(code, &member_id));
            }
            if let Some(instance) = args.instance_id.as_deref() {
                // A static member back on the classic protocol in the place of the group's
                // last consumer-protocol member: the group goes back to classic first, and this
                // join is one of the classic group's.
                self.downgrade_for_static_replacement(&mut groups, &group_id, instance);
            }
            if self.consumer_group_active(&group_id) {
                // A classic member of a consumer group (an online migration): answered at once.
                let result = self.classic_join_consumer_group(&group_id, args, fresh_id);
                drop(groups);
                self.wake.notify_one();
                return join_response(version, result);
            }
            if !groups.contains_key(&group_id) && !member_id.is_empty() {
                return join_response(
                    version,
                    JoinResult::error(codes::UNKNOWN_MEMBER_ID, &member_id),
                );
            }
            let slot = groups.entry(group_id.clone()).or_insert_with(|| {
                Slot::new(
                    &group_id,
                    self.limits.initial_rebalance_delay,
                    &self.memberships,
                )
            });
            let (step, fx) = slot
                .group
                .join(args, fresh_id, &self.limits, Instant::now());
            let rx = match step {
                JoinStep::Reply(result) => {
                    slot.deliver(fx);
                    drop(groups);
                    self.wake.notify_one();
                    return join_response(version, result);
                }
                JoinStep::Wait { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    if let Some(old) = slot.joins.insert(member_id.clone(), tx) {
                        // The member sent JoinGroup again (a retry); the older request ends.
                        let _ =
                            old.send(JoinResult::error(codes::REBALANCE_IN_PROGRESS, &member_id));
                    }
                    rx
                }
            };
            slot.deliver(fx);
            rx
        };
        self.wake.notify_one();
        match rx.await {
            Ok(result) => join_response(version, result),
            // The coordinator went away (shutdown): the client finds the coordinator again.
            Err(_) => join_response(
                version,
                JoinResult::error(codes::COORDINATOR_NOT_AVAILABLE, &member_id),
            ),
        }
    }

    pub async fn sync_group(&self, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
        let group_id = req.group_id.0.to_string();
        if group_id.is_empty() {
            return sync_response(version, SyncResult::error(codes::INVALID_GROUP_ID));
        }
        let member_id = req.member_id.to_string();
        self.wait_loaded(&group_id).await;
        let rx = {
            let mut groups = self.lock();
            if let Err(code) = self.status(&group_id) {
                return sync_response(version, SyncResult::error(code));
            }
            let classic_idle = groups.get(&group_id).is_none_or(|slot| slot.is_idle());
            if classic_idle && self.consumer_group_active(&group_id) {
                let result = self.consumer_lock().get_mut(&group_id).map_or_else(
                    || SyncResult::error(codes::UNKNOWN_MEMBER_ID),
                    |g| {
                        g.classic_sync(
                            &member_id,
                            req.group_instance_id.as_deref(),
                            req.generation_id,
                            req.protocol_type.as_deref(),
                            req.protocol_name.as_deref(),
                            Instant::now(),
                        )
                    },
                );
                drop(groups);
                self.wake.notify_one();
                return sync_response(version, result);
            }
            let Some(slot) = groups.get_mut(&group_id) else {
                return sync_response(version, SyncResult::error(codes::UNKNOWN_MEMBER_ID));
            };
            let assignments = req
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect();
            let (step, fx) = slot.group.sync(
                &member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
                req.protocol_type.as_deref(),
                req.protocol_name.as_deref(),
                assignments,
                Instant::now(),
            );
            let rx = match step {
                SyncStep::Reply(result) => {
                    slot.deliver(fx);
                    drop(groups);
                    self.wake.notify_one();
                    return sync_response(version, result);
                }
                SyncStep::Wait => {
                    let (tx, rx) = oneshot::channel();
                    if let Some(old) = slot.syncs.insert(member_id.clone(), tx) {
                        let _ = old.send(SyncResult::error(codes::REBALANCE_IN_PROGRESS));
                    }
                    rx
                }
            };
            slot.deliver(fx);
            rx
        };
        self.wake.notify_one();
        match rx.await {
            Ok(result) => {
                if result.error == codes::NONE {
                    // The membership record of this generation is queued by now (`Slot::deliver`
                    // queues it before answering): the member goes on once it is written.
                    self.memberships.flushed(self.config.commit_timeout).await;
                }
                sync_response(version, result)
            }
            Err(_) => sync_response(version, SyncResult::error(codes::COORDINATOR_NOT_AVAILABLE)),
        }
    }

    pub async fn heartbeat(&self, _version: i16, req: HeartbeatRequest) -> HeartbeatResponse {
        let group_id = req.group_id.0.to_string();
        let code = if group_id.is_empty() {
            codes::INVALID_GROUP_ID
        } else {
            self.wait_loaded(&group_id).await;
            let mut groups = self.lock();
            let classic_idle = groups.get(&group_id).is_none_or(|slot| slot.is_idle());
            let consumer = classic_idle && self.consumer_group_active(&group_id);
            match (self.status(&group_id), groups.get_mut(&group_id)) {
                (Err(code), _) => code,
                (Ok(_), _) if consumer => {
                    let code = self.consumer_lock().get_mut(&group_id).map_or(
                        codes::UNKNOWN_MEMBER_ID,
                        |g| {
                            g.classic_heartbeat(
                                &req.member_id,
                                req.group_instance_id.as_deref(),
                                req.generation_id,
                                Instant::now(),
                            )
                        },
                    );
                    // REBALANCE_IN_PROGRESS starts a join deadline the timer must see.
                    self.wake.notify_one();
                    code
                }
                (Ok(_), None) => codes::UNKNOWN_MEMBER_ID,
                (Ok(_), Some(slot)) => slot.group.heartbeat(
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                    Instant::now(),
                ),
            }
        };
        HeartbeatResponse::default().with_error_code(code)
    }

    pub async fn leave_group(&self, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
        let group_id = req.group_id.0.to_string();
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let (top, results): (i16, Vec<i16>) = if group_id.is_empty() {
            (codes::INVALID_GROUP_ID, Vec::new())
        } else {
            let reasons: Vec<String> = req
                .members
                .iter()
                .map(|m| m.reason.as_deref().unwrap_or("").to_string())
                .collect();
            self.wait_loaded(&group_id).await;
            let mut groups = self.lock();
            let classic_idle = groups.get(&group_id).is_none_or(|slot| slot.is_idle());
            let consumer = classic_idle && self.consumer_group_active(&group_id);
            match (self.status(&group_id), groups.get_mut(&group_id)) {
                (Err(code), _) => (code, leaving.iter().map(|_| code).collect()),
                (Ok(_), _) if consumer => {
                    let results = {
                        let mut all = self.consumer_lock();
                        match all.get_mut(&group_id) {
                            Some(g) => leaving
                                .iter()
                                .map(|(m, i)| g.classic_leave(m, i.as_deref()))
                                .collect(),
                            None => leaving.iter().map(|_| codes::UNKNOWN_MEMBER_ID).collect(),
                        }
                    };
                    self.maybe_downgrade(&mut groups, &group_id, Instant::now());
                    (codes::NONE, results)
                }
                (Ok(_), None) => (
                    codes::NONE,
                    leaving.iter().map(|_| codes::UNKNOWN_MEMBER_ID).collect(),
                ),
                (Ok(_), Some(slot)) => {
                    let now = Instant::now();
                    let mut results = Vec::new();
                    for (i, (member_id, instance_id)) in leaving.iter().enumerate() {
                        let (code, fx) = slot.group.leave(member_id, instance_id.as_deref(), now);
                        if code == codes::NONE {
                            let reason = reasons.get(i).map(String::as_str).unwrap_or("");
                            tracing::info!(group = %group_id, member = %member_id, instance = ?instance_id, reason, "member left");
                        }
                        slot.deliver(fx);
                        results.push(code);
                    }
                    (codes::NONE, results)
                }
            }
        };
        self.wake.notify_one();
        if version >= 3 {
            LeaveGroupResponse::default()
                .with_error_code(top)
                .with_members(
                    leaving
                        .into_iter()
                        .zip(results)
                        .map(|((member_id, instance_id), code)| {
                            MemberResponse::default()
                                .with_member_id(s(&member_id))
                                .with_group_instance_id(instance_id.map(StrBytes::from_string))
                                .with_error_code(code)
                        })
                        .collect(),
                )
        } else {
            let member_error = results.first().copied().unwrap_or(codes::NONE);
            let code = if top != codes::NONE {
                top
            } else {
                member_error
            };
            LeaveGroupResponse::default().with_error_code(code)
        }
    }
}

fn join_response(version: i16, r: JoinResult) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable on the wire.
    let protocol_name = match r.protocol_name {
        None if version < 7 => Some(StrBytes::default()),
        other => other.map(StrBytes::from_string),
    };
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_name(protocol_name)
        .with_leader(StrBytes::from_string(r.leader))
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(if version >= 5 {
                            m.instance_id.map(StrBytes::from_string)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    if version >= 7 {
        resp = resp.with_protocol_type(r.protocol_type.map(StrBytes::from_string));
    }
    resp
}

fn sync_response(version: i16, r: SyncResult) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_assignment(r.assignment);
    if version >= 5 {
        resp = resp
            .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(r.protocol_name.map(StrBytes::from_string));
    }
    resp
}
