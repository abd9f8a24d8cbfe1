//! The graphql-transport-ws protocol (graphql-ws's PROTOCOL.md), implemented
//! strictly, because clients rely on its close codes to decide whether to
//! retry: 4400 invalid message, 4401 subscribe before ack, 4403 rejected or
//! expired credentials, 4406 unsupported subprotocol, 4408 no `connection_init` in time,
//! 4409 duplicate operation id, 4429 a second `connection_init`, 1001 shutdown,
//! 1013 credentials that cannot be checked right now (retry).
//!
//! A login lasts as long as its token: when it expires the server closes the
//! socket with 4403, and the client reconnects with a fresh token and resumes
//! its subscriptions from `afterVersion`.
//!
//! One task per connection multiplexes the client's messages, the results of
//! its operations (each a stream of serialised payloads from
//! `graphql::LiveExecutor`, at most `max_operations` at once: the next
//! `subscribe` gets an `error` with `LIMIT_EXCEEDED`) and a keep-alive ping. While
//! the socket cannot take more, no operation is polled, so a slow client backs
//! up into its own hub queues and is resynced there; nobody else waits. A
//! client that stops reading altogether is dropped once one send has waited
//! `write_timeout`, and a message over `max_message_bytes` closes with 1009.

pub mod legacy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{self, AbortHandle, Abortable, BoxStream, SelectAll, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::auth::{AuthError, Authenticator, Caller};
use crate::domain::ErrorCode;
use crate::graphql::{error_list, LiveExecutor, Output, RequestAuth};

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

/// Timing and limits of both WebSocket protocols.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    /// How long a client may take to send `connection_init`.
    pub init_timeout: Duration,
    /// Interval of server pings on an otherwise idle connection.
    pub keepalive: Duration,
    /// Operations one connection may have running at once.
    pub max_operations: usize,
    /// How long one send may wait for a client that does not read.
    pub write_timeout: Duration,
    /// Largest message a client may send.
    pub max_message_bytes: usize,
}

impl From<&crate::config::WebSocketConfig> for WsSettings {
    fn from(config: &crate::config::WebSocketConfig) -> Self {
        WsSettings {
            init_timeout: config.init_timeout(),
            keepalive: config.keepalive(),
            max_operations: usize::try_from(config.ws_max_operations).unwrap_or(usize::MAX),
            write_timeout: config.ws_write_timeout,
            max_message_bytes: config.ws_max_message_bytes,
        }
    }
}

/// How a connection ended, as a WebSocket close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    /// `reason` must fit a close frame: at most 123 bytes.
    fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        while reason.len() > 123 {
            reason.pop();
        }
        Close { code, reason }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {},
    Subscribe {
        id: String,
        payload: Box<crate::graphql::ClientRequest>,
    },
    Complete {
        id: String,
    },
}

/// An operation's outputs, tagged with its id: a result, or `None` at the end of its stream.
type Operation = BoxStream<'static, (String, Option<Output>)>;

/// The running operations of one connection. `SelectAll` polls only the
/// streams that woke, however many there are; each stream can be stopped
/// through its abort handle (a `complete` from the client, or an `error`).
#[derive(Default)]
struct Operations {
    streams: SelectAll<Abortable<Operation>>,
    running: HashMap<String, AbortHandle>,
}

impl Operations {
    fn insert(&mut self, id: String, operation: Operation) {
        let (handle, registration) = AbortHandle::new_pair();
        self.running.insert(id, handle);
        self.streams.push(Abortable::new(operation, registration));
    }

    fn stop(&mut self, id: &str) {
        if let Some(handle) = self.running.remove(id) {
            handle.abort();
        }
    }
}

