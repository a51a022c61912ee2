//! Several brokers forming one Kafka cluster: the replicated metadata ([`state`]) that every
//! broker agrees on through a Raft quorum (openraft), stored on each broker's volume
//! ([`store`], [`logfile`]) and replicated over the inter-broker listener ([`network`]).
//! See `README.md` in this directory for the design.

pub mod logfile;
pub mod network;
pub mod state;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use network::{CallError, Forwarded, LeaderInfo, ProbeReply, Refusal, Request, Response};
use state::{BrokerRecord, ClusterState, Command, Outcome};

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
/// Raft timers (milliseconds): heartbeat, and the election timeout range.
pub const HEARTBEAT_MS: u64 = 100;
pub const ELECTION_MIN_MS: u64 = 500;
pub const ELECTION_MAX_MS: u64 = 1000;
/// How an RPC server answers a frame it cannot decode (also: a request variant newer than it).
const UNDECODABLE: &str = "undecodable request";

/// How long the leader waits for a joining broker to catch up before answering Join.
const JOIN_CATCH_UP: Duration = Duration::from_secs(20);
/// Bootstrap: pause between rounds of probing the seeds.
const BOOTSTRAP_RETRY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Leader-side voter maintenance period.
const KEEPER_PERIOD: Duration = Duration::from_millis(500);
/// A learner within this many entries of the leader's log counts as caught up.
const CAUGHT_UP_LAG: u64 = 16;

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
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.inner.node_id)
            .field("cluster_addr", &self.inner.cluster_addr)
            .finish()
    }
}

struct Inner {
    node_id: i32,
    me: BrokerRecord,
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
    /// Serves the partition RPCs (set by the broker once its logs are open).
    partitions: std::sync::OnceLock<Arc<dyn PartitionService>>,
}

/// The broker's side of the partition RPCs a partition move uses ([`Request::FetchPartition`],
/// [`Request::Handover`]); errors are messages for the calling broker's log.
pub trait PartitionService: Send + Sync {
    fn fetch(
        &self,
        topic: String,
        partition: i32,
        offset: i64,
        max_bytes: u32,
    ) -> futures::future::BoxFuture<'static, Result<network::PartitionChunk, String>>;
    fn handover(
        &self,
        topic: String,
        partition: i32,
        leader_epoch: i32,
    ) -> futures::future::BoxFuture<'static, Result<i64, String>>;
    fn adopt_group(
        &self,
        group: String,
        offsets: Vec<(String, i32, crate::group::offsets::StoredOffset)>,
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
            network::Network,
            log,
            sm,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;

        let (ready_tx, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            node_id: cfg.node_id,
            me,
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
            partitions: std::sync::OnceLock::new(),
        });
        tracing::info!(node_id = cfg.node_id, dir = %cfg.dir.display(), listen = ?cluster_addr,
            seeds = ?cfg.seeds, "cluster member starting");

