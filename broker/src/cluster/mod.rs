//! Several brokers forming one Kafka cluster: the replicated metadata ([`state`]) that every
//! broker agrees on through a Raft quorum.
//!
//! DEV STAND-IN (lead's integration branch only): an in-memory single node with the contract's
//! API, replaced by the Raft implementation when it is merged.

pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use state::{BrokerRecord, ClusterState, Command, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no leader")]
    NoLeader,
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: i32,
    pub dir: PathBuf,
    pub listen: Option<SocketAddr>,
    pub seeds: Vec<String>,
    pub me: BrokerRecord,
}

#[derive(Debug)]
pub struct Cluster {
    node_id: i32,
    state: Mutex<ClusterState>,
    tx: watch::Sender<Arc<ClusterState>>,
}

impl Cluster {
    pub async fn start(
        cfg: ClusterConfig,
        _shutdown: CancellationToken,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let (tx, _) = watch::channel(Arc::new(ClusterState::default()));
        let c = Arc::new(Cluster {
            node_id: cfg.node_id,
            state: Mutex::new(ClusterState::default()),
            tx,
        });
        c.propose(Command::RegisterBroker(cfg.me)).await?;
        Ok(c)
    }
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        None
    }
    pub fn is_ready(&self) -> bool {
        true
    }
    pub async fn ready(&self) {}
    pub fn state(&self) -> Arc<ClusterState> {
        self.tx.borrow().clone()
    }
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.tx.subscribe()
    }
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ClusterError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let out = s.apply(&cmd);
        self.tx.send_replace(Arc::new(s.clone()));
        Ok(out)
    }
    pub fn leader(&self) -> Option<i32> {
        Some(self.node_id)
    }
    pub async fn remove_node(&self, _id: i32) -> Result<(), ClusterError> {
        Ok(())
    }
    pub async fn shutdown(&self) {}
}
