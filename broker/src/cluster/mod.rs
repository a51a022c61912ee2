//! Several brokers forming one Kafka cluster: the replicated metadata ([`state`]) that every
//! broker agrees on through a Raft quorum (openraft), stored on each broker's volume
//! ([`store`], [`logfile`]) and replicated over the inter-broker listener ([`network`]).
//! See `README.md` in this directory for the design.
//!
//! This file is the broker's interface to the quorum ([`Cluster`]) and the state every part of
//! a member shares (`Member`); the rest is split by concern:
//!
//! - `lifecycle.rs`: how a member gets in and out: bootstrap on a fresh volume, rejoin after a
//!   restart, registration, and the leader's side of Join / JoinEmpty / RemoveNode and of
//!   promoting learners.
//! - `forward.rs`: proposals: a follower forwards a command to the leader, which commits it.
//! - `server.rs`: the RPC server on the cluster listener: accept, frames, dispatch by request.

pub mod logfile;
pub mod network;
pub mod partition;
pub mod placement;
pub mod state;
pub mod store;

mod forward;
mod lifecycle;
mod server;

use std::collections::BTreeSet;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{BasicNode, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use network::Transport;
use network::{CallError, LeaderInfo, Request, Response};
use state::{BrokerRecord, BrokerState, ClusterState, Command, Outcome};

/// openraft's node id: the broker's `--node-id` (validated `>= 0`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The broker's Raft types: entries carry [`Command`]s, responses are [`Outcome`]s.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Most voters the quorum keeps; further brokers are learners.
pub const MAX_VOTERS: usize = 5;
/// How long `propose` and `remove_node` keep retrying.
pub const PROPOSE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a live broker has to say which metadata features it has, before a proposal that
/// needs one.
const FEATURES_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Raft timers (milliseconds): heartbeat, and the election timeout range.
pub const HEARTBEAT_MS: u64 = 100;
pub const ELECTION_MIN_MS: u64 = 500;
pub const ELECTION_MAX_MS: u64 = 1000;

/// How to start this broker's cluster member.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: i32,
    /// `<data-dir>/cluster`
    pub dir: PathBuf,
    /// `None`: single node, in-process, no network.
    pub listen: Option<SocketAddr>,
    /// Other brokers' cluster listeners (host:port, re-resolved on every retry; may include
    /// this broker).
    pub seeds: Vec<String>,
    /// Advertised Kafka host/port and cluster address. An empty `cluster_addr` is replaced by
    /// the bound listener address.
    pub me: BrokerRecord,
    /// Plain TCP or mutual TLS on the cluster listener and this member's connections.
    pub transport: Transport,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster config: {0}")]
    Config(String),
    #[error("cluster storage in {dir}: {source}")]
    Storage {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster listener {addr}: cannot bind: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    #[error("not committed within {waited:?}; last leader tried: {leader}: {error}")]
    Deadline {
        leader: String,
        error: String,
        waited: Duration,
    },
    #[error("sent to leader {leader} at {addr}, outcome unknown: {error}")]
    Ambiguous {
        leader: i32,
        addr: String,
        error: String,
    },
    #[error("refused to remove node {node}: {reason}")]
    RemoveRefused { node: i32, reason: String },
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the cluster member is shut down")]
    ShuttingDown,
}

/// This broker's member of the metadata quorum.
pub struct Cluster {
    member: Arc<Member>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.member.node_id)
            .field("cluster_addr", &self.member.cluster_addr)
            .finish()
    }
}

/// What every task of this member shares (the Raft handle, its state watch, its identity); the
/// tasks and the RPC server hold it in an `Arc`, [`Cluster`] is the broker's handle on it.
struct Member {
    node_id: i32,
    me: BrokerRecord,
    transport: Transport,
    seeds: Vec<String>,
    raft: Raft<TypeConfig>,
    cluster_addr: Option<SocketAddr>,
    state_rx: watch::Receiver<Arc<ClusterState>>,
    ready_tx: watch::Sender<bool>,
    cancel: CancellationToken,
    /// Serializes membership changes made by this node as leader.
    membership_lock: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
    /// False while a member on a fresh volume has not joined (JoinEmpty) or founded: it may be
    /// listed as a voter from its lost volume's days, and a vote it gives now could be a second
    /// vote in a term it already voted in. Not answering a vote request is always safe.
    voting: AtomicBool,
    /// This member started on a volume with no cluster state: its registration says so, and
    /// if the cluster knew this broker id, the quorum treats its old copies as lost.
    fresh_volume: AtomicBool,
    /// Serves the partition RPCs (set by the broker once its logs are open).
    partitions: std::sync::OnceLock<Arc<dyn PartitionService>>,
}

/// The broker's side of the inter-broker RPCs that are not the quorum's own: a group's
/// committed offsets from a pre-replication offsets file handed to its coordinator
/// ([`Request::AdoptGroup`], the upgrade import); errors are
/// messages for the calling broker's log. (Partition data moves with replication, over the
/// Kafka protocol, not here.)
pub trait PartitionService: Send + Sync {
    fn adopt_group(
        &self,
        group: String,
        offsets: Vec<(String, i32, crate::group::offsets::StoredOffset)>,
    ) -> futures::future::BoxFuture<'static, Result<(), String>>;

