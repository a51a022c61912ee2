//! The cluster metadata: what every broker agrees on through the Raft quorum.
//!
//! [`ClusterState`] is the state machine of the metadata log and [`Command`] its entries.
//! [`ClusterState::apply`] is pure and deterministic: every broker applies the same commands in
//! the same order and ends with the same state, so anything that varies between brokers (clock,
//! random ids, config validation that depends on the binary's version) is decided by the broker
//! that *proposes* a command and carried inside it. A command that is refused (a topic that
//! already exists, a broker that still holds replicas) changes nothing and yields
//! [`Outcome::Refused`] with the Kafka error code the client will see.
//!
//! Placement of new partitions' replicas: [`super::placement`]. One partition's leader, ISR and
//! reassignment rules: [`super::partition`]. Consumer groups are not placed here any more:
//! their coordinators are the leaders of `__consumer_offsets`' partitions. The group commands
//! of earlier versions stay in [`Command`] so that old metadata logs still replay.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::partition::Refusal;
pub use super::partition::{PartitionRecord, NO_LEADER};
use super::placement::{self, Candidate, Load};
use crate::quota::{ClientQuota, QuotaEntity};
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::scram::ScramCredential;
use crate::security::Mechanism;

/// Kafka error codes the state machine refuses with (a subset of Kafka's `Errors.java`).
pub mod code {
    pub use super::super::partition::code::*;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
    pub const UNSUPPORTED_VERSION: i16 = 35;
}

/// Entries of the metadata log that brokers of some earlier versions cannot decode, by name
/// (what Kafka's `metadata.version` levels are for). A broker that meets an entry it cannot
/// decode stops following the log there (it refuses the append, and a quorum of such brokers
/// commits nothing more), so an entry that needs a feature is proposed only once every live
/// broker says it has it (its Probe answer, [`super::network::ProbeReply::features`]).
pub const FEATURE_GROUP_CONFIGS: &str = "group_configs";
/// Client quotas (`AlterClientQuotas` entries).
pub const FEATURE_CLIENT_QUOTAS: &str = "client_quotas";
/// Every feature this version has.
pub const FEATURES: &[&str] = &[FEATURE_GROUP_CONFIGS, FEATURE_CLIENT_QUOTAS];

impl Command {
    /// The feature a broker needs to decode this entry; `None` for entries every version
    /// since replication reads.
    pub fn feature(&self) -> Option<&'static str> {
        match self {
            Command::AlterGroupConfigs { .. } => Some(FEATURE_GROUP_CONFIGS),
            Command::AlterClientQuotas { .. } => Some(FEATURE_CLIENT_QUOTAS),
            _ => None,
        }
    }
}

/// Why `feature` cannot be used yet, from each live broker's answer (its features, or why
/// it gave none): one line per broker that lacks it; empty when all have it.
pub fn lacking_feature(
    feature: &str,
    answers: &[(i32, Result<Vec<String>, String>)],
) -> Vec<String> {
    answers
        .iter()
        .filter_map(|(id, answer)| match answer {
            Ok(features) if features.iter().any(|f| f == feature) => None,
            Ok(_) => Some(format!("broker {id} runs a version without {feature}")),
            Err(why) => Some(format!(
                "broker {id} did not say which version it runs ({why})"
            )),
        })
        .collect()
}

/// The topic config that lets an out-of-sync replica lead when no in-sync one is alive.
pub const UNCLEAN_ELECTION_CONFIG: &str = "unclean.leader.election.enable";

impl BrokerRecord {
    /// Where a client of listener `name` reaches this broker: that listener's address, `None`
    /// when the broker has no such listener (Kafka leaves such brokers out of its answer).
    pub fn endpoint(&self, name: &str) -> Option<(&str, i32)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.host.as_str(), e.port))
    }
}

/// Whether a broker takes new partitions and group coordinators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BrokerState {
    /// Serving, and a candidate for new placements.
    #[default]
    Active,
    /// Being drained before removal: keeps serving what it holds, gets nothing new.
    Draining,
    /// Unreachable from the quorum leader: it leads nothing, has left every ISR, and gets
    /// nothing new until it answers again (or re-registers after a restart).
    Fenced,
    /// Stopping on purpose (controlled shutdown): as fenced, until it registers again.
    ShuttingDown,
}

