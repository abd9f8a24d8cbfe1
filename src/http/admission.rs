//! Admission of GraphQL requests over HTTP: at most `max_concurrent` at once,
//! the excess refused at once (tower's load shedding, not a queue in front of
//! the database pool), each cut off after `timeout`; and a panic in any handler
//! answered as `INTERNAL` instead of dropping the connection.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Json};

use crate::domain::ErrorCode;
use crate::graphql::error_response_body;
use crate::telemetry::metric;

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

/// The answer to a request the admission layers refused or cut short.
pub(super) fn refused(error: &BoxError, limits: RequestLimits) -> Response {
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
pub(super) fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a non-text panic payload");
    tracing::error!(panic = detail, "a request handler panicked");
    let body = Json(error_response_body(ErrorCode::Internal, "internal error"));
    (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;
    use tower_http::catch_panic::CatchPanicLayer;

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
