//! Authorization of every request, with Kafka's rules for which operation on which resource
//! each API needs and how a refusal is answered (`KafkaApis` in Kafka's sources):
//!
//! | API | needs | refused with |
//! |---|---|---|
//! | Produce | WRITE topic | TOPIC_AUTHORIZATION_FAILED per partition |
//! | Fetch (consumer) / (follower) | READ topic / CLUSTER_ACTION cluster | TOPIC_AUTHORIZATION_FAILED per partition |
//! | ListOffsets, OffsetForLeaderEpoch | DESCRIBE topic (a follower: CLUSTER_ACTION) | per partition |
//! | Metadata, DescribeTopicPartitions | DESCRIBE topic; auto-creation CREATE cluster or topic | unauthorized topics left out of "all topics", TOPIC_AUTHORIZATION_FAILED when named |
//! | CreateTopics | CREATE cluster or topic | per topic |
//! | DeleteTopics, DeleteRecords | DELETE topic | per topic / partition |
//! | CreatePartitions | ALTER topic | per topic |
//! | DescribeConfigs / AlterConfigs, IncrementalAlterConfigs | DESCRIBE_CONFIGS / ALTER_CONFIGS topic or group, or cluster for a broker | per resource (TOPIC_ / GROUP_ / CLUSTER_AUTHORIZATION_FAILED) |
//! | DescribeProducers | READ topic | per partition |
//! | FindCoordinator | DESCRIBE group | GROUP_AUTHORIZATION_FAILED |
//! | Join/Sync/Heartbeat/LeaveGroup | READ group | GROUP_AUTHORIZATION_FAILED |
//! | ConsumerGroupHeartbeat | READ group, DESCRIBE each topic named | GROUP_ / TOPIC_AUTHORIZATION_FAILED; a regular expression matches only topics with DESCRIBE |
//! | OffsetCommit | READ group, READ topic | per partition |
//! | OffsetFetch | DESCRIBE group, DESCRIBE topic | group error; unauthorized topics left out of "all", per partition when named |
//! | DescribeGroups, ConsumerGroupDescribe / DeleteGroups | DESCRIBE / DELETE group (ConsumerGroupDescribe: and DESCRIBE on the group's topics) | per group |
//! | OffsetDelete | DELETE group, READ topic | GROUP_AUTHORIZATION_FAILED at the top; per partition |
//! | ListGroups | DESCRIBE cluster, else DESCRIBE per group | unauthorized groups left out |
//! | ShareGroupHeartbeat / ShareFetch, ShareAcknowledge ([`super::share_authz`]) | READ group, DESCRIBE / READ topic | GROUP_ / TOPIC_AUTHORIZATION_FAILED at the top |
//! | ShareGroupDescribe, DescribeShareGroupOffsets ([`super::share_authz`]) | DESCRIBE group | per group |
//! | InitProducerId | IDEMPOTENT_WRITE cluster, or WRITE on some topic | CLUSTER_AUTHORIZATION_FAILED |
//! | DescribeCluster, DescribeLogDirs, ListPartitionReassignments, DescribeQuorum, DescribeAcls, DescribeUserScramCredentials | DESCRIBE cluster | CLUSTER_AUTHORIZATION_FAILED |
//! | ListConfigResources, DescribeClientQuotas | DESCRIBE_CONFIGS cluster | CLUSTER_AUTHORIZATION_FAILED |
//! | AlterClientQuotas | ALTER_CONFIGS cluster | CLUSTER_AUTHORIZATION_FAILED per entity |
//! | AlterPartitionReassignments, ElectLeaders, UnregisterBroker, CreateAcls, DeleteAcls, AlterUserScramCredentials | ALTER cluster | CLUSTER_AUTHORIZATION_FAILED |
//!
//! Without an authorizer every check is `true` and costs nothing. With one, a request's checks
//! read one snapshot of the ACLs (an `Arc` of the cluster state).
//!
//! The functions here split a decoded request into what the handler serves and what is
//! answered refused, and put the refusals back into the handler's response; the data-path
//! handlers (Produce, Fetch, Metadata, FindCoordinator) ask [`Access`] inline.

