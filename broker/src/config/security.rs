//! The security settings: listeners and their protocols, TLS files, SASL mechanisms and
//! users, the authorizer. Flattened into [`Config`] (the flags and `SLUICE_*` variables are the
//! same as if declared there); the legacy single listener (`--listen`, `--advertise`) stays in
//! [`Config`] because it is not a security setting, but [`Config::listener_specs`] reads it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{check_host_port, invalid, Config};
use crate::error::BrokerError;
use crate::security::{ClientAuth, Mechanism, Principal, SecurityProtocol};

/// Which authorizer checks requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthorizerKind {
    /// Everything is allowed; the ACL APIs answer SECURITY_DISABLED.
    None,
    /// Kafka ACLs stored in the metadata quorum, checked on every request.
    Acl,
}

/// The quorum port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterSecurity {
    /// Plain TCP: only for networks no one else reaches.
    Plaintext,
    /// Mutual TLS: each broker presents its certificate and checks the peer's against the CA.
    Ssl,
}

/// The security flags (see the module documentation).
#[derive(Debug, Clone, Args)]
pub struct SecurityConfig {
    /// Kafka listeners, comma-separated NAME://host:port (port 0 picks a free port), e.g.
    /// CLIENT://0.0.0.0:9092,INTERNAL://0.0.0.0:9094. Each has a security protocol (see
    /// --listener-security-protocol-map). Replaces --listen, which is one listener named
    /// PLAINTEXT.
    #[arg(
        long,
        env = "SLUICE_LISTENERS",
        value_delimiter = ',',
        conflicts_with = "listen"
    )]
    pub listeners: Vec<String>,

    /// The address clients are given for each listener, comma-separated NAME://host:port.
    /// A listener not named here advertises its bound address (the machine's hostname when
    /// bound to 0.0.0.0). Metadata answers each client with the brokers' addresses of the
    /// listener it connected to. Replaces --advertise.
    #[arg(
        long,
        env = "SLUICE_ADVERTISED_LISTENERS",
        value_delimiter = ',',
        conflicts_with = "advertise"
    )]
    pub advertised_listeners: Vec<String>,

    /// Each listener's security protocol, comma-separated NAME:PROTOCOL with PROTOCOL one of
    /// PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL. A listener named like a protocol has that
    /// protocol unless listed here.
    #[arg(
        long,
        env = "SLUICE_LISTENER_SECURITY_PROTOCOL_MAP",
        value_delimiter = ','
    )]
    pub listener_security_protocol_map: Vec<String>,

    /// The listener other brokers connect to (replication, forwarded admin requests).
    /// Default: the first listener. Its protocol must be PLAINTEXT or SSL (brokers
    /// authenticate to each other with their certificates, not with SASL).
    #[arg(long, env = "SLUICE_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,

    /// PEM certificate chain (this broker's certificate first) for SSL and SASL_SSL
    /// listeners, the quorum port under --cluster-security-protocol ssl, and this broker's own
    /// connections to other brokers. Re-read when it changes (see --ssl-reload-interval-ms).
    #[arg(long, env = "SLUICE_SSL_CERTIFICATE_FILE")]
    pub ssl_certificate_file: Option<PathBuf>,

    /// PEM private key of --ssl-certificate-file (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SLUICE_SSL_KEY_FILE")]
    pub ssl_key_file: Option<PathBuf>,

    /// PEM CA certificates that sign clients' certificates (for --ssl-client-auth) and other
    /// brokers' certificates (needed for an SSL inter-broker listener and the SSL quorum port).
    #[arg(long, env = "SLUICE_SSL_CA_FILE")]
    pub ssl_ca_file: Option<PathBuf>,

    /// Client certificates on SSL and SASL_SSL listeners: none, requested or required (mutual
    /// TLS). A client certificate's subject (e.g. User:CN=app,O=Example) is the principal
    /// ACLs name, unless the client also authenticates with SASL.
    #[arg(long, env = "SLUICE_SSL_CLIENT_AUTH", value_enum, default_value_t = ClientAuth::None)]
    pub ssl_client_auth: ClientAuth,

    /// Per-listener overrides of --ssl-client-auth, comma-separated NAME:MODE, e.g.
    /// INTERNAL:required.
    #[arg(long, env = "SLUICE_LISTENER_SSL_CLIENT_AUTH", value_delimiter = ',')]
    pub listener_ssl_client_auth: Vec<String>,

    /// How often (ms) the certificate, key, CA and --sasl-users-file are checked for changes;
    /// changed files are used for new connections without a restart. Range 100..=3600000.
    #[arg(long, env = "SLUICE_SSL_RELOAD_INTERVAL_MS", default_value_t = 10_000)]
    pub ssl_reload_interval_ms: i64,

    /// The quorum port's (--cluster-listen) protocol: plaintext, or ssl (mutual TLS with
    /// --ssl-certificate-file, --ssl-key-file and --ssl-ca-file; every broker of the cluster
    /// must use the same setting).
    #[arg(
        long,
        env = "SLUICE_CLUSTER_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true,
        default_value_t = ClusterSecurity::Plaintext
    )]
    pub cluster_security_protocol: ClusterSecurity,

    /// A new connection must finish its TLS handshake and SASL authentication within this
    /// many milliseconds, or it is closed. Range 100..=300000.
    #[arg(
        long,
        env = "SLUICE_AUTHENTICATION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub authentication_timeout_ms: i64,

    /// SASL mechanisms offered on SASL listeners, comma-separated: SCRAM-SHA-256,
    /// SCRAM-SHA-512, PLAIN. PLAIN is offered only on SASL_SSL listeners (it sends the
    /// password itself).
    #[arg(
        long,
        env = "SLUICE_SASL_ENABLED_MECHANISMS",
        value_delimiter = ',',
        default_value = "SCRAM-SHA-256,SCRAM-SHA-512"
    )]
    pub sasl_enabled_mechanisms: Vec<String>,

    /// Users that exist before any is created through the Kafka API: a file with one
    /// name:password per line (# comments), e.g. the first administrator, written by the
    /// operator from a Secret. Re-read when it changes. Its users win over users of the same
    /// name created with AlterUserScramCredentials.
    #[arg(long, env = "SLUICE_SASL_USERS_FILE")]
    pub sasl_users_file: Option<PathBuf>,

    /// `none` (every request allowed; the ACL APIs answer SECURITY_DISABLED) or `acl` (Kafka
    /// ACLs stored in the metadata quorum, checked on every request; what no ACL allows is
    /// denied).
    #[arg(long, env = "SLUICE_AUTHORIZER", value_enum, default_value_t = AuthorizerKind::None)]
    pub authorizer: AuthorizerKind,

    /// Principals allowed everything, semicolon-separated, e.g. User:admin;User:CN=broker.
    /// The subject of this broker's own certificate is one as well (brokers connect to each
    /// other with it).
    #[arg(long, env = "SLUICE_SUPER_USERS", value_delimiter = ';')]
    pub super_users: Vec<String>,
}

