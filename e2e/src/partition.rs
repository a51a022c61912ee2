//! A TCP relay that can cut the network between a client and a server the way a partition
//! does: no reset, no close, nothing arrives. The operator_faults scenario puts it between the
//! operator and the API server.
//!
//! While cut, every byte is dropped and connections opened meanwhile are accepted (the kernel
//! completes the handshake anyway) and never relayed. A connection open during a cut stays dead
//! after it heals, as a flow does whose state a partition outlasted (a NAT or load-balancer
//! entry gone, a peer that gave up): only connections opened after the heal are relayed. So the
//! client learns of the partition only through its own deadlines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
struct State {
    /// Incremented by every cut: a connection opened in an earlier epoch is dead.
    epoch: AtomicU64,
    cut: AtomicBool,
    relayed: AtomicU64,
    frozen: AtomicU64,
}

impl State {
    fn alive(&self, epoch: u64) -> bool {
        !self.cut.load(Ordering::SeqCst) && self.epoch.load(Ordering::SeqCst) == epoch
    }
}

/// A relay from a local port to `upstream` that can be cut and healed.
#[derive(Debug)]
pub struct PartitionProxy {
    /// Where clients connect instead of the upstream.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl PartitionProxy {
    /// Listens on `listen` (port 0 for any) and relays each connection to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let task = tokio::spawn(accept_loop(listener, upstream, state.clone()));
        Ok(PartitionProxy { addr, state, task })
    }

    /// From now on nothing passes, on any connection, until [`heal`](Self::heal); the
    /// connections open now never carry a byte again.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Connections opened from now on are relayed again.
    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Connections relayed so far, and connections frozen by a cut (for the test's report).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.state.relayed.load(Ordering::SeqCst),
            self.state.frozen.load(Ordering::SeqCst),
        )
    }
}

impl Drop for PartitionProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<State>) {
    loop {
        let Ok((down, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let epoch = state.epoch.load(Ordering::SeqCst);
            if !state.alive(epoch) {
                freeze(&state, (down,)).await;
                return;
            }
            // An upstream that refuses closes the client's connection, as a refused connect
            // would.
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            state.relayed.fetch_add(1, Ordering::SeqCst);
            let (down_r, down_w) = down.into_split();
            let (up_r, up_w) = up.into_split();
            tokio::join!(
                pump(down_r, up_w, epoch, state.clone()),
                pump(up_r, down_w, epoch, state.clone()),
            );
        });
    }
}

/// Copies one direction while the connection's epoch is alive; once it is not, holds both
/// halves open forever and passes nothing (not even the end of the stream).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, epoch: u64, state: Arc<State>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // an error ends the stream like an end of file does
        let n: usize = from.read(&mut buf).await.unwrap_or_default();
        if !state.alive(epoch) {
            freeze(&state, (from, to)).await;
            return;
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Keeps `held` (sockets) open and silent for as long as the relay runs.
async fn freeze<T>(state: &State, held: T) {
    state.frozen.fetch_add(1, Ordering::SeqCst);
    let _held = held;
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An echo server; returns its address.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Option<Vec<u8>> {
        s.write_all(msg).await.ok()?;
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut got))
            .await
            .ok()?
            .ok()?;
        Some(got)
    }

    #[tokio::test]
    async fn a_cut_silences_open_and_new_connections_and_a_heal_serves_only_new_ones() {
        let proxy = PartitionProxy::start("127.0.0.1:0".parse().expect("addr"), echo().await)
            .await
            .expect("proxy");
        let mut before = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(
            round_trip(&mut before, b"one").await.as_deref(),
            Some(&b"one"[..])
        );

        proxy.cut();
        // The 300 ms read deadline is the test's own: the partition answers nothing at all.
        assert_eq!(
            round_trip(&mut before, b"two").await,
            None,
            "open connection"
        );
        let mut during = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(
            round_trip(&mut during, b"three").await,
            None,
            "new connection"
        );

        proxy.heal();
        assert_eq!(
            round_trip(&mut before, b"four").await,
            None,
            "a cut connection stays dead"
        );
        assert_eq!(
            round_trip(&mut during, b"five").await,
            None,
            "so does one opened while cut"
        );
        let mut after = TcpStream::connect(proxy.addr).await.expect("connect");
        assert_eq!(
            round_trip(&mut after, b"six").await.as_deref(),
            Some(&b"six"[..])
        );
        assert_eq!(proxy.counts(), (2, 2));
    }
}