use std::net::IpAddr;
use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{catalog, Caller};
use crate::cluster::state::ClusterState;
use crate::context::BrokerContext;
pub use crate::security::acl::{Operation, ResourceType};
use crate::security::acl::{Permission, CLUSTER_NAME, WILDCARD};
use crate::security::{Principal, Security};

pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

/// Config resource types (DescribeConfigs, AlterConfigs).
const CONFIG_TOPIC: i8 = 2;
const CONFIG_GROUP: i8 = 32;

/// One request's view of the authorizer.
#[derive(Clone)]
pub struct Access {
    security: Arc<Security>,
    /// The ACLs (only loaded with an authorizer).
    state: Option<Arc<ClusterState>>,
    principal: Principal,
    host: IpAddr,
}

impl Access {
    pub fn new(ctx: &BrokerContext, caller: &Caller) -> Access {
        let on = ctx.security.authorizer.is_some();
        Access {
            security: Arc::clone(&ctx.security),
            state: on.then(|| ctx.cluster.state()),
            principal: caller.principal.clone(),
            host: caller.peer.ip(),
        }
    }

    /// The caller's principal (`User:alice`, or `User:ANONYMOUS` without authentication):
    /// what a fetch session belongs to.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Whether an authorizer checks requests at all.
    pub fn on(&self) -> bool {
        self.state.is_some()
    }

    pub fn allows(&self, op: Operation, resource_type: ResourceType, name: &str) -> bool {
        let Some(state) = &self.state else {
            return true;
        };
        let allowed = self.security.allows(
            &state.acls,
            &self.principal,
            self.host,
            op,
            resource_type,
            name,
        );
        if !allowed {
            tracing::debug!(principal = %self.principal, host = %self.host, operation = op.name(),
                resource_type = resource_type.name(), resource = name, "denied");
        }
        allowed
    }

    pub fn topic(&self, op: Operation, name: &str) -> bool {
        self.allows(op, ResourceType::Topic, name)
    }

    pub fn group(&self, op: Operation, name: &str) -> bool {
        self.allows(op, ResourceType::Group, name)
    }

    pub fn transactional_id(&self, op: Operation, id: &str) -> bool {
        self.allows(op, ResourceType::TransactionalId, id)
    }

    pub fn cluster(&self, op: Operation) -> bool {
        self.allows(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Kafka's `authorizeByResourceType`: whether some binding lets the principal do `op` on
    /// some resource of the type, and no DENY covers every such resource.
    pub fn any_of_type(&self, op: Operation, resource_type: ResourceType) -> bool {
        let Some(state) = &self.state else {
            return true;
        };
        if self.security.is_super_user(&self.principal) {
            return true;
        }
        let who = self.principal.to_string();
        let from = self.host.to_string();
        let applies = |b: &&crate::security::acl::AclBinding| {
            b.resource_type == resource_type
                && (b.principal == who || b.principal == "User:*")
                && (b.host == from || b.host == WILDCARD)
        };
        let denied_everywhere = state.acls.iter().filter(applies).any(|b| {
            b.permission == Permission::Deny
                && (b.operation == op || b.operation == Operation::All)
                && b.name == WILDCARD
        });
        !denied_everywhere
            && state.acls.iter().filter(applies).any(|b| {
                b.permission == Permission::Allow
                    && (b.operation == op || b.operation == Operation::All)
            })
    }
}

fn denied_msg() -> Option<StrBytes> {
    None
}

/// Splits `items` into the allowed and the refused ones.
fn split<T>(items: Vec<T>, mut allowed: impl FnMut(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|t| allowed(t))
}

// ---------------------------------------------------------------------------------------------
// Per-partition topic APIs: the refused topics come back with every partition refused.

pub fn list_offsets(
    a: &Access,
    req: &mut ListOffsetsRequest,
) -> Vec<list_offsets_response::ListOffsetsTopicResponse> {
    use list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
    if !a.on() {
        return Vec::new();
    }
    let (ok, refused) = split(std::mem::take(&mut req.topics), |t| {
        a.topic(Operation::Describe, t.name.as_str())
    });
    req.topics = ok;
    refused
        .into_iter()
        .map(|t| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                .with_timestamp(-1)
                                .with_offset(-1)
                                .with_leader_epoch(-1)
                        })
                        .collect(),
                )
        })
        .collect()
}