        let mut tasks = Vec::new();
        if let Some(l) = listener {
            tasks.push(tokio::spawn(serve(inner.clone(), l)));
        }
        let initialized = inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        inner.voting.store(initialized, Ordering::SeqCst);
        {
            let inner = inner.clone();
            tasks.push(tokio::spawn(async move {
                if !initialized {
                    inner.bootstrap().await;
                } else {
                    inner.rejoin().await;
                }
                inner.register().await;
            }));
        }
        if cluster_addr.is_some() {
            tasks.push(tokio::spawn(keep_voters(inner.clone())));
        }
        if let Ok(mut t) = inner.tasks.lock() {
            t.extend(tasks);
        }
        let cluster = Arc::new(Cluster { inner });
        {
            // The caller's token stops everything too.
            let inner = cluster.inner.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => inner.shutdown().await,
                    _ = inner.cancel.cancelled() => {}
                }
            });
        }
        Ok(cluster)
    }

    /// The bound inter-broker address (`None` without `listen`).
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.inner.cluster_addr
    }

    /// Member of the quorum, caught up, and its own BrokerRecord registered.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready_tx.borrow()
    }

    pub async fn ready(&self) {
        let mut rx = self.inner.ready_tx.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The latest applied state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.inner.state_rx.borrow().clone()
    }

    /// Every applied state, as it is applied.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.inner.state_rx.clone()
    }

    /// Commits `cmd` through the quorum (forwarded to the leader when this broker is not it),
    /// retrying until [`PROPOSE_DEADLINE`]; once it returns, this broker's [`Cluster::state`]
    /// includes the command.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ClusterError> {
        self.inner
            .propose(cmd, Instant::now() + PROPOSE_DEADLINE)
            .await
            .map(|f| f.outcome)
    }

    /// The current leader's node id, as this broker knows it.
    pub fn leader(&self) -> Option<i32> {
        self.inner
            .raft
            .metrics()
            .borrow()
            .current_leader
            .map(|l| l as i32)
    }

    /// Voter and learner node ids of the current membership config.
    pub fn members(&self) -> (BTreeSet<i32>, BTreeSet<i32>) {
        let m = self.inner.raft.metrics().borrow().membership_config.clone();
        let voters = m.membership().voter_ids().map(|v| v as i32).collect();
        let learners = m.membership().learner_ids().map(|v| v as i32).collect();
        (voters, learners)
    }

    /// openraft's metrics (state, term, leader, log indexes, membership) for diagnostics.
    pub fn raft_metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.inner.raft.metrics()
    }

    /// Removes node `id` from the membership (voter or learner); refuses to remove the last
    /// voter. Forwarded to the leader; retries until [`PROPOSE_DEADLINE`].
    pub async fn remove_node(&self, id: i32) -> Result<(), ClusterError> {
        self.inner.remove_node(id).await
    }

    /// Builds a snapshot of the applied state now and purges the log up to it (openraft also
    /// does both on its own every 1000 entries). Returns the snapshot's last log index.
    pub async fn compact(&self) -> Result<Option<u64>, ClusterError> {
        let raft = &self.inner.raft;
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
        Ok(network::call(addr, &req, timeout).await?)
    }

    /// Installs the server side of the partition RPCs (once; later calls are ignored).
    pub fn serve_partitions(&self, svc: Arc<dyn PartitionService>) {
        let _ = self.inner.partitions.set(svc);
    }

    /// Stops Raft, the listener and the background tasks. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

impl Inner {
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

