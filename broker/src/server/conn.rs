//! One client connection: a reader that frames and dispatches requests in order, and a writer
//! that sends the responses in the same order.
//!
//! Before the first request: on an SSL or SASL_SSL listener the TLS handshake (`tls.rs`); on
//! a SASL listener only ApiVersions, SaslHandshake and SaslAuthenticate are served until the
//! client has authenticated (`handlers::sasl`), frames are capped at [`MAX_SASL_FRAME`], and
//! handshake plus SASL exchange must finish within `--authentication-timeout-ms` of the accept.
//! A client that misses any of that loses its connection, is logged and counted; no other
//! connection notices.
//!
//! Kafka clients pipeline requests on one connection. The reader runs each request's ordered
//! part (decoding, appends, metadata changes) to completion before reading the next; parts that
//! only wait (fsync for acks=all, fetch long poll, rebalances) are queued to the writer as
//! futures and awaited there in request order. So a pipelined burst of produce requests is
//! appended back to back and shares one fsync, while responses still come out in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

use super::frame_pool::FRAMES;
use super::{tls, KafkaListener};
use crate::config::Limits;
use crate::context::BrokerContext;
use crate::error::BrokerError;
use crate::handlers::sasl::SaslReply;
use crate::handlers::{self, Caller, Reply};
use crate::log::FileRegion;
use crate::metrics::Metrics;
use crate::protocol::codec;
use crate::protocol::frame::{self, Frame, PieceRef};
use crate::security::sasl::SaslSession;
use crate::security::Principal;

/// A connection with no request for this long is closed (Kafka's `connections.max.idle.ms`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Once a frame's length has arrived, its body must arrive within this time.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest frame a client may send before it authenticated (Kafka's
/// `sasl.server.max.receive.size`): SASL tokens are small, and a huge one must not make the
/// broker buffer it.
pub const MAX_SASL_FRAME: usize = 512 * 1024;
/// Requests read but not yet answered, per connection (back-pressure on pipelining clients).
const MAX_IN_FLIGHT: usize = 64;
/// Socket buffers per connection: small, so thousands of idle clients cost little; large
/// frames bypass them (read straight into the frame buffer, written straight to the socket).
/// 4 KiB holds dozens of small pipelined requests (fetches, heartbeats, commits), and a
/// request larger than that costs the same two reads as with 16 KiB (the buffer's fill, then
/// the rest of the body straight into the frame); 16 KiB cost 12 MiB more at 1,000
/// connections (docs/benchmarks.md, 2026-12-06).
const READ_BUFFER: usize = 4 * 1024;
/// Responses are small (a produce answer is tens of bytes, 4 KiB holds a pipelined burst of
/// them) or large (a fetch, written past the buffer): 4 KiB rather than 16 saves 12 MiB at
/// 1,000 connections (docs/benchmarks.md).
const WRITE_BUFFER: usize = 4 * 1024;

/// Response bytes of one connection built and not yet written, and a wake-up for its reader.
#[derive(Default)]
struct Queued {
    bytes: AtomicUsize,
    drained: Notify,
}

/// A reply on its way to the writer. The response bytes it holds count against the
/// connection's and the broker's budgets until it is dropped (written, or its connection gone).
struct Pending {
    reply: Option<Reply>,
    held: usize,
    queued: Arc<Queued>,
    metrics: Arc<Metrics>,
}

