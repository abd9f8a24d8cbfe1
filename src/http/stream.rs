//! Subscriptions over plain HTTP, for clients and networks without WebSockets:
//! Apollo's multipart protocol (`multipart/mixed;subscriptionSpec=1.0`: Apollo
//! Client, Apollo iOS, Apollo Kotlin) and Server-Sent Events (graphql-sse's
//! distinct connections mode). One request carries one operation; its
//! response stays open and carries the operation's results.
//!
//! The operation runs through the same `LiveExecutor` as on a WebSocket: the
//! same shared rendering and the same snapshot, resume and resync contract,
//! with the login from the request's `Authorization` header. As on a
//! WebSocket, a stream ends with an `UNAUTHENTICATED` error when the token
//! expires (the client reconnects with a fresh one and `afterVersion`), and
//! ends when the instance stops accepting connections. Heartbeats keep proxies
//! from closing an idle stream; a client that stops reading is dropped by the
//! listener's write timeout.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::watch;

use crate::domain::ErrorCode;
use crate::graphql::{error_list, Output, RequestAuth};
use crate::telemetry::metric;

/// How the results of one operation are framed in the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamFormat {
    /// `multipart/mixed;boundary="graphql";subscriptionSpec="1.0"`: each result is a
    /// JSON part `{"payload": <result>}`, `{}` is a heartbeat.
    Multipart,
    /// `text/event-stream`: `next` events carry results, `complete` ends the operation.
    EventStream,
}

/// Each part is followed by its delimiter, so a client can act on a part
/// without waiting for the next one.
const MULTIPART_OPENING: &str = "\r\n--graphql";
const MULTIPART_PART_HEAD: &str = "\r\nContent-Type: application/json; charset=utf-8\r\n\r\n";
const MULTIPART_PART_TAIL: &str = "\r\n--graphql";
/// Turns the last delimiter into the closing one.
const MULTIPART_CLOSING: &str = "--\r\n";
/// An SSE comment: ignored by clients, keeps the connection busy.
const SSE_HEARTBEAT: &str = ":\n\n";
const SSE_COMPLETE: &str = "event: complete\ndata:\n\n";