impl BrokerState {
    /// Alive: may lead partitions and be in sync.
    pub fn is_alive(self) -> bool {
        matches!(self, BrokerState::Active | BrokerState::Draining)
    }
}

/// One advertised Kafka listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener's name (upper case), e.g. `CLIENT`.
    pub name: String,
    pub host: String,
    pub port: i32,
}

/// A broker as registered in the quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: i32,
    /// The advertised address of its inter-broker listener: where other brokers (followers,
    /// forwarded requests) connect, and what brokers registered before listeners existed gave
    /// every client.
    pub host: String,
    pub port: i32,
    /// Every advertised listener; a client is given the one it connected through (empty in
    /// registrations from before named listeners: `host`/`port` serve everyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Endpoint>,
    /// The inter-broker (`--cluster-listen`) address other brokers reach it at.
    pub cluster_addr: String,
    pub rack: Option<String>,
    pub state: BrokerState,
    /// Set in a registration by a broker that started on a volume without cluster state: if
    /// the cluster knew this id, the copies it had are gone (a deleted PVC). Never stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fresh_volume: bool,
}

/// One topic: its id, its config overrides and its partitions (index = partition number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: Uuid,
    /// Per-topic overrides only; defaults come from each broker's flags.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRecord>,
}

impl TopicRecord {
    /// The replication factor: the replica count of the first partition's target set.
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .first()
            .map(|p| p.target_replicas().len())
            .unwrap_or(1)
    }

    fn unclean_election(&self) -> bool {
        self.configs
            .get(UNCLEAN_ELECTION_CONFIG)
            .is_some_and(|v| v == "true")
    }
}

/// Which broker coordinates a consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub coordinator: i32,
}

/// One change of a topic's config overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigChange {
    Set(String, String),
    Delete(String),
}

/// Which kind of leader election ElectLeaders asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionKind {
    /// The first replica leads again if it is alive and in sync.
    Preferred,
    /// An offline partition is led by any live replica, in sync or not.
    Unclean,
}