impl Pending {
    fn new(reply: Reply, queued: &Arc<Queued>, metrics: &Arc<Metrics>) -> Self {
        let held = match &reply {
            Reply::Now(Some(frame)) => frame.len(),
            _ => 0,
        };
        if held > 0 {
            queued.bytes.fetch_add(held, Ordering::AcqRel);
            metrics.response_queued(held);
        }
        Pending {
            reply: Some(reply),
            held,
            queued: Arc::clone(queued),
            metrics: Arc::clone(metrics),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.held > 0 {
            self.queued.bytes.fetch_sub(self.held, Ordering::AcqRel);
            self.metrics.response_unqueued(self.held);
            self.queued.drained.notify_one();
        }
    }
}

/// Whether the reader may take the next request: its own waiting responses and everybody's
/// are under their budgets (`--queued-response-bytes-per-connection` and
/// `--queued-response-bytes`), or it has none waiting at all. So a client that pipelines large
/// fetches and reads slowly (or never) holds at most its budget plus one response of broker
/// memory, instead of `MAX_IN_FLIGHT` full fetch responses; and a connection with nothing
/// waiting always reads its next request, so every client keeps progressing.
fn may_read(limits: &Limits, mine: usize, everybody: usize) -> bool {
    mine == 0 || (mine < limits.connection_queued_bytes && everybody < limits.all_queued_bytes)
}

/// The TCP socket under a connection's writer, where file regions can go out with
/// `sendfile`. `None` for TLS (the bytes must pass through the cipher in user space) and for
/// test pipes: regions are read and written like any bytes there.
pub(crate) trait RawSocket {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl RawSocket for tokio::net::tcp::OwnedWriteHalf {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl<T> RawSocket for tokio::io::WriteHalf<T> {}

impl RawSocket for tokio::io::DuplexStream {}

impl<W: RawSocket + AsyncWrite> RawSocket for BufWriter<W> {
    fn tcp(&self) -> Option<&TcpStream> {
        self.get_ref().tcp()
    }
}

/// Region bytes read per write where `sendfile` cannot be used.
const REGION_CHUNK: usize = 256 * 1024;

fn stalled(stall: Duration) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the client took no response bytes for {} ms",
            stall.as_millis()
        ),
    )
}

