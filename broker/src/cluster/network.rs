//! Inter-broker RPCs over TCP (`--cluster-listen`).
//!
//! Framing: `len u32 (big-endian) | JSON body`, at most [`MAX_FRAME`] bytes per frame, one
//! request then one response on a connection, repeated. JSON because `serde_json` is already a
//! dependency, openraft's messages and the metadata types derive serde without extra attributes
//! and with integer map keys that JSON handles, and the frames are readable in a packet
//! capture; metadata traffic is small (heartbeats and a few commands), so bytes don't matter.
//!
//! [`Request`] / [`Response`] are `pub` so more RPCs (e.g. a partition-log fetch for partition
//! moves) can be added as variants and served by [`super::Cluster`]'s dispatcher; [`call`]
//! is the client for one request.
//!
//! Under `--cluster-security-protocol ssl` every connection is mutual TLS ([`Transport`]):
//! the connecting broker presents its certificate and checks the listener's against the CA
//! and the address's host name; the listener accepts only brokers (see `server.rs`).

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::state::{BrokerRecord, Command, Outcome};
use super::{NodeId, TypeConfig};
use crate::security::tls::{Stream, TlsContext};

/// Largest frame either side accepts (snapshots travel in chunks far below this).
pub const MAX_FRAME: usize = 64 << 20;
/// Connecting to a peer (DNS resolution included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How an RPC server answers a frame it cannot decode (also: a request variant newer than it):
/// `Response::Error` starting with this, which the sender of a newer request recognises.
pub const UNDECODABLE: &str = "undecodable request";

/// How this broker's quorum connections are secured: plain TCP, or mutual TLS.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// `Some`: every connection, in and out, is TLS with client certificates.
    pub tls: Option<Arc<TlsContext>>,
    /// Certificate subjects (RFC 2253) accepted from connecting brokers besides this broker's
    /// own (`--super-users`' `User:` principals).
    pub peers: BTreeSet<String>,
}

impl Transport {
    /// Whether a connecting peer whose certificate has `subject` is a broker of this cluster.
    pub fn admits(&self, subject: Option<&str>) -> bool {
        let Some(tls) = &self.tls else {
            return true;
        };
        match subject {
            None => false,
            Some(s) => tls.own_subject().as_deref() == Some(s) || self.peers.contains(s),
        }
    }
}

/// A leader as other brokers see it: node id and cluster address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub id: i32,
    pub addr: String,
}

/// Answer to [`Request::Probe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReply {
    pub node_id: i32,
    /// Whether this broker is a member (voter or learner) of an initialized cluster.
    pub member: bool,
    pub leader: Option<LeaderInfo>,
    /// The metadata features this broker's version has (`state::FEATURES`); empty from
    /// versions before features were named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// A forwarded proposal that was committed and applied on the leader at `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    pub index: u64,
    pub outcome: Outcome,
}

/// Why a leader-only request was not done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<LeaderInfo> },
    #[error("{0}")]
    Failed(String),
}

/// Every inter-broker request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Do you belong to a cluster, and who leads it?
    Probe,
    /// (leader) Add this broker as a learner, wait until it caught up, promote it to voter
    /// while there are fewer than 5 voters.
    Join(BrokerRecord),
    /// (leader) Join from a broker whose volume holds no cluster state. When the membership
    /// already has its id, the volume it had was lost: the old member is removed first, then
    /// it joins as Join does. Answered with [`Response::Join`].
    JoinEmpty(BrokerRecord),
    /// (leader) Commit this command and answer its outcome.
    Forward(Command),
    /// (leader) Remove this node from the membership.
    RemoveNode(i32),
    /// (a group's coordinator) Take over these committed offsets of `group` from the sender's
    /// pre-replication offsets file (the upgrade import): written to `__consumer_offsets` where
    /// no newer commit exists, answered once replicated.
    AdoptGroup {
        group: String,
        offsets: Vec<(String, i32, crate::group::offsets::StoredOffset)>,
    },
    /// (a partition's leader) Append this transaction marker and answer once it is
    /// replicated (a transaction coordinator ending a transaction, `crate::txn`).
    WriteTxnMarker(crate::txn::MarkerWrite),
}