    /// Fresh volume: join a cluster a seed knows, or found one (README: bootstrap rule).
    async fn bootstrap(&self) {
        if self.cluster_addr.is_none() {
            self.found().await;
            return;
        }
        let mut round = 0u64;
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            // No early return once initialized: the leader of a cluster that still lists our id
            // (our volume was lost) replicates to us before we ask anything, and only
            // JoinEmpty makes it forget the member we were. A repeated JoinEmpty (its answer
            // lost) removes and adds us again, which is slow but safe.
            let mut others = 0usize;
            let mut leader = None;
            let mut member_seen = false;
            let mut errors = Vec::new();
            for seed in &self.seeds {
                match network::call(seed, &Request::Probe, PROBE_TIMEOUT).await {
                    Ok(Response::Probe(p)) if p.node_id == self.node_id => {}
                    Ok(Response::Probe(ProbeReply {
                        member, leader: l, ..
                    })) => {
                        others += 1;
                        member_seen |= member;
                        if member && leader.is_none() {
                            leader = l;
                        }
                    }
                    Ok(other) => {
                        others += 1;
                        errors.push(format!("{seed}: unexpected answer {other:?}"));
                    }
                    Err(e) => {
                        others += 1;
                        errors.push(e.to_string());
                    }
                }
            }
            if let Some(l) = leader {
                tracing::info!(node_id = self.node_id, leader = l.id, addr = %l.addr,
                    "joining the cluster");
                // Removal and re-adding wait for a catch-up each.
                let timeout = 2 * JOIN_CATCH_UP + Duration::from_secs(5);
                let mut answer =
                    network::call(&l.addr, &Request::JoinEmpty(self.me.clone()), timeout).await;
                if matches!(&answer, Ok(Response::Error(e)) if e.starts_with(UNDECODABLE)) {
                    // A leader from before JoinEmpty (a version roll in progress).
                    answer = network::call(&l.addr, &Request::Join(self.me.clone()), timeout).await;
                }
                match answer {
                    Ok(Response::Join(Ok(()))) => {
                        tracing::info!(node_id = self.node_id, leader = l.id, "joined the cluster");
                        self.voting.store(true, Ordering::SeqCst);
                        return;
                    }
                    Ok(other) => errors.push(format!("join via {}: {other:?}", l.addr)),
                    Err(e) => errors.push(format!("join: {e}")),
                }
            } else if !member_seen && (others == 0 || self.node_id == 0) {
                self.found().await;
                return;
            }
            if round % 10 == 0 {
                tracing::info!(
                    node_id = self.node_id,
                    round,
                    member_seen,
                    ?errors,
                    "no cluster to join yet; retrying the seeds"
                );
            }
            round += 1;
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(BOOTSTRAP_RETRY) => {}
            }
        }
    }

    async fn found(&self) {
        self.voting.store(true, Ordering::SeqCst);
        let members = BTreeMap::from([(
            self.my_id(),
            BasicNode {
                addr: self.me.cluster_addr.clone(),
            },
        )]);
        match self.raft.initialize(members).await {
            Ok(()) => tracing::info!(node_id = self.node_id, "founded a cluster of one"),
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                tracing::info!(node_id = self.node_id, reason = %e, "already initialized")
            }
            Err(e) => tracing::error!(node_id = self.node_id, error = %e, "cannot found a cluster"),
        }
    }

    /// Registers this broker (RegisterBroker(me)) once a member; ready when applied locally.
    async fn register(&self) {
        let mut metrics = self.raft.metrics();
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            if !self.is_member() {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = metrics.changed() => continue,
                }
            }
            let cmd = Command::RegisterBroker(self.me.clone());
            match self.propose(cmd, Instant::now() + PROPOSE_DEADLINE).await {
                Ok(f) if !self.applied_locally(f.index) => {
                    tracing::warn!(
                        node_id = self.node_id,
                        index = f.index,
                        "registration committed but not replicated here yet; retrying"
                    )
                }
                Ok(f) => {
                    tracing::info!(
                        node_id = self.node_id,
                        index = f.index,
                        "broker registered; cluster member ready"
                    );
                    self.ready_tx.send_replace(true);
                    return;
                }
                Err(ClusterError::ShuttingDown) => return,
                Err(e) => {
                    tracing::warn!(node_id = self.node_id, error = %e, "registering the broker; retrying")
                }
            }
        }
    }

    fn applied_locally(&self, index: u64) -> bool {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .is_some_and(|l| l.index >= index)
    }

    /// Restart with persisted state: `rejoin_once` until it succeeds (or shutdown).
    async fn rejoin(&self) {
        if self.cluster_addr.is_none() {
            return;
        }
        let mut round = 0u64;
        while !self.rejoin_once(round % 10 == 0).await {
            round += 1;
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(BOOTSTRAP_RETRY) => {}
            }
        }
    }

    /// A restarted member sends Join(me) to the leader, found through the membership's other
    /// members and the seeds: a no-op for a current voter; updates its address when it
    /// restarted at another one (the old address is unreachable, so it may never hear from
    /// the leader otherwise); adds it back when it was removed (a scaled-down broker whose
    /// volume was kept). True once the leader answered OK.
    async fn rejoin_once(&self, log: bool) -> bool {
        let m = self.metrics().membership_config;
        let recorded = m
            .membership()
            .get_node(&self.my_id())
            .map(|n| n.addr.clone());
        if self.is_leader() {
            return self.join(self.me.clone()).await.is_ok();
        }
        let mut candidates: Vec<String> = m
            .membership()
            .nodes()
            .filter(|(id, _)| **id != self.my_id())
            .map(|(_, n)| n.addr.clone())
            .collect();
        candidates.extend(self.seeds.iter().cloned());
        let mut leader = self.leader_info().filter(|l| l.id != self.node_id);
        for c in &candidates {
            if leader.is_some() {
                break;
            }
            if let Ok(Response::Probe(p)) = network::call(c, &Request::Probe, PROBE_TIMEOUT).await {
                leader = p.leader.filter(|l| l.id != self.node_id);
            }
        }
        let Some(l) = leader else {
            if log {
                tracing::info!(node_id = self.node_id, recorded = ?recorded,
                    "restarted member: no leader found yet to rejoin through");
            }
            return false;
        };
        let timeout = JOIN_CATCH_UP + Duration::from_secs(5);
        match network::call(&l.addr, &Request::Join(self.me.clone()), timeout).await {
            Ok(Response::Join(Ok(()))) => {
                tracing::info!(node_id = self.node_id, recorded = ?recorded,
                    addr = %self.me.cluster_addr, leader = l.id, "restarted member rejoined");
                true
            }
            other => {
                if log {
                    tracing::info!(node_id = self.node_id, leader = l.id, answer = ?other,
                        "rejoining; retrying");
                }
                false
            }
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .raft
            .wait(Some(left.max(Duration::from_millis(1))))
            .applied_index_at_least(Some(index), "proposal applied locally")
            .await;
    }

    async fn propose(&self, cmd: Command, deadline: Instant) -> Result<Forwarded, ClusterError> {
        let started = Instant::now();
        let mut last: (Option<LeaderInfo>, String);
        // The last leader a forward was sent to (kept when later attempts know no leader).
        let mut tried: Option<LeaderInfo> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(ClusterError::ShuttingDown);
            }
            let seen_leader = self.raft.metrics().borrow().current_leader;
            match self.raft.client_write(cmd.clone()).await {
                Ok(r) => {
                    return Ok(Forwarded {
                        index: r.log_id.index,
                        outcome: r.data,
                    })
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(id), Some(node)) if self.cluster_addr.is_some() => {
                            let l = LeaderInfo {
                                id: id as i32,
                                addr: node.addr,
                            };
                            let left = deadline.saturating_duration_since(Instant::now());
                            let req = Request::Forward(cmd.clone());
                            match network::call(&l.addr, &req, left.max(Duration::from_millis(100)))
                                .await
                            {
                                Ok(Response::Forward(Ok(fw))) => {
                                    self.wait_applied(fw.index, deadline).await;
                                    return Ok(fw);
                                }
                                Ok(Response::Forward(Err(r))) => last = (Some(l), r.to_string()),
                                Ok(other) => {
                                    last = (Some(l), format!("unexpected answer {other:?}"))
                                }
                                Err(e @ CallError::Connect { .. }) => {
                                    last = (Some(l), e.to_string())
                                }
                                Err(e) => {
                                    return Err(ClusterError::Ambiguous {
                                        leader: l.id,
                                        addr: l.addr,
                                        error: e.to_string(),
                                    })
                                }
                            }
                        }
                        (id, _) => {
                            last = (
                                None,
                                format!("no reachable leader known (leader id {id:?})"),
                            )
                        }
                    }
                }
                Err(RaftError::APIError(e)) => last = (None, e.to_string()),
                Err(RaftError::Fatal(e)) => {
                    return Err(if self.cancel.is_cancelled() {
                        ClusterError::ShuttingDown
                    } else {
                        ClusterError::Raft(e.to_string())
                    })
                }
            }
            if last.0.is_some() {
                tried.clone_from(&last.0);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClusterError::Deadline {
                    leader: match &tried {
                        Some(l) => format!("node {} at {}", l.id, l.addr),
                        None => "none".to_string(),
                    },
                    error: last.1,
                    waited: now - started,
                });
            }
            // Wait (bounded) for a leader change before the next attempt.
            let pause = (deadline - now).min(Duration::from_millis(200));
            let _ = self
                .raft
                .wait(Some(pause))
                .metrics(
                    |m| m.current_leader.is_some() && m.current_leader != seen_leader,
                    "leader change",
                )
                .await;
        }
    }

    async fn remove_node(&self, id: i32) -> Result<(), ClusterError> {
        let started = Instant::now();
        let deadline = started + PROPOSE_DEADLINE;
        let mut last: String;
        loop {
            if self.cancel.is_cancelled() {
                return Err(ClusterError::ShuttingDown);
            }
            if self.is_leader() {
                match self.remove_local(id).await {
                    Ok(()) => return Ok(()),
                    Err(Refusal::Failed(reason)) => {
                        return Err(ClusterError::RemoveRefused { node: id, reason })
                    }
                    Err(r) => last = r.to_string(),
                }
            } else if let (Some(l), true) = (self.leader_info(), self.cluster_addr.is_some()) {
                let left = deadline.saturating_duration_since(Instant::now());
                match network::call(&l.addr, &Request::RemoveNode(id), left).await {
                    Ok(Response::RemoveNode(Ok(()))) => return Ok(()),
                    Ok(Response::RemoveNode(Err(Refusal::Failed(reason)))) => {
                        return Err(ClusterError::RemoveRefused { node: id, reason })
                    }
                    Ok(other) => last = format!("leader {} at {}: {other:?}", l.id, l.addr),
                    Err(e) => last = e.to_string(),
                }
            } else {
                last = "no leader known".to_string();
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Deadline {
                    leader: self
                        .leader_info()
                        .map(|l| format!("node {} at {}", l.id, l.addr))
                        .unwrap_or_else(|| "none".to_string()),
                    error: last,
                    waited: started.elapsed(),
                });
            }
            let _ = self
                .raft
                .wait(Some(Duration::from_millis(200)))
                .metrics(|m| m.current_leader.is_some(), "leader")
                .await;
        }
    }

    /// Leader side of remove_node.
    async fn remove_local(&self, id: i32) -> Result<(), Refusal> {
        let _g = self.membership_lock.lock().await;
        let nid = id as NodeId;
        let m = self.metrics().membership_config;
        let membership = m.membership();
        if membership.get_node(&nid).is_none() {
            return Ok(());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&nid) {
            if voters.len() == 1 {
                return Err(Refusal::Failed(format!("node {id} is the last voter")));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([nid]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([nid]))
        };
        match self.raft.change_membership(change, false).await {
            Ok(_) => {
                tracing::info!(
                    node_id = self.node_id,
                    removed = id,
                    "node removed from the membership"
                );
                Ok(())
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Refusal::NotLeader {
                    leader: self
                        .leader_info()
                        .filter(|l| Some(l.id as NodeId) == f.leader_id),
                })
            }
            Err(e) => Err(Refusal::Failed(e.to_string())),
        }
    }

    /// Leader side of JoinEmpty. A member id coming back with an empty volume (a deleted PVC,
    /// a replaced disk) is not the member it was: Raft's safety rests on every member
    /// remembering its log and the votes it gave, so the old member is removed before the empty
    /// one joins as a new learner that votes only once it has caught up.
    async fn join_empty(&self, rec: BrokerRecord) -> Result<(), Refusal> {
        if !self.is_leader() {
            return Err(Refusal::NotLeader {
                leader: self.leader_info(),
            });
        }
        let nid = rec.id as NodeId;
        if self
            .metrics()
            .membership_config
            .membership()
            .get_node(&nid)
            .is_some()
        {
            tracing::warn!(node_id = self.node_id, member = rec.id, addr = %rec.cluster_addr,
                "a member came back with an empty volume; removing the member it was before it joins again");
            self.remove_local(rec.id).await?;
        }
        self.join(rec).await
    }

    /// Leader side of Join: learner, caught up, then voter while fewer than MAX_VOTERS.
    async fn join(&self, rec: BrokerRecord) -> Result<(), Refusal> {
        if !self.is_leader() {
            return Err(Refusal::NotLeader {
                leader: self.leader_info(),
            });
        }
        let _g = self.membership_lock.lock().await;
        let nid = rec.id as NodeId;
        let node = BasicNode {
            addr: rec.cluster_addr.clone(),
        };
        let m = self.metrics().membership_config;
        let membership = m.membership();
        let existing = membership.get_node(&nid).cloned();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let not_leader =
            |f: openraft::error::ForwardToLeader<NodeId, BasicNode>| Refusal::NotLeader {
                leader: self
                    .leader_info()
                    .filter(|l| Some(l.id as NodeId) == f.leader_id),
            };
        if let Some(old) = existing.as_ref().filter(|n| **n != node) {
            // A member that restarted at another address: update it in place.
            tracing::info!(node_id = self.node_id, member = rec.id, old = %old.addr,
                new = %rec.cluster_addr, "member address changed");
            match self
                .raft
                .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(nid, node)])), true)
                .await
            {
                Ok(_) => {}
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    return Err(not_leader(f))
                }
                Err(e) => return Err(Refusal::Failed(e.to_string())),
            }
        } else if existing.is_none() {
            tracing::info!(node_id = self.node_id, joining = rec.id, addr = %rec.cluster_addr,
                "adding a learner");
            match tokio::time::timeout(JOIN_CATCH_UP, self.raft.add_learner(nid, node, true)).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    return Err(not_leader(f))
                }
                Ok(Err(e)) => return Err(Refusal::Failed(e.to_string())),
                Err(_) => {
                    return Err(Refusal::Failed(format!(
                        "node {} did not catch up within {JOIN_CATCH_UP:?}",
                        rec.id
                    )))
                }
            }
        }
        if !voters.contains(&nid) && voters.len() < MAX_VOTERS {
            match self
                .raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([nid])), true)
                .await
            {
                Ok(_) => tracing::info!(node_id = self.node_id, promoted = rec.id, "voter added"),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    return Err(not_leader(f))
                }
                Err(e) => return Err(Refusal::Failed(e.to_string())),
            }
        }
        Ok(())
    }

    async fn dispatch(&self, req: Request) -> Response {
        match req {
            Request::AppendEntries(r) => Response::AppendEntries(self.raft.append_entries(r).await),
            Request::Vote(_) if !self.voting.load(Ordering::SeqCst) => Response::Error(
                "not voting: this member started on a fresh volume and has not joined yet".into(),
            ),
            Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
            Request::InstallSnapshot(r) => {
                Response::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            Request::Probe => Response::Probe(ProbeReply {
                node_id: self.node_id,
                member: self.is_member(),
                leader: self.leader_info(),
            }),
            Request::Join(rec) => Response::Join(self.join(rec).await),
            Request::JoinEmpty(rec) => Response::Join(self.join_empty(rec).await),
            Request::Forward(cmd) => Response::Forward(match self.raft.client_write(cmd).await {
                Ok(r) => Ok(Forwarded {
                    index: r.log_id.index,
                    outcome: r.data,
                }),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    Err(Refusal::NotLeader {
                        leader: self.leader_info(),
                    })
                }
                Err(e) => Err(Refusal::Failed(e.to_string())),
            }),
            Request::FetchPartition {
                topic,
                partition,
                offset,
                max_bytes,
            } => Response::FetchPartition(match self.partitions.get() {
                Some(svc) => svc.fetch(topic, partition, offset, max_bytes).await,
                None => Err("this broker is still starting".into()),
            }),
            Request::Handover {
                topic,
                partition,
                leader_epoch,
            } => Response::Handover(match self.partitions.get() {
                Some(svc) => svc.handover(topic, partition, leader_epoch).await,
                None => Err("this broker is still starting".into()),
            }),
            Request::AdoptGroup { group, offsets } => {
                Response::AdoptGroup(match self.partitions.get() {
                    Some(svc) => svc.adopt_group(group, offsets).await,
                    None => Err("this broker is still starting".into()),
                })
            }
            Request::RemoveNode(id) => Response::RemoveNode(if self.is_leader() {
                self.remove_local(id).await
            } else {
                Err(Refusal::NotLeader {
                    leader: self.leader_info(),
                })
            }),
        }
    }
}

