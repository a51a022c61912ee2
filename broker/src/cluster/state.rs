//! The cluster metadata: what every broker agrees on through the Raft quorum.
//!
//! [`ClusterState`] is the state machine of the metadata log and [`Command`] its entries.
//! [`ClusterState::apply`] is pure and deterministic: every broker applies the same commands in
//! the same order and ends with the same state, so anything that varies between brokers (clock,
//! random ids, config validation that depends on the binary's version) is decided by the broker
//! that *proposes* a command and carried inside it. A command that is refused (a topic that
//! already exists, a broker that still owns partitions) changes nothing and yields
//! [`Outcome::Refused`] with the Kafka error code the client will see.
//!
//! Placement: new partitions and group coordinators go to the active broker with the fewest,
//! ties to the lowest id, one at a time, so a topic of N partitions spreads across brokers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka error codes the state machine refuses with (a subset of Kafka's `Errors.java`).
pub mod code {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_REQUEST: i16 = 42;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
}

/// Whether a broker takes new partitions and group coordinators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BrokerState {
    /// Serving, and a candidate for new placements.
    #[default]
    Active,
    /// Being drained before removal: keeps serving what it owns, gets nothing new.
    Draining,
    /// Unreachable from the quorum leader: its partitions are reported offline and it gets
    /// nothing new until it answers again (or re-registers after a restart).
    Fenced,
}

/// A broker as registered in the quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: i32,
    /// Advertised Kafka host and port, as given to clients in Metadata.
    pub host: String,
    pub port: i32,
    /// The inter-broker (`--cluster-listen`) address other brokers reach it at.
    pub cluster_addr: String,
    pub rack: Option<String>,
    pub state: BrokerState,
}

/// One partition: which broker owns (leads) it, and the move in progress, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub owner: i32,
    /// Bumped on every ownership change, so a client or a broker holding an older view is
    /// fenced (Kafka's FENCED_LEADER_EPOCH) instead of writing to the wrong place.
    pub leader_epoch: i32,
    /// The broker this partition is being moved to (it copies the log, then takes over).
    pub moving_to: Option<i32>,
}

/// One topic: its id, its config overrides and its partitions (index = partition number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub id: Uuid,
    /// Per-topic overrides only; defaults come from each broker's flags.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRecord>,
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

