//! HTTP transport: GraphQL over POST and GET on `/graphql` (WebSocket by
//! upgrade, see `ws`), GraphiQL on `/`, health and metrics. Authentication
//! happens here, once per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Json, Router};
use sea_orm::DatabaseConnection;
use tokio::sync::{watch, Semaphore};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::auth::{AuthError, Authenticator};
use crate::cdc::{CdcHealth, CdcStatus};
use crate::domain::ErrorCode;
use crate::graphql::{
    error_response_body, operation_type, AppSchema, ClientRequest, LiveExecutor, PersistedDocuments, PersistedError,
    RequestAuth,
};
use crate::server::ConnectionSlot;
use crate::telemetry::metric;
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
    pub requests: RequestLimits,
    /// Automatic Persisted Queries, and the trusted documents if only those run.
    pub documents: Arc<PersistedDocuments>,
    pub ws: WsSettings,
    /// Set on SIGTERM: `/readyz` fails while in-flight work drains.
    pub draining: Arc<AtomicBool>,
    /// Flips to true once the drain is over: WebSockets close with 1001.
    pub shutdown: watch::Receiver<bool>,
}

/// How many GraphQL requests over HTTP run at once, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_concurrent: usize,
    pub timeout: Duration,
}

impl RequestLimits {
    /// Without a configured limit, as many requests as the pool has connections run at once.
    pub fn new(http: &crate::config::HttpConfig, database: &crate::config::DatabaseConfig) -> Self {
        let max_concurrent = http.http_max_concurrent_requests.unwrap_or(database.db_max_connections);
        RequestLimits {
            max_concurrent: usize::try_from(max_concurrent.max(1)).unwrap_or(usize::MAX),
            timeout: http.http_request_timeout,
        }
    }
}

pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let limits = state.requests;
    // One budget shared by GET and POST (a per-method layer would count them apart). When it
    // is spent, a request is refused at once: queueing it would only make every answer late.
    let admission = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |error: BoxError| async move {
            refused(&error, limits)
        }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(Arc::new(Semaphore::new(
            limits.max_concurrent,
        ))))
        .timeout(limits.timeout);
    Router::new()
        .merge(playground::routes())
        .route("/graphql", get(graphql_get).post(graphql_post).layer(admission))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/readyz/cdc", get(readyz_cdc))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // A 503 is an answer here (readiness while starting or draining, a database not reached
        // yet), not a failure worth an error line per probe: our own code logs real failures.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// The answer to a request the admission layers refused or cut short.
fn refused(error: &BoxError, limits: RequestLimits) -> Response {
    let (reason, message, may_have_applied) = if error.is::<tower::load_shed::error::Overloaded>() {
        let message = format!(
            "this instance is serving {} requests, the most it serves at once; retry shortly",
            limits.max_concurrent
        );
        ("overloaded", message, false)
    } else if error.is::<tower::timeout::error::Elapsed>() {
        let message = format!(
            "the request did not finish within {}; a mutation may or may not have been applied: read before retrying",
            humantime::format_duration(limits.timeout)
        );
        ("timeout", message, true)
    } else {
        tracing::error!(%error, "a request failed in the admission layers");
        let body = Json(error_response_body(ErrorCode::Internal, "internal error"));
        return (StatusCode::INTERNAL_SERVER_ERROR, body).into_response();
    };
    metrics::counter!(metric::HTTP_REFUSED, "reason" => reason).increment(1);
    let mut body = error_response_body(ErrorCode::Unavailable, &message);
    body["errors"][0]["extensions"]["mayHaveApplied"] = may_have_applied.into();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(body),
    )
        .into_response()
}

/// A bug must not take the connection down with it: the client gets a typed
/// error and the log gets the panic.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a non-text panic payload");
    tracing::error!(panic = detail, "a request handler panicked");
    let body = Json(error_response_body(ErrorCode::Internal, "internal error"));
    (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
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
    let request: ClientRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => {
            return transport_error(
                StatusCode::BAD_REQUEST,
                "the body must be one GraphQL request as JSON: {\"query\": \"...\", \"variables\": {...}}",
            )
        }
    };
    let request = match state.documents.resolve(request) {
        Ok(request) => request,
        Err(refused) => return persisted_refusal(&refused),
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
        Ok(request) => ClientRequest {
            request,
            document_id: url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "documentId" || key == "doc_id")
                .map(|(_, id)| id.into_owned()),
        },
        Err(_) => {
            return transport_error(
                StatusCode::BAD_REQUEST,
                "the query string must carry `query=...` or a persisted document's id",
            )
        }
    };
    let request = match state.documents.resolve(request) {
        Ok(request) => request,
        Err(refused) => return persisted_refusal(&refused),
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

/// An unknown persisted document is part of the APQ handshake (200, the client
/// sends the document next); the others are the client's mistake.
fn persisted_refusal(refused: &PersistedError) -> Response {
    let status = match refused {
        PersistedError::NotFound => StatusCode::OK,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, Json(error_response_body(refused.code(), &refused.to_string()))).into_response()
}

fn transport_error(status: StatusCode, message: &str) -> Response {
    (status, Json(error_response_body(ErrorCode::BadUserInput, message))).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        panic!("a bug in a handler")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_typed_internal_error() {
        let app = Router::new()
            .route("/", get(boom))
            .layer(CatchPanicLayer::custom(panicked));
        let response = app
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
        assert_eq!(body["errors"][0]["message"], "internal error");
    }
}
