//! A test client for subscriptions over HTTP: Apollo's multipart protocol and
//! Server-Sent Events (graphql-sse, distinct connections mode). Reads the raw
//! body, so the tests see the framing exactly as a client library would.
//! Every wait has a deadline and panics with what came instead.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::Endpoint;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// `Accept: multipart/mixed;subscriptionSpec=1.0` (without a boundary, as some clients send it).
    Multipart,
    /// `Accept: text/event-stream`.
    EventStream,
}

impl StreamFormat {
    pub fn accept(self) -> &'static str {
        match self {
            StreamFormat::Multipart => "multipart/mixed;subscriptionSpec=1.0",
            StreamFormat::EventStream => "text/event-stream",
        }
    }
}

/// What one stream produced, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A GraphQL response: a multipart part's `payload`, an SSE `next` event's data.
    Result(Value),
    /// Multipart `{}` or an SSE comment.
    Heartbeat,
    /// A multipart part with top-level `errors` (Apollo's transport-level error).
    TransportError(Value),
    /// The closing delimiter (multipart) or a `complete` event (SSE).
    Complete,
    /// The body ended without `Complete`.
    Closed,
}

impl StreamEvent {
    /// The `extensions.code` of the first error this event carries.
    pub fn error_code(&self) -> Option<&str> {
        let errors = match self {
            StreamEvent::Result(response) => response.get("errors")?,
            StreamEvent::TransportError(errors) => errors,
            _ => return None,
        };
        errors.get(0)?.get("extensions")?.get("code")?.as_str()
    }
}

/// One open subscription stream.
pub struct HttpStream {
    pub format: StreamFormat,
    response: reqwest::Response,
    buffer: String,
    /// Multipart: whether the opening delimiter has been seen.
    opened: bool,
    events: VecDeque<StreamEvent>,
    ended: bool,
}

/// The non-stream answer when the server refused to stream: status and body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

impl HttpStream {
    /// POSTs the operation with the format's `Accept` and, if given, a bearer token.
    pub async fn open(
        app: &impl Endpoint,
        format: StreamFormat,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Result<HttpStream, Refused> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        let request = client()
            .post(format!("{}/graphql", app.base_url()))
            .header("accept", format.accept())
            .json(&body);
        Self::send(format, request, token).await
    }

    /// The same by GET, the operation in the query string.
    pub async fn open_get(
        app: &impl Endpoint,
        format: StreamFormat,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Result<HttpStream, Refused> {
        let request = client()
            .get(format!("{}/graphql", app.base_url()))
            .query(&[("query", query.to_owned()), ("variables", variables.to_string())])
            .header("accept", format.accept());
        Self::send(format, request, token).await
    }

    async fn send(
        format: StreamFormat,
        mut request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> Result<HttpStream, Refused> {
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the request reaches ordercast");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let streamed = match format {
            StreamFormat::Multipart => {
                content_type.starts_with("multipart/mixed") && content_type.contains("subscriptionSpec=\"1.0\"")
            }
            StreamFormat::EventStream => content_type.starts_with("text/event-stream"),
        };
        if response.status() != 200 || !streamed {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(Value::Null);
            return Err(Refused { status, body });
        }
        Ok(HttpStream {
            format,
            response,
            buffer: String::new(),
            opened: false,
            events: VecDeque::new(),
            ended: false,
        })
    }

    /// The next event, heartbeats included.
    pub async fn next_event(&mut self, timeout: Duration) -> StreamEvent {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.events.pop_front() {
                return event;
            }
            if self.ended {
                return StreamEvent::Closed;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no {:?} event within {timeout:?}; unparsed: {:?}",
                        self.format, self.buffer
                    )
                });
            match chunk {
                Ok(Some(bytes)) => {
                    self.buffer
                        .push_str(std::str::from_utf8(&bytes).expect("streams are UTF-8"));
                    self.parse();
                }
                Ok(None) | Err(_) => {
                    self.parse();
                    self.ended = true;
                }
            }
        }
    }

    /// The next event that is not a heartbeat.
    pub async fn next(&mut self, timeout: Duration) -> StreamEvent {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                StreamEvent::Heartbeat => continue,
                event => return event,
            }
        }
    }

    /// The `data` of the next result; panics on anything else.
    pub async fn next_data(&mut self, timeout: Duration) -> Value {
        match self.next(timeout).await {
            StreamEvent::Result(response) if response.get("errors").is_none() => response["data"].clone(),
            other => panic!("expected a result with data, got {other:?}"),
        }
    }

    fn parse(&mut self) {
        match self.format {
            StreamFormat::Multipart => self.parse_multipart(),
            StreamFormat::EventStream => self.parse_event_stream(),
        }
    }

    fn parse_multipart(&mut self) {
        const DELIMITER: &str = "\r\n--graphql";
        loop {
            if !self.opened {
                let Some(at) = self.buffer.find(DELIMITER) else { return };
                self.buffer.drain(..at + DELIMITER.len());
                self.opened = true;
            }
            if self.buffer.starts_with("--") {
                self.events.push_back(StreamEvent::Complete);
                self.buffer.clear();
                self.ended = true;
                return;
            }
            let Some(end) = self.buffer.find(DELIMITER) else { return };
            let part: String = self.buffer.drain(..end + DELIMITER.len()).collect();
            let part = &part[..end];
            let (headers, body) = part
                .split_once("\r\n\r\n")
                .unwrap_or_else(|| panic!("a multipart part has headers and a body: {part:?}"));
            assert!(
                headers.to_ascii_lowercase().contains("content-type: application/json"),
                "every part is JSON: {headers:?}"
            );
            let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
            let event = match body.get("payload") {
                _ if body.as_object().is_some_and(|fields| fields.is_empty()) => StreamEvent::Heartbeat,
                Some(Value::Null) => StreamEvent::TransportError(body["errors"].clone()),
                Some(payload) => StreamEvent::Result(payload.clone()),
                None => panic!("a part is {{}} or has a payload: {body}"),
            };
            self.events.push_back(event);
        }
    }

    fn parse_event_stream(&mut self) {
        while let Some(end) = self.buffer.find("\n\n") {
            let message: String = self.buffer.drain(..end + 2).collect();
            let mut event = None;
            let mut data = String::new();
            for line in message.lines() {
                if line.starts_with(':') {
                    continue;
                }
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            let parsed = match event.as_deref() {
                None => StreamEvent::Heartbeat,
                Some("next") => {
                    StreamEvent::Result(serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data:?}")))
                }
                Some("complete") => StreamEvent::Complete,
                Some(other) => panic!("graphql-sse has only next and complete events, got {other:?}"),
            };
            self.events.push_back(parsed);
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}