pub fn offset_for_leader_epoch(
    a: &Access,
    req: &mut OffsetForLeaderEpochRequest,
) -> Vec<offset_for_leader_epoch_response::OffsetForLeaderTopicResult> {
    use offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
    if !a.on() {
        return Vec::new();
    }
    let replica = req.replica_id.0 >= 0;
    let cluster_action = replica && a.cluster(Operation::ClusterAction);
    let (ok, refused) = split(std::mem::take(&mut req.topics), |t| {
        if replica {
            cluster_action
        } else {
            a.topic(Operation::Describe, t.topic.as_str())
        }
    });
    req.topics = ok;
    refused
        .into_iter()
        .map(|t| {
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            EpochEndOffset::default()
                                .with_partition(p.partition)
                                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                .with_leader_epoch(-1)
                                .with_end_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect()
}

pub fn delete_records(
    a: &Access,
    req: &mut DeleteRecordsRequest,
) -> Vec<delete_records_response::DeleteRecordsTopicResult> {
    use delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
    if !a.on() {
        return Vec::new();
    }
    let (ok, refused) = split(std::mem::take(&mut req.topics), |t| {
        a.topic(Operation::Delete, t.name.as_str())
    });
    req.topics = ok;
    refused
        .into_iter()
        .map(|t| {
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                        })
                        .collect(),
                )
        })
        .collect()
}

