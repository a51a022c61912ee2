//! The server side of a TLS listener: the handshake of one accepted connection, bounded by
//! the connection's authentication deadline, and what a failed one costs: that connection
//! only, a log line and `sluice_tls_handshake_failures_total{reason}`.
//!
//! Reasons: `timeout` (no finished handshake by the deadline: a stalled client), `not_tls`
//! (bytes that are not a TLS record, e.g. a Kafka request on a TLS port), `no_certificate`
//! (client certificates required, none sent), `bad_certificate` (not signed by the CA,
//! expired, ...), `alert` (the client refused ours), `incompatible` (no common version or
//! cipher), `closed` (the peer went away mid-handshake: a TCP health check, logged at DEBUG
//! only), `other`.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::metrics::Metrics;
use crate::security::tls::TlsContext;
use crate::security::{x509, ClientAuth};

/// A finished handshake: the stream and the subject of the client's certificate, if it sent
/// one (verified against the CA).
pub struct Accepted {
    pub stream: TlsStream<TcpStream>,
    pub subject: Option<String>,
}

/// The metrics label of a failed handshake.
fn reason(e: &std::io::Error) -> &'static str {
    if let Some(r) = e.get_ref().and_then(|r| r.downcast_ref::<rustls::Error>()) {
        return match r {
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. } => "not_tls",
            rustls::Error::NoCertificatesPresented => "no_certificate",
            rustls::Error::InvalidCertificate(_) => "bad_certificate",
            rustls::Error::AlertReceived(_) => "alert",
            rustls::Error::PeerIncompatible(_) => "incompatible",
            _ => "other",
        };
    }
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => "closed",
        _ => "other",
    }
}

/// Runs the handshake of `tcp` until `deadline`; `None` when it failed (logged, counted).
pub async fn accept(
    tls: &TlsContext,
    auth: ClientAuth,
    tcp: TcpStream,
    peer: SocketAddr,
    listener: &str,
    deadline: Instant,
    metrics: &Metrics,
) -> Option<Accepted> {
    let config = match tls.server_config(auth) {
        Ok(c) => c,
        Err(e) => {
            // Validated at start; only a CA file that disappeared could do this.
            tracing::error!(%peer, listener, error = %e, "no TLS configuration for the listener");
            metrics.tls_handshake_failure("other");
            return None;
        }
    };
    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
    let failed = |why: &'static str, detail: &dyn std::fmt::Display| {
        metrics.tls_handshake_failure(why);
        if why == "closed" {
            tracing::debug!(%peer, listener, reason = why, "TLS handshake: {detail}");
        } else {
            tracing::warn!(%peer, listener, reason = why, "TLS handshake failed: {detail}");
        }
    };
    match tokio::time::timeout_at(deadline.into(), handshake).await {
        Err(_) => {
            failed(
                "timeout",
                &"not finished within --authentication-timeout-ms",
            );
            None
        }
        Ok(Err(e)) => {
            failed(reason(&e), &e);
            None
        }
        Ok(Ok(stream)) => {
            let subject = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| x509::subject_dn(c));
            Some(Accepted { stream, subject })
        }
    }
}