/// One Kafka listener, resolved from the listener flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Upper case, as Kafka compares listener names.
    pub name: String,
    /// The address to bind, host:port.
    pub bind: String,
    pub protocol: SecurityProtocol,
    /// Client certificates (TLS listeners only).
    pub client_auth: ClientAuth,
    /// host and port given to clients; `None`: the bound address.
    pub advertised: Option<(String, i32)>,
}

/// The legacy single listener's name (`--listen`).
pub const DEFAULT_LISTENER: &str = "PLAINTEXT";

/// Splits `NAME://host:port`; the name upper-cased.
fn split_listener<'a>(setting: &str, s: &'a str) -> Result<(String, &'a str), BrokerError> {
    let allowed = "NAME://host:port, NAME of letters, digits and _";
    let (name, addr) = s
        .split_once("://")
        .ok_or_else(|| invalid(setting, s, allowed))?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid(setting, s, allowed));
    }
    Ok((name.to_ascii_uppercase(), addr))
}

/// Splits `host:port` into a host (brackets of an IPv6 address removed) and a port.
fn host_and_port(s: &str) -> Option<(String, i32)> {
    let (h, p) = s.rsplit_once(':')?;
    let host = h.trim_start_matches('[').trim_end_matches(']').to_string();
    Some((host, p.parse::<u16>().ok()?.into()))
}

