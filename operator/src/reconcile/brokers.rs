//! The admin questions the phases ask the brokers: which broker to ask, the cluster as it sees
//! it (brokers, fencing, partitions, moves in flight) and the room on each broker's disk for the
//! scale-down and rebalance, and the partitions' replication health for the roll and status.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::ResourceExt;

use super::observe::{pod_ip, pod_ordinal, pod_ready};
use super::Context;
use crate::builders::Names;
use crate::drain::{self, ClusterView};
use crate::error::Result;
use crate::kafka::{
    AdminClient, ClusterMetadata, DESCRIBE_CLUSTER, DESCRIBE_LOG_DIRS, LIST_PARTITION_REASSIGNMENTS,
};
use crate::replication::PartitionHealth;
use crate::scale::TopicPartition;
use crate::status::ReplicationSeen;
use crate::validate;

/// The lowest-numbered ready broker below ordinal `below` that takes an admin connection: its
/// ordinal, pod name and the connection.
pub(super) async fn first_ready_broker(
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    below: i32,
) -> Option<(i32, String, AdminClient)> {
    let mut ready: Vec<(i32, &Pod)> = pods
        .iter()
        .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((pod_ordinal(p, &names.statefulset())?, p)))
        .filter(|(o, _)| *o < below)
        .collect();
    ready.sort_by_key(|(o, _)| *o);
    for (ordinal, pod) in ready {
        let Some(ip) = pod_ip(pod) else { continue };
        match ctx.admin(names, &pod.name_any(), &ip).await {
            Ok(admin) => return Some((ordinal, pod.name_any(), admin)),
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "broker not reachable for an admin request")
            }
        }
    }
    None
}

/// The cluster as one broker sees it: moves in flight (ListPartitionReassignments), then
/// Metadata (so a move that finishes in between shows up as done rather than as a partition
/// left behind with no move), then the registered brokers with their fencing (DescribeCluster,
/// which also lists the fenced brokers Metadata leaves out).
pub(super) async fn cluster_view(
    admin: &mut AdminClient,
) -> std::result::Result<(ClusterMetadata, ClusterView), String> {
    let ongoing = if admin.supports(LIST_PARTITION_REASSIGNMENTS) {
        admin
            .list_partition_reassignments()
            .await
            .map_err(|e| format!("ListPartitionReassignments failed: {e}"))?
    } else {
        tracing::warn!(addr = %admin.addr(), "broker does not serve ListPartitionReassignments; moves are judged by Metadata alone");
        BTreeMap::new()
    };
    let metadata = admin
        .metadata()
        .await
        .map_err(|e| format!("cannot read the cluster: {e}"))?;
    let mut view = ClusterView::new(&metadata, &ongoing);
    if admin.supports(DESCRIBE_CLUSTER) {
        match admin.describe_cluster().await {
            Ok(registered) => view = view.with_registered(&registered),
            Err(e) => {
                tracing::warn!(addr = %admin.addr(), error = %e, "DescribeCluster failed; membership from Metadata")
            }
        }
    }
    Ok((metadata, view))
}

/// The partitions' replication as the lowest ready broker below ordinal `below` reports it
/// (ListPartitionReassignments first, when served, so a replica a move is adding is not taken
/// for a missing one; then Metadata).
pub(super) async fn replication_health(
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    below: i32,
) -> ReplicationSeen {
    let Some((_, pod, mut admin)) = first_ready_broker(ctx, names, pods, below).await else {
        return ReplicationSeen::NoAnswer;
    };
    let ongoing = if admin.supports(LIST_PARTITION_REASSIGNMENTS) {
        admin
            .list_partition_reassignments()
            .await
            .inspect_err(|e| tracing::debug!(pod = %pod, error = %e, "ListPartitionReassignments failed; replication judged by Metadata alone"))
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    match admin.metadata().await {
        Ok(metadata) => ReplicationSeen::Seen(PartitionHealth::of(&metadata, &ongoing)),
        Err(e) => {
            tracing::warn!(pod = %pod, error = %e, "cannot read the partitions' replicas");
            ReplicationSeen::NoAnswer
        }
    }
}

/// The disk of every live broker, for placing the partitions of a drain: DescribeLogDirs asked
/// of each broker (each describes only itself), and the size of its volume from its PVC. A
/// broker that cannot be asked, or does not serve DescribeLogDirs, is left out: its room is
/// unknown and not held against the scale-down.
pub(super) async fn broker_disks(
    ctx: &Context,
    names: &Names,
    metadata: &ClusterMetadata,
    view: &ClusterView,
) -> BTreeMap<i32, drain::BrokerDisk> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let mut disks = BTreeMap::new();
    for (id, addr) in &metadata.brokers {
        if view.fenced.contains(id) {
            continue;
        }
        let usage = match ctx.admin_at(names, addr).await {
            Ok(admin) if !admin.supports(DESCRIBE_LOG_DIRS) => {
                tracing::debug!(broker = id, %addr, "broker does not serve DescribeLogDirs; its room is not checked");
                continue;
            }
            Ok(mut admin) => admin.describe_log_dirs().await,
            Err(e) => Err(e),
        };
        let usage = match usage {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(broker = id, %addr, error = %e, "cannot read the broker's disk use; its room is not checked");
                continue;
            }
        };
        if !usage.failed.is_empty() {
            tracing::warn!(broker = id, failed = ?usage.failed, "broker reports failed log directories");
        }
        let claimed = match pvcs.get_opt(&names.pvc(*id)).await {
            Ok(pvc) => pvc.as_ref().and_then(claimed_bytes),
            Err(e) => {
                tracing::warn!(pvc = %names.pvc(*id), error = %e, "cannot read the broker's volume claim");
                None
            }
        };
        if let Some(disk) = drain::broker_disk(&usage, claimed) {
            disks.insert(*id, disk);
        }
    }
    disks
}

/// The size of a claimed volume: what was provisioned (status.capacity), else what was asked.
fn claimed_bytes(pvc: &PersistentVolumeClaim) -> Option<u64> {
    let provisioned = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"));
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    let q = provisioned.or(requested)?;
    validate::parse_quantity(&q.0).and_then(|n| u64::try_from(n).ok())
}

/// What the brokers said to a batch of partition moves.
#[derive(Debug, Default)]
pub(super) struct MovesAsked {
    /// The accepted moves, as `topic-partition → broker n` (or `→ brokers a,b,c`).
    pub(super) accepted: Vec<String>,
    /// The refused moves: partition, its requested replicas, the broker's reason.
    pub(super) refused: Vec<(TopicPartition, Vec<i32>, String)>,
}

/// Asks for each partition of `requests` to move onto its full new replica list
/// (AlterPartitionReassignments); an error of the whole request is an `Err`.
pub(super) async fn move_partitions(
    admin: &mut AdminClient,
    requests: &[(TopicPartition, Vec<i32>)],
) -> Result<MovesAsked> {
    let outcomes = admin.alter_partition_reassignments(requests).await?;
    let mut asked = MovesAsked::default();
    for ((tp, result), (_, replicas)) in outcomes.into_iter().zip(requests) {
        match result {
            Ok(()) => asked.accepted.push(drain::move_text(&tp, replicas)),
            Err(e) => asked.refused.push((tp, replicas.clone(), e)),
        }
    }
    Ok(asked)
}
