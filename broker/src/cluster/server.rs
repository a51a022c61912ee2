//! The RPC server on the cluster listener (`--cluster-listen`): one task per connection, one
//! request frame answered at a time, each request dispatched to Raft, to the leader-side
//! handlers of `lifecycle.rs` / `forward.rs`, or to the broker's
//! [`PartitionService`](super::PartitionService).
//!
//! Under mutual TLS a connection is served only once its handshake finished (within
//! [`HANDSHAKE_TIMEOUT`]) with a certificate the CA signed whose subject is a broker's
//! ([`super::Transport::admits`]): this port changes the cluster's metadata, ACLs and
//! credentials included, so an application's client certificate from the same CA is refused.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::network::{self, ProbeReply, Refusal, Request, Response, UNDECODABLE};
use super::Member;
use crate::security::{x509, ClientAuth};

/// A connecting broker must finish its TLS handshake within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Member {
    /// Answers one request (a new RPC gets its arm here and its variants in `network.rs`).
    pub(super) async fn dispatch(&self, req: Request) -> Response {
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
                features: super::state::FEATURES
                    .iter()
                    .map(|f| f.to_string())
                    .collect(),
            }),
            Request::Join(rec) => Response::Join(self.join(rec).await),
            Request::JoinEmpty(rec) => Response::Join(self.join_empty(rec).await),
            Request::Forward(cmd) => Response::Forward(self.accept_forward(cmd).await),
            Request::AdoptGroup { group, offsets } => {
                Response::AdoptGroup(match self.partitions.get() {
                    Some(svc) => svc.adopt_group(group, offsets).await,
                    None => Err("this broker is still starting".into()),
                })
            }
            Request::WriteTxnMarker(m) => Response::WriteTxnMarker(match self.partitions.get() {
                Some(svc) => svc.write_txn_marker(m).await,
                None => Err("this broker is still starting".into()),
            }),
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
pub(super) async fn serve(member: Arc<Member>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = member.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let member = member.clone();
                tokio::spawn(async move {
                    let Some(tls) = member.transport.tls.clone() else {
                        return connection(member, stream, peer).await;
                    };
                    let accepted = async {
                        let config = tls.server_config(ClientAuth::Required)?;
                        let s = tokio_rustls::TlsAcceptor::from(config)
                            .accept(stream)
                            .await?;
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(s)
                    };
                    let s = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accepted).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::warn!(node_id = member.node_id, %peer, error = %e, "cluster connection: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(node_id = member.node_id, %peer, "cluster connection: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                            return;
                        }
                    };
                    let subject = s
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| x509::subject_dn(c));
                    if !member.transport.admits(subject.as_deref()) {
                        tracing::warn!(node_id = member.node_id, %peer, subject = ?subject,
                            "cluster connection refused: the certificate is not a broker's (neither this broker's subject nor a --super-users principal)");
                        return;
                    }
                    connection(member, s, peer).await
                });
            }
            Err(e) => {
                tracing::warn!(node_id = member.node_id, error = %e, "cluster listener accept");
                tokio::select! {
                    _ = member.cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    member: Arc<Member>,
    mut stream: S,
    peer: SocketAddr,
) {
    loop {
        let frame = tokio::select! {
            _ = member.cancel.cancelled() => return,
            f = network::read_frame(&mut stream) => f,
        };
        let body = match frame {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(node_id = member.node_id, %peer, error = %e, "cluster connection");
                return;
            }
        };
        let resp = match serde_json::from_slice::<Request>(&body) {
            Ok(req) => {
                tokio::select! {
                    _ = member.cancel.cancelled() => Response::Error("shutting down".to_string()),
                    r = member.dispatch(req) => r,
                }
            }
            Err(e) => Response::Error(format!("{UNDECODABLE}: {e}")),
        };
        if let Err(e) = network::write_frame(&mut stream, &resp).await {
            tracing::debug!(node_id = member.node_id, %peer, error = %e, "cluster connection");
            return;
        }
        if member.cancel.is_cancelled() {
            return;
        }
    }
}
