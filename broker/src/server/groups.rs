//! The group coordinator's wiring into the broker: which partitions of `__consumer_offsets`
//! this broker leads (told by the replica layer), what it knows of topics (the cluster
//! metadata), and the one-time import of a pre-replication offsets file.
//!
//! Coordinator roles follow partition leadership: when a broker dies, is drained or restarts,
//! its offsets partitions get new leaders (elections, reassignments), which load them and
//! serve their groups. Nothing here moves groups by hand any more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::Instrument;

use crate::cluster::network::{Request, Response};
use crate::cluster::{Cluster, PartitionService};
use crate::context::BrokerContext;
use crate::group::offsets::StoredOffset;
use crate::group::{legacy, GroupCoordinator, TopicDirectory, OFFSETS_TOPIC};
use crate::handlers::catalog;
use crate::log::PartitionLog;
use crate::replica::LeadershipListener;

const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Tells the coordinator when this broker starts or stops leading an offsets partition.
#[derive(Debug)]
pub struct GroupLeadership(pub Arc<GroupCoordinator>);

impl LeadershipListener for GroupLeadership {
    fn became_leader(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        log: Arc<PartitionLog>,
    ) {
        if topic == OFFSETS_TOPIC {
            self.0.became_leader(partition, leader_epoch, log);
        }
    }

    fn resigned(&self, topic: &str, partition: i32) {
        if topic == OFFSETS_TOPIC {
            self.0.resigned(partition);
        }
    }
}

/// The group coordinator's view of the topics: the whole cluster's, not only the local logs.
pub struct ClusterTopics {
    pub cluster: Arc<Cluster>,
    /// `--min-insync-replicas`, for topics without their own `min.insync.replicas`.
    pub min_insync_replicas: i32,
}

impl TopicDirectory for ClusterTopics {
    fn partitions(&self, topic: &str) -> Option<i32> {
        let state = self.cluster.state();
        let t = state.topics.get(topic)?;
        Some(i32::try_from(t.partitions.len()).unwrap_or(i32::MAX))
    }
    fn topic_name(&self, id: uuid::Uuid) -> Option<String> {
        self.cluster
            .state()
            .topic_by_id(id)
            .map(|(name, _)| name.clone())
    }
    fn topic_id(&self, name: &str) -> Option<uuid::Uuid> {
        self.cluster.state().topics.get(name).map(|t| t.id)
    }
    fn topic_names(&self) -> Vec<String> {
        self.cluster
            .state()
            .topics
            .keys()
            .filter(|t| !crate::group::is_internal_topic(t))
            .cloned()
            .collect()
    }
    fn group_configs(&self, group: &str) -> std::collections::BTreeMap<String, String> {
        self.cluster
            .state()
            .group_configs
            .get(group)
            .cloned()
            .unwrap_or_default()
    }
    fn in_sync_shortfall(&self, topic: &str, partition: i32) -> Option<String> {
        let state = self.cluster.state();
        let t = state.topics.get(topic)?;
        let min = t
            .configs
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(self.min_insync_replicas);
        let isr = &t.partitions.get(usize::try_from(partition).ok()?)?.isr;
        (i64::try_from(isr.len()).unwrap_or(i64::MAX) < i64::from(min)).then(|| {
            format!(
                "{topic}-{partition}: min.insync.replicas={min} but only {} replica(s) are in sync ({isr:?})",
                isr.len()
            )
        })
    }
}

/// This broker's side of [`Request::AdoptGroup`]: offsets of a group it coordinates, sent by
/// a broker importing its pre-replication offsets file.
pub struct GroupAdoption {
    pub ctx: Arc<BrokerContext>,
}

impl PartitionService for GroupAdoption {
    fn adopt_group(
        &self,
        group: String,
        offsets: Vec<(String, i32, StoredOffset)>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let ctx = Arc::clone(&self.ctx);
        async move {
            let n = ctx.groups.import_legacy(&group, offsets).await?;
            tracing::info!(group = %group, offsets = n, "imported offsets committed before __consumer_offsets");
            Ok(())
        }
        .boxed()
    }

    fn write_txn_marker(
        &self,
        marker: crate::txn::MarkerWrite,
    ) -> BoxFuture<'static, Result<(), String>> {
        let ctx = Arc::clone(&self.ctx);
        async move { crate::txn::write_local_marker(&ctx, marker).await }.boxed()
    }
}

/// The directory of the pre-replication offsets file.
pub fn legacy_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("groups")
}

/// How often a broker with a pre-replication offsets file retries handing it over.
const IMPORT_RETRY: Duration = Duration::from_secs(2);

/// Spawns the one-time import of `<data-dir>/groups/offsets.log` (the committed offsets this
/// broker coordinated before `__consumer_offsets` existed): each group's offsets go to its
/// coordinator (this broker or another, [`Request::AdoptGroup`]), which writes those not
/// superseded by a newer commit; once every group is done the file is renamed
/// `offsets.log.imported`. Retried until it succeeds, so an upgrade loses no committed offset
/// even while the cluster is still coming up. Does nothing without such a file.
pub fn spawn_legacy_import(ctx: Arc<BrokerContext>, dir: PathBuf) {
    tokio::spawn(
        async move {
            let read = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || legacy::read_for_import(&dir)).await
            };
            let mut pending = match read {
                Ok(Ok(Some(groups))) => groups,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the pre-replication offsets file; its offsets are not imported");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "offsets import task failed");
                    return;
                }
            };
            tracing::info!(groups = pending.len(), path = %dir.display(), "importing offsets committed before __consumer_offsets");
            loop {
                import_round(&ctx, &mut pending).await;
                if pending.is_empty() {
                    break;
                }
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(IMPORT_RETRY) => {}
                }
            }
            let renamed = tokio::task::spawn_blocking(move || legacy::mark_imported(&dir)).await;
            match renamed {
                Ok(Ok(())) => tracing::info!("pre-replication offsets imported; the file is kept as offsets.log.imported"),
                Ok(Err(e)) => tracing::warn!(error = %e, "offsets imported, but the file could not be renamed; it is imported again (harmlessly) at the next start"),
                Err(e) => tracing::warn!(error = %e, "offsets import task failed"),
            }
        }
        .instrument(tracing::info_span!("offsets_import")),
    );
}

/// One pass over the groups still to import; those handed over leave `pending`.
async fn import_round(
    ctx: &Arc<BrokerContext>,
    pending: &mut BTreeMap<String, legacy::LegacyOffsets>,
) {
    let groups: Vec<String> = pending.keys().cloned().collect();
    for group in groups {
        let Some(offsets) = pending.get(&group).cloned() else {
            continue;
        };
        let result = match catalog::coordinator(ctx, &group).await {
            Err(e) => Err(e.to_string()),
            Ok(b) if b.id == ctx.node_id => {
                ctx.groups.import_legacy(&group, offsets).await.map(drop)
            }
            Ok(b) => {
                let req = Request::AdoptGroup {
                    group: group.clone(),
                    offsets,
                };
                match ctx.cluster.call(&b.cluster_addr, req, RPC_TIMEOUT).await {
                    Ok(Response::AdoptGroup(r)) => r,
                    Ok(other) => Err(format!("unexpected answer from broker {}: {other:?}", b.id)),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match result {
            Ok(()) => {
                pending.remove(&group);
            }
            Err(e) => {
                tracing::debug!(group = %group, error = %e, "offsets not imported yet; retrying");
            }
        }
    }
}