/// An entry of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets the cluster id once (the founding broker's); later proposals learn the existing one.
    InitCluster {
        cluster_id: String,
    },
    /// Adds a broker, or registers its restart (new addresses; a fenced or shut-down broker is
    /// alive again; a broker that restarted while still registered as alive first gives up
    /// its leaderships and ISR places, as if it had been fenced). A draining mark is kept.
    RegisterBroker(BrokerRecord),
    /// Marks a broker as draining, active again, or fenced (the quorum leader's liveness
    /// check): a broker that stops being alive leads nothing and leaves every ISR.
    SetBrokerState {
        id: i32,
        state: BrokerState,
    },
    /// A broker stopping on purpose: leadership moves to other in-sync replicas and it leaves
    /// every ISR before it goes (Kafka's controlled shutdown).
    ControlledShutdown {
        id: i32,
    },
    /// Removes a broker; refused while it holds replicas.
    UnregisterBroker {
        id: i32,
    },
    /// A new topic. `assignment` (one replica list per partition, leader first) places it
    /// by hand; otherwise `replication_factor` copies of each partition are placed.
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        #[serde(default = "one")]
        replication_factor: i32,
        #[serde(default)]
        assignment: Option<Vec<Vec<i32>>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `total` partitions (Kafka never shrinks one), with the topic's
    /// replication factor, placed by hand when `assignment` lists the new partitions.
    CreatePartitions {
        name: String,
        total: i32,
        #[serde(default)]
        assignment: Option<Vec<Vec<i32>>>,
    },
    /// `replace = true` (AlterConfigs) drops every override not set by `changes`;
    /// `false` (IncrementalAlterConfigs) applies the changes to the current overrides.
    AlterTopicConfigs {
        name: String,
        changes: Vec<ConfigChange>,
        replace: bool,
    },
    /// A group's config overrides, as [`Command::AlterTopicConfigs`] a topic's. The group
    /// need not exist: its configs apply when it does.
    AlterGroupConfigs {
        group: String,
        changes: Vec<ConfigChange>,
        replace: bool,
    },
    /// Sets and removes client quotas on one entity (AlterClientQuotas), validated by the
    /// proposer; an entity left with no quota has no entry.
    AlterClientQuotas {
        entity: QuotaEntity,
        set: Vec<(String, i64)>,
        remove: Vec<String>,
    },
    /// (Earlier versions; no longer proposed.) Places a group's coordinator if it has none;
    /// answers the current one otherwise.
    AssignGroup {
        group: String,
    },
    /// (Earlier versions; no longer proposed.) Moves a group's coordinator role to `to`.
    MoveGroup {
        group: String,
        to: i32,
    },
    DeleteGroup {
        group: String,
    },
    /// The leader changes a partition's ISR (Kafka's AlterPartition), from the view at
    /// `leader_epoch` / `partition_epoch`. Completes a reassignment whose added replicas are
    /// then all in sync.
    AlterPartition {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// Starts (or replaces) a reassignment of a partition to `replicas`; `None` cancels the one
    /// in progress (AlterPartitionReassignments).
    Reassign {
        topic: String,
        partition: i32,
        replicas: Option<Vec<i32>>,
    },
    /// Leader elections (ElectLeaders, and the periodic preferred-leader rebalance).
    ElectLeaders {
        kind: ElectionKind,
        partitions: Vec<(String, i32)>,
    },
    /// Reserves `count` producer ids for one broker, so ids are unique cluster-wide.
    AllocateProducerIds {
        broker: i32,
        count: i64,
    },
    /// Adds ACL bindings (CreateAcls); one that exists already stays as it is.
    CreateAcls {
        bindings: Vec<AclBinding>,
    },
    /// Removes every ACL binding each filter matches (DeleteAcls).
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
    /// Sets and removes users' SCRAM credentials (AlterUserScramCredentials), validated by
    /// the proposer. Removing a credential that does not exist changes nothing and is
    /// reported in the outcome.
    AlterScramCredentials {
        upsertions: Vec<(String, Mechanism, ScramCredential)>,
        deletions: Vec<(String, Mechanism)>,
    },
    /// A transaction coordinator's state change (`txns.rs`).
    Txn(TxnCommand),
    /// Metadata logs written before replication: a one-copy move to `target` (now a
    /// reassignment to `[target]`).
    StartReassignment {
        topic: String,
        partition: i32,
        target: i32,
    },
    /// Metadata logs written before replication: cancels a move.
    CancelReassignment {
        topic: String,
        partition: i32,
    },
    /// Metadata logs written before replication: the move's target took over at
    /// `leader_epoch`. Replayed as it was decided then.
    CompleteReassignment {
        topic: String,
        partition: i32,
        target: i32,
        leader_epoch: i32,
    },
}

fn one() -> i32 {
    1
}

/// The result of one partition's election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: i32,
    /// 0, or the Kafka error code (ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE, ...).
    pub code: i16,
    pub message: Option<String>,
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    ClusterId(String),
    Topic {
        name: String,
        topic: TopicRecord,
    },
    /// The partition after an ISR change.
    Partition(PartitionRecord),
    Elections(Vec<ElectionResult>),
    Coordinator(i32),
    ProducerIds {
        first: i64,
        count: i64,
    },
    /// The bindings each DeleteAcls filter removed, in the filters' order.
    AclsDeleted(Vec<Vec<AclBinding>>),
    /// The deletions of an AlterScramCredentials that named no existing credential.
    ScramAltered {
        missing: Vec<(String, Mechanism)>,
    },
    /// A transactional id's state after a [`Command::Txn`].
    Txn(TxnRecord),
    /// Nothing changed; `code` is the Kafka error code for the client, `message` says why.
    Refused {
        code: i16,
        message: String,
    },
}

fn refused(code: i16, message: impl Into<String>) -> Outcome {
    Outcome::Refused {
        code,
        message: message.into(),
    }
}

fn refused_for(topic: &str, partition: i32, r: Refusal) -> Outcome {
    refused(r.code, format!("{topic}-{partition}: {}", r.message))
}

/// The replicated cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRecord>,
    pub topics: BTreeMap<String, TopicRecord>,
    pub groups: BTreeMap<String, GroupRecord>,
    /// The first producer id not yet handed to any broker.
    pub next_producer_id: i64,
    /// Kafka ACLs (`--authorizer acl` checks requests against them).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acls: BTreeSet<AclBinding>,
    /// Users' SCRAM credentials by user and mechanism (never a password).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scram: BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>,
    /// Transactional ids and their current transactions (`txns.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub transactions: BTreeMap<String, TxnRecord>,
    /// Groups' config overrides (Kafka's group configs, `kafka-configs.sh --entity-type
    /// groups`), validated by the proposer; a group id without overrides has no entry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Client quotas (`kafka-configs.sh --entity-type users|clients`), one entry per entity
    /// with at least one quota, in entity order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_quotas: Vec<ClientQuota>,
}

