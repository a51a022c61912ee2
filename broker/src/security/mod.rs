//! Who may connect and what they may do: listeners' security protocols, TLS material, SASL
//! authentication and Kafka ACLs. Everything here is pure or reads only the files it is told
//! to (certificates, the bootstrap users file); the sockets are `server`'s, the Kafka messages
//! `handlers`'.
//!
//! Files: [`scram`] (SCRAM-SHA-256/512: credentials and both sides of the exchange),
//! [`sasl`] (one connection's SASL state: handshake, mechanism, PLAIN, the authenticated
//! principal), [`acl`] (ACL bindings, filters and the authorizer's decision), [`x509`] (a
//! client certificate's subject as a principal), [`tls`] (rustls configurations from PEM
//! files, reloaded when the files change), [`users`] (the bootstrap users file).
//!
//! May import nothing of the broker: `cluster` stores its credential and ACL types, and
//! `server`, `handlers` and `replica` use it.

pub mod acl;
pub mod sasl;
pub mod scram;
pub mod tls;
pub mod users;
pub mod x509;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

/// A listener's security protocol (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Connections are TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Clients authenticate with SASL before any other request.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a TLS listener asks clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; a client without one connects anonymously (with SASL, as
    /// its SASL user).
    Requested,
    /// A client without a certificate signed by the CA cannot connect (mutual TLS).
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

/// A SASL mechanism this broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "PLAIN")]
    Plain,
}

impl Mechanism {
    pub const SCRAM: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    pub fn parse(s: &str) -> Option<Mechanism> {
        match s {
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
            "PLAIN" => Some(Mechanism::Plain),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism's number in DescribeUserScramCredentials / AlterUserScramCredentials.
    pub fn scram_type(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
            Mechanism::Plain => 0,
        }
    }

    pub fn from_scram_type(t: i8) -> Option<Mechanism> {
        match t {
            1 => Some(Mechanism::ScramSha256),
            2 => Some(Mechanism::ScramSha512),
            _ => None,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who a connection is, as ACLs name it: `User:alice` (SASL), `User:CN=app,O=Example` (a
/// client certificate's subject), `User:ANONYMOUS` (nothing authenticated).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }

    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }

    /// Parses `Type:name` (the name may contain `:`).
    pub fn parse(s: &str) -> Option<Principal> {
        let (kind, name) = s.split_once(':')?;
        (!kind.is_empty() && !name.is_empty()).then(|| Principal {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// One broker's security settings and the state behind them, shared by its connections and
/// request handlers.
#[derive(Debug)]
pub struct Security {
    /// The certificate, key and CA (`None`: no TLS anywhere).
    pub tls: Option<Arc<tls::TlsContext>>,
    /// `--sasl-users-file`.
    pub users: Option<Arc<users::BootstrapUsers>>,
    /// `None`: `--authorizer none`, every request allowed.
    pub authorizer: Option<acl::Authorizer>,
    /// TLS handshake plus SASL exchange must finish within this (`--authentication-timeout-ms`).
    pub authentication_timeout: Duration,
    /// Seeds the salts answered to unknown SCRAM users, so they look like known ones.
    pub sasl_secret: Vec<u8>,
}

impl Default for Security {
    /// No TLS, no users, no authorizer: everything allowed, as a broker without security
    /// settings.
    fn default() -> Security {
        Security {
            tls: None,
            users: None,
            authorizer: None,
            authentication_timeout: Duration::from_secs(10),
            sasl_secret: random_bytes(32),
        }
    }
}

impl Security {
    /// Whether `principal` may do everything: a `--super-users` principal, or this broker's
    /// own certificate subject (other brokers connect with the same certificate, or one whose
    /// subject is listed in `--super-users`).
    pub fn is_super_user(&self, principal: &Principal) -> bool {
        if self
            .authorizer
            .as_ref()
            .is_some_and(|a| a.is_super_user(principal))
        {
            return true;
        }
        principal.kind == "User"
            && self
                .tls
                .as_ref()
                .and_then(|t| t.own_subject())
                .is_some_and(|s| s == principal.name)
    }

    /// The authorizer's decision for `principal` from `host` doing `op` on a resource, given
    /// the cluster's ACL bindings; always `true` without an authorizer.
    pub fn allows<'a>(
        &self,
        bindings: impl IntoIterator<Item = &'a acl::AclBinding>,
        principal: &Principal,
        host: IpAddr,
        op: acl::Operation,
        resource_type: acl::ResourceType,
        name: &str,
    ) -> bool {
        match &self.authorizer {
            None => true,
            Some(_) if self.is_super_user(principal) => true,
            Some(a) => a.authorize(bindings, principal, host, op, resource_type, name),
        }
    }
}

/// Equality of two secrets' digests in time independent of where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `n` bytes from the operating system's random source.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    // The system source fails only when the kernel has none (no getrandom, no /dev/urandom):
    // nothing secure can be done then, and a broker that goes on with predictable nonces
    // would be worse than one that stops.
    #[allow(clippy::expect_used)]
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random number source failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_and_print_as_kafka_writes_them() {
        let p = Principal::parse("User:CN=a,O=b:c").expect("principal");
        assert_eq!(p.kind, "User");
        assert_eq!(p.name, "CN=a,O=b:c");
        assert_eq!(p.to_string(), "User:CN=a,O=b:c");
        assert_eq!(Principal::parse("alice"), None);
        assert_eq!(Principal::parse("User:"), None);
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
    }

    #[test]
    fn protocols_and_mechanisms_have_kafkas_names() {
        for p in ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] {
            assert_eq!(SecurityProtocol::parse(p).map(|p| p.name()), Some(p));
        }
        assert_eq!(SecurityProtocol::parse("TLS"), None);
        for m in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
            assert_eq!(Mechanism::parse(m).map(|m| m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_scram_type(2), Some(Mechanism::ScramSha512));
        assert_eq!(Mechanism::from_scram_type(0), None);
    }

    #[test]
    fn ct_eq_compares_whole_slices() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
