//! GraphQL over HTTP (the GraphQL over HTTP spec, checked by the graphql-http
//! audits in the client tests): POST with a JSON body, GET for queries; the
//! response is `application/graphql-response+json` when the client accepts it
//! (request errors then answer 400 without `data`), else `application/json`.
//! A client that accepts a stream (`multipart/mixed;subscriptionSpec=1.0` or
//! `text/event-stream`) gets its results streamed (`stream`): the way to
//! subscribe over HTTP, by POST or GET.

use async_graphql::parser::types::OperationType;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;

use super::stream::{self, StreamFormat};
use super::{database_not_ready, request_auth, upgrade, AppState};
use crate::domain::ErrorCode;
use crate::graphql::{error_response_body, operation_type, ClientRequest, Output, PersistedError};

pub(super) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(refusal) = database_not_ready(&state) {
        return refusal;
    }
    if !is_json(&headers) {
        return transport_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the GraphQL request as JSON, with `Content-Type: application/json`",
        );
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
pub(super) async fn get(State(state): State<AppState>, request: Request) -> Response {
    if let Some(refusal) = database_not_ready(&state) {
        return refusal;
    }
    let (mut parts, _body) = request.into_parts();
    if parts.headers.contains_key(header::UPGRADE) {
        return upgrade::websocket(state, &mut parts).await;
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
    let operation = operation_type(&request.query, request.operation_name.as_deref());
    let streamed_subscription =
        operation == Some(OperationType::Subscription) && MediaType::accepted(&parts.headers).is_stream();
    // Invalid documents go on to execution, which reports them precisely.
    if !(operation.is_none_or(|ty| ty == OperationType::Query) || streamed_subscription) {
        let mut response = transport_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only queries (and subscriptions with a streaming Accept) may use GET; send mutations with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, &parts.headers, request).await
}

async fn execute(state: &AppState, headers: &HeaderMap, request: async_graphql::Request) -> Response {
    if request.query.trim().is_empty() {
        return transport_error(
            StatusCode::BAD_REQUEST,
            "the request carries no `query` (nor the id of a persisted document)",
        );
    }
    let auth = request_auth(&state.authenticator, headers).await;
    let is_subscription =
        operation_type(&request.query, request.operation_name.as_deref()) == Some(OperationType::Subscription);
    match MediaType::accepted(headers) {
        MediaType::Stream(format) => {
            let outputs = if is_subscription {
                state.live.execute_resolved(request, auth.clone())
            } else {
                // Executed here, inside admission and its timeout, not later in the body.
                let response = state.schema.execute(request.data(auth.clone())).await;
                futures::stream::once(async move { Output::of(response) }).boxed()
            };
            stream::respond(
                format,
                outputs,
                &auth,
                state.stream_heartbeat,
                state.closing_streams.clone(),
            )
        }
        _ if is_subscription => transport_error(
            StatusCode::NOT_ACCEPTABLE,
            "a subscription over HTTP streams its results: accept `text/event-stream` (SSE) or \
                 `multipart/mixed;subscriptionSpec=1.0` (Apollo's multipart protocol), or subscribe over the WebSocket",
        ),
        media => media.respond(state.schema.execute(request.data(auth)).await),
    }
}

/// The response media types served: the two of the GraphQL over HTTP spec, and streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaType {
    /// `application/graphql-response+json`: the status says whether the request ran.
    GraphqlResponse,
    /// `application/json`: always 200 once the request reached GraphQL (legacy clients).
    Json,
    /// The results as they come, for subscriptions (any operation may use it).
    Stream(StreamFormat),
}

