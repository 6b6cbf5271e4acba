//! A channel whose request bodies can be failed on purpose, so that aborting a bulk load resets
//! its HTTP/2 stream instead of ending it cleanly.
//!
//! Why: a Flight `DoPut` whose request stream ends normally means "all data sent" and the server
//! commits it. gRPC clients abort a client stream by cancelling it, which on the wire is a
//! `RST_STREAM`; tonic only sends one when the request body fails. [`AbortableChannel`] wraps
//! each request body so that, once the shared [`AbortSignal`] fires, the next poll of the body
//! returns an error. The signal is checked before the wrapped body on every poll, so a load
//! aborted before its sender is dropped can never be seen by the server as complete.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use http_body::Frame;
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::transport::Channel;
use tonic::Status;

/// Fires the abort of every body sent through one [`AbortableChannel`].
pub struct AbortSignal(Option<oneshot::Sender<String>>);

impl AbortSignal {
    /// Makes every in-flight and future request body of the paired channel fail with `reason`.
    pub fn fire(&mut self, reason: &str) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(reason.to_string());
        }
    }
}

/// A [`Channel`] whose request bodies fail once the paired [`AbortSignal`] fires.
#[derive(Clone)]
pub struct AbortableChannel {
    inner: Channel,
    aborted: Shared<oneshot::Receiver<String>>,
}

impl AbortableChannel {
    /// Wraps `inner`; the returned signal aborts bodies sent through the wrapper.
    pub fn new(inner: Channel) -> (Self, AbortSignal) {
        let (tx, rx) = oneshot::channel();
        (AbortableChannel { inner, aborted: rx.shared() }, AbortSignal(Some(tx)))
    }
}

impl Service<http::Request<Body>> for AbortableChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = <Channel as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let body = Body::new(AbortableBody { inner: body, aborted: Some(self.aborted.clone()) });
        Service::call(&mut self.inner, http::Request::from_parts(parts, body))
    }
}

/// A request body that fails once the abort signal fires.
struct AbortableBody {
    inner: Body,
    /// `None` once the signal can no longer fire (its sender was dropped without firing).
    aborted: Option<Shared<oneshot::Receiver<String>>>,
}

impl http_body::Body for AbortableBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(aborted) = self.aborted.as_mut() {
            match aborted.poll_unpin(cx) {
                Poll::Ready(Ok(reason)) => return Poll::Ready(Some(Err(Status::cancelled(format!("aborted by the client: {reason}"))))),
                Poll::Ready(Err(_)) => self.aborted = None,
                Poll::Pending => {}
            }
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        // While an abort may still come, never let the transport end the stream early.
        self.aborted.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    fn poll(body: &mut AbortableBody) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        Pin::new(body).poll_frame(&mut cx)
    }

    #[test]
    fn a_fired_signal_fails_the_body_before_it_can_end() {
        let (tx, rx) = oneshot::channel();
        let mut signal = AbortSignal(Some(tx));
        // The wrapped body is already complete: without the signal it would end the stream.
        let mut body = AbortableBody { inner: Body::empty(), aborted: Some(rx.shared()) };
        assert!(!body.is_end_stream(), "no early end while an abort may come");
        signal.fire("test");
        match poll(&mut body) {
            Poll::Ready(Some(Err(status))) => {
                assert_eq!((status.code(), status.message()), (tonic::Code::Cancelled, "aborted by the client: test"))
            }
            other => panic!("expected an error frame, got {other:?}"),
        }
    }

    #[test]
    fn a_dropped_signal_lets_the_body_end_normally() {
        let (tx, rx) = oneshot::channel::<String>();
        let mut body = AbortableBody { inner: Body::empty(), aborted: Some(rx.shared()) };
        drop(tx);
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        assert!(body.is_end_stream());
    }
}
