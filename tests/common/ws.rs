//! A small GraphQL-over-WebSocket test client on tokio-tungstenite.
//!
//! Speaks `graphql-transport-ws` (the graphql-ws npm library's protocol) and, for
//! compatibility tests, the legacy Apollo `graphql-ws` (subscriptions-transport-ws).
//! Every wait has a deadline and panics with what was expected and what came instead,
//! so no test can hang on a silent server.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::Endpoint;

/// How long `connect` waits for the upgrade plus `connection_ack` (or the refusal).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A sensible default wait for one live message: CDC goes Postgres -> Debezium -> Kafka -> ordercast.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`: subscribe / next / error / complete, ping / pong.
    TransportWs,
    /// The legacy Apollo `graphql-ws`: start / data / error / complete / stop, `ka` keep-alives.
    LegacyWs,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    pub protocol: Protocol,
    /// `SO_RCVBUF` of the client socket, set before connecting; small values make a client
    /// that stops reading exert back-pressure on the server sooner.
    pub recv_buffer: Option<u32>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            protocol: Protocol::TransportWs,
            recv_buffer: None,
        }
    }
}

/// Why `connect` did not end with `connection_ack`.
#[derive(Debug)]
pub enum ConnectError {
    /// The TCP connect or the HTTP upgrade failed (e.g. the server answered 401 instead of 101).
    Handshake(String),
    /// The server closed the socket before `connection_ack` (close code and reason, if a close frame came).
    Closed { code: Option<u16>, reason: String },
    /// The server answered `connection_init` with something other than `connection_ack`
    /// (e.g. the legacy protocol's `connection_error`).
    Refused(Value),
    /// Neither an ack nor a refusal within `CONNECT_TIMEOUT`.
    Timeout,
}

impl ConnectError {
    /// True for every way of saying no at `connection_init`: a close, a `connection_error`, or a
    /// refused upgrade. False for a timeout (a server that says nothing has not refused anything).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ConnectError::Timeout)
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Handshake(e) => write!(f, "the websocket upgrade failed: {e}"),
            ConnectError::Closed { code, reason } => {
                write!(
                    f,
                    "the server closed the socket before connection_ack (code {code:?}, reason {reason:?})"
                )
            }
            ConnectError::Refused(message) => write!(f, "the server refused connection_init with {message}"),
            ConnectError::Timeout => write!(f, "no connection_ack and no refusal within {CONNECT_TIMEOUT:?}"),
        }
    }
}

/// What one subscription (one operation id) produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `next` (or legacy `data`): the payload, a GraphQL response `{data, errors?}`.
    Next(Value),
    /// `error`: the payload, normally a list of GraphQL errors.
    Error(Value),
    /// `complete`: the server ended the operation.
    Complete,
}

impl Event {
    /// The GraphQL errors this event carries: an `error` message's list, or a `next` payload's `errors`.
    pub fn errors(&self) -> Option<Value> {
        match self {
            Event::Error(payload) if payload.is_array() => Some(payload.clone()),
            Event::Error(payload) => Some(json!([payload])),
            Event::Next(payload) => payload.get("errors").cloned(),
            Event::Complete => None,
        }
    }

    /// The `extensions.code` of the first error, if this event carries errors.
    pub fn error_code(&self) -> Option<String> {
        self.errors()?[0]["extensions"]["code"].as_str().map(str::to_owned)
    }
}

/// Why a wait ended without an event.
enum Stop {
    Timeout,
    Closed(String),
}

pub fn ws_url(app: &impl Endpoint) -> String {
    let rest = app
        .base_url()
        .strip_prefix("http://")
        .expect("a base URL starts with http://");
    format!("ws://{rest}/graphql")
}

pub struct WsClient {
    ws: WebSocketStream<TcpStream>,
    protocol: Protocol,
    /// Events received and not yet taken, per operation id.
    pending: HashMap<String, VecDeque<Event>>,
    /// Messages that belong to no operation (e.g. a late `connection_error`); kept for diagnostics.
    pub stray: Vec<Value>,
    /// Set once the socket ended: why.
    closed: Option<String>,
}

impl WsClient {
    /// Connects with `graphql-transport-ws` and `{"authorization": "Bearer <token>"}` in `connection_init`.
    pub async fn connect(app: &impl Endpoint, token: &str) -> Result<WsClient, ConnectError> {
        Self::connect_with(app, token, ConnectOptions::default()).await
    }