/// Writes `frame`, its parts in memory together (one vectored write where the socket takes
/// them all) and its file regions with `sendfile`. Every write must move some bytes within
/// `stall` (`--write-stall-timeout-ms`): a client that takes nothing for that long is gone
/// or hostile; a slow client that keeps reading is never cut off.
async fn write_frame<W: AsyncWrite + Unpin + RawSocket>(
    wr: &mut W,
    frame: &Frame,
    stall: Duration,
) -> std::io::Result<()> {
    for piece in frame.pieces() {
        match piece {
            PieceRef::Mem(parts) => write_parts(wr, &mut frame::reader(parts), stall).await?,
            PieceRef::File(region) => {
                // What is buffered goes first.
                match tokio::time::timeout(stall, wr.flush()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(stalled(stall)),
                }
                match wr.tcp() {
                    Some(tcp) => send_region(tcp, region, stall).await?,
                    None => {
                        let mut at = 0;
                        while at < region.len {
                            let n = REGION_CHUNK.min(region.len - at);
                            let part = FileRegion {
                                pos: region.pos + at as u64,
                                len: n,
                                ..region.clone()
                            };
                            let bytes = part.read_all()?;
                            write_parts(wr, &mut frame::reader(&[bytes]), stall).await?;
                            at += n;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

async fn write_parts<W: AsyncWrite + Unpin>(
    wr: &mut W,
    rest: &mut frame::PartsReader<'_>,
    stall: Duration,
) -> std::io::Result<()> {
    while rest.has_remaining() {
        match tokio::time::timeout(stall, wr.write_buf(rest)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(r) => {
                r?;
            }
            Err(_) => return Err(stalled(stall)),
        }
    }
    Ok(())
}

/// Sends a file region to the socket with `sendfile`: the kernel moves the bytes from the
/// page cache, they are never copied into the broker. A file that ends before the region (a
/// follower's truncation since the read) is an error: the frame's length is already on the
/// wire, so the connection must close rather than send fewer bytes.
async fn send_region(tcp: &TcpStream, region: &FileRegion, stall: Duration) -> std::io::Result<()> {
    let mut pos = region.pos;
    let end = region.pos + region.len as u64;
    while pos < end {
        let step = async {
            loop {
                tcp.writable().await?;
                let want = usize::try_from(end - pos).unwrap_or(usize::MAX);
                match tcp.try_io(Interest::WRITABLE, || {
                    rustix::fs::sendfile(tcp, &*region.file, Some(&mut pos), want)
                        .map_err(std::io::Error::from)
                }) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => return r,
                }
            }
        };
        match tokio::time::timeout(stall, step).await {
            Ok(Ok(0)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} ends at {pos}, before the {} bytes being sent from {}",
                        region.path.display(),
                        region.len,
                        region.pos
                    ),
                ))
            }
            Ok(r) => {
                r?;
            }
            Err(_) => return Err(stalled(stall)),
        }
    }
    Ok(())
}

/// Why the reader stopped (for logs and metrics).
enum Stop {
    /// Clean close by the client, idle timeout or broker shutdown.
    Quiet(&'static str),
    Protocol(BrokerError),
    /// The SASL exchange failed or did not finish: counted under the mechanism.
    Authentication {
        mechanism: &'static str,
        reason: String,
    },
}

fn reason_label(e: &BrokerError) -> &'static str {
    match e {
        BrokerError::NegativeFrameLength { .. } => "negative_length",
        BrokerError::FrameTooLarge { .. } => "frame_too_large",
        BrokerError::TruncatedHeader { .. } => "truncated_header",
        BrokerError::UnknownApiKey { .. } => "unknown_api_key",
        BrokerError::UnsupportedApi { .. } => "unsupported_api",
        BrokerError::UnsupportedVersion { .. } => "unsupported_version",
        BrokerError::Undecodable { .. } => "undecodable",
        BrokerError::Encode { .. } => "encode_failed",
        BrokerError::UnacknowledgedProduceFailed { .. } => "acks0_produce_failed",
        _ => "other",
    }
}

async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    peer: SocketAddr,
    max: usize,
) -> Result<Result<Bytes, Stop>, std::io::Error> {
    let mut prefix = [0u8; 4];
    match tokio::time::timeout(IDLE_TIMEOUT, rd.read_exact(&mut prefix)).await {
        Err(_) => return Ok(Err(Stop::Quiet("idle timeout"))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(Err(Stop::Quiet("closed by client")))
        }
        Ok(r) => r?,
    };
    let len = match codec::check_frame_len(peer, prefix, max) {
        Ok(len) => len,
        Err(e) => return Ok(Err(Stop::Protocol(e))),
    };
    // Allocated (or taken from the free buffers) only after the length passed the limit.
    let mut frame = FRAMES.take(len);
    let buf = frame.vec();
    let body = async {
        let mut limited = rd.take(len as u64);
        while buf.len() < len {
            if limited.read_buf(buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Err(_) => return Ok(Err(Stop::Quiet("request body timed out"))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Ok(Err(Stop::Quiet("closed by client mid-request")))
        }
        Ok(r) => r?,
    }
    Ok(Ok(frame.freeze()))
}

/// Reads request frames from `rd` exactly as [`serve`] does (the length checked before
/// anything is buffered, then the body) and hands each to `each`, until the input ends or a
/// frame is refused; returns the error that would close the connection. The fuzz targets'
/// way into the connection's framing.
pub(crate) async fn read_frames<R: tokio::io::AsyncRead + Unpin>(
    mut rd: R,
    peer: SocketAddr,
    max: usize,
    mut each: impl FnMut(Bytes) -> Result<(), BrokerError>,
) -> Option<BrokerError> {
    loop {
        match read_frame(&mut rd, peer, max).await {
            Ok(Ok(frame)) => {
                if let Err(e) = each(frame) {
                    return Some(e);
                }
            }
            Ok(Err(Stop::Protocol(e))) => return Some(e),
            // read_frame itself never ends in an authentication failure.
            Ok(Err(Stop::Quiet(_) | Stop::Authentication { .. })) | Err(_) => return None,
        }
    }
}

/// Serves one accepted connection of `listener`: the TLS handshake on a TLS listener, then
/// [`serve`].
pub(super) async fn accept(
    ctx: Arc<BrokerContext>,
    tcp: TcpStream,
    peer: SocketAddr,
    listener: &KafkaListener,
    max_request: usize,
) {
    let _ = tcp.set_nodelay(true);
    let deadline = Instant::now() + ctx.security.authentication_timeout;
    let spec = &listener.spec;
    let caller = Caller {
        peer,
        listener: spec.name.as_str().into(),
        principal: Principal::anonymous(),
        mute: Arc::default(),
    };
    let sasl = spec
        .protocol
        .sasl()
        .then(|| SaslSession::new(listener.mechanisms.clone()));
    if !spec.protocol.tls() {
        let (rd, wr) = tcp.into_split();
        return serve(ctx, rd, wr, caller, sasl, deadline, max_request).await;
    }
    // Boxed: the handshake and the TLS stream make this branch's future 2.6 times a plain
    // connection's, and inline it would size every connection's task, TLS or not.
    Box::pin(accept_tls(
        ctx,
        tcp,
        caller,
        sasl,
        listener,
        deadline,
        max_request,
    ))
    .await
}

/// [`accept`] on a TLS listener: the handshake, then [`serve`] over the TLS stream.
async fn accept_tls(
    ctx: Arc<BrokerContext>,
    tcp: TcpStream,
    mut caller: Caller,
    sasl: Option<SaslSession>,
    listener: &KafkaListener,
    deadline: Instant,
    max_request: usize,
) {
    let spec = &listener.spec;
    let peer = caller.peer;
    let Some(tls_ctx) = ctx.security.tls.clone() else {
        tracing::error!(%peer, listener = %spec.name, "TLS listener without TLS material");
        return;
    };
    let Some(accepted) = tls::accept(
        &tls_ctx,
        spec.client_auth,
        tcp,
        peer,
        &spec.name,
        deadline,
        &ctx.metrics,
    )
    .await
    else {
        return;
    };
    // A client certificate names the client; SASL, if the listener has it, names it again.
    if let Some(subject) = accepted.subject {
        caller.principal = Principal::user(subject);
    }
    let (rd, wr) = tokio::io::split(accepted.stream);
    serve(ctx, rd, wr, caller, sasl, deadline, max_request).await
}

/// Serves one connection until the client leaves, a protocol error, or shutdown. `sasl`:
/// the client must authenticate first, by `deadline`.
async fn serve<R, W>(
    ctx: Arc<BrokerContext>,
    rd: R,
    wr: W,
    mut caller: Caller,
    mut sasl: Option<SaslSession>,
    deadline: Instant,
    max_request: usize,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static + RawSocket,
{
    let peer = caller.peer;
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let (tx, mut rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let queued = Arc::new(Queued::default());

    let metrics = Arc::clone(&ctx.metrics);
    let stall = ctx.limits.write_stall_timeout;
    let writer = tokio::spawn(async move {
        let mut wr = BufWriter::with_capacity(WRITE_BUFFER, wr);
        while let Some(mut pending) = rx.recv().await {
            let frame = match pending.reply.take() {
                Some(Reply::Now(f)) => Ok(f),
                Some(Reply::Later(fut)) => fut.await,
                None => Ok(None),
            };
            match frame {
                Ok(Some(bytes)) => {
                    metrics.bytes_out(bytes.len());
                    if let Err(e) = write_frame(&mut wr, &bytes, stall).await {
                        tracing::debug!(%peer, error = %e, "write failed; closing the connection");
                        return;
                    }
                    if wr.tcp().is_some() {
                        metrics.sendfile_bytes(bytes.file_len());
                    }
                    // Written into the socket (or the small write buffer): no longer held.
                    drop(pending);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(%peer, error = %e, "cannot build a response; closing the connection");
                    return;
                }
            }
            // Flush once nothing else is ready, so a pipelined burst goes out in one write.
            if rx.is_empty() && !matches!(tokio::time::timeout(stall, wr.flush()).await, Ok(Ok(())))
            {
                tracing::debug!(%peer, "flush failed or stalled; closing the connection");
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });

    let stop = 'serve: loop {
        let mut waited = false;
        while !may_read(
            &ctx.limits,
            queued.bytes.load(Ordering::Acquire),
            ctx.metrics.queued_response_bytes(),
        ) {
            if !waited {
                ctx.metrics.response_backpressure();
                waited = true;
            }
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => break 'serve Stop::Quiet("broker shutting down"),
                _ = queued.drained.notified() => {}
            }
        }
        let pending = sasl.as_ref();
        let max = if pending.is_some() {
            max_request.min(MAX_SASL_FRAME)
        } else {
            max_request
        };
        let read = async {
            match pending {
                None => Some(read_frame(&mut rd, peer, max).await),
                Some(_) => tokio::time::timeout_at(deadline.into(), read_frame(&mut rd, peer, max))
                    .await
                    .ok(),
            }
        };
        let mechanism = sasl_label(sasl.as_ref());
        let frame = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Stop::Quiet("broker shutting down"),
            r = read => r,
        };
        let frame = match frame {
            None => {
                break Stop::Authentication {
                    mechanism,
                    reason: "SASL authentication not finished within --authentication-timeout-ms"
                        .into(),
                }
            }
            Some(Ok(Ok(f))) => f,
            Some(Ok(Err(Stop::Protocol(e)))) if sasl.is_some() => {
                break Stop::Authentication {
                    mechanism,
                    reason: e.to_string(),
                }
            }
            Some(Ok(Err(stop))) => break stop,
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "read failed");
                break Stop::Quiet("read error");
            }
        };
        ctx.metrics.bytes_in(frame.len() + 4);
        // A client over its quota was told to wait (`throttle_time_ms`): its next request
        // waits here too, so one that does not honour the field is held all the same.
        let held = caller.mute.remaining_ms(handlers::share::now_ms());
        if held > 0 {
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => break Stop::Quiet("broker shutting down"),
                _ = tokio::time::sleep(Duration::from_millis(held.unsigned_abs())) => {}
            }
        }
        // The handlers' futures are boxed, so only a request being handled holds one: inline,
        // the largest of them sized this loop's future for every connection, idle or not
        // (6.4 KiB of each connection's task; docs/benchmarks.md, 2026-12-06).
        let reply = match sasl.as_mut() {
            None => Box::pin(handlers::dispatch(&ctx, &caller, frame)).await,
            Some(session) => {
                match Box::pin(handlers::sasl::handle(&ctx, session, &caller, frame)).await {
                    Ok(SaslReply::Continue(reply)) => Ok(reply),
                    Ok(SaslReply::Authenticated { reply, principal }) => {
                        tracing::debug!(%peer, %principal, "authenticated");
                        ctx.metrics.sasl_authenticated(mechanism);
                        caller.principal = principal;
                        sasl = None;
                        Ok(Reply::Now(Some(reply.into())))
                    }
                    Ok(SaslReply::Failed { reply, reason }) => {
                        if let Some(r) = reply {
                            let _ = tx
                                .send(Pending::new(
                                    Reply::Now(Some(r.into())),
                                    &queued,
                                    &ctx.metrics,
                                ))
                                .await;
                        }
                        break Stop::Authentication { mechanism, reason };
                    }
                    // Anything else before authentication (another API, an undecodable SASL
                    // request) is a failed authentication too.
                    Err(e) => {
                        break Stop::Authentication {
                            mechanism,
                            reason: e.to_string(),
                        }
                    }
                }
            }
        };
        match reply {
            Ok(reply) => {
                let pending = Pending::new(reply, &queued, &ctx.metrics);
                if tx.send(pending).await.is_err() {
                    break Stop::Quiet("writer closed");
                }
            }
            Err(e) => break Stop::Protocol(e),
        }
    };
    match stop {
        Stop::Quiet(why) => tracing::debug!(%peer, reason = why, "connection closed"),
        Stop::Protocol(e) => {
            ctx.metrics.protocol_error(reason_label(&e));
            tracing::warn!(%peer, error = %e, "closing connection");
        }
        Stop::Authentication { mechanism, reason } => {
            ctx.metrics.sasl_authentication_failure(mechanism);
            tracing::warn!(%peer, listener = %caller.listener, mechanism, %reason, "SASL authentication failed; closing connection");
        }
    }
    // Let the writer answer everything already read (graceful shutdown drains here).
    drop(tx);
    let _ = writer.await;
}

/// The metrics label of a connection's SASL mechanism (`none` before a handshake).
fn sasl_label(s: Option<&SaslSession>) -> &'static str {
    s.and_then(SaslSession::current_mechanism)
        .map_or("none", |m| m.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it (a future's size is its type's).
    fn returned_size<F, A, B, C, D, E, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C, D, E) -> R,
    {
        std::mem::size_of::<R>()
    }

    #[test]
    fn a_connection_task_stays_small() {
        // Every open connection holds this future for its whole life: with 1,000 idle clients
        // each KiB here is a MiB of RSS. It is 1,696 bytes in this test's build and 5,728 with
        // the handlers' future awaited inline (docs/benchmarks.md, "a connection's memory");
        // an await on a large future added to `accept` or `serve` without a box shows up here.
        let size = returned_size::<
            _,
            Arc<BrokerContext>,
            TcpStream,
            SocketAddr,
            &'static KafkaListener,
            usize,
            _,
        >(accept);
        assert!(
            size <= 2 * 1024,
            "a connection's future is {size} bytes, more than 2 KiB: box the large await"
        );
    }

    #[test]
    fn a_connection_reads_on_while_under_both_budgets_or_with_nothing_waiting() {
        let l = Limits::default();
        let (mine, all) = (l.connection_queued_bytes, l.all_queued_bytes);
        assert!(may_read(&l, 0, 0));
        assert!(may_read(&l, mine - 1, all - 1));
        assert!(!may_read(&l, mine, 0), "its own budget is spent");
        assert!(!may_read(&l, 1, all), "the broker's budget is spent");
        // Nothing of its own waiting: it reads even when everybody else spent the budget,
        // so one slow client cannot stop the others.
        assert!(may_read(&l, 0, usize::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_takes_no_bytes_is_cut_off_after_the_stall_timeout() {
        // A 64 KiB pipe nobody reads: the 4 MiB response cannot be taken.
        let (mut broker, _client) = tokio::io::duplex(64 * 1024);
        let started = tokio::time::Instant::now();
        let stall = Limits::default().write_stall_timeout;
        let err = write_frame(&mut broker, &Bytes::from(vec![7u8; 4 << 20]).into(), stall)
            .await
            .expect_err("a stalled write fails");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            err.to_string()
                .contains("took no response bytes for 30000 ms"),
            "{err}"
        );
        assert_eq!(started.elapsed(), stall);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_client_that_keeps_taking_bytes_is_not_cut_off() {
        let (mut broker, mut client) = tokio::io::duplex(64 * 1024);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            while total < (3 << 20) {
                // Slower than the whole write would take at once, but never stalled long.
                tokio::time::sleep(Duration::from_millis(500)).await;
                total += client.read(&mut buf).await.expect("reads");
            }
            total
        });
        write_frame(
            &mut broker,
            &Bytes::from(vec![7u8; 3 << 20]).into(),
            Limits::default().write_stall_timeout,
        )
        .await
        .expect("a slow but moving client gets the whole response");
        assert_eq!(reader.await.expect("reader"), 3 << 20);
    }

    /// What a client reads of `frame` written through an in-memory pipe of `pipe` bytes (no
    /// socket under it: file regions are read and written).
    async fn through_a_pipe(frame: &Frame, pipe: usize) -> Vec<u8> {
        let (mut broker, mut client) = tokio::io::duplex(pipe);
        assert!(broker.tcp().is_none());
        let total = frame.len();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; total];
            client.read_exact(&mut got).await.expect("reads");
            got
        });
        let stall = Limits::default().write_stall_timeout;
        write_frame(&mut broker, frame, stall)
            .await
            .expect("written");
        reader.await.expect("reader")
    }

    #[tokio::test]
    async fn a_frame_in_parts_arrives_whole_and_in_order() {
        let parts: Vec<Bytes> = (0..5u8)
            .map(|i| Bytes::from(vec![i; 1000 + 3000 * usize::from(i)]))
            .collect();
        let want: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(through_a_pipe(&Frame::Parts(parts), 4096).await, want);
    }

    /// A frame of a head, a file region and a tail, and the bytes it stands for.
    fn frame_with_region(len: usize) -> (Frame, Vec<u8>, FileRegion) {
        use crate::protocol::frame::Piece;
        use std::io::Write;
        let body: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(&[9u8; 100]).expect("write");
        f.write_all(&body).expect("write");
        let region = FileRegion {
            file: Arc::new(f),
            path: Arc::new("00000000000000000000.log".into()),
            pos: 100,
            len,
        };
        let head = Bytes::from_static(b"head");
        let tail = Bytes::from_static(b"tail");
        let frame = Frame::Files(vec![
            Piece::Mem(vec![head.clone()]),
            Piece::File(region.clone()),
            Piece::Mem(vec![tail.clone()]),
        ]);
        let want = [&head[..], &body, &tail[..]].concat();
        (frame, want, region)
    }

    /// A connected pair over loopback: the broker's buffered write half, and a client task
    /// that reads until the broker closes and returns what it got.
    async fn tcp_pair() -> (
        BufWriter<tokio::net::tcp::OwnedWriteHalf>,
        tokio::task::JoinHandle<Vec<u8>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let mut got = Vec::new();
            // A reset after a refused frame ends the read too: what came is what counts.
            let _ = c.read_to_end(&mut got).await;
            got
        });
        let (server, _) = listener.accept().await.expect("accept");
        let (_rd, wr) = server.into_split();
        (BufWriter::with_capacity(WRITE_BUFFER, wr), client)
    }

    #[tokio::test]
    async fn a_file_region_goes_out_with_sendfile_on_tcp_whole_and_in_order() {
        let (mut wr, client) = tcp_pair().await;
        assert!(wr.tcp().is_some(), "a plain TCP writer can sendfile");
        // Larger than the socket buffer, so sendfile returns short and waits for room.
        let (frame, want, _) = frame_with_region(8 << 20);
        let stall = Limits::default().write_stall_timeout;
        write_frame(&mut wr, &frame, stall).await.expect("written");
        wr.shutdown().await.expect("shutdown");
        drop(wr);
        assert_eq!(client.await.expect("client"), want);
    }

    #[tokio::test]
    async fn without_a_socket_a_file_region_is_read_and_written() {
        let (frame, want, _) = frame_with_region(600_000);
        assert_eq!(through_a_pipe(&frame, 64 * 1024).await, want);
    }

    #[tokio::test]
    async fn a_file_cut_under_a_region_closes_the_connection_naming_it() {
        let (mut wr, client) = tcp_pair().await;
        let (frame, _, region) = frame_with_region(100_000);
        region.file.set_len(50_100).expect("cut");
        let stall = Limits::default().write_stall_timeout;
        let err = write_frame(&mut wr, &frame, stall)
            .await
            .expect_err("short file");
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(
            err.to_string()
                .contains("00000000000000000000.log ends at 50100"),
            "{err}"
        );
        drop(wr);
        // "head" and the 50,000 bytes the file still had: never the 100,000 announced.
        assert!(client.await.expect("client").len() < 4 + 100_000);
    }

    #[test]
    fn pending_replies_hold_their_bytes_until_dropped() {
        let metrics = Arc::new(Metrics::new());
        let queued = Arc::new(Queued::default());
        let a = Pending::new(
            Reply::Now(Some(Bytes::from(vec![0; 100]).into())),
            &queued,
            &metrics,
        );
        let b = Pending::new(
            Reply::Now(Some(Frame::Parts(vec![
                Bytes::from(vec![0; 20]),
                Bytes::from(vec![0; 30]),
            ]))),
            &queued,
            &metrics,
        );
        let none = Pending::new(Reply::Now(None), &queued, &metrics);
        assert_eq!(queued.bytes.load(Ordering::Acquire), 150);
        assert_eq!(metrics.queued_response_bytes(), 150);
        drop(a);
        drop(none);
        assert_eq!(queued.bytes.load(Ordering::Acquire), 50);
        drop(b);
        assert_eq!(metrics.queued_response_bytes(), 0);
    }
}