pub fn describe_producers(
    a: &Access,
    req: &mut DescribeProducersRequest,
) -> Vec<describe_producers_response::TopicResponse> {
    use describe_producers_response::{PartitionResponse, TopicResponse};
    if !a.on() {
        return Vec::new();
    }
    let (ok, refused) = split(std::mem::take(&mut req.topics), |t| {
        a.topic(Operation::Read, t.name.as_str())
    });
    req.topics = ok;
    refused
        .into_iter()
        .map(|t| {
            TopicResponse::default().with_name(t.name).with_partitions(
                t.partition_indexes
                    .iter()
                    .map(|p| {
                        PartitionResponse::default()
                            .with_partition_index(*p)
                            .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                            .with_error_message(denied_msg())
                    })
                    .collect(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Per-topic admin APIs.

pub fn create_topics(
    a: &Access,
    req: &mut CreateTopicsRequest,
) -> Vec<create_topics_response::CreatableTopicResult> {
    use create_topics_response::CreatableTopicResult;
    if !a.on() || a.cluster(Operation::Create) {
        return Vec::new();
    }
    let (ok, refused) = split(std::mem::take(&mut req.topics), |t| {
        a.topic(Operation::Create, t.name.as_str())
    });
    req.topics = ok;
    refused
        .into_iter()
        .map(|t| {
            CreatableTopicResult::default()
                .with_name(t.name)
                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                .with_topic_config_error_code(TOPIC_AUTHORIZATION_FAILED)
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_configs(None)
        })
        .collect()
}

pub fn delete_topics(
    ctx: &BrokerContext,
    a: &Access,
    req: &mut DeleteTopicsRequest,
) -> Vec<delete_topics_response::DeletableTopicResult> {
    use delete_topics_response::DeletableTopicResult;
    if !a.on() {
        return Vec::new();
    }
    let mut refused = Vec::new();
    let names = std::mem::take(&mut req.topic_names);
    for n in names {
        if a.topic(Operation::Delete, n.as_str()) {
            req.topic_names.push(n);
        } else {
            refused.push(
                DeletableTopicResult::default()
                    .with_name(Some(n))
                    .with_error_code(TOPIC_AUTHORIZATION_FAILED),
            );
        }
    }
    for t in std::mem::take(&mut req.topics) {
        let name = match &t.name {
            Some(n) if t.topic_id.is_nil() => Some(n.as_str().to_string()),
            // By id: an unknown id is the handler's UNKNOWN_TOPIC_ID.
            _ => catalog::topic_by_id(ctx, t.topic_id).map(|m| m.name),
        };
        match name {
            Some(n) if !a.topic(Operation::Delete, &n) => refused.push(
                DeletableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_error_code(TOPIC_AUTHORIZATION_FAILED),
            ),
            _ => req.topics.push(t),
        }
    }
    refused
}

pub fn create_partitions(
    a: &Access,
    req: &mut CreatePartitionsRequest,
) -> Vec<create_partitions_response::CreatePartitionsTopicResult> {
    use create_partitions_response::CreatePartitionsTopicResult;
    if !a.on() {
        return Vec::new();
    }
    let (ok, refused) = split(std::mem::take(&mut req.topics), |t| {
        a.topic(Operation::Alter, t.name.as_str())
    });
    req.topics = ok;
    refused
        .into_iter()
        .map(|t| {
            CreatePartitionsTopicResult::default()
                .with_name(t.name)
                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
        })
        .collect()
}

/// A config resource's check: topics and groups by name, everything else (brokers, loggers)
/// as the cluster. `Err(code)` when refused.
fn config_resource(a: &Access, op: Operation, resource_type: i8, name: &str) -> Result<(), i16> {
    if resource_type == CONFIG_TOPIC {
        a.topic(op, name)
            .then_some(())
            .ok_or(TOPIC_AUTHORIZATION_FAILED)
    } else if resource_type == CONFIG_GROUP {
        a.group(op, name)
            .then_some(())
            .ok_or(GROUP_AUTHORIZATION_FAILED)
    } else {
        a.cluster(op)
            .then_some(())
            .ok_or(CLUSTER_AUTHORIZATION_FAILED)
    }
}

pub fn describe_configs(
    a: &Access,
    req: &mut DescribeConfigsRequest,
) -> Vec<describe_configs_response::DescribeConfigsResult> {
    use describe_configs_response::DescribeConfigsResult;
    if !a.on() {
        return Vec::new();
    }
    let mut refused = Vec::new();
    for r in std::mem::take(&mut req.resources) {
        match config_resource(
            a,
            Operation::DescribeConfigs,
            r.resource_type,
            r.resource_name.as_str(),
        ) {
            Ok(()) => req.resources.push(r),
            Err(code) => refused.push(
                DescribeConfigsResult::default()
                    .with_error_code(code)
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name),
            ),
        }
    }
    refused
}

pub fn alter_configs(
    a: &Access,
    req: &mut AlterConfigsRequest,
) -> Vec<alter_configs_response::AlterConfigsResourceResponse> {
    use alter_configs_response::AlterConfigsResourceResponse;
    if !a.on() {
        return Vec::new();
    }
    let mut refused = Vec::new();
    for r in std::mem::take(&mut req.resources) {
        match config_resource(
            a,
            Operation::AlterConfigs,
            r.resource_type,
            r.resource_name.as_str(),
        ) {
            Ok(()) => req.resources.push(r),
            Err(code) => refused.push(
                AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name),
            ),
        }
    }
    refused
}

pub fn incremental_alter_configs(
    a: &Access,
    req: &mut IncrementalAlterConfigsRequest,
) -> Vec<incremental_alter_configs_response::AlterConfigsResourceResponse> {
    use incremental_alter_configs_response::AlterConfigsResourceResponse;
    if !a.on() {
        return Vec::new();
    }
    let mut refused = Vec::new();
    for r in std::mem::take(&mut req.resources) {
        match config_resource(
            a,
            Operation::AlterConfigs,
            r.resource_type,
            r.resource_name.as_str(),
        ) {
            Ok(()) => req.resources.push(r),
            Err(code) => refused.push(
                AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name),
            ),
        }
    }
    refused
}

// ---------------------------------------------------------------------------------------------
// Groups.

/// Join, Sync, Heartbeat and Leave need READ on the group: `Some(response)` when refused.
pub fn join_group(a: &Access, req: &JoinGroupRequest) -> Option<JoinGroupResponse> {
    (!a.group(Operation::Read, req.group_id.as_str())).then(|| {
        JoinGroupResponse::default()
            .with_error_code(GROUP_AUTHORIZATION_FAILED)
            .with_generation_id(-1)
    })
}

/// ConsumerGroupHeartbeat (KIP-848): READ on the group, as the classic join, and DESCRIBE on
/// every topic subscribed by name (KAFKA-18813: a client may not learn of a topic it cannot
/// see through its assignment). The topics a regular expression matches are filtered by
/// [`topic_filter`] instead.
pub fn consumer_group_heartbeat(
    a: &Access,
    req: &ConsumerGroupHeartbeatRequest,
) -> Option<ConsumerGroupHeartbeatResponse> {
    let refuse = |code: i16, message: String| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if !a.group(Operation::Read, req.group_id.as_str()) {
        return Some(refuse(
            GROUP_AUTHORIZATION_FAILED,
            format!("Not authorized to read group {}.", req.group_id.as_str()),
        ));
    }
    let names = req.subscribed_topic_names.as_deref().unwrap_or_default();
    let denied: Vec<&str> = names
        .iter()
        .map(|t| t.as_str())
        .filter(|t| !a.topic(Operation::Describe, t))
        .collect();
    (!denied.is_empty()).then(|| {
        refuse(
            TOPIC_AUTHORIZATION_FAILED,
            format!(
                "Not authorized to describe the subscribed topic(s) {}.",
                denied.join(", ")
            ),
        )
    })
}

/// The topics the caller may DESCRIBE, for what the group coordinator resolves on its behalf
/// (a consumer-group member's regular expression); `None` without an authorizer.
pub fn topic_filter(a: &Access) -> Option<crate::group::TopicFilter> {
    let a = a.clone();
    a.on()
        .then(|| Arc::new(move |t: &str| a.topic(Operation::Describe, t)) as _)
}

/// ConsumerGroupDescribe, after the coordinator answered: a group naming a topic the caller
/// may not DESCRIBE (subscribed, assigned or in the target assignment) is answered
/// TOPIC_AUTHORIZATION_FAILED without its members, as Kafka does (KAFKA-18813).
pub fn consumer_group_describe_topics(a: &Access, resp: &mut ConsumerGroupDescribeResponse) {
    if !a.on() {
        return;
    }
    for g in resp.groups.iter_mut().filter(|g| g.error_code == 0) {
        let denied = g
            .members
            .iter()
            .flat_map(|m| {
                let assigned = [&m.assignment, &m.target_assignment]
                    .into_iter()
                    .flat_map(|x| x.topic_partitions.iter().map(|tp| tp.topic_name.as_str()));
                m.subscribed_topic_names
                    .iter()
                    .map(|t| t.as_str())
                    .chain(assigned)
            })
            .any(|t| !a.topic(Operation::Describe, t));
        if denied {
            g.error_code = TOPIC_AUTHORIZATION_FAILED;
            g.error_message = Some(StrBytes::from_string(format!(
                "Not authorized to describe every topic group {} subscribes to or is assigned.",
                g.group_id.as_str()
            )));
            g.members.clear();
        }
    }
}

/// ConsumerGroupDescribe: DESCRIBE on each group (the refused ones answered here).
pub fn consumer_group_describe(
    a: &Access,
    req: &mut ConsumerGroupDescribeRequest,
) -> Vec<consumer_group_describe_response::DescribedGroup> {
    use consumer_group_describe_response::DescribedGroup;
    if !a.on() {
        return Vec::new();
    }
    let (ok, refused) = split(std::mem::take(&mut req.group_ids), |g| {
        a.group(Operation::Describe, g.as_str())
    });
    req.group_ids = ok;
    refused
        .into_iter()
        .map(|g| {
            DescribedGroup::default()
                .with_group_id(g)
                .with_error_code(GROUP_AUTHORIZATION_FAILED)
                .with_authorized_operations(i32::MIN)
        })
        .collect()
}

pub fn sync_group(a: &Access, req: &SyncGroupRequest) -> Option<SyncGroupResponse> {
    (!a.group(Operation::Read, req.group_id.as_str()))
        .then(|| SyncGroupResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED))
}

pub fn heartbeat(a: &Access, req: &HeartbeatRequest) -> Option<HeartbeatResponse> {
    (!a.group(Operation::Read, req.group_id.as_str()))
        .then(|| HeartbeatResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED))
}

