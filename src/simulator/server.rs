//! The simulator's response body, served by the shared accept loop in [`crate::httpd`].
//!
//! Unlike the exporter, the simulator must also break a connection halfway through an
//! answer (the `reset` corruption).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

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