/// Every inter-broker response (variant matches the request).
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Probe(ProbeReply),
    Join(Result<(), Refusal>),
    Forward(Result<Forwarded, Refusal>),
    RemoveNode(Result<(), Refusal>),
    AdoptGroup(Result<(), String>),
    WriteTxnMarker(Result<(), String>),
    /// The request could not be served at all (shutting down, undecodable request).
    Error(String),
}

/// A failed [`call`]; every variant names the peer address.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent: resolution or connection failed (safe to retry elsewhere).
    #[error("cluster peer {addr}: cannot connect: {reason}")]
    Connect { addr: String, reason: String },
    /// The request may or may not have been received.
    #[error("cluster peer {addr}: {reason}")]
    Io { addr: String, reason: String },
    #[error("cluster peer {addr}: no answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("cluster peer {addr}: frame of {len} bytes exceeds the {MAX_FRAME}-byte limit")]
    FrameTooLarge { addr: String, len: usize },
    #[error("cluster peer {addr}: undecodable frame: {reason}")]
    Decode { addr: String, reason: String },
}

impl CallError {
    pub fn addr(&self) -> &str {
        match self {
            CallError::Connect { addr, .. }
            | CallError::Io { addr, .. }
            | CallError::Timeout { addr, .. }
            | CallError::FrameTooLarge { addr, .. }
            | CallError::Decode { addr, .. } => addr,
        }
    }
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {} bytes exceeds {MAX_FRAME}", body.len()),
        ));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await?;
    w.flush().await
}

/// Reads one frame's body; `Ok(None)` on a clean end of stream before a frame.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Resolves `addr` (DNS, every time) and connects to the first address that answers, with
/// TLS when `transport` says so (the handshake within the same timeout).
pub async fn connect(transport: &Transport, addr: &str) -> Result<Stream, CallError> {
    let fail = |reason: String| CallError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let attempt = async {
        let addrs: Vec<_> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| fail(format!("resolve: {e}")))?
            .collect();
        let mut last = fail("resolved to no address".to_string());
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Stream::over(s, addr, transport.tls.as_deref())
                        .await
                        .map_err(|e| fail(format!("{a}: TLS: {e}")));
                }
                Err(e) => last = fail(format!("{a}: {e}")),
            }
        }
        Err(last)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(fail(format!("timed out after {CONNECT_TIMEOUT:?}"))))
}

/// Sends `req` on `stream` and reads the response, within `timeout`.
async fn exchange(
    stream: &mut Stream,
    addr: &str,
    req: &Request,
    timeout: Duration,
) -> Result<Response, CallError> {
    let io = |e: std::io::Error| CallError::Io {
        addr: addr.to_string(),
        reason: e.to_string(),
    };
    let work = async {
        write_frame(stream, req).await.map_err(io)?;
        let body = read_frame(stream).await.map_err(io)?.ok_or(CallError::Io {
            addr: addr.to_string(),
            reason: "connection closed before the response".to_string(),
        })?;
        serde_json::from_slice::<Response>(&body).map_err(|e| CallError::Decode {
            addr: addr.to_string(),
            reason: e.to_string(),
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(CallError::Timeout {
                addr: addr.to_string(),
                timeout,
            })
        })
}

/// One request to the broker whose cluster listener is `addr` (host:port, resolved now), on
/// a fresh connection; `timeout` bounds the exchange after connecting.
pub async fn call(
    transport: &Transport,
    addr: &str,
    req: &Request,
    timeout: Duration,
) -> Result<Response, CallError> {
    let mut s = connect(transport, addr).await?;
    exchange(&mut s, addr, req, timeout).await
}

// ----------------------------------------------------------------------------------------
// openraft's network: one client per target, one kept-alive connection, reconnect on error.

/// Creates [`PeerClient`]s for openraft.
#[derive(Debug, Clone, Default)]
pub struct Network {
    pub transport: Transport,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
            conn: None,
        }
    }
}

/// Connection to one peer, reopened after any error.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
    addr: String,
    transport: Transport,
    conn: Option<Stream>,
}

type RpcErr<E> = RPCError<NodeId, BasicNode, E>;

impl PeerClient {
    async fn rpc(&mut self, req: &Request, timeout: Duration) -> Result<Response, CallError> {
        let mut stream = match self.conn.take() {
            Some(s) => s,
            None => connect(&self.transport, &self.addr).await?,
        };
        let resp = exchange(&mut stream, &self.addr, req, timeout).await?;
        self.conn = Some(stream);
        Ok(resp)
    }