impl MediaType {
    /// The first media type of `Accept` that is served; `application/json` without one.
    fn accepted(headers: &HeaderMap) -> Self {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or_default().trim();
            if essence.eq_ignore_ascii_case("application/graphql-response+json") {
                return MediaType::GraphqlResponse;
            }
            if essence.eq_ignore_ascii_case("text/event-stream") {
                return MediaType::Stream(StreamFormat::EventStream);
            }
            // Apollo's subscription protocol, whatever the boundary parameter says (some
            // clients send none). `multipart/mixed` for @defer alone is not served.
            if essence.eq_ignore_ascii_case("multipart/mixed") && parts.any(is_subscription_spec_1) {
                return MediaType::Stream(StreamFormat::Multipart);
            }
            if ["application/json", "application/*", "*/*"]
                .iter()
                .any(|served| essence.eq_ignore_ascii_case(served))
            {
                return MediaType::Json;
            }
        }
        MediaType::Json
    }

    fn is_stream(self) -> bool {
        matches!(self, MediaType::Stream(_))
    }

    fn content_type(self) -> HeaderValue {
        match self {
            MediaType::GraphqlResponse => HeaderValue::from_static("application/graphql-response+json; charset=utf-8"),
            MediaType::Json => HeaderValue::from_static("application/json; charset=utf-8"),
            MediaType::Stream(format) => format.content_type(),
        }
    }

    /// A request error (the document did not parse or validate, a variable did not
    /// coerce) never executed: with the spec's media type it is a 400 without `data`.
    fn respond(self, response: async_graphql::Response) -> Response {
        let not_executed = response.data == async_graphql::Value::Null
            && !response.errors.is_empty()
            && response.errors.iter().all(|error| error.path.is_empty());
        let headers = [(header::CONTENT_TYPE, self.content_type())];
        if self != MediaType::GraphqlResponse || !not_executed {
            return (StatusCode::OK, headers, Json(response)).into_response();
        }
        // Only this rare answer goes through a `Value`, to drop the `data` entry.
        let mut body = serde_json::to_value(&response).unwrap_or_default();
        if let Some(body) = body.as_object_mut() {
            body.remove("data");
        }
        (StatusCode::BAD_REQUEST, headers, Json(body)).into_response()
    }
}

/// `subscriptionSpec=1.0`, quoted or not.
fn is_subscription_spec_1(parameter: &str) -> bool {
    let Some((name, value)) = parameter.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("subscriptionSpec") && value.trim().trim_matches('"') == "1.0"
}

/// Whether the body is declared as JSON (any charset parameter is fine: JSON is UTF-8).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
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
    use super::*;

    fn accept(value: &str) -> MediaType {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        MediaType::accepted(&headers)
    }

    #[test]
    fn the_first_served_media_type_of_accept_wins() {
        assert_eq!(MediaType::accepted(&HeaderMap::new()), MediaType::Json);
        assert_eq!(
            accept("application/graphql-response+json, application/json;q=0.9"),
            MediaType::GraphqlResponse
        );
        assert_eq!(
            accept("application/json, application/graphql-response+json"),
            MediaType::Json
        );
        assert_eq!(accept("text/html, */*;q=0.1"), MediaType::Json);
        assert_eq!(
            accept("Application/GraphQL-Response+JSON; charset=utf-8"),
            MediaType::GraphqlResponse
        );
    }

    #[test]
    fn streams_are_chosen_by_accept_even_without_a_boundary() {
        let multipart = MediaType::Stream(StreamFormat::Multipart);
        assert_eq!(
            accept("multipart/mixed;boundary=graphql;subscriptionSpec=1.0, application/json"),
            multipart
        );
        assert_eq!(accept("multipart/mixed;subscriptionSpec=1.0"), multipart);
        assert_eq!(accept("multipart/mixed; subscriptionSpec=\"1.0\""), multipart);
        assert_eq!(
            accept("multipart/mixed;deferSpec=20220824, application/json"),
            MediaType::Json
        );
        assert_eq!(
            accept("text/event-stream"),
            MediaType::Stream(StreamFormat::EventStream)
        );
    }

    #[test]
    fn a_request_error_is_a_400_without_data_only_for_the_spec_media_type() {
        let failed =
            || async_graphql::Response::from_errors(vec![async_graphql::ServerError::new("Syntax Error", None)]);
        let response = MediaType::GraphqlResponse.respond(failed());
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(MediaType::Json.respond(failed()).status(), StatusCode::OK);
        let ran = async_graphql::Response::new(async_graphql::Value::from_json(serde_json::json!({ "x": 1 })).unwrap());
        assert_eq!(MediaType::GraphqlResponse.respond(ran).status(), StatusCode::OK);
    }
}
