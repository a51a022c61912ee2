//! The broker process: [`Broker::start`] binds the Kafka and HTTP listeners, recovers the data
//! directory, and spawns the accept loop and background tasks; [`Broker::shutdown`] stops
//! accepting, lets in-flight requests finish, and fsyncs the logs.
//!
//! Files: `conn` (one connection: TLS, SASL, framing, reader/writer split, in-order
//! replies), `tls` (a TLS listener's handshakes and their failures), [`identity`]
//! (this broker's own files in the data directory), [`liveness`] (the quorum leader fences
//! unreachable brokers), [`groups`] (the group coordinator's wiring: offsets partitions led
//! here, the topic directory, the import of a pre-replication offsets file).
//! Replication (leading, following, controlled shutdown) is [`crate::replica`]'s.
//!
//! The top of the import graph: may import every other module of the crate; none imports it
//! (`lib.rs` re-exports [`Broker`]).

mod conn;
mod frame_pool;
pub mod groups;
pub(crate) use conn::read_frames;
pub mod identity;
pub mod liveness;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cluster::state::{BrokerRecord, BrokerState, Command, Endpoint};
use crate::cluster::{Cluster, ClusterConfig, Transport};
use crate::config::{AuthorizerKind, ClusterSecurity, Config, Listener};
use crate::context::BrokerContext;
use crate::error::BrokerError;
use crate::group::{GroupConfig, GroupCoordinator};
use crate::http::HttpState;
use crate::log::{LogDefaults, LogManager};
use crate::metrics::Metrics;
use crate::replica::{self, ReplicaManager};
use crate::security::acl::Authorizer;
use crate::security::tls::{TlsContext, TlsFiles};
use crate::security::users::BootstrapUsers;
use crate::security::{Mechanism, Security};
use crate::share::{ShareCoordinator, ShareSettings};
use crate::topology;

/// How long shutdown waits for in-flight requests before giving up on them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A running broker.
#[derive(Debug)]
pub struct Broker {
    kafka_addr: SocketAddr,
    /// Every Kafka listener's name and bound address, in `--listeners` order.
    listener_addrs: Vec<(String, SocketAddr)>,
    http_addr: SocketAddr,
    advertise: String,
    ctx: Arc<BrokerContext>,
    shutdown: CancellationToken,
    http_shutdown: CancellationToken,
    http_state: Arc<HttpState>,
    accept: Option<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
    connections: TaskTracker,
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The advertised `host:port` of a listener: the flag, else the bound address (hostname when
/// unspecified).
pub fn advertised_address(listener: &Listener, bound: SocketAddr) -> (String, i32) {
    if let Some((host, port)) = &listener.advertised {
        return (host.clone(), *port);
    }
    let host = if bound.ip().is_unspecified() {
        machine_hostname()
    } else {
        bound.ip().to_string()
    };
    (host, i32::from(bound.port()))
}

/// One bound Kafka listener, as its accept loop and connections see it.
#[derive(Debug)]
pub(crate) struct KafkaListener {
    pub spec: Listener,
    /// SASL mechanisms offered here (PLAIN only with TLS).
    pub mechanisms: Vec<Mechanism>,
}

/// TLS material, bootstrap users and the authorizer from the flags (files read now; an
/// error names the file).
fn security(config: &Config) -> Result<Security, BrokerError> {
    let tls = match (
        &config.security.ssl_certificate_file,
        &config.security.ssl_key_file,
    ) {
        (Some(certificate), Some(key)) => Some(
            TlsContext::open(TlsFiles {
                certificate: certificate.clone(),
                key: key.clone(),
                ca: config.security.ssl_ca_file.clone(),
            })
            .map_err(|e| BrokerError::Security {
                reason: e.to_string(),
            })?,
        ),
        _ => None,
    };
    let users = match &config.security.sasl_users_file {
        Some(path) => {
            Some(
                BootstrapUsers::open(path.clone()).map_err(|e| BrokerError::Security {
                    reason: e.to_string(),
                })?,
            )
        }
        None => None,
    };
    let authorizer = match config.security.authorizer {
        AuthorizerKind::None => None,
        AuthorizerKind::Acl => Some(Authorizer::new(config.super_user_principals()?)),
    };
    Ok(Security {
        tls,
        users,
        authorizer,
        authentication_timeout: Duration::from_millis(
            u64::try_from(config.security.authentication_timeout_ms).unwrap_or(10_000),
        ),
        ..Security::default()
    })
}

/// Checks the certificate files and the users file every `every` and takes changed ones
/// into use (new connections get them).
fn spawn_reload(security: Arc<Security>, every: Duration, shutdown: CancellationToken) {
    if security.tls.is_none() && security.users.is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sec = Arc::clone(&security);
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(tls) = &sec.tls {
                    match tls.reload_if_changed() {
                        Ok(true) => tracing::info!(subject = ?tls.own_subject(), "TLS certificate files changed; new connections use them"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "TLS certificate files changed but cannot be used; keeping the previous ones"),
                    }
                }
                if let Some(users) = &sec.users {
                    match users.reload_if_changed() {
                        Ok(true) => tracing::info!(users = users.names().len(), "SASL users file changed; reloaded"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "SASL users file changed but cannot be used; keeping the previous users"),
                    }
                }
            })
            .await;
        }
    });
}

