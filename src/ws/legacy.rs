//! The legacy `graphql-ws` protocol (subscriptions-transport-ws) of older
//! Apollo clients. async-graphql runs the protocol; this module wraps it with
//! what the strict protocol has too: an init timeout (close 4408), the
//! per-connection operation limit (an `error` with `LIMIT_EXCEEDED`), persisted
//! documents (a `start` may name one), a write timeout, the login's expiry
//! (close 4403) and shutdown (close 1001).

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::http::{WebSocket as LegacyProtocol, WebSocketProtocols, WsMessage};
use async_graphql::Data;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{connection_caller, limit_exceeded_errors, within_write_timeout, WsSettings};
use crate::auth::Authenticator;
use crate::graphql::{error_list, AppSchema, ClientRequest, PersistedDocuments, RequestAuth};

/// The type and id of a message, all the wrapper needs to count operations.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Envelope<'a> {
    fn read(text: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(text).ok()
    }
}

/// A `start` message with its persisted document filled in, or the errors that
/// refuse it. A message that is not a well-formed `start` goes on unchanged, for
/// async-graphql to answer.
fn with_document(documents: &PersistedDocuments, start: &[u8]) -> Result<Vec<u8>, Value> {
    let Ok(mut message) = serde_json::from_slice::<Value>(start) else {
        return Ok(start.to_vec());
    };
    let Some(payload) = message.get_mut("payload") else {
        return Ok(start.to_vec());
    };
    let Ok(request) = serde_json::from_value::<ClientRequest>(payload.clone()) else {
        return Ok(start.to_vec());
    };
    let request = documents
        .resolve(request)
        .map_err(|refused| error_list(refused.code(), &refused.to_string()))?;
    payload["query"] = request.query.into();
    Ok(serde_json::to_vec(&message).unwrap_or_else(|_| start.to_vec()))
}

/// Serves one legacy `graphql-ws` connection until it closes.
pub async fn serve(
    socket: WebSocket,
    schema: AppSchema,
    documents: Arc<PersistedDocuments>,
    authenticator: Arc<Authenticator>,
    settings: WsSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    // The login's expiry, once `connection_init` has been accepted.
    let (login_tx, mut login) = watch::channel(None::<Instant>);
    let logged_in = login.clone();
    let (mut sink, mut incoming) = socket.split();
    // Never awaited: waiting for room would stop polling `output`, the only thing that takes
    // from it. async-graphql takes everything queued whenever it is polled, except while it
    // checks the `connection_init` token; a client that sends more than this meanwhile is closed.
    let (mut input, input_rx) = futures::channel::mpsc::channel::<Vec<u8>>(settings.max_operations + 16);
    let mut output = std::pin::pin!(LegacyProtocol::new(
        schema,
        input_rx,
        WebSocketProtocols::SubscriptionsTransportWS
    )
    .on_connection_init(move |payload| async move {
        let caller = connection_caller(&authenticator, &payload).await?;
        login_tx.send_replace(Some(caller.deadline()));
        let mut data = Data::default();
        data.insert(RequestAuth::Authenticated(caller));
        Ok(data)
    }));
    let shutting_down = shutdown.changed();
    tokio::pin!(shutting_down);
    let init_deadline = tokio::time::sleep(settings.init_timeout);
    tokio::pin!(init_deadline);
    let login_expired = async move {
        loop {
            let deadline = *login.borrow_and_update();
            match deadline {
                Some(deadline) => return tokio::time::sleep_until(deadline).await,
                None if login.changed().await.is_err() => return std::future::pending().await,
                None => {}
            }
        }
    };
    tokio::pin!(login_expired);
    let mut running = HashSet::<String>::new();
    let (code, reason) = loop {
        tokio::select! {
            message = incoming.next() => {
                let mut bytes = match message {
                    Some(Ok(Message::Text(text))) => Vec::from(text.as_bytes()),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Err(error)) if super::is_too_large(&error) => break (1009, "Message too big".to_owned()),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                let starting = match Envelope::read(&bytes) {
                    Some(Envelope { kind: "start", id: Some(id) }) if !running.contains(id.as_ref()) => Some(id.into_owned()),
                    Some(Envelope { kind: "stop", id: Some(id) }) => {
                        running.remove(id.as_ref());
                        None
                    }
                    _ => None,
                };
                if let Some(id) = starting {
                    let admitted = if running.len() >= settings.max_operations {
                        Err(limit_exceeded_errors(settings.max_operations))
                    } else {
                        with_document(&documents, &bytes)
                    };
                    match admitted {
                        Ok(start) => {
                            bytes = start;
                            running.insert(id);
                        }
                        Err(errors) => {
                            let refusal = json!({ "type": "error", "id": id, "payload": errors }).to_string();
                            if within_write_timeout(settings.write_timeout, sink.send(Message::Text(refusal.into()))).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                }
                match input.try_send(bytes) {
                    Ok(()) => {}
                    Err(full) if full.is_full() => break (1008, "Too many messages before the server could read them".to_owned()),
                    Err(_) => return,
                }
            }
            message = output.next() => {
                let text = match message {
                    Some(WsMessage::Text(text)) => text,
                    Some(WsMessage::Close(code, reason)) => break (code, reason),
                    None => return,
                };
                if let Some(Envelope { kind: "complete" | "error", id: Some(id) }) = Envelope::read(text.as_bytes()) {
                    running.remove(id.as_ref());
                }
                if within_write_timeout(settings.write_timeout, sink.send(Message::Text(text.into()))).await.is_err() {
                    return;
                }
            }
            () = &mut init_deadline, if logged_in.borrow().is_none() => {
                break (4408, "Connection initialisation timeout".to_owned());
            }
            () = &mut login_expired => break (4403, "Forbidden: the token has expired".to_owned()),
            _ = &mut shutting_down => break (1001, "Server shutting down".to_owned()),
        }
    };
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    };
    let _ = within_write_timeout(settings.write_timeout, sink.send(Message::Close(Some(frame)))).await;
}