impl StreamFormat {
    pub(super) fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            StreamFormat::Multipart => "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\"",
            StreamFormat::EventStream => "text/event-stream; charset=utf-8",
        })
    }

    fn label(self) -> &'static str {
        match self {
            StreamFormat::Multipart => "multipart",
            StreamFormat::EventStream => "sse",
        }
    }

    fn opening(self) -> Bytes {
        Bytes::from_static(match self {
            StreamFormat::Multipart => MULTIPART_OPENING.as_bytes(),
            StreamFormat::EventStream => SSE_HEARTBEAT.as_bytes(),
        })
    }

    fn heartbeat(self) -> Bytes {
        match self {
            StreamFormat::Multipart => multipart_part("{}"),
            StreamFormat::EventStream => Bytes::from_static(SSE_HEARTBEAT.as_bytes()),
        }
    }

    /// One result: a GraphQL response, spliced in as it was rendered (often
    /// shared by many subscribers).
    fn result(self, response: &str) -> Bytes {
        match self {
            StreamFormat::Multipart => multipart_part(&format!(r#"{{"payload":{response}}}"#)),
            StreamFormat::EventStream => Bytes::from(format!("event: next\ndata: {response}\n\n")),
        }
    }

    /// The last result of an operation that failed: `errors` is a GraphQL error list.
    fn failure(self, errors: &str) -> Bytes {
        self.result(&format!(r#"{{"errors":{errors}}}"#))
    }

    /// The operation is over and the server says so.
    fn complete(self) -> Bytes {
        Bytes::from_static(match self {
            StreamFormat::Multipart => MULTIPART_CLOSING.as_bytes(),
            StreamFormat::EventStream => SSE_COMPLETE.as_bytes(),
        })
    }

    /// What a stream ends with when the instance stops: Apollo's transport-level
    /// error for multipart; for SSE nothing (no `complete`), which graphql-sse
    /// clients take as a dropped connection and retry.
    fn shutting_down(self) -> Option<Bytes> {
        match self {
            StreamFormat::Multipart => {
                let errors = error_list(
                    ErrorCode::Unavailable,
                    "the server is shutting down; subscribe again (with afterVersion) to resume",
                );
                let mut frame = multipart_part(&format!(r#"{{"payload":null,"errors":{errors}}}"#)).to_vec();
                frame.extend_from_slice(MULTIPART_CLOSING.as_bytes());
                Some(Bytes::from(frame))
            }
            StreamFormat::EventStream => None,
        }
    }
}

fn multipart_part(json: &str) -> Bytes {
    let mut part = String::with_capacity(MULTIPART_PART_HEAD.len() + json.len() + MULTIPART_PART_TAIL.len());
    part.push_str(MULTIPART_PART_HEAD);
    part.push_str(json);
    part.push_str(MULTIPART_PART_TAIL);
    Bytes::from(part)
}

/// The streaming response for one operation's `outputs`.
pub(super) fn respond(
    format: StreamFormat,
    outputs: BoxStream<'static, Output>,
    auth: &RequestAuth,
    heartbeat: Duration,
    closing: watch::Receiver<bool>,
) -> Response {
    let expiry = match auth {
        RequestAuth::Authenticated(caller) => Some(caller.deadline()),
        _ => None,
    };
    let body = frames(format, outputs, expiry, heartbeat, closing).map(Ok::<_, Infallible>);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            // Tells nginx-style proxies to pass each frame on at once.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Counts the open streams by format while it lives.
struct OpenStream(StreamFormat);

impl OpenStream {
    fn new(format: StreamFormat) -> Self {
        metrics::gauge!(metric::HTTP_OPEN_STREAMS, "format" => format.label()).increment(1.0);
        OpenStream(format)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!(metric::HTTP_OPEN_STREAMS, "format" => self.0.label()).decrement(1.0);
    }
}

fn frames(
    format: StreamFormat,
    mut outputs: BoxStream<'static, Output>,
    expiry: Option<tokio::time::Instant>,
    heartbeat: Duration,
    mut closing: watch::Receiver<bool>,
) -> impl futures::Stream<Item = Bytes> {
    async_stream::stream! {
        let _open = OpenStream::new(format);
        yield format.opening();
        let mut heartbeats = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let expired = async move {
            match expiry {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let shutting_down = async move {
            // Dropped inside: the guard `wait_for` returns may not live across an await.
            let _ = closing.wait_for(|closing| *closing).await.map(|_| ());
        };
        tokio::pin!(shutting_down);
        loop {
            tokio::select! {
                output = outputs.next() => {
                    heartbeats.reset();
                    match output {
                        Some(Output::Next(response)) => yield format.result(&response),
                        Some(Output::Error(errors)) => {
                            yield format.failure(&errors);
                            yield format.complete();
                            return;
                        }
                        None => {
                            yield format.complete();
                            return;
                        }
                    }
                }
                _ = heartbeats.tick() => yield format.heartbeat(),
                () = &mut expired => {
                    if let Output::Error(errors) = Output::login_expired() {
                        yield format.failure(&errors);
                    }
                    yield format.complete();
                    return;
                }
                () = &mut shutting_down => {
                    if let Some(frame) = format.shutting_down() {
                        yield frame;
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::stream;

    use super::*;

    async fn body(format: StreamFormat, outputs: Vec<Output>) -> String {
        let (_closing, closing) = watch::channel(false);
        let frames: Vec<Bytes> = frames(
            format,
            stream::iter(outputs).boxed(),
            None,
            Duration::from_secs(60),
            closing,
        )
        .collect()
        .await;
        String::from_utf8(frames.concat()).unwrap()
    }

    #[tokio::test]
    async fn multipart_parts_are_delimited_as_soon_as_they_are_written() {
        let body = body(
            StreamFormat::Multipart,
            vec![Output::Next(Arc::from(r#"{"data":{"x":1}}"#))],
        )
        .await;
        assert_eq!(
            body,
            "\r\n--graphql\r\nContent-Type: application/json; charset=utf-8\r\n\r\n\
             {\"payload\":{\"data\":{\"x\":1}}}\r\n--graphql--\r\n"
        );
    }

    #[tokio::test]
    async fn sse_results_are_next_events_and_a_failure_completes() {
        let body = body(
            StreamFormat::EventStream,
            vec![
                Output::Next(Arc::from(r#"{"data":{"x":1}}"#)),
                Output::Error(Arc::from(r#"[{"message":"no"}]"#)),
                Output::Next(Arc::from(r#"{"data":{"x":2}}"#)),
            ],
        )
        .await;
        assert_eq!(
            body,
            ":\n\nevent: next\ndata: {\"data\":{\"x\":1}}\n\n\
             event: next\ndata: {\"errors\":[{\"message\":\"no\"}]}\n\n\
             event: complete\ndata:\n\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_login_ends_the_stream_with_unauthenticated() {
        let (_closing, closing) = watch::channel(false);
        let expiry = Some(tokio::time::Instant::now() + Duration::from_secs(30));
        let frames: Vec<Bytes> = frames(
            StreamFormat::EventStream,
            stream::pending().boxed(),
            expiry,
            Duration::from_secs(20),
            closing,
        )
        .collect()
        .await;
        let body = String::from_utf8(frames.concat()).unwrap();
        assert!(
            body.starts_with(":\n\n:\n\nevent: next\ndata: {\"errors\":[{"),
            "{body}"
        );
        assert!(body.contains("UNAUTHENTICATED"), "{body}");
        assert!(body.ends_with("event: complete\ndata:\n\n"), "{body}");
    }

    #[tokio::test]
    async fn shutting_down_ends_multipart_with_a_transport_error() {
        let (close, closing) = watch::channel(false);
        let frames = frames(
            StreamFormat::Multipart,
            stream::pending().boxed(),
            None,
            Duration::from_secs(60),
            closing,
        );
        close.send(true).unwrap();
        let body = String::from_utf8(frames.collect::<Vec<_>>().await.concat()).unwrap();
        assert!(body.contains(r#"{"payload":null,"errors":[{"#), "{body}");
        assert!(
            body.contains("UNAVAILABLE") && body.ends_with("--graphql--\r\n"),
            "{body}"
        );
    }
}
