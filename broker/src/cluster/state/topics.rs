//! The state machine's topic commands: create (placed or assigned by hand), grow, configs,
//! reassignments and leader elections.

use super::*;
use crate::cluster::partition::Refusal;

impl ClusterState {
    /// Checks hand-made replica lists: `count` of them, each of `rf` distinct registered
    /// brokers (`rf` = the first list's length when `None`).
    pub(super) fn check_assignment(
        &self,
        name: &str,
        assignment: &[Vec<i32>],
        count: usize,
        rf: Option<usize>,
    ) -> Result<(), Outcome> {
        if assignment.len() != count {
            return Err(refused(
                code::INVALID_REPLICA_ASSIGNMENT,
                format!(
                    "topic '{name}': {} replica lists for {count} partition(s)",
                    assignment.len()
                ),
            ));
        }
        let rf = rf.or_else(|| assignment.first().map(Vec::len)).unwrap_or(0);
        for (i, replicas) in assignment.iter().enumerate() {
            let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
            if replicas.is_empty() || replicas.len() != rf || distinct.len() != rf {
                return Err(refused(
                    code::INVALID_REPLICA_ASSIGNMENT,
                    format!(
                        "topic '{name}': replica list {i} {replicas:?} must name {rf} distinct \
                         broker(s)"
                    ),
                ));
            }
            if let Some(b) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                return Err(refused(
                    code::INVALID_REPLICA_ASSIGNMENT,
                    format!("topic '{name}': broker {b} is not registered"),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn create_topic(
        &mut self,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: &BTreeMap<String, String>,
        replication_factor: i32,
        assignment: Option<&[Vec<i32>]>,
    ) -> Outcome {
        if self.topics.contains_key(name) {
            return refused(
                code::TOPIC_ALREADY_EXISTS,
                format!("topic '{name}' already exists"),
            );
        }
        let replica_lists = match assignment {
            Some(lists) => {
                if let Err(o) = self.check_assignment(name, lists, lists.len(), None) {
                    return o;
                }
                if lists.is_empty() {
                    return refused(
                        code::INVALID_PARTITIONS,
                        format!("topic '{name}': an empty assignment; at least 1 partition"),
                    );
                }
                lists.to_vec()
            }
            None => {
                let n = match usize::try_from(partitions) {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return refused(
                            code::INVALID_PARTITIONS,
                            format!("topic '{name}': {partitions} partitions; must be at least 1"),
                        )
                    }
                };
                let rf = match usize::try_from(replication_factor) {
                    Ok(rf) if rf > 0 => rf,
                    _ => {
                        return refused(
                            code::INVALID_REPLICATION_FACTOR,
                            format!(
                                "topic '{name}': replication factor {replication_factor}; must \
                                 be at least 1"
                            ),
                        )
                    }
                };
                match self.place(n, rf) {
                    Ok(lists) => lists,
                    Err(why) => {
                        return refused(
                            code::INVALID_REPLICATION_FACTOR,
                            format!("topic '{name}': {why}"),
                        )
                    }
                }
            }
        };
        let topic = TopicRecord {
            id,
            configs: configs.clone(),
            partitions: replica_lists
                .into_iter()
                .map(|r| PartitionRecord::new(r, 0))
                .collect(),
        };
        self.topics.insert(name.to_string(), topic.clone());
        Outcome::Topic {
            name: name.to_string(),
            topic,
        }
    }

    pub(super) fn create_partitions(
        &mut self,
        name: &str,
        total: i32,
        assignment: Option<&[Vec<i32>]>,
    ) -> Outcome {
        let Some((current, rf)) = self
            .topics
            .get(name)
            .map(|t| (t.partitions.len(), t.replication_factor()))
        else {
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
        let lists = match assignment {
            Some(lists) => {
                if let Err(o) = self.check_assignment(name, lists, wanted - current, Some(rf)) {
                    return o;
                }
                lists.to_vec()
            }
            None => match self.place(wanted - current, rf) {
                Ok(lists) => lists,
                Err(why) => {
                    return refused(
                        code::INVALID_REPLICATION_FACTOR,
                        format!("topic '{name}': {why}"),
                    )
                }
            },
        };
        let Some(topic) = self.topics.get_mut(name) else {
            return unknown_topic(name);
        };
        topic
            .partitions
            .extend(lists.into_iter().map(|r| PartitionRecord::new(r, 0)));
        Outcome::Topic {
            name: name.to_string(),
            topic: topic.clone(),
        }
    }

    pub(super) fn alter_configs(
        &mut self,
        name: &str,
        changes: &[ConfigChange],
        replace: bool,
    ) -> Outcome {
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

    pub(super) fn reassign(
        &mut self,
        topic: &str,
        partition: i32,
        replicas: Option<&[i32]>,
    ) -> Outcome {
        if let Some(replicas) = replicas {
            let current = self
                .partition(topic, partition)
                .map(PartitionRecord::original_replicas)
                .unwrap_or_default();
            for b in replicas {
                let Some(rec) = self.brokers.get(b) else {
                    return refused(
                        code::INVALID_REPLICA_ASSIGNMENT,
                        format!("{topic}-{partition}: broker {b} is not registered"),
                    );
                };
                if rec.state == BrokerState::Draining && !current.contains(b) {
                    return refused(
                        code::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "{topic}-{partition}: broker {b} is draining and takes no partitions"
                        ),
                    );
                }
            }
        }
        let alive = self.alive_brokers();
        match self.partition_mut(topic, partition) {
            Err(o) => o,
            Ok(p) => match p.reassign(replicas, &alive) {
                Ok(_) => Outcome::Done,
                Err(r) => refused_for(topic, partition, r),
            },
        }
    }

    pub(super) fn elect(&mut self, kind: ElectionKind, partitions: &[(String, i32)]) -> Outcome {
        let alive = self.alive_brokers();
        let results = partitions
            .iter()
            .map(|(topic, partition)| {
                let result = match self.partition_mut(topic, *partition) {
                    Err(_) => Err(Refusal {
                        code: code::UNKNOWN_TOPIC_OR_PARTITION,
                        message: format!("{topic}-{partition} does not exist"),
                    }),
                    Ok(p) => match kind {
                        ElectionKind::Preferred => p.elect_preferred(&alive),
                        ElectionKind::Unclean => p.elect_unclean(&alive),
                    },
                };
                let (code, message) = match result {
                    Ok(()) => (0, None),
                    Err(r) => (r.code, Some(r.message)),
                };
                ElectionResult {
                    topic: topic.clone(),
                    partition: *partition,
                    code,
                    message,
                }
            })
            .collect();
        Outcome::Elections(results)
    }

    pub(super) fn partition_mut(
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