/// Binds `addr` with a listen backlog of `backlog` (`--socket-listen-backlog-size`): the
/// standard library's 128 overflows when clients (re)connect in a burst (a rolled broker's
/// clients all at once), and every overflowed SYN costs its client a one-second retransmit.
async fn bind(what: &'static str, addr: &str, backlog: u32) -> Result<TcpListener, BrokerError> {
    let error = |source| BrokerError::Bind {
        what,
        addr: addr.to_string(),
        source,
    };
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await.map_err(error)? {
        let socket = if sa.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        };
        let listener = socket.and_then(|s| {
            // As TcpListener::bind does: a restarted broker rebinds its port at once.
            s.set_reuseaddr(true)?;
            s.bind(sa)?;
            s.listen(backlog)
        });
        match listener {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(error(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    })))
}

impl Broker {
    /// Validates `config`, binds both listeners, recovers the data directory and starts serving.
    pub async fn start(config: Config) -> Result<Broker, BrokerError> {
        config.validate()?;
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| BrokerError::Io {
            path: data_dir.clone(),
            source,
        })?;

        let listener_specs = config.listener_specs()?;
        let inter_broker = config.inter_broker_listener()?;
        let security = Arc::new(security(&config)?);
        let mechanisms = config.sasl_mechanisms()?;
        let mut kafka = Vec::new();
        for spec in listener_specs {
            let l = bind("Kafka", &spec.bind, config.limits().listen_backlog).await?;
            let addr = l.local_addr().map_err(|source| BrokerError::Bind {
                what: "Kafka",
                addr: spec.bind.clone(),
                source,
            })?;
            let offered = mechanisms
                .iter()
                .copied()
                .filter(|m| *m != Mechanism::Plain || spec.protocol.tls())
                .collect();
            kafka.push((
                l,
                addr,
                Arc::new(KafkaListener {
                    spec,
                    mechanisms: offered,
                }),
            ));
        }
        let http = bind("HTTP", &config.http_listen, config.limits().listen_backlog).await?;
        let kafka_addr = kafka
            .first()
            .map(|k| k.1)
            .ok_or_else(|| BrokerError::InvalidConfig {
                setting: "--listeners".into(),
                value: String::new(),
                allowed: "at least one listener".into(),
            })?;
        let listener_addrs: Vec<(String, SocketAddr)> = kafka
            .iter()
            .map(|(_, a, l)| (l.spec.name.clone(), *a))
            .collect();
        let http_addr = http.local_addr().map_err(|source| BrokerError::Bind {
            what: "HTTP",
            addr: config.http_listen.clone(),
            source,
        })?;