    /// Connects with the legacy `graphql-ws` (subscriptions-transport-ws) protocol.
    pub async fn connect_legacy(app: &impl Endpoint, token: &str) -> Result<WsClient, ConnectError> {
        let options = ConnectOptions {
            protocol: Protocol::LegacyWs,
            ..ConnectOptions::default()
        };
        Self::connect_with(app, token, options).await
    }

    pub async fn connect_with(
        app: &impl Endpoint,
        token: &str,
        options: ConnectOptions,
    ) -> Result<WsClient, ConnectError> {
        let payload = json!({ "authorization": format!("Bearer {token}") });
        Self::connect_with_payload(app, payload, options).await
    }

    /// Connects and sends `payload` as the `connection_init` payload, verbatim.
    pub async fn connect_with_payload(
        app: &impl Endpoint,
        payload: Value,
        options: ConnectOptions,
    ) -> Result<WsClient, ConnectError> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut client = match tokio::time::timeout_at(deadline, Self::upgrade(app, options)).await {
            Ok(client) => client?,
            Err(_) => return Err(ConnectError::Timeout),
        };
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        loop {
            let frame = match tokio::time::timeout_at(deadline, client.ws.next()).await {
                Err(_) => return Err(ConnectError::Timeout),
                Ok(None) => {
                    return Err(ConnectError::Closed {
                        code: None,
                        reason: "the stream ended without a close frame".into(),
                    })
                }
                Ok(Some(Err(e))) => {
                    return Err(ConnectError::Closed {
                        code: None,
                        reason: format!("websocket error: {e}"),
                    })
                }
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Message::Text(text) => {
                    let message: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("the server sent a non-JSON text frame {text:?}: {e}"));
                    match message["type"].as_str() {
                        Some("connection_ack") => return Ok(client),
                        Some("ka") | Some("pong") => {}
                        Some("ping") => client.send(json!({ "type": "pong" })).await,
                        _ => return Err(ConnectError::Refused(message)),
                    }
                }
                Message::Close(frame) => {
                    return Err(ConnectError::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    })
                }
                _ => {}
            }
        }
    }

    async fn upgrade(app: &impl Endpoint, options: ConnectOptions) -> Result<WsClient, ConnectError> {
        let addr: SocketAddr = app
            .base_url()
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .expect("a base URL is http://IP:PORT");
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .expect("a TCP socket");
        if let Some(size) = options.recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| ConnectError::Handshake(format!("TCP connect to {addr}: {e}")))?;
        stream.set_nodelay(true).ok();
        let mut request = ws_url(app).into_client_request().expect("a valid ws URL");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(options.protocol.name()),
        );
        let (ws, _response) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| ConnectError::Handshake(e.to_string()))?;
        Ok(WsClient {
            ws,
            protocol: options.protocol,
            pending: HashMap::new(),
            stray: Vec::new(),
            closed: None,
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sends one protocol message.
    pub async fn send(&mut self, message: Value) {
        if let Err(e) = self.ws.send(Message::text(message.to_string())).await {
            panic!("could not send {message} over the websocket: {e}");
        }
    }

    /// Starts operation `id` (`subscribe`, or `start` in the legacy protocol).
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// Ends operation `id` from the client side (`complete`, or `stop` in the legacy protocol).
    pub async fn complete(&mut self, id: &str) {
        let kind = match self.protocol {
            Protocol::TransportWs => "complete",
            Protocol::LegacyWs => "stop",
        };
        self.send(json!({ "id": id, "type": kind })).await;
    }

    /// Closes the socket (close handshake, bounded) and drops it.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(3), self.ws.close(None)).await;
        // Wait briefly for the server's close frame so the server sees a clean close, not a reset.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// The next event of operation `id`: `Ok(None)` if none came within `timeout`, `Err(why)` if
    /// the socket ended first (events received before the end are still returned first).
    pub async fn poll_event(&mut self, id: &str, timeout: Duration) -> Result<Option<Event>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.pending.get_mut(id).and_then(VecDeque::pop_front) {
                return Ok(Some(event));
            }
            match self.pump(deadline).await {
                Ok(()) => {}
                Err(Stop::Timeout) => return Ok(None),
                Err(Stop::Closed(why)) => return Err(why),
            }
        }
    }

    /// The next event of any operation, with its id: `Ok(None)` if none came within `timeout`,
    /// `Err(why)` once the socket ended and everything received before was taken.
    pub async fn poll_any(&mut self, timeout: Duration) -> Result<Option<(String, Event)>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((id, queue)) = self.pending.iter_mut().find(|(_, queue)| !queue.is_empty()) {
                let event = queue.pop_front().expect("not empty");
                return Ok(Some((id.clone(), event)));
            }
            match self.pump(deadline).await {
                Ok(()) => {}
                Err(Stop::Timeout) => return Ok(None),
                Err(Stop::Closed(why)) => return Err(why),
            }
        }
    }

    /// The next event of operation `id`, or None if none came within `timeout`.
    /// Panics if the socket closed before one came.
    pub async fn try_next_event(&mut self, id: &str, timeout: Duration) -> Option<Event> {
        match self.poll_event(id, timeout).await {
            Ok(event) => event,
            Err(why) => panic!(
                "waiting for operation {id:?}: the socket ended ({why}); stray messages: {:?}",
                self.stray
            ),
        }
    }

    /// The next event of operation `id`; panics after `timeout`.
    pub async fn next_event(&mut self, id: &str, timeout: Duration) -> Event {
        match self.try_next_event(id, timeout).await {
            Some(event) => event,
            None => panic!(
                "no message for operation {id:?} within {timeout:?} (other operations have {:?} queued; stray: {:?})",
                self.pending
                    .iter()
                    .map(|(k, v)| (k.clone(), v.len()))
                    .collect::<Vec<_>>(),
                self.stray
            ),
        }
    }

    /// The payload of the next `next`/`data` message of operation `id`; panics on `error`, `complete` or timeout.
    pub async fn next_payload(&mut self, id: &str, timeout: Duration) -> Value {
        match self.next_event(id, timeout).await {
            Event::Next(payload) => payload,
            other => panic!("operation {id:?}: expected a `next` message, got {other:?}"),
        }
    }

    /// The `data` of the next result of operation `id`; panics if it carries errors.
    pub async fn next_data(&mut self, id: &str, timeout: Duration) -> Value {
        let payload = self.next_payload(id, timeout).await;
        assert!(
            payload.get("errors").is_none_or(|e| e.is_null()),
            "operation {id:?}: unexpected errors in {payload}"
        );
        payload["data"].clone()
    }

    /// Panics if operation `id` produces anything within `quiet`.
    pub async fn expect_silence(&mut self, id: &str, quiet: Duration) {
        if let Some(event) = self.try_next_event(id, quiet).await {
            panic!("operation {id:?}: expected nothing more, got {event:?}");
        }
    }

    /// Whether the socket has ended (known only after a read noticed it).
    pub fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// Reads frames until the socket ends or `timeout` passes; returns why it ended, if it did.
    /// Everything read meanwhile is queued as usual.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.pump(deadline).await {
                Ok(()) => {}
                Err(Stop::Timeout) => return None,
                Err(Stop::Closed(why)) => return Some(why),
            }
        }
    }

    /// Reads one frame (or fails at `deadline`) and files it.
    async fn pump(&mut self, deadline: Instant) -> Result<(), Stop> {
        if let Some(why) = &self.closed {
            return Err(Stop::Closed(why.clone()));
        }
        let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
            Err(_) => return Err(Stop::Timeout),
            Ok(None) => {
                self.closed = Some("the stream ended".into());
                return Err(Stop::Closed("the stream ended".into()));
            }
            Ok(Some(Err(e))) => {
                let why = format!("websocket error: {e}");
                self.closed = Some(why.clone());
                return Err(Stop::Closed(why));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            Message::Text(text) => {
                let message: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("the server sent a non-JSON text frame {text:?}: {e}"));
                self.file(message).await;
            }
            Message::Close(frame) => {
                let why = match frame {
                    Some(f) => format!(
                        "close frame, code {}, reason {:?}",
                        u16::from(f.code),
                        f.reason.as_str()
                    ),
                    None => "close frame without a code".into(),
                };
                self.closed = Some(why.clone());
                return Err(Stop::Closed(why));
            }
            // tungstenite answers websocket-level pings by itself
            _ => {}
        }
        Ok(())
    }

    async fn file(&mut self, message: Value) {
        let kind = message["type"].as_str().unwrap_or_default().to_owned();
        let id = message["id"].as_str().map(str::to_owned);
        let event = match (kind.as_str(), id) {
            ("ping", _) => {
                self.send(json!({ "type": "pong" })).await;
                return;
            }
            ("pong", _) | ("ka", _) => return,
            ("next" | "data", Some(id)) => (id, Event::Next(message["payload"].clone())),
            ("error", Some(id)) => (id, Event::Error(message["payload"].clone())),
            ("complete", Some(id)) => (id, Event::Complete),
            _ => {
                self.stray.push(message);
                return;
            }
        };
        self.pending.entry(event.0).or_default().push_back(event.1);
    }
}
