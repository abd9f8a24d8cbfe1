//! The WebSocket upgrade of `/graphql`: picks the subprotocol and hands the
//! socket, with its connection slot, to `ws`.

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::server::ConnectionSlot;
use crate::ws;

/// Initial read buffer of a WebSocket connection. Client messages are small
/// (`subscribe`, `ping`); tungstenite's 128 KiB default, allocated per
/// connection, would dominate the memory of an idle subscription. Larger
/// messages still arrive whole: the buffer grows for them.
const WS_READ_BUFFER_BYTES: usize = 1024;

/// graphql-transport-ws (strict, ours), and the legacy graphql-ws of older
/// Apollo clients (async-graphql's). Without a subprotocol header the client
/// gets graphql-transport-ws; with only unsupported ones, close 4406.
pub(super) async fn websocket(state: AppState, parts: &mut axum::http::request::Parts) -> Response {
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let offered = parts.headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL);
    // The socket keeps its connection's slot: it counts against the instance's connections.
    let slot = parts.extensions.get::<ConnectionSlot>().cloned();
    upgrade
        .protocols([ws::TRANSPORT_WS, ws::LEGACY_WS])
        .max_message_size(state.ws.max_message_bytes)
        .max_frame_size(state.ws.max_message_bytes)
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        // Every frame is flushed as it is sent: no write buffer to keep per connection.
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let selected = socket.protocol().and_then(|p| p.to_str().ok()).map(str::to_owned);
            match selected.as_deref() {
                Some(ws::LEGACY_WS) => serve_legacy(socket, state).await,
                Some(_) => serve_transport(socket, state).await,
                None if !offered => serve_transport(socket, state).await,
                None => {
                    let mut socket = socket;
                    let frame = CloseFrame {
                        code: 4406,
                        reason: "Subprotocol not acceptable".into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                }
            }
        })
}

async fn serve_transport(socket: WebSocket, state: AppState) {
    ws::serve(socket, state.live, state.authenticator, state.ws, state.shutdown).await;
}

async fn serve_legacy(socket: WebSocket, state: AppState) {
    ws::legacy::serve(
        socket,
        state.schema,
        state.documents,
        state.authenticator,
        state.ws,
        state.shutdown,
    )
    .await;
}
