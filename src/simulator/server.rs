//! The simulator's HTTP/1.1 accept loop and response body.
//!
//! The exporter's [`crate::httpd::serve`] only sends complete bodies; the simulator must
//! also break a connection halfway through an answer (the `reset` corruption), so it
//! serves its own body type with the same connection limits and graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::httpd::Limits;

/// How long a `reset` body waits after its first half, so the half reaches the client
/// before the connection breaks (instead of dying in hyper's write buffer).
const RESET_DELAY: Duration = Duration::from_millis(50);

/// A response body: complete, or half of one followed by a broken connection.
pub struct ApiBody {
    data: Option<Bytes>,
    reset: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ApiBody {
    /// A complete body.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        ApiBody {
            data: (!data.is_empty()).then_some(data),
            reset: None,
        }
    }

    /// A body that sends `first` and then fails, which makes hyper close the connection.
    pub fn reset_after(first: Bytes) -> Self {
        ApiBody {
            data: Some(first),
            reset: Some(Box::pin(tokio::time::sleep(RESET_DELAY))),
        }
    }
}

impl Body for ApiBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match self.reset.as_mut() {
            None => Poll::Ready(None),
            Some(delay) => {
                std::task::ready!(delay.as_mut().poll(cx));
                self.reset = None;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated connection reset",
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.reset.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, &self.reset) {
            // Unknown: hyper then trusts the Content-Length header set by the handler.
            (_, Some(_)) => SizeHint::default(),
            (Some(data), None) => SizeHint::with_exact(data.len() as u64),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` fires, then drains open connections.
pub async fn serve<H, Fut>(
    listener: TcpListener,
    handler: H,
    shutdown: CancellationToken,
    limits: Limits,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ApiBody>> + Send + 'static,
{
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
                    tracing::warn!(%error, "simulator: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(req).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            // Resets (simulated or by clients) end connections routinely.
            let _ = watched.await;
            drop(permit);
        });
    }
    // Closing the port first: a client connecting now is refused, as with a dead server.
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {}
    }
}