pub fn leave_group(a: &Access, req: &LeaveGroupRequest) -> Option<LeaveGroupResponse> {
    (!a.group(Operation::Read, req.group_id.as_str()))
        .then(|| LeaveGroupResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED))
}

/// OffsetCommit: READ on the group (else every partition GROUP_AUTHORIZATION_FAILED) and on
/// each topic.
pub fn offset_commit(
    a: &Access,
    req: &mut OffsetCommitRequest,
) -> (bool, Vec<offset_commit_response::OffsetCommitResponseTopic>) {
    use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    if !a.on() {
        return (true, Vec::new());
    }
    let group_ok = a.group(Operation::Read, req.group_id.as_str());
    let refuse = |t: offset_commit_request::OffsetCommitRequestTopic, code: i16| {
        OffsetCommitResponseTopic::default()
            .with_name(t.name)
            .with_topic_id(t.topic_id)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
    };
    if !group_ok {
        let all = std::mem::take(&mut req.topics);
        return (
            false,
            all.into_iter()
                .map(|t| refuse(t, GROUP_AUTHORIZATION_FAILED))
                .collect(),
        );
    }
    let (ok, refused) = split(std::mem::take(&mut req.topics), |t| {
        a.topic(Operation::Read, t.name.as_str())
    });
    req.topics = ok;
    (
        true,
        refused
            .into_iter()
            .map(|t| refuse(t, TOPIC_AUTHORIZATION_FAILED))
            .collect(),
    )
}

