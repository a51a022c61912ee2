//! Keeps this broker's local logs in step with the cluster metadata: every applied change of
//! the quorum's state is turned into "which topics and partitions does this broker store"
//! ([`desired_topics`], pure) and handed to [`LogManager::reconcile`] (blocking I/O).
//!
//! After the logs, this broker's replication roles follow the same state
//! ([`ReplicaManager::sync_roles`]: lead, follow, or neither).
//!
//! Run by the broker's watcher task (`server`) and by a handler right after a change it
//! proposed (`handlers::catalog`), so it sits beside both. May import: `cluster`, `log`,
//! `group`, `replica`.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::state::{ClusterState, TopicRecord};
use crate::cluster::Cluster;
use crate::group::GroupCoordinator;
use crate::log::{DesiredTopic, LogManager, TopicMeta};
use crate::replica::ReplicaManager;

/// The storage view of a topic of the cluster metadata.
pub fn topic_meta(name: &str, topic: &TopicRecord) -> TopicMeta {
    TopicMeta {
        name: name.to_string(),
        id: topic.id,
        partitions: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
        configs: topic.configs.clone(),
    }
}

/// What `node` stores: the partitions it holds a replica of (being added by a reassignment
/// included).
pub fn desired_topics(state: &ClusterState, node: i32) -> Vec<DesiredTopic> {
    state
        .topics
        .iter()
        .map(|(name, topic)| DesiredTopic {
            meta: topic_meta(name, topic),
            local: topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.replicas.contains(&node))
                .map(|(i, _)| i as i32)
                .collect::<BTreeSet<i32>>(),
        })
        .collect()
}

/// What a sync works on: the quorum member, the local logs, the group coordinator and the
/// replication roles of one broker.
#[derive(Debug, Clone)]
pub struct Topology {
    pub cluster: Arc<Cluster>,
    pub logs: Arc<LogManager>,
    pub groups: Arc<GroupCoordinator>,
    pub replicas: Arc<ReplicaManager>,
    pub node: i32,
}

/// Applies the current cluster state to the local logs, then to the replication roles
/// (blocking work off the async workers). The state is read inside the log manager's lock
/// (see [`LogManager::reconcile_with`]) and inside the replica manager's, so concurrent calls
/// (the watcher below and a handler that just committed a change) apply in the order of the
/// states they read. The group coordinator then drops the offsets of topics that are gone.
pub async fn sync_now(t: &Topology) {
    let cluster = Arc::clone(&t.cluster);
    let logs = Arc::clone(&t.logs);
    let replicas = Arc::clone(&t.replicas);
    let node = t.node;
    let groups = &t.groups;
    let result = tokio::task::spawn_blocking(move || {
        let done = logs.reconcile_with(|| desired_topics(&cluster.state(), node));
        replicas.sync_roles();
        done
    })
    .await;
    match result {
        // Committed offsets of deleted topics go too (tombstones in `__consumer_offsets`,
        // written by the coordinators that lead its partitions).
        Ok(Ok(_)) => groups.forget_deleted_topics(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not bring the local logs in line with the cluster metadata");
        }
        Err(e) => tracing::error!(error = %e, "local log reconcile task failed"),
    }
}

/// Spawns the task that reconciles the local logs and roles after every change of the cluster
/// state.
pub fn spawn_sync(t: Topology, shutdown: CancellationToken) {
    let mut rx = t.cluster.watch();
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    changed = rx.changed() => if changed.is_err() { break },
                }
                // Only a broker that has caught up acts on the state: a replaying broker may
                // pass through old states that would make it delete partitions it holds now.
                if !t.cluster.is_ready() {
                    continue;
                }
                sync_now(&t).await;
            }
        }
        .instrument(tracing::info_span!("topology")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::{BrokerRecord, BrokerState, Command};

    #[test]
    fn a_broker_stores_the_partitions_it_holds_a_replica_of_or_is_being_given() {
        let mut s = ClusterState::default();
        for id in [0, 1] {
            s.apply(&Command::RegisterBroker(BrokerRecord {
                id,
                host: "h".into(),
                port: 1,
                cluster_addr: "h:2".into(),
                rack: None,
                state: BrokerState::Active,
                listeners: Vec::new(),
                fresh_volume: false,
            }));
        }
        s.apply(&Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::from_u128(7),
            partitions: 3,
            configs: [("retention.ms".to_string(), "5".to_string())].into(),
            replication_factor: 1,
            assignment: None,
        });
        s.apply(&Command::Reassign {
            topic: "t".into(),
            partition: 0,
            replicas: Some(vec![1]),
        });
        let zero = desired_topics(&s, 0);
        let one = desired_topics(&s, 1);
        assert_eq!(zero[0].local, BTreeSet::from([0, 2]));
        assert_eq!(one[0].local, BTreeSet::from([0, 1]));
        assert_eq!(zero[0].meta.partitions, 3);
        assert_eq!(zero[0].meta.configs["retention.ms"], "5");
        // A broker that owns nothing still knows the topic (empty local set).
        assert_eq!(desired_topics(&s, 9)[0].local, BTreeSet::new());
    }
}
