//! One connection's SASL authentication, as Kafka runs it: SaslHandshake names a mechanism,
//! then SaslAuthenticate requests carry the mechanism's tokens until the client is
//! authenticated (or has failed, which closes the connection).
//!
//! [`SaslSession`] is the state; the credentials come from a [`Credentials`] lookup (the
//! bootstrap users file, then the metadata quorum). PLAIN checks the password against the
//! user's stored SCRAM credential (the broker keeps no other form of it), so every user has
//! the same password for every mechanism.

use std::fmt;

use super::scram::{self, ScramCredential, ScramError, ServerExchange};
use super::{Mechanism, Principal};

/// Where a user's credentials come from.
pub trait Credentials {
    fn scram(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential>;
}

/// What the next SaslAuthenticate token means.
#[derive(Debug)]
enum State {
    /// No mechanism chosen yet.
    Handshake,
    /// The mechanism's first token is next.
    First(Mechanism),
    /// SCRAM: the client's final message is next.
    ScramFinal(Box<ServerExchange>),
    Authenticated(Principal),
    Failed,
}

/// A failed authentication: what the client is told and what is logged. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub mechanism: Option<Mechanism>,
    /// The user name the client gave, when it got that far.
    pub user: Option<String>,
    /// Why, for the broker's log.
    pub reason: String,
}

impl Failure {
    /// The message the client gets (Kafka's wording; the reason stays in the broker's log).
    pub fn client_message(&self) -> String {
        match self.mechanism {
            Some(m) => format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {m}"
            ),
            None => "Authentication failed: no SASL mechanism was chosen".to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SASL {} authentication of user {:?} failed: {}",
            self.mechanism.map_or("(none)", Mechanism::name),
            self.user.as_deref().unwrap_or("?"),
            self.reason
        )
    }
}

/// The outcome of one SaslAuthenticate token.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes back; the exchange goes on.
    Continue(Vec<u8>),
    /// Authenticated as `principal`; send `reply` back.
    Done {
        principal: Principal,
        reply: Vec<u8>,
    },
    Failed(Failure),
}

/// One connection's SASL state.
#[derive(Debug)]
pub struct SaslSession {
    enabled: Vec<Mechanism>,
    state: State,
}

impl SaslSession {
    /// `enabled`: the mechanisms this listener offers (PLAIN only on TLS listeners).
    pub fn new(enabled: Vec<Mechanism>) -> SaslSession {
        SaslSession {
            enabled,
            state: State::Handshake,
        }
    }

    /// The mechanisms offered, by name (SaslHandshake's answer lists them).
    pub fn enabled(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|m| m.name()).collect()
    }

    pub fn principal(&self) -> Option<&Principal> {
        match &self.state {
            State::Authenticated(p) => Some(p),
            _ => None,
        }
    }

    /// Whether a handshake may come now (before one was done).
    pub fn awaits_handshake(&self) -> bool {
        matches!(self.state, State::Handshake)
    }

    /// SaslHandshake: the mechanism when this listener offers it and no handshake came yet.
    pub fn handshake(&mut self, name: &str) -> Option<Mechanism> {
        match Mechanism::parse(name).filter(|m| self.enabled.contains(m)) {
            Some(m) if self.awaits_handshake() => {
                self.state = State::First(m);
                Some(m)
            }
            _ => None,
        }
    }

    /// One SaslAuthenticate token. `secret` makes the answer to an unknown SCRAM user look
    /// like a known one's (see [`ServerExchange::start`]).
    pub fn authenticate(&mut self, token: &[u8], creds: &dyn Credentials, secret: &[u8]) -> Step {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let fail = |mechanism, user: Option<&str>, reason: String| {
            Step::Failed(Failure {
                mechanism: Some(mechanism),
                user: user.map(str::to_string),
                reason,
            })
        };
        match state {
            State::First(Mechanism::Plain) => match parse_plain(token) {
                Err(reason) => fail(Mechanism::Plain, None, reason),
                Ok((user, password)) => {
                    let known = Mechanism::SCRAM
                        .iter()
                        .rev()
                        .find_map(|m| creds.scram(&user, *m).map(|c| (*m, c)));
                    match known {
                        Some((m, c)) if c.matches_password(m, password.as_bytes()) => {
                            let principal = Principal::user(user);
                            self.state = State::Authenticated(principal.clone());
                            Step::Done {
                                principal,
                                reply: Vec::new(),
                            }
                        }
                        Some(_) => fail(Mechanism::Plain, Some(&user), "wrong password".into()),
                        None => fail(Mechanism::Plain, Some(&user), "unknown user".into()),
                    }
                }
            },
            State::First(m) => match scram::parse_client_first(token) {
                Err(e) => fail(m, None, e.to_string()),
                Ok(first) => {
                    let cred = creds.scram(&first.user, m);
                    let exchange = ServerExchange::start(m, first, cred, secret);
                    let reply = exchange.server_first().to_vec();
                    self.state = State::ScramFinal(Box::new(exchange));
                    Step::Continue(reply)
                }
            },
            State::ScramFinal(exchange) => match exchange.finish(token) {
                Ok(reply) => {
                    let principal = Principal::user(exchange.user());
                    self.state = State::Authenticated(principal.clone());
                    Step::Done { principal, reply }
                }
                Err(e) => {
                    let reason = match e {
                        // The same for an unknown user, see ServerExchange::start.
                        ScramError::InvalidProof => "unknown user or wrong password".to_string(),
                        e => e.to_string(),
                    };
                    fail(exchange.mechanism(), Some(exchange.user()), reason)
                }
            },
            State::Handshake => Step::Failed(Failure {
                mechanism: None,
                user: None,
                reason: "SaslAuthenticate before SaslHandshake".into(),
            }),
            State::Authenticated(p) => {
                self.state = State::Authenticated(p);
                Step::Failed(Failure {
                    mechanism: None,
                    user: None,
                    reason: "already authenticated (re-authentication is not supported)".into(),
                })
            }
            State::Failed => Step::Failed(Failure {
                mechanism: None,
                user: None,
                reason: "the exchange already failed".into(),
            }),
        }
    }

    /// The mechanism of the exchange in progress or just chosen (metrics label).
    pub fn current_mechanism(&self) -> Option<Mechanism> {
        match &self.state {
            State::First(m) => Some(*m),
            State::ScramFinal(e) => Some(e.mechanism()),
            _ => None,
        }
    }
}

