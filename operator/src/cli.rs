//! Command line of `sluice-operator`: `run` (the default) and `crd`.

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};

/// Sluice's Kubernetes operator for MessageQueue resources.
#[derive(Debug, Parser)]
#[command(name = "sluice-operator", version, about)]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of `run`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the operator (the default).
    Run,
    /// Print the MessageQueue CRD as YAML.
    Crd,
    /// Print the field reference (docs/crd-reference.md) as Markdown.
    CrdReference,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of the operator process. Every flag has a `SLUICE_*` environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(
        long,
        env = "SLUICE_WATCH_NAMESPACES",
        value_delimiter = ',',
        global = true
    )]
    pub namespaces: Vec<String>,

    /// Address of the HTTP server for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "SLUICE_HTTP_LISTEN",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub http_listen: SocketAddr,

    /// Elect a leader through a Lease so several replicas can run with one acting.
    #[arg(long, env = "SLUICE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "SLUICE_LEASE_NAME",
        default_value = "sluice-operator",
        global = true
    )]
    pub lease_name: String,

    /// Namespace of the Lease; defaults to POD_NAMESPACE, then the client's namespace.
    #[arg(long, env = "SLUICE_LEASE_NAMESPACE", global = true)]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease; defaults to POD_NAME, then the hostname.
    #[arg(long, env = "SLUICE_IDENTITY", global = true)]
    pub identity: Option<String>,

    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Broker image repository; the tag is the broker version (spec.image overrides both).
    #[arg(
        long,
        env = "SLUICE_BROKER_IMAGE_REPOSITORY",
        default_value = "ghcr.io/sluice/sluice-broker",
        global = true
    )]
    pub broker_image_repository: String,

    /// Broker version for MessageQueues that do not set spec.version.
    #[arg(long, env = "SLUICE_DEFAULT_BROKER_VERSION", default_value = env!("CARGO_PKG_VERSION"), global = true)]
    pub default_broker_version: String,

    /// DNS domain of the Kubernetes cluster; brokers find each other by
    /// `<pod>.<headless-service>.<namespace>.svc.<domain>`.
    #[arg(
        long,
        env = "SLUICE_CLUSTER_DOMAIN",
        default_value = "cluster.local",
        global = true
    )]
    pub cluster_domain: String,

    /// Timeout of each Kafka admin request and /readyz probe to a broker, in milliseconds.
    #[arg(
        long,
        env = "SLUICE_BROKER_TIMEOUT_MS",
        default_value_t = 5000,
        global = true
    )]
    pub broker_timeout_ms: u64,

    /// Shortest time between two reads of a MessageQueue's queue counts on status (messages,
    /// backlog, in flight, a stream's consumer-group lag), in seconds; a MessageQueue that
    /// declares queues is also looked at again at least this often. 0 turns the counts off.
    #[arg(
        long,
        env = "SLUICE_QUEUE_COUNTS_INTERVAL_SECS",
        default_value_t = 60,
        global = true
    )]
    pub queue_counts_interval_secs: u64,

    /// Deadline of each Kubernetes API request (gets, applies, the leader Lease), in
    /// milliseconds. A request on a connection that went silent (a network partition, a flow
    /// dropped by a load balancer) fails after this instead of holding a reconcile forever.
    /// Watches are not bound by it; a watch that stays silent for longer than
    /// --watch-timeout-seconds plus 5 s is taken as dead and opened again.
    #[arg(
        long,
        env = "SLUICE_API_TIMEOUT_MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1000..),
        global = true
    )]
    pub api_timeout_ms: u64,

    /// How long the API server keeps each watch open before the operator opens it again, in
    /// seconds (kube-rs' default is 290). It is also how long a watch whose connection died
    /// silently goes unnoticed, so the operator would miss changes for that long after a
    /// network partition. Reopening is cheap: it resumes from the last resourceVersion.
    #[arg(
        long,
        env = "SLUICE_WATCH_TIMEOUT_SECONDS",
        default_value_t = 55,
        value_parser = clap::value_parser!(u32).range(5..=3600),
        global = true
    )]
    pub watch_timeout_seconds: u32,

    /// How often the operator hands the heap memory it freed back to the system, in seconds
    /// (glibc builds; the static musl image's allocator returns it by itself). After a burst
    /// of reconciles glibc keeps the freed heap mapped, so the RSS stays at the burst's peak
    /// until this runs. 0 turns it off.
    #[arg(
        long,
        env = "SLUICE_MEMORY_TRIM_INTERVAL_SECS",
        default_value_t = 30,
        global = true
    )]
    pub memory_trim_interval_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_and_flags_work_with_or_without_it() {
        let cli = Cli::parse_from([
            "sluice-operator",
            "--namespaces",
            "a,b",
            "--leader-election",
            "false",
        ]);
        assert!(cli.command.is_none());
        assert_eq!(cli.run.namespaces, ["a", "b"]);
        assert!(!cli.run.leader_election);
        let cli = Cli::parse_from(["sluice-operator", "run", "--log-format", "json"]);
        assert!(matches!(cli.command, Some(Command::Run)));
        assert_eq!(cli.run.log_format, LogFormat::Json);
        assert!(cli.run.namespaces.is_empty());
        assert_eq!(cli.run.http_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(cli.run.default_broker_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(cli.run.queue_counts_interval_secs, 60);
        assert_eq!(cli.run.memory_trim_interval_secs, 30);
    }

    #[test]
    fn crd_subcommand_parses() {
        let cli = Cli::parse_from(["sluice-operator", "crd"]);
        assert!(matches!(cli.command, Some(Command::Crd)));
    }
}
