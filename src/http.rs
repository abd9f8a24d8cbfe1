//! HTTP transport: GraphQL over POST and GET on `/graphql`, GraphiQL on `/`,
//! and the health endpoints. Authentication happens here, once per request.

use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::DatabaseConnection;
use tower_http::trace::TraceLayer;

use crate::auth::TokenKeys;
use crate::config::Limits;
use crate::db;
use crate::domain::ErrorCode;
use crate::graphql::{error_response_body, AppSchema, RequestAuth};

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub db: DatabaseConnection,
    pub keys: Arc<TokenKeys>,
    pub max_body_bytes: usize,
}

pub fn router(state: AppState, limits: &Limits) -> Router {
    Router::new()
        .route("/", get(graphiql))
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .finish(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if db::ping(&state.db).await {
        (StatusCode::OK, Json(serde_json::json!({ "postgres": "up" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "postgres": "down" })),
        )
            .into_response()
    }
}

async fn graphql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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

async fn graphql_get(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let request = match async_graphql::http::parse_query_string(query.as_deref().unwrap_or_default()) {
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
    execute(&state, &headers, request).await
}

async fn execute(state: &AppState, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    let auth = request_auth(&state.keys, headers);
    Json(state.schema.execute(request.data(auth)).await).into_response()
}

/// Authenticates the `Authorization` header, if any. A bad credential is kept
/// (not dropped to anonymous) so resolvers can say exactly what is wrong.
pub fn request_auth(keys: &TokenKeys, headers: &HeaderMap) -> RequestAuth {
    match headers.get(header::AUTHORIZATION) {
        None => RequestAuth::Anonymous,
        Some(value) => match value.to_str().map(|v| keys.verify_header(v)) {
            Ok(Ok(caller)) => RequestAuth::Authenticated(caller),
            Ok(Err(reason)) => RequestAuth::Rejected(reason),
            Err(_) => RequestAuth::Rejected(crate::auth::AuthError::MalformedHeader),
        },
    }
}

/// True unless the document is valid and its operation to run is not a query.
/// Invalid documents go on to execution, which reports them precisely.
fn is_query_operation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return true;
    };
    let operation = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_none_or(|operation| operation.node.ty == OperationType::Query)
}

fn transport_error(status: StatusCode, message: &str) -> Response {
    (status, Json(error_response_body(ErrorCode::BadUserInput, message))).into_response()
}