        let shutdown = CancellationToken::new();
        let http_shutdown = CancellationToken::new();
        let http_state = Arc::new(HttpState::default());
        let http_task = tokio::spawn(
            crate::http::serve(http, Arc::clone(&http_state), http_shutdown.clone())
                .instrument(tracing::info_span!("http", addr = %http_addr)),
        );

        // Recovery reads every partition: blocking work.
        let defaults = LogDefaults {
            log: config.log_config(),
            default_partitions: config.default_partitions,
            default_replication_factor: config.default_replication_factor,
            min_insync_replicas: config.min_insync_replicas,
            fsync_interval: Duration::from_millis(
                u64::try_from(config.fsync_interval_ms).unwrap_or(1000),
            ),
            auto_create_topics: config.auto_create_topics,
            retention_check_interval: Duration::from_millis(
                u64::try_from(config.retention_check_interval_ms).unwrap_or(10_000),
            ),
            compaction_key_map_entries: usize::try_from(config.compaction_key_map_entries)
                .unwrap_or(crate::log::DEFAULT_KEY_MAP_ENTRIES),
            share_record_lock_ms: config.share_record_lock_duration_ms,
            share_delivery_count_limit: config.share_delivery_count_limit,
        };
        let initial_rebalance_delay_ms = config.group_initial_rebalance_delay_ms;
        use crate::group::consumer::MigrationPolicy;
        let consumer = crate::group::ConsumerSettings {
            session_timeout: Duration::from_millis(config.group_consumer_session_timeout_ms as u64),
            heartbeat_interval: Duration::from_millis(
                config.group_consumer_heartbeat_interval_ms as u64,
            ),
            migration: match config.group_consumer_migration_policy {
                crate::config::MigrationPolicy::Bidirectional => MigrationPolicy::Bidirectional,
                crate::config::MigrationPolicy::Upgrade => MigrationPolicy::Upgrade,
                crate::config::MigrationPolicy::Downgrade => MigrationPolicy::Downgrade,
                crate::config::MigrationPolicy::Disabled => MigrationPolicy::Disabled,
            },
            ..Default::default()
        };
        let dir = data_dir.clone();
        let recovered = tokio::task::spawn_blocking(move || {
            let logs = LogManager::open(&dir, defaults).map_err(|source| BrokerError::Log {
                path: dir.clone(),
                source,
            })?;
            let cluster_id = identity::load_or_create_cluster_id(&dir)?;
            let groups = GroupCoordinator::new(GroupConfig {
                initial_rebalance_delay_ms,
                consumer,
                ..GroupConfig::default()
            })?;
            Ok::<_, BrokerError>((logs, cluster_id, groups))
        })
        .await
        .map_err(|e| BrokerError::Task {
            task: "recovery",
            reason: e.to_string(),
        });
        let (logs, local_cluster_id, groups) = match recovered.and_then(|r| r) {
            Ok(r) => r,
            Err(e) => {
                http_shutdown.cancel();
                return Err(e);
            }
        };

