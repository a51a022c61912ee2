//! The broker's shared state: what every connection, API handler and background task of one
//! broker may touch ([`BrokerContext`], one per process behind an `Arc`).
//!
//! May import: `cluster`, `config` (the validated limits), `log`, `group`, `share`, `metrics`, `replica`, `topology`, `security`. Both `server` (which
//! builds it) and `handlers` (which act on it) import this module, never each other's.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::config::Limits;
use crate::group::{GroupCoordinator, OffsetsTopicSettings};
use crate::log::LogManager;
use crate::metrics::Metrics;
use crate::replica::ReplicaManager;
use crate::security::Security;
use crate::share::ShareCoordinator;
use crate::topology::Topology;

/// Everything a handler may touch, shared by all connections.
#[derive(Debug)]
pub struct BrokerContext {
    pub node_id: i32,
    pub advertised_host: String,
    pub advertised_port: i32,
    /// This broker's own cluster id file, proposed as the cluster's id when the quorum has
    /// none yet (the founder's wins; see [`BrokerContext::cluster_id`]).
    pub local_cluster_id: String,
    /// The cluster metadata quorum (a single in-process node without `--cluster-listen`).
    pub cluster: Arc<Cluster>,
    pub auto_create_topics: bool,
    /// `--min-insync-replicas`: topics without a `min.insync.replicas` override use it.
    pub min_insync_replicas: i32,
    pub logs: Arc<LogManager>,
    pub groups: Arc<GroupCoordinator>,
    /// Share groups (KIP-932): members, share sessions, share-partition state.
    pub shares: Arc<ShareCoordinator>,
    /// Client quotas' byte counts on this broker: produced and fetched ([`crate::quota`]).
    pub produce_throttles: crate::quota::Throttles,
    pub fetch_throttles: crate::quota::Throttles,
    /// This broker's replication roles: what it leads, what it follows.
    pub replicas: Arc<ReplicaManager>,
    /// Connections share groups write through to other brokers (share-partition state to the
    /// leader of `__share_group_state`, dead letters to their partition's leader), by broker
    /// id; kept between writes, dropped after an error.
    pub share_peers:
        tokio::sync::Mutex<std::collections::HashMap<i32, crate::replica::client::PeerConnection>>,
    pub producer_ids: ProducerIdBlocks,
    /// The transaction coordinator's background work (`crate::txn`).
    pub txns: crate::txn::TxnCoordinator,
    /// How this broker creates `__consumer_offsets` if the cluster has none yet.
    pub offsets_topic: OffsetsTopicSettings,
    pub metrics: Arc<Metrics>,
    /// TLS material, bootstrap users, the authorizer.
    pub security: Arc<Security>,
    /// The listener other brokers connect to (its name).
    pub inter_broker_listener: String,
    pub shutdown: CancellationToken,
    /// Connection, response-buffer and fetch limits (`--max-connections` and friends).
    pub limits: Limits,
    /// Incremental fetch sessions (KIP-227), `--fetch-session-cache-slots` of them.
    pub fetch_sessions: crate::handlers::fetch_sessions::FetchSessions,
}

impl BrokerContext {
    /// What a metadata sync of this broker works on (see [`crate::topology`]).
    pub fn topology(&self) -> Topology {
        Topology {
            cluster: Arc::clone(&self.cluster),
            logs: Arc::clone(&self.logs),
            groups: Arc::clone(&self.groups),
            replicas: Arc::clone(&self.replicas),
            node: self.node_id,
        }
    }

    /// The cluster id every broker reports (agreed in the quorum).
    pub fn cluster_id(&self) -> String {
        self.cluster
            .state()
            .cluster_id
            .clone()
            .unwrap_or_else(|| self.local_cluster_id.clone())
    }
}

/// Producer ids, unique in the whole cluster: handed out from a block reserved from the
/// quorum (`handlers::catalog` reserves it), a new block when one is used up.
#[derive(Debug, Default)]
pub struct ProducerIdBlocks {
    /// (next id to hand out, end of the reserved block).
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIdBlocks {
    /// The next id. When the block is used up, `reserve` is awaited (under the lock, so by one
    /// caller at a time) for a new block's `(first id, count)`; its error is returned as is.
    pub async fn next<E, F>(&self, reserve: impl FnOnce() -> F) -> Result<i64, E>
    where
        F: Future<Output = Result<(i64, i64), E>>,
    {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let (first, count) = reserve().await?;
            *block = (first, first + count);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn producer_ids_come_from_the_reserved_block_until_it_is_used_up() {
        let ids = ProducerIdBlocks::default();
        let block = |first: i64| move || async move { Ok::<_, &str>((first, 2)) };
        assert_eq!(ids.next(block(10)).await, Ok(10));
        // Still inside 10..12: no reservation.
        assert_eq!(ids.next(block(99)).await, Ok(11));
        // Used up; a refused reservation hands out nothing.
        assert_eq!(ids.next(|| async { Err("refused") }).await, Err("refused"));
        assert_eq!(ids.next(block(40)).await, Ok(40));
        assert_eq!(ids.next(block(99)).await, Ok(41));
    }
}
