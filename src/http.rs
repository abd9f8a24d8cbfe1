//! HTTP transport: GraphQL over POST and GET on `/graphql` (WebSocket by
//! upgrade, see `ws`), GraphiQL on `/`, health and metrics. Authentication
//! happens here, once per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::http::WebSocketProtocols;
use async_graphql::parser::types::OperationType;
use async_graphql::Data;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::auth::{AuthError, Authenticator};
use crate::cdc::{CdcHealth, CdcStatus};
use crate::domain::ErrorCode;
use crate::graphql::{error_response_body, operation_type, AppSchema, LiveExecutor, RequestAuth};
use crate::ws::{self, WsSettings};
use crate::{db, playground, telemetry};

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    /// Runs graphql-transport-ws operations (subscriptions rendered once per selection).
    pub live: LiveExecutor,
    pub db: DatabaseConnection,
    pub authenticator: Arc<Authenticator>,
    pub cdc: Arc<CdcStatus>,
    /// Reached and migrated, or why not yet.
    pub database: Arc<db::DatabaseStatus>,
    pub max_body_bytes: usize,
    pub ws: WsSettings,
    /// Set on SIGTERM: `/readyz` fails while in-flight work drains.
    pub draining: Arc<AtomicBool>,
    /// Flips to true once the drain is over: WebSockets close with 1001.
    pub shutdown: watch::Receiver<bool>,
}

pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    Router::new()
        .merge(playground::routes())
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/readyz/cdc", get(readyz_cdc))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // A 503 is an answer here (readiness while starting or draining, a database not reached
        // yet), not a failure worth an error line per probe: our own code logs real failures.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Can this instance serve requests? Postgres reachable, warm (connections
/// open, CDC partitions assigned once), not draining. A CDC outage does not
/// fail it: writes and queries still work, and subscribers catch up later.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::Acquire) {
        return readiness(false, serde_json::json!({ "status": "draining" }));
    }
    if let Some(reason) = state.database.waiting_reason() {
        return readiness(
            false,
            serde_json::json!({ "status": "postgres unreachable", "reason": reason, "postgres": "down", "cdc": up_or_down(state.cdc.is_ready()) }),
        );
    }
    let postgres = db::ping(&state.db).await;
    let warm = state.cdc.is_warm();
    let status = match (postgres, warm) {
        (true, true) => "ready",
        (true, false) => "starting",
        (false, _) => "postgres unreachable",
    };
    readiness(
        postgres && warm,
        serde_json::json!({ "status": status, "postgres": up_or_down(postgres), "cdc": up_or_down(state.cdc.is_ready()) }),
    )
}

/// Are live updates healthy? For alerts and dashboards, not for routing traffic.
async fn readyz_cdc(State(state): State<AppState>) -> Response {
    let age = state.cdc.last_event_age();
    let body = match state.cdc.health() {
        CdcHealth::Live => serde_json::json!({ "status": "up", "last_event_age_seconds": age }),
        CdcHealth::Starting => serde_json::json!({
            "status": "down", "reason": "the CDC consumer has not fixed its start offsets yet", "last_event_age_seconds": age,
        }),
        CdcHealth::Outage(reason) => {
            serde_json::json!({ "status": "down", "reason": reason, "last_event_age_seconds": age })
        }
    };
    readiness(state.cdc.is_ready(), body)
}

fn readiness(ok: bool, body: serde_json::Value) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn up_or_down(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!(telemetry::metric::CDC_LAST_EVENT_AGE).set(state.cdc.last_event_age());
    let prometheus = telemetry::prometheus();
    prometheus.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus.render(),
    )
        .into_response()
}

async fn graphql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(refusal) = database_not_ready(&state) {
        return refusal;
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("the request body is larger than {} bytes", state.max_body_bytes);
            return transport_error(StatusCode::PAYLOAD_TOO_LARGE, &message);
        }
        Err(_) => return transport_error(StatusCode::BAD_REQUEST, "the request body could not be read"),
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => {
            return transport_error(
                StatusCode::BAD_REQUEST,
                "the body must be one GraphQL request as JSON: {\"query\": \"...\", \"variables\": {...}}",
            )
        }
    };
    execute(&state, &headers, request).await
}

/// GET serves queries from the query string, and WebSocket subscriptions by upgrade.
async fn graphql_get(State(state): State<AppState>, request: Request) -> Response {
    if let Some(refusal) = database_not_ready(&state) {
        return refusal;
    }
    let (mut parts, _body) = request.into_parts();
    if parts.headers.contains_key(header::UPGRADE) {
        return websocket(state, &mut parts).await;
    }
    let query = parts.uri.query().unwrap_or_default();
    let request = match async_graphql::http::parse_query_string(query) {
        Ok(request) => request,
        Err(_) => return transport_error(StatusCode::BAD_REQUEST, "the query string must carry `query=...`"),
    };
    if !is_query_operation(&request) {
        let mut response = transport_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only queries may use GET; send mutations with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, &parts.headers, request).await
}