/// TxnOffsetCommit: WRITE on the transactional id and READ on the group (each refused whole:
/// every partition gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED or GROUP_AUTHORIZATION_FAILED),
/// READ on each topic (TOPIC_AUTHORIZATION_FAILED per partition). The refused topics are
/// taken out of `req` and returned answered.
pub fn txn_offset_commit(
    a: &Access,
    req: &mut TxnOffsetCommitRequest,
) -> Vec<txn_offset_commit_response::TxnOffsetCommitResponseTopic> {
    use super::txn::refuse_txn_offsets_topic as refuse;
    if !a.on() {
        return Vec::new();
    }
    let whole = if !a.transactional_id(Operation::Write, req.transactional_id.as_str()) {
        Some(super::codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !a.group(Operation::Read, req.group_id.as_str()) {
        Some(GROUP_AUTHORIZATION_FAILED)
    } else {
        None
    };
    if let Some(code) = whole {
        let all = std::mem::take(&mut req.topics);
        return all.into_iter().map(|t| refuse(t, code)).collect();
    }
    let (ok, refused) = split(std::mem::take(&mut req.topics), |t| {
        a.topic(Operation::Read, t.name.as_str())
    });
    req.topics = ok;
    refused
        .into_iter()
        .map(|t| refuse(t, TOPIC_AUTHORIZATION_FAILED))
        .collect()
}

/// OffsetDelete: DELETE on the group (refused whole, GROUP_AUTHORIZATION_FAILED at the top,
/// when missing) and READ on each topic (TOPIC_AUTHORIZATION_FAILED per partition).
pub fn offset_delete(
    a: &Access,
    req: &mut OffsetDeleteRequest,
) -> (bool, Vec<offset_delete_response::OffsetDeleteResponseTopic>) {
    use offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
    if !a.on() {
        return (true, Vec::new());
    }
    if !a.group(Operation::Delete, req.group_id.as_str()) {
        return (false, Vec::new());
    }
    let (ok, refused) = split(std::mem::take(&mut req.topics), |t| {
        a.topic(Operation::Read, t.name.as_str())
    });
    req.topics = ok;
    let refused = refused
        .into_iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                        })
                        .collect(),
                )
        })
        .collect();
    (true, refused)
}

