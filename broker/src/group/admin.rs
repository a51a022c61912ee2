//! ListGroups, DescribeGroups, DeleteGroups and OffsetDelete: what the admin tools see of the
//! groups and their committed offsets, and how they remove them.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse,
};

use super::state::{Group, GroupState};
use super::{codes, s, GroupCoordinator};

/// DescribeGroups `authorized_operations` when the client did not ask for them.
const AUTHORIZED_OPS_OMITTED: i32 = i32::MIN;
/// READ | DELETE | DESCRIBE: every ACL operation that applies to a group (no authorizer here).
const GROUP_AUTHORIZED_OPS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// The group types this coordinator runs (ListGroups v5 `group_type`).
const GROUP_TYPE: &str = "classic";
const CONSUMER_GROUP_TYPE: &str = "consumer";

impl GroupCoordinator {
    pub async fn list_groups(&self, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
        let states: Vec<String> = if version >= 4 {
            req.states_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if version >= 5 {
            req.types_filter
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let wants = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
        if !wants(GROUP_TYPE) && !wants(CONSUMER_GROUP_TYPE) {
            return ListGroupsResponse::default();
        }
        // As Kafka: while a partition led here loads, the list would be incomplete.
        if self.loading() {
            return ListGroupsResponse::default()
                .with_error_code(codes::COORDINATOR_LOAD_IN_PROGRESS);
        }
        // id -> (state, protocol type, group type)
        let mut listed: BTreeMap<String, (&'static str, String, &'static str)> = BTreeMap::new();
        for g in self.groups_with_offsets() {
            listed.insert(g, (GroupState::Empty.as_str(), String::new(), GROUP_TYPE));
        }
        {
            let groups = self.lock();
            for (id, slot) in groups.iter() {
                let g = &slot.group;
                listed.insert(
                    id.clone(),
                    (
                        g.state.as_str(),
                        g.protocol_type.clone().unwrap_or_default(),
                        GROUP_TYPE,
                    ),
                );
            }
            // A group id is either kind; an active consumer group wins over an idle classic
            // slot of the same id.
            for (id, g) in self.consumer_lock().iter() {
                let idle_classic = groups.get(id).is_none_or(|slot| slot.is_idle());
                if idle_classic {
                    listed.insert(
                        id.clone(),
                        (
                            g.state().as_str(),
                            CONSUMER_GROUP_TYPE.to_string(),
                            CONSUMER_GROUP_TYPE,
                        ),
                    );
                }
            }
        }
        let groups = listed
            .into_iter()
            .filter(|(_, (state, _, kind))| {
                wants(kind)
                    && (states.is_empty()
                        || states.iter().any(|s| *s == state.to_ascii_lowercase()))
            })
            .map(|(id, (state, protocol_type, kind))| {
                let mut g = ListedGroup::default()
                    .with_group_id(GroupId(s(&id)))
                    .with_protocol_type(s(&protocol_type));
                if version >= 4 {
                    g = g.with_group_state(s(state));
                }
                if version >= 5 {
                    g = g.with_group_type(s(kind));
                }
                g
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    pub async fn describe_groups(
        &self,
        version: i16,
        req: DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let ops = if version >= 3 && req.include_authorized_operations {
            GROUP_AUTHORIZED_OPS
        } else {
            AUTHORIZED_OPS_OMITTED
        };
        for gid in &req.groups {
            self.wait_loaded(gid.0.as_str()).await;
        }
        // Read before taking the groups lock (it reads each tenure's offsets).
        let with_offsets = self.groups_with_offsets();
        let groups = self.lock();
        let described = req
            .groups
            .iter()
            .map(|gid| {
                let id = gid.0.as_str();
                let base = DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_authorized_operations(ops);
                if id.is_empty() {
                    return base
                        .with_error_code(codes::INVALID_GROUP_ID)
                        .with_group_state(s(GroupState::Dead.as_str()));
                }
                if let Err(code) = self.status(id) {
                    return base
                        .with_error_code(code)
                        .with_group_state(s(GroupState::Dead.as_str()));
                }
                let classic_idle = groups.get(id).is_none_or(|slot| slot.is_idle());
                if classic_idle && self.consumer_lock().contains_key(id) {
                    // A consumer group (KIP-848) is not described here, as on Kafka: the
                    // admin client asks ConsumerGroupDescribe.
                    let base = base.with_group_state(s(GroupState::Dead.as_str()));
                    return if version >= 6 {
                        base.with_error_code(codes::GROUP_ID_NOT_FOUND)
                            .with_error_message(Some(s(&format!(
                                "Group {id} is a consumer group (group.protocol=consumer); ConsumerGroupDescribe describes it."
                            ))))
                    } else {
                        base
                    };
                }
                match groups.get(id) {
                    Some(slot) => describe_group(&slot.group, version, base),
                    None if with_offsets.contains(id) => {
                        base.with_group_state(s(GroupState::Empty.as_str()))
                    }
                    None => {
                        let base = base.with_group_state(s(GroupState::Dead.as_str()));
                        if version >= 6 {
                            base.with_error_code(codes::GROUP_ID_NOT_FOUND)
                                .with_error_message(Some(s(&format!("Group {id} not found."))))
                        } else {
                            base
                        }
                    }
                }
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(described)
    }

    pub async fn delete_groups(
        &self,
        _version: i16,
        req: DeleteGroupsRequest,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::new();
        let mut seen = BTreeSet::new();
        for gid in &req.groups_names {
            let id = gid.0.to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            let code = self.delete_group(&id).await;
            if code == codes::NONE {
                tracing::info!(group = %id, "group deleted");
            }
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(gid.clone())
                    .with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    async fn delete_group(&self, id: &str) -> i16 {
        if id.is_empty() {
            return codes::INVALID_GROUP_ID;
        }
        self.wait_loaded(id).await;
        let (tenure, known) = {
            let groups = self.lock();
            let tenure = match self.status(id) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let consumer = self.consumer_lock().get(id).map(|g| g.is_empty());
            match (groups.get(id), consumer) {
                (Some(slot), _) if slot.group.state != GroupState::Empty => {
                    return codes::NON_EMPTY_GROUP
                }
                (_, Some(false)) => return codes::NON_EMPTY_GROUP,
                (Some(_), _) | (_, Some(true)) => (tenure, true),
                (None, None) => (tenure, false),
            }
        };
        // Tombstones for every offset of the group, committed or still replicating.
        match tenure
            .write(|m| m.group_tombstones(id), self.config.commit_timeout)
            .await
        {
            Ok(0) if !known => return codes::GROUP_ID_NOT_FOUND,
            Ok(_) => self.maybe_compact(&tenure),
            Err(e) => {
                tracing::warn!(group = %id, error = %e, "group deletion not acknowledged");
                return e.code();
            }
        }
        let mut groups = self.lock();
        // A member may have joined while the deletion was written; it keeps its (new) group.
        if groups
            .get(id)
            .is_some_and(|slot| slot.group.state == GroupState::Empty)
        {
            groups.remove(id);
        }
        let mut consumer = self.consumer_lock();
        if consumer.get(id).is_some_and(|g| g.is_empty()) {
            consumer.remove(id);
        }
        codes::NONE
    }
}

impl GroupCoordinator {
    /// OffsetDelete, with Kafka's rules: the group must exist (members or committed offsets);
    /// an empty group loses the offsets asked for; a `consumer` group with members keeps those
    /// of the topics they subscribe to (GROUP_SUBSCRIBED_TO_TOPIC per partition) and loses the
    /// rest; a group of another protocol type with members is refused whole (NON_EMPTY_GROUP).
    /// The tombstones are answered once replicated, like a commit.
    pub async fn delete_offsets(&self, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let id = req.group_id.0.to_string();
        let refused = |code: i16| OffsetDeleteResponse::default().with_error_code(code);
        if id.is_empty() {
            return refused(codes::INVALID_GROUP_ID);
        }
        self.wait_loaded(&id).await;
        let directory = self.directory();
        let (tenure, subscribed) = {
            let groups = self.lock();
            let tenure = match self.status(&id) {
                Ok(t) => t,
                Err(code) => return refused(code),
            };
            let subscribed = match groups.get(&id).map(|slot| &slot.group) {
                Some(g) if g.state == GroupState::Dead => {
                    return refused(codes::GROUP_ID_NOT_FOUND)
                }
                Some(g) if g.state != GroupState::Empty => {
                    if g.protocol_type.as_deref() != Some("consumer") {
                        return refused(codes::NON_EMPTY_GROUP);
                    }
                    Some(g.subscribed_topics())
                }
                // A consumer group (KIP-848) with members keeps its subscribed topics' offsets.
                _ if self.consumer_group_active(&id) => self
                    .consumer_lock()
                    .get(&id)
                    .map(|g| Some(g.subscribed_topics())),
                Some(_) => None,
                None if !tenure.view(|m| m.has_group(&id)) => {
                    return refused(codes::GROUP_ID_NOT_FOUND)
                }
                None => None,
            };
            (tenure, subscribed)
        };
        // None: no member; Some(None): members whose subscriptions cannot be read (all topics).
        let is_subscribed = |topic: &str| match &subscribed {
            None => false,
            Some(None) => true,
            Some(Some(topics)) => topics.contains(topic),
        };
        let mut wanted = BTreeSet::new();
        let mut topics = Vec::new();
        for t in &req.topics {
            let name = t.name.0.to_string();
            let known = directory.as_ref().map(|d| d.partitions(&name));
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let i = p.partition_index;
                    let code = if known.is_some_and(|n| n.is_none_or(|n| i < 0 || i >= n)) {
                        codes::UNKNOWN_TOPIC_OR_PARTITION
                    } else if is_subscribed(&name) {
                        codes::GROUP_SUBSCRIBED_TO_TOPIC
                    } else {
                        wanted.insert((name.clone(), i));
                        codes::NONE
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(i)
                        .with_error_code(code)
                })
                .collect();
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        match tenure
            .write(
                |m| m.partition_tombstones(&id, &wanted),
                self.config.commit_timeout,
            )
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(group = %id, offsets = n, "committed offsets deleted");
                self.maybe_compact(&tenure);
            }
            Err(e) => {
                tracing::warn!(group = %id, error = %e, "offset deletion not acknowledged");
                return refused(e.code());
            }
        }
        OffsetDeleteResponse::default().with_topics(topics)
    }
}

fn describe_group(g: &Group, version: i16, base: DescribedGroup) -> DescribedGroup {
    let stable = g.state == GroupState::Stable;
    let protocol = g.protocol_name.clone().unwrap_or_default();
    let members = g
        .members()
        .map(|m| {
            let mut d = DescribedGroupMember::default()
                .with_member_id(s(&m.id))
                .with_client_id(s(&m.client_id))
                .with_client_host(s(&m.client_host));
            if version >= 4 {
                d = d.with_group_instance_id(m.instance_id.as_deref().map(s));
            }
            if stable {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                d = d
                    .with_member_metadata(metadata)
                    .with_member_assignment(m.assignment.clone());
            }
            d
        })
        .collect();
    base.with_group_state(s(g.state.as_str()))
        .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or("")))
        .with_protocol_data(s(if stable { &protocol } else { "" }))
        .with_members(members)
}