        let endpoints: Vec<Endpoint> = kafka
            .iter()
            .map(|(_, bound, l)| {
                let (host, port) = advertised_address(&l.spec, *bound);
                Endpoint {
                    name: l.spec.name.clone(),
                    host,
                    port,
                }
            })
            .collect();
        let (advertised_host, advertised_port) = endpoints
            .iter()
            .find(|e| e.name == inter_broker.name)
            .map(|e| (e.host.clone(), e.port))
            .unwrap_or_else(|| advertised_address(&inter_broker, kafka_addr));
        let transport = Transport {
            tls: match config.security.cluster_security_protocol {
                ClusterSecurity::Ssl => security.tls.clone(),
                ClusterSecurity::Plaintext => None,
            },
            peers: config
                .super_user_principals()?
                .into_iter()
                .filter(|p| p.kind == "User")
                .map(|p| p.name)
                .collect(),
        };
        let cluster = match start_cluster(
            &config,
            &advertised_host,
            advertised_port,
            endpoints,
            transport,
            &shutdown,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                http_shutdown.cancel();
                return Err(e);
            }
        };
        let logs = Arc::new(logs);
        let groups = Arc::new(groups);
        let metrics = Arc::new(Metrics::new());
        let replica_config = replica::ReplicaConfig {
            peer_tls: inter_broker
                .protocol
                .tls()
                .then(|| security.tls.clone())
                .flatten(),
            ..config.replica_config()
        };
        let replicas = ReplicaManager::new(
            config.node_id,
            replica_config,
            Arc::clone(&cluster),
            Arc::clone(&logs),
            Arc::clone(&metrics),
            shutdown.clone(),
        );
        groups.set_topic_directory(Arc::new(groups::ClusterTopics {
            cluster: Arc::clone(&cluster),
            min_insync_replicas: config.min_insync_replicas,
        }));
        replicas.set_listener(Arc::new(groups::GroupLeadership(Arc::clone(&groups))));
        logs.spawn_background(shutdown.clone());
        groups.spawn_expiry(shutdown.clone());
        let ctx = Arc::new(BrokerContext {
            node_id: config.node_id,
            advertised_host: advertised_host.clone(),
            advertised_port,
            local_cluster_id,
            cluster,
            auto_create_topics: config.auto_create_topics,
            min_insync_replicas: config.min_insync_replicas,
            logs,
            groups,
            shares: Arc::new(ShareCoordinator::new(ShareSettings {
                record_lock_ms: config.share_record_lock_duration_ms,
                delivery_count_limit: config.share_delivery_count_limit,
                ..ShareSettings::default()
            })),
            produce_throttles: Default::default(),
            fetch_throttles: Default::default(),
            replicas,
            share_peers: Default::default(),
            producer_ids: Default::default(),
            txns: Default::default(),
            offsets_topic: config.offsets_topic(),
            metrics,
            security: Arc::clone(&security),
            inter_broker_listener: inter_broker.name.clone(),
            shutdown: shutdown.clone(),
            limits: config.limits(),
            fetch_sessions: crate::handlers::fetch_sessions::FetchSessions::new(
                config.limits().fetch_session_slots,
            ),
        });
        crate::txn::spawn(Arc::clone(&ctx));
        spawn_reload(
            Arc::clone(&security),
            Duration::from_millis(
                u64::try_from(config.security.ssl_reload_interval_ms).unwrap_or(10_000),
            ),
            shutdown.clone(),
        );

        let connections = TaskTracker::new();
        let _ = http_state.ctx.set(Arc::clone(&ctx));
        // A broker of a larger cluster may wait for its peers: it starts serving Kafka once it
        // has joined the quorum (clients' connections wait in the listen backlog until then).
        // A single node is ready at once, so `start` returns a serving broker.
        let bring_up = bring_up(Arc::clone(&ctx), Arc::clone(&http_state));
        let max = config.max_request_bytes();
        let accept_all = {
            let (ctx, tracker) = (Arc::clone(&ctx), connections.clone());
            async move {
                // One connection limit for all listeners together.
                let limit = Arc::new(Semaphore::new(ctx.limits.max_connections));
                let loops: Vec<_> = kafka
                    .into_iter()
                    .map(|(l, _, spec)| {
                        let (ctx, tracker) = (Arc::clone(&ctx), tracker.clone());
                        accept_loop(l, spec, ctx, tracker, Arc::clone(&limit), max)
                    })
                    .collect();
                futures::future::join_all(loops).await;
            }
        };
        let accept = if config.cluster_listen.is_none() {
            bring_up.await;
            tokio::spawn(accept_all)
        } else {
            let ctx2 = Arc::clone(&ctx);
            tokio::spawn(async move {
                tokio::select! {
                    _ = ctx2.shutdown.cancelled() => return,
                    _ = bring_up => {}
                }
                accept_all.await;
            })
        };

        let advertise = if advertised_host.contains(':') {
            format!("[{advertised_host}]:{advertised_port}")
        } else {
            format!("{advertised_host}:{advertised_port}")
        };
        Ok(Broker {
            kafka_addr,
            listener_addrs,
            http_addr,
            advertise,
            ctx,
            shutdown,
            http_shutdown,
            http_state,
            accept: Some(accept),
            http: Some(http_task),
            connections,
        })
    }

    /// The bound address of the first Kafka listener.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// The bound address of the Kafka listener `name` (as in `--listeners`, any case).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listener_addrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, a)| *a)
    }

    /// The bound HTTP listener address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The `host:port` other brokers reach this broker's inter-broker listener at.
    pub fn advertised(&self) -> &str {
        &self.advertise
    }

    /// Shared broker state (tests and embedding).
    pub fn context(&self) -> &Arc<BrokerContext> {
        &self.ctx
    }

    /// Stops accepting, lets in-flight requests finish (long polls are woken early), fsyncs
    /// every partition (committed offsets included: they live in `__consumer_offsets`), and
    /// stops the HTTP server.
    pub async fn shutdown(mut self) -> Result<(), BrokerError> {
        tracing::info!("shutting down");
        // Not ready any more: load balancers stop sending new clients while we drain.
        self.http_state.ready.store(false, Ordering::Release);
        // Controlled shutdown: other in-sync replicas take over this broker's leaderships
        // before it stops serving them.
        self.ctx.replicas.hand_over_leadership().await;
        self.shutdown.cancel();
        self.ctx.replicas.stop();
        if let Some(a) = self.accept.take() {
            let _ = a.await;
        }
        self.connections.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.connections.len(),
                "in-flight requests did not finish within the drain timeout"
            );
        }
        self.ctx.cluster.shutdown().await;
        let ctx = Arc::clone(&self.ctx);
        let flushed = tokio::task::spawn_blocking(move || {
            let logs = ctx.logs.flush_all().map_err(|source| BrokerError::Log {
                path: ctx.logs.data_dir().to_path_buf(),
                source,
            });
            logs
        })
        .await
        .map_err(|e| BrokerError::Task {
            task: "final flush",
            reason: e.to_string(),
        })
        .and_then(|r| r);
        self.http_shutdown.cancel();
        if let Some(h) = self.http.take() {
            let _ = h.await;
        }
        if flushed.is_ok() {
            tracing::info!("shutdown complete");
        }
        flushed
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // A broker dropped without `shutdown` (a failed test) must not leave tasks running.
        self.shutdown.cancel();
        self.http_shutdown.cancel();
    }
}