/// An entry of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets the cluster id once (the founding broker's); later proposals learn the existing one.
    InitCluster {
        cluster_id: String,
    },
    /// Adds a broker, or updates its addresses when it restarts (its state is kept).
    RegisterBroker(BrokerRecord),
    /// Marks a broker as draining (or active again).
    SetBrokerState {
        id: i32,
        state: BrokerState,
    },
    /// Removes a broker; refused while it owns partitions, is a move target, or coordinates
    /// groups.
    UnregisterBroker {
        id: i32,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `total` partitions (Kafka never shrinks one).
    CreatePartitions {
        name: String,
        total: i32,
    },
    /// `replace = true` (AlterConfigs) drops every override not set by `changes`;
    /// `false` (IncrementalAlterConfigs) applies the changes to the current overrides.
    AlterTopicConfigs {
        name: String,
        changes: Vec<ConfigChange>,
        replace: bool,
    },
    /// Places a group's coordinator if it has none; answers the current one otherwise.
    AssignGroup {
        group: String,
    },
    /// Moves a group's coordinator role to `to` (its committed offsets move with it).
    MoveGroup {
        group: String,
        to: i32,
    },
    DeleteGroup {
        group: String,
    },
    /// Starts moving a partition to `target`; `target == owner` cancels a move in progress.
    StartReassignment {
        topic: String,
        partition: i32,
        target: i32,
    },
    CancelReassignment {
        topic: String,
        partition: i32,
    },
    /// The target has caught up: it becomes the owner with a new leader epoch. Refused unless
    /// the move to `target` is still the one in progress at `leader_epoch`.
    CompleteReassignment {
        topic: String,
        partition: i32,
        target: i32,
        leader_epoch: i32,
    },
    /// Reserves `count` producer ids for one broker, so ids are unique cluster-wide.
    AllocateProducerIds {
        broker: i32,
        count: i64,
    },
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
    Coordinator(i32),
    ProducerIds {
        first: i64,
        count: i64,
    },
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

/// The replicated cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRecord>,
    pub topics: BTreeMap<String, TopicRecord>,
    pub groups: BTreeMap<String, GroupRecord>,
    /// The first producer id not yet handed to any broker.
    pub next_producer_id: i64,
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
                // A broker that registers is alive: that lifts a fence, not a drain.
                let state = match self.brokers.get(&record.id).map(|b| b.state) {
                    Some(BrokerState::Draining) => BrokerState::Draining,
                    _ => BrokerState::Active,
                };
                self.brokers.insert(
                    record.id,
                    BrokerRecord {
                        state,
                        ..record.clone()
                    },
                );
                Outcome::Done
            }
            Command::SetBrokerState { id, state } => match self.brokers.get_mut(id) {
                Some(b) => {
                    b.state = *state;
                    Outcome::Done
                }
                None => refused(
                    code::BROKER_ID_NOT_REGISTERED,
                    format!("broker {id} is not registered"),
                ),
            },
            Command::UnregisterBroker { id } => self.unregister(*id),
            Command::CreateTopic {
                name,
                id,
                partitions,
                configs,
            } => self.create_topic(name, *id, *partitions, configs),
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Outcome::Done,
                None => unknown_topic(name),
            },
            Command::CreatePartitions { name, total } => self.create_partitions(name, *total),
            Command::AlterTopicConfigs {
                name,
                changes,
                replace,
            } => self.alter_configs(name, changes, *replace),
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
            Command::StartReassignment {
                topic,
                partition,
                target,
            } => self.start_reassignment(topic, *partition, *target),
            Command::CancelReassignment { topic, partition } => {
                match self.partition_mut(topic, *partition) {
                    Err(o) => o,
                    Ok(p) if p.moving_to.is_none() => refused(
                        code::NO_REASSIGNMENT_IN_PROGRESS,
                        format!("{topic}-{partition} is not being moved"),
                    ),
                    Ok(p) => {
                        p.moving_to = None;
                        Outcome::Done
                    }
                }
            }
            Command::CompleteReassignment {
                topic,
                partition,
                target,
                leader_epoch,
            } => match self.partition_mut(topic, *partition) {
                Err(o) => o,
                Ok(p) if p.moving_to != Some(*target) => refused(
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
                    p.owner = *target;
                    p.leader_epoch += 1;
                    p.moving_to = None;
                    Outcome::Done
                }
            },
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
        }
    }

    /// Brokers that take new placements, by id.
    pub fn active_brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers
            .values()
            .filter(|b| b.state == BrokerState::Active)
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

    /// How many partitions each registered broker owns (brokers owning none included).
    pub fn partition_counts(&self) -> BTreeMap<i32, usize> {
        let mut counts: BTreeMap<i32, usize> = self.brokers.keys().map(|id| (*id, 0)).collect();
        for p in self.topics.values().flat_map(|t| &t.partitions) {
            *counts.entry(p.owner).or_default() += 1;
            // A move target is about to own the partition: count it so parallel placements
            // do not pile onto it.
            if let Some(target) = p.moving_to {
                *counts.entry(target).or_default() += 1;
            }
        }
        counts
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

    /// Owners for `n` new partitions, placed one at a time on the least loaded active broker.
    pub fn place(&self, n: usize) -> Option<Vec<i32>> {
        let mut counts = self.partition_counts();
        let mut owners = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.least_loaded(&counts)?;
            *counts.entry(id).or_default() += 1;
            owners.push(id);
        }
        Some(owners)
    }

    /// Partitions owned by `broker` or being moved to it: (topic, partition).
    pub fn partitions_of(&self, broker: i32) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(move |(_, p)| p.owner == broker || p.moving_to == Some(broker))
                    .map(move |(i, _)| (name.clone(), i as i32))
            })
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

    fn unregister(&mut self, id: i32) -> Outcome {
        if !self.brokers.contains_key(&id) {
            return refused(
                code::BROKER_ID_NOT_REGISTERED,
                format!("broker {id} is not registered"),
            );
        }
        let partitions = self.partitions_of(id);
        let groups = self.groups_of(id);
        if !partitions.is_empty() || !groups.is_empty() {
            let example = partitions
                .first()
                .map(|(t, p)| format!("{t}-{p}"))
                .or_else(|| groups.first().map(|g| format!("group {g}")))
                .unwrap_or_default();
            return refused(
                code::INVALID_REQUEST,
                format!(
                    "broker {id} still owns {} partition(s) and coordinates {} group(s) \
                     (e.g. {example}); move them off first",
                    partitions.len(),
                    groups.len()
                ),
            );
        }
        self.brokers.remove(&id);
        Outcome::Done
    }

    fn create_topic(
        &mut self,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Outcome {
        if self.topics.contains_key(name) {
            return refused(
                code::TOPIC_ALREADY_EXISTS,
                format!("topic '{name}' already exists"),
            );
        }
        let Ok(n) = usize::try_from(partitions) else {
            return refused(
                code::INVALID_PARTITIONS,
                format!("topic '{name}': {partitions} partitions; must be at least 1"),
            );
        };
        if n == 0 {
            return refused(
                code::INVALID_PARTITIONS,
                format!("topic '{name}': 0 partitions; must be at least 1"),
            );
        }
        let Some(owners) = self.place(n) else {
            return refused(
                code::INVALID_REPLICATION_FACTOR,
                format!("topic '{name}': no active broker to place its partitions on"),
            );
        };
        let topic = TopicRecord {
            id,
            configs: configs.clone(),
            partitions: owners
                .into_iter()
                .map(|owner| PartitionRecord {
                    owner,
                    leader_epoch: 0,
                    moving_to: None,
                })
                .collect(),
        };
        self.topics.insert(name.to_string(), topic.clone());
        Outcome::Topic {
            name: name.to_string(),
            topic,
        }
    }

    fn create_partitions(&mut self, name: &str, total: i32) -> Outcome {
        let Some(current) = self.topics.get(name).map(|t| t.partitions.len()) else {
            return unknown_topic(name);
        };
        let wanted = usize::try_from(total).unwrap_or(0);
        if wanted <= current {
            return refused(
                code::INVALID_PARTITIONS,
                format!(
                    "topic '{name}' has {current} partitions; the new total {total} must be larger"
                ),
            );
        }
        let Some(owners) = self.place(wanted - current) else {
            return refused(
                code::INVALID_REPLICATION_FACTOR,
                format!("topic '{name}': no active broker to place new partitions on"),
            );
        };
        let Some(topic) = self.topics.get_mut(name) else {
            return unknown_topic(name);
        };
        topic
            .partitions
            .extend(owners.into_iter().map(|owner| PartitionRecord {
                owner,
                leader_epoch: 0,
                moving_to: None,
            }));
        Outcome::Topic {
            name: name.to_string(),
            topic: topic.clone(),
        }
    }

    fn alter_configs(&mut self, name: &str, changes: &[ConfigChange], replace: bool) -> Outcome {
        let Some(topic) = self.topics.get_mut(name) else {
            return unknown_topic(name);
        };
        if replace {
            topic.configs.clear();
        }
        for change in changes {
            match change {
                ConfigChange::Set(k, v) => {
                    topic.configs.insert(k.clone(), v.clone());
                }
                ConfigChange::Delete(k) => {
                    topic.configs.remove(k);
                }
            }
        }
        Outcome::Topic {
            name: name.to_string(),
            topic: topic.clone(),
        }
    }

    fn start_reassignment(&mut self, topic: &str, partition: i32, target: i32) -> Outcome {
        if !self.brokers.contains_key(&target) {
            return refused(
                code::INVALID_REPLICA_ASSIGNMENT,
                format!("{topic}-{partition}: broker {target} is not registered"),
            );
        }
        let target_draining = !self.is_active(target);
        let p = match self.partition_mut(topic, partition) {
            Ok(p) => p,
            Err(o) => return o,
        };
        if p.owner == target {
            // Kafka's semantics: assigning the current replicas cancels a move in progress.
            p.moving_to = None;
            return Outcome::Done;
        }
        if target_draining {
            return refused(
                code::INVALID_REPLICA_ASSIGNMENT,
                format!("{topic}-{partition}: broker {target} is draining and takes no partitions"),
            );
        }
        p.moving_to = Some(target);
        Outcome::Done
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionRecord, Outcome> {
        self.topics
            .get_mut(topic)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get_mut(i))
            })
            .ok_or_else(|| {
                refused(
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("{topic}-{partition} does not exist"),
                )
            })
    }
}

fn unknown_topic(name: &str) -> Outcome {
    refused(
        code::UNKNOWN_TOPIC_OR_PARTITION,
        format!("topic '{name}' does not exist"),
    )
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