/// What OffsetFetch does after the checks: the groups and topics refused, and whether the
/// answer for "all topics" must be filtered.
pub struct OffsetFetchCheck {
    /// v0–v7: the one group is refused.
    pub group_refused: bool,
    /// v8+: the refused groups.
    pub refused_groups: Vec<offset_fetch_response::OffsetFetchResponseGroup>,
    /// v0–v7: the refused named topics.
    pub refused_topics: Vec<offset_fetch_response::OffsetFetchResponseTopic>,
    /// v8+: per group id, its refused named topics.
    pub refused_group_topics: Vec<(
        String,
        Vec<offset_fetch_response::OffsetFetchResponseTopics>,
    )>,
}

pub fn offset_fetch(a: &Access, version: i16, req: &mut OffsetFetchRequest) -> OffsetFetchCheck {
    use offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
        OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    };
    let mut check = OffsetFetchCheck {
        group_refused: false,
        refused_groups: Vec::new(),
        refused_topics: Vec::new(),
        refused_group_topics: Vec::new(),
    };
    if !a.on() {
        return check;
    }
    if version < 8 {
        if !a.group(Operation::Describe, req.group_id.as_str()) {
            check.group_refused = true;
            return check;
        }
        if let Some(topics) = req.topics.take() {
            let (ok, refused) = split(topics, |t| a.topic(Operation::Describe, t.name.as_str()));
            req.topics = Some(ok);
            check.refused_topics = refused
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(-1)
                                        .with_committed_leader_epoch(-1)
                                        .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                })
                                .collect(),
                        )
                })
                .collect();
        }
        return check;
    }
    for mut g in std::mem::take(&mut req.groups) {
        if !a.group(Operation::Describe, g.group_id.as_str()) {
            check.refused_groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(GROUP_AUTHORIZATION_FAILED),
            );
            continue;
        }
        if let Some(topics) = g.topics.take() {
            let (ok, refused) = split(topics, |t| a.topic(Operation::Describe, t.name.as_str()));
            g.topics = Some(ok);
            if !refused.is_empty() {
                check.refused_group_topics.push((
                    g.group_id.as_str().to_string(),
                    refused
                        .into_iter()
                        .map(|t| {
                            OffsetFetchResponseTopics::default()
                                .with_name(t.name)
                                .with_topic_id(t.topic_id)
                                .with_partitions(
                                    t.partition_indexes
                                        .iter()
                                        .map(|p| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(*p)
                                                .with_committed_offset(-1)
                                                .with_committed_leader_epoch(-1)
                                                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ));
            }
        }
        req.groups.push(g);
    }
    check
}

/// Puts OffsetFetch's refusals into the coordinator's answer and leaves the unauthorized
/// topics out of an "all topics" answer.
pub fn finish_offset_fetch(
    a: &Access,
    version: i16,
    check: OffsetFetchCheck,
    resp: &mut OffsetFetchResponse,
) {
    if !a.on() {
        return;
    }
    if version < 8 {
        resp.topics
            .retain(|t| a.topic(Operation::Describe, t.name.as_str()));
        resp.topics.extend(check.refused_topics);
        return;
    }
    for g in &mut resp.groups {
        g.topics
            .retain(|t| a.topic(Operation::Describe, t.name.as_str()));
        if let Some((_, refused)) = check
            .refused_group_topics
            .iter()
            .find(|(id, _)| id == g.group_id.as_str())
        {
            g.topics.extend(refused.iter().cloned());
        }
    }
    resp.groups.extend(check.refused_groups);
}

/// OffsetFetch for a refused group (v0–v7).
pub fn offset_fetch_refused(version: i16, req: &OffsetFetchRequest) -> OffsetFetchResponse {
    use offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
    let mut resp = OffsetFetchResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED);
    if version < 2 {
        // No top-level error code before v2: every partition carries it.
        resp.topics = req
            .topics
            .iter()
            .flatten()
            .map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_error_code(GROUP_AUTHORIZATION_FAILED)
                            })
                            .collect(),
                    )
            })
            .collect();
    }
    resp
}

