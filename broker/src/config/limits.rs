//! The resource limits that bound what clients can make the broker hold: connections, the
//! listen backlog, response bytes built and not yet taken, one fetch response, a client that
//! takes nothing. Flattened into [`Config`] like the security flags; the defaults are the
//! `DEFAULT_*` constants below, and [`Config::limits`] hands the validated values to the
//! server as [`Limits`]. What each limit does at its edge is in docs/reliability.md
//! ("Resource floods and limits").

use std::time::Duration;

use clap::Args;

use super::{invalid, Config};
use crate::error::BrokerError;

/// `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: i64 = 4096;
/// `--socket-listen-backlog-size`.
pub const DEFAULT_LISTEN_BACKLOG: i64 = 1024;
/// `--queued-response-bytes-per-connection`: 64 MiB.
pub const DEFAULT_CONNECTION_QUEUED_BYTES: i64 = 64 << 20;
/// `--queued-response-bytes`: 512 MiB.
pub const DEFAULT_ALL_QUEUED_BYTES: i64 = 512 << 20;
/// `--fetch-max-bytes`: 55 MiB, Kafka's `fetch.max.bytes` default.
pub const DEFAULT_FETCH_MAX_BYTES: i64 = 55 << 20;
/// `--write-stall-timeout-ms`.
pub const DEFAULT_WRITE_STALL_TIMEOUT_MS: i64 = 30_000;
/// `--fetch-session-cache-slots`: Kafka's `max.incremental.fetch.session.cache.slots` default.
pub const DEFAULT_FETCH_SESSION_SLOTS: i64 = 1000;

/// The limit flags (see the module documentation).
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Most simultaneous client connections, all Kafka listeners together (Kafka's
    /// max.connections); more are accepted and closed at once, counted in
    /// sluice_connections_rejected_total. Each idle connection costs about 21 KiB.
    /// Range 1..=1000000.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: i64,

    /// Connection attempts the kernel queues for each Kafka listener before the broker accepts
    /// them (Kafka's socket.listen.backlog.size; the kernel also caps it at
    /// net.core.somaxconn). Too small, and a burst of reconnecting clients waits for SYN
    /// retransmits. Range 1..=65535.
    #[arg(
        long,
        env = "SLUICE_SOCKET_LISTEN_BACKLOG_SIZE",
        default_value_t = DEFAULT_LISTEN_BACKLOG
    )]
    pub socket_listen_backlog_size: i64,

    /// Response bytes one connection may have built and not yet sent before the broker stops
    /// reading its requests: a client that pipelines large fetches and reads slowly holds at
    /// most this plus one response. Range 1048576..=--queued-response-bytes.
    #[arg(
        long,
        env = "SLUICE_QUEUED_RESPONSE_BYTES_PER_CONNECTION",
        default_value_t = DEFAULT_CONNECTION_QUEUED_BYTES
    )]
    pub queued_response_bytes_per_connection: i64,

    /// Response bytes built and not yet sent, all connections together: above it, every
    /// connection with responses waiting stops reading requests until its client takes them
    /// (one with none waiting always proceeds). Range
    /// --queued-response-bytes-per-connection..=1099511627776.
    #[arg(
        long,
        env = "SLUICE_QUEUED_RESPONSE_BYTES",
        default_value_t = DEFAULT_ALL_QUEUED_BYTES
    )]
    pub queued_response_bytes: i64,

    /// Most record bytes in one fetch response, whatever the request asks (Kafka's
    /// fetch.max.bytes); the first batch may exceed it, so a consumer always gets past a large
    /// batch. Range 1024..=2147483647.
    #[arg(long, env = "SLUICE_FETCH_MAX_BYTES", default_value_t = DEFAULT_FETCH_MAX_BYTES)]
    pub fetch_max_bytes: i64,

    /// A client that takes none of a response's bytes for this many milliseconds (per 1 MiB
    /// chunk) loses its connection. Range 100..=3600000.
    #[arg(
        long,
        env = "SLUICE_WRITE_STALL_TIMEOUT_MS",
        default_value_t = DEFAULT_WRITE_STALL_TIMEOUT_MS
    )]
    pub write_stall_timeout_ms: i64,

    /// Incremental fetch sessions (KIP-227) the broker keeps, all clients together (Kafka's
    /// max.incremental.fetch.session.cache.slots): a consumer in a session names only the
    /// partitions whose position moved and gets only the partitions with news. When all are
    /// taken, a new session replaces one unused for two minutes, or the client keeps sending
    /// full fetches. 0 turns sessions off. Range 0..=100000.
    #[arg(
        long,
        env = "SLUICE_FETCH_SESSION_CACHE_SLOTS",
        default_value_t = DEFAULT_FETCH_SESSION_SLOTS
    )]
    pub fetch_session_cache_slots: i64,
}

/// The validated limits, in the units the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub listen_backlog: u32,
    pub connection_queued_bytes: usize,
    pub all_queued_bytes: usize,
    pub fetch_max_bytes: usize,
    pub write_stall_timeout: Duration,
    pub fetch_session_slots: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            listen_backlog: DEFAULT_LISTEN_BACKLOG as u32,
            connection_queued_bytes: DEFAULT_CONNECTION_QUEUED_BYTES as usize,
            all_queued_bytes: DEFAULT_ALL_QUEUED_BYTES as usize,
            fetch_max_bytes: DEFAULT_FETCH_MAX_BYTES as usize,
            write_stall_timeout: Duration::from_millis(DEFAULT_WRITE_STALL_TIMEOUT_MS as u64),
            fetch_session_slots: DEFAULT_FETCH_SESSION_SLOTS as usize,
        }
    }
}