impl ClusterState {
    /// Applies one command. Pure: the same state and command always give the same result.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        match cmd {
            Command::InitCluster { cluster_id } => {
                let id = self.cluster_id.get_or_insert_with(|| cluster_id.clone());
                Outcome::ClusterId(id.clone())
            }
            Command::RegisterBroker(record) => {
                // A broker that registers is alive: that lifts a fence or a shutdown, not a
                // drain.
                let before = self.brokers.get(&record.id).map(|b| b.state);
                let state = match before {
                    Some(BrokerState::Draining) => BrokerState::Draining,
                    _ => BrokerState::Active,
                };
                self.brokers.insert(
                    record.id,
                    BrokerRecord {
                        state,
                        fresh_volume: false,
                        ..record.clone()
                    },
                );
                match before {
                    Some(_) if record.fresh_volume => self.volume_lost(record.id),
                    Some(s) if !s.is_alive() => self.broker_returned(record.id),
                    Some(_) => {
                        // A restart the quorum had not noticed yet (a crash and a quick
                        // return): what it led may have lost unsynced writes, and its copies
                        // may be behind. Like a fence and a return: leadership goes to the
                        // other in-sync replicas, it rejoins the ISRs once caught up.
                        self.broker_stopped(record.id);
                        self.broker_returned(record.id);
                    }
                    None => {}
                }
                Outcome::Done
            }
            Command::SetBrokerState { id, state } => self.set_broker_state(*id, *state),
            Command::ControlledShutdown { id } => {
                self.set_broker_state(*id, BrokerState::ShuttingDown)
            }
            Command::UnregisterBroker { id } => self.unregister(*id),
            Command::CreateTopic {
                name,
                id,
                partitions,
                configs,
                replication_factor,
                assignment,
            } => self.create_topic(
                name,
                *id,
                *partitions,
                configs,
                *replication_factor,
                assignment.as_deref(),
            ),
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Outcome::Done,
                None => unknown_topic(name),
            },
            Command::CreatePartitions {
                name,
                total,
                assignment,
            } => self.create_partitions(name, *total, assignment.as_deref()),
            Command::AlterTopicConfigs {
                name,
                changes,
                replace,
            } => self.alter_configs(name, changes, *replace),
            Command::AlterGroupConfigs {
                group,
                changes,
                replace,
            } => {
                let current = self.group_configs.remove(group).unwrap_or_default();
                let mut configs = if *replace { BTreeMap::new() } else { current };
                for change in changes {
                    match change {
                        ConfigChange::Set(k, v) => {
                            configs.insert(k.clone(), v.clone());
                        }
                        ConfigChange::Delete(k) => {
                            configs.remove(k);
                        }
                    }
                }
                if !configs.is_empty() {
                    self.group_configs.insert(group.clone(), configs);
                }
                Outcome::Done
            }
            Command::AlterClientQuotas {
                entity,
                set,
                remove,
            } => {
                let at = self
                    .client_quotas
                    .binary_search_by(|q| q.entity.cmp(entity));
                let mut values = match at {
                    Ok(i) => self.client_quotas.remove(i).values,
                    Err(_) => BTreeMap::new(),
                };
                for key in remove {
                    values.remove(key);
                }
                values.extend(set.iter().cloned());
                if !values.is_empty() {
                    let i = at.unwrap_or_else(|i| i);
                    let quota = ClientQuota {
                        entity: entity.clone(),
                        values,
                    };
                    self.client_quotas.insert(i, quota);
                }
                Outcome::Done
            }
            Command::AssignGroup { group } => {
                if let Some(g) = self.groups.get(group) {
                    return Outcome::Coordinator(g.coordinator);
                }
                match self.least_loaded(&self.group_counts()) {
                    Some(coordinator) => {
                        self.groups
                            .insert(group.clone(), GroupRecord { coordinator });
                        Outcome::Coordinator(coordinator)
                    }
                    None => refused(
                        code::INVALID_REQUEST,
                        "no active broker can coordinate the group",
                    ),
                }
            }
            Command::MoveGroup { group, to } => {
                if !self.is_active(*to) {
                    return refused(
                        code::BROKER_ID_NOT_REGISTERED,
                        format!("broker {to} is not an active broker"),
                    );
                }
                self.groups
                    .insert(group.clone(), GroupRecord { coordinator: *to });
                Outcome::Coordinator(*to)
            }
            Command::DeleteGroup { group } => {
                self.groups.remove(group);
                Outcome::Done
            }
            Command::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let alive = self.alive_brokers();
                match self.partition_mut(topic, *partition) {
                    Err(o) => o,
                    Ok(p) => {
                        match p.alter_isr(*leader, *leader_epoch, *partition_epoch, isr, &alive) {
                            Ok(()) => Outcome::Partition(p.clone()),
                            Err(r) => refused_for(topic, *partition, r),
                        }
                    }
                }
            }
            Command::Reassign {
                topic,
                partition,
                replicas,
            } => self.reassign(topic, *partition, replicas.as_deref()),
            Command::ElectLeaders { kind, partitions } => self.elect(*kind, partitions),
            Command::Txn(cmd) => self.apply_txn(cmd),
            Command::AllocateProducerIds { broker, count } => {
                if *count <= 0 {
                    return refused(code::INVALID_REQUEST, "producer id block must be positive");
                }
                if !self.brokers.contains_key(broker) {
                    return refused(
                        code::BROKER_ID_NOT_REGISTERED,
                        format!("broker {broker} is not registered"),
                    );
                }
                let first = self.next_producer_id;
                self.next_producer_id = first.saturating_add(*count);
                Outcome::ProducerIds {
                    first,
                    count: *count,
                }
            }
            Command::CreateAcls { bindings } => {
                self.acls.extend(bindings.iter().cloned());
                Outcome::Done
            }
            Command::DeleteAcls { filters } => {
                let removed = filters
                    .iter()
                    .map(|f| {
                        let gone: Vec<AclBinding> =
                            self.acls.iter().filter(|b| f.matches(b)).cloned().collect();
                        for b in &gone {
                            self.acls.remove(b);
                        }
                        gone
                    })
                    .collect();
                Outcome::AclsDeleted(removed)
            }
            Command::AlterScramCredentials {
                upsertions,
                deletions,
            } => {
                let mut missing = Vec::new();
                for (user, mechanism) in deletions {
                    let gone = self
                        .scram
                        .get_mut(user)
                        .and_then(|creds| creds.remove(mechanism));
                    if gone.is_none() {
                        missing.push((user.clone(), *mechanism));
                    }
                    if self.scram.get(user).is_some_and(BTreeMap::is_empty) {
                        self.scram.remove(user);
                    }
                }
                for (user, mechanism, credential) in upsertions {
                    self.scram
                        .entry(user.clone())
                        .or_default()
                        .insert(*mechanism, credential.clone());
                }
                Outcome::ScramAltered { missing }
            }
            Command::StartReassignment {
                topic,
                partition,
                target,
            } => self.reassign(topic, *partition, Some(&[*target])),
            Command::CancelReassignment { topic, partition } => {
                self.reassign(topic, *partition, None)
            }
            Command::CompleteReassignment {
                topic,
                partition,
                target,
                leader_epoch,
            } => match self.partition_mut(topic, *partition) {
                Err(o) => o,
                Ok(p) if p.adding != [*target] => refused(
                    code::NO_REASSIGNMENT_IN_PROGRESS,
                    format!("{topic}-{partition} is not being moved to broker {target}"),
                ),
                Ok(p) if p.leader_epoch != *leader_epoch => refused(
                    code::FENCED_LEADER_EPOCH,
                    format!(
                        "{topic}-{partition} is at leader epoch {}, not {leader_epoch}",
                        p.leader_epoch
                    ),
                ),
                Ok(p) => {
                    // As decided before replication: the target took over with the next epoch.
                    *p = PartitionRecord::new(vec![*target], p.leader_epoch.saturating_add(1));
                    Outcome::Done
                }
            },
        }
    }

    /// Brokers that take new placements, by id.
    pub fn active_brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers
            .values()
            .filter(|b| b.state == BrokerState::Active)
    }

    /// Brokers that may lead and be in sync (active or draining).
    pub fn alive_brokers(&self) -> BTreeSet<i32> {
        self.brokers
            .values()
            .filter(|b| b.state.is_alive())
            .map(|b| b.id)
            .collect()
    }

    fn is_active(&self, id: i32) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(|b| b.state == BrokerState::Active)
    }

    /// The partition record, if the topic and partition exist.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionRecord> {
        let idx = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(idx)
    }

    /// The topic name and record with this id.
    pub fn topic_by_id(&self, id: Uuid) -> Option<(&String, &TopicRecord)> {
        self.topics.iter().find(|(_, t)| t.id == id)
    }

    /// Every partition: (topic, partition, record).
    pub fn all_partitions(&self) -> impl Iterator<Item = (&String, i32, &PartitionRecord)> {
        self.topics.iter().flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(i, p)| (name, i as i32, p))
        })
    }

    /// How many replicas each registered broker holds (brokers holding none included),
    /// replicas being added by a reassignment included.
    pub fn partition_counts(&self) -> BTreeMap<i32, usize> {
        let mut counts: BTreeMap<i32, usize> = self.brokers.keys().map(|id| (*id, 0)).collect();
        for (_, _, p) in self.all_partitions() {
            for r in &p.replicas {
                *counts.entry(*r).or_default() += 1;
            }
        }
        counts
    }

    /// How many partitions each registered broker leads.
    pub fn leader_counts(&self) -> BTreeMap<i32, usize> {
        let mut counts: BTreeMap<i32, usize> = self.brokers.keys().map(|id| (*id, 0)).collect();
        for (_, _, p) in self.all_partitions().filter(|(_, _, p)| p.has_leader()) {
            *counts.entry(p.leader).or_default() += 1;
        }
        counts
    }

    /// Partitions without a leader (no live in-sync replica).
    pub fn offline_partitions(&self) -> usize {
        self.all_partitions()
            .filter(|(_, _, p)| !p.has_leader())
            .count()
    }

    /// Partitions with fewer in-sync replicas than replicas.
    pub fn under_replicated_partitions(&self) -> usize {
        self.all_partitions()
            .filter(|(_, _, p)| p.is_under_replicated())
            .count()
    }

    fn group_counts(&self) -> BTreeMap<i32, usize> {
        let mut counts: BTreeMap<i32, usize> = self.brokers.keys().map(|id| (*id, 0)).collect();
        for g in self.groups.values() {
            *counts.entry(g.coordinator).or_default() += 1;
        }
        counts
    }

    /// The active broker with the smallest count, ties to the lowest id.
    fn least_loaded(&self, counts: &BTreeMap<i32, usize>) -> Option<i32> {
        self.active_brokers()
            .map(|b| (counts.get(&b.id).copied().unwrap_or(0), b.id))
            .min()
            .map(|(_, id)| id)
    }

    /// Replica lists for `n` new partitions of `replication_factor` copies.
    pub fn place(&self, n: usize, replication_factor: usize) -> Result<Vec<Vec<i32>>, String> {
        let candidates: Vec<Candidate> = self
            .active_brokers()
            .map(|b| Candidate {
                id: b.id,
                rack: b.rack.clone(),
            })
            .collect();
        let load = Load {
            replicas: self.partition_counts(),
            leaders: self.leader_counts(),
        };
        placement::place(&candidates, &load, n, replication_factor)
    }

    /// Partitions with a replica on `broker` (being added or removed included):
    /// (topic, partition).
    pub fn partitions_of(&self, broker: i32) -> Vec<(String, i32)> {
        self.all_partitions()
            .filter(|(_, _, p)| p.replicas.contains(&broker))
            .map(|(name, i, _)| (name.clone(), i))
            .collect()
    }

    /// Groups coordinated by `broker`.
    pub fn groups_of(&self, broker: i32) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, g)| g.coordinator == broker)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

fn unknown_topic(name: &str) -> Outcome {
    refused(
        code::UNKNOWN_TOPIC_OR_PARTITION,
        format!("topic '{name}' does not exist"),
    )
}

mod brokers;
mod topics;
mod txns;
pub use txns::{TxnCommand, TxnRecord, TxnState};
pub use txns::{
    CONCURRENT_TRANSACTIONS, INVALID_PRODUCER_EPOCH, INVALID_PRODUCER_ID_MAPPING,
    INVALID_TXN_STATE, PRODUCER_FENCED,
};

#[cfg(test)]
mod tests;