/// Parses `NAME:VALUE` pairs of a map setting, names upper-cased.
fn name_map(setting: &str, items: &[String]) -> Result<Vec<(String, String)>, BrokerError> {
    items
        .iter()
        .map(|item| {
            let (k, v) = item
                .split_once(':')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| invalid(setting, item, "NAME:VALUE"))?;
            Ok((k.to_ascii_uppercase(), v.to_string()))
        })
        .collect()
}

impl Config {
    /// The Kafka listeners: `--listeners` with their protocols, client-auth modes and
    /// advertised addresses, or the one PLAINTEXT listener of `--listen` / `--advertise`.
    pub fn listener_specs(&self) -> Result<Vec<Listener>, BrokerError> {
        if self.security.listeners.is_empty() {
            for setting in ["--advertised-listeners", "--listener-security-protocol-map"] {
                let given = match setting {
                    "--advertised-listeners" => &self.security.advertised_listeners,
                    _ => &self.security.listener_security_protocol_map,
                };
                if !given.is_empty() {
                    return Err(invalid(
                        setting,
                        given.join(","),
                        "only together with --listeners",
                    ));
                }
            }
            return Ok(vec![Listener {
                name: DEFAULT_LISTENER.to_string(),
                bind: self.listen.clone(),
                protocol: SecurityProtocol::Plaintext,
                client_auth: ClientAuth::None,
                advertised: self.advertise.as_deref().and_then(host_and_port),
            }]);
        }
        let protocols = name_map(
            "--listener-security-protocol-map",
            &self.security.listener_security_protocol_map,
        )?;
        let client_auth = name_map(
            "--listener-ssl-client-auth",
            &self.security.listener_ssl_client_auth,
        )?;
        let mut out: Vec<Listener> = Vec::new();
        for item in &self.security.listeners {
            let (name, addr) = split_listener("--listeners", item)?;
            // Kafka's `PLAINTEXT://:9092`: every interface.
            let bind = if addr.starts_with(':') {
                format!("0.0.0.0{addr}")
            } else {
                addr.to_string()
            };
            check_host_port("--listeners", &bind)?;
            if out.iter().any(|l| l.name == name) {
                return Err(invalid("--listeners", item, "each listener name once"));
            }
            let protocol = match protocols.iter().find(|(n, _)| *n == name) {
                Some((_, p)) => SecurityProtocol::parse(p).ok_or_else(|| {
                    invalid(
                        "--listener-security-protocol-map",
                        format!("{name}:{p}"),
                        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                    )
                })?,
                None => SecurityProtocol::parse(&name).ok_or_else(|| {
                    invalid(
                        "--listener-security-protocol-map",
                        self.security.listener_security_protocol_map.join(","),
                        &format!("an entry {name}:PROTOCOL for listener {name}"),
                    )
                })?,
            };
            let auth = match client_auth.iter().find(|(n, _)| *n == name) {
                Some((_, m)) => ClientAuth::parse(m).ok_or_else(|| {
                    invalid(
                        "--listener-ssl-client-auth",
                        format!("{name}:{m}"),
                        "NAME:none, NAME:requested or NAME:required",
                    )
                })?,
                None => self.security.ssl_client_auth,
            };
            out.push(Listener {
                name,
                bind,
                protocol,
                client_auth: if protocol.tls() {
                    auth
                } else {
                    ClientAuth::None
                },
                advertised: None,
            });
        }
        for (name, _) in protocols.iter().chain(client_auth.iter()) {
            if !out.iter().any(|l| l.name == *name) {
                return Err(invalid(
                    "--listener-security-protocol-map / --listener-ssl-client-auth",
                    name,
                    "names of listeners in --listeners",
                ));
            }
        }
        for (name, _) in &client_auth {
            if out.iter().any(|l| l.name == *name && !l.protocol.tls()) {
                return Err(invalid(
                    "--listener-ssl-client-auth",
                    name,
                    "SSL or SASL_SSL listeners",
                ));
            }
        }
        for item in &self.security.advertised_listeners {
            let (name, addr) = split_listener("--advertised-listeners", item)?;
            let allowed = "NAME://host:port of a listener in --listeners, port 1..=65535";
            let (host, port) = host_and_port(addr)
                .filter(|(h, p)| !h.is_empty() && *p > 0)
                .ok_or_else(|| invalid("--advertised-listeners", item, allowed))?;
            let l = out
                .iter_mut()
                .find(|l| l.name == name)
                .ok_or_else(|| invalid("--advertised-listeners", item, allowed))?;
            l.advertised = Some((host, port));
        }
        Ok(out)
    }