impl Config {
    pub(super) fn validate_limits(&self) -> Result<(), BrokerError> {
        let l = &self.limits;
        let ranges: [(&str, i64, i64, i64, String); 7] = [
            (
                "--max-connections",
                l.max_connections,
                1,
                1_000_000,
                "1..=1000000".into(),
            ),
            (
                "--socket-listen-backlog-size",
                l.socket_listen_backlog_size,
                1,
                65_535,
                "1..=65535".into(),
            ),
            (
                "--queued-response-bytes-per-connection",
                l.queued_response_bytes_per_connection,
                1 << 20,
                l.queued_response_bytes,
                format!(
                    "1048576..={} (at most --queued-response-bytes)",
                    l.queued_response_bytes
                ),
            ),
            (
                "--queued-response-bytes",
                l.queued_response_bytes,
                1 << 20,
                1 << 40,
                "1048576..=1099511627776".into(),
            ),
            (
                "--fetch-max-bytes",
                l.fetch_max_bytes,
                1024,
                i64::from(i32::MAX),
                "1024..=2147483647".into(),
            ),
            (
                "--write-stall-timeout-ms",
                l.write_stall_timeout_ms,
                100,
                3_600_000,
                "100..=3600000".into(),
            ),
            (
                "--fetch-session-cache-slots",
                l.fetch_session_cache_slots,
                0,
                100_000,
                "0..=100000".into(),
            ),
        ];
        // The broker-wide budget first: the per-connection range is stated against it.
        for (setting, value, min, max, allowed) in ranges.into_iter().rev() {
            if !(min..=max).contains(&value) {
                return Err(invalid(setting, value, &allowed));
            }
        }
        Ok(())
    }

    /// The limits as the server uses them (validated to be in range).
    pub fn limits(&self) -> Limits {
        let l = &self.limits;
        let size = |v: i64| usize::try_from(v).unwrap_or(usize::MAX);
        Limits {
            max_connections: size(l.max_connections),
            listen_backlog: u32::try_from(l.socket_listen_backlog_size).unwrap_or(u32::MAX),
            connection_queued_bytes: size(l.queued_response_bytes_per_connection),
            all_queued_bytes: size(l.queued_response_bytes),
            fetch_max_bytes: size(l.fetch_max_bytes),
            write_stall_timeout: Duration::from_millis(
                u64::try_from(l.write_stall_timeout_ms).unwrap_or(0),
            ),
            fetch_session_slots: size(l.fetch_session_cache_slots),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_defaults_are_the_limits_the_server_had() {
        let c = Config::parse_from(["sluice-broker"]);
        c.validate().expect("defaults are valid");
        let l = c.limits();
        assert_eq!(l, Limits::default());
        assert_eq!(l.max_connections, 4096);
        assert_eq!(l.listen_backlog, 1024);
        assert_eq!(l.connection_queued_bytes, 64 << 20);
        assert_eq!(l.all_queued_bytes, 512 << 20);
        assert_eq!(l.fetch_max_bytes, 55 << 20);
        assert_eq!(l.write_stall_timeout, Duration::from_secs(30));
        assert_eq!(l.fetch_session_slots, 1000);
    }

    #[test]
    fn each_limit_is_a_flag_and_out_of_range_values_name_it() {
        let c = Config::parse_from([
            "sluice-broker",
            "--max-connections",
            "10",
            "--socket-listen-backlog-size",
            "64",
            "--queued-response-bytes-per-connection",
            "2097152",
            "--queued-response-bytes",
            "8388608",
            "--fetch-max-bytes",
            "4096",
            "--write-stall-timeout-ms",
            "500",
            "--fetch-session-cache-slots",
            "0",
        ]);
        c.validate().expect("valid");
        assert_eq!(
            c.limits(),
            Limits {
                max_connections: 10,
                listen_backlog: 64,
                connection_queued_bytes: 2 << 20,
                all_queued_bytes: 8 << 20,
                fetch_max_bytes: 4096,
                write_stall_timeout: Duration::from_millis(500),
                fetch_session_slots: 0,
            }
        );
        for (flag, bad, allowed) in [
            ("--max-connections", "0", "1..=1000000"),
            ("--socket-listen-backlog-size", "70000", "1..=65535"),
            (
                "--queued-response-bytes-per-connection",
                "1000",
                "1048576..",
            ),
            ("--queued-response-bytes", "0", "1048576.."),
            ("--fetch-max-bytes", "100", "1024..=2147483647"),
            ("--write-stall-timeout-ms", "0", "100..=3600000"),
            ("--fetch-session-cache-slots", "100001", "0..=100000"),
        ] {
            let c = Config::parse_from(["sluice-broker", flag, bad]);
            let msg = c.validate().expect_err(flag).to_string();
            assert!(
                msg.contains(flag) && msg.contains(allowed),
                "{flag} {bad}: {msg}"
            );
        }
        // A connection's budget above everybody's budget is nonsense: said so, naming both.
        let c = Config::parse_from([
            "sluice-broker",
            "--queued-response-bytes-per-connection",
            "1073741824",
        ]);
        let msg = c.validate().expect_err("above the broker's").to_string();
        assert!(
            msg.contains("--queued-response-bytes-per-connection")
                && msg.contains("at most --queued-response-bytes"),
            "{msg}"
        );
    }
}