/// Resolves `--cluster-listen` and starts this broker's member of the metadata quorum (an
/// in-process single node without it).
async fn start_cluster(
    config: &Config,
    advertised_host: &str,
    advertised_port: i32,
    listeners: Vec<Endpoint>,
    transport: Transport,
    shutdown: &CancellationToken,
) -> Result<Arc<Cluster>, BrokerError> {
    let listen = match &config.cluster_listen {
        None => None,
        Some(addr) => Some(
            tokio::net::lookup_host(addr.as_str())
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| BrokerError::InvalidConfig {
                    setting: "--cluster-listen".into(),
                    value: addr.clone(),
                    allowed: "host:port that resolves to a local address".into(),
                })?,
        ),
    };
    // Peers reach this broker at its advertised host and the cluster port.
    // A listener on a specific address is reached there (empty: the cluster fills in the
    // bound address, which also covers port 0); one on every interface at the advertised host.
    let cluster_addr = match listen {
        Some(_) if config.cluster_advertise.is_some() => {
            config.cluster_advertise.clone().unwrap_or_default()
        }
        Some(a) if a.ip().is_unspecified() && a.port() != 0 => {
            if advertised_host.contains(':') {
                format!("[{advertised_host}]:{}", a.port())
            } else {
                format!("{advertised_host}:{}", a.port())
            }
        }
        _ => String::new(),
    };
    let me = BrokerRecord {
        id: config.node_id,
        host: advertised_host.to_string(),
        port: advertised_port,
        listeners,
        cluster_addr,
        rack: config.rack.clone(),
        state: BrokerState::Active,
        fresh_volume: false,
    };
    check_node_identity(&config.data_dir, config.node_id)?;
    let cfg = ClusterConfig {
        node_id: config.node_id,
        dir: config.data_dir.join("cluster"),
        listen,
        seeds: config.seeds.clone(),
        me,
        transport,
    };
    Cluster::start(cfg, shutdown.clone())
        .await
        .map_err(|e| BrokerError::Cluster {
            reason: e.to_string(),
        })
}

