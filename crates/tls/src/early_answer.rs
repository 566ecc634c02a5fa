//! Early answers reach the client whole.
//!
//! A handler or middleware that answers before reading the request body (a
//! 401 for a missing token, a 413 after the body limit, a 400 for a missing
//! content type) drops the unread body. Over HTTP/2 hyper then resets the
//! stream with CANCEL, often before the answer's frames are out, and the
//! client sees "stream error" instead of its answer; over HTTP/1.1 the
//! connection is closed with unread bytes, and the kernel's reset can
//! overtake the answer. [`finish_request_body`] takes such a body back,
//! reads up to [`DRAIN_BYTES`] of what the client is still sending (for at
//! most [`DRAIN_TIME`]), and keeps whatever is left alive until the answer
//! has been sent: the stream then ends with NO_ERROR, the connection with
//! `Connection: close`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Version};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

/// Most bytes of an unread body read before an early answer.
pub const DRAIN_BYTES: usize = 1024 * 1024;
/// Longest time spent reading an unread body before an early answer.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Middleware (outermost) that finishes reading request bodies the inner
/// service left unread; see the module doc.
pub async fn finish_request_body(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let version = request.version();
    let (parts, body) = request.into_parts();
    let (give_back, mut given_back) = oneshot::channel();
    let tracked = Tracked {
        inner: Some(body),
        finished: false,
        give_back: Some(give_back),
    };
    let response = next
        .run(Request::from_parts(parts, Body::new(tracked)))
        .await;
    // The inner service has returned: the body was read to its end, dropped
    // unread (and handed back), or is still held somewhere (left alone).
    match given_back.try_recv() {
        Ok(unread) => drain(unread, response, version).await,
        Err(_) => response,
    }
}

async fn drain(mut unread: Body, response: Response, version: Version) -> Response {
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut drained = 0;
    while drained < DRAIN_BYTES && !unread.is_end_stream() {
        match tokio::time::timeout_at(deadline, unread.frame()).await {
            Ok(Some(Ok(frame))) => drained += frame.data_ref().map_or(0, Bytes::len),
            Ok(None) => return response,
            Ok(Some(Err(_))) | Err(_) => break,
        }
    }
    if unread.is_end_stream() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    if version < Version::HTTP_2 {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let body = Body::new(WithUnread {
        body,
        _unread: unread,
    });
    Response::from_parts(parts, body)
}

/// A request body that, dropped before its end, hands itself back.
struct Tracked {
    inner: Option<Body>,
    finished: bool,
    give_back: Option<oneshot::Sender<Body>>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let (Some(inner), Some(give_back)) = (self.inner.take(), self.give_back.take()) else {
            return;
        };
        if !self.finished && !inner.is_end_stream() {
            let _ = give_back.send(inner);
        }
    }
}

/// An answer's body that keeps the unread rest of the request body alive
/// until the answer has been sent.
struct WithUnread {
    body: Body,
    _unread: Body,
}

impl HttpBody for WithUnread {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
