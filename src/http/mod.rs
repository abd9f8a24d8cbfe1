//! HTTP transport: GraphQL over POST and GET on `/graphql` (`graphql`), with
//! subscriptions streamed over multipart HTTP or SSE (`stream`), WebSocket by
//! upgrade on the same path (`upgrade`), GraphiQL on `/`, the demo storefront on
//! `/demo`, health and metrics.
//! GraphQL requests pass `admission` first. Authentication happens here, once
//! per request.

mod admission;
mod graphql;
mod stream;
mod upgrade;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
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

pub use admission::RequestLimits;

use crate::auth::{AuthError, Authenticator};
use crate::cdc::{CdcHealth, CdcStatus};
use crate::domain::ErrorCode;
use crate::graphql::{error_response_body, AppSchema, LiveExecutor, PersistedDocuments, RequestAuth};
use crate::ws::WsSettings;
use crate::{db, demo, playground, telemetry};

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    /// Runs the operations of WebSockets and HTTP streams (subscriptions rendered once per selection).
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
    /// Interval of heartbeats on an idle multipart or SSE stream.
    pub stream_heartbeat: std::time::Duration,
    /// Flips to true when the listener closes: multipart and SSE streams end, so
    /// their clients reconnect elsewhere instead of holding the drain open.
    pub closing_streams: watch::Receiver<bool>,
    /// Set on SIGTERM: `/readyz` fails while in-flight work drains.
    pub draining: Arc<AtomicBool>,
    /// Flips to true once the drain is over: WebSockets close with 1001.
    pub shutdown: watch::Receiver<bool>,
}

pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let limits = state.requests;
    // One budget shared by GET and POST (a per-method layer would count them apart). When it
    // is spent, a request is refused at once: queueing it would only make every answer late.
    let admission = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |error: BoxError| async move {
            admission::refused(&error, limits)
        }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(Arc::new(Semaphore::new(
            limits.max_concurrent,
        ))))
        .timeout(limits.timeout);
    let graphql = get(graphql::get).post(graphql::post).layer(admission);
    Router::new()
        .merge(playground::routes())
        .merge(demo::routes())
        .route("/graphql", graphql)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/readyz/cdc", get(readyz_cdc))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // A 503 is an answer here (readiness while starting or draining, a database not reached
        // yet), not a failure worth an error line per probe: our own code logs real failures.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)))
        .layer(CatchPanicLayer::custom(admission::panicked))
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

/// Until Postgres has been reached and migrated, requests are refused at once
/// (retryable) instead of waiting for a pool connection that cannot come.
fn database_not_ready(state: &AppState) -> Option<Response> {
    let reason = state.database.waiting_reason()?;
    let message = format!("ordercast cannot reach its database yet ({reason}); retry shortly");
    let body = Json(error_response_body(ErrorCode::Unavailable, &message));
    Some((StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "2")], body).into_response())
}