/// PLAIN's one message (RFC 4616): `authzid NUL authcid NUL passwd`; the authorization id, if
/// any, must be the user itself (as Kafka).
fn parse_plain(token: &[u8]) -> Result<(String, String), String> {
    let text = std::str::from_utf8(token).map_err(|_| "the PLAIN message is not UTF-8")?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the PLAIN message is not authzid NUL user NUL password".into());
    };
    if user.is_empty() || password.is_empty() {
        return Err("empty user name or password".into());
    }
    if !authzid.is_empty() && authzid != user {
        return Err("the authorization id differs from the user name".into());
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::ClientExchange;
    use std::collections::BTreeMap;

    struct Users(BTreeMap<(String, Mechanism), ScramCredential>);

    impl Credentials for Users {
        fn scram(&self, user: &str, m: Mechanism) -> Option<ScramCredential> {
            self.0.get(&(user.to_string(), m)).cloned()
        }
    }

    fn users() -> Users {
        let mut m = BTreeMap::new();
        for mech in Mechanism::SCRAM {
            m.insert(
                ("alice".to_string(), mech),
                ScramCredential::derive(mech, b"alice-secret", 4096),
            );
        }
        Users(m)
    }

    fn scram(session: &mut SaslSession, m: Mechanism, user: &str, pw: &str) -> Step {
        let creds = users();
        session.handshake(m.name()).expect("offered");
        let mut client = ClientExchange::new(m, user, pw);
        let Step::Continue(server_first) =
            session.authenticate(&client.client_first(), &creds, b"k")
        else {
            panic!("expected the server's first message");
        };
        let client_final = client.client_final(&server_first).expect("client final");
        let step = session.authenticate(&client_final, &creds, b"k");
        if let Step::Done { reply, .. } = &step {
            client.verify_server_final(reply).expect("server signature");
        }
        step
    }

    #[test]
    fn scram_authenticates_the_user_with_the_right_password() {
        for m in Mechanism::SCRAM {
            let mut s = SaslSession::new(vec![m]);
            match scram(&mut s, m, "alice", "alice-secret") {
                Step::Done { principal, .. } => assert_eq!(principal, Principal::user("alice")),
                other => panic!("{other:?}"),
            }
            assert_eq!(s.principal(), Some(&Principal::user("alice")));
            let mut s = SaslSession::new(vec![m]);
            match scram(&mut s, m, "alice", "nope") {
                Step::Failed(f) => {
                    assert_eq!(f.mechanism, Some(m));
                    assert_eq!(f.user.as_deref(), Some("alice"));
                    assert!(!f.to_string().contains("nope"), "{f}");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(s.principal(), None);
            let mut s = SaslSession::new(vec![m]);
            assert!(matches!(scram(&mut s, m, "mallory", "x"), Step::Failed(_)));
        }
    }

    #[test]
    fn handshake_offers_only_the_enabled_mechanisms_once() {
        let mut s = SaslSession::new(vec![Mechanism::ScramSha512]);
        assert_eq!(s.enabled(), vec!["SCRAM-SHA-512"]);
        assert_eq!(s.handshake("PLAIN"), None);
        assert_eq!(s.handshake("GSSAPI"), None);
        assert_eq!(s.handshake("SCRAM-SHA-512"), Some(Mechanism::ScramSha512));
        assert_eq!(s.handshake("SCRAM-SHA-512"), None);
        let mut s = SaslSession::new(vec![Mechanism::ScramSha512]);
        assert!(matches!(
            s.authenticate(b"n,,n=a,r=b", &users(), b"k"),
            Step::Failed(_)
        ));
    }

    #[test]
    fn plain_checks_the_password_against_the_scram_credential() {
        let creds = users();
        let mut s = SaslSession::new(vec![Mechanism::Plain]);
        s.handshake("PLAIN").expect("offered");
        assert!(matches!(
            s.authenticate(b"\0alice\0alice-secret", &creds, b"k"),
            Step::Done { .. }
        ));
        for bad in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0alice-secret",
            b"other\0alice\0alice-secret",
            b"alice\0alice-secret",
            b"\0alice\0",
            b"\xff\0a\0b",
        ] {
            let mut s = SaslSession::new(vec![Mechanism::Plain]);
            s.handshake("PLAIN").expect("offered");
            assert!(
                matches!(s.authenticate(bad, &creds, b"k"), Step::Failed(_)),
                "{bad:?}"
            );
        }
    }
}