/// Initial read buffer of a WebSocket connection. Client messages are small
/// (`subscribe`, `ping`); tungstenite's 128 KiB default, allocated per
/// connection, would dominate the memory of an idle subscription. Larger
/// messages still arrive whole: the buffer grows for them.
const WS_READ_BUFFER_BYTES: usize = 1024;

/// graphql-transport-ws (strict, ours), and the legacy graphql-ws of older
/// Apollo clients (async-graphql's). Without a subprotocol header the client
/// gets graphql-transport-ws; with only unsupported ones, close 4406.
async fn websocket(state: AppState, parts: &mut axum::http::request::Parts) -> Response {
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let offered = parts.headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL);
    upgrade
        .protocols([ws::TRANSPORT_WS, ws::LEGACY_WS])
        .max_message_size(state.max_body_bytes)
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        // Every frame is flushed as it is sent: no write buffer to keep per connection.
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
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
    use async_graphql::http::{WebSocket as LegacyProtocol, WsMessage};
    use futures::{SinkExt, StreamExt};

    let authenticator = state.authenticator.clone();
    // The login's expiry, once `connection_init` has been accepted.
    let (login_tx, mut login) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|message| std::future::ready(matches!(message, Ok(m) if !matches!(m, Message::Close(_)))))
        .filter_map(|message| {
            std::future::ready(match message {
                Ok(Message::Text(text)) => Some(text.as_str().as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        });
    let mut output = std::pin::pin!(LegacyProtocol::new(
        state.schema,
        input,
        WebSocketProtocols::SubscriptionsTransportWS
    )
    .on_connection_init(move |payload| async move {
        let caller = ws::connection_caller(&authenticator, &payload).await?;
        login_tx.send_replace(Some(caller.deadline()));
        let mut data = Data::default();
        data.insert(RequestAuth::Authenticated(caller));
        Ok(data)
    }));
    let mut shutdown = state.shutdown;
    let shutting_down = async move {
        let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
    };
    tokio::pin!(shutting_down);
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
    loop {
        let message = tokio::select! {
            message = output.next() => match message {
                Some(message) => message,
                None => return,
            },
            () = &mut login_expired => {
                let frame = CloseFrame { code: 4403, reason: "Forbidden: the token has expired".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
            _ = &mut shutting_down => {
                let frame = CloseFrame { code: 1001, reason: "Server shutting down".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
        };
        let sent = match message {
            WsMessage::Text(text) => sink.send(Message::Text(text.into())).await,
            WsMessage::Close(code, reason) => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })))
                    .await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

async fn execute(state: &AppState, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    let auth = request_auth(&state.authenticator, headers).await;
    Json(state.schema.execute(request.data(auth)).await).into_response()
}

/// Authenticates the `Authorization` header, if any. A bad credential is kept
/// (not dropped to anonymous) so resolvers can say exactly what is wrong.
pub async fn request_auth(authenticator: &Authenticator, headers: &HeaderMap) -> RequestAuth {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return RequestAuth::Anonymous;
    };
    let Ok(value) = value.to_str() else {
        return RequestAuth::Rejected(AuthError::MalformedHeader);
    };
    match authenticator.authenticate_header(value).await {
        Ok(caller) => RequestAuth::Authenticated(caller),
        Err(reason) => RequestAuth::Rejected(reason),
    }
}

/// True unless the document is valid and its operation to run is not a query.
/// Invalid documents go on to execution, which reports them precisely.
fn is_query_operation(request: &async_graphql::Request) -> bool {
    operation_type(&request.query, request.operation_name.as_deref()).is_none_or(|ty| ty == OperationType::Query)
}

/// Until Postgres has been reached and migrated, requests are refused at once
/// (retryable) instead of waiting for a pool connection that cannot come.
fn database_not_ready(state: &AppState) -> Option<Response> {
    let reason = state.database.waiting_reason()?;
    let message = format!("ordercast cannot reach its database yet ({reason}); retry shortly");
    let body = Json(error_response_body(ErrorCode::Unavailable, &message));
    Some((StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "2")], body).into_response())
}

fn transport_error(status: StatusCode, message: &str) -> Response {
    (status, Json(error_response_body(ErrorCode::BadUserInput, message))).into_response()
}