/// Serves one graphql-transport-ws connection until it closes.
pub async fn serve(
    mut socket: WebSocket,
    live: LiveExecutor,
    authenticator: Arc<Authenticator>,
    settings: WsSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut caller: Option<Caller> = None;
    let mut operations = Operations::default();
    let init_deadline = tokio::time::sleep(settings.init_timeout);
    tokio::pin!(init_deadline);
    // Reset to the token's expiry by `connection_init`.
    let login_expiry = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(login_expiry);
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + settings.keepalive, settings.keepalive);
    // Created once: a fresh `changed()` per loop turn would join and leave the
    // watch's waiter list, shared by every connection, on every message.
    let shutting_down = shutdown.changed();
    tokio::pin!(shutting_down);

    let close = loop {
        tokio::select! {
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Err(error)) if is_too_large(&error) => break Close::new(1009, "Message too big"),
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => break Close::new(4400, "Binary messages are not supported"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                };
                let message = match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::debug!(%error, "invalid graphql-transport-ws message");
                        break Close::new(4400, "Invalid message received");
                    }
                };
                let was_anonymous = caller.is_none();
                let handled = handle(message, &mut caller, &mut operations, &live, &authenticator, &settings).await;
                if let (true, Some(login)) = (was_anonymous, caller) {
                    login_expiry.as_mut().reset(login.deadline());
                }
                match handled {
                    Ok(Some(reply)) => {
                        if send(&mut socket, reply.to_string(), &settings).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(close) => break close,
                }
            }
            Some((id, output)) = operations.streams.next(), if !operations.running.is_empty() => {
                let reply = match &output {
                    Some(output) => result_message(&id, output),
                    None => json!({ "id": id, "type": "complete" }).to_string(),
                };
                if !matches!(output, Some(Output::Next(_))) {
                    // `error` ends the operation; no `complete` follows it.
                    operations.stop(&id);
                }
                if send(&mut socket, reply, &settings).await.is_err() {
                    return;
                }
            }
            () = &mut init_deadline, if caller.is_none() => {
                break Close::new(4408, "Connection initialisation timeout");
            }
            () = &mut login_expiry, if caller.is_some() => {
                // Each open operation hears why it ends before the socket closes.
                let expired = Output::login_expired();
                let open: Vec<String> = operations.running.keys().cloned().collect();
                for id in open {
                    if send(&mut socket, result_message(&id, &expired), &settings).await.is_err() {
                        return;
                    }
                }
                break Close::new(4403, "Forbidden: the token has expired");
            }
            _ = keepalive.tick() => {
                if send(&mut socket, json!({ "type": "ping" }).to_string(), &settings).await.is_err() {
                    return;
                }
            }
            _ = &mut shutting_down => break Close::new(1001, "Server shutting down"),
        }
    };
    let frame = CloseFrame {
        code: close.code,
        reason: Utf8Bytes::from(close.reason),
    };
    let _ = tokio::time::timeout(settings.write_timeout, socket.send(Message::Close(Some(frame)))).await;
}

/// Applies one client message; returns the reply to send, or why to close.
async fn handle(
    message: ClientMessage,
    caller: &mut Option<Caller>,
    operations: &mut Operations,
    live: &LiveExecutor,
    authenticator: &Authenticator,
    settings: &WsSettings,
) -> Result<Option<Value>, Close> {
    match message {
        ClientMessage::ConnectionInit { payload } => {
            if caller.is_some() {
                return Err(Close::new(4429, "Too many initialisation requests"));
            }
            let authenticated = connection_caller(authenticator, payload.as_ref().unwrap_or(&Value::Null))
                .await
                .map_err(|reason| {
                    if reason.is_unavailable() {
                        Close::new(1013, reason.to_string())
                    } else {
                        Close::new(4403, "Forbidden")
                    }
                })?;
            *caller = Some(authenticated);
            Ok(Some(json!({ "type": "connection_ack" })))
        }
        ClientMessage::Ping { payload } => Ok(Some(match payload {
            Some(payload) => json!({ "type": "pong", "payload": payload }),
            None => json!({ "type": "pong" }),
        })),
        ClientMessage::Pong {} => Ok(None),
        ClientMessage::Subscribe { id, payload } => {
            let Some(caller) = *caller else {
                return Err(Close::new(4401, "Unauthorized"));
            };
            if operations.running.contains_key(&id) {
                return Err(Close::new(4409, format!("Subscriber for {id} already exists")));
            }
            if operations.running.len() >= settings.max_operations {
                let errors = limit_exceeded_errors(settings.max_operations);
                return Ok(Some(json!({ "id": id, "type": "error", "payload": errors })));
            }
            let tag = id.clone();
            let results = live
                .execute(*payload, RequestAuth::Authenticated(caller))
                .map(Some)
                .chain(stream::once(async { None }))
                .map(move |output| (tag.clone(), output));
            operations.insert(id, results.boxed());
            Ok(None)
        }
        ClientMessage::Complete { id } => {
            operations.stop(&id);
            Ok(None)
        }
    }
}

/// The `error` payload for a `subscribe` beyond the connection's operation limit.
fn limit_exceeded_errors(max_operations: usize) -> Value {
    let message =
        format!("this connection already runs {max_operations} operations, the most it may; complete one first");
    error_list(ErrorCode::LimitExceeded, &message)
}

