//! The requests a client on a SASL listener may send before it has authenticated:
//! ApiVersions, SaslHandshake (v1; v0 is advertised but answered UNSUPPORTED_VERSION) and
//! SaslAuthenticate (v0–v2). Anything else closes the connection, as Kafka does. The exchange itself is [`crate::security::sasl`]'s; the
//! credentials come from the bootstrap users file, then the metadata quorum.
//!
//! A failed exchange is answered SASL_AUTHENTICATION_FAILED (or UNSUPPORTED_SASL_MECHANISM
//! for a mechanism this listener does not offer) and then the connection is closed; the
//! message the client gets never says whether the user exists.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::codes::UNSUPPORTED_VERSION;
use super::{api_versions, Caller, Reply};
use crate::cluster::state::ClusterState;
use crate::context::BrokerContext;
use crate::error::BrokerError;
use crate::protocol::codec::{self, api_name, respond};
use crate::protocol::versions;
use crate::security::sasl::{Credentials, SaslSession, Step};
use crate::security::scram::ScramCredential;
use crate::security::users::BootstrapUsers;
use crate::security::{Mechanism, Principal};

/// Kafka's ILLEGAL_SASL_STATE.
pub const ILLEGAL_SASL_STATE: i16 = 34;
/// Kafka's UNSUPPORTED_SASL_MECHANISM.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's SASL_AUTHENTICATION_FAILED.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What one request of an unauthenticated connection led to.
#[derive(Debug)]
pub enum SaslReply {
    /// Answered; the client is not authenticated yet.
    Continue(Reply),
    /// The client is `principal` from now on; send `reply`.
    Authenticated { reply: Bytes, principal: Principal },
    /// Send `reply` (if any), then close the connection; `reason` is for the broker's log.
    Failed {
        reply: Option<Bytes>,
        reason: String,
    },
}

/// A user's credentials: the bootstrap users file first, then the quorum.
pub struct Lookup {
    pub users: Option<Arc<BootstrapUsers>>,
    pub state: Arc<ClusterState>,
}

impl Credentials for Lookup {
    fn scram(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        if let Some(c) = self.users.as_ref().and_then(|u| u.scram(user, mechanism)) {
            return Some(c);
        }
        self.state.scram.get(user)?.get(&mechanism).cloned()
    }
}

/// Handles one request frame of a connection that has not authenticated yet.
pub async fn handle(
    ctx: &Arc<BrokerContext>,
    session: &mut SaslSession,
    caller: &Caller,
    frame: Bytes,
) -> Result<SaslReply, BrokerError> {
    let peer = caller.peer;
    let raw = codec::peek_header(peer, &frame)?;
    let key = ApiKey::try_from(raw.api_key).map_err(|()| BrokerError::UnknownApiKey {
        peer,
        api_key: raw.api_key,
        api_version: raw.api_version,
    })?;
    ctx.metrics.request(key);
    let mut body = frame;
    let unsupported = || BrokerError::UnsupportedVersion {
        peer,
        api: api_name(raw.api_key),
        api_key: raw.api_key,
        api_version: raw.api_version,
    };
    match key {
        ApiKey::ApiVersions => {
            api_versions::reply(peer, raw, &mut body).map(|b| SaslReply::Continue(Reply::now(b)))
        }
        ApiKey::SaslHandshake => {
            if !versions::is_served(key, raw.api_version) {
                return Err(unsupported());
            }
            codec::decode_header(peer, key, raw, &mut body)?;
            let req: SaslHandshakeRequest = codec::decode_body(peer, raw, &mut body)?;
            let offered: Vec<StrBytes> = session
                .enabled()
                .into_iter()
                .map(StrBytes::from_static_str)
                .collect();
            if raw.api_version == 0 {
                // v0 is advertised only for clients that need it in the range and then send
                // v1 (see protocol/versions.rs); after a real v0 handshake the client would
                // send unframed SASL tokens, which this broker does not read.
                ctx.metrics.error_code("SaslHandshake", UNSUPPORTED_VERSION);
                let resp = SaslHandshakeResponse::default()
                    .with_error_code(UNSUPPORTED_VERSION)
                    .with_mechanisms(offered);
                return Ok(SaslReply::Failed {
                    reply: Some(respond(raw, &resp)?),
                    reason: "SaslHandshake v0 (SASL tokens without Kafka framing) is not served; \
                             clients that ask ApiVersions first use v1"
                        .to_string(),
                });
            }
            let asked = req.mechanism.as_str().to_string();
            match session.handshake(&asked) {
                Some(_) => {
                    let resp = SaslHandshakeResponse::default().with_mechanisms(offered);
                    Ok(SaslReply::Continue(Reply::now(respond(raw, &resp)?)))
                }
                None => {
                    let code = if session.awaits_handshake() {
                        UNSUPPORTED_SASL_MECHANISM
                    } else {
                        ILLEGAL_SASL_STATE
                    };
                    ctx.metrics.error_code("SaslHandshake", code);
                    let resp = SaslHandshakeResponse::default()
                        .with_error_code(code)
                        .with_mechanisms(offered);
                    Ok(SaslReply::Failed {
                        reply: Some(respond(raw, &resp)?),
                        reason: format!(
                            "mechanism {asked:?} is not offered here (offered: {})",
                            session.enabled().join(", ")
                        ),
                    })
                }
            }
        }
        ApiKey::SaslAuthenticate => {
            if !versions::is_served(key, raw.api_version) {
                return Err(unsupported());
            }
            codec::decode_header(peer, key, raw, &mut body)?;
            let req: SaslAuthenticateRequest = codec::decode_body(peer, raw, &mut body)?;
            let lookup = Lookup {
                users: ctx.security.users.clone(),
                state: ctx.cluster.state(),
            };
            let secret = ctx.security.sasl_secret.clone();
            // PLAIN derives a key from the password (PBKDF2): CPU work off the async workers.
            let mut owned = std::mem::replace(session, SaslSession::new(Vec::new()));
            let (owned, step) = match tokio::task::spawn_blocking(move || {
                let step = owned.authenticate(&req.auth_bytes, &lookup, &secret);
                (owned, step)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            *session = owned;
            match step {
                Step::Continue(bytes) => {
                    let resp = SaslAuthenticateResponse::default().with_auth_bytes(bytes.into());
                    Ok(SaslReply::Continue(Reply::now(respond(raw, &resp)?)))
                }
                Step::Done { principal, reply } => {
                    let resp = SaslAuthenticateResponse::default().with_auth_bytes(reply.into());
                    Ok(SaslReply::Authenticated {
                        reply: respond(raw, &resp)?,
                        principal,
                    })
                }
                Step::Failed(failure) => {
                    ctx.metrics
                        .error_code("SaslAuthenticate", SASL_AUTHENTICATION_FAILED);
                    let resp = SaslAuthenticateResponse::default()
                        .with_error_code(SASL_AUTHENTICATION_FAILED)
                        .with_error_message(Some(StrBytes::from_string(failure.client_message())));
                    Ok(SaslReply::Failed {
                        reply: Some(respond(raw, &resp)?),
                        reason: failure.to_string(),
                    })
                }
            }
        }
        _ => Err(BrokerError::Unauthenticated {
            peer,
            api: api_name(raw.api_key),
        }),
    }
}