pub fn describe_groups(
    a: &Access,
    req: &mut DescribeGroupsRequest,
) -> Vec<describe_groups_response::DescribedGroup> {
    use describe_groups_response::DescribedGroup;
    if !a.on() {
        return Vec::new();
    }
    let (ok, refused) = split(std::mem::take(&mut req.groups), |g| {
        a.group(Operation::Describe, g.as_str())
    });
    req.groups = ok;
    refused
        .into_iter()
        .map(|g| {
            DescribedGroup::default()
                .with_group_id(g)
                .with_error_code(GROUP_AUTHORIZATION_FAILED)
                .with_authorized_operations(i32::MIN)
        })
        .collect()
}

pub fn delete_groups(
    a: &Access,
    req: &mut DeleteGroupsRequest,
) -> Vec<delete_groups_response::DeletableGroupResult> {
    use delete_groups_response::DeletableGroupResult;
    if !a.on() {
        return Vec::new();
    }
    let (ok, refused) = split(std::mem::take(&mut req.groups_names), |g| {
        a.group(Operation::Delete, g.as_str())
    });
    req.groups_names = ok;
    refused
        .into_iter()
        .map(|g| {
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(GROUP_AUTHORIZATION_FAILED)
        })
        .collect()
}

/// ListGroups: everything with DESCRIBE on the cluster, else the groups the caller may
/// describe.
pub fn list_groups(a: &Access, resp: &mut ListGroupsResponse) {
    if a.on() && !a.cluster(Operation::Describe) {
        resp.groups
            .retain(|g| a.group(Operation::Describe, g.group_id.as_str()));
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster-level APIs: a refused request gets its response with the error at the top.

/// The operation a cluster-level API needs, if it is one.
pub fn cluster_operation(key: ApiKey) -> Option<Operation> {
    match key {
        ApiKey::DescribeCluster
        | ApiKey::DescribeLogDirs
        | ApiKey::ListPartitionReassignments
        | ApiKey::DescribeQuorum
        | ApiKey::DescribeAcls
        | ApiKey::DescribeUserScramCredentials => Some(Operation::Describe),
        ApiKey::ListConfigResources | ApiKey::DescribeClientQuotas => {
            Some(Operation::DescribeConfigs)
        }
        ApiKey::AlterClientQuotas => Some(Operation::AlterConfigs),
        ApiKey::AlterPartitionReassignments
        | ApiKey::ElectLeaders
        | ApiKey::UnregisterBroker
        | ApiKey::CreateAcls
        | ApiKey::DeleteAcls
        | ApiKey::AlterUserScramCredentials => Some(Operation::Alter),
        ApiKey::WriteTxnMarkers => Some(Operation::ClusterAction),
        _ => None,
    }
}

/// The message refused cluster-level requests carry.
pub fn cluster_denied_message(op: Operation) -> Option<StrBytes> {
    Some(StrBytes::from_string(format!(
        "Cluster authorization failed: {} on the cluster is not allowed",
        op.name()
    )))
}