    /// Appends a transaction marker to a partition this broker leads ([`Request::WriteTxnMarker`]).
    fn write_txn_marker(
        &self,
        marker: crate::txn::MarkerWrite,
    ) -> futures::future::BoxFuture<'static, Result<(), String>>;
}

fn raft_config() -> Result<openraft::Config, ClusterError> {
    openraft::Config {
        cluster_name: "sluice".to_string(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_MIN_MS,
        election_timeout_max: ELECTION_MAX_MS,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 200,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ClusterError::Config(e.to_string()))
}

impl Cluster {
    /// Opens the storage under `cfg.dir`, binds `cfg.listen`, and joins or founds a cluster
    /// in the background (bootstrap rule in `README.md`); returns once the member runs. Use
    /// [`Cluster::ready`] to wait until it is a caught-up member with its broker registered.
    pub async fn start(
        cfg: ClusterConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<Cluster>, ClusterError> {
        if cfg.node_id < 0 {
            return Err(ClusterError::Config(format!(
                "node id {} must be >= 0",
                cfg.node_id
            )));
        }
        if cfg.me.id != cfg.node_id {
            return Err(ClusterError::Config(format!(
                "broker record id {} differs from node id {}",
                cfg.me.id, cfg.node_id
            )));
        }
        let storage_err = |source| ClusterError::Storage {
            dir: cfg.dir.clone(),
            source,
        };
        let log = store::LogStore::open(&cfg.dir).map_err(storage_err)?;
        let sm = store::StateMachineStore::open(&cfg.dir).map_err(storage_err)?;
        let state_rx = sm.subscribe();

        let (listener, cluster_addr) = match cfg.listen {
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ClusterError::Bind { addr, source })?;
                let bound = l
                    .local_addr()
                    .map_err(|source| ClusterError::Bind { addr, source })?;
                (Some(l), Some(bound))
            }
            None => (None, None),
        };
        let mut me = cfg.me.clone();
        if me.cluster_addr.is_empty() {
            if let Some(a) = cluster_addr {
                if a.ip().is_unspecified() {
                    return Err(ClusterError::Config(format!(
                        "listening on {a} needs an advertised cluster address \
                         (BrokerRecord::cluster_addr) that other brokers can reach"
                    )));
                }
                me.cluster_addr = a.to_string();
            }
        }

        let raft = Raft::new(
            cfg.node_id as NodeId,
            Arc::new(raft_config()?),
            network::Network {
                transport: cfg.transport.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;

        let (ready_tx, _) = watch::channel(false);
        let member = Arc::new(Member {
            node_id: cfg.node_id,
            me,
            transport: cfg.transport.clone(),
            seeds: cfg.seeds.clone(),
            raft,
            cluster_addr,
            state_rx,
            ready_tx,
            cancel: shutdown.child_token(),
            membership_lock: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            voting: AtomicBool::new(false),
            fresh_volume: AtomicBool::new(false),
            partitions: std::sync::OnceLock::new(),
        });
        tracing::info!(node_id = cfg.node_id, dir = %cfg.dir.display(), listen = ?cluster_addr,
            seeds = ?cfg.seeds, "cluster member starting");

        let mut tasks = Vec::new();
        if let Some(l) = listener {
            tasks.push(tokio::spawn(server::serve(member.clone(), l)));
        }
        let initialized = member
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        member.voting.store(initialized, Ordering::SeqCst);
        member.fresh_volume.store(!initialized, Ordering::SeqCst);
        {
            let member = member.clone();
            tasks.push(tokio::spawn(async move {
                if !initialized {
                    member.bootstrap().await;
                } else {
                    member.rejoin().await;
                }
                member.register().await;
            }));
        }
        if cluster_addr.is_some() {
            tasks.push(tokio::spawn(lifecycle::keep_voters(member.clone())));
        }
        if let Ok(mut t) = member.tasks.lock() {
            t.extend(tasks);
        }
        let cluster = Arc::new(Cluster { member });
        {
            // The caller's token stops everything too.
            let member = cluster.member.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => member.shutdown().await,
                    _ = member.cancel.cancelled() => {}
                }
            });
        }
        Ok(cluster)
    }

    /// The bound inter-broker address (`None` without `listen`).
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.member.cluster_addr
    }

    /// Member of the quorum, caught up, and its own BrokerRecord registered.
    pub fn is_ready(&self) -> bool {
        *self.member.ready_tx.borrow()
    }

    pub async fn ready(&self) {
        let mut rx = self.member.ready_tx.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The latest applied state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.member.state_rx.borrow().clone()
    }

    /// Every applied state, as it is applied.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.member.state_rx.clone()
    }

    /// Commits `cmd` through the quorum (forwarded to the leader when this broker is not it),
    /// retrying until [`PROPOSE_DEADLINE`]; once it returns, this broker's [`Cluster::state`]
    /// includes the command.
    ///
    /// An entry that brokers of some earlier versions cannot decode ([`Command::feature`]) is
    /// refused (UNSUPPORTED_VERSION, naming the brokers) while a live broker lacks the
    /// feature or does not answer: during a roll from such a version it would stop the older
    /// brokers following the metadata log.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ClusterError> {
        if let Some(feature) = cmd.feature() {
            let answers = self.live_brokers_features().await;
            let lacking = state::lacking_feature(feature, &answers);
            if !lacking.is_empty() {
                return Ok(Outcome::Refused {
                    code: state::code::UNSUPPORTED_VERSION,
                    message: format!(
                        "not every broker can read {feature} yet: {}; finish the roll to this \
                         version first",
                        lacking.join("; ")
                    ),
                });
            }
        }
        self.member
            .propose(cmd, Instant::now() + PROPOSE_DEADLINE)
            .await
            .map(|f| f.outcome)
    }

    /// Each other live (active or draining) broker's metadata features, from its Probe
    /// answer, or why it gave none.
    async fn live_brokers_features(&self) -> Vec<(i32, Result<Vec<String>, String>)> {
        let state = self.state();
        let probes = state
            .brokers
            .values()
            .filter(|b| b.id != self.member.node_id)
            .filter(|b| matches!(b.state, BrokerState::Active | BrokerState::Draining))
            .map(|b| async move {
                let answer = match network::call(
                    &self.member.transport,
                    &b.cluster_addr,
                    &Request::Probe,
                    FEATURES_PROBE_TIMEOUT,
                )
                .await
                {
                    Ok(Response::Probe(p)) => Ok(p.features),
                    Ok(other) => Err(format!("unexpected answer {other:?}")),
                    Err(e) => Err(e.to_string()),
                };
                (b.id, answer)
            });
        futures::future::join_all(probes).await
    }

    /// The current leader's node id, as this broker knows it.
    pub fn leader(&self) -> Option<i32> {
        self.member
            .raft
            .metrics()
            .borrow()
            .current_leader
            .map(|l| l as i32)
    }

    /// Voter and learner node ids of the current membership config.
    pub fn members(&self) -> (BTreeSet<i32>, BTreeSet<i32>) {
        let m = self
            .member
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        let voters = m.membership().voter_ids().map(|v| v as i32).collect();
        let learners = m.membership().learner_ids().map(|v| v as i32).collect();
        (voters, learners)
    }

    /// openraft's metrics (state, term, leader, log indexes, membership) for diagnostics.
    pub fn raft_metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.member.raft.metrics()
    }

    /// Removes node `id` from the membership (voter or learner); refuses to remove the last
    /// voter. Forwarded to the leader; retries until [`PROPOSE_DEADLINE`].
    pub async fn remove_node(&self, id: i32) -> Result<(), ClusterError> {
        self.member.remove_node(id).await
    }

    /// Builds a snapshot of the applied state now and purges the log up to it (openraft also
    /// does both on its own every 1000 entries). Returns the snapshot's last log index.
    pub async fn compact(&self) -> Result<Option<u64>, ClusterError> {
        let raft = &self.member.raft;
        let applied = raft.metrics().borrow().last_applied.map(|l| l.index);
        let Some(applied) = applied else {
            return Ok(None);
        };
        let fatal = |e: openraft::error::Fatal<NodeId>| ClusterError::Raft(e.to_string());
        raft.trigger().snapshot().await.map_err(fatal)?;
        let m = raft
            .wait(Some(PROPOSE_DEADLINE))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= applied),
                "snapshot built",
            )
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let upto = m.snapshot.map(|s| s.index);
        if let Some(upto) = upto {
            raft.trigger().purge_log(upto).await.map_err(fatal)?;
        }
        Ok(upto)
    }

    /// One request to another broker's cluster listener (`addr` = host:port), e.g. for RPCs
    /// added to [`Request`] later.
    pub async fn call(
        &self,
        addr: &str,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, ClusterError> {
        Ok(network::call(&self.member.transport, addr, &req, timeout).await?)
    }

    /// Installs the server side of the partition RPCs (once; later calls are ignored).
    pub fn serve_partitions(&self, svc: Arc<dyn PartitionService>) {
        let _ = self.member.partitions.set(svc);
    }

    /// Stops Raft, the listener and the background tasks. Idempotent.
    pub async fn shutdown(&self) {
        self.member.shutdown().await
    }
}

impl Member {
    fn my_id(&self) -> NodeId {
        self.node_id as NodeId
    }

    fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    fn is_member(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&self.my_id())
            .is_some()
    }

    fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.my_id())
    }

    fn leader_info(&self) -> Option<LeaderInfo> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some(LeaderInfo {
            id: id as i32,
            addr,
        })
    }

    async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.cancel.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node_id = self.node_id, error = %e, "raft shutdown");
        }
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        tracing::info!(node_id = self.node_id, "cluster member stopped");
    }
}