    fn map_err<E: std::error::Error>(&self, e: CallError) -> RpcErr<E> {
        match e {
            CallError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn unexpected<E: std::error::Error>(&self, got: &Response) -> RpcErr<E> {
        let e = CallError::Decode {
            addr: self.addr.clone(),
            reason: format!("unexpected response {}", variant_name(got)),
        };
        RPCError::Network(NetworkError::new(&e))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RpcErr<E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            BasicNode {
                addr: self.addr.clone(),
            },
            e,
        ))
    }
}

fn variant_name(r: &Response) -> &'static str {
    match r {
        Response::AppendEntries(_) => "AppendEntries",
        Response::Vote(_) => "Vote",
        Response::InstallSnapshot(_) => "InstallSnapshot",
        Response::Probe(_) => "Probe",
        Response::Join(_) => "Join",
        Response::Forward(_) => "Forward",
        Response::RemoveNode(_) => "RemoveNode",
        Response::AdoptGroup(_) => "AdoptGroup",
        Response::WriteTxnMarker(_) => "WriteTxnMarker",
        Response::Error(_) => "Error",
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        match self
            .rpc(&Request::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(Response::AppendEntries(Ok(r))) => Ok(r),
            Ok(Response::AppendEntries(Err(e))) => Err(self.remote(e)),
            Ok(other) => Err(self.unexpected(&other)),
            Err(e) => Err(self.map_err(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        match self
            .rpc(&Request::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(Response::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(Response::InstallSnapshot(Err(e))) => Err(self.remote(e)),
            Ok(other) => Err(self.unexpected(&other)),
            Err(e) => Err(self.map_err(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        match self.rpc(&Request::Vote(rpc), option.hard_ttl()).await {
            Ok(Response::Vote(Ok(r))) => Ok(r),
            Ok(Response::Vote(Err(e))) => Err(self.remote(e)),
            Ok(other) => Err(self.unexpected(&other)),
            Err(e) => Err(self.map_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answers_are_read_across_versions() {
        // Versions before metadata features answered without the field: read as none.
        let old = r#"{"node_id":2,"member":true,"leader":{"id":0,"addr":"b0:9093"}}"#;
        let p: ProbeReply = serde_json::from_str(old).expect("an older broker's answer");
        assert!(p.features.is_empty());
        assert_eq!(p.leader.map(|l| l.id), Some(0));
        // And this version's answer is read by such a broker, which knows no such field.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Older {
            node_id: i32,
            member: bool,
            leader: Option<LeaderInfo>,
        }
        let new = ProbeReply {
            node_id: 1,
            member: true,
            leader: None,
            features: vec!["client_quotas".into()],
        };
        let json = serde_json::to_string(&new).expect("encode");
        assert!(json.contains("client_quotas"), "{json}");
        let back: Older = serde_json::from_str(&json).expect("read by an older broker");
        assert_eq!(back.node_id, 1);
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversized_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &Request::Probe).await.expect("write");
        let body = read_frame(&mut b).await.expect("read").expect("frame");
        let back: Request = serde_json::from_slice(&body).expect("decode");
        assert!(matches!(back, Request::Probe));
        a.write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
            .await
            .expect("write");
        let err = read_frame(&mut b).await.expect_err("too large");
        assert!(err.to_string().contains("exceeds"), "{err}");
        drop(a);
        assert!(read_frame(&mut b).await.expect("eof").is_none());
    }

    #[tokio::test]
    async fn connect_error_names_the_peer() {
        // Port 9 on loopback: nothing listens there in the test environment.
        let plain = Transport::default();
        let err = call(
            &plain,
            "127.0.0.1:9",
            &Request::Probe,
            Duration::from_secs(1),
        )
        .await
        .expect_err("nothing listens");
        assert_eq!(err.addr(), "127.0.0.1:9");
        assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
        let err = call(
            &plain,
            "no-such-host.invalid:9093",
            &Request::Probe,
            Duration::from_secs(1),
        )
        .await
        .expect_err("unresolvable");
        assert!(
            err.to_string().contains("no-such-host.invalid:9093"),
            "{err}"
        );
    }
}