/// The node id this volume belongs to (`<data-dir>/node.id`), written on first start. A volume
/// started with another `--node-id` is refused: the quorum and the partition owners know the
/// broker by that id, so a mix-up would serve another broker's data under a wrong name.
fn check_node_identity(data_dir: &std::path::Path, node_id: i32) -> Result<(), BrokerError> {
    let path = data_dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: i32 = text.trim().parse().map_err(|_| BrokerError::CorruptFile {
                path: path.clone(),
                reason: format!("not a node id: {:?}", text.trim()),
            })?;
            if stored != node_id {
                return Err(BrokerError::InvalidConfig {
                    setting: "--node-id".into(),
                    value: node_id.to_string(),
                    allowed: format!(
                        "{stored}: the data directory {} belongs to node {stored}",
                        data_dir.display()
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            identity::write_atomic(&path, node_id.to_string().as_bytes())
        }
        Err(source) => Err(BrokerError::Io { path, source }),
    }
}

/// Waits until this broker is a caught-up member of the quorum, agrees the cluster id, brings
/// its local logs in line with the metadata, starts following metadata changes and marks the
/// broker ready.
async fn bring_up(ctx: Arc<BrokerContext>, http: Arc<HttpState>) {
    let cluster = Arc::clone(&ctx.cluster);
    tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        _ = cluster.ready() => {}
    }
    let mut delay = Duration::from_millis(100);
    loop {
        let init = Command::InitCluster {
            cluster_id: ctx.local_cluster_id.clone(),
        };
        match cluster.propose(init).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "could not agree the cluster id with the quorum");
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    topology::sync_now(&ctx.topology()).await;
    topology::spawn_sync(ctx.topology(), ctx.shutdown.clone());
    liveness::spawn(Arc::clone(&cluster), ctx.node_id, ctx.shutdown.clone());
    ctx.replicas.spawn_isr_check();
    replica::spawn_leader_rebalance(
        Arc::clone(&cluster),
        ctx.node_id,
        ctx.replicas.config().leader_rebalance_every,
        ctx.shutdown.clone(),
    );
    cluster.serve_partitions(Arc::new(groups::GroupAdoption {
        ctx: Arc::clone(&ctx),
    }));
    groups::spawn_legacy_import(Arc::clone(&ctx), groups::legacy_dir(ctx.logs.data_dir()));
    tracing::info!(cluster_id = %ctx.cluster_id(), brokers = cluster.state().brokers.len(), "joined the cluster; serving");
    http.ready.store(true, Ordering::Release);
}

async fn accept_loop(
    listener: TcpListener,
    spec: Arc<KafkaListener>,
    ctx: Arc<BrokerContext>,
    tracker: TaskTracker,
    limit: Arc<Semaphore>,
    max_request: usize,
) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, listener = %spec.spec.name, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            ctx.metrics.connection_rejected();
            tracing::warn!(%peer, max = ctx.limits.max_connections, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let ctx = Arc::clone(&ctx);
        let spec = Arc::clone(&spec);
        let span = tracing::debug_span!("conn", %peer, listener = %spec.spec.name);
        ctx.metrics.connection_opened();
        tracker.spawn(
            async move {
                conn::accept(Arc::clone(&ctx), stream, peer, &spec, max_request).await;
                ctx.metrics.connection_closed();
                drop(permit);
            }
            .instrument(span),
        );
    }
}
