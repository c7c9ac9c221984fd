//! The HTTP/1.1 accept loop of the exporter and the simulator.
//!
//! It owns connection plumbing only (accept, optional TLS, per-connection limits, graceful
//! drain); routing, authentication, wire formats and body types stay with each server (the
//! simulator's bodies can break a connection halfway on purpose).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_rustls::{rustls, TlsAcceptor};
use tokio_util::sync::CancellationToken;

/// Limits applied to every connection a server accepts, TLS or not.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once (TLS handshakes included); further ones wait in the
    /// kernel backlog.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send a complete request head; it also closes keep-alive
    /// connections idle for that long.
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: usize,
    /// Time a response may wait for a client that stopped reading before the connection
    /// is closed.
    pub write_stall_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown starts.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            write_stall_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(3),
        }
    }
}

/// A response body the accept loop can send: any hyper body of `Bytes` that can cross
/// threads.
pub trait ResponseBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

impl<B> ResponseBody for B where B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

/// The error type hyper accepts from a response body.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `handler` over plain HTTP on `listener` until `shutdown` fires, then drains open
/// connections.
pub async fn serve<H, Fut, B>(
    listener: TcpListener,
    handler: H,
    shutdown: CancellationToken,
    limits: Limits,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: ResponseBody,
{
    serve_with_tls(listener, None, handler, shutdown, limits).await;
}

/// Like [`serve`], over TLS when `tls` is given.
pub async fn serve_with_tls<H, Fut, B>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: H,
    shutdown: CancellationToken,
    limits: Limits,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: ResponseBody,
{
    let tls = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let stream = StallGuard::new(stream, limits.write_stall_timeout);
        let handler = handler.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // The permit (a connection slot) is held until the connection is done,
            // handshake included.
            let _permit = permit;
            let Some(acceptor) = tls else {
                serve_connection(stream, handler, limits, watcher).await;
                return;
            };
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                done = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream)) => done,
            };
            match handshake {
                Ok(Ok(stream)) => serve_connection(stream, handler, limits, watcher).await,
                // Scanners and plaintext clients on a TLS port are routine: debug only.
                Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
                Err(_) => tracing::debug!(
                    timeout = ?limits.tls_handshake_timeout,
                    "tls handshake timed out"
                ),
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(timeout = ?limits.drain_timeout, "connections still open after the drain timeout");
        }
    }
}

/// Serves HTTP/1.1 on one established connection until it closes or the drain ends it.
async fn serve_connection<S, H, Fut, B>(io: S, handler: H, limits: Limits, watcher: Watcher)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: ResponseBody,
{
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(io), service);
    // Client resets and timeouts are routine for a metrics endpoint.
    let _ = watcher.watch(connection).await;
}

/// A stream whose writes fail once they made no progress for `timeout`: a client that
/// stops reading a large response must not hold a connection slot forever.
struct StallGuard<S> {
    inner: S,
    timeout: Duration,
    stalled_since: Option<Pin<Box<Sleep>>>,
}

impl<S> StallGuard<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        StallGuard {
            inner,
            timeout,
            stalled_since: None,
        }
    }

    /// Called when the inner write is pending: arms the timer, fails once it fired.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let timer = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        poll: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled_since = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(poll, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(poll, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(poll, cx)
    }
}

/// Builds a response with the given status, content type and body.
pub fn response(
    status: hyper::StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    resp
}
