//! One client connection: a reader that frames and dispatches requests in order, and a writer
//! that sends the responses in the same order.
//!
//! Kafka clients pipeline requests on one connection. The reader runs each request's ordered
//! part (decoding, appends, metadata changes) to completion before reading the next; parts that
//! only wait (fsync for acks=all, fetch long poll, rebalances) are queued to the writer as
//! futures and awaited there in request order. So a pipelined burst of produce requests is
//! appended back to back and shares one fsync, while responses still come out in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::context::BrokerContext;
use crate::error::BrokerError;
use crate::handlers::{self, Reply};
use crate::protocol::codec;

/// A connection with no request for this long is closed (Kafka's `connections.max.idle.ms`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Once a frame's length has arrived, its body must arrive within this time.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests read but not yet answered, per connection (back-pressure on pipelining clients).
const MAX_IN_FLIGHT: usize = 64;
/// Socket buffers per connection: small, so thousands of idle clients cost little; large
/// frames bypass them (read straight into the frame buffer, written straight to the socket).
const READ_BUFFER: usize = 16 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;

/// Why the reader stopped (for logs and metrics).
enum Stop {
    /// Clean close by the client, idle timeout or broker shutdown.
    Quiet(&'static str),
    Protocol(BrokerError),
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
    // Allocated only after the length passed the limit.
    let mut buf = BytesMut::with_capacity(len);
    let body = async {
        let mut limited = rd.take(len as u64);
        while buf.len() < len {
            if limited.read_buf(&mut buf).await? == 0 {
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
    Ok(Ok(buf.freeze()))
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
            Ok(Err(Stop::Quiet(_))) | Err(_) => return None,
        }
    }
}

/// Serves one connection until the client leaves, a protocol error, or shutdown.
pub async fn serve(
    ctx: Arc<BrokerContext>,
    stream: TcpStream,
    peer: SocketAddr,
    max_request: usize,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let (tx, mut rx) = mpsc::channel::<Reply>(MAX_IN_FLIGHT);

    let metrics = Arc::clone(&ctx.metrics);
    let writer = tokio::spawn(async move {
        let mut wr = BufWriter::with_capacity(WRITE_BUFFER, wr);
        while let Some(reply) = rx.recv().await {
            let frame = match reply {
                Reply::Now(f) => Ok(f),
                Reply::Later(fut) => fut.await,
            };
            match frame {
                Ok(Some(bytes)) => {
                    metrics.bytes_out(bytes.len());
                    if let Err(e) = wr.write_all(&bytes).await {
                        tracing::debug!(%peer, error = %e, "write failed");
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(%peer, error = %e, "cannot build a response; closing the connection");
                    return;
                }
            }
            // Flush once nothing else is ready, so a pipelined burst goes out in one write.
            if rx.is_empty() && wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });

    let stop = loop {
        let frame = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break Stop::Quiet("broker shutting down"),
            r = read_frame(&mut rd, peer, max_request) => r,
        };
        let frame = match frame {
            Ok(Ok(f)) => f,
            Ok(Err(stop)) => break stop,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "read failed");
                break Stop::Quiet("read error");
            }
        };
        ctx.metrics.bytes_in(frame.len() + 4);
        match handlers::dispatch(&ctx, peer, frame).await {
            Ok(reply) => {
                if tx.send(reply).await.is_err() {
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
    }
    // Let the writer answer everything already read (graceful shutdown drains here).
    drop(tx);
    let _ = writer.await;
}