/// `error` for an operation that failed before producing any data (the
/// protocol's "operation execution error"), `next` for everything else. The
/// payload is already JSON, often shared by many subscribers: it is spliced in.
fn result_message(id: &str, output: &Output) -> String {
    let (kind, payload) = match output {
        Output::Next(payload) => ("next", payload),
        Output::Error(payload) => ("error", payload),
    };
    let plain = id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let id = if plain {
        format!("\"{id}\"")
    } else {
        Value::from(id).to_string()
    };
    let mut message = String::with_capacity(id.len() + payload.len() + 32);
    message.push_str(r#"{"id":"#);
    message.push_str(&id);
    message.push_str(r#","type":""#);
    message.push_str(kind);
    message.push_str(r#"","payload":"#);
    message.push_str(payload);
    message.push('}');
    message
}

/// True for a client message beyond the size limit (the spec's close 1009).
pub fn is_too_large(error: &axum::Error) -> bool {
    let inner = std::error::Error::source(error).and_then(|inner| inner.downcast_ref::<tungstenite::Error>());
    matches!(inner, Some(tungstenite::Error::Capacity(_)))
}

/// Why a message could not be sent: the connection is then abandoned.
#[derive(Debug)]
pub enum SendFailed {
    Closed,
    /// The client stopped reading: its socket buffer stayed full for the write timeout.
    NotReading,
}

async fn send(socket: &mut WebSocket, message: String, settings: &WsSettings) -> Result<(), SendFailed> {
    within_write_timeout(
        settings.write_timeout,
        socket.send(Message::Text(Utf8Bytes::from(message))),
    )
    .await
}

/// Bounds one send: a client that does not read would otherwise park the
/// connection's task (and everything it holds) forever.
pub async fn within_write_timeout<E>(
    limit: Duration,
    sent: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), SendFailed> {
    match tokio::time::timeout(limit, sent).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SendFailed::Closed),
        Err(_) => {
            metrics::counter!(crate::telemetry::metric::WS_DROPPED).increment(1);
            tracing::debug!(?limit, "dropping a WebSocket whose client does not read");
            Err(SendFailed::NotReading)
        }
    }
}

/// Authenticates a WebSocket from its `connection_init` payload,
/// `{"authorization": "Bearer <token>"}`. Without a valid token the
/// connection is refused.
pub async fn connection_caller(authenticator: &Authenticator, payload: &Value) -> Result<Caller, AuthError> {
    let header = ["authorization", "Authorization"]
        .iter()
        .find_map(|key| payload.get(key))
        .and_then(Value::as_str)
        .ok_or(AuthError::Missing)?;
    authenticator.authenticate_header(header).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_per_the_protocol() {
        let init: ClientMessage = serde_json::from_str(r#"{"type":"connection_init","payload":{"a":1}}"#).unwrap();
        assert!(matches!(init, ClientMessage::ConnectionInit { payload: Some(_) }));
        let subscribe: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","id":"1","payload":{"query":"{ me { id } }"}}"#).unwrap();
        assert!(matches!(subscribe, ClientMessage::Subscribe { ref id, .. } if id == "1"));
        for invalid in [
            r#"{"type":"subscribe","payload":{"query":"{ x }"}}"#,
            r#"{"type":"subscribe","id":"1"}"#,
            r#"{"type":"start","id":"1"}"#,
            r#"{"id":"1"}"#,
            "[]",
        ] {
            assert!(serde_json::from_str::<ClientMessage>(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn result_messages_splice_the_payload_into_valid_json() {
        let next = result_message("a\"1", &Output::Next(r#"{"data":{"x":1}}"#.into()));
        let next: Value = serde_json::from_str(&next).unwrap();
        assert_eq!(
            next,
            json!({ "id": "a\"1", "type": "next", "payload": { "data": { "x": 1 } } })
        );
        let error = result_message("2", &Output::Error(r#"[{"message":"no"}]"#.into()));
        let error: Value = serde_json::from_str(&error).unwrap();
        assert_eq!(
            error,
            json!({ "id": "2", "type": "error", "payload": [{ "message": "no" }] })
        );
    }

    #[tokio::test]
    async fn the_token_comes_from_the_init_payload() {
        let config = crate::config::AuthConfig::development("secret");
        let authenticator = Authenticator::from_config(&config, Default::default()).unwrap();
        let customer = uuid::Uuid::now_v7();
        let token = crate::auth::DevelopmentTokens::new("secret").mint(customer, Duration::from_secs(60));
        let payload = json!({ "authorization": format!("Bearer {token}") });
        let caller = connection_caller(&authenticator, &payload).await.unwrap();
        assert_eq!(caller.customer_id, customer);
        assert_eq!(
            connection_caller(&authenticator, &json!({})).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            connection_caller(&authenticator, &Value::Null).await,
            Err(AuthError::Missing)
        );
    }
}