/// Accepts inter-broker connections until shutdown.
async fn serve(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(inner.clone(), stream, peer));
            }
            Err(e) => {
                tracing::warn!(node_id = inner.node_id, error = %e, "cluster listener accept");
                tokio::select! {
                    _ = inner.cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

async fn connection(inner: Arc<Inner>, mut stream: TcpStream, peer: SocketAddr) {
    loop {
        let frame = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            f = network::read_frame(&mut stream) => f,
        };
        let body = match frame {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(node_id = inner.node_id, %peer, error = %e, "cluster connection");
                return;
            }
        };
        let resp = match serde_json::from_slice::<Request>(&body) {
            Ok(req) => {
                tokio::select! {
                    _ = inner.cancel.cancelled() => Response::Error("shutting down".to_string()),
                    r = inner.dispatch(req) => r,
                }
            }
            Err(e) => Response::Error(format!("{UNDECODABLE}: {e}")),
        };
        if let Err(e) = network::write_frame(&mut stream, &resp).await {
            tracing::debug!(node_id = inner.node_id, %peer, error = %e, "cluster connection");
            return;
        }
        if inner.cancel.is_cancelled() {
            return;
        }
    }
}

/// Leader-side task: while there are fewer than MAX_VOTERS voters, promote caught-up learners.
async fn keep_voters(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(KEEPER_PERIOD);
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !inner.is_leader() {
            continue;
        }
        let m = inner.metrics();
        let membership = m.membership_config.membership();
        if membership.get_joint_config().len() > 1 {
            continue;
        }
        let voters = membership.voter_ids().count();
        if voters >= MAX_VOTERS {
            continue;
        }
        let last = m.last_log_index.unwrap_or(0);
        let caught_up: BTreeSet<NodeId> = membership
            .learner_ids()
            .filter(|l| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(l).copied().flatten())
                    .is_some_and(|matched| matched.index + CAUGHT_UP_LAG >= last)
            })
            .take(MAX_VOTERS - voters)
            .collect();
        if caught_up.is_empty() {
            continue;
        }
        let _g = inner.membership_lock.lock().await;
        match inner
            .raft
            .change_membership(ChangeMembers::AddVoterIds(caught_up.clone()), true)
            .await
        {
            Ok(_) => tracing::info!(node_id = inner.node_id, promoted = ?caught_up,
                "learners promoted to voters"),
            Err(e) => tracing::warn!(node_id = inner.node_id, error = %e, "promoting learners"),
        }
    }
}
