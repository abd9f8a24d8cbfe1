//! Every GraphQL error leaves with a stable `extensions.code`, assigned here.
//!
//! Resolvers return `DomainError` or `AuthError` with `?`; async-graphql keeps
//! the original error as the `source` of the GraphQL error, and this extension
//! reads it back. Errors without a source come from async-graphql itself
//! (syntax, validation, limits, argument coercion): the client sent them.
//! A source of any other type is a bug: its message is replaced and logged.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest, NextSubscribe};
use async_graphql::{ErrorExtensionValues, Response, ServerError};
use futures::stream::{BoxStream, StreamExt};

use crate::auth::AuthError;
use crate::domain::{DomainError, ErrorCode};
use crate::telemetry::metric;

/// Schema extension that assigns error codes; see the module docs.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        with_codes(next.run(ctx).await)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(with_codes).boxed()
    }
}

fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        assign_code(error);
    }
    response
}

fn assign_code(error: &mut ServerError) {
    if error.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some()) {
        return;
    }
    let mut may_have_applied = None;
    let mut retry_after = None;
    let code = match error.source.as_deref() {
        None => ErrorCode::BadUserInput,
        Some(source) => {
            if let Some(domain) = source.downcast_ref::<DomainError>() {
                if domain.code() == ErrorCode::Unavailable {
                    may_have_applied = Some(domain.may_have_applied());
                }
                retry_after = domain.retry_after();
                domain.code()
            } else if let Some(auth) = source.downcast_ref::<AuthError>() {
                if auth.is_unavailable() {
                    ErrorCode::Unavailable
                } else {
                    ErrorCode::Unauthenticated
                }
            } else {
                tracing::error!(message = %error.message, "unclassified error reached the GraphQL boundary");
                error.message = "internal error".to_owned();
                ErrorCode::Internal
            }
        }
    };
    metrics::counter!(metric::GRAPHQL_ERRORS, "code" => code.as_str()).increment(1);
    let extensions = error.extensions.get_or_insert_with(ErrorExtensionValues::default);
    extensions.set("code", code.as_str());
    // A retryable error says whether the failed write may still have been applied.
    if let Some(may_have_applied) = may_have_applied {
        extensions.set("mayHaveApplied", may_have_applied);
    }
    // A refusal by a rate limit says when the write will be admitted.
    if let Some(retry_after) = retry_after {
        extensions.set("retryAfterSeconds", retry_after.as_secs().max(1));
    }
}

/// A GraphQL-shaped error body for failures before execution (body too large,
/// not JSON), so clients parse every error the same way.
pub fn error_response_body(code: ErrorCode, message: &str) -> serde_json::Value {
    serde_json::json!({ "errors": error_list(code, message) })
}

/// The same error as a bare list: the payload of a WebSocket `error` message.
pub fn error_list(code: ErrorCode, message: &str) -> serde_json::Value {
    serde_json::json!([{ "message": message, "extensions": { "code": code.as_str() } }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Retry;

    fn code_of(error: &ServerError) -> String {
        let mut error = error.clone();
        assign_code(&mut error);
        error.extensions.unwrap().get("code").unwrap().to_string()
    }

    #[test]
    fn domain_auth_client_and_unknown_errors_get_their_codes() {
        let domain: async_graphql::Error = DomainError::OrderCancelled.into();
        assert_eq!(
            code_of(&domain.into_server_error(Default::default())),
            "\"ORDER_CANCELLED\""
        );
        let auth: async_graphql::Error = AuthError::Expired.into();
        assert_eq!(
            code_of(&auth.into_server_error(Default::default())),
            "\"UNAUTHENTICATED\""
        );
        assert_eq!(code_of(&ServerError::new("Unknown field", None)), "\"BAD_USER_INPUT\"");
        let unknown: async_graphql::Error = DomainError::Unavailable(Retry::OutcomeUnknown).into();
        let mut unknown = unknown.into_server_error(Default::default());
        assign_code(&mut unknown);
        let extensions = unknown.extensions.unwrap();
        assert_eq!(extensions.get("code").unwrap().to_string(), "\"UNAVAILABLE\"");
        assert_eq!(extensions.get("mayHaveApplied").unwrap().to_string(), "true");
        let stray: async_graphql::Error = std::fmt::Error.into();
        let mut stray = stray.into_server_error(Default::default());
        assert_eq!(code_of(&stray), "\"INTERNAL\"");
        assign_code(&mut stray);
        assert_eq!(stray.message, "internal error");
    }
}
