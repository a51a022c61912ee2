//! Keeps this broker's local logs in step with the cluster metadata: every applied change of
//! the quorum's state is turned into "which topics and partitions does this broker store"
//! ([`desired_topics`], pure) and handed to [`LogManager::reconcile`] (blocking I/O).
//!
//! Run by the broker's watcher task (`server`) and by a handler right after a change it
//! proposed (`handlers::catalog`), so it sits beside both. May import: `cluster`, `log`, `group`.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cluster::state::{ClusterState, TopicRecord};
use crate::cluster::Cluster;
use crate::group::GroupCoordinator;
use crate::log::{DesiredTopic, LogManager, TopicMeta};

/// The storage view of a topic of the cluster metadata.
pub fn topic_meta(name: &str, topic: &TopicRecord) -> TopicMeta {
    TopicMeta {
        name: name.to_string(),
        id: topic.id,
        partitions: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
        configs: topic.configs.clone(),
    }
}

/// What `node` stores: the partitions it owns and the ones being moved to it.
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
                .filter(|(_, p)| p.owner == node || p.moving_to == Some(node))
                .map(|(i, _)| i as i32)
                .collect::<BTreeSet<i32>>(),
        })
        .collect()
}

/// Applies the current cluster state to the local logs (blocking work off the async workers).
/// The state is read inside the log manager's lock (see [`LogManager::reconcile_with`]), so
/// concurrent calls (the watcher below and a handler that just committed a change) apply in
/// the order of the states they read. Topics that disappeared are also forgotten by the group
/// coordinator's offsets.
pub async fn sync_now(
    cluster: &Arc<Cluster>,
    logs: &Arc<LogManager>,
    groups: &Arc<GroupCoordinator>,
    node: i32,
) {
    let cluster = Arc::clone(cluster);
    let logs2 = Arc::clone(logs);
    let result = tokio::task::spawn_blocking(move || {
        logs2.reconcile_with(|| desired_topics(&cluster.state(), node))
    })
    .await;
    match result {
        Ok(Ok(done)) => {
            for gone in &done.forgotten {
                groups.forget_topic(gone);
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not bring the local logs in line with the cluster metadata");
        }
        Err(e) => tracing::error!(error = %e, "local log reconcile task failed"),
    }
}

/// Spawns the task that reconciles the local logs after every change of the cluster state.
pub fn spawn_sync(
    cluster: Arc<Cluster>,
    logs: Arc<LogManager>,
    groups: Arc<GroupCoordinator>,
    node: i32,
    shutdown: CancellationToken,
) {
    let mut rx = cluster.watch();
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    changed = rx.changed() => if changed.is_err() { break },
                }
                // Only a broker that has caught up acts on the state: a replaying broker may
                // pass through old states that would make it delete partitions it holds now.
                if !cluster.is_ready() {
                    continue;
                }
                sync_now(&cluster, &logs, &groups, node).await;
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
    fn a_broker_stores_what_it_owns_and_what_moves_to_it() {
        let mut s = ClusterState::default();
        for id in [0, 1] {
            s.apply(&Command::RegisterBroker(BrokerRecord {
                id,
                host: "h".into(),
                port: 1,
                cluster_addr: "h:2".into(),
                rack: None,
                state: BrokerState::Active,
            }));
        }
        s.apply(&Command::CreateTopic {
            name: "t".into(),
            id: uuid::Uuid::from_u128(7),
            partitions: 3,
            configs: [("retention.ms".to_string(), "5".to_string())].into(),
        });
        s.apply(&Command::StartReassignment {
            topic: "t".into(),
            partition: 0,
            target: 1,
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