    /// The listener other brokers connect to.
    pub fn inter_broker_listener(&self) -> Result<Listener, BrokerError> {
        let listeners = self.listener_specs()?;
        let found = match &self.security.inter_broker_listener_name {
            None => listeners.into_iter().next(),
            Some(name) => {
                let name = name.to_ascii_uppercase();
                listeners.into_iter().find(|l| l.name == name)
            }
        };
        found.ok_or_else(|| {
            invalid(
                "--inter-broker-listener-name",
                self.security
                    .inter_broker_listener_name
                    .clone()
                    .unwrap_or_default(),
                "the name of a listener in --listeners",
            )
        })
    }

    /// The SASL mechanisms of `--sasl-enabled-mechanisms`.
    pub fn sasl_mechanisms(&self) -> Result<Vec<Mechanism>, BrokerError> {
        let mut out = Vec::new();
        for m in &self.security.sasl_enabled_mechanisms {
            let m = Mechanism::parse(m.trim()).ok_or_else(|| {
                invalid(
                    "--sasl-enabled-mechanisms",
                    m,
                    "SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN",
                )
            })?;
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            return Err(invalid(
                "--sasl-enabled-mechanisms",
                "",
                "at least one mechanism",
            ));
        }
        Ok(out)
    }

    /// The principals of `--super-users`.
    pub fn super_user_principals(&self) -> Result<Vec<Principal>, BrokerError> {
        self.security
            .super_users
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                Principal::parse(s.trim())
                    .ok_or_else(|| invalid("--super-users", s, "Type:name, e.g. User:admin"))
            })
            .collect()
    }

    /// The security settings taken together: what needs certificates, what the authorizer
    /// needs from the inter-broker listener.
    pub(super) fn validate_security(&self) -> Result<(), BrokerError> {
        let listeners = self.listener_specs()?;
        let inter = self.inter_broker_listener()?;
        if inter.protocol.sasl() {
            return Err(invalid(
                "--inter-broker-listener-name",
                &inter.name,
                "a PLAINTEXT or SSL listener (brokers authenticate to each other with their \
                 certificates, not with SASL)",
            ));
        }
        self.sasl_mechanisms()?;
        let supers = self.super_user_principals()?;
        let needs_tls = listeners.iter().any(|l| l.protocol.tls())
            || self.security.cluster_security_protocol == ClusterSecurity::Ssl;
        if needs_tls
            && (self.security.ssl_certificate_file.is_none()
                || self.security.ssl_key_file.is_none())
        {
            return Err(invalid(
                "--ssl-certificate-file / --ssl-key-file",
                "",
                "both set: an SSL or SASL_SSL listener or --cluster-security-protocol ssl needs a \
                 certificate and its key",
            ));
        }
        let needs_ca = listeners.iter().any(|l| l.client_auth != ClientAuth::None)
            || inter.protocol.tls()
            || self.security.cluster_security_protocol == ClusterSecurity::Ssl;
        if needs_ca && self.security.ssl_ca_file.is_none() {
            return Err(invalid(
                "--ssl-ca-file",
                "",
                "a CA file: client certificates, an SSL inter-broker listener and the SSL quorum \
                 port are verified against it",
            ));
        }
        if self.security.authorizer == AuthorizerKind::Acl {
            let anonymous_brokers = !inter.protocol.tls() || inter.client_auth == ClientAuth::None;
            if anonymous_brokers && !supers.contains(&Principal::anonymous()) {
                return Err(invalid(
                    "--authorizer",
                    "acl",
                    &format!(
                        "acl with an inter-broker listener ({}) where brokers are known by their \
                         certificates: make it SSL with client certificates required \
                         (--listener-ssl-client-auth {}:required), or add User:ANONYMOUS to \
                         --super-users if no one else can reach it",
                        inter.name, inter.name
                    ),
                ));
            }
        }
        let ranges: [(&str, i64, i64, i64); 2] = [
            (
                "--ssl-reload-interval-ms",
                self.security.ssl_reload_interval_ms,
                100,
                3_600_000,
            ),
            (
                "--authentication-timeout-ms",
                self.security.authentication_timeout_ms,
                100,
                300_000,
            ),
        ];
        for (setting, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(invalid(setting, value, &format!("{min}..={max}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::parse_from(std::iter::once("sluice-broker").chain(args.iter().copied()))
    }

    #[test]
    fn named_listeners_get_their_protocols_client_auth_and_advertised_addresses() {
        let c = parse(&[
            "--listeners",
            "client://0.0.0.0:9092,INTERNAL://:9094",
            "--listener-security-protocol-map",
            "CLIENT:SASL_SSL,internal:SSL",
            "--listener-ssl-client-auth",
            "INTERNAL:required",
            "--advertised-listeners",
            "CLIENT://q-0.example:9092",
        ]);
        let l = c.listener_specs().expect("valid listeners");
        assert_eq!(
            l.iter()
                .map(|l| (l.name.as_str(), l.bind.as_str(), l.protocol, l.client_auth))
                .collect::<Vec<_>>(),
            vec![
                (
                    "CLIENT",
                    "0.0.0.0:9092",
                    SecurityProtocol::SaslSsl,
                    ClientAuth::None
                ),
                (
                    "INTERNAL",
                    "0.0.0.0:9094",
                    SecurityProtocol::Ssl,
                    ClientAuth::Required
                ),
            ]
        );
        assert_eq!(l[0].advertised, Some(("q-0.example".to_string(), 9092)));
        assert_eq!(c.inter_broker_listener().expect("first").name, "CLIENT");
    }

    #[test]
    fn without_listeners_the_legacy_flags_make_one_plaintext_listener() {
        let c = parse(&["--listen", "127.0.0.1:9092", "--advertise", "broker:19092"]);
        let l = c.listener_specs().expect("valid");
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].name.as_str(), l[0].protocol),
            (DEFAULT_LISTENER, SecurityProtocol::Plaintext)
        );
        assert_eq!(l[0].advertised, Some(("broker".to_string(), 19092)));
        let c = parse(&["--listener-security-protocol-map", "A:SSL"]);
        let msg = c.validate().expect_err("map without listeners").to_string();
        assert!(msg.contains("--listener-security-protocol-map"), "{msg}");
    }

    #[test]
    fn security_settings_that_cannot_work_are_refused_naming_the_flag() {
        let tls = parse(&["--listeners", "SSL://127.0.0.1:0"]);
        let msg = tls.validate().expect_err("no certificate").to_string();
        assert!(msg.contains("--ssl-certificate-file"), "{msg}");
        let sasl_inter = parse(&["--listeners", "SASL_PLAINTEXT://127.0.0.1:0"]);
        let msg = sasl_inter
            .validate()
            .expect_err("SASL between brokers")
            .to_string();
        assert!(msg.contains("--inter-broker-listener-name"), "{msg}");
        let acl = parse(&[
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
            "--inter-broker-listener-name",
            "PLAINTEXT",
            "--authorizer",
            "acl",
        ]);
        let msg = acl.validate().expect_err("anonymous brokers").to_string();
        assert!(msg.contains("--authorizer"), "{msg}");
        let mech = parse(&["--sasl-enabled-mechanisms", "GSSAPI"]);
        let msg = mech.validate().expect_err("unknown mechanism").to_string();
        assert!(msg.contains("--sasl-enabled-mechanisms"), "{msg}");
        let supers = parse(&["--super-users", "User:admin;User:CN=broker-0,O=Example"]);
        assert_eq!(supers.super_user_principals().expect("valid").len(), 2);
    }
}
